/* MEMTRACE_* variables. One table lists every variable with its parser and default; adding a
 * variable is adding a row. */
#include "config.h"

#include <string.h>

#include "log.h"
#include "memtrace/format.h"
#include "mt.h"

struct mt_config mt_config;

extern char **environ;

#define PREFIX     "MEMTRACE_"
#define PREFIX_LEN (sizeof PREFIX - 1)

int mt_config_parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Digits with an optional fraction: *whole, and the fraction as frac / frac_div. Returns the
 * first byte after the number, or NULL if there is no number or it overflows. */
static const char *parse_decimal(const char *p, uint64_t *whole, uint64_t *frac, uint64_t *frac_div)
{
    *whole = 0;
    *frac = 0;
    *frac_div = 1;
    if (*p < '0' || *p > '9')
        return NULL;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (*whole > (UINT64_MAX - d) / 10)
            return NULL;
        *whole = *whole * 10 + d;
    }
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return NULL;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (*frac_div < 1000000000ULL) { /* nine digits are more than any unit needs */
                *frac = *frac * 10 + (uint64_t)(*p - '0');
                *frac_div *= 10;
            }
        }
    }
    return p;
}

/* whole.frac times mult, or -1 on overflow. */
static int scale(uint64_t whole, uint64_t frac, uint64_t frac_div, uint64_t mult, uint64_t *out)
{
    if (mult != 0 && whole > UINT64_MAX / mult)
        return -1;
    uint64_t v = whole * mult;
    uint64_t f = (uint64_t)((__uint128_t)frac * mult / frac_div);
    if (v > UINT64_MAX - f)
        return -1;
    *out = v + f;
    return 0;
}

int mt_config_parse_duration(const char *s, uint64_t *out)
{
    uint64_t whole, frac, frac_div, mult;
    const char *p = parse_decimal(s, &whole, &frac, &frac_div);
    if (p == NULL)
        return -1;
    if (strcmp(p, "ns") == 0)
        mult = 1;
    else if (strcmp(p, "us") == 0)
        mult = 1000;
    else if (strcmp(p, "ms") == 0)
        mult = 1000000;
    else if (strcmp(p, "s") == 0)
        mult = 1000000000;
    else
        return -1; /* a bare number would be a guess at the unit */
    if (mult == 1 && frac != 0)
        return -1; /* no fraction of a nanosecond */
    return scale(whole, frac, frac_div, mult, out);
}

int mt_config_parse_size(const char *s, uint64_t *out)
{
    uint64_t whole, frac, frac_div;
    const char *p = parse_decimal(s, &whole, &frac, &frac_div);
    if (p == NULL)
        return -1;
    unsigned shift = 0;
    switch (*p) {
    case 'k':
    case 'K':
        shift = 10;
        p++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        p++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        p++;
        break;
    case 't':
    case 'T':
        shift = 40;
        p++;
        break;
    default:
        break;
    }
    if (shift && p[0] == 'i' && p[1] == 'B')
        p += 2;
    else if (p[0] == 'B' || p[0] == 'b')
        p++;
    if (*p != '\0')
        return -1;
    if (shift == 0 && frac != 0)
        return -1; /* "1.5" bytes means nothing */
    return scale(whole, frac, frac_div, (uint64_t)1 << shift, out);
}

static int check_output(const char *v, char *err, size_t cap)
{
    size_t n = strlen(v);
    if (n == 0) {
        mt_log_fmt(err, cap,
                   "MEMTRACE_OUTPUT is empty: expected a file path such as "
                   "trace.%%p.mtrace");
        return -1;
    }
    if (n >= MT_PATH_MAX - 64) { /* room for a pid, a name and a collision suffix */
        mt_log_fmt(err, cap, "MEMTRACE_OUTPUT is %zu bytes long: expected at most %d", n,
                   MT_PATH_MAX - 64);
        return -1;
    }
    for (const char *p = v; *p; p++) {
        if (*p != '%')
            continue;
        p++;
        if (*p != 'p' && *p != 'e' && *p != '%') {
            mt_log_fmt(err, cap,
                       "MEMTRACE_OUTPUT=%s: unknown escape '%%%c' (expected %%p pid, %%e "
                       "executable name or %%%%)",
                       v, *p ? *p : ' ');
            return -1;
        }
    }
    return 0;
}

enum kind { K_PATH, K_UINT, K_SIZE, K_DURATION, K_ON_LIMIT, K_TEXT };

struct var {
    const char *name; /* without the MEMTRACE_ prefix */
    enum kind kind;
    uint64_t lo, hi; /* bounds for K_UINT, K_SIZE and K_DURATION (ns) */
    const char *expect;
};

static const struct var vars[] = {
    { "OUTPUT", K_PATH, 0, 0, "a file path; %p pid, %e executable name" },
    { "DEPTH", K_UINT, 1, 256, "a number of stack frames, 1..256" },
    { "BUFFER", K_SIZE, 4096, 64ULL << 20, "a per-thread buffer size, 4K..64M" },
    { "EXEC_PID", K_UINT, 1, 0x7fffffff, "a process id (set by memtrace itself)" },
    { "HEAP_LIMIT", K_SIZE, 1, UINT64_MAX >> 2, "a byte size such as 512M or 1.5G" },
    { "EXTERNAL_LIMIT", K_SIZE, 1, UINT64_MAX >> 2, "a byte size such as 512M or 1.5G" },
    { "ON_LIMIT", K_ON_LIMIT, 0, 0, "abort or enomem" },
    { "INTERVAL", K_DURATION, 1000000, 86400ULL * 1000000000,
      "a duration such as 100ms, 1s or 2.5s, from 1ms to 24h" },
    { "RULES", K_TEXT, 0, 0, "classification rules" },
    { "LEAK_SCAN", K_UINT, 0, 1, "0 or 1" },
    { "COMPRESS", K_UINT, 0, 1, "0 or 1" },
    { "UNWIND_VERIFY", K_UINT, 0, 1, "0 or 1" },
    { "SAMPLE", K_SIZE, 1, 1ULL << 40, "a mean sampling interval in bytes such as 512K, 1..1T" },
    { "SAMPLE_SEED", K_UINT, 1, UINT64_MAX, "a nonzero number seeding the sampler (tests)" },
};

#define KNOWN_NAMES                                                                                \
    "MEMTRACE_OUTPUT, MEMTRACE_DEPTH, MEMTRACE_BUFFER, MEMTRACE_HEAP_LIMIT, "                      \
    "MEMTRACE_EXTERNAL_LIMIT, MEMTRACE_ON_LIMIT, MEMTRACE_INTERVAL, MEMTRACE_RULES, "              \
    "MEMTRACE_LEAK_SCAN, MEMTRACE_COMPRESS, MEMTRACE_SAMPLE, MEMTRACE_SAMPLE_SEED, "               \
    "MEMTRACE_UNWIND_VERIFY"

static void store(struct mt_config *cfg, const struct var *v, const char *val, uint64_t num)
{
    if (strcmp(v->name, "OUTPUT") == 0) {
        memcpy(cfg->output, val, strlen(val) + 1);
    } else if (strcmp(v->name, "DEPTH") == 0) {
        cfg->max_frames = (uint32_t)num;
    } else if (strcmp(v->name, "BUFFER") == 0) {
        cfg->buffer_bytes = (uint32_t)num;
    } else if (strcmp(v->name, "EXEC_PID") == 0) {
        cfg->exec_pid = (uint32_t)num;
    } else if (strcmp(v->name, "HEAP_LIMIT") == 0) {
        cfg->heap_limit = num;
    } else if (strcmp(v->name, "EXTERNAL_LIMIT") == 0) {
        cfg->external_limit = num;
    } else if (strcmp(v->name, "ON_LIMIT") == 0) {
        cfg->on_limit = (uint32_t)num;
    } else if (strcmp(v->name, "INTERVAL") == 0) {
        cfg->interval_ns = num;
    } else if (strcmp(v->name, "RULES") == 0) {
        cfg->rules = val;
    } else if (strcmp(v->name, "LEAK_SCAN") == 0) {
        cfg->leak_scan = (uint32_t)num;
    } else if (strcmp(v->name, "COMPRESS") == 0) {
        cfg->compress = (uint32_t)num;
    } else if (strcmp(v->name, "UNWIND_VERIFY") == 0) {
        cfg->unwind_verify = (uint32_t)num;
    } else if (strcmp(v->name, "SAMPLE") == 0) {
        cfg->sample_bytes = num;
    } else if (strcmp(v->name, "SAMPLE_SEED") == 0) {
        cfg->sample_seed = num;
    }
}

int mt_config_parse(struct mt_config *cfg, char *const *envp, char *err, size_t cap)
{
    memset(cfg, 0, sizeof *cfg);
    memcpy(cfg->output, MT_DEFAULT_OUTPUT, sizeof MT_DEFAULT_OUTPUT);
    cfg->max_frames = MT_DEFAULT_MAX_FRAMES;
    cfg->buffer_bytes = MT_DEFAULT_BUFFER_BYTES;
    cfg->compress = MT_DEFAULT_COMPRESS;
    if (envp == NULL)
        return 0;
    for (char *const *e = envp; *e; e++) {
        if (strncmp(*e, PREFIX, PREFIX_LEN) != 0)
            continue;
        const char *name = *e + PREFIX_LEN;
        const char *eq = strchr(name, '=');
        if (eq == NULL)
            continue;
        size_t name_len = (size_t)(eq - name);
        const char *val = eq + 1;
        const struct var *v = NULL;
        for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
            if (strlen(vars[i].name) == name_len && strncmp(vars[i].name, name, name_len) == 0)
                v = &vars[i];
        if (v == NULL) {
            char shown[64];
            size_t k = (size_t)(eq - *e) < sizeof shown - 1 ? (size_t)(eq - *e) : sizeof shown - 1;
            memcpy(shown, *e, k);
            shown[k] = '\0';
            mt_log_fmt(err, cap, "%s: unknown variable (known: " KNOWN_NAMES ")", shown);
            return -1;
        }
        uint64_t num = 0;
        int bad = 0;
        switch (v->kind) {
        case K_PATH:
            if (check_output(val, err, cap) != 0)
                return -1;
            break;
        case K_UINT:
            bad = mt_config_parse_uint(val, v->lo, v->hi, &num) != 0;
            break;
        case K_SIZE:
            bad = mt_config_parse_size(val, &num) != 0 || num < v->lo || num > v->hi;
            break;
        case K_DURATION:
            bad = mt_config_parse_duration(val, &num) != 0 || num < v->lo || num > v->hi;
            break;
        case K_ON_LIMIT:
            if (strcmp(val, "abort") == 0)
                num = MTF_LIMIT_ABORT;
            else if (strcmp(val, "enomem") == 0)
                num = MTF_LIMIT_ENOMEM;
            else
                bad = 1;
            break;
        case K_TEXT: /* MEMTRACE_RULES: reading an @file is the one system call parsing makes */
            if (mt_rules_load(val, &cfg->rule_set, err, cap) != 0)
                return -1;
            break;
        }
        if (bad) {
            mt_log_fmt(err, cap, "MEMTRACE_%s=%s: invalid value (expected %s)", v->name, val,
                       v->expect);
            return -1;
        }
        store(cfg, v, val, num);
    }
    return 0;
}

void mt_config_forget_exec_pid(char **envp)
{
    size_t k = 0;
    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
        const char *e = envp[i];
        if (strncmp(e, MT_EXEC_PID_VAR "=", sizeof MT_EXEC_PID_VAR) == 0)
            continue;
        envp[k++] = envp[i];
    }
    if (envp != NULL)
        envp[k] = NULL;
}

void mt_config_load(void)
{
    char err[512];
    if (mt_config_parse(&mt_config, environ, err, sizeof err) != 0)
        mt_fatal(MT_EXIT_CONFIG, "%s", err);
}
