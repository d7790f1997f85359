/* memoryUsage in the trace and through memtrace.h (trace-format.md §7.2-7.3, issue 4): at every
 * memtrace_mark() of tests/progs/usage_marks.c, heapUsed, external and mapped in the SNAPSHOT
 * equal both what the program worked out itself (malloc_usable_size, page rounding) and what
 * memtrace_usage() returned just before; every trace ends with an EXIT snapshot right before
 * END; a forked child's trace starts with a START snapshot of what it inherited;
 * MEMTRACE_INTERVAL produces INTERVAL snapshots without a helper thread (unshare still works).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(usage, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 120);

struct expect_line {
    char label[64];
    unsigned long long heap, ext, mapped;       /* what the program computed */
    unsigned long long u_heap, u_ext, u_mapped; /* what memtrace_usage() said */
    int rc;
};

/* Parse usage_marks' "mark ..." lines; returns how many. */
static size_t parse_marks(const char *out, struct expect_line *lines, size_t max)
{
    size_t n = 0;
    for (const char *p = out; p != NULL && *p && n < max; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        struct expect_line *l = &lines[n];
        if (sscanf(p, "mark %63s expect %llu %llu %llu usage %llu %llu %llu rc %d", l->label,
                   &l->heap, &l->ext, &l->mapped, &l->u_heap, &l->u_ext, &l->u_mapped, &l->rc) == 8)
            n++;
    }
    return n;
}

/* The only trace in the tmpdir whose name starts with prefix, loaded. */
static void load_one(const char *prefix, struct h_trace *t)
{
    char *paths[4];
    size_t k = h_traces(prefix, paths, 4);
    cr_assert(eq(sz, k, 1), "one trace %s*", prefix);
    h_load(paths[0], t);
    cr_assert(eq(int, t->rc, 0), "trace decodes: %s", t->error);
    h_free_paths(paths, k);
}

/* The n-th MARK snapshot of the trace (labels are not kept by h_load: marks are matched by
 * order, the program being single-threaded). */
static const struct rd_event *nth_mark(const struct h_trace *t, size_t n)
{
    for (size_t i = 0; i < t->nevents; i++) {
        const struct rd_event *e = &t->events[i];
        if (e->kind == MTF_EV_SNAPSHOT && e->snap_reason == MTF_SNAP_MARK && n-- == 0)
            return e;
    }
    return NULL;
}

Test(usage, marks_are_exact_in_trace_and_usage)
{
    char *argv[] = { (char *)h_path("progs/usage_marks"), NULL };
    struct h_run r = h_run(argv, NULL, 1, "um.%p.mtrace", 60);
    cr_assert(r.exited && r.status == 0, "usage_marks: status %d, %s", r.status, r.err);
    static struct expect_line lines[64];
    size_t n = parse_marks(r.out, lines, 64);
    cr_assert(ge(sz, n, 20), "usage_marks printed its marks: %s", r.out);
    struct h_trace t;
    load_one("um.", &t);
    for (size_t i = 0; i < n; i++) {
        const struct expect_line *l = &lines[i];
        cr_expect(eq(int, l->rc, 0), "%s: memtrace_usage() found the shim", l->label);
        const struct rd_event *e = nth_mark(&t, i);
        cr_assert(ne(ptr, (void *)e, NULL), "SNAPSHOT for mark %s", l->label);
        cr_expect(eq(u64, e->heap_used, l->heap), "%s: heapUsed in the trace", l->label);
        cr_expect(eq(u64, e->external, l->ext), "%s: external in the trace", l->label);
        cr_expect(eq(u64, e->mapped, l->mapped), "%s: mapped in the trace", l->label);
        cr_expect(eq(u64, l->u_heap, l->heap), "%s: heapUsed from memtrace_usage()", l->label);
        cr_expect(eq(u64, l->u_ext, l->ext), "%s: external from memtrace_usage()", l->label);
        cr_expect(eq(u64, l->u_mapped, l->mapped), "%s: mapped from memtrace_usage()", l->label);
        cr_expect(le(u64, e->heap_used, e->heap_total + e->heap_used * (e->heap_total == 0)),
                  "%s: heapUsed <= heapTotal once the allocator holds memory", l->label);
        cr_expect(gt(u64, e->rss, 0), "%s: rss", l->label);
        cr_expect(eq(u64, e->rss_peak, 0), "%s: rss_peak only at exit", l->label);
    }
    const struct rd_event *last = nth_mark(&t, n);
    cr_assert(ne(ptr, (void *)last, NULL), "the mark with the long label");
    cr_expect(eq(u32, last->label_len, 255), "a 399-byte label is kept to its first 255 bytes");
    cr_expect(eq(ptr, (void *)nth_mark(&t, n + 1), NULL), "one SNAPSHOT per mark");
    h_trace_free(&t);
    h_run_free(&r);
}

Test(usage, without_the_shim_usage_is_zero_and_mark_is_a_no_op)
{
    char *argv[] = { (char *)h_path("progs/usage_marks"), NULL };
    struct h_run r = h_run(argv, NULL, 0, NULL, 60);
    cr_assert(r.exited && r.status == 0, "usage_marks without the shim: status %d, %s", r.status,
              r.err);
    cr_expect(eq(int, strncmp(r.out, "no shim\n", 8), 0), "%s", r.out);
    static struct expect_line lines[64];
    size_t n = parse_marks(r.out, lines, 64);
    cr_assert(ge(sz, n, 20));
    for (size_t i = 0; i < n; i++) {
        cr_expect(eq(int, lines[i].rc, -1), "%s", lines[i].label);
        cr_expect(eq(u64, lines[i].u_heap + lines[i].u_ext + lines[i].u_mapped, 0), "%s",
                  lines[i].label);
    }
    char *paths[2];
    cr_expect(eq(sz, h_traces(NULL, paths, 2), 0), "no trace without the shim");
    h_run_free(&r);
}

/* The last event before END is an EXIT snapshot with the peak rss. */
static void expect_exit_snapshot(const struct h_trace *t)
{
    cr_assert(t->has_end, "trace complete");
    cr_assert(gt(sz, t->nevents, 0));
    const struct rd_event *last = NULL;
    for (size_t i = 0; i < t->nevents; i++)
        if (t->events[i].kind == MTF_EV_SNAPSHOT && t->events[i].snap_reason == MTF_SNAP_EXIT)
            last = &t->events[i];
    cr_assert(ne(ptr, (void *)last, NULL), "an EXIT snapshot");
    cr_expect(ge(u64, last->rss_peak, last->rss), "VmHWM >= rss");
    cr_expect(gt(u64, last->rss_peak, 0), "peak rss known");
}

Test(usage, every_trace_ends_with_an_exit_snapshot)
{
    char *argv[] = { (char *)h_path("progs/usage_marks"), NULL };
    struct h_run r = h_run(argv, NULL, 1, "ex.%p.mtrace", 60);
    cr_assert(r.exited && r.status == 0);
    struct h_trace t;
    load_one("ex.", &t);
    expect_exit_snapshot(&t);
    cr_expect(eq(u64, t.events[t.nevents - 1].kind, MTF_EV_SNAPSHOT),
              "the EXIT snapshot is the last event");
    h_trace_free(&t);
    h_run_free(&r);
}

Test(usage, forked_child_trace_starts_with_inherited_snapshot)
{
    char *argv[] = { (char *)h_path("progs/usage_marks"), "fork", NULL };
    struct h_run r = h_run(argv, NULL, 1, "fk.%p.mtrace", 60);
    cr_assert(r.exited && r.status == 0, "usage_marks fork: %d %s", r.status, r.err);
    static struct expect_line lines[8];
    size_t n = parse_marks(r.out, lines, 8);
    cr_assert(eq(sz, n, 3), "start, before-fork, child: %s", r.out);
    cr_assert(eq(str, lines[1].label, "before-fork"));
    char *paths[4];
    size_t k = h_traces("fk.", paths, 4);
    cr_assert(eq(sz, k, 2), "parent and child traces");
    int children = 0;
    for (size_t i = 0; i < k; i++) {
        struct h_trace t;
        h_load(paths[i], &t);
        cr_assert(eq(int, t.rc, 0), "%s", t.error);
        expect_exit_snapshot(&t);
        if (t.status.header.origin == MTF_ORIGIN_FORK) {
            children++;
            cr_assert(gt(sz, t.nevents, 0));
            const struct rd_event *e = &t.events[0];
            cr_expect(eq(u32, e->kind, MTF_EV_SNAPSHOT), "first event of the child");
            cr_expect(eq(u32, e->snap_reason, MTF_SNAP_START));
            cr_expect(eq(u64, e->heap_used, lines[1].heap), "inherited heapUsed");
            const struct rd_event *m = nth_mark(&t, 0);
            cr_assert(ne(ptr, (void *)m, NULL), "the child's mark");
            cr_expect(eq(u64, m->heap_used, lines[1].heap), "child mark heapUsed");
        }
        h_trace_free(&t);
    }
    cr_expect(eq(int, children, 1));
    h_free_paths(paths, k);
    h_run_free(&r);
}

static size_t count_snapshots(const struct h_trace *t, uint32_t reason)
{
    size_t n = 0;
    for (size_t i = 0; i < t->nevents; i++)
        n += t->events[i].kind == MTF_EV_SNAPSHOT && t->events[i].snap_reason == reason;
    return n;
}

Test(usage, interval_snapshots_appear)
{
    char *argv[] = { (char *)h_path("progs/usage_interval"), "200", "threads", NULL };
    char *env[] = { "MEMTRACE_INTERVAL=10ms", NULL };
    struct h_run r = h_run(argv, env, 1, "iv.%p.mtrace", 60);
    cr_assert(r.exited && r.status == 0, "%s", r.err);
    struct h_trace t;
    load_one("iv.", &t);
    size_t n = count_snapshots(&t, MTF_SNAP_INTERVAL);
    cr_expect(gt(sz, n, 0), "INTERVAL snapshots in a ~200 ms run with a 10 ms interval");
    cr_expect(eq(sz, t.nthreads, 3), "no thread of ours: the program's three only");
    h_trace_free(&t);
    h_run_free(&r);
}

Test(usage, no_interval_snapshots_by_default)
{
    char *argv[] = { (char *)h_path("progs/usage_interval"), "50", NULL };
    struct h_run r = h_run(argv, NULL, 1, "nv.%p.mtrace", 60);
    cr_assert(r.exited && r.status == 0, "%s", r.err);
    struct h_trace t;
    load_one("nv.", &t);
    cr_expect(eq(sz, count_snapshots(&t, MTF_SNAP_INTERVAL), 0));
    h_trace_free(&t);
    h_run_free(&r);
}

Test(usage, unshare_works_with_an_interval)
{
    char *argv[] = { (char *)h_path("progs/robust_unshare"), NULL };
    struct h_run plain = h_run(argv, NULL, 0, NULL, 60);
    if (!plain.exited || plain.status != 0)
        cr_skip_test("unshare(CLONE_NEWUSER) fails without the shim too: %s", plain.out);
    char *env[] = { "MEMTRACE_INTERVAL=1ms", NULL };
    struct h_run r = h_run(argv, env, 1, "us.%p.mtrace", 60);
    cr_assert(r.exited && r.status == 0, "unshare under MEMTRACE_INTERVAL: %d %s %s", r.status,
              r.out, r.err);
    cr_expect(eq(str, r.out, "unshare ok\n"));
    h_run_free(&r);
    h_run_free(&plain);
}
