/*
 * sqlite_adapter.c - SQLite: tagged statements, a statement log and deadlines.
 * Optional: compiled only when ./configure finds SQLite.
 */
#include "internal.h"
#include "mhdctx_sqlite.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* SQLITE_TRACE_PROFILE: called when a statement finishes, with its run time. */
static int on_trace(unsigned type, void *cls, void *stmt_arg, void *nanoseconds)
{
    (void)cls;
    if (type != SQLITE_TRACE_PROFILE || !mhdctx_log_enabled(MHDCTX_LOG_INFO))
        return 0;
    sqlite3_stmt *stmt = stmt_arg;
    const char *sql = sqlite3_sql(stmt);
    double ms = (double)(*(const sqlite3_int64 *)nanoseconds / 1000) / 1000.0;
    mhdctx_log_fields(
        MHDCTX_LOG_INFO,
        MHDCTX_FIELDS(MHDCTX_F_STR("sql", sql ? sql : ""), MHDCTX_F_DOUBLE("duration_ms", ms)),
        "sql statement completed");
    return 0;
}

/* Called every few thousand virtual-machine steps: non-zero interrupts the statement
 * (SQLITE_INTERRUPT), which is how a request past its deadline stops waiting. */
static int on_progress(void *cls)
{
    (void)cls;
    return mhdctx_deadline_passed(mhdctx_current());
}

/* The waits of SQLite's own busy timeout (sqliteDefaultBusyCallback), in ms: retry
 * after 1, 2, 5, ... ms, then every 100 ms. */
static const int busy_delays[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
enum { BUSY_STEPS = sizeof busy_delays / sizeof *busy_delays };

/* How long SQLite's busy timeout would have waited before retry @count: the table's
 * steps, then its last step again (64 bits: a timeout of INT_MAX, "wait for ever",
 * runs past 2^31 ms of steps). */
static int64_t busy_waited_ms(int count)
{
    int listed = count < BUSY_STEPS ? count : BUSY_STEPS;
    int64_t total = 0;
    for (int i = 0; i < listed; i++)
        total += busy_delays[i];
    return total + (int64_t)busy_delays[BUSY_STEPS - 1] * (count - listed);
}

/* The busy timeout the application set (@cls, in ms), waited out as SQLite waits it,
 * but never past the current request's deadline: SQLITE_BUSY (return 0) then. */
static int on_busy(void *cls, int count)
{
    int64_t timeout = (intptr_t)cls;
    int64_t delay = busy_delays[count < BUSY_STEPS ? count : BUSY_STEPS - 1];
    int64_t rest = timeout - busy_waited_ms(count);
    if (delay > rest)
        delay = rest;
    mhdctx_context *ctx = mhdctx_current();
    if (delay <= 0 || mhdctx_deadline_passed(ctx))
        return 0;
    int64_t left = mhdctx_deadline_remaining_ms(ctx); /* rounded up: ends at or past it */
    sqlite3_sleep((int)(left < delay ? left : delay));
    return 1;
}

/* The connection's busy timeout in ms (PRAGMA busy_timeout); 0 when none is set, when
 * the application installed a busy handler of its own, or when it cannot be read. */
static int busy_timeout_ms(sqlite3 *db)
{
    sqlite3_stmt *stmt = NULL;
    int ms = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA busy_timeout", -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        ms = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return ms > 0 ? ms : 0;
}

int mhdctx_sqlite_attach(sqlite3 *db, unsigned int flags)
{
    if (db == NULL)
        return SQLITE_MISUSE;
    bool deadline = flags & MHDCTX_SQLITE_DEADLINE;
    /* Read before the trace is set: the PRAGMA is not the application's statement. */
    sqlite3_trace_v2(db, 0, NULL, NULL);
    int timeout_ms = deadline ? busy_timeout_ms(db) : 0;
    int rc =
        sqlite3_trace_v2(db, flags & MHDCTX_SQLITE_LOG_STATEMENTS ? SQLITE_TRACE_PROFILE : 0,
                         flags & MHDCTX_SQLITE_LOG_STATEMENTS ? on_trace : NULL, NULL);
    sqlite3_progress_handler(db, 1000, deadline ? on_progress : NULL, NULL);
    if (timeout_ms > 0 && rc == SQLITE_OK)
        rc = sqlite3_busy_handler(db, on_busy, (void *)(intptr_t)timeout_ms);
    return rc;
}

int mhdctx_sqlite_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **stmt)
{
    if (stmt)
        *stmt = NULL; /* on every failure, as sqlite3_prepare_v2() leaves it */
    if (db == NULL || sql == NULL || stmt == NULL)
        return SQLITE_MISUSE;
    char *tagged = mhdctx_sql_tag(sql);
    if (tagged == NULL)
        return SQLITE_NOMEM;
    int rc = sqlite3_prepare_v2(db, tagged, -1, stmt, NULL);
    free(tagged);
    return rc;
}
