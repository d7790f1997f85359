/* Sampling mode (see sample.h). The unsampled path of a hook is one TLS subtraction and compare
 * (mt_sample_take), four stores into the thread's own counter cell, and for a free one relaxed
 * load while no sampled block is live. Everything else (seeding, drawing the next interval, the
 * address set, the registry of counter cells) is off that path. Never calls malloc: cells and the
 * set live in pages mapped with raw system calls; libm is not used (mt_sample_neg_log).
 */
#include "sample.h"

#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "guard.h"
#include "log.h"
#include "pages.h"
#include "reach.h"
#include "writer.h"

__thread struct mt_sample_tls mt_sample_tls __attribute__((tls_model("initial-exec")));

uint64_t mt_sample_rate;
_Atomic uint64_t mt_sample_set_count;

static uint64_t seed_fixed;     /* MEMTRACE_SAMPLE_SEED, 0 for tid and clock */
static _Atomic uint64_t seeded; /* threads seeded so far (the fixed seed's stream index) */
static _Atomic(struct mt_sample_cell *) registry;
static struct mt_sample_cell shared; /* exiting threads and nested calls: atomics only */
static _Atomic uint64_t set_full;    /* sampled allocations the set could not hold */
static pthread_key_t exit_key;
static atomic_int key_state; /* 0 none, 1 being created, 2 ready, 3 failed */

void mt_sample_init(void)
{
    mt_sample_rate = mt_config.sample_bytes;
    seed_fixed = mt_config.sample_seed;
}

/* ---- the exponential draw -------------------------------------------------------------------- */

double mt_sample_neg_log(double u)
{
    /* u = m * 2^e with m in [1, 2): ln u = e ln 2 + ln m, and ln m = 2 atanh(s) with
     * s = (m - 1) / (m + 1) in [0, 1/3], whose odd series to s^11 is within 2e-7 of ln m. */
    uint64_t bits;
    memcpy(&bits, &u, sizeof bits);
    int e = (int)((bits >> 52) & 0x7ff) - 1023;
    bits = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
    double m;
    memcpy(&m, &bits, sizeof m);
    double s = (m - 1.0) / (m + 1.0), s2 = s * s;
    double ln_m =
        2.0 * s *
        (1.0 + s2 * (1.0 / 3 + s2 * (1.0 / 5 + s2 * (1.0 / 7 + s2 * (1.0 / 9 + s2 / 11)))));
    return -(e * 0.69314718055994530942 + ln_m);
}

static uint64_t next_random(uint64_t *state) /* xorshift64* (Vigna 2016) */
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dULL;
}

uint64_t mt_sample_draw(uint64_t *rng, uint64_t rate)
{
    /* 53 random bits as u in (0, 1]: never 0, so -ln u is finite */
    double u = (double)((next_random(rng) >> 11) + 1) * (1.0 / 9007199254740992.0);
    double v = mt_sample_neg_log(u) * (double)rate;
    if (v < 1.0)
        return 1;
    if (v > (double)(INT64_MAX >> 1))
        return (uint64_t)(INT64_MAX >> 1);
    return (uint64_t)v;
}

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

int mt_sample_take_slow(uint64_t size)
{
    struct mt_sample_tls *t = &mt_sample_tls;
    struct mt_sample_cell *c = mt_sample_cell();
    uint64_t spare = 0; /* an exiting thread without a cell draws from a stream of its own */
    uint64_t *rng = c != NULL ? &c->rng : &spare;
    if (MT_UNLIKELY(*rng == 0)) {
        /* First allocation of this thread: seed, then draw its first point. A fixed seed gives
         * the n-th thread to start sampling the n-th stream (the main thread is the first). */
        uint64_t n = atomic_fetch_add_explicit(&seeded, 1, memory_order_relaxed);
        uint64_t s = seed_fixed != 0
                         ? splitmix(seed_fixed + n)
                         : splitmix(mt_clock_ns() ^ ((uint64_t)syscall(SYS_gettid) << 32) ^ n);
        *rng = s != 0 ? s : 1;
        int64_t left = (int64_t)mt_sample_draw(rng, mt_sample_rate) - (int64_t)(size ? size : 1);
        if (left > 0) {
            t->left = left;
            return 0;
        }
    }
    /* The allocation covers a point of the process. By memorylessness the distance from its
     * end to the next point is again exponential with mean rate, whatever the overshoot. */
    t->left = (int64_t)mt_sample_draw(rng, mt_sample_rate);
    return 1;
}

/* ---- counter cells --------------------------------------------------------------------------- */

#define CELLS_PER_MAP 64

/* Key destructor: re-armed until the last round, so that what the program's own destructors
 * free is still counted in the cell; then the cell is given up for a later thread (its sums
 * stay: the registry's total is what every thread did). */
static void thread_exit(void *arg)
{
    struct mt_sample_cell *c = arg;
    if (c == NULL || mt_sample_tls.cell != c)
        return;
    if (++c->rounds < PTHREAD_DESTRUCTOR_ITERATIONS) {
        uint32_t saved = mt_tls.in;
        mt_guard_set(MT_IN_SHIM); /* pthread_setspecific may allocate for high keys */
        pthread_setspecific(exit_key, c);
        mt_guard_set(saved);
        return;
    }
    c->rounds = 0;
    c->rng = 0;
    mt_sample_tls.cell = MT_SAMPLE_RETIRED;
    atomic_store_explicit(&c->owned, 0, memory_order_release);
}

static int key_ready(void)
{
    int st = atomic_load(&key_state);
    if (st == 0 && atomic_compare_exchange_strong(&key_state, &st, 1)) {
        uint32_t saved = mt_tls.in;
        mt_guard_set(MT_IN_SHIM);
        st = pthread_key_create(&exit_key, thread_exit) == 0 ? 2 : 3;
        mt_guard_set(saved);
        atomic_store(&key_state, st);
    }
    while (st == 1)
        st = atomic_load(&key_state);
    return st == 2;
}

struct mt_sample_cell *mt_sample_cell_slow(void)
{
    if (mt_sample_tls.cell == MT_SAMPLE_RETIRED || !key_ready())
        return NULL;
    struct mt_sample_cell *c;
    for (c = atomic_load(&registry); c != NULL; c = c->next) {
        int no = 0;
        if (atomic_load_explicit(&c->owned, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&c->owned, &no, 1))
            break;
    }
    if (c == NULL) {
        struct mt_sample_cell *block = mt_pages_map(CELLS_PER_MAP * sizeof *block, 0);
        if (block == NULL)
            return NULL;
        /* the first cell is ours; the rest are published unowned */
        atomic_store(&block[0].owned, 1);
        for (int i = 0; i < CELLS_PER_MAP; i++) {
            struct mt_sample_cell *head = atomic_load(&registry);
            do
                block[i].next = head;
            while (!atomic_compare_exchange_weak(&registry, &head, &block[i]));
        }
        c = &block[0];
    }
    mt_sample_tls.cell = c;
    uint32_t saved = mt_tls.in;
    mt_guard_set(MT_IN_SHIM);
    pthread_setspecific(exit_key, c);
    mt_guard_set(saved);
    return c;
}

void mt_sample_count_shared(unsigned kind, int64_t blocks, int64_t usable, uint64_t request)
{
    __atomic_fetch_add(&shared.calls[kind], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&shared.live_blocks, blocks, __ATOMIC_RELAXED);
    __atomic_fetch_add(&shared.live_usable, usable, __ATOMIC_RELAXED);
    __atomic_fetch_add(&shared.alloc_bytes, request, __ATOMIC_RELAXED);
}

static void add_cell(struct mtf_totals *t, const struct mt_sample_cell *c)
{
    for (int k = 0; k < MTF_EV_KIND_COUNT; k++)
        t->calls[k] += __atomic_load_n(&c->calls[k], __ATOMIC_RELAXED);
    t->live_blocks += __atomic_load_n(&c->live_blocks, __ATOMIC_RELAXED);
    t->live_usable += __atomic_load_n(&c->live_usable, __ATOMIC_RELAXED);
    t->alloc_bytes += __atomic_load_n(&c->alloc_bytes, __ATOMIC_RELAXED);
}

void mt_sample_totals(struct mtf_totals *t)
{
    for (const struct mt_sample_cell *c = atomic_load(&registry); c != NULL; c = c->next)
        add_cell(t, c);
    add_cell(t, &shared);
    t->unsampleable = atomic_load(&set_full);
    t->sample_bytes = mt_sample_rate;
}

int mt_sample_write_totals(const struct mt_reach_result *rr)
{
    if (mt_sample_rate == 0)
        return 0;
    struct mtf_totals t;
    memset(&t, 0, sizeof t);
    mt_sample_totals(&t);
    if (rr != NULL) {
        t.flags |= MTF_TOTALSF_SCANNED;
        t.lost_blocks = rr->direct_blocks + rr->indirect_blocks;
        t.lost_bytes = rr->direct_bytes + rr->indirect_bytes;
    }
    t.ts_ns = mt_clock_ns();
    struct iovec v = { &t, sizeof t };
    return mt_writer_record(MTF_REC_TOTALS, &v, 1);
}

void mt_sample_fork_child(void)
{
    /* One thread survives a fork: the other threads' cells are free again, every count starts
     * from zero (the child's TOTALS count its own calls), and the countdown goes on. */
    for (struct mt_sample_cell *c = atomic_load(&registry); c != NULL; c = c->next) {
        struct mt_sample_cell *next = c->next;
        int mine = c == mt_sample_tls.cell;
        memset(c, 0, offsetof(struct mt_sample_cell, next));
        c->next = next;
        atomic_store(&c->owned, mine);
    }
    memset(&shared, 0, offsetof(struct mt_sample_cell, next));
    atomic_store(&set_full, 0);
}

/* ---- the set of sampled blocks --------------------------------------------------------------- */

#define SET_SLOTS (1UL << MT_SAMPLE_SET_BITS)
#define SET_EMPTY 0
#define SET_TOMB  1 /* removed: lookups read on past it, inserts reuse it */

static _Atomic uint64_t *set; /* mapped on first use (mt_pages_map_once) */
_Atomic uint8_t mt_sample_filter[1U << MT_SAMPLE_FILTER_BITS];

static size_t set_hash(uint64_t addr)
{
    return (size_t)((addr * MT_SAMPLE_HASH_MUL) >> (64 - MT_SAMPLE_SET_BITS));
}

/* The filter's counters: +1 before a block enters the table, -1 after it left; 255 sticks (a
 * group that full is probed from then on). */
static void filter_add(uint64_t addr, int d)
{
    _Atomic uint8_t *c = &mt_sample_filter[mt_sample_filter_slot(addr)];
    uint8_t v = atomic_load_explicit(c, memory_order_relaxed);
    while (v != 255 && !atomic_compare_exchange_weak_explicit(
                           c, &v, (uint8_t)(v + d), memory_order_relaxed, memory_order_relaxed))
        ;
}

static _Atomic uint64_t *set_table(void)
{
    return mt_pages_map_once((void **)&set, SET_SLOTS * sizeof(uint64_t), MAP_NORESERVE);
}

int mt_sample_set_put(uint64_t addr)
{
    _Atomic uint64_t *t = set_table();
    if (t != NULL && addr > SET_TOMB) {
        size_t h = set_hash(addr);
        for (size_t i = 0; i < MT_SAMPLE_WINDOW; i++) {
            _Atomic uint64_t *s = &t[(h + i) & (SET_SLOTS - 1)];
            uint64_t a = atomic_load_explicit(s, memory_order_relaxed);
            if (a != SET_EMPTY && a != SET_TOMB)
                continue;
            /* counted first, so that a lookup that can find the entry also passes the count
             * and the filter */
            atomic_fetch_add(&mt_sample_set_count, 1);
            filter_add(addr, 1);
            if (atomic_compare_exchange_strong(s, &a, addr))
                return 0;
            filter_add(addr, -1);
            atomic_fetch_sub(&mt_sample_set_count, 1);
        }
    }
    if (atomic_fetch_add(&set_full, 1) == 0)
        mt_log_warn("MEMTRACE_SAMPLE: the set of sampled blocks has no room near one address: "
                    "such allocations are counted but not recorded (TOTALS unsampleable)");
    return -1;
}

int mt_sample_set_take_slow(uint64_t addr)
{
    _Atomic uint64_t *t = __atomic_load_n(&set, __ATOMIC_ACQUIRE);
    if (t == NULL || addr <= SET_TOMB)
        return 0;
    size_t h = set_hash(addr);
    for (size_t i = 0; i < MT_SAMPLE_WINDOW; i++) {
        _Atomic uint64_t *s = &t[(h + i) & (SET_SLOTS - 1)];
        uint64_t a = atomic_load_explicit(s, memory_order_relaxed);
        if (a == SET_EMPTY)
            return 0; /* slots never become empty again: nothing lies beyond */
        if (a != addr)
            continue;
        if (atomic_compare_exchange_strong(s, &a, SET_TOMB)) {
            filter_add(addr, -1);
            atomic_fetch_sub(&mt_sample_set_count, 1);
            return 1;
        }
        return 0;
    }
    return 0;
}

void mt_sample_reset(void)
{
    _Atomic uint64_t *t = atomic_exchange(&set, NULL);
    if (t != NULL)
        mt_pages_unmap(t, SET_SLOTS * sizeof *t);
    atomic_store(&mt_sample_set_count, 0);
    atomic_store(&set_full, 0);
    memset(mt_sample_filter, 0, sizeof mt_sample_filter);
    for (struct mt_sample_cell *c = atomic_load(&registry); c != NULL; c = c->next) {
        struct mt_sample_cell *next = c->next;
        int owned = atomic_load(&c->owned);
        memset(c, 0, offsetof(struct mt_sample_cell, next));
        c->next = next;
        atomic_store(&c->owned, owned);
    }
    memset(&shared, 0, offsetof(struct mt_sample_cell, next));
}
