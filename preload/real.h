/* The next definitions of every hooked function (dlsym(RTLD_NEXT)), resolved once, plus a
 * bootstrap arena that serves the allocations dlsym itself makes while we resolve.
 * mt_real_init() may run inside the first hooked call; it never calls the public malloc.
 */
#ifndef MEMTRACE_PRELOAD_REAL_H
#define MEMTRACE_PRELOAD_REAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mt_real {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t);
    size_t (*malloc_usable_size)(void *);
    void *(*mmap)(void *, size_t, int, int, int, off_t);
    void *(*mmap64)(void *, size_t, int, int, int, off_t);
    int (*munmap)(void *, size_t);
    void *(*mremap)(void *, size_t, size_t, int, ...);
    pid_t (*fork)(void);
    void *(*dlopen)(const char *, int);
    void *(*dlmopen)(long, const char *, int);
    int (*dlclose)(void *);
    int (*execve)(const char *, char *const[], char *const[]);
    int (*execv)(const char *, char *const[]);
    int (*execvp)(const char *, char *const[]);
    int (*execvpe)(const char *, char *const[], char *const[]);
    int (*fexecve)(int, char *const[], char *const[]);
    void (*exit)(int) __attribute__((noreturn));
    void (*_exit)(int) __attribute__((noreturn));
    void (*_Exit)(int) __attribute__((noreturn));
    void (*abort)(void) __attribute__((noreturn));
    int (*libc_start_main)(int (*)(int, char **, char **), int, char **, void (*)(void),
                           void (*)(void), void (*)(void), void *);
    ssize_t (*read)(int, void *, size_t);
    ssize_t (*write)(int, const void *, size_t);
    volatile int ready; /* 1 once every pointer above is set */
    int glibc_chunks;   /* 1: the allocator is glibc's own: usable sizes read from chunk headers */
};

extern struct mt_real mt_real;

/* Resolve every pointer. Idempotent; on a nested call during resolution returns at once with
 * mt_real.ready still 0 (callers then use the bootstrap arena). A missing mandatory symbol is
 * fatal with one line. */
void mt_real_init(void);

/* malloc_usable_size of a block in use. With glibc's allocator (the one in libc.so.6 itself,
 * not libc_malloc_debug.so or another malloc), read from the chunk's size word as glibc's
 * musable() computes it for an in-use chunk: the chunk size less its header, 16 bytes for an
 * mmapped chunk and 8 for the others (the next chunk's prev_size word is usable). A call costs
 * a PLT jump and a second header read per malloc and per free. */
static inline size_t mt_usable_size(const void *p)
{
    if (p == NULL)
        return 0;
    if (__builtin_expect(mt_real.glibc_chunks, 1)) {
        /* the word before the block, reached through an integer: not an access to the block */
        size_t word = *(const size_t *)((uintptr_t)p - sizeof(size_t));
        return (word & ~(size_t)7) - ((word & 2) ? 16 : 8); /* 2: IS_MMAPPED */
    }
    return mt_real.malloc_usable_size((void *)p);
}

/* Bootstrap arena, for calls that arrive while dlsym is running. Blocks are never reused;
 * free() of one is a no-op. */
void *mt_boot_alloc(size_t size, size_t align);
#define MT_BOOT_ARENA_BYTES (64U << 10)
extern unsigned char mt_boot_arena[MT_BOOT_ARENA_BYTES];

static inline int mt_boot_owns(const void *p)
{
    return (uintptr_t)p - (uintptr_t)mt_boot_arena < MT_BOOT_ARENA_BYTES;
}
size_t mt_boot_size(const void *p); /* usable size of an arena block */

#endif
