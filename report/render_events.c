/* `--events`: every record and event, one line each.
 * Event lines are key=value words separated by single spaces, so grep and awk work on them:
 * numbers in decimal, addresses in 0x hex, strings in double quotes with C escapes (a line never
 * contains a raw newline or a space outside quotes), and markers such as `failed` as bare words.
 */
#include "render.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>

static int result(FILE *out)
{
    return ferror(out) ? -EIO : 0;
}

/* A string in double quotes: printable ASCII as is, `"` and `\` escaped, everything else \xNN. */
static void put_quoted(FILE *out, const char *s, size_t len)
{
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, out);
        else
            fprintf(out, "\\x%02x", c);
    }
    fputc('"', out);
}

static void put_prot(FILE *out, uint64_t prot)
{
    fprintf(out, " prot=%c%c%c", prot & PROT_READ ? 'r' : '-', prot & PROT_WRITE ? 'w' : '-',
            prot & PROT_EXEC ? 'x' : '-');
    uint64_t rest = prot & ~(uint64_t)(PROT_READ | PROT_WRITE | PROT_EXEC);
    if (rest)
        fprintf(out, "|0x%" PRIx64, rest);
}

int render_events_header(FILE *out, const struct mtf_file_header *h)
{
    fprintf(out,
            "header version=%u.%u header_size=%u pid=%u parent_pid=%u origin=%s page_size=%u "
            "max_frames=%u pointer_size=%u start_realtime_ns=%" PRIu64
            " start_monotonic_ns=%" PRIu64 " sample_bytes=%" PRIu64 "\n",
            h->version_major, h->version_minor, h->header_size, h->pid, h->parent_pid,
            reader_origin_name(h->origin), h->page_size, h->max_frames, h->pointer_size,
            h->start_realtime_ns, h->start_monotonic_ns, h->sample_bytes);
    return result(out);
}

static void put_event(FILE *out, const struct rd_event *ev)
{
    fprintf(out, "ts=%" PRIu64 " tid=%u thr=%u %s", ev->ts_ns, ev->tid, ev->thread_serial,
            reader_kind_name(ev->kind));
    switch (ev->kind) {
    case MTF_EV_MALLOC:
    case MTF_EV_VALLOC:
    case MTF_EV_PVALLOC:
        fprintf(out, " ptr=0x%" PRIx64 " size=%" PRIu64, ev->addr, ev->size);
        break;
    case MTF_EV_CALLOC:
        fprintf(out, " ptr=0x%" PRIx64 " nmemb=%" PRIu64 " elsize=%" PRIu64 " size=%" PRIu64,
                ev->addr, ev->nmemb, ev->elsize, ev->size);
        break;
    case MTF_EV_REALLOC:
        fprintf(out, " old=0x%" PRIx64 " ptr=0x%" PRIx64 " size=%" PRIu64 " pre=%" PRIu64,
                ev->old_addr, ev->addr, ev->size, ev->pre_ns);
        break;
    case MTF_EV_REALLOCARRAY:
        fprintf(out,
                " old=0x%" PRIx64 " ptr=0x%" PRIx64 " nmemb=%" PRIu64 " elsize=%" PRIu64
                " size=%" PRIu64 " pre=%" PRIu64,
                ev->old_addr, ev->addr, ev->nmemb, ev->elsize, ev->size, ev->pre_ns);
        break;
    case MTF_EV_FREE:
        fprintf(out, " ptr=0x%" PRIx64, ev->addr);
        break;
    case MTF_EV_POSIX_MEMALIGN:
    case MTF_EV_ALIGNED_ALLOC:
    case MTF_EV_MEMALIGN:
        fprintf(out, " ptr=0x%" PRIx64 " align=%" PRIu64 " size=%" PRIu64, ev->addr, ev->align,
                ev->size);
        break;
    case MTF_EV_MMAP:
    case MTF_EV_MMAP64:
        fprintf(out, " ptr=0x%" PRIx64 " len=%" PRIu64, ev->addr, ev->size);
        put_prot(out, ev->prot);
        fprintf(out, " flags=0x%" PRIx64 " fd=%" PRId64 " off=%" PRIu64 " %s", ev->mflags, ev->fd,
                ev->offset, ev->mflags & MAP_ANONYMOUS ? "anon" : "file");
        break;
    case MTF_EV_MUNMAP:
        fprintf(out, " ptr=0x%" PRIx64 " len=%" PRIu64, ev->addr, ev->size);
        break;
    case MTF_EV_MREMAP:
        fprintf(out,
                " old=0x%" PRIx64 " old_len=%" PRIu64 " ptr=0x%" PRIx64 " new_len=%" PRIu64
                " flags=0x%" PRIx64 " pre=%" PRIu64,
                ev->old_addr, ev->old_len, ev->addr, ev->size, ev->mflags, ev->pre_ns);
        break;
    case MTF_EV_STACK:
        fprintf(out, " id=%u frames=", ev->stack);
        for (uint32_t i = 0; i < ev->nframes; i++)
            fprintf(out, "%s0x%" PRIx64, i ? "," : "", ev->frames[i]);
        if (ev->flags & MTF_EVF_TRUNC)
            fputs(" truncated", out);
        break;
    case MTF_EV_FORK:
        fprintf(out, " child=%" PRIu64, ev->child_pid);
        break;
    case MTF_EV_SNAPSHOT:
        fprintf(out,
                " reason=%s rss=%" PRIu64 " heap_total=%" PRIu64 " heap_used=%" PRIu64
                " external=%" PRIu64 " mapped=%" PRIu64 " rss_peak=%" PRIu64 " label=",
                reader_snap_reason_name(ev->snap_reason), ev->rss, ev->heap_total, ev->heap_used,
                ev->external, ev->mapped, ev->rss_peak);
        put_quoted(out, ev->label, ev->label_len);
        break;
    case MTF_EV_LIMIT:
        fprintf(
            out, " call=%s class=%s mode=%s limit=%" PRIu64 " live=%" PRIu64 " request=%" PRIu64,
            reader_kind_name(ev->call), reader_class_name(ev->limit_class),
            ev->limit_mode == MTF_LIMIT_ENOMEM ? "enomem" : "abort", ev->limit, ev->live, ev->size);
        break;
    }
    if (ev->slack != 0)
        fprintf(out, " slack=%" PRIu64, ev->slack);
    if (ev->cls != RD_CLASS_DEFAULT)
        fprintf(out, " class=%s", reader_class_name(ev->cls));
    /* Kinds with an S field (trace-format.md §7) show it; FREE, MUNMAP, FORK and EXEC have none,
     * and STACK shows the id it defines. */
    switch (ev->kind) {
    case MTF_EV_FREE:
    case MTF_EV_MUNMAP:
    case MTF_EV_STACK:
    case MTF_EV_FORK:
    case MTF_EV_EXEC:
    case MTF_EV_SNAPSHOT:
        break;
    default:
        fprintf(out, " stack=%u", ev->stack);
    }
    if (ev->flags & MTF_EVF_FAILED)
        fputs(" failed", out);
    if (ev->flags & MTF_EVF_NESTED)
        fputs(" nested", out);
    fputc('\n', out);
}

static void put_process(FILE *out, const struct rd_process *p)
{
    fprintf(out, "ts=%" PRIu64 " process exe=", p->ts_ns);
    put_quoted(out, p->exe, strlen(p->exe));
    fprintf(out, " argc=%u argv=", p->argc);
    /* argv holds argc NUL-terminated arguments (validated by the reader): "a","b" */
    for (uint32_t at = 0, i = 0; at < p->argv_len; i++) {
        size_t n = strlen(p->argv + at);
        if (i)
            fputc(',', out);
        put_quoted(out, p->argv + at, n);
        at += (uint32_t)n + 1;
    }
    fputs(" cwd=", out);
    put_quoted(out, p->cwd, strlen(p->cwd));
    fputc('\n', out);
}

static void put_module(FILE *out, const struct rd_module *m)
{
    fprintf(out, "ts=%" PRIu64 " module id=%u %s", m->ts_ns, m->id,
            m->action == MTF_MOD_LOAD ? "load" : "unload");
    if (m->action != MTF_MOD_LOAD) {
        fputc('\n', out);
        return;
    }
    fprintf(out, " base=0x%" PRIx64, m->base);
    if (m->flags) {
        static const struct {
            unsigned bit;
            const char *name;
        } names[] = { { MTF_MODF_MAIN, "main" },
                      { MTF_MODF_SHIM, "shim" },
                      { MTF_MODF_VDSO, "vdso" } };
        const char *sep = " flags=";
        unsigned rest = m->flags;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            if (m->flags & names[i].bit) {
                fprintf(out, "%s%s", sep, names[i].name);
                sep = "|";
                rest &= ~names[i].bit;
            }
        }
        if (rest)
            fprintf(out, "%s0x%x", sep, rest);
    }
    fputs(" path=", out);
    put_quoted(out, m->path, strlen(m->path));
    fputs(" build_id=", out);
    for (uint32_t i = 0; i < m->build_id_len; i++)
        fprintf(out, "%02x", m->build_id[i]);
    fputs(" segs=", out);
    for (uint32_t i = 0; i < m->nseg; i++) {
        const struct mtf_segment *s = &m->segs[i];
        fprintf(out, "%s0x%" PRIx64 "+0x%" PRIx64 ":%c%c%c", i ? "," : "", s->vaddr, s->memsz,
                s->pflags & 4 ? 'r' : '-', s->pflags & 2 ? 'w' : '-', s->pflags & 1 ? 'x' : '-');
    }
    fputc('\n', out);
}

static void put_counts(FILE *out, const uint64_t *counts)
{
    const char *sep = " counts=";
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++) {
        if (counts[k] == 0)
            continue;
        fprintf(out, "%s%s:%" PRIu64, sep, reader_kind_name(k), counts[k]);
        sep = ",";
    }
}

int render_events_item(FILE *out, const struct rd_item *item)
{
    switch (item->type) {
    case RD_ITEM_EVENT:
        put_event(out, &item->ev);
        break;
    case RD_ITEM_PROCESS:
        put_process(out, &item->process);
        break;
    case RD_ITEM_MODULE:
        put_module(out, &item->module);
        break;
    case RD_ITEM_END: {
        const struct mtf_end *e = &item->end;
        fprintf(out,
                "ts=%" PRIu64 " end reason=%s status=%d threads=%" PRIu64 " events=%" PRIu64
                " dropped=%" PRIu64 " unknown_frees=%" PRIu64,
                e->ts_ns, reader_end_reason_name(e->reason), e->status, e->threads, e->events,
                e->dropped, e->unknown_frees);
        put_counts(out, e->counts);
        fputc('\n', out);
        break;
    }
    case RD_ITEM_LOSS:
        fprintf(out, "ts=%" PRIu64 " loss reason=%s tid=%u count=%" PRIu64 "\n", item->loss.ts_ns,
                reader_loss_reason_name(item->loss.reason), item->loss.tid, item->loss.count);
        break;
    case RD_ITEM_REACH: {
        const struct rd_reach *x = &item->reach;
        fprintf(out,
                "ts=%" PRIu64 " reach live_blocks=%" PRIu64 " live_bytes=%" PRIu64
                " root_bytes=%" PRIu64 " entries=%u%s%s",
                x->h.ts_ns, x->h.live_blocks, x->h.live_bytes, x->h.root_bytes, x->h.count,
                x->h.flags & MTF_REACHF_LAST ? " last" : "",
                x->h.flags & MTF_REACHF_RUNNING ? " running" : "");
        for (uint32_t i = 0; i < x->h.count; i++)
            fprintf(out, "%s0x%" PRIx64 ":%s", i ? "," : " lost=", x->entries[i].addr,
                    x->entries[i].state == MTF_REACH_DIRECT ? "direct" : "indirect");
        fputc('\n', out);
        break;
    }
    case RD_ITEM_TOTALS: {
        const struct mtf_totals *x = &item->totals;
        fprintf(out,
                "ts=%" PRIu64 " totals sample=%" PRIu64 " live_blocks=%" PRId64
                " live_usable=%" PRId64 " alloc_bytes=%" PRIu64 " lost_blocks=%" PRIu64
                " lost_bytes=%" PRIu64 " unsampleable=%" PRIu64 "%s",
                x->ts_ns, x->sample_bytes, x->live_blocks, x->live_usable, x->alloc_bytes,
                x->lost_blocks, x->lost_bytes, x->unsampleable,
                x->flags & MTF_TOTALSF_SCANNED ? " scanned" : "");
        put_counts(out, x->calls);
        fputc('\n', out);
        break;
    }
    }
    return result(out);
}
