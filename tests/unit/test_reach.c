/* preload/livetab.c (the live-block table of the leak scan) and the pure marking of
 * preload/reach.c: reachable, definitely lost (direct), indirectly lost, cycles, interior
 * pointers, zero-sized blocks. Blocks are real malloc'd memory of the test runner; the roots are
 * an array the test fills. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "livetab.h"
#include "reach.h"

static void reset(void)
{
    mt_live_reset();
}

TestSuite(livetab, .init = reset, .fini = reset);

Test(livetab, disabled_table_records_nothing)
{
    mt_live_add(0x1000, 10);
    cr_expect(eq(u64, mt_live_count(), 0));
    struct mt_live_block *b;
    cr_expect(eq(sz, mt_live_snapshot(&b), 0));
    cr_expect(eq(ptr, b, NULL));
}

Test(livetab, snapshot_is_sorted_and_exact_after_growth_and_deletes)
{
    enum { N = 50000 };
    mt_live_enable();
    for (uint64_t i = 0; i < N; i++)
        mt_live_add(0x10000000 + ((i * 7919) % N) * 32, i);
    for (uint64_t i = 0; i < N; i += 2)
        mt_live_del(0x10000000 + i * 32);
    mt_live_del(0x42);                   /* never added */
    mt_live_add(0x10000000 + 32, 12345); /* same address again: replaced */
    cr_expect(eq(u64, mt_live_count(), N / 2));
    struct mt_live_block *b;
    size_t n = mt_live_snapshot(&b);
    cr_assert(eq(sz, n, N / 2));
    for (size_t i = 0; i < n; i++) {
        cr_assert(eq(u64, b[i].addr, 0x10000000 + (2 * i + 1) * 32), "sorted, odd ones left");
        if (i > 0)
            cr_assert(gt(u64, b[i].addr, b[i - 1].addr));
    }
    cr_expect(eq(u64, b[0].size, 12345));
    mt_live_release(b, n);
}

static void *churn(void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg;
    for (int round = 0; round < 20; round++) {
        for (uint64_t i = 0; i < 5000; i++)
            mt_live_add(base + i * 16, i);
        for (uint64_t i = 0; i < 5000; i++)
            if (round < 19 || i % 5 != 0)
                mt_live_del(base + i * 16);
    }
    return NULL;
}

Test(livetab, threads_adding_and_removing_leave_exact_counts)
{
    mt_live_enable();
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, churn, (void *)(0x20000000 + i * 0x1000000));
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_expect(eq(u64, mt_live_count(), 4 * 1000), "the last round keeps every fifth block");
}

/* ---- marking ------------------------------------------------------------------------------ */

enum { BA, BB, BC, BD, BE, BF, BG, BH, BI, BJ, BK, NB }; /* block names (I is taken by complex.h) */

static int by_addr(const void *x, const void *y)
{
    const struct mt_live_block *a = x, *b = y;
    return a->addr < b->addr ? -1 : a->addr > b->addr;
}

Test(reach, classifies_reachable_direct_indirect_and_cycles)
{
    void *blk[NB];
    size_t size[NB];
    for (int i = 0; i < NB; i++) {
        size[i] = i == BK ? 0 : 64;
        blk[i] = calloc(1, 64);
    }
    void **p[NB];
    for (int i = 0; i < NB; i++)
        p[i] = blk[i];
    static uint64_t root[4];
    root[0] = (uint64_t)(uintptr_t)blk[BA];
    root[1] = (uint64_t)(uintptr_t)blk[BJ];
    root[2] = (uint64_t)(uintptr_t)blk[BK]; /* a zero-byte block, pointed to at its start */
    p[BA][0] = (char *)blk[BB] + 5;         /* interior pointer */
    p[BD][1] = blk[BE];
    p[BE][2] = (char *)blk[BF] + 55; /* the last byte before the block's last word */
    p[BG][0] = blk[BH];
    p[BH][0] = blk[BG]; /* a cycle nothing reaches */
    p[BI][0] = blk[BJ]; /* a lost block pointing to a reachable one */
    p[BC][0] = p[BC];   /* a block pointing only to itself is still definitely lost */

    struct mt_live_block b[NB];
    for (int i = 0; i < NB; i++)
        b[i] = (struct mt_live_block){ (uint64_t)(uintptr_t)blk[i], size[i] };
    qsort(b, NB, sizeof b[0], by_addr);
    uint64_t range[1][2] = { { (uint64_t)(uintptr_t)root, (uint64_t)(uintptr_t)(root + 4) } };
    struct mt_reach_ranges roots = { (const uint64_t(*)[2])range, 1 };
    uint8_t mark[NB];
    size_t work[NB];
    mt_reach_classify(b, NB, &roots, mark, work);

    uint8_t want[NB];
    want[BA] = want[BB] = want[BJ] = want[BK] = MT_REACH_REACHABLE;
    want[BC] = want[BD] = want[BI] = MT_REACH_DIRECT;
    want[BE] = want[BF] = MT_REACH_INDIRECT;
    int g_low = (uintptr_t)blk[BG] < (uintptr_t)blk[BH];
    want[BG] = g_low ? MT_REACH_DIRECT : MT_REACH_INDIRECT;
    want[BH] = g_low ? MT_REACH_INDIRECT : MT_REACH_DIRECT;
    static const char names[] = "ABCDEFGHIJK";
    for (int i = 0; i < NB; i++) {
        size_t k = 0;
        while (b[k].addr != (uint64_t)(uintptr_t)blk[i])
            k++;
        cr_expect(eq(u8, mark[k], want[i]), "block %c", names[i]);
    }
    for (int i = 0; i < NB; i++)
        free(blk[i]);
}

Test(reach, a_pointer_into_the_last_word_does_not_hold_a_block)
{
    /* glibc points at the next chunk's header, which overlaps the last 8 bytes of a block
     * that fills its chunk: such a word must not keep the block. */
    char *x = calloc(1, 200);
    static uint64_t root[1];
    root[0] = (uint64_t)(uintptr_t)x + 192;
    struct mt_live_block b[1] = { { (uint64_t)(uintptr_t)x, 200 } };
    uint64_t range[1][2] = { { (uint64_t)(uintptr_t)root, (uint64_t)(uintptr_t)(root + 1) } };
    struct mt_reach_ranges roots = { (const uint64_t(*)[2])range, 1 };
    uint8_t mark[1];
    size_t work[1];
    mt_reach_classify(b, 1, &roots, mark, work);
    cr_expect(eq(u8, mark[0], MT_REACH_DIRECT));
    root[0] = (uint64_t)(uintptr_t)x + 191;
    mt_reach_classify(b, 1, &roots, mark, work);
    cr_expect(eq(u8, mark[0], MT_REACH_REACHABLE),
              "one byte lower is an ordinary interior pointer");
    free(x);
}

Test(reach, pointers_past_a_block_or_misaligned_do_not_count)
{
    char *x = calloc(1, 64), *y = calloc(1, 64);
    static uint64_t root[3];
    root[0] = (uint64_t)(uintptr_t)x + 64;  /* one past the end of x */
    memcpy((char *)root + 9, &y, sizeof y); /* y only at a misaligned offset */
    struct mt_live_block b[2] = { { (uint64_t)(uintptr_t)x, 64 }, { (uint64_t)(uintptr_t)y, 64 } };
    qsort(b, 2, sizeof b[0], by_addr);
    uint64_t range[1][2] = { { (uint64_t)(uintptr_t)root, (uint64_t)(uintptr_t)(root + 3) } };
    struct mt_reach_ranges roots = { (const uint64_t(*)[2])range, 1 };
    uint8_t mark[2];
    size_t work[2];
    int x_end_is_y = (uint64_t)(uintptr_t)x + 64 >= (uint64_t)(uintptr_t)y &&
                     (uint64_t)(uintptr_t)x + 64 < (uint64_t)(uintptr_t)y + 64;
    mt_reach_classify(b, 2, &roots, mark, work);
    if (!x_end_is_y) {
        cr_expect(eq(u8, mark[0], MT_REACH_DIRECT));
        cr_expect(eq(u8, mark[1], MT_REACH_DIRECT));
    }
    free(x);
    free(y);
}
