/* The REACH record (trace-format.md §9.1) through the reader and the time-ordered reader: every
 * field decoded, entries handed out aligned, malformed records refused with their offset. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdlib.h>
#include <string.h>

#include "order.h"
#include "reader.h"
#include "tracegen.h"

static size_t reach_record(struct tg_buf *t, uint32_t flags, uint32_t count, uint32_t claimed,
                           uint32_t bad_state_at)
{
    struct tg_buf p = { 0 };
    tg_u64(&p, 5000);  /* ts_ns */
    tg_u64(&p, 10);    /* live_blocks */
    tg_u64(&p, 1000);  /* live_bytes */
    tg_u64(&p, 65536); /* root_bytes */
    tg_u32(&p, flags);
    tg_u32(&p, claimed);
    for (uint32_t i = 0; i < count; i++) {
        tg_u64(&p, 0x500000 + 0x100 * i);
        tg_u32(&p, i == bad_state_at ? 7 : (i % 2 ? MTF_REACH_INDIRECT : MTF_REACH_DIRECT));
        tg_u32(&p, 0);
    }
    size_t off = tg_record(t, MTF_REC_REACH, p.data, p.len);
    tg_buf_free(&p);
    return off;
}

/* A trace: header, one chunk with a malloc at t=4000 and one at t=6000, REACH, END. */
static void trace(struct tg_buf *t, uint32_t count, uint32_t claimed, uint32_t bad)
{
    struct mtf_end end = tg_end_default();
    tg_file_header(t, NULL);
    struct tg_chunk c;
    tg_chunk_begin(&c, 7, 1, 0, 0, 0);
    tg_chunk_event(&c, &(struct rd_event){
                           .kind = MTF_EV_MALLOC, .ts_ns = 4000, .addr = 0x500000, .size = 16 });
    tg_chunk_end(&c, t, &end);
    reach_record(t, MTF_REACHF_LAST, count, claimed, bad);
    tg_end(t, &end);
}

Test(reach_record, reader_decodes_every_field_and_entry)
{
    struct tg_buf t = { 0 };
    trace(&t, 3, 3, UINT32_MAX);
    struct reader *r;
    cr_assert(eq(int, reader_open_mem(&r, t.data, t.len), 0));
    struct rd_item it;
    int rc, seen = 0;
    while ((rc = reader_next(r, &it)) == 1) {
        if (it.type != RD_ITEM_REACH)
            continue;
        seen++;
        cr_expect(eq(u64, it.reach.h.ts_ns, 5000));
        cr_expect(eq(u64, it.reach.h.live_blocks, 10));
        cr_expect(eq(u64, it.reach.h.live_bytes, 1000));
        cr_expect(eq(u64, it.reach.h.root_bytes, 65536));
        cr_expect(eq(u32, it.reach.h.flags, MTF_REACHF_LAST));
        cr_assert(eq(u32, it.reach.h.count, 3));
        for (uint32_t i = 0; i < 3; i++) {
            cr_expect(eq(u64, it.reach.entries[i].addr, 0x500000 + 0x100 * i));
            cr_expect(
                eq(u32, it.reach.entries[i].state, i % 2 ? MTF_REACH_INDIRECT : MTF_REACH_DIRECT));
        }
    }
    cr_expect(eq(int, rc, 0), "%s", reader_error(r));
    cr_expect(eq(int, seen, 1));
    cr_expect(eq(int, reader_status(r)->complete, 1));
    reader_close(r);
    tg_buf_free(&t);
}

Test(reach_record, order_yields_it_after_the_events_before_it)
{
    struct tg_buf t = { 0 };
    trace(&t, 2, 2, UINT32_MAX);
    struct order *o;
    cr_assert(eq(int, order_open_mem(&o, t.data, t.len), 0));
    struct rd_item it;
    int rc, events = 0, reach_after = -1;
    while ((rc = order_next(o, &it)) == 1) {
        if (it.type == RD_ITEM_EVENT)
            events++;
        if (it.type == RD_ITEM_REACH) {
            reach_after = events;
            cr_expect(eq(u32, it.reach.h.count, 2));
            cr_expect(eq(u64, it.reach.entries[1].addr, 0x500100));
        }
    }
    cr_expect(eq(int, rc, 0), "%s", order_error(o));
    cr_expect(eq(int, reach_after, 1), "REACH comes after the malloc written before it");
    order_close(o);
    tg_buf_free(&t);
}

static void expect_corrupt(uint32_t count, uint32_t claimed, uint32_t bad, const char *msg)
{
    struct tg_buf t = { 0 };
    trace(&t, count, claimed, bad);
    struct reader *r;
    cr_assert(eq(int, reader_open_mem(&r, t.data, t.len), 0));
    struct rd_item it;
    int rc;
    while ((rc = reader_next(r, &it)) == 1)
        cr_expect(ne(int, it.type, RD_ITEM_REACH), "a bad REACH yields nothing");
    cr_expect(eq(int, rc, RD_ERR_CORRUPT));
    cr_expect(ne(ptr, strstr(reader_error(r), msg), NULL), "%s lacks %s", reader_error(r), msg);
    reader_close(r);
    tg_buf_free(&t);
}

Test(reach_record, malformed_records_are_refused)
{
    expect_corrupt(2, 3, UINT32_MAX, "too few for its 3 entries");
    expect_corrupt(3, 2, UINT32_MAX, "bytes after its last field"); /* an entry nobody claimed */
    expect_corrupt(3, 3, 1, "REACH entry 1: unknown state 7");
}
