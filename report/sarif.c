/* `memtrace-report check --sarif FILE`: SARIF 2.1.0 for code-hosting platforms that annotate
 * source lines (GitHub code scanning, GitLab). One result per leak site: sites with the same
 * symbolized stack in several processes are one result naming them all. Its location is the
 * innermost frame whose source file lies under --source-root (the program's own code, not
 * libc's), given relative to the SRCROOT base; the whole stack goes in `stacks`. A site
 * without any frame that has a source file and line cannot be shown on a line and is left out.
 * Processes killed by the heap cap give one result at the refused call. Prints only.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "check_json.h"
#include "render.h"

#define SARIF_SCHEMA                                                                               \
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"

struct root {
    char path[PATH_MAX]; /* absolute, no trailing slash */
};

static void root_init(struct root *rt, const char *given)
{
    if (given == NULL || realpath(given, rt->path) == NULL) {
        if (getcwd(rt->path, sizeof rt->path) == NULL)
            strcpy(rt->path, "/");
    }
    size_t n = strlen(rt->path);
    while (n > 1 && rt->path[n - 1] == '/')
        rt->path[--n] = '\0';
}

/* The path of `file` below the root, or NULL when it is not below it. A relative name (as
 * DWARF gives when the compiler ran in the source tree) is taken as below the root, unless it
 * climbs out of it (glibc's "../sysdeps/...", built elsewhere). */
static const char *below(const struct root *rt, const char *file)
{
    size_t n = strlen(rt->path);
    if (file == NULL)
        return NULL;
    if (file[0] != '/')
        return strncmp(file, "../", 3) == 0 ? NULL : file;
    if (n == 1)
        return file + 1;
    if (strncmp(file, rt->path, n) == 0 && file[n] == '/')
        return file + n + 1;
    return NULL;
}

/* A URI reference: every byte outside RFC 3986's unreserved set and '/' percent-encoded. */
static void put_uri(struct jw *j, const char *key, const char *prefix, const char *path)
{
    static const char hex[] = "0123456789ABCDEF";
    jw_member(j, key);
    fputc('"', j->out);
    fputs(prefix, j->out);
    for (const unsigned char *s = (const unsigned char *)path; *s; s++) {
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
            strchr("-._~/", *s))
            fputc(*s, j->out);
        else
            fprintf(j->out, "%%%c%c", hex[*s >> 4], hex[*s & 15]);
    }
    fputc('"', j->out);
}

/* The frame a result points at: innermost under the root, else innermost with a file and line;
 * NULL when no frame has both. */
static const struct chk_frame *site_frame(const struct root *rt, const struct chk_stack *s)
{
    const struct chk_frame *any = NULL;
    for (int i = 0; i < s->n; i++) {
        if (s->f[i].file == NULL || s->f[i].line == 0)
            continue;
        if (below(rt, s->f[i].file))
            return &s->f[i];
        if (any == NULL)
            any = &s->f[i];
    }
    return any;
}

static void put_location(struct jw *j, const struct root *rt, const struct chk_frame *f)
{
    jw_open(j, "physicalLocation", '{');
    jw_open(j, "artifactLocation", '{');
    const char *rel = below(rt, f->file);
    if (rel) { /* relative to SRCROOT, so the platform maps it onto the repository */
        put_uri(j, "uri", "", rel);
        jw_str(j, "uriBaseId", "SRCROOT");
    } else {
        put_uri(j, "uri", f->file[0] == '/' ? "file://" : "", f->file);
    }
    jw_close(j, '}');
    jw_open(j, "region", '{');
    jw_u64(j, "startLine", f->line);
    jw_close(j, '}');
    jw_close(j, '}');
    if (f->function) {
        jw_open(j, "logicalLocations", '[');
        jw_open(j, NULL, '{');
        jw_str(j, "fullyQualifiedName", f->function);
        jw_str(j, "kind", "function");
        jw_close(j, '}');
        jw_close(j, ']');
    }
}

static void put_stacks(struct jw *j, const struct root *rt, const struct chk_stack *s)
{
    jw_open(j, "stacks", '[');
    jw_open(j, NULL, '{');
    jw_open(j, "message", '{');
    jw_str(j, "text", "where the block was allocated, innermost frame first");
    jw_close(j, '}');
    jw_open(j, "frames", '[');
    for (int i = 0; i < s->n; i++) {
        const struct chk_frame *f = &s->f[i];
        char text[1200];
        chk_frame_text(f, text, sizeof text);
        jw_open(j, NULL, '{');
        jw_open(j, "location", '{');
        if (f->file && f->line)
            put_location(j, rt, f);
        jw_open(j, "message", '{');
        jw_str(j, "text", text);
        jw_close(j, '}');
        jw_close(j, '}');
        if (f->module)
            jw_str(j, "module", f->module);
        jw_close(j, '}');
    }
    jw_close(j, ']');
    jw_close(j, '}');
    jw_close(j, ']');
}

/* Two stacks show the same frames (function, file, line). */
static int same_stack(const struct chk_stack *a, const struct chk_stack *b)
{
    if (a->n != b->n)
        return 0;
    for (int i = 0; i < a->n; i++) {
        const struct chk_frame *x = &a->f[i], *y = &b->f[i];
        if (x->line != y->line || !x->function != !y->function || !x->file != !y->file ||
            (x->function && strcmp(x->function, y->function) != 0) ||
            (x->file && strcmp(x->file, y->file) != 0) ||
            (!x->function && !x->file && x->module_offset != y->module_offset))
            return 0;
    }
    return 1;
}

/* A leak site of one process, to group equal stacks across processes. */
struct ref {
    const struct chk_proc *p;
    const struct chk_site *s;
    int done;
};

/* One result for refs[i] and every later site with the same stack (refs are in process order,
 * so a process's sites are adjacent). */
static void put_leak_result(struct jw *j, const struct chk_run *r, const struct root *rt,
                            struct ref *refs, size_t n, size_t i)
{
    const struct chk_site *s = refs[i].s;
    size_t *group = malloc((n - i) * sizeof *group), ng = 0, nproc = 0;
    uint64_t bytes = 0, blocks = 0;
    int failing = 0;
    if (group == NULL)
        return;
    for (size_t k = i; k < n; k++) {
        if (k != i && (refs[k].done || !same_stack(&refs[k].s->st, &s->st)))
            continue;
        refs[k].done = 1;
        nproc += ng == 0 || refs[group[ng - 1]].p != refs[k].p;
        group[ng++] = k;
        bytes += refs[k].s->lost_bytes, blocks += refs[k].s->lost_blocks;
        failing |= (refs[k].p->fail & CHK_FAIL_LEAKS) != 0;
    }
    const struct chk_frame *f = site_frame(rt, &s->st);
    if (f == NULL) {
        free(group);
        return;
    }
    char b[32], title[512], text[1600];
    chk_proc_title(refs[i].p, title, sizeof title);
    snprintf(text, sizeof text, "%s lost in %" PRIu64 " block%s allocated in %s, in %s%s%s",
             render_bytes(b, sizeof b, bytes), blocks, blocks == 1 ? "" : "s",
             f->function ? f->function : "??", title, nproc > 1 ? " and other processes" : "",
             r->o.fail_on_reachable ? "" : " (memory no pointer leads to at exit)");
    jw_open(j, NULL, '{');
    jw_str(j, "ruleId", "memtrace/leak");
    jw_str(j, "level", failing ? "error" : "warning");
    jw_open(j, "message", '{');
    jw_str(j, "text", text);
    jw_close(j, '}');
    jw_open(j, "locations", '[');
    jw_open(j, NULL, '{');
    put_location(j, rt, f);
    jw_close(j, '}');
    jw_close(j, ']');
    put_stacks(j, rt, &s->st);
    jw_open(j, "properties", '{');
    jw_u64(j, "bytes", bytes);
    jw_u64(j, "blocks", blocks);
    jw_open(j, "processes", '[');
    for (size_t g = 0; g < ng; g++) {
        if (g > 0 && refs[group[g]].p == refs[group[g - 1]].p)
            continue;
        chk_proc_title(refs[group[g]].p, title, sizeof title);
        jw_str(j, NULL, title);
    }
    jw_close(j, ']');
    jw_close(j, '}');
    jw_close(j, '}');
    free(group);
}

static void put_cap_result(struct jw *j, const struct root *rt, const struct chk_run *r,
                           const struct chk_proc *p)
{
    const struct chk_frame *f = site_frame(rt, &p->cap.st);
    if (f == NULL)
        return;
    char title[512], line[1200], text[1800];
    chk_proc_title(p, title, sizeof title);
    chk_fail_text(r, p, CHK_FAIL_CAP, line, sizeof line);
    snprintf(text, sizeof text, "%s: %s", title, line);
    jw_open(j, NULL, '{');
    jw_str(j, "ruleId", "memtrace/heap-cap");
    jw_str(j, "level", "error");
    jw_open(j, "message", '{');
    jw_str(j, "text", text);
    jw_close(j, '}');
    jw_open(j, "locations", '[');
    jw_open(j, NULL, '{');
    put_location(j, rt, f);
    jw_close(j, '}');
    jw_close(j, ']');
    put_stacks(j, rt, &p->cap.st);
    jw_close(j, '}');
}

static void put_rule(struct jw *j, const char *id, const char *name, const char *text)
{
    jw_open(j, NULL, '{');
    jw_str(j, "id", id);
    jw_str(j, "name", name);
    jw_open(j, "shortDescription", '{');
    jw_str(j, "text", text);
    jw_close(j, '}');
    jw_close(j, '}');
}

static void put_results(struct jw *j, const struct chk_run *r, const struct root *rt)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        n += r->procs[i].nlost_sites;
    struct ref *refs = calloc(n ? n : 1, sizeof *refs);
    n = 0;
    for (size_t i = 0; refs && i < r->n; i++)
        for (size_t k = 0; k < r->procs[i].nlost_sites; k++)
            refs[n++] = (struct ref){ &r->procs[i], &r->procs[i].sites[k], 0 };
    jw_open(j, "results", '[');
    for (size_t i = 0; i < n; i++)
        if (!refs[i].done)
            put_leak_result(j, r, rt, refs, n, i);
    for (size_t i = 0; i < r->n; i++)
        if (r->procs[i].limits_abort)
            put_cap_result(j, rt, r, &r->procs[i]);
    jw_close(j, ']');
    free(refs);
}

int chk_render_sarif(FILE *out, const struct chk_run *r)
{
    struct root rt;
    root_init(&rt, r->o.source_root);
    struct jw j = { .out = out };
    jw_open(&j, NULL, '{');
    jw_str(&j, "$schema", SARIF_SCHEMA);
    jw_str(&j, "version", "2.1.0");
    jw_open(&j, "runs", '[');
    jw_open(&j, NULL, '{');
    jw_open(&j, "tool", '{');
    jw_open(&j, "driver", '{');
    jw_str(&j, "name", "memtrace");
    jw_open(&j, "rules", '[');
    put_rule(&j, "memtrace/leak", "MemoryLeak",
             "Heap memory still allocated at exit that no pointer leads to");
    put_rule(&j, "memtrace/heap-cap", "HeapCapExceeded",
             "An allocation the heap cap (MEMTRACE_HEAP_LIMIT) refused, killing the process");
    jw_close(&j, ']');
    jw_close(&j, '}');
    jw_close(&j, '}');
    jw_open(&j, "originalUriBaseIds", '{');
    jw_open(&j, "SRCROOT", '{');
    char base[PATH_MAX + 2]; /* a base URI ends with '/' (SARIF §3.14.14) */
    snprintf(base, sizeof base, "%s/", strcmp(rt.path, "/") == 0 ? "" : rt.path);
    put_uri(&j, "uri", "file://", base);
    jw_close(&j, '}');
    jw_close(&j, '}');
    put_results(&j, r, &rt);
    jw_close(&j, '}');
    jw_close(&j, ']');
    jw_close(&j, '}');
    fputc('\n', out);
    return ferror(out) ? -1 : 0;
}
