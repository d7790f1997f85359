/* preload/config.c: MEMTRACE_* parsing. mt_config_parse is pure, so each case hands it an envp
 * array and checks the struct or the error text; mt_config_load is checked in a forked child
 * because it ends the process. Expected values are worked out by hand from config.h (units are
 * powers of 1024, DEPTH 1..256, BUFFER 4K..64M), never computed with the parser under test.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "mt.h"

TestSuite(config, .timeout = 10);

#define ERR_CAP 512

/* The error text must be one line (mt_fatal adds the prefix and the newline). */
static void expect_one_line(const char *err)
{
    cr_expect(ne(sz, strlen(err), 0), "a rejected value comes with an error text");
    cr_expect(zero(ptr, (void *)strchr(err, '\n')), "error text is one line: \"%s\"", err);
}

/* ---- accepted values ------------------------------------------------------------------------- */

/* Parameters hold no pointers to static data: Criterion runs each case in a fresh process whose
 * addresses differ (ASLR), so strings live inside the struct or in cr_malloc memory. */
#define TEXT_MAX 48

struct good_case {
    char env[3][TEXT_MAX];
    char output[TEXT_MAX]; /* expected cfg.output */
    uint32_t max_frames;
    uint32_t buffer_bytes;
};

ParameterizedTestParameters(config, accepts_valid_value)
{
    static struct good_case cases[] = {
        { { "MEMTRACE_DEPTH=1" }, MT_DEFAULT_OUTPUT, 1, MT_DEFAULT_BUFFER_BYTES },
        { { "MEMTRACE_DEPTH=256" }, MT_DEFAULT_OUTPUT, 256, MT_DEFAULT_BUFFER_BYTES },
        { { "MEMTRACE_DEPTH=64" }, MT_DEFAULT_OUTPUT, 64, MT_DEFAULT_BUFFER_BYTES },
        { { "MEMTRACE_BUFFER=16K" }, MT_DEFAULT_OUTPUT, MT_DEFAULT_MAX_FRAMES, 16384 },
        { { "MEMTRACE_BUFFER=1.5M" }, MT_DEFAULT_OUTPUT, MT_DEFAULT_MAX_FRAMES, 1572864 },
        { { "MEMTRACE_BUFFER=64M" }, MT_DEFAULT_OUTPUT, MT_DEFAULT_MAX_FRAMES, 67108864 },
        { { "MEMTRACE_BUFFER=4096" }, MT_DEFAULT_OUTPUT, MT_DEFAULT_MAX_FRAMES, 4096 },
        { { "MEMTRACE_BUFFER=4K" }, MT_DEFAULT_OUTPUT, MT_DEFAULT_MAX_FRAMES, 4096 },
        { { "MEMTRACE_BUFFER=1MiB" }, MT_DEFAULT_OUTPUT, MT_DEFAULT_MAX_FRAMES, 1048576 },
        { { "MEMTRACE_BUFFER=512KB" }, MT_DEFAULT_OUTPUT, MT_DEFAULT_MAX_FRAMES, 524288 },
        { { "MEMTRACE_OUTPUT=/tmp/t.%e.%p.%%.mtrace" },
          "/tmp/t.%e.%p.%%.mtrace",
          MT_DEFAULT_MAX_FRAMES,
          MT_DEFAULT_BUFFER_BYTES },
        { { "MEMTRACE_OUTPUT=run.mtrace" },
          "run.mtrace",
          MT_DEFAULT_MAX_FRAMES,
          MT_DEFAULT_BUFFER_BYTES },
        { { "MEMTRACE_DEPTH=8", "MEMTRACE_BUFFER=8K", "MEMTRACE_OUTPUT=/x/%p" }, "/x/%p", 8, 8192 },
    };
    return cr_make_param_array(struct good_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct good_case *c, config, accepts_valid_value)
{
    struct mt_config cfg;
    char err[ERR_CAP] = "";
    char *env[4] = { 0 };
    for (int i = 0; i < 3 && c->env[i][0] != '\0'; i++)
        env[i] = c->env[i];
    int rc = mt_config_parse(&cfg, env, err, sizeof err);
    cr_assert(eq(int, rc, 0), "%s: rejected: %s", c->env[0], err);
    cr_expect(eq(str, cfg.output, c->output), "%s: output", c->env[0]);
    cr_expect(eq(u32, cfg.max_frames, c->max_frames), "%s: max_frames", c->env[0]);
    cr_expect(eq(u32, cfg.buffer_bytes, c->buffer_bytes), "%s: buffer_bytes", c->env[0]);
}

/* ---- rejected values ------------------------------------------------------------------------- */

struct bad_case {
    char var[TEXT_MAX];   /* the environment entry */
    char *long_var;       /* or, when set, this one (cr_malloc) */
    char names[TEXT_MAX]; /* the error text must contain this: the variable, with the value */
    char hint[TEXT_MAX];  /* and this (what is expected), unless empty */
};

#define LONG_OUTPUT_BYTES 5000

/* The last case's variable is the only one built at run time (ParameterizedTestParameters). */
static void free_bad_cases(struct criterion_test_params *p)
{
    struct bad_case *c = p->params;
    cr_free(c[p->length - 1].long_var);
    cr_free(c);
}

ParameterizedTestParameters(config, rejects_invalid_value)
{
    static const struct bad_case fixed[] = {
        { "MEMTRACE_DEPTH=abc", NULL, "MEMTRACE_DEPTH=abc", "1..256" },
        { "MEMTRACE_DEPTH=-1", NULL, "MEMTRACE_DEPTH=-1", "1..256" },
        { "MEMTRACE_DEPTH=0", NULL, "MEMTRACE_DEPTH=0", "1..256" },
        { "MEMTRACE_DEPTH=257", NULL, "MEMTRACE_DEPTH=257", "1..256" },
        { "MEMTRACE_DEPTH=99999999999999999999", NULL, "MEMTRACE_DEPTH=99999999999999999999",
          "1..256" },
        { "MEMTRACE_DEPTH=12abc", NULL, "MEMTRACE_DEPTH=12abc", "1..256" },
        { "MEMTRACE_DEPTH=", NULL, "MEMTRACE_DEPTH=", "1..256" },
        { "MEMTRACE_DEPTH= 5", NULL, "MEMTRACE_DEPTH= 5", "1..256" },
        { "MEMTRACE_DEPTH=+5", NULL, "MEMTRACE_DEPTH=+5", "1..256" },
        { "MEMTRACE_BUFFER=1", NULL, "MEMTRACE_BUFFER=1", "4K..64M" },
        { "MEMTRACE_BUFFER=4095", NULL, "MEMTRACE_BUFFER=4095", "4K..64M" },
        { "MEMTRACE_BUFFER=12Q", NULL, "MEMTRACE_BUFFER=12Q", "4K..64M" },
        { "MEMTRACE_BUFFER=-5K", NULL, "MEMTRACE_BUFFER=-5K", "4K..64M" },
        { "MEMTRACE_BUFFER=999999T", NULL, "MEMTRACE_BUFFER=999999T", "4K..64M" },
        { "MEMTRACE_BUFFER=1.5", NULL, "MEMTRACE_BUFFER=1.5", "4K..64M" },
        { "MEMTRACE_BUFFER=1.5KB?", NULL, "MEMTRACE_BUFFER=1.5KB?", "4K..64M" },
        { "MEMTRACE_BUFFER=65M", NULL, "MEMTRACE_BUFFER=65M", "4K..64M" },
        { "MEMTRACE_BUFFER=", NULL, "MEMTRACE_BUFFER=", "4K..64M" },
        { "MEMTRACE_OUTPUT=", NULL, "MEMTRACE_OUTPUT", "" },
        { "MEMTRACE_OUTPUT=x%q", NULL, "MEMTRACE_OUTPUT=x%q", "%q" },
        { "MEMTRACE_OUTPUT=x%", NULL, "MEMTRACE_OUTPUT=x%", "" },
        { "MEMTRACE_HEAP_LIMIT=0", NULL, "MEMTRACE_HEAP_LIMIT=0", "512M" },
        { "MEMTRACE_HEAP_LIMIT=-1", NULL, "MEMTRACE_HEAP_LIMIT=-1", "512M" },
        { "MEMTRACE_HEAP_LIMIT=", NULL, "MEMTRACE_HEAP_LIMIT=", "512M" },
        { "MEMTRACE_HEAP_LIMIT=12abc", NULL, "MEMTRACE_HEAP_LIMIT=12abc", "512M" },
        { "MEMTRACE_HEAP_LIMIT=16E", NULL, "MEMTRACE_HEAP_LIMIT=16E", "512M" },
        { "MEMTRACE_HEAP_LIMIT=99999999999999999999", NULL,
          "MEMTRACE_HEAP_LIMIT=99999999999999999999", "512M" },
        { "MEMTRACE_HEAP_LIMIT=1.5", NULL, "MEMTRACE_HEAP_LIMIT=1.5", "512M" },
        { "MEMTRACE_EXTERNAL_LIMIT=lots", NULL, "MEMTRACE_EXTERNAL_LIMIT=lots", "512M" },
        { "MEMTRACE_EXTERNAL_LIMIT=0", NULL, "MEMTRACE_EXTERNAL_LIMIT=0", "512M" },
        { "MEMTRACE_ON_LIMIT=crash", NULL, "MEMTRACE_ON_LIMIT=crash", "abort or enomem" },
        { "MEMTRACE_ON_LIMIT=", NULL, "MEMTRACE_ON_LIMIT=", "abort or enomem" },
        { "MEMTRACE_ON_LIMIT=ABORT", NULL, "MEMTRACE_ON_LIMIT=ABORT", "abort or enomem" },
        { "MEMTRACE_INTERVAL=100", NULL, "MEMTRACE_INTERVAL=100", "100ms" },
        { "MEMTRACE_INTERVAL=0ms", NULL, "MEMTRACE_INTERVAL=0ms", "100ms" },
        { "MEMTRACE_INTERVAL=10us", NULL, "MEMTRACE_INTERVAL=10us", "1ms to 24h" },
        { "MEMTRACE_INTERVAL=25h", NULL, "MEMTRACE_INTERVAL=25h", "100ms" },
        { "MEMTRACE_INTERVAL=2d", NULL, "MEMTRACE_INTERVAL=2d", "100ms" },
        { "MEMTRACE_INTERVAL=-1s", NULL, "MEMTRACE_INTERVAL=-1s", "100ms" },
        { "MEMTRACE_INTERVAL=1.s", NULL, "MEMTRACE_INTERVAL=1.s", "100ms" },
        { "MEMTRACE_INTERVAL=86401s", NULL, "MEMTRACE_INTERVAL=86401s", "24h" },
        { "MEMTRACE_DEPHT=5", NULL, "MEMTRACE_DEPHT", "" },
        { "MEMTRACE_=5", NULL, "MEMTRACE_", "" },
    };
    size_t n = sizeof fixed / sizeof fixed[0];
    struct bad_case *cases = cr_malloc((n + 1) * sizeof *cases);
    memcpy(cases, fixed, sizeof fixed);

    /* A path longer than any buffer the shim expands it into. */
    const char *prefix = "MEMTRACE_OUTPUT=/";
    size_t plen = strlen(prefix);
    char *big = cr_malloc(plen + LONG_OUTPUT_BYTES + 1);
    memcpy(big, prefix, plen);
    memset(big + plen, 'a', LONG_OUTPUT_BYTES - 1);
    big[plen + LONG_OUTPUT_BYTES - 1] = '\0';
    cases[n] = (struct bad_case){ "", big, "MEMTRACE_OUTPUT", "" };
    return cr_make_param_array(struct bad_case, cases, n + 1, free_bad_cases);
}

ParameterizedTest(struct bad_case *c, config, rejects_invalid_value)
{
    struct mt_config cfg;
    char err[ERR_CAP] = "";
    char *var = c->long_var != NULL ? c->long_var : c->var;
    char *env[3] = { "HOME=/root", var, NULL };
    int rc = mt_config_parse(&cfg, env, err, sizeof err);
    cr_assert(eq(int, rc, -1), "%.60s: accepted", var);
    expect_one_line(err);
    cr_expect(ne(ptr, strstr(err, c->names), NULL), "error text names \"%s\": \"%s\"", c->names,
              err);
    if (c->hint[0] != '\0')
        cr_expect(ne(ptr, strstr(err, c->hint), NULL), "error text says \"%s\": \"%s\"", c->hint,
                  err);
}

Test(config, rejects_bad_value_after_good_ones)
{
    struct mt_config cfg;
    char err[ERR_CAP] = "";
    char *env[] = { "MEMTRACE_DEPTH=8", "MEMTRACE_OUTPUT=/t", "MEMTRACE_BUFFER=zz", NULL };
    cr_assert(eq(int, mt_config_parse(&cfg, env, err, sizeof err), -1));
    cr_expect(ne(ptr, strstr(err, "MEMTRACE_BUFFER=zz"), NULL), "names the bad one: \"%s\"", err);
}

Test(config, error_text_is_truncated_to_cap)
{
    struct mt_config cfg;
    char err[32];
    memset(err, 'X', sizeof err);
    char *env[] = { "MEMTRACE_DEPTH=not-a-number-at-all", NULL };
    cr_assert(eq(int, mt_config_parse(&cfg, env, err, 8), -1));
    cr_expect(eq(sz, strlen(err), 7), "cap 8 holds 7 characters and the NUL");
    cr_expect(eq(chr, err[8], 'X'), "nothing written past cap");
    cr_expect(eq(int, strncmp(err, "MEMTRACE", 7), 0), "\"%s\"", err);
}

/* ---- defaults and unrelated variables -------------------------------------------------------- */

static void expect_defaults(const struct mt_config *cfg)
{
    cr_expect(eq(str, (char *)cfg->output, MT_DEFAULT_OUTPUT));
    cr_expect(eq(u32, cfg->max_frames, MT_DEFAULT_MAX_FRAMES));
    cr_expect(eq(u32, cfg->buffer_bytes, MT_DEFAULT_BUFFER_BYTES));
}

Test(config, uses_defaults_when_variables_absent)
{
    struct mt_config cfg;
    char err[ERR_CAP] = "";
    char *empty[] = { NULL };
    memset(&cfg, 0x5a, sizeof cfg);
    cr_assert(eq(int, mt_config_parse(&cfg, empty, err, sizeof err), 0), "%s", err);
    expect_defaults(&cfg);
    memset(&cfg, 0x5a, sizeof cfg);
    cr_assert(eq(int, mt_config_parse(&cfg, NULL, err, sizeof err), 0), "%s", err);
    expect_defaults(&cfg);
}

Test(config, defaults_match_documented_values)
{
    cr_expect(eq(str, MT_DEFAULT_OUTPUT, "memtrace.%e.%p.mtrace"));
    cr_expect(eq(int, MT_DEFAULT_MAX_FRAMES, 64));
    cr_expect(eq(u32, MT_DEFAULT_BUFFER_BYTES, 262144));
}

Test(config, ignores_variables_without_memtrace_prefix)
{
    struct mt_config cfg;
    char err[ERR_CAP] = "";
    char *env[] = { "PATH=/usr/bin",
                    "MEMTRACEX=1",
                    "XMEMTRACE_DEPTH=abc",
                    "memtrace_depth=abc",
                    "MEMTRACE=1",
                    "LD_PRELOAD=/nope.so",
                    NULL };
    cr_assert(eq(int, mt_config_parse(&cfg, env, err, sizeof err), 0), "%s", err);
    expect_defaults(&cfg);
}

/* ---- mt_config_parse_size -------------------------------------------------------------------- */

struct size_case {
    char text[TEXT_MAX];
    int ok;
    uint64_t value;
};

ParameterizedTestParameters(config, parses_size)
{
    static struct size_case cases[] = {
        { "0", 1, 0 },
        { "4096", 1, 4096 },
        { "1K", 1, 1024 },
        { "1k", 1, 1024 },
        { "1KB", 1, 1024 },
        { "1KiB", 1, 1024 },
        { "0.5K", 1, 512 },
        { "1.5K", 1, 1536 },
        { "1.5M", 1, 1572864 },
        { "1.5G", 1, 1610612736 },
        { "2T", 1, 2199023255552ULL },
        { "16777215T", 1, 18446742974197923840ULL }, /* 2^64 - 2^40 */
        { "18446744073709551615", 1, UINT64_MAX },
        { "18446744073709551616", 0, 0 }, /* 2^64 */
        { "99999999999999999999", 0, 0 },
        { "16777216T", 0, 0 },    /* 2^24 * 2^40 = 2^64 */
        { "17179869184G", 0, 0 }, /* 2^34 * 2^30 = 2^64 */
        { "16E", 0, 0 },
        { "1P", 0, 0 },
        { "", 0, 0 },
        { "K", 0, 0 },
        { ".5K", 0, 0 },
        { "1.K", 0, 0 },
        { "1.5", 0, 0 },
        { "0.5", 0, 0 },
        { "-1", 0, 0 },
        { "+1K", 0, 0 },
        { " 1K", 0, 0 },
        { "1K ", 0, 0 },
        { "1Ki", 0, 0 },
        { "1iB", 0, 0 },
        { "1KBB", 0, 0 },
        { "1KiBx", 0, 0 },
        { "1e3", 0, 0 },
    };
    return cr_make_param_array(struct size_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct size_case *c, config, parses_size)
{
    uint64_t v = 0xdeadULL;
    int rc = mt_config_parse_size(c->text, &v);
    if (c->ok) {
        cr_assert(eq(int, rc, 0), "\"%s\" rejected", c->text);
        cr_expect(eq(u64, v, c->value), "\"%s\"", c->text);
    } else {
        cr_expect(eq(int, rc, -1), "\"%s\" accepted as %llu", c->text, (unsigned long long)v);
    }
}

/* ---- the cap and snapshot variables -------------------------------------------------------- */

Test(config, parses_limits_mode_and_interval)
{
    struct mt_config cfg;
    char err[ERR_CAP] = "";
    char *env[] = { "MEMTRACE_HEAP_LIMIT=1.5G",         "MEMTRACE_EXTERNAL_LIMIT=512M",
                    "MEMTRACE_ON_LIMIT=enomem",         "MEMTRACE_INTERVAL=2.5s",
                    "MEMTRACE_RULES=size>=1M:external", NULL };
    cr_assert(eq(int, mt_config_parse(&cfg, env, err, sizeof err), 0), "%s", err);
    cr_expect(eq(u64, cfg.heap_limit, 1610612736ULL));
    cr_expect(eq(u64, cfg.external_limit, 536870912ULL));
    cr_expect(eq(u32, cfg.on_limit, 1), "enomem is MTF_LIMIT_ENOMEM (1)");
    cr_expect(eq(u64, cfg.interval_ns, 2500000000ULL));
    cr_assert(ne(ptr, (void *)cfg.rules, NULL));
    cr_expect(eq(str, (char *)cfg.rules, "size>=1M:external"));
}

Test(config, caps_and_interval_are_off_by_default)
{
    struct mt_config cfg;
    char err[ERR_CAP] = "";
    char *env[] = { "MEMTRACE_ON_LIMIT=abort", NULL };
    cr_assert(eq(int, mt_config_parse(&cfg, env, err, sizeof err), 0), "%s", err);
    cr_expect(eq(u64, cfg.heap_limit, 0));
    cr_expect(eq(u64, cfg.external_limit, 0));
    cr_expect(eq(u32, cfg.on_limit, 0), "abort is MTF_LIMIT_ABORT (0)");
    cr_expect(eq(u64, cfg.interval_ns, 0));
    cr_expect(eq(ptr, (void *)cfg.rules, NULL));
}

struct duration_case {
    char text[TEXT_MAX];
    int ok;
    uint64_t ns;
};

ParameterizedTestParameters(config, parses_duration)
{
    static struct duration_case cases[] = {
        { "100ms", 1, 100000000ULL },
        { "1s", 1, 1000000000ULL },
        { "2.5s", 1, 2500000000ULL },
        { "0.001s", 1, 1000000ULL },
        { "10ms", 1, 10000000ULL },
        { "1.5ms", 1, 1500000ULL },
        { "250us", 1, 250000ULL },
        { "7ns", 1, 7 },
        { "0s", 1, 0 },
        { "18446744073s", 1, 18446744073000000000ULL },
        { "18446744074s", 0, 0 }, /* past 2^64 ns */
        { "1.5ns", 0, 0 },
        { "100", 0, 0 },
        { "", 0, 0 },
        { "s", 0, 0 },
        { "1 s", 0, 0 },
        { "1S", 0, 0 },
        { "1sec", 0, 0 },
        { "1m", 0, 0 },
        { "-1s", 0, 0 },
        { "+1s", 0, 0 },
        { ".5s", 0, 0 },
        { "1e3ms", 0, 0 },
    };
    return cr_make_param_array(struct duration_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct duration_case *c, config, parses_duration)
{
    uint64_t v = 0xdeadULL;
    int rc = mt_config_parse_duration(c->text, &v);
    if (c->ok) {
        cr_assert(eq(int, rc, 0), "\"%s\" rejected", c->text);
        cr_expect(eq(u64, v, c->ns), "\"%s\"", c->text);
    } else {
        cr_expect(eq(int, rc, -1), "\"%s\" accepted as %llu", c->text, (unsigned long long)v);
    }
}

/* ---- mt_config_parse_uint -------------------------------------------------------------------- */

struct uint_case {
    char text[TEXT_MAX];
    uint64_t lo, hi;
    int ok;
    uint64_t value;
};

ParameterizedTestParameters(config, parses_uint)
{
    static struct uint_case cases[] = {
        { "0", 0, 10, 1, 0 },
        { "10", 0, 10, 1, 10 },
        { "11", 0, 10, 0, 0 },
        { "4", 5, 10, 0, 0 },
        { "5", 5, 10, 1, 5 },
        { "007", 0, 10, 1, 7 },
        { "18446744073709551615", 0, UINT64_MAX, 1, UINT64_MAX },
        { "18446744073709551616", 0, UINT64_MAX, 0, 0 },
        { "18446744073709551620", 0, UINT64_MAX, 0, 0 },
        { "", 0, 10, 0, 0 },
        { "-0", 0, 10, 0, 0 },
        { "+1", 0, 10, 0, 0 },
        { "1 ", 0, 10, 0, 0 },
        { "0x10", 0, 100, 0, 0 },
        { "1.0", 0, 10, 0, 0 },
    };
    return cr_make_param_array(struct uint_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct uint_case *c, config, parses_uint)
{
    uint64_t v = 0xdeadULL;
    int rc = mt_config_parse_uint(c->text, c->lo, c->hi, &v);
    if (c->ok) {
        cr_assert(eq(int, rc, 0), "\"%s\" in [%llu, %llu] rejected", c->text,
                  (unsigned long long)c->lo, (unsigned long long)c->hi);
        cr_expect(eq(u64, v, c->value), "\"%s\"", c->text);
    } else {
        cr_expect(eq(int, rc, -1), "\"%s\" in [%llu, %llu] accepted as %llu", c->text,
                  (unsigned long long)c->lo, (unsigned long long)c->hi, (unsigned long long)v);
    }
}

/* ---- mt_config_load: the process environment, fatal on error -------------------------------- */

/* Run mt_config_load in a child whose stderr is a pipe; returns the wait status and fills out. */
static int load_in_child(const char *var, const char *value, char *out, size_t cap)
{
    int fds[2];
    cr_assert(eq(int, pipe(fds), 0));
    pid_t pid = fork();
    cr_assert(ge(int, pid, 0));
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        clearenv();
        setenv(var, value, 1);
        mt_config_load();
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fds[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fds[0]);
    int status;
    cr_assert(eq(int, waitpid(pid, &status, 0), pid));
    return status;
}

Test(config, load_exits_with_config_status_on_bad_value)
{
    char out[1024];
    int status = load_in_child("MEMTRACE_DEPTH", "abc", out, sizeof out);
    cr_assert(eq(int, WIFEXITED(status), 1), "child ended by signal %d", WTERMSIG(status));
    cr_expect(eq(int, WEXITSTATUS(status), MT_EXIT_CONFIG));
    const char *prefix = "memtrace: error: MEMTRACE_DEPTH=abc";
    cr_expect(eq(int, strncmp(out, prefix, strlen(prefix)), 0), "message: \"%s\"", out);
    cr_expect(eq(sz, strlen(out) - 1, (size_t)(strchr(out, '\n') - out)),
              "exactly one line ending in a newline: \"%s\"", out);
}

Test(config, load_fills_global_config_from_environ)
{
    char out[1024];
    int status = load_in_child("MEMTRACE_DEPTH", "12", out, sizeof out);
    cr_assert(eq(int, WIFEXITED(status), 1));
    cr_expect(eq(int, WEXITSTATUS(status), 0));
    cr_expect(eq(str, out, ""), "no output for a valid environment");

    clearenv();
    setenv("MEMTRACE_DEPTH", "12", 1);
    setenv("MEMTRACE_BUFFER", "1M", 1);
    mt_config_load();
    cr_expect(eq(u32, mt_config.max_frames, 12));
    cr_expect(eq(u32, mt_config.buffer_bytes, 1048576));
    cr_expect(eq(str, mt_config.output, MT_DEFAULT_OUTPUT));
}

Test(config, load_exits_with_config_status_on_bad_limit)
{
    char out[1024];
    int status = load_in_child("MEMTRACE_HEAP_LIMIT", "lots", out, sizeof out);
    cr_assert(eq(int, WIFEXITED(status), 1), "child ended by signal %d", WTERMSIG(status));
    cr_expect(eq(int, WEXITSTATUS(status), MT_EXIT_CONFIG));
    const char *prefix = "memtrace: error: MEMTRACE_HEAP_LIMIT=lots";
    cr_expect(eq(int, strncmp(out, prefix, strlen(prefix)), 0), "message: \"%s\"", out);
    cr_expect(eq(sz, strlen(out) - 1, (size_t)(strchr(out, '\n') - out)),
              "exactly one line ending in a newline: \"%s\"", out);
}
