/*
 * check_auth.c - bearer authentication: header parsing, constant-time comparison, and
 * the token table (add, verify, load from a JSON file).
 */
#include "internal.h"
#include "support.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- mhdctx_bearer_parse: the table ---------------------------------------------------- */

#define WHOLE SIZE_MAX /* header_len = strlen(header) */

struct bearer_case {
    const char *header;
    size_t len;
    const char *token; /* expected token; NULL: MHDCTX_EPARSE expected */
};

static const struct bearer_case bearer_cases[] = {
    /* valid */
    {"Bearer abc", WHOLE, "abc"},
    {"bearer abc", WHOLE, "abc"},
    {"BEARER abc", WHOLE, "abc"},
    {"BeArEr abc", WHOLE, "abc"},
    {"Bearer    abc", WHOLE, "abc"},
    {"Bearer AZaz09-._~+/", WHOLE, "AZaz09-._~+/"},
    {"Bearer dGVzdA=", WHOLE, "dGVzdA="},
    {"Bearer dGVzdA==", WHOLE, "dGVzdA=="},
    {"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln_-", WHOLE,
     "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln_-"},
    {"Bearer x", WHOLE, "x"},
    {"Bearer abc ", WHOLE, "abc"}, /* trailing blanks, which MHD keeps */
    {"Bearer abc\t", WHOLE, "abc"},
    {"Bearer abc= \t ", WHOLE, "abc="},
    {"Bearer abcdef", 10, "abc"}, /* header_len shorter than strlen: only len bytes */
    {"Bearer abc-not-NUL-terminated", 12, "abc-n"},
    /* invalid */
    {"Basic dXNlcjpwYXNz", WHOLE, NULL},
    {"Token abc", WHOLE, NULL},
    {"Bearer", WHOLE, NULL},
    {"Bearer ", WHOLE, NULL},
    {"Bearer   ", WHOLE, NULL},
    {"Bearerabc", WHOLE, NULL},
    {"Bearer\tabc", WHOLE, NULL},
    {" Bearer abc", WHOLE, NULL},
    {"Bearer a b", WHOLE, NULL},
    {"Bearer a,b", WHOLE, NULL},
    {"Bearer abc, Bearer def", WHOLE, NULL},
    {"Bearer abc;", WHOLE, NULL},
    {"Bearer \"abc\"", WHOLE, NULL},
    {"Bearer 'abc'", WHOLE, NULL},
    {"Bearer a\x01"
     "b",
     WHOLE, NULL},
    {"Bearer abc\r\n", WHOLE, NULL},
    {"Bearer abc\nX-Admin: 1", WHOLE, NULL},
    {"Bearer a\x7f", WHOLE, NULL},
    {"Bearer caf\xc3\xa9", WHOLE, NULL},
    {"Bearer =abc", WHOLE, NULL},
    {"Bearer ==", WHOLE, NULL},
    {"Bearer ab=c", WHOLE, NULL},
    {"Bearer a=b=", WHOLE, NULL},
    {"Bearer ab\0cd", 12, NULL}, /* NUL inside, len covers it */
    {"Bearer abc", 6, NULL},     /* header_len shorter than strlen: "Bearer" */
    {"Bearer abc", 7, NULL},     /* "Bearer " */
    {"Bearer abc", 0, NULL},
    {"", WHOLE, NULL},
};

#define N_BEARER_CASES ((int)(sizeof bearer_cases / sizeof *bearer_cases))

START_TEST(bearer_parse_table)
{
    const struct bearer_case *c = &bearer_cases[_i];
    size_t len = c->len == WHOLE ? strlen(c->header) : c->len;
    const char *token = NULL;
    size_t token_len = 0;
    mhdctx_error rc = mhdctx_bearer_parse(c->header, len, &token, &token_len);
    if (c->token == NULL) {
        ck_assert_msg(rc == MHDCTX_EPARSE, "case %d (%.*s): accepted as '%.*s'", _i, (int)len,
                      c->header, (int)token_len, token ? token : "");
        return;
    }
    ck_assert_msg(rc == MHDCTX_OK, "case %d (%.*s): %s", _i, (int)len, c->header,
                  mhdctx_error_name(rc));
    ck_assert_uint_eq(token_len, strlen(c->token));
    ck_assert_mem_eq(token, c->token, token_len);
    /* The token points into the header. */
    ck_assert(token >= c->header && token + token_len <= c->header + len);
}
END_TEST

START_TEST(bearer_parse_null_arguments)
{
    const char *token;
    size_t token_len;
    ck_assert_int_eq(mhdctx_bearer_parse(NULL, 10, &token, &token_len), MHDCTX_EPARSE);
    ck_assert_int_eq(mhdctx_bearer_parse("Bearer abc", 10, NULL, &token_len), MHDCTX_EPARSE);
    ck_assert_int_eq(mhdctx_bearer_parse("Bearer abc", 10, &token, NULL), MHDCTX_EPARSE);
}
END_TEST

/* ---- mhdctx_secret_equal ----------------------------------------------------------------- */

#if defined(__has_include) && __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define MARK_SECRET(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#define MARK_PUBLIC(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))
#else
#define MARK_SECRET(p, n) ((void)(p), (void)(n))
#define MARK_PUBLIC(p, n) ((void)(p), (void)(n))
#endif

START_TEST(secret_equal_same_bytes)
{
    ck_assert(mhdctx_secret_equal("s3cret-token", 12, "s3cret-token", 12));
    ck_assert(mhdctx_secret_equal("a\0b", 3, "a\0b", 3)); /* binary safe */
}
END_TEST

START_TEST(secret_equal_differs_in_last_byte)
{
    ck_assert(!mhdctx_secret_equal("s3cret-tokeN", 12, "s3cret-token", 12));
    ck_assert(!mhdctx_secret_equal("x3cret-token", 12, "s3cret-token", 12));
    ck_assert(!mhdctx_secret_equal("a\0c", 3, "a\0b", 3));
}
END_TEST

START_TEST(secret_equal_different_lengths)
{
    ck_assert(!mhdctx_secret_equal("abc", 3, "abcd", 4));
    ck_assert(!mhdctx_secret_equal("abcd", 4, "abc", 3));
    ck_assert(!mhdctx_secret_equal("abc", 3, "abcabc", 6)); /* repeats the guess */
    ck_assert(!mhdctx_secret_equal("abcabc", 6, "abc", 3));
    ck_assert(!mhdctx_secret_equal("abc", 2, "abc", 3)); /* lengths, not strings */
}
END_TEST

/* ctgrind's method: under valgrind (the CI's valgrind pass) the secret is marked
 * undefined, so any branch or memory index that depends on it is reported as an error
 * ("conditional jump depends on uninitialised value") and fails the run. Only the
 * result, which must depend on it, is declared defined again. Without valgrind the
 * marks are no-ops and this is a functional test. */
START_TEST(secret_equal_does_not_branch_on_the_secret)
{
    char secret[] = "s3cret-token-0123456789";
    const char *guesses[] = {"s3cret-token-0123456789", "s3cret-token-0123456780", "x", "",
                             "s3cret-token-0123456789-longer"};
    for (size_t i = 0; i < sizeof guesses / sizeof *guesses; i++) {
        MARK_SECRET(secret, sizeof secret - 1);
        bool equal =
            mhdctx_secret_equal(guesses[i], strlen(guesses[i]), secret, sizeof secret - 1);
        MARK_PUBLIC(&equal, sizeof equal);
        MARK_PUBLIC(secret, sizeof secret - 1);
        ck_assert(equal == (i == 0));
    }
}
END_TEST

START_TEST(secret_equal_empty)
{
    ck_assert(mhdctx_secret_equal("", 0, "", 0));
    ck_assert(!mhdctx_secret_equal("", 0, "abc", 3));
    ck_assert(!mhdctx_secret_equal("abc", 3, "", 0));
    /* NULL with a length is read as no bytes, never dereferenced */
    ck_assert(!mhdctx_secret_equal(NULL, 3, "abc", 3));
    ck_assert(!mhdctx_secret_equal("abc", 3, NULL, 3));
    ck_assert(!mhdctx_secret_equal(NULL, 3, NULL, 3));
    ck_assert(!mhdctx_secret_equal(NULL, 0, NULL, 0));
}
END_TEST

/* ---- token table ------------------------------------------------------------------------- */

static mhdctx_token_table *new_table(void)
{
    mhdctx_token_table *table = mhdctx_token_table_new();
    ck_assert_ptr_nonnull(table);
    return table;
}

static mhdctx_error verify(mhdctx_token_table *table, const char *token, mhdctx_context *ctx)
{
    return mhdctx_token_table_verify(token, strlen(token), ctx, table);
}

START_TEST(token_table_new_and_free)
{
    mhdctx_token_table *table = new_table();
    mhdctx_token_table_free(table);
    mhdctx_token_table_free(NULL);
}
END_TEST

START_TEST(token_table_add_accepts_token68)
{
    static const char *const roles[] = {"admin"};
    mhdctx_token_table *table = new_table();
    ck_assert_int_eq(mhdctx_token_table_add(table, "tok-123", "42", roles, 1), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_token_table_add(table, "dGVzdA==", "43", NULL, 0), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_token_table_add(table, "a.b_c~d+e/f-9", "44", NULL, 0), MHDCTX_OK);
    mhdctx_token_table_free(table);
}
END_TEST

static const char *const bad_tokens[] = {
    "",    "a b",        " abc",  "abc ",  "a,b",  "a\"b", "a'b",         "a\nb",
    "a\r", "a\tb",       "a\x01", "a\x7f", "=abc", "ab=c", "caf\xc3\xa9", "a;b",
    "a:b", "Bearer abc", "a\\b",  "{x}",   "a@b",
};

START_TEST(token_table_add_rejects_invalid_token_chars)
{
    mhdctx_token_table *table = new_table();
    const char *token = bad_tokens[_i];
    mhdctx_error rc = mhdctx_token_table_add(table, token, "42", NULL, 0);
    mhdctx_token_table_free(table);
    ck_assert_msg(rc == MHDCTX_EINVAL, "token '%s' (case %d) was accepted: %s", token, _i,
                  mhdctx_error_name(rc));
}
END_TEST

START_TEST(token_table_add_rejects_bad_arguments)
{
    static const char *const roles[] = {"admin", NULL};
    const char *many[MHDCTX_MAX_ROLES + 1];
    for (size_t i = 0; i < MHDCTX_MAX_ROLES + 1; i++)
        many[i] = "r";
    mhdctx_token_table *table = new_table();
    ck_assert_int_eq(mhdctx_token_table_add(NULL, "tok", "42", NULL, 0), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_token_table_add(table, NULL, "42", NULL, 0), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_token_table_add(table, "tok", NULL, NULL, 0), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_token_table_add(table, "tok", "", NULL, 0), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_token_table_add(table, "tok", "42", NULL, 1), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_token_table_add(table, "tok", "42", roles, 2), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_token_table_add(table, "tok", "42", many, MHDCTX_MAX_ROLES + 1),
                     MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_token_table_add(table, "tok", "42", many, MHDCTX_MAX_ROLES),
                     MHDCTX_OK);
    mhdctx_token_table_free(table);
}
END_TEST

START_TEST(token_table_verify_sets_user_and_roles)
{
    static const char *const roles[] = {"admin", "ops"};
    mhdctx_token_table *table = new_table();
    ck_assert_int_eq(mhdctx_token_table_add(table, "tok-alice", "alice", roles, 2), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_token_table_add(table, "tok-bob", "bob", NULL, 0), MHDCTX_OK);

    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(verify(table, "tok-alice", ctx), MHDCTX_OK);
    ck_assert_pstr_eq(mhdctx_user_id(ctx), "alice");
    ck_assert(mhdctx_has_role(ctx, "admin"));
    ck_assert(mhdctx_has_role(ctx, "ops"));
    mhdctx_context_unref(ctx);

    ctx = new_context();
    ck_assert_int_eq(verify(table, "tok-bob", ctx), MHDCTX_OK);
    ck_assert_pstr_eq(mhdctx_user_id(ctx), "bob");
    ck_assert(!mhdctx_has_role(ctx, "admin"));
    mhdctx_context_unref(ctx);
    mhdctx_token_table_free(table);
}
END_TEST

START_TEST(token_table_verify_unknown_is_eauth)
{
    static const char *const roles[] = {"admin"};
    mhdctx_token_table *table = new_table();
    ck_assert_int_eq(mhdctx_token_table_add(table, "tok-alice", "alice", roles, 1), MHDCTX_OK);
    static const char *const unknown[] = {
        "nope", "tok-alic", "tok-alicee", "TOK-ALICE", "tok-alicf", "tok-alicetok-alice", "t"};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        mhdctx_context *ctx = new_context();
        ck_assert_msg(verify(table, unknown[i], ctx) == MHDCTX_EAUTH, "%s", unknown[i]);
        ck_assert_ptr_null(mhdctx_user_id(ctx)); /* still anonymous */
        ck_assert(!mhdctx_has_role(ctx, "admin"));
        mhdctx_context_unref(ctx);
    }
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_token_table_verify("tok-alice", 0, ctx, table), MHDCTX_EAUTH);
    mhdctx_context_unref(ctx);
    mhdctx_token_table_free(table);
}
END_TEST

START_TEST(token_table_verify_on_empty_table_is_eauth)
{
    mhdctx_token_table *table = new_table();
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(verify(table, "anything", ctx), MHDCTX_EAUTH);
    mhdctx_context_unref(ctx);
    mhdctx_token_table_free(table);
}
END_TEST

START_TEST(token_table_verify_uses_token_len)
{
    mhdctx_token_table *table = new_table();
    ck_assert_int_eq(mhdctx_token_table_add(table, "abc", "u1", NULL, 0), MHDCTX_OK);
    mhdctx_context *ctx = new_context();
    /* A token parsed out of a header is not NUL-terminated. */
    const char *header = "Bearer abc  ";
    const char *token;
    size_t token_len;
    ck_assert_int_eq(mhdctx_bearer_parse(header, strlen(header), &token, &token_len),
                     MHDCTX_OK);
    ck_assert_int_eq(mhdctx_token_table_verify(token, token_len, ctx, table), MHDCTX_OK);
    ck_assert_pstr_eq(mhdctx_user_id(ctx), "u1");
    mhdctx_context_unref(ctx);
    mhdctx_token_table_free(table);
}
END_TEST

START_TEST(token_table_verify_null_arguments)
{
    mhdctx_token_table *table = new_table();
    ck_assert_int_eq(mhdctx_token_table_add(table, "abc", "u1", NULL, 0), MHDCTX_OK);
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(mhdctx_token_table_verify("abc", 3, ctx, NULL), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_token_table_verify("abc", 3, NULL, table), MHDCTX_EINVAL);
    mhdctx_context_unref(ctx);
    mhdctx_token_table_free(table);
}
END_TEST

START_TEST(token_table_copies_its_inputs)
{
    char token[] = "tok-1", user[] = "u1", role[] = "r1";
    const char *roles[] = {role};
    mhdctx_token_table *table = new_table();
    ck_assert_int_eq(mhdctx_token_table_add(table, token, user, roles, 1), MHDCTX_OK);
    token[0] = user[0] = role[0] = 'X';
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(verify(table, "tok-1", ctx), MHDCTX_OK);
    ck_assert_pstr_eq(mhdctx_user_id(ctx), "u1");
    ck_assert(mhdctx_has_role(ctx, "r1"));
    mhdctx_context_unref(ctx);
    mhdctx_token_table_free(table);
}
END_TEST

/* ---- token table: loading a file --------------------------------------------------------- */

/* Writes @content to a new temporary file; returns its path (owned). */
static char *temp_file(const char *content)
{
    char *path = strdup("/tmp/check_auth_XXXXXX");
    ck_assert_ptr_nonnull(path);
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    size_t len = strlen(content);
    ck_assert_int_eq(write(fd, content, len), (ssize_t)len);
    close(fd);
    return path;
}

static void remove_temp_file(char *path)
{
    unlink(path);
    free(path);
}

START_TEST(token_table_load_valid_file)
{
    char *path =
        temp_file("{\n"
                  "  \"tok-admin\": {\"user_id\": \"1\", \"roles\": [\"admin\", \"ops\"]},\n"
                  "  \"tok-user\": {\"user_id\": \"2\", \"roles\": []},\n"
                  "  \"tok-bare\": {\"user_id\": \"3\"}\n"
                  "}\n");
    mhdctx_token_table *table = new_table();
    char err[256] = "untouched";
    ck_assert_int_eq(mhdctx_token_table_load(table, path, err, sizeof err), MHDCTX_OK);

    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(verify(table, "tok-admin", ctx), MHDCTX_OK);
    ck_assert_pstr_eq(mhdctx_user_id(ctx), "1");
    ck_assert(mhdctx_has_role(ctx, "admin"));
    ck_assert(mhdctx_has_role(ctx, "ops"));
    mhdctx_context_unref(ctx);

    ctx = new_context();
    ck_assert_int_eq(verify(table, "tok-user", ctx), MHDCTX_OK);
    ck_assert_pstr_eq(mhdctx_user_id(ctx), "2");
    json_t *roles = mhdctx_roles_json(ctx);
    ck_assert_uint_eq(json_array_size(roles), 0);
    json_decref(roles);
    mhdctx_context_unref(ctx);

    ctx = new_context();
    ck_assert_int_eq(verify(table, "tok-bare", ctx), MHDCTX_OK);
    ck_assert_pstr_eq(mhdctx_user_id(ctx), "3");
    ck_assert_int_eq(verify(table, "tok-nobody", ctx), MHDCTX_EAUTH);
    mhdctx_context_unref(ctx);

    mhdctx_token_table_free(table);
    remove_temp_file(path);
}
END_TEST

START_TEST(token_table_load_empty_object_is_ok)
{
    char *path = temp_file("{}");
    mhdctx_token_table *table = new_table();
    ck_assert_int_eq(mhdctx_token_table_load(table, path, NULL, 0), MHDCTX_OK);
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(verify(table, "anything", ctx), MHDCTX_EAUTH);
    mhdctx_context_unref(ctx);
    mhdctx_token_table_free(table);
    remove_temp_file(path);
}
END_TEST

static const char *const malformed_files[] = {
    "",
    "{",
    "{\"tok\": {\"user_id\": \"1\"}",
    "{\"tok\": {\"user_id\": \"1\"}} trailing",
    "{'tok': {}}",
    "{\"tok\": {\"user_id\": \"1\",}}",
    "not json at all",
    /* jansson's messages quote the text near the error: here, tokens */
    "{\"s3cretTOKEN\": {\"user_id\": \"1\"}, \"s3cretTOKEN\": {\"user_id\": \"2\"}}",
    "{\"s3cretTOKEN\x01\": {\"user_id\": \"1\"}}",
    "{\"s3cretTOKEN",
    "{\"s3cretTOKEN\xff\": {\"user_id\": \"1\"}}",
    "{s3cretTOKEN: {}}",
    "{\"a\": {\"user_id\": \"1\"}} s3cretTOKEN",
};

/* The message names the file, the line and the column, never the text near the error:
 * a token file's text is tokens. */

START_TEST(token_table_load_malformed_json_is_eparse_with_message)
{
    char *path = temp_file(malformed_files[_i]);
    mhdctx_token_table *table = new_table();
    char err[256] = "";
    ck_assert_int_eq(mhdctx_token_table_load(table, path, err, sizeof err), MHDCTX_EPARSE);
    ck_assert_msg(strstr(err, path) && strstr(err, ", column "), "case %d: %s", _i, err);
    ck_assert_msg(strstr(err, "s3cret") == NULL, "case %d quotes the file: %s", _i, err);
    mhdctx_token_table_free(table);
    remove_temp_file(path);
}
END_TEST

static const char *const wrong_shape_files[] = {
    "[]",
    "[{\"user_id\": \"1\"}]",
    "\"tok\"",
    "42",
    "{\"tok\": \"1\"}",
    "{\"tok\": {}}",
    "{\"tok\": {\"user_id\": 1}}",
    "{\"tok\": {\"user_id\": null}}",
    "{\"tok\": {\"user_id\": \"1\", \"roles\": \"admin\"}}",
    "{\"tok\": {\"user_id\": \"1\", \"roles\": [1]}}",
    "{\"tok\": {\"user_id\": \"1\", \"roles\": {\"admin\": true}}}",
    "{\"tok\": [\"1\"]}",
};

START_TEST(token_table_load_wrong_shape_is_eparse_with_message)
{
    char *path = temp_file(wrong_shape_files[_i]);
    mhdctx_token_table *table = new_table();
    char err[256] = "";
    ck_assert_int_eq(mhdctx_token_table_load(table, path, err, sizeof err), MHDCTX_EPARSE);
    ck_assert_msg(strlen(err) > 0, "no message for case %d", _i);
    mhdctx_token_table_free(table);
    remove_temp_file(path);
}
END_TEST

START_TEST(token_table_load_failure_adds_nothing)
{
    char *path = temp_file("{\"a\": {\"user_id\": \"1\"}, \"b\": {\"user_id\": \"2\"}, "
                           "\"c\": {\"user_id\": 3}}");
    mhdctx_token_table *table = new_table();
    ck_assert_int_eq(mhdctx_token_table_load(table, path, NULL, 0), MHDCTX_EPARSE);
    mhdctx_context *ctx = mhdctx_context_new();
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(mhdctx_token_table_verify("a", 1, ctx, table), MHDCTX_EAUTH);
    ck_assert_int_eq(mhdctx_token_table_verify("b", 1, ctx, table), MHDCTX_EAUTH);
    mhdctx_context_unref(ctx);
    mhdctx_token_table_free(table);
    remove_temp_file(path);
}
END_TEST

START_TEST(token_table_load_duplicate_token_is_eparse)
{
    char *path = temp_file("{\"tok\": {\"user_id\": \"1\"}, \"tok\": {\"user_id\": \"2\"}}");
    mhdctx_token_table *table = new_table();
    ck_assert_int_eq(mhdctx_token_table_load(table, path, NULL, 0), MHDCTX_EPARSE);
    mhdctx_token_table_free(table);
    remove_temp_file(path);
}
END_TEST

/* The token of an earlier add or load: refused, the first user keeps it (the later one
 * used to take its requests silently), and a load that brings it adds nothing. */
START_TEST(token_table_refuses_a_token_it_has)
{
    mhdctx_token_table *table = new_table();
    ck_assert_int_eq(mhdctx_token_table_add(table, "tok", "alice", NULL, 0), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_token_table_add(table, "tok", "mallory", NULL, 0), MHDCTX_EINVAL);
    char *path =
        temp_file("{\"new\": {\"user_id\": \"bob\"}, \"tok\": {\"user_id\": \"eve\"}}");
    char err[256] = "";
    ck_assert_int_eq(mhdctx_token_table_load(table, path, err, sizeof err), MHDCTX_EPARSE);
    ck_assert_ptr_nonnull(strstr(err, "a token already in the table"));
    ck_assert_ptr_null(strstr(err, "tok\"")); /* the message never quotes a token */
    mhdctx_context *ctx = new_context();
    ck_assert_int_eq(verify(table, "tok", ctx), MHDCTX_OK);
    ck_assert_pstr_eq(mhdctx_user_id(ctx), "alice");
    mhdctx_context_unref(ctx);
    ctx = new_context();
    ck_assert_int_eq(verify(table, "new", ctx), MHDCTX_EAUTH); /* all or nothing */
    mhdctx_context_unref(ctx);
    mhdctx_token_table_free(table);
    remove_temp_file(path);
}
END_TEST

START_TEST(token_table_load_invalid_token_fails)
{
    char *path = temp_file("{\"has space\": {\"user_id\": \"1\"}}");
    mhdctx_token_table *table = new_table();
    char err[256] = "";
    mhdctx_error rc = mhdctx_token_table_load(table, path, err, sizeof err);
    ck_assert_msg(rc == MHDCTX_EINVAL || rc == MHDCTX_EPARSE, "got %s", mhdctx_error_name(rc));
    ck_assert_uint_gt(strlen(err), 0);
    mhdctx_token_table_free(table);
    remove_temp_file(path);
}
END_TEST

START_TEST(token_table_load_missing_file_is_eio)
{
    mhdctx_token_table *table = new_table();
    char err[256] = "";
    const char *path = "/nonexistent-dir-for-mhdctx/tokens.json";
    ck_assert_int_eq(mhdctx_token_table_load(table, path, err, sizeof err), MHDCTX_EIO);
    ck_assert_ptr_nonnull(strstr(err, path));
    ck_assert_int_eq(mhdctx_token_table_load(table, path, NULL, 0), MHDCTX_EIO);
    mhdctx_token_table_free(table);
}
END_TEST

START_TEST(token_table_load_small_error_buffer_is_terminated)
{
    char *path = temp_file("{");
    mhdctx_token_table *table = new_table();
    char err[8];
    memset(err, 'x', sizeof err);
    ck_assert_int_eq(mhdctx_token_table_load(table, path, err, sizeof err), MHDCTX_EPARSE);
    ck_assert_uint_eq(strlen(err), sizeof err - 1);
    mhdctx_token_table_free(table);
    remove_temp_file(path);
}
END_TEST

START_TEST(token_table_load_null_arguments)
{
    mhdctx_token_table *table = new_table();
    char err[64] = "";
    ck_assert_int_eq(mhdctx_token_table_load(NULL, "/tmp/x", err, sizeof err), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_token_table_load(table, NULL, err, sizeof err), MHDCTX_EINVAL);
    mhdctx_token_table_free(table);
}
END_TEST

/* ---- suite --------------------------------------------------------------------------------
 */

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");

    TCase *tc = tcase_create("bearer_parse");
    tcase_add_loop_test(tc, bearer_parse_table, 0, N_BEARER_CASES);
    tcase_add_test(tc, bearer_parse_null_arguments);
    suite_add_tcase(s, tc);

    tc = tcase_create("secret_equal");
    tcase_add_test(tc, secret_equal_same_bytes);
    tcase_add_test(tc, secret_equal_differs_in_last_byte);
    tcase_add_test(tc, secret_equal_different_lengths);
    tcase_add_test(tc, secret_equal_empty);
    tcase_add_test(tc, secret_equal_does_not_branch_on_the_secret);
    suite_add_tcase(s, tc);

    tc = tcase_create("token_table");
    tcase_add_test(tc, token_table_new_and_free);
    tcase_add_test(tc, token_table_add_accepts_token68);
    tcase_add_loop_test(tc, token_table_add_rejects_invalid_token_chars, 0,
                        (int)(sizeof bad_tokens / sizeof *bad_tokens));
    tcase_add_test(tc, token_table_add_rejects_bad_arguments);
    tcase_add_test(tc, token_table_verify_sets_user_and_roles);
    tcase_add_test(tc, token_table_verify_unknown_is_eauth);
    tcase_add_test(tc, token_table_verify_on_empty_table_is_eauth);
    tcase_add_test(tc, token_table_verify_uses_token_len);
    tcase_add_test(tc, token_table_verify_null_arguments);
    tcase_add_test(tc, token_table_copies_its_inputs);
    suite_add_tcase(s, tc);

    tc = tcase_create("token_table_load");
    tcase_add_test(tc, token_table_load_valid_file);
    tcase_add_test(tc, token_table_load_empty_object_is_ok);
    tcase_add_loop_test(tc, token_table_load_malformed_json_is_eparse_with_message, 0,
                        (int)(sizeof malformed_files / sizeof *malformed_files));
    tcase_add_test(tc, token_table_load_failure_adds_nothing);
    tcase_add_loop_test(tc, token_table_load_wrong_shape_is_eparse_with_message, 0,
                        (int)(sizeof wrong_shape_files / sizeof *wrong_shape_files));
    tcase_add_test(tc, token_table_load_duplicate_token_is_eparse);
    tcase_add_test(tc, token_table_refuses_a_token_it_has);
    tcase_add_test(tc, token_table_load_invalid_token_fails);
    tcase_add_test(tc, token_table_load_missing_file_is_eio);
    tcase_add_test(tc, token_table_load_small_error_buffer_is_terminated);
    tcase_add_test(tc, token_table_load_null_arguments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(auth_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failures = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failures ? 1 : 0;
}
