/* Per-thread event buffers. Each thread encodes its events into its own buffer with no lock and
 * no system call; a full buffer becomes one EVENTS record (one writev). Buffers are flushed when
 * full, when their thread exits, and by the process-wide paths (exit, exec, fork, fatal): those
 * also take over ("steal") the unflushed part of other threads' buffers through a lock-free
 * claim word, so a thread that is still running or about to be killed loses nothing.
 * Everything here may run inside a hook: no public malloc, no stdio, no blocking lock.
 */
#ifndef MEMTRACE_PRELOAD_TBUF_H
#define MEMTRACE_PRELOAD_TBUF_H

#include <stdint.h>

#include "clock.h"
#include "guard.h"

#define MT_FIELDS_MAX 9 /* non-stack fields of the widest event (SNAPSHOT) */

/* Create the thread-exit key. Call once at start-up. */
void mt_tbuf_init(void);

/* Called (once) when a buffer must be written and no trace file is open yet: before the
 * constructor ran. Set by init.c; it opens the trace. */
extern void (*mt_tbuf_open_trace)(void);

/* Record one event of the calling thread. `fields` are the kind's non-stack fields in the order
 * of docs/trace-format.md §7 (the fd of MMAP already zigzag-encoded). The stack, when the kind
 * has one, is captured here. `ts` was taken by the caller (before a real free, after a real
 * allocation). Call with the guard in MT_IN_HOOK state. */
void mt_tbuf_event(unsigned kind, unsigned flags, uint64_t ts, const uint64_t *fields);

struct mt_stack_node;

/* The calling thread's stack now, interned (NULL if the table is unavailable): for a hook that
 * needs it before the real call (classification rules, a cap refusal). Call with the guard in
 * MT_IN_HOOK state; the frames are the same as mt_tbuf_event would capture from the hook. */
struct mt_stack_node *mt_tbuf_capture(void);

/* mt_tbuf_capture starting at the program's frame that called the hook (unwind.h
 * MT_UNWIND_ORIGIN, taken in the hook itself): the same frames, without walking the shim's. */
struct mt_unwind_origin;
struct mt_stack_node *mt_tbuf_capture_from(const struct mt_unwind_origin *origin);

/* mt_tbuf_event with a stack captured earlier by mt_tbuf_capture (NULL: no stack), or with
 * MT_TBUF_CAPTURE to capture it here. */
#define MT_TBUF_CAPTURE ((struct mt_stack_node *)1)
void mt_tbuf_event_at(unsigned kind, unsigned flags, uint64_t ts, const uint64_t *fields,
                      struct mt_stack_node *node);

/* account.c's per-thread live-heap delta: the calling thread's cell (NULL before its first
 * event and after its buffer is gone). Only its own thread writes it, with plain relaxed stores
 * (never from a nested context); the cells are never reset, so their sum over every buffer
 * state, live or retired, is what all threads added. */
struct mt_thread_head {
    int64_t heap_cell; /* the live-heap delta: written by the owner only, never reset */
};

static inline int64_t *mt_tbuf_heap_cell(void)
{
    /* every struct mt_thread begins with a struct mt_thread_head (tbuf.c) */
    struct mt_thread *t = mt_tls.thread;
    return t != NULL ? &((struct mt_thread_head *)(void *)t)->heap_cell : NULL;
}
int64_t mt_tbuf_heap_sum(void);

/* Record an event from a nested context (a signal handler interrupting the shim): written at
 * once as its own chunk, without a stack, never touching the interrupted buffer. */
void mt_tbuf_nested(unsigned kind, unsigned flags, uint64_t ts, const uint64_t *fields);

/* Write the calling thread's buffer now. */
void mt_tbuf_flush_self(void);

/* Write every thread's unflushed events: the caller's own, and the others' by stealing. */
void mt_tbuf_flush_all(void);

/* From now on every event is written through (process is ending or replacing its image). */
void mt_tbuf_set_final(int on);

/* Write the END record with the totals. 0 on success. */
int mt_tbuf_write_end(uint32_t reason, int32_t status);

/* Fork child: drop every buffer inherited from the parent, restart thread serials. */
void mt_tbuf_fork_child(void);

/* Calls not recorded (output failed); reported in END or in the final message. */
uint64_t mt_tbuf_dropped(void);

/* Event stamps while a single thread has ever recorded events: the order of its events is
 * their order in its buffer, so a stamp only places them in time, and one clock read is shared
 * by MT_STAMP_SOLO_SPAN events (a stamp is at most that many events old, never ahead of its
 * event). Only that thread uses the shared stamp; any other thread reads the clock, and its
 * first buffer turns sharing off for good before its first event is stored (thread_adopt): an
 * event of the first thread that comes after one of another thread in the program's own order
 * (through a lock, or the allocator handing over a block) then sees it off. */
#define MT_STAMP_SOLO_SPAN 16

struct mt_stamp_solo {
    struct mt_thread *owner; /* the one thread recording, NULL once there are two */
    uint32_t n;              /* events stamped with `ts` so far */
    uint64_t ts;             /* the shared stamp */
};

extern struct mt_stamp_solo mt_stamp_solo;

/* The time stamp of an event of the calling thread: `early` for one taken before a call whose
 * effect it must precede (free, munmap), else after the call (clock.h). */
static inline uint64_t mt_tbuf_stamp(int early)
{
    if (MT_LIKELY(mt_tls.thread != NULL &&
                  mt_tls.thread == __atomic_load_n(&mt_stamp_solo.owner, __ATOMIC_RELAXED))) {
        if (mt_stamp_solo.n++ % MT_STAMP_SOLO_SPAN != 0)
            return mt_stamp_solo.ts;
        return mt_stamp_solo.ts = mt_clock_ns_early(); /* one thread: no order to keep */
    }
    return early ? mt_clock_ns_early() : mt_clock_ns();
}

#endif
