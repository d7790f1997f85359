/* preload/log.c: the allocation-free formatter, errno texts, and the one-line messages on fd 2
 * with their cap. Output is captured at the descriptor (cr_redirect_stderr), since log.c writes
 * with a raw write(2); mt_fatal ends the process, so its message is read from a forked child.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "mt.h"

static void log_setup(void)
{
    mt_log_reset();
}

TestSuite(log, .init = log_setup, .timeout = 10);

/* Everything the test process wrote to fd 2 so far (after cr_redirect_stderr). */
static size_t read_stderr(char *out, size_t cap)
{
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    return n;
}

/* ---- mt_log_format: one conversion at a time ------------------------------------------------- */

/* One row per conversion; the format is picked from the type in the test body so the compiler
 * still checks every call's arguments against it. */
enum conv { C_D, C_U, C_X, C_LD, C_LU, C_LX, C_LLD, C_LLU, C_ZU, C_P };

struct conv_case {
    enum conv conv;
    union {
        int i;
        unsigned u;
        long l;
        unsigned long ul;
        long long ll;
        unsigned long long ull;
        size_t z;
        uintptr_t p;
    } v;
    char want[32];
};

ParameterizedTestParameters(log, formats_integer_conversion)
{
    static struct conv_case cases[] = {
        { C_D, { .i = 0 }, "0" },
        { C_D, { .i = -1 }, "-1" },
        { C_D, { .i = INT_MIN }, "-2147483648" },
        { C_D, { .i = INT_MAX }, "2147483647" },
        { C_U, { .u = UINT_MAX }, "4294967295" },
        { C_X, { .u = 0xdeadbeef }, "deadbeef" },
        { C_X, { .u = 0 }, "0" },
        { C_LD, { .l = LONG_MIN }, "-9223372036854775808" },
        { C_LU, { .ul = ULONG_MAX }, "18446744073709551615" },
        { C_LX, { .ul = 0x123456789abcdef0UL }, "123456789abcdef0" },
        { C_LLD, { .ll = LLONG_MIN }, "-9223372036854775808" },
        { C_LLD, { .ll = LLONG_MAX }, "9223372036854775807" },
        { C_LLD, { .ll = -42 }, "-42" },
        { C_LLU, { .ull = ULLONG_MAX }, "18446744073709551615" },
        { C_LLU, { .ull = 0 }, "0" },
        { C_ZU, { .z = SIZE_MAX }, "18446744073709551615" },
        { C_ZU, { .z = 4096 }, "4096" },
        { C_P, { .p = 0x7f0012345678 }, "0x7f0012345678" },
        { C_P, { .p = 0x10 }, "0x10" },
    };
    return cr_make_param_array(struct conv_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct conv_case *c, log, formats_integer_conversion)
{
    char buf[64];
    size_t n = 0;
    switch (c->conv) {
    case C_D:
        n = mt_log_fmt(buf, sizeof buf, "%d", c->v.i);
        break;
    case C_U:
        n = mt_log_fmt(buf, sizeof buf, "%u", c->v.u);
        break;
    case C_X:
        n = mt_log_fmt(buf, sizeof buf, "%x", c->v.u);
        break;
    case C_LD:
        n = mt_log_fmt(buf, sizeof buf, "%ld", c->v.l);
        break;
    case C_LU:
        n = mt_log_fmt(buf, sizeof buf, "%lu", c->v.ul);
        break;
    case C_LX:
        n = mt_log_fmt(buf, sizeof buf, "%lx", c->v.ul);
        break;
    case C_LLD:
        n = mt_log_fmt(buf, sizeof buf, "%lld", c->v.ll);
        break;
    case C_LLU:
        n = mt_log_fmt(buf, sizeof buf, "%llu", c->v.ull);
        break;
    case C_ZU:
        n = mt_log_fmt(buf, sizeof buf, "%zu", c->v.z);
        break;
    case C_P:
        n = mt_log_fmt(buf, sizeof buf, "%p", (void *)c->v.p);
        break;
    }
    cr_expect(eq(str, buf, c->want), "conversion %d", (int)c->conv);
    cr_expect(eq(sz, n, strlen(c->want)), "conversion %d: returned length", (int)c->conv);
}

Test(log, formats_null_string_as_placeholder)
{
    char buf[32];
    /* %s of NULL is undefined for printf; ours must not crash inside a hook. volatile keeps the
     * compiler from proving the argument NULL and warning about it. */
    const char *volatile none = NULL;
    size_t n = mt_log_fmt(buf, sizeof buf, "[%s]", none);
    cr_expect(eq(str, buf, "[(null)]"));
    cr_expect(eq(sz, n, 8));
}

Test(log, formats_strings_percent_and_mixed_text)
{
    char buf[128];
    size_t n = mt_log_fmt(buf, sizeof buf, "%s: offset %llu: %d%% of %zu at %p", "run.mtrace",
                          4096ULL, -5, (size_t)7, (void *)0xabc);
    const char *want = "run.mtrace: offset 4096: -5% of 7 at 0xabc";
    cr_expect(eq(str, buf, (char *)want));
    cr_expect(eq(sz, n, strlen(want)));
    cr_expect(eq(sz, mt_log_fmt(buf, sizeof buf, "%%"), 1));
    cr_expect(eq(str, buf, "%"));
    cr_expect(eq(sz, mt_log_fmt(buf, sizeof buf, "%s", ""), 0));
    cr_expect(eq(str, buf, ""));
}

/* ---- truncation ------------------------------------------------------------------------------ */

Test(log, truncates_into_small_buffer_with_terminator)
{
    char buf[16];
    memset(buf, 'X', sizeof buf);
    size_t n = mt_log_fmt(buf, 5, "hello %s", "world");
    cr_expect(eq(str, buf, "hell"));
    cr_expect(eq(sz, n, 4), "returns the length written, not the length wanted");
    cr_expect(eq(chr, buf[5], 'X'), "nothing written past cap");

    memset(buf, 'X', sizeof buf);
    n = mt_log_fmt(buf, 4, "%d", 123456);
    cr_expect(eq(str, buf, "123"), "a number is cut, not dropped");
    cr_expect(eq(sz, n, 3));
    cr_expect(eq(chr, buf[4], 'X'));

    memset(buf, 'X', sizeof buf);
    n = mt_log_fmt(buf, 8, "%llu", ULLONG_MAX);
    cr_expect(eq(str, buf, "1844674"));
    cr_expect(eq(sz, n, 7));
    cr_expect(eq(chr, buf[8], 'X'));
}

Test(log, truncates_to_empty_with_cap_one_and_leaves_cap_zero_untouched)
{
    char buf[4] = { 'X', 'X', 'X', 'X' };
    cr_expect(eq(sz, mt_log_fmt(buf, 1, "abc%d", 12), 0));
    cr_expect(eq(chr, buf[0], '\0'), "cap 1 holds only the terminator");
    cr_expect(eq(chr, buf[1], 'X'));
    buf[0] = 'X';
    cr_expect(eq(sz, mt_log_fmt(buf, 0, "abc"), 0));
    cr_expect(eq(chr, buf[0], 'X'), "cap 0 writes nothing");
}

Test(log, truncation_exactly_at_cap_boundary)
{
    char buf[8];
    memset(buf, 'X', sizeof buf);
    cr_expect(eq(sz, mt_log_fmt(buf, 7, "abcdef"), 6), "6 characters fit in cap 7");
    cr_expect(eq(str, buf, "abcdef"));
    cr_expect(eq(sz, mt_log_fmt(buf, 7, "abcdefg"), 6), "7 characters do not");
    cr_expect(eq(str, buf, "abcdef"));
    cr_expect(eq(chr, buf[7], 'X'));
}

/* ---- errno texts ----------------------------------------------------------------------------- */

Test(log, errno_text_names_common_errors)
{
    cr_expect(eq(str, (char *)mt_log_errno_text(ENOSPC), "No space left on device"));
    cr_expect(eq(str, (char *)mt_log_errno_text(ENOENT), "No such file or directory"));
    cr_expect(eq(str, (char *)mt_log_errno_text(EACCES), "Permission denied"));
    cr_expect(eq(str, (char *)mt_log_errno_text(EEXIST), "File exists"));
}

Test(log, errno_text_numbers_unknown_error)
{
    cr_expect(eq(str, (char *)mt_log_errno_text(4242), "error 4242"));
    cr_expect(eq(str, (char *)mt_log_errno_text(0), "error 0"));
    cr_expect(eq(str, (char *)mt_log_errno_text(-3), "error -3"));
}

/* ---- messages on fd 2 ------------------------------------------------------------------------ */

Test(log, error_writes_one_prefixed_line, .init = cr_redirect_stderr)
{
    mt_log_error("cannot open %s: %d", "x.mtrace", 5);
    cr_assert_stderr_eq_str("memtrace: error: cannot open x.mtrace: 5\n");
}

Test(log, warn_writes_one_prefixed_line, .init = cr_redirect_stderr)
{
    mt_log_warn("stack table %s", "full");
    cr_assert_stderr_eq_str("memtrace: warning: stack table full\n");
}

Test(log, raw_writes_text_without_prefix, .init = cr_redirect_stderr)
{
    mt_log_raw("two\nlines\n", 10);
    cr_assert_stderr_eq_str("two\nlines\n");
}

Test(log, error_preserves_errno, .init = cr_redirect_stderr)
{
    errno = EDOM;
    mt_log_error("a %s", "message");
    cr_expect(eq(int, errno, EDOM));
    errno = ERANGE;
    mt_log_warn("a warning");
    cr_expect(eq(int, errno, ERANGE));
    errno = EILSEQ;
    mt_log_raw("x\n", 2);
    cr_expect(eq(int, errno, EILSEQ));
}

Test(log, error_preserves_errno_when_stderr_is_closed)
{
    cr_assert(eq(int, close(2), 0));
    errno = EDOM;
    mt_log_error("nobody reads this"); /* write(2) fails with EBADF */
    cr_expect(eq(int, errno, EDOM), "errno %d after a failed write", errno);
}

Test(log, long_message_is_cut_to_one_line, .init = cr_redirect_stderr)
{
    static char big[6000];
    memset(big, 'a', sizeof big - 1);
    mt_log_error("%s", big);
    static char out[8192];
    size_t n = read_stderr(out, sizeof out);
    const char *prefix = "memtrace: error: aaaa";
    cr_expect(eq(int, strncmp(out, prefix, strlen(prefix)), 0));
    cr_assert(gt(sz, n, 0));
    cr_expect(eq(chr, out[n - 1], '\n'), "ends with a newline");
    cr_expect(eq(ptr, strchr(out, '\n'), out + n - 1), "exactly one newline");
    cr_expect(le(sz, n, MT_LOG_LINE_MAX), "bounded by the stack buffer: %zu bytes", n);
    cr_expect(ge(sz, n, 4096 + 17), "a whole path fits: %zu bytes", n);
}

/* ---- the cap --------------------------------------------------------------------------------- */

static void expect_capped_output(const char *kind)
{
    static char want[4096], out[4096];
    size_t n = 0;
    for (int i = 0; i < MT_LOG_MAX_ERRORS; i++)
        n += (size_t)snprintf(want + n, sizeof want - n, "memtrace: %s: message %d\n", kind, i);
    snprintf(want + n, sizeof want - n, "memtrace: %s: further messages suppressed\n", kind);
    read_stderr(out, sizeof out);
    cr_expect(eq(str, out, want));
}

Test(log, suppresses_after_cap_with_one_notice, .init = cr_redirect_stderr)
{
    for (int i = 0; i < MT_LOG_MAX_ERRORS + 5; i++)
        mt_log_error("message %d", i);
    expect_capped_output("error");
}

Test(log, cap_counts_warnings_too, .init = cr_redirect_stderr)
{
    for (int i = 0; i < MT_LOG_MAX_ERRORS + 3; i++)
        mt_log_warn("message %d", i);
    expect_capped_output("warning");
}

Test(log, suppressed_message_preserves_errno, .init = cr_redirect_stderr)
{
    for (int i = 0; i < MT_LOG_MAX_ERRORS + 2; i++)
        mt_log_error("message %d", i);
    errno = EXDEV;
    mt_log_error("silent");
    cr_expect(eq(int, errno, EXDEV));
}

Test(log, reset_restores_budget, .init = cr_redirect_stderr)
{
    for (int i = 0; i < MT_LOG_MAX_ERRORS + 2; i++)
        mt_log_error("before %d", i);
    mt_log_reset();
    mt_log_error("after reset");
    static char out[4096];
    read_stderr(out, sizeof out);
    const char *tail = "memtrace: error: further messages suppressed\n"
                       "memtrace: error: after reset\n";
    size_t n = strlen(out), k = strlen(tail);
    cr_assert(ge(sz, n, k));
    cr_expect(eq(str, out + n - k, (char *)tail), "output: %s", out);
}

Test(log, raw_is_not_capped, .init = cr_redirect_stderr)
{
    for (int i = 0; i < MT_LOG_MAX_ERRORS + 2; i++)
        mt_log_error("m");
    mt_log_raw("still here\n", 11);
    static char out[4096];
    read_stderr(out, sizeof out);
    size_t n = strlen(out);
    cr_assert(ge(sz, n, 11));
    cr_expect(eq(str, out + n - 11, "still here\n"));
}

/* ---- mt_fatal -------------------------------------------------------------------------------- */

Test(log, fatal_exits_with_given_status, .init = cr_redirect_stderr, .exit_code = MT_EXIT_CONFIG)
{
    mt_fatal(MT_EXIT_CONFIG, "bad configuration");
}

Test(log, fatal_prints_message_even_after_cap)
{
    int fds[2];
    cr_assert(eq(int, pipe(fds), 0));
    pid_t pid = fork();
    cr_assert(ge(int, pid, 0));
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        for (int i = 0; i < MT_LOG_MAX_ERRORS + 2; i++)
            mt_log_error("m");
        mt_fatal(7, "giving up on %s", "it");
    }
    close(fds[1]);
    static char out[4096];
    size_t n = 0;
    ssize_t r;
    while (n + 1 < sizeof out && (r = read(fds[0], out + n, sizeof out - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fds[0]);
    int status;
    cr_assert(eq(int, waitpid(pid, &status, 0), pid));
    cr_assert(eq(int, WIFEXITED(status), 1), "ended by signal %d", WTERMSIG(status));
    cr_expect(eq(int, WEXITSTATUS(status), 7));
    const char *last = "memtrace: error: giving up on it\n";
    size_t k = strlen(last);
    cr_assert(ge(sz, n, k));
    cr_expect(eq(str, out + n - k, (char *)last), "a fatal message is never suppressed: %s", out);
}
