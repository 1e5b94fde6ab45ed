/* tracestate: the normalized list is bounded, printable, and normalizes to itself. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
    size_t len = mhdctx_tracestate_normalize((const char *)data, size, out);
    FUZZ_ASSERT(len <= MHDCTX_TRACESTATE_MAX_LEN && strlen(out) == len);
    for (size_t i = 0; i < len; i++)
        FUZZ_ASSERT(out[i] >= 0x20 && out[i] <= 0x7e);
    char again[MHDCTX_TRACESTATE_MAX_LEN + 1];
    FUZZ_ASSERT(mhdctx_tracestate_normalize(out, len, again) == len);
    FUZZ_ASSERT(memcmp(out, again, len) == 0);
    return 0;
}
