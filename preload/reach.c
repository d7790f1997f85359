/* The exit-time leak scan: see reach.h. Roots come from dl_iterate_phdr (writable segments of
 * every module but the shim), the scanning thread's stack and registers, the stacks of the other
 * threads from the stack pointer the kernel reports for a thread blocked in a system call, the
 * static TLS around the thread pointer, and the caller's ranges. /proc/self/maps bounds every
 * range to readable memory. All scratch memory is mapped from the kernel and is never a root, so
 * the scan never finds the pointers it keeps itself. */
#include "reach.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "clock.h"
#include "memtrace/format.h"
#include "mt.h"
#include "pages.h"
#include "writer.h"

/* ---- marking ---------------------------------------------------------------------------------
 */

struct scan {
    const struct mt_live_block *b;
    size_t n;
    uint64_t lo, hi; /* lowest block start, highest block end */
    uint8_t *mark;
    size_t *work;
    size_t top;
};

static uint64_t block_end(const struct mt_live_block *b)
{
    return b->addr + (b->size ? b->size : 1); /* a pointer to a 0-byte block still holds it */
}

/* Index of the block holding address w, or n. */
static size_t lookup(const struct scan *s, uint64_t w)
{
    if (w < s->lo || w >= s->hi)
        return s->n;
    size_t lo = 0, hi = s->n; /* last block with addr <= w */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->b[mid].addr <= w)
            lo = mid;
        else
            hi = mid;
    }
    const struct mt_live_block *b = &s->b[lo];
    if (w == b->addr)
        return lo;
    /* A pointer inside a block holds it too, except into its last 8 bytes: glibc's pointers to
     * the next chunk's header (the top chunk, free lists) land there when a block fills its
     * chunk, and would keep a lost block alive (memcheck would call it possibly lost). */
    return b->size > 8 && w < b->addr + b->size - 8 ? lo : s->n;
}

/* Every aligned word of [start, end) that points into a block whose mark is `from` sets it to
 * `to` and queues it. */
static void scan_range(struct scan *s, uint64_t start, uint64_t end, uint8_t from, uint8_t to)
{
    start = (start + 7) & ~7ULL;
    for (uint64_t a = start; a + 8 <= end; a += 8) {
        uint64_t w = *(const volatile uint64_t *)(uintptr_t)a;
        size_t i = lookup(s, w);
        if (i < s->n && s->mark[i] == from) {
            s->mark[i] = to;
            s->work[s->top++] = i;
        }
    }
}

static void drain(struct scan *s, uint8_t from, uint8_t to)
{
    while (s->top > 0) {
        size_t i = s->work[--s->top];
        scan_range(s, s->b[i].addr, s->b[i].addr + s->b[i].size, from, to);
    }
}

void mt_reach_classify(const struct mt_live_block *b, size_t n, const struct mt_reach_ranges *roots,
                       uint8_t *mark, size_t *work)
{
    if (n == 0)
        return;
    struct scan s = { b, n, b[0].addr, 0, mark, work, 0 };
    for (size_t i = 0; i < n; i++) {
        mark[i] = MT_REACH_UNSEEN;
        if (block_end(&b[i]) > s.hi)
            s.hi = block_end(&b[i]);
    }
    for (size_t r = 0; r < roots->n; r++) {
        scan_range(&s, roots->r[r][0], roots->r[r][1], MT_REACH_UNSEEN, MT_REACH_REACHABLE);
        drain(&s, MT_REACH_UNSEEN, MT_REACH_REACHABLE);
    }
    /* Lost blocks: a first pass marks every lost block another lost block points to (INDIRECT
     * for now); those left UNSEEN have no pointer at all and lead their own group. */
    for (size_t i = 0; i < n; i++)
        if (mark[i] == MT_REACH_UNSEEN || mark[i] == MT_REACH_INDIRECT) {
            uint8_t keep = mark[i];
            mark[i] = MT_REACH_DIRECT; /* its own words never count for itself */
            scan_range(&s, b[i].addr, b[i].addr + b[i].size, MT_REACH_UNSEEN, MT_REACH_INDIRECT);
            s.top = 0;
            mark[i] = keep;
        }
    for (size_t i = 0; i < n; i++)
        if (mark[i] == MT_REACH_UNSEEN)
            mark[i] = MT_REACH_DIRECT;
    /* Cycles with no way in: every member was marked INDIRECT. Give each such group a leader
     * (the lowest block), as memcheck does, by finding what the real leaders reach first. */
    for (size_t i = 0; i < n; i++)
        if (mark[i] == MT_REACH_DIRECT) {
            s.work[s.top++] = i;
            drain(&s, MT_REACH_INDIRECT, 4); /* 4: reached from a leader */
        }
    for (size_t i = 0; i < n; i++) {
        if (mark[i] != MT_REACH_INDIRECT)
            continue;
        mark[i] = MT_REACH_DIRECT; /* unreached cycle: this one leads it */
        s.work[s.top++] = i;
        drain(&s, MT_REACH_INDIRECT, 4);
    }
    for (size_t i = 0; i < n; i++)
        if (mark[i] == 4)
            mark[i] = MT_REACH_INDIRECT;
}

/* ---- roots -----------------------------------------------------------------------------------
 */

struct region {
    uint64_t start, end;
    char perms[4];
    int anon;  /* no path */
    int stack; /* "[stack]" */
    int heap;  /* "[heap]" */
};

struct rootset {
    uint64_t (*r)[2];
    size_t n, cap;
    struct region *reg;
    size_t nreg;
    uint64_t bytes;
};

static void add_root(struct rootset *rs, uint64_t start, uint64_t end)
{
    if (start >= end || rs->n == rs->cap)
        return;
    /* Only what /proc/self/maps calls readable: a root range may cross a guard page. */
    for (size_t i = 0; i < rs->nreg && rs->n < rs->cap; i++) {
        const struct region *g = &rs->reg[i];
        if (g->perms[0] != 'r' || g->end <= start || g->start >= end)
            continue;
        uint64_t s = start > g->start ? start : g->start, e = end < g->end ? end : g->end;
        rs->r[rs->n][0] = s;
        rs->r[rs->n][1] = e;
        rs->n++;
        rs->bytes += e - s;
    }
}

static void visit_root(void *vctx, uint64_t start, uint64_t end)
{
    add_root(vctx, start, end);
}

static uint64_t hex(const char **p)
{
    uint64_t v = 0;
    for (;; (*p)++) {
        char c = **p;
        if (c >= '0' && c <= '9')
            v = v * 16 + (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v * 16 + (uint64_t)(c - 'a' + 10);
        else
            return v;
    }
}

/* Read /proc/self/maps into regions. Returns the count, or 0 on failure. */
static size_t read_maps(struct region *reg, size_t max, char *buf, size_t cap)
{
    if (mt_read_file("/proc/self/maps", buf, cap) == 0)
        return 0;
    size_t n = 0;
    for (const char *p = buf; *p && n < max;) {
        struct region *g = &reg[n];
        memset(g, 0, sizeof *g);
        g->start = hex(&p);
        p += *p == '-';
        g->end = hex(&p);
        p += *p == ' ';
        for (int i = 0; i < 4 && *p; i++)
            g->perms[i] = *p++;
        for (int f = 0; f < 3 && *p && *p != '\n'; f++) { /* offset, device, inode */
            while (*p == ' ')
                p++;
            while (*p && *p != ' ' && *p != '\n')
                p++;
        }
        while (*p == ' ')
            p++;
        g->anon = *p == '\n' || *p == 0;
        g->stack = strncmp(p, "[stack]", 7) == 0;
        g->heap = strncmp(p, "[heap]", 6) == 0;
        while (*p && *p != '\n')
            p++;
        p += *p == '\n';
        n++;
    }
    return n;
}

struct phdr_ctx {
    struct rootset *rs;
    uint64_t self; /* an address inside the shim: its module is skipped */
};

static int module_roots(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct phdr_ctx *c = arg;
    int is_self = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uint64_t s = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && c->self >= s && c->self < s + ph->p_memsz)
            is_self = 1;
    }
    if (is_self)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W)) {
            uint64_t s = info->dlpi_addr + ph->p_vaddr;
            add_root(c->rs, s, s + ph->p_memsz);
        }
    }
    return 0;
}

static const struct region *region_of(const struct rootset *rs, uint64_t a)
{
    for (size_t i = 0; i < rs->nreg; i++)
        if (a >= rs->reg[i].start && a < rs->reg[i].end)
            return &rs->reg[i];
    return NULL;
}

/* The stack pointer of thread `tid` if it sits in a system call (/proc/self/task/TID/syscall:
 * "nr args... sp pc"), else 0 (running, or unreadable). */
static uint64_t blocked_sp(long tid)
{
    char path[64], buf[256];
    int n = 0;
    char digits[24];
    do
        digits[n++] = (char)('0' + tid % 10);
    while ((tid /= 10) > 0 && n < 20);
    memcpy(path, "/proc/self/task/", 16);
    int k = 16;
    while (n > 0)
        path[k++] = digits[--n];
    memcpy(path + k, "/syscall", 9);
    if (mt_read_file(path, buf, sizeof buf) == 0 || buf[0] < '0' || buf[0] > '9')
        return 0; /* "running" */
    /* the second-to-last field is the stack pointer */
    const char *fields[10];
    int nf = 0;
    for (char *p = buf; *p && nf < 10;) {
        while (*p == ' ' || *p == '\n')
            p++;
        if (*p)
            fields[nf++] = p;
        while (*p && *p != ' ' && *p != '\n')
            p++;
    }
    if (nf < 3)
        return 0;
    const char *f = fields[nf - 2];
    if (f[0] == '0' && f[1] == 'x')
        f += 2;
    return hex(&f);
}

/* Every other thread of the process: its stack from its stack pointer up to the end of its
 * mapping (static TLS and the thread descriptor sit at that end). A thread running at this
 * moment has no stack pointer to read: only the main thread's whole [stack] is then taken; any
 * other is left out, and the scan says other threads were running. */
static void other_threads(struct rootset *rs, long self)
{
    int dir =
        (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return;
    long pid = syscall(SYS_getpid);
    char buf[4096];
    long n;
    while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
        for (long off = 0; off < n;) {
            const char *name = buf + off + 19; /* d_ino 8, d_off 8, d_reclen 2, d_type 1 */
            unsigned short reclen;
            memcpy(&reclen, buf + off + 16, sizeof reclen);
            off += reclen;
            long tid = 0;
            for (const char *c = name; *c >= '0' && *c <= '9'; c++)
                tid = tid * 10 + (*c - '0');
            if (tid <= 0 || tid == self)
                continue;
            uint64_t sp = blocked_sp(tid);
            const struct region *g = sp ? region_of(rs, sp) : NULL;
            if (g != NULL)
                add_root(rs, (sp > g->start + 128 ? sp - 128 : g->start) & ~7ULL, g->end);
            else if (tid == pid)
                for (size_t i = 0; i < rs->nreg; i++)
                    if (rs->reg[i].stack)
                        add_root(rs, rs->reg[i].start, rs->reg[i].end);
        }
    }
    syscall(SYS_close, dir);
}

static MT_NOINLINE void stack_roots(struct rootset *rs)
{
    /* The scanning thread: callee-saved registers spilled here, then from this frame up. */
    __builtin_unwind_init();
    volatile uint64_t here = 0;
    uint64_t sp = (uint64_t)(uintptr_t)&here;
    const struct region *mine = region_of(rs, sp);
    if (mine != NULL)
        add_root(rs, sp & ~7ULL, mine->end);
    other_threads(rs, syscall(SYS_gettid));
    /* This thread's static TLS and descriptor lie around its thread pointer: for the main
     * thread in memory the loader mapped for itself, not on the stack. The loader tells the
     * size of the static TLS area; the descriptor is taken as 4 KiB. */
    uint64_t tp = (uint64_t)(uintptr_t)__builtin_thread_pointer();
    size_t tls_size = 0, tls_align = 0;
    void (*info)(size_t *, size_t *) =
        (void (*)(size_t *, size_t *))dlsym(RTLD_DEFAULT, "_dl_get_tls_static_info");
    if (info != NULL)
        info(&tls_size, &tls_align);
    const struct region *t = region_of(rs, tp);
    if (t != NULL && t != mine && !t->heap && tls_size != 0 && tls_size < (1u << 20))
        add_root(rs, tp - tls_size, tp + 4096);
}

/* ---- records ---------------------------------------------------------------------------------
 */

#define ENTRIES_PER_RECORD 65536

static int write_records(const struct mt_live_block *b, size_t n, const uint8_t *mark,
                         const struct mt_reach_result *res)
{
    size_t lost = res->direct_blocks + res->indirect_blocks;
    size_t batch = lost < ENTRIES_PER_RECORD ? (lost ? lost : 1) : ENTRIES_PER_RECORD;
    struct mtf_reach_entry *e = mt_pages_map(batch * sizeof *e, 0);
    if (e == NULL)
        return -1;
    size_t i = 0, written = 0;
    int rc = 0;
    do {
        size_t k = 0;
        for (; i < n && k < batch; i++)
            if (mark[i] == MT_REACH_DIRECT || mark[i] == MT_REACH_INDIRECT)
                e[k++] = (struct mtf_reach_entry){
                    b[i].addr, mark[i] == MT_REACH_DIRECT ? MTF_REACH_DIRECT : MTF_REACH_INDIRECT, 0
                };
        written += k;
        struct mtf_reach h = { mt_clock_ns(),
                               res->live_blocks,
                               res->live_bytes,
                               res->root_bytes,
                               (written == lost ? MTF_REACHF_LAST : 0) |
                                   (res->others_running ? MTF_REACHF_RUNNING : 0),
                               (uint32_t)k };
        struct iovec v[2] = { { &h, sizeof h }, { e, k * sizeof *e } };
        if (mt_writer_record(MTF_REC_REACH, v, 2) != 0)
            rc = -1;
    } while (rc == 0 && written < lost);
    mt_pages_unmap(e, batch * sizeof *e);
    return rc;
}

static int count_threads(void)
{
    char buf[4096];
    if (mt_read_file("/proc/self/status", buf, sizeof buf) == 0)
        return 1;
    const char *p = strstr(buf, "\nThreads:");
    if (p == NULL)
        return 1;
    p += 9;
    while (*p == ' ' || *p == '\t')
        p++;
    int n = 0;
    while (*p >= '0' && *p <= '9')
        n = n * 10 + (*p++ - '0');
    return n;
}

#define MAPS_BYTES  (4u << 20)
#define MAX_REGIONS 65536
#define MAX_ROOTS   (3 * MAX_REGIONS)

#define SCRUB_BYTES (64u << 10)

static MT_NOINLINE void scrub(void)
{
    volatile uint64_t junk[SCRUB_BYTES / 8];
    for (size_t i = 0; i < SCRUB_BYTES / 8; i++)
        junk[i] = 0;
    __asm__("" ::"r"(junk) : "memory");
}

void mt_reach_scrub_stack(void)
{
    if (mt_live_enabled())
        scrub();
}

int mt_reach_run(mt_reach_roots_fn extra, struct mt_reach_result *res)
{
    memset(res, 0, sizeof *res);
    if (!mt_live_enabled())
        return -1;
    struct mt_live_block *b;
    size_t n = mt_live_snapshot(&b);
    if (n == 0 && mt_live_count() != 0)
        return -1;
    char *maps = mt_pages_map(MAPS_BYTES, 0);
    struct rootset rs = { 0 };
    rs.reg = mt_pages_map(MAX_REGIONS * sizeof *rs.reg, 0);
    rs.r = mt_pages_map(MAX_ROOTS * sizeof *rs.r, 0);
    rs.cap = MAX_ROOTS;
    uint8_t *mark = n ? mt_pages_map(n, 0) : NULL;
    size_t *work = n ? mt_pages_map(n * sizeof *work, 0) : NULL;
    int rc = -1;
    if (maps == NULL || rs.reg == NULL || rs.r == NULL || (n && (mark == NULL || work == NULL)))
        goto out;
    rs.nreg = read_maps(rs.reg, MAX_REGIONS, maps, MAPS_BYTES);
    struct phdr_ctx pc = { &rs, (uint64_t)(uintptr_t)&mt_reach_run };
    dl_iterate_phdr(module_roots, &pc);
    stack_roots(&rs);
    if (extra != NULL)
        extra(visit_root, &rs);
    struct mt_reach_ranges roots = { (const uint64_t(*)[2])rs.r, rs.n };
    mt_reach_classify(b, n, &roots, mark, work);
    res->live_blocks = n;
    res->root_bytes = rs.bytes;
    res->others_running = count_threads() > 1;
    for (size_t i = 0; i < n; i++) {
        res->live_bytes += b[i].size;
        if (mark[i] == MT_REACH_DIRECT) {
            res->direct_blocks++;
            res->direct_bytes += b[i].size;
        } else if (mark[i] == MT_REACH_INDIRECT) {
            res->indirect_blocks++;
            res->indirect_bytes += b[i].size;
        }
    }
    rc = write_records(b, n, mark, res);
out:
    mt_pages_unmap(work, n * sizeof *work);
    mt_pages_unmap(mark, n);
    mt_pages_unmap(rs.r, MAX_ROOTS * sizeof *rs.r);
    mt_pages_unmap(rs.reg, MAX_REGIONS * sizeof *rs.reg);
    mt_pages_unmap(maps, MAPS_BYTES);
    mt_live_release(b, n);
    return rc;
}
