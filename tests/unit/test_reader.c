/* report/reader.c: decoding, validation, truncation and corruption, fed by tracegen (a writer
 * built from the spec alone). Also the memtrace-report command line (suite `cli`), run through
 * posix_spawn on generated traces: exit statuses, the error line, the output formats.
 * Items are compared through their --events line (render_events_item), which prints every field.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reader.h"
#include "render.h"
#include "tracegen.h"

extern char **environ;

/* ---- fixtures -------------------------------------------------------------------------------- */

static char tmpdir[4096];

static void tmpdir_setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/memtrace-unit-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(ne(ptr, mkdtemp(tmpdir), NULL), "mkdtemp %s: %s", tmpdir, strerror(errno));
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void tmpdir_teardown(void)
{
    if (tmpdir[0])
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *tmp_path(const char *name)
{
    static char path[2][4200]; /* two live at a time: a trace and an output */
    static int which;
    which ^= 1;
    snprintf(path[which], sizeof(path[which]), "%s/%s", tmpdir, name);
    return path[which];
}

TestSuite(reader, .init = tmpdir_setup, .fini = tmpdir_teardown, .timeout = 10);
TestSuite(cli, .init = tmpdir_setup, .fini = tmpdir_teardown, .timeout = 10);

/* ---- helpers --------------------------------------------------------------------------------- */

/* An item as its --events line, without the newline; caller frees. */
static char *item_line(const struct rd_item *item)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    cr_assert(ne(ptr, f, NULL));
    cr_assert(eq(int, render_events_item(f, item), 0));
    cr_assert(eq(int, fclose(f), 0));
    if (n > 0 && s[n - 1] == '\n')
        s[n - 1] = '\0';
    return s;
}

/* Everything one reader produced. */
struct run {
    int open_rc, rc; /* reader_open*() and the final reader_next() result */
    char **lines;    /* one per item */
    uint64_t *needs; /* per item: status.valid_bytes when it was produced */
    size_t n;
    struct rd_status st;
    char err[600];
};

static void run_free(struct run *run)
{
    for (size_t i = 0; i < run->n; i++)
        free(run->lines[i]);
    free(run->lines);
    free(run->needs);
    memset(run, 0, sizeof(*run));
}

/* Read to the end; the reader must stop on its own (bounded by the input's bytes). */
static void run_reader(struct reader *r, int open_rc, struct run *run)
{
    memset(run, 0, sizeof(*run));
    run->open_rc = open_rc;
    cr_assert(ne(ptr, r, NULL), "reader_open* returns a reader unless out of memory");
    run->rc = open_rc;
    if (open_rc == 0) {
        struct rd_item item;
        size_t cap = 0;
        while ((run->rc = reader_next(r, &item)) > 0) {
            if (run->n == cap) {
                cap = cap ? 2 * cap : 64;
                run->lines = realloc(run->lines, cap * sizeof(*run->lines));
                run->needs = realloc(run->needs, cap * sizeof(*run->needs));
                cr_assert(run->lines && run->needs);
            }
            run->lines[run->n] = item_line(&item);
            run->needs[run->n] = reader_status(r)->valid_bytes;
            run->n++;
        }
        struct rd_item again;
        cr_assert(eq(int, reader_next(r, &again), run->rc), "the end result is sticky");
    }
    run->st = *reader_status(r);
    snprintf(run->err, sizeof(run->err), "%s", reader_error(r));
    reader_close(r);
}

static void run_mem(const void *data, size_t n, struct run *run)
{
    struct reader *r;
    int rc = reader_open_mem(&r, data, n);
    run_reader(r, rc, run);
}

static void run_file(const char *path, struct run *run)
{
    struct reader *r;
    int rc = reader_open(&r, path);
    run_reader(r, rc, run);
}

/* Decode a trace that must be valid and complete, returning its single chunk's events. */
static size_t decode_events(const struct tg_buf *t, struct rd_event *out, size_t max,
                            uint64_t (*frames)[MTF_MAX_FRAMES_LIMIT + 1])
{
    struct reader *r;
    cr_assert(eq(int, reader_open_mem(&r, t->data, t->len), 0), "%s", reader_error(r));
    struct rd_item item;
    size_t n = 0;
    int rc;
    while ((rc = reader_next(r, &item)) > 0) {
        if (item.type != RD_ITEM_EVENT)
            continue;
        cr_assert(lt(sz, n, max));
        out[n] = item.ev;
        if (item.ev.kind == MTF_EV_STACK) {
            memcpy(frames[n], item.ev.frames, item.ev.nframes * sizeof(uint64_t));
            out[n].frames = frames[n];
        }
        n++;
    }
    cr_assert(eq(int, rc, 0), "%s", reader_error(r));
    cr_assert(eq(int, reader_status(r)->complete, 1));
    reader_close(r);
    return n;
}

static void check_event(const struct rd_event *got, const struct rd_event *want, size_t i)
{
    const char *k = reader_kind_name(want->kind);
#define SAME(field)                                                                                \
    cr_expect(eq(u64, (uint64_t)got->field, (uint64_t)want->field), "event %zu (%s): " #field, i, k)
    SAME(kind);
    SAME(flags);
    SAME(tid);
    SAME(thread_serial);
    SAME(ts_ns);
    SAME(addr);
    SAME(old_addr);
    SAME(size);
    SAME(nmemb);
    SAME(elsize);
    SAME(align);
    SAME(old_len);
    SAME(prot);
    SAME(mflags);
    SAME(fd);
    SAME(offset);
    SAME(stack);
    SAME(nframes);
    SAME(child_pid);
    SAME(pre_ns);
    SAME(chunk_offset);
    SAME(slack);
    SAME(snap_reason);
    SAME(rss);
    SAME(heap_total);
    SAME(heap_used);
    SAME(external);
    SAME(mapped);
    SAME(rss_peak);
    SAME(label_len);
    SAME(call);
    SAME(limit_class);
    SAME(limit_mode);
    SAME(limit);
    SAME(live);
    cr_expect(eq(u32, got->cls,
                 (want->flags & MTF_EVF_CLASS) && want->kind != MTF_EV_STACK ? want->cls
                                                                             : RD_CLASS_DEFAULT),
              "event %zu (%s): cls", i, k);
    if (want->label_len == got->label_len && want->label_len > 0)
        cr_expect(eq(int, memcmp(got->label, want->label, want->label_len), 0), "event %zu label",
                  i);
#undef SAME
    for (uint32_t f = 0; f < want->nframes && f < got->nframes; f++)
        cr_expect(eq(u64, got->frames[f], want->frames[f]), "event %zu: frame %u", i, f);
}

/* Build one complete trace holding `n` events in one chunk (tid 4242, serial 1). Returns the
 * chunk's offset. */
static size_t trace_of(struct tg_buf *t, const struct rd_event *ev, size_t n, uint64_t base_ts,
                       uint64_t base_addr, uint32_t base_stack)
{
    struct mtf_end end = tg_end_default();
    struct tg_chunk c;
    tg_file_header(t, NULL);
    tg_chunk_begin(&c, 4242, 1, base_ts, base_addr, base_stack);
    for (size_t i = 0; i < n; i++)
        tg_chunk_event(&c, &ev[i]);
    size_t off = tg_chunk_end(&c, t, &end);
    tg_end(t, &end);
    return off;
}

/* What the reader derives: size of CALLOC/REALLOCARRAY, thread and chunk fields. */
static struct rd_event expected(const struct rd_event *in, size_t chunk_off)
{
    struct rd_event w = *in;
    if (w.kind == MTF_EV_CALLOC || w.kind == MTF_EV_REALLOCARRAY) {
        if (__builtin_mul_overflow(w.nmemb, w.elsize, &w.size))
            w.size = UINT64_MAX;
    }
    w.tid = 4242;
    w.thread_serial = 1;
    w.chunk_offset = chunk_off;
    return w;
}

static void check_roundtrip(const struct rd_event *ev, size_t n, uint64_t base_ts,
                            uint64_t base_addr, uint32_t base_stack)
{
    static struct rd_event got[64];
    static uint64_t frames[64][MTF_MAX_FRAMES_LIMIT + 1];
    struct tg_buf t = { 0 };
    cr_assert(le(sz, n, 64));
    size_t off = trace_of(&t, ev, n, base_ts, base_addr, base_stack);
    cr_assert(eq(sz, decode_events(&t, got, 64, frames), n));
    for (size_t i = 0; i < n; i++) {
        struct rd_event w = expected(&ev[i], off);
        check_event(&got[i], &w, i);
    }
    tg_buf_free(&t);
}

/* ---- decoding -------------------------------------------------------------------------------- */

static const uint64_t frames_a[] = { 0x401234, 0x7f0000001000, 0x400000 };
static const uint64_t frames_b[] = { 0x7fffffffe000, 0x1 };

static const struct rd_event every_kind[] = {
    { .kind = MTF_EV_STACK, .ts_ns = 1001, .stack = 3, .nframes = 3, .frames = frames_a },
    { .kind = MTF_EV_STACK,
      .flags = MTF_EVF_TRUNC,
      .ts_ns = 1001,
      .stack = 4,
      .nframes = 2,
      .frames = frames_b },
    { .kind = MTF_EV_MALLOC, .ts_ns = 1010, .addr = 0x55d0c0, .size = 24, .stack = 3 },
    { .kind = MTF_EV_MALLOC,
      .flags = MTF_EVF_FAILED,
      .ts_ns = 1011,
      .size = 1ULL << 40,
      .stack = 3 },
    { .kind = MTF_EV_CALLOC,
      .ts_ns = 1020,
      .addr = 0x55e000,
      .nmemb = 10,
      .elsize = 16,
      .stack = 4 },
    { .kind = MTF_EV_REALLOC,
      .ts_ns = 1030,
      .old_addr = 0x55d0c0,
      .addr = 0x560000,
      .size = 4096,
      .stack = 3,
      .pre_ns = 25 },
    { .kind = MTF_EV_REALLOC,
      .ts_ns = 1031,
      .old_addr = 0x560000,
      .addr = 0,
      .size = 0,
      .stack = 3 },
    { .kind = MTF_EV_REALLOCARRAY,
      .ts_ns = 1040,
      .old_addr = 0x560000,
      .addr = 0x561000,
      .nmemb = 3,
      .elsize = 7,
      .stack = 4,
      .pre_ns = 1 },
    { .kind = MTF_EV_FREE, .ts_ns = 1050, .addr = 0x561000 },
    { .kind = MTF_EV_FREE, .ts_ns = 1050, .addr = 0 },
    { .kind = MTF_EV_POSIX_MEMALIGN,
      .ts_ns = 1060,
      .addr = 0x570000,
      .align = 64,
      .size = 100,
      .stack = 3 },
    { .kind = MTF_EV_ALIGNED_ALLOC,
      .ts_ns = 1070,
      .addr = 0x571000,
      .align = 4096,
      .size = 8192,
      .stack = 3 },
    { .kind = MTF_EV_MEMALIGN,
      .flags = MTF_EVF_NESTED,
      .ts_ns = 1080,
      .addr = 0x572000,
      .align = 32,
      .size = 33 },
    { .kind = MTF_EV_VALLOC, .ts_ns = 1090, .addr = 0x573000, .size = 5000, .stack = 4 },
    { .kind = MTF_EV_PVALLOC, .ts_ns = 1100, .addr = 0x575000, .size = 5000, .stack = 4 },
    { .kind = MTF_EV_MMAP,
      .ts_ns = 1110,
      .addr = 0x7f1234560000,
      .size = 1 << 20,
      .prot = 3,
      .mflags = 0x22,
      .fd = -1,
      .stack = 3 },
    { .kind = MTF_EV_MMAP64,
      .ts_ns = 1120,
      .addr = 0x7f1234000000,
      .size = 8192,
      .prot = 1,
      .mflags = 0x2,
      .fd = 7,
      .offset = 4096,
      .stack = 4 },
    { .kind = MTF_EV_MMAP,
      .flags = MTF_EVF_FAILED,
      .ts_ns = 1121,
      .addr = 0x10000,
      .size = 4096,
      .prot = 3,
      .mflags = 0x32,
      .fd = -1,
      .stack = 3 },
    { .kind = MTF_EV_MUNMAP, .ts_ns = 1130, .addr = 0x7f1234000000, .size = 8192 },
    { .kind = MTF_EV_MUNMAP, .flags = MTF_EVF_FAILED, .ts_ns = 1131, .addr = 0x1, .size = 1 },
    { .kind = MTF_EV_MREMAP,
      .ts_ns = 1140,
      .old_addr = 0x7f1234560000,
      .old_len = 1 << 20,
      .size = 2 << 20,
      .mflags = 1,
      .addr = 0x7f2000000000,
      .stack = 3,
      .pre_ns = 140 },
    { .kind = MTF_EV_FORK, .ts_ns = 1150, .child_pid = 4243 },
    { .kind = MTF_EV_FORK, .flags = MTF_EVF_FAILED, .ts_ns = 1151 },
    { .kind = MTF_EV_EXEC, .ts_ns = 1160 },
    { .kind = MTF_EV_MALLOC,
      .flags = MTF_EVF_CLASS,
      .cls = MTF_CLASS_EXTERNAL,
      .ts_ns = 1170,
      .addr = 0x580000,
      .size = 1000,
      .slack = 8,
      .stack = 3 },
    { .kind = MTF_EV_SNAPSHOT,
      .ts_ns = 1180,
      .snap_reason = MTF_SNAP_MARK,
      .rss = 212880000,
      .heap_total = 5850000,
      .heap_used = 1840000,
      .external = 200000000,
      .mapped = 4096,
      .label = "after load",
      .label_len = 10 },
    { .kind = MTF_EV_LIMIT,
      .ts_ns = 1190,
      .call = MTF_EV_CALLOC,
      .limit_class = MTF_CLASS_HEAP,
      .limit_mode = MTF_LIMIT_ENOMEM,
      .limit = 1 << 20,
      .live = 1000000,
      .size = 100000,
      .stack = 4 },
};

Test(reader, decodes_every_field_of_every_kind)
{
    check_roundtrip(every_kind, sizeof(every_kind) / sizeof(every_kind[0]), 1000, 0, 0);
}

Test(reader, decodes_from_nonzero_base_state)
{
    /* The base_* fields are the starting state: a chunk mid-stream decodes on its own. */
    check_roundtrip(every_kind, sizeof(every_kind) / sizeof(every_kind[0]), 5, 0x7f0000000000, 9);
}

static const uint64_t frames_edge[] = { UINT64_MAX, 0, 1ULL << 63, 1, UINT64_MAX - 1 };

static const struct rd_event edge_values[] = {
    /* addresses: every delta direction and the wrap-around, at the extremes */
    { .kind = MTF_EV_MALLOC, .ts_ns = 0, .addr = 0, .size = 0, .stack = 1 },
    { .kind = MTF_EV_MALLOC, .ts_ns = 0, .addr = UINT64_MAX, .size = UINT64_MAX, .stack = 1 },
    { .kind = MTF_EV_MALLOC,
      .ts_ns = 1,
      .addr = 1ULL << 63,
      .size = 1ULL << 63,
      .stack = UINT32_MAX },
    { .kind = MTF_EV_MALLOC, .ts_ns = 1, .addr = 0, .size = 127, .stack = 1 },
    { .kind = MTF_EV_MALLOC, .ts_ns = 2, .addr = (1ULL << 63) - 1, .size = 128, .stack = 0 },
    { .kind = MTF_EV_FREE, .ts_ns = 2, .addr = 1ULL << 63 },
    { .kind = MTF_EV_FREE, .ts_ns = 2, .addr = 1 },
    { .kind = MTF_EV_REALLOC,
      .ts_ns = 3,
      .old_addr = UINT64_MAX,
      .addr = 0,
      .size = 1,
      .stack = 2,
      .pre_ns = UINT64_MAX },
    /* time: the largest dt (a 10-byte varint) wraps the clock state modulo 2^64 */
    { .kind = MTF_EV_EXEC, .ts_ns = UINT64_MAX },
    { .kind = MTF_EV_MMAP,
      .ts_ns = UINT64_MAX,
      .addr = 0x1000,
      .size = UINT64_MAX,
      .prot = UINT64_MAX,
      .mflags = UINT64_MAX,
      .fd = INT64_MIN,
      .offset = UINT64_MAX,
      .stack = UINT32_MAX },
    { .kind = MTF_EV_MMAP64, .ts_ns = UINT64_MAX, .addr = 0, .fd = INT64_MAX, .stack = 0 },
    { .kind = MTF_EV_CALLOC,
      .ts_ns = UINT64_MAX,
      .addr = 0x10,
      .nmemb = UINT64_MAX,
      .elsize = 2,
      .stack = 5 },
    { .kind = MTF_EV_REALLOCARRAY,
      .ts_ns = UINT64_MAX,
      .old_addr = 0x10,
      .addr = 0x20,
      .nmemb = 1ULL << 32,
      .elsize = 1ULL << 32,
      .stack = 5,
      .pre_ns = 1ULL << 63 },
    { .kind = MTF_EV_CALLOC, .ts_ns = UINT64_MAX, .addr = 0x30, .nmemb = 0, .elsize = UINT64_MAX },
    { .kind = MTF_EV_STACK,
      .ts_ns = UINT64_MAX,
      .stack = UINT32_MAX,
      .nframes = 5,
      .frames = frames_edge },
    { .kind = MTF_EV_STACK, .ts_ns = UINT64_MAX, .stack = 1, .nframes = 0 },
    { .kind = MTF_EV_FORK, .ts_ns = UINT64_MAX, .child_pid = UINT64_MAX },
    { .kind = MTF_EV_MREMAP,
      .ts_ns = UINT64_MAX,
      .old_addr = UINT64_MAX,
      .old_len = UINT64_MAX,
      .size = 0,
      .mflags = UINT64_MAX,
      .addr = 0,
      .stack = 1,
      .pre_ns = 0 },
};

Test(reader, decodes_varint_and_zigzag_edge_values)
{
    check_roundtrip(edge_values, sizeof(edge_values) / sizeof(edge_values[0]), 0, 0, 0);
    check_roundtrip(edge_values, sizeof(edge_values) / sizeof(edge_values[0]), UINT64_MAX,
                    UINT64_MAX, UINT32_MAX);
}

Test(reader, saturates_size_when_nmemb_times_elsize_overflows)
{
    static const struct rd_event ev[] = {
        { .kind = MTF_EV_CALLOC, .ts_ns = 1, .addr = 0, .nmemb = 1ULL << 33, .elsize = 1ULL << 33 },
    };
    struct rd_event got[1];
    uint64_t frames[1][MTF_MAX_FRAMES_LIMIT + 1];
    struct tg_buf t = { 0 };
    trace_of(&t, ev, 1, 0, 0, 0);
    cr_assert(eq(sz, decode_events(&t, got, 1, frames), 1));
    cr_expect(eq(u64, got[0].size, UINT64_MAX), "nmemb * elsize = 2^66 saturates");
    tg_buf_free(&t);
}

Test(reader, accepts_deepest_stack_the_format_allows)
{
    static uint64_t deep[MTF_MAX_FRAMES_LIMIT + 1];
    for (size_t i = 0; i < MTF_MAX_FRAMES_LIMIT + 1; i++)
        deep[i] = 0x400000 + 16 * i;
    const struct rd_event ev[] = {
        { .kind = MTF_EV_STACK,
          .flags = MTF_EVF_TRUNC,
          .ts_ns = 1,
          .stack = 1,
          .nframes = MTF_MAX_FRAMES_LIMIT + 1,
          .frames = deep },
    };
    check_roundtrip(ev, 1, 0, 0, 0);
}

/* ---- records --------------------------------------------------------------------------------- */

static const uint8_t build_id[] = { 0xde, 0xad, 0xbe, 0xef, 0x01 };
static const struct mtf_segment segs[] = {
    { .vaddr = 0, .memsz = 0x1000, .pflags = 4 },
    { .vaddr = 0x1000, .memsz = 0x2345, .pflags = 5 },
    { .vaddr = 0x4000, .memsz = 0x100, .pflags = 6 },
};
static const struct tg_module modules[] = {
    { .id = 1,
      .action = MTF_MOD_LOAD,
      .flags = MTF_MODF_MAIN,
      .base = 0x555555554000,
      .path = "/usr/bin/app",
      .build_id = build_id,
      .build_id_len = sizeof(build_id),
      .nseg = 3,
      .segs = segs },
    { .id = 2, .action = MTF_MOD_LOAD, .flags = MTF_MODF_VDSO, .base = 0x7ffff7fc1000, .path = "" },
    { .id = 3,
      .action = MTF_MOD_LOAD,
      .flags = MTF_MODF_SHIM,
      .base = 0x7ffff7000000,
      .path = "/opt/lib dir/libmemtrace.so",
      .nseg = 1,
      .segs = segs },
    { .id = 3, .action = MTF_MOD_UNLOAD },
};

/* A small trace with every record type, two threads, an empty chunk, a skipped unknown record
 * and a LOSS. *bounds receives the offset after the header and after each record. */
static void build_sample(struct tg_buf *t, size_t *bounds, size_t *nbounds)
{
    static const char argv[] = "app\0--flag\0x y\0";
    struct mtf_end end = tg_end_default();
    struct tg_chunk c;
    size_t nb = 0;
    tg_file_header(t, NULL);
    bounds[nb++] = t->len;
    tg_process(t, 1005, "/usr/bin/app", argv, sizeof(argv) - 1, 3, "/home/u");
    bounds[nb++] = t->len;
    tg_modules(t, 1006, modules, 4);
    bounds[nb++] = t->len;
    tg_chunk_begin(&c, 4242, 1, 1000, 0, 0);
    for (size_t i = 0; i < 12; i++)
        tg_chunk_event(&c, &every_kind[i]);
    tg_chunk_end(&c, t, &end);
    bounds[nb++] = t->len;
    tg_record(t, 0x77, "future", 6);
    bounds[nb++] = t->len;
    tg_chunk_begin(&c, 4250, 2, 1100, 0x7f0000000000, 3);
    for (size_t i = 12; i < sizeof(every_kind) / sizeof(every_kind[0]); i++)
        tg_chunk_event(&c, &every_kind[i]);
    c.h.flags = MTF_CHUNKF_THREAD_END;
    tg_chunk_end(&c, t, &end);
    bounds[nb++] = t->len;
    tg_chunk_begin(&c, 4251, 3, 1200, 0, 0);
    tg_chunk_end(&c, t, &end);
    bounds[nb++] = t->len;
    tg_loss(
        t, &(struct mtf_loss){ .ts_ns = 1300, .reason = MTF_LOSS_THREAD, .tid = 4260, .count = 7 });
    bounds[nb++] = t->len;
    end.threads = 3;
    end.dropped = 2;
    end.ts_ns = 2000;
    tg_end(t, &end);
    bounds[nb++] = t->len;
    *nbounds = nb;
}

Test(reader, decodes_process_modules_loss_and_end_records)
{
    struct tg_buf t = { 0 };
    size_t bounds[16], nb;
    build_sample(&t, bounds, &nb);
    struct reader *r;
    cr_assert(eq(int, reader_open_mem(&r, t.data, t.len), 0));
    struct rd_item item;

    cr_assert(eq(int, reader_next(r, &item), 1));
    cr_assert(eq(int, item.type, RD_ITEM_PROCESS));
    cr_expect(eq(u64, item.process.ts_ns, 1005));
    cr_expect(eq(str, (char *)item.process.exe, "/usr/bin/app"));
    cr_expect(eq(u32, item.process.argc, 3));
    cr_expect(eq(u32, item.process.argv_len, 15));
    cr_expect(eq(int, memcmp(item.process.argv, "app\0--flag\0x y\0", 15), 0));
    cr_expect(eq(str, (char *)item.process.cwd, "/home/u"));

    for (size_t m = 0; m < 4; m++) {
        cr_assert(eq(int, reader_next(r, &item), 1));
        cr_assert(eq(int, item.type, RD_ITEM_MODULE), "module entry %zu", m);
        const struct rd_module *got = &item.module;
        cr_expect(eq(u64, got->ts_ns, 1006));
        cr_expect(eq(u32, got->id, modules[m].id));
        cr_expect(eq(u32, got->action, modules[m].action));
        cr_expect(eq(u32, got->flags, modules[m].flags));
        cr_expect(eq(u64, got->base, modules[m].base));
        cr_expect(eq(str, (char *)got->path, (char *)(modules[m].path ? modules[m].path : "")));
        cr_expect(eq(u32, got->build_id_len, modules[m].build_id_len));
        if (got->build_id_len)
            cr_expect(eq(int, memcmp(got->build_id, build_id, sizeof(build_id)), 0));
        cr_expect(eq(u32, got->nseg, modules[m].nseg));
        for (uint32_t s = 0; s < got->nseg; s++) {
            cr_expect(eq(u64, got->segs[s].vaddr, segs[s].vaddr));
            cr_expect(eq(u64, got->segs[s].memsz, segs[s].memsz));
            cr_expect(eq(u32, got->segs[s].pflags, segs[s].pflags));
        }
    }
    size_t events = 0;
    int rc;
    while ((rc = reader_next(r, &item)) == 1 && item.type == RD_ITEM_EVENT)
        events++;
    cr_expect(eq(sz, events, sizeof(every_kind) / sizeof(every_kind[0])));
    cr_assert(eq(int, item.type, RD_ITEM_LOSS));
    cr_expect(eq(u64, item.loss.ts_ns, 1300));
    cr_expect(eq(u32, item.loss.reason, MTF_LOSS_THREAD));
    cr_expect(eq(u32, item.loss.tid, 4260));
    cr_expect(eq(u64, item.loss.count, 7));

    cr_assert(eq(int, reader_next(r, &item), 1));
    cr_assert(eq(int, item.type, RD_ITEM_END));
    cr_expect(eq(u64, item.end.ts_ns, 2000));
    cr_expect(eq(u32, item.end.reason, MTF_END_EXIT));
    cr_expect(eq(i32, item.end.status, 0));
    cr_expect(eq(u64, item.end.threads, 3));
    cr_expect(eq(u64, item.end.dropped, 2));
    cr_expect(eq(u64, item.end.events, events));

    cr_assert(eq(int, reader_next(r, &item), 0));
    const struct rd_status *st = reader_status(r);
    cr_expect(eq(int, st->complete, 1));
    cr_expect(eq(int, st->truncated, 0));
    cr_expect(eq(u64, st->records, nb - 1), "every record counts, the skipped one too");
    cr_expect(eq(u64, st->chunks, 3));
    cr_expect(eq(u64, st->events, events));
    cr_expect(eq(u64, st->kind_counts[MTF_EV_MALLOC], 3));
    cr_expect(eq(u64, st->kind_counts[MTF_EV_STACK], 2));
    cr_expect(eq(u64, st->dropped, 9), "END.dropped 2 + LOSS.count 7");
    cr_expect(eq(u64, st->valid_bytes, t.len));
    cr_expect(eq(u64, st->file_size, t.len));
    cr_expect(eq(u64, st->lost_bytes, 0));
    cr_expect(eq(u32, st->header.pid, 4242));
    cr_expect(eq(str, (char *)reader_error(r), ""));
    reader_close(r);
    tg_buf_free(&t);
}

Test(reader, copies_long_strings_whole)
{
    /* Paths longer than the reader's first text buffer: copies grow, nothing is cut. */
    static char exe[5000], cwd[3000], path[70000];
    memset(exe, 'e', sizeof(exe) - 1);
    memset(cwd, 'c', sizeof(cwd) - 1);
    memset(path, 'p', sizeof(path) - 1);
    struct tg_buf t = { 0 };
    struct mtf_end end = tg_end_default();
    tg_file_header(&t, NULL);
    tg_process(&t, 1, exe, "a\0", 2, 1, cwd);
    tg_modules(&t, 2, &(struct tg_module){ .id = 1, .action = MTF_MOD_LOAD, .path = path }, 1);
    tg_end(&t, &end);
    const char *file = tmp_path("long.mtr");
    cr_assert(eq(int, tg_write_file(file, t.data, t.len), 0));
    struct reader *r;
    cr_assert(eq(int, reader_open(&r, file), 0));
    struct rd_item item;
    cr_assert(eq(int, reader_next(r, &item), 1));
    cr_expect(eq(str, (char *)item.process.exe, exe));
    cr_expect(eq(str, (char *)item.process.cwd, cwd));
    cr_expect(eq(str, (char *)item.process.argv, "a"));
    cr_assert(eq(int, reader_next(r, &item), 1));
    cr_expect(eq(sz, strlen(item.module.path), sizeof(path) - 1));
    cr_expect(eq(int, strcmp(item.module.path, path), 0));
    cr_assert(eq(int, reader_next(r, &item), 1));
    cr_expect(eq(int, reader_next(r, &item), 0), "%s", reader_error(r));
    reader_close(r);
    tg_buf_free(&t);
}

Test(reader, names_every_kind_after_its_function)
{
    static const char *const names[] = {
        "unknown", "malloc",         "calloc",        "realloc",  "reallocarray",
        "free",    "posix_memalign", "aligned_alloc", "memalign", "valloc",
        "pvalloc", "mmap",           "mmap64",        "munmap",   "mremap",
        "stack",   "fork",           "exec",          "snapshot", "limit",
    };
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++)
        cr_expect(eq(str, (char *)reader_kind_name(k), (char *)names[k]), "kind %u", k);
    cr_expect(eq(str, (char *)reader_kind_name(MTF_EV_KIND_COUNT), "unknown"));
    cr_expect(eq(str, (char *)reader_kind_name(255), "unknown"));
}

Test(reader, skips_unknown_bytes_of_a_newer_minor_version)
{
    /* A newer minor may lengthen the header and records, and define flags: this reader skips
     * them. */
    struct mtf_file_header h = tg_header_default();
    h.version_minor = MTF_VERSION_MINOR + 1;
    h.header_size = MTF_FILE_HEADER_SIZE + 40;
    struct tg_buf t = { 0 }, p = { 0 };
    tg_file_header(&t, &h);
    tg_u64(&p, 7);
    tg_u32(&p, 1);
    tg_u32(&p, 0);
    tg_u32(&p, 0);
    tg_u32(&p, 0);
    tg_put(&p, "x", 1);
    tg_put(&p, "new field", 9);
    size_t off = tg_record(&t, MTF_REC_PROCESS, p.data, p.len);
    t.data[off + offsetof(struct mtf_record_header, flags)] = 0x40;
    tg_fix_crc(&t, off);
    struct tg_chunk c;
    struct mtf_end end = tg_end_default();
    tg_chunk_begin(&c, 1, 1, 0, 0, 0);
    tg_chunk_event(&c, &every_kind[2]);
    c.h.flags = 0x100;
    tg_chunk_end(&c, &t, &end);
    tg_end(&t, &end);
    struct run run;
    run_mem(t.data, t.len, &run);
    cr_expect(eq(int, run.rc, 0), "%s", run.err);
    cr_expect(eq(sz, run.n, 3));
    cr_expect(eq(int, run.st.complete, 1));
    cr_expect(eq(u32, run.st.header.header_size, MTF_FILE_HEADER_SIZE + 40));
    run_free(&run);
    tg_buf_free(&p);
    tg_buf_free(&t);
}

/* One chunk of one event, as thread `serial` writes it (flags: MTF_CHUNKF_*). */
static void one_event_chunk(struct tg_buf *t, const struct rd_event *ev, uint32_t serial,
                            uint32_t flags, struct mtf_end *tally)
{
    struct tg_chunk c;
    tg_chunk_begin(&c, 100 + serial, serial, ev->ts_ns, 0, 0);
    tg_chunk_event(&c, ev);
    c.h.flags = flags;
    tg_chunk_end(&c, t, tally);
}

Test(reader, stays_complete_when_late_events_follow_an_exit_end)
{
    /* trace-format.md §8: threads still running during exit write through after END. */
    struct tg_buf t = { 0 };
    struct mtf_end end = tg_end_default();
    tg_file_header(&t, NULL);
    one_event_chunk(&t, &every_kind[2], 1, 0, &end);
    end.dropped = 4;
    tg_end(&t, &end);
    one_event_chunk(&t, &every_kind[8], 2, MTF_CHUNKF_WRITETHROUGH, NULL);
    struct run run;
    run_mem(t.data, t.len, &run);
    cr_expect(eq(int, run.rc, 0), "%s", run.err);
    cr_expect(eq(sz, run.n, 3), "malloc, END, then the late free");
    cr_expect(eq(int, run.st.complete, 1));
    cr_expect(eq(u64, run.st.kind_counts[MTF_EV_FREE], 1));
    cr_expect(eq(u64, run.st.dropped, 4));
    run_free(&run);
    tg_buf_free(&t);
}

Test(reader, is_incomplete_again_when_records_follow_an_exec_end)
{
    /* An exec END followed by more records: the exec failed and tracing went on (§8). Only a
     * later END completes the trace, and its dropped count (a running total) replaces the first. */
    struct tg_buf t = { 0 };
    struct mtf_end end = tg_end_default();
    tg_file_header(&t, NULL);
    one_event_chunk(&t, &every_kind[23], 1, 0, &end);
    end.reason = MTF_END_EXEC;
    end.status = -1;
    end.dropped = 2;
    tg_end(&t, &end);
    struct run run;
    run_mem(t.data, t.len, &run);
    cr_expect(eq(int, run.st.complete, 1), "exec END alone: complete");
    run_free(&run);

    one_event_chunk(&t, &every_kind[2], 1, 0, &end);
    run_mem(t.data, t.len, &run);
    cr_expect(eq(int, run.rc, 0), "%s", run.err);
    cr_expect(eq(int, run.st.complete, 0), "events after an exec END: the exec failed");
    run_free(&run);

    tg_loss(&t, &(struct mtf_loss){ .ts_ns = 5000, .reason = MTF_LOSS_THREAD, .count = 3 });
    end.reason = MTF_END_EXIT;
    end.status = 0;
    end.dropped = 5;
    tg_end(&t, &end);
    run_mem(t.data, t.len, &run);
    cr_expect(eq(int, run.rc, 0), "%s", run.err);
    cr_expect(eq(int, run.st.complete, 1), "the second END completes the trace");
    cr_expect(eq(u64, run.st.dropped, 8), "last END.dropped 5 + LOSS 3, not 2 + 5 + 3");
    run_free(&run);
    tg_buf_free(&t);
}

/* ---- truncation ------------------------------------------------------------------------------ */

/* For a cut after `len` bytes of `full`, check `cut` against the spec'd behaviour: every item of
 * the records wholly before the cut, then 0 at a record boundary (complete only after END) or
 * RD_ERR_TRUNC naming the first incomplete record. */
static void check_cut(const struct run *full, const struct run *cut, size_t len,
                      const size_t *bounds, size_t nb)
{
    if (len < bounds[0]) {
        cr_expect(eq(int, cut->open_rc, RD_ERR_TRUNC), "cut at %zu (inside the file header)", len);
        cr_expect(eq(int, cut->st.truncated, 1));
        cr_expect(eq(u64, cut->st.valid_bytes, 0));
        cr_expect(eq(u64, cut->st.lost_bytes, len));
        return;
    }
    size_t boundary = bounds[0];
    for (size_t i = 0; i < nb && bounds[i] <= len; i++)
        boundary = bounds[i];
    size_t want = 0;
    while (want < full->n && full->needs[want] <= len)
        want++;
    cr_expect(eq(sz, cut->n, want), "cut at %zu: items of every record before the cut", len);
    for (size_t i = 0; i < cut->n && i < want; i++)
        cr_expect(eq(str, cut->lines[i], full->lines[i]), "cut at %zu: item %zu", len, i);
    cr_expect(eq(u64, cut->st.valid_bytes, boundary), "cut at %zu", len);
    if (boundary == len) {
        cr_expect(eq(int, cut->rc, 0), "cut at the record boundary %zu is a clean end", len);
        cr_expect(eq(int, cut->st.truncated, 0));
        cr_expect(eq(int, cut->st.complete, len == bounds[nb - 1]), "complete only with END");
        cr_expect(eq(u64, cut->st.lost_bytes, 0));
    } else {
        cr_expect(eq(int, cut->rc, RD_ERR_TRUNC), "cut at %zu: %s", len, cut->err);
        cr_expect(eq(int, cut->st.truncated, 1));
        cr_expect(eq(int, cut->st.complete, 0));
        cr_expect(eq(u64, cut->st.error_offset, boundary), "cut at %zu", len);
        cr_expect(eq(u64, cut->st.lost_bytes, len - boundary), "cut at %zu", len);
    }
}

Test(reader, yields_every_record_before_the_cut_when_truncated_at_any_offset)
{
    struct tg_buf t = { 0 };
    size_t bounds[16], nb;
    build_sample(&t, bounds, &nb);
    struct run full, cut;
    run_mem(t.data, t.len, &full);
    cr_assert(eq(int, full.rc, 0));
    for (size_t len = 0; len <= t.len; len++) {
        uint8_t *copy = malloc(len + 1); /* exact size, so ASan sees any read past the cut */
        memcpy(copy, t.data, len);
        run_mem(copy, len, &cut);
        check_cut(&full, &cut, len, bounds, nb);
        run_free(&cut);
        free(copy);
    }
    run_free(&full);
    tg_buf_free(&t);
}

Test(reader, yields_every_record_before_the_cut_when_streaming_a_truncated_file)
{
    struct tg_buf t = { 0 };
    size_t bounds[16], nb;
    build_sample(&t, bounds, &nb);
    struct run full, cut;
    run_mem(t.data, t.len, &full);
    const char *path = tmp_path("cut.mtr");
    for (size_t len = 0; len <= t.len; len++) {
        cr_assert(eq(int, tg_write_file(path, t.data, len), 0));
        run_file(path, &cut);
        check_cut(&full, &cut, len, bounds, nb);
        run_free(&cut);
    }
    run_free(&full);
    tg_buf_free(&t);
}

Test(reader, reports_truncation_with_offset_and_lost_bytes)
{
    struct tg_buf t = { 0 };
    size_t bounds[16], nb;
    build_sample(&t, bounds, &nb);
    /* Cut 5 bytes into the payload of the first EVENTS record (bounds[2] is its offset). */
    size_t len = bounds[2] + MTF_RECORD_HEADER_SIZE + 5;
    const char *path = tmp_path("run.mtr");
    cr_assert(eq(int, tg_write_file(path, t.data, len), 0));
    struct run run;
    run_file(path, &run);
    char want[600];
    snprintf(want, sizeof(want),
             "%s: offset %zu: file ends inside a record (needs %zu bytes, 21 present): 21 bytes "
             "lost",
             path, bounds[2], bounds[3] - bounds[2]);
    cr_expect(eq(str, run.err, want));
    run_free(&run);
    tg_buf_free(&t);
}

/* ---- corruption ------------------------------------------------------------------------------ */

/* Index of the record holding byte `i` (i >= bounds[0]). */
static size_t record_of(size_t i, const size_t *bounds, size_t nb)
{
    size_t k = 0;
    while (k + 1 < nb && bounds[k + 1] <= i)
        k++;
    return k;
}

Test(reader, detects_any_single_byte_change_after_the_file_header)
{
    static const uint8_t masks[] = { 0x01, 0x80, 0xff };
    struct tg_buf t = { 0 };
    size_t bounds[16], nb;
    build_sample(&t, bounds, &nb);
    struct run full, bad;
    run_mem(t.data, t.len, &full);
    uint8_t *copy = malloc(t.len);
    for (size_t i = 0; i < t.len; i++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            memcpy(copy, t.data, t.len);
            copy[i] ^= masks[m];
            run_mem(copy, t.len, &bad);
            if (i < bounds[0]) {
                /* The file header has no checksum: a change is caught by validation or is in a
                 * field the items do not show (pid, times, reserved). Either way, no garbage. */
                if (bad.rc == 0) {
                    cr_expect(eq(sz, bad.n, full.n), "byte %zu ^ 0x%02x", i, masks[m]);
                    for (size_t k = 0; k < bad.n && k < full.n; k++)
                        cr_expect(eq(str, bad.lines[k], full.lines[k]), "byte %zu", i);
                }
            } else {
                size_t rec = bounds[record_of(i, bounds, nb)];
                cr_expect(bad.rc == RD_ERR_CORRUPT || bad.rc == RD_ERR_TRUNC,
                          "byte %zu ^ 0x%02x must be detected (rc %d)", i, masks[m], bad.rc);
                cr_expect(eq(u64, bad.st.error_offset, rec), "byte %zu: %s", i, bad.err);
                size_t want = 0;
                while (want < full.n && full.needs[want] <= rec)
                    want++;
                cr_expect(eq(sz, bad.n, want), "byte %zu: items before the bad record", i);
            }
            run_free(&bad);
        }
    }
    free(copy);
    run_free(&full);
    tg_buf_free(&t);
}

Test(reader, crc_names_the_record_when_its_payload_changes)
{
    struct tg_buf t = { 0 };
    size_t bounds[16], nb;
    build_sample(&t, bounds, &nb);
    size_t rec = bounds[2]; /* the first EVENTS record */
    size_t payload = bounds[3] - bounds[2] - MTF_RECORD_HEADER_SIZE;
    for (size_t i = rec + MTF_RECORD_HEADER_SIZE; i < bounds[3]; i++) {
        t.data[i] ^= 0x10;
        struct run run;
        run_mem(t.data, t.len, &run);
        char want[200];
        snprintf(want, sizeof(want),
                 "<memory>: offset %zu: record crc mismatch (type 3, %zu bytes)", rec, payload);
        cr_expect(eq(str, run.err, want), "payload byte %zu", i - rec);
        cr_expect(eq(int, run.rc, RD_ERR_CORRUPT));
        run_free(&run);
        t.data[i] ^= 0x10;
    }
    tg_buf_free(&t);
}

Test(reader, never_crashes_on_structural_damage_behind_a_valid_crc)
{
    /* The CRC is recomputed after each change, so the record-level validation itself is what
     * stands between the bytes and the decoder (under ASan this catches any out-of-bounds read). */
    static const uint8_t masks[] = { 0x01, 0x02, 0x10, 0x7f, 0x80, 0xff };
    struct tg_buf t = { 0 };
    size_t bounds[16], nb;
    build_sample(&t, bounds, &nb);
    size_t detected = 0, total = 0;
    for (size_t k = 0; k + 1 < nb; k++) {
        size_t rec = bounds[k];
        for (size_t i = rec + MTF_RECORD_HEADER_SIZE; i < bounds[k + 1]; i++) {
            for (size_t m = 0; m < sizeof(masks); m++) {
                t.data[i] ^= masks[m];
                tg_fix_crc(&t, rec);
                struct run run;
                run_mem(t.data, t.len, &run);
                cr_expect(run.rc <= 0);
                detected += run.rc < 0;
                total++;
                run_free(&run);
                t.data[i] ^= masks[m];
                tg_fix_crc(&t, rec);
            }
        }
    }
    cr_log_info("structural damage: %zu of %zu changes rejected", detected, total);
    cr_expect(gt(sz, detected, total / 4), "validation catches a good share of changes");
    tg_buf_free(&t);
}

/* ---- malformed inputs, table-driven ---------------------------------------------------------- */

struct bad_case {
    const char *name;
    void (*build)(struct tg_buf *t);
    int rc;          /* final result of reader_open + reader_next loop */
    const char *msg; /* substring of reader_error() */
    size_t items;    /* items of the good records before the bad one */
};

static void header_only(struct tg_buf *t, void (*edit)(struct mtf_file_header *))
{
    struct mtf_file_header h = tg_header_default();
    edit(&h);
    tg_file_header(t, &h);
}

static void e_magic(struct mtf_file_header *h)
{
    h->magic[0] = 'X';
}
static void e_major(struct mtf_file_header *h)
{
    h->version_major = 3;
}
static void e_header_size(struct mtf_file_header *h)
{
    h->header_size = 50;
}
static void e_origin(struct mtf_file_header *h)
{
    h->origin = 3;
}
static void e_page(struct mtf_file_header *h)
{
    h->page_size = 3000;
}
static void e_frames(struct mtf_file_header *h)
{
    h->max_frames = MTF_MAX_FRAMES_LIMIT + 1;
}
static void e_ptr(struct mtf_file_header *h)
{
    h->pointer_size = 2;
}

static void b_bad_magic(struct tg_buf *t)
{
    header_only(t, e_magic);
}
static void b_major(struct tg_buf *t)
{
    header_only(t, e_major);
}
static void b_header_size(struct tg_buf *t)
{
    header_only(t, e_header_size);
    t->len = MTF_FILE_HEADER_SIZE;
}
static void b_origin(struct tg_buf *t)
{
    header_only(t, e_origin);
}
static void b_page(struct tg_buf *t)
{
    header_only(t, e_page);
}
static void b_frames(struct tg_buf *t)
{
    header_only(t, e_frames);
}
static void b_ptr(struct tg_buf *t)
{
    header_only(t, e_ptr);
}
static void b_empty(struct tg_buf *t)
{
    (void)t;
}
static void b_magic_prefix(struct tg_buf *t)
{
    tg_put(t, "MEMTR", 5);
}
static void b_elf(struct tg_buf *t)
{
    tg_put(t, "\177ELF\2\1\1", 7);
}
static void b_long_header_cut(struct tg_buf *t)
{
    struct mtf_file_header h = tg_header_default();
    h.header_size = 200000; /* longer than STREAM_CHUNK: the skip loop must notice the end */
    tg_file_header(t, &h);
    t->len = 150000;
}

/* A complete trace whose single chunk holds `n` raw event bytes claiming `nevents` events. */
static void raw_chunk(struct tg_buf *t, const uint8_t *ev, size_t n, uint32_t nevents,
                      uint64_t first_ts, uint64_t last_ts)
{
    tg_file_header(t, NULL);
    struct tg_chunk c;
    tg_chunk_begin(&c, 77, 1, 0, 0, 0);
    tg_put(&c.ev, ev, n);
    c.h.nevents = nevents;
    c.h.first_ts_ns = first_ts;
    c.h.last_ts_ns = last_ts;
    tg_chunk_end(&c, t, NULL);
}

#define RAW(name, n, ...)                                                                          \
    static void name(struct tg_buf *t)                                                             \
    {                                                                                              \
        static const uint8_t ev[] = { __VA_ARGS__ };                                               \
        raw_chunk(t, ev, sizeof(ev), n, 0, 0);                                                     \
    }

RAW(b_kind_zero, 1, 0, 0)
RAW(b_kind_20, 1, MTF_EV_KIND_COUNT, 0)
RAW(b_kind_31, 1, 31 | MTF_EVF_FAILED, 0)
RAW(b_class_3, 1, MTF_EV_MALLOC | MTF_EVF_CLASS, 0, 3, 0, 0, 0, 0)
RAW(b_snapshot_reason, 1, MTF_EV_SNAPSHOT, 0, 5, 0, 0, 0, 0, 0, 0, 0)
RAW(b_snapshot_label, 1, MTF_EV_SNAPSHOT, 0, 2, 0, 0, 0, 0, 0, 0, 3, 0x41, 0x42)
RAW(b_limit_free, 1, MTF_EV_LIMIT, 0, MTF_EV_FREE, 0, 0, 0, 0, 0, 0)
RAW(b_limit_class, 1, MTF_EV_LIMIT, 0, MTF_EV_MALLOC, 2, 0, 0, 0, 0, 0)
RAW(b_failed_stack, 1, MTF_EV_STACK | MTF_EVF_FAILED, 0, 1, 0)
RAW(b_stack_id_zero, 1, MTF_EV_STACK, 0, 0, 0)
RAW(b_stack_id_big, 1, MTF_EV_STACK, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0)
RAW(b_stack_ref_big, 1, MTF_EV_MALLOC, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x20)
RAW(b_short_event, 1, MTF_EV_MALLOC, 0, 0)
RAW(b_no_dt, 1, MTF_EV_EXEC)
RAW(b_varint_11, 1, MTF_EV_FORK, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x00)
RAW(b_varint_bit64, 1, MTF_EV_FORK, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02)
RAW(b_varint_cut, 1, MTF_EV_FORK, 0, 0x80, 0x80)
RAW(b_too_many, 2, MTF_EV_EXEC, 0)
RAW(b_too_few, 1, MTF_EV_EXEC, 0, MTF_EV_EXEC, 0)
RAW(b_trailing, 1, MTF_EV_EXEC, 0, 0)

static void b_empty_claims(struct tg_buf *t)
{
    raw_chunk(t, NULL, 0, 1, 0, 0);
}
static void b_many_frames(struct tg_buf *t)
{
    /* tag, dt 0, id 1, nframes 258 (two varint bytes), then 258 one-byte frame deltas */
    uint8_t ev[5 + MTF_MAX_FRAMES_LIMIT + 2] = { MTF_EV_STACK, 0, 1, 0x82, 0x02 };
    raw_chunk(t, ev, sizeof(ev), 1, 0, 0);
}
static void b_first_ts(struct tg_buf *t)
{
    static const uint8_t ev[] = { MTF_EV_EXEC, 5 };
    raw_chunk(t, ev, sizeof(ev), 1, 4, 5);
}
static void b_last_ts(struct tg_buf *t)
{
    static const uint8_t ev[] = { MTF_EV_EXEC, 5, MTF_EV_EXEC, 1 };
    raw_chunk(t, ev, sizeof(ev), 2, 5, 5);
}

/* A chunk record whose header fields are edited after encoding one valid event. */
static void chunk_edit(struct tg_buf *t, size_t field, uint32_t value, size_t extra)
{
    tg_file_header(t, NULL);
    struct tg_chunk c;
    tg_chunk_begin(&c, 77, 1, 0, 0, 0);
    tg_chunk_event(&c, &every_kind[2]);
    size_t off = tg_chunk_end(&c, t, NULL);
    uint8_t *p = t->data + off + MTF_RECORD_HEADER_SIZE + field;
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(value >> (8 * i));
    if (extra) { /* grow the payload by `extra` zero bytes */
        for (size_t i = 0; i < extra; i++)
            tg_put(t, "", 1);
        uint8_t *sz = t->data + off + offsetof(struct mtf_record_header, payload_size);
        uint32_t n = (uint32_t)(t->len - off - MTF_RECORD_HEADER_SIZE);
        for (int i = 0; i < 4; i++)
            sz[i] = (uint8_t)(n >> (8 * i));
    }
    tg_fix_crc(t, off);
}
static void b_events_size_big(struct tg_buf *t)
{
    chunk_edit(t, offsetof(struct mtf_chunk, events_size), 1000, 0);
}
static void b_events_size_tail(struct tg_buf *t)
{
    chunk_edit(t, offsetof(struct mtf_chunk, thread_serial), 1, 3);
}
static void b_serial_zero(struct tg_buf *t)
{
    chunk_edit(t, offsetof(struct mtf_chunk, thread_serial), 0, 0);
}
static void b_chunk_flags(struct tg_buf *t)
{
    chunk_edit(t, offsetof(struct mtf_chunk, flags), 0x20, 0);
}
static void b_chunk_short(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    tg_record(t, MTF_REC_EVENTS, "0123456789", 10);
}

static void b_record_magic(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    size_t off = tg_record(t, MTF_REC_LOSS, "0123456789abcdef01234567", 24);
    t->data[off] ^= 0x20;
}
static void b_record_huge(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    size_t off = tg_record(t, MTF_REC_EVENTS, "", 0);
    uint32_t n = MTF_RECORD_MAX_SIZE + 1;
    for (int i = 0; i < 4; i++)
        t->data[off + offsetof(struct mtf_record_header, payload_size) + i] =
            (uint8_t)(n >> (8 * i));
}
static void b_record_flags(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    size_t off = tg_loss(t, &(struct mtf_loss){ .reason = MTF_LOSS_WRITER, .count = 1 });
    t->data[off + offsetof(struct mtf_record_header, flags)] = 1;
    tg_fix_crc(t, off);
}
static void b_crc(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    size_t off = tg_loss(t, &(struct mtf_loss){ .reason = MTF_LOSS_WRITER, .count = 1 });
    t->data[off + offsetof(struct mtf_record_header, crc32c)] ^= 1;
}
static void b_header_cut(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    tg_put(t, "MTCR\3\0", 6);
}

static void b_zero_tail(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    tg_loss(t, &(struct mtf_loss){ .reason = MTF_LOSS_WRITER, .count = 1 });
    for (int i = 0; i < 100000; i++) /* more than one STREAM_CHUNK of zeros */
        tg_put(t, "", 1);
}
static void b_short_zero_tail(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    tg_put(t, "\0\0\0\0\0", 5);
}
static void b_zeros_then_data(struct tg_buf *t)
{
    b_zero_tail(t);
    tg_put(t, "x", 1);
}

static void b_loss_reason(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    tg_loss(t, &(struct mtf_loss){ .reason = 9 });
}
static void b_loss_tail(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    tg_record(t, MTF_REC_LOSS, "0123456789abcdef01234567x", 25);
}
static void b_end_reason(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    struct mtf_end e = tg_end_default();
    e.reason = 9;
    tg_end(t, &e);
}
static void b_end_short(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    tg_record(t, MTF_REC_END, "0123456789", 10);
}
static void b_after_end(struct tg_buf *t)
{
    struct mtf_end e = tg_end_default();
    tg_file_header(t, NULL);
    tg_end(t, &e);
    tg_loss(t, &(struct mtf_loss){ .reason = 9, .count = 1 });
}

static void process(struct tg_buf *t, uint32_t exe_len, uint32_t argv_len, uint32_t argc,
                    const char *strings, size_t n)
{
    struct tg_buf p = { 0 };
    tg_u64(&p, 1);
    tg_u32(&p, exe_len);
    tg_u32(&p, argv_len);
    tg_u32(&p, 0);
    tg_u32(&p, argc);
    tg_put(&p, strings, n);
    tg_file_header(t, NULL);
    tg_record(t, MTF_REC_PROCESS, p.data, p.len);
    tg_buf_free(&p);
}
static void b_proc_argc(struct tg_buf *t)
{
    process(t, 1, 4, 3, "xa\0b\0", 5);
}
static void b_proc_argv_tail(struct tg_buf *t)
{
    process(t, 1, 3, 1, "xa\0b", 4);
}
static void b_proc_long(struct tg_buf *t)
{
    process(t, 0xfffffff0, 2, 1, "xa\0", 3);
}
static void b_proc_nul(struct tg_buf *t)
{
    process(t, 3, 0, 0, "a\0b", 3);
}
static void b_proc_tail(struct tg_buf *t)
{
    process(t, 1, 0, 0, "xyz", 3);
}
static void b_proc_short(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    tg_record(t, MTF_REC_PROCESS, "0123", 4);
}

static void one_module(struct tg_buf *t, struct tg_module m)
{
    tg_file_header(t, NULL);
    tg_modules(t, 1, &m, 1);
}
static void b_mod_id(struct tg_buf *t)
{
    one_module(t, (struct tg_module){ .id = 0, .action = MTF_MOD_LOAD, .path = "a" });
}
static void b_mod_action(struct tg_buf *t)
{
    one_module(t, (struct tg_module){ .id = 1, .action = 3, .path = "a" });
}
static void b_mod_flags(struct tg_buf *t)
{
    one_module(t, (struct tg_module){ .id = 1, .action = MTF_MOD_LOAD, .flags = 8 });
}
static void b_mod_unload(struct tg_buf *t)
{
    one_module(t, (struct tg_module){ .id = 1, .action = MTF_MOD_UNLOAD, .path = "a" });
}
static void b_mod_nul(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    size_t off =
        tg_modules(t, 1, &(struct tg_module){ .id = 1, .action = MTF_MOD_LOAD, .path = "ab" }, 1);
    t->data[off + MTF_RECORD_HEADER_SIZE + MTF_MODULES_SIZE + MTF_MODULE_SIZE] = 0;
    tg_fix_crc(t, off);
}
static void b_mod_count(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    size_t off =
        tg_modules(t, 1, &(struct tg_module){ .id = 1, .action = MTF_MOD_LOAD, .path = "ab" }, 1);
    t->data[off + MTF_RECORD_HEADER_SIZE + offsetof(struct mtf_modules, count)] = 2;
    tg_fix_crc(t, off);
}
static void b_mod_count_huge(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    size_t off = tg_modules(t, 1, NULL, 0);
    memset(t->data + off + MTF_RECORD_HEADER_SIZE + offsetof(struct mtf_modules, count), 0xff, 4);
    tg_fix_crc(t, off);
}
static void b_mod_segs(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    size_t off =
        tg_modules(t, 1, &(struct tg_module){ .id = 1, .action = MTF_MOD_LOAD, .path = "ab" }, 1);
    t->data[off + MTF_RECORD_HEADER_SIZE + MTF_MODULES_SIZE + offsetof(struct mtf_module, nseg)] =
        1;
    tg_fix_crc(t, off);
}
static void b_mod_tail(struct tg_buf *t)
{
    struct tg_buf p = { 0 };
    tg_u64(&p, 1);
    tg_u32(&p, 0);
    tg_u32(&p, 0);
    tg_put(&p, "zz", 2);
    tg_file_header(t, NULL);
    tg_record(t, MTF_REC_MODULES, p.data, p.len);
    tg_buf_free(&p);
}
static void b_mod_short(struct tg_buf *t)
{
    tg_file_header(t, NULL);
    tg_record(t, MTF_REC_MODULES, "0123", 4);
}

static const struct bad_case bad_cases[] = {
    { "empty file", b_empty, RD_ERR_TRUNC, "offset 0: empty file", 0 },
    { "magic prefix only", b_magic_prefix, RD_ERR_TRUNC,
      "offset 0: file ends inside the file header", 0 },
    { "an ELF file", b_elf, RD_ERR_FORMAT, "offset 0: not a memtrace trace", 0 },
    { "bad magic", b_bad_magic, RD_ERR_FORMAT, "offset 0: not a memtrace trace", 0 },
    { "major 3", b_major, RD_ERR_FORMAT, "offset 8: unsupported format version 3", 0 },
    { "header_size 50", b_header_size, RD_ERR_CORRUPT, "offset 12: header_size 50 out of range",
      0 },
    { "origin 3", b_origin, RD_ERR_CORRUPT, "offset 24: unknown origin 3", 0 },
    { "page size 3000", b_page, RD_ERR_CORRUPT, "page_size 3000 is not a power of two", 0 },
    { "max_frames 257", b_frames, RD_ERR_CORRUPT, "max_frames 257 exceeds the limit", 0 },
    { "pointer size 2", b_ptr, RD_ERR_CORRUPT, "pointer_size 2", 0 },
    { "long header cut", b_long_header_cut, RD_ERR_TRUNC, "file ends inside the file header", 0 },
    { "record magic", b_record_magic, RD_ERR_CORRUPT, "bad record magic", 0 },
    { "record too large", b_record_huge, RD_ERR_CORRUPT, "exceeds the 16777216-byte limit", 0 },
    { "record flags", b_record_flags, RD_ERR_CORRUPT, "record flags 0x1", 0 },
    { "crc", b_crc, RD_ERR_CORRUPT, "record crc mismatch (type 5, 24 bytes)", 0 },
    { "record header cut", b_header_cut, RD_ERR_TRUNC, "file ends inside a record header", 0 },
    { "zero-filled tail", b_zero_tail, RD_ERR_TRUNC, "file ends in 100000 zero bytes", 1 },
    { "short zero tail", b_short_zero_tail, RD_ERR_TRUNC, "file ends in 5 zero bytes", 0 },
    { "zeros then data", b_zeros_then_data, RD_ERR_CORRUPT, "bad record magic 0x00000000", 1 },
    { "kind 0", b_kind_zero, RD_ERR_CORRUPT, "event 1 of 1 at offset", 0 },
    { "kind 20", b_kind_20, RD_ERR_CORRUPT, "unknown event kind 20", 0 },
    { "kind 31", b_kind_31, RD_ERR_CORRUPT, "unknown event kind 31", 0 },
    { "class 3", b_class_3, RD_ERR_CORRUPT, "class 3 on a malloc event", 0 },
    { "snapshot reason 5", b_snapshot_reason, RD_ERR_CORRUPT, "snapshot reason 5 unknown", 0 },
    { "label past the end", b_snapshot_label, RD_ERR_CORRUPT, "snapshot label of 3 bytes", 0 },
    { "limit on free", b_limit_free, RD_ERR_CORRUPT, "limit refused a call of kind 5", 0 },
    { "limit class 2", b_limit_class, RD_ERR_CORRUPT, "limit class 2 mode 0", 0 },
    { "FAILED on stack", b_failed_stack, RD_ERR_CORRUPT, "on a stack definition", 0 },
    { "stack id 0", b_stack_id_zero, RD_ERR_CORRUPT, "stack id 0 out of range", 0 },
    { "stack id 2^32", b_stack_id_big, RD_ERR_CORRUPT, "stack id 4294967296 out of range", 0 },
    { "stack ref 2^32", b_stack_ref_big, RD_ERR_CORRUPT, "stack id 4294967296 out of range", 0 },
    { "258 frames", b_many_frames, RD_ERR_CORRUPT, "has 258 frames (limit 257)", 0 },
    { "event cut short", b_short_event, RD_ERR_CORRUPT, "varint runs past the end", 0 },
    { "event without dt", b_no_dt, RD_ERR_CORRUPT, "varint runs past the end", 0 },
    { "11-byte varint", b_varint_11, RD_ERR_CORRUPT, "varint longer than 64 bits", 0 },
    { "varint bit 64", b_varint_bit64, RD_ERR_CORRUPT, "varint longer than 64 bits", 0 },
    { "varint cut", b_varint_cut, RD_ERR_CORRUPT, "varint runs past the end", 0 },
    { "nevents too high", b_too_many, RD_ERR_CORRUPT, "event 2 of 2", 0 },
    { "nevents too low", b_too_few, RD_ERR_CORRUPT, "2 bytes left after its 1 events", 0 },
    { "byte after last event", b_trailing, RD_ERR_CORRUPT, "1 bytes left after its 1 events", 0 },
    { "events claimed, none", b_empty_claims, RD_ERR_CORRUPT, "event 1 of 1", 0 },
    { "first_ts", b_first_ts, RD_ERR_CORRUPT, "first event at 5 ns, header says 4", 0 },
    { "last_ts", b_last_ts, RD_ERR_CORRUPT, "last event at 6 ns, header says 5", 0 },
    { "events_size too big", b_events_size_big, RD_ERR_CORRUPT, "events_size 1000 exceeds", 0 },
    { "bytes after events_size", b_events_size_tail, RD_ERR_CORRUPT, "3 bytes after its last field",
      0 },
    { "thread_serial 0", b_serial_zero, RD_ERR_CORRUPT, "thread_serial is 0", 0 },
    { "chunk flags", b_chunk_flags, RD_ERR_CORRUPT, "unknown chunk flags 0x20", 0 },
    { "chunk too short", b_chunk_short, RD_ERR_CORRUPT, "EVENTS record too short", 0 },
    { "loss reason", b_loss_reason, RD_ERR_CORRUPT, "LOSS record: unknown reason 9", 0 },
    { "loss tail", b_loss_tail, RD_ERR_CORRUPT, "LOSS record: 1 bytes after its last field", 0 },
    { "end reason", b_end_reason, RD_ERR_CORRUPT, "END record: unknown reason 9", 0 },
    { "end short", b_end_short, RD_ERR_CORRUPT, "END record too short", 0 },
    { "bad record after END", b_after_end, RD_ERR_CORRUPT, "LOSS record: unknown reason 9", 1 },
    { "argc", b_proc_argc, RD_ERR_CORRUPT, "argc is 3 but the command line holds 2", 0 },
    { "argv tail", b_proc_argv_tail, RD_ERR_CORRUPT, "and a tail", 0 },
    { "process strings", b_proc_long, RD_ERR_CORRUPT, "exceed the", 0 },
    { "process NUL", b_proc_nul, RD_ERR_CORRUPT, "NUL inside a path", 0 },
    { "process tail", b_proc_tail, RD_ERR_CORRUPT, "PROCESS record: 2 bytes after its last field",
      0 },
    { "process short", b_proc_short, RD_ERR_CORRUPT, "PROCESS record too short", 0 },
    { "module id 0", b_mod_id, RD_ERR_CORRUPT, "entry 1 has id 0", 0 },
    { "module action", b_mod_action, RD_ERR_CORRUPT, "unknown action 3", 0 },
    { "module flags", b_mod_flags, RD_ERR_CORRUPT, "unknown flags 0x8", 0 },
    { "module unload path", b_mod_unload, RD_ERR_CORRUPT, "unload of module 1 carries 1 bytes", 0 },
    { "module path NUL", b_mod_nul, RD_ERR_CORRUPT, "NUL inside the path of module 1", 0 },
    { "module count", b_mod_count, RD_ERR_CORRUPT, "entry 2 of 2 runs past", 0 },
    { "module count 2^32-1", b_mod_count_huge, RD_ERR_CORRUPT, "entry 1 of 4294967295 runs past",
      0 },
    { "module segments", b_mod_segs, RD_ERR_CORRUPT, "entry 1 of 1 (id 1) runs past", 0 },
    { "modules tail", b_mod_tail, RD_ERR_CORRUPT, "MODULES record: 2 bytes after its last field",
      0 },
    { "modules short", b_mod_short, RD_ERR_CORRUPT, "MODULES record too short", 0 },
};

#define NBAD (sizeof(bad_cases) / sizeof(bad_cases[0]))

/* The parameter is an index into bad_cases, not the struct: Criterion re-executes each test in
 * a new process (another ASLR base) and copies parameter bytes, so the pointers inside a case
 * (name, builder) would dangle there, while the table itself is the same in every process. */
ParameterizedTestParameters(reader, rejects_malformed_input_with_its_offset)
{
    static size_t index[NBAD];
    for (size_t i = 0; i < NBAD; i++)
        index[i] = i;
    return cr_make_param_array(size_t, index, NBAD);
}

ParameterizedTest(size_t *i, reader, rejects_malformed_input_with_its_offset)
{
    cr_assert(lt(sz, *i, NBAD));
    const struct bad_case *c = &bad_cases[*i];
    struct tg_buf t = { 0 };
    c->build(&t);
    struct run run;
    uint8_t *copy = malloc(t.len + 1); /* exact size for ASan */
    if (t.len > 0)
        memcpy(copy, t.data, t.len);
    run_mem(copy, t.len, &run);
    cr_expect(eq(int, run.rc, c->rc), "%s: %s", c->name, run.err);
    cr_expect(ne(ptr, strstr(run.err, c->msg), NULL), "%s: \"%s\" lacks \"%s\"", c->name, run.err,
              c->msg);
    cr_expect(eq(int, strncmp(run.err, "<memory>: offset ", 17), 0), "%s: %s", c->name, run.err);
    cr_expect(eq(sz, run.n, c->items), "%s: a bad record yields nothing", c->name);
    cr_expect(eq(int, run.st.truncated, c->rc == RD_ERR_TRUNC), "%s", c->name);
    cr_expect(eq(u64, run.st.valid_bytes + run.st.lost_bytes, t.len), "%s: %s", c->name, run.err);

    /* The streaming path must agree with the memory path, byte for byte. */
    const char *path = tmp_path("bad.mtr");
    cr_assert(eq(int, tg_write_file(path, copy, t.len), 0));
    struct run streamed;
    run_file(path, &streamed);
    cr_expect(eq(int, streamed.rc, run.rc), "%s: stream %s", c->name, streamed.err);
    cr_expect(eq(str, streamed.err + strlen(path), run.err + strlen("<memory>")), "%s", c->name);
    cr_expect(eq(u64, streamed.st.lost_bytes, run.st.lost_bytes), "%s", c->name);
    run_free(&streamed);
    run_free(&run);
    free(copy);
    tg_buf_free(&t);
}

/* ---- sources --------------------------------------------------------------------------------- */

Test(reader, reports_missing_file_as_io_error_with_strerror)
{
    const char *path = tmp_path("missing.mtr");
    struct reader *r;
    cr_assert(eq(int, reader_open(&r, path), RD_ERR_IO));
    char want[4300];
    snprintf(want, sizeof(want), "%s: No such file or directory", path);
    cr_expect(eq(str, (char *)reader_error(r), want));
    reader_close(r);
}

Test(reader, reads_stdin_when_path_is_dash)
{
    struct tg_buf t = { 0 };
    size_t bounds[16], nb;
    build_sample(&t, bounds, &nb);
    const char *path = tmp_path("in.mtr");
    cr_assert(eq(int, tg_write_file(path, t.data, t.len - 3), 0));
    cr_assert(ne(ptr, freopen(path, "rb", stdin), NULL));
    struct run run;
    run_file("-", &run);
    cr_expect(eq(int, run.rc, RD_ERR_TRUNC));
    cr_expect(eq(int, strncmp(run.err, "<stdin>: offset ", 16), 0), "%s", run.err);
    cr_expect(eq(u64, run.st.valid_bytes, bounds[nb - 2]));
    run_free(&run);
    tg_buf_free(&t);
}

/* Feed `n` bytes through a pipe from a child process and read them as a stream: no size is
 * known up front, and lost bytes must be counted by draining. */
static void run_pipe(const void *data, size_t n, struct run *run)
{
    int fds[2];
    cr_assert(eq(int, pipe(fds), 0));
    pid_t pid = fork();
    cr_assert(ge(int, pid, 0));
    if (pid == 0) {
        close(fds[0]);
        const uint8_t *p = data;
        while (n > 0) {
            ssize_t k = write(fds[1], p, n);
            if (k <= 0)
                _exit(1);
            p += k;
            n -= (size_t)k;
        }
        _exit(0);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "rb");
    cr_assert(ne(ptr, f, NULL));
    struct reader *r;
    int rc = reader_open_stream(&r, f, "pipe");
    run_reader(r, rc, run);
    fclose(f);
    int status;
    cr_assert(eq(int, waitpid(pid, &status, 0), pid));
}

Test(reader, counts_lost_bytes_of_a_pipe_by_draining_it)
{
    struct tg_buf t = { 0 };
    size_t bounds[16], nb;
    build_sample(&t, bounds, &nb);
    t.data[bounds[3] + 20] ^= 1; /* corrupt the unknown record: everything after it is lost */
    for (int i = 0; i < 300000; i++)
        tg_put(&t, "z", 1);
    struct run run;
    run_pipe(t.data, t.len, &run);
    cr_expect(eq(int, run.rc, RD_ERR_CORRUPT), "%s", run.err);
    cr_expect(eq(u64, run.st.valid_bytes, bounds[3]));
    cr_expect(eq(u64, run.st.lost_bytes, t.len - bounds[3]));
    cr_expect(eq(int, strncmp(run.err, "pipe: offset ", 13), 0), "%s", run.err);
    run_free(&run);
    tg_buf_free(&t);
}

Test(reader, streams_a_record_larger_than_its_first_buffer)
{
    /* ~2 MiB of events in one chunk: the stream buffer grows to the record, not to the file. */
    struct tg_buf t = { 0 };
    struct mtf_end end = tg_end_default();
    struct tg_chunk c;
    tg_file_header(&t, NULL);
    for (int chunk = 0; chunk < 3; chunk++) {
        tg_chunk_begin(&c, 9, 1, 0, 0, 0);
        for (uint64_t i = 0; i < 200000; i++) {
            struct rd_event ev = { .kind = MTF_EV_MALLOC,
                                   .ts_ns = i,
                                   .addr = i * 4096 + 1,
                                   .size = i,
                                   .stack = (uint32_t)(i % 7) };
            tg_chunk_event(&c, &ev);
        }
        tg_chunk_end(&c, &t, &end);
    }
    tg_end(&t, &end);
    const char *path = tmp_path("big.mtr");
    cr_assert(eq(int, tg_write_file(path, t.data, t.len), 0));
    struct reader *r;
    cr_assert(eq(int, reader_open(&r, path), 0));
    struct rd_item item;
    uint64_t n = 0, sum = 0;
    int rc;
    while ((rc = reader_next(r, &item)) > 0) {
        if (item.type == RD_ITEM_EVENT) {
            cr_assert(eq(u64, item.ev.addr, (n % 200000) * 4096 + 1));
            sum += item.ev.size;
            n++;
        }
    }
    cr_expect(eq(int, rc, 0), "%s", reader_error(r));
    cr_expect(eq(u64, n, 600000));
    cr_expect(eq(u64, sum, 3ULL * 199999 * 200000 / 2));
    cr_expect(eq(int, reader_status(r)->complete, 1));
    reader_close(r);
    tg_buf_free(&t);
}

/* ---- memtrace-report ------------------------------------------------------------------------- */

struct cli {
    int status; /* exit status, or 128 + signal */
    char *out, *err;
};

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(ne(ptr, f, NULL), "%s: %s", path, strerror(errno));
    char *s = NULL;
    size_t cap = 0, n = 0, k;
    do {
        cap = cap ? 2 * cap : 4096;
        s = realloc(s, cap + 1);
        cr_assert(ne(ptr, s, NULL));
        k = fread(s + n, 1, cap - n, f);
        n += k;
    } while (n == cap);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* Run build/memtrace-report (or $MT_BUILD_DIR/memtrace-report) with `args` (NULL-terminated),
 * stdin from `in` (NULL: /dev/null), capturing stdout and stderr. */
static struct cli run_cli(const char *in, const char *const *args)
{
    const char *dir = getenv("MT_BUILD_DIR");
    char exe[4200];
    snprintf(exe, sizeof(exe), "%s/memtrace-report", dir && *dir ? dir : "build");
    cr_assert(eq(int, access(exe, X_OK), 0),
              "%s not found: build it first (make build/memtrace-report)", exe);
    char *argv[16] = { exe };
    size_t n = 1;
    for (; args[n - 1]; n++)
        argv[n] = (char *)args[n - 1];
    argv[n] = NULL;

    char out_path[4200], err_path[4200];
    snprintf(out_path, sizeof(out_path), "%s/stdout", tmpdir);
    snprintf(err_path, sizeof(err_path), "%s/stderr", tmpdir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, in ? in : "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int rc = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert(eq(int, rc, 0), "posix_spawn %s: %s", exe, strerror(rc));
    int ws;
    cr_assert(eq(int, waitpid(pid, &ws, 0), pid));
    struct cli c = { .status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws) };
    c.out = slurp(out_path);
    c.err = slurp(err_path);
    return c;
}

static void cli_free(struct cli *c)
{
    free(c->out);
    free(c->err);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Write the sample trace, cut to `len` bytes (0: whole), to tmpdir/name. */
static const char *sample_file(const char *name, size_t len, size_t *bounds, size_t *nb)
{
    struct tg_buf t = { 0 };
    size_t b[16], n;
    build_sample(&t, bounds ? bounds : b, nb ? nb : &n);
    const char *path = tmp_path(name);
    cr_assert(eq(int, tg_write_file(path, t.data, len ? len : t.len), 0));
    tg_buf_free(&t);
    return path;
}

Test(cli, exits_0_and_summarizes_a_complete_trace)
{
    const char *path = sample_file("ok.mtr", 0, NULL, NULL);
    struct cli c = run_cli(NULL, (const char *[]){ path, NULL });
    cr_expect(eq(int, c.status, 0), "%s", c.err);
    cr_expect(eq(str, c.err, ""));
    cr_expect(ne(ptr, strstr(c.out, "process   /usr/bin/app, pid 4242, parent 1"), NULL), "%s",
              c.out);
    cr_expect(ne(ptr, strstr(c.out, "\n  malloc                      3  (1 failed)\n"), NULL), "%s",
              c.out);
    cr_expect(ne(ptr, strstr(c.out, "dropped   9 calls were not recorded"), NULL), "%s", c.out);
    cr_expect(ne(ptr, strstr(c.out, "command   app --flag x y\n"), NULL), "%s", c.out);
    cr_expect(ne(ptr, strstr(c.out, "LIMIT REACHED: 1 call was refused by a memory cap\n"), NULL),
              "%s", c.out);
    cr_expect(ne(ptr, strstr(c.out, "\nmemoryUsage "), NULL), "%s", c.out);
    cr_expect(ne(ptr, strstr(c.out, "\ntop sites by peak bytes\n"), NULL), "%s", c.out);
    cr_expect(ne(ptr, strstr(c.out, "\nleaks     "), NULL), "%s", c.out);
    cr_expect(ne(ptr, strstr(c.out, "status    complete: the process exited with status 0"), NULL),
              "%s", c.out);
    cli_free(&c);
}

Test(cli, exits_2_and_names_the_offset_when_truncated)
{
    size_t bounds[16], nb;
    struct tg_buf t = { 0 };
    build_sample(&t, bounds, &nb);
    tg_buf_free(&t);
    const char *path = sample_file("cut.mtr", bounds[5] + 30, NULL, NULL);
    struct cli c = run_cli(NULL, (const char *[]){ path, NULL });
    cr_expect(eq(int, c.status, 2));
    char want[4400];
    snprintf(want, sizeof(want),
             "memtrace-report: %s: offset %zu: file ends inside a record (needs %zu bytes, 30 "
             "present): 30 bytes lost\n",
             path, bounds[5], bounds[6] - bounds[5]);
    cr_expect(eq(str, c.err, want));
    cr_expect(ne(ptr, strstr(c.out, "status    TRUNCATED at offset"), NULL), "%s", c.out);
    cr_expect(ne(ptr, strstr(c.out, "  malloc                      3  (1 failed)\n"), NULL),
              "the counts before the cut are reported: %s", c.out);
    cr_expect(ne(ptr, strstr(c.out, "INCOMPLETE"), NULL), "%s", c.out);
    cli_free(&c);
}

Test(cli, exits_2_when_a_record_is_corrupt)
{
    struct tg_buf t = { 0 };
    size_t bounds[16], nb;
    build_sample(&t, bounds, &nb);
    t.data[bounds[2] + 40] ^= 4;
    const char *path = tmp_path("bad.mtr");
    cr_assert(eq(int, tg_write_file(path, t.data, t.len), 0));
    struct cli c = run_cli(NULL, (const char *[]){ "--json", path, NULL });
    cr_expect(eq(int, c.status, 2));
    cr_expect(eq(sz, count_lines(c.err), 1), "one line: %s", c.err);
    cr_expect(ne(ptr, strstr(c.err, ": record crc mismatch (type 3, "), NULL), "%s", c.err);
    cr_expect(ne(ptr, strstr(c.out, "\"complete\": false"), NULL), "%s", c.out);
    cr_expect(ne(ptr, strstr(c.out, "\"error\": \""), NULL), "%s", c.out);
    cli_free(&c);
    tg_buf_free(&t);
}

Test(cli, exits_2_when_the_trace_has_no_end_record)
{
    size_t bounds[16], nb;
    struct tg_buf t = { 0 };
    build_sample(&t, bounds, &nb);
    tg_buf_free(&t);
    const char *path = sample_file("noend.mtr", bounds[nb - 2], NULL, NULL);
    struct cli c = run_cli(NULL, (const char *[]){ path, NULL });
    cr_expect(eq(int, c.status, 2));
    cr_expect(eq(sz, count_lines(c.err), 1), "%s", c.err);
    cr_expect(ne(ptr, strstr(c.err, ": no END record: the trace is incomplete"), NULL), "%s",
              c.err);
    cr_expect(ne(ptr, strstr(c.out, "status    INCOMPLETE"), NULL), "%s", c.out);
    cli_free(&c);

    c = run_cli(NULL, (const char *[]){ "--json", path, NULL });
    cr_expect(eq(int, c.status, 2));
    char want[64];
    snprintf(want, sizeof(want), "\"error_offset\": %zu,", bounds[nb - 2]);
    cr_expect(ne(ptr, strstr(c.out, want), NULL), "the offset the message names:\n%s", c.out);
    cr_expect(ne(ptr, strstr(c.out, "\"complete\": false,"), NULL), "%s", c.out);
    cr_expect(ne(ptr, strstr(c.out, "\"truncated\": false,"), NULL), "%s", c.out);
    cr_expect(ne(ptr, strstr(c.out, "\"end\": null,"), NULL), "%s", c.out);
    cli_free(&c);
}

Test(cli, exits_2_for_a_file_that_is_not_a_trace)
{
    const char *path = tmp_path("notes.txt");
    cr_assert(eq(int, tg_write_file(path, "hello, world\n", 13), 0));
    struct cli c = run_cli(NULL, (const char *[]){ path, NULL });
    cr_expect(eq(int, c.status, 2));
    char want[4400];
    snprintf(want, sizeof(want),
             "memtrace-report: %s: offset 0: not a memtrace trace (bad magic)\n", path);
    cr_expect(eq(str, c.err, want));
    cli_free(&c);
}

Test(cli, exits_3_with_strerror_when_the_file_is_missing)
{
    const char *path = tmp_path("missing.mtr");
    struct cli c = run_cli(NULL, (const char *[]){ "--events", path, NULL });
    cr_expect(eq(int, c.status, 3));
    char want[4400];
    snprintf(want, sizeof(want), "memtrace-report: %s: No such file or directory\n", path);
    cr_expect(eq(str, c.err, want));
    cr_expect(eq(str, c.out, ""));
    cli_free(&c);
}

Test(cli, exits_1_on_bad_usage)
{
    static const char *const cases[][3] = {
        { NULL },
        { "--bogus", "x.mtr", NULL },
        { "-q", "x.mtr", NULL },
        { "a.mtr", "b.mtr", NULL },
        { "--events", "--json", NULL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cli c = run_cli(NULL, cases[i]);
        cr_expect(eq(int, c.status, 1), "case %zu", i);
        cr_expect(eq(int, strncmp(c.err, "memtrace-report: ", 17), 0), "case %zu: %s", i, c.err);
        cr_expect(eq(str, c.out, ""));
        cli_free(&c);
    }
}

Test(cli, exits_0_on_help_with_exit_statuses_and_examples)
{
    struct cli c = run_cli(NULL, (const char *[]){ "--help", NULL });
    cr_expect(eq(int, c.status, 0));
    cr_expect(ne(ptr, strstr(c.out, "Usage: memtrace-report"), NULL));
    cr_expect(ne(ptr, strstr(c.out, "Exit status:"), NULL));
    cr_expect(ne(ptr, strstr(c.out, "Examples:"), NULL));
    cr_expect(eq(str, c.err, ""));
    cli_free(&c);
}

Test(cli, prints_one_greppable_line_per_item_with_events)
{
    const char *path = sample_file("ev.mtr", 0, NULL, NULL);
    struct cli c = run_cli(NULL, (const char *[]){ "--events", path, NULL });
    cr_expect(eq(int, c.status, 0), "%s", c.err);
    static const char *const lines[] = {
        "header version=2.1 header_size=",
        "\nts=1005 process exe=\"/usr/bin/app\" argc=3 argv=\"app\",\"--flag\",\"x y\" "
        "cwd=\"/home/u\"\n",
        "\nts=1006 module id=1 load base=0x555555554000 flags=main path=\"/usr/bin/app\" "
        "build_id=deadbeef01 segs=0x0+0x1000:r--,0x1000+0x2345:r-x,0x4000+0x100:rw-\n",
        "\nts=1006 module id=2 load base=0x7ffff7fc1000 flags=vdso path=\"\" build_id= segs=\n",
        "\nts=1006 module id=3 unload\n",
        "\nts=1001 tid=4242 thr=1 stack id=3 frames=0x401234,0x7f0000001000,0x400000\n",
        "\nts=1001 tid=4242 thr=1 stack id=4 frames=0x7fffffffe000,0x1 truncated\n",
        "\nts=1010 tid=4242 thr=1 malloc ptr=0x55d0c0 size=24 stack=3\n",
        "\nts=1011 tid=4242 thr=1 malloc ptr=0x0 size=1099511627776 stack=3 failed\n",
        "\nts=1020 tid=4242 thr=1 calloc ptr=0x55e000 nmemb=10 elsize=16 size=160 stack=4\n",
        "\nts=1030 tid=4242 thr=1 realloc old=0x55d0c0 ptr=0x560000 size=4096 pre=25 stack=3\n",
        "\nts=1040 tid=4242 thr=1 reallocarray old=0x560000 ptr=0x561000 nmemb=3 elsize=7 size=21 "
        "pre=1 stack=4\n",
        "\nts=1050 tid=4242 thr=1 free ptr=0x561000\n",
        "\nts=1060 tid=4242 thr=1 posix_memalign ptr=0x570000 align=64 size=100 stack=3\n",
        "\nts=1080 tid=4250 thr=2 memalign ptr=0x572000 align=32 size=33 stack=0 nested\n",
        "\nts=1110 tid=4250 thr=2 mmap ptr=0x7f1234560000 len=1048576 prot=rw- flags=0x22 fd=-1 "
        "off=0 anon stack=3\n",
        "\nts=1120 tid=4250 thr=2 mmap64 ptr=0x7f1234000000 len=8192 prot=r-- flags=0x2 fd=7 "
        "off=4096 file stack=4\n",
        "\nts=1130 tid=4250 thr=2 munmap ptr=0x7f1234000000 len=8192\n",
        "\nts=1131 tid=4250 thr=2 munmap ptr=0x1 len=1 failed\n",
        "\nts=1140 tid=4250 thr=2 mremap old=0x7f1234560000 old_len=1048576 ptr=0x7f2000000000 "
        "new_len=2097152 flags=0x1 pre=140 stack=3\n",
        "\nts=1150 tid=4250 thr=2 fork child=4243\n",
        "\nts=1151 tid=4250 thr=2 fork child=0 failed\n",
        "\nts=1160 tid=4250 thr=2 exec\n",
        "\nts=1170 tid=4250 thr=2 malloc ptr=0x580000 size=1000 slack=8 class=external stack=3\n",
        "\nts=1180 tid=4250 thr=2 snapshot reason=mark rss=212880000 heap_total=5850000 "
        "heap_used=1840000 external=200000000 mapped=4096 rss_peak=0 label=\"after load\"\n",
        "\nts=1190 tid=4250 thr=2 limit call=calloc class=heap mode=enomem limit=1048576 "
        "live=1000000 request=100000 stack=4\n",
        "\nts=1300 loss reason=thread tid=4260 count=7\n",
        "\nts=2000 end reason=exit status=0 threads=3 events=",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        cr_expect(ne(ptr, strstr(c.out, lines[i]), NULL), "missing line: %s\nin:\n%s", lines[i],
                  c.out);
    cr_expect(eq(sz, count_lines(c.out), 1 + 1 + 4 + 27 + 1 + 1), "one line per item:\n%s", c.out);
    cli_free(&c);
}

Test(cli, prints_json_with_counts_per_hooked_function)
{
    const char *path = sample_file("j.mtr", 0, NULL, NULL);
    struct cli c = run_cli(NULL, (const char *[]){ "-j", path, NULL });
    cr_expect(eq(int, c.status, 0), "%s", c.err);
    static const char *const keys[] = {
        "\n  \"format_version\": 1,\n",
        "\"pid\": 4242,",
        "\"parent_pid\": 1,",
        "\"origin\": \"start\",",
        "\"exe\": \"/usr/bin/app\",",
        "\"complete\": true,",
        "\"truncated\": false,",
        "\"lost_bytes\": 0,",
        "\"error\": null\n",
        "\"malloc\": 3,",
        "\"calloc\": 1,",
        "\"realloc\": 2,",
        "\"reallocarray\": 1,",
        "\"free\": 2,",
        "\"posix_memalign\": 1,",
        "\"aligned_alloc\": 1,",
        "\"memalign\": 1,",
        "\"valloc\": 1,",
        "\"pvalloc\": 1,",
        "\"mmap\": 2,",
        "\"mmap64\": 1,",
        "\"munmap\": 2,",
        "\"mremap\": 1,",
        "\"dropped\": 9\n",
        "\"stack\": 2,",
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        cr_expect(ne(ptr, strstr(c.out, keys[i]), NULL), "missing %s in:\n%s", keys[i], c.out);
    cli_free(&c);
}

Test(cli, escapes_strings_in_json_and_event_lines)
{
    static const char argv[] = "a\"b\0";
    struct tg_buf t = { 0 };
    struct mtf_end end = tg_end_default();
    tg_file_header(&t, NULL);
    tg_process(&t, 1, "/tmp/we\"ird\\\n\t\x01\xff\xc3\xa9", argv, sizeof(argv) - 1, 1, "/");
    tg_end(&t, &end);
    const char *path = tmp_path("esc.mtr");
    cr_assert(eq(int, tg_write_file(path, t.data, t.len), 0));
    struct cli c = run_cli(NULL, (const char *[]){ "--json", path, NULL });
    cr_expect(eq(int, c.status, 0), "%s", c.err);
    cr_expect(ne(ptr, strstr(c.out, "\"exe\": \"/tmp/we\\\"ird\\\\\\n\\t\\u0001\\u00ff\xc3\xa9\","),
                 NULL),
              "%s", c.out);
    cli_free(&c);
    c = run_cli(NULL, (const char *[]){ "--events", path, NULL });
    cr_expect(ne(ptr,
                 strstr(c.out, "process exe=\"/tmp/we\\\"ird\\\\\\x0a\\x09\\x01\\xff\\xc3\\xa9\" "
                               "argc=1 argv=\"a\\\"b\""),
                 NULL),
              "%s", c.out);
    cli_free(&c);
    tg_buf_free(&t);
}

Test(cli, reads_the_trace_from_stdin_when_path_is_dash)
{
    const char *path = sample_file("in.mtr", 0, NULL, NULL);
    struct cli c = run_cli(path, (const char *[]){ "--json", "-", NULL });
    cr_expect(eq(int, c.status, 0), "%s", c.err);
    cr_expect(ne(ptr, strstr(c.out, "\"path\": \"-\","), NULL), "%s", c.out);
    cr_expect(ne(ptr, strstr(c.out, "\"complete\": true,"), NULL), "%s", c.out);
    cli_free(&c);
}

Test(cli, exits_3_when_the_output_cannot_be_written)
{
    /* /dev/full fails every write with ENOSPC: the report must say so, not exit 0. */
    const char *path = sample_file("full.mtr", 0, NULL, NULL);
    const char *dir = getenv("MT_BUILD_DIR");
    char exe[4200];
    snprintf(exe, sizeof(exe), "%s/memtrace-report", dir && *dir ? dir : "build");
    char *argv[] = { exe, "--events", (char *)path, NULL };
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/full", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, tmp_path("err"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    cr_assert(eq(int, posix_spawn(&pid, exe, &fa, NULL, argv, environ), 0));
    posix_spawn_file_actions_destroy(&fa);
    int ws;
    cr_assert(eq(int, waitpid(pid, &ws, 0), pid));
    int exited_3 = WIFEXITED(ws) && WEXITSTATUS(ws) == 3;
    cr_expect(exited_3, "status 0x%x", ws);
    char *err = slurp(tmp_path("err"));
    cr_expect(ne(ptr,
                 strstr(err, "memtrace-report: <stdout>: write failed: No space left on device"),
                 NULL),
              "%s", err);
    free(err);
}

/* 0 when python3 accepts `path` as JSON, 1 when it rejects it, -1 when python3 is missing. */
static int python_json_ok(const char *path)
{
    if (system("command -v python3 >/dev/null 2>&1") != 0)
        return -1;
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "python3 -c 'import json,sys; json.load(open(sys.argv[1]))' '%s'",
             path);
    return system(cmd) == 0 ? 0 : 1;
}

Test(cli, json_parses_for_whole_cut_and_corrupt_traces)
{
    size_t bounds[16], nb;
    struct tg_buf t = { 0 };
    build_sample(&t, bounds, &nb);
    size_t cuts[] = { t.len, bounds[5] + 30, bounds[nb - 2], bounds[2] + 3 };
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        const char *path = tmp_path("cut.mtr");
        cr_assert(eq(int, tg_write_file(path, t.data, cuts[i]), 0));
        struct cli c = run_cli(NULL, (const char *[]){ "--json", path, NULL });
        cr_expect(eq(int, c.status, i == 0 ? 0 : 2), "cut %zu: %s", i, c.err);
        cr_assert(eq(int, tg_write_file(tmp_path("out.json"), c.out, strlen(c.out)), 0));
        int ok = python_json_ok(tmp_path("out.json"));
        if (ok < 0)
            cr_skip_test("python3 is not installed");
        cr_expect(eq(int, ok, 0), "cut %zu: not valid JSON:\n%s", i, c.out);
        if (i == 0) {
            cr_expect(ne(ptr, strstr(c.out, "\n  \"leaks\": {\n"), NULL), "%s", c.out);
            cr_expect(ne(ptr, strstr(c.out, "\n  \"peak\": {\n"), NULL), "%s", c.out);
            cr_expect(ne(ptr, strstr(c.out, "\n  \"top_sites\": {\n"), NULL), "%s", c.out);
            cr_expect(ne(ptr, strstr(c.out, "\n  \"timeline\": [\n"), NULL), "%s", c.out);
            cr_expect(ne(ptr, strstr(c.out, "\"refused\": 1,"), NULL), "%s", c.out);
            cr_expect(ne(ptr, strstr(c.out, "\"label\": \"after load\","), NULL), "%s", c.out);
        }
        cli_free(&c);
    }
    tg_buf_free(&t);
}

Test(cli, timeline_prints_snapshots_in_the_node_form)
{
    const char *path = sample_file("tl.mtr", 0, NULL, NULL);
    struct cli c = run_cli(NULL, (const char *[]){ "--timeline", path, NULL });
    cr_expect(eq(int, c.status, 0), "%s", c.err);
    /* the sample's mark: rss 212880000, heap_total 5850000, heap_used 1840000, external 2e8 */
    cr_expect(ne(ptr,
                 strstr(c.out, " mark     heapTotal 5.58 MB heapUsed 1.75 MB external 190.73 MB "
                               "rss 203.02 MB mapped 0.00 MB  \"after load\""),
                 NULL),
              "%s", c.out);
    cr_expect(eq(sz, count_lines(c.out), 1), "%s", c.out);
    cli_free(&c);
}

Test(cli, exits_1_on_a_bad_top_or_suppressions_file)
{
    const char *path = sample_file("s.mtr", 0, NULL, NULL);
    struct cli c = run_cli(NULL, (const char *[]){ "--top", "0", path, NULL });
    cr_expect(eq(int, c.status, 1));
    cr_expect(ne(ptr, strstr(c.err, "--top 0: expected a number"), NULL), "%s", c.err);
    cli_free(&c);
    const char *supp = tmp_path("bad.supp");
    cr_assert(eq(int, tg_write_file(supp, "leak:ok\nnope\n", 13), 0));
    c = run_cli(NULL, (const char *[]){ "--suppressions", supp, path, NULL });
    cr_expect(eq(int, c.status, 1));
    char want[4400];
    snprintf(want, sizeof(want), "memtrace-report: %s:2: expected 'leak:<pattern>', got 'nope'\n",
             supp);
    cr_expect(eq(str, c.err, want));
    cr_expect(eq(str, c.out, ""));
    cli_free(&c);
}
