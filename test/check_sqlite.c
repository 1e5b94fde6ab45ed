/*
 * check_sqlite.c - the SQLite adapter on in-memory databases: statements prepared with
 * the current request's sqlcommenter tag (and left alone outside a request or when they
 * already hold a comment), the statement log written through SQLite's trace hook, and
 * the request's deadline enforced through the progress handler - per current context,
 * so a connection used by another thread for another request is never interrupted.
 *
 * Only the public headers are used. Code that must run inside a context runs through
 * mhdctx_run() or a mhdctx_task and only records what it sees; the assertions run
 * afterwards on the test thread, outside any context, so a failing assertion never
 * leaves a stale current context behind (CK_FORK=no).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strdup */
#endif

#include "mhdctx.h"
#include "mhdctx_sqlite.h"
#include "support.h"

#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TEST_TIMEOUT_S 60
#define ROUTE          "/users/{id}"
#define ROUTE_ENCODED  "%2Fusers%2F%7Bid%7D"
#define USER_ID        "42"
#define STMT_MSG       "sql statement completed"
/* Far more rows than a deadline of 100 ms lets it count: only an interrupt ends it. */
#define LONG_QUERY                                                                             \
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100000000) "       \
    "SELECT count(*) FROM c"
#define SHORT_ROWS 100000
#define SHORT_QUERY                                                                            \
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 100000) "          \
    "SELECT count(*) FROM c"

/* ==== helpers ========================================================================= */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static sqlite3 *open_db(void)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open(":memory:", &db);
    ck_assert_msg(rc == SQLITE_OK, "sqlite3_open: %s", db ? sqlite3_errmsg(db) : "?");
    return db;
}

static void close_db(sqlite3 *db)
{
    ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
}

/* A free-standing context named like a request of route ROUTE by user USER_ID. */
static mhdctx_context *request_context(void)
{
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_route(ctx, ROUTE), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_user_id(ctx, USER_ID), MHDCTX_OK);
    return ctx;
}

/* The exact tag mhdctx_sqlite_prepare() must append for @p ctx (owned: free()). */
static char *expected_tagged(mhdctx_context *ctx, const char *sql)
{
    return str_fmt("%s /*framework='mhdctx%%2F" MHDCTX_VERSION_STRING "',request_id='%s',"
                   "route='%s',traceparent='00-%s-%s-%02x',user_id='" USER_ID "'*/",
                   sql, mhdctx_request_id(ctx), ROUTE_ENCODED, mhdctx_trace_id(ctx),
                   mhdctx_span_id(ctx), (unsigned)mhdctx_trace_flags(ctx));
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

/* ==== log capture ====================================================================== */

/* Checked teardown: runs after a failed test too. */
static void capture_end(void)
{
    mhdctx_log_set_level(MHDCTX_LOG_INFO);
    support_capture_stop();
}

/* The captured lines whose message is @p message, parsed (owned: json_decref() each). */
static size_t lines_with_message(const char *message, json_t **out, size_t max)
{
    size_t found = 0;
    size_t total = support_capture_n();
    for (size_t i = 0; i < total; i++) {
        json_t *v = support_capture_json(i, JSON_REJECT_DUPLICATES);
        const char *m = jstr(v, "message");
        bool match = m && strcmp(m, message) == 0;
        if (match && found < max) {
            out[found] = v;
        } else {
            json_decref(v);
        }
        found += match;
    }
    return found;
}

static void decref_all(json_t **lines, size_t n, size_t max)
{
    for (size_t i = 0; i < n && i < max; i++)
        json_decref(lines[i]);
}

/* ==== running statements ================================================================ */

/* Prepares @p sql with mhdctx_sqlite_prepare(), steps it to the end and records what it
 * saw. Runs inside whatever context is current. */
struct run {
    sqlite3 *db;
    const char *sql;
    int prepare_rc;
    int step_rc;     /* last sqlite3_step() result */
    long long value; /* column 0 of the last row, when there was one */
    int rows;
    char *text;           /* sqlite3_sql() of the statement (owned: free()) */
    mhdctx_context *seen; /* mhdctx_current() while running (not a reference) */
    uint64_t elapsed_ms;
};

static void run_statement(void *arg)
{
    struct run *r = arg;
    sqlite3_stmt *stmt = NULL;
    r->seen = mhdctx_current();
    uint64_t start = now_ms();
    r->prepare_rc = mhdctx_sqlite_prepare(r->db, r->sql, &stmt);
    r->step_rc = -1;
    r->rows = 0;
    if (r->prepare_rc == SQLITE_OK && stmt) {
        const char *text = sqlite3_sql(stmt);
        r->text = text ? strdup(text) : NULL;
        while ((r->step_rc = sqlite3_step(stmt)) == SQLITE_ROW) {
            r->rows++;
            r->value = sqlite3_column_int64(stmt, 0);
        }
    }
    sqlite3_finalize(stmt);
    r->elapsed_ms = now_ms() - start;
}

static struct run run_in(mhdctx_context *ctx, sqlite3 *db, const char *sql)
{
    struct run r = {.db = db, .sql = sql};
    mhdctx_run(ctx, run_statement, &r);
    return r;
}

/* ==== tagging ============================================================================ */

START_TEST(test_prepare_tags_statement_in_context)
{
    sqlite3 *db = open_db();
    mhdctx_context *ctx = request_context();
    char *expected = expected_tagged(ctx, "SELECT 1");

    struct run r = run_in(ctx, db, "SELECT 1");
    ck_assert_ptr_eq(r.seen, ctx);
    ck_assert_ptr_null(mhdctx_current()); /* mhdctx_run() restored "no context" */
    ck_assert_int_eq(r.prepare_rc, SQLITE_OK);
    ck_assert_ptr_nonnull(r.text);
    ck_assert_str_eq(r.text, expected);
    ck_assert_int_eq(r.step_rc, SQLITE_DONE); /* the tagged statement runs */
    ck_assert_int_eq(r.rows, 1);
    ck_assert_int_eq(r.value, 1);

    /* The pieces one by one, as the brief of the adapter states them. */
    char want[256];
    const char *comment = strstr(r.text, " /*");
    ck_assert_ptr_nonnull(comment);
    ck_assert(ends_with(r.text, "*/"));
    snprintf(want, sizeof want, "request_id='%s'", mhdctx_request_id(ctx));
    ck_assert_ptr_nonnull(strstr(comment, want));
    ck_assert_ptr_nonnull(strstr(comment, "route='" ROUTE_ENCODED "'"));
    snprintf(want, sizeof want, "traceparent='00-%s-%s-03'", mhdctx_trace_id(ctx),
             mhdctx_span_id(ctx));
    ck_assert_ptr_nonnull(strstr(comment, want));
    ck_assert_ptr_nonnull(strstr(comment, "user_id='" USER_ID "'"));

    free(r.text);
    free(expected);
    mhdctx_context_unref(ctx);
    close_db(db);
}
END_TEST

/* The text of a statement prepared inside a task: the task's context tags it. */
static void run_task_statement(void *arg)
{
    run_statement(arg);
}

START_TEST(test_prepare_tags_statement_in_task)
{
    sqlite3 *db = open_db();
    mhdctx_context *ctx = request_context();
    char *expected = expected_tagged(ctx, "SELECT count(*) FROM sqlite_master");

    struct run r = {.db = db, .sql = "SELECT count(*) FROM sqlite_master"};
    mhdctx_task *task = mhdctx_task_bind(ctx, run_task_statement, &r);
    ck_assert_ptr_nonnull(task);
    mhdctx_context_unref(ctx); /* the task keeps its own reference until it has run */
    mhdctx_task_run(task);
    ck_assert_ptr_null(mhdctx_current());
    ck_assert_int_eq(r.prepare_rc, SQLITE_OK);
    ck_assert_ptr_nonnull(r.text);
    ck_assert_str_eq(r.text, expected);
    ck_assert_int_eq(r.step_rc, SQLITE_DONE);
    ck_assert_int_eq(r.value, 0);

    free(r.text);
    free(expected);
    close_db(db);
}
END_TEST

/* The comment goes before a final ';' (SQLite keeps the ';' in the statement text). */
START_TEST(test_prepare_tag_before_semicolon)
{
    sqlite3 *db = open_db();
    mhdctx_context *ctx = request_context();
    char *tagged = expected_tagged(ctx, "SELECT 4");
    char *expected = str_fmt("%s;", tagged);

    struct run r = run_in(ctx, db, "SELECT 4;");
    ck_assert_int_eq(r.prepare_rc, SQLITE_OK);
    ck_assert_ptr_nonnull(r.text);
    ck_assert_str_eq(r.text, expected);
    ck_assert_int_eq(r.step_rc, SQLITE_DONE);
    ck_assert_int_eq(r.value, 4);

    free(r.text);
    free(expected);
    free(tagged);
    mhdctx_context_unref(ctx);
    close_db(db);
}
END_TEST

/* A hostile route or user id can neither end the comment nor add a statement: the
 * tagged text is still one statement, and the table it names survives. */
START_TEST(test_prepare_hostile_values_stay_in_comment)
{
    sqlite3 *db = open_db();
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_route(ctx, "/x'*/; DROP TABLE t; --"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "u'*/; DROP TABLE t; /*"), MHDCTX_OK);

    struct run create = {.db = db, .sql = "CREATE TABLE t(x)"};
    run_statement(&create);
    ck_assert_int_eq(create.step_rc, SQLITE_DONE);
    free(create.text);

    struct run r = run_in(ctx, db, "SELECT count(*) FROM t");
    ck_assert_int_eq(r.prepare_rc, SQLITE_OK);
    ck_assert_ptr_nonnull(r.text);
    ck_assert_int_eq(strncmp(r.text, "SELECT count(*) FROM t /*", 25), 0);
    ck_assert(ends_with(r.text, "*/"));
    /* exactly one comment end: the tag's own */
    ck_assert_ptr_eq(strstr(r.text, "*/"), r.text + strlen(r.text) - 2);
    ck_assert_int_eq(r.step_rc, SQLITE_DONE);
    ck_assert_int_eq(r.value, 0);

    struct run check = {.db = db, .sql = "SELECT count(*) FROM sqlite_master WHERE name = 't'"};
    run_statement(&check);
    ck_assert_int_eq(check.value, 1);

    free(r.text);
    free(check.text);
    mhdctx_context_unref(ctx);
    close_db(db);
}
END_TEST

START_TEST(test_prepare_outside_context_unchanged)
{
    sqlite3 *db = open_db();
    ck_assert_ptr_null(mhdctx_current());
    struct run r = {.db = db, .sql = "SELECT 7"};
    run_statement(&r);
    ck_assert_ptr_null(r.seen);
    ck_assert_int_eq(r.prepare_rc, SQLITE_OK);
    ck_assert_str_eq(r.text, "SELECT 7");
    ck_assert_int_eq(r.step_rc, SQLITE_DONE);
    ck_assert_int_eq(r.value, 7);
    free(r.text);

    /* mhdctx_run() with a NULL context is "outside any context" as well. */
    struct run r2 = run_in(NULL, db, "SELECT 8");
    ck_assert_int_eq(r2.prepare_rc, SQLITE_OK);
    ck_assert_str_eq(r2.text, "SELECT 8");
    ck_assert_int_eq(r2.value, 8);
    free(r2.text);
    close_db(db);
}
END_TEST

START_TEST(test_prepare_with_comment_unchanged)
{
    static const char *const commented[] = {
        "SELECT 1 /* mine */",
        "SELECT /*+ hint */ 2",
        "SELECT 3 -- trailing note",
    };
    sqlite3 *db = open_db();
    mhdctx_context *ctx = request_context();
    for (size_t i = 0; i < sizeof commented / sizeof *commented; i++) {
        struct run r = run_in(ctx, db, commented[i]);
        ck_assert_msg(r.prepare_rc == SQLITE_OK, "%s: rc %d", commented[i], r.prepare_rc);
        ck_assert_ptr_nonnull(r.text);
        ck_assert_str_eq(r.text, commented[i]);
        ck_assert_int_eq(r.step_rc, SQLITE_DONE);
        ck_assert_int_eq(r.value, (long long)i + 1);
        free(r.text);
    }
    mhdctx_context_unref(ctx);
    close_db(db);
}
END_TEST

START_TEST(test_prepare_bad_arguments)
{
    sqlite3 *db = open_db();
    /* *stmt is NULL after every failure, as after sqlite3_prepare_v2()'s: a caller may
     * sqlite3_finalize() it whatever the result. */
    sqlite3_stmt *stmt = (sqlite3_stmt *)&stmt; /* not a statement */
    ck_assert_int_eq(mhdctx_sqlite_prepare(NULL, "SELECT 1", &stmt), SQLITE_MISUSE);
    ck_assert_ptr_null(stmt);
    stmt = (sqlite3_stmt *)&stmt;
    ck_assert_int_eq(mhdctx_sqlite_prepare(db, NULL, &stmt), SQLITE_MISUSE);
    ck_assert_ptr_null(stmt);
    ck_assert_int_eq(mhdctx_sqlite_prepare(db, "SELECT 1", NULL), SQLITE_MISUSE);
    ck_assert_int_eq(mhdctx_sqlite_attach(NULL, MHDCTX_SQLITE_LOG_STATEMENTS), SQLITE_MISUSE);
    ck_assert_int_eq(mhdctx_sqlite_attach(NULL, 0), SQLITE_MISUSE);

    /* Inside a context as well (the checks come before the tag). */
    mhdctx_context *ctx = request_context();
    struct run r = run_in(ctx, NULL, "SELECT 1");
    ck_assert_int_eq(r.prepare_rc, SQLITE_MISUSE);
    ck_assert_ptr_null(r.text);

    /* A statement SQLite refuses: its error comes back, no statement. */
    struct run bad = run_in(ctx, db, "SELEKT 1");
    ck_assert_int_eq(bad.prepare_rc, SQLITE_ERROR);
    ck_assert_ptr_null(bad.text);

    mhdctx_context_unref(ctx);
    close_db(db);
}
END_TEST

/* Every allocation the library makes for a tagged prepare fails in turn: each failure
 * answers SQLITE_NOMEM with no statement and nothing left allocated, and the connection
 * prepares the next statement as if nothing had happened. */
START_TEST(test_prepare_out_of_memory)
{
    sqlite3 *db = open_db();
    mhdctx_context *ctx = request_context();
    free(run_in(ctx, db, "SELECT 1").text); /* ids drawn, pools filled: the steady state */
    long failed = 0;
    for (long countdown = 0;; countdown++) {
        long live = atomic_load(&mhdctx__alloc_live);
        atomic_store(&mhdctx__alloc_countdown, countdown);
        struct run r = run_in(ctx, db, "SELECT 1");
        bool fired = atomic_exchange(&mhdctx__alloc_countdown, -1) < 0;
        if (!fired) {
            ck_assert_int_eq(r.prepare_rc, SQLITE_OK); /* no library allocation left */
            ck_assert_int_eq(r.rows, 1);
            free(r.text);
            break;
        }
        ck_assert_int_eq(r.prepare_rc, SQLITE_NOMEM);
        ck_assert_ptr_null(r.text);
        ck_assert_int_eq(atomic_load(&mhdctx__alloc_live), live);
        failed++;
        ck_assert_int_lt(failed, 100);
        /* The connection is none the worse for it. */
        struct run next = run_in(ctx, db, "SELECT 2");
        ck_assert_int_eq(next.prepare_rc, SQLITE_OK);
        ck_assert_int_eq(next.value, 2);
        free(next.text);
    }
    ck_assert_int_ge(failed, 1); /* the tagged text is the library's allocation */
    mhdctx_context_unref(ctx);
    close_db(db);
}
END_TEST

/* ==== statement log ======================================================================= */

/* A few statements run one after the other inside one context. */
static const char *const logged_sql[] = {
    "CREATE TABLE t(x INTEGER)",
    "INSERT INTO t VALUES (1), (2), (3)",
    "SELECT x FROM t ORDER BY x",
};
#define N_LOGGED (sizeof logged_sql / sizeof *logged_sql)

struct script {
    sqlite3 *db;
    struct run runs[N_LOGGED];
};

static void run_script(void *arg)
{
    struct script *s = arg;
    for (size_t i = 0; i < N_LOGGED; i++) {
        s->runs[i] = (struct run){.db = s->db, .sql = logged_sql[i]};
        run_statement(&s->runs[i]);
    }
}

START_TEST(test_log_statements_one_line_each)
{
    support_capture_start_info();
    sqlite3 *db = open_db();
    ck_assert_int_eq(mhdctx_sqlite_attach(db, MHDCTX_SQLITE_LOG_STATEMENTS), SQLITE_OK);
    mhdctx_context *ctx = request_context();

    struct script s = {.db = db};
    mhdctx_run(ctx, run_script, &s);
    for (size_t i = 0; i < N_LOGGED; i++) {
        ck_assert_int_eq(s.runs[i].prepare_rc, SQLITE_OK);
        ck_assert_int_eq(s.runs[i].step_rc, SQLITE_DONE);
    }
    ck_assert_int_eq(s.runs[2].rows, 3); /* three rows, still one statement, one line */

    json_t *lines[8];
    size_t n = lines_with_message(STMT_MSG, lines, 8);
    ck_assert_uint_eq(n, N_LOGGED);
    for (size_t i = 0; i < N_LOGGED; i++) {
        json_t *line = lines[i];
        char *want = expected_tagged(ctx, logged_sql[i]);
        ck_assert_str_eq(s.runs[i].text, want);
        ck_assert_ptr_nonnull(jstr(line, "sql"));
        ck_assert_str_eq(jstr(line, "sql"), want);
        ck_assert_str_eq(jstr(line, "level"), "info");
        json_t *duration = json_object_get(line, "duration_ms");
        ck_assert_msg(json_is_number(duration), "duration_ms is not a number");
        ck_assert(json_number_value(duration) >= 0.0);
        ck_assert(json_number_value(duration) < 60000.0);
        ck_assert_ptr_nonnull(jstr(line, "request_id"));
        ck_assert_str_eq(jstr(line, "request_id"), mhdctx_request_id(ctx));
        ck_assert_ptr_nonnull(jstr(line, "trace_id"));
        ck_assert_str_eq(jstr(line, "trace_id"), mhdctx_trace_id(ctx));
        ck_assert_ptr_nonnull(jstr(line, "user_id"));
        ck_assert_str_eq(jstr(line, "user_id"), USER_ID);
        free(want);
        free(s.runs[i].text);
    }
    decref_all(lines, n, 8);

    mhdctx_context_unref(ctx);
    close_db(db);
    capture_end();
}
END_TEST

/* The fields follow the context current when the statement runs, not the one of the
 * first statement; outside any context a line carries no request fields at all. */
START_TEST(test_log_statements_follow_current_context)
{
    support_capture_start_info();
    sqlite3 *db = open_db();
    ck_assert_int_eq(mhdctx_sqlite_attach(db, MHDCTX_SQLITE_LOG_STATEMENTS), SQLITE_OK);
    mhdctx_context *a = request_context();
    mhdctx_context *b = new_context();
    ck_assert_int_eq(mhdctx_set_user_id(b, "other-user"), MHDCTX_OK);

    struct run ra = run_in(a, db, "SELECT 1");
    struct run rb = run_in(b, db, "SELECT 2");
    struct run rn = {.db = db, .sql = "SELECT 3"};
    run_statement(&rn);
    ck_assert_int_eq(ra.step_rc, SQLITE_DONE);
    ck_assert_int_eq(rb.step_rc, SQLITE_DONE);
    ck_assert_int_eq(rn.step_rc, SQLITE_DONE);

    json_t *lines[8];
    size_t n = lines_with_message(STMT_MSG, lines, 8);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(jstr(lines[0], "request_id"), mhdctx_request_id(a));
    ck_assert_str_eq(jstr(lines[0], "user_id"), USER_ID);
    ck_assert_str_eq(jstr(lines[1], "request_id"), mhdctx_request_id(b));
    ck_assert_str_eq(jstr(lines[1], "trace_id"), mhdctx_trace_id(b));
    ck_assert_str_eq(jstr(lines[1], "user_id"), "other-user");
    ck_assert_str_eq(jstr(lines[2], "sql"), "SELECT 3");
    ck_assert_ptr_null(json_object_get(lines[2], "request_id"));
    ck_assert_ptr_null(json_object_get(lines[2], "trace_id"));
    ck_assert(json_is_number(json_object_get(lines[2], "duration_ms")));
    decref_all(lines, n, 8);

    free(ra.text);
    free(rb.text);
    free(rn.text);
    mhdctx_context_unref(a);
    mhdctx_context_unref(b);
    close_db(db);
    capture_end();
}
END_TEST

START_TEST(test_log_statements_off)
{
    support_capture_start_info();
    mhdctx_context *ctx = request_context();

    /* Flags 0: nothing is installed. */
    sqlite3 *db = open_db();
    ck_assert_int_eq(mhdctx_sqlite_attach(db, 0), SQLITE_OK);
    struct script s = {.db = db};
    mhdctx_run(ctx, run_script, &s);
    for (size_t i = 0; i < N_LOGGED; i++) {
        ck_assert_int_eq(s.runs[i].step_rc, SQLITE_DONE);
        free(s.runs[i].text);
    }
    close_db(db);

    /* Attached with the log, then again with 0: the second call replaces the hook. */
    db = open_db();
    ck_assert_int_eq(mhdctx_sqlite_attach(db, MHDCTX_SQLITE_LOG_STATEMENTS), SQLITE_OK);
    ck_assert_int_eq(mhdctx_sqlite_attach(db, 0), SQLITE_OK);
    struct run r = run_in(ctx, db, "SELECT 1");
    ck_assert_int_eq(r.step_rc, SQLITE_DONE);
    free(r.text);

    /* The deadline flag alone does not log either. */
    ck_assert_int_eq(mhdctx_sqlite_attach(db, MHDCTX_SQLITE_DEADLINE), SQLITE_OK);
    r = run_in(ctx, db, "SELECT 2");
    ck_assert_int_eq(r.step_rc, SQLITE_DONE);
    free(r.text);
    close_db(db);

    json_t *lines[4];
    size_t n = lines_with_message(STMT_MSG, lines, 4);
    decref_all(lines, n, 4);
    ck_assert_uint_eq(n, 0);

    mhdctx_context_unref(ctx);
    capture_end();
}
END_TEST

/* Below the logger's threshold the statement log writes nothing. */
START_TEST(test_log_statements_below_threshold)
{
    support_capture_start_info();
    mhdctx_log_set_level(MHDCTX_LOG_WARN);
    sqlite3 *db = open_db();
    ck_assert_int_eq(mhdctx_sqlite_attach(db, MHDCTX_SQLITE_LOG_STATEMENTS), SQLITE_OK);
    mhdctx_context *ctx = request_context();
    struct run r = run_in(ctx, db, "SELECT 1");
    ck_assert_int_eq(r.step_rc, SQLITE_DONE);
    free(r.text);
    json_t *lines[4];
    size_t n = lines_with_message(STMT_MSG, lines, 4);
    decref_all(lines, n, 4);
    ck_assert_uint_eq(n, 0);
    mhdctx_context_unref(ctx);
    close_db(db);
    capture_end();
}
END_TEST

/* ==== deadline ============================================================================ */

START_TEST(test_deadline_interrupts_long_query)
{
    sqlite3 *db = open_db();
    ck_assert_int_eq(mhdctx_sqlite_attach(db, MHDCTX_SQLITE_DEADLINE), SQLITE_OK);
    mhdctx_context *ctx = request_context();
    mhdctx_set_deadline_in(ctx, 100);

    struct run r = run_in(ctx, db, LONG_QUERY);
    ck_assert_int_eq(r.prepare_rc, SQLITE_OK);
    ck_assert_msg(r.step_rc == SQLITE_INTERRUPT, "step gave %d (%s) after %llu ms", r.step_rc,
                  sqlite3_errstr(r.step_rc), (unsigned long long)r.elapsed_ms);
    ck_assert_int_eq(r.rows, 0);
    ck_assert_msg(r.elapsed_ms < 2000, "interrupted only after %llu ms",
                  (unsigned long long)r.elapsed_ms);
    ck_assert(mhdctx_deadline_passed(ctx));

    /* The connection stays usable: outside the expired context a statement runs. */
    struct run after = {.db = db, .sql = "SELECT 5"};
    run_statement(&after);
    ck_assert_int_eq(after.step_rc, SQLITE_DONE);
    ck_assert_int_eq(after.value, 5);

    /* A context already past its deadline stops even a short statement at once. */
    struct run again = run_in(ctx, db, SHORT_QUERY);
    ck_assert_int_eq(again.step_rc, SQLITE_INTERRUPT);

    free(r.text);
    free(after.text);
    free(again.text);
    mhdctx_context_unref(ctx);
    close_db(db);
}
END_TEST

/* Deadline and statement log together: the flags combine. */
START_TEST(test_deadline_and_log_combined)
{
    support_capture_start_info();
    sqlite3 *db = open_db();
    ck_assert_int_eq(
        mhdctx_sqlite_attach(db, MHDCTX_SQLITE_LOG_STATEMENTS | MHDCTX_SQLITE_DEADLINE),
        SQLITE_OK);
    mhdctx_context *ctx = request_context();
    mhdctx_set_deadline_in(ctx, 100);
    struct run r = run_in(ctx, db, LONG_QUERY);
    ck_assert_int_eq(r.step_rc, SQLITE_INTERRUPT);
    ck_assert(r.elapsed_ms < 2000);
    struct run ok = run_in(NULL, db, "SELECT 1");
    ck_assert_int_eq(ok.step_rc, SQLITE_DONE);

    /* One line each: the interrupted statement (with its request's fields) too. */
    json_t *lines[8];
    size_t n = lines_with_message(STMT_MSG, lines, 8);
    ck_assert_uint_eq(n, 2);
    char *want = expected_tagged(ctx, LONG_QUERY);
    ck_assert_str_eq(jstr(lines[0], "sql"), want);
    ck_assert_str_eq(jstr(lines[0], "request_id"), mhdctx_request_id(ctx));
    ck_assert(json_is_number(json_object_get(lines[0], "duration_ms")));
    ck_assert_str_eq(jstr(lines[1], "sql"), "SELECT 1");
    ck_assert_ptr_null(json_object_get(lines[1], "request_id"));
    free(want);
    decref_all(lines, n, 8);

    free(r.text);
    free(ok.text);
    mhdctx_context_unref(ctx);
    close_db(db);
    capture_end();
}
END_TEST

START_TEST(test_deadline_not_passed_completes)
{
    sqlite3 *db = open_db();
    ck_assert_int_eq(mhdctx_sqlite_attach(db, MHDCTX_SQLITE_DEADLINE), SQLITE_OK);

    /* No context at all. */
    struct run none = {.db = db, .sql = SHORT_QUERY};
    run_statement(&none);
    ck_assert_int_eq(none.step_rc, SQLITE_DONE);
    ck_assert_int_eq(none.value, SHORT_ROWS);

    /* A context without a deadline. */
    mhdctx_context *open_ended = request_context();
    ck_assert_int_eq(mhdctx_deadline_remaining_ms(open_ended), INT64_MAX);
    struct run r1 = run_in(open_ended, db, SHORT_QUERY);
    ck_assert_int_eq(r1.step_rc, SQLITE_DONE);
    ck_assert_int_eq(r1.value, SHORT_ROWS);

    /* A context whose deadline is far away. */
    mhdctx_context *early = request_context();
    mhdctx_set_deadline_in(early, 60000);
    struct run r2 = run_in(early, db, SHORT_QUERY);
    ck_assert_msg(r2.step_rc == SQLITE_DONE, "step gave %d", r2.step_rc);
    ck_assert_int_eq(r2.value, SHORT_ROWS);
    ck_assert(!mhdctx_deadline_passed(early));

    /* A deadline that passed and was then lifted (0: none) no longer interrupts. */
    mhdctx_context *lifted = request_context();
    mhdctx_set_deadline_in(lifted, 1);
    sleep_ms(5);
    ck_assert(mhdctx_deadline_passed(lifted));
    mhdctx_set_deadline_in(lifted, 0);
    struct run r3 = run_in(lifted, db, SHORT_QUERY);
    ck_assert_int_eq(r3.step_rc, SQLITE_DONE);
    ck_assert_int_eq(r3.value, SHORT_ROWS);

    free(none.text);
    free(r1.text);
    free(r2.text);
    free(r3.text);
    mhdctx_context_unref(open_ended);
    mhdctx_context_unref(early);
    mhdctx_context_unref(lifted);
    close_db(db);
}
END_TEST

/* Without the flag the deadline is not enforced by the adapter. */
START_TEST(test_deadline_flag_absent_not_enforced)
{
    sqlite3 *db = open_db();
    ck_assert_int_eq(mhdctx_sqlite_attach(db, MHDCTX_SQLITE_LOG_STATEMENTS), SQLITE_OK);
    ck_assert_int_eq(mhdctx_sqlite_attach(db, 0), SQLITE_OK);
    mhdctx_context *ctx = request_context();
    mhdctx_set_deadline_in(ctx, 1);
    sleep_ms(5);
    ck_assert(mhdctx_deadline_passed(ctx));
    struct run r = run_in(ctx, db, SHORT_QUERY);
    ck_assert_int_eq(r.step_rc, SQLITE_DONE);
    ck_assert_int_eq(r.value, SHORT_ROWS);
    free(r.text);
    mhdctx_context_unref(ctx);
    close_db(db);
}
END_TEST

/* Two connections, two threads, two contexts: the expired deadline of the main
 * thread's request interrupts only its own statement. */
struct other_thread {
    sqlite3 *db;
    mhdctx_context *ctx; /* NULL: the thread runs with no context */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool started;
    struct run r;
};

static void other_statement(void *arg)
{
    struct other_thread *o = arg;
    pthread_mutex_lock(&o->lock);
    o->started = true;
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->lock);
    o->r = (struct run){.db = o->db, .sql = SHORT_QUERY};
    run_statement(&o->r);
}

static void *other_main(void *arg)
{
    struct other_thread *o = arg;
    if (o->ctx) {
        mhdctx_task *task = mhdctx_task_bind(o->ctx, other_statement, o);
        if (task)
            mhdctx_task_run(task);
        else
            o->r.step_rc = -2;
    } else {
        other_statement(o);
    }
    return NULL;
}

static void check_other_unaffected(bool other_has_context)
{
    sqlite3 *db_main = open_db();
    sqlite3 *db_other = open_db();
    ck_assert_int_eq(mhdctx_sqlite_attach(db_main, MHDCTX_SQLITE_DEADLINE), SQLITE_OK);
    ck_assert_int_eq(mhdctx_sqlite_attach(db_other, MHDCTX_SQLITE_DEADLINE), SQLITE_OK);
    mhdctx_context *expiring = request_context();
    mhdctx_set_deadline_in(expiring, 100);
    mhdctx_context *other = NULL;
    if (other_has_context) {
        other = new_context();
        mhdctx_set_deadline_in(other, 60000);
    }

    struct other_thread o = {.db = db_other, .ctx = other};
    pthread_mutex_init(&o.lock, NULL);
    pthread_cond_init(&o.cond, NULL);
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, other_main, &o), 0);
    pthread_mutex_lock(&o.lock);
    while (!o.started)
        pthread_cond_wait(&o.cond, &o.lock);
    pthread_mutex_unlock(&o.lock);

    /* Runs while the other thread counts (certainly so under valgrind). */
    struct run mine = run_in(expiring, db_main, LONG_QUERY);
    /* Once the main request is past its deadline, the other connection still works
     * for its own request. */
    ck_assert_int_eq(pthread_join(thread, NULL), 0);
    ck_assert(mhdctx_deadline_passed(expiring));
    ck_assert_int_eq(mine.step_rc, SQLITE_INTERRUPT);
    ck_assert(mine.elapsed_ms < 2000);
    ck_assert_ptr_eq(o.r.seen, other);
    ck_assert_msg(o.r.step_rc == SQLITE_DONE, "other thread: step gave %d", o.r.step_rc);
    ck_assert_int_eq(o.r.value, SHORT_ROWS);

    /* And afterwards, with the main context long expired, on the other thread again. */
    free(o.r.text);
    o.started = false;
    ck_assert_int_eq(pthread_create(&thread, NULL, other_main, &o), 0);
    ck_assert_int_eq(pthread_join(thread, NULL), 0);
    ck_assert_int_eq(o.r.step_rc, SQLITE_DONE);
    ck_assert_int_eq(o.r.value, SHORT_ROWS);
    free(o.r.text);

    pthread_cond_destroy(&o.cond);
    pthread_mutex_destroy(&o.lock);
    free(mine.text);
    mhdctx_context_unref(expiring);
    mhdctx_context_unref(other);
    close_db(db_main);
    close_db(db_other);
}

START_TEST(test_deadline_per_context_other_thread)
{
    check_other_unaffected(true);
}
END_TEST

START_TEST(test_deadline_other_thread_without_context)
{
    check_other_unaffected(false);
}
END_TEST

/* ==== deadline: waits for a lock ========================================================= */

/* Two connections to one database file: @holder takes an exclusive lock, @waiter (with
 * a busy timeout of @timeout_ms, set before the adapter is attached) has to wait. */
struct locked_db {
    char path[64];
    sqlite3 *holder, *waiter;
};

static void lock_db(struct locked_db *l, int timeout_ms)
{
    snprintf(l->path, sizeof l->path, "/tmp/mhdctx-sqlite-XXXXXX");
    int fd = mkstemp(l->path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(sqlite3_open(l->path, &l->holder), SQLITE_OK);
    ck_assert_int_eq(sqlite3_open(l->path, &l->waiter), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(l->holder, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_busy_timeout(l->waiter, timeout_ms), SQLITE_OK);
    ck_assert_int_eq(mhdctx_sqlite_attach(l->waiter, MHDCTX_SQLITE_DEADLINE), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(l->holder, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
}

static void unlock_db(struct locked_db *l)
{
    sqlite3_exec(l->holder, "COMMIT", NULL, NULL, NULL);
    close_db(l->waiter);
    close_db(l->holder);
    unlink(l->path);
}

/* The result of a statement that may stop at prepare (reading the schema) or at step. */
static int result_of(const struct run *r)
{
    return r->prepare_rc != SQLITE_OK ? r->prepare_rc : r->step_rc;
}

/* An INSERT by the waiter, inside @ctx (NULL: outside any context), gives up with
 * SQLITE_BUSY after @min_ms and before @max_ms. */
static void insert_gives_up(struct locked_db *l, mhdctx_context *ctx, uint64_t min_ms,
                            uint64_t max_ms)
{
    struct run r = {.db = l->waiter, .sql = "INSERT INTO t VALUES (1)"};
    if (ctx)
        mhdctx_run(ctx, run_statement, &r);
    else
        run_statement(&r);
    ck_assert_int_eq(result_of(&r), SQLITE_BUSY);
    ck_assert_msg(r.elapsed_ms >= min_ms && r.elapsed_ms < max_ms, "busy after %llu ms",
                  (unsigned long long)r.elapsed_ms);
    free(r.text);
}

/* A busy timeout of 10 s inside a request with 150 ms left: SQLITE_BUSY at the
 * deadline, not ten seconds later. */
START_TEST(test_deadline_ends_a_lock_wait)
{
    struct locked_db l;
    lock_db(&l, 10000);
    mhdctx_context *ctx = request_context();
    mhdctx_set_deadline_in(ctx, 150);
    insert_gives_up(&l, ctx, 100, 3000);
    ck_assert(mhdctx_deadline_passed(ctx));
    mhdctx_context_unref(ctx);
    unlock_db(&l);
}
END_TEST

/* Without a deadline (no request; a request with time to spare) the busy timeout the
 * application set still holds, as long as it was: 550 ms runs through SQLite's table of
 * steps (328 ms) and on in its last step. */
START_TEST(test_busy_timeout_kept_without_a_deadline)
{
    struct locked_db l;
    lock_db(&l, 550);
    insert_gives_up(&l, NULL, 530, 30000);
    mhdctx_context *ctx = request_context();
    mhdctx_set_deadline_in(ctx, 60000);
    insert_gives_up(&l, ctx, 530, 30000);
    mhdctx_context_unref(ctx);
    unlock_db(&l);
}
END_TEST

static int own_busy_calls;

static int own_busy_handler(void *cls, int count)
{
    (void)cls;
    (void)count;
    own_busy_calls++;
    return 0; /* give up at once */
}

/* A busy handler of the application's own (no busy timeout) stays the one called. */
START_TEST(test_own_busy_handler_left_alone)
{
    struct locked_db l;
    lock_db(&l, 0); /* no timeout: attach finds nothing to bound */
    own_busy_calls = 0;
    ck_assert_int_eq(sqlite3_busy_handler(l.waiter, own_busy_handler, NULL), SQLITE_OK);
    ck_assert_int_eq(mhdctx_sqlite_attach(l.waiter, MHDCTX_SQLITE_DEADLINE), SQLITE_OK);
    mhdctx_context *ctx = request_context();
    mhdctx_set_deadline_in(ctx, 60000);
    insert_gives_up(&l, ctx, 0, 30000);
    ck_assert_int_gt(own_busy_calls, 0);
    mhdctx_context_unref(ctx);
    unlock_db(&l);
}
END_TEST

static void *commit_later(void *arg)
{
    sleep_ms(100);
    sqlite3_exec(arg, "COMMIT", NULL, NULL, NULL);
    return NULL;
}

/* The wait retries: a lock released before the deadline lets the statement run. */
START_TEST(test_lock_released_before_the_deadline)
{
    struct locked_db l;
    lock_db(&l, 10000);
    mhdctx_context *ctx = request_context();
    mhdctx_set_deadline_in(ctx, 20000);
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, commit_later, l.holder), 0);
    struct run r = run_in(ctx, l.waiter, "INSERT INTO t VALUES (1)");
    ck_assert_int_eq(pthread_join(thread, NULL), 0);
    ck_assert_int_eq(r.prepare_rc, SQLITE_OK);
    ck_assert_int_eq(r.step_rc, SQLITE_DONE);
    ck_assert(!mhdctx_deadline_passed(ctx));
    free(r.text);
    mhdctx_context_unref(ctx);
    unlock_db(&l);
}
END_TEST

/* ==== suite =============================================================================== */

static Suite *sqlite_suite(void)
{
    Suite *s = suite_create("sqlite");

    TCase *tc = support_tcase(s, "tag", TEST_TIMEOUT_S, NULL, NULL);
    tcase_add_test(tc, test_prepare_tags_statement_in_context);
    tcase_add_test(tc, test_prepare_tags_statement_in_task);
    tcase_add_test(tc, test_prepare_tag_before_semicolon);
    tcase_add_test(tc, test_prepare_hostile_values_stay_in_comment);
    tcase_add_test(tc, test_prepare_outside_context_unchanged);
    tcase_add_test(tc, test_prepare_with_comment_unchanged);
    tcase_add_test(tc, test_prepare_bad_arguments);
    tcase_add_test(tc, test_prepare_out_of_memory);

    tc = support_tcase(s, "log", TEST_TIMEOUT_S, NULL, capture_end);
    tcase_add_test(tc, test_log_statements_one_line_each);
    tcase_add_test(tc, test_log_statements_follow_current_context);
    tcase_add_test(tc, test_log_statements_off);
    tcase_add_test(tc, test_log_statements_below_threshold);

    tc = support_tcase(s, "deadline", TEST_TIMEOUT_S, NULL, capture_end);
    tcase_add_test(tc, test_deadline_interrupts_long_query);
    tcase_add_test(tc, test_deadline_and_log_combined);
    tcase_add_test(tc, test_deadline_not_passed_completes);
    tcase_add_test(tc, test_deadline_flag_absent_not_enforced);
    tcase_add_test(tc, test_deadline_per_context_other_thread);
    tcase_add_test(tc, test_deadline_other_thread_without_context);
    tcase_add_test(tc, test_deadline_ends_a_lock_wait);
    tcase_add_test(tc, test_busy_timeout_kept_without_a_deadline);
    tcase_add_test(tc, test_lock_released_before_the_deadline);
    tcase_add_test(tc, test_own_busy_handler_left_alone);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sqlite_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failures = srunner_ntests_failed(sr);
    srunner_free(sr);
    mhdctx_log_shutdown();
    support_capture_clear();
    return failures ? 1 : 0;
}
