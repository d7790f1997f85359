/* The MEMTRACE_* variables: one table, parsed once at start-up from `environ` (getenv may be
 * interposed or not ready while we are preloading). A malformed value or an unknown MEMTRACE_
 * name is fatal before main, with one line naming the variable, the value and what is expected.
 */
#ifndef MEMTRACE_PRELOAD_CONFIG_H
#define MEMTRACE_PRELOAD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "rules.h"

#define MT_PATH_MAX 4096

struct mt_config {
    char output[MT_PATH_MAX]; /* MEMTRACE_OUTPUT pattern: %p pid, %e executable name, %% */
    uint32_t max_frames;      /* MEMTRACE_DEPTH: frames kept per stack, 1..256 */
    uint32_t buffer_bytes;    /* MEMTRACE_BUFFER: per-thread event buffer, 4K..64M */
    uint32_t exec_pid;        /* MEMTRACE_EXEC_PID (set by the shim itself before execve): the
                                 pid whose traced image exec'd this one, 0 if none */
    uint64_t heap_limit;      /* MEMTRACE_HEAP_LIMIT: cap on live heap bytes, 0 for none */
    uint64_t external_limit;  /* MEMTRACE_EXTERNAL_LIMIT: cap on live external bytes, 0 for none */
    uint32_t on_limit;        /* MEMTRACE_ON_LIMIT: MTF_LIMIT_ABORT (default) or MTF_LIMIT_ENOMEM */
    uint64_t interval_ns;     /* MEMTRACE_INTERVAL: snapshot period, 0 for none */
    const char *rules;        /* MEMTRACE_RULES: points into the environment, NULL if unset */
    struct mt_rules rule_set; /* MEMTRACE_RULES parsed (an @file read) by mt_config_parse;
                                 rule_set.n == 0 when unset */
    uint32_t leak_scan;       /* MEMTRACE_LEAK_SCAN: 1 keeps the live blocks and scans them at
                                 exit for the ones no pointer reaches (REACH record) */
    uint32_t compress;        /* MEMTRACE_COMPRESS: 1 writes each thread's flushed buffer as a
                                 zstd frame (level 1) when that makes it smaller */
    uint32_t unwind_verify;   /* MEMTRACE_UNWIND_VERIFY: 1 runs libunwind next to the CFI walker
                                 on every capture and aborts on any difference (unwind.c) */
    uint64_t sample_bytes;    /* MEMTRACE_SAMPLE: mean bytes between sampled allocations
                                 (Poisson sampling by bytes, sample.c), 0 records every call */
    uint64_t sample_seed;     /* MEMTRACE_SAMPLE_SEED: fixed seed of the sampler (tests), 0 seeds
                                 each thread from its tid and the clock */
};

#define MT_EXEC_PID_VAR "MEMTRACE_EXEC_PID"

/* Remove MEMTRACE_EXEC_PID from the environment array in place (no allocation), so the program
 * and its children never see it. */
void mt_config_forget_exec_pid(char **envp);

#define MT_DEFAULT_OUTPUT       "memtrace.%e.%p.mtrace"
#define MT_DEFAULT_MAX_FRAMES   64
#define MT_DEFAULT_BUFFER_BYTES (256U << 10)
#define MT_DEFAULT_COMPRESS     0

extern struct mt_config mt_config;

/* Set defaults, then parse every MEMTRACE_* entry of `envp`. On a malformed value writes one
 * line into err (cap bytes) and returns -1; returns 0 when all values are valid. Pure (no
 * allocation, no system calls, so unit tests call it directly), except that a MEMTRACE_RULES=@file
 * is read with raw system calls. */
int mt_config_parse(struct mt_config *cfg, char *const *envp, char *err, size_t cap);

/* Parse the process environment into mt_config; on error print it and exit(MT_EXIT_CONFIG). */
void mt_config_load(void);

/* Parse a byte size: digits, an optional fraction, an optional unit K, M, G, T (powers of 1024,
 * optionally followed by "B" or "iB"). Rejects signs, garbage and overflow. 0 on success. */
int mt_config_parse_size(const char *s, uint64_t *out);

/* Parse a duration: digits, an optional fraction, a unit ns, us, ms or s ("100ms", "2.5s").
 * Rejects a missing unit, signs, garbage and overflow. 0 on success (*out in nanoseconds). */
int mt_config_parse_duration(const char *s, uint64_t *out);

/* Parse a plain decimal in [lo, hi]. 0 on success. */
int mt_config_parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

#endif
