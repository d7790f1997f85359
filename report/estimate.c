/* Horvitz-Thompson site estimates of a sampled trace (estimate.h). Keeps its own table of the
 * sampled blocks live now (address -> stack, size, effective size) and its own per-site sums in
 * doubles, so the aggregate's integer replay stays as it is and only its sites' figures are
 * replaced at the end.
 */
#include "estimate.h"

#include <stdlib.h>
#include <string.h>

#include "aggregate.h"
#include "util.h"

struct eblock {
    uint64_t addr;   /* 0: empty */
    uint64_t size;   /* requested bytes */
    uint64_t usable; /* size + slack */
    double seff;     /* effective size: its chance of being in the trace is 1 - exp(-seff/rate) */
    uint32_t stack;
};

struct esite {
    uint32_t stack;
    int used;
    uint32_t peak_seq;   /* e->peak_seq when live last changed */
    double calls, bytes; /* weighted heap allocating calls and their requested bytes */
    uint64_t raw_calls;  /* unweighted, to leave the site's other calls (mappings) alone */
    uint64_t raw_bytes;
    double live, blocks;       /* weighted live bytes and blocks */
    double peak, at_peak_live; /* highest live; live as of the last global peak */
};

struct est {
    uint64_t rate;
    struct eblock *b;
    size_t nb, bmask;
    struct esite *s;
    size_t ns, smask;
    double heap, heap_peak; /* weighted live requested bytes, and their highest value */
    uint32_t peak_seq;
    uint64_t raw_lost_blocks, raw_lost_bytes;
};

/* 1 - exp(-x) for x >= 0, without libm (the report does not link it): a series where the
 * difference would cancel, else exp(-x) = 2^-k exp(-r) with r in [0, ln 2). */
static double one_minus_exp_neg(double x)
{
    if (x < 1e-3)
        return x * (1 - x / 2 * (1 - x / 3 * (1 - x / 4 * (1 - x / 5))));
    if (x > 45)
        return 1;
    const double ln2 = 0.69314718055994530942;
    int k = (int)(x / ln2);
    double r = x - k * ln2, term = 1, sum = 1;
    for (int i = 1; i <= 16; i++) {
        term *= -r / i;
        sum += term;
    }
    while (k-- > 0)
        sum *= 0.5;
    return 1 - sum;
}

static double weight_eff(double seff, uint64_t rate)
{
    return 1.0 / one_minus_exp_neg(seff / (double)rate);
}

double est_weight(uint64_t size, uint64_t rate)
{
    return weight_eff((double)(size ? size : 1), rate);
}

struct est *est_new(uint64_t rate)
{
    struct est *e = xmalloc(sizeof *e);
    memset(e, 0, sizeof *e);
    e->rate = rate;
    e->bmask = 255;
    e->b = xmalloc((e->bmask + 1) * sizeof *e->b);
    memset(e->b, 0, (e->bmask + 1) * sizeof *e->b);
    e->smask = 255;
    e->s = xmalloc((e->smask + 1) * sizeof *e->s);
    memset(e->s, 0, (e->smask + 1) * sizeof *e->s);
    return e;
}

void est_free(struct est *e)
{
    if (e == NULL)
        return;
    free(e->b);
    free(e->s);
    free(e);
}

/* ---- blocks: linear probing, backward-shift delete ---------------------------------------- */

static size_t bhash(uint64_t addr, size_t mask)
{
    return (size_t)((addr >> 4) * 0x9e3779b97f4a7c15ULL >> 20) & mask;
}

static struct eblock *bfind(struct est *e, uint64_t addr)
{
    for (size_t i = bhash(addr, e->bmask);; i = (i + 1) & e->bmask) {
        if (e->b[i].addr == addr)
            return &e->b[i];
        if (e->b[i].addr == 0)
            return NULL;
    }
}

static void bput(struct eblock *t, size_t mask, const struct eblock *blk)
{
    size_t i = bhash(blk->addr, mask);
    while (t[i].addr != 0)
        i = (i + 1) & mask;
    t[i] = *blk;
}

static void binsert(struct est *e, const struct eblock *blk)
{
    if ((e->nb + 1) * 4 > (e->bmask + 1) * 3) {
        size_t slots = (e->bmask + 1) * 2;
        struct eblock *t = xmalloc(slots * sizeof *t);
        memset(t, 0, slots * sizeof *t);
        for (size_t i = 0; i <= e->bmask; i++)
            if (e->b[i].addr != 0)
                bput(t, slots - 1, &e->b[i]);
        free(e->b);
        e->b = t;
        e->bmask = slots - 1;
    }
    bput(e->b, e->bmask, blk);
    e->nb++;
}

static void bdelete(struct est *e, struct eblock *slot)
{
    size_t hole = (size_t)(slot - e->b), mask = e->bmask;
    for (size_t i = (hole + 1) & mask; e->b[i].addr != 0; i = (i + 1) & mask) {
        size_t home = bhash(e->b[i].addr, mask);
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            e->b[hole] = e->b[i];
            hole = i;
        }
    }
    e->b[hole].addr = 0;
    e->nb--;
}

/* ---- sites ---------------------------------------------------------------------------------- */

static struct esite *sfind(struct est *e, uint32_t stack, int create)
{
    if (create && (e->ns + 1) * 4 > (e->smask + 1) * 3) {
        size_t slots = (e->smask + 1) * 2;
        struct esite *t = xmalloc(slots * sizeof *t);
        memset(t, 0, slots * sizeof *t);
        for (size_t i = 0; i <= e->smask; i++) {
            if (!e->s[i].used)
                continue;
            size_t j = (size_t)(e->s[i].stack * 0x9e3779b1u) & (slots - 1);
            while (t[j].used)
                j = (j + 1) & (slots - 1);
            t[j] = e->s[i];
        }
        free(e->s);
        e->s = t;
        e->smask = slots - 1;
    }
    for (size_t i = (size_t)(stack * 0x9e3779b1u) & e->smask;; i = (i + 1) & e->smask) {
        if (e->s[i].used && e->s[i].stack == stack)
            return &e->s[i];
        if (!e->s[i].used) {
            if (!create)
                return NULL;
            e->s[i].used = 1;
            e->s[i].stack = stack;
            e->s[i].peak_seq = e->peak_seq;
            e->ns++;
            return &e->s[i];
        }
    }
}

static void stouch(struct est *e, struct esite *s)
{
    if (s->peak_seq != e->peak_seq) {
        s->at_peak_live = s->live;
        s->peak_seq = e->peak_seq;
    }
}

/* ---- events --------------------------------------------------------------------------------- */

/* Take the block at addr out; its effective size (0 when the trace never had it), and its
 * usable size in *size. */
static double release(struct est *e, uint64_t addr, uint64_t *size)
{
    struct eblock *b = bfind(e, addr);
    if (b == NULL)
        return 0; /* allocated before sampling saw it, or never sampled: expected */
    double w = weight_eff(b->seff, e->rate), seff = b->seff;
    *size = b->usable;
    struct esite *s = sfind(e, b->stack, 1);
    stouch(e, s);
    s->live -= w * (double)b->size;
    s->blocks -= w;
    e->heap -= w * (double)b->size;
    bdelete(e, b);
    return seff;
}

void est_heap(struct est *e, const struct rd_event *ev)
{
    uint64_t old_size = 0, usable = ev->size + ev->slack;
    double old = 0;
    switch (ev->kind) {
    case MTF_EV_FREE:
        if (ev->addr != 0)
            (void)release(e, ev->addr, &old_size);
        return;
    case MTF_EV_REALLOC:
    case MTF_EV_REALLOCARRAY:
        if (ev->old_addr != 0)
            old = release(e, ev->old_addr, &old_size);
        break;
    default:
        break;
    }
    if (ev->addr == 0)
        return;
    if (bfind(e, ev->addr) != NULL) /* its free was never recorded (the aggregate: reused) */
        (void)release(e, ev->addr, &old_size);
    /* A realloc: the shim's countdown ran on the growth of the usable size, so a chain is in
     * the trace with the chance of one allocation of all it grew by (estimate.h). */
    int grown = ev->kind == MTF_EV_REALLOC || ev->kind == MTF_EV_REALLOCARRAY;
    double seff = !grown    ? (double)(ev->size ? ev->size : 1)
                  : old > 0 ? old + (double)(usable > old_size ? usable - old_size : 0)
                            : (double)(usable ? usable : 1);
    struct eblock blk = { ev->addr, ev->size, usable, seff, ev->stack };
    double w = weight_eff(blk.seff, e->rate);
    binsert(e, &blk);
    struct esite *s = sfind(e, ev->stack, 1);
    stouch(e, s);
    s->calls += w;
    s->bytes += w * (double)ev->size;
    s->raw_calls++;
    s->raw_bytes += ev->size;
    s->live += w * (double)ev->size;
    s->blocks += w;
    if (s->live > s->peak)
        s->peak = s->live;
    e->heap += w * (double)ev->size;
    if (e->heap > e->heap_peak) {
        e->heap_peak = e->heap;
        e->peak_seq++;
    }
}

/* ---- the end -------------------------------------------------------------------------------- */

static uint64_t round_u64(double x)
{
    return x < 0.5 ? 0 : x >= 1.8e19 ? UINT64_MAX : (uint64_t)(x + 0.5);
}

static void apply_site(struct est *e, struct agg_site *a)
{
    e->raw_lost_blocks += a->live_blocks - a->reachable_blocks;
    e->raw_lost_bytes += a->live_bytes - a->reachable_bytes;
    struct esite *s = sfind(e, a->stack, 0);
    if (s == NULL)
        return; /* mappings only: always recorded, nothing to weigh */
    double at_peak = e->peak_seq == 0 ? 0 : s->peak_seq != e->peak_seq ? s->live : s->at_peak_live;
    /* reached blocks: their share of the site's sampled live blocks, weighted alike */
    double fb = a->live_bytes ? s->live / (double)a->live_bytes : 0;
    double fn = a->live_blocks ? s->blocks / (double)a->live_blocks : 0;
    a->reachable_bytes = round_u64((double)a->reachable_bytes * fb);
    a->reachable_blocks = round_u64((double)a->reachable_blocks * fn);
    a->calls = a->calls - s->raw_calls + round_u64(s->calls);
    a->total_bytes = a->total_bytes - s->raw_bytes + round_u64(s->bytes);
    a->live_bytes = round_u64(s->live);
    a->live_blocks = round_u64(s->blocks);
    a->peak_bytes = round_u64(s->peak);
    a->at_peak = round_u64(at_peak);
    if (a->reachable_bytes > a->live_bytes)
        a->reachable_bytes = a->live_bytes;
    if (a->reachable_blocks > a->live_blocks)
        a->reachable_blocks = a->live_blocks;
}

void est_apply(struct est *e, struct agg *a)
{
    e->raw_lost_blocks = e->raw_lost_bytes = 0;
    for (size_t i = 0; i < a->site_cap; i++)
        if (a->sites[i].stack != 0)
            apply_site(e, &a->sites[i]);
    if (a->site0.calls || a->site0.live_blocks)
        apply_site(e, &a->site0);
    /* what sampling leaves out is expected: a free or realloc of a block never recorded */
    a->unknown_frees = 0;
    /* The replay saw only sampled blocks: heapUsed at exit is the shim's own (EXIT snapshot,
     * exact), at the peak the larger of the estimate and any snapshot's exact figure. */
    a->peak.requested = round_u64(e->heap_peak);
    a->exit.requested = round_u64(e->heap);
    uint64_t peak = a->peak.requested;
    for (size_t i = 0; i < a->ntimeline; i++) {
        const struct agg_snapshot *s = &a->timeline[i];
        if (s->heap_used > peak)
            peak = s->heap_used;
        if (s->reason == MTF_SNAP_EXIT)
            a->exit.heap_used = s->heap_used;
    }
    a->peak.heap_used = peak;
    if (a->have_totals) {
        for (unsigned k = MTF_EV_MALLOC; k <= MTF_EV_PVALLOC; k++)
            a->counts[k] = a->totals.calls[k];
        a->exit.heap_blocks = a->totals.live_blocks > 0 ? (uint64_t)a->totals.live_blocks : 0;
    }
}

void est_raw_lost(const struct est *e, uint64_t *blocks, uint64_t *bytes)
{
    *blocks = e->raw_lost_blocks;
    *bytes = e->raw_lost_bytes;
}
