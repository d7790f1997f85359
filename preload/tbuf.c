/* Per-thread buffers and their hand-over to the writer.
 *
 * Buffer protocol (one owner, any number of occasional stealers):
 *  - the owner appends encoded events at buf[len] and publishes the new `len` (release);
 *  - `claim` = epoch << 32 | done: bytes [0, done) of generation `epoch` were written by a
 *    stealer; the owner writes [done, len) at its next flush;
 *  - the owner flushes by zeroing `len` and exchanging `claim` for (epoch + 1, 0) before it
 *    reuses the buffer; a stealer copies [done, len) and keeps its copy only if its CAS on
 *    `claim` from (epoch, done) to (epoch, len) succeeds, which proves the owner did not start a
 *    new generation while it copied (seqlock-style validation).
 * Every chunk carries the decoder state at its first byte, so the two halves of a split buffer
 * decode independently; a scan of our own encoding finds the state at the split.
 */
#include "tbuf.h"

#include <errno.h>
#include <limits.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_estimateCCtxSize, ZSTD_initStaticCCtx: no malloc */
#include <zstd.h>

#include "clock.h"
#include "config.h"
#include "encode.h"
#include "guard.h"
#include "log.h"
#include "memtrace/format.h"
#include "mt.h"
#include "pages.h"
#include "stack.h"
#include "unwind.h"
#include "writer.h"

__thread struct mt_tls mt_tls __attribute__((tls_model("initial-exec")));

#define T_ACTIVE  1
#define T_RETIRED 2

#define PENDING_MAX 256
#define MARGIN      (MTF_EVENT_MAX_BYTES + MT_STACK_DEF_MAX) /* room one event may need */

#define ZLEVEL     1    /* zstd level for MEMTRACE_COMPRESS=1: the fastest regular level */
#define ZMIN_BYTES 1024 /* smaller chunks are written raw: a frame's overhead eats the gain */
#define Z_NONE     0    /* zstate: no context yet */
#define Z_READY    1
#define Z_FAILED   2 /* could not map one: this buffer's chunks are written raw */

struct mt_thread {
    struct mt_thread_head head; /* first: tbuf.h reads the heap cell through it */
    struct mt_thread *next;     /* registry link; immutable once published */
    _Atomic uint32_t state;     /* T_ACTIVE or T_RETIRED (reusable) */
    uint32_t tid, serial;
    uint8_t *buf;
    uint32_t cap;
    _Atomic uint32_t len;        /* published bytes of the current generation */
    _Atomic uint64_t claim;      /* epoch << 32 | bytes already written by a stealer */
    uint32_t epoch;              /* owner's copy of the current generation */
    struct mt_enc_state st;      /* after the last appended event */
    uint64_t base_ts, base_addr; /* state at offset 0 of the generation; read by stealers */
    uint32_t base_stack;
    uint64_t first_ts;
    uint32_t nevents;
    uint32_t rounds;  /* thread-exit destructor calls so far */
    uint32_t preinit; /* the generation holds events from before the trace was open */
    uint32_t npending;
    struct mt_stack_node *pending[PENDING_MAX]; /* defined in this generation, not yet marked */
    uint64_t gen_counts[MTF_EV_KIND_COUNT];     /* events of the current generation, per kind */
    struct mt_stack_cache cache;
    struct mt_unwind_memo memo;      /* the thread's previous stack walk (unwind.h) */
    struct mt_stack_node *last_node; /* what that walk's frames interned to */
    uint32_t zstate; /* Z_*: MEMTRACE_COMPRESS context, made at the first owner flush */
    ZSTD_CCtx *zctx; /* static zstd context inside zmem (never mallocs), kept on reuse */
    uint8_t *zout;   /* compressed events, cap - 1 bytes (inside zmem) */
};

static _Atomic(struct mt_thread *) registry;
static _Atomic uint32_t serials;
static atomic_int final_mode;
static _Atomic uint64_t dropped;
static _Atomic uint64_t written[MTF_EV_KIND_COUNT]; /* events in chunks written, per kind */
static atomic_int writes_in_flight; /* chunk writes under way (the finisher waits for them) */
static pthread_key_t exit_key;
static _Atomic uint32_t adoptions; /* buffers taken by threads in this process image */

struct mt_stamp_solo mt_stamp_solo;
static int have_key;

void (*mt_tbuf_open_trace)(void);

static uint32_t gettid_cached(void)
{
    if (mt_tls.tid == 0)
        mt_tls.tid = (uint32_t)syscall(SYS_gettid);
    return mt_tls.tid;
}

static void thread_exit(void *arg);

void mt_tbuf_init(void)
{
    if (!have_key && pthread_key_create(&exit_key, thread_exit) == 0)
        have_key = 1;
    /* needed once before MEMBARRIER_CMD_PRIVATE_EXPEDITED can be used (Linux >= 4.14) */
    syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0);
}

uint64_t mt_tbuf_dropped(void)
{
    return atomic_load(&dropped);
}

void mt_tbuf_set_final(int on)
{
    atomic_store(&final_mode, on);
    if (on) {
        /* Every other thread either sees final_mode at its next check, or its last published
         * `len` is visible to our steal: the expedited membarrier is the full fence their
         * fast path leaves out (pitfall: a store followed by a load may be reordered). */
        if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
            atomic_thread_fence(memory_order_seq_cst);
    }
}

/* ---- generations ------------------------------------------------------------------------- */

static void start_generation(struct mt_thread *t)
{
    __atomic_store_n(&t->base_ts, t->st.ts, __ATOMIC_RELAXED);
    __atomic_store_n(&t->base_addr, t->st.addr, __ATOMIC_RELAXED);
    __atomic_store_n(&t->base_stack, t->st.stack, __ATOMIC_RELAXED);
    t->nevents = 0;
    t->first_ts = 0;
    memset(t->gen_counts, 0, sizeof t->gen_counts);
}

/* Map t's compression context and output buffer (MEMTRACE_COMPRESS=1), once per buffer: a
 * static zstd context in raw mapped memory, so compressing never calls malloc. */
static int zsetup(struct mt_thread *t)
{
    if (t->zstate != Z_NONE)
        return t->zstate == Z_READY ? 0 : -1;
    t->zstate = Z_FAILED;
    size_t ws = (ZSTD_estimateCCtxSize(ZLEVEL) + 4095) & ~(size_t)4095;
    size_t len = ws + (((size_t)t->cap + 4095) & ~(size_t)4095);
    uint8_t *mem = mt_pages_map(len, 0);
    if (mem == NULL)
        return -1;
    t->zctx = ZSTD_initStaticCCtx(mem, ws);
    if (t->zctx == NULL) {
        mt_pages_unmap(mem, len);
        return -1;
    }
    t->zout = mem + ws;
    t->zstate = Z_READY;
    return 0;
}

/* Compress `size` bytes of events with t's context into t->zout (trace-format.md §7.5).
 * Returns the compressed size, or 0 when compression is off, fails or does not shrink them. */
static uint32_t zpack(struct mt_thread *t, const uint8_t *events, uint32_t size)
{
    if (!mt_config.compress || size < ZMIN_BYTES || size > t->cap || zsetup(t) != 0)
        return 0;
    size_t n = ZSTD_compressCCtx(t->zctx, t->zout, size - 1, events, size, ZLEVEL);
    return ZSTD_isError(n) ? 0 : (uint32_t)n;
}

/* Write one chunk. `z` is the calling owner's state when the events may be compressed with its
 * context (owner flushes only: stolen and write-through chunks are written raw), else NULL. */
static int write_chunk(struct mt_thread *t, uint32_t epoch, uint32_t offset,
                       const struct mt_enc_state *base, const struct mt_scan *sc,
                       const uint8_t *events, uint32_t size, uint32_t flags, struct mt_thread *z)
{
    uint32_t packed = z != NULL ? zpack(z, events, size) : 0;
    struct mtf_chunk c;
    memset(&c, 0, sizeof c);
    c.tid = t->tid;
    c.thread_serial = t->serial;
    c.epoch = epoch;
    c.offset = offset;
    c.base_ts_ns = base->ts;
    c.base_addr = base->addr;
    c.base_stack = base->stack;
    c.first_ts_ns = sc->first_ts;
    c.last_ts_ns = sc->last_ts;
    c.nevents = sc->nevents;
    c.flags = flags;
    c.events_size = size;
    struct iovec v[2] = { { &c, sizeof c }, { (void *)events, size } };
    if (packed != 0) {
        c.flags |= MTF_CHUNKF_ZSTD;
        v[1] = (struct iovec){ z->zout, packed };
    }
    atomic_fetch_add(&writes_in_flight, 1);
    int rc = mt_writer_record(MTF_REC_EVENTS, v, 2);
    atomic_fetch_sub(&writes_in_flight, 1);
    if (rc != 0) {
        /* dropped counts the program's calls; stack definitions are ours */
        atomic_fetch_add(&dropped, sc->nevents - sc->counts[MTF_EV_STACK]);
        return -1;
    }
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++)
        if (sc->counts[k])
            atomic_fetch_add_explicit(&written[k], sc->counts[k], memory_order_relaxed);
    return 0;
}

static void ensure_open(void)
{
    if (!mt_writer_ok() && !mt_writer_failed() && mt_tbuf_open_trace != NULL)
        mt_tbuf_open_trace();
}

/* Owner flush: write what no stealer took, then start a new generation. */
static void flush_thread(struct mt_thread *t, uint32_t flags)
{
    uint32_t len = atomic_load_explicit(&t->len, memory_order_relaxed);
    if (len == 0 && atomic_load(&t->claim) >> 32 == t->epoch && t->nevents == 0 &&
        !(flags & MTF_CHUNKF_THREAD_END))
        return;
    ensure_open();
    atomic_store_explicit(&t->len, 0, memory_order_release);
    uint64_t old = atomic_exchange(&t->claim, (uint64_t)(t->epoch + 1) << 32);
    uint32_t done = (uint32_t)old;
    int ok = 1;
    if (done < len) {
        struct mt_enc_state base = { t->base_ts, t->base_addr, t->base_stack };
        struct mt_scan sc;
        if (done == 0) {
            memset(&sc, 0, sizeof sc);
            sc.nevents = t->nevents;
            sc.first_ts = t->first_ts;
            sc.last_ts = t->st.ts;
            memcpy(sc.counts, t->gen_counts, sizeof sc.counts);
        } else {
            struct mt_scan skip;
            if (mt_enc_scan(t->buf, done, &base, &skip) != 0) /* base becomes the state at done */
                mt_fatal(134, "internal error: unreadable event buffer (thread %u)", t->tid);
            struct mt_enc_state probe = base;
            if (mt_enc_scan(t->buf + done, len - done, &probe, &sc) != 0)
                mt_fatal(134, "internal error: unreadable event buffer (thread %u)", t->tid);
        }
        if (t->preinit)
            flags |= MTF_CHUNKF_PREINIT;
        ok = write_chunk(t, t->epoch, done, &base, &sc, t->buf + done, len - done, flags, t) == 0;
    } else if (flags & MTF_CHUNKF_THREAD_END) {
        /* nothing left to write, but the reader learns that the thread ended */
        struct mt_enc_state base = { t->st.ts, t->st.addr, t->st.stack };
        struct mt_scan none;
        memset(&none, 0, sizeof none);
        ok = write_chunk(t, t->epoch, len, &base, &none, t->buf, 0, flags, NULL) == 0;
    }
    if (ok)
        for (uint32_t i = 0; i < t->npending; i++)
            mt_stack_mark_written(t->pending[i]);
    t->npending = 0;
    t->preinit = !mt_writer_ok() && !mt_writer_failed();
    t->epoch++;
    start_generation(t);
}

/* Take over another thread's unflushed events (docs at the top of this file). */
static void steal(struct mt_thread *t)
{
    uint64_t c = atomic_load_explicit(&t->claim, memory_order_acquire);
    uint32_t epoch = (uint32_t)(c >> 32), done = (uint32_t)c;
    uint32_t len = atomic_load_explicit(&t->len, memory_order_acquire);
    if (len <= done || len > t->cap)
        return;
    struct mt_enc_state base = { __atomic_load_n(&t->base_ts, __ATOMIC_RELAXED),
                                 __atomic_load_n(&t->base_addr, __ATOMIC_RELAXED),
                                 __atomic_load_n(&t->base_stack, __ATOMIC_RELAXED) };
    size_t map_len = ((size_t)len + 4095) & ~(size_t)4095;
    uint8_t *copy = mt_pages_map(map_len, 0);
    if (copy == NULL)
        return;
    memcpy(copy, t->buf, len);
    /* The owner's identity, read before the CAS: once it succeeds no flush, retirement or new
     * owner can have happened since we loaded `claim`, but one may happen right after. */
    struct mt_thread who;
    who.tid = __atomic_load_n(&t->tid, __ATOMIC_RELAXED);
    who.serial = __atomic_load_n(&t->serial, __ATOMIC_RELAXED);
    uint64_t want = ((uint64_t)epoch << 32) | len;
    if (atomic_compare_exchange_strong(&t->claim, &c, want)) {
        struct mt_scan skip, sc;
        if (mt_enc_scan(copy, done, &base, &skip) == 0) {
            struct mt_enc_state at = base;
            if (mt_enc_scan(copy + done, len - done, &at, &sc) == 0)
                (void)write_chunk(&who, epoch, done, &base, &sc, copy + done, len - done,
                                  MTF_CHUNKF_STOLEN, NULL);
        }
    }
    mt_pages_unmap(copy, map_len);
}

/* ---- thread state ------------------------------------------------------------------------ */

static struct mt_thread *thread_new(void)
{
    for (struct mt_thread *t = atomic_load(&registry); t; t = t->next) {
        uint32_t expect = T_RETIRED;
        if (atomic_load(&t->state) == T_RETIRED &&
            atomic_compare_exchange_strong(&t->state, &expect, T_ACTIVE))
            return t;
    }
    uint32_t cap = mt_config.buffer_bytes ? mt_config.buffer_bytes : MT_DEFAULT_BUFFER_BYTES;
    size_t head = (sizeof(struct mt_thread) + 4095) & ~(size_t)4095;
    unsigned char *mem = mt_pages_map(head + cap, 0);
    if (mem == NULL)
        return NULL;
    struct mt_thread *t = (struct mt_thread *)mem;
    t->buf = mem + head;
    t->cap = cap;
    atomic_store(&t->state, T_ACTIVE);
    struct mt_thread *old = atomic_load(&registry);
    do {
        t->next = old;
    } while (!atomic_compare_exchange_weak(&registry, &old, t));
    return t;
}

/* Reset a state for a new owner (the calling thread). Counts stay: they are cumulative. */
static void thread_adopt(struct mt_thread *t)
{
    /* The first buffer of the process image may share stamps (tbuf.h); a second ends that
     * before its thread stores any event. */
    if (atomic_fetch_add(&adoptions, 1) == 0)
        __atomic_store_n(&mt_stamp_solo.owner, t, __ATOMIC_SEQ_CST);
    else
        __atomic_store_n(&mt_stamp_solo.owner, NULL, __ATOMIC_SEQ_CST);
    t->tid = gettid_cached();
    if (mt_tls.serial == 0)
        mt_tls.serial = atomic_fetch_add(&serials, 1) + 1;
    t->serial = mt_tls.serial;
    atomic_store(&t->len, 0);
    /* A stealer may still hold a claim word read from the previous owner: a fresh epoch (never
     * reset to 0) makes its CAS fail instead of matching by accident. */
    t->epoch++;
    atomic_store(&t->claim, (uint64_t)t->epoch << 32);
    memset(&t->st, 0, sizeof t->st);
    t->npending = 0;
    t->rounds = 0;
    t->preinit = !mt_writer_ok() && !mt_writer_failed();
    mt_stack_cache_clear(&t->cache);
    mt_unwind_memo_clear(&t->memo);
    t->last_node = NULL;
    start_generation(t);
}

static struct mt_thread *thread_get(void)
{
    struct mt_thread *t = mt_tls.thread;
    if (MT_LIKELY(t != NULL))
        return t;
    if (mt_tls.mode == MT_TMODE_WRITETHROUGH)
        return NULL;
    t = thread_new();
    if (t == NULL) {
        mt_tls.mode = MT_TMODE_WRITETHROUGH;
        mt_log_warn("cannot map an event buffer for thread %u: writing its events one by one",
                    gettid_cached());
        return NULL;
    }
    thread_adopt(t);
    mt_tls.thread = t;
    if (have_key) {
        uint32_t saved = mt_tls.in;
        mt_guard_set(MT_IN_SHIM); /* pthread_setspecific may allocate for high keys */
        pthread_setspecific(exit_key, t);
        mt_guard_set(saved);
    }
    return t;
}

static void thread_retire(struct mt_thread *t)
{
    mt_tls.wt_epoch = t->epoch; /* flush_thread already moved past the last written one */
    mt_tls.wt_offset = 0;
    mt_tls.thread = NULL;
    mt_tls.mode = MT_TMODE_WRITETHROUGH;
    atomic_store(&t->state, T_RETIRED);
}

/* Key destructor. Re-arms itself so that it runs in the last destructor round, after the
 * program's own key destructors (which may free), then retires the buffer; anything the
 * thread does after that is written through (pitfalls.md §6). */
static void thread_exit(void *arg)
{
    struct mt_thread *t = arg;
    if (t == NULL || mt_tls.thread != t)
        return;
    uint32_t saved = mt_tls.in;
    mt_guard_set(MT_IN_HOOK);
    t->rounds++;
    if (t->rounds < PTHREAD_DESTRUCTOR_ITERATIONS) {
        /* not the last round yet: keep buffering what other destructors free */
        mt_guard_set(MT_IN_SHIM);
        pthread_setspecific(exit_key, t);
    } else {
        flush_thread(t, MTF_CHUNKF_THREAD_END);
        thread_retire(t);
    }
    mt_guard_set(saved);
}

/* ---- recording ----------------------------------------------------------------------------- */

static struct mt_stack_node *capture(struct mt_thread *t, const struct mt_unwind_origin *origin)
{
    struct mt_stack_cache *cache = t != NULL ? &t->cache : NULL;
    uint64_t frames[MTF_MAX_FRAMES_LIMIT];
    int trunc = 0;
    uint32_t saved = mt_tls.in;
    mt_guard_set(MT_IN_SHIM); /* libunwind may mmap or malloc: those calls are ours */
    uint32_t max = mt_config.max_frames ? mt_config.max_frames : MT_DEFAULT_MAX_FRAMES;
    uint32_t n = mt_unwind_capture_memo(frames, max, &trunc, t != NULL ? &t->memo : NULL, origin);
    struct mt_stack_node *node;
    if (t != NULL && t->memo.same && t->last_node != NULL) {
        node = t->last_node; /* the walk proved the frames equal to the last capture's */
    } else {
        node = mt_stack_intern(cache, frames, n, trunc, NULL);
        if (t != NULL)
            t->last_node = node;
    }
    mt_guard_set(saved);
    return node;
}

struct mt_stack_node *mt_tbuf_capture(void)
{
    struct mt_thread *t =
        atomic_load_explicit(&final_mode, memory_order_relaxed) ? NULL : thread_get();
    return capture(t, NULL);
}

struct mt_stack_node *mt_tbuf_capture_from(const struct mt_unwind_origin *origin)
{
    struct mt_thread *t =
        atomic_load_explicit(&final_mode, memory_order_relaxed) ? NULL : thread_get();
    return capture(t, origin);
}

static uint8_t *put_stack_def(uint8_t *p, struct mt_enc_state *s, uint64_t ts,
                              const struct mt_stack_node *node)
{
    p = mt_put_head(p, s, MTF_EV_STACK, mt_stack_truncated(node) ? MTF_EVF_TRUNC : 0, ts);
    p = mt_put_varint(p, mt_stack_id(node));
    uint32_t n = mt_stack_nframes(node);
    const uint64_t *f = mt_stack_frames(node);
    p = mt_put_varint(p, n);
    uint64_t prev = 0;
    for (uint32_t i = 0; i < n; i++) {
        p = mt_put_varint(p, mt_zigzag(f[i] - prev));
        prev = f[i];
    }
    return p;
}

static uint8_t *put_fields(uint8_t *p, struct mt_enc_state *s, unsigned kind,
                           const uint64_t *fields, uint32_t stack)
{
    /* the two kinds of nearly every event, spelled out; the layout string for the rest */
    if (MT_LIKELY(kind == MTF_EV_FREE))
        return mt_put_addr(p, s, fields[0]);
    if (MT_LIKELY(kind == MTF_EV_MALLOC)) {
        p = mt_put_addr(p, s, fields[0]);
        p = mt_put_varint(p, fields[1]);
        p = mt_put_varint(p, fields[2]);
        return mt_put_stack(p, s, stack);
    }
    const char *lay = mt_enc_layout[kind];
    for (int i = 0; *lay; lay++) {
        if (*lay == 'a')
            p = mt_put_addr(p, s, fields[i++]);
        else if (*lay == 'v')
            p = mt_put_varint(p, fields[i++]);
        else if (*lay == 'b') {
            uint64_t n = fields[i] > MTF_LABEL_MAX ? MTF_LABEL_MAX : fields[i];
            p = mt_put_varint(p, n);
            memcpy(p, (const void *)(uintptr_t)fields[i + 1], n);
            p += n;
            i += 2;
        } else if (*lay == 's')
            p = mt_put_stack(p, s, stack);
    }
    return p;
}

/* Kinds whose layout has a stack field ('s'): a bit per kind, so the check costs no strchr. */
static uint32_t stack_kinds;

static int has_stack(unsigned kind)
{
    if (MT_UNLIKELY(stack_kinds == 0)) {
        uint32_t k = 0;
        for (unsigned i = 0; i < MTF_EV_KIND_COUNT; i++)
            if (mt_enc_layout[i] != NULL && strchr(mt_enc_layout[i], 's') != NULL)
                k |= 1U << i;
        __atomic_store_n(&stack_kinds, k, __ATOMIC_RELAXED);
    }
    return (__atomic_load_n(&stack_kinds, __ATOMIC_RELAXED) >> kind) & 1;
}

/* Encode one event (and a stack definition when needed) into a private buffer and write it as
 * its own chunk: for nested contexts and for threads whose buffer is gone. */
static void write_through(unsigned kind, unsigned flags, uint64_t ts, const uint64_t *fields,
                          int with_stack, struct mt_stack_node *given)
{
    if (mt_writer_failed()) {
        atomic_fetch_add(&dropped, 1);
        return;
    }
    ensure_open();
    uint8_t ev[MARGIN];
    struct mt_enc_state s = { 0, 0, 0 }, base = s;
    struct mt_stack_node *node = NULL;
    uint8_t *p = ev;
    struct mt_scan sc;
    memset(&sc, 0, sizeof sc);
    if (with_stack && has_stack(kind)) {
        node = given != MT_TBUF_CAPTURE ? given : capture(NULL, NULL);
        if (node != NULL && !mt_stack_written(node)) {
            p = put_stack_def(p, &s, ts, node);
            sc.nevents++;
            sc.counts[MTF_EV_STACK]++;
        }
    }
    p = mt_put_head(p, &s, kind, flags, ts);
    p = put_fields(p, &s, kind, fields, node ? mt_stack_id(node) : 0);
    sc.nevents++;
    sc.counts[kind]++;
    sc.first_ts = sc.last_ts = ts;
    struct mt_thread pseudo; /* only the identity fields are read by write_chunk */
    pseudo.tid = gettid_cached();
    if (mt_tls.serial == 0)
        mt_tls.serial = atomic_fetch_add(&serials, 1) + 1;
    pseudo.serial = mt_tls.serial;
    /* Where the event falls among the thread's buffered ones (trace-format.md §10): at the
     * buffer's current end, or after everything once the buffer is gone. */
    uint32_t epoch, offset;
    struct mt_thread *own = mt_tls.thread;
    if (own != NULL) {
        epoch = own->epoch;
        offset = atomic_load_explicit(&own->len, memory_order_relaxed);
    } else {
        epoch = mt_tls.wt_epoch;
        offset = mt_tls.wt_offset++;
    }
    if (write_chunk(&pseudo, epoch, offset, &base, &sc, ev, (uint32_t)(p - ev),
                    MTF_CHUNKF_WRITETHROUGH, NULL) == 0 &&
        node != NULL)
        mt_stack_mark_written(node);
}

void mt_tbuf_nested(unsigned kind, unsigned flags, uint64_t ts, const uint64_t *fields)
{
    write_through(kind, flags | MTF_EVF_NESTED, ts, fields, 0, NULL);
}

void mt_tbuf_event(unsigned kind, unsigned flags, uint64_t ts, const uint64_t *fields)
{
    mt_tbuf_event_at(kind, flags, ts, fields, MT_TBUF_CAPTURE);
}

void mt_tbuf_event_at(unsigned kind, unsigned flags, uint64_t ts, const uint64_t *fields,
                      struct mt_stack_node *node)
{
    if (MT_UNLIKELY(mt_writer_failed())) {
        atomic_fetch_add(&dropped, 1);
        return;
    }
    struct mt_thread *t =
        atomic_load_explicit(&final_mode, memory_order_relaxed) ? NULL : thread_get();
    if (MT_UNLIKELY(t == NULL)) {
        write_through(kind, flags, ts, fields, 1, node);
        return;
    }
    uint32_t len = atomic_load_explicit(&t->len, memory_order_relaxed);
    if (MT_UNLIKELY(t->cap - len < MARGIN || t->npending == PENDING_MAX)) {
        flush_thread(t, 0);
        len = 0;
    }
    /* A thread's times never go back in its buffer (the encoding stores forward deltas): a
     * shared stamp (tbuf.h) may be older than a clock read stored before it. */
    if (MT_UNLIKELY(ts < t->st.ts))
        ts = t->st.ts;
    uint8_t *start = t->buf + len, *p = start;
    uint32_t stack = 0;
    if (has_stack(kind)) {
        if (node == MT_TBUF_CAPTURE)
            node = capture(t, NULL);
        if (node != NULL) {
            stack = mt_stack_id(node);
            /* mark = generation + 1 in which this thread defined the stack; a node captured
             * earlier may have left the cache since, and is then defined again (allowed) */
            unsigned slot = mt_stack_slot(node);
            int cached = t->cache.node[slot] == node;
            if (!mt_stack_written(node) && (!cached || t->cache.mark[slot] != t->epoch + 1)) {
                if (t->nevents == 0)
                    t->first_ts = ts;
                p = put_stack_def(p, &t->st, ts, node);
                t->nevents++;
                t->gen_counts[MTF_EV_STACK]++;
                if (cached)
                    t->cache.mark[slot] = t->epoch + 1;
                t->pending[t->npending++] = node;
            }
        }
    }
    if (t->nevents == 0)
        t->first_ts = ts;
    p = mt_put_head(p, &t->st, kind, flags, ts);
    p = put_fields(p, &t->st, kind, fields, stack);
    t->nevents++;
    t->gen_counts[kind]++;
    atomic_store_explicit(&t->len, len + (uint32_t)(p - start), memory_order_release);
    /* The process began to end while we appended: the finisher may already have taken this
     * buffer, so write the rest ourselves (the claim word keeps the two from overlapping).
     * mt_tbuf_final_barrier() makes this check and the store above visible in order. */
    if (MT_UNLIKELY(atomic_load_explicit(&final_mode, memory_order_relaxed)))
        flush_thread(t, 0);
}

_Static_assert(offsetof(struct mt_thread, head) == 0, "tbuf.h reads the head at offset 0");

int64_t mt_tbuf_heap_sum(void)
{
    int64_t sum = 0;
    for (struct mt_thread *t = atomic_load(&registry); t; t = t->next)
        sum += __atomic_load_n(&t->head.heap_cell, __ATOMIC_RELAXED);
    return sum;
}

void mt_tbuf_flush_self(void)
{
    struct mt_thread *t = mt_tls.thread;
    if (t != NULL)
        flush_thread(t, 0);
    else
        ensure_open();
}

void mt_tbuf_flush_all(void)
{
    mt_tbuf_flush_self();
    for (struct mt_thread *t = atomic_load(&registry); t; t = t->next)
        if (t != mt_tls.thread && atomic_load(&t->state) == T_ACTIVE)
            steal(t);
    /* Another thread may be in the middle of writing a full buffer: exit_group would cut a
     * multi-page write short and leave a torn record, so give it a moment (bounded). */
    for (int i = 0; i < 2000 && atomic_load(&writes_in_flight) > 0; i++) {
        struct timespec nap = { 0, 100000 };
        syscall(SYS_nanosleep, &nap, NULL);
    }
}

int mt_tbuf_write_end(uint32_t reason, int32_t status)
{
    struct mtf_end e;
    memset(&e, 0, sizeof e);
    e.ts_ns = mt_clock_ns();
    e.reason = reason;
    e.status = status;
    e.threads = atomic_load(&serials);
    /* Counted when their chunk was written, so END never claims an event the file lacks even
     * while other threads still run. */
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++) {
        e.counts[k] = atomic_load(&written[k]);
        e.events += e.counts[k];
    }
    e.dropped = atomic_load(&dropped);
    struct iovec v = { &e, sizeof e };
    return mt_writer_record(MTF_REC_END, &v, 1);
}

void mt_tbuf_fork_child(void)
{
    struct mt_thread *self = mt_tls.thread;
    mt_tls.tid = 0;
    mt_tls.serial = 0;
    atomic_store(&serials, 0);
    atomic_store(&dropped, 0);
    atomic_store(&final_mode, 0);
    atomic_store(&writes_in_flight, 0);
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++)
        atomic_store(&written[k], 0);
    for (struct mt_thread *t = atomic_load(&registry); t; t = t->next)
        if (t != self)
            atomic_store(&t->state, T_RETIRED); /* its thread does not exist here */
    atomic_store(&adoptions, 0);                /* one thread again: its buffer may share stamps */
    __atomic_store_n(&mt_stamp_solo.owner, NULL, __ATOMIC_SEQ_CST);
    mt_stamp_solo.n = 0;
    if (self != NULL)
        thread_adopt(self); /* the parent's buffered events are the parent's to write */
}
