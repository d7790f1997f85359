/* Symbol lookup inside the traced process. A module's index is built by the first thread that
 * needs it: open the file (raw syscalls), map it read-only, check its build id against the
 * loaded image, collect the function symbols into an mmap'd array sorted by address, then
 * publish the slot with a release store. Readers only trust slots they see published, so a
 * thread that finds no index builds one itself: two threads racing on the same module both
 * build (a little wasted work), nobody ever waits, and a build interrupted by fork() is simply
 * ignored in the child. Files stay mapped: names point into them.
 */
#include "symtab.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "heapsort.h"
#include "pages.h"

enum { SLOT_EMPTY, SLOT_READY, SLOT_FAILED };

struct sym {
    uint64_t addr; /* st_value: link-time address, pc - bias */
    uint64_t size;
    uint32_t name; /* offset in the string table */
    uint32_t rank; /* which alias to show: global over weak over local, then no leading '_' */
};

struct slot {
    _Atomic uint32_t state;
    uint64_t start;     /* key: lowest mapped address of the module */
    uint64_t path_hash; /* key: the loader's name (a module reloaded elsewhere is a new key) */
    const struct sym *syms;
    uint64_t nsyms;
    const char *strtab;
    uint64_t strsz;
};

static struct slot slots[MT_SYMTAB_MAX_MODULES];
static _Atomic uint32_t nslots;

/* ---- which module holds a pc ---------------------------------------------------------------- */

struct where {
    uint64_t start, bias;
    const char *path;
    int main; /* the executable: open /proc/self/exe, the very inode that was loaded */
};

static char exe[4096];
static _Atomic int exe_state; /* 0 unknown, 1 being read, 2 read */

static const char *exe_path(void)
{
    int st = atomic_load_explicit(&exe_state, memory_order_acquire);
    if (st == 2)
        return exe;
    int expect = 0;
    if (st == 0 && atomic_compare_exchange_strong(&exe_state, &expect, 1)) {
        long k = syscall(SYS_readlink, "/proc/self/exe", exe, sizeof exe - 1);
        exe[k > 0 ? k : 0] = '\0';
        atomic_store_explicit(&exe_state, 2, memory_order_release);
        return exe;
    }
    return "/proc/self/exe"; /* another thread is reading the link right now */
}

static int find_module(uint64_t pc, struct where *w)
{
    struct link_map *lm;
#ifdef DLFO_STRUCT_HAS_EH_DBASE
    /* lock-free and allocation-free (glibc 2.35): safe even when the loader holds its locks */
    struct dl_find_object o;
    if (_dl_find_object((void *)(uintptr_t)pc, &o) != 0 || o.dlfo_link_map == NULL)
        return -1;
    lm = o.dlfo_link_map;
    w->start = (uintptr_t)o.dlfo_map_start;
#else
    Dl_info info;
    if (dladdr1((void *)(uintptr_t)pc, &info, (void **)&lm, RTLD_DL_LINKMAP) == 0 || lm == NULL)
        return -1;
    w->start = (uintptr_t)info.dli_fbase;
#endif
    w->bias = lm->l_addr;
    w->main = lm->l_name == NULL || lm->l_name[0] == '\0';
    w->path = w->main ? exe_path() : lm->l_name;
    return 0;
}

int mt_symtab_module(uint64_t pc, const char **path, uint64_t *bias)
{
    struct where w;
    int saved = errno;
    int rc = find_module(pc, &w);
    errno = saved;
    if (path != NULL)
        *path = rc == 0 ? w.path : NULL;
    if (bias != NULL)
        *bias = rc == 0 ? w.bias : 0;
    return rc;
}

/* ---- ELF reading ------------------------------------------------------------------------------
 */

struct file {
    const unsigned char *map;
    uint64_t size;
};

static int in_file(const struct file *f, uint64_t off, uint64_t len)
{
    return off <= f->size && len <= f->size - off;
}

/* The GNU build id among notes [p, p + len) aligned to `align`; its length, 0 if none. */
static size_t note_build_id(const unsigned char *p, uint64_t len, uint64_t align,
                            const unsigned char **id)
{
    uint64_t a = align == 8 ? 8 : 4;
    while (len >= sizeof(ElfW(Nhdr))) {
        const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
        uint64_t name = (nh->n_namesz + a - 1) & ~(a - 1);
        uint64_t desc = (nh->n_descsz + a - 1) & ~(a - 1);
        if (name > len || desc > len || sizeof *nh + name + desc > len)
            return 0;
        if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
            memcmp(p + sizeof *nh, "GNU", 4) == 0) {
            *id = p + sizeof *nh + name;
            return nh->n_descsz;
        }
        p += sizeof *nh + name + desc;
        len -= sizeof *nh + name + desc;
    }
    return 0;
}

/* Build id of the loaded image, read from its program headers in memory. Returns its length
 * (0: none), or -1 when the headers are not where the loader maps them (nothing to compare). */
static long mem_build_id(const struct where *w, const unsigned char **id)
{
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)(uintptr_t)w->start;
    if (w->start == 0 || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
        eh->e_phentsize != sizeof(ElfW(Phdr)))
        return -1;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(uintptr_t)(w->start + eh->e_phoff);
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_NOTE)
            continue;
        const unsigned char *p = (const unsigned char *)(uintptr_t)(w->bias + ph[i].p_vaddr);
        size_t n = note_build_id(p, ph[i].p_memsz, ph[i].p_align, id);
        if (n > 0)
            return (long)n;
    }
    return 0;
}

static size_t file_build_id(const struct file *f, const unsigned char **id)
{
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)f->map;
    if (eh->e_phentsize != sizeof(ElfW(Phdr)) ||
        !in_file(f, eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(ElfW(Phdr))))
        return 0;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(f->map + eh->e_phoff);
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_NOTE || !in_file(f, ph[i].p_offset, ph[i].p_filesz))
            continue;
        size_t n = note_build_id(f->map + ph[i].p_offset, ph[i].p_filesz, ph[i].p_align, id);
        if (n > 0)
            return n;
    }
    return 0;
}

/* Whether the file on disk is the image that was loaded: same build id, or neither has one. */
static int same_image(const struct file *f, const struct where *w)
{
    const unsigned char *mid = NULL, *fid = NULL;
    long mn = mem_build_id(w, &mid);
    if (mn < 0)
        return 1;
    size_t fn = file_build_id(f, &fid);
    return (size_t)mn == fn && (fn == 0 || memcmp(mid, fid, fn) == 0);
}

static const ElfW(Shdr) * sections(const struct file *f, uint64_t *n)
{
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)f->map;
    if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(ElfW(Shdr)) ||
        !in_file(f, eh->e_shoff, sizeof(ElfW(Shdr))))
        return NULL;
    const ElfW(Shdr) *sh = (const ElfW(Shdr) *)(f->map + eh->e_shoff);
    *n = eh->e_shnum != 0 ? eh->e_shnum : sh[0].sh_size; /* extended numbering (elf(5)) */
    if (!in_file(f, eh->e_shoff, *n * sizeof(ElfW(Shdr))))
        return NULL;
    return sh;
}

/* A symbol table of `type` with its string table, checked against the file's bounds. */
struct table {
    const ElfW(Sym) * syms;
    uint64_t n;
    const char *str;
    uint64_t strsz;
};

static int find_table(const struct file *f, uint32_t type, struct table *t)
{
    uint64_t n;
    const ElfW(Shdr) *sh = sections(f, &n);
    for (uint64_t i = 0; sh != NULL && i < n; i++) {
        if (sh[i].sh_type != type || sh[i].sh_entsize != sizeof(ElfW(Sym)) || sh[i].sh_link >= n ||
            !in_file(f, sh[i].sh_offset, sh[i].sh_size))
            continue;
        const ElfW(Shdr) *s = &sh[sh[i].sh_link];
        if (s->sh_type != SHT_STRTAB || s->sh_size == 0 || !in_file(f, s->sh_offset, s->sh_size))
            continue;
        t->syms = (const ElfW(Sym) *)(f->map + sh[i].sh_offset);
        t->n = sh[i].sh_size / sizeof(ElfW(Sym));
        t->str = (const char *)(f->map + s->sh_offset);
        t->strsz = s->sh_size;
        return 0;
    }
    return -1;
}

static int is_function(const struct table *t, const ElfW(Sym) * s)
{
    unsigned type = ELF64_ST_TYPE(s->st_info);
    return (type == STT_FUNC || type == STT_GNU_IFUNC) && s->st_shndx != SHN_UNDEF &&
           s->st_value != 0 && s->st_size != 0 && s->st_name != 0 && s->st_name < t->strsz;
}

static uint32_t rank(const struct table *t, const ElfW(Sym) * s)
{
    unsigned bind = ELF64_ST_BIND(s->st_info);
    uint32_t r = bind == STB_GLOBAL ? 6 : bind == STB_WEAK ? 4 : 2;
    return r + (t->str[s->st_name] != '_');
}

static uint64_t count_functions(const struct table *t)
{
    uint64_t k = 0;
    for (uint64_t i = 0; i < t->n; i++)
        k += is_function(t, &t->syms[i]);
    return k;
}

/* ---- the sorted index ------------------------------------------------------------------------ */

static int before(const struct sym *a, const struct sym *b)
{
    return a->addr < b->addr || (a->addr == b->addr && a->rank > b->rank);
}

/* Heapsort: no recursion, no allocation, bounded time whatever the input. */
MT_HEAPSORT(sort, struct sym, before)

/* Sort, then keep one entry per address: the best-ranked alias. Returns the new count. */
static uint64_t sort_unique(struct sym *v, uint64_t n)
{
    sort(v, n);
    uint64_t k = 0;
    for (uint64_t i = 0; i < n; i++)
        if (k == 0 || v[k - 1].addr != v[i].addr)
            v[k++] = v[i];
    return k;
}

static int index_table(struct slot *s, const struct table *t)
{
    uint64_t n = count_functions(t);
    if (n == 0)
        return -1;
    struct sym *v = mt_pages_map(n * sizeof *v, 0);
    if (v == NULL)
        return -1;
    uint64_t k = 0;
    for (uint64_t i = 0; i < t->n; i++) {
        const ElfW(Sym) *e = &t->syms[i];
        if (is_function(t, e))
            v[k++] = (struct sym){ e->st_value, e->st_size, e->st_name, rank(t, e) };
    }
    s->nsyms = sort_unique(v, k);
    s->syms = v;
    s->strtab = t->str;
    s->strsz = t->strsz;
    return 0;
}

static int map_file(const struct where *w, struct file *f)
{
    long fd =
        syscall(SYS_openat, AT_FDCWD, w->main ? "/proc/self/exe" : w->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    long p = -1;
    if (syscall(SYS_fstat, fd, &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size >= sizeof(ElfW(Ehdr)))
        p = syscall(SYS_mmap, NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    syscall(SYS_close, fd);
    if (p == -1)
        return -1;
    f->map = (const unsigned char *)p;
    f->size = (uint64_t)st.st_size;
    return 0;
}

static int valid_elf(const struct file *f)
{
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)f->map;
#if __SIZEOF_POINTER__ == 8
    unsigned char cls = ELFCLASS64;
#else
    unsigned char cls = ELFCLASS32;
#endif
    return memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 && eh->e_ident[EI_CLASS] == cls;
}

/* Fill slot `s` for module `w`. 0 when it has an index; on failure nothing stays mapped. */
static int build(struct slot *s, const struct where *w)
{
    struct file f;
    if (map_file(w, &f) != 0)
        return -1;
    struct table t;
    if (valid_elf(&f) && same_image(&f, w)) {
        if (find_table(&f, SHT_SYMTAB, &t) == 0 && index_table(s, &t) == 0)
            return 0;
        if (find_table(&f, SHT_DYNSYM, &t) == 0 && index_table(s, &t) == 0)
            return 0;
    }
    syscall(SYS_munmap, f.map, f.size);
    return -1;
}

static uint64_t hash_path(const char *p)
{
    uint64_t h = 1469598103934665603ULL;
    while (*p)
        h = (h ^ (unsigned char)*p++) * 1099511628211ULL;
    return h;
}

/* The published slot for module `w`, building it when there is none; NULL when the table is
 * full. */
static const struct slot *slot_for(const struct where *w)
{
    uint64_t h = hash_path(w->path);
    uint32_t n = atomic_load_explicit(&nslots, memory_order_acquire);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t st = atomic_load_explicit(&slots[i].state, memory_order_acquire);
        if (st != SLOT_EMPTY && slots[i].start == w->start && slots[i].path_hash == h)
            return &slots[i];
    }
    do {
        if (n >= MT_SYMTAB_MAX_MODULES)
            return NULL;
    } while (!atomic_compare_exchange_weak(&nslots, &n, n + 1));
    struct slot *s = &slots[n];
    s->start = w->start;
    s->path_hash = h;
    uint32_t st = build(s, w) == 0 ? SLOT_READY : SLOT_FAILED;
    atomic_store_explicit(&s->state, st, memory_order_release);
    return s;
}

static const struct sym *find_sym(const struct slot *s, uint64_t rel)
{
    uint64_t lo = 0, hi = s->nsyms;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (s->syms[mid].addr <= rel)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const struct sym *y = &s->syms[lo - 1];
    return rel - y->addr < y->size ? y : NULL;
}

const char *mt_symtab_name(uint64_t pc, const char **module_path, uint64_t *offset)
{
    int saved = errno;
    struct where w;
    const char *name = NULL;
    uint64_t off = 0;
    int rc = find_module(pc, &w);
    if (rc == 0) {
        off = pc - w.bias;
        const struct slot *s = slot_for(&w);
        const struct sym *y = NULL;
        if (s != NULL && atomic_load_explicit(&s->state, memory_order_acquire) == SLOT_READY)
            y = find_sym(s, pc - w.bias);
        if (y != NULL) {
            name = s->strtab + y->name;
            off = pc - w.bias - y->addr;
            if (memchr(name, '\0', s->strsz - y->name) == NULL)
                name = NULL; /* unterminated last string: refuse rather than overrun */
        }
    }
    if (module_path != NULL)
        *module_path = rc == 0 ? w.path : NULL;
    if (offset != NULL)
        *offset = off;
    errno = saved;
    return name;
}

int mt_symtab_lookup(uint64_t pc, char *name, size_t cap, const char **module_path,
                     uint64_t *offset)
{
    const char *path = NULL;
    const char *n = mt_symtab_name(pc, &path, offset);
    if (module_path != NULL)
        *module_path = path;
    if (cap > 0) {
        size_t len = n != NULL ? strlen(n) : 0;
        if (len >= cap)
            len = cap - 1;
        if (len > 0)
            memcpy(name, n, len);
        name[len] = '\0';
    }
    return n != NULL ? 1 : path != NULL ? 0 : -1;
}
