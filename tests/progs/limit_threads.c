/* limit_threads LIMIT_BYTES: 8 threads released at once by a barrier, each allocating 64 KiB
 * blocks (kept) until malloc fails, so they all cross the heap cap together. In enomem mode the
 * main thread then prints "heap_used <H> limit <L> block <U> refused <R>" (memtrace_usage(), the
 * cap given as argument, one block's usable size, threads that saw NULL) and frees everything;
 * in abort mode the process dies with one fatal message. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memtrace.h"

#define THREADS 8
#define BLOCK   (64 << 10)
#define MAXB    4096

static pthread_barrier_t go;
static char *blocks[THREADS][MAXB];
static int refused[THREADS];

static void *grow(void *arg)
{
    long t = (long)arg;
    pthread_barrier_wait(&go);
    for (int i = 0; i < MAXB; i++) {
        blocks[t][i] = malloc(BLOCK);
        if (blocks[t][i] == NULL) {
            refused[t] = 1;
            break;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned long long limit = argc > 1 ? strtoull(argv[1], NULL, 10) : 0;
    pthread_t th[THREADS];
    pthread_barrier_init(&go, NULL, THREADS);
    for (long t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, grow, (void *)t);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    struct memtrace_usage u;
    memtrace_usage(&u);
    int nref = 0;
    for (int t = 0; t < THREADS; t++)
        nref += refused[t];
    size_t block = 0;
    for (int t = 0; t < THREADS && block == 0; t++)
        if (blocks[t][0] != NULL)
            block = malloc_usable_size(blocks[t][0]);
    printf("heap_used %llu limit %llu block %zu refused %d\n", (unsigned long long)u.heap_used,
           limit, block, nref);
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < MAXB && blocks[t][i] != NULL; i++)
            free(blocks[t][i]);
    return 0;
}
