/* leak_graph: heap blocks in every situation the exit-time leak scan must tell apart. Prints one
 * "label address" line per block; tests/integration/test_leakscan.c matches them to the REACH
 * record. Reachable: from a global (and a block it points into), from a thread-local, from a
 * mapping the program made, from the stack of a thread still blocked at exit. Lost: a dropped
 * block (direct), a chain hanging off one (direct + indirect), a cycle nothing reaches (one
 * direct, one indirect).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void *volatile global_root;
static __thread void *volatile tls_root;
static int block_pipe[2];

static void show_addr(const char *label, uintptr_t p)
{
    printf("%s %#lx\n", label, (unsigned long)p);
}
#define show(label, p) show_addr(label, (uintptr_t)(p))

/* Allocations made in their own frames, so no stale copy stays in main's. */
static __attribute__((noinline)) void make_reachable(void)
{
    void **a = calloc(4, sizeof(void *));
    char *b = malloc(100);
    a[1] = b + 40; /* an interior pointer keeps b */
    global_root = a;
    show("global", a);
    show("interior", b);
    tls_root = malloc(48);
    show("tls", tls_root);
}

static __attribute__((noinline)) void make_lost(void)
{
    void *dropped = malloc(77);
    show("dropped", dropped);
    void **d = calloc(2, sizeof(void *));
    d[0] = malloc(33);
    show("chain_head", d);
    show("chain_tail", d[0]);
    void **g = calloc(2, sizeof(void *)), **h = calloc(2, sizeof(void *));
    g[0] = h;
    h[0] = g;
    show(g < h ? "cycle_low" : "cycle_high", g);
    show(g < h ? "cycle_high" : "cycle_low", h);
}

static __attribute__((noinline)) void make_mapped_root(void)
{
    void **m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    m[10] = malloc(55);
    show("from_mmap", m[10]);
}

static void *blocked_thread(void *arg)
{
    (void)arg;
    void *volatile mine = malloc(66);
    show("thread_stack", mine);
    fflush(stdout);
    char c;
    (void)!read(block_pipe[0], &c, 1); /* never written: blocked when main exits */
    return mine;
}

static __attribute__((noinline)) void scrub_stack(void)
{
    volatile char junk[16384];
    memset((char *)junk, 0, sizeof junk);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    make_reachable();
    make_lost();
    make_mapped_root();
    if (pipe(block_pipe) != 0)
        return 1;
    pthread_t t;
    pthread_create(&t, NULL, blocked_thread, NULL);
    usleep(100 * 1000); /* the thread has printed and blocks */
    scrub_stack();      /* no stale pointers to the lost blocks below main's frame */
    exit(0);
}
