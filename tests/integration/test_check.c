/* `memtrace check` end to end: small programs (tests/progs/check_*) run under the wrapper, and
 * the gate's exit status, verdict and findings are checked in the text summary, the JSON
 * (parsed by python3's json) and the JUnit XML (parsed by python3's ElementTree; validated with
 * xmllint against the schema named by $MT_JUNIT_XSD when set, e.g. Windy Road's JUnit.xsd).
 * Expected figures come from the programs themselves (they print what they lost), never from
 * this file. Where Valgrind is installed, the lost leaks of check_leak must equal memcheck's
 * definitely/indirectly lost records site by site.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(check, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 180);

/* JUnit XML to lines: "suite TESTS FAILURES CASES FAILED", then "case NAME|pass" or
 * "case NAME|fail|TYPE|TEXT" (TEXT with newlines as ' / '). */
static const char junit_py[] =
    "import sys, xml.etree.ElementTree as E\n"
    "r = E.parse(sys.argv[1]).getroot()\n"
    "assert r.tag == 'testsuite', r.tag\n"
    "cs = r.findall('testcase')\n"
    "print('suite %s %s %d %d' % (r.get('tests'), r.get('failures'), len(cs),\n"
    "      sum(1 for c in cs if c.find('failure') is not None)))\n"
    "for c in cs:\n"
    "    f = c.find('failure')\n"
    "    if f is None: print('case %s|pass' % c.get('name'))\n"
    "    else: print('case %s|fail|%s|%s' % (c.get('name'), f.get('type'),\n"
    "                (f.text or '').replace('\\n', ' / ')))\n";

/* memcheck's XML to "KIND FUNCTION LINE BYTES BLOCKS" lines, one per loss record of check_leak.c
 * (the innermost frame in that file). A definitely lost record's leakedbytes include the blocks
 * hanging off it; its text, "144 (48 direct, 96 indirect) bytes in 1 blocks", has its own. */
static const char vg_py[] =
    "import re, sys, xml.etree.ElementTree as E\n"
    "for e in E.parse(sys.argv[1]).getroot().iter('error'):\n"
    "    k = e.findtext('kind')\n"
    "    if not k.startswith('Leak_'): continue\n"
    "    w = e.find('xwhat')\n"
    "    m = re.match(r'[0-9,]+ \\(([0-9,]+) direct', w.findtext('text'))\n"
    "    b = m.group(1).replace(',', '') if m else w.findtext('leakedbytes')\n"
    "    for f in e.find('stack').findall('frame'):\n"
    "        if (f.findtext('file') or '').endswith(sys.argv[2]):\n"
    "            print(k, f.findtext('fn'), f.findtext('line'), b, w.findtext('leakedblocks'))\n"
    "            break\n";

struct chk {
    struct h_run run; /* memtrace check */
    char *flat;       /* flattened JSON: "\npath=value\n..." */
    char *junit;      /* junit_py's lines, "\n" first */
    char dir[4200];   /* the trace directory */
};

/* memtrace check --dir DIR --json --junit OPTS... -- CMD...; parses both outputs. */
static void check_run(struct chk *c, char *const opts[], char *const cmd[])
{
    if (!h_have_tool("python3"))
        cr_skip_test("python3 is not installed: cannot parse the JSON and the JUnit XML");
    static char json[4300], xml[4300];
    static int runs;
    snprintf(c->dir, sizeof c->dir, "%s/traces.%d", h_tmpdir(), ++runs);
    snprintf(json, sizeof json, "%s/check.json", h_tmpdir());
    snprintf(xml, sizeof xml, "%s/check.xml", h_tmpdir());
    unlink(json);
    unlink(xml);
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)h_path("memtrace");
    argv[n++] = "check";
    argv[n++] = "--dir", argv[n++] = c->dir;
    argv[n++] = "--json", argv[n++] = json;
    argv[n++] = "--junit", argv[n++] = xml;
    for (int i = 0; opts && opts[i]; i++)
        argv[n++] = opts[i];
    argv[n++] = "--";
    for (int i = 0; cmd[i]; i++)
        argv[n++] = cmd[i];
    argv[n] = NULL;
    c->run = h_run(argv, NULL, 0, NULL, 150);
    cr_assert(c->run.exited, "memtrace check was killed by signal %d", c->run.status);
    struct stat sb;
    cr_assert(eq(int, stat(json, &sb), 0), "no JSON written; stderr:\n%s", c->run.err);
    c->flat = h_json_flat(json);
    c->junit = h_python(junit_py, "junit", xml);
    const char *xsd = getenv("MT_JUNIT_XSD");
    if (xsd && *xsd && h_have_tool("xmllint")) {
        char vcmd[9000];
        snprintf(vcmd, sizeof vcmd, "xmllint --noout --schema %s %s 2>&1", xsd, xml);
        cr_expect(eq(int, system(vcmd), 0), "%s does not validate against %s", xml, xsd);
    }
}

static void chk_free(struct chk *c)
{
    h_run_free(&c->run);
    free(c->flat);
    free(c->junit);
}

/* Value of `path` in the flattened JSON (static buffer), or NULL. */
static const char *jget(const struct chk *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const char *jget(const struct chk *c, const char *fmt, ...)
{
    static char buf[8][4096];
    static int k;
    char path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    return h_json_get(c->flat, path, buf[k++ % 8], sizeof buf[0]);
}

#define JNUM(c, ...) jnum(c, jget(c, __VA_ARGS__), #__VA_ARGS__)
static uint64_t jnum(const struct chk *c, const char *v, const char *what)
{
    (void)c;
    cr_assert(ne(ptr, (void *)v, NULL), "no %s in the JSON", what);
    return strtoull(v, NULL, 10);
}

/* The program's "site FUNCTION LINE BYTES BLOCKS DIRECT_BYTES DIRECT_BLOCKS" lines. */
struct site {
    char fn[64];
    int line;
    uint64_t bytes, blocks, dbytes, dblocks;
};

static size_t prog_sites(const char *out, struct site *s, size_t max)
{
    size_t n = 0;
    for (const char *p = out; (p = strstr(p, "site ")) != NULL && n < max; p++) {
        if (p != out && p[-1] != '\n')
            continue;
        if (sscanf(p, "site %63s %d %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, s[n].fn,
                   &s[n].line, &s[n].bytes, &s[n].blocks, &s[n].dbytes, &s[n].dblocks) == 6)
            n++;
    }
    return n;
}

/* Index of the process with this pid (and origin, or NULL for any) in the JSON, or -1. */
static int jproc(const struct chk *c, uint64_t pid, const char *origin)
{
    for (int i = 0; jget(c, "processes.%d.pid", i); i++)
        if (JNUM(c, "processes.%d.pid", i) == pid &&
            (origin == NULL || strcmp(jget(c, "processes.%d.origin", i), origin) == 0))
            return i;
    return -1;
}

/* Index of the lost site of process `p` whose innermost frame is `fn`, or -1. */
static int jsite(const struct chk *c, int p, const char *fn)
{
    for (int i = 0; jget(c, "processes.%d.leaks.%d.bytes", p, i); i++) {
        const char *f = jget(c, "processes.%d.leaks.%d.stack.0.function", p, i);
        if (f && strcmp(f, fn) == 0)
            return i;
    }
    return -1;
}

static int has(const char *text, const char *needle)
{
    return strstr(text, needle) != NULL;
}

static char *const NONE[] = { NULL };

/* ---- verdicts -------------------------------------------------------------------------------- */

Test(check, clean_threaded_program_passes)
{
    struct chk c;
    char *cmd[] = { (char *)h_path("progs/check_clean"), "8", NULL };
    check_run(&c, NONE, cmd);
    cr_expect(eq(int, c.run.status, 0), "status %d\n%s%s", c.run.status, c.run.out, c.run.err);
    cr_expect(eq(str, (char *)jget(&c, "verdict"), "pass"));
    cr_expect(eq(u64, JNUM(&c, "processes.0.lost.blocks"), 0));
    cr_expect(eq(str, (char *)jget(&c, "processes.0.leak_scan"), "true"));
    cr_expect(has(c.run.out, "\nmemtrace check: PASS"), "%s", c.run.out);
    cr_expect(has(c.junit, "\nsuite 1 0 1 0\n"), "%s", c.junit);
    chk_free(&c);
}

Test(check, two_leak_sites_fail_with_23_and_every_output_names_them)
{
    struct chk c;
    char *cmd[] = { (char *)h_path("progs/check_leak"), NULL };
    check_run(&c, NONE, cmd);
    cr_assert(eq(int, c.run.status, 23), "status %d\n%s%s", c.run.status, c.run.out, c.run.err);
    struct site s[4];
    cr_assert(eq(sz, prog_sites(c.run.out, s, 4), 2), "%s", c.run.out);
    cr_expect(eq(str, (char *)jget(&c, "verdict"), "fail"));
    cr_expect(eq(u64, JNUM(&c, "exit_status"), 23));
    cr_expect(eq(str, (char *)jget(&c, "processes.0.failures.0.kind"), "leaks"));
    cr_expect(eq(ptr, (void *)jget(&c, "processes.0.leaks.2.bytes"), NULL), "two sites only");
    uint64_t pid = JNUM(&c, "processes.0.pid");
    char want[512];
    for (int i = 0; i < 2; i++) {
        int k = jsite(&c, 0, s[i].fn);
        cr_assert(ge(int, k, 0), "no lost site in %s:\n%s", s[i].fn, c.flat);
        cr_expect(eq(u64, JNUM(&c, "processes.0.leaks.%d.bytes", k), s[i].bytes), "%s", s[i].fn);
        cr_expect(eq(u64, JNUM(&c, "processes.0.leaks.%d.blocks", k), s[i].blocks), "%s", s[i].fn);
        cr_expect(eq(u64, JNUM(&c, "processes.0.leaks.%d.direct_bytes", k), s[i].dbytes));
        cr_expect(eq(u64, JNUM(&c, "processes.0.leaks.%d.direct_blocks", k), s[i].dblocks));
        cr_expect(eq(u64, JNUM(&c, "processes.0.leaks.%d.stack.0.line", k), (uint64_t)s[i].line));
        cr_expect(has(jget(&c, "processes.0.leaks.%d.stack.0.file", k), "check_leak.c"));
        cr_expect(eq(str, (char *)jget(&c, "processes.0.leaks.%d.stack.1.function", k), "main"));
        /* text: the finding names the process; the frame its function and file:line */
        snprintf(want, sizeof want, "in check_leak (pid %" PRIu64 ", parent ", pid);
        cr_expect(has(c.run.out, want), "%s\nin:\n%s", want, c.run.out);
        snprintf(want, sizeof want, "%s  tests/progs/check_leak.c:%d\n", s[i].fn, s[i].line);
        cr_expect(has(c.run.out, want), "%s\nin:\n%s", want, c.run.out);
        /* JUnit: the failure carries the same stack */
        snprintf(want, sizeof want, "%s  tests/progs/check_leak.c:%d /", s[i].fn, s[i].line);
        cr_expect(has(c.junit, want), "%s\nin:\n%s", want, c.junit);
    }
    snprintf(want, sizeof want, "\ncase check_leak (pid %" PRIu64 ")|fail|leaks|", pid);
    cr_expect(has(c.junit, want), "%s\nin:\n%s", want, c.junit);
    cr_expect(has(c.junit, "\nsuite 1 1 1 1\n"), "%s", c.junit);
    cr_expect(has(c.run.out, "\nmemtrace check: FAIL: leaks in 1 process"), "%s", c.run.out);
    chk_free(&c);
}

Test(check, reachable_blocks_pass_and_are_reported_apart)
{
    struct chk c;
    char *cmd[] = { (char *)h_path("progs/check_reachable"), NULL };
    check_run(&c, NONE, cmd);
    cr_assert(eq(int, c.run.status, 0), "status %d\n%s%s", c.run.status, c.run.out, c.run.err);
    uint64_t bytes = 0, blocks = 0;
    const char *p = strstr(c.run.out, "reachable ");
    cr_assert(p && sscanf(p, "reachable %" SCNu64 " %" SCNu64, &bytes, &blocks) == 2);
    cr_expect(eq(u64, JNUM(&c, "processes.0.reachable.bytes"), bytes));
    cr_expect(eq(u64, JNUM(&c, "processes.0.reachable.blocks"), blocks));
    cr_expect(eq(u64, JNUM(&c, "processes.0.lost.blocks"), 0));
    cr_expect(has(c.run.out, "still pointed to at exit (not leaks"), "%s", c.run.out);
    chk_free(&c);

    char *opts[] = { "--fail-on-reachable", NULL };
    check_run(&c, opts, cmd);
    cr_expect(eq(int, c.run.status, 23), "--fail-on-reachable: status %d", c.run.status);
    cr_expect(has(c.run.out, "reachable #1 in check_reachable"), "%s", c.run.out);
    chk_free(&c);
}

Test(check, forked_and_execd_children_are_each_checked_and_named)
{
    struct chk c;
    char *cmd[] = { (char *)h_path("progs/check_fork"), NULL };
    check_run(&c, NONE, cmd);
    cr_assert(eq(int, c.run.status, 23), "status %d\n%s%s", c.run.status, c.run.out, c.run.err);
    unsigned parent, c1, c2;
    const char *p = strstr(c.run.out, "pid ");
    cr_assert(p && sscanf(p, "pid %u %u %u", &parent, &c1, &c2) == 3, "%s", c.run.out);
    cr_expect(eq(u64, JNUM(&c, "totals.processes"), 4)); /* parent, child 1, child 2 twice */
    cr_expect(eq(u64, JNUM(&c, "totals.failed_processes"), 2));
    int ip = jproc(&c, parent, "start"), i1 = jproc(&c, c1, "fork");
    int i2 = jproc(&c, c2, "fork"), i3 = jproc(&c, c2, "exec");
    cr_assert(ip >= 0 && i1 >= 0 && i2 >= 0 && i3 >= 0, "%s", c.flat);
    cr_expect(eq(str, (char *)jget(&c, "processes.%d.verdict", ip), "pass"));
    cr_expect(eq(str, (char *)jget(&c, "processes.%d.verdict", i1), "fail"));
    cr_expect(eq(u64, JNUM(&c, "processes.%d.parent_pid", i1), parent));
    cr_expect(eq(u64, JNUM(&c, "processes.%d.lost.blocks", i1), 2));
    cr_expect(eq(u64, JNUM(&c, "processes.%d.lost.bytes", i1), 2 * 640));
    cr_expect(
        eq(str, (char *)jget(&c, "processes.%d.leaks.0.stack.0.function", i1), "child_leaks"));
    /* the image before exec leaks nothing (it is gone whole); the exec'd check_leak does */
    cr_expect(eq(str, (char *)jget(&c, "processes.%d.verdict", i2), "pass"));
    cr_expect(eq(str, (char *)jget(&c, "processes.%d.leaks_checked", i2), "false"));
    cr_expect(eq(str, (char *)jget(&c, "processes.%d.verdict", i3), "fail"));
    cr_expect(eq(str, (char *)jget(&c, "processes.%d.name", i3), "check_leak"));
    cr_expect(ge(int, jsite(&c, i3, "leak_buffers"), 0));
    cr_expect(ge(int, jsite(&c, i3, "leak_list"), 0));
    char want[256];
    snprintf(want, sizeof want, "in check_fork (pid %u, parent %u, forked): 640 B lost", c1,
             parent);
    cr_expect(has(c.run.out, want), "%s\nin:\n%s", want, c.run.out);
    snprintf(want, sizeof want, "\ncase check_fork (pid %u)|fail|leaks|", c1);
    cr_expect(has(c.junit, want), "%s\nin:\n%s", want, c.junit);
    snprintf(want, sizeof want, "\ncase check_leak (pid %u, exec)|fail|leaks|", c2);
    cr_expect(has(c.junit, want), "%s\nin:\n%s", want, c.junit);
    snprintf(want, sizeof want, "\ncase check_fork (pid %u)|pass\n", parent);
    cr_expect(has(c.junit, want), "%s\nin:\n%s", want, c.junit);
    cr_expect(has(c.junit, "\nsuite 4 2 4 2\n"), "%s", c.junit);
    chk_free(&c);
}

Test(check, cxx_object_lost_with_new_is_direct_and_its_buffer_indirect)
{
    struct chk c;
    char *cmd[] = { (char *)h_path("progs/check_cxx"), NULL };
    check_run(&c, NONE, cmd);
    cr_assert(eq(int, c.run.status, 23), "status %d\n%s%s", c.run.status, c.run.out, c.run.err);
    struct site s[4];
    cr_assert(eq(sz, prog_sites(c.run.out, s, 4), 2), "%s", c.run.out);
    for (int i = 0; i < 2; i++) {
        int k = -1;
        for (int j = 0; jget(&c, "processes.0.leaks.%d.bytes", j); j++)
            if (k < 0 && has(jget(&c, "processes.0.leaks.%d.stack.0.function", j), s[i].fn) &&
                JNUM(&c, "processes.0.leaks.%d.stack.0.line", j) == (uint64_t)s[i].line)
                k = j;
        cr_assert(ge(int, k, 0), "no lost site at %s:%d\n%s", s[i].fn, s[i].line, c.flat);
        cr_expect(eq(u64, JNUM(&c, "processes.0.leaks.%d.bytes", k), s[i].bytes), "%s", s[i].fn);
        cr_expect(eq(u64, JNUM(&c, "processes.0.leaks.%d.direct_blocks", k), s[i].dblocks), "%s",
                  s[i].fn);
        cr_expect(eq(u64, JNUM(&c, "processes.0.leaks.%d.indirect_blocks", k),
                     s[i].blocks - s[i].dblocks),
                  "%s", s[i].fn);
    }
    cr_expect(has(c.run.out, "Widget::Widget(unsigned long)"), "demangled C++ names:\n%s",
              c.run.out);
    chk_free(&c);
}

Test(check, process_killed_by_the_heap_cap_fails_the_gate_not_134)
{
    struct chk c;
    char *opts[] = { "--heap-limit", "1M", NULL };
    char *cmd[] = { (char *)h_path("progs/check_cap"), NULL };
    check_run(&c, opts, cmd);
    cr_expect(has(c.run.err, "Reached heap limit"), "%s", c.run.err);
    cr_expect(eq(int, c.run.status, 23), "status %d\n%s%s", c.run.status, c.run.out, c.run.err);
    cr_expect(eq(u64, JNUM(&c, "command_status"), 134));
    cr_expect(eq(str, (char *)jget(&c, "processes.0.failures.0.kind"), "heap_cap"), "%s", c.flat);
    cr_expect(eq(str, (char *)jget(&c, "processes.0.heap_cap.stack.0.function"), "grow"));
    cr_expect(eq(u64, JNUM(&c, "processes.0.heap_cap.limit"), 1024 * 1024));
    cr_expect(has(c.run.out, "killed by the heap cap"), "%s", c.run.out);
    cr_expect(has(c.junit, "|fail|heap_cap|"), "%s", c.junit);
    chk_free(&c);
}

Test(check, command_failure_status_is_passed_through)
{
    struct chk c;
    char *cmd[] = { (char *)h_path("progs/check_exit"), NULL };
    check_run(&c, NONE, cmd);
    cr_expect(eq(int, c.run.status, 7), "status %d\n%s%s", c.run.status, c.run.out, c.run.err);
    cr_expect(eq(u64, JNUM(&c, "command_status"), 7));
    cr_expect(eq(u64, JNUM(&c, "exit_status"), 7));
    cr_expect(eq(str, (char *)jget(&c, "verdict"), "fail"), "the leak is still reported");
    chk_free(&c);
    char *cmd0[] = { (char *)h_path("progs/check_exit"), "0", NULL };
    check_run(&c, NONE, cmd0);
    cr_expect(eq(int, c.run.status, 23), "exit 0 and a leak: status %d", c.run.status);
    chk_free(&c);
}

Test(check, command_killed_by_a_signal_gives_128_plus_signal)
{
    struct chk c;
    char *cmd[] = { "/bin/sh", "-c", "kill -TERM $$", NULL };
    check_run(&c, NONE, cmd);
    cr_expect(eq(int, c.run.status, 128 + 15), "status %d\n%s", c.run.status, c.run.err);
    chk_free(&c);
}

/* ---- no false alarms ------------------------------------------------------------------------- */

struct clean_case {
    char argv[3][32]; /* arrays, not pointers: parameters are copied into the test's process */
    int build;        /* argv[0] is relative to the build directory */
};

static struct clean_case clean_cases[] = {
    { { "/bin/true" }, 0 },
    { { "/usr/bin/python3", "-c", "pass" }, 0 },
    { { "progs/clean_throw" }, 1 },
    { { "progs/clean_threads", "8" }, 1 },
    { { "memtrace-report", "--help" }, 1 },
};

ParameterizedTestParameters(check, clean_programs_pass)
{
    return cr_make_param_array(struct clean_case, clean_cases,
                               sizeof clean_cases / sizeof clean_cases[0]);
}

ParameterizedTest(struct clean_case *cc, check, clean_programs_pass)
{
    if (!cc->build && access(cc->argv[0], X_OK) != 0)
        cr_skip_test("%s is not installed", cc->argv[0]);
    char *cmd[4] = { NULL };
    for (int i = 0; i < 3 && cc->argv[i][0]; i++)
        cmd[i] = cc->argv[i];
    if (cc->build)
        cmd[0] = (char *)h_path(cc->argv[0]);
    struct chk c;
    check_run(&c, NONE, cmd);
    cr_expect(eq(int, c.run.status, 0), "%s: status %d\n%s%s", cmd[0], c.run.status, c.run.out,
              c.run.err);
    cr_expect(eq(u64, JNUM(&c, "totals.lost_blocks"), 0), "%s:\n%s", cmd[0], c.run.out);
    chk_free(&c);
}

/* ---- limits and suppressions ----------------------------------------------------------------- */

Test(check, leak_limits_are_per_process_and_inclusive)
{
    struct chk c;
    char *cmd[] = { (char *)h_path("progs/check_leak"), NULL };
    check_run(&c, NONE, cmd);
    struct site s[4];
    cr_assert(eq(sz, prog_sites(c.run.out, s, 4), 2));
    uint64_t bytes = s[0].bytes + s[1].bytes, blocks = s[0].blocks + s[1].blocks;
    chk_free(&c);
    char val[32], opt[64];
    const char *names[2] = { "--max-leak-bytes", "--max-leak-blocks" };
    for (int k = 0; k < 2; k++) {
        for (int over = 0; over < 2; over++) {
            snprintf(val, sizeof val, "%" PRIu64, (k ? blocks : bytes) - (uint64_t)over);
            snprintf(opt, sizeof opt, "%s", names[k]);
            char *opts[] = { opt, val, NULL };
            check_run(&c, opts, cmd);
            cr_expect(eq(int, c.run.status, over ? 23 : 0), "%s %s: status %d", opt, val,
                      c.run.status);
            chk_free(&c);
        }
    }
}

Test(check, suppressions_file_hides_a_site_and_says_how_often_it_matched)
{
    char supp[4300];
    snprintf(supp, sizeof supp, "%s/lsan.supp", h_tmpdir());
    const char text[] = "# ours\nleak:leak_buffers\nleak:never_called_anywhere\n";
    cr_assert(eq(int, h_write_file(supp, text, strlen(text)), 0));
    struct chk c;
    char *opts[] = { "--suppressions", supp, NULL };
    char *cmd[] = { (char *)h_path("progs/check_leak"), NULL };
    check_run(&c, opts, cmd);
    struct site s[4];
    cr_assert(eq(sz, prog_sites(c.run.out, s, 4), 2));
    const struct site *buf = strcmp(s[0].fn, "leak_buffers") == 0 ? &s[0] : &s[1];
    cr_expect(eq(int, c.run.status, 23), "leak_list still fails");
    cr_expect(eq(int, jsite(&c, 0, "leak_buffers"), -1));
    cr_expect(ge(int, jsite(&c, 0, "leak_list"), 0));
    int r = -1;
    for (int i = 0; jget(&c, "suppressions.%d.builtin", i); i++)
        if (jget(&c, "suppressions.%d.pattern", i) &&
            strcmp(jget(&c, "suppressions.%d.pattern", i), "leak_buffers") == 0)
            r = i;
    cr_assert(ge(int, r, 0), "%s", c.flat);
    cr_expect(eq(u64, JNUM(&c, "suppressions.%d.matched", r), 1));
    cr_expect(eq(u64, JNUM(&c, "suppressions.%d.blocks", r), buf->blocks));
    cr_expect(eq(u64, JNUM(&c, "suppressions.%d.bytes", r), buf->bytes));
    char want[4400];
    snprintf(want, sizeof want, "leak:leak_buffers (%s:2)", supp);
    cr_expect(has(c.run.out, want), "%s\nin:\n%s", want, c.run.out);
    cr_expect(has(c.run.out, "leak:never_called_anywhere"), "unmatched rules are listed too");
    chk_free(&c);
}

Test(check, heap_peak_above_max_heap_fails)
{
    struct chk c;
    char *opts[] = { "--max-heap", "1K", NULL };
    char *cmd[] = { (char *)h_path("progs/check_clean"), "2", NULL };
    check_run(&c, opts, cmd);
    cr_expect(eq(int, c.run.status, 23), "status %d\n%s", c.run.status, c.run.out);
    cr_expect(eq(str, (char *)jget(&c, "processes.0.failures.0.kind"), "max_heap"), "%s", c.flat);
    cr_expect(gt(u64, JNUM(&c, "processes.0.peak_heap_used"), 1024));
    chk_free(&c);
}

/* ---- traces: kept, removed, unreadable, incomplete ------------------------------------------- */

static int trace_count(const char *dir)
{
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "exit $(ls %s/*.mtrace 2>/dev/null | wc -l)", dir);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(check, traces_are_kept_unless_removed_on_pass)
{
    struct chk c;
    char *rm[] = { "--rm-on-pass", NULL };
    char *clean[] = { (char *)h_path("progs/check_clean"), "1", NULL };
    check_run(&c, rm, clean);
    cr_expect(eq(int, c.run.status, 0));
    cr_expect(eq(int, access(c.dir, F_OK), -1), "%s removed on pass", c.dir);
    cr_expect(has(c.run.err, "traces removed"), "%s", c.run.err);
    chk_free(&c);
    char *leak[] = { (char *)h_path("progs/check_leak"), NULL };
    check_run(&c, rm, leak);
    cr_expect(eq(int, c.run.status, 23));
    cr_expect(eq(int, trace_count(c.dir), 1), "kept on failure");
    cr_expect(has(c.run.err, "traces kept in"), "%s", c.run.err);
    chk_free(&c);
}

static int report_check(const char *a, const char *b, const char *c2, struct h_run *r)
{
    char *argv[] = {
        (char *)h_path("memtrace-report"), "check", (char *)a, (char *)b, (char *)c2, NULL
    };
    *r = h_run(argv, NULL, 0, NULL, 60);
    cr_assert(r->exited);
    return r->status;
}

Test(check, usage_unreadable_and_incomplete_traces_have_their_own_statuses)
{
    struct h_run r;
    cr_expect(eq(int, report_check("--no-such-option", "x", NULL, &r), 1), "%s", r.err);
    h_run_free(&r);
    cr_expect(eq(int, report_check("/nonexistent.mtrace", NULL, NULL, &r), 3), "%s", r.err);
    cr_expect(has(r.err, "/nonexistent.mtrace"), "%s", r.err);
    h_run_free(&r);
    cr_expect(eq(int, report_check(h_tmpdir(), NULL, NULL, &r), 3), "no trace: %s", r.err);
    h_run_free(&r);

    /* a complete trace, then the same cut in the middle */
    char *argv[] = { (char *)h_path("progs/check_clean"), "1", NULL };
    struct h_run run = h_run(argv, NULL, 1, "t.%p.mtrace", 60);
    cr_assert(run.exited && run.status == 0);
    h_run_free(&run);
    char *paths[2];
    cr_assert(eq(sz, h_traces("t.", paths, 2), 1));
    cr_expect(eq(int, report_check(paths[0], NULL, NULL, &r), 0), "%s", r.out);
    cr_expect(has(r.out, "no exit leak scan in the trace"), "%s", r.out);
    h_run_free(&r);
    size_t len;
    uint8_t *data = h_must_read(paths[0], &len);
    char cut[4300];
    snprintf(cut, sizeof cut, "%s/cut.mtrace", h_tmpdir());
    cr_assert(eq(int, h_write_file(cut, data, len / 2), 0));
    free(data);
    cr_expect(eq(int, report_check(cut, NULL, NULL, &r), 23), "%s", r.out);
    cr_expect(has(r.out, "incomplete trace"), "%s", r.out);
    h_run_free(&r);
    cr_expect(eq(int, report_check("--allow-incomplete", cut, NULL, &r), 0), "%s", r.out);
    h_run_free(&r);
    h_free_paths(paths, 1);
}

/* ---- SARIF ----------------------------------------------------------------------------------- */

static const char sarif_py[] =
    "import json, sys\n"
    "d = json.load(open(sys.argv[1]))\n"
    "assert d['version'] == '2.1.0'\n"
    "for r in d['runs'][0]['results']:\n"
    "    l = r['locations'][0]['physicalLocation']\n"
    "    print(r['ruleId'], l['artifactLocation']['uri'], l['region']['startLine'],\n"
    "          r['properties']['bytes'])\n";

Test(check, sarif_has_one_result_per_leak_site_at_its_source_line)
{
    if (!h_have_tool("python3"))
        cr_skip_test("python3 is not installed");
    char sarif[4300], want[256];
    snprintf(sarif, sizeof sarif, "%s/check.sarif", h_tmpdir());
    struct chk c;
    char *opts[] = { "--sarif", sarif, "--source-root", (char *)h_path(".."), NULL };
    char *cmd[] = { (char *)h_path("progs/check_leak"), NULL };
    check_run(&c, opts, cmd);
    struct site s[4];
    cr_assert(eq(sz, prog_sites(c.run.out, s, 4), 2));
    char *lines = h_python(sarif_py, "sarif", sarif);
    for (int i = 0; i < 2; i++) {
        snprintf(want, sizeof want, "\nmemtrace/leak tests/progs/check_leak.c %d %" PRIu64 "\n",
                 s[i].line, s[i].bytes);
        cr_expect(has(lines, want), "%s\nin:\n%s", want, lines);
    }
    int n = 0;
    for (const char *p = lines; (p = strstr(p, "\nmemtrace/")) != NULL; p++)
        n++;
    cr_expect(eq(int, n, 2), "%s", lines);
    free(lines);
    chk_free(&c);
}

/* ---- against memcheck ------------------------------------------------------------------------ */

Test(check, lost_leaks_equal_memcheck_definitely_and_indirectly_lost)
{
    if (!h_have_tool("valgrind"))
        cr_skip_test("valgrind is not installed: memcheck comparison skipped");
    struct chk c;
    char *cmd[] = { (char *)h_path("progs/check_leak"), NULL };
    check_run(&c, NONE, cmd);
    char xml[4300], vcmd[9000];
    snprintf(xml, sizeof xml, "%s/vg.xml", h_tmpdir());
    snprintf(vcmd, sizeof vcmd,
             "valgrind -q --leak-check=full --show-leak-kinds=definite,indirect --xml=yes "
             "--xml-file=%s %s > /dev/null 2>&1",
             xml, h_path("progs/check_leak"));
    cr_assert(eq(int, system(vcmd), 0), "%s", vcmd);
    char args[4400];
    snprintf(args, sizeof args, "%s check_leak.c", xml);
    char *vg = h_python(vg_py, "vg", args);
    /* ours, in memcheck's terms: one record per site and kind with bytes and blocks */
    size_t n = 0, nv = 0;
    char ours[4096] = "\n", line[256];
    for (int k = 0; jget(&c, "processes.0.leaks.%d.bytes", k); k++) {
        const char *fn = jget(&c, "processes.0.leaks.%d.stack.0.function", k);
        uint64_t ln = JNUM(&c, "processes.0.leaks.%d.stack.0.line", k);
        uint64_t db = JNUM(&c, "processes.0.leaks.%d.direct_bytes", k);
        uint64_t dn = JNUM(&c, "processes.0.leaks.%d.direct_blocks", k);
        uint64_t ib = JNUM(&c, "processes.0.leaks.%d.indirect_bytes", k);
        uint64_t in = JNUM(&c, "processes.0.leaks.%d.indirect_blocks", k);
        if (dn) {
            snprintf(line, sizeof line,
                     "Leak_DefinitelyLost %s %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", fn, ln, db,
                     dn);
            strcat(ours, line);
            cr_expect(has(vg, line), "ours: %smemcheck:%s", line, vg);
            n++;
        }
        if (in) {
            snprintf(line, sizeof line,
                     "Leak_IndirectlyLost %s %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", fn, ln, ib,
                     in);
            strcat(ours, line);
            cr_expect(has(vg, line), "ours: %smemcheck:%s", line, vg);
            n++;
        }
    }
    for (const char *p = vg; (p = strstr(p, "\nLeak_")) != NULL; p++)
        nv++;
    cr_expect(eq(sz, n, nv), "ours:%smemcheck:%s", ours, vg);
    cr_expect(gt(sz, n, 0));
    free(vg);
    chk_free(&c);
}

/* ---- exit scan edge cases ---------------------------------------------------------------- */

/* The block allocated last before exit, with no scrubbing by the program: the shim's exit paths
 * clear the stale stack and keep no copy of the last address where the scan looks, so it is
 * lost (memcheck: definitely lost). */
Test(check, last_block_before_exit_is_lost)
{
    struct chk c;
    char *cmd[] = { (char *)h_path("progs/check_leak"), "last", NULL };
    check_run(&c, NONE, cmd);
    cr_expect(eq(u64, JNUM(&c, "processes.0.reachable.blocks"), 0), "%s", c.run.out);
    chk_free(&c);
}
