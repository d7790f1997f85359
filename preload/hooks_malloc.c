/* The malloc family. Each hook: guard -> real -> record, with errno kept as the real call left
 * it. A call glibc forwards internally to another public function (reallocarray -> realloc) is
 * not forwarded here, so each program call is recorded exactly once (pitfalls.md §15). */
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hooks.h"
#include "memtrace/format.h"

/* Record an event in the normal (non-nested) state; restores errno and the guard. */
static inline void record(unsigned kind, unsigned flags, uint64_t ts, const uint64_t *f, int err)
{
    mt_guard_set(MT_IN_HOOK);
    mt_tbuf_event(kind, flags, ts, f);
    mt_guard_set(MT_IN_NONE);
    errno = err;
}

/* What the allocator handed out beyond the request (trace-format.md §7): heapUsed counts it. */
static inline uint64_t slack(const void *p, uint64_t size)
{
    if (p == NULL)
        return 0;
    uint64_t usable = mt_real.malloc_usable_size((void *)p);
    return usable > size ? usable - size : 0;
}

static void nested(unsigned kind, unsigned flags, const uint64_t *f, int err)
{
    mt_tbuf_nested(kind, flags, mt_clock_ns(), f);
    errno = err;
}

MT_EXPORT void *malloc(size_t size)
{
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return mt_boot_alloc(size, 16);
    if (MT_UNLIKELY(mt_guard_active())) {
        void *p = mt_real.malloc(size);
        if (mt_hook_nested_is_program(__builtin_return_address(0), 0)) {
            uint64_t f[3] = { (uintptr_t)p, size, slack(p, size) };
            nested(MTF_EV_MALLOC, p ? 0 : MTF_EVF_FAILED, f, errno);
        }
        return p;
    }
    mt_guard_set(MT_IN_REAL);
    void *p = mt_real.malloc(size);
    int err = errno;
    uint64_t f[3] = { (uintptr_t)p, size, slack(p, size) };
    record(MTF_EV_MALLOC, p ? 0 : MTF_EVF_FAILED, mt_clock_ns(), f, err);
    return p;
}

MT_EXPORT void free(void *ptr)
{
    if (MT_UNLIKELY(mt_boot_owns(ptr)))
        return; /* bootstrap blocks are never reused and were never recorded */
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return; /* nothing but the arena can have been handed out yet */
    uint64_t f[1] = { (uintptr_t)ptr };
    if (MT_UNLIKELY(mt_guard_active())) {
        if (mt_hook_nested_is_program(__builtin_return_address(0), 0))
            nested(MTF_EV_FREE, 0, f, errno);
        mt_real.free(ptr);
        return;
    }
    int err = errno;
    /* Record before calling the real free: once it returns, another thread can be handed the
     * same address, and its MALLOC must not sort ahead of this FREE (trace-format.md §10). */
    record(MTF_EV_FREE, 0, mt_clock_ns(), f, err);
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
    if (MT_UNLIKELY(mt_guard_active())) {
        void *p = mt_real.calloc(nmemb, size);
        if (mt_hook_nested_is_program(__builtin_return_address(0), 0)) {
            uint64_t f[4] = { (uintptr_t)p, nmemb, size, slack(p, (uint64_t)nmemb * size) };
            nested(MTF_EV_CALLOC, p ? 0 : MTF_EVF_FAILED, f, errno);
        }
        return p;
    }
    mt_guard_set(MT_IN_REAL);
    void *p = mt_real.calloc(nmemb, size);
    int err = errno;
    uint64_t f[4] = { (uintptr_t)p, nmemb, size, slack(p, (uint64_t)nmemb * size) };
    record(MTF_EV_CALLOC, p ? 0 : MTF_EVF_FAILED, mt_clock_ns(), f, err);
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

/* realloc and reallocarray share this: `kind` says which one the program called. */
static void *do_realloc(unsigned kind, void *ptr, size_t size, uint64_t nmemb, uint64_t elsize,
                        const void *caller)
{
    if (MT_UNLIKELY(mt_guard_active())) {
        void *p = mt_real.realloc(ptr, size);
        if (mt_hook_nested_is_program(caller, 0)) {
            unsigned fl = (p == NULL && size != 0) ? MTF_EVF_FAILED : 0;
            uint64_t f[6] = { (uintptr_t)ptr, (uintptr_t)p, nmemb, elsize, slack(p, size), 0 };
            uint64_t g[5] = { (uintptr_t)ptr, (uintptr_t)p, size, slack(p, size), 0 };
            nested(kind, fl, kind == MTF_EV_REALLOC ? g : f, errno);
        }
        return p;
    }
    uint64_t t0 = mt_clock_ns();
    mt_guard_set(MT_IN_REAL);
    void *p = mt_real.realloc(ptr, size);
    int err = errno;
    uint64_t t1 = mt_clock_ns();
    /* glibc: realloc(p, 0) frees p and returns NULL: that is not a failure */
    unsigned fl = (p == NULL && (size != 0 || ptr == NULL)) ? MTF_EVF_FAILED : 0;
    if (kind == MTF_EV_REALLOC) {
        uint64_t f[5] = { (uintptr_t)ptr, (uintptr_t)p, size, slack(p, size), t1 - t0 };
        record(kind, fl, t1, f, err);
    } else {
        uint64_t f[6] = { (uintptr_t)ptr, (uintptr_t)p, nmemb, elsize, slack(p, size), t1 - t0 };
        record(kind, fl, t1, f, err);
    }
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
            record(MTF_EV_REALLOCARRAY, MTF_EVF_FAILED, mt_clock_ns(), f, ENOMEM);
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
static void *aligned(unsigned kind, void *(*real)(size_t, size_t), size_t align, size_t size,
                     const void *caller)
{
    if (MT_UNLIKELY(mt_guard_active())) {
        void *p = real(align, size);
        if (mt_hook_nested_is_program(caller, 0)) {
            uint64_t f[4] = { (uintptr_t)p, align, size, slack(p, size) };
            nested(kind, p ? 0 : MTF_EVF_FAILED, f, errno);
        }
        return p;
    }
    mt_guard_set(MT_IN_REAL);
    void *p = real(align, size);
    int err = errno;
    uint64_t f[4] = { (uintptr_t)p, align, size, slack(p, size) };
    record(kind, p ? 0 : MTF_EVF_FAILED, mt_clock_ns(), f, err);
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
            uint64_t f[4] = { (uintptr_t)q, align, size, slack(q, size) };
            nested(MTF_EV_POSIX_MEMALIGN, rc == 0 ? 0 : MTF_EVF_FAILED, f, errno);
        }
        return rc;
    }
    mt_guard_set(MT_IN_REAL);
    int rc = mt_real.posix_memalign(memptr, align, size); /* leaves *memptr alone on failure */
    int err = errno;
    void *q = rc == 0 ? *memptr : NULL;
    uint64_t f[4] = { (uintptr_t)q, align, size, slack(q, size) };
    record(MTF_EV_POSIX_MEMALIGN, rc == 0 ? 0 : MTF_EVF_FAILED, mt_clock_ns(), f, err);
    return rc;
}

/* valloc, pvalloc: size -> pointer. glibc does not route them through the public memalign, so
 * they are hooked on their own (pitfalls.md §15). */
static void *paged(unsigned kind, void *(*real)(size_t), size_t size, const void *caller)
{
    if (MT_UNLIKELY(mt_guard_active())) {
        void *p = real(size);
        if (mt_hook_nested_is_program(caller, 0)) {
            uint64_t f[3] = { (uintptr_t)p, size, slack(p, size) };
            nested(kind, p ? 0 : MTF_EVF_FAILED, f, errno);
        }
        return p;
    }
    mt_guard_set(MT_IN_REAL);
    void *p = real(size);
    int err = errno;
    uint64_t f[3] = { (uintptr_t)p, size, slack(p, size) };
    record(kind, p ? 0 : MTF_EVF_FAILED, mt_clock_ns(), f, err);
    return p;
}

MT_EXPORT void *valloc(size_t size)
{
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return mt_boot_alloc(size, 4096);
    return paged(MTF_EV_VALLOC, mt_real.valloc, size, __builtin_return_address(0));
}

MT_EXPORT void *pvalloc(size_t size)
{
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return mt_boot_alloc((size + 4095) & ~(size_t)4095, 4096);
    return paged(MTF_EV_PVALLOC, mt_real.pvalloc, size, __builtin_return_address(0));
}

MT_EXPORT size_t malloc_usable_size(void *ptr)
{
    if (MT_UNLIKELY(mt_boot_owns(ptr)))
        return mt_boot_size(ptr);
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return 0;
    return mt_real.malloc_usable_size(ptr);
}
