/* preload/clock.c: event times. Whichever source is in use (the TSC where the kernel's own clock
 * is the TSC, else clock_gettime), stamps must stay on CLOCK_MONOTONIC's scale, never go back on
 * one thread, and order across threads as the events did: a stamp taken after seeing another
 * thread's store is never earlier than that thread's stamp taken before the store.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"

static uint64_t sys_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int tsc_kernel_clock(void)
{
    char src[64] = "";
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f != NULL) {
        if (fgets(src, sizeof src, f) == NULL)
            src[0] = '\0';
        fclose(f);
    }
    return strcmp(src, "tsc\n") == 0;
}

static void clock_setup(void)
{
    mt_clock_init();
}

TestSuite(clock, .init = clock_setup, .timeout = 30);

Test(clock, uses_the_tsc_exactly_when_the_kernel_does)
{
    cr_expect(eq(int, mt_clk.tsc, tsc_kernel_clock()),
              "TSC in use (%d) follows the kernel's clocksource", mt_clk.tsc);
    if (mt_clk.tsc)
        cr_expect(mt_clk.mult > 0, "a calibrated rate");
}

/* Drift against CLOCK_MONOTONIC: 100 ms apart, the two clocks agree to 0.1% of the interval
 * and to 200 us in absolute terms (the calibration's error plus two reads on a busy VM). */
Test(clock, stays_on_the_monotonic_scale)
{
    uint64_t a = sys_ns(), ma = mt_clock_ns();
    struct timespec nap = { 0, 100000000 };
    nanosleep(&nap, NULL);
    uint64_t b = sys_ns(), mb = mt_clock_ns();
    int64_t off_a = (int64_t)(ma - a), off_b = (int64_t)(mb - b);
    cr_expect(off_a > -200000 && off_a < 200000, "offset at start %lld ns", (long long)off_a);
    cr_expect(off_b > -200000 && off_b < 200000, "offset after 100 ms %lld ns", (long long)off_b);
    int64_t drift = off_b - off_a;
    cr_expect(drift > -100000 && drift < 100000, "drift over 100 ms: %lld ns", (long long)drift);
}

Test(clock, never_goes_back_on_one_thread)
{
    uint64_t prev = mt_clock_ns(), worst = 0;
    int back = 0;
    for (int i = 0; i < 1000000; i++) {
        uint64_t t = (i & 1) ? mt_clock_ns() : mt_clock_ns_early();
        if (t < prev) {
            back++;
            worst = prev - t > worst ? prev - t : worst;
        }
        prev = t;
    }
    cr_expect(eq(int, back, 0), "%d stamps went back, by up to %llu ns", back,
              (unsigned long long)worst);
}

/* Ping-pong through one atomic word: each side stamps "early" before publishing its turn and
 * "after" once it has seen the other's. Every after-stamp must be >= the other side's
 * early-stamp of the same turn (trace-format.md §10's FREE-before-MALLOC rule). */
#define TURNS 200000
static _Atomic uint64_t turn;
static uint64_t early_at[TURNS], after_at[TURNS];

static void *pong(void *arg)
{
    (void)arg;
    for (uint64_t k = 1; k < TURNS; k += 2) {
        while (atomic_load_explicit(&turn, memory_order_acquire) != k)
            ;
        after_at[k] = mt_clock_ns();
        early_at[k + 1 < TURNS ? k + 1 : k] = mt_clock_ns_early();
        atomic_store_explicit(&turn, k + 1, memory_order_release);
    }
    return NULL;
}

Test(clock, orders_handoffs_between_threads)
{
    pthread_t t;
    atomic_store(&turn, 0);
    cr_assert(eq(int, pthread_create(&t, NULL, pong, NULL), 0));
    for (uint64_t k = 0; k < TURNS; k += 2) {
        if (k > 0) {
            while (atomic_load_explicit(&turn, memory_order_acquire) != k)
                ;
            after_at[k] = mt_clock_ns();
        }
        early_at[k + 1] = mt_clock_ns_early();
        atomic_store_explicit(&turn, k + 1, memory_order_release);
    }
    pthread_join(t, NULL);
    int bad = 0, bad_early = 0;
    for (uint64_t k = 1; k + 1 < TURNS; k++) {
        if (after_at[k] < early_at[k])
            bad++;
        /* an early stamp taken after seeing the other thread's stamp (a block handed over and
         * freed by the receiver) must not be earlier either */
        if (early_at[k + 1] < early_at[k])
            bad_early++;
    }
    cr_expect(eq(int, bad, 0), "%d of %d hand-offs stamped out of order", bad, TURNS - 2);
    cr_expect(eq(int, bad_early, 0), "%d of %d early stamps before the other thread's", bad_early,
              TURNS - 2);
}
