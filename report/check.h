/* `memtrace-report check`: the CI leak gate. Reads every trace of a run (files, or directories
 * of *.mtrace files: one per process), decides pass or fail per process and for the run, prints
 * a summary naming the process in every finding, optionally writes JSON (docs/check-json.md),
 * JUnit XML and SARIF 2.1.0, and chooses the exit status. check.c reads and decides; the
 * renderers (check_text.c, check_json.c, junit.c, sarif.c) only print what it decided and never
 * choose an exit status.
 */
#ifndef MEMTRACE_REPORT_CHECK_H
#define MEMTRACE_REPORT_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "suppress.h"

/* Exit statuses of `memtrace-report check` (its --help, the README and docs/check-json.md list
 * them). 23 is LeakSanitizer's default exitcode, so CI scripts that already know an LSan
 * failure recognise ours; it is also far from 1-3 (usage, I/O) and from 126+ (shell, signals). */
#define CHECK_EXIT_PASS  0 /* every process passed */
#define CHECK_EXIT_USAGE 1 /* bad command line, unusable suppressions file */
#define CHECK_EXIT_IO                                                                              \
    3                      /* a trace cannot be opened or is not a trace, no trace found,          \
                              an output cannot be written, out of memory */
#define CHECK_EXIT_FAIL 23 /* the gate failed */

/* What failed one process (bits of chk_proc.fail). */
#define CHK_FAIL_LEAKS      0x01 /* lost (or with --fail-on-reachable, all) leaks over the limit */
#define CHK_FAIL_HEAP       0x02 /* peak heapUsed above --max-heap */
#define CHK_FAIL_CAP        0x04 /* killed by the heap cap (LIMIT in abort mode) */
#define CHK_FAIL_DROPPED    0x08 /* calls the shim could not record */
#define CHK_FAIL_INCOMPLETE 0x10 /* no END record, truncated or corrupt trace */
#define CHK_FAIL_KINDS      5

/* Name of the one failure bit `bit` ("leaks", "max_heap", "heap_cap", "dropped",
 * "incomplete"). */
const char *chk_fail_name(unsigned bit);

struct chk_frame {
    char *function, *file, *module; /* NULL when unknown */
    unsigned line;
    uint64_t module_offset, pc;
    int inlined;
};

struct chk_stack {
    struct chk_frame *f; /* innermost first, the allocator and the shim left out */
    int n;
    int truncated; /* deeper than MEMTRACE_DEPTH: outer frames missing */
};

/* One allocation site holding blocks at exit, not suppressed. */
struct chk_site {
    uint32_t stack;
    uint64_t direct_bytes, direct_blocks;       /* lost, no other lost block points to them */
    uint64_t indirect_bytes, indirect_blocks;   /* lost, pointed to only by lost blocks */
    uint64_t lost_bytes, lost_blocks;           /* direct + indirect (+ unscanned: no scan) */
    uint64_t reachable_bytes, reachable_blocks; /* still pointed to at the exit leak scan */
    struct chk_stack st;
};

struct chk_proc {
    char *trace;   /* path as read */
    char *exe;     /* executable, or NULL */
    char *cmdline; /* arguments joined by spaces, or NULL */
    char *name;    /* display name: basename of the executable ("?" if unknown) */
    uint32_t pid, parent_pid, origin;
    uint64_t start_realtime_ns, duration_ns;
    int have_end;
    uint32_t end_reason; /* MTF_END_* */
    int32_t end_status;
    int complete, truncated;
    char *error; /* the reader's line (or "no END record ..."), NULL when read cleanly */
    uint64_t dropped;
    unsigned module_warnings; /* module map entries the symbolizer refused */
    int leak_scan;            /* a complete exit leak scan (REACH) was read */
    int scan_running;         /* other threads were running during it */
    int leaks_checked; /* 0: ended by exec or a signal, or incomplete: live blocks not leaks */
    uint64_t live_bytes, live_blocks; /* every malloc-family block live at the end */
    uint64_t peak_heap;               /* heapUsed at its peak (size + slack of live heap blocks) */
    uint64_t limits_total, limits_abort;
    struct chk_cap {
        uint64_t limit, live, request;
        uint32_t call;
        struct chk_stack st;
    } cap; /* the first refusal in abort mode (limits_abort > 0) */
    /* leaks, after suppressions */
    struct chk_site *sites; /* lost first (largest first), then reachable-only sites */
    size_t nsites, nlost_sites, nreach_sites;
    uint64_t direct_bytes, direct_blocks, indirect_bytes, indirect_blocks;
    uint64_t lost_bytes, lost_blocks, reachable_bytes, reachable_blocks;
    uint64_t supp_bytes, supp_blocks;
    unsigned fail; /* CHK_FAIL_* */
    /* sampled traces (MEMTRACE_SAMPLE): sites list only sampled blocks; lost_* above are the
     * TOTALS record's exact figures (the leak scan's lost blocks, else every live block with
     * its usable bytes), less the suppressed sampled blocks */
    uint64_t sample_bytes;                      /* 0: not sampled */
    int lost_exact;                             /* lost_* came from a TOTALS record */
    uint64_t unsampled_bytes, unsampled_blocks; /* lost blocks no sampled site accounts for */
};

struct chk_opts {
    uint64_t max_leak_bytes, max_leak_blocks; /* CHK_UNSET: not given */
    uint64_t max_heap;                        /* CHK_UNSET: no limit */
    int fail_on_reachable, allow_incomplete, default_supp;
    unsigned top, frames; /* leak sites per process and frames per stack in the text */
    int command_status;   /* -1, or the wrapped command's status (--command-status) */
    const char *json, *junit, *sarif, *source_root;
    const char *label; /* what was checked, for the summary's first line */
};
#define CHK_UNSET UINT64_MAX

struct chk_run {
    struct chk_opts o;
    struct chk_proc *procs; /* sorted by start time, then pid */
    size_t n, nfailed;
    unsigned fail;   /* union of the processes' */
    int status;      /* the exit status chosen */
    int passthrough; /* the status is the command's own (--command-status) */
    struct suppressions supp;
    uint64_t lost_bytes, lost_blocks, reachable_bytes, reachable_blocks, supp_bytes, supp_blocks;
};

/* The leak figures compared with the limits: lost, plus reachable with --fail-on-reachable. */
uint64_t chk_leak_bytes(const struct chk_run *r, const struct chk_proc *p);
uint64_t chk_leak_blocks(const struct chk_run *r, const struct chk_proc *p);

/* One sentence per failure bit of `p`, e.g. "lost 1.95 KB in 3 blocks (limit: none)". */
void chk_fail_text(const struct chk_run *r, const struct chk_proc *p, unsigned bit, char *buf,
                   size_t cap);

/* "check_leak (pid 4242)": the JUnit test case and SARIF name of a process. */
void chk_proc_title(const struct chk_proc *p, char *buf, size_t cap);

/* One frame for people: "leak_one tests/progs/check_leak.c:12" or "libfoo.so+0x1234". */
void chk_frame_text(const struct chk_frame *f, char *buf, size_t cap);

/* Renderers: 0, or -1 when writing failed (errno says why). */
int chk_render_text(FILE *out, const struct chk_run *r);
int chk_render_json(FILE *out, const struct chk_run *r);
int chk_render_junit(FILE *out, const struct chk_run *r);
int chk_render_sarif(FILE *out, const struct chk_run *r);

/* One process as the summary shows it (check_text.c): JUnit failures carry the same text. */
void chk_text_process(FILE *out, const struct chk_run *r, const struct chk_proc *p);

/* XML text escaping (markup characters as entities; bytes XML 1.0 cannot hold, and bytes that
 * are not UTF-8, as '?'). JSON strings: jsonstr.h. */
void chk_xml_text(FILE *out, const char *s);

/* argv[0] is "check". Returns the exit status (CHECK_EXIT_*). */
int check_main(int argc, char **argv);

#endif
