/* Renderers of memtrace-report: each output format writes to a FILE * from decoded data. They
 * never read the trace themselves and never choose an exit status (main.c does). Every function
 * returns 0, or -EIO when the output stream reports an error (errno tells why).
 */
#ifndef MEMTRACE_REPORT_RENDER_H
#define MEMTRACE_REPORT_RENDER_H

#include <stdint.h>
#include <stdio.h>

#include "aggregate.h"
#include "findings.h"
#include "reader.h"
#include "stackview.h"
#include "suppress.h"
#include "util.h"

/* Event kinds that are calls of a hooked function (malloc .. mremap); the kinds after them
 * (STACK, FORK, EXEC) describe the trace, not memory. */
#define RENDER_FIRST_CALL MTF_EV_MALLOC
#define RENDER_LAST_CALL  MTF_EV_MREMAP

/* What the summary renderers show about one trace; main.c fills it while reading. */
struct render_trace {
    const char *path;               /* as given on the command line ("-" is stdin) */
    const struct rd_status *status; /* the reader's status after the last item */
    int header_valid;               /* status->header was read and validated */
    const char *exe;                /* executable from the first PROCESS record, or NULL */
    int have_end;                   /* an END record was read and `end` holds it */
    struct mtf_end end;
    uint64_t min_ts_ns, max_ts_ns; /* span of the header start and every timed item */
    int error_code;                /* RD_ERR_* that stopped reading, 0 if none */
    const char *error;             /* the line main.c prints on stderr (without the program
                                      name), or NULL when the exit status is 0 */
    uint64_t error_offset;         /* the offset that line names, when error is not NULL */

    /* The aggregated report (summary, --timeline, --json); NULL for --events. */
    const struct agg *agg;           /* the replay, after agg_finish() */
    struct stackview *stacks;        /* symbolized stacks, built on demand */
    const struct findings *findings; /* top sites and leaks */
    const struct suppressions *supp; /* rules in force, with what each took */
    int default_suppressions;        /* the built-in rules are on */
    unsigned top;                    /* sites per top list */
    int stale_modules;               /* sym_stale(): files changed since the run */
    unsigned module_warnings;        /* module entries the symbolizer refused */
};

/* --events (render_events.c): the file header as one line, then one line per item. */
MT_MUST_CHECK int render_events_header(FILE *out, const struct mtf_file_header *h);
MT_MUST_CHECK int render_events_item(FILE *out, const struct rd_item *item);

/* Default output (render_text.c): the summary for people. */
MT_MUST_CHECK int render_summary(FILE *out, const struct render_trace *t);

/* --timeline (render_text.c): one line per snapshot, in the form Node users print. */
MT_MUST_CHECK int render_timeline(FILE *out, const struct render_trace *t);

/* Byte counts for people (render_text.c): "512 B", "1.50 KB", "1.84 MB", "2.00 GB" with
 * 1 KB = 1024 B, as Node's `(bytes / 1024 / 1024).toFixed(2) + ' MB'`. Returns buf. */
const char *render_bytes(char *buf, size_t cap, uint64_t bytes);

/* --json (render_json.c): one JSON object, schema in docs/report-json.md. */
#define RENDER_JSON_FORMAT_VERSION 1
MT_MUST_CHECK int render_json(FILE *out, const struct render_trace *t);

#endif
