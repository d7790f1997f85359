/* Event timestamps: CLOCK_MONOTONIC nanoseconds through the vDSO (no system call). */
#ifndef MEMTRACE_PRELOAD_CLOCK_H
#define MEMTRACE_PRELOAD_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mt_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#endif
