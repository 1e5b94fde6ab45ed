/* Request-id validation: an id is used only when every byte is allowed. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mhdctx_id_verdict v = mhdctx_request_id_check((const char *)data, size, 128);
    if (v == MHDCTX_ID_VALID) {
        FUZZ_ASSERT(size >= 1 && size <= 128);
        for (size_t i = 0; i < size; i++)
            FUZZ_ASSERT(data[i] > 0x20 && data[i] < 0x7f && data[i] != '"' && data[i] != '\\' &&
                        data[i] != '*' && data[i] != ',' && data[i] != ';');
    }
    FUZZ_ASSERT(strcmp(mhdctx_id_verdict_name(v), "unknown") != 0);
    return 0;
}
