/*
 * db.c - the demo's repository storage. Every query goes through the mhdctx adapters:
 * tagged with the request (sqlcommenter), logged, and bounded by the request's deadline.
 *
 * Two connections, each used by one thread at a time: one for the users table, queried
 * from MHD's thread, and one for /slow's long statements, run by the workers. With one
 * connection, a slow statement held every user lookup - and so MHD's only thread in the
 * epoll mode, every other connection with it - until it ended.
 */
#include "config.h"

#include "db.h"

#include <mhdctx.h>
#include <pthread.h>
#include <stdint.h>
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

struct conn {
    pthread_mutex_t lock; /* one statement at a time */
#ifdef MHDCTX_HAVE_SQLITE
    sqlite3 *sqlite;
#endif
#ifdef MHDCTX_HAVE_LIBPQ
    PGconn *pg;
    PGcancel *cancel; /* made at open: PQcancel() may then be called from any thread */
#endif
};

struct db {
    enum db_kind kind;
    struct conn users;  /* short lookups, on MHD's threads */
    struct conn sleeps; /* db_sleep, on the workers */
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

static int64_t monotonic_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* pause_until(end): sleeps 100 us and says whether CLOCK_MONOTONIC (in us) is still
 * before end, so that a query over rows until then takes the time asked (a row per
 * sleep would take longer: each sleep oversleeps); the progress handler checks the
 * deadline between rows. */
static void sql_pause_until(sqlite3_context *c, int argc, sqlite3_value **argv)
{
    (void)argc;
    nanosleep(&(struct timespec){0, 100 * 1000}, NULL);
    sqlite3_result_int(c, monotonic_us() < sqlite3_value_int64(argv[0]));
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

/* Opens @c on @path; @seed: creates and seeds the users table (the sleeps' connection
 * needs no table: on ":memory:" it is a database of its own). */
static bool sqlite_open(struct conn *c, const char *path, bool seed, char *err, size_t err_size)
{
    int rc =
        sqlite3_open_v2(path, &c->sqlite,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(c->sqlite, "pause_until", 1, SQLITE_UTF8, NULL,
                                     sql_pause_until, NULL, NULL);
    if (rc == SQLITE_OK && seed)
        rc = sqlite_run(c->sqlite, schema, NULL, 0);
    for (size_t i = 0; rc == SQLITE_OK && seed && i < N_SEED; i++) {
        const char *row[3] = {seed_users[i].id, seed_users[i].name, seed_users[i].email};
        rc = sqlite_run(c->sqlite, seed_sql, row, 3);
    }
    if (rc != SQLITE_OK) {
        snprintf(err, err_size, "sqlite %s: %s", path,
                 c->sqlite ? sqlite3_errmsg(c->sqlite) : sqlite3_errstr(rc));
        return false;
    }
    /* From here on, statements are logged and bounded by the request's deadline. */
    mhdctx_sqlite_attach(c->sqlite, MHDCTX_SQLITE_LOG_STATEMENTS | MHDCTX_SQLITE_DEADLINE);
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

static enum db_result sqlite_find(struct conn *c, const char *id, struct db_user *out)
{
    sqlite3_stmt *stmt;
    int rc = mhdctx_sqlite_prepare(c->sqlite, find_sql, &stmt);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(stmt, 1, id, -1, SQLITE_TRANSIENT);
    enum db_result result = DB_NOT_FOUND;
    if (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        copy_field(out->id, sizeof out->id, (const char *)sqlite3_column_text(stmt, 0));
        copy_field(out->name, sizeof out->name, (const char *)sqlite3_column_text(stmt, 1));
        copy_field(out->email, sizeof out->email, (const char *)sqlite3_column_text(stmt, 2));
        result = DB_OK;
    } else if (rc != SQLITE_DONE) {
        result = sqlite_status(c->sqlite, rc);
    }
    sqlite3_finalize(stmt);
    return result;
}

static enum db_result sqlite_sleep(struct conn *c, unsigned ms)
{
    static const char sql[] = "WITH RECURSIVE steps(n) AS (SELECT 1 UNION ALL "
                              "SELECT n + 1 FROM steps WHERE pause_until($1)) "
                              "SELECT count(*) FROM steps";
    sqlite3_stmt *stmt;
    int rc = mhdctx_sqlite_prepare(c->sqlite, sql, &stmt);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(stmt, 1, monotonic_us() + (sqlite3_int64)ms * 1000);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return sqlite_status(c->sqlite, rc);
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

/* Creates and seeds the users table. */
static bool pg_seed(PGconn *pg)
{
    /* "relation already exists" notices at start-up are expected: keep them out of the
     * log, whose first line announces the port. */
    PQclear(PQexec(pg, "SET client_min_messages = warning"));
    PGresult *r = PQexec(pg, schema);
    bool ok = pg_ok(r);
    PQclear(r);
    for (size_t i = 0; ok && i < N_SEED; i++) {
        const char *row[3] = {seed_users[i].id, seed_users[i].name, seed_users[i].email};
        r = PQexecParams(pg, seed_sql, 3, NULL, row, NULL, NULL, 0);
        ok = pg_ok(r);
        PQclear(r);
    }
    PQclear(PQexec(pg, "RESET client_min_messages"));
    return ok;
}

static bool pg_open(struct conn *c, const char *uri, bool seed, char *err, size_t err_size)
{
    c->pg = PQconnectdb(uri);
    bool ok = PQstatus(c->pg) == CONNECTION_OK;
    if (ok) {
        PQsetNoticeProcessor(c->pg, pg_notice, NULL);
        ok = !seed || pg_seed(c->pg);
    }
    if (ok)
        ok = (c->cancel = PQgetCancel(c->pg)) != NULL;
    if (!ok)
        snprintf(err, err_size, "postgresql: %s", PQerrorMessage(c->pg));
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

static enum db_result pg_find(struct conn *c, const char *id, struct db_user *out)
{
    const char *params[1] = {id};
    PGresult *r = mhdctx_pq_exec_params(c->pg, find_sql, 1, params, NULL, NULL, 0);
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

static enum db_result pg_sleep(struct conn *c, unsigned ms)
{
    char seconds[32];
    snprintf(seconds, sizeof seconds, "%u.%03u", ms / 1000, ms % 1000);
    const char *params[1] = {seconds};
    PGresult *r =
        mhdctx_pq_exec_params(c->pg, "SELECT pg_sleep($1::float8)", 1, params, NULL, NULL, 0);
    enum db_result result = pg_status(r);
    PQclear(r);
    return result;
}
#endif

/* ---- dispatch --------------------------------------------------------------------------- */

/* Opens both connections of @db on @path (after "sqlite:") or @uri. */
static bool open_connections(struct db *db, const char *spec, char *err, size_t err_size)
{
    if (strncmp(spec, "sqlite:", 7) == 0) {
#ifdef MHDCTX_HAVE_SQLITE
        db->kind = DB_SQLITE;
        return sqlite_open(&db->users, spec + 7, true, err, err_size) &&
               sqlite_open(&db->sleeps, spec + 7, false, err, err_size);
#else
        db->kind = DB_BUILTIN; /* built without SQLite: the built-in table */
        if (strcmp(spec, "sqlite::memory:") == 0)
            return true;
        snprintf(err, err_size, "built without SQLite");
        return false;
#endif
    }
    if (strncmp(spec, "postgresql://", 13) == 0 || strncmp(spec, "postgres://", 11) == 0) {
#ifdef MHDCTX_HAVE_LIBPQ
        db->kind = DB_POSTGRESQL;
        return pg_open(&db->users, spec, true, err, err_size) &&
               pg_open(&db->sleeps, spec, false, err, err_size);
#else
        snprintf(err, err_size, "built without libpq");
        return false;
#endif
    }
    snprintf(err, err_size, "unknown --db (sqlite:PATH, sqlite::memory:, postgresql://...)");
    return false;
}

struct db *db_open(const char *spec, char *err, size_t err_size)
{
    struct db *db = calloc(1, sizeof *db);
    if (db == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&db->users.lock, NULL);
    pthread_mutex_init(&db->sleeps.lock, NULL);
    if (!open_connections(db, spec ? spec : "sqlite::memory:", err, err_size)) {
        db_close(db);
        return NULL;
    }
    return db;
}

static void close_connection(struct conn *c)
{
#ifdef MHDCTX_HAVE_SQLITE
    sqlite3_close(c->sqlite);
#endif
#ifdef MHDCTX_HAVE_LIBPQ
    if (c->cancel)
        PQfreeCancel(c->cancel);
    if (c->pg)
        PQfinish(c->pg);
#endif
    pthread_mutex_destroy(&c->lock);
}

void db_close(struct db *db)
{
    if (db == NULL)
        return;
    close_connection(&db->users);
    close_connection(&db->sleeps);
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
    struct conn *c = &db->users;
    pthread_mutex_lock(&c->lock);
    switch (db->kind) {
#ifdef MHDCTX_HAVE_SQLITE
    case DB_SQLITE:
        result = sqlite_find(c, id, out);
        break;
#endif
#ifdef MHDCTX_HAVE_LIBPQ
    case DB_POSTGRESQL:
        result = pg_find(c, id, out);
        break;
#endif
    default:
        result = builtin_find(id, out);
    }
    pthread_mutex_unlock(&c->lock);
    return result;
}

enum db_result db_sleep(struct db *db, unsigned ms)
{
    enum db_result result = DB_ERROR;
    struct conn *c = &db->sleeps;
    pthread_mutex_lock(&c->lock);
    switch (db->kind) {
#ifdef MHDCTX_HAVE_SQLITE
    case DB_SQLITE:
        result = sqlite_sleep(c, ms);
        break;
#endif
#ifdef MHDCTX_HAVE_LIBPQ
    case DB_POSTGRESQL:
        result = pg_sleep(c, ms);
        break;
#endif
    default:
        result = builtin_sleep(ms);
    }
    pthread_mutex_unlock(&c->lock);
    return result;
}

void db_interrupt_sleeps(struct db *db)
{
    switch (db->kind) {
#ifdef MHDCTX_HAVE_SQLITE
    case DB_SQLITE:
        sqlite3_interrupt(db->sleeps.sqlite); /* safe from any thread */
        break;
#endif
#ifdef MHDCTX_HAVE_LIBPQ
    case DB_POSTGRESQL: {
        char err[256];
        PQcancel(db->sleeps.cancel, err, sizeof err); /* nothing running: a no-op */
        break;
    }
#endif
    default:
        break; /* builtin_sleep checks the deadline every 10 ms */
    }
}
