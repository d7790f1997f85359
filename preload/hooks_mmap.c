/* mmap, mmap64, munmap, mremap. glibc's allocator and pthread stacks use internal entry points,
 * so what arrives here is the program's own mapping (or a foreign allocator's, recognised as
 * nested inside the real allocator call and left out). Releases are timed before the real call,
 * so a range reused by another thread orders after its release (trace-format.md §10). */
#include <stdarg.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "encode.h"
#include "hooks.h"
#include "memtrace/format.h"

static void emit(unsigned kind, unsigned flags, uint64_t ts, const uint64_t *f, int nested_call,
                 int err)
{
    if (nested_call) {
        mt_tbuf_nested(kind, flags, ts, f);
    } else {
        mt_guard_set(MT_IN_HOOK);
        mt_tbuf_event(kind, flags, ts, f);
        mt_guard_set(MT_IN_NONE);
    }
    errno = err;
}

static void *do_mmap(unsigned kind, void *(*real)(void *, size_t, int, int, int, off_t), void *addr,
                     size_t len, int prot, int flags, int fd, off_t off, const void *caller)
{
    int nested_call = mt_guard_active();
    if ((nested_call && !mt_hook_nested_is_program(caller, 1)) ||
        mt_unwind_is_tracer_pc((uintptr_t)caller))
        return real(addr, len, prot, flags, fd, off);
    uint32_t saved = mt_tls.in;
    if (!nested_call)
        mt_guard_set(MT_IN_REAL);
    void *p = real(addr, len, prot, flags, fd, off);
    int err = errno;
    if (!nested_call)
        mt_guard_set(saved);
    int failed = p == MAP_FAILED;
    uint64_t f[6] = { failed ? (uintptr_t)addr : (uintptr_t)p,
                      len,
                      (uint64_t)prot,
                      (uint64_t)(unsigned)flags,
                      mt_zigzag((uint64_t)(int64_t)fd),
                      (uint64_t)off };
    emit(kind, failed ? MTF_EVF_FAILED : 0, mt_clock_ns(), f, nested_call, err);
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
    if ((nested_call && !mt_hook_nested_is_program(caller, 1)) ||
        mt_unwind_is_tracer_pc((uintptr_t)caller))
        return mt_real.munmap(addr, len);
    uint64_t ts = mt_clock_ns();
    uint32_t saved = mt_tls.in;
    if (!nested_call)
        mt_guard_set(MT_IN_REAL);
    int rc = mt_real.munmap(addr, len);
    int err = errno;
    if (!nested_call)
        mt_guard_set(saved);
    uint64_t f[2] = { (uintptr_t)addr, len };
    emit(MTF_EV_MUNMAP, rc != 0 ? MTF_EVF_FAILED : 0, ts, f, nested_call, err);
    return rc;
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
    if ((nested_call && !mt_hook_nested_is_program(caller, 1)) ||
        mt_unwind_is_tracer_pc((uintptr_t)caller))
        return mt_real.mremap(old, old_len, new_len, flags, want);
    uint64_t t0 = mt_clock_ns();
    uint32_t saved = mt_tls.in;
    if (!nested_call)
        mt_guard_set(MT_IN_REAL);
    void *p = mt_real.mremap(old, old_len, new_len, flags, want);
    int err = errno;
    if (!nested_call)
        mt_guard_set(saved);
    uint64_t t1 = mt_clock_ns();
    int failed = p == MAP_FAILED;
    uint64_t f[6] = {
        (uintptr_t)old, old_len, new_len, (uint64_t)(unsigned)flags, failed ? 0 : (uintptr_t)p,
        t1 - t0
    };
    emit(MTF_EV_MREMAP, failed ? MTF_EVF_FAILED : 0, t1, f, nested_call, err);
    return p;
}
