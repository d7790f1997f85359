/* Configuration through MEMTRACE_* variables, as a user sets them: a malformed value or an
 * unknown name stops the program before main with one line and exit status 125 (README,
 * "Configuration"; STYLE 2.4); good values are applied (visible in the trace: max_frames, stack
 * lengths, chunk sizes); MEMTRACE_OUTPUT expands %p, %e and %%.
 * The shim and every MEMTRACE_* variable are passed as explicit "NAME=value" entries of an
 * unshimmed h_run, so each case controls the whole MEMTRACE_* environment of the child.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "helpers.h"

TestSuite(config, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 120);

#define CFG_NAME_MAX  32
#define CFG_VALUE_MAX 64

/* One MEMTRACE_* setting. Strings are held in the struct: Criterion copies parameters into the
 * test's process, where pointers into the runner's memory would not be valid. */
struct setting {
    char name[CFG_NAME_MAX]; /* after "MEMTRACE_" */
    char value[CFG_VALUE_MAX];
    int known; /* 1: a variable the shim knows, so the message must show the value too */
};

/* Run cfg_main (with `arg`, may be NULL) with the shim, MEMTRACE_OUTPUT=<tmpdir>/<pattern>
 * unless pattern is NULL, and the setting `s` (may be NULL). */
static struct h_run run_with(const struct setting *s, const char *pattern, const char *arg)
{
    static char preload[8192], output[8192], setting[CFG_NAME_MAX + CFG_VALUE_MAX + 16];
    char *env[4];
    int k = 0;
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", h_path("libmemtrace.so"));
    env[k++] = preload;
    if (pattern != NULL) {
        snprintf(output, sizeof output, "MEMTRACE_OUTPUT=%s/%s", h_tmpdir(), pattern);
        env[k++] = output;
    }
    if (s != NULL) {
        snprintf(setting, sizeof setting, "MEMTRACE_%s=%s", s->name, s->value);
        env[k++] = setting;
    }
    env[k] = NULL;
    char *argv[] = { (char *)h_path("progs/cfg_main"), (char *)arg, NULL };
    /* preload 0: h_run adds neither LD_PRELOAD nor MEMTRACE_OUTPUT, env holds all of it */
    return h_run(argv, env, 0, NULL, 60);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ---- bad values stop the program ------------------------------------------------------------ */

static struct setting bad_settings[] = {
    { "DEPTH", "abc", 1 },
    { "DEPTH", "-1", 1 },
    { "DEPTH", "0", 1 },
    { "DEPTH", "257", 1 },
    { "DEPTH", "99999999999999999999", 1 },
    { "DEPTH", "12abc", 1 },
    { "DEPTH", "", 1 },
    { "BUFFER", "1", 1 },
    { "BUFFER", "12Q", 1 },
    { "BUFFER", "-5K", 1 },
    { "BUFFER", "999999T", 1 },
    { "BUFFER", "1.5", 1 },
    { "OUTPUT", "", 1 },
    { "OUTPUT", "x%q", 1 },
    { "SAMPLE", "abc", 1 },
    { "SAMPLE", "0", 1 },
    { "SAMPLE", "-512K", 1 },
    { "SAMPLE", "2T", 1 },
    { "SAMPLE", "", 1 },
    { "SAMPLE_SEED", "0", 1 },
    { "DEPHT", "3", 0 },
};

ParameterizedTestParameters(config, bad_value_stops_the_program_before_main)
{
    return cr_make_param_array(struct setting, bad_settings,
                               sizeof bad_settings / sizeof bad_settings[0]);
}

ParameterizedTest(struct setting *s, config, bad_value_stops_the_program_before_main)
{
    /* OUTPUT cases set only the bad OUTPUT; the others get a good one */
    int is_output = strcmp(s->name, "OUTPUT") == 0;
    struct h_run r = run_with(s, is_output ? NULL : "t.%p.mtrace", NULL);
    const char *shown = s->value[0] ? s->value : "\"\"";
    cr_assert(r.exited, "MEMTRACE_%s=%s: killed by signal %d", s->name, shown, r.status);
    cr_assert_eq(r.status, 125, "MEMTRACE_%s=%s: exit status %d, want 125; stdout: %s", s->name,
                 shown, r.status, r.out);
    cr_assert_eq(r.out_len, 0, "MEMTRACE_%s=%s: main ran: %s", s->name, shown, r.out);
    cr_assert_eq(count_lines(r.err), 1, "MEMTRACE_%s=%s: one stderr line expected:\n%s", s->name,
                 shown, r.err);
    cr_assert(r.err[r.err_len - 1] == '\n', "the line must be complete: %s", r.err);
    cr_assert(strncmp(r.err, "memtrace: error: ", 17) == 0, "MEMTRACE_%s=%s: %s", s->name, shown,
              r.err);
    char name[CFG_NAME_MAX + 16];
    snprintf(name, sizeof name, "MEMTRACE_%s", s->name);
    cr_assert(strstr(r.err, name) != NULL, "the line should name %s: %s", name, r.err);
    if (s->known && s->value[0] != '\0')
        cr_assert(strstr(r.err, s->value) != NULL, "the line should show the value '%s': %s",
                  s->value, r.err);
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    cr_assert_eq(n, 0, "a run stopped by its configuration leaves no trace file (found %zu)", n);
    h_run_free(&r);
}

/* ---- good values are applied ----------------------------------------------------------------- */

/* The one trace of the run, decoded; fails unless it read cleanly to its END. */
static void load_only_trace(struct h_trace *t, char **path_out)
{
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    cr_assert_eq(n, 1, "one trace expected, found %zu", n);
    h_load(paths[0], t);
    cr_assert_eq(t->rc, 0, "%s: %s", paths[0], t->error);
    cr_assert(t->has_end, "%s: no END record", paths[0]);
    cr_assert_eq(t->dropped, 0, "%s: %" PRIu64 " calls not recorded", paths[0], t->dropped);
    if (path_out != NULL)
        *path_out = paths[0];
    else
        free(paths[0]);
}

static void check_ran(const struct h_run *r, const char *what)
{
    cr_assert(r->exited && r->status == 0, "%s: status %d, stderr: %s", what, r->status, r->err);
    cr_assert(strncmp(r->out, "main ran pid=", 13) == 0, "%s: %s", what, r->out);
    cr_assert_eq(r->err_len, 0, "%s: stderr: %s", what, r->err);
}

/* STACK definitions of a trace carrying MTF_EVF_TRUNC (h_trace keeps frames, not flags). */
static size_t truncated_stacks(const char *path)
{
    struct reader *rd = NULL;
    int rc = reader_open(&rd, path);
    cr_assert_eq(rc, 0, "%s", rd ? reader_error(rd) : "no reader");
    size_t n = 0;
    struct rd_item it;
    while ((rc = reader_next(rd, &it)) > 0)
        n +=
            it.type == RD_ITEM_EVENT && it.ev.kind == MTF_EV_STACK && (it.ev.flags & MTF_EVF_TRUNC);
    cr_assert_eq(rc, 0, "%s", reader_error(rd));
    reader_close(rd);
    return n;
}

Test(config, depth_1_keeps_one_frame_per_stack_and_flags_truncation)
{
    struct setting s = { "DEPTH", "1", 1 };
    struct h_run r = run_with(&s, "t.%p.mtrace", NULL);
    check_ran(&r, "MEMTRACE_DEPTH=1");
    struct h_trace t;
    char *path;
    load_only_trace(&t, &path);
    cr_assert_eq(t.status.header.max_frames, 1);
    uint32_t defined = 0;
    for (uint32_t id = 0; id < t.nstacks; id++) {
        if (t.stacks[id] == NULL)
            continue;
        defined++;
        cr_assert(t.stack_len[id] <= 1, "stack %u has %u frames with MEMTRACE_DEPTH=1", id,
                  t.stack_len[id]);
    }
    cr_assert(defined > 0, "no stacks recorded");
    cr_assert(t.counts[MTF_EV_MALLOC] >= 20000, "%" PRIu64 " mallocs", t.counts[MTF_EV_MALLOC]);
    /* every stack of cfg_main is deeper than one frame */
    size_t trunc = truncated_stacks(path);
    cr_assert_eq(trunc, defined, "%zu of %u stacks flagged truncated", trunc, defined);
    free(path);
    h_trace_free(&t);
    h_run_free(&r);
}

Test(config, depth_256_keeps_deep_stacks_whole)
{
    struct setting s = { "DEPTH", "256", 1 };
    struct h_run r = run_with(&s, "t.%p.mtrace", NULL);
    check_ran(&r, "MEMTRACE_DEPTH=256");
    struct h_trace t;
    char *path;
    load_only_trace(&t, &path);
    cr_assert_eq(t.status.header.max_frames, 256);
    cr_assert_eq(truncated_stacks(path), 0, "no stack is deeper than 256 frames");
    free(path);
    uint32_t longest = 0;
    for (uint32_t id = 0; id < t.nstacks; id++)
        if (t.stacks[id] != NULL && t.stack_len[id] > longest)
            longest = t.stack_len[id];
    /* cfg_main allocates 41 calls of deep() below main */
    cr_assert(longest >= 42, "longest stack has %u frames, the recursion alone is 41", longest);
    h_trace_free(&t);
    h_run_free(&r);
}

/* Largest EVENTS payload of a trace file and how many EVENTS records it has, by walking the
 * record framing (the reader does not expose chunk sizes). */
static void chunk_sizes(const char *path, uint32_t *max_payload, size_t *chunks)
{
    size_t size;
    uint8_t *data = (uint8_t *)h_read_file(path, &size);
    cr_assert_not_null(data);
    cr_assert(size >= MTF_FILE_HEADER_SIZE);
    struct mtf_file_header fh;
    memcpy(&fh, data, sizeof fh);
    *max_payload = 0;
    *chunks = 0;
    for (size_t off = fh.header_size; off + MTF_RECORD_HEADER_SIZE <= size;) {
        struct mtf_record_header rh;
        memcpy(&rh, data + off, sizeof rh);
        cr_assert_eq(rh.magic, MTF_RECORD_MAGIC, "%s: offset %zu", path, off);
        if (rh.type == MTF_REC_EVENTS) {
            (*chunks)++;
            if (rh.payload_size > *max_payload)
                *max_payload = rh.payload_size;
        }
        off += MTF_RECORD_HEADER_SIZE + (size_t)rh.payload_size;
    }
    free(data);
}

struct buffer_case {
    char value[CFG_VALUE_MAX];
    uint64_t bytes;    /* what the value means */
    uint64_t at_least; /* the largest chunk must exceed this (0: no lower bound) */
    char rounds[16];   /* cfg_main's argument */
};

static struct buffer_case buffer_cases[] = {
    /* 16 KiB: many chunks, none larger than the buffer */
    { "16K", 16384, 0, "20000" },
    /* 1.5 MiB: ~2 MB of events need a chunk larger than the 256 KiB default */
    { "1.5M", 1572864, 256 * 1024 + MTF_CHUNK_SIZE, "200000" },
    /* 64 MiB: the whole run fits one buffer, a chunk larger than 1.5 MiB */
    { "64M", 64ULL << 20, 1572864 + MTF_CHUNK_SIZE, "200000" },
};

ParameterizedTestParameters(config, buffer_size_bounds_the_chunks)
{
    return cr_make_param_array(struct buffer_case, buffer_cases,
                               sizeof buffer_cases / sizeof buffer_cases[0]);
}

ParameterizedTest(struct buffer_case *c, config, buffer_size_bounds_the_chunks)
{
    struct setting s = { "BUFFER", "", 1 };
    snprintf(s.value, sizeof s.value, "%s", c->value);
    struct h_run r = run_with(&s, "t.%p.mtrace", c->rounds);
    check_ran(&r, c->value);
    struct h_trace t;
    char *path;
    load_only_trace(&t, &path);
    uint32_t max_payload;
    size_t chunks;
    chunk_sizes(path, &max_payload, &chunks);
    cr_log_info("MEMTRACE_BUFFER=%s: %zu chunks, largest %u bytes", c->value, chunks, max_payload);
    cr_assert(max_payload <= c->bytes + MTF_CHUNK_SIZE,
              "MEMTRACE_BUFFER=%s: a chunk of %u bytes is larger than the buffer", c->value,
              max_payload);
    if (c->at_least)
        cr_assert(max_payload > c->at_least,
                  "MEMTRACE_BUFFER=%s: largest chunk %u bytes: the buffer seems smaller than "
                  "%" PRIu64 " bytes",
                  c->value, max_payload, c->bytes);
    else
        cr_assert(chunks >= 10, "MEMTRACE_BUFFER=%s: only %zu chunks", c->value, chunks);
    free(path);
    h_trace_free(&t);
    h_run_free(&r);
}

/* ---- output names ---------------------------------------------------------------------------- */

static int run_pid(const struct h_run *r)
{
    int pid = 0;
    cr_assert_eq(sscanf(r->out, "main ran pid=%d", &pid), 1, "%s", r->out);
    return pid;
}

static void check_named_trace(const char *name, int pid)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", h_tmpdir(), name);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "expected trace %s: %s", name, strerror(errno));
    struct h_trace t;
    h_load(path, &t);
    cr_assert_eq(t.rc, 0, "%s: %s", name, t.error);
    cr_assert(t.has_end);
    cr_assert_eq(t.status.header.pid, (uint32_t)pid, "%s holds pid %u", name, t.status.header.pid);
    const char *base = strrchr(t.exe, '/');
    cr_assert(base != NULL && strcmp(base, "/cfg_main") == 0, "exe %s", t.exe);
    h_trace_free(&t);
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    cr_assert_eq(n, 1, "one trace expected, found %zu", n);
    h_free_paths(paths, n);
}

Test(config, output_pattern_expands_pid_and_exe_name)
{
    struct h_run r = run_with(NULL, "%e-%p.mtrace", NULL);
    check_ran(&r, "%e-%p");
    char name[256];
    snprintf(name, sizeof name, "cfg_main-%d.mtrace", run_pid(&r));
    check_named_trace(name, run_pid(&r));
    h_run_free(&r);
}

Test(config, output_pattern_percent_percent_is_a_percent_sign)
{
    struct h_run r = run_with(NULL, "pct%%-%p-%e.mtrace", NULL);
    check_ran(&r, "pct%%-%p-%e");
    char name[256];
    snprintf(name, sizeof name, "pct%%-%d-cfg_main.mtrace", run_pid(&r));
    check_named_trace(name, run_pid(&r));
    h_run_free(&r);
}

Test(config, default_output_is_memtrace_exe_pid_in_the_working_directory)
{
    struct h_run r = run_with(NULL, NULL, NULL);
    check_ran(&r, "no MEMTRACE_OUTPUT");
    char name[256];
    snprintf(name, sizeof name, "memtrace.cfg_main.%d.mtrace", run_pid(&r));
    check_named_trace(name, run_pid(&r));
    h_run_free(&r);
}
