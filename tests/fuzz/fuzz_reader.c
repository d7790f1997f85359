/* libFuzzer harness for report/reader.c (`make fuzz`): the reader may reject any input but must
 * never crash, hang, leak or read out of bounds. Each input is decoded twice, from memory and as
 * a stream (fmemopen: no size known, so buffer growth and draining are exercised too), and the
 * two must agree item for item and on the final status; a difference aborts. Every byte an item
 * points to is read, so ASan checks the pointers the reader hands out. A mutation almost always
 * breaks a record's CRC, which would keep the fuzzer at the framing layer: so each input is also
 * decoded once more with every record CRC recomputed, letting mutations reach record validation
 * and the event decoder.
 *
 * Seeds (tests/fuzz/corpus/) are tiny traces written by tests/unit/tracegen.c. To regenerate:
 *   cc -DFUZZ_WRITE_SEEDS -D_GNU_SOURCE -Iinclude -Icommon -Ireport -Itests/unit \
 *      tests/fuzz/fuzz_reader.c tests/unit/tracegen.c common/crc32c.c report/reader.c \
 *      -o build/write_seeds && build/write_seeds tests/fuzz/corpus
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reader.h"

#ifndef FUZZ_WRITE_SEEDS

#include "crc32c.h"

static uint64_t mix(uint64_t h, uint64_t v)
{
    return (h ^ v) * 0x100000001b3ULL;
}

static uint64_t mix_bytes(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = mix(h, b[i]);
    return h;
}

/* A digest of everything an item holds, reading every byte its pointers reach. */
static uint64_t digest(const struct rd_item *it)
{
    uint64_t h = mix(0xcbf29ce484222325ULL, it->type);
    switch (it->type) {
    case RD_ITEM_EVENT: {
        struct rd_event ev = it->ev;
        h = mix_bytes(h, ev.frames, ev.nframes * sizeof(uint64_t));
        ev.frames = NULL;
        h = mix_bytes(h, &ev, sizeof(ev));
        break;
    }
    case RD_ITEM_PROCESS:
        h = mix(h, it->process.ts_ns);
        h = mix_bytes(h, it->process.exe, strlen(it->process.exe));
        h = mix_bytes(h, it->process.argv, it->process.argv_len);
        h = mix_bytes(h, it->process.cwd, strlen(it->process.cwd));
        h = mix(h, it->process.argc);
        break;
    case RD_ITEM_MODULE:
        h = mix(mix(mix(h, it->module.id), it->module.base), it->module.flags);
        h = mix_bytes(h, it->module.path, strlen(it->module.path));
        h = mix_bytes(h, it->module.build_id, it->module.build_id_len);
        h = mix_bytes(h, it->module.segs, it->module.nseg * sizeof(struct mtf_segment));
        break;
    case RD_ITEM_END:
        h = mix_bytes(h, &it->end, sizeof(it->end));
        break;
    case RD_ITEM_LOSS:
        h = mix_bytes(h, &it->loss, sizeof(it->loss));
        break;
    }
    return h;
}

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_reader: memory and stream decoding disagree: %s\n", what);
        abort();
    }
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Recompute the CRC of every record that is framed well enough to find (trace-format.md §4). */
static void fix_crcs(uint8_t *p, size_t n)
{
    if (n < MTF_FILE_HEADER_SIZE)
        return;
    size_t off = le32(p + offsetof(struct mtf_file_header, header_size));
    while (off <= n && n - off >= MTF_RECORD_HEADER_SIZE) {
        uint8_t *h = p + off;
        uint32_t len = le32(h + offsetof(struct mtf_record_header, payload_size));
        if (le32(h) != MTF_RECORD_MAGIC || len > n - off - MTF_RECORD_HEADER_SIZE)
            return;
        uint32_t c = mt_crc32c(0, h, MTF_RECORD_CRC_SPAN);
        c = mt_crc32c(c, h + MTF_RECORD_HEADER_SIZE, len);
        for (int i = 0; i < 4; i++)
            h[offsetof(struct mtf_record_header, crc32c) + i] = (uint8_t)(c >> (8 * i));
        off += MTF_RECORD_HEADER_SIZE + (size_t)len;
    }
}

static void decode_both(const uint8_t *data, size_t size)
{
    struct reader *a = NULL, *b = NULL;
    FILE *f = size > 0 ? fmemopen((void *)data, size, "rb") : NULL;
    int ra = reader_open_mem(&a, data, size);
    int rb = f ? reader_open_stream(&b, f, "<memory>") : ra;
    if (a == NULL || (f && b == NULL))
        abort(); /* only RD_ERR_NOMEM may leave no reader, and inputs are small */
    check(ra == rb, "open result");
    struct rd_item ia, ib;
    while (ra == 0 || ra == 1) {
        ra = reader_next(a, &ia);
        if (b) {
            rb = reader_next(b, &ib);
            check(ra == rb, "reader_next result");
        }
        if (ra == 1) {
            uint64_t da = digest(&ia);
            check(!b || da == digest(&ib), "item");
        }
        if (ra == 0)
            break;
    }
    const struct rd_status *sa = reader_status(a);
    check(reader_next(a, &ia) == ra, "sticky result");
    check(ra == 0 || sa->valid_bytes + sa->lost_bytes == size, "valid + lost bytes = input");
    check(ra != 0 || sa->valid_bytes == size, "clean end consumed the input");
    if (b) {
        const struct rd_status *sb = reader_status(b);
        check(sa->valid_bytes == sb->valid_bytes, "valid_bytes");
        check(sa->lost_bytes == sb->lost_bytes, "lost_bytes");
        check(sa->events == sb->events && sa->records == sb->records, "counts");
        check(sa->complete == sb->complete && sa->truncated == sb->truncated, "flags");
        check(sa->error_offset == sb->error_offset, "error_offset");
        check(strcmp(reader_error(a), reader_error(b)) == 0, "message");
    }
    reader_close(a);
    reader_close(b);
    if (f)
        fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode_both(data, size);
    uint8_t *copy = malloc(size ? size : 1); /* exact size, so ASan sees any overread */
    if (copy == NULL)
        return 0;
    if (size > 0)
        memcpy(copy, data, size);
    fix_crcs(copy, size);
    decode_both(copy, size);
    free(copy);
    return 0;
}

#else /* FUZZ_WRITE_SEEDS: write the seed corpus with tracegen */

#include "tracegen.h"

static struct tg_buf t;
static const char *dir;

static void save(const char *name, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (tg_write_file(path, t.data, len) != 0) {
        perror(path);
        exit(1);
    }
}

/* One chunk with one event of every kind, two stacks, failed and nested flags. */
static void chunk_all_kinds(struct mtf_end *tally)
{
    static const uint64_t frames[] = { 0x401234, 0x7f0000001000, 0x400000 };
    const struct rd_event ev[] = {
        { .kind = MTF_EV_STACK, .ts_ns = 1001, .stack = 1, .nframes = 3, .frames = frames },
        { .kind = MTF_EV_STACK,
          .flags = MTF_EVF_TRUNC,
          .ts_ns = 1001,
          .stack = 2,
          .nframes = 1,
          .frames = frames },
        { .kind = MTF_EV_MALLOC, .ts_ns = 1010, .addr = 0x55d0c0, .size = 24, .stack = 1 },
        { .kind = MTF_EV_CALLOC,
          .ts_ns = 1011,
          .addr = 0x55e000,
          .nmemb = 3,
          .elsize = 8,
          .stack = 2 },
        { .kind = MTF_EV_REALLOC,
          .ts_ns = 1012,
          .old_addr = 0x55d0c0,
          .addr = 0x560000,
          .size = 99,
          .stack = 1,
          .pre_ns = 1 },
        { .kind = MTF_EV_REALLOCARRAY,
          .ts_ns = 1013,
          .old_addr = 0x560000,
          .addr = 0x561000,
          .nmemb = 2,
          .elsize = 9,
          .stack = 1,
          .pre_ns = 1 },
        { .kind = MTF_EV_FREE, .ts_ns = 1014, .addr = 0x561000 },
        { .kind = MTF_EV_POSIX_MEMALIGN,
          .ts_ns = 1015,
          .addr = 0x570000,
          .align = 64,
          .size = 64,
          .stack = 2 },
        { .kind = MTF_EV_ALIGNED_ALLOC,
          .ts_ns = 1016,
          .addr = 0x571000,
          .align = 64,
          .size = 64,
          .stack = 2 },
        { .kind = MTF_EV_MEMALIGN,
          .flags = MTF_EVF_NESTED,
          .ts_ns = 1017,
          .addr = 0x572000,
          .align = 16,
          .size = 16 },
        { .kind = MTF_EV_VALLOC, .ts_ns = 1018, .addr = 0x573000, .size = 1, .stack = 1 },
        { .kind = MTF_EV_PVALLOC, .ts_ns = 1019, .addr = 0x574000, .size = 1, .stack = 1 },
        { .kind = MTF_EV_MMAP,
          .ts_ns = 1020,
          .addr = 0x7f0000000000,
          .size = 4096,
          .prot = 3,
          .mflags = 0x22,
          .fd = -1,
          .stack = 1 },
        { .kind = MTF_EV_MMAP64,
          .flags = MTF_EVF_FAILED,
          .ts_ns = 1021,
          .size = 4096,
          .prot = 1,
          .mflags = 2,
          .fd = 3,
          .offset = 4096,
          .stack = 1 },
        { .kind = MTF_EV_MUNMAP, .ts_ns = 1022, .addr = 0x7f0000000000, .size = 4096 },
        { .kind = MTF_EV_MREMAP,
          .ts_ns = 1023,
          .old_addr = 0x7f0000001000,
          .old_len = 4096,
          .size = 8192,
          .mflags = 1,
          .addr = 0x7f0000100000,
          .stack = 2,
          .pre_ns = 2 },
        { .kind = MTF_EV_FORK, .ts_ns = 1024, .child_pid = 4243 },
        { .kind = MTF_EV_EXEC, .ts_ns = 1025 },
    };
    struct tg_chunk c;
    tg_chunk_begin(&c, 4242, 1, 1000, 0, 0);
    for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++)
        tg_chunk_event(&c, &ev[i]);
    tg_chunk_end(&c, &t, tally);
}

int main(int argc, char **argv)
{
    static const char args[] = "app\0-v\0";
    static const uint8_t build_id[] = { 0xab, 0xcd };
    static const struct mtf_segment seg = { .vaddr = 0, .memsz = 0x1000, .pflags = 5 };
    const struct tg_module mods[] = {
        { .id = 1,
          .action = MTF_MOD_LOAD,
          .flags = MTF_MODF_MAIN,
          .base = 0x400000,
          .path = "/bin/app",
          .build_id = build_id,
          .build_id_len = 2,
          .nseg = 1,
          .segs = &seg },
        { .id = 1, .action = MTF_MOD_UNLOAD },
    };
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 1;
    }
    dir = argv[1];
    struct mtf_end end = tg_end_default();

    tg_file_header(&t, NULL);
    tg_end(&t, &end);
    save("minimal.mtr", t.len);

    t.len = 0;
    tg_file_header(&t, NULL);
    tg_process(&t, 1000, "/bin/app", args, sizeof(args) - 1, 2, "/");
    tg_modules(&t, 1000, mods, 2);
    chunk_all_kinds(&end);
    tg_record(&t, 0x77, "?", 1);
    tg_loss(&t, &(struct mtf_loss){ .ts_ns = 1100, .reason = MTF_LOSS_THREAD, .count = 1 });
    size_t before_end = t.len;
    tg_end(&t, &end);
    save("all_records.mtr", t.len);
    save("cut_in_end.mtr", t.len - 7);
    save("no_end.mtr", before_end);

    t.len = 0;
    end = tg_end_default();
    tg_file_header(&t, NULL);
    chunk_all_kinds(&end);
    end.reason = MTF_END_EXEC;
    tg_end(&t, &end);
    chunk_all_kinds(&end);
    end.reason = MTF_END_EXIT;
    tg_end(&t, &end);
    save("exec_failed.mtr", t.len);

    struct mtf_file_header h = tg_header_default();
    h.version_minor = 3;
    h.header_size = MTF_FILE_HEADER_SIZE + 8;
    t.len = 0;
    tg_file_header(&t, &h);
    struct tg_buf loss = { 0 }; /* a LOSS with 5 bytes a newer minor appended */
    tg_u64(&loss, 1);
    tg_u32(&loss, MTF_LOSS_WRITER);
    tg_u32(&loss, 0);
    tg_u64(&loss, 3);
    tg_put(&loss, "+tail", 5);
    tg_record(&t, MTF_REC_LOSS, loss.data, loss.len);
    tg_buf_free(&loss);
    tg_end(&t, &(struct mtf_end){ .reason = MTF_END_EXIT });
    save("newer_minor.mtr", t.len);

    t.len = 0;
    tg_file_header(&t, NULL);
    tg_loss(&t, &(struct mtf_loss){ .reason = MTF_LOSS_WRITER, .count = 2 });
    for (int i = 0; i < 40; i++)
        tg_put(&t, "", 1);
    save("zero_tail.mtr", t.len);
    tg_buf_free(&t);
    return 0;
}

#endif
