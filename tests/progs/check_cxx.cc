// check_cxx: C++ for `memtrace check`: throws and catches exceptions, uses std::string,
// std::vector and std::map (all freed), then loses one object made with `new` (a Widget that
// owns a 256-byte buffer made with new[]: the Widget is definitely lost, its buffer indirectly;
// 256, not 200: glibc's top-chunk pointer lands inside a 200-byte block whose chunk ends where
// top begins, and the exit scan, which counts interior pointers, would call it reachable). Prints
// "site make_widget LINE BYTES BLOCKS DIRECT_BYTES DIRECT_BLOCKS" for the Widget's site and
// "site Widget::Widget ..." for the buffer's, with write(2).
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

static int buffer_line, widget_line;

struct Widget {
    explicit Widget(size_t n) : size(n)
    {
        buffer_line = __LINE__ + 1;
        data = new char[n];
    }
    size_t size;
    char *data;
};

static Widget *volatile sink;

static void make_widget()
{
    widget_line = __LINE__ + 1;
    Widget *w = new Widget(256);
    sink = w;
    sink = nullptr;
}

static int work(int n)
{
    std::vector<std::string> v;
    std::map<int, std::string> m;
    for (int i = 0; i < n; i++) {
        v.push_back(std::string(40 + i, 'x'));
        m[i] = v.back();
    }
    if (n > 10)
        throw std::runtime_error("too many: " + std::to_string(n));
    return (int)v.size();
}

static void say(const char *fn, int line, size_t bytes, size_t blocks, size_t dbytes,
                size_t dblocks)
{
    char buf[160];
    int n = snprintf(buf, sizeof buf, "site %s %d %zu %zu %zu %zu\n", fn, line, bytes, blocks,
                     dbytes, dblocks);
    if (write(1, buf, (size_t)n) != n)
        _exit(3);
}

// Overwrite the stack below main, where make_widget's frame was: the exit scan, like memcheck's,
// is conservative, and scans the stack from its own frame up, so a stale copy of the Widget's
// address left deep below main (under the scan's own large frames) makes it look reachable in
// about one run in five. 256 KiB: 16 KiB was not enough.
static void scrub_stack()
{
    volatile char area[256 * 1024];
    for (size_t i = 0; i < sizeof area; i++)
        area[i] = 0;
}

int main()
{
    int total = 0;
    for (int i = 5; i < 15; i++) {
        try {
            total += work(i);
        } catch (const std::exception &e) {
            total -= 1;
        }
    }
    make_widget();
    total += work(3); // heap traffic after the leak (see check_leak.c)
    scrub_stack();
    say("make_widget", widget_line, sizeof(Widget), 1, sizeof(Widget), 1);
    say("Widget::Widget", buffer_line, 256, 1, 0, 0);
    return total > 0 ? 0 : 1;
}
