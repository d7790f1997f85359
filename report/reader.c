/* Trace reader: validates and decodes a memtrace trace (docs/trace-format.md), one record at a
 * time, from a stream (file, pipe) or from memory. Never prints and never exits: every failure is
 * a negative RD_ERR_* plus a message naming the byte offset, kept for the caller.
 * Invariants: memory is bounded by the largest record (payload <= MTF_RECORD_MAX_SIZE), never by
 * the file's length; every length, count and varint read from the trace is checked against the
 * bytes that hold it before use (this file is fuzzed, tests/fuzz/fuzz_reader.c); a record yields
 * items only after all of it validated, so a bad record contributes nothing.
 */
#include "reader.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

#include "crc32c.h"
#include "names.h"

#define STREAM_CHUNK (64U << 10) /* bytes read at a time when skipping or draining */

/* Field accessors over little-endian on-disk bytes; offsets come from the format.h structs so
 * no offset is ever written as a literal here (STYLE 2.6). */
#define GET16(p, type, field) le16((p) + offsetof(type, field))
#define GET32(p, type, field) le32((p) + offsetof(type, field))
#define GET64(p, type, field) le64((p) + offsetof(type, field))

enum phase {
    PH_RECORDS, /* between records: the next call reads one */
    PH_MODULES, /* yielding the entries of a validated MODULES record */
    PH_EVENTS,  /* yielding the events of a validated EVENTS record */
    PH_EOF,     /* clean end of file reached */
};

/* Event decoder state (trace-format.md §7): ts, addr and stack start from the chunk's base_*. */
#define MT_NOINLINE_RD __attribute__((noinline))

struct dec {
    const uint8_t *p, *end;
    uint64_t ts, addr, stack;
    char *why; /* DEC_WHY bytes: what was wrong, when a decode fails. A pointer, so that the
                  error path never takes the decoder's address (which would keep p and the
                  states in memory instead of registers) */
};

#define DEC_WHY 96

struct reader {
    FILE *f;            /* stream source; NULL when reading from memory */
    int own_f;          /* fclose(f) in reader_close */
    int regular;        /* f is a regular file: its size can be asked instead of drained */
    const uint8_t *mem; /* memory source */
    size_t mem_size, mem_pos;
    uint64_t off; /* bytes consumed from the source */
    char *name;   /* path as shown in messages */
    int strict;   /* version_minor <= ours: no unknown flag or trailing byte is tolerated */

    int err;       /* sticky RD_ERR_*, 0 while healthy */
    char msg[512]; /* reader_error() text */
    struct rd_status st;

    uint8_t *buf; /* stream input buffer: holds the current record */
    size_t buf_cap;

    enum phase phase;
    uint64_t rec_off;      /* file offset of the record being yielded */
    uint16_t rec_type;     /* its type */
    const uint8_t *pl;     /* its payload (in buf, or in mem) */
    uint32_t pl_size;      /* bytes */
    uint32_t left;         /* entries or events still to yield */
    size_t pos;            /* MODULES: payload offset of the next entry */
    uint64_t mod_ts;       /* MODULES: ts_ns of the record */
    struct dec dec;        /* EVENTS: decoder positioned at the next event */
    char dec_why[DEC_WHY]; /* its error text */
    uint32_t tid, serial;  /* EVENTS: from the chunk header */
    uint32_t end_reason;   /* reason of the last END read, 0 before the first */
    uint64_t end_dropped;  /* dropped of the last END (the shim's count is cumulative) */
    uint64_t loss_dropped; /* sum of LOSS counts */

    uint64_t frames[MTF_MAX_FRAMES_LIMIT + 1];
    char *text; /* NUL-terminated copies of strings handed out in items */
    size_t text_cap;
    struct mtf_reach_entry *reach; /* aligned copy of a REACH record's entries */
    uint32_t reach_cap;            /* entries */
    struct mtf_segment *segs;      /* aligned copy of a module's segments */
    size_t segs_cap;               /* entries */
    ZSTD_DCtx *zctx; /* compressed chunks (trace-format.md §7.5), made on first use */
    uint8_t *zbuf;   /* the current compressed chunk's events, decompressed */
    size_t zbuf_cap; /* bytes */
};

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    uint64_t s;
    return __builtin_add_overflow(a, b, &s) ? UINT64_MAX : s;
}

/* Grow the stream buffer to at least `n` bytes. 0 or RD_ERR_NOMEM (buffer unchanged). */
static int buf_reserve(struct reader *r, size_t n)
{
    if (n <= r->buf_cap)
        return 0;
    size_t cap = r->buf_cap ? r->buf_cap : 4096;
    while (cap < n)
        cap *= 2;
    uint8_t *b = realloc(r->buf, cap);
    if (b == NULL)
        return RD_ERR_NOMEM;
    r->buf = b;
    r->buf_cap = cap;
    return 0;
}

/* ---- errors --------------------------------------------------------------------------------- */

/* Bytes of input after the last good record, for status.lost_bytes. Reading stopped at r->off;
 * what follows is counted without keeping it: memory knows its size, a regular file is asked,
 * a pipe is drained in STREAM_CHUNK pieces. */
static uint64_t input_end(struct reader *r)
{
    if (r->f == NULL)
        return r->mem_size;
    struct stat sb;
    if (r->regular && fstat(fileno(r->f), &sb) == 0 && (uint64_t)sb.st_size >= r->off)
        return (uint64_t)sb.st_size;
    uint64_t end = r->off;
    if (buf_reserve(r, STREAM_CHUNK) == 0) {
        size_t k;
        while ((k = fread(r->buf, 1, STREAM_CHUNK, r->f)) > 0)
            end += k;
    }
    return end;
}

/* Record a failure of the record at `off`: sets the sticky code, the message
 * "<name>: offset <off>: <what>" and the status. Returns `code`. */
__attribute__((format(printf, 4, 5))) static int fail(struct reader *r, int code, uint64_t off,
                                                      const char *fmt, ...)
{
    int n = snprintf(r->msg, sizeof(r->msg), "%s: offset %" PRIu64 ": ", r->name, off);
    if (n < 0 || (size_t)n >= sizeof(r->msg))
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg + n, sizeof(r->msg) - (size_t)n, fmt, ap);
    va_end(ap);
    r->err = code;
    r->st.error_offset = off;
    if (code == RD_ERR_TRUNC)
        r->st.truncated = 1;
    if (code != RD_ERR_IO && code != RD_ERR_NOMEM) {
        uint64_t end = input_end(r);
        r->st.lost_bytes = end > r->st.valid_bytes ? end - r->st.valid_bytes : 0;
        if (end > r->st.file_size)
            r->st.file_size = end;
    } else if (r->st.file_size > r->st.valid_bytes) {
        r->st.lost_bytes = r->st.file_size - r->st.valid_bytes;
    }
    return code;
}

/* A record (or the file header) at `off` needs `need` bytes and only `have` were left. */
static int fail_trunc(struct reader *r, uint64_t off, const char *what, uint64_t need,
                      uint64_t have)
{
    return fail(r, RD_ERR_TRUNC, off,
                "file ends inside %s (needs %" PRIu64 " bytes, %" PRIu64 " present): %" PRIu64
                " bytes lost",
                what, need, have, have);
}

/* ---- input ---------------------------------------------------------------------------------- */

/* Take up to `n` bytes at the current position; fewer only at end of input. *p points to them
 * until the next fetch. The stream buffer grows with the bytes that actually arrive, not with
 * the size a (possibly corrupt) header claims. Returns 0, RD_ERR_IO (errno set) or
 * RD_ERR_NOMEM. */
static int fetch(struct reader *r, size_t n, const uint8_t **p, size_t *got)
{
    if (r->f == NULL) {
        size_t k = r->mem_size - r->mem_pos < n ? r->mem_size - r->mem_pos : n;
        *p = r->mem + r->mem_pos;
        *got = k;
        r->mem_pos += k;
        r->off += k;
        return 0;
    }
    size_t have = 0;
    while (have < n) {
        if (have == r->buf_cap && buf_reserve(r, have < n / 2 ? have * 2 + 1 : n) != 0)
            return RD_ERR_NOMEM;
        size_t want = (r->buf_cap < n ? r->buf_cap : n) - have;
        size_t k = fread(r->buf + have, 1, want, r->f);
        have += k;
        if (k < want) {
            if (ferror(r->f))
                return RD_ERR_IO;
            break;
        }
    }
    *p = r->buf;
    *got = have;
    r->off += have;
    return 0;
}

/* fetch() for callers that can only fail: maps its errors to the reader's message. */
static int fetch_at(struct reader *r, uint64_t off, size_t n, const uint8_t **p, size_t *got)
{
    int rc = fetch(r, n, p, got);
    if (rc == RD_ERR_IO)
        return fail(r, rc, off, "read failed: %s", strerror(errno));
    if (rc == RD_ERR_NOMEM)
        return fail(r, rc, off, "out of memory reading %zu bytes", n);
    return 0;
}

/* ---- file header (trace-format.md §3) -------------------------------------------------------- */

static int read_file_header(struct reader *r)
{
    const uint8_t *p;
    size_t got;
    if (fetch_at(r, 0, MTF_FILE_HEADER_SIZE, &p, &got) != 0)
        return r->err;
    size_t m = got < MTF_MAGIC_SIZE ? got : MTF_MAGIC_SIZE;
    if (memcmp(p, MTF_MAGIC, m) != 0)
        return fail(r, RD_ERR_FORMAT, 0, "not a memtrace trace (bad magic)");
    if (got == 0)
        return fail(r, RD_ERR_TRUNC, 0, "empty file: the file header was never written");
    if (got >= offsetof(struct mtf_file_header, version_minor)) {
        uint16_t major = GET16(p, struct mtf_file_header, version_major);
        if (major != MTF_VERSION_MAJOR)
            return fail(r, RD_ERR_FORMAT, offsetof(struct mtf_file_header, version_major),
                        "unsupported format version %u (this reader reads %u.x)", major,
                        MTF_VERSION_MAJOR);
    }
    if (got < MTF_FILE_HEADER_SIZE)
        return fail_trunc(r, 0, "the file header", MTF_FILE_HEADER_SIZE, got);

    struct mtf_file_header *h = &r->st.header;
    memcpy(h->magic, p, MTF_MAGIC_SIZE);
    h->version_major = GET16(p, struct mtf_file_header, version_major);
    h->version_minor = GET16(p, struct mtf_file_header, version_minor);
    h->header_size = GET32(p, struct mtf_file_header, header_size);
    h->pid = GET32(p, struct mtf_file_header, pid);
    h->parent_pid = GET32(p, struct mtf_file_header, parent_pid);
    h->origin = GET32(p, struct mtf_file_header, origin);
    h->page_size = GET32(p, struct mtf_file_header, page_size);
    h->start_realtime_ns = GET64(p, struct mtf_file_header, start_realtime_ns);
    h->start_monotonic_ns = GET64(p, struct mtf_file_header, start_monotonic_ns);
    h->max_frames = GET32(p, struct mtf_file_header, max_frames);
    h->pointer_size = GET32(p, struct mtf_file_header, pointer_size);
    h->sample_bytes = GET64(p, struct mtf_file_header, sample_bytes);
    for (size_t i = 0; i < sizeof(h->reserved) / sizeof(h->reserved[0]); i++)
        h->reserved[i] = le64(p + offsetof(struct mtf_file_header, reserved) + 8 * i);
    r->strict = h->version_minor <= MTF_VERSION_MINOR;

    if (h->header_size < MTF_FILE_HEADER_SIZE || h->header_size > MTF_RECORD_MAX_SIZE)
        return fail(r, RD_ERR_CORRUPT, offsetof(struct mtf_file_header, header_size),
                    "header_size %u out of range (%u..%u)", h->header_size, MTF_FILE_HEADER_SIZE,
                    MTF_RECORD_MAX_SIZE);
    if (h->origin > MTF_ORIGIN_EXEC)
        return fail(r, RD_ERR_CORRUPT, offsetof(struct mtf_file_header, origin),
                    "unknown origin %u", h->origin);
    if (h->page_size == 0 || (h->page_size & (h->page_size - 1)) != 0)
        return fail(r, RD_ERR_CORRUPT, offsetof(struct mtf_file_header, page_size),
                    "page_size %u is not a power of two", h->page_size);
    if (h->max_frames > MTF_MAX_FRAMES_LIMIT)
        return fail(r, RD_ERR_CORRUPT, offsetof(struct mtf_file_header, max_frames),
                    "max_frames %u exceeds the limit of %u", h->max_frames, MTF_MAX_FRAMES_LIMIT);
    /* 4 would be a 32-bit writer: addresses still fit the 64-bit fields, so both are readable. */
    if (h->pointer_size != 8 && h->pointer_size != 4)
        return fail(r, RD_ERR_CORRUPT, offsetof(struct mtf_file_header, pointer_size),
                    "pointer_size %u is neither 4 nor 8", h->pointer_size);

    /* A newer minor may have a longer header: skip its tail without holding it. */
    uint64_t tail = h->header_size - MTF_FILE_HEADER_SIZE;
    while (tail > 0) {
        size_t n = tail < STREAM_CHUNK ? (size_t)tail : STREAM_CHUNK;
        if (fetch_at(r, 0, n, &p, &got) != 0)
            return r->err;
        if (got < n)
            return fail_trunc(r, 0, "the file header", h->header_size, r->off);
        tail -= n;
    }
    r->st.valid_bytes = h->header_size;
    return 0;
}

/* ---- opening and closing -------------------------------------------------------------------- */

static struct reader *reader_new(const char *name)
{
    struct reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->name = strdup(name);
    if (r->name == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

static int open_stream(struct reader **out, FILE *f, int own_f, const char *name)
{
    struct reader *r = reader_new(name);
    *out = r;
    if (r == NULL) {
        if (own_f)
            fclose(f);
        return RD_ERR_NOMEM;
    }
    r->f = f;
    r->own_f = own_f;
    struct stat sb;
    int fd = fileno(f);
    if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
        r->regular = 1;
        r->st.file_size = (uint64_t)sb.st_size;
    }
    return read_file_header(r);
}

int reader_open(struct reader **out, const char *path)
{
    if (strcmp(path, "-") == 0)
        return open_stream(out, stdin, 0, "<stdin>");
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int saved = errno;
        struct reader *r = reader_new(path);
        *out = r;
        if (r == NULL)
            return RD_ERR_NOMEM;
        snprintf(r->msg, sizeof(r->msg), "%s: %s", path, strerror(saved));
        r->err = RD_ERR_IO;
        return RD_ERR_IO;
    }
    return open_stream(out, f, 1, path);
}

int reader_open_stream(struct reader **out, FILE *f, const char *name)
{
    return open_stream(out, f, 0, name);
}

int reader_open_mem(struct reader **out, const void *data, size_t size)
{
    struct reader *r = reader_new("<memory>");
    *out = r;
    if (r == NULL)
        return RD_ERR_NOMEM;
    static const uint8_t none; /* so that `mem + pos` is never arithmetic on NULL */
    r->mem = data != NULL ? data : &none;
    r->mem_size = data != NULL ? size : 0;
    r->st.file_size = size;
    return read_file_header(r);
}

void reader_close(struct reader *r)
{
    if (r == NULL)
        return;
    if (r->own_f)
        fclose(r->f); /* read-only: a failing close loses nothing */
    free(r->buf);
    free(r->text);
    free(r->segs);
    free(r->reach);
    free(r->name);
    free(r->zbuf);
    ZSTD_freeDCtx(r->zctx);
    free(r);
}

const struct rd_status *reader_status(const struct reader *r)
{
    return &r->st;
}

const char *reader_error(const struct reader *r)
{
    return r->err ? r->msg : "";
}

const char *reader_name(const struct reader *r)
{
    return r->name;
}

/* ---- event decoding (trace-format.md §7) ----------------------------------------------------- */

__attribute__((format(printf, 2, 3), cold)) static int bad(char *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, DEC_WHY, fmt, ap);
    va_end(ap);
    return -1;
}

/* Unsigned LEB128, at most MTF_VARINT_MAX_BYTES bytes, all of them inside [p, end). Returns the
 * position after it and the value, or p NULL with `why` set. By value, so that no caller's
 * decoder state has its address taken. */
struct vres {
    const uint8_t *p;
    uint64_t v;
};

static MT_NOINLINE_RD struct vres varint_slow(const uint8_t *p, const uint8_t *end, char *why)
{
    uint64_t x = 0;
    for (unsigned i = 0; i < MTF_VARINT_MAX_BYTES; i++) {
        if (p == end) {
            bad(why, "varint runs past the end of the events");
            return (struct vres){ NULL, 0 };
        }
        uint8_t b = *p++;
        /* The 10th byte carries bit 63 only: anything more would overflow 64 bits. */
        if (i == MTF_VARINT_MAX_BYTES - 1 && b > 1) {
            bad(why, "varint longer than 64 bits");
            return (struct vres){ NULL, 0 };
        }
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0)
            break;
    }
    return (struct vres){ p, x };
}

#define VARINT_WORD 8 /* bytes the fast path loads at once */

/* Varints with at least 8 bytes of events left are read as one little-endian word. Lengths 1, 2
 * and 3 (time deltas, sizes, most address deltas) each take a branch of their own: a measured
 * 10% faster than a branch-free decode, whose length -> position -> next load chain the CPU
 * cannot run ahead of. Lengths 4 to 8 are branch-free: the lowest clear continuation bit gives
 * the length and three mask-and-shift steps pack the 7-bit groups (pext is slow on older AMD
 * cores). Longer ones, and anything near the end of the events, go through varint_slow with
 * every check. */
static inline __attribute__((always_inline)) int varint(struct dec *d, uint64_t *v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (__builtin_expect(d->end - d->p >= VARINT_WORD, 1)) {
        uint64_t w;
        memcpy(&w, d->p, sizeof w);
        if ((w & 0x80) == 0) {
            d->p++;
            *v = w & 0x7f;
            return 0;
        }
        if ((w & 0x8000) == 0) {
            d->p += 2;
            *v = (w & 0x7f) | (w >> 1 & 0x3f80);
            return 0;
        }
        if ((w & 0x800000) == 0) {
            d->p += 3;
            *v = (w & 0x7f) | (w >> 1 & 0x3f80) | (w >> 2 & 0x1fc000);
            return 0;
        }
        uint64_t stop = ~w & 0x8080808080808080ULL; /* bit 7 of every last-byte candidate */
        if (__builtin_expect(stop != 0, 1)) {
            uint64_t x = w & (stop ^ (stop - 1)) & 0x7f7f7f7f7f7f7f7fULL;
            x = (x & 0x007f007f007f007fULL) | ((x & 0x7f007f007f007f00ULL) >> 1);
            x = (x & 0x00003fff00003fffULL) | ((x & 0x3fff00003fff0000ULL) >> 2);
            x = (x & 0x000000000fffffffULL) | ((x & 0x0fffffff00000000ULL) >> 4);
            d->p += (__builtin_ctzll(stop) >> 3) + 1;
            *v = x;
            return 0;
        }
    }
#endif
    struct vres r = varint_slow(d->p, d->end, d->why);
    if (r.p == NULL)
        return -1;
    d->p = r.p;
    *v = r.v;
    return 0;
}

static inline __attribute__((always_inline)) uint64_t unzigzag(uint64_t z)
{
    return (z >> 1) ^ (0 - (z & 1));
}

/* An `A` field: zigzag delta added (modulo 2^64) to the address state. */
static inline __attribute__((always_inline)) int addr_field(struct dec *d, uint64_t *v)
{
    uint64_t z;
    if (varint(d, &z) != 0)
        return -1;
    d->addr += unzigzag(z);
    *v = d->addr;
    return 0;
}

/* An `S` field: zigzag delta added to the stack state; the result is a 32-bit stack id. */
static inline __attribute__((always_inline)) int stack_field(struct dec *d, uint32_t *v)
{
    uint64_t z;
    if (varint(d, &z) != 0)
        return -1;
    d->stack += unzigzag(z);
    if (__builtin_expect(d->stack > UINT32_MAX, 0))
        return bad(d->why, "stack id %" PRIu64 " out of range", d->stack);
    *v = (uint32_t)d->stack;
    return 0;
}

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    uint64_t m;
    return __builtin_mul_overflow(a, b, &m) ? UINT64_MAX : m;
}

/* Zero an event with plain 16-byte stores, unrolled: a memset of this size becomes `rep stos`,
 * which cost a quarter of the whole report's time, and the loop's own counter cost a fifth of a
 * decode. */
static inline void clear_event(struct rd_event *ev)
{
    typedef uint64_t v2 __attribute__((vector_size(16), aligned(8), may_alias));
    v2 *w = (v2 *)(void *)ev;
    const v2 z = { 0, 0 };
    _Static_assert(sizeof(struct rd_event) % 8 == 0, "rd_event is whole words");
#pragma GCC unroll 32
    for (size_t i = 0; i < sizeof(*ev) / sizeof(v2); i++) {
        w[i] = z;
        __asm__("" ::: "memory"); /* keeps GCC from turning the loop back into memset */
    }
    if (sizeof(*ev) % sizeof(v2))
        ((uint64_t *)(void *)ev)[sizeof(*ev) / 8 - 1] = 0;
}

/* Every event starts with its tag byte and time delta (trace-format.md §7): check the tag, add
 * the delta to d->ts. 0 with *tag_out set, or -1 with d->why set. */
static inline __attribute__((always_inline)) int event_head(struct dec *d, unsigned *tag_out)
{
    if (__builtin_expect(d->p == d->end, 0))
        return bad(d->why, "event runs past the end of the events");
    uint8_t tag = *d->p++;
    unsigned kind = tag & MTF_EV_KIND_MASK;
    unsigned flags = tag & ~MTF_EV_KIND_MASK;
    if (__builtin_expect(kind == 0 || kind >= MTF_EV_KIND_COUNT, 0))
        return bad(d->why, "unknown event kind %u", kind);
    if (kind == MTF_EV_STACK && (flags & (MTF_EVF_FAILED | MTF_EVF_NESTED)))
        return bad(d->why, "call flags 0x%x on a stack definition", flags);
    uint64_t dt;
    if (varint(d, &dt) != 0)
        return -1;
    d->ts += dt;
    *tag_out = tag;
    return 0;
}

/* The rest of an event whose head (tag `tag`, time d->ts) was read. With `fill` (a constant in
 * every caller, so each use compiles to its own specialised copy) the event is written to *ev
 * (cleared first; tid and chunk fields are the caller's) and STACK frames to `frames`
 * (MTF_MAX_FRAMES_LIMIT + 1 entries); without it the same bytes are checked and nothing is
 * stored (the validating pass, which must accept exactly what the decoding one accepts: both
 * are this function). 0, or -1 with d->why set. */
static inline __attribute__((always_inline)) int
event_body(struct dec *d, unsigned tag, struct rd_event *ev, uint64_t *frames, const int fill)
{
    unsigned kind = tag & MTF_EV_KIND_MASK;
    unsigned flags = tag & ~MTF_EV_KIND_MASK;
    /* Only the fields this kind sets are written below; the rest must read as 0. */
    if (fill)
        clear_event(ev);
    ev->kind = (uint8_t)kind;
    ev->flags = (uint8_t)flags;
    ev->cls = RD_CLASS_DEFAULT;
    ev->ts_ns = d->ts;

    uint64_t z = 0;
    if ((flags & MTF_EVF_CLASS) && kind != MTF_EV_STACK) {
        uint64_t c;
        if (varint(d, &c) != 0)
            return -1;
        if (c >= MTF_CLASS_COUNT)
            return bad(d->why, "class %" PRIu64 " on a %s event", c, reader_kind_name(kind));
        ev->cls = (uint8_t)c;
    }

    int rc = 0;
    switch (kind) {
    case MTF_EV_MALLOC:
    case MTF_EV_VALLOC:
    case MTF_EV_PVALLOC:
        rc = addr_field(d, &ev->addr) || varint(d, &ev->size) || varint(d, &ev->slack) ||
             stack_field(d, &ev->stack);
        break;
    case MTF_EV_CALLOC:
        rc = addr_field(d, &ev->addr) || varint(d, &ev->nmemb) || varint(d, &ev->elsize) ||
             varint(d, &ev->slack) || stack_field(d, &ev->stack);
        if (rc == 0)
            ev->size = mul_sat(ev->nmemb, ev->elsize);
        break;
    case MTF_EV_REALLOC:
        rc = addr_field(d, &ev->old_addr) || addr_field(d, &ev->addr) || varint(d, &ev->size) ||
             varint(d, &ev->slack) || stack_field(d, &ev->stack) || varint(d, &ev->pre_ns);
        break;
    case MTF_EV_REALLOCARRAY:
        rc = addr_field(d, &ev->old_addr) || addr_field(d, &ev->addr) || varint(d, &ev->nmemb) ||
             varint(d, &ev->elsize) || varint(d, &ev->slack) || stack_field(d, &ev->stack) ||
             varint(d, &ev->pre_ns);
        if (rc == 0)
            ev->size = mul_sat(ev->nmemb, ev->elsize);
        break;
    case MTF_EV_FREE:
        rc = addr_field(d, &ev->addr);
        break;
    case MTF_EV_POSIX_MEMALIGN:
    case MTF_EV_ALIGNED_ALLOC:
    case MTF_EV_MEMALIGN:
        rc = addr_field(d, &ev->addr) || varint(d, &ev->align) || varint(d, &ev->size) ||
             varint(d, &ev->slack) || stack_field(d, &ev->stack);
        break;
    case MTF_EV_MMAP:
    case MTF_EV_MMAP64:
        rc = addr_field(d, &ev->addr) || varint(d, &ev->size) || varint(d, &ev->prot) ||
             varint(d, &ev->mflags) || varint(d, &z) || varint(d, &ev->offset) ||
             stack_field(d, &ev->stack);
        if (rc == 0)
            ev->fd = (int64_t)unzigzag(z);
        break;
    case MTF_EV_MUNMAP:
        rc = addr_field(d, &ev->addr) || varint(d, &ev->size);
        break;
    case MTF_EV_MREMAP:
        rc = addr_field(d, &ev->old_addr) || varint(d, &ev->old_len) || varint(d, &ev->size) ||
             varint(d, &ev->mflags) || addr_field(d, &ev->addr) || stack_field(d, &ev->stack) ||
             varint(d, &ev->pre_ns);
        break;
    case MTF_EV_STACK: {
        uint64_t id, n, frame = 0;
        if (varint(d, &id) != 0 || varint(d, &n) != 0)
            return -1;
        if (id == 0 || id > UINT32_MAX)
            return bad(d->why, "stack id %" PRIu64 " out of range (1..%u)", id, UINT32_MAX);
        if (n > MTF_MAX_FRAMES_LIMIT + 1)
            return bad(d->why, "stack %" PRIu64 " has %" PRIu64 " frames (limit %u)", id, n,
                       MTF_MAX_FRAMES_LIMIT + 1);
        for (uint64_t i = 0; i < n; i++) {
            if (varint(d, &z) != 0)
                return -1;
            if (fill) {
                frame += unzigzag(z);
                frames[i] = frame;
            }
        }
        ev->stack = (uint32_t)id;
        ev->nframes = (uint32_t)n;
        ev->frames = frames;
        break;
    }
    case MTF_EV_FORK:
        rc = varint(d, &ev->child_pid);
        break;
    case MTF_EV_EXEC:
        break;
    case MTF_EV_SNAPSHOT: {
        uint64_t reason, len;
        rc = varint(d, &reason) || varint(d, &ev->rss) || varint(d, &ev->heap_total) ||
             varint(d, &ev->heap_used) || varint(d, &ev->external) || varint(d, &ev->mapped) ||
             varint(d, &ev->rss_peak) || varint(d, &len);
        if (rc)
            return -1;
        if (reason >= MTF_SNAP_COUNT)
            return bad(d->why, "snapshot reason %" PRIu64 " unknown", reason);
        if (len > MTF_LABEL_MAX || len > (uint64_t)(d->end - d->p))
            return bad(d->why, "snapshot label of %" PRIu64 " bytes", len);
        ev->snap_reason = (uint32_t)reason;
        ev->label = (const char *)d->p;
        ev->label_len = (uint32_t)len;
        d->p += len;
        break;
    }
    case MTF_EV_LIMIT: {
        uint64_t call, cls, mode;
        rc = varint(d, &call) || varint(d, &cls) || varint(d, &mode) || varint(d, &ev->limit) ||
             varint(d, &ev->live) || varint(d, &ev->size) || stack_field(d, &ev->stack);
        if (rc)
            return -1;
        if (call == 0 || call > MTF_EV_MREMAP || call == MTF_EV_FREE || call == MTF_EV_MUNMAP)
            return bad(d->why, "limit refused a call of kind %" PRIu64, call);
        if (cls > MTF_CLASS_EXTERNAL || mode > MTF_LIMIT_ENOMEM)
            return bad(d->why, "limit class %" PRIu64 " mode %" PRIu64, cls, mode);
        ev->call = (uint32_t)call;
        ev->limit_class = (uint32_t)cls;
        ev->limit_mode = (uint32_t)mode;
        break;
    }
    }
    return rc ? -1 : 0;
}

/* Decode one event into *ev (the reader's yielding path). 0, or -1 with d->why set. */
static int decode_event(struct dec *d, struct rd_event *ev, uint64_t *frames)
{
    unsigned tag = 0;
    if (event_head(d, &tag) != 0)
        return -1;
    return event_body(d, tag, ev, frames, 1);
}

/* Check one event without keeping it (the validating pass over a chunk). */
static inline __attribute__((always_inline)) int check_event(struct dec *d)
{
    struct rd_event scratch; /* written, never read: the stores fold away */
    unsigned tag = 0;
    if (event_head(d, &tag) != 0)
        return -1;
    return event_body(d, tag, &scratch, NULL, 0);
}

/* ---- records --------------------------------------------------------------------------------- */

/* The strict rule for 1.0 payloads: nothing may follow the last known field. Newer minors may
 * append, so their extra bytes are skipped. */
static int check_tail(struct reader *r, uint64_t used, const char *what)
{
    if (r->strict && used != r->pl_size)
        return fail(r, RD_ERR_CORRUPT, r->rec_off,
                    "%s record: %" PRIu64 " bytes after its last field (payload %u bytes)", what,
                    r->pl_size - used, r->pl_size);
    return 0;
}

/* Copy `n` bytes to r->text at `at` followed by a NUL; returns the copy or NULL (out of memory,
 * reported). */
static char *text_put(struct reader *r, size_t at, const uint8_t *s, size_t n)
{
    if (at + n + 1 > r->text_cap) {
        size_t cap = r->text_cap ? r->text_cap : 256;
        while (cap < at + n + 1)
            cap *= 2;
        char *t = realloc(r->text, cap);
        if (t == NULL) {
            fail(r, RD_ERR_NOMEM, r->rec_off, "out of memory copying %zu bytes", n);
            return NULL;
        }
        r->text = t;
        r->text_cap = cap;
    }
    memcpy(r->text + at, s, n);
    r->text[at + n] = '\0';
    return r->text + at;
}

static int do_process(struct reader *r, struct rd_item *item)
{
    const uint8_t *p = r->pl;
    if (r->pl_size < MTF_PROCESS_SIZE)
        return fail(r, RD_ERR_CORRUPT, r->rec_off, "PROCESS record too short (%u bytes, needs %u)",
                    r->pl_size, MTF_PROCESS_SIZE);
    uint32_t exe_len = GET32(p, struct mtf_process, exe_len);
    uint32_t argv_len = GET32(p, struct mtf_process, argv_len);
    uint32_t cwd_len = GET32(p, struct mtf_process, cwd_len);
    uint32_t argc = GET32(p, struct mtf_process, argc);
    uint64_t used = (uint64_t)MTF_PROCESS_SIZE + exe_len + argv_len + cwd_len;
    if (used > r->pl_size)
        return fail(r, RD_ERR_CORRUPT, r->rec_off,
                    "PROCESS record: strings of %" PRIu64 " bytes exceed the %u-byte payload",
                    used - MTF_PROCESS_SIZE, r->pl_size);
    if (check_tail(r, used, "PROCESS") != 0)
        return r->err;
    const uint8_t *exe = p + MTF_PROCESS_SIZE, *argv = exe + exe_len, *cwd = argv + argv_len;
    if (memchr(exe, 0, exe_len) != NULL || memchr(cwd, 0, cwd_len) != NULL)
        return fail(r, RD_ERR_CORRUPT, r->rec_off, "PROCESS record: NUL inside a path");
    uint64_t nuls = 0;
    for (uint32_t i = 0; i < argv_len; i++)
        nuls += argv[i] == 0;
    if (nuls != argc || (argv_len > 0 && argv[argv_len - 1] != 0))
        return fail(r, RD_ERR_CORRUPT, r->rec_off,
                    "PROCESS record: argc is %u but the command line holds %" PRIu64
                    " NUL-terminated arguments%s",
                    argc, nuls, argv_len > 0 && argv[argv_len - 1] != 0 ? " and a tail" : "");

    /* One text buffer holds exe, argv and cwd, each followed by a NUL. */
    size_t at_argv = (size_t)exe_len + 1, at_cwd = at_argv + argv_len + 1;
    if (text_put(r, at_cwd, cwd, cwd_len) == NULL || text_put(r, at_argv, argv, argv_len) == NULL ||
        text_put(r, 0, exe, exe_len) == NULL)
        return r->err;
    item->type = RD_ITEM_PROCESS;
    item->process.ts_ns = GET64(p, struct mtf_process, ts_ns);
    item->process.exe = r->text;
    item->process.argv = r->text + at_argv;
    item->process.argv_len = argv_len;
    item->process.argc = argc;
    item->process.cwd = r->text + at_cwd;
    return 1;
}

/* Validate every entry of a MODULES record before the first is handed out. */
static int do_modules(struct reader *r)
{
    const uint8_t *p = r->pl;
    if (r->pl_size < MTF_MODULES_SIZE)
        return fail(r, RD_ERR_CORRUPT, r->rec_off, "MODULES record too short (%u bytes, needs %u)",
                    r->pl_size, MTF_MODULES_SIZE);
    uint32_t count = GET32(p, struct mtf_modules, count);
    uint64_t pos = MTF_MODULES_SIZE;
    for (uint32_t i = 0; i < count; i++) {
        if (r->pl_size - pos < MTF_MODULE_SIZE)
            return fail(r, RD_ERR_CORRUPT, r->rec_off,
                        "MODULES record: entry %u of %u runs past the %u-byte payload", i + 1,
                        count, r->pl_size);
        const uint8_t *e = p + pos;
        uint32_t id = GET32(e, struct mtf_module, id);
        uint16_t action = GET16(e, struct mtf_module, action);
        uint16_t flags = GET16(e, struct mtf_module, flags);
        uint32_t path_len = GET32(e, struct mtf_module, path_len);
        uint16_t bid_len = GET16(e, struct mtf_module, build_id_len);
        uint16_t nseg = GET16(e, struct mtf_module, nseg);
        uint64_t var = (uint64_t)path_len + bid_len + (uint64_t)nseg * MTF_SEGMENT_SIZE;
        if (var > r->pl_size - pos - MTF_MODULE_SIZE)
            return fail(r, RD_ERR_CORRUPT, r->rec_off,
                        "MODULES record: entry %u of %u (id %u) runs past the %u-byte payload",
                        i + 1, count, id, r->pl_size);
        if (id == 0)
            return fail(r, RD_ERR_CORRUPT, r->rec_off, "MODULES record: entry %u has id 0", i + 1);
        if (action != MTF_MOD_LOAD && action != MTF_MOD_UNLOAD)
            return fail(r, RD_ERR_CORRUPT, r->rec_off,
                        "MODULES record: module %u has unknown action %u", id, action);
        if (action == MTF_MOD_UNLOAD && var != 0)
            return fail(r, RD_ERR_CORRUPT, r->rec_off,
                        "MODULES record: unload of module %u carries %" PRIu64 " bytes", id, var);
        if (r->strict && (flags & ~(unsigned)(MTF_MODF_MAIN | MTF_MODF_SHIM | MTF_MODF_VDSO)))
            return fail(r, RD_ERR_CORRUPT, r->rec_off,
                        "MODULES record: module %u has unknown flags 0x%x", id, flags);
        if (memchr(e + MTF_MODULE_SIZE, 0, path_len) != NULL)
            return fail(r, RD_ERR_CORRUPT, r->rec_off,
                        "MODULES record: NUL inside the path of module %u", id);
        pos += MTF_MODULE_SIZE + var;
    }
    if (check_tail(r, pos, "MODULES") != 0)
        return r->err;
    r->left = count;
    r->pos = MTF_MODULES_SIZE;
    r->mod_ts = GET64(p, struct mtf_modules, ts_ns);
    r->phase = PH_MODULES;
    return 0;
}

static int next_module(struct reader *r, struct rd_item *item)
{
    const uint8_t *e = r->pl + r->pos;
    struct rd_module *m = &item->module;
    uint32_t path_len = GET32(e, struct mtf_module, path_len);
    uint16_t nseg = GET16(e, struct mtf_module, nseg);
    item->type = RD_ITEM_MODULE;
    m->id = GET32(e, struct mtf_module, id);
    m->action = GET16(e, struct mtf_module, action);
    m->flags = GET16(e, struct mtf_module, flags);
    m->ts_ns = r->mod_ts;
    m->base = GET64(e, struct mtf_module, base);
    m->build_id_len = GET16(e, struct mtf_module, build_id_len);
    m->build_id = e + MTF_MODULE_SIZE + path_len;
    m->nseg = nseg;
    m->path = text_put(r, 0, e + MTF_MODULE_SIZE, path_len);
    if (m->path == NULL)
        return r->err;
    if (nseg > r->segs_cap) {
        struct mtf_segment *s = realloc(r->segs, nseg * sizeof(*s));
        if (s == NULL)
            return fail(r, RD_ERR_NOMEM, r->rec_off, "out of memory for %u segments", nseg);
        r->segs = s;
        r->segs_cap = nseg;
    }
    const uint8_t *sp = m->build_id + m->build_id_len;
    for (uint16_t i = 0; i < nseg; i++, sp += MTF_SEGMENT_SIZE) {
        r->segs[i].vaddr = GET64(sp, struct mtf_segment, vaddr);
        r->segs[i].memsz = GET64(sp, struct mtf_segment, memsz);
        r->segs[i].pflags = GET32(sp, struct mtf_segment, pflags);
        r->segs[i].reserved = GET32(sp, struct mtf_segment, reserved);
    }
    m->segs = r->segs;
    r->pos = (size_t)(sp - r->pl);
    r->left--;
    return 1;
}

/* Decompress the zstd frame of a compressed chunk (trace-format.md §7.5), `n` bytes at `src`,
 * into `out` (events_size bytes). The payload must be exactly one frame that declares its content
 * size and decompresses to events_size bytes. 0, or -1 with the reason in why. */
static int inflate_events(ZSTD_DCtx *z, const uint8_t *src, size_t n, uint8_t *out,
                          uint32_t events_size, char *why, size_t why_cap)
{
    unsigned long long content = ZSTD_getFrameContentSize(src, n);
    if (content == ZSTD_CONTENTSIZE_ERROR) {
        snprintf(why, why_cap, "the %zu compressed bytes are not a zstd frame", n);
        return -1;
    }
    if (content == ZSTD_CONTENTSIZE_UNKNOWN) {
        snprintf(why, why_cap, "the zstd frame does not give its content size");
        return -1;
    }
    if (content != events_size) {
        snprintf(why, why_cap, "the zstd frame holds %llu bytes, events_size is %u", content,
                 events_size);
        return -1;
    }
    size_t frame = ZSTD_findFrameCompressedSize(src, n);
    if (ZSTD_isError(frame) || frame != n) {
        snprintf(why, why_cap, "the zstd frame %s the %zu compressed bytes",
                 ZSTD_isError(frame) ? "is cut short in" : "does not fill", n);
        return -1;
    }
    size_t k = ZSTD_decompressDCtx(z, out, events_size, src, n);
    if (ZSTD_isError(k) || k != events_size) {
        snprintf(why, why_cap, "zstd: %s",
                 ZSTD_isError(k) ? ZSTD_getErrorName(k) : "short decompressed content");
        return -1;
    }
    return 0;
}

/* Decode a whole chunk once to validate it (event bounds, kinds, counts, first/last times), then
 * rewind the decoder so the events can be handed out one at a time. A compressed chunk is
 * decompressed first into r->zbuf, which then holds its events until the next record. */
static int do_events(struct reader *r)
{
    const uint8_t *p = r->pl;
    if (r->pl_size < MTF_CHUNK_SIZE)
        return fail(r, RD_ERR_CORRUPT, r->rec_off, "EVENTS record too short (%u bytes, needs %u)",
                    r->pl_size, MTF_CHUNK_SIZE);
    uint32_t serial = GET32(p, struct mtf_chunk, thread_serial);
    uint32_t nevents = GET32(p, struct mtf_chunk, nevents);
    uint32_t flags = GET32(p, struct mtf_chunk, flags);
    uint32_t events_size = GET32(p, struct mtf_chunk, events_size);
    uint64_t first_ts = GET64(p, struct mtf_chunk, first_ts_ns);
    uint64_t last_ts = GET64(p, struct mtf_chunk, last_ts_ns);
    uint32_t room = r->pl_size - MTF_CHUNK_SIZE;
    const uint8_t *events = p + MTF_CHUNK_SIZE;
    int packed = (flags & MTF_CHUNKF_ZSTD) != 0;
    if (packed) {
        if (events_size > MTF_RECORD_MAX_SIZE - MTF_CHUNK_SIZE)
            return fail(r, RD_ERR_CORRUPT, r->rec_off,
                        "EVENTS record: compressed events_size %u exceeds the %u-byte limit",
                        events_size, MTF_RECORD_MAX_SIZE - MTF_CHUNK_SIZE);
        if (r->zctx == NULL && (r->zctx = ZSTD_createDCtx()) == NULL)
            return fail(r, RD_ERR_NOMEM, r->rec_off, "out of memory for a zstd context");
        if (r->zbuf_cap < events_size) {
            uint8_t *b = realloc(r->zbuf, events_size);
            if (b == NULL)
                return fail(r, RD_ERR_NOMEM, r->rec_off,
                            "out of memory for a %u-byte decompressed chunk", events_size);
            r->zbuf = b;
            r->zbuf_cap = events_size;
        }
        char why[160];
        if (inflate_events(r->zctx, events, room, r->zbuf, events_size, why, sizeof why) != 0)
            return fail(r, RD_ERR_CORRUPT, r->rec_off, "EVENTS record (tid %u): %s",
                        GET32(p, struct mtf_chunk, tid), why);
        events = r->zbuf;
    } else {
        if (events_size > room)
            return fail(r, RD_ERR_CORRUPT, r->rec_off,
                        "EVENTS record: events_size %u exceeds the %u bytes after the chunk header",
                        events_size, room);
        if (check_tail(r, (uint64_t)MTF_CHUNK_SIZE + events_size, "EVENTS") != 0)
            return r->err;
    }
    if (serial == 0)
        return fail(r, RD_ERR_CORRUPT, r->rec_off, "EVENTS record: thread_serial is 0");
    const uint32_t known = MTF_CHUNKF_THREAD_END | MTF_CHUNKF_STOLEN | MTF_CHUNKF_WRITETHROUGH |
                           MTF_CHUNKF_PREINIT | MTF_CHUNKF_ZSTD;
    if (r->strict && (flags & ~known))
        return fail(r, RD_ERR_CORRUPT, r->rec_off, "EVENTS record: unknown chunk flags 0x%x",
                    flags);

    char why[DEC_WHY];
    struct dec start = { .why = why,
                         .p = events,
                         .end = events + events_size,
                         .ts = GET64(p, struct mtf_chunk, base_ts_ns),
                         .addr = GET64(p, struct mtf_chunk, base_addr),
                         .stack = GET32(p, struct mtf_chunk, base_stack) };
    struct dec d = start;
    for (uint32_t i = 0; i < nevents; i++) {
        const uint8_t *at = d.p;
        if (check_event(&d) != 0) {
            if (packed)
                return fail(r, RD_ERR_CORRUPT, r->rec_off,
                            "EVENTS record (tid %u): event %u of %u at byte %zu of its "
                            "decompressed events: %s",
                            GET32(p, struct mtf_chunk, tid), i + 1, nevents, (size_t)(at - events),
                            d.why);
            return fail(r, RD_ERR_CORRUPT, r->rec_off,
                        "EVENTS record (tid %u): event %u of %u at offset %" PRIu64 ": %s",
                        GET32(p, struct mtf_chunk, tid), i + 1, nevents,
                        r->rec_off + MTF_RECORD_HEADER_SIZE + (uint64_t)(at - p), d.why);
        }
        if (i == 0 && d.ts != first_ts)
            return fail(r, RD_ERR_CORRUPT, r->rec_off,
                        "EVENTS record: first event at %" PRIu64 " ns, header says %" PRIu64, d.ts,
                        first_ts);
    }
    if (d.p != d.end)
        return fail(r, RD_ERR_CORRUPT, r->rec_off,
                    "EVENTS record: %zu bytes left after its %u events (events_size %u)",
                    (size_t)(d.end - d.p), nevents, events_size);
    if (nevents > 0 && d.ts != last_ts)
        return fail(r, RD_ERR_CORRUPT, r->rec_off,
                    "EVENTS record: last event at %" PRIu64 " ns, header says %" PRIu64, d.ts,
                    last_ts);
    r->dec = start;
    r->dec.why = r->dec_why;
    r->tid = GET32(p, struct mtf_chunk, tid);
    r->serial = serial;
    r->left = nevents;
    r->phase = PH_EVENTS;
    r->st.chunks++;
    return 0;
}

static int next_event(struct reader *r, struct rd_item *item)
{
    struct rd_event *ev = &item->ev;
    item->type = RD_ITEM_EVENT;
    if (decode_event(&r->dec, ev, r->frames) != 0) /* validated: cannot happen */
        return fail(r, RD_ERR_CORRUPT, r->rec_off, "EVENTS record: %s", r->dec.why);
    ev->tid = r->tid;
    ev->thread_serial = r->serial;
    ev->chunk_offset = r->rec_off;
    r->st.events++;
    r->st.kind_counts[ev->kind]++;
    r->left--;
    return 1;
}

/* An END says the process ended with the trace intact (trace-format.md §8). Its totals are not
 * checked against the chunks: events of threads still running during exit may be counted and
 * written on either side of it. */
static int do_end(struct reader *r, struct rd_item *item)
{
    const uint8_t *p = r->pl;
    if (r->pl_size < MTF_END_SIZE)
        return fail(r, RD_ERR_CORRUPT, r->rec_off, "END record too short (%u bytes, needs %u)",
                    r->pl_size, MTF_END_SIZE);
    if (check_tail(r, MTF_END_SIZE, "END") != 0)
        return r->err;
    struct mtf_end *e = &item->end;
    e->ts_ns = GET64(p, struct mtf_end, ts_ns);
    e->reason = GET32(p, struct mtf_end, reason);
    e->status = (int32_t)GET32(p, struct mtf_end, status);
    e->threads = GET64(p, struct mtf_end, threads);
    e->events = GET64(p, struct mtf_end, events);
    e->dropped = GET64(p, struct mtf_end, dropped);
    e->unknown_frees = GET64(p, struct mtf_end, unknown_frees);
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++)
        e->counts[k] = le64(p + offsetof(struct mtf_end, counts) + 8 * k);
    if (e->reason < MTF_END_EXIT || e->reason > MTF_END_SIGNAL)
        return fail(r, RD_ERR_CORRUPT, r->rec_off, "END record: unknown reason %u", e->reason);
    item->type = RD_ITEM_END;
    r->st.complete = 1;
    r->end_reason = e->reason;
    r->end_dropped = e->dropped;
    r->st.dropped = sat_add(r->end_dropped, r->loss_dropped);
    return 1;
}

static int do_loss(struct reader *r, struct rd_item *item)
{
    const uint8_t *p = r->pl;
    if (r->pl_size < MTF_LOSS_SIZE)
        return fail(r, RD_ERR_CORRUPT, r->rec_off, "LOSS record too short (%u bytes, needs %u)",
                    r->pl_size, MTF_LOSS_SIZE);
    if (check_tail(r, MTF_LOSS_SIZE, "LOSS") != 0)
        return r->err;
    struct mtf_loss *l = &item->loss;
    l->ts_ns = GET64(p, struct mtf_loss, ts_ns);
    l->reason = GET32(p, struct mtf_loss, reason);
    l->tid = GET32(p, struct mtf_loss, tid);
    l->count = GET64(p, struct mtf_loss, count);
    if (l->reason != MTF_LOSS_WRITER && l->reason != MTF_LOSS_THREAD)
        return fail(r, RD_ERR_CORRUPT, r->rec_off, "LOSS record: unknown reason %u", l->reason);
    item->type = RD_ITEM_LOSS;
    r->loss_dropped = sat_add(r->loss_dropped, l->count);
    r->st.dropped = sat_add(r->end_dropped, r->loss_dropped);
    return 1;
}

static int do_reach(struct reader *r, struct rd_item *item)
{
    const uint8_t *p = r->pl;
    if (r->pl_size < MTF_REACH_SIZE)
        return fail(r, RD_ERR_CORRUPT, r->rec_off, "REACH record too short (%u bytes, needs %u)",
                    r->pl_size, MTF_REACH_SIZE);
    struct mtf_reach *h = &item->reach.h;
    h->ts_ns = GET64(p, struct mtf_reach, ts_ns);
    h->live_blocks = GET64(p, struct mtf_reach, live_blocks);
    h->live_bytes = GET64(p, struct mtf_reach, live_bytes);
    h->root_bytes = GET64(p, struct mtf_reach, root_bytes);
    h->flags = GET32(p, struct mtf_reach, flags);
    h->count = GET32(p, struct mtf_reach, count);
    uint64_t need = MTF_REACH_SIZE + (uint64_t)h->count * MTF_REACH_ENTRY_SIZE;
    if (need > r->pl_size)
        return fail(r, RD_ERR_CORRUPT, r->rec_off,
                    "REACH record holds %u bytes, too few for its %u entries", r->pl_size,
                    h->count);
    if (check_tail(r, need, "REACH") != 0)
        return r->err;
    if (h->count > r->reach_cap) {
        struct mtf_reach_entry *e = realloc(r->reach, h->count * sizeof(*e));
        if (e == NULL)
            return fail(r, RD_ERR_NOMEM, r->rec_off, "out of memory for %u REACH entries",
                        h->count);
        r->reach = e;
        r->reach_cap = h->count;
    }
    for (uint32_t i = 0; i < h->count; i++) {
        const uint8_t *q = p + MTF_REACH_SIZE + (size_t)i * MTF_REACH_ENTRY_SIZE;
        r->reach[i].addr = le64(q);
        r->reach[i].state = le32(q + 8);
        r->reach[i].reserved = 0;
        if (r->reach[i].state != MTF_REACH_DIRECT && r->reach[i].state != MTF_REACH_INDIRECT)
            return fail(r, RD_ERR_CORRUPT, r->rec_off, "REACH entry %u: unknown state %u", i,
                        r->reach[i].state);
    }
    item->reach.entries = r->reach;
    item->type = RD_ITEM_REACH;
    return 1;
}

/* TOTALS (trace-format.md §9.2): the exact figures of a sampled trace. */
static int do_totals(struct reader *r, struct rd_item *item)
{
    const uint8_t *p = r->pl;
    if (r->pl_size < MTF_TOTALS_SIZE)
        return fail(r, RD_ERR_CORRUPT, r->rec_off, "TOTALS record of %u bytes, expected %u",
                    r->pl_size, MTF_TOTALS_SIZE);
    if (check_tail(r, MTF_TOTALS_SIZE, "TOTALS") != 0)
        return r->err;
    struct mtf_totals *t = &item->totals;
    t->ts_ns = GET64(p, struct mtf_totals, ts_ns);
    t->sample_bytes = GET64(p, struct mtf_totals, sample_bytes);
    t->live_blocks = (int64_t)GET64(p, struct mtf_totals, live_blocks);
    t->live_usable = (int64_t)GET64(p, struct mtf_totals, live_usable);
    t->alloc_bytes = GET64(p, struct mtf_totals, alloc_bytes);
    t->lost_blocks = GET64(p, struct mtf_totals, lost_blocks);
    t->lost_bytes = GET64(p, struct mtf_totals, lost_bytes);
    t->unsampleable = GET64(p, struct mtf_totals, unsampleable);
    t->flags = GET32(p, struct mtf_totals, flags);
    t->reserved = 0;
    for (size_t i = 0; i < MTF_EV_KIND_COUNT; i++)
        t->calls[i] = le64(p + offsetof(struct mtf_totals, calls) + 8 * i);
    item->type = RD_ITEM_TOTALS;
    return 1;
}

/* A record header of zeros where one should start: the writer preallocated or mapped the file
 * and stopped (trace-format.md §11 treats this like a cut). If the rest of the input is zeros
 * too, it is a truncation; otherwise the file is corrupt at `off`. */
static int zero_tail(struct reader *r, uint64_t off, const uint8_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (h[i] != 0)
            return 0;
    for (;;) {
        const uint8_t *p;
        size_t got;
        if (fetch_at(r, off, STREAM_CHUNK, &p, &got) != 0)
            return r->err;
        for (size_t i = 0; i < got; i++)
            if (p[i] != 0)
                return 0;
        if (got < STREAM_CHUNK)
            break;
    }
    return fail(r, RD_ERR_TRUNC, off,
                "file ends in %" PRIu64 " zero bytes where a record should start: %" PRIu64
                " bytes lost",
                r->off - off, r->off - off);
}

/* Read, check and dispatch one record. Returns 1 with *item filled, 0 at a clean end of file,
 * 2 when the record produced no item yet (MODULES, EVENTS, unknown type), or RD_ERR_*. */
static int next_record(struct reader *r, struct rd_item *item)
{
    uint64_t off = r->off;
    const uint8_t *h;
    size_t got;
    if (fetch_at(r, off, MTF_RECORD_HEADER_SIZE, &h, &got) != 0)
        return r->err;
    if (got == 0) {
        r->phase = PH_EOF;
        if (r->off > r->st.file_size)
            r->st.file_size = r->off;
        return 0;
    }
    if (got < MTF_RECORD_HEADER_SIZE) {
        int rc = zero_tail(r, off, h, got);
        return rc ? rc : fail_trunc(r, off, "a record header", MTF_RECORD_HEADER_SIZE, got);
    }
    uint32_t magic = GET32(h, struct mtf_record_header, magic);
    uint16_t type = GET16(h, struct mtf_record_header, type);
    uint16_t flags = GET16(h, struct mtf_record_header, flags);
    uint32_t size = GET32(h, struct mtf_record_header, payload_size);
    uint32_t crc = GET32(h, struct mtf_record_header, crc32c);
    if (magic != MTF_RECORD_MAGIC) {
        int rc = zero_tail(r, off, h, got);
        return rc ? rc : fail(r, RD_ERR_CORRUPT, off, "bad record magic 0x%08x", magic);
    }
    if (size > MTF_RECORD_MAX_SIZE)
        return fail(r, RD_ERR_CORRUPT, off,
                    "record payload of %u bytes exceeds the %u-byte limit (type %u)", size,
                    MTF_RECORD_MAX_SIZE, type);
    /* The stream buffer is about to be refilled with the payload: checksum the header first. */
    uint32_t c = mt_crc32c(0, h, MTF_RECORD_CRC_SPAN);
    const uint8_t *p;
    if (fetch_at(r, off, size, &p, &got) != 0)
        return r->err;
    if (got < size)
        return fail_trunc(r, off, "a record", (uint64_t)MTF_RECORD_HEADER_SIZE + size,
                          MTF_RECORD_HEADER_SIZE + (uint64_t)got);
    if (mt_crc32c(c, p, size) != crc)
        return fail(r, RD_ERR_CORRUPT, off, "record crc mismatch (type %u, %u bytes)", type, size);
    if (r->strict && flags != MTF_RECF_NONE)
        return fail(r, RD_ERR_CORRUPT, off, "record flags 0x%x (none are defined in %u.%u)", flags,
                    MTF_VERSION_MAJOR, MTF_VERSION_MINOR);

    r->rec_off = off;
    r->pl = p;
    r->pl_size = size;
    r->rec_type = type;
    int rc;
    switch (type) {
    case MTF_REC_PROCESS:
        rc = do_process(r, item);
        break;
    case MTF_REC_MODULES:
        rc = do_modules(r);
        break;
    case MTF_REC_EVENTS:
        rc = do_events(r);
        break;
    case MTF_REC_END:
        rc = do_end(r, item);
        break;
    case MTF_REC_LOSS:
        rc = do_loss(r, item);
        break;
    case MTF_REC_REACH:
        rc = do_reach(r, item);
        break;
    case MTF_REC_TOTALS:
        rc = do_totals(r, item);
        break;
    default: /* a type from a newer writer: skipped by its length (trace-format.md §4) */
        rc = 0;
        break;
    }
    if (rc < 0)
        return rc;
    /* A successful execve replaces the image at once, so nothing follows its END; a record after
     * it means the exec failed and tracing went on, and only a later END completes the trace
     * (§8). Records after an exit END are late events and leave the trace complete. */
    if (type != MTF_REC_END && r->end_reason == MTF_END_EXEC)
        r->st.complete = 0;
    r->st.records++;
    r->st.valid_bytes = r->off;
    return rc == 1 ? 1 : 2;
}

int reader_next(struct reader *r, struct rd_item *item)
{
    for (;;) {
        if (r->err)
            return r->err;
        switch (r->phase) {
        case PH_MODULES:
            if (r->left > 0)
                return next_module(r, item);
            r->phase = PH_RECORDS;
            break;
        case PH_EVENTS:
            if (r->left > 0)
                return next_event(r, item);
            r->phase = PH_RECORDS;
            break;
        case PH_EOF:
            return 0;
        case PH_RECORDS: {
            int rc = next_record(r, item);
            if (rc != 2)
                return rc;
            break;
        }
        }
    }
}

/* ---- random access (report/order.c) ------------------------------------------------------- */

int reader_next_record(struct reader *r, struct rd_record *rec)
{
    struct rd_item item;
    if (r->err)
        return r->err;
    if (r->phase == PH_EOF)
        return 0;
    r->phase = PH_RECORDS; /* whatever reader_next() left of a record is skipped */
    r->left = 0;
    int rc = next_record(r, &item);
    if (rc <= 0)
        return rc;
    memset(rec, 0, sizeof(*rec));
    rec->offset = r->rec_off;
    rec->type = r->rec_type;
    rec->payload_size = r->pl_size;
    /* One item made at once, or a phase holding `left` more, or (unknown type) none. */
    rec->items = rc == 1 ? 1 : r->phase != PH_RECORDS ? r->left : 0;
    /* Every non-EVENTS record of the format starts with its ts_ns. */
    if (r->pl_size >= sizeof(uint64_t))
        rec->ts_ns = le64(r->pl);
    if (r->rec_type == MTF_REC_EVENTS) {
        const uint8_t *p = r->pl;
        struct mtf_chunk *c = &rec->chunk;
        c->tid = GET32(p, struct mtf_chunk, tid);
        c->thread_serial = GET32(p, struct mtf_chunk, thread_serial);
        c->epoch = GET32(p, struct mtf_chunk, epoch);
        c->offset = GET32(p, struct mtf_chunk, offset);
        c->base_ts_ns = GET64(p, struct mtf_chunk, base_ts_ns);
        c->base_addr = GET64(p, struct mtf_chunk, base_addr);
        c->first_ts_ns = GET64(p, struct mtf_chunk, first_ts_ns);
        c->last_ts_ns = GET64(p, struct mtf_chunk, last_ts_ns);
        c->base_stack = GET32(p, struct mtf_chunk, base_stack);
        c->nevents = GET32(p, struct mtf_chunk, nevents);
        c->flags = GET32(p, struct mtf_chunk, flags);
        c->events_size = GET32(p, struct mtf_chunk, events_size);
        rec->ts_ns = c->first_ts_ns;
    }
    r->phase = PH_RECORDS;
    r->left = 0;
    return 1;
}

int reader_seek(struct reader *r, uint64_t offset)
{
    if (r->err)
        return r->err;
    if (r->f != NULL) {
        if (fseeko(r->f, (off_t)offset, SEEK_SET) != 0)
            return fail(r, RD_ERR_IO, offset, "seek failed: %s", strerror(errno));
    } else {
        if (offset > r->mem_size)
            return fail(r, RD_ERR_IO, offset, "seek past the end of the %zu-byte input",
                        r->mem_size);
        r->mem_pos = (size_t)offset;
    }
    r->off = offset;
    r->phase = PH_RECORDS;
    r->left = 0;
    return 0;
}

/* Read the head (tag and time) of the cursor's next event, if any: after this the merge knows
 * the event's time and §10 position without decoding it again. */
static void cursor_prime(struct rd_cursor *c)
{
    c->at = c->p;
    if (c->left == 0)
        return;
    char why[DEC_WHY];
    struct dec d = { .p = c->p, .end = c->end, .ts = c->ts, .why = why };
    unsigned tag = 0;
    c->ok = event_head(&d, &tag) == 0;
    c->tag = tag;
    c->p = d.p;
    c->ts = d.ts;
}

void reader_cursor_init(struct rd_cursor *c, const void *payload)
{
    const uint8_t *p = payload;
    c->start = c->p = p + MTF_CHUNK_SIZE;
    c->end = c->p + GET32(p, struct mtf_chunk, events_size);
    c->ts = GET64(p, struct mtf_chunk, base_ts_ns);
    c->addr = GET64(p, struct mtf_chunk, base_addr);
    c->stack = GET32(p, struct mtf_chunk, base_stack);
    c->tid = GET32(p, struct mtf_chunk, tid);
    c->serial = GET32(p, struct mtf_chunk, thread_serial);
    c->offset = GET32(p, struct mtf_chunk, offset);
    c->left = GET32(p, struct mtf_chunk, nevents);
    c->ok = 0;
    cursor_prime(c);
}

struct rd_inflate {
    ZSTD_DCtx *z;
};

uint32_t reader_chunk_plain_size(const void *payload, uint32_t payload_size)
{
    const uint8_t *p = payload;
    if (!(GET32(p, struct mtf_chunk, flags) & MTF_CHUNKF_ZSTD))
        return payload_size;
    return MTF_CHUNK_SIZE + GET32(p, struct mtf_chunk, events_size);
}

int reader_chunk_inflate(struct rd_inflate **ctx, const void *payload, uint32_t payload_size,
                         void *out)
{
    const uint8_t *p = payload;
    if (*ctx == NULL) {
        struct rd_inflate *c = calloc(1, sizeof *c);
        if (c == NULL || (c->z = ZSTD_createDCtx()) == NULL) {
            free(c);
            return -1;
        }
        *ctx = c;
    }
    char why[160];
    memcpy(out, p, MTF_CHUNK_SIZE);
    return inflate_events((*ctx)->z, p + MTF_CHUNK_SIZE, payload_size - MTF_CHUNK_SIZE,
                          (uint8_t *)out + MTF_CHUNK_SIZE, GET32(p, struct mtf_chunk, events_size),
                          why, sizeof why);
}

void reader_inflate_free(struct rd_inflate *ctx)
{
    if (ctx == NULL)
        return;
    ZSTD_freeDCtx(ctx->z);
    free(ctx);
}

int reader_cursor_next(struct rd_cursor *c, struct rd_event *ev, uint64_t *frames)
{
    if (c->left == 0 || !c->ok)
        return -1;
    char why[DEC_WHY];
    struct dec d = {
        .p = c->p, .end = c->end, .ts = c->ts, .addr = c->addr, .stack = c->stack, .why = why
    };
    if (event_body(&d, c->tag, ev, frames, 1) != 0)
        return -1;
    ev->tid = c->tid;
    ev->thread_serial = c->serial;
    c->left--;
    c->at = d.p;
    if (c->left > 0) {
        unsigned tag = 0;
        c->ok = event_head(&d, &tag) == 0;
        c->tag = tag;
    }
    c->p = d.p;
    c->ts = d.ts;
    c->addr = d.addr;
    c->stack = d.stack;
    return 0;
}

/* ---- names ----------------------------------------------------------------------------------- */

const char *reader_kind_name(unsigned kind)
{
    const char *n = mt_kind_name(kind);
    return n != NULL ? n : "unknown";
}

const char *reader_origin_name(unsigned origin)
{
    switch (origin) {
    case MTF_ORIGIN_START:
        return "start";
    case MTF_ORIGIN_FORK:
        return "fork";
    case MTF_ORIGIN_EXEC:
        return "exec";
    }
    return "unknown";
}

const char *reader_end_reason_name(unsigned reason)
{
    switch (reason) {
    case MTF_END_EXIT:
        return "exit";
    case MTF_END_EXEC:
        return "exec";
    case MTF_END_SIGNAL:
        return "signal";
    }
    return "unknown";
}

const char *reader_loss_reason_name(unsigned reason)
{
    switch (reason) {
    case MTF_LOSS_WRITER:
        return "writer";
    case MTF_LOSS_THREAD:
        return "thread";
    }
    return "unknown";
}

const char *reader_class_name(unsigned cls)
{
    static const char *const names[MTF_CLASS_COUNT] = { "heap", "external", "mapped" };
    return cls < MTF_CLASS_COUNT ? names[cls] : "unknown";
}

const char *reader_snap_reason_name(unsigned reason)
{
    static const char *const names[MTF_SNAP_COUNT] = { "start", "interval", "mark", "exit",
                                                       "limit" };
    return reason < MTF_SNAP_COUNT ? names[reason] : "unknown";
}
