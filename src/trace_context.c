/*
 * trace_context.c - W3C Trace Context (traceparent, tracestate): pure parsing and
 * formatting, no MHD and no globals. The rules follow the Level 1 recommendation and
 * the key grammar of the W3C validation suite:
 *
 *   traceparent = version "-" trace-id "-" parent-id "-" trace-flags
 *     lowercase hex only; version ff invalid; version 00 exactly 55 characters; a
 *     future version may carry more after a "-" at offset 55; all-zero ids invalid;
 *     leading and trailing spaces and tabs (OWS) ignored.
 *   tracestate = list of key=value, separated by "," with OWS, empty members ignored,
 *     at most 32 members; one invalid member discards the whole list.
 */
#include "internal.h"

#include <string.h>

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool lower_hex_run(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_lower_hex(s[i]))
            return false;
    }
    return true;
}

static bool all_zero(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '0')
            return false;
    }
    return true;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void trim_ows(const char **s, size_t *len)
{
    while (*len && is_ows(**s))
        (*s)++, (*len)--;
    while (*len && is_ows((*s)[*len - 1]))
        (*len)--;
}

static unsigned hex_value(char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'a' + 10);
}

mhdctx_error mhdctx_traceparent_parse(const char *value, size_t len, mhdctx_trace_parent *out)
{
    if (value == NULL || out == NULL)
        return MHDCTX_EINVAL;
    trim_ows(&value, &len);
    if (len < MHDCTX_TRACEPARENT_LEN || value[2] != '-' || value[35] != '-' || value[52] != '-')
        return MHDCTX_EPARSE;
    if (!lower_hex_run(value, 2) || memcmp(value, "ff", 2) == 0)
        return MHDCTX_EPARSE;
    bool version_00 = memcmp(value, "00", 2) == 0;
    if (version_00 && len != MHDCTX_TRACEPARENT_LEN)
        return MHDCTX_EPARSE;
    if (!version_00 && len > MHDCTX_TRACEPARENT_LEN && value[MHDCTX_TRACEPARENT_LEN] != '-')
        return MHDCTX_EPARSE;
    const char *trace_id = value + 3, *parent_id = value + 36, *flags = value + 53;
    if (!lower_hex_run(trace_id, 32) || all_zero(trace_id, 32) ||
        !lower_hex_run(parent_id, 16) || all_zero(parent_id, 16) || !lower_hex_run(flags, 2))
        return MHDCTX_EPARSE;
    memcpy(out->trace_id, trace_id, 32);
    out->trace_id[32] = '\0';
    memcpy(out->parent_id, parent_id, 16);
    out->parent_id[16] = '\0';
    out->flags = (unsigned char)(hex_value(flags[0]) << 4 | hex_value(flags[1]));
    return MHDCTX_OK;
}

void mhdctx_traceparent_format(char out[MHDCTX_TRACEPARENT_LEN + 1], const char *trace_id,
                               const char *span_id, unsigned char flags)
{
    memcpy(out, "00-", 3);
    memcpy(out + 3, trace_id, 32);
    out[35] = '-';
    memcpy(out + 36, span_id, 16);
    out[52] = '-';
    mhdctx__hex_byte(out + 53, flags);
    out[55] = '\0';
}

/* ---- tracestate --------------------------------------------------------------------- */

static bool key_first_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool key_char(char c)
{
    return key_first_char(c) || c == '_' || c == '-' || c == '*' || c == '/' || c == '@';
}

static bool value_char(unsigned char c)
{
    return c >= 0x20 && c <= 0x7e && c != ',' && c != '=';
}

static bool member_valid(const char *m, size_t len, size_t *key_len)
{
    const char *eq = memchr(m, '=', len);
    if (eq == NULL)
        return false;
    size_t klen = (size_t)(eq - m), vlen = len - klen - 1;
    if (klen == 0 || klen > 256 || !key_first_char(m[0]))
        return false;
    for (size_t i = 1; i < klen; i++) {
        if (!key_char(m[i]))
            return false;
    }
    if (vlen == 0 || vlen > 256 || eq[vlen] == ' ') /* no trailing space */
        return false;
    for (size_t i = 1; i <= vlen; i++) {
        if (!value_char((unsigned char)eq[i]))
            return false;
    }
    *key_len = klen;
    return true;
}

struct ts_member {
    const char *text;
    size_t len;
    size_t key_len;
};

static bool seen_key(const struct ts_member *members, size_t n, const char *key, size_t key_len)
{
    for (size_t i = 0; i < n; i++) {
        if (members[i].key_len == key_len && memcmp(members[i].text, key, key_len) == 0)
            return true;
    }
    return false;
}

/* Splits @list into members; false when one is invalid or there are more than 32. */
static bool split_members(const char *list, size_t len, struct ts_member *members, size_t *n)
{
    size_t count = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && list[i] != ',')
            continue;
        const char *m = list + start;
        size_t mlen = i - start;
        start = i + 1;
        trim_ows(&m, &mlen);
        if (mlen == 0)
            continue; /* empty members are allowed and dropped */
        size_t key_len;
        if (!member_valid(m, mlen, &key_len))
            return false;
        if (seen_key(members, count, m, key_len))
            continue; /* a duplicate key: keep the first (the spec allows either) */
        if (count == MHDCTX_TRACESTATE_MAX_MEMBERS)
            return false;
        members[count++] = (struct ts_member){m, mlen, key_len};
    }
    *n = count;
    return true;
}

/* Above 512 bytes the spec lets a vendor truncate: members over 128 bytes go first,
 * then members from the end. */
static size_t joined_len(const struct ts_member *members, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += members[i].len + (i ? 1 : 0);
    return total;
}

static void truncate_members(struct ts_member *members, size_t *n)
{
    for (size_t i = *n; i-- > 0 && joined_len(members, *n) > MHDCTX_TRACESTATE_MAX_LEN;) {
        if (members[i].len > 128) {
            memmove(&members[i], &members[i + 1], (*n - i - 1) * sizeof *members);
            (*n)--;
        }
    }
    while (*n && joined_len(members, *n) > MHDCTX_TRACESTATE_MAX_LEN)
        (*n)--;
}

size_t mhdctx_tracestate_normalize(const char *list, size_t len,
                                   char out[MHDCTX_TRACESTATE_MAX_LEN + 1])
{
    struct ts_member members[MHDCTX_TRACESTATE_MAX_MEMBERS];
    size_t n = 0;
    out[0] = '\0';
    if (list == NULL || !split_members(list, len, members, &n))
        return 0;
    truncate_members(members, &n);
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            out[used++] = ',';
        memcpy(out + used, members[i].text, members[i].len);
        used += members[i].len;
    }
    out[used] = '\0';
    return used;
}
