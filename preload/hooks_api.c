/* The entry points behind include/memtrace.h: memtrace_usage() and memtrace_mark() find these
 * with dlsym, so a program uses them without linking against the shim. They are not hooks but
 * the program calls them like one: guard, work, restore errno. */
#include <string.h>

#include "account.h"
#include "hooks.h"
#include "memtrace.h"
#include "memtrace/format.h"

/* The types are memtrace.h's memtrace_usage_fn and memtrace_mark_fn. */
int memtrace_api_usage(struct memtrace_usage *u);
void memtrace_api_mark(const char *label, size_t len);

MT_EXPORT int memtrace_api_usage(struct memtrace_usage *u)
{
    struct memtrace_usage out;
    memset(&out, 0, sizeof out);
    out.size = (uint32_t)sizeof out;
    out.version = MEMTRACE_USAGE_VERSION;
    int rc = -1;
    if (mt_hook_ready() == 0) {
        int err = errno;
        struct mt_usage m;
        if (mt_guard_active()) {
            mt_acct_counters(&m); /* a handler inside the shim: no allocator, no /proc */
        } else {
            mt_guard_set(MT_IN_HOOK);
            mt_acct_usage(&m, 0);
            mt_guard_set(MT_IN_NONE);
        }
        out.rss = m.rss;
        out.heap_total = m.heap_total;
        out.heap_used = m.heap_used;
        out.external = m.external;
        out.mapped = m.mapped;
        rc = 0;
        errno = err;
    }
    /* the caller's struct may be older (shorter) or newer (longer) than ours */
    uint32_t size = u->size;
    size_t n = size < sizeof out ? size : sizeof out;
    memcpy(u, &out, n);
    u->size = size;
    return rc;
}

MT_EXPORT void memtrace_api_mark(const char *label, size_t len)
{
    if (mt_hook_ready() != 0 || mt_guard_active())
        return;
    int err = errno;
    mt_guard_set(MT_IN_HOOK);
    mt_acct_snapshot(MTF_SNAP_MARK, label, len);
    mt_guard_set(MT_IN_NONE);
    errno = err;
}
