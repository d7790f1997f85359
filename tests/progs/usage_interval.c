/* usage_interval: allocates and frees in a loop for about `ms` milliseconds (argument, default
 * 200) on the main thread and, with a second argument "threads", on two more threads, so
 * MEMTRACE_INTERVAL snapshots have calls to ride on. Prints "done" and exits 0. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long run_ms = 200;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *churn(void *arg)
{
    (void)arg;
    uint64_t end = now_ms() + (uint64_t)run_ms;
    while (now_ms() < end) {
        char *volatile p = malloc(64);
        free(p);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        run_ms = atol(argv[1]);
    int threads = argc > 2 && strcmp(argv[2], "threads") == 0;
    pthread_t t[2];
    for (int i = 0; threads && i < 2; i++)
        pthread_create(&t[i], NULL, churn, NULL);
    churn(NULL);
    for (int i = 0; threads && i < 2; i++)
        pthread_join(t[i], NULL);
    printf("done\n");
    return 0;
}
