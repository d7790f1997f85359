/* calls_known: calls every hooked allocation function a known number of times.
 *
 *   calls_known N [basic]
 *
 * Runs `calls_round(i)` for i = 0..N-1. Each round makes the calls listed in the table of
 * tests/integration/test_counts.c (keep the two in step). "basic" restricts a round to malloc,
 * calloc, realloc and free, the four functions glibc's memusage counts. Every pointer goes
 * through a volatile so GCC cannot delete malloc/free pairs or fold realloc(NULL, n) into
 * malloc(n) (pitfalls.md, test gotcha). Prints one line to stdout after the rounds (stdio's
 * buffer is the only allocation that is not a call of the program); exits 1 if a call did not
 * behave as glibc documents.
 */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void *volatile sink;
static void *volatile nullp; /* NULL that GCC cannot see: it folds realloc(NULL, n) to malloc(n)
                               and deletes free(NULL) */
static int bad;
/* Read through volatiles so GCC neither warns about nor folds the failing calls. */
static volatile size_t huge = SIZE_MAX - 4096;
static volatile size_t half = SIZE_MAX / 2;
static volatile size_t over62 = ((size_t)1 << 62) + 1;

static void *keep(void *p)
{
    sink = p;
    return sink;
}

static void check(int ok, const char *what)
{
    if (!ok) {
        bad = 1;
        fprintf(stderr, "calls_known: unexpected result: %s (errno %d)\n", what, errno);
    }
}

/* malloc 2 (1 failed), calloc 2 (1 failed), realloc 5 (1 failed), free 4 (1 of NULL) */
static void calls_basic(size_t i)
{
    void *p = keep(malloc(1000 + i));
    check(p != NULL, "malloc");
    p = keep(realloc(p, 2000 + i)); /* grow */
    check(p != NULL, "realloc grow");
    free(p);

    p = keep(calloc(3, 100 + i));
    check(p != NULL, "calloc");
    free(p);

    p = keep(realloc(nullp, 3000 + i)); /* realloc(NULL, n) is malloc */
    check(p != NULL, "realloc(NULL, n)");
    p = keep(realloc(p, 0)); /* glibc: frees p, returns NULL */
    check(p == NULL, "realloc(p, 0)");

    free(nullp);

    errno = 0;
    p = keep(malloc(huge)); /* fails: larger than PTRDIFF_MAX */
    check(p == NULL && errno == ENOMEM, "malloc(huge)");
    errno = 0;
    p = keep(calloc(over62, 4)); /* nmemb * size overflows */
    check(p == NULL && errno == ENOMEM, "calloc overflow");

    p = keep(realloc(nullp, 10 + i));
    errno = 0;
    check(keep(realloc(sink, huge)) == NULL && errno == ENOMEM, "realloc(p, huge)");
    free(p); /* a failed realloc leaves p valid */
}

/* reallocarray 3 (1 failed), posix_memalign 2 (1 failed), aligned_alloc 1, memalign 1,
 * valloc 1, pvalloc 1, free 6 */
static void calls_aligned(size_t i)
{
    void *p = keep(reallocarray(nullp, 4, 100 + i));
    check(p != NULL, "reallocarray(NULL)");
    p = keep(reallocarray(p, 8, 100 + i));
    check(p != NULL, "reallocarray grow");
    free(p);
    errno = 0;
    p = keep(reallocarray(nullp, half, 3)); /* nmemb * size overflows */
    check(p == NULL && errno == ENOMEM, "reallocarray overflow");

    void *m = NULL;
    check(posix_memalign(&m, 64, 5000 + i) == 0 && m != NULL, "posix_memalign");
    free(keep(m));
    void *untouched = (void *)0x1234;
    check(posix_memalign(&untouched, 3, 16) == EINVAL, "posix_memalign EINVAL");
    check(untouched == (void *)0x1234, "posix_memalign leaves *memptr alone");

    p = keep(aligned_alloc(256, 6000 + i));
    check(p != NULL && ((uintptr_t)p & 255) == 0, "aligned_alloc");
    free(p);
    p = keep(memalign(128, 7000 + i));
    check(p != NULL && ((uintptr_t)p & 127) == 0, "memalign");
    free(p);
    p = keep(valloc(8000 + i));
    check(p != NULL, "valloc");
    free(p);
    p = keep(pvalloc(9000 + i));
    check(p != NULL, "pvalloc");
    free(p);
}

/* mmap 2 (1 failed), mmap64 2, mremap 3 (1 failed), munmap 3 (1 failed) */
static void calls_mmap(size_t i)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    (void)i;
    char *a = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(a != MAP_FAILED, "mmap");
    char *t = mmap64(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(t != MAP_FAILED, "mmap64");
    a[0] = 1;
    a = mremap(a, 2 * pg, 4 * pg, MREMAP_MAYMOVE); /* grow */
    check(a != MAP_FAILED, "mremap grow");
    a = mremap(a, 4 * pg, 4 * pg, MREMAP_MAYMOVE | MREMAP_FIXED, t); /* move over t */
    check(a == t && a[0] == 1, "mremap move");
    check(munmap(a, 4 * pg) == 0, "munmap");

    char *s = mmap64(NULL, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(s != MAP_FAILED, "mmap64 small");
    check(munmap(s, pg) == 0, "munmap small");

    errno = 0;
    check(mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED &&
              errno == EINVAL,
          "mmap(len 0) fails");
    errno = 0;
    check(munmap((void *)(uintptr_t)1, pg) == -1 && errno == EINVAL, "munmap unaligned fails");
    errno = 0;
    check(mremap((void *)(uintptr_t)1, pg, 2 * pg, 0) == MAP_FAILED && errno == EINVAL,
          "mremap unaligned fails");
}

static void calls_round(size_t i, int basic)
{
    calls_basic(i);
    if (!basic) {
        calls_aligned(i);
        calls_mmap(i);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: calls_known N [basic]\n");
        return 2;
    }
    size_t n = strtoul(argv[1], NULL, 10);
    int basic = argc > 2 && strcmp(argv[2], "basic") == 0;
    for (size_t i = 0; i < n; i++)
        calls_round(i, basic);
    /* stdio allocates its buffer here: an allocation that is not the program's own call */
    printf("calls_known: %zu rounds%s\n", n, basic ? " (basic)" : "");
    return bad;
}
