/* Unit tests of report/aggregate.c (and suppress.c's matching): traces built with tracegen, read
 * in time order through report/input.c, replayed; every figure checked to the byte against the
 * rules of docs/trace-format.md §7.2.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregate.h"
#include "input.h"
#include "suppress.h"
#include "tracegen.h"

TestSuite(aggregate, .timeout = 10);
TestSuite(suppress, .timeout = 10);

#define PAGE 4096

/* A trace being built: one thread's chunk, events appended at increasing times. */
struct gen {
    struct tg_buf t;
    struct tg_chunk c;
    struct mtf_end end;
    uint64_t ts;
};

static void gen_begin(struct gen *g)
{
    memset(g, 0, sizeof *g);
    g->end = tg_end_default();
    tg_file_header(&g->t, NULL);
    g->ts = 2000;
    tg_chunk_begin(&g->c, 4242, 1, g->ts, 0, 0);
}

static void ev(struct gen *g, struct rd_event e)
{
    e.ts_ns = g->ts += 10;
    if (e.kind != MTF_EV_STACK && !(e.flags & MTF_EVF_CLASS))
        e.cls = RD_CLASS_DEFAULT;
    tg_chunk_event(&g->c, &e);
}

static void gen_stack(struct gen *g, uint32_t id, uint64_t pc)
{
    uint64_t frames[2] = { pc, 0x400000 };
    ev(g, (struct rd_event){ .kind = MTF_EV_STACK, .stack = id, .nframes = 2, .frames = frames });
}

static void heap(struct gen *g, uint8_t kind, uint64_t addr, uint64_t size, uint64_t slack,
                 uint32_t stack)
{
    ev(g, (struct rd_event){
              .kind = kind, .addr = addr, .size = size, .slack = slack, .stack = stack });
}

static void fre(struct gen *g, uint64_t addr)
{
    ev(g, (struct rd_event){ .kind = MTF_EV_FREE, .addr = addr });
}

static void snapshot(struct gen *g, uint32_t reason, uint64_t rss, uint64_t total,
                     const char *label)
{
    ev(g, (struct rd_event){ .kind = MTF_EV_SNAPSHOT,
                             .snap_reason = reason,
                             .rss = rss,
                             .heap_total = total,
                             .heap_used = 111,
                             .external = 222,
                             .mapped = 333,
                             .rss_peak = reason == MTF_SNAP_EXIT ? rss * 2 : 0,
                             .label = label,
                             .label_len = label ? (uint32_t)strlen(label) : 0 });
}

static const struct mtf_reach_entry *reach_entries; /* REACH to add before END (test-set) */
static uint32_t reach_count;

/* Finish the trace and replay it. */
static struct agg *gen_run(struct gen *g)
{
    tg_chunk_end(&g->c, &g->t, &g->end);
    if (reach_entries != NULL) {
        uint8_t payload[MTF_REACH_SIZE + 8 * MTF_REACH_ENTRY_SIZE];
        struct mtf_reach h = { .ts_ns = g->ts + 100,
                               .flags = MTF_REACHF_LAST,
                               .count = reach_count };
        memcpy(payload, &h, sizeof h);
        memcpy(payload + sizeof h, reach_entries, reach_count * sizeof *reach_entries);
        tg_record(&g->t, MTF_REC_REACH, payload, sizeof h + reach_count * sizeof *reach_entries);
        reach_entries = NULL;
    }
    tg_end(&g->t, &g->end);
    struct input *in;
    int rc = input_open_mem(&in, g->t.data, g->t.len);
    cr_assert(eq(int, rc, 0), "%s", in ? input_error(in) : "nomem");
    struct agg *a = agg_new();
    agg_header(a, &input_status(in)->header);
    struct rd_item item;
    while ((rc = input_next(in, &item)) > 0)
        agg_item(a, &item);
    cr_assert(eq(int, rc, 0), "%s", input_error(in));
    agg_finish(a);
    input_close(in);
    tg_buf_free(&g->t);
    return a;
}

Test(aggregate, heap_used_counts_size_plus_slack_and_the_peak_is_its_maximum)
{
    struct gen g;
    gen_begin(&g);
    gen_stack(&g, 1, 0x401000);
    gen_stack(&g, 2, 0x402000);
    heap(&g, MTF_EV_MALLOC, 0x10000, 100, 4, 1);
    ev(&g, (struct rd_event){ .kind = MTF_EV_CALLOC,
                              .addr = 0x20000,
                              .nmemb = 10,
                              .elsize = 30,
                              .slack = 8,
                              .stack = 2 });
    ev(&g, (struct rd_event){ .kind = MTF_EV_MEMALIGN,
                              .addr = 0x30000,
                              .align = 64,
                              .size = 1000,
                              .slack = 24,
                              .stack = 1 });
    fre(&g, 0x30000);
    heap(&g, MTF_EV_MALLOC, 0x40000, 50, 6, 2);
    struct agg *a = gen_run(&g);

    cr_expect(eq(u64, a->peak.heap_used, 104 + 308 + 1024));
    cr_expect(eq(u64, a->peak.requested, 100 + 300 + 1000));
    cr_expect(eq(u64, a->peak.heap_blocks, 3));
    cr_expect(eq(u64, a->exit.heap_used, 104 + 308 + 56));
    cr_expect(eq(u64, a->exit.requested, 100 + 300 + 50));
    cr_expect(eq(int, a->exit.have_snapshot, 0), "no snapshot: rss and heapTotal unknown");
    cr_expect(eq(u64, a->counts[MTF_EV_MALLOC], 2));
    cr_expect(eq(u64, a->counts[MTF_EV_CALLOC], 1));
    cr_expect(eq(u64, a->counts[MTF_EV_MEMALIGN], 1));
    cr_expect(eq(u64, a->counts[MTF_EV_FREE], 1));

    const struct agg_site *s1 = agg_site(a, 1), *s2 = agg_site(a, 2);
    cr_assert(ne(ptr, (void *)s1, NULL));
    cr_assert(ne(ptr, (void *)s2, NULL));
    cr_expect(eq(u64, s1->calls, 2));
    cr_expect(eq(u64, s1->total_bytes, 1100));
    cr_expect(eq(u64, s1->peak_bytes, 1100));
    cr_expect(eq(u64, s1->at_peak, 1100), "both of site 1's blocks were live at the peak");
    cr_expect(eq(u64, s1->live_bytes, 100));
    cr_expect(eq(u64, s1->live_blocks, 1));
    cr_expect(eq(u64, s2->calls, 2));
    cr_expect(eq(u64, s2->total_bytes, 350));
    cr_expect(eq(u64, s2->at_peak, 300), "the 50-byte block came after the peak");
    cr_expect(eq(u64, s2->live_bytes, 350));
    cr_expect(eq(u64, s2->live_blocks, 2));
    agg_free(a);
}

Test(aggregate, realloc_frees_the_old_block_then_allocates_the_new_one)
{
    struct gen g;
    gen_begin(&g);
    gen_stack(&g, 1, 0x401000);
    gen_stack(&g, 2, 0x402000);
    heap(&g, MTF_EV_MALLOC, 0x10000, 100, 4, 1);
    /* grow and move: old freed (104 out), new in */
    ev(&g, (struct rd_event){ .kind = MTF_EV_REALLOC,
                              .old_addr = 0x10000,
                              .addr = 0x20000,
                              .size = 400,
                              .slack = 8,
                              .stack = 2,
                              .pre_ns = 5 });
    /* failed realloc: nothing changes */
    ev(&g, (struct rd_event){ .kind = MTF_EV_REALLOC,
                              .flags = MTF_EVF_FAILED,
                              .old_addr = 0x20000,
                              .size = 1ULL << 50,
                              .stack = 2 });
    /* realloc(NULL, n) is an allocation; realloc(p, 0) a free */
    ev(&g, (struct rd_event){ .kind = MTF_EV_REALLOC,
                              .old_addr = 0,
                              .addr = 0x30000,
                              .size = 10,
                              .slack = 14,
                              .stack = 1 });
    ev(&g, (struct rd_event){ .kind = MTF_EV_REALLOC, .old_addr = 0x30000, .stack = 1 });
    /* reallocarray in place */
    ev(&g, (struct rd_event){ .kind = MTF_EV_REALLOCARRAY,
                              .old_addr = 0x20000,
                              .addr = 0x20000,
                              .nmemb = 10,
                              .elsize = 20,
                              .slack = 8,
                              .stack = 1 });
    struct agg *a = gen_run(&g);
    cr_expect(eq(u64, a->peak.heap_used, 408 + 24), "peak after realloc(NULL, 10)");
    cr_expect(eq(u64, a->exit.heap_used, 208));
    cr_expect(eq(u64, a->exit.heap_blocks, 1));
    cr_expect(eq(u64, a->failed[MTF_EV_REALLOC], 1));
    cr_expect(eq(u64, a->counts[MTF_EV_REALLOC], 4));
    cr_expect(eq(u64, a->unknown_frees, 0));
    const struct agg_site *s1 = agg_site(a, 1), *s2 = agg_site(a, 2);
    cr_expect(eq(u64, s1->live_bytes, 200), "the block now belongs to the reallocarray's site");
    cr_expect(eq(u64, s1->calls, 3));
    cr_expect(eq(u64, s2->live_bytes, 0));
    cr_expect(eq(u64, s2->calls, 1), "the failed realloc is not a site call");
    agg_free(a);
}

Test(aggregate, class_flag_moves_a_heap_block_to_external)
{
    struct gen g;
    gen_begin(&g);
    heap(&g, MTF_EV_MALLOC, 0x10000, 1000, 8, 0);
    ev(&g, (struct rd_event){ .kind = MTF_EV_MALLOC,
                              .flags = MTF_EVF_CLASS,
                              .cls = MTF_CLASS_EXTERNAL,
                              .addr = 0x20000,
                              .size = 1 << 20,
                              .slack = 4080 });
    struct agg *a = gen_run(&g);
    cr_expect(eq(u64, a->exit.heap_used, 1008));
    cr_expect(eq(u64, a->exit.external, (1 << 20) + 4080));
    cr_expect(eq(u64, a->peak.heap_used, 1008));
    cr_expect(eq(u64, agg_site(a, 0)->live_blocks, 2), "both are malloc blocks live at exit");
    agg_free(a);
}

Test(aggregate, mappings_count_whole_pages_by_class)
{
    struct gen g;
    gen_begin(&g);
    gen_stack(&g, 1, 0x401000);
    const uint64_t anon = 0x22, file = 0x2; /* MAP_PRIVATE|MAP_ANONYMOUS, MAP_PRIVATE */
    ev(&g, (struct rd_event){ .kind = MTF_EV_MMAP,
                              .addr = 0x7f0000000000,
                              .size = 10 * PAGE + 1,
                              .mflags = anon,
                              .fd = -1,
                              .stack = 1 });
    ev(&g, (struct rd_event){ .kind = MTF_EV_MMAP64,
                              .addr = 0x7f1000000000,
                              .size = 3 * PAGE,
                              .mflags = file,
                              .fd = 3,
                              .stack = 1 });
    /* unmap 2 pages from the middle of the anonymous one, and pages never mapped */
    ev(&g, (struct rd_event){
               .kind = MTF_EV_MUNMAP, .addr = 0x7f0000000000 + 4 * PAGE, .size = 2 * PAGE });
    ev(&g, (struct rd_event){ .kind = MTF_EV_MUNMAP, .addr = 0x7e0000000000, .size = PAGE });
    /* grow the first 4 pages to 6 elsewhere: 4 out, 6 in, class of the old range */
    ev(&g, (struct rd_event){ .kind = MTF_EV_MREMAP,
                              .old_addr = 0x7f0000000000,
                              .old_len = 4 * PAGE,
                              .size = 6 * PAGE,
                              .mflags = 1,
                              .addr = 0x7f2000000000,
                              .stack = 1 });
    /* a failed munmap changes nothing */
    ev(&g,
       (struct rd_event){
           .kind = MTF_EV_MUNMAP, .flags = MTF_EVF_FAILED, .addr = 0x7f2000000000, .size = PAGE });
    struct agg *a = gen_run(&g);
    /* anonymous: 11 pages - 2 - 4 + 6 = 11 */
    cr_expect(eq(u64, a->exit.external, 11 * PAGE));
    cr_expect(eq(u64, a->exit.mapped, 3 * PAGE));
    cr_expect(eq(u64, a->exit.heap_used, 0));
    cr_expect(eq(u64, agg_site(a, 1)->calls, 3));
    cr_expect(eq(u64, a->counts[MTF_EV_MUNMAP], 3));
    cr_expect(eq(u64, a->failed[MTF_EV_MUNMAP], 1));
    agg_free(a);
}

Test(aggregate, frees_of_unknown_blocks_are_counted_not_fatal)
{
    struct gen g;
    gen_begin(&g);
    fre(&g, 0xdead0);
    fre(&g, 0);
    heap(&g, MTF_EV_MALLOC, 0x10000, 10, 6, 0);
    ev(&g,
       (struct rd_event){
           .kind = MTF_EV_REALLOC, .old_addr = 0xbeef0, .addr = 0x20000, .size = 20, .slack = 4 });
    struct agg *a = gen_run(&g);
    cr_expect(eq(u64, a->unknown_frees, 2), "free(NULL) is not unknown");
    cr_expect(eq(u64, a->exit.heap_used, 16 + 24));
    agg_free(a);
}

Test(aggregate, snapshots_make_the_timeline_and_give_rss_to_peak_and_exit)
{
    struct gen g;
    gen_begin(&g);
    snapshot(&g, MTF_SNAP_INTERVAL, 5000000, 300000, NULL);
    heap(&g, MTF_EV_MALLOC, 0x10000, 1000, 8, 0);
    snapshot(&g, MTF_SNAP_MARK, 6000000, 400000, "after load");
    heap(&g, MTF_EV_MALLOC, 0x20000, 2000, 16, 0);
    fre(&g, 0x20000);
    snapshot(&g, MTF_SNAP_EXIT, 7000000, 500000, NULL);
    struct agg *a = gen_run(&g);
    cr_assert(eq(sz, a->ntimeline, 3));
    cr_expect(eq(str, a->timeline[1].label, "after load"));
    cr_expect(eq(u32, a->timeline[1].reason, MTF_SNAP_MARK));
    cr_expect(eq(u64, a->timeline[1].rss, 6000000));
    cr_expect(eq(u64, a->timeline[1].heap_used, 111), "as recorded");
    cr_expect(eq(u64, a->timeline[1].replay_heap_used, 1008), "as replayed");
    cr_expect(eq(u64, a->peak.heap_used, 1008 + 2016));
    cr_expect(eq(int, a->peak.have_snapshot, 1));
    cr_expect(eq(u64, a->peak.rss, 6000000), "the snapshot before the peak");
    cr_expect(eq(u64, a->peak.heap_total, 400000));
    cr_expect(eq(u32, a->peak.snap_reason, MTF_SNAP_MARK));
    cr_expect(eq(u64, a->exit.heap_used, 1008));
    cr_expect(eq(u64, a->exit.rss, 7000000));
    cr_expect(eq(u64, a->exit.heap_total, 500000));
    cr_expect(eq(int, a->exit.have_rss_peak, 1));
    cr_expect(eq(u64, a->exit.rss_peak, 14000000));
    agg_free(a);
}

Test(aggregate, limit_events_are_kept_with_their_stack)
{
    struct gen g;
    gen_begin(&g);
    gen_stack(&g, 7, 0x407000);
    ev(&g, (struct rd_event){ .kind = MTF_EV_LIMIT,
                              .call = MTF_EV_CALLOC,
                              .limit_class = MTF_CLASS_HEAP,
                              .limit_mode = MTF_LIMIT_ENOMEM,
                              .limit = 1 << 20,
                              .live = 1000000,
                              .size = 100000,
                              .stack = 7 });
    ev(&g, (struct rd_event){ .kind = MTF_EV_CALLOC,
                              .flags = MTF_EVF_FAILED,
                              .nmemb = 1000,
                              .elsize = 100,
                              .stack = 7 });
    struct agg *a = gen_run(&g);
    cr_assert(eq(sz, a->nlimits, 1));
    cr_expect(eq(u64, a->limits_total, 1));
    cr_expect(eq(u32, a->limits[0].call, MTF_EV_CALLOC));
    cr_expect(eq(u32, a->limits[0].mode, MTF_LIMIT_ENOMEM));
    cr_expect(eq(u64, a->limits[0].limit, 1 << 20));
    cr_expect(eq(u64, a->limits[0].live, 1000000));
    cr_expect(eq(u64, a->limits[0].request, 100000));
    cr_expect(eq(u32, a->limits[0].stack, 7));
    cr_expect(eq(u64, a->failed[MTF_EV_CALLOC], 1));
    const uint64_t *frames;
    uint64_t ts;
    int trunc;
    cr_expect(eq(u32, agg_stack(a, 7, &frames, &ts, &trunc), 2));
    cr_expect(eq(u64, frames[0], 0x407000));
    agg_free(a);
}

Test(aggregate, site_at_peak_follows_the_last_maximum_only)
{
    struct gen g;
    gen_begin(&g);
    /* site 1 reaches 300 at an early local maximum; the global peak comes later when site 2
     * holds 1000 and site 1 holds 100 */
    heap(&g, MTF_EV_MALLOC, 0x1000, 300, 0, 1);
    fre(&g, 0x1000);
    heap(&g, MTF_EV_MALLOC, 0x2000, 100, 0, 1);
    heap(&g, MTF_EV_MALLOC, 0x3000, 1000, 0, 2);
    fre(&g, 0x3000);
    fre(&g, 0x2000);
    heap(&g, MTF_EV_MALLOC, 0x4000, 500, 0, 1);
    struct agg *a = gen_run(&g);
    cr_expect(eq(u64, a->peak.heap_used, 1100));
    cr_expect(eq(u64, agg_site(a, 1)->at_peak, 100));
    cr_expect(eq(u64, agg_site(a, 1)->peak_bytes, 500));
    cr_expect(eq(u64, agg_site(a, 2)->at_peak, 1000));
    cr_expect(eq(u64, agg_site(a, 2)->live_bytes, 0));
    agg_free(a);
}

Test(aggregate, many_blocks_grow_the_tables_and_all_free)
{
    struct gen g;
    gen_begin(&g);
    for (uint32_t i = 1; i <= 5000; i++)
        heap(&g, MTF_EV_MALLOC, 0x100000 + 64 * (uint64_t)i, i, 0, i % 700);
    for (uint32_t i = 1; i <= 5000; i += 2)
        fre(&g, 0x100000 + 64 * (uint64_t)i);
    struct agg *a = gen_run(&g);
    uint64_t odd = 2500ULL * 2500, even = 5000ULL * 5001 / 2 - odd;
    cr_expect(eq(u64, a->peak.heap_used, 5000ULL * 5001 / 2));
    cr_expect(eq(u64, a->exit.heap_used, even));
    cr_expect(eq(u64, a->exit.heap_blocks, 2500));
    size_t n;
    struct agg_site *s = agg_sites(a, &n);
    uint64_t live = 0;
    for (size_t i = 0; i < n; i++)
        live += s[i].live_bytes;
    cr_expect(eq(u64, live, even));
    cr_expect(eq(sz, n, 700));
    free(s);
    agg_free(a);
}

static void sum_block(void *ctx, uint64_t addr, uint64_t size, uint64_t slack, uint32_t stack,
                      uint32_t cls)
{
    (void)addr, (void)stack, (void)cls;
    uint64_t *sum = ctx;
    sum[0] += size + slack;
    sum[1]++;
}

Test(aggregate, live_blocks_stay_exact_under_random_churn_with_colliding_addresses)
{
    /* Addresses 64 KiB apart (same low bits), allocated, freed, freed twice and allocated again
     * while live, in a seeded random order: the live table's probes, growth and backward-shift
     * deletes must keep every figure equal to a plain model's. */
    enum { NADDR = 3000, OPS = 40000 };
    static uint64_t model[NADDR]; /* live size + 1 per address, 0 when free */
    memset(model, 0, sizeof model);
    uint64_t unknown = 0, reused = 0, seed = 12345;
    struct gen g;
    gen_begin(&g);
    for (int i = 0; i < OPS; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t r = (uint32_t)(seed >> 33);
        uint64_t k = r % NADDR, addr = 0x7f0000000000 + (k << 16);
        if (r & (1u << 30)) {
            uint64_t size = 1 + (r >> 20) % 500;
            reused += model[k] != 0;
            model[k] = size + 1;
            heap(&g, MTF_EV_MALLOC, addr, size, 8, 1 + (uint32_t)(k % 7));
        } else {
            unknown += model[k] == 0;
            model[k] = 0;
            fre(&g, addr);
        }
    }
    struct agg *a = gen_run(&g);
    uint64_t bytes = 0, blocks = 0;
    for (size_t k = 0; k < NADDR; k++)
        if (model[k] != 0) {
            bytes += model[k] - 1 + 8;
            blocks++;
        }
    cr_expect(eq(u64, a->exit.heap_used, bytes));
    cr_expect(eq(u64, a->exit.heap_blocks, blocks));
    cr_expect(eq(u64, a->unknown_frees, unknown), "a free of an address not live is unknown");
    cr_expect(eq(u64, a->reused_addresses, reused), "an allocation at a live address is reuse");
    uint64_t sum[2] = { 0, 0 };
    agg_live_blocks(a, sum_block, sum);
    cr_expect(eq(u64, sum[0], bytes), "the live table holds exactly the live blocks");
    cr_expect(eq(u64, sum[1], blocks));
    size_t n;
    struct agg_site *s = agg_sites(a, &n);
    uint64_t site_blocks = 0;
    for (size_t i = 0; i < n; i++)
        site_blocks += s[i].live_blocks;
    cr_expect(eq(u64, site_blocks, blocks), "the sites' live blocks add up");
    free(s);
    agg_free(a);
}

Test(aggregate, a_leak_scan_marks_reached_blocks_as_not_leaked)
{
    struct gen g;
    gen_begin(&g);
    heap(&g, MTF_EV_MALLOC, 0x10000, 100, 4, 1); /* lost */
    heap(&g, MTF_EV_MALLOC, 0x20000, 200, 8, 1); /* reachable */
    heap(&g, MTF_EV_MALLOC, 0x30000, 300, 4, 2); /* lost, indirect */
    static const struct mtf_reach_entry lost[] = { { 0x10000, MTF_REACH_DIRECT, 0 },
                                                   { 0x30000, MTF_REACH_INDIRECT, 0 },
                                                   { 0x99999, MTF_REACH_DIRECT, 0 } };
    reach_entries = lost;
    reach_count = 3;
    struct agg *a = gen_run(&g);
    cr_expect(eq(int, a->have_reach, 1));
    cr_expect(eq(u64, agg_site(a, 1)->live_blocks, 2));
    cr_expect(eq(u64, agg_site(a, 1)->reachable_blocks, 1));
    cr_expect(eq(u64, agg_site(a, 1)->reachable_bytes, 200));
    cr_expect(eq(u64, agg_site(a, 2)->reachable_blocks, 0), "indirectly lost is lost");
    agg_free(a);
}

Test(suppress, template_match_is_lsan_compatible)
{
    cr_expect(supp_template_match("foo", "libfoo.so"));
    cr_expect(supp_template_match("^lib", "libfoo.so"));
    cr_expect(not(supp_template_match("^foo", "libfoo.so")));
    cr_expect(supp_template_match("so$", "libfoo.so"));
    cr_expect(not(supp_template_match("foo$", "libfoo.so")));
    cr_expect(supp_template_match("parse_*_config", "parse_main_config"));
    cr_expect(not(supp_template_match("parse_*_config", "parse_main_conf")));
    cr_expect(supp_template_match("*", "x"));
    cr_expect(not(supp_template_match("x", "")));
    cr_expect(not(supp_template_match("x", NULL)));
}

Test(suppress, a_bad_line_names_the_file_and_line)
{
    char path[] = "/tmp/memtrace-supp-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(ge(int, fd, 0));
    const char text[] = "# comment\n\nleak:good\nrace:bad\n";
    cr_assert(eq(long, write(fd, text, sizeof text - 1), (long)sizeof text - 1));
    close(fd);
    struct suppressions s;
    supp_init(&s, 1);
    char err[256] = "";
    cr_expect(eq(int, supp_load(&s, path, err, sizeof err), -1));
    char want[300];
    snprintf(want, sizeof want, "%s:4: expected 'leak:<pattern>', got 'race:bad'", path);
    cr_expect(eq(str, err, want));
    cr_expect(eq(sz, s.n, 4), "three built-in rules and the good line");
    cr_expect(eq(str, (char *)s.rules[3].name, "good"));
    supp_fini(&s);
    unlink(path);
}

Test(suppress, builtin_rules_match_by_module_and_function)
{
    struct sv_frame loader[] = { { .function = "malloc_wrapper", .module = "/lib/libx.so" },
                                 { .function = "_dl_allocate_tls",
                                   .module = "/lib64/ld-linux-x86-64.so.2" },
                                 { .function = "main", .module = "/usr/bin/app" } };
    struct sv_frame stdio[] = { { .function = "__GI__IO_file_doallocate",
                                  .module = "/lib/x86_64-linux-gnu/libc.so.6" },
                                { .function = "main", .module = "/usr/bin/app" } };
    struct sv_frame runtime[] = {
        { .function = NULL, .module = "/lib/x86_64-linux-gnu/libstdc++.so.6" },
        { .function = "call_init", .module = "/lib/x86_64-linux-gnu/libc.so.6" }
    };
    struct sv_frame mine[] = { { .function = "strdup",
                                 .module = "/lib/x86_64-linux-gnu/libc.so.6" },
                               { .function = "main", .module = "/usr/bin/app" } };
    struct sv_stack st[] = { { .f = loader, .n = 3 },
                             { .f = stdio, .n = 2 },
                             { .f = runtime, .n = 2 },
                             { .f = mine, .n = 2 } };
    struct suppressions s;
    supp_init(&s, 1);
    cr_expect(eq(int, supp_match(&s, &st[0]), 0));
    cr_expect(eq(str, (char *)s.rules[0].name, "loader"));
    cr_expect(eq(int, supp_match(&s, &st[1]), 1));
    cr_expect(eq(int, supp_match(&s, &st[2]), 2));
    cr_expect(eq(int, supp_match(&s, &st[3]), -1), "a program frame: a real leak");
    supp_fini(&s);
    supp_init(&s, 0);
    for (int i = 0; i < 4; i++)
        cr_expect(eq(int, supp_match(&s, &st[i]), -1), "defaults off: %d", i);
    supp_fini(&s);
}
