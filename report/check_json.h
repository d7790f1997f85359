/* A small JSON writer shared by the check's JSON (check_json.c) and SARIF (sarif.c) outputs:
 * objects and arrays nest, commas and two-space indentation are tracked, strings are escaped
 * by json_put_string (jsonstr.h). A NULL key writes a bare value (top level, array elements).
 */
#ifndef MEMTRACE_REPORT_CHECK_JSON_H
#define MEMTRACE_REPORT_CHECK_JSON_H

#include <stdint.h>
#include <stdio.h>

#include "check.h"

struct jw {
    FILE *out;
    int depth; /* open objects and arrays */
    int first; /* nothing written yet in the innermost one */
};

void jw_member(struct jw *j, const char *key);
void jw_open(struct jw *j, const char *key, char c); /* c: '{' or '[' */
void jw_close(struct jw *j, char c);                 /* c: '}' or ']' */
void jw_u64(struct jw *j, const char *key, uint64_t v);
void jw_i64(struct jw *j, const char *key, int64_t v);
void jw_bool(struct jw *j, const char *key, int v);
void jw_str(struct jw *j, const char *key, const char *s); /* NULL: null */

/* A stack as an array of {function, file, line, module, module_offset, inlined}. */
void chk_json_stack(struct jw *j, const char *key, const struct chk_stack *s);

#endif
