/* work.h - routes whose work runs on the demo's worker pool: /async, /fanout, /test. */
#ifndef DEMO_WORK_H
#define DEMO_WORK_H

#include "db.h"
#include "workers.h"

#include <mhdctx.h>

struct demo_config {
    workers *pool;
    bool can_suspend;     /* false in thread-per-connection mode: the handler waits */
    const char *upstream; /* --upstream base URL, or NULL */
    bool trace_test;      /* --trace-context-test: POST /test exists */
    struct db *db;
};

/* Per-request state in the handler's req_cls slot; freed by the completion callback. */
struct demo_state {
    void (*free)(struct demo_state *state);
};

enum work_kind { WORK_ASYNC, WORK_FANOUT, WORK_TRACE_TEST, WORK_SLOW };

/* Handles every call of a request to a worker route (MHD's handler arguments). */
enum MHD_Result work_route(struct MHD_Connection *connection, const struct demo_config *cfg,
                           enum work_kind kind, const char *upload_data,
                           size_t *upload_data_size, void **req_cls);

#endif
