/* Event timestamps: nanoseconds on CLOCK_MONOTONIC's scale. Where the kernel itself keeps time
 * with the TSC (clocksource "tsc": invariant and synchronized across CPUs), the time is read from
 * the TSC directly and converted with one calibration taken at start-up, which costs a fraction
 * of a vDSO clock_gettime; elsewhere clock_gettime is used. Every thread converts with the same
 * constants, so times from different threads compare as the kernel's clock would.
 *
 * Ordering (trace-format.md §10): a FREE must sort before the MALLOC that another thread is
 * handed the same address with, and a MALLOC before the FREE of its block by a thread it was
 * passed to. So a stamp must be read after every load before it (the ones that saw the other
 * thread's store) and before the stores after it: `lfence; rdtsc`, as the kernel's
 * rdtsc_ordered() (and so the vDSO clock) does. A bare rdtsc may run ahead of earlier loads by
 * the width of the out-of-order window and could invert the second case.
 *  - mt_clock_ns(): a stamp taken after a call;
 *  - mt_clock_ns_early(): a stamp taken before a call whose effect it must precede (free,
 *    munmap). The same read: the name says which side of the call it belongs to.
 */
#ifndef MEMTRACE_PRELOAD_CLOCK_H
#define MEMTRACE_PRELOAD_CLOCK_H

#include <stdint.h>
#include <time.h>

struct mt_clock {
    int tsc;           /* 1: convert the TSC; 0: clock_gettime */
    uint64_t base_tsc; /* TSC at the calibration's end */
    uint64_t base_ns;  /* CLOCK_MONOTONIC at the same instant */
    uint64_t mult;     /* nanoseconds per tick, 32.32 fixed point */
};

extern struct mt_clock mt_clk;

/* Calibrate (about 200 microseconds, once per process image; a fork child keeps its parent's).
 * Until it has run, and wherever the TSC is not the kernel's clock, clock_gettime is used. */
void mt_clock_init(void);

static inline uint64_t mt_clock_sys_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#if defined(__x86_64__)
static inline uint64_t mt_clock_from_tsc(uint64_t t)
{
    /* a stamp read just before the calibration's end converts to base_ns, not to a wrapped value */
    uint64_t d = t > mt_clk.base_tsc ? t - mt_clk.base_tsc : 0;
    return mt_clk.base_ns + (uint64_t)(((unsigned __int128)d * mt_clk.mult) >> 32);
}

static inline uint64_t mt_clock_ns(void)
{
    if (__builtin_expect(mt_clk.tsc, 1)) {
        uint32_t lo, hi;
        __asm__ __volatile__("lfence; rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
        return mt_clock_from_tsc(((uint64_t)hi << 32) | lo);
    }
    return mt_clock_sys_ns();
}

static inline uint64_t mt_clock_ns_early(void)
{
    return mt_clock_ns(); /* the same ordered read (see the top of this file) */
}
#endif

#if !defined(__x86_64__)
static inline uint64_t mt_clock_ns(void)
{
    return mt_clock_sys_ns();
}

static inline uint64_t mt_clock_ns_early(void)
{
    return mt_clock_sys_ns();
}
#endif

#endif
