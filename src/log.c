/*
 * log.c - the JSON-lines logger: levels, line formatting, context enrichment.
 * Where the line goes is sink.c's business.
 *
 * A line is built in a thread-local buffer (no allocation unless it outgrows it) as:
 * {"time","level","message", context fields, call fields}.
 */
#include "internal.h"
#include "sink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- levels --------------------------------------------------------------------------- */

/* The names in mhdctx_log_level's order: the one list level_names and level_tails
 * (below) are made from. */
#define FOR_EACH_LEVEL_NAME(X) X("debug") X("info") X("warn") X("error") X("off")
#define LEVEL_NAME(name)       name,
static const char *const level_names[] = {FOR_EACH_LEVEL_NAME(LEVEL_NAME)};
#undef LEVEL_NAME

const char *mhdctx_log_level_name(mhdctx_log_level level)
{
    return (unsigned)level <= MHDCTX_LOG_OFF ? level_names[level] : "unknown";
}

mhdctx_error mhdctx_log_level_parse(const char *text, mhdctx_log_level *level)
{
    if (text == NULL || level == NULL)
        return MHDCTX_EINVAL;
    for (unsigned i = 0; i <= MHDCTX_LOG_OFF; i++) {
        if (mhdctx__ascii_case_equal(text, level_names[i])) {
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

/* What a thread needs to start a line: the text up to the time's milliseconds, kept
 * for the current second, and the storage the line is built in. */
#define LINE_STORAGE     8192
#define TIME_PREFIX_ROOM 48
struct line_thread {
    time_t second; /* of prefix; -1 before the first line */
    size_t prefix_len;
    char prefix[TIME_PREFIX_ROOM]; /* {"time":"2026-11-25T21:58:46. */
    uint64_t offset_read_at;       /* monotonic ns; 0 before the first reading */
    int64_t wall_minus_mono;       /* ns: CLOCK_REALTIME - CLOCK_MONOTONIC then */
    char storage[LINE_STORAGE];
};
/* The thread's (thread_blocks.c) from its first line on. initial-exec, like the current
 * context: one load instead of a __tls_get_addr call. */
static _Thread_local struct line_thread *line_thread_ptr
    __attribute__((tls_model("initial-exec")));

static void forget_line_thread(void *block)
{
    (void)block;
    line_thread_ptr = NULL; /* a line logged later at the thread's exit makes one again */
}

static const struct mhdctx__thread_block_kind line_kind = {.slot = MHDCTX__SLOT_LINE,
                                                           .size = sizeof(struct line_thread),
                                                           .cleanup = forget_line_thread};

/* NULL when the thread has none and none can be had. */
static struct line_thread *this_line_thread(void)
{
    struct line_thread *t = line_thread_ptr;
    if (t == NULL) {
        t = mhdctx__thread_block(&line_kind);
        if (t)
            t->second = -1; /* a new block: no prefix yet (0 is a second like others) */
        line_thread_ptr = t;
    }
    return t;
}

static void format_time_prefix(struct line_thread *t, time_t second)
{
    static const char key[] = "{\"time\":\"";
    struct tm tm = {0};
    gmtime_r(&second, &tm);
    memcpy(t->prefix, key, sizeof key - 1);
    size_t n = strftime(t->prefix + sizeof key - 1, sizeof t->prefix - sizeof key,
                        "%Y-%m-%dT%H:%M:%S.", &tm);
    t->prefix_len = sizeof key - 1 + n;
    t->second = second;
}

/* After the milliseconds: the rest of the time, the level and the message's key. Each
 * is copied as a whole LEVEL_TAIL_ROOM bytes (a fixed-size copy is two vector moves);
 * len says how many count. */
#define LEVEL_TAIL_ROOM 32
static const struct {
    char text[LEVEL_TAIL_ROOM];
    unsigned char len;
} level_tails[] = {
#define LEVEL_TAIL_TEXT(name) "Z\",\"level\":\"" name "\",\"message\":"
#define LEVEL_TAIL(name)      {LEVEL_TAIL_TEXT(name), sizeof LEVEL_TAIL_TEXT(name) - 1},
    FOR_EACH_LEVEL_NAME(LEVEL_TAIL)
#undef LEVEL_TAIL
#undef LEVEL_TAIL_TEXT
};

/* ---- fields --------------------------------------------------------------------------- */

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

#define OFFSET_REFRESH_NS MHDCTX__NS_PER_S

/* The wall-clock time of @mono_ns, a CLOCK_MONOTONIC reading the caller has anyway: the
 * access line reads the clock once for its duration and its time. Both clocks follow
 * NTP's rate corrections alike, so their difference only changes when the wall clock is
 * stepped; it is read again once a second, which is how long a line may lag a step. */
static struct timespec wall_time_of(struct line_thread *t, uint64_t mono_ns)
{
    if (t->offset_read_at == 0 || mono_ns - t->offset_read_at >= OFFSET_REFRESH_NS) {
        uint64_t wall = mhdctx__clock_ns(CLOCK_REALTIME);
        uint64_t mono = mhdctx__monotonic_ns();
        t->wall_minus_mono = (int64_t)(wall - mono);
        t->offset_read_at = mono;
    }
    /* Modular arithmetic: right whatever the offset's sign. */
    return mhdctx__timespec_of_ns(mono_ns + (uint64_t)t->wall_minus_mono);
}

/* {"time":..,"level":..,"message": - the message is the caller's to write. The line
 * starts in the thread's storage, which always has room for this much. The time is
 * @mono_ns's, or now with 0. */
static void line_begin(mhdctx__buf *b, mhdctx_log_level level, uint64_t mono_ns)
{
    struct line_thread *t = this_line_thread();
    if (t == NULL) {
        /* Out of memory: the line is dropped and counted (mhdctx__line_close). */
        mhdctx__buf_init(b, NULL, 0);
        b->failed = true;
        return;
    }
    struct timespec now;
    if (mono_ns)
        now = wall_time_of(t, mono_ns);
    else
        clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec != t->second)
        format_time_prefix(t, now.tv_sec);
    mhdctx__buf_init(b, t->storage, sizeof t->storage);
    char *p = b->data;
    memcpy(p, t->prefix, TIME_PREFIX_ROOM);
    p += t->prefix_len;
    unsigned ms = (unsigned)(now.tv_nsec / 1000000);
    p[0] = (char)('0' + ms / 100);
    p[1] = (char)('0' + ms / 10 % 10);
    p[2] = (char)('0' + ms % 10);
    memcpy(p + 3, level_tails[level].text, LEVEL_TAIL_ROOM);
    b->len = (size_t)(p + 3 - b->data) + level_tails[level].len;
}

/* The context's fields or, without one, the ids of @ids. One lock, when the context is
 * shared, covers the context's fields and the check of a call's keys against its user
 * keys: held until mhdctx__line_close. Returns whether it locked. */
static bool put_context(mhdctx__buf *b, mhdctx_context *ctx, const struct mhdctx__line_ids *ids)
{
    if (ctx) {
        bool locked = mhdctx__context_lock_if_shared(ctx);
        mhdctx__context_write_fields_locked(ctx, b, ids ? ids->span_id : NULL);
        return locked;
    }
    if (ids)
        put_ids(b, ids);
    return false;
}

/* The line's end; then to the sink. */
void mhdctx__line_close(mhdctx__buf *b, mhdctx_context *ctx, mhdctx_log_level level,
                        bool locked)
{
    if (locked)
        mhdctx__context_unlock(ctx);
    MHDCTX__PUT_LITERAL(b, "}\n");
    if (b->failed)
        mhdctx__sink_count_drop(); /* out of memory: a truncated line is never written */
    else
        mhdctx__sink_write(level, b->data, b->len);
    mhdctx__buf_release(b);
}

bool mhdctx__line_open(mhdctx__buf *b, mhdctx_context *ctx, mhdctx_log_level level,
                       uint64_t mono_ns, const char *plain_message, size_t len)
{
    line_begin(b, level, mono_ns);
    mhdctx__buf_putc(b, '"');
    mhdctx__buf_put(b, plain_message, len);
    mhdctx__buf_putc(b, '"');
    return put_context(b, ctx, NULL);
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
    if (mhdctx__in_log_callback) {
        mhdctx__sink_count_drop(); /* see mhdctx_log_to_callback() */
        return;
    }
    mhdctx__buf b;
    line_begin(&b, level, 0);
    put_message(&b, fmt, ap);
    bool locked = put_context(&b, ctx, ids);
    if (n && fields) {
        mhdctx__field_names names;
        mhdctx__field_names_init(&names);
        for (size_t i = 0; i < n; i++) {
            mhdctx__put_field_name(&b, &names, ctx, fields, i);
            put_field_value(&b, &fields[i]);
        }
        mhdctx__field_names_release(&names);
    }
    mhdctx__line_close(&b, ctx, level, locked);
}

void mhdctx__log_line(mhdctx_context *ctx, mhdctx_log_level level, const mhdctx_field *fields,
                      size_t n, const char *fmt, va_list ap)
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

void mhdctx_log_errno(int errnum, const mhdctx_field *fields, size_t n, const char *fmt, ...)
{
    if (!mhdctx_log_enabled(MHDCTX_LOG_ERROR))
        return;
    char text[256];
    /* GNU strerror_r returns the text (maybe not in text); XSI fills text. */
    const char *message = strerror_r(errnum, text, sizeof text);
    mhdctx_field all[ERRNO_MAX_FIELDS + 2];
    size_t count = fields == NULL ? 0 : n < ERRNO_MAX_FIELDS ? n : ERRNO_MAX_FIELDS;
    all[0] = MHDCTX_F_INT("errno", errnum);
    all[1] = MHDCTX_F_STR("error", message);
    if (count)
        memcpy(all + 2, fields, count * sizeof *fields);
    va_list ap;
    va_start(ap, fmt);
    mhdctx__log_line(mhdctx_current(), MHDCTX_LOG_ERROR, all, count + 2, fmt, ap);
    va_end(ap);
}
