/* MEMTRACE_RULES as a user sets it, on tests/progs/rules_target (+ librules_png.so). A malformed
 * rule, or a rules file that cannot be read, stops the program before main: exit status 125,
 * empty stdout, one stderr line naming the rule (or the file and line) and the fault, no trace.
 * Good rules put their class in the trace: rd_event.cls and MTF_EVF_CLASS, set only when the
 * class differs from the kind's default (trace-format.md §7.2). Each of the program's calls has
 * a size of its own; the test finds it by kind and size among the events whose stack has main.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(rules, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 120);

#define SPEC_MAX 200

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Run rules_target under the shim with MEMTRACE_RULES=value. */
static struct h_run run_rules(const char *value)
{
    static char setting[8192];
    snprintf(setting, sizeof setting, "MEMTRACE_RULES=%s", value);
    char *env[] = { setting, NULL };
    char *argv[] = { (char *)h_path("progs/rules_target"), (char *)h_path("progs/librules_png.so"),
                     NULL };
    return h_run(argv, env, 1, NULL, 60);
}

/* The run stopped before main with exactly `line` (without "memtrace: error: " and newline). */
static void expect_stopped(struct h_run *r, const char *line)
{
    cr_assert(r->exited, "killed by signal %d", r->status);
    cr_expect(eq(int, r->status, 125), "exit status %d, want 125; stderr: %s", r->status, r->err);
    cr_expect(eq(sz, r->out_len, 0), "main ran: %s", r->out);
    cr_expect(eq(sz, count_lines(r->err), 1), "one stderr line expected:\n%s", r->err);
    char want[8192];
    snprintf(want, sizeof want, "memtrace: error: %s\n", line);
    cr_expect(eq(str, r->err, want));
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    cr_expect(eq(sz, n, 0), "a run stopped by its configuration leaves no trace (found %zu)", n);
    h_free_paths(paths, n < 4 ? n : 4);
}

static const char *write_rules(const char *name, const char *text)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", h_tmpdir(), name);
    cr_assert(eq(int, h_write_file(path, text, strlen(text)), 0));
    return path;
}

/* ---- malformed rules stop the program -----------------------------------------------------------
 */

struct bad_rules {
    char spec[SPEC_MAX];
    char line[SPEC_MAX * 2]; /* the expected message after "memtrace: error: " */
};

ParameterizedTestParameters(rules, malformed_rules_stop_the_program_before_main)
{
    static struct bad_rules cases[] = {
        { "size>=1M:external; lib=libpng*:extrnal",
          "MEMTRACE_RULES: rule 2 \"lib=libpng*:extrnal\": unknown class \"extrnal\" (expected "
          "heap, external or mapped)" },
        { "size>=1Q:external", "MEMTRACE_RULES: rule 1 \"size>=1Q:external\": size>=1Q: not a "
                               "byte size (e.g. 4096, 64K, 1.5M)" },
        { "size>=1M", "MEMTRACE_RULES: rule 1 \"size>=1M\": no ':class' at the end (e.g. "
                      "size>=1M:external)" },
        { "colour=red:heap", "MEMTRACE_RULES: rule 1 \"colour=red:heap\": unknown condition "
                             "\"colour=red\" (expected size, kind, lib or func)" },
        { "kind=mmap,func=arena::grab:heap",
          "MEMTRACE_RULES: rule 1 \"kind=mmap,func=arena::grab:heap\": func pattern "
          "\"arena::grab\" has a ':': names are matched mangled (func=_ZN5arena* for "
          "arena::*)" },
        { "func=a[b:heap", "MEMTRACE_RULES: rule 1 \"func=a[b:heap\": func pattern \"a[b\": '[' "
                           "without a closing ']'" },
    };
    return cr_make_param_array(struct bad_rules, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct bad_rules *c, rules, malformed_rules_stop_the_program_before_main)
{
    struct h_run r = run_rules(c->spec);
    expect_stopped(&r, c->line);
    h_run_free(&r);
}

Test(rules, missing_rules_file_stops_the_program_before_main)
{
    char value[4200], line[4400];
    snprintf(value, sizeof value, "@%s/none.rules", h_tmpdir());
    snprintf(line, sizeof line,
             "MEMTRACE_RULES=@%s/none.rules: cannot open the rules file: No such file or "
             "directory",
             h_tmpdir());
    struct h_run r = run_rules(value);
    expect_stopped(&r, line);
    h_run_free(&r);
}

Test(rules, bad_line_of_a_rules_file_stops_the_program_before_main)
{
    const char *path = write_rules("bad.rules", "# classes for rules_target\n"
                                                "size>=1M:external\n"
                                                "\n"
                                                "kind=mallocc:heap   # typo\n");
    char value[4200], line[4400];
    snprintf(value, sizeof value, "@%s", path);
    snprintf(line, sizeof line,
             "MEMTRACE_RULES=@%s: line 4 \"kind=mallocc:heap\": unknown kind \"mallocc\" "
             "(expected malloc, calloc, realloc, reallocarray, posix_memalign, aligned_alloc, "
             "memalign, valloc, pvalloc, mmap, mmap64, mremap, heap or map, joined by '|')",
             path);
    struct h_run r = run_rules(value);
    expect_stopped(&r, line);
    h_run_free(&r);
}

/* ---- good rules: the classes in the trace -------------------------------------------------------
 */

#define RULES                                                                                      \
    "size>=1M:external; lib=librules_png*:external; func=arena_*:mapped; "                         \
    "kind=mmap,func=my_pool_*:heap; size=777:heap"

#define RULES_FILE                                                                                 \
    "# rules_target's classes, one rule a line\n"                                                  \
    "size>=1M:external          # big blocks are buffers\n"                                        \
    "lib=librules_png*:external # what the image library allocates\n"                              \
    "func=arena_*:mapped\n"                                                                        \
    "kind=mmap , func=my_pool_* : heap\n"                                                          \
    "size=777:heap              # names the default: no CLASS flag\n"

#define DEFAULT RD_CLASS_DEFAULT

struct expect_class {
    unsigned kind;
    uint64_t size;
    unsigned cls; /* MTF_CLASS_*, or DEFAULT: no CLASS flag */
    const char *what;
};

static const struct expect_class expected[] = {
    { MTF_EV_MALLOC, 1001, DEFAULT, "malloc(1001) in main: no rule" },
    { MTF_EV_MALLOC, 3 << 20, MTF_CLASS_EXTERNAL, "malloc(3M): size>=1M" },
    { MTF_EV_MALLOC, 2003, MTF_CLASS_EXTERNAL, "malloc in librules_png.so: lib=" },
    { MTF_EV_MALLOC, 3007, MTF_CLASS_MAPPED, "malloc under arena_grab: func=" },
    { MTF_EV_MMAP, 64 << 10, MTF_CLASS_HEAP, "mmap under my_pool_map: kind=mmap,func=" },
    { MTF_EV_MMAP, 128 << 10, DEFAULT, "mmap in main: no rule" },
    { MTF_EV_MALLOC, 777, DEFAULT, "malloc(777): a rule naming the default class" },
};

/* The program's own event of `kind` and `size` (its stack has main); fails unless exactly one. */
static const struct rd_event *find_event(const struct h_trace *t, unsigned kind, uint64_t size)
{
    const struct rd_event *found = NULL;
    size_t n = 0;
    for (size_t i = 0; i < t->nevents; i++) {
        const struct rd_event *e = &t->events[i];
        if (e->kind != kind || e->size != size || (e->flags & MTF_EVF_NESTED) ||
            !h_stack_has(t, e->stack, "main"))
            continue;
        found = e;
        n++;
    }
    cr_assert(eq(sz, n, 1), "events of kind %u and size %llu called from main: %zu", kind,
              (unsigned long long)size, n);
    return found;
}

static void load_the_trace(const struct h_run *r, struct h_trace *t)
{
    cr_assert(r->exited && r->status == 0, "status %d, stderr: %s", r->status, r->err);
    cr_assert(strstr(r->out, "done\n") != NULL, "%s", r->out);
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    cr_assert(eq(sz, n, 1), "one trace expected, found %zu", n);
    h_load(paths[0], t);
    cr_assert(eq(int, t->rc, 0), "%s: %s", paths[0], t->error);
    h_free_paths(paths, n);
}

static void check_classes(const char *value)
{
    struct h_run r = run_rules(value);
    struct h_trace t;
    load_the_trace(&r, &t);
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        const struct expect_class *x = &expected[i];
        const struct rd_event *e = find_event(&t, x->kind, x->size);
        cr_expect(eq(u8, e->cls, (uint8_t)x->cls), "%s: class", x->what);
        cr_expect(eq(int, !!(e->flags & MTF_EVF_CLASS), x->cls != DEFAULT), "%s: CLASS flag",
                  x->what);
    }
    h_trace_free(&t);
    h_run_free(&r);
}

Test(rules, no_rules_no_class_flag)
{
    char *argv[] = { (char *)h_path("progs/rules_target"), (char *)h_path("progs/librules_png.so"),
                     NULL };
    struct h_run r = h_run(argv, NULL, 1, NULL, 60);
    struct h_trace t;
    load_the_trace(&r, &t);
    size_t flagged = 0;
    for (size_t i = 0; i < t.nevents; i++)
        flagged += (t.events[i].flags & MTF_EVF_CLASS) != 0;
    cr_expect(eq(sz, flagged, 0), "without MEMTRACE_RULES every event has its default class");
    find_event(&t, MTF_EV_MALLOC, 3 << 20); /* the run did what the class tests rely on */
    h_trace_free(&t);
    h_run_free(&r);
}

/* The hooks apply the rules before each call (preload/classify.c). */
Test(rules, inline_rules_set_the_class_of_each_call)
{
    check_classes(RULES);
}

Test(rules, rules_file_sets_the_class_of_each_call)
{
    char value[4200];
    snprintf(value, sizeof value, "@%s", write_rules("good.rules", RULES_FILE));
    check_classes(value);
}
