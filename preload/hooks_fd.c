/* Descriptor hooks that keep libunwind's hands off the program's files. libunwind validates
 * stack addresses by writing them into a pipe it keeps open; when a daemon-style program closes
 * every descriptor and reuses the numbers, libunwind reads from, writes to and finally closes
 * the program's own files (it "reopens" its pipe by closing both old numbers). So pipe2, close,
 * read and write called from libunwind are checked here: its pipe is moved to high descriptor
 * numbers and remembered by identity, and any other descriptor is refused with EBADF (libunwind
 * then makes a new pipe). Calls from anywhere else go straight to the C library. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hooks.h"

#define MAX_PIPES 8
#define HIGH_FD   980

struct owned {
    int fd;
    dev_t dev;
    ino_t ino;
};

static struct owned owned[MAX_PIPES]; /* libunwind's pipe ends; fd -1 when free */
static int owned_init;

static int is_tracer(const void *caller)
{
    return mt_unwind_is_tracer_pc((uintptr_t)caller);
}

static void init_owned(void)
{
    if (owned_init)
        return;
    for (int i = 0; i < MAX_PIPES; i++)
        owned[i].fd = -1;
    owned_init = 1;
}

/* Index of `fd` if it is still the pipe end libunwind made, else -1. */
static int find_owned(int fd)
{
    init_owned();
    for (int i = 0; i < MAX_PIPES; i++) {
        if (owned[i].fd != fd)
            continue;
        struct stat st;
        if (syscall(SYS_fstat, fd, &st) == 0 && st.st_dev == owned[i].dev &&
            st.st_ino == owned[i].ino)
            return i;
        owned[i].fd = -1; /* the number now names something else */
    }
    return -1;
}

static void remember(int fd)
{
    struct stat st;
    init_owned();
    if (syscall(SYS_fstat, fd, &st) != 0)
        return;
    for (int i = 0; i < MAX_PIPES; i++)
        if (owned[i].fd < 0) {
            owned[i] = (struct owned){ fd, st.st_dev, st.st_ino };
            return;
        }
}

static int move_high(int fd)
{
    int high = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, HIGH_FD);
    if (high < 0)
        return fd;
    syscall(SYS_close, fd);
    return high;
}

MT_EXPORT int pipe2(int fds[2], int flags)
{
    long rc = syscall(SYS_pipe2, fds, flags);
    if (rc != 0) {
        errno = (int)-rc;
        return -1;
    }
    if (is_tracer(__builtin_return_address(0))) {
        fds[0] = move_high(fds[0]);
        fds[1] = move_high(fds[1]);
        remember(fds[0]);
        remember(fds[1]);
    }
    return 0;
}

MT_EXPORT int close(int fd)
{
    if (MT_UNLIKELY(is_tracer(__builtin_return_address(0)))) {
        int i = find_owned(fd);
        if (i < 0)
            return 0; /* not libunwind's any more: leave the program's descriptor alone */
        owned[i].fd = -1;
    }
    long rc = syscall(SYS_close, fd);
    if (rc != 0) {
        errno = (int)-rc;
        return -1;
    }
    return 0;
}

MT_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
    if (MT_UNLIKELY(is_tracer(__builtin_return_address(0))) && find_owned(fd) < 0) {
        errno = EBADF;
        return -1;
    }
    if (MT_UNLIKELY(!mt_real.ready)) { /* before the first allocation: nothing to look up yet */
        long r = syscall(SYS_read, fd, buf, n);
        if (r < 0) {
            errno = (int)-r;
            return -1;
        }
        return r;
    }
    return mt_real.read(fd, buf, n);
}

MT_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    if (MT_UNLIKELY(is_tracer(__builtin_return_address(0))) && find_owned(fd) < 0) {
        errno = EBADF;
        return -1;
    }
    if (MT_UNLIKELY(!mt_real.ready)) {
        long r = syscall(SYS_write, fd, buf, n);
        if (r < 0) {
            errno = (int)-r;
            return -1;
        }
        return r;
    }
    return mt_real.write(fd, buf, n);
}
