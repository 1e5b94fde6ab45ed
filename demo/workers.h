/* workers.h - the demo's small worker pool: runs mhdctx tasks off MHD's threads. */
#ifndef DEMO_WORKERS_H
#define DEMO_WORKERS_H

#include <mhdctx.h>

typedef struct workers workers;

/* Starts @n threads. NULL on failure. */
workers *workers_start(unsigned n);
/* Queues a task (owned by the pool from now on). false when stopping or on ENOMEM:
 * the task is then cancelled. Safe from any thread. */
bool workers_submit(workers *pool, mhdctx_task *task);
/* Runs what is queued, then joins the threads and frees the pool. */
void workers_stop(workers *pool);

#endif
