/* Semantics: the shim changes nothing a program can observe. tests/progs/semantics_matrix.c
 * prints, for every case of pitfalls.md §15, the result class, errno (against a sentinel),
 * *memptr and malloc_usable_size; a run with the shim must print exactly what a run without it
 * prints, and the trace must record the failures as FAILED with nothing allocated. C++
 * (semantics_cxx.cc): every form of new/delete and a throw appear once with the right kind.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(semantics, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 60);

static struct h_run run(const char *prog, int preload)
{
    char *argv[] = { (char *)h_path(prog), NULL };
    struct h_run r = h_run(argv, NULL, preload, NULL, 50);
    cr_assert(r.exited && r.status == 0, "%s (%s the shim): %s %d, stderr:\n%s", prog,
              preload ? "with" : "without", r.exited ? "exit status" : "signal", r.status, r.err);
    return r;
}

/* The line of `out` that starts with "<name> ", copied into buf ("" when absent). */
static const char *line_of(const char *out, const char *name, char *buf, size_t cap)
{
    size_t k = strlen(name);
    buf[0] = '\0';
    for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, k) != 0 || p[k] != ' ')
            continue;
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(buf, cap, "%.*s", (int)n, p);
        break;
    }
    return buf;
}

/* Compare two outputs line by line; every difference goes into `diff`. Returns the count. */
static int compare_lines(const char *plain, const char *shim, char *diff, size_t cap)
{
    int n = 0;
    size_t dl = 0;
    const char *a = plain, *b = shim;
    while ((a && *a) || (b && *b)) {
        const char *ea = a ? strchr(a, '\n') : NULL, *eb = b ? strchr(b, '\n') : NULL;
        int la = a ? (int)(ea ? ea - a : (long)strlen(a)) : 0;
        int lb = b ? (int)(eb ? eb - b : (long)strlen(b)) : 0;
        if (la != lb || strncmp(a ? a : "", b ? b : "", (size_t)la) != 0) {
            n++;
            if (dl < cap)
                dl += (size_t)snprintf(diff + dl, cap - dl,
                                       "  without shim: %.*s\n  with shim:    %.*s\n", la,
                                       a ? a : "", lb, b ? b : "");
        }
        a = ea ? ea + 1 : NULL;
        b = eb ? eb + 1 : NULL;
    }
    return n;
}

Test(semantics, every_case_identical_with_and_without_shim)
{
    struct h_run plain = run("progs/semantics_matrix", 0);
    struct h_run shim = run("progs/semantics_matrix", 1);
    cr_assert_gt(plain.out_len, 0, "semantics_matrix printed nothing");
    char diff[16384];
    int n = compare_lines(plain.out, shim.out, diff, sizeof diff);
    cr_expect_eq(n, 0, "%d cases differ under the shim:\n%s", n, diff);
    h_run_free(&plain);
    h_run_free(&shim);
}

/* The glibc 2.36 behaviours pitfalls.md §15 lists, checked on the shimmed run itself (the
 * comparison above would miss a libc that changed, and so would the shim). */
Test(semantics, documented_glibc_results_under_the_shim)
{
    static const char *const want[] = {
        "malloc_0 ret=ptr errno=unchanged usable=24",
        "malloc_ptrdiff_max_plus_1 ret=null errno=ENOMEM",
        "calloc_2e62plus1_4 ret=null errno=ENOMEM",
        "calloc_recycled_zeroed ret=ptr errno=unchanged zero=1",
        "realloc_null_0 ret=ptr errno=unchanged",
        "realloc_p_0 ret=null errno=unchanged",
        "realloc_p_huge ret=null errno=ENOMEM intact=1",
        "reallocarray_overflow ret=null errno=ENOMEM",
        "reallocarray_p_overflow ret=null errno=ENOMEM",
        "posix_memalign_3_16 ret=22 errno=unchanged memptr=untouched",
        "posix_memalign_0_16 ret=22 errno=unchanged memptr=untouched",
        "posix_memalign_4_16 ret=22 errno=unchanged memptr=untouched",
        "posix_memalign_64_huge ret=12 errno=ENOMEM memptr=untouched",
        "aligned_alloc_64_100 ret=ptr errno=unchanged",
        "aligned_alloc_3_100 ret=ptr errno=unchanged",
        "aligned_alloc_0_100 ret=ptr errno=unchanged",
        "memalign_3_100 ret=ptr errno=unchanged",
        "free_null errno=unchanged",
        "free_block errno=unchanged",
        "malloc_usable_size_null ret=0 errno=unchanged",
        "mmap_len_0 ret=map_failed errno=EINVAL",
        "munmap_unaligned ret=-1 errno=EINVAL",
    };
    struct h_run shim = run("progs/semantics_matrix", 1);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char name[64], got[512];
        sscanf(want[i], "%63s", name);
        line_of(shim.out, name, got, sizeof got);
        cr_expect(strncmp(got, want[i], strlen(want[i])) == 0, "%s: got '%s', expected '%s...'",
                  name, got, want[i]);
    }
    /* pvalloc(0) and valloc(1) are small blocks, not whole pages */
    char got[512];
    line_of(shim.out, "valloc_1", got, sizeof got);
    cr_expect_not_null(strstr(got, "ret=ptr") && !strstr(got, "usable=4096") ? got : NULL,
                       "valloc_1: %s", got);
    h_run_free(&shim);
}

/* Every successful call leaves errno as it found it (checklist 7). */
Test(semantics, errno_sentinel_unchanged_across_successful_calls)
{
    struct h_run shim = run("progs/semantics_matrix", 1);
    char bad[8192] = "";
    size_t bl = 0;
    int n = 0;
    for (const char *p = shim.out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        const char *e = strchr(p, '\n');
        int len = (int)(e ? e - p : (long)strlen(p));
        char line[512];
        snprintf(line, sizeof line, "%.*s", len, p);
        int success = strstr(line, " ret=ptr") || strstr(line, " ret=0 ") ||
                      strncmp(line, "free_", 5) == 0 || strstr(line, "realloc_p_0 ") == line;
        if (success && !strstr(line, "errno=unchanged")) {
            n++;
            if (bl < sizeof bad)
                bl += (size_t)snprintf(bad + bl, sizeof bad - bl, "  %s\n", line);
        }
    }
    cr_expect_eq(n, 0, "%d successful calls changed errno under the shim:\n%s", n, bad);
    h_run_free(&shim);
}

/* Each failing call of the matrix is one FAILED event, and a failed heap call records no
 * address (nothing allocated); realloc(p, 0) and reallocarray(p, 0, n) are not failures. */
Test(semantics, failed_calls_recorded_as_failed_with_nothing_allocated)
{
    struct h_run shim = run("progs/semantics_matrix", 1);
    int failing = 0;
    for (const char *p = shim.out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, "realloc_p_0 ", 12) == 0 || strncmp(p, "reallocarray_p_0 ", 17) == 0)
            continue;
        const char *e = strchr(p, '\n');
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(e ? e - p : (long)strlen(p)), p);
        int rc = -100;
        if (strncmp(line, "posix_memalign", 14) == 0)
            sscanf(strstr(line, "ret="), "ret=%d", &rc);
        failing += strstr(line, " ret=null ") || strstr(line, " ret=map_failed ") ||
                   strstr(line, " ret=-1 ") || rc > 0;
    }
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    cr_assert_eq(n, 1, "expected 1 trace, found %zu", n);
    struct h_trace t;
    h_load(paths[0], &t);
    cr_assert_eq(t.rc, 0, "%s: %s", paths[0], t.error);
    cr_assert(t.has_end, "%s: no END record", paths[0]);
    cr_expect_eq(t.failed, (uint64_t)failing,
                 "%llu FAILED events, the program made %d failing calls",
                 (unsigned long long)t.failed, failing);
    for (size_t i = 0; i < t.nevents; i++) {
        const struct rd_event *e = &t.events[i];
        int heap_kind =
            e->kind >= MTF_EV_MALLOC && e->kind <= MTF_EV_PVALLOC && e->kind != MTF_EV_FREE;
        if (heap_kind && (e->flags & MTF_EVF_FAILED))
            cr_expect_eq(e->addr, 0, "failed %s (size %llu) records address %#llx",
                         reader_kind_name(e->kind), (unsigned long long)e->size,
                         (unsigned long long)e->addr);
    }
    h_trace_free(&t);
    h_free_paths(paths, n);
    h_run_free(&shim);
}

/* ---- C++ ------------------------------------------------------------------------------------ */

static int is_alloc(unsigned kind)
{
    return kind != MTF_EV_FREE && kind != MTF_EV_MUNMAP && kind != MTF_EV_STACK &&
           kind != MTF_EV_FORK && kind != MTF_EV_EXEC;
}

/* How often the block event i allocated is released before the address is handed out again. */
static int releases(const struct h_trace *t, size_t i)
{
    uint64_t a = t->events[i].addr;
    int n = 0;
    for (size_t k = i + 1; k < t->nevents; k++) {
        const struct rd_event *e = &t->events[k];
        if (e->kind == MTF_EV_FREE && e->addr == a)
            n++;
        else if ((e->kind == MTF_EV_REALLOC || e->kind == MTF_EV_REALLOCARRAY) &&
                 e->old_addr == a && !(e->flags & MTF_EVF_FAILED))
            n++;
        else if (is_alloc(e->kind) && e->addr == a && !(e->flags & MTF_EVF_FAILED))
            break;
    }
    return n;
}

struct cxx_case {
    const char *func;  /* the program function making the allocation */
    unsigned kind;     /* expected event kind */
    uint64_t size;     /* expected size (0: any) */
    uint64_t align;    /* expected alignment (ALIGNED_ALLOC) */
    const char *inner; /* a function that must also be on the stack, or NULL */
    int failed;        /* the call fails */
};

static const struct cxx_case cxx_cases[] = {
    { "cxx_new", MTF_EV_MALLOC, 1001, 0, "_Znwm", 0 },
    { "cxx_new_array", MTF_EV_MALLOC, 2002, 0, NULL, 0 }, /* _Znam tail-calls _Znwm */
    { "cxx_aligned_new", MTF_EV_ALIGNED_ALLOC, 384, 128, NULL, 0 },
    { "cxx_nothrow_new", MTF_EV_MALLOC, 3003, 0, NULL, 0 },
    { "cxx_nothrow_fail", MTF_EV_MALLOC, (uint64_t)-1 / 2, 0, NULL, 1 },
    { "cxx_nothrow_fail", MTF_EV_MALLOC, 0, 0, "__cxa_allocate_exception", 0 }, /* bad_alloc */
    { "cxx_throw", MTF_EV_MALLOC, 0, 0, "__cxa_allocate_exception", 0 },
    { "cxx_sized_delete", MTF_EV_MALLOC, 4004, 0, "_Znwm", 0 },
};

Test(semantics, cxx_new_delete_throw_each_recorded_once_with_right_kind)
{
    struct h_run plain = run("progs/semantics_cxx", 0);
    struct h_run shim = run("progs/semantics_cxx", 1);
    char diff[4096];
    int nd = compare_lines(plain.out, shim.out, diff, sizeof diff);
    cr_expect_eq(nd, 0, "semantics_cxx prints differently under the shim:\n%s", diff);
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    cr_assert_eq(n, 1, "expected 1 trace, found %zu", n);
    struct h_trace t;
    h_load(paths[0], &t);
    cr_assert_eq(t.rc, 0, "%s: %s", paths[0], t.error);
    for (size_t c = 0; c < sizeof cxx_cases / sizeof cxx_cases[0]; c++) {
        const struct cxx_case *w = &cxx_cases[c];
        int found = 0, other_kinds = 0;
        for (size_t i = 0; i < t.nevents; i++) {
            const struct rd_event *e = &t.events[i];
            if (!is_alloc(e->kind) || e->stack == 0 || !h_stack_has(&t, e->stack, w->func))
                continue;
            if (w->inner && !h_stack_has(&t, e->stack, w->inner))
                continue;
            /* the wanted size, or with none given any size but stdout's 4096-byte buffer */
            if (w->size ? e->size != w->size : e->size == 4096)
                continue;
            if (e->kind != w->kind) {
                other_kinds++;
                continue;
            }
            found++;
            cr_expect_eq(!!(e->flags & MTF_EVF_FAILED), w->failed, "%s: %s event flags %#x",
                         w->func, reader_kind_name(e->kind), e->flags);
            if (w->align)
                cr_expect_eq(e->align, w->align, "%s: alignment %llu, expected %llu", w->func,
                             (unsigned long long)e->align, (unsigned long long)w->align);
            if (!w->failed)
                cr_expect_eq(releases(&t, i), 1, "%s: block of %s freed %d times", w->func,
                             reader_kind_name(e->kind), releases(&t, i));
        }
        cr_expect_eq(found, 1, "%s: %d %s events%s%s of size %llu, expected 1", w->func, found,
                     reader_kind_name(w->kind), w->inner ? " through " : "",
                     w->inner ? w->inner : "", (unsigned long long)w->size);
        cr_expect_eq(other_kinds, 0, "%s: %d further events of another kind (double count)",
                     w->func, other_kinds);
    }
    h_trace_free(&t);
    h_free_paths(paths, n);
    h_run_free(&plain);
    h_run_free(&shim);
}
