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
 * contexts. A thread's blocks are freed when it exits (a pthread key's destructor);
 * the main thread's stay until the process ends. A block freed on another thread (a
 * worker holding the last reference) joins that thread's cache.
 *
 * Under AddressSanitizer and ThreadSanitizer blocks go straight back to malloc: ASan
 * then reports a use after the last reference, and TSan's reports name each context's
 * own allocation (and its memory figures, checked by the soak test, stay the
 * allocator's).
 */
#include "internal.h"

#include <pthread.h>

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

static _Thread_local struct block_cache cache;
/* &cache once the thread's exit will free it, else NULL. initial-exec, like the current
 * context: one load instead of a __tls_get_addr call. A pointer, not the cache itself:
 * static TLS is scarce for a library that may be dlopen()ed. */
static _Thread_local struct block_cache *thread_cache
    __attribute__((tls_model("initial-exec")));
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static bool exit_key_made;

static void free_cache(void *arg)
{
    struct block_cache *c = arg;
    while (c->n > 0)
        mhdctx__free(c->blocks[--c->n]);
    thread_cache = NULL; /* a later give on this thread registers again */
}

static void make_exit_key(void)
{
    exit_key_made = pthread_key_create(&exit_key, free_cache) == 0;
}

/* The library unloaded (dlclose): no thread may call into it at its exit. Blocks cached
 * by live threads are then left to the process. */
__attribute__((destructor)) static void forget_exit_key(void)
{
    if (exit_key_made)
        pthread_key_delete(exit_key);
}

/* The thread's first give: arranges for its exit to free the cache's blocks. NULL when
 * that cannot be done (blocks are then simply freed). */
static struct block_cache *register_thread_cache(void)
{
    pthread_once(&exit_key_once, make_exit_key);
    if (exit_key_made && pthread_setspecific(exit_key, &cache) == 0)
        thread_cache = &cache;
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
        struct block_cache *c = thread_cache ? thread_cache : register_thread_cache();
        if (c && c->n < MAX_CACHED) {
            c->blocks[c->n++] = block;
            return;
        }
    }
    mhdctx__free(block);
}
