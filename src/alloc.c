/*
 * alloc.c - every allocation of the library goes through here, so that a test build
 * (-DMHDCTX_FAULT_INJECTION) can fail the Nth allocation and prove that each failure
 * path is clean.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#ifdef MHDCTX_FAULT_INJECTION
/* Countdown shared by all threads: when it reaches zero, that allocation fails. */
atomic_long mhdctx__alloc_countdown = -1;

static bool should_fail(void)
{
    long left = atomic_load(&mhdctx__alloc_countdown);
    while (left >= 0) {
        if (atomic_compare_exchange_weak(&mhdctx__alloc_countdown, &left, left - 1))
            return left == 0;
    }
    return false;
}
#else
static inline bool should_fail(void)
{
    return false;
}
#endif

void *mhdctx__malloc(size_t size)
{
    return should_fail() ? NULL : malloc(size);
}

void *mhdctx__calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n, size);
}

void *mhdctx__realloc(void *ptr, size_t size)
{
    return should_fail() ? NULL : realloc(ptr, size);
}

char *mhdctx__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = mhdctx__malloc(n);
    if (copy)
        memcpy(copy, s, n);
    return copy;
}

void mhdctx__free(void *ptr)
{
    free(ptr);
}
