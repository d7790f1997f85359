/* unwind_nofp: allocations from frames the CFI walker must get exactly right, compiled without
 * frame pointers (the pragma overrides the Makefile's -fno-omit-frame-pointer): alloca and VLA
 * frames (rbp-based CFA), deep recursion past the depth limit, signal handlers that allocate on
 * the thread's stack and on a sigaltstack, threads, and dlopen/dlclose cycles of a library that
 * allocates. Run under MEMTRACE_UNWIND_VERIFY=1 by tests/integration/test_unwind_verify.c.
 *   unwind_nofp LIBRARY ROUNDS
 * Prints "done ROUNDS SUM". */
#pragma GCC optimize("omit-frame-pointer")
#include <alloca.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;
static volatile long sum;

static __attribute__((noinline)) void keep(size_t n)
{
    void *p = malloc(n);
    sink = p;
    sum += (long)n;
    free(p);
}

/* Variable-size frames: GCC sets up rbp as the CFA base even without frame pointers. */
static __attribute__((noinline)) void with_alloca(size_t n)
{
    char *a = alloca(n);
    memset(a, 1, n);
    keep(n + (size_t)a[n - 1]);
}

static __attribute__((noinline)) void with_vla(size_t n)
{
    char v[n]; /* NOLINT: the point of the test */
    memset(v, 2, n);
    keep(n + (size_t)v[0]);
    with_alloca(n / 2 + 1);
}

static __attribute__((noinline)) int recurse(int depth)
{
    if (depth == 0) {
        keep(4242);
        return 0;
    }
    if (depth % 16 == 0)
        keep((size_t)depth);
    return recurse(depth - 1) + 1; /* not a tail call */
}

static void on_signal(int sig)
{
    keep(100 + (size_t)sig);
    with_vla(64);
}

static __attribute__((noinline)) void signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGUSR1, &sa, NULL);
    for (int i = 0; i < 20; i++)
        raise(SIGUSR1);
    static char altstack[1 << 16];
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
    sigaltstack(&ss, NULL);
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR2, &sa, NULL);
    for (int i = 0; i < 20; i++)
        raise(SIGUSR2);
}

static void *thread_main(void *arg)
{
    for (int i = 0; i < 200; i++) {
        with_vla(32 + (size_t)i);
        recurse((int)(long)arg + i % 8);
    }
    return NULL;
}

static __attribute__((noinline)) void threads(void)
{
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, thread_main, (void *)(i * 10));
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
}

static __attribute__((noinline)) void dl_cycles(const char *lib, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
        if (h == NULL) {
            fprintf(stderr, "unwind_nofp: dlopen %s: %s\n", lib, dlerror());
            exit(1);
        }
        int (*work)(int) = (int (*)(int))dlsym(h, "robust_dl_work");
        if (work != NULL)
            sum += work(i);
        keep(77);
        dlclose(h);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: unwind_nofp LIBRARY ROUNDS\n");
        return 2;
    }
    int rounds = atoi(argv[2]);
    for (int i = 0; i < 100; i++)
        with_vla(16 + (size_t)i);
    recurse(10);
    recurse(100); /* deeper than MEMTRACE_DEPTH's default 64: truncated the same way */
    recurse(300); /* deeper than libunwind's buffer */
    signals();
    threads();
    dl_cycles(argv[1], rounds);
    printf("done %d %ld\n", rounds, sum);
    return 0;
}
