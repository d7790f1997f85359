/* A heapsort for the shim's own arrays (the live-block snapshot, the symbol index): no
 * recursion, no allocation, O(n log n) whatever the input, which qsort does not promise (glibc's
 * may call malloc). MT_HEAPSORT(name, type, less) defines `static void name(type *v, size_t n)`
 * ordering by `less(const type *a, const type *b)`. */
#ifndef MEMTRACE_PRELOAD_HEAPSORT_H
#define MEMTRACE_PRELOAD_HEAPSORT_H

#include <stddef.h>

#define MT_HEAPSORT(name, type, less)                                                              \
    static void name##_sift(type *v, size_t root, size_t n)                                        \
    {                                                                                              \
        for (;;) {                                                                                 \
            size_t c = 2 * root + 1;                                                               \
            if (c >= n)                                                                            \
                return;                                                                            \
            if (c + 1 < n && less(&v[c], &v[c + 1]))                                               \
                c++;                                                                               \
            if (!less(&v[root], &v[c]))                                                            \
                return;                                                                            \
            type t_ = v[root];                                                                     \
            v[root] = v[c];                                                                        \
            v[c] = t_;                                                                             \
            root = c;                                                                              \
        }                                                                                          \
    }                                                                                              \
    static void name(type *v, size_t n)                                                            \
    {                                                                                              \
        for (size_t i = n / 2; i-- > 0;)                                                           \
            name##_sift(v, i, n);                                                                  \
        for (size_t end = n; end-- > 1;) {                                                         \
            type t_ = v[0];                                                                        \
            v[0] = v[end];                                                                         \
            v[end] = t_;                                                                           \
            name##_sift(v, 0, end);                                                                \
        }                                                                                          \
    }

#endif
