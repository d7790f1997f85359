/* grow_and_release: the C version of the Node experiment that grows both kinds of memory, then
 * lets them go and watches the numbers fall:
 *
 *     const steps = [];
 *     for (let step = 1; step <= 10; step++) {
 *         steps.push({ objects: makeObjects(262144), buffer: Buffer.alloc(10 * 1024 * 1024, 1) });
 *         show(`grow ${step}`);                        // the memoryUsage line
 *     }
 *     for (let step = 10; step >= 1; step--) {
 *         steps.pop();
 *         global.gc();                                 // node --expose-gc
 *         show(`release ${step}`);
 *     }
 *
 * Each grow step mallocs MB_PER_STEP MiB of OBJECT_BYTES-byte objects (heap) and mmaps one
 * MB_PER_STEP MiB buffer (external), writing both. The release steps then undo the grow steps,
 * newest first: free every object of that step, munmap its buffer. C has no garbage collector to
 * wait for: heapUsed and external drop at once. rss tells the other half of the story: the
 * unmapped buffer leaves it immediately, while freed small blocks stay with the allocator
 * (heapTotal) for reuse, much as V8 keeps its pages after a collection.
 *
 *     memtrace -- build/examples/grow_and_release
 *     memtrace report --timeline memtrace.grow_and_release.*.mtrace
 *
 * usage: grow_and_release [--bytes] [STEPS [MB_PER_STEP [OBJECT_BYTES]]]   (defaults 10 10 40)
 * --bytes prints exact byte counts instead of MB. Outside memtrace (no LD_PRELOAD) the program
 * runs the same and prints zeros: memtrace_usage() reports nothing without the shim.
 */
#include <memtrace.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MIB       (1024 * 1024)
#define MAX_STEPS 1000

/* A small object; its first bytes link it to the previous object of the same step. */
struct object {
    struct object *next;
};

/* What one grow step holds: its objects (a list) and its buffer. */
struct step {
    struct object *objects;
    void *buffer;
};

static struct step held[MAX_STEPS];

/* printf would malloc stdout's buffer on first use: a static one keeps the example's heap to its
 * own objects. */
static char stdout_buf[4096];

/* Print one memoryUsage line, in the field order and units of `memtrace-report --timeline` ("MB" is
 * 2^20 bytes, as Node's classic `(bytes / 1024 / 1024).toFixed(2)`), and put the same moment into
 * the trace as a mark. */
static void show_usage(const char *label, int bytes)
{
    struct memtrace_usage u;
    memtrace_usage(&u); /* -1 and zeros when the shim is not preloaded */
    memtrace_mark(label);
    if (bytes)
        printf("%s: heapTotal %llu heapUsed %llu external %llu rss %llu\n", label,
               (unsigned long long)u.heap_total, (unsigned long long)u.heap_used,
               (unsigned long long)u.external, (unsigned long long)u.rss);
    else
        printf("%s: heapTotal %.2f MB heapUsed %.2f MB external %.2f MB rss %.2f MB\n", label,
               (double)u.heap_total / MIB, (double)u.heap_used / MIB, (double)u.external / MIB,
               (double)u.rss / MIB);
}

/* Make p visible to the outside world as far as the optimizer knows. */
static void keep(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

static void usage(void)
{
    fprintf(stderr, "usage: grow_and_release [--bytes] [STEPS [MB_PER_STEP "
                    "[OBJECT_BYTES]]]\n");
    exit(2);
}

/* Parse a positive decimal argument no larger than max; exit with a usage message otherwise. */
static unsigned long parse_arg(const char *s, const char *name, unsigned long max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v == 0 || v > max) {
        fprintf(stderr, "grow_and_release: %s: invalid %s (expected 1..%lu)\n", s, name, max);
        usage();
    }
    return v;
}

/* Grow step s: `count` objects of `object_bytes` bytes and one buffer of `buffer_bytes`. */
static int grow(struct step *s, unsigned long count, size_t object_bytes, size_t buffer_bytes)
{
    for (unsigned long i = 0; i < count; i++) {
        struct object *o = malloc(object_bytes);
        if (o == NULL)
            return -1;
        memset(o, 1, object_bytes);
        o->next = s->objects;
        s->objects = o;
    }
    void *b = mmap(NULL, buffer_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED)
        return -1;
    memset(b, 1, buffer_bytes);
    s->buffer = b;
    keep(s->objects);
    keep(b);
    return 0;
}

/* Release what grow() gave step s: every object, then the buffer. */
static void release(struct step *s, size_t buffer_bytes)
{
    while (s->objects != NULL) {
        struct object *next = s->objects->next;
        free(s->objects);
        s->objects = next;
    }
    if (s->buffer != NULL && munmap(s->buffer, buffer_bytes) != 0)
        perror("grow_and_release: munmap");
    s->buffer = NULL;
}

int main(int argc, char **argv)
{
    if (setvbuf(stdout, stdout_buf, _IOLBF, sizeof stdout_buf) != 0)
        return 1;
    int bytes = argc > 1 && strcmp(argv[1], "--bytes") == 0;
    if (bytes) {
        argv++;
        argc--;
    }
    if (argc > 4)
        usage();
    unsigned long steps = argc > 1 ? parse_arg(argv[1], "STEPS", MAX_STEPS) : 10;
    unsigned long mb_per_step = argc > 2 ? parse_arg(argv[2], "MB_PER_STEP", 1024) : 10;
    unsigned long object_bytes = argc > 3 ? parse_arg(argv[3], "OBJECT_BYTES", MIB) : 40;
    if (object_bytes < sizeof(struct object))
        object_bytes = sizeof(struct object);
    size_t buffer_bytes = (size_t)mb_per_step * MIB;
    unsigned long per_step = buffer_bytes / object_bytes;

    struct memtrace_usage probe;
    if (memtrace_usage(&probe) != 0)
        fprintf(stderr, "grow_and_release: not running under memtrace: usage "
                        "figures are zeros\n");

    char label[32];
    show_usage("start", bytes);
    for (unsigned long step = 1; step <= steps; step++) {
        if (grow(&held[step - 1], per_step, object_bytes, buffer_bytes) != 0) {
            fprintf(stderr, "grow_and_release: grow %lu: out of memory: %s\n", step,
                    strerror(errno));
            return 1;
        }
        snprintf(label, sizeof label, "grow %lu", step);
        show_usage(label, bytes);
    }
    for (unsigned long step = steps; step >= 1; step--) {
        release(&held[step - 1], buffer_bytes);
        snprintf(label, sizeof label, "release %lu", step);
        show_usage(label, bytes);
    }
    printf("done: %lu steps grown and released\n", steps);
    return 0;
}
