/* common/crc32c.c: CRC-32C as docs/trace-format.md §4 defines it (Castagnoli, reflected, init
 * and final xor 0xffffffff). Published check values pin the function; a bit-at-a-time reference
 * written here from the definition covers odd lengths and misaligned starts, where a
 * word-at-a-time hardware path is most likely to go wrong.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdint.h>
#include <string.h>

#include "crc32c.h"

TestSuite(crc32c, .timeout = 10);

/* The definition, one bit at a time. */
static uint32_t crc_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffU;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78U : c >> 1;
    }
    return c ^ 0xffffffffU;
}

/* Deterministic filler. */
static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245U + 12345U;
        p[i] = (uint8_t)(seed >> 16);
    }
}

Test(crc32c, matches_check_value_of_123456789)
{
    cr_expect(eq(u32, mt_crc32c(0, "123456789", 9), 0xe3069283U));
}

Test(crc32c, matches_rfc3720_vectors)
{
    /* RFC 3720 (iSCSI) appendix B.4. */
    uint8_t buf[32];
    memset(buf, 0, sizeof buf);
    cr_expect(eq(u32, mt_crc32c(0, buf, 32), 0x8a9136aaU), "32 bytes of zeros");
    memset(buf, 0xff, sizeof buf);
    cr_expect(eq(u32, mt_crc32c(0, buf, 32), 0x62a8ab43U), "32 bytes of ones");
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    cr_expect(eq(u32, mt_crc32c(0, buf, 32), 0x46dd794eU), "incrementing 00..1f");
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    cr_expect(eq(u32, mt_crc32c(0, buf, 32), 0x113fdb5cU), "decrementing 1f..00");
}

Test(crc32c, empty_input_leaves_crc_unchanged)
{
    cr_expect(eq(u32, mt_crc32c(0, "", 0), 0));
    cr_expect(eq(u32, mt_crc32c(0xe3069283U, "x", 0), 0xe3069283U));
}

Test(crc32c, reference_agrees_with_check_value)
{
    /* Guards the reference used below. */
    cr_assert(eq(u32, crc_bitwise((const uint8_t *)"123456789", 9), 0xe3069283U));
}

Test(crc32c, incremental_equals_one_shot_at_every_split)
{
    static uint8_t buf[1031];
    fill(buf, sizeof buf, 1);
    uint32_t whole = mt_crc32c(0, buf, sizeof buf);
    cr_assert(eq(u32, whole, crc_bitwise(buf, sizeof buf)));
    for (size_t k = 0; k <= sizeof buf; k++) {
        uint32_t c = mt_crc32c(mt_crc32c(0, buf, k), buf + k, sizeof buf - k);
        cr_expect(eq(u32, c, whole), "split at %zu", k);
    }
}

Test(crc32c, incremental_in_many_small_pieces)
{
    static uint8_t buf[4096];
    fill(buf, sizeof buf, 2);
    uint32_t c = 0;
    size_t off = 0, step = 1;
    while (off < sizeof buf) {
        size_t n = step < sizeof buf - off ? step : sizeof buf - off;
        c = mt_crc32c(c, buf + off, n);
        off += n;
        step = step % 13 + 1; /* pieces of 1..13 bytes: every tail length of an 8-byte loop */
    }
    cr_expect(eq(u32, c, mt_crc32c(0, buf, sizeof buf)));
}

Test(crc32c, odd_lengths_and_misaligned_starts)
{
    static uint8_t buf[256 + 16];
    fill(buf, sizeof buf, 3);
    for (size_t align = 0; align < 16; align++)
        for (size_t n = 0; n <= 256; n++)
            cr_assert(eq(u32, mt_crc32c(0, buf + align, n), crc_bitwise(buf + align, n)),
                      "offset %zu, length %zu", align, n);
}

Test(crc32c, large_buffer_matches_reference)
{
    static uint8_t buf[1 << 20];
    fill(buf, sizeof buf, 4);
    cr_expect(eq(u32, mt_crc32c(0, buf, sizeof buf), crc_bitwise(buf, sizeof buf)));
}

Test(crc32c, detects_single_bit_flips)
{
    uint8_t buf[64];
    fill(buf, sizeof buf, 5);
    uint32_t good = mt_crc32c(0, buf, sizeof buf);
    for (size_t i = 0; i < sizeof buf * 8; i++) {
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
        cr_expect(ne(u32, mt_crc32c(0, buf, sizeof buf), good), "bit %zu", i);
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
}
