/*
 * access_log.c - one line per finished request, written from the completion callback:
 * what pino-http's autoLogging does, with per-route levels and a level callback.
 */
#include "middleware.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

mhdctx_error mhdctx_access_log_route(mhdctx_middleware *mw, const char *path,
                                     mhdctx_log_level level)
{
    if (path == NULL || (unsigned)level > MHDCTX_LOG_OFF)
        return MHDCTX_EINVAL;
    mhdctx_error rc = mhdctx__check_configurable(mw);
    if (rc != MHDCTX_OK)
        return rc;
    struct mhdctx__route *route = mhdctx__route_settings(mw, path);
    if (route == NULL)
        return MHDCTX_ENOMEM;
    route->has_level = true;
    route->level = level;
    return MHDCTX_OK;
}

mhdctx_error mhdctx_access_log_level_fn(mhdctx_middleware *mw, mhdctx_access_level_fn fn,
                                        void *cls)
{
    mhdctx_error rc = mhdctx__check_configurable(mw);
    if (rc == MHDCTX_OK) {
        mw->level_fn = fn;
        mw->level_cls = cls;
    }
    return rc;
}

mhdctx_error mhdctx_access_log_query(mhdctx_middleware *mw, bool include)
{
    mhdctx_error rc = mhdctx__check_configurable(mw);
    if (rc == MHDCTX_OK)
        mw->log_query = include;
    return rc;
}

static const char *outcome_name(enum MHD_RequestTerminationCode toe)
{
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK:
        return "completed";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
        return "timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
        return "shutdown";
    case MHD_REQUEST_TERMINATED_READ_ERROR:
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
        return "client_abort";
    case MHD_REQUEST_TERMINATED_WITH_ERROR:
    default:
        return "error";
    }
}

/* Whether the client has closed its side: the socket reads end of input or a reset. */
static bool peer_gone(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info == NULL)
        return false;
    char byte;
    ssize_t n = recv(info->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE));
}

/*
 * How the request ended, as the access line says it. Two corrections to MHD's code:
 * MHD 0.9.75 reports a client that closed after sending a whole request as an error -
 * before its answer in poll and select modes, while the answer was being sent in every
 * mode (the send failed): it is a client abort; and once the application said the
 * server is stopping, a request that ends without an answer ended because of the stop,
 * however MHD saw it.
 */
static const char *request_outcome(const mhdctx_middleware *mw, const mhdctx_context *ctx,
                                   struct MHD_Connection *connection, unsigned status,
                                   enum MHD_RequestTerminationCode toe)
{
    if (atomic_load(&ctx->timed_out))
        return "timeout"; /* answered 504 by the application */
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && status == 0 &&
        atomic_load(&mw->stopping))
        return "shutdown";
    if (toe == MHD_REQUEST_TERMINATED_WITH_ERROR && peer_gone(connection))
        return "client_abort";
    return outcome_name(toe);
}

static mhdctx_log_level level_for(const mhdctx_middleware *mw, const mhdctx_context *ctx,
                                   unsigned status, const char *outcome)
{
    mhdctx_log_level level = MHDCTX_LOG_INFO;
    if (status >= 500 || (status == 0 && strcmp(outcome, "error") == 0))
        level = MHDCTX_LOG_ERROR;
    else if (status >= 400)
        level = MHDCTX_LOG_WARN;
    const struct mhdctx__route *route = mhdctx__route_find(mw, mhdctx_path(ctx));
    if (route && route->has_level)
        level = route->level;
    if (mw->level_fn)
        level = mw->level_fn(ctx, status, level, mw->level_cls);
    return level;
}

/* The status MHD sent: MHD knows it for every response, ours, the application's and
 * its own error pages. 0 when no response was sent (the client left first). */
static unsigned response_status(struct MHD_Connection *connection, const mhdctx_context *ctx)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_HTTP_STATUS);
    if (info && info->http_status)
        return info->http_status;
    return ctx->status;
}

void mhdctx__access_log(const mhdctx_middleware *mw, mhdctx_context *ctx,
                        struct MHD_Connection *connection,
                        enum MHD_RequestTerminationCode toe)
{
    if (mhdctx_log_get_level() == MHDCTX_LOG_OFF)
        return; /* no line can be written: nothing to work out */
    unsigned status = response_status(connection, ctx);
    const char *outcome = request_outcome(mw, ctx, connection, status, toe);
    mhdctx_log_level level = level_for(mw, ctx, status, outcome);
    if (!mhdctx_log_enabled(level))
        return;
    /* Microseconds precision is plenty and keeps the number short. */
    double duration_ms = (double)(long long)(mhdctx_elapsed_ms(ctx) * 1000.0) / 1000.0;
    mhdctx_field fields[9];
    size_t n = 0;
    fields[n++] = MHDCTX_F_STR("method", mhdctx_method(ctx));
    fields[n++] = MHDCTX_F_STR("path", mhdctx_path(ctx));
    if (mw->log_query && mhdctx_query(ctx))
        fields[n++] = MHDCTX_F_STR("query", mhdctx_query(ctx));
    fields[n++] = MHDCTX_F_UINT("status", status);
    fields[n++] = MHDCTX_F_DOUBLE("duration_ms", duration_ms);
    fields[n++] = MHDCTX_F_STR("outcome", outcome);
    if (ctx->parent_span_id[0])
        fields[n++] = MHDCTX_F_STR("parent_span_id", ctx->parent_span_id);
    mhdctx_id_verdict verdict = mhdctx_request_id_verdict(ctx);
    if (verdict != MHDCTX_ID_VALID && verdict != MHDCTX_ID_MISSING)
        fields[n++] = MHDCTX_F_STR("request_id_replaced", mhdctx_id_verdict_name(verdict));
    /* every key above is reserved (context.c): no user key repeats one */
    mhdctx__log_reserved_fields(ctx, level, fields, n, "request completed");
}
