/*
 * check_pq.c - the PostgreSQL adapter against a real server (MHDCTX_TEST_PG_URI, set by
 * test/pq.sh, which starts a throwaway cluster). Each check asks the server itself what
 * it saw: the statement text, application_name, statement_timeout.
 */
#include "mhdctx.h"
#include "mhdctx_pq.h"
#include "child.h"
#include "support.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static PGconn *conn;

static void connect_db(void)
{
    const char *uri = getenv("MHDCTX_TEST_PG_URI");
    ck_assert_msg(uri != NULL, "MHDCTX_TEST_PG_URI is not set (run test/pq.sh)");
    conn = PQconnectdb(uri);
    ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
    mhdctx_log_to_file("/dev/null");
}

static void disconnect_db(void)
{
    PQfinish(conn);
    mhdctx_log_shutdown();
}

/* The single text value of a one-row result; owned by the caller (free). */
static char *single_value(PGresult *r)
{
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    char *value = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return value;
}

static char *show(const char *setting)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SHOW %s", setting);
    return single_value(PQexec(conn, sql));
}

/* The session's @setting is @expected (the application's own, not one a request left). */
static void assert_setting(const char *setting, const char *expected)
{
    char *value = show(setting);
    ck_assert_msg(strcmp(value, expected) == 0, "%s is %s, expected %s", setting, value,
                  expected);
    free(value);
}

static mhdctx_context *request_context(const char *request_id)
{
    char text[512];
    snprintf(
        text, sizeof text,
        "{\"v\":1,\"request_id\":\"%s\",\"user_id\":\"42\",\"roles\":[],\"keys\":{},"
        "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\":\"00f067aa0ba902b7\","
        "\"parent_span_id\":\"\",\"trace_flags\":\"01\",\"tracestate\":\"\"}",
        request_id);
    mhdctx_error err;
    mhdctx_context *ctx = mhdctx_context_import(text, strlen(text), &err);
    ck_assert_msg(ctx != NULL, "import: %s", mhdctx_strerror(err));
    return ctx;
}

/* A request's context with a deadline @p ms from now. */
static mhdctx_context *deadline_context(const char *request_id, uint64_t ms)
{
    mhdctx_context *ctx = request_context(request_id);
    mhdctx_set_deadline_in(ctx, ms);
    return ctx;
}

/* ---- tagged statements ----------------------------------------------------------------- */

struct query {
    const char *sql;
    char *result;
    ExecStatusType status;
    const char *sqlstate;
};

static void run_tagged(void *arg)
{
    struct query *q = arg;
    PGresult *r = mhdctx_pq_exec_params(conn, q->sql, 0, NULL, NULL, NULL, 0);
    q->status = PQresultStatus(r);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    q->sqlstate = state ? (strcmp(state, "57014") == 0 ? "57014" : "other") : NULL;
    q->result = q->status == PGRES_TUPLES_OK ? strdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
}

START_TEST(the_server_sees_the_tagged_text)
{
    mhdctx_context *ctx = request_context("pq-unit-tagged");
    mhdctx_set_route(ctx, "/users/{id}");
    struct query q = {"SELECT current_query()", NULL, 0, NULL};
    mhdctx_run(ctx, run_tagged, &q);
    ck_assert_int_eq(q.status, PGRES_TUPLES_OK);
    ck_assert_msg(strstr(q.result, "request_id='pq-unit-tagged'") != NULL, "%s", q.result);
    ck_assert_ptr_nonnull(strstr(q.result, "route='%2Fusers%2F%7Bid%7D'"));
    ck_assert_ptr_nonnull(strstr(
        q.result, "traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'"));
    ck_assert_ptr_nonnull(strstr(q.result, "user_id='42'"));
    free(q.result);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(outside_a_request_the_text_is_untouched)
{
    struct query q = {"SELECT current_query()", NULL, 0, NULL};
    run_tagged(&q);
    ck_assert_str_eq(q.result, "SELECT current_query()");
    free(q.result);
}
END_TEST

/* ---- deadlines --------------------------------------------------------------------------- */

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* A pg_sleep(3) in a request of @deadline_ms is cancelled by the server (57014) well
 * before it ends, and the session's statement_timeout is @after again. */
static void assert_cancelled_at_deadline(const char *request_id, unsigned deadline_ms,
                                         const char *after)
{
    mhdctx_context *ctx = request_context(request_id);
    mhdctx_set_deadline_in(ctx, deadline_ms);
    struct query q = {"SELECT pg_sleep(3)::text", NULL, 0, NULL};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mhdctx_run(ctx, run_tagged, &q);
    double took = seconds_since(&t0);
    mhdctx_context_unref(ctx);
    ck_assert_int_eq(q.status, PGRES_FATAL_ERROR);
    ck_assert_ptr_nonnull(q.sqlstate);
    ck_assert_str_eq(q.sqlstate, "57014"); /* query_canceled: statement_timeout */
    ck_assert_msg(took < deadline_ms / 1000.0 + 1.2, "took %.3f s", took);
    assert_setting("statement_timeout", after);
}

START_TEST(the_server_cancels_at_the_deadline)
{
    assert_cancelled_at_deadline("pq-unit-deadline", 200, "0");
}
END_TEST

/* The request's deadline wins over the application's own (longer) statement_timeout,
 * which is back after. */
START_TEST(the_deadline_cancels_under_the_applications_own_timeout)
{
    PQclear(PQexec(conn, "SET statement_timeout = '5s'"));
    assert_cancelled_at_deadline("pq-unit-deadline-own", 300, "5s");
}
END_TEST

/* A statement that fails leaves the connection as it was: idle, out of any pipeline,
 * usable, its settings its own. */
START_TEST(a_failed_statement_leaves_the_connection_usable)
{
    mhdctx_context *ctx = deadline_context("pq-unit-fails", 2000);
    struct query q = {"SELECT (1/0)::text", NULL, 0, NULL};
    mhdctx_run(ctx, run_tagged, &q);
    ck_assert_int_eq(q.status, PGRES_FATAL_ERROR);
    ck_assert_str_eq(q.sqlstate, "other"); /* division by zero, not a timeout */
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
#ifdef LIBPQ_HAS_PIPELINING
    ck_assert_int_eq(PQpipelineStatus(conn), PQ_PIPELINE_OFF);
#endif
    assert_setting("statement_timeout", "0");
    struct query again = {"SELECT 'still here'", NULL, 0, NULL};
    mhdctx_run(ctx, run_tagged, &again);
    ck_assert_str_eq(again.result, "still here");
    free(again.result);
    mhdctx_context_unref(ctx);
}
END_TEST

/* VACUUM cannot run inside a transaction block, which is what the statements of one
 * pipeline share: it still runs, with the request's timeout, and the session keeps
 * its own. */
START_TEST(a_statement_that_refuses_a_block_still_runs)
{
    PQclear(PQexec(conn, "CREATE TEMP TABLE vacuumed (x int)"));
    mhdctx_context *ctx = deadline_context("pq-unit-vacuum", 5000);
    struct query q = {"VACUUM vacuumed", NULL, 0, NULL};
    mhdctx_run(ctx, run_tagged, &q);
    ck_assert_int_eq(q.status, PGRES_COMMAND_OK);
    assert_setting("statement_timeout", "0");
    mhdctx_context_unref(ctx);
}
END_TEST

static void run_late(void *arg)
{
    PGresult **out = arg;
    *out = mhdctx_pq_exec_params(conn, "SELECT 1", 0, NULL, NULL, NULL, 0);
}

START_TEST(nothing_is_sent_once_the_deadline_has_passed)
{
    /* the connection's last error is an earlier statement's: the refusal must not say it */
    PQclear(PQexec(conn, "SELECT no_such_column"));
    mhdctx_context *late = deadline_context("pq-unit-late-message", 1);
    struct timespec wait = {0, 5 * 1000 * 1000};
    nanosleep(&wait, NULL);
    PGresult *r = NULL;
    mhdctx_run(late, run_late, &r);
    mhdctx_context_unref(late);
    ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    ck_assert_msg(strstr(PQresultErrorMessage(r), "no_such_column") == NULL, "%s",
                  PQresultErrorMessage(r));
    PQclear(r);

    mhdctx_context *ctx = deadline_context("pq-unit-late", 1);
    struct timespec pause = {0, 5 * 1000 * 1000};
    nanosleep(&pause, NULL);
    struct query q = {"SELECT 1::text", NULL, 0, NULL};
    mhdctx_run(ctx, run_tagged, &q);
    ck_assert_int_eq(q.status, PGRES_FATAL_ERROR);
    ck_assert_ptr_null(q.sqlstate); /* refused before reaching the server */
    ck_assert_ptr_null(q.result);
    mhdctx_context_unref(ctx);
}
END_TEST

/* ---- prepared mode ----------------------------------------------------------------------- */

static void run_prepared(void *arg)
{
    char **out = arg;
    PGresult *r = mhdctx_pq_exec_prepared(conn, "whoami", 0, NULL, NULL, NULL, 0);
    *out = single_value(r);
}

START_TEST(prepared_statements_carry_the_request_as_application_name)
{
    PQclear(PQprepare(conn, "whoami", "SELECT current_setting('application_name')", 0, NULL));
    char *before = show("application_name");
    mhdctx_context *ctx = request_context("pq-unit-prepared");
    char *seen = NULL;
    mhdctx_run(ctx, run_prepared, &seen);
    ck_assert_str_eq(seen, "mhdctx pq-unit-prepared");
    char *after = show("application_name");
    ck_assert_str_eq(after, before); /* not left on the connection */
    free(seen);
    free(after);
    free(before);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(a_long_request_id_fits_application_name)
{
    PQclear(PQprepare(conn, "whoami", "SELECT current_setting('application_name')", 0, NULL));
    char id[129];
    memset(id, 'x', 128);
    id[128] = '\0';
    mhdctx_context *ctx = request_context(id);
    char *seen = NULL;
    mhdctx_run(ctx, run_prepared, &seen);
    ck_assert_uint_le(strlen(seen), 63); /* NAMEDATALEN - 1 */
    ck_assert_msg(strncmp(seen, "mhdctx xxxx", 11) == 0, "%s", seen);
    free(seen);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(the_applications_own_settings_are_kept)
{
    PQclear(PQexec(conn, "SET statement_timeout = '5s'"));
    PQclear(PQexec(conn, "SET application_name = 'myapp'"));
    PQclear(PQprepare(conn, "whoami", "SELECT current_setting('application_name')", 0, NULL));
    mhdctx_context *ctx = deadline_context("pq-unit-own-settings", 2000);
    struct query q = {"SELECT current_setting('statement_timeout')", NULL, 0, NULL};
    mhdctx_run(ctx, run_tagged, &q);
    ck_assert_str_ne(q.result, "5s"); /* the request's own timeout while it ran */
    free(q.result);
    char *seen = NULL;
    mhdctx_run(ctx, run_prepared, &seen);
    ck_assert_str_eq(seen, "mhdctx pq-unit-own-settings");
    free(seen);
    assert_setting("statement_timeout", "5s");
    assert_setting("application_name", "myapp");
    mhdctx_context_unref(ctx);
}
END_TEST

/* In a transaction block the changes are local to it: the application's SET LOCAL is
 * back after the statement, and nothing outlives the transaction. */
START_TEST(inside_a_transaction_the_changes_end_with_it)
{
    PQclear(PQexec(conn, "BEGIN"));
    PQclear(PQexec(conn, "SET LOCAL statement_timeout = '7s'"));
    mhdctx_context *ctx = deadline_context("pq-unit-transaction", 2000);
    struct query q = {"SELECT 1::text", NULL, 0, NULL};
    mhdctx_run(ctx, run_tagged, &q);
    ck_assert_str_eq(q.result, "1");
    free(q.result);
    assert_setting("statement_timeout", "7s");
    PQclear(PQexec(conn, "COMMIT"));
    assert_setting("statement_timeout", "0");
    mhdctx_context_unref(ctx);
}
END_TEST

/* Statements of one request, in order, through the adapter; each result's status. */
struct script {
    const char *const *sql;
    size_t n;
    ExecStatusType status[4];
    char *timeout_inside; /* what the block's SELECT saw */
};

static void run_script(void *arg)
{
    struct script *script = arg;
    for (size_t i = 0; i < script->n; i++) {
        PGresult *r = mhdctx_pq_exec_params(conn, script->sql[i], 0, NULL, NULL, NULL, 0);
        script->status[i] = PQresultStatus(r);
        if (script->status[i] == PGRES_TUPLES_OK)
            script->timeout_inside = strdup(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
}

/* @sql alone through the adapter, in @ctx; its status. */
static ExecStatusType run_one(mhdctx_context *ctx, const char *sql)
{
    const char *one[] = {sql};
    struct script script = {one, 1, {PGRES_EMPTY_QUERY}, NULL};
    mhdctx_run(ctx, run_script, &script);
    free(script.timeout_inside);
    return script.status[0];
}

/* The application's own SET, RESET or DISCARD sent through the adapter stays: they get
 * no change, so nothing puts the old value back over theirs (DISCARD ALL refuses a block,
 * so it took the three round trips, which did). */
static const struct {
    const char *sql;
    const char *timeout_after;
} own_settings[] = {
    {"SET statement_timeout = '10s'", "10s"},
    {"/* back to the default */ RESET statement_timeout", "0"},
    {"DISCARD ALL", "0"},
};

START_TEST(an_applications_set_through_the_adapter_stays)
{
    PQclear(PQexec(conn, "SET statement_timeout = '5s'"));
    mhdctx_context *ctx = deadline_context("pq-unit-app-set", 2000);
    ck_assert_int_eq(run_one(ctx, own_settings[_i].sql), PGRES_COMMAND_OK);
    mhdctx_context_unref(ctx);
    assert_setting("statement_timeout", own_settings[_i].timeout_after);
}
END_TEST

/* Inside a block too, where the three round trips used to put the value from before the
 * statement back over the SET LOCAL, and over what a RESET went back to. */
START_TEST(an_applications_set_local_through_the_adapter_stays_in_the_block)
{
    PQclear(PQexec(conn, "BEGIN"));
    mhdctx_context *ctx = deadline_context("pq-unit-set-local", 2000);
    ck_assert_int_eq(run_one(ctx, "SET LOCAL statement_timeout = '12345'"), PGRES_COMMAND_OK);
    assert_setting("statement_timeout", "12345ms");
    ck_assert_int_eq(run_one(ctx, " -- back to the default\n reset statement_timeout"),
                     PGRES_COMMAND_OK);
    mhdctx_context_unref(ctx);
    assert_setting("statement_timeout", "0");
    PQclear(PQexec(conn, "COMMIT"));
}
END_TEST

/* BEGIN ... ROLLBACK through the adapter: a ROLLBACK used to undo the putting back of
 * the application's timeout (made inside the block BEGIN opened) and leave the
 * request's on the connection. BEGIN is recognised after space and (nested) comments;
 * a keyword inside a comment is not a statement. */
static void check_transactions_leave_the_applications_timeout(void)
{
    static const char *const opening[] = {
        "BEGIN",
        " /* a /* nested */ comment */ -- and a line\n start transaction read write",
    };
    static const char *const ending[] = {"ROLLBACK", "commit"};
    for (size_t i = 0; i < 4; i++) {
        PQclear(PQexec(conn, "SET statement_timeout = '5s'"));
        const char *sql[] = {opening[i % 2],
                             "/* begin */ SELECT current_setting('statement_timeout')",
                             ending[i / 2]};
        struct script script = {sql, 3, {PGRES_EMPTY_QUERY}, NULL};
        mhdctx_context *ctx = deadline_context("pq-unit-begin", 2000);
        mhdctx_run(ctx, run_script, &script);
        mhdctx_context_unref(ctx);
        ck_assert_int_eq(script.status[0], PGRES_COMMAND_OK);
        ck_assert_int_eq(script.status[1], PGRES_TUPLES_OK);
        ck_assert_int_eq(script.status[2], PGRES_COMMAND_OK);
        ck_assert_msg(strcmp(script.timeout_inside, "5s") != 0,
                      "%s: the block ran without the request's timeout", sql[0]);
        free(script.timeout_inside);
        ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
        assert_setting("statement_timeout", "5s");
    }
}

START_TEST(a_transaction_through_the_adapter_leaves_the_applications_timeout)
{
    check_transactions_leave_the_applications_timeout();
}
END_TEST

/* A SAVEPOINT gets no change: made under the request's timeout, the savepoint used to
 * keep that timeout as its state, and the application's own ROLLBACK TO SAVEPOINT
 * (sent without the adapter) brought it back for the rest of the block. */
static void check_a_savepoint_keeps_the_applications_timeout(void)
{
    PQclear(PQexec(conn, "BEGIN"));
    PQclear(PQexec(conn, "SET LOCAL statement_timeout = '5s'"));
    mhdctx_context *ctx = deadline_context("pq-unit-savepoint", 2000);
    ck_assert_int_eq(run_one(ctx, "SAVEPOINT before_work"), PGRES_COMMAND_OK);
    ck_assert_int_eq(run_one(ctx, "SELECT 1"), PGRES_TUPLES_OK);
    mhdctx_context_unref(ctx);
    PQclear(PQexec(conn, "ROLLBACK TO SAVEPOINT before_work"));
    assert_setting("statement_timeout", "5s");
    PQclear(PQexec(conn, "ROLLBACK"));
}

START_TEST(a_rollback_to_a_savepoint_brings_back_the_applications_timeout)
{
    check_a_savepoint_keeps_the_applications_timeout();
}
END_TEST

/* Keywords are ASCII: in a Turkish locale strcasecmp() held "BEGIN" and "begin" (and
 * "SAVEPOINT", "START TRANSACTION") different ('I' does not lower to 'i' there), and the
 * two tests above failed. */
START_TEST(keywords_are_found_under_a_turkish_locale)
{
    char dir[32];
    test_turkish_ctype_begin(dir);
    check_transactions_leave_the_applications_timeout();
    check_a_savepoint_keeps_the_applications_timeout();
    test_ctype_locale_end(dir);
}
END_TEST

/* A comment ended by a carriage return (PostgreSQL ends "--" comments at either) hides
 * no keyword: BEGIN gets no change, so the block runs under the application's own
 * timeout, not under what the request had left at its start. */
START_TEST(a_line_comment_ended_by_a_carriage_return_hides_no_keyword)
{
    PQclear(PQexec(conn, "SET statement_timeout = '5s'"));
    mhdctx_context *ctx = deadline_context("pq-unit-cr-comment", 2000);
    ck_assert_int_eq(run_one(ctx, "-- a comment ended by a carriage return\rBEGIN"),
                     PGRES_COMMAND_OK);
    mhdctx_context_unref(ctx);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_INTRANS);
    assert_setting("statement_timeout", "5s");
    PQclear(PQexec(conn, "ROLLBACK"));
}
END_TEST

/* A deadline further than PostgreSQL's largest statement_timeout (INT_MAX ms) is bounded
 * there, not refused: a refusal would abort the application's block. */
START_TEST(a_deadline_beyond_postgresqls_range_keeps_the_block_usable)
{
    PQclear(PQexec(conn, "BEGIN"));
    mhdctx_context *ctx = deadline_context("pq-unit-far-deadline", 30ull * 24 * 3600 * 1000);
    const char *sql[] = {"SELECT current_setting('statement_timeout')"};
    struct script script = {sql, 1, {PGRES_EMPTY_QUERY}, NULL};
    mhdctx_run(ctx, run_script, &script);
    mhdctx_context_unref(ctx);
    ck_assert_int_eq(script.status[0], PGRES_TUPLES_OK);
    ck_assert_str_eq(script.timeout_inside, "2147483647ms");
    free(script.timeout_inside);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_INTRANS);
    PQclear(PQexec(conn, "COMMIT"));
}
END_TEST

/* Outside a block the statement's implicit transaction commits at the pipeline's sync:
 * an error there (a deferred foreign key) is the call's answer, as with PQexecParams(),
 * never a success for work that was rolled back. */
START_TEST(an_error_at_commit_is_the_statements_answer)
{
    PQclear(PQexec(conn, "CREATE TEMP TABLE pq_unit_parent (id int PRIMARY KEY)"));
    PQclear(PQexec(conn, "CREATE TEMP TABLE pq_unit_child (parent int REFERENCES "
                         "pq_unit_parent DEFERRABLE INITIALLY DEFERRED)"));
    mhdctx_context *ctx = deadline_context("pq-unit-commit-error", 2000);
    ck_assert_int_eq(run_one(ctx, "INSERT INTO pq_unit_child VALUES (999)"), PGRES_FATAL_ERROR);
    mhdctx_context_unref(ctx);
    char *count = single_value(PQexec(conn, "SELECT count(*) FROM pq_unit_child"));
    ck_assert_str_eq(count, "0");
    free(count);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    PQclear(PQexec(conn, "DROP TABLE pq_unit_child, pq_unit_parent"));
}
END_TEST

/* ---- COPY -------------------------------------------------------------------------------- */

/* A COPY FROM STDIN through the adapter, its data sent after the call returns; the
 * statuses of each step. In a block, the adapter sends BEGIN and COMMIT too. */
struct copy_run {
    bool in_block;
    ExecStatusType copy;
    int put;
    int end;
    ExecStatusType done;
    char *error;
    char *timeout_after; /* statement_timeout once the COPY is done, before any COMMIT */
    ExecStatusType commit;
};

/* Ends the block a run opened with @sql (COMMIT, ROLLBACK) through the adapter: its
 * status; PGRES_COMMAND_OK when the run opened none. */
static ExecStatusType end_block(bool in_block, const char *sql)
{
    if (!in_block)
        return PGRES_COMMAND_OK;
    PGresult *r = mhdctx_pq_exec_params(conn, sql, 0, NULL, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus(r);
    PQclear(r);
    return status;
}

static void run_copy(void *arg)
{
    struct copy_run *run = arg;
    if (run->in_block)
        PQclear(mhdctx_pq_exec_params(conn, "BEGIN", 0, NULL, NULL, NULL, 0));
    PGresult *r = mhdctx_pq_exec_params(conn, "/* rows */ copy copied FROM STDIN", 0, NULL,
                                        NULL, NULL, 0);
    run->copy = PQresultStatus(r);
    PQclear(r);
    run->put = PQputCopyData(conn, "1\n2\n", 4);
    run->end = PQputCopyEnd(conn, NULL);
    r = PQgetResult(conn);
    run->done = PQresultStatus(r);
    run->error = strdup(PQresultErrorMessage(r));
    for (; r != NULL; r = PQgetResult(conn))
        PQclear(r);
    run->timeout_after = show("statement_timeout");
    run->commit = end_block(run->in_block, "COMMIT");
}

/* A COPY's data flows after the call returns: a putting back sent in the meantime used
 * to end the COPY ("COPY terminated by new PQexec") and fail the caller's data. In a
 * block, where the putting back was skipped, the request's timeout used to stay on the
 * block after the COPY. */
START_TEST(a_copy_through_the_adapter_takes_its_data)
{
    PQclear(PQexec(conn, "CREATE TEMP TABLE copied (x int)"));
    PQclear(PQexec(conn, "SET statement_timeout = '5s'"));
    for (int in_block = 0; in_block < 2; in_block++) {
        struct copy_run run = {.in_block = in_block};
        mhdctx_context *ctx = deadline_context("pq-unit-copy", 3000);
        mhdctx_run(ctx, run_copy, &run);
        mhdctx_context_unref(ctx);
        ck_assert_int_eq(run.copy, PGRES_COPY_IN);
        ck_assert_msg(run.put == 1, "PQputCopyData: %d, %s", run.put, PQerrorMessage(conn));
        ck_assert_int_eq(run.end, 1);
        ck_assert_msg(run.done == PGRES_COMMAND_OK, "%s", run.error);
        free(run.error);
        ck_assert_str_eq(run.timeout_after, "5s");
        free(run.timeout_after);
        ck_assert_int_eq(run.commit, PGRES_COMMAND_OK);
        ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
        char *rows = single_value(PQexec(conn, "SELECT count(*) FROM copied"));
        ck_assert_int_eq(atoi(rows), 2 * (in_block + 1));
        free(rows);
        assert_setting("statement_timeout", "5s");
    }
}
END_TEST

/* A prepared COPY is not recognised (the header says to send COPY as text), so it gets
 * the request's change like any statement. Its data would have to flow after the call,
 * which a pipeline or a putting back cannot wait for: the COPY used to spin the pipeline
 * (libpq answers PGRES_COPY_IN to every PQgetResult until the data ends). Now the call
 * answers with a failure, nothing copied, and the connection is usable. */
struct prepared_copy_run {
    bool in_block;
    const char *name;
    ExecStatusType status;
    ExecStatusType commit;
};

static void run_prepared_copy(void *arg)
{
    struct prepared_copy_run *run = arg;
    if (run->in_block)
        PQclear(mhdctx_pq_exec_params(conn, "BEGIN", 0, NULL, NULL, NULL, 0));
    PGresult *r = mhdctx_pq_exec_prepared(conn, run->name, 0, NULL, NULL, NULL, 0);
    run->status = PQresultStatus(r);
    PQclear(r);
    run->commit = end_block(run->in_block, "ROLLBACK");
}

START_TEST(a_prepared_copy_fails_and_leaves_the_connection_usable)
{
    PQclear(PQexec(conn, "CREATE TEMP TABLE prepared_copy (x int)"));
    PQclear(PQexec(conn, "INSERT INTO prepared_copy VALUES (7)"));
    PQclear(PQexec(conn, "SET statement_timeout = '5s'"));
    const char *names[] = {"copy_in", "copy_out"};
    PQclear(PQprepare(conn, "copy_in", "COPY prepared_copy FROM STDIN", 0, NULL));
    PQclear(PQprepare(conn, "copy_out", "COPY prepared_copy TO STDOUT", 0, NULL));
    for (int i = 0; i < 4; i++) {
        struct prepared_copy_run run = {.in_block = i / 2, .name = names[i % 2]};
        mhdctx_context *ctx = deadline_context("pq-unit-prepared-copy", 3000);
        mhdctx_run(ctx, run_prepared_copy, &run);
        ck_assert_msg(run.status == PGRES_FATAL_ERROR, "%s%s: %s",
                      run.in_block ? "in a block, " : "", run.name, PQresStatus(run.status));
        ck_assert_int_eq(run.commit, PGRES_COMMAND_OK);
        ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
        ck_assert_int_eq(run_one(ctx, "SELECT 1"), PGRES_TUPLES_OK); /* a pipeline again */
        mhdctx_context_unref(ctx);
        char *rows = single_value(PQexec(conn, "SELECT count(*) FROM prepared_copy"));
        ck_assert_str_eq(rows, "1");
        free(rows);
        assert_setting("statement_timeout", "5s");
    }
}
END_TEST

/* ---- statements libpq refuses to send ---------------------------------------------------- */

struct refused_call {
    bool prepared;
    int n_params;
    const char *message; /* libpq's */
};

static const struct refused_call refused_calls[] = {
    {false, 1, "length must be given for binary parameter"},
    {true, 1, "length must be given for binary parameter"},
    {false, 70000, "number of parameters must be between 0 and 65535"},
};

struct refused_run {
    const struct refused_call *call;
    ExecStatusType status;
    char *message;
    char *next; /* what the next statement through the adapter said */
};

static void run_refused(void *arg)
{
    struct refused_run *run = arg;
    static const char *const values[] = {"\x01"};
    static const int binary[] = {1}; /* without lengths: libpq refuses it */
    const struct refused_call *call = run->call;
    PGresult *r =
        call->prepared
            ? mhdctx_pq_exec_prepared(conn, "echo", call->n_params, values, NULL, binary, 0)
            : mhdctx_pq_exec_params(conn, "SELECT $1::bytea", call->n_params, values, NULL,
                                    binary, 0);
    run->status = PQresultStatus(r);
    run->message = strdup(PQresultErrorMessage(r));
    PQclear(r);
    r = mhdctx_pq_exec_params(conn, "SELECT 'still here'", 0, NULL, NULL, NULL, 0);
    run->next = strdup(PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0)
                                                            : PQresultErrorMessage(r));
    PQclear(r);
}

/* A statement libpq refuses to send gives a failed result with libpq's reason, and
 * leaves the connection usable (out of pipeline mode), its settings its own. */
static void assert_refused_calls_leave_the_connection_usable(bool in_block)
{
    PQclear(PQprepare(conn, "echo", "SELECT $1::bytea", 0, NULL));
    PQclear(PQexec(conn, "SET statement_timeout = '5s'"));
    if (in_block)
        PQclear(PQexec(conn, "BEGIN"));
    size_t n = sizeof refused_calls / sizeof refused_calls[0];
    for (size_t i = 0; i < n; i++) {
        struct refused_run run = {&refused_calls[i], 0, NULL, NULL};
        mhdctx_context *ctx = deadline_context("pq-unit-refused", 3000);
        mhdctx_run(ctx, run_refused, &run);
        mhdctx_context_unref(ctx);
        ck_assert_int_eq(run.status, PGRES_FATAL_ERROR);
#ifdef LIBPQ_HAS_PIPELINING
        ck_assert_int_eq(PQpipelineStatus(conn), PQ_PIPELINE_OFF);
#endif
        ck_assert_msg(strstr(run.message, run.call->message) != NULL, "call %zu: \"%s\"", i,
                      run.message);
        ck_assert_str_eq(run.next, "still here");
        ck_assert_int_eq(PQtransactionStatus(conn), in_block ? PQTRANS_INTRANS : PQTRANS_IDLE);
        assert_setting("statement_timeout", "5s");
        free(run.message);
        free(run.next);
    }
    if (in_block)
        PQclear(PQexec(conn, "COMMIT"));
    assert_setting("statement_timeout", "5s");
}

/* It used to leave the connection in pipeline mode, with the change queued and unsynced:
 * every later statement on it failed. */
START_TEST(a_statement_libpq_refuses_leaves_the_connection_usable)
{
    assert_refused_calls_leave_the_connection_usable(false);
}
END_TEST

/* In a block its reason used to be lost: the putting back replaced libpq's message. */
START_TEST(a_statement_libpq_refuses_in_a_block_says_why)
{
    assert_refused_calls_leave_the_connection_usable(true);
}
END_TEST

/* ---- putting the values back fails ------------------------------------------------------- */

/*
 * The server refusing the putting back, deterministically: a set_config() that the
 * adapter's own statements find first on the search path, which refuses to set a value
 * back to '5s' (what the tests' application has) while trap.refusals allows (the sequence
 * counts outside transactions). A timeout refuses it only by chance.
 */
static void set_trap(int refusals)
{
    PGresult *r = PQexec(
        conn, "CREATE SCHEMA IF NOT EXISTS trap; "
              "CREATE SEQUENCE IF NOT EXISTS trap.calls; "
              "SELECT setval('trap.calls', 1, false); "
              "CREATE OR REPLACE FUNCTION trap.set_config(name text, value text, local bool) "
              "RETURNS text LANGUAGE plpgsql AS $$ BEGIN "
              "IF value = '5s' THEN "
              "IF nextval('trap.calls') <= current_setting('trap.refusals')::int THEN "
              "RAISE EXCEPTION 'trap: % not put back', name; END IF; END IF; "
              "RETURN pg_catalog.set_config(name, value, local); END $$; "
              "SET statement_timeout = '5s'; "
              "SET search_path = trap, pg_catalog, public");
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
    char sql[64];
    snprintf(sql, sizeof sql, "SET trap.refusals = '%d'", refusals);
    PQclear(PQexec(conn, sql));
}

static void remove_trap(void)
{
    PQclear(PQexec(conn, "RESET search_path; DROP FUNCTION trap.set_config; "
                         "DROP SEQUENCE trap.calls; DROP SCHEMA trap"));
}

/* How many times the trap's set_config() was asked to put '5s' back. */
static int trap_calls(void)
{
    char *calls = single_value(PQexec(conn, "SELECT last_value FROM trap.calls"));
    int n = atoi(calls);
    free(calls);
    return n;
}

#define NOT_PUT_BACK "sql session settings not put back"

/* @p sql through the adapter (request "pq-unit-trap", 3 s deadline), in a block or not,
 * its putting back refused @p refusals times by the trap, with the log captured; its
 * status. */
static ExecStatusType run_with_putting_back_refused(int refusals, bool in_block,
                                                    const char *sql)
{
    set_trap(refusals);
    PQclear(PQexec(conn, "CREATE TEMP TABLE trapped (x int)"));
    if (in_block)
        PQclear(PQexec(conn, "BEGIN"));
    support_capture_start();
    mhdctx_context *ctx = deadline_context("pq-unit-trap", 3000);
    struct query q = {sql, NULL, 0, NULL};
    mhdctx_run(ctx, run_tagged, &q);
    mhdctx_context_unref(ctx);
    free(q.result);
    return q.status;
}

/* Refused inside a block, the putting back aborted it, and a COMMIT would roll back: the
 * statement (which succeeded) used to say PGRES_TUPLES_OK. */
START_TEST(a_putting_back_refused_in_a_block_fails_the_statement)
{
    ck_assert_int_eq(run_with_putting_back_refused(1000, true, "SELECT 1::text"),
                     PGRES_FATAL_ERROR);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_INERROR);
    /* the warning, then the statement's own failure line */
    ck_assert_uint_eq(support_capture_n(), 2);
    json_t *line = support_capture_json(0, JSON_REJECT_DUPLICATES);
    ck_assert_str_eq(json_string_value(json_object_get(line, "message")),
                     NOT_PUT_BACK ": the transaction is aborted");
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(line, "error")),
                                 "trap: statement_timeout not put back"));
    json_decref(line);
    ck_assert_uint_eq(support_capture_count("sql statement failed", "pq-unit-trap"), 1);
    support_capture_stop();
    PQclear(PQexec(conn, "ROLLBACK"));
    remove_trap();
}
END_TEST

/* VACUUM, which refuses the pipeline's block, takes the three round trips outside a
 * block, where a refused putting back is tried once more. */
static void vacuum_with_putting_back_refused(int refusals)
{
    ck_assert_int_eq(run_with_putting_back_refused(refusals, false, "VACUUM trapped"),
                     PGRES_COMMAND_OK);
    ck_assert_int_eq(trap_calls(), 2);
}

/* Refused once, it is tried again, and the application's value is back (it used to stay
 * the request's). */
START_TEST(a_putting_back_refused_outside_a_block_is_tried_again)
{
    vacuum_with_putting_back_refused(1);
    assert_setting("statement_timeout", "5s");
    ck_assert_uint_eq(support_capture_n(), 0);
    support_capture_stop();
    remove_trap();
}
END_TEST

/* Refused twice, the request's timeout stays on the connection: a warning names it. */
START_TEST(a_putting_back_refused_twice_is_logged)
{
    vacuum_with_putting_back_refused(2);
    json_t *line = support_capture_only(JSON_REJECT_DUPLICATES);
    ck_assert_str_eq(json_string_value(json_object_get(line, "message")),
                     NOT_PUT_BACK ": the connection keeps the request's values");
    ck_assert_str_eq(json_string_value(json_object_get(line, "settings")), "statement_timeout");
    json_decref(line);
    support_capture_stop();
    char *left = show("statement_timeout");
    ck_assert_str_ne(left, "5s"); /* the request's (3000 ms at most) */
    free(left);
    remove_trap();
}
END_TEST

static Suite *pq_suite(void)
{
    Suite *s = suite_create("pq");
    TCase *tc = tcase_create("server");
    tcase_add_checked_fixture(tc, connect_db, disconnect_db);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, the_server_sees_the_tagged_text);
    tcase_add_test(tc, outside_a_request_the_text_is_untouched);
    tcase_add_test(tc, the_server_cancels_at_the_deadline);
    tcase_add_test(tc, the_deadline_cancels_under_the_applications_own_timeout);
    tcase_add_test(tc, a_failed_statement_leaves_the_connection_usable);
    tcase_add_test(tc, a_statement_that_refuses_a_block_still_runs);
    tcase_add_test(tc, nothing_is_sent_once_the_deadline_has_passed);
    tcase_add_test(tc, prepared_statements_carry_the_request_as_application_name);
    tcase_add_test(tc, a_long_request_id_fits_application_name);
    tcase_add_test(tc, the_applications_own_settings_are_kept);
    tcase_add_test(tc, inside_a_transaction_the_changes_end_with_it);
    tcase_add_test(tc, a_transaction_through_the_adapter_leaves_the_applications_timeout);
    tcase_add_test(tc, a_rollback_to_a_savepoint_brings_back_the_applications_timeout);
    tcase_add_test(tc, keywords_are_found_under_a_turkish_locale);
    tcase_add_test(tc, a_line_comment_ended_by_a_carriage_return_hides_no_keyword);
    tcase_add_test(tc, a_deadline_beyond_postgresqls_range_keeps_the_block_usable);
    tcase_add_test(tc, an_error_at_commit_is_the_statements_answer);
    tcase_add_loop_test(tc, an_applications_set_through_the_adapter_stays, 0,
                        (int)(sizeof own_settings / sizeof own_settings[0]));
    tcase_add_test(tc, an_applications_set_local_through_the_adapter_stays_in_the_block);
    tcase_add_test(tc, a_copy_through_the_adapter_takes_its_data);
    tcase_add_test(tc, a_prepared_copy_fails_and_leaves_the_connection_usable);
    tcase_add_test(tc, a_statement_libpq_refuses_leaves_the_connection_usable);
    tcase_add_test(tc, a_statement_libpq_refuses_in_a_block_says_why);
    tcase_add_test(tc, a_putting_back_refused_in_a_block_fails_the_statement);
    tcase_add_test(tc, a_putting_back_refused_outside_a_block_is_tried_again);
    tcase_add_test(tc, a_putting_back_refused_twice_is_logged);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pq_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
