/* The built libmemtrace.so, inspected with binutils: it must export exactly the hooks listed in
 * preload/libmemtrace.map (every other symbol would interpose on the host program too), and its
 * static TLS must stay a few words (pitfalls.md §4: a large initial-exec TLS block makes dlopen of
 * the shim fail). The library is found in $MT_BUILD_DIR, else in ./build.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(exports, .timeout = 30);

#define MAX_SYMS 256

static const char *const hooks[] = {
    "malloc",
    "free",
    "calloc",
    "realloc",
    "reallocarray",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
    "mmap",
    "mmap64",
    "munmap",
    "mremap",
    "fork",
    "execve",
    "execv",
    "execvp",
    "execvpe",
    "fexecve",
    "execl",
    "execlp",
    "execle",
    "exit",
    "_exit",
    "_Exit",
    "abort",
    "dlopen",
    "dlmopen",
    "dlclose",
    "__libc_start_main",
    "pipe2",
    "close",
    "read",
    "write",
    "memtrace_api_usage", /* include/memtrace.h finds these two with dlsym */
    "memtrace_api_mark",
};
#define NHOOKS (sizeof hooks / sizeof hooks[0])

static void shim_path(char *out, size_t cap)
{
    const char *dir = getenv("MT_BUILD_DIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "build";
    int n = snprintf(out, cap, "%s/libmemtrace.so", dir);
    cr_assert(lt(int, n, (int)cap));
    cr_assert(eq(ptr, strchr(out, '\''), NULL), "no quote in %s", out);
    cr_assert(eq(int, access(out, R_OK), 0), "%s not found: build it first (make all)", out);
}

/* Run `tool '<shim>'`; each output line goes to on_line. The tool must exit 0. */
static void run_tool(const char *tool, void (*on_line)(const char *line, void *ctx), void *ctx)
{
    char path[4096], cmd[4200];
    shim_path(path, sizeof path);
    snprintf(cmd, sizeof cmd, "%s '%s'", tool, path);
    FILE *f = popen(cmd, "r");
    cr_assert(ne(ptr, f, NULL), "popen %s", cmd);
    char line[1024];
    while (fgets(line, sizeof line, f) != NULL)
        on_line(line, ctx);
    int status = pclose(f);
    cr_assert(eq(int, status, 0), "`%s` failed (status 0x%x)", cmd, status);
}

struct symbols {
    char name[MAX_SYMS][128];
    size_t n;
};

static void collect_symbol(const char *line, void *ctx)
{
    struct symbols *s = ctx;
    char addr[64], type[8], name[128];
    if (sscanf(line, "%63s %7s %127s", addr, type, name) != 3)
        return;
    if (strcmp(type, "A") == 0) /* a version definition (e.g. MEMTRACE_1.0), not a symbol */
        return;
    name[strcspn(name, "@")] = '\0'; /* malloc@@VERSION */
    cr_assert(lt(sz, s->n, (size_t)MAX_SYMS));
    snprintf(s->name[s->n++], sizeof s->name[0], "%s", name);
}

static int in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return 1;
    return 0;
}

Test(exports, exports_exactly_the_hooks)
{
    static struct symbols s;
    run_tool("nm -D --defined-only", collect_symbol, &s);
    const char *got[MAX_SYMS];
    for (size_t i = 0; i < s.n; i++)
        got[i] = s.name[i];
    for (size_t i = 0; i < s.n; i++)
        cr_expect(eq(int, in_list(got[i], hooks, NHOOKS), 1), "exported but not a hook: %s",
                  got[i]);
    for (size_t i = 0; i < NHOOKS; i++)
        cr_expect(eq(int, in_list(hooks[i], got, s.n), 1), "hook not exported: %s", hooks[i]);
    cr_expect(eq(sz, s.n, NHOOKS), "each hook exported once");
}

struct tls {
    int segments;
    unsigned long memsz; /* bytes */
};

static void find_tls(const char *line, void *ctx)
{
    struct tls *t = ctx;
    char type[32];
    unsigned long off, vaddr, paddr, filesz, memsz;
    if (sscanf(line, " %31s %lx %lx %lx %lx %lx", type, &off, &vaddr, &paddr, &filesz, &memsz) ==
            6 &&
        strcmp(type, "TLS") == 0) {
        t->segments++;
        t->memsz = memsz;
    }
}

Test(exports, static_tls_is_a_few_words)
{
    struct tls t = { 0, 0 };
    run_tool("readelf -lW", find_tls, &t);
    cr_expect(le(int, t.segments, 1), "one PT_TLS segment at most");
    cr_expect(le(ulong, t.memsz, 64),
              "PT_TLS MemSiz %lu bytes: keep per-thread state behind a "
              "pointer (pitfalls.md section 4)",
              t.memsz);
}
