/* report/order.c on real traces: tests/progs/threads_churn under the shim (many threads, small
 * buffers so that chunks interleave, a thread that outlives main, blocks freed by another
 * thread). order_next() must yield exactly the events reader_next() yields (as a multiset), in
 * non-decreasing time, and replaying the heap events in that order must never see an address
 * allocated twice without a free in between.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "order.h"
#include "reader.h"

TestSuite(order, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 120);

/* ---- an order-independent fingerprint of a set of events --------------------------------------
 */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

struct print {
    uint64_t n, sum, sum2;
    uint64_t items[RD_ITEM_LOSS + 8]; /* per item type */
};

static void print_add(struct print *p, const struct rd_item *item)
{
    p->items[item->type < RD_ITEM_LOSS + 8 ? item->type : 0]++;
    if (item->type != RD_ITEM_EVENT)
        return;
    const struct rd_event *e = &item->ev;
    uint64_t h = mix(e->kind | (uint64_t)e->flags << 8 | (uint64_t)e->thread_serial << 16);
    const uint64_t f[] = { e->tid,   e->ts_ns, e->addr,    e->old_addr,     e->size,
                           e->slack, e->stack, e->nframes, e->chunk_offset, e->pre_ns };
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        h = mix(h ^ f[i]);
    for (uint32_t i = 0; e->kind == MTF_EV_STACK && i < e->nframes; i++)
        h = mix(h ^ e->frames[i]);
    p->n++;
    p->sum += h;
    p->sum2 += mix(h ^ 0x5555555555555555ULL);
}

/* ---- live heap addresses ------------------------------------------------------------------------
 */

/* Open addressing, linear probing, backward-shift deletion; 0 is never a key. */
struct set {
    uint64_t *k;
    size_t cap, n;
};

static size_t slot_of(const struct set *s, uint64_t a)
{
    return (size_t)mix(a) & (s->cap - 1);
}

static int set_has(const struct set *s, uint64_t a)
{
    if (s->cap == 0)
        return 0;
    for (size_t i = slot_of(s, a);; i = (i + 1) & (s->cap - 1)) {
        if (s->k[i] == a)
            return 1;
        if (s->k[i] == 0)
            return 0;
    }
}

static void set_add(struct set *s, uint64_t a);

static void set_grow(struct set *s)
{
    struct set old = *s;
    s->cap = old.cap ? old.cap * 2 : 1024;
    s->k = calloc(s->cap, sizeof(uint64_t));
    s->n = 0;
    cr_assert(s->k != NULL);
    for (size_t i = 0; i < old.cap; i++)
        if (old.k[i])
            set_add(s, old.k[i]);
    free(old.k);
}

static void set_add(struct set *s, uint64_t a)
{
    if (2 * (s->n + 1) > s->cap)
        set_grow(s);
    size_t i = slot_of(s, a);
    while (s->k[i] != 0)
        i = (i + 1) & (s->cap - 1);
    s->k[i] = a;
    s->n++;
}

static void set_del(struct set *s, uint64_t a)
{
    if (s->cap == 0)
        return;
    size_t i = slot_of(s, a);
    while (s->k[i] != a) {
        if (s->k[i] == 0)
            return;
        i = (i + 1) & (s->cap - 1);
    }
    s->k[i] = 0;
    s->n--;
    for (size_t j = (i + 1) & (s->cap - 1); s->k[j] != 0; j = (j + 1) & (s->cap - 1)) {
        size_t home = slot_of(s, s->k[j]);
        /* move k[j] into the hole unless its home lies cyclically in (i, j] */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            s->k[i] = s->k[j];
            s->k[j] = 0;
            i = j;
        }
    }
}

/* Replay state of the heap events of the merged stream. */
struct replay {
    struct set live;
    uint64_t twice; /* allocations of an address already live */
    char first[200];
};

static void alloc_at(struct replay *r, const struct rd_event *e, uint64_t a)
{
    if (a == 0)
        return;
    if (set_has(&r->live, a)) {
        if (r->twice++ == 0)
            snprintf(r->first, sizeof(r->first),
                     "%s by thread %u at %" PRIu64 " ns returned 0x%" PRIx64 ", still live",
                     reader_kind_name(e->kind), e->thread_serial, e->ts_ns, a);
        return;
    }
    set_add(&r->live, a);
}

static void replay(struct replay *r, const struct rd_event *e)
{
    if (e->flags & MTF_EVF_FAILED)
        return;
    switch (e->kind) {
    case MTF_EV_MALLOC:
    case MTF_EV_CALLOC:
    case MTF_EV_POSIX_MEMALIGN:
    case MTF_EV_ALIGNED_ALLOC:
    case MTF_EV_MEMALIGN:
    case MTF_EV_VALLOC:
    case MTF_EV_PVALLOC:
        alloc_at(r, e, e->addr);
        break;
    case MTF_EV_REALLOC:
    case MTF_EV_REALLOCARRAY:
        if (e->old_addr)
            set_del(&r->live, e->old_addr);
        alloc_at(r, e, e->addr);
        break;
    case MTF_EV_FREE:
        if (e->addr)
            set_del(&r->live, e->addr); /* blocks from before tracing are simply unknown */
        break;
    }
}

/* ---- the comparison ---------------------------------------------------------------------------
 */

struct result {
    int rc;
    struct print p;
    struct rd_status st;
    char err[600];
};

static void by_reader(const char *path, struct result *res)
{
    memset(res, 0, sizeof(*res));
    struct reader *r;
    res->rc = reader_open(&r, path);
    struct rd_item item;
    if (res->rc == 0)
        while ((res->rc = reader_next(r, &item)) > 0)
            print_add(&res->p, &item);
    res->st = *reader_status(r);
    snprintf(res->err, sizeof(res->err), "%s", reader_error(r));
    reader_close(r);
}

static void by_order(const char *path, struct result *res, struct replay *rp, uint64_t *back)
{
    memset(res, 0, sizeof(*res));
    struct order *o;
    res->rc = order_open(&o, path);
    struct rd_item item;
    uint64_t prev = 0;
    while (res->rc >= 0 && (res->rc = order_next(o, &item)) > 0) {
        print_add(&res->p, &item);
        if (item.type != RD_ITEM_EVENT)
            continue;
        if (item.ev.ts_ns < prev && (*back)++ == 0)
            cr_log_error("thread %u at %" PRIu64 " ns follows an event at %" PRIu64 " ns",
                         item.ev.thread_serial, item.ev.ts_ns, prev);
        prev = item.ev.ts_ns > prev ? item.ev.ts_ns : prev;
        replay(rp, &item.ev);
    }
    res->st = *order_status(o);
    snprintf(res->err, sizeof(res->err), "%s", order_error(o));
    order_close(o);
}

/* Run threads_churn with args (MEMTRACE_BUFFER=4K unless told) and compare the two readers. */
static void check_churn(char *const args[], const char *buffer)
{
    char *argv[8] = { (char *)h_path("progs/threads_churn") };
    for (int i = 0; args[i] && i < 6; i++)
        argv[i + 1] = args[i];
    char env_buf[64];
    snprintf(env_buf, sizeof(env_buf), "MEMTRACE_BUFFER=%s", buffer);
    char *env[] = { env_buf, NULL };
    struct h_run run = h_run(argv, env, 1, NULL, 100);
    cr_assert(run.exited && run.status == 0, "threads_churn %s: %s %d, stderr:\n%s", args[0],
              run.exited ? "exit status" : "signal", run.status, run.err);
    h_run_free(&run);
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    cr_assert_eq(n, 1, "expected 1 trace file, found %zu", n);

    struct result a, b;
    struct replay rp = { 0 };
    uint64_t back = 0;
    by_reader(paths[0], &a);
    by_order(paths[0], &b, &rp, &back);
    cr_assert_eq(a.rc, 0, "%s", a.err);
    cr_assert_eq(b.rc, a.rc, "order: %s", b.err);
    cr_assert(a.st.complete, "the trace is complete");
    cr_assert_gt(a.st.chunks, 8, "small buffers make many chunks (%" PRIu64 ")", a.st.chunks);
    cr_assert_eq(b.p.n, a.p.n, "events: order %" PRIu64 ", reader %" PRIu64, b.p.n, a.p.n);
    cr_assert(b.p.sum == a.p.sum && b.p.sum2 == a.p.sum2, "the same events, as a multiset");
    for (size_t t = 0; t < sizeof(a.p.items) / sizeof(a.p.items[0]); t++)
        cr_assert_eq(b.p.items[t], a.p.items[t], "items of type %zu", t);
    cr_assert_eq(b.st.events, a.st.events);
    cr_assert_eq(b.st.records, a.st.records);
    cr_assert_eq(b.st.valid_bytes, a.st.valid_bytes);
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++)
        cr_assert_eq(b.st.kind_counts[k], a.st.kind_counts[k], "%s", reader_kind_name(k));
    cr_assert_eq(back, 0, "%" PRIu64 " events go back in time", back);
    cr_assert_eq(rp.twice, 0, "%" PRIu64 " addresses allocated twice, first: %s", rp.twice,
                 rp.first);
    free(rp.live.k);
    h_free_paths(paths, n);
}

Test(order, churn_threads_small_buffers)
{
    check_churn((char *const[]){ "churn", "8", "20000", NULL }, "4K");
}

Test(order, churn_default_buffers)
{
    check_churn((char *const[]){ "churn", "4", "50000", NULL }, "256K");
}

Test(order, blocks_freed_by_another_thread)
{
    check_churn((char *const[]){ "cross", "20000", NULL }, "4K");
}

Test(order, thread_outliving_main)
{
    check_churn((char *const[]){ "detached", "30", NULL }, "4K");
}
