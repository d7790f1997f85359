// limit_cxx: C++ new under MEMTRACE_HEAP_LIMIT with MEMTRACE_ON_LIMIT=enomem. Allocates 1 MiB
// arrays with new[] until std::bad_alloc, prints "bad_alloc after <n>", frees them, checks that
// new works again ("new ok"), and exits 0. In abort mode it dies with the fatal error instead.
#include <cstdio>
#include <new>
#include <vector>

int main()
{
    std::vector<char *> kept;
    kept.reserve(4096);
    size_t n = 0;
    try {
        for (n = 0; n < 4096; n++) {
            char *p = new char[1 << 20];
            p[0] = 1;
            kept.push_back(p);
        }
        std::printf("no bad_alloc\n");
    } catch (const std::bad_alloc &) {
        std::printf("bad_alloc after %zu\n", n);
    }
    for (char *p : kept)
        delete[] p;
    char *again = new char[1 << 20];
    delete[] again;
    std::printf("new ok\n");
    return 0;
}
