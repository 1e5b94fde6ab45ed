/*
 * random.c - random bytes for request, trace and span ids: 40 bytes per request.
 *
 * Asking the kernel for them costs about 3.5 ns per byte on the machines we measured
 * (getrandom(2) runs a generic ChaCha20), more than the rest of the id. Instead each
 * thread runs ChaCha8 in user space, keyed from getrandom(2): the construction of Go's
 * runtime (ChaCha8Rand) and, with 20 rounds, of OpenBSD's arc4random. ChaCha8 keeps a
 * wide margin (the best known attacks reach 7 rounds) at 2.5 times ChaCha20's speed.
 *
 * Fast key erasure: each refill computes BLOCKS blocks, takes the first 32 bytes as the
 * next key and hands out the rest; a disclosed state cannot recover earlier output.
 * Bytes handed out are wiped from the buffer. Every RESEED_REFILLS refills fresh kernel
 * randomness is mixed into the key. Parent and child never share output: the state is
 * in memory the kernel zeroes in a child (MADV_WIPEONFORK: fork(), _Fork(), clone()),
 * and a fork() also bumps a generation counter that makes every inherited state rekey
 * from the kernel (for kernels without it).
 * Without getrandom (seccomp, old kernels) the key comes from libuuid's generator.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <uuid/uuid.h>

#define BLOCKS         16 /* a multiple of 4: computed four at a time */
#define KEY_BYTES      32
#define RESEED_REFILLS 64 /* about 63 KiB of output per kernel reseed */

/* Four blocks at once, one per lane: GCC and Clang turn these vectors into SSE2 or NEON
 * registers (scalar code on targets without), four times the throughput of one block. */
typedef uint32_t lanes4 __attribute__((vector_size(16)));

#define ROTL(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define QUARTER(a, b, c, d)                                                                    \
    do {                                                                                       \
        a += b, d ^= a, d = ROTL(d, 16);                                                       \
        c += d, b ^= c, b = ROTL(b, 12);                                                       \
        a += b, d ^= a, d = ROTL(d, 8);                                                        \
        c += d, b ^= c, b = ROTL(b, 7);                                                        \
    } while (0)

static uint32_t load32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
static void store32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}
#endif

void mhdctx__chacha_4blocks(const unsigned char key[32], uint32_t counter,
                            const unsigned char nonce[12], int rounds, unsigned char out[256])
{
    uint32_t words[16] = {0x61707865, 0x3320646e, 0x79622d32,
                          0x6b206574}; /* "expand 32-byte k" */
    for (int i = 0; i < 8; i++)
        words[4 + i] = load32(key + 4 * i);
    words[12] = counter;
    for (int i = 0; i < 3; i++)
        words[13 + i] = load32(nonce + 4 * i);
    lanes4 in[16], x[16];
    for (int i = 0; i < 16; i++)
        in[i] = (lanes4){words[i], words[i], words[i], words[i]};
    in[12] += (lanes4){0, 1, 2, 3}; /* lane b computes block counter + b */
    memcpy(x, in, sizeof x);
    for (int r = 0; r < rounds; r += 2) {
        QUARTER(x[0], x[4], x[8], x[12]);
        QUARTER(x[1], x[5], x[9], x[13]);
        QUARTER(x[2], x[6], x[10], x[14]);
        QUARTER(x[3], x[7], x[11], x[15]);
        QUARTER(x[0], x[5], x[10], x[15]);
        QUARTER(x[1], x[6], x[11], x[12]);
        QUARTER(x[2], x[7], x[8], x[13]);
        QUARTER(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++) {
        lanes4 sum = x[i] + in[i];
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(out + 16 * i, &sum, sizeof sum); /* one store for four little-endian words */
#else
        for (int b = 0; b < 4; b++)
            store32(out + 16 * i + 4 * b, sum[b]);
#endif
    }
}

/* ---- per-thread state ------------------------------------------------------------------ */

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

struct rng {
    unsigned char key[KEY_BYTES];
    unsigned char out[BLOCKS * 64]; /* key material first, then output */
    size_t used;                    /* bytes of out consumed (KEY_BYTES: fresh) */
    unsigned refills;               /* since the last kernel reseed */
    unsigned generation;
    bool keyed;
};

/* The thread's generator (thread_blocks.c, wiped in a child of fork) once it is keyed
 * (set by refill, never before: an unkeyed buffer is zeros), else NULL. initial-exec,
 * like the current context: one load instead of a __tls_get_addr call. */
static _Thread_local struct rng *keyed_rng __attribute__((tls_model("initial-exec")));

static void forget_rng(void *block)
{
    (void)block;
    keyed_rng = NULL;
}

static const struct mhdctx__thread_block_kind rng_kind = {.slot = MHDCTX__SLOT_RNG,
                                                          .size = sizeof(struct rng),
                                                          .wipe_on_fork = true,
                                                          .cleanup = forget_rng};

static bool kernel_bytes(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        got += (size_t)r;
    }
    return true;
}

/* The kernel's bytes, or libuuid's where getrandom fails: the generator's seed, and the
 * ids themselves where there is no generator (no memory for one). */
static void system_random_bytes(unsigned char *buf, size_t n)
{
    if (kernel_bytes(buf, n))
        return;
    unsigned char id[16];
    while (n > 0) {
        uuid_generate_random(id);
        size_t chunk = n < sizeof id ? n : sizeof id;
        memcpy(buf, id, chunk);
        buf += chunk;
        n -= chunk;
    }
    explicit_bzero(id, sizeof id); /* may be part of a seed */
}

/* Mixes fresh randomness into the key (XOR: as strong as the stronger of the two). */
static void reseed(struct rng *r)
{
    unsigned char fresh[KEY_BYTES];
    system_random_bytes(fresh, sizeof fresh);
    for (size_t i = 0; i < KEY_BYTES; i++)
        r->key[i] ^= fresh[i];
    explicit_bzero(fresh, sizeof fresh); /* a plain memset of a dead local is optimized out */
    r->refills = 0;
}

static void refill(struct rng *r)
{
    unsigned gen = atomic_load_explicit(&fork_generation, memory_order_relaxed);
    if (!r->keyed || r->generation != gen || ++r->refills >= RESEED_REFILLS) {
        pthread_once(&atfork_once, register_atfork);
        reseed(r);
        r->keyed = true;
        r->generation = gen;
    }
    static const unsigned char nonce[12];
    for (uint32_t b = 0; b < BLOCKS; b += 4)
        mhdctx__chacha_4blocks(r->key, b, nonce, 8, r->out + 64 * b);
    memcpy(r->key, r->out, KEY_BYTES); /* the next key; never handed out */
    memset(r->out, 0, KEY_BYTES);
    r->used = KEY_BYTES;
    keyed_rng = r; /* the fast path's way in, from the first keyed output on */
}

/* Copies @n bytes out and wipes them, 8 at a time: ids take 16 or 24 bytes, for which
 * a call to memcpy and one to memset cost more than the copy. */
static inline void take(struct rng *r, unsigned char *buf, size_t n)
{
    unsigned char *from = r->out + r->used;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(buf + i, from + i, 8);
        memset(from + i, 0, 8);
    }
    for (; i < n; i++) {
        buf[i] = from[i];
        from[i] = 0;
    }
    r->used += n;
}

/* Out of line: the fast path, kept apart, saves no registers and makes no frame. */
static __attribute__((noinline)) void random_bytes_slow(unsigned char *buf, size_t n,
                                                        unsigned gen)
{
    struct rng *r = mhdctx__thread_block(&rng_kind);
    if (r == NULL) {
        system_random_bytes(buf, n);
        return;
    }
    while (n > 0) {
        if (!r->keyed || r->used == sizeof r->out || r->generation != gen)
            refill(r);
        size_t chunk = sizeof r->out - r->used;
        if (chunk > n)
            chunk = n;
        take(r, buf, chunk); /* handed out: gone from here */
        buf += chunk;
        n -= chunk;
    }
}

void mhdctx__random_bytes(unsigned char *buf, size_t n)
{
    unsigned gen = atomic_load_explicit(&fork_generation, memory_order_relaxed);
    struct rng *r = keyed_rng;
    /* keyed: false in a child whose kernel wiped the block (MADV_WIPEONFORK) */
    if (r && r->keyed && r->generation == gen && n <= sizeof r->out - r->used)
        take(r, buf, n);
    else
        random_bytes_slow(buf, n, gen);
}
