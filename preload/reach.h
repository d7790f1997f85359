/* The exit-time leak scan (MEMTRACE_LEAK_SCAN=1): which live heap blocks can still be reached
 * from the roots (module data and bss, thread stacks, static TLS, the scanning thread's
 * registers, and any ranges the caller adds) by following aligned words that point to the start
 * or the inside of a block, and which are lost. Lost blocks are split as memcheck does: a block
 * no other lost block points to is "direct" (definitely lost); the rest hang off one and are
 * "indirect"; a cycle of lost blocks with no way in gets its lowest block as the direct one.
 * Writes the result as REACH records (trace-format.md §9.1). Never calls malloc.
 */
#ifndef MEMTRACE_PRELOAD_REACH_H
#define MEMTRACE_PRELOAD_REACH_H

#include <stddef.h>
#include <stdint.h>

#include "livetab.h"

/* mark[] values */
#define MT_REACH_UNSEEN    0
#define MT_REACH_REACHABLE 1
#define MT_REACH_DIRECT    2 /* memcheck's definitely lost */
#define MT_REACH_INDIRECT  3

struct mt_reach_ranges {
    const uint64_t (*r)[2]; /* [start, end) pairs, readable memory */
    size_t n;
};

/* The pure part: given blocks sorted by address and root ranges, fill mark[i] for every block.
 * `work` holds n entries of scratch. Every range and every block must be readable. */
void mt_reach_classify(const struct mt_live_block *b, size_t n, const struct mt_reach_ranges *roots,
                       uint8_t *mark, size_t *work);

/* Extra roots the caller knows of (the program's own anonymous and writable file mappings):
 * called once with a visit function to report each readable [start, end). */
typedef void (*mt_reach_roots_fn)(void (*visit)(void *vctx, uint64_t start, uint64_t end),
                                  void *vctx);

struct mt_reach_result {
    uint64_t live_blocks, live_bytes, root_bytes;
    uint64_t direct_blocks, direct_bytes, indirect_blocks, indirect_bytes;
    int others_running; /* other threads existed: their registers were not scanned */
};

/* Zero the 64 KiB of stack below the caller when the scan is on. Called where the program
 * starts to end (exit(), main's return): the frames the exit path then builds would otherwise
 * hold, in their unused slots, stale copies of pointers that the shim's and the program's
 * earlier, deeper calls left there, and those would keep lost blocks "reachable". */
void mt_reach_scrub_stack(void);

/* Run the scan over the live table and write the REACH records. 0, or -1 (nothing written) if
 * the table is off or memory for the scan could not be mapped. */
int mt_reach_run(mt_reach_roots_fn extra, struct mt_reach_result *res);

#endif
