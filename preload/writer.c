/* Trace file output. The descriptor is moved above MIN_FD with O_CLOEXEC so programs that
 * close or reuse low descriptors do not collide with it, and its identity (device, inode) is
 * checked before each write: a program that closed our descriptor and opened one of its own
 * under the same number must not receive trace bytes (pitfalls.md §11). */
#include "writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "crc32c.h"
#include "log.h"
#include "memtrace/format.h"

#define MIN_FD       900
#define MAX_SUFFIX   999
#define NAME_MAX_LEN 255

static long sys_writev(int fd, const struct iovec *iov, int iovcnt)
{
    return syscall(SYS_writev, fd, iov, iovcnt);
}

static int sys_open(const char *path, int flags, int mode)
{
    return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

static int sys_close(int fd)
{
    return (int)syscall(SYS_close, fd);
}

static int sys_fstat(int fd, struct stat *st)
{
    return (int)syscall(SYS_fstat, fd, st);
}

static int sys_dupfd(int fd, int min_fd)
{
    return (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, min_fd);
}

struct mt_sys mt_sys = { sys_writev, sys_open, sys_close, sys_fstat, sys_dupfd };

void mt_writer_sys_default(void)
{
    mt_sys = (struct mt_sys){ sys_writev, sys_open, sys_close, sys_fstat, sys_dupfd };
}

static int fd = -1;
static dev_t fd_dev;
static ino_t fd_ino;
static _Atomic uint64_t offset; /* bytes written, for messages */
static atomic_int failed;
static char path[4096 + 16];
static int open_pid;
static char cwd[4096];

int mt_writer_ok(void)
{
    return fd >= 0 && !atomic_load_explicit(&failed, memory_order_relaxed);
}

int mt_writer_failed(void)
{
    return atomic_load_explicit(&failed, memory_order_relaxed);
}

int mt_writer_pid(void)
{
    return open_pid;
}

const char *mt_writer_path(void)
{
    return path;
}

const char *mt_writer_cwd(void)
{
    return cwd;
}

void mt_writer_forget(void)
{
    /* The descriptor is shared with the parent: closing our copy does not affect it, and
     * without closing the child would keep the parent's file open across its own exec. */
    if (fd >= 0)
        mt_sys.close(fd);
    fd = -1;
    open_pid = 0;
    atomic_store(&failed, 0);
    atomic_store(&offset, 0);
    path[0] = '\0';
}

static int append(char *out, size_t cap, size_t *n, const char *s)
{
    size_t k = strlen(s);
    if (*n + k + 1 > cap)
        return -1;
    memcpy(out + *n, s, k);
    *n += k;
    out[*n] = '\0';
    return 0;
}

int mt_writer_expand(char *out, size_t cap, const char *pattern, int pid, const char *exe,
                     const char *dir)
{
    size_t n = 0;
    out[0] = '\0';
    if (pattern[0] != '/' && dir != NULL && dir[0] != '\0') {
        if (append(out, cap, &n, dir) != 0 || append(out, cap, &n, "/") != 0)
            return -1;
    }
    for (const char *p = pattern; *p; p++) {
        char tmp[32];
        const char *piece = tmp;
        if (*p == '%' && p[1] == 'p') {
            mt_log_fmt(tmp, sizeof tmp, "%d", pid);
            p++;
        } else if (*p == '%' && p[1] == 'e') {
            piece = exe;
            p++;
        } else if (*p == '%' && p[1] == '%') {
            piece = "%";
            p++;
        } else {
            tmp[0] = *p;
            tmp[1] = '\0';
        }
        if (append(out, cap, &n, piece) != 0)
            return -1;
    }
    return 0;
}

static void exe_name(char *out, size_t cap)
{
    char link[4096];
    long k = syscall(SYS_readlink, "/proc/self/exe", link, sizeof link - 1);
    if (k <= 0) {
        mt_log_fmt(out, cap, "unknown");
        return;
    }
    link[k] = '\0';
    const char *base = strrchr(link, '/');
    base = base ? base + 1 : link;
    mt_log_fmt(out, cap, "%s", base);
    if (strlen(out) > NAME_MAX_LEN - 40) /* leave room for pid and suffix in one component */
        out[NAME_MAX_LEN - 40] = '\0';
}

/* Open the trace again by name and check it is the file we created. 0 on success. */
static int reopen(void)
{
    int f = mt_sys.open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0);
    if (f < 0)
        return -1;
    struct stat st;
    if (mt_sys.fstat(f, &st) != 0 || st.st_dev != fd_dev || st.st_ino != fd_ino) {
        mt_sys.close(f);
        return -1;
    }
    int high = mt_sys.dupfd(f, MIN_FD);
    if (high >= 0) {
        mt_sys.close(f);
        f = high;
    }
    fd = f; /* the old number is the program's now, or closed: it is not ours to close */
    return 0;
}

static int write_all(const struct iovec *iov, int iovcnt, size_t total)
{
    struct stat st;
    if (mt_sys.fstat(fd, &st) != 0 || st.st_dev != fd_dev || st.st_ino != fd_ino) {
        /* The program closed our descriptor or reused its number (daemons close everything):
         * never write into its file; reopen ours by name if it is still the same file. */
        int replaced = mt_sys.fstat(fd, &st) == 0;
        if (reopen() != 0) {
            if (!atomic_exchange(&failed, 1))
                mt_log_error("trace output lost: %s: descriptor %d was %s by the program and "
                             "the file cannot be reopened; tracing stopped",
                             path, fd, replaced ? "replaced" : "closed");
            return -1;
        }
    }
    long w;
    do {
        w = mt_sys.writev(fd, iov, iovcnt);
    } while (w < 0 && errno == EINTR);
    if (w == (long)total) {
        atomic_fetch_add(&offset, total);
        return 0;
    }
    /* A short write leaves a torn record: the reader stops there and reports the loss. Writing
     * the rest later could interleave with another thread's record, so we stop instead. */
    int err = w < 0 ? errno : ENOSPC;
    if (!atomic_exchange(&failed, 1))
        mt_log_error("cannot write trace: %s: offset %llu: %s; tracing stopped, the trace is "
                     "incomplete",
                     path, (unsigned long long)atomic_load(&offset), mt_log_errno_text(err));
    errno = err;
    return -1;
}

int mt_writer_record(uint16_t type, const struct iovec *iov, int iovcnt)
{
    if (!mt_writer_ok())
        return -1;
    struct iovec v[MT_WRITER_MAX_IOV + 1];
    if (iovcnt < 0 || iovcnt > MT_WRITER_MAX_IOV)
        return -1;
    struct mtf_record_header h;
    size_t payload = 0;
    for (int i = 0; i < iovcnt; i++)
        payload += iov[i].iov_len;
    if (payload > MTF_RECORD_MAX_SIZE)
        return -1;
    h.magic = MTF_RECORD_MAGIC;
    h.type = type;
    h.flags = MTF_RECF_NONE;
    h.payload_size = (uint32_t)payload;
    uint32_t crc = mt_crc32c(0, &h, MTF_RECORD_CRC_SPAN);
    for (int i = 0; i < iovcnt; i++)
        crc = mt_crc32c(crc, iov[i].iov_base, iov[i].iov_len);
    h.crc32c = crc;
    v[0].iov_base = &h;
    v[0].iov_len = sizeof h;
    if (iovcnt > 0)
        memcpy(&v[1], iov, (size_t)iovcnt * sizeof *iov);
    return write_all(v, iovcnt + 1, sizeof h + payload);
}

static uint64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int create(const char *base)
{
    for (int k = 0; k <= MAX_SUFFIX; k++) {
        if (k == 0)
            mt_log_fmt(path, sizeof path, "%s", base);
        else
            mt_log_fmt(path, sizeof path, "%s.%d", base, k);
        int f = mt_sys.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_APPEND,
                            0600);
        if (f >= 0)
            return f;
        if (errno != EEXIST)
            return -1;
    }
    errno = EEXIST;
    return -1;
}

int mt_writer_open(const char *pattern, uint32_t origin, uint32_t max_frames)
{
    if (cwd[0] == '\0') {
        long k = syscall(SYS_getcwd, cwd, sizeof cwd);
        if (k <= 0)
            cwd[0] = '\0';
    }
    char exe[NAME_MAX_LEN + 1];
    exe_name(exe, sizeof exe);
    int pid = (int)syscall(SYS_getpid);
    char base[sizeof path - 8];
    if (mt_writer_expand(base, sizeof base, pattern, pid, exe, cwd) != 0) {
        mt_log_error("cannot create trace file: MEMTRACE_OUTPUT=%s: path too long", pattern);
        atomic_store(&failed, 1);
        return -ENAMETOOLONG;
    }
    int f = create(base);
    if (f < 0) {
        int err = errno;
        mt_log_error("cannot create trace file: %s: %s", path, mt_log_errno_text(err));
        atomic_store(&failed, 1); /* events from now on are counted as dropped */
        return -err;
    }
    int high = mt_sys.dupfd(f, MIN_FD);
    if (high >= 0) {
        mt_sys.close(f);
        f = high;
    }
    struct stat st;
    if (mt_sys.fstat(f, &st) != 0) {
        int err = errno;
        mt_log_error("cannot create trace file: %s: %s", path, mt_log_errno_text(err));
        mt_sys.close(f);
        atomic_store(&failed, 1);
        return -err;
    }
    fd = f;
    open_pid = pid;
    fd_dev = st.st_dev;
    fd_ino = st.st_ino;
    atomic_store(&failed, 0);
    atomic_store(&offset, 0);

    struct mtf_file_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, MTF_MAGIC, MTF_MAGIC_SIZE);
    h.version_major = MTF_VERSION_MAJOR;
    h.version_minor = MTF_VERSION_MINOR;
    h.header_size = MTF_FILE_HEADER_SIZE;
    h.pid = (uint32_t)pid;
    h.parent_pid = (uint32_t)syscall(SYS_getppid);
    h.origin = origin;
    h.page_size = (uint32_t)sysconf(_SC_PAGESIZE);
    h.start_realtime_ns = now_ns(CLOCK_REALTIME);
    h.start_monotonic_ns = mt_clock_ns(); /* the events' clock (clock.h) */
    h.max_frames = max_frames;
    h.pointer_size = sizeof(void *);
    h.sample_bytes = mt_config.sample_bytes; /* 0 unless MEMTRACE_SAMPLE (sample.c) */
    struct iovec v = { &h, sizeof h };
    if (write_all(&v, 1, sizeof h) != 0)
        return errno ? -errno : -EIO;
    return 0;
}
