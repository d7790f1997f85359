// clean_throw: a C++ program that throws and catches exceptions and uses the standard library,
// freeing everything it allocated; memtrace-report must find no leaks (libstdc++'s emergency
// exception pool and the stdio buffer stay to exit on purpose: the built-in suppressions know
// them).
#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

static int parse(const std::string &s)
{
    if (s.empty() || s[0] < '0' || s[0] > '9')
        throw std::invalid_argument("not a number: " + s);
    return std::stoi(s);
}

int main()
{
    std::vector<std::string> words = { "12", "x", "7", "a somewhat longer string to allocate" };
    std::map<std::string, int> seen;
    int caught = 0;
    for (const auto &w : words) {
        try {
            seen[w] = parse(w);
        } catch (const std::exception &e) {
            caught++;
        }
    }
    auto p = std::make_unique<std::vector<int>>(1000, 7);
    try {
        throw std::runtime_error(std::string(200, 'e'));
    } catch (const std::runtime_error &e) {
        caught += e.what()[0] == 'e';
    }
    std::printf("clean_throw: %d caught, %zu parsed, %zu ints\n", caught, seen.size(), p->size());
    return 0;
}
