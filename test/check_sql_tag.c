/*
 * check_sql_tag.c - SQL tagging in the sqlcommenter format
 * (https://google.github.io/sqlcommenter/spec/): exact output, placement before a
 * final ';', statements left alone, the allocation-free variant, the process-wide tag
 * keys, and hostile or random values that must never end the comment or add SQL.
 *
 * Every tagged statement is checked twice: against its exact text where the test knows
 * it, and through a small decoder written here from the spec (split the pairs on ',',
 * key='value', unescape \' then percent-decode) that must give back exactly the keys
 * and the bytes that went in.
 *
 * Only the public header is used. Every test resets the tag keys at its end (and the
 * checked teardown does it again, for a failed test under CK_FORK=no).
 */
#include "mhdctx.h"
#include "support.h"

#include <check.h>
#include <ctype.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_TIMEOUT_S 60
#define MAX_PAIRS      48

/* ==== helpers ========================================================================= */

static void set_tag_keys(const char *const *keys, size_t n)
{
    ck_assert_int_eq(mhdctx_sql_tag_keys(keys, n), MHDCTX_OK);
}

static void reset_tag_keys(void)
{
    ck_assert_int_eq(mhdctx_sql_tag_keys(NULL, 0), MHDCTX_OK);
}

static void teardown(void)
{
    (void)mhdctx_sql_tag_keys(NULL, 0);
}

/* mhdctx_sql_tag_ctx(), never NULL for a non-NULL statement (owned: free()). */
static char *tag(mhdctx_context *ctx, const char *sql)
{
    char *out = mhdctx_sql_tag_ctx(ctx, sql);
    ck_assert_ptr_nonnull(out);
    return out;
}

/* "00-<trace>-<span>-<flags>" of @p ctx. */
static void traceparent_of(mhdctx_context *ctx, char out[MHDCTX_TRACEPARENT_LEN + 1])
{
    int n = snprintf(out, MHDCTX_TRACEPARENT_LEN + 1, "00-%s-%s-%02x", mhdctx_trace_id(ctx),
                     mhdctx_span_id(ctx), (unsigned)mhdctx_trace_flags(ctx));
    ck_assert_int_eq(n, MHDCTX_TRACEPARENT_LEN);
}

/* How many times @p needle starts in @p hay, overlapping occurrences included. */
static size_t count_substr(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ---- the decoder ---------------------------------------------------------------------- */

struct pairs {
    size_t n;
    char *key[MAX_PAIRS];
    size_t key_len[MAX_PAIRS];
    char *val[MAX_PAIRS];
    size_t val_len[MAX_PAIRS];
};

static void pairs_free(struct pairs *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->key[i]);
        free(p->val[i]);
    }
    p->n = 0;
}

static bool url_safe(unsigned char c)
{
    /* encodeURIComponent's unreserved set; ' is escaped with a backslash, not here */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-_.!~*()", c) != NULL);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes @p n bytes (after the \' unescaping, so ' may appear raw). Every raw
 * byte must be one encodeURIComponent leaves alone. Owned result, NULL when malformed. */
static char *percent_decode(const char *s, size_t n, size_t *out_len, const char **why)
{
    char *out = malloc(n + 1);
    ck_assert_ptr_nonnull(out);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0) {
                *why = "malformed %XX escape";
                free(out);
                return NULL;
            }
            out[o++] = (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        } else if (c == '\'' || url_safe(c)) {
            out[o++] = (char)c;
        } else {
            *why = "a byte that should have been percent-encoded";
            free(out);
            return NULL;
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* key='value' pairs joined with ','. NULL on success, else why it failed. */
static const char *decode_comment(const char *c, size_t len, struct pairs *p)
{
    p->n = 0;
    size_t start = 0;
    while (start <= len) {
        size_t end = start;
        while (end < len && c[end] != ',')
            end++;
        if (p->n == MAX_PAIRS)
            return "too many pairs";
        const char *pair = c + start;
        size_t plen = end - start;
        const char *eq = memchr(pair, '=', plen);
        if (eq == NULL)
            return "a pair without '='";
        size_t klen = (size_t)(eq - pair);
        if (klen == 0)
            return "an empty key";
        if (plen < klen + 3 || eq[1] != '\'' || pair[plen - 1] != '\'')
            return "a value that is not quoted";
        /* the quoted value: \' -> ', any other quote or backslash is a failure */
        const char *v = eq + 2;
        size_t vlen = plen - klen - 3;
        char *unescaped = malloc(vlen + 1);
        ck_assert_ptr_nonnull(unescaped);
        size_t u = 0;
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] == '\\') {
                if (i + 1 >= vlen || v[i + 1] != '\'') {
                    free(unescaped);
                    return "a backslash that does not escape a quote";
                }
                unescaped[u++] = '\'';
                i++;
            } else if (v[i] == '\'') {
                free(unescaped);
                return "an unescaped quote inside a value";
            } else {
                unescaped[u++] = v[i];
            }
        }
        const char *why = NULL;
        size_t key_len = 0, val_len = 0;
        if (memchr(pair, '\'', klen) || memchr(pair, '\\', klen)) {
            free(unescaped);
            return "a quote or backslash in a key";
        }
        char *key = percent_decode(pair, klen, &key_len, &why);
        if (key == NULL) {
            free(unescaped);
            return why;
        }
        char *val = percent_decode(unescaped, u, &val_len, &why);
        free(unescaped);
        if (val == NULL) {
            free(key);
            return why;
        }
        p->key[p->n] = key;
        p->key_len[p->n] = key_len;
        p->val[p->n] = val;
        p->val_len[p->n] = val_len;
        p->n++;
        start = end + 1;
    }
    return NULL;
}

/*
 * Checks that @p out is @p sql tagged: the statement up to a final ';' (trailing blanks
 * after it included), " /" "*", the comment, "*" "/", then the ';' and the blanks; exactly
 * one comment opener and one closer in the whole text; and decodes the comment into @p p
 * (pairs_free() it), which must be sorted by key with no key twice.
 */
static void check_tagged(const char *sql, const char *out, struct pairs *p)
{
    size_t len = strlen(sql), end = len;
    while (end > 0 && strchr(" \t\r\n", sql[end - 1]) != NULL)
        end--;
    size_t body = end > 0 && sql[end - 1] == ';' ? end - 1 : end;
    const char *rest = sql + body;
    size_t out_len = strlen(out), rest_len = strlen(rest);

    ck_assert_msg(count_substr(out, "/*") == 1, "not exactly one comment opener: %s", out);
    ck_assert_msg(count_substr(out, "*/") == 1, "not exactly one comment closer: %s", out);
    ck_assert_msg(strncmp(out, sql, body) == 0, "statement not kept: %s", out);
    ck_assert_msg(strncmp(out + body, " /*", 3) == 0, "comment not where expected: %s", out);
    const char *close = strstr(out, "*/");
    ck_assert_msg(close + 2 + rest_len == out + out_len && strcmp(close + 2, rest) == 0,
                  "the closer is not the final one before the ';' and blanks: %s", out);
    const char *comment = out + body + 3;
    const char *why = decode_comment(comment, (size_t)(close - comment), p);
    ck_assert_msg(why == NULL, "comment does not decode (%s): %s", why, out);
    for (size_t i = 1; i < p->n; i++) {
        ck_assert_msg(strcmp(p->key[i - 1], p->key[i]) < 0,
                      "keys not sorted or repeated (%s, %s): %s", p->key[i - 1], p->key[i],
                      out);
    }
}

/* Whether @p key was decoded; *index receives its position. */
static bool find_pair(const struct pairs *p, const char *key, size_t *index)
{
    for (size_t i = 0; i < p->n; i++) {
        if (p->key_len[i] == strlen(key) && memcmp(p->key[i], key, p->key_len[i]) == 0) {
            *index = i;
            return true;
        }
    }
    return false;
}

static void expect_pair(const struct pairs *p, const char *key, const char *val, size_t val_len)
{
    size_t i = 0;
    ck_assert_msg(find_pair(p, key, &i), "key %s missing", key);
    ck_assert_msg(p->val_len[i] == val_len, "key %s: %zu bytes decoded, %zu expected", key,
                  p->val_len[i], val_len);
    ck_assert_msg(memcmp(p->val[i], val, val_len) == 0, "key %s: decoded bytes differ", key);
}

static void expect_no_pair(const struct pairs *p, const char *key)
{
    size_t i = 0;
    ck_assert_msg(!find_pair(p, key, &i), "key %s unexpectedly present", key);
}

/* The pairs every tag has (traceparent: a context of mhdctx_context_new() has one). */
static void expect_builtins(const struct pairs *p, mhdctx_context *ctx)
{
    char tp[MHDCTX_TRACEPARENT_LEN + 1];
    traceparent_of(ctx, tp);
    const char *fw = "mhdctx/" MHDCTX_VERSION_STRING;
    expect_pair(p, "framework", fw, strlen(fw));
    const char *id = mhdctx_request_id(ctx);
    expect_pair(p, "request_id", id, strlen(id));
    const char *route = mhdctx_route(ctx);
    expect_pair(p, "route", route, strlen(route));
    expect_pair(p, "traceparent", tp, strlen(tp));
}

/* Tags @p sql for @p ctx, checks its structure and decodes it into @p p (pairs_free()).
 * Also checks that mhdctx_sql_tag_into() measures and writes the very same text. */
static void tag_and_decode(mhdctx_context *ctx, const char *sql, struct pairs *p)
{
    char *out = tag(ctx, sql);
    check_tagged(sql, out, p);
    size_t needed = 0;
    ck_assert_int_eq(mhdctx_sql_tag_into(ctx, sql, NULL, 0, &needed), MHDCTX_ELIMIT);
    ck_assert_uint_eq(needed, strlen(out) + 1);
    char *buf = malloc(needed);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(mhdctx_sql_tag_into(ctx, sql, buf, needed, NULL), MHDCTX_OK);
    ck_assert_str_eq(buf, out);
    free(buf);
    free(out);
}

/* A string of @p n bytes cycling through @p pattern (owned). */
static char *cycle(const char *pattern, size_t n)
{
    size_t plen = strlen(pattern);
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < n; i++)
        s[i] = pattern[i % plen];
    s[n] = '\0';
    return s;
}

/* ==== exact output ===================================================================== */

/* The tag's traceparent carries only the flags Trace Context defines, whatever bits an
 * imported context holds. */
START_TEST(test_traceparent_sends_only_the_defined_flags)
{
    static const char text[] =
        "{\"v\":1,\"request_id\":\"r1\",\"user_id\":null,\"roles\":[],\"keys\":{},"
        "\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\",\"span_id\":\"b7ad6b7169203331\","
        "\"parent_span_id\":\"\",\"trace_flags\":\"fd\",\"tracestate\":\"\"}";
    mhdctx_error err;
    mhdctx_context *ctx = mhdctx_context_import(text, strlen(text), &err);
    ck_assert_msg(ctx != NULL, "import: %s", mhdctx_error_name(err));
    ck_assert_uint_eq(mhdctx_trace_flags(ctx), 0xfd);
    char *out = tag(ctx, "SELECT 1");
    ck_assert_msg(strstr(out, "traceparent='00-0af7651916cd43dd8448eb211c80319c-"
                              "b7ad6b7169203331-01'") != NULL,
                  "%s", out);
    free(out);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(test_exact_simple_statement)
{
    mhdctx_context *ctx = new_context();
    const char *keys[] = {"tenant_id"};
    set_tag_keys(keys, 1);
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "42"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_route(ctx, "/users/{id}"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", "acme"), MHDCTX_OK);

    char tp[MHDCTX_TRACEPARENT_LEN + 1];
    traceparent_of(ctx, tp);
    ck_assert_uint_eq(strlen(mhdctx_trace_id(ctx)), MHDCTX_TRACE_ID_LEN);
    ck_assert_uint_eq(strlen(mhdctx_span_id(ctx)), MHDCTX_SPAN_ID_LEN);
    ck_assert_uint_eq(mhdctx_trace_flags(ctx),
                      MHDCTX_TRACE_FLAG_SAMPLED | MHDCTX_TRACE_FLAG_RANDOM);
    char expected[1024];
    snprintf(expected, sizeof expected,
             "SELECT * FROM users WHERE id = $1 /*framework='mhdctx%%2F%s',"
             "request_id='%s',route='%%2Fusers%%2F%%7Bid%%7D',tenant_id='acme',"
             "traceparent='%s',user_id='42'*/",
             MHDCTX_VERSION_STRING, mhdctx_request_id(ctx), tp);

    const char *sql = "SELECT * FROM users WHERE id = $1";
    char *out = tag(ctx, sql);
    ck_assert_str_eq(out, expected);
    free(out);

    /* without user keys selected, tenant_id disappears */
    reset_tag_keys();
    snprintf(expected, sizeof expected,
             "SELECT * FROM users WHERE id = $1 /*framework='mhdctx%%2F%s',"
             "request_id='%s',route='%%2Fusers%%2F%%7Bid%%7D',"
             "traceparent='%s',user_id='42'*/",
             MHDCTX_VERSION_STRING, mhdctx_request_id(ctx), tp);
    out = tag(ctx, sql);
    ck_assert_str_eq(out, expected);
    free(out);

    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

/* A tag carries a string key as it was set, as log lines do: the caller changing the
 * json_t it shares afterwards (json_string_set frees the old bytes) changes neither. */
START_TEST(test_shared_string_value_tagged_as_set)
{
    const char *keys[] = {"tenant_id"};
    set_tag_keys(keys, 1);
    mhdctx_context *ctx = new_context();
    json_t *shared = json_string("acme");
    ck_assert_int_eq(mhdctx_set(ctx, "tenant_id", shared), MHDCTX_OK);
    ck_assert_int_eq(json_string_set(shared, "changed-after-set-and-long-enough"), 0);
    char *out = tag(ctx, "SELECT 1");
    ck_assert_msg(strstr(out, ",tenant_id='acme',") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "changed") == NULL, "%s", out);
    free(out);
    json_decref(shared);
    out = tag(ctx, "SELECT 1");
    ck_assert_msg(strstr(out, ",tenant_id='acme',") != NULL, "%s", out);
    free(out);
    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

/* Every ASCII byte of a value, alone and between letters, is written as
 * encodeURIComponent writes it (A-Z a-z 0-9 - _ . ! ~ * ( ) as they are, every other
 * byte as %XX in upper case), except the quote, escaped as \'. */
START_TEST(test_each_byte_encoded_as_encode_uri_component)
{
    const char *keys[] = {"v"};
    set_tag_keys(keys, 1);
    mhdctx_context *ctx = new_context();
    for (int c = 1; c < 128; c++) {
        char expected[16];
        if (isalnum(c) || strchr("-_.!~*()", c))
            snprintf(expected, sizeof expected, "%c", c);
        else if (c == '\'')
            snprintf(expected, sizeof expected, "\\'");
        else
            snprintf(expected, sizeof expected, "%%%02X", (unsigned)c);
        char value[8], pair[64];
        snprintf(value, sizeof value, "ab%ccd", c);
        ck_assert_int_eq(mhdctx_set_string(ctx, "v", value), MHDCTX_OK);
        char *out = tag(ctx, "SELECT 1");
        snprintf(pair, sizeof pair, ",v='ab%scd'*/", expected); /* the last key */
        ck_assert_msg(strstr(out, pair) != NULL, "byte %d: %s", c, out);
        free(out);
    }
    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

/* mhdctx_sql_tag() uses the calling thread's current context. */
struct tag_call {
    const char *sql;
    char *out;
};

static void tag_in_context(void *arg)
{
    struct tag_call *call = arg;
    call->out = mhdctx_sql_tag(call->sql);
}

/* The tagged text is the caller's (free()): it leaves the fault-injection build's count
 * of blocks allocated and not freed by the library, which it used to stay in. */

START_TEST(test_tagged_text_leaves_the_librarys_block_count)
{
    mhdctx_context *ctx = new_context();
    long before = atomic_load(&mhdctx__alloc_live);
    char *text = mhdctx_sql_tag_ctx(ctx, "SELECT 1");
    ck_assert_ptr_nonnull(text);
    free(text);
    ck_assert_int_eq(atomic_load(&mhdctx__alloc_live), before);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(test_current_context_used)
{
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "u-1"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_route(ctx, "/orders"), MHDCTX_OK);
    char *direct = tag(ctx, "UPDATE t SET a = 1;");

    struct tag_call call = {"UPDATE t SET a = 1;", NULL};
    mhdctx_run(ctx, tag_in_context, &call);
    ck_assert_ptr_nonnull(call.out);
    ck_assert_str_eq(call.out, direct);
    ck_assert_ptr_null(mhdctx_current());
    free(call.out);
    free(direct);

    /* outside any request: an unchanged copy */
    char *plain = mhdctx_sql_tag("UPDATE t SET a = 1;  \n");
    ck_assert_ptr_nonnull(plain);
    ck_assert_str_eq(plain, "UPDATE t SET a = 1;  \n");
    free(plain);
    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

START_TEST(test_final_semicolon_and_blanks)
{
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_route(ctx, "/r"), MHDCTX_OK);
    char tp[MHDCTX_TRACEPARENT_LEN + 1];
    traceparent_of(ctx, tp);
    char comment[512];
    snprintf(comment, sizeof comment,
             "/*framework='mhdctx%%2F%s',request_id='%s',route='%%2Fr',traceparent='%s'*/",
             MHDCTX_VERSION_STRING, mhdctx_request_id(ctx), tp);

    static const struct {
        const char *sql;
        const char *before; /* the statement part */
        const char *after;  /* what follows the comment */
    } cases[] = {
        {"SELECT 1;", "SELECT 1", ";"},
        {"SELECT 1;  \n\t", "SELECT 1", ";  \n\t"},
        {"SELECT 1;\r\n", "SELECT 1", ";\r\n"},
        {"SELECT 1", "SELECT 1", ""},
        {"SELECT 1 \n", "SELECT 1", " \n"},
        {"SELECT ';' FROM t", "SELECT ';' FROM t", ""},
        {"SELECT 1;;", "SELECT 1;", ";"},
        {"INSERT INTO t VALUES ('a;b');", "INSERT INTO t VALUES ('a;b')", ";"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char expected[1024];
        snprintf(expected, sizeof expected, "%s %s%s", cases[i].before, comment,
                 cases[i].after);
        char *out = tag(ctx, cases[i].sql);
        ck_assert_msg(strcmp(out, expected) == 0, "case %zu: got [%s], expected [%s]", i, out,
                      expected);
        struct pairs p;
        check_tagged(cases[i].sql, out, &p);
        expect_builtins(&p, ctx);
        ck_assert_uint_eq(p.n, 4);
        pairs_free(&p);
        free(out);
    }
    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

START_TEST(test_existing_comment_unchanged)
{
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "7"), MHDCTX_OK);
    static const char *const commented[] = {
        "SELECT 1 /* hint */",
        "SELECT 1 -- trailing",
        "/*+ INDEX(t) */ SELECT * FROM t;",
        "SELECT '--' FROM t;",
        "SELECT 1 /*framework='x'*/;",
        "SELECT a/*b",
        "SELECT 1--",
        "--",
        "/*",
    };
    for (size_t i = 0; i < sizeof commented / sizeof commented[0]; i++) {
        ck_assert_msg(mhdctx_sql_has_comment(commented[i]), "%s", commented[i]);
        char *out = tag(ctx, commented[i]);
        ck_assert_str_eq(out, commented[i]);
        ck_assert_ptr_ne(out, commented[i]);
        free(out);
        char buf[128];
        size_t needed = 0;
        ck_assert_int_eq(mhdctx_sql_tag_into(ctx, commented[i], buf, sizeof buf, &needed),
                         MHDCTX_OK);
        ck_assert_str_eq(buf, commented[i]);
        ck_assert_uint_eq(needed, strlen(commented[i]) + 1);
    }
    static const char *const plain[] = {"SELECT 1",   "SELECT a / b * c FROM t",
                                        "SELECT 5-3", "SELECT '-' || '-'",
                                        "",           "SELECT '*/'"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        ck_assert_msg(!mhdctx_sql_has_comment(plain[i]), "%s", plain[i]);
    ck_assert(!mhdctx_sql_has_comment(NULL));
    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

START_TEST(test_outside_request_unchanged_copy)
{
    ck_assert_ptr_null(mhdctx_current());
    static const char *const statements[] = {"SELECT 1", "SELECT 1;  \n", "", ";",
                                             "DELETE FROM t WHERE a = 'x*/'"};
    for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
        char *a = mhdctx_sql_tag(statements[i]);
        char *b = mhdctx_sql_tag_ctx(NULL, statements[i]);
        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(b);
        ck_assert_str_eq(a, statements[i]);
        ck_assert_str_eq(b, statements[i]);
        ck_assert_ptr_ne(a, statements[i]);
        free(a);
        free(b);
        char buf[64];
        size_t needed = 0;
        ck_assert_int_eq(mhdctx_sql_tag_into(NULL, statements[i], buf, sizeof buf, &needed),
                         MHDCTX_OK);
        ck_assert_str_eq(buf, statements[i]);
        ck_assert_uint_eq(needed, strlen(statements[i]) + 1);
    }
    ck_assert_ptr_null(mhdctx_sql_tag(NULL));
    ck_assert_ptr_null(mhdctx_sql_tag_ctx(NULL, NULL));
    mhdctx_context *ctx = new_context();
    ck_assert_ptr_null(mhdctx_sql_tag_ctx(ctx, NULL));
    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

START_TEST(test_anonymous_and_route_default)
{
    mhdctx_context *ctx = new_context();
    /* a context of one's own has an empty path: route is the path until set */
    ck_assert_str_eq(mhdctx_route(ctx), "");
    struct pairs p;
    tag_and_decode(ctx, "SELECT 1", &p);
    ck_assert_uint_eq(p.n, 4);
    expect_builtins(&p, ctx);
    expect_pair(&p, "route", "", 0);
    expect_no_pair(&p, "user_id");
    pairs_free(&p);

    ck_assert_int_eq(mhdctx_set_user_id(ctx, "alice"), MHDCTX_OK);
    tag_and_decode(ctx, "SELECT 1", &p);
    ck_assert_uint_eq(p.n, 5);
    expect_pair(&p, "user_id", "alice", 5);
    pairs_free(&p);

    /* back to anonymous */
    ck_assert_int_eq(mhdctx_set_user_id(ctx, NULL), MHDCTX_OK);
    tag_and_decode(ctx, "SELECT 1", &p);
    ck_assert_uint_eq(p.n, 4);
    expect_no_pair(&p, "user_id");
    pairs_free(&p);

    /* route: set, replaced, refused arguments */
    ck_assert_int_eq(mhdctx_set_route(ctx, "/a/{x}"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_route(ctx, "/b/{y}"), MHDCTX_OK);
    ck_assert_str_eq(mhdctx_route(ctx), "/b/{y}");
    ck_assert_int_eq(mhdctx_set_route(ctx, NULL), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_set_route(NULL, "/x"), MHDCTX_EINVAL);
    ck_assert_str_eq(mhdctx_route(ctx), "/b/{y}");
    ck_assert_str_eq(mhdctx_route(NULL), "");
    tag_and_decode(ctx, "SELECT 1", &p);
    expect_pair(&p, "route", "/b/{y}", 6);
    pairs_free(&p);
    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

START_TEST(test_user_key_selection_and_non_string_values)
{
    mhdctx_context *ctx = new_context();
    const char *keys[] = {"n", "obj", "real", "flag", "nothing", "absent", "s", "arr"};
    set_tag_keys(keys, sizeof keys / sizeof keys[0]);
    ck_assert_int_eq(mhdctx_set_new(ctx, "n", json_integer(-42)), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "real", json_real(2.5)), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "flag", json_true()), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "nothing", json_null()), MHDCTX_OK);
    ck_assert_int_eq(
        mhdctx_set_new(ctx, "obj",
                       json_pack("{s:i, s:[b, n], s:s}", "a", 1, "b", 1, "c", "x'y")),
        MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "arr", json_pack("[s, i]", "*/", 3)), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "s", "plain"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "unselected", "zzz"), MHDCTX_OK);

    char *out = tag(ctx, "SELECT 1");
    /* exact encodings of the compact JSON texts */
    ck_assert_ptr_nonnull(strstr(out, ",n='-42',"));
    ck_assert_ptr_nonnull(strstr(out, ",real='2.5',"));
    ck_assert_ptr_nonnull(strstr(out, "/*arr='%5B%22*%2F%22%2C3%5D',"));
    ck_assert_ptr_nonnull(strstr(out, ",flag='true',"));
    ck_assert_ptr_nonnull(strstr(out, ",nothing='null',"));
    ck_assert_ptr_nonnull(strstr(
        out,
        ",obj='%7B%22a%22%3A1%2C%22b%22%3A%5Btrue%2Cnull%5D%2C%22c%22%3A%22x\\'y%22%7D',"));
    ck_assert_ptr_nonnull(strstr(out, ",s='plain',"));
    ck_assert_ptr_null(strstr(out, "unselected"));
    ck_assert_ptr_null(strstr(out, "absent"));
    struct pairs p;
    check_tagged("SELECT 1", out, &p);
    free(out);
    ck_assert_uint_eq(p.n, 4 + 7);
    expect_builtins(&p, ctx);
    expect_pair(&p, "n", "-42", 3);
    expect_pair(&p, "real", "2.5", 3);
    expect_pair(&p, "flag", "true", 4);
    expect_pair(&p, "nothing", "null", 4);
    const char *obj = "{\"a\":1,\"b\":[true,null],\"c\":\"x'y\"}";
    expect_pair(&p, "obj", obj, strlen(obj));
    expect_pair(&p, "arr", "[\"*/\",3]", 8);
    expect_pair(&p, "s", "plain", 5);
    expect_no_pair(&p, "unselected");
    expect_no_pair(&p, "absent");
    pairs_free(&p);

    /* a removed key leaves the tag */
    ck_assert_int_eq(mhdctx_set_new(ctx, "obj", NULL), MHDCTX_OK);
    tag_and_decode(ctx, "SELECT 1", &p);
    expect_no_pair(&p, "obj");
    ck_assert_uint_eq(p.n, 4 + 6);
    pairs_free(&p);
    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

/* ==== hostile values =================================================================== */

struct bytes {
    const char *s;
    size_t len;
};
#define B(lit)                                                                                 \
    {                                                                                          \
        (lit), sizeof(lit) - 1                                                                 \
    }

static const struct bytes hostile[] = {
    B("*/ DROP TABLE users; --"),
    B("' OR '1'='1"),
    B("\" OR \"1\"=\"1"),
    B("--"),
    B("-- comment\nSELECT 2"),
    B("a\nb\r\nc\td"),
    B(";"),
    B("'; DROP TABLE t; --"),
    B("\\"),
    B("abc\\"),
    B("\\'"),
    B("\\\\'\\'\\"),
    B("%27%2F%2A%00"),
    B("/*/**/*/"),
    B("*"),
    B("**/"),
    B("*\\/"),
    B("', user_id='admin"),
    B("a,b=c,d='e'"),
    B(" leading and trailing "),
    B(""),
    B("\xc3\xa9\xe4\xb8\xad\xe6\x96\x87\xf0\x9f\x98\x80"),
    B("\xe2\x80\xae\xef\xbb\xbf"),
    B("nul\0inside"),
    B("\0"),
    B("*/\0/*"),
    B("\x7f\x01\x1f"),
};
#define N_HOSTILE (sizeof hostile / sizeof hostile[0])

/* Whether @p b, as a C string (up to its first NUL), may be a user id: not empty,
 * valid UTF-8 without control bytes. */
static bool user_id_ok(const struct bytes *b)
{
    size_t len = strlen(b->s);
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)b->s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true; /* the table's non-ASCII strings are valid UTF-8 */
}

START_TEST(test_hostile_values_decode_back)
{
    const char *keys[] = {"payload", "other"};
    set_tag_keys(keys, 2);
    static const char *const statements[] = {"SELECT * FROM t WHERE a = $1", "SELECT 1;  \n"};
    size_t as_user = 0;
    for (size_t i = 0; i < N_HOSTILE; i++) {
        mhdctx_context *ctx = new_context();
        const struct bytes *h = &hostile[i];
        mhdctx_error rc = mhdctx_set_user_id(ctx, h->s);
        if (user_id_ok(h)) {
            ck_assert_msg(rc == MHDCTX_OK, "user id %zu refused", i);
            as_user++;
        } else {
            ck_assert_msg(rc == MHDCTX_EINVAL, "user id %zu: %d", i, rc);
            ck_assert_ptr_null(mhdctx_user_id(ctx));
        }
        ck_assert_int_eq(mhdctx_set_route(ctx, h->len ? h->s : "/"), MHDCTX_OK);
        json_t *v = json_stringn(h->s, h->len);
        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(mhdctx_set_new(ctx, "payload", v), MHDCTX_OK);
        ck_assert_int_eq(mhdctx_set_new(ctx, "other", json_pack("{s:s%}", "k", h->s, h->len)),
                         MHDCTX_OK);
        for (size_t s = 0; s < 2; s++) {
            struct pairs p;
            tag_and_decode(ctx, statements[s], &p);
            expect_pair(&p, "payload", h->s, h->len);
            if (rc == MHDCTX_OK) /* a C string: up to the first NUL */
                expect_pair(&p, "user_id", h->s, strlen(h->s));
            else
                expect_no_pair(&p, "user_id");
            const char *route = h->len ? h->s : "/";
            expect_pair(&p, "route", route, strlen(route));
            /* the object's compact ASCII JSON, as log lines carry it */
            json_t *obj = json_pack("{s:s%}", "k", h->s, h->len);
            char *text = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
            ck_assert_ptr_nonnull(text);
            expect_pair(&p, "other", text, strlen(text));
            free(text);
            json_decref(obj);
            ck_assert_uint_eq(p.n, (rc == MHDCTX_OK ? 5 : 4) + 2);
            pairs_free(&p);
        }
        mhdctx_context_unref(ctx);
    }
    ck_assert_uint_ge(as_user, N_HOSTILE / 2);
    reset_tag_keys();
}
END_TEST

START_TEST(test_long_hostile_values)
{
    const char *keys[] = {"big", "wide"};
    set_tag_keys(keys, 2);
    mhdctx_context *ctx = new_context();

    /* user ids: up to MHDCTX_MAX_USER_ID_LEN bytes */
    char *uid = cycle("*/'\"--;\\ ", MHDCTX_MAX_USER_ID_LEN);
    ck_assert_int_eq(mhdctx_set_user_id(ctx, uid), MHDCTX_OK);
    char *too_long = cycle("*/'\"--;\\ ", MHDCTX_MAX_USER_ID_LEN + 1);
    ck_assert_int_eq(mhdctx_set_user_id(ctx, too_long), MHDCTX_ELIMIT);
    free(too_long);
    char *uid900 = cycle("*/'--;", 900);
    ck_assert_int_eq(mhdctx_set_user_id(ctx, uid900), MHDCTX_ELIMIT);
    ck_assert_str_eq(mhdctx_user_id(ctx), uid);

    /* a 900-byte key value (its JSON text stays under MHDCTX_MAX_VALUE_LEN) */
    char *big = cycle("*/'--;ab", 900);
    ck_assert_int_eq(mhdctx_set_string(ctx, "big", big), MHDCTX_OK);
    /* 900 bytes of 2-byte characters with quotes: JSON \u escapes pass the limit ... */
    char *wide_bad = cycle("\xc3\xa9'", 900);
    ck_assert_int_eq(mhdctx_set_string(ctx, "wide", wide_bad), MHDCTX_ELIMIT);
    free(wide_bad);
    /* ... 300 bytes of them fit */
    char *wide = cycle("\xc3\xa9'*/", 300);
    ck_assert_int_eq(mhdctx_set_string(ctx, "wide", wide), MHDCTX_OK);
    char *route = cycle("/*'\"\n--;", 900);
    ck_assert_int_eq(mhdctx_set_route(ctx, route), MHDCTX_OK);

    struct pairs p;
    tag_and_decode(ctx, "SELECT 1;", &p);
    expect_builtins(&p, ctx);
    expect_pair(&p, "user_id", uid, strlen(uid));
    expect_pair(&p, "big", big, 900);
    expect_pair(&p, "wide", wide, 300);
    expect_pair(&p, "route", route, 900);
    ck_assert_uint_eq(p.n, 7);
    pairs_free(&p);
    free(uid);
    free(uid900);
    free(big);
    free(wide);
    free(route);
    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

START_TEST(test_all_tag_keys_hostile)
{
    /* MHDCTX_SQL_MAX_TAG_KEYS keys, each with a hostile value: 5 + 16 pairs */
    char names[MHDCTX_SQL_MAX_TAG_KEYS][16];
    const char *keys[MHDCTX_SQL_MAX_TAG_KEYS];
    for (size_t i = 0; i < MHDCTX_SQL_MAX_TAG_KEYS; i++) {
        snprintf(names[i], sizeof names[i], "k%02zu", MHDCTX_SQL_MAX_TAG_KEYS - 1 - i);
        keys[i] = names[i];
    }
    set_tag_keys(keys, MHDCTX_SQL_MAX_TAG_KEYS);
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "*/;--'"), MHDCTX_OK);
    for (size_t i = 0; i < MHDCTX_SQL_MAX_TAG_KEYS; i++) {
        const struct bytes *h = &hostile[i % N_HOSTILE];
        ck_assert_int_eq(mhdctx_set_new(ctx, keys[i], json_stringn(h->s, h->len)), MHDCTX_OK);
    }
    struct pairs p;
    tag_and_decode(ctx, "SELECT 1", &p);
    ck_assert_uint_eq(p.n, 5 + MHDCTX_SQL_MAX_TAG_KEYS);
    expect_builtins(&p, ctx);
    expect_pair(&p, "user_id", "*/;--'", 6);
    for (size_t i = 0; i < MHDCTX_SQL_MAX_TAG_KEYS; i++) {
        const struct bytes *h = &hostile[i % N_HOSTILE];
        expect_pair(&p, keys[i], h->s, h->len);
    }
    /* sorted: the k.. keys come first, in order, whatever order they were chosen in */
    ck_assert_str_eq(p.key[0], "framework");
    ck_assert_str_eq(p.key[1], "k00");
    ck_assert_str_eq(p.key[MHDCTX_SQL_MAX_TAG_KEYS], "k15");
    pairs_free(&p);
    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

/* A user key may be named like a pair the tag writes ("route", "framework" and
 * "traceparent" are not among the logger's reserved names). Selected for tags, it must
 * not give a second pair of that name: a comment with route twice is ambiguous to every
 * sqlcommenter parser and lets whoever sets user keys forge the route. Whether the fix
 * refuses the key (mhdctx_set_string or mhdctx_sql_tag_keys) or leaves it out of the
 * tag, the output must carry each built-in pair once, with the library's value. */
START_TEST(test_user_key_cannot_shadow_builtin_pair)
{
    const char *keys[] = {"route", "framework", "traceparent"};
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_route(ctx, "/real"), MHDCTX_OK);
    (void)mhdctx_set_string(ctx, "route", "/forged");
    (void)mhdctx_set_string(ctx, "framework", "evil/9");
    (void)mhdctx_set_string(ctx, "traceparent", "00-x");
    (void)mhdctx_sql_tag_keys(keys, 3);
    char *out = tag(ctx, "SELECT 1");
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", out);
    size_t routes = count_substr(out, "route=");
    size_t fws = count_substr(out, "framework=");
    size_t tps = count_substr(out, "traceparent=");
    bool forged = strstr(out, "forged") || strstr(out, "evil") || strstr(out, "00-x'");
    free(out);
    mhdctx_context_unref(ctx);
    reset_tag_keys();
    ck_assert_msg(routes == 1 && fws == 1 && tps == 1 && !forged,
                  "a user key shadows a built-in pair: %s", copy);
}
END_TEST

/* A key listed twice in mhdctx_sql_tag_keys() (refused or kept once) gives one pair. */
START_TEST(test_repeated_tag_key_gives_one_pair)
{
    const char *keys[] = {"tenant", "tenant"};
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant", "acme"), MHDCTX_OK);
    mhdctx_error rc = mhdctx_sql_tag_keys(keys, 2);
    char *out = tag(ctx, "SELECT 1");
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", out);
    size_t tenants = count_substr(out, "tenant=");
    free(out);
    mhdctx_context_unref(ctx);
    reset_tag_keys();
    ck_assert_msg(rc == MHDCTX_OK ? tenants == 1 : tenants == 0, "rc %d, tenant pairs %zu: %s",
                  rc, tenants, copy);
}
END_TEST

START_TEST(test_invalid_utf8_user_id_refused)
{
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "ok"), MHDCTX_OK);
    static const char *const bad[] = {
        "\xff",         "\xc3",         "a\xc3(",           "\xc0\xaf",
        "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",
        "abc\x80",      "\xe2\x82",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(mhdctx_set_user_id(ctx, bad[i]) == MHDCTX_EINVAL, "case %zu", i);
        ck_assert_msg(mhdctx_set_string(ctx, "tenant", bad[i]) == MHDCTX_EINVAL, "case %zu", i);
    }
    ck_assert_str_eq(mhdctx_user_id(ctx), "ok");
    ck_assert_int_eq(mhdctx_set_user_id(ctx, ""), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "a\nb"), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "\xf0\x9f\x98\x80"), MHDCTX_OK);
    struct pairs p;
    tag_and_decode(ctx, "SELECT 1", &p);
    expect_pair(&p, "user_id", "\xf0\x9f\x98\x80", 4);
    pairs_free(&p);
    char *out = tag(ctx, "SELECT 1");
    ck_assert_ptr_nonnull(strstr(out, "user_id='%F0%9F%98%80'"));
    free(out);
    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

/* ==== the allocation-free variant ====================================================== */

START_TEST(test_tag_into_sizes)
{
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "42"), MHDCTX_OK);
    const char *sql = "SELECT * FROM t;";
    char *full = tag(ctx, sql);
    size_t full_len = strlen(full);

    size_t needed = 0;
    ck_assert_int_eq(mhdctx_sql_tag_into(ctx, sql, NULL, 0, &needed), MHDCTX_ELIMIT);
    ck_assert_uint_eq(needed, full_len + 1);
    ck_assert_int_eq(mhdctx_sql_tag_into(ctx, sql, NULL, 0, NULL), MHDCTX_ELIMIT);

    /* exact size */
    char *buf = malloc(full_len + 1);
    ck_assert_ptr_nonnull(buf);
    needed = 0;
    ck_assert_int_eq(mhdctx_sql_tag_into(ctx, sql, buf, full_len + 1, &needed), MHDCTX_OK);
    ck_assert_uint_eq(needed, full_len + 1);
    ck_assert_str_eq(buf, full);

    /* one byte short: a NUL-terminated prefix */
    memset(buf, 'X', full_len + 1);
    needed = 0;
    ck_assert_int_eq(mhdctx_sql_tag_into(ctx, sql, buf, full_len, &needed), MHDCTX_ELIMIT);
    ck_assert_uint_eq(needed, full_len + 1);
    ck_assert_uint_eq(strlen(buf), full_len - 1);
    ck_assert_int_eq(memcmp(buf, full, full_len - 1), 0);
    ck_assert_int_eq(buf[full_len], 'X'); /* nothing written past size */

    /* every shorter size: prefix, never past the end */
    for (size_t size = 1; size < full_len; size++) {
        memset(buf, 'X', full_len + 1);
        needed = 0;
        ck_assert_int_eq(mhdctx_sql_tag_into(ctx, sql, buf, size, &needed), MHDCTX_ELIMIT);
        ck_assert_uint_eq(needed, full_len + 1);
        ck_assert_uint_eq(strlen(buf), size - 1);
        ck_assert_int_eq(memcmp(buf, full, size - 1), 0);
        ck_assert_int_eq(buf[size], 'X');
    }
    /* larger than needed */
    char big[2048];
    ck_assert_int_eq(mhdctx_sql_tag_into(ctx, sql, big, sizeof big, NULL), MHDCTX_OK);
    ck_assert_str_eq(big, full);

    /* invalid arguments */
    ck_assert_int_eq(mhdctx_sql_tag_into(ctx, NULL, big, sizeof big, &needed), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_sql_tag_into(ctx, sql, NULL, 10, &needed), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_sql_tag_into(NULL, NULL, NULL, 0, NULL), MHDCTX_EINVAL);

    /* without a context: an unchanged copy, with the same size rules */
    char small[4];
    needed = 0;
    ck_assert_int_eq(mhdctx_sql_tag_into(NULL, "SELECT", small, sizeof small, &needed),
                     MHDCTX_ELIMIT);
    ck_assert_uint_eq(needed, 7);
    ck_assert_str_eq(small, "SEL");
    char seven[7];
    ck_assert_int_eq(mhdctx_sql_tag_into(NULL, "SELECT", seven, sizeof seven, &needed),
                     MHDCTX_OK);
    ck_assert_str_eq(seven, "SELECT");
    free(buf);
    free(full);
    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

/* ==== the tag keys ===================================================================== */

START_TEST(test_tag_keys_limits)
{
    char names[MHDCTX_SQL_MAX_TAG_KEYS + 1][16];
    const char *keys[MHDCTX_SQL_MAX_TAG_KEYS + 1];
    for (size_t i = 0; i <= MHDCTX_SQL_MAX_TAG_KEYS; i++) {
        snprintf(names[i], sizeof names[i], "key%zu", i);
        keys[i] = names[i];
    }
    ck_assert_int_eq(mhdctx_sql_tag_keys(keys, MHDCTX_SQL_MAX_TAG_KEYS), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_sql_tag_keys(keys, MHDCTX_SQL_MAX_TAG_KEYS + 1), MHDCTX_ELIMIT);
    ck_assert_int_eq(mhdctx_sql_tag_keys(keys, SIZE_MAX), MHDCTX_ELIMIT);
    ck_assert_int_eq(mhdctx_sql_tag_keys(NULL, 1), MHDCTX_EINVAL);
    const char *with_null[] = {"a", NULL};
    ck_assert_int_eq(mhdctx_sql_tag_keys(with_null, 2), MHDCTX_EINVAL);
    const char *with_empty[] = {"a", "", "b"};
    ck_assert_int_eq(mhdctx_sql_tag_keys(with_empty, 3), MHDCTX_EINVAL);
    const char *first_null[] = {NULL};
    ck_assert_int_eq(mhdctx_sql_tag_keys(first_null, 1), MHDCTX_EINVAL);

    /* a refused list leaves the previous one in force */
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_string(ctx, "key3", "three"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "a", "A"), MHDCTX_OK);
    struct pairs p;
    tag_and_decode(ctx, "SELECT 1", &p);
    expect_pair(&p, "key3", "three", 5);
    expect_no_pair(&p, "a");
    pairs_free(&p);

    /* the list is copied */
    char mutable_key[] = "a";
    const char *one[] = {mutable_key};
    ck_assert_int_eq(mhdctx_sql_tag_keys(one, 1), MHDCTX_OK);
    mutable_key[0] = 'z';
    tag_and_decode(ctx, "SELECT 1", &p);
    expect_pair(&p, "a", "A", 1);
    expect_no_pair(&p, "key3");
    pairs_free(&p);

    /* (NULL, 0) and (keys, 0) both select nothing */
    ck_assert_int_eq(mhdctx_sql_tag_keys(keys, 0), MHDCTX_OK);
    tag_and_decode(ctx, "SELECT 1", &p);
    ck_assert_uint_eq(p.n, 4);
    pairs_free(&p);
    ck_assert_int_eq(mhdctx_sql_tag_keys(one, 1), MHDCTX_OK);
    reset_tag_keys();
    tag_and_decode(ctx, "SELECT 1", &p);
    ck_assert_uint_eq(p.n, 4);
    pairs_free(&p);
    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

/* ==== fuzz ============================================================================= */

/* splitmix64: a fixed seed gives the same run everywhere. */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static unsigned rng_below(unsigned n)
{
    return (unsigned)(rng_next() % n);
}

/* Appends the UTF-8 encoding of @p cp (not a surrogate) to @p out; returns its length. */
static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Random valid UTF-8 of at most @p max bytes, heavy in SQL and comment syntax; NULs and
 * control bytes only when @p controls. Returns the length. */
static size_t random_utf8(char *out, size_t max, bool controls)
{
    static const char *const tokens[] = {"*/", "/*",  "--", "'", "\"", ";", "\\", "\\'",
                                         "%",  "%2F", ",",  "=", "*",  "/", " ",  "''"};
    size_t len = 0, target = rng_below((unsigned)max + 1);
    while (len < target) {
        char tmp[8];
        size_t n;
        unsigned kind = rng_below(10);
        if (kind < 3) {
            const char *t = tokens[rng_below(sizeof tokens / sizeof tokens[0])];
            n = strlen(t);
            memcpy(tmp, t, n);
        } else if (kind < 7) {
            unsigned c = rng_below(128);
            if (!controls && (c < 0x20 || c == 0x7f))
                c = 'a' + c % 26;
            tmp[0] = (char)c;
            n = 1;
        } else {
            unsigned cp;
            do
                cp = 0x80 + rng_below(0x110000 - 0x80);
            while (cp >= 0xd800 && cp <= 0xdfff);
            n = put_utf8(tmp, cp);
        }
        if (len + n > max)
            break;
        memcpy(out + len, tmp, n);
        len += n;
    }
    out[len] = '\0';
    return len;
}

START_TEST(test_fuzz_random_values)
{
    static const char *const statements[] = {
        "SELECT * FROM t WHERE a = $1",      "SELECT 1;",
        "UPDATE t SET x = ? WHERE y = ?;\n", "SELECT a / b * c",
        "INSERT INTO t VALUES (';')  ",
    };
    const char *keys[] = {"fuzz", "extra"};
    set_tag_keys(keys, 2);
    rng_state = 0x5eed5eed12345678u;
    mhdctx_context *ctx = new_context();
    char value[200], uid[MHDCTX_MAX_USER_ID_LEN + 1], route[300];
    size_t accepted = 0, raw_valid = 0, route_len = 0;
    bool has_uid = false;
    ck_assert_int_eq(mhdctx_set_route(ctx, "/"), MHDCTX_OK);
    route[0] = '/';
    route[1] = '\0';
    route_len = 1;
    for (unsigned iter = 0; iter < 5000; iter++) {
        size_t len;
        json_t *v;
        if (iter % 2 == 0) {
            /* raw random bytes: only valid UTF-8 makes a JSON string */
            len = rng_below(24);
            for (size_t i = 0; i < len; i++)
                value[i] = (char)rng_below(256);
            value[len] = '\0';
            v = json_stringn(value, len);
            if (v == NULL) { /* invalid UTF-8: refused, then a valid value instead */
                if (len > 0 && memchr(value, '\0', len) == NULL)
                    ck_assert_int_eq(mhdctx_set_string(ctx, "probe", value), MHDCTX_EINVAL);
                len = random_utf8(value, 150, true);
                v = json_stringn(value, len);
            } else {
                raw_valid++;
            }
        } else {
            len = random_utf8(value, 150, true);
            v = json_stringn(value, len);
        }
        ck_assert_ptr_nonnull(v);
        mhdctx_error rc = mhdctx_set_new(ctx, "fuzz", v);
        ck_assert_msg(rc == MHDCTX_OK || rc == MHDCTX_ELIMIT, "iteration %u: %d", iter, rc);
        if (rc != MHDCTX_OK)
            continue;
        accepted++;
        if (iter % 3 == 0) {
            char fresh[MHDCTX_MAX_USER_ID_LEN + 1];
            size_t n = random_utf8(fresh, MHDCTX_MAX_USER_ID_LEN, false);
            if (n > 0) {
                ck_assert_int_eq(mhdctx_set_user_id(ctx, fresh), MHDCTX_OK);
                memcpy(uid, fresh, n + 1);
                has_uid = true;
            } else {
                ck_assert_int_eq(mhdctx_set_user_id(ctx, fresh), MHDCTX_EINVAL);
            }
        }
        if (iter % 5 == 0) { /* routes are not validated: any non-NUL bytes */
            route_len = 1 + rng_below(sizeof route - 2);
            for (size_t i = 0; i < route_len; i++)
                route[i] = (char)(1 + rng_below(255));
            route[route_len] = '\0';
            ck_assert_int_eq(mhdctx_set_route(ctx, route), MHDCTX_OK);
        }
        if (iter % 7 == 0)
            ck_assert_int_eq(mhdctx_set_new(ctx, "extra", json_integer((json_int_t)iter)),
                             MHDCTX_OK);
        struct pairs p;
        const char *sql = statements[iter % (sizeof statements / sizeof statements[0])];
        char *out = tag(ctx, sql);
        check_tagged(sql, out, &p);
        expect_builtins(&p, ctx);
        expect_pair(&p, "fuzz", value, len);
        expect_pair(&p, "route", route, route_len);
        if (has_uid)
            expect_pair(&p, "user_id", uid, strlen(uid));
        pairs_free(&p);
        free(out);
    }
    ck_assert_uint_ge(accepted, 4000);
    ck_assert_uint_ge(raw_valid, 50);
    mhdctx_context_unref(ctx);
    reset_tag_keys();
}
END_TEST

/* ==== suite ============================================================================ */

static Suite *sql_tag_suite(void)
{
    Suite *suite = suite_create("sql_tag");
    TCase *tc = support_tcase(suite, "format", TEST_TIMEOUT_S, NULL, teardown);
    tcase_add_test(tc, test_exact_simple_statement);
    tcase_add_test(tc, test_traceparent_sends_only_the_defined_flags);
    tcase_add_test(tc, test_each_byte_encoded_as_encode_uri_component);
    tcase_add_test(tc, test_shared_string_value_tagged_as_set);
    tcase_add_test(tc, test_current_context_used);
    tcase_add_test(tc, test_tagged_text_leaves_the_librarys_block_count);
    tcase_add_test(tc, test_final_semicolon_and_blanks);
    tcase_add_test(tc, test_existing_comment_unchanged);
    tcase_add_test(tc, test_outside_request_unchanged_copy);
    tcase_add_test(tc, test_anonymous_and_route_default);
    tcase_add_test(tc, test_user_key_selection_and_non_string_values);

    tc = support_tcase(suite, "hostile", TEST_TIMEOUT_S, NULL, teardown);
    tcase_add_test(tc, test_hostile_values_decode_back);
    tcase_add_test(tc, test_long_hostile_values);
    tcase_add_test(tc, test_all_tag_keys_hostile);
    tcase_add_test(tc, test_user_key_cannot_shadow_builtin_pair);
    tcase_add_test(tc, test_repeated_tag_key_gives_one_pair);
    tcase_add_test(tc, test_invalid_utf8_user_id_refused);

    tc = support_tcase(suite, "api", TEST_TIMEOUT_S, NULL, teardown);
    tcase_add_test(tc, test_tag_into_sizes);
    tcase_add_test(tc, test_tag_keys_limits);

    tc = support_tcase(suite, "fuzz", TEST_TIMEOUT_S, NULL, teardown);
    tcase_add_test(tc, test_fuzz_random_values);
    return suite;
}

int main(void)
{
    SRunner *sr = srunner_create(sql_tag_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failures = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failures ? 1 : 0;
}
