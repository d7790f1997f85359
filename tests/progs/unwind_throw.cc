// unwind_throw: C++ exceptions thrown and caught around allocations, without frame pointers: the
// throw allocates its exception object, destructors free during unwinding, handlers allocate,
// and exceptions are rethrown through several frames. Run under MEMTRACE_UNWIND_VERIFY=1 by
// tests/integration/test_unwind_verify.c.
//   unwind_throw ROUNDS
// Prints "done ROUNDS CAUGHT".
#pragma GCC optimize("omit-frame-pointer")
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

static volatile long caught;

struct holder {
    std::vector<int> v;
    explicit holder(int n) : v(static_cast<size_t>(n), n)
    {
    }
    ~holder()
    {
        std::string s(200, 'x');
        caught += static_cast<long>(s.size() & 1);
    }
};

// C linkage: the test looks the frame up by its plain symbol name.
extern "C" __attribute__((noinline)) void thrower(int depth, int n)
{
    holder h(n + depth);
    if (depth == 0)
        throw std::runtime_error(std::string(100 + static_cast<size_t>(n % 50), 'e'));
    thrower(depth - 1, n);
}

__attribute__((noinline)) static void rethrower(int n)
{
    try {
        thrower(n % 12, n);
    } catch (const std::runtime_error &e) {
        auto p = std::make_unique<std::string>(e.what());
        throw std::logic_error(*p);
    }
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? std::atoi(argv[1]) : 200;
    for (int i = 0; i < rounds; i++) {
        try {
            rethrower(i);
        } catch (const std::logic_error &e) {
            std::vector<std::string> v(3, e.what());
            caught += 1;
        }
    }
    std::printf("done %d %ld\n", rounds, static_cast<long>(caught));
    return 0;
}
