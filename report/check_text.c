/* The summary of `memtrace-report check` for people (check.h): the verdict first, then every
 * process, failing ones with their findings and each leak's stack, then the suppressions and
 * how often each matched. Every finding line names its process (name, pid, parent), so a line
 * copied out of a CI log still says where it came from. Prints only; decides nothing.
 */
#include "check.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "reader.h"
#include "render.h"

static const char *plural(uint64_t n)
{
    return n == 1 ? "" : "s";
}

/* `file` relative to the source root or the current directory when under it. */
static const char *short_file(const char *file, const char *root)
{
    static char cwd[4096];
    if (root == NULL) {
        if (cwd[0] == '\0' && getcwd(cwd, sizeof cwd) == NULL)
            cwd[0] = '\0';
        root = cwd;
    }
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    if (n > 0 && file[0] == '/' && strncmp(file, root, n) == 0 && file[n] == '/')
        return file + n + 1;
    return file;
}

static void put_stack(FILE *out, const struct chk_run *r, const struct chk_stack *s,
                      const char *indent)
{
    if (s->n == 0) {
        fprintf(out,
                "%s(no stack: recorded from a signal handler, or no frame outside the "
                "allocator)\n",
                indent);
        return;
    }
    int n = s->n; /* frames below main (libc's start-up) tell nobody anything */
    for (int i = 0; i < s->n; i++) {
        if (s->f[i].function && strcmp(s->f[i].function, "main") == 0) {
            n = i + 1;
            break;
        }
    }
    int shown = n < (int)r->o.frames ? n : (int)r->o.frames, fw = 0;
    for (int i = 0; i < shown; i++) {
        int w = (int)strlen(s->f[i].function ? s->f[i].function : "??");
        fw = w > fw ? (w > 40 ? 40 : w) : fw;
    }
    for (int i = 0; i < shown; i++) {
        const struct chk_frame *f = &s->f[i];
        fprintf(out, "%s#%-2d %-*s  ", indent, i, fw, f->function ? f->function : "??");
        if (f->file && f->line)
            fprintf(out, "%s:%u", short_file(f->file, r->o.source_root), f->line);
        else if (f->file)
            fputs(short_file(f->file, r->o.source_root), out);
        else if (f->module)
            fprintf(out, "(%s+0x%" PRIx64 ")", f->module, f->module_offset);
        else
            fprintf(out, "(0x%" PRIx64 ")", f->pc);
        fputs(f->inlined ? " (inlined)\n" : "\n", out);
    }
    if (n > shown)
        fprintf(out, "%s... %d more frames (--frames N, or --json)\n", indent, n - shown);
    if (s->truncated)
        fprintf(out, "%s... outer frames not recorded (deeper than MEMTRACE_DEPTH)\n", indent);
}

/* "check_leak (pid 4242, parent 4200, fork)" */
static void who(char *buf, size_t cap, const struct chk_proc *p)
{
    snprintf(buf, cap, "%s (pid %" PRIu32 ", parent %" PRIu32 "%s)", p->name, p->pid, p->parent_pid,
             p->origin == MTF_ORIGIN_FORK   ? ", forked"
             : p->origin == MTF_ORIGIN_EXEC ? ", exec'd"
                                            : "");
}

static void how_ended(char *buf, size_t cap, const struct chk_proc *p)
{
    if (!p->have_end)
        snprintf(buf, cap, "no end recorded");
    else if (p->end_reason == MTF_END_EXIT)
        snprintf(buf, cap, "exit %" PRId32, p->end_status);
    else if (p->end_reason == MTF_END_SIGNAL)
        snprintf(buf, cap, "killed by signal %" PRId32 " (%s)", p->end_status,
                 strsignal(p->end_status));
    else
        snprintf(buf, cap, "exec'd a new program");
}

static void put_site(FILE *out, const struct chk_run *r, const struct chk_proc *p,
                     const struct chk_site *s, const char *tag, int lost, size_t rank)
{
    char b[32];
    if (lost) {
        fprintf(out, "  leak #%zu in %s: %s lost in %" PRIu64 " block%s", rank, tag,
                render_bytes(b, sizeof b, s->lost_bytes), s->lost_blocks, plural(s->lost_blocks));
        if (p->leak_scan)
            fprintf(out, " (%" PRIu64 " direct, %" PRIu64 " indirect)", s->direct_blocks,
                    s->indirect_blocks);
        if (s->reachable_blocks)
            fprintf(out, ", and %" PRIu64 " reachable", s->reachable_blocks);
    } else {
        fprintf(out, "  reachable #%zu in %s: %s in %" PRIu64 " block%s still pointed to", rank,
                tag, render_bytes(b, sizeof b, s->reachable_bytes), s->reachable_blocks,
                plural(s->reachable_blocks));
    }
    fputs(", allocated at\n", out);
    put_stack(out, r, &s->st, "      ");
}

/* The lost sites (lost 1), or every site holding reachable blocks (lost 0), --top at most. */
static void put_sites(FILE *out, const struct chk_run *r, const struct chk_proc *p, const char *tag,
                      int lost)
{
    size_t n = lost ? p->nlost_sites : p->nreach_sites, shown = 0;
    for (size_t i = 0; i < p->nsites && shown < r->o.top; i++) {
        const struct chk_site *s = &p->sites[i];
        if (lost ? s->lost_blocks : s->reachable_blocks)
            put_site(out, r, p, s, tag, lost, ++shown);
    }
    if (n > shown)
        fprintf(out, "  ... %zu more %s sites in %s (--top N, or --json)\n", n - shown,
                lost ? "leak" : "reachable", tag);
}

/* What the gate does not fail on but people should know. */
static void put_notes(FILE *out, const struct chk_run *r, const struct chk_proc *p, const char *tag)
{
    char b[32], how[128];
    if (!p->leaks_checked && p->live_blocks > 0) {
        how_ended(how, sizeof how, p);
        fprintf(out,
                "  note: %s: leaks not checked (%s%s); %s in %" PRIu64 " block%s were live at "
                "its end\n",
                tag, how, p->error ? ", incomplete trace" : "",
                render_bytes(b, sizeof b, p->live_bytes), p->live_blocks, plural(p->live_blocks));
    }
    if (p->sample_bytes)
        fprintf(out, "  note: %s: sampled 1 per %s requested: sites are sampled%s\n", tag,
                render_bytes(b, sizeof b, p->sample_bytes),
                !p->leaks_checked ? ""
                : p->lost_exact   ? "; the lost totals are exact"
                                  : "; the lost totals are from the samples only (no TOTALS "
                                    "record)");
    if (p->unsampled_blocks)
        fprintf(out, "  lost in %s: %s in %" PRIu64 " block%s: site not sampled\n", tag,
                render_bytes(b, sizeof b, p->unsampled_bytes), p->unsampled_blocks,
                plural(p->unsampled_blocks));
    if (p->leaks_checked && !p->leak_scan)
        fprintf(out,
                "  note: %s: no exit leak scan in the trace (MEMTRACE_LEAK_SCAN=1, set by "
                "`memtrace check`): every live block counts as lost\n",
                tag);
    if (p->leaks_checked && p->reachable_blocks && !r->o.fail_on_reachable)
        fprintf(out,
                "  reachable in %s: %s in %" PRIu64 " block%s from %zu site%s still pointed to at "
                "exit (not leaks; --fail-on-reachable to fail on them)\n",
                tag, render_bytes(b, sizeof b, p->reachable_bytes), p->reachable_blocks,
                plural(p->reachable_blocks), p->nreach_sites, plural(p->nreach_sites));
    if (p->scan_running && p->lost_blocks)
        fprintf(out,
                "  note: %s: other threads were running during the leak scan (their registers "
                "were not scanned)\n",
                tag);
    if (p->limits_total > p->limits_abort)
        fprintf(out, "  note: %s: the cap refused %" PRIu64 " call%s with ENOMEM\n", tag,
                p->limits_total - p->limits_abort, plural(p->limits_total - p->limits_abort));
    if (p->module_warnings)
        fprintf(out,
                "  note: %s: %u module map entr%s could not be used: some frames are "
                "addresses\n",
                tag, p->module_warnings, p->module_warnings == 1 ? "y" : "ies");
}

void chk_text_process(FILE *out, const struct chk_run *r, const struct chk_proc *p)
{
    char tag[512], how[128], b[32], line[1200];
    who(tag, sizeof tag, p);
    how_ended(how, sizeof how, p);
    fprintf(out, "%s %s: %s, peak heapUsed %s", p->fail ? "FAIL" : "pass", tag, how,
            render_bytes(b, sizeof b, p->peak_heap));
    if (p->leaks_checked && p->lost_blocks == 0)
        fputs(", no leaks", out);
    fputc('\n', out);
    if (p->fail && p->cmdline)
        fprintf(out, "  command: %.300s%s\n", p->cmdline, strlen(p->cmdline) > 300 ? " ..." : "");
    if (p->fail)
        fprintf(out, "  trace: %s\n", p->trace);
    for (unsigned bit = 1; bit < (1u << CHK_FAIL_KINDS); bit <<= 1) {
        if (!(p->fail & bit))
            continue;
        chk_fail_text(r, p, bit, line, sizeof line);
        fprintf(out, "  failed in %s: %s\n", tag, line);
        if (bit == CHK_FAIL_CAP && p->limits_abort) {
            fputs("  the refused call, allocated at\n", out);
            put_stack(out, r, &p->cap.st, "      ");
        }
    }
    if (p->leaks_checked) {
        put_sites(out, r, p, tag, 1);
        if (r->o.fail_on_reachable)
            put_sites(out, r, p, tag, 0);
    }
    put_notes(out, r, p, tag);
}

static void put_rules(FILE *out, const struct chk_run *r)
{
    char b[32], name[300];
    const struct suppressions *s = &r->supp;
    fprintf(out, "suppressions: %s in %" PRIu64 " block%s not counted%s\n",
            render_bytes(b, sizeof b, r->supp_bytes), r->supp_blocks, plural(r->supp_blocks),
            r->o.default_supp ? "" : " (built-in rules off)");
    for (size_t i = 0; i < s->n; i++) {
        const struct supp_rule *u = &s->rules[i];
        if (u->builtin && u->stacks == 0)
            continue; /* a user rule that never matched is worth seeing: it may be stale */
        if (u->builtin)
            snprintf(name, sizeof name, "%s (built-in)", u->name);
        else
            snprintf(name, sizeof name, "leak:%s (%s)", u->name, u->source);
        fprintf(out, "  %-36s matched %" PRIu64 " time%s: %" PRIu64 " block%s, %s\n", name,
                u->stacks, plural(u->stacks), u->blocks, plural(u->blocks),
                render_bytes(b, sizeof b, u->bytes));
    }
}

static void put_verdict(FILE *out, const struct chk_run *r)
{
    fprintf(out, "memtrace check: %s", r->fail ? "FAIL" : "PASS");
    if (r->fail) {
        const char *sep = ": ";
        for (unsigned bit = 1; bit < (1u << CHK_FAIL_KINDS); bit <<= 1) {
            size_t n = 0;
            for (size_t i = 0; i < r->n; i++)
                n += (r->procs[i].fail & bit) != 0;
            if (n)
                fprintf(out, "%s%s in %zu process%s", sep, chk_fail_name(bit), n,
                        n == 1 ? "" : "es");
            sep = n ? ", " : sep;
        }
    }
    fprintf(out, " (%zu of %zu process%s failed", r->nfailed, r->n, r->n == 1 ? "" : "es");
    if (r->passthrough)
        fprintf(out, "; exit status %d: the command's own", r->status);
    else
        fprintf(out, "; exit status %d", r->status);
    fputs(")\n", out);
}

int chk_render_text(FILE *out, const struct chk_run *r)
{
    char b1[32], b2[32];
    fprintf(out, "memtrace check: %zu process%s", r->n, r->n == 1 ? "" : "es");
    if (r->o.label)
        fprintf(out, ", traces in %s", r->o.label);
    fprintf(out, "; lost %s in %" PRIu64 " block%s, reachable %s in %" PRIu64 " block%s\n",
            render_bytes(b1, sizeof b1, r->lost_bytes), r->lost_blocks, plural(r->lost_blocks),
            render_bytes(b2, sizeof b2, r->reachable_bytes), r->reachable_blocks,
            plural(r->reachable_blocks));
    if (r->o.command_status > 0)
        fprintf(out, "the command exited with status %d\n", r->o.command_status);
    fputc('\n', out);
    for (size_t i = 0; i < r->n; i++)
        chk_text_process(out, r, &r->procs[i]);
    fputc('\n', out);
    put_rules(out, r);
    put_verdict(out, r);
    return ferror(out) ? -1 : 0;
}
