/* What the summary and the JSON show beyond raw counts, computed once from the replay: the top
 * allocation sites by peak bytes, total bytes and calls, and the leaks (blocks live at exit)
 * grouped by stack, largest first, after suppressions. Symbolizes only the stacks that hold
 * blocks at exit (to match suppressions) and leaves the rest to the renderers.
 */
#ifndef MEMTRACE_REPORT_FINDINGS_H
#define MEMTRACE_REPORT_FINDINGS_H

#include <stddef.h>
#include <stdint.h>

#include "aggregate.h"
#include "stackview.h"
#include "suppress.h"

struct leak_site {
    uint32_t stack;
    uint64_t bytes, blocks; /* requested bytes of the blocks live at exit */
};

struct findings {
    struct agg_site *sites; /* every site (agg_sites) */
    size_t nsites;
    const struct agg_site **by_peak, **by_total, **by_count; /* the top ntop[i] of each */
    size_t ntop_peak, ntop_total, ntop_count;
    struct leak_site *leaks; /* not suppressed, largest first */
    size_t nleaks;
    uint64_t leak_bytes, leak_blocks;
    uint64_t supp_bytes, supp_blocks;           /* taken by any suppression */
    uint64_t reachable_bytes, reachable_blocks; /* live at exit but pointed to (leak scan) */

    /* sampled traces (agg.sample_bytes): site figures are estimates; leak_blocks and
     * leak_bytes are the TOTALS record's exact figures instead of the sites' sum */
    int sampled;
    int leak_exact;        /* leak_* are exact (a TOTALS record was read) */
    int leak_bytes_usable; /* no leak scan: leak_bytes are usable bytes live at exit */
    uint64_t unsampled_blocks, unsampled_bytes; /* lost blocks whose allocation was not sampled
                                                   (also a leaks[] entry, stack
                                                   FINDINGS_NOT_SAMPLED) */
};

#define FINDINGS_NOT_SAMPLED UINT32_MAX /* leak_site.stack of the lost blocks not sampled */

/* Fill f; suppression rules' stacks/blocks/bytes are added to. `top` sites per list. */
void findings_compute(struct findings *f, const struct agg *a, struct stackview *v,
                      struct suppressions *s, unsigned top);
void findings_free(struct findings *f);

#endif
