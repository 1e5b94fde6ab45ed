/*
 * mhdctx_pq.h - the PostgreSQL (libpq) adapter: statements tagged with the request,
 * statement_timeout from the request's deadline, an optional statement log, and a
 * prepared-statement mode that keeps one statement text for every request.
 * Built when ./configure finds libpq (--without-libpq to leave out).
 */
#ifndef MHDCTX_PQ_H
#define MHDCTX_PQ_H

#include <libpq-fe.h>
#include <mhdctx.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Whether the adapter logs one line per statement ("sql statement completed": sql,
 * duration_ms, status), process-wide (default false). A statement that fails is logged
 * either way, at warn ("sql statement failed", with the server's error). In both lines
 * "sql" is the statement's text, or for mhdctx_pq_exec_prepared() the prepared
 * statement's name. Safe any time.
 */
MHDCTX_EXPORT void mhdctx_pq_log_statements(bool enable);

/**
 * PQexecParams() of @p sql with the current request's sqlcommenter tag appended, so the
 * server's statement log, pg_stat_activity and slow-query log name the request.
 * When the request has a deadline, the statement runs with statement_timeout set to the
 * time left (the server cancels it at the deadline), and the connection keeps its own
 * value: outside a transaction block the change is local to the statement's implicit
 * transaction, sent with the statement in one libpq pipeline (one round trip); inside a
 * block it is set before and put back after (two more round trips), local to the block.
 * An application's own SET sent through it stays (built against libpq older than 14,
 * without pipelines, the three round trips are used throughout and put the value from
 * before the statement back over it).
 * A whole transaction may go through it: BEGIN and START TRANSACTION (recognised after
 * any space and comments) are sent without a change (there is nothing to bound, and a
 * value put back inside the block they open would be undone by a ROLLBACK), the
 * block's statements get changes local to it, and after COMMIT or ROLLBACK nothing is
 * left to put back. A prepared BEGIN (mhdctx_pq_exec_prepared()) is not recognised:
 * send BEGIN with this call or PQexec().
 * Once the deadline has passed no statement is sent and an empty PGRES_FATAL_ERROR
 * result is returned (mhdctx_deadline_passed() then says why).
 * Owned result: PQclear(). NULL only on allocation failure (as libpq).
 * Thread rules: those of @p conn (one thread at a time).
 */
MHDCTX_EXPORT PGresult *mhdctx_pq_exec_params(PGconn *conn, const char *sql, int n_params,
                                              const char *const *values, const int *lengths,
                                              const int *formats, int result_format);

/**
 * PQexecPrepared() of a statement prepared once (untagged) with PQprepare(): the text
 * stays the same for every request, so plans are reused and pg_stat_statements keeps one
 * entry. The request's tag reaches the server as application_name (at most 63 bytes:
 * "mhdctx <request id>"), visible in pg_stat_activity and in the log through
 * log_line_prefix's %a, for the duration of the call; deadlines as above.
 */
MHDCTX_EXPORT PGresult *mhdctx_pq_exec_prepared(PGconn *conn, const char *name, int n_params,
                                                const char *const *values, const int *lengths,
                                                const int *formats, int result_format);

#ifdef __cplusplus
}
#endif
#endif /* MHDCTX_PQ_H */
