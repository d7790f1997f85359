/* threads_churn: multi-threaded allocation patterns with countable outcomes.
 *
 *   threads_churn churn T N    T threads, thread k makes N malloc(5000+k)/free pairs
 *   threads_churn detached MS  a detached thread mallocs/frees without end; main returns
 *                              MS milliseconds after it made 1000 pairs, while it is still
 *                              allocating
 *   threads_churn cross K      thread A mallocs K blocks of 6000 bytes (all live at once),
 *                              thread B frees them after A exited
 *   threads_churn keydtor T    T threads each malloc(31337) into a pthread key created by
 *                              the program (after the shim's); the key destructor frees it
 *
 * Pointers go through volatiles so GCC keeps every malloc/free pair.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static __thread void *volatile sink; /* per thread: threads must not free each other's blocks */

static long pairs;

static void *churn_thread(void *arg)
{
    size_t size = 5000 + (size_t)(long)arg;
    for (long i = 0; i < pairs; i++) {
        sink = malloc(size);
        free(sink);
    }
    return NULL;
}

static atomic_ulong detached_rounds;

static void *detached_thread(void *arg)
{
    (void)arg;
    for (unsigned long i = 0;; i++) {
        sink = malloc(64 + (i & 255));
        free(sink);
        atomic_store_explicit(&detached_rounds, i + 1, memory_order_relaxed);
    }
    return NULL;
}

static void **blocks;
static long nblocks;

static void *cross_alloc(void *arg)
{
    (void)arg;
    for (long i = 0; i < nblocks; i++) {
        blocks[i] = malloc(6000);
        sink = blocks[i];
    }
    return NULL;
}

static void *cross_free(void *arg)
{
    (void)arg;
    for (long i = 0; i < nblocks; i++)
        free(blocks[i]);
    return NULL;
}

static pthread_key_t key;

static void key_destructor(void *p)
{
    free(p); /* runs after the shim's own key destructor (pitfalls.md §6) */
}

static void *key_thread(void *arg)
{
    (void)arg;
    void *p = malloc(31337);
    sink = p;
    pthread_setspecific(key, p);
    return NULL;
}

static int run_threads(long n, void *(*fn)(void *))
{
    pthread_t th[256];
    if (n < 1 || n > 256)
        return 2;
    for (long i = 0; i < n; i++)
        if (pthread_create(&th[i], NULL, fn, (void *)i) != 0)
            return 1;
    for (long i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: threads_churn churn T N | detached MS | cross K | keydtor T\n");
        return 2;
    }
    long n = strtol(argv[2], NULL, 10);
    if (strcmp(argv[1], "churn") == 0 && argc > 3) {
        pairs = strtol(argv[3], NULL, 10);
        return run_threads(n, churn_thread);
    }
    if (strcmp(argv[1], "detached") == 0) {
        pthread_t th;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &a, detached_thread, NULL) != 0)
            return 1;
        struct timespec ms = { 0, 1000000L }, ts = { n / 1000, (n % 1000) * 1000000L };
        while (atomic_load(&detached_rounds) < 1000) /* running for sure, even on a busy host */
            nanosleep(&ms, NULL);
        nanosleep(&ts, NULL);
        return 0; /* exit() runs with the thread still allocating */
    }
    if (strcmp(argv[1], "cross") == 0) {
        nblocks = n;
        blocks = calloc((size_t)n, sizeof *blocks);
        if (blocks == NULL)
            return 1;
        pthread_t a, b;
        if (pthread_create(&a, NULL, cross_alloc, NULL) != 0)
            return 1;
        pthread_join(a, NULL);
        if (pthread_create(&b, NULL, cross_free, NULL) != 0)
            return 1;
        pthread_join(b, NULL);
        free(blocks);
        return 0;
    }
    if (strcmp(argv[1], "keydtor") == 0) {
        if (pthread_key_create(&key, key_destructor) != 0)
            return 1;
        return run_threads(n, key_thread);
    }
    return 2;
}
