/* preload/cfi.c: the CFI interpreter on hand-built CIE/FDE bytes and .eh_frame_hdr tables, on
 * malformed and truncated input, and on the runner's own .eh_frame. Every record under test is
 * placed so that it ends exactly at a page followed by an inaccessible page: a read one byte past
 * the span the interpreter was given faults and fails the test.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cfi.h"

/* ---- fixture: two pages, the second PROT_NONE ------------------------------------------------ */

static uint8_t *pages;
static size_t page;

static void guard_setup(void)
{
    page = (size_t)sysconf(_SC_PAGESIZE);
    pages = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(ne(ptr, pages, MAP_FAILED), "map the fixture pages");
    cr_assert(eq(int, mprotect(pages + page, page, PROT_NONE), 0), "protect the guard page");
}

static void guard_teardown(void)
{
    munmap(pages, 2 * page);
}

TestSuite(cfi, .init = guard_setup, .fini = guard_teardown, .timeout = 10);

/* ---- byte builder ------------------------------------------------------------------------------
 */

struct bytes {
    uint8_t b[512];
    size_t n;
};

static void u8(struct bytes *x, unsigned v)
{
    x->b[x->n++] = (uint8_t)v;
}

static void u32(struct bytes *x, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        u8(x, (v >> (8 * i)) & 0xff);
}

static void put(struct bytes *x, const uint8_t *p, size_t n)
{
    memcpy(x->b + x->n, p, n);
    x->n += n;
}

static void patch32(struct bytes *x, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        x->b[at + i] = (uint8_t)((v >> (8 * i)) & 0xff);
}

#define FUNC_OFF 0x800 /* the described function starts this far past the fixture's end */
#define FUNC_LEN 0x40

struct fde_spec {
    const char *aug;          /* CIE augmentation, "zR" normally */
    const uint8_t *cie_instr; /* NULL: def_cfa rsp+8, return address at cfa-8 */
    size_t cie_len;
    const uint8_t *fde_instr;
    size_t fde_len;
};

static const uint8_t std_cie[] = { 0x0c, 0x07, 0x08, 0x90, 0x01 }; /* def_cfa rsp 8; offset ra */

/* CIE + FDE laid out so they end at the guard page; returns the FDE's address, sets *func to the
 * start of the described code (FDE pc_begin, pcrel|sdata4) and *span to the bytes written. */
static const uint8_t *place(const struct fde_spec *s, uintptr_t *func, struct mt_cfi_span *span)
{
    struct bytes x = { .n = 0 };
    const uint8_t *ci = s->cie_instr ? s->cie_instr : std_cie;
    size_t cl = s->cie_instr ? s->cie_len : sizeof std_cie;
    /* CIE */
    u32(&x, 0);
    u32(&x, 0); /* CIE id */
    u8(&x, 1);  /* version */
    put(&x, (const uint8_t *)s->aug, strlen(s->aug) + 1);
    u8(&x, 1);    /* code alignment */
    u8(&x, 0x78); /* data alignment -8 */
    u8(&x, 16);   /* return address column */
    if (s->aug[0] == 'z') {
        u8(&x, 1);    /* augmentation data length */
        u8(&x, 0x1b); /* R: pcrel | sdata4 */
    }
    put(&x, ci, cl);
    patch32(&x, 0, (uint32_t)(x.n - 4));
    /* FDE */
    size_t fde = x.n;
    u32(&x, 0);
    u32(&x, (uint32_t)(x.n - 0)); /* CIE pointer: back to offset 0 from this field */
    size_t pc_field = x.n;
    u32(&x, 0); /* pc_begin, patched below */
    u32(&x, FUNC_LEN);
    if (s->aug[0] == 'z')
        u8(&x, 0);
    put(&x, s->fde_instr, s->fde_len);
    patch32(&x, fde, (uint32_t)(x.n - fde - 4));
    uint8_t *at = pages + page - x.n;
    uintptr_t fn = (uintptr_t)pages + page + FUNC_OFF;
    patch32(&x, pc_field, (uint32_t)(fn - (uintptr_t)(at + pc_field)));
    memcpy(at, x.b, x.n);
    *func = fn;
    span->lo = at;
    span->hi = pages + page;
    return at + fde;
}

static struct mt_cfi_rule rule_at(const struct fde_spec *s, uintptr_t off)
{
    uintptr_t fn;
    struct mt_cfi_span span;
    const uint8_t *fde = place(s, &fn, &span);
    struct mt_cfi_rule r;
    mt_cfi_rule_at(span, fde, fn + off, &r);
    return r;
}

/* push %rbp; mov %rsp,%rbp; ...; a remember/restore pair around an early return at 0x20. */
static const uint8_t prologue[] = {
    0x41,             /* advance 1 */
    0x0e, 0x10,       /* def_cfa_offset 16 */
    0x86, 0x02,       /* offset rbp, cfa-16 */
    0x43,             /* advance 3 */
    0x0d, 0x06,       /* def_cfa_register rbp */
    0x5c,             /* advance 0x1c: 0x20 */
    0x0a,             /* remember_state */
    0x0c, 0x07, 0x08, /* def_cfa rsp 8 (after leave) */
    0x41,             /* advance 1: 0x21 */
    0x0b,             /* restore_state */
    0x2e, 0x10,       /* GNU_args_size 16: ignored */
    0x00,             /* nop */
};

/* ---- rules
 * --------------------------------------------------------------------------------------- */

Test(cfi, entry_rule_is_rsp_plus_8_with_rbp_unchanged)
{
    struct fde_spec s = { "zR", NULL, 0, prologue, sizeof prologue };
    struct mt_cfi_rule r = rule_at(&s, 0);
    cr_assert(eq(u32, r.kind, MT_CFI_STANDARD), "the first instruction has a standard frame");
    cr_assert(eq(u32, r.cfa_rbp, 0), "CFA is rsp-based at entry");
    cr_assert(eq(i32, r.cfa_off, 8), "CFA = rsp + 8 at entry");
    cr_assert(eq(u32, r.rbp_cfa, 0), "rbp is not saved yet");
}

Test(cfi, push_rbp_moves_cfa_and_saves_rbp)
{
    struct fde_spec s = { "zR", NULL, 0, prologue, sizeof prologue };
    struct mt_cfi_rule r = rule_at(&s, 1);
    cr_assert(eq(i32, r.cfa_off, 16), "CFA = rsp + 16 after push");
    cr_assert(eq(u32, r.rbp_cfa, 1), "rbp saved after push");
    cr_assert(eq(i32, r.rbp_off, -16), "rbp at CFA - 16");
}

Test(cfi, frame_pointer_body_uses_rbp)
{
    struct fde_spec s = { "zR", NULL, 0, prologue, sizeof prologue };
    for (uintptr_t off = 4; off < 0x20; off++) {
        struct mt_cfi_rule r = rule_at(&s, off);
        cr_assert(eq(u32, r.cfa_rbp, 1), "CFA is rbp-based at +%lu", (unsigned long)off);
        cr_assert(eq(i32, r.cfa_off, 16), "CFA = rbp + 16 at +%lu", (unsigned long)off);
    }
}

Test(cfi, remember_and_restore_state_bracket_an_epilogue)
{
    struct fde_spec s = { "zR", NULL, 0, prologue, sizeof prologue };
    struct mt_cfi_rule r = rule_at(&s, 0x20);
    cr_assert(eq(u32, r.cfa_rbp, 0), "inside the early epilogue CFA is rsp-based");
    cr_assert(eq(i32, r.cfa_off, 8), "CFA = rsp + 8 after leave");
    r = rule_at(&s, 0x21);
    cr_assert(eq(u32, r.cfa_rbp, 1), "restore_state brings the rbp-based CFA back");
    cr_assert(eq(i32, r.cfa_off, 16), "with its offset");
    cr_assert(eq(u32, r.rbp_cfa, 1), "and the saved rbp");
}

Test(cfi, undefined_return_address_ends_the_stack)
{
    static const uint8_t end[] = { 0x07, 0x10 }; /* undefined rip */
    struct fde_spec s = { "zR", NULL, 0, end, sizeof end };
    cr_assert(eq(u32, rule_at(&s, 0).kind, MT_CFI_END), "_start-style frame is the last one");
}

Test(cfi, restore_returns_a_register_to_the_cie_rule)
{
    static const uint8_t p[] = { 0x41, 0x86, 0x02, 0x41, 0xc6 }; /* offset rbp; restore rbp */
    struct fde_spec s = { "zR", NULL, 0, p, sizeof p };
    cr_assert(eq(u32, rule_at(&s, 1).rbp_cfa, 1), "saved at +1");
    cr_assert(eq(u32, rule_at(&s, 2).rbp_cfa, 0), "restored (unchanged) at +2");
}

struct bad_case {
    const char *what;
    const char *aug;
    uint8_t instr[8];
    size_t len;
    uintptr_t off;
};

static const struct bad_case bad_cases[] = {
    { "CFA expression", "zR", { 0x0f, 0x02, 0x77, 0x08 }, 4, 0 },
    { "CFA in r10", "zR", { 0x0c, 0x0a, 0x00 }, 3, 0 },
    { "rbp in a register", "zR", { 0x09, 0x06, 0x03 }, 3, 0 },
    { "rbp undefined", "zR", { 0x07, 0x06 }, 2, 0 },
    { "rbp expression", "zR", { 0x10, 0x06, 0x01, 0x30 }, 4, 0 },
    { "return address not at CFA-8", "zR", { 0x90, 0x02 }, 2, 0 },
    { "rsp saved", "zR", { 0x87, 0x02 }, 2, 0 },
    { "unknown opcode", "zR", { 0x3f }, 1, 0 },
    { "restore_state without remember", "zR", { 0x0b }, 1, 0 },
    { "signal frame augmentation", "zRS", { 0x00 }, 1, 0 },
    { "pre-z augmentation", "eh", { 0x00 }, 1, 0 },
    { "pc past the FDE", "zR", { 0x00 }, 1, FUNC_LEN },
    { "rbp saved beyond libunwind's limit", "zR", { 0x05, 0x06, 0x80, 0x10 }, 4, 0 },
};

Test(cfi, rejects_rules_the_walker_does_not_model)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        struct fde_spec s = { c->aug, NULL, 0, c->instr, c->len };
        cr_expect(eq(u32, rule_at(&s, c->off).kind, MT_CFI_UNSUPPORTED), "%s: unsupported",
                  c->what);
    }
}

Test(cfi, truncated_records_are_rejected_without_reading_past_them)
{
    struct fde_spec s = { "zR", NULL, 0, prologue, sizeof prologue };
    uintptr_t fn;
    struct mt_cfi_span span;
    const uint8_t *fde = place(&s, &fn, &span);
    size_t total = (size_t)(span.hi - span.lo), fde_off = (size_t)(fde - span.lo);
    uint8_t copy[512];
    memcpy(copy, span.lo, total);
    /* Keep the first k bytes, ending at the guard page: lengths now point past the span. */
    for (size_t k = fde_off + 1; k < total; k++) {
        uint8_t *at = pages + page - k;
        memcpy(at, copy, k);
        struct mt_cfi_span cut = { at, pages + page };
        struct mt_cfi_rule r;
        cr_expect(eq(u32, mt_cfi_rule_at(cut, at + fde_off, fn + 0x21, &r), MT_CFI_UNSUPPORTED),
                  "cut at %zu of %zu bytes", k, total);
    }
}

Test(cfi, random_bytes_never_fault)
{
    uint64_t seed = 0x2545f4914f6cdd1dULL;
    for (int round = 0; round < 20000; round++) {
        size_t n = 8 + (size_t)(round % 120);
        uint8_t *at = pages + page - n;
        for (size_t i = 0; i < n; i++) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            at[i] = (uint8_t)seed;
        }
        if (round & 1) { /* a plausible length and CIE pointer, so parsing gets further */
            uint32_t len = (uint32_t)(n - 4), cie = 8;
            memcpy(at, &len, 4);
            memcpy(at + 4, &cie, 4);
        }
        struct mt_cfi_span span = { at - (round & 8), pages + page };
        struct mt_cfi_rule r;
        uint32_t k = mt_cfi_rule_at(span, at, (uintptr_t)seed, &r);
        cr_assert(k >= MT_CFI_UNSUPPORTED && k <= MT_CFI_END, "a defined result");
        mt_cfi_hdr_lookup((struct mt_cfi_span){ at, pages + page }, (uintptr_t)seed);
    }
}

Test(cfi, long_leb128_is_rejected)
{
    static const uint8_t p[] = { 0x0e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    struct fde_spec s = { "zR", NULL, 0, p, sizeof p };
    cr_assert(eq(u32, rule_at(&s, 0).kind, MT_CFI_UNSUPPORTED), "unterminated LEB128");
}

/* ---- .eh_frame_hdr ----------------------------------------------------------------------------
 */

/* version 1, eh_frame_ptr pcrel|sdata4, count udata4, table datarel|sdata4; entries (loc, fde)
 * relative to the header, ending at the guard page. */
static struct mt_cfi_span place_hdr(const int32_t (*entries)[2], uint32_t count, uint32_t claimed,
                                    unsigned version)
{
    struct bytes x = { .n = 0 };
    u8(&x, version);
    u8(&x, 0x1b);
    u8(&x, 0x03);
    u8(&x, 0x3b);
    u32(&x, 0);
    u32(&x, claimed);
    for (uint32_t i = 0; i < count; i++) {
        u32(&x, (uint32_t)entries[i][0]);
        u32(&x, (uint32_t)entries[i][1]);
    }
    uint8_t *at = pages + page - x.n;
    memcpy(at, x.b, x.n);
    return (struct mt_cfi_span){ at, pages + page };
}

Test(cfi, hdr_lookup_finds_the_last_entry_at_or_below_pc)
{
    static const int32_t e[3][2] = { { 0x100, -0x10 }, { 0x200, -0x20 }, { 0x300, -0x30 } };
    struct mt_cfi_span h = place_hdr(e, 3, 3, 1);
    uintptr_t base = (uintptr_t)h.lo;
    cr_assert(eq(ptr, (void *)mt_cfi_hdr_lookup(h, base + 0xff), NULL), "below the first entry");
    cr_assert(eq(ptr, (void *)mt_cfi_hdr_lookup(h, base + 0x100), (void *)(base - 0x10)), "first");
    cr_assert(eq(ptr, (void *)mt_cfi_hdr_lookup(h, base + 0x2ff), (void *)(base - 0x20)), "second");
    cr_assert(eq(ptr, (void *)mt_cfi_hdr_lookup(h, base + 0x5000), (void *)(base - 0x30)), "last");
}

Test(cfi, hdr_with_bad_version_or_oversized_count_is_rejected)
{
    static const int32_t e[2][2] = { { 0x100, -0x10 }, { 0x200, -0x20 } };
    struct mt_cfi_span h = place_hdr(e, 2, 2, 2);
    cr_assert(eq(ptr, (void *)mt_cfi_hdr_lookup(h, (uintptr_t)h.lo + 0x150), NULL), "version 2");
    h = place_hdr(e, 2, 3, 1);
    cr_assert(eq(ptr, (void *)mt_cfi_hdr_lookup(h, (uintptr_t)h.lo + 0x150), NULL),
              "a count larger than the section");
    h = place_hdr(e, 2, 0, 1);
    cr_assert(eq(ptr, (void *)mt_cfi_hdr_lookup(h, (uintptr_t)h.lo + 0x150), NULL), "no entries");
}

/* ---- the runner's own CFI ----------------------------------------------------------------------
 */

struct own {
    uintptr_t pc;
    struct mt_cfi_rule rule;
    int found;
};

static int own_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct own *o = arg;
    const ElfW(Phdr) *hdr = NULL, *text = NULL, *seg = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && o->pc >= lo && o->pc < lo + ph->p_memsz)
            text = ph;
        if (ph->p_type == PT_GNU_EH_FRAME)
            hdr = ph;
    }
    if (text == NULL || hdr == NULL)
        return 0;
    const uint8_t *h = (const uint8_t *)(info->dlpi_addr + hdr->p_vaddr);
    const uint8_t *fde = mt_cfi_hdr_lookup((struct mt_cfi_span){ h, h + hdr->p_memsz }, o->pc);
    for (int i = 0; fde != NULL && i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (uintptr_t)fde >= lo && (uintptr_t)fde < lo + ph->p_memsz)
            seg = ph;
    }
    if (seg == NULL)
        return 1;
    const uint8_t *lo = (const uint8_t *)(info->dlpi_addr + seg->p_vaddr);
    mt_cfi_rule_at((struct mt_cfi_span){ lo, lo + seg->p_memsz }, fde, o->pc, &o->rule);
    o->found = 1;
    return 1;
}

Test(cfi, own_functions_start_with_cfa_rsp_plus_8)
{
    /* psABI: at a function's first instruction the return address is at (%rsp), so CFA = rsp+8
     * in every FDE of every object; check a few entry points of the runner and of libc. */
    const uintptr_t pcs[] = { (uintptr_t)&own_cb, (uintptr_t)&mt_cfi_rule_at,
                              (uintptr_t)&mt_cfi_hdr_lookup, (uintptr_t)&dl_iterate_phdr };
    for (size_t i = 0; i < sizeof pcs / sizeof pcs[0]; i++) {
        struct own o = { .pc = pcs[i] };
        dl_iterate_phdr(own_cb, &o);
        cr_assert(o.found, "an FDE for entry %zu", i);
        cr_expect(eq(u32, o.rule.kind, MT_CFI_STANDARD), "entry %zu: standard", i);
        cr_expect(eq(u32, o.rule.cfa_rbp, 0), "entry %zu: rsp-based", i);
        cr_expect(eq(i32, o.rule.cfa_off, 8), "entry %zu: CFA = rsp + 8", i);
    }
}
