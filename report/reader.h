/* Trace reader: validates and decodes a memtrace trace (docs/trace-format.md) into items, one
 * record or event at a time, streaming: memory stays bounded by the largest record, never by the
 * length of the file. Never prints; every error is a negative code plus a message carrying the
 * byte offset, kept in the reader for the caller to show.
 */
#ifndef MEMTRACE_REPORT_READER_H
#define MEMTRACE_REPORT_READER_H

#include <stdint.h>
#include <stdio.h>

#include "memtrace/format.h"

/* Error codes (negative return values). */
#define RD_ERR_IO      (-1) /* open/read failed (errno text in the message) */
#define RD_ERR_FORMAT  (-2) /* not a memtrace trace, or an unsupported major version */
#define RD_ERR_CORRUPT (-3) /* a record failed validation (bad magic, size, CRC, event bytes) */
#define RD_ERR_TRUNC   (-4) /* the file ends inside a record */
#define RD_ERR_NOMEM   (-5)

/* What reader_next() produced. */
enum rd_item_type {
    RD_ITEM_EVENT = 1, /* item.ev: one decoded event (any MTF_EV_* kind, STACK included) */
    RD_ITEM_PROCESS,   /* item.process */
    RD_ITEM_MODULE,    /* item.module: one entry of a MODULES record */
    RD_ITEM_END,       /* item.end: the END record */
    RD_ITEM_LOSS,      /* item.loss */
    RD_ITEM_REACH,     /* item.reach: one REACH record of the exit-time leak scan */
    RD_ITEM_TOTALS,    /* item.totals: exact totals of a sampled trace (2.1) */
};

struct rd_event {
    uint8_t kind;           /* MTF_EV_* */
    uint8_t flags;          /* MTF_EVF_* */
    uint32_t tid;           /* from the chunk */
    uint32_t thread_serial; /* from the chunk */
    uint64_t ts_ns;         /* CLOCK_MONOTONIC */
    uint64_t addr;          /* ptr / new address (MALLOC..PVALLOC, FREE, MMAP*, MUNMAP, REALLOC*
                               new, MREMAP new) */
    uint64_t old_addr;      /* REALLOC*, MREMAP */
    uint64_t size;          /* requested bytes: size, nmemb*elsize (saturating), mmap/munmap
                               length, MREMAP new_len */
    uint64_t nmemb, elsize; /* CALLOC, REALLOCARRAY */
    uint64_t align;         /* POSIX_MEMALIGN, ALIGNED_ALLOC, MEMALIGN */
    uint64_t old_len;       /* MREMAP */
    uint64_t prot, mflags;  /* MMAP*: prot, flags; MREMAP: flags in mflags */
    int64_t fd;             /* MMAP* */
    uint64_t offset;        /* MMAP* */
    uint32_t stack;         /* stack id (0: none); for STACK, the id being defined */
    uint32_t nframes;       /* STACK */
    const uint64_t *frames; /* STACK: nframes return addresses, valid until the next call */
    uint64_t child_pid;     /* FORK */
    uint64_t pre_ns;        /* REALLOC*, MREMAP: the old block was released at ts_ns - pre_ns */
    uint8_t cls;            /* explicit class (flags has MTF_EVF_CLASS) or RD_CLASS_DEFAULT */
    uint64_t slack;         /* heap kinds: usable bytes beyond the request */
    /* SNAPSHOT */
    uint32_t snap_reason;                                            /* MTF_SNAP_* */
    uint64_t rss, heap_total, heap_used, external, mapped, rss_peak; /* bytes */
    const char *label; /* label_len bytes, not NUL-terminated, valid until the next call */
    uint32_t label_len;
    /* LIMIT (the request is in size, the stack in stack) */
    uint32_t call;         /* MTF_EV_* kind of the refused call */
    uint32_t limit_class;  /* MTF_CLASS_HEAP or MTF_CLASS_EXTERNAL */
    uint32_t limit_mode;   /* MTF_LIMIT_* */
    uint64_t limit, live;  /* the cap and the class's live bytes before the call */
    uint64_t chunk_offset; /* byte offset in the file of the EVENTS record holding this event */
};

#define RD_CLASS_DEFAULT 0xff /* rd_event.cls: the kind's default class (trace-format.md §7.2) */

struct rd_module {
    uint32_t id, action, flags; /* MTF_MOD_*, MTF_MODF_* */
    uint64_t ts_ns;
    uint64_t base;
    const char *path; /* NUL-terminated copy, valid until the next call */
    const uint8_t *build_id;
    uint32_t build_id_len;
    uint32_t nseg;
    const struct mtf_segment *segs; /* aligned copy, valid until the next call */
};

struct rd_process {
    uint64_t ts_ns;
    const char *exe;  /* NUL-terminated */
    const char *argv; /* arguments separated by NUL, argv_len bytes */
    uint32_t argv_len, argc;
    const char *cwd; /* NUL-terminated */
};

struct rd_reach {
    struct mtf_reach h;                    /* the record's fixed part */
    const struct mtf_reach_entry *entries; /* h.count entries, aligned copy, valid until the
                                              next call */
};

struct rd_item {
    enum rd_item_type type;
    union {
        struct rd_event ev;
        struct rd_module module;
        struct rd_process process;
        struct mtf_end end;
        struct mtf_loss loss;
        struct rd_reach reach;
        struct mtf_totals totals;
    };
};

/* Where reading stopped and what could not be used. Filled as reading goes on. */
struct rd_status {
    struct mtf_file_header header; /* valid after reader_open() succeeded */
    uint64_t file_size;            /* bytes, when known (regular file) */
    uint64_t valid_bytes;          /* bytes up to the end of the last good record */
    uint64_t records;              /* good records */
    uint64_t events;               /* decoded events (STACK included) */
    uint64_t chunks;               /* good EVENTS records */
    int complete;                  /* an END record was read (and no failed exec followed) */
    int truncated;                 /* the file ended inside a record */
    uint64_t error_offset;         /* offset of the record that failed, if any */
    uint64_t lost_bytes;           /* bytes after valid_bytes that could not be used */
    uint64_t kind_counts[MTF_EV_KIND_COUNT]; /* decoded events per MTF_EV_* kind */
    uint64_t dropped; /* calls not recorded: the last END's dropped (a running total) plus
                         every LOSS count, saturating */
};

struct reader;

/* Open `path` ("-" is stdin) and validate its file header. Returns 0 and sets *out, or a
 * negative RD_ERR_* with *out set to a reader whose reader_error() explains (so the caller can
 * print it), or NULL for RD_ERR_NOMEM. The caller closes the reader in every case. */
int reader_open(struct reader **out, const char *path);

/* Decode a trace held in memory (tests, fuzzing). `data` must outlive the reader. */
int reader_open_mem(struct reader **out, const void *data, size_t size);

/* As reader_open() on an already open stream (a pipe, fmemopen in tests); `name` is shown in
 * messages. The reader reads `f` from its current position and never closes it. */
int reader_open_stream(struct reader **out, FILE *f, const char *name);

/* Produce the next item. Returns 1 with *item filled, 0 at a clean end of file, or a negative
 * RD_ERR_*. After an error the reader is finished: later calls return the same error. Pointers
 * inside *item are valid until the next call.
 * A record yields items only once all of it validated: a bad record yields none. Items come in
 * file order (records in the order written, a chunk's events in its order); merging threads by
 * time is the caller's business (trace-format.md §10).
 * End of input: at a record boundary it is a clean end (0) whether or not an END record was
 * read; status.complete tells which (0: the process was killed or tracing stopped, and events
 * still buffered in its threads are missing). Inside a record, or in a zero-filled tail where a
 * record should start (a preallocated file), it is RD_ERR_TRUNC with status.truncated set.
 * Records may follow an END (trace-format.md §8): after an exit or signal END they are late
 * events and the trace stays complete; after an exec END they mean the exec failed, and
 * status.complete is 0 again until the next END. END totals are not checked against the
 * chunks (late events may fall on either side of it). */
int reader_next(struct reader *r, struct rd_item *item);

/* The current status; valid at any time. */
const struct rd_status *reader_status(const struct reader *r);

/* One-line description of the last error, including the byte offset, or "" when none. */
const char *reader_error(const struct reader *r);

void reader_close(struct reader *r);

/* The name shown in messages: the path, "<stdin>" for "-", "<memory>" for reader_open_mem. */
const char *reader_name(const struct reader *r);

/* Name of an event kind as the hooked function is called ("malloc", "mmap64", "stack"), or
 * "unknown". */
const char *reader_kind_name(unsigned kind);

/* Names of MTF_ORIGIN_* ("start", "fork", "exec"), MTF_END_* ("exit", "exec", "signal") and
 * MTF_LOSS_* ("writer", "thread"); "unknown" for other values. */
const char *reader_origin_name(unsigned origin);
const char *reader_end_reason_name(unsigned reason);
const char *reader_loss_reason_name(unsigned reason);

/* Names of MTF_CLASS_* ("heap", "external", "mapped") and MTF_SNAP_* ("start", "interval",
 * "mark", "exit", "limit"); "unknown" for other values. */
const char *reader_class_name(unsigned cls);
const char *reader_snap_reason_name(unsigned reason);

/* ---- Random access (report/order.c: time-ordered reading) ------------------------------------ */

/* One record as reader_next_record() saw it. */
struct rd_record {
    uint64_t offset;        /* file offset of the record header */
    uint32_t type;          /* MTF_REC_*, or an unknown type (which yields no items) */
    uint32_t payload_size;  /* bytes after the record header */
    uint32_t items;         /* items reader_next() yields for it (EVENTS: nevents) */
    uint64_t ts_ns;         /* PROCESS, MODULES, END, LOSS: their ts_ns; EVENTS: first_ts_ns */
    struct mtf_chunk chunk; /* EVENTS: the chunk header */
};

/* Read and validate the next record exactly as reader_next() does (same checks, errors,
 * messages and status), but yield none of its items: describe the record instead. Status
 * fields counted per item (events, kind_counts) are not advanced. Returns 1 with *rec filled,
 * 0 at a clean end of file, or a negative RD_ERR_*. If called while reader_next() was in the
 * middle of a record, the rest of that record is skipped. */
int reader_next_record(struct reader *r, struct rd_record *rec);

/* Position the reader at `offset`, the start of a record header (one reader_next_record()
 * returned), so that reader_next() reads that record next. Needs a seekable stream or memory.
 * 0, or a negative RD_ERR_* (the reader keeps its previous error, if any). */
int reader_seek(struct reader *r, uint64_t offset);

/* Decoder over the events of one EVENTS payload that a reader already validated (via
 * reader_next_record). Each event is decoded once: the cursor reads the head (tag and time
 * delta) of its next event ahead, so its time and §10 position are known without a second
 * decode. It still checks every byte it reads, so a payload that changed since it was validated
 * makes reader_cursor_next() fail instead of reading out of bounds. */
struct rd_cursor {
    const uint8_t *p, *start, *end; /* after the next event's head, first event, end of events */
    const uint8_t *at;              /* the next event's tag byte */
    uint64_t ts, addr, stack;       /* decoder state; ts is the next event's time (left > 0) */
    uint32_t tid, serial, offset;   /* from the chunk header */
    uint32_t left;                  /* events still to decode */
    unsigned tag;                   /* the next event's tag */
    int ok;                         /* the next event's head decoded */
};

/* `payload` holds the chunk header and its events, raw: a compressed chunk's payload is given
 * to reader_chunk_inflate() first, and its output is what the cursor reads. */
void reader_cursor_init(struct rd_cursor *c, const void *payload);

/* Compressed chunks (MTF_CHUNKF_ZSTD, trace-format.md §7.5) for callers that load validated
 * payloads themselves (report/order.c). reader_chunk_plain_size(): bytes of the payload once
 * decompressed (chunk header + events_size); payload_size itself for a raw chunk.
 * reader_chunk_inflate(): write the chunk header then the decompressed events to `out`
 * (reader_chunk_plain_size() bytes); *ctx starts NULL, is made on first use and is freed with
 * reader_inflate_free(). 0, or -1 when out of memory or when the payload does not decompress
 * (it validated when indexed: the file changed since). */
struct rd_inflate;
uint32_t reader_chunk_plain_size(const void *payload, uint32_t payload_size);
int reader_chunk_inflate(struct rd_inflate **ctx, const void *payload, uint32_t payload_size,
                         void *out);
void reader_inflate_free(struct rd_inflate *ctx);

/* Time of the next event (left > 0), read ahead: no decoding. */
static inline uint64_t reader_cursor_peek_ts(const struct rd_cursor *c)
{
    return c->ts;
}

/* Decode the next event (left > 0) into *ev: tid and thread_serial are filled, chunk_offset is
 * not. STACK frames go to `frames` (MTF_MAX_FRAMES_LIMIT + 1 entries). 0, or -1 if the payload
 * was not a validated one. */
int reader_cursor_next(struct rd_cursor *c, struct rd_event *ev, uint64_t *frames);

/* Byte position of the next event within its thread's buffer generation (chunk offset plus the
 * bytes decoded so far): the §10 order key of a buffered event. */
static inline uint32_t reader_cursor_pos(const struct rd_cursor *c)
{
    return c->offset + (uint32_t)(c->at - c->start);
}

#endif
