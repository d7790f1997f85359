/* report/order.c: time-ordered reading. Traces built with tracegen put threads' chunks in the
 * file out of time order, steal and write through chunks, cut and corrupt them; the tests check
 * the merged order (across threads by time, within a thread by trace-format.md §10), where the
 * non-event records fall, and that damage is reported exactly as report/reader.c reports it.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "order.h"
#include "reader.h"
#include "render.h"
#include "tracegen.h"

TestSuite(order, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 30);

/* ---- building traces ------------------------------------------------------------------------ */

/* One event of a test trace: enough fields to tell events apart. */
struct tev {
    uint8_t kind;
    uint64_t ts, addr;
    uint32_t stack; /* STACK: the id defined (one frame, 0x400000 + id) */
};

#define MALLOC(t, a, s)                                                                            \
    {                                                                                              \
        MTF_EV_MALLOC, (t), (a), (s)                                                               \
    }
#define FREE(t, a)                                                                                 \
    {                                                                                              \
        MTF_EV_FREE, (t), (a), 0                                                                   \
    }
#define STACK(t, id)                                                                               \
    {                                                                                              \
        MTF_EV_STACK, (t), 0, (id)                                                                 \
    }

/* Append one chunk of thread `serial` at (epoch, offset) with `flags`; pos[i] (if not NULL)
 * receives the byte offset of event i within the generation. */
static void chunk(struct tg_buf *t, struct mtf_end *tally, uint32_t serial, uint32_t epoch,
                  uint32_t offset, uint32_t flags, const struct tev *ev, size_t n, uint32_t *pos)
{
    struct tg_chunk c;
    tg_chunk_begin(&c, 100 + serial, serial, n ? ev[0].ts : 0, 0, 0);
    c.h.epoch = epoch;
    c.h.offset = offset;
    c.h.flags = flags;
    for (size_t i = 0; i < n; i++) {
        if (pos)
            pos[i] = offset + (uint32_t)c.ev.len;
        uint64_t frame = 0x400000 + ev[i].stack;
        struct rd_event e = { .kind = ev[i].kind, .ts_ns = ev[i].ts, .addr = ev[i].addr };
        if (ev[i].kind == MTF_EV_MALLOC) {
            e.size = 16;
            e.stack = ev[i].stack;
        } else if (ev[i].kind == MTF_EV_STACK) {
            e.stack = ev[i].stack;
            e.nframes = 1;
            e.frames = &frame;
        }
        tg_chunk_event(&c, &e);
    }
    tg_chunk_end(&c, t, tally);
}

/* Bytes the events would take as one chunk (to place the next chunk of a generation). */
static uint32_t events_size(const struct tev *ev, size_t n)
{
    struct tg_buf t = { 0 };
    uint32_t pos[64];
    cr_assert(le(sz, n, 64));
    struct tev last = { MTF_EV_FREE, n ? ev[n - 1].ts : 0, 0, 0 };
    struct tev all[65];
    memcpy(all, ev, n * sizeof(*ev));
    all[n] = last;
    chunk(&t, NULL, 1, 0, 0, 0, all, n + 1, pos);
    tg_buf_free(&t);
    return pos[n];
}

static void module_rec(struct tg_buf *t, uint64_t ts, uint32_t id)
{
    struct tg_module m = { .id = id, .action = MTF_MOD_LOAD, .base = 0x400000, .path = "/bin/x" };
    tg_modules(t, ts, &m, 1);
}

static void process_rec(struct tg_buf *t, uint64_t ts)
{
    tg_process(t, ts, "/bin/x", "x", 2, 1, "/");
}

/* ---- reading ----------------------------------------------------------------------------------
 */

/* What came out, one entry per item. */
struct out {
    enum rd_item_type type[256];
    uint32_t serial[256];
    uint64_t ts[256], addr[256];
    uint8_t kind[256];
    char *line[256]; /* the --events line, for comparisons with the reader */
    size_t n;
    int rc;
    char err[600];
    struct rd_status st;
    uint64_t late;
};

static char *item_line(const struct rd_item *item)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    cr_assert(ne(ptr, f, NULL));
    cr_assert(eq(int, render_events_item(f, item), 0));
    cr_assert(eq(int, fclose(f), 0));
    return s;
}

static void record(struct out *o, const struct rd_item *item)
{
    cr_assert(lt(sz, o->n, 256));
    size_t i = o->n++;
    o->type[i] = item->type;
    o->line[i] = item_line(item);
    if (item->type == RD_ITEM_EVENT) {
        o->serial[i] = item->ev.thread_serial;
        o->ts[i] = item->ev.ts_ns;
        o->addr[i] = item->ev.addr;
        o->kind[i] = item->ev.kind;
    }
}

static void out_free(struct out *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->line[i]);
    o->n = 0;
}

static void read_order(struct order *ord, int rc, struct out *o)
{
    memset(o, 0, sizeof(*o));
    cr_assert(ne(ptr, ord, NULL));
    o->rc = rc;
    if (rc == 0) {
        struct rd_item item;
        while ((o->rc = order_next(ord, &item)) > 0)
            record(o, &item);
        cr_assert(eq(int, order_next(ord, &item), o->rc), "the end result is sticky");
    }
    snprintf(o->err, sizeof(o->err), "%s", order_error(ord));
    o->st = *order_status(ord);
    o->late = order_late_stacks(ord);
    order_close(ord);
}

static void order_mem(const struct tg_buf *t, size_t len, struct out *o)
{
    struct order *ord;
    int rc = order_open_mem(&ord, t->data, len);
    read_order(ord, rc, o);
}

static void reader_mem(const struct tg_buf *t, size_t len, struct out *o)
{
    memset(o, 0, sizeof(*o));
    struct reader *r;
    o->rc = reader_open_mem(&r, t->data, len);
    if (o->rc == 0) {
        struct rd_item item;
        while ((o->rc = reader_next(r, &item)) > 0)
            record(o, &item);
    }
    snprintf(o->err, sizeof(o->err), "%s", reader_error(r));
    o->st = *reader_status(r);
    reader_close(r);
}

static int line_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void same_status(const struct rd_status *a, const struct rd_status *b, const char *what)
{
#define SAME(f) cr_assert(eq(u64, (uint64_t)a->f, (uint64_t)b->f), "%s: status." #f, what)
    SAME(header.pid);
    SAME(header.header_size);
    SAME(file_size);
    SAME(valid_bytes);
    SAME(records);
    SAME(events);
    SAME(chunks);
    SAME(complete);
    SAME(truncated);
    SAME(error_offset);
    SAME(lost_bytes);
    SAME(dropped);
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++)
        SAME(kind_counts[k]);
#undef SAME
}

/* order and reader on the first `len` bytes: same items (as a multiset), same end, message
 * and status; events in time order unless `overlap` (a thread's own times go back). */
static void same_as_reader2(const struct tg_buf *t, size_t len, int overlap)
{
    struct out a, b;
    char what[64];
    snprintf(what, sizeof(what), "%zu of %zu bytes", len, t->len);
    reader_mem(t, len, &a);
    order_mem(t, len, &b);
    cr_assert(eq(int, b.rc, a.rc), "%s: end result", what);
    cr_assert(eq(str, b.err, a.err), "%s: message", what);
    same_status(&b.st, &a.st, what);
    cr_assert(eq(sz, b.n, a.n), "%s: items", what);
    uint64_t prev = 0;
    for (size_t i = 0; i < b.n && !overlap; i++)
        if (b.type[i] == RD_ITEM_EVENT) {
            cr_assert(ge(u64, b.ts[i], prev), "%s: item %zu goes back in time", what, i);
            prev = b.ts[i];
        }
    qsort(a.line, a.n, sizeof(char *), line_cmp);
    qsort(b.line, b.n, sizeof(char *), line_cmp);
    for (size_t i = 0; i < a.n; i++)
        cr_assert(eq(str, b.line[i], a.line[i]), "%s: item sets differ", what);
    out_free(&a);
    out_free(&b);
}

static void same_as_reader(const struct tg_buf *t, size_t len)
{
    same_as_reader2(t, len, 0);
}

/* The events of `o` as "serial:ts" words, for one readable comparison. */
static void expect_events(const struct out *o, const char *want)
{
    char got[2048] = "";
    size_t n = 0;
    for (size_t i = 0; i < o->n; i++) {
        if (o->type[i] != RD_ITEM_EVENT)
            n += (size_t)snprintf(got + n, sizeof(got) - n, "%s%c", n ? " " : "",
                                  o->type[i] == RD_ITEM_MODULE    ? 'M'
                                  : o->type[i] == RD_ITEM_PROCESS ? 'P'
                                  : o->type[i] == RD_ITEM_END     ? 'E'
                                                                  : 'L');
        else
            n += (size_t)snprintf(got + n, sizeof(got) - n, "%s%u:%" PRIu64, n ? " " : "",
                                  o->serial[i], o->ts[i]);
    }
    cr_assert(eq(str, got, (char *)want));
}

/* ---- across threads ------------------------------------------------------------------------- */

Test(order, threads_merged_by_time_with_address_reuse)
{
    struct tg_buf t = { 0 };
    struct mtf_end end = tg_end_default();
    tg_file_header(&t, NULL);
    process_rec(&t, 5);
    module_rec(&t, 6, 1);
    /* thread 2 flushed first although thread 1 freed 0x1000 before thread 2 got it back */
    const struct tev b[] = { MALLOC(20, 0x2000, 0), MALLOC(60, 0x1000, 0), FREE(70, 0x2000) };
    chunk(&t, &end, 2, 1, 0, 0, b, 3, NULL);
    const struct tev a[] = { MALLOC(10, 0x1000, 0), MALLOC(30, 0x3000, 0), FREE(50, 0x1000) };
    chunk(&t, &end, 1, 1, 0, MTF_CHUNKF_THREAD_END, a, 3, NULL);
    end.ts_ns = 80;
    tg_end(&t, &end);

    struct out o;
    order_mem(&t, t.len, &o);
    cr_assert(eq(int, o.rc, 0), "%s", o.err);
    expect_events(&o, "P M 1:10 2:20 1:30 1:50 2:60 2:70 E");
    size_t free_at = 0, malloc_at = 0;
    for (size_t i = 0; i < o.n; i++) {
        if (o.type[i] == RD_ITEM_EVENT && o.addr[i] == 0x1000 && o.kind[i] == MTF_EV_FREE)
            free_at = i;
        if (o.type[i] == RD_ITEM_EVENT && o.addr[i] == 0x1000 && o.serial[i] == 2)
            malloc_at = i;
    }
    cr_assert(lt(sz, free_at, malloc_at), "thread 1's free of 0x1000 comes before its reuse");
    cr_assert(eq(u64, o.late, 0));
    out_free(&o);
    same_as_reader(&t, t.len);
    tg_buf_free(&t);
}

Test(order, equal_times_ordered_by_thread_serial)
{
    struct tg_buf t = { 0 };
    tg_file_header(&t, NULL);
    const struct tev c3[] = { MALLOC(10, 0x30, 0), MALLOC(20, 0x31, 0) };
    const struct tev c1[] = { MALLOC(10, 0x10, 0), MALLOC(20, 0x11, 0) };
    const struct tev c2[] = { MALLOC(10, 0x20, 0) };
    chunk(&t, NULL, 3, 1, 0, 0, c3, 2, NULL);
    chunk(&t, NULL, 1, 1, 0, 0, c1, 2, NULL);
    chunk(&t, NULL, 2, 1, 0, 0, c2, 1, NULL);
    struct out o;
    order_mem(&t, t.len, &o);
    cr_assert(eq(int, o.rc, 0), "%s", o.err);
    expect_events(&o, "1:10 2:10 3:10 1:20 3:20");
    out_free(&o);
    tg_buf_free(&t);
}

/* MODULES before every event at or after its time, whatever the file order; PROCESS, LOSS and
 * END after the events of the chunks before them. */
Test(order, records_placed_by_time)
{
    struct tg_buf t = { 0 };
    struct mtf_end end = tg_end_default();
    tg_file_header(&t, NULL);
    const struct tev a[] = { MALLOC(90, 0x10, 0), MALLOC(110, 0x11, 0) };
    chunk(&t, &end, 1, 1, 0, 0, a, 2, NULL);
    module_rec(&t, 100, 7); /* written after an event timed 110 */
    const struct tev b[] = { MALLOC(95, 0x20, 0), MALLOC(100, 0x21, 0), MALLOC(130, 0x22, 0) };
    chunk(&t, &end, 2, 1, 0, 0, b, 3, NULL);
    struct mtf_loss loss = { .ts_ns = 120, .reason = MTF_LOSS_THREAD, .tid = 9, .count = 3 };
    tg_loss(&t, &loss); /* after chunk 2, which has an event at 130 */
    const struct tev c[] = { MALLOC(125, 0x30, 0), MALLOC(140, 0x31, 0) };
    chunk(&t, &end, 3, 1, 0, 0, c, 2, NULL);
    end.ts_ns = 135;
    tg_end(&t, &end);
    const struct tev late[] = { MALLOC(150, 0x40, 0) }; /* written through after END (§8) */
    chunk(&t, &end, 1, 2, 0, MTF_CHUNKF_WRITETHROUGH, late, 1, NULL);

    struct out o;
    order_mem(&t, t.len, &o);
    cr_assert(eq(int, o.rc, 0), "%s", o.err);
    expect_events(&o, "1:90 2:95 M 2:100 1:110 3:125 2:130 L 3:140 E 1:150");
    cr_assert(eq(int, o.st.complete, 1));
    out_free(&o);
    same_as_reader(&t, t.len);
    tg_buf_free(&t);
}

Test(order, late_stack_definition_counted)
{
    struct tg_buf t = { 0 };
    tg_file_header(&t, NULL);
    const struct tev a[] = { STACK(30, 5), MALLOC(30, 0x10, 5) };
    const struct tev b[] = { MALLOC(20, 0x20, 5), MALLOC(40, 0x21, 5) };
    chunk(&t, NULL, 1, 1, 0, 0, a, 2, NULL);
    chunk(&t, NULL, 2, 1, 0, 0, b, 2, NULL);
    struct out o;
    order_mem(&t, t.len, &o);
    cr_assert(eq(int, o.rc, 0), "%s", o.err);
    expect_events(&o, "2:20 1:30 1:30 2:40");
    cr_assert(eq(u64, o.late, 1), "the use at 20 precedes the definition at 30");
    out_free(&o);
    tg_buf_free(&t);
}

/* ---- within a thread ------------------------------------------------------------------------ */

/* A STOLEN chunk written after the thread's next chunk comes first, and it holds the stack
 * definition the later chunk uses; (epoch, offset) wins over overlapping times. */
Test(order, stolen_chunk_after_a_later_one)
{
    struct tg_buf t = { 0 };
    tg_file_header(&t, NULL);
    const struct tev first[] = { STACK(10, 3), MALLOC(10, 0x10, 3), MALLOC(35, 0x11, 3) };
    const struct tev next[] = { MALLOC(30, 0x12, 3), FREE(40, 0x10) };
    const struct tev other[] = { MALLOC(25, 0x20, 0), MALLOC(45, 0x21, 0) };
    uint32_t split = events_size(first, 3);
    chunk(&t, NULL, 1, 4, split, 0, next, 2, NULL);
    chunk(&t, NULL, 2, 1, 0, 0, other, 2, NULL);
    chunk(&t, NULL, 1, 4, 0, MTF_CHUNKF_STOLEN, first, 3, NULL);
    struct out o;
    order_mem(&t, t.len, &o);
    cr_assert(eq(int, o.rc, 0), "%s", o.err);
    expect_events(&o, "1:10 1:10 2:25 1:35 1:30 1:40 2:45");
    cr_assert(eq(u64, o.late, 0), "the definition comes before its uses");
    out_free(&o);
    same_as_reader2(&t, t.len, 1);
    tg_buf_free(&t);
}

/* §10: a write-through chunk at (epoch, offset) follows the buffered events before that offset
 * and precedes the one at it, even inside a buffered chunk; several at one place keep file
 * order; after the buffer is gone they carry the next epoch and offsets 0, 1, 2. */
Test(order, write_through_positions)
{
    struct tg_buf t = { 0 };
    struct mtf_end end = tg_end_default();
    tg_file_header(&t, NULL);
    const struct tev buf1[] = { MALLOC(20, 0x10, 0), MALLOC(40, 0x11, 0), MALLOC(60, 0x12, 0) };
    const struct tev buf2[] = { MALLOC(80, 0x13, 0) };
    uint32_t pos[3];
    uint32_t end1 = events_size(buf1, 3);
    /* write-through chunks are written at once: before the buffered chunks they sit in */
    const struct tev w0[] = { MALLOC(10, 0x50, 0) };  /* at (2, 0): before the chunk */
    const struct tev w1[] = { MALLOC(30, 0x51, 0) };  /* between event 1 and 2 */
    const struct tev w1b[] = { MALLOC(30, 0x52, 0) }; /* same place, written after w1 */
    const struct tev w2[] = { MALLOC(70, 0x53, 0) };  /* at the end of the generation */
    chunk(&t, &end, 1, 2, 0, MTF_CHUNKF_WRITETHROUGH, w0, 1, NULL);
    {
        struct tg_buf scratch = { 0 };
        chunk(&scratch, NULL, 1, 2, 0, 0, buf1, 3, pos);
        tg_buf_free(&scratch);
    }
    chunk(&t, &end, 1, 2, pos[1], MTF_CHUNKF_WRITETHROUGH, w1, 1, NULL);
    chunk(&t, &end, 1, 2, pos[1], MTF_CHUNKF_WRITETHROUGH, w1b, 1, NULL);
    chunk(&t, &end, 1, 2, end1, MTF_CHUNKF_WRITETHROUGH, w2, 1, NULL);
    chunk(&t, &end, 1, 2, 0, 0, buf1, 3, NULL);
    chunk(&t, &end, 1, 3, 0, MTF_CHUNKF_THREAD_END, buf2, 1, NULL);
    end.ts_ns = 90;
    tg_end(&t, &end);
    /* the buffer is gone: epoch 4, offsets 0 and 1, written after END */
    const struct tev g0[] = { MALLOC(100, 0x60, 0) };
    const struct tev g1[] = { FREE(110, 0x60) };
    chunk(&t, &end, 1, 4, 0, MTF_CHUNKF_WRITETHROUGH, g0, 1, NULL);
    chunk(&t, &end, 1, 4, 1, MTF_CHUNKF_WRITETHROUGH, g1, 1, NULL);

    struct out o;
    order_mem(&t, t.len, &o);
    cr_assert(eq(int, o.rc, 0), "%s", o.err);
    expect_events(&o, "1:10 1:20 1:30 1:30 1:40 1:60 1:70 1:80 E 1:100 1:110");
    size_t w1_at = 0, w1b_at = 0;
    for (size_t i = 0; i < o.n; i++) {
        w1_at = o.addr[i] == 0x51 ? i : w1_at;
        w1b_at = o.addr[i] == 0x52 ? i : w1b_at;
    }
    cr_assert(lt(sz, w1_at, w1b_at), "same place: file order");
    out_free(&o);
    same_as_reader(&t, t.len);
    tg_buf_free(&t);
}

/* Thread order wins over time: a nested event written through from a signal handler, timed
 * after the buffered event that follows it in the thread. */
Test(order, thread_order_wins_over_time)
{
    struct tg_buf t = { 0 };
    tg_file_header(&t, NULL);
    const struct tev wt[] = { MALLOC(50, 0x50, 0) };
    const struct tev buf[] = { MALLOC(40, 0x10, 0), MALLOC(60, 0x11, 0) };
    const struct tev other[] = { MALLOC(45, 0x20, 0) };
    chunk(&t, NULL, 1, 1, 0, MTF_CHUNKF_WRITETHROUGH, wt, 1, NULL);
    chunk(&t, NULL, 1, 1, 0, 0, buf, 2, NULL);
    chunk(&t, NULL, 2, 1, 0, 0, other, 1, NULL);
    struct out o;
    order_mem(&t, t.len, &o);
    cr_assert(eq(int, o.rc, 0), "%s", o.err);
    expect_events(&o, "2:45 1:50 1:40 1:60");
    out_free(&o);
    tg_buf_free(&t);
}

/* ---- damage --------------------------------------------------------------------------------- */

/* Several threads, chunks out of time order, every record type. */
static void mixed_trace(struct tg_buf *t)
{
    struct mtf_end end = tg_end_default();
    tg_file_header(t, NULL);
    process_rec(t, 5);
    module_rec(t, 6, 1);
    const struct tev a1[] = { STACK(10, 1), MALLOC(10, 0x10, 1), FREE(50, 0x10) };
    const struct tev b1[] = { STACK(20, 2), MALLOC(20, 0x10, 2), MALLOC(25, 0x20, 2) };
    const struct tev c1[] = { MALLOC(15, 0x30, 1), FREE(16, 0x30), MALLOC(70, 0x31, 1) };
    const struct tev a2[] = { MALLOC(60, 0x11, 1), FREE(65, 0x11) };
    chunk(t, &end, 2, 1, 0, 0, b1, 3, NULL);
    module_rec(t, 40, 2);
    chunk(t, &end, 3, 1, 0, 0, c1, 3, NULL);
    chunk(t, &end, 1, 1, events_size(a1, 3), 0, a2, 2, NULL);
    struct mtf_loss loss = { .ts_ns = 66, .reason = MTF_LOSS_WRITER, .count = 2 };
    tg_loss(t, &loss);
    chunk(t, &end, 1, 1, 0, MTF_CHUNKF_STOLEN, a1, 3, NULL);
    end.ts_ns = 80;
    tg_end(t, &end);
    const struct tev late[] = { FREE(90, 0x20) };
    chunk(t, &end, 2, 2, 0, MTF_CHUNKF_WRITETHROUGH, late, 1, NULL);
}

Test(order, every_cut_like_the_reader)
{
    struct tg_buf t = { 0 };
    mixed_trace(&t);
    for (size_t len = 0; len <= t.len; len++)
        same_as_reader(&t, len);
    tg_buf_free(&t);
}

Test(order, every_corrupt_byte_like_the_reader)
{
    struct tg_buf t = { 0 };
    mixed_trace(&t);
    for (size_t at = MTF_FILE_HEADER_SIZE; at < t.len; at++) {
        t.data[at] ^= 0x41;
        same_as_reader(&t, t.len);
        t.data[at] ^= 0x41;
    }
    tg_buf_free(&t);
}

Test(order, zero_tail_and_bad_header_like_the_reader)
{
    struct tg_buf t = { 0 };
    mixed_trace(&t);
    size_t len = t.len;
    uint8_t zeros[100] = { 0 };
    tg_put(&t, zeros, sizeof(zeros));
    same_as_reader(&t, t.len);
    t.data[len + 50] = 1; /* zeros followed by data: corruption */
    same_as_reader(&t, t.len);
    t.data[0] = 'X';
    same_as_reader(&t, t.len);
    tg_buf_free(&t);
}

/* ---- decoding ------------------------------------------------------------------------------ */

/* One chunk: a FORK whose child_pid is the raw varint bytes `v` (n of them), then `tail` EXEC
 * events, so the varint ends at every distance from the end of the events: the decoder reads
 * whole words while 8 bytes are left and byte by byte nearer the end. */
static void varint_trace(struct tg_buf *t, const uint8_t *v, size_t n, unsigned tail)
{
    struct mtf_end end = tg_end_default();
    tg_file_header(t, NULL);
    struct tg_chunk c;
    tg_chunk_begin(&c, 101, 1, 100, 0, 0);
    const uint8_t head[2] = { MTF_EV_FORK, 0 }; /* tag, dt 0 */
    tg_put(&c.ev, head, sizeof head);
    tg_put(&c.ev, v, n);
    c.h.nevents = 1;
    c.h.first_ts_ns = c.h.last_ts_ns = 100;
    c.counts[MTF_EV_FORK]++;
    for (unsigned i = 0; i < tail; i++)
        tg_chunk_event(&c, &(struct rd_event){ .kind = MTF_EV_EXEC, .ts_ns = 100 + i });
    tg_chunk_end(&c, t, &end);
    tg_end(t, &end);
}

Test(order, decodes_every_varint_length_at_every_distance_from_the_end)
{
    for (unsigned len = 1; len <= MTF_VARINT_MAX_BYTES; len++)
        for (unsigned tail = 0; tail <= 10; tail++)
            for (int top = 0; top < 2; top++) {
                /* the smallest and the largest value of this length */
                uint64_t val =
                    top ? (len == MTF_VARINT_MAX_BYTES ? UINT64_MAX : (1ULL << (7 * len)) - 1)
                        : (len == 1 ? 0 : 1ULL << (7 * (len - 1)));
                uint8_t v[MTF_VARINT_MAX_BYTES];
                uint64_t x = val;
                for (unsigned i = 0; i < len; i++, x >>= 7)
                    v[i] = (uint8_t)((x & 0x7f) | (i + 1 < len ? 0x80 : 0));
                struct tg_buf t = { 0 };
                varint_trace(&t, v, len, tail);
                same_as_reader(&t, t.len);
                struct out o;
                order_mem(&t, t.len, &o);
                cr_assert(eq(int, o.rc, 0), "%u bytes, %u after: %s", len, tail, o.err);
                char want[64];
                snprintf(want, sizeof want, " child=%" PRIu64, val);
                cr_assert(ne(ptr, strstr(o.line[0], want), NULL), "%u bytes: %s", len, o.line[0]);
                out_free(&o);
                tg_buf_free(&t);
            }
}

Test(order, rejects_overlong_and_unterminated_varints_like_the_reader)
{
    /* ten bytes whose last carries more than bit 63; continuation bytes to the end */
    uint8_t overlong[MTF_VARINT_MAX_BYTES], open[12];
    memset(overlong, 0xff, sizeof overlong);
    overlong[MTF_VARINT_MAX_BYTES - 1] = 0x02;
    memset(open, 0x80, sizeof open);
    for (unsigned tail = 0; tail <= 10; tail++) {
        struct tg_buf t = { 0 };
        varint_trace(&t, overlong, sizeof overlong, tail);
        same_as_reader(&t, t.len);
        struct out o;
        order_mem(&t, t.len, &o);
        cr_assert(eq(int, o.rc, RD_ERR_CORRUPT));
        cr_assert(ne(ptr, strstr(o.err, "varint longer than 64 bits"), NULL), "%s", o.err);
        out_free(&o);
        tg_buf_free(&t);
        for (size_t n = 1; n <= sizeof open; n++) {
            varint_trace(&t, open, n, tail);
            same_as_reader(&t, t.len);
            order_mem(&t, t.len, &o);
            cr_assert(eq(int, o.rc, RD_ERR_CORRUPT), "%zu open bytes, %u after", n, tail);
            out_free(&o);
            tg_buf_free(&t);
        }
    }
}

/* ---- inputs --------------------------------------------------------------------------------- */

static void order_path(const char *path, struct out *o)
{
    struct order *ord;
    int rc = order_open(&ord, path);
    read_order(ord, rc, o);
}

static void same_outs(struct out *a, struct out *b)
{
    cr_assert(eq(int, a->rc, b->rc));
    cr_assert(eq(sz, a->n, b->n));
    for (size_t i = 0; i < a->n; i++)
        cr_assert(eq(str, a->line[i], b->line[i]), "item %zu", i);
    same_status(&a->st, &b->st, "file vs memory");
}

Test(order, file_and_pipe_like_memory)
{
    struct tg_buf t = { 0 };
    mixed_trace(&t);
    size_t cut = t.len - 7; /* truncated, to compare the error path as well */
    struct out mem, file, fifo;
    order_mem(&t, cut, &mem);
    char path[4200], pipe_path[4200];
    snprintf(path, sizeof(path), "%s/t.mtr", h_tmpdir());
    cr_assert(eq(int, tg_write_file(path, t.data, cut), 0));
    order_path(path, &file);
    same_outs(&file, &mem);
    cr_assert(ne(ptr, strstr(file.err, path), NULL), "%s", file.err);

    snprintf(pipe_path, sizeof(pipe_path), "%s/fifo", h_tmpdir());
    cr_assert(eq(int, mkfifo(pipe_path, 0600), 0), "%s", strerror(errno));
    pid_t pid = fork();
    cr_assert(ge(int, pid, 0));
    if (pid == 0)
        _exit(tg_write_file(pipe_path, t.data, cut) == 0 ? 0 : 1);
    order_path(pipe_path, &fifo);
    int status;
    cr_assert(eq(int, waitpid(pid, &status, 0), pid));
    cr_assert(eq(int, status, 0));
    same_outs(&fifo, &mem);

    struct out missing;
    snprintf(path, sizeof(path), "%s/none.mtr", h_tmpdir());
    order_path(path, &missing);
    cr_assert(eq(int, missing.rc, RD_ERR_IO));
    cr_assert(ne(ptr, strstr(missing.err, "No such file"), NULL), "%s", missing.err);
    out_free(&mem);
    out_free(&file);
    out_free(&fifo);
    tg_buf_free(&t);
}
