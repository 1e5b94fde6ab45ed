/*
 * check_handoff.c - the context leaves the request's thread and process: tasks bound to
 * a context (current context while they run, restored after, references balanced across
 * threads, cancel), and export/import (round trip of every field, the log lines of the
 * imported context, every refusal with its error code, hostile input).
 */
#include "internal.h"
#include "support.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tasks --------------------------------------------------------------------------- */

struct task_probe {
    int calls;
    mhdctx_context *seen;   /* mhdctx_current() inside the task */
    mhdctx_context *expect; /* context whose refcount is sampled inside */
    unsigned refs_inside;
};

static void probe_fn(void *arg)
{
    struct task_probe *p = arg;
    p->calls++;
    p->seen = mhdctx_current();
    if (p->expect)
        p->refs_inside = refs_of(p->expect);
}

START_TEST(task_runs_with_its_context_current)
{
    mhdctx_context *ctx = new_context();
    struct task_probe probe = {0};
    mhdctx_task *task = mhdctx_task_bind(ctx, probe_fn, &probe);
    ck_assert_ptr_nonnull(task);
    ck_assert_uint_eq(refs_of(ctx), 2);
    ck_assert_int_eq(probe.calls, 0);
    ck_assert_ptr_null(mhdctx_current());
    mhdctx_task_run(task);
    ck_assert_int_eq(probe.calls, 1);
    ck_assert_ptr_eq(probe.seen, ctx);
    ck_assert_ptr_null(mhdctx_current());
    ck_assert_uint_eq(refs_of(ctx), 1);
    mhdctx_context_unref(ctx);
}
END_TEST

struct nested_run {
    mhdctx_task *task;
    mhdctx_context *worker_ctx;
    mhdctx_context *after;
};

static void run_task_inside(void *arg)
{
    struct nested_run *n = arg;
    ck_assert_ptr_eq(mhdctx_current(), n->worker_ctx);
    mhdctx_task_run(n->task);
    n->after = mhdctx_current();
}

START_TEST(task_restores_the_workers_own_context)
{
    mhdctx_context *ctx = new_context();
    mhdctx_context *worker_ctx = new_context();
    struct task_probe probe = {0};
    struct nested_run n = {mhdctx_task_bind(ctx, probe_fn, &probe), worker_ctx, NULL};
    ck_assert_ptr_nonnull(n.task);
    mhdctx_run(worker_ctx, run_task_inside, &n);
    ck_assert_ptr_eq(probe.seen, ctx);
    ck_assert_ptr_eq(n.after, worker_ctx);
    ck_assert_ptr_null(mhdctx_current());
    ck_assert_uint_eq(refs_of(ctx), 1);
    ck_assert_uint_eq(refs_of(worker_ctx), 1);
    mhdctx_context_unref(ctx);
    mhdctx_context_unref(worker_ctx);
}
END_TEST

START_TEST(task_bind_with_null_fn_returns_null)
{
    mhdctx_context *ctx = new_context();
    ck_assert_ptr_null(mhdctx_task_bind(ctx, NULL, NULL));
    ck_assert_uint_eq(refs_of(ctx), 1);
    ck_assert_ptr_null(mhdctx_task_bind(NULL, NULL, NULL));
    mhdctx_context_unref(ctx);
}
END_TEST

struct bind_here {
    struct task_probe *probe;
    mhdctx_task *task;
};

static void bind_with_null_ctx(void *arg)
{
    struct bind_here *b = arg;
    b->task = mhdctx_task_bind(NULL, probe_fn, b->probe);
}

START_TEST(task_bound_with_null_takes_the_current_context)
{
    mhdctx_context *ctx = new_context();
    struct task_probe probe = {0};
    struct bind_here b = {&probe, NULL};
    mhdctx_run(ctx, bind_with_null_ctx, &b);
    ck_assert_ptr_nonnull(b.task);
    ck_assert_uint_eq(refs_of(ctx), 2); /* the task holds its own reference */
    ck_assert_ptr_null(mhdctx_current());
    mhdctx_task_run(b.task); /* run outside: the bound context becomes current */
    ck_assert_ptr_eq(probe.seen, ctx);
    ck_assert_ptr_null(mhdctx_current());
    ck_assert_uint_eq(refs_of(ctx), 1);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(task_bound_without_any_context_runs_with_none)
{
    struct task_probe probe = {0};
    mhdctx_task *task = mhdctx_task_bind(NULL, probe_fn, &probe);
    ck_assert_ptr_nonnull(task);
    /* run on a thread that has a context: inside the task there is none, after it the
     * worker's context is back */
    mhdctx_context *worker_ctx = new_context();
    struct nested_run n = {task, worker_ctx, NULL};
    probe.seen = worker_ctx;
    mhdctx_run(worker_ctx, run_task_inside, &n);
    ck_assert_int_eq(probe.calls, 1);
    ck_assert_ptr_null(probe.seen);
    ck_assert_ptr_eq(n.after, worker_ctx);
    ck_assert_uint_eq(refs_of(worker_ctx), 1);
    mhdctx_context_unref(worker_ctx);
}
END_TEST

static void *thread_run_task(void *task)
{
    ck_assert_ptr_null(mhdctx_current());
    mhdctx_task_run(task);
    ck_assert_ptr_null(mhdctx_current());
    return NULL;
}

START_TEST(task_keeps_the_context_alive_across_threads)
{
    mhdctx_context *ctx = new_context();
    /* A value we also hold: its refcount tells whether the context released it. */
    json_t *witness = json_string("witness");
    ck_assert_int_eq(mhdctx_set(ctx, "witness", witness), MHDCTX_OK);
    ck_assert_uint_eq(witness->refcount, 2);

    struct task_probe probe = {.expect = ctx};
    mhdctx_task *task = mhdctx_task_bind(ctx, probe_fn, &probe);
    ck_assert_ptr_nonnull(task);
    mhdctx_context_unref(ctx); /* the creator lets go: the task holds the only reference */
    ck_assert_uint_eq(witness->refcount, 2);

    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, thread_run_task, task), 0);
    ck_assert_int_eq(pthread_join(thread, NULL), 0);
    ck_assert_int_eq(probe.calls, 1);
    ck_assert_ptr_eq(probe.seen, ctx);
    ck_assert_uint_eq(probe.refs_inside, 1);
    ck_assert_uint_eq(witness->refcount, 1); /* the context is gone */
    json_decref(witness);
}
END_TEST

START_TEST(task_cancel_drops_the_reference_without_running)
{
    mhdctx_context *ctx = new_context();
    struct task_probe probe = {0};
    mhdctx_task *task = mhdctx_task_bind(ctx, probe_fn, &probe);
    ck_assert_ptr_nonnull(task);
    ck_assert_uint_eq(refs_of(ctx), 2);
    mhdctx_task_cancel(task);
    ck_assert_int_eq(probe.calls, 0);
    ck_assert_uint_eq(refs_of(ctx), 1);
    mhdctx_task_cancel(NULL);
    mhdctx_task_run(NULL);

    /* the last reference may go with a cancel */
    json_t *witness = json_integer(7);
    ck_assert_int_eq(mhdctx_set(ctx, "w", witness), MHDCTX_OK);
    task = mhdctx_task_bind(ctx, probe_fn, &probe);
    ck_assert_ptr_nonnull(task);
    mhdctx_context_unref(ctx);
    mhdctx_task_cancel(task);
    ck_assert_uint_eq(witness->refcount, 1);
    ck_assert_int_eq(probe.calls, 0);
    json_decref(witness);

    /* a task without a context cancels cleanly too */
    task = mhdctx_task_bind(NULL, probe_fn, &probe);
    ck_assert_ptr_nonnull(task);
    mhdctx_task_cancel(task);
}
END_TEST

/* Many tasks bound to one context, run by several threads at once. */
#define POOL_THREADS     4
#define TASKS_PER_THREAD 200

struct pool_job {
    mhdctx_task *tasks[TASKS_PER_THREAD];
    mhdctx_context *expect;
    atomic_int *errors;
};

static void count_if_current(void *arg)
{
    struct pool_job *job = arg;
    if (mhdctx_current() != job->expect)
        atomic_fetch_add(job->errors, 1);
}

static void *pool_worker(void *arg)
{
    struct pool_job *job = arg;
    for (int i = 0; i < TASKS_PER_THREAD; i++) {
        mhdctx_task_run(job->tasks[i]);
        if (mhdctx_current() != NULL)
            atomic_fetch_add(job->errors, 1);
    }
    return NULL;
}

START_TEST(tasks_on_a_pool_balance_references)
{
    atomic_int errors = 0;
    mhdctx_context *ctx = new_context();
    json_t *marker = json_string("m");
    ck_assert_int_eq(mhdctx_set(ctx, "marker", marker), MHDCTX_OK);
    struct pool_job jobs[POOL_THREADS];
    for (int t = 0; t < POOL_THREADS; t++) {
        jobs[t].expect = ctx;
        jobs[t].errors = &errors;
        for (int i = 0; i < TASKS_PER_THREAD; i++) {
            jobs[t].tasks[i] = mhdctx_task_bind(ctx, count_if_current, &jobs[t]);
            ck_assert_ptr_nonnull(jobs[t].tasks[i]);
        }
    }
    ck_assert_uint_eq(refs_of(ctx), 1 + POOL_THREADS * TASKS_PER_THREAD);
    mhdctx_context_unref(ctx);
    pthread_t threads[POOL_THREADS];
    for (int t = 0; t < POOL_THREADS; t++)
        ck_assert_int_eq(pthread_create(&threads[t], NULL, pool_worker, &jobs[t]), 0);
    for (int t = 0; t < POOL_THREADS; t++)
        ck_assert_int_eq(pthread_join(threads[t], NULL), 0);
    ck_assert_int_eq(atomic_load(&errors), 0);
    ck_assert_uint_eq(marker->refcount, 1); /* the last task freed the context */
    json_decref(marker);
}
END_TEST

/* ---- export / import: round trip ------------------------------------------------------ */

/* A context with every field set. @flags: the incoming sampled flag (0 or 1). */
static mhdctx_context *full_context(unsigned char flags, bool with_user)
{
    mhdctx_context *ctx = mhdctx__context_create("/orders/7?x=1");
    ck_assert_ptr_nonnull(ctx);
    static const char id[] = "req-42.abc:~@+/=_";
    mhdctx__context_set_request_id(ctx, id, strlen(id), MHDCTX_ID_VALID);
    mhdctx_trace_parent tp = {"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", flags};
    static const char state[] = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";
    ck_assert_int_eq(mhdctx__context_set_trace(ctx, &tp, state, strlen(state)), MHDCTX_OK);
    if (with_user)
        ck_assert_int_eq(mhdctx_set_user_id(ctx, "user-\xc3\xa9 42"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_add_role(ctx, "admin"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_add_role(ctx, "ops team"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", "acme"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "attempt", json_integer(-3)), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "ratio", json_real(0.25)), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "beta", json_true()), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "legacy", json_false()), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "nothing", json_null()), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "tags", json_pack("[s,i,[]]", "a\"b\n", 1)),
                     MHDCTX_OK);
    ck_assert_int_eq(
        mhdctx_set_new(ctx, "order.info",
                       json_pack("{s:{s:b},s:s}", "nested", "deep", 1, "u", "\xe2\x82\xac")),
        MHDCTX_OK);
    return ctx;
}

static mhdctx_context *import_text(const char *text, mhdctx_error expect_err)
{
    mhdctx_error err = (mhdctx_error)99;
    mhdctx_context *ctx = mhdctx_context_import(text, strlen(text), &err);
    ck_assert_msg(err == expect_err, "import gave %s, expected %s: %s", mhdctx_error_name(err),
                  mhdctx_error_name(expect_err), text);
    if (expect_err == MHDCTX_OK)
        ck_assert_ptr_nonnull(ctx);
    else
        ck_assert_ptr_null(ctx);
    return ctx;
}

static void assert_same_keys(mhdctx_context *a, mhdctx_context *b)
{
    ck_assert_uint_eq(a->n_keys, b->n_keys);
    for (size_t i = 0; i < a->n_keys; i++) {
        json_t *va = mhdctx_get(a, a->keys[i].name);
        json_t *vb = mhdctx_get(b, a->keys[i].name);
        ck_assert_msg(vb != NULL, "key %s missing after import", a->keys[i].name);
        ck_assert_msg(json_equal(va, vb), "key %s differs after import", a->keys[i].name);
        json_decref(va);
        json_decref(vb);
    }
}

static void assert_same_context(mhdctx_context *a, mhdctx_context *b)
{
    ck_assert_str_eq(mhdctx_request_id(b), mhdctx_request_id(a));
    if (mhdctx_user_id(a))
        ck_assert_str_eq(mhdctx_user_id(b), mhdctx_user_id(a));
    else
        ck_assert_ptr_null(mhdctx_user_id(b));
    json_t *ra = mhdctx_roles_json(a), *rb = mhdctx_roles_json(b);
    ck_assert(json_equal(ra, rb));
    json_decref(ra);
    json_decref(rb);
    assert_same_keys(a, b);
    ck_assert_str_eq(mhdctx_trace_id(b), mhdctx_trace_id(a));
    ck_assert_str_eq(mhdctx_span_id(b), mhdctx_span_id(a));
    ck_assert_str_eq(mhdctx_parent_span_id(b), mhdctx_parent_span_id(a));
    ck_assert_uint_eq(mhdctx_trace_flags(b), mhdctx_trace_flags(a));
    ck_assert_str_eq(mhdctx_tracestate(b), mhdctx_tracestate(a));
}

/* Every flags byte an import carries comes out of the export spelt as it came in. */
START_TEST(export_keeps_every_trace_flags_byte)
{
    for (unsigned flags = 0; flags < 256; flags++) {
        char text[512];
        snprintf(text, sizeof text,
                 "{\"v\":1,\"request_id\":\"r1\",\"user_id\":null,\"roles\":[],\"keys\":{},"
                 "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
                 "\"span_id\":\"00f067aa0ba902b7\",\"parent_span_id\":\"\","
                 "\"trace_flags\":\"%02x\",\"tracestate\":\"\"}",
                 flags);
        mhdctx_context *ctx = mhdctx_context_import(text, strlen(text), NULL);
        ck_assert_msg(ctx != NULL, "flags %02x refused", flags);
        char *out = mhdctx_context_export(ctx);
        ck_assert_ptr_nonnull(out);
        ck_assert_str_eq(out, text);
        free(out);
        mhdctx_context_unref(ctx);
    }
}
END_TEST

START_TEST(export_writes_version_1_with_every_field)
{
    mhdctx_context *ctx = full_context(1, true);
    char *text = mhdctx_context_export(ctx);
    ck_assert_ptr_nonnull(text);
    json_error_t jerr;
    json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    ck_assert_msg(doc != NULL, "export is not JSON: %s", text);
    ck_assert_ptr_null(strchr(text, '\n')); /* compact */
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "v")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "request_id")),
                     "req-42.abc:~@+/=_");
    ck_assert_str_eq(json_string_value(json_object_get(doc, "user_id")), "user-\xc3\xa9 42");
    json_t *roles = json_pack("[s,s]", "admin", "ops team");
    ck_assert(json_equal(json_object_get(doc, "roles"), roles));
    json_decref(roles);
    ck_assert_uint_eq(json_object_size(json_object_get(doc, "keys")), 8);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "trace_id")),
                     "4bf92f3577b34da6a3ce929d0e0e4736");
    ck_assert_str_eq(json_string_value(json_object_get(doc, "span_id")), mhdctx_span_id(ctx));
    ck_assert_str_eq(json_string_value(json_object_get(doc, "parent_span_id")),
                     "00f067aa0ba902b7");
    ck_assert_str_eq(json_string_value(json_object_get(doc, "trace_flags")), "01");
    ck_assert_str_eq(json_string_value(json_object_get(doc, "tracestate")),
                     "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    ck_assert_uint_eq(json_object_size(doc), 10);
    json_decref(doc);
    free(text);
    mhdctx_context_unref(ctx);
    ck_assert_ptr_null(mhdctx_context_export(NULL));
}
END_TEST

/* ---- export under allocation failure ---------------------------------------------------
 * Every allocation of an export fails in turn, the library's and jansson's (both count
 * down mhdctx__alloc_countdown of the tests' fault-injection build): each export
 * returns NULL or the whole document, never a truncated or invalid one. */
static atomic_bool export_fault_fired;

static void *failing_json_malloc(size_t size)
{
    if (mhdctx__allocation_refused()) {
        atomic_store(&export_fault_fired, true);
        return NULL;
    }
    return malloc(size);
}

START_TEST(export_under_each_allocation_failure_is_null_or_whole)
{
    mhdctx_context *ctx = full_context(1, true);
    char *whole = mhdctx_context_export(ctx);
    ck_assert_ptr_nonnull(whole);
    json_set_alloc_funcs(failing_json_malloc, free);
    size_t failed = 0;
    for (long at = 0;; at++) {
        atomic_store(&export_fault_fired, false);
        atomic_store(&mhdctx__alloc_countdown, at);
        char *text = mhdctx_context_export(ctx);
        long left = atomic_exchange(&mhdctx__alloc_countdown, -1);
        bool fired = left < 0 || atomic_load(&export_fault_fired);
        if (text == NULL) {
            ck_assert_msg(fired, "NULL without a failed allocation (at %ld)", at);
            failed++;
            continue;
        }
        ck_assert_msg(strcmp(text, whole) == 0, "allocation %ld failed: %s", at, text);
        free(text);
        if (!fired)
            break; /* every allocation of an export has failed once */
    }
    json_set_alloc_funcs(malloc, free);
    ck_assert_uint_gt(failed, 5);
    free(whole);
    mhdctx_context_unref(ctx);
}
END_TEST

/* The exported text is the caller's (free()): it leaves the fault-injection build's
 * count of blocks allocated and not freed by the library, which it used to stay in. */

START_TEST(export_text_leaves_the_librarys_block_count)
{
    mhdctx_context *ctx = full_context(1, true);
    long before = atomic_load(&mhdctx__alloc_live);
    char *text = mhdctx_context_export(ctx);
    ck_assert_ptr_nonnull(text);
    free(text);
    ck_assert_int_eq(atomic_load(&mhdctx__alloc_live), before);
    mhdctx_context_unref(ctx);
}
END_TEST

/* loop: 0 sampled with user, 1 not sampled with user, 2 sampled anonymous,
 * 3 mhdctx_context_new() (new trace: parent "", no tracestate, no user) */
static mhdctx_context *round_trip_source(int variant)
{
    switch (variant) {
    case 0:
        return full_context(1, true);
    case 1:
        return full_context(0, true);
    case 2:
        return full_context(1, false);
    default:
        return new_context();
    }
}

START_TEST(export_import_round_trip)
{
    mhdctx_context *ctx = round_trip_source(_i);
    char *text = mhdctx_context_export(ctx);
    ck_assert_ptr_nonnull(text);
    mhdctx_context *copy = import_text(text, MHDCTX_OK);
    assert_same_context(ctx, copy);
    ck_assert_uint_eq(refs_of(copy), 1);
    /* exporting the copy gives the same document */
    char *again = mhdctx_context_export(copy);
    ck_assert_ptr_nonnull(again);
    json_t *d1 = json_loads(text, 0, NULL), *d2 = json_loads(again, 0, NULL);
    ck_assert(json_equal(d1, d2));
    json_decref(d1);
    json_decref(d2);
    free(again);
    free(text);
    mhdctx_context_unref(copy);
    mhdctx_context_unref(ctx);
}
END_TEST

/* A string value with a NUL byte is valid JSON to jansson, and mhdctx_set() takes it:
 * the export used to re-read it without JSON_ALLOW_NUL and fail (NULL), and the import
 * refused it. */
START_TEST(export_import_keep_a_nul_in_a_key_value)
{
    mhdctx_context *ctx = mhdctx_context_new();
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(mhdctx_set_new(ctx, "k", json_stringn("a\0b", 3)), MHDCTX_OK);
    char *text = mhdctx_context_export(ctx);
    ck_assert_ptr_nonnull(text);
    mhdctx_context *copy = import_text(text, MHDCTX_OK);
    json_t *got = mhdctx_get(copy, "k");
    ck_assert_uint_eq(json_string_length(got), 3);
    ck_assert_mem_eq(json_string_value(got), "a\0b", 3);
    json_decref(got);
    free(text);
    mhdctx_context_unref(copy);
    mhdctx_context_unref(ctx);
}
END_TEST

/* A value the caller still shares and changes after mhdctx_set(): the export carries
 * what the log lines carry, the value as it was set (it used to carry the grown array,
 * which the worker's import then refused as too long). */
START_TEST(export_carries_keys_as_they_were_set)
{
    mhdctx_context *ctx = mhdctx_context_new();
    ck_assert_ptr_nonnull(ctx);
    json_t *cart = json_pack("[i]", 1);
    ck_assert_int_eq(mhdctx_set(ctx, "cart", cart), MHDCTX_OK);
    for (int i = 0; i < 20000; i++)
        json_array_append_new(cart, json_integer(i));
    char *text = mhdctx_context_export(ctx);
    ck_assert_ptr_nonnull(text);
    mhdctx_context *copy = import_text(text, MHDCTX_OK);
    json_t *got = mhdctx_get(copy, "cart");
    json_t *expected = json_pack("[i]", 1);
    ck_assert(json_equal(got, expected));
    json_decref(expected);
    json_decref(got);
    json_decref(cart);
    free(text);
    mhdctx_context_unref(copy);
    mhdctx_context_unref(ctx);
}
END_TEST

static void log_in_current(void *arg)
{
    (void)arg;
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_INT("n", 1)), "same line");
}

START_TEST(imported_context_logs_the_same_fields)
{
    mhdctx_context *ctx = round_trip_source(_i);
    char *text = mhdctx_context_export(ctx);
    ck_assert_ptr_nonnull(text);
    mhdctx_context *copy = import_text(text, MHDCTX_OK);
    free(text);

    mhdctx_log_ctx(ctx, MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_INT("n", 1)), "same line");
    mhdctx_run(copy, log_in_current, NULL); /* the worker's way: enter the context */
    ck_assert_uint_eq(support_capture_n(), 2);
    const char *text_a = support_capture_line(0)->text, *text_b = support_capture_line(1)->text;
    json_t *a = support_capture_json(0, JSON_REJECT_DUPLICATES);
    json_t *b = support_capture_json(1, JSON_REJECT_DUPLICATES);
    static const char *const must[] = {"request_id",  "user_id",   "trace_id", "span_id",
                                       "trace_flags", "tenant_id", "attempt"};
    size_t n_must = _i == 3 ? 5 : sizeof must / sizeof *must;
    for (size_t i = 0; i < n_must; i++) {
        ck_assert_msg(json_object_get(b, must[i]) != NULL, "field %s missing: %s", must[i],
                      text_b);
        ck_assert_msg(json_equal(json_object_get(a, must[i]), json_object_get(b, must[i])),
                      "field %s differs:\n%s%s", must[i], text_a, text_b);
    }
    ck_assert_str_eq(json_string_value(json_object_get(b, "trace_id")), mhdctx_trace_id(ctx));
    ck_assert_str_eq(json_string_value(json_object_get(b, "span_id")), mhdctx_span_id(ctx));
    ck_assert_str_eq(json_string_value(json_object_get(b, "request_id")),
                     mhdctx_request_id(ctx));
    /* the whole lines agree but for the time */
    json_object_del(a, "time");
    json_object_del(b, "time");
    ck_assert_msg(json_equal(a, b), "lines differ:\n%s%s", text_a, text_b);
    json_decref(a);
    json_decref(b);
    mhdctx_context_unref(copy);
    mhdctx_context_unref(ctx);
}
END_TEST

/* A user id the setter accepts (printable bytes, not necessarily UTF-8) must export: the
 * export is documented to fail only on allocation failure or a NULL context. */
START_TEST(export_succeeds_for_any_accepted_user_id_and_role)
{
    mhdctx_context *ctx = new_context();
    /* Either the setters refuse bytes that are not UTF-8, or the export copes. */
    mhdctx_error rc = mhdctx_set_user_id(ctx, "latin1-\xe9t\xe9");
    ck_assert(rc == MHDCTX_OK || rc == MHDCTX_EINVAL);
    rc = mhdctx_add_role(ctx, "r\xff");
    ck_assert(rc == MHDCTX_OK || rc == MHDCTX_EINVAL);
    char *text = mhdctx_context_export(ctx);
    if (text == NULL)
        mhdctx_context_unref(ctx);
    ck_assert_msg(text != NULL, "export refused a context whose user id / role the setters "
                                "accepted (bytes that are not UTF-8)");
    json_t *doc = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    json_decref(doc);
    mhdctx_context *copy = import_text(text, MHDCTX_OK);
    mhdctx_context_unref(copy);
    free(text);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(import_accepts_a_null_err_pointer)
{
    mhdctx_context *ctx = full_context(1, true);
    char *text = mhdctx_context_export(ctx);
    ck_assert_ptr_nonnull(text);
    mhdctx_context *copy = mhdctx_context_import(text, strlen(text), NULL);
    ck_assert_ptr_nonnull(copy);
    mhdctx_context_unref(copy);
    ck_assert_ptr_null(mhdctx_context_import("nope", 4, NULL));
    ck_assert_ptr_null(mhdctx_context_import(NULL, 0, NULL));
    free(text);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(import_sets_err_ok_on_success)
{
    mhdctx_context *ctx = new_context();
    char *text = mhdctx_context_export(ctx);
    ck_assert_ptr_nonnull(text);
    mhdctx_error err = MHDCTX_EIO;
    mhdctx_context *copy = mhdctx_context_import(text, strlen(text), &err);
    ck_assert_ptr_nonnull(copy);
    ck_assert_int_eq(err, MHDCTX_OK);
    mhdctx_context_unref(copy);
    free(text);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(import_honours_len)
{
    mhdctx_context *ctx = new_context();
    char *text = mhdctx_context_export(ctx);
    ck_assert_ptr_nonnull(text);
    size_t len = strlen(text);
    char *padded = malloc(len + 8);
    ck_assert_ptr_nonnull(padded);
    memcpy(padded, text, len);
    memcpy(padded + len, "garbage", 8);
    mhdctx_error err;
    mhdctx_context *copy = mhdctx_context_import(padded, len, &err);
    ck_assert_int_eq(err, MHDCTX_OK);
    ck_assert_ptr_nonnull(copy);
    mhdctx_context_unref(copy);
    /* the garbage counts when len covers it */
    ck_assert_ptr_null(mhdctx_context_import(padded, len + 7, &err));
    ck_assert_int_eq(err, MHDCTX_EPARSE);
    free(padded);
    free(text);
    mhdctx_context_unref(ctx);
}
END_TEST

/* ---- export / import: refusals --------------------------------------------------------- */

struct raw_case {
    const char *name;
    const char *text;
    mhdctx_error expect;
};

static const struct raw_case raw_cases[] = {
    {"empty text", "", MHDCTX_EPARSE},
    {"not JSON", "not json at all", MHDCTX_EPARSE},
    {"truncated JSON", "{\"v\":1,\"request_id\":\"a\"", MHDCTX_EPARSE},
    {"array", "[1,2]", MHDCTX_EPARSE},
    {"number", "42", MHDCTX_EPARSE},
    {"string", "\"v\"", MHDCTX_EPARSE},
    {"null", "null", MHDCTX_EPARSE},
    {"empty object", "{}", MHDCTX_EPARSE},
    {"duplicate keys",
     "{\"v\":1,\"v\":1,\"request_id\":\"abc\",\"user_id\":null,\"roles\":[],\"keys\":{},"
     "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\":\"00f067aa0ba902b7\","
     "\"parent_span_id\":\"\",\"trace_flags\":\"01\",\"tracestate\":\"\"}",
     MHDCTX_EPARSE},
    {"duplicate request_id",
     "{\"v\":1,\"request_id\":\"abc\",\"request_id\":\"def\",\"user_id\":null,\"roles\":[],"
     "\"keys\":{},\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
     "\"span_id\":\"00f067aa0ba902b7\",\"parent_span_id\":\"\",\"trace_flags\":\"01\","
     "\"tracestate\":\"\"}",
     MHDCTX_EPARSE},
    {"duplicate user key",
     "{\"v\":1,\"request_id\":\"abc\",\"user_id\":null,\"roles\":[],\"keys\":{\"k\":1,\"k\":2},"
     "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\":\"00f067aa0ba902b7\","
     "\"parent_span_id\":\"\",\"trace_flags\":\"01\",\"tracestate\":\"\"}",
     MHDCTX_EPARSE},
    {"trailing data",
     "{\"v\":1,\"request_id\":\"abc\",\"user_id\":null,\"roles\":[],\"keys\":{},"
     "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\":\"00f067aa0ba902b7\","
     "\"parent_span_id\":\"\",\"trace_flags\":\"01\",\"tracestate\":\"\"} {}",
     MHDCTX_EPARSE},
    {"NUL escape in request id",
     "{\"v\":1,\"request_id\":\"a\\u0000b\",\"user_id\":null,\"roles\":[],\"keys\":{},"
     "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\":\"00f067aa0ba902b7\","
     "\"parent_span_id\":\"\",\"trace_flags\":\"01\",\"tracestate\":\"\"}",
     MHDCTX_EPARSE},
};

#define N_RAW_CASES ((int)(sizeof raw_cases / sizeof *raw_cases))

START_TEST(import_refuses_raw_text)
{
    const struct raw_case *c = &raw_cases[_i];
    mhdctx_error err = MHDCTX_OK;
    mhdctx_context *ctx = mhdctx_context_import(c->text, strlen(c->text), &err);
    ck_assert_msg(ctx == NULL, "case \"%s\" accepted", c->name);
    ck_assert_msg(err == c->expect, "case \"%s\": got %s, expected %s", c->name,
                  mhdctx_error_name(err), mhdctx_error_name(c->expect));
}
END_TEST

/* The valid base document the mutation cases start from. */
static json_t *base_doc(void)
{
    json_t *doc =
        json_pack("{s:i, s:s, s:s, s:[s], s:{s:s, s:i}, s:s, s:s, s:s, s:s, s:s}", "v", 1,
                  "request_id", "base-request", "user_id", "u1", "roles", "admin", "keys",
                  "tenant_id", "acme", "n", 5, "trace_id", "4bf92f3577b34da6a3ce929d0e0e4736",
                  "span_id", "00f067aa0ba902b7", "parent_span_id", "b7ad6b7169203331",
                  "trace_flags", "01", "tracestate", "rojo=00f067aa0ba902b7");
    ck_assert_ptr_nonnull(doc);
    return doc;
}

#define ANY_ERROR ((mhdctx_error)-1)

struct mutation {
    const char *name;
    const char *field;
    const char *json; /* new value as JSON text (JSON_DECODE_ANY); NULL: delete; "@n":
                         generated, see generated_value() */
    mhdctx_error expect;
};

static const struct mutation mutations[] = {
    {"base document is valid", "v", "1", MHDCTX_OK},
    {"user key value with a NUL", "keys", "{\"k\":\"a\\u0000b\"}", MHDCTX_OK},
    {"user_id with a NUL", "user_id", "\"u\\u0000x\"", MHDCTX_EPARSE},
    {"role with a NUL", "roles", "[\"admin\\u0000\"]", MHDCTX_EPARSE},
    {"trace_flags with a NUL", "trace_flags", "\"01\\u0000\"", MHDCTX_EPARSE},
    {"tracestate with a NUL", "tracestate", "\"a=1\\u0000\"", MHDCTX_EPARSE},
    {"v missing", "v", NULL, MHDCTX_EPARSE},
    {"v 2", "v", "2", MHDCTX_EPARSE},
    {"v 0", "v", "0", MHDCTX_EPARSE},
    {"v as string", "v", "\"1\"", MHDCTX_EPARSE},
    {"v as real", "v", "1.0", MHDCTX_EPARSE},
    {"v true", "v", "true", MHDCTX_EPARSE},
    {"unknown field", "extra", "1", MHDCTX_EPARSE},
    {"unknown null field", "span", "null", MHDCTX_EPARSE},
    {"request_id with a space", "request_id", "\"a b\"", MHDCTX_EINVAL},
    {"request_id empty", "request_id", "\"\"", MHDCTX_EINVAL},
    {"request_id 300 chars", "request_id", "@300", MHDCTX_EINVAL},
    {"request_id 257 chars", "request_id", "@257", MHDCTX_EINVAL},
    {"request_id 256 chars", "request_id", "@256", MHDCTX_OK},
    {"request_id with */", "request_id", "\"*/\"", MHDCTX_EINVAL},
    {"request_id with a newline", "request_id", "\"a\\nb\"", MHDCTX_EINVAL},
    {"request_id non-ASCII", "request_id", "\"caf\\u00e9\"", MHDCTX_EINVAL},
    {"request_id a number", "request_id", "7", MHDCTX_EPARSE},
    {"request_id missing", "request_id", NULL, MHDCTX_EPARSE},
    {"trace_id uppercase", "trace_id", "\"4BF92F3577B34DA6A3CE929D0E0E4736\"", MHDCTX_EINVAL},
    {"trace_id one uppercase", "trace_id", "\"4bf92f3577b34da6a3ce929d0e0e473A\"",
     MHDCTX_EINVAL},
    {"trace_id all zero", "trace_id", "\"00000000000000000000000000000000\"", MHDCTX_EINVAL},
    {"trace_id 31 chars", "trace_id", "\"4bf92f3577b34da6a3ce929d0e0e473\"", MHDCTX_EINVAL},
    {"trace_id 33 chars", "trace_id", "\"4bf92f3577b34da6a3ce929d0e0e47361\"", MHDCTX_EINVAL},
    {"trace_id empty", "trace_id", "\"\"", MHDCTX_EINVAL},
    {"trace_id non-hex", "trace_id", "\"4bf92f3577b34da6a3ce929d0e0e473g\"", MHDCTX_EINVAL},
    {"trace_id missing", "trace_id", NULL, ANY_ERROR},
    {"span_id uppercase", "span_id", "\"00F067AA0BA902B7\"", MHDCTX_EINVAL},
    {"span_id all zero", "span_id", "\"0000000000000000\"", MHDCTX_EINVAL},
    {"span_id 15 chars", "span_id", "\"00f067aa0ba902b\"", MHDCTX_EINVAL},
    {"span_id 17 chars", "span_id", "\"00f067aa0ba902b71\"", MHDCTX_EINVAL},
    {"span_id missing", "span_id", NULL, ANY_ERROR},
    {"parent_span_id empty is a root", "parent_span_id", "\"\"", MHDCTX_OK},
    {"parent_span_id uppercase", "parent_span_id", "\"B7AD6B7169203331\"", MHDCTX_EINVAL},
    {"parent_span_id all zero", "parent_span_id", "\"0000000000000000\"", MHDCTX_EINVAL},
    {"parent_span_id short", "parent_span_id", "\"b7ad\"", MHDCTX_EINVAL},
    {"parent_span_id a number", "parent_span_id", "5", ANY_ERROR},
    {"parent_span_id an object", "parent_span_id", "{}", ANY_ERROR},
    {"trace_flags a number", "trace_flags", "1", ANY_ERROR},
    {"trace_flags 00", "trace_flags", "\"00\"", MHDCTX_OK},
    {"trace_flags one digit", "trace_flags", "\"1\"", MHDCTX_EINVAL},
    {"trace_flags three digits", "trace_flags", "\"001\"", MHDCTX_EINVAL},
    {"trace_flags uppercase", "trace_flags", "\"0A\"", MHDCTX_EINVAL},
    {"trace_flags non-hex", "trace_flags", "\"0g\"", MHDCTX_EINVAL},
    {"tracestate empty", "tracestate", "\"\"", MHDCTX_OK},
    {"tracestate uppercase key", "tracestate", "\"Rojo=1\"", MHDCTX_EINVAL},
    {"tracestate without =", "tracestate", "\"rojo\"", MHDCTX_EINVAL},
    {"tracestate value with =", "tracestate", "\"foo=bar=baz\"", MHDCTX_EINVAL},
    {"tracestate a number", "tracestate", "5", ANY_ERROR},
    {"tracestate an array", "tracestate", "[\"rojo=1\"]", ANY_ERROR},
    {"tracestate 33 members", "tracestate", "@ts33", MHDCTX_EINVAL},
    {"roles a string", "roles", "\"admin\"", MHDCTX_EPARSE},
    {"roles an object", "roles", "{\"admin\":true}", MHDCTX_EPARSE},
    {"roles null", "roles", "null", MHDCTX_EPARSE},
    {"roles with a number", "roles", "[\"a\",1]", MHDCTX_EPARSE},
    {"roles with an empty string", "roles", "[\"\"]", MHDCTX_EINVAL},
    {"roles with a control byte", "roles", "[\"a\\u0001\"]", MHDCTX_EINVAL},
    {"roles 33", "roles", "@roles33", MHDCTX_ELIMIT},
    {"roles 32", "roles", "@roles32", MHDCTX_OK},
    {"roles empty", "roles", "[]", MHDCTX_OK},
    {"user_id null", "user_id", "null", MHDCTX_OK},
    {"user_id missing", "user_id", NULL, MHDCTX_OK},
    {"user_id a number", "user_id", "42", MHDCTX_EPARSE},
    {"user_id an array", "user_id", "[\"u\"]", MHDCTX_EPARSE},
    {"user_id empty", "user_id", "\"\"", MHDCTX_EINVAL},
    {"user_id with a control byte", "user_id", "\"u\\u001b[31m\"", MHDCTX_EINVAL},
    {"user_id 257 chars", "user_id", "@257", MHDCTX_ELIMIT},
    {"keys an array", "keys", "[]", MHDCTX_EPARSE},
    {"keys a string", "keys", "\"k\"", MHDCTX_EPARSE},
    {"keys reserved request_id", "keys", "{\"request_id\":\"forged\"}", MHDCTX_ERESERVED},
    {"keys reserved user_id", "keys", "{\"ok\":1,\"user_id\":\"root\"}", MHDCTX_ERESERVED},
    {"keys reserved trace_id", "keys", "{\"trace_id\":\"x\"}", MHDCTX_ERESERVED},
    {"keys reserved level", "keys", "{\"level\":\"error\"}", MHDCTX_ERESERVED},
    {"keys bad name", "keys", "{\"bad key\":1}", MHDCTX_EINVAL},
    {"keys empty name", "keys", "{\"\":1}", MHDCTX_EINVAL},
    {"keys 33", "keys", "@keys33", MHDCTX_ELIMIT},
    {"keys 32", "keys", "@keys32", MHDCTX_OK},
    {"keys value too large", "keys", "@bigvalue", MHDCTX_ELIMIT},
    {"keys name 65 chars", "keys", "@key65", MHDCTX_ELIMIT},
};

#define N_MUTATIONS ((int)(sizeof mutations / sizeof *mutations))

static json_t *generated_value(const char *spec)
{
    if (strcmp(spec, "@300") == 0 || strcmp(spec, "@257") == 0 || strcmp(spec, "@256") == 0) {
        char *s = repeat('r', (size_t)atoi(spec + 1));
        json_t *v = json_string(s);
        free(s);
        return v;
    }
    if (strcmp(spec, "@ts33") == 0) {
        char list[33 * 8];
        size_t used = 0;
        for (int i = 0; i < 33; i++)
            used +=
                (size_t)snprintf(list + used, sizeof list - used, "%sk%d=1", i ? "," : "", i);
        return json_string(list);
    }
    if (strncmp(spec, "@roles", 6) == 0) {
        json_t *a = json_array();
        for (int i = 0; i < atoi(spec + 6); i++) {
            char role[32];
            snprintf(role, sizeof role, "role%d", i);
            json_array_append_new(a, json_string(role));
        }
        return a;
    }
    if (strncmp(spec, "@keys", 5) == 0) {
        json_t *o = json_object();
        for (int i = 0; i < atoi(spec + 5); i++) {
            char key[32];
            snprintf(key, sizeof key, "key%d", i);
            json_object_set_new(o, key, json_integer(i));
        }
        return o;
    }
    if (strcmp(spec, "@bigvalue") == 0) {
        char *s = repeat('x', MHDCTX_MAX_VALUE_LEN);
        json_t *o = json_pack("{s:s}", "big", s);
        free(s);
        return o;
    }
    if (strcmp(spec, "@key65") == 0) {
        char *k = repeat('k', MHDCTX_MAX_KEY_LEN + 1);
        json_t *o = json_object();
        json_object_set_new(o, k, json_true());
        free(k);
        return o;
    }
    ck_abort_msg("unknown generated value %s", spec);
    return NULL;
}

START_TEST(import_refuses_each_invalid_field)
{
    const struct mutation *m = &mutations[_i];
    json_t *doc = base_doc();
    if (m->json == NULL) {
        json_object_del(doc, m->field);
    } else {
        json_t *value = m->json[0] == '@'
                            ? generated_value(m->json)
                            : json_loads(m->json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        ck_assert_msg(value != NULL, "bad test value %s", m->json);
        json_object_set_new(doc, m->field, value);
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    ck_assert_ptr_nonnull(text);
    json_decref(doc);
    mhdctx_error err = (mhdctx_error)99;
    mhdctx_context *ctx = mhdctx_context_import(text, strlen(text), &err);
    /* Everything is released before asserting, so a failure leaks nothing (CK_FORK=no). */
    bool accepted = ctx != NULL;
    bool trace_ok =
        ctx == NULL || strcmp(mhdctx_trace_id(ctx), "4bf92f3577b34da6a3ce929d0e0e4736") == 0;
    unsigned refs = ctx ? refs_of(ctx) : 1;
    mhdctx_context_unref(ctx);
    free(text);
    if (m->expect == ANY_ERROR) {
        ck_assert_msg(!accepted && err != MHDCTX_OK && err != (mhdctx_error)99,
                      "case \"%s\": accepted or no error (%s)", m->name,
                      mhdctx_error_name(err));
    } else {
        ck_assert_msg(err == m->expect, "case \"%s\": got %s, expected %s", m->name,
                      mhdctx_error_name(err), mhdctx_error_name(m->expect));
        ck_assert_msg(accepted == (m->expect == MHDCTX_OK), "case \"%s\": accepted %d with %s",
                      m->name, (int)accepted, mhdctx_error_name(err));
    }
    ck_assert(trace_ok);
    ck_assert_uint_eq(refs, 1);
}
END_TEST

START_TEST(import_base_document_values)
{
    json_t *doc = base_doc();
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    mhdctx_context *ctx = import_text(text, MHDCTX_OK);
    free(text);
    ck_assert_str_eq(mhdctx_request_id(ctx), "base-request");
    ck_assert_int_eq(mhdctx_request_id_verdict(ctx), MHDCTX_ID_VALID);
    ck_assert_str_eq(mhdctx_user_id(ctx), "u1");
    ck_assert(mhdctx_has_role(ctx, "admin"));
    json_t *tenant = mhdctx_get(ctx, "tenant_id");
    ck_assert_str_eq(json_string_value(tenant), "acme");
    json_decref(tenant);
    ck_assert_str_eq(mhdctx_trace_id(ctx), "4bf92f3577b34da6a3ce929d0e0e4736");
    ck_assert_str_eq(mhdctx_span_id(ctx), "00f067aa0ba902b7");
    ck_assert_str_eq(mhdctx_parent_span_id(ctx), "b7ad6b7169203331");
    ck_assert_uint_eq(mhdctx_trace_flags(ctx), 1);
    ck_assert_str_eq(mhdctx_tracestate(ctx), "rojo=00f067aa0ba902b7");
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(import_refuses_null_text)
{
    mhdctx_error err = MHDCTX_OK;
    ck_assert_ptr_null(mhdctx_context_import(NULL, 0, &err));
    ck_assert_int_eq(err, MHDCTX_EINVAL);
    err = MHDCTX_OK;
    ck_assert_ptr_null(mhdctx_context_import(NULL, 100, &err));
    ck_assert_int_eq(err, MHDCTX_EINVAL);
}
END_TEST

/* A valid document padded with JSON whitespace to exactly @total bytes (owned). */
static char *padded_document(size_t total)
{
    json_t *doc = base_doc();
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    size_t len = strlen(text);
    ck_assert_uint_lt(len, total);
    char *out = malloc(total + 1);
    ck_assert_ptr_nonnull(out);
    memcpy(out, text, len);
    memset(out + len, ' ', total - len);
    out[total] = '\0';
    free(text);
    return out;
}

START_TEST(import_length_limit)
{
    mhdctx_error err = MHDCTX_OK;
    char *text = padded_document(MHDCTX_EXPORT_MAX_LEN);
    mhdctx_context *ctx = mhdctx_context_import(text, MHDCTX_EXPORT_MAX_LEN, &err);
    ck_assert_int_eq(err, MHDCTX_OK);
    ck_assert_ptr_nonnull(ctx);
    mhdctx_context_unref(ctx);
    free(text);

    text = padded_document(MHDCTX_EXPORT_MAX_LEN + 1);
    ctx = mhdctx_context_import(text, MHDCTX_EXPORT_MAX_LEN + 1, &err);
    ck_assert_ptr_null(ctx);
    ck_assert_int_eq(err, MHDCTX_ELIMIT);
    ck_assert_ptr_null(mhdctx_context_import(text, MHDCTX_EXPORT_MAX_LEN + 1, NULL));
    free(text);
}
END_TEST

/* ---- hostile input ------------------------------------------------------------------------
 */

static unsigned long long rng_state;

static unsigned rnd(unsigned bound)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % bound);
}

static bool is_documented_import_error(mhdctx_error err)
{
    return err == MHDCTX_EPARSE || err == MHDCTX_EINVAL || err == MHDCTX_ELIMIT ||
           err == MHDCTX_ERESERVED || err == MHDCTX_ENOMEM;
}

/* Whatever import returns is either a refusal or a context whose fields obey the rules. */
static void check_import_outcome(const char *bytes, size_t len)
{
    mhdctx_error err = (mhdctx_error)99;
    mhdctx_context *ctx = mhdctx_context_import(bytes, len, &err);
    if (ctx == NULL) {
        ck_assert_msg(is_documented_import_error(err), "refused with %s",
                      mhdctx_error_name(err));
        return;
    }
    ck_assert_int_eq(err, MHDCTX_OK);
    const char *id = mhdctx_request_id(ctx);
    ck_assert_int_eq(mhdctx_request_id_check(id, strlen(id), MHDCTX_REQUEST_ID_LIMIT),
                     MHDCTX_ID_VALID);
    ck_assert_uint_eq(strlen(mhdctx_trace_id(ctx)), MHDCTX_TRACE_ID_LEN);
    ck_assert_uint_eq(strlen(mhdctx_span_id(ctx)), MHDCTX_SPAN_ID_LEN);
    char *again = mhdctx_context_export(ctx);
    ck_assert_ptr_nonnull(again);
    mhdctx_error err2;
    mhdctx_context *copy = mhdctx_context_import(again, strlen(again), &err2);
    ck_assert_msg(copy != NULL, "re-import of an accepted context failed (%s): %s",
                  mhdctx_error_name(err2), again);
    mhdctx_context_unref(copy);
    free(again);
    mhdctx_context_unref(ctx);
}

START_TEST(import_survives_random_bytes)
{
    rng_state = 0x243f6a8885a308d3ull;
    char buf[512];
    for (int round = 0; round < 3000; round++) {
        size_t len = rnd(sizeof buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = (char)rnd(256);
        if (round % 3 == 0 && len > 0)
            buf[0] = '{'; /* get past the first byte more often */
        check_import_outcome(buf, len);
    }
}
END_TEST

START_TEST(import_survives_mutated_documents)
{
    rng_state = 0x13198a2e03707344ull;
    mhdctx_context *src = full_context(1, true);
    char *text = mhdctx_context_export(src);
    mhdctx_context_unref(src);
    ck_assert_ptr_nonnull(text);
    size_t len = strlen(text);
    char *buf = malloc(len + 1);
    ck_assert_ptr_nonnull(buf);
    static const char interesting[] = "\"\\{}[],:0aA \x01\x7f\x80\xc3\xff";
    int accepted = 0;
    for (int round = 0; round < 3000; round++) {
        memcpy(buf, text, len + 1);
        size_t cut = len;
        int edits = 1 + (int)rnd(4);
        for (int e = 0; e < edits; e++) {
            size_t pos = rnd((unsigned)len);
            buf[pos] = rnd(2) ? (char)rnd(256) : interesting[rnd(sizeof interesting - 1)];
        }
        if (rnd(8) == 0)
            cut = rnd((unsigned)len + 1); /* truncated document */
        mhdctx_error err = (mhdctx_error)99;
        mhdctx_context *ctx = mhdctx_context_import(buf, cut, &err);
        accepted += ctx != NULL;
        mhdctx_context_unref(ctx);
        check_import_outcome(buf, cut);
    }
    ck_assert_int_gt(accepted, 0); /* some edits are harmless (inside a string value) */
    free(buf);
    free(text);
}
END_TEST

/* ---- suite ------------------------------------------------------------------------------ */

static Suite *handoff_suite(void)
{
    Suite *s = suite_create("handoff");

    TCase *tc = tcase_create("tasks");
    tcase_add_test(tc, task_runs_with_its_context_current);
    tcase_add_test(tc, task_restores_the_workers_own_context);
    tcase_add_test(tc, task_bind_with_null_fn_returns_null);
    tcase_add_test(tc, task_bound_with_null_takes_the_current_context);
    tcase_add_test(tc, task_bound_without_any_context_runs_with_none);
    tcase_add_test(tc, task_keeps_the_context_alive_across_threads);
    tcase_add_test(tc, task_cancel_drops_the_reference_without_running);
    tcase_add_test(tc, tasks_on_a_pool_balance_references);
    suite_add_tcase(s, tc);

    tc = tcase_create("export_import");
    tcase_add_checked_fixture(tc, support_capture_start_info, support_capture_stop);
    tcase_add_test(tc, export_writes_version_1_with_every_field);
    tcase_add_test(tc, export_keeps_every_trace_flags_byte);
    tcase_add_test(tc, export_carries_keys_as_they_were_set);
    tcase_add_test(tc, export_import_keep_a_nul_in_a_key_value);
    tcase_add_test(tc, export_under_each_allocation_failure_is_null_or_whole);
    tcase_add_test(tc, export_text_leaves_the_librarys_block_count);
    tcase_add_loop_test(tc, export_import_round_trip, 0, 4);
    tcase_add_loop_test(tc, imported_context_logs_the_same_fields, 0, 4);
    tcase_add_test(tc, export_succeeds_for_any_accepted_user_id_and_role);
    tcase_add_test(tc, import_accepts_a_null_err_pointer);
    tcase_add_test(tc, import_sets_err_ok_on_success);
    tcase_add_test(tc, import_honours_len);
    tcase_add_test(tc, import_base_document_values);
    tcase_add_test(tc, import_refuses_null_text);
    tcase_add_test(tc, import_length_limit);
    tcase_add_loop_test(tc, import_refuses_raw_text, 0, N_RAW_CASES);
    tcase_add_loop_test(tc, import_refuses_each_invalid_field, 0, N_MUTATIONS);
    suite_add_tcase(s, tc);

    tc = tcase_create("hostile");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, import_survives_random_bytes);
    tcase_add_test(tc, import_survives_mutated_documents);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(handoff_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failures = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failures ? 1 : 0;
}
