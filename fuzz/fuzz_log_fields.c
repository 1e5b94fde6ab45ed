/* Call fields' names: whatever names a call gives its fields (split from the input at
 * NUL bytes; the first byte says whether a context with user keys is on the line), the
 * line parses as one JSON object with no key twice and keeps every field. */
#include "fuzz.h"

#define MAX_FIELDS 16

static char line[1 << 16];
static size_t line_len;

static void capture(mhdctx_log_level level, const char *text, size_t len, void *cls)
{
    (void)level;
    (void)cls;
    FUZZ_ASSERT(len < sizeof line);
    memcpy(line, text, len);
    line_len = len;
}

static mhdctx_context *context_with_keys(void)
{
    static mhdctx_context *ctx;
    if (ctx == NULL) {
        ctx = mhdctx_context_new();
        FUZZ_ASSERT(ctx != NULL);
        FUZZ_ASSERT(mhdctx_set_string(ctx, "a", "user") == MHDCTX_OK);
        FUZZ_ASSERT(mhdctx_set_string(ctx, "field_a", "user") == MHDCTX_OK);
        FUZZ_ASSERT(mhdctx_set_new(ctx, "obj", json_pack("{s:i}", "b", 1)) == MHDCTX_OK);
        FUZZ_ASSERT(mhdctx_log_to_callback(capture, NULL) == MHDCTX_OK);
    }
    return ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mhdctx_context *with_keys = context_with_keys();
    if (size == 0)
        return 0;
    mhdctx_context *ctx = data[0] & 1 ? with_keys : NULL;
    char *names = fuzz_string(data + 1, size - 1); /* NUL-terminated: the last name ends */
    FUZZ_ASSERT(names != NULL);
    mhdctx_field fields[MAX_FIELDS];
    size_t n = 0;
    for (size_t at = 0; at <= size - 1 && n < MAX_FIELDS; at += strlen(names + at) + 1) {
        fields[n] = MHDCTX_F_INT(names + at, (long long)n);
        n++;
    }
    line_len = 0;
    mhdctx_log_ctx(ctx, MHDCTX_LOG_INFO, fields, n, "fuzz");
    FUZZ_ASSERT(line_len > 0);
    json_error_t error;
    json_t *parsed = json_loadb(line, line_len, JSON_REJECT_DUPLICATES, &error);
    FUZZ_ASSERT(json_is_object(parsed));
    size_t own = ctx ? 11 : 3; /* time level message [5 ids, a field_a obj] */
    FUZZ_ASSERT(json_object_size(parsed) == own + n);
    FUZZ_ASSERT(ctx == NULL || strcmp(json_string_value(json_object_get(parsed, "request_id")),
                                      mhdctx_request_id(ctx)) == 0);
    json_decref(parsed);
    free(names);
    return 0;
}
