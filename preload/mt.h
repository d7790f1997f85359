/* Macros every shim file uses. No declarations of module functions here: each module has its
 * own header. */
#ifndef MEMTRACE_PRELOAD_MT_H
#define MEMTRACE_PRELOAD_MT_H

#define MT_EXPORT        __attribute__((visibility("default")))
#define MT_HIDDEN        __attribute__((visibility("hidden")))
#define MT_LIKELY(x)     __builtin_expect(!!(x), 1)
#define MT_UNLIKELY(x)   __builtin_expect(!!(x), 0)
#define MT_MUST_CHECK    __attribute__((warn_unused_result))
#define MT_NOINLINE      __attribute__((noinline))
#define MT_ALWAYS_INLINE inline __attribute__((always_inline))
#define MT_COLD          __attribute__((cold, noinline))
#define MT_BARRIER()     __asm__ __volatile__("" ::: "memory")

/* Exit status used when the configuration is invalid (before main runs). */
#define MT_EXIT_CONFIG 125

#endif
