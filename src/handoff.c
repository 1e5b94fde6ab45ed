/*
 * handoff.c - the context leaves the request's thread: tasks bound to a context for
 * thread pools and timers, and export/import for other processes.
 *
 * Pitfall this design prevents (the article's long-lived listener): a callback never
 * captures "whatever context is current when it fires"; it carries the reference it
 * was bound with, and mhdctx_task_run() restores the worker's previous context after,
 * so a pool thread never keeps a stale one.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mhdctx_task {
    mhdctx_context *ctx;
    void (*fn)(void *arg);
    void *arg;
};

mhdctx_task *mhdctx_task_bind(mhdctx_context *ctx, void (*fn)(void *arg), void *arg)
{
    if (fn == NULL)
        return NULL;
    mhdctx_task *task = mhdctx__malloc(sizeof *task);
    if (task == NULL)
        return NULL;
    task->ctx = mhdctx_context_ref(ctx ? ctx : mhdctx_current());
    task->fn = fn;
    task->arg = arg;
    return task;
}

void mhdctx_task_run(void *task_arg)
{
    mhdctx_task *task = task_arg;
    if (task == NULL)
        return;
    mhdctx_run(task->ctx, task->fn, task->arg);
    mhdctx_task_cancel(task);
}

void mhdctx_task_cancel(mhdctx_task *task)
{
    if (task == NULL)
        return;
    mhdctx_context_unref(task->ctx);
    mhdctx__free(task);
}

/* ---- export ----------------------------------------------------------------------------- */

/* Each key as its value was when it was set, the text log lines carry: the caller may
 * have changed a value it still shares since (and may be changing it now). */
static json_t *export_keys(const mhdctx_context *ctx)
{
    json_t *keys = json_object();
    for (size_t i = 0; keys && i < ctx->n_keys; i++) {
        const struct mhdctx__user_key *key = &ctx->keys[i];
        json_t *value = mhdctx__json_loadb(key->json, key->json_len,
                                           JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (json_object_set_new(keys, key->name, value) != 0) { /* NULL value: fails */
            json_decref(keys);
            return NULL;
        }
    }
    return keys;
}

char *mhdctx_context_export(const mhdctx_context *ctx)
{
    if (ctx == NULL)
        return NULL;
    char flags[3] = {0};
    mhdctx__hex_byte(flags, ctx->trace_flags);
    mhdctx__context_lock(ctx);
    mhdctx__context_draw_ids_locked(ctx);
    json_t *user = ctx->user_id ? json_string(ctx->user_id) : json_null();
    json_t *keys = export_keys(ctx);
    mhdctx__context_unlock(ctx);
    json_t *doc = json_pack("{s:i, s:s, s:o, s:o, s:o, s:s, s:s, s:s, s:s, s:s}", "v", 1,
                            "request_id", ctx->request_id, "user_id", user, "roles",
                            mhdctx_roles_json(ctx), "keys", keys, "trace_id", ctx->trace_id,
                            "span_id", ctx->span_id, "parent_span_id", ctx->parent_span_id,
                            "trace_flags", flags, "tracestate", mhdctx_tracestate(ctx));
    char *text = doc ? mhdctx__json_dump(doc, JSON_COMPACT, NULL) : NULL;
    json_decref(doc);
    return mhdctx__hand_to_caller(text); /* the caller's free() */
}

/* ---- import ----------------------------------------------------------------------------- */

static bool hex_id_ok(const char *s, size_t len)
{
    if (s == NULL || strlen(s) != len)
        return false;
    bool nonzero = false;
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        nonzero = nonzero || s[i] != '0';
    }
    return nonzero;
}

static const char *const known_fields[] = {
    "v",        "request_id", "user_id",        "roles",       "keys",
    "trace_id", "span_id",    "parent_span_id", "trace_flags", "tracestate"};

static bool only_known_fields(json_t *doc)
{
    const char *key;
    json_t *value;
    json_object_foreach(doc, key, value)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof known_fields / sizeof *known_fields; i++)
            known = known || strcmp(key, known_fields[i]) == 0;
        if (!known)
            return false;
    }
    return true;
}

/* Whether @v, a string or an array of them, holds a NUL byte. */
static bool string_with_nul(json_t *v)
{
    for (size_t i = 0; json_is_array(v) && i < json_array_size(v); i++) {
        if (string_with_nul(json_array_get(v, i)))
            return true;
    }
    return json_is_string(v) && strlen(json_string_value(v)) != json_string_length(v);
}

/* A user key's value is JSON all the way and may hold a NUL (\u0000) as jansson allows;
 * the other fields become C strings, which would end at one. */
static bool nul_outside_keys(json_t *doc)
{
    const char *key;
    json_t *value;
    json_object_foreach(doc, key, value)
    {
        if (strcmp(key, "keys") != 0 && string_with_nul(value))
            return true;
    }
    return false;
}

/* The traceparent rules applied to the exported ids, through the same parser. */
static mhdctx_error import_trace(mhdctx_context *ctx, json_t *doc)
{
    json_t *parent_json = json_object_get(doc, "parent_span_id");
    json_t *state_json = json_object_get(doc, "tracestate");
    if ((parent_json && !json_is_string(parent_json)) ||
        (state_json && !json_is_string(state_json)))
        return MHDCTX_EPARSE;
    const char *trace_id = json_string_value(json_object_get(doc, "trace_id"));
    const char *span_id = json_string_value(json_object_get(doc, "span_id"));
    const char *parent = json_string_value(json_object_get(doc, "parent_span_id"));
    const char *flags = json_string_value(json_object_get(doc, "trace_flags"));
    const char *state = json_string_value(json_object_get(doc, "tracestate"));
    if (!hex_id_ok(trace_id, MHDCTX_TRACE_ID_LEN) || !hex_id_ok(span_id, MHDCTX_SPAN_ID_LEN) ||
        (parent && *parent && !hex_id_ok(parent, MHDCTX_SPAN_ID_LEN)) || flags == NULL ||
        strlen(flags) != 2)
        return MHDCTX_EINVAL;
    char header[MHDCTX_TRACEPARENT_LEN + 1];
    snprintf(header, sizeof header, "00-%s-%s-%s", trace_id, span_id, flags);
    mhdctx_trace_parent tp;
    if (mhdctx_traceparent_parse(header, strlen(header), &tp) != MHDCTX_OK)
        return MHDCTX_EINVAL;
    char normalized[MHDCTX_TRACESTATE_MAX_LEN + 1];
    size_t state_len =
        state ? mhdctx_tracestate_normalize(state, strlen(state), normalized) : 0;
    if (state && *state && state_len == 0)
        return MHDCTX_EINVAL;
    memcpy(ctx->trace_id, tp.trace_id, sizeof ctx->trace_id);
    memcpy(ctx->span_id, tp.parent_id, sizeof ctx->span_id); /* same span: same work */
    atomic_store(&ctx->ids_to_draw, 0);                      /* given, not to be drawn */
    snprintf(ctx->parent_span_id, sizeof ctx->parent_span_id, "%s", parent ? parent : "");
    ctx->trace_flags = tp.flags;
    if (state_len) {
        ctx->tracestate = mhdctx__strdup(normalized);
        if (ctx->tracestate == NULL)
            return MHDCTX_ENOMEM;
    }
    return MHDCTX_OK;
}

static mhdctx_error import_user(mhdctx_context *ctx, json_t *doc)
{
    json_t *user = json_object_get(doc, "user_id");
    json_t *roles = json_object_get(doc, "roles");
    json_t *keys = json_object_get(doc, "keys");
    if ((user && !json_is_string(user) && !json_is_null(user)) || !json_is_array(roles) ||
        !json_is_object(keys))
        return MHDCTX_EPARSE;
    mhdctx_error rc =
        json_is_string(user) ? mhdctx_set_user_id(ctx, json_string_value(user)) : MHDCTX_OK;
    size_t i;
    json_t *role;
    json_array_foreach(roles, i, role)
    {
        if (rc == MHDCTX_OK)
            rc = json_is_string(role) ? mhdctx_add_role(ctx, json_string_value(role))
                                      : MHDCTX_EPARSE;
    }
    const char *key;
    json_t *value;
    json_object_foreach(keys, key, value)
    {
        if (rc == MHDCTX_OK)
            rc = mhdctx_set(ctx, key, value);
    }
    return rc;
}

static mhdctx_error import_into(mhdctx_context *ctx, json_t *doc)
{
    if (!json_is_object(doc) || !only_known_fields(doc) || nul_outside_keys(doc) ||
        json_integer_value(json_object_get(doc, "v")) != 1 ||
        !json_is_integer(json_object_get(doc, "v")))
        return MHDCTX_EPARSE;
    json_t *id = json_object_get(doc, "request_id");
    if (!json_is_string(id))
        return MHDCTX_EPARSE;
    size_t id_len = json_string_length(id);
    if (mhdctx_request_id_check(json_string_value(id), id_len, MHDCTX_REQUEST_ID_LIMIT) !=
        MHDCTX_ID_VALID)
        return MHDCTX_EINVAL;
    mhdctx__context_set_request_id(ctx, json_string_value(id), id_len, MHDCTX_ID_VALID);
    mhdctx_error rc = import_trace(ctx, doc);
    return rc == MHDCTX_OK ? import_user(ctx, doc) : rc;
}

mhdctx_context *mhdctx_context_import(const char *text, size_t len, mhdctx_error *err)
{
    mhdctx_error rc = MHDCTX_OK;
    mhdctx_context *ctx = NULL;
    json_t *doc = NULL;
    if (text == NULL || len > MHDCTX_EXPORT_MAX_LEN) {
        rc = text ? MHDCTX_ELIMIT : MHDCTX_EINVAL;
    } else {
        doc = mhdctx__json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
        ctx = doc ? mhdctx__context_create("") : NULL;
        rc = doc == NULL ? MHDCTX_EPARSE : ctx == NULL ? MHDCTX_ENOMEM : import_into(ctx, doc);
    }
    json_decref(doc);
    if (rc != MHDCTX_OK) {
        mhdctx_context_unref(ctx);
        ctx = NULL;
    }
    if (err)
        *err = rc;
    return ctx;
}
