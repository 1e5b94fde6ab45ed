/*
 * work.c - routes that hand their work to the worker pool.
 *
 * The handler binds the work to the request's context (mhdctx_task_bind) and suspends
 * the connection; a worker runs it with the context current, so its log lines carry the
 * request's id, user and trace; then it resumes the connection and the handler answers
 * at its next call. The access line comes once, at the end, with the full duration.
 * In thread-per-connection mode MHD cannot suspend: the handler's thread waits instead.
 */
#include "work.h"
#include "calls.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TEST_BODY (64 * 1024)

enum job_phase { JOB_COLLECTING, JOB_RUNNING, JOB_DONE };

struct job {
    struct demo_state base;
    enum work_kind kind;
    struct MHD_Connection *connection;
    const struct demo_config *cfg;
    mhdctx_context *ctx;     /* a reference: the stop shortens its deadline */
    struct job *prev, *next; /* in the in-flight list, guarded by inflight_lock */
    bool listed;
    pthread_mutex_t lock;
    pthread_cond_t finished;
    enum job_phase phase; /* guarded by lock */
    bool cancelled;       /* guarded by lock: the server stopped it, no answer */
    unsigned status;      /* the answer, set by the worker */
    json_t *answer;
    unsigned slow_ms;  /* GET /slow?ms=N */
    bool bad_argument; /* ?ms is not 0..60000 */
    char *body;        /* request body (POST /test) */
    size_t body_len;
    bool body_too_large;
};

/* Jobs submitted to the pool and not yet finished, or finished during a stop and
 * waiting for work_stop_finish() to resume their connection. */
static pthread_mutex_t inflight_lock = PTHREAD_MUTEX_INITIALIZER;
static struct job *inflight;
static bool stopping; /* guarded by inflight_lock */

static void inflight_remove(struct job *job) /* inflight_lock held */
{
    if (!job->listed)
        return;
    if (job->prev)
        job->prev->next = job->next;
    else
        inflight = job->next;
    if (job->next)
        job->next->prev = job->prev;
    job->prev = job->next = NULL;
    job->listed = false;
}

static void job_free(struct demo_state *state)
{
    struct job *job = (struct job *)state;
    pthread_mutex_lock(&inflight_lock);
    inflight_remove(job);
    pthread_mutex_unlock(&inflight_lock);
    mhdctx_context_unref(job->ctx);
    json_decref(job->answer);
    free(job->body);
    pthread_cond_destroy(&job->finished);
    pthread_mutex_destroy(&job->lock);
    free(job);
}

static struct job *job_new(struct MHD_Connection *connection, const struct demo_config *cfg,
                           enum work_kind kind)
{
    struct job *job = calloc(1, sizeof *job);
    if (job == NULL)
        return NULL;
    job->base.free = job_free;
    job->kind = kind;
    job->connection = connection;
    job->cfg = cfg;
    job->ctx = mhdctx_context_ref(mhdctx_current());
    pthread_mutex_init(&job->lock, NULL);
    pthread_cond_init(&job->finished, NULL);
    return job;
}

/* ---- the work, on a worker thread with the request's context current ------------------ */

static json_t *context_summary(void)
{
    mhdctx_context *ctx = mhdctx_current();
    const char *user = mhdctx_user_id(ctx);
    return json_pack("{s:s, s:o, s:s}", "request_id", mhdctx_request_id(ctx), "user_id",
                     user ? json_string(user) : json_null(), "trace_id", mhdctx_trace_id(ctx));
}

static void do_async(struct job *job)
{
    mhdctx_log(MHDCTX_LOG_INFO, "async: work started on a worker thread");
    struct timespec pause = {0, 10 * 1000 * 1000};
    nanosleep(&pause, NULL); /* stands for real work: a computation, a slow service */
    mhdctx_log(MHDCTX_LOG_INFO, "async: work finished");
    job->status = MHD_HTTP_OK;
    job->answer = context_summary();
}

static void do_fanout(struct job *job)
{
    char url[2048];
    snprintf(url, sizeof url, "%s/users/1", job->cfg->upstream);
    unsigned status = 0;
    char *body = NULL;
    size_t len = 0;
    int rc = calls_get(url, &status, &body, &len);
    json_t *upstream = body ? json_loadb(body, len, 0, NULL) : NULL;
    free(body);
    json_t *answer = context_summary();
    json_object_set_new(answer, "upstream_status", json_integer(status));
    json_object_set_new(answer, "upstream", upstream ? upstream : json_null());
    job->status = rc == 0 ? MHD_HTTP_OK : MHD_HTTP_BAD_GATEWAY;
    job->answer = answer;
}

/* The W3C validation suite's service: for each {"url", "arguments"}, POST the arguments
 * to the url with the propagated trace context. Only loopback URLs are called. */
static void do_trace_test(struct job *job)
{
    json_t *calls = json_loadb(job->body ? job->body : "", job->body_len, 0, NULL);
    size_t i;
    json_t *call;
    job->status = json_is_array(calls) ? MHD_HTTP_OK : MHD_HTTP_BAD_REQUEST;
    json_array_foreach(calls, i, call)
    {
        const char *url = json_string_value(json_object_get(call, "url"));
        if (!calls_url_is_loopback(url)) {
            mhdctx_log_fields(MHDCTX_LOG_WARN, MHDCTX_FIELDS(MHDCTX_F_STR("url", url)),
                              "trace test: refusing a non-loopback url");
            continue;
        }
        char *args = json_dumps(json_object_get(call, "arguments"), JSON_COMPACT);
        unsigned status;
        if (args)
            calls_post_json(url, args, &status);
        free(args);
    }
    json_decref(calls);
    job->answer = json_object();
}

/* N ms of work in steps: first one sleeping SQL statement of N/2 ms, which the
 * database (PostgreSQL's statement_timeout, SQLite's progress handler) stops at the
 * deadline, then 10 ms slices of our own that check the deadline between them. */
static void do_slow(struct job *job)
{
    unsigned in_sql = job->slow_ms / 2;
    enum db_result result = db_sleep(job->cfg->db, in_sql);
    for (unsigned done = in_sql; done < job->slow_ms && result == DB_OK; done += 10) {
        if (mhdctx_deadline_passed(mhdctx_current()))
            result = DB_DEADLINE;
        struct timespec step = {0, 10 * 1000 * 1000};
        nanosleep(&step, NULL);
    }
    mhdctx_log_fields(MHDCTX_LOG_INFO,
                      MHDCTX_FIELDS(MHDCTX_F_UINT("ms", job->slow_ms),
                                    MHDCTX_F_BOOL("deadline_exceeded", result == DB_DEADLINE)),
                      "slow: work ended");
    job->status = result == DB_OK         ? MHD_HTTP_OK
                  : result == DB_DEADLINE ? MHD_HTTP_GATEWAY_TIMEOUT
                                          : MHD_HTTP_INTERNAL_SERVER_ERROR;
    job->answer = json_pack("{s:i}", "slept_ms", (int)job->slow_ms);
}

static void run_job(void *arg)
{
    struct job *job = arg;
    if (job->kind == WORK_ASYNC)
        do_async(job);
    else if (job->kind == WORK_FANOUT)
        do_fanout(job);
    else if (job->kind == WORK_SLOW)
        do_slow(job);
    else
        do_trace_test(job);
    /* Read what we need first: once DONE is signalled, a waiting handler (thread-per-
     * connection mode) answers and the request may complete and free the job. */
    bool resume = job->cfg->can_suspend;
    struct MHD_Connection *connection = job->connection;
    pthread_mutex_lock(&inflight_lock);
    bool cancelled = stopping;
    if (cancelled && resume)
        resume = false; /* stays listed: work_stop_finish() resumes it */
    else
        inflight_remove(job);
    pthread_mutex_unlock(&inflight_lock);
    if (cancelled)
        mhdctx_log(MHDCTX_LOG_INFO, "work cancelled: the server is stopping");
    pthread_mutex_lock(&job->lock);
    job->phase = JOB_DONE;
    job->cancelled = cancelled;
    pthread_cond_signal(&job->finished);
    pthread_mutex_unlock(&job->lock);
    if (resume) /* a suspended connection cannot complete: the job lives until here */
        MHD_resume_connection(connection);
}

void work_stop_begin(void)
{
    pthread_mutex_lock(&inflight_lock);
    stopping = true;
    for (struct job *job = inflight; job; job = job->next)
        mhdctx_set_deadline_in(job->ctx, 1);
    pthread_mutex_unlock(&inflight_lock);
}

void work_stop_finish(void)
{
    /* Every worker has finished (workers_stop): what is listed is suspended. Unlisted
     * first, and resumed outside the lock: a resumed connection may complete at once,
     * and its completion frees the job (job_free takes the lock). */
    for (;;) {
        pthread_mutex_lock(&inflight_lock);
        struct job *job = inflight;
        struct MHD_Connection *connection = job ? job->connection : NULL;
        if (job)
            inflight_remove(job);
        pthread_mutex_unlock(&inflight_lock);
        if (connection == NULL)
            return;
        MHD_resume_connection(connection);
    }
}

/* A request whose work the stop cancelled gets no answer: MHD_stop_daemon() closes it.
 * Until then MHD calls the handler again and again (a request without a response);
 * in thread-per-connection mode that is this connection's own thread: let it breathe. */
static enum MHD_Result wait_for_stop(const struct job *job)
{
    if (!job->cfg->can_suspend) {
        struct timespec pause = {0, 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return MHD_YES;
}

/* ---- the handler side ------------------------------------------------------------------ */

static enum MHD_Result answer(struct job *job)
{
    if (job->status == MHD_HTTP_GATEWAY_TIMEOUT)
        return mhdctx_respond_deadline_exceeded(job->connection);
    json_t *body = job->answer ? json_incref(job->answer) : json_object();
    if (job->status != MHD_HTTP_OK)
        json_object_set_new(
            body, "error",
            json_string(job->status == MHD_HTTP_SERVICE_UNAVAILABLE ? "service_unavailable"
                        : job->status == MHD_HTTP_BAD_REQUEST       ? "bad_request"
                                                                    : "upstream_failed"));
    json_object_set_new(body, "request_id", json_string(mhdctx_request_id(mhdctx_current())));
    return mhdctx_respond_json_new(job->connection, job->status, body);
}

static void inflight_add(struct job *job) /* inflight_lock held */
{
    job->next = inflight;
    if (inflight)
        inflight->prev = job;
    inflight = job;
    job->listed = true;
}

static enum MHD_Result start(struct job *job)
{
    mhdctx_task *task = mhdctx_task_bind(NULL, run_job, job);
    job->phase = JOB_RUNNING;
    if (job->cfg->can_suspend) /* before a worker can resume it */
        MHD_suspend_connection(job->connection);
    /* Checked, submitted and listed under one lock: a stop (work_stop_begin, then
     * workers_stop, which frees the pool) either comes after and finds the job listed,
     * or came before and the job is refused. Submitting after the lock let a stop free
     * the pool in between. */
    pthread_mutex_lock(&inflight_lock);
    bool refused = task == NULL || stopping;
    if (refused)
        mhdctx_task_cancel(task);                  /* NULL is ignored */
    else if (workers_submit(job->cfg->pool, task)) /* which cancels a task it refuses */
        inflight_add(job); /* a worker done first waits for the lock to unlist it */
    else
        refused = true;
    pthread_mutex_unlock(&inflight_lock);
    if (refused) {
        if (job->cfg->can_suspend)
            MHD_resume_connection(job->connection);
        job->phase = JOB_DONE;
        job->status = MHD_HTTP_SERVICE_UNAVAILABLE;
        return job->cfg->can_suspend ? MHD_YES : answer(job);
    }
    if (job->cfg->can_suspend)
        return MHD_YES; /* answered at the call after the worker resumes us */
    pthread_mutex_lock(&job->lock);
    while (job->phase != JOB_DONE)
        pthread_cond_wait(&job->finished, &job->lock);
    bool cancelled = job->cancelled;
    pthread_mutex_unlock(&job->lock);
    return cancelled ? wait_for_stop(job) : answer(job);
}

static bool collect_body(struct job *job, const char *data, size_t len)
{
    if (job->body_too_large || job->body_len + len > MAX_TEST_BODY) {
        job->body_too_large = true;
        return true;
    }
    char *grown = realloc(job->body, job->body_len + len + 1);
    if (grown == NULL)
        return false;
    memcpy(grown + job->body_len, data, len);
    job->body = grown;
    job->body_len += len;
    grown[job->body_len] = '\0';
    return true;
}

/* ?ms=N, 0..60000 decimal digits (default 1000). */
static bool parse_slow_ms(struct MHD_Connection *connection, unsigned *ms)
{
    const char *text = MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND, "ms");
    if (text == NULL) {
        *ms = 1000;
        return true;
    }
    unsigned long n = 0;
    size_t len = strlen(text);
    if (len == 0 || len > 5 || strspn(text, "0123456789") != len)
        return false;
    n = strtoul(text, NULL, 10);
    *ms = (unsigned)n;
    return n <= 60000;
}

enum MHD_Result work_route(struct MHD_Connection *connection, const struct demo_config *cfg,
                           enum work_kind kind, const char *upload_data,
                           size_t *upload_data_size, void **req_cls)
{
    struct job *job = *req_cls;
    if (job == NULL) { /* first call: headers only */
        job = job_new(connection, cfg, kind);
        *req_cls = job;
        if (job && kind == WORK_SLOW)
            job->bad_argument = !parse_slow_ms(connection, &job->slow_ms);
        return job ? MHD_YES : MHD_NO;
    }
    if (*upload_data_size) {
        bool ok = collect_body(job, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return ok ? MHD_YES : MHD_NO;
    }
    if (job->body_too_large)
        return mhdctx_respond_error(connection, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large");
    if (job->bad_argument)
        return mhdctx_respond_error(connection, MHD_HTTP_BAD_REQUEST, "ms_must_be_0_to_60000");
    pthread_mutex_lock(&job->lock);
    enum job_phase phase = job->phase;
    bool cancelled = job->cancelled;
    pthread_mutex_unlock(&job->lock);
    if (phase == JOB_COLLECTING)
        return start(job);
    if (cancelled)
        return wait_for_stop(job);
    return phase == JOB_DONE ? answer(job) : MHD_YES;
}
