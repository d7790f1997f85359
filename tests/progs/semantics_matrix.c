/* semantics_matrix: the observable behaviour of every hooked call in the cases of pitfalls.md
 * §15, one line per case, free of addresses so that a run with the shim and one without can be
 * compared line by line:
 *
 *   <case> ret=<null|ptr|map_failed|N> errno=<name> [usable=N] [aligned=0|1] [more]
 *
 * errno is set to a sentinel (EILSEQ) before every call, so a line shows whether the call left
 * errno alone. Pointers go through volatiles so GCC neither folds nor deletes any call.
 */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SENTINEL EILSEQ

static void *volatile sink;
static void *volatile nullp;
static volatile size_t v_zero = 0, v_huge = SIZE_MAX, v_ptrdiff_over = (size_t)PTRDIFF_MAX + 1,
                       v_over62 = ((size_t)1 << 62) + 1, v_half = SIZE_MAX / 2 + 2;

static const char *errname(int e)
{
    switch (e) {
    case 0:
        return "0";
    case SENTINEL:
        return "unchanged";
    case ENOMEM:
        return "ENOMEM";
    case EINVAL:
        return "EINVAL";
    case EBADF:
        return "EBADF";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "%d", e);
        return buf;
    }
    }
}

/* One line for a call that returns a heap pointer; frees it afterwards. */
static void heap(const char *name, void *p, int err, size_t align)
{
    sink = p;
    printf("%s ret=%s errno=%s", name, p ? "ptr" : "null", errname(err));
    if (p != NULL) {
        printf(" usable=%zu", malloc_usable_size(p));
        if (align)
            printf(" aligned=%d", ((uintptr_t)p % align) == 0);
    }
    printf("\n");
    free(p);
}

static void pre(void)
{
    errno = SENTINEL;
}

/* Call first, then read errno: as arguments of one call their order would be unspecified. */
#define HEAP(name, call, align)                                                                    \
    do {                                                                                           \
        void *p_ = (call);                                                                         \
        int e_ = errno;                                                                            \
        heap(name, p_, e_, align);                                                                 \
    } while (0)

static void case_malloc(void)
{
    pre();
    HEAP("malloc_0", malloc(v_zero), 16);
    pre();
    HEAP("malloc_100", malloc(100), 16);
    pre();
    HEAP("malloc_200000", malloc(200000), 16); /* above the mmap threshold */
    pre();
    HEAP("malloc_ptrdiff_max_plus_1", malloc(v_ptrdiff_over), 0);
    pre();
    HEAP("malloc_size_max", malloc(v_huge), 0);
}

static void case_calloc(void)
{
    pre();
    HEAP("calloc_0_0", calloc(v_zero, v_zero), 16);
    pre();
    HEAP("calloc_10_10", calloc(10, 10), 16);
    pre();
    HEAP("calloc_2e62plus1_4", calloc(v_over62, 4), 0);
    pre();
    HEAP("calloc_max_max", calloc(v_huge, v_huge), 0);
    /* zeroed even when the block is recycled from a dirty one */
    char *d = malloc(1000);
    memset(d, 0xab, 1000);
    sink = d;
    free(d);
    pre();
    unsigned char *z = calloc(1, 1000);
    int err = errno, zero = 1;
    for (int i = 0; z && i < 1000; i++)
        zero &= z[i] == 0;
    printf("calloc_recycled_zeroed ret=%s errno=%s zero=%d\n", z ? "ptr" : "null", errname(err),
           zero);
    free(z);
}

static void case_realloc(void)
{
    pre();
    HEAP("realloc_null_0", realloc(nullp, 0), 16);
    pre();
    HEAP("realloc_null_100", realloc(nullp, 100), 16);
    char *p = malloc(100);
    sink = p;
    pre();
    void *q = realloc(p, 0); /* glibc frees p and returns NULL */
    printf("realloc_p_0 ret=%s errno=%s\n", q ? "ptr" : "null", errname(errno));
    free(q);
    p = malloc(100);
    memset(p, 0x5a, 100);
    sink = p;
    pre();
    q = realloc(sink, v_huge); /* fails; p stays valid and intact */
    int err = errno, intact = 1;
    for (int i = 0; i < 100; i++)
        intact &= p[i] == 0x5a;
    printf("realloc_p_huge ret=%s errno=%s intact=%d usable=%zu\n", q ? "ptr" : "null",
           errname(err), intact, malloc_usable_size(p));
    p = realloc(p, 5000);
    sink = p;
    pre();
    p = realloc(p, 50);
    printf("realloc_shrink ret=%s errno=%s usable=%zu\n", p ? "ptr" : "null", errname(errno),
           p ? malloc_usable_size(p) : 0);
    pre();
    p = realloc(p, 300000);
    printf("realloc_grow_mmapped ret=%s errno=%s usable=%zu\n", p ? "ptr" : "null", errname(errno),
           p ? malloc_usable_size(p) : 0);
    free(p);
}

static void case_reallocarray(void)
{
    pre();
    HEAP("reallocarray_null_10_10", reallocarray(nullp, 10, 10), 16);
    pre();
    HEAP("reallocarray_overflow", reallocarray(nullp, v_over62, 4), 0);
    char *p = malloc(64);
    sink = p;
    pre();
    void *q = reallocarray(sink, v_over62, 4); /* fails, p untouched */
    printf("reallocarray_p_overflow ret=%s errno=%s usable=%zu\n", q ? "ptr" : "null",
           errname(errno), malloc_usable_size(p));
    pre();
    q = reallocarray(p, 0, 10);
    printf("reallocarray_p_0 ret=%s errno=%s\n", q ? "ptr" : "null", errname(errno));
    free(q);
}

static void pm(const char *name, size_t align, size_t size)
{
    void *m = (void *)0x1234;
    pre();
    int rc = posix_memalign(&m, align, size);
    int err = errno;
    printf("%s ret=%d errno=%s memptr=%s", name, rc, errname(err),
           m == (void *)0x1234 ? "untouched"
           : m                 ? "ptr"
                               : "null");
    if (rc == 0 && m != NULL)
        printf(" usable=%zu aligned=%d", malloc_usable_size(m), ((uintptr_t)m % align) == 0);
    printf("\n");
    if (rc == 0)
        free(m);
}

static void case_aligned(void)
{
    pm("posix_memalign_64_100", 64, 100);
    pm("posix_memalign_64_0", 64, 0);
    pm("posix_memalign_3_16", 3, 16);
    pm("posix_memalign_0_16", 0, 16);
    pm("posix_memalign_4_16", 4, 16); /* not a multiple of sizeof(void *) */
    pm("posix_memalign_64_huge", 64, v_huge);
    pm("posix_memalign_4096_5000", 4096, 5000);

    pre();
    HEAP("aligned_alloc_64_100", aligned_alloc(64, 100), 64); /* size not a multiple */
    pre();
    HEAP("aligned_alloc_3_100", aligned_alloc(3, 100), 4);
    pre();
    HEAP("aligned_alloc_0_100", aligned_alloc(v_zero, 100), 16);
    pre();
    HEAP("aligned_alloc_64_huge", aligned_alloc(64, v_huge), 0);
    pre();
    HEAP("aligned_alloc_halfmax_1", aligned_alloc(v_half, 1), 0);

    pre();
    HEAP("memalign_128_100", memalign(128, 100), 128);
    pre();
    HEAP("memalign_3_100", memalign(3, 100), 4);
    pre();
    HEAP("memalign_0_100", memalign(v_zero, 100), 16);
    pre();
    HEAP("memalign_64_huge", memalign(64, v_huge), 0);
    pre();
    HEAP("memalign_halfmax_1", memalign(v_half, 1), 0);

    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    pre();
    HEAP("valloc_0", valloc(v_zero), pg);
    pre();
    HEAP("valloc_1", valloc(1), pg);
    pre();
    HEAP("valloc_5000", valloc(5000), pg);
    pre();
    HEAP("valloc_huge", valloc(v_huge), 0);
    pre();
    HEAP("pvalloc_0", pvalloc(v_zero), pg);
    pre();
    HEAP("pvalloc_1", pvalloc(1), pg);
    pre();
    HEAP("pvalloc_5000", pvalloc(5000), pg);
    pre();
    HEAP("pvalloc_huge", pvalloc(v_huge), 0);
}

static void case_free_and_usable(void)
{
    pre();
    free(nullp);
    printf("free_null errno=%s\n", errname(errno));
    void *p = malloc(10);
    sink = p;
    pre();
    free(p);
    printf("free_block errno=%s\n", errname(errno));
    pre();
    size_t u = malloc_usable_size(nullp);
    printf("malloc_usable_size_null ret=%zu errno=%s\n", u, errname(errno));
}

static void mapped(const char *name, void *p, int err)
{
    printf("%s ret=%s errno=%s\n", name,
           p == MAP_FAILED ? "map_failed"
           : p             ? "ptr"
                           : "null",
           errname(err));
}

#define MAPPED(name, call)                                                                         \
    do {                                                                                           \
        void *p_ = (call);                                                                         \
        int e_ = errno;                                                                            \
        mapped(name, p_, e_);                                                                      \
    } while (0)

static void case_mmap(void)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    pre();
    char *a = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    MAPPED("mmap_anon_2pages", a);
    pre();
    MAPPED("mmap_len_0", mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    pre();
    MAPPED("mmap_bad_fd", mmap(NULL, pg, PROT_READ, MAP_PRIVATE, 12345, 0));
    pre();
    MAPPED("mmap64_anon", mmap64(NULL, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    pre();
    MAPPED("mmap64_len_0", mmap64(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    pre();
    a = mremap(a, 2 * pg, 8 * pg, MREMAP_MAYMOVE);
    mapped("mremap_grow", a, errno);
    pre();
    MAPPED("mremap_unaligned", mremap((void *)(uintptr_t)1, pg, 2 * pg, 0));
    pre();
    MAPPED("mremap_bad_flags", mremap(a, 8 * pg, 8 * pg, MREMAP_FIXED));
    pre();
    int rc = munmap(a, 8 * pg);
    printf("munmap_ok ret=%d errno=%s\n", rc, errname(errno));
    pre();
    rc = munmap((void *)(uintptr_t)1, pg);
    printf("munmap_unaligned ret=%d errno=%s\n", rc, errname(errno));
    pre();
    rc = munmap(NULL, 0);
    printf("munmap_len_0 ret=%d errno=%s\n", rc, errname(errno));
}

int main(void)
{
    case_malloc();
    case_calloc();
    case_realloc();
    case_reallocarray();
    case_aligned();
    case_free_and_usable();
    case_mmap();
    return 0;
}
