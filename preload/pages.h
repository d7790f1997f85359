/* Memory and small files for the shim itself, through raw system calls: the public mmap, munmap,
 * open and read may be our own hooks (or the program's), and the shim never calls malloc for
 * itself. Every module that needs pages or a /proc file uses these. */
#ifndef MEMTRACE_PRELOAD_PAGES_H
#define MEMTRACE_PRELOAD_PAGES_H

#include <stddef.h>

/* Fresh zeroed read-write anonymous pages, with extra MAP_* flags (e.g. MAP_NORESERVE); NULL
 * when the kernel refuses. */
void *mt_pages_map(size_t len, int flags);

/* A table mapped on first use: the pages `*slot` points to, mapped (len bytes, extra flags) by
 * the first caller and published with a CAS; a caller that loses the race unmaps its own and
 * takes the winner's. NULL when the kernel refuses. */
void *mt_pages_map_once(void **slot, size_t len, int flags);

/* Give pages back; nothing for NULL or 0 bytes. */
void mt_pages_unmap(void *p, size_t len);

/* Read a small file (a /proc entry) into buf, NUL-terminated, at most cap - 1 bytes. The length
 * read, or 0 when it cannot be opened or is empty. */
size_t mt_read_file(const char *path, char *buf, size_t cap);

#endif
