/* buffer_growth: the C version of the Node experiment that grows memory through Buffers instead
 * of heap objects, and so runs straight past V8's heap limit:
 *
 *     const buffers = [];
 *     for (let step = 1; step <= 20; step++) {
 *         buffers.push(Buffer.alloc(10 * 1024 * 1024, 1));
 *         const m = process.memoryUsage();
 *         console.log(`step ${step}: heapTotal ${mb(m.heapTotal)} heapUsed ${mb(m.heapUsed)} ` +
 *                     `external ${mb(m.external)} rss ${mb(m.rss)}`);
 *     }
 *
 *     $ node --max-old-space-size=64 buffer.js     # 200 MB of Buffers: no fatal error
 *
 * A Buffer's bytes live outside the V8 heap. In C the same thing is memory the program maps
 * itself: each step here mmaps one anonymous MB_PER_STEP MiB buffer, fills it (so its pages
 * become resident and rss grows) and keeps it. memtrace counts it as external, not heap: under
 *
 *     memtrace --heap-limit 64M -- build/examples/buffer_growth
 *
 * heapUsed stays flat, external grows by MB_PER_STEP MiB a step, and the program runs to the end
 * and exits 0, far past the 64M cap that kills examples/heap_growth.c in its seventh step.
 *
 * usage: buffer_growth [--bytes] [STEPS [MB_PER_STEP]]   (defaults 20 10)
 * --bytes prints exact byte counts instead of MB. Outside memtrace (no LD_PRELOAD) the program
 * runs the same and prints zeros: memtrace_usage() reports nothing without the shim.
 */
#include <memtrace.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MIB (1024 * 1024)

/* The first bytes of each buffer point to the previous one: the buffers keep themselves on a list,
 * without a heap array that would show up in heapUsed. */
struct buffer {
    struct buffer *next;
};

/* printf would malloc stdout's buffer on first use: a static one keeps heapUsed flat. */
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

/* Make the buffers visible to the outside world as far as the optimizer knows. / */
static void keep(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

static void usage(void)
{
    fprintf(stderr, "usage: buffer_growth [--bytes] [STEPS [MB_PER_STEP]]\n");
    exit(2);
}

/* Parse a positive decimal argument no larger than max; exit with a usage message otherwise. */
static unsigned long parse_arg(const char *s, const char *name, unsigned long max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v == 0 || v > max) {
        fprintf(stderr, "buffer_growth: %s: invalid %s (expected 1..%lu)\n", s, name, max);
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
    if (argc > 3)
        usage();
    unsigned long steps = argc > 1 ? parse_arg(argv[1], "STEPS", 100000) : 20;
    unsigned long mb_per_step = argc > 2 ? parse_arg(argv[2], "MB_PER_STEP", 1024) : 10;
    size_t buffer_bytes = (size_t)mb_per_step * MIB;

    struct memtrace_usage probe;
    if (memtrace_usage(&probe) != 0)
        fprintf(stderr, "buffer_growth: not running under memtrace: usage figures are zeros\n");

    show_usage("start", bytes);
    struct buffer *buffers = NULL;
    for (unsigned long step = 1; step <= steps; step++) {
        struct buffer *b =
            mmap(NULL, buffer_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b == MAP_FAILED) { /* MEMTRACE_EXTERNAL_LIMIT with
                                  MEMTRACE_ON_LIMIT=enomem */
            fprintf(stderr, "buffer_growth: step %lu: mmap of %lu MiB failed: %s\n", step,
                    mb_per_step, strerror(errno));
            return 1;
        }
        memset(b, 1, buffer_bytes); /* Buffer.alloc(size, 1): every page becomes resident */
        b->next = buffers;
        buffers = b;
        char label[32];
        snprintf(label, sizeof label, "step %lu", step);
        show_usage(label, bytes);
    }
    /* Like the Node script, leave the buffers to the process's end. */
    keep(buffers);
    printf("done: %lu steps, %lu buffers of %lu MiB\n", steps, steps, mb_per_step);
    return 0;
}
