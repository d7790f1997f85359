/* demo: the program `make demo` runs under libmemtrace.so (scripts/demo.sh). Small and
 * deterministic: the same calls, sizes and call sites on every run, so its report is easy to read.
 *   heap:     malloc, calloc, realloc (grow, then shrink) and free
 *   leaks:    three blocks still allocated at exit, from two call sites (load_config, remember)
 *   external: one anonymous 1 MiB mmap, written, then munmap'ed
 * Each allocating function is noinline so it stays a frame of its own at -O2, and every block
 * escapes through keep(), so the compiler cannot drop a malloc/free pair it sees is unused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define NOINLINE __attribute__((noinline))

#define CONFIG_BYTES 48
#define MAP_BYTES    (1024 * 1024)

struct item {
    int id;
    char name[28];
};

/* stdout's buffer would be malloc'ed by the first printf and never freed: a third "leak" that is
 * libc's, not the demo's. A static buffer keeps the report to the demo's own calls. */
static char stdout_buf[4096];

/* Make p visible to the outside world as far as the optimizer knows. */
static void keep(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

/* Many short-lived blocks of growing sizes: allocated, filled, freed. */
static NOINLINE unsigned long churn(int rounds)
{
    unsigned long sum = 0;
    for (int i = 1; i <= rounds; i++) {
        size_t size = (size_t)i * 16;
        unsigned char *p = malloc(size);
        if (p == NULL)
            return 0;
        memset(p, i, size);
        keep(p);
        sum += p[size - 1];
        free(p);
    }
    return sum;
}

/* A table that is zeroed, grown, shrunk and released: calloc, realloc, realloc, free. */
static NOINLINE int resize_table(void)
{
    int *t = calloc(256, sizeof *t);
    if (t == NULL)
        return -1;
    keep(t);
    int *bigger = realloc(t, 1024 * sizeof *t);
    if (bigger == NULL) {
        free(t);
        return -1;
    }
    t = bigger;
    keep(t);
    int *smaller = realloc(t, 64 * sizeof *t);
    if (smaller == NULL) {
        free(t);
        return -1;
    }
    t = smaller;
    keep(t);
    free(t);
    return 0;
}

/* Leak site 1: a configuration string nobody frees. */
static NOINLINE char *load_config(void)
{
    char *cfg = malloc(CONFIG_BYTES);
    if (cfg == NULL)
        return NULL;
    snprintf(cfg, CONFIG_BYTES, "threads=%d verbose=%d", 4, 1);
    return cfg;
}

/* Leak site 2: items remembered and never released. */
static NOINLINE struct item *remember(int id)
{
    struct item *it = malloc(sizeof *it);
    if (it == NULL)
        return NULL;
    it->id = id;
    snprintf(it->name, sizeof it->name, "item-%d", id);
    keep(it);
    return it;
}

/* External memory: an anonymous mapping the program manages itself, like a Node Buffer. */
static NOINLINE int map_buffer(void)
{
    unsigned char *m =
        mmap(NULL, MAP_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    memset(m, 0xab, MAP_BYTES);
    keep(m);
    return munmap(m, MAP_BYTES);
}

int main(void)
{
    if (setvbuf(stdout, stdout_buf, _IOLBF, sizeof stdout_buf) != 0)
        return 1;

    unsigned long sum = churn(100);
    printf("demo: malloc + free of 100 blocks, 16 to 1600 bytes (checksum %lu)\n", sum);

    if (resize_table() != 0) {
        fprintf(stderr, "demo: failed to resize the table: out of memory\n");
        return 1;
    }
    printf("demo: calloc 256 ints, realloc to 1024, realloc to 64, free\n");

    char *cfg = load_config();
    struct item *a = remember(1);
    struct item *b = remember(2);
    if (cfg == NULL || a == NULL || b == NULL) {
        fprintf(stderr, "demo: failed to allocate the leaked blocks: out of memory\n");
        return 1;
    }
    printf("demo: leaked %d bytes in load_config (\"%s\")\n", CONFIG_BYTES, cfg);
    printf("demo: leaked 2 x %zu bytes in remember (%s, %s)\n", sizeof *a, a->name, b->name);

    if (map_buffer() != 0) {
        perror("demo: failed to map 1 MiB");
        return 1;
    }
    printf("demo: mmap 1 MiB anonymous, written, munmap\n");
    return 0;
}
