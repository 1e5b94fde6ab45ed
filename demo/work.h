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

/* Stopping with work in flight, in this order (demo/main.c):
 *   work_stop_begin()   - the work of every request in flight gets a deadline of now, so
 *                         it ends at its next check (the SQLite progress handler, /slow's
 *                         steps); those requests are never answered; new work is refused.
 *   workers_stop()      - runs what is queued, quickly now.
 *   work_stop_finish()  - resumes the suspended connections of that work.
 *   MHD_stop_daemon()   - closes them: their access lines say outcome "shutdown".
 * Answering them instead would make MHD_stop_daemon() wait for nothing but would log
 * "completed" for requests the stop cut short. */
void work_stop_begin(void);
void work_stop_finish(void);

#endif
