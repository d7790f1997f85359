/* memtrace-report on real programs under the real shim: tests/progs/report_known (known counts,
 * peak and leaks, printed by the program itself) must come out exact in the text and JSON
 * output, with the leak sites naming the right functions and lines; clean programs (threads, a
 * C++ program that throws) must report no leaks; and where heaptrack and valgrind are installed
 * the peak heap and the definitely-lost blocks must agree with theirs.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(report, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 120);

struct report {
    struct h_run text, json;
    char *flat; /* flattened JSON, "\npath=value\n" lines (leading newline added) */
};

/* The program's own "key value..." lines: the first number after `key`. */
static uint64_t prog_num(const char *out, const char *key, int which)
{
    char pat[64];
    snprintf(pat, sizeof pat, "%s ", key);
    const char *p = out;
    while ((p = strstr(p, pat)) != NULL && p != out && p[-1] != '\n')
        p++;
    cr_assert(ne(ptr, (void *)p, NULL), "the program did not print %s:\n%s", key, out);
    p += strlen(pat);
    uint64_t v[3] = { 0 };
    sscanf(p, "%" SCNu64 " %" SCNu64 " %" SCNu64, &v[0], &v[1], &v[2]);
    return v[which];
}

/* Value of `path` in the flattened JSON, or NULL. */
static const char *jget(const struct report *r, const char *path, char *buf, size_t cap)
{
    return h_json_get(r->flat, path, buf, cap);
}

static uint64_t jnum(const struct report *r, const char *path)
{
    char buf[128];
    const char *v = jget(r, path, buf, sizeof buf);
    cr_assert(ne(ptr, (void *)v, NULL), "no %s in the JSON", path);
    return strtoull(v, NULL, 10);
}

/* Run `prog` (build/progs/NAME) under the shim, then memtrace-report (text and --json) on its
 * one trace. `extra` is NULL or an environment entry for the traced run. */
static struct h_run run_traced(const char *prog, char *extra, struct report *r)
{
    char *argv[] = { (char *)h_path(prog), NULL };
    char *env[] = { extra, NULL };
    struct h_run run = h_run(argv, extra ? env : NULL, 1, "t.%p.mtrace", 60);
    cr_assert(run.exited && run.status == 0, "%s failed (%d): %s", prog, run.status, run.err);
    char *paths[4];
    cr_assert(eq(sz, h_traces("t.", paths, 4), 1));
    char *rargv[] = { (char *)h_path("memtrace-report"), paths[0], NULL };
    r->text = h_run(rargv, NULL, 0, NULL, 60);
    cr_assert(r->text.exited && r->text.status == 0, "report: %s", r->text.err);
    char *jargv[] = { (char *)h_path("memtrace-report"), "--json", paths[0], NULL };
    r->json = h_run(jargv, NULL, 0, NULL, 60);
    cr_assert(r->json.exited && r->json.status == 0, "report --json: %s", r->json.err);
    h_free_paths(paths, 1);

    if (!h_have_tool("python3"))
        cr_skip_test("python3 is not installed: cannot parse the JSON");
    char jpath[4200];
    snprintf(jpath, sizeof jpath, "%s/report.json", h_tmpdir());
    cr_assert(eq(int, h_write_file(jpath, r->json.out, r->json.out_len), 0));
    r->flat = h_json_flat(jpath);
    for (size_t n = h_traces("t.", paths, 4), i = 0; i < n; i++)
        unlink(paths[i]);
    return run;
}

static void report_free(struct report *r)
{
    h_run_free(&r->text);
    h_run_free(&r->json);
    free(r->flat);
}

static const char *const leak_keys[3] = { "leak_large", "leak_medium", "leak_small" };

Test(report, known_program_every_number_exact_in_json)
{
    struct report r;
    struct h_run run = run_traced("progs/report_known", NULL, &r);
    const char *out = run.out;
    cr_expect(eq(u64, jnum(&r, "events.malloc"), prog_num(out, "malloc", 0)));
    cr_expect(eq(u64, jnum(&r, "events.calloc"), prog_num(out, "calloc", 0)));
    cr_expect(eq(u64, jnum(&r, "events.realloc"), prog_num(out, "realloc", 0)));
    cr_expect(eq(u64, jnum(&r, "events.free"), prog_num(out, "free", 0)));
    cr_expect(eq(u64, jnum(&r, "events.dropped"), 0));
    cr_expect(eq(u64, jnum(&r, "peak.heapUsed"), prog_num(out, "peak_used", 0)));
    cr_expect(eq(u64, jnum(&r, "peak.heap_requested"), prog_num(out, "peak_requested", 0)));
    cr_expect(eq(u64, jnum(&r, "exit.heapUsed"), prog_num(out, "exit_used", 0)));
    cr_expect(eq(u64, jnum(&r, "exit.external"), 0));
    cr_expect(eq(u64, jnum(&r, "unknown_frees"), 0));

    uint64_t bytes = 0, blocks = 0;
    for (int i = 0; i < 3; i++) {
        bytes += prog_num(out, leak_keys[i], 0);
        blocks += prog_num(out, leak_keys[i], 1);
    }
    cr_expect(eq(u64, jnum(&r, "leaks.bytes"), bytes));
    cr_expect(eq(u64, jnum(&r, "leaks.blocks"), blocks));
    char key[128], buf[4096];
    for (int i = 0; i < 3; i++) { /* largest first: large (8000), medium (3000), small (1000) */
        snprintf(key, sizeof key, "leaks.sites.%d.bytes", i);
        cr_expect(eq(u64, jnum(&r, key), prog_num(out, leak_keys[i], 0)), "%s", key);
        snprintf(key, sizeof key, "leaks.sites.%d.blocks", i);
        cr_expect(eq(u64, jnum(&r, key), prog_num(out, leak_keys[i], 1)), "%s", key);
        snprintf(key, sizeof key, "leaks.sites.%d.stack.0.function", i);
        cr_expect(eq(str, (char *)jget(&r, key, buf, sizeof buf), (char *)leak_keys[i]), "%s", key);
        snprintf(key, sizeof key, "leaks.sites.%d.stack.0.line", i);
        cr_expect(eq(u64, jnum(&r, key), prog_num(out, leak_keys[i], 2)), "%s", key);
        snprintf(key, sizeof key, "leaks.sites.%d.stack.0.file", i);
        const char *file = jget(&r, key, buf, sizeof buf);
        cr_expect(file && strstr(file, "tests/progs/report_known.c"), "%s: %s", key, file);
        snprintf(key, sizeof key, "leaks.sites.%d.stack.1.function", i);
        cr_expect(eq(str, (char *)jget(&r, key, buf, sizeof buf), "main"), "%s", key);
    }
    cr_expect(eq(ptr, (void *)jget(&r, "leaks.sites.3.bytes", buf, sizeof buf), NULL),
              "three leak sites only");
    /* the peak's largest site is peak_phase, holding 20 x 10000 at the peak */
    cr_expect(eq(str,
                 (char *)jget(&r, "top_sites.by_peak_bytes.0.stack.0.function", buf, sizeof buf),
                 "peak_phase"));
    cr_expect(eq(u64, jnum(&r, "top_sites.by_peak_bytes.0.at_heap_peak_bytes"), 200000));
    cr_expect(eq(u64, jnum(&r, "top_sites.by_calls.0.calls"), 100));
    cr_expect(eq(str, (char *)jget(&r, "complete", buf, sizeof buf), "true"));
    h_run_free(&run);
    report_free(&r);
}

Test(report, known_program_text_names_sites_lines_and_sizes)
{
    struct report r;
    struct h_run run = run_traced("progs/report_known", NULL, &r);
    const char *out = run.out, *text = r.text.out;
    char want[256];
    snprintf(want, sizeof want, "\n  %-16s %12" PRIu64 "\n", "malloc", prog_num(out, "malloc", 0));
    cr_expect(ne(ptr, strstr(text, want), NULL), "%s\nin:\n%s", want, text);
    snprintf(want, sizeof want, "\n  %-16s %12" PRIu64 "\n", "free", prog_num(out, "free", 0));
    cr_expect(ne(ptr, strstr(text, want), NULL), "%s\nin:\n%s", want, text);
    /* 12000 bytes = 11.72 KB in 14 blocks */
    cr_expect(ne(ptr, strstr(text, "\nleaks     11.72 KB in 14 blocks from 3 sites"), NULL), "%s",
              text);
    static const char *const sizes[3] = { "7.81 KB in 1 block\n", "2.93 KB in 3 blocks\n",
                                          "1000 B in 10 blocks\n" };
    const char *at = strstr(text, "\nleaks ");
    for (int i = 0; at && i < 3; i++) {
        snprintf(want, sizeof want, "  #%d  %s", i + 1, sizes[i]);
        at = strstr(at, want);
        cr_expect(ne(ptr, (void *)at, NULL), "%s in:\n%s", want, text);
        if (at == NULL)
            break;
        snprintf(want, sizeof want, "%s  report_known.c:%" PRIu64, leak_keys[i],
                 prog_num(out, leak_keys[i], 2));
        const char *next = strchr(at + 1, '\n');
        cr_expect(next && strncmp(next + 1 + 6, want, strlen(want)) == 0, "%s after #%d in:\n%s",
                  want, i + 1, text);
    }
    cr_expect(ne(ptr, strstr(text, "dropped   0\n"), NULL), "%s", text);
    cr_expect(ne(ptr, strstr(text, "status    complete: the process exited with status 0"), NULL));
    h_run_free(&run);
    report_free(&r);
}

static void expect_no_leaks(const char *prog)
{
    struct report r;
    struct h_run run = run_traced(prog, NULL, &r);
    cr_expect(eq(u64, jnum(&r, "leaks.blocks"), 0), "%s", r.text.out);
    cr_expect(eq(u64, jnum(&r, "leaks.bytes"), 0));
    cr_expect(ne(ptr, strstr(r.text.out, "\nleaks     none"), NULL), "%s", r.text.out);
    cr_expect(gt(u64, jnum(&r, "suppressed.blocks"), 0),
              "glibc keeps blocks to exit; the built-in rules must be what hid them");
    h_run_free(&run);
    report_free(&r);
}

Test(report, clean_program_with_threads_has_no_leaks)
{
    expect_no_leaks("progs/clean_threads");
}

Test(report, clean_cxx_program_that_throws_has_no_leaks)
{
    expect_no_leaks("progs/clean_throw");
}

/* heaptrack_print's "peak heap memory consumption: 276.70K" in bytes (K, M, G are powers of
 * 1000 there); *unit gets the value of the last printed digit. */
static double heaptrack_bytes(const char *s, double *unit)
{
    double v = strtod(s, NULL);
    const char *u = s + strspn(s, "0123456789.");
    double m = *u == 'K' ? 1e3 : *u == 'M' ? 1e6 : *u == 'G' ? 1e9 : 1;
    *unit = strchr(s, '.') && strchr(s, '.') < u ? m / 100 : m;
    return v * m;
}

Test(report, peak_heap_agrees_with_heaptrack)
{
    if (!h_have_tool("heaptrack") || !h_have_tool("heaptrack_print"))
        cr_skip_test("heaptrack or heaptrack_print is not installed");
    /* heaptrack's preload library links libstdc++, whose 72704-byte emergency pool is then live
     * from start: preload libstdc++ in our run too, so both see the same process */
    struct report r;
    char preload[4200];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s:libstdc++.so.6", h_path("libmemtrace.so"));
    struct h_run run = run_traced("progs/report_known", preload, &r);
    uint64_t ours = jnum(&r, "peak.heap_requested");

    char cmd[9000];
    snprintf(cmd, sizeof cmd,
             "cd %s && heaptrack -o %s/ht %s >/dev/null 2>&1 && heaptrack_print %s/ht*.zst "
             "2>/dev/null | sed -n 's/^peak heap memory consumption: //p' > %s/peak.txt",
             h_tmpdir(), h_tmpdir(), h_path("progs/report_known"), h_tmpdir(), h_tmpdir());
    cr_assert(eq(int, system(cmd), 0), "%s", cmd);
    /* (the output is not named ht.*: the shell creates it while the glob above may still be
     * expanding, and heaptrack_print given two files prints no peak) */
    snprintf(cmd, sizeof cmd, "%s/peak.txt", h_tmpdir());
    size_t len;
    char *peak = h_read_file(cmd, &len);
    cr_assert(peak && len > 0, "heaptrack_print printed no peak");
    double unit, theirs = heaptrack_bytes(peak, &unit);
    cr_expect(le(dbl, fabs((double)ours - theirs), unit / 2 + 0.5),
              "peak heap: memtrace %" PRIu64 " bytes, heaptrack %s", ours, peak);
    free(peak);
    h_run_free(&run);
    report_free(&r);
}

/* Definitely-lost records of a memcheck XML file: totals and the allocating functions. */
struct vg_lost {
    uint64_t bytes, blocks;
    char funcs[8][64];
    int nfuncs;
};

static void parse_valgrind(const char *xml, struct vg_lost *v)
{
    memset(v, 0, sizeof *v);
    for (const char *p = xml; (p = strstr(p, "<kind>Leak_DefinitelyLost</kind>")) != NULL;) {
        const char *end = strstr(p, "</error>");
        cr_assert(ne(ptr, (void *)end, NULL));
        const char *b = strstr(p, "<leakedbytes>"), *n = strstr(p, "<leakedblocks>");
        v->bytes += strtoull(b + 13, NULL, 10);
        v->blocks += strtoull(n + 14, NULL, 10);
        /* the first frame that is not the allocator itself */
        for (const char *f = p; (f = strstr(f, "<fn>")) != NULL && f < end; f += 4) {
            size_t len = strcspn(f + 4, "<");
            if ((len == 6 && !strncmp(f + 4, "malloc", 6)) ||
                (len == 6 && !strncmp(f + 4, "calloc", 6)) ||
                (len == 7 && !strncmp(f + 4, "realloc", 7)))
                continue;
            if (v->nfuncs < 8)
                snprintf(v->funcs[v->nfuncs++], 64, "%.*s", (int)len, f + 4);
            break;
        }
        p = end;
    }
}

static int has_func(const struct vg_lost *v, const char *f)
{
    for (int i = 0; i < v->nfuncs; i++)
        if (strcmp(v->funcs[i], f) == 0)
            return 1;
    return 0;
}

Test(report, leaks_agree_with_valgrind_definitely_lost)
{
    if (!h_have_tool("valgrind"))
        cr_skip_test("valgrind is not installed");
    struct report r;
    struct h_run run = run_traced("progs/report_known", NULL, &r);
    char cmd[9000], xml[4200];
    snprintf(xml, sizeof xml, "%s/vg.xml", h_tmpdir());
    snprintf(cmd, sizeof cmd,
             "valgrind --leak-check=full --xml=yes --xml-file=%s %s >/dev/null 2>&1", xml,
             h_path("progs/report_known"));
    cr_assert(eq(int, system(cmd), 0), "%s", cmd);
    size_t len;
    char *text = h_read_file(xml, &len);
    cr_assert(ne(ptr, text, NULL));
    struct vg_lost v;
    parse_valgrind(text, &v);
    free(text);
    cr_expect(eq(u64, jnum(&r, "leaks.bytes"), v.bytes));
    cr_expect(eq(u64, jnum(&r, "leaks.blocks"), v.blocks));
    cr_expect(eq(int, v.nfuncs, 3));
    char key[128], buf[256];
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "leaks.sites.%d.stack.0.function", i);
        const char *f = jget(&r, key, buf, sizeof buf);
        cr_expect(f && has_func(&v, f), "%s (%s) is not among valgrind's definitely lost", key, f);
    }
    h_run_free(&run);
    report_free(&r);
}
