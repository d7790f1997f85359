/* Classification rules (MEMTRACE_RULES, docs/design.md §3): move allocations between the heap,
 * external and mapped classes by size, kind, calling library or a function on the stack. First
 * match wins; no match leaves the kind's default class (trace-format.md §7.2).
 *
 * Syntax. Rules are separated by ';' or newlines; '#' starts a comment that runs to the end of
 * the line; blanks around tokens are ignored; empty rules are skipped. A value starting with
 * '@' names a rules file (one or more rules a line, same syntax). A rule is conditions joined
 * by ',' (all must hold), then ':' and a class (heap, external, mapped):
 *
 *     size>=1M:external; lib=libpng*:external
 *     func=arena_*,size<4096:heap; kind=mmap,func=my_pool_*:heap
 *
 *   size OP N     OP is <, <=, >, >= or =; N a byte size (4096, 64K, 1.5M, 2G: powers of 1024).
 *                 The requested bytes: malloc size, calloc nmemb*elsize, realloc/mremap new size,
 *                 mmap length.
 *   kind=K[|K..]  malloc calloc realloc reallocarray posix_memalign aligned_alloc memalign
 *                 valloc pvalloc mmap (also mmap64) mremap; groups: heap (the malloc family),
 *                 map (mmap, mmap64, mremap).
 *   lib=GLOB      the library that called: the module of the innermost frame outside the C and
 *                 C++ runtime (libc, libstdc++, the dynamic loader, memtrace itself); matched
 *                 against the file name (libpng16.so.16), or the whole path if GLOB has a '/'.
 *                 The main program counts as a library (its file name). When every frame is in
 *                 the runtime, the innermost frame's module is the caller.
 *   func=GLOB     any frame of the captured stack (MEMTRACE_DEPTH frames) lies in a function
 *                 whose symbol matches. Names are mangled (_ZN5arena5allocEm, not
 *                 arena::alloc), so ':' in a pattern is refused.
 *
 * GLOB: '*' any run, '?' one character, '[abc]' '[a-z]' '[!a-z]' a set, '\x' a literal x.
 * Limits: MT_RULES_MAX rules, MT_RULES_MAX_CONDS conditions a rule, MT_RULES_POOL bytes of
 * patterns, MT_RULES_TEXT_MAX characters a rule, MT_RULES_FILE_MAX bytes a file; beyond them
 * the spec is refused, never cut.
 *
 * Everything here runs inside hooks except mt_rules_load: no allocation, no locks, no stdio.
 */
#ifndef MEMTRACE_PRELOAD_RULES_H
#define MEMTRACE_PRELOAD_RULES_H

#include <stddef.h>
#include <stdint.h>

#define MT_RULES_MAX       32
#define MT_RULES_MAX_CONDS 4
#define MT_RULES_POOL      2048
#define MT_RULES_TEXT_MAX  255
#define MT_RULES_FILE_MAX  (64U << 10)

enum mt_rule_cond_type { MT_RC_LIB = 1, MT_RC_FUNC = 2 };

struct mt_rule {
    uint64_t size_lo, size_hi; /* size conditions folded into one inclusive range */
    uint32_t kinds;            /* bit k: MTF_EV_* kind k matches; all kinds when no kind= */
    uint8_t cls;               /* MTF_CLASS_* */
    uint8_t nstack;            /* lib= and func= conditions below */
    struct {
        uint8_t type; /* MT_RC_LIB or MT_RC_FUNC */
        uint8_t path; /* lib=: the pattern has a '/', match the whole path */
        uint16_t off; /* NUL-terminated pattern at pool[off] */
    } stack[MT_RULES_MAX_CONDS];
};

struct mt_rules {
    uint32_t n;          /* rules in rule[] */
    uint32_t stack_mask; /* bit i: rule i has lib= or func= conditions */
    uint32_t pool_used;
    struct mt_rule rule[MT_RULES_MAX];
    char pool[MT_RULES_POOL];
};

/* The stack-dependent part of every rule for one distinct stack. */
struct mt_rules_stackinfo {
    uint32_t match; /* bit i: rule i's lib= and func= conditions hold for the stack */
};

/* Parse `spec` (rules text, not an @file) into *out. Returns 0, or -1 with one line in err
 * (cap bytes) naming the rule ("rule 2 "lib=x:hep": ...", "line 3 ..." when spec has several
 * lines) and what is wrong. Pure: no allocation, no system calls. */
int mt_rules_parse(const char *spec, struct mt_rules *out, char *err, size_t cap);

/* The MEMTRACE_RULES value: `@path` reads the file (raw system calls, at start-up only, not
 * reentrant: one static buffer), anything else is parsed as rules. Returns 0, or -1 with one
 * line in err that starts with "MEMTRACE_RULES". */
int mt_rules_load(const char *value, struct mt_rules *out, char *err, size_t cap);

/* Whether any rule has lib= or func= conditions (then the caller needs a stackinfo). */
int mt_rules_needs_stack(const struct mt_rules *r);

/* Evaluate the lib= and func= conditions of every rule against `frames` (n return addresses,
 * innermost first, as mt_unwind_capture gives them). Symbolizes the frames through symtab.c:
 * costly, so call it once per distinct stack and cache the result. Safe inside hooks. */
void mt_rules_stack_eval(const struct mt_rules *r, const uint64_t *frames, uint32_t n,
                         struct mt_rules_stackinfo *si);

/* The class of an allocation of `kind` (MTF_EV_*) and `size` requested bytes: the class of the
 * first rule that matches, else default_cls. `si` may be NULL when there is no stack: rules with
 * lib= or func= conditions then never match. */
unsigned mt_rules_classify(const struct mt_rules *r, unsigned kind, uint64_t size,
                           unsigned default_cls, const struct mt_rules_stackinfo *si);

/* Glob match (the syntax above) of a NUL-terminated name. Exposed for tests. */
int mt_rules_glob(const char *pattern, const char *name);

#endif
