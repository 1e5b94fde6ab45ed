/*
 * support.h - helpers shared by the Check unit suites in test/ (one copy of each).
 *
 * Include it after "internal.h" or "mhdctx.h" (internal.h defines _GNU_SOURCE, which
 * must come before any system header).
 *
 * Assertions: the helpers that may fail use Check's ck_assert*(), so they fail the
 * calling test, and so they must run on the test's own thread. Those that other threads
 * may call (a logging thread, MHD's threads) say so and assert nothing.
 *
 * Ownership: "owned" results are the caller's to free (free(), json_decref(),
 * http_response_free() as said); "borrowed" ones are not, and live as long as stated.
 *
 *   strings ............ str_fmt, copy_str, repeat, is_uuid_v4, is_hex_id, sleep_ms
 *   processes .......... support_wait_child
 *   JSON ............... jstr, str_field, support_parse_line, support_find_line
 *   contexts ........... new_context, refs_of
 *   log capture ........ support_capture_*
 *   MHD daemon, HTTP ... support_server_start/stop, support_http_get, support_body_json
 *   Check .............. support_tcase
 */
#ifndef MHDCTX_TEST_SUPPORT_H
#define MHDCTX_TEST_SUPPORT_H

#include "http_client.h"
#include "mhdctx.h"

#include <check.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* ==== strings and time ================================================================ */

/** printf into a new string. Owned (free()). Fails the test if formatting fails. */
char *str_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** @p src (NULL: "") into @p dst of @p size bytes, truncated, always terminated. No
 * assertion: safe on any thread. */
void copy_str(char *dst, size_t size, const char *src);

/** A string of @p n copies of @p c. Owned (free()). */
char *repeat(char c, size_t n);

/** Whether @p s (may be NULL) is a lowercase UUID version 4 (8-4-4-4-12 hex digits,
 * version nibble 4, variant 8, 9, a or b). No assertion. */
bool is_uuid_v4(const char *s);

/** Whether @p s is exactly @p len lowercase hex digits, not all of them '0' (a trace or
 * span id). No assertion. */
bool is_hex_id(const char *s, size_t len);

/** Sleeps @p ms milliseconds (resumed after a signal). Any thread. */
void sleep_ms(unsigned ms);

/* ==== processes ======================================================================= */

/** Waits for the forked child @p pid; fails the test unless it exited (not killed by a
 * signal). @return its exit status. */
int support_wait_child(pid_t pid);

/* ==== JSON ============================================================================ */

/** The string value of @p obj's @p key, NULL when absent or not a string. Borrowed from
 * @p obj. No assertion. */
const char *jstr(const json_t *obj, const char *key);

/** The string value of @p obj's @p key; fails the test when it is not a string.
 * Borrowed from @p obj. */
const char *str_field(const json_t *obj, const char *key);

/**
 * One log line of @p len bytes, checked and parsed: it ends in '\n' and holds no other
 * '\n' and no '\r', and is one JSON object under jansson's @p json_flags (for instance
 * JSON_REJECT_DUPLICATES, plus JSON_ALLOW_NUL where "\u0000" is expected). Fails the test
 * otherwise. Owned (json_decref()).
 */
json_t *support_parse_line(const char *line, size_t len, size_t json_flags);

/** The first line of the array @p all whose "message" is @p message and, when @p key is
 * not NULL, whose string field @p key equals @p value. Borrowed from @p all; NULL when
 * there is none. No assertion. */
json_t *support_find_line(const json_t *all, const char *message, const char *key,
                          const char *value);

/* ==== contexts ========================================================================= */

/** mhdctx_context_new(), failing the test on NULL. Owned (mhdctx_context_unref()). */
mhdctx_context *new_context(void);

/** The reference count of @p ctx (an internal field, read atomically). Any thread. */
unsigned refs_of(mhdctx_context *ctx);

/* The tests' build of the library (src/alloc.c with MHDCTX_FAULT_INJECTION): the
 * countdown to the allocation that fails (-1: none; any thread may arm it) and the
 * blocks allocated there and not yet freed there (a leak gauge). */
extern atomic_long mhdctx__alloc_countdown;
extern atomic_long mhdctx__alloc_live;

/* ==== log capture =======================================================================
 *
 * One process-wide store receives every line through the callback sink
 * (mhdctx_log_to_callback()), from any thread, under its own lock. Each line is kept as
 * it arrived, with its level. The callback asserts nothing (it may run on MHD's or a
 * worker's thread): a line it could not store, or one delivered with a callback argument
 * other than the store's own, is counted, and support_capture_n(), _line(), _json(),
 * _only(), _parsed() and _stop() fail the test if any was.
 */

/** A captured line. */
typedef struct support_line {
    mhdctx_log_level level;
    size_t len;  /**< bytes in text, its final '\n' included */
    char text[]; /**< the line as the sink received it, followed by a NUL */
} support_line;

/** Empties the store and makes it the log sink. The threshold is left as it is. */
void support_capture_start(void);

/** mhdctx_log_set_level(MHDCTX_LOG_INFO), then support_capture_start(). */
void support_capture_start_info(void);

/**
 * Restores the default sink (mhdctx_log_shutdown(): stdout), then empties the store.
 * With CHECK_CAPTURE_DUMP set in the environment, prints every captured line to stderr
 * first (a debugging aid). Fails the test if a line was lost or foreign.
 */
void support_capture_stop(void);

/** Frees every captured line; the sink stays as it is. Any thread. */
void support_capture_clear(void);

/** How many lines are captured. */
size_t support_capture_n(void);

/** Captured line @p i (fails the test unless i < support_capture_n()). Borrowed: valid
 * until the store is emptied (clear, start, stop), even while other lines arrive. */
const support_line *support_capture_line(size_t i);

/** Captured line @p i, checked and parsed by support_parse_line(). Owned. */
json_t *support_capture_json(size_t i, size_t json_flags);

/** The only captured line (fails the test unless exactly one is), parsed as
 * support_capture_json(0, json_flags) does. Owned. */
json_t *support_capture_only(size_t json_flags);

/**
 * Every captured line parsed, in order: a new JSON array (owned, json_decref()). Each
 * line must end in '\n' and be one JSON object (jansson's default flags); fails the
 * test otherwise, or if a line was lost or foreign.
 */
json_t *support_capture_parsed(void);

/** Lines whose raw text holds "message":"<message>" and, when @p request_id is not NULL,
 * "request_id":"<request_id>". No assertion: any thread (an MHD callback, say). */
size_t support_capture_count(const char *message, const char *request_id);

/** Waits, polling every 2 ms, until at least @p n lines carry @p message; false after
 * @p timeout_ms. No assertion. */
bool support_capture_wait(const char *message, size_t n, unsigned timeout_ms);

/** Whether the raw text of any captured line contains @p needle. No assertion. */
bool support_capture_contains(const char *needle);

/* ==== an MHD daemon with the middleware, and requests to it ============================ */

/** A daemon on 127.0.0.1 at an ephemeral port. */
typedef struct support_server {
    struct MHD_Daemon *daemon;
    uint16_t port;
} support_server;

/** MHD flags of the usual daemon: its own polling thread, epoll. */
#define SUPPORT_MHD_EPOLL (MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL)

/** An MHD threading mode the suites run in: its name, daemon flags, pool size (0: none). */
typedef struct support_mode {
    const char *name;
    unsigned flags;
    unsigned pool;
} support_mode;

/** Every threading mode the library claims: epoll, poll, select, a thread pool,
 * thread-per-connection (in that order; support_modes[0] is epoll). */
extern const support_mode support_modes[];
#define SUPPORT_N_MODES 5

/**
 * Starts a daemon on port 0 (the kernel picks one, read back into s->port) with @p flags,
 * mhdctx_access_handler() in front of @p mw, the middleware's options and then @p extra
 * (an array ending in MHD_OPTION_END; NULL: none). Fails the test if it does not start.
 * @p mw must outlive the daemon.
 */
void support_server_start(support_server *s, mhdctx_middleware *mw, unsigned flags,
                          struct MHD_OptionItem *extra);

/** Stops the daemon (when running). After it every completion callback has run. */
void support_server_stop(support_server *s);

/**
 * One GET of @p path on its own connection ("Connection: close"), with @p headers (extra
 * header lines, each ending in CRLF; may be NULL). Fails the test if no response
 * arrives. Owned (http_response_free()).
 *
 * static inline: only the suites that call it have to link http_client.c.
 */
static inline http_response *support_http_get(uint16_t port, const char *path,
                                              const char *headers)
{
    char *req = str_fmt("GET %s HTTP/1.1\r\nHost: test\r\n%sConnection: close\r\n\r\n", path,
                        headers ? headers : "");
    http_response *r = NULL;
    int rc = http_roundtrip(port, req, strlen(req), &r);
    free(req);
    ck_assert_msg(rc == HTTP_OK, "GET %s: %s", path, http_strerror(rc));
    return r;
}

/** The body of @p r parsed; fails the test unless it is a JSON object. Owned. */
json_t *support_body_json(const http_response *r);

/* ==== Check ============================================================================ */

/** A test case named @p name in @p suite, with a timeout of @p timeout_s seconds and the
 * checked fixture @p setup / @p teardown (each may be NULL). Borrowed from @p suite. */
TCase *support_tcase(Suite *suite, const char *name, double timeout_s, SFun setup,
                     SFun teardown);

#endif /* MHDCTX_TEST_SUPPORT_H */
