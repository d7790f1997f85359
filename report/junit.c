/* `memtrace-report check --junit FILE`: JUnit XML for CI test views. One <testsuite> (the root,
 * so the file validates against the widely used JUnit.xsd as well as the Jenkins/Ant flavours),
 * one <testcase> per process named after its program and pid, and for each failing process one
 * <failure> whose message lists what failed and whose text is the summary's account of that
 * process: every leak with its stack. Prints only; decides nothing.
 */
#include "check.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jsonstr.h"

void chk_xml_text(FILE *out, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len = json_utf8_len(s + i, n - i);
        switch (c) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&apos;", out);
            break;
        case '\t':
        case '\n':
            fputc(c, out);
            break;
        default:
            if (c < 0x20 || c == 0x7f || len == 0) {
                fputc('?', out); /* XML 1.0 has no way to carry it */
                break;
            }
            fwrite(s + i, 1, len, out);
            i += len;
            continue;
        }
        i++;
    }
}

static void put_attr(FILE *out, const char *name, const char *value)
{
    fprintf(out, " %s=\"", name);
    chk_xml_text(out, value);
    fputc('"', out);
}

/* Seconds with millisecond precision, as JUnit's `time` attribute wants them. */
static void put_time(FILE *out, uint64_t ns)
{
    fprintf(out, " time=\"%" PRIu64 ".%03" PRIu64 "\"", ns / 1000000000, ns / 1000000 % 1000);
}

/* The failure message: one sentence per failed test, joined by "; ". */
static char *failure_message(const struct chk_run *r, const struct chk_proc *p, char *type,
                             size_t tcap)
{
    size_t cap = 4096, len = 0;
    char *msg = malloc(cap), line[1200];
    if (msg == NULL)
        return NULL;
    msg[0] = type[0] = '\0';
    for (unsigned bit = 1; bit < (1u << CHK_FAIL_KINDS); bit <<= 1) {
        if (!(p->fail & bit))
            continue;
        chk_fail_text(r, p, bit, line, sizeof line);
        len += (size_t)snprintf(msg + len, cap - len, "%s%s", len ? "; " : "", line);
        if (len >= cap)
            len = cap - 1;
        size_t tl = strlen(type);
        snprintf(type + tl, tcap - tl, "%s%s", tl ? "," : "", chk_fail_name(bit));
    }
    return msg;
}

static void put_case(FILE *out, const struct chk_run *r, const struct chk_proc *p)
{
    char title[512];
    chk_proc_title(p, title, sizeof title);
    fputs("  <testcase", out);
    put_attr(out, "name", title);
    put_attr(out, "classname", "memtrace.check");
    put_time(out, p->duration_ns);
    if (!p->fail) {
        fputs("/>\n", out);
        return;
    }
    fputs(">\n    <failure", out);
    char type[128];
    char *msg = failure_message(r, p, type, sizeof type);
    put_attr(out, "message", msg ? msg : "the gate failed");
    put_attr(out, "type", type);
    free(msg);
    fputc('>', out);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (mem) {
        chk_text_process(mem, r, p);
        if (fclose(mem) == 0)
            chk_xml_text(out, text);
    }
    free(text);
    fputs("</failure>\n  </testcase>\n", out);
}

static void put_property(FILE *out, const char *name, const char *value)
{
    fputs("    <property", out);
    put_attr(out, "name", name);
    put_attr(out, "value", value);
    fputs("/>\n", out);
}

int chk_render_junit(FILE *out, const struct chk_run *r)
{
    uint64_t first = UINT64_MAX, last = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct chk_proc *p = &r->procs[i];
        first = p->start_realtime_ns < first ? p->start_realtime_ns : first;
        last = p->start_realtime_ns + p->duration_ns > last ? p->start_realtime_ns + p->duration_ns
                                                            : last;
    }
    char stamp[32] = "1970-01-01T00:00:00", host[256] = "localhost", num[32];
    time_t t = (time_t)(first / 1000000000);
    struct tm tm;
    if (r->n && gmtime_r(&t, &tm))
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
        strcpy(host, "localhost");
    host[sizeof host - 1] = '\0';

    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite", out);
    put_attr(out, "name", "memtrace check");
    fprintf(out, " tests=\"%zu\" failures=\"%zu\" errors=\"0\"", r->n, r->nfailed);
    put_time(out, r->n && last > first ? last - first : 0);
    put_attr(out, "timestamp", stamp);
    put_attr(out, "hostname", host);
    fputs(">\n  <properties>\n", out);
    put_property(out, "verdict", r->fail ? "fail" : "pass");
    snprintf(num, sizeof num, "%d", r->status);
    put_property(out, "exit_status", num);
    if (r->o.label)
        put_property(out, "traces", r->o.label);
    fputs("  </properties>\n", out);
    for (size_t i = 0; i < r->n; i++)
        put_case(out, r, &r->procs[i]);
    fputs("  <system-out/>\n  <system-err/>\n</testsuite>\n", out);
    return ferror(out) ? -1 : 0;
}
