/* `memtrace-report check --json FILE`: the gate's findings as one JSON object, schema and
 * version in docs/check-json.md (strings through jsonstr.c). Prints only; decides nothing.
 */
#include "check_json.h"

#include <inttypes.h>
#include <string.h>

#include "jsonstr.h"
#include "reader.h"

#define CHECK_JSON_FORMAT_VERSION 1

/* ---- a small emitter: nesting, commas, two-space indentation --------------------------------- */

void jw_member(struct jw *j, const char *key)
{
    if (j->depth > 0) {
        fputs(j->first ? "\n" : ",\n", j->out);
        for (int i = 0; i < j->depth; i++)
            fputs("  ", j->out);
    }
    j->first = 0;
    if (key) {
        json_put_string(j->out, key);
        fputs(": ", j->out);
    }
}

void jw_open(struct jw *j, const char *key, char c)
{
    jw_member(j, key);
    fputc(c, j->out);
    j->depth++;
    j->first = 1;
}

void jw_close(struct jw *j, char c)
{
    j->depth--;
    if (!j->first) {
        fputc('\n', j->out);
        for (int i = 0; i < j->depth; i++)
            fputs("  ", j->out);
    }
    fputc(c, j->out);
    j->first = 0;
}

void jw_u64(struct jw *j, const char *key, uint64_t v)
{
    jw_member(j, key);
    fprintf(j->out, "%" PRIu64, v);
}

void jw_i64(struct jw *j, const char *key, int64_t v)
{
    jw_member(j, key);
    fprintf(j->out, "%" PRId64, v);
}

void jw_bool(struct jw *j, const char *key, int v)
{
    jw_member(j, key);
    fputs(v ? "true" : "false", j->out);
}

void jw_str(struct jw *j, const char *key, const char *s)
{
    jw_member(j, key);
    if (s)
        json_put_string(j->out, s);
    else
        fputs("null", j->out);
}

/* A limit: its number, or null when not set. */
static void jw_limit(struct jw *j, const char *key, uint64_t v)
{
    if (v == CHK_UNSET)
        jw_str(j, key, NULL);
    else
        jw_u64(j, key, v);
}

/* ---- the findings ------------------------------------------------------------------------- */

void chk_json_stack(struct jw *j, const char *key, const struct chk_stack *s)
{
    jw_open(j, key, '[');
    for (int i = 0; i < s->n; i++) {
        const struct chk_frame *f = &s->f[i];
        jw_open(j, NULL, '{');
        jw_str(j, "function", f->function);
        jw_str(j, "file", f->file);
        if (f->line)
            jw_u64(j, "line", f->line);
        else
            jw_str(j, "line", NULL);
        jw_str(j, "module", f->module);
        jw_u64(j, "module_offset", f->module_offset);
        jw_bool(j, "inlined", f->inlined);
        jw_close(j, '}');
    }
    jw_close(j, ']');
}

static void put_site(struct jw *j, const struct chk_site *s, int lost)
{
    jw_open(j, NULL, '{');
    if (lost) {
        jw_u64(j, "bytes", s->lost_bytes);
        jw_u64(j, "blocks", s->lost_blocks);
        jw_u64(j, "direct_bytes", s->direct_bytes);
        jw_u64(j, "direct_blocks", s->direct_blocks);
        jw_u64(j, "indirect_bytes", s->indirect_bytes);
        jw_u64(j, "indirect_blocks", s->indirect_blocks);
    } else {
        jw_u64(j, "bytes", s->reachable_bytes);
        jw_u64(j, "blocks", s->reachable_blocks);
    }
    chk_json_stack(j, "stack", &s->st);
    jw_bool(j, "stack_truncated", s->st.truncated);
    jw_close(j, '}');
}

static void put_failures(struct jw *j, const struct chk_run *r, const struct chk_proc *p)
{
    char text[1200];
    jw_open(j, "failures", '[');
    for (unsigned bit = 1; bit < (1u << CHK_FAIL_KINDS); bit <<= 1) {
        if (!(p->fail & bit))
            continue;
        chk_fail_text(r, p, bit, text, sizeof text);
        jw_open(j, NULL, '{');
        jw_str(j, "kind", chk_fail_name(bit));
        jw_str(j, "message", text);
        jw_close(j, '}');
    }
    jw_close(j, ']');
}

static void put_end(struct jw *j, const struct chk_proc *p)
{
    if (!p->have_end) {
        jw_str(j, "end", NULL);
        return;
    }
    jw_open(j, "end", '{');
    jw_str(j, "reason", reader_end_reason_name(p->end_reason));
    jw_i64(j, "status", p->end_status);
    jw_close(j, '}');
}

static void put_cap(struct jw *j, const struct chk_proc *p)
{
    if (p->limits_abort == 0) {
        jw_str(j, "heap_cap", NULL);
        return;
    }
    jw_open(j, "heap_cap", '{');
    jw_str(j, "call", reader_kind_name(p->cap.call));
    jw_u64(j, "request", p->cap.request);
    jw_u64(j, "live", p->cap.live);
    jw_u64(j, "limit", p->cap.limit);
    chk_json_stack(j, "stack", &p->cap.st);
    jw_close(j, '}');
}

static void put_process(struct jw *j, const struct chk_run *r, const struct chk_proc *p)
{
    jw_open(j, NULL, '{');
    jw_str(j, "trace", p->trace);
    jw_u64(j, "pid", p->pid);
    jw_u64(j, "parent_pid", p->parent_pid);
    jw_str(j, "origin", reader_origin_name(p->origin));
    jw_str(j, "name", p->name);
    jw_str(j, "exe", p->exe);
    jw_str(j, "command", p->cmdline);
    jw_u64(j, "start_realtime_ns", p->start_realtime_ns);
    jw_u64(j, "duration_ns", p->duration_ns);
    put_end(j, p);
    jw_bool(j, "complete", p->complete);
    jw_bool(j, "truncated", p->truncated);
    jw_str(j, "error", p->error);
    jw_str(j, "verdict", p->fail ? "fail" : "pass");
    put_failures(j, r, p);
    jw_u64(j, "dropped", p->dropped);
    jw_u64(j, "peak_heap_used", p->peak_heap);
    jw_u64(j, "cap_refusals", p->limits_total);
    put_cap(j, p);
    jw_bool(j, "leaks_checked", p->leaks_checked);
    jw_bool(j, "leak_scan", p->leak_scan);
    if (p->sample_bytes) {
        /* sampled trace: `lost` holds the exact totals, `leaks` only sampled sites */
        jw_open(j, "sampling", '{');
        jw_u64(j, "bytes", p->sample_bytes);
        jw_bool(j, "lost_exact", p->lost_exact);
        jw_u64(j, "not_sampled_bytes", p->unsampled_bytes);
        jw_u64(j, "not_sampled_blocks", p->unsampled_blocks);
        jw_close(j, '}');
    } else {
        jw_str(j, "sampling", NULL);
    }
    jw_open(j, "live_at_end", '{');
    jw_u64(j, "bytes", p->live_bytes);
    jw_u64(j, "blocks", p->live_blocks);
    jw_close(j, '}');
    jw_open(j, "lost", '{');
    jw_u64(j, "bytes", p->lost_bytes);
    jw_u64(j, "blocks", p->lost_blocks);
    jw_u64(j, "direct_bytes", p->direct_bytes);
    jw_u64(j, "direct_blocks", p->direct_blocks);
    jw_u64(j, "indirect_bytes", p->indirect_bytes);
    jw_u64(j, "indirect_blocks", p->indirect_blocks);
    jw_close(j, '}');
    jw_open(j, "reachable", '{');
    jw_u64(j, "bytes", p->reachable_bytes);
    jw_u64(j, "blocks", p->reachable_blocks);
    jw_close(j, '}');
    jw_open(j, "suppressed", '{');
    jw_u64(j, "bytes", p->supp_bytes);
    jw_u64(j, "blocks", p->supp_blocks);
    jw_close(j, '}');
    jw_open(j, "leaks", '[');
    for (size_t i = 0; i < p->nlost_sites; i++)
        put_site(j, &p->sites[i], 1);
    jw_close(j, ']');
    jw_open(j, "reachable_sites", '[');
    for (size_t i = 0; i < p->nsites; i++)
        if (p->sites[i].reachable_blocks)
            put_site(j, &p->sites[i], 0);
    jw_close(j, ']');
    jw_close(j, '}');
}

static void put_options(struct jw *j, const struct chk_run *r)
{
    jw_open(j, "limits", '{');
    jw_limit(j, "max_leak_bytes", r->o.max_leak_bytes);
    jw_limit(j, "max_leak_blocks", r->o.max_leak_blocks);
    jw_bool(j, "fail_on_reachable", r->o.fail_on_reachable);
    jw_limit(j, "max_heap", r->o.max_heap);
    jw_bool(j, "allow_incomplete", r->o.allow_incomplete);
    jw_bool(j, "default_suppressions", r->o.default_supp);
    jw_close(j, '}');
}

static void put_suppressions(struct jw *j, const struct chk_run *r)
{
    jw_open(j, "suppressions", '[');
    for (size_t i = 0; i < r->supp.n; i++) {
        const struct supp_rule *u = &r->supp.rules[i];
        jw_open(j, NULL, '{');
        jw_str(j, "rule", u->builtin ? u->name : NULL);
        jw_str(j, "pattern", u->builtin ? NULL : u->name);
        jw_bool(j, "builtin", u->builtin);
        jw_str(j, "source", u->source);
        jw_str(j, "what", u->what);
        jw_u64(j, "matched", u->stacks);
        jw_u64(j, "blocks", u->blocks);
        jw_u64(j, "bytes", u->bytes);
        jw_close(j, '}');
    }
    jw_close(j, ']');
}

int chk_render_json(FILE *out, const struct chk_run *r)
{
    struct jw j = { .out = out };
    jw_open(&j, NULL, '{');
    jw_u64(&j, "format_version", CHECK_JSON_FORMAT_VERSION);
    jw_str(&j, "verdict", r->fail ? "fail" : "pass");
    jw_u64(&j, "exit_status", (uint64_t)r->status);
    if (r->o.command_status >= 0)
        jw_u64(&j, "command_status", (uint64_t)r->o.command_status);
    else
        jw_str(&j, "command_status", NULL);
    put_options(&j, r);
    jw_open(&j, "totals", '{');
    jw_u64(&j, "processes", r->n);
    jw_u64(&j, "failed_processes", r->nfailed);
    jw_u64(&j, "lost_bytes", r->lost_bytes);
    jw_u64(&j, "lost_blocks", r->lost_blocks);
    jw_u64(&j, "reachable_bytes", r->reachable_bytes);
    jw_u64(&j, "reachable_blocks", r->reachable_blocks);
    jw_u64(&j, "suppressed_bytes", r->supp_bytes);
    jw_u64(&j, "suppressed_blocks", r->supp_blocks);
    jw_close(&j, '}');
    jw_open(&j, "processes", '[');
    for (size_t i = 0; i < r->n; i++)
        put_process(&j, r, &r->procs[i]);
    jw_close(&j, ']');
    put_suppressions(&j, r);
    jw_close(&j, '}');
    fputc('\n', out);
    return ferror(out) ? -1 : 0;
}
