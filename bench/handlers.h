/* handlers.h - the hello handlers shared by the benchmark programs (hello.c, micro.c). */
#ifndef MHDCTX_BENCH_HANDLERS_H
#define MHDCTX_BENCH_HANDLERS_H

#include <mhdctx.h>
#include <stdbool.h>

/* Creates the shared "hello, world" response; false on allocation failure. */
bool bench_handlers_init(void);
void bench_handlers_free(void);

/* When true, bench_mhdctx logs one line per request ("saying hello"). */
extern bool bench_app_line;
/* When true, bench_mhdctx echoes the request id in a response of its own. */
extern bool bench_echo_id;
/* Has bench_bare do about @ns of CPU work per request before it answers (0: none),
 * calibrated on the calling thread: a bare server that costs about as much CPU per
 * request as mhdctx's app, the yardstick of what that much CPU alone does to latency. */
void bench_set_spin_ns(long ns);

/* Bare MHD: the one shared response, no header of ours. */
enum MHD_Result bench_bare(void *cls, struct MHD_Connection *connection, const char *url,
                           const char *method, const char *version, const char *upload_data,
                           size_t *upload_data_size, void **req_cls);

/* Behind the middleware: the shared response as bare MHD answers, or, with
 * bench_echo_id, the same body in a response per request, because it carries the
 * request id header (MHD 0.9 keeps headers on the response). */
enum MHD_Result bench_mhdctx(void *cls, struct MHD_Connection *connection, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **req_cls);

#endif
