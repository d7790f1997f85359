/* exec_self: replaces its own image N times, same pid.
 *
 *   exec_self N    3 x malloc(55550 + N), then unless N is 0 exec itself with N - 1: through
 *                  execv when N is 3, execl when 2, execvp when 1 (so three exec entry points
 *                  are crossed), printing "gen <N> pid <pid>" before each step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *volatile sink;

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: exec_self N\n");
        return 2;
    }
    int n = atoi(argv[1]);
    for (int i = 0; i < 3; i++) {
        sink = malloc(55550 + (size_t)n);
        free(sink);
    }
    printf("gen %d pid %d\n", n, (int)getpid());
    fflush(stdout);
    if (n == 0)
        return 0;
    char next[16];
    snprintf(next, sizeof next, "%d", n - 1);
    char *args[] = { argv[0], next, NULL };
    if (n == 3)
        execv("/proc/self/exe", args);
    else if (n == 2)
        execl("/proc/self/exe", argv[0], next, (char *)NULL);
    else
        execvp("/proc/self/exe", args);
    perror("exec_self: exec");
    return 1;
}
