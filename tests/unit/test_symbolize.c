/* report/symbolize.c: offline symbolization. The fixtures are real programs compiled at test time
 * with -g -O2 into a temporary directory (tests/progs/sym_target.c, sym_target_cxx.cc); each run
 * prints what the shim would have recorded (load bias, PT_LOAD segments, build id) and return
 * addresses taken at known source lines, and the test resolves them after the process is gone,
 * as the report does. Other modules are described by hand (libmemtrace.so at a chosen base from
 * its ELF headers, a vDSO, missing or unreadable files, reused address ranges).
 */
#include <criterion/criterion.h>
#include <elfutils/libdwelf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "memtrace/format.h"
#include "reader.h"
#include "symbolize.h"

static void sym_setup(void)
{
    h_tmpdir_setup();
    unsetenv("DEBUGINFOD_URLS"); /* hermetic: debug info comes from the fixtures only */
}

TestSuite(symbolize, .init = sym_setup, .fini = h_tmpdir_teardown, .timeout = 60);

/* ---- fixtures -------------------------------------------------------------------------------- */

#define FX_MAX_SEGS  16
#define FX_MAX_SITES 4

/* What a fixture run printed: the shim's view of the executable plus the recorded sites. */
struct fx {
    char path[4096];
    uint64_t base;
    struct mtf_segment segs[FX_MAX_SEGS];
    uint32_t nseg;
    uint8_t build_id[64];
    uint32_t build_id_len;
    struct fx_site {
        char name[32];
        uint64_t ra;
        int line, outer_line;
    } sites[FX_MAX_SITES];
    int nsites;
};

static const char *tmp_file(const char *name)
{
    static char buf[4][4096];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s", h_tmpdir(), name);
    return p;
}

/* Run a tool to completion; fails the test unless it exits 0. */
static void run_ok(char *const argv[])
{
    struct h_run r = h_run(argv, NULL, 0, NULL, 60);
    cr_assert(r.exited && r.status == 0, "%s failed (status %d): %s", argv[0], r.status, r.err);
    h_run_free(&r);
}

/* Compile tests/progs/<src> with -g -O2 (plus `define`, may be NULL) into the tmpdir as `out`. */
static const char *compile(const char *compiler, const char *src, const char *out,
                           const char *define)
{
    const char *exe = tmp_file(out);
    char srcpath[4096];
    h_find_source(src, srcpath, sizeof srcpath);
    char *argv[] = { (char *)compiler, "-g",           "-O2", "-D_GNU_SOURCE", "-o", (char *)exe,
                     srcpath,          (char *)define, NULL };
    run_ok(argv);
    return exe;
}

static void parse_hex(const char *hex, uint8_t *out, uint32_t *len, size_t cap)
{
    size_t n = strlen(hex) / 2;
    cr_assert(n <= cap);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        cr_assert(sscanf(hex + 2 * i, "%2x", &v) == 1);
        out[i] = (uint8_t)v;
    }
    *len = (uint32_t)n;
}

/* Run the fixture executable `exe` and parse what it printed. */
static void fx_run(const char *exe, struct fx *fx)
{
    memset(fx, 0, sizeof *fx);
    snprintf(fx->path, sizeof fx->path, "%s", exe);
    char *argv[] = { (char *)exe, NULL };
    struct h_run r = h_run(argv, NULL, 0, NULL, 30);
    cr_assert(r.exited && r.status == 0, "%s failed: %s", exe, r.err);
    char *save = NULL;
    for (char *line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        unsigned long a, b;
        unsigned flags;
        char word[160], name[32];
        int l1, l2;
        if (sscanf(line, "base %lx", &a) == 1) {
            fx->base = a;
        } else if (sscanf(line, "seg %lx %lx %u", &a, &b, &flags) == 3) {
            cr_assert(fx->nseg < FX_MAX_SEGS);
            fx->segs[fx->nseg++] = (struct mtf_segment){ .vaddr = a, .memsz = b, .pflags = flags };
        } else if (sscanf(line, "build_id %159s", word) == 1) {
            parse_hex(word, fx->build_id, &fx->build_id_len, sizeof fx->build_id);
        } else if (sscanf(line, "site %31s %lx %d %d", name, &a, &l1, &l2) == 4) {
            cr_assert(fx->nsites < FX_MAX_SITES);
            struct fx_site *s = &fx->sites[fx->nsites++];
            memcpy(s->name, name, sizeof s->name);
            s->ra = a;
            s->line = l1;
            s->outer_line = l2;
        }
    }
    h_run_free(&r);
    cr_assert(fx->nseg > 0 && fx->nsites > 0, "%s printed no map or no site", exe);
}

static const struct fx_site *fx_site(const struct fx *fx, const char *name)
{
    for (int i = 0; i < fx->nsites; i++)
        if (strcmp(fx->sites[i].name, name) == 0)
            return &fx->sites[i];
    cr_assert_fail("no site %s", name);
    return NULL;
}

/* The LOAD entry the shim would have written for the fixture's executable, loaded at ts_ns. */
static struct rd_module fx_module(const struct fx *fx, const char *path, uint32_t id,
                                  uint64_t ts_ns)
{
    return (struct rd_module){
        .id = id,
        .action = MTF_MOD_LOAD,
        .flags = MTF_MODF_MAIN,
        .ts_ns = ts_ns,
        .base = fx->base,
        .path = path,
        .build_id = fx->build_id_len ? fx->build_id : NULL,
        .build_id_len = fx->build_id_len,
        .nseg = fx->nseg,
        .segs = fx->segs,
    };
}

static void add(struct symbolizer *s, const struct rd_module *m)
{
    cr_assert(sym_module(s, m) == 0, "sym_module %s", m->path);
}

static const char *base_name(const char *path)
{
    if (path == NULL)
        return "(null)";
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static const char *str_or_null(const char *s)
{
    return s ? s : "(null)";
}

/* A fresh -g -O2 build of a fixture, run once; its module fed to a new symbolizer at ts 100. */
static struct symbolizer *fx_loaded(const char *compiler, const char *src, struct fx *fx)
{
    const char *exe = compile(compiler, src, "target", NULL);
    fx_run(exe, fx);
    struct symbolizer *s = sym_new();
    struct rd_module m = fx_module(fx, fx->path, 1, 100);
    add(s, &m);
    return s;
}

/* ---- DWARF: names, lines, inline chains ------------------------------------------------------ */

Test(symbolize, return_address_resolves_to_the_call_line_not_the_next_statement)
{
    struct fx fx;
    struct symbolizer *s = fx_loaded("cc", "sym_target.c", &fx);
    const struct fx_site *site = fx_site(&fx, "plain");
    struct sym_frame f[8];
    int n = sym_resolve(s, site->ra, 1000, 1, f, 8);
    cr_assert_eq(n, 1, "a call outside any inlined code is one frame (got %d)", n);
    cr_assert_str_eq(str_or_null(f[0].function), "plain_caller");
    cr_assert_str_eq(base_name(f[0].file), "sym_target.c");
    cr_assert_eq(f[0].line, (unsigned)site->line, "line %u, the call is on %d (next statement %d)",
                 f[0].line, site->line, site->line + 1);
    cr_assert_str_eq(f[0].module, fx.path);
    cr_assert_eq(f[0].module_offset, site->ra - fx.base);
    cr_assert_eq(f[0].inlined, 0);

    /* An exact pc (is_return_address 0) on the call instruction gives the same line. */
    n = sym_resolve(s, site->ra - 1, 1000, 0, f, 8);
    cr_assert_eq(n, 1);
    cr_assert_eq(f[0].line, (unsigned)site->line);
    cr_assert_eq(f[0].module_offset, site->ra - 1 - fx.base);
    sym_free(s);
}

Test(symbolize, inlined_call_gives_inline_frame_then_its_caller)
{
    struct fx fx;
    struct symbolizer *s = fx_loaded("cc", "sym_target.c", &fx);
    const struct fx_site *site = fx_site(&fx, "inline");
    struct sym_frame f[8];
    int n = sym_resolve(s, site->ra, 1000, 1, f, 8);
    cr_assert_eq(n, 2, "inl_helper inlined into inl_outer: two frames (got %d)", n);
    cr_assert_str_eq(str_or_null(f[0].function), "inl_helper");
    cr_assert_str_eq(base_name(f[0].file), "sym_target.c");
    cr_assert_eq(f[0].line, (unsigned)site->line, "inner call line %u, expected %d", f[0].line,
                 site->line);
    cr_assert_eq(f[0].inlined, 1, "the innermost frame was inlined into the next");
    cr_assert_str_eq(str_or_null(f[1].function), "inl_outer");
    cr_assert_str_eq(base_name(f[1].file), "sym_target.c");
    cr_assert_eq(f[1].line, (unsigned)site->outer_line, "outer call line %u, expected %d",
                 f[1].line, site->outer_line);
    cr_assert_eq(f[1].inlined, 0, "the last frame is the real function");
    cr_assert_str_eq(f[0].file, f[1].file, "the full path, the same for both");
    cr_assert_eq(f[0].file[0], '/', "full path: %s", f[0].file);
    cr_assert_eq(f[0].module_offset, site->ra - fx.base);
    cr_assert_eq(f[1].module_offset, site->ra - fx.base);

    /* max 1: the innermost frame only, still marked inlined. */
    n = sym_resolve(s, site->ra, 1000, 1, f, 1);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(str_or_null(f[0].function), "inl_helper");
    cr_assert_eq(f[0].inlined, 1);
    sym_free(s);
}

Test(symbolize, cxx_names_are_demangled)
{
    struct fx fx;
    struct symbolizer *s = fx_loaded("c++", "sym_target_cxx.cc", &fx);
    const struct fx_site *site = fx_site(&fx, "method");
    struct sym_frame f[8];
    int n = sym_resolve(s, site->ra, 1000, 1, f, 8);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(str_or_null(f[0].function), "ns::Klass::method(int)");
    cr_assert_str_eq(base_name(f[0].file), "sym_target_cxx.cc");
    cr_assert_eq(f[0].line, (unsigned)site->line);
    sym_free(s);
}

Test(symbolize, repeated_lookups_return_the_cached_strings)
{
    struct fx fx;
    struct symbolizer *s = fx_loaded("cc", "sym_target.c", &fx);
    const struct fx_site *site = fx_site(&fx, "inline");
    struct sym_frame a[4], b[4];
    int na = sym_resolve(s, site->ra, 1000, 1, a, 4);
    int nb = sym_resolve(s, site->ra, 2000, 1, b, 4);
    cr_assert_eq(na, nb);
    for (int i = 0; i < na; i++) {
        cr_assert_eq(a[i].function, b[i].function, "same pointer: served from the cache");
        cr_assert_eq(a[i].file, b[i].file);
        cr_assert_eq(a[i].line, b[i].line);
    }
    sym_free(s);
}

/* ---- without debug info ---------------------------------------------------------------------- */

Test(symbolize, symbol_table_names_and_demangles_without_debug_info)
{
    struct fx fx;
    const char *exe = compile("c++", "sym_target_cxx.cc", "target", NULL);
    fx_run(exe, &fx);
    const char *copy = tmp_file("target.nodebug");
    char *argv[] = { "objcopy", "--strip-debug", (char *)exe, (char *)copy, NULL };
    run_ok(argv);
    struct symbolizer *s = sym_new();
    struct rd_module m = fx_module(&fx, copy, 1, 100);
    add(s, &m);
    struct sym_frame f[4];
    int n = sym_resolve(s, fx_site(&fx, "method")->ra, 1000, 1, f, 4);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(str_or_null(f[0].function), "ns::Klass::method(int)", "from .symtab");
    cr_assert_null(f[0].file, "no line table without debug info");
    cr_assert_eq(f[0].line, 0);
    cr_assert_eq(sym_stale(s), 0, "strip keeps the build id");
    sym_free(s);
}

Test(symbolize, stripped_file_gives_module_and_offset)
{
    struct fx fx;
    const char *exe = compile("cc", "sym_target.c", "target", NULL);
    fx_run(exe, &fx);
    const char *copy = tmp_file("target.stripped");
    char *argv[] = { "objcopy", "--strip-all", (char *)exe, (char *)copy, NULL };
    run_ok(argv);
    struct symbolizer *s = sym_new();
    struct rd_module m = fx_module(&fx, copy, 1, 100);
    add(s, &m);
    const struct fx_site *site = fx_site(&fx, "plain");
    struct sym_frame f[4];
    int n = sym_resolve(s, site->ra, 1000, 1, f, 4);
    cr_assert_eq(n, 1);
    cr_assert_null(f[0].function, "static function, no .symtab: got %s", f[0].function);
    cr_assert_null(f[0].file);
    cr_assert_str_eq(f[0].module, copy);
    cr_assert_eq(f[0].module_offset, site->ra - fx.base);
    cr_assert_eq(sym_stale(s), 0);
    sym_free(s);
}

Test(symbolize, separate_debug_info_is_found_through_debuglink)
{
    struct fx fx;
    const char *exe = compile("cc", "sym_target.c", "target", NULL);
    fx_run(exe, &fx);
    const char *dbg = tmp_file("target.debug");
    const char *linked = tmp_file("target.linked");
    char link_opt[4200];
    snprintf(link_opt, sizeof link_opt, "--add-gnu-debuglink=%s", dbg);
    char *keep[] = { "objcopy", "--only-keep-debug", (char *)exe, (char *)dbg, NULL };
    char *strip[] = { "objcopy", "--strip-all", link_opt, (char *)exe, (char *)linked, NULL };
    run_ok(keep);
    run_ok(strip);
    struct symbolizer *s = sym_new();
    struct rd_module m = fx_module(&fx, linked, 1, 100);
    add(s, &m);
    const struct fx_site *site = fx_site(&fx, "inline");
    struct sym_frame f[4];
    int n = sym_resolve(s, site->ra, 1000, 1, f, 4);
    cr_assert_eq(n, 2, "inline chain from target.debug next to the stripped file (got %d)", n);
    cr_assert_str_eq(str_or_null(f[0].function), "inl_helper");
    cr_assert_eq(f[0].line, (unsigned)site->line);
    cr_assert_str_eq(str_or_null(f[1].function), "inl_outer");
    cr_assert_eq(f[1].line, (unsigned)site->outer_line);
    cr_assert_str_eq(f[0].module, linked, "the module is the file that was loaded");
    sym_free(s);
}

/* ---- files that are not the traced ones ------------------------------------------------------ */

Test(symbolize, rebuilt_file_is_stale_and_gives_module_and_offset)
{
    struct fx fx;
    const char *exe = compile("cc", "sym_target.c", "target", NULL);
    fx_run(exe, &fx);
    cr_assert(fx.build_id_len > 0, "the toolchain writes build ids");
    compile("cc", "sym_target.c", "target", "-DSYM_TARGET_ALT"); /* same path, new build id */
    struct symbolizer *s = sym_new();
    struct rd_module m = fx_module(&fx, exe, 1, 100);
    add(s, &m);
    cr_assert_eq(sym_stale(s), 0, "nothing opened yet");
    struct sym_frame f[4];
    for (int i = 0; i < fx.nsites; i++) {
        int n = sym_resolve(s, fx.sites[i].ra, 1000, 1, f, 4);
        cr_assert_eq(n, 1);
        cr_assert_null(f[0].function, "symbols of another build are not trusted: got %s",
                       f[0].function);
        cr_assert_null(f[0].file);
        cr_assert_str_eq(f[0].module, exe);
        cr_assert_eq(f[0].module_offset, fx.sites[i].ra - fx.base);
    }
    cr_assert_eq(sym_stale(s), 1, "one stale module, counted once");
    sym_free(s);
}

Test(symbolize, without_recorded_build_id_segments_decide)
{
    struct fx fx;
    const char *exe = compile("cc", "sym_target.c", "target", NULL);
    fx_run(exe, &fx);
    struct symbolizer *s = sym_new();
    struct rd_module m = fx_module(&fx, exe, 1, 100);
    m.build_id = NULL;
    m.build_id_len = 0;
    add(s, &m);
    struct sym_frame f[4];
    sym_resolve(s, fx_site(&fx, "plain")->ra, 1000, 1, f, 4);
    cr_assert_str_eq(str_or_null(f[0].function), "plain_caller", "same segments: trusted");
    cr_assert_eq(sym_stale(s), 0);
    sym_free(s);

    s = sym_new();
    fx.segs[fx.nseg - 1].memsz += 0x1000; /* the traced file's data segment was larger */
    m = fx_module(&fx, exe, 1, 100);
    m.build_id = NULL;
    m.build_id_len = 0;
    add(s, &m);
    sym_resolve(s, fx_site(&fx, "plain")->ra, 1000, 1, f, 4);
    cr_assert_null(f[0].function);
    cr_assert_eq(sym_stale(s), 1);
    sym_free(s);
}

Test(symbolize, missing_or_unreadable_file_gives_module_and_offset)
{
    struct mtf_segment seg = { .vaddr = 0x1000, .memsz = 0x4000, .pflags = 5 };
    const char *junk = tmp_file("libjunk.so");
    cr_assert_eq(h_write_file(junk, "not an ELF file\n", 16), 0);
    const char *paths[] = { "/nonexistent/libgone.so", junk, h_tmpdir() /* a directory */ };
    struct symbolizer *s = sym_new();
    for (uint32_t i = 0; i < 3; i++) {
        struct rd_module m = { .id = i + 1,
                               .action = MTF_MOD_LOAD,
                               .ts_ns = 100,
                               .base = 0x10000000ULL * (i + 1),
                               .path = paths[i],
                               .nseg = 1,
                               .segs = &seg };
        add(s, &m);
    }
    for (uint32_t i = 0; i < 3; i++) {
        struct sym_frame f[4];
        uint64_t pc = 0x10000000ULL * (i + 1) + 0x1234;
        int n = sym_resolve(s, pc, 1000, 1, f, 4);
        cr_assert_eq(n, 1, "%s", paths[i]);
        cr_assert_null(f[0].function);
        cr_assert_null(f[0].file);
        cr_assert_str_eq(f[0].module, paths[i]);
        cr_assert_eq(f[0].module_offset, 0x1234);
    }
    cr_assert_eq(sym_stale(s), 0, "missing is not stale");
    sym_free(s);
}

/* ---- special modules and addresses ----------------------------------------------------------- */

Test(symbolize, vdso_is_named_with_its_offset)
{
    struct mtf_segment seg = { .vaddr = 0, .memsz = 0x2000, .pflags = 5 };
    struct rd_module m = { .id = 1,
                           .action = MTF_MOD_LOAD,
                           .flags = MTF_MODF_VDSO,
                           .ts_ns = 1,
                           .base = 0x7ffd0000ULL,
                           .path = "linux-vdso.so.1",
                           .nseg = 1,
                           .segs = &seg };
    struct symbolizer *s = sym_new();
    add(s, &m);
    struct sym_frame f[4];
    int n = sym_resolve(s, 0x7ffd0a31ULL, 10, 1, f, 4);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(str_or_null(f[0].module), "[vdso]");
    cr_assert_eq(f[0].module_offset, 0xa31);
    cr_assert_null(f[0].function);
    sym_free(s);
}

Test(symbolize, address_in_no_module_gives_one_empty_frame)
{
    struct symbolizer *s = sym_new();
    struct sym_frame f[4];
    const uint64_t pcs[] = { 0, 1, 0x10, UINT64_MAX };
    for (size_t i = 0; i < sizeof pcs / sizeof pcs[0]; i++) {
        for (int ra = 0; ra <= 1; ra++) {
            memset(f, 0xa5, sizeof f);
            int n = sym_resolve(s, pcs[i], 0, ra, f, 4);
            cr_assert_eq(n, 1, "pc %#llx", (unsigned long long)pcs[i]);
            cr_assert_null(f[0].module);
            cr_assert_null(f[0].function);
            cr_assert_null(f[0].file);
            cr_assert_eq(f[0].line, 0);
            cr_assert_eq(f[0].module_offset, pcs[i]);
            cr_assert_eq(f[0].inlined, 0);
        }
    }
    cr_assert_eq(sym_resolve(s, 0x10, 0, 1, f, 0), 0, "max 0 writes nothing");
    sym_free(s);
}

Test(symbolize, reused_range_picks_the_module_loaded_at_stack_time)
{
    struct mtf_segment seg = { .vaddr = 0, .memsz = 0x10000, .pflags = 5 };
    struct rd_module a = { .id = 3,
                           .action = MTF_MOD_LOAD,
                           .ts_ns = 100,
                           .base = 0x40000000,
                           .path = "/gone/liba.so",
                           .nseg = 1,
                           .segs = &seg };
    struct rd_module a_gone = { .id = 3, .action = MTF_MOD_UNLOAD, .ts_ns = 200 };
    struct rd_module b = { .id = 4,
                           .action = MTF_MOD_LOAD,
                           .ts_ns = 300,
                           .base = 0x40000000,
                           .path = "/gone/libb.so",
                           .nseg = 1,
                           .segs = &seg };
    struct symbolizer *s = sym_new();
    add(s, &a);
    add(s, &a_gone);
    add(s, &b);
    struct {
        uint64_t ts_ns;
        const char *want;
    } cases[] = {
        { 150, "/gone/liba.so" }, /* loaded then */
        { 350, "/gone/libb.so" }, /* loaded then */
        { 150, "/gone/liba.so" }, /* the cache does not mix them up */
        { 250, "/gone/liba.so" }, /* none: the one loaded last before */
        { 50, "/gone/liba.so" },  /* none yet: the first loaded after */
        { 351, "/gone/libb.so" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sym_frame f[2];
        sym_resolve(s, 0x40001235, cases[i].ts_ns, 1, f, 2);
        cr_assert_str_eq(str_or_null(f[0].module), cases[i].want, "ts %llu",
                         (unsigned long long)cases[i].ts_ns);
        cr_assert_eq(f[0].module_offset, 0x1235);
    }
    sym_free(s);
}

Test(symbolize, unload_of_unknown_module_is_reported)
{
    struct symbolizer *s = sym_new();
    struct rd_module m = { .id = 9, .action = MTF_MOD_UNLOAD, .ts_ns = 5 };
    cr_assert_eq(sym_module(s, &m), -ENOENT);
    m.action = 7;
    cr_assert_eq(sym_module(s, &m), -EINVAL);
    sym_free(s);
}

/* libmemtrace.so described from its ELF headers at a chosen base: the shim predicate, and a
 * symbol looked up by its .symtab address. */
Test(symbolize, shim_module_is_recognised_and_resolved_at_a_chosen_base)
{
    const char *shim = h_path("libmemtrace.so");
    int fd = open(shim, O_RDONLY | O_CLOEXEC);
    cr_assert(fd >= 0, "%s: %s (build it first: make all)", shim, strerror(errno));
    elf_version(EV_CURRENT);
    Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
    cr_assert_not_null(elf);
    struct mtf_segment segs[FX_MAX_SEGS];
    uint32_t nseg = 0;
    size_t phnum;
    cr_assert_eq(elf_getphdrnum(elf, &phnum), 0);
    for (size_t i = 0; i < phnum; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, (int)i, &ph) != NULL && ph.p_type == PT_LOAD && nseg < FX_MAX_SEGS)
            segs[nseg++] = (struct mtf_segment){ ph.p_vaddr, ph.p_memsz, ph.p_flags, 0 };
    }
    const void *id = NULL;
    ssize_t idlen = dwelf_elf_gnu_build_id(elf, &id);
    uint64_t func = 0;
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(elf, scn)) != NULL && func == 0) {
        GElf_Shdr sh;
        if (gelf_getshdr(scn, &sh) == NULL || sh.sh_type != SHT_SYMTAB)
            continue;
        Elf_Data *data = elf_getdata(scn, NULL);
        for (size_t i = 0; data && i < sh.sh_size / sh.sh_entsize; i++) {
            GElf_Sym sym;
            const char *name =
                gelf_getsym(data, (int)i, &sym) ? elf_strptr(elf, sh.sh_link, sym.st_name) : NULL;
            if (name && strcmp(name, "mt_modules_update") == 0)
                func = sym.st_value;
        }
    }
    cr_assert(func != 0, "mt_modules_update in %s's .symtab", shim);

    const uint64_t base = 0x7f1200000000ULL;
    struct rd_module m = { .id = 2,
                           .action = MTF_MOD_LOAD,
                           .flags = MTF_MODF_SHIM,
                           .ts_ns = 10,
                           .base = base,
                           .path = shim,
                           .build_id = idlen > 0 ? id : NULL,
                           .build_id_len = idlen > 0 ? (uint32_t)idlen : 0,
                           .nseg = nseg,
                           .segs = segs };
    struct mtf_segment mseg = { .vaddr = 0, .memsz = 0x10000, .pflags = 5 };
    struct rd_module main_m = { .id = 1,
                                .action = MTF_MOD_LOAD,
                                .flags = MTF_MODF_MAIN,
                                .ts_ns = 10,
                                .base = 0x555500000000ULL,
                                .path = "/gone/app",
                                .nseg = 1,
                                .segs = &mseg };
    struct symbolizer *s = sym_new();
    add(s, &main_m);
    add(s, &m);
    cr_assert_eq(sym_is_shim(s, base + func + 4, 20), 1);
    cr_assert_eq(sym_is_shim(s, 0x555500000100ULL, 20), 0, "main executable");
    cr_assert_eq(sym_is_shim(s, 0x1000, 20), 0, "no module");

    struct sym_frame f[8];
    int n = sym_resolve(s, base + func + 4, 20, 0, f, 8);
    cr_assert(n >= 1);
    cr_assert_str_eq(str_or_null(f[n - 1].function), "mt_modules_update");
    cr_assert_str_eq(f[n - 1].module, shim);
    cr_assert_eq(f[n - 1].module_offset, func + 4);
    cr_assert_eq(sym_stale(s), 0);

    /* After the shim's range is reused by another module, only older stacks are the shim's. */
    struct rd_module gone = { .id = 2, .action = MTF_MOD_UNLOAD, .ts_ns = 30 };
    struct rd_module other = { .id = 3,
                               .action = MTF_MOD_LOAD,
                               .ts_ns = 40,
                               .base = base,
                               .path = "/gone/libother.so",
                               .nseg = nseg,
                               .segs = segs };
    add(s, &gone);
    add(s, &other);
    cr_assert_eq(sym_is_shim(s, base + func + 4, 20), 1);
    cr_assert_eq(sym_is_shim(s, base + func + 4, 50), 0);
    sym_free(s);
    elf_end(elf);
    close(fd);
}
