/* memtrace-report: the command line. Reads one trace through reader.c, hands items to one
 * renderer, and is the only file that chooses an exit status (STYLE 2.4; util.h REPORT_EXIT_*).
 * Whatever happens, what could be read is reported first, then at most one error line goes to
 * stderr: "memtrace-report: <path>: offset N: <what>".
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reader.h"
#include "render.h"
#include "util.h"

#ifndef MEMTRACE_VERSION
#define MEMTRACE_VERSION "0.1"
#endif

enum mode {
    MODE_SUMMARY, /* default */
    MODE_EVENTS,  /* --events */
    MODE_JSON,    /* --json */
};

static struct env {
    enum mode mode;   /* MODE_SUMMARY unless --events or --json */
    const char *path; /* the one operand; "-" is stdin */
} env = {
    .mode = MODE_SUMMARY,
};

static const char usage_text[] =
    "Usage: memtrace-report [--events | --json] TRACE\n"
    "Read a trace written by libmemtrace.so and report what the program did with memory.\n"
    "TRACE is a file, or - for standard input.\n"
    "\n"
    "Output (one of):\n"
    "  (default)      short summary: process, pid, duration, calls per function, whether the\n"
    "                 trace is complete, calls that were not recorded\n"
    "  -e, --events   every record and event, one line each: key=value words, addresses in\n"
    "                 hex, stacks innermost frame first; meant for grep and awk\n"
    "  -j, --json     the summary as one JSON object (schema: docs/report-json.md)\n"
    "  -h, --help     show this help\n"
    "  -V, --version  show the version\n"
    "\n"
    "Exit status:\n"
    "  0  the trace was read to its END record\n"
    "  1  bad command line\n"
    "  2  the trace is invalid, truncated, or incomplete (no END record: the process was\n"
    "     killed, or tracing stopped); everything before the damage is still reported, and\n"
    "     one line on stderr says where reading stopped\n"
    "  3  the trace cannot be opened or read, the output cannot be written, or memory ran out\n"
    "\n"
    "Examples:\n"
    "  memtrace-report run.mtr\n"
    "      summary of the run\n"
    "  memtrace-report --events run.mtr | grep -w malloc | grep -w failed\n"
    "      every malloc call that returned NULL\n"
    "  memtrace-report --events run.mtr | grep -w -e ptr=0x55d0c0 -e old=0x55d0c0\n"
    "      the history of one address (allocations, reallocs, frees)\n"
    "  memtrace-report --events run.mtr | grep ' stack id=3 '\n"
    "      the return addresses of stack 3, as used by `stack=3` on events\n"
    "  memtrace-report --json run.mtr | jq .events.malloc\n"
    "      number of malloc calls, for scripts\n"
    "  ssh host cat /tmp/run.mtr | memtrace-report -\n"
    "      read the trace from a pipe\n"
    "  memtrace-report run.mtr; echo $?\n"
    "      2 with \"memtrace-report: run.mtr: offset 4096: file ends inside a record (needs\n"
    "      828 bytes, 300 present): 300 bytes lost\" on stderr: the process was killed\n"
    "      while writing; the summary covers the first 4096 bytes\n";

static int usage_error(const char *what)
{
    report_error("%s", what);
    fputs("Try 'memtrace-report --help'.\n", stderr);
    return REPORT_EXIT_USAGE;
}

/* 0 to go on, or the exit status to end with. */
static int parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        { "events", no_argument, NULL, 'e' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    int c, modes = 0;
    opterr = 0; /* our own one-line message instead of getopt's */
    while ((c = getopt_long(argc, argv, "ejhV", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            env.mode = MODE_EVENTS;
            modes++;
            break;
        case 'j':
            env.mode = MODE_JSON;
            modes++;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return fflush(stdout) == 0 ? REPORT_EXIT_OK : REPORT_EXIT_IO;
        case 'V':
            printf("memtrace-report %s (trace format %u.%u)\n", MEMTRACE_VERSION, MTF_VERSION_MAJOR,
                   MTF_VERSION_MINOR);
            return fflush(stdout) == 0 ? REPORT_EXIT_OK : REPORT_EXIT_IO;
        default: {
            char msg[128];
            if (optopt)
                snprintf(msg, sizeof(msg), "unknown option '-%c'", optopt);
            else
                snprintf(msg, sizeof(msg), "unknown option '%s'", argv[optind - 1]);
            return usage_error(msg);
        }
        }
    }
    if (modes > 1)
        return usage_error("--events and --json exclude each other");
    if (optind == argc)
        return usage_error("no trace given (a path, or - for stdin)");
    if (optind + 1 < argc)
        return usage_error("more than one trace given");
    env.path = argv[optind];
    return -1;
}

/* Keep what the summaries need from one item: the executable (copied to *exe, owned by the
 * caller), the END record, the time span. */
static void note_item(struct render_trace *t, char **exe, const struct rd_item *item)
{
    uint64_t ts = 0;
    switch (item->type) {
    case RD_ITEM_EVENT:
        ts = item->ev.ts_ns;
        break;
    case RD_ITEM_PROCESS:
        ts = item->process.ts_ns;
        if (*exe == NULL)
            t->exe = *exe = xstrdup(item->process.exe);
        break;
    case RD_ITEM_MODULE:
        ts = item->module.ts_ns;
        break;
    case RD_ITEM_END:
        ts = item->end.ts_ns;
        t->have_end = 1;
        t->end = item->end;
        break;
    case RD_ITEM_LOSS:
        ts = item->loss.ts_ns;
        break;
    }
    if (ts < t->min_ts_ns)
        t->min_ts_ns = ts;
    if (ts > t->max_ts_ns)
        t->max_ts_ns = ts;
}

static int write_failed(void)
{
    report_error("<stdout>: write failed: %s", strerror(errno));
    return REPORT_EXIT_IO;
}

int main(int argc, char **argv)
{
    int status = parse_args(argc, argv);
    if (status >= 0)
        return status;

    struct reader *r;
    int rc = reader_open(&r, env.path);
    if (r == NULL) {
        report_error("out of memory opening %s", env.path);
        return REPORT_EXIT_IO;
    }
    if (rc == RD_ERR_IO || rc == RD_ERR_NOMEM) { /* nothing was read: nothing to report */
        report_error("%s", reader_error(r));
        reader_close(r);
        return REPORT_EXIT_IO;
    }

    const struct rd_status *st = reader_status(r);
    struct render_trace t = {
        .path = env.path,
        .status = st,
        .header_valid = rc == 0,
        .min_ts_ns = st->header.start_monotonic_ns,
        .max_ts_ns = st->header.start_monotonic_ns,
    };
    char *exe = NULL;
    int out_rc = 0;
    if (rc == 0) {
        struct rd_item item;
        if (env.mode == MODE_EVENTS)
            out_rc = render_events_header(stdout, &st->header);
        while (out_rc == 0 && (rc = reader_next(r, &item)) > 0) {
            note_item(&t, &exe, &item);
            if (env.mode == MODE_EVENTS)
                out_rc = render_events_item(stdout, &item);
        }
    }

    /* A trace without END is read cleanly to its last record but is missing the events its
     * threads still had buffered: the user must hear about it, and CI must not pass it. */
    char incomplete[640];
    if (out_rc == 0 && rc < 0) {
        t.error_code = rc;
        t.error = reader_error(r);
        t.error_offset = st->error_offset;
    } else if (out_rc == 0 && !st->complete) {
        snprintf(incomplete, sizeof(incomplete),
                 "%s: offset %" PRIu64 ": no END record: the trace is incomplete (the process "
                 "was killed, or tracing stopped) and events still buffered in its threads are "
                 "missing",
                 reader_name(r), st->valid_bytes);
        t.error = incomplete;
        t.error_offset = st->valid_bytes;
    }

    if (out_rc == 0 && env.mode == MODE_SUMMARY)
        out_rc = render_summary(stdout, &t);
    else if (out_rc == 0 && env.mode == MODE_JSON)
        out_rc = render_json(stdout, &t);
    if (out_rc == 0 && fflush(stdout) != 0)
        out_rc = -EIO;

    if (out_rc != 0)
        status = write_failed();
    else if (t.error_code == RD_ERR_IO || t.error_code == RD_ERR_NOMEM)
        status = REPORT_EXIT_IO;
    else if (t.error != NULL)
        status = REPORT_EXIT_TRACE;
    else
        status = REPORT_EXIT_OK;
    if (out_rc == 0 && t.error != NULL)
        report_error("%s", t.error);

    free(exe);
    reader_close(r);
    if (fclose(stdout) != 0 && status != REPORT_EXIT_IO)
        status = write_failed();
    return status;
}
