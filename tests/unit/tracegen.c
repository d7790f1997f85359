/* tracegen: test-only trace writer (tracegen.h). Encodes from docs/trace-format.md directly;
 * every on-disk integer is written byte by byte in little-endian order, never by dumping a
 * struct, so the layout under test is the spec's, not the compiler's.
 */
#include "tracegen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc32c.h"

void tg_buf_free(struct tg_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void tg_put(struct tg_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (b->data == NULL)
            abort();
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_le(struct tg_buf *b, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uint8_t byte = (uint8_t)(v >> (8 * i));
        tg_put(b, &byte, 1);
    }
}

void tg_u16(struct tg_buf *b, uint16_t v)
{
    put_le(b, v, 2);
}

void tg_u32(struct tg_buf *b, uint32_t v)
{
    put_le(b, v, 4);
}

void tg_u64(struct tg_buf *b, uint64_t v)
{
    put_le(b, v, 8);
}

void tg_varint(struct tg_buf *b, uint64_t v)
{
    do {
        uint8_t byte = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            byte |= 0x80;
        tg_put(b, &byte, 1);
    } while (v);
}

void tg_zigzag(struct tg_buf *b, uint64_t delta)
{
    /* z = (d << 1) ^ (d >> 63) with an arithmetic shift, written without signed shifts. */
    tg_varint(b, (delta << 1) ^ (0 - (delta >> 63)));
}

struct mtf_file_header tg_header_default(void)
{
    struct mtf_file_header h;
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, MTF_MAGIC, MTF_MAGIC_SIZE);
    h.version_major = MTF_VERSION_MAJOR;
    h.version_minor = MTF_VERSION_MINOR;
    h.header_size = MTF_FILE_HEADER_SIZE;
    h.pid = 4242;
    h.parent_pid = 1;
    h.origin = MTF_ORIGIN_START;
    h.page_size = 4096;
    h.start_realtime_ns = 1700000000000000000ULL;
    h.start_monotonic_ns = 1000;
    h.max_frames = 64;
    h.pointer_size = 8;
    return h;
}

void tg_file_header(struct tg_buf *out, const struct mtf_file_header *hp)
{
    struct mtf_file_header h = hp ? *hp : tg_header_default();
    size_t start = out->len;
    tg_put(out, h.magic, MTF_MAGIC_SIZE);
    tg_u16(out, h.version_major);
    tg_u16(out, h.version_minor);
    tg_u32(out, h.header_size);
    tg_u32(out, h.pid);
    tg_u32(out, h.parent_pid);
    tg_u32(out, h.origin);
    tg_u32(out, h.page_size);
    tg_u64(out, h.start_realtime_ns);
    tg_u64(out, h.start_monotonic_ns);
    tg_u32(out, h.max_frames);
    tg_u32(out, h.pointer_size);
    tg_u64(out, h.sample_bytes);
    for (size_t i = 0; i < sizeof(h.reserved) / sizeof(h.reserved[0]); i++)
        tg_u64(out, h.reserved[i]);
    while (out->len - start < h.header_size)
        put_le(out, 0, 1);
}

static uint32_t record_crc(const uint8_t *rec, uint32_t payload_size)
{
    uint32_t c = mt_crc32c(0, rec, MTF_RECORD_CRC_SPAN);
    return mt_crc32c(c, rec + MTF_RECORD_HEADER_SIZE, payload_size);
}

size_t tg_record(struct tg_buf *out, uint16_t type, const void *payload, size_t n)
{
    size_t off = out->len;
    tg_u32(out, MTF_RECORD_MAGIC);
    tg_u16(out, type);
    tg_u16(out, MTF_RECF_NONE);
    tg_u32(out, (uint32_t)n);
    tg_u32(out, 0);
    tg_put(out, payload, n);
    tg_fix_crc(out, off);
    return off;
}

void tg_fix_crc(struct tg_buf *out, size_t off)
{
    uint8_t *rec = out->data + off;
    const uint8_t *size = rec + offsetof(struct mtf_record_header, payload_size);
    uint32_t n = (uint32_t)size[0] | (uint32_t)size[1] << 8 | (uint32_t)size[2] << 16 |
                 (uint32_t)size[3] << 24;
    uint32_t c = record_crc(rec, n);
    for (int i = 0; i < 4; i++)
        rec[offsetof(struct mtf_record_header, crc32c) + i] = (uint8_t)(c >> (8 * i));
}

size_t tg_process(struct tg_buf *out, uint64_t ts_ns, const char *exe, const char *argv,
                  uint32_t argv_len, uint32_t argc, const char *cwd)
{
    struct tg_buf p = { 0 };
    tg_u64(&p, ts_ns);
    tg_u32(&p, (uint32_t)strlen(exe));
    tg_u32(&p, argv_len);
    tg_u32(&p, (uint32_t)strlen(cwd));
    tg_u32(&p, argc);
    tg_put(&p, exe, strlen(exe));
    tg_put(&p, argv, argv_len);
    tg_put(&p, cwd, strlen(cwd));
    size_t off = tg_record(out, MTF_REC_PROCESS, p.data, p.len);
    tg_buf_free(&p);
    return off;
}

size_t tg_modules(struct tg_buf *out, uint64_t ts_ns, const struct tg_module *m, uint32_t count)
{
    struct tg_buf p = { 0 };
    tg_u64(&p, ts_ns);
    tg_u32(&p, count);
    tg_u32(&p, 0);
    for (uint32_t i = 0; i < count; i++) {
        size_t path_len = m[i].path ? strlen(m[i].path) : 0;
        tg_u32(&p, m[i].id);
        tg_u16(&p, m[i].action);
        tg_u16(&p, m[i].flags);
        tg_u64(&p, m[i].base);
        tg_u32(&p, (uint32_t)path_len);
        tg_u16(&p, m[i].build_id_len);
        tg_u16(&p, m[i].nseg);
        tg_put(&p, m[i].path, path_len);
        tg_put(&p, m[i].build_id, m[i].build_id_len);
        for (uint16_t s = 0; s < m[i].nseg; s++) {
            tg_u64(&p, m[i].segs[s].vaddr);
            tg_u64(&p, m[i].segs[s].memsz);
            tg_u32(&p, m[i].segs[s].pflags);
            tg_u32(&p, m[i].segs[s].reserved);
        }
    }
    size_t off = tg_record(out, MTF_REC_MODULES, p.data, p.len);
    tg_buf_free(&p);
    return off;
}

void tg_chunk_begin(struct tg_chunk *c, uint32_t tid, uint32_t thread_serial, uint64_t base_ts_ns,
                    uint64_t base_addr, uint32_t base_stack)
{
    memset(c, 0, sizeof(*c));
    c->h.tid = tid;
    c->h.thread_serial = thread_serial;
    c->h.base_ts_ns = base_ts_ns;
    c->h.base_addr = base_addr;
    c->h.base_stack = base_stack;
    c->ts = base_ts_ns;
    c->addr = base_addr;
    c->stack = base_stack;
}

static void enc_addr(struct tg_chunk *c, uint64_t a)
{
    tg_zigzag(&c->ev, a - c->addr);
    c->addr = a;
}

static void enc_stack(struct tg_chunk *c, uint32_t s)
{
    tg_zigzag(&c->ev, (uint64_t)s - c->stack);
    c->stack = s;
}

void tg_chunk_event(struct tg_chunk *c, const struct rd_event *ev)
{
    uint8_t tag = (uint8_t)(ev->kind | ev->flags);
    tg_put(&c->ev, &tag, 1);
    tg_varint(&c->ev, ev->ts_ns - c->ts);
    c->ts = ev->ts_ns;
    if (c->h.nevents == 0)
        c->h.first_ts_ns = ev->ts_ns;
    c->h.last_ts_ns = ev->ts_ns;
    c->h.nevents++;
    c->counts[ev->kind & MTF_EV_KIND_MASK]++;
    if ((ev->flags & MTF_EVF_CLASS) && ev->kind != MTF_EV_STACK)
        tg_varint(&c->ev, ev->cls);

    switch (ev->kind) {
    case MTF_EV_MALLOC:
    case MTF_EV_VALLOC:
    case MTF_EV_PVALLOC:
        enc_addr(c, ev->addr);
        tg_varint(&c->ev, ev->size);
        tg_varint(&c->ev, ev->slack);
        enc_stack(c, ev->stack);
        break;
    case MTF_EV_CALLOC:
        enc_addr(c, ev->addr);
        tg_varint(&c->ev, ev->nmemb);
        tg_varint(&c->ev, ev->elsize);
        tg_varint(&c->ev, ev->slack);
        enc_stack(c, ev->stack);
        break;
    case MTF_EV_REALLOC:
        enc_addr(c, ev->old_addr);
        enc_addr(c, ev->addr);
        tg_varint(&c->ev, ev->size);
        tg_varint(&c->ev, ev->slack);
        enc_stack(c, ev->stack);
        tg_varint(&c->ev, ev->pre_ns);
        break;
    case MTF_EV_REALLOCARRAY:
        enc_addr(c, ev->old_addr);
        enc_addr(c, ev->addr);
        tg_varint(&c->ev, ev->nmemb);
        tg_varint(&c->ev, ev->elsize);
        tg_varint(&c->ev, ev->slack);
        enc_stack(c, ev->stack);
        tg_varint(&c->ev, ev->pre_ns);
        break;
    case MTF_EV_FREE:
        enc_addr(c, ev->addr);
        break;
    case MTF_EV_POSIX_MEMALIGN:
    case MTF_EV_ALIGNED_ALLOC:
    case MTF_EV_MEMALIGN:
        enc_addr(c, ev->addr);
        tg_varint(&c->ev, ev->align);
        tg_varint(&c->ev, ev->size);
        tg_varint(&c->ev, ev->slack);
        enc_stack(c, ev->stack);
        break;
    case MTF_EV_MMAP:
    case MTF_EV_MMAP64:
        enc_addr(c, ev->addr);
        tg_varint(&c->ev, ev->size);
        tg_varint(&c->ev, ev->prot);
        tg_varint(&c->ev, ev->mflags);
        tg_zigzag(&c->ev, (uint64_t)ev->fd);
        tg_varint(&c->ev, ev->offset);
        enc_stack(c, ev->stack);
        break;
    case MTF_EV_MUNMAP:
        enc_addr(c, ev->addr);
        tg_varint(&c->ev, ev->size);
        break;
    case MTF_EV_MREMAP:
        enc_addr(c, ev->old_addr);
        tg_varint(&c->ev, ev->old_len);
        tg_varint(&c->ev, ev->size);
        tg_varint(&c->ev, ev->mflags);
        enc_addr(c, ev->addr);
        enc_stack(c, ev->stack);
        tg_varint(&c->ev, ev->pre_ns);
        break;
    case MTF_EV_STACK: {
        uint64_t prev = 0;
        tg_varint(&c->ev, ev->stack);
        tg_varint(&c->ev, ev->nframes);
        for (uint32_t i = 0; i < ev->nframes; i++) {
            tg_zigzag(&c->ev, ev->frames[i] - prev);
            prev = ev->frames[i];
        }
        break;
    }
    case MTF_EV_FORK:
        tg_varint(&c->ev, ev->child_pid);
        break;
    case MTF_EV_EXEC:
        break;
    case MTF_EV_SNAPSHOT:
        tg_varint(&c->ev, ev->snap_reason);
        tg_varint(&c->ev, ev->rss);
        tg_varint(&c->ev, ev->heap_total);
        tg_varint(&c->ev, ev->heap_used);
        tg_varint(&c->ev, ev->external);
        tg_varint(&c->ev, ev->mapped);
        tg_varint(&c->ev, ev->rss_peak);
        tg_varint(&c->ev, ev->label_len);
        tg_put(&c->ev, ev->label, ev->label_len);
        break;
    case MTF_EV_LIMIT:
        tg_varint(&c->ev, ev->call);
        tg_varint(&c->ev, ev->limit_class);
        tg_varint(&c->ev, ev->limit_mode);
        tg_varint(&c->ev, ev->limit);
        tg_varint(&c->ev, ev->live);
        tg_varint(&c->ev, ev->size);
        enc_stack(c, ev->stack);
        break;
    default:
        abort(); /* a test asked for a kind the format does not have: build those bytes by hand */
    }
}

size_t tg_chunk_end(struct tg_chunk *c, struct tg_buf *out, struct mtf_end *tally)
{
    struct tg_buf p = { 0 };
    c->h.events_size = (uint32_t)c->ev.len;
    tg_u32(&p, c->h.tid);
    tg_u32(&p, c->h.thread_serial);
    tg_u32(&p, c->h.epoch);
    tg_u32(&p, c->h.offset);
    tg_u64(&p, c->h.base_ts_ns);
    tg_u64(&p, c->h.base_addr);
    tg_u64(&p, c->h.first_ts_ns);
    tg_u64(&p, c->h.last_ts_ns);
    tg_u32(&p, c->h.base_stack);
    tg_u32(&p, c->h.nevents);
    tg_u32(&p, c->h.flags);
    tg_u32(&p, c->h.events_size);
    tg_put(&p, c->ev.data, c->ev.len);
    size_t off = tg_record(out, MTF_REC_EVENTS, p.data, p.len);
    if (tally) {
        tally->events += c->h.nevents;
        for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++)
            tally->counts[k] += c->counts[k];
    }
    tg_buf_free(&p);
    tg_buf_free(&c->ev);
    return off;
}

struct mtf_end tg_end_default(void)
{
    struct mtf_end e;
    memset(&e, 0, sizeof(e));
    e.ts_ns = 999999;
    e.reason = MTF_END_EXIT;
    e.status = 0;
    e.threads = 1;
    return e;
}

size_t tg_end(struct tg_buf *out, const struct mtf_end *e)
{
    struct tg_buf p = { 0 };
    tg_u64(&p, e->ts_ns);
    tg_u32(&p, e->reason);
    tg_u32(&p, (uint32_t)e->status);
    tg_u64(&p, e->threads);
    tg_u64(&p, e->events);
    tg_u64(&p, e->dropped);
    tg_u64(&p, e->unknown_frees);
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++)
        tg_u64(&p, e->counts[k]);
    size_t off = tg_record(out, MTF_REC_END, p.data, p.len);
    tg_buf_free(&p);
    return off;
}

size_t tg_loss(struct tg_buf *out, const struct mtf_loss *l)
{
    struct tg_buf p = { 0 };
    tg_u64(&p, l->ts_ns);
    tg_u32(&p, l->reason);
    tg_u32(&p, l->tid);
    tg_u64(&p, l->count);
    size_t off = tg_record(out, MTF_REC_LOSS, p.data, p.len);
    tg_buf_free(&p);
    return off;
}

int tg_write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return close(fd);
}
