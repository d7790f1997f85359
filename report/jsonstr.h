/* Text for JSON and XML output: UTF-8 checking and the one JSON string escaper the report's
 * renderers share (--json, check --json, SARIF). Output is always valid JSON (RFC 8259) and valid
 * UTF-8: quotes, backslashes and control characters are escaped, valid UTF-8 passes through,
 * and bytes that are not valid UTF-8 (paths are arbitrary bytes) become \u00XX, the byte read as
 * Latin-1. */
#ifndef MEMTRACE_REPORT_JSONSTR_H
#define MEMTRACE_REPORT_JSONSTR_H

#include <stddef.h>
#include <stdio.h>

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if it is not one: no overlong
 * forms, no surrogates, nothing above U+10FFFF. */
size_t json_utf8_len(const unsigned char *s, size_t n);

/* Write str as a quoted JSON string. */
void json_put_string(FILE *out, const char *str);

#endif
