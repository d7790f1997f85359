/* Allocation-free diagnostics to standard error. Formats into a stack buffer with its own
 * printf subset (%s %d %u %ld %lu %lld %llu %zu %x %lx %p %%), writes once with write(2),
 * preserves errno, and stops after a cap with one "further errors suppressed" line.
 * Safe inside hooks and signal handlers: no malloc, no locks, no stdio.
 */
#ifndef MEMTRACE_PRELOAD_LOG_H
#define MEMTRACE_PRELOAD_LOG_H

#include <stdarg.h>
#include <stddef.h>

/* "memtrace: error: <message>\n" on fd 2, at most MT_LOG_MAX_ERRORS times a process. */
void mt_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "memtrace: warning: <message>\n", same rules. */
void mt_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "memtrace: error: <message>" and _exit(status): for invalid configuration before main
 * and other states where continuing would give a silently wrong result. */
__attribute__((noreturn, format(printf, 2, 3))) void mt_fatal(int status, const char *fmt, ...);

/* Write raw text to fd 2 (one write), no prefix, no cap. For multi-line fatal messages. */
void mt_log_raw(const char *text, size_t len);

/* Format like snprintf with the subset above into buf (always NUL-terminated when cap > 0).
 * Returns the length written, excluding the NUL. */
size_t mt_log_format(char *buf, size_t cap, const char *fmt, va_list ap);
size_t mt_log_fmt(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Text for an errno value without strerror (which may allocate or translate): "No such file or
 * directory", or "error 123" for values not in the table (written into the static fallback). */
const char *mt_log_errno_text(int err);

/* Reset the suppression counter (fork child: a new process, a new budget). */
void mt_log_reset(void);

#define MT_LOG_MAX_ERRORS 10
#define MT_LOG_LINE_MAX   (4096 + 512) /* bytes of one message: a whole path and its context */

#endif
