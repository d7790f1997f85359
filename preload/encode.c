/* Scanning our own encoded events: needed only when a buffer was split between its owner and
 * another thread (a steal), to find the state at the split and the events on each side. */
#include "encode.h"

#include <string.h>

static int get(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

static uint64_t unzig(uint64_t z)
{
    return (z >> 1) ^ (0 - (z & 1));
}

const char *const mt_enc_layout[MTF_EV_KIND_COUNT] = {
    [MTF_EV_MALLOC] = "avvs",
    [MTF_EV_CALLOC] = "avvvs",
    [MTF_EV_REALLOC] = "aavvsv",
    [MTF_EV_REALLOCARRAY] = "aavvvsv",
    [MTF_EV_FREE] = "a",
    [MTF_EV_POSIX_MEMALIGN] = "avvvs",
    [MTF_EV_ALIGNED_ALLOC] = "avvvs",
    [MTF_EV_MEMALIGN] = "avvvs",
    [MTF_EV_VALLOC] = "avvs",
    [MTF_EV_PVALLOC] = "avvs",
    [MTF_EV_MMAP] = "avvvvvs",
    [MTF_EV_MMAP64] = "avvvvvs",
    [MTF_EV_MUNMAP] = "av",
    [MTF_EV_MREMAP] = "avvvasv",
    [MTF_EV_STACK] = "vf",
    [MTF_EV_FORK] = "v",
    [MTF_EV_EXEC] = "",
    [MTF_EV_SNAPSHOT] = "vvvvvvvb",
    [MTF_EV_LIMIT] = "vvvvvvs",
};

int mt_enc_scan(const uint8_t *p, uint32_t len, struct mt_enc_state *s, struct mt_scan *out)
{
    const uint8_t *end = p + len;
    memset(out, 0, sizeof *out);
    while (p < end) {
        unsigned tag = *p++;
        unsigned kind = tag & MTF_EV_KIND_MASK;
        uint64_t v;
        if (kind == 0 || kind >= MTF_EV_KIND_COUNT || get(&p, end, &v) != 0)
            return -1;
        s->ts += v;
        if ((tag & MTF_EVF_CLASS) && kind != MTF_EV_STACK && get(&p, end, &v) != 0)
            return -1;
        for (const char *f = mt_enc_layout[kind]; *f; f++) {
            if (get(&p, end, &v) != 0)
                return -1;
            if (*f == 'a') {
                s->addr += unzig(v);
            } else if (*f == 's') {
                s->stack += (uint32_t)unzig(v);
            } else if (*f == 'b') {
                if (v > (uint64_t)(end - p))
                    return -1;
                p += v;
            } else if (*f == 'f') {
                uint64_t n = v, frame;
                for (uint64_t i = 0; i < n; i++)
                    if (get(&p, end, &frame) != 0)
                        return -1;
            }
        }
        if (out->nevents == 0)
            out->first_ts = s->ts;
        out->last_ts = s->ts;
        out->nevents++;
        out->counts[kind]++;
    }
    return 0;
}
