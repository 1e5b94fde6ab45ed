/*
 * mhdctx.h - per-request context for GNU libmicrohttpd servers.
 *
 * The C counterpart of Node's AsyncLocalStorage: every request served through the
 * middleware gets a context (request id, times, method, path, user, roles, user keys)
 * that any code running for that request reads with mhdctx_current(), without
 * receiving it as an argument. The JSON-lines logger enriches every line from it.
 *
 * Integration (five lines):
 *
 *     mhdctx_middleware *mw = mhdctx_middleware_new(&my_handler, my_cls);
 *     struct MHD_Daemon *d = MHD_start_daemon(flags, port, NULL, NULL,
 *                                             &mhdctx_access_handler, mw,
 *                                             MHD_OPTION_ARRAY, mhdctx_mhd_options(mw),
 *                                             MHD_OPTION_END);
 *     ... MHD_stop_daemon(d); mhdctx_middleware_free(mw);
 *
 * Conventions
 *  - Functions that can fail return an ::mhdctx_error; mhdctx_strerror() names it.
 *    Allocation failure is reported (MHDCTX_ENOMEM), never fatal.
 *  - Strings returned by the library are borrowed unless the comment says "owned".
 *  - "_new" functions that take a json_t take ownership of it even when they fail
 *    (the jansson convention), so a caller never writes a conditional free.
 *
 * Thread safety (the rules in one place; each declaration repeats its own)
 *  - Configuration (mhdctx_middleware_*, mhdctx_add_hook, mhdctx_on_completed,
 *    mhdctx_access_log_*) happens before the daemon starts; the middleware is then
 *    read concurrently by MHD's threads and must not be changed. The library refuses
 *    (MHDCTX_ESTATE) from the first request on, for good: a middleware is configured
 *    once, and a call between MHD_start_daemon() and the first request is a race the
 *    library cannot see.
 *  - mhdctx_current() is per thread: it returns the context of the request whose
 *    handler, hook or completion callback is running on the calling thread, else NULL.
 *  - A context may be read and logged with from any thread that holds a reference
 *    (mhdctx_context_ref()); setters lock the context, so concurrent readers always see
 *    a consistent value. Each thread holds a reference of its own: one reference
 *    shared by two threads is not enough (while a single reference exists the library
 *    skips the context's lock). Borrowed strings returned by getters stay valid until the
 *    same field is set again or the last reference is dropped.
 *  - Logging calls are safe from any thread at any time, but not from a signal handler:
 *    they take locks and build the line in the thread's storage, so a handler that logs
 *    while its thread is inside a logging call deadlocks or garbles that line. Log what
 *    a signal says after the handler returns (a flag, a self-pipe, signalfd). Logger
 *    configuration (mhdctx_log_to_*) is meant for start-up; mhdctx_log_set_level() is
 *    safe any time.
 *    A thread cancelled (pthread_cancel, deferred) while a logging call, a flush or a
 *    stop blocks (a full pipe, a full batched buffer) finishes that call first: the
 *    library's locks are never left held by a cancelled thread.
 */
#ifndef MHDCTX_H
#define MHDCTX_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MHDCTX_EXPORT            __attribute__((visibility("default")))
#define MHDCTX_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define MHDCTX_WARN_UNUSED       __attribute__((warn_unused_result))
#else
#define MHDCTX_EXPORT
#define MHDCTX_PRINTF(fmt, args)
#define MHDCTX_WARN_UNUSED
#endif

/* The per-call reads (mhdctx_current) are called through the GOT rather than the PLT:
 * one jump fewer, about half a nanosecond of a three-nanosecond call. Such a symbol is
 * bound when the program loads (like -Wl,-z,now), not at its first call. GCC only. */
#if defined(__has_attribute)
#if __has_attribute(noplt)
#define MHDCTX_NOPLT __attribute__((noplt))
#endif
#endif
#ifndef MHDCTX_NOPLT
#define MHDCTX_NOPLT
#endif

/* ------------------------------------------------------------------------------------
 * Version
 * ---------------------------------------------------------------------------------- */

#define MHDCTX_VERSION_MAJOR  0
#define MHDCTX_VERSION_MINOR  1
#define MHDCTX_VERSION_PATCH  0
#define MHDCTX_VERSION_STRING "0.1.0"
/** 0xMMmmpp: compare with `#if MHDCTX_VERSION_HEX >= 0x000100`. */
#define MHDCTX_VERSION_HEX                                                                     \
    ((MHDCTX_VERSION_MAJOR << 16) | (MHDCTX_VERSION_MINOR << 8) | MHDCTX_VERSION_PATCH)

/** The version of the library actually linked, e.g. "0.1.0". Static string. */
MHDCTX_EXPORT const char *mhdctx_version_string(void);

/* ------------------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------------------- */

/** X-macro: name, value, description. Values never change once released. */
#define MHDCTX_ERROR_MAP(X)                                                                    \
    X(OK, 0, "success")                                                                        \
    X(ENOMEM, 1, "out of memory")                                                              \
    X(EINVAL, 2, "invalid argument")                                                           \
    X(ELIMIT, 3, "a configured limit was exceeded")                                            \
    X(ERESERVED, 4, "the key is reserved for a field of the library")                          \
    X(ENOTFOUND, 5, "not found")                                                               \
    X(EIO, 6, "input/output error")                                                            \
    X(EPARSE, 7, "malformed input")                                                            \
    X(EAUTH, 8, "authentication failed")                                                       \
    X(ESTATE, 9, "call not allowed in the current state")

typedef enum mhdctx_error {
#define MHDCTX_ERROR_ENUM_(name, value, text) MHDCTX_##name = value,
    MHDCTX_ERROR_MAP(MHDCTX_ERROR_ENUM_)
#undef MHDCTX_ERROR_ENUM_
} mhdctx_error;

/** Description of @p err; "unknown error" for a value outside the enum. Static string. */
MHDCTX_EXPORT const char *mhdctx_strerror(mhdctx_error err);
/** Symbolic name of @p err, e.g. "MHDCTX_ENOMEM". Static string. */
MHDCTX_EXPORT const char *mhdctx_error_name(mhdctx_error err);

/* ------------------------------------------------------------------------------------
 * Request ids (pure functions, safe from any thread)
 * ---------------------------------------------------------------------------------- */

/** Default and largest accepted incoming request-id length. */
#define MHDCTX_REQUEST_ID_DEFAULT_MAX 128
#define MHDCTX_REQUEST_ID_LIMIT       256
/** Length of a formatted UUID, without the terminating NUL. */
#define MHDCTX_UUID_LEN 36

/** Why an incoming request id was not used. */
typedef enum mhdctx_id_verdict {
    MHDCTX_ID_VALID = 0,    /**< used as the request id */
    MHDCTX_ID_MISSING,      /**< no header: an id is generated, nothing to report */
    MHDCTX_ID_EMPTY,        /**< header present but empty */
    MHDCTX_ID_TOO_LONG,     /**< longer than the configured maximum */
    MHDCTX_ID_INVALID_CHAR, /**< a byte outside [A-Za-z0-9._~:@+/=-] */
    MHDCTX_ID_MULTIPLE,     /**< the header was sent more than once */
    MHDCTX_ID_UNTRUSTED     /**< incoming ids are not trusted (edge mode) */
} mhdctx_id_verdict;

/**
 * Checks @p len bytes at @p id (need not be NUL-terminated; may contain NULs) against
 * the request-id rules: 1..@p max_len bytes from [A-Za-z0-9._~:@+/=-].
 * @return MHDCTX_ID_VALID, MHDCTX_ID_EMPTY, MHDCTX_ID_TOO_LONG or MHDCTX_ID_INVALID_CHAR.
 */
MHDCTX_EXPORT mhdctx_id_verdict mhdctx_request_id_check(const char *id, size_t len,
                                                        size_t max_len);
/** Short snake_case reason for the access log, e.g. "too_long". Static string. */
MHDCTX_EXPORT const char *mhdctx_id_verdict_name(mhdctx_id_verdict verdict);

/**
 * Writes a fresh random (version 4) UUID in lowercase, 36 characters plus NUL, into
 * @p out. Random bytes come from a per-thread ChaCha8 generator keyed and reseeded from
 * the kernel's CSPRNG (getrandom(2); libuuid's generator supplies the key should that
 * fail), with fast key erasure: no system call per id. A child rekeys before its first
 * id: the generator's memory is zeroed in a child of fork(), _Fork() or clone() (Linux
 * 4.14's MADV_WIPEONFORK; on older kernels, only fork() runs the handler that rekeys).
 * Safe from any thread, not from a signal handler (it uses the thread's generator).
 * @return MHDCTX_OK, or MHDCTX_EINVAL for a NULL @p out.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_uuid_v4(char out[MHDCTX_UUID_LEN + 1]);

/* ------------------------------------------------------------------------------------
 * W3C Trace Context (pure functions, safe from any thread)
 * ---------------------------------------------------------------------------------- */

#define MHDCTX_TRACEPARENT_LEN        55 /* "00-" 32 "-" 16 "-" 2 */
#define MHDCTX_TRACE_ID_LEN           32
#define MHDCTX_SPAN_ID_LEN            16
#define MHDCTX_TRACESTATE_MAX_LEN     512
#define MHDCTX_TRACESTATE_MAX_MEMBERS 32
#define MHDCTX_TRACE_FLAG_SAMPLED     0x01
/* Trace Context Level 2: the trace id's right-most 7 bytes are random. Set on every
 * trace the library starts (its ids come from a CSPRNG) and kept from a caller's. */
#define MHDCTX_TRACE_FLAG_RANDOM 0x02

/** A parsed traceparent header. */
typedef struct mhdctx_trace_parent {
    char trace_id[MHDCTX_TRACE_ID_LEN + 1]; /* lowercase hex, NUL-terminated */
    char parent_id[MHDCTX_SPAN_ID_LEN + 1]; /* lowercase hex, NUL-terminated */
    unsigned char flags;
} mhdctx_trace_parent;

/**
 * Parses one traceparent value (@p len bytes, surrounding spaces and tabs ignored) as
 * W3C Trace Context Level 1 says: lowercase hex, version ff invalid, version 00 exactly
 * 55 characters, later versions may append "-..." fields, all-zero ids invalid.
 * @return MHDCTX_OK, MHDCTX_EPARSE, or MHDCTX_EINVAL for NULL arguments.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_traceparent_parse(const char *value, size_t len,
                                                    mhdctx_trace_parent *out);
/** Writes "00-<trace_id>-<span_id>-<flags>" (55 characters and a NUL) into @p out. */
MHDCTX_EXPORT void mhdctx_traceparent_format(char out[MHDCTX_TRACEPARENT_LEN + 1],
                                             const char *trace_id, const char *span_id,
                                             unsigned char flags);
/**
 * Validates a tracestate list (several header values joined with ",") and writes its
 * normalized form into @p out: members trimmed, empty members dropped, a repeated key
 * kept once (the first), then truncated to 512 bytes as the spec allows (members over
 * 128 bytes first, then from the end). An invalid member or more than 32 members
 * discards the whole list.
 * @return the length written; 0 when the list is empty or discarded (out is "").
 */
MHDCTX_EXPORT size_t mhdctx_tracestate_normalize(const char *list, size_t len,
                                                 char out[MHDCTX_TRACESTATE_MAX_LEN + 1]);

/* ------------------------------------------------------------------------------------
 * The request context
 * ---------------------------------------------------------------------------------- */

typedef struct mhdctx_context mhdctx_context;

/** Limits on user keys (see mhdctx_set_new()). */
#define MHDCTX_MAX_USER_KEYS   32
#define MHDCTX_MAX_KEY_LEN     64
#define MHDCTX_MAX_VALUE_LEN   1024 /* bytes of the value's compact JSON text */
#define MHDCTX_MAX_ROLES       32
#define MHDCTX_MAX_USER_ID_LEN 256

/**
 * The context of the request being served on the calling thread: inside the access
 * handler (every call of it), the hooks and the completion callbacks run through the
 * middleware. NULL on any other thread or outside a request.
 * Borrowed: valid for the duration of the current callback; take a reference with
 * mhdctx_context_ref() to keep it longer (for example to hand it to a worker).
 */
MHDCTX_EXPORT mhdctx_context *mhdctx_current(void) MHDCTX_NOPLT;

/**
 * Adds a reference to @p ctx and returns it (NULL stays NULL). Safe from any thread
 * that already holds a reference or runs inside the request.
 */
MHDCTX_EXPORT mhdctx_context *mhdctx_context_ref(mhdctx_context *ctx);
/**
 * Drops a reference; the last one frees the context. The middleware holds one
 * reference from the URI-log callback to the end of the completion callback.
 * Safe from any thread. NULL is ignored.
 */
MHDCTX_EXPORT void mhdctx_context_unref(mhdctx_context *ctx);

/**
 * Creates a free-standing context (refcount 1, owned: release with
 * mhdctx_context_unref()), for work that is not an HTTP request (a batch job) and for
 * tests. Its request id is a fresh UUID; method and path are empty.
 * @return NULL on allocation failure.
 */
MHDCTX_EXPORT mhdctx_context *mhdctx_context_new(void) MHDCTX_WARN_UNUSED;

/**
 * Runs fn(arg) with @p ctx (may be NULL) as the current context of the calling thread
 * and restores the previous current context afterwards, so a worker thread never keeps
 * a stale one. Nesting works. The caller must hold a reference to @p ctx.
 */
MHDCTX_EXPORT void mhdctx_run(mhdctx_context *ctx, void (*fn)(void *arg), void *arg);

/* Hand-off to other threads ---------------------------------------------------------- */

/**
 * A function bound to a context, for a thread pool, a timer or an event loop that runs
 * it later (Node's AsyncResource.bind). The task holds a reference to the context.
 */
typedef struct mhdctx_task mhdctx_task;

/**
 * Binds fn(arg) to @p ctx (NULL: the current context; the task then runs with no
 * context if there is none). Owned: run it once with mhdctx_task_run(), or drop it with
 * mhdctx_task_cancel(). @return NULL on allocation failure (no reference is kept).
 * Safe from any thread that holds a reference to @p ctx.
 */
MHDCTX_EXPORT mhdctx_task *mhdctx_task_bind(mhdctx_context *ctx, void (*fn)(void *arg),
                                            void *arg) MHDCTX_WARN_UNUSED;
/**
 * Runs the task with its context current on the calling thread, restores the previous
 * current context, drops the reference and frees the task. Its signature fits any
 * `void (*)(void *)` work-queue API: submit mhdctx_task_run with the task as argument.
 */
MHDCTX_EXPORT void mhdctx_task_run(void *task);
/** Frees a task that will not run (drops its reference). NULL is ignored. */
MHDCTX_EXPORT void mhdctx_task_cancel(mhdctx_task *task);

/* Hand-off to other processes -------------------------------------------------------- */

/** Largest text mhdctx_context_import() accepts. */
#define MHDCTX_EXPORT_MAX_LEN 65536

/**
 * Exports @p ctx as compact JSON (version 1):
 * {"v":1,"request_id":"..","user_id":".."|null,"roles":[..],"keys":{..},
 *  "trace_id":"..","span_id":"..","parent_span_id":"..","trace_flags":"01",
 *  "tracestate":".."}
 * "keys" holds each user key as it was set, the value its log lines carry.
 * Owned: free() the result. NULL on allocation failure or a NULL context.
 */
MHDCTX_EXPORT char *mhdctx_context_export(const mhdctx_context *ctx) MHDCTX_WARN_UNUSED;
/**
 * Rebuilds a context from mhdctx_context_export() text, for a worker process that must
 * log with the same request id, user, keys and trace ids. Every field is validated as
 * the middleware validates headers (request-id rules, lowercase hex non-zero trace ids,
 * tracestate rules, user-key rules); unknown fields or versions are refused.
 * Owned: mhdctx_context_unref(). @p err (may be NULL) receives the reason on failure:
 * MHDCTX_EPARSE (not valid JSON or not the format; also when jansson's parser itself runs
 * out of memory, which it does not tell apart), MHDCTX_EINVAL, MHDCTX_ELIMIT,
 * MHDCTX_ERESERVED, MHDCTX_ENOMEM.
 */
MHDCTX_EXPORT mhdctx_context *mhdctx_context_import(const char *text, size_t len,
                                                    mhdctx_error *err) MHDCTX_WARN_UNUSED;

/* Outgoing HTTP calls ---------------------------------------------------------------- */

/**
 * One outgoing call made for a request: a client span of its own whose parent is the
 * request's server span (two calls never share a span id), and the headers to send.
 * Fill it with mhdctx_outgoing_start(), end it with mhdctx_outgoing_finish().
 */
typedef struct mhdctx_outgoing {
    char traceparent[MHDCTX_TRACEPARENT_LEN + 1];   /* header value to send */
    char tracestate[MHDCTX_TRACESTATE_MAX_LEN + 1]; /* header value, "" = do not send */
    char request_id[MHDCTX_REQUEST_ID_LIMIT + 1];   /* X-Request-Id value */
    char span_id[MHDCTX_SPAN_ID_LEN + 1];           /* the client span */
    char parent_span_id[MHDCTX_SPAN_ID_LEN + 1];    /* the request's server span */
    uint64_t start_ns;
    mhdctx_context *ctx; /* a reference, dropped by mhdctx_outgoing_finish() */
} mhdctx_outgoing;

/**
 * Starts a client span for a call made on behalf of @p ctx (NULL: the current
 * context; with none, a new trace is started). @return MHDCTX_OK or MHDCTX_EINVAL.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_outgoing_start(mhdctx_outgoing *call, mhdctx_context *ctx);
/**
 * Ends the call: logs "outgoing request completed" with method, url (query string,
 * fragment and user info removed; when the port is not a number, a password's raw '/',
 * '?' or '#' having cut the authority short, all up to the URL's last '@' counts as
 * user info), status (0 when no response came), duration_ms, span_id (client
 * span) and parent_span_id (server span), with the request's fields; at error level
 * when @p error (may be NULL) says why the call failed, warn for 5xx or when no response
 * came (status 0), else info.
 * Drops the context reference.
 */
MHDCTX_EXPORT void mhdctx_outgoing_finish(mhdctx_outgoing *call, const char *method,
                                          const char *url, unsigned int status,
                                          const char *error);

/** Request id: validated incoming value or generated UUID. Never NULL; borrowed. */
MHDCTX_EXPORT const char *mhdctx_request_id(const mhdctx_context *ctx);
/**
 * Why the incoming id was not used (MHDCTX_ID_VALID when it was, MHDCTX_ID_MISSING
 * when none came).
 */
MHDCTX_EXPORT mhdctx_id_verdict mhdctx_request_id_verdict(const mhdctx_context *ctx);
/**
 * Trace ids of the request's server span (lowercase hex, borrowed, fixed for the life
 * of the context). A request with a valid traceparent continues its trace, with a new
 * span id whose parent is the caller's; any other request starts a new trace. New ids
 * are drawn by their first reader (this call, a log line, an outgoing call, an SQL
 * tag, an export), under the context's lock: safe from any thread holding a
 * reference, and every reader sees the same ids.
 */
MHDCTX_EXPORT const char *mhdctx_trace_id(const mhdctx_context *ctx);
MHDCTX_EXPORT const char *mhdctx_span_id(const mhdctx_context *ctx);
/** The caller's span id, "" when the request started a new trace. */
MHDCTX_EXPORT const char *mhdctx_parent_span_id(const mhdctx_context *ctx);
MHDCTX_EXPORT unsigned char mhdctx_trace_flags(const mhdctx_context *ctx);
/** The normalized incoming tracestate, "" when none. Borrowed. */
MHDCTX_EXPORT const char *mhdctx_tracestate(const mhdctx_context *ctx);

/**
 * The route that served the request, as the application names it ("/users/{id}");
 * the path until mhdctx_set_route() is called. Used by SQL tags. Borrowed.
 */
MHDCTX_EXPORT const char *mhdctx_route(const mhdctx_context *ctx);
/** Names the route (copied). @return MHDCTX_OK, MHDCTX_EINVAL, MHDCTX_ENOMEM. */
MHDCTX_EXPORT mhdctx_error mhdctx_set_route(mhdctx_context *ctx, const char *route);
/** HTTP method ("GET"), "" until the handler's first call. Borrowed. */
MHDCTX_EXPORT const char *mhdctx_method(const mhdctx_context *ctx);
/** Request path as the client sent it, without the query string. Borrowed. */
MHDCTX_EXPORT const char *mhdctx_path(const mhdctx_context *ctx);
/** Query string without the '?', NULL when there is none. Borrowed. */
MHDCTX_EXPORT const char *mhdctx_query(const mhdctx_context *ctx);
/** CLOCK_MONOTONIC time at which the request line arrived, in nanoseconds. */
MHDCTX_EXPORT uint64_t mhdctx_start_monotonic_ns(const mhdctx_context *ctx);
/** Wall-clock (CLOCK_REALTIME) time at which the request line arrived: derived at the
 *  first call from the wall clock then and the monotonic time elapsed since, so a step
 *  of the wall clock during the request moves it; every later call returns the same. */
MHDCTX_EXPORT struct timespec mhdctx_start_realtime(const mhdctx_context *ctx);
/** Milliseconds since the request line arrived (monotonic clock). */
MHDCTX_EXPORT double mhdctx_elapsed_ms(const mhdctx_context *ctx);

/**
 * Sets the user id (copied; NULL clears it, the user becomes anonymous).
 * @return MHDCTX_OK; MHDCTX_ELIMIT when longer than MHDCTX_MAX_USER_ID_LEN;
 *         MHDCTX_EINVAL for a NULL context, or an id that is empty or contains control
 *         bytes; MHDCTX_ENOMEM. Safe from any thread holding a reference.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_set_user_id(mhdctx_context *ctx, const char *user_id);
/**
 * The user id, NULL while anonymous. Borrowed: valid until the user id is set again
 * or the context is freed. Prefer mhdctx_copy_user_id() if another thread may set it.
 */
MHDCTX_EXPORT const char *mhdctx_user_id(const mhdctx_context *ctx);
/**
 * Copies the user id into @p buf (always NUL-terminated when @p size > 0).
 * @return MHDCTX_OK; MHDCTX_ENOTFOUND while anonymous; MHDCTX_ELIMIT if too small (the
 *         start of the id is copied); MHDCTX_EINVAL for a NULL context (buf is "") or a
 *         NULL or empty buffer.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_copy_user_id(const mhdctx_context *ctx, char *buf,
                                               size_t size);

/**
 * Adds a role (copied; a role already present is not added twice).
 * @return MHDCTX_OK, MHDCTX_EINVAL (empty, control bytes), MHDCTX_ELIMIT (more than
 *         MHDCTX_MAX_ROLES or longer than MHDCTX_MAX_KEY_LEN), MHDCTX_ENOMEM.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_add_role(mhdctx_context *ctx, const char *role);
/** Whether the user has @p role. */
MHDCTX_EXPORT bool mhdctx_has_role(const mhdctx_context *ctx, const char *role);
/** The roles as a new JSON array of strings (owned: json_decref()); NULL on ENOMEM. */
MHDCTX_EXPORT json_t *mhdctx_roles_json(const mhdctx_context *ctx) MHDCTX_WARN_UNUSED;

/**
 * Sets the user key @p key (e.g. "tenant_id") to @p value, which it steals, also on
 * failure. A NULL value removes the key. Every log line of the request carries the key,
 * as the value's JSON text at the time of the call: changing a shared json_t later does
 * not change the lines (set the key again), and no log line reads it while you do.
 * Keys are 1..MHDCTX_MAX_KEY_LEN bytes of [A-Za-z0-9_.-]; names the library writes
 * itself ("request_id", "user_id", "time", ...) are refused with MHDCTX_ERESERVED.
 * @return MHDCTX_OK, MHDCTX_EINVAL (NULL context, empty key or a byte outside that set,
 *         a value jansson cannot encode), MHDCTX_ERESERVED, MHDCTX_ELIMIT (a key longer
 *         than MHDCTX_MAX_KEY_LEN, more than MHDCTX_MAX_USER_KEYS keys, or a value whose
 *         JSON text exceeds MHDCTX_MAX_VALUE_LEN bytes), MHDCTX_ENOMEM.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_set_new(mhdctx_context *ctx, const char *key, json_t *value);
/** As mhdctx_set_new() but borrows @p value (takes its own reference). */
MHDCTX_EXPORT mhdctx_error mhdctx_set(mhdctx_context *ctx, const char *key, json_t *value);
/**
 * Shorthand for mhdctx_set_new(ctx, key, json_string(value)); a NULL value removes the
 * key. A value that is not valid UTF-8 is refused with MHDCTX_EINVAL; MHDCTX_ENOMEM when
 * the string cannot be allocated.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_set_string(mhdctx_context *ctx, const char *key,
                                             const char *value);
/**
 * A new reference to the value of @p key (owned: json_decref()), NULL when absent.
 * A new reference rather than a borrowed one, so the value stays valid while another
 * thread replaces the key.
 */
MHDCTX_EXPORT json_t *mhdctx_get(const mhdctx_context *ctx, const char *key) MHDCTX_WARN_UNUSED;

/* ------------------------------------------------------------------------------------
 * Deadlines
 * ---------------------------------------------------------------------------------- */

/**
 * Every request has a deadline: the middleware's default budget (30 s unless
 * mhdctx_set_deadline_ms() says otherwise), or a route's own (mhdctx_route_deadline_ms()),
 * or - when mhdctx_set_trust_incoming_deadline() allows it - a tighter budget a caller
 * sends in `X-Request-Timeout-Ms` (1..the server's budget; anything else is ignored).
 * The adapters apply what is left where the request waits on others: libcurl's timeout,
 * PostgreSQL's statement_timeout, SQLite's progress handler.
 */

/**
 * Milliseconds left before the deadline, rounded up: 0 exactly when it has passed (as
 * mhdctx_deadline_passed() says), at least 1 while any time is left; INT64_MAX: none.
 * Safe from any thread holding a reference.
 */
MHDCTX_EXPORT int64_t mhdctx_deadline_remaining_ms(const mhdctx_context *ctx);
/** Whether the deadline has passed. False for a NULL context or one without deadline. */
MHDCTX_EXPORT bool mhdctx_deadline_passed(const mhdctx_context *ctx);
/**
 * Sets the deadline @p ms milliseconds from now (0: none; a budget too large to
 * represent means none too), e.g. for a context of one's own (mhdctx_context_new()).
 * Safe from any thread holding a reference.
 */
MHDCTX_EXPORT void mhdctx_set_deadline_in(mhdctx_context *ctx, uint64_t ms);
/**
 * Answers 504 {"error": "deadline_exceeded", "request_id"} and marks the request so that
 * its access line says outcome "timeout". Call from the handler when
 * mhdctx_deadline_passed() or an adapter reports the deadline.
 */
MHDCTX_EXPORT enum MHD_Result
mhdctx_respond_deadline_exceeded(struct MHD_Connection *connection);

/* ------------------------------------------------------------------------------------
 * SQL tagging (sqlcommenter)
 * ---------------------------------------------------------------------------------- */

#define MHDCTX_SQL_MAX_TAG_KEYS 16

/**
 * Returns @p sql with a trailing comment in the sqlcommenter format for the current
 * request: keys sorted, URL-encoded and quote-escaped - framework ("mhdctx/<version>"),
 * request_id, route (mhdctx_route()), traceparent, user_id (when set), and the user keys
 * chosen with mhdctx_sql_tag_keys() (a string as it is, another value as the compact
 * ASCII JSON that log lines carry). The comment goes before a final ';'. A statement
 * that already contains a comment ("/" "*" or "--"), or a call outside a request,
 * returns an unchanged copy. No value can end the comment or add SQL.
 * Owned: free(). NULL for a NULL @p sql or on allocation failure.
 */
MHDCTX_EXPORT char *mhdctx_sql_tag(const char *sql) MHDCTX_WARN_UNUSED;
/** As mhdctx_sql_tag() for @p ctx (NULL: an unchanged copy). */
MHDCTX_EXPORT char *mhdctx_sql_tag_ctx(mhdctx_context *ctx, const char *sql) MHDCTX_WARN_UNUSED;
/**
 * Allocation-free: writes the tagged statement into @p buf (@p size bytes).
 * @p needed (may be NULL) receives the size required, NUL included.
 * @return MHDCTX_OK; MHDCTX_ELIMIT when @p buf is too small (it then holds a truncated,
 *         NUL-terminated prefix that must not be executed); MHDCTX_EINVAL.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_sql_tag_into(mhdctx_context *ctx, const char *sql, char *buf,
                                               size_t size, size_t *needed);
/** Whether @p sql contains a comment (then tagging leaves it unchanged). */
MHDCTX_EXPORT bool mhdctx_sql_has_comment(const char *sql);
/**
 * The user keys (e.g. "tenant_id") that go into tags, process-wide (default none).
 * Set at start-up, before requests. @return MHDCTX_OK, MHDCTX_EINVAL (NULL, empty or
 * repeated key), MHDCTX_ERESERVED (a key the library writes: framework, route,
 * traceparent, request_id, user_id, ...), MHDCTX_ELIMIT (more than
 * MHDCTX_SQL_MAX_TAG_KEYS), MHDCTX_ENOMEM.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_sql_tag_keys(const char *const *keys, size_t n);

/* ------------------------------------------------------------------------------------
 * Logger: JSON lines
 * ---------------------------------------------------------------------------------- */

typedef enum mhdctx_log_level {
    MHDCTX_LOG_DEBUG = 0,
    MHDCTX_LOG_INFO = 1,
    MHDCTX_LOG_WARN = 2,
    MHDCTX_LOG_ERROR = 3,
    MHDCTX_LOG_OFF = 4 /**< as a threshold: log nothing; as a route level: no line */
} mhdctx_log_level;

/** "debug", "info", "warn", "error", "off". Static string. */
MHDCTX_EXPORT const char *mhdctx_log_level_name(mhdctx_log_level level);
/**
 * Parses "debug|info|warn|error|off" (case-insensitive).
 * @return MHDCTX_OK or MHDCTX_EINVAL (then @p level is untouched).
 */
MHDCTX_EXPORT mhdctx_error mhdctx_log_level_parse(const char *text, mhdctx_log_level *level);

/**
 * Sets the threshold: lines below it are not written. The initial threshold is
 * MHDCTX_LOG_LEVEL from the environment when it is valid, else "info".
 * Safe from any thread at any time.
 */
MHDCTX_EXPORT void mhdctx_log_set_level(mhdctx_log_level level);
MHDCTX_EXPORT mhdctx_log_level mhdctx_log_get_level(void);
/** Whether a line at @p level would be written (to skip building costly fields). */
MHDCTX_EXPORT bool mhdctx_log_enabled(mhdctx_log_level level);

/** A structured field of one log call. Build them with the MHDCTX_F_* macros. */
typedef enum mhdctx_field_type {
    MHDCTX_FIELD_STRING, /**< NUL-terminated string, NULL writes null */
    MHDCTX_FIELD_BYTES,  /**< len bytes, any content (escaped) */
    MHDCTX_FIELD_INT,
    MHDCTX_FIELD_UINT,
    MHDCTX_FIELD_DOUBLE,
    MHDCTX_FIELD_BOOL,
    MHDCTX_FIELD_NULL,
    MHDCTX_FIELD_JSON /**< borrowed json_t, written compactly */
} mhdctx_field_type;

typedef struct mhdctx_field {
    const char *key;
    mhdctx_field_type type;
    size_t len; /* MHDCTX_FIELD_BYTES only */
    union {
        const char *s;
        long long i;
        unsigned long long u;
        double d;
        bool b;
        const json_t *j;
    } v;
} mhdctx_field;

#define MHDCTX_F_STR(k, val)                                                                   \
    ((mhdctx_field){.key = (k), .type = MHDCTX_FIELD_STRING, .v.s = (val)})
#define MHDCTX_F_BYTES(k, ptr, n)                                                              \
    ((mhdctx_field){.key = (k), .type = MHDCTX_FIELD_BYTES, .len = (n), .v.s = (ptr)})
#define MHDCTX_F_INT(k, val)                                                                   \
    ((mhdctx_field){.key = (k), .type = MHDCTX_FIELD_INT, .v.i = (val)})
#define MHDCTX_F_UINT(k, val)                                                                  \
    ((mhdctx_field){.key = (k), .type = MHDCTX_FIELD_UINT, .v.u = (val)})
#define MHDCTX_F_DOUBLE(k, val)                                                                \
    ((mhdctx_field){.key = (k), .type = MHDCTX_FIELD_DOUBLE, .v.d = (val)})
#define MHDCTX_F_BOOL(k, val)                                                                  \
    ((mhdctx_field){.key = (k), .type = MHDCTX_FIELD_BOOL, .v.b = (val)})
#define MHDCTX_F_NULL(k) ((mhdctx_field){.key = (k), .type = MHDCTX_FIELD_NULL})
#define MHDCTX_F_JSON(k, val)                                                                  \
    ((mhdctx_field){.key = (k), .type = MHDCTX_FIELD_JSON, .v.j = (val)})
/** Expands to "array, count" for the fields parameters below. */
#define MHDCTX_FIELDS(...)                                                                     \
    (const mhdctx_field[]){__VA_ARGS__},                                                       \
        (sizeof((const mhdctx_field[]){__VA_ARGS__}) / sizeof(mhdctx_field))

/**
 * Writes one JSON line: "time" (RFC 3339 UTC, milliseconds), "level", "message"
 * (printf-style @p fmt), then - inside a request - "request_id", "user_id" (null while
 * anonymous) and every user key of the current context, then the @p n fields.
 * A line never repeats a key: a field named like a field of the library (so a call
 * can never forge a request id), like a user key, or like an earlier field of the call
 * is written under the first free name of "field_<name>", "field_<name>_2", "_3"...
 * (a line's own keys count, not keys inside values). Any bytes are escaped into valid JSON
 * (invalid UTF-8 becomes U+FFFD). Never blocks forever and never fails the caller: a line the
 * sink cannot take is counted (mhdctx_log_dropped()). Safe from any thread.
 */
MHDCTX_EXPORT void mhdctx_log(mhdctx_log_level level, const char *fmt, ...) MHDCTX_PRINTF(2, 3);
MHDCTX_EXPORT void mhdctx_log_fields(mhdctx_log_level level, const mhdctx_field *fields,
                                     size_t n, const char *fmt, ...) MHDCTX_PRINTF(4, 5);
MHDCTX_EXPORT void mhdctx_log_fieldsv(mhdctx_log_level level, const mhdctx_field *fields,
                                      size_t n, const char *fmt, va_list ap)
    MHDCTX_PRINTF(4, 0);
/**
 * As mhdctx_log_fields() with the context given explicitly instead of the current one
 * (NULL: no context fields). For threads that hold a reference but did not enter the
 * context with mhdctx_run().
 */
MHDCTX_EXPORT void mhdctx_log_ctx(mhdctx_context *ctx, mhdctx_log_level level,
                                  const mhdctx_field *fields, size_t n, const char *fmt, ...)
    MHDCTX_PRINTF(5, 6);
/**
 * Error helper: level "error", adds "errno" (number) and "error" (strerror text of
 * @p errnum) to the fields, of which it writes the first 30.
 */
MHDCTX_EXPORT void mhdctx_log_errno(int errnum, const mhdctx_field *fields, size_t n,
                                    const char *fmt, ...) MHDCTX_PRINTF(4, 5);

#define mhdctx_log_debug(...) mhdctx_log(MHDCTX_LOG_DEBUG, __VA_ARGS__)
#define mhdctx_log_info(...)  mhdctx_log(MHDCTX_LOG_INFO, __VA_ARGS__)
#define mhdctx_log_warn(...)  mhdctx_log(MHDCTX_LOG_WARN, __VA_ARGS__)
#define mhdctx_log_error(...) mhdctx_log(MHDCTX_LOG_ERROR, __VA_ARGS__)

/**
 * Receives each formatted line (JSON text ending in '\n', not NUL-terminated at
 * line[len]). Called on the logging thread, one call at a time (under the sink's lock).
 * @p line is borrowed for the call. A line the callback itself logs is not written: it
 * is counted in mhdctx_log_dropped() (the lock is held and the thread's line storage
 * holds @p line).
 */
typedef void (*mhdctx_log_callback)(mhdctx_log_level level, const char *line, size_t len,
                                    void *cls);

/*
 * Sinks. One sink is active; the default is standard output. Choose it at start-up,
 * before requests are served (a switch while other threads log is safe but those
 * threads may still write one line to the previous sink).
 * Every sink writes each line with one write(2) under a lock, retrying partial writes,
 * so concurrent lines never interleave (synchronous mode, the default; see
 * mhdctx_log_async_start() for batched writes). A synchronous write to a pipe whose
 * reader stalls blocks the logging thread with it: prefer the asynchronous mode there. A
 * non-blocking fd that is full is waited for, up to one second per write. A failing
 * sink (full disk, closed pipe) counts the line as dropped. SIGPIPE is suppressed for
 * the writes to a pipe or socket when the process did not ignore it at the sink's first
 * write (read once, not per line: it would cost a system call per line); a program
 * that stops ignoring SIGPIPE after logging started sets its sink again. A line the
 * sink took only in part is ended with a newline before the next line, which therefore
 * starts a line of its own. A child of fork() logs through the same sink, synchronously;
 * the sink's lock is per process, so on a pipe, a line longer than PIPE_BUF (4096 bytes)
 * from the child and one from the parent may interleave (Linux keeps each write(2) to a
 * regular file whole, as mhdctx_log_to_file() opens it, O_APPEND).
 */
MHDCTX_EXPORT mhdctx_error mhdctx_log_to_stdout(void);
MHDCTX_EXPORT mhdctx_error mhdctx_log_to_stderr(void);
/**
 * Appends to @p path (created 0644 if missing). The file stays open until another sink
 * is chosen or mhdctx_log_shutdown().
 * @return MHDCTX_OK, MHDCTX_EINVAL (NULL path), MHDCTX_EIO (open failed; errno is set).
 */
MHDCTX_EXPORT mhdctx_error mhdctx_log_to_file(const char *path);
/** Writes to @p fd, which stays the caller's (never closed by the library). */
MHDCTX_EXPORT mhdctx_error mhdctx_log_to_fd(int fd);
MHDCTX_EXPORT mhdctx_error mhdctx_log_to_callback(mhdctx_log_callback fn, void *cls);
/** Lines that a sink failed to take since start (monotonic counter). */
MHDCTX_EXPORT uint64_t mhdctx_log_dropped(void);
/**
 * Stops the asynchronous writer (every queued line is written first), closes a file
 * sink and returns to stdout. Call after the last request, before exit.
 */
MHDCTX_EXPORT void mhdctx_log_shutdown(void);

/*
 * Asynchronous mode. A request thread copies its line into a bounded buffer (one
 * uncontended lock and a memcpy, no system call); one background writer thread writes
 * the buffer to the fd sink in batches: when it is half full, when mhdctx_log_flush()
 * asks, when a line finds no room, and at the latest one flush interval after a
 * batch's first line (lines queued during a write count from its start). With nothing
 * queued it sleeps until a line comes (no periodic wake-up). The thread is named
 * "mhdctx-log" (top -H, /proc/PID/task/TID/comm). Lines stay whole and never
 * interleave. A batch is written 64 KiB at a time (whole lines), yielding the CPU
 * between writes: where the writer shares a CPU with request threads, it holds them off
 * for one such write, whatever the buffer size. Memory: two buffers of buffer_bytes
 * each, allocated at start.
 *
 * When the buffer is full (the sink is slower than the server), the policy decides:
 * MHDCTX_LOG_FULL_BLOCK waits for room up to block_timeout_ms, then drops the line;
 * lines waiting for room go into the buffer in their order of arrival, as many at once
 * as the room a batch makes holds, and a line logged while others wait goes behind them
 * even if it would fit (no waiter is starved by newcomers; each may still be dropped at
 * its own timeout, a small line behind a large one included);
 * MHDCTX_LOG_FULL_DROP drops it at once. Either way a request never waits forever for
 * room, and every dropped line is counted (mhdctx_log_dropped()); a line the buffer has
 * no room for has the writer write the buffer now. A line larger than a buffer is
 * written synchronously, by its thread, without waiting in the queue, once the lines
 * queued before it (by any thread) are written: it waits for them at most
 * block_timeout_ms, under either policy, and is dropped and counted if they are not
 * written by then; its own write is a synchronous one (a pipe's stalled reader holds
 * it, as in the synchronous mode).
 *
 * What a crash can lose: lines queued but not yet written - at most one flush interval
 * of lines (and never more than two buffers). mhdctx_log_shutdown() and
 * mhdctx_log_async_stop() write everything that was queued. A process that ends with
 * exit() without calling them loses what is queued. A child of fork() has no writer:
 * it logs synchronously (start the writer after daemonizing).
 *
 * Thread rules: start and stop at start-up and shutdown (from one thread, not
 * concurrently with each other); logging and mhdctx_log_flush() are safe from any
 * thread at any time, before, during and after.
 */
typedef enum mhdctx_log_full_policy {
    MHDCTX_LOG_FULL_BLOCK = 0, /**< wait for room, at most block_timeout_ms */
    MHDCTX_LOG_FULL_DROP = 1   /**< drop and count at once */
} mhdctx_log_full_policy;

typedef struct mhdctx_log_async_options {
    size_t buffer_bytes;        /**< each of the two buffers; 0 = 1 MiB; min 64 KiB */
    unsigned flush_interval_ms; /**< longest time a line waits; 0 = 50 ms; max 60000 */
    mhdctx_log_full_policy when_full;
    /** The longest wait for room (MHDCTX_LOG_FULL_BLOCK) and, under either policy, of a
     * line larger than a buffer for the lines before it; 0 = 1000 ms; max 60000. */
    unsigned block_timeout_ms;
} mhdctx_log_async_options;

/**
 * Starts the writer thread for the current fd sink (stdout, stderr, file or fd). The
 * thread ("mhdctx-log") blocks every signal, so that none meant for the application's
 * threads is delivered to it. @p options may be NULL (defaults); zero members take their
 * defaults.
 * @return MHDCTX_OK; MHDCTX_EINVAL (an option out of range); MHDCTX_ESTATE (already
 *         running, or the sink is a callback); MHDCTX_ENOMEM (buffers or thread).
 * Choosing another fd sink while it runs is allowed: queued lines are written to the
 * previous sink first. mhdctx_log_to_callback() then answers MHDCTX_ESTATE.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_log_async_start(const mhdctx_log_async_options *options);
/** Writes every queued line, stops the writer; lines are synchronous again. Idempotent.
 * Threads waiting for room write their own lines; it returns once they have all left
 * the wait. */
MHDCTX_EXPORT void mhdctx_log_async_stop(void);
/** Whether the writer thread runs. */
MHDCTX_EXPORT bool mhdctx_log_async_running(void);
/**
 * Returns once every line logged (by any thread) before the call has been handed to
 * the sink. A no-op in synchronous mode, where each call writes its line itself.
 */
MHDCTX_EXPORT void mhdctx_log_flush(void);

/* ------------------------------------------------------------------------------------
 * Middleware: the MHD glue
 * ---------------------------------------------------------------------------------- */

typedef struct mhdctx_middleware mhdctx_middleware;

/**
 * Creates the middleware in front of @p handler, which keeps MHD's own signature and
 * receives @p handler_cls. Its `req_cls` argument is a slot of its own per request
 * (initially NULL, preserved across calls), so existing handlers work unchanged; MHD's
 * own `*req_cls` is used by the middleware. Not supported: HTTP upgrades (WebSocket).
 * MHD passes its own `*req_cls`, the middleware's, to an upgrade handler
 * (MHD_create_response_for_upgrade), not the handler's slot, and with no current context.
 * Contexts may outlive the middleware (a worker's reference): they keep what they need.
 * Owned: release with mhdctx_middleware_free() after MHD_stop_daemon().
 * @return NULL on allocation failure or a NULL handler.
 */
MHDCTX_EXPORT mhdctx_middleware *mhdctx_middleware_new(MHD_AccessHandlerCallback handler,
                                                       void *handler_cls) MHDCTX_WARN_UNUSED;
MHDCTX_EXPORT void mhdctx_middleware_free(mhdctx_middleware *mw);
/**
 * Says that the server is stopping: every request that ends from now on without a
 * response is logged with outcome "shutdown" and status 0 (in thread-per-connection
 * mode MHD reports the connections it closes on a stop as client aborts; a response
 * queued during MHD_stop_daemon() is dropped by MHD, which still returns MHD_YES).
 * Call it right before MHD_stop_daemon() (or before the application cancels its
 * in-flight work). Safe from any thread; NULL is ignored.
 */
MHDCTX_EXPORT void mhdctx_middleware_stopping(mhdctx_middleware *mw);

/**
 * The access handler to give MHD_start_daemon(), with the middleware as its cls.
 * Runs the hooks once per request before the first call of the wrapped handler.
 */
MHDCTX_EXPORT enum MHD_Result
mhdctx_access_handler(void *cls, struct MHD_Connection *connection, const char *url,
                      const char *method, const char *version, const char *upload_data,
                      size_t *upload_data_size, void **req_cls);

/**
 * MHD options the middleware needs (URI-log and completion callbacks, MHD's error log
 * routed to the JSON logger), for MHD_OPTION_ARRAY. Pass them as the first option, as
 * MHD wants its logger before any other option; MHD writes messages only when the
 * daemon has MHD_USE_ERROR_LOG among its flags. Do not pass
 * MHD_OPTION_URI_LOG_CALLBACK or MHD_OPTION_NOTIFY_COMPLETED yourself: register a
 * completion callback with mhdctx_on_completed(). Borrowed: lives as long as @p mw.
 */
MHDCTX_EXPORT const struct MHD_OptionItem *mhdctx_mhd_options(mhdctx_middleware *mw);

/**
 * Registers the application's completion callback. It runs from the middleware's
 * completion callback, with the context current and the same per-request slot that the
 * handler sees as `req_cls`, before the access-log line is written.
 * Configuration-time only. @return MHDCTX_OK, MHDCTX_EINVAL (NULL @p mw) or
 * MHDCTX_ESTATE (already started).
 */
MHDCTX_EXPORT mhdctx_error mhdctx_on_completed(mhdctx_middleware *mw,
                                               MHD_RequestCompletedCallback cb, void *cls);

/**
 * Name of the request-id header read and sent (default "X-Request-Id"). Copied.
 * @return MHDCTX_OK, MHDCTX_EINVAL (NULL, empty or not an HTTP token), MHDCTX_ELIMIT
 *         (64 bytes or more), MHDCTX_ESTATE (already started).
 */
MHDCTX_EXPORT mhdctx_error mhdctx_set_request_id_header(mhdctx_middleware *mw,
                                                        const char *name);
/** Longest incoming id accepted, 1..MHDCTX_REQUEST_ID_LIMIT (default 128). */
MHDCTX_EXPORT mhdctx_error mhdctx_set_request_id_max_length(mhdctx_middleware *mw,
                                                            size_t max_len);
/**
 * Whether incoming ids are used (default true). At an edge that faces the internet,
 * set false: every request gets a fresh id and the access line says "untrusted".
 */
MHDCTX_EXPORT mhdctx_error mhdctx_set_trust_incoming_request_id(mhdctx_middleware *mw,
                                                                bool trust);

/** Default deadline budget of every request, in ms (default 30000; 0: no deadline). */
MHDCTX_EXPORT mhdctx_error mhdctx_set_deadline_ms(mhdctx_middleware *mw, uint64_t ms);
/**
 * Budget of the requests to exactly @p path, overriding the default. Routes are matched
 * against the path the handler gets (MHD's `url`: no query, percent-decoded), so that
 * "/se%61rch" is "/search" here as it is to the application's router.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_route_deadline_ms(mhdctx_middleware *mw, const char *path,
                                                    uint64_t ms);
/**
 * Whether a caller's `X-Request-Timeout-Ms` may tighten the budget (default false: only
 * behind a trusted proxy or between one's own services).
 */
MHDCTX_EXPORT mhdctx_error mhdctx_set_trust_incoming_deadline(mhdctx_middleware *mw,
                                                              bool trust);

/* Hooks ------------------------------------------------------------------------------ */

typedef enum mhdctx_hook_result {
    MHDCTX_HOOK_CONTINUE = 0, /**< go on with the next hook, then the handler */
    MHDCTX_HOOK_DONE = 1,     /**< the hook queued a response: the request ends there */
    MHDCTX_HOOK_FAIL = 2      /**< internal failure: the connection is closed */
} mhdctx_hook_result;

/**
 * A hook runs once per request, on MHD's thread for the connection, after the headers
 * are parsed and before the handler's first call, with @p ctx current.
 * To end the request, queue the answer with mhdctx_respond*() and return
 * MHDCTX_HOOK_DONE. The middleware holds that answer until MHD's next call when the
 * request has no body, because MHD 0.9.75 closes a connection whose response was queued
 * at the first call: the connection stays alive. With a body the answer goes out at
 * once and MHD closes the connection without reading the body. A response queued with
 * plain MHD_queue_response() goes out at once.
 */
typedef mhdctx_hook_result (*mhdctx_hook_fn)(struct MHD_Connection *connection,
                                             mhdctx_context *ctx, void *cls);

/** Appends a hook; hooks run in the order added. Configuration-time only. */
MHDCTX_EXPORT mhdctx_error mhdctx_add_hook(mhdctx_middleware *mw, mhdctx_hook_fn hook,
                                           void *cls);

/* Bearer authentication -------------------------------------------------------------- */

/**
 * Parses an Authorization header value of the form "Bearer <token>" (scheme
 * case-insensitive, one or more spaces, RFC 6750 token68 syntax; trailing spaces and
 * tabs ignored, as RFC 9110 says of any field value). On success *token / *token_len
 * point into @p header. @return MHDCTX_OK, or MHDCTX_EPARSE for anything else.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_bearer_parse(const char *header, size_t header_len,
                                               const char **token, size_t *token_len);

/**
 * Compares two byte strings in time that depends only on @p secret_len. A NULL string
 * (whatever its length) equals nothing, not even another NULL.
 */
MHDCTX_EXPORT bool mhdctx_secret_equal(const void *given, size_t given_len, const void *secret,
                                       size_t secret_len);

/**
 * Resolves a token: on success set the user id (and roles) on @p ctx and return
 * MHDCTX_OK; return MHDCTX_EAUTH for an unknown token; any other error is a 500.
 */
typedef mhdctx_error (*mhdctx_token_verifier)(const char *token, size_t token_len,
                                              mhdctx_context *ctx, void *cls);

/**
 * Adds the bearer-auth hook: no Authorization header leaves the user anonymous; a
 * header that is malformed, repeated, or whose token @p verify refuses ends the request
 * with 401, `WWW-Authenticate: Bearer error="invalid_token"` and a JSON body
 * {"error", "request_id"}. The token and header never reach a log line.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_add_bearer_auth(mhdctx_middleware *mw,
                                                  mhdctx_token_verifier verify, void *cls);

/** A token table: token -> user id and roles, checked in constant time. */
typedef struct mhdctx_token_table mhdctx_token_table;
/** Owned: mhdctx_token_table_free(). NULL on ENOMEM. */
MHDCTX_EXPORT mhdctx_token_table *mhdctx_token_table_new(void) MHDCTX_WARN_UNUSED;
MHDCTX_EXPORT void mhdctx_token_table_free(mhdctx_token_table *table);
/**
 * Adds a token (all copied). @return MHDCTX_OK, MHDCTX_ENOMEM, MHDCTX_EINVAL (a malformed
 * token, user id or role, or a token already in the table: one token, one user).
 */
MHDCTX_EXPORT mhdctx_error mhdctx_token_table_add(mhdctx_token_table *table, const char *token,
                                                  const char *user_id, const char *const *roles,
                                                  size_t n_roles);
/**
 * Loads a JSON file {"<token>": {"user_id": "42", "roles": ["admin"]}, ...}.
 * All or nothing: on failure the table is as it was. @p err (may be NULL) receives a
 * message on failure: the path and, for bad JSON, the line, column and reason, never
 * the file's text (its tokens), so that it can be logged.
 * @return MHDCTX_OK, MHDCTX_EIO (unreadable), MHDCTX_EPARSE (bad JSON or shape, a token
 *         twice in the file or already in the table; also when jansson's parser runs out
 *         of memory), MHDCTX_EINVAL, MHDCTX_ENOMEM.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_token_table_load(mhdctx_token_table *table, const char *path,
                                                   char *err, size_t err_size);
/** A ::mhdctx_token_verifier over a table (cls = the table). */
MHDCTX_EXPORT mhdctx_error mhdctx_token_table_verify(const char *token, size_t token_len,
                                                     mhdctx_context *ctx, void *cls);

/* Responses -------------------------------------------------------------------------- */

/**
 * MHD responses may be shared between connections, so the middleware never mutates a
 * response it did not create. These helpers create a response for this request only,
 * with the request-id header, queue it and release it. Call them from the handler or a
 * hook (the current context supplies the id).
 */

/**
 * Queues @p len bytes of @p body (copied) with @p content_type (NULL or "": no
 * Content-Type header). MHD_NO, and nothing queued, when a header cannot be added (out
 * of memory, or a type with CR or LF, which MHD refuses).
 */
MHDCTX_EXPORT enum MHD_Result mhdctx_respond(struct MHD_Connection *connection,
                                             unsigned int status, const char *content_type,
                                             const void *body, size_t len);
/** Queues @p body (stolen, also on failure) as compact JSON. */
MHDCTX_EXPORT enum MHD_Result mhdctx_respond_json_new(struct MHD_Connection *connection,
                                                      unsigned int status, json_t *body);
/** Queues {"error": @p message, "request_id": id} with @p status. */
MHDCTX_EXPORT enum MHD_Result mhdctx_respond_error(struct MHD_Connection *connection,
                                                   unsigned int status, const char *message);
/**
 * Adds the request-id header of @p ctx to @p response. Only for a response created for
 * this request (never a shared one). @return MHDCTX_OK, MHDCTX_EINVAL, MHDCTX_ENOMEM.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_response_add_request_id(struct MHD_Response *response,
                                                          const mhdctx_context *ctx);

/* Access log ------------------------------------------------------------------------- */

/**
 * One line per finished request, from the completion callback: "request completed"
 * with method, path, status, duration_ms, outcome
 * (completed|client_abort|timeout|error|shutdown), request_id_replaced when the
 * incoming id was refused, and the context fields. Level: 5xx error, 4xx warn, else
 * info, unless a route or the filter says otherwise. Its "time" is the request's end,
 * worked out from the monotonic reading its duration takes (one clock read for both):
 * after a step of the wall clock it may lag the step by up to a second.
 */

/**
 * Level for the access line of requests to exactly @p path (MHDCTX_LOG_OFF: none),
 * matched as for mhdctx_route_deadline_ms(). The route is found when the middleware
 * first sees the request, before the hooks: a request a hook answers (the bearer hook's
 * 401 too) gets its route's level like one the wrapped handler answers. A request MHD
 * refuses before the middleware sees it (a malformed header line) has no route: its
 * level comes from its status.
 */
MHDCTX_EXPORT mhdctx_error mhdctx_access_log_route(mhdctx_middleware *mw, const char *path,
                                                   mhdctx_log_level level);
/**
 * Full control (pino-http's customLogLevel): returns the level of the access line for
 * @p ctx with @p status, or MHDCTX_LOG_OFF for none. @p suggested is the level the
 * status and the routes give. Called on MHD's thread in the completion callback, for
 * every request while the log level is not MHDCTX_LOG_OFF (with logging off no line
 * can be written, and it is not asked).
 */
typedef mhdctx_log_level (*mhdctx_access_level_fn)(const mhdctx_context *ctx,
                                                   unsigned int status,
                                                   mhdctx_log_level suggested, void *cls);
MHDCTX_EXPORT mhdctx_error mhdctx_access_log_level_fn(mhdctx_middleware *mw,
                                                      mhdctx_access_level_fn fn, void *cls);
/** Whether the access line carries the query string as "query" (default false). */
MHDCTX_EXPORT mhdctx_error mhdctx_access_log_query(mhdctx_middleware *mw, bool include);

#ifdef __cplusplus
}
#endif
#endif /* MHDCTX_H */
