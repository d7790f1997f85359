/* Leak suppressions (suppress.h): built-in rules for what the system keeps to exit on purpose,
 * user rules in LeakSanitizer's format, and LSan's template match. */
#include "suppress.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum builtin { B_LOADER, B_STDIO, B_RUNTIME, B_COUNT };

static const struct supp_rule builtin_rules[B_COUNT] = {
    [B_LOADER] = { "loader", "allocated by the dynamic loader (thread TLS and dtv, dlopen)", NULL,
                   1, 0, 0, 0 },
    [B_STDIO] = { "stdio", "stdio buffers (_IO_file_doallocate)", NULL, 1, 0, 0, 0 },
    [B_RUNTIME] = { "runtime",
                    "whole stack in libc, libstdc++, libgcc_s, libm or the loader (C++ emergency "
                    "exception pool, locale and runtime caches)",
                    NULL, 1, 0, 0, 0 },
};

void supp_init(struct suppressions *s, int defaults)
{
    s->n = defaults ? B_COUNT : 0;
    s->rules = xmalloc((s->n ? s->n : 1) * sizeof *s->rules);
    if (defaults)
        memcpy(s->rules, builtin_rules, sizeof builtin_rules);
}

void supp_fini(struct suppressions *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (!s->rules[i].builtin) {
            free((char *)s->rules[i].name);
            free((char *)s->rules[i].source);
        }
    }
    free(s->rules);
    s->rules = NULL;
    s->n = 0;
}

/* ---- matching ---------------------------------------------------------------------------- */

int supp_template_match(const char *templ, const char *str)
{
    if (str == NULL || str[0] == '\0')
        return 0;
    int start = 0, asterisk = 0;
    if (templ[0] == '^') {
        start = 1;
        templ++;
    }
    char seg[1024];
    while (templ[0]) {
        if (templ[0] == '*') {
            templ++;
            start = 0;
            asterisk = 1;
            continue;
        }
        if (templ[0] == '$')
            return str[0] == '\0' || asterisk;
        if (str[0] == '\0')
            return 0;
        size_t len = strcspn(templ, "*$");
        if (len >= sizeof seg)
            len = sizeof seg - 1;
        memcpy(seg, templ, len);
        seg[len] = '\0';
        const char *spos = strstr(str, seg);
        if (spos == NULL || (start && spos != str))
            return 0;
        str = spos + len;
        templ += len;
        start = 0;
        asterisk = 0;
    }
    return 1;
}

static int has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int is_loader(const char *module)
{
    const char *b = sv_basename(module);
    return module != NULL &&
           (has_prefix(b, "ld-linux") || has_prefix(b, "ld.so") || has_prefix(b, "ld64.so"));
}

static int is_runtime(const char *module)
{
    static const char *const libs[] = { "libc.so", "libstdc++.so",  "libgcc_s.so",
                                        "libm.so", "libpthread.so", "libdl.so" };
    if (module == NULL)
        return 0;
    if (is_loader(module))
        return 1;
    const char *b = sv_basename(module);
    for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++)
        if (has_prefix(b, libs[i]))
            return 1;
    return 0;
}

/* glibc's stdio buffer allocator: "_IO_file_doallocate" in .dynsym, "__GI__IO_file_doallocate"
 * when libc's debug info is installed. */
static int is_stdio_alloc(const char *fn)
{
    if (fn == NULL)
        return 0;
    if (strncmp(fn, "__GI_", 5) == 0)
        fn += 5;
    return strcmp(fn, "_IO_file_doallocate") == 0;
}

static int match_builtin(int rule, const struct sv_stack *st)
{
    if (st->n == 0)
        return 0;
    int all_runtime = 1;
    for (int i = 0; i < st->n; i++) {
        const struct sv_frame *f = &st->f[i];
        if (rule == B_LOADER && is_loader(f->module))
            return 1;
        if (rule == B_STDIO && is_stdio_alloc(f->function))
            return 1;
        if (!is_runtime(f->module))
            all_runtime = 0;
    }
    return rule == B_RUNTIME && all_runtime;
}

static int match_user(const char *pattern, const struct sv_stack *st)
{
    for (int i = 0; i < st->n; i++) {
        const struct sv_frame *f = &st->f[i];
        if (supp_template_match(pattern, f->function) || supp_template_match(pattern, f->module) ||
            supp_template_match(pattern, f->file))
            return 1;
    }
    return 0;
}

int supp_match(const struct suppressions *s, const struct sv_stack *st)
{
    for (size_t i = 0; i < s->n; i++) {
        const struct supp_rule *r = &s->rules[i];
        if (r->builtin ? match_builtin((int)i, st) : match_user(r->name, st))
            return (int)i;
    }
    return -1;
}

/* ---- the file ---------------------------------------------------------------------------- */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static void add_rule(struct suppressions *s, const char *pattern, const char *path, unsigned line)
{
    char where[4200];
    snprintf(where, sizeof where, "%s:%u", path, line);
    s->rules = xrealloc(s->rules, (s->n + 1) * sizeof *s->rules);
    s->rules[s->n++] = (struct supp_rule){ .name = xstrdup(pattern), .source = xstrdup(where) };
}

int supp_load(struct suppressions *s, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char buf[4096];
    unsigned line = 0;
    int rc = 0;
    while (rc == 0 && fgets(buf, sizeof buf, f) != NULL) {
        line++;
        char *l = trim(buf);
        if (l[0] == '\0' || l[0] == '#')
            continue;
        if (strncmp(l, "leak:", 5) != 0) {
            snprintf(err, errlen, "%s:%u: expected 'leak:<pattern>', got '%.60s'", path, line, l);
            rc = -1;
        } else if (trim(l + 5)[0] == '\0') {
            snprintf(err, errlen, "%s:%u: empty pattern after 'leak:'", path, line);
            rc = -1;
        } else {
            add_rule(s, trim(l + 5), path, line);
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "%s: read failed: %s", path, strerror(errno));
        rc = -1;
    }
    fclose(f);
    return rc;
}
