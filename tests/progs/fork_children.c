/* fork_children: process creation with countable allocations on each side.
 *
 *   fork_children fork exit|_exit  parent: 100 x malloc(11111) before fork, 70 x malloc(33333)
 *                                  after; child: 50 x malloc(22222), then exit(0) or _exit(0)
 *   fork_children storm F          4 threads malloc/free in a loop while main forks F children
 *                                  quickly; each child makes 10 x malloc(44444) and _exit(0)s.
 *                                  A child not done within 10 s is killed and counted as hung.
 *   fork_children spawn            posix_spawn(self, "child", "66666"), then
 *                                  system("<self> child 77777")
 *   fork_children child SIZE       10 x malloc(SIZE), prints "child <pid> other=<0|1>
 *                                  LD_PRELOAD=<value>" (other: libfork_other.so is loaded)
 *   fork_children vfork            5 x malloc(12121); vfork, the child execs self "child" "13131"
 *                                  (the legal vfork use: exec straight away); the parent then
 *                                  makes 5 x malloc(14141)
 *   fork_children env              posix_spawn(self, "child", "88888") with the environment
 *                                  as is, so the child reports the LD_PRELOAD it inherited
 *
 * Every child's pid is printed on stdout ("forked <pid>", "spawned <pid>") for the tests.
 * Pointers go through volatiles so GCC keeps every malloc/free pair.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static __thread void *volatile sink;

static void allocate(int n, size_t size)
{
    for (int i = 0; i < n; i++) {
        sink = malloc(size);
        free(sink);
    }
}

static atomic_int stop;

static void *busy_thread(void *arg)
{
    size_t size = 100 + (size_t)(long)arg;
    while (!atomic_load(&stop))
        allocate(1, size);
    return NULL;
}

/* waitpid with a deadline: 0 exited with status 0, 1 bad status, 2 hung (killed). */
static int wait_child(pid_t pid, int seconds)
{
    struct timespec nap = { 0, 1000000 };
    for (long i = 0; i < seconds * 1000L; i++) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
        if (r < 0 && errno != EINTR)
            return 1;
        nanosleep(&nap, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 2;
}

static int do_fork(int use_exit)
{
    allocate(100, 11111);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        allocate(50, 22222);
        if (use_exit)
            exit(0);
        _exit(0);
    }
    printf("forked %d\n", (int)pid);
    allocate(70, 33333);
    return wait_child(pid, 20) != 0;
}

static int do_storm(int forks)
{
    pthread_t th[4];
    for (long i = 0; i < 4; i++)
        if (pthread_create(&th[i], NULL, busy_thread, (void *)i) != 0)
            return 1;
    pid_t pids[1000];
    if (forks > 1000)
        return 2;
    fflush(stdout);
    for (int i = 0; i < forks; i++) {
        pids[i] = fork();
        if (pids[i] < 0)
            return 1;
        if (pids[i] == 0) {
            allocate(10, 44444);
            _exit(0);
        }
    }
    int hung = 0, bad = 0;
    for (int i = 0; i < forks; i++) {
        int r = wait_child(pids[i], 10);
        hung += r == 2;
        bad += r == 1;
        printf("forked %d\n", (int)pids[i]);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    printf("hung %d bad %d\n", hung, bad);
    return hung || bad;
}

static int spawn_self(const char *size, pid_t *pid)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 1;
    self[n] = '\0';
    char *argv[] = { self, "child", (char *)size, NULL };
    int rc = posix_spawn(pid, self, NULL, NULL, argv, environ);
    if (rc != 0)
        return 1;
    printf("spawned %d\n", (int)*pid);
    fflush(stdout);
    return wait_child(*pid, 20) != 0;
}

static int do_spawn(void)
{
    pid_t pid;
    if (spawn_self("66666", &pid) != 0)
        return 1;
    char self[4096], cmd[8192];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 1;
    self[n] = '\0';
    snprintf(cmd, sizeof cmd, "'%s' child 77777", self);
    fflush(stdout);
    int st = system(cmd);
    return !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static int do_vfork(void)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 1;
    self[n] = '\0';
    char *argv[] = { self, "child", "13131", NULL };
    allocate(5, 12121);
    fflush(stdout);
    pid_t pid = vfork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        execv(self, argv);
        _exit(127);
    }
    printf("spawned %d\n", (int)pid);
    allocate(5, 14141);
    return wait_child(pid, 20) != 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr,
                "usage: fork_children fork exit|_exit | storm F | spawn | vfork | child SIZE "
                "| env\n");
        return 2;
    }
    if (strcmp(argv[1], "fork") == 0 && argc > 2)
        return do_fork(strcmp(argv[2], "exit") == 0);
    if (strcmp(argv[1], "storm") == 0 && argc > 2)
        return do_storm(atoi(argv[2]));
    if (strcmp(argv[1], "spawn") == 0)
        return do_spawn();
    if (strcmp(argv[1], "vfork") == 0)
        return do_vfork();
    if (strcmp(argv[1], "env") == 0) {
        pid_t pid;
        return spawn_self("88888", &pid);
    }
    if (strcmp(argv[1], "child") == 0 && argc > 2) {
        allocate(10, strtoul(argv[2], NULL, 10));
        const char *pre = getenv("LD_PRELOAD");
        int other = dlsym(RTLD_DEFAULT, "fork_other_marker") != NULL;
        printf("child %d other=%d LD_PRELOAD=%s\n", (int)getpid(), other, pre ? pre : "(unset)");
        return 0;
    }
    return 2;
}
