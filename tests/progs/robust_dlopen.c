/* robust_dlopen: dlopen/dlclose a library in a loop while two threads allocate, the shape that
 * deadlocks a tracer holding its own lock across dl_iterate_phdr (pitfalls.md §5).
 *   robust_dlopen LIBRARY ROUNDS
 * Prints "done ROUNDS SUM". The allocating threads nap 20 µs every 64 calls: they only need to
 * overlap the loader's work, and at full speed they would write gigabytes of trace. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static atomic_int stop;

static void *allocate(void *arg)
{
    (void)arg;
    char *volatile ring[32] = { 0 };
    for (unsigned i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++) {
        free(ring[i & 31]);
        ring[i & 31] = malloc(8 + (i % 300));
        if (i % 64 == 63) {
            struct timespec ts = { 0, 20000 };
            nanosleep(&ts, NULL);
        }
    }
    for (int k = 0; k < 32; k++)
        free(ring[k]);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 1;
    long rounds = atol(argv[2]);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&th[i], NULL, allocate, NULL) != 0)
            return 1;
    long sum = 0;
    for (long r = 0; r < rounds; r++) {
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (h == NULL) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            return 1;
        }
        int (*work)(int) = (int (*)(int))dlsym(h, "robust_dl_work");
        if (work == NULL)
            return 1;
        sum += work(4);
        if (dlclose(h) != 0)
            return 1;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    printf("done %ld %ld\n", rounds, sum);
    return 0;
}
