/* users.h - the /users/{id} route: handler -> service -> repository. */
#ifndef DEMO_USERS_H
#define DEMO_USERS_H

#include "db.h"

#include <mhdctx.h>

/* The storage the repository reads from (set once at start-up). */
void users_set_db(struct db *db);

/* Answers GET /users/{id}; @id is the raw path segment. */
enum MHD_Result users_get(struct MHD_Connection *connection, const char *id);

#endif
