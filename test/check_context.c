/*
 * check_context.c - the per-request context: lifetime, the thread's current context,
 * request fields, user id, roles, user keys, and concurrent use from several threads.
 */
#include "internal.h"
#include "support.h"

#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- lifetime ------------------------------------------------------------------------ */

START_TEST(context_new_has_refcount_one_and_fresh_uuid)
{
    mhdctx_context *ctx = new_context();
    ck_assert_uint_eq(refs_of(ctx), 1);
    const char *id = mhdctx_request_id(ctx);
    ck_assert_uint_eq(strlen(id), MHDCTX_UUID_LEN);
    ck_assert_int_eq(id[14], '4');
    ck_assert_int_eq(mhdctx_request_id_verdict(ctx), MHDCTX_ID_MISSING);
    ck_assert_str_eq(mhdctx_method(ctx), "");
    ck_assert_str_eq(mhdctx_path(ctx), "");
    ck_assert_ptr_null(mhdctx_query(ctx));
    ck_assert_ptr_null(mhdctx_user_id(ctx));
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(context_new_ids_differ)
{
    mhdctx_context *a = new_context();
    mhdctx_context *b = new_context();
    ck_assert_str_ne(mhdctx_request_id(a), mhdctx_request_id(b));
    mhdctx_context_unref(a);
    mhdctx_context_unref(b);
}
END_TEST

START_TEST(context_ref_and_unref_count)
{
    mhdctx_context *ctx = new_context();
    ck_assert_ptr_eq(mhdctx_context_ref(ctx), ctx);
    ck_assert_uint_eq(refs_of(ctx), 2);
    ck_assert_ptr_eq(mhdctx_context_ref(ctx), ctx);
    ck_assert_uint_eq(refs_of(ctx), 3);
    mhdctx_context_unref(ctx);
    ck_assert_uint_eq(refs_of(ctx), 2);
    mhdctx_context_unref(ctx);
    ck_assert_uint_eq(refs_of(ctx), 1);
    mhdctx_context_unref(ctx); /* frees: valgrind/ASan see no leak */
}
END_TEST

START_TEST(context_ref_and_unref_accept_null)
{
    ck_assert_ptr_null(mhdctx_context_ref(NULL));
    mhdctx_context_unref(NULL);
}
END_TEST

START_TEST(context_last_unref_frees_everything)
{
    /* Every optional field allocated: the leak checkers prove the last unref frees. */
    mhdctx_context *ctx = mhdctx__context_create("/x?y=1");
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(mhdctx__context_set_method(ctx, "A-VERY-LONG-EXTENSION-METHOD-NAME"),
                     MHDCTX_OK);
    ck_assert_str_eq(mhdctx_method(ctx), "A-VERY-LONG-EXTENSION-METHOD-NAME");
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "u1"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "u2"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_add_role(ctx, "r1"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_add_role(ctx, "r2"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "k1", "v1"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "k2", json_pack("{s:[i,i]}", "a", 1, 2)), MHDCTX_OK);
    mhdctx_context_ref(ctx);
    mhdctx_context_unref(ctx);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(context_short_method_is_stored_inline)
{
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx__context_set_method(ctx, "GET"), MHDCTX_OK);
    ck_assert_str_eq(mhdctx_method(ctx), "GET");
    ck_assert_ptr_null(ctx->method_heap);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(context_accessors_accept_null)
{
    ck_assert_str_eq(mhdctx_request_id(NULL), "");
    ck_assert_int_eq(mhdctx_request_id_verdict(NULL), MHDCTX_ID_MISSING);
    ck_assert_str_eq(mhdctx_method(NULL), "");
    ck_assert_str_eq(mhdctx_path(NULL), "");
    ck_assert_ptr_null(mhdctx_query(NULL));
    ck_assert_ptr_null(mhdctx_user_id(NULL));
    ck_assert(!mhdctx_has_role(NULL, "x"));
    json_t *none = mhdctx_get(NULL, "k");
    ck_assert_ptr_null(none);
    ck_assert_uint_eq(mhdctx_start_monotonic_ns(NULL), 0);
    ck_assert_double_eq(mhdctx_elapsed_ms(NULL), 0.0);
}
END_TEST

START_TEST(context_times_are_set_at_creation)
{
    struct timespec before;
    clock_gettime(CLOCK_REALTIME, &before);
    mhdctx_context *ctx = new_context();
    struct timespec start = mhdctx_start_realtime(ctx);
    ck_assert_int_ge(start.tv_sec, before.tv_sec);
    ck_assert_int_le(start.tv_sec, before.tv_sec + 2);
    ck_assert_uint_gt(mhdctx_start_monotonic_ns(ctx), 0);
    double first = mhdctx_elapsed_ms(ctx);
    ck_assert_double_ge(first, 0.0);
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
    double second = mhdctx_elapsed_ms(ctx);
    ck_assert_double_ge(second, first + 19.0);
    ck_assert_double_lt(second, 10000.0);
    mhdctx_context_unref(ctx);
}
END_TEST

static int64_t realtime_ns(struct timespec t)
{
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The wall-clock start is derived at the first reader: read 20 ms later, it still says
 * when the context was made, and it never changes afterwards. */
START_TEST(context_wall_clock_start_is_the_creation_time)
{
    struct timespec before, after;
    clock_gettime(CLOCK_REALTIME, &before);
    mhdctx_context *ctx = new_context();
    clock_gettime(CLOCK_REALTIME, &after);
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
    int64_t start = realtime_ns(mhdctx_start_realtime(ctx));
    /* 2 ms of slack: the two clocks are read at slightly different moments */
    ck_assert_int_ge(start, realtime_ns(before) - 2000000);
    ck_assert_int_le(start, realtime_ns(after) + 2000000);
    nanosleep(&pause, NULL);
    ck_assert_int_eq(realtime_ns(mhdctx_start_realtime(ctx)), start);
    ck_assert_int_lt(mhdctx_start_realtime(ctx).tv_nsec, 1000000000);
    mhdctx_context_unref(ctx);
}
END_TEST

/* ---- path and query ------------------------------------------------------------------- */

static const struct {
    const char *uri;
    const char *path;
    const char *query; /* NULL: none */
} uri_cases[] = {
    {"/a/b?x=1", "/a/b", "x=1"},
    {"/a/b", "/a/b", NULL},
    {"/", "/", NULL},
    {"/search?", "/search", ""},
    {"/a?x=1?y=2", "/a", "x=1?y=2"},
    {"/a?x=%20&y", "/a", "x=%20&y"},
    {"?only=query", "", "only=query"},
    {"", "", NULL},
};

START_TEST(context_create_splits_path_and_query)
{
    mhdctx_context *ctx = mhdctx__context_create(uri_cases[_i].uri);
    ck_assert_ptr_nonnull(ctx);
    ck_assert_str_eq(mhdctx_path(ctx), uri_cases[_i].path);
    if (uri_cases[_i].query)
        ck_assert_pstr_eq(mhdctx_query(ctx), uri_cases[_i].query);
    else
        ck_assert_ptr_null(mhdctx_query(ctx));
    ck_assert_uint_eq(refs_of(ctx), 1);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(context_create_with_null_uri_has_empty_path)
{
    mhdctx_context *ctx = mhdctx__context_create(NULL);
    ck_assert_ptr_nonnull(ctx);
    ck_assert_str_eq(mhdctx_path(ctx), "");
    ck_assert_ptr_null(mhdctx_query(ctx));
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(context_set_request_id_truncates_at_limit)
{
    mhdctx_context *ctx = mhdctx__context_create("/");
    char *id = repeat('i', MHDCTX_REQUEST_ID_LIMIT + 10);
    mhdctx__context_set_request_id(ctx, id, strlen(id), MHDCTX_ID_VALID);
    ck_assert_uint_eq(strlen(mhdctx_request_id(ctx)), MHDCTX_REQUEST_ID_LIMIT);
    ck_assert_int_eq(mhdctx_request_id_verdict(ctx), MHDCTX_ID_VALID);
    mhdctx__context_set_request_id(ctx, "abc-1", 5, MHDCTX_ID_VALID);
    ck_assert_str_eq(mhdctx_request_id(ctx), "abc-1");
    free(id);
    mhdctx_context_unref(ctx);
}
END_TEST

/* ---- current context ------------------------------------------------------------------ */

START_TEST(current_is_null_outside_run)
{
    ck_assert_ptr_null(mhdctx_current());
}
END_TEST

struct seen {
    mhdctx_context *inner_expected;
    mhdctx_context *observed[4];
    int n;
};

static void record_current(void *arg)
{
    struct seen *s = arg;
    s->observed[s->n++] = mhdctx_current();
}

START_TEST(run_sets_current_and_restores_null)
{
    mhdctx_context *ctx = new_context();
    struct seen s = {0};
    mhdctx_run(ctx, record_current, &s);
    ck_assert_int_eq(s.n, 1);
    ck_assert_ptr_eq(s.observed[0], ctx);
    ck_assert_ptr_null(mhdctx_current());
    mhdctx_context_unref(ctx);
}
END_TEST

struct nesting {
    mhdctx_context *outer, *inner;
    mhdctx_context *seen[6];
    int n;
};

static void nested_leaf(void *arg)
{
    struct nesting *t = arg;
    t->seen[t->n++] = mhdctx_current();
}

static void nested_outer(void *arg)
{
    struct nesting *t = arg;
    t->seen[t->n++] = mhdctx_current();   /* outer */
    mhdctx_run(t->inner, nested_leaf, t); /* inner */
    t->seen[t->n++] = mhdctx_current();   /* outer again */
    mhdctx_run(NULL, nested_leaf, t);     /* NULL inside */
    t->seen[t->n++] = mhdctx_current();   /* outer again */
}

START_TEST(run_nests_and_restores_each_level)
{
    struct nesting t = {.outer = new_context(), .inner = new_context()};
    mhdctx_run(t.outer, nested_outer, &t);
    ck_assert_int_eq(t.n, 5);
    ck_assert_ptr_eq(t.seen[0], t.outer);
    ck_assert_ptr_eq(t.seen[1], t.inner);
    ck_assert_ptr_eq(t.seen[2], t.outer);
    ck_assert_ptr_null(t.seen[3]);
    ck_assert_ptr_eq(t.seen[4], t.outer);
    ck_assert_ptr_null(mhdctx_current());
    mhdctx_context_unref(t.outer);
    mhdctx_context_unref(t.inner);
}
END_TEST

START_TEST(run_with_null_ctx_clears_current_inside)
{
    mhdctx_context *ctx = new_context();
    mhdctx_context *previous = mhdctx__enter(ctx);
    ck_assert_ptr_null(previous);
    struct seen s = {0};
    mhdctx_run(NULL, record_current, &s);
    ck_assert_ptr_null(s.observed[0]);
    ck_assert_ptr_eq(mhdctx_current(), ctx); /* restored */
    mhdctx__enter(previous);
    ck_assert_ptr_null(mhdctx_current());
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(run_with_null_fn_does_nothing)
{
    mhdctx_context *ctx = new_context();
    mhdctx_run(ctx, NULL, NULL);
    ck_assert_ptr_null(mhdctx_current());
    mhdctx_context_unref(ctx);
}
END_TEST

static void *current_on_other_thread(void *arg)
{
    mhdctx_context **out = arg;
    *out = mhdctx_current();
    return NULL;
}

static void start_thread_inside(void *arg)
{
    mhdctx_context **out = arg;
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, current_on_other_thread, out), 0);
    pthread_join(thread, NULL);
}

START_TEST(current_is_per_thread)
{
    mhdctx_context *ctx = new_context();
    mhdctx_context *observed = ctx; /* overwritten by the thread */
    mhdctx_run(ctx, start_thread_inside, &observed);
    ck_assert_ptr_null(observed);
    mhdctx_context_unref(ctx);
}
END_TEST

/* ---- user id -------------------------------------------------------------------------- */

START_TEST(user_id_set_get_and_clear)
{
    mhdctx_context *ctx = new_context();
    ck_assert_ptr_null(mhdctx_user_id(ctx));
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "42"), MHDCTX_OK);
    ck_assert_pstr_eq(mhdctx_user_id(ctx), "42");
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "alice@example.com"), MHDCTX_OK);
    ck_assert_pstr_eq(mhdctx_user_id(ctx), "alice@example.com");
    ck_assert_int_eq(mhdctx_set_user_id(ctx, NULL), MHDCTX_OK);
    ck_assert_ptr_null(mhdctx_user_id(ctx));
    ck_assert_int_eq(mhdctx_set_user_id(ctx, NULL), MHDCTX_OK); /* already anonymous */
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(user_id_is_copied)
{
    mhdctx_context *ctx = new_context();
    char name[] = "bob";
    ck_assert_int_eq(mhdctx_set_user_id(ctx, name), MHDCTX_OK);
    name[0] = 'X';
    ck_assert_pstr_eq(mhdctx_user_id(ctx), "bob");
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(user_id_with_spaces_and_utf8_is_accepted)
{
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "Jos\xc3\xa9 Garc\xc3\xad"
                                             "a"),
                     MHDCTX_OK);
    ck_assert_pstr_eq(mhdctx_user_id(ctx), "Jos\xc3\xa9 Garc\xc3\xad"
                                           "a");
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(user_id_rejects_empty_and_control_bytes)
{
    static const char *const bad[] = {"",      "a\nb",  "a\rb",    "\t",
                                      "x\x01", "x\x1f", "del\x7f", "\x1b[2J"};
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "keep"), MHDCTX_OK);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_msg(mhdctx_set_user_id(ctx, bad[i]) == MHDCTX_EINVAL, "accepted case %zu", i);
        ck_assert_pstr_eq(mhdctx_user_id(ctx), "keep"); /* unchanged */
    }
    ck_assert_int_eq(mhdctx_set_user_id(NULL, "x"), MHDCTX_EINVAL);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(user_id_length_limit)
{
    mhdctx_context *ctx = new_context();
    char *max = repeat('u', MHDCTX_MAX_USER_ID_LEN);
    char *over = repeat('u', MHDCTX_MAX_USER_ID_LEN + 1);
    ck_assert_int_eq(mhdctx_set_user_id(ctx, max), MHDCTX_OK);
    ck_assert_pstr_eq(mhdctx_user_id(ctx), max);
    ck_assert_int_eq(mhdctx_set_user_id(ctx, over), MHDCTX_ELIMIT);
    ck_assert_pstr_eq(mhdctx_user_id(ctx), max);
    free(max);
    free(over);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(copy_user_id_into_buffers)
{
    mhdctx_context *ctx = new_context();
    char buf[8];
    memset(buf, 'x', sizeof buf);
    ck_assert_int_eq(mhdctx_copy_user_id(ctx, buf, sizeof buf), MHDCTX_ENOTFOUND);
    ck_assert_str_eq(buf, "");

    ck_assert_int_eq(mhdctx_set_user_id(ctx, "1234567"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_copy_user_id(ctx, buf, sizeof buf), MHDCTX_OK); /* exact fit */
    ck_assert_str_eq(buf, "1234567");

    ck_assert_int_eq(mhdctx_set_user_id(ctx, "123456789"), MHDCTX_OK);
    memset(buf, 'x', sizeof buf);
    ck_assert_int_eq(mhdctx_copy_user_id(ctx, buf, sizeof buf), MHDCTX_ELIMIT);
    ck_assert_str_eq(buf, "1234567"); /* truncated, still terminated */

    char one[1] = {'x'};
    ck_assert_int_eq(mhdctx_copy_user_id(ctx, one, 1), MHDCTX_ELIMIT);
    ck_assert_int_eq(one[0], '\0');

    ck_assert_int_eq(mhdctx_copy_user_id(ctx, buf, 0), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_copy_user_id(ctx, NULL, 8), MHDCTX_EINVAL);
    memset(buf, 'x', sizeof buf);
    ck_assert_int_eq(mhdctx_copy_user_id(NULL, buf, sizeof buf), MHDCTX_EINVAL);
    ck_assert_str_eq(buf, ""); /* terminated on this path too */
    mhdctx_context_unref(ctx);
}
END_TEST

/* ---- roles ---------------------------------------------------------------------------- */

START_TEST(roles_are_added_deduplicated_and_listed)
{
    mhdctx_context *ctx = new_context();
    json_t *roles = mhdctx_roles_json(ctx);
    ck_assert_ptr_nonnull(roles);
    ck_assert(json_is_array(roles));
    ck_assert_uint_eq(json_array_size(roles), 0);
    json_decref(roles);

    ck_assert(!mhdctx_has_role(ctx, "admin"));
    ck_assert_int_eq(mhdctx_add_role(ctx, "admin"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_add_role(ctx, "ops"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_add_role(ctx, "admin"), MHDCTX_OK); /* not twice */
    ck_assert(mhdctx_has_role(ctx, "admin"));
    ck_assert(mhdctx_has_role(ctx, "ops"));
    ck_assert(!mhdctx_has_role(ctx, "Admin"));
    ck_assert(!mhdctx_has_role(ctx, "adm"));
    ck_assert(!mhdctx_has_role(ctx, NULL));

    roles = mhdctx_roles_json(ctx);
    json_t *expected = json_pack("[s,s]", "admin", "ops");
    ck_assert(json_equal(roles, expected));
    json_decref(expected);
    json_decref(roles);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(roles_limit_is_enforced)
{
    mhdctx_context *ctx = new_context();
    char role[16];
    for (int i = 0; i < MHDCTX_MAX_ROLES; i++) {
        snprintf(role, sizeof role, "role%d", i);
        ck_assert_int_eq(mhdctx_add_role(ctx, role), MHDCTX_OK);
    }
    ck_assert_int_eq(mhdctx_add_role(ctx, "one-too-many"), MHDCTX_ELIMIT);
    ck_assert(!mhdctx_has_role(ctx, "one-too-many"));
    ck_assert_int_eq(mhdctx_add_role(ctx, "role0"), MHDCTX_OK); /* present: no growth */
    json_t *roles = mhdctx_roles_json(ctx);
    ck_assert_uint_eq(json_array_size(roles), MHDCTX_MAX_ROLES);
    json_decref(roles);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(roles_reject_bad_values)
{
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_add_role(ctx, ""), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_add_role(ctx, NULL), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_add_role(ctx, "a\nb"), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_add_role(ctx, "a\x7f"), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_add_role(NULL, "x"), MHDCTX_EINVAL);
    char *max = repeat('r', MHDCTX_MAX_KEY_LEN);
    char *over = repeat('r', MHDCTX_MAX_KEY_LEN + 1);
    ck_assert_int_eq(mhdctx_add_role(ctx, max), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_add_role(ctx, over), MHDCTX_ELIMIT);
    free(max);
    free(over);
    json_t *roles = mhdctx_roles_json(ctx);
    ck_assert_uint_eq(json_array_size(roles), 1);
    json_decref(roles);
    mhdctx_context_unref(ctx);
}
END_TEST

/* ---- user keys ------------------------------------------------------------------------ */

static void assert_key_string(mhdctx_context *ctx, const char *key, const char *expected)
{
    json_t *v = mhdctx_get(ctx, key);
    ck_assert_msg(v != NULL, "key %s is missing", key);
    ck_assert(json_is_string(v));
    ck_assert_str_eq(json_string_value(v), expected);
    json_decref(v);
}

static void assert_key_absent(mhdctx_context *ctx, const char *key)
{
    json_t *v = mhdctx_get(ctx, key);
    ck_assert_msg(v == NULL, "key %s is present", key);
}

START_TEST(keys_set_string_null_removes_the_key)
{
    mhdctx_context *ctx = mhdctx_context_new();
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", "acme"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", NULL), MHDCTX_OK);
    ck_assert_ptr_null(mhdctx_get(ctx, "tenant_id"));
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", "\xff\xfe"), MHDCTX_EINVAL);
    ck_assert_ptr_null(mhdctx_get(ctx, "tenant_id"));
    mhdctx_context_unref(ctx);
}
END_TEST

static void *no_memory(size_t size)
{
    (void)size;
    return NULL;
}

/* Out of memory is MHDCTX_ENOMEM, not the EINVAL of bad UTF-8: jansson's json_string()
 * answers NULL for both, so the library tells them apart itself. */
START_TEST(keys_set_string_out_of_memory_is_enomem)
{
    mhdctx_context *ctx = new_context();
    json_set_alloc_funcs(no_memory, free);
    mhdctx_error valid = mhdctx_set_string(ctx, "tenant_id", "acme");
    mhdctx_error invalid = mhdctx_set_string(ctx, "tenant_id", "\xff\xfe");
    json_set_alloc_funcs(malloc, free);
    ck_assert_int_eq(valid, MHDCTX_ENOMEM);
    ck_assert_int_eq(invalid, MHDCTX_EINVAL);
    ck_assert_ptr_null(mhdctx_get(ctx, "tenant_id"));
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", "acme"), MHDCTX_OK);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(keys_set_string_and_get)
{
    mhdctx_context *ctx = new_context();
    assert_key_absent(ctx, "tenant_id");
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", "acme"), MHDCTX_OK);
    assert_key_string(ctx, "tenant_id", "acme");
    ck_assert_int_eq(mhdctx_set_new(ctx, "count", json_integer(7)), MHDCTX_OK);
    json_t *count = mhdctx_get(ctx, "count");
    ck_assert_int_eq(json_integer_value(count), 7);
    json_decref(count);
    ck_assert_int_eq(mhdctx_set_string(ctx, "Key.with-dots_1", "v"), MHDCTX_OK);
    assert_key_string(ctx, "Key.with-dots_1", "v");
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(keys_replace_keeps_one_entry)
{
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", "a"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", "b"), MHDCTX_OK);
    assert_key_string(ctx, "tenant_id", "b");
    ck_assert_uint_eq(ctx->n_keys, 1);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(keys_remove_with_null)
{
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_set_string(ctx, "a", "1"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "b", "2"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "c", "3"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "b", NULL), MHDCTX_OK);
    assert_key_absent(ctx, "b");
    assert_key_string(ctx, "a", "1");
    assert_key_string(ctx, "c", "3");
    ck_assert_int_eq(mhdctx_set_new(ctx, "never-set", NULL), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set(ctx, "a", NULL), MHDCTX_OK);
    assert_key_absent(ctx, "a");
    ck_assert_uint_eq(ctx->n_keys, 1);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(keys_reserved_names_are_refused)
{
    static const char *const reserved[] = {
        "time",    "level",       "message",        "request_id",         "user_id", "status",
        "method",  "path",        "query",          "duration_ms",        "outcome", "trace_id",
        "span_id", "trace_flags", "parent_span_id", "request_id_replaced"};
    mhdctx_context *ctx = new_context();
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++) {
        ck_assert_msg(mhdctx_set_string(ctx, reserved[i], "forged") == MHDCTX_ERESERVED,
                      "%s was accepted", reserved[i]);
        assert_key_absent(ctx, reserved[i]);
    }
    ck_assert_uint_eq(ctx->n_keys, 0);
    /* Close relatives are ordinary keys. */
    ck_assert_int_eq(mhdctx_set_string(ctx, "request_id2", "x"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "Status", "x"), MHDCTX_OK);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(keys_with_bad_characters_are_einval)
{
    static const char *const bad[] = {"",    "a b", "a\"b", "a\nb", "k\xc3\xa9", "a/b",
                                      "a:b", "a=b", "{}",   "a\\b", "tab\t",     "a,b"};
    mhdctx_context *ctx = new_context();
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(mhdctx_set_string(ctx, bad[i], "v") == MHDCTX_EINVAL, "case %zu", i);
    ck_assert_int_eq(mhdctx_set_string(ctx, NULL, "v"), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_set_string(NULL, "k", "v"), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_set_string(ctx, "k", "bad utf-8 \xff"), MHDCTX_EINVAL);
    ck_assert_uint_eq(ctx->n_keys, 0);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(keys_length_limit)
{
    mhdctx_context *ctx = new_context();
    char *max = repeat('k', MHDCTX_MAX_KEY_LEN);
    char *over = repeat('k', MHDCTX_MAX_KEY_LEN + 1);
    ck_assert_int_eq(mhdctx_set_string(ctx, max, "v"), MHDCTX_OK);
    assert_key_string(ctx, max, "v");
    ck_assert_int_eq(mhdctx_set_string(ctx, over, "v"), MHDCTX_ELIMIT);
    assert_key_absent(ctx, over);
    free(max);
    free(over);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(keys_count_limit)
{
    mhdctx_context *ctx = new_context();
    char key[16];
    for (int i = 0; i < MHDCTX_MAX_USER_KEYS; i++) {
        snprintf(key, sizeof key, "k%d", i);
        ck_assert_int_eq(mhdctx_set_new(ctx, key, json_integer(i)), MHDCTX_OK);
    }
    ck_assert_int_eq(mhdctx_set_string(ctx, "one_more", "v"), MHDCTX_ELIMIT);
    assert_key_absent(ctx, "one_more");
    ck_assert_int_eq(mhdctx_set_string(ctx, "k0", "replaced"), MHDCTX_OK); /* at limit */
    assert_key_string(ctx, "k0", "replaced");
    ck_assert_int_eq(mhdctx_set_new(ctx, "k5", NULL), MHDCTX_OK); /* frees a slot */
    ck_assert_int_eq(mhdctx_set_string(ctx, "one_more", "v"), MHDCTX_OK);
    ck_assert_uint_eq(ctx->n_keys, MHDCTX_MAX_USER_KEYS);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(keys_value_size_limit)
{
    mhdctx_context *ctx = new_context();
    /* A string of n bytes is n + 2 bytes of JSON text. */
    char *fits = repeat('v', MHDCTX_MAX_VALUE_LEN - 2);
    char *over = repeat('v', MHDCTX_MAX_VALUE_LEN - 1);
    ck_assert_int_eq(mhdctx_set_string(ctx, "fits", fits), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "over", over), MHDCTX_ELIMIT);
    assert_key_absent(ctx, "over");
    ck_assert_int_eq(mhdctx_set_new(ctx, "big", json_pack("{s:s}", "x", over)), MHDCTX_ELIMIT);
    free(fits);
    free(over);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(keys_value_size_counts_escaped_text)
{
    mhdctx_context *ctx = new_context();
    /* "\u00e9" is 6 bytes of JSON text: 170 of them fit (1022), 171 do not (1028). */
    char fits[171 * 2 + 1] = "", over[171 * 2 + 1] = "";
    for (int i = 0; i < 170; i++)
        strcat(fits, "\xc3\xa9");
    strcpy(over, fits);
    strcat(over, "\xc3\xa9");
    ck_assert_int_eq(mhdctx_set_string(ctx, "fits", fits), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "over", over), MHDCTX_ELIMIT);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(keys_set_new_steals_value_on_success)
{
    mhdctx_context *ctx = new_context();
    json_t *v = json_string("mine");
    json_incref(v); /* keep one reference to watch the count */
    ck_assert_int_eq(mhdctx_set_new(ctx, "k", v), MHDCTX_OK);
    ck_assert_uint_eq(v->refcount, 2);
    json_t *got = mhdctx_get(ctx, "k");
    ck_assert_ptr_eq(got, v);
    ck_assert_uint_eq(v->refcount, 3); /* get returns a new reference */
    json_decref(got);
    ck_assert_int_eq(mhdctx_set_new(ctx, "k", NULL), MHDCTX_OK); /* removal releases */
    ck_assert_uint_eq(v->refcount, 1);
    json_decref(v);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(keys_set_new_steals_value_on_failure)
{
    mhdctx_context *ctx = new_context();
    char *huge = repeat('h', 2 * MHDCTX_MAX_VALUE_LEN);
    char *long_key = repeat('k', MHDCTX_MAX_KEY_LEN + 1);
    struct {
        const char *key;
        json_t *value;
        mhdctx_context *ctx;
        mhdctx_error expected;
    } cases[] = {
        {"request_id", json_string("forged"), ctx, MHDCTX_ERESERVED},
        {"bad key", json_string("x"), ctx, MHDCTX_EINVAL},
        {"", json_string("x"), ctx, MHDCTX_EINVAL},
        {NULL, json_string("x"), ctx, MHDCTX_EINVAL},
        {long_key, json_string("x"), ctx, MHDCTX_ELIMIT},
        {"k", json_string(huge), ctx, MHDCTX_ELIMIT},
        {"k", json_string("x"), NULL, MHDCTX_EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *v = cases[i].value;
        ck_assert_ptr_nonnull(v);
        json_incref(v);
        ck_assert_uint_eq(v->refcount, 2);
        ck_assert_int_eq(mhdctx_set_new(cases[i].ctx, cases[i].key, v), cases[i].expected);
        ck_assert_msg(v->refcount == 1, "case %zu: refcount %zu, the value was not stolen", i,
                      v->refcount);
        json_decref(v);
    }
    free(huge);
    free(long_key);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(keys_set_new_steals_value_when_key_limit_is_hit)
{
    mhdctx_context *ctx = new_context();
    char key[16];
    for (int i = 0; i < MHDCTX_MAX_USER_KEYS; i++) {
        snprintf(key, sizeof key, "k%d", i);
        ck_assert_int_eq(mhdctx_set_new(ctx, key, json_true()), MHDCTX_OK);
    }
    json_t *v = json_string("x");
    json_incref(v);
    ck_assert_int_eq(mhdctx_set_new(ctx, "one_more", v), MHDCTX_ELIMIT);
    ck_assert_uint_eq(v->refcount, 1);
    json_decref(v);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(keys_set_borrows_value)
{
    mhdctx_context *ctx = new_context();
    json_t *v = json_string("borrowed");
    ck_assert_int_eq(mhdctx_set(ctx, "k", v), MHDCTX_OK);
    ck_assert_uint_eq(v->refcount, 2);
    ck_assert_int_eq(mhdctx_set(ctx, "request_id", v), MHDCTX_ERESERVED);
    ck_assert_uint_eq(v->refcount, 2); /* failure gives the borrowed reference back */
    json_decref(v);
    assert_key_string(ctx, "k", "borrowed");
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(keys_get_of_absent_or_null_key)
{
    mhdctx_context *ctx = new_context();
    assert_key_absent(ctx, "missing");
    json_t *none = mhdctx_get(ctx, NULL);
    ck_assert_ptr_null(none);
    mhdctx_context_unref(ctx);
}
END_TEST

/* ---- the context in log lines ------------------------------------------------------- */

/* Logs one line in @p ctx; the line it added to the capture, parsed (owned). */
static json_t *log_and_parse(mhdctx_context *ctx)
{
    size_t before = support_capture_n();
    mhdctx_log_ctx(ctx, MHDCTX_LOG_INFO, NULL, 0, "fields");
    size_t after = support_capture_n();
    ck_assert_uint_gt(after, before);
    const support_line *last = support_capture_line(after - 1);
    json_t *line = json_loadb(last->text, last->len, JSON_REJECT_DUPLICATES, NULL);
    ck_assert_msg(line != NULL, "not JSON: %s", last->text);
    return line;
}

/* The context's fields in a log line are valid JSON with the current values. */
START_TEST(context_fields_in_log_lines_are_valid_json)
{
    mhdctx_context *ctx = new_context();
    support_capture_start();
    json_t *line = log_and_parse(ctx);
    ck_assert_str_eq(json_string_value(json_object_get(line, "request_id")),
                     mhdctx_request_id(ctx));
    ck_assert(json_is_null(json_object_get(line, "user_id")));
    json_decref(line);

    ck_assert_int_eq(mhdctx_set_user_id(ctx, "u\"1"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", "t\n1"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "obj", json_pack("{s:i}", "n", 5)), MHDCTX_OK);
    line = log_and_parse(ctx);
    ck_assert_str_eq(json_string_value(json_object_get(line, "user_id")), "u\"1");
    ck_assert_str_eq(json_string_value(json_object_get(line, "tenant_id")), "t\n1");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(line, "obj"), "n")), 5);
    json_decref(line);
    support_capture_stop();
    mhdctx_context_unref(ctx);
}
END_TEST

/* A traced context's line names its trace, span and flags, every flags byte as the two
 * lowercase hex digits a traceparent spells it with. Only an import carries flags no
 * level defines (a request keeps only sampled and random). */
START_TEST(trace_fields_in_log_lines_match_the_trace)
{
    support_capture_start();
    for (unsigned flags = 0; flags < 256; flags++) {
        char text[512];
        snprintf(text, sizeof text,
                 "{\"v\":1,\"request_id\":\"r1\",\"user_id\":null,\"roles\":[],\"keys\":{},"
                 "\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\","
                 "\"span_id\":\"b7ad6b7169203331\",\"parent_span_id\":\"\","
                 "\"trace_flags\":\"%02x\",\"tracestate\":\"\"}",
                 flags);
        mhdctx_error err = MHDCTX_OK;
        mhdctx_context *ctx = mhdctx_context_import(text, strlen(text), &err);
        ck_assert_msg(ctx != NULL, "flags %02x: %s", flags, mhdctx_error_name(err));
        ck_assert_uint_eq(mhdctx_trace_flags(ctx), flags);
        json_t *line = log_and_parse(ctx);
        ck_assert_str_eq(json_string_value(json_object_get(line, "trace_id")),
                         "0af7651916cd43dd8448eb211c80319c");
        ck_assert_str_eq(json_string_value(json_object_get(line, "span_id")),
                         "b7ad6b7169203331");
        char expected[3];
        snprintf(expected, sizeof expected, "%02x", flags);
        ck_assert_str_eq(json_string_value(json_object_get(line, "trace_flags")), expected);
        json_decref(line);
        mhdctx_context_unref(ctx);
    }
    support_capture_stop();
}
END_TEST

/* A request keeps the flags Trace Context Level 2 defines from its caller's traceparent
 * (sampled, and random: the trace id is the caller's, so is its randomness) and drops
 * the others, which no level defines; a new trace is recorded and random. */
START_TEST(request_keeps_the_defined_trace_flags)
{
    for (unsigned flags = 0; flags < 256; flags++) {
        mhdctx_trace_parent parent = {.trace_id = "0af7651916cd43dd8448eb211c80319c",
                                      .parent_id = "b7ad6b7169203331",
                                      .flags = (unsigned char)flags};
        mhdctx_context *ctx = mhdctx__context_create("/");
        ck_assert_ptr_nonnull(ctx);
        ck_assert_int_eq(mhdctx__context_set_trace(ctx, &parent, NULL, 0), MHDCTX_OK);
        ck_assert_uint_eq(mhdctx_trace_flags(ctx), flags & 0x03u);
        mhdctx_context_unref(ctx);
    }
    mhdctx_context *root = mhdctx_context_new();
    ck_assert_ptr_nonnull(root);
    ck_assert_uint_eq(mhdctx_trace_flags(root),
                      MHDCTX_TRACE_FLAG_SAMPLED | MHDCTX_TRACE_FLAG_RANDOM);
    mhdctx_context_unref(root);
}
END_TEST

/* ---- several threads on one context --------------------------------------------------- */

#define N_THREADS  4
#define ITERATIONS 2000

struct worker {
    pthread_t thread;
    int index;
    mhdctx_context *ctx; /* one reference owned by this worker */
    pthread_barrier_t *start;
    atomic_int *errors;
};

/* One slot of a worker's values: "v<index>-<iteration>". */
static bool value_is_from_worker(const char *value, int index)
{
    char prefix[16];
    int n = snprintf(prefix, sizeof prefix, "v%d-", index);
    return strncmp(value, prefix, (size_t)n) == 0 && atoi(value + n) < ITERATIONS;
}

/* Callback sink for the workers' lines (called under the sink lock): each line must be
 * one JSON object with the request id and a consistent user id. */
static void validate_line(mhdctx_log_level level, const char *line, size_t len, void *cls)
{
    (void)level;
    atomic_int *errors = cls;
    json_t *v = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    const char *user = json_string_value(json_object_get(v, "user_id"));
    if (v == NULL || !json_is_string(json_object_get(v, "request_id")) ||
        (user && strncmp(user, "user-", 5) != 0) || line[len - 1] != '\n')
        atomic_fetch_add(errors, 1);
    json_decref(v);
}

static void check_line_fields(struct worker *w)
{
    mhdctx_log_ctx(w->ctx, MHDCTX_LOG_INFO, NULL, 0, "worker %d", w->index);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char key[16], value[32], role[16], user[16], copy[MHDCTX_MAX_USER_ID_LEN + 1];
    int other = (w->index + 1) % N_THREADS;
    char other_key[16];
    snprintf(key, sizeof key, "k%d", w->index);
    snprintf(other_key, sizeof other_key, "k%d", other);
    snprintf(role, sizeof role, "role%d", w->index);
    snprintf(user, sizeof user, "user-%d", w->index);
    pthread_barrier_wait(w->start);

    for (int i = 0; i < ITERATIONS; i++) {
        snprintf(value, sizeof value, "v%d-%d", w->index, i);
        if (mhdctx_set_string(w->ctx, key, value) != MHDCTX_OK)
            atomic_fetch_add(w->errors, 1);
        json_t *mine = mhdctx_get(w->ctx, key);
        if (!json_is_string(mine) || strcmp(json_string_value(mine), value) != 0)
            atomic_fetch_add(w->errors, 1); /* only this thread writes this key */
        json_decref(mine);
        json_t *theirs = mhdctx_get(w->ctx, other_key);
        if (theirs &&
            !(json_is_string(theirs) && value_is_from_worker(json_string_value(theirs), other)))
            atomic_fetch_add(w->errors, 1);
        json_decref(theirs);

        /* A key every thread writes and removes. */
        mhdctx_error rc = i % 3 ? mhdctx_set_new(w->ctx, "shared", json_integer(i))
                                : mhdctx_set_new(w->ctx, "shared", NULL);
        if (rc != MHDCTX_OK)
            atomic_fetch_add(w->errors, 1);

        if (mhdctx_set_user_id(w->ctx, user) != MHDCTX_OK)
            atomic_fetch_add(w->errors, 1);
        rc = mhdctx_copy_user_id(w->ctx, copy, sizeof copy);
        if (rc != MHDCTX_OK || strncmp(copy, "user-", 5) != 0 || strlen(copy) != 6 ||
            copy[5] < '0' || copy[5] >= '0' + N_THREADS)
            atomic_fetch_add(w->errors, 1);

        if (mhdctx_add_role(w->ctx, role) != MHDCTX_OK || !mhdctx_has_role(w->ctx, role))
            atomic_fetch_add(w->errors, 1);
        if (i % 50 == 0) {
            json_t *roles = mhdctx_roles_json(w->ctx);
            if (roles == NULL || json_array_size(roles) > N_THREADS)
                atomic_fetch_add(w->errors, 1);
            json_decref(roles);
            check_line_fields(w);
        }
    }
    mhdctx_context_unref(w->ctx);
    return NULL;
}

static void run_workers(mhdctx_context *ctx, bool drop_own_ref_first, atomic_int *errors)
{
    struct worker workers[N_THREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_THREADS);
    for (int t = 0; t < N_THREADS; t++) {
        workers[t] = (struct worker){
            .index = t, .ctx = mhdctx_context_ref(ctx), .start = &start, .errors = errors};
    }
    ck_assert_uint_eq(refs_of(ctx), N_THREADS + 1);
    ck_assert_int_eq(mhdctx_log_to_callback(validate_line, errors), MHDCTX_OK);
    for (int t = 0; t < N_THREADS; t++)
        ck_assert_int_eq(pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]), 0);
    if (drop_own_ref_first)
        mhdctx_context_unref(ctx); /* a worker's unref is the last one */
    for (int t = 0; t < N_THREADS; t++)
        pthread_join(workers[t].thread, NULL);
    pthread_barrier_destroy(&start);
    mhdctx_log_shutdown();
}

START_TEST(threads_share_one_context_consistently)
{
    atomic_int errors = 0;
    mhdctx_context *ctx = new_context();
    run_workers(ctx, false, &errors);
    ck_assert_int_eq(atomic_load(&errors), 0);
    ck_assert_uint_eq(refs_of(ctx), 1); /* every worker dropped its reference */

    char key[16], value[32];
    for (int t = 0; t < N_THREADS; t++) {
        snprintf(key, sizeof key, "k%d", t);
        snprintf(value, sizeof value, "v%d-%d", t, ITERATIONS - 1);
        assert_key_string(ctx, key, value);
        snprintf(key, sizeof key, "role%d", t);
        ck_assert(mhdctx_has_role(ctx, key));
    }
    json_t *roles = mhdctx_roles_json(ctx);
    ck_assert_uint_eq(json_array_size(roles), N_THREADS);
    json_decref(roles);
    const char *user = mhdctx_user_id(ctx);
    ck_assert_ptr_nonnull(user);
    ck_assert_int_eq(strncmp(user, "user-", 5), 0);
    mhdctx_context_unref(ctx);
}
END_TEST

/* Trace and span ids are drawn at their first reader: every reader, whichever thread
 * comes first, sees the same valid ids, and they never change afterwards. */
struct id_reader {
    mhdctx_context *ctx;
    pthread_barrier_t *start;
    char trace_id[MHDCTX_TRACE_ID_LEN + 1];
    char span_id[MHDCTX_SPAN_ID_LEN + 1];
};

static void *read_ids(void *arg)
{
    struct id_reader *r = arg;
    pthread_barrier_wait(r->start);
    snprintf(r->trace_id, sizeof r->trace_id, "%s", mhdctx_trace_id(r->ctx));
    snprintf(r->span_id, sizeof r->span_id, "%s", mhdctx_span_id(r->ctx));
    return NULL;
}

START_TEST(threads_drawing_trace_ids_agree)
{
    for (int round = 0; round < 50; round++) {
        mhdctx_context *ctx = new_context();
        struct id_reader readers[N_THREADS];
        pthread_t threads[N_THREADS];
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, N_THREADS);
        for (int t = 0; t < N_THREADS; t++) {
            readers[t] = (struct id_reader){.ctx = ctx, .start = &start};
            ck_assert_int_eq(pthread_create(&threads[t], NULL, read_ids, &readers[t]), 0);
        }
        for (int t = 0; t < N_THREADS; t++)
            pthread_join(threads[t], NULL);
        pthread_barrier_destroy(&start);
        ck_assert(is_hex_id(mhdctx_trace_id(ctx), MHDCTX_TRACE_ID_LEN));
        ck_assert(is_hex_id(mhdctx_span_id(ctx), MHDCTX_SPAN_ID_LEN));
        for (int t = 0; t < N_THREADS; t++) {
            ck_assert_str_eq(readers[t].trace_id, mhdctx_trace_id(ctx));
            ck_assert_str_eq(readers[t].span_id, mhdctx_span_id(ctx));
        }
        mhdctx_context_unref(ctx);
    }
}
END_TEST

START_TEST(continued_trace_keeps_the_callers_trace_id_and_draws_a_span)
{
    static const char header[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    mhdctx_trace_parent parent;
    ck_assert_int_eq(mhdctx_traceparent_parse(header, sizeof header - 1, &parent), MHDCTX_OK);
    mhdctx_context *ctx = mhdctx__context_create("/");
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(mhdctx__context_set_trace(ctx, &parent, NULL, 0), MHDCTX_OK);
    ck_assert_str_eq(mhdctx_trace_id(ctx), "0af7651916cd43dd8448eb211c80319c");
    ck_assert_str_eq(mhdctx_parent_span_id(ctx), "b7ad6b7169203331");
    const char *span = mhdctx_span_id(ctx);
    ck_assert(is_hex_id(span, MHDCTX_SPAN_ID_LEN));
    ck_assert_str_ne(span, "b7ad6b7169203331");
    char first[MHDCTX_SPAN_ID_LEN + 1];
    snprintf(first, sizeof first, "%s", span);
    ck_assert_str_eq(mhdctx_span_id(ctx), first); /* drawn once */
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(threads_last_unref_on_a_worker_frees_the_context)
{
    atomic_int errors = 0;
    mhdctx_context *ctx = new_context();
    run_workers(ctx, true, &errors); /* valgrind/ASan: nothing leaks, no use after free */
    ck_assert_int_eq(atomic_load(&errors), 0);
}
END_TEST

/* The only holder writes its lines without the context's lock: no other thread can
 * reach the context. A worker that set a key and dropped its reference just before must
 * still have its key in the line: the count's release (unref) and acquire (the line)
 * carry it. The test waits for the count with a relaxed load, so under TSan the line's
 * own ordering is what is checked. */
static void *set_key_and_leave(void *arg)
{
    mhdctx_context *ctx = arg;
    if (mhdctx_set_string(ctx, "tenant_id", "acme") != MHDCTX_OK)
        abort();
    mhdctx_context_unref(ctx);
    return NULL;
}

START_TEST(line_of_the_only_holder_sees_a_departed_workers_key)
{
    support_capture_start_info();
    mhdctx_context *ctx = new_context();
    pthread_t worker;
    ck_assert_int_eq(pthread_create(&worker, NULL, set_key_and_leave, mhdctx_context_ref(ctx)),
                     0);
    while (atomic_load_explicit(&ctx->refs, memory_order_relaxed) != 1)
        sched_yield();
    mhdctx_log_ctx(ctx, MHDCTX_LOG_INFO, NULL, 0, "after the worker");
    json_t *line = support_capture_only(0);
    ck_assert_str_eq(json_string_value(json_object_get(line, "tenant_id")), "acme");
    json_decref(line);
    pthread_join(worker, NULL);
    support_capture_stop();
    mhdctx_context_unref(ctx);
}
END_TEST

/* ---- suite ----------------------------------------------------------------------------- */

static Suite *context_suite(void)
{
    Suite *s = suite_create("context");

    TCase *tc = tcase_create("lifetime");
    tcase_add_test(tc, context_new_has_refcount_one_and_fresh_uuid);
    tcase_add_test(tc, context_new_ids_differ);
    tcase_add_test(tc, continued_trace_keeps_the_callers_trace_id_and_draws_a_span);
    tcase_add_test(tc, context_ref_and_unref_count);
    tcase_add_test(tc, context_ref_and_unref_accept_null);
    tcase_add_test(tc, context_last_unref_frees_everything);
    tcase_add_test(tc, context_short_method_is_stored_inline);
    tcase_add_test(tc, context_accessors_accept_null);
    tcase_add_test(tc, context_times_are_set_at_creation);
    tcase_add_test(tc, context_wall_clock_start_is_the_creation_time);
    tcase_add_loop_test(tc, context_create_splits_path_and_query, 0,
                        (int)(sizeof uri_cases / sizeof *uri_cases));
    tcase_add_test(tc, context_create_with_null_uri_has_empty_path);
    tcase_add_test(tc, context_set_request_id_truncates_at_limit);
    suite_add_tcase(s, tc);

    tc = tcase_create("current");
    tcase_add_test(tc, current_is_null_outside_run);
    tcase_add_test(tc, run_sets_current_and_restores_null);
    tcase_add_test(tc, run_nests_and_restores_each_level);
    tcase_add_test(tc, run_with_null_ctx_clears_current_inside);
    tcase_add_test(tc, run_with_null_fn_does_nothing);
    tcase_add_test(tc, current_is_per_thread);
    suite_add_tcase(s, tc);

    tc = tcase_create("user");
    tcase_add_test(tc, user_id_set_get_and_clear);
    tcase_add_test(tc, user_id_is_copied);
    tcase_add_test(tc, user_id_with_spaces_and_utf8_is_accepted);
    tcase_add_test(tc, user_id_rejects_empty_and_control_bytes);
    tcase_add_test(tc, user_id_length_limit);
    tcase_add_test(tc, copy_user_id_into_buffers);
    tcase_add_test(tc, roles_are_added_deduplicated_and_listed);
    tcase_add_test(tc, roles_limit_is_enforced);
    tcase_add_test(tc, roles_reject_bad_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("keys");
    tcase_add_test(tc, keys_set_string_and_get);
    tcase_add_test(tc, keys_set_string_null_removes_the_key);
    tcase_add_test(tc, keys_set_string_out_of_memory_is_enomem);
    tcase_add_test(tc, keys_replace_keeps_one_entry);
    tcase_add_test(tc, keys_remove_with_null);
    tcase_add_test(tc, keys_reserved_names_are_refused);
    tcase_add_test(tc, keys_with_bad_characters_are_einval);
    tcase_add_test(tc, keys_length_limit);
    tcase_add_test(tc, keys_count_limit);
    tcase_add_test(tc, keys_value_size_limit);
    tcase_add_test(tc, keys_value_size_counts_escaped_text);
    tcase_add_test(tc, keys_set_new_steals_value_on_success);
    tcase_add_test(tc, keys_set_new_steals_value_on_failure);
    tcase_add_test(tc, keys_set_new_steals_value_when_key_limit_is_hit);
    tcase_add_test(tc, keys_set_borrows_value);
    tcase_add_test(tc, keys_get_of_absent_or_null_key);
    tcase_add_test(tc, context_fields_in_log_lines_are_valid_json);
    tcase_add_test(tc, trace_fields_in_log_lines_match_the_trace);
    tcase_add_test(tc, request_keeps_the_defined_trace_flags);
    suite_add_tcase(s, tc);

    tc = tcase_create("threads");
    tcase_add_test(tc, threads_drawing_trace_ids_agree);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, threads_share_one_context_consistently);
    tcase_add_test(tc, line_of_the_only_holder_sees_a_departed_workers_key);
    tcase_add_test(tc, threads_last_unref_on_a_worker_frees_the_context);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(context_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failures = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failures ? 1 : 0;
}
