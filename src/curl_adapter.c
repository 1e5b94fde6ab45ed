/*
 * curl_adapter.c - outgoing HTTP through libcurl with the request's trace context.
 * Optional: compiled only when ./configure finds libcurl.
 */
#include "internal.h"
#include "mhdctx_curl.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* Whether a "Name: value" line sets one of the headers the adapter writes itself. */
static bool is_propagation_header(const char *line, const char *id_header)
{
    const char *names[] = {"traceparent", "tracestate", id_header};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(names[i]);
        if (mhdctx__ascii_case_equal_n(line, names[i], n) && (line[n] == ':' || line[n] == ';'))
            return true;
    }
    return false;
}

/* The caller's headers without the ones we set: a repeated traceparent or request id
 * would make the receiver discard both. NULL also when none is left: @ok tells. */
static struct curl_slist *copy_headers(const struct curl_slist *from, const char *id_header,
                                       bool *ok)
{
    struct curl_slist *copy = NULL;
    for (; from; from = from->next) {
        if (from->data == NULL || is_propagation_header(from->data, id_header))
            continue;
        struct curl_slist *grown = curl_slist_append(copy, from->data);
        if (grown == NULL) {
            curl_slist_free_all(copy);
            *ok = false;
            return NULL;
        }
        copy = grown;
    }
    return copy;
}

static struct curl_slist *add_header(struct curl_slist *list, const char *name,
                                     const char *value, bool *ok)
{
    char line[1024];
    if (!*ok)
        return list;
    snprintf(line, sizeof line, "%s: %s", name, value);
    struct curl_slist *grown = curl_slist_append(list, line);
    *ok = grown != NULL;
    return grown ? grown : list;
}

/* The caller's headers plus ours; NULL on allocation failure. */
static struct curl_slist *propagation_headers(const mhdctx_outgoing *call,
                                              const struct curl_slist *headers,
                                              const char *id_header)
{
    bool ok = true;
    struct curl_slist *list = copy_headers(headers, id_header, &ok);
    list = add_header(list, "traceparent", call->traceparent, &ok);
    if (call->tracestate[0])
        list = add_header(list, "tracestate", call->tracestate, &ok);
    list = add_header(list, id_header, call->request_id, &ok);
    if (!ok) {
        curl_slist_free_all(list);
        return NULL;
    }
    return list;
}

CURLcode mhdctx_curl_perform(CURL *easy, mhdctx_context *ctx, struct curl_slist *headers)
{
    if (easy == NULL)
        return CURLE_BAD_FUNCTION_ARGUMENT;
    if (ctx == NULL)
        ctx = mhdctx_current();
    mhdctx_outgoing call;
    mhdctx_outgoing_start(&call, ctx);
    struct curl_slist *list =
        propagation_headers(&call, headers, ctx ? ctx->id_header : MHDCTX__DEFAULT_ID_HEADER);
    if (list == NULL) {
        mhdctx_outgoing_finish(&call, "GET", "", 0, "out of memory");
        return CURLE_OUT_OF_MEMORY;
    }
    /* The request's deadline bounds the call: what is left becomes the timeout. */
    int64_t left = mhdctx_deadline_remaining_ms(ctx);
    if (left == 0) {
        curl_slist_free_all(list);
        mhdctx_outgoing_finish(&call, "GET", "", 0, "deadline exceeded before the call");
        return CURLE_OPERATION_TIMEDOUT;
    }
    if (left != INT64_MAX)
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)(left < LONG_MAX ? left : LONG_MAX));
    char error[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error);
    CURLcode rc = curl_easy_perform(easy);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    if (left != INT64_MAX) /* a pooled handle must not keep this request's deadline */
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 0L);
    curl_slist_free_all(list);

    long status = 0;
    char *method = NULL, *url = NULL;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_METHOD, &method);
    curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url);
    const char *why = rc == CURLE_OK ? NULL : error[0] ? error : curl_easy_strerror(rc);
    mhdctx_outgoing_finish(&call, method ? method : "GET", url ? url : "",
                           status > 0 ? (unsigned)status : 0, why);
    return rc;
}
