/* preload/stack.c: stack interning. Same frames give the same node and id, ids start at 1 in
 * insertion order, the truncation flag is part of the identity, the caller's cache returns the
 * node without a second insert, and concurrent interning of the same stacks neither duplicates
 * nor loses an id. Every test starts from a fresh process, hence a fresh table.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memtrace/format.h"
#include "stack.h"

static void stack_setup(void)
{
    cr_assert(eq(int, mt_stack_init(), 0), "the table reserves its address space");
}

TestSuite(stack, .init = stack_setup, .timeout = 30);

/* A deterministic stack: n frames derived from seed, innermost first. */
static void make_frames(uint64_t *f, uint32_t n, uint64_t seed)
{
    for (uint32_t i = 0; i < n; i++)
        f[i] = 0x400000 + seed * 0x1000 + i * 0x10 + 5;
}

static struct mt_stack_node *intern(const uint64_t *f, uint32_t n, int trunc)
{
    struct mt_stack_node *nd = mt_stack_intern(NULL, f, n, trunc, NULL);
    cr_assert(ne(ptr, nd, NULL), "interned a %u-frame stack", n);
    return nd;
}

Test(stack, init_twice_is_harmless)
{
    cr_expect(eq(int, mt_stack_init(), 0));
    cr_expect(eq(u32, mt_stack_count(), 0));
}

Test(stack, same_frames_give_same_node_and_id)
{
    uint64_t a[8], b[8];
    make_frames(a, 8, 1);
    memcpy(b, a, sizeof a); /* equal contents at another address */
    struct mt_stack_node *x = intern(a, 8, 0);
    struct mt_stack_node *y = intern(b, 8, 0);
    cr_expect(eq(ptr, x, y));
    cr_expect(eq(u32, mt_stack_id(x), 1));
    cr_expect(eq(u32, mt_stack_count(), 1));
}

Test(stack, node_keeps_a_copy_of_the_frames)
{
    uint64_t f[MTF_MAX_FRAMES_LIMIT];
    make_frames(f, MTF_MAX_FRAMES_LIMIT, 9);
    struct mt_stack_node *nd = intern(f, MTF_MAX_FRAMES_LIMIT, 1);
    uint64_t want[MTF_MAX_FRAMES_LIMIT];
    memcpy(want, f, sizeof f);
    memset(f, 0, sizeof f); /* the caller's buffer is reused for the next capture */
    cr_expect(eq(u32, mt_stack_nframes(nd), MTF_MAX_FRAMES_LIMIT));
    cr_expect(eq(int, mt_stack_truncated(nd), 1));
    cr_expect(eq(int, memcmp(mt_stack_frames(nd), want, sizeof want), 0));
}

Test(stack, different_frames_get_ids_in_insertion_order_from_one)
{
    uint64_t f[4];
    struct mt_stack_node *nodes[50];
    for (uint32_t i = 0; i < 50; i++) {
        make_frames(f, 4, i);
        nodes[i] = intern(f, 4, 0);
        cr_expect(eq(u32, mt_stack_id(nodes[i]), i + 1), "stack %u", i);
    }
    cr_expect(eq(u32, mt_stack_count(), 50));
    for (uint32_t i = 0; i < 50; i++) {
        make_frames(f, 4, i);
        cr_expect(eq(ptr, intern(f, 4, 0), nodes[i]), "stack %u found again", i);
    }
    cr_expect(eq(u32, mt_stack_count(), 50), "lookups insert nothing");
}

Test(stack, prefix_and_empty_stacks_are_distinct)
{
    uint64_t f[3] = { 0x401000, 0x402000, 0x403000 };
    struct mt_stack_node *three = intern(f, 3, 0);
    struct mt_stack_node *two = intern(f, 2, 0);
    struct mt_stack_node *none = intern(f, 0, 0);
    cr_expect(ne(ptr, three, two));
    cr_expect(ne(ptr, two, none));
    cr_expect(eq(u32, mt_stack_nframes(two), 2));
    cr_expect(eq(u32, mt_stack_nframes(none), 0));
    cr_expect(eq(u32, mt_stack_count(), 3));
    uint64_t swapped[3] = { 0x402000, 0x401000, 0x403000 };
    cr_expect(ne(ptr, intern(swapped, 3, 0), three), "order matters");
}

Test(stack, trunc_flag_distinguishes_stacks)
{
    uint64_t f[16];
    make_frames(f, 16, 3);
    struct mt_stack_node *whole = intern(f, 16, 0);
    struct mt_stack_node *cut = intern(f, 16, 1);
    cr_expect(ne(ptr, whole, cut));
    cr_expect(eq(u32, mt_stack_id(whole), 1));
    cr_expect(eq(u32, mt_stack_id(cut), 2));
    cr_expect(eq(int, mt_stack_truncated(whole), 0));
    cr_expect(eq(int, mt_stack_truncated(cut), 1));
    cr_expect(eq(ptr, intern(f, 16, 1), cut));
}

/* ---- the per-thread cache -------------------------------------------------------------------- */

Test(stack, cache_hit_returns_node_and_keeps_mark)
{
    static struct mt_stack_cache cache;
    mt_stack_cache_clear(&cache);
    uint64_t f[6];
    make_frames(f, 6, 11);
    unsigned slot = MT_STACK_CACHE_SLOTS, slot2 = MT_STACK_CACHE_SLOTS;
    struct mt_stack_node *nd = mt_stack_intern(&cache, f, 6, 0, &slot);
    cr_assert(ne(ptr, nd, NULL));
    cr_assert(lt(uint, slot, MT_STACK_CACHE_SLOTS));
    cr_expect(eq(ptr, cache.node[slot], nd), "the slot now holds the node");
    cr_expect(ne(u64, cache.hash[slot], 0));
    cache.mark[slot] = 7; /* the caller's tag, e.g. "definition written in this buffer" */
    cr_expect(eq(ptr, mt_stack_intern(&cache, f, 6, 0, &slot2), nd));
    cr_expect(eq(uint, slot2, slot));
    cr_expect(eq(u32, cache.mark[slot], 7), "a hit leaves the caller's tag alone");
    cr_expect(eq(u32, mt_stack_count(), 1));
}

Test(stack, cache_replacement_clears_mark)
{
    static struct mt_stack_cache cache;
    mt_stack_cache_clear(&cache);
    uint64_t f[4];
    make_frames(f, 4, 0);
    unsigned slot, other_slot = MT_STACK_CACHE_SLOTS;
    struct mt_stack_node *first = mt_stack_intern(&cache, f, 4, 0, &slot);
    cr_assert(ne(ptr, first, NULL));
    cache.mark[slot] = 9;
    /* Find another stack that maps to the same slot. */
    uint64_t g[4];
    uint64_t seed;
    for (seed = 1; seed < 100000; seed++) {
        make_frames(g, 4, seed);
        struct mt_stack_node *nd = mt_stack_intern(NULL, g, 4, 0, &other_slot);
        cr_assert(ne(ptr, nd, NULL));
        if (other_slot == slot)
            break;
    }
    cr_assert(eq(uint, other_slot, slot), "found a colliding stack");
    struct mt_stack_node *second = mt_stack_intern(&cache, g, 4, 0, &other_slot);
    cr_expect(ne(ptr, second, first));
    cr_expect(eq(ptr, cache.node[slot], second));
    cr_expect(eq(u32, cache.mark[slot], 0), "the tag belonged to the evicted node");
    /* The evicted stack is still in the table. */
    cr_expect(eq(ptr, mt_stack_intern(&cache, f, 4, 0, NULL), first));
}

Test(stack, cache_clear_empties_every_slot)
{
    static struct mt_stack_cache cache;
    memset(&cache, 0xff, sizeof cache);
    mt_stack_cache_clear(&cache);
    for (unsigned i = 0; i < MT_STACK_CACHE_SLOTS; i++) {
        cr_expect(eq(u64, cache.hash[i], 0));
        cr_expect(eq(ptr, cache.node[i], NULL));
        cr_expect(eq(u32, cache.mark[i], 0));
    }
}

/* ---- written flag and reset ------------------------------------------------------------------ */

Test(stack, written_flag_starts_clear_and_sticks)
{
    uint64_t f[5];
    make_frames(f, 5, 2);
    struct mt_stack_node *nd = intern(f, 5, 0);
    cr_expect(eq(int, mt_stack_written(nd), 0));
    mt_stack_mark_written(nd);
    cr_expect(eq(int, mt_stack_written(nd), 1));
    cr_expect(eq(int, mt_stack_written(intern(f, 5, 0)), 1), "seen by the next lookup");
    make_frames(f, 5, 3);
    cr_expect(eq(int, mt_stack_written(intern(f, 5, 0)), 0), "per node, not global");
}

Test(stack, reset_restarts_ids_at_one)
{
    uint64_t f[4];
    for (uint32_t i = 0; i < 10; i++) {
        make_frames(f, 4, i);
        intern(f, 4, 0);
    }
    make_frames(f, 4, 3);
    mt_stack_mark_written(intern(f, 4, 0));
    cr_assert(eq(u32, mt_stack_count(), 10));
    mt_stack_reset();
    cr_expect(eq(u32, mt_stack_count(), 0));
    /* Stack 3 was id 4 before the reset; now it is the first definition of a new file. */
    struct mt_stack_node *nd = intern(f, 4, 0);
    cr_expect(eq(u32, mt_stack_id(nd), 1));
    cr_expect(eq(int, mt_stack_written(nd), 0), "the definition is not in the child's file");
    cr_expect(eq(int, memcmp(mt_stack_frames(nd), f, sizeof f), 0));
    make_frames(f, 4, 0);
    cr_expect(eq(u32, mt_stack_id(intern(f, 4, 0)), 2));
    cr_expect(eq(u32, mt_stack_count(), 2));
}

/* ---- concurrency ----------------------------------------------------------------------------- */

#define NTHREADS 4
#define NSTACKS  1000

struct worker {
    pthread_barrier_t *start;
    unsigned index;
    struct mt_stack_node *node[NSTACKS];
    uint32_t id[NSTACKS];
};

static void *intern_all(void *arg)
{
    struct worker *w = arg;
    static __thread struct mt_stack_cache cache; /* as the shim has one per thread */
    mt_stack_cache_clear(&cache);
    pthread_barrier_wait(w->start);
    /* Threads 0 and 1 walk in lockstep, so they race for the same stack at the same moment;
     * thread 2 walks backwards and thread 3 starts halfway, so others arrive in other orders. */
    for (unsigned k = 0; k < NSTACKS; k++) {
        unsigned i = w->index == 2 ? NSTACKS - 1 - k : k;
        if (w->index == 3)
            i = (i + NSTACKS / 2) % NSTACKS;
        uint64_t f[12];
        make_frames(f, 1 + i % 12, i);
        struct mt_stack_node *nd = mt_stack_intern(&cache, f, 1 + i % 12, (int)(i % 3 == 0), NULL);
        w->node[i] = nd;
        w->id[i] = nd ? mt_stack_id(nd) : 0;
    }
    return NULL;
}

/* One race: NTHREADS threads intern the same NSTACKS stacks, then every answer is checked. */
static void race_once(unsigned round)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NTHREADS);
    struct worker *w = calloc(NTHREADS, sizeof *w);
    cr_assert(ne(ptr, w, NULL));
    pthread_t t[NTHREADS];
    for (unsigned i = 0; i < NTHREADS; i++) {
        w[i].start = &start;
        w[i].index = i;
        cr_assert(eq(int, pthread_create(&t[i], NULL, intern_all, &w[i]), 0));
    }
    for (unsigned i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);

    static uint8_t seen[NSTACKS + 1];
    memset(seen, 0, sizeof seen);
    for (unsigned s = 0; s < NSTACKS; s++) {
        cr_assert(ne(ptr, w[0].node[s], NULL), "round %u: stack %u interned", round, s);
        for (unsigned i = 1; i < NTHREADS; i++) {
            cr_assert(eq(ptr, w[i].node[s], w[0].node[s]), "round %u: stack %u: thread %u's node",
                      round, s, i);
            cr_assert(eq(u32, w[i].id[s], w[0].id[s]), "round %u: stack %u: thread %u's id", round,
                      s, i);
        }
        uint32_t id = w[0].id[s];
        cr_assert(ge(u32, id, 1));
        cr_assert(le(u32, id, NSTACKS), "round %u: ids are dense: %u", round, id);
        cr_assert(eq(u8, seen[id], 0), "round %u: id %u given to two stacks", round, id);
        seen[id] = 1;
        uint64_t f[12];
        uint32_t n = 1 + s % 12;
        make_frames(f, n, s);
        cr_assert(eq(u32, mt_stack_nframes(w[0].node[s]), n));
        cr_assert(eq(int, mt_stack_truncated(w[0].node[s]), (int)(s % 3 == 0)));
        cr_assert(eq(int, memcmp(mt_stack_frames(w[0].node[s]), f, n * sizeof *f), 0));
    }
    cr_assert(eq(u32, mt_stack_count(), NSTACKS), "round %u: no id lost or given twice", round);
    free(w);
}

Test(stack, concurrent_interning_gives_each_stack_exactly_one_id)
{
    /* Races are rare on few CPUs: repeat from an empty table (what a fork child starts with). */
    for (unsigned round = 0; round < 50; round++) {
        mt_stack_reset();
        race_once(round);
    }
}
