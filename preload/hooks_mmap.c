/* mmap, mmap64, munmap, mremap. glibc's allocator and pthread stacks use internal entry points,
 * so what arrives here is the program's own mapping (or a foreign allocator's, recognised as
 * nested inside the real allocator call and left out). Releases are timed before the real call,
 * so a range reused by another thread orders after its release (trace-format.md §10).
 * The external and mapped counters change under the maps lock, held across the real call: the
 * kernel can hand a range one thread just unmapped to another at once, and the two updates
 * must apply in the kernel's order. The external cap is checked under the same lock. */
#include <stdarg.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "account.h"
#include "classify.h"
#include "encode.h"
#include "hooks.h"
#include "memtrace/format.h"
#include "rangemap.h"

static void emit(unsigned kind, unsigned flags, uint64_t ts, const uint64_t *f, int nested_call,
                 struct mt_stack_node *node, int err)
{
    if (nested_call) {
        mt_tbuf_nested(kind, flags, ts, f);
    } else {
        mt_guard_set(MT_IN_HOOK);
        mt_tbuf_event_at(kind, flags, ts, f, node);
        mt_acct_tick(ts);
        mt_guard_set(MT_IN_NONE);
    }
    errno = err;
}

/* Whether this mapping call is the shim's or a foreign allocator's own: passed straight on. */
static int not_the_programs(int nested_call, const void *caller)
{
    return (nested_call && !mt_hook_nested_is_program(caller, 1)) ||
           mt_unwind_is_tracer_pc((uintptr_t)caller);
}

/* The class flag of an event whose class a rule chose against the kind's default. */
static unsigned class_flag(uint32_t cls, uint32_t default_cls)
{
    return cls != default_cls ? MT_EV_CLASS(cls) : 0;
}

/* A mapping call refused by the external cap: recorded (abort mode ends here), then failed. */
static void *refuse_map(unsigned kind, uint32_t cls, uint64_t request, uint64_t live,
                        struct mt_stack_node **node)
{
    mt_guard_set(MT_IN_HOOK);
    if (*node == MT_TBUF_CAPTURE)
        *node = mt_tbuf_capture();
    mt_acct_refuse(kind, cls, request, live, *node);
    mt_guard_set(MT_IN_NONE);
    return MAP_FAILED;
}

static void *do_mmap(unsigned kind, void *(*real)(void *, size_t, int, int, int, off_t), void *addr,
                     size_t len, int prot, int flags, int fd, off_t off, const void *caller)
{
    int nested_call = mt_guard_active();
    if (not_the_programs(nested_call, caller))
        return real(addr, len, prot, flags, fd, off);
    uint32_t saved = mt_tls.in;
    uint32_t def = mt_mmap_default_class((uint64_t)(unsigned)flags);
    uint32_t cls = def;
    struct mt_stack_node *node = nested_call ? NULL : MT_TBUF_CAPTURE;
    if (!nested_call) {
        mt_guard_set(MT_IN_HOOK);
        cls = mt_classify(kind, len, def, &node);
        mt_guard_set(MT_IN_REAL);
    }
    struct mt_acct_lock lk;
    mt_acct_maps_lock(&lk);
    uint64_t live = 0, request = mt_page_round(len, mt_acct_page());
    if (flags & MAP_FIXED) /* what the range already holds of this class is replaced, not added */
        request -= mt_acct_maps_overlap(cls, (uintptr_t)addr, len);
    void *p = MAP_FAILED;
    int refused = !nested_call && mt_acct_maps_admit(cls, request, &live) != 0;
    if (!refused) {
        p = real(addr, len, prot, flags, fd, off);
        if (p != MAP_FAILED)
            mt_acct_map_add((uintptr_t)p, len, cls);
    }
    int err = errno;
    mt_acct_maps_unlock(&lk);
    if (refused) {
        refuse_map(kind, cls, request, live, &node);
        err = ENOMEM;
    }
    if (!nested_call)
        mt_guard_set(saved);
    int failed = p == MAP_FAILED;
    uint64_t f[6] = { failed ? (uintptr_t)addr : (uintptr_t)p,
                      len,
                      (uint64_t)prot,
                      (uint64_t)(unsigned)flags,
                      mt_zigzag((uint64_t)(int64_t)fd),
                      (uint64_t)off };
    emit(kind, (failed ? MTF_EVF_FAILED : 0) | class_flag(cls, def), mt_clock_ns(), f, nested_call,
         node, err);
    return p;
}

MT_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (MT_UNLIKELY(mt_hook_ready() != 0)) {
        long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);
        if (r < 0 && r > -4096) {
            errno = (int)-r;
            return MAP_FAILED;
        }
        return (void *)r;
    }
    return do_mmap(MTF_EV_MMAP, mt_real.mmap, addr, len, prot, flags, fd, off,
                   __builtin_return_address(0));
}

MT_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (MT_UNLIKELY(mt_hook_ready() != 0))
        return mmap(addr, len, prot, flags, fd, off);
    return do_mmap(MTF_EV_MMAP64, mt_real.mmap64, addr, len, prot, flags, fd, off,
                   __builtin_return_address(0));
}

MT_EXPORT int munmap(void *addr, size_t len)
{
    if (MT_UNLIKELY(mt_hook_ready() != 0)) {
        long r = syscall(SYS_munmap, addr, len);
        if (r < 0) {
            errno = (int)-r;
            return -1;
        }
        return 0;
    }
    int nested_call = mt_guard_active();
    const void *caller = __builtin_return_address(0);
    if (not_the_programs(nested_call, caller))
        return mt_real.munmap(addr, len);
    uint64_t ts = mt_clock_ns_early();
    uint32_t saved = mt_tls.in;
    if (!nested_call)
        mt_guard_set(MT_IN_REAL);
    struct mt_acct_lock lk;
    mt_acct_maps_lock(&lk);
    int rc = mt_real.munmap(addr, len);
    int err = errno;
    if (rc == 0)
        mt_acct_map_remove((uintptr_t)addr, len);
    mt_acct_maps_unlock(&lk);
    if (!nested_call)
        mt_guard_set(saved);
    uint64_t f[2] = { (uintptr_t)addr, len };
    emit(MTF_EV_MUNMAP, rc != 0 ? MTF_EVF_FAILED : 0, ts, f, nested_call, NULL, err);
    return rc;
}

/* Bytes an mremap adds to its class: the new length, less the old one when the old range goes
 * (trace-format.md §7.2). Rounded to pages; 0 when it shrinks. */
static uint64_t mremap_growth(size_t old_len, size_t new_len, int flags)
{
    uint64_t page = mt_acct_page();
    uint64_t grow = mt_page_round(new_len, page);
    uint64_t gone = (flags & MREMAP_DONTUNMAP) ? 0 : mt_page_round(old_len, page);
    return grow > gone ? grow - gone : 0;
}

MT_EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
    void *want = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        want = va_arg(ap, void *);
        va_end(ap);
    }
    if (MT_UNLIKELY(mt_hook_ready() != 0)) {
        long r = syscall(SYS_mremap, old, old_len, new_len, flags, want);
        if (r < 0 && r > -4096) {
            errno = (int)-r;
            return MAP_FAILED;
        }
        return (void *)r;
    }
    int nested_call = mt_guard_active();
    const void *caller = __builtin_return_address(0);
    if (not_the_programs(nested_call, caller))
        return mt_real.mremap(old, old_len, new_len, flags, want);
    uint64_t t0 = mt_clock_ns_early();
    uint32_t saved = mt_tls.in;
    struct mt_stack_node *node = nested_call ? NULL : MT_TBUF_CAPTURE;
    struct mt_acct_lock lk;
    mt_acct_maps_lock(&lk);
    uint32_t def = mt_acct_map_move_class((uintptr_t)old);
    uint32_t cls = def;
    if (!nested_call && mt_classify_active) {
        /* a rule may need the stack: never unwind with the lock held (pitfalls.md §5) */
        mt_acct_maps_unlock(&lk);
        mt_guard_set(MT_IN_HOOK);
        cls = mt_classify(MTF_EV_MREMAP, new_len, def, &node);
        mt_guard_set(MT_IN_REAL);
        mt_acct_maps_lock(&lk);
    } else if (!nested_call) {
        mt_guard_set(MT_IN_REAL);
    }
    uint64_t live = 0, request = mremap_growth(old_len, new_len, flags);
    if (cls != def) /* a rule moves the whole new range into another class */
        request = mt_page_round(new_len, mt_acct_page());
    void *p = MAP_FAILED;
    int refused = !nested_call && mt_acct_maps_admit(cls, request, &live) != 0;
    if (!refused) {
        p = mt_real.mremap(old, old_len, new_len, flags, want);
        if (p != MAP_FAILED)
            mt_acct_map_move((uintptr_t)old, old_len, (uintptr_t)p, new_len,
                             (uint64_t)(unsigned)flags, cls);
    }
    int err = errno;
    mt_acct_maps_unlock(&lk);
    if (refused) {
        refuse_map(MTF_EV_MREMAP, cls, request, live, &node);
        err = ENOMEM;
    }
    if (!nested_call)
        mt_guard_set(saved);
    uint64_t t1 = mt_clock_ns();
    int failed = p == MAP_FAILED;
    uint64_t f[6] = {
        (uintptr_t)old, old_len, new_len, (uint64_t)(unsigned)flags, failed ? 0 : (uintptr_t)p,
        t1 - t0
    };
    emit(MTF_EV_MREMAP, (failed ? MTF_EVF_FAILED : 0) | class_flag(cls, def), t1, f, nested_call,
         node, err);
    return p;
}
