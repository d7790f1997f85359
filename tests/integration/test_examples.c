/* The shipped Node experiments (examples/heap_growth.c, buffer_growth.c,
 * grow_and_release.c), run as a user runs them: without the shim, under plain
 * LD_PRELOAD, and under the memtrace wrapper, with and without a heap cap.
 * Checked: exit statuses, the first line of the fatal message, the number of
 * steps printed before the death against the number the cap allows (computed
 * from the step size, the allocator's usable size and the heap in use at
 * start), the refused call in the trace (a LIMIT event), the buffer version
 * running past the cap, zeros outside memtrace, and every printed
 * heapUsed/external equal to the trace's snapshot at the same mark. The
 * examples are run with --bytes, so they print exact byte counts instead of MB.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(examples, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 180);

#define MIB          (1024ULL * 1024)
#define LIMIT_BYTES  (64 * MIB) /* the cap of the README's run */
#define LIMIT_ARG    "64M"
#define STEP_MB      10 /* the examples' default step */
#define OBJECT_BYTES 40 /* heap_growth's default object size */
#define MAX_LINES    256
#define LABEL_MAX    64
#define FATAL_LINE   "FATAL ERROR: Reached heap limit Allocation failed - heap out of memory"

/* One memoryUsage line of an example's --bytes output, or one MARK snapshot of
 * a trace. */
struct usage_line {
    char label[LABEL_MAX];
    uint64_t rss, heap_total, heap_used, external;
};

/* Parse every "LABEL: heapTotal N heapUsed N external N rss N" line of `out`;
 * returns the count (other lines, "done: ...", are skipped). */
static size_t parse_lines(const char *out, struct usage_line *lines, size_t max)
{
    size_t n = 0;
    for (const char *p = out; *p && n < max;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        const char *sep = strstr(p, ": heapTotal ");
        if (sep != NULL && sep < p + len && (size_t)(sep - p) < LABEL_MAX) {
            struct usage_line *l = &lines[n];
            memset(l, 0, sizeof *l);
            memcpy(l->label, p, (size_t)(sep - p));
            unsigned long long rss, total, used, ext;
            if (sscanf(sep, ": heapTotal %llu heapUsed %llu external %llu rss %llu", &total, &used,
                       &ext, &rss) == 4) {
                l->rss = rss;
                l->heap_total = total;
                l->heap_used = used;
                l->external = ext;
                n++;
            }
        }
        p += len + (nl != NULL);
    }
    return n;
}

/* Lines whose label starts with `prefix` ("step ", "grow ", "release "). */
static size_t count_labels(const struct usage_line *lines, size_t n, const char *prefix)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += strncmp(lines[i].label, prefix, strlen(prefix)) == 0;
    return k;
}

/* The MARK snapshots of a trace, in file order (one thread: the order of the
 * marks). */
static size_t load_marks(const char *path, struct usage_line *marks, size_t max)
{
    struct reader *r = NULL;
    int rc = reader_open(&r, path);
    cr_assert_eq(rc, 0, "%s: %s", path, r ? reader_error(r) : "out of memory");
    size_t n = 0;
    struct rd_item it;
    while ((rc = reader_next(r, &it)) > 0) {
        if (it.type != RD_ITEM_EVENT || it.ev.kind != MTF_EV_SNAPSHOT ||
            it.ev.snap_reason != MTF_SNAP_MARK || n == max)
            continue;
        struct usage_line *m = &marks[n++];
        memset(m, 0, sizeof *m);
        uint32_t len = it.ev.label_len < LABEL_MAX - 1 ? it.ev.label_len : LABEL_MAX - 1;
        memcpy(m->label, it.ev.label, len);
        m->rss = it.ev.rss;
        m->heap_total = it.ev.heap_total;
        m->heap_used = it.ev.heap_used;
        m->external = it.ev.external;
    }
    cr_assert_eq(rc, 0, "%s: cannot decode: %s", path, reader_error(r));
    reader_close(r);
    return n;
}

/* The one trace file of the run (the examples neither fork nor exec). */
static void the_trace(char *path, size_t cap)
{
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    cr_assert_eq(n, 1, "%zu trace files in %s, expected 1", n, h_tmpdir());
    snprintf(path, cap, "%s", paths[0]);
    h_free_paths(paths, n < 4 ? n : 4);
}

/* Every printed line has a MARK of the same label in the trace, in the same
 * order, holding exactly the printed heapUsed and external (the example reads
 * memtrace_usage() right before memtrace_mark() and allocates nothing in
 * between). */
static void expect_marks_match(const struct usage_line *lines, size_t n, const char *trace)
{
    static struct usage_line marks[MAX_LINES];
    size_t m = load_marks(trace, marks, MAX_LINES);
    cr_assert_eq(m, n, "%zu MARK snapshots in the trace, %zu lines printed", m, n);
    for (size_t i = 0; i < n; i++) {
        cr_expect_str_eq(marks[i].label, lines[i].label, "mark %zu", i);
        cr_expect_eq(marks[i].heap_used, lines[i].heap_used,
                     "%s: printed heapUsed %" PRIu64 ", snapshot %" PRIu64, lines[i].label,
                     lines[i].heap_used, marks[i].heap_used);
        cr_expect_eq(marks[i].external, lines[i].external,
                     "%s: printed external %" PRIu64 ", snapshot %" PRIu64, lines[i].label,
                     lines[i].external, marks[i].external);
    }
}

/* Run examples/<name> --bytes ARGS... under plain LD_PRELOAD (preload 1: trace
 * t.%p.mtrace in the tmpdir) or without the shim (preload 0), with the extra
 * "NAME=value" entries of env. */
static struct h_run run_example(const char *name, const char *const args[], char *const env[],
                                int preload)
{
    char *argv[12];
    char rel[64];
    snprintf(rel, sizeof rel, "examples/%s", name);
    size_t k = 0;
    argv[k++] = (char *)h_path(rel);
    argv[k++] = "--bytes";
    for (size_t i = 0; args != NULL && args[i] != NULL && k < 11; i++)
        argv[k++] = (char *)args[i];
    argv[k] = NULL;
    return h_run(argv, env, preload, NULL, 120);
}

/* Run examples/<name> --bytes ARGS... through build/memtrace with wrapper
 * options `opts` (NULL-terminated) and -o <tmpdir>/t.%p.mtrace. The wrapper
 * sets LD_PRELOAD itself. */
static struct h_run run_wrapped(const char *name, const char *const opts[],
                                const char *const args[])
{
    static char output[8192];
    char *argv[20];
    char rel[64];
    size_t k = 0;
    argv[k++] = (char *)h_path("memtrace");
    for (size_t i = 0; opts[i] != NULL && k < 8; i++)
        argv[k++] = (char *)opts[i];
    snprintf(output, sizeof output, "%s/t.%%p.mtrace", h_tmpdir());
    argv[k++] = "-o";
    argv[k++] = output;
    argv[k++] = "--";
    snprintf(rel, sizeof rel, "examples/%s", name);
    argv[k++] = (char *)h_path(rel);
    argv[k++] = "--bytes";
    for (size_t i = 0; args != NULL && args[i] != NULL && k < 19; i++)
        argv[k++] = (char *)args[i];
    argv[k] = NULL;
    return h_run(argv, NULL, 0, NULL, 120);
}

/* Bytes heapUsed grows by in one heap_growth step of `mb` MiB: its objects
 * times what the allocator hands out for one (malloc_usable_size: the trace
 * counts size + slack). Same glibc as the examples, so the runner can ask its
 * own allocator. */
static uint64_t heap_step_bytes(uint64_t mb)
{
    void *p = malloc(OBJECT_BYTES);
    cr_assert_not_null(p);
    uint64_t usable = malloc_usable_size(p);
    free(p);
    return mb * MIB / OBJECT_BYTES * usable;
}

/* Whether the first line of `err` is the Node-style fatal line. */
static int starts_with_fatal_line(const char *err)
{
    size_t len = strlen(FATAL_LINE);
    return strncmp(err, FATAL_LINE, len) == 0 && (err[len] == '\n' || err[len] == '\0');
}

/* ---- without the shim: the examples run to the end and print zeros
 * -------------------------- */

struct plain_case {
    char name[32];
    char steps[8];
    char prefix[16]; /* label prefix of the growing steps */
    size_t lines;    /* memoryUsage lines printed */
};

static struct plain_case plain_cases[] = {
    { "heap_growth", "3", "step ", 4 },
    { "buffer_growth", "3", "step ", 4 },
    { "grow_and_release", "3", "grow ", 7 },
};

ParameterizedTestParameters(examples, run_to_the_end_with_zeros_without_the_shim)
{
    return cr_make_param_array(struct plain_case, plain_cases,
                               sizeof plain_cases / sizeof plain_cases[0]);
}

ParameterizedTest(struct plain_case *c, examples, run_to_the_end_with_zeros_without_the_shim)
{
    const char *args[] = { c->steps, "1", NULL };
    struct h_run r = run_example(c->name, args, NULL, 0);
    cr_assert(r.exited && r.status == 0, "%s: %s %d, stderr:\n%s", c->name,
              r.exited ? "exit status" : "signal", r.status, r.err);
    cr_expect(strstr(r.err, "not running under memtrace") != NULL,
              "%s: no note that the figures are zeros; stderr:\n%s", c->name, r.err);
    struct usage_line lines[MAX_LINES];
    size_t n = parse_lines(r.out, lines, MAX_LINES);
    cr_assert_eq(n, c->lines, "%s: %zu usage lines, expected %zu; stdout:\n%s", c->name, n,
                 c->lines, r.out);
    cr_expect_eq(count_labels(lines, n, c->prefix), 3);
    for (size_t i = 0; i < n; i++)
        cr_expect(lines[i].rss == 0 && lines[i].heap_total == 0 && lines[i].heap_used == 0 &&
                      lines[i].external == 0,
                  "%s: %s: figures are not zeros without the shim", c->name, lines[i].label);
    cr_expect(strstr(r.out, "done: ") != NULL, "%s: no done line", c->name);
    h_run_free(&r);
}

/* ---- heap_growth under the heap cap
 * --------------------------------------------------------- */

/* The steps heap_growth completes under LIMIT_BYTES: the heap in use at its
 * start line plus k steps must stay within the cap. */
static size_t expected_steps(const struct usage_line *start)
{
    uint64_t step = heap_step_bytes(STEP_MB);
    cr_assert_lt(start->heap_used, LIMIT_BYTES, "heap at start %" PRIu64 " is past the cap",
                 start->heap_used);
    return (size_t)((LIMIT_BYTES - start->heap_used) / step);
}

/* What every run of heap_growth under the cap shows, whatever the way the cap
 * was set: the steps printed before the refusal, the marks, and the refused
 * malloc as the trace's one LIMIT event. */
static void check_heap_growth_refused(const struct h_run *r, uint32_t mode)
{
    struct usage_line lines[MAX_LINES];
    size_t n = parse_lines(r->out, lines, MAX_LINES);
    cr_assert_geq(n, 1, "no usage line printed; stdout:\n%s\nstderr:\n%s", r->out, r->err);
    cr_assert_str_eq(lines[0].label, "start");
    size_t want = expected_steps(&lines[0]);
    size_t steps = count_labels(lines, n, "step ");
    cr_expect_eq(steps, want,
                 "%zu steps completed under a %s cap, expected %zu (%" PRIu64
                 " bytes a step, %" PRIu64 " in use at start); stdout:\n%s",
                 steps, LIMIT_ARG, want, heap_step_bytes(STEP_MB), lines[0].heap_used, r->out);
    cr_expect(strstr(r->out, "done: ") == NULL, "heap_growth ran to the end past the cap");

    char trace[8192];
    the_trace(trace, sizeof trace);
    expect_marks_match(lines, n, trace);

    struct h_trace t;
    h_load(trace, &t);
    cr_assert_eq(t.rc, 0, "%s: %s", trace, t.error);
    cr_assert_eq(t.counts[MTF_EV_LIMIT], 1, "%" PRIu64 " LIMIT events, expected 1",
                 t.counts[MTF_EV_LIMIT]);
    const struct rd_event *lim = NULL;
    for (size_t i = 0; i < t.nevents && lim == NULL; i++)
        if (t.events[i].kind == MTF_EV_LIMIT)
            lim = &t.events[i];
    cr_assert_not_null(lim);
    cr_expect_eq(lim->call, MTF_EV_MALLOC, "refused call kind %u, expected malloc", lim->call);
    cr_expect_eq(lim->limit_class, MTF_CLASS_HEAP);
    cr_expect_eq(lim->limit_mode, mode);
    cr_expect_eq(lim->limit, LIMIT_BYTES);
    cr_expect_eq(lim->size, OBJECT_BYTES, "refused request %" PRIu64 " bytes", lim->size);
    cr_expect(lim->live <= LIMIT_BYTES && lim->live + lim->size > LIMIT_BYTES,
              "live %" PRIu64 " + request %" PRIu64 " does not cross the cap", lim->live,
              lim->size);
    cr_expect_geq(lim->live, lines[n - 1].heap_used,
                  "refused before the last printed step's heap (%" PRIu64 ")",
                  lines[n - 1].heap_used);
    cr_expect(h_stack_has(&t, lim->stack, "main"), "the refused call's stack has no main");
    h_trace_free(&t);
}

Test(examples, heap_growth_dies_at_the_heap_limit_under_ld_preload)
{
    char *env[] = { "MEMTRACE_HEAP_LIMIT=" LIMIT_ARG, NULL };
    struct h_run r = run_example("heap_growth", NULL, env, 1);
    cr_assert(!r.exited && r.status == SIGABRT, "heap_growth: %s %d, expected SIGABRT; stderr:\n%s",
              r.exited ? "exit status" : "signal", r.status, r.err);
    cr_expect(starts_with_fatal_line(r.err), "stderr does not start with the fatal line:\n%s",
              r.err);
    check_heap_growth_refused(&r, MTF_LIMIT_ABORT);
    h_run_free(&r);
}

Test(examples, heap_growth_dies_at_the_heap_limit_under_the_wrapper)
{
    const char *opts[] = { "--heap-limit", LIMIT_ARG, NULL };
    struct h_run r = run_wrapped("heap_growth", opts, NULL);
    cr_assert(r.exited && r.status == 134,
              "memtrace heap_growth: %s %d, expected exit 134; "
              "stderr:\n%s",
              r.exited ? "exit status" : "signal", r.status, r.err);
    cr_expect(starts_with_fatal_line(r.err), "stderr does not start with the fatal line:\n%s",
              r.err);
    check_heap_growth_refused(&r, MTF_LIMIT_ABORT);
    h_run_free(&r);
}

Test(examples, heap_growth_gets_null_at_the_heap_limit_in_enomem_mode)
{
    char *env[] = { "MEMTRACE_HEAP_LIMIT=" LIMIT_ARG, "MEMTRACE_ON_LIMIT=enomem", NULL };
    struct h_run r = run_example("heap_growth", NULL, env, 1);
    cr_assert(r.exited && r.status == 1, "heap_growth: %s %d, expected exit 1; stderr:\n%s",
              r.exited ? "exit status" : "signal", r.status, r.err);
    cr_expect(strstr(r.err, "FATAL ERROR") == NULL, "fatal message in enomem mode:\n%s", r.err);
    cr_expect(strstr(r.err, "malloc(40) failed") != NULL && strstr(r.err, "Cannot allocate"),
              "the example did not see malloc fail with ENOMEM; stderr:\n%s", r.err);
    check_heap_growth_refused(&r, MTF_LIMIT_ENOMEM);
    h_run_free(&r);
}

Test(examples, heap_growth_under_the_wrapper_in_enomem_mode)
{
    const char *opts[] = { "--heap-limit", LIMIT_ARG, "--on-limit", "enomem", NULL };
    struct h_run r = run_wrapped("heap_growth", opts, NULL);
    cr_assert(r.exited && r.status == 1,
              "memtrace heap_growth: %s %d, expected exit 1; "
              "stderr:\n%s",
              r.exited ? "exit status" : "signal", r.status, r.err);
    check_heap_growth_refused(&r, MTF_LIMIT_ENOMEM);
    h_run_free(&r);
}

/* ---- buffer_growth passes the heap cap
 * ------------------------------------------------------ */

/* buffer_growth's default run (20 steps of 10 MiB, 200 MiB in all) under the
 * 64M heap cap: it finishes, heapUsed stays where it started, external grows by
 * exactly one buffer a step, and nothing was refused. */
static void check_buffer_growth_passes(const struct h_run *r)
{
    cr_assert(r->exited && r->status == 0, "buffer_growth: %s %d, expected exit 0; stderr:\n%s",
              r->exited ? "exit status" : "signal", r->status, r->err);
    cr_expect(strstr(r->err, "FATAL ERROR") == NULL, "fatal message:\n%s", r->err);
    struct usage_line lines[MAX_LINES];
    size_t n = parse_lines(r->out, lines, MAX_LINES);
    cr_assert_eq(n, 21, "%zu usage lines, expected start and 20 steps; stdout:\n%s", n, r->out);
    cr_expect(strstr(r->out, "done: 20 steps") != NULL, "no done line; stdout:\n%s", r->out);
    for (size_t i = 1; i < n; i++) {
        cr_expect_eq(lines[i].heap_used, lines[0].heap_used,
                     "%s: heapUsed %" PRIu64 " moved from %" PRIu64, lines[i].label,
                     lines[i].heap_used, lines[0].heap_used);
        cr_expect_eq(lines[i].external - lines[i - 1].external, STEP_MB * MIB,
                     "%s: external grew by %" PRIu64, lines[i].label,
                     lines[i].external - lines[i - 1].external);
    }
    cr_expect_gt(lines[n - 1].external, LIMIT_BYTES, "external %" PRIu64 " never passed the cap",
                 lines[n - 1].external);

    char trace[8192];
    the_trace(trace, sizeof trace);
    expect_marks_match(lines, n, trace);
    struct h_trace t;
    h_load(trace, &t);
    cr_assert_eq(t.rc, 0, "%s: %s", trace, t.error);
    cr_expect_eq(t.counts[MTF_EV_LIMIT], 0, "%" PRIu64 " LIMIT events", t.counts[MTF_EV_LIMIT]);
    cr_expect(t.has_end && t.end.reason == MTF_END_EXIT && t.end.status == 0,
              "the trace does not end with exit 0");
    h_trace_free(&t);
}

Test(examples, buffer_growth_runs_past_the_heap_limit_under_ld_preload)
{
    char *env[] = { "MEMTRACE_HEAP_LIMIT=" LIMIT_ARG, NULL };
    struct h_run r = run_example("buffer_growth", NULL, env, 1);
    check_buffer_growth_passes(&r);
    h_run_free(&r);
}

Test(examples, buffer_growth_runs_past_the_heap_limit_under_the_wrapper)
{
    const char *opts[] = { "--heap-limit", LIMIT_ARG, NULL };
    struct h_run r = run_wrapped("buffer_growth", opts, NULL);
    check_buffer_growth_passes(&r);
    h_run_free(&r);
}

/* The external cap stops the same program: with MEMTRACE_EXTERNAL_LIMIT=64M in
 * enomem mode, mmap fails in the step that would cross it. */
Test(examples, buffer_growth_gets_enomem_at_the_external_limit)
{
    char *env[] = { "MEMTRACE_EXTERNAL_LIMIT=" LIMIT_ARG, "MEMTRACE_ON_LIMIT=enomem", NULL };
    struct h_run r = run_example("buffer_growth", NULL, env, 1);
    cr_assert(r.exited && r.status == 1, "buffer_growth: %s %d, expected exit 1; stderr:\n%s",
              r.exited ? "exit status" : "signal", r.status, r.err);
    struct usage_line lines[MAX_LINES];
    size_t n = parse_lines(r.out, lines, MAX_LINES);
    cr_assert_geq(n, 1, "no usage line; stdout:\n%s", r.out);
    size_t want = (size_t)((LIMIT_BYTES - lines[0].external) / (STEP_MB * MIB));
    cr_expect_eq(count_labels(lines, n, "step "), want, "steps before the external cap");
    cr_expect(strstr(r.err, "mmap of 10 MiB failed") != NULL, "stderr:\n%s", r.err);

    char trace[8192];
    the_trace(trace, sizeof trace);
    struct h_trace t;
    h_load(trace, &t);
    cr_assert_eq(t.rc, 0, "%s: %s", trace, t.error);
    cr_assert_eq(t.counts[MTF_EV_LIMIT], 1);
    for (size_t i = 0; i < t.nevents; i++)
        if (t.events[i].kind == MTF_EV_LIMIT) {
            cr_expect_eq(t.events[i].limit_class, MTF_CLASS_EXTERNAL);
            cr_expect_eq(t.events[i].limit_mode, MTF_LIMIT_ENOMEM);
            cr_expect_eq(t.events[i].size, STEP_MB * MIB);
        }
    h_trace_free(&t);
    h_run_free(&r);
}

/* ---- the printed figures are the trace's
 * ---------------------------------------------------- */

/* grow_and_release under the shim, no cap: every grow step adds one step of
 * heap and one buffer of external, every release takes exactly that away again,
 * and each printed line equals the trace's snapshot at its mark. */
Test(examples, grow_and_release_numbers_rise_and_fall_exactly)
{
    const char *args[] = { "4", "2", NULL }; /* 4 steps of 2 MiB, 40-byte objects */
    struct h_run r = run_example("grow_and_release", args, NULL, 1);
    cr_assert(r.exited && r.status == 0, "grow_and_release: %s %d; stderr:\n%s",
              r.exited ? "exit status" : "signal", r.status, r.err);
    struct usage_line lines[MAX_LINES];
    size_t n = parse_lines(r.out, lines, MAX_LINES);
    cr_assert_eq(n, 9, "%zu usage lines, expected start, 4 grow, 4 release; stdout:\n%s", n, r.out);
    uint64_t heap_step = heap_step_bytes(2), ext_step = 2 * MIB;
    const struct usage_line *start = &lines[0];
    for (size_t k = 1; k <= 4; k++) {
        const struct usage_line *g = &lines[k];
        cr_expect_eq(g->heap_used, start->heap_used + k * heap_step, "%s: heapUsed %" PRIu64,
                     g->label, g->heap_used);
        cr_expect_eq(g->external, start->external + k * ext_step, "%s: external %" PRIu64, g->label,
                     g->external);
    }
    for (size_t k = 4; k >= 1; k--) {
        const struct usage_line *rel = &lines[9 - k]; /* release 4 is line 5 ... release 1 line 8 */
        char want[32];
        snprintf(want, sizeof want, "release %zu", k);
        cr_expect_str_eq(rel->label, want);
        cr_expect_eq(rel->heap_used, start->heap_used + (k - 1) * heap_step,
                     "%s: heapUsed %" PRIu64, rel->label, rel->heap_used);
        cr_expect_eq(rel->external, start->external + (k - 1) * ext_step, "%s: external %" PRIu64,
                     rel->label, rel->external);
    }
    char trace[8192];
    the_trace(trace, sizeof trace);
    expect_marks_match(lines, n, trace);
    h_run_free(&r);
}

/* heap_growth under the shim without a cap runs to the end; its figures are the
 * trace's. */
Test(examples, heap_growth_runs_to_the_end_without_a_limit)
{
    const char *args[] = { "5", "2", NULL };
    struct h_run r = run_example("heap_growth", args, NULL, 1);
    cr_assert(r.exited && r.status == 0, "heap_growth: %s %d; stderr:\n%s",
              r.exited ? "exit status" : "signal", r.status, r.err);
    struct usage_line lines[MAX_LINES];
    size_t n = parse_lines(r.out, lines, MAX_LINES);
    cr_assert_eq(n, 6, "%zu usage lines; stdout:\n%s", n, r.out);
    uint64_t heap_step = heap_step_bytes(2);
    for (size_t k = 1; k < n; k++) {
        cr_expect_eq(lines[k].heap_used - lines[k - 1].heap_used, heap_step,
                     "%s: heapUsed grew by %" PRIu64, lines[k].label,
                     lines[k].heap_used - lines[k - 1].heap_used);
        cr_expect_eq(lines[k].external, lines[0].external, "%s: external moved", lines[k].label);
    }
    char trace[8192];
    the_trace(trace, sizeof trace);
    expect_marks_match(lines, n, trace);
    h_run_free(&r);
}
