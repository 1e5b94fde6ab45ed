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
 * time left (the server cancels it at the deadline; at most 2147483647 ms, about 24.8
 * days, the largest value PostgreSQL takes), and the connection keeps its own
 * value: outside a transaction block the change is local to the statement's implicit
 * transaction, sent with the statement in one libpq pipeline (one round trip); inside a
 * block (and built against libpq older than 14, without pipelines) it is set before and
 * put back after (two more round trips), local to the block. Outside a block, an error
 * raised when the implicit transaction commits (a deferred constraint, a serialization
 * failure) is returned in place of the statement's result, as PQexecParams() would.
 * Statements recognised by their first keyword (after any space and comments) are sent
 * without a change:
 *  - BEGIN and START TRANSACTION: there is nothing to bound, and a value put back inside
 *    the block they open would be undone by a ROLLBACK. So a whole transaction may go
 *    through this call: the block's statements get changes local to it, and after
 *    COMMIT or ROLLBACK nothing is left to put back.
 *  - SAVEPOINT: nothing to bound, and a savepoint made under the request's values would
 *    bring them back at a ROLLBACK TO it (one sent with PQexec(), say).
 *  - SET, RESET and DISCARD: nothing to bound, and an application's own SET (SET LOCAL
 *    too) or DISCARD sent through it stays. (A set_config() of statement_timeout or
 *    application_name inside another statement is not recognised: inside a block the
 *    old value is put back over it.)
 *  - COPY: its data flows after the call returns (PQputCopyData(), PQgetCopyData()),
 *    where no value could be put back. A COPY is therefore not bounded by the deadline
 *    (nor is one from or to a server file or program).
 * A prepared statement (mhdctx_pq_exec_prepared()) is not recognised: send BEGIN,
 * SAVEPOINT, SET, RESET, DISCARD and COPY with this call or PQexec(). A prepared COPY
 * sent in a request fails (PGRES_FATAL_ERROR, a warning "sql prepared COPY refused"
 * logged): COPY FROM copies nothing (the server's error), COPY TO's rows are read and
 * dropped (any change its query makes stands, outside a block), and the connection is
 * ready for the next statement.
 * Putting the values back runs under the request's statement_timeout. If it fails
 * inside a block, the failure has aborted the block (a later COMMIT rolls back): the
 * call returns that failure (PGRES_FATAL_ERROR, the server's error, such as
 * "canceling statement due to statement timeout"; PQtransactionStatus() then says
 * PQTRANS_INERROR) in place of the statement's result, whatever the statement did, and
 * logs a warning ("sql session settings not put back"). Outside a block it tries once
 * more, and if that fails too, logs the same warning naming the settings the connection
 * keeps.
 * The change calls set_config() and current_setting() by their plain names: the
 * session's search_path resolves them as it resolves the application's own statements,
 * so keep schemas in which others can create functions out of it (PostgreSQL's secure
 * schema usage pattern; the default path searches pg_catalog first).
 * Once the deadline has passed no statement is sent and an empty PGRES_FATAL_ERROR
 * result is returned, without a message (mhdctx_deadline_passed() then says why).
 * Owned result: PQclear(). NULL only on allocation failure (or a NULL @p conn or
 * @p sql). A statement libpq refuses to send (a binary parameter without its length,
 * more than 65535 parameters) gives a PGRES_FATAL_ERROR result with libpq's message
 * (PQresultErrorMessage()); the connection stays usable.
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
