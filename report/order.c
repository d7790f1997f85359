/* Time-ordered reading of a trace (order.h): an index pass with the validating reader, then a
 * k-way merge of the threads' chunk streams. A thread's chunk payload is loaded only when the
 * merge reaches its first event and released after its last, so memory holds the index (one
 * small entry per record), one heap entry per thread, and the chunks in progress.
 * The bound, independent of the number of events: 40 bytes per EVENTS record and 24 per other
 * record in the index (0.02% of the trace with the shim's 256 KiB chunks); per thread a struct
 * thread and a heap entry; payload buffers for the chunks the merge is inside of, at most two
 * per thread (its buffered chunk and a write-through chunk), each at most MTF_RECORD_MAX_SIZE
 * decompressed and recycled through a pool; one compressed payload; the two readers' buffers
 * of one record each; and a bitmap of stack ids (at most MAX_STACK_ID / 8 bytes).
 * Each event is decoded once here (the cursor reads the next event's head ahead for the heap
 * key); the index pass only validates, without building events.
 */
#include "order.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_CHUNK   (256U << 10) /* bytes copied at a time from a pipe to the temporary file */
#define MAX_STACK_ID (1U << 28)   /* higher ids are not tracked by order_late_stacks() */

/* One EVENTS record holding at least one event. */
struct chunk_ix {
    uint64_t off;      /* of the record header */
    uint64_t first_ts; /* time of its first event */
    uint32_t size;     /* payload bytes */
    uint32_t serial, epoch, offset, flags;
    uint32_t seq; /* place among the chunks in the file */
};

/* A record other than EVENTS that yields items. */
struct rec_ix {
    uint64_t off; /* of the record header */
    uint64_t key; /* yielded when the merge front reaches this time */
    uint32_t items;
    uint32_t before; /* 1: before the events timed `key` (MODULES); 0: after them */
};

/* A chunk being yielded. */
struct live {
    struct rd_cursor c;
    uint64_t off;   /* record offset, for rd_event.chunk_offset */
    uint32_t epoch; /* the chunk's */
    int on;         /* loaded, events left */
    uint8_t *buf;   /* payload copy (file input), owned while on */
    size_t cap;
};

/* Where a thread's next event comes from (§10). */
enum src { SRC_NONE, SRC_WT_LIVE, SRC_WT_NEXT, SRC_BUF_LIVE, SRC_BUF_NEXT };

struct thread {
    uint32_t serial;
    uint32_t b, b_end; /* next buffered chunk (index in order.chunks) and the end of them */
    uint32_t w, w_end; /* next write-through chunk and the end of them */
    enum src src;      /* decided by thread_key() */
    struct live bc, wc;
};

/* Merge heap entry: a thread and the time of its next event. */
struct hent {
    uint64_t ts;
    uint32_t serial, t;
};

struct pool_buf {
    uint8_t *p;
    size_t cap;
};

struct order {
    struct reader *scan; /* the index pass: its status and error are the result */
    struct reader *recs; /* reads non-event records again, by offset */
    FILE *f;             /* input file or temporary copy; NULL for memory */
    const uint8_t *mem;  /* memory input */
    int scan_rc;         /* 0 (clean end) or the index pass's RD_ERR_* */
    int err;             /* own sticky error while merging, 0 while healthy */
    int finished;        /* order_next returned scan_rc */
    char msg[512];
    struct rd_status st;

    struct chunk_ix *chunks;
    size_t nchunks, chunks_cap;
    struct rec_ix *rix;
    size_t nrecs, recs_cap, rec_next;
    uint32_t rec_left; /* items of the record being yielded */

    struct thread *threads;
    size_t nthreads;
    struct hent *heap;
    size_t nheap;
    struct pool_buf *pool;
    size_t npool, pool_cap;

    struct rd_inflate *zctx; /* compressed chunks: decompression context, made on first use */
    uint8_t *zin;            /* a compressed payload read from the file */
    size_t zin_cap;          /* bytes */

    uint8_t *defined; /* bitmap of stack ids defined so far */
    size_t defined_cap;
    uint64_t late_stacks;
    uint64_t frames[MTF_MAX_FRAMES_LIMIT + 1];
};

/* ---- helpers -------------------------------------------------------------------------------- */

/* Grow *p (elements of `size` bytes, *cap of them) to hold `need`. 0 or -1. */
static int grow(void *pp, size_t *cap, size_t need, size_t size)
{
    void **p = pp;
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * size);
    if (q == NULL)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

__attribute__((format(printf, 3, 4))) static int fail(struct order *o, int code, const char *fmt,
                                                      ...)
{
    int n = snprintf(o->msg, sizeof(o->msg), "%s: ", o->scan ? reader_name(o->scan) : "trace");
    if (n < 0 || (size_t)n >= sizeof(o->msg))
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->msg + n, sizeof(o->msg) - (size_t)n, fmt, ap);
    va_end(ap);
    o->err = code;
    return code;
}

/* Take over the error of one of our readers (its message already names the input). */
static int adopt(struct order *o, const struct reader *r, int code)
{
    snprintf(o->msg, sizeof(o->msg), "%s", reader_error(r));
    o->err = code;
    return code;
}

static uint64_t max64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* ---- index pass ----------------------------------------------------------------------------- */

static int add_chunk(struct order *o, const struct rd_record *rec)
{
    if (grow(&o->chunks, &o->chunks_cap, o->nchunks + 1, sizeof(*o->chunks)) != 0)
        return fail(o, RD_ERR_NOMEM, "out of memory indexing %zu chunks", o->nchunks + 1);
    struct chunk_ix *c = &o->chunks[o->nchunks];
    c->off = rec->offset;
    c->first_ts = rec->chunk.first_ts_ns;
    c->size = rec->payload_size;
    c->serial = rec->chunk.thread_serial;
    c->epoch = rec->chunk.epoch;
    c->offset = rec->chunk.offset;
    c->flags = rec->chunk.flags;
    c->seq = (uint32_t)o->nchunks++;
    return 0;
}

static int add_rec(struct order *o, const struct rd_record *rec, uint64_t key, uint32_t before)
{
    if (grow(&o->rix, &o->recs_cap, o->nrecs + 1, sizeof(*o->rix)) != 0)
        return fail(o, RD_ERR_NOMEM, "out of memory indexing %zu records", o->nrecs + 1);
    o->rix[o->nrecs++] = (struct rec_ix){ rec->offset, key, rec->items, before };
    return 0;
}

/* Read every record with the reader, keeping the index. The reader's result (clean end or the
 * first damage) becomes scan_rc; only our own failures (out of memory) are returned. */
static int index_pass(struct order *o)
{
    uint64_t front = 0; /* latest event time of the chunks read so far */
    uint64_t prev = 0;  /* key of the previous indexed record */
    struct rd_record rec;
    int rc;
    while ((rc = reader_next_record(o->scan, &rec)) == 1) {
        if (rec.type == MTF_REC_EVENTS) {
            if (rec.items > 0) {
                front = max64(front, rec.chunk.last_ts_ns);
                if (add_chunk(o, &rec) != 0)
                    return o->err;
            }
        } else if (rec.type == MTF_REC_MODULES) {
            if (rec.items > 0) {
                prev = max64(rec.ts_ns, prev);
                if (add_rec(o, &rec, prev, 1) != 0)
                    return o->err;
            }
        } else if (rec.items > 0) {
            prev = max64(max64(rec.ts_ns, front), prev);
            if (add_rec(o, &rec, prev, 0) != 0)
                return o->err;
        }
    }
    o->scan_rc = rc;
    return 0;
}

/* ---- threads -------------------------------------------------------------------------------- */

/* Thread, then buffered before write-through, then §10 position, then file order. */
static int chunk_cmp(const void *pa, const void *pb)
{
    const struct chunk_ix *a = pa, *b = pb;
    uint32_t wa = a->flags & MTF_CHUNKF_WRITETHROUGH, wb = b->flags & MTF_CHUNKF_WRITETHROUGH;
    if (a->serial != b->serial)
        return a->serial < b->serial ? -1 : 1;
    if (wa != wb)
        return wa < wb ? -1 : 1;
    if (a->epoch != b->epoch)
        return a->epoch < b->epoch ? -1 : 1;
    if (a->offset != b->offset)
        return a->offset < b->offset ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int build_threads(struct order *o)
{
    if (o->nchunks > 0)
        qsort(o->chunks, o->nchunks, sizeof(*o->chunks), chunk_cmp);
    size_t n = 0;
    for (size_t i = 0; i < o->nchunks; i++)
        n += i == 0 || o->chunks[i].serial != o->chunks[i - 1].serial;
    o->threads = calloc(n ? n : 1, sizeof(*o->threads));
    o->heap = calloc(n ? n : 1, sizeof(*o->heap));
    if (o->threads == NULL || o->heap == NULL)
        return fail(o, RD_ERR_NOMEM, "out of memory for %zu threads", n);
    o->nthreads = n;
    size_t t = 0;
    for (size_t i = 0; i < o->nchunks;) {
        size_t j = i;
        while (j < o->nchunks && o->chunks[j].serial == o->chunks[i].serial)
            j++;
        size_t k = i;
        while (k < j && !(o->chunks[k].flags & MTF_CHUNKF_WRITETHROUGH))
            k++;
        o->threads[t++] = (struct thread){ .serial = o->chunks[i].serial,
                                           .b = (uint32_t)i,
                                           .b_end = (uint32_t)k,
                                           .w = (uint32_t)k,
                                           .w_end = (uint32_t)j };
        i = j;
    }
    return 0;
}

/* Decide where thread t's next event comes from (t->src) and its time. 0 when t is done. */
static int thread_key(const struct order *o, struct thread *t, uint64_t *ts)
{
    if (t->wc.on) { /* a write-through chunk is yielded whole once started */
        t->src = SRC_WT_LIVE;
        *ts = reader_cursor_peek_ts(&t->wc.c);
        return 1;
    }
    int have_b = t->bc.on || t->b < t->b_end;
    uint32_t be = 0, bo = 0; /* §10 position of the next buffered event */
    if (t->bc.on) {
        be = t->bc.epoch;
        bo = reader_cursor_pos(&t->bc.c);
    } else if (have_b) {
        be = o->chunks[t->b].epoch;
        bo = o->chunks[t->b].offset;
    }
    if (t->w < t->w_end) {
        const struct chunk_ix *w = &o->chunks[t->w];
        if (!have_b || w->epoch < be || (w->epoch == be && w->offset <= bo)) {
            t->src = SRC_WT_NEXT;
            *ts = w->first_ts;
            return 1;
        }
    }
    if (t->bc.on) {
        t->src = SRC_BUF_LIVE;
        *ts = reader_cursor_peek_ts(&t->bc.c);
        return 1;
    }
    if (have_b) {
        t->src = SRC_BUF_NEXT;
        *ts = o->chunks[t->b].first_ts;
        return 1;
    }
    t->src = SRC_NONE;
    return 0;
}

/* ---- chunk payloads ------------------------------------------------------------------------- */

/* Give l a buffer of at least n bytes, from the pool when one is there. */
static int reserve(struct order *o, struct live *l, size_t n, uint64_t off)
{
    if (l->buf == NULL && o->npool > 0) {
        struct pool_buf b = o->pool[--o->npool];
        l->buf = b.p;
        l->cap = b.cap;
    }
    if (l->cap < n) {
        uint8_t *p = realloc(l->buf, n);
        if (p == NULL)
            return fail(o, RD_ERR_NOMEM, "offset %" PRIu64 ": out of memory for a %zu-byte chunk",
                        off, n);
        l->buf = p;
        l->cap = n;
    }
    return 0;
}

/* Load a chunk for the merge: memory input is used in place; a file's payload is read into the
 * live buffer; a compressed chunk (trace-format.md §7.5) is decompressed into it, so the merge
 * holds one decompressed chunk per live cursor. */
static int load(struct order *o, struct live *l, const struct chunk_ix *c)
{
    const uint8_t *payload;
    int packed = (c->flags & MTF_CHUNKF_ZSTD) != 0;
    if (o->mem != NULL) {
        payload = o->mem + c->off + MTF_RECORD_HEADER_SIZE;
    } else {
        uint8_t *dst;
        if (packed) {
            if (grow(&o->zin, &o->zin_cap, c->size, 1) != 0)
                return fail(o, RD_ERR_NOMEM,
                            "offset %" PRIu64 ": out of memory for a %u-byte chunk", c->off,
                            c->size);
            dst = o->zin;
        } else {
            if (reserve(o, l, c->size, c->off) != 0)
                return o->err;
            dst = l->buf;
        }
        off_t at = (off_t)(c->off + MTF_RECORD_HEADER_SIZE);
        ssize_t k = pread(fileno(o->f), dst, c->size, at);
        if (k != (ssize_t)c->size)
            return fail(o, RD_ERR_IO, "offset %" PRIu64 ": read failed: %s", c->off,
                        k < 0 ? strerror(errno) : "the file shrank since it was indexed");
        payload = dst;
    }
    if (packed) {
        uint32_t plain = reader_chunk_plain_size(payload, c->size);
        if (reserve(o, l, plain, c->off) != 0)
            return o->err;
        if (reader_chunk_inflate(&o->zctx, payload, c->size, l->buf) != 0)
            return fail(o, RD_ERR_CORRUPT,
                        "offset %" PRIu64 ": compressed EVENTS record changed since it was "
                        "indexed (or out of memory)",
                        c->off);
        payload = l->buf;
    }
    reader_cursor_init(&l->c, payload);
    l->off = c->off;
    l->epoch = c->epoch;
    l->on = 1;
    return 0;
}

/* The chunk is done: its buffer goes back to the pool. */
static void release(struct order *o, struct live *l)
{
    l->on = 0;
    if (l->buf == NULL)
        return;
    if (grow(&o->pool, &o->pool_cap, o->npool + 1, sizeof(*o->pool)) == 0)
        o->pool[o->npool++] = (struct pool_buf){ l->buf, l->cap };
    else
        free(l->buf);
    l->buf = NULL;
    l->cap = 0;
}

/* ---- merge ---------------------------------------------------------------------------------- */

static int hent_less(const struct hent *a, const struct hent *b)
{
    return a->ts < b->ts || (a->ts == b->ts && a->serial < b->serial);
}

static void sift_down(struct order *o, size_t i)
{
    struct hent *h = o->heap, e = h[i];
    size_t n = o->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && hent_less(&h[c + 1], &h[c]))
            c++;
        if (!hent_less(&h[c], &e))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = e;
}

static void build_heap(struct order *o)
{
    for (size_t i = 0; i < o->nthreads; i++) {
        uint64_t ts;
        if (thread_key(o, &o->threads[i], &ts))
            o->heap[o->nheap++] = (struct hent){ ts, o->threads[i].serial, (uint32_t)i };
    }
    for (size_t i = o->nheap / 2; i-- > 0;)
        sift_down(o, i);
}

/* Count uses of stack ids the merged stream has not defined yet. */
static void track_stack(struct order *o, const struct rd_event *ev)
{
    uint32_t id = ev->stack;
    if (id == 0 || id >= MAX_STACK_ID)
        return;
    size_t byte = id / 8;
    uint8_t bit = (uint8_t)(1U << (id % 8));
    if (byte >= o->defined_cap) {
        size_t cap = o->defined_cap;
        if (grow(&o->defined, &cap, byte + 1, 1) != 0)
            return; /* only a statistic */
        memset(o->defined + o->defined_cap, 0, cap - o->defined_cap);
        o->defined_cap = cap;
    }
    if (ev->kind == MTF_EV_STACK)
        o->defined[byte] |= bit;
    else if (!(o->defined[byte] & bit))
        o->late_stacks++;
}

/* Whether t's next write-through chunk comes before the next event of its live buffered chunk
 * (thread_key()'s rule, for a thread whose buffered chunk is live). */
static inline int wt_due(const struct order *o, const struct thread *t)
{
    if (t->w == t->w_end)
        return 0;
    const struct chunk_ix *w = &o->chunks[t->w];
    return w->epoch < t->bc.epoch ||
           (w->epoch == t->bc.epoch && w->offset <= reader_cursor_pos(&t->bc.c));
}

/* Yield the next event of the thread on top of the heap and re-key it. */
static int next_event(struct order *o, struct rd_item *item)
{
    struct hent *top = &o->heap[0];
    struct thread *t = &o->threads[top->t];
    struct live *l = t->src == SRC_WT_LIVE || t->src == SRC_WT_NEXT ? &t->wc : &t->bc;
    if (t->src == SRC_WT_NEXT && load(o, l, &o->chunks[t->w++]) != 0)
        return o->err;
    if (t->src == SRC_BUF_NEXT && load(o, l, &o->chunks[t->b++]) != 0)
        return o->err;
    struct rd_event *ev = &item->ev;
    item->type = RD_ITEM_EVENT;
    if (reader_cursor_next(&l->c, ev, o->frames) != 0)
        return fail(o, RD_ERR_CORRUPT,
                    "offset %" PRIu64 ": EVENTS record changed since it was indexed", l->off);
    ev->chunk_offset = l->off;
    o->st.events++;
    o->st.kind_counts[ev->kind]++;
    if (ev->stack != 0)
        track_stack(o, ev);

    if (l->c.left > 0 && l == &t->bc && !wt_due(o, t)) {
        /* Most events: more of the same buffered chunk, no write-through chunk to place
         * before it (what thread_key() would decide, without its branches). */
        t->src = SRC_BUF_LIVE;
        top->ts = reader_cursor_peek_ts(&l->c);
    } else {
        if (l->c.left == 0)
            release(o, l);
        uint64_t ts;
        if (thread_key(o, t, &ts))
            top->ts = ts;
        else
            *top = o->heap[--o->nheap];
    }
    /* Sift only when a child now comes first (with few threads, mostly it does not). */
    if (o->nheap > 1 &&
        (hent_less(&o->heap[1], top) || (o->nheap > 2 && hent_less(&o->heap[2], top))))
        sift_down(o, 0);
    return 1;
}

/* One item of the non-event record being yielded, read again by the second reader. */
static int next_record_item(struct order *o, struct rd_item *item)
{
    int rc = reader_next(o->recs, item);
    if (rc == 1) {
        o->rec_left--;
        return 1;
    }
    if (rc < 0)
        return adopt(o, o->recs, rc);
    return fail(o, RD_ERR_CORRUPT, "offset %" PRIu64 ": record changed since it was indexed",
                o->rix[o->rec_next - 1].off);
}

int order_next(struct order *o, struct rd_item *item)
{
    for (;;) {
        if (o->err)
            return o->err;
        if (o->rec_left > 0)
            return next_record_item(o, item);
        int have_rec = o->rec_next < o->nrecs;
        if (o->nheap == 0 && !have_rec) {
            o->finished = 1;
            return o->scan_rc;
        }
        if (have_rec) {
            const struct rec_ix *r = &o->rix[o->rec_next];
            if (o->nheap == 0 || r->key < o->heap[0].ts || (r->key == o->heap[0].ts && r->before)) {
                o->rec_next++;
                int rc = reader_seek(o->recs, r->off);
                if (rc != 0)
                    return adopt(o, o->recs, rc);
                o->rec_left = r->items;
                continue;
            }
        }
        return next_event(o, item);
    }
}

/* ---- opening and closing -------------------------------------------------------------------- */

/* The index pass and the merge set-up, once o->scan is open. */
static int prepare(struct order *o)
{
    if (index_pass(o) != 0 || build_threads(o) != 0)
        return o->err;
    o->st = *reader_status(o->scan);
    build_heap(o);
    return 0;
}

/* An open failure of the reader: reported as it reported it. */
static int open_failed(struct order *o, int rc)
{
    o->scan_rc = rc;
    o->finished = 1;
    if (o->scan != NULL)
        o->st = *reader_status(o->scan);
    return rc;
}

int order_open_mem(struct order **out, const void *data, size_t size)
{
    struct order *o = calloc(1, sizeof(*o));
    *out = o;
    if (o == NULL)
        return RD_ERR_NOMEM;
    static const uint8_t none;
    o->mem = data != NULL ? data : &none;
    int rc = reader_open_mem(&o->scan, data, size);
    if (rc != 0)
        return open_failed(o, rc);
    if ((rc = prepare(o)) != 0)
        return rc;
    if ((rc = reader_open_mem(&o->recs, data, size)) != 0)
        return o->recs ? adopt(o, o->recs, rc) : fail(o, rc, "out of memory");
    return 0;
}

/* Copy a stream that cannot be read twice to a temporary file. The file or NULL (o->msg set). */
static FILE *spool(struct order *o, FILE *in, const char *name)
{
    FILE *tmp = tmpfile();
    char *buf = malloc(COPY_CHUNK);
    if (tmp == NULL || buf == NULL) {
        snprintf(o->msg, sizeof(o->msg), "%s: cannot create a temporary copy: %s", name,
                 strerror(errno));
        goto fail;
    }
    size_t k;
    while ((k = fread(buf, 1, COPY_CHUNK, in)) > 0)
        if (fwrite(buf, 1, k, tmp) != k) {
            snprintf(o->msg, sizeof(o->msg), "%s: writing the temporary copy failed: %s", name,
                     strerror(errno));
            goto fail;
        }
    if (ferror(in)) {
        snprintf(o->msg, sizeof(o->msg), "%s: read failed: %s", name, strerror(errno));
        goto fail;
    }
    if (fflush(tmp) != 0 || fseeko(tmp, 0, SEEK_SET) != 0) {
        snprintf(o->msg, sizeof(o->msg), "%s: temporary copy failed: %s", name, strerror(errno));
        goto fail;
    }
    free(buf);
    return tmp;
fail:
    free(buf);
    if (tmp != NULL)
        fclose(tmp);
    return NULL;
}

int order_open(struct order **out, const char *path)
{
    struct order *o = calloc(1, sizeof(*o));
    *out = o;
    if (o == NULL)
        return RD_ERR_NOMEM;
    int is_stdin = strcmp(path, "-") == 0;
    const char *name = is_stdin ? "<stdin>" : path;
    FILE *in = is_stdin ? stdin : fopen(path, "rb");
    if (in == NULL) /* the reader fails the same way and says so its way */
        return open_failed(o, reader_open(&o->scan, path));
    struct stat sb;
    if (!is_stdin && fstat(fileno(in), &sb) == 0 && S_ISREG(sb.st_mode)) {
        o->f = in;
    } else {
        o->f = spool(o, in, name);
        if (in != stdin)
            fclose(in);
        if (o->f == NULL) {
            o->scan_rc = o->err = RD_ERR_IO;
            o->finished = 1;
            return RD_ERR_IO;
        }
    }
    int rc = reader_open_stream(&o->scan, o->f, name);
    if (rc != 0)
        return open_failed(o, rc);
    if ((rc = prepare(o)) != 0)
        return rc;
    if (fseeko(o->f, 0, SEEK_SET) != 0)
        return fail(o, RD_ERR_IO, "seek failed: %s", strerror(errno));
    if ((rc = reader_open_stream(&o->recs, o->f, name)) != 0)
        return o->recs ? adopt(o, o->recs, rc) : fail(o, rc, "out of memory");
    return 0;
}

const struct rd_status *order_status(const struct order *o)
{
    return &o->st;
}

const char *order_error(const struct order *o)
{
    if (o->err)
        return o->msg;
    if (o->finished && o->scan_rc != 0 && o->scan != NULL)
        return reader_error(o->scan);
    return "";
}

uint64_t order_late_stacks(const struct order *o)
{
    return o->late_stacks;
}

void order_close(struct order *o)
{
    if (o == NULL)
        return;
    reader_close(o->scan);
    reader_close(o->recs);
    if (o->f != NULL)
        fclose(o->f);
    for (size_t i = 0; i < o->nthreads; i++) {
        free(o->threads[i].bc.buf);
        free(o->threads[i].wc.buf);
    }
    for (size_t i = 0; i < o->npool; i++)
        free(o->pool[i].p);
    free(o->pool);
    free(o->threads);
    free(o->heap);
    free(o->chunks);
    free(o->rix);
    free(o->defined);
    free(o->zin);
    reader_inflate_free(o->zctx);
    free(o);
}
