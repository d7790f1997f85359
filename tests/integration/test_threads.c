/* Threads: per-thread buffers lose and duplicate nothing. Every thread's events land in the
 * trace exactly once under its own thread serial, whether the thread filled many buffers, exited
 * with a partly filled one, was still allocating when main returned, or freed memory from a key
 * destructor that runs after the shim's own (pitfalls.md §6). Program:
 * tests/progs/threads_churn.c. Big traces are streamed through the reader, not loaded.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(threads, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 60);

#define MAX_SERIAL 512

/* Run threads_churn with args under the shim, plus the "NAME=value" entries of env (may be
 * NULL); returns the path of its only trace (caller frees). */
static char *run_churn_env(char *const args[], char *const env[])
{
    char *argv[8] = { (char *)h_path("progs/threads_churn") };
    for (int i = 0; args[i] && i < 6; i++)
        argv[i + 1] = args[i];
    struct h_run r = h_run(argv, env, 1, NULL, 55);
    cr_assert(r.exited && r.status == 0, "threads_churn %s %s: %s %d, stderr:\n%s", args[0],
              args[1], r.exited ? "exit status" : "signal", r.status, r.err);
    h_run_free(&r);
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    cr_assert_eq(n, 1, "expected 1 trace file, found %zu", n);
    return paths[0];
}

static char *run_churn(char *const args[])
{
    return run_churn_env(args, NULL);
}

static char *const compress_env[] = { "MEMTRACE_COMPRESS=1", NULL };

/* EVENTS records of `path` with the zstd flag, and all of them. */
static void count_compressed(const char *path, uint64_t *packed, uint64_t *chunks)
{
    struct reader *r = NULL;
    cr_assert_eq(reader_open(&r, path), 0, "%s: %s", path, r ? reader_error(r) : "no memory");
    struct rd_record rec;
    int rc;
    *packed = *chunks = 0;
    while ((rc = reader_next_record(r, &rec)) > 0) {
        if (rec.type != MTF_REC_EVENTS)
            continue;
        ++*chunks;
        *packed += (rec.chunk.flags & MTF_CHUNKF_ZSTD) != 0;
    }
    cr_assert_eq(rc, 0, "%s: %s", path, reader_error(r));
    reader_close(r);
}

/* Per-thread-serial tallies, filled by streaming the trace. */
struct per_thread {
    uint64_t malloc_by_size; /* MALLOC events of the size this test looks for */
    uint64_t size_seen;      /* that size (0: none yet) */
    int mixed_sizes;         /* MALLOCs of two different watched sizes in one thread */
    uint64_t addrs[8];       /* distinct addresses those MALLOCs returned */
    int naddrs;
    uint64_t frees_of_addrs; /* FREE events of one of those addresses */
    uint64_t frees;          /* FREE events, NULL excluded */
    uint64_t events;         /* non-STACK events */
};

struct tally {
    struct per_thread t[MAX_SERIAL];
    uint64_t counts[MTF_EV_KIND_COUNT];
    int rc;
    char error[512];
};

static int watched(uint64_t size, uint64_t lo, uint64_t hi)
{
    return size >= lo && size < hi;
}

/* Stream `path`, counting MALLOCs with lo <= size < hi per thread serial, and per thread the
 * frees of the addresses those MALLOCs returned (addresses are collected in a first pass so a
 * chunk written late, STOLEN, still counts). */
static void tally(const char *path, uint64_t lo, uint64_t hi, struct tally *y)
{
    memset(y, 0, sizeof *y);
    for (int pass = 0; pass < 2; pass++) {
        struct reader *r = NULL;
        y->rc = reader_open(&r, path);
        cr_assert_eq(y->rc, 0, "%s: %s", path, r ? reader_error(r) : "out of memory");
        struct rd_item it;
        while ((y->rc = reader_next(r, &it)) > 0) {
            if (it.type != RD_ITEM_EVENT || it.ev.kind == MTF_EV_STACK)
                continue;
            const struct rd_event *e = &it.ev;
            cr_assert_lt(e->thread_serial, MAX_SERIAL, "thread serial %u", e->thread_serial);
            struct per_thread *p = &y->t[e->thread_serial];
            if (pass == 0) {
                if (e->kind != MTF_EV_MALLOC || !watched(e->size, lo, hi))
                    continue;
                p->malloc_by_size++;
                if (p->size_seen != 0 && p->size_seen != e->size)
                    p->mixed_sizes = 1;
                p->size_seen = e->size;
                int k = 0;
                while (k < p->naddrs && p->addrs[k] != e->addr)
                    k++;
                if (k == p->naddrs && p->naddrs < 8)
                    p->addrs[p->naddrs++] = e->addr;
                continue;
            }
            y->counts[e->kind]++;
            p->events++;
            if (e->kind != MTF_EV_FREE || e->addr == 0)
                continue;
            p->frees++;
            for (int k = 0; k < p->naddrs; k++)
                if (p->addrs[k] == e->addr)
                    p->frees_of_addrs++;
        }
        snprintf(y->error, sizeof y->error, "%s", reader_error(r));
        reader_close(r);
        cr_assert_eq(y->rc, 0, "%s: cannot decode: %s", path, y->error);
    }
}

/* END present and nothing dropped; every event END says was written is in the file (before
 * END, or after it when a thread was still running during exit). With no thread running at
 * exit (`settled`), END counts exactly the events before it and none follow. */
static void expect_complete(const char *path, int settled)
{
    struct end_tally y;
    end_tally(path, &y);
    cr_assert_geq(y.ends, 1, "%s: no END record", path);
    cr_expect_eq(y.end.dropped, 0, "%s: END.dropped %llu", path, (unsigned long long)y.end.dropped);
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++) {
        cr_expect_leq(y.end.counts[k], y.total[k],
                      "%s: %s: END says %llu were written, the file holds %llu (lost, not "
                      "counted as dropped)",
                      path, reader_kind_name(k), (unsigned long long)y.end.counts[k],
                      (unsigned long long)y.total[k]);
        if (settled)
            cr_expect(y.end.counts[k] == y.before[k] && y.before[k] == y.total[k],
                      "%s: %s: END says %llu, %llu before END, %llu in the file", path,
                      reader_kind_name(k), (unsigned long long)y.end.counts[k],
                      (unsigned long long)y.before[k], (unsigned long long)y.total[k]);
    }
}

#define CHURN_THREADS 16
#define CHURN_PAIRS   50000

/* 16 threads fill many buffers each: every call recorded once, under its own thread. */
static void sixteen_threads(char *const env[])
{
    char *path = run_churn_env((char *[]){ "churn", "16", "50000", NULL }, env);
    struct tally *y = malloc(sizeof *y);
    tally(path, 5000, 5000 + CHURN_THREADS, y);
    expect_complete(path, 1);
    int owner[CHURN_THREADS];
    for (int k = 0; k < CHURN_THREADS; k++)
        owner[k] = -1;
    uint64_t total = 0;
    for (int s = 1; s < MAX_SERIAL; s++) {
        const struct per_thread *p = &y->t[s];
        if (p->malloc_by_size == 0)
            continue;
        cr_assert(!p->mixed_sizes, "thread serial %d holds mallocs of two threads' sizes", s);
        int k = (int)(p->size_seen - 5000);
        cr_assert_eq(owner[k], -1, "thread %d's mallocs split over serials %d and %d", k, owner[k],
                     s);
        owner[k] = s;
        total += p->malloc_by_size;
        cr_expect_eq(p->malloc_by_size, CHURN_PAIRS,
                     "thread %d (serial %d): %llu malloc events, it made %d calls", k, s,
                     (unsigned long long)p->malloc_by_size, CHURN_PAIRS);
        cr_expect_eq(p->frees_of_addrs, CHURN_PAIRS,
                     "thread %d (serial %d): %llu frees of its blocks, it made %d calls", k, s,
                     (unsigned long long)p->frees_of_addrs, CHURN_PAIRS);
    }
    for (int k = 0; k < CHURN_THREADS; k++)
        cr_expect_neq(owner[k], -1, "thread %d left no malloc(%d) in the trace", k, 5000 + k);
    cr_expect_eq(total, (uint64_t)CHURN_THREADS * CHURN_PAIRS,
                 "%llu malloc events from the workers, they made %d calls",
                 (unsigned long long)total, CHURN_THREADS * CHURN_PAIRS);
    free(y);
    if (env != NULL) { /* compressed: the full buffers went out as zstd frames */
        uint64_t packed, chunks;
        count_compressed(path, &packed, &chunks);
        cr_expect_geq(packed, (uint64_t)CHURN_THREADS * 2,
                      "%llu of %llu chunks compressed, expected every full buffer's",
                      (unsigned long long)packed, (unsigned long long)chunks);
    }
    free(path);
}

Test(threads, sixteen_threads_lose_and_duplicate_no_event)
{
    sixteen_threads(NULL);
}

/* The same with MEMTRACE_COMPRESS=1: exact counts from compressed chunks. */
Test(threads, sixteen_threads_compressed_lose_and_duplicate_no_event)
{
    sixteen_threads(compress_env);
}

/* 64 threads with 3 pairs each: nothing fills a buffer, everything is flushed at thread exit. */
static void partly_filled(char *const env[])
{
    char *path = run_churn_env((char *[]){ "churn", "64", "3", NULL }, env);
    struct tally *y = malloc(sizeof *y);
    tally(path, 5000, 5000 + 64, y);
    expect_complete(path, 1);
    int threads = 0;
    for (int s = 1; s < MAX_SERIAL; s++) {
        const struct per_thread *p = &y->t[s];
        if (p->malloc_by_size == 0)
            continue;
        threads++;
        cr_expect_eq(p->malloc_by_size, 3, "serial %d: %llu mallocs of size %llu, expected 3", s,
                     (unsigned long long)p->malloc_by_size, (unsigned long long)p->size_seen);
        cr_expect_eq(p->frees_of_addrs, 3, "serial %d: %llu frees of its blocks, expected 3", s,
                     (unsigned long long)p->frees_of_addrs);
    }
    cr_expect_eq(threads, 64, "%d threads left mallocs in the trace, 64 made them", threads);
    free(y);
    free(path);
}

Test(threads, threads_exiting_with_partly_filled_buffers_keep_their_events)
{
    partly_filled(NULL);
}

Test(threads, partly_filled_buffers_compressed_keep_their_events)
{
    partly_filled(compress_env);
}

/* A detached thread keeps allocating while main returns and exit() runs the shim's destructor:
 * the trace stays readable and complete, and nothing is written after END (the reader calls
 * any byte after END corruption). Repeated, since the window moves from run to run. */
static void detached_at_exit(char *const env[], int runs)
{
    for (int run = 0; run < runs; run++) {
        char *path = run_churn_env((char *[]){ "detached", "20", NULL }, env);
        struct tally *y = malloc(sizeof *y);
        tally(path, 64, 64 + 256, y);
        expect_complete(path, 0);
        uint64_t m = 0;
        for (int s = 1; s < MAX_SERIAL; s++)
            m += y->t[s].malloc_by_size;
        cr_expect_gt(m, 0, "run %d: the detached thread left no event", run);
        cr_assert_eq(unlink(path), 0);
        free(y);
        free(path);
    }
}

Test(threads, detached_thread_allocating_at_exit_leaves_complete_trace)
{
    detached_at_exit(NULL, 20);
}

/* Final mode with compression on: the finisher steals (raw), the owner flushes (compressed). */
Test(threads, detached_thread_compressed_leaves_complete_trace)
{
    detached_at_exit(compress_env, 10);
}

/* Blocks malloc'd by thread A and freed by thread B: each MALLOC once in A, each FREE once in
 * B, and the two sets of addresses are the same. */
Test(threads, cross_thread_free_counted_once_in_each_thread)
{
    enum { K = 1000 };
    char *path = run_churn((char *[]){ "cross", "1000", NULL });
    struct reader *r = NULL;
    cr_assert_eq(reader_open(&r, path), 0, "%s: %s", path, r ? reader_error(r) : "no memory");
    static uint64_t allocated[K], freed_count[K];
    uint32_t alloc_serial = 0, free_serial = 0;
    size_t na = 0;
    int rc;
    struct rd_item it;
    /* pass 1: the 6000-byte blocks */
    while ((rc = reader_next(r, &it)) > 0) {
        if (it.type != RD_ITEM_EVENT || it.ev.kind != MTF_EV_MALLOC || it.ev.size != 6000)
            continue;
        cr_assert_lt(na, K, "more than %d malloc(6000) events", K);
        if (alloc_serial == 0)
            alloc_serial = it.ev.thread_serial;
        cr_assert_eq(it.ev.thread_serial, alloc_serial, "malloc(6000) in two threads");
        allocated[na++] = it.ev.addr;
    }
    cr_assert_eq(rc, 0, "%s", reader_error(r));
    reader_close(r);
    cr_assert_eq(na, K, "%zu malloc(6000) events, thread A made %d calls", na, K);
    /* pass 2: their frees */
    cr_assert_eq(reader_open(&r, path), 0);
    size_t nf = 0;
    while ((rc = reader_next(r, &it)) > 0) {
        if (it.type != RD_ITEM_EVENT || it.ev.kind != MTF_EV_FREE || it.ev.addr == 0)
            continue;
        for (size_t i = 0; i < K; i++) {
            if (allocated[i] != it.ev.addr)
                continue;
            freed_count[i]++;
            nf++;
            if (free_serial == 0)
                free_serial = it.ev.thread_serial;
            cr_expect_eq(it.ev.thread_serial, free_serial,
                         "block %#llx freed in serial %u, others in %u",
                         (unsigned long long)it.ev.addr, it.ev.thread_serial, free_serial);
            break;
        }
    }
    cr_assert_eq(rc, 0, "%s", reader_error(r));
    reader_close(r);
    cr_expect_neq(free_serial, alloc_serial, "frees recorded under the allocating thread");
    for (size_t i = 0; i < K; i++)
        cr_expect_eq(freed_count[i], 1, "block %#llx freed %llu times in the trace",
                     (unsigned long long)allocated[i], (unsigned long long)freed_count[i]);
    cr_expect_eq(nf, K, "%zu frees of A's blocks, thread B made %d calls", nf, K);
    free(path);
}

/* The program's own pthread key is created after the shim's, so its destructor runs after the
 * shim flushed the thread's buffer; the free it makes must still be in the trace, once, and
 * the trace must stay valid (pitfalls.md §6, checklist 12). */
Test(threads, free_in_app_key_destructor_after_shim_flush_is_recorded)
{
    char *path = run_churn((char *[]){ "keydtor", "8", NULL });
    struct tally *y = malloc(sizeof *y);
    tally(path, 31337, 31338, y);
    expect_complete(path, 1);
    int threads = 0;
    for (int s = 1; s < MAX_SERIAL; s++) {
        const struct per_thread *p = &y->t[s];
        if (p->malloc_by_size == 0)
            continue;
        threads++;
        cr_expect_eq(p->malloc_by_size, 1, "serial %d: %llu malloc(31337), expected 1", s,
                     (unsigned long long)p->malloc_by_size);
        cr_expect_eq(p->frees_of_addrs, 1,
                     "serial %d: the key destructor's free of %#llx recorded %llu times, "
                     "expected once",
                     s, (unsigned long long)p->addrs[0], (unsigned long long)p->frees_of_addrs);
    }
    cr_expect_eq(threads, 8, "%d threads left malloc(31337), 8 made it", threads);
    free(y);
    free(path);
}
