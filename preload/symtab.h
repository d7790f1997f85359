/* In-process symbol lookup for the few places that need names while the program runs: rules'
 * func= conditions (once per distinct stack) and the fatal heap-limit message. Reads the ELF
 * file of the module holding a pc (.symtab, else .dynsym), maps it with raw system calls and
 * keeps a sorted index per module, built on first use and never freed. No malloc, no stdio, no
 * locks: safe inside hooks and across fork (a build cut short by fork is redone). Names are the
 * symbols as written in the file (mangled); no inline frames, no line numbers: that is the
 * report's job (report/symbolize.c). errno is preserved.
 */
#ifndef MEMTRACE_PRELOAD_SYMTAB_H
#define MEMTRACE_PRELOAD_SYMTAB_H

#include <stddef.h>
#include <stdint.h>

#define MT_SYMTAB_MAX_MODULES 512 /* modules indexed per process; later ones get no names */

/* The loaded module holding `pc` (lock-free: _dl_find_object). Returns 0 and sets *path (the
 * loader's file name, or the executable's path for the main program; valid while the module
 * stays loaded) and *bias (load bias: symbol values are pc - bias), or -1 when no module holds
 * pc. Either pointer may be NULL. Does not read the file. */
int mt_symtab_module(uint64_t pc, const char **path, uint64_t *bias);

/* The function symbol containing `pc`, without copying: a NUL-terminated name inside the mapped
 * file (valid for the process's lifetime), or NULL when unknown (no module, file missing,
 * unreadable, not ELF, build id differing from the loaded one, stripped of every function
 * symbol, or pc between functions). *module_path as mt_symtab_module (NULL without a module);
 * *offset is pc minus the symbol's start, or pc minus the load bias when there is no name.
 * Either out pointer may be NULL. */
const char *mt_symtab_name(uint64_t pc, const char **module_path, uint64_t *offset);

/* mt_symtab_name, copying the name into name[cap] (truncated, always NUL-terminated when
 * cap > 0; "" when unknown). Returns 1 with a name, 0 when the module is known but the name is
 * not, -1 when no module holds pc. Return addresses point after the call: pass ra - 1. */
int mt_symtab_lookup(uint64_t pc, char *name, size_t cap, const char **module_path,
                     uint64_t *offset);

#endif
