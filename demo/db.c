/*
 * db.c - the demo's repository storage. Every query goes through the mhdctx adapters:
 * tagged with the request (sqlcommenter), logged, and bounded by the request's deadline.
 */
#include "config.h"

#include "db.h"

#include <mhdctx.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef MHDCTX_HAVE_SQLITE
#include <mhdctx_sqlite.h>
#endif
#ifdef MHDCTX_HAVE_LIBPQ
#include <mhdctx_pq.h>
#endif

enum db_kind { DB_BUILTIN, DB_SQLITE, DB_POSTGRESQL };

struct db {
    enum db_kind kind;
    pthread_mutex_t lock; /* one statement at a time on the connection */
#ifdef MHDCTX_HAVE_SQLITE
    sqlite3 *sqlite;
#endif
#ifdef MHDCTX_HAVE_LIBPQ
    PGconn *pg;
#endif
};

static const struct db_user seed_users[] = {
    {"1", "Ada Lovelace", "ada@example.org"},
    {"7", "Grace Hopper", "grace@example.org"},
    {"42", "Alan Turing", "alan@example.org"},
};
#define N_SEED (sizeof seed_users / sizeof *seed_users)

#if defined(MHDCTX_HAVE_SQLITE) || defined(MHDCTX_HAVE_LIBPQ)
static const char schema[] = "CREATE TABLE IF NOT EXISTS users ("
                             "id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL)";
static const char seed_sql[] = "INSERT INTO users (id, name, email) VALUES ($1, $2, $3) "
                               "ON CONFLICT (id) DO NOTHING";
static const char find_sql[] = "SELECT id, name, email FROM users WHERE id = $1";

static void copy_field(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}
#endif

/* ---- built-in table ----------------------------------------------------------------- */

static enum db_result builtin_find(const char *id, struct db_user *out)
{
    for (size_t i = 0; i < N_SEED; i++) {
        if (strcmp(seed_users[i].id, id) == 0) {
            *out = seed_users[i];
            return DB_OK;
        }
    }
    return DB_NOT_FOUND;
}

static enum db_result builtin_sleep(unsigned ms)
{
    for (unsigned slept = 0; slept < ms; slept += 10) {
        if (mhdctx_deadline_passed(mhdctx_current()))
            return DB_DEADLINE;
        struct timespec step = {0, 10 * 1000 * 1000};
        nanosleep(&step, NULL);
    }
    return DB_OK;
}

/* ---- SQLite ------------------------------------------------------------------------- */
#ifdef MHDCTX_HAVE_SQLITE

/* sleep_us(n): sleeps n microseconds and returns 1, so that a query over many rows
 * takes a known time; the progress handler checks the deadline between rows. */
static void sql_sleep_us(sqlite3_context *c, int argc, sqlite3_value **argv)
{
    (void)argc;
    long us = (long)sqlite3_value_int64(argv[0]);
    struct timespec t = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&t, NULL);
    sqlite3_result_int(c, 1);
}

static int sqlite_run(sqlite3 *db, const char *sql, const char *const *params, int n)
{
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    for (int i = 0; rc == SQLITE_OK && i < n; i++)
        rc = sqlite3_bind_text(stmt, i + 1, params[i], -1, SQLITE_TRANSIENT);
    while (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static bool sqlite_open(struct db *db, const char *path, char *err, size_t err_size)
{
    int rc =
        sqlite3_open_v2(path, &db->sqlite,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(db->sqlite, "sleep_us", 1, SQLITE_UTF8, NULL, sql_sleep_us,
                                     NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite_run(db->sqlite, schema, NULL, 0);
    for (size_t i = 0; rc == SQLITE_OK && i < N_SEED; i++) {
        const char *row[3] = {seed_users[i].id, seed_users[i].name, seed_users[i].email};
        rc = sqlite_run(db->sqlite, seed_sql, row, 3);
    }
    if (rc != SQLITE_OK) {
        snprintf(err, err_size, "sqlite %s: %s", path,
                 db->sqlite ? sqlite3_errmsg(db->sqlite) : sqlite3_errstr(rc));
        return false;
    }
    /* From here on, statements are logged and bounded by the request's deadline. */
    mhdctx_sqlite_attach(db->sqlite, MHDCTX_SQLITE_LOG_STATEMENTS | MHDCTX_SQLITE_DEADLINE);
    return true;
}

static enum db_result sqlite_status(sqlite3 *db, int rc)
{
    if (rc == SQLITE_INTERRUPT)
        return DB_DEADLINE;
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        mhdctx_log_fields(MHDCTX_LOG_ERROR,
                          MHDCTX_FIELDS(MHDCTX_F_STR("error", sqlite3_errmsg(db))),
                          "sqlite statement failed");
        return DB_ERROR;
    }
    return DB_OK;
}

static enum db_result sqlite_find(struct db *db, const char *id, struct db_user *out)
{
    sqlite3_stmt *stmt;
    int rc = mhdctx_sqlite_prepare(db->sqlite, find_sql, &stmt);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(stmt, 1, id, -1, SQLITE_TRANSIENT);
    enum db_result result = DB_NOT_FOUND;
    if (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        copy_field(out->id, sizeof out->id, (const char *)sqlite3_column_text(stmt, 0));
        copy_field(out->name, sizeof out->name, (const char *)sqlite3_column_text(stmt, 1));
        copy_field(out->email, sizeof out->email, (const char *)sqlite3_column_text(stmt, 2));
        result = DB_OK;
    } else if (rc != SQLITE_DONE) {
        result = sqlite_status(db->sqlite, rc);
    }
    sqlite3_finalize(stmt);
    return result;
}

static enum db_result sqlite_sleep(struct db *db, unsigned ms)
{
    static const char sql[] = "WITH RECURSIVE steps(n) AS (SELECT 1 UNION ALL "
                              "SELECT n + 1 FROM steps WHERE n < $1) "
                              "SELECT count(sleep_us(100)) FROM steps";
    sqlite3_stmt *stmt;
    int rc = mhdctx_sqlite_prepare(db->sqlite, sql, &stmt);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(stmt, 1, (sqlite3_int64)ms * 10); /* 100 us a row */
    if (rc == SQLITE_OK)
        rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return sqlite_status(db->sqlite, rc);
}
#endif

/* ---- PostgreSQL ----------------------------------------------------------------------- */
#ifdef MHDCTX_HAVE_LIBPQ

static bool pg_ok(PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

/* Server notices go to the JSON log, not as raw lines to stderr. */
static void pg_notice(void *cls, const char *message)
{
    (void)cls;
    mhdctx_log_fields(MHDCTX_LOG_INFO,
                      MHDCTX_FIELDS(MHDCTX_F_BYTES("notice", message, strcspn(message, "\n"))),
                      "postgresql notice");
}

static bool pg_open(struct db *db, const char *uri, char *err, size_t err_size)
{
    db->pg = PQconnectdb(uri);
    if (PQstatus(db->pg) != CONNECTION_OK) {
        snprintf(err, err_size, "postgresql: %s", PQerrorMessage(db->pg));
        return false;
    }
    PQsetNoticeProcessor(db->pg, pg_notice, NULL);
    /* "relation already exists" notices at start-up are expected: keep them out of the
     * log, whose first line announces the port. */
    PQclear(PQexec(db->pg, "SET client_min_messages = warning"));
    PGresult *r = PQexec(db->pg, schema);
    bool ok = pg_ok(r);
    PQclear(r);
    for (size_t i = 0; ok && i < N_SEED; i++) {
        const char *row[3] = {seed_users[i].id, seed_users[i].name, seed_users[i].email};
        r = PQexecParams(db->pg, seed_sql, 3, NULL, row, NULL, NULL, 0);
        ok = pg_ok(r);
        PQclear(r);
    }
    if (!ok)
        snprintf(err, err_size, "postgresql: %s", PQerrorMessage(db->pg));
    PQclear(PQexec(db->pg, "RESET client_min_messages"));
    mhdctx_pq_log_statements(true);
    return ok;
}

static enum db_result pg_status(PGresult *r)
{
    if (pg_ok(r))
        return DB_OK;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    /* 57014: canceled by statement_timeout; no state: not sent, deadline passed */
    if ((state && strcmp(state, "57014") == 0) || mhdctx_deadline_passed(mhdctx_current()))
        return DB_DEADLINE;
    return DB_ERROR;
}

static enum db_result pg_find(struct db *db, const char *id, struct db_user *out)
{
    const char *params[1] = {id};
    PGresult *r = mhdctx_pq_exec_params(db->pg, find_sql, 1, params, NULL, NULL, 0);
    enum db_result result = pg_status(r);
    if (result == DB_OK && PQntuples(r) == 0)
        result = DB_NOT_FOUND;
    if (result == DB_OK) {
        copy_field(out->id, sizeof out->id, PQgetvalue(r, 0, 0));
        copy_field(out->name, sizeof out->name, PQgetvalue(r, 0, 1));
        copy_field(out->email, sizeof out->email, PQgetvalue(r, 0, 2));
    }
    PQclear(r);
    return result;
}

static enum db_result pg_sleep(struct db *db, unsigned ms)
{
    char seconds[32];
    snprintf(seconds, sizeof seconds, "%u.%03u", ms / 1000, ms % 1000);
    const char *params[1] = {seconds};
    PGresult *r =
        mhdctx_pq_exec_params(db->pg, "SELECT pg_sleep($1::float8)", 1, params, NULL, NULL, 0);
    enum db_result result = pg_status(r);
    PQclear(r);
    return result;
}
#endif

/* ---- dispatch --------------------------------------------------------------------------- */

struct db *db_open(const char *spec, char *err, size_t err_size)
{
    struct db *db = calloc(1, sizeof *db);
    if (db == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&db->lock, NULL);
    bool ok = false;
    if (spec == NULL)
        spec = "sqlite::memory:";
    if (strncmp(spec, "sqlite:", 7) == 0) {
#ifdef MHDCTX_HAVE_SQLITE
        db->kind = DB_SQLITE;
        ok = sqlite_open(db, spec + 7, err, err_size);
#else
        db->kind = DB_BUILTIN; /* built without SQLite: the built-in table */
        ok = strcmp(spec, "sqlite::memory:") == 0;
        if (!ok)
            snprintf(err, err_size, "built without SQLite");
#endif
    } else if (strncmp(spec, "postgresql://", 13) == 0 ||
               strncmp(spec, "postgres://", 11) == 0) {
#ifdef MHDCTX_HAVE_LIBPQ
        db->kind = DB_POSTGRESQL;
        ok = pg_open(db, spec, err, err_size);
#else
        snprintf(err, err_size, "built without libpq");
#endif
    } else {
        snprintf(err, err_size,
                 "unknown --db (sqlite:PATH, sqlite::memory:, postgresql://...)");
    }
    if (!ok) {
        db_close(db);
        return NULL;
    }
    return db;
}

void db_close(struct db *db)
{
    if (db == NULL)
        return;
#ifdef MHDCTX_HAVE_SQLITE
    sqlite3_close(db->sqlite);
#endif
#ifdef MHDCTX_HAVE_LIBPQ
    if (db->pg)
        PQfinish(db->pg);
#endif
    pthread_mutex_destroy(&db->lock);
    free(db);
}

const char *db_kind(const struct db *db)
{
    static const char *const names[] = {"builtin", "sqlite", "postgresql"};
    return names[db->kind];
}

enum db_result db_find_user(struct db *db, const char *id, struct db_user *out)
{
    enum db_result result = DB_ERROR;
    pthread_mutex_lock(&db->lock);
    switch (db->kind) {
#ifdef MHDCTX_HAVE_SQLITE
    case DB_SQLITE:
        result = sqlite_find(db, id, out);
        break;
#endif
#ifdef MHDCTX_HAVE_LIBPQ
    case DB_POSTGRESQL:
        result = pg_find(db, id, out);
        break;
#endif
    default:
        result = builtin_find(id, out);
    }
    pthread_mutex_unlock(&db->lock);
    return result;
}

enum db_result db_sleep(struct db *db, unsigned ms)
{
    enum db_result result = DB_ERROR;
    pthread_mutex_lock(&db->lock);
    switch (db->kind) {
#ifdef MHDCTX_HAVE_SQLITE
    case DB_SQLITE:
        result = sqlite_sleep(db, ms);
        break;
#endif
#ifdef MHDCTX_HAVE_LIBPQ
    case DB_POSTGRESQL:
        result = pg_sleep(db, ms);
        break;
#endif
    default:
        result = builtin_sleep(ms);
    }
    pthread_mutex_unlock(&db->lock);
    return result;
}
