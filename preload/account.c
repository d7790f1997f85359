/* Live counters, caps and snapshots (see account.h). The heap path is lock-free: a plain store
 * into the thread's own cell without a cap, one CAS loop on a global word with one. Mappings
 * go through the range map under a spin lock taken with every signal blocked (the lock holder
 * can be neither interrupted by a handler that maps, nor killed by a fork child's copy). */
#include "account.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "guard.h"
#include "log.h"
#include "memtrace/format.h"
#include "pages.h"
#include "rangemap.h"
#include "tbuf.h"

/* ---- heap ------------------------------------------------------------------------------------ */

/* The global heap word sits on its own cache line: with a cap every thread's malloc touches it. */
static struct {
    _Alignas(64) _Atomic int64_t heap;      /* cap mode, nested calls, threads without a cell */
    _Alignas(64) _Atomic int64_t frozen;    /* the cells' sum when the cap took over */
    _Atomic int64_t moved[MTF_CLASS_COUNT]; /* heap-family blocks a rule put in another class */
} g;

int mt_acct_heap_capped; /* set once at start-up, before the program's threads exist */

_Atomic uint64_t mt_acct_moved_blocks;
atomic_int mt_acct_fatal;
_Atomic uint64_t mt_acct_deadline = UINT64_MAX;

static int64_t heap_live(void)
{
    return atomic_load_explicit(&g.heap, memory_order_relaxed) + mt_tbuf_heap_sum();
}

int mt_acct_heap_admit(uint32_t cls, uint64_t request, int64_t *reserved, uint64_t *live)
{
    *reserved = 0;
    if (cls == MTF_CLASS_HEAP) {
        if (!mt_acct_heap_capped)
            return 0;
        /* Check and add in one step: two threads can never both pass with the last free
         * bytes (check-then-add would let them), and no thread is refused for bytes another
         * one only held for an instant (add-then-undo would). */
        int64_t base = atomic_load_explicit(&g.frozen, memory_order_relaxed);
        int64_t cur = atomic_load_explicit(&g.heap, memory_order_relaxed);
        uint64_t limit = mt_config.heap_limit;
        do {
            uint64_t now = (uint64_t)(cur + base);
            if (request > limit || now > limit - request) {
                *live = now;
                return -1;
            }
        } while (!atomic_compare_exchange_weak_explicit(
            &g.heap, &cur, cur + (int64_t)request, memory_order_relaxed, memory_order_relaxed));
        *reserved = (int64_t)request;
        return 0;
    }
    uint64_t limit = mt_acct_limit(cls);
    if (limit == 0)
        return 0;
    /* a heap block a rule made external: checked against the external cap, mappings included */
    struct mt_usage u;
    mt_acct_counters(&u);
    uint64_t now = cls == MTF_CLASS_EXTERNAL ? u.external : u.mapped;
    if (request > limit || now > limit - request) {
        *live = now;
        return -1;
    }
    atomic_fetch_add_explicit(&g.moved[cls], (int64_t)request, memory_order_relaxed);
    *reserved = (int64_t)request;
    return 0;
}

void mt_acct_heap_done_slow(uint32_t cls, int64_t delta, int64_t reserved, int nested)
{
    int64_t d = delta - reserved;
    if (d == 0)
        return;
    if (cls != MTF_CLASS_HEAP) {
        atomic_fetch_add_explicit(&g.moved[cls], d, memory_order_relaxed);
        return;
    }
    if (!mt_acct_heap_capped && !nested) {
        int64_t *cell = mt_tbuf_heap_cell();
        if (MT_LIKELY(cell != NULL)) {
            /* only this thread writes the cell, and never from a handler: a plain add */
            __atomic_store_n(cell, __atomic_load_n(cell, __ATOMIC_RELAXED) + d, __ATOMIC_RELAXED);
            return;
        }
    }
    atomic_fetch_add_explicit(&g.heap, d, memory_order_relaxed);
}

/* ---- blocks in another class: an open-addressing table in a reservation ---------------------- */

#define SIDE_BITS  22 /* 4M slots, 64 MiB of address space, touched pages only */
#define SIDE_SLOTS (1UL << SIDE_BITS)
#define SIDE_PROBE 4096
#define SIDE_EMPTY 0
#define SIDE_TOMB  1 /* a removed entry: lookups go on past it, inserts reuse it */

struct side_slot {
    _Atomic uint64_t addr;
    _Atomic uint32_t cls;
};

static struct side_slot *side;
static atomic_flag side_warned = ATOMIC_FLAG_INIT;

static size_t side_hash(uint64_t addr)
{
    return (size_t)((addr * 0x9e3779b97f4a7c15ULL) >> (64 - SIDE_BITS));
}

static struct side_slot *side_table(void)
{
    return mt_pages_map_once((void **)&side, SIDE_SLOTS * sizeof(struct side_slot), MAP_NORESERVE);
}

void mt_acct_block_put(uint64_t addr, uint32_t cls)
{
    struct side_slot *t = side_table();
    if (t != NULL && addr > SIDE_TOMB) {
        size_t h = side_hash(addr);
        for (size_t i = 0; i < SIDE_PROBE; i++) {
            struct side_slot *s = &t[(h + i) & (SIDE_SLOTS - 1)];
            uint64_t a = atomic_load_explicit(&s->addr, memory_order_acquire);
            if (a != SIDE_EMPTY && a != SIDE_TOMB)
                continue;
            atomic_store_explicit(&s->cls, cls, memory_order_relaxed);
            if (atomic_compare_exchange_strong(&s->addr, &a, addr)) {
                atomic_fetch_add(&mt_acct_moved_blocks, 1);
                return;
            }
        }
    }
    if (!atomic_flag_test_and_set(&side_warned))
        mt_log_warn("the table of blocks moved by MEMTRACE_RULES is full: their frees count "
                    "as heap from now on");
}

uint32_t mt_acct_block_take(uint64_t addr)
{
    struct side_slot *t = __atomic_load_n(&side, __ATOMIC_ACQUIRE);
    if (t == NULL || addr <= SIDE_TOMB)
        return MTF_CLASS_HEAP;
    size_t h = side_hash(addr);
    for (size_t i = 0; i < SIDE_PROBE; i++) {
        struct side_slot *s = &t[(h + i) & (SIDE_SLOTS - 1)];
        uint64_t a = atomic_load_explicit(&s->addr, memory_order_acquire);
        if (a == SIDE_EMPTY)
            break;
        if (a != addr)
            continue;
        uint32_t cls = atomic_load_explicit(&s->cls, memory_order_relaxed);
        if (atomic_compare_exchange_strong(&s->addr, &a, SIDE_TOMB)) {
            atomic_fetch_sub(&mt_acct_moved_blocks, 1);
            return cls;
        }
        break;
    }
    return MTF_CLASS_HEAP;
}

/* ---- mappings -------------------------------------------------------------------------------- */

static struct mt_rangemap maps;
static atomic_flag maps_busy = ATOMIC_FLAG_INIT;
static uint64_t page_size;

/* The range array grows in fresh anonymous pages (raw system calls: never our own hooks). */
static void *grow_pages(void *old, size_t old_bytes, size_t new_bytes)
{
    void *p = NULL;
    if (new_bytes != 0) {
        p = mt_pages_map(new_bytes, 0);
        if (p == NULL)
            return NULL;
        if (old != NULL)
            memcpy(p, old, old_bytes < new_bytes ? old_bytes : new_bytes);
    }
    if (old != NULL)
        mt_pages_unmap(old, old_bytes);
    return p;
}

uint64_t mt_acct_page(void)
{
    if (MT_UNLIKELY(page_size == 0)) {
        unsigned long p = getauxval(AT_PAGESZ);
        page_size = p ? p : 4096;
    }
    return page_size;
}

void mt_acct_maps_lock(struct mt_acct_lock *lk)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &lk->old);
    while (atomic_flag_test_and_set_explicit(&maps_busy, memory_order_acquire))
        syscall(SYS_sched_yield);
    if (MT_UNLIKELY(maps.grow == NULL))
        mt_rangemap_init(&maps, grow_pages);
}

void mt_acct_maps_unlock(struct mt_acct_lock *lk)
{
    atomic_flag_clear_explicit(&maps_busy, memory_order_release);
    pthread_sigmask(SIG_SETMASK, &lk->old, NULL);
}

void mt_acct_maps_visit(void (*visit)(void *vctx, uint64_t start, uint64_t end), void *vctx)
{
    struct mt_acct_lock lk;
    mt_acct_maps_lock(&lk);
    for (size_t i = 0; i < maps.n; i++)
        visit(vctx, maps.r[i].start, maps.r[i].end);
    mt_acct_maps_unlock(&lk);
}

static uint64_t class_live(uint32_t cls)
{
    return maps.bytes[cls] + (uint64_t)atomic_load_explicit(&g.moved[cls], memory_order_relaxed);
}

int mt_acct_maps_admit(uint32_t cls, uint64_t request, uint64_t *live)
{
    uint64_t limit = mt_acct_limit(cls);
    if (limit == 0 || cls == MTF_CLASS_HEAP)
        return 0;
    uint64_t now = class_live(cls);
    if (request > limit || now > limit - request) {
        *live = now;
        return -1;
    }
    return 0;
}

uint64_t mt_acct_maps_overlap(uint32_t cls, uint64_t addr, uint64_t len)
{
    uint64_t end = addr + mt_page_round(len, mt_acct_page()), sum = 0;
    for (size_t i = 0; i < maps.n; i++) {
        const struct mt_range *r = &maps.r[i];
        if (r->end <= addr || r->start >= end || r->cls != cls)
            continue;
        uint64_t s = r->start > addr ? r->start : addr, e = r->end < end ? r->end : end;
        sum += e - s;
    }
    return sum;
}

void mt_acct_map_add(uint64_t addr, uint64_t len, uint32_t cls)
{
    (void)mt_acct_mmap(&maps, addr, len, mt_acct_page(), cls, 0, NULL, NULL);
}

void mt_acct_map_remove(uint64_t addr, uint64_t len)
{
    mt_acct_munmap(&maps, addr, len, mt_acct_page(), NULL, NULL);
}

uint32_t mt_acct_map_move_class(uint64_t old)
{
    return mt_acct_mremap_class(&maps, old, -1);
}

void mt_acct_map_move(uint64_t old, uint64_t old_len, uint64_t new_addr, uint64_t new_len,
                      uint64_t flags, uint32_t cls)
{
    (void)mt_acct_mremap(&maps, old, old_len, new_addr, new_len, flags, mt_acct_page(), cls, 0,
                         NULL, NULL);
}

/* ---- counters and snapshots ------------------------------------------------------------------ */

void mt_acct_counters(struct mt_usage *u)
{
    memset(u, 0, sizeof *u);
    int64_t heap =
        heap_live() + atomic_load_explicit(&g.moved[MTF_CLASS_HEAP], memory_order_relaxed);
    u->heap_used = heap > 0 ? (uint64_t)heap : 0;
    struct mt_acct_lock lk;
    mt_acct_maps_lock(&lk);
    u->external = class_live(MTF_CLASS_EXTERNAL);
    u->mapped = class_live(MTF_CLASS_MAPPED);
    mt_acct_maps_unlock(&lk);
}

static uint64_t parse_u64(const char **p)
{
    uint64_t v = 0;
    while (**p == ' ' || **p == '\t')
        (*p)++;
    while (**p >= '0' && **p <= '9')
        v = v * 10 + (uint64_t)(*(*p)++ - '0');
    return v;
}

static uint64_t rss_bytes(void)
{
    char buf[256];
    if (mt_read_file("/proc/self/statm", buf, sizeof buf) == 0)
        return 0;
    const char *p = buf;
    (void)parse_u64(&p); /* size */
    return parse_u64(&p) * mt_acct_page();
}

static uint64_t rss_peak_bytes(void)
{
    char buf[4096];
    if (mt_read_file("/proc/self/status", buf, sizeof buf) == 0)
        return 0;
    const char *p = strstr(buf, "VmHWM:");
    if (p == NULL)
        return 0;
    p += 6;
    return parse_u64(&p) * 1024; /* "VmHWM:   1234 kB" */
}

void mt_acct_usage(struct mt_usage *u, int peak)
{
    mt_acct_counters(u);
    u->rss = rss_bytes();
    /* glibc: what the arenas hold from the system (sbrk and mmap'd heaps) plus the chunks it
     * mmap'd on their own; mallinfo2 takes the arena locks, so never from inside the allocator */
    struct mallinfo2 mi = mallinfo2();
    u->heap_total = (uint64_t)mi.arena + (uint64_t)mi.hblkhd;
    if (peak)
        u->rss_peak = rss_peak_bytes();
}

void mt_acct_snapshot(uint32_t reason, const char *label, size_t len)
{
    struct mt_usage u;
    mt_acct_usage(&u, reason == MTF_SNAP_EXIT);
    if (len > MTF_LABEL_MAX)
        len = MTF_LABEL_MAX;
    uint64_t f[9] = { reason,   u.rss,      u.heap_total, u.heap_used,     u.external,
                      u.mapped, u.rss_peak, len,          (uintptr_t)label };
    mt_tbuf_event(MTF_EV_SNAPSHOT, 0, mt_clock_ns(), f);
}

void mt_acct_interval(uint64_t ts)
{
    uint64_t due = atomic_load_explicit(&mt_acct_deadline, memory_order_relaxed);
    if (ts < due)
        return;
    /* the next deadline is counted from now: a process that slept long takes one snapshot,
     * not one per missed period */
    if (!atomic_compare_exchange_strong(&mt_acct_deadline, &due, ts + mt_config.interval_ns))
        return; /* another thread took this one */
    mt_acct_snapshot(MTF_SNAP_INTERVAL, NULL, 0);
}

/* ---- start-up and fork ----------------------------------------------------------------------- */

uint64_t mt_acct_limit(uint32_t cls)
{
    if (cls == MTF_CLASS_HEAP)
        return mt_config.heap_limit;
    if (cls == MTF_CLASS_EXTERNAL)
        return mt_config.external_limit;
    return 0;
}

void mt_acct_init(void)
{
    (void)mt_acct_page();
    if (mt_config.heap_limit != 0 && !mt_acct_heap_capped) {
        /* what threads put in their cells before the cap was known stays there, frozen */
        atomic_store(&g.frozen, mt_tbuf_heap_sum());
        mt_acct_heap_capped = 1;
    }
    if (mt_config.interval_ns != 0)
        atomic_store(&mt_acct_deadline, mt_clock_ns() + mt_config.interval_ns);
}

/* Held across fork (taken by the forking thread in the prepare handler), so a child never
 * inherits a range map half-way through an update by a thread it does not have. */
static struct mt_acct_lock fork_lock;

void mt_acct_fork_prepare(void)
{
    mt_acct_maps_lock(&fork_lock);
}

void mt_acct_fork_parent(void)
{
    mt_acct_maps_unlock(&fork_lock);
}

void mt_acct_fork_child(void)
{
    mt_acct_maps_unlock(&fork_lock);
    if (mt_config.interval_ns != 0)
        atomic_store(&mt_acct_deadline, mt_clock_ns() + mt_config.interval_ns);
    atomic_store(&mt_acct_fatal, 0);
}
