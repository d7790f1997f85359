/* Leak suppressions: which blocks live at exit are not the program's leaks. Built-in rules for
 * what glibc, the loader and the C++ runtime keep to exit on purpose (visible, counted, and
 * switched off by --no-default-suppressions), then the user's rules from a file in
 * LeakSanitizer's format:
 *
 *     # comment
 *     leak:libfoo.so        matches a frame whose module path contains "libfoo.so"
 *     leak:parse_*_config   '*' is any run of characters; ^ and $ anchor, as in LSan
 *     leak:src/cache.c      a source file
 *
 * A pattern matches a stack when it matches the function, the module path or the source file of
 * any frame. Rules are tried in order (built-ins first); the first match takes the stack.
 */
#ifndef MEMTRACE_REPORT_SUPPRESS_H
#define MEMTRACE_REPORT_SUPPRESS_H

#include <stdint.h>

#include "stackview.h"

struct supp_rule {
    const char *name;   /* built-in: "loader", "stdio", "runtime"; user: the pattern */
    const char *what;   /* built-in: one line saying what it hides; user: NULL */
    const char *source; /* user: "FILE:LINE"; built-in: NULL */
    int builtin;
    uint64_t stacks, blocks, bytes; /* what it took (filled by the caller through supp_count) */
};

struct suppressions {
    struct supp_rule *rules;
    size_t n;
};

/* The built-in rules (none when `defaults` is 0). */
void supp_init(struct suppressions *s, int defaults);
void supp_fini(struct suppressions *s);

/* Append the rules of a suppressions file. 0, or -1 with a one-line message in err (the file
 * and line number, what is wrong). */
int supp_load(struct suppressions *s, const char *path, char *err, size_t errlen);

/* Index of the first rule matching the stack, or -1. */
int supp_match(const struct suppressions *s, const struct sv_stack *st);

/* LSan-style match of a pattern against a string: substring, '*' wildcards, ^/$ anchors. */
int supp_template_match(const char *pattern, const char *str);

#endif
