/* fuzz.h - shared by the fuzz targets: the libFuzzer entry point and a check that
 * aborts (so that libFuzzer, and the replay driver, report it) when an invariant
 * fails. */
#ifndef MHDCTX_FUZZ_H
#define MHDCTX_FUZZ_H

#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                                      \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);       \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* A NUL-terminated copy of the input (owned: free()). */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = '\0';
    }
    return s;
}

#endif
