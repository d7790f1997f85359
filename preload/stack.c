/* Lock-free stack table. Nodes are bump-allocated from one large MAP_NORESERVE reservation
 * (only touched pages cost memory) and never freed until a fork child resets the table.
 * Bucket heads hold node offsets; a node is fully written before the CAS that publishes it,
 * so a reader that sees a node sees its frames. */
#include "stack.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "mt.h"
#include "pages.h"

#define BUCKET_BITS 20
#define NBUCKETS    (1U << BUCKET_BITS)
#define ARENA_BYTES (4ULL << 30) /* address space only; MAP_NORESERVE */
#define NODE_ALIGN  8

struct mt_stack_node {
    uint64_t hash;
    uint64_t next; /* arena offset of the next node in the bucket, 0 for none */
    uint32_t id;
    uint16_t nframes;
    uint8_t trunc;
    _Atomic uint8_t written;
    _Atomic uint64_t aux; /* a caller's per-stack value (MT_STACK_AUX_SET | value), 0 if none */
    uint64_t frames[];
};

static _Atomic uint64_t *buckets;   /* arena offsets (0: empty) */
static unsigned char *arena;        /* node storage; offset 0 is never a node */
static _Atomic uint64_t arena_used; /* bytes handed out */
static _Atomic uint32_t next_id;    /* last id given */

int mt_stack_init(void)
{
    if (arena != NULL)
        return 0;
    buckets = mt_pages_map(NBUCKETS * sizeof *buckets, MAP_NORESERVE);
    arena = mt_pages_map(ARENA_BYTES, MAP_NORESERVE);
    if (buckets == NULL || arena == NULL) {
        mt_log_warn("cannot reserve the stack table: events are recorded without stacks");
        return -1;
    }
    atomic_store(&arena_used, NODE_ALIGN);
    return 0;
}

void mt_stack_reset(void)
{
    if (buckets == NULL || arena == NULL)
        return;
    /* A fresh bucket array is cheaper than clearing a touched one; the old one is dropped. */
    mt_pages_unmap(buckets, NBUCKETS * sizeof *buckets);
    buckets = mt_pages_map(NBUCKETS * sizeof *buckets, MAP_NORESERVE);
    atomic_store(&arena_used, NODE_ALIGN);
    atomic_store(&next_id, 0);
}

static uint64_t hash_frames(const uint64_t *f, uint32_t n, int trunc)
{
    /* Four independent lanes: a single multiply chain costs its latency on every frame (it was
     * 10% of the shim's time on a 15-frame stack); four chains overlap. */
    uint64_t a = 0x9e3779b97f4a7c15ULL ^ n, b = 0x2545f4914f6cdd1dULL ^ ((uint64_t)trunc << 32);
    uint64_t c = 0x61c8864680b583ebULL, d = 0x94d049bb133111ebULL;
    const uint64_t m = 0xff51afd7ed558ccdULL;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a = (a ^ f[i]) * m;
        b = (b ^ f[i + 1]) * m;
        c = (c ^ f[i + 2]) * m;
        d = (d ^ f[i + 3]) * m;
        a ^= a >> 29;
        b ^= b >> 29;
        c ^= c >> 29;
        d ^= d >> 29;
    }
    for (; i < n; i++) {
        a = (a ^ f[i]) * m;
        a ^= a >> 29;
    }
    uint64_t h =
        a ^ (b * 0x9e3779b97f4a7c15ULL) ^ ((c << 21) | (c >> 43)) ^ ((d << 42) | (d >> 22));
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    return h | 1; /* never 0: cache slots use 0 for empty */
}

static int same(const struct mt_stack_node *nd, uint64_t h, const uint64_t *f, uint32_t n,
                int trunc)
{
    return nd->hash == h && nd->nframes == n && nd->trunc == trunc &&
           memcmp(nd->frames, f, n * sizeof *f) == 0;
}

static struct mt_stack_node *at(uint64_t off)
{
    return (struct mt_stack_node *)(arena + off);
}

struct mt_stack_node *mt_stack_intern(struct mt_stack_cache *cache, const uint64_t *frames,
                                      uint32_t n, int trunc, unsigned *slot_out)
{
    if (buckets == NULL)
        return NULL;
    uint64_t h = hash_frames(frames, n, trunc);
    unsigned slot = (unsigned)(h >> 7) & (MT_STACK_CACHE_SLOTS - 1);
    if (slot_out != NULL)
        *slot_out = slot;
    if (cache != NULL && cache->hash[slot] == h && same(cache->node[slot], h, frames, n, trunc))
        return cache->node[slot];

    _Atomic uint64_t *head = &buckets[h >> (64 - BUCKET_BITS)];
    uint64_t first = atomic_load_explicit(head, memory_order_acquire);
    struct mt_stack_node *mine = NULL;
    uint64_t mine_off = 0;
    for (;;) {
        for (uint64_t o = first; o != 0; o = at(o)->next)
            if (same(at(o), h, frames, n, trunc)) {
                mine = at(o); /* found (possibly inserted by another thread meanwhile) */
                goto found;
            }
        if (mine_off == 0) {
            uint64_t size = sizeof(struct mt_stack_node) + (uint64_t)n * sizeof(uint64_t);
            mine_off = atomic_fetch_add(&arena_used, size);
            if (mine_off + size > ARENA_BYTES)
                return NULL;
            struct mt_stack_node *nd = at(mine_off);
            nd->hash = h;
            nd->nframes = (uint16_t)n;
            nd->trunc = (uint8_t)trunc;
            atomic_store_explicit(&nd->written, 0, memory_order_relaxed);
            atomic_store_explicit(&nd->aux, 0, memory_order_relaxed);
            memcpy(nd->frames, frames, n * sizeof *frames);
            nd->id = 0;
        }
        at(mine_off)->next = first;
        if (atomic_compare_exchange_weak_explicit(head, &first, mine_off, memory_order_release,
                                                  memory_order_acquire))
            break;
        /* Lost the race: rescan the new chain before retrying. If another thread inserted the
         * same stack our node is simply never linked (a few wasted bytes). */
    }
    mine = at(mine_off);
    /* The id is assigned after publication, so ids follow insertion order; readers that find a
     * node with id 0 wait for it (the inserter is between two plain stores). */
    __atomic_store_n(&mine->id, atomic_fetch_add(&next_id, 1) + 1, __ATOMIC_RELEASE);
found:
    while (__atomic_load_n(&mine->id, __ATOMIC_ACQUIRE) == 0)
        __builtin_ia32_pause();
    if (cache != NULL) {
        cache->hash[slot] = h;
        cache->node[slot] = mine;
        cache->mark[slot] = 0;
    }
    return mine;
}

uint32_t mt_stack_id(const struct mt_stack_node *nd)
{
    return __atomic_load_n(&nd->id, __ATOMIC_ACQUIRE);
}

int mt_stack_aux_get(const struct mt_stack_node *nd, uint32_t *value)
{
    uint64_t a = atomic_load_explicit(&((struct mt_stack_node *)nd)->aux, memory_order_acquire);
    *value = (uint32_t)a;
    return a != 0;
}

void mt_stack_aux_set(struct mt_stack_node *nd, uint32_t value)
{
    atomic_store_explicit(&nd->aux, (1ULL << 32) | value, memory_order_release);
}

unsigned mt_stack_slot(const struct mt_stack_node *nd)
{
    return (unsigned)(nd->hash >> 7) & (MT_STACK_CACHE_SLOTS - 1);
}

uint32_t mt_stack_nframes(const struct mt_stack_node *nd)
{
    return nd->nframes;
}

int mt_stack_truncated(const struct mt_stack_node *nd)
{
    return nd->trunc;
}

const uint64_t *mt_stack_frames(const struct mt_stack_node *nd)
{
    return nd->frames;
}

int mt_stack_written(const struct mt_stack_node *nd)
{
    return atomic_load_explicit(&nd->written, memory_order_acquire);
}

void mt_stack_mark_written(struct mt_stack_node *nd)
{
    atomic_store_explicit(&nd->written, 1, memory_order_release);
}

void mt_stack_cache_clear(struct mt_stack_cache *cache)
{
    memset(cache, 0, sizeof *cache);
}

uint32_t mt_stack_count(void)
{
    return atomic_load(&next_id);
}
