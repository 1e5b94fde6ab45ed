/* handlers.c - the hello handlers of the benchmarks: MHD's two-call idiom, answering
 * "hello, world" at the second call. */
#include "handlers.h"

static const char body[] = "hello, world";
static struct MHD_Response *shared_response;
bool bench_app_line;
bool bench_echo_id;

bool bench_handlers_init(void)
{
    shared_response = MHD_create_response_from_buffer_with_free_callback_cls(
        sizeof body - 1, (void *)body, NULL, NULL);
    return shared_response != NULL;
}

void bench_handlers_free(void)
{
    if (shared_response)
        MHD_destroy_response(shared_response);
    shared_response = NULL;
}

/* The first call only marks the request (headers are in); true when it was the first. */
static bool first_call(void **req_cls)
{
    if (*req_cls != NULL)
        return false;
    *req_cls = &shared_response;
    return true;
}

enum MHD_Result bench_bare(void *cls, struct MHD_Connection *connection, const char *url,
                           const char *method, const char *version, const char *upload_data,
                           size_t *upload_data_size, void **req_cls)
{
    (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
    if (first_call(req_cls))
        return MHD_YES;
    *upload_data_size = 0;
    return MHD_queue_response(connection, MHD_HTTP_OK, shared_response);
}

enum MHD_Result bench_mhdctx(void *cls, struct MHD_Connection *connection, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **req_cls)
{
    (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
    if (first_call(req_cls))
        return MHD_YES;
    *upload_data_size = 0;
    if (bench_app_line)
        mhdctx_log(MHDCTX_LOG_INFO, "saying hello");
    if (!bench_echo_id)
        return MHD_queue_response(connection, MHD_HTTP_OK, shared_response);
    struct MHD_Response *response = MHD_create_response_from_buffer_with_free_callback_cls(
        sizeof body - 1, (void *)body, NULL, NULL);
    if (response == NULL ||
        mhdctx_response_add_request_id(response, mhdctx_current()) != MHDCTX_OK) {
        if (response)
            MHD_destroy_response(response);
        return MHD_NO;
    }
    enum MHD_Result result = MHD_queue_response(connection, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return result;
}
