/* Stack capture: raw return addresses of the calling thread, innermost first, with the shim's
 * own frames removed; a CFI walker (cfi.c) with libunwind as fallback and reference. The only
 * file that includes <libunwind.h>. Runs inside hooks with the
 * guard in MT_IN_SHIM state (libunwind may call mmap and malloc; those calls are ours).
 */
#ifndef MEMTRACE_PRELOAD_UNWIND_H
#define MEMTRACE_PRELOAD_UNWIND_H

#include <stdint.h>

/* Learn the address ranges of the shim and of libunwind (their frames are skipped, their nested
 * allocations are not the program's). Call once at start-up, outside any lock. */
void mt_unwind_init(void);

/* Capture up to `max` frames of the caller's stack into frames[], skipping the shim's frames.
 * Sets *trunc when the stack was deeper than `max`. Returns the number of frames. The frames
 * are exactly libunwind's unw_backtrace ones, whichever unwinder produced them. The caller's
 * guard must be MT_IN_SHIM (a thread's first capture, and libunwind, may allocate). */
uint32_t mt_unwind_capture(uint64_t *frames, uint32_t max, int *trunc);

/* The previous walk of one thread, kept so the next capture re-walks only what changed
 * (docs/unwinding.md §5). Each record is one frame: the registers the walk had there and the
 * two stack words it read to leave it. Double-buffered: the walk under way writes one half. */
#define MT_UNWIND_MEMO_MAX (256 + 8 + 1) /* the walk's own depth limit (unwind.c RAW_MAX) */
#define MT_UNWIND_L0_SLOTS 512           /* power of two */

struct mt_unwind_rec {
    uintptr_t pc, sp, bp;   /* registers on entering the frame (pc as walked: not yet - 1) */
    uintptr_t ra_at, ra;    /* where the return address was read, and its value */
    uintptr_t bp_at, bp_to; /* where the caller's rbp was read (0: not saved), and its value */
    uintptr_t cfa_bp;       /* 1: the frame's CFA was computed from rbp */
};

struct mt_unwind_memo {
    uint64_t gen;     /* rule-cache generation + 1 of the walk kept in rec[cur]; 0: none */
    uint32_t cur;     /* the half holding the previous walk */
    uint32_t nrec;    /* frames in it */
    uint32_t nout;    /* return addresses it output */
    uint32_t want;    /* the depth limit it was made with */
    uint32_t natural; /* 1: it ended at the stack's end; 0: at the depth limit */
    uint32_t same;    /* 1: the last capture gave exactly the frames of the one before it */
    uint32_t base;    /* 1: it started at an origin (its pc came before the records') */
    uint32_t reserved;
    struct mt_unwind_rec rec[2][MT_UNWIND_MEMO_MAX];
    /* The thread's own small copy of the process-wide rule cache: a direct-mapped table that
     * stays in L1, with the same keys (pc | generation tag) and packed rules. */
    uint64_t l0_gen; /* the cache generation + 1 its entries belong to (cleared on a change) */
    uint64_t l0_key[MT_UNWIND_L0_SLOTS], l0_val[MT_UNWIND_L0_SLOTS];
};

/* The program's frame that called a hook: the hook's return address, its CFA (the caller's sp
 * after the call) and the caller's rbp. A hook compiled with frame pointers reads them from its
 * own frame (MT_UNWIND_ORIGIN); a walk can then start there instead of walking the shim's own
 * frames, which would be dropped anyway. */
struct mt_unwind_origin {
    uintptr_t pc, sp, bp;
};

/* In a function compiled with -fno-omit-frame-pointer (the hooks): its caller's state. Must be
 * expanded in the exported hook itself (or code inlined into it), not in a helper it calls. */
#define MT_UNWIND_ORIGIN(o)                                                                        \
    do {                                                                                           \
        const uintptr_t *fp_ = (const uintptr_t *)__builtin_frame_address(0);                      \
        (o)->bp = fp_[0];                                                                          \
        (o)->pc = fp_[1];                                                                          \
        (o)->sp = (uintptr_t)(fp_ + 2);                                                            \
    } while (0)

/* mt_unwind_capture with a thread's memo of its previous walk (NULL: none) and the origin to
 * start from (NULL: walk from here). The result is the same either way: the memo only saves
 * re-reading the part of the stack that did not change, the origin skips frames that are the
 * shim's (a frame count that would differ only if the shim had more than 8 frames of its own,
 * which it never has: see unwind.c's SLACK). */
uint32_t mt_unwind_capture_memo(uint64_t *frames, uint32_t max, int *trunc,
                                struct mt_unwind_memo *memo, const struct mt_unwind_origin *origin);

/* Forget a memo (a new thread takes over the state that holds it). */
void mt_unwind_memo_clear(struct mt_unwind_memo *memo);

/* Drop every cached unwind rule: call after a successful dlclose, before another object can be
 * mapped at the same addresses. Safe against concurrent captures (they fall back to libunwind
 * for the one capture that overlaps it); no allocation. */
void mt_unwind_forget(void);

/* Whether `pc` lies in the shim's, libunwind's, libc's or the loader's code: a hook called from
 * there while the shim is active is the shim's own nested call, not the program's (a program's
 * signal handler calls from its own code). */
int mt_unwind_is_internal_pc(uintptr_t pc);

/* Whether `pc` lies in the shim's or libunwind's own code. libunwind maps and unmaps its caches
 * outside our hooks too (its thread-exit destructor unmaps what it mapped while we unwound):
 * mapping calls from there are never the program's. */
int mt_unwind_is_tracer_pc(uintptr_t pc);

#endif
