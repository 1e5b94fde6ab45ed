/* Bearer parsing: a token is a token68 inside the header, never a control byte. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *header = (const char *)data;
    const char *token;
    size_t len;
    if (mhdctx_bearer_parse(header, size, &token, &len) != MHDCTX_OK)
        return 0;
    FUZZ_ASSERT(len > 0 && token >= header && token + len <= header + size);
    for (size_t i = 0; i < len; i++)
        FUZZ_ASSERT(strchr("-._~+/=", token[i]) || (token[i] >= 'a' && token[i] <= 'z') ||
                    (token[i] >= 'A' && token[i] <= 'Z') ||
                    (token[i] >= '0' && token[i] <= '9'));
    FUZZ_ASSERT(mhdctx_secret_equal(token, len, token, len));
    return 0;
}
