/* preload/unwind.c: stack capture and the address-range predicates. The unit runner links the
 * preload objects into its own executable, so for mt_unwind_init "the shim" is the runner: every
 * frame of the runner (these tests included) is dropped from captured stacks, and all of the
 * runner's code counts as tracer code. Call order is therefore checked through C library
 * functions that call back into the runner (dl_iterate_phdr -> tfind -> lfind), whose return
 * addresses must come out innermost first with the runner's frames in between removed.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <search.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "memtrace/format.h"
#include "unwind.h"

static void unwind_setup(void)
{
    mt_unwind_init();
}

TestSuite(unwind, .init = unwind_setup, .timeout = 10);

/* ---- helpers --------------------------------------------------------------------------------- */

struct uw_object {
    const char *needle; /* substring of the object's path; "" for the executable */
    uintptr_t base;     /* or match by load base when needle is NULL */
    uintptr_t lo, hi;   /* out: its first executable segment */
};

static int uw_find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct uw_object *o = arg;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    int hit = o->needle ? (o->needle[0] ? strstr(name, o->needle) != NULL : name[0] == '\0')
                        : info->dlpi_addr == o->base;
    if (!hit)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            o->lo = info->dlpi_addr + ph->p_vaddr;
            o->hi = o->lo + ph->p_memsz;
            return 1;
        }
    }
    return 0;
}

/* The first executable segment of a loaded object; fails the test if there is none. */
static void uw_find(struct uw_object *o)
{
    o->lo = o->hi = 0;
    dl_iterate_phdr(uw_find_cb, o);
    cr_assert(ne(u64, (uint64_t)o->lo, 0), "found %s", o->needle ? o->needle : "ld.so");
}

static void *uw_sym(const char *name)
{
    void *p = dlsym(RTLD_DEFAULT, name);
    cr_assert(ne(ptr, p, NULL), "dlsym %s", name);
    return p;
}

/* Start address of the function holding `pc` (a return address: look at pc - 1). */
static void *uw_func_of(uint64_t pc)
{
    Dl_info in;
    if (dladdr((void *)(uintptr_t)(pc - 1), &in) == 0)
        return NULL;
    return in.dli_saddr;
}

/* ---- capture through C library callbacks ------------------------------------------------------
 */

struct uw_capture {
    uint32_t max;
    uint64_t frames[MTF_MAX_FRAMES_LIMIT];
    uint32_t n;
    int trunc;
};

static struct uw_capture *uw_cur; /* what the innermost callback fills */

static int uw_cmp_lfind(const void *a, const void *b)
{
    (void)a, (void)b;
    uw_cur->n = mt_unwind_capture(uw_cur->frames, uw_cur->max, &uw_cur->trunc);
    __asm__ __volatile__("" ::: "memory"); /* no tail call: keep this frame */
    return 0;
}

static int uw_cmp_tfind(const void *a, const void *b)
{
    (void)a, (void)b;
    int key = 1, elems[1] = { 1 };
    size_t nel = 1;
    void *r = lfind(&key, elems, &nel, sizeof elems[0], uw_cmp_lfind);
    __asm__ __volatile__("" ::: "memory");
    return r ? 0 : 1;
}

static void uw_no_free(void *p)
{
    (void)p; /* the key is static */
}

static int uw_phdr_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)info, (void)size, (void)arg;
    int key = 1;
    void *root = NULL;
    static int stored = 1;
    void *node = tsearch(&stored, &root, uw_cmp_tfind); /* empty tree: no comparison yet */
    cr_assert(ne(ptr, node, NULL));
    void *r = tfind(&key, &root, uw_cmp_tfind);
    cr_assert(ne(ptr, r, NULL));
    tdestroy(root, uw_no_free); /* no comparisons, unlike tdelete */
    return 1;                   /* one object is enough */
}

/* Capture up to `max` frames from inside dl_iterate_phdr -> tfind -> lfind. */
static __attribute__((noinline)) void uw_capture_via_libc(struct uw_capture *c, uint32_t max)
{
    memset(c, 0, sizeof *c);
    c->max = max;
    uw_cur = c;
    dl_iterate_phdr(uw_phdr_cb, NULL);
    __asm__ __volatile__("" ::: "memory");
}

Test(unwind, frames_are_the_callers_innermost_first_without_the_shims)
{
    static struct uw_capture c;
    uw_capture_via_libc(&c, MTF_MAX_FRAMES_LIMIT);
    cr_assert(ge(u32, c.n, 3), "at least lfind, tfind and dl_iterate_phdr (%u frames)", c.n);
    cr_expect(eq(ptr, uw_func_of(c.frames[0]), uw_sym("lfind")), "frame 0 is in lfind");
    cr_expect(eq(ptr, uw_func_of(c.frames[1]), uw_sym("tfind")), "frame 1 is in tfind");
    cr_expect(eq(ptr, uw_func_of(c.frames[2]), uw_sym("dl_iterate_phdr")),
              "frame 2 is in dl_iterate_phdr");
    cr_expect(eq(int, c.trunc, 0), "%u frames are not truncated at %u", c.n, MTF_MAX_FRAMES_LIMIT);
}

Test(unwind, frames_are_return_addresses_inside_their_functions)
{
    static struct uw_capture c;
    uw_capture_via_libc(&c, MTF_MAX_FRAMES_LIMIT);
    cr_assert(ge(u32, c.n, 3));
    /* a return address points after the call: past the function start, within the object */
    void *fn[3] = { uw_sym("lfind"), uw_sym("tfind"), uw_sym("dl_iterate_phdr") };
    for (int i = 0; i < 3; i++)
        cr_expect(gt(u64, c.frames[i], (uint64_t)(uintptr_t)fn[i]), "frame %d after the entry", i);
}

Test(unwind, no_frame_belongs_to_the_shim)
{
    static struct uw_capture c;
    uw_capture_via_libc(&c, MTF_MAX_FRAMES_LIMIT);
    struct uw_object exe = { "", 0, 0, 0 };
    uw_find(&exe);
    cr_assert(gt(u32, c.n, 0));
    for (uint32_t i = 0; i < c.n; i++) {
        cr_expect(eq(int, c.frames[i] >= exe.lo && c.frames[i] < exe.hi, 0),
                  "frame %u (%#llx) is not in the runner, which is the shim here", i,
                  (unsigned long long)c.frames[i]);
        cr_expect(eq(int, mt_unwind_is_tracer_pc((uintptr_t)c.frames[i]), 0), "frame %u", i);
        Dl_info in;
        cr_expect(ne(int, dladdr((void *)(uintptr_t)(c.frames[i] - 1), &in), 0),
                  "frame %u lies in a loaded object", i);
    }
}

/* Direct chain of the runner's own functions: all of them are the shim's frames. */
static __attribute__((noinline)) uint32_t tu_unwind_f3(uint64_t *frames, uint32_t max, int *trunc)
{
    uint32_t n = mt_unwind_capture(frames, max, trunc);
    __asm__ __volatile__("" ::: "memory");
    return n;
}

static __attribute__((noinline)) uint32_t tu_unwind_f2(uint64_t *frames, uint32_t max, int *trunc)
{
    uint32_t n = tu_unwind_f3(frames, max, trunc);
    __asm__ __volatile__("" ::: "memory");
    return n;
}

static __attribute__((noinline)) uint32_t tu_unwind_f1(uint64_t *frames, uint32_t max, int *trunc)
{
    uint32_t n = tu_unwind_f2(frames, max, trunc);
    __asm__ __volatile__("" ::: "memory");
    return n;
}

Test(unwind, runner_frames_are_dropped_wherever_they_are)
{
    static uint64_t deep[MTF_MAX_FRAMES_LIMIT], flat[MTF_MAX_FRAMES_LIMIT];
    int t1, t2;
    uint32_t n1 = tu_unwind_f1(deep, MTF_MAX_FRAMES_LIMIT, &t1);
    uint32_t n2 = mt_unwind_capture(flat, MTF_MAX_FRAMES_LIMIT, &t2);
    /* f1..f3 and this test function are all the runner's: what remains is the caller of the
     * test (libcriterion) and below, the same from both call sites */
    cr_assert(gt(u32, n1, 0), "frames outside the runner remain");
    cr_expect(eq(u32, n1, n2));
    for (uint32_t i = 0; i < n1 && i < n2; i++)
        cr_expect(eq(u64, deep[i], flat[i]), "frame %u", i);
    void *mine[] = { (void *)&tu_unwind_f1, (void *)&tu_unwind_f2, (void *)&tu_unwind_f3 };
    for (uint32_t i = 0; i < n1; i++)
        for (int k = 0; k < 3; k++)
            cr_expect(ne(ptr, uw_func_of(deep[i]), mine[k]), "frame %u is not f%d", i, k + 1);
}

/* ---- max_frames and truncation ----------------------------------------------------------------
 */

Test(unwind, max_limits_frames_and_sets_trunc)
{
    static struct uw_capture full, two;
    uw_capture_via_libc(&full, MTF_MAX_FRAMES_LIMIT);
    uw_capture_via_libc(&two, 2);
    cr_assert(gt(u32, full.n, 2));
    cr_expect(eq(u32, two.n, 2));
    cr_expect(eq(int, two.trunc, 1), "deeper than 2: truncated");
    cr_expect(eq(u64, two.frames[0], full.frames[0]), "the innermost frames are kept");
    cr_expect(eq(u64, two.frames[1], full.frames[1]));
}

Test(unwind, max_of_one_keeps_the_innermost_frame)
{
    static struct uw_capture full, one;
    uw_capture_via_libc(&full, MTF_MAX_FRAMES_LIMIT);
    uw_capture_via_libc(&one, 1);
    cr_expect(eq(u32, one.n, 1));
    cr_expect(eq(int, one.trunc, 1));
    cr_expect(eq(u64, one.frames[0], full.frames[0]));
}

Test(unwind, max_equal_to_the_depth_is_not_truncated)
{
    static struct uw_capture full, exact;
    uw_capture_via_libc(&full, MTF_MAX_FRAMES_LIMIT);
    cr_assert(eq(int, full.trunc, 0));
    uw_capture_via_libc(&exact, full.n);
    cr_expect(eq(u32, exact.n, full.n));
    cr_expect(eq(int, exact.trunc, 0), "a stack of exactly %u frames fits max = %u", full.n,
              full.n);
    uw_capture_via_libc(&exact, full.n - 1);
    cr_expect(eq(u32, exact.n, full.n - 1));
    cr_expect(eq(int, exact.trunc, 1), "one frame short: truncated");
}

/* ---- address predicates ------------------------------------------------------------------------
 */

Test(unwind, the_runner_is_the_shim_and_tracer_code)
{
    cr_expect(eq(int, mt_unwind_is_tracer_pc((uintptr_t)&mt_unwind_capture), 1));
    cr_expect(eq(int, mt_unwind_is_internal_pc((uintptr_t)&mt_unwind_capture), 1));
    /* in this link the whole runner executable is "the shim", the tests included */
    cr_expect(eq(int, mt_unwind_is_tracer_pc((uintptr_t)&tu_unwind_f1), 1));
}

Test(unwind, libunwind_is_tracer_code)
{
    struct uw_object o = { "libunwind", 0, 0, 0 };
    uw_find(&o);
    cr_expect(eq(int, mt_unwind_is_tracer_pc(o.lo), 1), "first byte of libunwind's code");
    cr_expect(eq(int, mt_unwind_is_tracer_pc(o.hi - 1), 1), "last byte of libunwind's code");
    cr_expect(eq(int, mt_unwind_is_internal_pc(o.lo), 1));
}

Test(unwind, libc_is_internal_but_not_tracer_code)
{
    uintptr_t pc = (uintptr_t)uw_sym("getpid");
    cr_expect(eq(int, mt_unwind_is_tracer_pc(pc), 0), "getpid is not the tracer's");
    cr_expect(eq(int, mt_unwind_is_internal_pc(pc), 1), "getpid is the C library's");
    pc = (uintptr_t)uw_sym("getppid"); /* not malloc: a sanitizer runtime may define that */
    cr_expect(eq(int, mt_unwind_is_tracer_pc(pc), 0));
    cr_expect(eq(int, mt_unwind_is_internal_pc(pc), 1));
}

Test(unwind, the_loader_is_internal_but_not_tracer_code)
{
    struct uw_object o = { NULL, (uintptr_t)getauxval(AT_BASE), 0, 0 };
    uw_find(&o);
    cr_expect(eq(int, mt_unwind_is_internal_pc(o.lo), 1));
    cr_expect(eq(int, mt_unwind_is_internal_pc(o.hi - 1), 1));
    cr_expect(eq(int, mt_unwind_is_tracer_pc(o.lo), 0));
}

Test(unwind, other_libraries_and_data_are_neither)
{
    struct uw_object o = { "libcriterion", 0, 0, 0 };
    uw_find(&o);
    cr_expect(eq(int, mt_unwind_is_internal_pc(o.lo), 0), "libcriterion is the program's");
    cr_expect(eq(int, mt_unwind_is_tracer_pc(o.lo), 0));
    int local;
    void *heap = malloc(8);
    cr_expect(eq(int, mt_unwind_is_internal_pc((uintptr_t)&local), 0), "a stack address");
    cr_expect(eq(int, mt_unwind_is_internal_pc((uintptr_t)heap), 0), "a heap address");
    cr_expect(eq(int, mt_unwind_is_internal_pc(0), 0));
    cr_expect(eq(int, mt_unwind_is_tracer_pc(UINTPTR_MAX), 0));
    free(heap);
}

Test(unwind, ranges_end_where_the_code_ends)
{
    struct uw_object o = { "libunwind", 0, 0, 0 };
    uw_find(&o);
    cr_expect(eq(int, mt_unwind_is_tracer_pc(o.lo), 1), "the first byte");
    cr_expect(eq(int, mt_unwind_is_tracer_pc(o.hi - 1), 1), "the last byte");
    cr_expect(eq(int, mt_unwind_is_tracer_pc(o.hi), 0), "one past the end");
    cr_expect(eq(int, mt_unwind_is_tracer_pc(o.lo - 1), 0), "one before the start");
}

Test(unwind, init_twice_is_harmless)
{
    mt_unwind_init();
    static struct uw_capture c;
    uw_capture_via_libc(&c, MTF_MAX_FRAMES_LIMIT);
    cr_expect(eq(ptr, uw_func_of(c.frames[0]), uw_sym("lfind")));
    cr_expect(eq(int, mt_unwind_is_tracer_pc((uintptr_t)&mt_unwind_capture), 1));
}

/* ---- the per-thread memo of the previous walk ---------------------------------------------- */

/* qsort calls the comparator from varying recursion depths of its merge sort, and bsearch and
 * lfind from other call paths: every capture, with the memo, must give exactly the frames a
 * capture without it gives from the same place, and repeating a capture from one place must be
 * recognised as the same stack. */
static struct mt_unwind_memo uw_memo;
static unsigned uw_same, uw_compared, uw_differ;

static __attribute__((noinline)) void uw_pair(void)
{
    uint64_t a[2][MTF_MAX_FRAMES_LIMIT], b[MTF_MAX_FRAMES_LIMIT];
    int ta[2], tb;
    uint32_t na[2];
    unsigned same = 0;
    /* twice from one call site: the second time the memo must prove the whole stack unchanged */
    for (volatile int r = 0; r < 2; r++) { /* volatile: one call site, never unrolled */
        na[r] = mt_unwind_capture_memo(a[r], 64, &ta[r], &uw_memo, NULL);
        same = uw_memo.same;
    }
    uint32_t nb = mt_unwind_capture(b, 64, &tb);
    uw_same += same;
    uw_compared++;
    for (int r = 0; r < 2; r++)
        if (na[r] != nb || ta[r] != tb || memcmp(a[r], b, nb * sizeof b[0]) != 0)
            uw_differ++;
    __asm__ __volatile__("" ::: "memory");
}

static int uw_cmp_int(const void *x, const void *y)
{
    uw_pair();
    int a = *(const int *)x, b = *(const int *)y;
    return (a > b) - (a < b);
}

Test(unwind, memo_gives_the_frames_of_a_fresh_walk)
{
    mt_unwind_memo_clear(&uw_memo);
    int v[300];
    for (int i = 0; i < 300; i++)
        v[i] = (i * 7919) % 300;
    qsort(v, 300, sizeof v[0], uw_cmp_int);
    int key = 150;
    cr_expect(ne(ptr, bsearch(&key, v, 300, sizeof v[0], uw_cmp_int), NULL));
    size_t nel = 300;
    cr_expect(ne(ptr, lfind(&key, v, &nel, sizeof v[0], uw_cmp_int), NULL));
    cr_expect(gt(u32, uw_compared, 300), "%u captures compared", uw_compared);
    cr_expect(eq(u32, uw_differ, 0), "%u of %u memo captures differ", uw_differ, uw_compared);
    cr_expect(eq(u32, uw_same, uw_compared), "%u of %u repeats recognised", uw_same, uw_compared);
}
