/* heap_growth: the C version of the classic Node experiment that grows the heap with many small
 * objects until V8's heap limit kills the process:
 *
 *     const objects = [];
 *     for (let step = 1; step <= 20; step++) {
 *         for (let i = 0; i < 262144; i++)
 *             objects.push({ step, i });
 *         const m = process.memoryUsage();
 *         console.log(`step ${step}: heapTotal ${mb(m.heapTotal)} heapUsed ${mb(m.heapUsed)} ` +
 *                     `external ${mb(m.external)} rss ${mb(m.rss)}`);
 *     }
 *
 *     $ node --max-old-space-size=64 heap.js
 *     FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory
 *
 * Here each step mallocs MB_PER_STEP MiB of OBJECT_BYTES-byte objects, writes them, and keeps
 * them alive on a list (the array of the Node version), then prints the memoryUsage line and drops
 * a mark into the trace. Run it under a heap cap and it dies the same way:
 *
 *     memtrace --heap-limit 64M -- build/examples/heap_growth
 *
 * With the defaults (10 MiB of 40-byte objects per step; glibc hands out exactly 40 usable bytes
 * for a 40-byte request, so heapUsed grows by exactly 10 MiB a step) steps 1 to 6 print and step
 * 7 is refused. Compare examples/buffer_growth.c, which grows external memory instead and runs
 * past the same cap.
 *
 * usage: heap_growth [--bytes] [STEPS [MB_PER_STEP [OBJECT_BYTES]]]   (defaults 20 10 40)
 * --bytes prints exact byte counts instead of MB. Outside memtrace (no LD_PRELOAD) the program
 * runs the same and prints zeros: memtrace_usage() reports nothing without the shim.
 */
#include <memtrace.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024 * 1024)

/* One small object. Its first bytes link it to the previous one: a list that keeps every object
 * alive without a growing array (which would itself be one more heap block to count). */
struct object {
    struct object *next;
};

/* printf would malloc stdout's buffer on first use: a static one keeps the example's heap to its
 * own objects, so heapUsed moves by exactly what each step allocates. */
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

/* Make the objects visible to the outside world as far as the optimizer knows: memory that is
 * written and never read could otherwise be dropped, mallocs and all. */
static void keep(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

static void usage(void)
{
    fprintf(stderr, "usage: heap_growth [--bytes] [STEPS [MB_PER_STEP [OBJECT_BYTES]]]\n");
    exit(2);
}

/* Parse a positive decimal argument no larger than max; exit with a usage message otherwise. */
static unsigned long parse_arg(const char *s, const char *name, unsigned long max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v == 0 || v > max) {
        fprintf(stderr, "heap_growth: %s: invalid %s (expected 1..%lu)\n", s, name, max);
        usage();
    }
    return v;
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
    unsigned long steps = argc > 1 ? parse_arg(argv[1], "STEPS", 100000) : 20;
    unsigned long mb_per_step = argc > 2 ? parse_arg(argv[2], "MB_PER_STEP", 1024) : 10;
    unsigned long object_bytes = argc > 3 ? parse_arg(argv[3], "OBJECT_BYTES", MIB) : 40;
    if (object_bytes < sizeof(struct object))
        object_bytes = sizeof(struct object);
    unsigned long per_step = mb_per_step * MIB / object_bytes;

    struct memtrace_usage probe;
    if (memtrace_usage(&probe) != 0)
        fprintf(stderr, "heap_growth: not running under memtrace: usage figures are zeros\n");

    show_usage("start", bytes);
    struct object *objects = NULL;
    for (unsigned long step = 1; step <= steps; step++) {
        for (unsigned long i = 0; i < per_step; i++) {
            struct object *o = malloc(object_bytes);
            if (o == NULL) { /* MEMTRACE_ON_LIMIT=enomem: the cap refuses with NULL */
                fprintf(stderr, "heap_growth: step %lu: malloc(%lu) failed after %lu objects: %s\n",
                        step, object_bytes, i, strerror(errno));
                return 1;
            }
            memset(o, (int)step, object_bytes); /* touch it, as a Node object is written */
            o->next = objects;
            objects = o;
        }
        char label[32];
        snprintf(label, sizeof label, "step %lu", step);
        show_usage(label, bytes);
    }
    /* Like the Node script, leave the objects to the process's end. */
    keep(objects);
    printf("done: %lu steps, %lu objects of %lu bytes\n", steps, steps * per_step, object_bytes);
    return 0;
}
