/* stack_depth: allocations from known call chains, for the stack tests.
 *
 *   stack_depth nested N    N times: main -> stack_a -> stack_b -> stack_c -> malloc(777)
 *   stack_depth deep D      main -> stack_recurse x D -> malloc(4242)
 *   stack_depth threads T N main calls stack_a once, then T threads, each N times:
 *                           stack_thread -> stack_a -> ... -> malloc(777)
 *
 * Every function is a real frame (built with -fno-inline -fno-omit-frame-pointer) and the
 * recursion is not a tail call, so the chains the tests expect are the chains that run.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

void stack_c(void);
void stack_b(void);
void stack_a(void);

void stack_c(void)
{
    sink = malloc(777);
    free(sink);
}

void stack_b(void)
{
    stack_c();
    sink = sink; /* keeps the call from being a tail call */
}

void stack_a(void)
{
    stack_b();
    sink = sink;
}

int stack_recurse(int depth);

int stack_recurse(int depth)
{
    if (depth == 0) {
        sink = malloc(4242);
        free(sink);
        return 0;
    }
    return stack_recurse(depth - 1) + 1; /* not a tail call: every level is a frame */
}

static long rounds;

static void *stack_thread(void *arg)
{
    (void)arg;
    for (long i = 0; i < rounds; i++)
        stack_a();
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: stack_depth nested N | deep D | threads T N\n");
        return 2;
    }
    long n = strtol(argv[2], NULL, 10);
    if (strcmp(argv[1], "nested") == 0) {
        for (long i = 0; i < n; i++)
            stack_a();
    } else if (strcmp(argv[1], "deep") == 0) {
        if (stack_recurse((int)n) != (int)n)
            return 1;
    } else if (strcmp(argv[1], "threads") == 0 && argc > 3) {
        rounds = strtol(argv[3], NULL, 10);
        stack_a(); /* the same innermost frames as the threads' calls, before them */
        pthread_t th[64];
        if (n < 1 || n > 64)
            return 2;
        for (long i = 0; i < n; i++)
            if (pthread_create(&th[i], NULL, stack_thread, NULL) != 0)
                return 1;
        for (long i = 0; i < n; i++)
            pthread_join(th[i], NULL);
    } else {
        return 2;
    }
    return 0;
}
