/* The default output of memtrace-report, for people: the process, how reading ended, cap
 * refusals, the memoryUsage picture at the heap peak and at exit, calls per function, the top
 * allocation sites with their stacks, and the leaks. Also `--timeline`, one line per snapshot in
 * the form Node users print. Sizes are 1024-based ("MB" = 2^20 bytes, as Node's classic
 * `(bytes / 1024 / 1024).toFixed(2) + ' MB'`); times are seconds since the trace started.
 */
#include "render.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define STACK_SHOW_MAX 12 /* frames shown per stack in text; --json has them all */

static int result(FILE *out)
{
    return ferror(out) ? -EIO : 0;
}

const char *render_bytes(char *buf, size_t cap, uint64_t bytes)
{
    static const char *const units[] = { "KB", "MB", "GB", "TB", "PB", "EB" };
    if (bytes < 1024) {
        snprintf(buf, cap, "%" PRIu64 " B", bytes);
        return buf;
    }
    double v = (double)bytes / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    snprintf(buf, cap, "%.2f %s", v, units[u]);
    return buf;
}

static const char *mb(char *buf, size_t cap, uint64_t bytes)
{
    snprintf(buf, cap, "%.2f MB", (double)bytes / (1024.0 * 1024.0));
    return buf;
}

/* Seconds since the trace started, "1.234567". */
static const char *secs(char *buf, size_t cap, const struct render_trace *t, uint64_t ts)
{
    uint64_t start = t->status->header.start_monotonic_ns;
    uint64_t d = ts > start ? ts - start : 0;
    snprintf(buf, cap, "%" PRIu64 ".%06" PRIu64, d / 1000000000, d % 1000000000 / 1000);
    return buf;
}

/* ---- process and status ------------------------------------------------------------------ */

/* One plain sentence about how reading ended: the first thing to check before trusting numbers. */
static void put_status(FILE *out, const struct render_trace *t)
{
    const struct rd_status *st = t->status;
    fputs("status    ", out);
    switch (t->error_code) {
    case 0:
        break;
    case RD_ERR_TRUNC:
        fprintf(out,
                "TRUNCATED at offset %" PRIu64 ": %" PRIu64
                " bytes lost (the process was killed or its output failed); INCOMPLETE: the "
                "report covers everything before\n",
                st->error_offset, st->lost_bytes);
        return;
    case RD_ERR_CORRUPT:
        fprintf(out,
                "CORRUPT at offset %" PRIu64 ": %" PRIu64
                " bytes not used; INCOMPLETE: the report covers everything before\n",
                st->error_offset, st->lost_bytes);
        return;
    case RD_ERR_FORMAT:
        fputs("NOT READABLE: not a memtrace trace, or a format version this reader does not "
              "know\n",
              out);
        return;
    default:
        fprintf(out, "READ ERROR at offset %" PRIu64 "; the report covers what was read\n",
                st->error_offset);
        return;
    }
    if (!st->complete) {
        fputs("INCOMPLETE: no END record (the process was killed or tracing stopped); events "
              "still buffered in its threads are missing\n",
              out);
    } else if (t->end.reason == MTF_END_EXIT) {
        fprintf(out, "complete: the process exited with status %d\n", t->end.status);
    } else if (t->end.reason == MTF_END_EXEC) {
        fputs("complete: the process called execve (the new image writes its own trace)\n", out);
    } else {
        fprintf(out, "complete: the process died of signal %d\n", t->end.status);
    }
}

static void put_process(FILE *out, const struct render_trace *t)
{
    const struct rd_status *st = t->status;
    const struct mtf_file_header *h = &st->header;
    fprintf(out, "process   %s, pid %u, parent %u, %s\n", t->exe ? t->exe : "(no PROCESS record)",
            h->pid, h->parent_pid,
            h->origin == MTF_ORIGIN_FORK   ? "forked child"
            : h->origin == MTF_ORIGIN_EXEC ? "after execve"
                                           : "traced from start");
    if (t->agg && t->agg->cmdline && t->agg->cmdline[0])
        fprintf(out, "command   %s\n", t->agg->cmdline);
    uint64_t span = t->max_ts_ns - t->min_ts_ns;
    fprintf(out, "duration  %" PRIu64 ".%06" PRIu64 " s\n", span / 1000000000,
            span % 1000000000 / 1000);
    if (st->dropped)
        fprintf(out, "dropped   %" PRIu64 " calls were not recorded: the figures below miss them\n",
                st->dropped);
    else
        fputs("dropped   0\n", out);
}

/* ---- stacks ------------------------------------------------------------------------------ */

static const char *file_base(const char *file)
{
    const char *slash = file ? strrchr(file, '/') : NULL;
    return slash ? slash + 1 : file;
}

static void put_stack(FILE *out, const struct render_trace *t, uint32_t id, const char *indent)
{
    const struct sv_stack *s = sv_get(t->stacks, id);
    if (id == 0) {
        fprintf(out, "%s(no stack: recorded from a signal handler)\n", indent);
        return;
    }
    if (!s->defined) {
        fprintf(out, "%s(stack %u is not defined in the trace)\n", indent, id);
        return;
    }
    if (s->n == 0) {
        fprintf(out, "%s(no frames outside the allocator)\n", indent);
        return;
    }
    /* frames below main (libc's start-up) tell nobody anything */
    int n_main = s->n;
    for (int i = 0; i < s->n; i++) {
        if (s->f[i].function && strcmp(s->f[i].function, "main") == 0) {
            n_main = i + 1;
            break;
        }
    }
    int shown = n_main < STACK_SHOW_MAX ? n_main : STACK_SHOW_MAX;
    int fw = 0, lw = 0;
    char loc[STACK_SHOW_MAX][512];
    for (int i = 0; i < shown; i++) {
        const struct sv_frame *f = &s->f[i];
        if (f->file && f->line)
            snprintf(loc[i], sizeof loc[i], "%s:%u", file_base(f->file), f->line);
        else if (f->file)
            snprintf(loc[i], sizeof loc[i], "%s", file_base(f->file));
        else if (f->module)
            snprintf(loc[i], sizeof loc[i], "%s+0x%" PRIx64, sv_basename(f->module),
                     f->module_offset);
        else
            snprintf(loc[i], sizeof loc[i], "0x%" PRIx64, f->pc);
        int n = (int)strlen(f->function ? f->function : "??");
        fw = n > fw ? (n > 40 ? 40 : n) : fw;
        n = (int)strlen(loc[i]);
        lw = n > lw ? (n > 36 ? 36 : n) : lw;
    }
    for (int i = 0; i < shown; i++) {
        const struct sv_frame *f = &s->f[i];
        fprintf(out, "%s%-*s  %-*s  %s%s\n", indent, fw, f->function ? f->function : "??", lw,
                loc[i], f->module ? sv_basename(f->module) : "", f->inlined ? " (inlined)" : "");
    }
    if (n_main > shown)
        fprintf(out, "%s... %d more frames (--json has them all)\n", indent, n_main - shown);
    if (s->truncated)
        fprintf(out, "%s... outer frames not recorded (deeper than MEMTRACE_DEPTH)\n", indent);
}

/* ---- sampling ------------------------------------------------------------------------------ */

/* A sampled trace says so before any figure: which are estimates, which exact. */
static void put_sampling(FILE *out, const struct render_trace *t)
{
    const struct agg *a = t->agg;
    char b[32];
    if (a->sample_bytes == 0)
        return;
    fprintf(out, "sampled   1 per %s requested: site figures are estimates\n",
            render_bytes(b, sizeof b, a->sample_bytes));
    if (a->have_totals)
        fputs("          calls per kind and leak totals are exact (TOTALS record)\n", out);
    else
        fputs("          no TOTALS record (incomplete trace): calls and leaks are estimates "
              "too\n",
              out);
    if (a->have_totals && a->totals.unsampleable)
        fprintf(out, "          %" PRIu64 " sampled allocations were not followed (set full)\n",
                a->totals.unsampleable);
}

/* ---- memoryUsage ------------------------------------------------------------------------- */

static void put_usage_row(FILE *out, const struct render_trace *t, const char *name,
                          const struct agg_usage *u, int sampled_earlier)
{
    char b[5][32], when[32];
    const char *mark = sampled_earlier ? "*" : " ";
    fprintf(out, "  %-4s %12s s %12s %12s %12s ", name, secs(when, sizeof when, t, u->ts_ns),
            render_bytes(b[0], 32, u->heap_used), render_bytes(b[1], 32, u->external),
            render_bytes(b[2], 32, u->mapped));
    if (u->have_snapshot)
        fprintf(out, "%12s%s %12s%s\n", render_bytes(b[3], 32, u->rss), mark,
                render_bytes(b[4], 32, u->heap_total), mark);
    else
        fprintf(out, "%12s  %12s\n", "n/a", "n/a");
}

static void put_usage(FILE *out, const struct render_trace *t)
{
    const struct agg *a = t->agg;
    char b[3][32], when[32];
    fprintf(out, "\nmemoryUsage  %14s %12s %12s %12s %13s %13s\n", "at", "heapUsed", "external",
            "mapped", "rss", "heapTotal");
    int peak_star = a->peak.have_snapshot;
    int exit_star = a->exit.have_snapshot && a->exit.snap_reason != MTF_SNAP_EXIT;
    if (a->peak.ts_ns != 0)
        put_usage_row(out, t, "peak", &a->peak, peak_star);
    else
        fputs("  peak  (no heap block was ever live)\n", out);
    put_usage_row(out, t, "exit", &a->exit, exit_star);
    if (a->peak.ts_ns != 0 && a->sample_bytes != 0)
        fprintf(out, "  heap peak: about %s used (estimated, %s requested)\n",
                render_bytes(b[0], 32, a->peak.heap_used),
                render_bytes(b[1], 32, a->peak.requested));
    else if (a->peak.ts_ns != 0)
        fprintf(out, "  heap peak: %s used by %" PRIu64 " blocks (%s requested)\n",
                render_bytes(b[0], 32, a->peak.heap_used), a->peak.heap_blocks,
                render_bytes(b[1], 32, a->peak.requested));
    if (peak_star)
        fprintf(out, "  * rss and heapTotal are sampled: as of the %s snapshot at %s s\n",
                reader_snap_reason_name(a->peak.snap_reason),
                secs(when, sizeof when, t, a->peak.snap_ts_ns));
    if (exit_star)
        fprintf(out, "  * at exit: as of the %s snapshot at %s s (no EXIT snapshot)\n",
                reader_snap_reason_name(a->exit.snap_reason),
                secs(when, sizeof when, t, a->exit.snap_ts_ns));
    if (!a->have_snapshot)
        fputs("  rss and heapTotal: n/a, the trace has no snapshot\n", out);
    if (a->exit.have_rss_peak)
        fprintf(out, "  rss peak (VmHWM) %s\n", render_bytes(b[2], 32, a->exit.rss_peak));
}

/* ---- calls ------------------------------------------------------------------------------- */

static void put_calls(FILE *out, const struct render_trace *t)
{
    const struct agg *a = t->agg;
    uint64_t calls = 0;
    for (unsigned k = RENDER_FIRST_CALL; k <= RENDER_LAST_CALL; k++)
        calls += a->counts[k];
    fprintf(out, "\ncalls     %" PRIu64 "%s\n", calls,
            a->sample_bytes && a->have_totals ? " (exact, sampled or not)" : "");
    for (unsigned k = RENDER_FIRST_CALL; k <= RENDER_LAST_CALL; k++) {
        if (a->counts[k] == 0)
            continue;
        fprintf(out, "  %-16s %12" PRIu64, reader_kind_name(k), a->counts[k]);
        if (a->failed[k])
            fprintf(out, "  (%" PRIu64 " failed)", a->failed[k]);
        fputc('\n', out);
    }
    fprintf(out, "stacks    %" PRIu64 " definitions\n", a->counts[MTF_EV_STACK]);
    if (a->unknown_frees)
        fprintf(out,
                "unknown   %" PRIu64 " frees of blocks the trace never saw allocated (from "
                "before tracing, or inherited across fork): ignored\n",
                a->unknown_frees);
}

/* ---- cap refusals ------------------------------------------------------------------------ */

static void put_limits(FILE *out, const struct render_trace *t)
{
    const struct agg *a = t->agg;
    char b[3][32], when[32];
    if (a->limits_total == 0)
        return;
    fprintf(out, "\nLIMIT REACHED: %" PRIu64 " call%s refused by a memory cap\n", a->limits_total,
            a->limits_total == 1 ? " was" : "s were");
    for (size_t i = 0; i < a->nlimits && i < t->top; i++) {
        const struct agg_limit *l = &a->limits[i];
        fprintf(out, "  at %s s: %s of %s refused, %s limit %s, %s live (%s)\n",
                secs(when, sizeof when, t, l->ts_ns), reader_kind_name(l->call),
                render_bytes(b[0], 32, l->request), reader_class_name(l->cls),
                render_bytes(b[1], 32, l->limit), render_bytes(b[2], 32, l->live),
                l->mode == MTF_LIMIT_ENOMEM ? "returned ENOMEM" : "the process aborted");
        put_stack(out, t, l->stack, "      ");
    }
    if (a->limits_total > a->nlimits && a->nlimits >= t->top)
        fprintf(out, "  ... %" PRIu64 " more\n", a->limits_total - t->top);
}

/* ---- top sites --------------------------------------------------------------------------- */

/* Where a site was already shown with its stack: "#2 by peak bytes", or NULL. */
static const char *shown_before(const struct render_trace *t, const struct agg_site *s, int list,
                                char *buf, size_t cap)
{
    const struct findings *f = t->findings;
    const struct agg_site *const *lists[2] = { f->by_peak, f->by_total };
    const size_t n[2] = { f->ntop_peak, f->ntop_total };
    static const char *const names[2] = { "peak bytes", "total bytes" };
    for (int l = 0; l < list; l++) {
        for (size_t i = 0; i < n[l]; i++) {
            if (lists[l][i]->stack == s->stack) {
                snprintf(buf, cap, "#%zu by %s", i + 1, names[l]);
                return buf;
            }
        }
    }
    return NULL;
}

/* list: 0 by peak, 1 by total, 2 by calls (a site shown in an earlier list is not repeated). */
static void put_top(FILE *out, const struct render_trace *t, const char *title, int list,
                    const struct agg_site *const *l, size_t n)
{
    char b[3][32], seen[64];
    if (n == 0)
        return;
    fprintf(out, "\ntop sites by %s%s\n", title,
            t->agg->sample_bytes ? " (estimated from samples)" : "");
    for (size_t i = 0; i < n; i++) {
        const struct agg_site *s = l[i];
        fprintf(out, "  #%-2zu peak %10s  total %10s  calls %10" PRIu64 "  at heap peak %s\n",
                i + 1, render_bytes(b[0], 32, s->peak_bytes),
                render_bytes(b[1], 32, s->total_bytes), s->calls,
                render_bytes(b[2], 32, s->at_peak));
        if (shown_before(t, s, list, seen, sizeof seen))
            fprintf(out, "      (stack as %s)\n", seen);
        else
            put_stack(out, t, s->stack, "      ");
    }
}

/* ---- leaks ------------------------------------------------------------------------------- */

static void put_suppressed(FILE *out, const struct render_trace *t)
{
    const struct findings *f = t->findings;
    char b[32];
    if (f->supp_blocks == 0) {
        if (!t->default_suppressions)
            fputs("suppressed: nothing (built-in suppressions off)\n", out);
        return;
    }
    fprintf(out, "suppressed: %" PRIu64 " block%s, %s live at exit are not counted as leaks%s\n",
            f->supp_blocks, f->supp_blocks == 1 ? "" : "s",
            render_bytes(b, sizeof b, f->supp_bytes),
            t->default_suppressions ? " (--no-default-suppressions shows them)" : "");
    for (size_t i = 0; i < t->supp->n; i++) {
        const struct supp_rule *r = &t->supp->rules[i];
        if (r->blocks == 0 && r->builtin)
            continue;
        fprintf(out, "  %-10s %8" PRIu64 " blocks %12s  %s%s\n",
                r->builtin ? r->name : "leak:", r->blocks, render_bytes(b, sizeof b, r->bytes),
                r->builtin ? r->what : r->name, r->builtin ? "" : "");
        if (!r->builtin)
            fprintf(out, "  %-10s %8s        (%s)\n", "", "", r->source);
    }
}

static void put_leaks(FILE *out, const struct render_trace *t)
{
    const struct findings *f = t->findings;
    char b[32];
    if (f->nleaks == 0) {
        fputs("\nleaks     none: every block the program allocated was freed\n", out);
    } else {
        fprintf(out, "\nleaks     %s%s in %" PRIu64 " block%s from %zu site%s (%s)\n",
                render_bytes(b, sizeof b, f->leak_bytes), f->leak_bytes_usable ? " usable" : "",
                f->leak_blocks, f->leak_blocks == 1 ? "" : "s", f->nleaks,
                f->nleaks == 1 ? "" : "s",
                !f->sampled            ? "live at exit"
                : !f->leak_exact       ? "estimated"
                : f->leak_bytes_usable ? "exact, live at exit; sites estimated"
                                       : "exact, lost at the exit leak scan; sites estimated");
        size_t shown = f->nleaks < t->top ? f->nleaks : t->top;
        for (size_t i = 0; i < shown; i++) {
            const struct leak_site *l = &f->leaks[i];
            if (l->stack == FINDINGS_NOT_SAMPLED) {
                fprintf(out, "  #%-2zu %s in %" PRIu64 " block%s: site not sampled (exact)\n",
                        i + 1, render_bytes(b, sizeof b, l->bytes), l->blocks,
                        l->blocks == 1 ? "" : "s");
                continue;
            }
            fprintf(out, "  #%-2zu %s%s in %" PRIu64 " block%s\n", i + 1,
                    f->sampled ? "about " : "", render_bytes(b, sizeof b, l->bytes), l->blocks,
                    l->blocks == 1 ? "" : "s");
            put_stack(out, t, l->stack, "      ");
        }
        if (f->nleaks > shown)
            fprintf(out, "  ... %zu more sites (--top N, or --json)\n", f->nleaks - shown);
    }
    if (t->agg->have_reach)
        fprintf(out,
                "reachable %" PRIu64 " block%s, %s live at exit but still pointed to (exit leak "
                "scan): not leaks\n",
                f->reachable_blocks, f->reachable_blocks == 1 ? "" : "s",
                render_bytes(b, sizeof b, f->reachable_bytes));
    if (!t->status->complete)
        fputs("  (the trace is incomplete: blocks freed after it stops look live)\n", out);
    put_suppressed(out, t);
}

int render_summary(FILE *out, const struct render_trace *t)
{
    const struct rd_status *st = t->status;
    const struct mtf_file_header *h = &st->header;
    fprintf(out, "trace     %s", t->path);
    if (t->header_valid)
        fprintf(out, " (format %u.%u, %" PRIu64 " bytes)", h->version_major, h->version_minor,
                st->file_size);
    fputc('\n', out);
    if (t->header_valid && t->agg) {
        put_process(out, t);
        put_status(out, t);
        if (t->stale_modules)
            fprintf(out,
                    "warning   %d module%s changed on disk since the run: their frames show "
                    "module+offset only\n",
                    t->stale_modules, t->stale_modules == 1 ? "" : "s");
        put_sampling(out, t);
        put_limits(out, t);
        put_usage(out, t);
        put_calls(out, t);
        put_top(out, t, "peak bytes", 0, t->findings->by_peak, t->findings->ntop_peak);
        put_top(out, t, "total bytes", 1, t->findings->by_total, t->findings->ntop_total);
        put_top(out, t, "calls", 2, t->findings->by_count, t->findings->ntop_count);
        put_leaks(out, t);
    } else {
        put_status(out, t);
    }
    return result(out);
}

/* ---- --timeline -------------------------------------------------------------------------- */

int render_timeline(FILE *out, const struct render_trace *t)
{
    const struct agg *a = t->agg;
    char b[5][32], when[32];
    if (!t->header_valid || a == NULL)
        return result(out);
    if (a->ntimeline == 0)
        fputs("(no snapshots in this trace: run with MEMTRACE_INTERVAL, or call "
              "memtrace_mark())\n",
              out);
    for (size_t i = 0; i < a->ntimeline; i++) {
        const struct agg_snapshot *s = &a->timeline[i];
        fprintf(out, "%12s s  %-8s heapTotal %s heapUsed %s external %s rss %s mapped %s",
                secs(when, sizeof when, t, s->ts_ns), reader_snap_reason_name(s->reason),
                mb(b[0], 32, s->heap_total), mb(b[1], 32, s->heap_used), mb(b[2], 32, s->external),
                mb(b[3], 32, s->rss), mb(b[4], 32, s->mapped));
        if (s->label_len) {
            fputs("  \"", out);
            for (uint32_t k = 0; k < s->label_len; k++) {
                unsigned char c = (unsigned char)s->label[k];
                if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
                    fprintf(out, "\\x%02x", c);
                else
                    fputc(c, out);
            }
            fputc('"', out);
        }
        if (s->replay_heap_used != s->heap_used || s->replay_external != s->external)
            fprintf(out, "  (replayed: heapUsed %" PRIu64 " external %" PRIu64 ")",
                    s->replay_heap_used, s->replay_external);
        fputc('\n', out);
    }
    return result(out);
}
