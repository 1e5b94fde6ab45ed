/* error.c - names and descriptions of mhdctx_error, from the one X-macro table. */
#include "internal.h"

const char *mhdctx_strerror(mhdctx_error err)
{
    switch (err) {
#define MHDCTX_ERROR_TEXT_(name, value, text)                                                  \
    case MHDCTX_##name:                                                                        \
        return text;
        MHDCTX_ERROR_MAP(MHDCTX_ERROR_TEXT_)
#undef MHDCTX_ERROR_TEXT_
    }
    return "unknown error";
}

const char *mhdctx_error_name(mhdctx_error err)
{
    switch (err) {
#define MHDCTX_ERROR_NAME_(name, value, text)                                                  \
    case MHDCTX_##name:                                                                        \
        return "MHDCTX_" #name;
        MHDCTX_ERROR_MAP(MHDCTX_ERROR_NAME_)
#undef MHDCTX_ERROR_NAME_
    }
    return "MHDCTX_UNKNOWN";
}

const char *mhdctx_version_string(void)
{
    return MHDCTX_VERSION_STRING;
}
