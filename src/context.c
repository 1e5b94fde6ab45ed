/*
 * context.c - the per-request context: its fields, reference counting and the
 * thread-local "current" pointer (the C counterpart of AsyncLocalStorage's store).
 *
 * One block per request: the struct and the request's path and query, from the
 * thread's cache of freed blocks (block_cache.c) when they fit, else one allocation.
 * Fields set later (user id, roles, user keys) allocate only when used.
 */
#include "internal.h"

#include <string.h>
#include <time.h>

/* initial-exec: reading the current context is one instruction from a TLS offset,
 * not a __tls_get_addr call. The library's TLS is a few pointers (thread_blocks.c), so
 * it fits the static TLS left to a library dlopen()ed late too. */
static _Thread_local mhdctx_context *current_ctx __attribute__((tls_model("initial-exec")));

mhdctx_context *mhdctx_current(void)
{
    return current_ctx;
}

mhdctx_context *mhdctx__enter(mhdctx_context *ctx)
{
    mhdctx_context *previous = current_ctx;
    current_ctx = ctx;
    return previous;
}

void mhdctx_run(mhdctx_context *ctx, void (*fn)(void *arg), void *arg)
{
    if (fn == NULL)
        return;
    mhdctx_context *previous = mhdctx__enter(ctx);
    fn(arg);
    mhdctx__enter(previous);
}

static void lock(const mhdctx_context *ctx);
static void unlock(const mhdctx_context *ctx);
static void release_key(struct mhdctx__user_key *slot);

/* ---- lifetime ------------------------------------------------------------------------ */

uint64_t mhdctx__clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * MHDCTX__NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint64_t mhdctx__monotonic_ns(void)
{
    return mhdctx__clock_ns(CLOCK_MONOTONIC);
}

mhdctx_context *mhdctx__context_create(const char *uri)
{
    if (uri == NULL)
        uri = "";
    size_t uri_len = strlen(uri);
    size_t size = sizeof(mhdctx_context) + uri_len + 1;
    bool in_block = size <= MHDCTX__BLOCK_BYTES;
    mhdctx_context *ctx = in_block ? mhdctx__block_take() : mhdctx__malloc(size);
    if (ctx == NULL)
        return NULL;
    memset(ctx, 0, MHDCTX__CONTEXT_CLEARED);
    ctx->id_header_copy[0] = ctx->method_inline[0] = ctx->request_id[0] = '\0';
    ctx->trace_id[0] = ctx->span_id[0] = ctx->parent_span_id[0] = '\0';
    ctx->in_block = in_block;
    /* A default mutex needs no pthread_mutex_init call (which cannot fail for one). */
    ctx->lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    atomic_init(&ctx->refs, 1);
    ctx->start_mono_ns = mhdctx__monotonic_ns();
    ctx->id_verdict = MHDCTX_ID_MISSING;
    ctx->id_header = MHDCTX__DEFAULT_ID_HEADER;
    memcpy(ctx->text, uri, uri_len + 1);
    char *question = strchr(ctx->text, '?');
    if (question) {
        *question = '\0';
        ctx->query = question + 1;
    }
    return ctx;
}

mhdctx_context *mhdctx_context_new(void)
{
    mhdctx_context *ctx = mhdctx__context_create("");
    if (ctx) {
        mhdctx__context_generate_request_id(ctx, MHDCTX_ID_MISSING);
        mhdctx__context_set_trace(ctx, NULL, NULL, 0);
    }
    return ctx;
}

mhdctx_error mhdctx__context_set_trace(mhdctx_context *ctx, const mhdctx_trace_parent *parent,
                                       const char *tracestate, size_t tracestate_len)
{
    unsigned draw = MHDCTX__DRAW_SPAN;
    if (parent) {
        memcpy(ctx->trace_id, parent->trace_id, sizeof ctx->trace_id);
        memcpy(ctx->parent_span_id, parent->parent_id, sizeof ctx->parent_span_id);
        /* The flags Level 2 defines are passed on (the trace id is the caller's, so is
         * its randomness); others are unknown and, as the spec says, not. */
        ctx->trace_flags = parent->flags & MHDCTX__TRACE_FLAGS_SENT;
    } else {
        draw |= MHDCTX__DRAW_TRACE;
        ctx->parent_span_id[0] = '\0';
        ctx->trace_flags = MHDCTX__TRACE_FLAGS_NEW;
    }
    /* Before any other thread can see the context: no lock needed. */
    atomic_store_explicit(&ctx->ids_to_draw, draw, memory_order_release);
    if (parent && tracestate && tracestate_len) {
        ctx->tracestate = mhdctx__malloc(tracestate_len + 1);
        if (ctx->tracestate == NULL)
            return MHDCTX_ENOMEM;
        memcpy(ctx->tracestate, tracestate, tracestate_len);
        ctx->tracestate[tracestate_len] = '\0';
    }
    return MHDCTX_OK;
}

/* Both ids from one draw: half the generator's per-call cost. Neither may be all
 * zero (W3C Trace Context), so a draw with a zero part is thrown away. */
static void draw_trace_and_span(mhdctx_context *ctx)
{
    enum { TRACE_BYTES = MHDCTX_TRACE_ID_LEN / 2, SPAN_BYTES = MHDCTX_SPAN_ID_LEN / 2 };
    unsigned char bytes[TRACE_BYTES + SPAN_BYTES];
    do {
        mhdctx__random_bytes(bytes, sizeof bytes);
    } while (mhdctx__all_zero(bytes, TRACE_BYTES) ||
             mhdctx__all_zero(bytes + TRACE_BYTES, SPAN_BYTES));
    mhdctx__hex_encode(ctx->trace_id, bytes, TRACE_BYTES);
    ctx->trace_id[MHDCTX_TRACE_ID_LEN] = '\0';
    mhdctx__hex_encode(ctx->span_id, bytes + TRACE_BYTES, SPAN_BYTES);
    ctx->span_id[MHDCTX_SPAN_ID_LEN] = '\0';
}

void mhdctx__context_draw_ids_locked(const mhdctx_context *ctx)
{
    mhdctx_context *c = (mhdctx_context *)ctx; /* drawing completes the ids, once */
    unsigned draw = atomic_load_explicit(&c->ids_to_draw, memory_order_acquire);
    if (draw == 0)
        return;
    if (draw == (MHDCTX__DRAW_TRACE | MHDCTX__DRAW_SPAN)) {
        draw_trace_and_span(c);
    } else if (draw & MHDCTX__DRAW_TRACE) {
        mhdctx__random_hex(c->trace_id, MHDCTX_TRACE_ID_LEN / 2);
    } else {
        mhdctx__random_hex(c->span_id, MHDCTX_SPAN_ID_LEN / 2);
    }
    /* release: a reader that sees 0 without the lock sees the ids written above */
    atomic_store_explicit(&c->ids_to_draw, 0, memory_order_release);
}

void mhdctx__context_draw_ids_slow(const mhdctx_context *ctx)
{
    lock(ctx);
    mhdctx__context_draw_ids_locked(ctx);
    unlock(ctx);
}

const char *mhdctx_trace_id(const mhdctx_context *ctx)
{
    if (ctx == NULL)
        return "";
    mhdctx__context_draw_ids(ctx);
    return ctx->trace_id;
}

const char *mhdctx_span_id(const mhdctx_context *ctx)
{
    if (ctx == NULL)
        return "";
    mhdctx__context_draw_ids(ctx);
    return ctx->span_id;
}

const char *mhdctx_parent_span_id(const mhdctx_context *ctx)
{
    return ctx ? ctx->parent_span_id : "";
}

unsigned char mhdctx_trace_flags(const mhdctx_context *ctx)
{
    return ctx ? ctx->trace_flags : 0;
}

const char *mhdctx_tracestate(const mhdctx_context *ctx)
{
    return ctx && ctx->tracestate ? ctx->tracestate : "";
}

mhdctx_context *mhdctx_context_ref(mhdctx_context *ctx)
{
    if (ctx)
        atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
    return ctx;
}

static void free_strings(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mhdctx__free(list[i]);
    mhdctx__free(list);
}

static void free_owned_fields(mhdctx_context *ctx)
{
    for (size_t i = 0; i < ctx->n_keys; i++)
        release_key(&ctx->keys[i]);
    mhdctx__free(ctx->keys);
    free_strings(ctx->roles, ctx->n_roles);
    mhdctx__free(ctx->user_id);
    mhdctx__free(ctx->method_heap);
    mhdctx__free(ctx->tracestate);
    mhdctx__free(ctx->route);
}

static void context_destroy(mhdctx_context *ctx)
{
    /* Most contexts own nothing on the heap: one test rather than six calls of free. A
     * field that owns memory belongs in both lists. */
    if (ctx->keys || ctx->roles || ctx->user_id || ctx->method_heap || ctx->tracestate ||
        ctx->route)
        free_owned_fields(ctx);
    if (ctx->deferred)
        MHD_destroy_response(ctx->deferred);
    pthread_mutex_destroy(&ctx->lock);
    if (ctx->in_block)
        mhdctx__block_give(ctx);
    else
        mhdctx__free(ctx);
}

void mhdctx_context_unref(mhdctx_context *ctx)
{
    if (ctx == NULL)
        return;
    /* acq_rel: every write made under another reference happens before the free. */
    if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) == 1)
        context_destroy(ctx);
}

/* ---- immutable request fields ------------------------------------------------------- */

mhdctx_error mhdctx__context_set_method(mhdctx_context *ctx, const char *method)
{
    size_t len = strlen(method);
    if (len < sizeof ctx->method_inline) {
        memcpy(ctx->method_inline, method, len + 1);
        return MHDCTX_OK;
    }
    ctx->method_heap = mhdctx__strdup(method);
    return ctx->method_heap ? MHDCTX_OK : MHDCTX_ENOMEM;
}

void mhdctx__context_generate_request_id(mhdctx_context *ctx, mhdctx_id_verdict verdict)
{
    mhdctx_uuid_v4(ctx->request_id); /* in place: no copy through a buffer */
    ctx->request_id_len = MHDCTX_UUID_LEN;
    ctx->id_verdict = verdict;
}

void mhdctx__context_set_request_id(mhdctx_context *ctx, const char *id, size_t len,
                                    mhdctx_id_verdict verdict)
{
    if (len > MHDCTX_REQUEST_ID_LIMIT)
        len = MHDCTX_REQUEST_ID_LIMIT;
    memcpy(ctx->request_id, id, len);
    ctx->request_id[len] = '\0';
    ctx->request_id_len = len;
    ctx->id_verdict = verdict;
}

const char *mhdctx_request_id(const mhdctx_context *ctx)
{
    return ctx ? ctx->request_id : "";
}

mhdctx_id_verdict mhdctx_request_id_verdict(const mhdctx_context *ctx)
{
    return ctx ? ctx->id_verdict : MHDCTX_ID_MISSING;
}

const char *mhdctx_route(const mhdctx_context *ctx)
{
    if (ctx == NULL)
        return "";
    lock(ctx);
    const char *route = ctx->route ? ctx->route : ctx->text;
    unlock(ctx);
    return route;
}

/* Replaces a string field under the lock with a copy of @value (NULL clears it); the
 * old one is freed outside the lock. */
static mhdctx_error replace_string(mhdctx_context *ctx, char **field, const char *value)
{
    char *copy = NULL;
    if (value && (copy = mhdctx__strdup(value)) == NULL)
        return MHDCTX_ENOMEM;
    lock(ctx);
    char *old = *field;
    *field = copy;
    unlock(ctx);
    mhdctx__free(old);
    return MHDCTX_OK;
}

mhdctx_error mhdctx_set_route(mhdctx_context *ctx, const char *route)
{
    if (ctx == NULL || route == NULL)
        return MHDCTX_EINVAL;
    return replace_string(ctx, &ctx->route, route);
}

/* ---- deadline --------------------------------------------------------------------------- */

uint64_t mhdctx__deadline_after(uint64_t start_ns, uint64_t ms)
{
    if (ms == 0 || ms > (UINT64_MAX - start_ns) / 1000000u)
        return 0; /* none, or beyond any clock: no deadline rather than a wrapped one */
    return start_ns + ms * 1000000u;
}

void mhdctx_set_deadline_in(mhdctx_context *ctx, uint64_t ms)
{
    if (ctx)
        atomic_store(&ctx->deadline_ns, mhdctx__deadline_after(mhdctx__monotonic_ns(), ms));
}

int64_t mhdctx_deadline_remaining_ms(const mhdctx_context *ctx)
{
    uint64_t deadline = ctx ? atomic_load(&ctx->deadline_ns) : 0;
    if (deadline == 0)
        return INT64_MAX;
    uint64_t now = mhdctx__monotonic_ns();
    if (now >= deadline)
        return 0;
    /* Rounded up, so that 0 means passed: rounded down, a call would be refused as out
     * of time during the last millisecond that was still its own. */
    uint64_t left_ns = deadline - now;
    return (int64_t)(left_ns / 1000000u + (left_ns % 1000000u != 0));
}

bool mhdctx_deadline_passed(const mhdctx_context *ctx)
{
    uint64_t deadline = ctx ? atomic_load(&ctx->deadline_ns) : 0;
    return deadline != 0 && mhdctx__monotonic_ns() >= deadline;
}

const char *mhdctx_method(const mhdctx_context *ctx)
{
    if (ctx == NULL)
        return "";
    return ctx->method_heap ? ctx->method_heap : ctx->method_inline;
}

const char *mhdctx_path(const mhdctx_context *ctx)
{
    return ctx ? ctx->text : "";
}

const char *mhdctx_query(const mhdctx_context *ctx)
{
    return ctx ? ctx->query : NULL;
}

uint64_t mhdctx_start_monotonic_ns(const mhdctx_context *ctx)
{
    return ctx ? ctx->start_mono_ns : 0;
}

/* The wall clock is read at the first reader, not at every request line (a clock read
 * costs ~30 ns in a VM, and few requests ask): now minus the monotonic time elapsed. */
struct timespec mhdctx_start_realtime(const mhdctx_context *ctx)
{
    struct timespec start = {0, 0};
    if (ctx == NULL)
        return start;
    mhdctx_context *c = (mhdctx_context *)ctx; /* fills a cache; the value never changes */
    lock(c);
    if (!c->start_real_known) {
        uint64_t now_ns = mhdctx__clock_ns(CLOCK_REALTIME);
        uint64_t ago = mhdctx__monotonic_ns() - c->start_mono_ns;
        uint64_t at = now_ns > ago ? now_ns - ago : 0;
        c->start_real = mhdctx__timespec_of_ns(at);
        c->start_real_known = true;
    }
    start = c->start_real;
    unlock(c);
    return start;
}

double mhdctx_elapsed_ms(const mhdctx_context *ctx)
{
    if (ctx == NULL)
        return 0.0;
    return (double)(mhdctx__monotonic_ns() - ctx->start_mono_ns) / 1e6;
}

/* ---- user, roles ---------------------------------------------------------------------- */

/* Printable, no controls: these values end up in log lines and headers. */
mhdctx_error mhdctx__check_label(const char *s, size_t max_len)
{
    if (s == NULL || *s == '\0')
        return MHDCTX_EINVAL;
    size_t len = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, len++) {
        if (*p < 0x20 || *p == 0x7f)
            return MHDCTX_EINVAL;
    }
    if (len > max_len)
        return MHDCTX_ELIMIT;
    /* Valid UTF-8 too: these values are exported as JSON strings. */
    return mhdctx__utf8_valid(s, len) ? MHDCTX_OK : MHDCTX_EINVAL;
}

static void lock(const mhdctx_context *ctx)
{
    pthread_mutex_lock((pthread_mutex_t *)&ctx->lock);
}

static void unlock(const mhdctx_context *ctx)
{
    pthread_mutex_unlock((pthread_mutex_t *)&ctx->lock);
}

mhdctx_error mhdctx_set_user_id(mhdctx_context *ctx, const char *user_id)
{
    if (ctx == NULL)
        return MHDCTX_EINVAL;
    if (user_id) {
        mhdctx_error rc = mhdctx__check_label(user_id, MHDCTX_MAX_USER_ID_LEN);
        if (rc != MHDCTX_OK)
            return rc;
    }
    return replace_string(ctx, &ctx->user_id, user_id);
}

const char *mhdctx_user_id(const mhdctx_context *ctx)
{
    if (ctx == NULL)
        return NULL;
    lock(ctx);
    const char *id = ctx->user_id;
    unlock(ctx);
    return id;
}

mhdctx_error mhdctx_copy_user_id(const mhdctx_context *ctx, char *buf, size_t size)
{
    if (buf == NULL || size == 0)
        return MHDCTX_EINVAL;
    if (ctx == NULL) {
        buf[0] = '\0'; /* the promise holds on every path: never an unterminated buffer */
        return MHDCTX_EINVAL;
    }
    mhdctx_error rc = MHDCTX_OK;
    lock(ctx);
    if (ctx->user_id == NULL) {
        buf[0] = '\0';
        rc = MHDCTX_ENOTFOUND;
    } else {
        size_t len = strlen(ctx->user_id);
        rc = len < size ? MHDCTX_OK : MHDCTX_ELIMIT;
        len = len < size ? len : size - 1;
        memcpy(buf, ctx->user_id, len);
        buf[len] = '\0';
    }
    unlock(ctx);
    return rc;
}

static bool has_role_locked(const mhdctx_context *ctx, const char *role)
{
    for (size_t i = 0; i < ctx->n_roles; i++) {
        if (strcmp(ctx->roles[i], role) == 0)
            return true;
    }
    return false;
}

mhdctx_error mhdctx_add_role(mhdctx_context *ctx, const char *role)
{
    if (ctx == NULL)
        return MHDCTX_EINVAL;
    mhdctx_error rc = mhdctx__check_label(role, MHDCTX_MAX_KEY_LEN);
    if (rc != MHDCTX_OK)
        return rc;
    lock(ctx);
    if (has_role_locked(ctx, role)) {
        rc = MHDCTX_OK;
    } else if (ctx->n_roles >= MHDCTX_MAX_ROLES) {
        rc = MHDCTX_ELIMIT;
    } else {
        char *copy = mhdctx__strdup(role);
        char **grown =
            copy ? mhdctx__realloc(ctx->roles, (ctx->n_roles + 1) * sizeof *grown) : NULL;
        if (grown == NULL) {
            mhdctx__free(copy);
            rc = MHDCTX_ENOMEM;
        } else {
            grown[ctx->n_roles++] = copy;
            ctx->roles = grown;
        }
    }
    unlock(ctx);
    return rc;
}

bool mhdctx_has_role(const mhdctx_context *ctx, const char *role)
{
    if (ctx == NULL || role == NULL)
        return false;
    lock(ctx);
    bool found = has_role_locked(ctx, role);
    unlock(ctx);
    return found;
}

json_t *mhdctx_roles_json(const mhdctx_context *ctx)
{
    json_t *array = json_array();
    if (array == NULL || ctx == NULL)
        return array;
    lock(ctx);
    for (size_t i = 0; i < ctx->n_roles; i++) {
        if (json_array_append_new(array, json_string(ctx->roles[i])) != 0) {
            json_decref(array);
            array = NULL;
            break;
        }
    }
    unlock(ctx);
    return array;
}

/* ---- user keys ------------------------------------------------------------------------ */

/* Field names the library writes itself: a user key may not shadow them. */
static const char *const reserved_keys[] = {
    "time",           "level",       "message", "request_id",
    "user_id",        "trace_id",    "span_id", "trace_flags",
    "parent_span_id", "method",      "path",    "query",
    "status",         "duration_ms", "outcome", "request_id_replaced"};

bool mhdctx__key_is_reserved(const char *key)
{
    for (size_t i = 0; i < sizeof reserved_keys / sizeof *reserved_keys; i++) {
        if (strcmp(key, reserved_keys[i]) == 0)
            return true;
    }
    return false;
}

static mhdctx_error check_key(const char *key)
{
    if (key == NULL || *key == '\0')
        return MHDCTX_EINVAL;
    size_t len = 0;
    for (const char *p = key; *p; p++, len++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok)
            return MHDCTX_EINVAL;
    }
    if (len > MHDCTX_MAX_KEY_LEN)
        return MHDCTX_ELIMIT;
    return mhdctx__key_is_reserved(key) ? MHDCTX_ERESERVED : MHDCTX_OK;
}

/* The value as compact ASCII JSON (jansson escapes every non-ASCII character and
 * refuses invalid UTF-8 at construction): what every log line will carry. A string's
 * own bytes follow the text, NUL-terminated (a string's bytes are never more than its
 * JSON text: the limit holds for both). */
static mhdctx_error serialize_value_in_c_locale(const json_t *value,
                                                struct mhdctx__user_key *entry)
{
    const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII;
    size_t size = json_dumpb(value, NULL, 0, flags);
    if (size == 0)
        return MHDCTX_EINVAL;
    if (size > MHDCTX_MAX_VALUE_LEN)
        return MHDCTX_ELIMIT;
    bool is_string = json_is_string(value);
    size_t string_len = is_string ? json_string_length(value) : 0;
    char *text = mhdctx__malloc(size + (is_string ? string_len + 1 : 0));
    if (text == NULL)
        return MHDCTX_ENOMEM;
    if (json_dumpb(value, text, size, flags) != size) {
        mhdctx__free(text); /* changed by another thread meanwhile */
        return MHDCTX_EINVAL;
    }
    if (is_string) {
        memcpy(text + size, json_string_value(value), string_len);
        text[size + string_len] = '\0';
        entry->string = text + size;
        entry->string_len = string_len;
    }
    entry->json = text;
    entry->json_len = size;
    return MHDCTX_OK;
}

static mhdctx_error serialize_value(const json_t *value, struct mhdctx__user_key *entry)
{
    locale_t previous = mhdctx__jansson_locale_enter();
    mhdctx_error rc = serialize_value_in_c_locale(value, entry);
    mhdctx__jansson_locale_leave(previous);
    return rc;
}

static struct mhdctx__user_key *find_key_locked(const mhdctx_context *ctx, const char *key)
{
    for (size_t i = 0; i < ctx->n_keys; i++) {
        if (strcmp(ctx->keys[i].name, key) == 0)
            return &ctx->keys[i];
    }
    return NULL;
}

static void release_key(struct mhdctx__user_key *slot)
{
    json_decref(slot->value);
    mhdctx__free(slot->json);
}

static void remove_key_locked(mhdctx_context *ctx, struct mhdctx__user_key *slot)
{
    release_key(slot);
    size_t index = (size_t)(slot - ctx->keys);
    memmove(slot, slot + 1, (ctx->n_keys - index - 1) * sizeof *slot);
    ctx->n_keys--;
}

/* Stores @value (with its serialized @json) under @key; takes both on success. */
static mhdctx_error store_key_locked(mhdctx_context *ctx, const char *key,
                                     struct mhdctx__user_key entry)
{
    struct mhdctx__user_key *slot = find_key_locked(ctx, key);
    if (entry.value == NULL) {
        if (slot)
            remove_key_locked(ctx, slot);
        return MHDCTX_OK;
    }
    if (slot) {
        release_key(slot);
    } else {
        if (ctx->n_keys >= MHDCTX_MAX_USER_KEYS)
            return MHDCTX_ELIMIT;
        struct mhdctx__user_key *grown =
            mhdctx__realloc(ctx->keys, (ctx->n_keys + 1) * sizeof *grown);
        if (grown == NULL)
            return MHDCTX_ENOMEM;
        ctx->keys = grown;
        slot = &grown[ctx->n_keys++];
    }
    strcpy(entry.name, key); /* length checked by check_key() */
    *slot = entry;
    return MHDCTX_OK;
}

mhdctx_error mhdctx_set_new(mhdctx_context *ctx, const char *key, json_t *value)
{
    struct mhdctx__user_key entry = {.value = value};
    mhdctx_error rc = ctx ? check_key(key) : MHDCTX_EINVAL;
    if (rc == MHDCTX_OK && value)
        rc = serialize_value(value, &entry);
    if (rc == MHDCTX_OK) {
        lock(ctx);
        rc = store_key_locked(ctx, key, entry);
        unlock(ctx);
        if (rc == MHDCTX_OK)
            return MHDCTX_OK; /* the context owns value and its text now */
    }
    mhdctx__free(entry.json);
    json_decref(value);
    return rc;
}

mhdctx_error mhdctx_set(mhdctx_context *ctx, const char *key, json_t *value)
{
    return mhdctx_set_new(ctx, key, json_incref(value));
}

mhdctx_error mhdctx_set_string(mhdctx_context *ctx, const char *key, const char *value)
{
    if (value == NULL) /* as mhdctx_set_new(ctx, key, NULL): removes the key */
        return mhdctx_set_new(ctx, key, NULL);
    size_t len = strlen(value);
    if (!mhdctx__utf8_valid(value, len))
        return MHDCTX_EINVAL;
    json_t *string = json_stringn_nocheck(value, len); /* checked above */
    if (string == NULL)
        return MHDCTX_ENOMEM;
    return mhdctx_set_new(ctx, key, string);
}

json_t *mhdctx_get(const mhdctx_context *ctx, const char *key)
{
    if (ctx == NULL || key == NULL)
        return NULL;
    lock(ctx);
    struct mhdctx__user_key *slot = find_key_locked(ctx, key);
    json_t *value = slot ? json_incref(slot->value) : NULL;
    unlock(ctx);
    return value;
}

void mhdctx__context_lock(const mhdctx_context *ctx)
{
    lock(ctx);
}

/* With one reference, the calling thread's (it holds it, or serves the request that
 * does), no other thread can reach the context: mhdctx.h lets a thread use a context,
 * or take a reference to it, only through a reference of its own or inside the
 * request. The acquire load sees every write of a thread that dropped its reference. */
bool mhdctx__context_lock_if_shared(const mhdctx_context *ctx)
{
    if (atomic_load_explicit(&ctx->refs, memory_order_acquire) == 1)
        return false;
    lock(ctx);
    return true;
}

void mhdctx__context_unlock(const mhdctx_context *ctx)
{
    unlock(ctx);
}

bool mhdctx__context_has_key_locked(const mhdctx_context *ctx, const char *key)
{
    return ctx->n_keys > 0 && find_key_locked(ctx, key) != NULL;
}

/* Appends @n bytes at @p, where the caller reserved room; returns the end. */
static inline char *put_reserved(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
#define PUT_RESERVED_LITERAL(p, lit) put_reserved((p), (lit), sizeof(lit) - 1)

/* The keys and ids every line names, up to "user_id": plain text (every request id
 * passed mhdctx_request_id_check or is a UUID, trace ids are hex), written into room
 * reserved once. */
static void write_ids_locked(mhdctx_context *ctx, mhdctx__buf *b, const char *span_id)
{
    enum { ROOM = 128 + MHDCTX_TRACE_ID_LEN + MHDCTX_SPAN_ID_LEN }; /* all but the id */
    mhdctx__context_draw_ids_locked(ctx);
    if (!mhdctx__buf_reserve(b, ROOM + ctx->request_id_len))
        return;
    char *p = b->data + b->len;
    p = PUT_RESERVED_LITERAL(p, ",\"request_id\":\"");
    p = put_reserved(p, ctx->request_id, ctx->request_id_len);
    if (ctx->trace_id[0]) { /* OpenTelemetry log data model names */
        p = PUT_RESERVED_LITERAL(p, "\",\"trace_id\":\"");
        p = put_reserved(p, ctx->trace_id, MHDCTX_TRACE_ID_LEN);
        p = PUT_RESERVED_LITERAL(p, "\",\"span_id\":\"");
        p = put_reserved(p, span_id ? span_id : ctx->span_id, MHDCTX_SPAN_ID_LEN);
        p = PUT_RESERVED_LITERAL(p, "\",\"trace_flags\":\"");
        mhdctx__hex_byte(p, ctx->trace_flags);
        p += 2;
    }
    p = PUT_RESERVED_LITERAL(p, "\",\"user_id\":");
    b->len = (size_t)(p - b->data);
}

void mhdctx__context_write_fields_locked(mhdctx_context *ctx, mhdctx__buf *b,
                                         const char *span_id)
{
    write_ids_locked(ctx, b, span_id);
    if (ctx->user_id)
        mhdctx__json_string(b, ctx->user_id, strlen(ctx->user_id));
    else
        MHDCTX__PUT_LITERAL(b, "null");
    for (size_t i = 0; i < ctx->n_keys; i++) {
        mhdctx__json_key(b, ctx->keys[i].name);
        mhdctx__buf_put(b, ctx->keys[i].json, ctx->keys[i].json_len);
    }
}
