/*
 * mhdctx-demo - an MHD server with request context, auth and JSON logs.
 * Its first stdout line is a JSON log line with the bound "port"; SIGINT or SIGTERM
 * stop it cleanly.
 */
#include "config.h"

#include "calls.h"
#include "routes.h"
#include "users.h"
#include "work.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef MHDCTX_HAVE_CURL
#include <curl/curl.h>
#endif

struct options {
    unsigned port;
    const char *mode;
    unsigned threads;
    const char *tokens;
    const char *log_level;
    bool distrust_ids;
    unsigned timeout_s;
    unsigned workers;
    const char *upstream;
    bool trace_test;
    const char *db;
    unsigned deadline_ms;
    bool log_sync;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mhdctx-demo [options]\n"
            "  --port N            listen port, 0 = ephemeral (default 8080)\n"
            "  --mode MODE         epoll|poll|select|pool|thread-per-connection "
            "(default epoll)\n"
            "  --threads N         threads for --mode pool (default 2)\n"
            "  --tokens FILE       bearer tokens: {\"<token>\": {\"user_id\": \"42\", "
            "\"roles\": [\"admin\"]}}\n"
            "  --log-level LEVEL   debug|info|warn|error|off (default: MHDCTX_LOG_LEVEL or "
            "info)\n"
            "  --distrust-request-id  ignore incoming X-Request-Id (edge mode)\n"
            "  --timeout S         idle connection timeout in seconds (default 30)\n"
            "  --workers N         worker threads for /async, /fanout, /test (default 4)\n"
            "  --upstream URL      another service: GET /fanout calls URL/users/1\n"
            "  --trace-context-test  add POST /test for the W3C Trace Context suite\n"
            "  --db SPEC           sqlite::memory: (default), sqlite:PATH, postgresql://...\n"
            "  --deadline-ms N     budget of every request (default 30000; 0 = none)\n"
            "  --log-sync          write each log line at once (default: batched by a\n"
            "                      writer thread, at most 50 ms late)\n"
            "  --help              this text\n");
}

static bool parse_uint(const char *text, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || end == text || *end || v > max || text[0] == '-')
        return false;
    *out = (unsigned)v;
    return true;
}

/* 0: run, 1: --help, 2: bad usage. */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {{"port", required_argument, NULL, 'p'},
                                             {"mode", required_argument, NULL, 'm'},
                                             {"threads", required_argument, NULL, 't'},
                                             {"tokens", required_argument, NULL, 'k'},
                                             {"log-level", required_argument, NULL, 'l'},
                                             {"distrust-request-id", no_argument, NULL, 'd'},
                                             {"timeout", required_argument, NULL, 'T'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"workers", required_argument, NULL, 'w'},
                                             {"upstream", required_argument, NULL, 'u'},
                                             {"trace-context-test", no_argument, NULL, 'x'},
                                             {"db", required_argument, NULL, 'D'},
                                             {"deadline-ms", required_argument, NULL, 'L'},
                                             {"log-sync", no_argument, NULL, 'S'},
                                             {NULL, 0, NULL, 0}};
    int c;
    int index = 0;
    while ((c = getopt_long(argc, argv, "", longopts, &index)) != -1) {
        bool ok = true;
        switch (c) {
        case 'p':
            ok = parse_uint(optarg, 65535, &o->port);
            break;
        case 'm':
            o->mode = optarg;
            break;
        case 't':
            ok = parse_uint(optarg, 256, &o->threads) && o->threads > 0;
            break;
        case 'k':
            o->tokens = optarg;
            break;
        case 'l':
            o->log_level = optarg;
            break;
        case 'd':
            o->distrust_ids = true;
            break;
        case 'T':
            ok = parse_uint(optarg, 86400, &o->timeout_s);
            break;
        case 'w':
            ok = parse_uint(optarg, 64, &o->workers) && o->workers > 0;
            break;
        case 'u':
            ok = strncmp(optarg, "http://", 7) == 0 && strlen(optarg) < 1024;
            o->upstream = optarg;
            break;
        case 'x':
            o->trace_test = true;
            break;
        case 'D':
            o->db = optarg;
            break;
        case 'L':
            ok = parse_uint(optarg, 3600000, &o->deadline_ms);
            break;
        case 'S':
            o->log_sync = true;
            break;
        case 'h':
            return 1;
        default:
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "mhdctx-demo: invalid value for --%s: %s\n", longopts[index].name,
                    optarg);
            return 2;
        }
    }
    return optind < argc ? 2 : 0;
}

static bool mode_flags(const char *mode, unsigned *flags)
{
    static const struct {
        const char *name;
        unsigned flags;
    } modes[] = {
        {"epoll", MHD_USE_EPOLL_INTERNAL_THREAD},
        {"poll", MHD_USE_POLL_INTERNAL_THREAD},
        {"select", MHD_USE_INTERNAL_POLLING_THREAD},
        {"pool", MHD_USE_EPOLL_INTERNAL_THREAD},
        {"thread-per-connection",
         MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD},
    };
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        if (strcmp(mode, modes[i].name) == 0) {
            *flags = modes[i].flags | MHD_USE_ERROR_LOG;
            return true;
        }
    }
    return false;
}

/* Waits for a stop signal: main() blocked them before any thread was created, so
 * every thread inherited the mask and only this sigwait() takes them. */
static void wait_for_stop_signal(const sigset_t *stop)
{
    int sig = 0;
    while (sigwait(stop, &sig) != 0) {
    }
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_STR("signal", strsignal(sig))),
                      "stopping");
}

static int configure(mhdctx_middleware *mw, mhdctx_token_table *tokens, const struct options *o)
{
    if (o->tokens) {
        char err[256];
        if (mhdctx_token_table_load(tokens, o->tokens, err, sizeof err) != MHDCTX_OK) {
            mhdctx_log_fields(MHDCTX_LOG_ERROR, MHDCTX_FIELDS(MHDCTX_F_STR("error", err)),
                              "cannot load tokens");
            return -1;
        }
    }
    if (mhdctx_add_bearer_auth(mw, mhdctx_token_table_verify, tokens) != MHDCTX_OK ||
        mhdctx_on_completed(mw, demo_request_completed, NULL) != MHDCTX_OK ||
        mhdctx_access_log_route(mw, "/health", MHDCTX_LOG_OFF) != MHDCTX_OK ||
        mhdctx_set_trust_incoming_request_id(mw, !o->distrust_ids) != MHDCTX_OK ||
        mhdctx_set_deadline_ms(mw, o->deadline_ms) != MHDCTX_OK)
        return -1;
    return 0;
}

static int serve(mhdctx_middleware *mw, const struct options *o, unsigned flags,
                 workers *workers_pool, struct db *db, const sigset_t *stop)
{
    bool pool = strcmp(o->mode, "pool") == 0;
    struct MHD_OptionItem more[] = {
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)o->timeout_s, NULL},
        {pool ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)o->threads, NULL},
        {MHD_OPTION_END, 0, NULL}};
    struct MHD_Daemon *daemon = MHD_start_daemon(
        flags, (uint16_t)o->port, NULL, NULL, &mhdctx_access_handler, mw, MHD_OPTION_ARRAY,
        mhdctx_mhd_options(mw), MHD_OPTION_ARRAY, more, MHD_OPTION_END);
    if (daemon == NULL) {
        mhdctx_log_fields(MHDCTX_LOG_ERROR, MHDCTX_FIELDS(MHDCTX_F_UINT("port", o->port)),
                          "cannot start the server");
        workers_stop(workers_pool);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    /* The first line says where we listen whatever the threshold: scripts wait for it. */
    mhdctx_log_level threshold = mhdctx_log_get_level();
    mhdctx_log_set_level(MHDCTX_LOG_INFO);
    mhdctx_log_fields(MHDCTX_LOG_INFO,
                      MHDCTX_FIELDS(MHDCTX_F_UINT("port", info ? info->port : 0),
                                    MHDCTX_F_STR("mode", o->mode),
                                    MHDCTX_F_STR("db", db_kind(db)),
                                    MHDCTX_F_STR("version", mhdctx_version_string())),
                      "listening");
    mhdctx_log_set_level(threshold);
    mhdctx_log_flush(); /* scripts wait for that line */
    wait_for_stop_signal(stop);
    mhdctx_middleware_stopping(mw); /* what ends unanswered from here on is a shutdown */
    work_stop_begin();              /* work in flight ends at its next deadline check... */
    db_interrupt_sleeps(db);        /* ...or now, for a statement already sent */
    workers_stop(workers_pool);     /* ...queued work too, quickly now */
    work_stop_finish();             /* its suspended connections are resumed, unanswered */
    MHD_stop_daemon(daemon);        /* and closed: their access lines say "shutdown" */
    /* Lines the sink could not take (full disk, a reader gone, a stalled pipe). */
    mhdctx_log_fields(MHDCTX_LOG_INFO,
                      MHDCTX_FIELDS(MHDCTX_F_UINT("log_lines_dropped", mhdctx_log_dropped())),
                      "stopped");
    return 0;
}

int main(int argc, char **argv)
{
    struct options o = {.port = 8080,
                        .mode = "epoll",
                        .threads = 2,
                        .timeout_s = 30,
                        .workers = 4,
                        .deadline_ms = 30000};
    int parsed = parse_options(argc, argv, &o);
    unsigned flags = 0;
    if (parsed == 0 && !mode_flags(o.mode, &flags)) {
        fprintf(stderr, "mhdctx-demo: unknown --mode %s\n", o.mode);
        parsed = 2;
    }
    mhdctx_log_level level;
    if (parsed == 0 && o.log_level) {
        if (mhdctx_log_level_parse(o.log_level, &level) != MHDCTX_OK) {
            fprintf(stderr, "mhdctx-demo: unknown --log-level %s\n", o.log_level);
            parsed = 2;
        } else {
            mhdctx_log_set_level(level);
        }
    }
    if (parsed == 0 && (o.upstream || o.trace_test) && !calls_available()) {
        fprintf(stderr, "mhdctx-demo: built without libcurl: no --upstream, "
                        "no --trace-context-test\n");
        parsed = 2;
    }
    if (parsed != 0) {
        usage(parsed == 1 ? stdout : stderr);
        return parsed == 1 ? 0 : 2;
    }
    bool per_connection = strcmp(o.mode, "thread-per-connection") == 0;
    if (!per_connection) /* MHD cannot suspend in thread-per-connection mode */
        flags |= MHD_ALLOW_SUSPEND_RESUME;
    struct demo_config cfg = {
        .can_suspend = !per_connection, .upstream = o.upstream, .trace_test = o.trace_test};
    char upstream[1024];
    if (o.upstream) { /* without a trailing slash: routes are appended */
        snprintf(upstream, sizeof upstream, "%s", o.upstream);
        for (size_t n = strlen(upstream); n > 7 && upstream[n - 1] == '/'; n--)
            upstream[n - 1] = '\0';
        cfg.upstream = upstream;
    }
    signal(SIGPIPE, SIG_IGN); /* a client that hangs up must not kill the server */
    /* Before the first thread (the workers, MHD's, libcurl's resolver threads): a thread
     * that left them unblocked would take a SIGTERM with the default action, killing
     * the process instead of stopping it (seen under valgrind, possible at any time). */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
#ifdef MHDCTX_HAVE_CURL
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread: not thread-safe */
#endif
    /* Lines are batched by a writer thread: no system call per line on MHD's threads.
     * A reader that stalls makes lines drop (counted), never requests wait. */
    mhdctx_log_async_options batched = {.when_full = MHDCTX_LOG_FULL_DROP};
    if (!o.log_sync && mhdctx_log_async_start(&batched) != MHDCTX_OK) {
        fprintf(stderr, "mhdctx-demo: cannot start the log writer\n");
        return 1;
    }
    char err[512] = "";
    cfg.db = db_open(o.db, err, sizeof err);
    if (cfg.db == NULL) {
        mhdctx_log_fields(MHDCTX_LOG_ERROR, MHDCTX_FIELDS(MHDCTX_F_STR("error", err)),
                          "cannot open the database");
        mhdctx_log_shutdown(); /* writes the queued lines, this one too */
        return 1;
    }
    users_set_db(cfg.db);
    cfg.pool = workers_start(o.workers);
    mhdctx_token_table *tokens = mhdctx_token_table_new();
    mhdctx_middleware *mw = mhdctx_middleware_new(demo_handler, &cfg);
    int status = 1;
    if (cfg.pool && tokens && mw && configure(mw, tokens, &o) == 0)
        status = serve(mw, &o, flags, cfg.pool, cfg.db, &stop);
    else
        workers_stop(cfg.pool);
    mhdctx_middleware_free(mw);
    db_close(cfg.db);
    mhdctx_token_table_free(tokens);
    mhdctx_log_shutdown();
#ifdef MHDCTX_HAVE_CURL
    curl_global_cleanup();
#endif
    return status;
}
