/* Stack deduplication: each distinct sequence of return addresses gets one id, process-wide.
 * The table is a chained hash whose buckets and nodes live in mmap'd reservations; inserts are
 * lock-free (CAS on the bucket head), lookups never block. Each thread keeps a small
 * direct-mapped cache in front of it. Runs inside hooks: no malloc, no locks, no stdio.
 */
#ifndef MEMTRACE_PRELOAD_STACK_H
#define MEMTRACE_PRELOAD_STACK_H

#include <stdint.h>

#define MT_STACK_CACHE_SLOTS 256 /* power of two; per thread */

struct mt_stack_node; /* opaque: frames and bookkeeping of one distinct stack */

struct mt_stack_cache {
    uint64_t hash[MT_STACK_CACHE_SLOTS];
    struct mt_stack_node *node[MT_STACK_CACHE_SLOTS];
    uint32_t mark[MT_STACK_CACHE_SLOTS]; /* the caller's per-slot tag, zeroed on replacement */
};

/* Reserve the table. 0 on success, -1 if the address space could not be reserved (tracing then
 * goes on without stacks: every event gets stack id 0, and a warning is printed). */
int mt_stack_init(void);

/* Forget every stack (fork child: the definitions live in the parent's file). */
void mt_stack_reset(void);

/* Find or insert `frames` (n entries, innermost first; trunc: deeper than captured). Returns the
 * node, or NULL when the table is full or unavailable. `cache` may be NULL; otherwise *slot is
 * set to the cache slot now holding the node. */
struct mt_stack_node *mt_stack_intern(struct mt_stack_cache *cache, const uint64_t *frames,
                                      uint32_t n, int trunc, unsigned *slot);

uint32_t mt_stack_id(const struct mt_stack_node *node);
uint32_t mt_stack_nframes(const struct mt_stack_node *node);
int mt_stack_truncated(const struct mt_stack_node *node);
const uint64_t *mt_stack_frames(const struct mt_stack_node *node);

/* One 32-bit value a caller caches per distinct stack (the classification rules' verdict):
 * get returns 1 and the value once set, else 0. Any thread may set it; the last store wins. */
int mt_stack_aux_get(const struct mt_stack_node *node, uint32_t *value);
void mt_stack_aux_set(struct mt_stack_node *node, uint32_t value);

/* The thread-cache slot the node occupies when cached (the *slot mt_stack_intern gives). */
unsigned mt_stack_slot(const struct mt_stack_node *node);

/* Whether the node's definition is known to be in the file already; set after a flush. */
int mt_stack_written(const struct mt_stack_node *node);
void mt_stack_mark_written(struct mt_stack_node *node);

/* Empty a thread cache (new owner, or fork). */
void mt_stack_cache_clear(struct mt_stack_cache *cache);

/* Distinct stacks interned so far. */
uint32_t mt_stack_count(void);

#endif
