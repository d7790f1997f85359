/* preload/encode.h and encode.c: varints, zigzag deltas, the per-chunk state, the field layout
 * of each event kind, and mt_enc_scan. The decoder here is the test's own, written from
 * docs/trace-format.md §1 and §7, and the layout table is checked against the spec's table by
 * hand, so an encoder and scanner that agree on a misreading of the spec still fail.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdint.h>
#include <string.h>

#include "encode.h"
#include "memtrace/format.h"

TestSuite(encode, .timeout = 10);

/* ---- the test's own decoder (spec §1) -------------------------------------------------------- */

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int i = 0; i < MTF_VARINT_MAX_BYTES; i++) {
        if (*p == end)
            return -1;
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* z = (d << 1) ^ (d >> 63), inverted. */
static uint64_t unzigzag(uint64_t z)
{
    return (z >> 1) ^ (uint64_t)(-(int64_t)(z & 1));
}

/* ---- varint ---------------------------------------------------------------------------------- */

struct varint_bytes {
    uint64_t v;
    size_t n;
    uint8_t bytes[MTF_VARINT_MAX_BYTES];
};

Test(encode, varint_has_spec_byte_layout)
{
    static const struct varint_bytes cases[] = {
        { 0, 1, { 0x00 } },
        { 1, 1, { 0x01 } },
        { 127, 1, { 0x7f } },
        { 128, 2, { 0x80, 0x01 } },
        { 300, 2, { 0xac, 0x02 } },
        { 16383, 2, { 0xff, 0x7f } },
        { 16384, 3, { 0x80, 0x80, 0x01 } },
        { 1ULL << 63, 10, { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 } },
        { UINT64_MAX, 10, { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[MTF_VARINT_MAX_BYTES + 4];
        memset(buf, 0xee, sizeof buf);
        uint8_t *end = mt_put_varint(buf, cases[i].v);
        cr_expect(eq(sz, (size_t)(end - buf), cases[i].n), "length of %llu",
                  (unsigned long long)cases[i].v);
        cr_expect(eq(int, memcmp(buf, cases[i].bytes, cases[i].n), 0), "bytes of %llu",
                  (unsigned long long)cases[i].v);
        cr_expect(eq(u8, buf[cases[i].n], 0xee), "nothing written past the end");
    }
}

Test(encode, varint_round_trips_every_power_of_two_boundary)
{
    for (int k = 0; k <= 64; k++) {
        uint64_t vals[3] = { k < 64 ? 1ULL << k : 0, k < 64 ? (1ULL << k) - 1 : UINT64_MAX,
                             k < 64 ? (1ULL << k) + 1 : UINT64_MAX - 1 };
        for (int j = 0; j < 3; j++) {
            uint8_t buf[MTF_VARINT_MAX_BYTES];
            uint8_t *end = mt_put_varint(buf, vals[j]);
            size_t n = (size_t)(end - buf);
            int bits = vals[j] ? 64 - __builtin_clzll(vals[j]) : 1;
            cr_expect(eq(sz, n, (size_t)(bits + 6) / 7), "7 bits a byte for %llu",
                      (unsigned long long)vals[j]);
            const uint8_t *p = buf;
            uint64_t back = 0;
            cr_assert(eq(int, get_varint(&p, end, &back), 0));
            cr_expect(eq(u64, back, vals[j]));
            cr_expect(eq(ptr, (void *)p, (void *)end), "decoder consumed exactly the encoding");
        }
    }
}

/* ---- zigzag ---------------------------------------------------------------------------------- */

Test(encode, zigzag_maps_small_signed_to_small_unsigned)
{
    cr_expect(eq(u64, mt_zigzag(0), 0));
    cr_expect(eq(u64, mt_zigzag((uint64_t)-1), 1));
    cr_expect(eq(u64, mt_zigzag(1), 2));
    cr_expect(eq(u64, mt_zigzag((uint64_t)-2), 3));
    cr_expect(eq(u64, mt_zigzag(2), 4));
    cr_expect(eq(u64, mt_zigzag((uint64_t)INT64_MAX), UINT64_MAX - 1));
    cr_expect(eq(u64, mt_zigzag((uint64_t)INT64_MIN), UINT64_MAX));
    cr_expect(eq(u64, mt_zigzag(1ULL << 63), UINT64_MAX), "2^63 is INT64_MIN modulo 2^64");
}

Test(encode, zigzag_round_trips_deltas)
{
    static const int64_t deltas[] = {
        0,    1,     -1,        63,        -64,       64,        -65,
        4096, -4096, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, -0x7f0000001000LL
    };
    for (size_t i = 0; i < sizeof deltas / sizeof deltas[0]; i++) {
        uint64_t z = mt_zigzag((uint64_t)deltas[i]);
        cr_expect(eq(i64, (int64_t)unzigzag(z), deltas[i]));
        int64_t mag = deltas[i] < 0 ? -(deltas[i] + 1) : deltas[i]; /* |d| without overflow */
        cr_expect(le(u64, z, 2 * (uint64_t)mag + 1), "small magnitude, small code");
    }
}

/* ---- address, stack and head helpers ----------------------------------------------------------
 */

Test(encode, addr_encodes_delta_and_advances_state)
{
    struct mt_enc_state s = { 0, 0x7f0000001000ULL, 0 };
    uint8_t buf[64];
    uint8_t *p = mt_put_addr(buf, &s, 0x1000); /* a large negative delta */
    cr_expect(eq(u64, s.addr, 0x1000));
    p = mt_put_addr(p, &s, 0x1000);     /* same address again: delta 0, one byte */
    p = mt_put_addr(p, &s, UINT64_MAX); /* crosses the top: delta taken modulo 2^64 */
    p = mt_put_addr(p, &s, 0);          /* +1 modulo 2^64 */

    const uint8_t *q = buf;
    uint64_t z, addr = 0x7f0000001000ULL;
    static const uint64_t want[] = { 0x1000, 0x1000, UINT64_MAX, 0 };
    for (int i = 0; i < 4; i++) {
        cr_assert(eq(int, get_varint(&q, p, &z), 0));
        addr += unzigzag(z);
        cr_expect(eq(u64, addr, want[i]), "address %d", i);
    }
    cr_expect(eq(ptr, (void *)q, (void *)p));
    cr_expect(eq(u8, buf[p - buf - 1], 0x02), "zigzag(+1) is one byte 0x02");
}

Test(encode, stack_encodes_signed_delta_of_ids)
{
    struct mt_enc_state s = { 0, 0, 5 };
    uint8_t buf[32];
    uint8_t *p = mt_put_stack(buf, &s, 3);
    cr_expect(eq(sz, (size_t)(p - buf), 1));
    cr_expect(eq(u8, buf[0], 3), "5 -> 3 is delta -2, zigzag 3");
    cr_expect(eq(u32, s.stack, 3));
    p = mt_put_stack(p, &s, UINT32_MAX);
    p = mt_put_stack(p, &s, 0);
    cr_expect(eq(u32, s.stack, 0));
    const uint8_t *q = buf + 1;
    uint64_t z;
    uint32_t stack = 3;
    cr_assert(eq(int, get_varint(&q, p, &z), 0));
    stack += (uint32_t)unzigzag(z);
    cr_expect(eq(u32, stack, UINT32_MAX));
    cr_assert(eq(int, get_varint(&q, p, &z), 0));
    stack += (uint32_t)unzigzag(z);
    cr_expect(eq(u32, stack, 0));
}

Test(encode, head_puts_tag_and_time_delta)
{
    struct mt_enc_state s = { 1000, 0, 0 };
    uint8_t buf[32];
    uint8_t *p = mt_put_head(buf, &s, MTF_EV_FREE, MTF_EVF_NESTED, 1300);
    cr_expect(eq(u8, buf[0], MTF_EV_FREE | MTF_EVF_NESTED));
    cr_expect(eq(u8, buf[1], 0xac));
    cr_expect(eq(u8, buf[2], 0x02), "dt 300");
    cr_expect(eq(sz, (size_t)(p - buf), 3));
    cr_expect(eq(u64, s.ts, 1300));
}

Test(encode, head_clamps_time_going_backwards)
{
    struct mt_enc_state s = { 5000, 0, 0 };
    uint8_t buf[32];
    uint8_t *p = mt_put_head(buf, &s, MTF_EV_MALLOC, 0, 4000);
    cr_expect(eq(u8, buf[1], 0), "dt is 0, never negative");
    cr_expect(eq(sz, (size_t)(p - buf), 2));
    cr_expect(eq(u64, s.ts, 5000), "state keeps the later time");
}

Test(encode, malloc_event_has_spec_bytes)
{
    /* Spec §7: tag, dt, A ptr, size, S stack. From ts 1000, addr 0, stack 0:
     * malloc(24) = 0x1000 at 1010 with stack 1. */
    struct mt_enc_state s = { 1000, 0, 0 };
    uint8_t buf[32];
    uint8_t *p = mt_put_head(buf, &s, MTF_EV_MALLOC, 0, 1010);
    p = mt_put_addr(p, &s, 0x1000);
    p = mt_put_varint(p, 24);
    p = mt_put_stack(p, &s, 1);
    static const uint8_t want[] = { 0x01, 0x0a, 0x80, 0x40, 0x18, 0x02 };
    cr_assert(eq(sz, (size_t)(p - buf), sizeof want));
    cr_expect(eq(int, memcmp(buf, want, sizeof want), 0));
}

/* ---- layout table ---------------------------------------------------------------------------- */

Test(encode, layout_matches_spec_table)
{
    /* Copied from docs/trace-format.md §7, "fields after dt": a = A field, s = S field,
     * v = plain varint, b = a length and that many bytes, f = nframes and the frame deltas. */
    static const struct {
        unsigned kind;
        const char *fields;
    } spec[] = {
        { MTF_EV_MALLOC, "avvs" },
        { MTF_EV_CALLOC, "avvvs" },
        { MTF_EV_REALLOC, "aavvsv" },
        { MTF_EV_REALLOCARRAY, "aavvvsv" },
        { MTF_EV_FREE, "a" },
        { MTF_EV_POSIX_MEMALIGN, "avvvs" },
        { MTF_EV_ALIGNED_ALLOC, "avvvs" },
        { MTF_EV_MEMALIGN, "avvvs" },
        { MTF_EV_VALLOC, "avvs" },
        { MTF_EV_PVALLOC, "avvs" },
        { MTF_EV_MMAP, "avvvvvs" },
        { MTF_EV_MMAP64, "avvvvvs" },
        { MTF_EV_MUNMAP, "av" },
        { MTF_EV_MREMAP, "avvvasv" },
        { MTF_EV_STACK, "vf" },
        { MTF_EV_FORK, "v" },
        { MTF_EV_SNAPSHOT, "vvvvvvvb" },
        { MTF_EV_LIMIT, "vvvvvvs" },
        { MTF_EV_EXEC, "" },
    };
    cr_expect(eq(ptr, (void *)mt_enc_layout[0], NULL), "kind 0 does not exist");
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        const char *got = mt_enc_layout[spec[i].kind];
        cr_assert(ne(ptr, (void *)got, NULL), "kind %u has a layout", spec[i].kind);
        cr_expect(eq(str, (char *)got, (char *)spec[i].fields), "kind %u", spec[i].kind);
    }
    cr_expect(eq(sz, sizeof spec / sizeof spec[0], (size_t)MTF_EV_KIND_COUNT - 1));
}

/* ---- a generic encoder over the layout, for the scanner ----------------------------------------
 */

struct ev {
    unsigned kind, flags;
    uint64_t ts;
    uint64_t f[8];      /* field values in layout order; for STACK: id, nframes */
    uint64_t frames[4]; /* STACK only */
};

static const char label_bytes[MTF_LABEL_MAX + 1] = "mark";

/* Encode one event from its field values, advancing the encoder state s. */
static uint8_t *put_event(uint8_t *p, struct mt_enc_state *s, const struct ev *e)
{
    p = mt_put_head(p, s, e->kind, e->flags, e->ts);
    const char *f = mt_enc_layout[e->kind];
    for (int i = 0; f[i]; i++) {
        switch (f[i]) {
        case 'a':
            p = mt_put_addr(p, s, e->f[i]);
            break;
        case 's':
            p = mt_put_stack(p, s, (uint32_t)e->f[i]);
            break;
        case 'v':
            p = mt_put_varint(p, e->f[i]);
            break;
        case 'b': /* a label: f[i] bytes of a 255-byte text */
            p = mt_put_varint(p, e->f[i]);
            memcpy(p, label_bytes, e->f[i]);
            p += e->f[i];
            break;
        case 'f': {
            /* frames: each a zigzag delta from the previous, the first from 0 (spec §7) */
            uint64_t n = e->f[i], prev = 0;
            p = mt_put_varint(p, n);
            for (uint64_t k = 0; k < n; k++) {
                p = mt_put_varint(p, mt_zigzag(e->frames[k] - prev));
                prev = e->frames[k];
            }
            break;
        }
        }
    }
    return p;
}

/* Every kind once, with flags, deltas both ways and one clock step backwards. */
#define EV(k, fl, t, ...)                                                                          \
    {                                                                                              \
        .kind = k, .flags = fl, .ts = t, .f = { __VA_ARGS__ }                                      \
    }
#define STACK_EV(fl, t, id, n, ...)                                                                \
    {                                                                                              \
        .kind = MTF_EV_STACK, .flags = fl, .ts = t, .f = { id, n }, .frames = { __VA_ARGS__ }      \
    }
static const struct ev events[] = {
    STACK_EV(0, 1010, 1, 3, 0x401000, 0x400f00, 0x7fff0000),
    EV(MTF_EV_MALLOC, 0, 1020, 0x5000, 24, 8, 1),
    EV(MTF_EV_CALLOC, MT_EV_CLASS(MTF_CLASS_EXTERNAL), 1030, 0x5100, 4, 8, 8, 1),
    EV(MTF_EV_REALLOC, 0, 1040, 0x5000, 0x6000, 100, 4, 1, 5),
    EV(MTF_EV_REALLOCARRAY, 0, 1050, 0x6000, 0x3000, 10, 10, 4, 1, 2),
    EV(MTF_EV_FREE, 0, 1060, 0x3000),
    EV(MTF_EV_POSIX_MEMALIGN, 0, 1070, 0x8000, 64, 100, 12, 1),
    EV(MTF_EV_ALIGNED_ALLOC, 0, 1080, 0x9000, 4096, 4096, 0, 1),
    EV(MTF_EV_MEMALIGN, 0, 1090, 0xa000, 16, 48, 8, 1),
    STACK_EV(MTF_EVF_TRUNC, 1100, 2, 1, 0x402000),
    EV(MTF_EV_VALLOC, 0, 1110, 0xb000, 10, 4086, 2),
    EV(MTF_EV_PVALLOC, 0, 1105, 0xc000, 10, 4086, 2), /* clock read earlier on another path */
    EV(MTF_EV_MMAP, MT_EV_CLASS(MTF_CLASS_HEAP), 1120, 0x7f0000000000ULL, 8192, 3, 0x22, 1, 0, 2),
    EV(MTF_EV_MMAP64, MTF_EVF_FAILED, 1130, 0x1000, 8192, 3, 0x22, 6, 4096, 2),
    EV(MTF_EV_MUNMAP, 0, 1140, 0x7f0000000000ULL, 8192),
    EV(MTF_EV_MREMAP, 0, 1150, 0x7f0000010000ULL, 4096, 8192, 1, 0x7f0000020000ULL, 1, 3),
    EV(MTF_EV_FORK, 0, 1160, 4243),
    EV(MTF_EV_MALLOC, MTF_EVF_FAILED | MTF_EVF_NESTED, 1170, 0, 1ULL << 40, 0, 0),
    EV(MTF_EV_SNAPSHOT, 0, 1175, MTF_SNAP_MARK, 1 << 20, 1 << 18, 1000, 8192, 0, 0, 4),
    EV(MTF_EV_LIMIT, 0, 1176, MTF_EV_MALLOC, 0, 1, 1 << 20, 1000000, 100000, 1),
    EV(MTF_EV_EXEC, 0, 1180, 0),
};
#define NEVENTS (sizeof events / sizeof events[0])

/* Encode all events from `start`; boundaries[i] = offset after event i. Returns the length. */
static uint32_t encode_all(uint8_t *buf, struct mt_enc_state start, struct mt_enc_state *end,
                           uint32_t *boundaries)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < NEVENTS; i++) {
        p = put_event(p, &start, &events[i]);
        if (boundaries != NULL)
            boundaries[i] = (uint32_t)(p - buf);
    }
    *end = start;
    return (uint32_t)(p - buf);
}

Test(encode, scan_counts_every_kind_and_tracks_state)
{
    static uint8_t buf[4096];
    struct mt_enc_state start = { 1000, 0, 0 }, enc_end;
    uint32_t len = encode_all(buf, start, &enc_end, NULL);

    struct mt_enc_state s = start;
    struct mt_scan out;
    memset(&out, 0xa5, sizeof out);
    cr_assert(eq(int, mt_enc_scan(buf, len, &s, &out), 0));
    cr_expect(eq(u32, out.nevents, NEVENTS));
    cr_expect(eq(u64, out.first_ts, 1010));
    cr_expect(eq(u64, out.last_ts, 1180));
    uint64_t want[MTF_EV_KIND_COUNT] = { 0 };
    for (size_t i = 0; i < NEVENTS; i++)
        want[events[i].kind]++;
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++)
        cr_expect(eq(u64, out.counts[k], want[k]), "count of kind %u", k);
    /* The final state is what the encoder left: last address field, last stack, latest time. */
    cr_expect(eq(u64, s.ts, 1180));
    cr_expect(eq(u64, s.addr, 0));
    cr_expect(eq(u32, s.stack, 1), "LIMIT's stack is the last one");
    cr_expect(eq(u64, s.ts, enc_end.ts));
    cr_expect(eq(u64, s.addr, enc_end.addr));
    cr_expect(eq(u32, s.stack, enc_end.stack));
}

Test(encode, scan_starts_from_a_chunk_base_state)
{
    static uint8_t buf[4096];
    struct mt_enc_state start = { 1ULL << 40, 0x7fff00000000ULL, 77 }, enc_end;
    uint32_t len = encode_all(buf, start, &enc_end, NULL);
    struct mt_enc_state s = start;
    struct mt_scan out;
    cr_assert(eq(int, mt_enc_scan(buf, len, &s, &out), 0));
    cr_expect(eq(u32, out.nevents, NEVENTS));
    cr_expect(eq(u64, s.ts, enc_end.ts));
    cr_expect(eq(u64, s.addr, enc_end.addr));
    cr_expect(eq(u32, s.stack, enc_end.stack));
    cr_expect(eq(u64, out.first_ts, 1ULL << 40), "every event is older than the base: dt 0");
}

Test(encode, scan_splits_at_every_event_boundary)
{
    /* What a steal does: scan a prefix, then the rest from the state after the prefix. */
    static uint8_t buf[4096];
    static uint32_t bounds[NEVENTS];
    struct mt_enc_state start = { 1000, 0, 0 }, enc_end;
    uint32_t len = encode_all(buf, start, &enc_end, bounds);
    for (size_t i = 0; i + 1 < NEVENTS; i++) {
        struct mt_enc_state s = start;
        struct mt_scan a, b;
        cr_assert(eq(int, mt_enc_scan(buf, bounds[i], &s, &a), 0), "prefix of %zu", i + 1);
        cr_assert(eq(int, mt_enc_scan(buf + bounds[i], len - bounds[i], &s, &b), 0));
        cr_expect(eq(u32, a.nevents + b.nevents, NEVENTS));
        cr_expect(eq(u32, a.nevents, (uint32_t)(i + 1)));
        cr_expect(eq(u64, s.ts, enc_end.ts));
        cr_expect(eq(u64, s.addr, enc_end.addr));
        cr_expect(eq(u32, s.stack, enc_end.stack));
    }
}

Test(encode, scan_rejects_buffer_cut_inside_an_event)
{
    static uint8_t buf[4096];
    static uint32_t bounds[NEVENTS];
    struct mt_enc_state start = { 1000, 0, 0 }, enc_end;
    uint32_t len = encode_all(buf, start, &enc_end, bounds);
    size_t next = 0;
    for (uint32_t cut = 1; cut < len; cut++) {
        while (bounds[next] < cut)
            next++;
        struct mt_enc_state s = start;
        struct mt_scan out;
        int want = bounds[next] == cut ? 0 : -1;
        cr_expect(eq(int, mt_enc_scan(buf, cut, &s, &out), want), "cut at %u", cut);
    }
}

Test(encode, scan_of_empty_buffer_finds_nothing)
{
    struct mt_enc_state s = { 7, 8, 9 };
    struct mt_scan out;
    memset(&out, 0xa5, sizeof out);
    uint8_t none = 0;
    cr_assert(eq(int, mt_enc_scan(&none, 0, &s, &out), 0));
    cr_expect(eq(u32, out.nevents, 0));
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++)
        cr_expect(eq(u64, out.counts[k], 0));
    cr_expect(eq(u64, s.ts, 7));
    cr_expect(eq(u64, s.addr, 8));
    cr_expect(eq(u32, s.stack, 9));
}

Test(encode, scan_rejects_unknown_kind)
{
    static const uint8_t kinds[] = { 0, MTF_EV_KIND_COUNT, MTF_EV_KIND_MASK,
                                     MTF_EVF_FAILED /* kind 0 with a flag */ };
    for (size_t i = 0; i < sizeof kinds; i++) {
        uint8_t buf[] = { kinds[i], 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 };
        struct mt_enc_state s = { 0, 0, 0 };
        struct mt_scan out;
        cr_expect(eq(int, mt_enc_scan(buf, sizeof buf, &s, &out), -1), "tag 0x%x", kinds[i]);
    }
}

Test(encode, scan_rejects_overlong_varint)
{
    /* A FREE whose dt has 11 bytes: more than a 64-bit varint can use. */
    uint8_t buf[16] = { MTF_EV_FREE };
    memset(buf + 1, 0x80, 10);
    buf[11] = 0x00;
    buf[12] = 0x00; /* the address */
    struct mt_enc_state s = { 0, 0, 0 };
    struct mt_scan out;
    cr_expect(eq(int, mt_enc_scan(buf, 13, &s, &out), -1));
}

Test(encode, scan_rejects_stack_with_missing_frames)
{
    uint8_t buf[16];
    uint8_t *p = buf;
    *p++ = MTF_EV_STACK;
    p = mt_put_varint(p, 0);    /* dt */
    p = mt_put_varint(p, 1);    /* id */
    p = mt_put_varint(p, 1000); /* nframes, but only two follow */
    p = mt_put_varint(p, 2);
    p = mt_put_varint(p, 2);
    struct mt_enc_state s = { 0, 0, 0 };
    struct mt_scan out;
    cr_expect(eq(int, mt_enc_scan(buf, (uint32_t)(p - buf), &s, &out), -1));
}

/* ---- size bounds ----------------------------------------------------------------------------- */

Test(encode, worst_case_events_fit_their_bounds)
{
    for (unsigned k = 1; k < MTF_EV_KIND_COUNT; k++) {
        if (k == MTF_EV_STACK)
            continue;
        /* Every address field jumps across the whole space, every varint is 64 bits wide, the
         * stack id swings from 0 to UINT32_MAX. */
        struct mt_enc_state s = { 0, 0, 0 };
        struct ev e = { .kind = k,
                        .flags = MTF_EVF_FAILED | MTF_EVF_NESTED | (MTF_EVF_CLASS | ~0U << 8),
                        .ts = UINT64_MAX };
        const char *f = mt_enc_layout[k];
        for (int i = 0; f[i]; i++)
            e.f[i] = f[i] == 's'   ? UINT32_MAX
                     : f[i] == 'b' ? MTF_LABEL_MAX
                                   : (i % 2 ? 1ULL << 63 : UINT64_MAX);
        uint8_t buf[4 * MTF_EVENT_MAX_BYTES];
        uint8_t *p = put_event(buf, &s, &e);
        cr_expect(le(sz, (size_t)(p - buf), (size_t)MTF_EVENT_MAX_BYTES), "kind %u", k);
    }
    static uint8_t buf[2 * MT_STACK_DEF_MAX];
    struct mt_enc_state s = { 0, 0, 0 };
    uint8_t *p = mt_put_head(buf, &s, MTF_EV_STACK, MTF_EVF_TRUNC, UINT64_MAX);
    p = mt_put_varint(p, UINT32_MAX);
    p = mt_put_varint(p, MTF_MAX_FRAMES_LIMIT);
    for (int i = 0; i < MTF_MAX_FRAMES_LIMIT; i++)
        p = mt_put_varint(p, mt_zigzag(i % 2 ? UINT64_MAX : 1ULL << 63));
    cr_expect(le(sz, (size_t)(p - buf), (size_t)MT_STACK_DEF_MAX));
}
