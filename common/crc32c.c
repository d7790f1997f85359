/* CRC-32C, hardware path (SSE4.2 crc32 instruction) when the CPU has it, table otherwise.
 * The software table is filled on first use; two threads racing to fill it write the same values,
 * so no lock is needed and nothing has to be initialised before the first hook runs.
 */
#include "crc32c.h"

#include <string.h>

#define POLY 0x82f63b78U /* Castagnoli, reflected */

static uint32_t table[256];
static volatile int table_ready; /* the table is filled once; racing fills write equal values */

static void table_fill(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[i] = c;
    }
    table_ready = 1;
}

static uint32_t crc_soft(uint32_t c, const unsigned char *p, size_t n)
{
    if (!table_ready)
        table_fill();
    while (n--)
        c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__)
#include <cpuid.h>

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const unsigned char *p,
                                                         size_t n)
{
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = __builtin_ia32_crc32di(c64, w);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--)
        c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}

static int have_sse42(void)
{
    static volatile int known = -1; /* cpuid is cheap but not free: ask once */
    if (known < 0) {
        unsigned a, b, cx, d;
        known = __get_cpuid(1, &a, &b, &cx, &d) && (cx & bit_SSE4_2);
    }
    return known;
}
#endif

uint32_t mt_crc32c(uint32_t crc, const void *data, size_t len)
{
    uint32_t c = ~crc;
#if defined(__x86_64__)
    if (have_sse42())
        return ~crc_hw(c, data, len);
#endif
    return ~crc_soft(c, data, len);
}
