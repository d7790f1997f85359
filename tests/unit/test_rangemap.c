/* common/rangemap: the page-range accounting of trace-format.md §7.2, checked against a model
 * that keeps one class and tag per page, over random mmap/munmap/mremap sequences, plus the
 * named cases of the spec (partial unmap, MAP_FIXED over a mapping, mremap grow/shrink/move,
 * DONTUNMAP, unmaps of ranges never seen). */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdlib.h>
#include <string.h>

#include "rangemap.h"

#define PAGE   4096ULL
#define NPAGES 96
#define BASE   0x7f0000000000ULL

static void *grow_heap(void *old, size_t old_bytes, size_t new_bytes)
{
    (void)old_bytes;
    if (new_bytes == 0) {
        free(old);
        return NULL;
    }
    return realloc(old, new_bytes);
}

/* The model: class + 1 per page (0: nothing mapped), and the tag. */
struct model {
    uint8_t cls[NPAGES];
    uint32_t tag[NPAGES];
};

static uint64_t addr_of(unsigned page)
{
    return BASE + page * PAGE;
}

static void model_put(struct model *md, unsigned first, unsigned n, int cls, uint32_t tag)
{
    for (unsigned p = first; p < first + n && p < NPAGES; p++) {
        md->cls[p] = (uint8_t)(cls + 1);
        md->tag[p] = tag;
    }
}

/* Pieces the callback saw, summed per class. */
struct seen {
    uint64_t bytes[MTF_CLASS_COUNT];
    unsigned calls;
};

static void on_piece(void *ctx, const struct mt_range *piece)
{
    struct seen *s = ctx;
    cr_assert(lt(u64, piece->start, piece->end));
    s->bytes[piece->cls] += piece->end - piece->start;
    s->calls++;
}

static uint64_t total_seen(const struct seen *s)
{
    return s->bytes[0] + s->bytes[1] + s->bytes[2];
}

static void check_against(const struct mt_rangemap *m, const struct model *md)
{
    uint64_t want[MTF_CLASS_COUNT] = { 0 };
    for (unsigned p = 0; p < NPAGES; p++) {
        const struct mt_range *r = mt_rangemap_find(m, addr_of(p) + 123);
        if (md->cls[p] == 0) {
            cr_assert(eq(ptr, (void *)r, NULL), "page %u should be unmapped", p);
            continue;
        }
        cr_assert(ne(ptr, (void *)r, NULL), "page %u should be mapped", p);
        cr_assert(eq(u32, r->cls, md->cls[p] - 1u), "page %u class", p);
        cr_assert(eq(u32, r->tag, md->tag[p]), "page %u tag", p);
        want[md->cls[p] - 1] += PAGE;
    }
    for (unsigned c = 0; c < MTF_CLASS_COUNT; c++)
        cr_assert(eq(u64, m->bytes[c], want[c]), "bytes of class %u", c);
    for (size_t i = 0; i + 1 < m->n; i++)
        cr_assert(le(u64, m->r[i].end, m->r[i + 1].start), "ranges sorted and disjoint");
}

Test(rangemap, partial_munmap_splits_and_counts_only_what_it_covers)
{
    struct mt_rangemap m;
    mt_rangemap_init(&m, grow_heap);
    struct seen s = { 0 };
    cr_assert(eq(
        int, mt_acct_mmap(&m, addr_of(10), 10 * PAGE, PAGE, MTF_CLASS_EXTERNAL, 7, NULL, NULL), 0));
    mt_acct_munmap(&m, addr_of(12), 2 * PAGE, PAGE, on_piece, &s); /* a hole in the middle */
    cr_expect(eq(u64, s.bytes[MTF_CLASS_EXTERNAL], 2 * PAGE));
    cr_expect(eq(u64, m.bytes[MTF_CLASS_EXTERNAL], 8 * PAGE));
    cr_expect(eq(sz, m.n, 2));
    mt_acct_munmap(&m, addr_of(5), 6 * PAGE, PAGE, on_piece, &s); /* the head and space before */
    cr_expect(eq(u64, m.bytes[MTF_CLASS_EXTERNAL], 7 * PAGE));
    mt_acct_munmap(&m, addr_of(50), 100, PAGE, on_piece, &s); /* never mapped: nothing */
    cr_expect(eq(u64, m.bytes[MTF_CLASS_EXTERNAL], 7 * PAGE));
    mt_acct_munmap(&m, addr_of(0), 90 * PAGE, PAGE, on_piece, &s);
    cr_expect(eq(u64, m.bytes[MTF_CLASS_EXTERNAL], 0));
    cr_expect(eq(u64, s.bytes[MTF_CLASS_EXTERNAL], 10 * PAGE), "every page taken once");
    cr_expect(eq(sz, m.n, 0));
    mt_rangemap_fini(&m);
}

Test(rangemap, lengths_round_up_to_pages)
{
    struct mt_rangemap m;
    mt_rangemap_init(&m, grow_heap);
    mt_acct_mmap(&m, addr_of(0), 1, PAGE, MTF_CLASS_MAPPED, 1, NULL, NULL);
    cr_expect(eq(u64, m.bytes[MTF_CLASS_MAPPED], PAGE));
    mt_acct_mmap(&m, addr_of(4), PAGE + 1, PAGE, MTF_CLASS_MAPPED, 1, NULL, NULL);
    cr_expect(eq(u64, m.bytes[MTF_CLASS_MAPPED], 3 * PAGE));
    mt_acct_munmap(&m, addr_of(4), 1, PAGE, NULL, NULL);
    cr_expect(eq(u64, m.bytes[MTF_CLASS_MAPPED], 2 * PAGE));
    cr_expect(eq(u64, mt_page_round(UINT64_MAX, PAGE), ~(PAGE - 1)), "no wrap to 0");
    mt_rangemap_fini(&m);
}

Test(rangemap, map_fixed_over_a_mapping_replaces_it)
{
    struct mt_rangemap m;
    mt_rangemap_init(&m, grow_heap);
    struct seen s = { 0 };
    mt_acct_mmap(&m, addr_of(0), 8 * PAGE, PAGE, MTF_CLASS_EXTERNAL, 1, NULL, NULL);
    mt_acct_mmap(&m, addr_of(2), 2 * PAGE, PAGE, MTF_CLASS_MAPPED, 2, on_piece, &s);
    cr_expect(eq(u64, s.bytes[MTF_CLASS_EXTERNAL], 2 * PAGE), "the covered pages were taken");
    cr_expect(eq(u64, m.bytes[MTF_CLASS_EXTERNAL], 6 * PAGE));
    cr_expect(eq(u64, m.bytes[MTF_CLASS_MAPPED], 2 * PAGE));
    cr_expect(eq(u32, mt_rangemap_find(&m, addr_of(3))->cls, MTF_CLASS_MAPPED));
    cr_expect(eq(u32, mt_rangemap_find(&m, addr_of(4))->tag, 1));
    mt_rangemap_fini(&m);
}

Test(rangemap, mremap_grow_shrink_move_and_dontunmap)
{
    struct mt_rangemap m;
    mt_rangemap_init(&m, grow_heap);
    mt_acct_mmap(&m, addr_of(0), 4 * PAGE, PAGE, MTF_CLASS_EXTERNAL, 1, NULL, NULL);
    uint32_t c = mt_acct_mremap_class(&m, addr_of(0), -1);
    cr_expect(eq(u32, c, MTF_CLASS_EXTERNAL), "class of the old range");
    mt_acct_mremap(&m, addr_of(0), 4 * PAGE, addr_of(0), 6 * PAGE, 0, PAGE, c, 1, NULL, NULL);
    cr_expect(eq(u64, m.bytes[MTF_CLASS_EXTERNAL], 6 * PAGE), "grown in place");
    mt_acct_mremap(&m, addr_of(0), 6 * PAGE, addr_of(0), 3 * PAGE, 0, PAGE, c, 1, NULL, NULL);
    cr_expect(eq(u64, m.bytes[MTF_CLASS_EXTERNAL], 3 * PAGE), "shrunk in place");
    cr_expect(eq(ptr, (void *)mt_rangemap_find(&m, addr_of(4)), NULL));
    mt_acct_mremap(&m, addr_of(0), 3 * PAGE, addr_of(40), 5 * PAGE, 1, PAGE, c, 1, NULL, NULL);
    cr_expect(eq(u64, m.bytes[MTF_CLASS_EXTERNAL], 5 * PAGE), "moved and grown");
    cr_expect(eq(ptr, (void *)mt_rangemap_find(&m, addr_of(0)), NULL), "old range gone");
    mt_acct_mremap(&m, addr_of(40), 5 * PAGE, addr_of(60), 5 * PAGE, 3 | 4, PAGE, c, 1, NULL, NULL);
    cr_expect(eq(u64, m.bytes[MTF_CLASS_EXTERNAL], 10 * PAGE), "DONTUNMAP keeps the old range");
    cr_expect(eq(u32, mt_acct_mremap_class(&m, addr_of(90), -1), MTF_CLASS_EXTERNAL),
              "a range never seen is external");
    mt_acct_mmap(&m, addr_of(80), PAGE, PAGE, MTF_CLASS_MAPPED, 3, NULL, NULL);
    cr_expect(eq(u32, mt_acct_mremap_class(&m, addr_of(80), -1), MTF_CLASS_MAPPED));
    cr_expect(eq(u32, mt_acct_mremap_class(&m, addr_of(80), MTF_CLASS_HEAP), MTF_CLASS_HEAP),
              "an explicit class wins");
    mt_rangemap_fini(&m);
}

static uint64_t total(const struct mt_rangemap *m)
{
    return m->bytes[0] + m->bytes[1] + m->bytes[2];
}

/* Random sequences against the page model; the callback's pieces account for every byte that
 * left the map (total after = total before + added - taken). */
Test(rangemap, random_operations_match_a_page_model)
{
    struct mt_rangemap m;
    struct model md;
    memset(&md, 0, sizeof md);
    mt_rangemap_init(&m, grow_heap);
    unsigned seed = 12345;
    for (int step = 0; step < 20000; step++) {
        seed = seed * 1103515245u + 12345u;
        unsigned op = (seed >> 16) % 3, first = (seed >> 4) % NPAGES;
        seed = seed * 1103515245u + 12345u;
        unsigned n = 1 + (seed >> 16) % 12, first2 = (seed >> 3) % NPAGES;
        uint64_t len = (uint64_t)n * PAGE - (seed % 2 ? PAGE / 2 : 0); /* unrounded lengths */
        if (first + n > NPAGES) {
            n = NPAGES - first;
            len = (uint64_t)n * PAGE;
        }
        struct seen s = { 0 };
        uint64_t before = total(&m), added = 0;
        if (op == 0) {
            int cls = (int)(seed >> 8) % MTF_CLASS_COUNT;
            mt_acct_mmap(&m, addr_of(first), len, PAGE, (uint32_t)cls, (uint32_t)step, on_piece,
                         &s);
            model_put(&md, first, n, cls, (uint32_t)step);
            added = (uint64_t)n * PAGE;
        } else if (op == 1) {
            mt_acct_munmap(&m, addr_of(first), len, PAGE, on_piece, &s);
            for (unsigned p = first; p < first + n; p++)
                md.cls[p] = 0;
        } else {
            unsigned n2 = 1 + (seed >> 20) % 8;
            if (first2 + n2 > NPAGES)
                n2 = NPAGES - first2;
            int cls = md.cls[first] ? md.cls[first] - 1 : MTF_CLASS_EXTERNAL;
            uint32_t c = mt_acct_mremap_class(&m, addr_of(first), -1);
            cr_assert(eq(u32, c, (uint32_t)cls), "step %d: mremap class", step);
            mt_acct_mremap(&m, addr_of(first), len, addr_of(first2), (uint64_t)n2 * PAGE, 1, PAGE,
                           c, (uint32_t)step, on_piece, &s);
            for (unsigned p = first; p < first + n; p++)
                md.cls[p] = 0;
            model_put(&md, first2, n2, cls, (uint32_t)step);
            added = (uint64_t)n2 * PAGE;
        }
        cr_assert(eq(u64, total(&m), before + added - total_seen(&s)), "step %d: pieces", step);
        check_against(&m, &md);
    }
    mt_rangemap_fini(&m);
}

static int grow_calls;
static void *grow_fails_after_first(void *old, size_t old_bytes, size_t new_bytes)
{
    if (new_bytes != 0 && grow_calls++ > 0)
        return NULL;
    return grow_heap(old, old_bytes, new_bytes);
}

Test(rangemap, growth_failure_is_counted_not_hidden)
{
    struct mt_rangemap m;
    grow_calls = 0;
    mt_rangemap_init(&m, grow_fails_after_first);
    int rc = 0;
    for (unsigned i = 0; i < 200 && rc == 0; i++)
        rc = mt_acct_mmap(&m, addr_of(0) + 2 * i * PAGE, PAGE, PAGE, MTF_CLASS_EXTERNAL, i, NULL,
                          NULL);
    cr_expect(eq(int, rc, -1), "the 65th range cannot be stored");
    cr_expect(eq(u64, m.lost, 1));
    cr_expect(eq(u64, m.bytes[MTF_CLASS_EXTERNAL], m.n * PAGE), "counts match what is stored");
    mt_rangemap_fini(&m);
}
