/* CFI interpreter for the stack walker (unwind.c). Reads .eh_frame_hdr, CIEs and FDEs in place,
 * through a cursor that refuses any byte outside the caller's span, and runs the CFA program to
 * the requested pc (DWARF 5 section 6.4; LSB "Exception Frames" for .eh_frame and its pointer
 * encodings). It models only what libunwind's fast trace models (x86_64 Gtrace.c and
 * Gstash_frame.c): everything else comes out MT_CFI_UNSUPPORTED so the caller uses libunwind.
 * Never allocates, never calls out, keeps no state.
 */
#include "cfi.h"

#include <string.h>

/* DWARF register numbers on x86_64 (psABI figure 3.36). */
#define REG_RBP 6
#define REG_RSP 7
#define REG_RA  16
#define NREGS   17 /* rules kept for 0..16; higher registers only matter when they are odd */

#define REMEMBER_MAX 8 /* DW_CFA_remember_state depth; GCC nests at most one or two */

/* libunwind's fast-trace limits (Gstash_frame.c): a frame outside them is not "standard" there. */
#define CFA_OFF_LIMIT (1L << 28)
#define RBP_OFF_LIMIT (1L << 14)

/* Pointer encodings (LSB 5.0, "DWARF Exception Header Encoding"). */
#define PE_OMIT     0xff
#define PE_ABSPTR   0x00
#define PE_ULEB128  0x01
#define PE_UDATA2   0x02
#define PE_UDATA4   0x03
#define PE_UDATA8   0x04
#define PE_SLEB128  0x09
#define PE_SDATA2   0x0a
#define PE_SDATA4   0x0b
#define PE_SDATA8   0x0c
#define PE_PCREL    0x10
#define PE_DATAREL  0x30
#define PE_INDIRECT 0x80

enum rule { R_SAME, R_UNDEF, R_OFFSET, R_OTHER };

struct row {
    uint32_t cfa_reg;
    int64_t cfa_off;
    int cfa_expr;        /* DW_CFA_def_cfa_expression in effect */
    uint8_t rule[NREGS]; /* enum rule */
    int64_t off[NREGS];  /* R_OFFSET: saved at CFA + off */
};

struct cur {
    const uint8_t *p, *end;
    int bad; /* set by any read past end; every later read returns 0 */
};

static int take(struct cur *c, size_t n, const uint8_t **at)
{
    if (c->bad || (size_t)(c->end - c->p) < n) {
        c->bad = 1;
        return -1;
    }
    *at = c->p;
    c->p += n;
    return 0;
}

static uint64_t rd_u(struct cur *c, size_t n)
{
    const uint8_t *at;
    uint64_t v = 0;
    if (take(c, n, &at) != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)at[i] << (8 * i); /* x86_64 is little-endian; so is its CFI */
    return v;
}

static int64_t rd_s(struct cur *c, size_t n)
{
    uint64_t v = rd_u(c, n);
    unsigned shift = (unsigned)(64 - 8 * n);
    return shift == 0 ? (int64_t)v : (int64_t)(v << shift) >> shift;
}

static uint64_t rd_uleb(struct cur *c)
{
    uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
        uint64_t b = rd_u(c, 1);
        if (c->bad)
            return 0;
        if (shift < 64)
            v |= (b & 0x7f) << shift;
        else if ((b & 0x7f) != 0) {
            c->bad = 1; /* more than 64 significant bits */
            return 0;
        }
        if (!(b & 0x80))
            return v;
        if (shift > 70) {
            c->bad = 1; /* an endless run of continuation bytes */
            return 0;
        }
    }
}

static int64_t rd_sleb(struct cur *c)
{
    uint64_t v = 0;
    unsigned shift = 0;
    uint64_t b;
    do {
        b = rd_u(c, 1);
        if (c->bad)
            return 0;
        if (shift < 64)
            v |= (b & 0x7f) << shift;
        shift += 7;
        if (shift > 77) {
            c->bad = 1;
            return 0;
        }
    } while (b & 0x80);
    if (shift < 64 && (b & 0x40))
        v |= ~(uint64_t)0 << shift;
    return (int64_t)v;
}

/* An encoded pointer. `datarel` is the base for DW_EH_PE_datarel (the .eh_frame_hdr start), 0
 * where that application is not allowed. Indirect pointers are decoded but not followed: *out is
 * then the address of the slot, and the caller must not use it as a code address. */
static int rd_enc(struct cur *c, uint32_t enc, uintptr_t datarel, uint64_t *out)
{
    if (enc == PE_OMIT)
        return -1;
    uintptr_t field = (uintptr_t)c->p;
    uint64_t v;
    switch (enc & 0x0f) {
    case PE_ABSPTR:
    case PE_UDATA8:
        v = rd_u(c, 8);
        break;
    case PE_ULEB128:
        v = rd_uleb(c);
        break;
    case PE_UDATA2:
        v = rd_u(c, 2);
        break;
    case PE_UDATA4:
        v = rd_u(c, 4);
        break;
    case PE_SLEB128:
        v = (uint64_t)rd_sleb(c);
        break;
    case PE_SDATA2:
        v = (uint64_t)rd_s(c, 2);
        break;
    case PE_SDATA4:
        v = (uint64_t)rd_s(c, 4);
        break;
    case PE_SDATA8:
        v = rd_u(c, 8);
        break;
    default:
        return -1;
    }
    if (c->bad)
        return -1;
    switch (enc & 0x70) {
    case 0:
        break;
    case PE_PCREL:
        v += field;
        break;
    case PE_DATAREL:
        if (datarel == 0)
            return -1;
        v += datarel;
        break;
    default:
        return -1; /* textrel, funcrel, aligned: never emitted for x86_64 .eh_frame */
    }
    *out = v;
    return 0;
}

/* ---- .eh_frame_hdr -----------------------------------------------------------------------------
 */

#define HDR_VERSION     1
#define HDR_TABLE_ENC   (PE_DATAREL | PE_SDATA4)
#define HDR_FIXED_BYTES 4

const uint8_t *mt_cfi_hdr_eh_frame(struct mt_cfi_span hdr_span)
{
    struct cur c = { hdr_span.lo, hdr_span.hi, 0 };
    uint32_t version = (uint32_t)rd_u(&c, 1);
    uint32_t ptr_enc = (uint32_t)rd_u(&c, 1);
    rd_u(&c, 2); /* count and table encodings */
    uint64_t eh_frame;
    if (c.bad || version != HDR_VERSION || (ptr_enc & PE_INDIRECT) ||
        rd_enc(&c, ptr_enc, (uintptr_t)hdr_span.lo, &eh_frame) != 0)
        return NULL;
    return (const uint8_t *)(uintptr_t)eh_frame;
}

const uint8_t *mt_cfi_hdr_lookup(struct mt_cfi_span hdr_span, uintptr_t pc)
{
    uintptr_t base = (uintptr_t)hdr_span.lo;
    struct cur c = { hdr_span.lo, hdr_span.hi, 0 };
    uint32_t version = (uint32_t)rd_u(&c, 1);
    uint32_t ptr_enc = (uint32_t)rd_u(&c, 1);
    uint32_t count_enc = (uint32_t)rd_u(&c, 1);
    uint32_t table_enc = (uint32_t)rd_u(&c, 1);
    uint64_t ignored, count;
    if (c.bad || version != HDR_VERSION || table_enc != HDR_TABLE_ENC ||
        (count_enc & PE_INDIRECT) || rd_enc(&c, ptr_enc, base, &ignored) != 0 ||
        rd_enc(&c, count_enc, base, &count) != 0)
        return NULL;
    size_t room = (size_t)(c.end - c.p) / 8;
    if (count == 0 || count > room)
        return NULL; /* the table must lie wholly inside the section */
    const uint8_t *table = c.p;
    /* Entries are sorted by initial location (the linker sorts them: ld's --eh-frame-hdr);
     * find the last one at or below pc. */
    size_t lo = 0, hi = (size_t)count;
    int64_t rel = (int64_t)(pc - base);
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        int32_t loc;
        memcpy(&loc, table + mid * 8, 4);
        if ((int64_t)loc <= rel)
            lo = mid;
        else
            hi = mid;
    }
    int32_t loc, fde;
    memcpy(&loc, table + lo * 8, 4);
    memcpy(&fde, table + lo * 8 + 4, 4);
    if ((int64_t)loc > rel)
        return NULL;
    return (const uint8_t *)(base + (uintptr_t)(intptr_t)fde);
}

/* ---- CIE and FDE -------------------------------------------------------------------------------
 */

struct cie {
    uint64_t code_align;
    int64_t data_align;
    uint32_t fde_enc;
    int has_z; /* 'z': FDEs carry an augmentation length */
    struct cur instr;
};

/* A length-prefixed record at p: its body (after the length) as a cursor. */
static int record(struct mt_cfi_span span, const uint8_t *p, struct cur *body)
{
    if (p < span.lo || p >= span.hi)
        return -1;
    struct cur c = { p, span.hi, 0 };
    uint64_t len = rd_u(&c, 4);
    if (len == 0xffffffffu)
        len = rd_u(&c, 8); /* 64-bit DWARF */
    if (c.bad || len == 0 || len > (uint64_t)(c.end - c.p))
        return -1; /* 0 is the .eh_frame terminator, not a record */
    body->p = c.p;
    body->end = c.p + len;
    body->bad = 0;
    return 0;
}

static int parse_cie(struct mt_cfi_span span, const uint8_t *p, struct cie *out)
{
    struct cur c;
    if (record(span, p, &c) != 0)
        return -1;
    if (rd_u(&c, 4) != 0)
        return -1; /* CIE id is 0 in .eh_frame (a 64-bit CIE would not be found from sdata4) */
    uint32_t version = (uint32_t)rd_u(&c, 1);
    if (version != 1 && version != 3)
        return -1;
    const uint8_t *aug = c.p;
    while (rd_u(&c, 1) != 0)
        if (c.bad)
            return -1;
    out->code_align = rd_uleb(&c);
    out->data_align = rd_sleb(&c);
    uint64_t ra = version == 1 ? rd_u(&c, 1) : rd_uleb(&c);
    if (c.bad || ra != REG_RA || out->code_align == 0)
        return -1;
    out->fde_enc = PE_ABSPTR;
    out->has_z = aug[0] == 'z';
    if (aug[0] != '\0' && !out->has_z)
        return -1; /* "eh" and other pre-'z' forms: cannot be skipped safely */
    if (out->has_z) {
        uint64_t len = rd_uleb(&c);
        if (c.bad || len > (uint64_t)(c.end - c.p))
            return -1;
        struct cur a = { c.p, c.p + len, 0 };
        c.p += len;
        for (const uint8_t *q = aug + 1; *q; q++) {
            uint64_t ignored;
            switch (*q) {
            case 'L': /* LSDA encoding: the FDE's own augmentation data, skipped whole */
                rd_u(&a, 1);
                break;
            case 'R':
                out->fde_enc = (uint32_t)rd_u(&a, 1);
                break;
            case 'P': { /* personality routine: decoded for its length only */
                uint32_t enc = (uint32_t)rd_u(&a, 1);
                if (a.bad || rd_enc(&a, enc & ~(uint32_t)PE_INDIRECT, 0, &ignored) != 0)
                    return -1;
                break;
            }
            default:
                return -1; /* 'S' (signal frame), 'B', 'G' or unknown: not a plain call frame */
            }
            if (a.bad)
                return -1;
        }
    }
    if (c.bad)
        return -1;
    out->instr = c;
    return 0;
}

/* ---- the CFA program ---------------------------------------------------------------------------
 */

#define CFA_ADVANCE_LOC    0x40
#define CFA_OFFSET         0x80
#define CFA_RESTORE        0xc0
#define CFA_NOP            0x00
#define CFA_SET_LOC        0x01
#define CFA_ADVANCE_LOC1   0x02
#define CFA_ADVANCE_LOC2   0x03
#define CFA_ADVANCE_LOC4   0x04
#define CFA_OFFSET_EXT     0x05
#define CFA_RESTORE_EXT    0x06
#define CFA_UNDEFINED      0x07
#define CFA_SAME_VALUE     0x08
#define CFA_REGISTER       0x09
#define CFA_REMEMBER_STATE 0x0a
#define CFA_RESTORE_STATE  0x0b
#define CFA_DEF_CFA        0x0c
#define CFA_DEF_CFA_REG    0x0d
#define CFA_DEF_CFA_OFF    0x0e
#define CFA_DEF_CFA_EXPR   0x0f
#define CFA_EXPRESSION     0x10
#define CFA_OFFSET_EXT_SF  0x11
#define CFA_DEF_CFA_SF     0x12
#define CFA_DEF_CFA_OFF_SF 0x13
#define CFA_VAL_OFFSET     0x14
#define CFA_VAL_OFFSET_SF  0x15
#define CFA_VAL_EXPRESSION 0x16
#define CFA_GNU_ARGS_SIZE  0x2e
#define CFA_GNU_NEG_OFFSET 0x2f

/* A factored offset times the data alignment. Wraps rather than overflowing on malformed input:
 * the result is then rejected by the limits in mt_cfi_rule_at or bounds-checked by the walker. */
static int64_t scaled(uint64_t v, int64_t align)
{
    return (int64_t)(v * (uint64_t)align);
}

struct prog {
    struct row row;
    const struct row *initial; /* the CIE's row, for DW_CFA_restore; NULL while running the CIE */
    struct row stack[REMEMBER_MAX];
    int depth;
    int odd; /* a rule the walker does not model was set for some register at some point */
    uint64_t loc;
};

static void set_rule(struct prog *s, uint64_t reg, enum rule r, int64_t off)
{
    if (reg >= NREGS) {
        if (r != R_SAME && r != R_UNDEF && r != R_OFFSET)
            s->odd = 1; /* a vector register computed by an expression: not modelled */
        return;
    }
    s->row.rule[reg] = (uint8_t)r;
    s->row.off[reg] = off;
}

static void restore_rule(struct prog *s, uint64_t reg)
{
    if (s->initial == NULL) {
        s->odd = 1; /* DW_CFA_restore inside a CIE has nothing to restore to */
        return;
    }
    if (reg < NREGS) {
        s->row.rule[reg] = s->initial->rule[reg];
        s->row.off[reg] = s->initial->off[reg];
    }
}

/* Run instructions until the end of `c` or until the location passes `pc`. 0, or -1 when the
 * program is malformed or uses something not modelled. */
static int run(struct prog *s, struct cur *c, const struct cie *cie, uintptr_t pc)
{
    while (c->p < c->end) {
        uint32_t op = (uint32_t)rd_u(c, 1);
        uint64_t reg = 0, delta = 0;
        int64_t soff;
        int advance = 0;
        switch (op & 0xc0) {
        case CFA_ADVANCE_LOC:
            delta = (uint64_t)(op & 0x3f) * cie->code_align;
            advance = 1;
            break;
        case CFA_OFFSET:
            soff = scaled(rd_uleb(c), cie->data_align);
            set_rule(s, op & 0x3f, R_OFFSET, soff);
            break;
        case CFA_RESTORE:
            restore_rule(s, op & 0x3f);
            break;
        default:
            switch (op) {
            case CFA_NOP:
                break;
            case CFA_SET_LOC: {
                uint64_t to;
                if (s->initial == NULL || rd_enc(c, cie->fde_enc, 0, &to) != 0 ||
                    (cie->fde_enc & PE_INDIRECT) || to < s->loc)
                    return -1;
                if (to > pc)
                    return 0;
                s->loc = to;
                break;
            }
            case CFA_ADVANCE_LOC1:
                delta = rd_u(c, 1) * cie->code_align;
                advance = 1;
                break;
            case CFA_ADVANCE_LOC2:
                delta = rd_u(c, 2) * cie->code_align;
                advance = 1;
                break;
            case CFA_ADVANCE_LOC4:
                delta = rd_u(c, 4) * cie->code_align;
                advance = 1;
                break;
            case CFA_OFFSET_EXT:
                reg = rd_uleb(c);
                soff = scaled(rd_uleb(c), cie->data_align);
                set_rule(s, reg, R_OFFSET, soff);
                break;
            case CFA_OFFSET_EXT_SF:
                reg = rd_uleb(c);
                soff = scaled((uint64_t)rd_sleb(c), cie->data_align);
                set_rule(s, reg, R_OFFSET, soff);
                break;
            case CFA_GNU_NEG_OFFSET:
                reg = rd_uleb(c);
                soff = scaled(0 - rd_uleb(c), cie->data_align);
                set_rule(s, reg, R_OFFSET, soff);
                break;
            case CFA_RESTORE_EXT:
                restore_rule(s, rd_uleb(c));
                break;
            case CFA_UNDEFINED:
                set_rule(s, rd_uleb(c), R_UNDEF, 0);
                break;
            case CFA_SAME_VALUE:
                set_rule(s, rd_uleb(c), R_SAME, 0);
                break;
            case CFA_REGISTER:
                reg = rd_uleb(c);
                rd_uleb(c);
                set_rule(s, reg, R_OTHER, 0);
                break;
            case CFA_VAL_OFFSET:
                reg = rd_uleb(c);
                rd_uleb(c);
                set_rule(s, reg, R_OTHER, 0);
                break;
            case CFA_VAL_OFFSET_SF:
                reg = rd_uleb(c);
                rd_sleb(c);
                set_rule(s, reg, R_OTHER, 0);
                break;
            case CFA_EXPRESSION:
            case CFA_VAL_EXPRESSION: {
                reg = rd_uleb(c);
                uint64_t len = rd_uleb(c);
                const uint8_t *skip;
                if (c->bad || len > (uint64_t)(c->end - c->p) || take(c, (size_t)len, &skip))
                    return -1;
                set_rule(s, reg, R_OTHER, 0);
                if (reg < NREGS)
                    s->odd = 1; /* evaluating it would need a DWARF stack machine */
                break;
            }
            case CFA_REMEMBER_STATE:
                if (s->depth == REMEMBER_MAX)
                    return -1;
                s->stack[s->depth++] = s->row;
                break;
            case CFA_RESTORE_STATE:
                if (s->depth == 0)
                    return -1;
                s->row =
                    s->stack[--s->depth]; /* the CFA rule is part of the row (GCC, libunwind) */
                break;
            case CFA_DEF_CFA:
                s->row.cfa_reg = (uint32_t)rd_uleb(c);
                s->row.cfa_off = (int64_t)rd_uleb(c);
                s->row.cfa_expr = 0;
                break;
            case CFA_DEF_CFA_SF:
                s->row.cfa_reg = (uint32_t)rd_uleb(c);
                s->row.cfa_off = scaled((uint64_t)rd_sleb(c), cie->data_align);
                s->row.cfa_expr = 0;
                break;
            case CFA_DEF_CFA_REG:
                if (s->row.cfa_expr)
                    return -1; /* no offset to keep */
                s->row.cfa_reg = (uint32_t)rd_uleb(c);
                break;
            case CFA_DEF_CFA_OFF:
                if (s->row.cfa_expr)
                    return -1;
                s->row.cfa_off = (int64_t)rd_uleb(c);
                break;
            case CFA_DEF_CFA_OFF_SF:
                if (s->row.cfa_expr)
                    return -1;
                s->row.cfa_off = scaled((uint64_t)rd_sleb(c), cie->data_align);
                break;
            case CFA_DEF_CFA_EXPR: {
                uint64_t len = rd_uleb(c);
                const uint8_t *skip;
                if (c->bad || len > (uint64_t)(c->end - c->p) || take(c, (size_t)len, &skip))
                    return -1;
                s->row.cfa_expr = 1;
                break;
            }
            case CFA_GNU_ARGS_SIZE:
                rd_uleb(c);
                break;
            default:
                return -1; /* unknown or vendor opcode: its operand length is unknown too */
            }
        }
        if (c->bad)
            return -1;
        if (advance) {
            if (s->initial == NULL)
                return -1; /* a CIE that advances: not something compilers emit */
            uint64_t to = s->loc + delta;
            if (to < s->loc)
                return -1;
            if (to > pc)
                return 0; /* the next row starts after pc: the current row is pc's */
            s->loc = to;
        }
    }
    return 0;
}

static uint32_t unsupported(struct mt_cfi_rule *out)
{
    memset(out, 0, sizeof *out);
    out->kind = MT_CFI_UNSUPPORTED;
    return out->kind;
}

/* |v| < lim, without the overflow of negating INT64_MIN. */
static int within(int64_t v, int64_t lim)
{
    return v > -lim && v < lim;
}

uint32_t mt_cfi_rule_at(struct mt_cfi_span span, const uint8_t *fde, uintptr_t pc,
                        struct mt_cfi_rule *out)
{
    struct cur c;
    if (record(span, fde, &c) != 0)
        return unsupported(out);
    const uint8_t *id_field = c.p;
    uint64_t id = rd_u(&c, 4);
    if (c.bad || id == 0 || id > (uint64_t)(id_field - span.lo))
        return unsupported(out); /* a CIE, or a CIE pointer leaving the span */
    struct cie cie;
    if (parse_cie(span, id_field - id, &cie) != 0)
        return unsupported(out);
    if (cie.fde_enc & PE_INDIRECT)
        return unsupported(out);
    uint64_t start, range;
    if (rd_enc(&c, cie.fde_enc, 0, &start) != 0 || rd_enc(&c, cie.fde_enc & 0x0f, 0, &range) != 0)
        return unsupported(out);
    if (pc < start || pc - start >= range)
        return unsupported(out); /* the table pointed at the nearest FDE below, not ours */
    if (cie.has_z) {
        uint64_t len = rd_uleb(&c);
        const uint8_t *skip;
        if (c.bad || len > (uint64_t)(c.end - c.p) || take(&c, (size_t)len, &skip))
            return unsupported(out);
    }

    static const struct row empty; /* every register "same value", CFA undefined (reg 0, off 0) */
    struct prog s;
    s.row = empty;
    s.initial = NULL;
    s.depth = 0;
    s.odd = 0;
    s.loc = start;
    struct cur ci = cie.instr;
    if (run(&s, &ci, &cie, pc) != 0)
        return unsupported(out);
    struct row initial = s.row;
    s.initial = &initial;
    s.depth = 0;
    if (run(&s, &c, &cie, pc) != 0 || s.odd || s.row.cfa_expr)
        return unsupported(out);

    /* Reduce the row (Gstash_frame.c's "standard frame", minus what we send to libunwind). */
    const struct row *r = &s.row;
    if ((r->cfa_reg != REG_RSP && r->cfa_reg != REG_RBP) || !within(r->cfa_off, CFA_OFF_LIMIT))
        return unsupported(out);
    if (r->rule[REG_RSP] != R_SAME)
        return unsupported(out);
    memset(out, 0, sizeof *out);
    out->cfa_rbp = r->cfa_reg == REG_RBP;
    out->cfa_off = (int32_t)r->cfa_off;
    if (r->rule[REG_RA] == R_UNDEF) {
        out->kind = MT_CFI_END; /* _start, clone: libunwind's unw_step returns 0 here */
        return out->kind;
    }
    if (r->rule[REG_RA] != R_OFFSET || r->off[REG_RA] != -8)
        return unsupported(out);
    if (r->rule[REG_RBP] == R_OFFSET) {
        if (!within(r->off[REG_RBP], RBP_OFF_LIMIT) || (r->off[REG_RBP] & 7) != 0)
            return unsupported(out);
        out->rbp_cfa = 1;
        out->rbp_off = (int32_t)r->off[REG_RBP];
    } else if (r->rule[REG_RBP] != R_SAME) {
        return unsupported(out); /* undefined rbp ends the stack in libunwind: let it decide */
    }
    out->kind = MT_CFI_STANDARD;
    return out->kind;
}
