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
