/*
 * json_write.c - JSON encoding for log lines, written by hand because it runs for every
 * line: jansson would allocate a tree per line. Strings are validated as UTF-8 on the
 * way, so no byte a client sent can leave the escaping.
 */
#include "internal.h"

#include <langinfo.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char hex_digits[] = "0123456789abcdef";

/* Writes \uXXXX at @out; returns the bytes written (6). */
static size_t u_escape(char *out, unsigned code)
{
    out[0] = '\\';
    out[1] = 'u';
    out[2] = hex_digits[(code >> 12) & 0xf];
    out[3] = hex_digits[(code >> 8) & 0xf];
    out[4] = hex_digits[(code >> 4) & 0xf];
    out[5] = hex_digits[code & 0xf];
    return 6;
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

/* 1 for the bytes that are copied as they are: printable ASCII but '"' and '\\'. */
#define PLAIN4(c) ((c) >= 0x20 && (c) < 0x7f && (c) != '"' && (c) != '\\')
#define PLAIN_ROW(r)                                                                           \
    PLAIN4(r + 0), PLAIN4(r + 1), PLAIN4(r + 2), PLAIN4(r + 3), PLAIN4(r + 4), PLAIN4(r + 5),  \
        PLAIN4(r + 6), PLAIN4(r + 7), PLAIN4(r + 8), PLAIN4(r + 9), PLAIN4(r + 10),            \
        PLAIN4(r + 11), PLAIN4(r + 12), PLAIN4(r + 13), PLAIN4(r + 14), PLAIN4(r + 15)
static const unsigned char plain_byte[256] = {PLAIN_ROW(0x00), PLAIN_ROW(0x10), PLAIN_ROW(0x20),
                                              PLAIN_ROW(0x30), PLAIN_ROW(0x40), PLAIN_ROW(0x50),
                                              PLAIN_ROW(0x60), PLAIN_ROW(0x70)};

/* The escape of an ASCII byte that is not plain, written at @out; returns its length. */
static size_t escape_ascii(char *out, unsigned char c)
{
    char short_form = c == '"'    ? '"'
                      : c == '\\' ? '\\'
                      : c == '\n' ? 'n'
                      : c == '\r' ? 'r'
                      : c == '\t' ? 't'
                                  : 0;
    if (short_form == 0)
        return u_escape(out, c); /* other controls and DEL */
    out[0] = '\\';
    out[1] = short_form;
    return 2;
}

/* Escapes one non-plain character at s[*i] into @out; returns the bytes written. */
static size_t escape_at(char *out, const unsigned char *s, size_t len, size_t *i)
{
    if (s[*i] < 0x80)
        return escape_ascii(out, s[(*i)++]);
    unsigned code;
    size_t n = utf8_sequence(s + *i, len - *i, &code);
    if (n == 0) {
        (*i)++;
        return u_escape(out, 0xfffd); /* invalid byte: replacement character */
    }
    *i += n;
    if (code == 0x2028 || code == 0x2029)
        return u_escape(out, code); /* line separators break JavaScript readers */
    memcpy(out, s + *i - n, n);
    return n;
}

/* Whether all 8 bytes at @s are plain, tested at once (SWAR): most of what a log line
 * carries is plain ASCII, and a byte at a time is the line's largest cost. Each test
 * is the classic "has a zero byte" (x - 0x01..) & ~x & 0x80.., exact as a whole for
 * bytes below 0x80; a byte at or above 0x80 sets its own top bit. */
static inline bool plain8(const unsigned char *s)
{
    const uint64_t ones = 0x0101010101010101u, tops = 0x8080808080808080u;
    uint64_t w;
    memcpy(&w, s, sizeof w);
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\'), del = w ^ (ones * 0x7f);
    uint64_t control = (w - ones * 0x20) & ~w;
    uint64_t special =
        ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) | ((del - ones) & ~del);
    return ((control | special | w) & tops) == 0;
}

/* Input is taken in chunks so that the worst case (6 output bytes per input byte) can
 * be reserved once per chunk, and the loop below writes without bounds checks. */
#define CHUNK 256
/* Room for the worst case of @n input bytes, a UTF-8 sequence that runs 3 bytes past
 * them, and the closing quote. */
#define ROOM(n) ((n)*6 + 8)

/* Escapes @s from *@i up to @stop (or up to 3 bytes past it, to end a UTF-8
 * sequence) at @out; returns the end of what it wrote. Fewer than 8 bytes before @stop
 * are tested as the last 8 bytes of the run, overlapping what was written: a short
 * string's tail costs one test, not one per byte. When all 8 are plain, those already
 * written were copied as they are, so they sit right behind @out. */
static char *escape_run(char *out, const unsigned char *s, size_t len, size_t *i, size_t stop)
{
    size_t start = *i, at = start;
    while (at < stop) {
        if (at + 8 <= stop) {
            if (plain8(s + at)) {
                memcpy(out, s + at, 8);
                out += 8;
                at += 8;
                continue;
            }
        } else if (stop - start >= 8 && plain8(s + stop - 8)) {
            memcpy(out - (at - (stop - 8)), s + stop - 8, 8);
            out += stop - at;
            at = stop;
            break;
        }
        if (plain_byte[s[at]])
            *out++ = (char)s[at++];
        else
            out += escape_at(out, s, len, &at);
    }
    *i = at;
    return out;
}

void mhdctx__json_string(mhdctx__buf *b, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    size_t stop = len < CHUNK ? len : CHUNK;
    /* one reservation covers the quotes and a short string whole: most are */
    if (!mhdctx__buf_reserve(b, 1 + ROOM(stop)))
        return;
    char *out = b->data + b->len;
    *out++ = '"';
    for (;;) {
        out = escape_run(out, s, len, &i, stop);
        if (i >= len)
            break;
        b->len = (size_t)(out - b->data);
        stop = len - i < CHUNK ? len : i + CHUNK;
        if (!mhdctx__buf_reserve(b, ROOM(stop - i)))
            return;
        out = b->data + b->len;
    }
    *out++ = '"';
    b->len = (size_t)(out - b->data);
}

void mhdctx__json_key(mhdctx__buf *b, const char *key)
{
    if (b->len > 0 && b->data[b->len - 1] != '{')
        mhdctx__buf_putc(b, ',');
    mhdctx__json_string(b, key, strlen(key));
    mhdctx__buf_putc(b, ':');
}

/* Digits written in place, from the last: no temporary and no memcpy call. */
void mhdctx__json_uint(mhdctx__buf *b, unsigned long long v)
{
    size_t n = 1;
    for (unsigned long long rest = v / 10; rest; rest /= 10)
        n++;
    if (!mhdctx__buf_reserve(b, n))
        return;
    char *digit = b->data + b->len + n;
    do {
        *--digit = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    b->len += n;
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

void mhdctx__json_thousandths(mhdctx__buf *b, unsigned long long thousandths)
{
    mhdctx__json_uint(b, thousandths / 1000);
    unsigned frac = (unsigned)(thousandths % 1000);
    if (frac) {
        char digits[4] = {'.', (char)('0' + frac / 100), (char)('0' + frac / 10 % 10),
                          (char)('0' + frac % 10)};
        size_t n = 4;
        while (digits[n - 1] == '0')
            n--;
        mhdctx__buf_put(b, digits, n);
    }
}

/* The fast path for durations and other values with at most three decimals: a value
 * that equals k / 1000 is written as k's digits with a decimal point, which reads back
 * as the same double (both are the double nearest to that decimal). printf's %g
 * costs more than the rest of a log line. */
static bool put_thousandths(mhdctx__buf *b, double v)
{
    if (!(v > -1e12 && v < 1e12))
        return false;
    double scaled = v * 1000.0;
    long long k = (long long)(scaled + (scaled < 0 ? -0.5 : 0.5)); /* no libm for llround */
    if ((double)k / 1000.0 != v)
        return false;
    if (k == 0 && signbit(v))
        return false; /* -0.0: %g says "-0" */
    if (k < 0)
        mhdctx__buf_putc(b, '-');
    mhdctx__json_thousandths(b, k < 0 ? 0ULL - (unsigned long long)k : (unsigned long long)k);
    return true;
}

/* printf writes the decimal point of the thread's locale: "," in de_DE, the two bytes
 * of U+066B in ps_AF. JSON has only '.'; returns the text's new length. */
static size_t with_json_point(char *text, size_t n)
{
    const char *radix = nl_langinfo(RADIXCHAR);
    size_t r = radix ? strlen(radix) : 0;
    char *at = r && strcmp(radix, ".") != 0 ? strstr(text, radix) : NULL;
    if (at == NULL)
        return n;
    *at = '.';
    memmove(at + 1, at + r, n - (size_t)(at - text) - r + 1); /* with the NUL */
    return n - (r - 1);
}

void mhdctx__json_double(mhdctx__buf *b, double v)
{
    if (!isfinite(v)) { /* JSON has no NaN or Infinity */
        mhdctx__buf_put(b, "null", 4);
        return;
    }
    if (put_thousandths(b, v))
        return;
    /* 15 significant digits keep short decimals short (1.234 stays 1.234); when they do
     * not read back as the same double (DBL_MAX would round up past the largest
     * finite value), 17 always do. */
    char text[32];
    int n = snprintf(text, sizeof text, "%.15g", v);
    if (n > 0 && strtod(text, NULL) != v)
        n = snprintf(text, sizeof text, "%.17g", v);
    if (n <= 0 || (size_t)n >= sizeof text)
        return;
    mhdctx__buf_put(b, text, with_json_point(text, (size_t)n));
}

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); /* kept for the process */
}

locale_t mhdctx__jansson_locale_enter(void)
{
    pthread_once(&c_locale_once, make_c_locale);
    return c_locale ? uselocale(c_locale) : (locale_t)0; /* 0: out of memory, unchanged */
}

void mhdctx__jansson_locale_leave(locale_t previous)
{
    if (previous)
        uselocale(previous);
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
    locale_t previous = mhdctx__jansson_locale_enter();
    int rc = json_dump_callback(v, dump_callback, b,
                                JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
    mhdctx__jansson_locale_leave(previous);
    if (rc != 0) {
        /* Out of memory (or a value that contains itself): jansson may have written
         * part of it. Never a value that is not the caller's: the line is dropped. */
        b->len = start;
        b->failed = true;
    }
}

char *mhdctx__json_dump(const json_t *v, size_t flags, size_t *len)
{
    /* Into our own buffer, not with json_dumps(): jansson 2.14 ignores a failure to
     * write an object key, so json_dumps() can return invalid JSON when its buffer
     * cannot grow. A buffer that failed once stays failed. */
    mhdctx__buf b;
    mhdctx__buf_init(&b, NULL, 0);
    locale_t previous = mhdctx__jansson_locale_enter();
    bool dumped = json_dump_callback(v, dump_callback, &b, flags) == 0;
    mhdctx__jansson_locale_leave(previous);
    mhdctx__buf_putc(&b, '\0');
    if (!dumped || b.failed || b.len == 1) {
        mhdctx__buf_release(&b);
        return NULL;
    }
    if (len)
        *len = b.len - 1;
    return b.data;
}

json_t *mhdctx__json_loadb(const char *text, size_t len, size_t flags, json_error_t *error)
{
    locale_t previous = mhdctx__jansson_locale_enter();
    json_t *v = json_loadb(text, len, flags, error);
    mhdctx__jansson_locale_leave(previous);
    return v;
}

json_t *mhdctx__json_load_file(const char *path, size_t flags, json_error_t *error)
{
    locale_t previous = mhdctx__jansson_locale_enter();
    json_t *v = json_load_file(path, flags, error);
    mhdctx__jansson_locale_leave(previous);
    return v;
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
