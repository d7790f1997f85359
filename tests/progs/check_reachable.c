/* check_reachable: exits with blocks still pointed to from globals (a table of 5 blocks and a
 * two-node list hanging off a static pointer), and frees the rest. Nothing is lost: the gate
 * passes by default and reports them apart as reachable; --fail-on-reachable fails it. Prints,
 * with write(2): "reachable BYTES BLOCKS".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct node {
    struct node *next;
    char data[24];
};

/* Not static: GCC would delete stores to a static array that is never read. */
char *check_table[5];
struct node *check_list;

int main(void)
{
    size_t bytes = 0, blocks = 0;
    for (int i = 0; i < 5; i++) {
        check_table[i] = malloc(100);
        memset(check_table[i], i, 100);
        bytes += 100, blocks++;
    }
    for (int i = 0; i < 2; i++) {
        struct node *n = calloc(1, sizeof *n);
        n->next = check_list;
        check_list = n;
        bytes += sizeof *n, blocks++;
    }
    char *tmp = malloc(1000);
    free(tmp);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "reachable %zu %zu\n", bytes, blocks);
    return write(1, buf, (size_t)n) == n ? 0 : 3;
}
