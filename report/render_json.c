/* `--json`: the summary as one JSON object (schema and its version: docs/report-json.md).
 * A small emitter of its own: objects nest, commas and indentation are tracked, and strings are
 * always valid JSON (RFC 8259): quotes, backslashes and control characters are escaped, valid
 * UTF-8 passes through, and bytes that are not valid UTF-8 (paths are arbitrary bytes) become
 * \u00XX, i.e. the byte read as Latin-1, so output is always valid UTF-8.
 */
#include "render.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "jsonstr.h"

struct json {
    FILE *out;
    int depth; /* open objects */
    int first; /* nothing written yet in the innermost open object */
};

/* Start a member (`key` NULL for the top-level value): comma, newline, indentation, key. */
static void member(struct json *j, const char *key)
{
    if (j->depth > 0) {
        fputs(j->first ? "\n" : ",\n", j->out);
        fprintf(j->out, "%*s", 2 * j->depth, "");
    }
    if (key) {
        json_put_string(j->out, key);
        fputs(": ", j->out);
    }
    j->first = 0;
}

static void open_object(struct json *j, const char *key)
{
    member(j, key);
    fputc('{', j->out);
    j->depth++;
    j->first = 1;
}

static void close_object(struct json *j)
{
    j->depth--;
    if (!j->first)
        fprintf(j->out, "\n%*s", 2 * j->depth, "");
    fputc('}', j->out);
    j->first = 0;
}

static void open_array(struct json *j, const char *key)
{
    member(j, key);
    fputc('[', j->out);
    j->depth++;
    j->first = 1;
}

static void close_array(struct json *j)
{
    j->depth--;
    if (!j->first)
        fprintf(j->out, "\n%*s", 2 * j->depth, "");
    fputc(']', j->out);
    j->first = 0;
}

static void put_u64(struct json *j, const char *key, uint64_t v)
{
    member(j, key);
    fprintf(j->out, "%" PRIu64, v);
}

static void put_i64(struct json *j, const char *key, int64_t v)
{
    member(j, key);
    fprintf(j->out, "%" PRId64, v);
}

static void put_bool(struct json *j, const char *key, int v)
{
    member(j, key);
    fputs(v ? "true" : "false", j->out);
}

static void put_null(struct json *j, const char *key)
{
    member(j, key);
    fputs("null", j->out);
}

static void put_str(struct json *j, const char *key, const char *s)
{
    if (s == NULL) {
        put_null(j, key);
        return;
    }
    member(j, key);
    json_put_string(j->out, s);
}

/* Nanoseconds since the trace started (0 for times before it: events recorded before the file
 * was opened). */
static uint64_t rel_ns(const struct render_trace *t, uint64_t ts)
{
    uint64_t start = t->status->header.start_monotonic_ns;
    return ts > start ? ts - start : 0;
}

static void put_stack(struct json *j, const struct render_trace *t, const char *key, uint32_t id)
{
    const struct sv_stack *s = sv_get(t->stacks, id);
    put_u64(j, "stack_id", id);
    if (s->truncated)
        put_bool(j, "stack_truncated", 1);
    open_array(j, key);
    for (int i = 0; i < s->n; i++) {
        const struct sv_frame *f = &s->f[i];
        open_object(j, NULL);
        put_str(j, "function", f->function);
        put_str(j, "file", f->file);
        if (f->line)
            put_u64(j, "line", f->line);
        else
            put_null(j, "line");
        put_str(j, "module", f->module);
        put_u64(j, "module_offset", f->module_offset);
        if (f->inlined)
            put_bool(j, "inlined", 1);
        close_object(j);
    }
    close_array(j);
}

/* The memoryUsage picture; rss and heapTotal are null when no snapshot gave them. */
static void put_usage(struct json *j, const struct render_trace *t, const char *key,
                      const struct agg_usage *u, int is_exit)
{
    open_object(j, key);
    put_u64(j, "at_ns", rel_ns(t, u->ts_ns));
    if (u->have_snapshot) {
        put_u64(j, "rss", u->rss);
        put_u64(j, "heapTotal", u->heap_total);
    } else {
        put_null(j, "rss");
        put_null(j, "heapTotal");
    }
    put_u64(j, "heapUsed", u->heap_used);
    put_u64(j, "external", u->external);
    put_u64(j, "mapped", u->mapped);
    put_u64(j, "heap_requested", u->requested);
    put_u64(j, "heap_blocks", u->heap_blocks);
    if (u->have_snapshot) {
        put_str(j, "sampled_by", reader_snap_reason_name(u->snap_reason));
        put_u64(j, "sampled_at_ns", rel_ns(t, u->snap_ts_ns));
    } else {
        put_null(j, "sampled_by");
        put_null(j, "sampled_at_ns");
    }
    if (is_exit) {
        if (u->have_rss_peak)
            put_u64(j, "rss_peak", u->rss_peak);
        else
            put_null(j, "rss_peak");
    }
    close_object(j);
}

static void put_sites(struct json *j, const struct render_trace *t, const char *key,
                      const struct agg_site *const *l, size_t n)
{
    open_array(j, key);
    for (size_t i = 0; i < n; i++) {
        open_object(j, NULL);
        put_u64(j, "peak_bytes", l[i]->peak_bytes);
        put_u64(j, "total_bytes", l[i]->total_bytes);
        put_u64(j, "calls", l[i]->calls);
        put_u64(j, "at_heap_peak_bytes", l[i]->at_peak);
        put_u64(j, "live_bytes_at_exit", l[i]->live_bytes);
        put_u64(j, "live_blocks_at_exit", l[i]->live_blocks);
        if (t->agg->sample_bytes)
            put_bool(j, "estimated", 1);
        put_stack(j, t, "stack", l[i]->stack);
        close_object(j);
    }
    close_array(j);
}

static void put_leaks(struct json *j, const struct render_trace *t)
{
    const struct findings *f = t->findings;
    open_object(j, "leaks");
    put_u64(j, "bytes", f->leak_bytes);
    put_u64(j, "blocks", f->leak_blocks);
    if (f->sampled) {
        put_bool(j, "exact", f->leak_exact);
        put_str(j, "bytes_are", f->leak_bytes_usable ? "usable" : "requested");
    }
    put_bool(j, "leak_scan", t->agg->have_reach);
    put_u64(j, "reachable_bytes", f->reachable_bytes);
    put_u64(j, "reachable_blocks", f->reachable_blocks);
    open_array(j, "sites");
    for (size_t i = 0; i < f->nleaks; i++) {
        open_object(j, NULL);
        put_u64(j, "bytes", f->leaks[i].bytes);
        put_u64(j, "blocks", f->leaks[i].blocks);
        if (f->leaks[i].stack == FINDINGS_NOT_SAMPLED) {
            put_bool(j, "site_not_sampled", 1); /* exact: the leak scan's rest */
            put_null(j, "stack_id");
            put_null(j, "stack");
        } else {
            if (f->sampled)
                put_bool(j, "estimated", 1);
            put_stack(j, t, "stack", f->leaks[i].stack);
        }
        close_object(j);
    }
    close_array(j);
    close_object(j);

    open_object(j, "suppressed");
    put_u64(j, "bytes", f->supp_bytes);
    put_u64(j, "blocks", f->supp_blocks);
    put_bool(j, "default_rules", t->default_suppressions);
    open_array(j, "rules");
    for (size_t i = 0; i < t->supp->n; i++) {
        const struct supp_rule *r = &t->supp->rules[i];
        open_object(j, NULL);
        put_str(j, "rule", r->builtin ? r->name : NULL);
        put_str(j, "pattern", r->builtin ? NULL : r->name);
        put_str(j, "source", r->builtin ? "built-in" : r->source);
        put_u64(j, "stacks", r->stacks);
        put_u64(j, "blocks", r->blocks);
        put_u64(j, "bytes", r->bytes);
        close_object(j);
    }
    close_array(j);
    close_object(j);
}

static void put_timeline(struct json *j, const struct render_trace *t)
{
    const struct agg *a = t->agg;
    open_array(j, "timeline");
    for (size_t i = 0; i < a->ntimeline; i++) {
        const struct agg_snapshot *s = &a->timeline[i];
        open_object(j, NULL);
        put_u64(j, "at_ns", rel_ns(t, s->ts_ns));
        put_str(j, "reason", reader_snap_reason_name(s->reason));
        put_str(j, "label", s->label_len ? s->label : NULL);
        put_u64(j, "rss", s->rss);
        put_u64(j, "heapTotal", s->heap_total);
        put_u64(j, "heapUsed", s->heap_used);
        put_u64(j, "external", s->external);
        put_u64(j, "mapped", s->mapped);
        if (s->reason == MTF_SNAP_EXIT)
            put_u64(j, "rss_peak", s->rss_peak);
        open_object(j, "replayed");
        put_u64(j, "heapUsed", s->replay_heap_used);
        put_u64(j, "external", s->replay_external);
        put_u64(j, "mapped", s->replay_mapped);
        close_object(j);
        close_object(j);
    }
    close_array(j);
}

static void put_limits(struct json *j, const struct render_trace *t)
{
    const struct agg *a = t->agg;
    open_object(j, "limits");
    put_u64(j, "refused", a->limits_total);
    open_array(j, "calls");
    for (size_t i = 0; i < a->nlimits; i++) {
        const struct agg_limit *l = &a->limits[i];
        open_object(j, NULL);
        put_u64(j, "at_ns", rel_ns(t, l->ts_ns));
        put_str(j, "call", reader_kind_name(l->call));
        put_str(j, "class", reader_class_name(l->cls));
        put_str(j, "mode", l->mode == MTF_LIMIT_ENOMEM ? "enomem" : "abort");
        put_u64(j, "limit", l->limit);
        put_u64(j, "live", l->live);
        put_u64(j, "request", l->request);
        put_stack(j, t, "stack", l->stack);
        close_object(j);
    }
    close_array(j);
    close_object(j);
}

/* "sampling": null, or what was sampled and the exact figures of the TOTALS record. */
static void put_sampling(struct json *j, const struct render_trace *t)
{
    const struct agg *a = t->agg;
    if (a->sample_bytes == 0) {
        put_null(j, "sampling");
        return;
    }
    open_object(j, "sampling");
    put_u64(j, "bytes", a->sample_bytes);
    put_bool(j, "estimated", 1); /* site figures: top_sites, leaks.sites, peak */
    put_bool(j, "exact_totals", a->have_totals);
    if (a->have_totals) {
        const struct mtf_totals *x = &a->totals;
        open_object(j, "calls");
        for (unsigned k = MTF_EV_MALLOC; k <= MTF_EV_PVALLOC; k++)
            put_u64(j, reader_kind_name(k), x->calls[k]);
        close_object(j);
        put_i64(j, "live_blocks", x->live_blocks);
        put_i64(j, "live_usable_bytes", x->live_usable);
        put_u64(j, "allocated_bytes", x->alloc_bytes);
        if (x->flags & MTF_TOTALSF_SCANNED) {
            put_u64(j, "lost_blocks", x->lost_blocks);
            put_u64(j, "lost_bytes", x->lost_bytes);
        } else {
            put_null(j, "lost_blocks");
            put_null(j, "lost_bytes");
        }
        put_u64(j, "unsampleable", x->unsampleable);
    }
    close_object(j);
}

static void put_report(struct json *j, const struct render_trace *t)
{
    const struct agg *a = t->agg;
    put_str(j, "command", a->cmdline);
    put_sampling(j, t);
    put_u64(j, "unknown_frees", a->unknown_frees);
    if (a->peak.ts_ns != 0)
        put_usage(j, t, "peak", &a->peak, 0);
    else
        put_null(j, "peak");
    put_usage(j, t, "exit", &a->exit, 1);
    put_leaks(j, t);
    open_object(j, "top_sites");
    put_sites(j, t, "by_peak_bytes", t->findings->by_peak, t->findings->ntop_peak);
    put_sites(j, t, "by_total_bytes", t->findings->by_total, t->findings->ntop_total);
    put_sites(j, t, "by_calls", t->findings->by_count, t->findings->ntop_count);
    close_object(j);
    put_timeline(j, t);
    put_limits(j, t);
    put_u64(j, "stale_modules", (uint64_t)t->stale_modules);
}

int render_json(FILE *out, const struct render_trace *t)
{
    const struct rd_status *st = t->status;
    const struct mtf_file_header *h = &st->header;
    struct json j = { .out = out };
    char version[32];

    open_object(&j, NULL);
    put_u64(&j, "format_version", RENDER_JSON_FORMAT_VERSION);

    open_object(&j, "trace");
    put_str(&j, "path", t->path);
    if (t->header_valid) {
        snprintf(version, sizeof(version), "%u.%u", h->version_major, h->version_minor);
        put_str(&j, "trace_version", version);
        put_u64(&j, "pid", h->pid);
        put_u64(&j, "parent_pid", h->parent_pid);
        put_str(&j, "origin", reader_origin_name(h->origin));
        put_u64(&j, "start_realtime_ns", h->start_realtime_ns);
        put_u64(&j, "duration_ns", t->max_ts_ns - t->min_ts_ns);
    } else {
        put_null(&j, "trace_version");
        put_null(&j, "pid");
        put_null(&j, "parent_pid");
        put_null(&j, "origin");
        put_null(&j, "start_realtime_ns");
        put_null(&j, "duration_ns");
    }
    put_str(&j, "exe", t->exe);
    put_bool(&j, "complete", st->complete);
    put_bool(&j, "truncated", st->truncated);
    put_u64(&j, "file_bytes", st->file_size);
    put_u64(&j, "valid_bytes", st->valid_bytes);
    put_u64(&j, "lost_bytes", st->lost_bytes);
    put_u64(&j, "records", st->records);
    put_u64(&j, "chunks", st->chunks);
    if (t->error)
        put_u64(&j, "error_offset", t->error_offset);
    else
        put_null(&j, "error_offset");
    put_str(&j, "error", t->error);
    close_object(&j);

    if (t->have_end) {
        open_object(&j, "end");
        put_str(&j, "reason", reader_end_reason_name(t->end.reason));
        put_i64(&j, "status", t->end.status);
        put_u64(&j, "threads", t->end.threads);
        close_object(&j);
    } else {
        put_null(&j, "end");
    }

    open_object(&j, "events");
    for (unsigned k = RENDER_FIRST_CALL; k <= RENDER_LAST_CALL; k++)
        put_u64(&j, reader_kind_name(k), st->kind_counts[k]);
    put_u64(&j, "dropped", st->dropped);
    close_object(&j);

    open_object(&j, "other_events");
    for (unsigned k = RENDER_LAST_CALL + 1; k < MTF_EV_KIND_COUNT; k++)
        put_u64(&j, reader_kind_name(k), st->kind_counts[k]);
    close_object(&j);

    put_bool(&j, "complete", st->complete);
    put_bool(&j, "truncated", st->truncated);
    if (t->agg != NULL && t->header_valid)
        put_report(&j, t);

    close_object(&j);
    fputc('\n', out);
    return ferror(out) ? -EIO : 0;
}
