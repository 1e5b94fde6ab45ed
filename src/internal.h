/*
 * internal.h - declarations shared between the modules of libmhdctx.
 * Nothing here is exported: internal functions use the `mhdctx__` prefix, which the
 * export regex (^mhdctx_[a-z]) and -fvisibility=hidden both keep out of the .so.
 */
#ifndef MHDCTX_INTERNAL_H
#define MHDCTX_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strerror_r returning char *, pthread extensions */
#endif

#include "mhdctx.h"

#include <locale.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- allocation (one place, so a test build can inject failures) ---------------- */
void *mhdctx__malloc(size_t size);
void *mhdctx__calloc(size_t n, size_t size);
void *mhdctx__realloc(void *ptr, size_t size);
char *mhdctx__strdup(const char *s);
void mhdctx__free(void *ptr);
/* Returns @block, which leaves the library: the caller releases it with free() (for the
 * fault-injection build's count of blocks allocated here and not freed here). */
void *mhdctx__hand_to_caller(void *block);
/* Injected failures, in the fault-injection build only (never otherwise):
 * - allocation_refused: whether the next allocation fails, when the countdown
 *   mhdctx__alloc_countdown reaches zero (one step per call; any thread). Tests take
 *   the same step for allocators outside the library, such as jansson's.
 * - mapping_refused: whether the next thread block (thread_blocks.c) is refused as if
 *   the system had no mapping to give; the same, with mhdctx__map_countdown. */
#ifdef MHDCTX_FAULT_INJECTION
bool mhdctx__allocation_refused(void);
bool mhdctx__mapping_refused(void);
#else
static inline bool mhdctx__allocation_refused(void)
{
    return false;
}

static inline bool mhdctx__mapping_refused(void)
{
    return false;
}
#endif

/* ---- growable byte buffer --------------------------------------------------------- */
typedef struct mhdctx__buf {
    char *data;
    size_t len;
    size_t cap;
    bool on_heap; /* data was allocated here (else caller storage) */
    bool failed;  /* an append did not fit and could not grow: content is truncated */
} mhdctx__buf;

static inline void mhdctx__buf_init(mhdctx__buf *b, char *storage, size_t cap)
{
    b->data = storage;
    b->len = 0;
    b->cap = storage ? cap : 0;
    b->on_heap = false;
    b->failed = false;
}

/* Frees what the buffer allocated (caller storage is the caller's); empty again. */
static inline void mhdctx__buf_release(mhdctx__buf *b)
{
    if (b->on_heap)
        mhdctx__free(b->data);
    mhdctx__buf_init(b, NULL, 0);
}
/* Makes room for @extra more bytes; false (and b->failed) when it cannot. */
bool mhdctx__buf_grow(mhdctx__buf *b, size_t extra);

/* The appends are inline: a log line makes dozens of them, and the common case is a
 * bounds check and a copy. */
static inline bool mhdctx__buf_reserve(mhdctx__buf *b, size_t extra)
{
    return (extra <= b->cap - b->len && !b->failed) || mhdctx__buf_grow(b, extra);
}

static inline void mhdctx__buf_put(mhdctx__buf *b, const char *s, size_t n)
{
    if (n == 0 || !mhdctx__buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static inline void mhdctx__buf_putc(mhdctx__buf *b, char c)
{
    if (mhdctx__buf_reserve(b, 1))
        b->data[b->len++] = c;
}

static inline void mhdctx__buf_puts(mhdctx__buf *b, const char *s)
{
    mhdctx__buf_put(b, s, strlen(s));
}

/* Appends a string literal (its length known at compile time). */
#define MHDCTX__PUT_LITERAL(b, lit) mhdctx__buf_put((b), (lit), sizeof(lit) - 1)

/* ---- JSON encoding (json_write.c) ------------------------------------------------- */
/* Appends "..." with every byte escaped: controls, quotes, backslash, DEL, U+2028/9;
 * invalid UTF-8 becomes \ufffd. The result is always valid JSON. */
void mhdctx__json_string(mhdctx__buf *b, const char *s, size_t len);
/* Whether @len bytes at @s are valid UTF-8 (no overlong forms, no surrogates). */
bool mhdctx__utf8_valid(const char *s, size_t len);
/* Appends ,"key": (the comma only when the object already has a member). */
void mhdctx__json_key(mhdctx__buf *b, const char *key);
void mhdctx__json_int(mhdctx__buf *b, long long v);
void mhdctx__json_uint(mhdctx__buf *b, unsigned long long v);
void mhdctx__json_double(mhdctx__buf *b, double v);
/* @thousandths / 1000 as a JSON number with at most three decimals, no trailing zeros:
 * 1234 -> 1.234, 1500 -> 1.5, 2000 -> 2. */
void mhdctx__json_thousandths(mhdctx__buf *b, unsigned long long thousandths);
void mhdctx__json_value(mhdctx__buf *b, const json_t *v);
/* jansson writes and reads reals in the thread's LC_NUMERIC and assumes a one-byte
 * decimal point: under ps_AF or fa_IR (U+066B) it writes "1.\xab5", which is not JSON,
 * and its parser aborts on an assertion (jansson 2.14). Every call into jansson that
 * may meet a real runs between these two, in the "C" locale for this thread alone
 * (uselocale); leave() takes what enter() returned. */
locale_t mhdctx__jansson_locale_enter(void);
void mhdctx__jansson_locale_leave(locale_t previous);
/* @v as JSON text with jansson's @flags, NUL-terminated, @len (may be NULL) without the
 * NUL; free() it (mhdctx__free). NULL on allocation failure: never a partial text. */
char *mhdctx__json_dump(const json_t *v, size_t flags, size_t *len);
/* json_loadb() and json_load_file() in the "C" locale (above); same arguments, same
 * results. */
json_t *mhdctx__json_loadb(const char *text, size_t len, size_t flags, json_error_t *error);
json_t *mhdctx__json_load_file(const char *path, size_t flags, json_error_t *error);

/* ---- context (context.c) ---------------------------------------------------------- */
enum mhdctx__phase {
    MHDCTX__PHASE_NEW = 0, /* created from the request line, headers not read yet */
    MHDCTX__PHASE_HOOKS,   /* the hooks run: a response of the library's is held back */
    MHDCTX__PHASE_HANDLER, /* hooks passed: the handler runs */
    MHDCTX__PHASE_ANSWERED /* a hook answered: remaining calls are absorbed */
};

#define MHDCTX__DEFAULT_ID_HEADER "X-Request-Id"
#define MHDCTX__ID_HEADER_ROOM    64 /* a header name for the id, with its NUL */

struct mhdctx__user_key {
    char name[MHDCTX_MAX_KEY_LEN + 1];
    json_t *value;
    char *json; /* value serialized when set: log lines copy it, not re-encode it */
    size_t json_len;
    /* A string value's bytes as they were when set, kept after its JSON text in the same
     * allocation (NULL for other values): SQL tags write the string itself, and the
     * caller may have changed (and freed the bytes of) a json_t it still shares. */
    const char *string;
    size_t string_len;
};

/* The trace flags a traceparent the library sends may carry: the ones Trace Context
 * Level 2 defines (the spec wants the others zero). An imported context keeps every
 * bit it was given, for its log lines and its next export. */
#define MHDCTX__TRACE_FLAGS_SENT (MHDCTX_TRACE_FLAG_SAMPLED | MHDCTX_TRACE_FLAG_RANDOM)

/* The flags of a trace the library starts: recorded, its id drawn from the CSPRNG. */
#define MHDCTX__TRACE_FLAGS_NEW (MHDCTX_TRACE_FLAG_SAMPLED | MHDCTX_TRACE_FLAG_RANDOM)

struct mhdctx__route; /* middleware.h */
struct mhdctx_context {
    /* ---- cleared at creation: every field before id_header_copy starts zero ---- */
    atomic_uint refs;
    pthread_mutex_t lock; /* guards user_id, roles and keys */
    uint64_t start_mono_ns;
    struct timespec start_real; /* derived at its first reader, guarded by lock */
    bool start_real_known;
    enum mhdctx__phase phase;
    mhdctx_id_verdict id_verdict;
    unsigned int status;           /* status queued by the library's own helpers */
    struct MHD_Response *deferred; /* a hook's answer, queued at the next call */
    unsigned int deferred_status;  /* its status: not sent until it is queued */
    void *user_req_cls;            /* the wrapped handler's own req_cls slot */
    /* The middleware's settings for the decoded path the handler sees (NULL: none),
     * found at the first call: routes cannot change once requests come. Points into the
     * middleware: read on MHD's threads only, up to the completion callback. */
    const struct mhdctx__route *route_settings;
    /* Response header for the id: MHDCTX__DEFAULT_ID_HEADER or id_header_copy. A copy of
     * the middleware's setting, not a pointer into it: a worker's reference may outlive
     * mhdctx_middleware_free(). */
    const char *id_header;
    char *user_id;
    char **roles;
    size_t n_roles;
    struct mhdctx__user_key *keys;
    size_t n_keys;
    char *method_heap; /* method when it does not fit method_inline */
    size_t request_id_len;
    atomic_uint ids_to_draw;      /* MHDCTX__DRAW_*: ids assigned but not drawn yet */
    unsigned char trace_flags;    /* all 8 bits as imported; sent: MHDCTX__TRACE_FLAGS_SENT */
    char *tracestate;             /* normalized incoming tracestate, NULL when none */
    char *route;                  /* the application's name for the route, guarded by lock */
    _Atomic uint64_t deadline_ns; /* CLOCK_MONOTONIC; 0 = none */
    atomic_bool timed_out;        /* answered 504: the access line says "timeout" */
    bool closed_by_server;        /* the access handler returned MHD_NO (MHD's thread) */
    bool in_block;                /* allocated by mhdctx__block_take */
    char *query;                  /* points into text, NULL when absent */
    /* ---- strings, created empty: only their first bytes are set (clearing all 400
     * bytes was most of a context's creation); nothing reads past a string's NUL ---- */
    char id_header_copy[MHDCTX__ID_HEADER_ROOM];
    char method_inline[24];
    char request_id[MHDCTX_REQUEST_ID_LIMIT + 1];
    char trace_id[MHDCTX_TRACE_ID_LEN + 1]; /* "" until the trace is assigned */
    char span_id[MHDCTX_SPAN_ID_LEN + 1];
    char parent_span_id[MHDCTX_SPAN_ID_LEN + 1]; /* "" for a new trace */
    char text[];                                 /* path '\0' [query '\0'] */
};
#define MHDCTX__CONTEXT_CLEARED offsetof(struct mhdctx_context, id_header_copy)

/* Context blocks (block_cache.c): a context whose path and query fit takes one of
 * these from its thread's cache of freed blocks; longer ones are malloc'ed. */
#define MHDCTX__BLOCK_BYTES 1024u
void *mhdctx__block_take(void); /* MHDCTX__BLOCK_BYTES bytes, NULL on ENOMEM */
void mhdctx__block_give(void *block);
extern const bool mhdctx__block_cache_on; /* false under ASan and TSan */

/* thread_blocks.c: a thread's state blocks, mapped (TLS holds pointers only, so that
 * the library can be dlopen()ed). */
enum mhdctx__thread_slot {
    MHDCTX__SLOT_LINE,  /* log.c: the line storage */
    MHDCTX__SLOT_RNG,   /* random.c: the generator */
    MHDCTX__SLOT_CACHE, /* block_cache.c: freed context blocks */
    MHDCTX__THREAD_SLOTS
};
/* What a module keeps per thread: a constant of its own, the same on every call. */
struct mhdctx__thread_block_kind {
    enum mhdctx__thread_slot slot;
    size_t size;
    bool wipe_on_fork; /* zeroed in a child of fork(), _Fork() or clone() */
    /* At the thread's exit, on that thread, before the block goes (NULL: none): lets go
     * of every pointer to it. */
    void (*cleanup)(void *block);
};
/* This thread's zeroed block of @kind: made at the thread's first call, given back at
 * its exit. With wipe_on_fork, a child finds it zeroed (where the kernel has
 * MADV_WIPEONFORK). NULL when it cannot be had: the caller does without. */
void *mhdctx__thread_block(const struct mhdctx__thread_block_kind *kind);

/* New context for @uri (path and optional query), refcount 1. NULL on ENOMEM. */
mhdctx_context *mhdctx__context_create(const char *uri);
mhdctx_error mhdctx__context_set_method(mhdctx_context *ctx, const char *method);
void mhdctx__context_set_request_id(mhdctx_context *ctx, const char *id, size_t len,
                                    mhdctx_id_verdict verdict);
/* Gives @ctx a new UUID v4 request id. */
void mhdctx__context_generate_request_id(mhdctx_context *ctx, mhdctx_id_verdict verdict);
/* Continues the trace of @parent (NULL: starts a new one) with a new span id. */
mhdctx_error mhdctx__context_set_trace(mhdctx_context *ctx, const mhdctx_trace_parent *parent,
                                       const char *tracestate, size_t tracestate_len);
/* New trace and span ids are drawn at their first reader, not at the request line: a
 * request whose ids nobody reads (no line, no outgoing call) never pays for them.
 * Every reader of trace_id/span_id calls one of these first; after it returns, the
 * ids never change. The _locked form is for callers holding the context lock. */
enum { MHDCTX__DRAW_TRACE = 1u, MHDCTX__DRAW_SPAN = 2u };
void mhdctx__context_draw_ids_locked(const mhdctx_context *ctx);
void mhdctx__context_draw_ids_slow(const mhdctx_context *ctx);
static inline void mhdctx__context_draw_ids(const mhdctx_context *ctx)
{
    if (atomic_load_explicit(&ctx->ids_to_draw, memory_order_acquire) != 0)
        mhdctx__context_draw_ids_slow(ctx);
}
/* Cancellation off around a wait or a write made while holding one of the library's
 * locks: a thread cancelled there would leave the lock held and every later caller
 * waiting for ever. A pending cancellation acts at the thread's next cancellation point
 * after the call. Returns the state to give back to mhdctx__cancel_restore(). */
static inline int mhdctx__cancel_off(void)
{
    int previous;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &previous);
    return previous;
}
static inline void mhdctx__cancel_restore(int previous)
{
    pthread_setcancelstate(previous, NULL);
}
#define MHDCTX__NS_PER_S 1000000000u
/* A reading of @clock in nanoseconds; mhdctx__monotonic_ns() reads CLOCK_MONOTONIC. */
uint64_t mhdctx__clock_ns(clockid_t clock);
uint64_t mhdctx__monotonic_ns(void);
static inline struct timespec mhdctx__timespec_of_ns(uint64_t ns)
{
    return (struct timespec){.tv_sec = (time_t)(ns / MHDCTX__NS_PER_S),
                             .tv_nsec = (long)(ns % MHDCTX__NS_PER_S)};
}
/* @start_ns + @ms, or 0 (no deadline) for 0 or a budget that would overflow. */
uint64_t mhdctx__deadline_after(uint64_t start_ns, uint64_t ms);
/* Swaps the thread's current context, returning the previous one. */
mhdctx_context *mhdctx__enter(mhdctx_context *ctx);
bool mhdctx__key_is_reserved(const char *key);
/* MHDCTX_OK for 1..@max_len bytes without control characters (user ids, roles). */
mhdctx_error mhdctx__check_label(const char *s, size_t max_len);
/* The lock that guards user id, roles, route and user keys. */
void mhdctx__context_lock(const mhdctx_context *ctx);
void mhdctx__context_unlock(const mhdctx_context *ctx);
/* For a thread that may use @ctx (mhdctx.h's rule): takes the lock unless this thread
 * holds the only reference, when no other thread can touch the context. Returns
 * whether it locked: then mhdctx__context_unlock() is due. */
bool mhdctx__context_lock_if_shared(const mhdctx_context *ctx);
/* Appends ,"request_id":.., the trace ids, "user_id":.. and the user keys; the caller
 * holds the context lock or the only reference ("_locked": as after
 * mhdctx__context_lock_if_shared). @span_id (NULL: the context's) replaces the span,
 * for client spans. */
void mhdctx__context_write_fields_locked(mhdctx_context *ctx, mhdctx__buf *b,
                                         const char *span_id);
/* Whether @key is a user key of @ctx; the caller holds the context lock or the only
 * reference. */
bool mhdctx__context_has_key_locked(const mhdctx_context *ctx, const char *key);

/* ---- responses (response.c) --------------------------------------------------------- */
/* Queues the response a hook left for the next call (MHD_YES when there is none). */
enum MHD_Result mhdctx__queue_deferred(mhdctx_context *ctx, struct MHD_Connection *connection);
void mhdctx__drop_deferred(mhdctx_context *ctx);

/* ---- random bytes (random.c) ------------------------------------------------------ */
/* @n random bytes for ids from the calling thread's generator (ChaCha8, kernel-keyed). */
void mhdctx__random_bytes(unsigned char *buf, size_t n);
/* Four consecutive ChaCha blocks (RFC 8439 layout: 32-bit counter, 96-bit nonce), the
 * blocks of @counter to @counter + 3, with @rounds rounds, word-interleaved: word i of
 * block b (RFC 8439's bytes 4i..4i+3 of that block) is at @out + 16 * i + 4 * b. */
void mhdctx__chacha_4blocks(const unsigned char key[32], uint32_t counter,
                            const unsigned char nonce[12], int rounds, unsigned char out[256]);

/* ---- random ids (request_id.c) ---------------------------------------------------- */
/* Writes the 2 * @n lowercase hex digits of the @n bytes at @bytes (no NUL). */
void mhdctx__hex_encode(char *out, const unsigned char *bytes, size_t n);
/* "000102...feff": the two lowercase hex digits of every byte. */
extern const char mhdctx__hex_pairs[513];
/* Writes the two lowercase hex digits of @byte (no NUL): one byte, inline (a log line's
 * trace flags, on every line). */
static inline void mhdctx__hex_byte(char *out, unsigned char byte)
{
    memcpy(out, mhdctx__hex_pairs + 2 * byte, 2);
}
/* ASCII, whatever the locale. HTTP names, log levels and SQL keywords are ASCII, and the
 * <ctype.h> and strcasecmp() answers follow LC_CTYPE: in a Turkish locale "I" does not
 * lower to "i", so strcasecmp() held "x-request-id" and "X-Request-Id" different. */
static inline int mhdctx__ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}
static inline bool mhdctx__ascii_alnum(int c)
{
    return (c >= '0' && c <= '9') ||
           (mhdctx__ascii_lower(c) >= 'a' && mhdctx__ascii_lower(c) <= 'z');
}
/* " \t\n\v\f\r", the white space of the C locale (and of PostgreSQL's scanner). */
static inline bool mhdctx__ascii_space(int c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}
/* Whether @a and @b are equal without ASCII case in their first @n bytes, or up to the
 * NUL that ends both (strncasecmp() == 0, in any locale). Bytes are lowered only where
 * they differ: a header name is mostly sent as the application spelled it, and lowering
 * every byte of both cost about ten instructions a byte on every request. */
static inline bool mhdctx__ascii_case_equal_n(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x != y && mhdctx__ascii_lower(x) != mhdctx__ascii_lower(y))
            return false;
        if (x == '\0') /* then y is too: only '\0' lowers to '\0' */
            return true;
    }
    return true;
}
/* strcasecmp() == 0, in any locale. */
static inline bool mhdctx__ascii_case_equal(const char *a, const char *b)
{
    return mhdctx__ascii_case_equal_n(a, b, SIZE_MAX);
}
/* Whether the @n bytes at @bytes are all zero: W3C Trace Context forbids such ids. */
static inline bool mhdctx__all_zero(const unsigned char *bytes, size_t n)
{
    unsigned char any = 0;
    for (size_t i = 0; i < n; i++)
        any |= bytes[i];
    return any == 0;
}
/* Writes 2 * @nbytes lowercase hex digits of random, not all zero, and a NUL; @nbytes
 * above 64 is taken as 64, 0 writes the NUL only. */
void mhdctx__random_hex(char *out, size_t nbytes);

/* ---- logger (log.c) --------------------------------------------------------------- */
void mhdctx__log_line(mhdctx_context *ctx, mhdctx_log_level level, const mhdctx_field *fields,
                      size_t n, const char *fmt, va_list ap) MHDCTX_PRINTF(5, 0);
/* Ids of a line that are not the context's own: a client span. */
struct mhdctx__line_ids {
    const char *span_id;    /* replaces the context's span */
    const char *trace_id;   /* used when there is no context */
    const char *request_id; /* used when there is no context */
};
/* ---- the names of a line's call fields (field_names.c) --------------------------------- */

struct mhdctx__name_slot {
    size_t at;     /* where the key's text starts in the line (its '"') */
    uint32_t len;  /* the text's length, quotes included; 0: an empty slot */
    uint32_t next; /* for a key's own name: the first renamed candidate not known taken */
};

/* The line's top-level keys, for the call fields that need to look: a hash set built at
 * the first such field (most lines never build it). Lives on the stack of one line. */
typedef struct mhdctx__field_names {
    struct mhdctx__name_slot *slots; /* NULL until built; inline_slots or the heap */
    size_t cap, used;
    uint64_t seed;
    uint32_t core_next[8]; /* the slots' next, for the library's names not in the line */
    struct mhdctx__name_slot inline_slots[32];
} mhdctx__field_names;

/* Empty, without touching inline_slots (a line with fields pays three stores). */
static inline void mhdctx__field_names_init(mhdctx__field_names *names)
{
    names->slots = NULL;
    names->cap = names->used = 0;
}

/* Writes field @i's key - its own name, or the first free "field_<key>[_N]" - and the
 * ':' (the caller writes the value). The context's lock is held when @ctx is not NULL.
 * Out of memory: @b fails (the line is dropped and counted). */
void mhdctx__put_field_name(mhdctx__buf *b, mhdctx__field_names *names, mhdctx_context *ctx,
                            const mhdctx_field *fields, size_t i);
void mhdctx__field_names_release(mhdctx__field_names *names);

/* The library's own lines (the access line) append their fields to the buffer between
 * these two calls, without a field array: their keys are reserved names
 * (mhdctx__key_is_reserved), which no user key can repeat.
 * mhdctx__line_open() starts a line of a @level the caller found enabled, in the
 * thread's line buffer, with the time of @mono_ns (a CLOCK_MONOTONIC reading, as
 * mhdctx__monotonic_ns(); it may lag a step of the wall clock by up to a second), the level,
 * @plain_message (@len bytes of printable ASCII without '"' or '\\': written as it is) and,
 * with @ctx, the context's fields; it returns whether it took the context's lock
 * (mhdctx__context_lock_if_shared), which is then held until mhdctx__line_close(@locked),
 * which ends the line and hands it to the sink (or counts it dropped if the buffer
 * failed) and releases @b. */
bool mhdctx__line_open(mhdctx__buf *b, mhdctx_context *ctx, mhdctx_log_level level,
                       uint64_t mono_ns, const char *plain_message, size_t len);
void mhdctx__line_close(mhdctx__buf *b, mhdctx_context *ctx, mhdctx_log_level level,
                        bool locked);
/* As mhdctx_log_ctx() with the line's ids taken from @ids. */
void mhdctx__log_span(mhdctx_context *ctx, const struct mhdctx__line_ids *ids,
                      mhdctx_log_level level, const mhdctx_field *fields, size_t n,
                      const char *fmt, ...) MHDCTX_PRINTF(6, 7);

#endif /* MHDCTX_INTERNAL_H */
