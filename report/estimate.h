/* Site figures of a sampled trace (MEMTRACE_SAMPLE, trace-format.md §3 and §9.2): each sampled
 * allocation stands for 1 / P(sampled) allocations like it (the Horvitz-Thompson estimator),
 * where P = 1 - exp(-size / rate) for an allocation of `size` requested bytes. The shim samples a
 * realloc on the growth of its usable size (size + slack), so a chain of reallocs is in the trace
 * from the first step whose growth was sampled: a block it follows counts with
 * P = 1 - exp(-seff / rate), seff being the old block's seff plus the growth (for a chain grown
 * from nothing by realloc alone, its usable size); a realloc the trace sees first (its old block
 * never sampled) counts with its new usable size, exact for a chain that only grew. The aggregate
 * calls est_heap for every heap event it replays and est_apply once at the end, which turns its
 * sites' figures into these estimates. Never prints.
 */
#ifndef MEMTRACE_REPORT_ESTIMATE_H
#define MEMTRACE_REPORT_ESTIMATE_H

#include <stdint.h>

#include "reader.h"

struct agg;
struct est;

/* A new estimator for traces sampled at `rate` bytes (> 0). */
struct est *est_new(uint64_t rate);
void est_free(struct est *e);

/* The Horvitz-Thompson weight of an allocation of `size` bytes (size 0 counts as 1). */
double est_weight(uint64_t size, uint64_t rate);

/* One heap event that changed memory (not FAILED), before the aggregate replays it. */
void est_heap(struct est *e, const struct rd_event *ev);

/* After the aggregate's own finish: its sites' calls, bytes, live, peak and at-peak figures of
 * heap allocations become estimates; heap call counts come from the TOTALS record when there is
 * one; frees of blocks never sampled are not "unknown". Remembers the raw (unweighted) figures
 * of the sampled blocks still live and lost at exit for est_raw_lost. */
void est_apply(struct est *e, struct agg *a);

/* Sampled blocks lost at exit (live, not reachable at the leak scan), unweighted: the leak scan's
 * exact totals minus these are the lost blocks whose allocation was not sampled. */
void est_raw_lost(const struct est *e, uint64_t *blocks, uint64_t *bytes);

#endif
