/* limit_heap: the classic experiment under MEMTRACE_HEAP_LIMIT / MEMTRACE_EXTERNAL_LIMIT.
 *
 *   limit_heap heap N      N steps of malloc(1 MiB), kept; prints "step <i>" after each. Under
 *                          the cap in abort mode it dies in step_heap (SIGABRT); in enomem mode a
 *                          refused malloc prints "enomem at <i> errno <e>", then checks that a
 *                          refused realloc leaves its block valid and counted ("realloc kept
 *                          <0|1> counted <0|1>"), frees everything, allocates again ("after free
 *                          ok") and exits 0.
 *   limit_heap external N  N steps of mmap(1 MiB anonymous), kept: passes a heap cap; under an
 *                          external cap it dies (abort) or prints "enomem at <i> errno <e>".
 *
 * Output goes through write(2) so nothing is lost when the process aborts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "memtrace.h"

#define STEP (1 << 20)

static void say(const char *fmt, long a, long b)
{
    char line[128];
    int n = snprintf(line, sizeof line, fmt, a, b);
    if (write(1, line, (size_t)n) != n)
        _exit(3);
}

static char *blocks[4096];

__attribute__((noinline)) static char *step_heap(void)
{
    char *p = malloc(STEP);
    if (p != NULL)
        memset(p, 1, STEP);
    return p;
}

__attribute__((noinline)) static char *step_external(void)
{
    char *p = mmap(NULL, STEP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* After a refusal: a refused realloc keeps its block (valid, still counted). */
static void check_realloc(int last)
{
    char *old = blocks[last];
    old[0] = 42;
    struct memtrace_usage before, after;
    memtrace_usage(&before);
    char *grown = realloc(old, 64 * STEP);
    memtrace_usage(&after);
    say("realloc kept %ld counted %ld\n", grown == NULL && old[0] == 42,
        after.heap_used == before.heap_used);
    if (grown != NULL)
        blocks[last] = grown;
}

int main(int argc, char **argv)
{
    int external = argc > 1 && strcmp(argv[1], "external") == 0;
    long steps = argc > 2 ? atol(argv[2]) : 100;
    if (steps > 4096)
        steps = 4096;
    long i;
    for (i = 0; i < steps; i++) {
        errno = 0;
        blocks[i] = external ? step_external() : step_heap();
        if (blocks[i] == NULL) {
            say("enomem at %ld errno %ld\n", i, errno);
            break;
        }
        say("step %ld\n", i, 0);
    }
    if (!external && i < steps && i > 0) {
        check_realloc((int)i - 1);
        for (long k = 0; k < i; k++)
            free(blocks[k]);
        char *again = malloc(STEP);
        say(again != NULL ? "after free ok\n" : "after free failed\n", 0, 0);
        free(again);
    }
    say("done %ld\n", i, 0);
    return 0;
}
