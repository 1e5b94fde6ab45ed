/*
 * minimal.c - the README's five-line integration as a program, built against the
 * installed library with pkg-config (scripts/test.sh --full checks that it builds,
 * runs and answers with an X-Request-Id).
 *
 *   cc minimal.c $(pkg-config --cflags --libs mhdctx) -o minimal && ./minimal 8080
 */
#include <mhdctx.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

/* An ordinary MHD handler: it never receives the context, yet logs with it. */
static enum MHD_Result hello(void *cls, struct MHD_Connection *connection, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **req_cls)
{
    (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
    if (*req_cls == NULL) { /* MHD's idiom: headers first, answer at the next call */
        *req_cls = &hello;
        return MHD_YES;
    }
    *upload_data_size = 0;
    mhdctx_log(MHDCTX_LOG_INFO, "saying hello");
    return mhdctx_respond(connection, MHD_HTTP_OK, "text/plain", "hello, world\n", 13);
}

int main(int argc, char **argv)
{
    unsigned port = argc > 1 ? (unsigned)atoi(argv[1]) : 8080;
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    mhdctx_middleware *mw = mhdctx_middleware_new(&hello, NULL);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD, (uint16_t)port, NULL,
                                            NULL, &mhdctx_access_handler, mw, MHD_OPTION_ARRAY,
                                            mhdctx_mhd_options(mw), MHD_OPTION_END);
    if (d == NULL)
        return 1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_UINT("port", info->port)),
                      "listening");
    int sig;
    sigwait(&stop, &sig);
    MHD_stop_daemon(d);
    mhdctx_middleware_free(mw);
    return 0;
}
