/* The malloc family. Each hook: guard -> classify and check the cap -> real -> count -> record,
 * with errno kept as the real call left it. A call glibc forwards internally to another public
 * function (reallocarray -> realloc) is not forwarded here, so each program call is recorded
 * exactly once (pitfalls.md §15). Live bytes are usable sizes (malloc_usable_size), added after a
 * successful allocation and taken away before the real free (trace-format.md §7.2).
 * With MEMTRACE_SAMPLE (sample.h) every call is still admitted, counted and accounted exactly;
 * only the event is left out unless the call is sampled, failed, or frees a sampled block. */
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "classify.h"
#include "config.h"
#include "encode.h"
#include "hooks.h"
#include "livetab.h"
#include "memtrace/format.h"
#include "sample.h"
#include "unwind.h"

/* The leak scan's live table is on exactly when MEMTRACE_LEAK_SCAN=1 (init.c enables it after
 * reading the configuration): without it, one load instead of a call per malloc and free. */
static inline int live_on(void)
{
    return mt_config.leak_scan != 0;
}

/* What the allocator handed out beyond the request (trace-format.md §7): heapUsed counts it. */
static inline uint64_t slack_of(uint64_t usable_bytes, uint64_t size)
{
    return usable_bytes > size ? usable_bytes - size : 0;
}

/* A call on its way: its class and what the cap reserved for it. */
struct call {
    unsigned kind;
    uint32_t cls;
    int64_t reserved;
    uint64_t size;                  /* requested bytes (the leak scan's live table keeps them) */
    struct mt_stack_node *node;     /* captured before the call, or MT_TBUF_CAPTURE */
    struct mt_unwind_origin origin; /* the program's frame that called the hook */
    int rec;                        /* sampling: -1 decide as an allocation, 0 skip, 1 record */
};

/* A call that is not recorded still reaches the periodic snapshot, but reads the clock only
 * when MEMTRACE_INTERVAL is set. */
static inline void tick_unrecorded(void)
{
    if (MT_UNLIKELY(atomic_load_explicit(&mt_acct_deadline, memory_order_relaxed) != UINT64_MAX))
        mt_acct_tick(mt_clock_ns());
}

/* Sampling mode: count the call, and say whether it is recorded. A failed call always is (it
 * changes nothing and is rare); a successful allocation when the countdown crossed zero and its
 * block could enter the set (so that its free is recorded too). */
static inline int sample_records(const struct call *c, int failed, void *p, uint64_t u)
{
    if (c->rec >= 0)
        return c->rec;
    int ok = !failed && p != NULL;
    mt_sample_count(c->kind, ok, ok ? (int64_t)u : 0, ok ? c->size : 0);
    if (!ok)
        return 1;
    return mt_sample_take(c->size) && mt_sample_set_put((uintptr_t)p) == 0;
}

/* The cap's half of before(), out of line: 0 when admitted, -1 when refused (recorded). */
static MT_NOINLINE int admit(struct call *c, uint64_t request)
{
    uint64_t live = 0;
    if (MT_LIKELY(mt_acct_heap_admit(c->cls, request, &c->reserved, &live) == 0))
        return 0;
    if (c->node == MT_TBUF_CAPTURE)
        c->node = mt_tbuf_capture_from(&c->origin);
    mt_acct_refuse(c->kind, c->cls, request, live, c->node);
    return -1;
}

/* Before the real call (guard in MT_IN_HOOK state): classify and pass the cap with `request`
 * bytes. 0 to go on; -1 when refused (recorded; in abort mode this does not return). */
static inline __attribute__((always_inline)) int before(struct call *c, unsigned kind,
                                                        uint64_t size, uint64_t request)
{
    c->kind = kind;
    c->size = size;
    c->rec = -1;
    c->node = MT_TBUF_CAPTURE;
    c->cls = mt_classify(kind, size, MTF_CLASS_HEAP, &c->node);
    if (MT_LIKELY(c->cls == MTF_CLASS_HEAP && mt_config.heap_limit == 0)) {
        c->reserved = 0; /* no heap cap: nothing to admit (account.c would say the same) */
        return 0;
    }
    return admit(c, request);
}

/* The recording half of after(), out of line: the unsampled path never reaches it. */
static MT_NOINLINE void record(struct call *c, unsigned flags, uint64_t ts, const uint64_t *f)
{
    if (ts == 0)
        ts = mt_tbuf_stamp(0);
    if (c->node == MT_TBUF_CAPTURE)
        c->node = mt_tbuf_capture_from(&c->origin); /* the shim's own frames are not walked */
    mt_tbuf_event_at(c->kind, flags, ts, f, c->node);
    mt_acct_tick(ts);
}

/* After the real call returned `p` (failed or not) with `u` new usable bytes to count: count
 * them, record the call (unless sampling leaves it out), restore errno and the guard. `ts`: the
 * event's time, or 0 to read the clock here (only when the call is recorded). */
static inline __attribute__((always_inline)) void
after(struct call *c, int failed, void *p, uint64_t u, uint64_t ts, const uint64_t *f, int err)
{
    mt_guard_set(MT_IN_HOOK);
    mt_acct_heap_done(c->cls, (int64_t)u, c->reserved, 0);
    if (!failed && p != NULL && live_on())
        mt_live_add((uintptr_t)p, c->size);
    unsigned flags = failed ? MTF_EVF_FAILED : 0;
    if (c->cls != MTF_CLASS_HEAP) {
        flags |= MT_EV_CLASS(c->cls);
        if (p != NULL && !failed)
            mt_acct_block_put((uintptr_t)p, c->cls);
    }
    if (MT_UNLIKELY(mt_sample_rate != 0) && !sample_records(c, failed, p, u))
        tick_unrecorded();
    else
        record(c, flags, ts, f);
    mt_guard_set(MT_IN_NONE);
    errno = err;
}

/* The call was refused in enomem mode: it fails as the allocator would, recorded FAILED. */
static void refused(struct call *c, const uint64_t *f)
{
    if (mt_sample_rate != 0)
        mt_sample_count(c->kind, 0, 0, 0);
    mt_tbuf_event_at(c->kind, MTF_EVF_FAILED, mt_clock_ns(), f, c->node);
    mt_guard_set(MT_IN_NONE);
    errno = ENOMEM;
}

/* A nested call by the program (signal handler) allocated u bytes: counted, recorded without a
 * stack. */
static void nested(unsigned kind, unsigned flags, const uint64_t *f, int64_t delta, int err)
{
    if (delta != 0)
        mt_acct_heap_done(MTF_CLASS_HEAP, delta, 0, 1);
    if (mt_sample_rate != 0) {
        /* counted through atomics (the interrupted hook may be mid-update of the thread's
         * cell); the block enters the set, as the event is recorded */
        int made = !(flags & MTF_EVF_FAILED) && kind != MTF_EV_REALLOC &&
                   kind != MTF_EV_REALLOCARRAY && f[0] != 0;
        mt_sample_count_shared(kind, made, delta, made ? f[1] : 0);
        if (made)
            (void)mt_sample_set_put(f[0]);
    }
    mt_tbuf_nested(kind, flags, mt_clock_ns(), f);
    errno = err;
}

/* malloc, valloc, pvalloc: size -> pointer (glibc does not route valloc and pvalloc through the
 * public memalign, so they are hooked on their own: pitfalls.md §15). `request` is what the cap
 * admits; `caller` the exported hook's return address. */
static MT_ALWAYS_INLINE void *sized(unsigned kind, void *(*real)(size_t), size_t size,
                                    uint64_t request, const void *caller)
{
    if (MT_UNLIKELY(mt_guard_active())) {
        void *p = real(size);
        if (mt_hook_nested_is_program(caller, 0)) {
            uint64_t u = mt_usable_size(p);
            uint64_t f[3] = { (uintptr_t)p, size, slack_of(u, size) };
            nested(kind, p ? 0 : MTF_EVF_FAILED, f, (int64_t)u, errno);
        }
        return p;
    }
    mt_guard_set(MT_IN_HOOK);
    struct call c;
    MT_UNWIND_ORIGIN(&c.origin); /* in the exported hook's frame (always inlined here) */
    if (MT_UNLIKELY(before(&c, kind, size, request) != 0)) {
        uint64_t f[3] = { 0, size, 0 };
        refused(&c, f);
        return NULL;
    }
    mt_guard_set(MT_IN_REAL);
    void *p = real(size);
    int err = errno;
    uint64_t u = mt_usable_size(p);
    uint64_t f[3] = { (uintptr_t)p, size, slack_of(u, size) };
    after(&c, p == NULL, p, u, 0, f, err);
    return p;
}

MT_EXPORT void *malloc(size_t size)
{
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return mt_boot_alloc(size, 16);
    return sized(MTF_EV_MALLOC, mt_real.malloc, size, size, __builtin_return_address(0));
}

MT_EXPORT void free(void *ptr)
{
    if (MT_UNLIKELY(mt_boot_owns(ptr)))
        return; /* bootstrap blocks are never reused and were never recorded */
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return; /* nothing but the arena can have been handed out yet */
    uint64_t f[1] = { (uintptr_t)ptr };
    if (MT_UNLIKELY(mt_guard_active())) {
        if (mt_hook_nested_is_program(__builtin_return_address(0), 0)) {
            int err = errno;
            if (ptr != NULL)
                mt_acct_heap_done(mt_acct_block_class(ptr), -(int64_t)mt_usable_size(ptr), 0, 1);
            if (mt_sample_rate != 0) {
                mt_sample_count_shared(MTF_EV_FREE, ptr != NULL ? -1 : 0,
                                       ptr != NULL ? -(int64_t)mt_usable_size(ptr) : 0, 0);
                (void)mt_sample_set_take((uintptr_t)ptr);
            }
            mt_tbuf_nested(MTF_EV_FREE, 0, mt_clock_ns(), f);
            errno = err;
        }
        mt_real.free(ptr);
        return;
    }
    int err = errno;
    mt_guard_set(MT_IN_HOOK);
    /* Recorded and uncounted before calling the real free: once it returns, another thread can
     * be handed the same address, and its MALLOC must not sort ahead of this FREE
     * (trace-format.md §10). */
    int64_t u = 0;
    if (ptr != NULL) {
        u = (int64_t)mt_usable_size(ptr);
        mt_acct_heap_done(mt_acct_block_class(ptr), -u, 0, 0);
        if (live_on())
            mt_live_take((uintptr_t)ptr, NULL);
    }
    /* sampling: only a sampled block's free is recorded; any other costs the set lookup */
    int rec = 1;
    if (MT_UNLIKELY(mt_sample_rate != 0)) {
        mt_sample_count(MTF_EV_FREE, ptr != NULL ? -1 : 0, -u, 0);
        rec = mt_sample_set_take((uintptr_t)ptr);
    }
    if (MT_LIKELY(rec)) {
        uint64_t ts = mt_tbuf_stamp(1);
        mt_tbuf_event(MTF_EV_FREE, 0, ts, f);
        mt_acct_tick(ts);
    } else {
        tick_unrecorded();
    }
    mt_guard_set(MT_IN_REAL);
    mt_real.free(ptr);
    mt_guard_set(MT_IN_NONE);
    errno = err; /* free must not change errno, whatever recording did */
}

MT_EXPORT void *calloc(size_t nmemb, size_t size)
{
    if (MT_UNLIKELY(mt_hook_ready() != 0)) {
        size_t n;
        if (__builtin_mul_overflow(nmemb, size, &n))
            return NULL;
        return mt_boot_alloc(n, 16); /* static storage: already zero */
    }
    uint64_t total = (uint64_t)nmemb * size;
    if (MT_UNLIKELY(mt_guard_active())) {
        void *p = mt_real.calloc(nmemb, size);
        if (mt_hook_nested_is_program(__builtin_return_address(0), 0)) {
            uint64_t u = mt_usable_size(p);
            uint64_t f[4] = { (uintptr_t)p, nmemb, size, slack_of(u, total) };
            nested(MTF_EV_CALLOC, p ? 0 : MTF_EVF_FAILED, f, (int64_t)u, errno);
        }
        return p;
    }
    mt_guard_set(MT_IN_HOOK);
    size_t n;
    /* an overflowing product fails in the real calloc: no cap to check */
    uint64_t request = __builtin_mul_overflow(nmemb, size, &n) ? 0 : n;
    struct call c;
    MT_UNWIND_ORIGIN(&c.origin); /* in the exported hook's frame (always inlined here) */
    if (MT_UNLIKELY(before(&c, MTF_EV_CALLOC, total, request) != 0)) {
        uint64_t f[4] = { 0, nmemb, size, 0 };
        refused(&c, f);
        return NULL;
    }
    mt_guard_set(MT_IN_REAL);
    void *p = mt_real.calloc(nmemb, size);
    int err = errno;
    uint64_t u = mt_usable_size(p);
    uint64_t f[4] = { (uintptr_t)p, nmemb, size, slack_of(u, total) };
    after(&c, p == NULL, p, u, 0, f, err);
    return p;
}

/* realloc of a bootstrap block: copy into a real block (the arena block is simply abandoned). */
static void *boot_realloc(void *ptr, size_t size)
{
    void *p = mt_real.ready ? mt_real.malloc(size) : mt_boot_alloc(size, 16);
    if (p != NULL) {
        size_t old = mt_boot_size(ptr);
        memcpy(p, ptr, old < size ? old : size);
    }
    return p;
}

/* The fields of a REALLOC or REALLOCARRAY event. */
static void realloc_fields(uint64_t *f, unsigned kind, void *ptr, void *p, uint64_t size,
                           uint64_t nmemb, uint64_t elsize, uint64_t slack, uint64_t pre)
{
    f[0] = (uintptr_t)ptr;
    f[1] = (uintptr_t)p;
    if (kind == MTF_EV_REALLOC) {
        f[2] = size;
        f[3] = slack;
        f[4] = pre;
    } else {
        f[2] = nmemb;
        f[3] = elsize;
        f[4] = slack;
        f[5] = pre;
    }
}

static void *nested_realloc(unsigned kind, void *ptr, size_t size, uint64_t nmemb, uint64_t elsize,
                            const void *caller)
{
    if (!mt_hook_nested_is_program(caller, 0))
        return mt_real.realloc(ptr, size);
    uint64_t old_u = mt_usable_size(ptr);
    void *p = mt_real.realloc(ptr, size);
    int err = errno;
    uint64_t u = mt_usable_size(p);
    int failed = p == NULL && size != 0;
    uint64_t f[6];
    realloc_fields(f, kind, ptr, p, size, nmemb, elsize, slack_of(u, size), 0);
    nested(kind, failed ? MTF_EVF_FAILED : 0, f, failed ? 0 : (int64_t)u - (int64_t)old_u, err);
    return p;
}

/* Sampling mode: count a realloc and say whether it is recorded: when its old block was sampled
 * (so the trace sees that block go) or its growth is sampled; a recorded realloc's new block
 * enters the set. The countdown runs on the growth of the usable size only: the growths of a
 * chain add up to its usable size, so a block grown step by step from nothing is followed with
 * the chance 1 - exp(-usable / rate), the weight the report gives it (estimate.h).
 * old_in: the old block was taken out of the set before the call (put back if it failed). */
static int realloc_records(unsigned kind, void *ptr, void *p, int failed, int old_in, uint64_t u,
                           uint64_t old_u, uint64_t size)
{
    if (failed) {
        mt_sample_count(kind, 0, 0, 0);
        if (old_in)
            (void)mt_sample_set_put((uintptr_t)ptr);
        return 1;
    }
    int64_t blocks = (ptr == NULL) - (p == NULL && ptr != NULL); /* malloc-like, free-like */
    mt_sample_count(kind, blocks, (int64_t)u - (int64_t)old_u, p != NULL ? size : 0);
    if (p == NULL)
        return old_in;
    int sampled = u > old_u && mt_sample_take(u - old_u);
    if (!old_in && !sampled)
        return 0;
    if (mt_sample_set_put((uintptr_t)p) != 0 && !old_in)
        return 0; /* no room to follow it: counted as unsampleable, left out */
    return 1;
}

/* realloc and reallocarray share this: `kind` says which one the program called. The old
 * block's class and usable size are read before the call; the cap sees only the growth. */
static MT_ALWAYS_INLINE void *do_realloc(unsigned kind, void *ptr, size_t size, uint64_t nmemb,
                                         uint64_t elsize, const void *caller)
{
    if (MT_UNLIKELY(mt_guard_active()))
        return nested_realloc(kind, ptr, size, nmemb, elsize, caller);
    uint64_t t0 = mt_tbuf_stamp(1);
    mt_guard_set(MT_IN_HOOK);
    uint32_t old_cls = ptr != NULL ? mt_acct_block_class(ptr) : MTF_CLASS_HEAP;
    uint64_t old_u = mt_usable_size(ptr);
    struct call c;
    MT_UNWIND_ORIGIN(&c.origin); /* in the exported hook's frame (always inlined here) */
    c.cls = MTF_CLASS_HEAP;
    uint64_t request = size;
    int go = 1;
    if (size != 0 || ptr == NULL) {
        c.node = MT_TBUF_CAPTURE;
        uint32_t cls = mt_classify(kind, size, old_cls, &c.node);
        request = cls == old_cls ? (size > old_u ? size - old_u : 0) : size;
        go = before(&c, kind, size, request) == 0;
    } else {
        c.kind = kind; /* realloc(p, 0) frees: nothing to admit */
        c.cls = old_cls;
        c.reserved = 0;
        c.size = 0;
        c.rec = -1;
        c.node = MT_TBUF_CAPTURE;
    }
    if (MT_UNLIKELY(!go)) {
        if (old_cls != MTF_CLASS_HEAP)
            mt_acct_block_put((uintptr_t)ptr, old_cls); /* the old block stays what it was */
        uint64_t f[6];
        realloc_fields(f, kind, ptr, NULL, size, nmemb, elsize, 0, 0);
        refused(&c, f);
        return NULL;
    }
    /* Out of the live table before the call, as free does: once it returns, another thread may
     * be given the old address. Put back if the call fails. */
    uint64_t old_size = 0;
    int old_live = ptr != NULL && mt_live_take((uintptr_t)ptr, &old_size);
    int old_in = mt_sample_rate != 0 && ptr != NULL && mt_sample_set_take((uintptr_t)ptr);
    mt_guard_set(MT_IN_REAL);
    void *p = mt_real.realloc(ptr, size);
    int err = errno;
    uint64_t t1 = mt_tbuf_stamp(0);
    if (MT_UNLIKELY(p == NULL && size != 0 && old_live))
        mt_live_add((uintptr_t)ptr, old_size);
    /* glibc: realloc(p, 0) frees p and returns NULL: that is not a failure */
    int failed = p == NULL && (size != 0 || ptr == NULL);
    uint64_t u = mt_usable_size(p);
    mt_guard_set(MT_IN_HOOK);
    if (failed) {
        if (old_cls != MTF_CLASS_HEAP)
            mt_acct_block_put((uintptr_t)ptr, old_cls);
    } else if (old_cls == c.cls) {
        mt_acct_heap_done(c.cls, (int64_t)u - (int64_t)old_u, c.reserved, 0);
        c.reserved = 0;
    } else {
        mt_acct_heap_done(old_cls, -(int64_t)old_u, 0, 0);
    }
    if (MT_UNLIKELY(mt_sample_rate != 0))
        c.rec = realloc_records(kind, ptr, p, failed, old_in, u, old_u, size);
    uint64_t f[6];
    realloc_fields(f, kind, ptr, p, size, nmemb, elsize, slack_of(u, size), t1 - t0);
    after(&c, failed, p, failed || old_cls == c.cls ? 0 : u, t1, f, err);
    return p;
}

MT_EXPORT void *realloc(void *ptr, size_t size)
{
    if (MT_UNLIKELY(mt_boot_owns(ptr)))
        return boot_realloc(ptr, size);
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return mt_boot_alloc(size, 16);
    return do_realloc(MTF_EV_REALLOC, ptr, size, 0, 0, __builtin_return_address(0));
}

MT_EXPORT void *reallocarray(void *ptr, size_t nmemb, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(nmemb, size, &total)) {
        if (mt_hook_ready() == 0 && !mt_guard_active()) {
            uint64_t f[6] = { (uintptr_t)ptr, 0, nmemb, size, 0, 0 };
            mt_guard_set(MT_IN_HOOK);
            if (mt_sample_rate != 0)
                mt_sample_count(MTF_EV_REALLOCARRAY, 0, 0, 0);
            mt_tbuf_event(MTF_EV_REALLOCARRAY, MTF_EVF_FAILED, mt_clock_ns(), f);
            mt_guard_set(MT_IN_NONE);
        }
        errno = ENOMEM;
        return NULL;
    }
    if (MT_UNLIKELY(mt_boot_owns(ptr)))
        return boot_realloc(ptr, total);
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return mt_boot_alloc(total, 16);
    return do_realloc(MTF_EV_REALLOCARRAY, ptr, total, nmemb, size, __builtin_return_address(0));
}

/* memalign, aligned_alloc: (alignment, size) -> pointer */
static MT_ALWAYS_INLINE void *aligned(unsigned kind, void *(*real)(size_t, size_t), size_t align,
                                      size_t size, const void *caller)
{
    if (MT_UNLIKELY(mt_guard_active())) {
        void *p = real(align, size);
        if (mt_hook_nested_is_program(caller, 0)) {
            uint64_t u = mt_usable_size(p);
            uint64_t f[4] = { (uintptr_t)p, align, size, slack_of(u, size) };
            nested(kind, p ? 0 : MTF_EVF_FAILED, f, (int64_t)u, errno);
        }
        return p;
    }
    mt_guard_set(MT_IN_HOOK);
    struct call c;
    MT_UNWIND_ORIGIN(&c.origin); /* in the exported hook's frame (always inlined here) */
    if (MT_UNLIKELY(before(&c, kind, size, size) != 0)) {
        uint64_t f[4] = { 0, align, size, 0 };
        refused(&c, f);
        return NULL;
    }
    mt_guard_set(MT_IN_REAL);
    void *p = real(align, size);
    int err = errno;
    uint64_t u = mt_usable_size(p);
    uint64_t f[4] = { (uintptr_t)p, align, size, slack_of(u, size) };
    after(&c, p == NULL, p, u, 0, f, err);
    return p;
}

MT_EXPORT void *memalign(size_t align, size_t size)
{
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return mt_boot_alloc(size, align);
    return aligned(MTF_EV_MEMALIGN, mt_real.memalign, align, size, __builtin_return_address(0));
}

MT_EXPORT void *aligned_alloc(size_t align, size_t size)
{
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return mt_boot_alloc(size, align);
    return aligned(MTF_EV_ALIGNED_ALLOC, mt_real.aligned_alloc, align, size,
                   __builtin_return_address(0));
}

MT_EXPORT int posix_memalign(void **memptr, size_t align, size_t size)
{
    if (MT_UNLIKELY(mt_hook_ready() != 0)) {
        *memptr = mt_boot_alloc(size, align);
        return 0;
    }
    if (MT_UNLIKELY(mt_guard_active())) {
        int rc = mt_real.posix_memalign(memptr, align, size);
        if (mt_hook_nested_is_program(__builtin_return_address(0), 0)) {
            void *q = rc == 0 ? *memptr : NULL;
            uint64_t u = mt_usable_size(q);
            uint64_t f[4] = { (uintptr_t)q, align, size, slack_of(u, size) };
            nested(MTF_EV_POSIX_MEMALIGN, rc == 0 ? 0 : MTF_EVF_FAILED, f, (int64_t)u, errno);
        }
        return rc;
    }
    int err0 = errno;
    mt_guard_set(MT_IN_HOOK);
    struct call c;
    MT_UNWIND_ORIGIN(&c.origin); /* in the exported hook's frame (always inlined here) */
    if (MT_UNLIKELY(before(&c, MTF_EV_POSIX_MEMALIGN, size, size) != 0)) {
        uint64_t f[4] = { 0, align, size, 0 };
        refused(&c, f);
        errno = err0; /* posix_memalign reports through its result, not errno */
        return ENOMEM;
    }
    mt_guard_set(MT_IN_REAL);
    int rc = mt_real.posix_memalign(memptr, align, size); /* leaves *memptr alone on failure */
    int err = errno;
    void *q = rc == 0 ? *memptr : NULL;
    uint64_t u = mt_usable_size(q);
    uint64_t f[4] = { (uintptr_t)q, align, size, slack_of(u, size) };
    after(&c, rc != 0, q, u, 0, f, err);
    return rc;
}

MT_EXPORT void *valloc(size_t size)
{
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return mt_boot_alloc(size, 4096);
    return sized(MTF_EV_VALLOC, mt_real.valloc, size, size, __builtin_return_address(0));
}

MT_EXPORT void *pvalloc(size_t size)
{
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return mt_boot_alloc((size + 4095) & ~(size_t)4095, 4096);
    uint64_t page = mt_acct_page(); /* pvalloc rounds the request up to whole pages */
    uint64_t request = size > UINT64_MAX - page ? size : (size + page - 1) & ~(page - 1);
    return sized(MTF_EV_PVALLOC, mt_real.pvalloc, size, request, __builtin_return_address(0));
}

MT_EXPORT size_t malloc_usable_size(void *ptr)
{
    if (MT_UNLIKELY(mt_boot_owns(ptr)))
        return mt_boot_size(ptr);
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return 0;
    return mt_real.malloc_usable_size(ptr);
}
