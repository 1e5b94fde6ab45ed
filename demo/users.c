/*
 * users.c - three layers, none of which receives a request or a context argument, and
 * each of which logs a line that carries the request id: the point of the library.
 */
#include "users.h"

/* The storage, opened at start-up: a process-wide resource, not request state. */
static struct db *storage;

void users_set_db(struct db *db)
{
    storage = db;
}

/* Repository: where the data lives (a tagged SQL query through the adapters). */
static enum db_result repository_find_user(const char *id, struct db_user *user)
{
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_STR("id", id)),
                      "repository: looking up user");
    return db_find_user(storage, id, user);
}

/* Service: business rules. */
static enum db_result service_get_user(const char *id, struct db_user *user)
{
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_STR("id", id)),
                      "service: fetching user");
    enum db_result result = repository_find_user(id, user);
    if (result == DB_NOT_FOUND)
        mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_STR("id", id)),
                          "service: no such user");
    return result;
}

/* Handler: HTTP in, HTTP out. */
enum MHD_Result users_get(struct MHD_Connection *connection, const char *id)
{
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_STR("id", id)),
                      "handler: get user");
    mhdctx_set_route(mhdctx_current(), "/users/{id}"); /* names the route in SQL tags */
    struct db_user user;
    switch (service_get_user(id, &user)) {
    case DB_OK:
        return mhdctx_respond_json_new(connection, MHD_HTTP_OK,
                                       json_pack("{s:s, s:s, s:s, s:s}", "id", user.id, "name",
                                                 user.name, "email", user.email, "request_id",
                                                 mhdctx_request_id(mhdctx_current())));
    case DB_NOT_FOUND:
        return mhdctx_respond_error(connection, MHD_HTTP_NOT_FOUND, "user_not_found");
    case DB_DEADLINE:
        return mhdctx_respond_deadline_exceeded(connection);
    case DB_ERROR:
    default:
        return mhdctx_respond_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                    "database_error");
    }
}
