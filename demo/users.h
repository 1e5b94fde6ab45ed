/* users.h - the /users/{id} route: handler -> service -> repository. */
#ifndef DEMO_USERS_H
#define DEMO_USERS_H

#include <mhdctx.h>

/* Answers GET /users/{id}; @id is the raw path segment. */
enum MHD_Result users_get(struct MHD_Connection *connection, const char *id);

#endif
