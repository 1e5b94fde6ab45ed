/*
 * mhdctx_curl.h - the libcurl adapter: outgoing calls that carry the request's trace
 * and id, with one log line per call. Built when ./configure finds libcurl
 * (MHDCTX_HAVE_CURL is then defined in this header's users by pkg-config's Cflags).
 */
#ifndef MHDCTX_CURL_H
#define MHDCTX_CURL_H

#include <curl/curl.h>
#include <mhdctx.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Performs @p easy, whose URL and options the caller has set, as a call made for @p ctx
 * (NULL: the current context):
 *  - starts a client span (mhdctx_outgoing_start()) and sends `traceparent`,
 *    `tracestate` (when the request had one) and the request-id header, added to a copy
 *    of @p headers (which stay the caller's; NULL for none; entries of the caller's
 *    for those three headers are left out of the copy, since a repeated traceparent or
 *    request id would be discarded by the receiver) set as CURLOPT_HTTPHEADER for this
 *    transfer only;
 *  - when the request has a deadline, sets CURLOPT_TIMEOUT_MS to the time left for the
 *    transfer, in place of any CURLOPT_TIMEOUT(_MS) of the caller's, even a tighter one
 *    (libcurl cannot report it), and back to 0 (none) after it: set yours again after
 *    the call if you use one (a call that must give up sooner than the request is made
 *    with mhdctx_outgoing_start() and _finish() and its own timeout); once the deadline has
 *    passed no call is made at all (CURLE_OPERATION_TIMEDOUT, logged with method GET and
 *    an empty url, since libcurl reports them only for transfers it made);
 *  - uses CURLOPT_ERRORBUFFER for the transfer (its text goes into the log line) and
 *    leaves none set after it;
 *  - performs the transfer with curl_easy_perform();
 *  - logs "outgoing request completed" (mhdctx_outgoing_finish()) with the effective
 *    method and URL, the response status and curl's error text on failure;
 *  - sets CURLOPT_HTTPHEADER back to @p headers.
 * Thread rules: those of the easy handle (one thread at a time) and of @p ctx (a
 * reference held by the caller, or the current context).
 * @return curl's result; CURLE_OUT_OF_MEMORY when the headers cannot be built (no
 *         transfer is made then).
 */
MHDCTX_EXPORT CURLcode mhdctx_curl_perform(CURL *easy, mhdctx_context *ctx,
                                           struct curl_slist *headers);

#ifdef __cplusplus
}
#endif
#endif /* MHDCTX_CURL_H */
