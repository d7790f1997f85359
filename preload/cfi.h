/* x86_64 call-frame information (.eh_frame / .eh_frame_hdr) reduced to what a stack walk needs:
 * for one pc, how to find the caller's CFA, return address and rbp. Pure functions over byte
 * ranges: every read is bounds-checked against the range the caller vouches for, malformed or
 * truncated input is rejected (MT_CFI_UNSUPPORTED), never read past. No allocation, no system
 * calls, no global state: safe inside hooks and signal handlers. docs/unwinding.md has the rules.
 */
#ifndef MEMTRACE_PRELOAD_CFI_H
#define MEMTRACE_PRELOAD_CFI_H

#include <stddef.h>
#include <stdint.h>

#define MT_CFI_UNSUPPORTED 1 /* anything the walker does not model: use the reference unwinder */
#define MT_CFI_STANDARD    2 /* CFA = rsp|rbp + cfa_off, return address at CFA - 8 */
#define MT_CFI_END         3 /* return address undefined: the outermost frame (_start, clone) */

struct mt_cfi_rule {
    uint32_t kind;    /* MT_CFI_* */
    uint32_t cfa_rbp; /* 1: CFA = rbp + cfa_off; 0: CFA = rsp + cfa_off */
    uint32_t rbp_cfa; /* 1: the caller's rbp is saved at CFA + rbp_off; 0: rbp is unchanged */
    int32_t cfa_off;  /* |cfa_off| < 2^28 (libunwind's fast-trace limit) */
    int32_t rbp_off;  /* |rbp_off| < 2^14 and a multiple of 8 (same) */
};

/* Readable bytes [lo, hi) that contain the CFI being parsed. */
struct mt_cfi_span {
    const uint8_t *lo, *hi;
};

/* Find the FDE covering `pc` through a .eh_frame_hdr binary-search table. hdr is the section's
 * address and `hdr_span` bounds its bytes; the table must use the datarel|sdata4 encoding that
 * every toolchain emits. Returns the FDE's address (not yet validated: mt_cfi_rule_at checks it
 * against its own span), or NULL when there is no table, no entry at or below pc, or the header is
 * malformed. */
const uint8_t *mt_cfi_hdr_lookup(struct mt_cfi_span hdr_span, uintptr_t pc);

/* The eh_frame_ptr field of a .eh_frame_hdr (where .eh_frame starts), or NULL if malformed. */
const uint8_t *mt_cfi_hdr_eh_frame(struct mt_cfi_span hdr_span);

/* Interpret the FDE at `fde` (and its CIE) up to `pc` and reduce the row to *out. `span` bounds
 * every byte of the FDE, its CIE and their instructions. `pc` must lie in the FDE's range, else
 * the result is MT_CFI_UNSUPPORTED. For a return address pass the address minus one (the call),
 * for the interrupted pc of the first frame the exact pc. Always fills *out; returns out->kind. */
uint32_t mt_cfi_rule_at(struct mt_cfi_span span, const uint8_t *fde, uintptr_t pc,
                        struct mt_cfi_rule *out);

#endif
