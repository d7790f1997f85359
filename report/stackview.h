/* Stacks as people read them: a recorded stack (return addresses) symbolized into display
 * frames, with the shim's frames and the allocator entry itself (malloc, operator new, ...)
 * hidden, inlined frames expanded, and module + offset when nothing better is known. Symbolizes
 * only the stacks asked for, once each (cached by stack id): never per event.
 */
#ifndef MEMTRACE_REPORT_STACKVIEW_H
#define MEMTRACE_REPORT_STACKVIEW_H

#include <stdint.h>

#include "aggregate.h"
#include "symbolize.h"

struct sv_frame {
    const char *function; /* demangled, or NULL when unknown */
    const char *file;     /* source file, or NULL */
    unsigned line;        /* 0 when unknown */
    const char *module;   /* module path, or NULL when no module covers the pc */
    uint64_t module_offset;
    uint64_t pc; /* the recorded return address */
    int inlined; /* 1: inlined into the next frame */
};

struct sv_stack {
    uint32_t id;
    struct sv_frame *f; /* innermost first */
    int n;
    int defined;   /* the trace defined this stack id */
    int truncated; /* deeper than the recorded depth: outer frames are missing */
};

struct stackview;

/* `sym` and `agg` must outlive the view. */
struct stackview *sv_new(struct symbolizer *sym, const struct agg *agg);
void sv_free(struct stackview *v);

/* The display stack of `id` (0: no stack, an empty stack). Valid until sv_free(). */
const struct sv_stack *sv_get(struct stackview *v, uint32_t id);

/* The last path component of a module path ("libc.so.6"), or "?" for NULL. */
const char *sv_basename(const char *path);

#endif
