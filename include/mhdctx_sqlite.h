/*
 * mhdctx_sqlite.h - the SQLite adapter: statements tagged with the request, a statement
 * log through SQLite's trace hook, and the request's deadline enforced through its
 * progress handler. Built when ./configure finds SQLite (--without-sqlite to leave out).
 */
#ifndef MHDCTX_SQLITE_H
#define MHDCTX_SQLITE_H

#include <mhdctx.h>
#include <sqlite3.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Log one line per statement run ("sql statement completed": sql, duration_ms). */
#define MHDCTX_SQLITE_LOG_STATEMENTS 0x1u
/**
 * Interrupt a statement once the current request's deadline has passed (SQLITE_INTERRUPT).
 * Checked every 1000 virtual-machine steps: a statement shorter than that (a one-row
 * INSERT) runs to its end even past the deadline.
 * A wait for a lock ends at the deadline too (SQLITE_BUSY): the busy timeout set when
 * mhdctx_sqlite_attach() runs (sqlite3_busy_timeout(), PRAGMA busy_timeout) is replaced
 * by a busy handler that waits the same steps for the same time but no longer than the
 * current request's deadline. Set the timeout before attaching; a later
 * sqlite3_busy_timeout(), sqlite3_busy_handler() or PRAGMA busy_timeout = N replaces that
 * handler, deadline check included, and attaching again without this flag leaves it in
 * place. Once it is installed, PRAGMA busy_timeout reads 0 (SQLite's rule for any busy
 * handler): code that sets a timeout "when none is set" would remove the bound. A busy
 * handler of the application's own (no busy timeout), or a timeout that cannot be read
 * (an authorizer that denies PRAGMA), is left alone and is not bounded.
 */
#define MHDCTX_SQLITE_DEADLINE 0x2u

/**
 * Installs the hooks chosen in @p flags on @p db (replacing its trace and progress
 * callbacks, and with MHDCTX_SQLITE_DEADLINE its busy timeout: see above). Both read the
 * context current on the thread that runs the statement, so use a connection from one thread at
 * a time (SQLite's own rule without SQLITE_OPEN_FULLMUTEX). @return SQLITE_OK or SQLite's error
 * code.
 */
MHDCTX_EXPORT int mhdctx_sqlite_attach(sqlite3 *db, unsigned int flags);

/**
 * Prepares @p sql with the current request's sqlcommenter tag (mhdctx_sql_tag()).
 * Each request gets its own statement text: for a statement run on every request,
 * prepare it once untagged and rely on the statement log instead (see the README,
 * "prepared statements"). @return SQLite's result code; SQLITE_NOMEM when tagging fails.
 * *@p stmt is NULL after any failure, as with sqlite3_prepare_v2().
 */
MHDCTX_EXPORT int mhdctx_sqlite_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **stmt);

#ifdef __cplusplus
}
#endif
#endif /* MHDCTX_SQLITE_H */
