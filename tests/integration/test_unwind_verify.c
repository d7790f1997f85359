/* MEMTRACE_UNWIND_VERIFY=1: every capture runs the CFI walker and libunwind side by side and the
 * process aborts with both stacks on the first difference. These tests run programs under it
 * (frame-pointer test programs, programs built without frame pointers, C++ exceptions, signal
 * handlers, threads, dlopen/dlclose, and real system programs when installed) and require that
 * every process reports its captures, that the walker took part, and that nothing differed.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(unwind_verify, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 120);

#define SUMMARY "memtrace: MEMTRACE_UNWIND_VERIFY: "

struct verdict {
    unsigned long processes; /* summary lines: processes that reached exit */
    unsigned long captures, walked;
};

/* Run argv under the shim in verify mode; fail on a difference, a crash or a bad exit status,
 * and add up the summary lines every process printed at exit. */
static struct verdict run_verified(char *const argv[], int expect_status)
{
    static char *const env[] = { "MEMTRACE_UNWIND_VERIFY=1", NULL };
    struct h_run r = h_run(argv, env, 1, NULL, 100);
    cr_assert(strstr(r.err, "and libunwind differ") == NULL,
              "%s: the walker and libunwind differ:\n%s", argv[0], r.err);
    cr_assert(r.exited, "%s: killed by signal %d:\n%s", argv[0], r.status, r.err);
    cr_assert(eq(int, r.status, expect_status), "%s: exit status:\n%s", argv[0], r.err);
    struct verdict v = { 0, 0, 0 };
    for (const char *p = r.err; (p = strstr(p, SUMMARY)) != NULL; p += sizeof SUMMARY - 1) {
        unsigned long c = 0, w = 0;
        cr_assert(eq(int, sscanf(p + sizeof SUMMARY - 1, "%lu captures, %lu walked", &c, &w), 2),
                  "summary line parses: %s", p);
        v.processes++;
        v.captures += c;
        v.walked += w;
    }
    cr_assert(gt(ulong, v.processes, 0), "%s: no verify summary on stderr:\n%s", argv[0], r.err);
    h_run_free(&r);
    return v;
}

/* The trace of a single-process run decodes cleanly and has a stack containing `func`. */
static void expect_stack_with(const char *func)
{
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    cr_assert(eq(sz, n, 1), "one trace");
    struct h_trace t;
    h_load(paths[0], &t);
    cr_assert(eq(int, t.rc, 0), "trace decodes: %s", t.error);
    int seen = 0;
    for (uint32_t id = 0; id < t.nstacks && !seen; id++)
        seen = t.stacks[id] != NULL && h_stack_has(&t, id, func);
    cr_expect(seen, "a stack through %s", func);
    h_trace_free(&t);
    h_free_paths(paths, n);
}

Test(unwind_verify, frame_pointer_programs_agree)
{
    static const char *const progs[][5] = {
        { "progs/stack_depth", "nested", "50", NULL },
        { "progs/stack_depth", "deep", "100", NULL },
        { "progs/stack_depth", "threads", "4", "200" },
        { "progs/threads_churn", "churn", "4", "2000" },
        { "progs/robust_signal", "20000", "100", NULL },
        { "progs/calls_known", "20", NULL },
        { "progs/check_clean", "4", NULL },
    };
    for (size_t i = 0; i < sizeof progs / sizeof progs[0]; i++) {
        char *argv[6] = { 0 };
        argv[0] = (char *)h_path(progs[i][0]);
        for (int k = 1; k < 5 && progs[i][k]; k++)
            argv[k] = (char *)progs[i][k];
        struct verdict v = run_verified(argv, 0);
        cr_expect(gt(ulong, v.walked, v.captures / 2), "%s %s: most captures walked (%lu of %lu)",
                  progs[i][0], progs[i][1], v.walked, v.captures);
    }
}

Test(unwind_verify, no_frame_pointer_program_agrees)
{
    char *argv[] = { (char *)h_path("progs/unwind_nofp"), (char *)h_path("progs/librobust_dl.so"),
                     "40", NULL };
    struct verdict v = run_verified(argv, 0);
    cr_expect(gt(ulong, v.captures, 1000), "the program allocated (%lu captures)", v.captures);
    cr_expect(gt(ulong, v.walked, v.captures / 2), "most captures walked (%lu of %lu)", v.walked,
              v.captures);
    expect_stack_with("with_alloca");
}

Test(unwind_verify, cxx_exceptions_agree)
{
    char *argv[] = { (char *)h_path("progs/unwind_throw"), "300", NULL };
    struct verdict v = run_verified(argv, 0);
    cr_expect(gt(ulong, v.walked, 1000), "throws and handlers walked (%lu)", v.walked);
    expect_stack_with("thrower");
}

/* Real programs: skipped with a message when not installed. */
static void need(const char *tool)
{
    if (!h_have_tool(tool))
        cr_skip_test("%s is not installed: test skipped", tool);
}

Test(unwind_verify, python_agrees)
{
    need("python3");
    char *argv[] = { "python3", "-c",
                     "import json\n"
                     "d = {str(i): [i, str(i) * 3, {'k': i}] for i in range(2000)}\n"
                     "s = json.dumps(d)\n"
                     "assert json.loads(s) == d\n",
                     NULL };
    struct verdict v = run_verified(argv, 0);
    cr_expect(gt(ulong, v.walked, 1000), "python captures walked (%lu of %lu)", v.walked,
              v.captures);
}

Test(unwind_verify, sqlite_agrees)
{
    need("sqlite3");
    char script[4096];
    snprintf(script, sizeof script, "%s/t.sql", h_tmpdir());
    static const char sql[] =
        "create table t(a integer primary key, b text);\n"
        "with recursive c(x) as (select 1 union all select x + 1 from c where x < 3000)\n"
        "insert into t select x, hex(randomblob(20)) from c;\n"
        "create index tb on t(b);\n"
        "select count(*), sum(length(b)) from t;\n";
    cr_assert(eq(int, h_write_file(script, sql, sizeof sql - 1), 0), "write the script");
    char init[4200];
    snprintf(init, sizeof init, ".read %s", script);
    char *argv[] = { "sqlite3", ":memory:", init, NULL };
    struct verdict v = run_verified(argv, 0);
    cr_expect(gt(ulong, v.walked, 100), "sqlite captures walked (%lu of %lu)", v.walked,
              v.captures);
}

Test(unwind_verify, gcc_agrees)
{
    need("gcc");
    char src[4096], obj[4096];
    snprintf(src, sizeof src, "%s/small.c", h_tmpdir());
    snprintf(obj, sizeof obj, "%s/small.o", h_tmpdir());
    static const char code[] = "#include <stdio.h>\n"
                               "struct p { int x, y; };\n"
                               "static int sq(int v) { return v * v; }\n"
                               "int main(void) { struct p a = { 3, 4 };\n"
                               "  printf(\"%d\\n\", sq(a.x) + sq(a.y)); return 0; }\n";
    cr_assert(eq(int, h_write_file(src, code, sizeof code - 1), 0), "write the source");
    char *argv[] = { "gcc", "-O2", "-c", src, "-o", obj, NULL };
    struct verdict v = run_verified(argv, 0);
    cr_expect(ge(ulong, v.processes, 2), "the driver and cc1 reported (%lu)", v.processes);
    cr_expect(gt(ulong, v.walked, 1000), "compiler captures walked (%lu of %lu)", v.walked,
              v.captures);
}
