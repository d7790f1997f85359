/* Robustness of the shim and the reader against what real runs do to a trace: the process is
 * killed at any moment, the file is cut or padded, the output path is missing, unwritable, a
 * symlink or taken, the disk fills up, the program closes or reuses our descriptor, a signal
 * handler allocates inside the shim, libraries come and go while threads allocate, and
 * unshare(CLONE_NEWUSER) needs a single-threaded process (pitfalls.md §5, 6, 11, 12, 13, 21).
 * Programs run under the real libmemtrace.so through posix_spawn (h_run) or through fork+exec
 * here when a test must kill the child or drop privileges; the runner is never preloaded.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

extern char **environ;

/* ---- fixtures --------------------------------------------------------------------------- */

static char mounted[4096]; /* a tmpfs this test mounted inside its tmpdir, "" if none */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* Suite teardown: what h_tmpdir_teardown does not (it removes plain files only): unmount a
 * tmpfs we mounted, remove subdirectories (git repos, read-only dirs), then the tmpdir. */
static void teardown(void)
{
    if (mounted[0] != '\0' && umount2(mounted, MNT_DETACH) != 0)
        cr_log_warn("umount %s: %s", mounted, strerror(errno));
    mounted[0] = '\0';
    if (h_tmpdir()[0] != '\0') {
        chmod(h_tmpdir(), 0700);
        nftw(h_tmpdir(), rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    h_tmpdir_teardown();
}

TestSuite(robustness, .init = h_tmpdir_setup, .fini = teardown, .timeout = 120);

/* ---- helpers ------------------------------------------------------------------------------ */

static const char *prog(const char *name)
{
    return h_path(name);
}

/* Path of `name` in the tmpdir, in a static rotating buffer (valid for the next 15 calls). */
static char *tmp_file(const char *name)
{
    static char bufs[16][8192];
    static int k;
    char *out = bufs[k++ & 15];
    snprintf(out, sizeof bufs[0], "%s/%s", h_tmpdir(), name);
    return out;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Lines of `s` that start with `prefix`. */
static size_t count_prefixed_lines(const char *s, const char *prefix)
{
    size_t n = 0, k = strlen(prefix);
    for (const char *line = s; *line;) {
        if (strncmp(line, prefix, k) == 0)
            n++;
        const char *nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return n;
}

/* Whether JSON text `json` has member "key" with the literal value `value` (whitespace
 * around the colon is free). */
static int json_member(const char *json, const char *key, const char *value)
{
    char quoted[128];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    for (const char *p = strstr(json, quoted); p != NULL; p = strstr(p + 1, quoted)) {
        const char *q = p + strlen(quoted);
        q += strspn(q, " \t\n");
        if (*q++ != ':')
            continue;
        q += strspn(q, " \t\n");
        size_t k = strlen(value);
        if (strncmp(q, value, k) == 0 && strchr(",}\n \t", q[k]) != NULL)
            return 1;
    }
    return 0;
}

/* Start argv under the shim with fork+exec, the environment built as h_run builds it (ours minus
 * LD_PRELOAD and MEMTRACE_*, plus the shim, MEMTRACE_OUTPUT=<tmpdir>/<pattern> and `extra`),
 * stdout and stderr into the files `out` and `err` of the tmpdir, cwd the tmpdir. With
 * `uid` >= 0 the child drops to that uid/gid first. Returns the pid. */
static pid_t spawn(char *const argv[], char *const extra[], const char *pattern, int uid,
                   const char *out, const char *err)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (extra && extra[m])
        m++;
    char **env = calloc(n + m + 3, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0 && strncmp(environ[i], "MEMTRACE_", 9) != 0)
            env[k++] = environ[i];
    char preload[8192], output[8192];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", h_path("libmemtrace.so"));
    snprintf(output, sizeof output, "MEMTRACE_OUTPUT=%s/%s", h_tmpdir(), pattern);
    env[k++] = preload;
    env[k++] = output;
    for (size_t i = 0; i < m; i++)
        env[k++] = extra[i];
    env[k] = NULL;
    char out_path[8192], err_path[8192];
    snprintf(out_path, sizeof out_path, "%s/%s", h_tmpdir(), out);
    snprintf(err_path, sizeof err_path, "%s/%s", h_tmpdir(), err);
    int ofd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int efd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert(ofd >= 0 && efd >= 0, "cannot create %s, %s: %s", out_path, err_path,
              strerror(errno));
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (dup2(ofd, 1) < 0 || dup2(efd, 2) < 0 || chdir(h_tmpdir()) != 0)
            _exit(126);
        if (uid >= 0 &&
            (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 || setuid((uid_t)uid) != 0))
            _exit(126);
        execve(argv[0], argv, env);
        _exit(127);
    }
    free(env);
    close(ofd);
    close(efd);
    return pid;
}

/* Wait for pid with a deadline; kills it and fails the test when it is exceeded. */
static int wait_for(pid_t pid, int timeout_s)
{
    for (int ms = 0; ms < timeout_s * 1000; ms += 5) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        cr_assert(w >= 0, "waitpid: %s", strerror(errno));
        if (w == pid)
            return st;
        struct timespec ts = { 0, 5 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    cr_assert_fail("pid %d did not finish within %d s", (int)pid, timeout_s);
    return -1;
}

/* Offsets of the record boundaries of a trace held in memory, found by walking the framing (no
 * validation beyond the framing itself): bounds[0] is the end of the file header. Returns the
 * count. Stops at the first record that does not fit. */
static size_t record_bounds(const uint8_t *data, size_t size, uint64_t *bounds, size_t max)
{
    size_t n = 0;
    if (size < MTF_FILE_HEADER_SIZE)
        return 0;
    struct mtf_file_header fh;
    memcpy(&fh, data, sizeof fh);
    uint64_t off = fh.header_size;
    while (n < max && off <= size) {
        bounds[n++] = off;
        if (size - off < MTF_RECORD_HEADER_SIZE)
            break;
        struct mtf_record_header rh;
        memcpy(&rh, data + off, sizeof rh);
        if (rh.magic != MTF_RECORD_MAGIC)
            break;
        off += MTF_RECORD_HEADER_SIZE + (uint64_t)rh.payload_size;
    }
    return n;
}

/* What the prefix tests compare: one decoded item, pointers left out. */
struct sig {
    uint8_t type, kind, flags;
    uint32_t tid, stack;
    uint64_t addr, old_addr, size;
};

struct decoded {
    int rc;
    struct rd_status st;
    char error[512];
    struct sig *items;
    size_t n;
};

/* Decode a whole trace from memory (or, with `stream`, through a FILE over the same bytes). */
static void decode(const void *data, size_t size, int stream, struct decoded *d)
{
    memset(d, 0, sizeof *d);
    struct reader *r = NULL;
    FILE *f = NULL;
    if (stream) {
        f = fmemopen((void *)data, size, "rb");
        cr_assert_not_null(f, "fmemopen: %s", strerror(errno));
        d->rc = reader_open_stream(&r, f, "<stream>");
    } else {
        d->rc = reader_open_mem(&r, data, size);
    }
    cr_assert_not_null(r, "reader_open returned no reader (rc %d)", d->rc);
    size_t cap = 0;
    struct rd_item it;
    while (d->rc >= 0 && (d->rc = reader_next(r, &it)) > 0) {
        if (d->n == cap) {
            cap = cap ? 2 * cap : 1024;
            d->items = realloc(d->items, cap * sizeof *d->items);
        }
        struct sig *s = &d->items[d->n++];
        memset(s, 0, sizeof *s);
        s->type = (uint8_t)it.type;
        if (it.type == RD_ITEM_EVENT) {
            s->kind = it.ev.kind;
            s->flags = it.ev.flags;
            s->tid = it.ev.tid;
            s->stack = it.ev.stack;
            s->addr = it.ev.addr;
            s->old_addr = it.ev.old_addr;
            s->size = it.ev.kind == MTF_EV_STACK ? it.ev.nframes : it.ev.size;
        } else if (it.type == RD_ITEM_MODULE) {
            s->addr = it.module.base;
            s->kind = (uint8_t)it.module.action;
            s->size = it.module.id;
        } else if (it.type == RD_ITEM_END) {
            s->size = it.end.events;
        }
    }
    d->st = *reader_status(r);
    snprintf(d->error, sizeof d->error, "%s", reader_error(r));
    reader_close(r);
    if (f != NULL)
        fclose(f);
}

static void decoded_free(struct decoded *d)
{
    free(d->items);
    memset(d, 0, sizeof *d);
}

/* The checks every trace of a killed process must pass: it reads cleanly up to its last
 * complete record and no further, says it is incomplete, and memtrace-report says so too. */
static void check_killed_trace(const char *path, uint64_t *events, int *torn)
{
    size_t size;
    uint8_t *data = (uint8_t *)h_read_file(path, &size);
    cr_assert_not_null(data, "cannot read %s", path);
    struct h_trace t;
    h_load(path, &t);
    if (size < MTF_FILE_HEADER_SIZE) {
        /* killed between creating the file and writing its header: nothing to decode */
        cr_assert_eq(t.rc, RD_ERR_TRUNC, "%s: %zu-byte file: rc %d (%s)", path, size, t.rc,
                     t.error);
        cr_assert(strstr(t.error, "offset 0") != NULL, "%s: %s", path, t.error);
    } else {
        cr_assert(t.rc == 0 || t.rc == RD_ERR_TRUNC,
                  "%s: a killed process must leave a readable prefix, got rc %d: %s", path, t.rc,
                  t.error);
        cr_assert_eq(t.status.complete, 0, "%s: no END record can be there", path);
        cr_assert_eq(t.has_end, 0, "%s", path);
        cr_assert_eq(t.status.valid_bytes + t.status.lost_bytes, (uint64_t)size,
                     "%s: valid %" PRIu64 " + lost %" PRIu64 " != file size %zu", path,
                     t.status.valid_bytes, t.status.lost_bytes, size);
        uint64_t bounds[65536];
        size_t nb = record_bounds(data, size, bounds, 65536);
        cr_assert(nb > 0 && nb < 65536, "%s: %zu records", path, nb);
        /* reading stopped at the last record boundary, never earlier */
        cr_assert_eq(t.status.valid_bytes, bounds[nb - 1],
                     "%s: reader stopped at %" PRIu64 ", the last complete record ends at "
                     "%" PRIu64 " (%s)",
                     path, t.status.valid_bytes, bounds[nb - 1], t.error);
        if (t.rc == 0) {
            cr_assert_eq(t.status.lost_bytes, 0, "%s", path);
        } else {
            cr_assert(t.status.truncated, "%s", path);
            ++*torn;
            cr_assert(t.status.lost_bytes > 0 &&
                          t.status.lost_bytes < MTF_RECORD_HEADER_SIZE + MTF_RECORD_MAX_SIZE,
                      "%s: %" PRIu64 " bytes lost", path, t.status.lost_bytes);
            char want[64];
            snprintf(want, sizeof want, "offset %" PRIu64, t.status.valid_bytes);
            cr_assert(strstr(t.error, want) != NULL, "%s: error should name %s: %s", path, want,
                      t.error);
        }
        *events += t.nevents;
    }

    char *argv[] = { (char *)prog("memtrace-report"), "--json", (char *)path, NULL };
    struct h_run r = h_run(argv, NULL, 0, NULL, 60);
    cr_assert(r.exited, "memtrace-report crashed on %s (signal %d)", path, r.status);
    cr_assert_eq(r.status, 2, "memtrace-report on a killed run's trace must exit 2: %s", r.err);
    if (size >= MTF_FILE_HEADER_SIZE) {
        cr_assert(json_member(r.out, "complete", "false"), "%s: %s", path, r.out);
        char want[32];
        snprintf(want, sizeof want, "%" PRIu64, t.status.lost_bytes);
        cr_assert(json_member(r.out, "lost_bytes", want), "%s: JSON should say lost_bytes %s: %s",
                  path, want, r.out);
    }
    cr_assert_eq(count_lines(r.err), 1, "one error line expected: %s", r.err);
    h_run_free(&r);
    h_trace_free(&t);
    free(data);
}

/* Run robust_churn to completion under the shim and return the path of its trace. */
static char *good_trace(const char *pattern, const char *buffer)
{
    char *argv[] = { (char *)prog("progs/robust_churn"), "3", "4000", "realloc", NULL };
    char *env[] = { (char *)buffer, NULL };
    struct h_run r = h_run(argv, env, 1, pattern, 60);
    cr_assert(r.exited && r.status == 0, "robust_churn failed: status %d, stderr: %s", r.status,
              r.err);
    h_run_free(&r);
    char *paths[4];
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(strchr(pattern, '%') - pattern), pattern);
    size_t n = h_traces(prefix, paths, 4);
    cr_assert_eq(n, 1, "expected one trace named %s*, found %zu", prefix, n);
    return paths[0];
}

/* ---- a killed process ---------------------------------------------------------------------- */

Test(robustness, sigkill_at_any_moment_leaves_a_trace_readable_to_its_last_record)
{
    enum { RUNS = 20 };
    uint64_t events = 0;
    int files = 0, torn = 0;
    for (int run = 0; run < RUNS; run++) {
        /* delays spread over 5..300 ms, in an order that mixes short and long */
        long delay_ms = 5 + (run * 139) % 296;
        char pattern[64], prefix[64], out[64], err[64];
        snprintf(pattern, sizeof pattern, "kill%02d.%%p.mtrace", run);
        snprintf(prefix, sizeof prefix, "kill%02d.", run);
        snprintf(out, sizeof out, "out%02d.txt", run);
        snprintf(err, sizeof err, "err%02d.txt", run);
        char *argv[] = { (char *)prog("progs/robust_churn"), "4",        "0",
                         run % 2 ? "realloc" : "pace=0",     "pace=300", NULL };
        char *env[] = { run % 3 ? "MEMTRACE_BUFFER=16K" : "MEMTRACE_BUFFER=4K", NULL };
        pid_t pid = spawn(argv, env, pattern, -1, out, err);
        struct timespec ts = { delay_ms / 1000, (delay_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
        cr_assert_eq(kill(pid, SIGKILL), 0, "kill: %s", strerror(errno));
        int st = wait_for(pid, 60);
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                  "run %d: robust_churn should have died of SIGKILL (status 0x%x)", run, st);
        char *paths[4];
        size_t n = h_traces(prefix, paths, 4);
        cr_assert(n <= 1, "run %d: %zu traces for one process", run, n);
        for (size_t i = 0; i < n; i++) {
            check_killed_trace(paths[i], &events, &torn);
            files++;
        }
        h_free_paths(paths, n < 4 ? n : 4);
    }
    cr_log_info("%d traces of killed runs (%d ending in a torn record), %" PRIu64 " events decoded",
                files, torn, events);
    cr_assert(files >= RUNS / 2, "only %d of %d killed runs left a trace", files, RUNS);
    cr_assert(events > 0, "no killed run's trace held any event: nothing was tested");
}

/* ---- truncated and padded files ---------------------------------------------------------- */

/* Decode the first `off` bytes of `data` and compare with the full decode `full`. `bounds` are
 * the record boundaries; `counts[i]` caches the items decoded from the prefix bounds[i]. */
static void check_prefix(const uint8_t *data, size_t off, const struct decoded *full,
                         const uint64_t *bounds, size_t nb, size_t *counts, int stream)
{
    struct decoded d;
    decode(data, off, stream, &d);
    cr_assert(d.n <= full->n, "offset %zu: %zu items, the whole file has %zu", off, d.n, full->n);
    for (size_t i = 0; i < d.n; i++)
        cr_assert(memcmp(&d.items[i], &full->items[i], sizeof d.items[i]) == 0,
                  "offset %zu: item %zu (type %u kind %u addr 0x%" PRIx64 ") differs from the "
                  "full decode (type %u kind %u addr 0x%" PRIx64 ")",
                  off, i, d.items[i].type, d.items[i].kind, d.items[i].addr, full->items[i].type,
                  full->items[i].kind, full->items[i].addr);
    if (off < bounds[0]) {
        cr_assert(d.rc == RD_ERR_TRUNC || d.rc == RD_ERR_FORMAT,
                  "offset %zu inside the file header: rc %d (%s)", off, d.rc, d.error);
        cr_assert_eq(d.n, 0);
        cr_assert(strstr(d.error, "offset ") != NULL, "offset %zu: %s", off, d.error);
        decoded_free(&d);
        return;
    }
    size_t b = 0; /* last boundary <= off */
    while (b + 1 < nb && bounds[b + 1] <= off)
        b++;
    cr_assert_eq(d.st.valid_bytes, bounds[b],
                 "offset %zu: reading should stop at the record boundary %" PRIu64 ", stopped "
                 "at %" PRIu64 " (%s)",
                 off, bounds[b], d.st.valid_bytes, d.error);
    cr_assert_eq(d.st.valid_bytes + d.st.lost_bytes, (uint64_t)off, "offset %zu", off);
    if (bounds[b] == off) {
        cr_assert_eq(d.rc, 0, "offset %zu is a record boundary: clean end expected, got %d (%s)",
                     off, d.rc, d.error);
        cr_assert_eq(d.st.complete, off == full->st.valid_bytes ? 1 : 0, "offset %zu", off);
        counts[b] = d.n + 1; /* +1: 0 means "not known yet" */
    } else {
        cr_assert_eq(d.rc, RD_ERR_TRUNC, "offset %zu inside a record: rc %d (%s)", off, d.rc,
                     d.error);
        cr_assert(d.st.truncated, "offset %zu", off);
        cr_assert_eq(d.st.complete, 0, "offset %zu", off);
        char want[64];
        snprintf(want, sizeof want, "offset %" PRIu64, bounds[b]);
        cr_assert(strstr(d.error, want) != NULL, "offset %zu: the error should name %s: %s", off,
                  want, d.error);
        if (counts[b] == 0) {
            struct decoded at;
            decode(data, bounds[b], 0, &at);
            counts[b] = at.n + 1;
            decoded_free(&at);
        }
        cr_assert_eq(d.n, counts[b] - 1,
                     "offset %zu: %zu items decoded, every complete record before it holds %zu",
                     off, d.n, counts[b] - 1);
    }
    decoded_free(&d);
}

Test(robustness, truncated_trace_decodes_a_prefix_at_every_offset)
{
    char *path = good_trace("cut.%p.mtrace", "MEMTRACE_BUFFER=4K");
    size_t size;
    uint8_t *data = (uint8_t *)h_read_file(path, &size);
    cr_assert_not_null(data);
    struct decoded full;
    decode(data, size, 0, &full);
    cr_assert_eq(full.rc, 0, "the untruncated trace must decode: %s", full.error);
    cr_assert(full.st.complete, "the untruncated trace must be complete");
    static uint64_t bounds[1 << 16];
    size_t nb = record_bounds(data, size, bounds, 1 << 16);
    cr_assert(nb > 10 && bounds[nb - 1] == size, "%zu records, last ends at %" PRIu64 " of %zu", nb,
              nb ? bounds[nb - 1] : 0, size);
    size_t *counts = calloc(nb, sizeof *counts);
    size_t checked = 0;
    for (size_t off = 0; off <= size && off <= 4096; off++, checked++)
        check_prefix(data, off, &full, bounds, nb, counts, 0);
    /* then about 300 offsets spread to the end, odd steps so they land anywhere in records,
     * plus every record boundary's neighbours; read through a stream as well */
    size_t step = size / 300 | 1;
    for (size_t off = 4097; off <= size; off += step, checked++) {
        check_prefix(data, off, &full, bounds, nb, counts, 0);
        check_prefix(data, off, &full, bounds, nb, counts, 1);
    }
    for (size_t i = 0; i < nb; i += nb / 50 + 1) {
        for (long delta = -1; delta <= 1; delta++) {
            long off = (long)bounds[i] + delta;
            if (off >= 0 && (size_t)off <= size) {
                check_prefix(data, (size_t)off, &full, bounds, nb, counts, 1);
                checked++;
            }
        }
    }
    check_prefix(data, size, &full, bounds, nb, counts, 1);
    cr_log_info("%zu-byte trace, %zu records, %zu cuts checked", size, nb, checked);
    free(counts);
    decoded_free(&full);
    free(data);
    free(path);
}

Test(robustness, zero_filled_tail_is_reported_with_its_offset)
{
    char *path = good_trace("zero.%p.mtrace", "MEMTRACE_BUFFER=4K");
    size_t size;
    uint8_t *data = (uint8_t *)h_read_file(path, &size);
    cr_assert_not_null(data);
    struct decoded full;
    decode(data, size, 0, &full);
    cr_assert_eq(full.rc, 0, "%s", full.error);
    static uint64_t bounds[1 << 16];
    size_t nb = record_bounds(data, size, bounds, 1 << 16);
    cr_assert(nb > 3);

    /* a complete trace followed by zeros (a preallocated file): everything read, then an error
     * naming where the zeros start */
    enum { PAD = 8192 };
    uint8_t *padded = calloc(1, size + PAD);
    memcpy(padded, data, size);
    for (int stream = 0; stream <= 1; stream++) {
        struct decoded d;
        decode(padded, size + PAD, stream, &d);
        cr_assert(d.rc < 0, "zeros after the END record must be an error");
        cr_assert_eq(d.n, full.n, "every record before the zeros must still be decoded");
        cr_assert_eq(d.st.valid_bytes, (uint64_t)size);
        cr_assert_eq(d.st.lost_bytes, (uint64_t)PAD);
        char want[64];
        snprintf(want, sizeof want, "offset %zu", size);
        cr_assert(strstr(d.error, want) != NULL, "the error should name %s: %s", want, d.error);
        decoded_free(&d);
    }

    /* a trace cut at a record boundary in the middle (no END), then zeros: truncated there */
    size_t cut = (size_t)bounds[nb / 2];
    memset(padded + cut, 0, size + PAD - cut);
    struct decoded d;
    decode(padded, cut + PAD, 0, &d);
    cr_assert_eq(d.rc, RD_ERR_TRUNC, "zeros where a record should start: rc %d (%s)", d.rc,
                 d.error);
    cr_assert(d.st.truncated);
    cr_assert_eq(d.st.complete, 0);
    cr_assert_eq(d.st.valid_bytes, (uint64_t)cut);
    cr_assert_eq(d.st.lost_bytes, (uint64_t)PAD);
    char want[64];
    snprintf(want, sizeof want, "offset %zu", cut);
    cr_assert(strstr(d.error, want) != NULL, "the error should name %s: %s", want, d.error);
    for (size_t i = 0; i < d.n; i++)
        cr_assert(memcmp(&d.items[i], &full.items[i], sizeof d.items[i]) == 0, "item %zu", i);
    decoded_free(&d);
    decoded_free(&full);
    free(padded);
    free(data);
    free(path);
}

Test(robustness, report_exit_status_says_ok_truncated_or_unreadable)
{
    char *path = good_trace("status.%p.mtrace", "MEMTRACE_BUFFER=4K");
    size_t size;
    char *data = h_read_file(path, &size);
    cr_assert_not_null(data);
    static uint64_t bounds[1 << 16];
    size_t nb = record_bounds((uint8_t *)data, size, bounds, 1 << 16);
    cr_assert(nb > 3);
    char *torn = tmp_file("torn.bin"), *cut = tmp_file("cut.bin");
    cr_assert_eq(h_write_file(torn, data, (size_t)bounds[nb / 2] + 7), 0);
    cr_assert_eq(h_write_file(cut, data, (size_t)bounds[nb / 2]), 0);
    struct {
        const char *path;
        int status;
        const char *err; /* expected in the one stderr line, NULL: stderr empty */
    } cases[] = {
        { path, 0, NULL },
        { torn, 2, "offset " },
        { cut, 2, "offset " },
        { tmp_file("missing.mtrace"), 3, "missing.mtrace" },
    };
    const char *modes[] = { NULL, "--events", "--json" };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t m = 0; m < 3; m++) {
            char *argv[4] = { (char *)prog("memtrace-report") };
            int k = 1;
            if (modes[m])
                argv[k++] = (char *)modes[m];
            argv[k++] = (char *)cases[i].path;
            argv[k] = NULL;
            struct h_run r = h_run(argv, NULL, 0, NULL, 60);
            cr_assert(r.exited, "memtrace-report %s %s: killed by signal %d",
                      modes[m] ? modes[m] : "", cases[i].path, r.status);
            cr_assert_eq(r.status, cases[i].status, "memtrace-report %s %s: exit %d, want %d: %s",
                         modes[m] ? modes[m] : "", cases[i].path, r.status, cases[i].status, r.err);
            if (cases[i].err == NULL) {
                cr_assert_eq(r.err_len, 0, "stderr should be empty: %s", r.err);
            } else {
                cr_assert_eq(count_lines(r.err), 1, "one line expected: %s", r.err);
                cr_assert(strncmp(r.err, "memtrace-report: ", 17) == 0, "%s", r.err);
                cr_assert(strstr(r.err, cases[i].err) != NULL, "'%s' expected in: %s", cases[i].err,
                          r.err);
            }
            h_run_free(&r);
        }
    }
    free(data);
    free(path);
}

/* ---- where the trace goes ------------------------------------------------------------------ */

/* The shim must refuse to run a program whose trace it cannot create: exit 125 before main, one
 * stderr line naming the path and the reason. */
static void check_refused(const struct h_run *r, const char *path_part, const char *reason)
{
    cr_assert(r->exited, "killed by signal %d", r->status);
    cr_assert_eq(r->status, 125, "exit status %d, want 125 (stderr: %s)", r->status, r->err);
    cr_assert_eq(r->out_len, 0, "main must not run: stdout has '%s'", r->out);
    cr_assert_eq(count_lines(r->err), 1, "exactly one stderr line expected, got:\n%s", r->err);
    cr_assert(strncmp(r->err, "memtrace: error: ", 17) == 0, "%s", r->err);
    cr_assert(strstr(r->err, path_part) != NULL, "the line should name %s: %s", path_part, r->err);
    cr_assert(strstr(r->err, reason) != NULL, "the line should say '%s': %s", reason, r->err);
}

Test(robustness, output_in_missing_directory_stops_the_program_with_one_line)
{
    char *argv[] = { (char *)prog("progs/cfg_main"), NULL };
    struct h_run r = h_run(argv, NULL, 1, "nodir/t.%p.mtrace", 60);
    check_refused(&r, tmp_file("nodir/t."), "No such file or directory");
    h_run_free(&r);
}

Test(robustness, output_in_unwritable_directory_stops_the_program_with_one_line)
{
    char *dir = tmp_file("ro");
    cr_assert_eq(mkdir(dir, 0555), 0, "mkdir %s: %s", dir, strerror(errno));
    cr_assert_eq(chmod(dir, 0555), 0);
    char *argv[] = { (char *)prog("progs/cfg_main"), NULL };
    struct h_run r;
    if (geteuid() != 0) {
        r = h_run(argv, NULL, 1, "ro/t.%p.mtrace", 60);
    } else {
        /* root writes anywhere: run the program as nobody, which needs to reach the tmpdir */
        struct stat st;
        if (stat(argv[0], &st) != 0 || !(st.st_mode & S_IXOTH) ||
            stat(h_path("libmemtrace.so"), &st) != 0 || !(st.st_mode & S_IROTH))
            cr_skip_test("running as root and the build is not readable by others");
        cr_assert_eq(chmod(h_tmpdir(), 0711), 0);
        pid_t pid = spawn(argv, NULL, "ro/t.%p.mtrace", 65534, "ro.out", "ro.err");
        int st_ = wait_for(pid, 60);
        cr_assert(WIFEXITED(st_), "killed by signal %d", WTERMSIG(st_));
        memset(&r, 0, sizeof r);
        r.exited = 1;
        r.status = WEXITSTATUS(st_);
        cr_assert_neq(r.status, 126, "could not drop privileges or reach the tmpdir as nobody");
        r.out = h_read_file(tmp_file("ro.out"), &r.out_len);
        r.err = h_read_file(tmp_file("ro.err"), &r.err_len);
        cr_assert(r.out && r.err);
        r.out = realloc(r.out, r.out_len + 1);
        r.out[r.out_len] = '\0';
        r.err = realloc(r.err, r.err_len + 1);
        r.err[r.err_len] = '\0';
    }
    check_refused(&r, tmp_file("ro/t."), "Permission denied");
    h_run_free(&r);
}

static void check_mode_0600(const char *path)
{
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0, "%s: %s", path, strerror(errno));
    cr_assert(S_ISREG(st.st_mode), "%s should be a regular file", path);
    cr_assert_eq(st.st_mode & 07777, 0600, "%s has mode %o, want 0600", path,
                 (unsigned)(st.st_mode & 07777));
}

static void check_complete(const char *path)
{
    struct h_trace t;
    h_load(path, &t);
    cr_assert_eq(t.rc, 0, "%s: %s", path, t.error);
    cr_assert(t.has_end, "%s: no END record", path);
    h_trace_free(&t);
}

Test(robustness, output_symlink_is_not_followed)
{
    /* one symlink to an existing file, one dangling: neither target may be written or made */
    char victim[8192], absent[8192];
    snprintf(victim, sizeof victim, "%s", tmp_file("victim.txt"));
    snprintf(absent, sizeof absent, "%s", tmp_file("absent.txt"));
    cr_assert_eq(h_write_file(victim, "precious\n", 9), 0);
    cr_assert_eq(symlink(victim, tmp_file("link.mtrace")), 0);
    cr_assert_eq(symlink(absent, tmp_file("dangling.mtrace")), 0);
    const char *names[] = { "link.mtrace", "dangling.mtrace" };
    for (int i = 0; i < 2; i++) {
        char *argv[] = { (char *)prog("progs/cfg_main"), NULL };
        struct h_run r = h_run(argv, NULL, 1, names[i], 60);
        cr_assert(r.exited && r.status == 0, "%s: status %d: %s", names[i], r.status, r.err);
        cr_assert_eq(r.err_len, 0, "%s: stderr: %s", names[i], r.err);
        h_run_free(&r);
        char alt[256];
        snprintf(alt, sizeof alt, "%s.1", names[i]);
        check_mode_0600(tmp_file(alt));
        check_complete(tmp_file(alt));
        struct stat st;
        cr_assert_eq(lstat(tmp_file(names[i]), &st), 0);
        cr_assert(S_ISLNK(st.st_mode), "%s must still be the symlink", names[i]);
    }
    size_t len;
    char *text = h_read_file(victim, &len);
    cr_assert(text != NULL && len == 9 && memcmp(text, "precious\n", 9) == 0,
              "the symlink's target was modified");
    free(text);
    struct stat st;
    cr_assert(lstat(absent, &st) != 0 && errno == ENOENT,
              "the dangling symlink's target was created");
}

Test(robustness, second_run_with_the_same_name_gets_suffix_1)
{
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        char *argv[] = { (char *)prog("progs/cfg_main"), NULL };
        struct h_run r = h_run(argv, NULL, 1, "same.mtrace", 60);
        cr_assert(r.exited && r.status == 0, "run %d: status %d: %s", i, r.status, r.err);
        int pid = 0;
        cr_assert_eq(sscanf(r.out, "main ran pid=%d", &pid), 1, "%s", r.out);
        pids[i] = pid;
        h_run_free(&r);
    }
    const char *names[] = { "same.mtrace", "same.mtrace.1" };
    for (int i = 0; i < 2; i++) {
        check_mode_0600(tmp_file(names[i]));
        struct h_trace t;
        h_load(tmp_file(names[i]), &t);
        cr_assert_eq(t.rc, 0, "%s: %s", names[i], t.error);
        cr_assert(t.has_end);
        cr_assert_eq(t.status.header.pid, (uint32_t)pids[i],
                     "%s should be run %d's trace (pid %d), holds pid %u", names[i], i, pids[i],
                     t.status.header.pid);
        h_trace_free(&t);
    }
    char *paths[4];
    size_t n = h_traces("same.", paths, 4);
    cr_assert_eq(n, 2, "two traces expected, found %zu", n);
    h_free_paths(paths, n);
}

Test(robustness, full_disk_leaves_the_program_unaffected_and_the_trace_incomplete)
{
    char *dir = tmp_file("full");
    cr_assert_eq(mkdir(dir, 0700), 0);
    if (mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700") != 0)
        cr_skip_test("cannot mount a 64 KiB tmpfs (%s): needs root or CAP_SYS_ADMIN",
                     strerror(errno));
    snprintf(mounted, sizeof mounted, "%s", dir);
    char *argv[] = { (char *)prog("progs/robust_churn"), "2", "30000", NULL };
    char *env[] = { "MEMTRACE_BUFFER=4K", NULL };
    struct h_run plain = h_run(argv, NULL, 0, NULL, 60);
    struct h_run r = h_run(argv, env, 1, "full/t.%p.mtrace", 60);
    cr_assert(plain.exited && plain.status == 0, "without the shim: status %d", plain.status);
    cr_assert(r.exited, "killed by signal %d", r.status);
    cr_assert_eq(r.status, plain.status, "exit status %d, %d without the shim", r.status,
                 plain.status);
    cr_assert_str_eq(r.out, plain.out, "stdout must not change");
    /* Two lines: the failure as it happens (path, offset, reason), and at exit how many calls
     * went unrecorded (STYLE 2.4: with no trailer, the count goes into the final message). */
    cr_assert_eq(count_prefixed_lines(r.err, "memtrace: error: "), 2,
                 "the failure and the final count expected, stderr:\n%s", r.err);
    cr_assert_eq(count_lines(r.err), 2, "nothing else on stderr:\n%s", r.err);
    cr_assert(strstr(r.err, "No space left on device") != NULL, "%s", r.err);
    cr_assert(strstr(r.err, dir) != NULL, "the line should name the trace: %s", r.err);
    cr_assert(strstr(r.err, "calls were not recorded") != NULL, "the count is stated: %s", r.err);

    /* the trace is the one file in the mounted directory */
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct h_trace t;
        h_load(path, &t);
        cr_assert(t.rc == 0 || t.rc == RD_ERR_TRUNC, "%s: rc %d: %s", path, t.rc, t.error);
        cr_assert_eq(t.status.complete, 0, "%s: a trace cut short by a full disk has no END", path);
        cr_assert(t.nevents > 0, "%s: events written before the disk filled", path);
        h_trace_free(&t);
        found++;
    }
    closedir(d);
    cr_assert_eq(found, 1, "%d files in %s", found, dir);
    h_run_free(&plain);
    h_run_free(&r);
}

/* ---- the program takes our descriptor ------------------------------------------------------ */

/* robust_closefds closes every descriptor from 3 up, opens its own file and writes 2000 lines
 * while allocating (4 KiB buffers flush many times meanwhile); "occupy" also puts that file on
 * every descriptor from 900 up, where the trace's descriptor was. */
static void check_user_file_intact(const char *mode)
{
    char user[8192];
    snprintf(user, sizeof user, "%s/user-%s.txt", h_tmpdir(), mode);
    char *argv[] = { (char *)prog("progs/robust_closefds"), (char *)mode, user, NULL };
    char *env[] = { "MEMTRACE_BUFFER=4K", NULL };
    struct h_run r = h_run(argv, env, 1, "fds.%p.mtrace", 60);
    cr_assert(r.exited && r.status == 0,
              "%s: status %d (a failed write means the program's descriptor was closed or "
              "reused behind its back), stderr:\n%s",
              mode, r.status, r.err);
    cr_assert_str_eq(r.out, "done\n");

    char expect[65536];
    size_t n = 0;
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(expect + n, sizeof expect - n, "line %d\n", i);
    size_t len;
    char *got = h_read_file(user, &len);
    cr_assert_not_null(got, "%s missing", user);
    size_t first = 0;
    while (first < len && first < n && got[first] == expect[first])
        first++;
    cr_assert(len == n && first == n,
              "%s: the program's file holds %zu bytes, it wrote %zu; first difference at byte "
              "%zu",
              mode, len, n, first);
    free(got);

    /* The shim reopens its trace by name (it never writes through a number it no longer owns)
     * and goes on: nothing on stderr, and a complete trace. */
    cr_assert_eq(count_lines(r.err), 0, "%s: nothing expected on stderr:\n%s", mode, r.err);
    char *paths[4];
    size_t k = h_traces("fds.", paths, 4);
    cr_assert_eq(k, 1, "%zu traces", k);
    struct h_trace t;
    h_load(paths[0], &t);
    cr_assert_eq(t.rc, 0, "%s: the trace must read cleanly: %s", mode, t.error);
    cr_assert_eq(t.status.complete, 1, "%s: tracing goes on to the END record", mode);
    cr_assert_eq(t.dropped, 0, "%s: nothing dropped", mode);
    cr_assert(t.nevents > 0, "%s: the events are in the trace", mode);
    h_trace_free(&t);
    h_free_paths(paths, k);
    h_run_free(&r);
}

Test(robustness, program_closing_all_fds_keeps_its_own_file_intact)
{
    check_user_file_intact("close");
}

Test(robustness, program_reusing_the_trace_fd_number_keeps_its_own_file_intact)
{
    check_user_file_intact("occupy");
}

/* ---- signals ----------------------------------------------------------------------------- */

struct ts_event {
    uint64_t ts;
    size_t idx;
};

static int cmp_ts(const void *a, const void *b)
{
    const struct ts_event *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

Test(robustness, signal_handler_allocating_inside_the_shim_loses_no_event)
{
    enum { MAIN_SIZE = 1001, HANDLER_SIZE = 937 }; /* tests/progs/robust_signal.c */
    char *argv[] = { (char *)prog("progs/robust_signal"), "200000", "5000", NULL };
    struct h_run r = h_run(argv, NULL, 1, "sig.%p.mtrace", 100);
    cr_assert(r.exited && r.status == 0, "status %d (%s), stderr: %s", r.status,
              r.exited ? "exit" : "signal", r.err);
    long mm, mf, hm, hf;
    cr_assert_eq(sscanf(r.out, "main_malloc=%ld main_free=%ld handler_malloc=%ld handler_free=%ld",
                        &mm, &mf, &hm, &hf),
                 4, "%s", r.out);
    cr_assert_eq(r.err_len, 0, "stderr: %s", r.err);
    char *paths[4];
    size_t k = h_traces("sig.", paths, 4);
    cr_assert_eq(k, 1);
    struct h_trace t;
    h_load(paths[0], &t);
    cr_assert_eq(t.rc, 0, "%s", t.error);
    cr_assert(t.has_end);
    cr_assert_eq(t.dropped, 0, "%" PRIu64 " calls were not recorded", t.dropped);

    /* replay in time order: a marker free counts when it frees a live marker block */
    struct ts_event *order = malloc(t.nevents * sizeof *order);
    for (size_t i = 0; i < t.nevents; i++)
        order[i] = (struct ts_event){ t.events[i].ts_ns, i };
    qsort(order, t.nevents, sizeof *order, cmp_ts);
    uint64_t live[2][64];
    size_t nlive[2] = { 0, 0 };
    long got_malloc[2] = { 0, 0 }, got_free[2] = { 0, 0 };
    long nested_main = 0, nested_handler = 0;
    for (size_t i = 0; i < t.nevents; i++) {
        const struct rd_event *ev = &t.events[order[i].idx];
        int nested = (ev->flags & MTF_EVF_NESTED) != 0;
        if (ev->kind == MTF_EV_MALLOC && (ev->size == MAIN_SIZE || ev->size == HANDLER_SIZE)) {
            int side = ev->size == HANDLER_SIZE;
            got_malloc[side]++;
            cr_assert(nlive[side] < 64, "too many live marker blocks");
            live[side][nlive[side]++] = ev->addr;
            nested_main += nested && !side;
            nested_handler += nested && side;
        } else if (ev->kind == MTF_EV_FREE) {
            for (int side = 0; side < 2; side++) {
                for (size_t j = 0; j < nlive[side]; j++) {
                    if (live[side][j] != ev->addr)
                        continue;
                    live[side][j] = live[side][--nlive[side]];
                    got_free[side]++;
                    nested_main += nested && !side;
                    nested_handler += nested && side;
                    side = 2;
                    break;
                }
            }
        }
    }
    cr_log_info("%ld/%ld main and %ld/%ld handler calls; %" PRIu64 " nested events, %ld of them "
                "the handler's",
                mm + mf, got_malloc[0] + got_free[0], hm + hf, got_malloc[1] + got_free[1],
                t.nested, nested_handler);
    cr_assert_eq(got_malloc[0], mm, "main's mallocs: %ld in the trace, the program made %ld",
                 got_malloc[0], mm);
    cr_assert_eq(got_free[0], mf, "main's frees: %ld in the trace, the program made %ld",
                 got_free[0], mf);
    cr_assert_eq(got_malloc[1], hm, "the handler's mallocs: %ld in the trace, it made %ld",
                 got_malloc[1], hm);
    cr_assert_eq(got_free[1], hf, "the handler's frees: %ld in the trace, it made %ld", got_free[1],
                 hf);
    cr_assert_eq(nested_main, 0, "%ld events of main's loop flagged nested", nested_main);
    cr_assert_eq((uint64_t)nested_handler, t.nested,
                 "every nested event must be one of the handler's (%" PRIu64 " nested, %ld "
                 "the handler's)",
                 t.nested, nested_handler);
    cr_assert(nested_handler > 0,
              "no handler call interrupted the shim in %ld signals: nothing nested was tested", hm);
    free(order);
    h_trace_free(&t);
    h_free_paths(paths, k);
    h_run_free(&r);
}

/* ---- the loader --------------------------------------------------------------------------- */

Test(robustness, dlopen_dlclose_loop_with_allocating_threads_finishes_and_maps_the_library)
{
    enum { ROUNDS = 20000 };
    char rounds[16];
    snprintf(rounds, sizeof rounds, "%d", ROUNDS);
    const char *lib = prog("progs/librobust_dl.so");
    char *argv[] = { (char *)prog("progs/robust_dlopen"), (char *)lib, rounds, NULL };
    struct h_run plain = h_run(argv, NULL, 0, NULL, 100);
    cr_assert(plain.exited && plain.status == 0, "without the shim: status %d: %s", plain.status,
              plain.err);
    /* a deadlock shows as h_run's timeout */
    struct h_run r = h_run(argv, NULL, 1, "dl.%p.mtrace", 100);
    cr_assert(r.exited && r.status == 0, "status %d, stderr: %s", r.status, r.err);
    cr_assert_str_eq(r.out, plain.out);
    char *paths[4];
    size_t k = h_traces("dl.", paths, 4);
    cr_assert_eq(k, 1);
    /* streamed, not h_load: the trace holds millions of events */
    struct reader *rd = NULL;
    int rc = reader_open(&rd, paths[0]);
    cr_assert_eq(rc, 0, "%s", rd ? reader_error(rd) : "no reader");
    size_t loads = 0, ends = 0;
    uint64_t dropped = 0;
    struct rd_item it;
    while ((rc = reader_next(rd, &it)) > 0) {
        if (it.type == RD_ITEM_MODULE && it.module.action == MTF_MOD_LOAD &&
            strcmp(it.module.path, lib) == 0)
            loads++;
        if (it.type == RD_ITEM_END) {
            ends++;
            dropped += it.end.dropped;
        }
        if (it.type == RD_ITEM_LOSS)
            dropped += it.loss.count;
    }
    cr_assert_eq(rc, 0, "%s", reader_error(rd));
    cr_assert_eq(ends, 1, "END record expected");
    cr_assert_eq(dropped, 0, "%" PRIu64 " calls not recorded", dropped);
    cr_log_info("%s: %" PRIu64 " bytes, %" PRIu64 " events", paths[0], reader_status(rd)->file_size,
                reader_status(rd)->events);
    reader_close(rd);
    cr_assert_eq(loads, ROUNDS, "the module map should load %s once per dlopen: %zu of %d", lib,
                 loads, ROUNDS);
    h_free_paths(paths, k);
    h_run_free(&r);
    h_run_free(&plain);
}

/* ---- namespaces ---------------------------------------------------------------------------- */

Test(robustness, unshare_newuser_still_works_under_the_shim)
{
    char *argv[] = { (char *)prog("progs/robust_unshare"), NULL };
    struct h_run plain = h_run(argv, NULL, 0, NULL, 60);
    if (!plain.exited || plain.status != 0)
        cr_skip_test("unshare(CLONE_NEWUSER) fails without the shim too: %s", plain.out);
    struct h_run r = h_run(argv, NULL, 1, "ns.%p.mtrace", 60);
    cr_assert(r.exited && r.status == 0,
              "unshare(CLONE_NEWUSER) works without the shim but not under it (a helper "
              "thread?): status %d, %s %s",
              r.status, r.out, r.err);
    cr_assert_str_eq(r.out, "unshare ok\n");
    char *paths[4];
    size_t k = h_traces("ns.", paths, 4);
    cr_assert_eq(k, 1);
    check_complete(paths[0]);
    h_free_paths(paths, k);
    h_run_free(&r);
    h_run_free(&plain);
}
