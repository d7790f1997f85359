/* Classification rules: parser, glob matcher, per-stack evaluation and the per-event classify.
 * The parser folds each rule into what the fast path needs (one size range, one kind mask) and
 * keeps lib=/func= patterns in a fixed pool; classify is then a few compares per rule and never
 * looks at symbols. Everything but mt_rules_load is allocation-free and syscall-free, except
 * that mt_rules_stack_eval symbolizes through symtab.c.
 */
#include "rules.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "memtrace/format.h"
#include "symtab.h"

#define BIT(k) (1U << (k))
#define HEAP_KINDS                                                                                 \
    (BIT(MTF_EV_MALLOC) | BIT(MTF_EV_CALLOC) | BIT(MTF_EV_REALLOC) | BIT(MTF_EV_REALLOCARRAY) |    \
     BIT(MTF_EV_POSIX_MEMALIGN) | BIT(MTF_EV_ALIGNED_ALLOC) | BIT(MTF_EV_MEMALIGN) |               \
     BIT(MTF_EV_VALLOC) | BIT(MTF_EV_PVALLOC))
#define MAP_KINDS (BIT(MTF_EV_MMAP) | BIT(MTF_EV_MMAP64) | BIT(MTF_EV_MREMAP))
#define ALL_KINDS (HEAP_KINDS | MAP_KINDS)

#define MAX_EVAL_FRAMES 256 /* MEMTRACE_DEPTH's upper bound */

static const struct {
    const char *name;
    uint32_t mask;
} kind_names[] = {
    { "malloc", BIT(MTF_EV_MALLOC) },
    { "calloc", BIT(MTF_EV_CALLOC) },
    { "realloc", BIT(MTF_EV_REALLOC) },
    { "reallocarray", BIT(MTF_EV_REALLOCARRAY) },
    { "posix_memalign", BIT(MTF_EV_POSIX_MEMALIGN) },
    { "aligned_alloc", BIT(MTF_EV_ALIGNED_ALLOC) },
    { "memalign", BIT(MTF_EV_MEMALIGN) },
    { "valloc", BIT(MTF_EV_VALLOC) },
    { "pvalloc", BIT(MTF_EV_PVALLOC) },
    { "mmap", BIT(MTF_EV_MMAP) | BIT(MTF_EV_MMAP64) },
    { "mmap64", BIT(MTF_EV_MMAP64) },
    { "mremap", BIT(MTF_EV_MREMAP) },
    { "heap", HEAP_KINDS },
    { "map", MAP_KINDS },
};

static const char *const class_names[MTF_CLASS_COUNT] = { "heap", "external", "mapped" };

/* Modules that allocate on someone else's behalf: lib= looks past them for the caller. */
static const char *const runtime_libs[] = {
    "libc.so*", "libc-*.so", "ld-linux*",     "ld-*.so*",
    "ld64.so*", "ld-musl-*", "libstdc++.so*", "libmemtrace.so*",
};

/* ---- glob ------------------------------------------------------------------------------------ */

/* Length of the set "[...]" starting at p, 0 if unterminated. A ']' right after '[' or '[!' is
 * a member, as in fnmatch(3). */
static size_t set_len(const char *p)
{
    size_t i = 1;
    if (p[i] == '!' || p[i] == '^')
        i++;
    if (p[i] == ']')
        i++;
    for (; p[i] != '\0'; i++)
        if (p[i] == ']')
            return i + 1;
    return 0;
}

static int set_has(const char *p, size_t len, unsigned char c)
{
    size_t i = 1, end = len - 1;
    int neg = p[i] == '!' || p[i] == '^';
    i += (size_t)neg;
    int in = 0;
    for (size_t first = i; i < end; i++) {
        unsigned char lo = (unsigned char)p[i], hi = lo;
        if (p[i + 1] == '-' && i + 2 < end && (i > first || lo != ']')) {
            hi = (unsigned char)p[i + 2];
            i += 2;
        }
        if (c >= lo && c <= hi)
            in = 1;
    }
    return in != neg;
}

/* How many pattern bytes match the one character c (0: no match, or the pattern ended). */
static size_t match_one(const char *p, unsigned char c)
{
    switch (*p) {
    case '\0':
        return 0;
    case '?':
        return 1;
    case '[': {
        size_t n = set_len(p);
        if (n == 0)
            return c == '[';
        return set_has(p, n, c) ? n : 0;
    }
    case '\\':
        if (p[1] != '\0')
            return (unsigned char)p[1] == c ? 2 : 0;
        return c == '\\';
    default:
        return (unsigned char)*p == c;
    }
}

/* Iterative: on a mismatch, retry from the last '*' one character further (linear memory, no
 * recursion, O(len(p) * len(s)) at worst). */
int mt_rules_glob(const char *p, const char *s)
{
    const char *star_p = NULL, *star_s = NULL;
    while (*s != '\0') {
        if (*p == '*') {
            while (*p == '*')
                p++;
            star_p = p;
            star_s = s;
            continue;
        }
        size_t n = match_one(p, (unsigned char)*s);
        if (n > 0) {
            p += n;
            s++;
        } else if (star_p != NULL) {
            p = star_p;
            s = ++star_s;
        } else {
            return 0;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

/* ---- parser ---------------------------------------------------------------------------------- */

struct parser {
    struct mt_rules *out;
    char *err;
    size_t cap;
    const char *unit; /* "rule" or "line" */
    unsigned num;
    const char *text; /* the rule being parsed, trimmed */
};

__attribute__((format(printf, 2, 3))) static int fail(struct parser *ps, const char *fmt, ...)
{
    char why[256], shown[72];
    va_list ap;
    va_start(ap, fmt);
    mt_log_format(why, sizeof why, fmt, ap);
    va_end(ap);
    size_t n = strlen(ps->text);
    if (n < sizeof shown) {
        memcpy(shown, ps->text, n + 1);
    } else {
        memcpy(shown, ps->text, sizeof shown - 4);
        memcpy(shown + sizeof shown - 4, "...", 4);
    }
    mt_log_fmt(ps->err, ps->cap, "%s %u \"%s\": %s", ps->unit, ps->num, shown, why);
    return -1;
}

static int blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Trim [*b, *e) in place of the pointers. */
static void trim(const char **b, const char **e)
{
    while (*b < *e && blank(**b))
        (*b)++;
    while (*e > *b && blank((*e)[-1]))
        (*e)--;
}

/* Copy [b, e) into dst[cap] as a string (the parser's pieces are shorter than a rule). */
static void piece(char *dst, size_t cap, const char *b, const char *e)
{
    size_t n = (size_t)(e - b) < cap - 1 ? (size_t)(e - b) : cap - 1;
    memcpy(dst, b, n);
    dst[n] = '\0';
}

static int parse_class(struct parser *ps, const char *b, const char *e, struct mt_rule *r)
{
    char name[MT_RULES_TEXT_MAX + 1];
    trim(&b, &e);
    piece(name, sizeof name, b, e);
    if (name[0] == '\0')
        return fail(ps, "no class after ':' (expected heap, external or mapped)");
    for (unsigned c = 0; c < MTF_CLASS_COUNT; c++)
        if (strcmp(name, class_names[c]) == 0) {
            r->cls = (uint8_t)c;
            return 0;
        }
    return fail(ps, "unknown class \"%s\" (expected heap, external or mapped)", name);
}

static int parse_size_cond(struct parser *ps, const char *op, const char *val, struct mt_rule *r)
{
    uint64_t v;
    if (mt_config_parse_size(val, &v) != 0)
        return fail(ps, "size%s%s: not a byte size (e.g. 4096, 64K, 1.5M)", op, val);
    uint64_t lo = 0, hi = UINT64_MAX;
    if (strcmp(op, "<") == 0) {
        if (v == 0)
            return fail(ps, "size<0 never holds");
        hi = v - 1;
    } else if (strcmp(op, "<=") == 0) {
        hi = v;
    } else if (strcmp(op, ">") == 0) {
        if (v == UINT64_MAX)
            return fail(ps, "size>%s never holds", val);
        lo = v + 1;
    } else if (strcmp(op, ">=") == 0) {
        lo = v;
    } else { /* "=" or "==" */
        lo = hi = v;
    }
    r->size_lo = lo > r->size_lo ? lo : r->size_lo;
    r->size_hi = hi < r->size_hi ? hi : r->size_hi;
    return 0;
}

static int parse_kind_cond(struct parser *ps, const char *val, struct mt_rule *r)
{
    uint32_t mask = 0;
    const char *b = val;
    for (;;) {
        const char *e = strchr(b, '|');
        if (e == NULL)
            e = b + strlen(b);
        const char *tb = b, *te = e;
        trim(&tb, &te);
        char name[MT_RULES_TEXT_MAX + 1];
        piece(name, sizeof name, tb, te);
        uint32_t m = 0;
        for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++)
            if (strcmp(name, kind_names[i].name) == 0)
                m = kind_names[i].mask;
        if (m == 0)
            return fail(ps,
                        "unknown kind \"%s\" (expected malloc, calloc, realloc, reallocarray, "
                        "posix_memalign, aligned_alloc, memalign, valloc, pvalloc, mmap, mmap64, "
                        "mremap, heap or map, joined by '|')",
                        name);
        mask |= m;
        if (*e == '\0')
            break;
        b = e + 1;
    }
    r->kinds &= mask;
    return 0;
}

static int parse_pattern_cond(struct parser *ps, const char *key, const char *val,
                              struct mt_rule *r)
{
    if (val[0] == '\0')
        return fail(ps, "%s= has an empty pattern", key);
    if (strchr(val, ':') != NULL)
        return fail(ps,
                    "%s pattern \"%s\" has a ':': names are matched mangled "
                    "(func=_ZN5arena* for arena::*)",
                    key, val);
    for (const char *p = val; *p; p++) {
        if (*p == '[' && set_len(p) == 0)
            return fail(ps, "%s pattern \"%s\": '[' without a closing ']'", key, val);
        if (*p == '[')
            p += set_len(p) - 1;
        else if (*p == '\\' && *++p == '\0')
            return fail(ps, "%s pattern \"%s\" ends with a lone '\\'", key, val);
    }
    size_t n = strlen(val);
    struct mt_rules *o = ps->out;
    if (o->pool_used + n + 1 > MT_RULES_POOL)
        return fail(ps, "the patterns of all rules exceed %u bytes", (unsigned)MT_RULES_POOL);
    memcpy(o->pool + o->pool_used, val, n + 1);
    int lib = key[0] == 'l';
    r->stack[r->nstack].type = lib ? MT_RC_LIB : MT_RC_FUNC;
    r->stack[r->nstack].path = lib && strchr(val, '/') != NULL;
    r->stack[r->nstack].off = (uint16_t)o->pool_used;
    r->nstack++;
    o->pool_used += (uint32_t)(n + 1);
    return 0;
}

/* One condition [b, e), already trimmed and non-empty. */
static int parse_cond(struct parser *ps, const char *b, const char *e, struct mt_rule *r)
{
    char key[MT_RULES_TEXT_MAX + 1], op[4], val[MT_RULES_TEXT_MAX + 1];
    const char *k = b;
    while (k < e && ((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || *k == '_'))
        k++;
    piece(key, sizeof key, b, k);
    const char *o = k;
    while (o < e && blank(*o))
        o++;
    const char *v = o;
    while (v < e && v < o + 2 && (*v == '<' || *v == '>' || *v == '=' || *v == '!'))
        v++;
    piece(op, sizeof op, o, v);
    trim(&v, &e);
    piece(val, sizeof val, v, e);
    int is_size = strcmp(key, "size") == 0;
    if (!is_size && strcmp(key, "kind") != 0 && strcmp(key, "lib") != 0 &&
        strcmp(key, "func") != 0) {
        char shown[MT_RULES_TEXT_MAX + 1];
        piece(shown, sizeof shown, b, e);
        return fail(ps, "unknown condition \"%s\" (expected size, kind, lib or func)", shown);
    }
    if (is_size) {
        static const char *const ops[] = { "<", "<=", ">", ">=", "=", "==" };
        int ok = 0;
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
            ok |= strcmp(op, ops[i]) == 0;
        if (!ok)
            return fail(ps, "size needs one of <, <=, >, >=, = and a byte size (e.g. size>=1M)");
        return parse_size_cond(ps, op, val, r);
    }
    if (strcmp(op, "=") != 0)
        return fail(ps, "%s needs '=' and a value (e.g. %s)", key,
                    key[0] == 'k'   ? "kind=mmap"
                    : key[0] == 'l' ? "lib=libpng*"
                                    : "func=arena_*");
    if (key[0] == 'k')
        return parse_kind_cond(ps, val, r);
    return parse_pattern_cond(ps, key, val, r);
}

static int parse_rule(struct parser *ps, const char *text)
{
    struct mt_rules *o = ps->out;
    if (o->n == MT_RULES_MAX)
        return fail(ps, "more than %u rules", (unsigned)MT_RULES_MAX);
    struct mt_rule *r = &o->rule[o->n];
    memset(r, 0, sizeof *r);
    r->size_hi = UINT64_MAX;
    r->kinds = ALL_KINDS;
    const char *colon = strrchr(text, ':');
    if (colon == NULL)
        return fail(ps, "no ':class' at the end (e.g. size>=1M:external)");
    const char *b = text, *e = colon;
    trim(&b, &e);
    if (b == e)
        return fail(ps, "no condition before ':' (e.g. size>=1M:external)");
    unsigned nconds = 0;
    while (b <= e) {
        const char *c = memchr(b, ',', (size_t)(e - b));
        const char *ce = c != NULL ? c : e, *cb = b;
        trim(&cb, &ce);
        if (cb == ce)
            return fail(ps, "empty condition (a ',' with nothing on one side)");
        if (++nconds > MT_RULES_MAX_CONDS)
            return fail(ps, "more than %u conditions", (unsigned)MT_RULES_MAX_CONDS);
        if (parse_cond(ps, cb, ce, r) != 0)
            return -1;
        if (c == NULL)
            break;
        b = c + 1;
    }
    if (parse_class(ps, colon + 1, text + strlen(text), r) != 0)
        return -1;
    if (r->size_lo > r->size_hi)
        return fail(ps, "the size conditions never hold together");
    if (r->kinds == 0)
        return fail(ps, "the kind conditions never hold together");
    if (r->nstack > 0)
        o->stack_mask |= BIT(o->n);
    o->n++;
    return 0;
}

/* by_line: name rules by their line number (files, multi-line values), else by their rank */
static int parse_spec(const char *spec, struct mt_rules *out, char *err, size_t cap, int by_line)
{
    memset(out, 0, sizeof *out);
    struct parser ps = { out, err, cap, by_line ? "line" : "rule", 0, "" };
    unsigned line = 1, rule_no = 0;
    const char *s = spec;
    while (*s != '\0') {
        char text[MT_RULES_TEXT_MAX + 2];
        size_t len = 0;
        unsigned at_line = line;
        while (*s != '\0' && *s != ';' && *s != '\n') {
            if (*s == '#') { /* a comment runs to the end of the line, past any ';' */
                while (*s != '\0' && *s != '\n')
                    s++;
                break;
            }
            if (len < MT_RULES_TEXT_MAX + 1)
                text[len++] = *s;
            s++;
        }
        line += *s == '\n';
        s += *s != '\0';
        text[len] = '\0';
        const char *b = text, *e = text + len;
        trim(&b, &e);
        if (b == e)
            continue;
        text[e - text] = '\0';
        rule_no++;
        ps.num = ps.unit[0] == 'l' ? at_line : rule_no;
        ps.text = b;
        if (len > MT_RULES_TEXT_MAX)
            return fail(&ps, "longer than %u characters", (unsigned)MT_RULES_TEXT_MAX);
        if (parse_rule(&ps, b) != 0)
            return -1;
    }
    return 0;
}

int mt_rules_parse(const char *spec, struct mt_rules *out, char *err, size_t cap)
{
    return parse_spec(spec, out, err, cap, strchr(spec, '\n') != NULL);
}

/* ---- rules files ----------------------------------------------------------------------------- */

static char file_buf[MT_RULES_FILE_MAX + 1];

/* Read `path` into file_buf. 0, or -1 with the message in err. */
static int read_rules_file(const char *path, char *err, size_t cap)
{
    long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        mt_log_fmt(err, cap, "MEMTRACE_RULES=@%s: cannot open the rules file: %s", path,
                   mt_log_errno_text(errno));
        return -1;
    }
    size_t used = 0;
    for (;;) {
        long k = syscall(SYS_read, fd, file_buf + used, sizeof file_buf - used);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            mt_log_fmt(err, cap, "MEMTRACE_RULES=@%s: cannot read the rules file: %s", path,
                       mt_log_errno_text(errno));
            syscall(SYS_close, fd);
            return -1;
        }
        if (k == 0)
            break;
        used += (size_t)k;
        if (used == sizeof file_buf) {
            mt_log_fmt(err, cap, "MEMTRACE_RULES=@%s: the rules file is larger than %u bytes", path,
                       (unsigned)MT_RULES_FILE_MAX);
            syscall(SYS_close, fd);
            return -1;
        }
    }
    syscall(SYS_close, fd);
    file_buf[used] = '\0';
    if (memchr(file_buf, '\0', used) != NULL) {
        mt_log_fmt(err, cap, "MEMTRACE_RULES=@%s: the rules file has a NUL byte (not text)", path);
        return -1;
    }
    return 0;
}

int mt_rules_load(const char *value, struct mt_rules *out, char *err, size_t cap)
{
    int saved = errno;
    char why[MT_LOG_LINE_MAX];
    int rc;
    if (value[0] == '@') {
        const char *path = value + 1;
        if (path[0] == '\0') {
            memset(out, 0, sizeof *out);
            mt_log_fmt(err, cap, "MEMTRACE_RULES=@: no file name after '@'");
            rc = -1;
        } else if ((rc = read_rules_file(path, err, cap)) == 0 &&
                   (rc = parse_spec(file_buf, out, why, sizeof why, 1)) != 0) {
            mt_log_fmt(err, cap, "MEMTRACE_RULES=@%s: %s", path, why);
        }
    } else {
        rc = mt_rules_parse(value, out, why, sizeof why);
        if (rc != 0)
            mt_log_fmt(err, cap, "MEMTRACE_RULES: %s", why);
    }
    errno = saved;
    return rc;
}

/* ---- evaluation ------------------------------------------------------------------------------ */

int mt_rules_needs_stack(const struct mt_rules *r)
{
    return r->stack_mask != 0;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

static int is_runtime(const char *path)
{
    const char *b = base_name(path);
    for (size_t i = 0; i < sizeof runtime_libs / sizeof runtime_libs[0]; i++)
        if (mt_rules_glob(runtime_libs[i], b))
            return 1;
    return 0;
}

/* The path of the library that called: the innermost frame outside the runtime, else the
 * innermost frame's module; NULL when no frame lies in a module. */
static const char *calling_module(const uint64_t *frames, uint32_t n)
{
    const char *first = NULL;
    for (uint32_t k = 0; k < n; k++) {
        const char *path;
        if (mt_symtab_module(frames[k] - 1, &path, NULL) != 0)
            continue;
        if (!is_runtime(path))
            return path;
        if (first == NULL)
            first = path;
    }
    return first;
}

struct stack_view {
    const uint64_t *frames;
    uint32_t n;
    int have_lib, have_names;
    const char *lib;
    const char *names[MAX_EVAL_FRAMES];
};

static int func_holds(struct stack_view *v, const char *pat)
{
    if (!v->have_names) {
        for (uint32_t k = 0; k < v->n; k++) /* return addresses point after the call */
            v->names[k] = mt_symtab_name(v->frames[k] - 1, NULL, NULL);
        v->have_names = 1;
    }
    for (uint32_t k = 0; k < v->n; k++)
        if (v->names[k] != NULL && mt_rules_glob(pat, v->names[k]))
            return 1;
    return 0;
}

static int lib_holds(struct stack_view *v, const char *pat, int whole_path)
{
    if (!v->have_lib) {
        v->lib = calling_module(v->frames, v->n);
        v->have_lib = 1;
    }
    return v->lib != NULL && mt_rules_glob(pat, whole_path ? v->lib : base_name(v->lib));
}

void mt_rules_stack_eval(const struct mt_rules *r, const uint64_t *frames, uint32_t n,
                         struct mt_rules_stackinfo *si)
{
    si->match = 0;
    if (r->stack_mask == 0)
        return;
    struct stack_view v;
    v.frames = frames;
    v.n = n < MAX_EVAL_FRAMES ? n : MAX_EVAL_FRAMES;
    v.have_lib = v.have_names = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        if (!(r->stack_mask & BIT(i)))
            continue;
        const struct mt_rule *rule = &r->rule[i];
        int ok = 1;
        for (unsigned c = 0; ok && c < rule->nstack; c++) {
            const char *pat = r->pool + rule->stack[c].off;
            ok = rule->stack[c].type == MT_RC_LIB ? lib_holds(&v, pat, rule->stack[c].path)
                                                  : func_holds(&v, pat);
        }
        if (ok)
            si->match |= BIT(i);
    }
}

unsigned mt_rules_classify(const struct mt_rules *r, unsigned kind, uint64_t size,
                           unsigned default_cls, const struct mt_rules_stackinfo *si)
{
    if (kind >= 32)
        return default_cls;
    for (uint32_t i = 0; i < r->n; i++) {
        const struct mt_rule *rule = &r->rule[i];
        if (!(rule->kinds & BIT(kind)) || size < rule->size_lo || size > rule->size_hi)
            continue;
        if ((r->stack_mask & BIT(i)) && (si == NULL || !(si->match & BIT(i))))
            continue;
        return rule->cls;
    }
    return default_cls;
}
