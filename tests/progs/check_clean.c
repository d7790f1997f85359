/* check_clean: a clean program for `memtrace check` (tests/integration/test_check.c): threads
 * that allocate and free, stdio, a thread-local buffer freed by a destructor, strdup and
 * realloc; it frees everything it allocated, so the gate must pass.
 *
 *     check_clean [THREADS]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_key_t key;
static void *volatile sink;

static void *work(void *arg)
{
    size_t n = 100 + (size_t)(uintptr_t)arg;
    char **v = NULL;
    for (size_t i = 0; i < n; i++) {
        v = realloc(v, (i + 1) * sizeof *v);
        v[i] = strdup("check_clean");
    }
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    pthread_setspecific(key, malloc(64)); /* freed by the key's destructor at thread exit */
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    pthread_key_create(&key, free);
    pthread_t t[64];
    threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, work, (void *)(uintptr_t)i);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    char *msg = malloc(32);
    snprintf(msg, 32, "%d threads", threads);
    sink = msg;
    printf("check_clean: %s\n", msg);
    free(msg);
    return 0;
}
