/* preload/tbuf.c: per-thread buffers, chunk framing and the steal protocol, checked by writing a
 * real trace in a temporary directory and decoding it with report/reader.c. Each test sets the
 * shim up as init.c does (real, stack, unwind, config, tbuf, writer) and records events the way
 * hooks do (guard in MT_IN_HOOK around mt_tbuf_event). The runner links the preload objects, so
 * "the shim's frames" are the runner's own: captured stacks hold only libcriterion and libc
 * frames. Call events carry a sequence number in their size or pointer field, so order and
 * uniqueness can be checked across owner, stolen and write-through chunks.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/parameterized.h>
#include <criterion/redirect.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "encode.h"
#include "guard.h"
#include "helpers.h"
#include "log.h"
#include "memtrace/format.h"
#include "reader.h"
#include "real.h"
#include "stack.h"
#include "tbuf.h"
#include "unwind.h"
#include "writer.h"

/* ---- fixture --------------------------------------------------------------------------------- */

static char tb_dir[PATH_MAX];        /* this test's temporary directory */
static char tb_trace[PATH_MAX + 32]; /* tb_dir/t.mtrace */

/* Everything init.c does before the trace is opened, with the default configuration. */
static void tb_setup(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[PATH_MAX];
    snprintf(tmpl, sizeof tmpl, "%s/mt-tbuf-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(ne(ptr, mkdtemp(tmpl), NULL), "mkdtemp %s: %s", tmpl, strerror(errno));
    cr_assert(ne(ptr, realpath(tmpl, tb_dir), NULL));
    snprintf(tb_trace, sizeof tb_trace, "%s/t.mtrace", tb_dir);
    mt_writer_sys_default();
    mt_log_reset();
    mt_real_init();
    cr_assert(eq(int, mt_stack_init(), 0));
    mt_unwind_init();
    char err[256];
    cr_assert(eq(int, mt_config_parse(&mt_config, (char *[]){ NULL }, err, sizeof err), 0), "%s",
              err);
    mt_tbuf_init();
}

static int tb_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void tb_teardown(void)
{
    mt_writer_sys_default();
    if (tb_dir[0])
        nftw(tb_dir, tb_rm, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(tbuf, .init = tb_setup, .fini = tb_teardown, .timeout = 60);

/* ---- recording ------------------------------------------------------------------------------- */

/* Open tb_dir/<name> as the trace, with per-thread buffers of `buffer_bytes`. */
static void tb_open(const char *name, uint32_t buffer_bytes, uint32_t origin)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", tb_dir, name);
    mt_config.buffer_bytes = buffer_bytes;
    int rc = mt_writer_open(path, origin, mt_config.max_frames);
    cr_assert(eq(int, rc, 0), "mt_writer_open(%s) = %d", path, rc);
}

/* One call as a hook records it. */
static __attribute__((noinline)) void tb_record(unsigned kind, unsigned flags, uint64_t ts,
                                                const uint64_t *fields)
{
    mt_guard_set(MT_IN_HOOK);
    mt_tbuf_event(kind, flags, ts, fields);
    mt_guard_set(MT_IN_NONE);
}

static void tb_malloc(uint64_t ptr, uint64_t size, uint64_t ts)
{
    uint64_t f[2] = { ptr, size };
    tb_record(MTF_EV_MALLOC, 0, ts, f);
}

/* What init.c's finisher does at exit. */
static void tb_finish(void)
{
    mt_guard_set(MT_IN_HOOK);
    mt_tbuf_set_final(1);
    mt_tbuf_flush_all();
    int rc = mt_tbuf_write_end(MTF_END_EXIT, 0);
    mt_guard_set(MT_IN_NONE);
    cr_assert(eq(int, rc, 0), "END written");
}

/* ---- decoding -------------------------------------------------------------------------------- */

struct tev {
    struct rd_event ev;     /* ev.frames points at `frames` */
    struct mtf_chunk chunk; /* header of the chunk that holds the event */
    uint64_t *frames;       /* STACK: copy of the frames */
    size_t pos;             /* position in file order */
    int ends_before;        /* END records read before this event */
};

struct trace {
    struct mtf_file_header header;
    struct rd_status status;
    struct tev *ev;
    size_t nev;
    struct mtf_end end; /* the last END */
    int nend;
    size_t before_end; /* events read before the last END */
};

/* Decode tb_dir/<name> completely; any reader error fails the test. */
static void tb_load(const char *name, struct trace *tr)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", tb_dir, name);
    memset(tr, 0, sizeof *tr);
    size_t flen;
    uint8_t *file = h_must_read(path, &flen);
    struct reader *r = NULL;
    int rc = reader_open(&r, path);
    cr_assert(eq(int, rc, 0), "reader_open %s: %s", path, r ? reader_error(r) : "no memory");
    tr->header = reader_status(r)->header;
    size_t cap = 0;
    struct rd_item item;
    while ((rc = reader_next(r, &item)) > 0) {
        if (item.type == RD_ITEM_END) {
            tr->end = item.end;
            tr->nend++;
            tr->before_end = tr->nev;
            continue;
        }
        if (item.type != RD_ITEM_EVENT)
            continue;
        if (tr->nev == cap) {
            cap = cap ? 2 * cap : 1024;
            tr->ev = realloc(tr->ev, cap * sizeof *tr->ev);
            cr_assert(ne(ptr, tr->ev, NULL));
        }
        struct tev *t = &tr->ev[tr->nev];
        memset(t, 0, sizeof *t);
        t->ev = item.ev;
        t->pos = tr->nev;
        t->ends_before = tr->nend;
        if (item.ev.kind == MTF_EV_STACK) {
            t->frames = malloc((item.ev.nframes + 1) * sizeof *t->frames);
            cr_assert(ne(ptr, t->frames, NULL));
            memcpy(t->frames, item.ev.frames, item.ev.nframes * sizeof *t->frames);
        }
        t->ev.frames = t->frames;
        uint64_t at = item.ev.chunk_offset + MTF_RECORD_HEADER_SIZE;
        cr_assert(le(u64, at + sizeof t->chunk, (uint64_t)flen), "chunk header inside the file");
        memcpy(&t->chunk, file + at, sizeof t->chunk);
        tr->nev++;
    }
    cr_assert(eq(int, rc, 0), "reader: %s", reader_error(r));
    tr->status = *reader_status(r);
    reader_close(r);
    free(file);
}

static void tb_free(struct trace *tr)
{
    for (size_t i = 0; i < tr->nev; i++)
        free(tr->ev[i].frames);
    free(tr->ev);
    memset(tr, 0, sizeof *tr);
}

static const struct tev *tb_stack_def(const struct trace *tr, uint32_t id)
{
    for (size_t i = 0; i < tr->nev; i++)
        if (tr->ev[i].ev.kind == MTF_EV_STACK && tr->ev[i].ev.stack == id)
            return &tr->ev[i];
    return NULL;
}

/* Every stack a call uses is defined in the file, with frames none of which is the shim's (the
 * runner's) and each of which lies in some loaded object. */
static void tb_check_stacks(const struct trace *tr)
{
    Dl_info self;
    cr_assert(ne(int, dladdr((void *)&tb_setup, &self), 0));
    for (size_t i = 0; i < tr->nev; i++) {
        const struct rd_event *e = &tr->ev[i].ev;
        if (e->kind == MTF_EV_STACK || e->stack == 0)
            continue;
        const struct tev *def = tb_stack_def(tr, e->stack);
        cr_assert(ne(ptr, (void *)def, NULL), "stack %u of event %zu is defined", e->stack, i);
        cr_assert(gt(u32, def->ev.nframes, 0), "stack %u has frames", e->stack);
        for (uint32_t k = 0; k < def->ev.nframes; k++) {
            Dl_info in;
            cr_assert(ne(int, dladdr((void *)(uintptr_t)def->frames[k], &in), 0),
                      "frame %u of stack %u (%#llx) is in a loaded object", k, e->stack,
                      (unsigned long long)def->frames[k]);
            cr_assert(ne(ptr, in.dli_fbase, self.dli_fbase),
                      "frame %u of stack %u is not the shim's (%s)", k, e->stack, in.dli_fname);
        }
    }
}

/* END's per-kind counts equal the events of each kind read before it; with `racing` (threads
 * still recording while END was written) they may only fall short of them: a concurrent chunk
 * can reach the file before END and be counted after it (trace-format.md §8). */
static void tb_check_end_counts_of(const struct trace *tr, int racing)
{
    cr_assert(eq(int, tr->nend >= 1, 1), "an END record was written");
    uint64_t counts[MTF_EV_KIND_COUNT] = { 0 };
    for (size_t i = 0; i < tr->before_end; i++)
        counts[tr->ev[i].ev.kind]++;
    uint64_t sum = 0;
    for (unsigned k = 0; k < MTF_EV_KIND_COUNT; k++) {
        if (racing)
            cr_expect(le(u64, tr->end.counts[k], counts[k]), "END counts[%u]", k);
        else
            cr_expect(eq(u64, tr->end.counts[k], counts[k]), "END counts[%u]", k);
        sum += tr->end.counts[k];
    }
    cr_expect(eq(u64, tr->end.events, sum), "END events is the sum of its counts");
    cr_expect(eq(u64, tr->end.dropped, 0));
}

static void tb_check_end_counts(const struct trace *tr)
{
    tb_check_end_counts_of(tr, 0);
}

static int tb_by_chunk_order(const void *a, const void *b)
{
    const struct tev *x = *(const struct tev *const *)a, *y = *(const struct tev *const *)b;
    if (x->chunk.epoch != y->chunk.epoch)
        return x->chunk.epoch < y->chunk.epoch ? -1 : 1;
    if (x->chunk.offset != y->chunk.offset)
        return x->chunk.offset < y->chunk.offset ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The call events (STACK excluded) of one thread, in the thread's order (trace-format.md §10:
 * chunk epoch, chunk offset, position in the chunk). Caller frees. */
static const struct tev **tb_thread_calls(const struct trace *tr, uint32_t serial, size_t *n)
{
    const struct tev **out = malloc((tr->nev + 1) * sizeof *out);
    cr_assert(ne(ptr, out, NULL));
    *n = 0;
    for (size_t i = 0; i < tr->nev; i++)
        if (tr->ev[i].ev.thread_serial == serial && tr->ev[i].ev.kind != MTF_EV_STACK)
            out[(*n)++] = &tr->ev[i];
    qsort(out, *n, sizeof *out, tb_by_chunk_order);
    return out;
}

/* ---- every kind round-trips ------------------------------------------------------------------ */

static const unsigned call_kinds[] = {
    MTF_EV_MALLOC,   MTF_EV_CALLOC,         MTF_EV_REALLOC,       MTF_EV_REALLOCARRAY,
    MTF_EV_FREE,     MTF_EV_POSIX_MEMALIGN, MTF_EV_ALIGNED_ALLOC, MTF_EV_MEMALIGN,
    MTF_EV_VALLOC,   MTF_EV_PVALLOC,        MTF_EV_MMAP,          MTF_EV_MMAP64,
    MTF_EV_MUNMAP,   MTF_EV_MREMAP,         MTF_EV_FORK,          MTF_EV_EXEC,
    MTF_EV_SNAPSHOT, MTF_EV_LIMIT,
};
#define NCALL_KINDS (sizeof call_kinds / sizeof call_kinds[0])

/* Field count of each kind as given to mt_tbuf_event (trace-format.md §7 without the stack). */
static unsigned tb_nfields(unsigned kind)
{
    unsigned n = 0;
    for (const char *l = mt_enc_layout[kind]; *l; l++)
        n += *l == 'b' ? 2 : *l != 's'; /* bytes: a length and a pointer */
    return n;
}

static const char tb_label[MTF_LABEL_MAX + 1] =
    "after load: a label long enough to test every length a snapshot label may have, "
    "in bytes from 0 to 255, with punctuation; and more text to fill the rest of it up to the "
    "two hundred and fifty-five byte limit that the trace format sets on labels. 0123456789";

/* Deterministic field values for call i of `kind`: addresses move both ways, sizes span the
 * varint lengths, the fd of MMAP is negative for some calls. */
static void tb_fields(unsigned kind, unsigned i, uint64_t *f)
{
    uint64_t big = i % 5 == 4 ? UINT64_MAX - i : (uint64_t)i << (7 * (i % 9));
    uint64_t addr = (i & 1 ? 0x7f0000000000ULL : 0x550000000000ULL) + 0x40ULL * i + kind;
    for (unsigned j = 0; j < MT_FIELDS_MAX; j++)
        f[j] = big + j;
    switch (kind) {
    case MTF_EV_REALLOC:
    case MTF_EV_REALLOCARRAY:
        f[0] = addr;
        f[1] = i % 3 == 0 ? 0 : addr + 0x1000;
        break;
    case MTF_EV_MMAP:
    case MTF_EV_MMAP64:
        f[0] = addr;
        f[4] = mt_zigzag((uint64_t)(int64_t)(i % 3 == 0 ? -1 : (int)i)); /* fd, zigzag */
        break;
    case MTF_EV_MREMAP:
        f[0] = addr;
        f[4] = addr - 0x200000;
        break;
    case MTF_EV_FORK:
        f[0] = 1000 + i;
        break;
    case MTF_EV_EXEC:
        break;
    case MTF_EV_SNAPSHOT:
        f[0] = i % MTF_SNAP_COUNT;
        f[7] = i % 3 == 0 ? 0 : i * 7 % (MTF_LABEL_MAX + 1);
        f[8] = (uintptr_t)tb_label;
        break;
    case MTF_EV_LIMIT:
        f[0] = MTF_EV_MALLOC + i % 4;
        f[1] = i & 1;
        f[2] = (i >> 1) & 1;
        break;
    default:
        f[0] = addr;
        break;
    }
}

/* The class flag some events of the round trip carry (0: none). */
static unsigned tb_class_flags(unsigned kind, unsigned i, unsigned k)
{
    if (kind == MTF_EV_STACK || (i + k) % 3 != 0)
        return 0;
    return MT_EV_CLASS((i + k) % MTF_CLASS_COUNT);
}

/* The decoded event carries exactly the fields that were recorded. */
static void tb_expect_fields(unsigned kind, const uint64_t *f, const struct rd_event *e)
{
    switch (kind) {
    case MTF_EV_MALLOC:
    case MTF_EV_VALLOC:
    case MTF_EV_PVALLOC:
        cr_expect(eq(u64, e->addr, f[0]));
        cr_expect(eq(u64, e->size, f[1]));
        cr_expect(eq(u64, e->slack, f[2]));
        break;
    case MTF_EV_CALLOC:
        cr_expect(eq(u64, e->addr, f[0]));
        cr_expect(eq(u64, e->nmemb, f[1]));
        cr_expect(eq(u64, e->elsize, f[2]));
        cr_expect(eq(u64, e->slack, f[3]));
        break;
    case MTF_EV_REALLOC:
        cr_expect(eq(u64, e->old_addr, f[0]));
        cr_expect(eq(u64, e->addr, f[1]));
        cr_expect(eq(u64, e->size, f[2]));
        cr_expect(eq(u64, e->slack, f[3]));
        cr_expect(eq(u64, e->pre_ns, f[4]));
        break;
    case MTF_EV_REALLOCARRAY:
        cr_expect(eq(u64, e->old_addr, f[0]));
        cr_expect(eq(u64, e->addr, f[1]));
        cr_expect(eq(u64, e->nmemb, f[2]));
        cr_expect(eq(u64, e->elsize, f[3]));
        cr_expect(eq(u64, e->slack, f[4]));
        cr_expect(eq(u64, e->pre_ns, f[5]));
        break;
    case MTF_EV_FREE:
        cr_expect(eq(u64, e->addr, f[0]));
        break;
    case MTF_EV_POSIX_MEMALIGN:
    case MTF_EV_ALIGNED_ALLOC:
    case MTF_EV_MEMALIGN:
        cr_expect(eq(u64, e->addr, f[0]));
        cr_expect(eq(u64, e->align, f[1]));
        cr_expect(eq(u64, e->size, f[2]));
        cr_expect(eq(u64, e->slack, f[3]));
        break;
    case MTF_EV_SNAPSHOT:
        cr_expect(eq(u32, e->snap_reason, f[0]));
        cr_expect(eq(u64, e->rss, f[1]));
        cr_expect(eq(u64, e->heap_total, f[2]));
        cr_expect(eq(u64, e->heap_used, f[3]));
        cr_expect(eq(u64, e->external, f[4]));
        cr_expect(eq(u64, e->mapped, f[5]));
        cr_expect(eq(u64, e->rss_peak, f[6]));
        cr_expect(eq(u32, e->label_len, f[7]));
        cr_expect(eq(int, memcmp(e->label, tb_label, e->label_len), 0));
        break;
    case MTF_EV_LIMIT:
        cr_expect(eq(u32, e->call, f[0]));
        cr_expect(eq(u32, e->limit_class, f[1]));
        cr_expect(eq(u32, e->limit_mode, f[2]));
        cr_expect(eq(u64, e->limit, f[3]));
        cr_expect(eq(u64, e->live, f[4]));
        cr_expect(eq(u64, e->size, f[5]));
        break;
    case MTF_EV_MMAP:
    case MTF_EV_MMAP64:
        cr_expect(eq(u64, e->addr, f[0]));
        cr_expect(eq(u64, e->size, f[1]));
        cr_expect(eq(u64, e->prot, f[2]));
        cr_expect(eq(u64, e->mflags, f[3]));
        cr_expect(eq(u64, mt_zigzag((uint64_t)e->fd), f[4]));
        cr_expect(eq(u64, e->offset, f[5]));
        break;
    case MTF_EV_MUNMAP:
        cr_expect(eq(u64, e->addr, f[0]));
        cr_expect(eq(u64, e->size, f[1]));
        break;
    case MTF_EV_MREMAP:
        cr_expect(eq(u64, e->old_addr, f[0]));
        cr_expect(eq(u64, e->old_len, f[1]));
        cr_expect(eq(u64, e->size, f[2]));
        cr_expect(eq(u64, e->mflags, f[3]));
        cr_expect(eq(u64, e->addr, f[4]));
        cr_expect(eq(u64, e->pre_ns, f[5]));
        break;
    case MTF_EV_FORK:
        cr_expect(eq(u64, e->child_pid, f[0]));
        break;
    default:
        break;
    }
}

static int tb_has_stack(unsigned kind)
{
    return strchr(mt_enc_layout[kind], 's') != NULL;
}

Test(tbuf, every_kind_round_trips_with_fields_flags_times_and_stacks)
{
    enum { ROUNDS = 40 };
    tb_open("t.mtrace", MT_DEFAULT_BUFFER_BYTES, MTF_ORIGIN_START);
    uint64_t ts = 5000000;
    for (unsigned i = 0; i < ROUNDS; i++)
        for (unsigned k = 0; k < NCALL_KINDS; k++) {
            uint64_t f[MT_FIELDS_MAX];
            tb_fields(call_kinds[k], i, f);
            ts += (i * 37 + k) % 1000; /* some steps are 0: equal times must survive too */
            tb_record(call_kinds[k],
                      ((i + k) % 4 == 0 ? MTF_EVF_FAILED : 0) | tb_class_flags(call_kinds[k], i, k),
                      ts, f);
        }
    tb_finish();

    struct trace tr;
    tb_load("t.mtrace", &tr);
    size_t n;
    const struct tev **calls = tb_thread_calls(&tr, 1, &n);
    cr_assert(eq(sz, n, (size_t)ROUNDS * NCALL_KINDS), "every call decoded once");
    ts = 5000000;
    for (unsigned i = 0; i < ROUNDS; i++)
        for (unsigned k = 0; k < NCALL_KINDS; k++) {
            const struct rd_event *e = &calls[i * NCALL_KINDS + k]->ev;
            unsigned kind = call_kinds[k];
            uint64_t f[MT_FIELDS_MAX];
            tb_fields(kind, i, f);
            ts += (i * 37 + k) % 1000;
            cr_assert(eq(u32, e->kind, kind), "call %u of round %u", k, i);
            unsigned cf = tb_class_flags(kind, i, k);
            cr_expect(eq(u32, e->flags, ((i + k) % 4 == 0 ? MTF_EVF_FAILED : 0) | (cf & 0xe0)));
            cr_expect(eq(u32, e->cls, cf ? cf >> 8 : RD_CLASS_DEFAULT), "%s %u class",
                      reader_kind_name(kind), i);
            cr_expect(eq(u64, e->ts_ns, ts), "%s %u time", reader_kind_name(kind), i);
            tb_expect_fields(kind, f, e);
            if (tb_has_stack(kind))
                cr_expect(ne(u32, e->stack, 0), "%s has a stack", reader_kind_name(kind));
            else
                cr_expect(eq(u32, e->stack, 0), "%s has no stack", reader_kind_name(kind));
        }
    cr_expect(eq(u32, tb_nfields(MTF_EV_SNAPSHOT), MT_FIELDS_MAX), "SNAPSHOT is the widest kind");
    tb_check_stacks(&tr);
    tb_check_end_counts(&tr);
    cr_expect(eq(u64, tr.end.threads, 1));
    free(calls);
    tb_free(&tr);
}

/* ---- many chunks ----------------------------------------------------------------------------- */

Test(tbuf, small_buffer_writes_many_chunks_with_every_event_in_order)
{
    enum { N = 20000 };
    const uint32_t cap = 16384;
    tb_open("t.mtrace", cap, MTF_ORIGIN_START);
    for (uint64_t i = 0; i < N; i++)
        tb_malloc(0x600000000000ULL + 48 * i, i, 1000 + i);
    tb_finish();

    struct trace tr;
    tb_load("t.mtrace", &tr);
    size_t n;
    const struct tev **calls = tb_thread_calls(&tr, 1, &n);
    cr_assert(eq(sz, n, (size_t)N));
    size_t chunks = 0;
    uint64_t last_chunk = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        const struct rd_event *e = &calls[i]->ev;
        cr_assert(eq(u64, e->size, (uint64_t)i), "call %zu in order", i);
        cr_assert(eq(u64, e->addr, 0x600000000000ULL + 48 * i));
        cr_assert(eq(u64, e->ts_ns, 1000 + (uint64_t)i));
        cr_assert(le(u32, calls[i]->chunk.events_size, cap), "a chunk fits the buffer");
        if (e->chunk_offset != last_chunk) {
            chunks++;
            last_chunk = e->chunk_offset;
        }
    }
    cr_expect(ge(sz, chunks, (size_t)N * 4 / cap), "many chunks (%zu)", chunks);
    cr_expect(eq(u64, tr.status.chunks, (uint64_t)chunks), "no chunk without calls");
    tb_check_stacks(&tr);
    tb_check_end_counts(&tr);
    free(calls);
    tb_free(&tr);
}

/* A stamp older than the thread's last one (tbuf.h's shared stamps, mixed with clock reads of
 * snapshots and mappings) is stored as the last time: a chunk's header and its first event must
 * still agree, whichever event starts the chunk. */
Test(tbuf, a_stamp_older_than_the_last_is_stored_as_the_last)
{
    tb_open("t.mtrace", 1 << 16, MTF_ORIGIN_START);
    enum { N = 200 };
    for (uint64_t i = 0; i < N; i++) {
        /* every odd call is stamped older than the call before it, and every fourth call
         * starts a new chunk: some chunks start with an older stamp */
        tb_malloc(0x600000000000ULL + 48 * i, i, i % 2 ? 100000 + 10 * i - 15 : 100000 + 10 * i);
        if (i % 4 == 0) {
            mt_guard_set(MT_IN_HOOK);
            mt_tbuf_flush_self();
            mt_guard_set(MT_IN_NONE);
        }
    }
    tb_finish();

    struct trace tr;
    tb_load("t.mtrace", &tr);
    size_t n;
    const struct tev **calls = tb_thread_calls(&tr, 1, &n);
    cr_assert(eq(sz, n, (size_t)N));
    for (size_t i = 0; i < n; i++) {
        uint64_t want = i % 2 ? 100000 + 10 * i - 10 : 100000 + 10 * i;
        cr_assert(eq(u64, calls[i]->ev.ts_ns, want), "call %zu at the last time or later", i);
    }
    free(calls);
    tb_free(&tr);
}

/* ---- stealing -------------------------------------------------------------------------------- */

struct stepper {
    sem_t go, done;     /* main -> thread, thread -> main */
    uint32_t counts[3]; /* calls in each of the three phases */
};

/* Phase 1: record, then park while the main thread steals. Phase 2: record more and flush our
 * own buffer. Phase 3: record and exit (the key destructor flushes). */
static void *tb_stepper_main(void *arg)
{
    struct stepper *s = arg;
    uint64_t seq = 0;
    for (int phase = 0; phase < 3; phase++) {
        sem_wait(&s->go);
        for (uint32_t i = 0; i < s->counts[phase]; i++, seq++)
            tb_malloc(0x700000000000ULL + 16 * seq, seq, 100 + seq);
        if (phase == 1)
            mt_tbuf_flush_self();
        sem_post(&s->done);
    }
    return NULL;
}

Test(tbuf, steal_takes_the_parked_owners_events_once_and_the_owner_continues_after_them)
{
    tb_open("t.mtrace", MT_DEFAULT_BUFFER_BYTES, MTF_ORIGIN_START);
    struct stepper s = { .counts = { 300, 200, 100 } };
    cr_assert(eq(int, sem_init(&s.go, 0, 0), 0));
    cr_assert(eq(int, sem_init(&s.done, 0, 0), 0));
    pthread_t th;
    cr_assert(eq(int, pthread_create(&th, NULL, tb_stepper_main, &s), 0));
    sem_post(&s.go);
    sem_wait(&s.done);
    mt_tbuf_flush_all(); /* the owner is parked with 300 calls buffered: steal them */
    sem_post(&s.go);
    sem_wait(&s.done);
    mt_tbuf_flush_all(); /* the owner flushed: nothing left to steal */
    sem_post(&s.go);
    sem_wait(&s.done);
    cr_assert(eq(int, pthread_join(th, NULL), 0));
    tb_finish();

    struct trace tr;
    tb_load("t.mtrace", &tr);
    size_t n;
    const struct tev **calls = tb_thread_calls(&tr, 1, &n);
    cr_assert(eq(sz, n, (size_t)600), "300 + 200 + 100 calls, each once");
    for (size_t i = 0; i < n; i++)
        cr_assert(eq(u64, calls[i]->ev.size, (uint64_t)i), "call %zu in order", i);
    /* the three pieces: stolen [0, done) of one generation, the owner's [done, len) of the
     * same one, and the next generation written at thread exit */
    const struct mtf_chunk *a = &calls[0]->chunk, *b = &calls[300]->chunk, *c = &calls[500]->chunk;
    cr_expect(eq(u32, a->flags & MTF_CHUNKF_STOLEN, MTF_CHUNKF_STOLEN), "first chunk stolen");
    cr_expect(eq(u32, a->offset, 0));
    cr_expect(eq(u32, b->flags & MTF_CHUNKF_STOLEN, 0), "second chunk the owner's");
    cr_expect(eq(u32, b->epoch, a->epoch), "the same generation");
    cr_expect(eq(u32, b->offset, a->events_size), "the owner resumes where the steal ended");
    cr_expect(eq(u64, calls[299]->ev.chunk_offset, calls[0]->ev.chunk_offset));
    cr_expect(eq(u64, calls[499]->ev.chunk_offset, calls[300]->ev.chunk_offset));
    cr_expect(eq(u32, c->epoch, a->epoch + 1), "the next generation");
    cr_expect(eq(u32, c->offset, 0));
    tb_check_stacks(&tr);
    tb_check_end_counts(&tr);
    free(calls);
    tb_free(&tr);
}

struct appender {
    uint32_t id, m;
    atomic_int *running;
};

static void *tb_appender_main(void *arg)
{
    struct appender *a = arg;
    uint64_t base = 0x100000000000ULL * (a->id + 1);
    for (uint64_t i = 0; i < a->m; i++) {
        tb_malloc(base + 16 * i, i, 1000 + i);
        if (i % 16 == 15)
            sched_yield(); /* let the stealer in even when threads outnumber CPUs */
    }
    atomic_fetch_sub(a->running, 1);
    return NULL;
}

struct steal_case {
    uint32_t buffer_bytes;
    uint32_t threads;
};

ParameterizedTestParameters(tbuf, concurrent_steals_lose_and_duplicate_nothing)
{
    static struct steal_case cases[] = {
        { 4096, 1 }, { 16384, 1 }, { 65536, 1 }, { 1U << 20, 1 }, { 8192, 3 },
    };
    return cr_make_param_array(struct steal_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct steal_case *p, tbuf, concurrent_steals_lose_and_duplicate_nothing)
{
    enum { M = 50000, MAX_THREADS = 4 };
    tb_open("t.mtrace", p->buffer_bytes, MTF_ORIGIN_START);
    atomic_int running = (int)p->threads;
    struct appender a[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    for (uint32_t t = 0; t < p->threads; t++) {
        a[t] = (struct appender){ t, M, &running };
        cr_assert(eq(int, pthread_create(&th[t], NULL, tb_appender_main, &a[t]), 0));
    }
    unsigned rounds = 0;
    while (atomic_load(&running) > 0) {
        mt_guard_set(MT_IN_HOOK);
        mt_tbuf_flush_all();
        mt_guard_set(MT_IN_NONE);
        rounds++;
        sched_yield();
    }
    for (uint32_t t = 0; t < p->threads; t++)
        cr_assert(eq(int, pthread_join(th[t], NULL), 0));
    tb_finish();

    struct trace tr;
    tb_load("t.mtrace", &tr);
    size_t stolen = 0;
    for (uint32_t serial = 1; serial <= p->threads; serial++) {
        size_t n;
        const struct tev **calls = tb_thread_calls(&tr, serial, &n);
        cr_assert(eq(sz, n, (size_t)M), "thread %u: every call once", serial);
        uint64_t base = calls[0]->ev.addr & ~0xfffffffffffULL;
        uint64_t prev_chunk = UINT64_MAX;
        for (size_t i = 0; i < n; i++) {
            const struct rd_event *e = &calls[i]->ev;
            cr_assert(eq(u64, e->size, (uint64_t)i), "thread %u call %zu in order", serial, i);
            cr_assert(eq(u64, e->addr, base + 16 * i), "thread %u call %zu address", serial, i);
            cr_assert(eq(u64, e->ts_ns, 1000 + (uint64_t)i));
            if (e->chunk_offset != prev_chunk && (calls[i]->chunk.flags & MTF_CHUNKF_STOLEN))
                stolen++;
            prev_chunk = e->chunk_offset;
        }
        free(calls);
    }
    cr_log_info("buffer %u, %u thread(s): %u flush_all rounds, %zu stolen chunks of %llu",
                p->buffer_bytes, p->threads, rounds, stolen, (unsigned long long)tr.status.chunks);
    tb_check_stacks(&tr);
    tb_check_end_counts(&tr);
    tb_free(&tr);
}

/* ---- final mode, nested events, thread exit -------------------------------------------------- */

Test(tbuf, final_mode_writes_each_event_through_and_end_counts_only_what_precedes_it)
{
    tb_open("t.mtrace", MT_DEFAULT_BUFFER_BYTES, MTF_ORIGIN_START);
    for (uint64_t i = 0; i < 10; i++) /* buffered */
        tb_malloc(0x10000 + 16 * i, i, 100 + i);
    mt_guard_set(MT_IN_HOOK);
    mt_tbuf_set_final(1);
    mt_tbuf_flush_all();
    mt_guard_set(MT_IN_NONE);
    for (uint64_t i = 10; i < 15; i++) /* written through, before END */
        tb_malloc(0x10000 + 16 * i, i, 100 + i);
    cr_assert(eq(int, mt_tbuf_write_end(MTF_END_EXIT, 0), 0));
    for (uint64_t i = 15; i < 18; i++) /* written through, after END (late destructors) */
        tb_malloc(0x10000 + 16 * i, i, 100 + i);

    struct trace tr;
    tb_load("t.mtrace", &tr);
    size_t n = 0;
    for (size_t i = 0; i < tr.nev; i++) {
        const struct tev *t = &tr.ev[i];
        if (t->ev.kind == MTF_EV_STACK)
            continue;
        cr_assert(eq(u64, t->ev.size, (uint64_t)n), "call %zu in file order", n);
        int through = n >= 10;
        cr_expect(eq(u32, t->chunk.flags & MTF_CHUNKF_WRITETHROUGH,
                     through ? MTF_CHUNKF_WRITETHROUGH : 0),
                  "call %zu: write-through flag", n);
        if (through) {
            size_t calls_in_chunk = 0;
            for (size_t j = 0; j < tr.nev; j++)
                calls_in_chunk += tr.ev[j].ev.chunk_offset == t->ev.chunk_offset &&
                                  tr.ev[j].ev.kind != MTF_EV_STACK;
            cr_expect(eq(sz, calls_in_chunk, (size_t)1), "call %zu is alone in its chunk", n);
        }
        cr_expect(eq(int, t->ends_before, n >= 15 ? 1 : 0), "call %zu relative to END", n);
        n++;
    }
    cr_assert(eq(sz, n, (size_t)18), "every call decoded, also those after END");
    tb_check_end_counts(&tr);
    cr_expect(le(u64, tr.end.events, tr.nev));
    cr_expect(eq(u64, tr.end.counts[MTF_EV_MALLOC], 15));
    tb_check_stacks(&tr);
    tb_free(&tr);
}

/* trace-format.md §10 orders one thread's events by chunk (epoch, offset), then position. A
 * write-through chunk must not sort ahead of the buffered chunks written before it. */
Test(tbuf, write_through_calls_sort_after_earlier_buffered_calls_by_epoch_and_offset)
{
    tb_open("t.mtrace", MT_DEFAULT_BUFFER_BYTES, MTF_ORIGIN_START);
    uint64_t seq = 0;
    for (int gen = 0; gen < 3; gen++) { /* three owner flushes: the buffer is in epoch 3 */
        for (int i = 0; i < 5; i++, seq++)
            tb_malloc(0x20000 + 16 * seq, seq, 100 + seq);
        mt_tbuf_flush_self();
    }
    for (int i = 0; i < 5; i++, seq++)
        tb_malloc(0x20000 + 16 * seq, seq, 100 + seq);
    tb_finish();
    for (int i = 0; i < 5; i++, seq++) /* a late destructor: written through */
        tb_malloc(0x20000 + 16 * seq, seq, 100 + seq);

    struct trace tr;
    tb_load("t.mtrace", &tr);
    size_t n;
    const struct tev **calls = tb_thread_calls(&tr, 1, &n);
    cr_assert(eq(sz, n, (size_t)seq));
    size_t i = 0;
    while (i < n && calls[i]->ev.size == i)
        i++;
    if (i < n)
        cr_expect(eq(u64, calls[i]->ev.size, (uint64_t)i),
                  "position %zu in (epoch, offset) order holds call %llu, from a chunk with "
                  "epoch %u, offset %u, flags %#x",
                  i, (unsigned long long)calls[i]->ev.size, calls[i]->chunk.epoch,
                  calls[i]->chunk.offset, calls[i]->chunk.flags);
    free(calls);
    tb_free(&tr);
}

struct racer {
    uint32_t m;
    atomic_uint progress; /* calls recorded so far */
};

static void *tb_racer_main(void *arg)
{
    struct racer *r = arg;
    for (uint64_t i = 0; i < r->m; i++) {
        tb_malloc(0x300000000000ULL + 16 * i, i, 1000 + i);
        atomic_store(&r->progress, (unsigned)i + 1);
        if (i % 16 == 15)
            sched_yield();
    }
    return NULL;
}

/* The exit path (set_final, flush_all, END) while another thread is still recording: every call
 * lands in the file exactly once, whether buffered, stolen or written through, and END counts
 * exactly the events in front of it. */
Test(tbuf, calls_racing_the_finisher_are_written_once)
{
    enum { M = 40000 };
    tb_open("t.mtrace", 16384, MTF_ORIGIN_START);
    struct racer r = { .m = M };
    pthread_t th;
    cr_assert(eq(int, pthread_create(&th, NULL, tb_racer_main, &r), 0));
    while (atomic_load(&r.progress) < M / 2)
        sched_yield();
    tb_finish();
    cr_assert(eq(int, pthread_join(th, NULL), 0));

    struct trace tr;
    tb_load("t.mtrace", &tr);
    uint8_t *seen = calloc(M, 1);
    cr_assert(ne(ptr, seen, NULL));
    size_t n = 0, through = 0;
    uint64_t last_through = 0;
    for (size_t i = 0; i < tr.nev; i++) {
        const struct tev *t = &tr.ev[i];
        if (t->ev.kind == MTF_EV_STACK)
            continue;
        cr_assert(lt(u64, t->ev.size, (uint64_t)M));
        cr_assert(eq(u32, seen[t->ev.size], 0), "call %llu written once",
                  (unsigned long long)t->ev.size);
        seen[t->ev.size] = 1;
        cr_assert(eq(u64, t->ev.addr, 0x300000000000ULL + 16 * t->ev.size));
        if (t->chunk.flags & MTF_CHUNKF_WRITETHROUGH) {
            cr_expect(ge(u64, t->ev.size, last_through), "write-through calls in file order");
            last_through = t->ev.size;
            through++;
        }
        n++;
    }
    cr_expect(eq(sz, n, (size_t)M), "every call present");
    cr_log_info("finisher race: %zu of %d calls written through", through, M);
    tb_check_end_counts_of(&tr, 1);
    tb_check_stacks(&tr);
    free(seen);
    tb_free(&tr);
}

Test(tbuf, nested_event_is_written_at_once_without_stack)
{
    tb_open("t.mtrace", MT_DEFAULT_BUFFER_BYTES, MTF_ORIGIN_START);
    tb_malloc(0x5000, 1, 10); /* stays in the buffer */
    uint64_t f[1] = { 0x6000 };
    mt_guard_set(MT_IN_HOOK);
    mt_tbuf_nested(MTF_EV_FREE, 0, 20, f);
    uint64_t g[2] = { 0x7000, 99 };
    mt_tbuf_nested(MTF_EV_MALLOC, MTF_EVF_FAILED, 30, g);
    mt_guard_set(MT_IN_NONE);

    struct trace tr;
    tb_load("t.mtrace", &tr); /* before any flush */
    cr_assert(eq(sz, tr.nev, (size_t)2), "only the nested events are in the file yet");
    cr_expect(eq(u32, tr.ev[0].ev.kind, MTF_EV_FREE));
    cr_expect(eq(u32, tr.ev[0].ev.flags, MTF_EVF_NESTED));
    cr_expect(eq(u64, tr.ev[0].ev.addr, 0x6000));
    cr_expect(eq(u64, tr.ev[0].ev.ts_ns, 20));
    cr_expect(eq(u32, tr.ev[1].ev.kind, MTF_EV_MALLOC));
    cr_expect(eq(u32, tr.ev[1].ev.flags, MTF_EVF_NESTED | MTF_EVF_FAILED));
    cr_expect(eq(u64, tr.ev[1].ev.addr, 0x7000));
    cr_expect(eq(u64, tr.ev[1].ev.size, 99));
    cr_expect(eq(u32, tr.ev[1].ev.stack, 0), "a nested event has no stack");
    for (size_t i = 0; i < tr.nev; i++)
        cr_expect(eq(u32, tr.ev[i].chunk.flags & MTF_CHUNKF_WRITETHROUGH, MTF_CHUNKF_WRITETHROUGH));
    tb_free(&tr);

    tb_finish();
    tb_load("t.mtrace", &tr);
    cr_expect(eq(sz, tr.nev, (size_t)4), "two nested, the buffered malloc and its stack");
    tb_check_end_counts(&tr);
    tb_free(&tr);
}

static void *tb_short_lived_main(void *arg)
{
    uint32_t k = *(uint32_t *)arg;
    for (uint64_t i = 0; i < k; i++)
        tb_malloc(0x8000 + 16 * i, i, 50 + i);
    return NULL;
}

static void *tb_flushed_then_exits_main(void *arg)
{
    (void)arg;
    for (uint64_t i = 0; i < 3; i++)
        tb_malloc(0x8000 + 16 * i, i, 50 + i);
    mt_tbuf_flush_self();
    return NULL;
}

Test(tbuf, exiting_thread_flushes_its_buffer)
{
    tb_open("t.mtrace", MT_DEFAULT_BUFFER_BYTES, MTF_ORIGIN_START);
    uint32_t k = 250;
    pthread_t th;
    cr_assert(eq(int, pthread_create(&th, NULL, tb_short_lived_main, &k), 0));
    cr_assert(eq(int, pthread_join(th, NULL), 0));

    struct trace tr;
    tb_load("t.mtrace", &tr); /* nothing flushed but what the thread's exit wrote */
    size_t n;
    const struct tev **calls = tb_thread_calls(&tr, 1, &n);
    cr_assert(eq(sz, n, (size_t)k), "all %u calls of the exited thread", k);
    for (size_t i = 0; i < n; i++) {
        cr_expect(eq(u64, calls[i]->ev.size, (uint64_t)i));
        cr_expect(eq(u32, calls[i]->chunk.flags & MTF_CHUNKF_STOLEN, 0), "its own flush");
    }
    tb_check_stacks(&tr);
    free(calls);
    tb_free(&tr);
}

/* Chunk headers of one thread in file order, empty chunks included (the reader yields events,
 * not chunks). The file was already validated by tb_load. Caller frees. */
static struct mtf_chunk *tb_chunks(const char *name, uint32_t serial, size_t *n)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", tb_dir, name);
    size_t len;
    uint8_t *file = h_must_read(path, &len);
    struct mtf_file_header fh;
    cr_assert(ge(sz, len, sizeof fh));
    memcpy(&fh, file, sizeof fh);
    struct mtf_chunk *out = malloc(len / MTF_CHUNK_SIZE * sizeof *out + 1);
    cr_assert(ne(ptr, out, NULL));
    *n = 0;
    for (size_t at = fh.header_size; at + MTF_RECORD_HEADER_SIZE <= len;) {
        struct mtf_record_header rh;
        memcpy(&rh, file + at, sizeof rh);
        cr_assert(eq(u32, rh.magic, MTF_RECORD_MAGIC), "record at %zu", at);
        at += MTF_RECORD_HEADER_SIZE;
        cr_assert(le(u64, at + rh.payload_size, (uint64_t)len));
        if (rh.type == MTF_REC_EVENTS) {
            cr_assert(ge(u32, rh.payload_size, MTF_CHUNK_SIZE));
            memcpy(&out[*n], file + at, sizeof out[*n]);
            if (out[*n].thread_serial == serial)
                (*n)++;
        }
        at += rh.payload_size;
    }
    free(file);
    return out;
}

/* trace-format.md §7: chunk flag 1 marks the thread's last chunk. */
Test(tbuf, exiting_thread_marks_its_last_chunk_and_only_that)
{
    tb_open("t.mtrace", MT_DEFAULT_BUFFER_BYTES, MTF_ORIGIN_START);
    uint32_t k = 20;
    pthread_t th;
    cr_assert(eq(int, pthread_create(&th, NULL, tb_short_lived_main, &k), 0));
    cr_assert(eq(int, pthread_join(th, NULL), 0));

    struct trace tr;
    tb_load("t.mtrace", &tr); /* validates the file */
    tb_free(&tr);
    size_t n;
    struct mtf_chunk *c = tb_chunks("t.mtrace", 1, &n);
    cr_assert(gt(sz, n, (size_t)0));
    for (size_t i = 0; i + 1 < n; i++)
        cr_expect(eq(u32, c[i].flags & MTF_CHUNKF_THREAD_END, 0), "chunk %zu is not the last", i);
    cr_expect(eq(u32, c[n - 1].flags & MTF_CHUNKF_THREAD_END, MTF_CHUNKF_THREAD_END),
              "the exited thread's last chunk has THREAD_END (flags %#x)", c[n - 1].flags);
    free(c);
}

Test(tbuf, exiting_thread_without_unwritten_calls_still_marks_its_end)
{
    tb_open("t.mtrace", MT_DEFAULT_BUFFER_BYTES, MTF_ORIGIN_START);
    uint32_t k = 0; /* a thread with a buffer whose last call was already flushed */
    pthread_t th;
    cr_assert(eq(int, pthread_create(&th, NULL, tb_flushed_then_exits_main, &k), 0));
    cr_assert(eq(int, pthread_join(th, NULL), 0));

    struct trace tr;
    tb_load("t.mtrace", &tr);
    cr_expect(eq(sz, tr.nev, (size_t)4), "3 calls and their stack, no more");
    tb_free(&tr);
    size_t n;
    struct mtf_chunk *c = tb_chunks("t.mtrace", 1, &n);
    cr_assert(eq(sz, n, (size_t)2), "the flushed chunk and an empty end marker");
    cr_expect(eq(u32, c[0].nevents, 4));
    cr_expect(eq(u32, c[1].flags & MTF_CHUNKF_THREAD_END, MTF_CHUNKF_THREAD_END));
    cr_expect(eq(u32, c[1].nevents, 0));
    cr_expect(eq(u32, c[1].events_size, 0));
    free(c);
}

struct churner {
    uint32_t id; /* address range of its calls */
};

enum { CHURN_THREADS = 48, CHURN_WAVE = 4, CHURN_CALLS = 3000 };

/* Record CHURN_CALLS mallocs in this thread's own address range (id in bits 40..47) and exit
 * with them partly buffered. */
static void *tb_churner_main(void *arg)
{
    const struct churner *c = arg;
    uint64_t base = (uint64_t)(c->id + 1) << 40;
    for (uint64_t i = 0; i < CHURN_CALLS; i++) {
        tb_malloc(base + 16 * i, i, 1000 + i);
        if (i % 64 == 63)
            sched_yield();
    }
    return NULL;
}

struct churn_ctl {
    atomic_int stop;
    unsigned rounds;
};

static void *tb_churn_stealer_main(void *arg)
{
    struct churn_ctl *ctl = arg;
    while (!atomic_load(&ctl->stop)) {
        mt_guard_set(MT_IN_HOOK);
        mt_tbuf_flush_all();
        mt_guard_set(MT_IN_NONE);
        ctl->rounds++;
        sched_yield();
    }
    return NULL;
}

/* Threads come and go in waves (their buffers are reused by the next wave) while another thread
 * steals continuously: each thread's calls are in the file once, in order, under one serial and
 * tid that no other thread's calls carry. */
Test(tbuf, threads_churning_while_stealing_keep_their_calls_and_identity)
{
    tb_open("t.mtrace", 8192, MTF_ORIGIN_START);
    struct churn_ctl ctl = { 0 };
    pthread_t st;
    cr_assert(eq(int, pthread_create(&st, NULL, tb_churn_stealer_main, &ctl), 0));
    static struct churner c[CHURN_THREADS];
    for (uint32_t w = 0; w < CHURN_THREADS; w += CHURN_WAVE) {
        pthread_t th[CHURN_WAVE];
        for (uint32_t k = 0; k < CHURN_WAVE; k++) {
            c[w + k].id = w + k;
            cr_assert(eq(int, pthread_create(&th[k], NULL, tb_churner_main, &c[w + k]), 0));
        }
        for (uint32_t k = 0; k < CHURN_WAVE; k++)
            cr_assert(eq(int, pthread_join(th[k], NULL), 0));
    }
    atomic_store(&ctl.stop, 1);
    cr_assert(eq(int, pthread_join(st, NULL), 0));
    tb_finish();

    struct trace tr;
    tb_load("t.mtrace", &tr);
    static uint32_t serial_of[CHURN_THREADS], tid_of[CHURN_THREADS];
    static uint64_t next[CHURN_THREADS];
    static uint8_t owner_of_serial[CHURN_THREADS + 2];
    for (size_t i = 0; i < tr.nev; i++) {
        const struct rd_event *e = &tr.ev[i].ev;
        if (e->kind != MTF_EV_MALLOC)
            continue;
        uint32_t id = (uint32_t)(e->addr >> 40) - 1;
        cr_assert(lt(u32, id, CHURN_THREADS));
        if (serial_of[id] == 0) {
            serial_of[id] = e->thread_serial;
            tid_of[id] = e->tid;
            cr_assert(le(u32, e->thread_serial, CHURN_THREADS + 1));
            cr_expect(eq(u32, owner_of_serial[e->thread_serial], 0), "serial %u used by one thread",
                      e->thread_serial);
            owner_of_serial[e->thread_serial] = 1;
        }
        cr_assert(eq(u32, e->thread_serial, serial_of[id]), "thread %u keeps serial %u", id,
                  serial_of[id]);
        cr_assert(eq(u32, e->tid, tid_of[id]), "thread %u keeps its tid", id);
    }
    for (uint32_t id = 0; id < CHURN_THREADS; id++) {
        size_t n;
        const struct tev **calls = tb_thread_calls(&tr, serial_of[id], &n);
        cr_expect(eq(sz, n, (size_t)CHURN_CALLS), "thread %u: every call once", id);
        for (size_t i = 0; i < n; i++) {
            cr_assert(eq(u64, calls[i]->ev.size, next[id]), "thread %u call %zu in order", id, i);
            next[id]++;
        }
        free(calls);
    }
    cr_log_info("churn: %u steal rounds", ctl.rounds);
    tb_check_stacks(&tr);
    tb_check_end_counts(&tr);
    tb_free(&tr);
}

/* ---- a buffer reused while it is being stolen ------------------------------------------------ */

struct parker {
    uint64_t base; /* address range of this thread's calls */
    uint32_t n;
    uint32_t tid;        /* out: the thread's kernel id */
    sem_t parked, leave; /* thread -> main, main -> thread */
};

/* Record n FREEs (no stack: cheap, 3 bytes each, so a big buffer fills fast), park, exit. */
static void *tb_parker_main(void *arg)
{
    struct parker *p = arg;
    p->tid = (uint32_t)gettid();
    for (uint64_t i = 0; i < p->n; i++) {
        uint64_t f[1] = { p->base + 16 * i };
        tb_record(MTF_EV_FREE, 0, 1000 + i, f);
    }
    sem_post(&p->parked);
    sem_wait(&p->leave);
    return NULL;
}

static void *tb_stealer_main(void *arg)
{
    (void)arg;
    mt_guard_set(MT_IN_HOOK);
    mt_tbuf_flush_all();
    mt_guard_set(MT_IN_NONE);
    return NULL;
}

static void tb_parker_start(struct parker *p, pthread_t *th, uint64_t base, uint32_t n)
{
    p->base = base;
    p->n = n;
    cr_assert(eq(int, sem_init(&p->parked, 0, 0), 0));
    cr_assert(eq(int, sem_init(&p->leave, 0, 0), 0));
    cr_assert(eq(int, pthread_create(th, NULL, tb_parker_main, p), 0));
    sem_wait(&p->parked);
}

static uint64_t tb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* A stealer has claimed thread A's events (CAS done) and is still scanning its copy when A exits
 * and thread B adopts A's retired buffer. The stolen chunk must still name A. Timing decides only
 * whether that window is hit (a steal of the same size is timed first, then A is let go at a
 * different fraction of the steal in each attempt); a correct shim passes whatever happens. */
Test(tbuf, stolen_chunk_names_its_thread_when_the_buffer_is_reused_meanwhile)
{
    enum { N = 4000000, ATTEMPTS = 3 };
    static const unsigned divisor[ATTEMPTS] = { 3, 2, 5 }; /* let A go at steal time / this */
    tb_open("t.mtrace", 32U << 20, MTF_ORIGIN_START);
    struct parker c;
    pthread_t tc;
    tb_parker_start(&c, &tc, 1ULL << 44, N); /* serial 1: calibration */
    uint64_t t0 = tb_now_ns();
    mt_guard_set(MT_IN_HOOK);
    mt_tbuf_flush_all();
    mt_guard_set(MT_IN_NONE);
    uint64_t steal_ns = tb_now_ns() - t0;
    sem_post(&c.leave);
    cr_assert(eq(int, pthread_join(tc, NULL), 0));

    /* attempt j: A (serial 2 + 2j, calls at (j + 2) << 44) reuses the one buffer, B (serial
     * 3 + 2j) adopts it after A exits */
    static struct parker a[ATTEMPTS];
    for (unsigned j = 0; j < ATTEMPTS; j++) {
        pthread_t ta, tbb, ts;
        tb_parker_start(&a[j], &ta, (uint64_t)(j + 2) << 44, N);
        cr_assert(eq(int, pthread_create(&ts, NULL, tb_stealer_main, NULL), 0));
        struct timespec nap = { 0, (long)(steal_ns / divisor[j]) };
        nanosleep(&nap, NULL);
        sem_post(&a[j].leave);
        cr_assert(eq(int, pthread_join(ta, NULL), 0));
        uint32_t k = 1;
        cr_assert(eq(int, pthread_create(&tbb, NULL, tb_short_lived_main, &k), 0));
        cr_assert(eq(int, pthread_join(tbb, NULL), 0));
        cr_assert(eq(int, pthread_join(ts, NULL), 0));
    }
    tb_finish();

    /* streamed, not tb_load: millions of decoded events would not fit in memory comfortably */
    size_t flen;
    uint8_t *file = h_must_read(tb_trace, &flen);
    struct reader *r = NULL;
    cr_assert(eq(int, reader_open(&r, tb_trace), 0));
    size_t na[ATTEMPTS] = { 0 }, wrong[ATTEMPTS] = { 0 }, stolen[ATTEMPTS] = { 0 };
    uint32_t seen_serial[ATTEMPTS] = { 0 }, seen_tid[ATTEMPTS] = { 0 };
    struct rd_item it;
    int rc;
    while ((rc = reader_next(r, &it)) > 0) {
        if (it.type != RD_ITEM_EVENT || it.ev.kind != MTF_EV_FREE || (it.ev.addr >> 44) < 2)
            continue;
        unsigned j = (unsigned)(it.ev.addr >> 44) - 2;
        cr_assert(lt(u32, j, ATTEMPTS));
        na[j]++;
        struct mtf_chunk ch;
        memcpy(&ch, file + it.ev.chunk_offset + MTF_RECORD_HEADER_SIZE, sizeof ch);
        stolen[j] += (ch.flags & MTF_CHUNKF_STOLEN) != 0;
        if (it.ev.thread_serial != 2 + 2 * j || it.ev.tid != a[j].tid) {
            wrong[j]++;
            seen_serial[j] = it.ev.thread_serial;
            seen_tid[j] = it.ev.tid;
        }
    }
    cr_assert(eq(int, rc, 0), "reader: %s", reader_error(r));
    reader_close(r);
    free(file);
    for (unsigned j = 0; j < ATTEMPTS; j++) {
        cr_log_info("attempt %u: A let go after %llu of %llu us; %zu of its calls were stolen", j,
                    (unsigned long long)steal_ns / divisor[j] / 1000,
                    (unsigned long long)steal_ns / 1000, stolen[j]);
        cr_expect(eq(sz, na[j], (size_t)N), "attempt %u: every call of A once", j);
        cr_expect(eq(sz, wrong[j], (size_t)0),
                  "attempt %u: A's calls carry A's serial %u and tid %u (%zu carry serial %u, "
                  "tid %u)",
                  j, 2 + 2 * j, a[j].tid, wrong[j], seen_serial[j], seen_tid[j]);
    }
}

Test(tbuf, end_carries_reason_status_and_the_number_of_recording_threads)
{
    tb_open("t.mtrace", MT_DEFAULT_BUFFER_BYTES, MTF_ORIGIN_START);
    tb_malloc(0x1000, 1, 10);
    for (int t = 0; t < 3; t++) {
        uint32_t k = 5;
        pthread_t th;
        cr_assert(eq(int, pthread_create(&th, NULL, tb_short_lived_main, &k), 0));
        cr_assert(eq(int, pthread_join(th, NULL), 0));
    }
    mt_guard_set(MT_IN_HOOK);
    mt_tbuf_set_final(1);
    mt_tbuf_flush_all();
    cr_assert(eq(int, mt_tbuf_write_end(MTF_END_SIGNAL, 6), 0));
    mt_guard_set(MT_IN_NONE);

    struct trace tr;
    tb_load("t.mtrace", &tr);
    cr_assert(eq(int, tr.nend, 1));
    cr_expect(eq(u32, tr.end.reason, MTF_END_SIGNAL));
    cr_expect(eq(i32, tr.end.status, 6));
    cr_expect(eq(u64, tr.end.threads, 4), "main and three threads recorded");
    cr_expect(eq(u64, tr.end.unknown_frees, 0));
    cr_expect(eq(u64, tr.end.counts[MTF_EV_MALLOC], 16));
    tb_check_end_counts(&tr);
    tb_free(&tr);
}

/* ---- before the trace is open ---------------------------------------------------------------- */

static int tb_opens; /* calls of the open hook */

/* What init.c installs as mt_tbuf_open_trace: open the trace when a buffer must be written
 * before the constructor ran. */
static void tb_open_on_demand(void)
{
    tb_opens++;
    int rc = mt_writer_open(tb_trace, MTF_ORIGIN_START, mt_config.max_frames);
    cr_assert(eq(int, rc, 0));
}

Test(tbuf, calls_before_the_trace_is_open_are_written_once_it_opens)
{
    mt_tbuf_open_trace = tb_open_on_demand;
    for (uint64_t i = 0; i < 10; i++)
        tb_malloc(0xe000 + 16 * i, i, 100 + i);
    cr_assert(eq(int, access(tb_trace, F_OK), -1), "no file yet");
    cr_assert(eq(int, tb_opens, 0), "buffering does not open the trace");
    mt_tbuf_flush_self();
    cr_expect(eq(int, tb_opens, 1), "the first flush opens it");
    for (uint64_t i = 10; i < 20; i++)
        tb_malloc(0xe000 + 16 * i, i, 100 + i);
    tb_finish();
    cr_expect(eq(int, tb_opens, 1), "once");

    struct trace tr;
    tb_load("t.mtrace", &tr);
    size_t n;
    const struct tev **calls = tb_thread_calls(&tr, 1, &n);
    cr_assert(eq(sz, n, (size_t)20));
    for (size_t i = 0; i < n; i++)
        cr_expect(eq(u64, calls[i]->ev.size, (uint64_t)i));
    tb_check_end_counts(&tr);
    tb_check_stacks(&tr);
    free(calls);
    tb_free(&tr);
}

/* trace-format.md §7: chunk flag 8 marks a chunk holding events from before the file was opened. */
Test(tbuf, chunk_of_calls_from_before_the_open_is_flagged_preinit)
{
    mt_tbuf_open_trace = tb_open_on_demand;
    for (uint64_t i = 0; i < 10; i++)
        tb_malloc(0xe000 + 16 * i, i, 100 + i);
    mt_tbuf_flush_self(); /* opens the trace, writes the early calls */
    for (uint64_t i = 10; i < 20; i++)
        tb_malloc(0xe000 + 16 * i, i, 100 + i);
    tb_finish();

    struct trace tr;
    tb_load("t.mtrace", &tr);
    size_t n;
    const struct tev **calls = tb_thread_calls(&tr, 1, &n);
    cr_assert(eq(sz, n, (size_t)20));
    cr_expect(eq(u32, calls[0]->chunk.flags & MTF_CHUNKF_PREINIT, MTF_CHUNKF_PREINIT),
              "early calls: PREINIT (flags %#x)", calls[0]->chunk.flags);
    cr_expect(eq(u32, calls[10]->chunk.flags & MTF_CHUNKF_PREINIT, 0), "later calls: not");
    free(calls);
    tb_free(&tr);
}

/* ---- output failure -------------------------------------------------------------------------- */

static atomic_int writev_budget; /* writev calls that still succeed */
static long (*real_writev)(int, const struct iovec *, int);

static long tb_failing_writev(int fd, const struct iovec *iov, int iovcnt)
{
    if (atomic_fetch_sub(&writev_budget, 1) > 0)
        return real_writev(fd, iov, iovcnt);
    errno = ENOSPC;
    return -1;
}

static void tb_fail_writes_after(int n)
{
    real_writev = mt_sys.writev;
    atomic_store(&writev_budget, n);
    mt_sys.writev = tb_failing_writev;
}

Test(tbuf, dropped_counts_each_call_lost_to_a_failed_writer, .init = cr_redirect_stderr)
{
    enum { N = 100, LATE = 7 };
    tb_open("t.mtrace", MT_DEFAULT_BUFFER_BYTES, MTF_ORIGIN_START);
    tb_fail_writes_after(0);
    for (uint64_t i = 0; i < N; i++)
        tb_malloc(0x9000 + 16 * i, i, 10 + i); /* buffered, lost at the flush */
    mt_tbuf_flush_all();
    cr_assert(eq(int, mt_writer_failed(), 1));
    for (uint64_t i = 0; i < LATE; i++)
        tb_malloc(0xa000 + 16 * i, i, 500 + i); /* refused at once */
    cr_expect(eq(u64, mt_tbuf_dropped(), (uint64_t)N + LATE),
              "dropped counts program calls, not stack definitions");
    cr_expect(ne(int, mt_tbuf_write_end(MTF_END_EXIT, 0), 0), "no END after a failure");
}

Test(tbuf, every_call_is_in_the_file_or_counted_as_dropped, .init = cr_redirect_stderr)
{
    enum { N = 20000 };
    tb_open("t.mtrace", 16384, MTF_ORIGIN_START);
    tb_fail_writes_after(3); /* a few chunks make it, then the disk is full */
    for (uint64_t i = 0; i < N; i++)
        tb_malloc(0xb00000 + 16 * i, i, 10 + i);
    mt_tbuf_set_final(1);
    mt_tbuf_flush_all();
    cr_assert(eq(int, mt_writer_failed(), 1));

    struct trace tr;
    tb_load("t.mtrace", &tr);
    size_t n;
    const struct tev **calls = tb_thread_calls(&tr, 1, &n);
    cr_assert(gt(sz, n, (size_t)0), "the first chunks were written");
    for (size_t i = 0; i < n; i++)
        cr_assert(eq(u64, calls[i]->ev.size, (uint64_t)i), "a prefix of the calls");
    cr_expect(eq(int, tr.nend, 0));
    cr_expect(eq(u64, (uint64_t)n + mt_tbuf_dropped(), (uint64_t)N), "%zu written + %llu dropped",
              n, (unsigned long long)mt_tbuf_dropped());
    free(calls);
    tb_free(&tr);
}

/* ---- fork ------------------------------------------------------------------------------------ */

/* The child side of a fork, as init.c's atfork handler does it, then a few calls of its own.
 * Returns the child's exit status: 0, or the step that failed. */
static int tb_child_run(void)
{
    mt_log_reset();
    mt_writer_forget();
    mt_stack_reset();
    mt_tbuf_fork_child();
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/child.mtrace", tb_dir);
    if (mt_writer_open(path, MTF_ORIGIN_FORK, mt_config.max_frames) != 0)
        return 2;
    for (uint64_t i = 0; i < 30; i++)
        tb_malloc(0xc000 + 16 * i, 1000000 + i, 5000 + i);
    mt_guard_set(MT_IN_HOOK);
    mt_tbuf_set_final(1);
    mt_tbuf_flush_all();
    int rc = mt_tbuf_write_end(MTF_END_EXIT, 0);
    mt_guard_set(MT_IN_NONE);
    return rc == 0 ? 0 : 3;
}

Test(tbuf, fork_child_writes_only_its_own_events)
{
    tb_open("t.mtrace", MT_DEFAULT_BUFFER_BYTES, MTF_ORIGIN_START);
    for (uint64_t i = 0; i < 40; i++) /* buffered in the parent at the fork */
        tb_malloc(0xd000 + 16 * i, i, 100 + i);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(ge(int, pid, 0), "fork: %s", strerror(errno));
    if (pid == 0)
        _exit(tb_child_run());
    int status;
    cr_assert(eq(int, waitpid(pid, &status, 0), pid));
    cr_assert(eq(int, WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0), "child status %#x", status);
    for (uint64_t i = 40; i < 50; i++)
        tb_malloc(0xd000 + 16 * i, i, 100 + i);
    tb_finish();

    struct trace tr;
    tb_load("child.mtrace", &tr);
    cr_expect(eq(u32, tr.header.origin, MTF_ORIGIN_FORK));
    cr_expect(eq(u32, tr.header.pid, (uint32_t)pid));
    size_t n;
    const struct tev **calls = tb_thread_calls(&tr, 1, &n);
    cr_assert(eq(sz, n, (size_t)30), "the child's 30 calls and none of the parent's");
    for (size_t i = 0; i < n; i++)
        cr_expect(eq(u64, calls[i]->ev.size, 1000000 + (uint64_t)i));
    for (size_t i = 0; i < tr.nev; i++)
        cr_expect(eq(u32, tr.ev[i].ev.thread_serial, 1), "one thread, serial 1");
    cr_expect(eq(u64, tr.end.threads, 1));
    tb_check_stacks(&tr); /* the child defines its stacks itself */
    tb_check_end_counts(&tr);
    free(calls);
    tb_free(&tr);

    tb_load("t.mtrace", &tr);
    calls = tb_thread_calls(&tr, 1, &n);
    cr_assert(eq(sz, n, (size_t)50), "the parent's 50 calls and none of the child's");
    for (size_t i = 0; i < n; i++)
        cr_expect(eq(u64, calls[i]->ev.size, (uint64_t)i));
    tb_check_end_counts(&tr);
    free(calls);
    tb_free(&tr);
}
