/* `memtrace-report check` (check.h): the command line, reading each trace of a run, the
 * decision and the exit status. One trace at a time: its replay and symbolizer are freed once
 * its findings (symbolized stacks copied) are kept, so memory grows with the findings, not with
 * the run. Only this file chooses an exit status; the renderers print what it decided.
 *
 * Lost versus reachable comes from the exit leak scan (REACH records, trace-format.md §9.1):
 * besides the replay's reachable mark (aggregate.c), the scan's direct/indirect state of each
 * block is kept here, so lost leaks can be split as memcheck splits them (definitely/indirectly).
 */
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "aggregate.h"
#include "input.h"
#include "reader.h"
#include "render.h"
#include "stackview.h"
#include "symbolize.h"
#include "util.h"

#define MAX_SUPP_FILES 16

static const char usage_text[] =
    "Usage: memtrace-report check [OPTIONS] TRACE|DIR...\n"
    "The CI leak gate: read every trace of a run (files, or directories holding one *.mtrace\n"
    "file per process, as `memtrace check` writes them), decide, and exit non-zero when the\n"
    "run leaked or grew past a limit. Every finding names its process (command, pid, parent)\n"
    "and each leak's stack (function, file:line).\n"
    "\n"
    "A process fails the gate when (each test is per process):\n"
    "  - it leaked: blocks live at exit that the exit leak scan found no pointer to (lost:\n"
    "    memcheck's definitely and indirectly lost), after suppressions; any lost block fails\n"
    "    unless --max-leak-bytes or --max-leak-blocks set a limit. Blocks still pointed to\n"
    "    from globals, stacks or TLS (reachable) are reported apart and pass. A trace written\n"
    "    without the scan (MEMTRACE_LEAK_SCAN unset) counts every live block as lost\n"
    "  - its heapUsed peak exceeded --max-heap\n"
    "  - the heap cap (MEMTRACE_HEAP_LIMIT) killed it\n"
    "  - the shim could not record some calls (dropped events)\n"
    "  - its trace is incomplete, truncated or corrupt (unless --allow-incomplete)\n"
    "Leaks are not checked in a process that ended by exec or by a signal.\n"
    "\n"
    "Options:\n"
    "  --max-leak-bytes N        fail when lost bytes exceed N\n"
    "  --max-leak-blocks N       fail when lost blocks exceed N\n"
    "  --fail-on-reachable       count reachable blocks as leaks too (and list their sites)\n"
    "  --max-heap SIZE           fail when heapUsed peaks above SIZE (4096, 64K, 1.5M, 2G;\n"
    "                            powers of 1024)\n"
    "  --allow-incomplete        incomplete or damaged traces do not fail (what was read is\n"
    "                            still checked for dropped events, the cap and the heap)\n"
    "  -s, --suppressions FILE   LeakSanitizer-format suppressions: 'leak:PATTERN' lines\n"
    "                            matching a function, module or source file of any frame ('*'\n"
    "                            wildcard, ^ and $ anchors), '#' comments; may be repeated.\n"
    "                            The summary says how often each rule matched\n"
    "  --no-default-suppressions do not hide what the loader, stdio and the C/C++ runtime keep\n"
    "                            to exit on purpose\n"
    "  --json FILE               the findings as JSON (docs/check-json.md); - is stdout\n"
    "  --junit FILE              JUnit XML: one test case per process, a failure per failing one\n"
    "  --sarif FILE              SARIF 2.1.0: one result per leak site, located at its innermost\n"
    "                            frame with a source file under --source-root\n"
    "  --source-root DIR         root of the sources for SARIF paths (default: the current\n"
    "                            directory)\n"
    "  -n, --top N               leak sites shown per process in the summary (default 10)\n"
    "  --frames N                frames shown per stack in the summary (default 16)\n"
    "  --command-status N        the checked command's own exit status (`memtrace check` passes\n"
    "                            it): when not 0 it becomes the exit status, unless the heap\n"
    "                            cap killed the command (134)\n"
    "  -h, --help                show this help\n"
    "\n"
    "Exit status:\n"
    "   0  every process passed\n"
    "   1  bad command line, or a suppressions file that cannot be used\n"
    "   3  a trace cannot be opened or is not a memtrace trace, no trace was found, an output\n"
    "      file cannot be written, or memory ran out\n"
    "  23  the gate failed (23 is LeakSanitizer's default exit code)\n"
    "   N  with --command-status N (N not 0): N\n"
    "\n"
    "Examples:\n"
    "  memtrace check -- ./unit-tests\n"
    "      run the tests under the shim and check every process they started\n"
    "  memtrace-report check /tmp/memtrace-check.Xa3f9\n"
    "      check the traces `memtrace check` kept\n"
    "  memtrace-report check --max-leak-bytes 4096 --junit leaks.xml run.mtrace\n"
    "      tolerate 4 KB of lost memory per process; JUnit XML for the CI's test view\n";

/* ---- the exit scan's verdict per address ----------------------------------------------------- */

/* Open addressing, linear probing, backward-shift deletion. Holds the lost blocks of the last
 * scan (MTF_REACH_DIRECT/INDIRECT) and every block allocated after it (ADDR_AFTER: the scan
 * never saw it, so it cannot be called reachable). */
#define ADDR_AFTER 3

struct addrmap {
    uint64_t *key; /* 0: empty (no block lives at address 0) */
    uint8_t *val;
    size_t cap, n;
};

static size_t am_slot(const struct addrmap *m, uint64_t k)
{
    uint64_t h = k * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 20) & (m->cap - 1);
}

static void am_put(struct addrmap *m, uint64_t k, uint8_t v);

static void am_grow(struct addrmap *m)
{
    struct addrmap old = *m;
    m->cap = old.cap ? old.cap * 2 : 1024;
    m->key = xmalloc(m->cap * sizeof *m->key);
    m->val = xmalloc(m->cap);
    memset(m->key, 0, m->cap * sizeof *m->key);
    m->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.key[i])
            am_put(m, old.key[i], old.val[i]);
    free(old.key);
    free(old.val);
}

static void am_put(struct addrmap *m, uint64_t k, uint8_t v)
{
    if (k == 0)
        return;
    if ((m->n + 1) * 2 > m->cap)
        am_grow(m);
    size_t i = am_slot(m, k);
    while (m->key[i] && m->key[i] != k)
        i = (i + 1) & (m->cap - 1);
    if (!m->key[i])
        m->n++;
    m->key[i] = k;
    m->val[i] = v;
}

static int am_get(const struct addrmap *m, uint64_t k)
{
    if (m->cap == 0 || k == 0)
        return 0;
    for (size_t i = am_slot(m, k); m->key[i]; i = (i + 1) & (m->cap - 1))
        if (m->key[i] == k)
            return m->val[i];
    return 0;
}

static void am_del(struct addrmap *m, uint64_t k)
{
    if (m->cap == 0 || k == 0)
        return;
    size_t i = am_slot(m, k);
    while (m->key[i] && m->key[i] != k)
        i = (i + 1) & (m->cap - 1);
    if (!m->key[i])
        return;
    /* shift back every later entry of the run that may sit before its home slot */
    for (size_t j = (i + 1) & (m->cap - 1); m->key[j]; j = (j + 1) & (m->cap - 1)) {
        size_t home = am_slot(m, m->key[j]);
        if (((j - home) & (m->cap - 1)) >= ((j - i) & (m->cap - 1))) {
            m->key[i] = m->key[j];
            m->val[i] = m->val[j];
            i = j;
        }
    }
    m->key[i] = 0;
    m->n--;
}

static void am_clear(struct addrmap *m)
{
    if (m->cap)
        memset(m->key, 0, m->cap * sizeof *m->key);
    m->n = 0;
}

static void am_free(struct addrmap *m)
{
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

struct scan {
    struct addrmap map;
    int open; /* inside a scan's records */
    int seen; /* a scan finished: later allocations are ADDR_AFTER */
};

static int is_alloc_kind(unsigned k)
{
    return (k >= MTF_EV_MALLOC && k <= MTF_EV_PVALLOC) && k != MTF_EV_FREE;
}

static void scan_item(struct scan *s, const struct rd_item *item)
{
    if (item->type == RD_ITEM_REACH) {
        if (!s->open)
            am_clear(&s->map);
        for (uint32_t i = 0; i < item->reach.h.count; i++)
            am_put(&s->map, item->reach.entries[i].addr, (uint8_t)item->reach.entries[i].state);
        s->open = !(item->reach.h.flags & MTF_REACHF_LAST);
        s->seen |= !s->open;
        return;
    }
    if (item->type != RD_ITEM_EVENT || !s->seen)
        return;
    const struct rd_event *e = &item->ev;
    if (e->flags & MTF_EVF_FAILED)
        return;
    if (e->kind == MTF_EV_FREE)
        am_del(&s->map, e->addr);
    if (e->kind == MTF_EV_REALLOC || e->kind == MTF_EV_REALLOCARRAY)
        am_del(&s->map, e->old_addr);
    if (is_alloc_kind(e->kind))
        am_put(&s->map, e->addr, ADDR_AFTER);
}

/* ---- options --------------------------------------------------------------------------------- */

struct cli {
    struct chk_opts o;
    const char *supp_files[MAX_SUPP_FILES];
    int nsupp_files;
    char **paths;
    int npaths;
};

static int usage_error(const char *what)
{
    report_error("check: %s", what);
    fputs("Try 'memtrace-report check --help'.\n", stderr);
    return CHECK_EXIT_USAGE;
}

/* A byte size: digits with an optional fraction and K, M, G or T (powers of 1024), as the shim
 * reads MEMTRACE_HEAP_LIMIT. 0, or -1. */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s)
        return -1;
    double mult = 1;
    switch (*end) {
    case 'k':
    case 'K':
        mult = 1024.0;
        end++;
        break;
    case 'm':
    case 'M':
        mult = 1024.0 * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        mult = 1024.0 * 1024 * 1024;
        end++;
        break;
    case 't':
    case 'T':
        mult = 1024.0 * 1024 * 1024 * 1024;
        end++;
        break;
    default:
        break;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || v * mult >= 18446744073709549568.0)
        return -1;
    *out = (uint64_t)(v * mult);
    return 0;
}

static int parse_count(const char *s, uint64_t *out)
{
    char *end;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

enum {
    OPT_MAX_BYTES = 256,
    OPT_MAX_BLOCKS,
    OPT_REACHABLE,
    OPT_MAX_HEAP,
    OPT_INCOMPLETE,
    OPT_NO_DEFAULT,
    OPT_JSON,
    OPT_JUNIT,
    OPT_SARIF,
    OPT_SOURCE_ROOT,
    OPT_FRAMES,
    OPT_COMMAND_STATUS,
};

static int bad_value(const char *opt, const char *val, const char *expected)
{
    char msg[256];
    snprintf(msg, sizeof msg, "%s %.60s: expected %s", opt, val, expected);
    return usage_error(msg);
}

/* One option with its value; 0, or the exit status to end with. */
static int parse_one(struct cli *c, int opt, const char *val)
{
    uint64_t v;
    switch (opt) {
    case OPT_MAX_BYTES:
        if (parse_size(val, &c->o.max_leak_bytes) != 0)
            return bad_value("--max-leak-bytes", val, "a byte count (4096, 64K, 1.5M)");
        return 0;
    case OPT_MAX_BLOCKS:
        if (parse_count(val, &c->o.max_leak_blocks) != 0)
            return bad_value("--max-leak-blocks", val, "a number of blocks");
        return 0;
    case OPT_MAX_HEAP:
        if (parse_size(val, &c->o.max_heap) != 0)
            return bad_value("--max-heap", val, "a byte size (4096, 64K, 1.5M, 2G)");
        return 0;
    case 'n':
    case OPT_FRAMES:
        if (parse_count(val, &v) != 0 || v == 0 || v > 1000000)
            return bad_value(opt == 'n' ? "--top" : "--frames", val, "a number from 1 to 1000000");
        *(opt == 'n' ? &c->o.top : &c->o.frames) = (unsigned)v;
        return 0;
    case OPT_COMMAND_STATUS:
        if (parse_count(val, &v) != 0 || v > 255)
            return bad_value("--command-status", val, "an exit status, 0 to 255");
        c->o.command_status = (int)v;
        return 0;
    case 's':
        if (c->nsupp_files == MAX_SUPP_FILES)
            return usage_error("too many --suppressions files (at most 16)");
        c->supp_files[c->nsupp_files++] = val;
        return 0;
    }
    return 0;
}

/* 0 to go on, or the exit status to end with (-1: printed --help, exit 0). */
static int parse_args(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "max-leak-bytes", required_argument, NULL, OPT_MAX_BYTES },
        { "max-leak-blocks", required_argument, NULL, OPT_MAX_BLOCKS },
        { "fail-on-reachable", no_argument, NULL, OPT_REACHABLE },
        { "max-heap", required_argument, NULL, OPT_MAX_HEAP },
        { "allow-incomplete", no_argument, NULL, OPT_INCOMPLETE },
        { "suppressions", required_argument, NULL, 's' },
        { "no-default-suppressions", no_argument, NULL, OPT_NO_DEFAULT },
        { "json", required_argument, NULL, OPT_JSON },
        { "junit", required_argument, NULL, OPT_JUNIT },
        { "sarif", required_argument, NULL, OPT_SARIF },
        { "source-root", required_argument, NULL, OPT_SOURCE_ROOT },
        { "top", required_argument, NULL, 'n' },
        { "frames", required_argument, NULL, OPT_FRAMES },
        { "command-status", required_argument, NULL, OPT_COMMAND_STATUS },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int opt, rc;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":s:n:h", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_REACHABLE:
            c->o.fail_on_reachable = 1;
            break;
        case OPT_INCOMPLETE:
            c->o.allow_incomplete = 1;
            break;
        case OPT_NO_DEFAULT:
            c->o.default_supp = 0;
            break;
        case OPT_JSON:
            c->o.json = optarg;
            break;
        case OPT_JUNIT:
            c->o.junit = optarg;
            break;
        case OPT_SARIF:
            c->o.sarif = optarg;
            break;
        case OPT_SOURCE_ROOT:
            c->o.source_root = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return fflush(stdout) == 0 ? -1 : CHECK_EXIT_IO;
        case ':': {
            char msg[128];
            snprintf(msg, sizeof msg, "option '%s' needs a value", argv[optind - 1]);
            return usage_error(msg);
        }
        case '?': {
            char msg[128];
            if (optopt)
                snprintf(msg, sizeof msg, "unknown option '-%c'", optopt);
            else
                snprintf(msg, sizeof msg, "unknown option '%s'", argv[optind - 1]);
            return usage_error(msg);
        }
        default:
            if ((rc = parse_one(c, opt, optarg)) != 0)
                return rc;
        }
    }
    if (optind == argc)
        return usage_error("no trace given (trace files, or a directory of them)");
    c->paths = argv + optind;
    c->npaths = argc - optind;
    return 0;
}

/* ---- collecting trace files ------------------------------------------------------------------ */

struct pathlist {
    char **p;
    size_t n, cap;
};

static void pl_add(struct pathlist *l, char *path)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->p = xrealloc(l->p, l->cap * sizeof *l->p);
    }
    l->p[l->n++] = path;
}

/* A trace name the shim writes: *.mtrace, or *.mtrace.N when the name was taken. */
static int is_trace_name(const char *name)
{
    const char *m = NULL;
    for (const char *s = strstr(name, ".mtrace"); s; s = strstr(s + 1, ".mtrace"))
        m = s;
    if (m == NULL || m == name)
        return 0;
    m += strlen(".mtrace");
    if (*m == '\0')
        return 1;
    if (*m++ != '.' || *m == '\0')
        return 0;
    return strspn(m, "0123456789") == strlen(m);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Files of the operands: a file as given, a directory's trace files sorted by name. 0, or -1
 * with the error printed. */
static int collect(struct pathlist *l, char **paths, int n)
{
    for (int i = 0; i < n; i++) {
        struct stat sb;
        if (strcmp(paths[i], "-") != 0 && stat(paths[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            DIR *d = opendir(paths[i]);
            if (d == NULL) {
                report_error("check: %s: %s", paths[i], strerror(errno));
                return -1;
            }
            size_t first = l->n;
            struct dirent *de;
            while ((de = readdir(d)) != NULL) {
                if (!is_trace_name(de->d_name))
                    continue;
                size_t len = strlen(paths[i]) + strlen(de->d_name) + 2;
                char *p = xmalloc(len);
                snprintf(p, len, "%s/%s", paths[i], de->d_name);
                if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
                    pl_add(l, p);
                else
                    free(p);
            }
            closedir(d);
            qsort(l->p + first, l->n - first, sizeof *l->p, cmp_str);
        } else {
            pl_add(l, xstrdup(paths[i]));
        }
    }
    return 0;
}

/* ---- one trace ------------------------------------------------------------------------------- */

static char *xstrdup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void copy_stack(struct chk_stack *out, struct stackview *v, uint32_t id)
{
    const struct sv_stack *s = sv_get(v, id);
    out->n = s->n;
    out->truncated = s->truncated;
    out->f = xmalloc((s->n ? (size_t)s->n : 1) * sizeof *out->f);
    for (int i = 0; i < s->n; i++) {
        const struct sv_frame *f = &s->f[i];
        out->f[i] = (struct chk_frame){
            .function = xstrdup_or_null(f->function),
            .file = xstrdup_or_null(f->file),
            .module = xstrdup_or_null(f->module),
            .line = f->line,
            .module_offset = f->module_offset,
            .pc = f->pc,
            .inlined = f->inlined,
        };
    }
}

static void free_stack(struct chk_stack *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->f[i].function);
        free(s->f[i].file);
        free(s->f[i].module);
    }
    free(s->f);
    s->f = NULL;
    s->n = 0;
}

/* Per stack id: what its blocks live at the end are. */
struct tally {
    uint64_t direct_bytes, direct_blocks, indirect_bytes, indirect_blocks;
    uint64_t other_bytes, other_blocks; /* lost without a verdict (no scan, or after it) */
    uint64_t reach_bytes, reach_blocks;
};

struct classify {
    const struct scan *scan;
    int have_scan;
    struct tally *t; /* by stack id */
    size_t cap;
    struct chk_proc *p;
};

static void classify_block(void *ctx, uint64_t addr, uint64_t size, uint64_t slack, uint32_t stack,
                           uint32_t cls)
{
    (void)slack;
    (void)cls;
    struct classify *c = ctx;
    if (stack >= c->cap) {
        size_t cap = c->cap ? c->cap : 64;
        while (cap <= stack)
            cap *= 2;
        c->t = xrealloc(c->t, cap * sizeof *c->t);
        memset(c->t + c->cap, 0, (cap - c->cap) * sizeof *c->t);
        c->cap = cap;
    }
    struct tally *t = &c->t[stack];
    c->p->live_bytes += size;
    c->p->live_blocks++;
    switch (c->have_scan ? am_get(&c->scan->map, addr) : ADDR_AFTER) {
    case MTF_REACH_DIRECT:
        t->direct_bytes += size, t->direct_blocks++;
        break;
    case MTF_REACH_INDIRECT:
        t->indirect_bytes += size, t->indirect_blocks++;
        break;
    case ADDR_AFTER:
        t->other_bytes += size, t->other_blocks++;
        break;
    default:
        t->reach_bytes += size, t->reach_blocks++;
    }
}

static int by_lost(const void *pa, const void *pb)
{
    const struct chk_site *a = pa, *b = pb;
    if ((a->lost_blocks > 0) != (b->lost_blocks > 0))
        return a->lost_blocks > 0 ? -1 : 1;
    uint64_t ka = a->lost_blocks ? a->lost_bytes : a->reachable_bytes;
    uint64_t kb = b->lost_blocks ? b->lost_bytes : b->reachable_bytes;
    if (ka != kb)
        return ka > kb ? -1 : 1;
    return a->stack < b->stack ? -1 : a->stack > b->stack;
}

/* Sites holding blocks at the end, after suppressions; totals of the process and the rules. */
static void leaks(struct chk_run *r, struct chk_proc *p, const struct agg *a, struct stackview *v,
                  const struct scan *scan)
{
    struct classify c = { .scan = scan, .have_scan = p->leak_scan, .p = p };
    agg_live_blocks(a, classify_block, &c);
    if (!p->leaks_checked) {
        free(c.t);
        return;
    }
    p->sites = xmalloc((c.cap ? c.cap : 1) * sizeof *p->sites);
    for (size_t id = 0; id < c.cap; id++) {
        const struct tally *t = &c.t[id];
        uint64_t lost_blocks = t->direct_blocks + t->indirect_blocks + t->other_blocks;
        uint64_t lost_bytes = t->direct_bytes + t->indirect_bytes + t->other_bytes;
        if (lost_blocks + t->reach_blocks == 0)
            continue;
        int rule = supp_match(&r->supp, sv_get(v, (uint32_t)id));
        if (rule >= 0) {
            struct supp_rule *sr = &r->supp.rules[rule];
            sr->stacks++;
            sr->blocks += lost_blocks + t->reach_blocks;
            sr->bytes += lost_bytes + t->reach_bytes;
            p->supp_blocks += lost_blocks + t->reach_blocks;
            p->supp_bytes += lost_bytes + t->reach_bytes;
            continue;
        }
        struct chk_site *s = &p->sites[p->nsites++];
        *s = (struct chk_site){
            .stack = (uint32_t)id,
            .direct_bytes = t->direct_bytes + t->other_bytes,
            .direct_blocks = t->direct_blocks + t->other_blocks,
            .indirect_bytes = t->indirect_bytes,
            .indirect_blocks = t->indirect_blocks,
            .lost_bytes = lost_bytes,
            .lost_blocks = lost_blocks,
            .reachable_bytes = t->reach_bytes,
            .reachable_blocks = t->reach_blocks,
        };
        if (!p->leak_scan) /* no verdict per block: neither direct nor indirect is known */
            s->direct_bytes = s->direct_blocks = 0;
        copy_stack(&s->st, v, (uint32_t)id);
        p->nlost_sites += lost_blocks > 0;
        p->nreach_sites += t->reach_blocks > 0;
        p->direct_bytes += s->direct_bytes, p->direct_blocks += s->direct_blocks;
        p->indirect_bytes += s->indirect_bytes, p->indirect_blocks += s->indirect_blocks;
        p->lost_bytes += lost_bytes, p->lost_blocks += lost_blocks;
        p->reachable_bytes += t->reach_bytes, p->reachable_blocks += t->reach_blocks;
    }
    qsort(p->sites, p->nsites, sizeof *p->sites, by_lost);
    free(c.t);
}

static void fill_process(struct chk_proc *p, const struct agg *a, const struct rd_status *st)
{
    p->exe = xstrdup_or_null(a->exe);
    p->cmdline = xstrdup_or_null(a->cmdline);
    const char *slash = a->exe ? strrchr(a->exe, '/') : NULL;
    p->name = xstrdup(slash ? slash + 1 : a->exe ? a->exe : "?");
    p->pid = a->pid;
    p->parent_pid = st->header.parent_pid;
    p->origin = st->header.origin;
    p->start_realtime_ns = st->header.start_realtime_ns;
    p->duration_ns = a->last_ts_ns > a->first_ts_ns ? a->last_ts_ns - a->first_ts_ns : 0;
    p->have_end = a->have_end;
    p->end_reason = a->end.reason;
    p->end_status = a->end.status;
    p->complete = st->complete;
    p->truncated = st->truncated;
    p->dropped = a->dropped;
    p->leak_scan = a->have_reach;
    p->scan_running = (a->reach_flags & MTF_REACHF_RUNNING) != 0;
    p->peak_heap = a->peak.heap_used;
    p->limits_total = a->limits_total;
    /* leaks mean something only when the process ended by exit and the trace is whole */
    p->leaks_checked =
        st->complete && p->error == NULL && a->have_end && a->end.reason == MTF_END_EXIT;
}

/* A sampled trace: the gate uses the exact lost totals of its TOTALS record, never the sampled
 * sites' sum; the lost blocks no sampled site accounts for are reported as such. */
static void sampled_totals(struct chk_proc *p, const struct agg *a)
{
    p->sample_bytes = a->sample_bytes;
    if (a->sample_bytes == 0 || !a->have_totals || !p->leaks_checked)
        return;
    const struct mtf_totals *t = &a->totals;
    uint64_t blocks, bytes;
    if (t->flags & MTF_TOTALSF_SCANNED) {
        blocks = t->lost_blocks, bytes = t->lost_bytes;
    } else {
        blocks = t->live_blocks > 0 ? (uint64_t)t->live_blocks : 0;
        bytes = t->live_usable > 0 ? (uint64_t)t->live_usable : 0;
    }
    blocks = blocks > p->supp_blocks ? blocks - p->supp_blocks : 0;
    bytes = bytes > p->supp_bytes ? bytes - p->supp_bytes : 0;
    p->unsampled_blocks = blocks > p->lost_blocks ? blocks - p->lost_blocks : 0;
    p->unsampled_bytes = bytes > p->lost_bytes ? bytes - p->lost_bytes : 0;
    p->lost_blocks = blocks;
    p->lost_bytes = bytes;
    p->lost_exact = 1;
}

static void cap_refusal(struct chk_proc *p, const struct agg *a, struct stackview *v)
{
    for (size_t i = 0; i < a->nlimits; i++) {
        if (a->limits[i].mode != MTF_LIMIT_ABORT)
            continue;
        if (p->limits_abort++ == 0) {
            const struct agg_limit *l = &a->limits[i];
            p->cap.limit = l->limit, p->cap.live = l->live, p->cap.request = l->request;
            p->cap.call = l->call;
            copy_stack(&p->cap.st, v, l->stack);
        }
    }
}

/* Read one trace into *p. 0, or -1 when it cannot be read at all (printed). */
static int load_trace(struct chk_run *r, const char *path, struct chk_proc *p)
{
    memset(p, 0, sizeof *p);
    p->trace = xstrdup(path);
    struct input *in;
    int rc = input_open(&in, path);
    if (in == NULL) {
        report_error("check: out of memory opening %s", path);
        return -1;
    }
    if (rc == RD_ERR_IO || rc == RD_ERR_NOMEM || rc == RD_ERR_FORMAT) {
        report_error("check: %s", input_error(in));
        input_close(in);
        return -1;
    }
    const struct rd_status *st = input_status(in);
    struct agg *a = agg_new();
    struct symbolizer *sym = sym_new();
    struct scan scan = { 0 };
    if (rc == 0) {
        struct rd_item item;
        agg_header(a, &st->header);
        while ((rc = input_next(in, &item)) > 0) {
            /* a map entry the symbolizer refuses leaves its frames as addresses */
            if (item.type == RD_ITEM_MODULE && sym_module(sym, &item.module) != 0)
                p->module_warnings++;
            agg_item(a, &item);
            scan_item(&scan, &item);
        }
    }
    char msg[640];
    if (rc < 0) {
        p->error = xstrdup(input_error(in));
    } else if (!st->complete) {
        snprintf(msg, sizeof msg,
                 "%s: offset %" PRIu64 ": no END record: the trace is incomplete (the process was "
                 "killed, or tracing stopped)",
                 input_name(in), st->valid_bytes);
        p->error = xstrdup(msg);
    }
    agg_finish(a);
    fill_process(p, a, st);
    p->truncated |= rc == RD_ERR_TRUNC;
    struct stackview *v = sv_new(sym, a);
    leaks(r, p, a, v, &scan);
    sampled_totals(p, a);
    cap_refusal(p, a, v);
    sv_free(v);
    am_free(&scan.map);
    sym_free(sym);
    agg_free(a);
    input_close(in);
    return rc == RD_ERR_NOMEM ? -1 : 0;
}

/* ---- the decision ---------------------------------------------------------------------------- */

uint64_t chk_leak_bytes(const struct chk_run *r, const struct chk_proc *p)
{
    return p->lost_bytes + (r->o.fail_on_reachable ? p->reachable_bytes : 0);
}

uint64_t chk_leak_blocks(const struct chk_run *r, const struct chk_proc *p)
{
    return p->lost_blocks + (r->o.fail_on_reachable ? p->reachable_blocks : 0);
}

static int leaks_fail(const struct chk_run *r, const struct chk_proc *p)
{
    const struct chk_opts *o = &r->o;
    uint64_t bytes = chk_leak_bytes(r, p), blocks = chk_leak_blocks(r, p);
    if (o->max_leak_bytes == CHK_UNSET && o->max_leak_blocks == CHK_UNSET)
        return blocks > 0;
    return (o->max_leak_bytes != CHK_UNSET && bytes > o->max_leak_bytes) ||
           (o->max_leak_blocks != CHK_UNSET && blocks > o->max_leak_blocks);
}

static unsigned decide(const struct chk_run *r, const struct chk_proc *p)
{
    unsigned fail = 0;
    if (p->leaks_checked && leaks_fail(r, p))
        fail |= CHK_FAIL_LEAKS;
    if (r->o.max_heap != CHK_UNSET && p->peak_heap > r->o.max_heap)
        fail |= CHK_FAIL_HEAP;
    if (p->limits_abort > 0 || (p->limits_total > 0 && p->have_end &&
                                p->end_reason == MTF_END_SIGNAL && p->end_status == SIGABRT))
        fail |= CHK_FAIL_CAP;
    if (p->dropped > 0)
        fail |= CHK_FAIL_DROPPED;
    if (p->error != NULL && !r->o.allow_incomplete)
        fail |= CHK_FAIL_INCOMPLETE;
    return fail;
}

const char *chk_fail_name(unsigned bit)
{
    switch (bit) {
    case CHK_FAIL_LEAKS:
        return "leaks";
    case CHK_FAIL_HEAP:
        return "max_heap";
    case CHK_FAIL_CAP:
        return "heap_cap";
    case CHK_FAIL_DROPPED:
        return "dropped";
    case CHK_FAIL_INCOMPLETE:
        return "incomplete";
    }
    return "unknown";
}

static const char *plural(uint64_t n)
{
    return n == 1 ? "" : "s";
}

static void limit_text(const struct chk_opts *o, char *buf, size_t cap)
{
    char b[32];
    if (o->max_leak_bytes == CHK_UNSET && o->max_leak_blocks == CHK_UNSET)
        snprintf(buf, cap, "limit: none");
    else if (o->max_leak_blocks == CHK_UNSET)
        snprintf(buf, cap, "limit: %s", render_bytes(b, sizeof b, o->max_leak_bytes));
    else if (o->max_leak_bytes == CHK_UNSET)
        snprintf(buf, cap, "limit: %" PRIu64 " block%s", o->max_leak_blocks,
                 plural(o->max_leak_blocks));
    else
        snprintf(buf, cap, "limits: %s, %" PRIu64 " block%s",
                 render_bytes(b, sizeof b, o->max_leak_bytes), o->max_leak_blocks,
                 plural(o->max_leak_blocks));
}

void chk_fail_text(const struct chk_run *r, const struct chk_proc *p, unsigned bit, char *buf,
                   size_t cap)
{
    char b1[32], b2[32], b3[32], lim[96];
    switch (bit) {
    case CHK_FAIL_LEAKS:
        limit_text(&r->o, lim, sizeof lim);
        if (r->o.fail_on_reachable)
            snprintf(buf, cap, "leaked %s in %" PRIu64 " block%s (lost %s, reachable %s; %s)",
                     render_bytes(b1, sizeof b1, chk_leak_bytes(r, p)), chk_leak_blocks(r, p),
                     plural(chk_leak_blocks(r, p)), render_bytes(b2, sizeof b2, p->lost_bytes),
                     render_bytes(b3, sizeof b3, p->reachable_bytes), lim);
        else
            snprintf(buf, cap, "lost %s in %" PRIu64 " block%s from %zu site%s (%s)",
                     render_bytes(b1, sizeof b1, p->lost_bytes), p->lost_blocks,
                     plural(p->lost_blocks), p->nlost_sites, plural(p->nlost_sites), lim);
        break;
    case CHK_FAIL_HEAP:
        snprintf(buf, cap, "heapUsed peaked at %s, above --max-heap %s",
                 render_bytes(b1, sizeof b1, p->peak_heap),
                 render_bytes(b2, sizeof b2, r->o.max_heap));
        break;
    case CHK_FAIL_CAP:
        if (p->limits_abort)
            snprintf(buf, cap,
                     "killed by the heap cap: %s %s refused with %s live (limit %s), SIGABRT",
                     reader_kind_name(p->cap.call), render_bytes(b1, sizeof b1, p->cap.request),
                     render_bytes(b2, sizeof b2, p->cap.live),
                     render_bytes(lim, sizeof lim, p->cap.limit));
        else
            snprintf(buf, cap, "killed by SIGABRT after the heap cap refused %" PRIu64 " call%s",
                     p->limits_total, plural(p->limits_total));
        break;
    case CHK_FAIL_DROPPED:
        snprintf(buf, cap, "%" PRIu64 " call%s could not be recorded (dropped events)", p->dropped,
                 plural(p->dropped));
        break;
    case CHK_FAIL_INCOMPLETE:
        snprintf(buf, cap, "incomplete trace: %s (--allow-incomplete to accept)", p->error);
        break;
    default:
        snprintf(buf, cap, "unknown failure");
    }
}

void chk_proc_title(const struct chk_proc *p, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s (pid %" PRIu32 "%s)", p->name, p->pid,
             p->origin == MTF_ORIGIN_EXEC ? ", exec" : "");
}

void chk_frame_text(const struct chk_frame *f, char *buf, size_t cap)
{
    const char *fn = f->function ? f->function : "??";
    if (f->file && f->line)
        snprintf(buf, cap, "%s %s:%u%s", fn, f->file, f->line, f->inlined ? " (inlined)" : "");
    else if (f->file)
        snprintf(buf, cap, "%s %s", fn, f->file);
    else if (f->module)
        snprintf(buf, cap, "%s %s+0x%" PRIx64, fn, f->module, f->module_offset);
    else
        snprintf(buf, cap, "%s 0x%" PRIx64, fn, f->pc);
}

static int by_start(const void *pa, const void *pb)
{
    const struct chk_proc *a = pa, *b = pb;
    if (a->start_realtime_ns != b->start_realtime_ns)
        return a->start_realtime_ns < b->start_realtime_ns ? -1 : 1;
    if (a->pid != b->pid)
        return a->pid < b->pid ? -1 : 1;
    return strcmp(a->trace, b->trace);
}

/* The wrapped command's status decides when it failed on its own (not by the heap cap). */
static void choose_status(struct chk_run *r)
{
    r->status = r->fail ? CHECK_EXIT_FAIL : CHECK_EXIT_PASS;
    int cs = r->o.command_status;
    if (cs <= 0)
        return;
    if (cs == 128 + SIGABRT && (r->fail & CHK_FAIL_CAP))
        return;
    r->status = cs;
    r->passthrough = 1;
}

/* ---- outputs --------------------------------------------------------------------------------- */

static int write_file(const char *path, int (*fn)(FILE *, const struct chk_run *),
                      const struct chk_run *r)
{
    int to_stdout = strcmp(path, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(path, "w");
    if (f == NULL) {
        report_error("check: %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = fn(f, r);
    if (to_stdout)
        rc |= fflush(f);
    else
        rc |= fclose(f);
    if (rc != 0) {
        report_error("check: %s: write failed: %s", to_stdout ? "<stdout>" : path, strerror(errno));
        return -1;
    }
    return 0;
}

static int outputs(const struct chk_run *r)
{
    int rc = 0;
    int json_stdout = r->o.json && strcmp(r->o.json, "-") == 0;
    if (!json_stdout && (chk_render_text(stdout, r) != 0 || fflush(stdout) != 0)) {
        report_error("check: <stdout>: write failed: %s", strerror(errno));
        rc = -1;
    }
    if (r->o.json && write_file(r->o.json, chk_render_json, r) != 0)
        rc = -1;
    if (r->o.junit && write_file(r->o.junit, chk_render_junit, r) != 0)
        rc = -1;
    if (r->o.sarif && write_file(r->o.sarif, chk_render_sarif, r) != 0)
        rc = -1;
    return rc;
}

static void run_free(struct chk_run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        struct chk_proc *p = &r->procs[i];
        for (size_t j = 0; j < p->nsites; j++)
            free_stack(&p->sites[j].st);
        free(p->sites);
        free_stack(&p->cap.st);
        free(p->trace);
        free(p->exe);
        free(p->cmdline);
        free(p->name);
        free(p->error);
    }
    free(r->procs);
    supp_fini(&r->supp);
}

static int load_all(struct chk_run *r, struct pathlist *l)
{
    r->procs = xmalloc((l->n ? l->n : 1) * sizeof *r->procs);
    for (size_t i = 0; i < l->n; i++) {
        if (load_trace(r, l->p[i], &r->procs[r->n]) != 0) {
            free(r->procs[r->n].trace);
            return -1;
        }
        r->n++;
    }
    qsort(r->procs, r->n, sizeof *r->procs, by_start);
    for (size_t i = 0; i < r->n; i++) {
        struct chk_proc *p = &r->procs[i];
        p->fail = decide(r, p);
        r->fail |= p->fail;
        r->nfailed += p->fail != 0;
        r->lost_bytes += p->lost_bytes, r->lost_blocks += p->lost_blocks;
        r->reachable_bytes += p->reachable_bytes, r->reachable_blocks += p->reachable_blocks;
        r->supp_bytes += p->supp_bytes, r->supp_blocks += p->supp_blocks;
    }
    return 0;
}

int check_main(int argc, char **argv)
{
    struct cli c = {
        .o = {
            .max_leak_bytes = CHK_UNSET,
            .max_leak_blocks = CHK_UNSET,
            .max_heap = CHK_UNSET,
            .default_supp = 1,
            .top = 10,
            .frames = 16,
            .command_status = -1,
        },
    };
    int status = parse_args(&c, argc, argv);
    if (status != 0)
        return status < 0 ? CHECK_EXIT_PASS : status;
    struct chk_run r = { .o = c.o };
    r.o.label = c.npaths == 1 ? c.paths[0] : NULL;
    supp_init(&r.supp, r.o.default_supp);
    for (int i = 0; i < c.nsupp_files; i++) {
        char err[4400];
        if (supp_load(&r.supp, c.supp_files[i], err, sizeof err) != 0) {
            report_error("check: %s", err);
            supp_fini(&r.supp);
            return CHECK_EXIT_USAGE;
        }
    }
    struct pathlist l = { 0 };
    if (collect(&l, c.paths, c.npaths) != 0) {
        status = CHECK_EXIT_IO;
    } else if (l.n == 0) {
        report_error("check: no trace found in %s%s (expected files named *.mtrace)", c.paths[0],
                     c.npaths > 1 ? " and the other operands" : "");
        status = CHECK_EXIT_IO;
    } else if (load_all(&r, &l) != 0) {
        status = CHECK_EXIT_IO;
    } else {
        choose_status(&r);
        status = outputs(&r) != 0 ? CHECK_EXIT_IO : r.status;
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.p[i]);
    free(l.p);
    run_free(&r);
    return status;
}
