/* robust_unshare: unshare(CLONE_NEWUSER), which the kernel refuses (EINVAL) to a process with
 * more than one thread: a tracer that starts a helper thread breaks it (pitfalls.md §6).
 * Allocates before and after. Prints "unshare ok" and exits 0, or names the error and exits 3. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    char *volatile p = malloc(100);
    free(p);
    if (unshare(CLONE_NEWUSER) != 0) {
        printf("unshare: %s\n", strerror(errno));
        return 3;
    }
    p = malloc(200);
    free(p);
    printf("unshare ok\n");
    return 0;
}
