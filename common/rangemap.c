/* Page ranges with a class: see rangemap.h. Sorted disjoint array, binary search, memmove on
 * insert and delete: mappings number in the thousands at most (vm.max_map_count is 65530). */
#include "rangemap.h"

#include <string.h>

/* linux/mman.h's MREMAP_DONTUNMAP, kept here so the report needs no kernel headers */
#define MREMAP_DONTUNMAP_FLAG 4

void mt_rangemap_init(struct mt_rangemap *m, mt_rangemap_grow_fn grow)
{
    memset(m, 0, sizeof *m);
    m->grow = grow;
}

void mt_rangemap_fini(struct mt_rangemap *m)
{
    if (m->r != NULL)
        m->grow(m->r, m->cap * sizeof *m->r, 0);
    mt_rangemap_grow_fn grow = m->grow;
    mt_rangemap_init(m, grow);
}

/* Make room for `extra` more ranges. 0, or -1 if the array cannot grow. */
static int reserve(struct mt_rangemap *m, size_t extra)
{
    if (m->n + extra <= m->cap)
        return 0;
    size_t cap = m->cap ? m->cap * 2 : 64;
    while (cap < m->n + extra)
        cap *= 2;
    void *r = m->grow(m->r, m->cap * sizeof *m->r, cap * sizeof *m->r);
    if (r == NULL)
        return -1;
    m->r = r;
    m->cap = cap;
    return 0;
}

/* Index of the first range whose end is above addr (n if none). */
static size_t first_after(const struct mt_rangemap *m, uint64_t addr)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->r[mid].end <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void take(struct mt_rangemap *m, const struct mt_range *r, uint64_t s, uint64_t e,
                 mt_range_fn fn, void *ctx)
{
    struct mt_range piece = { s, e, r->cls, r->tag };
    m->bytes[r->cls] -= e - s;
    if (fn != NULL)
        fn(ctx, &piece);
}

void mt_rangemap_remove(struct mt_rangemap *m, uint64_t start, uint64_t end, mt_range_fn fn,
                        void *ctx)
{
    if (start >= end)
        return;
    size_t i = first_after(m, start);
    if (i == m->n || m->r[i].start >= end)
        return;
    struct mt_range *r = &m->r[i];
    if (r->start < start && r->end > end) { /* the span is inside one range: split it */
        take(m, r, start, end, fn, ctx);
        struct mt_range tail = { end, r->end, r->cls, r->tag };
        r->end = start;
        if (reserve(m, 1) != 0) { /* cannot keep the tail: it leaves the count, and says so */
            take(m, &tail, tail.start, tail.end, NULL, NULL);
            m->lost++;
            return;
        }
        memmove(&m->r[i + 2], &m->r[i + 1], (m->n - i - 1) * sizeof *m->r);
        m->r[i + 1] = tail;
        m->n++;
        return;
    }
    if (r->start < start) { /* keep the head of the first range */
        take(m, r, start, r->end, fn, ctx);
        r->end = start;
        i++;
    }
    size_t j = i;
    while (j < m->n && m->r[j].end <= end) { /* ranges wholly inside go */
        take(m, &m->r[j], m->r[j].start, m->r[j].end, fn, ctx);
        j++;
    }
    if (j < m->n && m->r[j].start < end) { /* keep the tail of the last range */
        take(m, &m->r[j], m->r[j].start, end, fn, ctx);
        m->r[j].start = end;
    }
    if (j > i) {
        memmove(&m->r[i], &m->r[j], (m->n - j) * sizeof *m->r);
        m->n -= j - i;
    }
}

int mt_rangemap_add(struct mt_rangemap *m, uint64_t start, uint64_t end, uint32_t cls, uint32_t tag,
                    mt_range_fn fn, void *ctx)
{
    if (start >= end || cls >= MTF_CLASS_COUNT)
        return 0;
    mt_rangemap_remove(m, start, end, fn, ctx);
    if (reserve(m, 1) != 0) {
        m->lost++;
        return -1;
    }
    size_t i = first_after(m, start);
    memmove(&m->r[i + 1], &m->r[i], (m->n - i) * sizeof *m->r);
    m->r[i] = (struct mt_range){ start, end, cls, tag };
    m->n++;
    m->bytes[cls] += end - start;
    return 0;
}

const struct mt_range *mt_rangemap_find(const struct mt_rangemap *m, uint64_t addr)
{
    size_t i = first_after(m, addr);
    return i < m->n && m->r[i].start <= addr ? &m->r[i] : NULL;
}

/* [addr, addr + round(len)), saturating at the top of the address space. */
static uint64_t span_end(uint64_t addr, uint64_t len, uint64_t page)
{
    uint64_t e = addr + mt_page_round(len, page);
    return e < addr ? UINT64_MAX : e;
}

int mt_acct_mmap(struct mt_rangemap *m, uint64_t addr, uint64_t len, uint64_t page, uint32_t cls,
                 uint32_t tag, mt_range_fn fn, void *ctx)
{
    return mt_rangemap_add(m, addr, span_end(addr, len, page), cls, tag, fn, ctx);
}

void mt_acct_munmap(struct mt_rangemap *m, uint64_t addr, uint64_t len, uint64_t page,
                    mt_range_fn fn, void *ctx)
{
    mt_rangemap_remove(m, addr, span_end(addr, len, page), fn, ctx);
}

uint32_t mt_acct_mremap_class(const struct mt_rangemap *m, uint64_t old, int explicit_cls)
{
    if (explicit_cls >= 0 && explicit_cls < MTF_CLASS_COUNT)
        return (uint32_t)explicit_cls;
    const struct mt_range *r = mt_rangemap_find(m, old);
    return r != NULL ? r->cls : MTF_CLASS_EXTERNAL;
}

int mt_acct_mremap(struct mt_rangemap *m, uint64_t old, uint64_t old_len, uint64_t new_addr,
                   uint64_t new_len, uint64_t flags, uint64_t page, uint32_t cls, uint32_t tag,
                   mt_range_fn fn, void *ctx)
{
    if (!(flags & MREMAP_DONTUNMAP_FLAG) && old_len != 0)
        mt_rangemap_remove(m, old, span_end(old, old_len, page), fn, ctx);
    return mt_rangemap_add(m, new_addr, span_end(new_addr, new_len, page), cls, tag, fn, ctx);
}
