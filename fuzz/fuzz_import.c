/* Context import: anything accepted exports and imports again to the same text. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mhdctx_error err;
    mhdctx_context *ctx = mhdctx_context_import((const char *)data, size, &err);
    if (ctx == NULL) {
        FUZZ_ASSERT(err != MHDCTX_OK);
        return 0;
    }
    char *text = mhdctx_context_export(ctx);
    FUZZ_ASSERT(text != NULL);
    mhdctx_context *again = mhdctx_context_import(text, strlen(text), &err);
    FUZZ_ASSERT(again != NULL);
    char *text2 = mhdctx_context_export(again);
    FUZZ_ASSERT(text2 && strcmp(text, text2) == 0);
    free(text);
    free(text2);
    mhdctx_context_unref(again);
    mhdctx_context_unref(ctx);
    return 0;
}
