/* See pages.h. */
#include "pages.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

void *mt_pages_map(size_t len, int flags)
{
    long p = syscall(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
    return p < 0 && p > -4096 ? NULL : (void *)p;
}

void mt_pages_unmap(void *p, size_t len)
{
    if (p != NULL && len != 0)
        syscall(SYS_munmap, p, len);
}

size_t mt_read_file(const char *path, char *buf, size_t cap)
{
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
    size_t n = 0;
    if (fd >= 0) {
        while (n + 1 < cap) {
            long r = syscall(SYS_read, fd, buf + n, cap - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
        }
        syscall(SYS_close, fd);
    }
    if (cap > 0)
        buf[n] = '\0';
    return n;
}

void *mt_pages_map_once(void **slot, size_t len, int flags)
{
    void *t = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (t != NULL)
        return t;
    void *mine = mt_pages_map(len, flags);
    if (mine == NULL)
        return NULL;
    void *expect = NULL;
    if (!__atomic_compare_exchange_n(slot, &expect, mine, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        mt_pages_unmap(mine, len);
        return expect;
    }
    return mine;
}
