/* SQL tags: client bytes in a user key never end the comment or add a quote. */
#include "fuzz.h"

static size_t count(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool configured;
    if (!configured) {
        const char *keys[] = {"tenant_id"};
        mhdctx_sql_tag_keys(keys, 1);
        configured = true;
    }
    if (size > 2048)
        return 0;
    mhdctx_context *ctx = mhdctx_context_new();
    if (ctx == NULL)
        return 0;
    /* json_stringn refuses invalid UTF-8; the route takes any C string. */
    mhdctx_set_new(ctx, "tenant_id", json_stringn((const char *)data, size));
    char *route = fuzz_string(data, size);
    if (route)
        mhdctx_set_route(ctx, route);
    char *tagged = mhdctx_sql_tag_ctx(ctx, "SELECT 1");
    FUZZ_ASSERT(tagged != NULL);
    FUZZ_ASSERT(count(tagged, "/*") == 1 && count(tagged, "*/") == 1);
    FUZZ_ASSERT(strlen(tagged) > 2 && strcmp(tagged + strlen(tagged) - 2, "*/") == 0);
    for (const char *p = strchr(tagged, '\''); p; p = strchr(p + 1, '\''))
        FUZZ_ASSERT(p[-1] == '=' || p[1] == ',' || p[1] == '*' || p[-1] == '\\');
    for (const char *p = tagged; *p; p++)
        FUZZ_ASSERT(*p >= 0x20 && *p <= 0x7e);
    free(tagged);
    free(route);
    mhdctx_context_unref(ctx);
    return 0;
}
