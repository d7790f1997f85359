/* Offline symbolizer (symbolize.h): module map from the trace, one libdw session per module
 * opened on first use, and a per-address cache of resolved frame chains.
 * Invariants: memory grows only with modules and distinct looked-up addresses (never with
 * events); every string handed out is interned here and lives until sym_free(); a lookup always
 * yields at least one frame, whatever the file on disk holds (missing, unreadable, stripped,
 * rebuilt since the run). Never prints: what could not be used is counted for the caller.
 */
#include "symbolize.h"

#include <dlfcn.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <gelf.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MAX_INLINE    64 /* deepest inline chain kept per address */
#define TABLE_MIN_CAP 256

/* The C++ runtime's demangler. Weak, so the report links without libstdc++; when it is not
 * linked in, demangler() looks for it in libstdc++.so.6 at run time, and without that names
 * stay mangled. */
extern char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status)
    __attribute__((weak));

typedef char *(*demangle_fn)(const char *, char *, size_t *, int *);

enum mod_state {
    MS_CLOSED,   /* file not looked at yet */
    MS_OK,       /* dwfl/dmod usable */
    MS_UNUSABLE, /* no file, unreadable, not ELF, or the vDSO: module + offset only */
    MS_STALE,    /* the file is not the one that was traced: module + offset only */
};

struct sym_mod {
    uint32_t id, flags;      /* MTF_MODF_* */
    uint64_t load_ts_ns;     /* from the LOAD entry */
    uint64_t unload_ts_ns;   /* valid when unloaded */
    int unloaded;            /* an UNLOAD entry for this load was seen */
    uint64_t base;           /* load bias */
    const char *path;        /* interned, as recorded */
    const char *shown;       /* what sym_frame.module says: path, "[vdso]", ... */
    uint8_t *build_id;       /* recorded, NULL when none */
    uint32_t build_id_len;   /* bytes */
    struct mtf_segment *seg; /* recorded PT_LOAD segments */
    uint32_t nseg;
    enum mod_state state;
    Dwfl *dwfl; /* one session per module: modules of different times may overlap */
    Dwfl_Module *dmod;
};

/* One cached frame; module and offset are added per call (they depend on the pc, not on the
 * looked-up address alone). */
struct cframe {
    const char *function, *file;
    unsigned line, column;
    int inlined;
};

/* Cache slot, open addressing keyed by the looked-up address: every slot of one address lies in
 * the same probe run, one per module that covered it (address reuse after dlclose). */
struct entry {
    uint64_t addr;         /* pc - 1 for a return address */
    int32_t mod;           /* index into mods, -1: in no module */
    uint8_t used;          /* slot taken */
    uint32_t nframes;      /* 0: module known, frames not resolved yet */
    struct cframe *frames; /* nframes, malloc'd */
};

struct symbolizer {
    struct sym_mod *mods;
    size_t nmods, mods_cap;
    struct entry *tab;
    size_t tab_n, tab_cap; /* cap is a power of two, load kept <= 1/2 */
    char **strs;           /* interned strings, open addressing */
    size_t strs_n, strs_cap;
    int stale;
    int demangle_looked;
    demangle_fn demangle;
    void *cxx_handle; /* dlopen'ed libstdc++, when we had to */
};

/* ---- small helpers --------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    /* splitmix64 finalizer: return addresses share their high bits, the table wants all bits */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* The interned copy of `s` (NULL stays NULL): names and paths repeat across many addresses. */
static const char *intern(struct symbolizer *s, const char *str)
{
    if (str == NULL)
        return NULL;
    if ((s->strs_n + 1) * 2 > s->strs_cap) {
        size_t cap = s->strs_cap ? s->strs_cap * 2 : TABLE_MIN_CAP;
        char **t = xmalloc(cap * sizeof *t);
        memset(t, 0, cap * sizeof *t);
        for (size_t i = 0; i < s->strs_cap; i++) {
            if (s->strs[i] == NULL)
                continue;
            size_t j = str_hash(s->strs[i]) & (cap - 1);
            while (t[j] != NULL)
                j = (j + 1) & (cap - 1);
            t[j] = s->strs[i];
        }
        free(s->strs);
        s->strs = t;
        s->strs_cap = cap;
    }
    size_t mask = s->strs_cap - 1, i = str_hash(str) & mask;
    for (; s->strs[i] != NULL; i = (i + 1) & mask)
        if (strcmp(s->strs[i], str) == 0)
            return s->strs[i];
    s->strs[i] = xstrdup(str);
    s->strs_n++;
    return s->strs[i];
}

static demangle_fn demangler(struct symbolizer *s)
{
    if (!s->demangle_looked) {
        s->demangle_looked = 1;
        s->demangle = __cxa_demangle;
        if (s->demangle == NULL) {
            /* Not linked in: the C++ runtime is on every system that ran C++ code. */
            s->cxx_handle = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_LOCAL);
            void *fn = s->cxx_handle ? dlsym(s->cxx_handle, "__cxa_demangle") : NULL;
            memcpy(&s->demangle, &fn, sizeof fn); /* POSIX: object and function pointers match */
        }
    }
    return s->demangle;
}

/* Interned, demangled when it is an Itanium C++ name and a demangler is available. */
static const char *func_name(struct symbolizer *s, const char *name)
{
    if (name == NULL || name[0] == '\0')
        return NULL;
    if (strncmp(name, "_Z", 2) == 0) {
        demangle_fn fn = demangler(s);
        int status = -1;
        char *d = fn ? fn(name, NULL, NULL, &status) : NULL;
        if (d != NULL && status == 0) {
            const char *r = intern(s, d);
            free(d);
            return r;
        }
        free(d);
    }
    return intern(s, name);
}

/* ---- module map ------------------------------------------------------------------------------ */

static int seg_covers(const struct sym_mod *m, uint64_t addr)
{
    for (uint32_t i = 0; i < m->nseg; i++)
        if (addr - (m->base + m->seg[i].vaddr) < m->seg[i].memsz) /* wraps when below */
            return 1;
    return 0;
}

static int mod_live(const struct sym_mod *m, uint64_t ts_ns)
{
    return m->load_ts_ns <= ts_ns && (!m->unloaded || ts_ns < m->unload_ts_ns);
}

/* The module holding `addr` at ts_ns, else the one loaded last before ts_ns, else the one
 * loaded first after it; -1 when no module ever covered addr. */
static int32_t mod_find(const struct symbolizer *s, uint64_t addr, uint64_t ts_ns)
{
    int32_t best = -1;
    int best_rank = 3;
    for (size_t i = 0; i < s->nmods; i++) {
        const struct sym_mod *m = &s->mods[i];
        if (!seg_covers(m, addr))
            continue;
        int rank = mod_live(m, ts_ns) ? 0 : m->load_ts_ns <= ts_ns ? 1 : 2;
        const struct sym_mod *b = best >= 0 ? &s->mods[best] : NULL;
        if (rank < best_rank || (rank == best_rank && rank < 2 && m->load_ts_ns >= b->load_ts_ns) ||
            (rank == best_rank && rank == 2 && m->load_ts_ns < b->load_ts_ns)) {
            best = (int32_t)i;
            best_rank = rank;
        }
    }
    return best;
}

int sym_module(struct symbolizer *s, const struct rd_module *m)
{
    if (m->action == MTF_MOD_UNLOAD) {
        for (size_t i = s->nmods; i-- > 0;) {
            struct sym_mod *x = &s->mods[i];
            if (x->id == m->id && !x->unloaded) {
                x->unloaded = 1;
                x->unload_ts_ns = m->ts_ns;
                return 0;
            }
        }
        return -ENOENT;
    }
    if (m->action != MTF_MOD_LOAD)
        return -EINVAL;
    if (s->nmods == s->mods_cap) {
        s->mods_cap = s->mods_cap ? s->mods_cap * 2 : 16;
        s->mods = xrealloc(s->mods, s->mods_cap * sizeof *s->mods);
    }
    struct sym_mod *x = &s->mods[s->nmods++];
    memset(x, 0, sizeof *x);
    x->id = m->id;
    x->flags = m->flags;
    x->load_ts_ns = m->ts_ns;
    x->base = m->base;
    x->path = intern(s, m->path ? m->path : "");
    if (m->flags & MTF_MODF_VDSO)
        x->shown = intern(s, "[vdso]");
    else if (x->path[0] != '\0')
        x->shown = x->path;
    else
        x->shown = intern(s, (m->flags & MTF_MODF_MAIN) ? "[main]" : "[unnamed]");
    if (m->build_id_len > 0 && m->build_id != NULL) {
        x->build_id = xmalloc(m->build_id_len);
        memcpy(x->build_id, m->build_id, m->build_id_len);
        x->build_id_len = m->build_id_len;
    }
    if (m->nseg > 0 && m->segs != NULL) {
        x->seg = xmalloc(m->nseg * sizeof *x->seg);
        memcpy(x->seg, m->segs, m->nseg * sizeof *x->seg);
        x->nseg = m->nseg;
    }
    x->state = MS_CLOSED;
    return 0;
}

/* Without a recorded build id, the PT_LOAD list is the file's fingerprint. */
static int segs_match(Dwfl_Module *dm, const struct sym_mod *m)
{
    GElf_Addr bias;
    Elf *elf = dwfl_module_getelf(dm, &bias);
    size_t phnum;
    if (elf == NULL || elf_getphdrnum(elf, &phnum) != 0)
        return 0;
    uint32_t k = 0;
    for (size_t i = 0; i < phnum; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, (int)i, &ph) == NULL || ph.p_type != PT_LOAD)
            continue;
        if (k >= m->nseg || m->seg[k].vaddr != ph.p_vaddr || m->seg[k].memsz != ph.p_memsz)
            return 0;
        k++;
    }
    return k == m->nseg;
}

static char *debuginfo_path; /* NULL: dwfl's default, ":.debug:/usr/lib/debug" */

/* Offline use: no live process. find_debuginfo looks for separate debug info by build id
 * (/usr/lib/debug/.build-id/xx/yyyy.debug), then .gnu_debuglink next to the file, in .debug/
 * and under /usr/lib/debug (and debuginfod when DEBUGINFOD_URLS is set). */
static const Dwfl_Callbacks offline_callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};

static void mod_open(struct symbolizer *s, struct sym_mod *m)
{
    m->state = MS_UNUSABLE;
    if ((m->flags & MTF_MODF_VDSO) || m->path[0] == '\0')
        return; /* the vDSO image is the traced kernel's, not on disk */
    Dwfl *d = dwfl_begin(&offline_callbacks);
    if (d == NULL)
        return;
    dwfl_report_begin(d);
    /* add_p_vaddr: `base` is the load bias (runtime address = base + p_vaddr), as recorded. */
    Dwfl_Module *dm = dwfl_report_elf(d, m->path, m->path, -1, m->base, true);
    if (dwfl_report_end(d, NULL, NULL) != 0 || dm == NULL) {
        dwfl_end(d);
        return;
    }
    const unsigned char *bits = NULL;
    GElf_Addr id_vaddr;
    int n = dwfl_module_build_id(dm, &bits, &id_vaddr);
    int same;
    if (m->build_id_len > 0)
        same = n == (int)m->build_id_len && memcmp(bits, m->build_id, m->build_id_len) == 0;
    else
        same = m->nseg == 0 || segs_match(dm, m);
    if (!same) {
        dwfl_end(d);
        m->state = MS_STALE;
        s->stale++;
        return;
    }
    m->dwfl = d;
    m->dmod = dm;
    m->state = MS_OK;
}

/* ---- resolving ------------------------------------------------------------------------------- */

/* DW_AT_linkage_name (demangled) gives "ns::Klass::method(int)" where DW_AT_name has "method";
 * both looked up through DW_AT_abstract_origin / DW_AT_specification. */
static const char *die_func(struct symbolizer *s, Dwarf_Die *die)
{
    Dwarf_Attribute attr;
    const char *name = NULL;
    if (dwarf_attr_integrate(die, DW_AT_linkage_name, &attr) != NULL ||
        dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr) != NULL)
        name = dwarf_formstring(&attr);
    if (name == NULL && dwarf_attr_integrate(die, DW_AT_name, &attr) != NULL)
        name = dwarf_formstring(&attr);
    return func_name(s, name);
}

static unsigned die_udata(Dwarf_Die *die, unsigned at)
{
    Dwarf_Attribute attr;
    Dwarf_Word v;
    if (dwarf_attr(die, at, &attr) == NULL || dwarf_formudata(&attr, &v) != 0)
        return 0;
    return v > 0xffffffffu ? 0 : (unsigned)v;
}

/* File named by DW_AT_call_file of an inlined_subroutine, through its CU's file table. */
static const char *call_file(struct symbolizer *s, Dwarf_Die *die)
{
    Dwarf_Attribute attr;
    Dwarf_Word idx;
    Dwarf_Die cu;
    Dwarf_Files *files;
    size_t nfiles;
    if (dwarf_attr(die, DW_AT_call_file, &attr) == NULL || dwarf_formudata(&attr, &idx) != 0)
        return NULL;
    if (dwarf_diecu(die, &cu, NULL, NULL) == NULL || dwarf_getsrcfiles(&cu, &files, &nfiles) != 0)
        return NULL;
    if (idx >= nfiles)
        return NULL;
    return intern(s, dwarf_filesrc(files, idx, NULL, NULL));
}

static const char *symtab_func(struct symbolizer *s, Dwfl_Module *dm, uint64_t addr)
{
    GElf_Off off;
    GElf_Sym sym;
    const char *name = dwfl_module_addrinfo(dm, addr, &off, &sym, NULL, NULL, NULL);
    if (name == NULL || (sym.st_size > 0 && off >= sym.st_size))
        return NULL;
    return func_name(s, name);
}

/* Fill out[] (up to MAX_INLINE) for addr in an open module; returns the count (>= 1). */
static uint32_t resolve_in(struct symbolizer *s, struct sym_mod *m, uint64_t addr,
                           struct cframe *out)
{
    const char *file = NULL;
    int line = 0, col = 0;
    Dwfl_Line *dl = dwfl_module_getsrc(m->dmod, addr);
    if (dl != NULL)
        file = intern(s, dwfl_lineinfo(dl, NULL, &line, &col, NULL, NULL));
    unsigned uline = line > 0 ? (unsigned)line : 0, ucol = col > 0 ? (unsigned)col : 0;

    uint32_t n = 0;
    int done = 0;
    Dwarf_Addr bias = 0;
    Dwarf_Die *cudie = dwfl_module_addrdie(m->dmod, addr, &bias);
    Dwarf_Die *scopes = NULL;
    int nscopes = cudie ? dwarf_getscopes(cudie, addr - bias, &scopes) : 0;
    if (nscopes > 0) {
        /* dwarf_getscopes continues into abstract origins; the physical parents of the
         * innermost scope are the concrete inline chain (as eu-addr2line -i does). */
        Dwarf_Die inner = scopes[0];
        free(scopes);
        scopes = NULL;
        nscopes = dwarf_getscopes_die(&inner, &scopes);
    }
    for (int i = 0; i < nscopes && n < MAX_INLINE && !done; i++) {
        Dwarf_Die *d = &scopes[i];
        int tag = dwarf_tag(d);
        if (tag != DW_TAG_subprogram && tag != DW_TAG_inlined_subroutine)
            continue;
        struct cframe *f = &out[n++];
        f->function = die_func(s, d);
        f->file = file;
        f->line = uline;
        f->column = ucol;
        f->inlined = tag == DW_TAG_inlined_subroutine;
        if (!f->inlined) {
            if (f->function == NULL)
                f->function = symtab_func(s, m->dmod, addr);
            done = 1;
            break;
        }
        /* The outer frame's position is where this one was inlined. */
        file = call_file(s, d);
        uline = die_udata(d, DW_AT_call_line);
        ucol = die_udata(d, DW_AT_call_column);
    }
    free(scopes);
    if (!done && n < MAX_INLINE) {
        /* No DWARF, or a chain that ended without its subprogram: the symbol table names the
         * real function. */
        struct cframe *f = &out[n++];
        f->function = symtab_func(s, m->dmod, addr);
        f->file = file;
        f->line = uline;
        f->column = ucol;
        f->inlined = 0;
    }
    return n;
}

static void entry_resolve(struct symbolizer *s, struct entry *e)
{
    struct cframe tmp[MAX_INLINE];
    uint32_t n = 0;
    struct sym_mod *m = e->mod >= 0 ? &s->mods[e->mod] : NULL;
    if (m != NULL && m->state == MS_CLOSED)
        mod_open(s, m);
    if (m != NULL && m->state == MS_OK)
        n = resolve_in(s, m, e->addr, tmp);
    if (n == 0) {
        memset(&tmp[0], 0, sizeof tmp[0]);
        n = 1;
    }
    e->frames = xmalloc(n * sizeof *e->frames);
    memcpy(e->frames, tmp, n * sizeof *e->frames);
    e->nframes = n;
}

static void table_grow(struct symbolizer *s)
{
    size_t cap = s->tab_cap ? s->tab_cap * 2 : TABLE_MIN_CAP;
    struct entry *t = xmalloc(cap * sizeof *t);
    memset(t, 0, cap * sizeof *t);
    for (size_t i = 0; i < s->tab_cap; i++) {
        if (!s->tab[i].used)
            continue;
        size_t j = mix64(s->tab[i].addr) & (cap - 1);
        while (t[j].used)
            j = (j + 1) & (cap - 1);
        t[j] = s->tab[i];
    }
    free(s->tab);
    s->tab = t;
    s->tab_cap = cap;
}

/* The cache slot for addr at ts_ns, created (unresolved) when missing. The pointer is valid
 * until the next call. */
static struct entry *entry_get(struct symbolizer *s, uint64_t addr, uint64_t ts_ns)
{
    if ((s->tab_n + 1) * 2 > s->tab_cap)
        table_grow(s);
    size_t mask = s->tab_cap - 1, h = mix64(addr) & mask, i;
    /* Fast path: a slot whose module was loaded at ts_ns is the answer (live modules do not
     * overlap), without scanning the module map. */
    for (i = h; s->tab[i].used; i = (i + 1) & mask) {
        struct entry *e = &s->tab[i];
        if (e->addr == addr && e->mod >= 0 && mod_live(&s->mods[e->mod], ts_ns))
            return e;
    }
    int32_t mod = mod_find(s, addr, ts_ns);
    for (i = h; s->tab[i].used; i = (i + 1) & mask) {
        struct entry *e = &s->tab[i];
        if (e->addr == addr && e->mod == mod)
            return e;
    }
    struct entry *e = &s->tab[i];
    memset(e, 0, sizeof *e);
    e->used = 1;
    e->addr = addr;
    e->mod = mod;
    s->tab_n++;
    return e;
}

/* ---- public ---------------------------------------------------------------------------------- */

struct symbolizer *sym_new(void)
{
    struct symbolizer *s = xmalloc(sizeof *s);
    memset(s, 0, sizeof *s);
    elf_version(EV_CURRENT);
    return s;
}

void sym_free(struct symbolizer *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nmods; i++) {
        if (s->mods[i].dwfl != NULL)
            dwfl_end(s->mods[i].dwfl);
        free(s->mods[i].build_id);
        free(s->mods[i].seg);
    }
    free(s->mods);
    for (size_t i = 0; i < s->tab_cap; i++)
        free(s->tab[i].frames);
    free(s->tab);
    for (size_t i = 0; i < s->strs_cap; i++)
        free(s->strs[i]);
    free(s->strs);
    if (s->cxx_handle != NULL)
        dlclose(s->cxx_handle);
    free(s);
}

int sym_is_shim(struct symbolizer *s, uint64_t pc, uint64_t ts_ns)
{
    const struct entry *e = entry_get(s, pc, ts_ns);
    return e->mod >= 0 && (s->mods[e->mod].flags & MTF_MODF_SHIM) != 0;
}

int sym_resolve(struct symbolizer *s, uint64_t pc, uint64_t ts_ns, int is_return_address,
                struct sym_frame *out, int max)
{
    if (max < 1)
        return 0;
    uint64_t addr = is_return_address && pc > 0 ? pc - 1 : pc;
    struct entry *e = entry_get(s, addr, ts_ns);
    if (e->nframes == 0)
        entry_resolve(s, e);
    const struct sym_mod *m = e->mod >= 0 ? &s->mods[e->mod] : NULL;
    int n = e->nframes < (uint32_t)max ? (int)e->nframes : max;
    for (int i = 0; i < n; i++) {
        const struct cframe *f = &e->frames[i];
        out[i] = (struct sym_frame){
            .function = f->function,
            .file = f->file,
            .line = f->line,
            .column = f->column,
            .module = m ? m->shown : NULL,
            .module_offset = m ? pc - m->base : pc,
            .inlined = f->inlined,
        };
    }
    return n;
}

int sym_stale(const struct symbolizer *s)
{
    return s->stale;
}
