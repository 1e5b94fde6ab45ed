/*
 * check_middleware.c - the MHD glue, end to end: a real daemon per test, a raw-socket
 * client (http_client.c), and every log line captured and parsed with jansson.
 *
 * Each test starts its daemon itself (never in an unchecked fixture, so a failure to
 * start is a test failure), stops it, frees the middleware and restores the log sink.
 * Assertions run on the test thread only: MHD's threads record what they see in a
 * struct app, under its lock, and the test checks it afterwards.
 */
#include "internal.h" /* first: its _GNU_SOURCE (strptime, timegm) */
#include "child.h"
#include "http_client.h"
#include "mhdctx.h"
#include "support.h"

#include <check.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TEST_TIMEOUT_S 30
#define ACCESS_MSG     "request completed"
#define HANDLER_MSG    "handler"
#define COMPLETED_MSG  "app completed"
#define BIG_BODY_BYTES (64u << 20) /* the /big route's answer: more than loopback buffers */

/* ==== captured log lines (support.h), as a JSON array ============================== */

static size_t count_lines(const json_t *all, const char *message, const char *key,
                          const char *value)
{
    size_t i, n = 0;
    json_t *line;
    json_array_foreach(all, i, line)
    {
        const char *m = jstr(line, "message");
        if (m == NULL || strcmp(m, message) != 0)
            continue;
        const char *v = key ? jstr(line, key) : NULL;
        if (key == NULL || (v && strcmp(v, value) == 0))
            n++;
    }
    return n;
}

/* Index of the first line with @p message and request_id @p id, or -1. */
static long line_index(const json_t *all, const char *message, const char *id)
{
    size_t i;
    json_t *line;
    json_array_foreach(all, i, line)
    {
        const char *m = jstr(line, "message");
        const char *r = jstr(line, "request_id");
        if (m && r && strcmp(m, message) == 0 && strcmp(r, id) == 0)
            return (long)i;
    }
    return -1;
}

/* Checks the fields every access line has. */
static void assert_access_line(const json_t *line, const char *method, const char *path,
                               unsigned status, const char *level, const char *outcome)
{
    ck_assert_ptr_nonnull(line);
    ck_assert_str_eq(jstr(line, "message"), ACCESS_MSG);
    ck_assert_str_eq(jstr(line, "method"), method);
    ck_assert_str_eq(jstr(line, "path"), path);
    ck_assert(json_is_integer(json_object_get(line, "status")));
    ck_assert_int_eq(json_integer_value(json_object_get(line, "status")), status);
    ck_assert_str_eq(jstr(line, "level"), level);
    ck_assert_str_eq(jstr(line, "outcome"), outcome);
    json_t *duration = json_object_get(line, "duration_ms");
    ck_assert_msg(json_is_number(duration), "duration_ms is not a number");
    ck_assert_double_ge(json_number_value(duration), 0.0);
    ck_assert_ptr_nonnull(jstr(line, "request_id"));
    ck_assert_ptr_nonnull(jstr(line, "time"));
}

/* ==== the application: handler, completion callback, hooks =========================== */

#define STATE_MAGIC     0x5ec7ab1eu
#define MAX_SEEN        512
#define MAX_REFS        16
#define MAX_LEVEL_CALLS 32

/* The handler's per-request state, in its own req_cls slot; freed by app_completed. */
struct req_state {
    unsigned magic;
    mhdctx_context *ctx; /* current context at the first call */
    unsigned calls;
    size_t bytes;
    bool same_ctx;
};

/* What the handler saw at its first call for one request. */
struct seen {
    char id[MHDCTX_REQUEST_ID_LIMIT + 1];
    char method[16];
    char path[128];
    char user_id[64];
    bool has_user;
    mhdctx_id_verdict verdict;
};

/* What the application's completion callback saw for one request. */
struct completion {
    char id[MHDCTX_REQUEST_ID_LIMIT + 1];
    bool current_ok;    /* mhdctx_current() was a context */
    bool slot_null;     /* the handler's slot was NULL (the handler never ran) */
    bool slot_ok;       /* the slot held the handler's state for this very context */
    bool access_before; /* the access line was already written (must not be) */
    unsigned calls;     /* handler calls recorded in the state */
    enum MHD_RequestTerminationCode toe;
};

struct level_call {
    char path[64];
    unsigned status;
    mhdctx_log_level suggested;
};

struct app {
    pthread_mutex_t lock;
    struct seen seen[MAX_SEEN];
    size_t n_seen;
    struct completion done[MAX_SEEN];
    size_t n_done;
    size_t overflow;
    char order[256]; /* hooks and the handler append a letter each */
    size_t order_len;
    bool keep_refs; /* the handler keeps a reference to every context */
    mhdctx_context *refs[MAX_REFS];
    size_t n_refs;
    struct level_call levels[MAX_LEVEL_CALLS];
    size_t n_levels;
    struct MHD_Response *shared; /* created once, queued by many requests */
    atomic_uint handler_calls;
    atomic_uint first_calls;
    atomic_uint slot_violations; /* the slot did not start NULL */
    atomic_uint ctx_missing;     /* mhdctx_current() NULL or wrong in a callback */
    atomic_uint id_mismatch;     /* /c/<id>: the context's id is not <id> */
    atomic_uint empty_method;    /* a hook saw no method yet */
    atomic_uint conn_events;     /* MHD connection notifications received */
    atomic_uint stale_current;   /* a context was current outside any request callback */
};

static char shared_body[] = "shared not found page";
static char plain_body[] = "plain";

static struct app *app_new(void)
{
    struct app *app = calloc(1, sizeof *app);
    ck_assert_ptr_nonnull(app);
    ck_assert_int_eq(pthread_mutex_init(&app->lock, NULL), 0);
    app->shared = MHD_create_response_from_buffer_with_free_callback_cls(
        strlen(shared_body), shared_body, NULL, NULL);
    ck_assert_ptr_nonnull(app->shared);
    ck_assert_int_eq(MHD_add_response_header(app->shared, "Content-Type", "text/plain"),
                     MHD_YES);
    return app;
}

static void app_free(struct app *app)
{
    for (size_t i = 0; i < app->n_refs; i++)
        mhdctx_context_unref(app->refs[i]);
    MHD_destroy_response(app->shared);
    pthread_mutex_destroy(&app->lock);
    free(app);
}

static void app_order_append(struct app *app, char c)
{
    pthread_mutex_lock(&app->lock);
    if (app->order_len + 1 < sizeof app->order)
        app->order[app->order_len++] = c;
    app->order[app->order_len] = '\0';
    pthread_mutex_unlock(&app->lock);
}

static void app_order_reset(struct app *app)
{
    pthread_mutex_lock(&app->lock);
    app->order_len = 0;
    app->order[0] = '\0';
    pthread_mutex_unlock(&app->lock);
}

static const struct seen *app_seen(const struct app *app, const char *id)
{
    for (size_t i = 0; i < app->n_seen; i++) {
        if (strcmp(app->seen[i].id, id) == 0)
            return &app->seen[i];
    }
    return NULL;
}

static const struct completion *app_done(const struct app *app, const char *id)
{
    for (size_t i = 0; i < app->n_done; i++) {
        if (strcmp(app->done[i].id, id) == 0)
            return &app->done[i];
    }
    return NULL;
}

static void record_first_call(struct app *app, mhdctx_context *ctx)
{
    pthread_mutex_lock(&app->lock);
    if (app->n_seen < MAX_SEEN) {
        struct seen *s = &app->seen[app->n_seen++];
        copy_str(s->id, sizeof s->id, mhdctx_request_id(ctx));
        copy_str(s->method, sizeof s->method, mhdctx_method(ctx));
        copy_str(s->path, sizeof s->path, mhdctx_path(ctx));
        s->has_user = mhdctx_copy_user_id(ctx, s->user_id, sizeof s->user_id) == MHDCTX_OK;
        s->verdict = mhdctx_request_id_verdict(ctx);
    } else {
        app->overflow++;
    }
    if (app->keep_refs && app->n_refs < MAX_REFS)
        app->refs[app->n_refs++] = mhdctx_context_ref(ctx);
    pthread_mutex_unlock(&app->lock);
}

/* mhdctx_run()'s function on /own-context: answers inside a context of the app's own. */
static void respond_from_own_context(void *connection)
{
    mhdctx_respond_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, "from_own_context");
}

/* The final call: answers according to the path. */
/* /answer-late: tells the test it has the request, waits until the test is stopping the
 * server, and answers 200 ms later, while MHD_stop_daemon() runs. */
static atomic_bool late_handler_in, late_stop_called;

static enum MHD_Result answer_late(struct MHD_Connection *connection)
{
    atomic_store(&late_handler_in, true);
    for (int i = 0; i < 2000 && !atomic_load(&late_stop_called); i++)
        sleep_ms(5);
    sleep_ms(200);
    return mhdctx_respond(connection, MHD_HTTP_OK, "text/plain", "late", 4);
}

static enum MHD_Result app_route(struct app *app, struct MHD_Connection *connection,
                                 const char *url, mhdctx_context *ctx,
                                 const struct req_state *st)
{
    const char *id = mhdctx_request_id(ctx);
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_STR("url", url)), HANDLER_MSG);
    if (strncmp(url, "/c/", 3) == 0) {
        if (strcmp(url + 3, id) != 0)
            atomic_fetch_add(&app->id_mismatch, 1);
        return mhdctx_respond(connection, MHD_HTTP_OK, "text/plain", id, strlen(id));
    }
    if (strncmp(url, "/s/", 3) == 0) {
        unsigned status = (unsigned)strtoul(url + 3, NULL, 10);
        return mhdctx_respond(connection, status, "text/plain", "status", 6);
    }
    if (strcmp(url, "/j") == 0) {
        char user[MHDCTX_MAX_USER_ID_LEN + 1];
        bool named = mhdctx_copy_user_id(ctx, user, sizeof user) == MHDCTX_OK;
        json_t *body =
            json_pack("{s:s, s:o, s:o, s:b}", "request_id", id, "user_id",
                      named ? json_string(user) : json_null(), "roles", mhdctx_roles_json(ctx),
                      "admin", mhdctx_has_role(ctx, "admin"));
        return mhdctx_respond_json_new(connection, MHD_HTTP_OK, body);
    }
    if (strcmp(url, "/e") == 0)
        return mhdctx_respond_error(connection, MHD_HTTP_BAD_REQUEST, "bad_request");
    if (strcmp(url, "/untyped") == 0) /* a type from a client's empty header */
        return mhdctx_respond(connection, MHD_HTTP_OK, "", "untyped", 7);
    if (strcmp(url, "/own-context") == 0) { /* a response the hooks must not hold back */
        mhdctx_context *own = mhdctx_context_new();
        mhdctx_run(own, respond_from_own_context, connection);
        mhdctx_context_unref(own);
        return MHD_YES;
    }
    if (strcmp(url, "/shared") == 0)
        return MHD_queue_response(connection, MHD_HTTP_NOT_FOUND, app->shared);
    if (strcmp(url, "/big") == 0) {
        static char zeros[BIG_BODY_BYTES]; /* in .bss: never written */
        struct MHD_Response *response = MHD_create_response_from_buffer_with_free_callback_cls(
            sizeof zeros, zeros, NULL, NULL);
        if (response == NULL)
            return MHD_NO;
        enum MHD_Result result = MHD_queue_response(connection, MHD_HTTP_OK, response);
        MHD_destroy_response(response);
        return result;
    }
    if (strcmp(url, "/answer-late") == 0) /* answers once the server is stopping */
        return answer_late(connection);
    if (strcmp(url, "/icy") == 0) { /* a Shoutcast answer: "ICY 200 OK" */
        struct MHD_Response *response = MHD_create_response_from_buffer_with_free_callback_cls(
            strlen(plain_body), plain_body, NULL, NULL);
        if (response == NULL)
            return MHD_NO;
        enum MHD_Result result =
            MHD_queue_response(connection, MHD_HTTP_OK | MHD_ICY_FLAG, response);
        MHD_destroy_response(response);
        return result;
    }
    if (strcmp(url, "/plain") == 0) {
        struct MHD_Response *response = MHD_create_response_from_buffer_with_free_callback_cls(
            strlen(plain_body), plain_body, NULL, NULL);
        if (response == NULL)
            return MHD_NO;
        enum MHD_Result result = MHD_queue_response(connection, MHD_HTTP_CREATED, response);
        MHD_destroy_response(response);
        return result;
    }
    if (strcmp(url, "/body") == 0) {
        json_t *body =
            json_pack("{s:i, s:I, s:b, s:s}", "calls", (int)st->calls, "bytes",
                      (json_int_t)st->bytes, "same_ctx", st->same_ctx, "request_id", id);
        return mhdctx_respond_json_new(connection, MHD_HTTP_OK, body);
    }
    return mhdctx_respond(connection, MHD_HTTP_OK, "text/plain", id, strlen(id));
}

static enum MHD_Result app_handler(void *cls, struct MHD_Connection *connection,
                                   const char *url, const char *method, const char *version,
                                   const char *upload_data, size_t *upload_data_size,
                                   void **req_cls)
{
    (void)method;
    (void)version;
    (void)upload_data;
    struct app *app = cls;
    mhdctx_context *ctx = mhdctx_current();
    atomic_fetch_add(&app->handler_calls, 1);
    if (ctx == NULL) {
        atomic_fetch_add(&app->ctx_missing, 1);
        return MHD_NO;
    }
    struct req_state *st = *req_cls;
    if (st == NULL) { /* first call */
        st = calloc(1, sizeof *st);
        if (st == NULL)
            return MHD_NO;
        *st =
            (struct req_state){.magic = STATE_MAGIC, .ctx = ctx, .calls = 1, .same_ctx = true};
        *req_cls = st;
        atomic_fetch_add(&app->first_calls, 1);
        record_first_call(app, ctx);
        app_order_append(app, 'H');
        return MHD_YES;
    }
    if (st->magic != STATE_MAGIC) { /* the slot did not start NULL: not ours */
        atomic_fetch_add(&app->slot_violations, 1);
        return MHD_NO;
    }
    st->calls++;
    if (st->ctx != ctx)
        st->same_ctx = false;
    if (*upload_data_size > 0) {
        st->bytes += *upload_data_size;
        *upload_data_size = 0;
        return MHD_YES;
    }
    return app_route(app, connection, url, ctx, st);
}

static void app_completed(void *cls, struct MHD_Connection *connection, void **req_cls,
                          enum MHD_RequestTerminationCode toe)
{
    (void)connection;
    struct app *app = cls;
    mhdctx_context *ctx = mhdctx_current();
    struct completion rec;
    memset(&rec, 0, sizeof rec);
    rec.toe = toe;
    rec.current_ok = ctx != NULL;
    copy_str(rec.id, sizeof rec.id, mhdctx_request_id(ctx));
    struct req_state *st = req_cls ? *req_cls : NULL;
    rec.slot_null = st == NULL;
    if (st) {
        rec.slot_ok = st->magic == STATE_MAGIC && st->ctx == ctx;
        rec.calls = st->calls;
    }
    rec.access_before = ctx && support_capture_count(ACCESS_MSG, rec.id) > 0;
    mhdctx_log_info(COMPLETED_MSG);
    pthread_mutex_lock(&app->lock);
    if (app->n_done < MAX_SEEN)
        app->done[app->n_done++] = rec;
    else
        app->overflow++;
    pthread_mutex_unlock(&app->lock);
    if (st && st->magic == STATE_MAGIC) {
        free(st);
        *req_cls = NULL;
    }
}

/* A middleware in front of app_handler, with app_completed registered. */
static mhdctx_middleware *app_middleware(struct app *app)
{
    mhdctx_middleware *mw = mhdctx_middleware_new(&app_handler, app);
    ck_assert_ptr_nonnull(mw);
    ck_assert_int_eq(mhdctx_on_completed(mw, &app_completed, app), MHDCTX_OK);
    return mw;
}

/* Hooks: each appends its tag; hook '2' answers /deny with 403 and fails /fail. */
struct hook_spec {
    struct app *app;
    char tag;
};

static mhdctx_hook_result order_hook(struct MHD_Connection *connection, mhdctx_context *ctx,
                                     void *cls)
{
    const struct hook_spec *spec = cls;
    app_order_append(spec->app, spec->tag);
    if (ctx == NULL || ctx != mhdctx_current())
        atomic_fetch_add(&spec->app->ctx_missing, 1);
    if (ctx && mhdctx_method(ctx)[0] == '\0')
        atomic_fetch_add(&spec->app->empty_method, 1);
    if (spec->tag == '2' && ctx) {
        if (strcmp(mhdctx_path(ctx), "/deny") == 0)
            return mhdctx_respond_error(connection, MHD_HTTP_FORBIDDEN, "forbidden") == MHD_YES
                       ? MHDCTX_HOOK_DONE
                       : MHDCTX_HOOK_FAIL;
        if (strcmp(mhdctx_path(ctx), "/fail") == 0)
            return MHDCTX_HOOK_FAIL;
        if (strcmp(mhdctx_path(ctx), "/fail-answered") == 0) { /* an answer, then FAIL */
            mhdctx_respond_error(connection, MHD_HTTP_UNAUTHORIZED, "unauthorized");
            return MHDCTX_HOOK_FAIL;
        }
    }
    return MHDCTX_HOOK_CONTINUE;
}

/* ==== the server ===================================================================== */

/* The threading modes: support_modes (test/support.c). */
#define MODE_EPOLL 0

/* MHD calls this on its own threads outside any request callback (a connection opens or
 * closes, the latter after the last completion callback): no context may be current. */
static void notify_connection(void *cls, struct MHD_Connection *connection,
                              void **socket_context, enum MHD_ConnectionNotificationCode code)
{
    (void)connection;
    (void)socket_context;
    (void)code;
    struct app *app = cls;
    atomic_fetch_add(&app->conn_events, 1);
    if (mhdctx_current() != NULL)
        atomic_fetch_add(&app->stale_current, 1);
}

/* @p extra_flags: added to the mode's flags (MHD_USE_ERROR_LOG). @p watch (may be
 * NULL): the app that notify_connection reports to. */
static void server_start_ex(support_server *s, mhdctx_middleware *mw, unsigned mode,
                            unsigned extra_flags, struct app *watch)
{
    ck_assert_uint_lt(mode, SUPPORT_N_MODES);
    const support_mode *m = &support_modes[mode];
    const unsigned flags = m->flags | extra_flags;
    struct MHD_OptionItem extra[3];
    size_t n = 0;
    if (m->pool)
        extra[n++] =
            (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)m->pool, NULL};
    if (watch)
        extra[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION,
                                             (intptr_t)&notify_connection, watch};
    extra[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    support_server_start(s, mw, flags, extra);
}

static void server_start(support_server *s, mhdctx_middleware *mw, unsigned mode)
{
    server_start_ex(s, mw, mode, 0, NULL);
}

/* What most tests set up the same way: the log captured at info, an app and its
 * middleware. fixture_open() does only that; the test configures f.mw and starts f.s
 * itself (in the test, so that a failure to start fails the test), stops f.s and checks
 * the app before fixture_close() frees the middleware and the app and restores the log
 * sink. It saves every test repeating the same three lines at each end. */
struct fixture {
    struct app *app;
    mhdctx_middleware *mw;
    support_server s;
};

static void fixture_open(struct fixture *f)
{
    support_capture_start_info();
    f->app = app_new();
    f->mw = app_middleware(f->app);
}

static void fixture_close(struct fixture *f)
{
    mhdctx_middleware_free(f->mw);
    app_free(f->app);
    support_capture_stop();
}

/* ==== requests ======================================================================= */

/* A POST of @p len bytes ('a'..'z') on a new connection; owned response. */
static http_response *do_post(uint16_t port, const char *path, const char *headers, size_t len)
{
    char *head = str_fmt("POST %s HTTP/1.1\r\nHost: test\r\nContent-Type: "
                         "application/octet-stream\r\nContent-Length: %zu\r\n%sConnection: "
                         "close\r\n\r\n",
                         path, len, headers ? headers : "");
    size_t head_len = strlen(head);
    char *req = malloc(head_len + len);
    ck_assert_ptr_nonnull(req);
    memcpy(req, head, head_len);
    for (size_t i = 0; i < len; i++)
        req[head_len + i] = (char)('a' + i % 26);
    http_response *r = NULL;
    int rc = http_roundtrip(port, req, head_len + len, &r);
    free(req);
    free(head);
    ck_assert_msg(rc == HTTP_OK, "POST %s: %s", path, http_strerror(rc));
    return r;
}

/* ==== tests: request id and context =================================================== */

/* Looped over the threading modes. */
START_TEST(test_current_context)
{
    const unsigned mode = (unsigned)_i;
    const char *id = "Az09._~:@+/=-req";
    struct fixture f;
    fixture_open(&f);
    server_start_ex(&f.s, f.mw, mode, 0, f.app);

    ck_assert_ptr_null(mhdctx_current());
    char *hdr = str_fmt("X-Request-Id: %s\r\n", id);
    http_response *r = support_http_get(f.s.port, "/hello?x=1", hdr);
    free(hdr);
    ck_assert_int_eq(r->status, 200);
    ck_assert_uint_eq(http_header_count(r, "X-Request-Id"), 1);
    ck_assert_str_eq(http_header(r, "x-request-id"), id);
    ck_assert_str_eq(r->body, id);
    http_response_free(r);
    ck_assert_ptr_null(mhdctx_current()); /* the test thread never has a context */

    ck_assert(support_capture_wait(ACCESS_MSG, 1, 5000));
    support_server_stop(&f.s);

    ck_assert_uint_eq(atomic_load(&f.app->ctx_missing), 0);
    /* started and closed; the close comes after the completion callback */
    ck_assert_uint_ge(atomic_load(&f.app->conn_events), 2);
    ck_assert_uint_eq(atomic_load(&f.app->stale_current), 0);
    ck_assert_uint_eq(f.app->n_seen, 1);
    const struct seen *seen = &f.app->seen[0];
    ck_assert_str_eq(seen->id, id);
    ck_assert_str_eq(seen->method, "GET");
    ck_assert_str_eq(seen->path, "/hello");
    ck_assert_int_eq(seen->verdict, MHDCTX_ID_VALID);
    ck_assert(!seen->has_user);

    json_t *all = support_capture_parsed();
    json_t *access = support_find_line(all, ACCESS_MSG, "request_id", id);
    assert_access_line(access, "GET", "/hello", 200, "info", "completed");
    ck_assert_ptr_null(json_object_get(access, "request_id_replaced"));
    ck_assert(json_is_null(json_object_get(access, "user_id")));
    ck_assert_ptr_nonnull(support_find_line(all, HANDLER_MSG, "request_id", id));
    ck_assert_uint_eq(count_lines(all, ACCESS_MSG, NULL, NULL), 1);
    json_decref(all);

    fixture_close(&f);
}
END_TEST

/* The handler's own req_cls slot: NULL at the first call, then preserved, with one
 * context for every call of a request whose body arrives in pieces. */
START_TEST(test_slot_preserved_across_body_calls)
{
    const size_t body_len = 200 * 1024;
    struct fixture f;
    fixture_open(&f);
    server_start(&f.s, f.mw, MODE_EPOLL);

    http_response *r = do_post(f.s.port, "/body", "X-Request-Id: body-1\r\n", body_len);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(http_header(r, "X-Request-Id"), "body-1");
    json_t *body = support_body_json(r);
    ck_assert_int_eq(json_integer_value(json_object_get(body, "bytes")), (json_int_t)body_len);
    /* first call + at least two data calls (200 KB never fits MHD's buffer) + final */
    ck_assert_int_ge(json_integer_value(json_object_get(body, "calls")), 4);
    ck_assert(json_is_true(json_object_get(body, "same_ctx")));
    ck_assert_str_eq(jstr(body, "request_id"), "body-1");
    json_decref(body);
    http_response_free(r);

    ck_assert(support_capture_wait(ACCESS_MSG, 1, 5000));
    support_server_stop(&f.s);
    ck_assert_uint_eq(atomic_load(&f.app->slot_violations), 0);
    ck_assert_uint_eq(atomic_load(&f.app->ctx_missing), 0);
    ck_assert_uint_eq(atomic_load(&f.app->first_calls), 1);
    ck_assert_uint_eq(f.app->n_done, 1);
    ck_assert(f.app->done[0].slot_ok);
    ck_assert_uint_eq(f.app->done[0].calls, atomic_load(&f.app->handler_calls));

    json_t *all = support_capture_parsed();
    assert_access_line(support_find_line(all, ACCESS_MSG, "request_id", "body-1"), "POST",
                       "/body", 200, "info", "completed");
    json_decref(all);
    fixture_close(&f);
}
END_TEST

struct hostile_case {
    const char *headers; /* the id header line(s) */
    const char *marker;  /* a substring of the raw value, NULL for an empty one */
    const char *reason;  /* expected request_id_replaced */
    const char *path;    /* which response helper answers */
};

/* Ids that must never be used, echoed or logged. */
START_TEST(test_hostile_request_ids)
{
    char long_id[MHDCTX_REQUEST_ID_DEFAULT_MAX + 16];
    memcpy(long_id, "zqTOOLONG", 9);
    memset(long_id + 9, 'a', sizeof long_id - 10);
    long_id[sizeof long_id - 1] = '\0';
    char *long_hdr = str_fmt("X-Request-Id: %s\r\n", long_id);
    const struct hostile_case cases[] = {
        {long_hdr, "zqTOOLONG", "too_long", "/r"},
        {"X-Request-Id:\r\n", NULL, "empty", "/j"},
        {"X-Request-Id: zqSPACE abc\r\n", "zqSPACE", "invalid_character", "/e"},
        {"X-Request-Id: zqQUOTE\"abc\r\n", "zqQUOTE", "invalid_character", "/r"},
        {"X-Request-Id: zqCOMMENT*/abc\r\n", "zqCOMMENT", "invalid_character", "/j"},
        {"X-Request-Id: zqUTF8\xc3\xa9\xff\xfe\r\n", "zqUTF8", "invalid_character", "/e"},
        {"X-Request-Id: zqTAB\tabc\r\n", "zqTAB", "invalid_character", "/r"},
        {"X-Request-Id: zqSEMI;abc\r\n", "zqSEMI", "invalid_character", "/r"},
        {"X-Request-Id: zqDUPone\r\nX-Request-Id: zqDUPtwo\r\n", "zqDUP", "multiple", "/r"},
        {"X-Request-Id: zqCASEone\r\nx-request-id: zqCASEtwo\r\n", "zqCASE", "multiple", "/j"},
    };
    const size_t n_cases = sizeof cases / sizeof cases[0];
    char ids[sizeof cases / sizeof cases[0]][MHDCTX_UUID_LEN + 1];

    struct fixture f;
    fixture_open(&f);
    server_start(&f.s, f.mw, MODE_EPOLL);

    for (size_t i = 0; i < n_cases; i++) {
        const struct hostile_case *c = &cases[i];
        http_response *r = support_http_get(f.s.port, c->path, c->headers);
        ck_assert_int_eq(r->status, strcmp(c->path, "/e") == 0 ? 400 : 200);
        ck_assert_uint_eq(http_header_count(r, "X-Request-Id"), 1);
        const char *id = http_header(r, "X-Request-Id");
        ck_assert_msg(is_uuid_v4(id), "case %zu: response id %s is not a UUID v4", i, id);
        if (c->marker)
            ck_assert_msg(strstr(id, c->marker) == NULL, "case %zu echoed the raw id", i);
        copy_str(ids[i], sizeof ids[i], id);
        if (strcmp(c->path, "/r") == 0) {
            ck_assert_str_eq(r->body, id);
        } else {
            json_t *body = support_body_json(r);
            ck_assert_str_eq(jstr(body, "request_id"), id);
            json_decref(body);
        }
        if (c->marker)
            ck_assert_msg(strstr(r->body, c->marker) == NULL, "case %zu: raw id in body", i);
        http_response_free(r);
    }
    ck_assert(support_capture_wait(ACCESS_MSG, n_cases, 5000));
    support_server_stop(&f.s);

    json_t *all = support_capture_parsed();
    for (size_t i = 0; i < n_cases; i++) {
        json_t *access = support_find_line(all, ACCESS_MSG, "request_id", ids[i]);
        ck_assert_msg(access != NULL, "case %zu: no access line for %s", i, ids[i]);
        ck_assert_str_eq(jstr(access, "request_id_replaced"), cases[i].reason);
        ck_assert_ptr_nonnull(support_find_line(all, HANDLER_MSG, "request_id", ids[i]));
        const struct seen *seen = app_seen(f.app, ids[i]);
        ck_assert_ptr_nonnull(seen);
        ck_assert_int_ne(seen->verdict, MHDCTX_ID_VALID);
        ck_assert_int_ne(seen->verdict, MHDCTX_ID_MISSING);
        if (cases[i].marker)
            ck_assert_msg(!support_capture_contains(cases[i].marker), "case %zu: raw id logged",
                          i);
    }
    ck_assert(!support_capture_contains("zq"));
    json_decref(all);

    fixture_close(&f);
    free(long_hdr);
}
END_TEST

/* The boundaries of a valid id: all allowed characters, exactly the maximum length. */
START_TEST(test_valid_request_id_boundaries)
{
    char max_id[MHDCTX_REQUEST_ID_DEFAULT_MAX + 1];
    memset(max_id, 'm', MHDCTX_REQUEST_ID_DEFAULT_MAX);
    max_id[MHDCTX_REQUEST_ID_DEFAULT_MAX] = '\0';
    struct fixture f;
    fixture_open(&f);
    server_start(&f.s, f.mw, MODE_EPOLL);

    char *hdr = str_fmt("X-Request-Id: %s\r\n", max_id);
    http_response *r = support_http_get(f.s.port, "/r", hdr);
    free(hdr);
    ck_assert_str_eq(http_header(r, "X-Request-Id"), max_id);
    http_response_free(r);
    /* leading optional whitespace is not part of the value (MHD strips it) */
    r = support_http_get(f.s.port, "/r", "X-Request-Id: \t  padded-id\r\n");
    ck_assert_str_eq(http_header(r, "X-Request-Id"), "padded-id");
    http_response_free(r);
    /* trailing whitespace: MHD 0.9.75 keeps it in the value; RFC 9110 says it is not
     * part of it, so the library trims it and the id is used */
    r = support_http_get(f.s.port, "/r", "X-Request-Id: trailing-id \t \r\n");
    ck_assert_str_eq(http_header(r, "X-Request-Id"), "trailing-id");
    http_response_free(r);
    /* an empty content type: answered without one (MHD refuses an empty value) */
    r = support_http_get(f.s.port, "/untyped", "X-Request-Id: untyped-id\r\n");
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(r->body, "untyped");
    ck_assert_ptr_null(http_header(r, "Content-Type"));
    ck_assert_str_eq(http_header(r, "X-Request-Id"), "untyped-id");
    http_response_free(r);
    /* no header: a fresh UUID, nothing reported */
    r = support_http_get(f.s.port, "/r", NULL);
    const char *generated = http_header(r, "X-Request-Id");
    ck_assert(is_uuid_v4(generated));
    char gen[MHDCTX_UUID_LEN + 1];
    copy_str(gen, sizeof gen, generated);
    http_response_free(r);

    ck_assert(support_capture_wait(ACCESS_MSG, 4, 5000));
    support_server_stop(&f.s);
    json_t *all = support_capture_parsed();
    json_t *line = support_find_line(all, ACCESS_MSG, "request_id", "trailing-id");
    ck_assert_ptr_nonnull(line);
    ck_assert_ptr_null(json_object_get(line, "request_id_replaced"));
    line = support_find_line(all, ACCESS_MSG, "request_id", max_id);
    ck_assert_ptr_nonnull(line);
    ck_assert_ptr_null(json_object_get(line, "request_id_replaced"));
    line = support_find_line(all, ACCESS_MSG, "request_id", gen);
    ck_assert_ptr_nonnull(line);
    ck_assert_ptr_null(json_object_get(line, "request_id_replaced"));
    ck_assert_int_eq(app_seen(f.app, gen)->verdict, MHDCTX_ID_MISSING);
    json_decref(all);
    fixture_close(&f);
}
END_TEST

/* The header-name comparison against strncasecmp() in the C locale (the tests' locale:
 * ASCII case only), for every pair of bytes at the start, the middle and the end of a
 * name, past a NUL, and with @n shorter than the names. */
static void expect_case_equal_as_strncasecmp(const char *a, const char *b, size_t n)
{
    bool expected = strncasecmp(a, b, n) == 0;
    if (mhdctx__ascii_case_equal_n(a, b, n) != expected)
        ck_abort_msg("\"%s\" and \"%s\" (n %zu): expected %s", a, b, n,
                     expected ? "equal" : "different");
}

START_TEST(test_header_name_comparison_is_strncasecmp_in_c)
{
    static const size_t positions[] = {0, 5, 11};
    for (size_t p = 0; p < sizeof positions / sizeof *positions; p++) {
        for (unsigned x = 0; x < 256; x++) {
            for (unsigned y = 0; y < 256; y++) {
                char a[] = "X-Request-Id", b[] = "x-request-id";
                a[positions[p]] = (char)x;
                b[positions[p]] = (char)y;
                expect_case_equal_as_strncasecmp(a, b, sizeof a - 1);
                expect_case_equal_as_strncasecmp(a, b, sizeof a + 4); /* up to the NUL */
                expect_case_equal_as_strncasecmp(a, b, positions[p]); /* before it */
            }
        }
    }
    expect_case_equal_as_strncasecmp("X-Request-Id", "X-Request-Id-2", 20);
    expect_case_equal_as_strncasecmp("X-Request-Id", "X-Request-Id-2", 12);
    expect_case_equal_as_strncasecmp("", "", 5);
    expect_case_equal_as_strncasecmp("a", "", 5);
    ck_assert(mhdctx__ascii_case_equal("traceparent", "TraceParent"));
    ck_assert(!mhdctx__ascii_case_equal("traceparent", "traceparents"));
}
END_TEST

/* Header names are ASCII, matched whatever the process's locale. In a Turkish one
 * strcasecmp() held "x-request-id" and "X-Request-Id" different ('I' does not lower to
 * 'i' there), and an id sent in lower case (as HTTP/2 proxies send names) was replaced. */
START_TEST(test_id_header_found_under_a_turkish_locale)
{
    char dir[32];
    test_turkish_ctype_begin(dir);
    struct fixture f;
    fixture_open(&f);
    server_start(&f.s, f.mw, MODE_EPOLL);
    static const char *const sent[] = {"x-request-id: tr-lower", "X-REQUEST-ID: tr-upper",
                                       "x-rEqUeSt-iD: tr-mixed"};
    for (size_t i = 0; i < sizeof sent / sizeof *sent; i++) {
        char *hdr = str_fmt("%s\r\n", sent[i]);
        http_response *r = support_http_get(f.s.port, "/r", hdr);
        free(hdr);
        ck_assert_str_eq(http_header(r, "X-Request-Id"), strchr(sent[i], ' ') + 1);
        http_response_free(r);
    }
    ck_assert(support_capture_wait(ACCESS_MSG, 3, 5000));
    support_server_stop(&f.s);
    fixture_close(&f);
    test_ctype_locale_end(dir);
}
END_TEST

static mhdctx_log_level level_same(const mhdctx_context *ctx, unsigned status,
                                   mhdctx_log_level suggested, void *cls)
{
    (void)ctx;
    (void)status;
    (void)cls;
    return suggested;
}

static mhdctx_hook_result noop_hook(struct MHD_Connection *connection, mhdctx_context *ctx,
                                    void *cls)
{
    (void)connection;
    (void)ctx;
    (void)cls;
    return MHDCTX_HOOK_CONTINUE;
}

static mhdctx_error noop_verify(const char *token, size_t token_len, mhdctx_context *ctx,
                                void *cls)
{
    (void)token;
    (void)token_len;
    (void)ctx;
    (void)cls;
    return MHDCTX_EAUTH;
}

/* Custom header name and length; configuration frozen by the first request. */
START_TEST(test_request_id_configuration)
{
    struct fixture f;
    fixture_open(&f);
    ck_assert_int_eq(mhdctx_set_request_id_header(f.mw, "Bad Header"), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_set_request_id_header(f.mw, ""), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_set_request_id_header(f.mw, NULL), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_set_request_id_max_length(f.mw, 0), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_set_request_id_max_length(f.mw, MHDCTX_REQUEST_ID_LIMIT + 1),
                     MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_set_request_id_header(f.mw, "X-Correlation-Id"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_request_id_max_length(f.mw, 8), MHDCTX_OK);
    server_start(&f.s, f.mw, MODE_EPOLL);

    /* the custom header is read and sent; X-Request-Id is just another header now */
    http_response *r =
        support_http_get(f.s.port, "/r", "X-Correlation-Id: abc123\r\nX-Request-Id: other\r\n");
    ck_assert_str_eq(http_header(r, "X-Correlation-Id"), "abc123");
    ck_assert_uint_eq(http_header_count(r, "X-Request-Id"), 0);
    ck_assert_str_eq(r->body, "abc123");
    http_response_free(r);
    r = support_http_get(f.s.port, "/j", "X-Request-Id: other\r\n");
    const char *fresh = http_header(r, "X-Correlation-Id");
    ck_assert(is_uuid_v4(fresh));
    char fresh_id[MHDCTX_UUID_LEN + 1];
    copy_str(fresh_id, sizeof fresh_id, fresh);
    http_response_free(r);
    /* the length limit: 8 fits, 9 does not */
    r = support_http_get(f.s.port, "/r", "X-Correlation-Id: abcdefgh\r\n");
    ck_assert_str_eq(http_header(r, "X-Correlation-Id"), "abcdefgh");
    http_response_free(r);
    r = support_http_get(f.s.port, "/e", "X-Correlation-Id: zqNINEchr\r\n");
    const char *replaced = http_header(r, "X-Correlation-Id");
    ck_assert(is_uuid_v4(replaced));
    char replaced_id[MHDCTX_UUID_LEN + 1];
    copy_str(replaced_id, sizeof replaced_id, replaced);
    http_response_free(r);

    /* frozen: every configuration call now fails and changes nothing */
    ck_assert_int_eq(mhdctx_set_request_id_header(f.mw, "X-Other"), MHDCTX_ESTATE);
    ck_assert_int_eq(mhdctx_set_request_id_max_length(f.mw, 100), MHDCTX_ESTATE);
    ck_assert_int_eq(mhdctx_set_trust_incoming_request_id(f.mw, false), MHDCTX_ESTATE);
    ck_assert_int_eq(mhdctx_on_completed(f.mw, NULL, NULL), MHDCTX_ESTATE);
    ck_assert_int_eq(mhdctx_add_hook(f.mw, noop_hook, NULL), MHDCTX_ESTATE);
    ck_assert_int_eq(mhdctx_add_bearer_auth(f.mw, noop_verify, NULL), MHDCTX_ESTATE);
    ck_assert_int_eq(mhdctx_access_log_route(f.mw, "/x", MHDCTX_LOG_OFF), MHDCTX_ESTATE);
    ck_assert_int_eq(mhdctx_access_log_level_fn(f.mw, level_same, NULL), MHDCTX_ESTATE);
    ck_assert_int_eq(mhdctx_access_log_query(f.mw, true), MHDCTX_ESTATE);
    r = support_http_get(f.s.port, "/r", "X-Correlation-Id: still-ok\r\n");
    ck_assert_str_eq(http_header(r, "X-Correlation-Id"), "still-ok");
    http_response_free(r);

    ck_assert(support_capture_wait(ACCESS_MSG, 5, 5000));
    support_server_stop(&f.s);
    json_t *all = support_capture_parsed();
    ck_assert_ptr_null(json_object_get(
        support_find_line(all, ACCESS_MSG, "request_id", "abc123"), "request_id_replaced"));
    json_t *line = support_find_line(all, ACCESS_MSG, "request_id", fresh_id);
    ck_assert_ptr_nonnull(line);
    ck_assert_ptr_null(json_object_get(line, "request_id_replaced")); /* MISSING: silent */
    line = support_find_line(all, ACCESS_MSG, "request_id", replaced_id);
    ck_assert_ptr_nonnull(line);
    ck_assert_str_eq(jstr(line, "request_id_replaced"), "too_long");
    ck_assert(!support_capture_contains("zqNINE"));
    json_decref(all);
    fixture_close(&f);
}
END_TEST

/* A worker's reference outlives the daemon and the middleware: the context still names
 * the custom id header (it used to point into the freed middleware; ASan saw it). */
START_TEST(test_custom_id_header_outlives_the_middleware)
{
    support_capture_start_info();
    struct app *app = app_new();
    app->keep_refs = true;
    mhdctx_middleware *mw = app_middleware(app);
    ck_assert_int_eq(mhdctx_set_request_id_header(mw, "X-Correlation-Id"), MHDCTX_OK);
    support_server s;
    server_start(&s, mw, MODE_EPOLL);
    http_response *r = support_http_get(s.port, "/r", "X-Correlation-Id: kept-1\r\n");
    ck_assert_str_eq(http_header(r, "X-Correlation-Id"), "kept-1");
    http_response_free(r);
    support_server_stop(&s);
    mhdctx_middleware_free(mw);
    ck_assert_uint_eq(app->n_refs, 1);
    struct MHD_Response *late =
        MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    ck_assert_int_eq(mhdctx_response_add_request_id(late, app->refs[0]), MHDCTX_OK);
    ck_assert_str_eq(MHD_get_response_header(late, "X-Correlation-Id"), "kept-1");
    MHD_destroy_response(late);
    app_free(app);
    support_capture_stop();
}
END_TEST

/* A handler that answers inside a context of its own (mhdctx_run): the answer is sent,
 * not held back as if a hook had given it (the client used to wait until shutdown). */
START_TEST(test_respond_inside_an_apps_own_context)
{
    struct fixture f;
    fixture_open(&f);
    server_start(&f.s, f.mw, MODE_EPOLL);
    http_response *r = support_http_get(f.s.port, "/own-context", NULL);
    ck_assert_int_eq(r->status, MHD_HTTP_INTERNAL_SERVER_ERROR);
    ck_assert_ptr_nonnull(strstr(r->body, "from_own_context"));
    http_response_free(r);
    support_server_stop(&f.s);
    fixture_close(&f);
}
END_TEST

/* Edge mode: incoming ids are never used. */
START_TEST(test_untrusted_request_ids)
{
    struct fixture f;
    fixture_open(&f);
    ck_assert_int_eq(mhdctx_set_trust_incoming_request_id(f.mw, false), MHDCTX_OK);
    server_start(&f.s, f.mw, MODE_EPOLL);

    http_response *r = support_http_get(f.s.port, "/r", "X-Request-Id: zqTRUSTME\r\n");
    const char *id = http_header(r, "X-Request-Id");
    ck_assert(is_uuid_v4(id));
    char untrusted[MHDCTX_UUID_LEN + 1];
    copy_str(untrusted, sizeof untrusted, id);
    http_response_free(r);
    /* twice: still "untrusted" (neither is looked at), not "multiple" */
    r = support_http_get(f.s.port, "/r",
                         "X-Request-Id: zqTWICEa\r\nX-Request-Id: zqTWICEb\r\n");
    char twice[MHDCTX_UUID_LEN + 1];
    copy_str(twice, sizeof twice, http_header(r, "X-Request-Id"));
    http_response_free(r);
    r = support_http_get(f.s.port, "/r", NULL); /* no header: nothing to report */
    char missing[MHDCTX_UUID_LEN + 1];
    ck_assert(is_uuid_v4(http_header(r, "X-Request-Id")));
    copy_str(missing, sizeof missing, http_header(r, "X-Request-Id"));
    http_response_free(r);
    ck_assert_int_eq(mhdctx_set_trust_incoming_request_id(f.mw, true), MHDCTX_ESTATE);

    ck_assert(support_capture_wait(ACCESS_MSG, 3, 5000));
    support_server_stop(&f.s);
    json_t *all = support_capture_parsed();
    json_t *line = support_find_line(all, ACCESS_MSG, "request_id", untrusted);
    ck_assert_ptr_nonnull(line);
    ck_assert_str_eq(jstr(line, "request_id_replaced"), "untrusted");
    line = support_find_line(all, ACCESS_MSG, "request_id", twice);
    ck_assert_ptr_nonnull(line);
    ck_assert_str_eq(jstr(line, "request_id_replaced"), "untrusted");
    line = support_find_line(all, ACCESS_MSG, "request_id", missing);
    ck_assert_ptr_nonnull(line);
    ck_assert_ptr_null(json_object_get(line, "request_id_replaced"));
    ck_assert_int_eq(app_seen(f.app, untrusted)->verdict, MHDCTX_ID_UNTRUSTED);
    ck_assert(!support_capture_contains("zqTRUSTME"));
    ck_assert(!support_capture_contains("zqTWICE"));
    json_decref(all);
    fixture_close(&f);
}
END_TEST

/* ==== tests: hooks =================================================================== */

/* Adds hooks '1', '2', '3' (order_hook, reporting to @p app) to @p mw. */
static void add_order_hooks(mhdctx_middleware *mw, struct app *app, struct hook_spec specs[3])
{
    for (int i = 0; i < 3; i++) {
        specs[i] = (struct hook_spec){app, (char)('1' + i)};
        ck_assert_int_eq(mhdctx_add_hook(mw, order_hook, &specs[i]), MHDCTX_OK);
    }
    ck_assert_int_eq(mhdctx_add_hook(mw, NULL, NULL), MHDCTX_EINVAL);
}

START_TEST(test_hook_order_once_per_request)
{
    struct fixture f;
    struct hook_spec specs[3];
    fixture_open(&f);
    add_order_hooks(f.mw, f.app, specs);
    server_start(&f.s, f.mw, MODE_EPOLL);

    http_response *r = do_post(f.s.port, "/body", "X-Request-Id: hooks-1\r\n", 200 * 1024);
    ck_assert_int_eq(r->status, 200);
    json_t *body = support_body_json(r);
    ck_assert_int_ge(json_integer_value(json_object_get(body, "calls")), 4);
    json_decref(body);
    http_response_free(r);
    pthread_mutex_lock(&f.app->lock);
    ck_assert_str_eq(f.app->order, "123H"); /* once, although the handler ran many times */
    pthread_mutex_unlock(&f.app->lock);

    r = support_http_get(f.s.port, "/r", NULL);
    ck_assert_int_eq(r->status, 200);
    http_response_free(r);
    pthread_mutex_lock(&f.app->lock);
    ck_assert_str_eq(f.app->order, "123H123H");
    pthread_mutex_unlock(&f.app->lock);

    ck_assert(support_capture_wait(ACCESS_MSG, 2, 5000));
    support_server_stop(&f.s);
    ck_assert_uint_eq(atomic_load(&f.app->ctx_missing), 0);
    ck_assert_uint_eq(atomic_load(&f.app->empty_method), 0);
    fixture_close(&f);
}
END_TEST

START_TEST(test_hook_short_circuit_and_failure)
{
    struct fixture f;
    struct hook_spec specs[3];
    fixture_open(&f);
    add_order_hooks(f.mw, f.app, specs);
    server_start(&f.s, f.mw, MODE_EPOLL);

    /* DONE: later hooks and the handler do not run; the 403 carries the id. */
    http_response *r = support_http_get(f.s.port, "/deny", "X-Request-Id: deny-1\r\n");
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(http_header(r, "X-Request-Id"), "deny-1");
    ck_assert_str_eq(http_header(r, "Content-Type"), "application/json");
    json_t *body = support_body_json(r);
    ck_assert_str_eq(jstr(body, "error"), "forbidden");
    ck_assert_str_eq(jstr(body, "request_id"), "deny-1");
    ck_assert_uint_eq(json_object_size(body), 2);
    json_decref(body);
    http_response_free(r);
    pthread_mutex_lock(&f.app->lock);
    ck_assert_str_eq(f.app->order, "12");
    pthread_mutex_unlock(&f.app->lock);
    ck_assert_uint_eq(atomic_load(&f.app->handler_calls), 0);

    /* DONE on a keep-alive connection. A response queued during MHD's first call of
     * the access handler (when hooks run) makes MHD 0.9.75 close the connection, so the
     * middleware queues a hook's answer at the next call: the connection stays open and
     * the request pipelined behind the refused one is served. */
    app_order_reset(f.app);
    http_conn *c;
    ck_assert_int_eq(http_connect(f.s.port, &c), HTTP_OK);
    ck_assert_int_eq(
        http_send_str(c, "GET /deny HTTP/1.1\r\nHost: t\r\nX-Request-Id: deny-2\r\n\r\n"
                         "GET /r HTTP/1.1\r\nHost: t\r\nX-Request-Id: after-deny\r\n"
                         "Connection: close\r\n\r\n"),
        HTTP_OK);
    ck_assert_int_eq(http_read_response(c, &r), HTTP_OK);
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(http_header(r, "X-Request-Id"), "deny-2");
    ck_assert_ptr_null(http_header(r, "Connection")); /* kept alive */
    http_response_free(r);
    ck_assert_int_eq(http_read_response(c, &r), HTTP_OK);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(http_header(r, "X-Request-Id"), "after-deny");
    http_response_free(r);
    http_close(c);
    pthread_mutex_lock(&f.app->lock);
    ck_assert_str_eq(f.app->order, "12123H");
    pthread_mutex_unlock(&f.app->lock);
    /* the served request's two calls (headers, then end of request); none for deny-2 */
    ck_assert_uint_eq(atomic_load(&f.app->handler_calls), 2);

    /* DONE with a request body: the answer is queued at once, so MHD does not read the
     * body; it answers and closes the connection. */
    ck_assert_int_eq(http_connect(f.s.port, &c), HTTP_OK);
    {
        char body_bytes[1024];
        memset(body_bytes, 'b', sizeof body_bytes);
        char *head = str_fmt("POST /deny HTTP/1.1\r\nHost: t\r\nX-Request-Id: deny-post\r\n"
                             "Content-Length: %zu\r\n\r\n",
                             sizeof body_bytes);
        ck_assert_int_eq(http_send_str(c, head), HTTP_OK);
        ck_assert_int_eq(http_send(c, body_bytes, sizeof body_bytes), HTTP_OK);
        free(head);
    }
    ck_assert_int_eq(http_read_response(c, &r), HTTP_OK);
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(http_header(r, "X-Request-Id"), "deny-post");
    const char *connection_hdr = http_header(r, "Connection");
    ck_assert_ptr_nonnull(connection_hdr);
    ck_assert_str_eq(connection_hdr, "close");
    http_response_free(r);
    ck_assert_int_eq(http_wait_closed(c, NULL), HTTP_OK);
    http_close(c);

    /* FAIL: the connection is closed without a response. */
    app_order_reset(f.app);
    unsigned calls_before = atomic_load(&f.app->handler_calls);
    ck_assert_int_eq(http_connect(f.s.port, &c), HTTP_OK);
    ck_assert_int_eq(
        http_send_str(c, "GET /fail HTTP/1.1\r\nHost: t\r\nX-Request-Id: fail-1\r\n\r\n"),
        HTTP_OK);
    int rc = http_read_response(c, &r);
    ck_assert_msg(rc == HTTP_ECLOSED || rc == HTTP_ERESET, "FAIL hook: got %s",
                  http_strerror(rc));
    http_close(c);
    pthread_mutex_lock(&f.app->lock);
    ck_assert_str_eq(f.app->order, "12");
    pthread_mutex_unlock(&f.app->lock);
    ck_assert_uint_eq(atomic_load(&f.app->handler_calls), calls_before);
    /* FAIL after the hook made an answer: the answer is never sent, and the access line
     * must not claim it was (it used to say 401). */
    ck_assert_int_eq(http_connect(f.s.port, &c), HTTP_OK);
    ck_assert_int_eq(http_send_str(c, "GET /fail-answered HTTP/1.1\r\nHost: t\r\n"
                                      "X-Request-Id: fail-2\r\n\r\n"),
                     HTTP_OK);
    rc = http_read_response(c, &r);
    ck_assert_msg(rc == HTTP_ECLOSED || rc == HTTP_ERESET, "FAIL hook: got %s",
                  http_strerror(rc));
    http_close(c);

    /* ... and the server goes on serving. */
    r = support_http_get(f.s.port, "/r", "X-Request-Id: after-fail\r\n");
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(r->body, "after-fail");
    http_response_free(r);

    ck_assert(support_capture_wait(ACCESS_MSG, 7, 5000));
    support_server_stop(&f.s);
    json_t *all = support_capture_parsed();
    assert_access_line(support_find_line(all, ACCESS_MSG, "request_id", "after-deny"), "GET",
                       "/r", 200, "info", "completed");
    assert_access_line(support_find_line(all, ACCESS_MSG, "request_id", "deny-1"), "GET",
                       "/deny", 403, "warn", "completed");
    assert_access_line(support_find_line(all, ACCESS_MSG, "request_id", "deny-2"), "GET",
                       "/deny", 403, "warn", "completed");
    assert_access_line(support_find_line(all, ACCESS_MSG, "request_id", "deny-post"), "POST",
                       "/deny", 403, "warn", "completed");
    /* no response was queued: status 0; MHD reports the close as an error */
    assert_access_line(support_find_line(all, ACCESS_MSG, "request_id", "fail-1"), "GET",
                       "/fail", 0, "error", "error");
    assert_access_line(support_find_line(all, ACCESS_MSG, "request_id", "fail-2"), "GET",
                       "/fail-answered", 0, "error", "error");
    assert_access_line(support_find_line(all, ACCESS_MSG, "request_id", "after-fail"), "GET",
                       "/r", 200, "info", "completed");
    ck_assert_uint_eq(count_lines(all, ACCESS_MSG, NULL, NULL), 7);
    json_decref(all);
    /* the application's completion callback ran for the answered requests too, with the
     * handler's slot untouched (NULL) */
    const struct completion *done = app_done(f.app, "deny-1");
    ck_assert_ptr_nonnull(done);
    ck_assert(done->current_ok && done->slot_null);
    done = app_done(f.app, "fail-1");
    ck_assert_ptr_nonnull(done);
    ck_assert(done->slot_null);
    ck_assert_int_eq(done->toe, MHD_REQUEST_TERMINATED_WITH_ERROR);
    ck_assert_uint_eq(atomic_load(&f.app->ctx_missing), 0);

    fixture_close(&f);
}
END_TEST

/* ==== tests: bearer auth ============================================================= */

#define GOOD_TOKEN "tok.SECRETalpha-123"

static void assert_unauthorized(uint16_t port, const char *headers, struct app *app,
                                char id_out[MHDCTX_UUID_LEN + 1])
{
    unsigned first_calls = atomic_load(&app->first_calls);
    http_response *r = support_http_get(port, "/j", headers);
    ck_assert_msg(r->status == 401, "expected 401 for [%s], got %d", headers, r->status);
    const char *www = http_header(r, "WWW-Authenticate");
    ck_assert_ptr_nonnull(www);
    ck_assert_msg(strncmp(www, "Bearer", 6) == 0, "WWW-Authenticate: %s", www);
    ck_assert_str_eq(http_header(r, "Content-Type"), "application/json");
    const char *id = http_header(r, "X-Request-Id");
    ck_assert(is_uuid_v4(id));
    json_t *body = support_body_json(r);
    ck_assert_ptr_nonnull(jstr(body, "error"));
    ck_assert_str_eq(jstr(body, "request_id"), id);
    json_decref(body);
    ck_assert(strstr(r->body, "SECRET") == NULL);
    copy_str(id_out, MHDCTX_UUID_LEN + 1, id);
    http_response_free(r);
    ck_assert_uint_eq(atomic_load(&app->first_calls), first_calls); /* handler not called */
}

START_TEST(test_bearer_auth)
{
    struct fixture f;
    fixture_open(&f);
    mhdctx_token_table *table = mhdctx_token_table_new();
    ck_assert_ptr_nonnull(table);
    const char *roles[] = {"admin", "ops"};
    ck_assert_int_eq(mhdctx_token_table_add(table, GOOD_TOKEN, "user-42", roles, 2), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_add_bearer_auth(f.mw, mhdctx_token_table_verify, table), MHDCTX_OK);
    server_start(&f.s, f.mw, MODE_EPOLL);

    /* no header: anonymous, the handler runs */
    http_response *r = support_http_get(f.s.port, "/j", "X-Request-Id: anon-1\r\n");
    ck_assert_int_eq(r->status, 200);
    json_t *body = support_body_json(r);
    ck_assert(json_is_null(json_object_get(body, "user_id")));
    ck_assert_uint_eq(json_array_size(json_object_get(body, "roles")), 0);
    json_decref(body);
    http_response_free(r);

    /* a valid token: user and roles on the context */
    r = support_http_get(f.s.port, "/j",
                         "X-Request-Id: auth-1\r\nAuthorization: Bearer " GOOD_TOKEN "\r\n");
    ck_assert_int_eq(r->status, 200);
    body = support_body_json(r);
    ck_assert_str_eq(jstr(body, "user_id"), "user-42");
    json_t *got_roles = json_object_get(body, "roles");
    ck_assert_uint_eq(json_array_size(got_roles), 2);
    ck_assert_str_eq(json_string_value(json_array_get(got_roles, 0)), "admin");
    ck_assert_str_eq(json_string_value(json_array_get(got_roles, 1)), "ops");
    ck_assert(json_is_true(json_object_get(body, "admin")));
    json_decref(body);
    http_response_free(r);
    /* the scheme is case-insensitive */
    r = support_http_get(f.s.port, "/j",
                         "X-Request-Id: auth-2\r\nAuthorization: bearer " GOOD_TOKEN "\r\n");
    ck_assert_int_eq(r->status, 200);
    http_response_free(r);

    char ids[5][MHDCTX_UUID_LEN + 1];
    assert_unauthorized(f.s.port, "Authorization: Bearer tok.SECRETunknown-9\r\n", f.app,
                        ids[0]);
    assert_unauthorized(f.s.port, "Authorization: Basic SECRETbasic\r\n", f.app, ids[1]);
    assert_unauthorized(f.s.port, "Authorization: Bearer SECRETa SECRETb\r\n", f.app, ids[2]);
    assert_unauthorized(f.s.port,
                        "Authorization: Bearer " GOOD_TOKEN
                        "\r\nAuthorization: Bearer " GOOD_TOKEN "\r\n",
                        f.app, ids[3]);
    assert_unauthorized(f.s.port, "Authorization: Bearer\r\n", f.app, ids[4]);

    ck_assert(support_capture_wait(ACCESS_MSG, 8, 5000));
    support_server_stop(&f.s);
    json_t *all = support_capture_parsed();
    json_t *line = support_find_line(all, HANDLER_MSG, "request_id", "anon-1");
    ck_assert_ptr_nonnull(line);
    ck_assert(json_is_null(json_object_get(line, "user_id")));
    line = support_find_line(all, HANDLER_MSG, "request_id", "auth-1");
    ck_assert_ptr_nonnull(line);
    ck_assert_str_eq(jstr(line, "user_id"), "user-42");
    line = support_find_line(all, ACCESS_MSG, "request_id", "auth-1");
    ck_assert_ptr_nonnull(line);
    ck_assert_str_eq(jstr(line, "user_id"), "user-42");
    const struct seen *seen = app_seen(f.app, "auth-1");
    ck_assert_ptr_nonnull(seen);
    ck_assert(seen->has_user);
    ck_assert_str_eq(seen->user_id, "user-42");
    for (size_t i = 0; i < 5; i++) {
        line = support_find_line(all, ACCESS_MSG, "request_id", ids[i]);
        assert_access_line(line, "GET", "/j", 401, "warn", "completed");
        ck_assert(json_is_null(json_object_get(line, "user_id")));
    }
    ck_assert_msg(!support_capture_contains("SECRET"), "a token reached a log line");
    ck_assert(!support_capture_contains("Basic"));
    json_decref(all);

    fixture_close(&f);
    mhdctx_token_table_free(table);
}
END_TEST

/* ==== tests: access log ============================================================== */

START_TEST(test_access_log_lines)
{
    struct fixture f;
    fixture_open(&f);
    ck_assert_int_eq(mhdctx_access_log_route(f.mw, "/health", MHDCTX_LOG_OFF), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_access_log_route(f.mw, NULL, MHDCTX_LOG_OFF), MHDCTX_EINVAL);
    server_start(&f.s, f.mw, MODE_EPOLL);

    struct {
        const char *path;
        unsigned status;
        const char *logged_path;
        const char *level;
        bool helper; /* answered through the library's helpers (id header present) */
    } reqs[] = {
        {"/p?secret=1", 200, "/p", "info", true},
        {"/s/200", 200, "/s/200", "info", true},
        {"/s/404", 404, "/s/404", "warn", true},
        {"/s/500", 500, "/s/500", "error", true},
        {"/s/302", 302, "/s/302", "info", true},
        {"/shared", 404, "/shared", "warn", false},
        {"/shared", 404, "/shared", "warn", false},
        {"/plain", 201, "/plain", "info", false},
        /* the path as the client sent it: not unescaped */
        {"/enc%20oded?x=%41", 200, "/enc%20oded", "info", true},
        /* bytes that need escaping reach the line as valid JSON (invalid UTF-8: U+FFFD) */
        {"/q\"uo\\te\x01\xff", 200, "/q\"uo\\te\x01\xef\xbf\xbd", "info", true},
    };
    const size_t n = sizeof reqs / sizeof reqs[0];
    char ids[sizeof reqs / sizeof reqs[0]][64];

    http_response *r = support_http_get(f.s.port, "/health", "X-Request-Id: health-1\r\n");
    ck_assert_int_eq(r->status, 200);
    http_response_free(r);
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "acc-%zu", i);
        char *hdr = str_fmt("X-Request-Id: %s\r\n", ids[i]);
        r = support_http_get(f.s.port, reqs[i].path, hdr);
        free(hdr);
        ck_assert_int_eq(r->status, reqs[i].status);
        if (reqs[i].helper) {
            ck_assert_str_eq(http_header(r, "X-Request-Id"), ids[i]);
        } else {
            /* the library never decorates a response it did not create */
            ck_assert_uint_eq(http_header_count(r, "X-Request-Id"), 0);
        }
        if (strcmp(reqs[i].path, "/shared") == 0)
            ck_assert_str_eq(r->body, shared_body);
        http_response_free(r);
    }
    ck_assert_ptr_null(MHD_get_response_header(f.app->shared, "X-Request-Id"));

    ck_assert(support_capture_wait(ACCESS_MSG, n, 5000));
    support_server_stop(&f.s);
    json_t *all = support_capture_parsed();
    for (size_t i = 0; i < n; i++) {
        json_t *line = support_find_line(all, ACCESS_MSG, "request_id", ids[i]);
        ck_assert_msg(line != NULL, "no access line for %s", reqs[i].path);
        assert_access_line(line, "GET", reqs[i].logged_path, reqs[i].status, reqs[i].level,
                           "completed");
        ck_assert_ptr_null(json_object_get(line, "query"));
        ck_assert_uint_eq(count_lines(all, ACCESS_MSG, "request_id", ids[i]), 1);
    }
    ck_assert_uint_eq(count_lines(all, ACCESS_MSG, NULL, NULL), n);
    /* /health: served and its handler logged, but no access line */
    ck_assert_ptr_nonnull(support_find_line(all, HANDLER_MSG, "request_id", "health-1"));
    ck_assert_ptr_null(support_find_line(all, ACCESS_MSG, "request_id", "health-1"));
    ck_assert_ptr_null(support_find_line(all, ACCESS_MSG, "path", "/health"));
    ck_assert(!support_capture_contains("secret"));
    json_decref(all);
    fixture_close(&f);
}
END_TEST

/* A line's "time" in milliseconds since the epoch. */
static int64_t line_time_ms(const json_t *line)
{
    const char *stamp = jstr(line, "time");
    ck_assert_ptr_nonnull(stamp);
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = strptime(stamp, "%Y-%m-%dT%H:%M:%S.", &tm);
    ck_assert_msg(rest != NULL && strlen(rest) == 4, "bad time %s", stamp);
    return (int64_t)timegm(&tm) * 1000 + atoi(rest);
}

static int64_t wall_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* The access line's time is when the request ended, on the wall clock (it is worked out
 * from the reading its duration takes): after the request was sent and the handler's
 * line, before the line was seen (the completion callback may run after the client has
 * its answer, so that is the upper bound). */
START_TEST(test_access_line_time_is_the_end_of_the_request)
{
    struct fixture f;
    fixture_open(&f);
    server_start(&f.s, f.mw, MODE_EPOLL);
    enum { N = 8 };
    int64_t sent[N], seen[N];
    for (int i = 0; i < N; i++) {
        char *hdr = str_fmt("X-Request-Id: when-%d\r\n", i);
        sent[i] = wall_ms();
        http_response *r = support_http_get(f.s.port, "/s/200", hdr);
        ck_assert_int_eq(r->status, 200);
        http_response_free(r);
        free(hdr);
        ck_assert(support_capture_wait(ACCESS_MSG, (size_t)i + 1, 5000));
        seen[i] = wall_ms();
        if (i % 2)
            usleep(300 * 1000); /* across seconds: the time's second changes too */
    }
    support_server_stop(&f.s);
    json_t *all = support_capture_parsed();
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "when-%d", i);
        json_t *access = support_find_line(all, ACCESS_MSG, "request_id", id);
        json_t *handler = support_find_line(all, HANDLER_MSG, "request_id", id);
        ck_assert_ptr_nonnull(access);
        ck_assert_ptr_nonnull(handler);
        int64_t at = line_time_ms(access);
        ck_assert_int_ge(at, line_time_ms(handler));
        ck_assert_int_ge(at, sent[i]);
        ck_assert_int_le(at, seen[i]);
    }
    json_decref(all);
    fixture_close(&f);
}
END_TEST

static mhdctx_log_level level_override(const mhdctx_context *ctx, unsigned status,
                                       mhdctx_log_level suggested, void *cls)
{
    struct app *app = cls;
    const char *path = mhdctx_path(ctx);
    pthread_mutex_lock(&app->lock);
    if (app->n_levels < MAX_LEVEL_CALLS) {
        struct level_call *call = &app->levels[app->n_levels++];
        copy_str(call->path, sizeof call->path, path);
        call->status = status;
        call->suggested = suggested;
    }
    pthread_mutex_unlock(&app->lock);
    if (strcmp(path, "/loud") == 0)
        return MHDCTX_LOG_ERROR;
    if (strcmp(path, "/quiet") == 0)
        return MHDCTX_LOG_OFF;
    if (strcmp(path, "/debug") == 0)
        return MHDCTX_LOG_DEBUG; /* below the threshold: no line */
    return suggested;
}

static const struct level_call *level_call_for(const struct app *app, const char *path)
{
    for (size_t i = 0; i < app->n_levels; i++) {
        if (strcmp(app->levels[i].path, path) == 0)
            return &app->levels[i];
    }
    return NULL;
}

START_TEST(test_access_log_level_fn_and_query)
{
    struct fixture f;
    fixture_open(&f);
    ck_assert_int_eq(mhdctx_access_log_level_fn(f.mw, level_override, f.app), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_access_log_route(f.mw, "/routed", MHDCTX_LOG_WARN), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_access_log_query(f.mw, true), MHDCTX_OK);
    server_start(&f.s, f.mw, MODE_EPOLL);

    const char *paths[] = {"/q?a=1&b=two", "/noquery", "/loud",  "/quiet",
                           "/debug",       "/s/404",   "/routed"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char *hdr = str_fmt("X-Request-Id: lvl-%zu\r\n", i);
        http_response *r = support_http_get(f.s.port, paths[i], hdr);
        free(hdr);
        ck_assert_int_eq(r->status, strcmp(paths[i], "/s/404") == 0 ? 404 : 200);
        http_response_free(r);
    }
    ck_assert(support_capture_wait(ACCESS_MSG, 5, 5000));
    support_server_stop(&f.s);

    json_t *all = support_capture_parsed();
    json_t *line = support_find_line(all, ACCESS_MSG, "request_id", "lvl-0");
    assert_access_line(line, "GET", "/q", 200, "info", "completed");
    ck_assert_str_eq(jstr(line, "query"), "a=1&b=two");
    line = support_find_line(all, ACCESS_MSG, "request_id", "lvl-1");
    assert_access_line(line, "GET", "/noquery", 200, "info", "completed");
    ck_assert_ptr_null(json_object_get(line, "query"));
    assert_access_line(support_find_line(all, ACCESS_MSG, "request_id", "lvl-2"), "GET",
                       "/loud", 200, "error", "completed");
    ck_assert_ptr_null(support_find_line(all, ACCESS_MSG, "request_id", "lvl-3"));
    ck_assert_ptr_null(support_find_line(all, ACCESS_MSG, "request_id", "lvl-4"));
    assert_access_line(support_find_line(all, ACCESS_MSG, "request_id", "lvl-5"), "GET",
                       "/s/404", 404, "warn", "completed");
    assert_access_line(support_find_line(all, ACCESS_MSG, "request_id", "lvl-6"), "GET",
                       "/routed", 200, "warn", "completed");
    ck_assert_uint_eq(count_lines(all, ACCESS_MSG, NULL, NULL), 5);
    json_decref(all);

    ck_assert_uint_eq(f.app->n_levels, 7);
    const struct level_call *call = level_call_for(f.app, "/s/404");
    ck_assert_ptr_nonnull(call);
    ck_assert_uint_eq(call->status, 404);
    ck_assert_int_eq(call->suggested, MHDCTX_LOG_WARN);
    call = level_call_for(f.app, "/routed");
    ck_assert_ptr_nonnull(call);
    ck_assert_int_eq(call->suggested, MHDCTX_LOG_WARN); /* the route's level */
    call = level_call_for(f.app, "/q");
    ck_assert_ptr_nonnull(call);
    ck_assert_uint_eq(call->status, 200);
    ck_assert_int_eq(call->suggested, MHDCTX_LOG_INFO);

    fixture_close(&f);
}
END_TEST

/* The access line writes its keys as they are, trusting that each is reserved: with
 * every optional field present, each key is the library's or reserved, and none is
 * repeated (parsed with JSON_REJECT_DUPLICATES). */
START_TEST(test_access_line_keys_are_reserved_and_unique)
{
    static const char *const core[] = {"time",     "level",   "message",     "request_id",
                                       "trace_id", "span_id", "trace_flags", "user_id"};
    struct fixture f;
    fixture_open(&f);
    ck_assert_int_eq(mhdctx_access_log_query(f.mw, true), MHDCTX_OK);
    server_start(&f.s, f.mw, MODE_EPOLL);
    http_response *r = support_http_get(
        f.s.port, "/q?a=1",
        "X-Request-Id: has space\r\n"
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n");
    ck_assert_int_eq(r->status, 200);
    http_response_free(r);
    ck_assert(support_capture_wait(ACCESS_MSG, 1, 5000));
    support_server_stop(&f.s);

    json_t *line = NULL;
    for (size_t i = 0; i < support_capture_n() && line == NULL; i++) {
        json_t *candidate = support_capture_json(i, JSON_REJECT_DUPLICATES);
        if (strcmp(jstr(candidate, "message"), ACCESS_MSG) == 0)
            line = candidate;
        else
            json_decref(candidate);
    }
    ck_assert_ptr_nonnull(line);
    ck_assert_str_eq(jstr(line, "query"), "a=1");
    ck_assert_str_eq(jstr(line, "parent_span_id"), "b7ad6b7169203331");
    ck_assert_str_eq(jstr(line, "request_id_replaced"), "invalid_character");
    const char *key;
    json_t *value;
    json_object_foreach(line, key, value)
    {
        bool known = mhdctx__key_is_reserved(key);
        for (size_t i = 0; i < sizeof core / sizeof *core; i++)
            known = known || strcmp(key, core[i]) == 0;
        ck_assert_msg(known, "access line key %s is neither core nor reserved", key);
    }
    json_decref(line);
    fixture_close(&f);
}
END_TEST

/* ==== tests: lifecycle =============================================================== */

START_TEST(test_completion_callback)
{
    struct fixture f;
    fixture_open(&f);
    server_start(&f.s, f.mw, MODE_EPOLL);

    http_response *r = support_http_get(f.s.port, "/a", "X-Request-Id: done-1\r\n");
    http_response_free(r);
    r = support_http_get(f.s.port, "/s/404", "X-Request-Id: done-2\r\n");
    http_response_free(r);
    r = do_post(f.s.port, "/body", "X-Request-Id: done-3\r\n", 10000);
    ck_assert_int_eq(r->status, 200);
    http_response_free(r);
    r = support_http_get(f.s.port, "/shared", "X-Request-Id: done-4\r\n");
    http_response_free(r);

    ck_assert(support_capture_wait(ACCESS_MSG, 4, 5000));
    support_server_stop(&f.s);
    ck_assert_uint_eq(f.app->n_done, 4);
    json_t *all = support_capture_parsed();
    const char *ids[] = {"done-1", "done-2", "done-3", "done-4"};
    for (size_t i = 0; i < 4; i++) {
        const struct completion *done = app_done(f.app, ids[i]);
        ck_assert_msg(done != NULL, "no completion for %s", ids[i]);
        ck_assert(done->current_ok);
        ck_assert(!done->slot_null);
        ck_assert(done->slot_ok);
        ck_assert(!done->access_before);
        ck_assert_int_eq(done->toe, MHD_REQUEST_TERMINATED_COMPLETED_OK);
        ck_assert_uint_eq(count_lines(all, COMPLETED_MSG, "request_id", ids[i]), 1);
        long app_line = line_index(all, COMPLETED_MSG, ids[i]);
        long access_line = line_index(all, ACCESS_MSG, ids[i]);
        ck_assert_int_ge(app_line, 0);
        ck_assert_int_gt(access_line, app_line);
    }
    json_decref(all);
    fixture_close(&f);
}
END_TEST

START_TEST(test_keep_alive_and_pipelining)
{
    struct fixture f;
    fixture_open(&f);
    f.app->keep_refs = true;
    server_start(&f.s, f.mw, MODE_EPOLL);

    http_conn *c;
    ck_assert_int_eq(http_connect(f.s.port, &c), HTTP_OK);
    http_response *r1, *r2;
    ck_assert_int_eq(http_send_str(c, "GET /ka1 HTTP/1.1\r\nHost: t\r\n\r\n"), HTTP_OK);
    ck_assert_int_eq(http_read_response(c, &r1), HTTP_OK);
    ck_assert_int_eq(http_send_str(c, "GET /ka2 HTTP/1.1\r\nHost: t\r\n\r\n"), HTTP_OK);
    ck_assert_int_eq(http_read_response(c, &r2), HTTP_OK);
    ck_assert_int_eq(r1->status, 200);
    ck_assert_int_eq(r2->status, 200);
    ck_assert(is_uuid_v4(http_header(r1, "X-Request-Id")));
    ck_assert(is_uuid_v4(http_header(r2, "X-Request-Id")));
    ck_assert_str_ne(http_header(r1, "X-Request-Id"), http_header(r2, "X-Request-Id"));
    ck_assert_str_eq(r1->body, http_header(r1, "X-Request-Id"));
    ck_assert_str_eq(r2->body, http_header(r2, "X-Request-Id"));
    http_response_free(r1);
    http_response_free(r2);

    /* three pipelined requests in one write, on the same connection */
    ck_assert_int_eq(http_send_str(c,
                                   "GET /p1 HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-1\r\n\r\n"
                                   "GET /p2 HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-2\r\n\r\n"
                                   "GET /p3 HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-3\r\n"
                                   "Connection: close\r\n\r\n"),
                     HTTP_OK);
    for (int i = 1; i <= 3; i++) {
        http_response *r;
        char expect[32];
        snprintf(expect, sizeof expect, "pipe-%d", i);
        ck_assert_int_eq(http_read_response(c, &r), HTTP_OK);
        ck_assert_int_eq(r->status, 200);
        ck_assert_str_eq(http_header(r, "X-Request-Id"), expect);
        ck_assert_str_eq(r->body, expect);
        http_response_free(r);
    }
    ck_assert_int_eq(http_wait_closed(c, NULL), HTTP_OK);
    http_close(c);

    ck_assert(support_capture_wait(ACCESS_MSG, 5, 5000));
    support_server_stop(&f.s);
    ck_assert_uint_eq(f.app->n_refs, 5);
    for (size_t i = 0; i < f.app->n_refs; i++) {
        for (size_t j = i + 1; j < f.app->n_refs; j++) {
            ck_assert_ptr_ne(f.app->refs[i], f.app->refs[j]);
            ck_assert_str_ne(mhdctx_request_id(f.app->refs[i]),
                             mhdctx_request_id(f.app->refs[j]));
        }
    }
    ck_assert_str_eq(mhdctx_path(f.app->refs[0]), "/ka1");
    ck_assert_str_eq(mhdctx_path(f.app->refs[4]), "/p3");
    ck_assert_uint_eq(atomic_load(&f.app->slot_violations), 0);
    ck_assert_uint_eq(f.app->n_done, 5);
    json_t *all = support_capture_parsed();
    ck_assert_uint_eq(count_lines(all, ACCESS_MSG, NULL, NULL), 5);
    for (int i = 1; i <= 3; i++) {
        char id[32], path[32];
        snprintf(id, sizeof id, "pipe-%d", i);
        snprintf(path, sizeof path, "/p%d", i);
        assert_access_line(support_find_line(all, ACCESS_MSG, "request_id", id), "GET", path,
                           200, "info", "completed");
    }
    json_decref(all);
    fixture_close(&f);
}
END_TEST

START_TEST(test_client_abort)
{
    struct fixture f;
    fixture_open(&f);
    server_start(&f.s, f.mw, MODE_EPOLL);
    http_conn *c;

    /* half the headers, then gone */
    ck_assert_int_eq(http_connect(f.s.port, &c), HTTP_OK);
    ck_assert_int_eq(http_send_str(c, "GET /half?zqQUERY=1 HTTP/1.1\r\nHost: t\r\n"
                                      "X-Request-Id: zqHALF\r\nX-Partial: ab"),
                     HTTP_OK);
    sleep_ms(50);
    http_close(c);
    /* the request line only partly */
    ck_assert_int_eq(http_connect(f.s.port, &c), HTTP_OK);
    ck_assert_int_eq(http_send_str(c, "GET /hal"), HTTP_OK);
    sleep_ms(50);
    http_close(c);
    /* complete headers, a body cut short: the handler had started */
    ck_assert_int_eq(http_connect(f.s.port, &c), HTTP_OK);
    ck_assert_int_eq(http_send_str(c,
                                   "POST /body HTTP/1.1\r\nHost: t\r\nX-Request-Id: cut-1\r\n"
                                   "Content-Length: 1000\r\n\r\n0123456789"),
                     HTTP_OK);
    sleep_ms(50);
    http_close(c);

    /* the server still serves */
    http_response *r = support_http_get(f.s.port, "/r", "X-Request-Id: after-abort\r\n");
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(r->body, "after-abort");
    http_response_free(r);

    ck_assert(support_capture_wait(ACCESS_MSG, 3, 5000));
    support_server_stop(&f.s);

    json_t *all = support_capture_parsed();
    /* The request line was read (the URI-log callback created the context) but the
     * headers never completed: MHD reports CLIENT_ABORT, no status, the handler never
     * ran (method still ""), the id is a fresh one since the id header was never parsed. */
    json_t *half = support_find_line(all, ACCESS_MSG, "path", "/half");
    ck_assert_ptr_nonnull(half);
    assert_access_line(half, "", "/half", 0, "info", "client_abort");
    ck_assert(is_uuid_v4(jstr(half, "request_id")));
    ck_assert_ptr_null(json_object_get(half, "request_id_replaced"));
    const struct completion *half_done = app_done(f.app, jstr(half, "request_id"));
    ck_assert_ptr_nonnull(half_done);
    ck_assert(half_done->current_ok && half_done->slot_null);
    ck_assert_int_eq(half_done->toe, MHD_REQUEST_TERMINATED_CLIENT_ABORT);
    /* a request line that never completed: MHD tells the application nothing */
    ck_assert_ptr_null(support_find_line(all, ACCESS_MSG, "path", "/hal"));
    json_t *cut = support_find_line(all, ACCESS_MSG, "request_id", "cut-1");
    ck_assert_ptr_nonnull(cut);
    assert_access_line(cut, "POST", "/body", 0, "info", "client_abort");
    const struct completion *done = app_done(f.app, "cut-1");
    ck_assert_ptr_nonnull(done);
    ck_assert(done->slot_ok); /* the state was handed back and freed */
    assert_access_line(support_find_line(all, ACCESS_MSG, "request_id", "after-abort"), "GET",
                       "/r", 200, "info", "completed");
    ck_assert_uint_eq(count_lines(all, ACCESS_MSG, NULL, NULL), 3);
    ck_assert_uint_eq(f.app->n_done, 3);
    ck_assert(!support_capture_contains("zq"));
    ck_assert_ptr_null(app_seen(f.app, "zqHALF"));
    json_decref(all);
    fixture_close(&f);
}
END_TEST

/* Sends @p request, with @p half_close then shuts down the sending side (as `nc -N`
 * does), and reads: the answer's result code, the response in *@p out. */
static int exchange(uint16_t port, const char *request, bool half_close, http_response **out)
{
    http_conn *c;
    ck_assert_int_eq(http_connect(port, &c), HTTP_OK);
    ck_assert_int_eq(http_send_str(c, request), HTTP_OK);
    if (half_close)
        ck_assert_int_eq(http_shutdown_write(c), HTTP_OK);
    int rc = http_read_response(c, out);
    http_close(c);
    return rc;
}

/* The access line of the request with id @p id, checked as assert_access_line does. */
static void assert_line_of(const char *id, const char *method, const char *path,
                           unsigned status, const char *level, const char *outcome)
{
    json_t *all = support_capture_parsed();
    json_t *line = support_find_line(all, ACCESS_MSG, "request_id", id);
    ck_assert_msg(line != NULL, "no access line for %s", id);
    assert_access_line(line, method, path, status, level, outcome);
    json_decref(all);
}

/* A client that sent its request and half-closed, waiting for the answer, did not abort
 * when the server closed the connection: a hook's failure is an error (it was logged as
 * client_abort at info). And an ICY answer's status is 200 (it was 2147483848, an
 * error). */
START_TEST(test_half_closed_client_and_icy_status)
{
    const unsigned mode = (unsigned)_i;
    struct fixture f;
    struct hook_spec specs[3];
    fixture_open(&f);
    add_order_hooks(f.mw, f.app, specs); /* hook 2 fails /fail */
    server_start(&f.s, f.mw, mode);
    http_response *r = NULL;
    int rc = exchange(
        f.s.port, "GET /fail HTTP/1.1\r\nHost: t\r\nX-Request-Id: half-fail\r\n\r\n", true, &r);
    ck_assert_msg(rc == HTTP_ECLOSED || rc == HTTP_ERESET, "got %s", http_strerror(rc));
    r = support_http_get(f.s.port, "/icy", "X-Request-Id: icy-1\r\n");
    ck_assert_str_eq(r->version, "ICY");
    ck_assert_int_eq(r->status, 200);
    http_response_free(r);
    ck_assert(support_capture_wait(ACCESS_MSG, 2, 5000));
    support_server_stop(&f.s);
    assert_line_of("half-fail", "GET", "/fail", 0, "error", "error");
    assert_line_of("icy-1", "GET", "/icy", 200, "info", "completed");
    fixture_close(&f);
}
END_TEST

static void *ask_for_a_late_answer(void *arg)
{
    const uint16_t *port = arg;
    http_response *r = NULL;
    int rc =
        exchange(*port, "GET /answer-late HTTP/1.1\r\nHost: t\r\nX-Request-Id: late-1\r\n\r\n",
                 false, &r);
    http_response_free(r);
    return (void *)(intptr_t)rc;
}

/* A response queued while the server stops is dropped by MHD, which still says MHD_YES:
 * the line says status 0 and "shutdown" (it said 200, a status never sent). */
START_TEST(test_answer_queued_during_the_stop_is_not_logged_as_sent)
{
    const unsigned mode = (unsigned)_i;
    struct fixture f;
    fixture_open(&f);
    server_start(&f.s, f.mw, mode);
    atomic_store(&late_handler_in, false);
    atomic_store(&late_stop_called, false);
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, ask_for_a_late_answer, &f.s.port), 0);
    for (int i = 0; i < 2000 && !atomic_load(&late_handler_in); i++)
        sleep_ms(5);
    ck_assert(atomic_load(&late_handler_in));
    mhdctx_middleware_stopping(f.mw);
    atomic_store(&late_stop_called, true);
    support_server_stop(&f.s);
    void *rc;
    pthread_join(thread, &rc);
    ck_assert_msg((intptr_t)rc == HTTP_ECLOSED || (intptr_t)rc == HTTP_ERESET,
                  "nothing was to be sent; got %s", http_strerror((int)(intptr_t)rc));
    assert_line_of("late-1", "GET", "/answer-late", 0, "info", "shutdown");
    fixture_close(&f);
}
END_TEST

/* Sends a GET for @p path on a raw socket, reads the first bytes of the answer, then
 * resets the connection (SO_LINGER 0): the server is left writing to a closed peer. */
static void get_and_reset_mid_answer(uint16_t port, const char *path, const char *id)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    char request[256];
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: t\r\nX-Request-Id: %s\r\n\r\n", path, id);
    ck_assert_int_eq(send(fd, request, (size_t)n, 0), n);
    char first[4096];
    ck_assert_int_gt(recv(fd, first, sizeof first, 0), 0); /* the answer has begun */
    sleep_ms(100); /* the server fills the socket buffers and waits to write more */
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset), 0);
    close(fd);
}

/* A client that leaves while its answer is being sent ended the request itself: MHD
 * 0.9.75 reports a failed send (an error, in every mode), the access line says
 * client_abort with the status that was being sent. */
START_TEST(test_client_gone_mid_answer_is_client_abort)
{
    const unsigned mode = (unsigned)_i;
    struct fixture f;
    fixture_open(&f);
    server_start(&f.s, f.mw, mode);
    get_and_reset_mid_answer(f.s.port, "/big", "gone-mid-answer");
    ck_assert(support_capture_wait(ACCESS_MSG, 1, 10000));
    support_server_stop(&f.s);
    assert_line_of("gone-mid-answer", "GET", "/big", 200, "info", "client_abort");
    fixture_close(&f);
}
END_TEST

/* MHD's own messages (MHD_USE_ERROR_LOG) arrive as JSON lines through the logger. */
START_TEST(test_mhd_messages_routed)
{
    struct fixture f;
    fixture_open(&f);
    server_start_ex(&f.s, f.mw, MODE_EPOLL, MHD_USE_ERROR_LOG, NULL);
    http_conn *c;
    ck_assert_int_eq(http_connect(f.s.port, &c), HTTP_OK);
    ck_assert_int_eq(http_send_str(c, "GET /half HTTP/1.1\r\nHost: t\r\nX-Partial: \"\xff\x01"),
                     HTTP_OK);
    sleep_ms(50);
    http_close(c);
    ck_assert(support_capture_wait(ACCESS_MSG, 1, 5000));
    ck_assert(support_capture_wait("libmicrohttpd message", 1, 5000));
    support_server_stop(&f.s);
    json_t *all = support_capture_parsed(); /* every line, MHD's included, is valid JSON */
    json_t *line = support_find_line(all, "libmicrohttpd message", NULL, NULL);
    ck_assert_ptr_nonnull(line);
    ck_assert_str_eq(jstr(line, "level"), "warn");
    const char *text = jstr(line, "mhd");
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_gt(strlen(text), 0);
    ck_assert_msg(text[strlen(text) - 1] != '\n', "trailing newline kept: %s", text);
    assert_access_line(support_find_line(all, ACCESS_MSG, "path", "/half"), "", "/half", 0,
                       "info", "client_abort");
    json_decref(all);
    fixture_close(&f);
}
END_TEST

/* ==== tests: concurrency in every threading mode ===================================== */

#define N_CLIENTS  8
#define N_REQUESTS 25

struct client_job {
    uint16_t port;
    unsigned mode;
    unsigned index;
    bool keep_alive;
    unsigned ok;
    unsigned failures;
    char first_failure[256];
};

static void job_fail(struct client_job *job, const char *what, const char *id, int rc)
{
    if (job->failures++ == 0)
        snprintf(job->first_failure, sizeof job->first_failure, "%s (id %s, %s)", what, id,
                 http_strerror(rc));
}

static void *client_main(void *arg)
{
    struct client_job *job = arg;
    http_conn *c = NULL;
    for (unsigned i = 0; i < N_REQUESTS; i++) {
        char id[64], req[256];
        snprintf(id, sizeof id, "m%u-t%u-r%u-%08lx", job->mode, job->index, i,
                 (unsigned long)random());
        snprintf(req, sizeof req, "GET /c/%s HTTP/1.1\r\nHost: t\r\nX-Request-Id: %s\r\n%s\r\n",
                 id, id, job->keep_alive ? "" : "Connection: close\r\n");
        int rc = HTTP_OK;
        if (c == NULL)
            rc = http_connect(job->port, &c);
        http_response *r = NULL;
        if (rc == HTTP_OK)
            rc = http_send_str(c, req);
        if (rc == HTTP_OK)
            rc = http_read_response(c, &r);
        if (rc != HTTP_OK) {
            job_fail(job, "request failed", id, rc);
        } else if (r->status != 200) {
            job_fail(job, "status not 200", id, rc);
        } else if (http_header_count(r, "X-Request-Id") != 1 ||
                   strcmp(http_header(r, "X-Request-Id"), id) != 0) {
            job_fail(job, "wrong X-Request-Id", id, rc);
        } else if (strcmp(r->body, id) != 0) {
            job_fail(job, "wrong body", id, rc);
        } else {
            job->ok++;
        }
        http_response_free(r);
        if (!job->keep_alive || rc != HTTP_OK) {
            http_close(c);
            c = NULL;
        }
    }
    http_close(c);
    return NULL;
}

START_TEST(test_concurrency)
{
    const unsigned mode = (unsigned)_i;
    struct fixture f;
    fixture_open(&f);
    server_start_ex(&f.s, f.mw, mode, 0, f.app);
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());

    struct client_job jobs[N_CLIENTS];
    pthread_t threads[N_CLIENTS];
    for (unsigned i = 0; i < N_CLIENTS; i++) {
        jobs[i] = (struct client_job){
            .port = f.s.port, .mode = mode, .index = i, .keep_alive = i % 2 == 0};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, client_main, &jobs[i]), 0);
    }
    for (unsigned i = 0; i < N_CLIENTS; i++)
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
    for (unsigned i = 0; i < N_CLIENTS; i++) {
        ck_assert_msg(jobs[i].failures == 0, "mode %s client %u: %u failures, first: %s",
                      support_modes[mode].name, i, jobs[i].failures, jobs[i].first_failure);
        ck_assert_uint_eq(jobs[i].ok, N_REQUESTS);
    }
    const size_t total = N_CLIENTS * N_REQUESTS;
    ck_assert(support_capture_wait(ACCESS_MSG, total, 10000));
    support_server_stop(&f.s);

    ck_assert_uint_eq(atomic_load(&f.app->id_mismatch), 0);
    ck_assert_uint_eq(atomic_load(&f.app->ctx_missing), 0);
    ck_assert_uint_eq(atomic_load(&f.app->slot_violations), 0);
    ck_assert_uint_eq(atomic_load(&f.app->stale_current), 0);
    ck_assert_uint_gt(atomic_load(&f.app->conn_events), 0);
    ck_assert_uint_eq(f.app->overflow, 0);
    ck_assert_uint_eq(f.app->n_done, total);
    for (size_t i = 0; i < f.app->n_done; i++)
        ck_assert(f.app->done[i].current_ok && f.app->done[i].slot_ok);

    json_t *all = support_capture_parsed();
    size_t handler_lines = 0, access_lines = 0, idx;
    json_t *line;
    json_array_foreach(all, idx, line)
    {
        const char *message = jstr(line, "message");
        const char *id = jstr(line, "request_id");
        if (strcmp(message, HANDLER_MSG) == 0) {
            handler_lines++;
            const char *url = jstr(line, "url");
            ck_assert_ptr_nonnull(id);
            ck_assert_ptr_nonnull(url);
            ck_assert_msg(strncmp(url, "/c/", 3) == 0 && strcmp(url + 3, id) == 0,
                          "handler line for %s carries request_id %s", url, id);
        } else if (strcmp(message, ACCESS_MSG) == 0) {
            access_lines++;
            const char *path = jstr(line, "path");
            ck_assert_ptr_nonnull(path);
            ck_assert_msg(strncmp(path, "/c/", 3) == 0 && strcmp(path + 3, id) == 0,
                          "access line for %s carries request_id %s", path, id);
            ck_assert_int_eq(json_integer_value(json_object_get(line, "status")), 200);
            ck_assert_str_eq(jstr(line, "outcome"), "completed");
        }
    }
    ck_assert_uint_eq(handler_lines, total);
    ck_assert_uint_eq(access_lines, total);
    json_decref(all);
    fixture_close(&f);
}
END_TEST

/* ==== suite ========================================================================== */

static Suite *middleware_suite(void)
{
    Suite *suite = suite_create("middleware");
    TCase *tc = support_tcase(suite, "request_id", TEST_TIMEOUT_S, NULL, NULL);
    tcase_add_loop_test(tc, test_current_context, 0, (int)SUPPORT_N_MODES);
    tcase_add_test(tc, test_slot_preserved_across_body_calls);
    tcase_add_test(tc, test_hostile_request_ids);
    tcase_add_test(tc, test_valid_request_id_boundaries);
    tcase_add_test(tc, test_header_name_comparison_is_strncasecmp_in_c);
    tcase_add_test(tc, test_id_header_found_under_a_turkish_locale);
    tcase_add_test(tc, test_request_id_configuration);
    tcase_add_test(tc, test_custom_id_header_outlives_the_middleware);
    tcase_add_test(tc, test_respond_inside_an_apps_own_context);
    tcase_add_test(tc, test_untrusted_request_ids);

    tc = support_tcase(suite, "hooks", TEST_TIMEOUT_S, NULL, NULL);
    tcase_add_test(tc, test_hook_order_once_per_request);
    tcase_add_test(tc, test_hook_short_circuit_and_failure);
    tcase_add_test(tc, test_bearer_auth);

    tc = support_tcase(suite, "access_log", TEST_TIMEOUT_S, NULL, NULL);
    tcase_add_test(tc, test_access_log_lines);
    tcase_add_test(tc, test_access_line_time_is_the_end_of_the_request);
    tcase_add_test(tc, test_access_log_level_fn_and_query);
    tcase_add_test(tc, test_access_line_keys_are_reserved_and_unique);

    tc = support_tcase(suite, "lifecycle", TEST_TIMEOUT_S, NULL, NULL);
    tcase_add_test(tc, test_completion_callback);
    tcase_add_test(tc, test_keep_alive_and_pipelining);
    tcase_add_test(tc, test_client_abort);
    tcase_add_loop_test(tc, test_client_gone_mid_answer_is_client_abort, 0,
                        (int)SUPPORT_N_MODES);
    tcase_add_loop_test(tc, test_half_closed_client_and_icy_status, 0, (int)SUPPORT_N_MODES);
    tcase_add_loop_test(tc, test_answer_queued_during_the_stop_is_not_logged_as_sent, 0,
                        (int)SUPPORT_N_MODES);
    tcase_add_test(tc, test_mhd_messages_routed);

    tc = support_tcase(suite, "modes", TEST_TIMEOUT_S, NULL, NULL);
    tcase_add_loop_test(tc, test_concurrency, 0, (int)SUPPORT_N_MODES);
    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(middleware_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
