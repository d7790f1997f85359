/* Real programs nobody here wrote, under the shim: python3, sqlite3, gcc (driver, cc1, as), git,
 * node and bash. Each is also run without the shim: stdout and exit status must not change. Every
 * process of the run (forked children, exec'd images, interpreter wrappers such as a pyenv shim)
 * writes its own trace, and every one of them must read cleanly to its END record with nothing
 * dropped. A program missing on the machine skips its test with a message.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* h_tmpdir_teardown removes plain files only: the git test leaves repositories behind. */
static void teardown(void)
{
    if (h_tmpdir()[0] != '\0')
        nftw(h_tmpdir(), rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    h_tmpdir_teardown();
}

TestSuite(realprogs, .init = h_tmpdir_setup, .fini = teardown, .timeout = 120);

#define MAX_TRACES 4096

/* Skip the test unless `name` is an executable in PATH. */
static void need(const char *name)
{
    const char *path = getenv("PATH");
    char dir[4096];
    for (const char *p = path ? path : ""; *p;) {
        size_t n = strcspn(p, ":");
        snprintf(dir, sizeof dir, "%.*s/%s", (int)n, p, name);
        if (access(dir, X_OK) == 0)
            return;
        p += n + (p[n] == ':');
    }
    cr_skip_test("%s is not installed (not in PATH): test skipped", name);
}

static const char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

/* Whether an executable's base name is program `exe`: "python3.11" is python3,
 * "x86_64-linux-gnu-gcc-12" is gcc, "x86_64-linux-gnu-as" is as, "cc1" is not "cc1plus". */
static int exe_is(const char *base, const char *exe)
{
    size_t k = strlen(exe);
    for (const char *p = strstr(base, exe); p != NULL; p = strstr(p + 1, exe)) {
        char after = p[k];
        if ((p == base || p[-1] == '-') &&
            (after == '\0' || after == '-' || after == '.' || (after >= '0' && after <= '9')))
            return 1;
    }
    return 0;
}

/* What the traces of one run hold. */
struct run_traces {
    size_t traces;
    uint64_t events, mallocs;
    size_t exe_traces;    /* traces whose executable is the wanted program (exe_is) */
    uint64_t exe_mallocs; /* mallocs in those */
};

/* Decode every trace named <prefix>* and check it: clean end, END record, nothing dropped.
 * Counts the traces of processes running program `exe` and fails if there is none. */
static struct run_traces check_traces(const char *prefix, const char *exe)
{
    struct run_traces s = { 0 };
    char **paths = calloc(MAX_TRACES, sizeof *paths);
    size_t n = h_traces(prefix, paths, MAX_TRACES);
    cr_assert(n > 0 && n <= MAX_TRACES, "%zu traces named %s*", n, prefix);
    for (size_t i = 0; i < n; i++) {
        struct h_trace t;
        h_load(paths[i], &t);
        cr_assert_eq(t.rc, 0, "%s (%s): %s", paths[i], t.exe, t.error);
        cr_assert(t.has_end, "%s (%s, pid %u): no END record", paths[i], t.exe,
                  t.status.header.pid);
        cr_assert_eq(t.dropped, 0, "%s (%s): %" PRIu64 " calls not recorded", paths[i], t.exe,
                     t.dropped);
        cr_assert(t.has_process, "%s: no PROCESS record", paths[i]);
        s.events += t.nevents;
        s.mallocs += t.counts[MTF_EV_MALLOC];
        if (exe_is(base_name(t.exe), exe)) {
            s.exe_traces++;
            s.exe_mallocs += t.counts[MTF_EV_MALLOC];
        }
        h_trace_free(&t);
    }
    s.traces = n;
    h_free_paths(paths, n);
    free(paths);
    cr_log_info("%s*: %zu traces, %" PRIu64 " events, %" PRIu64 " mallocs; %zu traces of %s "
                "with %" PRIu64 " mallocs",
                prefix, s.traces, s.events, s.mallocs, s.exe_traces, exe, s.exe_mallocs);
    cr_assert(s.exe_traces > 0, "no trace of %s among the %zu traces", exe, n);
    cr_assert(s.exe_mallocs > 0, "the traces of %s hold no malloc", exe);
    return s;
}

/* Run argv without and with the shim (traces named <prefix>.%p.mtrace); stdout and exit status
 * must be the same. Returns the checked traces. */
static struct run_traces compare_runs(char *const argv[], char *const env[], const char *prefix,
                                      const char *exe)
{
    struct h_run plain = h_run(argv, env, 0, NULL, 100);
    char pattern[128];
    snprintf(pattern, sizeof pattern, "%s.%%p.mtrace", prefix);
    struct h_run shim = h_run(argv, env, 1, pattern, 100);
    cr_assert(plain.exited, "%s without the shim: killed by signal %d", argv[0], plain.status);
    cr_assert(shim.exited, "%s under the shim: killed by signal %d; stderr: %s", argv[0],
              shim.status, shim.err);
    cr_assert_eq(shim.status, plain.status, "%s: exit status %d under the shim, %d without",
                 argv[0], shim.status, plain.status);
    cr_assert_str_eq(shim.out, plain.out, "%s: stdout differs under the shim", argv[0]);
    cr_assert(strstr(shim.err, "memtrace:") == NULL, "%s: the shim complained: %s", argv[0],
              shim.err);
    h_run_free(&plain);
    h_run_free(&shim);
    char prefix_dot[128];
    snprintf(prefix_dot, sizeof prefix_dot, "%s.", prefix);
    return check_traces(prefix_dot, exe);
}

static char *python_script[] = {
    "python3", "-c",
    "import json\n"
    "d = {str(i): [i, i * i, str(i)] for i in range(20000)}\n"
    "s = json.dumps(d, sort_keys=True)\n"
    "back = json.loads(s)\n"
    "top = sorted(back.items(), key=lambda kv: -kv[1][1])[:3]\n"
    "words = ' '.join(v[2] for v in back.values()).split()\n"
    "print(len(s), sum(v[0] for v in back.values()), [k for k, _ in top], len(words))\n",
    NULL
};

Test(realprogs, python3_dict_list_json_script)
{
    need("python3");
    /* pymalloc serves small objects from mmap'd arenas: few mallocs, but not none */
    struct run_traces s = compare_runs(python_script, NULL, "py", "python3");
    cr_assert(s.exe_mallocs >= 1000, "python3 made only %" PRIu64 " mallocs", s.exe_mallocs);
}

Test(realprogs, python3_script_with_every_object_from_malloc)
{
    need("python3");
    char *env[] = { "PYTHONMALLOC=malloc", NULL };
    struct run_traces s = compare_runs(python_script, env, "pym", "python3");
    cr_assert(s.exe_mallocs >= 100000, "python3 made only %" PRIu64 " mallocs", s.exe_mallocs);
}

Test(realprogs, sqlite3_insert_heavy_script)
{
    need("sqlite3");
    static char sql[100000];
    size_t n = (size_t)snprintf(sql, sizeof sql,
                                "CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c REAL);\nBEGIN;\n");
    for (int i = 0; i < 1500; i++)
        n +=
            (size_t)snprintf(sql + n, sizeof sql - n,
                             "INSERT INTO t(b, c) VALUES('row %d', %d.5);\n", i, (i * 7919) % 1000);
    snprintf(sql + n, sizeof sql - n,
             "COMMIT;\n"
             "WITH RECURSIVE k(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM k WHERE x < 30000)\n"
             "  INSERT INTO t(b, c) SELECT printf('gen %%06d', x), x %% 977 FROM k;\n"
             "CREATE INDEX t_c ON t(c);\n"
             "UPDATE t SET b = b || '!' WHERE a %% 3 = 0;\n"
             "DELETE FROM t WHERE a %% 5 = 0;\n"
             "SELECT count(*), sum(length(b)), max(c) FROM t;\n"
             "SELECT b FROM t ORDER BY c DESC, a LIMIT 3;\n");
    char *argv[] = { "sqlite3", ":memory:", sql, NULL };
    struct run_traces s = compare_runs(argv, NULL, "sql", "sqlite3");
    cr_assert(s.exe_mallocs >= 1000, "sqlite3 made only %" PRIu64 " mallocs", s.exe_mallocs);
}

Test(realprogs, gcc_compile_traces_driver_cc1_and_as)
{
    need("gcc");
    char src[8192];
    snprintf(src, sizeof src, "%s/unit.c", h_tmpdir());
    const char *code = "#include <stdio.h>\n"
                       "#include <stdlib.h>\n"
                       "struct node { int v; struct node *next; };\n"
                       "int sum(const struct node *n) { int s = 0; for (; n; n = n->next) s += "
                       "n->v; return s; }\n"
                       "int main(void) { struct node *h = NULL; for (int i = 0; i < 10; i++) {\n"
                       "  struct node *n = malloc(sizeof *n); n->v = i; n->next = h; h = n; }\n"
                       "  printf(\"%d\\n\", sum(h)); return 0; }\n";
    cr_assert_eq(h_write_file(src, code, strlen(code)), 0);
    char *plain_argv[] = { "gcc", "-O2", "-c", "unit.c", "-o", "plain.o", NULL };
    char *shim_argv[] = { "gcc", "-O2", "-c", "unit.c", "-o", "shim.o", NULL };
    struct h_run plain = h_run(plain_argv, NULL, 0, NULL, 100);
    struct h_run shim = h_run(shim_argv, NULL, 1, "cc.%p.mtrace", 100);
    cr_assert(plain.exited && plain.status == 0, "gcc without the shim: %s", plain.err);
    cr_assert(shim.exited && shim.status == 0, "gcc under the shim: status %d: %s", shim.status,
              shim.err);
    cr_assert_str_eq(shim.out, plain.out);
    cr_assert_str_eq(shim.err, plain.err);
    /* the object file is the same bytes */
    char p1[8192], p2[8192];
    snprintf(p1, sizeof p1, "%s/plain.o", h_tmpdir());
    snprintf(p2, sizeof p2, "%s/shim.o", h_tmpdir());
    size_t l1, l2;
    char *o1 = h_read_file(p1, &l1), *o2 = h_read_file(p2, &l2);
    cr_assert(o1 && o2, "object files missing");
    cr_assert(l1 == l2 && memcmp(o1, o2, l1) == 0,
              "gcc wrote a different object file under the "
              "shim (%zu vs %zu bytes)",
              l2, l1);
    free(o1);
    free(o2);
    struct run_traces cc1 = check_traces("cc.", "cc1");
    cr_assert(cc1.exe_mallocs >= 1000, "cc1 made only %" PRIu64 " mallocs", cc1.exe_mallocs);
    struct run_traces as = check_traces("cc.", "as");
    (void)as;
    struct run_traces driver = check_traces("cc.", "gcc");
    (void)driver;
    cr_assert(cc1.traces >= 3, "driver, cc1 and as: %zu traces", cc1.traces);
    h_run_free(&plain);
    h_run_free(&shim);
}

/* Environment that makes git independent of the machine's and user's configuration and its
 * commits reproducible (same author, dates, hence the same hashes). */
static char *git_env[] = {
    "GIT_AUTHOR_NAME=Mem Trace",
    "GIT_AUTHOR_EMAIL=memtrace@example.invalid",
    "GIT_AUTHOR_DATE=2024-01-02T03:04:05+00:00",
    "GIT_COMMITTER_NAME=Mem Trace",
    "GIT_COMMITTER_EMAIL=memtrace@example.invalid",
    "GIT_COMMITTER_DATE=2024-01-02T03:04:05+00:00",
    "GIT_CONFIG_NOSYSTEM=1",
    "GIT_CONFIG_GLOBAL=/dev/null",
    "GIT_TERMINAL_PROMPT=0",
    NULL,
};

Test(realprogs, git_version)
{
    need("git");
    char *argv[] = { "git", "--version", NULL };
    compare_runs(argv, git_env, "gitv", "git");
}

Test(realprogs, git_init_add_commit_in_a_temp_repo)
{
    need("git");
    const char *repos[] = { "repo_plain", "repo_shim" };
    char *outs[2][5] = { { 0 } };
    for (int shim = 0; shim < 2; shim++) {
        char dir[8192];
        snprintf(dir, sizeof dir, "%s/%s", h_tmpdir(), repos[shim]);
        char *init[] = { "git", "-c", "init.defaultBranch=main", "init", "-q", dir, NULL };
        char *add[] = { "git", "-C", dir, "add", ".", NULL };
        char *commit[] = { "git", "-C", dir, "commit", "-q", "-m", "first commit", NULL };
        char *head[] = { "git", "-C", dir, "rev-parse", "HEAD", NULL };
        char *log[] = { "git", "-C", dir, "log", "--stat", "--format=%H %an %s", NULL };
        char *const *steps[] = { init, add, commit, head, log };
        const char *names[] = { "init", "add", "commit", "head", "log" };
        for (int k = 0; k < 5; k++) {
            if (k == 1) { /* the work tree, after init */
                for (int f = 0; f < 20; f++) {
                    char path[8400], text[256];
                    snprintf(path, sizeof path, "%s/file%02d.txt", dir, f);
                    int len = snprintf(text, sizeof text, "file %d\n%s\n", f,
                                       "some text that git will compress and hash");
                    cr_assert_eq(h_write_file(path, text, (size_t)len), 0);
                }
            }
            char pattern[64];
            snprintf(pattern, sizeof pattern, "git-%s.%%p.mtrace", names[k]);
            struct h_run r = h_run(steps[k], git_env, shim, pattern, 100);
            cr_assert(r.exited && r.status == 0, "git %s (%s): status %d: %s", names[k],
                      shim ? "under the shim" : "without the shim", r.status, r.err);
            cr_assert(strstr(r.err, "memtrace:") == NULL, "git %s: %s", names[k], r.err);
            outs[shim][k] = strdup(r.out);
            h_run_free(&r);
            if (shim) {
                char prefix[64];
                snprintf(prefix, sizeof prefix, "git-%s.", names[k]);
                check_traces(prefix, "git");
            }
        }
    }
    for (int k = 0; k < 5; k++) {
        cr_assert_str_eq(outs[1][k], outs[0][k], "step %d: stdout differs under the shim", k);
        free(outs[0][k]);
        free(outs[1][k]);
    }
}

Test(realprogs, node_script)
{
    need("node");
    char *argv[] = {
        "node", "-e",
        "const m = new Map();\n"
        "for (let i = 0; i < 100000; i++) m.set('k' + i, { i, s: 'v' + i });\n"
        "const a = [...m.values()].filter(o => o.i % 3 === 0).map(o => o.s.length);\n"
        "const buf = Buffer.alloc(1 << 20, 7);\n"
        "const j = JSON.parse(JSON.stringify([...m.entries()].slice(0, 1000)));\n"
        "console.log(m.size, a.reduce((x, y) => x + y, 0), buf.reduce((x, y) => x + y, 0), "
        "j.length, j[999][1].s);\n",
        NULL
    };
    compare_runs(argv, NULL, "node", "node");
}

Test(realprogs, bash_loop_with_subshells)
{
    need("bash");
    need("seq");
    char *argv[] = { "bash", "-c",
                     "s=0\n"
                     "for i in $(seq 1 30); do\n"
                     "  x=$( (echo $((i * i))) )\n"
                     "  s=$((s + x))\n"
                     "  ( : ) | cat\n"
                     "done\n"
                     "echo \"sum $s\"\n"
                     "printf '%s\\n' a b c | sort -r | tr '\\n' ' '\n"
                     "echo\n",
                     NULL };
    struct run_traces s = compare_runs(argv, NULL, "bash", "bash");
    /* every $( ), ( ) and pipeline stage is a process of its own */
    cr_assert(s.exe_traces >= 60, "only %zu bash traces for 30 rounds of subshells", s.exe_traces);
    check_traces("bash.", "cat");
    check_traces("bash.", "seq");
}
