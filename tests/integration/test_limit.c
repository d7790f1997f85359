/* The heap and external caps (docs/design.md "The heap cap", trace-format.md §7.4): in abort
 * mode the program dies by SIGABRT after the Node-like fatal error naming the limit, the live
 * heap, the refused request and its stack, with the refused call as a LIMIT event (and a LIMIT
 * snapshot) in a complete trace; in enomem mode the call fails with ENOMEM, a refused realloc
 * keeps its block, C++ new throws std::bad_alloc, and the program goes on; external memory
 * passes the heap cap; 8 threads crossing the cap together get one message and never push the
 * heap past it by more than one allocation.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(limit, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 120);

#define FATAL_HEAP "FATAL ERROR: Reached heap limit Allocation failed - heap out of memory\n"
#define MIB        (1ULL << 20)

static void load_one(const char *prefix, struct h_trace *t)
{
    char *paths[4];
    size_t k = h_traces(prefix, paths, 4);
    cr_assert(eq(sz, k, 1), "one trace %s*", prefix);
    h_load(paths[0], t);
    cr_assert(eq(int, t->rc, 0), "trace decodes: %s", t->error);
    h_free_paths(paths, k);
}

static const struct rd_event *first_of(const struct h_trace *t, unsigned kind, size_t *at)
{
    for (size_t i = 0; i < t->nevents; i++)
        if (t->events[i].kind == kind) {
            if (at != NULL)
                *at = i;
            return &t->events[i];
        }
    return NULL;
}

static size_t count_lines_with(const char *text, const char *what)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, what)) != NULL; p += strlen(what))
        n++;
    return n;
}

/* Steps the program printed ("step <i>" lines). */
static long steps(const char *out)
{
    return (long)count_lines_with(out, "step ");
}

Test(limit, heap_cap_aborts_with_the_fatal_error)
{
    char *argv[] = { (char *)h_path("progs/limit_heap"), "heap", "100", NULL };
    char *env[] = { "MEMTRACE_HEAP_LIMIT=10M", NULL };
    struct h_run r = h_run(argv, env, 1, "ab.%p.mtrace", 60);
    cr_assert(eq(int, r.exited, 0), "killed by a signal, not exited: status %d", r.status);
    cr_expect(eq(int, r.status, SIGABRT), "SIGABRT (134 from a shell)");
    cr_assert(eq(int, strncmp(r.err, FATAL_HEAP, strlen(FATAL_HEAP)), 0),
              "first line of stderr: %s", r.err);
    cr_expect(ne(ptr, strstr(r.err, "10.00 MiB (10485760 bytes)"), NULL), "the limit: %s", r.err);
    cr_expect(ne(ptr, strstr(r.err, "malloc of 1.00 MiB (1048576 bytes)"), NULL), "request");
    cr_expect(ne(ptr, strstr(r.err, "heap used: "), NULL), "the live heap");
    cr_expect(ne(ptr, strstr(r.err, " step_heap+0x"), NULL), "the stack, symbolized: %s", r.err);
    cr_expect(ne(ptr, strstr(r.err, " main+0x"), NULL), "one frame a line");
    cr_expect(eq(sz, count_lines_with(r.err, "FATAL ERROR"), 1));
    /* 1 MiB steps (usable a little more) under 10 MiB: the tenth is refused */
    cr_expect(eq(long, steps(r.out), 9), "steps before the cap: %s", r.out);

    struct h_trace t;
    load_one("ab.", &t);
    cr_assert(t.has_end, "the trace was flushed and ended");
    cr_expect(eq(u32, t.end.reason, MTF_END_SIGNAL));
    cr_expect(eq(int, t.end.status, SIGABRT));
    size_t at = 0;
    const struct rd_event *e = first_of(&t, MTF_EV_LIMIT, &at);
    cr_assert(ne(ptr, (void *)e, NULL), "a LIMIT event");
    cr_expect(eq(u32, e->call, MTF_EV_MALLOC));
    cr_expect(eq(u32, e->limit_class, MTF_CLASS_HEAP));
    cr_expect(eq(u32, e->limit_mode, MTF_LIMIT_ABORT));
    cr_expect(eq(u64, e->limit, 10 * MIB));
    cr_expect(eq(u64, e->size, MIB), "the refused request");
    cr_expect(le(u64, e->live, 10 * MIB));
    cr_expect(gt(u64, e->live + MIB, 10 * MIB), "refused only because it would cross the cap");
    cr_expect(ne(u32, e->stack, 0), "with the refused call's stack");
    cr_expect(h_stack_has(&t, e->stack, "step_heap"), "stack of the refused call");
    cr_assert(lt(sz, at + 1, t.nevents));
    cr_expect(eq(u32, t.events[at + 1].kind, MTF_EV_SNAPSHOT), "a snapshot follows");
    cr_expect(eq(u32, t.events[at + 1].snap_reason, MTF_SNAP_LIMIT));
    cr_expect(eq(u64, t.events[at + 1].heap_used, e->live));
    cr_expect(eq(u64, t.counts[MTF_EV_MALLOC], 9), "the nine admitted mallocs");
    h_trace_free(&t);
    h_run_free(&r);
}

Test(limit, enomem_mode_fails_the_call_and_goes_on)
{
    char *argv[] = { (char *)h_path("progs/limit_heap"), "heap", "100", NULL };
    char *env[] = { "MEMTRACE_HEAP_LIMIT=10M", "MEMTRACE_ON_LIMIT=enomem", NULL };
    struct h_run r = h_run(argv, env, 1, "en.%p.mtrace", 60);
    cr_assert(r.exited && r.status == 0, "status %d: %s", r.status, r.err);
    cr_expect(ne(ptr, strstr(r.out, "enomem at 9 errno 12\n"), NULL), "%s", r.out);
    cr_expect(ne(ptr, strstr(r.out, "realloc kept 1 counted 1\n"), NULL),
              "a refused realloc keeps its block, still counted: %s", r.out);
    cr_expect(ne(ptr, strstr(r.out, "after free ok\n"), NULL), "%s", r.out);
    cr_expect(eq(sz, count_lines_with(r.err, "FATAL"), 0));
    cr_expect(eq(sz, count_lines_with(r.err, "memtrace: warning: heap limit reached"), 1),
              "warned once: %s", r.err);

    struct h_trace t;
    load_one("en.", &t);
    cr_expect(t.has_end && t.end.reason == MTF_END_EXIT && t.end.status == 0);
    size_t limits = 0, failed_after = 0;
    for (size_t i = 0; i < t.nevents; i++) {
        const struct rd_event *e = &t.events[i];
        if (e->kind != MTF_EV_LIMIT)
            continue;
        limits++;
        cr_expect(eq(u32, e->limit_mode, MTF_LIMIT_ENOMEM));
        /* then its snapshot, then the call itself, FAILED */
        cr_assert(lt(sz, i + 2, t.nevents));
        const struct rd_event *call = &t.events[i + 2];
        cr_expect(eq(u32, call->kind, e->call), "the refused call follows its LIMIT");
        failed_after += (call->flags & MTF_EVF_FAILED) != 0;
    }
    cr_expect(eq(sz, limits, 2), "the refused malloc and the refused realloc");
    cr_expect(eq(sz, failed_after, limits), "each recorded FAILED");
    h_trace_free(&t);
    h_run_free(&r);
}

Test(limit, external_memory_passes_the_heap_cap)
{
    char *argv[] = { (char *)h_path("progs/limit_heap"), "external", "30", NULL };
    char *env[] = { "MEMTRACE_HEAP_LIMIT=10M", NULL };
    struct h_run r = h_run(argv, env, 1, "ex.%p.mtrace", 60);
    cr_assert(r.exited && r.status == 0, "status %d: %s", r.status, r.err);
    cr_expect(eq(long, steps(r.out), 30), "30 MiB mapped under a 10 MiB heap cap");
    cr_expect(ne(ptr, strstr(r.out, "done 30\n"), NULL));
    h_run_free(&r);
}

Test(limit, external_cap_aborts_with_its_own_message)
{
    char *argv[] = { (char *)h_path("progs/limit_heap"), "external", "30", NULL };
    char *env[] = { "MEMTRACE_EXTERNAL_LIMIT=10M", NULL };
    struct h_run r = h_run(argv, env, 1, "xa.%p.mtrace", 60);
    cr_assert(eq(int, r.exited, 0), "killed: status %d", r.status);
    cr_expect(eq(int, r.status, SIGABRT));
    const char *first = "FATAL ERROR: Reached external memory limit Allocation failed - external "
                        "memory out of memory\n";
    cr_expect(eq(int, strncmp(r.err, first, strlen(first)), 0), "%s", r.err);
    cr_expect(eq(long, steps(r.out), 10), "ten 1 MiB mappings fit exactly: %s", r.out);
    struct h_trace t;
    load_one("xa.", &t);
    const struct rd_event *e = first_of(&t, MTF_EV_LIMIT, NULL);
    cr_assert(ne(ptr, (void *)e, NULL));
    cr_expect(eq(u32, e->call, MTF_EV_MMAP));
    cr_expect(eq(u32, e->limit_class, MTF_CLASS_EXTERNAL));
    cr_expect(eq(u64, e->live, 10 * MIB));
    h_trace_free(&t);
    h_run_free(&r);
}

Test(limit, external_cap_enomem_returns_map_failed)
{
    char *argv[] = { (char *)h_path("progs/limit_heap"), "external", "30", NULL };
    char *env[] = { "MEMTRACE_EXTERNAL_LIMIT=10M", "MEMTRACE_ON_LIMIT=enomem", NULL };
    struct h_run r = h_run(argv, env, 1, "xe.%p.mtrace", 60);
    cr_assert(r.exited && r.status == 0, "status %d: %s", r.status, r.err);
    cr_expect(ne(ptr, strstr(r.out, "enomem at 10 errno 12\n"), NULL), "%s", r.out);
    h_run_free(&r);
}

Test(limit, cxx_new_throws_bad_alloc_in_enomem_mode)
{
    char *argv[] = { (char *)h_path("progs/limit_cxx"), NULL };
    char *env[] = { "MEMTRACE_HEAP_LIMIT=20M", "MEMTRACE_ON_LIMIT=enomem", NULL };
    struct h_run r = h_run(argv, env, 1, "cx.%p.mtrace", 60);
    cr_assert(r.exited && r.status == 0, "status %d: %s", r.status, r.err);
    unsigned long n = 0;
    const char *p = strstr(r.out, "bad_alloc after ");
    cr_assert(ne(ptr, (void *)p, NULL), "new threw std::bad_alloc: %s", r.out);
    n = strtoul(p + strlen("bad_alloc after "), NULL, 10);
    cr_expect(gt(ulong, n, 10), "some arrays fit first");
    cr_expect(lt(ulong, n, 20), "and not more than the cap holds");
    cr_expect(ne(ptr, strstr(r.out, "new ok\n"), NULL), "new works again after the frees");
    h_run_free(&r);
}

Test(limit, eight_threads_one_message)
{
    char *argv[] = { (char *)h_path("progs/limit_threads"), "4194304", NULL };
    char *env[] = { "MEMTRACE_HEAP_LIMIT=4194304", NULL };
    for (int round = 0; round < 3; round++) {
        struct h_run r = h_run(argv, env, 1, NULL, 60);
        cr_assert(eq(int, r.exited, 0), "round %d: killed, status %d", round, r.status);
        cr_expect(eq(int, r.status, SIGABRT));
        cr_expect(eq(sz, count_lines_with(r.err, "FATAL ERROR"), 1), "round %d: one message: %s",
                  round, r.err);
        cr_expect(eq(int, strncmp(r.err, FATAL_HEAP, strlen(FATAL_HEAP)), 0));
        h_run_free(&r);
    }
}

Test(limit, eight_threads_never_pass_the_cap_by_more_than_one_block)
{
    char *argv[] = { (char *)h_path("progs/limit_threads"), "4194304", NULL };
    char *env[] = { "MEMTRACE_HEAP_LIMIT=4194304", "MEMTRACE_ON_LIMIT=enomem", NULL };
    for (int round = 0; round < 3; round++) {
        struct h_run r = h_run(argv, env, 1, NULL, 60);
        cr_assert(r.exited && r.status == 0, "round %d: status %d %s", round, r.status, r.err);
        unsigned long long used = 0, limit = 0;
        size_t block = 0;
        int refused = 0;
        cr_assert(eq(int,
                     sscanf(r.out, "heap_used %llu limit %llu block %zu refused %d", &used, &limit,
                            &block, &refused),
                     4),
                  "%s", r.out);
        cr_expect(gt(sz, block, 0));
        cr_expect(le(u64, used, limit + block), "round %d: heapUsed %llu, cap %llu", round, used,
                  limit);
        cr_expect(gt(u64, used + block, limit), "the heap was filled up to the cap");
        cr_expect(eq(int, refused, 8), "every thread was refused once");
        h_run_free(&r);
    }
}
