/* routes.h - the demo's access handler and per-request state. */
#ifndef DEMO_ROUTES_H
#define DEMO_ROUTES_H

#include <mhdctx.h>

#define DEMO_MAX_BODY (1024 * 1024)

/* The wrapped MHD access handler (MHD's own signature). */
enum MHD_Result demo_handler(void *cls, struct MHD_Connection *connection, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **req_cls);

/* Frees the per-request state the handler kept in its req_cls slot. */
void demo_request_completed(void *cls, struct MHD_Connection *connection, void **req_cls,
                            enum MHD_RequestTerminationCode toe);

#endif
