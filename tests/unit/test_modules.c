/* preload/modules.c: the MODULES records (docs/trace-format.md §6). Each test opens a trace in a
 * temporary directory, lets mt_modules_update write the map, and decodes it with report/reader.c.
 * Expected values come from elsewhere: dl_iterate_phdr for what is loaded, /proc/self/exe for
 * the executable, the ELF file on disk for build ids, dlinfo for a dlopen'ed library's base.
 * The runner links the preload objects, so the executable is also the module holding the shim.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memtrace/format.h"
#include "modules.h"
#include "reader.h"
#include "writer.h"

/* ---- fixture --------------------------------------------------------------------------------- */

static char md_dir[PATH_MAX];
static char md_trace[PATH_MAX + 32];

static void md_setup(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[PATH_MAX];
    snprintf(tmpl, sizeof tmpl, "%s/mt-modules-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(ne(ptr, mkdtemp(tmpl), NULL), "mkdtemp %s: %s", tmpl, strerror(errno));
    cr_assert(ne(ptr, realpath(tmpl, md_dir), NULL));
    snprintf(md_trace, sizeof md_trace, "%s/t.mtrace", md_dir);
    mt_writer_sys_default();
}

static int md_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void md_teardown(void)
{
    if (md_dir[0])
        nftw(md_dir, md_rm, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(modules, .init = md_setup, .fini = md_teardown, .timeout = 10);

static void md_open(void)
{
    int rc = mt_writer_open(md_trace, MTF_ORIGIN_START, 64);
    cr_assert(eq(int, rc, 0), "mt_writer_open(%s) = %d", md_trace, rc);
}

/* ---- decoding -------------------------------------------------------------------------------- */

struct md_entry {
    uint32_t id, action, flags;
    uint64_t ts_ns, base;
    char *path;
    uint8_t build_id[64];
    uint32_t build_id_len;
    struct mtf_segment segs[16];
    uint32_t nseg;
};

struct md_map {
    struct md_entry e[512];
    size_t n;
    uint64_t records; /* good records in the file */
};

/* Decode every MODULES entry of the trace, in file order. */
static void md_load(struct md_map *m)
{
    memset(m, 0, sizeof *m);
    struct reader *r = NULL;
    int rc = reader_open(&r, md_trace);
    cr_assert(eq(int, rc, 0), "reader_open: %s", r ? reader_error(r) : "no memory");
    struct rd_item it;
    while ((rc = reader_next(r, &it)) > 0) {
        if (it.type != RD_ITEM_MODULE)
            continue;
        cr_assert(lt(sz, m->n, sizeof m->e / sizeof m->e[0]));
        struct md_entry *e = &m->e[m->n++];
        e->id = it.module.id;
        e->action = it.module.action;
        e->flags = it.module.flags;
        e->ts_ns = it.module.ts_ns;
        e->base = it.module.base;
        e->path = strdup(it.module.path ? it.module.path : "");
        cr_assert(le(u32, it.module.build_id_len, sizeof e->build_id));
        e->build_id_len = it.module.build_id_len;
        memcpy(e->build_id, it.module.build_id, e->build_id_len);
        cr_assert(le(u32, it.module.nseg, sizeof e->segs / sizeof e->segs[0]));
        e->nseg = it.module.nseg;
        memcpy(e->segs, it.module.segs, e->nseg * sizeof e->segs[0]);
    }
    cr_assert(eq(int, rc, 0), "reader: %s", reader_error(r));
    m->records = reader_status(r)->records;
    reader_close(r);
}

static void md_free(struct md_map *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->e[i].path);
    m->n = 0;
}

/* The LOAD entry whose path contains `needle`, or NULL. */
static const struct md_entry *md_find_path(const struct md_map *m, const char *needle)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].action == MTF_MOD_LOAD && strstr(m->e[i].path, needle) != NULL)
            return &m->e[i];
    return NULL;
}

static const struct md_entry *md_find_base(const struct md_map *m, uint64_t base)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].action == MTF_MOD_LOAD && m->e[i].base == base)
            return &m->e[i];
    return NULL;
}

static off_t md_file_size(void)
{
    struct stat st;
    cr_assert(eq(int, stat(md_trace, &st), 0));
    return st.st_size;
}

/* ---- what the process has loaded, independently of modules.c ----------------------------------
 */

struct md_loaded {
    uint64_t base[512];
    char name[512][PATH_MAX];
    size_t n;
};

static int md_list_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct md_loaded *l = arg;
    if (l->n == sizeof l->base / sizeof l->base[0])
        return 1;
    l->base[l->n] = info->dlpi_addr;
    snprintf(l->name[l->n], sizeof l->name[0], "%s", info->dlpi_name ? info->dlpi_name : "");
    l->n++;
    return 0;
}

/* Read the GNU build id from the ELF file on disk (program headers, PT_NOTE). Returns its length,
 * 0 if none. */
static size_t md_file_build_id(const char *path, uint8_t *out, size_t cap)
{
    int fd = open(path, O_RDONLY);
    cr_assert(ge(int, fd, 0), "open %s: %s", path, strerror(errno));
    ElfW(Ehdr) eh;
    cr_assert(eq(long, (long)pread(fd, &eh, sizeof eh, 0), (long)sizeof eh));
    cr_assert(eq(int, memcmp(eh.e_ident, ELFMAG, SELFMAG), 0), "%s is ELF", path);
    size_t found = 0;
    for (int i = 0; i < eh.e_phnum && !found; i++) {
        ElfW(Phdr) ph;
        off_t at = (off_t)eh.e_phoff + (off_t)i * eh.e_phentsize;
        cr_assert(eq(long, (long)pread(fd, &ph, sizeof ph, at), (long)sizeof ph));
        if (ph.p_type != PT_NOTE)
            continue;
        uint8_t *notes = malloc(ph.p_filesz);
        cr_assert(ne(ptr, notes, NULL));
        cr_assert(
            eq(long, (long)pread(fd, notes, ph.p_filesz, (off_t)ph.p_offset), (long)ph.p_filesz));
        for (size_t p = 0; p + sizeof(ElfW(Nhdr)) <= ph.p_filesz;) {
            ElfW(Nhdr) nh;
            memcpy(&nh, notes + p, sizeof nh);
            size_t name_at = p + sizeof nh;
            size_t desc_at = name_at + ((nh.n_namesz + 3) & ~3U);
            if (desc_at + nh.n_descsz > ph.p_filesz)
                break;
            if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
                memcmp(notes + name_at, "GNU", 4) == 0) {
                cr_assert(le(sz, (size_t)nh.n_descsz, cap));
                memcpy(out, notes + desc_at, nh.n_descsz);
                found = nh.n_descsz;
                break;
            }
            p = desc_at + ((nh.n_descsz + 3) & ~3U);
        }
        free(notes);
    }
    close(fd);
    return found;
}

struct md_phdrs {
    uint64_t base;
    ElfW(Phdr) load[16];
    int nload;
};

static int md_phdrs_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct md_phdrs *p = arg;
    if (info->dlpi_addr != p->base)
        return 0;
    for (int i = 0; i < info->dlpi_phnum && p->nload < 16; i++)
        if (info->dlpi_phdr[i].p_type == PT_LOAD)
            p->load[p->nload++] = info->dlpi_phdr[i];
    return 1;
}

/* ---- the initial map ------------------------------------------------------------------------- */

Test(modules, first_update_lists_every_loaded_object_once)
{
    md_open();
    mt_modules_update(1);
    static struct md_map m;
    md_load(&m);
    static struct md_loaded l;
    dl_iterate_phdr(md_list_cb, &l);
    cr_expect(eq(sz, m.n, l.n), "one entry per loaded object");
    for (size_t i = 0; i < l.n; i++)
        cr_expect(ne(ptr, (void *)md_find_base(&m, l.base[i]), NULL), "%s at %#llx is listed",
                  l.name[i][0] ? l.name[i] : "(executable)", (unsigned long long)l.base[i]);
    for (size_t i = 0; i < m.n; i++) {
        cr_expect(eq(u32, m.e[i].action, MTF_MOD_LOAD));
        cr_expect(eq(u32, m.e[i].id, (uint32_t)i + 1), "ids from 1 in order");
        cr_expect(eq(u64, m.e[i].ts_ns, m.e[0].ts_ns), "one record, one time");
        cr_expect(gt(u32, m.e[i].nseg, 0), "%s has segments", m.e[i].path);
    }
    md_free(&m);
}

Test(modules, main_executable_is_flagged_main_with_its_real_path)
{
    md_open();
    mt_modules_update(1);
    static struct md_map m;
    md_load(&m);
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert(gt(long, (long)k, 0));
    exe[k] = '\0';
    static struct md_loaded l;
    dl_iterate_phdr(md_list_cb, &l);
    cr_assert(eq(str, l.name[0], ""), "dl_iterate_phdr lists the executable first, unnamed");
    const struct md_entry *e = md_find_base(&m, l.base[0]);
    cr_assert(ne(ptr, (void *)e, NULL));
    cr_expect(eq(str, e->path, exe));
    cr_expect(eq(u32, e->flags & MTF_MODF_MAIN, MTF_MODF_MAIN), "MAIN flag (flags %#x)", e->flags);
    size_t mains = 0;
    for (size_t i = 0; i < m.n; i++)
        mains += (m.e[i].flags & MTF_MODF_MAIN) != 0;
    cr_expect(eq(sz, mains, (size_t)1), "one main executable");
    md_free(&m);
}

Test(modules, module_holding_the_shim_is_flagged_shim)
{
    md_open();
    mt_modules_update(1);
    static struct md_map m;
    md_load(&m);
    Dl_info in;
    cr_assert(ne(int, dladdr((void *)&mt_modules_update, &in), 0));
    size_t shims = 0;
    for (size_t i = 0; i < m.n; i++)
        if (m.e[i].flags & MTF_MODF_SHIM) {
            shims++;
            cr_expect(eq(u64, m.e[i].base, (uint64_t)(uintptr_t)in.dli_fbase),
                      "the shim's module is the one holding mt_modules_update");
        }
    cr_expect(eq(sz, shims, (size_t)1), "exactly one module holds the shim");
    md_free(&m);
}

Test(modules, vdso_is_flagged_vdso)
{
    uintptr_t vdso = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    if (vdso == 0)
        cr_skip_test("no vDSO in this process");
    md_open();
    mt_modules_update(1);
    static struct md_map m;
    md_load(&m);
    size_t n = 0;
    for (size_t i = 0; i < m.n; i++)
        if (m.e[i].flags & MTF_MODF_VDSO) {
            n++;
            cr_expect(le(u64, m.e[i].base + m.e[i].segs[0].vaddr, (uint64_t)vdso));
        }
    cr_expect(eq(sz, n, (size_t)1), "one vDSO");
    md_free(&m);
}

Test(modules, libc_build_id_is_the_one_in_its_file)
{
    md_open();
    mt_modules_update(1);
    static struct md_map m;
    md_load(&m);
    const struct md_entry *libc = md_find_path(&m, "libc.so.6");
    cr_assert(ne(ptr, (void *)libc, NULL), "libc is listed");
    uint8_t want[64];
    size_t n = md_file_build_id(libc->path, want, sizeof want);
    cr_assert(gt(sz, n, (size_t)0), "%s has a build id note", libc->path);
    cr_expect(eq(u32, libc->build_id_len, (uint32_t)n));
    cr_expect(eq(int, memcmp(libc->build_id, want, n), 0), "same bytes as the file's note");
    md_free(&m);
}

Test(modules, segments_are_the_load_headers_with_code_among_them)
{
    md_open();
    mt_modules_update(1);
    static struct md_map m;
    md_load(&m);
    const struct md_entry *libc = md_find_path(&m, "libc.so.6");
    cr_assert(ne(ptr, (void *)libc, NULL));
    struct md_phdrs ph = { .base = libc->base };
    dl_iterate_phdr(md_phdrs_cb, &ph);
    cr_assert(eq(u32, libc->nseg, (uint32_t)ph.nload));
    int code = 0;
    for (uint32_t i = 0; i < libc->nseg; i++) {
        cr_expect(eq(u64, libc->segs[i].vaddr, ph.load[i].p_vaddr), "segment %u vaddr", i);
        cr_expect(eq(u64, libc->segs[i].memsz, ph.load[i].p_memsz), "segment %u memsz", i);
        cr_expect(eq(u32, libc->segs[i].pflags, ph.load[i].p_flags), "segment %u flags", i);
        cr_expect(eq(u32, libc->segs[i].reserved, 0));
        code |= (libc->segs[i].pflags & PF_X) != 0;
    }
    cr_expect(eq(int, code, 1), "an executable segment");
    /* getpid's address falls in that code at base + vaddr */
    uint64_t pc = (uint64_t)(uintptr_t)dlsym(RTLD_DEFAULT, "getpid");
    int inside = 0;
    for (uint32_t i = 0; i < libc->nseg; i++)
        inside |= (libc->segs[i].pflags & PF_X) && pc >= libc->base + libc->segs[i].vaddr &&
                  pc < libc->base + libc->segs[i].vaddr + libc->segs[i].memsz;
    cr_expect(eq(int, inside, 1), "getpid lies in libc's code segment");
    md_free(&m);
}

/* ---- changes --------------------------------------------------------------------------------- */

/* Libraries a test program normally never loads; the first not already loaded is used (a
 * sanitizer runtime brings libm in, for instance). dlclose really unmaps them. */
static const char *const md_candidates[] = { "libm.so.6", "libBrokenLocale.so.1", "libanl.so.1" };
static const char *md_lib; /* the one chosen */

static void *md_dlopen_fresh(void)
{
    if (md_lib == NULL)
        for (size_t i = 0; i < sizeof md_candidates / sizeof md_candidates[0] && !md_lib; i++) {
            void *h = dlopen(md_candidates[i], RTLD_NOW | RTLD_NOLOAD);
            if (h == NULL)
                md_lib = md_candidates[i];
            else
                dlclose(h);
        }
    cr_assert(ne(ptr, (void *)md_lib, NULL), "a library that is not loaded yet");
    cr_assert(eq(ptr, dlopen(md_lib, RTLD_NOW | RTLD_NOLOAD), NULL), "%s not loaded", md_lib);
    void *h = dlopen(md_lib, RTLD_NOW);
    cr_assert(ne(ptr, h, NULL), "dlopen %s: %s", md_lib, dlerror());
    return h;
}

Test(modules, dlopen_adds_one_load_entry_with_the_next_id)
{
    md_open();
    mt_modules_update(1);
    static struct md_map before, after;
    md_load(&before);
    void *h = md_dlopen_fresh();
    mt_modules_update(0);
    md_load(&after);
    cr_assert(eq(sz, after.n, before.n + 1), "one new entry");
    const struct md_entry *e = &after.e[before.n];
    cr_expect(eq(u32, e->action, MTF_MOD_LOAD));
    cr_expect(eq(u32, e->id, before.e[before.n - 1].id + 1), "the next id");
    cr_expect(ne(ptr, strstr(e->path, md_lib), NULL), "path %s", e->path);
    struct link_map *lm = NULL;
    cr_assert(eq(int, dlinfo(h, RTLD_DI_LINKMAP, &lm), 0));
    cr_expect(eq(u64, e->base, (uint64_t)lm->l_addr), "base is the load bias");
    cr_expect(eq(u32, e->flags, 0), "an ordinary library");
    cr_expect(eq(u64, after.records, before.records + 1), "in one new record");
    cr_expect(ge(u64, e->ts_ns, before.e[0].ts_ns));
    cr_expect(eq(int, dlclose(h), 0));
    md_free(&before);
    md_free(&after);
}

Test(modules, dlclose_adds_an_unload_entry_with_that_id)
{
    md_open();
    mt_modules_update(1);
    void *h = md_dlopen_fresh();
    mt_modules_update(0);
    static struct md_map loaded, unloaded;
    md_load(&loaded);
    const struct md_entry *lib = md_find_path(&loaded, md_lib);
    cr_assert(ne(ptr, (void *)lib, NULL));
    cr_assert(eq(int, dlclose(h), 0));
    cr_assert(eq(ptr, dlopen(md_lib, RTLD_NOW | RTLD_NOLOAD), NULL), "really unloaded");
    mt_modules_update(0);
    md_load(&unloaded);
    cr_assert(eq(sz, unloaded.n, loaded.n + 1), "one new entry");
    const struct md_entry *e = &unloaded.e[loaded.n];
    cr_expect(eq(u32, e->action, MTF_MOD_UNLOAD));
    cr_expect(eq(u32, e->id, lib->id), "the library's id");
    cr_expect(eq(u64, e->base, 0), "an unload repeats only the id");
    cr_expect(eq(str, e->path, ""));
    cr_expect(eq(u32, e->build_id_len, 0));
    cr_expect(eq(u32, e->nseg, 0));
    md_free(&loaded);
    md_free(&unloaded);
}

Test(modules, reloading_gets_a_new_id)
{
    md_open();
    mt_modules_update(1);
    void *h = md_dlopen_fresh();
    mt_modules_update(0);
    cr_assert(eq(int, dlclose(h), 0));
    mt_modules_update(0);
    h = md_dlopen_fresh();
    mt_modules_update(0);
    static struct md_map m;
    md_load(&m);
    uint32_t ids[2];
    int n = 0;
    for (size_t i = 0; i < m.n; i++)
        if (m.e[i].action == MTF_MOD_LOAD && strstr(m.e[i].path, md_lib) && n < 2)
            ids[n++] = m.e[i].id;
    cr_assert(eq(int, n, 2), "loaded twice");
    cr_expect(ne(u32, ids[0], ids[1]), "ids are not reused");
    cr_expect(eq(int, dlclose(h), 0));
    md_free(&m);
}

Test(modules, update_without_change_writes_nothing)
{
    md_open();
    mt_modules_update(1);
    off_t size = md_file_size();
    mt_modules_update(0);
    cr_expect(eq(long, (long)md_file_size(), (long)size), "unchanged counters: nothing");
    mt_modules_update(1);
    cr_expect(eq(long, (long)md_file_size(), (long)size), "forced re-read finds nothing new");
}

Test(modules, update_before_the_trace_is_open_writes_nothing_and_loses_nothing)
{
    mt_modules_update(1); /* no writer yet */
    md_open();
    off_t header = md_file_size();
    mt_modules_update(0);
    cr_assert(gt(long, (long)md_file_size(), (long)header), "the whole map once the file is open");
    static struct md_map m;
    md_load(&m);
    static struct md_loaded l;
    dl_iterate_phdr(md_list_cb, &l);
    cr_expect(eq(sz, m.n, l.n));
    md_free(&m);
}

Test(modules, reset_writes_the_whole_map_again_from_id_one)
{
    md_open();
    mt_modules_update(1);
    static struct md_map first, again;
    md_load(&first);
    mt_modules_reset();
    mt_modules_update(1);
    md_load(&again);
    cr_assert(eq(sz, again.n, 2 * first.n), "every module a second time");
    for (size_t i = 0; i < first.n; i++) {
        const struct md_entry *a = &first.e[i], *b = &again.e[first.n + i];
        cr_expect(eq(u32, b->id, a->id), "ids restart from 1");
        cr_expect(eq(u64, b->base, a->base));
        cr_expect(eq(str, b->path, a->path));
    }
    md_free(&first);
    md_free(&again);
}
