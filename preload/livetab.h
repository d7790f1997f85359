/* The live heap blocks of the process, kept only when the exit-time leak scan is on
 * (MEMTRACE_LEAK_SCAN=1): address -> requested size, in 64 independently locked shards of open
 * addressing, in memory mapped directly from the kernel (never malloc). The scan (reach.c) turns
 * it into a sorted array at exit. Nothing here runs unless mt_live_enable() was called.
 */
#ifndef MEMTRACE_PRELOAD_LIVETAB_H
#define MEMTRACE_PRELOAD_LIVETAB_H

#include <stddef.h>
#include <stdint.h>

struct mt_live_block {
    uint64_t addr;
    uint64_t size; /* requested bytes */
};

/* Turn the table on (start-up, before any hook records). */
void mt_live_enable(void);
int mt_live_enabled(void);

/* A block came to life / went away. add replaces an entry at the same address (a block freed
 * behind our back); del of an unknown address does nothing. Cheap no-ops when disabled. */
void mt_live_add(uint64_t addr, uint64_t size);
void mt_live_del(uint64_t addr);

/* Remove addr; returns 1 and its size (when size is not NULL) if it was there, else 0. */
int mt_live_take(uint64_t addr, uint64_t *size);

/* Number of live blocks (approximate while other threads change the table). */
uint64_t mt_live_count(void);

/* Copy every live block into a newly mapped array sorted by address; *out is set to it (NULL
 * when empty or out of memory) and the count returned. Release with mt_live_release. */
size_t mt_live_snapshot(struct mt_live_block **out);
void mt_live_release(struct mt_live_block *blocks, size_t n);

/* In a fork child: other threads' locks died with them. */
void mt_live_fork_child(void);

/* Forget everything (tests). */
void mt_live_reset(void);

#endif
