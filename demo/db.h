/* db.h - the demo's data: SQLite (default, in memory, seeded), PostgreSQL, or a
 * built-in table when the demo was built without SQLite. Two connections: one for the
 * users table, one for db_sleep, each used by one thread at a time, so that a long
 * statement never holds up a lookup. Safe from any thread. */
#ifndef DEMO_DB_H
#define DEMO_DB_H

#include <stdbool.h>
#include <stddef.h>

struct db;

struct db_user {
    char id[32];
    char name[128];
    char email[128];
};

enum db_result { DB_OK, DB_NOT_FOUND, DB_DEADLINE, DB_ERROR };

/* @spec: NULL or "sqlite::memory:" (default), "sqlite:PATH", "postgresql://...".
 * Creates and seeds the users table when it is missing. NULL with @err filled. */
struct db *db_open(const char *spec, char *err, size_t err_size);
void db_close(struct db *db);
const char *db_kind(const struct db *db);
/* The user @id, through a tagged query for the current request. */
enum db_result db_find_user(struct db *db, const char *id, struct db_user *out);
/* A statement that takes @ms milliseconds (pg_sleep, or a slow SQLite query), stopped
 * by the current request's deadline: DB_DEADLINE. */
enum db_result db_sleep(struct db *db, unsigned ms);
/* Stops the db_sleep statement running now, from any thread (the server's stop: the
 * request's deadline does not reach a PostgreSQL statement already sent). */
void db_interrupt_sleeps(struct db *db);

#endif
