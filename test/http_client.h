/*
 * http_client.h - a tiny blocking HTTP/1.1 client over raw sockets, for tests only.
 *
 * The caller builds the request bytes itself, so a test can send anything: hostile or
 * repeated headers, several pipelined requests in one write, half a request. The client
 * only frames and parses what comes back.
 *
 *     http_conn *c;
 *     http_response *r;
 *     if (http_connect(port, &c) == HTTP_OK &&
 *         http_send_str(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n") == HTTP_OK &&
 *         http_read_response(c, &r) == HTTP_OK) {
 *         ... r->status, http_header(r, "content-type"), r->body ...
 *         http_response_free(r);
 *     }
 *     http_close(c);
 *
 * Ownership: http_connect() returns an owned connection (http_close()); a successful
 * http_read_response() / http_roundtrip() returns an owned response
 * (http_response_free()). Strings returned by the header lookups are borrowed from the
 * response and live as long as it. On failure nothing is returned and nothing is to be
 * freed (the out pointer is set to NULL).
 *
 * Limits: responses to HEAD requests are not supported (their Content-Length would be
 * waited for); obsolete header line folding is not supported. 1xx interim responses are
 * skipped. Bodies are framed by Transfer-Encoding: chunked, Content-Length, or the
 * server closing the connection. Every receive waits at most the connection's timeout
 * (HTTP_DEFAULT_TIMEOUT_MS unless changed). Not thread-safe per connection; distinct
 * connections may be used from distinct threads.
 */
#ifndef MHDCTX_TEST_HTTP_CLIENT_H
#define MHDCTX_TEST_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_DEFAULT_TIMEOUT_MS 5000

/** Results; every function that can fail returns one of these. */
enum http_result {
    HTTP_OK = 0,
    HTTP_ECONNECT = -1, /**< socket() or connect() failed */
    HTTP_ESEND = -2,    /**< send failed (peer closed or reset, or timeout) */
    HTTP_ETIMEOUT = -3, /**< nothing arrived within the timeout */
    HTTP_ECLOSED = -4,  /**< the peer closed before sending a single byte of a response */
    HTTP_ERESET = -5,   /**< the peer reset the connection before a complete response */
    HTTP_EPROTO = -6,   /**< malformed or truncated response */
    HTTP_ENOMEM = -7,   /**< allocation failure */
    HTTP_EINVAL = -8    /**< invalid argument */
};

typedef struct http_field {
    char *name;  /**< as sent by the server (case preserved) */
    char *value; /**< without leading or trailing blanks */
} http_field;

typedef struct http_response {
    int status;          /**< e.g. 200 */
    char *reason;        /**< reason phrase, may be "" */
    char *version;       /**< "HTTP/1.1" (or "ICY", MHD_ICY_FLAG's) */
    http_field *headers; /**< in the order received; repeated headers kept */
    size_t n_headers;
    char *body; /**< body_len bytes followed by a NUL (not counted); never NULL */
    size_t body_len;
    bool closed; /**< the body was framed by the connection closing */
} http_response;

/** Opaque connection. */
typedef struct http_conn http_conn;

/** Short text for a result code. Static string. */
const char *http_strerror(int result);

/**
 * Connects to 127.0.0.1:@p port, with receive and send timeouts of
 * HTTP_DEFAULT_TIMEOUT_MS. On success *out is an owned connection (http_close()).
 */
int http_connect(uint16_t port, http_conn **out);
/** Changes the receive and send timeouts of @p c (milliseconds, > 0). */
int http_set_timeout_ms(http_conn *c, unsigned timeout_ms);
/** Sends @p len bytes (all of them, or fails). Never raises SIGPIPE. */
int http_send(http_conn *c, const void *data, size_t len);
/** http_send() of a NUL-terminated string. */
int http_send_str(http_conn *c, const char *s);
/** Shuts down the sending side (the server reads end-of-file). */
int http_shutdown_write(http_conn *c);
/**
 * Reads the next response on @p c (bytes that follow it stay buffered for the next call,
 * which is what pipelining needs). On success *out is owned by the caller.
 * @return HTTP_OK, HTTP_ECLOSED (closed cleanly before any byte of a response: the
 *         server answered nothing), HTTP_ERESET, HTTP_ETIMEOUT, HTTP_EPROTO, HTTP_ENOMEM.
 */
int http_read_response(http_conn *c, http_response **out);
/**
 * Waits until the server closes the connection (end-of-file or reset).
 * *extra (may be NULL) receives how many unread bytes were buffered or arrived meanwhile.
 * @return HTTP_OK when closed, HTTP_ETIMEOUT if still open after the timeout.
 */
int http_wait_closed(http_conn *c, size_t *extra);
/** Closes the socket and frees @p c. NULL is ignored. */
void http_close(http_conn *c);

/**
 * Connects, sends @p len bytes of @p request, reads one response and closes.
 * On success *out is owned by the caller.
 */
int http_roundtrip(uint16_t port, const void *request, size_t len, http_response **out);

/** Frees a response. NULL is ignored. */
void http_response_free(http_response *r);
/** First value of header @p name (case-insensitive), NULL when absent. Borrowed. */
const char *http_header(const http_response *r, const char *name);
/** The @p n-th (from 0) value of header @p name, NULL when there are fewer. Borrowed. */
const char *http_header_nth(const http_response *r, const char *name, size_t n);
/** How many times header @p name (case-insensitive) was received. */
size_t http_header_count(const http_response *r, const char *name);

#endif /* MHDCTX_TEST_HTTP_CLIENT_H */
