/*
 * block_cache.c - each thread keeps the context blocks it frees for its next requests.
 *
 * Why: a server has many requests in flight (50 keep-alive connections on one epoll
 * thread in the benchmark), so a thread allocates dozens of contexts before it frees
 * one. glibc's per-thread cache holds 7 chunks of a size; past that, malloc and free
 * take the arena's path, about 250 instructions a request. This cache holds up to
 * MAX_CACHED blocks a thread: taking and giving one is a few instructions.
 *
 * Memory: at most MAX_CACHED * MHDCTX__BLOCK_BYTES (64 KiB) per thread that frees
 * contexts. A thread's blocks are freed when it exits (thread_blocks.c); the main
 * thread's stay until the process ends. A block freed on another thread (a
 * worker holding the last reference) joins that thread's cache.
 *
 * Under AddressSanitizer and ThreadSanitizer blocks go straight back to malloc: ASan
 * then reports a use after the last reference, and TSan's reports name each context's
 * own allocation (and its memory figures, checked by the soak test, stay the
 * allocator's).
 */
#include "internal.h"

#define MAX_CACHED 64

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CACHE_BLOCKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CACHE_BLOCKS 0
#endif
#endif
#ifndef CACHE_BLOCKS
#define CACHE_BLOCKS 1
#endif

const bool mhdctx__block_cache_on = CACHE_BLOCKS;

struct block_cache {
    void *blocks[MAX_CACHED];
    unsigned n;
};

/* The thread's cache (thread_blocks.c) once it has one, else NULL. initial-exec, like
 * the current context: one load instead of a __tls_get_addr call. */
static _Thread_local struct block_cache *thread_cache
    __attribute__((tls_model("initial-exec")));

/* The thread exits: its cached blocks are freed. */
static void free_cache(void *arg)
{
    struct block_cache *c = arg;
    while (c->n > 0)
        mhdctx__free(c->blocks[--c->n]);
    thread_cache = NULL; /* a later give on this thread makes a cache again */
}

static const struct mhdctx__thread_block_kind cache_kind = {
    .slot = MHDCTX__SLOT_CACHE, .size = sizeof(struct block_cache), .cleanup = free_cache};

/* The thread's first give. NULL when no cache can be had (blocks are then freed). */
static struct block_cache *make_thread_cache(void)
{
    thread_cache = mhdctx__thread_block(&cache_kind);
    return thread_cache;
}

void *mhdctx__block_take(void)
{
    struct block_cache *c = thread_cache;
    if (c && c->n > 0)
        return c->blocks[--c->n];
    return mhdctx__malloc(MHDCTX__BLOCK_BYTES);
}

void mhdctx__block_give(void *block)
{
    if (CACHE_BLOCKS && block) {
        struct block_cache *c = thread_cache ? thread_cache : make_thread_cache();
        if (c && c->n < MAX_CACHED) {
            c->blocks[c->n++] = block;
            return;
        }
    }
    mhdctx__free(block);
}
