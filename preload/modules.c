/* Module map records. The scratch buffer and the table of written modules are protected by a
 * try-lock: a thread that finds it taken skips the update instead of waiting, so a free() that
 * the loader makes while holding its own lock can never wait for us. */
#include "modules.h"

#include <elf.h>
#include <link.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "memtrace/format.h"
#include "mt.h"
#include "writer.h"

#define MAX_MODULES  4096
#define SCRATCH      (64U << 10)
#define MAX_SEGS     16
#define BUILD_ID_MAX 64

struct known {
    uint64_t base;
    uint64_t name_hash;
    uint32_t id;
    uint8_t seen;
};

static atomic_flag busy = ATOMIC_FLAG_INIT;
static struct known known[MAX_MODULES];
static uint32_t nknown, next_id;
static unsigned long long last_adds, last_subs;
static int have_counters;
static unsigned char scratch[SCRATCH] __attribute__((aligned(8)));
static size_t used;
static uint32_t nentries;
static uint64_t batch_ts;

static uint64_t now(void)
{
    return mt_clock_ns(); /* on the events' clock: the report picks a module by time */
}

static void flush_batch(void)
{
    if (nentries == 0)
        return;
    struct mtf_modules m = { batch_ts, nentries, 0 };
    struct iovec v[2] = { { &m, sizeof m }, { scratch, used } };
    int rc = mt_writer_record(MTF_REC_MODULES, v, 2);
    (void)rc; /* a failed writer has reported it and stops tracing */
    used = 0;
    nentries = 0;
}

static void put(const void *p, size_t n)
{
    memcpy(scratch + used, p, n);
    used += n;
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

static size_t build_id(const struct dl_phdr_info *info, unsigned char *out)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        const unsigned char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            size_t name = (nh->n_namesz + 3) & ~3U, desc = (nh->n_descsz + 3) & ~3U;
            const unsigned char *d = p + sizeof *nh + name;
            if (d + desc > end)
                break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
                memcmp(p + sizeof *nh, "GNU", 4) == 0) {
                size_t k = nh->n_descsz < BUILD_ID_MAX ? nh->n_descsz : BUILD_ID_MAX;
                memcpy(out, d, k);
                return k;
            }
            p = d + desc;
        }
    }
    return 0;
}

static void emit_load(const struct dl_phdr_info *info, uint32_t id, uint16_t flags,
                      const char *name)
{
    unsigned char bid[BUILD_ID_MAX];
    size_t bid_len = build_id(info, bid);
    struct mtf_segment segs[MAX_SEGS];
    uint16_t nseg = 0;
    for (int i = 0; i < info->dlpi_phnum && nseg < MAX_SEGS; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        segs[nseg] = (struct mtf_segment){ ph->p_vaddr, ph->p_memsz, ph->p_flags, 0 };
        nseg++;
    }
    size_t path_len = strlen(name);
    if (path_len > 4000)
        path_len = 4000;
    size_t need = sizeof(struct mtf_module) + path_len + bid_len + nseg * sizeof(segs[0]) + 8;
    if (used + need > SCRATCH)
        flush_batch();
    struct mtf_module m = {
        id, MTF_MOD_LOAD, flags, info->dlpi_addr, (uint32_t)path_len, (uint16_t)bid_len, nseg
    };
    put(&m, sizeof m);
    put(name, path_len);
    put(bid, bid_len);
    /* entries are packed without padding; readers copy segments out before using them */
    put(segs, nseg * sizeof(segs[0]));
    nentries++;
}

static void emit_unload(uint32_t id)
{
    if (used + sizeof(struct mtf_module) > SCRATCH)
        flush_batch();
    struct mtf_module m = { id, MTF_MOD_UNLOAD, 0, 0, 0, 0, 0 };
    put(&m, sizeof m);
    nentries++;
}

static char exe_path[4096];

static int visit(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    const char *name = info->dlpi_name;
    uint16_t flags = 0;
    if (name == NULL || name[0] == '\0') { /* the loader gives the executable no name */
        flags = MTF_MODF_MAIN;
        if (exe_path[0] == '\0') {
            long k = syscall(SYS_readlink, "/proc/self/exe", exe_path, sizeof exe_path - 1);
            exe_path[k > 0 ? k : 0] = '\0';
        }
        name = exe_path;
    }
    uintptr_t ehdr = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type != PT_LOAD)
            continue;
        if (ehdr >= lo && ehdr < lo + ph->p_memsz)
            flags |= MTF_MODF_VDSO;
        if ((uintptr_t)&mt_modules_update >= lo && (uintptr_t)&mt_modules_update < lo + ph->p_memsz)
            flags |= MTF_MODF_SHIM;
    }
    uint64_t h = hash_name(name);
    for (uint32_t i = 0; i < nknown; i++)
        if (known[i].base == info->dlpi_addr && known[i].name_hash == h) {
            known[i].seen = 1;
            return 0;
        }
    if (nknown == MAX_MODULES)
        return 0;
    known[nknown] = (struct known){ info->dlpi_addr, h, ++next_id, 1 };
    nknown++;
    emit_load(info, next_id, flags, name);
    return 0;
}

static int counters(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)arg;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        unsigned long long *c = arg;
        c[0] = info->dlpi_adds;
        c[1] = info->dlpi_subs;
        c[2] = 1;
    }
    return 1; /* the counters are the same in every entry: stop after the first */
}

void mt_modules_update(int force)
{
    if (!mt_writer_ok())
        return;
    if (atomic_flag_test_and_set_explicit(&busy, memory_order_acquire))
        return;
    unsigned long long c[3] = { 0, 0, 0 };
    dl_iterate_phdr(counters, c);
    if (force || !have_counters || !c[2] || c[0] != last_adds || c[1] != last_subs) {
        last_adds = c[0];
        last_subs = c[1];
        have_counters = c[2] != 0;
        batch_ts = now();
        for (uint32_t i = 0; i < nknown; i++)
            known[i].seen = 0;
        dl_iterate_phdr(visit, NULL);
        uint32_t keep = 0;
        for (uint32_t i = 0; i < nknown; i++) {
            if (!known[i].seen)
                emit_unload(known[i].id);
            else
                known[keep++] = known[i];
        }
        nknown = keep;
        flush_batch();
    }
    atomic_flag_clear_explicit(&busy, memory_order_release);
}

void mt_modules_reset(void)
{
    atomic_flag_clear(&busy); /* a fork child inherits the flag of a thread that no longer runs */
    nknown = 0;
    next_id = 0;
    have_counters = 0;
    used = 0;
    nentries = 0;
}
