/*
 * alloc.c - every allocation of the library goes through here, so that a test build
 * (-DMHDCTX_FAULT_INJECTION) can fail the Nth allocation and prove that each failure
 * path is clean. The same build can refuse the Nth thread block (a mapping).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#ifdef MHDCTX_FAULT_INJECTION
/* Countdown shared by all threads: when it reaches zero, that allocation fails. */
atomic_long mhdctx__alloc_countdown = -1;
/* The same for thread blocks (mappings, not counted as allocations). */
atomic_long mhdctx__map_countdown = -1;
/* Blocks allocated here and not yet freed here: a test's leak gauge. */
atomic_long mhdctx__alloc_live;

static void *counted(void *block, long delta)
{
    if (block)
        atomic_fetch_add(&mhdctx__alloc_live, delta);
    return block;
}

static bool counted_down(atomic_long *countdown)
{
    long left = atomic_load(countdown);
    while (left >= 0) {
        if (atomic_compare_exchange_weak(countdown, &left, left - 1))
            return left == 0;
    }
    return false;
}

bool mhdctx__allocation_refused(void)
{
    return counted_down(&mhdctx__alloc_countdown);
}

bool mhdctx__mapping_refused(void)
{
    return counted_down(&mhdctx__map_countdown);
}
#else
static inline void *counted(void *block, long delta)
{
    (void)delta;
    return block;
}
#endif

void *mhdctx__malloc(size_t size)
{
    return mhdctx__allocation_refused() ? NULL : counted(malloc(size), 1);
}

void *mhdctx__calloc(size_t n, size_t size)
{
    return mhdctx__allocation_refused() ? NULL : counted(calloc(n, size), 1);
}

void *mhdctx__realloc(void *ptr, size_t size)
{
    return mhdctx__allocation_refused() ? NULL : counted(realloc(ptr, size), ptr == NULL);
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
    counted(ptr, -1);
    free(ptr);
}

void *mhdctx__hand_to_caller(void *block)
{
    return counted(block, -1);
}
