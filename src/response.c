/*
 * response.c - responses created for one request, carrying its request id.
 * MHD responses can be shared between connections (a static 404 page queued by many
 * requests at once), so the library never adds a header to a response it did not
 * create: these helpers create, decorate, queue and release their own.
 */
#include "middleware.h"

#include <stdlib.h>
#include <string.h>

mhdctx_error mhdctx_response_add_request_id(struct MHD_Response *response,
                                            const mhdctx_context *ctx)
{
    if (response == NULL || ctx == NULL || ctx->request_id[0] == '\0')
        return MHDCTX_EINVAL;
    if (MHD_add_response_header(response, ctx->id_header, ctx->request_id) != MHD_YES)
        return MHDCTX_ENOMEM;
    return MHDCTX_OK;
}

static void free_body(void *body)
{
    mhdctx__free(body);
}

/* Takes @body (heap, freed by MHD or here on failure). */
static enum MHD_Result queue_owned(struct MHD_Connection *connection, unsigned status,
                                   const char *content_type, char *body, size_t len,
                                   const char *header, const char *value)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer_with_free_callback_cls(len, body, free_body, body);
    if (response == NULL) {
        mhdctx__free(body);
        return MHD_NO;
    }
    mhdctx_context *ctx = mhdctx_current();
    /* "" is no type (MHD refuses an empty value, which would cost the whole answer). */
    bool ok = !content_type || !content_type[0] ||
              MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (ok && ctx)
        ok = mhdctx_response_add_request_id(response, ctx) == MHDCTX_OK;
    if (ok && header)
        ok = MHD_add_response_header(response, header, value) == MHD_YES;
    if (ok && ctx && ctx->phase == MHDCTX__PHASE_HOOKS && ctx->deferred == NULL) {
        /* Called from a hook, during MHD's first call: hold it for the next call. */
        ctx->deferred = response;
        ctx->deferred_status = status;
        return MHD_YES;
    }
    enum MHD_Result result = ok ? MHD_queue_response(connection, status, response) : MHD_NO;
    if (result == MHD_YES && ctx)
        ctx->status = status;
    MHD_destroy_response(response);
    return result;
}

enum MHD_Result mhdctx__queue_deferred(mhdctx_context *ctx, struct MHD_Connection *connection)
{
    if (ctx->deferred == NULL) {
        /* The hook queued its own response with MHD_queue_response(), or none at all:
         * then close rather than leave the client waiting. */
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_HTTP_STATUS);
        return info && info->http_status ? MHD_YES : MHD_NO;
    }
    enum MHD_Result result =
        MHD_queue_response(connection, ctx->deferred_status, ctx->deferred);
    if (result == MHD_YES)
        ctx->status = ctx->deferred_status;
    mhdctx__drop_deferred(ctx);
    return result;
}

void mhdctx__drop_deferred(mhdctx_context *ctx)
{
    if (ctx->deferred) {
        MHD_destroy_response(ctx->deferred);
        ctx->deferred = NULL;
    }
}

enum MHD_Result mhdctx_respond(struct MHD_Connection *connection, unsigned int status,
                               const char *content_type, const void *body, size_t len)
{
    if (connection == NULL || (body == NULL && len > 0))
        return MHD_NO;
    char *copy = mhdctx__malloc(len ? len : 1);
    if (copy == NULL)
        return MHD_NO;
    if (len)
        memcpy(copy, body, len);
    return queue_owned(connection, status, content_type, copy, len, NULL, NULL);
}

static enum MHD_Result respond_json(struct MHD_Connection *connection, unsigned status,
                                    json_t *body, const char *header, const char *value)
{
    size_t len = 0;
    char *text = (connection && body)
                     ? mhdctx__json_dump(body, JSON_COMPACT | JSON_ENCODE_ANY, &len)
                     : NULL;
    json_decref(body);
    if (text == NULL)
        return MHD_NO;
    return queue_owned(connection, status, "application/json", text, len, header, value);
}

enum MHD_Result mhdctx_respond_json_new(struct MHD_Connection *connection, unsigned int status,
                                        json_t *body)
{
    return respond_json(connection, status, body, NULL, NULL);
}

enum MHD_Result mhdctx__respond_error_with(struct MHD_Connection *connection,
                                           unsigned int status, const char *message,
                                           const char *header, const char *value)
{
    json_t *body = json_pack("{s:s, s:s}", "error", message ? message : "error", "request_id",
                             mhdctx_request_id(mhdctx_current()));
    return respond_json(connection, status, body, header, value);
}

enum MHD_Result mhdctx_respond_error(struct MHD_Connection *connection, unsigned int status,
                                     const char *message)
{
    return mhdctx__respond_error_with(connection, status, message, NULL, NULL);
}

enum MHD_Result mhdctx_respond_deadline_exceeded(struct MHD_Connection *connection)
{
    mhdctx_context *ctx = mhdctx_current();
    if (ctx)
        atomic_store(&ctx->timed_out, true);
    return mhdctx_respond_error(connection, MHD_HTTP_GATEWAY_TIMEOUT, "deadline_exceeded");
}
