/*
 * log.c - the JSON-lines logger: levels, line formatting, context enrichment.
 * Where the line goes is sink.c's business.
 *
 * A line is built in a thread-local buffer (no allocation unless it outgrows it) as:
 * {"time","level","message", context fields, call fields}.
 */
#include "internal.h"
#include "sink.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- levels --------------------------------------------------------------------------- */

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

const char *mhdctx_log_level_name(mhdctx_log_level level)
{
    return (unsigned)level <= MHDCTX_LOG_OFF ? level_names[level] : "unknown";
}

mhdctx_error mhdctx_log_level_parse(const char *text, mhdctx_log_level *level)
{
    if (text == NULL || level == NULL)
        return MHDCTX_EINVAL;
    for (unsigned i = 0; i <= MHDCTX_LOG_OFF; i++) {
        if (strcasecmp(text, level_names[i]) == 0) {
            *level = (mhdctx_log_level)i;
            return MHDCTX_OK;
        }
    }
    return MHDCTX_EINVAL;
}

static atomic_int threshold = -1; /* -1: not read from the environment yet */

static int initial_threshold(void)
{
    mhdctx_log_level level = MHDCTX_LOG_INFO;
    const char *env = getenv("MHDCTX_LOG_LEVEL");
    if (env)
        mhdctx_log_level_parse(env, &level);
    return (int)level;
}

mhdctx_log_level mhdctx_log_get_level(void)
{
    int level = atomic_load_explicit(&threshold, memory_order_relaxed);
    if (level < 0) {
        int expected = -1;
        int from_env = initial_threshold();
        /* Lose the race to an explicit mhdctx_log_set_level() gracefully. */
        atomic_compare_exchange_strong(&threshold, &expected, from_env);
        level = atomic_load(&threshold);
    }
    return (mhdctx_log_level)level;
}

void mhdctx_log_set_level(mhdctx_log_level level)
{
    if ((unsigned)level <= MHDCTX_LOG_OFF)
        atomic_store(&threshold, (int)level);
}

bool mhdctx_log_enabled(mhdctx_log_level level)
{
    return (unsigned)level < MHDCTX_LOG_OFF && level >= mhdctx_log_get_level();
}

/* ---- time ----------------------------------------------------------------------------- */

/* "2026-11-25T21:58:46" is cached per thread for the current second. */
struct time_cache {
    time_t second;
    char prefix[24];
    size_t len;
};
static _Thread_local struct time_cache time_cache = {.second = -1};

static void put_time(mhdctx__buf *b)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec != time_cache.second) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        time_cache.len = strftime(time_cache.prefix, sizeof time_cache.prefix,
                                  "%Y-%m-%dT%H:%M:%S", &tm);
        time_cache.second = now.tv_sec;
    }
    unsigned ms = (unsigned)(now.tv_nsec / 1000000);
    char tail[7] = {'.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10),
                    (char)('0' + ms % 10), 'Z', '"', '\0'};
    mhdctx__buf_putc(b, '"');
    mhdctx__buf_put(b, time_cache.prefix, time_cache.len);
    mhdctx__buf_put(b, tail, 6);
}

/* ---- fields --------------------------------------------------------------------------- */

/* The names the library writes in every line. A switch on the first byte: this runs
 * for every field of every line. */
static bool is_core_key(const char *key)
{
    switch (key[0]) {
    case 't':
        return strcmp(key, "time") == 0 || strcmp(key, "trace_id") == 0 ||
               strcmp(key, "trace_flags") == 0;
    case 'l':
        return strcmp(key, "level") == 0;
    case 'm':
        return strcmp(key, "message") == 0;
    case 'r':
        return strcmp(key, "request_id") == 0;
    case 'u':
        return strcmp(key, "user_id") == 0;
    case 's':
        return strcmp(key, "span_id") == 0;
    default:
        return false;
    }
}

/* A call's field may not overwrite what the library wrote (a forged request id), nor
 * repeat a user key: it is renamed "field_<key>". The context's lock is held. */
static void put_field_key(mhdctx__buf *b, mhdctx_context *ctx, const char *key)
{
    if (key == NULL)
        key = "";
    if (is_core_key(key) || (ctx && mhdctx__context_has_key_locked(ctx, key))) {
        char renamed[2 * MHDCTX_MAX_KEY_LEN + 8];
        snprintf(renamed, sizeof renamed, "field_%s", key);
        mhdctx__json_key(b, renamed);
        return;
    }
    mhdctx__json_key(b, key);
}

static void put_field_value(mhdctx__buf *b, const mhdctx_field *f)
{
    switch (f->type) {
    case MHDCTX_FIELD_STRING:
        if (f->v.s)
            mhdctx__json_string(b, f->v.s, strlen(f->v.s));
        else
            mhdctx__buf_put(b, "null", 4);
        break;
    case MHDCTX_FIELD_BYTES:
        mhdctx__json_string(b, f->v.s ? f->v.s : "", f->v.s ? f->len : 0);
        break;
    case MHDCTX_FIELD_INT:
        mhdctx__json_int(b, f->v.i);
        break;
    case MHDCTX_FIELD_UINT:
        mhdctx__json_uint(b, f->v.u);
        break;
    case MHDCTX_FIELD_DOUBLE:
        mhdctx__json_double(b, f->v.d);
        break;
    case MHDCTX_FIELD_BOOL:
        mhdctx__buf_puts(b, f->v.b ? "true" : "false");
        break;
    case MHDCTX_FIELD_JSON:
        mhdctx__json_value(b, f->v.j);
        break;
    case MHDCTX_FIELD_NULL:
    default:
        mhdctx__buf_put(b, "null", 4);
        break;
    }
}

static void put_message(mhdctx__buf *b, const char *fmt, va_list ap) MHDCTX_PRINTF(2, 0);

static void put_message(mhdctx__buf *b, const char *fmt, va_list ap)
{
    if (fmt == NULL) {
        MHDCTX__PUT_LITERAL(b, "\"\"");
        return;
    }
    if (strchr(fmt, '%') == NULL) { /* most messages are constant: no printf */
        mhdctx__json_string(b, fmt, strlen(fmt));
        return;
    }
    char small[512];
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(small, sizeof small, fmt, copy);
    va_end(copy);
    if (n < 0) {
        mhdctx__json_string(b, "(unformattable message)", 23);
    } else if ((size_t)n < sizeof small) {
        mhdctx__json_string(b, small, (size_t)n);
    } else {
        char *big = mhdctx__malloc((size_t)n + 1);
        if (big) {
            vsnprintf(big, (size_t)n + 1, fmt, ap);
            mhdctx__json_string(b, big, (size_t)n);
            mhdctx__free(big);
        } else {
            b->failed = true; /* out of memory: the line is dropped and counted, not cut */
        }
    }
}

/* ---- the line ------------------------------------------------------------------------- */

#define LINE_STORAGE 8192
static _Thread_local char line_storage[LINE_STORAGE];

/* Without a context, a line about a client span still names its ids. */
static void put_ids(mhdctx__buf *b, const struct mhdctx__line_ids *ids)
{
    const char *names[] = {"request_id", "trace_id", "span_id"};
    const char *values[] = {ids->request_id, ids->trace_id, ids->span_id};
    for (size_t i = 0; i < 3; i++) {
        if (values[i]) {
            mhdctx__json_key(b, names[i]);
            mhdctx__json_string(b, values[i], strlen(values[i]));
        }
    }
}

/* {"time":..,"level":..,"message": - the message is the caller's to write. */
static void line_begin(mhdctx__buf *b, mhdctx_log_level level)
{
    mhdctx__buf_init(b, line_storage, sizeof line_storage);
    MHDCTX__PUT_LITERAL(b, "{\"time\":");
    put_time(b);
    MHDCTX__PUT_LITERAL(b, ",\"level\":\"");
    mhdctx__buf_puts(b, level_names[level]);
    MHDCTX__PUT_LITERAL(b, "\",\"message\":");
}

/* The context's fields (its lock taken, held until mhdctx__line_close) or, without one, the
 * ids of @ids. One lock covers the context's fields and the check of a call's keys
 * against its user keys. */
static void put_context(mhdctx__buf *b, mhdctx_context *ctx, const struct mhdctx__line_ids *ids)
{
    if (ctx) {
        mhdctx__context_lock(ctx);
        mhdctx__context_write_fields_locked(ctx, b, ids ? ids->span_id : NULL);
    } else if (ids) {
        put_ids(b, ids);
    }
}

/* The line's end; then to the sink. */
void mhdctx__line_close(mhdctx__buf *b, mhdctx_context *ctx, mhdctx_log_level level)
{
    if (ctx)
        mhdctx__context_unlock(ctx);
    MHDCTX__PUT_LITERAL(b, "}\n");
    if (b->failed)
        mhdctx__sink_count_drop(); /* out of memory: a truncated line is never written */
    else
        mhdctx__sink_write(level, b->data, b->len);
    mhdctx__buf_release(b);
}

void mhdctx__line_open(mhdctx__buf *b, mhdctx_context *ctx, mhdctx_log_level level,
                       const char *plain_message, size_t len)
{
    line_begin(b, level);
    mhdctx__buf_putc(b, '"');
    mhdctx__buf_put(b, plain_message, len);
    mhdctx__buf_putc(b, '"');
    put_context(b, ctx, NULL);
}

static void log_line(mhdctx_context *ctx, const struct mhdctx__line_ids *ids,
                     mhdctx_log_level level, const mhdctx_field *fields, size_t n,
                     const char *fmt, va_list ap) MHDCTX_PRINTF(6, 0);

static void log_line(mhdctx_context *ctx, const struct mhdctx__line_ids *ids,
                     mhdctx_log_level level, const mhdctx_field *fields, size_t n,
                     const char *fmt, va_list ap)
{
    if (!mhdctx_log_enabled(level))
        return;
    mhdctx__buf b;
    line_begin(&b, level);
    put_message(&b, fmt, ap);
    put_context(&b, ctx, ids);
    for (size_t i = 0; i < n && fields; i++) {
        put_field_key(&b, ctx, fields[i].key);
        put_field_value(&b, &fields[i]);
    }
    mhdctx__line_close(&b, ctx, level);
}

void mhdctx__log_line(mhdctx_context *ctx, mhdctx_log_level level,
                      const mhdctx_field *fields, size_t n, const char *fmt, va_list ap)
{
    log_line(ctx, NULL, level, fields, n, fmt, ap);
}

void mhdctx__log_span(mhdctx_context *ctx, const struct mhdctx__line_ids *ids,
                      mhdctx_log_level level, const mhdctx_field *fields, size_t n,
                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line(ctx, ids, level, fields, n, fmt, ap);
    va_end(ap);
}

void mhdctx_log(mhdctx_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mhdctx__log_line(mhdctx_current(), level, NULL, 0, fmt, ap);
    va_end(ap);
}

void mhdctx_log_fieldsv(mhdctx_log_level level, const mhdctx_field *fields, size_t n,
                        const char *fmt, va_list ap)
{
    mhdctx__log_line(mhdctx_current(), level, fields, n, fmt, ap);
}

void mhdctx_log_fields(mhdctx_log_level level, const mhdctx_field *fields, size_t n,
                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mhdctx__log_line(mhdctx_current(), level, fields, n, fmt, ap);
    va_end(ap);
}

void mhdctx_log_ctx(mhdctx_context *ctx, mhdctx_log_level level, const mhdctx_field *fields,
                    size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mhdctx__log_line(ctx, level, fields, n, fmt, ap);
    va_end(ap);
}

#define ERRNO_MAX_FIELDS 30

void mhdctx_log_errno(int errnum, const mhdctx_field *fields, size_t n, const char *fmt,
                      ...)
{
    if (!mhdctx_log_enabled(MHDCTX_LOG_ERROR))
        return;
    char text[256];
    /* GNU strerror_r returns the text (maybe not in text); XSI fills text. */
    const char *message = strerror_r(errnum, text, sizeof text);
    mhdctx_field all[ERRNO_MAX_FIELDS + 2];
    size_t count = n < ERRNO_MAX_FIELDS ? n : ERRNO_MAX_FIELDS;
    all[0] = MHDCTX_F_INT("errno", errnum);
    all[1] = MHDCTX_F_STR("error", message);
    if (count)
        memcpy(all + 2, fields, count * sizeof *fields);
    va_list ap;
    va_start(ap, fmt);
    mhdctx__log_line(mhdctx_current(), MHDCTX_LOG_ERROR, all, count + 2, fmt, ap);
    va_end(ap);
}
