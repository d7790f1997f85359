/* The trace file: naming, creation, the file header, and framed records written whole by one
 * writev(2) each on an O_APPEND descriptor, so concurrent writers never interleave and a killed
 * process leaves a valid prefix. System calls go through mt_sys so tests can fail the Nth one.
 * Knows nothing about hooks or events. Safe inside hooks: no malloc, no locks, no stdio.
 */
#ifndef MEMTRACE_PRELOAD_WRITER_H
#define MEMTRACE_PRELOAD_WRITER_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "mt.h"

/* The system calls the writer makes; tests swap entries (SQLite's aSyscall idea). */
struct mt_sys {
    long (*writev)(int fd, const struct iovec *iov, int iovcnt);
    int (*open)(const char *path, int flags, int mode);
    int (*close)(int fd);
    int (*fstat)(int fd, struct stat *st);
    int (*dupfd)(int fd, int min_fd); /* fcntl(F_DUPFD_CLOEXEC) */
};

extern struct mt_sys mt_sys;

/* Restore the real system calls (tests). */
void mt_writer_sys_default(void);

/* Expand a MEMTRACE_OUTPUT pattern: %p pid, %e executable name, %% percent. Relative results
 * are made absolute against `cwd` (may be NULL). Returns 0, or -1 if it does not fit. */
int mt_writer_expand(char *out, size_t cap, const char *pattern, int pid, const char *exe,
                     const char *cwd);

/* Create the trace file from the pattern (O_EXCL|O_NOFOLLOW, mode 0600; on EEXIST tries
 * ".1" .. ".999"), write the file header. Returns 0, or -errno after printing one line naming
 * the path and the reason. `origin` is MTF_ORIGIN_*. */
MT_MUST_CHECK int mt_writer_open(const char *pattern, uint32_t origin, uint32_t max_frames);

#define MT_WRITER_MAX_IOV 63 /* iovecs one record may be given in */

/* Write one record: header (magic, type, size, CRC) + the concatenated iovecs (at most
 * MT_WRITER_MAX_IOV; more is a caller bug and returns -1). Returns 0, or
 * -1 if the writer is not open or failed (then or earlier); the first failure prints one line
 * with path, offset and reason and stops all further writes. */
MT_MUST_CHECK int mt_writer_record(uint16_t type, const struct iovec *iov, int iovcnt);

/* Whether records can currently be written. */
int mt_writer_ok(void);

/* Whether the writer failed after opening (output error): events are then dropped. */
int mt_writer_failed(void);

/* Forget the inherited descriptor without touching the parent's file (fork child). */
void mt_writer_forget(void);

/* Process id the open trace belongs to (0 when none). A different getpid() means we run in a
 * vfork child sharing the traced process's memory. */
int mt_writer_pid(void);

/* Path of the open trace ("" when none). */
const char *mt_writer_path(void);

/* The working directory recorded at the first open (for relative paths in fork children). */
const char *mt_writer_cwd(void);

#endif
