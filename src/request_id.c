/*
 * request_id.c - validation of incoming request ids (pure) and fast UUID v4 and hex id
 * generation, from random.c's per-thread generator (no system call per id).
 */
#include "internal.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* [A-Za-z0-9._~:@+/=-]: unreserved URL characters plus the ones base64 and common
 * tracing ids use; nothing that can break out of a header, a JSON string, a shell word
 * or an SQL comment. As a set of 128 bits: character c is bit c % 64 of word c / 64. */
#define BIT(c) ((uint64_t)1 << ((unsigned)(c)&63u))
#define RUN(a, b)                                                                              \
    ((~(uint64_t)0 >> (63u - ((unsigned)(b) - (unsigned)(a)))) << ((unsigned)(a)&63u))
static const uint64_t id_chars[2] = {
    RUN('-', ':') | BIT('+') | BIT('='), /* "-./0123456789:" is one run */
    BIT('@') | RUN('A', 'Z') | BIT('_') | RUN('a', 'z') | BIT('~'),
};
#undef BIT
#undef RUN

static bool id_char_ok(unsigned char c)
{
    return c < 128 && (id_chars[c >> 6] >> (c & 63) & 1);
}

static bool id_chars_ok(const char *id, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!id_char_ok((unsigned char)id[i]))
            return false;
    }
    return true;
}

#if defined(__SSE2__)
/* Bytes from @lo to @hi: shifted so that @lo lands on -128, one signed compare. */
static __m128i bytes_in(__m128i v, char lo, char hi)
{
    __m128i shifted = _mm_sub_epi8(v, _mm_set1_epi8((char)(lo ^ 0x80)));
    return _mm_cmplt_epi8(shifted, _mm_set1_epi8((char)(-128 + (hi - lo + 1))));
}

/* The same set as id_chars, 16 bytes at a time (an incoming id is checked on every
 * request that brings one; byte by byte that cost more than generating a UUID):
 * letters are case-folded into one run, "-./0123456789:" is another, five are single. */
static bool id_block_ok(const char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i ok = bytes_in(_mm_or_si128(v, _mm_set1_epi8(0x20)), 'a', 'z');
    ok = _mm_or_si128(ok, bytes_in(v, '-', ':'));
    ok = _mm_or_si128(ok, _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('+')),
                                       _mm_cmpeq_epi8(v, _mm_set1_epi8('='))));
    ok = _mm_or_si128(ok, _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('@')),
                                       _mm_cmpeq_epi8(v, _mm_set1_epi8('_'))));
    ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, _mm_set1_epi8('~')));
    return _mm_movemask_epi8(ok) == 0xffff;
}

/* 16 bytes at a time; the last block overlaps the one before rather than run past. */
static bool id_text_ok(const char *id, size_t len)
{
    if (len < 16)
        return id_chars_ok(id, len);
    for (size_t i = 0; i + 16 < len; i += 16) {
        if (!id_block_ok(id + i))
            return false;
    }
    return id_block_ok(id + len - 16);
}
#else
static bool id_text_ok(const char *id, size_t len)
{
    return id_chars_ok(id, len);
}
#endif

mhdctx_id_verdict mhdctx_request_id_check(const char *id, size_t len, size_t max_len)
{
    if (id == NULL || len == 0)
        return MHDCTX_ID_EMPTY;
    if (len > max_len)
        return MHDCTX_ID_TOO_LONG;
    return id_text_ok(id, len) ? MHDCTX_ID_VALID : MHDCTX_ID_INVALID_CHAR;
}

const char *mhdctx_id_verdict_name(mhdctx_id_verdict verdict)
{
    switch (verdict) {
    case MHDCTX_ID_VALID:
        return "valid";
    case MHDCTX_ID_MISSING:
        return "missing";
    case MHDCTX_ID_EMPTY:
        return "empty";
    case MHDCTX_ID_TOO_LONG:
        return "too_long";
    case MHDCTX_ID_INVALID_CHAR:
        return "invalid_character";
    case MHDCTX_ID_MULTIPLE:
        return "multiple";
    case MHDCTX_ID_UNTRUSTED:
        return "untrusted";
    }
    return "unknown";
}

/* Two lowercase hex digits per byte, copied from a table of all 256 pairs: no shift,
 * no division, no printf (mhdctx__hex_byte in internal.h). */
const char mhdctx__hex_pairs[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

static void put_hex_table(char *out, const unsigned char *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mhdctx__hex_byte(out + 2 * i, bytes[i]);
}

#if defined(__SSE2__)
/* Every x86-64 has SSE2: 16 bytes become 32 digits in a dozen instructions, where the
 * table takes five per byte. Ids are drawn for every logged request (a UUID, a trace
 * and a span id: 40 bytes). */
static __m128i nibbles_to_ascii(__m128i nibbles)
{
    __m128i letters =
        _mm_and_si128(_mm_cmpgt_epi8(nibbles, _mm_set1_epi8(9)), _mm_set1_epi8('a' - '0' - 10));
    return _mm_add_epi8(_mm_add_epi8(nibbles, _mm_set1_epi8('0')), letters);
}

/* Digits of the 16 bytes at @bytes; only the first @n (8 or 16) are read and their
 * 2 * @n digits written. */
static void put_hex_sse2(char *out, const unsigned char *bytes, size_t n)
{
    const __m128i low_nibble = _mm_set1_epi8(0x0f);
    __m128i v = n == 16 ? _mm_loadu_si128((const __m128i *)bytes)
                        : _mm_loadl_epi64((const __m128i *)bytes);
    __m128i high = _mm_and_si128(_mm_srli_epi16(v, 4), low_nibble);
    __m128i low = _mm_and_si128(v, low_nibble);
    _mm_storeu_si128((__m128i *)out, nibbles_to_ascii(_mm_unpacklo_epi8(high, low)));
    if (n == 16)
        _mm_storeu_si128((__m128i *)(out + 16), nibbles_to_ascii(_mm_unpackhi_epi8(high, low)));
}

void mhdctx__hex_encode(char *out, const unsigned char *bytes, size_t n)
{
    for (; n >= 16; n -= 16, bytes += 16, out += 32)
        put_hex_sse2(out, bytes, 16);
    if (n >= 8) {
        put_hex_sse2(out, bytes, 8);
        n -= 8, bytes += 8, out += 16;
    }
    put_hex_table(out, bytes, n);
}
#else
void mhdctx__hex_encode(char *out, const unsigned char *bytes, size_t n)
{
    put_hex_table(out, bytes, n);
}
#endif

mhdctx_error mhdctx_uuid_v4(char out[MHDCTX_UUID_LEN + 1])
{
    unsigned char u[16];
    if (out == NULL)
        return MHDCTX_EINVAL;
    mhdctx__random_bytes(u, sizeof u);
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    char digits[32];
    mhdctx__hex_encode(digits, u, sizeof u);
    /* 8-4-4-4-12 */
    memcpy(out, digits, 8);
    out[8] = '-';
    memcpy(out + 9, digits + 8, 4);
    out[13] = '-';
    memcpy(out + 14, digits + 12, 4);
    out[18] = '-';
    memcpy(out + 19, digits + 16, 4);
    out[23] = '-';
    memcpy(out + 24, digits + 20, 12);
    out[MHDCTX_UUID_LEN] = '\0';
    return MHDCTX_OK;
}

void mhdctx__random_hex(char *out, size_t nbytes)
{
    unsigned char bytes[64];
    if (nbytes == 0) { /* no bytes at all are "all zero": drawing would never end */
        out[0] = '\0';
        return;
    }
    if (nbytes > sizeof bytes)
        nbytes = sizeof bytes;
    do { /* an all-zero trace or span id is invalid: draw again */
        mhdctx__random_bytes(bytes, nbytes);
    } while (mhdctx__all_zero(bytes, nbytes));
    mhdctx__hex_encode(out, bytes, nbytes);
    out[2 * nbytes] = '\0';
}
