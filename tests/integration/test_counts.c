/* Counts: the trace records every call of every hooked function exactly once, with the FAILED
 * flag on the calls that failed, and ends with an END record that agrees with its chunks.
 * tests/progs/calls_known.c makes a known number of calls per round; the table below is its
 * per-round contract. The program's own events are found three ways: by a stack through
 * calls_round(), by address (frees and unmaps of the program's blocks), and by the difference
 * between a run of N rounds and one of 2N (what libc does at start and exit cancels out).
 * glibc's memusage, when installed, is the independent referee for malloc/calloc/realloc/free.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(counts, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 60);

#define ROUNDS 100

/* Calls per round of calls_known (keep in step with tests/progs/calls_known.c). */
struct per_round {
    unsigned kind;
    unsigned calls;  /* every call, failed ones included */
    unsigned failed; /* calls that fail by design */
    unsigned basic;  /* calls in "basic" mode (malloc, calloc, realloc, free only) */
};

static const struct per_round table[] = {
    { MTF_EV_MALLOC, 2, 1, 2 },         /* malloc(1000+i), malloc(huge) */
    { MTF_EV_CALLOC, 2, 1, 2 },         /* calloc(3, 100+i), calloc(2^62+1, 4) */
    { MTF_EV_REALLOC, 5, 1, 5 },        /* grow, (NULL, n), (p, 0), (NULL, n), (p, huge) */
    { MTF_EV_REALLOCARRAY, 3, 1, 0 },   /* (NULL, 4, n), grow, overflow */
    { MTF_EV_FREE, 10, 0, 4 },          /* one of them free(NULL) */
    { MTF_EV_POSIX_MEMALIGN, 2, 1, 0 }, /* align 64, align 3 (EINVAL) */
    { MTF_EV_ALIGNED_ALLOC, 1, 0, 0 },  /* align 256 */
    { MTF_EV_MEMALIGN, 1, 0, 0 },       /* align 128 */
    { MTF_EV_VALLOC, 1, 0, 0 },         /* 8000+i */
    { MTF_EV_PVALLOC, 1, 0, 0 },        /* 9000+i */
    { MTF_EV_MMAP, 2, 1, 0 },           /* 2 pages, length 0 (EINVAL) */
    { MTF_EV_MMAP64, 2, 0, 0 },         /* 4 pages (move target), 1 page */
    { MTF_EV_MUNMAP, 3, 1, 0 },         /* moved block, 1 page, unaligned (EINVAL) */
    { MTF_EV_MREMAP, 3, 1, 0 },         /* grow, move over the mmap64 block, unaligned (EINVAL) */
};
#define NTABLE (sizeof table / sizeof table[0])

/* Kinds whose events carry a stack (FREE and MUNMAP do not, trace-format.md §7). */
static int has_stack(unsigned kind)
{
    return kind != MTF_EV_FREE && kind != MTF_EV_MUNMAP && kind != MTF_EV_STACK &&
           kind != MTF_EV_FORK && kind != MTF_EV_EXEC;
}

/* Run calls_known under the shim and load its only trace; the run must succeed. */
static void run_calls(const char *rounds, const char *mode, struct h_trace *t)
{
    char *argv[] = { (char *)h_path("progs/calls_known"), (char *)rounds, (char *)mode, NULL };
    struct h_run r = h_run(argv, NULL, 1, NULL, 50);
    cr_assert(r.exited && r.status == 0, "calls_known %s under the shim: %s %d, stderr:\n%s",
              rounds, r.exited ? "exit status" : "signal", r.status, r.err);
    h_run_free(&r);
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    cr_assert_eq(n, 1, "expected 1 trace file, found %zu", n);
    h_load(paths[0], t);
    cr_assert_eq(t->rc, 0, "%s: cannot decode: %s", paths[0], t->error);
    h_free_paths(paths, n);
}

/* Remove the trace files of the previous run, so the next run's file is the only one. */
static void remove_traces(void)
{
    char *paths[16];
    size_t n = h_traces(NULL, paths, 16);
    for (size_t i = 0; i < n && i < 16; i++)
        cr_assert_eq(unlink(paths[i]), 0, "cannot remove %s", paths[i]);
    h_free_paths(paths, n < 16 ? n : 16);
}

/* Whether stack `id` goes through function `func`, symbolized once per id. */
struct stack_memo {
    signed char *v; /* -1 unknown, 0 no, 1 yes */
    uint32_t n;
};

static int memo_has(struct stack_memo *m, const struct h_trace *t, uint32_t id, const char *func)
{
    if (m->v == NULL) {
        m->n = t->nstacks;
        m->v = malloc(m->n ? m->n : 1);
        memset(m->v, -1, m->n);
    }
    if (id == 0 || id >= m->n)
        return 0;
    if (m->v[id] < 0)
        m->v[id] = (signed char)h_stack_has(t, id, func);
    return m->v[id];
}

/* Live blocks (heap) and ranges (mappings) the program made itself. */
struct live {
    uint64_t addr[64], len[64];
    size_t n;
};

static int live_find(const struct live *l, uint64_t addr)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->addr[i] == addr)
            return (int)i;
    return -1;
}

static void live_del(struct live *l, int i)
{
    l->addr[i] = l->addr[l->n - 1];
    l->len[i] = l->len[l->n - 1];
    l->n--;
}

/* Add [addr, addr+len): any range it overlaps is gone (MAP_FIXED, MREMAP_FIXED semantics). */
static void live_add(struct live *l, uint64_t addr, uint64_t len)
{
    for (size_t i = 0; i < l->n;) {
        if (len != 0 && l->len[i] != 0 && addr < l->addr[i] + l->len[i] && l->addr[i] < addr + len)
            live_del(l, (int)i);
        else
            i++;
    }
    cr_assert_lt(l->n, 64, "calls_known never holds this many blocks at once");
    l->addr[l->n] = addr;
    l->len[l->n] = len;
    l->n++;
}

Test(counts, equal_program_calls_for_every_function)
{
    struct h_trace t;
    run_calls("100", NULL, &t);
    uint64_t got[MTF_EV_KIND_COUNT] = { 0 }, got_failed[MTF_EV_KIND_COUNT] = { 0 };
    uint64_t free_null = 0;
    struct stack_memo memo = { 0 };
    struct live heap = { .n = 0 }, maps = { .n = 0 };
    for (size_t i = 0; i < t.nevents; i++) {
        const struct rd_event *e = &t.events[i];
        int failed = (e->flags & MTF_EVF_FAILED) != 0;
        int mine;
        if (has_stack(e->kind)) {
            mine = memo_has(&memo, &t, e->stack, "calls_round");
        } else if (e->kind == MTF_EV_FREE) {
            if (e->addr == 0)
                free_null++;
            int k = e->addr ? live_find(&heap, e->addr) : -1;
            mine = k >= 0;
            if (mine)
                live_del(&heap, k);
        } else if (e->kind == MTF_EV_MUNMAP) {
            int k = live_find(&maps, e->addr);
            mine = k >= 0 || (failed && e->addr == 1); /* the unaligned munmap(1, page) */
            if (k >= 0 && !failed)
                live_del(&maps, k);
        } else {
            continue; /* FORK, EXEC: not made by calls_known */
        }
        if (!mine)
            continue;
        got[e->kind]++;
        got_failed[e->kind] += failed;
        if (failed || !has_stack(e->kind))
            continue;
        switch (e->kind) {
        case MTF_EV_REALLOC:
        case MTF_EV_REALLOCARRAY: {
            int k = e->old_addr ? live_find(&heap, e->old_addr) : -1;
            cr_assert(e->old_addr == 0 || k >= 0,
                      "event %zu: realloc of %#llx, which the program does not hold", i,
                      (unsigned long long)e->old_addr);
            if (k >= 0)
                live_del(&heap, k);
            if (e->addr != 0)
                live_add(&heap, e->addr, 0);
            break;
        }
        case MTF_EV_MMAP:
        case MTF_EV_MMAP64:
            live_add(&maps, e->addr, e->size);
            break;
        case MTF_EV_MREMAP: {
            int k = live_find(&maps, e->old_addr);
            cr_assert(k >= 0, "event %zu: mremap of %#llx, which the program did not map", i,
                      (unsigned long long)e->old_addr);
            live_del(&maps, k);
            live_add(&maps, e->addr, e->size);
            break;
        }
        default:
            live_add(&heap, e->addr, 0);
            break;
        }
    }
    char diff[4096] = "";
    size_t dl = 0;
    for (size_t k = 0; k < NTABLE; k++) {
        unsigned kind = table[k].kind;
        uint64_t want = (uint64_t)table[k].calls * ROUNDS;
        uint64_t want_failed = (uint64_t)table[k].failed * ROUNDS;
        if (kind == MTF_EV_FREE) {
            want -= ROUNDS; /* free(NULL) has no address to match: checked below */
            if (free_null != ROUNDS)
                dl += (size_t)snprintf(diff + dl, sizeof diff - dl,
                                       "  free(NULL): %llu events, program made %d calls\n",
                                       (unsigned long long)free_null, ROUNDS);
        }
        if (got[kind] != want || got_failed[kind] != want_failed)
            dl += (size_t)snprintf(diff + dl, sizeof diff - dl,
                                   "  %-15s recorded %llu (%llu failed), program made %llu "
                                   "(%llu failed)\n",
                                   reader_kind_name(kind), (unsigned long long)got[kind],
                                   (unsigned long long)got_failed[kind], (unsigned long long)want,
                                   (unsigned long long)want_failed);
    }
    cr_expect_eq(heap.n, 0, "%zu blocks of the program still live at exit in the trace", heap.n);
    cr_expect_eq(maps.n, 0, "%zu mappings of the program still live at exit in the trace", maps.n);
    cr_assert_eq(dl, 0, "calls_known %d: recorded calls differ from the program's:\n%s", ROUNDS,
                 diff);
    free(memo.v);
    h_trace_free(&t);
}

Test(counts, doubling_the_rounds_adds_exactly_one_round_of_calls_per_function)
{
    struct h_trace a, b;
    run_calls("100", NULL, &a);
    remove_traces();
    run_calls("200", NULL, &b);
    char diff[4096] = "";
    size_t dl = 0;
    for (size_t k = 0; k < NTABLE; k++) {
        unsigned kind = table[k].kind;
        uint64_t want = (uint64_t)table[k].calls * ROUNDS;
        uint64_t d = b.counts[kind] - a.counts[kind];
        if (d != want)
            dl += (size_t)snprintf(diff + dl, sizeof diff - dl,
                                   "  %-15s 100 rounds: %llu, 200 rounds: %llu, difference "
                                   "%llu, expected %llu\n",
                                   reader_kind_name(kind), (unsigned long long)a.counts[kind],
                                   (unsigned long long)b.counts[kind], (unsigned long long)d,
                                   (unsigned long long)want);
    }
    /* kinds calls_known never calls must not appear out of nowhere either */
    for (unsigned kind = 1; kind < MTF_EV_STACK; kind++) {
        int listed = 0;
        for (size_t k = 0; k < NTABLE; k++)
            listed |= table[k].kind == kind;
        if (!listed && a.counts[kind] != b.counts[kind])
            dl += (size_t)snprintf(diff + dl, sizeof diff - dl, "  %-15s %llu vs %llu\n",
                                   reader_kind_name(kind), (unsigned long long)a.counts[kind],
                                   (unsigned long long)b.counts[kind]);
    }
    uint64_t want_failed = 0;
    for (size_t k = 0; k < NTABLE; k++)
        want_failed += (uint64_t)table[k].failed * ROUNDS;
    if (b.failed - a.failed != want_failed)
        dl += (size_t)snprintf(
            diff + dl, sizeof diff - dl, "  failed events: difference %llu, expected %llu\n",
            (unsigned long long)(b.failed - a.failed), (unsigned long long)want_failed);
    cr_assert_eq(dl, 0, "100 more rounds of calls_known changed the trace by:\n%s", diff);
    h_trace_free(&a);
    h_trace_free(&b);
}

/* glibc's reallocarray calls the interposable realloc: a shim that forwards to it would record
 * a second, nested REALLOC for every reallocarray (pitfalls.md §15). */
Test(counts, reallocarray_recorded_once_not_also_as_realloc)
{
    struct h_trace t;
    run_calls("100", NULL, &t);
    struct stack_memo in_aligned = { 0 };
    uint64_t arr = 0, arr_failed = 0, as_realloc = 0;
    for (size_t i = 0; i < t.nevents; i++) {
        const struct rd_event *e = &t.events[i];
        if (e->kind != MTF_EV_REALLOC && e->kind != MTF_EV_REALLOCARRAY)
            continue;
        if (!memo_has(&in_aligned, &t, e->stack, "calls_aligned"))
            continue; /* calls_aligned makes every reallocarray call and no realloc call */
        if (e->kind == MTF_EV_REALLOC) {
            as_realloc++;
            continue;
        }
        arr++;
        if (e->flags & MTF_EVF_FAILED) {
            arr_failed++;
            cr_expect(e->nmemb == SIZE_MAX / 2 && e->elsize == 3 && e->addr == 0,
                      "failed reallocarray recorded as (nmemb %llu, elsize %llu) -> %#llx, "
                      "expected (%zu, 3) -> 0",
                      (unsigned long long)e->nmemb, (unsigned long long)e->elsize,
                      (unsigned long long)e->addr, SIZE_MAX / 2);
        } else {
            cr_expect(e->elsize >= 100 && e->elsize < 100 + ROUNDS &&
                          (e->nmemb == 4 || e->nmemb == 8) && e->size == e->nmemb * e->elsize,
                      "reallocarray recorded as (nmemb %llu, elsize %llu, size %llu)",
                      (unsigned long long)e->nmemb, (unsigned long long)e->elsize,
                      (unsigned long long)e->size);
        }
    }
    cr_expect_eq(as_realloc, 0,
                 "%llu REALLOC events come from calls_aligned, which calls only reallocarray "
                 "(nested realloc recorded a second time)",
                 (unsigned long long)as_realloc);
    cr_expect_eq(arr, 3 * ROUNDS, "REALLOCARRAY events: %llu, program made %d calls",
                 (unsigned long long)arr, 3 * ROUNDS);
    cr_expect_eq(arr_failed, ROUNDS, "failed REALLOCARRAY events: %llu, program made %d",
                 (unsigned long long)arr_failed, ROUNDS);
    free(in_aligned.v);
    h_trace_free(&t);
}

/* The calls that fail by design, one by one: each must carry FAILED and say what was asked. */
Test(counts, failed_calls_carry_failed_flag_and_their_arguments)
{
    struct h_trace t;
    run_calls("1", NULL, &t);
    struct stack_memo memo = { 0 };
    int seen[MTF_EV_KIND_COUNT] = { 0 };
    for (size_t i = 0; i < t.nevents; i++) {
        const struct rd_event *e = &t.events[i];
        int mine = has_stack(e->kind) ? memo_has(&memo, &t, e->stack, "calls_round")
                                      : (e->kind == MTF_EV_MUNMAP && e->addr == 1);
        if (!mine || !(e->flags & MTF_EVF_FAILED))
            continue;
        seen[e->kind]++;
        switch (e->kind) {
        case MTF_EV_MALLOC:
            cr_expect(e->addr == 0 && e->size == SIZE_MAX - 4096, "failed malloc: %#llx, %llu",
                      (unsigned long long)e->addr, (unsigned long long)e->size);
            break;
        case MTF_EV_CALLOC:
            cr_expect(e->addr == 0 && e->nmemb == (1ULL << 62) + 1 && e->elsize == 4,
                      "failed calloc: %#llx, nmemb %llu, elsize %llu", (unsigned long long)e->addr,
                      (unsigned long long)e->nmemb, (unsigned long long)e->elsize);
            break;
        case MTF_EV_REALLOC:
            cr_expect(e->addr == 0 && e->old_addr != 0 && e->size == SIZE_MAX - 4096,
                      "failed realloc: old %#llx new %#llx size %llu",
                      (unsigned long long)e->old_addr, (unsigned long long)e->addr,
                      (unsigned long long)e->size);
            break;
        case MTF_EV_POSIX_MEMALIGN:
            cr_expect(e->addr == 0 && e->align == 3 && e->size == 16,
                      "failed posix_memalign: %#llx align %llu size %llu",
                      (unsigned long long)e->addr, (unsigned long long)e->align,
                      (unsigned long long)e->size);
            break;
        case MTF_EV_MMAP:
            cr_expect(e->size == 0, "failed mmap: length %llu", (unsigned long long)e->size);
            break;
        case MTF_EV_MUNMAP:
            cr_expect(e->size == (uint64_t)sysconf(_SC_PAGESIZE), "failed munmap: length %llu",
                      (unsigned long long)e->size);
            break;
        case MTF_EV_MREMAP:
            cr_expect(e->old_addr == 1, "failed mremap: old %#llx",
                      (unsigned long long)e->old_addr);
            break;
        default:
            break;
        }
    }
    for (size_t k = 0; k < NTABLE; k++)
        cr_expect_eq(seen[table[k].kind], (int)table[k].failed,
                     "%s: %d events flagged FAILED, the program made %u failing calls",
                     reader_kind_name(table[k].kind), seen[table[k].kind], table[k].failed);
    /* realloc(p, 0) frees p: a success, and its event says new = 0, size = 0 */
    int realloc_zero = 0;
    for (size_t i = 0; i < t.nevents; i++) {
        const struct rd_event *e = &t.events[i];
        if (e->kind == MTF_EV_REALLOC && e->size == 0 &&
            memo_has(&memo, &t, e->stack, "calls_round")) {
            realloc_zero++;
            cr_expect(!(e->flags & MTF_EVF_FAILED) && e->addr == 0 && e->old_addr != 0,
                      "realloc(p, 0) recorded with flags %#x, old %#llx, new %#llx", e->flags,
                      (unsigned long long)e->old_addr, (unsigned long long)e->addr);
        }
    }
    cr_expect_eq(realloc_zero, 1, "realloc(p, 0) events: %d, expected 1", realloc_zero);
    free(memo.v);
    h_trace_free(&t);
}

Test(counts, trace_is_complete_and_end_agrees_with_chunks)
{
    struct h_trace t;
    run_calls("100", NULL, &t);
    cr_assert(t.has_end, "no END record: %s", t.error);
    cr_expect(t.status.complete, "reader status not complete");
    cr_expect_eq(t.end.reason, MTF_END_EXIT, "END reason %s, expected exit",
                 reader_end_reason_name(t.end.reason));
    cr_expect_eq(t.end.status, 0, "END status %d, expected 0", t.end.status);
    cr_expect_eq(t.status.dropped, 0, "%llu calls dropped", (unsigned long long)t.status.dropped);
    cr_expect_eq(t.end.threads, 1, "END.threads %llu for a single-threaded program",
                 (unsigned long long)t.end.threads);
    cr_expect_eq(t.status.lost_bytes, 0, "%llu bytes could not be used",
                 (unsigned long long)t.status.lost_bytes);
    cr_expect_eq(t.status.valid_bytes, t.status.file_size, "valid %llu of %llu bytes",
                 (unsigned long long)t.status.valid_bytes, (unsigned long long)t.status.file_size);
    char *paths[4];
    size_t n = h_traces(NULL, paths, 4);
    struct end_tally y;
    end_tally(paths[0], &y);
    cr_expect_eq(y.ends, 1, "%d END records for a process that neither exec'd nor failed to",
                 y.ends);
    uint64_t before = 0;
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++) {
        before += y.before[k];
        cr_expect_eq(y.end.counts[k], y.before[k],
                     "%s: END says %llu, the chunks before it hold %llu", reader_kind_name(k),
                     (unsigned long long)y.end.counts[k], (unsigned long long)y.before[k]);
        /* calls_known has no thread and no destructor running after the shim's */
        cr_expect_eq(y.total[k], y.before[k], "%s: %llu events after END", reader_kind_name(k),
                     (unsigned long long)(y.total[k] - y.before[k]));
    }
    cr_expect_eq(y.end.events, before, "END.events %llu, the chunks before it hold %llu",
                 (unsigned long long)y.end.events, (unsigned long long)before);
    h_free_paths(paths, n);
    h_trace_free(&t);
}

/* ---- glibc memusage as the referee ---------------------------------------------------------- */

#define MEMUSAGE "/usr/bin/memusage"

/* memusage's summary line for `name` ("malloc", "realloc", "calloc", "free"): the number
 * after "name|", colour escapes skipped. Returns -1 if absent. */
static long long memusage_calls(const char *out, const char *name)
{
    char clean[8192];
    size_t n = 0;
    for (const char *p = out; *p && n + 1 < sizeof clean; p++) {
        if (*p == '\033') { /* ESC [ ... m */
            while (*p && *p != 'm')
                p++;
            if (!*p)
                break;
            continue;
        }
        clean[n++] = *p;
    }
    clean[n] = '\0';
    for (char *line = clean; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        while (*line == ' ')
            line++;
        size_t k = strlen(name);
        if (strncmp(line, name, k) == 0 && line[k] == '|')
            return strtoll(line + k + 1, NULL, 10);
        line = next;
    }
    return -1;
}

/* Same program, same arguments: memusage's counts of malloc, calloc, realloc and free equal our
 * trace's counts of every event of those kinds (libc's own calls included). memusage counts
 * free(NULL) as a free call and realloc(NULL, n) and realloc(p, 0) as realloc calls; so do we.
 * (The program exits 1 under memusage: its calloc does not check nmemb * size for overflow,
 * pitfalls.md §15, which calls_known reports.) */
Test(counts, equal_glibc_memusage_for_malloc_calloc_realloc_free)
{
    if (access(MEMUSAGE, X_OK) != 0)
        cr_skip_test(MEMUSAGE " is not installed (Debian package libc-devtools)");
    char *margv[] = { MEMUSAGE, (char *)h_path("progs/calls_known"), "50", "basic", NULL };
    struct h_run m = h_run(margv, NULL, 0, NULL, 50);
    cr_assert(m.exited, "memusage calls_known: killed by signal %d", m.status);
    static const char *names[] = { "malloc", "calloc", "realloc", "free" };
    static const unsigned kinds[] = { MTF_EV_MALLOC, MTF_EV_CALLOC, MTF_EV_REALLOC, MTF_EV_FREE };
    long long ref[4];
    for (int i = 0; i < 4; i++) {
        ref[i] = memusage_calls(m.err, names[i]);
        cr_assert_geq(ref[i], 0, "no '%s|' line in memusage's output:\n%s", names[i], m.err);
    }
    h_run_free(&m);
    struct h_trace t;
    run_calls("50", "basic", &t);
    char diff[1024] = "";
    size_t dl = 0;
    for (int i = 0; i < 4; i++)
        if ((long long)t.counts[kinds[i]] != ref[i])
            dl +=
                (size_t)snprintf(diff + dl, sizeof diff - dl, "  %-8s memusage %lld, trace %llu\n",
                                 names[i], ref[i], (unsigned long long)t.counts[kinds[i]]);
    cr_assert_eq(dl, 0, "calls_known 50 basic: memusage and the trace disagree:\n%s", diff);
    /* the referee itself must count what the program did: its rounds, plus stdout's buffer */
    for (int i = 0; i < 4; i++)
        for (size_t k = 0; k < NTABLE; k++)
            if (table[k].kind == kinds[i]) {
                long long want = 50LL * table[k].basic + (kinds[i] == MTF_EV_MALLOC);
                cr_expect_eq(ref[i], want, "memusage counted %lld %s calls, expected %lld", ref[i],
                             names[i], want);
            }
    h_trace_free(&t);
}
