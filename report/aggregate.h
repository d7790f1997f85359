/* The report's one pass over a trace: replays every event in time order into the memoryUsage
 * picture (heapUsed, external, mapped by trace-format.md §7.2; rss and heapTotal as the last
 * SNAPSHOT recorded them), per-site statistics keyed by stack id, the moment of the heap peak,
 * the timeline of snapshots, cap refusals and what is live at exit. Memory grows with the live
 * blocks, the distinct stacks and the snapshots, never with the number of events. Never prints.
 *
 *     struct agg *a = agg_new();
 *     while (input_next(in, &item) > 0) agg_item(a, &item);
 *     agg_finish(a);                      // fills a->exit, per-site at-peak figures
 *     ... read a->sites, a->peak, a->exit, a->timeline, a->limits ...
 *     agg_free(a);
 */
#ifndef MEMTRACE_REPORT_AGGREGATE_H
#define MEMTRACE_REPORT_AGGREGATE_H

#include <stddef.h>
#include <stdint.h>

#include "rangemap.h"
#include "reader.h"

/* One allocation site: every allocating call with the same stack id (0: no stack). Live, peak
 * and leak figures count malloc-family blocks (requested bytes, as sites and leaks report
 * `size`, trace-format.md §7.2); mappings count in calls and total_bytes only. */
struct agg_site {
    uint32_t stack;
    uint32_t peak_seq;     /* internal: agg.peak_seq when live_bytes last changed */
    uint64_t calls;        /* successful allocating calls (realloc to a new block included) */
    uint64_t total_bytes;  /* bytes those calls asked for */
    uint64_t live_bytes;   /* malloc-family blocks live now (at exit after agg_finish) */
    uint64_t live_blocks;  /* their number */
    uint64_t peak_bytes;   /* the site's own highest live_bytes */
    uint64_t at_peak;      /* live_bytes at the moment of the global heap peak */
    uint64_t at_peak_live; /* internal: live_bytes as of the last peak before it changed */
    uint64_t reachable_bytes, reachable_blocks; /* of the live ones: pointed to at the exit
                                                   leak scan (REACH records), so not leaks */
};

/* The memoryUsage picture at one moment. heap_used/external/mapped are replayed exactly;
 * rss/heap_total come from a snapshot (have_snapshot 0: the trace has none before the moment). */
struct agg_usage {
    uint64_t ts_ns;
    uint64_t heap_used; /* Σ size + slack of live heap-class blocks */
    uint64_t requested; /* Σ size of the same blocks (what heaptrack calls heap consumption) */
    uint64_t external;  /* anonymous mappings + blocks a rule classed external */
    uint64_t mapped;    /* file-backed mappings + blocks a rule classed mapped */
    uint64_t heap_blocks;
    int have_snapshot;    /* rss/heap_total below are from a snapshot */
    uint32_t snap_reason; /* MTF_SNAP_* of that snapshot */
    uint64_t snap_ts_ns;  /* its time */
    uint64_t rss, heap_total;
    int have_rss_peak; /* the EXIT snapshot gave rss_peak (exit only) */
    uint64_t rss_peak;
};

/* One SNAPSHOT as recorded, plus the replayed figures at that point for cross-checking. */
struct agg_snapshot {
    uint64_t ts_ns;
    uint32_t reason;    /* MTF_SNAP_* */
    uint32_t label_len; /* bytes of label (not NUL-terminated in the trace; NUL-terminated here) */
    char label[MTF_LABEL_MAX + 1];
    uint64_t rss, heap_total, heap_used, external, mapped, rss_peak; /* as recorded */
    uint64_t replay_heap_used, replay_external, replay_mapped;       /* as replayed */
};

/* One cap refusal (LIMIT event). */
struct agg_limit {
    uint64_t ts_ns;
    uint32_t call;  /* MTF_EV_* kind refused */
    uint32_t cls;   /* MTF_CLASS_HEAP or MTF_CLASS_EXTERNAL */
    uint32_t mode;  /* MTF_LIMIT_* */
    uint32_t stack; /* stack id of the refused call */
    uint64_t limit, live, request;
};

#define AGG_MAX_LIMITS 256 /* refusals kept in detail; limits_total counts them all */

struct agg_live; /* the live-block table (aggregate.c) */

/* Entries of the stack id -> site cache in front of the site hash (a power of two). */
#define AGG_SITE_CACHE 512

struct agg_site_ref {
    uint32_t stack;
    struct agg_site *site; /* NULL: empty */
};

struct agg {
    /* process */
    uint32_t pid, parent_pid, origin;
    uint64_t page_size;
    char *exe;     /* first PROCESS record, or NULL */
    char *cmdline; /* its argv joined by spaces, or NULL */
    int have_end;
    struct mtf_end end;               /* the last END */
    uint64_t first_ts_ns, last_ts_ns; /* span of every timed item (0/0: none) */
    uint64_t dropped;                 /* END dropped + LOSS counts (saturating) */

    /* calls */
    uint64_t counts[MTF_EV_KIND_COUNT]; /* events per kind, failed ones included */
    uint64_t failed[MTF_EV_KIND_COUNT]; /* of which FAILED */
    uint64_t unknown_frees;             /* free/realloc of an address not live in the trace */
    uint64_t reused_addresses; /* an allocation at an address still live (its free missed) */

    /* now: heap figures, plus blocks a rule moved to external/mapped (the range map's bytes
     * are added when a picture is taken) */
    struct agg_usage now;
    struct agg_usage peak; /* at the highest heap_used (peak.ts_ns 0: heap never used) */
    struct agg_usage exit; /* after agg_finish(): after the last event */
    uint64_t last_snap_rss, last_snap_heap_total, last_snap_ts;
    uint32_t last_snap_reason;
    int have_snapshot;
    int have_exit_snapshot;
    uint64_t exit_rss, exit_heap_total, exit_rss_peak, exit_snap_ts;

    /* sites, by stack id (open addressing; empty slots have calls == 0 and stack == 0 except
     * the slot of stack 0 which is `site0`) */
    struct agg_site *sites;
    size_t nsites, site_cap;
    struct agg_site site0; /* stack id 0: calls with no stack */
    uint32_t peak_seq;     /* bumped each time heap_used reaches a new maximum */
    struct agg_site_ref site_cache[AGG_SITE_CACHE]; /* recent lookups, cleared when the hash
                                                       grows */

    /* stacks: frames by id (dense ids from 1) */
    struct agg_stack {
        uint64_t ts_ns;   /* when it was defined (for module choice) */
        uint64_t first;   /* index into frames */
        uint32_t nframes; /* 0 with defined 0: never defined */
        uint8_t defined, truncated;
    } * stacks;
    size_t stack_cap;
    uint64_t *frames;
    size_t nframes_used, frame_cap;

    struct agg_live *live;
    struct mt_rangemap maps;

    struct agg_snapshot *timeline;
    size_t ntimeline, timeline_cap;

    struct agg_limit limits[AGG_MAX_LIMITS];
    size_t nlimits;
    uint64_t limits_total;

    int have_reach;       /* a complete exit-time leak scan (REACH records) was read */
    int reach_open;       /* a scan's records are being read */
    uint32_t reach_flags; /* MTF_REACHF_* of the last scan */

    int finished;

    /* sampling (format 2.1): the file header's rate, the TOTALS record, the estimates */
    uint64_t sample_bytes; /* 0: every call is in the trace */
    int have_totals;
    struct mtf_totals totals; /* exact calls and live figures (have_totals) */
    struct est *est;          /* estimate.c: weighted site figures, NULL when not sampled */
};

struct agg *agg_new(void);
void agg_free(struct agg *a);

/* Use the file header (pid, page size). Call once before the items. */
void agg_header(struct agg *a, const struct mtf_file_header *h);

/* Replay one item (events, PROCESS, END, LOSS, REACH; MODULES are the symbolizer's). A REACH
 * scan marks the blocks it lists as lost and every other block live at that moment as
 * reachable; blocks allocated after it stay unmarked (counted as leaks if still live). */
void agg_item(struct agg *a, const struct rd_item *item);

/* After the last item: the exit picture and the sites' at-peak figures. */
void agg_finish(struct agg *a);

/* The site of a stack id, or NULL when no call used it. */
const struct agg_site *agg_site(const struct agg *a, uint32_t stack);

/* Every site (including stack 0's when used), in a new array the caller frees; *n its length. */
struct agg_site *agg_sites(const struct agg *a, size_t *n);

/* Frames of stack `id` (return addresses, innermost first) and its definition time; returns the
 * frame count, 0 with *frames NULL when the stack was never defined. */
uint32_t agg_stack(const struct agg *a, uint32_t id, const uint64_t **frames, uint64_t *ts_ns,
                   int *truncated);

/* Live blocks (at exit after agg_finish): fn(ctx, addr, size, slack, stack, cls) for each. */
typedef void (*agg_block_fn)(void *ctx, uint64_t addr, uint64_t size, uint64_t slack,
                             uint32_t stack, uint32_t cls);
void agg_live_blocks(const struct agg *a, agg_block_fn fn, void *ctx);

#endif
