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

#include "aggregate.h"
#include "check.h"
#include "findings.h"
#include "input.h"
#include "reader.h"
#include "render.h"
#include "stackview.h"
#include "suppress.h"
#include "symbolize.h"
#include "util.h"

#ifndef MEMTRACE_VERSION
#define MEMTRACE_VERSION "0.1"
#endif

enum mode {
    MODE_SUMMARY,  /* default */
    MODE_EVENTS,   /* --events */
    MODE_JSON,     /* --json */
    MODE_TIMELINE, /* --timeline */
};

#define MAX_SUPP_FILES 16

static struct env {
    enum mode mode;   /* MODE_SUMMARY unless --events, --json or --timeline */
    const char *path; /* the one operand; "-" is stdin */
    unsigned top;     /* --top N: sites per list (10) */
    int default_supp; /* built-in leak suppressions (on; --no-default-suppressions) */
    const char *supp_files[MAX_SUPP_FILES]; /* --suppressions FILE, in order */
    int nsupp_files;
} env = {
    .mode = MODE_SUMMARY,
    .top = 10,
    .default_supp = 1,
};

static const char usage_text[] =
    "Usage: memtrace-report [OPTIONS] TRACE\n"
    "       memtrace-report check [OPTIONS] TRACE|DIR...   (the CI leak gate: check --help)\n"
    "Read a trace written by libmemtrace.so and report what the program did with memory.\n"
    "TRACE is a file, or - for standard input.\n"
    "\n"
    "Output (one of):\n"
    "  (default)        the summary: process, memoryUsage (rss, heapTotal, heapUsed, external,\n"
    "                   mapped) at the heap peak and at exit, calls per function, top\n"
    "                   allocation sites by peak bytes, total bytes and calls with their\n"
    "                   stacks, leaks (blocks live at exit) by stack, dropped calls, and\n"
    "                   whether the trace is complete\n"
    "  -t, --timeline   one line per memoryUsage snapshot, as Node users print it:\n"
    "                   heapTotal 5.85 MB heapUsed 1.84 MB external 200.00 MB rss 212.88 MB\n"
    "  -j, --json       the same numbers as one JSON object (schema: docs/report-json.md)\n"
    "  -e, --events     every record and event, one line each: key=value words, addresses in\n"
    "                   hex, stacks innermost frame first; meant for grep and awk\n"
    "\n"
    "Options:\n"
    "  -n, --top N                 sites per list and leak sites shown (default 10)\n"
    "  -s, --suppressions FILE     leak suppressions in LeakSanitizer's format: lines\n"
    "                              'leak:PATTERN' matching a function, module or source file\n"
    "                              of any frame ('*' wildcard, ^ and $ anchors), '#' comments;\n"
    "                              may be given more than once\n"
    "  --no-default-suppressions   also show blocks the loader, stdio and the C/C++ runtime\n"
    "                              keep to exit on purpose (the summary says how many each\n"
    "                              built-in rule hid)\n"
    "  -h, --help                  show this help\n"
    "  -V, --version               show the version\n"
    "\n"
    "Units: 1 KB = 1024 bytes, 1 MB = 1024 KB (as Node's bytes / 1024 / 1024). rss and\n"
    "heapTotal are sampled by snapshots (n/a when the trace has none); heapUsed, external and\n"
    "mapped are replayed exactly from every event.\n"
    "Sampled traces (MEMTRACE_SAMPLE, memtrace --sample): site figures and the heap peak are\n"
    "estimates (each sampled allocation weighted by 1/P(sampled)), and say so; calls per\n"
    "function, leak totals and heapUsed at exit are exact (the trace's TOTALS record).\n"
    "\n"
    "Exit status:\n"
    "  0  the trace was read to its END record\n"
    "  1  bad command line, or a suppressions file that cannot be used\n"
    "  2  the trace is invalid, truncated, or incomplete (no END record: the process was\n"
    "     killed, or tracing stopped); the report of everything before the damage is still\n"
    "     printed, marked INCOMPLETE, and one line on stderr says where reading stopped\n"
    "  3  the trace cannot be opened or read, the output cannot be written, or memory ran out\n"
    "\n"
    "Examples:\n"
    "  memtrace-report run.mtr\n"
    "      summary of the run\n"
    "  memtrace-report --top 3 run.mtr\n"
    "      the same with 3 sites per list\n"
    "  memtrace-report --timeline run.mtr\n"
    "      the memoryUsage picture at every snapshot and memtrace_mark()\n"
    "  memtrace-report --json run.mtr | jq '.leaks.bytes, .peak.heapUsed'\n"
    "      leaked bytes and the heap peak, for scripts\n"
    "  memtrace-report --json run.mtr | jq '.leaks.sites[0].stack[0].function'\n"
    "      the function that allocated the largest leak\n"
    "  printf 'leak:libfontconfig.so\\nleak:cache_init\\n' > lsan.supp\n"
    "  memtrace-report --suppressions lsan.supp run.mtr\n"
    "      leaks of libfontconfig and cache_init are not counted (the summary says how often\n"
    "      each rule matched)\n"
    "  memtrace-report --events run.mtr | grep -w malloc | grep -w failed\n"
    "      every malloc call that returned NULL\n"
    "  memtrace-report --events run.mtr | grep -w -e ptr=0x55d0c0 -e old=0x55d0c0\n"
    "      the history of one address (allocations, reallocs, frees)\n"
    "  ssh host cat /tmp/run.mtr | memtrace-report -\n"
    "      read the trace from a pipe\n"
    "  memtrace-report run.mtr; echo $?\n"
    "      2 with \"memtrace-report: run.mtr: offset 4096: file ends inside a record (needs\n"
    "      828 bytes, 300 present): 300 bytes lost\" on stderr: the process was killed\n"
    "      while writing; the report covers the first 4096 bytes and says INCOMPLETE\n";

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
        { "timeline", no_argument, NULL, 't' },
        { "top", required_argument, NULL, 'n' },
        { "suppressions", required_argument, NULL, 's' },
        { "no-default-suppressions", no_argument, NULL, 'D' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    int c, modes = 0;
    opterr = 0; /* our own one-line message instead of getopt's */
    while ((c = getopt_long(argc, argv, ":ejtn:s:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            env.mode = MODE_EVENTS;
            modes++;
            break;
        case 'j':
            env.mode = MODE_JSON;
            modes++;
            break;
        case 't':
            env.mode = MODE_TIMELINE;
            modes++;
            break;
        case 'n': {
            char *end;
            errno = 0;
            unsigned long n = strtoul(optarg, &end, 10);
            if (errno || end == optarg || *end || n == 0 || n > 1000000 || optarg[0] == '-') {
                char msg[128];
                snprintf(msg, sizeof(msg), "--top %.40s: expected a number from 1 to 1000000",
                         optarg);
                return usage_error(msg);
            }
            env.top = (unsigned)n;
            break;
        }
        case 's':
            if (env.nsupp_files == MAX_SUPP_FILES)
                return usage_error("too many --suppressions files (at most 16)");
            env.supp_files[env.nsupp_files++] = optarg;
            break;
        case 'D':
            env.default_supp = 0;
            break;
        case ':': {
            char msg[128];
            snprintf(msg, sizeof(msg), "option '%s' needs a value", argv[optind - 1]);
            return usage_error(msg);
        }
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
        return usage_error("--events, --json and --timeline exclude each other");
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
    case RD_ITEM_REACH:
        ts = item->reach.h.ts_ns;
        break;
    case RD_ITEM_TOTALS:
        ts = item->totals.ts_ns;
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

/* Built-in rules, then every --suppressions file. 0, or the exit status to end with. */
static int load_suppressions(struct suppressions *supp)
{
    supp_init(supp, env.default_supp);
    for (int i = 0; i < env.nsupp_files; i++) {
        char err[4400];
        if (supp_load(supp, env.supp_files[i], err, sizeof(err)) != 0) {
            report_error("%s", err);
            return REPORT_EXIT_USAGE;
        }
    }
    return -1;
}

/* What the aggregated outputs need besides the reader: the replay, the symbolizer. */
struct report {
    struct agg *agg;
    struct symbolizer *sym;
    struct stackview *stacks;
    struct findings findings;
    unsigned module_warnings;
};

static void report_item(struct report *rep, const struct rd_item *item)
{
    if (item->type == RD_ITEM_MODULE && sym_module(rep->sym, &item->module) != 0)
        rep->module_warnings++;
    agg_item(rep->agg, item);
}

/* After the last item: exit picture, symbolized findings, handed to the renderers. */
static void report_finish(struct report *rep, struct render_trace *t, struct suppressions *supp)
{
    agg_finish(rep->agg);
    rep->stacks = sv_new(rep->sym, rep->agg);
    findings_compute(&rep->findings, rep->agg, rep->stacks, supp, env.top);
    /* symbolize every stack that will be shown now, so sym_stale() counts their modules */
    const struct findings *f = &rep->findings;
    for (size_t i = 0; i < f->ntop_peak; i++)
        (void)sv_get(rep->stacks, f->by_peak[i]->stack);
    for (size_t i = 0; i < f->ntop_total; i++)
        (void)sv_get(rep->stacks, f->by_total[i]->stack);
    for (size_t i = 0; i < f->ntop_count; i++)
        (void)sv_get(rep->stacks, f->by_count[i]->stack);
    for (size_t i = 0; i < rep->agg->nlimits; i++)
        (void)sv_get(rep->stacks, rep->agg->limits[i].stack);
    t->stale_modules = sym_stale(rep->sym);
    t->agg = rep->agg;
    t->stacks = rep->stacks;
    t->findings = &rep->findings;
    t->supp = supp;
    t->default_suppressions = env.default_supp;
    t->top = env.top;
    t->module_warnings = rep->module_warnings;
}

static void report_free(struct report *rep)
{
    findings_free(&rep->findings);
    sv_free(rep->stacks);
    sym_free(rep->sym);
    agg_free(rep->agg);
}

static int render(const struct render_trace *t)
{
    switch (env.mode) {
    case MODE_SUMMARY:
        return render_summary(stdout, t);
    case MODE_JSON:
        return render_json(stdout, t);
    case MODE_TIMELINE:
        return render_timeline(stdout, t);
    case MODE_EVENTS:
        break;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "check") == 0)
        return check_main(argc - 1, argv + 1);
    int status = parse_args(argc, argv);
    if (status >= 0)
        return status;
    struct suppressions supp;
    status = load_suppressions(&supp);
    if (status >= 0) {
        supp_fini(&supp);
        return status;
    }

    struct input *in;
    int rc = input_open(&in, env.path);
    if (in == NULL) {
        report_error("out of memory opening %s", env.path);
        supp_fini(&supp);
        return REPORT_EXIT_IO;
    }
    if (rc == RD_ERR_IO || rc == RD_ERR_NOMEM) { /* nothing was read: nothing to report */
        report_error("%s", input_error(in));
        input_close(in);
        supp_fini(&supp);
        return REPORT_EXIT_IO;
    }

    const struct rd_status *st = input_status(in);
    struct render_trace t = {
        .path = env.path,
        .status = st,
        .header_valid = rc == 0,
        .min_ts_ns = st->header.start_monotonic_ns,
        .max_ts_ns = st->header.start_monotonic_ns,
        .top = env.top,
        .supp = &supp,
        .default_suppressions = env.default_supp,
    };
    struct report rep = { 0 };
    char *exe = NULL;
    int out_rc = 0;
    if (rc == 0) {
        struct rd_item item;
        if (env.mode == MODE_EVENTS) {
            out_rc = render_events_header(stdout, &st->header);
        } else {
            rep.agg = agg_new();
            rep.sym = sym_new();
            agg_header(rep.agg, &st->header);
        }
        while (out_rc == 0 && (rc = input_next(in, &item)) > 0) {
            note_item(&t, &exe, &item);
            if (env.mode == MODE_EVENTS)
                out_rc = render_events_item(stdout, &item);
            else
                report_item(&rep, &item);
        }
    }

    /* A trace without END is read cleanly to its last record but is missing the events its
     * threads still had buffered: the user must hear about it, and CI must not pass it. */
    char incomplete[640];
    if (out_rc == 0 && rc < 0) {
        t.error_code = rc;
        t.error = input_error(in);
        t.error_offset = st->error_offset;
    } else if (out_rc == 0 && !st->complete) {
        snprintf(incomplete, sizeof(incomplete),
                 "%s: offset %" PRIu64 ": no END record: the trace is incomplete (the process "
                 "was killed, or tracing stopped) and events still buffered in its threads are "
                 "missing",
                 input_name(in), st->valid_bytes);
        t.error = incomplete;
        t.error_offset = st->valid_bytes;
    }

    if (out_rc == 0 && rep.agg != NULL)
        report_finish(&rep, &t, &supp);
    if (out_rc == 0)
        out_rc = render(&t);
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
    report_free(&rep);
    supp_fini(&supp);
    input_close(in);
    if (fclose(stdout) != 0 && status != REPORT_EXIT_IO)
        status = write_failed();
    return status;
}
