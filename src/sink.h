/* sink.h - where formatted log lines go (internal): sink.c writes them, log_writer.c
 * batches them for the asynchronous mode. */
#ifndef MHDCTX_SINK_H
#define MHDCTX_SINK_H

#include "internal.h"

/* Writes or queues one complete line (ending in '\n'); never blocks forever on a dead
 * reader and never raises SIGPIPE. Failure is counted, not reported. */
void mhdctx__sink_write(mhdctx_log_level level, const char *line, size_t len);
void mhdctx__sink_count_drop(void);
/* Writes @len bytes of whole lines to the active fd sink, as one batch that no other
 * line interleaves with; the lines that did not make it are counted. */
void mhdctx__sink_write_batch(const char *data, size_t len);
/* Whether the active sink is a file descriptor (not a callback). */
bool mhdctx__sink_is_fd(void);
/* In a child of fork(): the sink lock may have been held by a thread that is gone. */
void mhdctx__sink_after_fork_child(void);
/* Set while this thread runs the callback sink: a line it logs there is dropped (the
 * sink lock is held and the thread's line storage holds the line being delivered). */
extern _Thread_local bool mhdctx__in_log_callback __attribute__((tls_model("initial-exec")));

/* log_writer.c */
/* Registers (once) the fork handler that makes the logging locks anew in a child. */
void mhdctx__log_fork_safe(void);

enum mhdctx__queued {
    MHDCTX__QUEUED,    /* the writer thread will write it */
    MHDCTX__DROPPED,   /* buffer full under the drop policy, or the wait timed out */
    MHDCTX__NOT_QUEUED /* asynchronous mode is off, or the line is larger than a buffer */
};
enum mhdctx__queued mhdctx__writer_queue(const char *line, size_t len);
/* How many producers wait for room under the block policy (for tests). */
size_t mhdctx__writer_waiting(void);
/* Flushing is public: mhdctx_log_flush() (a no-op when the writer is off). */

#endif
