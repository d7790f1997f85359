/* Live heap blocks for the leak scan: see livetab.h. Each shard is an open-addressing table
 * (linear probing, key 0 empty, key 1 deleted) behind a spin lock; a shard doubles (dropping its
 * deleted slots) at 60% fill. 64 shards keep two threads from meeting on one lock most of the
 * time; the lock is held for a few probes only. */
#include "livetab.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "heapsort.h"
#include "pages.h"

#define SHARDS    64
#define MIN_SLOTS 1024
#define EMPTY     0
#define DELETED   1

struct slot {
    uint64_t key, size;
};

struct shard {
    atomic_flag lock;
    struct slot *slots;
    size_t cap;  /* slots, a power of two (0: not allocated) */
    size_t used; /* live + deleted */
    size_t live;
} __attribute__((aligned(64)));

static struct shard shards[SHARDS];
static atomic_int enabled;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static void lock(struct shard *s)
{
    while (atomic_flag_test_and_set_explicit(&s->lock, memory_order_acquire))
        __builtin_ia32_pause();
}

static void unlock(struct shard *s)
{
    atomic_flag_clear_explicit(&s->lock, memory_order_release);
}

void mt_live_enable(void)
{
    atomic_store(&enabled, 1);
}

int mt_live_enabled(void)
{
    return atomic_load_explicit(&enabled, memory_order_relaxed);
}

static void insert_slot(struct slot *slots, size_t cap, uint64_t key, uint64_t size)
{
    for (size_t i = mix(key) & (cap - 1);; i = (i + 1) & (cap - 1))
        if (slots[i].key == EMPTY || slots[i].key == DELETED) {
            slots[i].key = key;
            slots[i].size = size;
            return;
        }
}

/* Make room for one more entry. 0, or -1 if no memory (the entry is then not recorded). */
static int reserve(struct shard *s)
{
    if (s->cap != 0 && (s->used + 1) * 10 < s->cap * 6)
        return 0;
    size_t cap = MIN_SLOTS;
    while (cap * 6 <= (s->live + 1) * 10 * 2)
        cap *= 2;
    struct slot *n = mt_pages_map(cap * sizeof *n, 0);
    if (n == NULL)
        return -1;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i].key > DELETED)
            insert_slot(n, cap, s->slots[i].key, s->slots[i].size);
    mt_pages_unmap(s->slots, s->cap * sizeof *s->slots);
    s->slots = n;
    s->cap = cap;
    s->used = s->live;
    return 0;
}

/* The slot holding key, or NULL. Caller holds the lock. */
static struct slot *find(struct shard *s, uint64_t key)
{
    if (s->cap == 0)
        return NULL;
    for (size_t i = mix(key) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (s->slots[i].key == key)
            return &s->slots[i];
        if (s->slots[i].key == EMPTY)
            return NULL;
    }
}

static struct shard *shard_of(uint64_t addr)
{
    return &shards[mix(addr) >> 58]; /* top 6 bits: 64 shards; the probe uses the low bits */
}

void mt_live_add(uint64_t addr, uint64_t size)
{
    if (!mt_live_enabled() || addr <= DELETED)
        return;
    struct shard *s = shard_of(addr);
    lock(s);
    struct slot *e = find(s, addr);
    if (e != NULL) {
        e->size = size;
    } else if (reserve(s) == 0) {
        size_t i = mix(addr) & (s->cap - 1);
        while (s->slots[i].key > DELETED)
            i = (i + 1) & (s->cap - 1);
        if (s->slots[i].key == EMPTY)
            s->used++;
        s->slots[i].key = addr;
        s->slots[i].size = size;
        s->live++;
    }
    unlock(s);
}

int mt_live_take(uint64_t addr, uint64_t *size)
{
    if (!mt_live_enabled() || addr <= DELETED)
        return 0;
    struct shard *s = shard_of(addr);
    lock(s);
    struct slot *e = find(s, addr);
    if (e != NULL) {
        if (size != NULL)
            *size = e->size;
        e->key = DELETED;
        s->live--;
    }
    unlock(s);
    return e != NULL;
}

void mt_live_del(uint64_t addr)
{
    (void)mt_live_take(addr, NULL);
}

uint64_t mt_live_count(void)
{
    uint64_t n = 0;
    for (int i = 0; i < SHARDS; i++)
        n += __atomic_load_n(&shards[i].live, __ATOMIC_RELAXED);
    return n;
}

static int addr_less(const struct mt_live_block *a, const struct mt_live_block *b)
{
    return a->addr < b->addr;
}

MT_HEAPSORT(sort_blocks, struct mt_live_block, addr_less)

size_t mt_live_snapshot(struct mt_live_block **out)
{
    *out = NULL;
    for (int i = 0; i < SHARDS; i++)
        lock(&shards[i]);
    size_t n = 0;
    for (int i = 0; i < SHARDS; i++)
        n += shards[i].live;
    struct mt_live_block *b = n ? mt_pages_map(n * sizeof *b, 0) : NULL;
    size_t k = 0;
    for (int i = 0; b != NULL && i < SHARDS; i++)
        for (size_t j = 0; j < shards[i].cap; j++)
            if (shards[i].slots[j].key > DELETED && k < n)
                b[k++] = (struct mt_live_block){ shards[i].slots[j].key, shards[i].slots[j].size };
    for (int i = SHARDS; i-- > 0;)
        unlock(&shards[i]);
    if (b == NULL)
        return 0;
    sort_blocks(b, k);
    *out = b;
    return k;
}

void mt_live_release(struct mt_live_block *blocks, size_t n)
{
    mt_pages_unmap(blocks, n * sizeof *blocks);
}

void mt_live_fork_child(void)
{
    for (int i = 0; i < SHARDS; i++)
        atomic_flag_clear(&shards[i].lock);
}

void mt_live_reset(void)
{
    for (int i = 0; i < SHARDS; i++) {
        mt_pages_unmap(shards[i].slots, shards[i].cap * sizeof(struct slot));
        memset(&shards[i], 0, sizeof shards[i]);
    }
    atomic_store(&enabled, 0);
}
