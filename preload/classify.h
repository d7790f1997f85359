/* The class of a call before it is made (trace-format.md §7.2): the kind's default, unless a
 * MEMTRACE_RULES rule says otherwise. Rules that look at the stack are evaluated once per
 * distinct stack (the result is cached on the stack node); the stack is then captured before
 * the real call, and the caller passes that node on to the recording (same frames).
 * Runs inside hooks: no malloc, no locks, no stdio.
 */
#ifndef MEMTRACE_PRELOAD_CLASSIFY_H
#define MEMTRACE_PRELOAD_CLASSIFY_H

#include <stdint.h>

#include "mt.h"

struct mt_stack_node;

/* Load MEMTRACE_RULES (mt_config.rules) at start-up; a malformed spec is fatal with one line. */
void mt_classify_init(void);

extern int mt_classify_active; /* rules are loaded */

/* The class of a call of `kind` asking for `size` bytes, whose default is default_cls. When the
 * rules need the stack, *node (MT_TBUF_CAPTURE on entry) is set to the captured stack. Guard in
 * MT_IN_HOOK state. */
uint32_t mt_classify_slow(unsigned kind, uint64_t size, uint32_t default_cls,
                          struct mt_stack_node **node);

static inline uint32_t mt_classify(unsigned kind, uint64_t size, uint32_t default_cls,
                                   struct mt_stack_node **node)
{
    if (MT_LIKELY(!mt_classify_active))
        return default_cls;
    return mt_classify_slow(kind, size, default_cls, node);
}

#endif
