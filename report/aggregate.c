/* The report's replay of a trace (aggregate.h): a hash of live blocks, a hash of sites, the
 * page-range map shared with the shim (common/rangemap.c) for mappings, and the figures of
 * trace-format.md §7.2 kept up to date event by event.
 * The sites' "live at the global peak" figure is kept lazily: every new heap maximum bumps
 * peak_seq, and a site remembers its live bytes as of the last maximum only when it changes
 * after it, so a new peak costs O(1) however many sites there are.
 */
#include "aggregate.h"

#include <stdlib.h>
#include <string.h>

#include "estimate.h"
#include "util.h"

#define STACK_ID_MAX (64u << 20) /* ids above are not stored (a valid trace numbers from 1) */

/* ---- live blocks: open addressing on the address, linear probing, backward-shift delete ----
 * Keys (addresses) and values live in two arrays: a probe reads only the 8-byte keys, so the
 * probed slots of even a large table sit in few cache lines. The table grows when half full (a
 * quarter while small, see LIVE_SPARSE_SLOTS) and never shrinks: its size follows the peak number
 * of live blocks, not the trace's length. */

struct live_val {
    uint64_t size, slack;
    uint32_t stack;
    uint16_t cls;
    uint16_t reach; /* 0 not scanned, MTF_REACH_DIRECT/INDIRECT, or REACH_REACHABLE */
};

#define REACH_REACHABLE 3
#define LIVE_MIN_BITS   10
/* Below this many slots (1 MiB of keys and values) the table grows at a quarter full instead of
 * half: each probe or backward shift that meets an occupied slot is a mispredicted branch, and on
 * the churn benchmark (2,048 live blocks) the sparser table saves 9% of the report's CPU time.
 * Larger tables, which follow a program's peak live set, keep the half-full rule. */
#define LIVE_SPARSE_SLOTS (1u << 15)

struct agg_live {
    uint64_t *key;        /* block address per slot; 0: empty (an allocator never returns 0 for
                             a live block) */
    struct live_val *val; /* the block in the same slot */
    size_t n, mask;       /* blocks; mask + 1 slots, a power of two */
    unsigned shift;       /* 64 - log2(slots): Fibonacci hashing keeps the product's top bits */
};

static inline size_t addr_home(const struct agg_live *t, uint64_t addr)
{
    return (size_t)((addr * 0x9e3779b97f4a7c15ULL) >> t->shift);
}

static void live_alloc(struct agg_live *t, unsigned bits)
{
    size_t slots = (size_t)1 << bits;
    t->mask = slots - 1;
    t->shift = 64 - bits;
    t->key = calloc(slots, sizeof *t->key);
    if (t->key == NULL)
        t->key = memset(xmalloc(slots * sizeof *t->key), 0, slots * sizeof *t->key);
    t->val = xmalloc(slots * sizeof *t->val);
}

static void live_init(struct agg_live *t)
{
    t->n = 0;
    live_alloc(t, LIVE_MIN_BITS);
}

/* The slot holding `addr`, or the empty slot where it would go (key 0 there). */
static inline size_t live_probe(const struct agg_live *t, uint64_t addr)
{
    size_t i = addr_home(t, addr);
    while (t->key[i] != addr && t->key[i] != 0)
        i = (i + 1) & t->mask;
    return i;
}

static void live_grow(struct agg_live *t)
{
    struct agg_live old = *t;
    live_alloc(t, (unsigned)(64 - old.shift) + 1);
    for (size_t i = 0; i <= old.mask; i++)
        if (old.key[i] != 0) {
            size_t j = live_probe(t, old.key[i]);
            t->key[j] = old.key[i];
            t->val[j] = old.val[i];
        }
    free(old.key);
    free(old.val);
}

/* Empty slot `hole` (backward-shift deletion keeps probe chains intact). */
static void live_delete(struct agg_live *t, size_t hole)
{
    for (size_t i = (hole + 1) & t->mask; t->key[i] != 0; i = (i + 1) & t->mask) {
        size_t home = addr_home(t, t->key[i]);
        /* move slot i into the hole when its home is not in (hole, i] cyclically */
        if (((i - home) & t->mask) >= ((i - hole) & t->mask)) {
            t->key[hole] = t->key[i];
            t->val[hole] = t->val[i];
            hole = i;
        }
    }
    t->key[hole] = 0;
    t->n--;
}

/* ---- sites: open addressing on the stack id ----------------------------------------------- */

static size_t id_hash(uint32_t id, size_t mask)
{
    return (size_t)(id * 0x9e3779b1u) & mask;
}

static struct agg_site *site_slot(struct agg *a, uint32_t stack)
{
    if (stack == 0)
        return &a->site0;
    size_t mask = a->site_cap - 1;
    for (size_t i = id_hash(stack, mask);; i = (i + 1) & mask)
        if (a->sites[i].stack == stack || a->sites[i].stack == 0)
            return &a->sites[i];
}

static void sites_grow(struct agg *a)
{
    struct agg_site *old = a->sites;
    size_t old_cap = a->site_cap;
    a->site_cap = old_cap ? old_cap * 2 : 256;
    a->sites = xmalloc(a->site_cap * sizeof *a->sites);
    memset(a->sites, 0, a->site_cap * sizeof *a->sites);
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].stack != 0)
            *site_slot(a, old[i].stack) = old[i];
    free(old);
    memset(a->site_cache, 0, sizeof a->site_cache); /* its pointers went with the old array */
}

/* The site of `stack`, created when new. Pointers stay valid until the next site is created. */
static struct agg_site *site_get(struct agg *a, uint32_t stack)
{
    if (stack == 0)
        return &a->site0;
    struct agg_site_ref *c = &a->site_cache[stack & (AGG_SITE_CACHE - 1)];
    if (c->stack == stack && c->site != NULL)
        return c->site;
    if (a->site_cap == 0 || (a->nsites + 1) * 4 > a->site_cap * 3)
        sites_grow(a);
    struct agg_site *s = site_slot(a, stack);
    if (s->stack == 0) {
        s->stack = stack;
        s->peak_seq = a->peak_seq;
        a->nsites++;
    }
    *c = (struct agg_site_ref){ stack, s };
    return s;
}

const struct agg_site *agg_site(const struct agg *a, uint32_t stack)
{
    if (stack == 0)
        return a->site0.calls || a->site0.live_blocks ? &a->site0 : NULL;
    if (a->site_cap == 0)
        return NULL;
    const struct agg_site *s = site_slot((struct agg *)a, stack);
    return s->stack == stack ? s : NULL;
}

/* Before a site's live bytes change: remember what they were at the last global peak. */
static void site_touch(struct agg *a, struct agg_site *s)
{
    if (s->peak_seq != a->peak_seq) {
        s->at_peak_live = s->live_bytes;
        s->peak_seq = a->peak_seq;
    }
}

/* ---- setup ------------------------------------------------------------------------------- */

static void *grow_ranges(void *old, size_t old_bytes, size_t new_bytes)
{
    (void)old_bytes;
    if (new_bytes == 0) {
        free(old);
        return NULL;
    }
    return realloc(old, new_bytes);
}

struct agg *agg_new(void)
{
    struct agg *a = xmalloc(sizeof *a);
    memset(a, 0, sizeof *a);
    a->page_size = 4096;
    a->live = xmalloc(sizeof *a->live);
    live_init(a->live);
    mt_rangemap_init(&a->maps, grow_ranges);
    return a;
}

void agg_free(struct agg *a)
{
    if (a == NULL)
        return;
    free(a->exe);
    free(a->cmdline);
    free(a->sites);
    free(a->stacks);
    free(a->frames);
    free(a->live->key);
    free(a->live->val);
    free(a->live);
    mt_rangemap_fini(&a->maps);
    est_free(a->est);
    free(a->timeline);
    free(a);
}

void agg_header(struct agg *a, const struct mtf_file_header *h)
{
    a->pid = h->pid;
    a->parent_pid = h->parent_pid;
    a->origin = h->origin;
    /* a page size that is not a power of two would break page rounding: keep the default */
    if (h->page_size >= 512 && (h->page_size & (h->page_size - 1)) == 0)
        a->page_size = h->page_size;
    a->first_ts_ns = a->last_ts_ns = h->start_monotonic_ns;
    a->sample_bytes = h->sample_bytes;
    if (a->sample_bytes != 0 && a->est == NULL)
        a->est = est_new(a->sample_bytes);
}

/* ---- the memoryUsage figures ------------------------------------------------------------- */

static void usage_fill(const struct agg *a, struct agg_usage *u, uint64_t ts)
{
    *u = a->now;
    u->ts_ns = ts;
    u->external += a->maps.bytes[MTF_CLASS_EXTERNAL];
    u->mapped += a->maps.bytes[MTF_CLASS_MAPPED];
    u->have_snapshot = a->have_snapshot;
    u->snap_reason = a->last_snap_reason;
    u->snap_ts_ns = a->last_snap_ts;
    u->rss = a->last_snap_rss;
    u->heap_total = a->last_snap_heap_total;
}

static void check_peak(struct agg *a, uint64_t ts)
{
    if (a->now.heap_used <= a->peak.heap_used)
        return;
    usage_fill(a, &a->peak, ts);
    a->peak_seq++;
}

/* Add `size + slack` to the class's figure (heap blocks count in heapUsed; a block a rule moved
 * counts there instead, trace-format.md §7.2). sign: +1 or -1. */
static void count_block(struct agg *a, uint32_t cls, uint64_t size, uint64_t slack, int sign)
{
    uint64_t bytes = size + slack;
    switch (cls) {
    case MTF_CLASS_HEAP:
        if (sign > 0) {
            a->now.heap_used += bytes;
            a->now.requested += size;
            a->now.heap_blocks++;
        } else {
            a->now.heap_used -= bytes;
            a->now.requested -= size;
            a->now.heap_blocks--;
        }
        break;
    case MTF_CLASS_EXTERNAL:
        a->now.external = sign > 0 ? a->now.external + bytes : a->now.external - bytes;
        break;
    default:
        a->now.mapped = sign > 0 ? a->now.mapped + bytes : a->now.mapped - bytes;
        break;
    }
}

/* Take the block in `slot` out of the live set and its figures. */
static void drop_block(struct agg *a, size_t slot)
{
    const struct live_val *v = &a->live->val[slot];
    count_block(a, v->cls, v->size, v->slack, -1);
    struct agg_site *s = site_get(a, v->stack);
    site_touch(a, s);
    s->live_bytes -= v->size;
    s->live_blocks--;
    live_delete(a->live, slot);
}

static void free_block(struct agg *a, uint64_t addr)
{
    size_t slot = live_probe(a->live, addr);
    if (a->live->key[slot] == 0) {
        a->unknown_frees++;
        return;
    }
    drop_block(a, slot);
}

/* A successful allocating call of `ev` creating a block of class `cls`. */
static void alloc_block(struct agg *a, const struct rd_event *ev, uint32_t cls)
{
    struct agg_live *t = a->live;
    if ((t->n + 1) * (t->mask + 1 < LIVE_SPARSE_SLOTS ? 4 : 2) > t->mask + 1)
        live_grow(t);
    size_t slot = live_probe(t, ev->addr);
    if (t->key[slot] != 0) { /* its free was never recorded */
        a->reused_addresses++;
        drop_block(a, slot);
        slot = live_probe(t, ev->addr);
    }
    struct agg_site *s = site_get(a, ev->stack);
    s->calls++;
    s->total_bytes += ev->size;
    t->key[slot] = ev->addr;
    t->val[slot] = (struct live_val){ ev->size, ev->slack, ev->stack, (uint16_t)cls, 0 };
    t->n++;
    count_block(a, cls, ev->size, ev->slack, +1);
    site_touch(a, s);
    s->live_bytes += ev->size;
    s->live_blocks++;
    if (s->live_bytes > s->peak_bytes)
        s->peak_bytes = s->live_bytes;
}

static void count_call(struct agg *a, const struct rd_event *ev)
{
    struct agg_site *s = site_get(a, ev->stack);
    s->calls++;
    s->total_bytes += ev->size;
}

static uint32_t event_class(const struct rd_event *ev, uint32_t def)
{
    return ev->cls != RD_CLASS_DEFAULT && ev->cls < MTF_CLASS_COUNT ? ev->cls : def;
}

/* ---- events ------------------------------------------------------------------------------ */

static void on_heap(struct agg *a, const struct rd_event *ev)
{
    if (a->est != NULL)
        est_heap(a->est, ev);
    switch (ev->kind) {
    case MTF_EV_FREE:
        if (ev->addr != 0)
            free_block(a, ev->addr);
        return;
    case MTF_EV_REALLOC:
    case MTF_EV_REALLOCARRAY:
        if (ev->old_addr != 0)
            free_block(a, ev->old_addr);
        break;
    default:
        break;
    }
    if (ev->addr == 0)
        return;
    alloc_block(a, ev, event_class(ev, MTF_CLASS_HEAP));
    check_peak(a, ev->ts_ns);
}

static void on_map(struct agg *a, const struct rd_event *ev)
{
    uint64_t page = a->page_size;
    switch (ev->kind) {
    case MTF_EV_MMAP:
    case MTF_EV_MMAP64:
        count_call(a, ev);
        mt_acct_mmap(&a->maps, ev->addr, ev->size, page,
                     event_class(ev, mt_mmap_default_class(ev->mflags)), ev->stack, NULL, NULL);
        break;
    case MTF_EV_MUNMAP:
        mt_acct_munmap(&a->maps, ev->addr, ev->size, page, NULL, NULL);
        break;
    case MTF_EV_MREMAP: {
        int explicit_cls = ev->cls != RD_CLASS_DEFAULT ? ev->cls : -1;
        uint32_t cls = mt_acct_mremap_class(&a->maps, ev->old_addr, explicit_cls);
        count_call(a, ev);
        mt_acct_mremap(&a->maps, ev->old_addr, ev->old_len, ev->addr, ev->size, ev->mflags, page,
                       cls, ev->stack, NULL, NULL);
        break;
    }
    }
}

static void on_stack(struct agg *a, const struct rd_event *ev)
{
    uint32_t id = ev->stack;
    if (id == 0 || id > STACK_ID_MAX)
        return;
    if (id >= a->stack_cap) {
        size_t cap = a->stack_cap ? a->stack_cap : 256;
        while (cap <= id)
            cap *= 2;
        a->stacks = xrealloc(a->stacks, cap * sizeof *a->stacks);
        memset(a->stacks + a->stack_cap, 0, (cap - a->stack_cap) * sizeof *a->stacks);
        a->stack_cap = cap;
    }
    struct agg_stack *s = &a->stacks[id];
    if (s->defined) /* a repeated definition carries the same frames (§7.1) */
        return;
    if (a->nframes_used + ev->nframes > a->frame_cap) {
        size_t cap = a->frame_cap ? a->frame_cap : 4096;
        while (cap < a->nframes_used + ev->nframes)
            cap *= 2;
        a->frames = xrealloc(a->frames, cap * sizeof *a->frames);
        a->frame_cap = cap;
    }
    memcpy(a->frames + a->nframes_used, ev->frames, ev->nframes * sizeof *ev->frames);
    s->first = a->nframes_used;
    s->nframes = ev->nframes;
    s->ts_ns = ev->ts_ns;
    s->defined = 1;
    s->truncated = (ev->flags & MTF_EVF_TRUNC) != 0;
    a->nframes_used += ev->nframes;
}

static void on_snapshot(struct agg *a, const struct rd_event *ev)
{
    if (a->ntimeline == a->timeline_cap) {
        a->timeline_cap = a->timeline_cap ? a->timeline_cap * 2 : 16;
        a->timeline = xrealloc(a->timeline, a->timeline_cap * sizeof *a->timeline);
    }
    struct agg_snapshot *s = &a->timeline[a->ntimeline++];
    struct agg_usage u;
    usage_fill(a, &u, ev->ts_ns);
    memset(s, 0, sizeof *s);
    s->ts_ns = ev->ts_ns;
    s->reason = ev->snap_reason;
    s->label_len = ev->label_len > MTF_LABEL_MAX ? MTF_LABEL_MAX : ev->label_len;
    memcpy(s->label, ev->label, s->label_len);
    s->rss = ev->rss;
    s->heap_total = ev->heap_total;
    s->heap_used = ev->heap_used;
    s->external = ev->external;
    s->mapped = ev->mapped;
    s->rss_peak = ev->rss_peak;
    s->replay_heap_used = u.heap_used;
    s->replay_external = u.external;
    s->replay_mapped = u.mapped;

    a->have_snapshot = 1;
    a->last_snap_rss = ev->rss;
    a->last_snap_heap_total = ev->heap_total;
    a->last_snap_ts = ev->ts_ns;
    a->last_snap_reason = ev->snap_reason;
    if (ev->snap_reason == MTF_SNAP_EXIT) {
        a->have_exit_snapshot = 1;
        a->exit_rss = ev->rss;
        a->exit_heap_total = ev->heap_total;
        a->exit_rss_peak = ev->rss_peak;
        a->exit_snap_ts = ev->ts_ns;
    }
}

static void on_limit(struct agg *a, const struct rd_event *ev)
{
    a->limits_total++;
    if (a->nlimits == AGG_MAX_LIMITS)
        return;
    a->limits[a->nlimits++] = (struct agg_limit){
        .ts_ns = ev->ts_ns,
        .call = ev->call,
        .cls = ev->limit_class,
        .mode = ev->limit_mode,
        .stack = ev->stack,
        .limit = ev->limit,
        .live = ev->live,
        .request = ev->size,
    };
}

static void on_event(struct agg *a, const struct rd_event *ev)
{
    if (ev->kind < MTF_EV_KIND_COUNT) {
        a->counts[ev->kind]++;
        if (ev->flags & MTF_EVF_FAILED)
            a->failed[ev->kind]++;
    }
    if (ev->kind == MTF_EV_STACK) {
        on_stack(a, ev);
        return;
    }
    if (ev->ts_ns > a->last_ts_ns)
        a->last_ts_ns = ev->ts_ns;
    if (ev->ts_ns < a->first_ts_ns)
        a->first_ts_ns = ev->ts_ns;
    if (ev->flags & MTF_EVF_FAILED) /* the call changed no memory (§7.2) */
        return;
    if (ev->kind >= MTF_EV_MALLOC && ev->kind <= MTF_EV_PVALLOC)
        on_heap(a, ev);
    else if (ev->kind >= MTF_EV_MMAP && ev->kind <= MTF_EV_MREMAP)
        on_map(a, ev);
    else if (ev->kind == MTF_EV_SNAPSHOT)
        on_snapshot(a, ev);
    else if (ev->kind == MTF_EV_LIMIT)
        on_limit(a, ev);
}

static void on_process(struct agg *a, const struct rd_process *p)
{
    if (a->exe != NULL)
        return;
    a->exe = xstrdup(p->exe);
    a->cmdline = xmalloc(p->argv_len + 1);
    memcpy(a->cmdline, p->argv, p->argv_len);
    a->cmdline[p->argv_len] = '\0';
    for (uint32_t i = 0; p->argv_len && i + 1 < p->argv_len; i++)
        if (a->cmdline[i] == '\0')
            a->cmdline[i] = ' ';
}

/* One REACH record: the blocks it lists are lost; when the scan's last record is in, every other
 * block live now was reached. A new scan starts from nothing. */
static void on_reach(struct agg *a, const struct rd_reach *r)
{
    struct agg_live *t = a->live;
    if (!a->reach_open)
        for (size_t i = 0; i <= t->mask; i++)
            t->val[i].reach = 0;
    a->reach_open = 1;
    for (uint32_t i = 0; i < r->h.count; i++) {
        uint64_t addr = r->entries[i].addr;
        size_t slot = addr != 0 ? live_probe(t, addr) : 0;
        if (addr != 0 && t->key[slot] == addr &&
            (r->entries[i].state == MTF_REACH_DIRECT || r->entries[i].state == MTF_REACH_INDIRECT))
            t->val[slot].reach = (uint16_t)r->entries[i].state;
    }
    if (!(r->h.flags & MTF_REACHF_LAST))
        return;
    for (size_t i = 0; i <= t->mask; i++)
        if (t->key[i] != 0 && t->val[i].reach == 0)
            t->val[i].reach = REACH_REACHABLE;
    a->reach_open = 0;
    a->have_reach = 1;
    a->reach_flags = r->h.flags;
}

/* After a scan: each site's live blocks that were reached. */
static void count_reachable(struct agg *a)
{
    const struct agg_live *t = a->live;
    for (size_t i = 0; i <= t->mask; i++) {
        if (t->key[i] == 0 || t->val[i].reach != REACH_REACHABLE)
            continue;
        struct agg_site *s = site_get(a, t->val[i].stack);
        s->reachable_bytes += t->val[i].size;
        s->reachable_blocks++;
    }
}

static void note_ts(struct agg *a, uint64_t ts)
{
    if (ts > a->last_ts_ns)
        a->last_ts_ns = ts;
    if (ts < a->first_ts_ns)
        a->first_ts_ns = ts;
}

void agg_item(struct agg *a, const struct rd_item *item)
{
    switch (item->type) {
    case RD_ITEM_EVENT:
        on_event(a, &item->ev);
        break;
    case RD_ITEM_PROCESS:
        note_ts(a, item->process.ts_ns);
        on_process(a, &item->process);
        break;
    case RD_ITEM_MODULE:
        note_ts(a, item->module.ts_ns);
        break;
    case RD_ITEM_END:
        note_ts(a, item->end.ts_ns);
        a->have_end = 1;
        a->end = item->end;
        break;
    case RD_ITEM_LOSS:
        note_ts(a, item->loss.ts_ns);
        break;
    case RD_ITEM_REACH: /* the exit-time leak scan: reached blocks are not leaks */
        note_ts(a, item->reach.h.ts_ns);
        on_reach(a, &item->reach);
        break;
    case RD_ITEM_TOTALS: /* a sampled trace's exact figures (trace-format.md §9.2) */
        note_ts(a, item->totals.ts_ns);
        a->have_totals = 1;
        a->totals = item->totals;
        break;
    }
}

void agg_finish(struct agg *a)
{
    if (a->finished)
        return;
    a->finished = 1;
    usage_fill(a, &a->exit, a->last_ts_ns);
    if (a->have_reach)
        count_reachable(a);
    if (a->have_exit_snapshot) {
        a->exit.have_snapshot = 1;
        a->exit.snap_reason = MTF_SNAP_EXIT;
        a->exit.snap_ts_ns = a->exit_snap_ts;
        a->exit.rss = a->exit_rss;
        a->exit.heap_total = a->exit_heap_total;
        a->exit.have_rss_peak = 1;
        a->exit.rss_peak = a->exit_rss_peak;
    }
    for (size_t i = 0; i <= a->site_cap; i++) {
        struct agg_site *s = i < a->site_cap ? &a->sites[i] : &a->site0;
        if (i < a->site_cap && s->stack == 0)
            continue;
        s->at_peak = a->peak_seq == 0             ? 0
                     : s->peak_seq != a->peak_seq ? s->live_bytes
                                                  : s->at_peak_live;
    }
    if (a->est != NULL)
        est_apply(a->est, a); /* sampled: site figures become estimates */
}

struct agg_site *agg_sites(const struct agg *a, size_t *n)
{
    struct agg_site *out = xmalloc((a->nsites + 1) * sizeof *out);
    size_t k = 0;
    for (size_t i = 0; i < a->site_cap; i++)
        if (a->sites[i].stack != 0)
            out[k++] = a->sites[i];
    if (a->site0.calls || a->site0.live_blocks)
        out[k++] = a->site0;
    *n = k;
    return out;
}

uint32_t agg_stack(const struct agg *a, uint32_t id, const uint64_t **frames, uint64_t *ts_ns,
                   int *truncated)
{
    *frames = NULL;
    *ts_ns = 0;
    *truncated = 0;
    if (id == 0 || id >= a->stack_cap || !a->stacks[id].defined)
        return 0;
    const struct agg_stack *s = &a->stacks[id];
    *frames = a->frames + s->first;
    *ts_ns = s->ts_ns;
    *truncated = s->truncated;
    return s->nframes;
}

void agg_live_blocks(const struct agg *a, agg_block_fn fn, void *ctx)
{
    const struct agg_live *t = a->live;
    for (size_t i = 0; i <= t->mask; i++)
        if (t->key[i] != 0)
            fn(ctx, t->key[i], t->val[i].size, t->val[i].slack, t->val[i].stack, t->val[i].cls);
}
