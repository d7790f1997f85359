/* Page ranges with a memory class: the one implementation of trace-format.md §7.2 for mappings,
 * shared by the shim (live external/mapped counters, the external cap) and the report (replay),
 * so the two agree to the byte. A sorted array of disjoint [start, end) ranges, each with a class
 * (MTF_CLASS_*) and a tag the caller chooses (the report uses the stack id). No allocation of its
 * own: the array grows through the caller's function (the shim maps pages, the report reallocs).
 * Not thread-safe: the caller serialises (the shim holds a lock; mmap is a system call anyway).
 */
#ifndef MEMTRACE_COMMON_RANGEMAP_H
#define MEMTRACE_COMMON_RANGEMAP_H

#include <stddef.h>
#include <stdint.h>

#include "memtrace/format.h"

struct mt_range {
    uint64_t start, end; /* [start, end), page-aligned by the mt_acct_* functions */
    uint32_t cls;        /* MTF_CLASS_* */
    uint32_t tag;        /* caller's: the report keeps the stack id of the call that mapped it */
};

/* Grow the array from old_bytes to new_bytes, keeping its contents (old may be NULL). Returns the
 * new array or NULL; on NULL the old one stays valid. */
typedef void *(*mt_rangemap_grow_fn)(void *old, size_t old_bytes, size_t new_bytes);

/* Called for every piece a removal takes away (before the map changes no more than the piece). */
typedef void (*mt_range_fn)(void *ctx, const struct mt_range *piece);

struct mt_rangemap {
    struct mt_range *r;
    size_t n, cap;
    mt_rangemap_grow_fn grow;
    uint64_t bytes[MTF_CLASS_COUNT]; /* live bytes per class */
    uint64_t lost;                   /* adds that could not be recorded (growth failed) */
};

void mt_rangemap_init(struct mt_rangemap *m, mt_rangemap_grow_fn grow);

/* Release the array through grow(r, cap_bytes, 0); the map is empty afterwards. */
void mt_rangemap_fini(struct mt_rangemap *m);

/* Take [start, end) out of the map, splitting ranges it cuts; fn (may be NULL) sees each piece
 * taken, with that piece's own bounds. Parts of the span never added are ignored. */
void mt_rangemap_remove(struct mt_rangemap *m, uint64_t start, uint64_t end, mt_range_fn fn,
                        void *ctx);

/* Put [start, end) in with cls and tag, first removing whatever it covered (fn sees those pieces).
 * Returns 0, or -1 if the array could not grow (the span is then absent and m->lost counts it). */
int mt_rangemap_add(struct mt_rangemap *m, uint64_t start, uint64_t end, uint32_t cls, uint32_t tag,
                    mt_range_fn fn, void *ctx);

/* The range holding addr, or NULL. */
const struct mt_range *mt_rangemap_find(const struct mt_rangemap *m, uint64_t addr);

/* ---- the events of §7.2 (lengths are rounded up to whole pages; page is a power of two) ---- */

static inline uint64_t mt_page_round(uint64_t len, uint64_t page)
{
    uint64_t r = (len + page - 1) & ~(page - 1);
    return r < len ? ~(page - 1) : r; /* saturate instead of wrapping to 0 */
}

/* The class a successful mmap has without a rule: mapped if file-backed, else external. */
static inline uint32_t mt_mmap_default_class(uint64_t mmap_flags)
{
    return (mmap_flags & 0x20 /* MAP_ANONYMOUS */) ? MTF_CLASS_EXTERNAL : MTF_CLASS_MAPPED;
}

/* A successful mmap at addr of len bytes: replaces whatever the span held (MAP_FIXED). */
int mt_acct_mmap(struct mt_rangemap *m, uint64_t addr, uint64_t len, uint64_t page, uint32_t cls,
                 uint32_t tag, mt_range_fn fn, void *ctx);

/* A successful munmap: removes what it covers; pages never seen are ignored. */
void mt_acct_munmap(struct mt_rangemap *m, uint64_t addr, uint64_t len, uint64_t page,
                    mt_range_fn fn, void *ctx);

/* The class a successful mremap gives its new range: `explicit_cls` when a rule chose one
 * (>= 0), else the class of the old range's first page, else external. */
uint32_t mt_acct_mremap_class(const struct mt_rangemap *m, uint64_t old, int explicit_cls);

/* A successful mremap(old, old_len, new_len, flags) that returned `new`: removes the old range
 * (unless MREMAP_DONTUNMAP or old_len 0), then the new span, then adds the new span with `cls`
 * (from mt_acct_mremap_class, taken BEFORE this call) and `tag`. */
int mt_acct_mremap(struct mt_rangemap *m, uint64_t old, uint64_t old_len, uint64_t new_addr,
                   uint64_t new_len, uint64_t flags, uint64_t page, uint32_t cls, uint32_t tag,
                   mt_range_fn fn, void *ctx);

#endif
