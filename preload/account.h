/* Live memory counters (heapUsed, external, mapped), the heap and external caps, and memoryUsage
 * snapshots (docs/trace-format.md §7.2-7.4). The counters follow the trace's own accounting
 * rules, so a reader replaying the trace finds the same figures.
 *  - heap: without a heap cap each thread adds to its own cell (tbuf.c), summed on demand, so
 *    the malloc path touches no shared cache line; with a cap one global atomic, reserved before
 *    the real call with a CAS (never exceeded by a reservation; a refusal changes nothing).
 *  - external, mapped: page ranges (common/rangemap.c) under one lock, held across the real
 *    mmap/munmap/mremap with signals blocked, so a range another thread gets back from the
 *    kernel is never counted out of order and a signal handler never finds the lock taken.
 * Runs inside hooks: no public malloc, no stdio; the lock is only taken by the mapping hooks.
 */
#ifndef MEMTRACE_PRELOAD_ACCOUNT_H
#define MEMTRACE_PRELOAD_ACCOUNT_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "memtrace/format.h"
#include "mt.h"
#include "tbuf.h"

struct mt_stack_node;

/* One memoryUsage picture (trace-format.md §7.3). */
struct mt_usage {
    uint64_t rss, heap_total, heap_used, external, mapped, rss_peak;
};

/* After the configuration is loaded: caps, snapshot deadline, page size. Idempotent. */
void mt_acct_init(void);

/* Around fork (pthread_atfork): the maps lock is held across it, so the child's range map is
 * consistent; in the child the counters are inherited as they are and the fatal state is reset. */
void mt_acct_fork_prepare(void);
void mt_acct_fork_parent(void);
void mt_acct_fork_child(void);

/* ---- heap family ---------------------------------------------------------------------------- */

/* Before a heap-family call that puts up to `request` more bytes into class `cls`: 0 when
 * admitted, with *reserved the bytes counted ahead of the call (settle them with
 * mt_acct_heap_done); -1 when the class's cap refuses it (nothing changed; *live is the class's
 * live bytes). Never call from a nested context. */
int mt_acct_heap_admit(uint32_t cls, uint64_t request, int64_t *reserved, uint64_t *live);

/* After the call (or before a real free): the class's live bytes change by `delta` (usable
 * sizes), and the reservation made by mt_acct_heap_admit is returned. `nested`: called from a
 * signal handler that interrupted the shim (the thread's own cell may be mid-update). */
void mt_acct_heap_done_slow(uint32_t cls, int64_t delta, int64_t reserved, int nested);

extern int mt_acct_heap_capped; /* MEMTRACE_HEAP_LIMIT set: heapUsed is one global word */

static inline void mt_acct_heap_done(uint32_t cls, int64_t delta, int64_t reserved, int nested)
{
    int64_t d = delta - reserved;
    if (MT_LIKELY(cls == MTF_CLASS_HEAP && !mt_acct_heap_capped && !nested)) {
        int64_t *cell = mt_tbuf_heap_cell();
        if (MT_LIKELY(cell != NULL)) {
            /* only this thread writes the cell, and never from a handler: a plain add */
            __atomic_store_n(cell, __atomic_load_n(cell, __ATOMIC_RELAXED) + d, __ATOMIC_RELAXED);
            return;
        }
    }
    if (d != 0)
        mt_acct_heap_done_slow(cls, delta, reserved, nested);
}

/* Blocks that a rule put in a class other than heap: remembered by address until freed. */
void mt_acct_block_put(uint64_t addr, uint32_t cls);
uint32_t mt_acct_block_take(uint64_t addr);   /* MTF_CLASS_HEAP when not remembered */
extern _Atomic uint64_t mt_acct_moved_blocks; /* blocks remembered now */

/* Class of a heap block being freed or reallocated (the side table is consulted only when some
 * block is in it). */
static inline uint32_t mt_acct_block_class(const void *p)
{
    if (MT_LIKELY(atomic_load_explicit(&mt_acct_moved_blocks, memory_order_relaxed) == 0))
        return 0; /* MTF_CLASS_HEAP */
    return mt_acct_block_take((uint64_t)(uintptr_t)p);
}

/* ---- mappings (call between mt_acct_maps_lock and mt_acct_maps_unlock) ---------------------- */

struct mt_acct_lock {
    sigset_t old; /* the thread's signal mask before the lock */
};

void mt_acct_maps_lock(struct mt_acct_lock *lk);
void mt_acct_maps_unlock(struct mt_acct_lock *lk);

/* Whether mapping `request` more bytes of class cls passes its cap: 0, or -1 with *live. */
int mt_acct_maps_admit(uint32_t cls, uint64_t request, uint64_t *live);

/* Bytes of class cls counted in [addr, addr + len rounded up to pages). */
uint64_t mt_acct_maps_overlap(uint32_t cls, uint64_t addr, uint64_t len);

/* Every counted mapping [start, end), for the leak scan's roots; takes the maps lock. */
void mt_acct_maps_visit(void (*visit)(void *vctx, uint64_t start, uint64_t end), void *vctx);

/* The page size mappings are counted in. */
uint64_t mt_acct_page(void);

/* After a successful mmap, munmap, mremap (trace-format.md §7.2, common/rangemap.h). */
void mt_acct_map_add(uint64_t addr, uint64_t len, uint32_t cls);
void mt_acct_map_remove(uint64_t addr, uint64_t len);
void mt_acct_map_move(uint64_t old, uint64_t old_len, uint64_t new_addr, uint64_t new_len,
                      uint64_t flags, uint32_t cls);

/* The class an mremap of `old` gives its new range (before the call). */
uint32_t mt_acct_map_move_class(uint64_t old);

/* ---- caps ------------------------------------------------------------------------------------ */

/* The cap of a class (0: none). */
uint64_t mt_acct_limit(uint32_t cls);

/* A cap refused call `kind` (MTF_EV_*) of `request` bytes in class cls while `live` bytes were
 * live; node is the call's stack (mt_tbuf_capture). Records LIMIT and a LIMIT snapshot; in abort
 * mode prints the fatal error, ends the trace and dies of SIGABRT (only the first refusing thread;
 * others wait for the end). In enomem mode returns (the caller fails the call with ENOMEM and
 * records it FAILED). Call with the guard in MT_IN_HOOK state, outside the maps lock. */
void mt_acct_refuse(unsigned kind, uint32_t cls, uint64_t request, uint64_t live,
                    struct mt_stack_node *node); /* hooks_limit.c */

/* Set by the thread that took the abort path; reset in a fork child. */
extern atomic_int mt_acct_fatal;

/* ---- snapshots ------------------------------------------------------------------------------- */

/* The live counters only (no system calls): what memtrace_usage() reports besides rss and
 * heapTotal. */
void mt_acct_counters(struct mt_usage *u);

/* The whole picture: counters, rss (/proc/self/statm), heapTotal (mallinfo2), and with
 * `peak` the peak rss (VmHWM). Calls into the allocator: never from a nested context or with
 * the maps lock held. */
void mt_acct_usage(struct mt_usage *u, int peak);

/* Record a SNAPSHOT event (reason MTF_SNAP_*, label of len bytes or NULL). Guard in MT_IN_HOOK
 * state. */
void mt_acct_snapshot(uint32_t reason, const char *label, size_t len);

/* Periodic snapshots: the first hooked call at or after the deadline claims it with one CAS.
 * UINT64_MAX when MEMTRACE_INTERVAL is unset. */
extern _Atomic uint64_t mt_acct_deadline;
void mt_acct_interval(uint64_t ts);

static inline void mt_acct_tick(uint64_t ts)
{
    if (MT_UNLIKELY(ts >= atomic_load_explicit(&mt_acct_deadline, memory_order_relaxed)))
        mt_acct_interval(ts);
}

#endif
