/*
 * check_outgoing.c - outgoing HTTP calls: the client span and headers built by
 * mhdctx_outgoing_start() inside a context, from the current context and without any,
 * and the one line mhdctx_outgoing_finish() logs (fields, stripped URL, levels, the
 * client span as span_id, the server span as parent_span_id, balanced references).
 */
#include "internal.h"
#include "support.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TRACE_ID    "4bf92f3577b34da6a3ce929d0e0e4736"
#define SERVER_SPAN "00f067aa0ba902b7"
#define CALLER_SPAN "b7ad6b7169203331"

/* ---- helpers ----------------------------------------------------------------------------- */

/* A context with a known trace, built the way a worker process gets one: by import. */
static mhdctx_context *imported_context_with_id(const char *id, const char *flags,
                                                const char *tracestate)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"v\":1,\"request_id\":\"%s\",\"user_id\":\"u7\",\"roles\":[],"
             "\"keys\":{\"tenant_id\":\"acme\"},\"trace_id\":\"" TRACE_ID "\","
             "\"span_id\":\"" SERVER_SPAN "\",\"parent_span_id\":\"" CALLER_SPAN "\","
             "\"trace_flags\":\"%s\",\"tracestate\":\"%s\"}",
             id, flags, tracestate);
    mhdctx_error err;
    mhdctx_context *ctx = mhdctx_context_import(text, strlen(text), &err);
    ck_assert_msg(ctx != NULL, "import failed: %s", mhdctx_error_name(err));
    return ctx;
}

static mhdctx_context *imported_context(const char *flags, const char *tracestate)
{
    return imported_context_with_id("req-out-1", flags, tracestate);
}

/* The traceparent of @call, parsed (must be valid version 00). */
static mhdctx_trace_parent parse_call(const mhdctx_outgoing *call)
{
    ck_assert_uint_eq(strlen(call->traceparent), MHDCTX_TRACEPARENT_LEN);
    ck_assert_msg(strncmp(call->traceparent, "00-", 3) == 0, "%s", call->traceparent);
    mhdctx_trace_parent tp;
    ck_assert_int_eq(
        mhdctx_traceparent_parse(call->traceparent, strlen(call->traceparent), &tp), MHDCTX_OK);
    return tp;
}

/* ---- start: inside a context ---------------------------------------------------------- */

START_TEST(start_continues_the_context_trace)
{
    mhdctx_context *ctx = imported_context("01", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    mhdctx_outgoing call;
    ck_assert_int_eq(mhdctx_outgoing_start(&call, ctx), MHDCTX_OK);
    char expect_prefix[64];
    snprintf(expect_prefix, sizeof expect_prefix, "00-%s-", TRACE_ID);
    ck_assert(strncmp(call.traceparent, expect_prefix, strlen(expect_prefix)) == 0);
    mhdctx_trace_parent tp = parse_call(&call);
    ck_assert_str_eq(tp.trace_id, TRACE_ID);
    ck_assert_str_eq(tp.parent_id, call.span_id);
    ck_assert_uint_eq(tp.flags, 0x01);
    ck_assert(is_hex_id(call.span_id, MHDCTX_SPAN_ID_LEN));
    ck_assert_str_ne(call.span_id, SERVER_SPAN);
    ck_assert_str_ne(call.span_id, CALLER_SPAN);
    ck_assert_str_eq(call.parent_span_id, SERVER_SPAN);
    ck_assert_str_eq(call.request_id, "req-out-1");
    ck_assert_str_eq(call.tracestate, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    ck_assert_ptr_eq(call.ctx, ctx);
    ck_assert_uint_eq(refs_of(ctx), 2);
    mhdctx_outgoing_finish(&call, "GET", "http://svc/a", 200, NULL);
    ck_assert_ptr_null(call.ctx);
    ck_assert_uint_eq(refs_of(ctx), 1);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(start_in_a_new_context_uses_its_ids)
{
    mhdctx_context *ctx = new_context();
    mhdctx_outgoing call;
    ck_assert_int_eq(mhdctx_outgoing_start(&call, ctx), MHDCTX_OK);
    char expect[MHDCTX_TRACEPARENT_LEN + 1];
    mhdctx_traceparent_format(expect, mhdctx_trace_id(ctx), call.span_id,
                              mhdctx_trace_flags(ctx));
    ck_assert_str_eq(call.traceparent, expect);
    ck_assert_str_ne(call.span_id, mhdctx_span_id(ctx));
    ck_assert_str_eq(call.parent_span_id, mhdctx_span_id(ctx));
    ck_assert_str_eq(call.request_id, mhdctx_request_id(ctx));
    ck_assert_str_eq(call.tracestate, "");
    mhdctx_outgoing_finish(&call, "GET", "http://svc/", 204, NULL);
    ck_assert_uint_eq(refs_of(ctx), 1);
    mhdctx_context_unref(ctx);
}
END_TEST

/* The call's request id ends at its NUL, zeros after it: the bytes past a context's id
 * (whose block may have held an earlier request's longer id) never reach the caller. */
START_TEST(start_copies_the_request_id_and_nothing_past_it)
{
    char long_id[201];
    memset(long_id, 'S', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    mhdctx_context *earlier = imported_context_with_id(long_id, "01", "");
    mhdctx_context_unref(earlier); /* its block goes back to this thread's cache */
    mhdctx_context *ctx = new_context();
    mhdctx_outgoing call;
    ck_assert_int_eq(mhdctx_outgoing_start(&call, ctx), MHDCTX_OK);
    ck_assert_str_eq(call.request_id, mhdctx_request_id(ctx));
    for (size_t i = strlen(call.request_id); i < sizeof call.request_id; i++)
        ck_assert_msg(call.request_id[i] == '\0', "byte %zu past the id: 0x%02x", i,
                      (unsigned char)call.request_id[i]);
    mhdctx_outgoing_finish(&call, "GET", "http://svc/", 204, NULL);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(start_passes_the_unsampled_flag)
{
    mhdctx_context *ctx = imported_context("00", "");
    mhdctx_outgoing call;
    ck_assert_int_eq(mhdctx_outgoing_start(&call, ctx), MHDCTX_OK);
    ck_assert_uint_eq(parse_call(&call).flags, 0x00);
    ck_assert(strcmp(call.traceparent + 52, "-00") == 0);
    ck_assert_str_eq(call.tracestate, "");
    mhdctx_outgoing_finish(&call, "GET", "http://svc/", 200, NULL);
    mhdctx_context_unref(ctx);
}
END_TEST

/* An imported context keeps every flag bit it was given, but a traceparent sent on
 * carries only the bits Trace Context defines (sampled, random): the others must be 0. */
START_TEST(start_sends_only_the_defined_flags)
{
    static const struct {
        const char *imported;
        unsigned char sent;
    } cases[] = {{"ff", 0x03}, {"fe", 0x02}, {"fd", 0x01}, {"fc", 0x00}, {"02", 0x02}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mhdctx_context *ctx = imported_context(cases[i].imported, "");
        ck_assert_uint_eq(mhdctx_trace_flags(ctx), strtoul(cases[i].imported, NULL, 16));
        mhdctx_outgoing call;
        ck_assert_int_eq(mhdctx_outgoing_start(&call, ctx), MHDCTX_OK);
        ck_assert_uint_eq(parse_call(&call).flags, cases[i].sent);
        mhdctx_outgoing_finish(&call, "GET", "http://svc/", 200, NULL);
        mhdctx_context_unref(ctx);
    }
}
END_TEST

START_TEST(two_calls_never_share_a_span)
{
    mhdctx_context *ctx = imported_context("01", "");
    mhdctx_outgoing a, b;
    ck_assert_int_eq(mhdctx_outgoing_start(&a, ctx), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_outgoing_start(&b, ctx), MHDCTX_OK);
    ck_assert_str_ne(a.span_id, b.span_id);
    ck_assert_str_ne(a.traceparent, b.traceparent);
    ck_assert_str_eq(a.parent_span_id, b.parent_span_id);
    ck_assert_str_eq(parse_call(&a).trace_id, parse_call(&b).trace_id);
    ck_assert_uint_eq(refs_of(ctx), 3);
    mhdctx_outgoing_finish(&b, "GET", "http://b/", 200, NULL);
    mhdctx_outgoing_finish(&a, "GET", "http://a/", 200, NULL);
    ck_assert_uint_eq(refs_of(ctx), 1);
    /* many calls: all spans distinct */
    enum { N = 64 };
    char spans[N][MHDCTX_SPAN_ID_LEN + 1];
    for (int i = 0; i < N; i++) {
        mhdctx_outgoing c;
        ck_assert_int_eq(mhdctx_outgoing_start(&c, ctx), MHDCTX_OK);
        memcpy(spans[i], c.span_id, sizeof spans[i]);
        ck_assert(is_hex_id(c.span_id, MHDCTX_SPAN_ID_LEN));
        for (int j = 0; j < i; j++)
            ck_assert_str_ne(spans[i], spans[j]);
        mhdctx_outgoing_finish(&c, "GET", "http://c/", 200, NULL);
    }
    ck_assert_uint_eq(support_capture_n(), 2 + N);
    ck_assert_uint_eq(refs_of(ctx), 1);
    mhdctx_context_unref(ctx);
}
END_TEST

struct start_here {
    mhdctx_outgoing *call;
    mhdctx_error rc;
};

static void start_with_current(void *arg)
{
    struct start_here *s = arg;
    s->rc = mhdctx_outgoing_start(s->call, NULL);
}

START_TEST(start_with_null_uses_the_current_context)
{
    mhdctx_context *ctx = imported_context("01", "rojo=1");
    mhdctx_outgoing call;
    struct start_here s = {&call, MHDCTX_EIO};
    mhdctx_run(ctx, start_with_current, &s);
    ck_assert_int_eq(s.rc, MHDCTX_OK);
    ck_assert_ptr_eq(call.ctx, ctx);
    ck_assert_str_eq(parse_call(&call).trace_id, TRACE_ID);
    ck_assert_str_eq(call.parent_span_id, SERVER_SPAN);
    ck_assert_str_eq(call.request_id, "req-out-1");
    ck_assert_str_eq(call.tracestate, "rojo=1");
    ck_assert_uint_eq(refs_of(ctx), 2);
    /* finished on another "thread" with no current context: the line still carries the
     * request's fields, because the call holds the context */
    mhdctx_outgoing_finish(&call, "GET", "http://svc/x", 200, NULL);
    json_t *line = support_capture_only(JSON_REJECT_DUPLICATES);
    ck_assert_str_eq(str_field(line, "request_id"), "req-out-1");
    ck_assert_str_eq(str_field(line, "trace_id"), TRACE_ID);
    json_decref(line);
    ck_assert_uint_eq(refs_of(ctx), 1);
    mhdctx_context_unref(ctx);
}
END_TEST

/* ---- start: without any context ------------------------------------------------------- */

START_TEST(start_without_context_starts_a_new_trace)
{
    ck_assert_ptr_null(mhdctx_current());
    mhdctx_outgoing a, b;
    ck_assert_int_eq(mhdctx_outgoing_start(&a, NULL), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_outgoing_start(&b, NULL), MHDCTX_OK);
    mhdctx_trace_parent ta = parse_call(&a), tb = parse_call(&b);
    ck_assert(is_hex_id(ta.trace_id, MHDCTX_TRACE_ID_LEN));
    ck_assert_str_ne(ta.trace_id, tb.trace_id); /* each call is its own trace */
    ck_assert_str_eq(ta.parent_id, a.span_id);
    /* recorded, and random (Trace Context Level 2): the ids come from the CSPRNG */
    ck_assert_uint_eq(ta.flags, MHDCTX_TRACE_FLAG_SAMPLED | MHDCTX_TRACE_FLAG_RANDOM);
    ck_assert_str_eq(a.parent_span_id, "");
    ck_assert_str_eq(a.tracestate, "");
    ck_assert_ptr_null(a.ctx);
    /* a fresh UUID v4 as the request id */
    ck_assert_uint_eq(strlen(a.request_id), MHDCTX_UUID_LEN);
    ck_assert_int_eq(a.request_id[8], '-');
    ck_assert_int_eq(a.request_id[13], '-');
    ck_assert_int_eq(a.request_id[14], '4');
    ck_assert_int_eq(a.request_id[18], '-');
    ck_assert_int_eq(a.request_id[23], '-');
    ck_assert(strchr("89ab", a.request_id[19]) != NULL);
    ck_assert_int_eq(mhdctx_request_id_check(a.request_id, strlen(a.request_id), 128),
                     MHDCTX_ID_VALID);
    ck_assert_str_ne(a.request_id, b.request_id);
    mhdctx_outgoing_finish(&a, "GET", "http://svc/", 200, NULL);
    mhdctx_outgoing_finish(&b, "GET", "http://svc/", 200, NULL);
}
END_TEST

START_TEST(finish_without_context_logs_the_client_span)
{
    mhdctx_outgoing call;
    ck_assert_int_eq(mhdctx_outgoing_start(&call, NULL), MHDCTX_OK);
    mhdctx_outgoing_finish(&call, "POST", "https://svc/p?q=1", 201, NULL);
    json_t *line = support_capture_only(JSON_REJECT_DUPLICATES);
    ck_assert_str_eq(str_field(line, "message"), "outgoing request completed");
    ck_assert_str_eq(str_field(line, "url"), "https://svc/p");
    ck_assert_int_eq(json_integer_value(json_object_get(line, "status")), 201);
    /* documented: span_id is the client span */
    json_t *span = json_object_get(line, "span_id");
    bool same = json_is_string(span) && strcmp(json_string_value(span), call.span_id) == 0;
    json_decref(line);
    ck_assert_msg(same, "span_id is not the client span %s without a context: %s", call.span_id,
                  support_capture_line(0)->text);
}
END_TEST

START_TEST(start_refuses_a_null_call)
{
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_outgoing_start(NULL, ctx), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_outgoing_start(NULL, NULL), MHDCTX_EINVAL);
    ck_assert_uint_eq(refs_of(ctx), 1);
    mhdctx_outgoing_finish(NULL, "GET", "http://x/", 200, NULL);
    ck_assert_uint_eq(support_capture_n(), 0);
    mhdctx_context_unref(ctx);
}
END_TEST

/* ---- finish: the line ----------------------------------------------------------------- */

START_TEST(finish_logs_one_line_with_the_client_span)
{
    mhdctx_context *ctx = imported_context("01", "rojo=1");
    mhdctx_outgoing call;
    ck_assert_int_eq(mhdctx_outgoing_start(&call, ctx), MHDCTX_OK);
    ck_assert_uint_eq(support_capture_n(), 0); /* start logs nothing */
    mhdctx_outgoing_finish(&call, "PUT", "http://user:pw@h:8080/p/q?secret=1#frag", 200, NULL);
    json_t *line = support_capture_only(JSON_REJECT_DUPLICATES);
    ck_assert_int_eq(support_capture_line(0)->level, MHDCTX_LOG_INFO);
    ck_assert_str_eq(str_field(line, "level"), "info");
    ck_assert_str_eq(str_field(line, "message"), "outgoing request completed");
    ck_assert_str_eq(str_field(line, "method"), "PUT");
    ck_assert_str_eq(str_field(line, "url"), "http://h:8080/p/q");
    ck_assert(json_is_integer(json_object_get(line, "status")));
    ck_assert_int_eq(json_integer_value(json_object_get(line, "status")), 200);
    json_t *duration = json_object_get(line, "duration_ms");
    ck_assert(json_is_number(duration));
    ck_assert(json_number_value(duration) >= 0.0);
    ck_assert_str_eq(str_field(line, "span_id"), call.span_id);
    ck_assert_str_ne(str_field(line, "span_id"), SERVER_SPAN);
    ck_assert_str_eq(str_field(line, "parent_span_id"), SERVER_SPAN);
    ck_assert_str_eq(str_field(line, "trace_id"), TRACE_ID);
    ck_assert_str_eq(str_field(line, "request_id"), "req-out-1");
    ck_assert_str_eq(str_field(line, "user_id"), "u7");
    ck_assert_str_eq(str_field(line, "tenant_id"), "acme");
    ck_assert_ptr_null(json_object_get(line, "error"));
    /* nothing secret leaks anywhere in the line */
    ck_assert_ptr_null(strstr(support_capture_line(0)->text, "secret"));
    ck_assert_ptr_null(strstr(support_capture_line(0)->text, "pw"));
    ck_assert_ptr_null(strstr(support_capture_line(0)->text, "frag"));
    json_decref(line);
    ck_assert_uint_eq(refs_of(ctx), 1);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(finish_measures_the_duration)
{
    mhdctx_context *ctx = new_context();
    mhdctx_outgoing call;
    ck_assert_int_eq(mhdctx_outgoing_start(&call, ctx), MHDCTX_OK);
    struct timespec pause = {0, 30 * 1000000L};
    nanosleep(&pause, NULL);
    mhdctx_outgoing_finish(&call, "GET", "http://h/", 200, NULL);
    json_t *line = support_capture_only(JSON_REJECT_DUPLICATES);
    double ms = json_number_value(json_object_get(line, "duration_ms"));
    ck_assert_msg(ms >= 29.0 && ms < 10000.0, "duration_ms %f", ms);
    json_decref(line);
    mhdctx_context_unref(ctx);
}
END_TEST

struct level_case {
    unsigned status;
    const char *error;
    mhdctx_log_level level;
    const char *name;
};

static const struct level_case level_cases[] = {
    {200, NULL, MHDCTX_LOG_INFO, "info"},
    {204, NULL, MHDCTX_LOG_INFO, "info"},
    {302, NULL, MHDCTX_LOG_INFO, "info"},
    {404, NULL, MHDCTX_LOG_INFO, "info"},
    {499, NULL, MHDCTX_LOG_INFO, "info"},
    {500, NULL, MHDCTX_LOG_WARN, "warn"},
    {503, NULL, MHDCTX_LOG_WARN, "warn"},
    {599, NULL, MHDCTX_LOG_WARN, "warn"},
    {0, NULL, MHDCTX_LOG_WARN, "warn"},
    {0, "connection refused", MHDCTX_LOG_ERROR, "error"},
    {0, "Timeout was reached", MHDCTX_LOG_ERROR, "error"},
    {200, "body truncated", MHDCTX_LOG_ERROR, "error"},
    {503, "upstream \"quoted\"\n", MHDCTX_LOG_ERROR, "error"},
};

START_TEST(finish_level_follows_status_and_error)
{
    const struct level_case *c = &level_cases[_i];
    mhdctx_context *ctx = imported_context("01", "");
    mhdctx_outgoing call;
    ck_assert_int_eq(mhdctx_outgoing_start(&call, ctx), MHDCTX_OK);
    mhdctx_outgoing_finish(&call, "GET", "http://h/x", c->status, c->error);
    json_t *line = support_capture_only(JSON_REJECT_DUPLICATES);
    const support_line *raw = support_capture_line(0);
    ck_assert_msg(raw->level == c->level, "status %u error %s: level %d", c->status,
                  c->error ? c->error : "(none)", (int)raw->level);
    ck_assert_str_eq(str_field(line, "level"), c->name);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "status")), c->status);
    if (c->error)
        ck_assert_str_eq(str_field(line, "error"), c->error);
    else
        ck_assert_ptr_null(json_object_get(line, "error"));
    ck_assert_str_eq(str_field(line, "span_id"), call.span_id);
    ck_assert_str_eq(str_field(line, "parent_span_id"), SERVER_SPAN);
    json_decref(line);
    ck_assert_uint_eq(refs_of(ctx), 1);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(finish_respects_the_threshold)
{
    mhdctx_context *ctx = new_context();
    mhdctx_log_set_level(MHDCTX_LOG_ERROR);
    mhdctx_outgoing call;
    ck_assert_int_eq(mhdctx_outgoing_start(&call, ctx), MHDCTX_OK);
    mhdctx_outgoing_finish(&call, "GET", "http://h/", 503, NULL); /* warn: filtered */
    ck_assert_uint_eq(support_capture_n(), 0);
    ck_assert_uint_eq(refs_of(ctx), 1); /* the reference goes even without a line */
    ck_assert_int_eq(mhdctx_outgoing_start(&call, ctx), MHDCTX_OK);
    mhdctx_outgoing_finish(&call, "GET", "http://h/", 0, "refused");
    ck_assert_uint_eq(support_capture_n(), 1);
    ck_assert_uint_eq(refs_of(ctx), 1);
    mhdctx_log_set_level(MHDCTX_LOG_INFO);
    mhdctx_context_unref(ctx);
}
END_TEST

struct url_case {
    const char *url;
    const char *logged;
};

static const struct url_case url_cases[] = {
    {"http://user:pw@h:8080/p/q?secret=1#frag", "http://h:8080/p/q"},
    {"https://h/p", "https://h/p"},
    {"https://h", "https://h"},
    {"https://h/", "https://h/"},
    {"https://h?token=1", "https://h"},
    {"https://h#frag", "https://h"},
    {"https://h/p?", "https://h/p"},
    {"http://u@h/p", "http://h/p"},
    {"http://user:p%40ss@h/p", "http://h/p"},
    {"http://u:p@ss@h/p", "http://h/p"},
    {"//user:pw@h/p?x=1", "//h/p"},
    {"//h/p", "//h/p"},
    {"http://h/p@q?x=1", "http://h/p@q"},
    {"http://h/users/bob@example.org", "http://h/users/bob@example.org"},
    {"http://h:8080/users/bob@example.org", "http://h:8080/users/bob@example.org"},
    {"http://svc:p/ss@api.example/v1", "http://api.example/v1"}, /* raw '/' in a password */
    {"https://user:pa?ss@h/x", "https://h/x"},
    {"https://user:pa#ss@h:443/x", "https://h:443/x"},
    {"http://u:p/a@b/c@h/x", "http://h/x"},
    {"http://user:p@ss:w/rd@host/x", "http://host/x"}, /* '@' and '/' in a password */
    {"http://us@er:pa/ss@host/", "http://host/"},
    {"http://u:p@h:80/a@b", "http://h:80/a@b"},       /* user info, then a path with an '@' */
    {"http://h:port/p@q", "http://q"},                /* no valid port: read as user info */
    {"https://user:pa?ss@h/x?next=a@b", "https://b"}, /* rather too much than a password */
    {"http://[::1]:8080/p@q", "http://[::1]:8080/p@q"},
    {"http://h/a/b;c?x=1&y=2", "http://h/a/b;c"},
    {"http://[::1]:8080/v?k", "http://[::1]:8080/v"},
    {"/relative/path?token=abc", "/relative/path"},
    {"/p?next=http://other/x", "/p"},
    {"/p?next=http://user:pw@other/x", "/p"},
    {"", ""},
};

START_TEST(finish_strips_user_info_query_and_fragment)
{
    const struct url_case *c = &url_cases[_i];
    mhdctx_context *ctx = new_context();
    mhdctx_outgoing call;
    ck_assert_int_eq(mhdctx_outgoing_start(&call, ctx), MHDCTX_OK);
    mhdctx_outgoing_finish(&call, "GET", c->url, 200, NULL);
    json_t *line = support_capture_only(JSON_REJECT_DUPLICATES);
    char logged[256];
    snprintf(logged, sizeof logged, "%s", str_field(line, "url"));
    json_decref(line);
    mhdctx_context_unref(ctx);
    ck_assert_msg(strcmp(logged, c->logged) == 0,
                  "url \"%s\" logged as \"%s\", expected \"%s\"", c->url, logged, c->logged);
}
END_TEST

START_TEST(finish_with_null_url_logs_an_empty_url)
{
    mhdctx_context *ctx = new_context();
    mhdctx_outgoing call;
    ck_assert_int_eq(mhdctx_outgoing_start(&call, ctx), MHDCTX_OK);
    mhdctx_outgoing_finish(&call, "GET", NULL, 200, NULL);
    json_t *line = support_capture_only(JSON_REJECT_DUPLICATES);
    ck_assert_str_eq(str_field(line, "url"), "");
    json_decref(line);
    ck_assert_uint_eq(refs_of(ctx), 1);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(finish_with_a_very_long_url_stays_valid)
{
    mhdctx_context *ctx = new_context();
    size_t n = 5000;
    char *url = malloc(n + 32);
    ck_assert_ptr_nonnull(url);
    strcpy(url, "http://h/");
    memset(url + 9, 'p', n);
    strcpy(url + 9 + n, "?secret=1");
    mhdctx_outgoing call;
    ck_assert_int_eq(mhdctx_outgoing_start(&call, ctx), MHDCTX_OK);
    mhdctx_outgoing_finish(&call, "GET", url, 200, NULL);
    json_t *line = support_capture_only(JSON_REJECT_DUPLICATES);
    const char *logged = str_field(line, "url");
    ck_assert(strncmp(logged, "http://h/ppp", 12) == 0);
    ck_assert_ptr_null(strstr(logged, "secret"));
    json_decref(line);
    free(url);
    mhdctx_context_unref(ctx);
}
END_TEST

/* The call's reference keeps the context alive after its creator let go, and the finish
 * frees it. */
START_TEST(finish_drops_the_last_reference)
{
    mhdctx_context *ctx = imported_context("01", "");
    json_t *witness = json_string("w");
    ck_assert_int_eq(mhdctx_set(ctx, "witness", witness), MHDCTX_OK);
    mhdctx_outgoing call;
    ck_assert_int_eq(mhdctx_outgoing_start(&call, ctx), MHDCTX_OK);
    mhdctx_context_unref(ctx);
    ck_assert_uint_eq(witness->refcount, 2);
    mhdctx_outgoing_finish(&call, "GET", "http://h/", 200, NULL);
    json_t *line = support_capture_only(JSON_REJECT_DUPLICATES);
    ck_assert_str_eq(str_field(line, "request_id"), "req-out-1");
    ck_assert_str_eq(str_field(line, "witness"), "w");
    json_decref(line);
    ck_assert_uint_eq(witness->refcount, 1);
    json_decref(witness);
}
END_TEST

/* ---- suite ----------------------------------------------------------------------------- */

static Suite *outgoing_suite(void)
{
    Suite *s = suite_create("outgoing");

    TCase *tc = tcase_create("start");
    tcase_add_checked_fixture(tc, support_capture_start_info, support_capture_stop);
    tcase_add_test(tc, start_continues_the_context_trace);
    tcase_add_test(tc, start_in_a_new_context_uses_its_ids);
    tcase_add_test(tc, start_copies_the_request_id_and_nothing_past_it);
    tcase_add_test(tc, start_passes_the_unsampled_flag);
    tcase_add_test(tc, start_sends_only_the_defined_flags);
    tcase_add_test(tc, two_calls_never_share_a_span);
    tcase_add_test(tc, start_with_null_uses_the_current_context);
    tcase_add_test(tc, start_without_context_starts_a_new_trace);
    tcase_add_test(tc, finish_without_context_logs_the_client_span);
    tcase_add_test(tc, start_refuses_a_null_call);
    suite_add_tcase(s, tc);

    tc = tcase_create("finish");
    tcase_add_checked_fixture(tc, support_capture_start_info, support_capture_stop);
    tcase_add_test(tc, finish_logs_one_line_with_the_client_span);
    tcase_add_test(tc, finish_measures_the_duration);
    tcase_add_loop_test(tc, finish_level_follows_status_and_error, 0,
                        (int)(sizeof level_cases / sizeof *level_cases));
    tcase_add_test(tc, finish_respects_the_threshold);
    tcase_add_loop_test(tc, finish_strips_user_info_query_and_fragment, 0,
                        (int)(sizeof url_cases / sizeof *url_cases));
    tcase_add_test(tc, finish_with_null_url_logs_an_empty_url);
    tcase_add_test(tc, finish_with_a_very_long_url_stays_valid);
    tcase_add_test(tc, finish_drops_the_last_reference);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(outgoing_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failures = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failures ? 1 : 0;
}
