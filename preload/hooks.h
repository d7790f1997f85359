/* Helpers shared by the hook files (hooks_*.c), and the entry points init.c gives them.
 * Not part of any other module's interface.
 */
#ifndef MEMTRACE_PRELOAD_HOOKS_H
#define MEMTRACE_PRELOAD_HOOKS_H

#include <errno.h>
#include <stdint.h>

#include "clock.h"
#include "guard.h"
#include "mt.h"
#include "real.h"
#include "tbuf.h"
#include "unwind.h"

/* init.c: resolve the real functions (first hook call) and bring tracing up. */
void mt_init_early(void);

/* init.c: everything that must happen when the process stops being this image: flush every
 * buffer, write END (reason MTF_END_*, status), switch to write-through. Idempotent per reason. */
void mt_init_finish(uint32_t reason, int32_t status);

/* init.c: an exec failed after mt_init_finish(MTF_END_EXEC): tracing goes on buffered, and the
 * process's real end will write another END (the last one in the file counts). */
void mt_init_exec_failed(void);

/* init.c: the exit status the program asked for, when known (exit() or main's return). */
void mt_init_note_status(int status);

/* hooks_process.c: the C library's entry to main (no header declares it). */
int __libc_start_main(int (*main)(int, char **, char **), int argc, char **argv, void (*init)(void),
                      void (*fini)(void), void (*rtld_fini)(void), void *stack_end);

/* Make sure the real function pointers exist. 0 when they do; -1 while they are being resolved
 * (the caller then serves the call from the bootstrap arena or fails it). */
static inline int mt_hook_ready(void)
{
    if (MT_LIKELY(mt_real.ready))
        return 0;
    mt_init_early();
    return mt_real.ready ? 0 : -1;
}

/* A hook was entered while this thread is already inside the shim. Decide whose call it is:
 * the shim's own (the unwinder, libc or the loader working for us, or the allocator mapping
 * memory for itself) or the program's (a signal handler that interrupted the shim). */
static inline int mt_hook_nested_is_program(const void *caller, int is_mapping)
{
    if (is_mapping && mt_tls.in == MT_IN_REAL)
        return 0;
    return !mt_unwind_is_internal_pc((uintptr_t)caller);
}

#endif
