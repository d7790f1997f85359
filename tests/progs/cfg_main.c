/* cfg_main: the configuration tests' program. The first thing main does is print
 * "main ran pid=N": a run stopped by a bad MEMTRACE_* value must leave stdout empty. Then it
 * allocates from a recursion 40 calls deep (deeper than a small MEMTRACE_DEPTH) and churns
 * blocks: 20000 by default, or argv[1] (200000 make about 2 MB of events, more than the default
 * 256 KiB buffer holds). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char *volatile ring[64];

static long rounds = 20000;

static int deep(int level)
{
    if (level == 0) {
        for (long i = 0; i < rounds; i++) {
            free(ring[i & 63]);
            ring[i & 63] = malloc(8 + (size_t)(i % 700));
        }
        return 0;
    }
    return deep(level - 1) + 1;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        rounds = atol(argv[1]);
    printf("main ran pid=%d\n", (int)getpid());
    fflush(stdout);
    int depth = deep(40);
    for (int i = 0; i < 64; i++)
        free(ring[i]);
    printf("depth %d\n", depth);
    return 0;
}
