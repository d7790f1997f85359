/* preload/symtab.c: in-process symbol lookup. Names are checked against what the compiler
 * wrote, never against the code under test: functions of this runner (address + 1, as a return
 * address would point), libc (stripped: .dynsym only), and tests/progs/librules_png.c compiled
 * here into a temporary directory with and without symbols, then dlopen'ed, deleted or replaced
 * by a build with another build id.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "symtab.h"

TestSuite(symtab, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 60);

#define NAME_CAP 256
#define PC(fn)   ((uint64_t)(uintptr_t)(fn) + 1)

static volatile int calls;

__attribute__((noinline)) void symtab_global_fixture(void);
__attribute__((noinline)) void symtab_global_fixture(void)
{
    calls += 1;
}

__attribute__((noinline)) static void symtab_static_fixture(void)
{
    calls += 2;
}

/* ---- fixture library ----------------------------------------------------------------------------
 */

static const char *tmp_file(const char *name)
{
    static char buf[4][4096];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s", h_tmpdir(), name);
    return p;
}

/* Compile librules_png.c into the tmpdir as `name`; `extra` (may be NULL): -s or a -D. */
static const char *build_lib(const char *name, const char *extra)
{
    const char *out = tmp_file(name);
    char src[4096];
    h_find_source("librules_png.c", src, sizeof src);
    char *argv[] = { "cc", "-O2",       "-g", "-fPIC",       "-shared",
                     "-o", (char *)out, src,  (char *)extra, NULL };
    struct h_run r = h_run(argv, NULL, 0, NULL, 60);
    cr_assert(r.exited && r.status == 0, "cc failed (status %d): %s", r.status, r.err);
    h_run_free(&r);
    return out;
}

struct lib {
    void *handle;
    uint64_t alloc_pc; /* in png_like_alloc (exported: .dynsym and .symtab) */
    uint64_t row_pc;   /* in png_like_row (static: .symtab only) */
};

static void open_lib(const char *path, struct lib *l)
{
    l->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    cr_assert(ne(ptr, l->handle, NULL), "dlopen %s: %s", path, dlerror());
    void *alloc = dlsym(l->handle, "png_like_alloc");
    void *(*(*row_fn)(void))(size_t) =
        (void *(*(*)(void))(size_t))dlsym(l->handle, "png_like_row_fn");
    cr_assert(alloc != NULL && row_fn != NULL);
    l->alloc_pc = PC(alloc);
    l->row_pc = PC(row_fn());
}

static uint64_t bias_of(void *handle)
{
    struct link_map *lm = NULL;
    cr_assert(eq(int, dlinfo(handle, RTLD_DI_LINKMAP, &lm), 0));
    return lm->l_addr;
}

/* ---- the runner and libc ------------------------------------------------------------------------
 */

Test(symtab, names_functions_of_the_executable)
{
    char name[NAME_CAP], exe[PATH_MAX];
    const char *path = NULL;
    uint64_t off = 99;
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert(k > 0);
    exe[k] = '\0';
    cr_expect(
        eq(int, mt_symtab_lookup(PC(symtab_global_fixture), name, sizeof name, &path, &off), 1));
    cr_expect(eq(str, name, "symtab_global_fixture"));
    cr_expect(eq(u64, off, 1), "offset from the symbol's start");
    cr_assert(ne(ptr, (void *)path, NULL));
    cr_expect(eq(str, (char *)path, exe), "the executable is named by its path");
    cr_expect(
        eq(int, mt_symtab_lookup(PC(symtab_static_fixture), name, sizeof name, NULL, NULL), 1));
    cr_expect(eq(str, name, "symtab_static_fixture"), "a local symbol, from .symtab");
    cr_expect(eq(str, (char *)mt_symtab_name(PC(symtab_static_fixture) + 2, NULL, &off),
                 "symtab_static_fixture"));
    cr_expect(eq(u64, off, 3));
}

Test(symtab, names_a_libc_function_from_dynsym)
{
    void *q = dlsym(RTLD_DEFAULT, "qsort");
    cr_assert(ne(ptr, q, NULL));
    char name[NAME_CAP];
    const char *path = NULL;
    cr_expect(eq(int, mt_symtab_lookup(PC(q), name, sizeof name, &path, NULL), 1));
    cr_expect(eq(str, name, "qsort"));
    cr_assert(ne(ptr, (void *)path, NULL));
    cr_expect(ne(ptr, strstr(path, "libc.so"), NULL), "%s", path);
}

Test(symtab, copies_within_the_buffer)
{
    char name[8];
    memset(name, 'x', sizeof name);
    cr_expect(eq(int, mt_symtab_lookup(PC(symtab_global_fixture), name, 7, NULL, NULL), 1));
    cr_expect(eq(str, name, "symtab"), "cut to cap - 1 bytes and terminated");
    cr_expect(eq(chr, name[7], 'x'), "nothing written past cap");
    cr_expect(eq(int, mt_symtab_lookup(PC(symtab_global_fixture), name, 0, NULL, NULL), 1),
              "cap 0 writes nothing");
}

Test(symtab, no_module_no_name)
{
    char name[NAME_CAP] = "junk";
    const char *path = "junk";
    uint64_t off = 5;
    cr_expect(eq(int, mt_symtab_lookup(16, name, sizeof name, &path, &off), -1));
    cr_expect(eq(str, name, ""));
    cr_expect(eq(ptr, (void *)path, NULL));
    cr_expect(eq(u64, off, 0));
    cr_expect(eq(int, mt_symtab_module(16, &path, NULL), -1));
}

/* ---- a shared library, with and without symbols
 * -------------------------------------------------- */

Test(symtab, names_functions_of_a_loaded_library)
{
    const char *so = build_lib("librules_png.so", NULL);
    struct lib l;
    open_lib(so, &l);
    char name[NAME_CAP];
    const char *path = NULL;
    uint64_t bias = 0;
    cr_expect(eq(int, mt_symtab_module(l.alloc_pc, &path, &bias), 0));
    cr_expect(eq(str, (char *)path, (char *)so));
    cr_expect(eq(u64, bias, bias_of(l.handle)));
    cr_expect(eq(int, mt_symtab_lookup(l.alloc_pc, name, sizeof name, &path, NULL), 1));
    cr_expect(eq(str, name, "png_like_alloc"));
    cr_expect(eq(str, (char *)path, (char *)so));
    cr_expect(eq(int, mt_symtab_lookup(l.row_pc, name, sizeof name, NULL, NULL), 1));
    cr_expect(eq(str, name, "png_like_row"), "a static function, from .symtab");
}

Test(symtab, stripped_library_names_exported_functions_only)
{
    const char *so = build_lib("librules_stripped.so", "-s");
    struct lib l;
    open_lib(so, &l);
    char name[NAME_CAP];
    const char *path = NULL;
    uint64_t off = 0;
    cr_expect(eq(int, mt_symtab_lookup(l.alloc_pc, name, sizeof name, NULL, NULL), 1));
    cr_expect(eq(str, name, "png_like_alloc"), "exported: still in .dynsym");
    cr_expect(eq(int, mt_symtab_lookup(l.row_pc, name, sizeof name, &path, &off), 0),
              "png_like_row was only in .symtab");
    cr_expect(eq(str, name, ""));
    cr_expect(eq(str, (char *)path, (char *)so), "the module is still known");
    cr_expect(eq(u64, off, l.row_pc - bias_of(l.handle)), "offset from the load bias");
}

Test(symtab, deleted_file_gives_no_name)
{
    const char *so = build_lib("librules_gone.so", NULL);
    struct lib l;
    open_lib(so, &l);
    cr_assert(eq(int, unlink(so), 0));
    char name[NAME_CAP] = "junk";
    const char *path = NULL;
    errno = 31337;
    cr_expect(eq(int, mt_symtab_lookup(l.alloc_pc, name, sizeof name, &path, NULL), 0));
    cr_expect(eq(int, errno, 31337), "errno kept through a failed open");
    cr_expect(eq(str, name, ""));
    cr_expect(eq(str, (char *)path, (char *)so));
}

Test(symtab, replaced_file_with_another_build_id_gives_no_name)
{
    const char *so = build_lib("librules_old.so", NULL);
    char keep[4096];
    snprintf(keep, sizeof keep, "%s", so);
    const char *other = build_lib("librules_new.so", "-DRULES_PNG_VARIANT=2");
    struct lib l;
    open_lib(keep, &l);
    cr_assert(eq(int, rename(other, keep), 0), "replace the file under the loaded library");
    char name[NAME_CAP] = "junk";
    cr_expect(eq(int, mt_symtab_lookup(l.alloc_pc, name, sizeof name, NULL, NULL), 0));
    cr_expect(eq(str, name, ""), "a name from the new file could be any function");
}

Test(symtab, same_build_rewritten_in_place_still_names)
{
    /* Control for the test above: a file with the same build id is accepted. */
    const char *so = build_lib("librules_same.so", NULL);
    char keep[4096];
    snprintf(keep, sizeof keep, "%s", so);
    struct lib l;
    open_lib(keep, &l);
    size_t n;
    uint8_t *bytes = h_must_read(keep, &n);
    cr_assert(eq(int, unlink(keep), 0));
    cr_assert(eq(int, h_write_file(keep, bytes, n), 0));
    free(bytes);
    char name[NAME_CAP];
    cr_expect(eq(int, mt_symtab_lookup(l.row_pc, name, sizeof name, NULL, NULL), 1));
    cr_expect(eq(str, name, "png_like_row"));
}

/* ---- concurrency
 * ----------------------------------------------------------------------------------- */

#define THREADS 8

static struct lib shared_lib;
static pthread_barrier_t start;

static void *look_up(void *arg)
{
    char *name = arg;
    pthread_barrier_wait(&start);
    if (mt_symtab_lookup(shared_lib.row_pc, name, NAME_CAP, NULL, NULL) != 1)
        name[0] = '\0';
    return NULL;
}

Test(symtab, threads_racing_on_a_new_module_all_get_the_name)
{
    open_lib(build_lib("librules_race.so", NULL), &shared_lib);
    pthread_t t[THREADS];
    static char names[THREADS][NAME_CAP];
    cr_assert(eq(int, pthread_barrier_init(&start, NULL, THREADS), 0));
    for (int i = 0; i < THREADS; i++)
        cr_assert(eq(int, pthread_create(&t[i], NULL, look_up, names[i]), 0));
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++)
        cr_expect(eq(str, names[i], "png_like_row"), "thread %d", i);
}
