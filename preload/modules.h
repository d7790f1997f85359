/* The module map: which ELF objects are loaded where, with build ids, so stacks can be
 * symbolized offline. Writes MODULES records (docs/trace-format.md §6) for modules that appeared
 * or disappeared since the last call. Calls dl_iterate_phdr, which takes the loader's lock:
 * never call it while holding a lock of ours (pitfalls.md §5).
 */
#ifndef MEMTRACE_PRELOAD_MODULES_H
#define MEMTRACE_PRELOAD_MODULES_H

/* Compare the loaded objects with those already written and write the difference. Cheap when
 * nothing changed (the loader's add/remove counters). If another thread is updating, returns at
 * once (the next call catches up). `force` re-reads even if the counters look unchanged. */
void mt_modules_update(int force);

/* Forget what was written (fork child: a new file needs the whole map again). */
void mt_modules_reset(void);

#endif
