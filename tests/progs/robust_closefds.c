/* robust_closefds: a daemon-style program that closes every descriptor from 3 to 1023, then
 * opens a file of its own and writes to it while it keeps allocating (so the shim flushes event
 * buffers meanwhile). Right after the open, before any flush can tell the shim its trace is gone,
 * it allocates from new, deep call sites, so the shim's unwinder does its slowest work while
 * every descriptor it held is closed or reused.
 *   robust_closefds close|occupy FILE
 * "occupy" also dup2()s the file onto every descriptor from 900 to 1023, so whatever number the
 * trace had now names the program's file. The file must end up holding exactly the program's
 * lines "line 0\n" .. "line 1999\n". Prints "done" at the end.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINES 2000

static char *volatile keep[16];

static void churn(int n)
{
    for (int i = 0; i < n; i++) {
        free(keep[i & 15]);
        keep[i & 15] = malloc(16 + (size_t)(i % 500));
    }
}

/* Allocations below 16 frames of 4 KiB each, from call sites first reached after the
 * descriptors were closed: unwinding them reads stack memory from many pages, new to the
 * unwinder, which is when an unwinder validates addresses (libunwind does it through a pipe whose
 * descriptors the program closed). */
static int fresh_sites(int depth)
{
    volatile char pad[4096];
    pad[0] = (char)depth;
    if (depth > 0)
        return fresh_sites(depth - 1) + pad[0];
    char *volatile a = strdup("fresh");
    char *volatile b = calloc(3, 40);
    char *volatile c = realloc(NULL, 100);
    free(a);
    free(b);
    free(c);
    return pad[0];
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 1;
    int occupy = strcmp(argv[1], "occupy") == 0;
    churn(1000);
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror("open");
        return 1;
    }
    if (occupy)
        for (int k = 900; k < 1024; k++)
            if (k != fd && dup2(fd, k) < 0) {
                perror("dup2");
                return 1;
            }
    fresh_sites(16); /* before any buffer flush can notice that the trace is gone */
    for (int i = 0; i < LINES; i++) {
        char line[32];
        int n = snprintf(line, sizeof line, "line %d\n", i);
        if (write(fd, line, (size_t)n) != n) {
            perror("write");
            return 1;
        }
        churn(50);
    }
    churn(5000);
    printf("done\n");
    return 0;
}
