/* check_exit: loses one block and exits with status 7 (as a failing test suite does): `memtrace
 * check` must pass the 7 through unchanged, not its own gate status.
 *
 *     check_exit [STATUS]
 */
#include <stdlib.h>

static void *volatile sink;

int main(int argc, char **argv)
{
    sink = malloc(77);
    sink = NULL;
    return argc > 1 ? atoi(argv[1]) : 7;
}
