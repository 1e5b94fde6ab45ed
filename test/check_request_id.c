/*
 * check_request_id.c - request-id validation, verdict names, UUID v4 generation,
 * hex digits, error names and descriptions.
 */
#include "internal.h"

#include "child.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- mhdctx_request_id_check: the table ------------------------------------------- */

struct id_case {
    const char *name;
    const char *id;
    size_t len;
    size_t max_len;
    mhdctx_id_verdict expected;
};

#define ID_CASE(id, max, verdict)                                                              \
    {                                                                                          \
        id, id, sizeof(id) - 1, max, verdict                                                   \
    }
#define ID_CASE_N(name, id, len, max, verdict)                                                 \
    {                                                                                          \
        name, id, len, max, verdict                                                            \
    }

static const char long_128[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char long_129[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdefX";

static const struct id_case id_cases[] = {
    /* valid */
    ID_CASE("a", 128, MHDCTX_ID_VALID),
    ID_CASE("abc-123", 128, MHDCTX_ID_VALID),
    ID_CASE("4f6c1a0e-3d7b-4b8e-9a51-0c2d3e4f5a6b", 128, MHDCTX_ID_VALID),
    ID_CASE("ABCxyz0189", 128, MHDCTX_ID_VALID),
    ID_CASE("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 128, MHDCTX_ID_VALID),
    ID_CASE("dGVzdA==", 128, MHDCTX_ID_VALID),
    ID_CASE("user@host:8080/path+x~y_z.w=v-u", 128, MHDCTX_ID_VALID),
    ID_CASE(".", 128, MHDCTX_ID_VALID),
    ID_CASE("_", 128, MHDCTX_ID_VALID),
    ID_CASE("~", 128, MHDCTX_ID_VALID),
    ID_CASE(":", 128, MHDCTX_ID_VALID),
    ID_CASE("@", 128, MHDCTX_ID_VALID),
    ID_CASE("+", 128, MHDCTX_ID_VALID),
    ID_CASE("/", 128, MHDCTX_ID_VALID),
    ID_CASE("=", 128, MHDCTX_ID_VALID),
    ID_CASE("-", 128, MHDCTX_ID_VALID),
    ID_CASE("._~:@+/=-", 128, MHDCTX_ID_VALID),
    ID_CASE_N("exactly 128 bytes, max 128", long_128, 128, 128, MHDCTX_ID_VALID),
    ID_CASE_N("only len bytes are read", "abc!", 3, 128, MHDCTX_ID_VALID),
    ID_CASE_N("custom max 4, 4 bytes", "abcd", 4, 4, MHDCTX_ID_VALID),
    ID_CASE_N("128 bytes, max at the limit", long_129, 128, MHDCTX_REQUEST_ID_LIMIT,
              MHDCTX_ID_VALID),
    /* empty */
    ID_CASE_N("empty", "", 0, 128, MHDCTX_ID_EMPTY),
    ID_CASE_N("NULL pointer", NULL, 0, 128, MHDCTX_ID_EMPTY),
    ID_CASE_N("len 0 of a non-empty string", "abc", 0, 128, MHDCTX_ID_EMPTY),
    /* too long */
    ID_CASE_N("129 bytes, max 128", long_129, 129, 128, MHDCTX_ID_TOO_LONG),
    ID_CASE_N("custom max 4, 5 bytes", "abcde", 5, 4, MHDCTX_ID_TOO_LONG),
    ID_CASE_N("custom max 1, 2 bytes", "ab", 2, 1, MHDCTX_ID_TOO_LONG),
    /* invalid characters */
    ID_CASE("has space", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE(" leading", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("trailing ", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("dq\"uote", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("sq'uote", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("comment*/end", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("/*", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("cr\rlf", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("lf\nX-Injected: 1", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("crlf\r\n", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("tab\there", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("del\x7f", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("hi\x80", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("hi\xff", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("caf\xc3\xa9", 128, MHDCTX_ID_INVALID_CHAR), /* UTF-8 e-acute */
    ID_CASE_N("NUL inside, len covers it", "ab\0cd", 5, 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE_N("NUL only", "\0", 1, 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("semi;colon", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("back\\slash", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("a<b>", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("a,b", 128, MHDCTX_ID_INVALID_CHAR),
    ID_CASE("$(id)", 128, MHDCTX_ID_INVALID_CHAR),
};

#define N_ID_CASES ((int)(sizeof id_cases / sizeof *id_cases))

START_TEST(request_id_check_table)
{
    const struct id_case *c = &id_cases[_i];
    mhdctx_id_verdict got = mhdctx_request_id_check(c->id, c->len, c->max_len);
    ck_assert_msg(got == c->expected, "case %d (%s): expected %s, got %s", _i, c->name,
                  mhdctx_id_verdict_name(c->expected), mhdctx_id_verdict_name(got));
}
END_TEST

/* Every single byte: valid exactly when it is in [A-Za-z0-9._~:@+/=-]. */
START_TEST(request_id_check_every_byte)
{
    static const char allowed[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789._~:@+/=-";
    for (int c = 0; c < 256; c++) {
        char id[3] = {'a', (char)c, 'b'};
        bool should_pass = c != 0 && memchr(allowed, c, sizeof allowed - 1) != NULL;
        mhdctx_id_verdict got = mhdctx_request_id_check(id, sizeof id, 128);
        ck_assert_msg(got == (should_pass ? MHDCTX_ID_VALID : MHDCTX_ID_INVALID_CHAR),
                      "byte 0x%02x: got %s", c, mhdctx_id_verdict_name(got));
    }
}
END_TEST

/* Every byte at every position of ids of each length about the 16-byte blocks the check
 * reads (and its overlapping last block): valid exactly when the byte is allowed. */
START_TEST(request_id_check_every_byte_at_every_position)
{
    static const char allowed[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                  "0123456789._~:@+/=-";
    static const size_t lengths[] = {1, 7, 8, 15, 16, 17, 31, 32, 33, 36, 47, 48, 49, 128};
    for (size_t l = 0; l < sizeof lengths / sizeof *lengths; l++) {
        char id[128];
        size_t len = lengths[l];
        for (size_t at = 0; at < len; at++) {
            for (int c = 0; c < 256; c++) {
                memset(id, 'Z', len);
                id[at] = (char)c;
                bool should_pass = c != 0 && memchr(allowed, c, sizeof allowed - 1) != NULL;
                mhdctx_id_verdict got = mhdctx_request_id_check(id, len, 128);
                ck_assert_msg(got == (should_pass ? MHDCTX_ID_VALID : MHDCTX_ID_INVALID_CHAR),
                              "byte 0x%02x at %zu of %zu: got %s", c, at, len,
                              mhdctx_id_verdict_name(got));
            }
        }
    }
}
END_TEST

START_TEST(request_id_check_max_len_boundaries)
{
    char id[MHDCTX_REQUEST_ID_LIMIT + 1];
    memset(id, 'x', sizeof id);
    for (size_t max = 1; max <= MHDCTX_REQUEST_ID_LIMIT; max++) {
        ck_assert_int_eq(mhdctx_request_id_check(id, max, max), MHDCTX_ID_VALID);
        ck_assert_int_eq(mhdctx_request_id_check(id, max + 1, max), MHDCTX_ID_TOO_LONG);
    }
}
END_TEST

START_TEST(id_verdict_names)
{
    ck_assert_str_eq(mhdctx_id_verdict_name(MHDCTX_ID_VALID), "valid");
    ck_assert_str_eq(mhdctx_id_verdict_name(MHDCTX_ID_MISSING), "missing");
    ck_assert_str_eq(mhdctx_id_verdict_name(MHDCTX_ID_EMPTY), "empty");
    ck_assert_str_eq(mhdctx_id_verdict_name(MHDCTX_ID_TOO_LONG), "too_long");
    ck_assert_str_eq(mhdctx_id_verdict_name(MHDCTX_ID_INVALID_CHAR), "invalid_character");
    ck_assert_str_eq(mhdctx_id_verdict_name(MHDCTX_ID_MULTIPLE), "multiple");
    ck_assert_str_eq(mhdctx_id_verdict_name(MHDCTX_ID_UNTRUSTED), "untrusted");
}
END_TEST

START_TEST(id_verdict_names_are_distinct_snake_case)
{
    const char *names[MHDCTX_ID_UNTRUSTED + 1];
    for (int v = MHDCTX_ID_VALID; v <= MHDCTX_ID_UNTRUSTED; v++) {
        names[v] = mhdctx_id_verdict_name((mhdctx_id_verdict)v);
        ck_assert_ptr_nonnull(names[v]);
        ck_assert_uint_gt(strlen(names[v]), 0);
        ck_assert_uint_eq(strspn(names[v], "abcdefghijklmnopqrstuvwxyz_"), strlen(names[v]));
        for (int w = 0; w < v; w++)
            ck_assert_str_ne(names[v], names[w]);
    }
    ck_assert_ptr_nonnull(mhdctx_id_verdict_name((mhdctx_id_verdict)99));
}
END_TEST

/* ---- hex digits ---------------------------------------------------------------------- */

/* Every byte value, at every length the vector and table paths split (16-byte blocks,
 * an 8-byte half, a tail), against printf; nothing written past the digits. */
START_TEST(hex_encode_matches_printf_at_every_length)
{
    unsigned char bytes[256 + 48];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (unsigned char)(i * 7 + 3);
    for (size_t i = 0; i < 256; i++)
        bytes[i] = (unsigned char)i;
    for (size_t len = 0; len <= 48; len++) {
        for (size_t from = 0; from + len <= sizeof bytes; from += len ? len : 1) {
            char got[2 * 48 + 8], want[2 * 48 + 8];
            memset(got, '#', sizeof got);
            mhdctx__hex_encode(got, bytes + from, len);
            for (size_t i = 0; i < len; i++)
                snprintf(want + 2 * i, 3, "%02x", bytes[from + i]);
            ck_assert_msg(memcmp(got, want, 2 * len) == 0, "len %zu from %zu: %.*s", len, from,
                          (int)(2 * len), got);
            for (size_t i = 2 * len; i < sizeof got; i++)
                ck_assert_msg(got[i] == '#', "written past the digits at %zu (len %zu)", i,
                              len);
        }
    }
}
END_TEST

/* Random hex ids (trace and span ids) at every length up to the 64-byte cap and past
 * it; none is all zeros. No bytes at all used to draw for ever (an empty draw is "all
 * zero"): it writes the NUL only. */
START_TEST(random_hex_every_length)
{
    for (size_t n = 0; n <= 66; n++) {
        char out[2 * 64 + 8];
        memset(out, '#', sizeof out);
        mhdctx__random_hex(out, n);
        size_t digits = 2 * (n > 64 ? 64 : n);
        ck_assert_msg(strlen(out) == digits, "n %zu: %zu digits", n, strlen(out));
        ck_assert_uint_eq(strspn(out, "0123456789abcdef"), digits);
        ck_assert_msg(digits == 0 || strspn(out, "0") < digits, "all zero at n %zu", n);
        ck_assert_msg(out[digits + 1] == '#', "written past the NUL at n %zu", n);
    }
}
END_TEST

/* ---- mhdctx_uuid_v4 ------------------------------------------------------------------ */

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void assert_uuid_v4_format(const char *id)
{
    ck_assert_msg(strlen(id) == MHDCTX_UUID_LEN, "bad length: %s", id);
    for (int i = 0; i < MHDCTX_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            ck_assert_msg(id[i] == '-', "no dash at %d: %s", i, id);
        else
            ck_assert_msg(is_lower_hex(id[i]), "not lowercase hex at %d: %s", i, id);
    }
    ck_assert_msg(id[14] == '4', "version nibble is not 4: %s", id);
    ck_assert_msg(strchr("89ab", id[19]) != NULL, "bad variant: %s", id);
}

START_TEST(uuid_v4_format)
{
    char id[MHDCTX_UUID_LEN + 1];
    memset(id, '#', sizeof id);
    ck_assert_int_eq(mhdctx_uuid_v4(id), MHDCTX_OK);
    assert_uuid_v4_format(id);
}
END_TEST

START_TEST(uuid_v4_null_out_is_einval)
{
    ck_assert_int_eq(mhdctx_uuid_v4(NULL), MHDCTX_EINVAL);
}
END_TEST

static int compare_ids(const void *a, const void *b)
{
    return memcmp(a, b, MHDCTX_UUID_LEN + 1);
}

/* Sorts @n ids of MHDCTX_UUID_LEN + 1 bytes and returns how many are repeated. */
static size_t count_duplicates(char (*ids)[MHDCTX_UUID_LEN + 1], size_t n)
{
    qsort(ids, n, sizeof *ids, compare_ids);
    size_t dups = 0;
    for (size_t i = 1; i < n; i++)
        dups += memcmp(ids[i - 1], ids[i], sizeof *ids) == 0;
    return dups;
}

#define MANY_IDS 10000

START_TEST(uuid_v4_10000_ids_are_unique_and_well_formed)
{
    char(*ids)[MHDCTX_UUID_LEN + 1] = calloc(MANY_IDS, sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    bool variant_seen[4] = {false, false, false, false};
    for (size_t i = 0; i < MANY_IDS; i++) {
        ck_assert_int_eq(mhdctx_uuid_v4(ids[i]), MHDCTX_OK);
        assert_uuid_v4_format(ids[i]);
        variant_seen[strchr("89ab", ids[i][19]) - "89ab"] = true;
    }
    /* 10000 random variants: each of the four values shows up. */
    for (int v = 0; v < 4; v++)
        ck_assert_msg(variant_seen[v], "variant char %c never generated", "89ab"[v]);
    ck_assert_uint_eq(count_duplicates(ids, MANY_IDS), 0);
    free(ids);
}
END_TEST

#define N_ID_THREADS 4

struct id_thread {
    pthread_t thread;
    char (*ids)[MHDCTX_UUID_LEN + 1]; /* MANY_IDS slots */
    int failures;
};

static void *generate_ids(void *arg)
{
    struct id_thread *t = arg;
    for (size_t i = 0; i < MANY_IDS; i++)
        t->failures += mhdctx_uuid_v4(t->ids[i]) != MHDCTX_OK;
    return NULL;
}

START_TEST(uuid_v4_unique_across_threads)
{
    char(*ids)[MHDCTX_UUID_LEN + 1] = calloc((size_t)N_ID_THREADS * MANY_IDS, sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    struct id_thread threads[N_ID_THREADS];
    for (int t = 0; t < N_ID_THREADS; t++) {
        threads[t] = (struct id_thread){.ids = ids + (size_t)t * MANY_IDS};
        ck_assert_int_eq(pthread_create(&threads[t].thread, NULL, generate_ids, &threads[t]),
                         0);
    }
    for (int t = 0; t < N_ID_THREADS; t++) {
        pthread_join(threads[t].thread, NULL);
        ck_assert_int_eq(threads[t].failures, 0);
    }
    for (size_t i = 0; i < (size_t)N_ID_THREADS * MANY_IDS; i++)
        assert_uuid_v4_format(ids[i]);
    ck_assert_uint_eq(count_duplicates(ids, (size_t)N_ID_THREADS * MANY_IDS), 0);
    free(ids);
}
END_TEST

#define IDS_AFTER_FORK 4

/* In the child: IDS_AFTER_FORK ids, written to @fd. */
static int write_ids(void *unused, int fd)
{
    (void)unused;
    char ids[IDS_AFTER_FORK][MHDCTX_UUID_LEN + 1];
    for (int i = 0; i < IDS_AFTER_FORK; i++) {
        if (mhdctx_uuid_v4(ids[i]) != MHDCTX_OK)
            return 2;
    }
    return write(fd, ids, sizeof ids) == (ssize_t)sizeof ids ? 0 : 3;
}

/* The child of a fork must not replay the parent's buffered randomness. */
START_TEST(uuid_v4_forked_child_does_not_repeat_parent_ids)
{
    char first[MHDCTX_UUID_LEN + 1];
    ck_assert_int_eq(mhdctx_uuid_v4(first), MHDCTX_OK); /* the pool is filled now */

    char child_ids[IDS_AFTER_FORK][MHDCTX_UUID_LEN + 1];
    size_t got = 0;
    ck_assert_int_eq(child_output(write_ids, NULL, child_ids, sizeof child_ids, &got), 0);
    ck_assert_uint_eq(got, sizeof child_ids);
    /* drawn after the fork from the state the child was given too */
    char parent_ids[IDS_AFTER_FORK][MHDCTX_UUID_LEN + 1];
    for (int i = 0; i < IDS_AFTER_FORK; i++)
        ck_assert_int_eq(mhdctx_uuid_v4(parent_ids[i]), MHDCTX_OK);

    for (int i = 0; i < IDS_AFTER_FORK; i++) {
        assert_uuid_v4_format(child_ids[i]);
        ck_assert_str_ne(child_ids[i], first);
        for (int j = 0; j < IDS_AFTER_FORK; j++)
            ck_assert_msg(strcmp(child_ids[i], parent_ids[j]) != 0,
                          "child id %d equals parent id %d: %s", i, j, child_ids[i]);
    }
}
END_TEST

/* ---- errors ---------------------------------------------------------------------------- */

START_TEST(strerror_and_error_name_for_every_value)
{
    static const struct {
        mhdctx_error err;
        const char *name;
        const char *text;
    } table[] = {
        {MHDCTX_OK, "MHDCTX_OK", "success"},
        {MHDCTX_ENOMEM, "MHDCTX_ENOMEM", "out of memory"},
        {MHDCTX_EINVAL, "MHDCTX_EINVAL", "invalid argument"},
        {MHDCTX_ELIMIT, "MHDCTX_ELIMIT", "a configured limit was exceeded"},
        {MHDCTX_ERESERVED, "MHDCTX_ERESERVED",
         "the key is reserved for a field of the library"},
        {MHDCTX_ENOTFOUND, "MHDCTX_ENOTFOUND", "not found"},
        {MHDCTX_EIO, "MHDCTX_EIO", "input/output error"},
        {MHDCTX_EPARSE, "MHDCTX_EPARSE", "malformed input"},
        {MHDCTX_EAUTH, "MHDCTX_EAUTH", "authentication failed"},
        {MHDCTX_ESTATE, "MHDCTX_ESTATE", "call not allowed in the current state"},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        ck_assert_int_eq(table[i].err, (int)i); /* values are stable: 0..9 */
        ck_assert_str_eq(mhdctx_error_name(table[i].err), table[i].name);
        ck_assert_str_eq(mhdctx_strerror(table[i].err), table[i].text);
    }
}
END_TEST

START_TEST(strerror_of_out_of_range_value_is_unknown_error)
{
    ck_assert_str_eq(mhdctx_strerror((mhdctx_error)10), "unknown error");
    ck_assert_str_eq(mhdctx_strerror((mhdctx_error)-1), "unknown error");
    ck_assert_str_eq(mhdctx_strerror((mhdctx_error)12345), "unknown error");
    ck_assert_ptr_nonnull(mhdctx_error_name((mhdctx_error)12345));
    ck_assert_str_ne(mhdctx_error_name((mhdctx_error)12345), "MHDCTX_OK");
}
END_TEST

START_TEST(version_string_matches_header)
{
    ck_assert_str_eq(mhdctx_version_string(), MHDCTX_VERSION_STRING);
}
END_TEST

/* ---- suite ------------------------------------------------------------------------------ */

static Suite *request_id_suite(void)
{
    Suite *s = suite_create("request_id");

    TCase *tc = tcase_create("check");
    tcase_add_loop_test(tc, request_id_check_table, 0, N_ID_CASES);
    tcase_add_test(tc, request_id_check_every_byte);
    tcase_add_test(tc, request_id_check_every_byte_at_every_position);
    tcase_add_test(tc, request_id_check_max_len_boundaries);
    tcase_add_test(tc, id_verdict_names);
    tcase_add_test(tc, id_verdict_names_are_distinct_snake_case);
    suite_add_tcase(s, tc);

    tc = tcase_create("hex");
    tcase_add_test(tc, hex_encode_matches_printf_at_every_length);
    tcase_add_test(tc, random_hex_every_length);
    suite_add_tcase(s, tc);

    tc = tcase_create("uuid");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, uuid_v4_format);
    tcase_add_test(tc, uuid_v4_null_out_is_einval);
    tcase_add_test(tc, uuid_v4_10000_ids_are_unique_and_well_formed);
    tcase_add_test(tc, uuid_v4_unique_across_threads);
    tcase_add_test(tc, uuid_v4_forked_child_does_not_repeat_parent_ids);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, strerror_and_error_name_for_every_value);
    tcase_add_test(tc, strerror_of_out_of_range_value_is_unknown_error);
    tcase_add_test(tc, version_string_matches_header);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(request_id_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failures = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failures ? 1 : 0;
}
