/* Display stacks (stackview.h): symbolize once per stack id, drop what the user did not write. */
#include "stackview.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#define SV_MAX_INLINE 16 /* inline chain kept per return address */

struct stackview {
    struct symbolizer *sym;
    const struct agg *agg;
    struct sv_stack **cache; /* by stack id, NULL until asked */
    size_t cap;
    struct sv_stack empty;     /* stack 0 */
    struct sv_stack undefined; /* an id beyond every definition */
};

struct stackview *sv_new(struct symbolizer *sym, const struct agg *agg)
{
    struct stackview *v = xmalloc(sizeof *v);
    memset(v, 0, sizeof *v);
    v->sym = sym;
    v->agg = agg;
    return v;
}

void sv_free(struct stackview *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->cap; i++) {
        if (v->cache[i] != NULL)
            free(v->cache[i]->f);
        free(v->cache[i]);
    }
    free(v->cache);
    free(v);
}

const char *sv_basename(const char *path)
{
    if (path == NULL)
        return "?";
    const char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}

/* The allocator's own entry points: the frame that called the hook is one of these when the
 * program reached malloc through them (C++ operator new, glibc's internal names). */
static int is_allocator_entry(const char *fn)
{
    static const char *const names[] = {
        "malloc",        "calloc",         "realloc",
        "reallocarray",  "free",           "posix_memalign",
        "aligned_alloc", "memalign",       "valloc",
        "pvalloc",       "mmap",           "mmap64",
        "mremap",        "munmap",         "__libc_malloc",
        "__libc_calloc", "__libc_realloc", "__libc_memalign",
        "__libc_valloc", "__libc_pvalloc", "__posix_memalign",
    };
    if (fn == NULL)
        return 0;
    if (strncmp(fn, "operator new", 12) == 0)
        return 1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(fn, names[i]) == 0)
            return 1;
    return 0;
}

static void push(struct sv_stack *s, int *cap, const struct sym_frame *f, uint64_t pc)
{
    if (s->n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        s->f = xrealloc(s->f, (size_t)*cap * sizeof *s->f);
    }
    s->f[s->n++] = (struct sv_frame){ f->function,      f->file, f->line,   f->module,
                                      f->module_offset, pc,      f->inlined };
}

static struct sv_stack *build(struct stackview *v, uint32_t id)
{
    struct sv_stack *s = xmalloc(sizeof *s);
    memset(s, 0, sizeof *s);
    s->id = id;
    const uint64_t *pcs;
    uint64_t ts;
    uint32_t n = agg_stack(v->agg, id, &pcs, &ts, &s->truncated);
    s->defined = pcs != NULL;
    int cap = 0;
    struct sym_frame fr[SV_MAX_INLINE];
    for (uint32_t i = 0; i < n; i++) {
        if (sym_is_shim(v->sym, pcs[i], ts))
            continue;
        int k = sym_resolve(v->sym, pcs[i], ts, 1, fr, SV_MAX_INLINE);
        /* the allocator entry itself, innermost: hide it (its whole inline chain) */
        if (s->n == 0 && is_allocator_entry(fr[k - 1].function))
            continue;
        for (int j = 0; j < k; j++)
            push(s, &cap, &fr[j], pcs[i]);
    }
    return s;
}

const struct sv_stack *sv_get(struct stackview *v, uint32_t id)
{
    if (id == 0)
        return &v->empty;
    if (id >= v->agg->stack_cap) {
        v->undefined.id = id;
        return &v->undefined;
    }
    if (id >= v->cap) {
        size_t cap = v->cap ? v->cap : 64;
        while (cap <= id)
            cap *= 2;
        v->cache = xrealloc(v->cache, cap * sizeof *v->cache);
        memset(v->cache + v->cap, 0, (cap - v->cap) * sizeof *v->cache);
        v->cap = cap;
    }
    if (v->cache[id] == NULL)
        v->cache[id] = build(v, id);
    return v->cache[id];
}
