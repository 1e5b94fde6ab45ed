/*
 * check_deadline.c - request deadlines: on a context of one's own, then through a real
 * MHD daemon (epoll, internal thread, port 0) with the middleware: the default budget,
 * the server's own, per-route budgets, the caller's X-Request-Timeout-Ms (trusted or
 * not, valid or not), and the 504 answer with its access line.
 *
 * The handler reports what it sees in its JSON answer ({"remaining_ms", "passed",
 * "has_ctx"}), so every assertion runs on the test thread. Each test starts its daemon
 * itself, stops it, frees the middleware and restores the log sink.
 */
#include "http_client.h"
#include "mhdctx.h"
#include "support.h"

#include <check.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_TIMEOUT_S 60
#define ACCESS_MSG     "request completed"
#define TIMEOUT_HEADER "X-Request-Timeout-Ms"

/* ==== the application ================================================================== */

/* What the /slow handler saw, read by the test after the daemon stopped. */
static atomic_int slow_saw_passed;
static atomic_int slow_remaining;

static char first_call_marker;

/*
 * First call: marks the slot. Final call: /slow waits until the deadline has passed (at
 * most 5 s) and answers 504 with mhdctx_respond_deadline_exceeded(); every other path
 * answers {"remaining_ms", "passed", "has_ctx"}.
 */
static enum MHD_Result app_handler(void *cls, struct MHD_Connection *connection,
                                   const char *url, const char *method, const char *version,
                                   const char *upload_data, size_t *upload_data_size,
                                   void **req_cls)
{
    (void)cls;
    (void)method;
    (void)version;
    (void)upload_data;
    if (*req_cls == NULL) {
        *req_cls = &first_call_marker;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    mhdctx_context *ctx = mhdctx_current();
    if (strcmp(url, "/slow") == 0) {
        for (unsigned waited = 0; !mhdctx_deadline_passed(ctx) && waited < 5000; waited += 5)
            sleep_ms(5);
        atomic_store(&slow_saw_passed, mhdctx_deadline_passed(ctx));
        atomic_store(&slow_remaining, (int)mhdctx_deadline_remaining_ms(ctx));
        return mhdctx_respond_deadline_exceeded(connection);
    }
    json_t *body = json_pack("{s:I, s:b, s:b}", "remaining_ms",
                             (json_int_t)mhdctx_deadline_remaining_ms(ctx), "passed",
                             mhdctx_deadline_passed(ctx), "has_ctx", ctx != NULL);
    return mhdctx_respond_json_new(connection, MHD_HTTP_OK, body);
}

static mhdctx_middleware *app_middleware(void)
{
    mhdctx_middleware *mw = mhdctx_middleware_new(&app_handler, NULL);
    ck_assert_ptr_nonnull(mw);
    return mw;
}

/* ==== requests ======================================================================== */

/* What the handler saw for GET @p path with @p headers. */
struct seen {
    int64_t remaining_ms;
    bool passed;
};

static struct seen get_seen(uint16_t port, const char *path, const char *headers)
{
    http_response *r = support_http_get(port, path, headers);
    ck_assert_msg(r->status == 200, "GET %s: status %d", path, r->status);
    json_t *body = support_body_json(r);
    http_response_free(r);
    json_t *rem = json_object_get(body, "remaining_ms");
    ck_assert(json_is_integer(rem));
    ck_assert(json_is_true(json_object_get(body, "has_ctx")));
    struct seen seen = {(int64_t)json_integer_value(rem),
                        json_is_true(json_object_get(body, "passed"))};
    json_decref(body);
    return seen;
}

/* GET @p path with one X-Request-Timeout-Ms line of @p value (NULL: none). */
static struct seen get_with_timeout(uint16_t port, const char *path, const char *value)
{
    char *hdr = value ? str_fmt(TIMEOUT_HEADER ": %s\r\n", value) : NULL;
    struct seen seen = get_seen(port, path, hdr);
    free(hdr);
    return seen;
}

/* The handler saw a deadline in (@p low, @p high] ms from its call, not yet passed. */
#define assert_remaining_in(got, low, high, what)                                              \
    do {                                                                                       \
        const struct seen s_ = (got);                                                          \
        ck_assert_msg(s_.remaining_ms > (low) && s_.remaining_ms <= (high),                    \
                      "%s: remaining %lld not in (%lld, %lld]", (what),                        \
                      (long long)s_.remaining_ms, (long long)(low), (long long)(high));        \
    } while (0)

/* A budget of at most @p high ms (0 allowed: a slow machine may use it up). */
#define assert_remaining_at_most(got, high, what)                                              \
    do {                                                                                       \
        const struct seen s_ = (got);                                                          \
        ck_assert_msg(s_.remaining_ms >= 0 && s_.remaining_ms <= (high),                       \
                      "%s: remaining %lld not in [0, %lld]", (what),                           \
                      (long long)s_.remaining_ms, (long long)(high));                          \
    } while (0)

/* ==== tests: a context of one's own ==================================================== */

START_TEST(test_context_deadline)
{
    mhdctx_context *ctx = mhdctx_context_new();
    ck_assert_ptr_nonnull(ctx);
    /* none */
    ck_assert_int_eq(mhdctx_deadline_remaining_ms(ctx), INT64_MAX);
    ck_assert(!mhdctx_deadline_passed(ctx));

    /* 50 ms */
    mhdctx_set_deadline_in(ctx, 50);
    int64_t left = mhdctx_deadline_remaining_ms(ctx);
    ck_assert_int_gt(left, 0);
    ck_assert_int_le(left, 50);
    ck_assert(!mhdctx_deadline_passed(ctx));
    sleep_ms(60);
    ck_assert(mhdctx_deadline_passed(ctx));
    ck_assert_int_eq(mhdctx_deadline_remaining_ms(ctx), 0);

    /* set again: from now */
    mhdctx_set_deadline_in(ctx, 10000);
    ck_assert(!mhdctx_deadline_passed(ctx));
    left = mhdctx_deadline_remaining_ms(ctx);
    ck_assert_int_gt(left, 9000);
    ck_assert_int_le(left, 10000);

    /* 0 clears it */
    mhdctx_set_deadline_in(ctx, 0);
    ck_assert_int_eq(mhdctx_deadline_remaining_ms(ctx), INT64_MAX);
    ck_assert(!mhdctx_deadline_passed(ctx));

    /* 1 ms: passed soon after */
    mhdctx_set_deadline_in(ctx, 1);
    sleep_ms(5);
    ck_assert(mhdctx_deadline_passed(ctx));
    ck_assert_int_eq(mhdctx_deadline_remaining_ms(ctx), 0);

    /* a hand-off: the deadline belongs to the context, not to the thread */
    mhdctx_context *ref = mhdctx_context_ref(ctx);
    mhdctx_set_deadline_in(ref, 2000);
    ck_assert_int_gt(mhdctx_deadline_remaining_ms(ctx), 1000);
    mhdctx_context_unref(ref);
    mhdctx_context_unref(ctx);

    /* NULL */
    ck_assert_int_eq(mhdctx_deadline_remaining_ms(NULL), INT64_MAX);
    ck_assert(!mhdctx_deadline_passed(NULL));
    mhdctx_set_deadline_in(NULL, 50); /* ignored */
    ck_assert_ptr_null(mhdctx_current());
}
END_TEST

/* 0 means passed and nothing else: rounded down, the last millisecond read 0 while the
 * deadline had not passed, and the adapters refused calls that still had time. Read in
 * that order, a 0 must be followed by "passed" (time only moves on). */
START_TEST(test_remaining_zero_only_when_passed)
{
    mhdctx_context *ctx = mhdctx_context_new();
    ck_assert_ptr_nonnull(ctx);
    unsigned early_zeros = 0, reads = 0;
    for (int round = 0; round < 20; round++) {
        mhdctx_set_deadline_in(ctx, 2);
        while (!mhdctx_deadline_passed(ctx)) {
            int64_t left = mhdctx_deadline_remaining_ms(ctx);
            bool passed = mhdctx_deadline_passed(ctx);
            ck_assert_int_le(left, 2);
            early_zeros += left == 0 && !passed;
            reads++;
        }
        ck_assert_int_eq(mhdctx_deadline_remaining_ms(ctx), 0);
    }
    mhdctx_context_unref(ctx);
    ck_assert_uint_gt(reads, 0);
    ck_assert_msg(early_zeros == 0, "%u of %u reads said 0 ms left before the deadline",
                  early_zeros, reads);
}
END_TEST

/* "@p ms milliseconds from now": a budget too large to be reached (an application that
 * passes UINT64_MAX for "forever") must not wrap around into a deadline in the past. */
START_TEST(test_context_deadline_huge_budget)
{
    static const uint64_t budgets[] = {
        UINT64_MAX / 1000000u, /* the largest that does not overflow in ns */
        UINT64_MAX / 1000000u + 1u, 100000000000000u, (uint64_t)INT64_MAX,
        UINT64_MAX / 1000u,         UINT64_MAX,
    };
    char failures[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
        mhdctx_context *ctx = mhdctx_context_new();
        ck_assert_ptr_nonnull(ctx);
        mhdctx_set_deadline_in(ctx, budgets[i]);
        bool passed = mhdctx_deadline_passed(ctx);
        int64_t left = mhdctx_deadline_remaining_ms(ctx);
        mhdctx_context_unref(ctx);
        if ((passed || left < 1000000) && used < sizeof failures) {
            int n = snprintf(failures + used, sizeof failures - used,
                             " [%llu ms: passed %d, remaining %lld ms]",
                             (unsigned long long)budgets[i], passed, (long long)left);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    ck_assert_msg(used == 0, "huge budgets wrap around:%s", failures);
}
END_TEST

/* ==== tests: through the middleware ==================================================== */

START_TEST(test_default_budget)
{
    support_capture_start_info();
    mhdctx_middleware *mw = app_middleware();
    support_server s;
    support_server_start(&s, mw, SUPPORT_MHD_EPOLL, NULL);
    struct seen seen = get_seen(s.port, "/a", NULL);
    assert_remaining_in(seen, 25000, 30000, "default budget");
    ck_assert(!seen.passed);
    /* an untrusted caller's budget changes nothing */
    assert_remaining_in(get_with_timeout(s.port, "/a", "100"), 25000, 30000,
                        "untrusted X-Request-Timeout-Ms");
    ck_assert(support_capture_wait(ACCESS_MSG, 2, 5000));
    support_server_stop(&s);
    mhdctx_middleware_free(mw);
    support_capture_stop();
}
END_TEST

START_TEST(test_server_budget)
{
    support_capture_start_info();
    mhdctx_middleware *mw = app_middleware();
    ck_assert_int_eq(mhdctx_set_deadline_ms(mw, 200), MHDCTX_OK);
    support_server s;
    support_server_start(&s, mw, SUPPORT_MHD_EPOLL, NULL);
    for (int i = 0; i < 3; i++)
        assert_remaining_at_most(get_seen(s.port, "/a", NULL), 200, "server budget 200");
    ck_assert(support_capture_wait(ACCESS_MSG, 3, 5000));
    support_server_stop(&s);
    mhdctx_middleware_free(mw);

    /* the budget is per request, from its own start: a second server, 5000 ms */
    mw = app_middleware();
    ck_assert_int_eq(mhdctx_set_deadline_ms(mw, 5000), MHDCTX_OK);
    support_server_start(&s, mw, SUPPORT_MHD_EPOLL, NULL);
    assert_remaining_in(get_seen(s.port, "/a", NULL), 4000, 5000, "server budget 5000");
    sleep_ms(300);
    assert_remaining_in(get_seen(s.port, "/b", NULL), 4000, 5000, "a later request");
    ck_assert(support_capture_wait(ACCESS_MSG, 2, 5000));
    support_server_stop(&s);
    mhdctx_middleware_free(mw);
    support_capture_stop();
}
END_TEST

START_TEST(test_no_server_deadline)
{
    support_capture_start_info();
    mhdctx_middleware *mw = app_middleware();
    ck_assert_int_eq(mhdctx_set_deadline_ms(mw, 0), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_trust_incoming_deadline(mw, true), MHDCTX_OK);
    support_server s;
    support_server_start(&s, mw, SUPPORT_MHD_EPOLL, NULL);
    struct seen seen = get_seen(s.port, "/a", NULL);
    ck_assert_int_eq(seen.remaining_ms, INT64_MAX);
    ck_assert(!seen.passed);
    /* without a server budget, any caller's budget is tighter */
    assert_remaining_at_most(get_with_timeout(s.port, "/a", "100"), 100,
                             "caller's budget without a server budget");
    seen = get_with_timeout(s.port, "/a", "abc");
    ck_assert_int_eq(seen.remaining_ms, INT64_MAX);
    ck_assert(support_capture_wait(ACCESS_MSG, 3, 5000));
    support_server_stop(&s);
    mhdctx_middleware_free(mw);
    support_capture_stop();
}
END_TEST

/* As for mhdctx_set_deadline_in(): a budget too large to be reached is not a deadline
 * in the past. */
START_TEST(test_huge_server_budget)
{
    support_capture_start_info();
    mhdctx_middleware *mw = app_middleware();
    ck_assert_int_eq(mhdctx_set_deadline_ms(mw, UINT64_MAX), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_route_deadline_ms(mw, "/r", (uint64_t)INT64_MAX), MHDCTX_OK);
    support_server s;
    support_server_start(&s, mw, SUPPORT_MHD_EPOLL, NULL);
    struct seen all = get_seen(s.port, "/a", NULL);
    struct seen route = get_seen(s.port, "/r", NULL);
    ck_assert(support_capture_wait(ACCESS_MSG, 2, 5000));
    support_server_stop(&s);
    mhdctx_middleware_free(mw);
    support_capture_stop();
    ck_assert_msg(!all.passed && all.remaining_ms > 1000000,
                  "server budget UINT64_MAX: passed %d, remaining %lld", all.passed,
                  (long long)all.remaining_ms);
    ck_assert_msg(!route.passed && route.remaining_ms > 1000000,
                  "route budget INT64_MAX: passed %d, remaining %lld", route.passed,
                  (long long)route.remaining_ms);
}
END_TEST

START_TEST(test_route_budget)
{
    support_capture_start_info();
    mhdctx_middleware *mw = app_middleware();
    ck_assert_int_eq(mhdctx_set_deadline_ms(mw, 4000), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_route_deadline_ms(mw, "/fast", 50), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_route_deadline_ms(mw, "/none", 0), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_route_deadline_ms(mw, "/twice", 10), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_route_deadline_ms(mw, "/twice", 3000), MHDCTX_OK); /* replaced */
    /* a route's access-log level and its deadline share the route's settings */
    ck_assert_int_eq(mhdctx_access_log_route(mw, "/fast", MHDCTX_LOG_INFO), MHDCTX_OK);
    /* a route with only a log level keeps the default budget */
    ck_assert_int_eq(mhdctx_access_log_route(mw, "/logged", MHDCTX_LOG_WARN), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_route_deadline_ms(mw, NULL, 5), MHDCTX_EINVAL);
    support_server s;
    support_server_start(&s, mw, SUPPORT_MHD_EPOLL, NULL);
    assert_remaining_at_most(get_seen(s.port, "/fast", NULL), 50, "/fast");
    assert_remaining_at_most(get_seen(s.port, "/fast?x=1", NULL), 50, "/fast?x=1");
    /* the handler is given /fast: its route's budget applies */
    assert_remaining_at_most(get_seen(s.port, "/f%61st", NULL), 50, "/f%61st");
    assert_remaining_in(get_seen(s.port, "/fast/x", NULL), 3000, 4000, "/fast/x");
    assert_remaining_in(get_seen(s.port, "/fas", NULL), 3000, 4000, "/fas");
    assert_remaining_in(get_seen(s.port, "/FAST", NULL), 3000, 4000, "/FAST");
    assert_remaining_in(get_seen(s.port, "/other", NULL), 3000, 4000, "/other");
    assert_remaining_in(get_seen(s.port, "/twice", NULL), 2000, 3000, "/twice");
    assert_remaining_in(get_seen(s.port, "/logged", NULL), 3000, 4000, "/logged");
    struct seen none = get_seen(s.port, "/none", NULL);
    ck_assert_int_eq(none.remaining_ms, INT64_MAX);
    ck_assert(!none.passed);
    ck_assert(support_capture_wait(ACCESS_MSG, 10, 5000));
    support_server_stop(&s);
    mhdctx_middleware_free(mw);
    support_capture_stop();
}
END_TEST

/* A route's access-log level, like its budget, follows the decoded path: a client
 * cannot have a silenced route logged by encoding one of its letters. */
START_TEST(test_route_level_follows_the_decoded_path)
{
    support_capture_start_info();
    mhdctx_middleware *mw = app_middleware();
    ck_assert_int_eq(mhdctx_access_log_route(mw, "/quiet", MHDCTX_LOG_OFF), MHDCTX_OK);
    support_server s;
    support_server_start(&s, mw, SUPPORT_MHD_EPOLL, NULL);
    get_seen(s.port, "/quiet", NULL);
    get_seen(s.port, "/qu%69et", NULL);
    get_seen(s.port, "/%71uiet?x=1", NULL);
    get_seen(s.port, "/loud", NULL);
    /* MHD refuses a header line without a colon before the handler: no route, the line's
     * level comes from the status */
    static const char bad[] = "GET /quiet HTTP/1.1\r\nHost: t\r\nno colon\r\n\r\n";
    http_response *refused = NULL;
    ck_assert_int_eq(http_roundtrip(s.port, bad, sizeof bad - 1, &refused), HTTP_OK);
    ck_assert_int_eq(refused->status, 400);
    http_response_free(refused);
    support_server_stop(&s); /* every completion callback has run */
    mhdctx_middleware_free(mw);
    ck_assert_uint_eq(support_capture_count(ACCESS_MSG, NULL), 2);
    ck_assert(support_capture_contains("\"path\":\"/loud\""));
    ck_assert(support_capture_contains("\"level\":\"warn\",") &&
              support_capture_contains("\"status\":400"));
    support_capture_stop();
}
END_TEST

START_TEST(test_incoming_budget_trusted)
{
    support_capture_start_info();
    mhdctx_middleware *mw = app_middleware();
    ck_assert_int_eq(mhdctx_set_deadline_ms(mw, 4000), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_route_deadline_ms(mw, "/fast", 50), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_trust_incoming_deadline(mw, true), MHDCTX_OK);
    support_server s;
    support_server_start(&s, mw, SUPPORT_MHD_EPOLL, NULL);
    size_t requests = 0;

    assert_remaining_at_most(get_with_timeout(s.port, "/a", "100"), 100, "100");
    assert_remaining_in(get_with_timeout(s.port, "/a", "2500"), 1500, 2500, "2500");
    assert_remaining_in(get_with_timeout(s.port, "/a", "4000"), 3000, 4000, "= budget");
    assert_remaining_at_most(get_with_timeout(s.port, "/a", "1"), 1, "1");
    assert_remaining_in(get_with_timeout(s.port, "/a", NULL), 3000, 4000, "no header");
    requests += 5;

    /* ignored: the budget stays the server's */
    static const char *const ignored[] = {
        "0",
        "-5",
        "abc",
        "1e3",
        "100ms",
        "+100",
        "0x64",
        "1.5",
        "100,200",
        "4001",
        "99999",
        "1 00",
        "\"100\"",
        "00000000000000100",
        "18446744073709551617",
    };
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "ignored value [%s]", ignored[i]);
        assert_remaining_in(get_with_timeout(s.port, "/a", ignored[i]), 3000, 4000, what);
        requests++;
    }
    /* an empty value */
    assert_remaining_in(get_seen(s.port, "/a", TIMEOUT_HEADER ":\r\n"), 3000, 4000, "empty");
    /* the header twice, even with equal values, is ambiguous */
    assert_remaining_in(
        get_seen(s.port, "/a", TIMEOUT_HEADER ": 100\r\n" TIMEOUT_HEADER ": 100\r\n"), 3000,
        4000, "repeated");
    assert_remaining_in(
        get_seen(s.port, "/a", TIMEOUT_HEADER ": 100\r\nx-request-timeout-ms: 200\r\n"), 3000,
        4000, "repeated, other case");
    /* the header name is case-insensitive */
    assert_remaining_at_most(get_seen(s.port, "/a", "x-request-timeout-ms: 100\r\n"), 100,
                             "lowercase name");
    requests += 4;

    /* a route's budget is the limit there */
    assert_remaining_at_most(get_with_timeout(s.port, "/fast", "20"), 20, "/fast, 20");
    assert_remaining_at_most(get_with_timeout(s.port, "/fast", "100"), 50, "/fast, 100");
    assert_remaining_at_most(get_with_timeout(s.port, "/fast", "abc"), 50, "/fast, abc");
    requests += 3;

    ck_assert(support_capture_wait(ACCESS_MSG, requests, 5000));
    support_server_stop(&s);
    mhdctx_middleware_free(mw);
    support_capture_stop();
}
END_TEST

/* Optional whitespace around a field value is not part of it (RFC 9110 section 5.5),
 * so "X-Request-Timeout-Ms:  100 " carries the value "100". MHD drops the leading
 * blanks itself; the trailing ones are the middleware's to drop, as it does for the
 * request id. (A value that "starts with a space" cannot be told apart on the wire.) */
START_TEST(test_incoming_budget_whitespace)
{
    support_capture_start_info();
    mhdctx_middleware *mw = app_middleware();
    ck_assert_int_eq(mhdctx_set_deadline_ms(mw, 4000), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_trust_incoming_deadline(mw, true), MHDCTX_OK);
    support_server s;
    support_server_start(&s, mw, SUPPORT_MHD_EPOLL, NULL);
    static const char *const lines[] = {
        TIMEOUT_HEADER ":   100\r\n",  TIMEOUT_HEADER ":\t100\r\n",
        TIMEOUT_HEADER ": 100 \r\n",   TIMEOUT_HEADER ": 100\t\r\n",
        TIMEOUT_HEADER ":  100  \r\n",
    };
    struct seen seen[sizeof lines / sizeof lines[0]];
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        seen[i] = get_seen(s.port, "/a", lines[i]);
    ck_assert(support_capture_wait(ACCESS_MSG, sizeof lines / sizeof lines[0], 5000));
    support_server_stop(&s);
    mhdctx_middleware_free(mw);
    support_capture_stop();
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "header line %zu", i);
        assert_remaining_at_most(seen[i], 100, what);
    }
}
END_TEST

START_TEST(test_deadline_exceeded_answer)
{
    support_capture_start_info();
    atomic_store(&slow_saw_passed, 0);
    atomic_store(&slow_remaining, -1);
    mhdctx_middleware *mw = app_middleware();
    ck_assert_int_eq(mhdctx_route_deadline_ms(mw, "/slow", 100), MHDCTX_OK);
    support_server s;
    support_server_start(&s, mw, SUPPORT_MHD_EPOLL, NULL);

    const char *id = "deadline-test-1";
    http_response *r = support_http_get(s.port, "/slow", "X-Request-Id: deadline-test-1\r\n");
    ck_assert_int_eq(r->status, 504);
    ck_assert_uint_eq(http_header_count(r, "X-Request-Id"), 1);
    ck_assert_str_eq(http_header(r, "X-Request-Id"), id);
    ck_assert_ptr_nonnull(http_header(r, "Content-Type"));
    ck_assert_str_eq(http_header(r, "Content-Type"), "application/json");
    json_t *body = support_body_json(r);
    ck_assert_uint_eq(json_object_size(body), 2);
    ck_assert_str_eq(jstr(body, "error"), "deadline_exceeded");
    ck_assert_str_eq(jstr(body, "request_id"), id);
    json_decref(body);
    http_response_free(r);

    /* a generated id: the header and the body agree */
    r = support_http_get(s.port, "/slow", NULL);
    ck_assert_int_eq(r->status, 504);
    const char *generated = http_header(r, "X-Request-Id");
    ck_assert_ptr_nonnull(generated);
    ck_assert_uint_eq(strlen(generated), MHDCTX_UUID_LEN);
    body = support_body_json(r);
    ck_assert_str_eq(jstr(body, "request_id"), generated);
    char gen_id[MHDCTX_UUID_LEN + 1];
    snprintf(gen_id, sizeof gen_id, "%s", generated);
    json_decref(body);
    http_response_free(r);

    /* a request on the same server that finishes in time: not a timeout */
    struct seen fine = get_seen(s.port, "/ok", "X-Request-Id: deadline-test-2\r\n");
    ck_assert(!fine.passed);

    ck_assert(support_capture_wait(ACCESS_MSG, 3, 5000));
    support_server_stop(&s);
    ck_assert_int_eq(atomic_load(&slow_saw_passed), 1);
    ck_assert_int_eq(atomic_load(&slow_remaining), 0);

    json_t *all = support_capture_parsed();
    const char *timed_out[] = {id, gen_id};
    for (size_t i = 0; i < 2; i++) {
        json_t *line = support_find_line(all, ACCESS_MSG, "request_id", timed_out[i]);
        ck_assert_msg(line != NULL, "no access line for %s", timed_out[i]);
        ck_assert(json_is_integer(json_object_get(line, "status")));
        ck_assert_int_eq(json_integer_value(json_object_get(line, "status")), 504);
        ck_assert_str_eq(jstr(line, "level"), "error");
        ck_assert_str_eq(jstr(line, "outcome"), "timeout");
        ck_assert_str_eq(jstr(line, "path"), "/slow");
        ck_assert_str_eq(jstr(line, "method"), "GET");
        json_t *duration = json_object_get(line, "duration_ms");
        ck_assert(json_is_number(duration));
        ck_assert_double_ge(json_number_value(duration), 100.0);
    }
    json_t *ok = support_find_line(all, ACCESS_MSG, "request_id", "deadline-test-2");
    ck_assert_ptr_nonnull(ok);
    ck_assert_int_eq(json_integer_value(json_object_get(ok, "status")), 200);
    ck_assert_str_eq(jstr(ok, "level"), "info");
    ck_assert_str_eq(jstr(ok, "outcome"), "completed");
    json_decref(all);

    mhdctx_middleware_free(mw);
    support_capture_stop();
}
END_TEST

START_TEST(test_configuration_after_start)
{
    ck_assert_int_eq(mhdctx_set_deadline_ms(NULL, 5), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_route_deadline_ms(NULL, "/x", 5), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_set_trust_incoming_deadline(NULL, true), MHDCTX_EINVAL);
    /* outside a request, without a connection: nothing is queued */
    ck_assert_int_eq(mhdctx_respond_deadline_exceeded(NULL), MHD_NO);

    support_capture_start_info();
    mhdctx_middleware *mw = app_middleware();
    ck_assert_int_eq(mhdctx_set_deadline_ms(mw, 3000), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_route_deadline_ms(mw, "/r", 1000), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_trust_incoming_deadline(mw, false), MHDCTX_OK);
    support_server s;
    support_server_start(&s, mw, SUPPORT_MHD_EPOLL, NULL);
    assert_remaining_in(get_seen(s.port, "/a", NULL), 2000, 3000, "before");
    /* the middleware has served a request: configuration is frozen */
    ck_assert_int_eq(mhdctx_set_deadline_ms(mw, 10), MHDCTX_ESTATE);
    ck_assert_int_eq(mhdctx_route_deadline_ms(mw, "/a", 10), MHDCTX_ESTATE);
    ck_assert_int_eq(mhdctx_route_deadline_ms(mw, "/r", 10), MHDCTX_ESTATE);
    ck_assert_int_eq(mhdctx_set_trust_incoming_deadline(mw, true), MHDCTX_ESTATE);
    /* and nothing changed */
    assert_remaining_in(get_seen(s.port, "/a", NULL), 2000, 3000, "after, /a");
    assert_remaining_in(get_seen(s.port, "/r", NULL), 500, 1000, "after, /r");
    assert_remaining_in(get_with_timeout(s.port, "/a", "100"), 2000, 3000, "after, untrusted");
    ck_assert(support_capture_wait(ACCESS_MSG, 4, 5000));
    support_server_stop(&s);
    mhdctx_middleware_free(mw);
    support_capture_stop();
}
END_TEST

/* ==== suite ============================================================================ */

static Suite *deadline_suite(void)
{
    Suite *suite = suite_create("deadline");
    TCase *tc = support_tcase(suite, "context", TEST_TIMEOUT_S, NULL, NULL);
    tcase_add_test(tc, test_context_deadline);
    tcase_add_test(tc, test_context_deadline_huge_budget);
    tcase_add_test(tc, test_remaining_zero_only_when_passed);

    tc = support_tcase(suite, "middleware", TEST_TIMEOUT_S, NULL, NULL);
    tcase_add_test(tc, test_default_budget);
    tcase_add_test(tc, test_server_budget);
    tcase_add_test(tc, test_no_server_deadline);
    tcase_add_test(tc, test_huge_server_budget);
    tcase_add_test(tc, test_route_budget);
    tcase_add_test(tc, test_route_level_follows_the_decoded_path);
    tcase_add_test(tc, test_incoming_budget_trusted);
    tcase_add_test(tc, test_incoming_budget_whitespace);
    tcase_add_test(tc, test_deadline_exceeded_answer);
    tcase_add_test(tc, test_configuration_after_start);
    return suite;
}

int main(void)
{
    SRunner *sr = srunner_create(deadline_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failures = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failures ? 1 : 0;
}
