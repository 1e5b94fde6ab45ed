/*
 * hello - the benchmark's servers: GET / answers "hello, world".
 *   hello-bare    plain MHD, one shared response (the baseline)
 *   hello-mhdctx  the same through the middleware:
 *                 --log none    context and request id, no log line
 *                 --log access  one access line per request into --log-file
 *                 --log app     the access line plus one line from the handler
 *                 --sink async  lines batched by the writer thread (default)
 *                 --sink sync   one write(2) per line
 *                 --log-buffer KiB  the writer's buffers (default: the library's)
 *                 --echo-id yes the request id header in a response per request
 *                               (default no: bare MHD's shared response)
 *   --spin-ns N   (hello-bare) about N ns of CPU work per request before answering
 *                 (a calibrated loop): bare MHD as costly as a server with more to do
 * usage: hello-{bare,mhdctx} --port N --mode epoll|pool|thread-per-connection
 *        [--log none|access|app] [--log-file PATH] [--sink async|sync]
 *        [--echo-id yes|no] [--spin-ns N] [--log-buffer KiB]
 * First stdout line: {"port": N}. SIGINT/SIGTERM stop it.
 */
#include "handlers.h"

#include <errno.h>
#include <mhdctx.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Set for hello-mhdctx when it is built (Makefile.am), not read from its name: a copy
 * of hello-mhdctx under another name must still go through the middleware. */
#ifndef HELLO_THROUGH_MHDCTX
#define HELLO_THROUGH_MHDCTX 0
#endif

static unsigned mode_flags(const char *mode, unsigned *pool)
{
    *pool = 0;
    if (strcmp(mode, "pool") == 0) {
        *pool = 2;
        return MHD_USE_EPOLL_INTERNAL_THREAD;
    }
    if (strcmp(mode, "thread-per-connection") == 0)
        return MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD;
    return strcmp(mode, "epoll") == 0 ? MHD_USE_EPOLL_INTERNAL_THREAD : 0;
}

static int usage(const char *program)
{
    fprintf(stderr,
            "usage: %s --port N --mode epoll|pool|thread-per-connection "
            "[--log none|access|app] [--log-file PATH] [--sink async|sync] "
            "[--echo-id yes|no] [--spin-ns N (hello-bare)] [--log-buffer KiB]\n",
            program);
    return 2;
}

/* A whole decimal number in [0, max], or -1: "--port 80x" must not start on port 80. */
static long parse_number(const char *text, long max)
{
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    return errno || end == text || *end || n < 0 || n > max ? -1 : n;
}

int main(int argc, char **argv)
{
    long port = 0, spin_ns = 0, buffer_kib = 0;
    const char *mode = "epoll", *log = "none", *log_file = "/dev/null", *sink = "async";
    const char *echo = "no";
    for (int i = 1; i < argc; i += 2) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (value == NULL)
            return usage(argv[0]); /* also --help, and an option without its value */
        if (strcmp(argv[i], "--port") == 0)
            port = parse_number(value, 65535);
        else if (strcmp(argv[i], "--mode") == 0)
            mode = value;
        else if (strcmp(argv[i], "--log") == 0)
            log = value;
        else if (strcmp(argv[i], "--log-file") == 0)
            log_file = value;
        else if (strcmp(argv[i], "--sink") == 0)
            sink = value;
        else if (strcmp(argv[i], "--echo-id") == 0)
            echo = value;
        else if (strcmp(argv[i], "--spin-ns") == 0)
            spin_ns = parse_number(value, 1000000000L);
        else if (strcmp(argv[i], "--log-buffer") == 0)
            buffer_kib = parse_number(value, 1L << 20);
        else
            return usage(argv[0]);
    }
    unsigned pool;
    unsigned flags = mode_flags(mode, &pool);
    bool mhdctx = HELLO_THROUGH_MHDCTX;
    if (flags == 0 || port < 0 ||
        (strcmp(log, "none") && strcmp(log, "access") && strcmp(log, "app")) ||
        (strcmp(sink, "async") && strcmp(sink, "sync")) ||
        (strcmp(echo, "yes") && strcmp(echo, "no")) || spin_ns < 0 || (spin_ns > 0 && mhdctx) ||
        buffer_kib < 0)
        return usage(argv[0]);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (!bench_handlers_init())
        return 1;
    bench_app_line = strcmp(log, "app") == 0;
    bench_echo_id = strcmp(echo, "yes") == 0;
    bench_set_spin_ns(spin_ns);
    mhdctx_log_async_options async = {.buffer_bytes = (size_t)buffer_kib * 1024};
    mhdctx_error rc = mhdctx_log_to_file(log_file);
    if (rc == MHDCTX_OK && strcmp(sink, "async") == 0)
        rc = mhdctx_log_async_start(&async); /* EINVAL: a buffer under 64 KiB */
    if (rc != MHDCTX_OK) {
        fprintf(stderr, "%s: cannot log to %s: %s\n", argv[0], log_file, mhdctx_strerror(rc));
        return 1;
    }
    mhdctx_log_set_level(strcmp(log, "none") == 0 ? MHDCTX_LOG_OFF : MHDCTX_LOG_INFO);
    mhdctx_middleware *mw = mhdctx ? mhdctx_middleware_new(bench_mhdctx, NULL) : NULL;
    struct MHD_OptionItem none[] = {{MHD_OPTION_END, 0, NULL}};
    struct MHD_OptionItem threads[] = {
        {pool ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)pool, NULL},
        {MHD_OPTION_END, 0, NULL}};
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, mhdctx ? &mhdctx_access_handler : &bench_bare, mw,
        MHD_OPTION_ARRAY, mw ? mhdctx_mhd_options(mw) : none, MHD_OPTION_ARRAY, threads,
        MHD_OPTION_END);
    if (d == NULL)
        return 1;
    printf("{\"port\":%u}\n", MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);
    fflush(stdout);
    int sig;
    sigwait(&stop, &sig);
    MHD_stop_daemon(d);
    mhdctx_middleware_free(mw);
    bench_handlers_free();
    mhdctx_log_shutdown();
    return 0;
}
