/* format.h against docs/trace-format.md: every size, offset and constant below is copied by hand
 * from the spec's tables, so a change to either file without the other fails here. Also pins the
 * zigzag examples of §1 (tracegen's encoder); CRC-32C has its own suite, test_crc32c.c.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stddef.h>
#include <string.h>

#include "memtrace/format.h"
#include "tracegen.h"

struct field {
    const char *name;
    size_t offset, size;        /* from format.h */
    size_t spec_off, spec_size; /* from the spec table */
};

#define FIELD(type, f, off, size)                                                                  \
    {                                                                                              \
#type "." #f, offsetof(struct type, f), sizeof(((struct type *)0)->f), off, size           \
    }

static void check_fields(const struct field *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cr_expect(eq(sz, f[i].offset, f[i].spec_off), "%s: offset", f[i].name);
        cr_expect(eq(sz, f[i].size, f[i].spec_size), "%s: size", f[i].name);
    }
}

TestSuite(format, .timeout = 10);

Test(format, file_header_matches_spec_section_3)
{
    static const struct field f[] = {
        FIELD(mtf_file_header, magic, 0, 8),
        FIELD(mtf_file_header, version_major, 8, 2),
        FIELD(mtf_file_header, version_minor, 10, 2),
        FIELD(mtf_file_header, header_size, 12, 4),
        FIELD(mtf_file_header, pid, 16, 4),
        FIELD(mtf_file_header, parent_pid, 20, 4),
        FIELD(mtf_file_header, origin, 24, 4),
        FIELD(mtf_file_header, page_size, 28, 4),
        FIELD(mtf_file_header, start_realtime_ns, 32, 8),
        FIELD(mtf_file_header, start_monotonic_ns, 40, 8),
        FIELD(mtf_file_header, max_frames, 48, 4),
        FIELD(mtf_file_header, pointer_size, 52, 4),
        FIELD(mtf_file_header, sample_bytes, 56, 8),
        FIELD(mtf_file_header, reserved, 64, 40),
    };
    check_fields(f, sizeof(f) / sizeof(f[0]));
    /* The table's last row ends at 64 + 40. */
    cr_expect(eq(sz, sizeof(struct mtf_file_header), 104), "header ends after `reserved`");
    cr_expect(eq(int, MTF_FILE_HEADER_SIZE, 104));
    cr_expect(eq(int, memcmp(MTF_MAGIC, "MEMTRACE", 8), 0));
    cr_expect(eq(int, MTF_MAGIC_SIZE, 8));
    cr_expect(eq(int, MTF_VERSION_MAJOR, 2));
    cr_expect(eq(int, MTF_VERSION_MINOR, 1));
    cr_expect(eq(int, MTF_ORIGIN_START, 0));
    cr_expect(eq(int, MTF_ORIGIN_FORK, 1));
    cr_expect(eq(int, MTF_ORIGIN_EXEC, 2));
}

Test(format, record_header_matches_spec_section_4)
{
    static const struct field f[] = {
        FIELD(mtf_record_header, magic, 0, 4),   FIELD(mtf_record_header, type, 4, 2),
        FIELD(mtf_record_header, flags, 6, 2),   FIELD(mtf_record_header, payload_size, 8, 4),
        FIELD(mtf_record_header, crc32c, 12, 4),
    };
    check_fields(f, sizeof(f) / sizeof(f[0]));
    cr_expect(eq(sz, sizeof(struct mtf_record_header), 16));
    cr_expect(eq(int, MTF_RECORD_HEADER_SIZE, 16));
    cr_expect(eq(int, MTF_RECORD_CRC_SPAN, 12), "crc covers header bytes 0..11");
    cr_expect(eq(u32, MTF_RECORD_MAGIC, 0x5243544d));
    const uint8_t le[4] = { 'M', 'T', 'C', 'R' };
    uint32_t m =
        (uint32_t)le[0] | (uint32_t)le[1] << 8 | (uint32_t)le[2] << 16 | (uint32_t)le[3] << 24;
    cr_expect(eq(u32, m, MTF_RECORD_MAGIC), "magic is the bytes M T C R");
    cr_expect(eq(u32, MTF_RECORD_MAX_SIZE, 16U * 1024 * 1024), "at most 16 MiB");
    cr_expect(eq(int, MTF_REC_PROCESS, 1));
    cr_expect(eq(int, MTF_REC_MODULES, 2));
    cr_expect(eq(int, MTF_REC_EVENTS, 3));
    cr_expect(eq(int, MTF_REC_END, 4));
    cr_expect(eq(int, MTF_REC_LOSS, 5));
    cr_expect(eq(int, MTF_RECF_NONE, 0));
}

Test(format, process_record_matches_spec_section_5)
{
    static const struct field f[] = {
        FIELD(mtf_process, ts_ns, 0, 8),     FIELD(mtf_process, exe_len, 8, 4),
        FIELD(mtf_process, argv_len, 12, 4), FIELD(mtf_process, cwd_len, 16, 4),
        FIELD(mtf_process, argc, 20, 4),
    };
    check_fields(f, sizeof(f) / sizeof(f[0]));
    cr_expect(eq(sz, sizeof(struct mtf_process), 24));
    cr_expect(eq(int, MTF_PROCESS_SIZE, 24), "strings start at offset 24");
}

Test(format, modules_record_matches_spec_section_6)
{
    static const struct field f[] = {
        FIELD(mtf_modules, ts_ns, 0, 8),        FIELD(mtf_modules, count, 8, 4),
        FIELD(mtf_modules, reserved, 12, 4),    FIELD(mtf_module, id, 0, 4),
        FIELD(mtf_module, action, 4, 2),        FIELD(mtf_module, flags, 6, 2),
        FIELD(mtf_module, base, 8, 8),          FIELD(mtf_module, path_len, 16, 4),
        FIELD(mtf_module, build_id_len, 20, 2), FIELD(mtf_module, nseg, 22, 2),
        FIELD(mtf_segment, vaddr, 0, 8),        FIELD(mtf_segment, memsz, 8, 8),
        FIELD(mtf_segment, pflags, 16, 4),      FIELD(mtf_segment, reserved, 20, 4),
    };
    check_fields(f, sizeof(f) / sizeof(f[0]));
    cr_expect(eq(sz, sizeof(struct mtf_modules), 16));
    cr_expect(eq(int, MTF_MODULES_SIZE, 16));
    cr_expect(eq(sz, sizeof(struct mtf_module), 24));
    cr_expect(eq(int, MTF_MODULE_SIZE, 24));
    cr_expect(eq(sz, sizeof(struct mtf_segment), 24));
    cr_expect(eq(int, MTF_SEGMENT_SIZE, 24));
    cr_expect(eq(int, MTF_MOD_LOAD, 1));
    cr_expect(eq(int, MTF_MOD_UNLOAD, 2));
    cr_expect(eq(int, MTF_MODF_MAIN, 1));
    cr_expect(eq(int, MTF_MODF_SHIM, 2));
    cr_expect(eq(int, MTF_MODF_VDSO, 4));
}

Test(format, chunk_header_matches_spec_section_7)
{
    static const struct field f[] = {
        FIELD(mtf_chunk, tid, 0, 4),          FIELD(mtf_chunk, thread_serial, 4, 4),
        FIELD(mtf_chunk, epoch, 8, 4),        FIELD(mtf_chunk, offset, 12, 4),
        FIELD(mtf_chunk, base_ts_ns, 16, 8),  FIELD(mtf_chunk, base_addr, 24, 8),
        FIELD(mtf_chunk, first_ts_ns, 32, 8), FIELD(mtf_chunk, last_ts_ns, 40, 8),
        FIELD(mtf_chunk, base_stack, 48, 4),  FIELD(mtf_chunk, nevents, 52, 4),
        FIELD(mtf_chunk, flags, 56, 4),       FIELD(mtf_chunk, events_size, 60, 4),
    };
    check_fields(f, sizeof(f) / sizeof(f[0]));
    cr_expect(eq(sz, sizeof(struct mtf_chunk), 64));
    cr_expect(eq(int, MTF_CHUNK_SIZE, 64));
    cr_expect(eq(int, MTF_CHUNKF_THREAD_END, 1));
    cr_expect(eq(int, MTF_CHUNKF_STOLEN, 2));
    cr_expect(eq(int, MTF_CHUNKF_WRITETHROUGH, 4));
    cr_expect(eq(int, MTF_CHUNKF_PREINIT, 8));
    cr_expect(eq(int, MTF_CHUNKF_ZSTD, 16));
}

Test(format, event_kinds_and_flags_match_spec_section_7)
{
    static const struct {
        int value, spec;
        const char *name;
    } k[] = {
        { MTF_EV_MALLOC, 1, "MALLOC" },
        { MTF_EV_CALLOC, 2, "CALLOC" },
        { MTF_EV_REALLOC, 3, "REALLOC" },
        { MTF_EV_REALLOCARRAY, 4, "REALLOCARRAY" },
        { MTF_EV_FREE, 5, "FREE" },
        { MTF_EV_POSIX_MEMALIGN, 6, "POSIX_MEMALIGN" },
        { MTF_EV_ALIGNED_ALLOC, 7, "ALIGNED_ALLOC" },
        { MTF_EV_MEMALIGN, 8, "MEMALIGN" },
        { MTF_EV_VALLOC, 9, "VALLOC" },
        { MTF_EV_PVALLOC, 10, "PVALLOC" },
        { MTF_EV_MMAP, 11, "MMAP" },
        { MTF_EV_MMAP64, 12, "MMAP64" },
        { MTF_EV_MUNMAP, 13, "MUNMAP" },
        { MTF_EV_MREMAP, 14, "MREMAP" },
        { MTF_EV_STACK, 15, "STACK" },
        { MTF_EV_FORK, 16, "FORK" },
        { MTF_EV_EXEC, 17, "EXEC" },
        { MTF_EV_SNAPSHOT, 18, "SNAPSHOT" },
        { MTF_EV_LIMIT, 19, "LIMIT" },
        { MTF_EV_KIND_COUNT, 20, "KIND_COUNT" },
        { MTF_EV_KIND_MASK, 0x1f, "kind in bits 0-4" },
        { MTF_EVF_FAILED, 0x20, "FAILED" },
        { MTF_EVF_NESTED, 0x40, "NESTED" },
        { MTF_EVF_TRUNC, 0x80, "TRUNC" },
        { MTF_EVF_CLASS, 0x80, "CLASS" },
        { MTF_CLASS_HEAP, 0, "heap" },
        { MTF_CLASS_EXTERNAL, 1, "external" },
        { MTF_CLASS_MAPPED, 2, "mapped" },
        { MTF_SNAP_START, 0, "START" },
        { MTF_SNAP_INTERVAL, 1, "INTERVAL" },
        { MTF_SNAP_MARK, 2, "MARK" },
        { MTF_SNAP_EXIT, 3, "EXIT" },
        { MTF_SNAP_LIMIT, 4, "LIMIT reason" },
        { MTF_LABEL_MAX, 255, "label bytes" },
        { MTF_LIMIT_ABORT, 0, "abort" },
        { MTF_LIMIT_ENOMEM, 1, "enomem" },
        { MTF_VARINT_MAX_BYTES, 10, "varint bytes" },
    };
    for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++)
        cr_expect(eq(int, k[i].value, k[i].spec), "%s", k[i].name);
}

Test(format, end_and_loss_records_match_spec_sections_8_and_9)
{
    static const struct field f[] = {
        FIELD(mtf_end, ts_ns, 0, 8),          FIELD(mtf_end, reason, 8, 4),
        FIELD(mtf_end, status, 12, 4),        FIELD(mtf_end, threads, 16, 8),
        FIELD(mtf_end, events, 24, 8),        FIELD(mtf_end, dropped, 32, 8),
        FIELD(mtf_end, unknown_frees, 40, 8), FIELD(mtf_end, counts, 48, 8 * 20),
        FIELD(mtf_loss, ts_ns, 0, 8),         FIELD(mtf_loss, reason, 8, 4),
        FIELD(mtf_loss, tid, 12, 4),          FIELD(mtf_loss, count, 16, 8),
    };
    check_fields(f, sizeof(f) / sizeof(f[0]));
    /* The END table's last row ends at 48 + 8 * 20. */
    cr_expect(eq(sz, sizeof(struct mtf_end), 208), "END ends after `counts`");
    cr_expect(eq(int, MTF_END_SIZE, 208));
    cr_expect(eq(sz, sizeof(struct mtf_loss), 24));
    cr_expect(eq(int, MTF_LOSS_SIZE, 24));
    cr_expect(eq(int, MTF_END_EXIT, 1));
    cr_expect(eq(int, MTF_END_EXEC, 2));
    cr_expect(eq(int, MTF_END_SIGNAL, 3));
    cr_expect(eq(int, MTF_LOSS_WRITER, 1));
    cr_expect(eq(int, MTF_LOSS_THREAD, 2));
}

Test(format, totals_record_matches_spec_section_9_2)
{
    static const struct field f[] = {
        FIELD(mtf_totals, ts_ns, 0, 8),        FIELD(mtf_totals, sample_bytes, 8, 8),
        FIELD(mtf_totals, live_blocks, 16, 8), FIELD(mtf_totals, live_usable, 24, 8),
        FIELD(mtf_totals, alloc_bytes, 32, 8), FIELD(mtf_totals, lost_blocks, 40, 8),
        FIELD(mtf_totals, lost_bytes, 48, 8),  FIELD(mtf_totals, unsampleable, 56, 8),
        FIELD(mtf_totals, flags, 64, 4),       FIELD(mtf_totals, reserved, 68, 4),
        FIELD(mtf_totals, calls, 72, 8 * 20),
    };
    check_fields(f, sizeof(f) / sizeof(f[0]));
    /* The TOTALS table's last row ends at 72 + 8 * 20. */
    cr_expect(eq(sz, sizeof(struct mtf_totals), 232), "TOTALS ends after `calls`");
    cr_expect(eq(int, MTF_TOTALS_SIZE, 232));
    cr_expect(eq(int, MTF_REC_TOTALS, 7));
    cr_expect(eq(int, MTF_TOTALSF_SCANNED, 1));
}

Test(format, zigzag_maps_small_deltas_as_spec_section_1_says)
{
    /* "0, -1, 1, -2 become 0, 1, 2, 3" */
    static const struct {
        int64_t delta;
        uint8_t z;
    } k[] = { { 0, 0 }, { -1, 1 }, { 1, 2 }, { -2, 3 }, { 63, 126 }, { -64, 127 } };
    for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
        struct tg_buf b = { 0 };
        tg_zigzag(&b, (uint64_t)k[i].delta);
        cr_expect(eq(sz, b.len, 1), "delta %lld takes one byte", (long long)k[i].delta);
        cr_expect(eq(u8, b.data[0], k[i].z), "delta %lld", (long long)k[i].delta);
        tg_buf_free(&b);
    }
    struct tg_buf b = { 0 };
    tg_varint(&b, UINT64_MAX);
    cr_expect(eq(sz, b.len, MTF_VARINT_MAX_BYTES), "2^64-1 takes the maximum 10 bytes");
    cr_expect(eq(u8, b.data[9], 1), "the 10th byte carries bit 63 only");
    tg_buf_free(&b);
}
