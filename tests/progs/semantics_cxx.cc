// semantics_cxx: each C++ allocation form once, from its own function, so the test can find
// its event by stack (pitfalls.md §16). libstdc++ maps them onto the C functions:
//   cxx_new           new Obj1001           operator new -> malloc(1001)
//   cxx_new_array     new char[2002]        operator new[] -> malloc(2002)
//   cxx_aligned_new   new Aligned (384 B, alignas 128) -> aligned_alloc(128, 384)
//   cxx_nothrow_new   new (nothrow) char[3003] -> malloc(3003)
//   cxx_nothrow_fail  new (nothrow) char[huge] -> malloc fails, nullptr
//   cxx_throw         throw 42 (caught)     __cxa_allocate_exception -> malloc
//   cxx_sized_delete  ::operator delete(p, 4004) -> free
// Prints one line per form (result class only, no addresses) for comparison with an unshimmed
// run. Results go through a volatile so nothing is optimised away.
#include <cstdio>
#include <cstdlib>
#include <new>

static void *volatile sink;
static volatile size_t huge = static_cast<size_t>(-1) / 2;

struct Obj1001 {
    char c[1001];
};

struct alignas(128) Aligned {
    char c[300];
};

extern "C" {
void cxx_new(void);
void cxx_new_array(void);
void cxx_aligned_new(void);
void cxx_nothrow_new(void);
void cxx_nothrow_fail(void);
void cxx_throw(void);
void cxx_sized_delete(void);
}

void cxx_new(void)
{
    Obj1001 *o = new Obj1001;
    sink = o;
    delete o;
    std::printf("new ok\n");
}

void cxx_new_array(void)
{
    char *a = new char[2002];
    sink = a;
    delete[] a;
    std::printf("new[] ok\n");
}

void cxx_aligned_new(void)
{
    Aligned *a = new Aligned;
    sink = a;
    std::printf("aligned new aligned=%d size=%zu\n",
                static_cast<int>(reinterpret_cast<unsigned long>(a) % 128 == 0), sizeof(Aligned));
    delete a;
}

void cxx_nothrow_new(void)
{
    char *a = new (std::nothrow) char[3003];
    sink = a;
    std::printf("nothrow new %s\n", a ? "ptr" : "null");
    delete[] a;
}

void cxx_nothrow_fail(void)
{
    char *a = new (std::nothrow) char[huge];
    sink = a;
    std::printf("nothrow new huge %s\n", a ? "ptr" : "null");
    delete[] a;
}

void cxx_throw(void)
{
    try {
        throw 42;
    } catch (int v) {
        std::printf("caught %d\n", v);
    }
}

void cxx_sized_delete(void)
{
    void *p = ::operator new(4004);
    sink = p;
    ::operator delete(p, static_cast<size_t>(4004));
    std::printf("sized delete ok\n");
}

int main()
{
    cxx_new();
    cxx_new_array();
    cxx_aligned_new();
    cxx_nothrow_new();
    cxx_nothrow_fail();
    cxx_throw();
    cxx_sized_delete();
    return 0;
}
