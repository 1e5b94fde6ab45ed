/*
 * support.c - helpers shared by the Check unit suites (see support.h for the contract
 * of each: ownership, and which ones may run off the test's thread).
 */
#include "internal.h" /* first: _GNU_SOURCE (vasprintf); refs_of() reads ctx->refs */

#include "support.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>

/* ==== strings and time ================================================================ */

char *str_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    return s;
}

void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

bool is_uuid_v4(const char *s)
{
    if (s == NULL || strlen(s) != MHDCTX_UUID_LEN)
        return false;
    for (size_t i = 0; i < MHDCTX_UUID_LEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

bool is_hex_id(const char *s, size_t len)
{
    if (strlen(s) != len)
        return false;
    bool nonzero = false;
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        nonzero = nonzero || s[i] != '0';
    }
    return nonzero;
}

void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
                          .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ==== processes ======================================================================= */

int support_wait_child(pid_t pid)
{
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "child %d did not exit: status %d", (int)pid, status);
    return WEXITSTATUS(status);
}

/* ==== JSON ============================================================================ */

const char *jstr(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

const char *str_field(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) {
        char text[512];
        size_t n = json_dumpb(obj, text, sizeof text - 1, JSON_COMPACT);
        if (n == 0 || n >= sizeof text - 1)
            snprintf(text, sizeof text, "(%zu bytes of JSON)", n);
        else
            text[n] = '\0';
        ck_abort_msg("field %s is not a string in %s", key, text);
    }
    return json_string_value(v);
}

json_t *support_parse_line(const char *line, size_t len, size_t json_flags)
{
    ck_assert_uint_gt(len, 0);
    ck_assert_msg(line[len - 1] == '\n', "line does not end in a newline: %.*s", (int)len,
                  line);
    ck_assert_msg(memchr(line, '\n', len - 1) == NULL, "raw newline inside: %.*s", (int)len,
                  line);
    ck_assert_msg(memchr(line, '\r', len) == NULL, "raw CR inside: %.*s", (int)len, line);
    json_error_t err;
    json_t *v = json_loadb(line, len, json_flags, &err);
    ck_assert_msg(v != NULL, "invalid JSON (%s): %.*s", err.text, (int)len, line);
    ck_assert(json_is_object(v));
    return v;
}

json_t *support_find_line(const json_t *all, const char *message, const char *key,
                          const char *value)
{
    size_t i;
    json_t *line;
    json_array_foreach(all, i, line)
    {
        const char *m = jstr(line, "message");
        if (m == NULL || strcmp(m, message) != 0)
            continue;
        if (key == NULL)
            return line;
        const char *v = jstr(line, key);
        if (v && strcmp(v, value) == 0)
            return line;
    }
    return NULL;
}

/* ==== contexts ========================================================================= */

mhdctx_context *new_context(void)
{
    mhdctx_context *ctx = mhdctx_context_new();
    ck_assert_ptr_nonnull(ctx);
    return ctx;
}

unsigned refs_of(mhdctx_context *ctx)
{
    return atomic_load(&ctx->refs);
}

/* ==== log capture ======================================================================= */

static struct {
    pthread_mutex_t lock;
    support_line **lines; /* each line one allocation: it never moves */
    size_t n, cap;
    size_t lost;    /* lines the callback could not store */
    size_t foreign; /* calls whose argument was not &store */
} store = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The sink. Any thread, so no Check assertion: problems are counted instead. */
static void capture_cb(mhdctx_log_level level, const char *line, size_t len, void *cls)
{
    support_line *copy = malloc(sizeof *copy + len + 1);
    if (copy) {
        copy->level = level;
        copy->len = len;
        memcpy(copy->text, line, len);
        copy->text[len] = '\0';
    }
    pthread_mutex_lock(&store.lock);
    if (cls != &store)
        store.foreign++;
    if (copy && store.n == store.cap) {
        size_t cap = store.cap ? 2 * store.cap : 64;
        support_line **grown = realloc(store.lines, cap * sizeof *grown);
        if (grown) {
            store.lines = grown;
            store.cap = cap;
        }
    }
    if (copy && store.n < store.cap) {
        store.lines[store.n++] = copy;
        copy = NULL;
    } else {
        store.lost++;
    }
    pthread_mutex_unlock(&store.lock);
    free(copy);
}

/* Fails the test if a line was lost or foreign; @p lost and @p foreign read under the
 * lock by the caller. */
static void assert_intact(size_t lost, size_t foreign)
{
    ck_assert_msg(lost == 0, "%zu log lines could not be captured", lost);
    ck_assert_msg(foreign == 0, "%zu log lines came with another callback argument", foreign);
}

void support_capture_clear(void)
{
    pthread_mutex_lock(&store.lock);
    for (size_t i = 0; i < store.n; i++)
        free(store.lines[i]);
    free(store.lines);
    store.lines = NULL;
    store.n = store.cap = store.lost = store.foreign = 0;
    pthread_mutex_unlock(&store.lock);
}

void support_capture_start(void)
{
    support_capture_clear();
    ck_assert_int_eq(mhdctx_log_to_callback(capture_cb, &store), MHDCTX_OK);
}

void support_capture_start_info(void)
{
    mhdctx_log_set_level(MHDCTX_LOG_INFO);
    support_capture_start();
}

void support_capture_stop(void)
{
    mhdctx_log_shutdown();
    pthread_mutex_lock(&store.lock);
    if (getenv("CHECK_CAPTURE_DUMP")) {
        for (size_t i = 0; i < store.n; i++)
            fputs(store.lines[i]->text, stderr);
    }
    size_t lost = store.lost, foreign = store.foreign;
    pthread_mutex_unlock(&store.lock);
    support_capture_clear();
    assert_intact(lost, foreign);
}

size_t support_capture_n(void)
{
    pthread_mutex_lock(&store.lock);
    size_t n = store.n, lost = store.lost, foreign = store.foreign;
    pthread_mutex_unlock(&store.lock);
    assert_intact(lost, foreign);
    return n;
}

const support_line *support_capture_line(size_t i)
{
    pthread_mutex_lock(&store.lock);
    size_t n = store.n, lost = store.lost, foreign = store.foreign;
    const support_line *line = i < n ? store.lines[i] : NULL;
    pthread_mutex_unlock(&store.lock);
    assert_intact(lost, foreign);
    ck_assert_msg(i < n, "no captured line %zu: %zu captured", i, n);
    return line;
}

json_t *support_capture_json(size_t i, size_t json_flags)
{
    const support_line *line = support_capture_line(i);
    return support_parse_line(line->text, line->len, json_flags);
}

json_t *support_capture_only(size_t json_flags)
{
    ck_assert_uint_eq(support_capture_n(), 1);
    return support_capture_json(0, json_flags);
}

json_t *support_capture_parsed(void)
{
    json_t *all = json_array();
    ck_assert_ptr_nonnull(all);
    pthread_mutex_lock(&store.lock);
    size_t lost = store.lost, foreign = store.foreign;
    for (size_t i = 0; i < store.n; i++) {
        const char *line = store.lines[i]->text;
        size_t len = strlen(line);
        json_error_t err;
        json_t *obj = len > 0 && line[len - 1] == '\n' ? json_loadb(line, len, 0, &err) : NULL;
        if (!json_is_object(obj)) {
            json_decref(obj);
            pthread_mutex_unlock(&store.lock);
            json_decref(all);
            ck_abort_msg("captured line %zu is not one JSON object: %s", i, line);
        }
        json_array_append_new(all, obj);
    }
    pthread_mutex_unlock(&store.lock);
    assert_intact(lost, foreign);
    return all;
}

size_t support_capture_count(const char *message, const char *request_id)
{
    char msg_needle[128];
    char id_needle[MHDCTX_REQUEST_ID_LIMIT + 32];
    snprintf(msg_needle, sizeof msg_needle, "\"message\":\"%s\"", message);
    snprintf(id_needle, sizeof id_needle, "\"request_id\":\"%s\"",
             request_id ? request_id : "");
    size_t count = 0;
    pthread_mutex_lock(&store.lock);
    for (size_t i = 0; i < store.n; i++) {
        const char *text = store.lines[i]->text;
        if (strstr(text, msg_needle) && (!request_id || strstr(text, id_needle)))
            count++;
    }
    pthread_mutex_unlock(&store.lock);
    return count;
}

bool support_capture_wait(const char *message, size_t n, unsigned timeout_ms)
{
    for (unsigned waited = 0;; waited += 2) {
        if (support_capture_count(message, NULL) >= n)
            return true;
        if (waited >= timeout_ms)
            return false;
        sleep_ms(2);
    }
}

bool support_capture_contains(const char *needle)
{
    bool found = false;
    pthread_mutex_lock(&store.lock);
    for (size_t i = 0; i < store.n && !found; i++)
        found = strstr(store.lines[i]->text, needle) != NULL;
    pthread_mutex_unlock(&store.lock);
    return found;
}

/* ==== an MHD daemon with the middleware ================================================ */

const support_mode support_modes[SUPPORT_N_MODES] = {
    {"epoll", MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0},
    {"poll", MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0},
    {"select", MHD_USE_INTERNAL_POLLING_THREAD, 0},
    {"pool", MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 2},
    {"thread-per-connection", MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD,
     0},
};

void support_server_start(support_server *s, mhdctx_middleware *mw, unsigned flags,
                          struct MHD_OptionItem *extra)
{
    static struct MHD_OptionItem none[] = {{MHD_OPTION_END, 0, NULL}};
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, &mhdctx_access_handler, mw,
                                 MHD_OPTION_ARRAY, mhdctx_mhd_options(mw), MHD_OPTION_ARRAY,
                                 extra ? extra : none, MHD_OPTION_END);
    ck_assert_msg(s->daemon != NULL, "MHD_start_daemon failed (flags 0x%x)", flags);
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    ck_assert_ptr_nonnull(info);
    ck_assert_uint_ne(info->port, 0);
    s->port = info->port;
}

void support_server_stop(support_server *s)
{
    if (s->daemon)
        MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}

json_t *support_body_json(const http_response *r)
{
    json_error_t err;
    json_t *body = json_loadb(r->body, r->body_len, 0, &err);
    ck_assert_msg(json_is_object(body), "body is not a JSON object: %s", r->body);
    return body;
}

/* ==== Check ============================================================================ */

TCase *support_tcase(Suite *suite, const char *name, double timeout_s, SFun setup,
                     SFun teardown)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, timeout_s);
    if (setup || teardown)
        tcase_add_checked_fixture(tc, setup, teardown);
    suite_add_tcase(suite, tc);
    return tc;
}
