/* Compressed chunks (chunk flag MTF_CHUNKF_ZSTD, trace-format.md §7.5) in report/reader.c and
 * report/order.c. Traces are built raw with tracegen, then each EVENTS record is rewritten with
 * its events as one zstd frame (ZSTD_compress here, not the shim's code); the compressed trace
 * must read exactly as the raw one, and cuts and damage must behave as they do for raw records
 * (§11): every whole record before a cut, a damaged record reported at its offset.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "helpers.h"
#include "order.h"
#include "reader.h"
#include "tracegen.h"

TestSuite(zstd, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 30);

#define THREADS 2
#define CHUNKS  3   /* per thread */
#define PAIRS   400 /* malloc/free pairs per chunk: a few KiB of events, worth compressing */

static const char *tmp_file(const char *name)
{
    static char path[4200];
    snprintf(path, sizeof(path), "%s/%s", h_tmpdir(), name);
    return path;
}

static uint32_t le32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32_at(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A raw trace: THREADS threads, CHUNKS chunks each, interleaved in time, then END. */
static void build_raw(struct tg_buf *t)
{
    struct mtf_end end = tg_end_default();
    end.threads = THREADS;
    tg_file_header(t, NULL);
    uint64_t frame = 0x401000;
    for (uint32_t k = 0; k < CHUNKS; k++) {
        for (uint32_t s = 1; s <= THREADS; s++) {
            uint64_t ts = 2000 + (uint64_t)k * 100000 + s;
            struct tg_chunk c;
            tg_chunk_begin(&c, 700 + s, s, ts, 0, 0);
            c.h.epoch = k;
            if (k == 0)
                tg_chunk_event(&c, &(struct rd_event){ .kind = MTF_EV_STACK,
                                                       .ts_ns = ts,
                                                       .stack = s,
                                                       .nframes = 1,
                                                       .frames = &frame });
            for (uint32_t i = 0; i < PAIRS; i++) {
                uint64_t a = 0x10000000ULL * s + 0x40ULL * ((i * 37 + k) % 997);
                ts += 7 + i % 5;
                tg_chunk_event(&c, &(struct rd_event){ .kind = MTF_EV_MALLOC,
                                                       .ts_ns = ts,
                                                       .addr = a,
                                                       .size = 16 + i % 300,
                                                       .stack = s });
                ts += 3;
                tg_chunk_event(&c,
                               &(struct rd_event){ .kind = MTF_EV_FREE, .ts_ns = ts, .addr = a });
            }
            tg_chunk_end(&c, t, &end);
        }
    }
    tg_end(t, &end);
}

/* Copy `raw` with every EVENTS record's events compressed (flag 16, frame after the header).
 * offs[] (if not NULL) receives the offsets of the compressed records; returns their count. */
static size_t compress_trace(const struct tg_buf *raw, struct tg_buf *out, size_t *offs)
{
    size_t n = 0, off = MTF_FILE_HEADER_SIZE;
    tg_put(out, raw->data, off);
    while (off < raw->len) {
        const uint8_t *h = raw->data + off;
        uint16_t type = (uint16_t)(h[4] | h[5] << 8);
        uint32_t size = le32_at(h + 8);
        const uint8_t *pl = h + MTF_RECORD_HEADER_SIZE;
        if (type != MTF_REC_EVENTS) {
            tg_put(out, h, MTF_RECORD_HEADER_SIZE + size);
        } else {
            uint32_t ev_size = size - MTF_CHUNK_SIZE;
            size_t bound = ZSTD_compressBound(ev_size);
            uint8_t *pay = malloc(MTF_CHUNK_SIZE + bound);
            cr_assert(ne(ptr, pay, NULL));
            memcpy(pay, pl, MTF_CHUNK_SIZE);
            size_t z = ZSTD_compress(pay + MTF_CHUNK_SIZE, bound, pl + MTF_CHUNK_SIZE, ev_size, 1);
            cr_assert(not(ZSTD_isError(z)), "ZSTD_compress: %s", ZSTD_getErrorName(z));
            uint32_t flags = le32_at(pay + offsetof(struct mtf_chunk, flags));
            put32_at(pay + offsetof(struct mtf_chunk, flags), flags | MTF_CHUNKF_ZSTD);
            size_t at = tg_record(out, MTF_REC_EVENTS, pay, MTF_CHUNK_SIZE + z);
            if (offs)
                offs[n] = at;
            n++;
            free(pay);
        }
        off += MTF_RECORD_HEADER_SIZE + size;
    }
    return n;
}

/* One decoded event, flattened for comparison. */
struct flat {
    uint8_t kind;
    uint32_t serial, stack;
    uint64_t ts, addr, size;
};

struct seq {
    struct flat *ev;
    size_t n;
    int rc;
    struct rd_status st;
    char err[512];
};

static void seq_add(struct seq *q, const struct rd_event *e)
{
    q->ev = realloc(q->ev, (q->n + 1) * sizeof(*q->ev));
    cr_assert(ne(ptr, q->ev, NULL));
    q->ev[q->n++] =
        (struct flat){ e->kind, e->thread_serial, e->stack, e->ts_ns, e->addr, e->size };
}

/* Every event in file order, through the streaming reader. */
static void read_stream(const void *data, size_t len, struct seq *q)
{
    memset(q, 0, sizeof(*q));
    struct reader *r = NULL;
    q->rc = reader_open_mem(&r, data, len);
    cr_assert(ne(ptr, r, NULL));
    struct rd_item it;
    if (q->rc == 0)
        while ((q->rc = reader_next(r, &it)) > 0)
            if (it.type == RD_ITEM_EVENT)
                seq_add(q, &it.ev);
    q->st = *reader_status(r);
    snprintf(q->err, sizeof(q->err), "%s", reader_error(r));
    reader_close(r);
}

/* Every event in time order, through order.c, from memory or (path != NULL) from a file. */
static void read_ordered(const void *data, size_t len, const char *path, struct seq *q)
{
    memset(q, 0, sizeof(*q));
    struct order *o = NULL;
    if (path != NULL) {
        cr_assert(eq(int, h_write_file(path, data, len), 0));
        q->rc = order_open(&o, path);
    } else {
        q->rc = order_open_mem(&o, data, len);
    }
    cr_assert(eq(int, q->rc, 0), "order_open: %s", order_error(o));
    struct rd_item it;
    while ((q->rc = order_next(o, &it)) > 0)
        if (it.type == RD_ITEM_EVENT)
            seq_add(q, &it.ev);
    snprintf(q->err, sizeof(q->err), "%s", order_error(o));
    order_close(o);
}

static int same(const struct flat *a, const struct flat *b)
{
    return a->kind == b->kind && a->serial == b->serial && a->stack == b->stack && a->ts == b->ts &&
           a->addr == b->addr && a->size == b->size;
}

static void expect_same(const struct seq *got, const struct seq *want, const char *what)
{
    cr_assert(eq(sz, got->n, want->n), "%s: %zu events, the raw trace gives %zu", what, got->n,
              want->n);
    for (size_t i = 0; i < want->n; i++)
        cr_assert(same(&got->ev[i], &want->ev[i]),
                  "%s: event %zu differs from the raw trace's (kind %u ts %llu vs kind %u ts %llu)",
                  what, i, got->ev[i].kind, (unsigned long long)got->ev[i].ts, want->ev[i].kind,
                  (unsigned long long)want->ev[i].ts);
}

static void seq_free(struct seq *q)
{
    free(q->ev);
    memset(q, 0, sizeof(*q));
}

Test(zstd, compressed_chunks_decode_exactly_as_raw_ones)
{
    struct tg_buf raw = { 0 }, z = { 0 };
    build_raw(&raw);
    size_t n = compress_trace(&raw, &z, NULL);
    cr_assert(eq(sz, n, THREADS * CHUNKS));
    cr_expect(lt(sz, z.len, raw.len / 2), "repetitive events compress: %zu -> %zu bytes", raw.len,
              z.len);
    struct seq a, b;
    read_stream(raw.data, raw.len, &a);
    read_stream(z.data, z.len, &b);
    cr_assert(eq(int, a.rc, 0), "%s", a.err);
    cr_assert(eq(int, b.rc, 0), "%s", b.err);
    cr_assert(eq(sz, a.n, (size_t)THREADS * (CHUNKS * 2 * PAIRS + 1)));
    expect_same(&b, &a, "reader");
    cr_expect(b.st.complete, "the compressed trace is complete");
    cr_expect(eq(u64, b.st.chunks, THREADS * CHUNKS));
    seq_free(&a);
    seq_free(&b);
    tg_buf_free(&raw);
    tg_buf_free(&z);
}

Test(zstd, time_ordered_reading_decompresses_from_memory_and_from_a_file)
{
    struct tg_buf raw = { 0 }, z = { 0 };
    build_raw(&raw);
    compress_trace(&raw, &z, NULL);
    struct seq a, b, c;
    read_ordered(raw.data, raw.len, NULL, &a);
    read_ordered(z.data, z.len, NULL, &b);
    read_ordered(z.data, z.len, tmp_file("z.mtrace"), &c);
    cr_assert(eq(int, a.rc, 0), "%s", a.err);
    cr_assert(eq(int, b.rc, 0), "%s", b.err);
    cr_assert(eq(int, c.rc, 0), "%s", c.err);
    expect_same(&b, &a, "order, memory");
    expect_same(&c, &a, "order, file");
    for (size_t i = 1; i < a.n; i++)
        cr_assert(le(u64, a.ev[i - 1].ts, a.ev[i].ts), "time order at event %zu", i);
    seq_free(&a);
    seq_free(&b);
    seq_free(&c);
    tg_buf_free(&raw);
    tg_buf_free(&z);
}

/* A cut anywhere inside a compressed record: every whole record before it, reported as a
 * truncation at that record's offset, exactly like a raw record. */
Test(zstd, cut_inside_a_compressed_record_keeps_every_whole_record)
{
    struct tg_buf raw = { 0 }, z = { 0 };
    build_raw(&raw);
    size_t offs[THREADS * CHUNKS];
    size_t n = compress_trace(&raw, &z, offs);
    size_t last = offs[n - 1];
    size_t last_end = last + MTF_RECORD_HEADER_SIZE + le32_at(z.data + last + 8);
    size_t per_chunk = (size_t)2 * PAIRS;
    for (size_t cut = last + 1; cut < last_end; cut += 7) {
        struct seq q;
        read_stream(z.data, cut, &q);
        cr_assert(eq(int, q.rc, RD_ERR_TRUNC), "cut at %zu: rc %d (%s)", cut, q.rc, q.err);
        cr_assert(q.st.truncated);
        cr_assert(eq(u64, q.st.valid_bytes, last), "cut at %zu", cut);
        cr_assert(eq(u64, q.st.error_offset, last), "cut at %zu: error at %llu", cut,
                  (unsigned long long)q.st.error_offset);
        cr_assert(eq(sz, q.n, (n - 1) * per_chunk + THREADS), "cut at %zu: %zu events", cut, q.n);
        seq_free(&q);
    }
    tg_buf_free(&raw);
    tg_buf_free(&z);
}

/* Damage inside the frame, with the CRC made to match so the zstd checks are what catch it. */
static void expect_corrupt_at(struct tg_buf *z, size_t rec, const char *what, const char *needle)
{
    tg_fix_crc(z, rec);
    struct seq q;
    read_stream(z->data, z->len, &q);
    cr_assert(eq(int, q.rc, RD_ERR_CORRUPT), "%s: rc %d (%s)", what, q.rc, q.err);
    cr_assert(eq(u64, q.st.error_offset, rec), "%s: error at %llu, record at %zu", what,
              (unsigned long long)q.st.error_offset, rec);
    cr_assert(eq(u64, q.st.valid_bytes, rec), "%s: everything before the record stays valid", what);
    cr_assert(eq(sz, q.n, 1 + 2 * PAIRS), "%s: only the first chunk's events (%zu)", what, q.n);
    cr_assert(ne(ptr, strstr(q.err, needle), NULL), "%s: message '%s' lacks '%s'", what, q.err,
              needle);
    seq_free(&q);
}

Test(zstd, damaged_frames_are_corrupt_records_at_their_offset)
{
    struct tg_buf raw = { 0 }, base = { 0 };
    build_raw(&raw);
    size_t offs[THREADS * CHUNKS];
    compress_trace(&raw, &base, offs);
    size_t rec = offs[1]; /* the second chunk: the first one's events stay readable */
    uint8_t *pl = base.data + rec + MTF_RECORD_HEADER_SIZE;
    uint32_t size = le32_at(base.data + rec + 8);
    size_t frame = MTF_CHUNK_SIZE; /* payload offset of the zstd frame */
    struct tg_buf z = { 0 };

    /* a bad magic number */
    tg_put(&z, base.data, base.len);
    z.data[rec + MTF_RECORD_HEADER_SIZE + frame] ^= 0xff;
    expect_corrupt_at(&z, rec, "frame magic", "zstd");
    tg_buf_free(&z);

    /* compressed bytes flipped in the middle of the block */
    tg_put(&z, base.data, base.len);
    for (uint32_t i = 20; i < 40; i++)
        z.data[rec + MTF_RECORD_HEADER_SIZE + size / 2 + i] ^= 0x5a;
    expect_corrupt_at(&z, rec, "block bytes", "EVENTS record");
    tg_buf_free(&z);

    /* events_size that disagrees with the frame's content size */
    tg_put(&z, base.data, base.len);
    uint32_t evs = le32_at(pl + offsetof(struct mtf_chunk, events_size));
    put32_at(z.data + rec + MTF_RECORD_HEADER_SIZE + offsetof(struct mtf_chunk, events_size),
             evs + 1);
    expect_corrupt_at(&z, rec, "events_size", "events_size");
    tg_buf_free(&z);

    /* an events_size beyond the record limit is refused before any allocation */
    tg_put(&z, base.data, base.len);
    put32_at(z.data + rec + MTF_RECORD_HEADER_SIZE + offsetof(struct mtf_chunk, events_size),
             0xfffffff0U);
    expect_corrupt_at(&z, rec, "huge events_size", "limit");
    tg_buf_free(&z);

    /* the frame cut short inside its record (the record's size and CRC agree) */
    struct tg_buf cut = { 0 };
    tg_put(&cut, base.data, rec);
    tg_record(&cut, MTF_REC_EVENTS, pl, size - 9);
    size_t after = rec + MTF_RECORD_HEADER_SIZE + size;
    tg_put(&cut, base.data + after, base.len - after);
    expect_corrupt_at(&cut, rec, "short frame", "zstd");
    tg_buf_free(&cut);

    /* a byte after the frame */
    struct tg_buf tail = { 0 };
    tg_put(&tail, base.data, rec);
    uint8_t *longer = malloc(size + 1);
    memcpy(longer, pl, size);
    longer[size] = 0;
    tg_record(&tail, MTF_REC_EVENTS, longer, size + 1);
    free(longer);
    tg_put(&tail, base.data + after, base.len - after);
    expect_corrupt_at(&tail, rec, "trailing byte", "zstd");
    tg_buf_free(&tail);

    /* without fixing the CRC, the record is caught by it, as a raw one would be */
    tg_put(&z, base.data, base.len);
    z.data[rec + MTF_RECORD_HEADER_SIZE + size - 1] ^= 1;
    struct seq q;
    read_stream(z.data, z.len, &q);
    cr_assert(eq(int, q.rc, RD_ERR_CORRUPT));
    cr_assert(eq(u64, q.st.error_offset, rec));
    cr_assert(ne(ptr, strstr(q.err, "crc"), NULL), "%s", q.err);
    seq_free(&q);
    tg_buf_free(&z);
    tg_buf_free(&raw);
    tg_buf_free(&base);
}
