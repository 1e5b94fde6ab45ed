/*
 * pq_adapter.c - PostgreSQL through libpq: tagged statements, deadlines as
 * statement_timeout, application_name for prepared statements, a statement log.
 * Optional: compiled only when ./configure finds libpq.
 *
 * Cost, measured in bench/: a request with a deadline pays one round trip before the
 * statement (set_config) and one after (RESET), so that a pooled connection never keeps
 * another request's timeout or name.
 */
#include "internal.h"
#include "mhdctx_pq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_bool log_statements;

void mhdctx_pq_log_statements(bool enable)
{
    atomic_store(&log_statements, enable);
}

/* What begin_statement() changed on the session, for end_statement() to restore. */
struct session_change {
    bool timeout;
    bool name;
};

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
    const char *values[2] = {timeout ? timeout_text : app_name, app_name};
    const char *sql = timeout && name ? "SELECT set_config('statement_timeout', $1, false), "
                                        "set_config('application_name', $2, false)"
                      : timeout       ? "SELECT set_config('statement_timeout', $1, false)"
                                      : "SELECT set_config('application_name', $1, false)";
    PGresult *r = PQexecParams(conn, sql, timeout && name ? 2 : 1, NULL, values, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    *change = (struct session_change){ok && timeout, ok && name};
    return ok;
}

static void end_statement(PGconn *conn, const struct session_change *change)
{
    const char *sql = change->timeout && change->name
                          ? "RESET statement_timeout; RESET application_name"
                      : change->timeout ? "RESET statement_timeout"
                      : change->name    ? "RESET application_name"
                                        : NULL;
    if (sql)
        PQclear(PQexec(conn, sql));
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
    struct session_change change = {false, false};
    if (mhdctx_deadline_passed(ctx))
        return refused(conn);
    char *tagged = mhdctx_sql_tag_ctx(ctx, sql);
    if (tagged == NULL)
        return NULL;
    uint64_t start = mhdctx__monotonic_ns();
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
    struct session_change change = {false, false};
    if (mhdctx_deadline_passed(ctx))
        return refused(conn);
    uint64_t start = mhdctx__monotonic_ns();
    begin_statement(conn, ctx, true, &change);
    PGresult *r = PQexecPrepared(conn, name, n_params, values, lengths, formats, result_format);
    end_statement(conn, &change);
    log_statement(name, r, start);
    return r;
}
