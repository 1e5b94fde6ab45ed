/*
 * micro - the per-operation costs of the library, one JSON object per line:
 *   current      ns to read the current context (through the shared library)
 *   uuid         ns to generate a request id (UUID v4)
 *   log          lines/s formatting and writing one line with six context fields
 *                (request_id, trace_id, span_id, trace_flags, user_id, tenant_id) and
 *                one call field, to /dev/null and to a file, synchronous and batched
 *   sql_tag      ns to tag a statement (sqlcommenter), allocation-free variant
 *   allocations  heap allocations per request, counted by wrapping malloc (this
 *                program defines malloc & co., which the shared libraries then call
 *                too): bare MHD's, and what mhdctx adds - the library alone (bare's
 *                shared response), with the id header (a response per request, as
 *                bench/hello-mhdctx), and with the access line
 * usage: micro [--quick]     (--quick: a few ms per figure, for the CI smoke run)
 */
#define _GNU_SOURCE
#include "handlers.h"

#include <mhdctx.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- counting allocations ------------------------------------------------------------ */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static atomic_ulong allocations;

void *malloc(size_t n)
{
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    *out = __libc_memalign(align, n);
    return *out ? 0 : 12; /* ENOMEM */
}

void *aligned_alloc(size_t align, size_t n)
{
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_memalign(align, n);
}

void free(void *p)
{
    __libc_free(p);
}

/* ---- timing --------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool quick;

static long scaled(long n)
{
    return quick ? n / 200 + 1 : n;
}

static void bench_current(void *unused)
{
    (void)unused;
    long n = scaled(200000000);
    mhdctx_context *volatile sink;
    double t0 = now_s();
    /* Eight calls per turn: the loop's own counter and branch are not the figure. */
    for (long i = 0; i < n; i += 8) {
        sink = mhdctx_current();
        sink = mhdctx_current();
        sink = mhdctx_current();
        sink = mhdctx_current();
        sink = mhdctx_current();
        sink = mhdctx_current();
        sink = mhdctx_current();
        sink = mhdctx_current();
    }
    double t = now_s() - t0;
    (void)sink;
    printf("{\"bench\":\"current\",\"ns\":%.2f,\"calls\":%ld}\n", t * 1e9 / (double)n, n);
}

static void bench_uuid(void)
{
    long n = scaled(20000000);
    char id[MHDCTX_UUID_LEN + 1];
    volatile char sink = 0;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        mhdctx_uuid_v4(id);
        sink ^= id[3];
    }
    double t = now_s() - t0;
    (void)sink;
    printf("{\"bench\":\"uuid\",\"ns\":%.2f,\"ids\":%ld}\n", t * 1e9 / (double)n, n);
}

static void bench_sql_tag(void *arg)
{
    mhdctx_context *ctx = arg;
    long n = scaled(2000000);
    char out[1024];
    const char *sql = "SELECT id, name FROM users WHERE id = ?";
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        mhdctx_sql_tag_into(ctx, sql, out, sizeof out, NULL);
    double t = now_s() - t0;
    printf("{\"bench\":\"sql_tag\",\"ns\":%.1f,\"statements\":%ld}\n", t * 1e9 / (double)n, n);
}

/* One line as a handler writes it: six context fields and one of its own. */
static void log_lines(long n)
{
    for (long i = 0; i < n; i++)
        mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_INT("n", i)), "user loaded");
}

/* Each run writes as many lines as pino's run (bench/micro.py) and starts from an empty
 * file, as pino's does: appending to a file already grown by a gigabyte costs the
 * kernel more per write, and the figures would compare different work. */
static void bench_log(const char *dest, bool async)
{
    long n = scaled(1000000);
    if (strcmp(dest, "/dev/null") != 0 && truncate(dest, 0) != 0) {
        fprintf(stderr, "micro: cannot empty %s\n", dest);
        exit(1);
    }
    if (mhdctx_log_to_file(dest) != MHDCTX_OK) {
        fprintf(stderr, "micro: cannot open %s\n", dest);
        exit(1);
    }
    if (async && mhdctx_log_async_start(NULL) != MHDCTX_OK)
        exit(1);
    uint64_t dropped = mhdctx_log_dropped();
    double t0 = now_s();
    log_lines(n);
    mhdctx_log_flush(); /* the lines are in the file when the clock stops */
    double t = now_s() - t0;
    mhdctx_log_async_stop();
    printf("{\"bench\":\"log\",\"dest\":\"%s\",\"sink\":\"%s\",\"lines_per_s\":%.0f,"
           "\"ns_per_line\":%.1f,\"lines\":%ld,\"dropped\":%llu}\n",
           strcmp(dest, "/dev/null") == 0 ? "/dev/null" : "file", async ? "async" : "sync",
           (double)n / t, t * 1e9 / (double)n, n,
           (unsigned long long)(mhdctx_log_dropped() - dropped));
    mhdctx_log_to_stdout();
}

/* ---- allocations per request ------------------------------------------------------------ */

static bool one_request(int fd, const char *request)
{
    size_t len = strlen(request);
    if (write(fd, request, len) != (ssize_t)len)
        return false;
    char reply[1024];
    size_t got = 0;
    while (got < sizeof reply - 1) { /* a response ends with its 12-byte body */
        ssize_t n = read(fd, reply + got, sizeof reply - 1 - got);
        if (n <= 0)
            return false;
        got += (size_t)n;
        reply[got] = '\0';
        if (strstr(reply, "\r\n\r\nhello, world"))
            return true;
    }
    return false;
}

/* Allocations per request over one keep-alive connection, after a warm-up. With a
 * NULL middleware the handler runs bare. */
static double allocations_per_request(MHD_AccessHandlerCallback handler, bool through_mhdctx,
                                      const char *request)
{
    mhdctx_middleware *mw = through_mhdctx ? mhdctx_middleware_new(handler, NULL) : NULL;
    struct MHD_OptionItem none[] = {{MHD_OPTION_END, 0, NULL}};
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD, 0, NULL, NULL,
                         through_mhdctx ? &mhdctx_access_handler : handler, mw,
                         MHD_OPTION_ARRAY, mw ? mhdctx_mhd_options(mw) : none, MHD_OPTION_END);
    if (d == NULL)
        exit(1);
    struct sockaddr_in addr = {
        .sin_family = AF_INET,
        .sin_port = htons(MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port),
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        exit(1);
    long n = quick ? 200 : 20000;
    for (long i = 0; i < 100; i++)
        one_request(fd, request);
    unsigned long before = atomic_load(&allocations);
    for (long i = 0; i < n; i++) {
        if (!one_request(fd, request))
            exit(1);
    }
    unsigned long after = atomic_load(&allocations);
    close(fd);
    MHD_stop_daemon(d);
    mhdctx_middleware_free(mw);
    return (double)(after - before) / (double)n;
}

static void bench_allocations(void)
{
    const char *plain = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *with_id = "GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: "
                          "0b5cfa4e-6a67-4d8a-9d5e-8c6f7e2a1b3c\r\n\r\n";
    mhdctx_log_set_level(MHDCTX_LOG_OFF);
    double bare_plain = allocations_per_request(bench_bare, false, plain);
    double library = allocations_per_request(bench_bare, true, plain);
    double library_id = allocations_per_request(bench_bare, true, with_id);
    bench_echo_id = true;
    double echo = allocations_per_request(bench_mhdctx, true, plain);
    mhdctx_log_set_level(MHDCTX_LOG_INFO);
    mhdctx_log_to_file("/dev/null");
    mhdctx_log_async_start(NULL);
    double echo_line = allocations_per_request(bench_mhdctx, true, plain);
    bench_echo_id = false;
    mhdctx_log_shutdown();
    printf("{\"bench\":\"allocations\",\"bare\":%.2f,\"library\":%.2f,"
           "\"library_incoming_id\":%.2f,\"with_id_header\":%.2f,"
           "\"with_id_header_and_access_line\":%.2f}\n",
           bare_plain, library - bare_plain, library_id - bare_plain, echo - bare_plain,
           echo_line - bare_plain);
}

struct log_job {
    const char *dest;
    bool async;
};

static void run_log_job(void *arg)
{
    struct log_job *job = arg;
    bench_log(job->dest, job->async);
}

int main(int argc, char **argv)
{
    quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    if (!bench_handlers_init())
        return 1;
    /* A context as a request has it after the auth hook and a user key. */
    mhdctx_context *ctx = mhdctx_context_new();
    mhdctx_set_user_id(ctx, "42");
    mhdctx_set_string(ctx, "tenant_id", "acme");
    mhdctx_set_route(ctx, "/users/:id");
    /* The file's directory is TMPDIR's, as mktemp(1)'s: where the user keeps scratch
     * files (a tmpfs /tmp would measure memory, not the disk). */
    const char *dir = getenv("TMPDIR");
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/mhdctx-micro.XXXXXX", dir && *dir ? dir : "/tmp") >=
        (int)sizeof path)
        return 1;
    int tmp = mkstemp(path);
    if (tmp < 0) {
        perror(path);
        return 1;
    }
    close(tmp);

    mhdctx_run(ctx, bench_current, NULL);
    bench_uuid();
    mhdctx_run(ctx, bench_sql_tag, ctx);
    const char *dests[] = {"/dev/null", path};
    for (int d = 0; d < 2; d++) {
        for (int async = 0; async < 2; async++) {
            struct log_job job = {dests[d], async != 0};
            mhdctx_run(ctx, run_log_job, &job);
        }
    }
    unlink(path);
    mhdctx_context_unref(ctx);
    bench_allocations();
    bench_handlers_free();
    return 0;
}
