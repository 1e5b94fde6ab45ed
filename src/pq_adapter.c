/*
 * pq_adapter.c - PostgreSQL through libpq: tagged statements, deadlines as
 * statement_timeout, application_name for prepared statements, a statement log.
 * Optional: compiled only when ./configure finds libpq.
 *
 * A pooled connection must never keep another request's timeout or name, and must keep
 * its own (RESET would go back to the server's default, not to what the application had
 * set). Outside a transaction block the change is local to an implicit transaction that
 * the change and the statement share in one libpq pipeline: one round trip, and the
 * change ends with it. Inside a block (and where a pipeline cannot serve) it costs one
 * round trip before the statement (set_config, which also reads the values it
 * replaces) and one after (the values put back). Measured in bench/sql_bench.c.
 * Statements with nothing to bound, or whose data flows after the call (BEGIN, SAVEPOINT,
 * SET, COPY...: sent_without_change()), get no change at all.
 */
#include "internal.h"
#include "mhdctx_pq.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_bool log_statements;

void mhdctx_pq_log_statements(bool enable)
{
    atomic_store(&log_statements, enable);
}

/* What begin_statement() changed on the session, and the values it replaced, for
 * end_statement() to put back. "local": inside a transaction block both changes are
 * SET LOCAL, so that they end with the transaction (an abort undoes them too). */
struct session_change {
    bool timeout;
    bool name;
    bool local;
    char old_timeout[64];
    char old_name[128];
};

/* $1 statement_timeout, $2 application_name (NULL: left alone), $3 whether local.
 * set_config and current_setting are not qualified with pg_catalog: the path is the
 * application's, as for its own statements (the header says so). check_pq.c relies on
 * it: a trap.set_config() ahead of pg_catalog makes the server refuse the putting back,
 * deterministically. */
#define SET_CONFIG_SQL                                                                         \
    "CASE WHEN $1::text IS NOT NULL THEN set_config('statement_timeout', $1, $3) END, "        \
    "CASE WHEN $2::text IS NOT NULL THEN set_config('application_name', $2, $3) END"
#define SET_SESSION_SQL "SELECT " SET_CONFIG_SQL
/* The same, after reading the values it replaces: the old values come first, from a
 * subquery that OFFSET 0 keeps from being merged into the set_config calls. */
#define SAVE_AND_SET_SQL                                                                       \
    "SELECT old.t, old.n, " SET_CONFIG_SQL                                                     \
    " FROM (SELECT current_setting('statement_timeout') "                                      \
    "AS t, current_setting('application_name') AS n OFFSET 0) AS old"

/* ---- statements sent without a session change ----------------------------------------- */

/* @s at the start of a block comment: past its end. PostgreSQL's block comments nest. */
static const char *after_block_comment(const char *s)
{
    unsigned depth = 0;
    while (*s) {
        if (s[0] == '/' && s[1] == '*') {
            depth++;
            s += 2;
        } else if (s[0] == '*' && s[1] == '/') {
            s += 2;
            if (--depth == 0)
                break;
        } else {
            s++;
        }
    }
    return s;
}

static const char *skip_space_and_comments(const char *s)
{
    for (;;) {
        while (mhdctx__ascii_space((unsigned char)*s))
            s++;
        if (s[0] == '-' && s[1] == '-')
            s += strcspn(s, "\r\n"); /* PostgreSQL ends them at either */
        else if (s[0] == '/' && s[1] == '*')
            s = after_block_comment(s);
        else
            return s;
    }
}

/* Whether @s starts with the keyword @word (lower case), in any case, as a whole word. */
static bool starts_with_keyword(const char *s, const char *word)
{
    size_t n = strlen(word);
    if (!mhdctx__ascii_case_equal_n(s, word, n))
        return false;
    unsigned char next = (unsigned char)s[n];
    return !(mhdctx__ascii_alnum(next) || next == '_' || next == '$' || next >= 0x80);
}

/*
 * First keywords of the statements that get no session change:
 *  - BEGIN, START TRANSACTION: nothing to bound, and a change made before one would be
 *    put back inside the block it opens, where a ROLLBACK undoes the putting back and
 *    leaves the request's timeout on the connection;
 *  - SAVEPOINT: nothing to bound, and a savepoint made under the request's values keeps
 *    them: a ROLLBACK TO it sent without the adapter would bring them back;
 *  - SET, RESET, DISCARD: nothing to bound, and putting the old values back would write
 *    over theirs;
 *  - COPY: the caller carries its data after the call returns, past any point where a
 *    value could be put back (a query sent during the COPY would end it).
 */
static const char *const unchanged_first_keywords[] = {
    "begin", "start", "savepoint", "set", "reset", "discard", "copy",
};

/* Whether @sql starts, after any space and comments, with one of those keywords. */
static bool sent_without_change(const char *sql)
{
    const char *s = skip_space_and_comments(sql);
    size_t n = sizeof unchanged_first_keywords / sizeof unchanged_first_keywords[0];
    for (size_t i = 0; i < n; i++) {
        if (starts_with_keyword(s, unchanged_first_keywords[i]))
            return true;
    }
    return false;
}

/* ---- one statement, as the caller gave it ---------------------------------------------- */

struct statement {
    const char *sql;  /* the (tagged) text; NULL for a prepared statement */
    const char *name; /* the prepared statement; NULL for text */
    int n_params;
    const char *const *values;
    const int *lengths;
    const int *formats;
    int result_format;
};

/* The statement's result. For a statement libpq refuses to send (NULL: a binary parameter
 * without its length, too many parameters) a failed result is made at once, while the
 * connection's error message is still libpq's reason: the values put back after the
 * statement would replace it. */
static PGresult *exec_statement(PGconn *conn, const struct statement *s)
{
    PGresult *r;
    if (s->name)
        r = PQexecPrepared(conn, s->name, s->n_params, s->values, s->lengths, s->formats,
                           s->result_format);
    else
        r = PQexecParams(conn, s->sql, s->n_params, NULL, s->values, s->lengths, s->formats,
                         s->result_format);
    return r ? r : PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
}

/* Reads and drops the rest of a query's results, up to the NULL that ends them. */
static void discard_rest(PGconn *conn)
{
    for (PGresult *more; (more = PQgetResult(conn)) != NULL;)
        PQclear(more);
}

static bool is_copy(const PGresult *r)
{
    ExecStatusType status = PQresultStatus(r);
    return status == PGRES_COPY_IN || status == PGRES_COPY_OUT;
}

/* A COPY whose data would flow after the call: a prepared one, which the adapter cannot
 * recognise before it is sent (the header says to send COPY as text). With a change
 * made for it, the data cannot wait for the caller: a putting back sent in between
 * would end the COPY, and in a pipeline libpq answers PGRES_COPY_IN or _OUT to every
 * PQgetResult() until the data ends, for ever. The COPY @r is ended here (COPY FROM:
 * the server fails it, nothing copied; COPY TO: its rows read and dropped), with the
 * rest of its results, and the call fails, with a warning that says why. */
static PGresult *refuse_copy(PGconn *conn, PGresult *r)
{
    bool copy_in = PQresultStatus(r) == PGRES_COPY_IN;
    PQclear(r);
    mhdctx_log(MHDCTX_LOG_WARN, "sql prepared COPY refused: send COPY as text");
    if (copy_in) {
        PQputCopyEnd(conn, "a prepared COPY is refused by mhdctx: send COPY as text");
    } else {
        char *row;
        while (PQgetCopyData(conn, &row, 0) > 0)
            PQfreemem(row);
    }
    r = PQgetResult(conn);
    discard_rest(conn);
    if (PQresultStatus(r) == PGRES_FATAL_ERROR)
        return r;
    PQclear(r);
    return PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
}

/* What the request asks of the session for a statement; NULL: left alone. */
struct wanted {
    const char *timeout;
    const char *name;
    char timeout_text[24];
    char name_text[64];
};

static bool want_change(mhdctx_context *ctx, bool with_name, struct wanted *w)
{
    int64_t left = mhdctx_deadline_remaining_ms(ctx);
    w->timeout = w->name = NULL;
    if (ctx && left != INT64_MAX) {
        /* PostgreSQL refuses a statement_timeout over INT_MAX ms (24.8 days), and the
         * refusal would abort the application's block: a longer time left is bounded
         * there. */
        int64_t ms = left > INT_MAX ? INT_MAX : left > 0 ? left : 1;
        snprintf(w->timeout_text, sizeof w->timeout_text, "%" PRId64, ms);
        w->timeout = w->timeout_text;
    }
    if (ctx && with_name) {
        snprintf(w->name_text, sizeof w->name_text, "mhdctx %s", mhdctx_request_id(ctx));
        w->name = w->name_text;
    }
    return w->timeout || w->name;
}

/* ---- three round trips: change, statement, values put back ---------------------------- */

static void copy_value(char *to, size_t size, const PGresult *r, int column)
{
    snprintf(to, size, "%s", PQgetvalue(r, 0, column));
}

static void begin_statement(PGconn *conn, const struct wanted *w, struct session_change *change)
{
    bool local = PQtransactionStatus(conn) == PQTRANS_INTRANS;
    const char *params[3] = {w->timeout, w->name, local ? "true" : "false"};
    PGresult *r = PQexecParams(conn, SAVE_AND_SET_SQL, 3, NULL, params, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    *change = (struct session_change){
        .timeout = ok && w->timeout, .name = ok && w->name, .local = local};
    if (ok) {
        copy_value(change->old_timeout, sizeof change->old_timeout, r, 0);
        copy_value(change->old_name, sizeof change->old_name, r, 1);
    }
    PQclear(r);
}

static PGresult *put_back(PGconn *conn, const struct session_change *change)
{
    const char *params[3] = {change->timeout ? change->old_timeout : NULL,
                             change->name ? change->old_name : NULL,
                             change->local ? "true" : "false"};
    return PQexecParams(conn, SET_SESSION_SQL, 3, NULL, params, NULL, NULL, 0);
}

/* A warning naming the settings @change made, with the server's reason. */
static void log_not_put_back(const struct session_change *change, const PGresult *failure,
                             const char *consequence)
{
    const char *names = !change->name      ? "statement_timeout"
                        : !change->timeout ? "application_name"
                                           : "statement_timeout, application_name";
    const char *error = PQresultErrorMessage(failure);
    mhdctx_field fields[2] = {MHDCTX_F_STR("settings", names),
                              MHDCTX_F_BYTES("error", error, strcspn(error, "\n"))};
    mhdctx_log_fields(MHDCTX_LOG_WARN, fields, 2, "sql session settings not put back: %s",
                      consequence);
}

/* Outside a block a failed putting back leaves the request's values on the session of a
 * pooled connection: one more try, then a warning naming them. The try runs under the
 * same statement_timeout: it helps when the first was cancelled by a stall, not when
 * the server cannot answer within it at all. */
static void put_back_again(PGconn *conn, const struct session_change *change)
{
    PGresult *back = put_back(conn, change);
    if (PQresultStatus(back) != PGRES_TUPLES_OK)
        log_not_put_back(change, back, "the connection keeps the request's values");
    PQclear(back);
}

/* The statement's result @r, once the values it replaced are back. Putting them back
 * runs under the request's statement_timeout, which the server may enforce on it too.
 * Inside a block that failure aborts the block, and a later COMMIT would roll back: the
 * caller gets the failure in place of @r, so that it never takes its work for committed
 * (its message is the server's: libpq cannot write another into a result; the warning
 * logged says what it means). */
static PGresult *end_statement(PGconn *conn, const struct session_change *change, PGresult *r)
{
    if (!change->timeout && !change->name)
        return r;
    /* A change local to a block that the statement ended (COMMIT, ROLLBACK) is gone with
     * it; in a block the statement aborted it goes at the ROLLBACK, and the server would
     * refuse the putting back anyway. */
    if (change->local && PQtransactionStatus(conn) != PQTRANS_INTRANS)
        return r;
    PGresult *back = put_back(conn, change);
    if (PQresultStatus(back) == PGRES_TUPLES_OK) {
        PQclear(back);
        return r;
    }
    if (!change->local) {
        PQclear(back);
        put_back_again(conn, change);
        return r;
    }
    log_not_put_back(change, back, "the transaction is aborted");
    if (PQtransactionStatus(conn) != PQTRANS_INERROR) { /* the connection is gone */
        PQclear(back);
        return r;
    }
    PQclear(r);
    return back ? back : PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
}

/* Inside a transaction block (the change is local to the block, and must not outlive
 * the statement), and wherever one pipeline cannot serve. */
static PGresult *exec_in_three_trips(PGconn *conn, const struct statement *s,
                                     const struct wanted *w)
{
    struct session_change change;
    begin_statement(conn, w, &change);
    PGresult *r = exec_statement(conn, s);
    return end_statement(conn, &change, is_copy(r) ? refuse_copy(conn, r) : r);
}

/* ---- one round trip: a pipeline --------------------------------------------------------- */

#ifdef LIBPQ_HAS_PIPELINING
/* Outside a transaction block, the change (local: set_config(..., true)) and the
 * statement go in one pipeline. Its statements share one implicit transaction, which
 * ends at the pipeline's sync and takes the change with it: nothing to put back. */

/* SQLSTATE of a statement that cannot run inside a transaction block (VACUUM, CREATE
 * DATABASE, ...): in a pipeline it shares the change's implicit block. */
#define ACTIVE_SQL_TRANSACTION "25001"

static int send_statement(PGconn *conn, const struct statement *s)
{
    if (s->name)
        return PQsendQueryPrepared(conn, s->name, s->n_params, s->values, s->lengths,
                                   s->formats, s->result_format);
    return PQsendQueryParams(conn, s->sql, s->n_params, NULL, s->values, s->lengths, s->formats,
                             s->result_format);
}

/* A query's result in the pipeline, past the NULL that ends it. */
static PGresult *next_result(PGconn *conn)
{
    PGresult *r = PQgetResult(conn);
    if (is_copy(r))
        return refuse_copy(conn, r);
    if (r != NULL && PQresultStatus(r) != PGRES_PIPELINE_SYNC)
        discard_rest(conn);
    return r;
}

/* Reads what is left up to the sync, and leaves pipeline mode. An error there is the
 * implicit transaction's commit failing (a deferred constraint, a serialization
 * failure): the first one is kept in *@late_error (NULL if none), for the caller. */
static bool end_pipeline(PGconn *conn, bool synced, PGresult **late_error)
{
    *late_error = NULL;
    for (int nulls = 0; synced && nulls < 2;) {
        PGresult *r = PQgetResult(conn);
        nulls = r == NULL ? nulls + 1 : 0;
        bool sync = r != NULL && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        if (*late_error == NULL && PQresultStatus(r) == PGRES_FATAL_ERROR) {
            *late_error = r;
            r = NULL;
        }
        PQclear(r);
        if (sync)
            break;
    }
    return PQexitPipelineMode(conn) == 1;
}

static bool refused_by_block(const PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return state && strcmp(state, ACTIVE_SQL_TRANSACTION) == 0;
}

/* The statement's result in *@out, or false: then nothing of it ran, and the three
 * round trips are the way (no pipeline to be had, the change refused, or a statement
 * that must run outside a block). */
static bool exec_pipelined(PGconn *conn, const struct statement *s, const struct wanted *w,
                           PGresult **out)
{
    if (PQenterPipelineMode(conn) != 1)
        return false;
    const char *params[3] = {w->timeout, w->name, "true"};
    bool queued = PQsendQueryParams(conn, SET_SESSION_SQL, 3, NULL, params, NULL, NULL, 0);
    bool sent = queued && send_statement(conn, s);
    /* A statement libpq refuses to send (a binary parameter without its length) fails
     * the same way every time: its answer, with libpq's reason, made before the sync
     * can replace that reason. */
    PGresult *r = queued && !sent ? PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR) : NULL;
    /* A queued change needs the sync even without its statement: pipeline mode can only
     * be left with nothing queued, and the sync ends the change's implicit transaction,
     * and with it the change. */
    bool synced = queued && PQpipelineSync(conn);
    PGresult *set = synced ? next_result(conn) : NULL;
    if (synced && sent)
        r = next_result(conn);
    PGresult *late_error;
    bool exited = end_pipeline(conn, synced, &late_error);
    if (late_error && PQresultStatus(r) != PGRES_FATAL_ERROR) {
        /* The statement ran but its work was not committed: the caller must not take
         * it for done. */
        PQclear(r);
        r = late_error;
    } else {
        PQclear(late_error);
    }
    bool changed = PQresultStatus(set) == PGRES_TUPLES_OK;
    PQclear(set);
    if (exited && (!queued || (sent && (!changed || refused_by_block(r))))) {
        PQclear(r);
        return false;
    }
    if (!synced || !exited || r == NULL) { /* the connection failed under the pipeline */
        PQclear(r);
        r = PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
    }
    *out = r;
    return true;
}
#endif

/* ---- the statement with the request's change ------------------------------------------ */

static PGresult *exec_for_request(PGconn *conn, mhdctx_context *ctx, const struct statement *s,
                                  const char *caller_sql)
{
    struct wanted w;
    bool with_name = s->name != NULL;
    if ((caller_sql && sent_without_change(caller_sql)) || !want_change(ctx, with_name, &w))
        return exec_statement(conn, s);
#ifdef LIBPQ_HAS_PIPELINING
    PGresult *r = NULL;
    if (PQtransactionStatus(conn) == PQTRANS_IDLE && exec_pipelined(conn, s, &w, &r))
        return r;
#endif
    return exec_in_three_trips(conn, s, &w);
}

/* The deadline has passed: nothing is sent. */
static PGresult *refused(void)
{
    mhdctx_log(MHDCTX_LOG_WARN, "sql statement not sent: the request's deadline has passed");
    /* Made without the connection: with it, the result would carry the connection's last
     * error, an earlier statement's, as if this one had failed the same way. */
    return PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
}

static void log_statement(const char *sql, const PGresult *r, uint64_t start_ns)
{
    ExecStatusType status = PQresultStatus(r);
    bool failed = status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR;
    if (!atomic_load(&log_statements) && !failed)
        return;
    double ms = (double)((mhdctx__monotonic_ns() - start_ns) / 1000) / 1000.0;
    const char *error = failed ? PQresultErrorMessage(r) : NULL;
    size_t error_len = error ? strcspn(error, "\n") : 0;
    mhdctx_field fields[4] = {MHDCTX_F_STR("sql", sql), MHDCTX_F_DOUBLE("duration_ms", ms),
                              MHDCTX_F_STR("status", PQresStatus(status)),
                              MHDCTX_F_BYTES("error", error, error_len)};
    mhdctx_log_fields(failed ? MHDCTX_LOG_WARN : MHDCTX_LOG_INFO, fields, failed ? 4 : 3,
                      failed ? "sql statement failed" : "sql statement completed");
}

PGresult *mhdctx_pq_exec_params(PGconn *conn, const char *sql, int n_params,
                                const char *const *values, const int *lengths,
                                const int *formats, int result_format)
{
    if (conn == NULL || sql == NULL)
        return NULL;
    mhdctx_context *ctx = mhdctx_current();
    if (mhdctx_deadline_passed(ctx))
        return refused();
    char *tagged = mhdctx_sql_tag_ctx(ctx, sql);
    if (tagged == NULL)
        return NULL;
    uint64_t start = mhdctx__monotonic_ns();
    struct statement s = {tagged, NULL, n_params, values, lengths, formats, result_format};
    PGresult *r = exec_for_request(conn, ctx, &s, sql);
    log_statement(sql, r, start);
    free(tagged);
    return r;
}

PGresult *mhdctx_pq_exec_prepared(PGconn *conn, const char *name, int n_params,
                                  const char *const *values, const int *lengths,
                                  const int *formats, int result_format)
{
    if (conn == NULL || name == NULL)
        return NULL;
    mhdctx_context *ctx = mhdctx_current();
    if (mhdctx_deadline_passed(ctx))
        return refused();
    uint64_t start = mhdctx__monotonic_ns();
    struct statement s = {NULL, name, n_params, values, lengths, formats, result_format};
    PGresult *r = exec_for_request(conn, ctx, &s, NULL);
    log_statement(name, r, start);
    return r;
}
