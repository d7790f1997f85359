/* The exit-time leak scan (MEMTRACE_LEAK_SCAN=1, preload/reach.c) on a real program:
 * build/progs/leak_graph prints each block's address and role; the REACH record must list
 * exactly the lost ones, split as memcheck splits them, and the report must count only them as
 * leaks. Without the variable there is no REACH record. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(leakscan, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 60);

struct role {
    char label[32];
    uint64_t addr;
};

static size_t parse_roles(const char *out, struct role *r, size_t max)
{
    size_t n = 0;
    for (const char *p = out; *p && n < max;) {
        char label[32];
        void *addr;
        if (sscanf(p, "%31s %p", label, &addr) == 2) {
            snprintf(r[n].label, sizeof r[n].label, "%s", label);
            r[n].addr = (uint64_t)(uintptr_t)addr;
            n++;
        }
        p = strchr(p, '\n');
        if (p == NULL)
            break;
        p++;
    }
    return n;
}

/* REACH entries of the trace: state per address (0: not listed, i.e. reachable). */
static unsigned state_of(const char *path, uint64_t addr, int *records)
{
    struct reader *r;
    cr_assert(eq(int, reader_open(&r, path), 0));
    struct rd_item it;
    unsigned state = 0;
    *records = 0;
    while (reader_next(r, &it) == 1)
        if (it.type == RD_ITEM_REACH) {
            (*records)++;
            for (uint32_t i = 0; i < it.reach.h.count; i++)
                if (it.reach.entries[i].addr == addr)
                    state = it.reach.entries[i].state;
        }
    reader_close(r);
    return state;
}

static void run_graph(int scan, struct h_run *r, char *trace, size_t cap)
{
    char *argv[] = { (char *)h_path("progs/leak_graph"), NULL };
    char *env_on[] = { "MEMTRACE_LEAK_SCAN=1", NULL };
    *r = h_run(argv, scan ? env_on : NULL, 1, NULL, 30);
    cr_assert(eq(int, r->exited, 1), "leak_graph died: %s", r->err);
    cr_assert(eq(int, r->status, 0), "%s", r->err);
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    cr_assert(eq(sz, n, 1));
    snprintf(trace, cap, "%s", paths[0]);
    h_free_paths(paths, n);
}

Test(leakscan, lists_exactly_the_lost_blocks_direct_and_indirect)
{
    struct h_run r;
    char trace[4200];
    run_graph(1, &r, trace, sizeof trace);
    struct role roles[16];
    size_t n = parse_roles(r.out, roles, 16);
    cr_assert(eq(sz, n, 10), "ten blocks announced:\n%s", r.out);
    static const struct {
        const char *label;
        unsigned state;
    } want[] = {
        { "global", 0 },
        { "interior", 0 },
        { "tls", 0 },
        { "from_mmap", 0 },
        { "thread_stack", 0 },
        { "dropped", MTF_REACH_DIRECT },
        { "chain_head", MTF_REACH_DIRECT },
        { "chain_tail", MTF_REACH_INDIRECT },
        { "cycle_low", MTF_REACH_DIRECT },
        { "cycle_high", MTF_REACH_INDIRECT },
    };
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        size_t i = 0;
        while (i < n && strcmp(roles[i].label, want[w].label) != 0)
            i++;
        cr_assert(lt(sz, i, n), "%s not announced", want[w].label);
        int records;
        unsigned got = state_of(trace, roles[i].addr, &records);
        cr_expect(eq(int, records, 1), "one REACH record");
        cr_expect(eq(u32, got, want[w].state), "%s: state %u, expected %u", want[w].label, got,
                  want[w].state);
    }
    h_run_free(&r);
}

Test(leakscan, report_counts_only_lost_blocks_as_leaks)
{
    struct h_run r;
    char trace[4200];
    run_graph(1, &r, trace, sizeof trace);
    char *argv[] = { (char *)h_path("memtrace-report"), "--json", trace, NULL };
    struct h_run rep = h_run(argv, NULL, 0, NULL, 30);
    cr_assert(eq(int, rep.status, 0), "%s", rep.err);
    /* 77 + 16 + 33 + 16 + 16 bytes in 5 blocks: dropped, the chain, the cycle */
    const char *leaks = strstr(rep.out, "\"leaks\"");
    cr_assert(ne(ptr, (void *)leaks, NULL), "%s", rep.out);
    cr_expect(ne(ptr, strstr(leaks, "\"bytes\": 158"), NULL), "%.400s", leaks);
    cr_expect(ne(ptr, strstr(leaks, "\"blocks\": 5"), NULL), "%.400s", leaks);
    h_run_free(&rep);
    h_run_free(&r);
}

Test(leakscan, off_by_default)
{
    struct h_run r;
    char trace[4200];
    run_graph(0, &r, trace, sizeof trace);
    int records;
    (void)state_of(trace, 0, &records);
    cr_expect(eq(int, records, 0), "no REACH record without MEMTRACE_LEAK_SCAN=1");
    h_run_free(&r);
}

Test(leakscan, malformed_variable_stops_the_program_before_main)
{
    char *argv[] = { (char *)h_path("progs/leak_graph"), NULL };
    char *env[] = { "MEMTRACE_LEAK_SCAN=yes", NULL };
    struct h_run r = h_run(argv, env, 1, NULL, 30);
    cr_expect(eq(int, r.status, 125));
    cr_expect(ne(ptr, strstr(r.err, "MEMTRACE_LEAK_SCAN"), NULL), "%s", r.err);
    cr_expect(eq(sz, r.out_len, 0), "main never ran");
    h_run_free(&r);
}
