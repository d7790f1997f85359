/* Stack capture. The fast path walks the stack with the program's own CFI (cfi.c) through a
 * process-wide cache of per-pc rules; anything it does not model, and any doubt, sends the whole
 * capture to libunwind's unw_backtrace, which stays the reference: the fast path must give exactly
 * its frames (MEMTRACE_UNWIND_VERIFY=1 checks every capture). Either way the frames of the shim
 * are dropped. Runs inside hooks: no malloc, no locks and no stdio on the fast path; memory is
 * read only inside the calling thread's own stack. docs/unwinding.md has the design. */
#include "unwind.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <fcntl.h>
#include <link.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cfi.h"
#include "config.h"
#include "log.h"
#include "mt.h"
#include "pages.h"

#define MAX_RANGES 8
#define SLACK      8 /* frames of our own that may sit above the program's frames */

struct range {
    uintptr_t lo, hi;
};

/* Code of the shim and libunwind (their frames are dropped from stacks), and of libc and the
 * loader (which allocate on the shim's behalf while it resolves symbols or registers keys). */
static struct range shim_ranges[MAX_RANGES], unw_ranges[MAX_RANGES], sys_ranges[MAX_RANGES];
static int nshim, nunw, nsys;

struct find {
    uintptr_t addr; /* an address inside the object, or 0 to match by load base */
    uintptr_t base;
    struct range *out;
    int *n;
};

static int find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct find *f = arg;
    int hit = f->addr == 0 && f->base != 0 && info->dlpi_addr == f->base;
    for (int i = 0; i < info->dlpi_phnum && f->addr != 0; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && f->addr >= lo && f->addr < lo + ph->p_memsz)
            hit = 1;
    }
    if (!hit)
        return 0;
    for (int i = 0; i < info->dlpi_phnum && *f->n < MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            f->out[*f->n].lo = info->dlpi_addr + ph->p_vaddr;
            f->out[*f->n].hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
            (*f->n)++;
        }
    }
    return 1;
}

static void cache_init(void);

void mt_unwind_init(void)
{
    if (nshim != 0)
        return;
    cache_init();
    struct find f = { (uintptr_t)&mt_unwind_init, 0, shim_ranges, &nshim };
    dl_iterate_phdr(find_cb, &f);
    struct find g = { (uintptr_t)&unw_backtrace, 0, unw_ranges, &nunw };
    dl_iterate_phdr(find_cb, &g);
    struct find libc = { (uintptr_t)&dl_iterate_phdr, 0, sys_ranges, &nsys };
    dl_iterate_phdr(find_cb, &libc);
    struct find ld = { 0, (uintptr_t)getauxval(AT_BASE), sys_ranges, &nsys };
    dl_iterate_phdr(find_cb, &ld);
}

static int in(const struct range *r, int n, uintptr_t pc)
{
    for (int i = 0; i < n; i++)
        if (pc >= r[i].lo && pc < r[i].hi)
            return 1;
    return 0;
}

int mt_unwind_is_internal_pc(uintptr_t pc)
{
    return in(shim_ranges, nshim, pc) || in(unw_ranges, nunw, pc) || in(sys_ranges, nsys, pc);
}

int mt_unwind_is_tracer_pc(uintptr_t pc)
{
    return in(shim_ranges, nshim, pc) || in(unw_ranges, nunw, pc);
}

/* ---- rule cache ------------------------------------------------------------------------------
 * Open addressing, keyed by the looked-up pc (pc - 1 for return addresses) tagged with the cache
 * generation; the value is a packed struct mt_cfi_rule, negative results included. Within one
 * generation a slot is written once: the key by CAS from 0, then the value (0 until then, read as
 * a miss). mt_unwind_forget makes the generation odd, clears every slot and makes it even again;
 * a walk reads the generation before and after and discards itself when it changed (a seqlock),
 * so it never uses a slot cleared or refilled under it. A rule computed in an old generation
 * carries the old tag and is never matched again. */
#define CACHE_BITS   16
#define CACHE_SLOTS  (1u << CACHE_BITS)
#define CACHE_PROBES 32
#define TAG_SHIFT    48 /* user-space pcs fit in 47 bits; larger ones are not cached */

#define V_KIND_MASK 3u
#define V_CFA_RBP   4u
#define V_RBP_CFA   8u
#define V_RBP_SHIFT 16
#define V_CFA_SHIFT 32

struct slot {
    _Atomic uint64_t key; /* pc | generation tag << TAG_SHIFT; 0 when free */
    _Atomic uint64_t val; /* packed rule; 0 until written */
};

static struct slot *cache;
static _Atomic uint64_t cache_gen; /* even: stable; odd: mt_unwind_forget is clearing */
static atomic_flag forget_busy = ATOMIC_FLAG_INIT;
static uintptr_t vdso_base;

static void cache_init(void)
{
    cache = mt_pages_map(CACHE_SLOTS * sizeof(struct slot), MAP_NORESERVE);
    vdso_base = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
}

static uint64_t pack(const struct mt_cfi_rule *r)
{
    return r->kind | (r->cfa_rbp ? V_CFA_RBP : 0) | (r->rbp_cfa ? V_RBP_CFA : 0) |
           (uint64_t)(uint16_t)(int16_t)r->rbp_off << V_RBP_SHIFT |
           (uint64_t)(uint32_t)r->cfa_off << V_CFA_SHIFT;
}

struct fde_query {
    uintptr_t pc;
    struct mt_cfi_rule rule;
};

/* The readable PT_LOAD segment of `info` holding [addr, addr + len), or -1. */
static int segment_of(const struct dl_phdr_info *info, uintptr_t addr, size_t len)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_R) && addr >= lo &&
            addr - lo <= ph->p_memsz && len <= ph->p_memsz - (addr - lo))
            return i;
    }
    return -1;
}

/* Runs with the loader's lock held, so the object cannot be unmapped while its CFI is read.
 * Every byte read lies in one of its PT_LOAD segments: the .eh_frame_hdr (PT_GNU_EH_FRAME) in
 * the segment holding it, each FDE and its CIE in the segment holding the FDE. */
static int fde_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct fde_query *q = arg;
    int text = segment_of(info, q->pc, 1);
    if (text < 0 || !(info->dlpi_phdr[text].p_flags & PF_X))
        return 0;
    if (info->dlpi_addr == vdso_base && vdso_base != 0)
        return 1; /* the vDSO: only reached through signal frames, which libunwind handles */
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_GNU_EH_FRAME)
            continue;
        uintptr_t hdr = info->dlpi_addr + ph->p_vaddr;
        if (segment_of(info, hdr, ph->p_memsz) < 0)
            return 1;
        struct mt_cfi_span hspan = { (const uint8_t *)hdr, (const uint8_t *)hdr + ph->p_memsz };
        const uint8_t *fde = mt_cfi_hdr_lookup(hspan, q->pc);
        if (fde == NULL)
            return 1;
        int seg = segment_of(info, (uintptr_t)fde, 1);
        if (seg < 0)
            return 1;
        const ElfW(Phdr) *sp = &info->dlpi_phdr[seg];
        const uint8_t *lo = (const uint8_t *)(info->dlpi_addr + sp->p_vaddr);
        struct mt_cfi_span span = { lo, lo + sp->p_memsz };
        mt_cfi_rule_at(span, fde, q->pc, &q->rule);
        return 1;
    }
    return 1;
}

/* The rule for `pc`, packed, from the objects' CFI (a cache miss). */
static MT_NOINLINE uint64_t rule_from_cfi(uintptr_t pc)
{
    struct fde_query q;
    memset(&q, 0, sizeof q);
    q.pc = pc;
    q.rule.kind = MT_CFI_UNSUPPORTED; /* no object holds pc, or it has no CFI */
    dl_iterate_phdr(fde_cb, &q);
    return pack(&q.rule);
}

/* The packed rule for `pc` in generation tag `tag`, or 0 when the table is full. */
static inline uint64_t rule_for(uintptr_t pc, uint64_t tag)
{
    if (MT_UNLIKELY(pc >> TAG_SHIFT != 0))
        return rule_from_cfi(pc);
    uint64_t key = pc | tag;
    uint32_t h = (uint32_t)((key * 0x9e3779b97f4a7c15ULL) >> (64 - CACHE_BITS));
    for (uint32_t i = 0; i < CACHE_PROBES; i++) {
        struct slot *s = &cache[(h + i) & (CACHE_SLOTS - 1)];
        uint64_t k = atomic_load_explicit(&s->key, memory_order_acquire);
        if (MT_LIKELY(k == key)) {
            uint64_t v = atomic_load_explicit(&s->val, memory_order_acquire);
            return v != 0 ? v : rule_from_cfi(pc); /* being written by another thread */
        }
        if (k == 0) {
            uint64_t v = rule_from_cfi(pc);
            uint64_t expect = 0;
            if (atomic_compare_exchange_strong_explicit(&s->key, &expect, key, memory_order_acq_rel,
                                                        memory_order_acquire))
                atomic_store_explicit(&s->val, v, memory_order_release);
            return v; /* lost the slot: the next capture finds the winner's key or another */
        }
    }
    return 0;
}

void mt_unwind_forget(void)
{
    if (cache == NULL)
        return;
    while (atomic_flag_test_and_set_explicit(&forget_busy, memory_order_acquire))
        ; /* two dlcloses at once: rare, and this is never on an allocation path */
    atomic_fetch_add_explicit(&cache_gen, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (uint32_t i = 0; i < CACHE_SLOTS; i++) {
        if (atomic_load_explicit(&cache[i].key, memory_order_relaxed) == 0)
            continue; /* reading an untouched page maps the zero page; writing would not */
        atomic_store_explicit(&cache[i].val, 0, memory_order_relaxed);
        atomic_store_explicit(&cache[i].key, 0, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&cache_gen, 1, memory_order_release);
    atomic_flag_clear_explicit(&forget_busy, memory_order_release);
}

/* ---- the walk ------------------------------------------------------------------------------ */

/* The calling thread's stack, [lo, hi); hi 0 until learnt, NO_STACK when it cannot be. */
struct stack_bounds {
    uintptr_t lo, hi;
};
#define NO_STACK 1

static __thread struct stack_bounds stack_bounds __attribute__((tls_model("initial-exec")));

/* Once per thread, on its first capture: the mapping that holds our own sp, from /proc/self/maps
 * read with raw system calls (no malloc: pthread_getattr_np would allocate through the program's
 * heap and change its layout). hi is the mapping's end. lo is the end of the mapping below it,
 * and no lower than hi - RLIMIT_STACK: the main thread's stack grows down into that gap, and the
 * kernel places nothing else there (mmap_base keeps the stack's rlimit free). A thread stack
 * starts right above its guard page, so there lo is the stack's own start. */
static MT_NOINLINE void learn_stack(uintptr_t sp)
{
    stack_bounds.hi = NO_STACK;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[2048];
    size_t have = 0;
    uintptr_t prev_end = 0, lo = 0, hi = 0;
    for (;;) {
        long got = syscall(SYS_read, fd, buf + have, sizeof buf - 1 - have);
        if (got <= 0)
            break;
        have += (size_t)got;
        buf[have] = '\0';
        char *line = buf, *nl;
        while (hi == 0 && (nl = strchr(line, '\n')) != NULL) {
            char *end;
            uintptr_t a = (uintptr_t)strtoull(line, &end, 16);
            uintptr_t b = *end == '-' ? (uintptr_t)strtoull(end + 1, NULL, 16) : 0;
            if (sp >= a && sp < b) {
                lo = prev_end;
                hi = b;
            }
            prev_end = b;
            line = nl + 1;
        }
        if (hi != 0)
            break;
        have = (size_t)(buf + have - line);
        memmove(buf, line, have);
        if (have == sizeof buf - 1)
            break; /* a line longer than the buffer: not a maps file we understand */
    }
    syscall(SYS_close, fd);
    if (hi == 0)
        return;
    struct rlimit rl;
    if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < hi &&
        hi - rl.rlim_cur > lo)
        lo = hi - rl.rlim_cur;
    if (sp < lo)
        return;
    stack_bounds.lo = lo;
    stack_bounds.hi = hi;
}

#define MIN_PC 0x4000 /* libunwind's fast trace stops at a smaller return address (Gtrace.c) */

/* The previous walk (memo->rec[memo->cur], pn records) passed through the same pc and sp at its
 * record k as the walk under way at its record j (with rbp `bp`): everything it did from there
 * on depended only on those registers, on the rules (same cache generation) and on the stack
 * words it read. If every one of those words that mattered still holds what it read, the rest of
 * this walk would be the same, so it is copied instead of walked. rbp matters only where a
 * frame's CFA was computed from it before another frame restored it from the stack: code
 * without frame pointers keeps data in rbp, and two walks through the same frames often differ
 * only there. Returns the total count of return addresses in raw[], or -1 when a word that
 * mattered changed or the copy cannot stand for the walk (the walk then goes on). */
static int reuse(struct mt_unwind_memo *memo, uint32_t k, uint32_t j, uintptr_t bp, void **raw,
                 uint32_t base, int want, uintptr_t lo, uintptr_t hi)
{
    const struct mt_unwind_rec *prev = memo->rec[memo->cur];
    struct mt_unwind_rec *next = memo->rec[memo->cur ^ 1];
    uint32_t pn = memo->nrec;
    /* A walk cut at the depth limit says nothing about frames beyond it: it can stand for this
     * one only if this one reaches the limit no later. */
    if (!memo->natural && j < k)
        return -1;
    uintptr_t diff = 0;
    int need = 0; /* whether rbp on leaving record i (entering i + 1) mattered */
    for (uint32_t i = pn; i-- > k;) {
        const struct mt_unwind_rec *r = &prev[i];
        if (MT_UNLIKELY(r->ra_at < lo || r->ra_at > hi - 8))
            return -1;
        diff |= *(const uintptr_t *)r->ra_at ^ r->ra;
        if (r->bp_at != 0) {
            if (need) {
                if (MT_UNLIKELY(r->bp_at < lo || r->bp_at > hi - 8))
                    return -1;
                diff |= *(const uintptr_t *)r->bp_at ^ r->bp_to;
            }
            need = 0; /* rbp on entering this record is not what the walk goes on with */
        }
        need |= (int)r->cfa_bp;
    }
    if (diff != 0 || (need && bp != prev[k].bp))
        return -1;
    /* raw[] holds `base` addresses ahead of the records' (the origin's pc), then one per record */
    uint32_t n = base + j + (memo->nout - k), nrec = j + (pn - k), natural = memo->natural;
    if (n > (uint32_t)want) {
        n = (uint32_t)want;
        nrec = n - base;
        natural = 0;
    }
    for (uint32_t i = base + j; i < n; i++)
        raw[i] = (void *)prev[k + (i - base - j)].ra;
    memcpy(&next[j], &prev[k], (size_t)(nrec - j) * sizeof *next);
    memo->same = j == 0 && k == 0 && n - base == memo->nout;
    memo->nrec = nrec;
    memo->nout = n - base;
    memo->natural = natural;
    return (int)n;
}

/* Fill raw[] like unw_backtrace(raw, want) would when called from the same place: return
 * addresses from the caller of this function outwards. Returns the count, or -1 when any frame
 * is not modelled or anything is in doubt: then nothing it wrote may be used. With a memo, each
 * frame is recorded, and the walk stops re-reading the stack where it meets the previous one. */
static MT_NOINLINE int cfi_backtrace(void **raw, int want, struct mt_unwind_memo *memo,
                                     const struct mt_unwind_origin *origin)
{
    uintptr_t pc, sp, bp;
    /* One asm block: pc is the address of the mov that reads rsp, so the CFI row at pc describes
     * exactly the register values read here. */
    __asm__ volatile("leaq 0(%%rip), %0\n\tmovq %%rsp, %1\n\tmovq %%rbp, %2"
                     : "=r"(pc), "=r"(sp), "=r"(bp));
    if (memo != NULL)
        memo->same = 0;
    if (MT_UNLIKELY(cache == NULL))
        return -1;
    uint64_t gen = atomic_load_explicit(&cache_gen, memory_order_acquire);
    if (MT_UNLIKELY(gen & 1))
        return -1;
    uint64_t tag = ((gen >> 1) & 0xffff) << TAG_SHIFT;
    if (MT_UNLIKELY(stack_bounds.hi == 0))
        learn_stack(sp);
    const uintptr_t lo = sp, hi = stack_bounds.hi;
    if (MT_UNLIKELY(sp < stack_bounds.lo || sp >= hi))
        return -1; /* a signal stack, a coroutine, or no bounds: libunwind copes */
    int n = 0, natural = 0;
    uintptr_t adj = 0; /* 1 once pc is a return address: look up the call, not what follows */
    if (origin != NULL) {
        /* Start at the program's frame that called the hook: the hook's own frames, and ours,
         * are the shim's and would be dropped. Its state must lie on this stack, above us. */
        if (MT_UNLIKELY(origin->sp <= sp || origin->sp > hi || origin->sp - 8 < lo ||
                        origin->pc < MIN_PC || want < 1))
            return -1;
        pc = origin->pc;
        sp = origin->sp;
        bp = origin->bp;
        adj = 1;
        raw[n++] = (void *)pc;
    }
    const uint32_t base = (uint32_t)n;
    const struct mt_unwind_rec *prev = NULL;
    struct mt_unwind_rec *next = NULL;
    uint32_t pk = 0, pn = 0;
    if (memo != NULL) {
        if (MT_UNLIKELY(memo->l0_gen != gen + 1)) {
            /* a dlclose since: tags repeat every 65536 generations, entries must not */
            memset(memo->l0_key, 0, sizeof memo->l0_key);
            memo->l0_gen = gen + 1;
        }
        if (memo->gen == gen + 1 && memo->want == (uint32_t)want && memo->base == base) {
            prev = memo->rec[memo->cur];
            pn = memo->nrec;
        }
        next = memo->rec[memo->cur ^ 1];
    }
    uint32_t f = 0; /* frames walked (records written) */
    while (n < want) {
        if (prev != NULL) {
            /* the previous walk's frames lie at increasing sp: find one at ours */
            while (pk < pn && prev[pk].sp < sp)
                pk++;
            if (pk < pn && prev[pk].sp == sp && prev[pk].pc == pc && (pk == 0) == (f == 0)) {
                int got = reuse(memo, pk, f, bp, raw, base, want, lo, hi);
                if (got >= 0) {
                    n = got;
                    goto done;
                }
                prev = NULL; /* the stack changed under the old walk: walk the rest */
            }
        }
        uint64_t v;
        uintptr_t at_pc = pc - adj;
        if (memo != NULL && MT_LIKELY(at_pc >> TAG_SHIFT == 0)) {
            uint32_t h = (uint32_t)(at_pc ^ (at_pc >> 9)) & (MT_UNWIND_L0_SLOTS - 1);
            if (memo->l0_key[h] == (at_pc | tag)) {
                v = memo->l0_val[h];
            } else {
                v = rule_for(at_pc, tag);
                if (v != 0) {
                    memo->l0_key[h] = at_pc | tag;
                    memo->l0_val[h] = v;
                }
            }
        } else {
            v = rule_for(at_pc, tag);
        }
        uint32_t kind = (uint32_t)(v & V_KIND_MASK);
        if (kind == MT_CFI_END) {
            natural = 1;
            break;
        }
        if (MT_UNLIKELY(kind != MT_CFI_STANDARD))
            return -1;
        uintptr_t cfa =
            ((v & V_CFA_RBP) ? bp : sp) + (uintptr_t)(intptr_t)(int32_t)(v >> V_CFA_SHIFT);
        /* The caller's frame lies above ours: the CFA grows strictly, and both reads below stay
         * in [lo, hi), the part of this thread's stack that is live (lo is our own sp). */
        if (MT_UNLIKELY(cfa <= sp || cfa > hi || cfa - 8 < lo))
            return -1;
        uintptr_t ra = *(const uintptr_t *)(cfa - 8);
        uintptr_t at = 0, caller_bp = bp;
        if (v & V_RBP_CFA) {
            at = cfa + (uintptr_t)(intptr_t)(int16_t)(v >> V_RBP_SHIFT);
            if (MT_UNLIKELY(at < lo || at > hi - 8))
                return -1;
            caller_bp = *(const uintptr_t *)at;
        }
        if (next != NULL)
            next[f] = (struct mt_unwind_rec){ pc, sp, bp,        cfa - 8,
                                              ra, at, caller_bp, (v & V_CFA_RBP) != 0 };
        f++;
        bp = caller_bp;
        sp = cfa;
        if (ra < MIN_PC) {
            natural = 1;
            break;
        }
        raw[n++] = (void *)ra;
        pc = ra;
        adj = 1;
    }
    if (memo != NULL) {
        memo->same = 0;
        memo->nrec = f;
        memo->nout = (uint32_t)n - base;
        memo->natural = (uint32_t)natural;
    }
done:
    atomic_thread_fence(memory_order_acquire);
    if (MT_UNLIKELY(atomic_load_explicit(&cache_gen, memory_order_relaxed) != gen)) {
        if (memo != NULL)
            memo->gen = memo->same = 0;
        return -1; /* a dlclose cleared the cache while we read it */
    }
    if (memo != NULL) {
        memo->gen = gen + 1;
        memo->want = (uint32_t)want;
        memo->base = base;
        memo->cur ^= 1;
    }
    return n;
}

void mt_unwind_memo_clear(struct mt_unwind_memo *memo)
{
    memset(memo->l0_key, 0, sizeof memo->l0_key);
    memo->l0_gen = 0;
    memo->gen = memo->same = 0;
    memo->nrec = memo->nout = 0;
}

/* ---- capture ------------------------------------------------------------------------------- */

#define RAW_MAX (256 + SLACK + 1)

/* Drop every frame of the shim (the hook frames on top, and main_wrapper() between main and the
 * C library at the bottom), keep at most max, and flag truncation. */
static uint32_t keep(void *const *raw, int got, uint32_t want, uint64_t *frames, uint32_t max,
                     int *trunc)
{
    uint32_t n = 0;
    *trunc = 0;
    for (int i = 0; i < got; i++) {
        if (in(shim_ranges, nshim, (uintptr_t)raw[i]))
            continue;
        if (n == max) {
            *trunc = 1;
            break;
        }
        frames[n++] = (uint64_t)(uintptr_t)raw[i];
    }
    if ((uint32_t)got == want)
        *trunc = 1; /* filled the whole buffer: more frames may exist beyond it */
    return n;
}

static _Atomic uint64_t verify_total, verify_walked;

static size_t put_stack(char *buf, size_t cap, const char *who, const uint64_t *f, uint32_t n,
                        int trunc)
{
    size_t len = mt_log_fmt(buf, cap, " %s n=%u trunc=%d [", who, n, trunc);
    for (uint32_t i = 0; i < n && len + 24 < cap; i++)
        len += mt_log_fmt(buf + len, cap - len, i ? " %lx" : "%lx", (unsigned long)f[i]);
    return len + mt_log_fmt(buf + len, cap - len, "]");
}

/* MEMTRACE_UNWIND_VERIFY=1: the walker's result against libunwind's, both taken from
 * mt_unwind_capture itself. A difference is a bug in the walker: it is reported like a failed
 * assertion, with both stacks, and the process aborts. */
static MT_COLD void verify(void *const *raw, int got, void *const *ref, int ref_got, uint32_t want,
                           uint32_t max)
{
    atomic_fetch_add_explicit(&verify_total, 1, memory_order_relaxed);
    if (got < 0)
        return; /* the walker declined: libunwind's result is used as it is */
    atomic_fetch_add_explicit(&verify_walked, 1, memory_order_relaxed);
    uint64_t a[RAW_MAX], b[RAW_MAX];
    int ta, tb;
    uint32_t na = keep(raw, got, want, a, max, &ta);
    uint32_t nb = keep(ref, ref_got, want, b, max, &tb);
    /* The raw arrays differ in the shim's own frames (the walker may start at the program's
     * frame that called the hook); what is kept must be the same. */
    int same = na == nb && ta == tb && memcmp(a, b, na * sizeof a[0]) == 0;
    if (same)
        return;
    char line[MT_LOG_LINE_MAX];
    size_t len = mt_log_fmt(line, sizeof line,
                            "memtrace: error: MEMTRACE_UNWIND_VERIFY: the CFI walker and libunwind "
                            "differ (raw %d and %d frames):",
                            got, ref_got);
    len += put_stack(line + len, sizeof line - len, "cfi", a, na, ta);
    len += put_stack(line + len, sizeof line - len, "libunwind", b, nb, tb);
    len += mt_log_fmt(line + len, sizeof line - len, "\n");
    mt_log_raw(line, len);
    abort(); /* an assertion failure: the walker broke its contract (docs/unwinding.md) */
}

/* In verify mode, one line at exit says how many captures were compared, so a test can tell a
 * clean run from one where the walker never ran. */
__attribute__((destructor)) static void verify_summary(void)
{
    if (!mt_config.unwind_verify)
        return;
    char line[256];
    size_t len = mt_log_fmt(line, sizeof line,
                            "memtrace: MEMTRACE_UNWIND_VERIFY: %lu captures, %lu walked by CFI, "
                            "no difference\n",
                            (unsigned long)atomic_load(&verify_total),
                            (unsigned long)atomic_load(&verify_walked));
    mt_log_raw(line, len);
}

uint32_t mt_unwind_capture_memo(uint64_t *frames, uint32_t max, int *trunc,
                                struct mt_unwind_memo *memo, const struct mt_unwind_origin *origin)
{
    void *raw[RAW_MAX];
    uint32_t want = max + SLACK + 1;
    if (want > RAW_MAX)
        want = RAW_MAX;
    /* Both unwinders are called from here, so their first frame is the same return address
     * into this function (a shim frame, dropped) and their depth limits line up. */
    int got = cfi_backtrace(raw, (int)want, memo, origin);
    if (MT_UNLIKELY(mt_config.unwind_verify)) {
        void *ref[RAW_MAX];
        int ref_got = unw_backtrace(ref, (int)want);
        if (ref_got < 0)
            ref_got = 0;
        verify(raw, got, ref, ref_got, want, max);
        return keep(ref, ref_got, want, frames, max, trunc);
    }
    if (got < 0) {
        if (memo != NULL)
            memo->gen = memo->same = 0; /* the memo must describe the last capture or none */
        got = unw_backtrace(raw, (int)want);
        if (got < 0)
            got = 0;
    }
    return keep(raw, got, want, frames, max, trunc);
}

uint32_t mt_unwind_capture(uint64_t *frames, uint32_t max, int *trunc)
{
    return mt_unwind_capture_memo(frames, max, trunc, NULL, NULL);
}
