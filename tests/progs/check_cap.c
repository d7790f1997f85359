/* check_cap: grows a linked list of 1 KiB nodes without end: under a heap cap
 * (MEMTRACE_HEAP_LIMIT, `memtrace check --heap-limit`) it dies at the cap with SIGABRT (exit
 * status 134). Without a cap it stops at 64 MiB and exits 0.
 */
#include <stdlib.h>
#include <string.h>

struct node {
    struct node *next;
    char data[1024 - sizeof(struct node *)];
};

static struct node *head;

static void grow(void)
{
    struct node *n = malloc(sizeof *n);
    if (n == NULL)
        abort();
    memset(n->data, 1, sizeof n->data);
    n->next = head;
    head = n;
}

int main(void)
{
    for (int i = 0; i < 64 * 1024; i++)
        grow();
    while (head) {
        struct node *n = head->next;
        free(head);
        head = n;
    }
    return 0;
}
