/* preload/sample.c and report/estimate.c: the exponential countdown (its mean interval is the
 * rate, an allocation of s bytes is sampled with chance 1 - exp(-s/rate)), the libm-free -ln,
 * the Horvitz-Thompson weight, and the lock-free set of sampled blocks under inserts, removals,
 * tombstone reuse and four threads.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/redirect.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "estimate.h"
#include "reader.h"
#include "sample.h"
#include "tracegen.h"

static void fresh(void)
{
    mt_sample_reset();
}

TestSuite(sample, .init = fresh, .fini = fresh, .timeout = 30);

static double absd(double x)
{
    return x < 0 ? -x : x;
}

Test(sample, neg_log_matches_known_values)
{
    static const struct {
        double u, want;
    } cases[] = {
        { 1.0, 0.0 },
        { 0.5, 0.69314718055994531 },
        { 0.049787068367863944, 3.0 },   /* e^-3 */
        { 4.5399929762484854e-5, 10.0 }, /* e^-10 */
        { 0.9999, 1.00005000333358e-4 },
        { 1.1102230246251565e-16, 36.7368005696771 }, /* 2^-53, the smallest u drawn */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double got = mt_sample_neg_log(cases[i].u);
        cr_expect(lt(dbl, absd(got - cases[i].want), 1e-6 * (1 + cases[i].want)),
                  "-ln(%g) = %.12f, want %.12f", cases[i].u, got, cases[i].want);
    }
}

Test(sample, mean_interval_is_the_rate)
{
    /* exponential draws: the mean of n has a standard deviation of rate / sqrt(n), 0.1% for a
     * million; 1% is ten of them */
    uint64_t rng = 12345, rate = 512 << 10, n = 1000000;
    double sum = 0;
    for (uint64_t i = 0; i < n; i++)
        sum += (double)mt_sample_draw(&rng, rate);
    double mean = sum / (double)n;
    cr_expect(lt(dbl, absd(mean - (double)rate) / (double)rate, 0.01), "mean %.0f, rate %" PRIu64,
              mean, rate);
}

Test(sample, draws_are_at_least_one_byte)
{
    uint64_t rng = 99;
    for (int i = 0; i < 100000; i++)
        cr_assert(ge(u64, mt_sample_draw(&rng, 1), 1));
}

Test(sample, allocation_is_sampled_with_chance_one_minus_exp)
{
    /* 200000 allocations of 4 KiB at a 16 KiB rate: p = 1 - exp(-1/4) = 0.2212, binomial
     * standard deviation 0.0009; 0.005 is over five of them */
    mt_sample_rate = 16 << 10;
    mt_sample_tls.left = 0;
    uint64_t hits = 0, n = 200000;
    for (uint64_t i = 0; i < n; i++)
        hits += (uint64_t)mt_sample_take(4096);
    double got = (double)hits / (double)n, want = 0.22119921692859512;
    cr_expect(lt(dbl, absd(got - want), 0.005), "sampled fraction %.4f, want %.4f", got, want);
    mt_sample_rate = 0;
}

Test(sample, weight_is_one_over_the_sampling_chance)
{
    uint64_t rate = 512 << 10;
    cr_expect(lt(dbl, absd(est_weight(rate, rate) - 1.5819767068693265), 1e-9),
              "one rate's worth of bytes: 1 / (1 - 1/e)");
    cr_expect(lt(dbl, absd(est_weight(1ULL << 40, rate) - 1.0), 1e-12), "huge: always sampled");
    /* small s: 1 / (1 - exp(-x)) = 1/x + 1/2 + x/12 ... */
    double w = est_weight(16, rate), x = 16.0 / (double)rate;
    cr_expect(lt(dbl, absd(w - (1 / x + 0.5 + x / 12)), 1e-6), "16 bytes: %f", w);
    cr_expect(eq(dbl, est_weight(0, rate), est_weight(1, rate)), "size 0 counts as 1 byte");
    for (uint64_t s = 1; s < (8ULL << 20); s = s * 3 + 1)
        cr_expect(gt(dbl, est_weight(s, rate), est_weight(s * 3 + 1, rate)),
                  "bigger blocks weigh less (%" PRIu64 ")", s);
}

Test(sample, set_finds_what_was_put_and_forgets_what_was_taken)
{
    cr_expect(eq(int, mt_sample_set_take(0x1000), 0), "empty set: nothing to take");
    for (uint64_t i = 1; i <= 5000; i++)
        cr_assert(eq(int, mt_sample_set_put(i * 48), 0), "put %" PRIu64, i * 48);
    cr_expect(eq(u64, mt_sample_set_count, 5000));
    for (uint64_t i = 1; i <= 5000; i += 2)
        cr_expect(eq(int, mt_sample_set_take(i * 48), 1), "take %" PRIu64, i * 48);
    for (uint64_t i = 1; i <= 5000; i += 2)
        cr_expect(eq(int, mt_sample_set_take(i * 48), 0), "taken twice %" PRIu64, i * 48);
    for (uint64_t i = 2; i <= 5000; i += 2)
        cr_expect(eq(int, mt_sample_set_take(i * 48 + 8), 0), "never put");
    cr_expect(eq(u64, mt_sample_set_count, 2500));
    /* the tombstones are reused: many rounds of put and take never fill a window */
    for (int round = 0; round < 200; round++) {
        for (uint64_t i = 1; i <= 5000; i += 2)
            cr_assert(eq(int, mt_sample_set_put(i * 48 + (uint64_t)round * 0x100000), 0),
                      "round %d put %" PRIu64, round, i);
        for (uint64_t i = 1; i <= 5000; i += 2)
            cr_assert(eq(int, mt_sample_set_take(i * 48 + (uint64_t)round * 0x100000), 1));
    }
    for (uint64_t i = 2; i <= 5000; i += 2)
        cr_expect(eq(int, mt_sample_set_take(i * 48), 1), "kept through it all %" PRIu64, i);
    cr_expect(eq(u64, mt_sample_set_count, 0));
}

Test(sample, set_window_full_is_refused_and_counted, .init = cr_redirect_stderr)
{
    /* addresses with one hash: the window holds MT_SAMPLE_WINDOW of them, the next is refused
     * (the caller leaves that allocation out and TOTALS counts it) */
    const uint64_t k = 0x9e3779b97f4a7c15ULL; /* sample.c's multiplier */
    uint64_t inv = k;                         /* k^-1 mod 2^64 by Newton's iteration */
    for (int i = 0; i < 6; i++)
        inv *= 2 - k * inv;
    int refused = 0;
    for (uint64_t j = 1; j <= MT_SAMPLE_WINDOW + 4; j++) /* a * k = c + j: one hash, top bits */
        refused += mt_sample_set_put((0x1234500000000000ULL + j) * inv) != 0;
    cr_expect(ge(int, refused, 4), "a full window refuses (%d refused)", refused);
    struct mtf_totals t;
    memset(&t, 0, sizeof t);
    mt_sample_totals(&t);
    cr_expect(eq(u64, t.unsampleable, (uint64_t)refused));
}

static void *churn_set(void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg << 40;
    for (int round = 0; round < 200; round++) {
        for (uint64_t i = 1; i <= 1000; i++)
            if (mt_sample_set_put(base + i * 64) != 0)
                return (void *)1;
        for (uint64_t i = 1; i <= 1000; i++)
            if (mt_sample_set_take(base + i * 64) != 1)
                return (void *)2;
    }
    return NULL;
}

Test(sample, set_holds_up_under_four_threads)
{
    pthread_t th[4];
    for (uintptr_t i = 0; i < 4; i++)
        cr_assert(eq(int, pthread_create(&th[i], NULL, churn_set, (void *)(i + 1)), 0));
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        cr_expect(eq(ptr, rc, NULL), "thread %d: %s", i,
                  rc == (void *)1 ? "a put was refused" : "a block put was not found");
    }
    cr_expect(eq(u64, mt_sample_set_count, 0), "every put was taken");
}

Test(sample, counters_sum_over_threads_and_reset_in_a_fork_child)
{
    mt_sample_count(MTF_EV_MALLOC, 1, 32, 24);
    mt_sample_count(MTF_EV_FREE, -1, -32, 0);
    mt_sample_count_shared(MTF_EV_CALLOC, 1, 48, 40);
    struct mtf_totals t;
    memset(&t, 0, sizeof t);
    mt_sample_totals(&t);
    cr_expect(eq(u64, t.calls[MTF_EV_MALLOC], 1));
    cr_expect(eq(u64, t.calls[MTF_EV_FREE], 1));
    cr_expect(eq(u64, t.calls[MTF_EV_CALLOC], 1));
    cr_expect(eq(i64, t.live_blocks, 1));
    cr_expect(eq(i64, t.live_usable, 48));
    cr_expect(eq(u64, t.alloc_bytes, 64));
    mt_sample_fork_child();
    memset(&t, 0, sizeof t);
    mt_sample_totals(&t);
    cr_expect(eq(u64, t.calls[MTF_EV_MALLOC] + t.calls[MTF_EV_CALLOC], 0),
              "a fork child counts its own calls only");
}

/* A sampled trace as the spec lays it out: the rate in the header, TOTALS before END. */
static struct tg_buf sampled_trace(size_t totals_size)
{
    struct mtf_file_header h = tg_header_default();
    h.sample_bytes = 512 << 10;
    struct tg_buf t = { 0 };
    tg_file_header(&t, &h);
    struct mtf_totals x;
    memset(&x, 0, sizeof x);
    x.ts_ns = 1500;
    x.sample_bytes = 512 << 10;
    x.live_blocks = -2; /* a fork child that freed inherited blocks */
    x.live_usable = 4096;
    x.alloc_bytes = 123456;
    x.lost_blocks = 3;
    x.lost_bytes = 48;
    x.flags = MTF_TOTALSF_SCANNED;
    x.calls[MTF_EV_MALLOC] = 1000;
    x.calls[MTF_EV_FREE] = 997;
    tg_record(&t, MTF_REC_TOTALS, &x, totals_size); /* little-endian host: the struct as is */
    struct mtf_end end = tg_end_default();
    tg_end(&t, &end);
    return t;
}

Test(sample, reader_decodes_the_rate_and_the_totals_record)
{
    struct tg_buf t = sampled_trace(sizeof(struct mtf_totals));
    struct reader *r;
    cr_assert(eq(int, reader_open_mem(&r, t.data, t.len), 0));
    cr_expect(eq(u64, reader_status(r)->header.sample_bytes, 512 << 10));
    struct rd_item it;
    int seen = 0, rc;
    while ((rc = reader_next(r, &it)) == 1) {
        if (it.type != RD_ITEM_TOTALS)
            continue;
        seen++;
        cr_expect(eq(u64, it.totals.sample_bytes, 512 << 10));
        cr_expect(eq(i64, it.totals.live_blocks, -2), "signed: net of inherited frees");
        cr_expect(eq(i64, it.totals.live_usable, 4096));
        cr_expect(eq(u64, it.totals.alloc_bytes, 123456));
        cr_expect(eq(u64, it.totals.lost_blocks, 3));
        cr_expect(eq(u64, it.totals.lost_bytes, 48));
        cr_expect(eq(u32, it.totals.flags, MTF_TOTALSF_SCANNED));
        cr_expect(eq(u64, it.totals.calls[MTF_EV_MALLOC], 1000));
        cr_expect(eq(u64, it.totals.calls[MTF_EV_FREE], 997));
    }
    cr_expect(eq(int, rc, 0), "%s", reader_error(r));
    cr_expect(eq(int, seen, 1));
    cr_expect(reader_status(r)->complete);
    reader_close(r);
    tg_buf_free(&t);
}

Test(sample, reader_refuses_a_short_totals_record)
{
    struct tg_buf t = sampled_trace(sizeof(struct mtf_totals) - 8);
    struct reader *r;
    cr_assert(eq(int, reader_open_mem(&r, t.data, t.len), 0));
    struct rd_item it;
    int rc;
    while ((rc = reader_next(r, &it)) == 1)
        ;
    cr_expect(eq(int, rc, RD_ERR_CORRUPT), "a TOTALS record of 224 bytes is corrupt");
    cr_expect(ne(ptr, strstr(reader_error(r), "TOTALS"), NULL), "%s", reader_error(r));
    reader_close(r);
    tg_buf_free(&t);
}
