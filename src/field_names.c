/*
 * field_names.c - the name each call field of a log line is written under.
 *
 * A line never repeats a key: a call's field may not overwrite what the library wrote
 * (a forged request id), nor repeat a user key or an earlier field of the call. Such a
 * field takes the first free name of "field_<key>", "field_<key>_2", "field_<key>_3"...
 *
 * Almost every field is plainly free (an ASCII name that is not the library's, not a
 * user key, not repeated, not "field_..."), found so without looking at the line. The
 * first field that is not makes a set of the line's top-level keys, hashed with a seed
 * of the line's own (field names may come from clients: no chosen collisions), so
 * that a call of many colliding fields costs time in proportion to its size.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* The names the library writes in every line: their index in mhdctx__field_names'
 * core_next, -1 for any other name. A switch on the first byte: this runs for every
 * field of every line. */
static int core_key_index(const char *key)
{
    switch (key[0]) {
    case 't':
        return strcmp(key, "time") == 0          ? 0
               : strcmp(key, "trace_id") == 0    ? 1
               : strcmp(key, "trace_flags") == 0 ? 2
                                                 : -1;
    case 'l':
        return strcmp(key, "level") == 0 ? 3 : -1;
    case 'm':
        return strcmp(key, "message") == 0 ? 4 : -1;
    case 'r':
        return strcmp(key, "request_id") == 0 ? 5 : -1;
    case 'u':
        return strcmp(key, "user_id") == 0 ? 6 : -1;
    case 's':
        return strcmp(key, "span_id") == 0 ? 7 : -1;
    default:
        return -1;
    }
}

static bool is_core_key(const char *key)
{
    return core_key_index(key) >= 0;
}

/* Whether field @i can be written under its own name without looking at the line: not
 * a library field nor a user key, not repeated from an earlier field of the call, not
 * "field_..." (the renamed ones), and ASCII (escaping writes distinct invalid UTF-8
 * bytes as one U+FFFD). Past the first few fields of a call, the set is cheaper than a
 * comparison with each earlier one. The context's lock is held. */
static bool plainly_free(mhdctx_context *ctx, const mhdctx_field *fields, size_t i,
                         const char *key)
{
    enum { COMPARED_FIELDS = 16 };
    if (i >= COMPARED_FIELDS || is_core_key(key) || strncmp(key, "field_", 6) == 0)
        return false;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        if (*p >= 0x80)
            return false;
    }
    for (size_t j = 0; j < i; j++) {
        if (strcmp(fields[j].key ? fields[j].key : "", key) == 0)
            return false;
    }
    return ctx == NULL || !mhdctx__context_has_key_locked(ctx, key);
}

/* ---- key texts as mhdctx__json_string writes them ----------------------------------- */

/* One character of a JSON string's text: an escape sequence whole, else one byte. */
static size_t text_unit(const char *s, size_t n)
{
    if (s[0] != '\\' || n < 2)
        return 1;
    return s[1] == 'u' && n >= 6 ? 6 : 2;
}

/* Length of U+FFFD's spelling at @s, 0 if none: it is written raw when the text had it
 * and as \ufffd for an invalid byte, the one character spelled two ways. */
static size_t replacement_at(const char *s, size_t n)
{
    if (n >= 6 && memcmp(s, "\\ufffd", 6) == 0)
        return 6;
    return n >= 3 && memcmp(s, "\xef\xbf\xbd", 3) == 0 ? 3 : 0;
}

/* Whether two key texts decode to the same key. */
static bool same_key_text(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i = 0, j = 0;
    while (i < an && j < bn) {
        size_t ra = replacement_at(a + i, an - i), rb = replacement_at(b + j, bn - j);
        if (ra && rb) {
            i += ra;
            j += rb;
            continue;
        }
        size_t ua = text_unit(a + i, an - i), ub = text_unit(b + j, bn - j);
        if (ua != ub || memcmp(a + i, b + j, ua) != 0)
            return false;
        i += ua;
        j += ub;
    }
    return i == an && j == bn;
}

/* FNV-1a from a seed, over the text's characters as same_key_text() reads them (so
 * that texts it calls equal hash equal): U+FFFD's two spellings as one. */
static uint64_t hash_key_text(uint64_t seed, const char *s, size_t n)
{
    uint64_t h = seed;
    for (size_t i = 0; i < n;) {
        size_t r = replacement_at(s + i, n - i);
        if (r) {
            h = (h ^ 0xff) * 0x100000001b3ull; /* 0xff: never a byte of text */
            i += r;
            continue;
        }
        for (size_t end = i + text_unit(s + i, n - i); i < end; i++)
            h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    }
    return h;
}

/* ---- the set of the line's keys ------------------------------------------------------ */

static struct mhdctx__name_slot *find_slot(mhdctx__field_names *names, const mhdctx__buf *b,
                                           const char *text, size_t n)
{
    size_t mask = names->cap - 1;
    for (size_t i = hash_key_text(names->seed, text, n) & mask;; i = (i + 1) & mask) {
        struct mhdctx__name_slot *slot = &names->slots[i];
        if (slot->len == 0 || same_key_text(b->data + slot->at, slot->len, text, n))
            return slot; /* empty: not in the set */
    }
}

static bool grow(mhdctx__field_names *names, const mhdctx__buf *b)
{
    size_t cap = names->cap * 2;
    struct mhdctx__name_slot *slots = mhdctx__calloc(cap, sizeof *slots);
    if (slots == NULL)
        return false;
    struct mhdctx__name_slot *old = names->slots;
    size_t old_cap = names->cap;
    names->slots = slots;
    names->cap = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].len)
            *find_slot(names, b, b->data + old[i].at, old[i].len) = old[i];
    }
    if (old != names->inline_slots)
        mhdctx__free(old);
    return true;
}

/* Adds the key text at @at (@n bytes, quotes included) of the line; false when out of
 * memory. Never fails for a text already in the set. */
static bool add_name(mhdctx__field_names *names, const mhdctx__buf *b, size_t at, size_t n)
{
    struct mhdctx__name_slot *slot = find_slot(names, b, b->data + at, n);
    if (slot->len)
        return true;
    if (n > UINT32_MAX)
        return false;
    *slot = (struct mhdctx__name_slot){.at = at, .len = (uint32_t)n, .next = 0};
    return ++names->used <= names->cap / 2 || grow(names, b);
}

/* Puts every top-level key of the line so far into the set. The line is valid JSON up
 * to here: strings are skipped whole and nested values by depth, so a key inside a
 * value does not count. */
static bool index_line(mhdctx__field_names *names, const mhdctx__buf *b)
{
    names->slots = names->inline_slots;
    names->cap = sizeof names->inline_slots / sizeof *names->inline_slots;
    memset(names->inline_slots, 0, sizeof names->inline_slots);
    memset(names->core_next, 0, sizeof names->core_next);
    mhdctx__random_bytes((unsigned char *)&names->seed, sizeof names->seed);
    int depth = 0;
    bool at_key = false; /* the next string at depth 1 is a key */
    for (size_t i = 0; i < b->len; i++) {
        char c = b->data[i];
        if (c == '"') {
            size_t start = i;
            for (i++; i < b->len && b->data[i] != '"'; i++)
                i += b->data[i] == '\\'; /* skip the escaped byte */
            if (at_key && !add_name(names, b, start, i + 1 - start))
                return false;
            at_key = false;
        } else if (c == '{' || c == '[') {
            depth++;
            at_key = c == '{' && depth == 1;
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',') {
            at_key = depth == 1;
        }
    }
    return true;
}

/* ---- names ----------------------------------------------------------------------------- */

/* Writes ',' and candidate @k of @key's name: the key itself, then "field_<key>", then
 * "field_<key>_2"...; returns where its text starts. */
static size_t put_candidate(mhdctx__buf *b, const char *key, unsigned k)
{
    mhdctx__buf_putc(b, ',');
    size_t at = b->len;
    if (k == 0) {
        mhdctx__json_string(b, key, strlen(key));
        return at;
    }
    char stack[128], suffix[16] = "";
    mhdctx__buf name;
    mhdctx__buf_init(&name, stack, sizeof stack);
    MHDCTX__PUT_LITERAL(&name, "field_");
    mhdctx__buf_puts(&name, key);
    if (k > 1)
        mhdctx__buf_put(&name, suffix, (size_t)snprintf(suffix, sizeof suffix, "_%u", k));
    if (name.failed)
        b->failed = true; /* out of memory: the line is dropped and counted */
    else
        mhdctx__json_string(b, name.data, name.len);
    mhdctx__buf_release(&name);
    return at;
}

/* The first free name from candidate @k on, written with its ',' (not its ':').
 * Remembers in @next where the next search for the same key may start: every name
 * before it is taken. */
static void put_free_candidate(mhdctx__buf *b, mhdctx__field_names *names, const char *key,
                               unsigned k, uint32_t *next)
{
    size_t line_end = b->len;
    for (;; k++) {
        b->len = line_end;
        size_t at = put_candidate(b, key, k);
        if (b->failed)
            return;
        if (find_slot(names, b, b->data + at, b->len - at)->len == 0) {
            *next = k + 1; /* before add_name: growing moves the slots */
            if (!add_name(names, b, at, b->len - at))
                b->failed = true;
            return;
        }
    }
}

static void put_looked_up_name(mhdctx__buf *b, mhdctx__field_names *names, const char *key)
{
    if (names->cap == 0 && !index_line(names, b)) {
        b->failed = true;
        return;
    }
    size_t line_end = b->len;
    size_t at = put_candidate(b, key, 0);
    if (b->failed)
        return;
    struct mhdctx__name_slot *own = find_slot(names, b, b->data + at, b->len - at);
    int core = core_key_index(key);
    /* A library field's name is never a call's, even on a line without it (outside a
     * request: no "request_id" to forge, still none a reader could take for one). */
    if (own->len == 0 && core < 0) {
        if (!add_name(names, b, at, b->len - at))
            b->failed = true;
        return;
    }
    b->len = line_end;
    /* A library field's name missing from the line keeps its place outside the set. */
    uint32_t *next = own->len ? &own->next : &names->core_next[core];
    put_free_candidate(b, names, key, *next > 1 ? *next : 1, next);
}

void mhdctx__put_field_name(mhdctx__buf *b, mhdctx__field_names *names, mhdctx_context *ctx,
                            const mhdctx_field *fields, size_t i)
{
    const char *key = fields[i].key ? fields[i].key : "";
    if (plainly_free(ctx, fields, i, key)) {
        size_t before = b->len;
        mhdctx__json_key(b, key); /* [','] '"' text '"' ':' */
        if (names->cap == 0 || b->failed)
            return;
        /* Once the set exists, every name goes into it. */
        size_t at = before + (b->data[before] == ',');
        if (!add_name(names, b, at, b->len - 1 - at))
            b->failed = true;
        return;
    }
    put_looked_up_name(b, names, key);
    mhdctx__buf_putc(b, ':');
}

void mhdctx__field_names_release(mhdctx__field_names *names)
{
    if (names->cap && names->slots != names->inline_slots)
        mhdctx__free(names->slots);
    names->slots = NULL;
    names->cap = names->used = 0;
}
