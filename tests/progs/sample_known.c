/* Known allocation totals for the sampling tests (tests/integration/test_sample.c).
 *   sample_known churn N   N mallocs of sizes 64..4096 from churn_site, each freed at once,
 *                          plus 100 reallocs growing one block; prints "total <bytes>" (what
 *                          churn_site asked for) and "calls <mallocs>"
 *   sample_known leak N    N blocks of 16 bytes from leak_site, every pointer dropped: lost
 * Deterministic: the same calls in the same order on every run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile escape; /* every block escapes here: the compiler may not elide one */

__attribute__((noinline)) static unsigned long churn_site(long n)
{
    unsigned long total = 0;
    for (long i = 0; i < n; i++) {
        size_t size = 64 + (size_t)(i * 37 % 4033);
        char *p = malloc(size);
        if (p == NULL)
            abort();
        escape = p;
        total += size;
        free(p);
    }
    return total;
}

__attribute__((noinline)) static void grow_site(void)
{
    char *p = NULL;
    for (size_t size = 16; size <= 1600; size += 16) {
        char *q = realloc(p, size);
        if (q == NULL)
            abort();
        p = q;
        escape = p;
    }
    free(p);
}

__attribute__((noinline)) static void leak_site(long n)
{
    for (long i = 0; i < n; i++) {
        char *p = malloc(16);
        if (p == NULL)
            abort();
        escape = p;
    }
    escape = NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    long n = atol(argv[2]);
    if (strcmp(argv[1], "churn") == 0) {
        unsigned long total = churn_site(n);
        grow_site();
        printf("total %lu\ncalls %ld\n", total, n);
    } else if (strcmp(argv[1], "leak") == 0) {
        leak_site(n);
        printf("leaked %ld\n", n);
    } else {
        return 2;
    }
    return 0;
}
