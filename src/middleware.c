/*
 * middleware.c - the only module that knows MHD's request lifecycle.
 *
 *   URI-log callback      -> context created (earliest moment: the request line)
 *   first handler call    -> method, request id, hooks; then the wrapped handler
 *   later handler calls   -> the wrapped handler (body chunks, final call)
 *   completion callback   -> application's callback, access-log line, reference dropped
 *
 * Each of these runs with the request's context current on MHD's thread, and restores
 * the previous one on the way out.
 */
#include "internal.h"
#include "middleware.h"

#include <string.h>

mhdctx_middleware *mhdctx_middleware_new(MHD_AccessHandlerCallback handler, void *handler_cls)
{
    if (handler == NULL)
        return NULL;
    mhdctx_middleware *mw = mhdctx__calloc(1, sizeof *mw);
    if (mw == NULL)
        return NULL;
    mw->handler = handler;
    mw->handler_cls = handler_cls;
    strcpy(mw->id_header, MHDCTX__DEFAULT_ID_HEADER);
    mw->id_header_len = strlen(mw->id_header);
    mw->id_max_len = MHDCTX_REQUEST_ID_DEFAULT_MAX;
    mw->trust_incoming_ids = true;
    mw->deadline_ms = 30000;
    mhdctx__middleware_fill_options(mw);
    return mw;
}

void mhdctx_middleware_free(mhdctx_middleware *mw)
{
    if (mw == NULL)
        return;
    for (size_t i = 0; i < mw->n_routes; i++)
        mhdctx__free(mw->routes[i].path);
    mhdctx__free(mw->routes);
    for (size_t i = 0; i < mw->n_hooks; i++) {
        if (mw->hooks[i].owned)
            mhdctx__free(mw->hooks[i].cls);
    }
    mhdctx__free(mw->hooks);
    mhdctx__free(mw);
}

void mhdctx_middleware_stopping(mhdctx_middleware *mw)
{
    if (mw)
        atomic_store(&mw->stopping, true);
}

const struct MHD_OptionItem *mhdctx_mhd_options(mhdctx_middleware *mw)
{
    return mw ? mw->options : NULL;
}

/* ---- configuration ------------------------------------------------------------------- */

mhdctx_error mhdctx__check_configurable(const mhdctx_middleware *mw)
{
    if (mw == NULL)
        return MHDCTX_EINVAL;
    return atomic_load(&mw->started) ? MHDCTX_ESTATE : MHDCTX_OK;
}

mhdctx_error mhdctx_on_completed(mhdctx_middleware *mw, MHD_RequestCompletedCallback cb,
                                 void *cls)
{
    mhdctx_error rc = mhdctx__check_configurable(mw);
    if (rc == MHDCTX_OK) {
        mw->completed = cb;
        mw->completed_cls = cls;
    }
    return rc;
}

/* A header name is an HTTP token. */
static bool header_name_ok(const char *name, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", c))
            return false;
    }
    return true;
}

mhdctx_error mhdctx_set_request_id_header(mhdctx_middleware *mw, const char *name)
{
    mhdctx_error rc = mhdctx__check_configurable(mw);
    if (rc != MHDCTX_OK)
        return rc;
    size_t len = name ? strlen(name) : 0;
    if (!header_name_ok(name, len))
        return MHDCTX_EINVAL;
    if (len >= sizeof mw->id_header)
        return MHDCTX_ELIMIT;
    memcpy(mw->id_header, name, len + 1);
    mw->id_header_len = len;
    mw->id_header_custom = strcmp(name, MHDCTX__DEFAULT_ID_HEADER) != 0;
    return MHDCTX_OK;
}

mhdctx_error mhdctx_set_request_id_max_length(mhdctx_middleware *mw, size_t max_len)
{
    mhdctx_error rc = mhdctx__check_configurable(mw);
    if (rc != MHDCTX_OK)
        return rc;
    if (max_len == 0 || max_len > MHDCTX_REQUEST_ID_LIMIT)
        return MHDCTX_EINVAL;
    mw->id_max_len = max_len;
    return MHDCTX_OK;
}

mhdctx_error mhdctx_set_trust_incoming_request_id(mhdctx_middleware *mw, bool trust)
{
    mhdctx_error rc = mhdctx__check_configurable(mw);
    if (rc == MHDCTX_OK)
        mw->trust_incoming_ids = trust;
    return rc;
}

struct mhdctx__route *mhdctx__route_settings(mhdctx_middleware *mw, const char *path)
{
    const struct mhdctx__route *known = mhdctx__route_find(mw, path);
    if (known)
        return &mw->routes[known - mw->routes];
    char *copy = mhdctx__strdup(path);
    struct mhdctx__route *grown =
        copy ? mhdctx__realloc(mw->routes, (mw->n_routes + 1) * sizeof *grown) : NULL;
    if (grown == NULL) {
        mhdctx__free(copy);
        return NULL;
    }
    mw->routes = grown;
    grown[mw->n_routes] = (struct mhdctx__route){.path = copy};
    return &grown[mw->n_routes++];
}

const struct mhdctx__route *mhdctx__route_find(const mhdctx_middleware *mw, const char *path)
{
    for (size_t i = 0; i < mw->n_routes; i++) {
        if (strcmp(mw->routes[i].path, path) == 0)
            return &mw->routes[i];
    }
    return NULL;
}

mhdctx_error mhdctx_set_deadline_ms(mhdctx_middleware *mw, uint64_t ms)
{
    mhdctx_error rc = mhdctx__check_configurable(mw);
    if (rc == MHDCTX_OK)
        mw->deadline_ms = ms;
    return rc;
}

mhdctx_error mhdctx_route_deadline_ms(mhdctx_middleware *mw, const char *path, uint64_t ms)
{
    mhdctx_error rc = mhdctx__check_configurable(mw);
    if (rc != MHDCTX_OK || path == NULL)
        return rc != MHDCTX_OK ? rc : MHDCTX_EINVAL;
    struct mhdctx__route *route = mhdctx__route_settings(mw, path);
    if (route == NULL)
        return MHDCTX_ENOMEM;
    route->has_deadline = true;
    route->deadline_ms = ms;
    return MHDCTX_OK;
}

mhdctx_error mhdctx_set_trust_incoming_deadline(mhdctx_middleware *mw, bool trust)
{
    mhdctx_error rc = mhdctx__check_configurable(mw);
    if (rc == MHDCTX_OK)
        mw->trust_incoming_deadline = trust;
    return rc;
}

mhdctx_error mhdctx_add_hook(mhdctx_middleware *mw, mhdctx_hook_fn hook, void *cls)
{
    mhdctx_error rc = mhdctx__check_configurable(mw);
    if (rc != MHDCTX_OK)
        return rc;
    if (hook == NULL)
        return MHDCTX_EINVAL;
    struct mhdctx__hook *grown = mhdctx__realloc(mw->hooks, (mw->n_hooks + 1) * sizeof *grown);
    if (grown == NULL)
        return MHDCTX_ENOMEM;
    grown[mw->n_hooks++] = (struct mhdctx__hook){hook, cls, false};
    mw->hooks = grown;
    return MHDCTX_OK;
}

/* ---- request id ----------------------------------------------------------------------- */

struct header_scan {
    const char *name;
    size_t name_len;
    const char *first;
    size_t first_len;
    unsigned count;
};

/* The headers the middleware reads at the first call, found in one pass. */
enum { SCAN_ID, SCAN_TRACEPARENT, SCAN_TIMEOUT, SCAN_COUNT };

struct header_scans {
    struct header_scan of[SCAN_COUNT];
    size_t n;
};

static void note_value(struct header_scan *scan, const char *value, size_t value_size)
{
    if (scan->count++ == 0) {
        scan->first = value;
        scan->first_len = value ? value_size : 0;
    }
}

static enum MHD_Result count_headers(void *cls, enum MHD_ValueKind kind, const char *key,
                                     size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    struct header_scans *scans = cls;
    /* Lengths first: most headers are none of these, and a length is one compare. */
    for (size_t i = 0; key && i < scans->n; i++) {
        if (key_size == scans->of[i].name_len &&
            mhdctx__ascii_case_equal_n(key, scans->of[i].name, key_size))
            note_value(&scans->of[i], value, value_size);
    }
    return MHD_YES;
}

/* MHD's plain lookup returns only the first value: count them all, a repeated id
 * header is ambiguous and is replaced. */
unsigned mhdctx__header_values(struct MHD_Connection *connection, const char *name,
                               const char **first, size_t *first_len)
{
    struct header_scans scans = {.of = {{.name = name, .name_len = strlen(name)}}, .n = 1};
    MHD_get_connection_values_n(connection, MHD_HEADER_KIND, count_headers, &scans);
    *first = scans.of[0].first;
    *first_len = scans.of[0].first_len;
    return scans.of[0].count;
}

static void assign_request_id(const mhdctx_middleware *mw, mhdctx_context *ctx,
                              const struct header_scan *id)
{
    const char *value = id->first;
    size_t len = id->first_len;
    unsigned count = id->count;
    /* MHD strips leading blanks but keeps trailing ones; neither is part of the value
     * (RFC 9110 section 5.5). */
    while (count == 1 && len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    mhdctx_id_verdict verdict = MHDCTX_ID_MISSING;
    if (count > 0 && !mw->trust_incoming_ids)
        verdict = MHDCTX_ID_UNTRUSTED; /* however many: none is looked at */
    else if (count > 1)
        verdict = MHDCTX_ID_MULTIPLE;
    else if (count == 1)
        verdict = mhdctx_request_id_check(value, len, mw->id_max_len);
    if (verdict == MHDCTX_ID_VALID) {
        mhdctx__context_set_request_id(ctx, value, len, verdict);
        return;
    }
    mhdctx__context_generate_request_id(ctx, verdict);
}

/* ---- deadline --------------------------------------------------------------------------- */

/* A caller's budget: 1..limit decimal digits-only milliseconds, else ignored. */
static uint64_t incoming_budget_ms(const struct header_scan *timeout, uint64_t limit)
{
    const char *value = timeout->first;
    size_t len = timeout->first_len;
    if (timeout->count != 1)
        return 0;
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--; /* trailing blanks are not part of the value (RFC 9110 5.5) */
    if (len == 0 || len > 12)
        return 0;
    uint64_t ms = 0;
    for (size_t i = 0; i < len; i++) {
        if (value[i] < '0' || value[i] > '9')
            return 0;
        ms = ms * 10 + (uint64_t)(value[i] - '0');
    }
    return ms >= 1 && (limit == 0 || ms <= limit) ? ms : 0;
}

static void assign_deadline(const mhdctx_middleware *mw, mhdctx_context *ctx,
                            const struct header_scan *timeout)
{
    const struct mhdctx__route *route = ctx->route_settings;
    uint64_t budget = route && route->has_deadline ? route->deadline_ms : mw->deadline_ms;
    if (mw->trust_incoming_deadline) {
        uint64_t asked = incoming_budget_ms(timeout, budget);
        if (asked)
            budget = asked;
    }
    /* Counted from the request line, when the context was created. */
    atomic_store(&ctx->deadline_ns, mhdctx__deadline_after(ctx->start_mono_ns, budget));
}

/* ---- trace context ------------------------------------------------------------------ */

struct joined_values {
    const char *name;
    char *text; /* every value joined with ",", or NULL */
    size_t len;
    unsigned count;
    bool failed;
    bool no_memory; /* failed for want of memory, not because the list is invalid */
};

static enum MHD_Result join_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    (void)key_size;
    struct joined_values *j = cls;
    if (key == NULL || !mhdctx__ascii_case_equal(key, j->name))
        return MHD_YES;
    j->count++;
    size_t need = j->len + value_size + 2;
    if (value_size > MHDCTX_EXPORT_MAX_LEN || need > MHDCTX_EXPORT_MAX_LEN) {
        j->failed = true; /* absurdly long: treated as invalid */
        return MHD_NO;
    }
    char *grown = mhdctx__realloc(j->text, need);
    if (grown == NULL) {
        j->failed = true;
        j->no_memory = true;
        return MHD_NO;
    }
    if (j->len)
        grown[j->len++] = ',';
    memcpy(grown + j->len, value ? value : "", value_size);
    j->len += value_size;
    grown[j->len] = '\0';
    j->text = grown;
    return MHD_YES;
}

/* Several traceparent headers restart the trace; several tracestate headers are one
 * list. MHD's plain lookup returns only the first value, so every value is read. */
static mhdctx_error assign_trace(mhdctx_context *ctx, struct MHD_Connection *connection,
                                 const struct header_scan *traceparent)
{
    mhdctx_trace_parent parent;
    bool valid = traceparent->count == 1 &&
                 mhdctx_traceparent_parse(traceparent->first, traceparent->first_len,
                                          &parent) == MHDCTX_OK;
    if (!valid)
        return mhdctx__context_set_trace(ctx, NULL, NULL, 0);
    struct joined_values state = {.name = "tracestate"};
    MHD_get_connection_values_n(connection, MHD_HEADER_KIND, join_header, &state);
    if (state.no_memory) { /* not an invalid list: dropping it would lose the caller's */
        mhdctx__free(state.text);
        return MHDCTX_ENOMEM;
    }
    char normalized[MHDCTX_TRACESTATE_MAX_LEN + 1];
    size_t normalized_len = 0;
    if (state.text && !state.failed)
        normalized_len = mhdctx_tracestate_normalize(state.text, state.len, normalized);
    mhdctx__free(state.text);
    return mhdctx__context_set_trace(ctx, &parent, normalized, normalized_len);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *connection)
{
    (void)connection;
    mhdctx_middleware *mw = cls;
    /* Read first: a store per request would pull the line of settings every thread reads
     * away from the others, for a flag that changes once. */
    if (!atomic_load_explicit(&mw->started, memory_order_relaxed))
        atomic_store_explicit(&mw->started, true, memory_order_relaxed);
    return mhdctx__context_create(uri); /* NULL on ENOMEM: retried at the first call */
}

static mhdctx_hook_result run_hooks(const mhdctx_middleware *mw,
                                    struct MHD_Connection *connection, mhdctx_context *ctx)
{
    for (size_t i = 0; i < mw->n_hooks; i++) {
        mhdctx_hook_result r = mw->hooks[i].fn(connection, ctx, mw->hooks[i].cls);
        if (r != MHDCTX_HOOK_CONTINUE)
            return r;
    }
    return MHDCTX_HOOK_CONTINUE;
}

/* The request never reached its hooks (bad headers, client gone, a failure while its
 * headers were read): its access line still needs a request id and a trace. */
static void complete_ids(mhdctx_context *ctx)
{
    if (ctx->request_id[0] == '\0')
        mhdctx__context_generate_request_id(ctx, MHDCTX_ID_MISSING);
    bool traced = ctx->trace_id[0] != '\0' ||
                  atomic_load_explicit(&ctx->ids_to_draw, memory_order_acquire) != 0;
    if (!traced)
        mhdctx__context_set_trace(ctx, NULL, NULL, 0);
}

/* First call: the headers are parsed. Returns false to close the connection. */
static bool begin_request(const mhdctx_middleware *mw, mhdctx_context *ctx,
                          struct MHD_Connection *connection, const char *url,
                          const char *method)
{
    /* The path as the handler sees it, decoded by MHD: matched against the raw target
     * (the context's path), /se%61rch would be served as /search without its settings. */
    ctx->route_settings = mhdctx__route_find(mw, url ? url : "");
    if (mw->id_header_custom) /* else the default, from mhdctx__context_create */
        ctx->id_header = memcpy(ctx->id_header_copy, mw->id_header, mw->id_header_len + 1);
#define NAMED(literal)                                                                         \
    {                                                                                          \
        .name = literal, .name_len = sizeof literal - 1                                        \
    }
    struct header_scans scans = {
        .of = {[SCAN_ID] = {.name = mw->id_header, .name_len = mw->id_header_len},
               [SCAN_TRACEPARENT] = NAMED("traceparent"),
               [SCAN_TIMEOUT] = NAMED("X-Request-Timeout-Ms")},
        .n = mw->trust_incoming_deadline ? 3 : 2};
#undef NAMED
    MHD_get_connection_values_n(connection, MHD_HEADER_KIND, count_headers, &scans);
    assign_request_id(mw, ctx, &scans.of[SCAN_ID]);
    assign_deadline(mw, ctx, &scans.of[SCAN_TIMEOUT]);
    if (mhdctx__context_set_method(ctx, method ? method : "") != MHDCTX_OK ||
        assign_trace(ctx, connection, &scans.of[SCAN_TRACEPARENT]) != MHDCTX_OK)
        return false;
    ctx->phase = MHDCTX__PHASE_HOOKS;
    switch (run_hooks(mw, connection, ctx)) {
    case MHDCTX_HOOK_CONTINUE:
        ctx->phase = MHDCTX__PHASE_HANDLER;
        return true; /* the caller goes on to the handler's first call */
    case MHDCTX_HOOK_DONE:
        ctx->phase = MHDCTX__PHASE_ANSWERED;
        return true;
    case MHDCTX_HOOK_FAIL:
    default:
        ctx->phase = MHDCTX__PHASE_ANSWERED;
        return false;
    }
}

static bool request_has_body(struct MHD_Connection *connection)
{
    const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
    return MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                       MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL ||
           (length != NULL && strcmp(length, "0") != 0);
}

enum MHD_Result mhdctx_access_handler(void *cls, struct MHD_Connection *connection,
                                      const char *url, const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls)
{
    mhdctx_middleware *mw = cls;
    mhdctx_context *ctx = *req_cls;
    if (ctx == NULL) { /* the URI-log callback ran out of memory */
        ctx = mhdctx__context_create(url);
        if (ctx == NULL)
            return MHD_NO;
        *req_cls = ctx;
    }
    mhdctx_context *previous = mhdctx__enter(ctx);
    enum MHD_Result result = MHD_YES;
    bool first_call = ctx->phase == MHDCTX__PHASE_NEW;
    if (first_call && !begin_request(mw, ctx, connection, url, method)) {
        result = MHD_NO;
    } else if (ctx->phase == MHDCTX__PHASE_ANSWERED) {
        /* A hook answered. MHD accepts a response at the first call (then it closes
         * the connection) or once the whole request is in. Without a body the next
         * call is the end of the request: answering there keeps the connection alive.
         * With a body, answer now: reading an upload nobody wants is worse. */
        if (!first_call || request_has_body(connection)) {
            *upload_data_size = 0;
            result = mhdctx__queue_deferred(ctx, connection);
        }
    } else {
        result = mw->handler(mw->handler_cls, connection, url, method, version, upload_data,
                             upload_data_size, &ctx->user_req_cls);
    }
    if (result == MHD_NO)
        ctx->closed_by_server = true; /* MHD's error is then ours, not the client's */
    mhdctx__enter(previous);
    return result;
}

static void on_completed(void *cls, struct MHD_Connection *connection, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    mhdctx_middleware *mw = cls;
    mhdctx_context *ctx = *req_cls;
    if (ctx == NULL)
        return;
    mhdctx_context *previous = mhdctx__enter(ctx);
    if (ctx->phase == MHDCTX__PHASE_NEW)
        complete_ids(ctx);
    mhdctx__drop_deferred(ctx); /* the client left before a hook's answer was sent */
    if (mw->completed)
        mw->completed(mw->completed_cls, connection, &ctx->user_req_cls, toe);
    mhdctx__access_log(mw, ctx, connection, toe);
    mhdctx__enter(previous);
    *req_cls = NULL;
    mhdctx_context_unref(ctx);
}

/* Routes MHD's own error messages through the JSON logger, so that they are escaped
 * like everything else (MHD quotes client bytes in some of them). */
static void on_mhd_message(void *cls, const char *fmt, va_list ap) MHDCTX_PRINTF(2, 0);

static void on_mhd_message(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char text[512];
    int n = vsnprintf(text, sizeof text, fmt, ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof text ? (size_t)n : sizeof text - 1;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    mhdctx_log_fields(MHDCTX_LOG_WARN, MHDCTX_FIELDS(MHDCTX_F_BYTES("mhd", text, len)),
                      "libmicrohttpd message");
}

void mhdctx__middleware_fill_options(mhdctx_middleware *mw)
{
    /* MHD wants its logger first, so that no message goes to its default stderr one. */
    mw->options[0] =
        (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_message, mw};
    mw->options[1] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, mw};
    mw->options[2] =
        (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, mw};
    mw->options[3] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
}
