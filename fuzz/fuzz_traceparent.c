/* traceparent: whatever parses formats back to a value that parses the same. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mhdctx_trace_parent tp;
    if (mhdctx_traceparent_parse((const char *)data, size, &tp) != MHDCTX_OK)
        return 0;
    char text[MHDCTX_TRACEPARENT_LEN + 1];
    mhdctx_traceparent_format(text, tp.trace_id, tp.parent_id, tp.flags);
    mhdctx_trace_parent again;
    FUZZ_ASSERT(mhdctx_traceparent_parse(text, strlen(text), &again) == MHDCTX_OK);
    FUZZ_ASSERT(memcmp(&tp, &again, sizeof tp) == 0);
    FUZZ_ASSERT(strspn(tp.trace_id, "0123456789abcdef") == 32);
    FUZZ_ASSERT(strspn(tp.trace_id, "0") != 32 && strspn(tp.parent_id, "0") != 16);
    return 0;
}
