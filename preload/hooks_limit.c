/* What happens when a cap refuses a call (docs/design.md, "The heap cap"). The LIMIT event and a
 * LIMIT snapshot go into the trace; in enomem mode the hook then fails the call; in abort mode
 * the first refusing thread prints the Node-like fatal error with the refused call's stack,
 * ends the trace (END: fatal signal SIGABRT) and aborts, while any other refusing thread waits
 * for the process to die, so there is exactly one message. Runs inside a hook: the message is
 * formatted into a stack buffer by log.c's formatter and written once, no malloc, no stdio. */
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "account.h"
#include "config.h"
#include "hooks.h"
#include "log.h"
#include "memtrace/format.h"
#include "names.h"
#include "stack.h"
#include "symtab.h"
#include "writer.h"

#define MSG_MAX (16U << 10)

static const char *kind_name(unsigned kind)
{
    const char *n = mt_kind_name(kind);
    return n != NULL ? n : "call";
}

struct msg {
    char buf[MSG_MAX];
    size_t n;
};

static void add(struct msg *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(struct msg *m, const char *fmt, ...)
{
    if (m->n >= sizeof m->buf - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    size_t k = mt_log_format(m->buf + m->n, sizeof m->buf - m->n, fmt, ap);
    va_end(ap);
    m->n += k < sizeof m->buf - m->n ? k : sizeof m->buf - 1 - m->n;
}

/* "1.50 MiB (1572864 bytes)": readable units (powers of 1024, two decimals) and the exact
 * figure. */
static void add_size(struct msg *m, uint64_t v)
{
    static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB" };
    unsigned u = 0;
    while (u + 1 < sizeof units / sizeof units[0] && v >> (10 * (u + 1)) != 0)
        u++;
    if (u == 0) {
        add(m, "%llu bytes", (unsigned long long)v);
        return;
    }
    uint64_t whole = v >> (10 * u);
    uint64_t hundredths = ((v & ((1ULL << (10 * u)) - 1)) * 100) >> (10 * u);
    add(m, "%llu.%s%llu %s (%llu bytes)", (unsigned long long)whole, hundredths < 10 ? "0" : "",
        (unsigned long long)hundredths, units[u], (unsigned long long)v);
}

/* One frame a line: "    #3 0x5581c0a011a9 fill_heap+0x19 (/path/prog)". */
static void add_frame(struct msg *m, unsigned i, uint64_t pc)
{
    const char *path = NULL;
    uint64_t off = 0;
    /* return addresses point after the call: look up the call itself */
    const char *name = mt_symtab_name(pc - 1, &path, &off);
    if (name != NULL)
        add(m, "    #%u 0x%llx %s+0x%llx (%s)\n", i, (unsigned long long)pc, name,
            (unsigned long long)(off + 1), path ? path : "?");
    else if (path != NULL)
        add(m, "    #%u 0x%llx (%s+0x%llx)\n", i, (unsigned long long)pc, path,
            (unsigned long long)(off + 1));
    else
        add(m, "    #%u 0x%llx\n", i, (unsigned long long)pc);
}

static void add_stack(struct msg *m, struct mt_stack_node *node)
{
    uint64_t local[MTF_MAX_FRAMES_LIMIT];
    const uint64_t *frames = local;
    uint32_t n = 0;
    int trunc = 0;
    if (node != NULL && node != MT_TBUF_CAPTURE) {
        frames = mt_stack_frames(node);
        n = mt_stack_nframes(node);
        trunc = mt_stack_truncated(node);
    } else {
        uint32_t saved = mt_tls.in;
        mt_guard_set(MT_IN_SHIM);
        n = mt_unwind_capture(local, MTF_MAX_FRAMES_LIMIT, &trunc);
        mt_guard_set(saved);
    }
    add(m, "  stack of the refused call:\n");
    uint32_t saved = mt_tls.in;
    mt_guard_set(MT_IN_SHIM); /* the symbol lookup maps ELF files with raw calls: ours */
    for (uint32_t i = 0; i < n; i++)
        add_frame(m, i, frames[i]);
    mt_guard_set(saved);
    if (trunc)
        add(m, "    ... (deeper frames not captured: MEMTRACE_DEPTH=%u)\n", mt_config.max_frames);
}

static void print_fatal(unsigned kind, uint32_t cls, uint64_t request, uint64_t live,
                        struct mt_stack_node *node)
{
    static struct msg m; /* only the thread that won the fatal claim gets here */
    m.n = 0;
    if (cls == MTF_CLASS_HEAP)
        add(&m, "FATAL ERROR: Reached heap limit Allocation failed - heap out of memory\n");
    else
        add(&m, "FATAL ERROR: Reached external memory limit Allocation failed - external memory "
                "out of memory\n");
    const char *what = cls == MTF_CLASS_HEAP ? "heap" : "external";
    add(&m, "  %s limit (MEMTRACE_%s_LIMIT): ", what, cls == MTF_CLASS_HEAP ? "HEAP" : "EXTERNAL");
    add_size(&m, mt_acct_limit(cls));
    add(&m, "\n  %s used: ", what);
    add_size(&m, live);
    add(&m, "\n  refused request: %s of ", kind_name(kind));
    add_size(&m, request);
    add(&m, "\n");
    add_stack(&m, node);
    if (mt_writer_ok())
        add(&m, "  trace: %s (the refused call is its LIMIT event)\n", mt_writer_path());
    mt_log_raw(m.buf, m.n);
}

/* Another thread is printing the fatal error and ending the process: wait for it. */
static void wait_for_end(void)
{
    for (;;) {
        struct timespec t = { 1, 0 };
        syscall(SYS_nanosleep, &t, NULL);
    }
}

static atomic_flag warned = ATOMIC_FLAG_INIT;

void mt_acct_refuse(unsigned kind, uint32_t cls, uint64_t request, uint64_t live,
                    struct mt_stack_node *node)
{
    uint32_t mode = mt_config.on_limit;
    if (mode == MTF_LIMIT_ABORT && atomic_exchange(&mt_acct_fatal, 1))
        wait_for_end();
    uint64_t f[6] = { kind, cls, mode, mt_acct_limit(cls), live, request };
    mt_tbuf_event_at(MTF_EV_LIMIT, 0, mt_clock_ns(), f, node);
    mt_acct_snapshot(MTF_SNAP_LIMIT, NULL, 0);
    if (mode == MTF_LIMIT_ENOMEM) {
        if (!atomic_flag_test_and_set(&warned))
            mt_log_warn("%s limit reached: %s of %llu bytes failed with ENOMEM while %llu bytes "
                        "were live (MEMTRACE_ON_LIMIT=enomem; later refusals are in the trace "
                        "only)",
                        cls == MTF_CLASS_HEAP ? "heap" : "external", kind_name(kind),
                        (unsigned long long)request, (unsigned long long)live);
        return;
    }
    print_fatal(kind, cls, request, live, node);
    mt_init_finish(MTF_END_SIGNAL, SIGABRT);
    /* The guard stays set: a SIGABRT handler that allocates is a nested call, never refused
     * again. The program's handlers run, as they do when Node aborts. */
    mt_real.abort();
}
