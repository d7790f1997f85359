/* check_leak: loses memory at two call sites, for `memtrace check` (tests/integration/
 * test_check.c) and the comparison with memcheck. leak_list builds a list of 3 nodes and drops
 * its head: the head is definitely lost (direct), the two nodes it points to indirectly lost;
 * leak_buffers drops 4 buffers (direct). Everything else is freed. No stdio (its buffer would be
 * one more block); it prints what it lost, one line per site, with write(2):
 *
 *     site FUNCTION LINE BYTES BLOCKS DIRECT_BYTES DIRECT_BLOCKS
 *
 *     check_leak [last]     last: exit right after the last leak, nothing allocated after it
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NODES   3
#define NODE_SZ 48
#define BUFS    4
#define BUF_SZ  256

struct node {
    struct node *next;
    char payload[NODE_SZ - sizeof(struct node *)];
};

static void *volatile sink;

static void say(const char *fn, int line, size_t bytes, size_t blocks, size_t dbytes,
                size_t dblocks)
{
    char buf[160];
    int n = snprintf(buf, sizeof buf, "site %s %d %zu %zu %zu %zu\n", fn, line, bytes, blocks,
                     dbytes, dblocks);
    if (write(1, buf, (size_t)n) != n)
        _exit(3);
}

static void leak_list(void)
{
    struct node *head = NULL;
    int line = 0;
    for (int i = 0; i < NODES; i++) {
        line = __LINE__ + 1;
        struct node *n = malloc(sizeof *n);
        memset(n, 0, sizeof *n);
        n->next = head;
        head = n;
    }
    sink = head;
    sink = NULL; /* the head is dropped: lost, with the nodes it points to */
    say("leak_list", line, NODES * sizeof(struct node), NODES, sizeof(struct node), 1);
}

static void leak_buffers(void)
{
    int line = 0;
    for (int i = 0; i < BUFS; i++) {
        line = __LINE__ + 1;
        char *b = malloc(BUF_SZ);
        memset(b, 'x', BUF_SZ);
        sink = b;
    }
    sink = NULL;
    say("leak_buffers", line, BUFS * BUF_SZ, BUFS, BUFS * BUF_SZ, BUFS);
}

static void no_leak(void)
{
    for (int i = 0; i < 10; i++) {
        char *p = malloc(100 + i);
        sink = p;
        free(p);
    }
}

/* Overwrite the stack below main, where the leaking functions' frames were, so that no stale
 * copy of a lost pointer makes it look reachable (to memcheck as to the exit scan, which scans
 * the stack from its own, deep, frame up). */
static void scrub_stack(void)
{
    volatile char area[256 * 1024];
    memset((char *)area, 0, sizeof area);
}

int main(int argc, char **argv)
{
    no_leak();
    leak_list();
    leak_buffers();
    if (argc > 1 && strcmp(argv[1], "last") == 0)
        return 0; /* the last buffer is the last heap event before exit */
    /* Some heap traffic after the last leak, as in nearly every program. Until the shim forgets
     * the address of the last event it recorded, a block allocated last before exit is seen
     * as reachable by the exit scan (test_check.c: last_block_before_exit_is_lost). */
    no_leak();
    scrub_stack();
    return 0;
}
