/* report_known: known allocations for the memtrace-report integration tests
 * (tests/integration/test_report.c): its own call counts, a known heap peak, and leaks at three
 * call sites with known bytes and blocks, the rest freed. No stdio (its buffer would be one more
 * block): results go to stdout with write(2), one "key value" per line, computed here with
 * malloc_usable_size so the test hard-codes nothing about glibc:
 *
 *     malloc 10           calls of each function made by the program
 *     peak_used N         Σ usable bytes of the program's blocks at its peak
 *     peak_requested N    Σ requested bytes at the same moment
 *     leak_small 1000 10 LINE     bytes, blocks and source line of each leaking call
 *     ...
 *
 * Leaked pointers are dropped (nothing keeps them), so memcheck calls them definitely lost.
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PEAK_BLOCKS 20
#define PEAK_SIZE   10000

static void *volatile sink; /* keeps GCC from deleting malloc/free pairs */
static size_t n_malloc, n_calloc, n_realloc, n_free;
static size_t live_used, live_req, peak_used, peak_req;

static void say(const char *key, size_t a, size_t b, int line)
{
    char buf[128];
    int n = line ? snprintf(buf, sizeof buf, "%s %zu %zu %d\n", key, a, b, line)
                 : snprintf(buf, sizeof buf, "%s %zu\n", key, a);
    if (write(1, buf, (size_t)n) != n)
        _exit(3);
}

static void note_alloc(void *p, size_t size)
{
    live_used += malloc_usable_size(p);
    live_req += size;
    if (live_used > peak_used) {
        peak_used = live_used;
        peak_req = live_req;
    }
}

static void note_free(void *p, size_t size)
{
    live_used -= malloc_usable_size(p);
    live_req -= size;
}

static int small_line, medium_line, large_line;

/* 10 blocks of 100 bytes, lost */
static void leak_small(void)
{
    for (int i = 0; i < 10; i++) {
        small_line = __LINE__ + 1;
        void *p = malloc(100);
        n_malloc++;
        note_alloc(p, 100);
        sink = p;
    }
    sink = NULL;
}

/* 3 blocks of calloc(4, 250), lost */
static void leak_medium(void)
{
    for (int i = 0; i < 3; i++) {
        medium_line = __LINE__ + 1;
        void *p = calloc(4, 250);
        n_calloc++;
        note_alloc(p, 1000);
        sink = p;
    }
    sink = NULL;
}

/* 1 block grown by realloc to 8000 bytes, lost (the site is the realloc's) */
static void leak_large(void)
{
    void *p = malloc(3000);
    n_malloc++;
    note_alloc(p, 3000);
    note_free(p, 3000);
    large_line = __LINE__ + 1;
    void *q = realloc(p, 8000);
    n_realloc++;
    note_alloc(q, 8000);
    sink = q;
    sink = NULL;
}

/* The peak: PEAK_BLOCKS blocks of PEAK_SIZE live together, then all freed. */
static void peak_phase(void)
{
    void *b[PEAK_BLOCKS];
    for (int i = 0; i < PEAK_BLOCKS; i++) {
        b[i] = malloc(PEAK_SIZE);
        n_malloc++;
        note_alloc(b[i], PEAK_SIZE);
    }
    for (int i = 0; i < PEAK_BLOCKS; i++) {
        note_free(b[i], PEAK_SIZE);
        free(b[i]);
        n_free++;
    }
}

/* Short-lived blocks: 100 of 64 bytes, each freed at once. */
static void churn(void)
{
    for (int i = 0; i < 100; i++) {
        void *p = malloc(64);
        n_malloc++;
        note_alloc(p, 64);
        sink = p;
        note_free(p, 64);
        free(p);
        n_free++;
    }
    sink = NULL;
}

int main(void)
{
    leak_small();
    leak_medium();
    churn();
    peak_phase();
    leak_large();
    say("malloc", n_malloc, 0, 0);
    say("calloc", n_calloc, 0, 0);
    say("realloc", n_realloc, 0, 0);
    say("free", n_free, 0, 0);
    say("peak_used", peak_used, 0, 0);
    say("peak_requested", peak_req, 0, 0);
    say("exit_used", live_used, 0, 0);
    say("leak_small", 1000, 10, small_line);
    say("leak_medium", 3000, 3, medium_line);
    say("leak_large", 8000, 1, large_line);
    return 0;
}
