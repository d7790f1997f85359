/* Event encoding (docs/trace-format.md §7): varints, zigzag deltas, and the per-chunk state.
 * The encoders are static inline because they run on every event; the scanner, used only when
 * a buffer is split between two writers, lives in encode.c. No allocation, no system calls.
 */
#ifndef MEMTRACE_PRELOAD_ENCODE_H
#define MEMTRACE_PRELOAD_ENCODE_H

#include <stdint.h>

#include "memtrace/format.h"

/* The decoder state a chunk starts from and each event advances. */
struct mt_enc_state {
    uint64_t ts;
    uint64_t addr;
    uint32_t stack;
};

static inline uint8_t *mt_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static inline uint64_t mt_zigzag(uint64_t delta)
{
    return (delta << 1) ^ (uint64_t)((int64_t)delta >> 63);
}

/* Encode an address field: delta from the state, state becomes `addr`. */
static inline uint8_t *mt_put_addr(uint8_t *p, struct mt_enc_state *s, uint64_t addr)
{
    p = mt_put_varint(p, mt_zigzag(addr - s->addr));
    s->addr = addr;
    return p;
}

static inline uint8_t *mt_put_stack(uint8_t *p, struct mt_enc_state *s, uint32_t stack)
{
    p = mt_put_varint(p, mt_zigzag((uint64_t)(int64_t)((int64_t)stack - (int64_t)s->stack)));
    s->stack = stack;
    return p;
}

/* Flags argument of the recording functions: the tag's flag bits, and with MTF_EVF_CLASS the
 * class in bits 8 and up (MT_EV_CLASS(c) builds both). */
#define MT_EV_CLASS(c) (MTF_EVF_CLASS | ((unsigned)(c) << 8))

/* Tag byte, time delta and (with MTF_EVF_CLASS on a non-STACK kind) the class: every event
 * starts with them. */
static inline uint8_t *mt_put_head(uint8_t *p, struct mt_enc_state *s, unsigned kind,
                                   unsigned flags, uint64_t ts)
{
    *p++ = (uint8_t)(kind | (flags & 0xe0U));
    p = mt_put_varint(p, ts >= s->ts ? ts - s->ts : 0);
    if (ts > s->ts)
        s->ts = ts;
    if ((flags & MTF_EVF_CLASS) && kind != MTF_EV_STACK)
        p = mt_put_varint(p, flags >> 8);
    return p;
}

/* Field layout of each kind after the head: 'a' address, 's' stack, 'v' varint, 'b' bytes (two
 * fields: length, then a pointer to them), 'f' frame list (STACK). NULL for kinds that do not
 * exist. */
extern const char *const mt_enc_layout[MTF_EV_KIND_COUNT];

/* Upper bound of an encoded STACK definition. */
#define MT_STACK_DEF_MAX                                                                           \
    (1 + 3 * MTF_VARINT_MAX_BYTES + MTF_VARINT_MAX_BYTES * MTF_MAX_FRAMES_LIMIT)

/* What a scan of encoded events found. */
struct mt_scan {
    uint32_t nevents;
    uint64_t first_ts, last_ts;
    uint64_t counts[MTF_EV_KIND_COUNT];
};

/* Walk `len` bytes of events starting from state *s (advanced to the state after them) and
 * fill *out. Returns 0, or -1 if the bytes are not a whole number of well-formed events (a bug:
 * the shim wrote them). */
int mt_enc_scan(const uint8_t *p, uint32_t len, struct mt_enc_state *s, struct mt_scan *out);

#endif
