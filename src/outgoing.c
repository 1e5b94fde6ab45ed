/*
 * outgoing.c - calls to other services made for a request. Each call is a client span
 * of its own (a fresh span id whose parent is the request's server span, as
 * OpenTelemetry does), so two calls never share a parent id downstream; the call's end
 * is logged as the access line of the outgoing side.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

mhdctx_error mhdctx_outgoing_start(mhdctx_outgoing *call, mhdctx_context *ctx)
{
    if (call == NULL)
        return MHDCTX_EINVAL;
    memset(call, 0, sizeof *call);
    if (ctx == NULL)
        ctx = mhdctx_current();
    char trace_id[MHDCTX_TRACE_ID_LEN + 1];
    unsigned char flags = MHDCTX__TRACE_FLAGS_NEW; /* without a traced context: a new trace */
    if (ctx)
        mhdctx__context_draw_ids(ctx);
    if (ctx && ctx->trace_id[0]) {
        memcpy(trace_id, ctx->trace_id, sizeof trace_id);
        memcpy(call->parent_span_id, ctx->span_id, sizeof call->parent_span_id);
        flags = ctx->trace_flags & MHDCTX__TRACE_FLAGS_SENT;
        snprintf(call->tracestate, sizeof call->tracestate, "%s", mhdctx_tracestate(ctx));
    } else {
        mhdctx__random_hex(trace_id, MHDCTX_TRACE_ID_LEN / 2); /* no request: new trace */
    }
    if (ctx)
        memcpy(call->request_id, ctx->request_id, ctx->request_id_len + 1); /* not past it */
    else
        mhdctx_uuid_v4(call->request_id);
    mhdctx__random_hex(call->span_id, MHDCTX_SPAN_ID_LEN / 2);
    mhdctx_traceparent_format(call->traceparent, trace_id, call->span_id, flags);
    call->ctx = mhdctx_context_ref(ctx);
    call->start_ns = mhdctx__monotonic_ns();
    return MHDCTX_OK;
}

/* Where the authority (user info, host, port) starts: after "scheme://", after the "//"
 * of a scheme-relative URL; a path-only URL has none (the authority found is empty). A
 * "://" counts only before the first '/', '?' or '#': one in the query is not a scheme. */
static const char *authority_start(const char *url)
{
    const char *scheme_end = strstr(url, "://");
    if (scheme_end && (size_t)(scheme_end - url) < strcspn(url, "/?#"))
        return scheme_end + 3;
    return strncmp(url, "//", 2) == 0 ? url + 2 : url;
}

/* Whether the authority @a (@len bytes, past any user info) is not host[:port]: a port
 * (after the first ':' outside an IPv6 literal's brackets) with anything but digits. */
static bool authority_malformed(const char *a, size_t len)
{
    const char *end = a + len, *host_end = a;
    if (len > 0 && a[0] == '[') {
        host_end = memchr(a, ']', len);
        if (host_end == NULL)
            return true;
    }
    const char *colon = memchr(host_end, ':', (size_t)(end - host_end));
    for (const char *d = colon ? colon + 1 : end; d < end; d++) {
        if (*d < '0' || *d > '9')
            return true;
    }
    return false;
}

/* scheme://host[:port]/path: user info and the query string may hold secrets. */
static size_t url_for_log(const char *url, char *out, size_t size)
{
    const char *rest = authority_start(url);
    size_t scheme_len = (size_t)(rest - url);
    size_t authority_len = strcspn(rest, "/?#");
    /* User info runs to the last '@' of the authority: a password may hold a raw '@'. */
    const char *at = memrchr(rest, '@', authority_len);
    const char *host = at ? at + 1 : rest;
    /* A password with a raw '/', '?' or '#' cuts the authority short ("user:pa/ss@h"
     * reads as host "user", port "pa"; "u:p@ss:w/rd@h" as host "ss", port "w"). Such a
     * URL is not what it seems anyway: all up to its last '@' is taken for user info,
     * rather than risk logging a password. */
    const char *last_at = strrchr(rest, '@');
    if (last_at && last_at >= rest + authority_len &&
        authority_malformed(host, authority_len - (size_t)(host - rest))) {
        at = last_at;
        host = at + 1;
        authority_len = (size_t)(host - rest) + strcspn(host, "/?#");
    }
    size_t host_len = authority_len - (size_t)(host - rest);
    size_t path_len = strcspn(rest + authority_len, "?#");
    int n = snprintf(out, size, "%.*s%.*s%.*s", (int)scheme_len, url, (int)host_len, host,
                     (int)path_len, rest + authority_len);
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

void mhdctx_outgoing_finish(mhdctx_outgoing *call, const char *method, const char *url,
                            unsigned int status, const char *error)
{
    if (call == NULL)
        return;
    char safe_url[2048];
    size_t url_len = url_for_log(url ? url : "", safe_url, sizeof safe_url);
    double duration_ms = (double)((mhdctx__monotonic_ns() - call->start_ns) / 1000) / 1000.0;
    mhdctx_log_level level = error                          ? MHDCTX_LOG_ERROR
                             : status >= 500 || status == 0 ? MHDCTX_LOG_WARN
                                                            : MHDCTX_LOG_INFO;
    mhdctx_field fields[8];
    size_t n = 0;
    fields[n++] = MHDCTX_F_STR("method", method ? method : "GET");
    fields[n++] = MHDCTX_F_BYTES("url", safe_url, url_len);
    fields[n++] = MHDCTX_F_UINT("status", status);
    fields[n++] = MHDCTX_F_DOUBLE("duration_ms", duration_ms);
    fields[n++] = MHDCTX_F_STR("parent_span_id", call->parent_span_id);
    if (error)
        fields[n++] = MHDCTX_F_STR("error", error);
    /* The line's span_id is the client span; without a context the trace and request
     * ids of the headers that were sent name the call. */
    char trace_id[MHDCTX_TRACE_ID_LEN + 1];
    memcpy(trace_id, call->traceparent + 3, MHDCTX_TRACE_ID_LEN);
    trace_id[MHDCTX_TRACE_ID_LEN] = '\0';
    struct mhdctx__line_ids ids = {call->span_id, trace_id, call->request_id};
    mhdctx__log_span(call->ctx, &ids, level, fields, n, "outgoing request completed");
    mhdctx_context_unref(call->ctx);
    call->ctx = NULL;
}
