/* Process: fork, exec and spawn. A fork child writes its own file (origin fork, right parent)
 * holding only its own events; the parent's file holds none of the child's and no duplicate of
 * what was buffered at the fork (pitfalls.md §8). An image replaced by exec ends its file with
 * END(exec) and the next image writes a new one under the same pid (§10). posix_spawn and
 * system() children are traced in their own files (§9); the user's other preloads survive.
 * Programs: tests/progs/fork_children.c, exec_self.c, libfork_other.c.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(process, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 60);

#define MAX_FILES 128

struct traces {
    char *paths[MAX_FILES];
    struct h_trace *t; /* n loaded traces */
    size_t n;
};

/* Load every trace file of the tmpdir; each must decode without error. */
static void load_all(struct traces *s)
{
    s->n = h_traces(NULL, s->paths, MAX_FILES);
    cr_assert_leq(s->n, MAX_FILES, "%zu trace files", s->n);
    s->t = calloc(s->n ? s->n : 1, sizeof *s->t);
    for (size_t i = 0; i < s->n; i++) {
        h_load(s->paths[i], &s->t[i]);
        cr_assert_eq(s->t[i].rc, 0, "%s: cannot decode: %s", s->paths[i], s->t[i].error);
    }
}

static void free_all(struct traces *s)
{
    for (size_t i = 0; i < s->n; i++)
        h_trace_free(&s->t[i]);
    free(s->t);
    h_free_paths(s->paths, s->n);
}

/* The trace written by process `pid` (the one with the latest start when exec reused it). */
static const struct h_trace *by_pid(const struct traces *s, uint32_t pid, const char **path)
{
    const struct h_trace *found = NULL;
    for (size_t i = 0; i < s->n; i++)
        if (s->t[i].status.header.pid == pid &&
            (found == NULL ||
             s->t[i].status.header.start_monotonic_ns > found->status.header.start_monotonic_ns)) {
            found = &s->t[i];
            if (path)
                *path = s->paths[i];
        }
    return found;
}

static uint64_t mallocs_of(const struct h_trace *t, uint64_t size)
{
    uint64_t n = 0;
    for (size_t i = 0; i < t->nevents; i++)
        n += t->events[i].kind == MTF_EV_MALLOC && t->events[i].size == size;
    return n;
}

/* Complete per the reader (an END, and no records after an exec END), last END's reason as
 * expected (0: exit or exec), nothing dropped, END counting exactly the events before it; none
 * after it (these programs have no thread running at exit). */
static void expect_complete(const struct h_trace *t, const char *path, uint32_t reason)
{
    cr_expect(t->has_end, "%s: no END record", path);
    if (!t->has_end)
        return;
    cr_expect(t->status.complete, "%s: incomplete (records after its exec END)", path);
    if (reason != 0)
        cr_expect_eq(t->end.reason, reason, "%s: END reason %s, expected %s", path,
                     reader_end_reason_name(t->end.reason), reader_end_reason_name(reason));
    else
        cr_expect(t->end.reason == MTF_END_EXIT || t->end.reason == MTF_END_EXEC,
                  "%s: END reason %s, expected exit or exec", path,
                  reader_end_reason_name(t->end.reason));
    cr_expect_eq(t->status.dropped, 0, "%s: %llu calls dropped", path,
                 (unsigned long long)t->status.dropped);
    struct end_tally y;
    end_tally(path, &y);
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++)
        cr_expect(y.end.counts[k] == y.before[k] && y.before[k] == y.total[k],
                  "%s: %s: END says %llu, %llu events before END, %llu in the file", path,
                  reader_kind_name(k), (unsigned long long)y.end.counts[k],
                  (unsigned long long)y.before[k], (unsigned long long)y.total[k]);
}

/* pids printed by the program as "<word> <pid>" lines. */
static size_t pids_after(const char *out, const char *word, uint32_t *pids, size_t max)
{
    size_t n = 0, k = strlen(word);
    for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, word, k) == 0 && p[k] == ' ' && n < max)
            pids[n++] = (uint32_t)strtoul(p + k + 1, NULL, 10);
    return n;
}

static struct h_run run_prog(const char *prog, char *const args[], char *const env[], int preload)
{
    char *argv[8] = { (char *)h_path(prog) };
    for (int i = 0; args[i] && i < 6; i++)
        argv[i + 1] = args[i];
    struct h_run r = h_run(argv, env, preload, NULL, 55);
    cr_assert(r.exited && r.status == 0, "%s %s: %s %d, stdout:\n%s\nstderr:\n%s", prog, args[0],
              r.exited ? "exit status" : "signal", r.status, r.out, r.err);
    return r;
}

static void fork_child_file(const char *how)
{
    struct h_run r =
        run_prog("progs/fork_children", (char *[]){ "fork", (char *)how, NULL }, NULL, 1);
    uint32_t child;
    cr_assert_eq(pids_after(r.out, "forked", &child, 1), 1, "no child pid in:\n%s", r.out);
    struct traces s;
    load_all(&s);
    cr_assert_eq(s.n, 2, "%zu trace files, expected parent's and child's", s.n);
    const char *cpath = NULL, *ppath = NULL;
    const struct h_trace *c = by_pid(&s, child, &cpath);
    cr_assert_not_null(c, "no trace file written by the child (pid %u)", child);
    const struct h_trace *p = &s.t[c == &s.t[0] ? 1 : 0];
    ppath = s.paths[c == &s.t[0] ? 1 : 0];
    uint32_t parent = p->status.header.pid;

    cr_expect_eq(p->status.header.origin, MTF_ORIGIN_START, "%s: parent's origin %s", ppath,
                 reader_origin_name(p->status.header.origin));
    cr_expect_eq(c->status.header.origin, MTF_ORIGIN_FORK, "%s: child's origin %s", cpath,
                 reader_origin_name(c->status.header.origin));
    cr_expect_eq(c->status.header.parent_pid, parent, "%s: child's parent_pid %u, parent is %u",
                 cpath, c->status.header.parent_pid, parent);

    cr_expect_eq(mallocs_of(p, 11111), 100, "parent: %llu malloc(11111), it made 100",
                 (unsigned long long)mallocs_of(p, 11111));
    cr_expect_eq(mallocs_of(p, 33333), 70, "parent: %llu malloc(33333), it made 70",
                 (unsigned long long)mallocs_of(p, 33333));
    cr_expect_eq(mallocs_of(p, 22222), 0, "parent's file holds %llu of the child's mallocs",
                 (unsigned long long)mallocs_of(p, 22222));
    cr_expect_eq(mallocs_of(c, 22222), 50, "child: %llu malloc(22222), it made 50",
                 (unsigned long long)mallocs_of(c, 22222));
    cr_expect_eq(mallocs_of(c, 11111), 0,
                 "child's file repeats %llu of the parent's pre-fork mallocs (buffer inherited)",
                 (unsigned long long)mallocs_of(c, 11111));
    cr_expect_eq(mallocs_of(c, 33333), 0, "child's file holds %llu of the parent's mallocs",
                 (unsigned long long)mallocs_of(c, 33333));

    uint64_t forks = 0;
    for (size_t i = 0; i < p->nevents; i++)
        if (p->events[i].kind == MTF_EV_FORK) {
            forks++;
            cr_expect_eq(p->events[i].child_pid, child, "FORK event names pid %llu, child is %u",
                         (unsigned long long)p->events[i].child_pid, child);
            cr_expect_eq(p->events[i].flags & MTF_EVF_FAILED, 0, "successful fork flagged FAILED");
        }
    cr_expect_eq(forks, 1, "parent: %llu FORK events, it forked once", (unsigned long long)forks);
    cr_expect_eq(c->counts[MTF_EV_FORK], 0, "child's file has a FORK event");
    expect_complete(p, ppath, MTF_END_EXIT);
    expect_complete(c, cpath, MTF_END_EXIT);
    if (c->has_end)
        cr_expect_eq(c->end.status, 0, "%s: child END status %d", cpath, c->end.status);
    free_all(&s);
    h_run_free(&r);
}

Test(process, fork_child_exiting_writes_own_file_without_parent_events)
{
    fork_child_file("exit");
}

Test(process, fork_child_calling_exit_underscore_writes_own_complete_file)
{
    fork_child_file("_exit");
}

/* pitfalls.md §8: locks held by other threads at the fork must not hang the child, and the
 * other threads' buffers must be dropped in the child, not flushed into its file. */
Test(process, fifty_forks_from_four_busy_threads_no_hang_every_child_file_valid)
{
    struct h_run r = run_prog("progs/fork_children", (char *[]){ "storm", "50", NULL }, NULL, 1);
    cr_assert_not_null(strstr(r.out, "hung 0 bad 0"), "children hung or failed:\n%s", r.out);
    uint32_t kids[64];
    size_t nk = pids_after(r.out, "forked", kids, 64);
    cr_assert_eq(nk, 50, "%zu child pids printed, expected 50", nk);
    struct traces s;
    load_all(&s);
    cr_assert_eq(s.n, 51, "%zu trace files, expected 1 parent + 50 children", s.n);
    const struct h_trace *parent = NULL;
    for (size_t i = 0; i < s.n; i++)
        if (s.t[i].status.header.origin == MTF_ORIGIN_START)
            parent = &s.t[i];
    cr_assert_not_null(parent, "no parent trace (origin start)");
    for (size_t k = 0; k < nk; k++) {
        const char *path = NULL;
        const struct h_trace *c = by_pid(&s, kids[k], &path);
        cr_assert_not_null(c, "child %u wrote no trace file", kids[k]);
        cr_expect_eq(c->status.header.origin, MTF_ORIGIN_FORK, "%s: origin %s", path,
                     reader_origin_name(c->status.header.origin));
        cr_expect_eq(c->status.header.parent_pid, parent->status.header.pid,
                     "%s: parent_pid %u, parent is %u", path, c->status.header.parent_pid,
                     parent->status.header.pid);
        cr_expect_eq(mallocs_of(c, 44444), 10, "%s: %llu malloc(44444), the child made 10", path,
                     (unsigned long long)mallocs_of(c, 44444));
        uint64_t foreign = 0;
        for (uint64_t sz = 100; sz < 104; sz++)
            foreign += mallocs_of(c, sz);
        cr_expect_eq(foreign, 0,
                     "%s: %llu mallocs of the parent's busy threads (buffers of threads that do "
                     "not exist in the child were flushed)",
                     path, (unsigned long long)foreign);
        expect_complete(c, path, MTF_END_EXIT);
    }
    cr_expect_eq(mallocs_of(parent, 44444), 0, "parent's file holds %llu children's mallocs",
                 (unsigned long long)mallocs_of(parent, 44444));
    cr_expect_eq(parent->counts[MTF_EV_FORK], 50, "parent: %llu FORK events, it forked 50 times",
                 (unsigned long long)parent->counts[MTF_EV_FORK]);
    free_all(&s);
    h_run_free(&r);
}

/* Generation N of exec_self makes 3 x malloc(55550 + N) and execs N - 1 (execv, execl, execvp). */
static const struct h_trace *generation(const struct traces *s, int gen, const char **path)
{
    const struct h_trace *found = NULL;
    for (size_t i = 0; i < s->n; i++)
        if (mallocs_of(&s->t[i], 55550 + (uint64_t)gen) > 0) {
            cr_assert_null(found, "generation %d's mallocs in two files", gen);
            found = &s->t[i];
            *path = s->paths[i];
        }
    cr_assert_not_null(found, "no trace holds generation %d's mallocs", gen);
    return found;
}

Test(process, self_exec_three_times_leaves_four_distinct_complete_files)
{
    struct h_run r = run_prog("progs/exec_self", (char *[]){ "3", NULL }, NULL, 1);
    struct traces s;
    load_all(&s);
    cr_assert_eq(s.n, 4, "%zu trace files after 3 execs, expected 4", s.n);
    uint32_t pid = s.t[0].status.header.pid;
    for (int gen = 3; gen >= 0; gen--) {
        const char *path;
        const struct h_trace *t = generation(&s, gen, &path);
        cr_expect_eq(t->status.header.pid, pid, "%s: pid %u, exec keeps pid %u", path,
                     t->status.header.pid, pid);
        cr_expect_eq(mallocs_of(t, 55550 + (uint64_t)gen), 3, "%s: %llu mallocs of gen %d", path,
                     (unsigned long long)mallocs_of(t, 55550 + (uint64_t)gen), gen);
        for (int other = 0; other <= 3; other++)
            if (other != gen)
                cr_expect_eq(mallocs_of(t, 55550 + (uint64_t)other), 0,
                             "%s: holds generation %d's mallocs too", path, other);
        expect_complete(t, path, gen > 0 ? MTF_END_EXEC : MTF_END_EXIT);
        cr_expect_eq(t->counts[MTF_EV_EXEC], gen > 0, "%s: %llu EXEC events for generation %d",
                     path, (unsigned long long)t->counts[MTF_EV_EXEC], gen);
    }
    free_all(&s);
    h_run_free(&r);
}

/* trace-format.md §3: origin 2 (MTF_ORIGIN_EXEC) marks the image that follows an execve in a
 * traced process; only the first image started traced. */
Test(process, image_after_exec_has_origin_exec)
{
    struct h_run r = run_prog("progs/exec_self", (char *[]){ "3", NULL }, NULL, 1);
    struct traces s;
    load_all(&s);
    cr_assert_eq(s.n, 4, "%zu trace files after 3 execs, expected 4", s.n);
    for (int gen = 3; gen >= 0; gen--) {
        const char *path;
        const struct h_trace *t = generation(&s, gen, &path);
        uint32_t want = gen == 3 ? MTF_ORIGIN_START : MTF_ORIGIN_EXEC;
        cr_expect_eq(t->status.header.origin, want, "%s (generation %d): origin %s, expected %s",
                     path, gen, reader_origin_name(t->status.header.origin),
                     reader_origin_name(want));
    }
    free_all(&s);
    h_run_free(&r);
}

Test(process, posix_spawn_and_system_children_traced_in_own_files)
{
    struct h_run r = run_prog("progs/fork_children", (char *[]){ "spawn", NULL }, NULL, 1);
    uint32_t spawned;
    cr_assert_eq(pids_after(r.out, "spawned", &spawned, 1), 1, "no spawned pid in:\n%s", r.out);
    struct traces s;
    load_all(&s);
    const struct h_trace *parent = NULL;
    const char *ppath = NULL;
    for (size_t i = 0; i < s.n; i++) {
        expect_complete(&s.t[i], s.paths[i], 0); /* /bin/sh may exec its last command */
        if (strstr(s.t[i].exe, "fork_children") && mallocs_of(&s.t[i], 66666) == 0 &&
            mallocs_of(&s.t[i], 77777) == 0) {
            cr_assert_null(parent, "two files look like the parent's");
            parent = &s.t[i];
            ppath = s.paths[i];
        }
    }
    cr_assert_not_null(parent, "no trace of the parent");
    const char *cpath = NULL;
    const struct h_trace *c = by_pid(&s, spawned, &cpath);
    cr_assert_not_null(c, "posix_spawn child %u wrote no trace", spawned);
    cr_expect_eq(mallocs_of(c, 66666), 10, "%s: %llu malloc(66666), the spawned child made 10",
                 cpath, (unsigned long long)mallocs_of(c, 66666));
    cr_expect_eq(c->status.header.origin, MTF_ORIGIN_START, "%s: spawned child's origin %s", cpath,
                 reader_origin_name(c->status.header.origin));
    uint64_t via_system = 0;
    size_t files = 0;
    for (size_t i = 0; i < s.n; i++) {
        uint64_t m = mallocs_of(&s.t[i], 77777);
        via_system += m;
        files += m > 0;
    }
    cr_expect_eq(via_system, 10, "%llu malloc(77777) over all files, the system() child made 10",
                 (unsigned long long)via_system);
    cr_expect_eq(files, 1, "the system() child's mallocs are spread over %zu files", files);
    cr_expect_geq(s.n, 3, "%zu files: parent, spawned child and system() child expected", s.n);
    cr_expect_eq(mallocs_of(parent, 66666) + mallocs_of(parent, 77777), 0,
                 "%s: the parent's file holds its children's mallocs", ppath);
    free_all(&s);
    h_run_free(&r);
}

/* pitfalls.md §9: a vfork child runs in the parent's memory until it execs. Its exec must not
 * end the parent's trace: the parent's file gets no EXEC event and no END(exec), and the
 * parent's mallocs after the vfork come before its own END(exit). */
Test(process, vfork_child_exec_leaves_parent_trace_open)
{
    struct h_run r = run_prog("progs/fork_children", (char *[]){ "vfork", NULL }, NULL, 1);
    uint32_t child;
    cr_assert_eq(pids_after(r.out, "spawned", &child, 1), 1, "no child pid in:\n%s", r.out);
    struct traces s;
    load_all(&s);
    cr_assert_eq(s.n, 2, "%zu trace files, expected parent's and child's", s.n);
    const char *cpath = NULL;
    const struct h_trace *c = by_pid(&s, child, &cpath);
    cr_assert_not_null(c, "the vfork+exec child %u wrote no trace", child);
    const struct h_trace *p = &s.t[c == &s.t[0] ? 1 : 0];
    const char *ppath = s.paths[c == &s.t[0] ? 1 : 0];
    cr_expect_eq(mallocs_of(c, 13131), 10, "%s: %llu malloc(13131), the child made 10", cpath,
                 (unsigned long long)mallocs_of(c, 13131));
    cr_expect_eq(p->counts[MTF_EV_EXEC], 0,
                 "%s: the parent never called exec, yet its trace has %llu EXEC events (the "
                 "vfork child's exec was recorded in the parent's trace)",
                 ppath, (unsigned long long)p->counts[MTF_EV_EXEC]);
    expect_complete(p, ppath, MTF_END_EXIT);
    cr_expect_eq(mallocs_of(p, 12121), 5, "%s: %llu malloc(12121) before the vfork, made 5", ppath,
                 (unsigned long long)mallocs_of(p, 12121));
    cr_expect_eq(mallocs_of(p, 14141), 5, "%s: %llu malloc(14141) after the vfork, made 5", ppath,
                 (unsigned long long)mallocs_of(p, 14141));
    cr_expect_eq(p->status.lost_bytes, 0, "%s: %llu bytes after the last good record", ppath,
                 (unsigned long long)p->status.lost_bytes);
    expect_complete(c, cpath, MTF_END_EXIT);
    free_all(&s);
    h_run_free(&r);
}

/* pitfalls.md §10: LD_PRELOAD="other.so libmemtrace.so" reaches the children unchanged, so the
 * user's own preload is still loaded there and the child is traced too. */
Test(process, other_preloads_preserved_in_children)
{
    char preload[8192], output[8192];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s %s", h_path("progs/libfork_other.so"),
             h_path("libmemtrace.so"));
    snprintf(output, sizeof output, "MEMTRACE_OUTPUT=%s/t.%%p.mtrace", h_tmpdir());
    struct h_run r = run_prog("progs/fork_children", (char *[]){ "env", NULL },
                              (char *[]){ preload, output, NULL }, 0);
    char want[8300];
    snprintf(want, sizeof want, "other=1 %s\n", preload);
    cr_expect_not_null(strstr(r.out, want), "child's view differs; expected '%s' in:\n%s", want,
                       r.out);
    uint32_t spawned;
    cr_assert_eq(pids_after(r.out, "spawned", &spawned, 1), 1, "no spawned pid in:\n%s", r.out);
    struct traces s;
    load_all(&s);
    const char *cpath = NULL;
    const struct h_trace *c = by_pid(&s, spawned, &cpath);
    cr_assert_not_null(c, "child %u wrote no trace", spawned);
    cr_expect_eq(mallocs_of(c, 88888), 10, "%s: %llu malloc(88888), the child made 10", cpath,
                 (unsigned long long)mallocs_of(c, 88888));
    free_all(&s);
    h_run_free(&r);
}
