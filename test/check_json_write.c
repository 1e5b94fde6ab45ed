/*
 * check_json_write.c - the hand-written JSON encoder of log lines (strings, numbers,
 * keys, jansson values) and the growable buffer underneath it.
 */
#include "internal.h"

#include "child.h"

#include <check.h>
#include <float.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------- */

/* Encodes @len bytes with mhdctx__json_string; returns the JSON text (owned, NUL-ended;
 * the encoder never emits a raw NUL, so strlen works on it). */
static char *encode(const void *s, size_t len)
{
    char storage[16]; /* small on purpose: long inputs move to the heap */
    mhdctx__buf b;
    mhdctx__buf_init(&b, storage, sizeof storage);
    mhdctx__json_string(&b, s, len);
    ck_assert(!b.failed);
    ck_assert_ptr_null(memchr(b.data, '\0', b.len));
    char *text = malloc(b.len + 1);
    ck_assert_ptr_nonnull(text);
    memcpy(text, b.data, b.len);
    text[b.len] = '\0';
    mhdctx__buf_release(&b);
    return text;
}

static void assert_encodes_to(const void *s, size_t len, const char *expected)
{
    char *text = encode(s, len);
    ck_assert_str_eq(text, expected);
    free(text);
}

#define ASSERT_ENCODES(lit, expected) assert_encodes_to(lit, sizeof(lit) - 1, expected)

/* Parses JSON text that must be one string; returns it (json_decref it). */
static json_t *parse_string(const char *text)
{
    json_error_t err;
    json_t *v = json_loadb(text, strlen(text), JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    ck_assert_msg(v != NULL, "jansson refused %s: %s", text, err.text);
    ck_assert_msg(json_is_string(v), "not a JSON string: %s", text);
    return v;
}

/* No raw byte in the JSON text that a strict or JavaScript reader would choke on. */
static void assert_text_is_clean(const char *text)
{
    size_t len = strlen(text);
    ck_assert_uint_ge(len, 2);
    ck_assert_int_eq(text[0], '"');
    ck_assert_int_eq(text[len - 1], '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        ck_assert_msg(c >= 0x20 && c != 0x7f, "raw byte 0x%02x at %zu in %s", c, i, text);
    }
    ck_assert_ptr_null(strstr(text, "\xe2\x80\xa8"));
    ck_assert_ptr_null(strstr(text, "\xe2\x80\xa9"));
}

/* Length of the well-formed UTF-8 sequence at s (Unicode Table 3-7), or 0. */
static size_t well_formed_length(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;
    if (c <= 0x7f)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c == 0xe0)
        n = 3, lo = 0xa0;
    else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
        n = 3;
    else if (c == 0xed)
        n = 3, hi = 0x9f;
    else if (c == 0xf0)
        n = 4, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3)
        n = 4;
    else if (c == 0xf4)
        n = 4, hi = 0x8f;
    else
        return 0;
    if (left < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    }
    return n;
}

static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */

/* Copies s to out (room for 3 * len bytes) with every ill-formed byte replaced by
 * U+FFFD and every run of U+FFFD collapsed to one, so that the comparison does not
 * depend on how many replacement characters an ill-formed sequence yields. Applied to
 * the input and to the decoded output alike. Returns the length written. */
static size_t normalize(const unsigned char *s, size_t len, unsigned char *out)
{
    size_t o = 0;
    bool last_was_fffd = false;
    for (size_t i = 0; i < len;) {
        size_t n = well_formed_length(s + i, len - i);
        bool fffd = n == 0 || (n == 3 && memcmp(s + i, replacement, 3) == 0);
        if (fffd) {
            if (!last_was_fffd) {
                memcpy(out + o, replacement, 3);
                o += 3;
            }
            last_was_fffd = true;
            i += n ? n : 1;
            continue;
        }
        memcpy(out + o, s + i, n);
        o += n;
        i += n;
        last_was_fffd = false;
    }
    return o;
}

/* Encodes, checks the text, decodes with jansson and compares with the input in which
 * every ill-formed byte is replaced by U+FFFD. */
static void assert_round_trip(const unsigned char *s, size_t len)
{
    char *text = encode(s, len);
    assert_text_is_clean(text);
    json_t *v = parse_string(text);

    unsigned char *want = malloc(3 * len + 3);
    unsigned char *got = malloc(3 * json_string_length(v) + 3);
    ck_assert_ptr_nonnull(want);
    ck_assert_ptr_nonnull(got);
    size_t want_len = normalize(s, len, want);
    size_t got_len =
        normalize((const unsigned char *)json_string_value(v), json_string_length(v), got);
    ck_assert_msg(want_len == got_len && memcmp(want, got, want_len) == 0,
                  "round trip changed the text: %s", text);
    free(want);
    free(got);
    json_decref(v);
    free(text);
}

/* ---- strings: fixed cases ------------------------------------------------------------ */

START_TEST(string_plain_ascii_is_copied)
{
    ASSERT_ENCODES("hello, world 123 {}[]:/", "\"hello, world 123 {}[]:/\"");
    ASSERT_ENCODES("", "\"\"");
}
END_TEST

START_TEST(string_quote_and_backslash_are_escaped)
{
    ASSERT_ENCODES("say \"hi\"", "\"say \\\"hi\\\"\"");
    ASSERT_ENCODES("C:\\dir\\", "\"C:\\\\dir\\\\\"");
    ASSERT_ENCODES("\\\"", "\"\\\\\\\"\"");
}
END_TEST

START_TEST(string_newline_cr_tab_use_short_escapes)
{
    ASSERT_ENCODES("a\nb\rc\td", "\"a\\nb\\rc\\td\"");
    ASSERT_ENCODES("\r\n", "\"\\r\\n\"");
}
END_TEST

START_TEST(string_other_controls_use_u00xx)
{
    ASSERT_ENCODES("\x01", "\"\\u0001\"");
    ASSERT_ENCODES("\b\f", "\"\\u0008\\u000c\"");
    ASSERT_ENCODES("\x1b[31m", "\"\\u001b[31m\"");
    ASSERT_ENCODES("\x1f", "\"\\u001f\"");
}
END_TEST

START_TEST(string_del_is_u007f)
{
    ASSERT_ENCODES("a\x7f"
                   "b",
                   "\"a\\u007fb\"");
}
END_TEST

START_TEST(string_embedded_nul_is_u0000)
{
    ASSERT_ENCODES("a\0b", "\"a\\u0000b\"");
    ASSERT_ENCODES("\0", "\"\\u0000\"");
    char *text = encode("a\0b", 3);
    json_t *v = parse_string(text);
    ck_assert_uint_eq(json_string_length(v), 3);
    ck_assert_mem_eq(json_string_value(v), "a\0b", 3);
    json_decref(v);
    free(text);
}
END_TEST

START_TEST(string_valid_utf8_passes_through)
{
    ASSERT_ENCODES("caf\xc3\xa9", "\"caf\xc3\xa9\"");             /* 2 bytes */
    ASSERT_ENCODES("\xc2\x80", "\"\xc2\x80\"");                   /* U+0080 */
    ASSERT_ENCODES("\xe2\x82\xac 5", "\"\xe2\x82\xac 5\"");       /* euro, 3 */
    ASSERT_ENCODES("\xe0\xa0\x80", "\"\xe0\xa0\x80\"");           /* U+0800 */
    ASSERT_ENCODES("\xed\x9f\xbf", "\"\xed\x9f\xbf\"");           /* U+D7FF */
    ASSERT_ENCODES("\xee\x80\x80", "\"\xee\x80\x80\"");           /* U+E000 */
    ASSERT_ENCODES("\xef\xbf\xbd", "\"\xef\xbf\xbd\"");           /* U+FFFD */
    ASSERT_ENCODES("\xf0\x9f\x98\x80!", "\"\xf0\x9f\x98\x80!\""); /* emoji, 4 */
    ASSERT_ENCODES("\xf0\x90\x80\x80", "\"\xf0\x90\x80\x80\"");   /* U+10000 */
    ASSERT_ENCODES("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");   /* U+10FFFF */
}
END_TEST

START_TEST(string_lone_continuation_byte_is_replaced)
{
    ASSERT_ENCODES("a\x80z", "\"a\\ufffdz\"");
    ASSERT_ENCODES("\xbf", "\"\\ufffd\"");
}
END_TEST

START_TEST(string_byte_ff_is_replaced)
{
    ASSERT_ENCODES("\xff", "\"\\ufffd\"");
    ASSERT_ENCODES("\xfe\xff", "\"\\ufffd\\ufffd\"");
}
END_TEST

START_TEST(string_truncated_sequence_is_replaced)
{
    static const char *const inputs[] = {"a\xe2\x82",      "a\xe2\x82z", "a\xf0\x9f\x98",
                                         "a\xf0\x9f\x98z", "a\xc3",      "a\xc3z"};
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        char *text = encode(inputs[i], strlen(inputs[i]));
        assert_text_is_clean(text);
        ck_assert_ptr_nonnull(strstr(text, "\\ufffd"));
        free(text);
        assert_round_trip((const unsigned char *)inputs[i], strlen(inputs[i]));
    }
    ASSERT_ENCODES("\xc3", "\"\\ufffd\"");
}
END_TEST

START_TEST(string_overlong_encoding_is_replaced)
{
    ASSERT_ENCODES("\xc0\x80", "\"\\ufffd\\ufffd\""); /* overlong NUL */
    ASSERT_ENCODES("\xc1\xbf", "\"\\ufffd\\ufffd\"");
    char *text = encode("\xe0\x80\xaf", 3); /* overlong '/' */
    assert_text_is_clean(text);
    ck_assert_ptr_null(strchr(text, '/'));
    free(text);
    text = encode("\xf0\x80\x80\xaf", 4);
    ck_assert_ptr_null(strchr(text, '/'));
    free(text);
}
END_TEST

START_TEST(string_surrogate_is_replaced)
{
    ASSERT_ENCODES("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");             /* U+D800 */
    ASSERT_ENCODES("\xed\xbf\xbf", "\"\\ufffd\\ufffd\\ufffd\"");             /* U+DFFF */
    assert_round_trip((const unsigned char *)"\xed\xa0\xbd\xed\xb8\x80", 6); /* CESU pair */
}
END_TEST

START_TEST(string_above_u10ffff_is_replaced)
{
    ASSERT_ENCODES("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
    char *text = encode("\xf5\x80\x80\x80", 4);
    assert_text_is_clean(text);
    ck_assert_ptr_null(strstr(text, "\xf5"));
    free(text);
}
END_TEST

START_TEST(string_line_separators_are_escaped)
{
    ASSERT_ENCODES("a\xe2\x80\xa8"
                   "b",
                   "\"a\\u2028b\"");
    ASSERT_ENCODES("\xe2\x80\xa9", "\"\\u2029\"");
    ASSERT_ENCODES("\xe2\x80\xa7", "\"\xe2\x80\xa7\""); /* neighbours pass through */
    ASSERT_ENCODES("\xe2\x80\xaa", "\"\xe2\x80\xaa\"");
}
END_TEST

START_TEST(string_only_len_bytes_are_read)
{
    assert_encodes_to("abcdef", 3, "\"abc\"");
    assert_encodes_to("\xe2\x82\xac", 2, "\"\\ufffd\\ufffd\""); /* cut mid-sequence */
}
END_TEST

/* The escape of one byte standing alone, by the rules (the oracle of the test below). */
static void escape_of_lone_byte(unsigned char c, char *out)
{
    if (c >= 0x80)
        strcpy(out, "\\ufffd"); /* alone, never valid UTF-8 */
    else if (c == '"' || c == '\\')
        sprintf(out, "\\%c", c);
    else if (c == '\n' || c == '\r' || c == '\t')
        sprintf(out, "\\%c", c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
    else if (c < 0x20 || c == 0x7f)
        sprintf(out, "\\u%04x", c);
    else
        sprintf(out, "%c", c);
}

/* Plain bytes are copied eight at a time: every byte value, at every offset from the
 * 8-byte blocks and in strings of every length up to three blocks, must still be
 * escaped exactly as it is alone. */
START_TEST(string_block_copy_escapes_every_byte_at_every_offset)
{
    for (size_t len = 1; len <= 24; len++) {
        for (size_t at = 0; at < len; at++) {
            for (unsigned c = 0; c < 256; c++) {
                unsigned char in[24];
                memset(in, 'a', len);
                in[at] = (unsigned char)c;
                char escaped[8], expected[64];
                escape_of_lone_byte((unsigned char)c, escaped);
                snprintf(expected, sizeof expected, "\"%.*s%s%.*s\"", (int)at,
                         "aaaaaaaaaaaaaaaaaaaaaaaa", escaped, (int)(len - at - 1),
                         "aaaaaaaaaaaaaaaaaaaaaaaa");
                assert_encodes_to(in, len, expected);
            }
        }
    }
}
END_TEST

/* A string's last bytes are tested as its last eight, overlapping what was already
 * written, whose place shifts with every escape before it. Two escaped bytes at every
 * pair of offsets, in strings of every length up to three blocks, with escapes of
 * every length, must come out as each alone. */
START_TEST(string_tail_after_an_escape_is_escaped_exactly)
{
    static const unsigned char specials[] = {'"', 0x01, 0xff, '\n'};
    for (size_t len = 2; len <= 24; len++) {
        for (size_t first = 0; first < len; first++) {
            for (size_t second = first + 1; second < len; second++) {
                for (size_t k = 0; k < sizeof specials * sizeof specials; k++) {
                    unsigned char in[24];
                    memset(in, 'b', len);
                    in[first] = specials[k % sizeof specials];
                    in[second] = specials[k / sizeof specials];
                    char one[8], two[8], expected[96];
                    escape_of_lone_byte(in[first], one);
                    escape_of_lone_byte(in[second], two);
                    snprintf(expected, sizeof expected, "\"%.*s%s%.*s%s%.*s\"", (int)first,
                             "bbbbbbbbbbbbbbbbbbbbbbbb", one, (int)(second - first - 1),
                             "bbbbbbbbbbbbbbbbbbbbbbbb", two, (int)(len - second - 1),
                             "bbbbbbbbbbbbbbbbbbbbbbbb");
                    assert_encodes_to(in, len, expected);
                }
            }
        }
    }
}
END_TEST

/* Every single byte value gives one JSON string that jansson reads back. */
START_TEST(string_every_single_byte_is_valid_json)
{
    for (int c = 0; c < 256; c++) {
        unsigned char byte = (unsigned char)c;
        char *text = encode(&byte, 1);
        assert_text_is_clean(text);
        json_t *v = parse_string(text);
        if (c < 0x80) {
            ck_assert_uint_eq(json_string_length(v), 1);
            ck_assert_int_eq((unsigned char)json_string_value(v)[0], c);
        } else {
            ck_assert_str_eq(json_string_value(v), replacement);
        }
        json_decref(v);

        char expected[16];
        if (c == '"')
            strcpy(expected, "\"\\\"\"");
        else if (c == '\\')
            strcpy(expected, "\"\\\\\"");
        else if (c == '\n')
            strcpy(expected, "\"\\n\"");
        else if (c == '\r')
            strcpy(expected, "\"\\r\"");
        else if (c == '\t')
            strcpy(expected, "\"\\t\"");
        else if (c < 0x20 || c == 0x7f)
            snprintf(expected, sizeof expected, "\"\\u%04x\"", (unsigned)c);
        else if (c >= 0x80)
            strcpy(expected, "\"\\ufffd\"");
        else
            snprintf(expected, sizeof expected, "\"%c\"", c);
        ck_assert_msg(strcmp(text, expected) == 0, "byte 0x%02x: %s, expected %s", c, text,
                      expected);
        free(text);
    }
}
END_TEST

/* Every pair of bytes from a set that covers all the interesting lead/continuation
 * classes. */
START_TEST(string_byte_pairs_are_valid_json)
{
    static const unsigned char interesting[] = {0x00, 0x0a, 0x22, 0x41, 0x5c, 0x7f, 0x80, 0x8f,
                                                0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf,
                                                0xe0, 0xe2, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
    for (size_t i = 0; i < sizeof interesting; i++) {
        for (size_t j = 0; j < sizeof interesting; j++) {
            unsigned char s[2] = {interesting[i], interesting[j]};
            assert_round_trip(s, sizeof s);
        }
    }
}
END_TEST

/* ---- strings: random inputs ---------------------------------------------------------- */

static uint64_t rng_state;

static uint32_t rng_next(void)
{
    /* xorshift64*: deterministic across platforms and libc versions */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ULL) >> 32);
}

static size_t put_utf8(unsigned char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A random string mixing raw bytes, printable ASCII, controls and valid characters
 * (including U+2028/9 and surrogate code points encoded as if they were characters). */
static size_t random_string(unsigned char *out, size_t max)
{
    size_t len = 0;
    size_t want = rng_next() % max;
    while (len + 4 <= want) {
        uint32_t kind = rng_next() % 10;
        if (kind < 3) {
            out[len++] = (unsigned char)rng_next();
        } else if (kind < 5) {
            out[len++] = (unsigned char)(0x20 + rng_next() % 0x5f);
        } else if (kind == 5) {
            out[len++] = (unsigned char)(rng_next() % 0x20);
        } else if (kind == 6) {
            len += put_utf8(out + len, 0x2028 + rng_next() % 2);
        } else if (kind == 7) {
            len += put_utf8(out + len, 0xd800 + rng_next() % 0x800); /* ill-formed */
        } else {
            uint32_t cp = rng_next() % 0x110000;
            len += put_utf8(out + len, cp);
        }
    }
    return len;
}

#define RANDOM_STRINGS 5000
#define RANDOM_MAX_LEN 96

START_TEST(string_random_byte_strings_are_valid_json)
{
    rng_state = 0x9e3779b97f4a7c15ULL; /* fixed seed: failures reproduce */
    unsigned char s[RANDOM_MAX_LEN];
    for (int i = 0; i < RANDOM_STRINGS; i++) {
        size_t len;
        if (i % 2) {
            len = rng_next() % RANDOM_MAX_LEN; /* pure random bytes */
            for (size_t k = 0; k < len; k++)
                s[k] = (unsigned char)rng_next();
        } else {
            len = random_string(s, RANDOM_MAX_LEN);
        }
        assert_round_trip(s, len);
    }
}
END_TEST

/* A long string that needs escaping everywhere grows well past the caller storage. */
START_TEST(string_long_escaped_input_grows_the_buffer)
{
    enum { N = 20000 };
    char *s = malloc(N);
    ck_assert_ptr_nonnull(s);
    size_t expected_len = 2;
    for (size_t i = 0; i < N; i++) {
        s[i] = (char)(i % 3 == 0 ? '\x01' : i % 3 == 1 ? '"' : '\xff');
        expected_len += i % 3 == 1 ? 2 : 6; /* \" or \u0001 / \ufffd */
    }
    char *text = encode(s, N);
    ck_assert_uint_eq(strlen(text), expected_len);
    json_t *v = parse_string(text);
    json_decref(v);
    free(text);
    free(s);
}
END_TEST

/* Input is escaped in chunks of 256 bytes: a UTF-8 sequence or an escape that
 * straddles a chunk's end, at each offset, reads back as the input. */
START_TEST(string_sequences_across_chunk_ends_read_back)
{
    static const char *const pieces[] = {"\xf0\x9f\x98\x80", "\xe2\x82\xac", "\xc3\xa9", "\"",
                                         "\x01"};
    for (size_t p = 0; p < sizeof pieces / sizeof *pieces; p++) {
        for (size_t at = 248; at <= 264; at++) {
            char s[600];
            size_t plen = strlen(pieces[p]);
            memset(s, 'a', at);
            memcpy(s + at, pieces[p], plen);
            memset(s + at + plen, 'b', 300);
            size_t len = at + plen + 300;
            char *text = encode(s, len);
            json_t *v = parse_string(text);
            ck_assert_uint_eq(json_string_length(v), len);
            ck_assert_msg(memcmp(json_string_value(v), s, len) == 0, "piece %zu at %zu", p, at);
            json_decref(v);
            free(text);
        }
    }
}
END_TEST

/* ---- numbers ------------------------------------------------------------------------- */

#define WRITE_TO_TEXT(call, out)                                                               \
    do {                                                                                       \
        mhdctx__buf b_;                                                                        \
        mhdctx__buf_init(&b_, NULL, 0);                                                        \
        call;                                                                                  \
        ck_assert(!b_.failed);                                                                 \
        ck_assert_uint_lt(b_.len, sizeof(out));                                                \
        memcpy(out, b_.data, b_.len);                                                          \
        (out)[b_.len] = '\0';                                                                  \
        mhdctx__buf_release(&b_);                                                              \
    } while (0)

START_TEST(json_int_extremes)
{
    char text[64];
    WRITE_TO_TEXT(mhdctx__json_int(&b_, LLONG_MIN), text);
    ck_assert_str_eq(text, "-9223372036854775808");
    WRITE_TO_TEXT(mhdctx__json_int(&b_, LLONG_MAX), text);
    ck_assert_str_eq(text, "9223372036854775807");
    WRITE_TO_TEXT(mhdctx__json_int(&b_, 0), text);
    ck_assert_str_eq(text, "0");
    WRITE_TO_TEXT(mhdctx__json_int(&b_, -1), text);
    ck_assert_str_eq(text, "-1");
    WRITE_TO_TEXT(mhdctx__json_int(&b_, 1234567), text);
    ck_assert_str_eq(text, "1234567");
}
END_TEST

START_TEST(json_uint_extremes)
{
    char text[64];
    WRITE_TO_TEXT(mhdctx__json_uint(&b_, 0), text);
    ck_assert_str_eq(text, "0");
    WRITE_TO_TEXT(mhdctx__json_uint(&b_, ULLONG_MAX), text);
    ck_assert_str_eq(text, "18446744073709551615");
    WRITE_TO_TEXT(mhdctx__json_uint(&b_, 10), text);
    ck_assert_str_eq(text, "10");
}
END_TEST

START_TEST(json_double_prints_short_decimals_as_written)
{
    char text[64];
    WRITE_TO_TEXT(mhdctx__json_double(&b_, 1.234), text);
    ck_assert_str_eq(text, "1.234");
    WRITE_TO_TEXT(mhdctx__json_double(&b_, 0.1), text);
    ck_assert_str_eq(text, "0.1");
    WRITE_TO_TEXT(mhdctx__json_double(&b_, -2.5), text);
    ck_assert_str_eq(text, "-2.5");
    WRITE_TO_TEXT(mhdctx__json_double(&b_, 0.0), text);
    ck_assert_str_eq(text, "0");
}
END_TEST

/* Durations take a fast path (thousandths); it must write what printf's %.15g writes
 * and read back as the same double, across signs, magnitudes and fractions. */
START_TEST(json_double_thousandths_match_printf)
{
    char text[64], expected[64];
    for (long long k = -3000000; k <= 3000000; k += 97) {
        double v = (double)k / 1000.0;
        WRITE_TO_TEXT(mhdctx__json_double(&b_, v), text);
        snprintf(expected, sizeof expected, "%.15g", v);
        ck_assert_msg(strcmp(text, expected) == 0, "%lld/1000: %s, printf %s", k, text,
                      expected);
        ck_assert(strtod(text, NULL) == v);
    }
    static const double edges[] = {
        999999999999.999, -999999999999.999, 0.001, -0.001, 0.0005, 1e-4, 12.3456, 1e12, -0.0};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) {
        WRITE_TO_TEXT(mhdctx__json_double(&b_, edges[i]), text);
        snprintf(expected, sizeof expected, "%.15g", edges[i]);
        ck_assert_msg(strcmp(text, expected) == 0, "%.17g: %s, printf %s", edges[i], text,
                      expected);
    }
}
END_TEST

/* The access line's duration: integer thousandths written as the double path writes
 * k / 1000 (which matches printf), up to the largest count of microseconds. */
START_TEST(json_thousandths_write_as_the_double_would)
{
    char text[64], expected[64];
    for (unsigned long long k = 0; k <= 3000000; k += 89) {
        WRITE_TO_TEXT(mhdctx__json_thousandths(&b_, k), text);
        WRITE_TO_TEXT(mhdctx__json_double(&b_, (double)k / 1000.0), expected);
        ck_assert_msg(strcmp(text, expected) == 0, "%llu: %s, double %s", k, text, expected);
    }
    WRITE_TO_TEXT(mhdctx__json_thousandths(&b_, 1500), text);
    ck_assert_str_eq(text, "1.5");
    WRITE_TO_TEXT(mhdctx__json_thousandths(&b_, 2000), text);
    ck_assert_str_eq(text, "2");
    WRITE_TO_TEXT(mhdctx__json_thousandths(&b_, 7), text);
    ck_assert_str_eq(text, "0.007");
    WRITE_TO_TEXT(mhdctx__json_thousandths(&b_, ULLONG_MAX), text);
    ck_assert_str_eq(text, "18446744073709551.615");
}
END_TEST

START_TEST(json_double_nan_and_infinity_are_null)
{
    char text[64];
    WRITE_TO_TEXT(mhdctx__json_double(&b_, NAN), text);
    ck_assert_str_eq(text, "null");
    WRITE_TO_TEXT(mhdctx__json_double(&b_, INFINITY), text);
    ck_assert_str_eq(text, "null");
    WRITE_TO_TEXT(mhdctx__json_double(&b_, -INFINITY), text);
    ck_assert_str_eq(text, "null");
}
END_TEST

START_TEST(json_double_is_always_a_json_number)
{
    static const double values[] = {1e300,
                                    -1e-300,
                                    1e-7,
                                    123456789012345678.0,
                                    5e-324,
                                    1.7976931348623e308,
                                    3.14159265358979,
                                    -0.0};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        char text[64];
        WRITE_TO_TEXT(mhdctx__json_double(&b_, values[i]), text);
        json_error_t err;
        json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
        ck_assert_msg(v != NULL && json_is_number(v), "%g wrote %s", values[i], text);
        ck_assert_double_eq_tol(json_number_value(v), values[i],
                                fabs(values[i]) * 1e-14 + 1e-320);
        json_decref(v);
    }
}
END_TEST

/* A locale of the application's whose decimal point is not '.' - "," (de_DE), or the
 * two bytes of U+066B (ps_AF) - still gives JSON numbers. The locales are compiled
 * from glibc's sources (Debian's "locales") into a directory of the test's own. */
static const char *const locale_names[] = {"de_DE", "ps_AF"};
static const struct {
    double v;
    const char *text;
} locale_cases[] = {{1.23456, "1.23456"}, {-0.0001, "-0.0001"}, {1e-7, "1e-07"}, {2.5, "2.5"}};

/* Reals that go through jansson, under the thread's locale: a JSON field, a user key
 * set (its text is made once, by jansson), and a context imported and exported again
 * (jansson parses the document). jansson 2.14 alone wrote "1.\xab5" under ps_AF, and
 * its parser aborted the process. */
static void write_jansson_reals(int fd)
{
    mhdctx__buf b;
    mhdctx__buf_init(&b, NULL, 0);
    json_t *pair = json_pack("[f,f]", 1.5, 0.25);
    mhdctx__json_value(&b, pair);
    json_decref(pair);
    dprintf(fd, "%.*s\n", (int)b.len, b.data ? b.data : "");
    mhdctx__buf_release(&b);
    static const char doc[] =
        "{\"v\":1,\"request_id\":\"r-1\",\"user_id\":null,\"roles\":[],"
        "\"keys\":{\"r\":2.5},\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
        "\"span_id\":\"00f067aa0ba902b7\",\"parent_span_id\":\"\",\"trace_flags\":\"01\","
        "\"tracestate\":\"\"}";
    mhdctx_context *ctx = mhdctx_context_import(doc, sizeof doc - 1, NULL);
    char *text = NULL;
    if (ctx && mhdctx_set_new(ctx, "s", json_real(0.5)) == MHDCTX_OK)
        text = mhdctx_context_export(ctx);
    dprintf(fd, "keys %s %s\n", text && strstr(text, "\"r\":2.5") ? "2.5" : "-",
            text && strstr(text, "\"s\":0.5") ? "0.5" : "-");
    free(text);
    mhdctx_context_unref(ctx);
}

/* In a child, with the locales compiled into @dir: under each locale, printf's "%g" of
 * 1.5 and then what mhdctx__json_double writes for each case, one per line, and then
 * write_jansson_reals()'s lines, into @fd.
 * In a child because glibc's newlocale() leaks its copy of LOCPATH (42 bytes a call,
 * glibc 2.36), which the leak checkers would blame on the test. */
static int write_numbers_in_locales(void *dir, int fd)
{
    setenv("LOCPATH", dir, 1);
    for (size_t l = 0; l < sizeof locale_names / sizeof *locale_names; l++) {
        char name[32];
        snprintf(name, sizeof name, "%s.UTF-8", locale_names[l]);
        locale_t loc = newlocale(LC_ALL_MASK, name, (locale_t)0);
        if (loc == (locale_t)0)
            return 2;
        locale_t before = uselocale(loc);
        dprintf(fd, "%g\n", 1.5);
        for (size_t i = 0; i < sizeof locale_cases / sizeof *locale_cases; i++) {
            mhdctx__buf b;
            mhdctx__buf_init(&b, NULL, 0);
            mhdctx__json_double(&b, locale_cases[i].v);
            dprintf(fd, "%.*s\n", (int)b.len, b.data ? b.data : "");
            mhdctx__buf_release(&b);
        }
        write_jansson_reals(fd);
        uselocale(before);
        freelocale(loc);
    }
    return 0;
}

START_TEST(json_double_in_locales_with_another_decimal_point)
{
    char dir[32];
    test_locales_make(dir, locale_names, sizeof locale_names / sizeof *locale_names);
    char got[1024] = "";
    size_t len = 0;
    /* Under valgrind the child's exit status counts the leak above: the lines say it all. */
    child_output(write_numbers_in_locales, dir, got, sizeof got - 1, &len);
    got[len] = '\0';
    char want[1024] = "";
    for (size_t l = 0; l < sizeof locale_names / sizeof *locale_names; l++) {
        /* printf itself writes the locale's point: the locale is in force. */
        strcat(want, strcmp(locale_names[l], "de_DE") == 0 ? "1,5\n"
                                                           : "1\xd9\xab"
                                                             "5\n");
        for (size_t i = 0; i < sizeof locale_cases / sizeof *locale_cases; i++) {
            strcat(want, locale_cases[i].text);
            strcat(want, "\n");
        }
        strcat(want, "[1.5,0.25]\nkeys 2.5 0.5\n"); /* write_jansson_reals */
    }
    ck_assert_str_eq(got, want);
    test_locales_remove(dir);
}
END_TEST

/* The largest finite doubles must not print as a number that overflows on reading
 * (a reader like jansson then refuses the whole log line). */
START_TEST(json_double_max_finite_reads_back_finite)
{
    static const double values[] = {DBL_MAX, -DBL_MAX, 1.797693134862315e308};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        char text[64];
        WRITE_TO_TEXT(mhdctx__json_double(&b_, values[i]), text);
        json_error_t err;
        json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
        ck_assert_msg(v != NULL, "%.17g wrote %s, which jansson refuses: %s", values[i], text,
                      err.text);
        ck_assert(isfinite(json_number_value(v)));
        json_decref(v);
    }
}
END_TEST

/* ---- keys and values ----------------------------------------------------------------- */

START_TEST(json_key_adds_comma_only_after_a_member)
{
    char text[128];
    WRITE_TO_TEXT((mhdctx__buf_putc(&b_, '{'), mhdctx__json_key(&b_, "a"),
                   mhdctx__json_int(&b_, 1), mhdctx__json_key(&b_, "b"),
                   mhdctx__buf_puts(&b_, "true"), mhdctx__json_key(&b_, "c"),
                   mhdctx__buf_putc(&b_, '{'), mhdctx__json_key(&b_, "d"),
                   mhdctx__json_string(&b_, "x", 1), mhdctx__buf_putc(&b_, '}'),
                   mhdctx__buf_putc(&b_, '}')),
                  text);
    ck_assert_str_eq(text, "{\"a\":1,\"b\":true,\"c\":{\"d\":\"x\"}}");
    json_t *v = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(v);
    json_decref(v);
}
END_TEST

START_TEST(json_key_on_empty_buffer_has_no_comma)
{
    char text[64];
    WRITE_TO_TEXT(mhdctx__json_key(&b_, "k"), text);
    ck_assert_str_eq(text, "\"k\":");
}
END_TEST

START_TEST(json_key_is_escaped)
{
    char text[64];
    WRITE_TO_TEXT((mhdctx__buf_putc(&b_, '{'), mhdctx__json_key(&b_, "a\"b\n")), text);
    ck_assert_str_eq(text, "{\"a\\\"b\\n\":");
}
END_TEST

START_TEST(json_value_writes_compact_ascii_json)
{
    char text[128];
    json_t *v = json_pack("{s:[i,s,b,n]}", "a", 1, "caf\xc3\xa9", 1);
    ck_assert_ptr_nonnull(v);
    WRITE_TO_TEXT(mhdctx__json_value(&b_, v), text);
    /* jansson spells the escape \u00e9 or \u00E9 depending on its version */
    ck_assert_int_eq(strcasecmp(text, "{\"a\":[1,\"caf\\u00e9\",true,null]}"), 0);
    json_t *back = json_loads(text, 0, NULL);
    ck_assert(json_equal(back, v));
    json_decref(back);
    json_decref(v);
    WRITE_TO_TEXT(mhdctx__json_value(&b_, NULL), text);
    ck_assert_str_eq(text, "null");
    v = json_string("x\ny");
    WRITE_TO_TEXT(mhdctx__json_value(&b_, v), text);
    ck_assert_str_eq(text, "\"x\\ny\"");
    json_decref(v);
}
END_TEST

/* ---- the buffer ---------------------------------------------------------------------- */

START_TEST(buf_stays_in_caller_storage_while_it_fits)
{
    char storage[8];
    mhdctx__buf b;
    mhdctx__buf_init(&b, storage, sizeof storage);
    mhdctx__buf_put(&b, "12345678", 8);
    ck_assert_ptr_eq(b.data, storage);
    ck_assert(!b.on_heap);
    ck_assert_uint_eq(b.len, 8);
    ck_assert_mem_eq(storage, "12345678", 8);
    mhdctx__buf_release(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
}
END_TEST

START_TEST(buf_moves_to_heap_and_keeps_content)
{
    char storage[8];
    mhdctx__buf b;
    mhdctx__buf_init(&b, storage, sizeof storage);
    mhdctx__buf_puts(&b, "abcdef");
    ck_assert_ptr_eq(b.data, storage);
    mhdctx__buf_puts(&b, "ghij"); /* 10 bytes: no longer fits */
    ck_assert(b.on_heap);
    ck_assert_ptr_ne(b.data, storage);
    ck_assert_uint_eq(b.len, 10);
    ck_assert_uint_ge(b.cap, 10);
    ck_assert_mem_eq(b.data, "abcdefghij", 10);
    for (int i = 0; i < 10000; i++) /* keeps growing on the heap */
        mhdctx__buf_putc(&b, (char)('0' + i % 10));
    ck_assert_uint_eq(b.len, 10010);
    ck_assert_uint_ge(b.cap, b.len);
    ck_assert_mem_eq(b.data, "abcdefghij0123456789", 20);
    ck_assert_int_eq(b.data[10009], '9');
    ck_assert(!b.failed);
    mhdctx__buf_release(&b); /* frees: valgrind/ASan check it */
    ck_assert_ptr_null(b.data);
    ck_assert(!b.on_heap);
}
END_TEST

START_TEST(buf_without_storage_allocates_on_first_put)
{
    mhdctx__buf b;
    mhdctx__buf_init(&b, NULL, 0);
    ck_assert_uint_eq(b.cap, 0);
    mhdctx__buf_putc(&b, 'x');
    ck_assert(b.on_heap);
    ck_assert_uint_eq(b.len, 1);
    ck_assert_int_eq(b.data[0], 'x');
    mhdctx__buf_release(&b);
}
END_TEST

START_TEST(buf_impossible_reserve_fails_and_sticks)
{
    char storage[8];
    mhdctx__buf b;
    mhdctx__buf_init(&b, storage, sizeof storage);
    mhdctx__buf_puts(&b, "abc");
    ck_assert(!mhdctx__buf_reserve(&b, SIZE_MAX));
    ck_assert(b.failed);
    mhdctx__buf_puts(&b, "d"); /* ignored once failed */
    ck_assert_uint_eq(b.len, 3);
    ck_assert(!mhdctx__buf_reserve(&b, 1));
    mhdctx__buf_release(&b);
    ck_assert(!b.failed);
}
END_TEST

START_TEST(buf_release_after_heap_failure_frees)
{
    mhdctx__buf b;
    mhdctx__buf_init(&b, NULL, 0);
    mhdctx__buf_put(&b, "0123456789", 10);
    ck_assert(b.on_heap);
    ck_assert(!mhdctx__buf_reserve(&b, SIZE_MAX - 4));
    ck_assert(b.failed);
    mhdctx__buf_release(&b); /* still frees the heap block */
    ck_assert_ptr_null(b.data);
}
END_TEST

/* ---- suite ---------------------------------------------------------------------------- */

static Suite *json_write_suite(void)
{
    Suite *s = suite_create("json_write");

    TCase *tc = tcase_create("string");
    tcase_add_test(tc, string_plain_ascii_is_copied);
    tcase_add_test(tc, string_quote_and_backslash_are_escaped);
    tcase_add_test(tc, string_newline_cr_tab_use_short_escapes);
    tcase_add_test(tc, string_other_controls_use_u00xx);
    tcase_add_test(tc, string_del_is_u007f);
    tcase_add_test(tc, string_embedded_nul_is_u0000);
    tcase_add_test(tc, string_valid_utf8_passes_through);
    tcase_add_test(tc, string_lone_continuation_byte_is_replaced);
    tcase_add_test(tc, string_byte_ff_is_replaced);
    tcase_add_test(tc, string_truncated_sequence_is_replaced);
    tcase_add_test(tc, string_overlong_encoding_is_replaced);
    tcase_add_test(tc, string_surrogate_is_replaced);
    tcase_add_test(tc, string_above_u10ffff_is_replaced);
    tcase_add_test(tc, string_line_separators_are_escaped);
    tcase_add_test(tc, string_only_len_bytes_are_read);
    tcase_add_test(tc, string_tail_after_an_escape_is_escaped_exactly);
    suite_add_tcase(s, tc);

    tc = tcase_create("string_exhaustive");
    tcase_set_timeout(tc, 120);
    /* 256 bytes x every offset: seconds on a busy machine, past the default 4 s */
    tcase_add_test(tc, string_block_copy_escapes_every_byte_at_every_offset);
    tcase_add_test(tc, string_every_single_byte_is_valid_json);
    tcase_add_test(tc, string_byte_pairs_are_valid_json);
    tcase_add_test(tc, string_random_byte_strings_are_valid_json);
    tcase_add_test(tc, string_long_escaped_input_grows_the_buffer);
    tcase_add_test(tc, string_sequences_across_chunk_ends_read_back);
    suite_add_tcase(s, tc);

    tc = tcase_create("locales"); /* localedef takes seconds per locale */
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, json_double_in_locales_with_another_decimal_point);
    suite_add_tcase(s, tc);

    tc = tcase_create("numbers");
    tcase_add_test(tc, json_int_extremes);
    tcase_add_test(tc, json_uint_extremes);
    tcase_add_test(tc, json_double_prints_short_decimals_as_written);
    tcase_add_test(tc, json_double_thousandths_match_printf);
    tcase_add_test(tc, json_thousandths_write_as_the_double_would);
    tcase_add_test(tc, json_double_nan_and_infinity_are_null);
    tcase_add_test(tc, json_double_is_always_a_json_number);
    tcase_add_test(tc, json_double_max_finite_reads_back_finite);
    suite_add_tcase(s, tc);

    tc = tcase_create("keys_values");
    tcase_add_test(tc, json_key_adds_comma_only_after_a_member);
    tcase_add_test(tc, json_key_on_empty_buffer_has_no_comma);
    tcase_add_test(tc, json_key_is_escaped);
    tcase_add_test(tc, json_value_writes_compact_ascii_json);
    suite_add_tcase(s, tc);

    tc = tcase_create("buf");
    tcase_add_test(tc, buf_stays_in_caller_storage_while_it_fits);
    tcase_add_test(tc, buf_moves_to_heap_and_keeps_content);
    tcase_add_test(tc, buf_without_storage_allocates_on_first_put);
    tcase_add_test(tc, buf_impossible_reserve_fails_and_sticks);
    tcase_add_test(tc, buf_release_after_heap_failure_frees);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(json_write_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failures = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failures ? 1 : 0;
}
