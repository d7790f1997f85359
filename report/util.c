/* Helpers for memtrace-report (util.h). xmalloc() is one of the few places allowed to exit
 * (STYLE 2.4): a report that cannot get memory has nothing useful left to do.
 */
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void out_of_memory(size_t size_bytes)
{
    report_error("out of memory (%zu bytes)", size_bytes);
    exit(REPORT_EXIT_IO);
}

void *xmalloc(size_t size_bytes)
{
    void *p = malloc(size_bytes ? size_bytes : 1);
    if (p == NULL)
        out_of_memory(size_bytes);
    return p;
}

void *xrealloc(void *p, size_t size_bytes)
{
    void *q = realloc(p, size_bytes ? size_bytes : 1);
    if (q == NULL)
        out_of_memory(size_bytes);
    return q;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

void report_error(const char *fmt, ...)
{
    char line[1024]; /* formatted first so the line reaches stderr in one write */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "memtrace-report: %s\n", line);
}
