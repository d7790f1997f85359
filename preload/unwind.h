/* Stack capture: raw return addresses of the calling thread, innermost first, with the shim's
 * own frames removed. The only file that includes <libunwind.h>. Runs inside hooks with the
 * guard in MT_IN_SHIM state (libunwind may call mmap and malloc; those calls are ours).
 */
#ifndef MEMTRACE_PRELOAD_UNWIND_H
#define MEMTRACE_PRELOAD_UNWIND_H

#include <stdint.h>

/* Learn the address ranges of the shim and of libunwind (their frames are skipped, their nested
 * allocations are not the program's). Call once at start-up, outside any lock. */
void mt_unwind_init(void);

/* Capture up to `max` frames of the caller's stack into frames[], skipping the shim's frames.
 * Sets *trunc when the stack was deeper than `max`. Returns the number of frames. */
uint32_t mt_unwind_capture(uint64_t *frames, uint32_t max, int *trunc);

/* Whether `pc` lies in the shim's or libunwind's code: a hook called from there is our own
 * nested call, not the program's. */
int mt_unwind_is_internal_pc(uintptr_t pc);

#endif
