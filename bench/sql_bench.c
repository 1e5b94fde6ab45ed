/*
 * sql_bench - the cost of getting the request's tag to the database, measured side by
 * side in one run:
 *   SQLite:      tagged statement prepared per request   vs  prepared once (+ statement
 *                log through the trace hook)             vs  untagged, prepared per request
 *   PostgreSQL:  mhdctx_pq_exec_params (tagged; without and with a deadline) vs
 *                mhdctx_pq_exec_prepared (one text, application_name) vs plain
 *                PQexecPrepared
 *                (when MHDCTX_BENCH_PG names a server)
 * Each round runs every variant in turn, so drift hits all alike; the table shows the
 * median over rounds of µs per statement and the ratio to the plain variant.
 */
#include "config.h"

#include <mhdctx.h>
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

#define ROUNDS       7
#define MAX_VARIANTS 3

struct variant {
    const char *name;
    void (*run)(void *state, unsigned n);
    double us[ROUNDS];
};

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v)
{
    double sorted[ROUNDS];
    memcpy(sorted, v, sizeof sorted);
    qsort(sorted, ROUNDS, sizeof *sorted, compare_doubles);
    return sorted[ROUNDS / 2];
}

struct run_args {
    struct variant *variants;
    size_t n_variants;
    void *state;
    unsigned per_round;
};

static void run_rounds(void *arg)
{
    struct run_args *a = arg;
    for (int r = 0; r < ROUNDS; r++) {
        for (size_t v = 0; v < a->n_variants; v++) {
            double t0 = now_us();
            a->variants[v].run(a->state, a->per_round);
            a->variants[v].us[r] = (now_us() - t0) / a->per_round;
        }
    }
}

/* Runs the variants inside a request-like context, prints one table; the last variant
 * is the baseline. */
static void measure(const char *title, struct variant *variants, size_t n, void *state,
                    unsigned per_round)
{
    mhdctx_context *ctx = mhdctx_context_new();
    mhdctx_set_user_id(ctx, "42");
    mhdctx_set_route(ctx, "/users/{id}");
    struct run_args args = {variants, n, state, per_round};
    mhdctx_run(ctx, run_rounds, &args);
    mhdctx_context_unref(ctx);
    double base = median(variants[n - 1].us);
    printf("\n%s (%u statements per round, median of %d rounds)\n", title, per_round, ROUNDS);
    printf("  %-52s %12s %8s\n", "variant", "us/stmt", "ratio");
    for (size_t v = 0; v < n; v++)
        printf("  %-52s %12.2f %7.2fx\n", variants[v].name, median(variants[v].us),
               median(variants[v].us) / base);
}

#ifdef MHDCTX_HAVE_SQLITE
static const char lookup_sql[] = "SELECT name FROM users WHERE id = $1";

struct sqlite_state {
    sqlite3 *db;
    sqlite3_stmt *prepared;
};

static void step_once(sqlite3_stmt *stmt)
{
    sqlite3_bind_text(stmt, 1, "7", -1, SQLITE_STATIC);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
    }
}

static void sqlite_tagged(void *arg, unsigned n)
{
    struct sqlite_state *s = arg;
    for (unsigned i = 0; i < n; i++) {
        sqlite3_stmt *stmt;
        if (mhdctx_sqlite_prepare(s->db, lookup_sql, &stmt) == SQLITE_OK)
            step_once(stmt);
        sqlite3_finalize(stmt);
    }
}

static void sqlite_prepared_once(void *arg, unsigned n)
{
    struct sqlite_state *s = arg;
    for (unsigned i = 0; i < n; i++) {
        sqlite3_reset(s->prepared);
        step_once(s->prepared);
    }
}

static void sqlite_untagged(void *arg, unsigned n)
{
    struct sqlite_state *s = arg;
    for (unsigned i = 0; i < n; i++) {
        sqlite3_stmt *stmt;
        if (sqlite3_prepare_v2(s->db, lookup_sql, -1, &stmt, NULL) == SQLITE_OK)
            step_once(stmt);
        sqlite3_finalize(stmt);
    }
}

static void bench_sqlite(void)
{
    struct sqlite_state s = {NULL, NULL};
    sqlite3_open(":memory:", &s.db);
    sqlite3_exec(s.db,
                 "CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT);"
                 "INSERT INTO users VALUES ('1','Ada'),('7','Grace'),('42','Alan');",
                 NULL, NULL, NULL);
    sqlite3_prepare_v2(s.db, lookup_sql, -1, &s.prepared, NULL);
    struct variant plain[] = {
        {"tagged, prepared per request (mhdctx_sqlite_prepare)", sqlite_tagged, {0}},
        {"untagged, prepared per request", sqlite_untagged, {0}}};
    measure("SQLite, no statement log", plain, 2, &s, 20000);
    /* With the statement log on, every run writes a line: the prepared-once mode's way
     * of naming the request. */
    mhdctx_sqlite_attach(s.db, MHDCTX_SQLITE_LOG_STATEMENTS | MHDCTX_SQLITE_DEADLINE);
    struct variant logged[] = {
        {"tagged, prepared per request, statement log", sqlite_tagged, {0}},
        {"prepared once, statement log names the request", sqlite_prepared_once, {0}},
        {"untagged, prepared per request, statement log", sqlite_untagged, {0}}};
    measure("SQLite, statement log and deadline on", logged, 3, &s, 20000);
    sqlite3_finalize(s.prepared);
    sqlite3_close(s.db);
}
#endif

#ifdef MHDCTX_HAVE_LIBPQ
static void run_tagged(PGconn *conn, unsigned n)
{
    const char *values[1] = {"7"};
    for (unsigned i = 0; i < n; i++)
        PQclear(mhdctx_pq_exec_params(conn, "SELECT name FROM bench_users WHERE id = $1", 1,
                                      values, NULL, NULL, 0));
}

/* The request without a deadline: the tag alone. */
static void pq_tagged(void *arg, unsigned n)
{
    mhdctx_set_deadline_in(mhdctx_current(), 0);
    run_tagged(arg, n);
}

/* With one: statement_timeout too (one pipeline outside a transaction block). */
static void pq_tagged_deadline(void *arg, unsigned n)
{
    mhdctx_set_deadline_in(mhdctx_current(), 600000);
    run_tagged(arg, n);
    mhdctx_set_deadline_in(mhdctx_current(), 0);
}

static void pq_prepared(void *arg, unsigned n)
{
    const char *values[1] = {"7"};
    for (unsigned i = 0; i < n; i++)
        PQclear(mhdctx_pq_exec_prepared(arg, "lookup", 1, values, NULL, NULL, 0));
}

static void pq_plain(void *arg, unsigned n)
{
    const char *values[1] = {"7"};
    for (unsigned i = 0; i < n; i++)
        PQclear(PQexecPrepared(arg, "lookup", 1, values, NULL, NULL, 0));
}

static void bench_pq(const char *uri)
{
    PGconn *conn = PQconnectdb(uri);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "sql_bench: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return;
    }
    PQclear(PQexec(conn, "CREATE TEMP TABLE bench_users (id TEXT PRIMARY KEY, name TEXT);"
                         "INSERT INTO bench_users VALUES ('1','Ada'),('7','Grace')"));
    PQclear(PQprepare(conn, "lookup", "SELECT name FROM bench_users WHERE id = $1", 1, NULL));
    struct variant v[] = {
        {"tagged text, no deadline (mhdctx_pq_exec_params)", pq_tagged, {0}},
        {"tagged text + deadline as statement_timeout", pq_tagged_deadline, {0}},
        {"prepared once, application_name (mhdctx_pq_exec_prepared)", pq_prepared, {0}},
        {"plain PQexecPrepared (no tag, no deadline)", pq_plain, {0}}};
    measure("PostgreSQL over loopback", v, sizeof v / sizeof *v, conn, 1000);
    PQfinish(conn);
}
#endif

int main(void)
{
    mhdctx_log_to_file("/dev/null");
    printf("sql_bench: the cost of tagging statements (mhdctx %s)\n", mhdctx_version_string());
#ifdef MHDCTX_HAVE_SQLITE
    bench_sqlite();
#else
    printf("\nSQLite: not built\n");
#endif
#ifdef MHDCTX_HAVE_LIBPQ
    const char *uri = getenv("MHDCTX_BENCH_PG");
    if (uri)
        bench_pq(uri);
    else
        printf("\nPostgreSQL: set MHDCTX_BENCH_PG to a server URI (bench/run.sh starts one)\n");
#endif
    mhdctx_log_shutdown();
    return 0;
}
