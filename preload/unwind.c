/* libunwind capture. unw_backtrace walks from its caller; everything from the top of the stack
 * down to the first frame outside libmemtrace.so is ours and is dropped. Return addresses are
 * kept as libunwind gives them (after the call); the report subtracts one when symbolizing. */
#include "unwind.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <link.h>
#include <string.h>
#include <sys/auxv.h>

#include "mt.h"

#define MAX_RANGES 8
#define SLACK      8 /* frames of our own that may sit above the program's frames */

struct range {
    uintptr_t lo, hi;
};

/* Code of the shim and libunwind (their frames are dropped from stacks), and of libc and the
 * loader (which allocate on the shim's behalf while it resolves symbols or registers keys). */
static struct range shim_ranges[MAX_RANGES], unw_ranges[MAX_RANGES], sys_ranges[MAX_RANGES];
static int nshim, nunw, nsys;

struct find {
    uintptr_t addr; /* an address inside the object, or 0 to match by load base */
    uintptr_t base;
    struct range *out;
    int *n;
};

static int find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct find *f = arg;
    int hit = f->addr == 0 && f->base != 0 && info->dlpi_addr == f->base;
    for (int i = 0; i < info->dlpi_phnum && f->addr != 0; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && f->addr >= lo && f->addr < lo + ph->p_memsz)
            hit = 1;
    }
    if (!hit)
        return 0;
    for (int i = 0; i < info->dlpi_phnum && *f->n < MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            f->out[*f->n].lo = info->dlpi_addr + ph->p_vaddr;
            f->out[*f->n].hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
            (*f->n)++;
        }
    }
    return 1;
}

void mt_unwind_init(void)
{
    if (nshim != 0)
        return;
    struct find f = { (uintptr_t)&mt_unwind_init, 0, shim_ranges, &nshim };
    dl_iterate_phdr(find_cb, &f);
    struct find g = { (uintptr_t)&unw_backtrace, 0, unw_ranges, &nunw };
    dl_iterate_phdr(find_cb, &g);
    struct find libc = { (uintptr_t)&dl_iterate_phdr, 0, sys_ranges, &nsys };
    dl_iterate_phdr(find_cb, &libc);
    struct find ld = { 0, (uintptr_t)getauxval(AT_BASE), sys_ranges, &nsys };
    dl_iterate_phdr(find_cb, &ld);
}

static int in(const struct range *r, int n, uintptr_t pc)
{
    for (int i = 0; i < n; i++)
        if (pc >= r[i].lo && pc < r[i].hi)
            return 1;
    return 0;
}

int mt_unwind_is_internal_pc(uintptr_t pc)
{
    return in(shim_ranges, nshim, pc) || in(unw_ranges, nunw, pc) || in(sys_ranges, nsys, pc);
}

int mt_unwind_is_tracer_pc(uintptr_t pc)
{
    return in(shim_ranges, nshim, pc) || in(unw_ranges, nunw, pc);
}

uint32_t mt_unwind_capture(uint64_t *frames, uint32_t max, int *trunc)
{
    void *raw[256 + SLACK + 1];
    uint32_t want = max + SLACK + 1;
    if (want > sizeof raw / sizeof raw[0])
        want = sizeof raw / sizeof raw[0];
    int got = unw_backtrace(raw, (int)want);
    if (got < 0)
        got = 0;
    /* Drop every frame of the shim: the hook frames on top, and main_wrapper() between main
     * and the C library at the bottom. */
    uint32_t n = 0;
    *trunc = 0;
    for (int i = 0; i < got; i++) {
        if (in(shim_ranges, nshim, (uintptr_t)raw[i]))
            continue;
        if (n == max) {
            *trunc = 1;
            break;
        }
        frames[n++] = (uint64_t)(uintptr_t)raw[i];
    }
    if ((uint32_t)got == want)
        *trunc = 1; /* filled the whole buffer: more frames may exist beyond it */
    return n;
}
