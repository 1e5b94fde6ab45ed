/*
 * sql_tag.c - SQL tagging in the sqlcommenter format (the open specification Google
 * started and OpenTelemetry maintains):
 *
 *   SELECT ... /<star>framework='mhdctx%2F0.1.0',request_id='abc',
 *              route='%2Fusers%2F%7Bid%7D',traceparent='00-...-01',user_id='42'<star>/
 *
 * Keys and values are URL-encoded (encodeURIComponent's set: A-Z a-z 0-9 - _ . ! ~ * ' ( )
 * stay, every other byte becomes %XX), then ' is escaped as \', values are quoted, pairs
 * are sorted by key and joined with ",". No byte of a value can end the comment: '/' is
 * always encoded, so the comment's end never appears inside it, and every quote is
 * escaped.
 * A statement that already holds a comment is left as it is, as the spec says.
 */
#include "internal.h"

#include <string.h>

/* A bounded writer that keeps counting past its end, like snprintf. */
struct out {
    char *buf;
    size_t size;
    size_t len;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->len < o->size) {
        size_t room = o->size - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

/* encodeURIComponent's unreserved bytes (the quote is one, but the format escapes it). */
static bool component_safe(unsigned char c)
{
    unsigned char lower = c | 0x20; /* maps A-Z, and only A-Z, onto a-z */
    if ((lower >= 'a' && lower <= 'z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("-_.!~*()", c) != NULL; /* rarer: letters return first */
}

/* URL-encode, then escape the meta character ' with a backslash. Runs of bytes that stay
 * as they are are copied in one piece. */
static void put_encoded(struct out *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t run = 0; /* where the pending run of plain bytes starts */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (component_safe(c))
            continue;
        put(o, s + run, i - run);
        run = i + 1;
        if (c == '\'') {
            put(o, "\\'", 2);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 0xf]};
            put(o, esc, 3);
        }
    }
    put(o, s + run, n - run);
}

bool mhdctx_sql_has_comment(const char *sql)
{
    return sql && (strstr(sql, "/*") || strstr(sql, "--"));
}

/* ---- the pairs of a context ------------------------------------------------------------ */

struct pair {
    const char *key;
    const char *value;
    size_t value_len;
    bool encoded; /* the value is written as it is (already encoded, or only plain bytes) */
};

/* By key. A handful of pairs (at most 5 + MHDCTX_SQL_MAX_TAG_KEYS): insertion sort. */
static void sort_pairs(struct pair *pairs, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct pair p = pairs[i];
        size_t j = i;
        for (; j > 0 && strcmp(pairs[j - 1].key, p.key) > 0; j--)
            pairs[j] = pairs[j - 1];
        pairs[j] = p;
    }
}

/* Process-wide list of the user keys that go into tags, set at start-up. */
static char *tag_keys[MHDCTX_SQL_MAX_TAG_KEYS];
static size_t n_tag_keys;

/* A user key may not add a second pair for a key the library writes. */
static bool is_builtin_tag_key(const char *key)
{
    return strcmp(key, "framework") == 0 || strcmp(key, "route") == 0 ||
           strcmp(key, "traceparent") == 0 || mhdctx__key_is_reserved(key);
}

static mhdctx_error check_tag_keys(const char *const *keys, size_t n)
{
    if (n > MHDCTX_SQL_MAX_TAG_KEYS)
        return MHDCTX_ELIMIT;
    if (n && keys == NULL)
        return MHDCTX_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (keys[i] == NULL || *keys[i] == '\0')
            return MHDCTX_EINVAL;
        if (is_builtin_tag_key(keys[i]))
            return MHDCTX_ERESERVED;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(keys[i], keys[j]) == 0)
                return MHDCTX_EINVAL; /* listed twice: it would be tagged twice */
        }
    }
    return MHDCTX_OK;
}

mhdctx_error mhdctx_sql_tag_keys(const char *const *keys, size_t n)
{
    mhdctx_error rc = check_tag_keys(keys, n);
    if (rc != MHDCTX_OK)
        return rc;
    char *copies[MHDCTX_SQL_MAX_TAG_KEYS] = {0};
    for (size_t i = 0; i < n; i++) {
        copies[i] = mhdctx__strdup(keys[i]);
        if (copies[i] == NULL) {
            for (size_t j = 0; j < i; j++)
                mhdctx__free(copies[j]);
            return MHDCTX_ENOMEM;
        }
    }
    for (size_t i = 0; i < n_tag_keys; i++)
        mhdctx__free(tag_keys[i]);
    memcpy(tag_keys, copies, sizeof copies);
    n_tag_keys = n;
    return MHDCTX_OK;
}

/* Fills @pairs (the caller holds the context lock, or is its only holder); returns the
 * count. */
static size_t collect_pairs(mhdctx_context *ctx, struct pair *pairs, char *traceparent)
{
    size_t n = 0;
    pairs[n++] = (struct pair){"framework", "mhdctx%2F" MHDCTX_VERSION_STRING, /* d.d.d */
                               sizeof "mhdctx%2F" MHDCTX_VERSION_STRING - 1, true};
    pairs[n++] = (struct pair){"request_id", ctx->request_id, ctx->request_id_len, false};
    const char *route = ctx->route ? ctx->route : ctx->text;
    pairs[n++] = (struct pair){"route", route, strlen(route), false};
    mhdctx__context_draw_ids_locked(ctx);
    if (ctx->trace_id[0]) {
        mhdctx_traceparent_format(traceparent, ctx->trace_id, ctx->span_id,
                                  ctx->trace_flags & MHDCTX__TRACE_FLAGS_SENT);
        pairs[n++] = (struct pair){"traceparent", traceparent, MHDCTX_TRACEPARENT_LEN,
                                   true}; /* hex digits and '-' */
    }
    if (ctx->user_id)
        pairs[n++] = (struct pair){"user_id", ctx->user_id, strlen(ctx->user_id), false};
    for (size_t k = 0; k < n_tag_keys; k++) {
        for (size_t i = 0; i < ctx->n_keys; i++) {
            if (strcmp(ctx->keys[i].name, tag_keys[k]) != 0)
                continue;
            /* Both as they were when the key was set: a string's bytes, or the JSON text
             * log lines carry; never the json_t, which the caller may have changed. */
            const struct mhdctx__user_key *key = &ctx->keys[i];
            struct pair p = {key->name, key->json, key->json_len, false};
            if (key->string) {
                p.value = key->string;
                p.value_len = key->string_len;
            }
            pairs[n++] = p;
        }
    }
    return n;
}

static void write_comment(struct out *o, struct pair *pairs, size_t n)
{
    sort_pairs(pairs, n);
    put(o, "/*", 2);
    for (size_t i = 0; i < n; i++) {
        if (i)
            put(o, ",", 1);
        put_encoded(o, pairs[i].key, strlen(pairs[i].key));
        put(o, "='", 2);
        if (pairs[i].encoded)
            put(o, pairs[i].value, pairs[i].value_len);
        else
            put_encoded(o, pairs[i].value, pairs[i].value_len);
        put(o, "'", 1);
    }
    put(o, "*/", 2);
}

/* The statement, its comment before a final ';' (and trailing blanks), the rest. */
static void write_tagged(struct out *o, mhdctx_context *ctx, const char *sql)
{
    size_t len = strlen(sql), end = len;
    while (end > 0 && strchr(" \t\r\n", sql[end - 1]))
        end--;
    bool semicolon = end > 0 && sql[end - 1] == ';';
    size_t body = semicolon ? end - 1 : end;
    put(o, sql, body);
    if (ctx == NULL || mhdctx_sql_has_comment(sql)) {
        put(o, sql + body, len - body);
        return;
    }
    struct pair pairs[5 + MHDCTX_SQL_MAX_TAG_KEYS];
    char traceparent[MHDCTX_TRACEPARENT_LEN + 1];
    bool locked = mhdctx__context_lock_if_shared(ctx); /* as a log line: see internal.h */
    size_t n = collect_pairs(ctx, pairs, traceparent);
    put(o, " ", 1);
    write_comment(o, pairs, n);
    if (locked)
        mhdctx__context_unlock(ctx);
    put(o, sql + body, len - body);
}

mhdctx_error mhdctx_sql_tag_into(mhdctx_context *ctx, const char *sql, char *buf, size_t size,
                                 size_t *needed)
{
    if (sql == NULL || (buf == NULL && size > 0))
        return MHDCTX_EINVAL;
    struct out o = {buf, size, 0};
    write_tagged(&o, ctx, sql);
    if (needed)
        *needed = o.len + 1;
    if (o.len >= size) {
        if (size)
            buf[size - 1] = '\0';
        return MHDCTX_ELIMIT;
    }
    buf[o.len] = '\0';
    return MHDCTX_OK;
}

char *mhdctx_sql_tag_ctx(mhdctx_context *ctx, const char *sql)
{
    if (sql == NULL)
        return NULL;
    /* Measure, then write; the user id or keys may change in between (another thread),
     * so retry until it fits. */
    size_t needed = 0;
    mhdctx_sql_tag_into(ctx, sql, NULL, 0, &needed);
    for (;;) {
        char *text = mhdctx__malloc(needed);
        if (text == NULL)
            return NULL;
        size_t again = 0;
        if (mhdctx_sql_tag_into(ctx, sql, text, needed, &again) == MHDCTX_OK)
            return mhdctx__hand_to_caller(text); /* the caller's free() */
        mhdctx__free(text);
        needed = again;
    }
}

char *mhdctx_sql_tag(const char *sql)
{
    return mhdctx_sql_tag_ctx(mhdctx_current(), sql);
}
