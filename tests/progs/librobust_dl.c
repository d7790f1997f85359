/* librobust_dl.so: the library robust_dlopen loads and unloads in a loop. It allocates in its
 * constructor and destructor and has a global-dynamic TLS block, whose first touch in each
 * thread makes the loader allocate (pitfalls.md §4). */
#include <stdlib.h>

static __thread char tls_block[256];
static char *volatile held;

__attribute__((constructor)) static void robust_dl_init(void)
{
    held = malloc(48);
}

__attribute__((destructor)) static void robust_dl_fini(void)
{
    free(held);
    held = NULL;
}

int robust_dl_work(int n)
{
    int sum = 0;
    for (int i = 0; i < n; i++) {
        char *volatile p = malloc(32 + (size_t)i);
        tls_block[i & 255] = (char)i;
        sum += tls_block[i & 255];
        free(p);
    }
    return sum;
}
