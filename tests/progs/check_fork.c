/* check_fork: a parent that forks children that leak, as test runners do. The parent frees all
 * it allocated; child 1 loses CHILD_BLOCKS blocks and exits 0; child 2 execs check_leak (found
 * next to this program), which loses memory at its two sites. Exits 0 when both children exited
 * 0. Prints "pid PARENT CHILD1 CHILD2" with write(2).
 *
 *     check_fork [PATH_OF_CHECK_LEAK]
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_BLOCKS 2
#define CHILD_SIZE   640

static void *volatile sink;

static void child_leaks(void)
{
    for (int i = 0; i < CHILD_BLOCKS; i++)
        sink = malloc(CHILD_SIZE);
    sink = NULL;
}

int main(int argc, char **argv)
{
    char leak[PATH_MAX];
    if (argc > 1) {
        snprintf(leak, sizeof leak, "%s", argv[1]);
    } else {
        ssize_t n = readlink("/proc/self/exe", leak, sizeof leak - 32);
        if (n < 0)
            return 2;
        leak[n] = '\0';
        strcpy(strrchr(leak, '/') + 1, "check_leak");
    }
    char *mine = malloc(128);
    sink = mine;
    pid_t c1 = fork();
    if (c1 == 0) {
        child_leaks();
        _exit(0); /* no atexit, like a test runner's worker; the shim still ends the trace */
    }
    pid_t c2 = fork();
    if (c2 == 0) {
        char *args[] = { leak, NULL };
        execv(leak, args);
        _exit(127);
    }
    int s1 = 0, s2 = 0;
    waitpid(c1, &s1, 0);
    waitpid(c2, &s2, 0);
    free(mine);
    char buf[96];
    int n = snprintf(buf, sizeof buf, "pid %d %d %d\n", (int)getpid(), (int)c1, (int)c2);
    if (write(1, buf, (size_t)n) != n)
        return 3;
    return WIFEXITED(s1) && WEXITSTATUS(s1) == 0 && WIFEXITED(s2) && WEXITSTATUS(s2) == 0 ? 0 : 1;
}
