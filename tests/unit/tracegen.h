/* tracegen: a test-only trace writer, written from docs/trace-format.md alone and sharing no code
 * with preload/ or report/reader.c, so that a misreading of the spec in either shows up as a test
 * failure instead of cancelling out. Builds a whole trace in memory; tests then cut, corrupt or
 * save it. Aborts on out-of-memory (tests only). Never linked into the shim or memtrace-report.
 *
 *     struct tg_buf t = { 0 };
 *     struct mtf_end end = tg_end_default();
 *     struct tg_chunk c;
 *     tg_file_header(&t, NULL);
 *     tg_chunk_begin(&c, 4242, 1, 1000, 0, 0);
 *     tg_chunk_event(&c, &(struct rd_event){ .kind = MTF_EV_MALLOC, .ts_ns = 1010,
 *                                            .addr = 0x1000, .size = 24 });
 *     tg_chunk_end(&c, &t, &end);
 *     tg_end(&t, &end);
 */
#ifndef MEMTRACE_TESTS_TRACEGEN_H
#define MEMTRACE_TESTS_TRACEGEN_H

#include <stddef.h>
#include <stdint.h>

#include "memtrace/format.h"
#include "reader.h"

struct tg_buf {
    uint8_t *data;
    size_t len, cap; /* bytes */
};

void tg_buf_free(struct tg_buf *b);
void tg_put(struct tg_buf *b, const void *p, size_t n);
void tg_u16(struct tg_buf *b, uint16_t v); /* little-endian */
void tg_u32(struct tg_buf *b, uint32_t v);
void tg_u64(struct tg_buf *b, uint64_t v);
void tg_varint(struct tg_buf *b, uint64_t v);     /* unsigned LEB128 */
void tg_zigzag(struct tg_buf *b, uint64_t delta); /* delta taken modulo 2^64 */

/* A 1.0 file header: pid 4242, parent 1, origin start, page 4096, start_monotonic_ns 1000,
 * max_frames 64, pointer size 8. */
struct mtf_file_header tg_header_default(void);

/* Append a file header (NULL: the default). Writes h->header_size bytes: a larger size is padded
 * with zeros, as a newer minor's unknown tail would be. */
void tg_file_header(struct tg_buf *out, const struct mtf_file_header *h);

/* Append one record with a correct CRC; returns the record's offset in `out`. */
size_t tg_record(struct tg_buf *out, uint16_t type, const void *payload, size_t n);

/* Recompute the CRC of the record at `off` (after a test edited its header or payload). */
void tg_fix_crc(struct tg_buf *out, size_t off);

/* PROCESS: argv is argv_len bytes of argc NUL-terminated arguments. Returns the offset. */
size_t tg_process(struct tg_buf *out, uint64_t ts_ns, const char *exe, const char *argv,
                  uint32_t argv_len, uint32_t argc, const char *cwd);

struct tg_module {
    uint32_t id;
    uint16_t action, flags; /* MTF_MOD_*, MTF_MODF_* */
    uint64_t base;
    const char *path;
    const uint8_t *build_id;
    uint16_t build_id_len;
    uint16_t nseg;
    const struct mtf_segment *segs;
};

/* MODULES with `count` entries. Returns the offset. */
size_t tg_modules(struct tg_buf *out, uint64_t ts_ns, const struct tg_module *m, uint32_t count);

/* One chunk being built: encoder state plus the encoded events. */
struct tg_chunk {
    struct mtf_chunk h;
    struct tg_buf ev;
    uint64_t ts, addr, stack; /* encoder state */
    uint64_t counts[MTF_EV_KIND_COUNT];
};

void tg_chunk_begin(struct tg_chunk *c, uint32_t tid, uint32_t thread_serial, uint64_t base_ts_ns,
                    uint64_t base_addr, uint32_t base_stack);

/* Encode `ev` by its kind's field list (trace-format.md §7): kind, flags, ts_ns and the fields
 * the kind has are used (pre_ns is the `pre` field); for CALLOC/REALLOCARRAY, size is not
 * encoded (nmemb and elsize are).
 * ts_ns must not be below the previous event's (dt is unsigned). */
void tg_chunk_event(struct tg_chunk *c, const struct rd_event *ev);

/* Append the chunk as an EVENTS record (first/last ts, nevents, events_size filled in), add its
 * counts to *tally (END totals) when not NULL, and free the chunk. Returns the offset. */
size_t tg_chunk_end(struct tg_chunk *c, struct tg_buf *out, struct mtf_end *tally);

/* An END with reason exit, status 0, 1 thread and zero totals, for tg_chunk_end to add to. */
struct mtf_end tg_end_default(void);
size_t tg_end(struct tg_buf *out, const struct mtf_end *e);
size_t tg_loss(struct tg_buf *out, const struct mtf_loss *l);

/* Write n bytes to `path` (created or truncated). 0, or -1 with errno set. */
int tg_write_file(const char *path, const void *data, size_t n);

#endif
