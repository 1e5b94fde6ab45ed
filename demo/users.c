/*
 * users.c - three layers, none of which receives a request or a context argument, and
 * each of which logs a line that carries the request id: the point of the library.
 */
#include "users.h"

#include <string.h>

struct user {
    const char *id;
    const char *name;
    const char *email;
};

static const struct user user_table[] = {
    {"1", "Ada Lovelace", "ada@example.org"},
    {"7", "Grace Hopper", "grace@example.org"},
    {"42", "Alan Turing", "alan@example.org"},
};

/* Repository: where the data lives. */
static const struct user *repository_find_user(const char *id)
{
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_STR("id", id)),
                      "repository: looking up user");
    for (size_t i = 0; i < sizeof user_table / sizeof *user_table; i++) {
        if (strcmp(user_table[i].id, id) == 0)
            return &user_table[i];
    }
    return NULL;
}

/* Service: business rules. */
static const struct user *service_get_user(const char *id)
{
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_STR("id", id)),
                      "service: fetching user");
    const struct user *user = repository_find_user(id);
    if (user == NULL)
        mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_STR("id", id)),
                          "service: no such user");
    return user;
}

/* Handler: HTTP in, HTTP out. */
enum MHD_Result users_get(struct MHD_Connection *connection, const char *id)
{
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_STR("id", id)),
                      "handler: get user");
    const struct user *user = service_get_user(id);
    if (user == NULL)
        return mhdctx_respond_error(connection, MHD_HTTP_NOT_FOUND, "user_not_found");
    return mhdctx_respond_json_new(
        connection, MHD_HTTP_OK,
        json_pack("{s:s, s:s, s:s, s:s}", "id", user->id, "name", user->name, "email",
                  user->email, "request_id", mhdctx_request_id(mhdctx_current())));
}
