/* sink.h - where formatted log lines go (internal). */
#ifndef MHDCTX_SINK_H
#define MHDCTX_SINK_H

#include "internal.h"

/* Writes one complete line (ending in '\n') to the active sink; never blocks forever
 * on a dead reader and never raises SIGPIPE. Failure is counted, not reported. */
void mhdctx__sink_write(mhdctx_log_level level, const char *line, size_t len);
void mhdctx__sink_count_drop(void);

#endif
