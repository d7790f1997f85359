/* librules_png: a stand-in for a third-party library (libpng) that allocates on its caller's
 * behalf, for MEMTRACE_RULES' lib= condition (tests/integration/test_rules.c) and for in-process
 * symbol lookup (tests/unit/test_symtab.c, which compiles it itself, stripped and not, and with
 * -DRULES_PNG_VARIANT=n to get a different build id). png_like_row is a local (static) symbol:
 * in .symtab only, so a stripped copy cannot name it.
 */
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static void *png_like_row(size_t n)
{
    void *p = malloc(n);
    if (p != NULL)
        memset(p, 0, n);
    return p;
}

/* Allocate n bytes through the library's own (static) row allocator. */
__attribute__((noinline)) void *png_like_alloc(size_t n)
{
    return png_like_row(n);
}

/* The static allocator, so tests can take a pc inside a function absent from .dynsym. */
void *(*png_like_row_fn(void))(size_t)
{
    return png_like_row;
}

#ifdef RULES_PNG_VARIANT
int png_like_variant(void)
{
    return RULES_PNG_VARIANT;
}
#endif
