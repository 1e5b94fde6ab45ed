/*
 * check_trace_context.c - W3C Trace Context: traceparent parsing (the cases of the W3C
 * validation suite, table-driven), formatting and its round trip through the parser,
 * and tracestate normalization (trimming, empty members, duplicates, key and value
 * grammar, member and length limits, truncation).
 */
#include "internal.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRACE                             "12345678901234567890123456789012"
#define PARENT                            "1234567890123456"
#define TP(version, trace, parent, flags) version "-" trace "-" parent "-" flags
#define VALID                             TP("00", TRACE, PARENT, "01")

/* ---- traceparent: the table ------------------------------------------------------------ */

struct tp_case {
    const char *name;
    const char *value;
    size_t len; /* 0: strlen(value) */
    mhdctx_error expect;
    const char *trace_id; /* expected on success */
    const char *parent_id;
    unsigned flags;
};

/* clang-format off */
#define OK_CASE(name, value, flags) {name, value, 0, MHDCTX_OK, TRACE, PARENT, flags}
#define BAD_CASE(name, value) {name, value, 0, MHDCTX_EPARSE, NULL, NULL, 0}
/* clang-format on */

static const struct tp_case tp_cases[] = {
    /* valid */
    OK_CASE("version 00", VALID, 0x01),
    OK_CASE("flags 00", TP("00", TRACE, PARENT, "00"), 0x00),
    OK_CASE("flags ff", TP("00", TRACE, PARENT, "ff"), 0xff),
    OK_CASE("flags 0a", TP("00", TRACE, PARENT, "0a"), 0x0a),
    OK_CASE("flags a0", TP("00", TRACE, PARENT, "a0"), 0xa0),
    {"other ids", TP("00", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "01"), 0,
     MHDCTX_OK, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", 0x01},
    {"ids with a single non-zero digit",
     TP("00", "00000000000000000000000000000001", "0000000000000001", "00"), 0, MHDCTX_OK,
     "00000000000000000000000000000001", "0000000000000001", 0x00},
    OK_CASE("leading spaces", "   " VALID, 0x01),
    OK_CASE("trailing spaces", VALID "   ", 0x01),
    OK_CASE("leading tab", "\t" VALID, 0x01),
    OK_CASE("trailing tab", VALID "\t", 0x01),
    OK_CASE("spaces and tabs around", " \t \t" VALID "\t \t ", 0x01),
    OK_CASE("future version cc, 55 chars", TP("cc", TRACE, PARENT, "01"), 0x01),
    OK_CASE("future version cc with more fields",
            TP("cc", TRACE, PARENT, "01") "-what-the-future", 0x01),
    OK_CASE("future version cc with a bare dash", TP("cc", TRACE, PARENT, "01") "-", 0x01),
    OK_CASE("future version 01", TP("01", TRACE, PARENT, "01"), 0x01),
    OK_CASE("future version fe with OWS", "\t" TP("fe", TRACE, PARENT, "09") "-x ", 0x09),
    {"len honoured: garbage after len", VALID "-01.garbage", MHDCTX_TRACEPARENT_LEN, MHDCTX_OK,
     TRACE, PARENT, 0x01},

    /* version */
    BAD_CASE("version ff", TP("ff", TRACE, PARENT, "01")),
    BAD_CASE("version ff future-style", TP("ff", TRACE, PARENT, "01") "-what"),
    BAD_CASE("version too short", TP("0", TRACE, PARENT, "01")),
    BAD_CASE("version too long", TP("000", TRACE, PARENT, "01")),
    BAD_CASE("version uppercase", TP("0A", TRACE, PARENT, "01")),
    BAD_CASE("version uppercase CC", TP("CC", TRACE, PARENT, "01")),
    BAD_CASE("version non-hex", TP("0g", TRACE, PARENT, "01")),
    BAD_CASE("version non-hex xx", TP("xx", TRACE, PARENT, "01")),
    BAD_CASE("version with a space", TP(" 0", TRACE, PARENT, "01") "x"),
    BAD_CASE("version empty", TP("", TRACE, PARENT, "01") "00"),

    /* trace id */
    BAD_CASE("trace id all zero", TP("00", "00000000000000000000000000000000", PARENT, "01")),
    BAD_CASE("trace id uppercase", TP("00", "1234567890123456789012345678901A", PARENT, "01")),
    BAD_CASE("trace id all uppercase",
             TP("00", "ABCDEF7890123456789012345678ABCD", PARENT, "01")),
    BAD_CASE("trace id too short", TP("00", "1234567890123456789012345678901", PARENT, "01")),
    BAD_CASE("trace id too long", TP("00", "123456789012345678901234567890123", PARENT, "01")),
    BAD_CASE("trace id illegal char g",
             TP("00", "1234567890123456789012345678901g", PARENT, "01")),
    BAD_CASE("trace id illegal char dot",
             TP("00", "12345678901234567.901234567890123", PARENT, "01")),
    BAD_CASE("trace id with a space",
             TP("00", "1234567890123456 890123456789012", PARENT, "01")),

    /* parent id */
    BAD_CASE("parent id all zero", TP("00", TRACE, "0000000000000000", "01")),
    BAD_CASE("parent id uppercase", TP("00", TRACE, "123456789012345A", "01")),
    BAD_CASE("parent id too short", TP("00", TRACE, "123456789012345", "01")),
    BAD_CASE("parent id too long", TP("00", TRACE, "12345678901234567", "01")),
    BAD_CASE("parent id illegal char", TP("00", TRACE, "123456789012345z", "01")),
    BAD_CASE("parent id with a dash", TP("00", TRACE, "1234567-90123456", "01")),

    /* flags */
    BAD_CASE("flags uppercase", TP("00", TRACE, PARENT, "0A")),
    BAD_CASE("flags uppercase FF", TP("00", TRACE, PARENT, "FF")),
    BAD_CASE("flags too short", TP("00", TRACE, PARENT, "1")),
    BAD_CASE("flags too long", TP("00", TRACE, PARENT, "011")),
    BAD_CASE("flags illegal char", TP("00", TRACE, PARENT, "0g")),
    BAD_CASE("flags illegal char dot", TP("00", TRACE, PARENT, ".1")),
    BAD_CASE("flags missing", TP("00", TRACE, PARENT, "")),

    /* separators */
    BAD_CASE("first dash missing", "00" TRACE "-" PARENT "-01"),
    BAD_CASE("second dash missing", "00-" TRACE PARENT "-01"),
    BAD_CASE("third dash missing", "00-" TRACE "-" PARENT "01"),
    BAD_CASE("no dashes", "00" TRACE PARENT "01"),
    BAD_CASE("underscores for dashes", "00_" TRACE "_" PARENT "_01"),
    BAD_CASE("dash replaced by space", "00 " TRACE " " PARENT " 01"),

    /* extra data */
    BAD_CASE("version 00 with a trailing dot", VALID "."),
    BAD_CASE("version 00 with future fields", VALID "-future"),
    BAD_CASE("version 00 with a trailing dash", VALID "-"),
    BAD_CASE("version 00 with a char inside OWS", VALID " x "),
    BAD_CASE("future version with .what", TP("cc", TRACE, PARENT, "01") ".what"),
    BAD_CASE("future version with text glued", TP("cc", TRACE, PARENT, "01") "what"),

    /* whitespace that is not OWS, and empty values */
    BAD_CASE("newline before", "\n" VALID),
    BAD_CASE("vertical tab after", VALID "\v"),
    BAD_CASE("empty", ""),
    BAD_CASE("only OWS", " \t  \t"),
    BAD_CASE("one dash", "-"),
    BAD_CASE("truncated", "00-1234567890123456789012345678901"),
    BAD_CASE("54 chars", "00-" TRACE "-" PARENT "-0"),
    {"embedded NUL", VALID "\0", MHDCTX_TRACEPARENT_LEN + 1, MHDCTX_EPARSE, NULL, NULL, 0},
    {"len cuts the flags", VALID, MHDCTX_TRACEPARENT_LEN - 1, MHDCTX_EPARSE, NULL, NULL, 0},
};

#define N_TP_CASES ((int)(sizeof tp_cases / sizeof *tp_cases))

START_TEST(traceparent_parse_table)
{
    const struct tp_case *c = &tp_cases[_i];
    size_t len = c->len ? c->len : strlen(c->value);
    /* A copy in an exact-size heap block: ASan/valgrind catch any read past len. */
    char *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, c->value, len);
    mhdctx_trace_parent tp;
    memset(&tp, 0x5a, sizeof tp);
    mhdctx_error rc = mhdctx_traceparent_parse(copy, len, &tp);
    free(copy);
    ck_assert_msg(rc == c->expect, "case \"%s\" (%s): got %s, expected %s", c->name, c->value,
                  mhdctx_error_name(rc), mhdctx_error_name(c->expect));
    if (c->expect == MHDCTX_OK) {
        ck_assert_msg(strcmp(tp.trace_id, c->trace_id) == 0, "case %s: trace_id %.33s", c->name,
                      tp.trace_id);
        ck_assert_msg(strcmp(tp.parent_id, c->parent_id) == 0, "case %s: parent_id %.17s",
                      c->name, tp.parent_id);
        ck_assert_msg(tp.flags == c->flags, "case %s: flags %u, expected %u", c->name, tp.flags,
                      c->flags);
    }
}
END_TEST

START_TEST(traceparent_parse_null_arguments)
{
    mhdctx_trace_parent tp;
    ck_assert_int_eq(mhdctx_traceparent_parse(NULL, 0, &tp), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_traceparent_parse(NULL, 55, &tp), MHDCTX_EINVAL);
    ck_assert_int_eq(mhdctx_traceparent_parse(VALID, strlen(VALID), NULL), MHDCTX_EINVAL);
}
END_TEST

/* Every single-character corruption of a valid header is refused, except the hex digits
 * replaced by other lowercase hex digits (and a version digit that stays valid). */
START_TEST(traceparent_every_position_rejects_uppercase_and_junk)
{
    static const char junk[] = {'A', 'F', 'G', 'z', ' ', '\t', '.', '\0', '\x80', '\xff'};
    char buf[MHDCTX_TRACEPARENT_LEN + 1];
    mhdctx_trace_parent tp;
    for (size_t pos = 0; pos < MHDCTX_TRACEPARENT_LEN; pos++) {
        for (size_t j = 0; j < sizeof junk; j++) {
            memcpy(buf, VALID, sizeof buf);
            buf[pos] = junk[j];
            /* OWS at the very edges is trimmed, leaving a value too short: still refused. */
            ck_assert_msg(mhdctx_traceparent_parse(buf, MHDCTX_TRACEPARENT_LEN, &tp) ==
                              MHDCTX_EPARSE,
                          "byte 0x%02x at %zu accepted", (unsigned char)junk[j], pos);
        }
    }
}
END_TEST

/* ---- traceparent: formatting ---------------------------------------------------------- */

START_TEST(traceparent_format_writes_version_00)
{
    char out[MHDCTX_TRACEPARENT_LEN + 1];
    memset(out, 'x', sizeof out);
    mhdctx_traceparent_format(out, TRACE, PARENT, 0x01);
    ck_assert_str_eq(out, VALID);
    mhdctx_traceparent_format(out, TRACE, PARENT, 0xab);
    ck_assert_str_eq(out, TP("00", TRACE, PARENT, "ab"));
    mhdctx_traceparent_format(out, TRACE, PARENT, 0x00);
    ck_assert_str_eq(out, TP("00", TRACE, PARENT, "00"));
    ck_assert_uint_eq(strlen(out), MHDCTX_TRACEPARENT_LEN);
}
END_TEST

START_TEST(traceparent_format_round_trips_every_flag)
{
    static const char *const ids[][2] = {
        {TRACE, PARENT},
        {"0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"},
        {"ffffffffffffffffffffffffffffffff", "ffffffffffffffff"},
        {"00000000000000000000000000000001", "1000000000000000"},
    };
    for (size_t k = 0; k < sizeof ids / sizeof *ids; k++) {
        for (unsigned flags = 0; flags <= 0xff; flags++) {
            char out[MHDCTX_TRACEPARENT_LEN + 1];
            mhdctx_traceparent_format(out, ids[k][0], ids[k][1], (unsigned char)flags);
            mhdctx_trace_parent tp;
            ck_assert_int_eq(mhdctx_traceparent_parse(out, strlen(out), &tp), MHDCTX_OK);
            ck_assert_str_eq(tp.trace_id, ids[k][0]);
            ck_assert_str_eq(tp.parent_id, ids[k][1]);
            ck_assert_uint_eq(tp.flags, flags);
            char again[MHDCTX_TRACEPARENT_LEN + 1];
            mhdctx_traceparent_format(again, tp.trace_id, tp.parent_id, tp.flags);
            ck_assert_str_eq(again, out);
        }
    }
}
END_TEST

START_TEST(traceparent_parse_then_format_normalizes_future_versions)
{
    static const char in[] = " cc-" TRACE "-" PARENT "-03-what-the-future\t";
    mhdctx_trace_parent tp;
    ck_assert_int_eq(mhdctx_traceparent_parse(in, strlen(in), &tp), MHDCTX_OK);
    char out[MHDCTX_TRACEPARENT_LEN + 1];
    mhdctx_traceparent_format(out, tp.trace_id, tp.parent_id, tp.flags);
    ck_assert_str_eq(out, TP("00", TRACE, PARENT, "03"));
}
END_TEST

/* ---- tracestate: the table -------------------------------------------------------------- */

struct ts_case {
    const char *name;
    const char *list;
    const char *expect; /* "" : empty or discarded */
};

static const struct ts_case ts_cases[] = {
    {"single member", "foo=1", "foo=1"},
    {"two members keep order", "foo=1,bar=2", "foo=1,bar=2"},
    {"lists joined by comma keep order",
     "bar=1,rojo=1,congo=2,baz=3"
     ","
     "sunny=1",
     "bar=1,rojo=1,congo=2,baz=3,sunny=1"},
    {"three joined lists",
     "a=1"
     ","
     "b=2,c=3"
     ","
     "d=4",
     "a=1,b=2,c=3,d=4"},
    {"empty member in the middle", "foo=1,,bar=2", "foo=1,bar=2"},
    {"many empty members", ",,foo=1,,,bar=2,,", "foo=1,bar=2"},
    {"empty list", "", ""},
    {"only a comma", ",", ""},
    {"only commas", ",,,", ""},
    {"only OWS and commas", " , \t ,\t", ""},
    {"only OWS", "  \t ", ""},
    {"spaces around members", " foo=1 , bar=2 ", "foo=1,bar=2"},
    {"tabs around members", "\tfoo=1\t,\tbar=2\t", "foo=1,bar=2"},
    {"mixed OWS around members", " \t foo=1\t \t,  \tbar=2 \t", "foo=1,bar=2"},
    {"OWS around an empty member", "foo=1, \t ,bar=2", "foo=1,bar=2"},
    {"member trailing space before comma is OWS", "foo=1 ,bar=2", "foo=1,bar=2"},
    {"space inside a value", "foo=a b", "foo=a b"},
    {"space first in a value", "foo= 1", "foo= 1"},
    {"duplicate key keeps the first", "foo=1,foo=2", "foo=1"},
    {"duplicate key after others", "foo=1,bar=2,foo=3", "foo=1,bar=2"},
    {"duplicate identical member", "foo=1,foo=1", "foo=1"},
    {"duplicate across joined lists",
     "foo=1,bar=2"
     ","
     "bar=3,baz=4",
     "foo=1,bar=2,baz=4"},
    {"key prefix is not a duplicate", "foo=1,fo=2,foox=3", "foo=1,fo=2,foox=3"},
    {"key starting with a digit", "0abc=1", "0abc=1"},
    {"key with every allowed char", "a0_-*/@z=1", "a0_-*/@z=1"},
    {"multi-tenant key", "fw529a3039@dt=abc", "fw529a3039@dt=abc"},
    {"key with all letters and digits", "abcdefghijklmnopqrstuvwxyz0123456789=v",
     "abcdefghijklmnopqrstuvwxyz0123456789=v"},
    {"value of punctuation", "k=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~",
     "k=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~"},
    {"value ending in a tilde", "k=~", "k=~"},

    /* invalid: the whole list goes */
    {"key with uppercase", "Foo=1", ""},
    {"key with uppercase inside", "foO=1", ""},
    {"uppercase key discards valid members", "foo=1,Bar=2,baz=3", ""},
    {"key with a dot", "foo.bar=1", ""},
    {"key starting with @", "@foo=1", ""},
    {"key starting with _", "_foo=1", ""},
    {"key starting with -", "-foo=1", ""},
    {"key starting with *", "*foo=1", ""},
    {"key starting with /", "/foo=1", ""},
    {"key with a space before =", "foo =1", ""},
    {"key with a space inside", "fo o=1", ""},
    {"key with a tab before =", "foo\t=1", ""},
    {"key with a non-ASCII byte", "f\xc3\xa9=1", ""},
    {"empty key", "=1", ""},
    {"value with =", "foo=bar=baz", ""},
    {"empty value", "foo=", ""},
    {"empty value then valid", "foo=,bar=3", ""},
    {"value only spaces", "foo=   ", ""},
    {"no equals sign", "foo", ""},
    {"member without = after valid", "foo=1,bar", ""},
    {"trailing-space member then invalid", "foo=1 ,bar", ""},
    {"value with a tab", "foo=a\tb", ""},
    {"value with DEL", "foo=a\x7f", ""},
    {"value with a control byte", "foo=\x01", ""},
    {"value with a newline", "foo=a\nb", ""},
    {"value with a high byte", "foo=\xc3\xa9", ""},
    {"comma splits a value into an invalid member", "foo=a,b", ""},
};

#define N_TS_CASES ((int)(sizeof ts_cases / sizeof *ts_cases))

static size_t normalize_exact(const char *list, size_t len, char *out)
{
    /* An exact-size heap copy, not NUL-terminated: no read past len goes unnoticed. */
    char *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, list, len);
    memset(out, 'x', MHDCTX_TRACESTATE_MAX_LEN + 1);
    size_t n = mhdctx_tracestate_normalize(copy, len, out);
    free(copy);
    ck_assert_uint_le(n, MHDCTX_TRACESTATE_MAX_LEN);
    ck_assert_uint_eq(strlen(out), n);
    return n;
}

START_TEST(tracestate_normalize_table)
{
    const struct ts_case *c = &ts_cases[_i];
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
    size_t n = normalize_exact(c->list, strlen(c->list), out);
    ck_assert_msg(strcmp(out, c->expect) == 0, "case \"%s\": got \"%s\", expected \"%s\"",
                  c->name, out, c->expect);
    ck_assert_uint_eq(n, strlen(c->expect));
    /* Normalizing the result again changes nothing. */
    char twice[MHDCTX_TRACESTATE_MAX_LEN + 1];
    normalize_exact(out, n, twice);
    ck_assert_str_eq(twice, out);
}
END_TEST

START_TEST(tracestate_null_list_writes_empty)
{
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1] = "garbage";
    ck_assert_uint_eq(mhdctx_tracestate_normalize(NULL, 10, out), 0);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(tracestate_len_is_honoured)
{
    static const char list[] = "foo=1,bar=2,Invalid=3";
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
    ck_assert_uint_eq(mhdctx_tracestate_normalize(list, 11, out), 11);
    ck_assert_str_eq(out, "foo=1,bar=2");
    ck_assert_uint_eq(mhdctx_tracestate_normalize(list, 0, out), 0);
    ck_assert_str_eq(out, "");
}
END_TEST

/* ---- tracestate: built cases ---------------------------------------------------------- */

/* Appends to a growing string. */
struct sb {
    char *s;
    size_t len;
};

static void sb_add(struct sb *b, const char *text, size_t n)
{
    b->s = realloc(b->s, b->len + n + 1);
    ck_assert_ptr_nonnull(b->s);
    memcpy(b->s + b->len, text, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_adds(struct sb *b, const char *text)
{
    sb_add(b, text, strlen(text));
}

static void sb_repeat(struct sb *b, char c, size_t n)
{
    b->s = realloc(b->s, b->len + n + 1);
    ck_assert_ptr_nonnull(b->s);
    memset(b->s + b->len, c, n);
    b->len += n;
    b->s[b->len] = '\0';
}

START_TEST(tracestate_every_allowed_value_char)
{
    struct sb list = {0}, value = {0};
    for (int c = 0x21; c <= 0x7e; c++) {
        if (c == ',' || c == '=')
            continue;
        char ch = (char)c;
        sb_add(&value, &ch, 1);
        if (c == 'M')
            sb_adds(&value, " "); /* a space inside, never last */
    }
    sb_adds(&list, "k=");
    sb_adds(&list, value.s);
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
    normalize_exact(list.s, list.len, out);
    ck_assert_str_eq(out, list.s);
    free(list.s);
    free(value.s);
}
END_TEST

START_TEST(tracestate_every_disallowed_value_byte_discards)
{
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
    for (int c = 0; c <= 0xff; c++) {
        bool allowed = c >= 0x20 && c <= 0x7e && c != ',' && c != '=';
        if (allowed)
            continue;
        char list[] = "a=1,k=vXv,z=2";
        list[7] = (char)c;
        normalize_exact(list, strlen("a=1,k=vXv,z=2"), out);
        ck_assert_msg(out[0] == '\0', "byte 0x%02x in a value accepted: %s", c, out);
    }
}
END_TEST

START_TEST(tracestate_every_key_byte)
{
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
    for (int c = 0; c <= 0xff; c++) {
        bool first_ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        bool inner_ok = first_ok || c == '_' || c == '-' || c == '*' || c == '/' || c == '@';
        char first[] = "Xk=1", inner[] = "kXk=1";
        first[0] = (char)c;
        inner[1] = (char)c;
        size_t n = normalize_exact(first, 4, out);
        if (first_ok)
            ck_assert_msg(n == 4 && memcmp(out, first, 4) == 0, "first byte 0x%02x refused", c);
        else if (c != ' ' && c != '\t' && c != ',') /* OWS / separator: a valid "k=1" */
            ck_assert_msg(n == 0, "first key byte 0x%02x accepted: %s", c, out);
        n = normalize_exact(inner, 5, out);
        if (inner_ok)
            ck_assert_msg(n == 5 && memcmp(out, inner, 5) == 0, "inner byte 0x%02x refused", c);
        else
            ck_assert_msg(n == 0, "inner key byte 0x%02x accepted: %s", c, out);
    }
}
END_TEST

START_TEST(tracestate_key_length_limit)
{
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
    struct sb ok = {0}, bad = {0};
    sb_repeat(&ok, 'k', 256);
    sb_adds(&ok, "=v");
    normalize_exact(ok.s, ok.len, out);
    ck_assert_str_eq(out, ok.s);

    sb_repeat(&bad, 'k', 257);
    sb_adds(&bad, "=v");
    ck_assert_uint_eq(normalize_exact(bad.s, bad.len, out), 0);
    ck_assert_str_eq(out, "");

    /* the invalid long key discards a valid neighbour too */
    struct sb mixed = {0};
    sb_adds(&mixed, "a=1,");
    sb_add(&mixed, bad.s, bad.len);
    ck_assert_uint_eq(normalize_exact(mixed.s, mixed.len, out), 0);
    free(ok.s);
    free(bad.s);
    free(mixed.s);
}
END_TEST

START_TEST(tracestate_value_length_limit)
{
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
    struct sb ok = {0}, bad = {0};
    sb_adds(&ok, "k=");
    sb_repeat(&ok, 'v', 256);
    normalize_exact(ok.s, ok.len, out);
    ck_assert_str_eq(out, ok.s);
    sb_adds(&bad, "k=");
    sb_repeat(&bad, 'v', 257);
    ck_assert_uint_eq(normalize_exact(bad.s, bad.len, out), 0);
    free(ok.s);
    free(bad.s);
}
END_TEST

/* "kNN=v..." with @n members, each of @member_len bytes, joined with @sep. */
static char *members_list(size_t n, size_t member_len, const char *sep)
{
    struct sb b = {0};
    sb_adds(&b, "");
    for (size_t i = 0; i < n; i++) {
        char key[32];
        int klen = snprintf(key, sizeof key, "k%zu=", i);
        ck_assert_uint_lt((size_t)klen, member_len);
        if (i)
            sb_adds(&b, sep);
        sb_adds(&b, key);
        sb_repeat(&b, 'v', member_len - (size_t)klen);
    }
    return b.s;
}

START_TEST(tracestate_32_members_are_kept)
{
    char *list = members_list(32, 8, ",");
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
    normalize_exact(list, strlen(list), out);
    ck_assert_str_eq(out, list);
    free(list);

    /* the same with OWS and empty members: still 32 members */
    list = members_list(32, 8, " ,\t, ");
    char *plain = members_list(32, 8, ",");
    normalize_exact(list, strlen(list), out);
    ck_assert_str_eq(out, plain);
    free(list);
    free(plain);
}
END_TEST

START_TEST(tracestate_33_members_are_discarded)
{
    char *list = members_list(33, 8, ",");
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
    ck_assert_uint_eq(normalize_exact(list, strlen(list), out), 0);
    ck_assert_str_eq(out, "");
    free(list);

    list = members_list(33, 5, ",,"); /* empty members do not count, members do */
    ck_assert_uint_eq(normalize_exact(list, strlen(list), out), 0);
    free(list);
}
END_TEST

START_TEST(tracestate_over_512_drops_from_the_end)
{
    /* 10 members of 60 bytes: 609 bytes joined; 8 make 487, 9 would make 548. */
    char *list = members_list(10, 60, ",");
    char *expect = members_list(8, 60, ",");
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
    size_t n = normalize_exact(list, strlen(list), out);
    ck_assert_str_eq(out, expect);
    ck_assert_uint_eq(n, 8 * 60 + 7);
    free(list);
    free(expect);
}
END_TEST

START_TEST(tracestate_exactly_512_is_kept)
{
    /* 8 members of 63 bytes joined: 511 bytes; one more member cannot fit. */
    struct sb b = {0};
    char *head = members_list(8, 63, ","); /* 8*63 + 7 = 511 */
    sb_adds(&b, head);
    ck_assert_uint_eq(b.len, 511);
    free(head);
    /* 511 + "," + "z=1" = 515 > 512: the last member must go. */
    sb_adds(&b, ",z=1");
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
    size_t n = normalize_exact(b.s, b.len, out);
    ck_assert_uint_eq(n, 511);
    ck_assert(strncmp(out, b.s, 511) == 0);
    free(b.s);

    /* a 512-byte list stays whole: 4 members of 127 bytes plus 3 commas = 511, +"x" */
    struct sb c = {0};
    char *four = members_list(4, 127, ",");
    sb_adds(&c, four);
    free(four);
    ck_assert_uint_eq(c.len, 511);
    c.s[c.len - 1] = 'w';
    sb_adds(&c, "w"); /* last member now 128 bytes: still not "over 128" */
    ck_assert_uint_eq(c.len, 512);
    n = normalize_exact(c.s, c.len, out);
    ck_assert_uint_eq(n, 512);
    ck_assert_str_eq(out, c.s);
    free(c.s);
}
END_TEST

START_TEST(tracestate_over_512_drops_large_members_first)
{
    /* a 200-byte member first, then 6 small ones of 60: 200 + 6*60 + 6 = 566 > 512.
     * Dropping the large member is enough; every small one stays. */
    struct sb b = {0};
    sb_adds(&b, "big=");
    sb_repeat(&b, 'b', 196);
    char *small = members_list(6, 60, ",");
    sb_adds(&b, ",");
    sb_adds(&b, small);
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
    normalize_exact(b.s, b.len, out);
    ck_assert_str_eq(out, small);
    free(small);
    free(b.s);

    /* two large members around a 129-byte one: 3+260+3+129+260+3 + 5 commas = 663.
     * Dropping large members is enough, so every small member stays, in order. */
    struct sb c = {0};
    sb_adds(&c, "a=1,big1=");
    sb_repeat(&c, 'b', 255); /* 260 bytes */
    sb_adds(&c, ",b=2,edge=");
    sb_repeat(&c, 'e', 124); /* 129 bytes */
    sb_adds(&c, ",big2=");
    sb_repeat(&c, 'c', 255); /* 260 bytes */
    sb_adds(&c, ",c=3");
    size_t n = normalize_exact(c.s, c.len, out);
    ck_assert_uint_le(n, MHDCTX_TRACESTATE_MAX_LEN);
    ck_assert_msg(strncmp(out, "a=1,", 4) == 0, "got %s", out);
    ck_assert_msg(strstr(out, ",b=2,") != NULL, "got %s", out);
    ck_assert_msg(n >= 4 && strcmp(out + n - 4, ",c=3") == 0, "got %s", out);
    free(c.s);
}
END_TEST

START_TEST(tracestate_single_maximal_member_is_dropped)
{
    /* key 256 + "=" + value 256 = 513 bytes: valid, but cannot fit 512. */
    struct sb b = {0};
    sb_repeat(&b, 'k', 256);
    sb_adds(&b, "=");
    sb_repeat(&b, 'v', 256);
    char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
    ck_assert_uint_eq(normalize_exact(b.s, b.len, out), 0);
    /* with a small neighbour, the neighbour survives */
    struct sb c = {0};
    sb_adds(&c, "a=1,");
    sb_add(&c, b.s, b.len);
    sb_adds(&c, ",z=9");
    normalize_exact(c.s, c.len, out);
    ck_assert_str_eq(out, "a=1,z=9");
    free(b.s);
    free(c.s);
}
END_TEST

/* Property over many built lists: result <= 512, members in input order, the kept small
 * members (<= 128) are a prefix of the small members, and a small member is dropped only
 * when no large one is left. */
static unsigned long long rng_state = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned bound)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % bound);
}

START_TEST(tracestate_truncation_properties)
{
    for (int round = 0; round < 400; round++) {
        size_t n = 1 + rnd(32);
        char *members[32];
        size_t lens[32];
        struct sb list = {0};
        sb_adds(&list, "");
        for (size_t i = 0; i < n; i++) {
            struct sb m = {0};
            char key[32];
            snprintf(key, sizeof key, "m%zu=", i);
            sb_adds(&m, key);
            size_t vlen = rnd(4) == 0 ? 100 + rnd(157) : 1 + rnd(60);
            sb_repeat(&m, (char)('a' + rnd(26)), vlen);
            members[i] = m.s;
            lens[i] = m.len;
            if (i)
                sb_adds(&list, rnd(2) ? "," : " ,\t");
            sb_adds(&list, m.s);
        }
        char out[MHDCTX_TRACESTATE_MAX_LEN + 1];
        size_t total = normalize_exact(list.s, list.len, out);
        size_t joined = 0;
        for (size_t i = 0; i < n; i++)
            joined += lens[i] + (i ? 1 : 0);
        if (joined <= MHDCTX_TRACESTATE_MAX_LEN) {
            /* nothing to truncate */
            size_t pos = 0;
            for (size_t i = 0; i < n; i++) {
                ck_assert(strncmp(out + pos, members[i], lens[i]) == 0);
                pos += lens[i] + 1;
            }
        } else {
            ck_assert_uint_le(total, MHDCTX_TRACESTATE_MAX_LEN);
            /* Walk the output: each member must be the next kept input member. */
            bool kept[32] = {false};
            size_t pos = 0, next = 0;
            while (pos < total) {
                const char *comma = memchr(out + pos, ',', total - pos);
                size_t mlen = comma ? (size_t)(comma - (out + pos)) : total - pos;
                while (next < n &&
                       !(lens[next] == mlen && memcmp(members[next], out + pos, mlen) == 0))
                    next++;
                ck_assert_msg(next < n, "round %d: member out of order or invented", round);
                kept[next++] = true;
                pos += mlen + 1;
            }
            bool small_dropped = false, large_kept = false;
            for (size_t i = 0; i < n; i++) {
                if (lens[i] <= 128) {
                    if (!kept[i])
                        small_dropped = true;
                    else
                        ck_assert_msg(!small_dropped,
                                      "round %d: small member %zu kept after a dropped one",
                                      round, i);
                } else if (kept[i]) {
                    large_kept = true;
                }
            }
            ck_assert_msg(!(small_dropped && large_kept),
                          "round %d: a small member dropped while a large one stays", round);
            /* and as much as possible: adding the first dropped small member would not
             * fit when no large member is left */
        }
        for (size_t i = 0; i < n; i++)
            free(members[i]);
        free(list.s);
    }
}
END_TEST

/* ---- suite ----------------------------------------------------------------------------- */

static Suite *trace_context_suite(void)
{
    Suite *s = suite_create("trace_context");

    TCase *tc = tcase_create("traceparent");
    tcase_add_loop_test(tc, traceparent_parse_table, 0, N_TP_CASES);
    tcase_add_test(tc, traceparent_parse_null_arguments);
    tcase_add_test(tc, traceparent_every_position_rejects_uppercase_and_junk);
    tcase_add_test(tc, traceparent_format_writes_version_00);
    tcase_add_test(tc, traceparent_format_round_trips_every_flag);
    tcase_add_test(tc, traceparent_parse_then_format_normalizes_future_versions);
    suite_add_tcase(s, tc);

    tc = tcase_create("tracestate");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, tracestate_normalize_table, 0, N_TS_CASES);
    tcase_add_test(tc, tracestate_null_list_writes_empty);
    tcase_add_test(tc, tracestate_len_is_honoured);
    tcase_add_test(tc, tracestate_every_allowed_value_char);
    tcase_add_test(tc, tracestate_every_disallowed_value_byte_discards);
    tcase_add_test(tc, tracestate_every_key_byte);
    tcase_add_test(tc, tracestate_key_length_limit);
    tcase_add_test(tc, tracestate_value_length_limit);
    tcase_add_test(tc, tracestate_32_members_are_kept);
    tcase_add_test(tc, tracestate_33_members_are_discarded);
    tcase_add_test(tc, tracestate_over_512_drops_from_the_end);
    tcase_add_test(tc, tracestate_exactly_512_is_kept);
    tcase_add_test(tc, tracestate_over_512_drops_large_members_first);
    tcase_add_test(tc, tracestate_single_maximal_member_is_dropped);
    tcase_add_test(tc, tracestate_truncation_properties);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(trace_context_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failures = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failures ? 1 : 0;
}
