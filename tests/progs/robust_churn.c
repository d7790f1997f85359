/* robust_churn: threads that allocate and free in a loop, for the robustness tests (killed at a
 * random moment, traced onto a full disk, truncated traces).
 *   robust_churn THREADS ITERATIONS [realloc] [pace=MICROSECONDS]
 * ITERATIONS 0 loops until killed; pace=N sleeps N µs every 100 iterations (keeps the trace of
 * a run that is killed later small). Each thread keeps a ring of 64 live blocks and replaces one
 * per iteration (malloc, calloc, and with "realloc" also realloc), so frees reach back in time
 * and addresses get reused. Sizes come from a per-thread xorshift seeded by the thread index:
 * the same arguments make the same calls. Prints "done <checksum>" at the end, where the
 * checksum depends only on the arguments (the program's visible behaviour under the shim must
 * not change).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING 64

static long iterations;
static int with_realloc;
static long pace_us;
static uint64_t sums[64];

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *churn(void *arg)
{
    long idx = (long)arg;
    uint64_t seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(idx + 1), sum = 0;
    /* volatile: GCC -O1 may otherwise delete malloc/free pairs (pitfalls.md, test gotcha) */
    char *volatile ring[RING] = { 0 };
    for (long i = 0; iterations == 0 || i < iterations; i++) {
        uint64_t r = next(&seed);
        unsigned slot = (unsigned)(r % RING);
        size_t size = 1 + (size_t)((r >> 8) % 2000);
        char *p = ring[slot];
        if (with_realloc && p != NULL && (r >> 40) % 4 == 0) {
            char *q = realloc(p, size);
            if (q == NULL)
                abort();
            q[0] = (char)size;
            ring[slot] = q;
        } else {
            free(p);
            p = (r >> 48) % 3 == 0 ? calloc(1, size) : malloc(size);
            if (p == NULL)
                abort();
            p[0] = (char)size;
            ring[slot] = p;
        }
        sum += size;
        if (pace_us > 0 && i % 100 == 99) {
            struct timespec ts = { 0, pace_us * 1000 };
            nanosleep(&ts, NULL);
        }
    }
    for (unsigned k = 0; k < RING; k++)
        free(ring[k]);
    sums[idx] = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: robust_churn THREADS ITERATIONS [realloc] [pace=US]\n");
        return 1;
    }
    int n = atoi(argv[1]);
    iterations = atol(argv[2]);
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "realloc") == 0)
            with_realloc = 1;
        else if (strncmp(argv[i], "pace=", 5) == 0)
            pace_us = atol(argv[i] + 5);
        else
            return 1;
    }
    if (n < 1 || n > 64)
        return 1;
    pthread_t th[64];
    for (long i = 1; i < n; i++)
        if (pthread_create(&th[i], NULL, churn, (void *)i) != 0)
            return 1;
    churn((void *)0);
    uint64_t total = sums[0];
    for (long i = 1; i < n; i++) {
        pthread_join(th[i], NULL);
        total += sums[i];
    }
    printf("done %llu\n", (unsigned long long)total);
    return 0;
}
