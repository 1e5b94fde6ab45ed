/*
 * json_write.c - JSON encoding for log lines, written by hand because it runs for every
 * line: jansson would allocate a tree per line. Strings are validated as UTF-8 on the
 * way, so no byte a client sent can leave the escaping.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char hex_digits[] = "0123456789abcdef";

static void put_u_escape(mhdctx__buf *b, unsigned code)
{
    char esc[6] = {'\\', 'u', hex_digits[(code >> 12) & 0xf], hex_digits[(code >> 8) & 0xf],
                   hex_digits[(code >> 4) & 0xf], hex_digits[code & 0xf]};
    mhdctx__buf_put(b, esc, sizeof esc);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not valid
 * (overlong forms, surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_sequence(const unsigned char *s, size_t left, unsigned *code)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, min = 0x80, c &= 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, min = 0x800, c &= 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, min = 0x10000, c &= 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *code = c;
    return n;
}

static bool needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\' || c >= 0x7f;
}

static void put_escaped_ascii(mhdctx__buf *b, unsigned char c)
{
    switch (c) {
    case '"':
        mhdctx__buf_put(b, "\\\"", 2);
        break;
    case '\\':
        mhdctx__buf_put(b, "\\\\", 2);
        break;
    case '\n':
        mhdctx__buf_put(b, "\\n", 2);
        break;
    case '\r':
        mhdctx__buf_put(b, "\\r", 2);
        break;
    case '\t':
        mhdctx__buf_put(b, "\\t", 2);
        break;
    default: /* other controls and DEL */
        put_u_escape(b, c);
    }
}

void mhdctx__json_string(mhdctx__buf *b, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    mhdctx__buf_putc(b, '"');
    while (i < len) {
        size_t run = i; /* copy runs of plain ASCII in one go */
        while (run < len && !needs_escape(s[run]))
            run++;
        mhdctx__buf_put(b, str + i, run - i);
        i = run;
        if (i >= len)
            break;
        if (s[i] < 0x80) {
            put_escaped_ascii(b, s[i]);
            i++;
            continue;
        }
        unsigned code;
        size_t n = utf8_sequence(s + i, len - i, &code);
        if (n == 0) {
            put_u_escape(b, 0xfffd); /* invalid byte: replacement character */
            i++;
        } else if (code == 0x2028 || code == 0x2029) {
            put_u_escape(b, code); /* line separators break JavaScript readers */
            i += n;
        } else {
            mhdctx__buf_put(b, str + i, n);
            i += n;
        }
    }
    mhdctx__buf_putc(b, '"');
}

void mhdctx__json_key(mhdctx__buf *b, const char *key)
{
    if (b->len > 0 && b->data[b->len - 1] != '{')
        mhdctx__buf_putc(b, ',');
    mhdctx__json_string(b, key, strlen(key));
    mhdctx__buf_putc(b, ':');
}

void mhdctx__json_uint(mhdctx__buf *b, unsigned long long v)
{
    char digits[24];
    size_t n = 0;
    do {
        digits[sizeof digits - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    mhdctx__buf_put(b, digits + sizeof digits - n, n);
}

void mhdctx__json_int(mhdctx__buf *b, long long v)
{
    if (v < 0) {
        mhdctx__buf_putc(b, '-');
        mhdctx__json_uint(b, 0ULL - (unsigned long long)v);
    } else {
        mhdctx__json_uint(b, (unsigned long long)v);
    }
}

void mhdctx__json_double(mhdctx__buf *b, double v)
{
    if (!isfinite(v)) { /* JSON has no NaN or Infinity */
        mhdctx__buf_put(b, "null", 4);
        return;
    }
    /* 15 significant digits keep short decimals short (1.234 stays 1.234); when they do
     * not read back as the same double (DBL_MAX would round up past the largest
     * finite value), 17 always do. */
    char text[32];
    int n = snprintf(text, sizeof text, "%.15g", v);
    if (n > 0 && strtod(text, NULL) != v)
        n = snprintf(text, sizeof text, "%.17g", v);
    if (n <= 0 || (size_t)n >= sizeof text)
        return;
    for (int i = 0; i < n; i++) {
        if (text[i] == ',') /* a locale whose decimal point is a comma */
            text[i] = '.';
    }
    mhdctx__buf_put(b, text, (size_t)n);
}

static int dump_callback(const char *chunk, size_t size, void *data)
{
    mhdctx__buf_put(data, chunk, size);
    return 0;
}

void mhdctx__json_value(mhdctx__buf *b, const json_t *v)
{
    if (v == NULL) {
        mhdctx__buf_put(b, "null", 4);
        return;
    }
    /* JSON_ENSURE_ASCII: jansson escapes every non-ASCII character, and it refuses
     * invalid UTF-8 at construction, so the output is always valid JSON. */
    size_t start = b->len;
    if (json_dump_callback(v, dump_callback, b,
                           JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII) != 0) {
        /* Out of memory (or a value that contains itself): jansson may have written
         * part of it. Never a value that is not the caller's: the line is dropped. */
        b->len = start;
        b->failed = true;
    }
}

bool mhdctx__utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned code;
        size_t n = p[i] < 0x80 ? 1 : utf8_sequence(p + i, len - i, &code);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}
