/* middleware.h - the middleware object, shared by middleware.c, access_log.c and
 * response.c (internal). */
#ifndef MHDCTX_MIDDLEWARE_H
#define MHDCTX_MIDDLEWARE_H

#include "internal.h"

struct mhdctx__hook {
    mhdctx_hook_fn fn;
    void *cls;
    bool owned; /* cls was allocated by the library (built-in hooks) */
};

/* Settings of one path: its access-log level and its deadline budget. */
struct mhdctx__route {
    char *path;
    bool has_level;
    mhdctx_log_level level;
    bool has_deadline;
    uint64_t deadline_ms;
};

struct mhdctx_middleware {
    MHD_AccessHandlerCallback handler;
    void *handler_cls;
    MHD_RequestCompletedCallback completed;
    void *completed_cls;
    char id_header[MHDCTX__ID_HEADER_ROOM];
    size_t id_header_len;
    bool id_header_custom; /* not MHDCTX__DEFAULT_ID_HEADER: contexts copy it */
    size_t id_max_len;
    bool trust_incoming_ids;
    bool trust_incoming_deadline;
    uint64_t deadline_ms; /* default budget, 0 = none */
    bool log_query;
    atomic_bool started;  /* set by the first request: configuration is frozen */
    atomic_bool stopping; /* mhdctx_middleware_stopping(): unanswered ends are shutdowns */
    struct mhdctx__hook *hooks;
    size_t n_hooks;
    struct mhdctx__route *routes;
    size_t n_routes;
    mhdctx_access_level_fn level_fn;
    void *level_cls;
    struct MHD_OptionItem options[4];
};

void mhdctx__middleware_fill_options(mhdctx_middleware *mw);
/* MHDCTX_EINVAL for NULL, MHDCTX_ESTATE once the first request came, else MHDCTX_OK:
 * the check every configuration call starts with. */
mhdctx_error mhdctx__check_configurable(const mhdctx_middleware *mw);
/* The settings of @path, added when missing (configuration time); NULL on ENOMEM. */
struct mhdctx__route *mhdctx__route_settings(mhdctx_middleware *mw, const char *path);
const struct mhdctx__route *mhdctx__route_find(const mhdctx_middleware *mw, const char *path);
unsigned mhdctx__header_values(struct MHD_Connection *connection, const char *name,
                               const char **first, size_t *first_len);
/* Queues {"error","request_id"} with one extra header (name may be NULL). */
enum MHD_Result mhdctx__respond_error_with(struct MHD_Connection *connection,
                                           unsigned int status, const char *message,
                                           const char *header, const char *value);
void mhdctx__access_log(const mhdctx_middleware *mw, mhdctx_context *ctx,
                        struct MHD_Connection *connection, enum MHD_RequestTerminationCode toe);

#endif
