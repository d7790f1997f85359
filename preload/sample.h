/* Sampling mode (MEMTRACE_SAMPLE=<bytes>): Poisson sampling by bytes, as jemalloc and heapprofd
 * do. Each thread counts down the bytes it allocates to the next point of a Poisson process of
 * mean interval `rate`; an allocation that covers a point is sampled (probability
 * 1 - exp(-size/rate)) and recorded with its stack, the others are only counted. Sampled blocks
 * live in a lock-free address set so that their free or realloc is recorded and no other free is.
 * Exact figures (calls per kind, live blocks and usable bytes, bytes allocated) are kept per
 * thread and written at exit as a TOTALS record (trace-format.md §9.2).
 * Everything here runs inside hooks: no public malloc, no locks, no stdio; state lives in
 * initial-exec TLS and in pages mapped with raw system calls.
 */
#ifndef MEMTRACE_PRELOAD_SAMPLE_H
#define MEMTRACE_PRELOAD_SAMPLE_H

#include <stdatomic.h>
#include <stdint.h>

#include "memtrace/format.h"
#include "mt.h"

struct mt_reach_result;

/* Exact counters of one thread (or of the shared fallback), and its sampler's PRNG. Only the
 * owner writes them; each cell starts a cache line, so two threads never write one line. */
struct __attribute__((aligned(64))) mt_sample_cell {
    uint64_t calls[MTF_EV_KIND_COUNT]; /* program calls per kind, recorded or not */
    int64_t live_blocks;               /* blocks allocated minus blocks freed */
    int64_t live_usable;               /* usable bytes allocated minus freed */
    uint64_t alloc_bytes;              /* requested bytes of successful allocations */
    uint64_t rng;                      /* xorshift64* state of the owner, 0 until seeded */
    uint32_t rounds;                   /* thread-exit destructor rounds seen */
    struct mt_sample_cell *next;       /* registry link, never changes once published */
    atomic_int owned;                  /* a live thread writes this cell */
};

#define MT_SAMPLE_RETIRED ((struct mt_sample_cell *)1) /* the thread gave its cell up (exiting) */

/* The calling thread's countdown and counters: two words of static TLS (pitfalls.md §4). */
struct mt_sample_tls {
    int64_t left;                /* bytes to the next sample point; <= 0: take the slow path */
    struct mt_sample_cell *cell; /* NULL until the thread's first counted call, or RETIRED */
};

extern __thread struct mt_sample_tls mt_sample_tls __attribute__((tls_model("initial-exec")));

/* The rate in force (MEMTRACE_SAMPLE), 0 when every call is recorded. Set once by
 * mt_sample_init before any hook records. */
extern uint64_t mt_sample_rate;

/* Sampled blocks in the address set now (the free path's one load when it is empty). */
extern _Atomic uint64_t mt_sample_set_count;

/* Read MEMTRACE_SAMPLE and MEMTRACE_SAMPLE_SEED from the configuration. Idempotent. */
void mt_sample_init(void);

/* The slow half of mt_sample_take: seed the thread on its first call, draw the next interval
 * and decide. */
int mt_sample_take_slow(uint64_t size);

/* Whether an allocation of `size` requested bytes is sampled (the countdown crossed zero). */
static inline int mt_sample_take(uint64_t size)
{
    int64_t left = mt_sample_tls.left - (int64_t)(size != 0 ? size : 1);
    if (MT_LIKELY(left > 0)) {
        mt_sample_tls.left = left;
        return 0;
    }
    return mt_sample_take_slow(size);
}

/* The calling thread's counters (claimed on first use); NULL after the thread retired its
 * cell, when the caller must use mt_sample_count_shared. */
struct mt_sample_cell *mt_sample_cell_slow(void);
static inline struct mt_sample_cell *mt_sample_cell(void)
{
    struct mt_sample_cell *c = mt_sample_tls.cell;
    return MT_LIKELY((uintptr_t)c > (uintptr_t)MT_SAMPLE_RETIRED) ? c : mt_sample_cell_slow();
}

/* Count one call of `kind` that made `blocks` blocks (+1, -1 or 0) worth `usable` bytes and
 * allocated `request` bytes. For a thread without a cell (exiting) and for nested calls (signal
 * handlers): atomics on a shared cell. */
void mt_sample_count_shared(unsigned kind, int64_t blocks, int64_t usable, uint64_t request);

static inline void mt_sample_count(unsigned kind, int64_t blocks, int64_t usable, uint64_t request)
{
    struct mt_sample_cell *c = mt_sample_cell();
    if (MT_UNLIKELY(c == NULL)) {
        mt_sample_count_shared(kind, blocks, usable, request);
        return;
    }
    c->calls[kind]++;
    c->live_blocks += blocks;
    c->live_usable += usable;
    c->alloc_bytes += request;
}

/* ---- the set of sampled blocks ---------------------------------------------------------------
 * Open addressing over a fixed window of slots from the address's hash: a lookup reads at most
 * MT_SAMPLE_WINDOW slots whatever the history, and a removed entry leaves a tombstone that later
 * inserts in the same window reuse. Safe from any thread; an address is inserted by the thread
 * its allocation returned to and removed by the one freeing it, never both at once. */

#define MT_SAMPLE_SET_BITS    20 /* 1M slots, 8 MiB of address space, touched pages only */
#define MT_SAMPLE_WINDOW      16 /* slots a lookup may read: two cache lines */
#define MT_SAMPLE_FILTER_BITS 14 /* a 16 KiB counting filter in front of the table */
#define MT_SAMPLE_HASH_MUL    0x9e3779b97f4a7c15ULL

/* How many sampled blocks hash to each group of 64 table slots (saturating at 255, then
 * sticky): the free of an unsampled block reads one byte of a cache-resident array instead of a
 * random line of the table. */
extern _Atomic uint8_t mt_sample_filter[1U << MT_SAMPLE_FILTER_BITS];

static inline size_t mt_sample_filter_slot(uint64_t addr)
{
    return (size_t)((addr * MT_SAMPLE_HASH_MUL) >> (64 - MT_SAMPLE_FILTER_BITS));
}

/* 0 when added; -1 when the window is full (counted, the caller records nothing). */
int mt_sample_set_put(uint64_t addr);

/* Remove addr: 1 if it was there. */
int mt_sample_set_take_slow(uint64_t addr);
static inline int mt_sample_set_take(uint64_t addr)
{
    if (MT_LIKELY(atomic_load_explicit(&mt_sample_set_count, memory_order_relaxed) == 0))
        return 0;
    if (MT_LIKELY(atomic_load_explicit(&mt_sample_filter[mt_sample_filter_slot(addr)],
                                       memory_order_relaxed) == 0))
        return 0;
    return mt_sample_set_take_slow(addr);
}

/* ---- exit and fork --------------------------------------------------------------------------- */

/* Sum every thread's counters into *t (calls, live, bytes; lost_* and flags left alone). */
void mt_sample_totals(struct mtf_totals *t);

/* Write the TOTALS record (guard in MT_IN_HOOK state); rr: the leak scan's result or NULL.
 * Nothing when sampling is off. 0 on success or when nothing was due. */
int mt_sample_write_totals(const struct mt_reach_result *rr);

/* Fork child: counts start again from zero (trace-format.md §9.2); the set is kept, since the
 * child inherits the sampled blocks (their frees, unknown to its trace, are expected). */
void mt_sample_fork_child(void);

/* ---- pure helpers (unit tests) --------------------------------------------------------------- */

/* -ln(u) for u in (0, 1], without libm. */
double mt_sample_neg_log(double u);

/* One exponential interval of mean `rate` bytes (at least 1) from the PRNG state *rng. */
uint64_t mt_sample_draw(uint64_t *rng, uint64_t rate);

/* Forget the set and the counters (tests). */
void mt_sample_reset(void);

#endif
