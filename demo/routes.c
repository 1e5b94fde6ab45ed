/*
 * routes.c - the demo's routes. Every response goes through mhdctx_respond* (or adds
 * the id with mhdctx_response_add_request_id), so each one carries X-Request-Id.
 */
#include "routes.h"
#include "users.h"
#include "work.h"

#include <stdlib.h>
#include <string.h>

/* Markers in the handler's req_cls slot. MHD's idiom: the first call only sees the
 * headers, the answer comes at the second (a response queued at the first call makes
 * MHD close the connection). After the answer, any later call is absorbed. */
static char headers_seen;
static char answered;

/* State of a POST /echo request, kept in the handler's req_cls slot. */
struct echo_body {
    struct demo_state base;
    char *data;
    size_t len;
    bool too_large;
};

void demo_request_completed(void *cls, struct MHD_Connection *connection, void **req_cls,
                            enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)connection;
    (void)toe;
    struct demo_state *state = *req_cls;
    if (state && *req_cls != &answered && *req_cls != &headers_seen) {
        state->free(state);
        *req_cls = NULL;
    }
}

/* An error response of our own with one extra header: the documented way to put the
 * request id on a response the application builds itself. */
static enum MHD_Result error_with_header(struct MHD_Connection *connection, unsigned status,
                                         const char *error, const char *header,
                                         const char *value)
{
    json_t *body = json_pack("{s:s, s:s}", "error", error, "request_id",
                             mhdctx_request_id(mhdctx_current()));
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL)
        return MHD_NO;
    struct MHD_Response *response =
        MHD_create_response_from_buffer_with_free_callback_cls(strlen(text), text, free, text);
    if (response == NULL) {
        free(text);
        return MHD_NO;
    }
    enum MHD_Result result = MHD_NO;
    if (mhdctx_response_add_request_id(response, mhdctx_current()) == MHDCTX_OK &&
        MHD_add_response_header(response, header, value) == MHD_YES &&
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") ==
            MHD_YES)
        result = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return result;
}

static enum MHD_Result method_not_allowed(struct MHD_Connection *connection, const char *allow)
{
    return error_with_header(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                             MHD_HTTP_HEADER_ALLOW, allow);
}

static enum MHD_Result unauthorized(struct MHD_Connection *connection)
{
    return error_with_header(connection, MHD_HTTP_UNAUTHORIZED, "authentication_required",
                             MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
}

static json_t *user_id_json(const mhdctx_context *ctx)
{
    const char *user = mhdctx_user_id(ctx);
    return user ? json_string(user) : json_null();
}

static enum MHD_Result get_root(struct MHD_Connection *connection)
{
    mhdctx_context *ctx = mhdctx_current();
    return mhdctx_respond_json_new(connection, MHD_HTTP_OK,
                                   json_pack("{s:s, s:o}", "request_id", mhdctx_request_id(ctx),
                                             "user_id", user_id_json(ctx)));
}

static enum MHD_Result get_whoami(struct MHD_Connection *connection)
{
    mhdctx_context *ctx = mhdctx_current();
    if (mhdctx_user_id(ctx) == NULL)
        return unauthorized(connection);
    mhdctx_log(MHDCTX_LOG_INFO, "whoami: authenticated user");
    return mhdctx_respond_json_new(
        connection, MHD_HTTP_OK,
        json_pack("{s:s, s:o, s:o}", "request_id", mhdctx_request_id(ctx), "user_id",
                  user_id_json(ctx), "roles", mhdctx_roles_json(ctx)));
}

/* Content-Length says too much: answer before reading a byte of the body. */
static bool declared_too_large(struct MHD_Connection *connection)
{
    const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length == NULL)
        return false;
    char *end;
    unsigned long long n = strtoull(length, &end, 10);
    return *end == '\0' && n > DEMO_MAX_BODY;
}

static void echo_free(struct demo_state *state)
{
    struct echo_body *body = (struct echo_body *)state;
    free(body->data);
    free(body);
}

static void echo_append(struct echo_body *body, const char *data, size_t len)
{
    if (body->too_large || len == 0)
        return;
    if (body->len + len > DEMO_MAX_BODY) {
        body->too_large = true; /* keep reading, drop the rest, answer 413 at the end */
        return;
    }
    char *grown = realloc(body->data, body->len + len);
    if (grown == NULL) {
        body->too_large = true;
        return;
    }
    memcpy(grown + body->len, data, len);
    body->data = grown;
    body->len += len;
}

static enum MHD_Result post_echo(struct MHD_Connection *connection, const char *upload_data,
                                 size_t *upload_data_size, void **req_cls)
{
    struct echo_body *body = *req_cls;
    if (body == NULL) { /* first call: headers only */
        if (declared_too_large(connection))
            return mhdctx_respond_error(connection, MHD_HTTP_CONTENT_TOO_LARGE,
                                        "body_too_large");
        body = calloc(1, sizeof *body);
        if (body == NULL)
            return MHD_NO;
        body->base.free = echo_free;
        *req_cls = body;
        return MHD_YES;
    }
    if (*upload_data_size) {
        echo_append(body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (body->too_large)
        return mhdctx_respond_error(connection, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large");
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_UINT("bytes", body->len)),
                      "echo: body received");
    const char *type =
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    return mhdctx_respond(connection, MHD_HTTP_OK,
                          type && type[0] ? type : "application/octet-stream", body->data,
                          body->len);
}

/* GET routes whose work runs on the worker pool. */
static bool worker_route(const struct demo_config *cfg, const char *path, enum work_kind *kind)
{
    if (strcmp(path, "/async") == 0)
        *kind = WORK_ASYNC;
    else if (strcmp(path, "/slow") == 0)
        *kind = WORK_SLOW;
    else if (strcmp(path, "/fanout") == 0 && cfg->upstream)
        *kind = WORK_FANOUT;
    else
        return false;
    return true;
}

enum MHD_Result demo_handler(void *cls, struct MHD_Connection *connection, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **req_cls)
{
    const struct demo_config *cfg = cls;
    (void)version;
    /* The decoded path without the query, as MHD gives it: /users/%37 is /users/7, and
     * the access-log filter (mhdctx_access_log_route) matches the same path. */
    const char *path = url;
    bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    const char *allow = NULL; /* one of the routes below, asked with another method */
    enum work_kind kind;
    if (worker_route(cfg, path, &kind)) {
        if (get)
            return work_route(connection, cfg, kind, upload_data, upload_data_size, req_cls);
        allow = "GET";
    } else if (strcmp(path, "/test") == 0 && cfg->trace_test) {
        if (post)
            return work_route(connection, cfg, WORK_TRACE_TEST, upload_data, upload_data_size,
                              req_cls);
        allow = "POST";
    } else if (strcmp(path, "/echo") == 0) {
        if (post)
            return post_echo(connection, upload_data, upload_data_size, req_cls);
        allow = "POST";
    }
    if (*req_cls == NULL) {
        *req_cls = &headers_seen;
        return MHD_YES;
    }
    if (*req_cls == &answered || *upload_data_size) { /* a body nobody asked for */
        *upload_data_size = 0;
        return MHD_YES;
    }
    *req_cls = &answered;
    if (allow)
        return method_not_allowed(connection, allow);
    bool known = strcmp(path, "/") == 0 || strcmp(path, "/whoami") == 0 ||
                 strcmp(path, "/health") == 0 || strncmp(path, "/users/", 7) == 0;
    if (!known)
        return mhdctx_respond_error(connection, MHD_HTTP_NOT_FOUND, "not_found");
    if (!get && !head)
        return method_not_allowed(connection, "GET, HEAD");
    if (strcmp(path, "/") == 0)
        return get_root(connection);
    if (strcmp(path, "/whoami") == 0)
        return get_whoami(connection);
    if (strcmp(path, "/health") == 0)
        return mhdctx_respond(connection, MHD_HTTP_OK, "application/json",
                              "{\"status\":\"ok\"}", 15);
    return users_get(connection, path + 7);
}
