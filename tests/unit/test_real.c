/* preload/real.c: resolving the next definitions of the hooked functions, and the bootstrap
 * arena that serves dlsym's own allocations while they are resolved. The runner defines none of
 * the hooked functions (hooks*.c are not linked), so dlsym(RTLD_NEXT) from the runner and
 * dlsym(RTLD_DEFAULT) find the same definitions: libc's, or a sanitizer runtime's. Every test runs
 * in a fresh process: the arena starts empty.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/redirect.h>
#include <dlfcn.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "real.h"

TestSuite(real, .timeout = 10);

/* Every pointer of struct mt_real with the symbol it must resolve to. */
struct real_entry {
    const char *name;
    void *resolved;
};

static size_t real_entries(struct real_entry *out)
{
    size_t n = 0;
#define REAL_ENTRY(field, sym) out[n++] = (struct real_entry){ sym, (void *)mt_real.field }
    REAL_ENTRY(malloc, "malloc");
    REAL_ENTRY(free, "free");
    REAL_ENTRY(calloc, "calloc");
    REAL_ENTRY(realloc, "realloc");
    REAL_ENTRY(posix_memalign, "posix_memalign");
    REAL_ENTRY(aligned_alloc, "aligned_alloc");
    REAL_ENTRY(memalign, "memalign");
    REAL_ENTRY(valloc, "valloc");
    REAL_ENTRY(pvalloc, "pvalloc");
    REAL_ENTRY(malloc_usable_size, "malloc_usable_size");
    REAL_ENTRY(mmap, "mmap");
    REAL_ENTRY(mmap64, "mmap64");
    REAL_ENTRY(munmap, "munmap");
    REAL_ENTRY(mremap, "mremap");
    REAL_ENTRY(fork, "fork");
    REAL_ENTRY(dlopen, "dlopen");
    REAL_ENTRY(dlmopen, "dlmopen");
    REAL_ENTRY(dlclose, "dlclose");
    REAL_ENTRY(execve, "execve");
    REAL_ENTRY(execv, "execv");
    REAL_ENTRY(execvp, "execvp");
    REAL_ENTRY(execvpe, "execvpe");
    REAL_ENTRY(fexecve, "fexecve");
    REAL_ENTRY(exit, "exit");
    REAL_ENTRY(_exit, "_exit");
    REAL_ENTRY(_Exit, "_Exit");
    REAL_ENTRY(abort, "abort");
    REAL_ENTRY(libc_start_main, "__libc_start_main");
    REAL_ENTRY(read, "read");
    REAL_ENTRY(write, "write");
#undef REAL_ENTRY
    return n;
}

#define REAL_MAX_ENTRIES 64

Test(real, init_sets_every_pointer_and_ready)
{
    cr_assert(eq(int, mt_real.ready, 0), "nothing resolved before init");
    mt_real_init();
    cr_expect(eq(int, mt_real.ready, 1));
    struct real_entry e[REAL_MAX_ENTRIES];
    size_t n = real_entries(e);
    for (size_t i = 0; i < n; i++)
        cr_expect(ne(ptr, e[i].resolved, NULL), "mt_real.%s is set", e[i].name);
    cr_expect(eq(sz, n * sizeof(void *), offsetof(struct mt_real, ready)),
              "every pointer before `ready` is listed in this test");
}

Test(real, pointers_are_the_default_definitions_when_the_runner_defines_none)
{
    mt_real_init();
    struct real_entry e[REAL_MAX_ENTRIES];
    size_t n = real_entries(e);
    for (size_t i = 0; i < n; i++) {
        void *want = dlsym(RTLD_DEFAULT, e[i].name);
        cr_expect(eq(ptr, e[i].resolved, want), "mt_real.%s is the default definition", e[i].name);
        Dl_info in, self;
        cr_expect(ne(int, dladdr(e[i].resolved, &in), 0), "%s lies in a loaded object", e[i].name);
        cr_assert(ne(int, dladdr((void *)&mt_real_init, &self), 0));
        cr_expect(ne(ptr, in.dli_fbase, self.dli_fbase), "%s is not resolved to the shim itself",
                  e[i].name);
    }
}

Test(real, init_twice_keeps_the_pointers)
{
    mt_real_init();
    struct mt_real first = mt_real;
    mt_real_init();
    cr_expect(eq(int, memcmp(&first, &mt_real, sizeof first), 0));
}

Test(real, resolved_allocator_works)
{
    mt_real_init();
    char *p = mt_real.malloc(100);
    cr_assert(ne(ptr, p, NULL));
    memset(p, 0xab, 100);
    cr_expect(ge(sz, mt_real.malloc_usable_size(p), (size_t)100));
    p = mt_real.realloc(p, 5000);
    cr_assert(ne(ptr, p, NULL));
    cr_expect(eq(u8, (uint8_t)p[99], 0xab), "realloc kept the contents");
    mt_real.free(p);
    void *q = NULL;
    cr_expect(eq(int, mt_real.posix_memalign(&q, 256, 40), 0));
    cr_expect(eq(u64, (uintptr_t)q % 256, 0));
    mt_real.free(q);
}

/* ---- bootstrap arena ------------------------------------------------------------------------- */

Test(real, boot_alloc_honours_alignment)
{
    static const size_t aligns[] = { 16, 64, 4096, 32, 4096, 16 };
    static const size_t sizes[] = { 1, 100, 10, 4095, 0, 24 };
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        void *p = mt_boot_alloc(sizes[i], aligns[i]);
        cr_assert(ne(ptr, p, NULL));
        cr_expect(eq(u64, (uintptr_t)p % aligns[i], 0), "block %zu aligned to %zu", i, aligns[i]);
    }
}

Test(real, boot_alloc_gives_at_least_16_byte_alignment)
{
    static const size_t aligns[] = { 0, 1, 2, 8 };
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        void *p = mt_boot_alloc(3, aligns[i]);
        cr_expect(eq(u64, (uintptr_t)p % 16, 0), "align %zu gives 16", aligns[i]);
    }
}

Test(real, boot_blocks_do_not_overlap_and_keep_their_size)
{
    enum { N = 40 };
    unsigned char *p[N];
    size_t size[N];
    for (size_t i = 0; i < N; i++) {
        size[i] = 1 + i * 37 % 300;
        p[i] = mt_boot_alloc(size[i], i % 3 == 0 ? 64 : 16);
        memset(p[i], (int)i, size[i]);
    }
    for (size_t i = 0; i < N; i++) {
        cr_expect(eq(sz, mt_boot_size(p[i]), size[i]), "block %zu keeps its size", i);
        for (size_t k = 0; k < size[i]; k++)
            cr_assert(eq(u8, p[i][k], (uint8_t)i), "block %zu byte %zu not overwritten", i, k);
        if (i > 0)
            cr_expect(ge(ptr, (void *)p[i], (void *)(p[i - 1] + size[i - 1])),
                      "block %zu starts after block %zu", i, i - 1);
    }
}

Test(real, boot_owns_its_blocks_only)
{
    unsigned char *p = mt_boot_alloc(256, 16);
    unsigned char *q = mt_boot_alloc(4096, 4096);
    cr_expect(eq(int, mt_boot_owns(p), 1));
    cr_expect(eq(int, mt_boot_owns(p + 255), 1));
    cr_expect(eq(int, mt_boot_owns(q), 1));
    cr_expect(eq(int, mt_boot_owns(q + 4095), 1));
    int local;
    void *heap = malloc(16);
    cr_expect(eq(int, mt_boot_owns(&local), 0), "a stack address");
    cr_expect(eq(int, mt_boot_owns(heap), 0), "a heap block");
    cr_expect(eq(int, mt_boot_owns(NULL), 0));
    cr_expect(eq(int, mt_boot_owns((void *)&mt_real), 0), "a neighbouring global");
    free(heap);
}

Test(real, boot_alloc_of_more_than_the_arena_exits_134, .exit_code = 134,
     .init = cr_redirect_stderr)
{
    (void)mt_boot_alloc(1U << 20, 16);
}

Test(real, boot_alloc_exhaustion_message_names_the_size, .init = cr_redirect_stderr)
{
    fflush(stderr);
    pid_t pid = fork();
    cr_assert(ge(int, pid, 0));
    if (pid == 0) {
        (void)mt_boot_alloc(1U << 20, 16);
        _exit(0);
    }
    int status;
    cr_assert(eq(int, waitpid(pid, &status, 0), pid));
    cr_expect(eq(int, WIFEXITED(status) ? WEXITSTATUS(status) : -1, 134));
    static char out[4096];
    size_t n = fread(out, 1, sizeof out - 1, cr_get_redirected_stderr());
    out[n] = '\0';
    cr_expect(eq(str, out,
                 "memtrace: error: bootstrap arena exhausted (1048576 bytes requested "
                 "while resolving symbols)\n"));
}

/* The usable size read from glibc's chunk header equals malloc_usable_size for every size class,
 * aligned blocks, realloc'd blocks and mmapped chunks (sizes above the mmap threshold). */
Test(real, usable_size_from_the_chunk_header_is_glibcs)
{
    mt_real_init();
    cr_assert(eq(int, mt_real.glibc_chunks, 1), "the runner uses glibc's allocator");
    size_t sizes[] = { 0, 1, 8, 24, 25, 40, 1000, 4096, 100000, 131072, 200000, 1 << 20, 8 << 20 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        cr_assert(ne(ptr, p, NULL));
        cr_expect(eq(sz, mt_usable_size(p), malloc_usable_size(p)), "malloc(%zu)", sizes[i]);
        void *q = realloc(p, sizes[i] * 2 + 5);
        cr_assert(ne(ptr, q, NULL));
        cr_expect(eq(sz, mt_usable_size(q), malloc_usable_size(q)), "realloc to %zu",
                  sizes[i] * 2 + 5);
        free(q);
        void *a = NULL;
        cr_assert(eq(int, posix_memalign(&a, 256, sizes[i] + 1), 0));
        cr_expect(eq(sz, mt_usable_size(a), malloc_usable_size(a)), "aligned %zu", sizes[i] + 1);
        free(a);
        void *c = calloc(1, sizes[i] + 3);
        cr_expect(eq(sz, mt_usable_size(c), malloc_usable_size(c)), "calloc %zu", sizes[i] + 3);
        free(c);
    }
    for (size_t n = 0; n < 3000; n += 7) {
        void *p = malloc(n);
        cr_expect(eq(sz, mt_usable_size(p), malloc_usable_size(p)), "malloc(%zu)", n);
        free(p);
    }
    cr_expect(eq(sz, mt_usable_size(NULL), 0));
}
