/* preload/account.c: the live counters and caps, called as the hooks call them. Each test runs in
 * its own process (Criterion), so the once-per-process cap switch (mt_acct_init with a heap
 * limit) is set per test. Mapping figures are worked out by hand in pages; no test relies on the
 * runner's own memory, only on differences it makes itself.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "account.h"
#include "config.h"
#include "guard.h"
#include "memtrace/format.h"
#include "real.h"

TestSuite(account, .timeout = 30);

static uint64_t heap_now(void)
{
    struct mt_usage u;
    mt_acct_counters(&u);
    return u.heap_used;
}

static void set_heap_limit(uint64_t limit)
{
    mt_config.heap_limit = limit;
    mt_acct_init();
}

Test(account, heap_counts_deltas_without_a_cap)
{
    uint64_t base = heap_now();
    int64_t reserved = -1;
    uint64_t live = 0;
    cr_assert(eq(int, mt_acct_heap_admit(MTF_CLASS_HEAP, 1000, &reserved, &live), 0));
    cr_expect(eq(i64, reserved, 0), "nothing reserved without a cap");
    mt_acct_heap_done(MTF_CLASS_HEAP, 1016, reserved, 0);
    cr_expect(eq(u64, heap_now(), base + 1016));
    mt_acct_heap_done(MTF_CLASS_HEAP, 24, 0, 1); /* nested: the global word */
    cr_expect(eq(u64, heap_now(), base + 1040));
    mt_acct_heap_done(MTF_CLASS_HEAP, -1040, 0, 0);
    cr_expect(eq(u64, heap_now(), base));
}

Test(account, heap_cap_admits_up_to_the_limit_and_refuses_past_it)
{
    set_heap_limit(10000);
    uint64_t base = heap_now();
    cr_assert(eq(u64, base, 0), "nothing counted in a fresh process");
    int64_t reserved = 0;
    uint64_t live = 0;
    cr_assert(eq(int, mt_acct_heap_admit(MTF_CLASS_HEAP, 6000, &reserved, &live), 0));
    cr_expect(eq(i64, reserved, 6000));
    cr_expect(eq(u64, heap_now(), 6000), "the reservation counts until settled");
    mt_acct_heap_done(MTF_CLASS_HEAP, 6016, reserved, 0); /* usable 6016 */
    cr_expect(eq(u64, heap_now(), 6016));
    cr_expect(eq(int, mt_acct_heap_admit(MTF_CLASS_HEAP, 3985, &reserved, &live), -1),
              "6016 + 3985 > 10000");
    cr_expect(eq(u64, live, 6016), "the refusal reports the live bytes");
    cr_expect(eq(u64, heap_now(), 6016), "a refusal changes nothing");
    cr_expect(eq(int, mt_acct_heap_admit(MTF_CLASS_HEAP, 3984, &reserved, &live), 0),
              "exactly up to the cap");
    mt_acct_heap_done(MTF_CLASS_HEAP, 0, reserved, 0); /* the call failed: reservation back */
    cr_expect(eq(u64, heap_now(), 6016));
    cr_expect(eq(int, mt_acct_heap_admit(MTF_CLASS_HEAP, UINT64_MAX, &reserved, &live), -1),
              "no wrap-around for huge requests");
    cr_expect(eq(int, mt_acct_heap_admit(MTF_CLASS_HEAP, 0, &reserved, &live), 0),
              "a shrinking realloc asks for nothing");
}

#define THREADS 8
#define REQ     1000

static pthread_barrier_t go;

static void *fill(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&go);
    for (;;) {
        int64_t reserved;
        uint64_t live;
        if (mt_acct_heap_admit(MTF_CLASS_HEAP, REQ, &reserved, &live) != 0)
            break;
        mt_acct_heap_done(MTF_CLASS_HEAP, REQ, reserved, 0);
    }
    return NULL;
}

Test(account, eight_threads_never_pass_the_cap)
{
    set_heap_limit(1000 * REQ + REQ / 2);
    pthread_barrier_init(&go, NULL, THREADS);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, fill, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    cr_expect(eq(u64, heap_now(), 1000 * REQ), "filled exactly to the last whole request");
}

Test(account, maps_follow_the_mapping_rules)
{
    uint64_t pg = mt_acct_page();
    struct mt_acct_lock lk;
    struct mt_usage u;
    uint64_t a = 0x100000000ULL; /* addresses only: nothing is mapped */
    mt_acct_maps_lock(&lk);
    mt_acct_map_add(a, 4 * pg - 100, MTF_CLASS_EXTERNAL); /* rounded up: 4 pages */
    mt_acct_map_add(a + 16 * pg, pg, MTF_CLASS_MAPPED);
    cr_expect(eq(u64, mt_acct_maps_overlap(MTF_CLASS_EXTERNAL, a + pg, 8 * pg), 3 * pg));
    mt_acct_map_remove(a + pg, pg);          /* a hole */
    mt_acct_map_remove(a + 64 * pg, 4 * pg); /* never seen */
    mt_acct_maps_unlock(&lk);
    mt_acct_counters(&u);
    cr_expect(eq(u64, u.external, 3 * pg));
    cr_expect(eq(u64, u.mapped, pg));
    mt_acct_maps_lock(&lk);
    cr_expect(eq(u32, mt_acct_map_move_class(a + 2 * pg), MTF_CLASS_EXTERNAL));
    cr_expect(eq(u32, mt_acct_map_move_class(a + 100 * pg), MTF_CLASS_EXTERNAL),
              "an unseen old range moves as external");
    cr_expect(eq(u32, mt_acct_map_move_class(a + 16 * pg), MTF_CLASS_MAPPED));
    /* grow [a+2, a+4) to 6 pages elsewhere */
    mt_acct_map_move(a + 2 * pg, 2 * pg, a + 32 * pg, 6 * pg, MREMAP_MAYMOVE, MTF_CLASS_EXTERNAL);
    mt_acct_maps_unlock(&lk);
    mt_acct_counters(&u);
    cr_expect(eq(u64, u.external, 7 * pg), "1 page left at a, 6 moved");
    mt_acct_maps_lock(&lk);
    mt_acct_map_add(a + 32 * pg, 2 * pg, MTF_CLASS_MAPPED); /* MAP_FIXED over two of them */
    mt_acct_maps_unlock(&lk);
    mt_acct_counters(&u);
    cr_expect(eq(u64, u.external, 5 * pg));
    cr_expect(eq(u64, u.mapped, 3 * pg));
}

Test(account, external_cap_is_checked_under_the_lock)
{
    uint64_t pg = mt_acct_page();
    mt_config.external_limit = 4 * pg;
    struct mt_acct_lock lk;
    uint64_t live = 0;
    mt_acct_maps_lock(&lk);
    cr_expect(eq(int, mt_acct_maps_admit(MTF_CLASS_EXTERNAL, 4 * pg, &live), 0));
    mt_acct_map_add(0x200000000ULL, 3 * pg, MTF_CLASS_EXTERNAL);
    cr_expect(eq(int, mt_acct_maps_admit(MTF_CLASS_EXTERNAL, 2 * pg, &live), -1));
    cr_expect(eq(u64, live, 3 * pg));
    cr_expect(eq(int, mt_acct_maps_admit(MTF_CLASS_MAPPED, 100 * pg, &live), 0),
              "mapped has no cap");
    mt_acct_maps_unlock(&lk);
}

Test(account, blocks_in_another_class_are_remembered_until_freed)
{
    cr_expect(eq(u64, atomic_load(&mt_acct_moved_blocks), 0));
    cr_expect(eq(u32, mt_acct_block_class((void *)0x1000), MTF_CLASS_HEAP), "empty table");
    mt_acct_block_put(0x5000, MTF_CLASS_EXTERNAL);
    mt_acct_block_put(0x6000, MTF_CLASS_MAPPED);
    cr_expect(eq(u64, atomic_load(&mt_acct_moved_blocks), 2));
    cr_expect(eq(u32, mt_acct_block_class((void *)0x7000), MTF_CLASS_HEAP), "not remembered");
    cr_expect(eq(u32, mt_acct_block_class((void *)0x5000), MTF_CLASS_EXTERNAL));
    cr_expect(eq(u32, mt_acct_block_class((void *)0x5000), MTF_CLASS_HEAP), "taken once");
    cr_expect(eq(u32, mt_acct_block_class((void *)0x6000), MTF_CLASS_MAPPED));
    cr_expect(eq(u64, atomic_load(&mt_acct_moved_blocks), 0));
    /* a removed entry does not hide the ones probed past it */
    for (uint64_t i = 1; i <= 1000; i++)
        mt_acct_block_put(i << 12, MTF_CLASS_EXTERNAL);
    for (uint64_t i = 1; i <= 1000; i += 2)
        cr_assert(eq(u32, mt_acct_block_take(i << 12), MTF_CLASS_EXTERNAL));
    for (uint64_t i = 2; i <= 1000; i += 2)
        cr_assert(eq(u32, mt_acct_block_take(i << 12), MTF_CLASS_EXTERNAL));
    cr_expect(eq(u64, atomic_load(&mt_acct_moved_blocks), 0));
}

Test(account, moved_heap_blocks_count_in_their_class)
{
    struct mt_usage before, after;
    mt_acct_counters(&before);
    int64_t reserved;
    uint64_t live;
    cr_assert(eq(int, mt_acct_heap_admit(MTF_CLASS_EXTERNAL, 4096, &reserved, &live), 0));
    mt_acct_heap_done(MTF_CLASS_EXTERNAL, 4104, reserved, 0);
    mt_acct_counters(&after);
    cr_expect(eq(u64, after.external - before.external, 4104));
    cr_expect(eq(u64, after.heap_used, before.heap_used), "not heap");
}

Test(account, usage_reads_rss_and_heap_total)
{
    mt_real_init();
    void *volatile p = malloc(100000);
    struct mt_usage u;
    mt_acct_usage(&u, 1);
    free(p);
    cr_expect(gt(u64, u.rss, 0));
    cr_expect(gt(u64, u.heap_total, 100000), "the allocator holds the block");
    cr_expect(ge(u64, u.rss_peak, u.rss), "VmHWM");
}

Test(account, interval_deadline_is_claimed_once)
{
    mt_config.interval_ns = 5000000;
    mt_acct_init();
    uint64_t due = atomic_load(&mt_acct_deadline);
    cr_assert(ne(u64, due, UINT64_MAX), "a deadline is set");
    mt_acct_tick(due - 1);
    cr_expect(eq(u64, atomic_load(&mt_acct_deadline), due), "not due yet");
    mt_guard_set(MT_IN_HOOK);
    mt_acct_tick(due + 10);
    mt_guard_set(MT_IN_NONE);
    cr_expect(eq(u64, atomic_load(&mt_acct_deadline), due + 10 + 5000000),
              "the next one counts from the call that took it");
}
