/*
 * check_curl.c - the libcurl adapter against a real in-process MHD daemon: the headers
 * an outgoing call carries (traceparent of a fresh client span in the request's trace,
 * tracestate, X-Request-Id), the caller's own headers kept and restored, the one
 * "outgoing request completed" line per call, connection failures, and the request's
 * deadline bounding the call or preventing it.
 *
 * The daemon (epoll, internal thread, port 0) runs a plain access handler of this file:
 * it records what each request carried, under a lock, and answers 200, the status the
 * path names (/status/503) or after a pause (/sleep/<ms>). Assertions run on the test
 * thread only. Every test starts and stops its own daemon and restores the log sink.
 */
#include "internal.h" /* first: its _GNU_SOURCE; mhdctx__ascii_case_equal */
#include "child.h"
#include "mhdctx.h"
#include "mhdctx_curl.h"
#include "support.h"

#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TEST_TIMEOUT_S 30
#define OUT_MSG        "outgoing request completed"
#define TRACE_ID       "4bf92f3577b34da6a3ce929d0e0e4736"
#define SERVER_SPAN    "00f067aa0ba902b7"
#define CALLER_SPAN    "b7ad6b7169203331"
#define TRACESTATE     "congo=t61rcWkgMzE"
#define REQUEST_ID     "req-curl-1"
#define MAX_RECORDS    16
#define VALUE_MAX      600

/* ==== helpers ========================================================================= */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A context with a known trace, as a worker gets it: imported from an export. */
static mhdctx_context *imported_context(const char *flags)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"v\":1,\"request_id\":\"" REQUEST_ID "\",\"user_id\":\"u7\",\"roles\":[],"
             "\"keys\":{},\"trace_id\":\"" TRACE_ID "\",\"span_id\":\"" SERVER_SPAN "\","
             "\"parent_span_id\":\"" CALLER_SPAN "\",\"trace_flags\":\"%s\","
             "\"tracestate\":\"" TRACESTATE "\"}",
             flags);
    mhdctx_error err = MHDCTX_OK;
    mhdctx_context *ctx = mhdctx_context_import(text, strlen(text), &err);
    ck_assert_msg(ctx != NULL, "import failed: %s", mhdctx_error_name(err));
    ck_assert_str_eq(mhdctx_trace_id(ctx), TRACE_ID);
    ck_assert_str_eq(mhdctx_span_id(ctx), SERVER_SPAN);
    ck_assert_str_eq(mhdctx_tracestate(ctx), TRACESTATE);
    ck_assert_str_eq(mhdctx_request_id(ctx), REQUEST_ID);
    return ctx;
}

/* ==== log capture ====================================================================== */

/* The outgoing lines, parsed, with the level the sink was given. */
struct out_lines {
    size_t n;
    json_t *line[MAX_RECORDS];
    mhdctx_log_level level[MAX_RECORDS];
};

static void out_lines_get(struct out_lines *o)
{
    memset(o, 0, sizeof *o);
    size_t total = support_capture_n();
    for (size_t i = 0; i < total; i++) {
        const support_line *line = support_capture_line(i);
        json_t *v = support_parse_line(line->text, line->len, JSON_REJECT_DUPLICATES);
        const char *m = jstr(v, "message");
        if (m && strcmp(m, OUT_MSG) == 0 && o->n < MAX_RECORDS) {
            o->level[o->n] = line->level;
            o->line[o->n++] = v;
        } else {
            json_decref(v);
        }
    }
}

static void out_lines_free(struct out_lines *o)
{
    for (size_t i = 0; i < o->n; i++)
        json_decref(o->line[i]);
    o->n = 0;
}

/* ==== the server ======================================================================== */

struct record {
    char method[16];
    char url[256];
    char traceparent[VALUE_MAX];
    char tracestate[VALUE_MAX];
    char request_id[VALUE_MAX];
    char custom[VALUE_MAX];
    bool has_traceparent, has_tracestate, has_request_id, has_custom;
    unsigned n_traceparent; /* how many traceparent headers came */
    unsigned n_request_id;
};

struct server {
    struct MHD_Daemon *daemon;
    uint16_t port;
    atomic_bool stopping; /* ends /sleep/ pauses early at shutdown */
    pthread_mutex_t lock;
    size_t n;
    struct record rec[MAX_RECORDS];
    size_t dropped;
};

static struct server srv;

static bool copy_header(struct MHD_Connection *c, const char *name, char *out)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    snprintf(out, VALUE_MAX, "%s", v ? v : "");
    return v != NULL;
}

struct counter {
    const char *name;
    unsigned n;
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    (void)value;
    struct counter *c = cls;
    if (key && mhdctx__ascii_case_equal(key, c->name)) /* a test may change the locale */
        c->n++;
    return MHD_YES;
}

static unsigned header_count(struct MHD_Connection *c, const char *name)
{
    struct counter counter = {name, 0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &counter);
    return counter.n;
}

static void record_request(struct MHD_Connection *c, const char *url, const char *method)
{
    struct record r;
    memset(&r, 0, sizeof r);
    snprintf(r.method, sizeof r.method, "%s", method);
    snprintf(r.url, sizeof r.url, "%s", url);
    r.has_traceparent = copy_header(c, "traceparent", r.traceparent);
    r.has_tracestate = copy_header(c, "tracestate", r.tracestate);
    r.has_request_id = copy_header(c, "X-Request-Id", r.request_id);
    r.has_custom = copy_header(c, "X-Custom", r.custom);
    r.n_traceparent = header_count(c, "traceparent");
    r.n_request_id = header_count(c, "X-Request-Id");
    pthread_mutex_lock(&srv.lock);
    if (srv.n < MAX_RECORDS)
        srv.rec[srv.n++] = r;
    else
        srv.dropped++;
    pthread_mutex_unlock(&srv.lock);
}

static size_t records(void)
{
    pthread_mutex_lock(&srv.lock);
    size_t n = srv.n;
    pthread_mutex_unlock(&srv.lock);
    return n;
}

/* A copy of record @p i (the server may still be writing others). */
static struct record record_at(size_t i)
{
    pthread_mutex_lock(&srv.lock);
    size_t n = srv.n;
    struct record r;
    memset(&r, 0, sizeof r);
    if (i < n)
        r = srv.rec[i];
    pthread_mutex_unlock(&srv.lock);
    ck_assert_msg(i < n, "request %zu was not received (%zu recorded)", i, n);
    return r;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *connection, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **req_cls)
{
    (void)cls;
    (void)version;
    (void)upload_data;
    static int marker;
    if (*req_cls == NULL) { /* headers parsed: record them, answer at a later call */
        *req_cls = &marker;
        record_request(connection, url, method);
        return MHD_YES;
    }
    if (*upload_data_size) { /* a body: ignore it */
        *upload_data_size = 0;
        return MHD_YES;
    }
    unsigned status = MHD_HTTP_OK;
    unsigned long n = 0;
    if (sscanf(url, "/status/%lu", &n) == 1 && n >= 100 && n <= 599)
        status = (unsigned)n;
    if (sscanf(url, "/sleep/%lu", &n) == 1) {
        for (unsigned long slept = 0; slept < n && !atomic_load(&srv.stopping); slept += 10)
            sleep_ms(10);
    }
    static const char body[] = "ok\n";
    struct MHD_Response *response =
        MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (response == NULL)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return ret;
}

static void server_start(void)
{
    memset(&srv, 0, sizeof srv);
    pthread_mutex_init(&srv.lock, NULL);
    atomic_store(&srv.stopping, false);
    srv.daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL,
                                  NULL, &handler, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
                                  (unsigned int)10, MHD_OPTION_END);
    ck_assert_msg(srv.daemon != NULL, "MHD_start_daemon failed");
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(srv.daemon, MHD_DAEMON_INFO_BIND_PORT);
    ck_assert_ptr_nonnull(info);
    ck_assert_uint_ne(info->port, 0);
    srv.port = info->port;
}

static void server_stop(void)
{
    if (srv.daemon) {
        atomic_store(&srv.stopping, true);
        MHD_stop_daemon(srv.daemon);
        srv.daemon = NULL;
        pthread_mutex_destroy(&srv.lock);
    }
}

/* Checked fixture: runs after a failing test too (in the same process with CK_FORK=no). */
static void setup(void)
{
    support_capture_start_info();
    server_start();
}

static void teardown(void)
{
    server_stop();
    support_capture_stop();
}

/* ==== the client ======================================================================== */

static size_t discard_body(char *data, size_t size, size_t nmemb, void *cls)
{
    (void)data;
    (void)cls;
    return size * nmemb;
}

/* An easy handle for http://127.0.0.1:<port><path> (owned: curl_easy_cleanup()). */
static CURL *client(uint16_t port, const char *path)
{
    CURL *easy = curl_easy_init();
    ck_assert_ptr_nonnull(easy);
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)port, path);
    ck_assert_int_eq(curl_easy_setopt(easy, CURLOPT_URL, url), CURLE_OK);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 20000L);
    return easy;
}

static void set_path(CURL *easy, uint16_t port, const char *path)
{
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)port, path);
    ck_assert_int_eq(curl_easy_setopt(easy, CURLOPT_URL, url), CURLE_OK);
}

static long response_code(CURL *easy)
{
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

/* The span id of a recorded traceparent, after checking its trace and flags. */
static void check_traceparent(const struct record *r, const char *trace_id, unsigned char flags,
                              char span[MHDCTX_SPAN_ID_LEN + 1])
{
    ck_assert_msg(r->has_traceparent, "no traceparent on %s", r->url);
    ck_assert_uint_eq(r->n_traceparent, 1);
    ck_assert_uint_eq(strlen(r->traceparent), MHDCTX_TRACEPARENT_LEN);
    mhdctx_trace_parent tp;
    ck_assert_int_eq(mhdctx_traceparent_parse(r->traceparent, strlen(r->traceparent), &tp),
                     MHDCTX_OK);
    ck_assert_int_eq(strncmp(r->traceparent, "00-", 3), 0);
    if (trace_id)
        ck_assert_str_eq(tp.trace_id, trace_id);
    ck_assert_uint_eq(tp.flags, flags);
    ck_assert(is_hex_id(tp.parent_id, MHDCTX_SPAN_ID_LEN));
    memcpy(span, tp.parent_id, MHDCTX_SPAN_ID_LEN + 1);
}

/* The common fields of an outgoing line. */
static void check_line(const json_t *line, const char *method, const char *url, unsigned status,
                       const char *span, const char *parent, const char *trace_id,
                       const char *request_id)
{
    ck_assert_str_eq(jstr(line, "message"), OUT_MSG);
    ck_assert_ptr_nonnull(jstr(line, "method"));
    ck_assert_str_eq(jstr(line, "method"), method);
    ck_assert_ptr_nonnull(jstr(line, "url"));
    ck_assert_str_eq(jstr(line, "url"), url);
    json_t *st = json_object_get(line, "status");
    ck_assert_msg(json_is_integer(st), "status is not an integer");
    ck_assert_int_eq(json_integer_value(st), status);
    ck_assert(json_is_number(json_object_get(line, "duration_ms")));
    ck_assert(json_number_value(json_object_get(line, "duration_ms")) >= 0.0);
    ck_assert_ptr_nonnull(jstr(line, "span_id"));
    ck_assert_str_eq(jstr(line, "span_id"), span);
    ck_assert_ptr_nonnull(jstr(line, "parent_span_id"));
    ck_assert_str_eq(jstr(line, "parent_span_id"), parent);
    ck_assert_ptr_nonnull(jstr(line, "trace_id"));
    ck_assert_str_eq(jstr(line, "trace_id"), trace_id);
    ck_assert_ptr_nonnull(jstr(line, "request_id"));
    ck_assert_str_eq(jstr(line, "request_id"), request_id);
}

static char *base_url(const char *path)
{
    return str_fmt("http://127.0.0.1:%u%s", (unsigned)srv.port, path);
}

/* ==== propagation ========================================================================= */

START_TEST(test_propagation_headers_and_lines)
{
    mhdctx_context *ctx = imported_context("01");
    CURL *easy = client(srv.port, "/hello?token=secret&x=1");

    ck_assert_int_eq(mhdctx_curl_perform(easy, ctx, NULL), CURLE_OK);
    ck_assert_int_eq(response_code(easy), 200);
    set_path(easy, srv.port, "/again");
    ck_assert_int_eq(mhdctx_curl_perform(easy, ctx, NULL), CURLE_OK);
    ck_assert_int_eq(response_code(easy), 200);

    ck_assert_uint_eq(records(), 2);
    struct record r1 = record_at(0), r2 = record_at(1);
    ck_assert_str_eq(r1.method, "GET");
    ck_assert_str_eq(r1.url, "/hello");
    char span1[MHDCTX_SPAN_ID_LEN + 1], span2[MHDCTX_SPAN_ID_LEN + 1];
    check_traceparent(&r1, TRACE_ID, 0x01, span1);
    check_traceparent(&r2, TRACE_ID, 0x01, span2);
    ck_assert_str_ne(span1, SERVER_SPAN); /* a client span of its own */
    ck_assert_str_ne(span2, SERVER_SPAN);
    ck_assert_str_ne(span1, span2); /* one per call */
    ck_assert_str_ne(span1, CALLER_SPAN);
    for (int i = 0; i < 2; i++) {
        const struct record *r = i ? &r2 : &r1;
        ck_assert(r->has_tracestate);
        ck_assert_str_eq(r->tracestate, TRACESTATE);
        ck_assert(r->has_request_id);
        ck_assert_uint_eq(r->n_request_id, 1);
        ck_assert_str_eq(r->request_id, REQUEST_ID);
        ck_assert(!r->has_custom);
    }

    struct out_lines o;
    out_lines_get(&o);
    ck_assert_uint_eq(o.n, 2);
    char *url1 = base_url("/hello"), *url2 = base_url("/again");
    check_line(o.line[0], "GET", url1, 200, span1, SERVER_SPAN, TRACE_ID, REQUEST_ID);
    check_line(o.line[1], "GET", url2, 200, span2, SERVER_SPAN, TRACE_ID, REQUEST_ID);
    for (size_t i = 0; i < 2; i++) {
        ck_assert_int_eq(o.level[i], MHDCTX_LOG_INFO);
        ck_assert_str_eq(jstr(o.line[i], "level"), "info");
        ck_assert_ptr_null(json_object_get(o.line[i], "error"));
        ck_assert_str_eq(jstr(o.line[i], "user_id"), "u7");
    }
    /* The query string (here a token) never reaches the line. */
    for (size_t i = 0, n = support_capture_n(); i < n; i++) {
        const char *text = support_capture_line(i)->text;
        ck_assert_msg(strstr(text, "secret") == NULL, "query logged: %s", text);
    }

    free(url1);
    free(url2);
    out_lines_free(&o);
    curl_easy_cleanup(easy);
    mhdctx_context_unref(ctx);
}
END_TEST

/* An unsampled trace stays unsampled downstream. */
START_TEST(test_propagation_unsampled_flags)
{
    mhdctx_context *ctx = imported_context("00");
    CURL *easy = client(srv.port, "/flags");
    ck_assert_int_eq(mhdctx_curl_perform(easy, ctx, NULL), CURLE_OK);
    struct record r = record_at(0);
    char span[MHDCTX_SPAN_ID_LEN + 1];
    check_traceparent(&r, TRACE_ID, 0x00, span);
    ck_assert_str_eq(r.traceparent + MHDCTX_TRACEPARENT_LEN - 3, "-00");
    curl_easy_cleanup(easy);
    mhdctx_context_unref(ctx);
}
END_TEST

/* With a NULL ctx argument the context current on the thread is used. */
struct current_call {
    CURL *easy;
    CURLcode rc;
};

static void perform_current(void *arg)
{
    struct current_call *c = arg;
    c->rc = mhdctx_curl_perform(c->easy, NULL, NULL);
}

START_TEST(test_propagation_from_current_context)
{
    mhdctx_context *ctx = imported_context("01");
    struct current_call call = {.easy = client(srv.port, "/current"), .rc = CURLE_OK};
    mhdctx_run(ctx, perform_current, &call);
    ck_assert_int_eq(call.rc, CURLE_OK);
    struct record r = record_at(0);
    char span[MHDCTX_SPAN_ID_LEN + 1];
    check_traceparent(&r, TRACE_ID, 0x01, span);
    ck_assert_str_ne(span, SERVER_SPAN);
    ck_assert_str_eq(r.tracestate, TRACESTATE);
    ck_assert_str_eq(r.request_id, REQUEST_ID);

    struct out_lines o;
    out_lines_get(&o);
    ck_assert_uint_eq(o.n, 1);
    char *url = base_url("/current");
    check_line(o.line[0], "GET", url, 200, span, SERVER_SPAN, TRACE_ID, REQUEST_ID);
    free(url);
    out_lines_free(&o);
    curl_easy_cleanup(call.easy);
    mhdctx_context_unref(ctx);
}
END_TEST

/* Outside any context a call starts a new trace, with a fresh request id. */
START_TEST(test_propagation_without_context)
{
    ck_assert_ptr_null(mhdctx_current());
    CURL *easy = client(srv.port, "/alone");
    ck_assert_int_eq(mhdctx_curl_perform(easy, NULL, NULL), CURLE_OK);
    struct record r = record_at(0);
    char span[MHDCTX_SPAN_ID_LEN + 1];
    check_traceparent(&r, NULL, MHDCTX_TRACE_FLAG_SAMPLED | MHDCTX_TRACE_FLAG_RANDOM, span);
    char trace[MHDCTX_TRACE_ID_LEN + 1];
    memcpy(trace, r.traceparent + 3, MHDCTX_TRACE_ID_LEN);
    trace[MHDCTX_TRACE_ID_LEN] = '\0';
    ck_assert_str_ne(trace, TRACE_ID);
    ck_assert(!r.has_tracestate);
    ck_assert(r.has_request_id);
    ck_assert_msg(is_uuid_v4(r.request_id), "request id %s", r.request_id);

    struct out_lines o;
    out_lines_get(&o);
    ck_assert_uint_eq(o.n, 1);
    char *url = base_url("/alone");
    check_line(o.line[0], "GET", url, 200, span, "", trace, r.request_id);
    free(url);
    out_lines_free(&o);
    curl_easy_cleanup(easy);
}
END_TEST

/* ==== the caller's headers ================================================================ */

START_TEST(test_caller_headers_sent_and_restored)
{
    mhdctx_context *ctx = imported_context("01");
    CURL *easy = client(srv.port, "/custom");
    struct curl_slist *headers = curl_slist_append(NULL, "X-Custom: 1");
    ck_assert_ptr_nonnull(headers);
    ck_assert_int_eq(curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers), CURLE_OK);

    ck_assert_int_eq(mhdctx_curl_perform(easy, ctx, headers), CURLE_OK);
    /* The caller's list is left as it was: one node, same text. */
    ck_assert_str_eq(headers->data, "X-Custom: 1");
    ck_assert_ptr_null(headers->next);

    /* A plain perform afterwards: CURLOPT_HTTPHEADER is the caller's list again. */
    set_path(easy, srv.port, "/plain");
    ck_assert_int_eq(curl_easy_perform(easy), CURLE_OK);

    ck_assert_uint_eq(records(), 2);
    struct record with = record_at(0), plain = record_at(1);
    ck_assert(with.has_custom);
    ck_assert_str_eq(with.custom, "1");
    char span[MHDCTX_SPAN_ID_LEN + 1];
    check_traceparent(&with, TRACE_ID, 0x01, span);
    ck_assert_str_eq(with.request_id, REQUEST_ID);
    ck_assert_str_eq(with.tracestate, TRACESTATE);

    ck_assert_str_eq(plain.url, "/plain");
    ck_assert(plain.has_custom);
    ck_assert_str_eq(plain.custom, "1");
    ck_assert(!plain.has_traceparent);
    ck_assert(!plain.has_tracestate);
    ck_assert(!plain.has_request_id);

    /* Only the adapter's call was logged. */
    struct out_lines o;
    out_lines_get(&o);
    ck_assert_uint_eq(o.n, 1);
    out_lines_free(&o);

    curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    mhdctx_context_unref(ctx);
}
END_TEST

/* The caller's own id header, in any case, is replaced, whatever the locale: under a
 * Turkish one strncasecmp() held "x-request-id" and "X-Request-Id" different ('I' does
 * not lower to 'i' there), and the caller's stale id went out beside the context's. */
START_TEST(test_caller_id_header_replaced_under_a_turkish_locale)
{
    char dir[32];
    test_turkish_ctype_begin(dir);
    mhdctx_context *ctx = imported_context("01");
    CURL *easy = client(srv.port, "/custom");
    struct curl_slist *headers = curl_slist_append(NULL, "x-request-id: stale-id");
    ck_assert_ptr_nonnull(headers);
    ck_assert_int_eq(mhdctx_curl_perform(easy, ctx, headers), CURLE_OK);
    test_ctype_locale_end(dir);
    ck_assert_uint_eq(records(), 1);
    struct record r = record_at(0);
    ck_assert_uint_eq(r.n_request_id, 1);
    ck_assert_str_eq(r.request_id, REQUEST_ID);
    curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    mhdctx_context_unref(ctx);
}
END_TEST

/* libcurl's strdup (curl_global_init_mem): fails once when armed. The first copy after
 * arming is the adapter's copy of the caller's first header. */
static atomic_bool fail_next_strdup;

static char *test_strdup(const char *s)
{
    return atomic_exchange(&fail_next_strdup, false) ? NULL : strdup(s);
}

/* Out of memory while copying the caller's headers: the call fails, rather than going
 * out without them (it used to go out with only the adapter's own headers). */
START_TEST(test_caller_headers_lost_to_oom_fail_the_call)
{
    mhdctx_context *ctx = imported_context("01");
    CURL *easy = client(srv.port, "/custom");
    struct curl_slist *headers = curl_slist_append(NULL, "X-Custom: 1");
    ck_assert_ptr_nonnull(headers);
    atomic_store(&fail_next_strdup, true);
    ck_assert_int_eq(mhdctx_curl_perform(easy, ctx, headers), CURLE_OUT_OF_MEMORY);
    ck_assert(!atomic_load(&fail_next_strdup)); /* the failure was used */
    ck_assert_uint_eq(records(), 0);            /* nothing went out */
    curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    mhdctx_context_unref(ctx);
}
END_TEST

/* With no list of the caller's, CURLOPT_HTTPHEADER ends up empty again. */
START_TEST(test_no_caller_headers_restored_to_none)
{
    mhdctx_context *ctx = imported_context("01");
    CURL *easy = client(srv.port, "/first");
    ck_assert_int_eq(mhdctx_curl_perform(easy, ctx, NULL), CURLE_OK);
    set_path(easy, srv.port, "/second");
    ck_assert_int_eq(curl_easy_perform(easy), CURLE_OK);
    ck_assert_uint_eq(records(), 2);
    struct record first = record_at(0), second = record_at(1);
    ck_assert(first.has_traceparent);
    ck_assert(!second.has_traceparent);
    ck_assert(!second.has_tracestate);
    ck_assert(!second.has_request_id);
    curl_easy_cleanup(easy);
    mhdctx_context_unref(ctx);
}
END_TEST

/* ==== status, method, failures ============================================================ */

START_TEST(test_status_in_line)
{
    mhdctx_context *ctx = imported_context("01");
    CURL *easy = client(srv.port, "/status/503?q=1");
    ck_assert_int_eq(mhdctx_curl_perform(easy, ctx, NULL), CURLE_OK);
    ck_assert_int_eq(response_code(easy), 503);
    set_path(easy, srv.port, "/status/404");
    ck_assert_int_eq(mhdctx_curl_perform(easy, ctx, NULL), CURLE_OK);
    ck_assert_int_eq(response_code(easy), 404);

    ck_assert_uint_eq(records(), 2);
    struct record r1 = record_at(0), r2 = record_at(1);
    char span1[MHDCTX_SPAN_ID_LEN + 1], span2[MHDCTX_SPAN_ID_LEN + 1];
    check_traceparent(&r1, TRACE_ID, 0x01, span1);
    check_traceparent(&r2, TRACE_ID, 0x01, span2);

    struct out_lines o;
    out_lines_get(&o);
    ck_assert_uint_eq(o.n, 2);
    char *url1 = base_url("/status/503"), *url2 = base_url("/status/404");
    check_line(o.line[0], "GET", url1, 503, span1, SERVER_SPAN, TRACE_ID, REQUEST_ID);
    check_line(o.line[1], "GET", url2, 404, span2, SERVER_SPAN, TRACE_ID, REQUEST_ID);
    ck_assert_int_eq(o.level[0], MHDCTX_LOG_WARN); /* 5xx: warn */
    ck_assert_str_eq(jstr(o.line[0], "level"), "warn");
    ck_assert_int_eq(o.level[1], MHDCTX_LOG_INFO);
    ck_assert_ptr_null(json_object_get(o.line[0], "error"));
    free(url1);
    free(url2);
    out_lines_free(&o);
    curl_easy_cleanup(easy);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(test_effective_method_in_line)
{
    mhdctx_context *ctx = imported_context("01");
    CURL *easy = client(srv.port, "/submit");
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "a=1&b=2");
    ck_assert_int_eq(mhdctx_curl_perform(easy, ctx, NULL), CURLE_OK);
    ck_assert_int_eq(response_code(easy), 200);
    struct record r = record_at(0);
    ck_assert_str_eq(r.method, "POST");
    char span[MHDCTX_SPAN_ID_LEN + 1];
    check_traceparent(&r, TRACE_ID, 0x01, span);

    struct out_lines o;
    out_lines_get(&o);
    ck_assert_uint_eq(o.n, 1);
    char *url = base_url("/submit");
    check_line(o.line[0], "POST", url, 200, span, SERVER_SPAN, TRACE_ID, REQUEST_ID);
    free(url);
    out_lines_free(&o);
    curl_easy_cleanup(easy);
    mhdctx_context_unref(ctx);
}
END_TEST

/* A port nobody listens on: bound, read, closed. */
static uint16_t closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    close(fd);
    return ntohs(addr.sin_port);
}

START_TEST(test_connection_failure_logged_as_error)
{
    mhdctx_context *ctx = imported_context("01");
    uint16_t port = closed_port();
    CURL *easy = client(port, "/nobody?k=v");
    CURLcode rc = mhdctx_curl_perform(easy, ctx, NULL);
    ck_assert_msg(rc != CURLE_OK, "a call to a closed port succeeded");
    ck_assert_msg(rc == CURLE_COULDNT_CONNECT, "curl said %d (%s)", rc, curl_easy_strerror(rc));

    struct out_lines o;
    out_lines_get(&o);
    ck_assert_uint_eq(o.n, 1);
    json_t *line = o.line[0];
    ck_assert_int_eq(o.level[0], MHDCTX_LOG_ERROR);
    ck_assert_str_eq(jstr(line, "level"), "error");
    ck_assert_ptr_nonnull(jstr(line, "error"));
    ck_assert_uint_gt(strlen(jstr(line, "error")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "status")), 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/nobody", (unsigned)port);
    ck_assert_str_eq(jstr(line, "url"), url);
    ck_assert_str_eq(jstr(line, "parent_span_id"), SERVER_SPAN);
    ck_assert_str_eq(jstr(line, "trace_id"), TRACE_ID);
    ck_assert_str_eq(jstr(line, "request_id"), REQUEST_ID);
    ck_assert(is_hex_id(str_field(line, "span_id"), MHDCTX_SPAN_ID_LEN));
    ck_assert_str_ne(jstr(line, "span_id"), SERVER_SPAN);
    out_lines_free(&o);
    curl_easy_cleanup(easy);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(test_null_handle_refused)
{
    mhdctx_context *ctx = imported_context("01");
    ck_assert_int_ne(mhdctx_curl_perform(NULL, ctx, NULL), CURLE_OK);
    ck_assert_uint_eq(records(), 0);
    mhdctx_context_unref(ctx);
}
END_TEST

/* ==== deadlines ============================================================================
 */

START_TEST(test_deadline_bounds_call)
{
    mhdctx_context *ctx = imported_context("01");
    mhdctx_set_deadline_in(ctx, 150);
    CURL *easy = client(srv.port, "/sleep/2000");
    uint64_t start = now_ms();
    CURLcode rc = mhdctx_curl_perform(easy, ctx, NULL);
    uint64_t elapsed = now_ms() - start;
    ck_assert_msg(rc == CURLE_OPERATION_TIMEDOUT, "curl said %d (%s)", rc,
                  curl_easy_strerror(rc));
    ck_assert_msg(elapsed < 1000, "the call took %llu ms", (unsigned long long)elapsed);

    struct out_lines o;
    out_lines_get(&o);
    ck_assert_uint_eq(o.n, 1);
    ck_assert_int_eq(o.level[0], MHDCTX_LOG_ERROR);
    ck_assert_ptr_nonnull(jstr(o.line[0], "error"));
    ck_assert_str_eq(jstr(o.line[0], "request_id"), REQUEST_ID);
    ck_assert_str_eq(jstr(o.line[0], "trace_id"), TRACE_ID);
    out_lines_free(&o);
    curl_easy_cleanup(easy);
    mhdctx_context_unref(ctx);
}
END_TEST

/* A deadline far away does not cut a short call. */
START_TEST(test_deadline_not_reached_call_completes)
{
    mhdctx_context *ctx = imported_context("01");
    mhdctx_set_deadline_in(ctx, 20000);
    CURL *easy = client(srv.port, "/sleep/50");
    ck_assert_int_eq(mhdctx_curl_perform(easy, ctx, NULL), CURLE_OK);
    ck_assert_int_eq(response_code(easy), 200);
    ck_assert_uint_eq(records(), 1);
    curl_easy_cleanup(easy);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(test_deadline_passed_no_request)
{
    mhdctx_context *ctx = imported_context("01");
    mhdctx_set_deadline_in(ctx, 1);
    sleep_ms(5);
    ck_assert(mhdctx_deadline_passed(ctx));
    CURL *easy = client(srv.port, "/never");
    uint64_t start = now_ms();
    CURLcode rc = mhdctx_curl_perform(easy, ctx, NULL);
    uint64_t elapsed = now_ms() - start;
    ck_assert_msg(rc == CURLE_OPERATION_TIMEDOUT, "curl said %d (%s)", rc,
                  curl_easy_strerror(rc));
    ck_assert_msg(elapsed < 1000, "took %llu ms", (unsigned long long)elapsed);
    sleep_ms(200); /* a request on its way would have arrived by now */
    ck_assert_uint_eq(records(), 0);

    struct out_lines o;
    out_lines_get(&o);
    ck_assert_uint_eq(o.n, 1);
    ck_assert_int_eq(o.level[0], MHDCTX_LOG_ERROR);
    ck_assert_ptr_nonnull(jstr(o.line[0], "error"));
    ck_assert_str_eq(jstr(o.line[0], "request_id"), REQUEST_ID);
    ck_assert_str_eq(jstr(o.line[0], "parent_span_id"), SERVER_SPAN);
    out_lines_free(&o);

    /* The server does record requests: the same handle without the context gets
     * through, so the zero above is meaningful. */
    ck_assert_int_eq(curl_easy_perform(easy), CURLE_OK);
    ck_assert_uint_eq(records(), 1);
    curl_easy_cleanup(easy);
    mhdctx_context_unref(ctx);
}
END_TEST

/*
 * The deadline bounds the call made for the request that has it, not later calls made
 * on the same (pooled) handle for other requests: a request without a deadline keeps
 * the caller's timeout (20 s here), so its 400 ms call completes.
 */
START_TEST(test_deadline_does_not_outlive_its_call)
{
    mhdctx_context *hurried = imported_context("01");
    mhdctx_set_deadline_in(hurried, 150);
    CURL *easy = client(srv.port, "/quick");
    ck_assert_int_eq(mhdctx_curl_perform(easy, hurried, NULL), CURLE_OK);

    mhdctx_context *patient = imported_context("01");
    ck_assert_int_eq(mhdctx_deadline_remaining_ms(patient), INT64_MAX);
    set_path(easy, srv.port, "/sleep/400");
    CURLcode rc = mhdctx_curl_perform(easy, patient, NULL);
    long code = response_code(easy);
    /* Released before asserting, so that a failure leaks nothing under CK_FORK=no. */
    curl_easy_cleanup(easy);
    mhdctx_context_unref(hurried);
    mhdctx_context_unref(patient);
    ck_assert_msg(rc == CURLE_OK,
                  "a call for a request without deadline failed with %d (%s): the previous "
                  "request's 150 ms budget stayed on the handle as CURLOPT_TIMEOUT_MS",
                  rc, curl_easy_strerror(rc));
    ck_assert_int_eq(code, 200);
}
END_TEST

/* ==== suite ================================================================================
 */

static Suite *curl_suite(void)
{
    Suite *s = suite_create("curl");

    TCase *tc = support_tcase(s, "propagation", TEST_TIMEOUT_S, setup, teardown);
    tcase_add_test(tc, test_propagation_headers_and_lines);
    tcase_add_test(tc, test_propagation_unsampled_flags);
    tcase_add_test(tc, test_propagation_from_current_context);
    tcase_add_test(tc, test_propagation_without_context);
    tcase_add_test(tc, test_caller_headers_sent_and_restored);
    tcase_add_test(tc, test_caller_id_header_replaced_under_a_turkish_locale);
    tcase_add_test(tc, test_no_caller_headers_restored_to_none);
    tcase_add_test(tc, test_caller_headers_lost_to_oom_fail_the_call);

    tc = support_tcase(s, "outcome", TEST_TIMEOUT_S, setup, teardown);
    tcase_add_test(tc, test_status_in_line);
    tcase_add_test(tc, test_effective_method_in_line);
    tcase_add_test(tc, test_connection_failure_logged_as_error);
    tcase_add_test(tc, test_null_handle_refused);

    tc = support_tcase(s, "deadline", TEST_TIMEOUT_S, setup, teardown);
    tcase_add_test(tc, test_deadline_bounds_call);
    tcase_add_test(tc, test_deadline_not_reached_call_completes);
    tcase_add_test(tc, test_deadline_passed_no_request);
    tcase_add_test(tc, test_deadline_does_not_outlive_its_call);
    return s;
}

int main(void)
{
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, free, realloc, test_strdup, calloc) !=
        CURLE_OK) {
        fprintf(stderr, "curl_global_init failed\n");
        return 1;
    }
    SRunner *sr = srunner_create(curl_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failures = srunner_ntests_failed(sr);
    srunner_free(sr);
    mhdctx_log_shutdown();
    support_capture_clear();
    curl_global_cleanup();
    return failures ? 1 : 0;
}
