/* JSON escaping of log fields: any bytes give one valid JSON string, equal to the input
 * when the input is valid UTF-8, and never a raw control byte. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mhdctx__buf b;
    mhdctx__buf_init(&b, NULL, 0);
    mhdctx__json_string(&b, (const char *)data, size);
    FUZZ_ASSERT(!b.failed);
    for (size_t i = 0; i < b.len; i++)
        FUZZ_ASSERT((unsigned char)b.data[i] >= 0x20 && b.data[i] != 0x7f);
    json_error_t error;
    json_t *parsed = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
    FUZZ_ASSERT(json_is_string(parsed));
    if (mhdctx__utf8_valid((const char *)data, size)) {
        FUZZ_ASSERT(json_string_length(parsed) == size);
        FUZZ_ASSERT(memcmp(json_string_value(parsed), data, size) == 0);
    }
    json_decref(parsed);
    mhdctx__buf_release(&b);
    return 0;
}
