/* Symbolizer fixture (tests/unit/test_symbolize.c compiles it with -g -O2; the Makefile builds it
 * too). Records return addresses at known source lines, then prints what the shim would have
 * recorded for the executable (load bias, PT_LOAD segments, build id) and the sites:
 *     base <hex>
 *     seg <vaddr hex> <memsz hex> <pflags>
 *     build_id <hex>
 *     site <name> <return address hex> <line of the call> <line of the outer call, 0: none>
 * Every recorded call is followed by a statement on another line, so looking up the return
 * address itself instead of the address before it would give the wrong line.
 * -DSYM_TARGET_ALT adds code, for a build with another build id at the same path.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dl_iterate_phdr */
#endif
#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { SITE_PLAIN, SITE_INLINE, SITE_COUNT };
static const char *const site_names[SITE_COUNT] = { "plain", "inline" };

static struct {
    uintptr_t ra;
    int line, outer_line;
} sites[SITE_COUNT];

/* noipa: no clone (foo.constprop.0) and no knowledge of the callers, so every call stays a
 * real call with the names the test expects. */
__attribute__((noinline, noipa)) static int record_ra(int site, int line, int outer_line)
{
    sites[site].ra = (uintptr_t)__builtin_return_address(0);
    sites[site].line = line;
    sites[site].outer_line = outer_line;
    return site * 3 + line;
}

static inline __attribute__((always_inline)) int inl_helper(int x, int outer_line)
{
    int r = record_ra(SITE_INLINE, __LINE__, outer_line);
    r = r * 5 + x;
    return r;
}

__attribute__((noinline, noipa)) static int inl_outer(int x)
{
    int y = inl_helper(x, __LINE__);
    y = y * 11 - x;
    return y;
}

__attribute__((noinline, noipa)) static int plain_caller(int x)
{
    int a = record_ra(SITE_PLAIN, __LINE__, 0);
    return a + x;
}

#ifdef SYM_TARGET_ALT
__attribute__((noinline, noipa)) static int alt_extra(int x)
{
    return x * 13 + 2;
}
#endif

static int print_self(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    printf("base %lx\n", (unsigned long)info->dlpi_addr);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD)
            printf("seg %lx %lx %u\n", (unsigned long)ph->p_vaddr, (unsigned long)ph->p_memsz,
                   (unsigned)ph->p_flags);
    }
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        const unsigned char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            const unsigned char *name = p + sizeof *nh;
            const unsigned char *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                printf("build_id ");
                for (unsigned k = 0; k < nh->n_descsz; k++)
                    printf("%02x", desc[k]);
                printf("\n");
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
    return 1; /* the first object is the executable */
}

int main(int argc, char **argv)
{
    (void)argv;
    int v = inl_outer(argc) + plain_caller(argc);
#ifdef SYM_TARGET_ALT
    v += alt_extra(argc);
#endif
    dl_iterate_phdr(print_self, NULL);
    for (int i = 0; i < SITE_COUNT; i++)
        printf("site %s %lx %d %d\n", site_names[i], (unsigned long)sites[i].ra, sites[i].line,
               sites[i].outer_line);
    return v == 0x7fffffff; /* keeps v alive; never true */
}
