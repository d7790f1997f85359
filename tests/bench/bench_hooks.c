/* Allocation churn benchmark (the workload of research/anchors.md §3): each thread runs
 * `iters` iterations of free(random slot) + malloc(16..1039 B) reached through a 9-16-deep
 * non-inlined call chain, over a 1024-slot ring of live blocks. Prints the seconds spent in the
 * work itself (start-up and exit processing excluded) and the number of allocator calls.
 *
 *   bench_hooks [threads] [iters] [mode]     mode: churn (default), deep (stack depth 60),
 *                                            realloc (growth chains), mmap (map/unmap churn)
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define SLOTS 1024

static long iters = 1000000;
static const char *mode = "churn";

static __attribute__((noinline)) void *leaf(size_t n)
{
    void *p = malloc(n);
    __asm__ __volatile__("" : : "r"(p) : "memory");
    return p;
}

static __attribute__((noinline)) void *chain(int depth, size_t n)
{
    void *p = depth <= 0 ? leaf(n) : chain(depth - 1, n);
    __asm__ __volatile__("" : : "r"(p) : "memory");
    return p;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *work(void *arg)
{
    uint64_t seed = 0x9e3779b97f4a7c15ULL ^ (uintptr_t)arg;
    void **ring = calloc(SLOTS, sizeof *ring);
    if (strcmp(mode, "mmap") == 0) {
        for (long i = 0; i < iters; i++) {
            size_t n = 4096 * (1 + rnd(&seed) % 16);
            void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p != MAP_FAILED)
                munmap(p, n);
        }
    } else if (strcmp(mode, "realloc") == 0) {
        for (long i = 0; i < iters; i++) {
            unsigned k = rnd(&seed) % SLOTS;
            size_t n = ring[k] ? 16 + rnd(&seed) % 4096 : 16;
            void *p = realloc(ring[k], n);
            if (p != NULL)
                ring[k] = p;
        }
    } else {
        int deep = strcmp(mode, "deep") == 0;
        for (long i = 0; i < iters; i++) {
            unsigned k = rnd(&seed) % SLOTS;
            free(ring[k]);
            int depth = deep ? 58 : 8 + (int)(rnd(&seed) % 8);
            ring[k] = chain(depth, 16 + rnd(&seed) % 1024);
        }
    }
    for (unsigned k = 0; k < SLOTS; k++)
        free(ring[k]);
    free(ring);
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (argc > 2)
        iters = atol(argv[2]);
    if (argc > 3)
        mode = argv[3];
    if (threads < 1 || threads > 256 || iters < 1) {
        fprintf(stderr, "usage: bench_hooks [threads 1..256] [iters] [churn|deep|realloc|mmap]\n");
        return 1;
    }
    pthread_t tid[256];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < threads; i++)
        pthread_create(&tid[i], NULL, work, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    printf("seconds %.6f calls %ld\n", s, 2L * iters * threads);
    return 0;
}
