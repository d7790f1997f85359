/* memtrace.h: memoryUsage for C and C++ programs, and labelled snapshots in the trace.
 *
 *     #include <memtrace.h>
 *     struct memtrace_usage u;
 *     if (memtrace_usage(&u) == 0)
 *         printf("heapUsed %llu external %llu\n", (unsigned long long)u.heap_used,
 *                (unsigned long long)u.external);
 *     memtrace_mark("after load");
 *
 * Both functions work whether or not libmemtrace.so is preloaded, and the program is never
 * linked against it: they are static inline functions that look the shim's entry points up once
 * with dlsym(RTLD_DEFAULT, ...). Without the shim, memtrace_usage() returns -1 with zeros and
 * memtrace_mark() does nothing. dlsym is in the C library from glibc 2.34 on; with an older
 * glibc link the program with -ldl. Thread-safe; not async-signal-safe (call them from normal
 * code, not from a signal handler).
 *
 * The figures are those of the trace (docs/trace-format.md §7.2-7.3): a memtrace_mark() right
 * after memtrace_usage() records the same heap_used, external and mapped in its SNAPSHOT.
 */
#ifndef MEMTRACE_H
#define MEMTRACE_H

#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The C twin of Node's process.memoryUsage(). All figures are bytes. The struct may grow at the
 * end in later versions: `size` tells the shim how much of it the caller has (memtrace_usage()
 * sets it), so old programs keep working with a newer shim and the other way round. */
struct memtrace_usage {
    uint32_t size;       /* sizeof(struct memtrace_usage) of the caller; set by memtrace_usage() */
    uint32_t version;    /* 1: the fields below */
    uint64_t rss;        /* rss: resident set size of the whole process (/proc/self/statm) */
    uint64_t heap_total; /* heapTotal: what the allocator holds from the system for its heap
                            (glibc: mallinfo2() arena + hblkhd), so heap_used <= heap_total */
    uint64_t heap_used;  /* heapUsed: live bytes the program holds from the malloc family, as
                            malloc_usable_size counts them (C++ new/delete included) */
    uint64_t external;   /* external: live anonymous memory the program mapped itself (mmap,
                            mremap), outside the allocator, like a Node Buffer's backing store */
    uint64_t mapped;     /* live file-backed mappings the program made (no Node analogue) */
};

#define MEMTRACE_USAGE_VERSION 1
#define MEMTRACE_LABEL_MAX     255 /* bytes of a mark's label kept in the trace */

/* The shim's entry points (exported by libmemtrace.so; call them through the functions below). */
typedef int (*memtrace_usage_fn)(struct memtrace_usage *u);
typedef void (*memtrace_mark_fn)(const char *label, size_t len);

/* Find a shim entry point once per translation unit; NULL when the shim is not loaded. */
static inline void *memtrace_lookup_(const char *name, void **cache)
{
    static char absent; /* the cached answer "not there" */
    void *f = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (f == NULL) {
        f = dlsym(((void *)0) /* RTLD_DEFAULT */, name);
        if (f == NULL)
            f = &absent;
        __atomic_store_n(cache, f, __ATOMIC_RELEASE);
    }
    return f == (void *)&absent ? NULL : f;
}

/* Fill *u with the process's memory usage now. Returns 0, or -1 (all figures 0) when the shim
 * is not preloaded. */
static inline int memtrace_usage(struct memtrace_usage *u)
{
    static void *cache;
    void *f = memtrace_lookup_("memtrace_api_usage", &cache);
    memset(u, 0, sizeof *u);
    u->size = (uint32_t)sizeof *u;
    u->version = MEMTRACE_USAGE_VERSION;
    if (f == NULL)
        return -1;
    memtrace_usage_fn fn;
    memcpy(&fn, &f, sizeof fn);
    return fn(u);
}

/* Put a SNAPSHOT with this label (UTF-8, the first MEMTRACE_LABEL_MAX bytes) into the trace.
 * Does nothing when the shim is not preloaded. */
static inline void memtrace_mark(const char *label)
{
    static void *cache;
    void *f = memtrace_lookup_("memtrace_api_mark", &cache);
    if (f == NULL)
        return;
    memtrace_mark_fn fn;
    memcpy(&fn, &f, sizeof fn);
    size_t len = label != NULL ? strlen(label) : 0;
    fn(label != NULL ? label : "", len > MEMTRACE_LABEL_MAX ? MEMTRACE_LABEL_MAX : len);
}

#ifdef __cplusplus
}
#endif

#endif
