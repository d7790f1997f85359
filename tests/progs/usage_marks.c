/* Known heap and external steps, each followed by memtrace_usage() and memtrace_mark(label).
 * The program works out what heapUsed, external and mapped must be at every mark from its own
 * baseline (the first memtrace_usage()), malloc_usable_size and page rounding, and prints one
 * line a mark:
 *     mark <label> expect <heap> <external> <mapped> usage <heap> <external> <mapped>
 * tests/integration/test_usage.c compares both with the trace's SNAPSHOTs. The steps cover
 * every mapping case of trace-format.md §7.2: partial munmap, mremap grow/shrink/move/DONTUNMAP,
 * MAP_FIXED over a counted range, file-backed mappings, failed calls, and unmaps of ranges the
 * shim never saw. No stdio (it would allocate between marks): snprintf into a stack buffer and
 * write(2). Without the shim it prints "no shim" and runs the same steps.
 * `usage_marks fork`: keeps a 100000-byte block, marks "before-fork", forks; the child marks
 * "child" and exits, the parent waits for it.
 */
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memtrace.h"

static uint64_t heap, ext, mapped, page;
static int shim;

static void say(const char *text)
{
    size_t n = strlen(text);
    if (write(1, text, n) != (ssize_t)n)
        _exit(3);
}

static void mark(const char *label)
{
    struct memtrace_usage u;
    int rc = memtrace_usage(&u);
    memtrace_mark(label);
    char line[512];
    snprintf(line, sizeof line, "mark %s expect %llu %llu %llu usage %llu %llu %llu rc %d\n", label,
             (unsigned long long)heap, (unsigned long long)ext, (unsigned long long)mapped,
             (unsigned long long)u.heap_used, (unsigned long long)u.external,
             (unsigned long long)u.mapped, rc);
    say(line);
}

/* A mapping the shim never sees (raw system call): its pages are not counted. */
static char *unseen(size_t len)
{
    long p =
        syscall(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p < 0 && p > -4096)
        _exit(4);
    return (char *)p;
}

static char *anon(size_t len)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        _exit(5);
    return p;
}

static void heap_steps(void)
{
    char *a = malloc(100);
    heap += malloc_usable_size(a);
    mark("malloc");
    char *b = calloc(10, 1000);
    heap += malloc_usable_size(b);
    mark("calloc");
    uint64_t before = malloc_usable_size(a);
    a = realloc(a, 5000);
    heap += malloc_usable_size(a) - before;
    mark("realloc-grow");
    before = malloc_usable_size(a);
    a = realloc(a, 40);
    heap = heap - before + malloc_usable_size(a);
    mark("realloc-shrink");
    heap -= malloc_usable_size(b);
    free(b);
    mark("free");
    void *big = malloc(1 << 20); /* glibc maps this one itself: still heap, never external */
    heap += malloc_usable_size(big);
    mark("malloc-large");
    heap -= malloc_usable_size(big);
    free(big);
    void *al = NULL;
    if (posix_memalign(&al, 256, 1000) != 0)
        _exit(6);
    heap += malloc_usable_size(al);
    mark("posix_memalign");
    void *huge = malloc((size_t)-1 / 2); /* fails: nothing changes */
    if (huge != NULL)
        _exit(7);
    void *same = realloc(al, (size_t)-1 / 2); /* fails: the old block stays counted */
    if (same != NULL)
        _exit(7);
    mark("failed-heap");
    heap -= malloc_usable_size(al);
    free(al);
    heap -= malloc_usable_size(a);
    free(a);
    mark("heap-freed");
}

static void map_steps(const char *self)
{
    char *m = anon(3 * page + 1); /* 4 pages */
    ext += 4 * page;
    mark("mmap");
    munmap(m + page, page); /* a hole */
    ext -= page;
    mark("munmap-hole");
    munmap(m, 2 * page); /* one counted page, one already gone */
    ext -= page;
    mark("munmap-overlapping-hole");
    char *u = unseen(4 * page);
    munmap(u, 2 * page); /* never seen: ignored */
    mark("munmap-unseen");
    munmap(m + 2 * page, 2 * page); /* the rest: the last two pages */
    ext -= 2 * page;
    mark("munmap-rest");

    char *r = anon(4 * page);
    ext += 4 * page;
    r = mremap(r, 4 * page, 8 * page, MREMAP_MAYMOVE);
    if (r == MAP_FAILED)
        _exit(8);
    ext += 4 * page;
    mark("mremap-grow");
    r = mremap(r, 8 * page, 2 * page, 0);
    if (r == MAP_FAILED)
        _exit(8);
    ext -= 6 * page;
    mark("mremap-shrink");
    char *target = unseen(2 * page); /* an unseen range the move replaces */
    r = mremap(r, 2 * page, 2 * page, MREMAP_MAYMOVE | MREMAP_FIXED, target);
    if (r != target)
        _exit(8);
    mark("mremap-move");
    char *keep = mremap(r, 2 * page, 2 * page, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
    if (keep != MAP_FAILED)
        ext += 2 * page; /* the old range stays mapped, and counted */
    mark("mremap-dontunmap");
    if (mremap(r, page, 2 * page, MREMAP_FIXED, r + 64 * page) != MAP_FAILED) /* EINVAL */
        _exit(8);
    if (mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED)
        _exit(8);
    if (munmap(r + 1, page) == 0) /* unaligned: EINVAL */
        _exit(8);
    mark("failed-maps");

    char *f = anon(4 * page);
    ext += 4 * page;
    mmap(f + page, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
         0);
    mark("map-fixed-anon"); /* two counted pages replaced by two */
    int fd = open(self, O_RDONLY);
    if (fd < 0)
        _exit(9);
    char *fm = mmap(f, page, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (fm != f)
        _exit(9);
    ext -= page;
    mapped += page;
    mark("map-fixed-file");
    char *file = mmap(NULL, 2 * page + 5, PROT_READ, MAP_PRIVATE, fd, 0);
    if (file == MAP_FAILED)
        _exit(9);
    mapped += 3 * page;
    close(fd);
    mark("mmap-file");
    file = mremap(file, 3 * page, page, 0);
    mapped -= 2 * page;
    mark("mremap-file");
    munmap(file, page);
    mapped -= page;
    munmap(f, 4 * page);
    ext -= 3 * page;
    mapped -= page;
    munmap(r, 2 * page);
    ext -= 2 * page;
    if (keep != MAP_FAILED) {
        munmap(keep, 2 * page);
        ext -= 2 * page;
    }
    mark("maps-gone");
}

int main(int argc, char **argv)
{
    page = (uint64_t)sysconf(_SC_PAGESIZE);
    struct memtrace_usage base;
    shim = memtrace_usage(&base) == 0;
    if (!shim)
        say("no shim\n");
    heap = base.heap_used;
    ext = base.external;
    mapped = base.mapped;
    mark("start");
    if (argc > 1 && strcmp(argv[1], "fork") == 0) {
        char *volatile keep = malloc(100000);
        heap += malloc_usable_size(keep);
        mark("before-fork");
        pid_t pid = fork();
        if (pid == 0) {
            mark("child");
            _exit(0);
        }
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 10;
        free(keep);
        return 0;
    }
    heap_steps();
    map_steps(argv[0]);
    char label[400];
    memset(label, 'x', sizeof label - 1);
    label[sizeof label - 1] = '\0';
    memtrace_mark(label); /* kept to its first 255 bytes */
    say("done\n");
    return 0;
}
