/* Helpers every memtrace-report module may use: allocation that dies naming the size, the one
 * error-line printer, the exit statuses. Nothing here knows the trace format.
 */
#ifndef MEMTRACE_REPORT_UTIL_H
#define MEMTRACE_REPORT_UTIL_H

#include <stddef.h>

#ifndef MT_MUST_CHECK
#define MT_MUST_CHECK __attribute__((warn_unused_result))
#endif

/* Exit statuses of memtrace-report (--help and docs/report-json.md list them). Only main.c
 * chooses one; xmalloc() uses REPORT_EXIT_IO when memory runs out. */
#define REPORT_EXIT_OK    0 /* the trace was read to its END record */
#define REPORT_EXIT_USAGE 1 /* bad command line */
#define REPORT_EXIT_TRACE 2 /* invalid, truncated or incomplete trace */
#define REPORT_EXIT_IO    3 /* cannot open/read the trace or write the output; out of memory */

/* malloc/realloc/strdup that never return NULL: on failure they print
 * "memtrace-report: out of memory (N bytes)" and exit with REPORT_EXIT_IO. */
void *xmalloc(size_t size_bytes);
void *xrealloc(void *p, size_t size_bytes);
char *xstrdup(const char *s);

/* Print "memtrace-report: <message>\n" on stderr as one line. */
__attribute__((format(printf, 1, 2))) void report_error(const char *fmt, ...);

#endif
