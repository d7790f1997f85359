/* See names.h. */
#include "names.h"

#include "memtrace/format.h"

const char *mt_kind_name(unsigned kind)
{
    static const char *const names[MTF_EV_KIND_COUNT] = {
        [MTF_EV_MALLOC] = "malloc",
        [MTF_EV_CALLOC] = "calloc",
        [MTF_EV_REALLOC] = "realloc",
        [MTF_EV_REALLOCARRAY] = "reallocarray",
        [MTF_EV_FREE] = "free",
        [MTF_EV_POSIX_MEMALIGN] = "posix_memalign",
        [MTF_EV_ALIGNED_ALLOC] = "aligned_alloc",
        [MTF_EV_MEMALIGN] = "memalign",
        [MTF_EV_VALLOC] = "valloc",
        [MTF_EV_PVALLOC] = "pvalloc",
        [MTF_EV_MMAP] = "mmap",
        [MTF_EV_MMAP64] = "mmap64",
        [MTF_EV_MUNMAP] = "munmap",
        [MTF_EV_MREMAP] = "mremap",
        [MTF_EV_STACK] = "stack",
        [MTF_EV_FORK] = "fork",
        [MTF_EV_EXEC] = "exec",
        [MTF_EV_SNAPSHOT] = "snapshot",
        [MTF_EV_LIMIT] = "limit",
    };
    return kind < MTF_EV_KIND_COUNT ? names[kind] : NULL;
}
