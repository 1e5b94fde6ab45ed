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
 * mode (the send failed): it is a client abort, unless the server closed the connection
 * itself (the handler, a hook or the middleware said MHD_NO: a client that only
 * half-closed was waiting for its answer); and once the application said the
 * server is stopping, a request that ends without an answer ended because of the stop,
 * however MHD saw it.
 */
static const char *request_outcome(const mhdctx_middleware *mw, const mhdctx_context *ctx,
                                   struct MHD_Connection *connection, unsigned status,
                                   enum MHD_RequestTerminationCode toe)
{
    if (atomic_load(&ctx->timed_out))
        return "timeout"; /* answered 504 by the application */
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && status == 0 && atomic_load(&mw->stopping))
        return "shutdown";
    if (toe == MHD_REQUEST_TERMINATED_WITH_ERROR && !ctx->closed_by_server &&
        peer_gone(connection))
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
    const struct mhdctx__route *route = ctx->route_settings; /* NULL: MHD refused it first */
    if (route && route->has_level)
        level = route->level;
    if (mw->level_fn)
        level = mw->level_fn(ctx, status, level, mw->level_cls);
    return level;
}

/* The status MHD sent: MHD knows it for every response, ours, the application's and
 * its own error pages. 0 when no response was sent (the client left first). */
static unsigned response_status(const mhdctx_middleware *mw, struct MHD_Connection *connection,
                                const mhdctx_context *ctx)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_HTTP_STATUS);
    /* MHD keeps MHD_ICY_FLAG in the code it reports ("ICY 200 OK" is a 200) */
    if (info && info->http_status)
        return info->http_status & ~MHD_ICY_FLAG;
    /* MHD 0.9.75 answers MHD_YES to a response queued while it stops, and drops it:
     * during a stop only MHD's own record says what was sent. */
    if (atomic_load(&mw->stopping))
        return 0;
    return ctx->status & ~MHD_ICY_FLAG;
}

/* A plain text: a name from this file, or hex. */
static void put_plain_string(mhdctx__buf *b, const char *s)
{
    mhdctx__buf_putc(b, '"');
    mhdctx__buf_puts(b, s);
    mhdctx__buf_putc(b, '"');
}

static void put_client_string(mhdctx__buf *b, const char *s)
{
    mhdctx__json_string(b, s, strlen(s));
}

/* The line is written field by field with literal keys, not through a field array:
 * it is the one line every request pays for. Every key here is reserved (context.c):
 * no user key repeats one. */
static void write_line(const mhdctx_middleware *mw, mhdctx_context *ctx, mhdctx_log_level level,
                       unsigned status, const char *outcome)
{
    static const char message[] = "request completed";
    /* One clock reading for the duration and the line's time. Whole microseconds are
     * plenty and keep the number short; written as an integer with a decimal point,
     * without a double in between. */
    uint64_t now = mhdctx__monotonic_ns();
    uint64_t duration_us = (now - ctx->start_mono_ns) / 1000;
    mhdctx__buf b;
    bool locked = mhdctx__line_open(&b, ctx, level, now, message, sizeof message - 1);
    MHDCTX__PUT_LITERAL(&b, ",\"method\":");
    put_client_string(&b, mhdctx_method(ctx));
    MHDCTX__PUT_LITERAL(&b, ",\"path\":");
    put_client_string(&b, mhdctx_path(ctx));
    if (mw->log_query && mhdctx_query(ctx)) {
        MHDCTX__PUT_LITERAL(&b, ",\"query\":");
        put_client_string(&b, mhdctx_query(ctx));
    }
    MHDCTX__PUT_LITERAL(&b, ",\"status\":");
    mhdctx__json_uint(&b, status);
    MHDCTX__PUT_LITERAL(&b, ",\"duration_ms\":");
    mhdctx__json_thousandths(&b, duration_us);
    MHDCTX__PUT_LITERAL(&b, ",\"outcome\":");
    put_plain_string(&b, outcome);
    if (ctx->parent_span_id[0]) {
        MHDCTX__PUT_LITERAL(&b, ",\"parent_span_id\":");
        put_plain_string(&b, ctx->parent_span_id);
    }
    mhdctx_id_verdict verdict = mhdctx_request_id_verdict(ctx);
    if (verdict != MHDCTX_ID_VALID && verdict != MHDCTX_ID_MISSING) {
        MHDCTX__PUT_LITERAL(&b, ",\"request_id_replaced\":");
        put_plain_string(&b, mhdctx_id_verdict_name(verdict));
    }
    mhdctx__line_close(&b, ctx, level, locked);
}

void mhdctx__access_log(const mhdctx_middleware *mw, mhdctx_context *ctx,
                        struct MHD_Connection *connection, enum MHD_RequestTerminationCode toe)
{
    if (mhdctx_log_get_level() == MHDCTX_LOG_OFF)
        return; /* no line can be written: nothing to work out */
    unsigned status = response_status(mw, connection, ctx);
    const char *outcome = request_outcome(mw, ctx, connection, status, toe);
    mhdctx_log_level level = level_for(mw, ctx, status, outcome);
    if (!mhdctx_log_enabled(level))
        return;
    write_line(mw, ctx, level, status, outcome);
}
