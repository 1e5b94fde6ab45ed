/*
 * check_log.c - the JSON-lines logger: line format, context enrichment, call fields,
 * hostile input, long lines, levels, the environment, errno lines, and the sinks
 * (callback, file, fd, /dev/full, a closed pipe, many threads at once).
 */
#include "internal.h"
#include "child.h"
#include "support.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <regex.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Path of this executable, for the environment tests that need a fresh process. */
static char self_path[PATH_MAX];

/* ---- capturing lines through the callback sink (support.h) ---------------------------- */

/* Hostile fields carry NUL bytes: "\u0000" must parse. No key may appear twice. */
#define LINE_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

static void setup(void)
{
    support_capture_clear();
    mhdctx_log_set_level(MHDCTX_LOG_INFO);
}

static void teardown(void)
{
    support_capture_stop(); /* back to stdout */
    mhdctx_log_set_level(MHDCTX_LOG_INFO);
}

/* ---- line format ---------------------------------------------------------------------- */

START_TEST(line_has_time_level_and_message)
{
    support_capture_start();
    mhdctx_log_info("hello");
    json_t *line = support_capture_only(LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "level"), "info");
    ck_assert_str_eq(str_field(line, "message"), "hello");
    ck_assert(json_is_string(json_object_get(line, "time")));
    ck_assert_uint_eq(json_object_size(line), 3);
    ck_assert_int_eq(support_capture_line(0)->level, MHDCTX_LOG_INFO);
    ck_assert_int_eq(strncmp(support_capture_line(0)->text, "{\"time\":\"", 9), 0);
    json_decref(line);
}
END_TEST

START_TEST(time_is_rfc3339_utc_with_milliseconds)
{
    regex_t re;
    ck_assert_int_eq(regcomp(&re,
                             "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T"
                             "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\\.[0-9]{3}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    support_capture_start();
    time_t before = time(NULL);
    for (int i = 0; i < 20; i++)
        mhdctx_log_info("tick %d", i);
    time_t after = time(NULL);
    ck_assert_uint_eq(support_capture_n(), 20);
    for (size_t i = 0; i < support_capture_n(); i++) {
        json_t *line = support_capture_json(i, LINE_FLAGS);
        const char *stamp = str_field(line, "time");
        ck_assert_msg(regexec(&re, stamp, 0, NULL, 0) == 0, "bad time: %s", stamp);
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        ck_assert_ptr_nonnull(strptime(stamp, "%Y-%m-%dT%H:%M:%S", &tm));
        time_t t = timegm(&tm);
        ck_assert_msg(t >= before - 1 && t <= after + 1, "time %s is not now (UTC)", stamp);
        json_decref(line);
    }
    regfree(&re);
}
END_TEST

START_TEST(message_uses_printf_formatting)
{
    support_capture_start();
    mhdctx_log_warn("n=%d s=%s f=%.2f x=%04x pct=%%", 42, "str", 1.5, 255u);
    json_t *line = support_capture_only(LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "message"), "n=42 s=str f=1.50 x=00ff pct=%");
    ck_assert_str_eq(str_field(line, "level"), "warn");
    json_decref(line);
}
END_TEST

START_TEST(every_level_is_named_in_the_line)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    mhdctx_log_set_level(MHDCTX_LOG_DEBUG);
    support_capture_start();
    mhdctx_log_debug("d");
    mhdctx_log_info("i");
    mhdctx_log_warn("w");
    mhdctx_log_error("e");
    mhdctx_log(MHDCTX_LOG_OFF, "never: OFF is not a level to log at");
    ck_assert_uint_eq(support_capture_n(), 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *line = support_capture_json(i, LINE_FLAGS);
        ck_assert_str_eq(str_field(line, "level"), names[i]);
        ck_assert_int_eq(support_capture_line(i)->level, (int)i);
        json_decref(line);
    }
}
END_TEST

START_TEST(no_request_fields_outside_a_context)
{
    ck_assert_ptr_null(mhdctx_current());
    support_capture_start();
    mhdctx_log_info("outside");
    json_t *line = support_capture_only(LINE_FLAGS);
    ck_assert_ptr_null(json_object_get(line, "request_id"));
    ck_assert_ptr_null(json_object_get(line, "user_id"));
    json_decref(line);
}
END_TEST

static void log_three_lines(void *arg)
{
    mhdctx_context *ctx = arg;
    mhdctx_log_info("anonymous");
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "u-42"), MHDCTX_OK);
    mhdctx_log_info("identified");
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", "acme"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "attempt", json_integer(3)), MHDCTX_OK);
    mhdctx_log_info("with keys");
}

START_TEST(request_fields_inside_run)
{
    mhdctx_context *ctx = mhdctx_context_new();
    ck_assert_ptr_nonnull(ctx);
    support_capture_start();
    mhdctx_run(ctx, log_three_lines, ctx);
    mhdctx_log_info("after run");
    ck_assert_uint_eq(support_capture_n(), 4);

    json_t *line = support_capture_json(0, LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "request_id"), mhdctx_request_id(ctx));
    ck_assert(json_is_null(json_object_get(line, "user_id")));
    ck_assert_ptr_null(json_object_get(line, "tenant_id"));
    json_decref(line);

    line = support_capture_json(1, LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "request_id"), mhdctx_request_id(ctx));
    ck_assert_str_eq(str_field(line, "user_id"), "u-42");
    json_decref(line);

    line = support_capture_json(2, LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "tenant_id"), "acme");
    ck_assert_int_eq(json_integer_value(json_object_get(line, "attempt")), 3);
    json_decref(line);

    line = support_capture_json(3, LINE_FLAGS);
    ck_assert_ptr_null(json_object_get(line, "request_id"));
    ck_assert_ptr_null(json_object_get(line, "tenant_id"));
    json_decref(line);
    mhdctx_context_unref(ctx);
}
END_TEST

static void log_with_fields(void *arg)
{
    (void)arg;
    mhdctx_log_fields(MHDCTX_LOG_INFO,
                      MHDCTX_FIELDS(MHDCTX_F_INT("a", 1), MHDCTX_F_INT("b", 2)), "ordered");
}

START_TEST(keys_come_in_documented_order)
{
    mhdctx_context *ctx = mhdctx_context_new();
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", "t"), MHDCTX_OK);
    support_capture_start();
    mhdctx_run(ctx, log_with_fields, NULL);
    json_t *line = support_capture_only(LINE_FLAGS);
    /* The documented keys in this relative order (the library may add its own, such
     * as trace ids, after request_id). */
    static const char *const order[] = {"time",    "level",     "message", "request_id",
                                        "user_id", "tenant_id", "a",       "b"};
    size_t next = 0;
    const char *key;
    json_t *value;
    json_object_foreach(line, key, value)
    {
        (void)value;
        for (size_t k = 0; k < sizeof order / sizeof *order; k++) {
            if (strcmp(key, order[k]) == 0) {
                ck_assert_msg(k == next, "key %s out of order", key);
                next++;
            }
        }
    }
    ck_assert_uint_eq(next, sizeof order / sizeof *order);
    ck_assert_int_eq(strncmp(support_capture_line(0)->text, "{\"time\":", 8), 0);
    json_decref(line);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(log_ctx_uses_the_given_context)
{
    mhdctx_context *ctx = mhdctx_context_new();
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "worker-user"), MHDCTX_OK);
    support_capture_start();
    mhdctx_log_ctx(ctx, MHDCTX_LOG_INFO, NULL, 0, "from a worker %d", 7);
    mhdctx_log_ctx(NULL, MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_BOOL("x", true)), "no ctx");
    ck_assert_uint_eq(support_capture_n(), 2);
    json_t *line = support_capture_json(0, LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "request_id"), mhdctx_request_id(ctx));
    ck_assert_str_eq(str_field(line, "user_id"), "worker-user");
    ck_assert_str_eq(str_field(line, "message"), "from a worker 7");
    json_decref(line);
    line = support_capture_json(1, LINE_FLAGS);
    ck_assert_ptr_null(json_object_get(line, "request_id"));
    ck_assert(json_is_true(json_object_get(line, "x")));
    json_decref(line);
    mhdctx_context_unref(ctx);
}
END_TEST

static void log_v(mhdctx_log_level level, const mhdctx_field *fields, size_t n, const char *fmt,
                  ...) MHDCTX_PRINTF(4, 5);

static void log_v(mhdctx_log_level level, const mhdctx_field *fields, size_t n, const char *fmt,
                  ...)
{
    va_list ap;
    va_start(ap, fmt);
    mhdctx_log_fieldsv(level, fields, n, fmt, ap);
    va_end(ap);
}

START_TEST(log_fieldsv_formats_from_a_va_list)
{
    support_capture_start();
    log_v(MHDCTX_LOG_ERROR, MHDCTX_FIELDS(MHDCTX_F_STR("k", "v")), "%s-%d", "va", 1);
    char big[2000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_v(MHDCTX_LOG_INFO, NULL, 0, "%s|%s", big, "end"); /* over the 512-byte fast path */
    ck_assert_uint_eq(support_capture_n(), 2);
    json_t *line = support_capture_json(0, LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "message"), "va-1");
    ck_assert_str_eq(str_field(line, "k"), "v");
    ck_assert_str_eq(str_field(line, "level"), "error");
    json_decref(line);
    line = support_capture_json(1, LINE_FLAGS);
    const char *message = str_field(line, "message");
    ck_assert_uint_eq(strlen(message), sizeof big - 1 + 4);
    ck_assert_str_eq(message + sizeof big - 1, "|end");
    json_decref(line);
}
END_TEST

/* ---- call fields ---------------------------------------------------------------------- */

START_TEST(call_fields_of_every_type)
{
    json_t *object = json_pack("{s:i,s:[s,b]}", "n", 1, "list", "x", 0);
    support_capture_start();
    mhdctx_log_fields(
        MHDCTX_LOG_INFO,
        MHDCTX_FIELDS(MHDCTX_F_STR("str", "text"), MHDCTX_F_STR("str_null", NULL),
                      MHDCTX_F_BYTES("bytes", "a\0b", 3), MHDCTX_F_BYTES("bytes_null", NULL, 5),
                      MHDCTX_F_INT("int_min", LLONG_MIN), MHDCTX_F_INT("int", -17),
                      MHDCTX_F_UINT("uint", 4000000000u), MHDCTX_F_DOUBLE("double", 1.234),
                      MHDCTX_F_DOUBLE("nan", NAN), MHDCTX_F_DOUBLE("inf", INFINITY),
                      MHDCTX_F_BOOL("yes", true), MHDCTX_F_BOOL("no", false),
                      MHDCTX_F_NULL("nothing"), MHDCTX_F_JSON("json", object),
                      MHDCTX_F_JSON("json_null", NULL)),
        "typed");
    json_t *line = support_capture_only(LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "str"), "text");
    ck_assert(json_is_null(json_object_get(line, "str_null")));
    json_t *bytes = json_object_get(line, "bytes");
    ck_assert_uint_eq(json_string_length(bytes), 3);
    ck_assert_mem_eq(json_string_value(bytes), "a\0b", 3);
    ck_assert_str_eq(str_field(line, "bytes_null"), "");
    ck_assert(json_is_integer(json_object_get(line, "int_min")));
    ck_assert(json_integer_value(json_object_get(line, "int_min")) == LLONG_MIN);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "int")), -17);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "uint")), 4000000000LL);
    ck_assert(json_is_real(json_object_get(line, "double")));
    ck_assert_double_eq(json_real_value(json_object_get(line, "double")), 1.234);
    ck_assert(json_is_null(json_object_get(line, "nan")));
    ck_assert(json_is_null(json_object_get(line, "inf")));
    ck_assert(json_is_true(json_object_get(line, "yes")));
    ck_assert(json_is_false(json_object_get(line, "no")));
    ck_assert(json_is_null(json_object_get(line, "nothing")));
    ck_assert(json_equal(json_object_get(line, "json"), object));
    ck_assert(json_is_null(json_object_get(line, "json_null")));
    ck_assert_uint_eq(json_object_size(line), 3 + 15);
    json_decref(line);
    json_decref(object);
}
END_TEST

START_TEST(uint_max_field_is_written_exactly)
{
    support_capture_start();
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_UINT("u", ULLONG_MAX)), "big");
    ck_assert_uint_eq(support_capture_n(), 1);
    /* jansson cannot hold 2^64-1, so look at the text. */
    ck_assert_ptr_nonnull(
        strstr(support_capture_line(0)->text, ",\"u\":18446744073709551615}\n"));
}
END_TEST

static void log_forged_id(void *arg)
{
    (void)arg;
    mhdctx_log_fields(MHDCTX_LOG_INFO,
                      MHDCTX_FIELDS(MHDCTX_F_STR("request_id", "forged"),
                                    MHDCTX_F_STR("user_id", "root"),
                                    MHDCTX_F_STR("level", "error"), MHDCTX_F_INT("time", 0),
                                    MHDCTX_F_STR("message", "fake")),
                      "real");
}

START_TEST(field_named_request_id_cannot_forge_the_id)
{
    mhdctx_context *ctx = mhdctx_context_new();
    support_capture_start();
    mhdctx_run(ctx, log_forged_id, NULL);
    json_t *line = support_capture_only(LINE_FLAGS); /* no duplicate keys: REJECT_DUPLICATES */
    ck_assert_str_eq(str_field(line, "request_id"), mhdctx_request_id(ctx));
    ck_assert_str_eq(str_field(line, "field_request_id"), "forged");
    ck_assert(json_is_null(json_object_get(line, "user_id")));
    ck_assert_str_eq(str_field(line, "field_user_id"), "root");
    ck_assert_str_eq(str_field(line, "level"), "info");
    ck_assert_str_eq(str_field(line, "field_level"), "error");
    ck_assert_str_eq(str_field(line, "message"), "real");
    ck_assert_str_eq(str_field(line, "field_message"), "fake");
    ck_assert(json_is_string(json_object_get(line, "time")));
    ck_assert_int_eq(json_integer_value(json_object_get(line, "field_time")), 0);
    json_decref(line);
    mhdctx_context_unref(ctx);
}
END_TEST

START_TEST(field_named_request_id_is_renamed_outside_a_context_too)
{
    support_capture_start();
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_STR("request_id", "forged")),
                      "no context");
    json_t *line = support_capture_only(LINE_FLAGS);
    ck_assert_ptr_null(json_object_get(line, "request_id"));
    ck_assert_str_eq(str_field(line, "field_request_id"), "forged");
    json_decref(line);
}
END_TEST

static void log_tenant_field(void *arg)
{
    (void)arg;
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_STR("tenant_id", "other")), "x");
}

START_TEST(field_repeating_a_user_key_is_renamed)
{
    mhdctx_context *ctx = mhdctx_context_new();
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", "acme"), MHDCTX_OK);
    support_capture_start();
    mhdctx_run(ctx, log_tenant_field, NULL);
    json_t *line = support_capture_only(LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "tenant_id"), "acme");
    ck_assert_str_eq(str_field(line, "field_tenant_id"), "other");
    json_decref(line);
    mhdctx_context_unref(ctx);
}
END_TEST

/* The line of one mhdctx_log_ctx() call with @n fields, parsed (duplicate keys fail). */
static json_t *line_of_fields(mhdctx_context *ctx, const mhdctx_field *fields, size_t n)
{
    support_capture_clear();
    mhdctx_log_ctx(ctx, MHDCTX_LOG_INFO, fields, n, "fields");
    return support_capture_only(LINE_FLAGS);
}

START_TEST(repeated_call_field_gets_numbered_names)
{
    support_capture_start();
    json_t *line = line_of_fields(
        NULL, MHDCTX_FIELDS(MHDCTX_F_INT("x", 0), MHDCTX_F_INT("x", 1), MHDCTX_F_INT("x", 2)));
    ck_assert_int_eq(json_integer_value(json_object_get(line, "x")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "field_x")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "field_x_2")), 2);
    json_decref(line);
}
END_TEST

/* A renamed field takes "field_<key>"; a field of the call named so itself moves on. */
START_TEST(renamed_field_and_a_field_so_named_both_stay)
{
    mhdctx_context *ctx = mhdctx_context_new();
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", "acme"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "field_user_id", "a user key"), MHDCTX_OK);
    support_capture_start();
    json_t *line = line_of_fields(ctx, MHDCTX_FIELDS(MHDCTX_F_INT("tenant_id", 1),
                                                     MHDCTX_F_INT("field_tenant_id", 2),
                                                     MHDCTX_F_INT("user_id", 3)));
    ck_assert_str_eq(str_field(line, "tenant_id"), "acme");
    ck_assert_int_eq(json_integer_value(json_object_get(line, "field_tenant_id")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "field_field_tenant_id")), 2);
    ck_assert_str_eq(str_field(line, "field_user_id"), "a user key");
    ck_assert_int_eq(json_integer_value(json_object_get(line, "field_user_id_2")), 3);
    json_decref(line);
    mhdctx_context_unref(ctx);
}
END_TEST

/* Only the line's own keys count: a key inside a user key's object or inside an
 * earlier field's JSON value leaves a call field its name. */
START_TEST(keys_inside_values_do_not_rename_a_field)
{
    mhdctx_context *ctx = mhdctx_context_new();
    ck_assert_int_eq(
        mhdctx_set_new(ctx, "obj", json_pack("{s:i,s:[{s:i}]}", "y", 1, "l", "z", 2)),
        MHDCTX_OK);
    support_capture_start();
    json_t *nested = json_pack("{s:{s:s}}", "w", "v", "a\"b,\"w\":");
    json_t *line = line_of_fields(
        ctx, MHDCTX_FIELDS(MHDCTX_F_JSON("j", nested), MHDCTX_F_INT("y", 1),
                           MHDCTX_F_INT("z", 2), MHDCTX_F_INT("w", 3), MHDCTX_F_INT("v", 4)));
    ck_assert_int_eq(json_integer_value(json_object_get(line, "y")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "z")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "w")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "v")), 4);
    ck_assert_ptr_null(json_object_get(line, "field_y"));
    json_decref(line);
    json_decref(nested);
    mhdctx_context_unref(ctx);
}
END_TEST

/* Two keys that escape to the same text (invalid UTF-8 becomes U+FFFD), and a key too
 * long for any fixed buffer, are told apart in full. */
START_TEST(keys_equal_once_escaped_or_long_stay_apart)
{
    char long_key[1500];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    support_capture_start();
    json_t *line = line_of_fields(
        NULL, MHDCTX_FIELDS(MHDCTX_F_INT("\xff", 0), MHDCTX_F_INT("\xfe", 1),
                            MHDCTX_F_INT(long_key, 2), MHDCTX_F_INT(long_key, 3)));
    ck_assert_int_eq(json_integer_value(json_object_get(line, "\xef\xbf\xbd")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "field_\xef\xbf\xbd")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(line, long_key)), 2);
    char renamed[sizeof long_key + 8];
    snprintf(renamed, sizeof renamed, "field_%s", long_key);
    ck_assert_int_eq(json_integer_value(json_object_get(line, renamed)), 3);
    json_decref(line);
}
END_TEST

/* Thousands of fields whose names differ only in invalid bytes (all written as
 * "\ufffd\ufffd"), then as many plain ones: each keeps its value under a name of its
 * own, numbered in order. (Names are looked up in a set of the line's keys: a call of
 * colliding names costs in proportion to its size, not its square.) */
START_TEST(many_colliding_fields_all_kept)
{
    enum { COLLIDING = 3000, PLAIN = 1000, N = COLLIDING + PLAIN };
    static char names[N][8];
    static mhdctx_field fields[N];
    for (int i = 0; i < N; i++) {
        if (i < COLLIDING)
            snprintf(names[i], sizeof names[i], "%c%c", 0x80 + i / 64, 0x80 + i % 64);
        else
            snprintf(names[i], sizeof names[i], "p%d", i);
        fields[i] = MHDCTX_F_INT(names[i], i);
    }
    support_capture_start();
    json_t *line = line_of_fields(NULL, fields, N);
    ck_assert_uint_eq(json_object_size(line), 3 + N);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "\xef\xbf\xbd\xef\xbf\xbd")), 0);
    ck_assert_int_eq(
        json_integer_value(json_object_get(line, "field_\xef\xbf\xbd\xef\xbf\xbd")), 1);
    char last[64];
    snprintf(last, sizeof last, "field_\xef\xbf\xbd\xef\xbf\xbd_%d", COLLIDING - 1);
    ck_assert_int_eq(json_integer_value(json_object_get(line, last)), COLLIDING - 1);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "p3999")), N - 1);
    json_decref(line);
}
END_TEST

/* Thousands of fields named after a library field, outside a context (the line has no
 * "request_id"): each is kept under a name of its own, numbered in order, in time in
 * proportion to their number (each used to search its name from "field_request_id"
 * on: 20,000 of them took minutes). */
START_TEST(many_library_named_fields_without_context_all_kept)
{
    enum { N = 20000 };
    static mhdctx_field fields[N];
    for (int i = 0; i < N; i++)
        fields[i] = MHDCTX_F_INT(i % 2 ? "request_id" : "span_id", i);
    support_capture_start();
    json_t *line = line_of_fields(NULL, fields, N);
    ck_assert_uint_eq(json_object_size(line), 3 + N);
    ck_assert_ptr_null(json_object_get(line, "request_id"));
    ck_assert_int_eq(json_integer_value(json_object_get(line, "field_span_id")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "field_request_id")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "field_request_id_2")), 3);
    char last[64];
    snprintf(last, sizeof last, "field_request_id_%d", N / 2);
    ck_assert_int_eq(json_integer_value(json_object_get(line, last)), N - 1);
    json_decref(line);
}
END_TEST

/* Random calls over names chosen to collide - library fields, user keys, renamed forms,
 * repeats, escapes, NULL - inside and outside a context: every line parses with no key
 * twice (LINE_FLAGS), keeps every field (each value is its field's index, found once
 * outside the line's own keys), and a library field never carries a call's value. */
START_TEST(call_fields_never_repeat_a_key)
{
    static const char *const pool[] = {"a",
                                       "field_a",
                                       "field_a_2",
                                       "request_id",
                                       "field_request_id",
                                       "time",
                                       "field_time_2",
                                       "tenant_id",
                                       "field_tenant_id",
                                       "obj",
                                       "",
                                       NULL,
                                       "\xff",
                                       "\xfe",
                                       "field_\xef\xbf\xbd",
                                       "a\"b",
                                       "caf\xc3\xa9",
                                       "y",
                                       "trace_id",
                                       "field_field_a"};
    enum { POOL = sizeof pool / sizeof *pool, MAX_FIELDS = 12 };
    mhdctx_context *ctx = mhdctx_context_new();
    ck_assert_int_eq(mhdctx_set_string(ctx, "tenant_id", "acme"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "field_a", "user"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_new(ctx, "obj", json_pack("{s:i}", "y", 7)), MHDCTX_OK);
    support_capture_start();
    unsigned seed = 12345;
    for (int round = 0; round < 3000; round++) {
        mhdctx_context *on = round % 2 ? ctx : NULL;
        mhdctx_field fields[MAX_FIELDS];
        size_t n = 1 + (size_t)(rand_r(&seed) % MAX_FIELDS);
        for (size_t i = 0; i < n; i++)
            fields[i] = MHDCTX_F_INT(pool[rand_r(&seed) % POOL], (long long)i);
        support_capture_clear();
        mhdctx_log_ctx(on, MHDCTX_LOG_INFO, fields, n, "round %d", round);
        json_t *line = support_capture_only(LINE_FLAGS);
        size_t own = on ? 11 : 3; /* time level message [5 ids, tenant_id field_a obj] */
        ck_assert_uint_eq(json_object_size(line), own + n);
        bool seen[MAX_FIELDS] = {false};
        const char *key;
        json_t *value;
        json_object_foreach(line, key, value)
        {
            if (!json_is_integer(value))
                continue;
            long long i = json_integer_value(value);
            ck_assert_msg(i >= 0 && (size_t)i < n && !seen[i], "round %d: %s", round, key);
            seen[i] = true;
        }
        if (on)
            ck_assert_str_eq(str_field(line, "request_id"), mhdctx_request_id(ctx));
        ck_assert_msg(json_is_string(json_object_get(line, "time")), "round %d", round);
        json_decref(line);
    }
    mhdctx_context_unref(ctx);
}
END_TEST

/* ---- hostile input -------------------------------------------------------------------- */

START_TEST(hostile_message_gives_one_valid_line)
{
    static const char hostile[] = "evil\r\n{\"level\":\"error\",\"request_id\":\"x\"}\n"
                                  "quote\" back\\slash \x01\x1b[2J del\x7f bad\xff\xfe "
                                  "trunc\xe2\x82 sep\xe2\x80\xa8 ok\xc3\xa9";
    support_capture_start();
    mhdctx_log_info("%s", hostile);
    mhdctx_log_info("direct \r\n \"%d\"", 1);
    ck_assert_uint_eq(support_capture_n(), 2);
    json_t *line = support_capture_json(0, LINE_FLAGS);
    const char *message = str_field(line, "message");
    ck_assert_ptr_nonnull(strstr(message, "evil\r\n{\"level\":\"error\""));
    ck_assert_ptr_nonnull(strstr(message, "quote\" back\\slash \x01\x1b[2J del\x7f"));
    ck_assert_ptr_nonnull(strstr(message, "bad\xef\xbf\xbd")); /* U+FFFD */
    ck_assert_ptr_nonnull(strstr(message, "sep\xe2\x80\xa8 ok\xc3\xa9"));
    ck_assert_str_eq(str_field(line, "level"), "info");
    ck_assert_ptr_null(json_object_get(line, "request_id"));
    ck_assert_ptr_null(strstr(support_capture_line(0)->text, "\xe2\x80\xa8")); /* escaped */
    json_decref(line);
    line = support_capture_json(1, LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "message"), "direct \r\n \"1\"");
    json_decref(line);
}
END_TEST

START_TEST(hostile_fields_give_one_valid_line)
{
    static const char bytes[] = "nul\0inside\r\nand \"quotes\" \xff\xc0\x80";
    support_capture_start();
    mhdctx_log_fields(MHDCTX_LOG_INFO,
                      MHDCTX_FIELDS(MHDCTX_F_STR("crlf", "a\r\nb"),
                                    MHDCTX_F_STR("quote", "\"},{\"request_id\":\"x"),
                                    MHDCTX_F_STR("bad_utf8", "\xed\xa0\x80\xf4\x90\x80\x80"),
                                    MHDCTX_F_BYTES("bytes", bytes, sizeof bytes - 1),
                                    MHDCTX_F_STR("key\"with\nnewline", "v"),
                                    MHDCTX_F_STR("key\xff", "w"), MHDCTX_F_STR(NULL, "nokey")),
                      "fields");
    json_t *line = support_capture_only(LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "crlf"), "a\r\nb");
    ck_assert_str_eq(str_field(line, "quote"), "\"},{\"request_id\":\"x");
    ck_assert_ptr_null(json_object_get(line, "request_id"));
    const char *bad = str_field(line, "bad_utf8");
    ck_assert_ptr_nonnull(strstr(bad, "\xef\xbf\xbd"));
    json_t *b = json_object_get(line, "bytes");
    ck_assert_uint_eq(json_string_length(b), sizeof bytes - 1 - 3 + 3 * 3);
    ck_assert_mem_eq(json_string_value(b), "nul\0inside\r\nand \"quotes\" ", 25);
    ck_assert_str_eq(str_field(line, "key\"with\nnewline"), "v");
    ck_assert_str_eq(str_field(line, "key\xef\xbf\xbd"), "w");
    ck_assert_str_eq(str_field(line, ""), "nokey");
    json_decref(line);
}
END_TEST

/* A user key or user id with hostile bytes cannot break the line either. */
static void log_plain(void *arg)
{
    (void)arg;
    mhdctx_log_info("plain");
}

START_TEST(hostile_context_values_give_one_valid_line)
{
    mhdctx_context *ctx = mhdctx_context_new();
    /* invalid UTF-8 never becomes a user id (it is exported as JSON) */
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "\"evil\" \\ \xff"), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_set_user_id(ctx, "\"evil\" \\ */ --"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_set_string(ctx, "note", "line\nbreak \"q\""), MHDCTX_OK);
    support_capture_start();
    mhdctx_run(ctx, log_plain, NULL);
    json_t *line = support_capture_only(LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "user_id"), "\"evil\" \\ */ --");
    ck_assert_str_eq(str_field(line, "note"), "line\nbreak \"q\"");
    json_decref(line);
    mhdctx_context_unref(ctx);
}
END_TEST

/* ---- long lines ------------------------------------------------------------------------ */

static char *pattern(size_t n)
{
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('a' + i % 26);
    s[n] = '\0';
    return s;
}

static void assert_message_logged_whole(size_t n)
{
    char *text = pattern(n);
    support_capture_start();
    mhdctx_log_info("%s", text);
    json_t *line = support_capture_only(LINE_FLAGS);
    const char *message = str_field(line, "message");
    ck_assert_uint_eq(strlen(message), n);
    ck_assert_msg(strcmp(message, text) == 0, "message of %zu bytes changed", n);
    json_decref(line);
    free(text);
    support_capture_clear();
}

START_TEST(message_longer_than_8k_is_logged_whole)
{
    assert_message_logged_whole(8 * 1024 - 60); /* the line just fits the buffer */
    assert_message_logged_whole(8 * 1024);
    assert_message_logged_whole(8 * 1024 + 1);
    assert_message_logged_whole(9000);
}
END_TEST

START_TEST(message_of_100k_is_logged_whole)
{
    assert_message_logged_whole(100 * 1000);
}
END_TEST

START_TEST(escape_heavy_100k_message_is_logged_whole)
{
    enum { N = 100 * 1000 };
    char *text = malloc(N + 1);
    ck_assert_ptr_nonnull(text);
    for (size_t i = 0; i < N; i++)
        text[i] = i % 2 ? '\x01' : '"'; /* 6 and 2 bytes each once escaped */
    text[N] = '\0';
    support_capture_start();
    mhdctx_log_info("%s", text);
    json_t *line = support_capture_only(LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "message"), text);
    ck_assert_uint_gt(support_capture_line(0)->len, 4 * (size_t)N);
    json_decref(line);
    free(text);
}
END_TEST

START_TEST(long_fields_are_logged_whole)
{
    char *a = pattern(20000), *b = pattern(70000);
    support_capture_start();
    mhdctx_log_fields(MHDCTX_LOG_INFO,
                      MHDCTX_FIELDS(MHDCTX_F_STR("a", a), MHDCTX_F_BYTES("b", b, 70000)),
                      "short message");
    json_t *line = support_capture_only(LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "a"), a);
    ck_assert_str_eq(str_field(line, "b"), b);
    json_decref(line);
    free(a);
    free(b);
}
END_TEST

/* ---- levels ---------------------------------------------------------------------------- */

START_TEST(debug_is_suppressed_at_info)
{
    mhdctx_log_set_level(MHDCTX_LOG_INFO);
    support_capture_start();
    mhdctx_log_debug("hidden");
    mhdctx_log_fields(MHDCTX_LOG_DEBUG, MHDCTX_FIELDS(MHDCTX_F_INT("x", 1)), "hidden too");
    mhdctx_log_info("shown");
    ck_assert_uint_eq(support_capture_n(), 1);
    json_t *line = support_capture_only(LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "message"), "shown");
    json_decref(line);
    mhdctx_log_set_level(MHDCTX_LOG_DEBUG);
    mhdctx_log_debug("now shown");
    ck_assert_uint_eq(support_capture_n(), 2);
}
END_TEST

START_TEST(threshold_off_suppresses_everything)
{
    mhdctx_log_set_level(MHDCTX_LOG_OFF);
    support_capture_start();
    mhdctx_log_error("hidden");
    mhdctx_log_errno(EIO, NULL, 0, "hidden");
    mhdctx_log_ctx(NULL, MHDCTX_LOG_ERROR, NULL, 0, "hidden");
    ck_assert_uint_eq(support_capture_n(), 0);
}
END_TEST

START_TEST(threshold_error_keeps_only_errors)
{
    mhdctx_log_set_level(MHDCTX_LOG_ERROR);
    support_capture_start();
    mhdctx_log_debug("no");
    mhdctx_log_info("no");
    mhdctx_log_warn("no");
    mhdctx_log_error("yes");
    ck_assert_uint_eq(support_capture_n(), 1);
}
END_TEST

START_TEST(log_enabled_follows_threshold)
{
    for (int t = MHDCTX_LOG_DEBUG; t <= MHDCTX_LOG_OFF; t++) {
        mhdctx_log_set_level((mhdctx_log_level)t);
        ck_assert_int_eq(mhdctx_log_get_level(), t);
        for (int l = MHDCTX_LOG_DEBUG; l <= MHDCTX_LOG_OFF; l++) {
            bool expected = l != MHDCTX_LOG_OFF && l >= t;
            ck_assert_msg(mhdctx_log_enabled((mhdctx_log_level)l) == expected,
                          "threshold %d, level %d", t, l);
        }
        ck_assert(!mhdctx_log_enabled((mhdctx_log_level)7));
    }
}
END_TEST

START_TEST(set_level_ignores_values_out_of_range)
{
    mhdctx_log_set_level(MHDCTX_LOG_WARN);
    mhdctx_log_set_level((mhdctx_log_level)5);
    mhdctx_log_set_level((mhdctx_log_level)-1);
    ck_assert_int_eq(mhdctx_log_get_level(), MHDCTX_LOG_WARN);
}
END_TEST

START_TEST(level_names)
{
    ck_assert_str_eq(mhdctx_log_level_name(MHDCTX_LOG_DEBUG), "debug");
    ck_assert_str_eq(mhdctx_log_level_name(MHDCTX_LOG_INFO), "info");
    ck_assert_str_eq(mhdctx_log_level_name(MHDCTX_LOG_WARN), "warn");
    ck_assert_str_eq(mhdctx_log_level_name(MHDCTX_LOG_ERROR), "error");
    ck_assert_str_eq(mhdctx_log_level_name(MHDCTX_LOG_OFF), "off");
    ck_assert_ptr_nonnull(mhdctx_log_level_name((mhdctx_log_level)99));
}
END_TEST

START_TEST(level_parse_accepts_names_in_any_case)
{
    static const struct {
        const char *text;
        mhdctx_log_level level;
    } ok[] = {{"debug", MHDCTX_LOG_DEBUG}, {"INFO", MHDCTX_LOG_INFO},
              {"Warn", MHDCTX_LOG_WARN},   {"eRRoR", MHDCTX_LOG_ERROR},
              {"off", MHDCTX_LOG_OFF},     {"OFF", MHDCTX_LOG_OFF},
              {"info", MHDCTX_LOG_INFO},   {"DEBUG", MHDCTX_LOG_DEBUG}};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        mhdctx_log_level level = (mhdctx_log_level)42;
        ck_assert_int_eq(mhdctx_log_level_parse(ok[i].text, &level), MHDCTX_OK);
        ck_assert_int_eq(level, ok[i].level);
        /* round trip through the name */
        ck_assert_int_eq(mhdctx_log_level_parse(mhdctx_log_level_name(level), &level),
                         MHDCTX_OK);
        ck_assert_int_eq(level, ok[i].level);
    }
}
END_TEST

/* Level names are ASCII: "INFO" is info in a Turkish locale too, where strcasecmp()
 * held "INFO" and "info" different ('I' does not lower to 'i' there). */
START_TEST(level_parse_is_ascii_under_a_turkish_locale)
{
    char dir[32];
    test_turkish_ctype_begin(dir);
    mhdctx_log_level level = MHDCTX_LOG_OFF;
    mhdctx_error rc = mhdctx_log_level_parse("INFO", &level);
    test_ctype_locale_end(dir);
    ck_assert_int_eq(rc, MHDCTX_OK);
    ck_assert_int_eq(level, MHDCTX_LOG_INFO);
}
END_TEST

START_TEST(level_parse_rejects_others_and_leaves_level_untouched)
{
    static const char *const bad[] = {"",      "warning", "err", "information", " info",
                                      "info ", "trace",   "0",   "inf",         "debug\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mhdctx_log_level level = MHDCTX_LOG_WARN;
        ck_assert_msg(mhdctx_log_level_parse(bad[i], &level) == MHDCTX_EINVAL, "'%s'", bad[i]);
        ck_assert_int_eq(level, MHDCTX_LOG_WARN);
    }
    mhdctx_log_level level = MHDCTX_LOG_WARN;
    ck_assert_int_eq(mhdctx_log_level_parse(NULL, &level), MHDCTX_EINVAL);
    ck_assert_int_eq(level, MHDCTX_LOG_WARN);
    ck_assert_int_eq(mhdctx_log_level_parse("info", NULL), MHDCTX_EINVAL);
}
END_TEST

/* ---- MHDCTX_LOG_LEVEL, in a fresh process ------------------------------------------------
 * The threshold is read from the environment once per process, so each case runs this
 * executable again (fork + exec) with a mode argument that main() handles. */

#define CHILD_READ       "--child-read-level"    /* exit status: the level */
#define CHILD_READ_TWICE "--child-read-twice"    /* level, or 100 if the 2nd read differs */
#define CHILD_SET_FIRST  "--child-set-then-read" /* set WARN first, then read */

static int child_mode(const char *mode)
{
    if (strcmp(mode, CHILD_READ) == 0)
        return (int)mhdctx_log_get_level();
    if (strcmp(mode, CHILD_READ_TWICE) == 0) {
        mhdctx_log_level first = mhdctx_log_get_level();
        setenv("MHDCTX_LOG_LEVEL", first == MHDCTX_LOG_DEBUG ? "error" : "debug", 1);
        bool enabled = mhdctx_log_enabled(MHDCTX_LOG_DEBUG);
        return mhdctx_log_get_level() == first && enabled == (first == MHDCTX_LOG_DEBUG)
                   ? (int)first
                   : 100;
    }
    if (strcmp(mode, CHILD_SET_FIRST) == 0) {
        mhdctx_log_set_level(MHDCTX_LOG_WARN);
        return (int)mhdctx_log_get_level();
    }
    return 99;
}

/* Runs this executable with @mode and MHDCTX_LOG_LEVEL=@env (NULL: unset). */
static int run_child(const char *mode, const char *env)
{
    ck_assert_msg(self_path[0] != '\0', "path of the test executable unknown");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (env)
            setenv("MHDCTX_LOG_LEVEL", env, 1);
        else
            unsetenv("MHDCTX_LOG_LEVEL");
        execl(self_path, self_path, mode, (char *)NULL);
        _exit(98);
    }
    return support_wait_child(pid);
}

START_TEST(env_level_is_honoured)
{
    ck_assert_int_eq(run_child(CHILD_READ, NULL), MHDCTX_LOG_INFO);
    ck_assert_int_eq(run_child(CHILD_READ, "debug"), MHDCTX_LOG_DEBUG);
    ck_assert_int_eq(run_child(CHILD_READ, "WARN"), MHDCTX_LOG_WARN);
    ck_assert_int_eq(run_child(CHILD_READ, "error"), MHDCTX_LOG_ERROR);
    ck_assert_int_eq(run_child(CHILD_READ, "off"), MHDCTX_LOG_OFF);
}
END_TEST

START_TEST(env_level_invalid_falls_back_to_info)
{
    ck_assert_int_eq(run_child(CHILD_READ, "verbose"), MHDCTX_LOG_INFO);
    ck_assert_int_eq(run_child(CHILD_READ, ""), MHDCTX_LOG_INFO);
}
END_TEST

START_TEST(env_level_is_read_only_on_first_use)
{
    ck_assert_int_eq(run_child(CHILD_READ_TWICE, "warn"), MHDCTX_LOG_WARN);
    ck_assert_int_eq(run_child(CHILD_READ_TWICE, "debug"), MHDCTX_LOG_DEBUG);
    ck_assert_int_eq(run_child(CHILD_READ_TWICE, NULL), MHDCTX_LOG_INFO);
}
END_TEST

START_TEST(set_level_before_first_use_wins_over_env)
{
    ck_assert_int_eq(run_child(CHILD_SET_FIRST, "debug"), MHDCTX_LOG_WARN);
}
END_TEST

/* ---- errno lines --------------------------------------------------------------------- */

START_TEST(log_errno_adds_errno_and_error_text)
{
    support_capture_start();
    mhdctx_log_set_level(MHDCTX_LOG_WARN);
    mhdctx_log_errno(ENOENT, NULL, 0, "open %s failed", "/nope");
    json_t *line = support_capture_only(LINE_FLAGS);
    ck_assert_str_eq(str_field(line, "level"), "error");
    ck_assert_str_eq(str_field(line, "message"), "open /nope failed");
    ck_assert_int_eq(json_integer_value(json_object_get(line, "errno")), ENOENT);
    ck_assert_str_eq(str_field(line, "error"), strerror(ENOENT));
    ck_assert_int_eq(support_capture_line(0)->level, MHDCTX_LOG_ERROR);
    json_decref(line);
}
END_TEST

START_TEST(log_errno_keeps_call_fields)
{
    support_capture_start();
    mhdctx_log_errno(EACCES,
                     MHDCTX_FIELDS(MHDCTX_F_STR("path", "/etc/shadow"), MHDCTX_F_INT("fd", -1)),
                     "denied");
    json_t *line = support_capture_only(LINE_FLAGS);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "errno")), EACCES);
    ck_assert_str_eq(str_field(line, "error"), strerror(EACCES));
    ck_assert_str_eq(str_field(line, "path"), "/etc/shadow");
    ck_assert_int_eq(json_integer_value(json_object_get(line, "fd")), -1);
    json_decref(line);
}
END_TEST

START_TEST(log_errno_with_null_fields_ignores_n)
{
    support_capture_start();
    mhdctx_log_errno(EIO, NULL, 3, "no fields");
    json_t *v = support_capture_only(LINE_FLAGS);
    ck_assert_int_eq(json_integer_value(json_object_get(v, "errno")), EIO);
    ck_assert_uint_eq(json_object_size(v), 5); /* time, level, message, errno, error */
    json_decref(v);
}
END_TEST

START_TEST(log_errno_with_unknown_errno_still_logs)
{
    support_capture_start();
    mhdctx_log_errno(123456, NULL, 0, "odd");
    json_t *line = support_capture_only(LINE_FLAGS);
    ck_assert_int_eq(json_integer_value(json_object_get(line, "errno")), 123456);
    ck_assert_uint_gt(strlen(str_field(line, "error")), 0);
    json_decref(line);
}
END_TEST

/* ---- sinks ----------------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char *data = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            data = realloc(data, cap);
            ck_assert_ptr_nonnull(data);
        }
        size_t n = fread(data + *len, 1, cap - *len - 1, f);
        if (n == 0)
            break;
        *len += n;
    }
    fclose(f);
    data[*len] = '\0';
    return data;
}

/* Calls fn for each '\n'-terminated line of data; returns the number of lines. */
static size_t for_each_line(const char *data, size_t len,
                            void (*fn)(const char *line, size_t len, void *cls), void *cls)
{
    size_t count = 0;
    const char *p = data, *end = data + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        ck_assert_msg(nl != NULL, "last line is not terminated");
        fn(p, (size_t)(nl - p + 1), cls);
        count++;
        p = nl + 1;
    }
    return count;
}

static void check_message_line(const char *line, size_t len, void *cls)
{
    size_t *line_no = cls;
    json_t *v = support_parse_line(line, len, LINE_FLAGS);
    char expected[32];
    snprintf(expected, sizeof expected, "line %zu", (*line_no)++);
    ck_assert_str_eq(str_field(v, "message"), expected);
    json_decref(v);
}

/* Whether this process has a descriptor open on @path. */
static bool fd_open_on(const char *path)
{
    DIR *dir = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(dir);
    bool found = false;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        char link[PATH_MAX + 32], target[PATH_MAX];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            found = found || strcmp(target, path) == 0;
        }
    }
    closedir(dir);
    return found;
}

START_TEST(file_sink_creates_appends_and_closes)
{
    char dir[] = "/tmp/check_log_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[sizeof dir + 16];
    snprintf(path, sizeof path, "%s/app.log", dir);
    mode_t old_mask = umask(022);

    ck_assert_int_eq(mhdctx_log_to_file(path), MHDCTX_OK);
    ck_assert(fd_open_on(path));
    mhdctx_log_info("line %d", 0);
    mhdctx_log_info("line %d", 1);
    mhdctx_log_shutdown(); /* closes the file, back to stdout */
    ck_assert(!fd_open_on(path));
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0644);

    ck_assert_int_eq(mhdctx_log_to_file(path), MHDCTX_OK); /* appends */
    mhdctx_log_info("line %d", 2);
    support_capture_start();
    ck_assert(!fd_open_on(path)); /* replacing the sink closes the file */
    mhdctx_log_info("not in the file");

    size_t len, line_no = 0;
    char *data = read_file(path, &len);
    ck_assert_uint_eq(for_each_line(data, len, check_message_line, &line_no), 3);
    free(data);
    umask(old_mask);
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(file_sink_argument_errors)
{
    ck_assert_int_eq(mhdctx_log_to_file(NULL), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_log_to_file(""), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_log_to_file("/nonexistent-dir-for-mhdctx/x.log"), MHDCTX_EIO);
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_int_eq(mhdctx_log_to_fd(-1), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_log_to_callback(NULL, NULL), MHDCTX_EINVAL);
    /* A failed switch keeps the previous sink. */
    support_capture_start();
    ck_assert_int_eq(mhdctx_log_to_file("/nonexistent-dir-for-mhdctx/x.log"), MHDCTX_EIO);
    mhdctx_log_info("still captured");
    ck_assert_uint_eq(support_capture_n(), 1);
}
END_TEST

START_TEST(fd_sink_on_a_pipe)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(mhdctx_log_to_fd(fds[1]), MHDCTX_OK);
    mhdctx_log_info("line %d", 0);
    mhdctx_log_fields(MHDCTX_LOG_WARN, MHDCTX_FIELDS(MHDCTX_F_INT("k", 5)), "line %d", 1);
    ck_assert_int_eq(mhdctx_log_to_stdout(), MHDCTX_OK);
    ck_assert_int_ne(fcntl(fds[1], F_GETFD), -1); /* the caller's fd stays open */
    close(fds[1]);
    char data[4096];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], data + len, sizeof data - 1 - len)) > 0)
        len += (size_t)n;
    close(fds[0]);
    size_t line_no = 0;
    ck_assert_uint_eq(for_each_line(data, len, check_message_line, &line_no), 2);
}
END_TEST

START_TEST(stderr_and_stdout_sinks_can_be_chosen)
{
    ck_assert_int_eq(mhdctx_log_to_stderr(), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_log_to_stdout(), MHDCTX_OK);
}
END_TEST

START_TEST(dev_full_counts_a_drop_and_does_not_crash)
{
    int fd = open("/dev/full", O_WRONLY);
    ck_assert_int_ge(fd, 0);
    uint64_t before = mhdctx_log_dropped();
    ck_assert_int_eq(mhdctx_log_to_fd(fd), MHDCTX_OK);
    mhdctx_log_info("into the void");
    ck_assert_uint_eq(mhdctx_log_dropped(), before + 1);
    mhdctx_log_error("again %d", 2);
    ck_assert_uint_eq(mhdctx_log_dropped(), before + 2);
    mhdctx_log_debug("below the threshold: not a drop");
    ck_assert_uint_eq(mhdctx_log_dropped(), before + 2);
    support_capture_start(); /* a working sink after a failing one */
    mhdctx_log_info("fine");
    ck_assert_uint_eq(support_capture_n(), 1);
    ck_assert_uint_eq(mhdctx_log_dropped(), before + 2);
    close(fd);
}
END_TEST

/* SIGPIPE's disposition and this thread's mask, as they were before set_sigpipe(). */
struct sigpipe_state {
    struct sigaction action;
    sigset_t mask;
};

/* SIGPIPE handled by @handler and unblocked on this thread; @saved (if not NULL) keeps
 * what restore_sigpipe() puts back. */
static void set_sigpipe(void (*handler)(int), struct sigpipe_state *saved)
{
    struct sigpipe_state ignored;
    saved = saved ? saved : &ignored;
    struct sigaction sa = {.sa_handler = handler};
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGPIPE, &sa, &saved->action), 0);
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, SIGPIPE);
    pthread_sigmask(SIG_UNBLOCK, &unblock, &saved->mask);
}

static void restore_sigpipe(const struct sigpipe_state *saved)
{
    pthread_sigmask(SIG_SETMASK, &saved->mask, NULL);
    sigaction(SIGPIPE, &saved->action, NULL);
}

START_TEST(closed_pipe_with_default_sigpipe_counts_a_drop)
{
    struct sigpipe_state saved;
    set_sigpipe(SIG_DFL, &saved); /* SIGPIPE would kill us */

    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    close(fds[0]); /* no reader */
    uint64_t before = mhdctx_log_dropped();
    ck_assert_int_eq(mhdctx_log_to_fd(fds[1]), MHDCTX_OK);
    mhdctx_log_info("nobody listens");
    mhdctx_log_info("still nobody");
    ck_assert_uint_eq(mhdctx_log_dropped(), before + 2); /* and we are alive */

    sigset_t pending;
    sigpending(&pending);
    ck_assert_msg(!sigismember(&pending, SIGPIPE), "a SIGPIPE was left pending");
    ck_assert_int_eq(mhdctx_log_to_stdout(), MHDCTX_OK);
    close(fds[1]);
    restore_sigpipe(&saved);
}
END_TEST

/* SIGPIPE's disposition is read at a sink's first write (a system call per line would
 * double a synchronous line's cost): a program that stops ignoring SIGPIPE sets its sink
 * again, and the new disposition counts from then on. */
START_TEST(sink_set_again_reads_sigpipe_again)
{
    struct sigpipe_state saved;
    set_sigpipe(SIG_IGN, &saved);

    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(mhdctx_log_to_fd(fds[1]), MHDCTX_OK);
    mhdctx_log_info("read while SIGPIPE is ignored"); /* no guard needed */
    set_sigpipe(SIG_DFL, NULL);
    ck_assert_int_eq(mhdctx_log_to_fd(fds[1]), MHDCTX_OK);
    close(fds[0]); /* no reader: SIGPIPE would kill us now */
    uint64_t before = mhdctx_log_dropped();
    mhdctx_log_info("nobody listens");
    ck_assert_uint_eq(mhdctx_log_dropped(), before + 1); /* and we are alive */

    ck_assert_int_eq(mhdctx_log_to_stdout(), MHDCTX_OK);
    close(fds[1]);
    restore_sigpipe(&saved);
}
END_TEST

START_TEST(callback_receives_each_line_with_its_level)
{
    support_capture_start();
    mhdctx_log_warn("w");
    mhdctx_log_error("e");
    ck_assert_uint_eq(support_capture_n(), 2);
    ck_assert_int_eq(support_capture_line(0)->level, MHDCTX_LOG_WARN);
    ck_assert_int_eq(support_capture_line(1)->level, MHDCTX_LOG_ERROR);
    ck_assert_int_eq(support_capture_line(0)->text[support_capture_line(0)->len - 1], '\n');
}
END_TEST

static int reentered;

static void logging_callback(mhdctx_log_level level, const char *line, size_t len, void *cls)
{
    (void)level, (void)line, (void)len;
    (*(int *)cls)++;
    if (reentered++ == 0)
        mhdctx_log_warn("from inside the sink"); /* used to wait for the sink's own lock */
}

START_TEST(callback_that_logs_drops_its_own_line)
{
    int calls = 0;
    uint64_t before = mhdctx_log_dropped();
    ck_assert_int_eq(mhdctx_log_to_callback(logging_callback, &calls), MHDCTX_OK);
    mhdctx_log_info("outer");
    mhdctx_log_info("second");
    ck_assert_int_eq(calls, 2);
    ck_assert_uint_eq(mhdctx_log_dropped(), before + 1);
}
END_TEST

/* Reads @fd until EOF into data (up to cap bytes), starting late: the writer finds the
 * pipe full first. */
struct collected_pipe {
    int fd;
    char *data;
    size_t len, cap;
};

static void *collect_to_eof(void *arg)
{
    struct collected_pipe *r = arg;
    sleep_ms(200);
    ssize_t n;
    while ((n = read(r->fd, r->data + r->len, r->cap - r->len)) > 0 ||
           (n < 0 && errno == EINTR))
        r->len += n > 0 ? (size_t)n : 0;
    return NULL;
}

START_TEST(non_blocking_pipe_gets_whole_lines)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(fcntl(fds[1], F_SETFL, O_NONBLOCK), 0); /* the sink's end only */
    struct collected_pipe r = {.fd = fds[0], .cap = 1 << 20};
    r.data = malloc(r.cap);
    ck_assert_ptr_nonnull(r.data);
    pthread_t reader;
    ck_assert_int_eq(pthread_create(&reader, NULL, collect_to_eof, &r), 0);
    uint64_t before = mhdctx_log_dropped();
    ck_assert_int_eq(mhdctx_log_to_fd(fds[1]), MHDCTX_OK);
    char *big = repeat('n', 300 * 1024); /* several pipe-fulls: EAGAIN on the way */
    mhdctx_log_info("%s", big);
    mhdctx_log_info("next");
    ck_assert_int_eq(mhdctx_log_to_stdout(), MHDCTX_OK);
    close(fds[1]);
    pthread_join(reader, NULL);
    close(fds[0]);
    ck_assert_uint_eq(mhdctx_log_dropped(), before);
    const char *second = memchr(r.data, '\n', r.len);
    ck_assert_ptr_nonnull(second);
    json_t *first = support_parse_line(r.data, (size_t)(second + 1 - r.data), 0);
    ck_assert_str_eq(json_string_value(json_object_get(first, "message")), big);
    json_t *next = support_parse_line(second + 1, r.len - (size_t)(second + 1 - r.data), 0);
    ck_assert_str_eq(json_string_value(json_object_get(next, "message")), "next");
    json_decref(first);
    json_decref(next);
    free(big);
    free(r.data);
}
END_TEST

/* A reader that stops reading for longer than the sink waits: the line is cut and
 * dropped, and the next line starts on a line of its own. */
START_TEST(line_after_a_cut_line_starts_a_line_of_its_own)
{
    int fds[2];
    ck_assert_int_eq(pipe2(fds, O_NONBLOCK), 0);
    uint64_t before = mhdctx_log_dropped();
    ck_assert_int_eq(mhdctx_log_to_fd(fds[1]), MHDCTX_OK);
    char *big = repeat('c', 300 * 1024);
    mhdctx_log_info("%s", big); /* fills the pipe, waits a second, gives up */
    free(big);
    ck_assert_uint_eq(mhdctx_log_dropped(), before + 1);
    char *drained = malloc(1 << 20);
    ck_assert_ptr_nonnull(drained);
    while (read(fds[0], drained, 1 << 20) > 0) {
    }
    mhdctx_log_info("next");
    ssize_t n = read(fds[0], drained, 1 << 20);
    ck_assert_int_gt(n, 1);
    ck_assert_int_eq(drained[0], '\n'); /* ends the cut line */
    json_t *next = support_parse_line(drained + 1, (size_t)n - 1, 0);
    ck_assert_str_eq(json_string_value(json_object_get(next, "message")), "next");
    json_decref(next);
    free(drained);
    ck_assert_int_eq(mhdctx_log_to_stdout(), MHDCTX_OK);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

/* A thread holds the sink's lock (inside a callback) when another forks: the child's
 * lines must not wait for a lock whose holder does not exist there. */
static sem_t in_sink, may_leave;

static void holding_callback(mhdctx_log_level level, const char *line, size_t len, void *cls)
{
    (void)level, (void)line, (void)len, (void)cls;
    sem_post(&in_sink);
    sem_wait(&may_leave);
}

static void *log_one(void *arg)
{
    (void)arg;
    mhdctx_log_info("held");
    return NULL;
}

START_TEST(child_of_fork_logs_while_a_parent_thread_held_the_sink)
{
    sem_init(&in_sink, 0, 0);
    sem_init(&may_leave, 0, 0);
    ck_assert_int_eq(mhdctx_log_to_callback(holding_callback, NULL), MHDCTX_OK);
    pthread_t holder;
    ck_assert_int_eq(pthread_create(&holder, NULL, log_one, NULL), 0);
    sem_wait(&in_sink);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        alarm(10);
        if (mhdctx_log_to_file("/dev/null") != MHDCTX_OK)
            _exit(3);
        mhdctx_log_info("in the child");
        _exit(0);
    }
    sem_post(&may_leave);
    pthread_join(holder, NULL);
    ck_assert_int_eq(support_wait_child(child), 0);
    sem_destroy(&in_sink);
    sem_destroy(&may_leave);
}
END_TEST

/* ---- many threads, one sink -------------------------------------------------------------- */

#define LOG_THREADS 8
/* 8 threads x 10,000 lines of 3 KB (240 MB per run); valgrind runs an eighth of it
 * (it would take minutes, and its value there is the memory checking, not the count). */
#define LINES_PER_THREAD 10000
#if defined(__has_include) && __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND RUNNING_ON_VALGRIND
#else
#define UNDER_VALGRIND 0
#endif

static int lines_per_thread(void)
{
    return UNDER_VALGRIND ? LINES_PER_THREAD / 8 : LINES_PER_THREAD;
}
#define PAYLOAD_LEN 3000

/* The message of thread t's line i: distinct content, a few bytes that need escaping. */
static void payload(char *out, int t, int i)
{
    int n = snprintf(out, PAYLOAD_LEN + 1, "t%d-i%d:", t, i);
    for (int k = n; k < PAYLOAD_LEN; k++)
        out[k] = k % 97 == 0 ? '"' : (char)('A' + (t * 7 + i + k) % 26);
    out[PAYLOAD_LEN] = '\0';
}

struct tally {
    unsigned char seen[LOG_THREADS][LINES_PER_THREAD];
    size_t lines;
    size_t bad; /* not JSON, wrong fields, wrong message, duplicate */
    char first_bad[160];
};

static void tally_bad(struct tally *t, const char *why, const char *line, size_t len)
{
    if (t->bad++ == 0)
        snprintf(t->first_bad, sizeof t->first_bad, "%s: %.100s (len %zu)", why, line, len);
}

/* Thread-safe only for one caller at a time (no Check asserts: may run on a thread). */
static void tally_line(const char *line, size_t len, void *cls)
{
    struct tally *t = cls;
    t->lines++;
    json_t *v = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    if (v == NULL || line[len - 1] != '\n') {
        tally_bad(t, "not one JSON line", line, len);
        json_decref(v);
        return;
    }
    json_int_t th = json_integer_value(json_object_get(v, "thread"));
    json_int_t seq = json_integer_value(json_object_get(v, "seq"));
    const char *message = json_string_value(json_object_get(v, "message"));
    char expected[PAYLOAD_LEN + 1];
    if (th < 0 || th >= LOG_THREADS || seq < 0 || seq >= lines_per_thread() || !message) {
        tally_bad(t, "bad fields", line, len);
    } else {
        payload(expected, (int)th, (int)seq);
        if (strcmp(message, expected) != 0)
            tally_bad(t, "message changed", line, len);
        else if (t->seen[th][seq]++)
            tally_bad(t, "duplicate", line, len);
    }
    json_decref(v);
}

static void assert_tally_complete(const struct tally *t)
{
    ck_assert_msg(t->bad == 0, "%zu bad lines, first: %s", t->bad, t->first_bad);
    ck_assert_uint_eq(t->lines, (size_t)LOG_THREADS * (size_t)lines_per_thread());
    for (int th = 0; th < LOG_THREADS; th++) {
        for (int i = 0; i < lines_per_thread(); i++)
            ck_assert_msg(t->seen[th][i] == 1, "thread %d line %d missing", th, i);
    }
}

struct log_worker {
    pthread_t thread;
    int index;
    pthread_barrier_t *start;
};

static void *log_worker_main(void *arg)
{
    struct log_worker *w = arg;
    char *text = malloc(PAYLOAD_LEN + 1);
    if (text == NULL)
        return NULL;
    pthread_barrier_wait(w->start);
    for (int i = 0; i < lines_per_thread(); i++) {
        payload(text, w->index, i);
        mhdctx_log_fields(
            MHDCTX_LOG_INFO,
            MHDCTX_FIELDS(MHDCTX_F_INT("thread", w->index), MHDCTX_F_INT("seq", i)), "%s",
            text);
    }
    free(text);
    return NULL;
}

static void run_log_workers(void)
{
    struct log_worker workers[LOG_THREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, LOG_THREADS);
    for (int t = 0; t < LOG_THREADS; t++) {
        workers[t] = (struct log_worker){.index = t, .start = &start};
        ck_assert_int_eq(pthread_create(&workers[t].thread, NULL, log_worker_main, &workers[t]),
                         0);
    }
    for (int t = 0; t < LOG_THREADS; t++)
        pthread_join(workers[t].thread, NULL);
    pthread_barrier_destroy(&start);
}

/* The batched writer with a buffer small enough to fill many times over, blocking
 * when full (with a limit far above what a healthy sink needs). */
static void start_async_writer(void)
{
    mhdctx_log_async_options o = {.buffer_bytes = 256 * 1024,
                                  .when_full = MHDCTX_LOG_FULL_BLOCK,
                                  .block_timeout_ms = 30000};
    ck_assert_int_eq(mhdctx_log_async_start(&o), MHDCTX_OK);
}

static void threads_to_a_file(bool async)
{
    char path[] = "/tmp/check_log_threads_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    uint64_t dropped = mhdctx_log_dropped();
    ck_assert_int_eq(mhdctx_log_to_file(path), MHDCTX_OK);
    if (async)
        start_async_writer();
    run_log_workers();
    mhdctx_log_shutdown();
    ck_assert_uint_eq(mhdctx_log_dropped(), dropped);

    struct tally *t = calloc(1, sizeof *t);
    ck_assert_ptr_nonnull(t);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0)
        tally_line(line, (size_t)n, t);
    free(line);
    fclose(f);
    unlink(path);
    assert_tally_complete(t);
    free(t);
}

START_TEST(threads_write_whole_lines_to_a_file)
{
    threads_to_a_file(false);
}
END_TEST

START_TEST(threads_write_whole_lines_to_a_file_batched)
{
    threads_to_a_file(true);
}
END_TEST

struct pipe_reader {
    int fd;
    struct tally *tally;
};

/* Reads the pipe to EOF and tallies every complete line as it arrives. */
static void *pipe_reader_main(void *arg)
{
    struct pipe_reader *r = arg;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    for (;;) {
        if (cap - len < 4096) {
            char *grown = realloc(buf, cap * 2);
            if (grown == NULL)
                break;
            buf = grown;
            cap *= 2;
        }
        ssize_t n = read(r->fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        size_t start = 0;
        char *nl;
        while ((nl = memchr(buf + start, '\n', len - start)) != NULL) {
            size_t line_len = (size_t)(nl - (buf + start)) + 1;
            tally_line(buf + start, line_len, r->tally);
            start += line_len;
        }
        memmove(buf, buf + start, len - start);
        len -= start;
    }
    if (len > 0)
        tally_bad(r->tally, "unterminated tail", buf, len);
    free(buf);
    return NULL;
}

static void threads_to_a_pipe(bool async)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    struct tally *t = calloc(1, sizeof *t);
    ck_assert_ptr_nonnull(t);
    struct pipe_reader reader = {.fd = fds[0], .tally = t};
    pthread_t reader_thread;
    ck_assert_int_eq(pthread_create(&reader_thread, NULL, pipe_reader_main, &reader), 0);

    uint64_t dropped = mhdctx_log_dropped();
    ck_assert_int_eq(mhdctx_log_to_fd(fds[1]), MHDCTX_OK);
    if (async)
        start_async_writer();
    run_log_workers();
    mhdctx_log_shutdown(); /* writes what is queued, back to stdout */
    close(fds[1]);         /* EOF for the reader */
    pthread_join(reader_thread, NULL);
    close(fds[0]);
    ck_assert_uint_eq(mhdctx_log_dropped(), dropped);
    assert_tally_complete(t);
    free(t);
}

START_TEST(threads_write_whole_lines_to_a_pipe)
{
    threads_to_a_pipe(false);
}
END_TEST

START_TEST(threads_write_whole_lines_to_a_pipe_batched)
{
    threads_to_a_pipe(true);
}
END_TEST

/* ---- suite ------------------------------------------------------------------------------ */

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");

    TCase *tc = tcase_create("format");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, line_has_time_level_and_message);
    tcase_add_test(tc, time_is_rfc3339_utc_with_milliseconds);
    tcase_add_test(tc, message_uses_printf_formatting);
    tcase_add_test(tc, every_level_is_named_in_the_line);
    tcase_add_test(tc, no_request_fields_outside_a_context);
    tcase_add_test(tc, request_fields_inside_run);
    tcase_add_test(tc, keys_come_in_documented_order);
    tcase_add_test(tc, log_ctx_uses_the_given_context);
    tcase_add_test(tc, log_fieldsv_formats_from_a_va_list);
    suite_add_tcase(s, tc);

    tc = tcase_create("fields");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, call_fields_of_every_type);
    tcase_add_test(tc, uint_max_field_is_written_exactly);
    tcase_add_test(tc, field_named_request_id_cannot_forge_the_id);
    tcase_add_test(tc, field_named_request_id_is_renamed_outside_a_context_too);
    tcase_add_test(tc, field_repeating_a_user_key_is_renamed);
    tcase_add_test(tc, repeated_call_field_gets_numbered_names);
    tcase_add_test(tc, renamed_field_and_a_field_so_named_both_stay);
    tcase_add_test(tc, keys_inside_values_do_not_rename_a_field);
    tcase_add_test(tc, keys_equal_once_escaped_or_long_stay_apart);
    tcase_add_test(tc, call_fields_never_repeat_a_key);
    tcase_add_test(tc, many_colliding_fields_all_kept);
    tcase_add_test(tc, many_library_named_fields_without_context_all_kept);
    tcase_add_test(tc, hostile_message_gives_one_valid_line);
    tcase_add_test(tc, hostile_fields_give_one_valid_line);
    tcase_add_test(tc, hostile_context_values_give_one_valid_line);
    tcase_add_test(tc, message_longer_than_8k_is_logged_whole);
    tcase_add_test(tc, message_of_100k_is_logged_whole);
    tcase_add_test(tc, escape_heavy_100k_message_is_logged_whole);
    tcase_add_test(tc, long_fields_are_logged_whole);
    suite_add_tcase(s, tc);

    tc = tcase_create("levels");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, debug_is_suppressed_at_info);
    tcase_add_test(tc, threshold_off_suppresses_everything);
    tcase_add_test(tc, threshold_error_keeps_only_errors);
    tcase_add_test(tc, log_enabled_follows_threshold);
    tcase_add_test(tc, set_level_ignores_values_out_of_range);
    tcase_add_test(tc, level_names);
    tcase_add_test(tc, level_parse_accepts_names_in_any_case);
    tcase_add_test(tc, level_parse_rejects_others_and_leaves_level_untouched);
    tcase_add_test(tc, level_parse_is_ascii_under_a_turkish_locale);
    tcase_add_test(tc, env_level_is_honoured);
    tcase_add_test(tc, env_level_invalid_falls_back_to_info);
    tcase_add_test(tc, env_level_is_read_only_on_first_use);
    tcase_add_test(tc, set_level_before_first_use_wins_over_env);
    tcase_add_test(tc, log_errno_adds_errno_and_error_text);
    tcase_add_test(tc, log_errno_keeps_call_fields);
    tcase_add_test(tc, log_errno_with_unknown_errno_still_logs);
    tcase_add_test(tc, log_errno_with_null_fields_ignores_n);
    suite_add_tcase(s, tc);

    tc = tcase_create("sinks");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, file_sink_creates_appends_and_closes);
    tcase_add_test(tc, file_sink_argument_errors);
    tcase_add_test(tc, fd_sink_on_a_pipe);
    tcase_add_test(tc, stderr_and_stdout_sinks_can_be_chosen);
    tcase_add_test(tc, dev_full_counts_a_drop_and_does_not_crash);
    tcase_add_test(tc, closed_pipe_with_default_sigpipe_counts_a_drop);
    tcase_add_test(tc, sink_set_again_reads_sigpipe_again);
    tcase_add_test(tc, callback_receives_each_line_with_its_level);
    tcase_add_test(tc, callback_that_logs_drops_its_own_line);
    tcase_add_test(tc, non_blocking_pipe_gets_whole_lines);
    tcase_add_test(tc, line_after_a_cut_line_starts_a_line_of_its_own);
    tcase_add_test(tc, child_of_fork_logs_while_a_parent_thread_held_the_sink);
    suite_add_tcase(s, tc);

    tc = tcase_create("threads");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, threads_write_whole_lines_to_a_file);
    tcase_add_test(tc, threads_write_whole_lines_to_a_pipe);
    tcase_add_test(tc, threads_write_whole_lines_to_a_file_batched);
    tcase_add_test(tc, threads_write_whole_lines_to_a_pipe_batched);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strncmp(argv[1], "--child-", 8) == 0)
        return child_mode(argv[1]); /* a fresh process for the environment tests */

    unsetenv("MHDCTX_LOG_LEVEL"); /* the tests set the threshold themselves */
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n > 0)
        self_path[n] = '\0';
    else if (realpath(argv[0], self_path) == NULL)
        self_path[0] = '\0';

    SRunner *sr = srunner_create(log_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failures = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failures ? 1 : 0;
}
