/* clean_threads: a C program that starts threads, lets each allocate and free, joins them and
 * frees everything it allocated; memtrace-report must find no leaks (glibc keeps the threads'
 * TLS blocks and stacks cached to exit: the built-in suppressions know them).
 *
 *     clean_threads [THREADS]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

static void *work(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    void **blocks = malloc(n * sizeof *blocks);
    for (size_t i = 0; i < n; i++)
        blocks[i] = malloc(16 + i);
    for (size_t i = 0; i < n; i++)
        free(blocks[i]);
    free(blocks);
    char *s = strdup("thread");
    sink = s;
    free(s);
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, work, (void *)(uintptr_t)(100 + i)) != 0)
            return 1;
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    free(t);
    printf("clean_threads: %d threads joined\n", threads);
    return 0;
}
