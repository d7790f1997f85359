/* Sampling mode (MEMTRACE_SAMPLE, preload/sample.c, report/estimate.c) under the real shim:
 * what must stay exact stays exact (calls per kind, bytes allocated, live and lost totals, the
 * heap cap's step), while site figures are estimates within a tolerance the estimator's
 * variance justifies, and a leak made only of blocks too small to be sampled still fails
 * `memtrace check --sample`.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregate.h"
#include "helpers.h"

TestSuite(sample, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 120);

#define CHURN_N "200000"

/* The one trace whose name starts with prefix, decoded. */
static void load_one(const char *prefix, struct h_trace *t, char *path, size_t cap)
{
    char *paths[4];
    size_t k = h_traces(prefix, paths, 4);
    cr_assert(eq(sz, k, 1), "one trace %s*", prefix);
    if (path != NULL)
        snprintf(path, cap, "%s", paths[0]);
    h_load(paths[0], t);
    cr_assert(eq(int, t->rc, 0), "trace decodes: %s", t->error);
    cr_assert(t->has_end, "the trace ended cleanly");
    h_free_paths(paths, k);
}

static void run_known(const char *mode, const char *n, char *const env[], const char *pattern,
                      struct h_run *r)
{
    char *argv[] = { (char *)h_path("progs/sample_known"), (char *)mode, (char *)n, NULL };
    *r = h_run(argv, env, 1, pattern, 100);
    cr_assert(r->exited && r->status == 0, "sample_known %s: status %d, stderr %s", mode, r->status,
              r->err);
}

/* The replay of a trace, finished (the caller frees it with agg_free). */
static struct agg *replay(const char *path)
{
    struct reader *rd;
    cr_assert(eq(int, reader_open(&rd, path), 0));
    struct agg *a = agg_new();
    agg_header(a, &reader_status(rd)->header);
    struct rd_item it;
    while (reader_next(rd, &it) == 1)
        agg_item(a, &it);
    agg_finish(a);
    reader_close(rd);
    return a;
}

Test(sample, calls_and_totals_are_exact_with_sampling_on)
{
    struct h_run r;
    run_known("churn", CHURN_N, NULL, "all.%p.mtrace", &r);
    h_run_free(&r);
    char *env[] = { "MEMTRACE_SAMPLE=64K", "MEMTRACE_SAMPLE_SEED=1", NULL };
    run_known("churn", CHURN_N, env, "smp.%p.mtrace", &r);
    h_run_free(&r);

    struct h_trace all, smp;
    load_one("all.", &all, NULL, 0);
    load_one("smp.", &smp, NULL, 0);
    cr_expect(eq(u64, all.status.header.sample_bytes, 0), "no MEMTRACE_SAMPLE: not sampled");
    cr_expect(not(all.has_totals), "no TOTALS record without sampling");
    cr_expect(eq(u64, smp.status.header.sample_bytes, 64 << 10), "the rate is in the header");
    cr_assert(smp.has_totals, "a sampled trace ends with a TOTALS record");
    cr_expect(eq(u64, smp.totals.sample_bytes, 64 << 10));
    /* the same program makes the same calls: every one of them recorded in one run, counted
     * in the other */
    uint64_t alloc_bytes = 0, recorded = 0;
    for (unsigned k = MTF_EV_MALLOC; k <= MTF_EV_PVALLOC; k++) {
        cr_expect(eq(u64, smp.totals.calls[k], all.end.counts[k]), "calls of kind %u", k);
        recorded += smp.end.counts[k];
    }
    for (size_t i = 0; i < all.nevents; i++) {
        const struct rd_event *e = &all.events[i];
        if (e->kind >= MTF_EV_MALLOC && e->kind <= MTF_EV_PVALLOC && e->kind != MTF_EV_FREE &&
            !(e->flags & MTF_EVF_FAILED) && e->addr != 0)
            alloc_bytes += e->size;
    }
    cr_expect(eq(u64, smp.totals.alloc_bytes, alloc_bytes), "requested bytes, sampled or not");
    cr_expect(eq(i64, smp.totals.live_blocks, 1), "only stdout's buffer is live at exit");
    cr_expect(lt(u64, recorded * 4, all.end.counts[MTF_EV_MALLOC]),
              "at 64K most of the 200000 small calls are left out (%" PRIu64 " recorded)",
              recorded);
    h_trace_free(&all);
    h_trace_free(&smp);
}

Test(sample, estimated_site_bytes_land_within_tolerance)
{
    /* churn_site asks for 412373915 bytes in 200000 blocks of 64..4096 bytes. At a 4 KiB rate
     * the Horvitz-Thompson estimate of its bytes has variance sum s^2 (1 - p) / p with
     * p = 1 - exp(-s / 4096): a standard deviation of 0.27% of the total, and 0.45% for its
     * calls. 3% is more than six deviations: with the fixed seed the figure is deterministic,
     * and any seed passes but for a bug. */
    struct h_run r;
    char *env[] = { "MEMTRACE_SAMPLE=4K", "MEMTRACE_SAMPLE_SEED=7", NULL };
    run_known("churn", CHURN_N, env, "est.%p.mtrace", &r);
    unsigned long total = 0;
    cr_assert(eq(int, sscanf(r.out, "total %lu", &total), 1), "%s", r.out);
    h_run_free(&r);
    char path[4096];
    struct h_trace t;
    load_one("est.", &t, path, sizeof path);
    h_trace_free(&t);

    struct agg *a = replay(path);
    size_t n;
    struct agg_site *s = agg_sites(a, &n);
    const struct agg_site *top = NULL;
    for (size_t i = 0; i < n; i++)
        if (top == NULL || s[i].total_bytes > top->total_bytes)
            top = &s[i];
    cr_assert(top != NULL);
    double err = ((double)top->total_bytes - (double)total) / (double)total;
    cr_expect(lt(dbl, err < 0 ? -err : err, 0.03), "estimated %" PRIu64 " bytes, true %lu",
              top->total_bytes, total);
    double cerr = ((double)top->calls - 200000.0) / 200000.0;
    cr_expect(lt(dbl, cerr < 0 ? -cerr : cerr, 0.03), "estimated %" PRIu64 " calls, true 200000",
              top->calls);
    cr_expect(eq(u64, a->unknown_frees, 0), "frees of unsampled blocks are expected");
    cr_expect(eq(u64, a->counts[MTF_EV_MALLOC], 200001), "exact calls from TOTALS");
    free(s);
    agg_free(a);
}

Test(sample, lost_blocks_too_small_to_sample_fail_check_with_sample)
{
    /* 3000 blocks of 16 bytes at 512 KiB: each is sampled with p = 3e-5, so most runs record
     * none of them; the leak scan's exact totals must still fail the gate. */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/traces", h_tmpdir());
    char *argv[] = {
        (char *)h_path("memtrace"),           "check", "--sample", "512K", "--dir", dir, "--",
        (char *)h_path("progs/sample_known"), "leak",  "3000",     NULL
    };
    struct h_run r = h_run(argv, NULL, 0, NULL, 100);
    cr_assert(r.exited, "memtrace check killed by signal %d", r.status);
    cr_expect(eq(int, r.status, 23), "the gate fails; stdout %s stderr %s", r.out, r.err);
    const char *all = strstr(r.out, "in 3000 blocks") ? r.out : r.err;
    cr_expect(ne(ptr, strstr(all, "46.88 KB in 3000 blocks"), NULL),
              "the exact lost total (3000 x 16 bytes): %s", all);
    cr_expect(ne(ptr, strstr(all, "sites are sampled"), NULL), "says sites are sampled: %s", all);
    cr_expect(ne(ptr, strstr(all, "site not sampled"), NULL), "names the unsampled part: %s", all);
    h_run_free(&r);
}

Test(sample, heap_cap_dies_at_the_same_step_with_sampling_on)
{
    /* admission happens before the call whether or not the call is sampled */
    char *argv[] = { (char *)h_path("progs/limit_heap"), "heap", "100", NULL };
    char *env[] = { "MEMTRACE_HEAP_LIMIT=10M", "MEMTRACE_SAMPLE=512K", NULL };
    struct h_run r = h_run(argv, env, 1, "cap.%p.mtrace", 60);
    cr_assert(eq(int, r.exited, 0), "killed by a signal: status %d", r.status);
    cr_expect(eq(int, r.status, SIGABRT));
    long steps = 0;
    for (const char *p = r.out; (p = strstr(p, "step ")) != NULL; p += 5)
        steps++;
    cr_expect(eq(long, steps, 9), "1 MiB steps under 10 MiB: the tenth is refused: %s", r.out);
    cr_expect(ne(ptr, strstr(r.err, "FATAL ERROR: Reached heap limit"), NULL), "%s", r.err);
    h_run_free(&r);
    struct h_trace t;
    load_one("cap.", &t, NULL, 0);
    size_t limits = 0;
    for (size_t i = 0; i < t.nevents; i++)
        limits += t.events[i].kind == MTF_EV_LIMIT;
    cr_expect(eq(sz, limits, 1), "the refusal is recorded, sampled or not");
    h_trace_free(&t);
}
