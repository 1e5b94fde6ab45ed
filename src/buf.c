/* buf.c - a growable byte buffer that starts in caller storage (often the stack or a
 * thread-local array) and moves to the heap only when a line outgrows it. */
#include "internal.h"

#include <string.h>

bool mhdctx__buf_grow(mhdctx__buf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (extra <= b->cap - b->len)
        return true;
    size_t want = b->cap ? b->cap : 256;
    while (want - b->len < extra) {
        if (want > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        want *= 2;
    }
    char *grown = b->on_heap ? mhdctx__realloc(b->data, want) : mhdctx__malloc(want);
    if (grown == NULL) {
        b->failed = true;
        return false;
    }
    if (!b->on_heap && b->len)
        memcpy(grown, b->data, b->len);
    b->data = grown;
    b->cap = want;
    b->on_heap = true;
    return true;
}
