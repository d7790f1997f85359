/* Symbolizer fixture for C++ names (tests/unit/test_symbolize.c compiles it with -g -O2; the
 * Makefile builds it too). Records the return address of a call made inside
 * ns::Klass::method(int) and prints, like sym_target.c:
 *     base <hex>
 *     seg <vaddr hex> <memsz hex> <pflags>
 *     site method <return address hex> <line of the call> 0
 */
#include <link.h>
#include <stdint.h>
#include <stdio.h>

static uintptr_t site_ra;
static int site_line;

__attribute__((noinline, noipa)) static int record_ra(int line)
{
    site_ra = (uintptr_t)__builtin_return_address(0);
    site_line = line;
    return line * 3;
}

namespace ns
{
struct Klass {
    int k;
    int method(int x);
};

__attribute__((noinline, noipa)) int Klass::method(int x)
{
    int r = record_ra(__LINE__);
    r = r * k + x;
    return r;
}
} // namespace ns

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
    return 1; /* the first object is the executable */
}

int main(int argc, char **argv)
{
    (void)argv;
    ns::Klass obj = { 3 };
    int v = obj.method(argc);
    dl_iterate_phdr(print_self, NULL);
    printf("site method %lx %d 0\n", (unsigned long)site_ra, site_line);
    return v == 0x7fffffff; /* keeps v alive; never true */
}
