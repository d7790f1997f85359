/* robust_signal: malloc and free from a signal handler that interrupts a malloc/free loop (and
 * so, often, the shim itself). An interval timer fires SIGALRM every 50 µs (20 kHz, or as fast as
 * the kernel delivers); the handler mallocs and frees one block.
 *   robust_signal MAIN_ITERATIONS MIN_SIGNALS
 * runs the loop at least MAIN_ITERATIONS times and until the handler ran MIN_SIGNALS times (or 20 s
 * passed), then prints how many calls were made with each marker size:
 *   main_malloc=N main_free=N handler_malloc=N handler_free=N
 * MAIN_SIZE is used by the loop, HANDLER_SIZE by the handler (and by one warm-up call in main
 * before the timer starts, counted with the handler's). Both are tcache sizes of different bins,
 * warmed up before the timer starts, so the handler's malloc never re-enters glibc's own bin
 * management while the loop is inside it (glibc malloc is not async-signal-safe; only the
 * shim's reentrancy is under test).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

#define MAIN_SIZE    1001
#define HANDLER_SIZE 937

static volatile sig_atomic_t h_malloc, h_free;
static char *volatile h_ptr; /* volatile: the calls must not be optimised away */

static void on_alarm(int sig)
{
    (void)sig;
    char *p = malloc(HANDLER_SIZE);
    if (p != NULL) {
        h_malloc++;
        h_ptr = p;
        p[0] = 1;
        free(h_ptr);
        h_free++;
    }
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? atol(argv[1]) : 200000;
    long min_signals = argc > 2 ? atol(argv[2]) : 2000;
    long m_malloc = 0, m_free = 0;
    char *volatile p;

    /* warm-up: both bins get a cached chunk before any signal can arrive */
    p = malloc(MAIN_SIZE);
    m_malloc++;
    free(p);
    m_free++;
    h_ptr = malloc(HANDLER_SIZE);
    h_malloc++;
    free(h_ptr);
    h_free++;

    struct sigaction sa = { 0 };
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) != 0)
        return 1;
    struct itimerval it = { { 0, 50 }, { 0, 50 } };
    if (setitimer(ITIMER_REAL, &it, NULL) != 0)
        return 1;
    time_t deadline = time(NULL) + 20;
    for (long i = 0; i < iterations || h_malloc <= min_signals; i++) {
        p = malloc(MAIN_SIZE);
        if (p == NULL)
            return 1;
        m_malloc++;
        p[0] = 1;
        free(p);
        m_free++;
        if (i % 4096 == 0 && time(NULL) > deadline)
            break;
    }
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_IGN);
    printf("main_malloc=%ld main_free=%ld handler_malloc=%ld handler_free=%ld\n", m_malloc, m_free,
           (long)h_malloc, (long)h_free);
    return 0;
}
