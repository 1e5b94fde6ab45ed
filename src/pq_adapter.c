/*
 * pq_adapter.c - PostgreSQL through libpq: tagged statements, deadlines as
 * statement_timeout, application_name for prepared statements, a statement log.
 * Optional: compiled only when ./configure finds libpq.
 *
 * Cost, measured in bench/: a request with a deadline pays one round trip before the
 * statement (set_config, which also reads the values it replaces) and one after (the
 * values put back), so that a pooled connection never keeps another request's timeout
 * or name, and keeps its own: RESET would go back to the server's default, not to what
 * the application had set.
 */
#include "internal.h"
#include "mhdctx_pq.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* $1 statement_timeout, $2 application_name (NULL: left alone), $3 whether local. */
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

/* ---- statements that open a transaction block -------------------------------------- */

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
        while (isspace((unsigned char)*s))
            s++;
        if (s[0] == '-' && s[1] == '-')
            s += strcspn(s, "\n");
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
    if (strncasecmp(s, word, n) != 0)
        return false;
    unsigned char next = (unsigned char)s[n];
    return !(isalnum(next) || next == '_' || next == '$' || next >= 0x80);
}

/*
 * Whether @sql opens a transaction block: BEGIN or START TRANSACTION, after any space
 * and comments. Such a statement gets no session change. It has nothing to bound, and a
 * change made before it would be put back inside the block it opens, where a ROLLBACK
 * undoes the putting back and leaves the request's timeout on the connection.
 */
static bool opens_transaction(const char *sql)
{
    const char *s = skip_space_and_comments(sql);
    return starts_with_keyword(s, "begin") || starts_with_keyword(s, "start");
}

/* ---- the session change around a statement --------------------------------------------- */

static void copy_value(char *to, size_t size, const PGresult *r, int column)
{
    snprintf(to, size, "%s", PQgetvalue(r, 0, column));
}

/* The deadline has passed: nothing is sent. */
static PGresult *refused(PGconn *conn)
{
    mhdctx_log(MHDCTX_LOG_WARN, "sql statement not sent: the request's deadline has passed");
    return PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
}

static bool begin_statement(PGconn *conn, mhdctx_context *ctx, bool with_name,
                            struct session_change *change)
{
    int64_t left = mhdctx_deadline_remaining_ms(ctx);
    bool timeout = ctx && left != INT64_MAX;
    bool name = ctx && with_name;
    if (!timeout && !name)
        return true;
    char timeout_text[24], app_name[64];
    snprintf(timeout_text, sizeof timeout_text, "%" PRId64, left > 0 ? left : 1);
    snprintf(app_name, sizeof app_name, "mhdctx %s", mhdctx_request_id(ctx));
    bool local = PQtransactionStatus(conn) == PQTRANS_INTRANS;
    const char *params[3] = {timeout ? timeout_text : NULL, name ? app_name : NULL,
                             local ? "true" : "false"};
    PGresult *r = PQexecParams(conn, SAVE_AND_SET_SQL, 3, NULL, params, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    *change =
        (struct session_change){.timeout = ok && timeout, .name = ok && name, .local = local};
    if (ok) {
        copy_value(change->old_timeout, sizeof change->old_timeout, r, 0);
        copy_value(change->old_name, sizeof change->old_name, r, 1);
    }
    PQclear(r);
    return ok;
}

static void end_statement(PGconn *conn, const struct session_change *change)
{
    if (!change->timeout && !change->name)
        return;
    /* A change local to a block that the statement ended (COMMIT, ROLLBACK) is gone with
     * it; in a block the statement aborted it goes at the ROLLBACK, and the server would
     * refuse the putting back anyway. */
    if (change->local && PQtransactionStatus(conn) != PQTRANS_INTRANS)
        return;
    const char *params[3] = {change->timeout ? change->old_timeout : NULL,
                             change->name ? change->old_name : NULL,
                             change->local ? "true" : "false"};
    PQclear(PQexecParams(conn, SET_SESSION_SQL, 3, NULL, params, NULL, NULL, 0));
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
    struct session_change change = {.timeout = false};
    if (mhdctx_deadline_passed(ctx))
        return refused(conn);
    char *tagged = mhdctx_sql_tag_ctx(ctx, sql);
    if (tagged == NULL)
        return NULL;
    uint64_t start = mhdctx__monotonic_ns();
    if (!opens_transaction(sql))
        begin_statement(conn, ctx, false, &change);
    PGresult *r =
        PQexecParams(conn, tagged, n_params, NULL, values, lengths, formats, result_format);
    end_statement(conn, &change);
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
    struct session_change change = {.timeout = false};
    if (mhdctx_deadline_passed(ctx))
        return refused(conn);
    uint64_t start = mhdctx__monotonic_ns();
    begin_statement(conn, ctx, true, &change);
    PGresult *r = PQexecPrepared(conn, name, n_params, values, lengths, formats, result_format);
    end_statement(conn, &change);
    log_statement(name, r, start);
    return r;
}
