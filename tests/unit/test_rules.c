/* preload/rules.c: MEMTRACE_RULES. Parsing is pure, so each case hands a spec to mt_rules_parse
 * (or mt_rules_load for @files) and checks what classify then answers at the boundaries, or the
 * exact one-line error. Expected sizes are written out by hand (units are powers of 1024), never
 * computed with the parser under test. Stack conditions are checked two ways: with a stackinfo
 * built by hand, and with mt_rules_stack_eval on real return addresses (functions of this
 * runner, of libc and of libdw), which goes through preload/symtab.c.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "helpers.h"
#include "memtrace/format.h"
#include "rules.h"

TestSuite(rules, .init = h_tmpdir_setup, .fini = h_tmpdir_teardown, .timeout = 20);

#define ERR_CAP  1024
#define TEXT_MAX 160

#define HEAP     MTF_CLASS_HEAP
#define EXTERNAL MTF_CLASS_EXTERNAL
#define MAPPED   MTF_CLASS_MAPPED
#define NONE     7 /* a default class no rule can return: "no rule matched" */

static void parse_ok(const char *spec, struct mt_rules *r)
{
    char err[ERR_CAP] = "";
    int rc = mt_rules_parse(spec, r, err, sizeof err);
    cr_assert(eq(int, rc, 0), "\"%s\" rejected: %s", spec, err);
}

static unsigned cls(const struct mt_rules *r, unsigned kind, uint64_t size)
{
    return mt_rules_classify(r, kind, size, NONE, NULL);
}

/* ---- each condition, at its boundaries ---------------------------------------------------------
 */

struct probe {
    char spec[TEXT_MAX];
    unsigned kind;
    uint64_t size;
    unsigned expect; /* a class, or NONE */
};

ParameterizedTestParameters(rules, classifies_by_condition)
{
    static struct probe cases[] = {
        /* size, every operator and unit */
        { "size>=1M:external", MTF_EV_MALLOC, 1048576, EXTERNAL },
        { "size>=1M:external", MTF_EV_MALLOC, 1048575, NONE },
        { "size>1M:external", MTF_EV_MALLOC, 1048576, NONE },
        { "size>1M:external", MTF_EV_MALLOC, 1048577, EXTERNAL },
        { "size<4096:heap", MTF_EV_MMAP, 4095, HEAP },
        { "size<4096:heap", MTF_EV_MMAP, 4096, NONE },
        { "size<4K:heap", MTF_EV_MMAP, 0, HEAP },
        { "size<=4K:heap", MTF_EV_MMAP, 4096, HEAP },
        { "size<=4K:heap", MTF_EV_MMAP, 4097, NONE },
        { "size=100:mapped", MTF_EV_CALLOC, 100, MAPPED },
        { "size=100:mapped", MTF_EV_CALLOC, 101, NONE },
        { "size=100:mapped", MTF_EV_CALLOC, 99, NONE },
        { "size==100:mapped", MTF_EV_CALLOC, 100, MAPPED },
        { "size>=1.5G:external", MTF_EV_MALLOC, 1610612736, EXTERNAL },
        { "size>=1.5G:external", MTF_EV_MALLOC, 1610612735, NONE },
        { "size>=2T:external", MTF_EV_MALLOC, 2199023255552ULL, EXTERNAL },
        { "size>=64KiB:external", MTF_EV_MALLOC, 65536, EXTERNAL },
        { "size>=64KiB:external", MTF_EV_MALLOC, 65535, NONE },
        { "size>=1k:external", MTF_EV_MALLOC, 1024, EXTERNAL },
        { "size>18446744073709551614:heap", MTF_EV_MALLOC, UINT64_MAX, HEAP },
        /* two size conditions make a range */
        { "size>=1K,size<2K:mapped", MTF_EV_MALLOC, 1024, MAPPED },
        { "size>=1K,size<2K:mapped", MTF_EV_MALLOC, 2047, MAPPED },
        { "size>=1K,size<2K:mapped", MTF_EV_MALLOC, 2048, NONE },
        { "size>=1K,size<2K:mapped", MTF_EV_MALLOC, 1023, NONE },
        /* kind: names, groups, alternatives */
        { "kind=malloc:external", MTF_EV_MALLOC, 1, EXTERNAL },
        { "kind=malloc:external", MTF_EV_CALLOC, 1, NONE },
        { "kind=calloc:external", MTF_EV_CALLOC, 1, EXTERNAL },
        { "kind=realloc:external", MTF_EV_REALLOC, 1, EXTERNAL },
        { "kind=realloc:external", MTF_EV_REALLOCARRAY, 1, NONE },
        { "kind=reallocarray:external", MTF_EV_REALLOCARRAY, 1, EXTERNAL },
        { "kind=posix_memalign:external", MTF_EV_POSIX_MEMALIGN, 1, EXTERNAL },
        { "kind=aligned_alloc:external", MTF_EV_ALIGNED_ALLOC, 1, EXTERNAL },
        { "kind=memalign:external", MTF_EV_MEMALIGN, 1, EXTERNAL },
        { "kind=valloc:external", MTF_EV_VALLOC, 1, EXTERNAL },
        { "kind=pvalloc:external", MTF_EV_PVALLOC, 1, EXTERNAL },
        { "kind=mmap:heap", MTF_EV_MMAP, 1, HEAP },
        { "kind=mmap:heap", MTF_EV_MMAP64, 1, HEAP },
        { "kind=mmap64:heap", MTF_EV_MMAP64, 1, HEAP },
        { "kind=mmap64:heap", MTF_EV_MMAP, 1, NONE },
        { "kind=mremap:heap", MTF_EV_MREMAP, 1, HEAP },
        { "kind=mremap:heap", MTF_EV_MMAP, 1, NONE },
        { "kind=heap:mapped", MTF_EV_PVALLOC, 1, MAPPED },
        { "kind=heap:mapped", MTF_EV_MALLOC, 1, MAPPED },
        { "kind=heap:mapped", MTF_EV_MMAP, 1, NONE },
        { "kind=map:mapped", MTF_EV_MREMAP, 1, MAPPED },
        { "kind=map:mapped", MTF_EV_MMAP64, 1, MAPPED },
        { "kind=map:mapped", MTF_EV_MALLOC, 1, NONE },
        { "kind=malloc|mmap:mapped", MTF_EV_MMAP, 1, MAPPED },
        { "kind=malloc|mmap:mapped", MTF_EV_MALLOC, 1, MAPPED },
        { "kind=malloc|mmap:mapped", MTF_EV_CALLOC, 1, NONE },
        { "kind = calloc | valloc :mapped", MTF_EV_VALLOC, 1, MAPPED },
        { "kind=heap,kind=malloc|mmap:mapped", MTF_EV_MALLOC, 1, MAPPED },
        { "kind=heap,kind=malloc|mmap:mapped", MTF_EV_MMAP, 1, NONE },
        /* kinds that create no memory never match */
        { "size>=0:heap", MTF_EV_FREE, 0, NONE },
        { "size>=0:heap", MTF_EV_MUNMAP, 4096, NONE },
        { "size>=0:heap", MTF_EV_STACK, 0, NONE },
        { "size>=0:heap", MTF_EV_MALLOC, 0, HEAP },
        /* kind and size together */
        { "kind=mmap,size>=1M:mapped", MTF_EV_MMAP, 1048576, MAPPED },
        { "kind=mmap,size>=1M:mapped", MTF_EV_MMAP, 1048575, NONE },
        { "kind=mmap,size>=1M:mapped", MTF_EV_MALLOC, 1048576, NONE },
        /* blanks, separators, comments */
        { "  size >= 1M : external  ", MTF_EV_MALLOC, 1048576, EXTERNAL },
        { "\tsize>=1M\t:\texternal\r", MTF_EV_MALLOC, 1048576, EXTERNAL },
        { ";;size>=1M:external;;", MTF_EV_MALLOC, 1048576, EXTERNAL },
        { "\n\nsize>=1M:external\n\n", MTF_EV_MALLOC, 1048576, EXTERNAL },
        { "# size>=1M:external", MTF_EV_MALLOC, 1048576, NONE },
        { "size>=1M:external # big ones; size>=0:heap", MTF_EV_MALLOC, 1, NONE },
        { "# big ones\nsize>=1M:external\nsize>=0:heap", MTF_EV_MALLOC, 1, HEAP },
        { "", MTF_EV_MALLOC, 1, NONE },
        { "   ", MTF_EV_MALLOC, 1, NONE },
    };
    return cr_make_param_array(struct probe, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct probe *c, rules, classifies_by_condition)
{
    struct mt_rules r;
    parse_ok(c->spec, &r);
    cr_expect(eq(u32, cls(&r, c->kind, c->size), c->expect), "\"%s\" kind %u size %llu", c->spec,
              c->kind, (unsigned long long)c->size);
}

Test(rules, first_match_wins)
{
    struct mt_rules r;
    parse_ok("size>=1M:external; size>=1K:mapped; kind=heap:heap; size>=0:external", &r);
    cr_expect(eq(u32, cls(&r, MTF_EV_MALLOC, 2 << 20), EXTERNAL), "the first rule, not the second");
    cr_expect(eq(u32, cls(&r, MTF_EV_MALLOC, 2048), MAPPED), "the second rule");
    cr_expect(eq(u32, cls(&r, MTF_EV_MALLOC, 10), HEAP), "the third rule");
    cr_expect(eq(u32, cls(&r, MTF_EV_MMAP, 10), EXTERNAL), "the fourth rule");
    parse_ok("size>=0:heap; size>=1M:external", &r);
    cr_expect(eq(u32, cls(&r, MTF_EV_MALLOC, 2 << 20), HEAP), "a catch-all first hides the rest");
}

Test(rules, no_match_gives_the_default_class)
{
    struct mt_rules r;
    parse_ok("size>=1M:external", &r);
    for (unsigned d = 0; d < MTF_CLASS_COUNT; d++)
        cr_expect(eq(u32, mt_rules_classify(&r, MTF_EV_MMAP, 10, d, NULL), d));
    parse_ok("", &r);
    cr_expect(eq(u32, r.n, 0));
    cr_expect(eq(u32, mt_rules_classify(&r, MTF_EV_MALLOC, 10, MAPPED, NULL), MAPPED));
}

Test(rules, needs_stack_only_with_lib_or_func)
{
    struct mt_rules r;
    parse_ok("size>=1M:external; kind=mmap:heap", &r);
    cr_expect(eq(int, mt_rules_needs_stack(&r), 0));
    parse_ok("size>=1M:external; lib=libpng*:external", &r);
    cr_expect(ne(int, mt_rules_needs_stack(&r), 0));
    parse_ok("func=arena_*:heap", &r);
    cr_expect(ne(int, mt_rules_needs_stack(&r), 0));
}

Test(rules, holds_the_maximum_number_of_rules_and_conditions)
{
    char spec[4096] = "";
    for (int i = 0; i < MT_RULES_MAX; i++) {
        char one[96];
        snprintf(one, sizeof one, "kind=malloc,size>=%d,size<%d,func=f%d*:external;", i * 10,
                 i * 10 + 10, i);
        strcat(spec, one);
    }
    struct mt_rules r;
    parse_ok(spec, &r);
    cr_expect(eq(u32, r.n, MT_RULES_MAX));
    struct mt_rules_stackinfo si = { 1U << 31 };
    cr_expect(eq(u32, mt_rules_classify(&r, MTF_EV_MALLOC, 315, NONE, &si), EXTERNAL));
    cr_expect(eq(u32, mt_rules_classify(&r, MTF_EV_MALLOC, 305, NONE, &si), NONE),
              "rule 30's stack conditions do not hold");
}

/* ---- stackinfo by hand -------------------------------------------------------------------------
 */

Test(rules, stack_rules_match_only_when_their_bit_is_set)
{
    struct mt_rules r;
    parse_ok("func=arena_*:heap; lib=libpng*:external; size>=1M:mapped; "
             "func=pool_*,size<4096:mapped",
             &r);
    cr_expect(eq(u32, r.stack_mask, 0xbU), "rules 0, 1 and 3 have stack conditions");
    struct mt_rules_stackinfo none = { 0 }, arena = { 1 }, png = { 2 }, pool = { 8 };
    struct mt_rules_stackinfo both = { 3 };
    unsigned k = MTF_EV_MMAP;
    cr_expect(eq(u32, mt_rules_classify(&r, k, 10, NONE, NULL), NONE), "no stack, no stack rule");
    cr_expect(eq(u32, mt_rules_classify(&r, k, 10, NONE, &none), NONE));
    cr_expect(eq(u32, mt_rules_classify(&r, k, 10, NONE, &arena), HEAP));
    cr_expect(eq(u32, mt_rules_classify(&r, k, 10, NONE, &png), EXTERNAL));
    cr_expect(eq(u32, mt_rules_classify(&r, k, 10, NONE, &both), HEAP), "first match wins");
    cr_expect(eq(u32, mt_rules_classify(&r, k, 2 << 20, NONE, &none), MAPPED));
    cr_expect(eq(u32, mt_rules_classify(&r, k, 10, NONE, &pool), MAPPED));
    cr_expect(eq(u32, mt_rules_classify(&r, k, 4096, NONE, &pool), NONE),
              "the stack holds, the size does not");
}

/* ---- stack evaluation on real return addresses -------------------------------------------------
 */

__attribute__((noinline)) void arena_alloc_fixture(void);
static volatile int fixture_calls;

/* Different bodies, so identical code folding cannot merge them. */
__attribute__((noinline)) void arena_alloc_fixture(void)
{
    fixture_calls += 1;
}

__attribute__((noinline)) static void plain_caller_fixture(void)
{
    fixture_calls += 2;
}

/* A "return address" inside fn: its address + 1 (stack_eval looks up ra - 1). */
#define RA(fn) ((uint64_t)(uintptr_t)(fn) + 1)

static uint64_t libc_ra(const char *name)
{
    void *p = dlsym(RTLD_DEFAULT, name);
    cr_assert(ne(ptr, p, NULL), "dlsym %s", name);
    return (uint64_t)(uintptr_t)p + 1;
}

static uint32_t eval(const char *spec, const uint64_t *frames, uint32_t n)
{
    struct mt_rules r;
    parse_ok(spec, &r);
    struct mt_rules_stackinfo si = { 0xdeadbeef };
    mt_rules_stack_eval(&r, frames, n, &si);
    return si.match;
}

Test(rules, func_matches_any_frame_of_the_stack)
{
    uint64_t f[3] = { libc_ra("qsort"), RA(plain_caller_fixture), RA(arena_alloc_fixture) };
    cr_expect(eq(u32, eval("func=arena_*:heap", f, 3), 1), "outermost frame");
    cr_expect(eq(u32, eval("func=plain_caller_fixture:heap", f, 3), 1), "a static function");
    cr_expect(eq(u32, eval("func=qsort:heap", f, 3), 1), "libc's frame (.dynsym)");
    cr_expect(eq(u32, eval("func=arena_*:heap", f, 2), 0), "only the n frames given");
    cr_expect(eq(u32, eval("func=arena:heap", f, 3), 0), "the whole name must match");
    cr_expect(eq(u32, eval("func=nothing_*:heap; func=*_fixture:heap", f, 3), 2));
    cr_expect(eq(u32, eval("func=arena_*,func=plain_*:heap", f, 3), 1), "both conditions hold");
    cr_expect(eq(u32, eval("func=arena_*,func=nothing_*:heap", f, 3), 0), "one fails");
    cr_expect(eq(u32, eval("size>=1M:heap; func=arena_*:heap", f, 3), 2),
              "bits are rule numbers; rules without stack conditions get none");
}

Test(rules, lib_is_the_innermost_module_outside_the_runtime)
{
    void *dw = dlsym(RTLD_DEFAULT, "dwarf_begin");
    cr_assert(ne(ptr, dw, NULL), "the runner links libdw");
    uint64_t self[2] = { libc_ra("qsort"), RA(arena_alloc_fixture) };
    uint64_t viadw[3] = { libc_ra("malloc"), (uint64_t)(uintptr_t)dw + 1, RA(arena_alloc_fixture) };
    uint64_t libc_only[2] = { libc_ra("qsort"), libc_ra("malloc") };
    char exe[4096], self_rule[4200];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert(k > 0);
    exe[k] = '\0';
    snprintf(self_rule, sizeof self_rule, "lib=%s:external", strrchr(exe, '/') + 1);
    cr_expect(eq(u32, eval(self_rule, self, 2), 1), "past libc to the program (%s)", self_rule);
    cr_expect(eq(u32, eval("lib=libc*:external", self, 2), 0), "libc is never the caller...");
    cr_expect(eq(u32, eval("lib=libc.so*:external", libc_only, 2), 1),
              "...unless every frame is in the runtime");
    cr_expect(eq(u32, eval("lib=libdw*:external", viadw, 3), 1), "the library that called");
    cr_expect(eq(u32, eval(self_rule, viadw, 3), 0), "not an outer module");
    cr_expect(eq(u32, eval("lib=*/libdw*:external", viadw, 3), 1), "a '/' matches the path");
    cr_expect(eq(u32, eval("lib=libdw*/:external", viadw, 3), 0));
    uint64_t nowhere[1] = { 16 };
    cr_expect(eq(u32, eval("lib=*:external", nowhere, 1), 0), "no module, no caller");
    cr_expect(eq(u32, eval("lib=*:external", nowhere, 0), 0), "an empty stack");
}

Test(rules, stack_eval_keeps_errno)
{
    uint64_t f[1] = { 16 };
    errno = 4242;
    eval("func=x*:heap; lib=y*:heap", f, 1);
    cr_expect(eq(int, errno, 4242));
}

/* ---- glob
 * ---------------------------------------------------------------------------------------- */

struct glob_case {
    char pattern[40];
    char name[48];
    int match;
};

ParameterizedTestParameters(rules, glob)
{
    static struct glob_case cases[] = {
        { "", "", 1 },
        { "", "a", 0 },
        { "*", "", 1 },
        { "*", "anything", 1 },
        { "**", "", 1 },
        { "a", "a", 1 },
        { "a", "A", 0 },
        { "a", "ab", 0 },
        { "ab", "a", 0 },
        { "a*", "a", 1 },
        { "*a", "ba", 1 },
        { "*a", "ab", 0 },
        { "*ab", "aab", 1 },
        { "a*b*c", "aXbYc", 1 },
        { "a*b*c", "abc", 1 },
        { "a*b*c", "aXbY", 0 },
        { "a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0 },
        { "?", "", 0 },
        { "?", "x", 1 },
        { "??", "x", 0 },
        { "a?c", "abc", 1 },
        { "[abc]", "b", 1 },
        { "[abc]", "d", 0 },
        { "[abc]", "", 0 },
        { "[!abc]", "b", 0 },
        { "[!abc]", "d", 1 },
        { "[^abc]", "d", 1 },
        { "[a-c]x", "bx", 1 },
        { "[a-c]x", "dx", 0 },
        { "[!a-c]x", "dx", 1 },
        { "[0-9][0-9]", "16", 1 },
        { "[]]", "]", 1 },
        { "[]a]", "a", 1 },
        { "[!]]", "]", 0 },
        { "[!]]", "a", 1 },
        { "[a-]", "-", 1 },
        { "[-a]", "-", 1 },
        { "\\*", "*", 1 },
        { "\\*", "a", 0 },
        { "\\?", "?", 1 },
        { "\\[x]", "[x]", 1 },
        { "a\\b", "ab", 1 },
        { "libpng*", "libpng16.so.16", 1 },
        { "libpng*", "xlibpng16.so.16", 0 },
        { "*.so.*", "libz.so.1", 1 },
        { "_ZN5arena*", "_ZN5arena5allocEm", 1 },
        { "*alloc*", "png_like_row", 0 },
        { "caf\xc3\xa9*", "caf\xc3\xa9s", 1 },
        { "[\x80-\xff]", "\xc3", 1 },
    };
    return cr_make_param_array(struct glob_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct glob_case *c, rules, glob)
{
    cr_expect(eq(int, mt_rules_glob(c->pattern, c->name), c->match), "\"%s\" vs \"%s\"", c->pattern,
              c->name);
}

/* ---- malformed rules: one line naming the rule and the fault -----------------------------------
 */

struct bad_case {
    char spec[TEXT_MAX];
    char message[240];
};

ParameterizedTestParameters(rules, rejects_malformed_rule)
{
    static struct bad_case cases[] = {
        { "size>=1M", "rule 1 \"size>=1M\": no ':class' at the end (e.g. size>=1M:external)" },
        { "size>=1M:",
          "rule 1 \"size>=1M:\": no class after ':' (expected heap, external or mapped)" },
        { "size>=1M:extrnal", "rule 1 \"size>=1M:extrnal\": unknown class \"extrnal\" (expected "
                              "heap, external or mapped)" },
        { "size>=1M:Heap",
          "rule 1 \"size>=1M:Heap\": unknown class \"Heap\" (expected heap, external or mapped)" },
        { ":heap", "rule 1 \":heap\": no condition before ':' (e.g. size>=1M:external)" },
        { " , :heap", "rule 1 \", :heap\": empty condition (a ',' with nothing on one side)" },
        { "size>1,,kind=malloc:heap",
          "rule 1 \"size>1,,kind=malloc:heap\": empty condition (a ',' with nothing on one "
          "side)" },
        { "size>1,:heap", "rule 1 \"size>1,:heap\": empty condition (a ',' with nothing on one "
                          "side)" },
        { "size>1,size>2,size>3,size>4,size>5:heap",
          "rule 1 \"size>1,size>2,size>3,size>4,size>5:heap\": more than 4 conditions" },
        { "size>=1Q:heap",
          "rule 1 \"size>=1Q:heap\": size>=1Q: not a byte size (e.g. 4096, 64K, 1.5M)" },
        { "size>=-1:heap",
          "rule 1 \"size>=-1:heap\": size>=-1: not a byte size (e.g. 4096, 64K, 1.5M)" },
        { "size>=:heap", "rule 1 \"size>=:heap\": size>=: not a byte size (e.g. 4096, 64K, "
                         "1.5M)" },
        { "size>=1.5:heap",
          "rule 1 \"size>=1.5:heap\": size>=1.5: not a byte size (e.g. 4096, 64K, 1.5M)" },
        { "size:heap", "rule 1 \"size:heap\": size needs one of <, <=, >, >=, = and a byte "
                       "size (e.g. size>=1M)" },
        { "size=>1M:heap", "rule 1 \"size=>1M:heap\": size needs one of <, <=, >, >=, = and a "
                           "byte size (e.g. size>=1M)" },
        { "size!=1M:heap", "rule 1 \"size!=1M:heap\": size needs one of <, <=, >, >=, = and a "
                           "byte size (e.g. size>=1M)" },
        { "size<0:heap", "rule 1 \"size<0:heap\": size<0 never holds" },
        { "size>18446744073709551615:heap",
          "rule 1 \"size>18446744073709551615:heap\": size>18446744073709551615 never holds" },
        { "size>1M,size<1K:heap",
          "rule 1 \"size>1M,size<1K:heap\": the size conditions never hold together" },
        { "kind=malloc,kind=mmap:heap",
          "rule 1 \"kind=malloc,kind=mmap:heap\": the kind conditions never hold together" },
        { "kind=mallc:heap",
          "rule 1 \"kind=mallc:heap\": unknown kind \"mallc\" (expected malloc, calloc, realloc, "
          "reallocarray, posix_memalign, aligned_alloc, memalign, valloc, pvalloc, mmap, mmap64, "
          "mremap, heap or map, joined by '|')" },
        { "kind=malloc|:heap",
          "rule 1 \"kind=malloc|:heap\": unknown kind \"\" (expected malloc, calloc, realloc, "
          "reallocarray, posix_memalign, aligned_alloc, memalign, valloc, pvalloc, mmap, mmap64, "
          "mremap, heap or map, joined by '|')" },
        { "kind>malloc:heap", "rule 1 \"kind>malloc:heap\": kind needs '=' and a value (e.g. "
                              "kind=mmap)" },
        { "lib:heap", "rule 1 \"lib:heap\": lib needs '=' and a value (e.g. lib=libpng*)" },
        { "lib!=libc*:heap",
          "rule 1 \"lib!=libc*:heap\": lib needs '=' and a value (e.g. lib=libpng*)" },
        { "func==x:heap", "rule 1 \"func==x:heap\": func needs '=' and a value (e.g. "
                          "func=arena_*)" },
        { "color=red:heap", "rule 1 \"color=red:heap\": unknown condition \"color=red\" "
                            "(expected size, kind, lib or func)" },
        { "1M<=size:heap", "rule 1 \"1M<=size:heap\": unknown condition \"1M<=size\" (expected "
                           "size, kind, lib or func)" },
        { "func=:heap", "rule 1 \"func=:heap\": func= has an empty pattern" },
        { "lib= :heap", "rule 1 \"lib= :heap\": lib= has an empty pattern" },
        { "func=a[bc:heap", "rule 1 \"func=a[bc:heap\": func pattern \"a[bc\": '[' without a "
                            "closing ']'" },
        { "lib=ab\\:heap", "rule 1 \"lib=ab\\:heap\": lib pattern \"ab\\\" ends with a lone '\\'" },
        { "func=arena::alloc*:heap",
          "rule 1 \"func=arena::alloc*:heap\": func pattern \"arena::alloc*\" has a ':': names "
          "are matched mangled (func=_ZN5arena* for arena::*)" },
        /* the faulty rule is named by its rank, or its line when there are several lines */
        { "size>=1M:external; lib=x:hep",
          "rule 2 \"lib=x:hep\": unknown class \"hep\" (expected heap, external or mapped)" },
        { ";; size>=1M:external;; # ok\n lib=x:hep",
          "line 2 \"lib=x:hep\": unknown class \"hep\" (expected heap, external or mapped)" },
        { "# first\n\nsize>=1M:external\nsize>>1:heap\n",
          "line 4 \"size>>1:heap\": size needs one of <, <=, >, >=, = and a byte size (e.g. "
          "size>=1M)" },
    };
    return cr_make_param_array(struct bad_case, cases, sizeof cases / sizeof cases[0]);
}

static void expect_one_line(const char *err)
{
    cr_expect(ne(sz, strlen(err), 0), "a rejected spec comes with an error text");
    cr_expect(zero(ptr, (void *)strchr(err, '\n')), "error text is one line: \"%s\"", err);
}

ParameterizedTest(struct bad_case *c, rules, rejects_malformed_rule)
{
    struct mt_rules r;
    char err[ERR_CAP] = "";
    cr_assert(eq(int, mt_rules_parse(c->spec, &r, err, sizeof err), -1), "\"%s\" accepted",
              c->spec);
    expect_one_line(err);
    cr_expect(eq(str, err, c->message));
}

Test(rules, rejects_a_33rd_rule)
{
    char spec[2048] = "";
    for (int i = 0; i < MT_RULES_MAX + 1; i++)
        strcat(spec, "size>=1M:external;");
    struct mt_rules r;
    char err[ERR_CAP] = "";
    cr_assert(eq(int, mt_rules_parse(spec, &r, err, sizeof err), -1));
    cr_expect(eq(str, err, "rule 33 \"size>=1M:external\": more than 32 rules"));
}

Test(rules, rejects_a_rule_longer_than_the_limit)
{
    char spec[512] = "func=";
    memset(spec + 5, 'a', 300);
    strcpy(spec + 305, ":heap");
    struct mt_rules r;
    char err[ERR_CAP] = "";
    cr_assert(eq(int, mt_rules_parse(spec, &r, err, sizeof err), -1));
    expect_one_line(err);
    cr_expect(ne(ptr, strstr(err, "rule 1 \"func=aaaa"), NULL), "%s", err);
    cr_expect(ne(ptr, strstr(err, "...\": longer than 255 characters"), NULL), "%s", err);
}

Test(rules, rejects_patterns_beyond_the_pool)
{
    /* 20 patterns of 120 bytes (121 with their NUL) fill 2420 bytes: the 17th no longer fits */
    char spec[4096] = "";
    for (int i = 0; i < 20; i++) {
        char one[160];
        snprintf(one, sizeof one, "func=%0120d:heap;", i);
        strcat(spec, one);
    }
    struct mt_rules r;
    char err[ERR_CAP] = "";
    cr_assert(eq(int, mt_rules_parse(spec, &r, err, sizeof err), -1));
    expect_one_line(err);
    cr_expect(ne(ptr, strstr(err, "rule 17 \""), NULL), "%s", err);
    cr_expect(ne(ptr, strstr(err, "\": the patterns of all rules exceed 2048 bytes"), NULL), "%s",
              err);
}

Test(rules, error_text_is_cut_to_the_buffer)
{
    struct mt_rules r;
    char err[16];
    memset(err, 'x', sizeof err);
    cr_assert(eq(int, mt_rules_parse("size>=1M:extrnal", &r, err, sizeof err), -1));
    cr_expect(eq(str, err, "rule 1 \"size>=1"));
}

/* ---- mt_rules_load: the variable's value, inline or @file ---------------------------------------
 */

static const char *write_rules(const char *name, const char *text)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", h_tmpdir(), name);
    cr_assert(eq(int, h_write_file(path, text, strlen(text)), 0));
    return path;
}

Test(rules, loads_a_rules_file_with_comments)
{
    const char *path = write_rules("r.rules", "# memtrace rules\n"
                                              "\n"
                                              "size>=1M : external   # big blocks are buffers\n"
                                              "  kind=mmap,size<64K:heap\r\n"
                                              "kind=calloc:mapped; kind=valloc:mapped\n"
                                              "# the end");
    char value[4200], err[ERR_CAP] = "";
    snprintf(value, sizeof value, "@%s", path);
    struct mt_rules r;
    cr_assert(eq(int, mt_rules_load(value, &r, err, sizeof err), 0), "%s", err);
    cr_expect(eq(u32, r.n, 4));
    cr_expect(eq(u32, cls(&r, MTF_EV_MALLOC, 1 << 20), EXTERNAL));
    cr_expect(eq(u32, cls(&r, MTF_EV_MMAP, 65535), HEAP));
    cr_expect(eq(u32, cls(&r, MTF_EV_MMAP, 65536), NONE));
    cr_expect(eq(u32, cls(&r, MTF_EV_CALLOC, 1), MAPPED));
    cr_expect(eq(u32, cls(&r, MTF_EV_VALLOC, 1), MAPPED));
}

Test(rules, loads_inline_rules)
{
    struct mt_rules r;
    char err[ERR_CAP] = "";
    cr_assert(eq(int, mt_rules_load("size>=1M:external", &r, err, sizeof err), 0), "%s", err);
    cr_expect(eq(u32, cls(&r, MTF_EV_MALLOC, 1 << 20), EXTERNAL));
}

Test(rules, load_errors_name_the_variable_and_the_file)
{
    struct mt_rules r;
    char err[ERR_CAP] = "", value[4200];
    cr_expect(eq(int, mt_rules_load("size>=1M:hep", &r, err, sizeof err), -1));
    cr_expect(eq(str, err,
                 "MEMTRACE_RULES: rule 1 \"size>=1M:hep\": unknown class \"hep\" (expected "
                 "heap, external or mapped)"));

    const char *path = write_rules("bad.rules", "# ok\nsize>=1M:external\nlib=x*\n");
    snprintf(value, sizeof value, "@%s", path);
    char expect[4400];
    snprintf(expect, sizeof expect,
             "MEMTRACE_RULES=@%s: line 3 \"lib=x*\": no ':class' at the end (e.g. "
             "size>=1M:external)",
             path);
    cr_expect(eq(int, mt_rules_load(value, &r, err, sizeof err), -1));
    cr_expect(eq(str, err, expect));

    path = write_rules("one.rules", "lib=x*"); /* one line, no newline: still "line 1" */
    snprintf(value, sizeof value, "@%s", path);
    snprintf(expect, sizeof expect,
             "MEMTRACE_RULES=@%s: line 1 \"lib=x*\": no ':class' at the end (e.g. "
             "size>=1M:external)",
             path);
    cr_expect(eq(int, mt_rules_load(value, &r, err, sizeof err), -1));
    cr_expect(eq(str, err, expect));
}

Test(rules, load_refuses_a_missing_or_unreadable_file)
{
    struct mt_rules r;
    char err[ERR_CAP] = "", value[4200], expect[4400];
    snprintf(value, sizeof value, "@%s/no-such.rules", h_tmpdir());
    errno = 77;
    cr_expect(eq(int, mt_rules_load(value, &r, err, sizeof err), -1));
    cr_expect(eq(int, errno, 77), "errno kept");
    snprintf(expect, sizeof expect,
             "MEMTRACE_RULES=@%s/no-such.rules: cannot open the rules file: No such file or "
             "directory",
             h_tmpdir());
    cr_expect(eq(str, err, expect));

    snprintf(value, sizeof value, "@%s", h_tmpdir()); /* a directory: open works, read fails */
    cr_expect(eq(int, mt_rules_load(value, &r, err, sizeof err), -1));
    snprintf(expect, sizeof expect, "MEMTRACE_RULES=@%s: cannot read the rules file: ", h_tmpdir());
    cr_expect(eq(int, strncmp(err, expect, strlen(expect)), 0), "%s", err);

    cr_expect(eq(int, mt_rules_load("@", &r, err, sizeof err), -1));
    cr_expect(eq(str, err, "MEMTRACE_RULES=@: no file name after '@'"));
}

Test(rules, load_refuses_a_file_too_large_or_not_text)
{
    size_t n = MT_RULES_FILE_MAX + 10;
    char *big = malloc(n + 1);
    cr_assert(ne(ptr, big, NULL));
    memset(big, '\n', n);
    big[n] = '\0';
    const char *path = write_rules("big.rules", big);
    free(big);
    char value[4200], err[ERR_CAP] = "", expect[4400];
    snprintf(value, sizeof value, "@%s", path);
    struct mt_rules r;
    cr_expect(eq(int, mt_rules_load(value, &r, err, sizeof err), -1));
    snprintf(expect, sizeof expect, "MEMTRACE_RULES=@%s: the rules file is larger than 65536 bytes",
             path);
    cr_expect(eq(str, err, expect));

    char nul[4096];
    snprintf(nul, sizeof nul, "%s/nul.rules", h_tmpdir());
    cr_assert(eq(int, h_write_file(nul, "size>1:heap\n\0x", 14), 0));
    snprintf(value, sizeof value, "@%s", nul);
    cr_expect(eq(int, mt_rules_load(value, &r, err, sizeof err), -1));
    cr_expect(ne(ptr, strstr(err, ": the rules file has a NUL byte (not text)"), NULL), "%s", err);
}

Test(rules, a_file_of_exactly_the_limit_loads)
{
    size_t n = MT_RULES_FILE_MAX;
    char *text = malloc(n + 1);
    cr_assert(ne(ptr, text, NULL));
    memset(text, '#', n);
    const char *rule = "\nsize>=1M:external\n";
    memcpy(text + n - strlen(rule), rule, strlen(rule));
    text[n] = '\0';
    const char *path = write_rules("limit.rules", text);
    free(text);
    char value[4200], err[ERR_CAP] = "";
    snprintf(value, sizeof value, "@%s", path);
    struct mt_rules r;
    cr_assert(eq(int, mt_rules_load(value, &r, err, sizeof err), 0), "%s", err);
    cr_expect(eq(u32, cls(&r, MTF_EV_MALLOC, 1 << 20), EXTERNAL));
}

/* ---- through the configuration table -----------------------------------------------------------
 */

Test(rules, config_parses_memtrace_rules_into_rule_set)
{
    struct mt_config cfg;
    char err[ERR_CAP] = "";
    char *env[] = { "MEMTRACE_DEPTH=8", "MEMTRACE_RULES=size>=1M:external; kind=mmap:heap", NULL };
    cr_assert(eq(int, mt_config_parse(&cfg, env, err, sizeof err), 0), "%s", err);
    cr_expect(eq(u32, cfg.rule_set.n, 2));
    cr_expect(eq(u32, cls(&cfg.rule_set, MTF_EV_MALLOC, 1 << 20), EXTERNAL));
    cr_expect(eq(u32, cls(&cfg.rule_set, MTF_EV_MMAP, 1), HEAP));

    char *unset[] = { "MEMTRACE_DEPTH=8", NULL };
    cr_assert(eq(int, mt_config_parse(&cfg, unset, err, sizeof err), 0), "%s", err);
    cr_expect(eq(u32, cfg.rule_set.n, 0), "no variable, no rules");
    cr_expect(eq(int, mt_rules_needs_stack(&cfg.rule_set), 0));
}

Test(rules, config_rejects_a_malformed_rule_with_one_line)
{
    struct mt_config cfg;
    char err[ERR_CAP] = "";
    char *env[] = { "MEMTRACE_RULES=size>=1M:external;lib=libpng*:hep", NULL };
    cr_assert(eq(int, mt_config_parse(&cfg, env, err, sizeof err), -1));
    cr_expect(eq(str, err,
                 "MEMTRACE_RULES: rule 2 \"lib=libpng*:hep\": unknown class \"hep\" (expected "
                 "heap, external or mapped)"));
}
