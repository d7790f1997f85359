/* TSC calibration for clock.h. */
#include "clock.h"

#include <string.h>

#include "pages.h"

struct mt_clock mt_clk;

#define CAL_NS    200000ULL /* calibration window: ~80 ppm with ~15 ns read jitter */
#define CAL_TRIES 5

#if defined(__x86_64__)
static uint64_t tsc_ordered(void)
{
    uint32_t lo, hi;
    __asm__ __volatile__("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

/* One (tsc, ns) pair: the clock read bracketed by two TSC reads, the tightest of a few tries. */
static void pair(uint64_t *tsc, uint64_t *ns)
{
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < CAL_TRIES; i++) {
        uint64_t a = tsc_ordered();
        uint64_t n = mt_clock_sys_ns();
        uint64_t b = tsc_ordered();
        if (b >= a && b - a < best) {
            best = b - a;
            *tsc = a + (b - a) / 2;
            *ns = n;
        }
    }
}
#endif

void mt_clock_init(void)
{
#if defined(__x86_64__)
    if (mt_clk.tsc)
        return;
    /* The kernel keeps CLOCK_MONOTONIC with the TSC only when it found the TSC invariant and
     * synchronized across CPUs; that is the condition for reading it ourselves. */
    char src[64];
    mt_read_file("/sys/devices/system/clocksource/clocksource0/current_clocksource", src,
                 sizeof src);
    if (strcmp(src, "tsc\n") != 0 && strcmp(src, "tsc") != 0)
        return;
    uint64_t t0 = 0, n0 = 0, t1 = 0, n1 = 0;
    pair(&t0, &n0);
    do
        pair(&t1, &n1);
    while (n1 - n0 < CAL_NS && n1 >= n0);
    if (t1 <= t0 || n1 <= n0)
        return;
    unsigned __int128 m = ((unsigned __int128)(n1 - n0) << 32) / (t1 - t0);
    /* a TSC between 50 MHz and 20 GHz; anything else is a broken reading */
    if (m < ((unsigned __int128)1 << 32) / 20 || m > ((unsigned __int128)20 << 32))
        return;
    mt_clk.base_tsc = t1;
    mt_clk.base_ns = n1;
    mt_clk.mult = (uint64_t)m;
    __atomic_store_n(&mt_clk.tsc, 1, __ATOMIC_RELEASE);
#endif
}
