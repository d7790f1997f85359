/* Integration-test helpers (see helpers.h). Runs programs with posix_spawn so the test runner
 * itself is never preloaded; decodes traces with the project's own reader. */
#include "helpers.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *h_build(void)
{
    static char build[4096];
    if (build[0] == '\0') {
        const char *b = getenv("MT_BUILD_DIR");
        if (b == NULL || *b == '\0')
            b = "build";
        if (realpath(b, build) == NULL)
            snprintf(build, sizeof build, "%s", b);
    }
    return build;
}

const char *h_path(const char *rel)
{
    static char bufs[8][8192];
    static int k;
    char *out = bufs[k++ & 7];
    snprintf(out, sizeof bufs[0], "%.4095s/%.4000s", h_build(), rel);
    return out;
}

static char tmpdir[4096];

const char *h_tmpdir(void)
{
    return tmpdir;
}

void h_tmpdir_setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/memtrace-test.XXXXXX", base && *base ? base : "/tmp");
    cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp failed: %s", strerror(errno));
}

void h_tmpdir_teardown(void)
{
    if (tmpdir[0] == '\0')
        return;
    DIR *d = opendir(tmpdir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[8192];
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(tmpdir);
    tmpdir[0] = '\0';
}

/* Environment for the child: ours minus LD_PRELOAD and MEMTRACE_*, plus the test's. */
static char **child_env(char *const extra[], int preload, const char *pattern)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (extra && extra[m])
        m++;
    char **env = calloc(n + m + 4, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0 && strncmp(environ[i], "MEMTRACE_", 9) != 0)
            env[k++] = strdup(environ[i]);
    if (preload) {
        char *s;
        cr_assert(asprintf(&s, "LD_PRELOAD=%s", h_path("libmemtrace.so")) > 0);
        env[k++] = s;
        cr_assert(asprintf(&s, "MEMTRACE_OUTPUT=%s/%s", tmpdir, pattern ? pattern : "t.%p.mtrace") >
                  0);
        env[k++] = s;
    }
    for (size_t i = 0; i < m; i++)
        env[k++] = strdup(extra[i]);
    env[k] = NULL;
    return env;
}

static void drain(int fd, char **buf, size_t *len, size_t *cap)
{
    char tmp[65536];
    ssize_t r = read(fd, tmp, sizeof tmp);
    if (r <= 0)
        return;
    if (*len + (size_t)r + 1 > *cap) {
        *cap = (*len + (size_t)r + 1) * 2;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *len, tmp, (size_t)r);
    *len += (size_t)r;
    (*buf)[*len] = '\0';
}

struct h_run h_run(char *const argv[], char *const env[], int preload, const char *out_pattern,
                   int timeout_s)
{
    struct h_run r;
    memset(&r, 0, sizeof r);
    int out[2], err[2];
    cr_assert(pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    if (tmpdir[0])
        posix_spawn_file_actions_addchdir_np(&fa, tmpdir);
    char **envp = child_env(env, preload, out_pattern);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    for (char **e = envp; *e; e++)
        free(*e);
    free(envp);
    close(out[1]);
    close(err[1]);
    cr_assert_eq(rc, 0, "cannot start %s: %s", argv[0], strerror(rc));
    size_t ocap = 0, ecap = 0;
    r.out = calloc(1, 1);
    r.err = calloc(1, 1);
    struct pollfd p[2] = { { out[0], POLLIN, 0 }, { err[0], POLLIN, 0 } };
    time_t deadline = time(NULL) + timeout_s;
    int open_fds = 2;
    while (open_fds > 0) {
        int left = (int)(deadline - time(NULL));
        if (left <= 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            cr_assert_fail("%s timed out after %d s", argv[0], timeout_s);
        }
        if (poll(p, 2, left * 1000) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            size_t before = i ? r.err_len : r.out_len;
            if (i)
                drain(err[0], &r.err, &r.err_len, &ecap);
            else
                drain(out[0], &r.out, &r.out_len, &ocap);
            if ((i ? r.err_len : r.out_len) == before) {
                close(p[i].fd);
                p[i].fd = -1;
                open_fds--;
            }
        }
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    r.exited = WIFEXITED(st);
    r.status = r.exited ? WEXITSTATUS(st) : WTERMSIG(st);
    return r;
}

void h_run_free(struct h_run *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t h_traces(const char *prefix, char **paths, size_t max)
{
    DIR *d = opendir(tmpdir);
    cr_assert_not_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (prefix ? strncmp(e->d_name, prefix, strlen(prefix)) != 0
                   : strstr(e->d_name, ".mtrace") == NULL)
            continue;
        if (n < max) {
            char *p;
            cr_assert(asprintf(&p, "%s/%s", tmpdir, e->d_name) > 0);
            paths[n] = p;
        }
        n++;
    }
    closedir(d);
    qsort(paths, n < max ? n : max, sizeof *paths, cmp_str);
    return n;
}

void h_free_paths(char **paths, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
}

static void add_stack(struct h_trace *t, const struct rd_event *ev)
{
    if (ev->stack >= t->nstacks) {
        uint32_t n = ev->stack + 1024;
        t->stacks = realloc(t->stacks, n * sizeof *t->stacks);
        t->stack_len = realloc(t->stack_len, n * sizeof *t->stack_len);
        memset(t->stacks + t->nstacks, 0, (n - t->nstacks) * sizeof *t->stacks);
        memset(t->stack_len + t->nstacks, 0, (n - t->nstacks) * sizeof *t->stack_len);
        t->nstacks = n;
    }
    if (t->stacks[ev->stack] != NULL)
        return;
    t->stacks[ev->stack] = malloc((ev->nframes + 1) * sizeof(uint64_t));
    memcpy(t->stacks[ev->stack], ev->frames, ev->nframes * sizeof(uint64_t));
    t->stack_len[ev->stack] = ev->nframes;
}

void h_load(const char *path, struct h_trace *t)
{
    memset(t, 0, sizeof *t);
    struct reader *r = NULL;
    t->rc = reader_open(&r, path);
    if (t->rc == 0) {
        struct rd_item it;
        size_t cap = 0;
        uint32_t max_serial = 0;
        while ((t->rc = reader_next(r, &it)) > 0) {
            switch (it.type) {
            case RD_ITEM_EVENT:
                if (it.ev.kind < MTF_EV_KIND_COUNT)
                    t->counts[it.ev.kind]++;
                if (it.ev.flags & MTF_EVF_NESTED)
                    t->nested++;
                if (it.ev.flags & MTF_EVF_FAILED)
                    t->failed++;
                if (it.ev.thread_serial > max_serial)
                    max_serial = it.ev.thread_serial;
                if (it.ev.kind == MTF_EV_STACK) {
                    add_stack(t, &it.ev);
                    break;
                }
                if (t->nevents == cap) {
                    cap = cap ? cap * 2 : 4096;
                    t->events = realloc(t->events, cap * sizeof *t->events);
                }
                t->events[t->nevents] = it.ev;
                t->events[t->nevents].frames = NULL;
                t->nevents++;
                break;
            case RD_ITEM_END:
                t->has_end = 1;
                t->end = it.end;
                break;
            case RD_ITEM_LOSS:
            case RD_ITEM_REACH:
                break;
            case RD_ITEM_TOTALS:
                t->has_totals = 1;
                t->totals = it.totals;
                break;
            case RD_ITEM_PROCESS:
                t->has_process = 1;
                snprintf(t->exe, sizeof t->exe, "%s", it.process.exe);
                break;
            case RD_ITEM_MODULE:
                if (it.module.action == MTF_MOD_LOAD) {
                    t->modules = realloc(t->modules, (t->nmodules + 1) * sizeof *t->modules);
                    struct h_module *m = &t->modules[t->nmodules++];
                    memset(m, 0, sizeof *m);
                    m->base = it.module.base;
                    m->path = strdup(it.module.path);
                    m->flags = it.module.flags;
                    m->nseg = it.module.nseg < 16 ? it.module.nseg : 16;
                    memcpy(m->segs, it.module.segs, m->nseg * sizeof m->segs[0]);
                }
                break;
            }
        }
        t->nthreads = max_serial;
    }
    if (r != NULL) {
        snprintf(t->error, sizeof t->error, "%s", reader_error(r));
        t->status = *reader_status(r);
        t->dropped = t->status.dropped; /* the last END's running total plus every LOSS */
        reader_close(r);
    }
}

void h_trace_free(struct h_trace *t)
{
    for (uint32_t i = 0; i < t->nstacks; i++)
        free(t->stacks[i]);
    free(t->stacks);
    free(t->stack_len);
    free(t->events);
    for (size_t i = 0; i < t->nmodules; i++)
        free(t->modules[i].path);
    free(t->modules);
    memset(t, 0, sizeof *t);
}

/* Symbol lookup in one ELF file: the function whose [value, value+size) holds vaddr. */
static int elf_symbol(const char *file, uint64_t vaddr, char *out, size_t cap)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    elf_version(EV_CURRENT);
    Elf *e = elf_begin(fd, ELF_C_READ, NULL);
    int found = 0;
    for (Elf_Scn *s = NULL; e && !found && (s = elf_nextscn(e, s)) != NULL;) {
        GElf_Shdr sh;
        if (gelf_getshdr(s, &sh) == NULL || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM))
            continue;
        Elf_Data *d = elf_getdata(s, NULL);
        size_t n = sh.sh_entsize ? sh.sh_size / sh.sh_entsize : 0;
        for (size_t i = 0; d && i < n; i++) {
            GElf_Sym sym;
            if (gelf_getsym(d, (int)i, &sym) == NULL || GELF_ST_TYPE(sym.st_info) != STT_FUNC)
                continue;
            if (vaddr >= sym.st_value && vaddr < sym.st_value + (sym.st_size ? sym.st_size : 1)) {
                const char *name = elf_strptr(e, sh.sh_link, sym.st_name);
                snprintf(out, cap, "%s", name ? name : "");
                found = 1;
                break;
            }
        }
    }
    if (e)
        elf_end(e);
    close(fd);
    return found;
}

void h_symbol(const struct h_trace *t, uint64_t pc, char *out, size_t cap)
{
    out[0] = '\0';
    uint64_t a = pc - 1;
    for (size_t i = 0; i < t->nmodules; i++) {
        const struct h_module *m = &t->modules[i];
        for (uint32_t s = 0; s < m->nseg; s++) {
            uint64_t lo = m->base + m->segs[s].vaddr;
            if (a >= lo && a < lo + m->segs[s].memsz) {
                elf_symbol(m->path, a - m->base, out, cap);
                return;
            }
        }
    }
}

int h_stack_has(const struct h_trace *t, uint32_t id, const char *func)
{
    if (id >= t->nstacks || t->stacks[id] == NULL)
        return 0;
    for (uint32_t i = 0; i < t->stack_len[id]; i++) {
        char name[256];
        h_symbol(t, t->stacks[id][i], name, sizeof name);
        if (strcmp(name, func) == 0)
            return 1;
    }
    return 0;
}

void end_tally(const char *path, struct end_tally *y)
{
    memset(y, 0, sizeof *y);
    struct reader *r = NULL;
    int rc = reader_open(&r, path);
    cr_assert_eq(rc, 0, "%s: %s", path, r ? reader_error(r) : "out of memory");
    struct rd_item it;
    while ((rc = reader_next(r, &it)) > 0) {
        if (it.type == RD_ITEM_EVENT && it.ev.kind < MTF_EV_KIND_COUNT) {
            y->total[it.ev.kind]++;
        } else if (it.type == RD_ITEM_END) {
            y->ends++;
            y->end = it.end;
            memcpy(y->before, y->total, sizeof y->before);
        }
    }
    cr_assert_eq(rc, 0, "%s: cannot decode: %s", path, reader_error(r));
    reader_close(r);
}

char *h_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    *len = n;
    return buf;
}

uint8_t *h_must_read(const char *path, size_t *len)
{
    char *buf = h_read_file(path, len);
    cr_assert_not_null(buf, "cannot read %s: %s", path, strerror(errno));
    return (uint8_t *)buf;
}

int h_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return close(fd);
}

void h_find_source(const char *src, char *out, size_t cap)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", h_build());
    for (;;) {
        int n = snprintf(out, cap, "%s/tests/progs/%s", dir, src);
        if (n > 0 && (size_t)n < cap && access(out, R_OK) == 0)
            return;
        char *slash = strrchr(dir, '/');
        if (slash == NULL || slash == dir)
            break;
        *slash = '\0';
    }
    char rel[4096], abs[PATH_MAX];
    snprintf(rel, sizeof rel, "tests/progs/%s", src);
    cr_assert(realpath(rel, abs) != NULL && strlen(abs) < cap,
              "fixture source tests/progs/%s not found above %s or here", src, h_build());
    memcpy(out, abs, strlen(abs) + 1); /* absolute: the compiler runs in the tmpdir */
}

int h_have_tool(const char *name)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

char *h_python(const char *script, const char *name, const char *args)
{
    char spath[4300], opath[4300], cmd[13000];
    snprintf(spath, sizeof spath, "%s/%s.py", h_tmpdir(), name);
    snprintf(opath, sizeof opath, "%s/%s.out", h_tmpdir(), name);
    cr_assert(h_write_file(spath, script, strlen(script)) == 0, "cannot write %s", spath);
    snprintf(cmd, sizeof cmd, "python3 %s %s > %s", spath, args, opath);
    cr_assert(system(cmd) == 0, "%s failed on %s", name, args);
    size_t len;
    char *out = h_read_file(opath, &len);
    cr_assert(out != NULL, "cannot read %s", opath);
    char *s = malloc(len + 2);
    cr_assert(s != NULL, "out of memory");
    s[0] = '\n';
    memcpy(s + 1, out, len + 1);
    free(out);
    return s;
}

char *h_json_flat(const char *path)
{
    static const char flatten_py[] =
        "import json, sys\n"
        "def walk(p, v):\n"
        "    if isinstance(v, dict):\n"
        "        for k in v: walk(p + [k], v[k])\n"
        "    elif isinstance(v, list):\n"
        "        for i, x in enumerate(v): walk(p + [str(i)], x)\n"
        "    else:\n"
        "        print('.'.join(p) + '=' + ('null' if v is None else str(v).lower() if "
        "isinstance(v, bool) else str(v).replace('\\n', ' ')))\n"
        "walk([], json.load(open(sys.argv[1])))\n";
    return h_python(flatten_py, "flatten", path);
}

const char *h_json_get(const char *flat, const char *key, char *buf, size_t cap)
{
    char pat[600];
    snprintf(pat, sizeof pat, "\n%s=", key);
    const char *p = strstr(flat, pat);
    if (p == NULL)
        return NULL;
    p += strlen(pat);
    size_t n = strcspn(p, "\n");
    snprintf(buf, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
    return buf;
}
