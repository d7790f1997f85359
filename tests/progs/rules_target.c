/* rules_target: allocations whose class MEMTRACE_RULES decides (tests/integration/test_rules.c).
 * main first prints "main ran pid=N": a run stopped by a bad rule leaves stdout empty. Then each
 * call below uses a size no other call of the program uses, so the test finds its event by size:
 *   malloc(1001)           in main: no rule
 *   malloc(3 MiB)          in main: size>=1M
 *   png_like_alloc(2003)   malloc inside librules_png.so (dlopen'ed from argv[1], else next to
 *                          this executable): lib=librules_png*
 *   arena_grab(3007)       malloc under a function named arena_*: func=arena_*
 *   my_pool_map(64 KiB)    anonymous mmap under my_pool_*: kind=mmap,func=my_pool_*
 *   mmap(128 KiB)          anonymous, in main: no rule (default external)
 *   malloc(777)            in main: a rule that names its default class (heap)
 * Everything is released before exit. Prints "done" last.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void *volatile keep[8]; /* volatile: the compiler may not drop a malloc/free pair */

__attribute__((noinline)) static void *arena_grab(size_t n)
{
    return malloc(n);
}

__attribute__((noinline)) static void *my_pool_map(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void *load_png(const char *argv0, const char *given)
{
    char path[4096];
    if (given != NULL) {
        snprintf(path, sizeof path, "%s", given);
    } else {
        snprintf(path, sizeof path, "%s", argv0);
        char *slash = strrchr(path, '/');
        snprintf(slash != NULL ? slash + 1 : path,
                 sizeof path - (size_t)(slash != NULL ? slash + 1 - path : 0), "librules_png.so");
    }
    void *h = dlopen(path, RTLD_NOW);
    if (h == NULL) {
        fprintf(stderr, "rules_target: dlopen %s: %s\n", path, dlerror());
        exit(2);
    }
    return h;
}

int main(int argc, char **argv)
{
    printf("main ran pid=%d\n", (int)getpid());
    fflush(stdout);
    void *h = load_png(argv[0], argc > 1 ? argv[1] : NULL);
    void *(*png_like_alloc)(size_t) = (void *(*)(size_t))dlsym(h, "png_like_alloc");
    if (png_like_alloc == NULL)
        return 2;
    keep[0] = malloc(1001);
    keep[1] = malloc(3 << 20);
    keep[2] = png_like_alloc(2003);
    keep[3] = arena_grab(3007);
    keep[4] = my_pool_map(64 << 10);
    keep[5] = mmap(NULL, 128 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    keep[6] = malloc(777);
    for (int i = 0; i < 7; i++)
        if (keep[i] == NULL || keep[i] == MAP_FAILED)
            return 3;
    munmap(keep[5], 128 << 10);
    munmap(keep[4], 64 << 10);
    for (int i = 0; i < 7; i++)
        if (i != 4 && i != 5)
            free(keep[i]);
    printf("done\n");
    return 0;
}
