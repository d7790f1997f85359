/* Offline symbolization: return addresses of a traced process -> function, file:line, with
 * inline chains, after the process is gone. Uses the trace's module map (trace-format.md §6) to
 * pick the module by pc and time, then the module's ELF file on disk through libdw (DWARF,
 * separate debug info found by build id or .gnu_debuglink, else .symtab/.dynsym).
 * Never prints and never fails a lookup: an address it cannot explain still gives one frame
 * (module + offset, or nothing known). Memory is bounded by modules plus distinct addresses.
 *
 * Usage:
 *     struct symbolizer *s = sym_new();
 *     for each RD_ITEM_MODULE item, in file order: sym_module(s, &item.module);
 *     struct sym_frame f[16];
 *     int n = sym_resolve(s, pc, stack_ts_ns, 1, f, 16);   // f[0..n-1], innermost first
 *     if (sym_stale(s)) warn that some files changed since the run;
 *     sym_free(s);
 */
#ifndef MEMTRACE_REPORT_SYMBOLIZE_H
#define MEMTRACE_REPORT_SYMBOLIZE_H

#include <stdint.h>

#include "reader.h"

#ifndef MT_MUST_CHECK
#define MT_MUST_CHECK __attribute__((warn_unused_result))
#endif

struct sym_frame {
    const char *function;   /* demangled name, or NULL when unknown */
    const char *file;       /* source file as DWARF names it (usually absolute), or NULL */
    unsigned line;          /* 0 when unknown */
    unsigned column;        /* 0 when unknown */
    const char *module;     /* module path as recorded, "[vdso]" for the vDSO, or NULL when the
                               pc is in no known module */
    uint64_t module_offset; /* pc - load base (the ELF virtual address); the pc itself when
                               module is NULL */
    int inlined;            /* 1: this frame was inlined into the next (outer) one */
};

struct symbolizer;

/* A new, empty symbolizer. Never NULL (dies through xmalloc when memory runs out). */
struct symbolizer *sym_new(void);

/* Release everything, including every string sym_resolve() handed out. NULL is a no-op. */
void sym_free(struct symbolizer *s);

/* Add one module map entry (an RD_ITEM_MODULE item); feed them all, in file order, before
 * resolving. Copies what it needs: `m` may be reused afterwards. No file is opened here (that
 * happens on the first pc resolved in the module). Returns 0, or -ENOENT for an UNLOAD of an id
 * that is not loaded, or -EINVAL for an unknown action; the map is then unchanged and the caller
 * may warn and go on. */
int sym_module(struct symbolizer *s, const struct rd_module *m) MT_MUST_CHECK;

/* 1 when `pc` lies in libmemtrace.so (a module flagged MTF_MODF_SHIM) as the map stood at ts_ns
 * (module choice as for sym_resolve), else 0. Opens no file. */
int sym_is_shim(struct symbolizer *s, uint64_t pc, uint64_t ts_ns);

/* Resolve one address. `is_return_address` 1 (every recorded frame: the unwinder gives return
 * addresses, trace-format.md §7) looks up pc - 1, so the line is the call's, not the next
 * statement's; 0 for an exact pc (the innermost frame of a precise capture). ts_ns is when the
 * stack was captured (its STACK definition): it chooses among modules that occupied the same
 * addresses at different times (dlclose then dlopen); when no module covering pc was loaded at
 * ts_ns, any module that ever covered it is used (the one loaded last before ts_ns, else the
 * first loaded after).
 * Writes up to `max` (>= 1) frames to `out`, innermost inlined function first, the real
 * (non-inlined) function last; returns the count, always >= 1 when max >= 1 (0 only when
 * max < 1). An unknown pc gives one frame with function NULL and module set, or NULL when no
 * module covers it. When the inline chain is deeper than `max`, the innermost `max` frames are
 * written and the last of them has inlined = 1. A module whose file's build id differs from the
 * recorded one gives module + offset only (see sym_stale). Results are cached per address;
 * strings stay valid until sym_free(). */
int sym_resolve(struct symbolizer *s, uint64_t pc, uint64_t ts_ns, int is_return_address,
                struct sym_frame *out, int max);

/* Number of modules whose file on disk was opened and found not to be the one that was traced
 * (build id differs; without a recorded build id, PT_LOAD segments differ): their frames show
 * module + offset only. Counts modules opened so far, so ask after resolving. */
int sym_stale(const struct symbolizer *s);

#endif
