/*
 * check_alloc_fault.c - allocation-failure injection through a real request.
 *
 * The library the tests link (libmhdctx_test.la) is built with -DMHDCTX_FAULT_INJECTION:
 * every allocation of the library goes through src/alloc.c, which fails the allocation
 * at which the countdown mhdctx__alloc_countdown reaches zero (once; -1 disarms it).
 *
 * One request that reaches every allocating feature — the context (URI callback), a
 * method too long for the inline buffer, two tracestate headers (joined, then kept),
 * the bearer-auth hook (user id, two roles), a hook that sets nine user keys of 1000
 * bytes (so that every log line outgrows the 8 KiB line buffer) and logs, a handler that
 * logs a message longer than the 512-byte format buffer, names its route, builds its
 * JSON answer and queues it, then the access line — is sent for k = 1, 2, 3, ... with the
 * countdown armed so that its k-th allocation fails. Each time:
 *  - the answer is a 500 or 503 with the request id, or the connection closes cleanly
 *    (no other status, no partial answer, no hang); the access line is written;
 *  - or the answer is a complete 200, which is allowed only when nothing was lost: the
 *    failure was recovered (the URI callback's context is created again at the first
 *    call) and every log line is there, or the failure hit the access line after the
 *    response had gone out and that one line is counted as dropped;
 *  - the daemon then serves a normal request normally.
 * The walk ends with the first k at which the fault no longer fires: the request made
 * fewer allocations, so every allocation point was failed once. Nothing may leak (the
 * ASan pass runs LeakSanitizer, the valgrind pass --leak-check=full).
 *
 * A second walk also routes jansson's allocations (json_set_alloc_funcs) through the
 * same countdown, so that the values the library and the application build with
 * jansson fail in turn too. libmicrohttpd's own allocations (its connection memory pool)
 * cannot be reached without replacing malloc, and are not walked.
 *
 * A last case refuses the thread blocks (mappings: line storage, random generator,
 * block cache) in turn, on new threads, and checks what the library does without.
 *
 * Assertions run on the test thread only: the handler, hooks and callbacks record what
 * they see in atomics.
 */
#include "internal.h" /* first: _GNU_SOURCE; mhdctx__alloc_countdown's type */

#include "http_client.h"
#include "support.h"

#include <check.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_TIMEOUT_S 300
#define ACCESS_MSG     "request completed"
#define HOOK_MSG       "keys set"
#define MAX_POINTS     500 /* a walk longer than this is a runaway */

/* The tests' build of thread_blocks.c refuses the thread block at which this reaches
 * zero (src/alloc.c), as if the system had no mapping to give. */
extern atomic_long mhdctx__map_countdown;

/* ==== the request ===================================================================== */

#define LONG_METHOD "X-FAULT-INJECTION-METHOD" /* 24 bytes: does not fit method_inline */
#define TOKEN       "fault-token"
#define USER        "u-7"
#define ROUTE       "/fault/{id}"
#define N_KEYS      9
#define KEY_LEN     1000 /* nine of them: every line is over the 8 KiB line buffer */
#define LONG_TEXT   600  /* the handler's message: over the 512-byte format buffer */
#define TRACE_ID    "4bf92f3577b34da6a3ce929d0e0e4736"

static char key_value[KEY_LEN + 1];
static char long_text[LONG_TEXT + 1];

static char *request_text(const char *id)
{
    return str_fmt(LONG_METHOD " /fault/7?q=1 HTTP/1.1\r\nHost: test\r\n"
                               "X-Request-Id: %s\r\nAuthorization: Bearer " TOKEN "\r\n"
                               "traceparent: 00-" TRACE_ID "-00f067aa0ba902b7-01\r\n"
                               "tracestate: a=1\r\ntracestate: b=2\r\n"
                               "Connection: close\r\n\r\n",
                   id);
}

/* ==== the application ================================================================= */

static struct {
    atomic_uint closed;          /* connections MHD reported closed */
    atomic_long countdown_seen;  /* the countdown when the app's completion callback ran */
    atomic_uint off_thread;      /* mhdctx_current() missing or wrong in a callback */
    atomic_uint internal_errors; /* answers the application turned into a 500 */
} app;

#define NOT_SEEN LONG_MIN

static char first_call_marker;

/* A library call failed: the application answers 500 (or closes if even that fails). */
static enum MHD_Result fail_500(struct MHD_Connection *connection)
{
    atomic_fetch_add(&app.internal_errors, 1);
    return mhdctx_respond_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal_error");
}

/* Sets the user keys, then logs: a line the logger could not build is a failure too. */
static mhdctx_hook_result keys_hook(struct MHD_Connection *connection, mhdctx_context *ctx,
                                    void *cls)
{
    (void)cls;
    if (ctx == NULL || ctx != mhdctx_current())
        atomic_fetch_add(&app.off_thread, 1);
    bool ok = true;
    for (int i = 0; ok && i < N_KEYS; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        ok = mhdctx_set_string(ctx, key, key_value) == MHDCTX_OK;
    }
    if (ok) {
        uint64_t dropped = mhdctx_log_dropped();
        mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_STR("step", "hook")),
                          HOOK_MSG);
        ok = mhdctx_log_dropped() == dropped;
    }
    if (ok)
        return MHDCTX_HOOK_CONTINUE;
    return fail_500(connection) == MHD_YES ? MHDCTX_HOOK_DONE : MHDCTX_HOOK_FAIL;
}

static int count_keys(const mhdctx_context *ctx)
{
    int n = 0;
    for (int i = 0; i < N_KEYS; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        json_t *v = mhdctx_get(ctx, key);
        n += json_is_string(v) && strcmp(json_string_value(v), key_value) == 0;
        json_decref(v);
    }
    return n;
}

static enum MHD_Result app_handler(void *cls, struct MHD_Connection *connection,
                                   const char *url, const char *method, const char *version,
                                   const char *upload_data, size_t *upload_data_size,
                                   void **req_cls)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    mhdctx_context *ctx = mhdctx_current();
    if (ctx == NULL) {
        atomic_fetch_add(&app.off_thread, 1);
        return MHD_NO;
    }
    if (*req_cls == NULL) {
        *req_cls = &first_call_marker;
        return MHD_YES;
    }
    uint64_t dropped = mhdctx_log_dropped();
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_STR("step", "handler")),
                      "handler %s", long_text);
    if (mhdctx_log_dropped() != dropped)
        return fail_500(connection);
    if (mhdctx_set_route(ctx, ROUTE) != MHDCTX_OK)
        return fail_500(connection);
    char user[MHDCTX_MAX_USER_ID_LEN + 1];
    if (mhdctx_copy_user_id(ctx, user, sizeof user) != MHDCTX_OK)
        copy_str(user, sizeof user, "");
    json_t *roles = mhdctx_roles_json(ctx);
    if (roles == NULL)
        return fail_500(connection);
    json_t *body =
        json_pack("{s:s, s:s, s:o, s:i, s:s, s:s, s:s, s:s}", "request_id",
                  mhdctx_request_id(ctx), "user_id", user, "roles", roles, "keys",
                  count_keys(ctx), "route", mhdctx_route(ctx), "method", mhdctx_method(ctx),
                  "trace_id", mhdctx_trace_id(ctx), "tracestate", mhdctx_tracestate(ctx));
    if (body == NULL)
        return fail_500(connection);
    return mhdctx_respond_json_new(connection, MHD_HTTP_OK, body);
}

static void app_completed(void *cls, struct MHD_Connection *connection, void **req_cls,
                          enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)connection;
    (void)req_cls;
    (void)toe;
    if (mhdctx_current() == NULL)
        atomic_fetch_add(&app.off_thread, 1);
    /* Read before the middleware writes the access line, right after this returns. */
    atomic_store(&app.countdown_seen, atomic_load(&mhdctx__alloc_countdown));
}

/* After the completion callbacks of the connection's last request. */
static void notify_connection(void *cls, struct MHD_Connection *connection,
                              void **socket_context, enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    (void)connection;
    (void)socket_context;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED)
        atomic_fetch_add(&app.closed, 1);
}

/* ==== jansson's allocations through the same countdown ================================= */

static atomic_bool json_faults; /* route jansson's allocations through the countdown */
static atomic_bool json_fired;  /* the failed allocation was jansson's */

static void *json_malloc(size_t size)
{
    if (atomic_load(&json_faults) && mhdctx__allocation_refused()) {
        atomic_store(&json_fired, true);
        return NULL;
    }
    return malloc(size);
}

/* ==== the server ====================================================================== */

/* The threading modes: support_modes (test/support.c). */

struct fixture {
    support_server server;
    mhdctx_middleware *mw;
    mhdctx_token_table *tokens;
};

static void fixture_start(struct fixture *f, const support_mode *m)
{
    memset(key_value, 'v', KEY_LEN);
    memset(long_text, 'm', LONG_TEXT);
    atomic_store(&app.closed, 0);
    atomic_store(&app.off_thread, 0);
    atomic_store(&app.internal_errors, 0);
    f->tokens = mhdctx_token_table_new();
    ck_assert_ptr_nonnull(f->tokens);
    const char *roles[] = {"admin", "reader"};
    ck_assert_int_eq(mhdctx_token_table_add(f->tokens, TOKEN, USER, roles, 2), MHDCTX_OK);
    f->mw = mhdctx_middleware_new(&app_handler, NULL);
    ck_assert_ptr_nonnull(f->mw);
    ck_assert_int_eq(mhdctx_on_completed(f->mw, &app_completed, NULL), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_add_bearer_auth(f->mw, mhdctx_token_table_verify, f->tokens),
                     MHDCTX_OK);
    ck_assert_int_eq(mhdctx_add_hook(f->mw, keys_hook, NULL), MHDCTX_OK);
    struct MHD_OptionItem extra[3];
    size_t n = 0;
    if (m->pool)
        extra[n++] =
            (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)m->pool, NULL};
    extra[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION,
                                         (intptr_t)&notify_connection, NULL};
    extra[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    support_server_start(&f->server, f->mw, m->flags, extra);
}

static void fixture_stop(struct fixture *f)
{
    support_server_stop(&f->server);
    mhdctx_middleware_free(f->mw);
    mhdctx_token_table_free(f->tokens);
    ck_assert_uint_eq(atomic_load(&app.off_thread), 0);
}

/* Whatever a test leaves behind, the next one starts disarmed (CK_FORK=no runs them all
 * in one process). */
static void disarm(void)
{
    atomic_store(&mhdctx__alloc_countdown, -1);
    atomic_store(&mhdctx__map_countdown, -1);
    atomic_store(&json_faults, false);
    json_set_alloc_funcs(malloc, free);
}

/* ==== one request ===================================================================== */

struct outcome {
    int rc;           /* http_read_response() */
    http_response *r; /* owned when rc == HTTP_OK */
    bool fired;       /* the armed allocation failed */
    bool after_app;   /* ... after the application's completion callback */
    bool json;        /* ... and it was jansson's */
    uint64_t dropped; /* log lines dropped during the request */
    json_t *lines;    /* the request's log lines (owned) */
};

/* Sends the request with id @p id, @p countdown armed (-1: not armed), and waits until
 * MHD has closed the connection, so that every callback of the request has run. */
static void run_request(uint16_t port, const char *id, long countdown, struct outcome *o)
{
    memset(o, 0, sizeof *o);
    support_capture_clear();
    unsigned closed = atomic_load(&app.closed);
    uint64_t dropped = mhdctx_log_dropped();
    atomic_store(&app.countdown_seen, NOT_SEEN);
    atomic_store(&json_fired, false);
    char *req = request_text(id);
    http_conn *c;
    ck_assert_int_eq(http_connect(port, &c), HTTP_OK);
    ck_assert_int_eq(http_set_timeout_ms(c, 30000), HTTP_OK);
    atomic_store(&mhdctx__alloc_countdown, countdown);
    int rc = http_send_str(c, req);
    o->rc = rc == HTTP_OK ? http_read_response(c, &o->r) : rc;
    if (o->rc == HTTP_OK) /* the server closes after the answer (Connection: close) */
        ck_assert_int_eq(http_wait_closed(c, NULL), HTTP_OK);
    http_close(c);
    free(req);
    unsigned waited = 0;
    while (atomic_load(&app.closed) == closed && waited < 30000) {
        sleep_ms(2);
        waited += 2;
    }
    ck_assert_msg(atomic_load(&app.closed) != closed, "request %s: MHD never closed it", id);
    long left = atomic_exchange(&mhdctx__alloc_countdown, -1);
    o->fired = countdown >= 0 && left == -1;
    long seen = atomic_load(&app.countdown_seen);
    o->after_app = o->fired && seen != NOT_SEEN && seen >= 0;
    o->json = atomic_load(&json_fired);
    o->dropped = mhdctx_log_dropped() - dropped;
    json_t *all = support_capture_parsed();
    o->lines = json_array();
    ck_assert_ptr_nonnull(o->lines);
    size_t i;
    json_t *line;
    json_array_foreach(all, i, line)
    {
        const char *rid = jstr(line, "request_id");
        if (rid && strcmp(rid, id) == 0)
            json_array_append(o->lines, line);
    }
    json_decref(all);
}

static void outcome_free(struct outcome *o)
{
    http_response_free(o->r);
    json_decref(o->lines);
}

static json_t *line_with(const json_t *lines, const char *message)
{
    return support_find_line(lines, message, NULL, NULL);
}

/* The request's lines: every one carries the user and the nine keys. */
static void assert_lines_complete(const json_t *lines, const char *id)
{
    size_t i;
    json_t *line;
    json_array_foreach(lines, i, line)
    {
        ck_assert_str_eq(str_field(line, "user_id"), USER);
        ck_assert_str_eq(str_field(line, "trace_id"), TRACE_ID);
        for (int k = 0; k < N_KEYS; k++) {
            char key[8];
            snprintf(key, sizeof key, "k%d", k);
            ck_assert_str_eq(str_field(line, key), key_value);
        }
    }
    ck_assert_msg(line_with(lines, HOOK_MSG) != NULL, "%s: no hook line", id);
    size_t handler_lines = 0;
    json_array_foreach(lines, i, line)
    {
        const char *step = jstr(line, "step");
        const char *message = jstr(line, "message");
        if (step && strcmp(step, "handler") == 0) {
            handler_lines++;
            ck_assert_uint_eq(strlen(message), strlen("handler ") + LONG_TEXT);
        }
    }
    ck_assert_uint_eq(handler_lines, 1);
}

/* The access line of the request: exactly one, with @p status. */
static void assert_access_line(const json_t *lines, const char *id, unsigned status)
{
    size_t n = 0, i;
    json_t *line, *access = NULL;
    json_array_foreach(lines, i, line)
    {
        const char *m = jstr(line, "message");
        if (m && strcmp(m, ACCESS_MSG) == 0) {
            n++;
            access = line;
        }
    }
    ck_assert_msg(n == 1, "%s: %zu access lines", id, n);
    ck_assert_int_eq(json_integer_value(json_object_get(access, "status")), status);
    ck_assert_str_eq(str_field(access, "path"), "/fault/7");
    /* whatever failed before the trace was read, the line names one */
    const char *trace_id = jstr(access, "trace_id"), *span_id = jstr(access, "span_id");
    ck_assert_msg(trace_id && is_hex_id(trace_id, MHDCTX_TRACE_ID_LEN), "%s: trace_id", id);
    ck_assert_msg(span_id && is_hex_id(span_id, MHDCTX_SPAN_ID_LEN), "%s: span_id", id);
}

/* A complete, correct 200. */
static void assert_normal_answer(const http_response *r, const char *id)
{
    ck_assert_msg(r->status == 200, "%s: status %d: %s", id, r->status, r->body);
    ck_assert_uint_eq(http_header_count(r, "X-Request-Id"), 1);
    ck_assert_str_eq(http_header(r, "X-Request-Id"), id);
    json_t *body = support_body_json(r);
    ck_assert_str_eq(str_field(body, "request_id"), id);
    ck_assert_str_eq(str_field(body, "user_id"), USER);
    json_t *roles = json_object_get(body, "roles");
    ck_assert_uint_eq(json_array_size(roles), 2);
    ck_assert_str_eq(json_string_value(json_array_get(roles, 0)), "admin");
    ck_assert_str_eq(json_string_value(json_array_get(roles, 1)), "reader");
    ck_assert_int_eq(json_integer_value(json_object_get(body, "keys")), N_KEYS);
    ck_assert_str_eq(str_field(body, "route"), ROUTE);
    ck_assert_str_eq(str_field(body, "method"), LONG_METHOD);
    ck_assert_str_eq(str_field(body, "trace_id"), TRACE_ID);
    ck_assert_str_eq(str_field(body, "tracestate"), "a=1,b=2");
    json_decref(body);
}

/* A normal request, nothing armed: everything is there. */
static void assert_normal_request(uint16_t port, const char *id)
{
    struct outcome o;
    run_request(port, id, -1, &o);
    ck_assert_msg(o.rc == HTTP_OK, "%s: %s", id, http_strerror(o.rc));
    assert_normal_answer(o.r, id);
    ck_assert_uint_eq(o.dropped, 0);
    assert_lines_complete(o.lines, id);
    assert_access_line(o.lines, id, 200);
    outcome_free(&o);
}

struct walk {
    unsigned points;    /* allocation points failed in turn */
    unsigned json;      /* ... of which jansson's */
    unsigned answered;  /* 500 or 503 */
    unsigned closed;    /* clean close */
    unsigned recovered; /* complete 200: the failure was absorbed */
    unsigned after;     /* complete 200: the access line, after the response, dropped */
};

/* Walks every allocation point of the request; @p id_prefix names the requests. */
static void walk_points(uint16_t port, const char *id_prefix, struct walk *w)
{
    memset(w, 0, sizeof *w);
    for (long k = 1;; k++) {
        ck_assert_msg(k <= MAX_POINTS, "more than %d allocations in one request", MAX_POINTS);
        char id[64], next[64];
        snprintf(id, sizeof id, "%s-%ld", id_prefix, k);
        snprintf(next, sizeof next, "%s-%ld-after", id_prefix, k);
        struct outcome o;
        run_request(port, id, k - 1, &o);
        if (!o.fired) {
            /* Fewer than k allocations: every point has failed once. */
            ck_assert_msg(o.rc == HTTP_OK, "%s: %s", id, http_strerror(o.rc));
            assert_normal_answer(o.r, id);
            ck_assert_uint_eq(o.dropped, 0);
            assert_lines_complete(o.lines, id);
            assert_access_line(o.lines, id, 200);
            outcome_free(&o);
            w->points = (unsigned)(k - 1);
            return;
        }
        w->json += o.json;
        if (o.rc == HTTP_OK && (o.r->status == 500 || o.r->status == 503)) {
            w->answered++;
            ck_assert_uint_eq(http_header_count(o.r, "X-Request-Id"), 1);
            ck_assert_str_eq(http_header(o.r, "X-Request-Id"), id);
            json_t *body = support_body_json(o.r);
            ck_assert_str_eq(str_field(body, "request_id"), id);
            ck_assert_ptr_nonnull(jstr(body, "error"));
            json_decref(body);
            ck_assert_msg(!o.after_app, "%s: failed after the completion callback", id);
            assert_access_line(o.lines, id, (unsigned)o.r->status);
        } else if (o.rc == HTTP_ECLOSED || o.rc == HTTP_ERESET) {
            w->closed++;
            ck_assert_msg(!o.after_app, "%s: failed after the completion callback", id);
            assert_access_line(o.lines, id, 0);
        } else if (o.rc == HTTP_OK && o.after_app) {
            /* The response had gone out: only the access line can be lost, counted. */
            w->after++;
            assert_normal_answer(o.r, id);
            assert_lines_complete(o.lines, id);
            ck_assert_ptr_null(line_with(o.lines, ACCESS_MSG));
            ck_assert_uint_eq(o.dropped, 1);
        } else if (o.rc == HTTP_OK) {
            /* Anything but a 500/503 must be the complete answer with every line. */
            w->recovered++;
            assert_normal_answer(o.r, id);
            ck_assert_msg(o.dropped == 0, "%s: 200 but %llu log lines dropped", id,
                          (unsigned long long)o.dropped);
            assert_lines_complete(o.lines, id);
            assert_access_line(o.lines, id, 200);
        } else {
            ck_abort_msg("%s: allocation %ld failed: %s", id, k, http_strerror(o.rc));
        }
        ck_assert_msg(o.dropped <= 1, "%s: %llu lines dropped", id,
                      (unsigned long long)o.dropped);
        outcome_free(&o);
        assert_normal_request(port, next); /* the daemon still serves */
    }
}

static void print_walk(const char *what, const struct walk *w)
{
    printf("alloc_fault: %s: %u allocation points failed in turn (%u of them jansson's): "
           "%u answered 500/503, %u closed cleanly, %u recovered, %u after the response\n",
           what, w->points, w->json, w->answered, w->closed, w->recovered, w->after);
    fflush(stdout);
}

/* ==== tests =========================================================================== */

START_TEST(test_walk_library_allocations)
{
    const support_mode *m = &support_modes[_i];
    support_capture_start_info();
    struct fixture f;
    fixture_start(&f, m);
    assert_normal_request(f.server.port, "warm-up");
    struct walk w;
    walk_points(f.server.port, m->name, &w);
    fixture_stop(&f);
    support_capture_stop();
    char what[64];
    snprintf(what, sizeof what, "library, %s", m->name);
    print_walk(what, &w);
    ck_assert_uint_eq(w.json, 0);
    ck_assert_uint_ge(w.points, 10); /* the request does reach the allocating features */
    ck_assert_uint_eq(w.answered + w.closed + w.recovered + w.after, w.points);
}
END_TEST

START_TEST(test_walk_library_and_jansson_allocations)
{
    support_capture_start_info();
    struct fixture f;
    fixture_start(&f, &support_modes[0]);
    json_set_alloc_funcs(json_malloc, free);
    atomic_store(&json_faults, true);
    assert_normal_request(f.server.port, "warm-up");
    struct walk w;
    walk_points(f.server.port, "jansson", &w);
    fixture_stop(&f);
    disarm();
    support_capture_stop();
    print_walk("library and jansson, epoll", &w);
    ck_assert_uint_gt(w.json, 0);
    ck_assert_uint_eq(w.answered + w.closed + w.recovered + w.after, w.points);
}
END_TEST

/* ==== thread blocks refused ============================================================
 *
 * A thread's line storage, random generator and cache of context blocks are mappings
 * (src/thread_blocks.c) made at its first need. Each test runs its steps on a new
 * thread, which has none yet, with the first mapping refused: the library does
 * without it, and the next need makes it. */

static void run_on_new_thread(void *(*steps)(void *), void *arg)
{
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, steps, arg), 0);
    ck_assert_int_eq(pthread_join(thread, NULL), 0);
}

/* Whether the armed refusal was taken (the countdown went from 0 to -1). */
static bool refusal_taken(void)
{
    return atomic_load(&mhdctx__map_countdown) == -1;
}

static void *log_two_lines(void *unused)
{
    (void)unused;
    atomic_store(&mhdctx__map_countdown, 0);
    mhdctx_log(MHDCTX_LOG_INFO, "without line storage");
    mhdctx_log(MHDCTX_LOG_INFO, "with line storage");
    return NULL;
}

START_TEST(test_line_without_line_storage_is_dropped_and_counted)
{
    support_capture_start_info();
    uint64_t dropped = mhdctx_log_dropped();
    run_on_new_thread(log_two_lines, NULL);
    ck_assert(refusal_taken());
    ck_assert_uint_eq(mhdctx_log_dropped(), dropped + 1);
    json_t *line = support_capture_only(0); /* the second: the storage was made for it */
    ck_assert_str_eq(jstr(line, "message"), "with line storage");
    json_decref(line);
    support_capture_stop();
}
END_TEST

struct two_ids {
    char id[2][MHDCTX_UUID_LEN + 1];
    mhdctx_error rc[2];
};

static void *draw_two_ids(void *arg)
{
    struct two_ids *ids = arg;
    atomic_store(&mhdctx__map_countdown, 0);
    ids->rc[0] = mhdctx_uuid_v4(ids->id[0]); /* the kernel's bytes */
    ids->rc[1] = mhdctx_uuid_v4(ids->id[1]); /* the thread's generator */
    return NULL;
}

START_TEST(test_ids_without_a_generator_are_still_random)
{
    struct two_ids ids;
    run_on_new_thread(draw_two_ids, &ids);
    ck_assert(refusal_taken());
    ck_assert_int_eq(ids.rc[0], MHDCTX_OK);
    ck_assert_int_eq(ids.rc[1], MHDCTX_OK);
    ck_assert_msg(is_uuid_v4(ids.id[0]) && is_uuid_v4(ids.id[1]), "%s %s", ids.id[0],
                  ids.id[1]);
    ck_assert_str_ne(ids.id[0], ids.id[1]);
}
END_TEST

static void *free_a_context(void *made)
{
    mhdctx_context *ctx = mhdctx_context_new(); /* its id makes the generator first */
    *(bool *)made = ctx != NULL;
    atomic_store(&mhdctx__map_countdown, 0);
    mhdctx_context_unref(ctx); /* the block would join the thread's new cache */
    return NULL;
}

START_TEST(test_context_freed_without_a_block_cache)
{
    long live = atomic_load(&mhdctx__alloc_live);
    bool made = false;
    run_on_new_thread(free_a_context, &made);
    ck_assert(made);
    /* Under ASan and TSan blocks are never cached: no cache is asked for. */
    ck_assert(refusal_taken() == mhdctx__block_cache_on);
    ck_assert_int_eq(atomic_load(&mhdctx__alloc_live), live); /* freed, not kept */
}
END_TEST

static Suite *alloc_fault_suite(void)
{
    Suite *suite = suite_create("alloc_fault");
    TCase *tc = support_tcase(suite, "walk", TEST_TIMEOUT_S, disarm, disarm);
    tcase_add_loop_test(tc, test_walk_library_allocations, 0, (int)SUPPORT_N_MODES);
    tcase_add_test(tc, test_walk_library_and_jansson_allocations);
    tc = support_tcase(suite, "thread blocks refused", 30, disarm, disarm);
    tcase_add_test(tc, test_line_without_line_storage_is_dropped_and_counted);
    tcase_add_test(tc, test_ids_without_a_generator_are_still_random);
    tcase_add_test(tc, test_context_freed_without_a_block_cache);
    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(alloc_fault_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
