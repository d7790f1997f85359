/* Per-thread state reachable without a call: the reentrancy guard and the pointer to the
 * thread's buffer. Lives in initial-exec TLS (a few words in the static TLS block), so touching
 * it never allocates (pitfalls.md §4). Every field is written only by its own thread; a signal
 * handler on the same thread may read it, hence volatile.
 */
#ifndef MEMTRACE_PRELOAD_GUARD_H
#define MEMTRACE_PRELOAD_GUARD_H

#include <stdint.h>

#include "mt.h"

struct mt_thread;

/* What the thread is doing inside the shim; a nested hook call decides by it (hooks.c). */
#define MT_IN_NONE 0 /* not inside the shim */
#define MT_IN_HOOK 1 /* inside a hook, in the shim's own code */
#define MT_IN_REAL 2 /* inside the real allocator or mapper called by a hook */
#define MT_IN_SHIM 3 /* inside code the shim calls for itself (unwinder, loader queries) */

#define MT_TMODE_BUFFERED 0 /* events go to the thread's buffer */
#define MT_TMODE_WRITETHROUGH                                                                      \
    1 /* buffer gone (thread exiting, process ending): write each event                            \
       */

struct mt_tls {
    struct mt_thread *volatile thread; /* buffer state, NULL until the first event */
    volatile uint32_t in;              /* MT_IN_* */
    volatile uint32_t mode;            /* MT_TMODE_* */
    uint32_t tid;                      /* cached gettid(); reset in a fork child */
    uint32_t serial;                   /* thread serial in the current trace, 0 until assigned */
    uint32_t wt_epoch;                 /* after the buffer is retired: epoch for write-through */
    uint32_t wt_offset;                /* ... and a running offset, so they keep their order */
};

extern __thread struct mt_tls mt_tls __attribute__((tls_model("initial-exec")));

static inline int mt_guard_active(void)
{
    return mt_tls.in != MT_IN_NONE;
}

static inline void mt_guard_set(uint32_t state)
{
    MT_BARRIER(); /* the store must not move across the calls it brackets (pitfalls.md §1) */
    mt_tls.in = state;
    MT_BARRIER();
}

#endif
