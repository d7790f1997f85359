/* Stacks: an event's stack lists the program's callers innermost first, is capped at
 * MEMTRACE_DEPTH with the TRUNC flag, is shared by identical call sites (one definition in a
 * single-threaded program), is defined where trace-format.md §7 says, and never shows the
 * shim's own frames.
 * Program: tests/progs/stack_depth.c (main -> stack_a -> stack_b -> stack_c -> malloc(777),
 * stack_recurse x D -> malloc(4242)).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(stacks, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 60);

#define NESTED_SIZE 777
#define DEEP_SIZE   4242

/* Run stack_depth with `args` (NULL-terminated) and extra env; load its only trace. Returns the
 * trace path in `path` (caller frees). */
static void run_depth(char *const args[], char *const env[], struct h_trace *t, char **path)
{
    char *argv[8] = { (char *)h_path("progs/stack_depth") };
    for (int i = 0; args[i] && i < 6; i++)
        argv[i + 1] = args[i];
    struct h_run r = h_run(argv, env, 1, NULL, 50);
    cr_assert(r.exited && r.status == 0, "stack_depth %s %s: %s %d, stderr:\n%s", args[0], args[1],
              r.exited ? "exit status" : "signal", r.status, r.err);
    h_run_free(&r);
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    cr_assert_eq(n, 1, "expected 1 trace file, found %zu", n);
    h_load(paths[0], t);
    cr_assert_eq(t->rc, 0, "%s: cannot decode: %s", paths[0], t->error);
    if (path)
        *path = paths[0];
    else
        free(paths[0]);
}

/* The first event of `kind` with `size`; fails the test if there is none. */
static const struct rd_event *find_event(const struct h_trace *t, unsigned kind, uint64_t size)
{
    for (size_t i = 0; i < t->nevents; i++)
        if (t->events[i].kind == kind && t->events[i].size == size)
            return &t->events[i];
    cr_assert_fail("no %s event of size %llu in the trace", reader_kind_name(kind),
                   (unsigned long long)size);
    return NULL;
}

/* The symbolized frames of stack `id` as one string, for messages. */
static void describe(const struct h_trace *t, uint32_t id, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    if (id >= t->nstacks || t->stacks[id] == NULL) {
        snprintf(out, cap, "(stack %u undefined)", id);
        return;
    }
    for (uint32_t i = 0; i < t->stack_len[id] && n + 1 < cap; i++) {
        char name[256];
        h_symbol(t, t->stacks[id][i], name, sizeof name);
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? " <- " : "", name[0] ? name : "?");
    }
}

/* STACK definitions and stack uses, read straight from the reader (h_load keeps neither the
 * TRUNC flag nor how often an id was defined). trace-format.md §7: a thread defines a stack
 * before its first use, unless another thread's definition was already written to the file;
 * its own definition may sit in a STOLEN chunk written later. So a use is accounted for when
 * its thread defines the id anywhere in the file, or another thread's definition comes earlier
 * in the file than the use. */
struct stack_scan {
    uint32_t ndefs[4096];   /* definitions per id */
    uint8_t flags[4096];    /* flags of the last definition per id */
    uint32_t nframes[4096]; /* frames of the last definition per id */
    uint32_t max_id;
    uint64_t defs;        /* STACK events */
    uint64_t unaccounted; /* uses with no definition of their own and none earlier */
    char first_problem[256];
};

static void scan_stacks(const char *path, struct stack_scan *s)
{
    memset(s, 0, sizeof *s);
    static uint8_t own[65][4096]; /* own[serial][id]: the thread defines id somewhere */
    static uint8_t written[4096]; /* a definition of id came earlier in the file */
    memset(own, 0, sizeof own);
    memset(written, 0, sizeof written);
    for (int pass = 0; pass < 2; pass++) {
        struct reader *r = NULL;
        int rc = reader_open(&r, path);
        cr_assert_eq(rc, 0, "%s: %s", path, r ? reader_error(r) : "out of memory");
        struct rd_item it;
        while ((rc = reader_next(r, &it)) > 0) {
            if (it.type != RD_ITEM_EVENT)
                continue;
            const struct rd_event *e = &it.ev;
            cr_assert_lt(e->thread_serial, 65, "thread serial %u: test supports 64",
                         e->thread_serial);
            if (e->kind == MTF_EV_STACK) {
                cr_assert(e->stack > 0 && e->stack < 4096, "stack id %u out of the test's range",
                          e->stack);
                if (pass == 0) {
                    own[e->thread_serial][e->stack] = 1;
                    continue;
                }
                written[e->stack] = 1;
                s->defs++;
                s->ndefs[e->stack]++;
                s->flags[e->stack] = e->flags;
                s->nframes[e->stack] = e->nframes;
                if (e->stack > s->max_id)
                    s->max_id = e->stack;
                continue;
            }
            if (pass == 0 || e->stack == 0 || e->stack >= 4096)
                continue;
            if (!own[e->thread_serial][e->stack] && !written[e->stack] && s->unaccounted++ == 0)
                snprintf(s->first_problem, sizeof s->first_problem,
                         "%s event (thread serial %u, tid %u, chunk at offset %llu) uses stack "
                         "%u: its thread never defines it and no definition comes before",
                         reader_kind_name(e->kind), e->thread_serial, e->tid,
                         (unsigned long long)e->chunk_offset, e->stack);
        }
        cr_assert_eq(rc, 0, "%s: %s", path, reader_error(r));
        reader_close(r);
    }
}

Test(stacks, event_stack_lists_callers_innermost_first)
{
    struct h_trace t;
    run_depth((char *[]){ "nested", "10", NULL }, NULL, &t, NULL);
    static const char *want[] = { "stack_c", "stack_b", "stack_a", "main" };
    int checked = 0;
    for (size_t i = 0; i < t.nevents; i++) {
        const struct rd_event *e = &t.events[i];
        if (e->kind != MTF_EV_MALLOC || e->size != NESTED_SIZE)
            continue;
        checked++;
        char all[4096];
        describe(&t, e->stack, all, sizeof all);
        cr_assert(e->stack < t.nstacks && t.stacks[e->stack] && t.stack_len[e->stack] >= 4,
                  "malloc(777) has stack %u: %s", e->stack, all);
        for (int k = 0; k < 4; k++) {
            char name[256];
            h_symbol(&t, t.stacks[e->stack][k], name, sizeof name);
            cr_assert_str_eq(name, want[k], "frame %d is '%s', expected '%s'; stack: %s", k, name,
                             want[k], all);
        }
    }
    cr_assert_eq(checked, 10, "found %d malloc(777) events, the program made 10", checked);
    h_trace_free(&t);
}

Test(stacks, complete_stack_reaches_start_and_is_not_flagged_truncated)
{
    struct h_trace t;
    char *path;
    run_depth((char *[]){ "nested", "1", NULL }, NULL, &t, &path);
    const struct rd_event *e = find_event(&t, MTF_EV_MALLOC, NESTED_SIZE);
    char all[4096];
    describe(&t, e->stack, all, sizeof all);
    uint32_t n = t.stack_len[e->stack];
    cr_assert_lt(n, 64, "a %u-frame stack for a shallow call: %s", n, all);
    char outer[256];
    h_symbol(&t, t.stacks[e->stack][n - 1], outer, sizeof outer);
    cr_expect_str_eq(outer, "_start", "outermost frame '%s', expected _start: %s", outer, all);
    struct stack_scan *s = malloc(sizeof *s);
    scan_stacks(path, s);
    cr_expect_eq(s->flags[e->stack] & MTF_EVF_TRUNC, 0, "TRUNC set on a complete stack: %s", all);
    free(s);
    free(path);
    h_trace_free(&t);
}

Test(stacks, identical_call_sites_share_one_stack_definition)
{
    struct h_trace t;
    char *path;
    run_depth((char *[]){ "nested", "1000", NULL }, NULL, &t, &path);
    uint32_t id = 0;
    int n = 0;
    for (size_t i = 0; i < t.nevents; i++) {
        const struct rd_event *e = &t.events[i];
        if (e->kind != MTF_EV_MALLOC || e->size != NESTED_SIZE)
            continue;
        if (n++ == 0)
            id = e->stack;
        cr_assert_eq(e->stack, id, "malloc(777) number %d has stack %u, the first had %u", n,
                     e->stack, id);
    }
    cr_assert_eq(n, 1000, "%d malloc(777) events, the program made 1000", n);
    cr_assert_neq(id, 0, "malloc(777) recorded without a stack");
    struct stack_scan *s = malloc(sizeof *s);
    scan_stacks(path, s);
    cr_expect_eq(s->ndefs[id], 1, "stack %u defined %u times in a single-threaded program", id,
                 s->ndefs[id]);
    for (uint32_t k = 1; k <= s->max_id; k++)
        cr_expect_leq(s->ndefs[k], 1, "stack %u defined %u times in a single-threaded program", k,
                      s->ndefs[k]);
    free(s);
    free(path);
    h_trace_free(&t);
}

Test(stacks, deep_recursion_capped_at_default_depth_and_flagged)
{
    struct h_trace t;
    char *path;
    run_depth((char *[]){ "deep", "10000", NULL }, NULL, &t, &path);
    cr_expect_eq(t.status.header.max_frames, 64, "header max_frames %u, default is 64",
                 t.status.header.max_frames);
    const struct rd_event *e = find_event(&t, MTF_EV_MALLOC, DEEP_SIZE);
    cr_assert(e->stack < t.nstacks && t.stacks[e->stack], "malloc(4242) has no stack");
    cr_expect_eq(t.stack_len[e->stack], 64, "malloc(4242) below 10000 frames has %u frames",
                 t.stack_len[e->stack]);
    for (uint32_t k = 0; k < t.stack_len[e->stack]; k++) {
        char name[256];
        h_symbol(&t, t.stacks[e->stack][k], name, sizeof name);
        cr_assert_str_eq(name, "stack_recurse", "frame %u is '%s', expected stack_recurse", k,
                         name);
    }
    struct stack_scan *s = malloc(sizeof *s);
    scan_stacks(path, s);
    cr_expect_neq(s->flags[e->stack] & MTF_EVF_TRUNC, 0, "capped stack without the TRUNC flag");
    free(s);
    free(path);
    h_trace_free(&t);
}

Test(stacks, depth_5_records_exactly_5_frames_and_flags_truncation)
{
    struct h_trace t;
    char *path;
    run_depth((char *[]){ "nested", "1", NULL }, (char *[]){ "MEMTRACE_DEPTH=5", NULL }, &t, &path);
    cr_expect_eq(t.status.header.max_frames, 5, "header max_frames %u with MEMTRACE_DEPTH=5",
                 t.status.header.max_frames);
    const struct rd_event *e = find_event(&t, MTF_EV_MALLOC, NESTED_SIZE);
    char all[4096];
    describe(&t, e->stack, all, sizeof all);
    cr_assert_eq(t.stack_len[e->stack], 5, "%u frames with MEMTRACE_DEPTH=5: %s",
                 t.stack_len[e->stack], all);
    static const char *want[] = { "stack_c", "stack_b", "stack_a", "main" };
    for (int k = 0; k < 4; k++) {
        char name[256];
        h_symbol(&t, t.stacks[e->stack][k], name, sizeof name);
        cr_expect_str_eq(name, want[k], "frame %d is '%s', expected '%s': %s", k, name, want[k],
                         all);
    }
    struct stack_scan *s = malloc(sizeof *s);
    scan_stacks(path, s);
    cr_expect_neq(s->flags[e->stack] & MTF_EVF_TRUNC, 0, "5 of 8 frames without TRUNC: %s", all);
    for (uint32_t k = 1; k <= s->max_id; k++)
        cr_expect_leq(s->nframes[k], 5, "stack %u has %u frames with MEMTRACE_DEPTH=5", k,
                      s->nframes[k]);
    free(s);
    free(path);
    h_trace_free(&t);
}

Test(stacks, depth_5_caps_deep_recursion_at_5)
{
    struct h_trace t;
    char *path;
    run_depth((char *[]){ "deep", "10000", NULL }, (char *[]){ "MEMTRACE_DEPTH=5", NULL }, &t,
              &path);
    const struct rd_event *e = find_event(&t, MTF_EV_MALLOC, DEEP_SIZE);
    cr_assert_eq(t.stack_len[e->stack], 5, "%u frames with MEMTRACE_DEPTH=5",
                 t.stack_len[e->stack]);
    struct stack_scan *s = malloc(sizeof *s);
    scan_stacks(path, s);
    cr_expect_neq(s->flags[e->stack] & MTF_EVF_TRUNC, 0, "capped stack without TRUNC");
    free(s);
    free(path);
    h_trace_free(&t);
}

/* Every stack id an event names has a STACK definition somewhere in the file. */
Test(stacks, every_used_stack_id_is_defined)
{
    static const char *const runs[][3] = {
        { "nested", "100", NULL },
        { "deep", "300", NULL },
        { "threads", "4", "50" },
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        struct h_trace t;
        char *path;
        run_depth((char **)runs[r], NULL, &t, &path);
        size_t with_stack = 0;
        for (size_t i = 0; i < t.nevents; i++) {
            const struct rd_event *e = &t.events[i];
            if (e->stack == 0)
                continue;
            with_stack++;
            cr_assert(e->stack < t.nstacks && t.stacks[e->stack] != NULL,
                      "stack_depth %s: %s event %zu uses stack %u, never defined", runs[r][0],
                      reader_kind_name(e->kind), i, e->stack);
        }
        cr_assert_gt(with_stack, 0, "stack_depth %s: no event has a stack", runs[r][0]);
        unlink(path);
        free(path);
        h_trace_free(&t);
    }
}

/* trace-format.md §7 with threads sharing an id: with MEMTRACE_DEPTH=3 main's call and the
 * threads' calls have the same three frames (stack_c, stack_b, stack_a), so they share one id,
 * and main's chunk is only written at exit, after the threads'. A thread that leaves the
 * definition to another must find it written earlier in the file. */
Test(stacks, shared_stack_id_defined_by_the_thread_or_earlier_in_the_file)
{
    struct h_trace t;
    char *path;
    run_depth((char *[]){ "threads", "4", "20", NULL }, (char *[]){ "MEMTRACE_DEPTH=3", NULL }, &t,
              &path);
    struct stack_scan *s = malloc(sizeof *s);
    scan_stacks(path, s);
    cr_expect_eq(s->unaccounted, 0,
                 "%llu events use a stack defined neither by their thread "
                 "nor earlier in the file; first: %s",
                 (unsigned long long)s->unaccounted, s->first_problem);
    const struct rd_event *e = find_event(&t, MTF_EV_MALLOC, NESTED_SIZE);
    for (size_t i = 0; i < t.nevents; i++)
        if (t.events[i].kind == MTF_EV_MALLOC && t.events[i].size == NESTED_SIZE)
            cr_expect_eq(t.events[i].stack, e->stack,
                         "malloc(777) in thread serial %u has stack %u, another has %u: the "
                         "same 3 frames should share one id",
                         t.events[i].thread_serial, t.events[i].stack, e->stack);
    free(s);
    free(path);
    h_trace_free(&t);
}

/* The shim's own frames (hooks, unwinder, main wrapper) are never part of a recorded stack:
 * they are not the program's, and the module map flags the shim (MTF_MODF_SHIM). */
Test(stacks, no_frame_from_the_shim)
{
    struct h_trace t;
    run_depth((char *[]){ "nested", "10", NULL }, NULL, &t, NULL);
    const struct h_module *shim = NULL;
    for (size_t i = 0; i < t.nmodules; i++)
        if (t.modules[i].flags & MTF_MODF_SHIM)
            shim = &t.modules[i];
    cr_assert_not_null(shim, "no module flagged MTF_MODF_SHIM in the module map");
    cr_assert_not_null(strstr(shim->path, "libmemtrace.so"), "module flagged SHIM is %s",
                       shim->path);
    size_t bad = 0;
    char first[4096] = "";
    for (uint32_t id = 1; id < t.nstacks; id++) {
        if (t.stacks[id] == NULL)
            continue;
        for (uint32_t k = 0; k < t.stack_len[id]; k++) {
            uint64_t a = t.stacks[id][k] - 1;
            for (uint32_t s = 0; s < shim->nseg; s++) {
                uint64_t lo = shim->base + shim->segs[s].vaddr;
                if (a >= lo && a < lo + shim->segs[s].memsz && bad++ == 0) {
                    char all[3000], name[256];
                    h_symbol(&t, t.stacks[id][k], name, sizeof name);
                    describe(&t, id, all, sizeof all);
                    snprintf(first, sizeof first, "stack %u frame %u (%s in %s): %s", id, k,
                             name[0] ? name : "?", shim->path, all);
                }
            }
        }
    }
    cr_expect_eq(bad, 0, "%zu frames of libmemtrace.so in recorded stacks; first: %s", bad, first);
    h_trace_free(&t);
}
