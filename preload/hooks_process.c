/* Process life-cycle hooks: fork, the exec family, exit paths, dlopen/dlclose and the start of
 * main. They record FORK/EXEC events, flush what the process would otherwise lose (an exec'd or
 * _exit'ing image runs no destructors) and keep the module map current. */
#include <dlfcn.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config.h"
#include "hooks.h"
#include "memtrace/format.h"
#include "modules.h"
#include "reach.h"
#include "unwind.h"
#include "writer.h"

static void event0(unsigned kind, unsigned flags, const uint64_t *f)
{
    if (mt_guard_active())
        return;
    mt_guard_set(MT_IN_HOOK);
    mt_tbuf_event(kind, flags, mt_clock_ns(), f);
    mt_guard_set(MT_IN_NONE);
}

MT_EXPORT pid_t fork(void)
{
    if (mt_hook_ready() != 0)
        return (pid_t)syscall(SYS_fork);
    /* The guard stays clear across the real fork: atfork handlers of other libraries allocate,
     * and in the child ours (registered first) has already opened the child's own trace. */
    pid_t pid = mt_real.fork();
    int err = errno;
    if (pid != 0) {
        uint64_t f[1] = { pid > 0 ? (uint64_t)pid : 0 };
        event0(MTF_EV_FORK, pid < 0 ? MTF_EVF_FAILED : 0, f);
    }
    errno = err;
    return pid;
}

/* Before the image is replaced: everything buffered is written, then END, and the new image is
 * told through MEMTRACE_EXEC_PID that it continues this process (its header says "exec").
 * Returns the environment to pass on (a private copy in an anonymous mapping, *map_len bytes, or
 * `envp` itself when nothing is to be done). If the exec fails, tracing goes on. */
static char exec_var[64];

static char **before_exec(char *const envp[], size_t *map_len)
{
    *map_len = 0;
    if (mt_hook_ready() != 0 || mt_guard_active())
        return (char **)envp;
    /* A vfork child (or a raw clone) shares our memory but is another process: its exec must not
     * end our trace (pitfalls.md §9). */
    int pid = (int)syscall(SYS_getpid);
    if (pid != mt_writer_pid())
        return (char **)envp;
    event0(MTF_EV_EXEC, 0, NULL);
    mt_init_finish(MTF_END_EXEC, -1);
    size_t n = 0;
    while (envp != NULL && envp[n] != NULL)
        n++;
    *map_len = ((n + 2) * sizeof(char *) + 4095) & ~(size_t)4095;
    long m = syscall(SYS_mmap, NULL, *map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (m < 0 && m > -4096) {
        *map_len = 0;
        return (char **)envp;
    }
    char **out = (char **)m;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(envp[i], MT_EXEC_PID_VAR "=", sizeof MT_EXEC_PID_VAR) != 0)
            out[k++] = envp[i];
    char num[16];
    size_t d = 0;
    do {
        num[d++] = (char)('0' + pid % 10);
        pid /= 10;
    } while (pid > 0);
    size_t v = sizeof MT_EXEC_PID_VAR - 1;
    memcpy(exec_var, MT_EXEC_PID_VAR "=", v + 1);
    for (size_t i = 0; i < d; i++)
        exec_var[v + 1 + i] = num[d - 1 - i];
    exec_var[v + 1 + d] = '\0';
    out[k++] = exec_var;
    out[k] = NULL;
    return out;
}

static int after_exec_failed(int rc, char **env, size_t map_len)
{
    int err = errno;
    if (map_len != 0) {
        syscall(SYS_munmap, env, map_len);
        mt_init_exec_failed();
    }
    errno = err;
    return rc;
}

extern char **environ;

MT_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    size_t len;
    char **env = before_exec(envp, &len);
    return after_exec_failed(mt_real.execve(path, argv, env), env, len);
}

MT_EXPORT int execv(const char *path, char *const argv[])
{
    size_t len;
    char **env = before_exec(environ, &len);
    return after_exec_failed(mt_real.execve(path, argv, env), env, len);
}

MT_EXPORT int execvp(const char *file, char *const argv[])
{
    size_t len;
    char **env = before_exec(environ, &len);
    return after_exec_failed(mt_real.execvpe(file, argv, env), env, len);
}

MT_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    size_t len;
    char **env = before_exec(envp, &len);
    return after_exec_failed(mt_real.execvpe(file, argv, env), env, len);
}

MT_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
    size_t len;
    char **env = before_exec(envp, &len);
    return after_exec_failed(mt_real.fexecve(fd, argv, env), env, len);
}

/* execl, execlp, execle: glibc builds an argv and calls execve/execvpe internally, where we
 * cannot see it, so they are rebuilt here. The array lives in an anonymous mapping: no malloc
 * between a fork and an exec. */
static char **collect(const char *arg0, va_list ap, size_t *map_len, char ***envp_out)
{
    va_list count;
    va_copy(count, ap);
    size_t n = 1;
    while (va_arg(count, const char *) != NULL)
        n++;
    va_end(count);
    *map_len = ((n + 1) * sizeof(char *) + 4095) & ~(size_t)4095;
    long m = syscall(SYS_mmap, NULL, *map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (m < 0 && m > -4096) {
        errno = ENOMEM;
        return NULL;
    }
    char **argv = (char **)m;
    argv[0] = (char *)arg0;
    for (size_t i = 1; i <= n; i++)
        argv[i] = va_arg(ap, char *);
    if (envp_out != NULL)
        *envp_out = va_arg(ap, char **);
    return argv;
}

#define EXECL_BODY(call, with_env)                                                                 \
    va_list ap;                                                                                    \
    va_start(ap, arg);                                                                             \
    size_t map_len = 0;                                                                            \
    char **envp = environ;                                                                         \
    char **argv = collect(arg, ap, &map_len, (with_env) ? &envp : NULL);                           \
    va_end(ap);                                                                                    \
    if (argv == NULL)                                                                              \
        return -1;                                                                                 \
    int rc = call;                                                                                 \
    int err = errno;                                                                               \
    syscall(SYS_munmap, argv, map_len);                                                            \
    errno = err;                                                                                   \
    return rc;

MT_EXPORT int execl(const char *path, const char *arg,
                    ...){ EXECL_BODY(execve(path, argv, envp), 0) }

MT_EXPORT
    int execlp(const char *file, const char *arg, ...){ EXECL_BODY(execvpe(file, argv, envp), 0) }

MT_EXPORT
    int execle(const char *path, const char *arg, ...){ EXECL_BODY(execve(path, argv, envp), 1) }

MT_EXPORT void exit(int status)
{
    mt_init_note_status(status);
    mt_reach_scrub_stack();
    if (mt_hook_ready() != 0)
        syscall(SYS_exit_group, status);
    mt_real.exit(status);
}

MT_EXPORT void _exit(int status)
{
    if (mt_hook_ready() == 0 && !mt_guard_active())
        mt_init_finish(MTF_END_EXIT, status);
    syscall(SYS_exit_group, status);
    __builtin_unreachable();
}

MT_EXPORT void _Exit(int status)
{
    _exit(status);
}

MT_EXPORT void abort(void)
{
    if (mt_hook_ready() == 0 && !mt_guard_active())
        mt_init_finish(MTF_END_SIGNAL, SIGABRT);
    if (mt_real.ready)
        mt_real.abort();
    raise(SIGABRT);
    syscall(SYS_exit_group, 128 + SIGABRT);
    __builtin_unreachable();
}

static void after_dl_change(void)
{
    if (mt_guard_active())
        return;
    mt_guard_set(MT_IN_SHIM);
    mt_modules_update(0);
    mt_guard_set(MT_IN_NONE);
}

MT_EXPORT void *dlopen(const char *file, int mode)
{
    if (mt_hook_ready() != 0)
        return NULL;
    void *h = mt_real.dlopen(file, mode);
    if (h != NULL)
        after_dl_change();
    return h;
}

MT_EXPORT void *dlmopen(Lmid_t lmid, const char *file, int mode)
{
    if (mt_hook_ready() != 0)
        return NULL;
    void *h = mt_real.dlmopen(lmid, file, mode);
    if (h != NULL)
        after_dl_change();
    return h;
}

MT_EXPORT int dlclose(void *handle)
{
    if (mt_hook_ready() != 0)
        return -1;
    int rc = mt_real.dlclose(handle);
    if (rc == 0) {
        mt_unwind_forget(); /* another object may be mapped where this one was */
        after_dl_change();
    }
    return rc;
}

/* Wrapping main is the only way to learn the status of a program that returns from it: libc
 * then calls exit() internally, out of our reach. */
static int (*real_main)(int, char **, char **);

static int main_wrapper(int argc, char **argv, char **envp)
{
    int status = real_main(argc, argv, envp);
    mt_init_note_status(status);
    mt_reach_scrub_stack();
    return status;
}

MT_EXPORT int __libc_start_main(int (*main)(int, char **, char **), int argc, char **argv,
                                void (*init)(void), void (*fini)(void), void (*rtld_fini)(void),
                                void *stack_end)
{
    mt_init_early();
    real_main = main;
    return mt_real.libc_start_main(main_wrapper, argc, argv, init, fini, rtld_fini, stack_end);
}
