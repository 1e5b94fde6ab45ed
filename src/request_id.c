/*
 * request_id.c - validation of incoming request ids (pure) and fast UUID v4 generation.
 *
 * Ids are generated from a per-thread pool of random bytes filled from getrandom(2) in
 * bulk: one system call per 256 ids instead of one per id. A forked child must not
 * reuse its parent's pool (it would repeat the parent's next ids), so a fork bumps a
 * generation counter that invalidates every inherited pool.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <uuid/uuid.h>

/* [A-Za-z0-9._~:@+/=-]: unreserved URL characters plus the ones base64 and common
 * tracing ids use; nothing that can break out of a header, a JSON string, a shell word
 * or an SQL comment. */
static bool id_char_ok(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("._~:@+/=-", c) != NULL;
}

mhdctx_id_verdict mhdctx_request_id_check(const char *id, size_t len, size_t max_len)
{
    if (id == NULL || len == 0)
        return MHDCTX_ID_EMPTY;
    if (len > max_len)
        return MHDCTX_ID_TOO_LONG;
    for (size_t i = 0; i < len; i++) {
        if (!id_char_ok((unsigned char)id[i]))
            return MHDCTX_ID_INVALID_CHAR;
    }
    return MHDCTX_ID_VALID;
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

/* ---- random pool -------------------------------------------------------------------- */

#define POOL_SIZE 8192 /* 200 requests per refill (16 + 16 + 8 bytes each) */

static atomic_uint fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add(&fork_generation, 1);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

struct random_pool {
    unsigned char bytes[POOL_SIZE];
    size_t used;
    unsigned generation;
    bool filled;
};

static _Thread_local struct random_pool pool;

static bool pool_refill(void)
{
    size_t got = 0;
    while (got < POOL_SIZE) {
        ssize_t n = getrandom(pool.bytes + got, POOL_SIZE - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        got += (size_t)n;
    }
    pool.used = 0;
    pool.filled = true;
    pool.generation = atomic_load_explicit(&fork_generation, memory_order_relaxed);
    return true;
}

/* Copies @n (<= 64) random bytes to @out. */
static bool pool_take(unsigned char *out, size_t n)
{
    unsigned gen = atomic_load_explicit(&fork_generation, memory_order_relaxed);
    if (!pool.filled || pool.used + n > POOL_SIZE || pool.generation != gen) {
        pthread_once(&atfork_once, register_atfork);
        if (!pool_refill())
            return false;
    }
    memcpy(out, pool.bytes + pool.used, n);
    /* Wipe what was handed out: a later memory disclosure cannot recover past ids. */
    memset(pool.bytes + pool.used, 0, n);
    pool.used += n;
    return true;
}

static void random_bytes(unsigned char *out, size_t n)
{
    if (!pool_take(out, n)) {
        /* No getrandom (seccomp, ancient kernel): libuuid has its own fallbacks. */
        for (size_t done = 0; done < n; done += 16) {
            uuid_t u;
            uuid_generate_random(u);
            memcpy(out + done, u, n - done < 16 ? n - done : 16);
        }
    }
}

/* Two lowercase hex digits per byte, from a table: no division, no printf. */
static void put_hex(char *out, const unsigned char *bytes, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0xf];
    }
}

mhdctx_error mhdctx_uuid_v4(char out[MHDCTX_UUID_LEN + 1])
{
    unsigned char u[16];
    if (out == NULL)
        return MHDCTX_EINVAL;
    random_bytes(u, sizeof u);
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    /* 8-4-4-4-12 */
    put_hex(out, u, 4);
    out[8] = '-';
    put_hex(out + 9, u + 4, 2);
    out[13] = '-';
    put_hex(out + 14, u + 6, 2);
    out[18] = '-';
    put_hex(out + 19, u + 8, 2);
    out[23] = '-';
    put_hex(out + 24, u + 10, 6);
    out[MHDCTX_UUID_LEN] = '\0';
    return MHDCTX_OK;
}

void mhdctx__random_hex(char *out, size_t nbytes)
{
    unsigned char bytes[64];
    if (nbytes > sizeof bytes)
        nbytes = sizeof bytes;
    static const unsigned char zero[64];
    do { /* an all-zero trace or span id is invalid: draw again */
        random_bytes(bytes, nbytes);
    } while (memcmp(bytes, zero, nbytes) == 0);
    put_hex(out, bytes, nbytes);
    out[2 * nbytes] = '\0';
}
