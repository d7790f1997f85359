/* Diagnostics that work inside malloc: a bounded stack buffer, our own formatter and one
 * write(2) per message. errno is preserved on every path. */
#include "log.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile int shown; /* messages printed so far; races only ever over-count by a few */

static void put(char *buf, size_t cap, size_t *n, char c)
{
    if (*n + 1 < cap)
        buf[*n] = c;
    (*n)++;
}

static void put_str(char *buf, size_t cap, size_t *n, const char *s)
{
    if (s == NULL)
        s = "(null)";
    while (*s)
        put(buf, cap, n, *s++);
}

static void put_uint(char *buf, size_t cap, size_t *n, unsigned long long v, unsigned base)
{
    char tmp[24];
    int k = 0;
    do {
        tmp[k++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (k)
        put(buf, cap, n, tmp[--k]);
}

size_t mt_log_format(char *buf, size_t cap, const char *fmt, va_list ap)
{
    size_t n = 0;
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            put(buf, cap, &n, *f);
            continue;
        }
        f++;
        int longs = 0, sz = 0;
        while (*f == 'l') {
            longs++;
            f++;
        }
        if (*f == 'z') {
            sz = 1;
            f++;
        }
        switch (*f) {
        case 's':
            put_str(buf, cap, &n, va_arg(ap, const char *));
            break;
        case 'c':
            put(buf, cap, &n, (char)va_arg(ap, int));
            break;
        case 'd': {
            long long v =
                longs ? (longs > 1 ? va_arg(ap, long long) : va_arg(ap, long)) : va_arg(ap, int);
            if (v < 0) {
                put(buf, cap, &n, '-');
                put_uint(buf, cap, &n, 0ULL - (unsigned long long)v, 10);
            } else {
                put_uint(buf, cap, &n, (unsigned long long)v, 10);
            }
            break;
        }
        case 'u':
        case 'x': {
            unsigned long long v;
            if (sz)
                v = va_arg(ap, size_t);
            else if (longs > 1)
                v = va_arg(ap, unsigned long long);
            else if (longs)
                v = va_arg(ap, unsigned long);
            else
                v = va_arg(ap, unsigned);
            put_uint(buf, cap, &n, v, *f == 'x' ? 16 : 10);
            break;
        }
        case 'p':
            put_str(buf, cap, &n, "0x");
            put_uint(buf, cap, &n, (uintptr_t)va_arg(ap, void *), 16);
            break;
        case '%':
            put(buf, cap, &n, '%');
            break;
        default: /* unknown conversion: show it rather than misread the arguments */
            put(buf, cap, &n, '%');
            if (*f)
                put(buf, cap, &n, *f);
            else
                f--;
            break;
        }
    }
    if (cap)
        buf[n < cap ? n : cap - 1] = '\0';
    return n < cap ? n : (cap ? cap - 1 : 0);
}

size_t mt_log_fmt(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = mt_log_format(buf, cap, fmt, ap);
    va_end(ap);
    return n;
}

void mt_log_raw(const char *text, size_t len)
{
    int saved = errno;
    while (len > 0) {
        long w = syscall(SYS_write, 2, text, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        text += w;
        len -= (size_t)w;
    }
    errno = saved;
}

static void emit(const char *prefix, const char *fmt, va_list ap)
{
    int saved = errno;
    int k = __atomic_add_fetch(&shown, 1, __ATOMIC_RELAXED);
    if (k > MT_LOG_MAX_ERRORS + 1) {
        errno = saved;
        return;
    }
    char line[MT_LOG_LINE_MAX];
    size_t n = mt_log_fmt(line, sizeof line, "%s", prefix);
    if (k == MT_LOG_MAX_ERRORS + 1)
        n += mt_log_fmt(line + n, sizeof line - n, "further messages suppressed");
    else
        n += mt_log_format(line + n, sizeof line - n, fmt, ap);
    if (n >= sizeof line - 1)
        n = sizeof line - 2;
    line[n++] = '\n';
    mt_log_raw(line, n);
    errno = saved;
}

void mt_log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit("memtrace: error: ", fmt, ap);
    va_end(ap);
}

void mt_log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit("memtrace: warning: ", fmt, ap);
    va_end(ap);
}

void mt_fatal(int status, const char *fmt, ...)
{
    char line[MT_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    size_t n = mt_log_fmt(line, sizeof line, "memtrace: error: ");
    n += mt_log_format(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (n >= sizeof line - 1)
        n = sizeof line - 2;
    line[n++] = '\n';
    mt_log_raw(line, n);
    syscall(SYS_exit_group, status);
    __builtin_unreachable();
}

void mt_log_reset(void)
{
    shown = 0;
}

const char *mt_log_errno_text(int err)
{
    switch (err) {
    case EPERM:
        return "Operation not permitted";
    case ENOENT:
        return "No such file or directory";
    case EIO:
        return "Input/output error";
    case EBADF:
        return "Bad file descriptor";
    case ENOMEM:
        return "Cannot allocate memory";
    case EACCES:
        return "Permission denied";
    case EEXIST:
        return "File exists";
    case ENOTDIR:
        return "Not a directory";
    case EISDIR:
        return "Is a directory";
    case EINVAL:
        return "Invalid argument";
    case ENFILE:
        return "Too many open files in system";
    case EMFILE:
        return "Too many open files";
    case EFBIG:
        return "File too large";
    case ENOSPC:
        return "No space left on device";
    case EROFS:
        return "Read-only file system";
    case EPIPE:
        return "Broken pipe";
    case ENAMETOOLONG:
        return "File name too long";
    case ELOOP:
        return "Too many levels of symbolic links";
    case EDQUOT:
        return "Disk quota exceeded";
    case ETXTBSY:
        return "Text file busy";
    case EAGAIN:
        return "Resource temporarily unavailable";
    case EINTR:
        return "Interrupted system call";
    default: {
        static char other[32]; /* shared fallback: a racing writer shows another number */
        mt_log_fmt(other, sizeof other, "error %d", err);
        return other;
    }
    }
}
