/* Resolving the real functions. On glibc 2.36 a successful dlsym(RTLD_NEXT) allocates nothing,
 * but older versions call calloc from the first dlsym and a failed lookup mallocs its error
 * message (pitfalls.md §1): those calls land in the bootstrap arena below. */
#include "real.h"

#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

#include "guard.h"
#include "log.h"
#include "mt.h"

struct mt_real mt_real;

static volatile int resolving; /* set while dlsym runs; nested hook calls see it */

unsigned char mt_boot_arena[MT_BOOT_ARENA_BYTES] __attribute__((aligned(64)));
static size_t arena_used; /* bump pointer, only advanced under `resolving` (one thread) */

struct boot_hdr {
    size_t size;
    size_t pad;
};

void *mt_boot_alloc(size_t size, size_t align)
{
    if (align < 16)
        align = 16;
    /* align the absolute address: the arena itself is only 64-byte aligned */
    uintptr_t base = (uintptr_t)mt_boot_arena;
    uintptr_t at =
        (base + arena_used + sizeof(struct boot_hdr) + align - 1) & ~(uintptr_t)(align - 1);
    size_t start = at - base;
    if (size > MT_BOOT_ARENA_BYTES || start > MT_BOOT_ARENA_BYTES ||
        start + size > MT_BOOT_ARENA_BYTES)
        mt_fatal(134, "bootstrap arena exhausted (%zu bytes requested while resolving symbols)",
                 size);
    ((struct boot_hdr *)(mt_boot_arena + start))[-1].size = size;
    arena_used = start + size;
    return mt_boot_arena + start;
}

size_t mt_boot_size(const void *p)
{
    return ((const struct boot_hdr *)p)[-1].size;
}

static void *need(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (f == NULL)
        mt_fatal(127,
                 "cannot find the real %s (is libmemtrace.so preloaded into a glibc "
                 "program?)",
                 name);
    return f;
}

/* Whether malloc and malloc_usable_size are glibc's own, from libc.so.6 (x86_64, no memory
 * tagging): then its chunk layout is known (real.h mt_usable_size). dladdr does not allocate. */
static int glibc_allocator(void)
{
#if defined(__x86_64__) && defined(__GLIBC__)
    Dl_info a, b;
    if (dladdr((void *)mt_real.malloc, &a) == 0 ||
        dladdr((void *)mt_real.malloc_usable_size, &b) == 0)
        return 0;
    return a.dli_fbase == b.dli_fbase && a.dli_fname != NULL &&
           strstr(a.dli_fname, "/libc.so.6") != NULL;
#else
    return 0;
#endif
}

void mt_real_init(void)
{
    if (mt_real.ready || resolving)
        return;
    resolving = 1;
    MT_BARRIER();
    mt_real.malloc = need("malloc");
    mt_real.free = need("free");
    mt_real.calloc = need("calloc");
    mt_real.realloc = need("realloc");
    mt_real.posix_memalign = need("posix_memalign");
    mt_real.aligned_alloc = need("aligned_alloc");
    mt_real.memalign = need("memalign");
    mt_real.valloc = need("valloc");
    mt_real.pvalloc = need("pvalloc");
    mt_real.malloc_usable_size = need("malloc_usable_size");
    mt_real.mmap = need("mmap");
    mt_real.mmap64 = need("mmap64");
    mt_real.munmap = need("munmap");
    mt_real.mremap = need("mremap");
    mt_real.fork = need("fork");
    mt_real.dlopen = need("dlopen");
    mt_real.dlmopen = need("dlmopen");
    mt_real.dlclose = need("dlclose");
    mt_real.execve = need("execve");
    mt_real.execv = need("execv");
    mt_real.execvp = need("execvp");
    mt_real.execvpe = need("execvpe");
    mt_real.fexecve = need("fexecve");
    mt_real.exit = need("exit");
    mt_real._exit = need("_exit");
    mt_real._Exit = need("_Exit");
    mt_real.abort = need("abort");
    mt_real.libc_start_main = need("__libc_start_main");
    mt_real.read = need("read");
    mt_real.write = need("write");
    mt_real.glibc_chunks = glibc_allocator();
    MT_BARRIER();
    mt_real.ready = 1;
    resolving = 0;
}
