/*
 * sqlite_adapter.c - SQLite: tagged statements, a statement log and deadlines.
 * Optional: compiled only when ./configure finds SQLite.
 */
#include "internal.h"
#include "mhdctx_sqlite.h"

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

int mhdctx_sqlite_attach(sqlite3 *db, unsigned int flags)
{
    if (db == NULL)
        return SQLITE_MISUSE;
    int rc =
        sqlite3_trace_v2(db, flags & MHDCTX_SQLITE_LOG_STATEMENTS ? SQLITE_TRACE_PROFILE : 0,
                         flags & MHDCTX_SQLITE_LOG_STATEMENTS ? on_trace : NULL, NULL);
    sqlite3_progress_handler(db, 1000, flags & MHDCTX_SQLITE_DEADLINE ? on_progress : NULL,
                             NULL);
    return rc;
}

int mhdctx_sqlite_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **stmt)
{
    if (db == NULL || sql == NULL || stmt == NULL)
        return SQLITE_MISUSE;
    char *tagged = mhdctx_sql_tag(sql);
    if (tagged == NULL)
        return SQLITE_NOMEM;
    int rc = sqlite3_prepare_v2(db, tagged, -1, stmt, NULL);
    free(tagged);
    return rc;
}
