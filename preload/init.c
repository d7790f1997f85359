/* Start-up and shut-down of the shim. Tracing comes up in two steps: the first hooked call
 * resolves the real functions (it may arrive before our constructor: libstdc++ allocates its
 * emergency pool first, pitfalls.md §2), and the constructor, or the first buffer flush if that
 * comes earlier, parses the configuration and opens the trace. Events made in between are kept
 * in the thread's buffer. Shut-down is idempotent and leaves the hooks working: frees made by
 * later destructors are written through. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "account.h"
#include "classify.h"
#include "clock.h"
#include "config.h"
#include "guard.h"
#include "hooks.h"
#include "livetab.h"
#include "log.h"
#include "memtrace/format.h"
#include "modules.h"
#include "reach.h"
#include "real.h"
#include "sample.h"
#include "stack.h"
#include "tbuf.h"
#include "unwind.h"
#include "writer.h"

extern char **environ;

static atomic_int early_done, full_done, finished;
static volatile int exit_status = -1;
static volatile int status_known;
static int saved_argc;
static char **saved_argv;

void mt_init_note_status(int status)
{
    exit_status = status;
    status_known = 1;
}

void mt_init_early(void)
{
    mt_real_init();
    if (!mt_real.ready || atomic_exchange(&early_done, 1))
        return;
    mt_clock_init();
    mt_stack_init();
    mt_unwind_init();
}

static void write_process(void)
{
    char exe[4096], cwd[4096];
    long n = syscall(SYS_readlink, "/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    long c = syscall(SYS_getcwd, cwd, sizeof cwd);
    if (c <= 0)
        cwd[0] = '\0';
    /* the command line: from the constructor's arguments, else from /proc (fork children) */
    char args[8192];
    size_t alen = 0;
    uint32_t argc = 0;
    if (saved_argv != NULL) {
        for (int i = 0; i < saved_argc && saved_argv[i]; i++) {
            size_t k = strlen(saved_argv[i]) + 1;
            if (alen + k > sizeof args)
                break;
            memcpy(args + alen, saved_argv[i], k);
            alen += k;
            argc++;
        }
    } else {
        int fd = (int)syscall(SYS_openat, -100, "/proc/self/cmdline", 0, 0);
        if (fd >= 0) {
            long r = syscall(SYS_read, fd, args, sizeof args);
            syscall(SYS_close, fd);
            alen = r > 0 ? (size_t)r : 0;
            for (size_t i = 0; i < alen; i++)
                argc += args[i] == '\0';
        }
    }
    struct mtf_process p = { mt_clock_ns(), (uint32_t)strlen(exe), (uint32_t)alen,
                             (uint32_t)strlen(cwd), argc };
    struct iovec v[4] = {
        { &p, sizeof p }, { exe, p.exe_len }, { args, alen }, { cwd, p.cwd_len }
    };
    int rc = mt_writer_record(MTF_REC_PROCESS, v, 4);
    (void)rc; /* a failed writer has reported it and counts what is lost */
}

static void atfork_child(void);

/* Open the trace and write what starts it. Runs once per process image (and again in a fork
 * child, through atfork_child). */
static void open_trace(uint32_t origin)
{
    if (mt_writer_open(mt_config.output, origin, mt_config.max_frames) != 0) {
        /* The writer has said which path and why, in one line. A program that was asked to be
         * traced must not run untraced; a fork child goes on and counts its events as dropped. */
        if (origin != MTF_ORIGIN_FORK)
            syscall(SYS_exit_group, MT_EXIT_CONFIG);
        return;
    }
    write_process();
    mt_modules_update(1);
}

static void init_full(void)
{
    if (atomic_exchange(&full_done, 1))
        return;
    mt_init_early();
    uint32_t saved = mt_tls.in;
    mt_guard_set(MT_IN_SHIM);
    if (getauxval(AT_SECURE)) {
        /* setuid/setgid/capabilities: never write files a user chose into such a process */
        mt_log_warn("secure-execution program: tracing disabled");
        mt_guard_set(saved);
        return;
    }
    mt_config_load();
    mt_config_forget_exec_pid(environ);
    mt_classify_init();
    mt_acct_init();
    mt_sample_init();
    if (mt_config.leak_scan)
        mt_live_enable();
    mt_tbuf_init();
    pthread_atfork(mt_acct_fork_prepare, mt_acct_fork_parent, atfork_child);
    int execd = mt_config.exec_pid != 0 && mt_config.exec_pid == (uint32_t)syscall(SYS_getpid);
    open_trace(execd ? MTF_ORIGIN_EXEC : MTF_ORIGIN_START);
    mt_guard_set(saved);
}

static void open_from_flush(void)
{
    init_full();
}

static void atfork_child(void)
{
    uint32_t saved = mt_tls.in;
    mt_guard_set(MT_IN_SHIM);
    mt_log_reset();
    mt_writer_forget();
    mt_stack_reset();
    mt_modules_reset();
    mt_tbuf_fork_child();
    atomic_store(&finished, 0);
    status_known = 0;
    exit_status = -1;
    saved_argv = NULL; /* read the command line from /proc: the parent's array may be stale */
    mt_acct_fork_child();
    mt_live_fork_child();
    mt_sample_fork_child();
    open_trace(MTF_ORIGIN_FORK);
    /* the child's trace starts from what it inherited (trace-format.md §7.2) */
    mt_guard_set(MT_IN_HOOK);
    if (mt_writer_ok())
        mt_acct_snapshot(MTF_SNAP_START, NULL, 0);
    mt_guard_set(saved);
}

void mt_init_finish(uint32_t reason, int32_t status)
{
    if (atomic_exchange(&finished, 1))
        return;
    uint32_t saved = mt_tls.in;
    mt_guard_set(MT_IN_HOOK);
    mt_tbuf_set_final(1); /* first: threads still running write through from now on */
    mt_tbuf_flush_all();
    if (mt_writer_ok()) {
        /* The leak scan sees the heap as the process leaves it (an image replaced by exec
         * leaks nothing: it is gone whole). */
        struct mt_reach_result rr;
        int scanned = reason != MTF_END_EXEC && mt_live_enabled() &&
                      mt_reach_run(mt_acct_maps_visit, &rr) == 0;
        mt_acct_snapshot(MTF_SNAP_EXIT, NULL, 0);           /* written through: right before END */
        (void)mt_sample_write_totals(scanned ? &rr : NULL); /* sampled traces (§9.2) */
        (void)mt_tbuf_write_end(reason, status);
    } else if (mt_writer_failed() && mt_tbuf_dropped() > 0) {
        mt_log_error("%llu calls were not recorded: the trace %s is incomplete",
                     (unsigned long long)mt_tbuf_dropped(), mt_writer_path());
    }
    mt_guard_set(saved);
}

void mt_init_exec_failed(void)
{
    mt_tbuf_set_final(0);
    atomic_store(&finished, 0);
}

__attribute__((constructor(101))) static void ctor(int argc, char **argv, char **envp)
{
    (void)envp;
    saved_argc = argc;
    saved_argv = argv;
    mt_tbuf_open_trace = open_from_flush;
    init_full();
}

__attribute__((destructor(101))) static void dtor(void)
{
    if (!atomic_load(&full_done))
        return;
    mt_init_finish(MTF_END_EXIT, status_known ? exit_status : -1);
}
