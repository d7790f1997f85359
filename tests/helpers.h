/* Integration-test helpers: run a program under the real shim (LD_PRELOAD set only in the
 * child's environment, never in the test runner), find the traces it wrote, decode them with
 * report/reader.c into per-kind counts and an event list. Every helper fails the test through
 * cr_assert on errors, so tests read as plain steps.
 */
#ifndef MEMTRACE_TESTS_HELPERS_H
#define MEMTRACE_TESTS_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "memtrace/format.h"
#include "reader.h"

/* Absolute path of the build directory ($MT_BUILD_DIR, else "build" made absolute). */
const char *h_build(void);

/* h_build()/rel, in a static rotating buffer (valid for the next 8 calls). */
const char *h_path(const char *rel);

/* Absolute path of the test program source tests/progs/<src>, looked for in the tree that holds
 * the build directory (build/, build/asan/, ...), else under the current directory; fails the
 * test when it is in neither. For tests that compile fixtures at run time. */
void h_find_source(const char *src, char *out, size_t cap);

/* Whether `name` is a command on PATH (tests of comparisons with other tools skip without it). */
int h_have_tool(const char *name);

/* Run `python3 SCRIPT ARGS` with the script written to <tmpdir>/<name>.py; fails the test when
 * it fails. Its stdout, after a leading "\n" (malloc'd). */
char *h_python(const char *script, const char *name, const char *args);

/* The JSON file at `path` flattened to lines "path=value" after a leading "\n"
 * ({"a": [{"b": 1}]} gives "a.0.b=1"; null is "null", booleans true/false, newlines in strings
 * become spaces), malloc'd; fails the test when it does not parse. */
char *h_json_flat(const char *path);

/* The value of `key` in a flattened JSON, copied to buf, or NULL when it is absent. */
const char *h_json_get(const char *flat, const char *key, char *buf, size_t cap);

/* A fresh temporary directory for this test (removed by h_tmpdir_teardown). */
const char *h_tmpdir(void);
void h_tmpdir_setup(void);    /* Criterion .init: creates it */
void h_tmpdir_teardown(void); /* Criterion .fini: removes it and its files */

struct h_run {
    int exited; /* 1 if exited normally */
    int status; /* exit status, or the signal number if !exited */
    char *out;  /* captured stdout (NUL-terminated, malloc'd) */
    char *err;  /* captured stderr */
    size_t out_len, err_len;
};

/* Run argv[0] (a path, or a name looked up in PATH) with LD_PRELOAD=<build>/libmemtrace.so and
 * MEMTRACE_OUTPUT=<tmpdir>/<out_pattern> (out_pattern may be NULL: "t.%p.mtrace"), plus the
 * extra "NAME=value" entries of `env` (NULL-terminated, may be NULL), in the tmpdir as cwd.
 * `preload` 0 runs the same program without the shim (for comparisons). Waits, captures
 * output, and times out after `timeout_s` seconds (the child is killed, the test fails). */
struct h_run h_run(char *const argv[], char *const env[], int preload, const char *out_pattern,
                   int timeout_s);
void h_run_free(struct h_run *r);

/* Paths of the trace files in the tmpdir whose names start with `prefix` (NULL: all *.mtrace*),
 * sorted; returns the count, fills up to `max` entries (malloc'd strings, free with h_free). */
size_t h_traces(const char *prefix, char **paths, size_t max);
void h_free_paths(char **paths, size_t n);

/* Everything a test usually wants from a trace. */
struct h_trace {
    int rc;                             /* last reader_next() result: 0 clean end, <0 error */
    char error[512];                    /* reader_error() text */
    struct rd_status status;            /* reader status at the end */
    uint64_t counts[MTF_EV_KIND_COUNT]; /* decoded events per kind (STACK included) */
    uint64_t nested;                    /* events with MTF_EVF_NESTED */
    uint64_t failed;                    /* events with MTF_EVF_FAILED */
    int has_end;
    struct mtf_end end;
    int has_totals; /* a sampled trace's TOTALS record was read */
    struct mtf_totals totals;
    int has_process;
    char exe[4096];
    uint32_t nthreads;       /* distinct thread serials */
    uint64_t dropped;        /* END.dropped + LOSS counts */
    struct rd_event *events; /* every non-STACK event, in file order (malloc'd) */
    size_t nevents;
    uint64_t **stacks; /* stacks[id] = frames (id < nstacks), NULL if undefined */
    uint32_t *stack_len;
    uint32_t nstacks;
    struct h_module {
        uint64_t base;
        char *path;
        struct mtf_segment segs[16];
        uint32_t nseg;
        uint32_t flags;
    } * modules;
    size_t nmodules;
};

/* Decode a whole trace (tests only: loads events into memory). Never fails the test by itself:
 * look at rc/error. */
void h_load(const char *path, struct h_trace *t);
void h_trace_free(struct h_trace *t);

/* Symbolize a return address of a traced program: the name of the function containing pc - 1,
 * found through the trace's module map and the ELF symbol table of the module (libdw/libelf).
 * Writes "" when unknown. */
void h_symbol(const struct h_trace *t, uint64_t pc, char *out, size_t cap);

/* Whether stack `id` of the trace contains a frame in a function whose name equals `func`. */
int h_stack_has(const struct h_trace *t, uint32_t id, const char *func);

/* Events per kind before the last END record and in the whole file (trace-format.md §8: events
 * may follow an END, written through by threads still running or by late destructors; END
 * counts what was written before it). Fails the test if the trace does not decode. */
struct end_tally {
    uint64_t before[MTF_EV_KIND_COUNT]; /* events before the last END */
    uint64_t total[MTF_EV_KIND_COUNT];  /* events in the file */
    struct mtf_end end;                 /* the last END */
    int ends;                           /* END records */
};
void end_tally(const char *path, struct end_tally *y);

/* Read a whole file into a malloc'd buffer; returns NULL on failure. */
char *h_read_file(const char *path, size_t *len);

/* h_read_file that fails the test when the file cannot be read. */
uint8_t *h_must_read(const char *path, size_t *len);

/* Write a buffer to a file (created 0600, truncated). 0 on success. */
int h_write_file(const char *path, const void *data, size_t len);

#endif
