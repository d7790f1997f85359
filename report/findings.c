/* Top sites and leaks (findings.h). */
#include "findings.h"

#include <stdlib.h>
#include <string.h>

#include "estimate.h"
#include "util.h"

/* Larger first; ties by stack id so the output is stable. */
#define CMP_DESC(x, y) ((x) < (y) ? 1 : (x) > (y) ? -1 : 0)

static int by_peak(const void *p, const void *q)
{
    const struct agg_site *a = *(const struct agg_site *const *)p;
    const struct agg_site *b = *(const struct agg_site *const *)q;
    int c = CMP_DESC(a->peak_bytes, b->peak_bytes);
    return c ? c : CMP_DESC(b->stack, a->stack);
}

static int by_total(const void *p, const void *q)
{
    const struct agg_site *a = *(const struct agg_site *const *)p;
    const struct agg_site *b = *(const struct agg_site *const *)q;
    int c = CMP_DESC(a->total_bytes, b->total_bytes);
    return c ? c : CMP_DESC(b->stack, a->stack);
}

static int by_count(const void *p, const void *q)
{
    const struct agg_site *a = *(const struct agg_site *const *)p;
    const struct agg_site *b = *(const struct agg_site *const *)q;
    int c = CMP_DESC(a->calls, b->calls);
    return c ? c : CMP_DESC(b->stack, a->stack);
}

static int by_leak(const void *p, const void *q)
{
    const struct leak_site *a = p, *b = q;
    int c = CMP_DESC(a->bytes, b->bytes);
    if (c == 0)
        c = CMP_DESC(a->blocks, b->blocks);
    return c ? c : CMP_DESC(b->stack, a->stack);
}

/* The top `top` sites under `cmp`, leaving out sites where the key is 0. */
static const struct agg_site **
top_list(const struct findings *f, int (*cmp)(const void *, const void *), unsigned top, size_t *n)
{
    const struct agg_site **l = xmalloc((f->nsites + 1) * sizeof *l);
    for (size_t i = 0; i < f->nsites; i++)
        l[i] = &f->sites[i];
    qsort(l, f->nsites, sizeof *l, cmp);
    size_t k = 0;
    while (k < f->nsites && k < top &&
           (cmp == by_peak    ? l[k]->peak_bytes
            : cmp == by_total ? l[k]->total_bytes
                              : l[k]->calls))
        k++;
    *n = k;
    return l;
}

/* A sampled trace: the leak totals come from its TOTALS record, exactly. With the leak scan, the
 * lost blocks that no sampled allocation accounts for are one more entry, "site not sampled". */
static void sampled_leaks(struct findings *f, const struct agg *a)
{
    f->sampled = 1;
    if (!a->have_totals)
        return; /* an incomplete trace: the estimates are all there is */
    const struct mtf_totals *t = &a->totals;
    f->leak_exact = 1;
    if (t->flags & MTF_TOTALSF_SCANNED) {
        uint64_t raw_blocks = 0, raw_bytes = 0;
        if (a->est != NULL)
            est_raw_lost(a->est, &raw_blocks, &raw_bytes);
        f->unsampled_blocks = t->lost_blocks > raw_blocks ? t->lost_blocks - raw_blocks : 0;
        f->unsampled_bytes = t->lost_bytes > raw_bytes ? t->lost_bytes - raw_bytes : 0;
        if (f->unsampled_blocks != 0)
            f->leaks[f->nleaks++] =
                (struct leak_site){ FINDINGS_NOT_SAMPLED, f->unsampled_bytes, f->unsampled_blocks };
        f->leak_blocks = t->lost_blocks;
        f->leak_bytes = t->lost_bytes;
    } else {
        f->leak_bytes_usable = 1;
        f->leak_blocks = t->live_blocks > 0 ? (uint64_t)t->live_blocks : 0;
        f->leak_bytes = t->live_usable > 0 ? (uint64_t)t->live_usable : 0;
    }
}

void findings_compute(struct findings *f, const struct agg *a, struct stackview *v,
                      struct suppressions *s, unsigned top)
{
    memset(f, 0, sizeof *f);
    f->sites = agg_sites(a, &f->nsites);
    f->by_peak = top_list(f, by_peak, top, &f->ntop_peak);
    f->by_total = top_list(f, by_total, top, &f->ntop_total);
    f->by_count = top_list(f, by_count, top, &f->ntop_count);

    f->leaks = xmalloc((f->nsites + 1) * sizeof *f->leaks);
    for (size_t i = 0; i < f->nsites; i++) {
        const struct agg_site *site = &f->sites[i];
        /* with a leak scan, blocks still pointed to at exit are not leaks */
        uint64_t blocks = site->live_blocks - site->reachable_blocks;
        uint64_t bytes = site->live_bytes - site->reachable_bytes;
        f->reachable_blocks += site->reachable_blocks;
        f->reachable_bytes += site->reachable_bytes;
        if (blocks == 0)
            continue;
        int rule = supp_match(s, sv_get(v, site->stack));
        if (rule >= 0) {
            s->rules[rule].stacks++;
            s->rules[rule].blocks += blocks;
            s->rules[rule].bytes += bytes;
            f->supp_blocks += blocks;
            f->supp_bytes += bytes;
            continue;
        }
        f->leaks[f->nleaks++] = (struct leak_site){ site->stack, bytes, blocks };
        f->leak_bytes += bytes;
        f->leak_blocks += blocks;
    }
    if (a->sample_bytes != 0)
        sampled_leaks(f, a);
    qsort(f->leaks, f->nleaks, sizeof *f->leaks, by_leak);
}

void findings_free(struct findings *f)
{
    free(f->sites);
    free(f->by_peak);
    free(f->by_total);
    free(f->by_count);
    free(f->leaks);
    memset(f, 0, sizeof *f);
}
