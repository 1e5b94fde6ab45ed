/*
 * thread_blocks.c - each thread's blocks of library state (its line storage, its random
 * generator, its cache of context blocks), on the heap, from its first use to its exit.
 *
 * Why not thread-local variables: any initial-exec access in a shared library (the
 * current context is one: one load, 1-2 ns) puts the library's whole thread-local
 * segment into the static TLS block, which a library loaded with dlopen() after start
 * finds a few hundred bytes of. With the blocks themselves in TLS (9.9 KB) dlopen()
 * failed ("cannot allocate memory in static TLS block"); here TLS holds pointers only.
 * Each module keeps its own initial-exec pointer to its block for its fast path.
 *
 * A block asked for with wipe_on_fork is a private mapping the kernel zeroes in a child
 * (MADV_WIPEONFORK, Linux 4.14): a child of fork(), _Fork() or clone() never keeps the
 * random generator's state, even where no pthread_atfork handler runs.
 */
#include "internal.h"

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

struct slot_kind {
    size_t size;
    bool wipe_on_fork;
    void (*cleanup)(void *block);
};

/* Set at a slot's first use, under kinds_lock, the same for every thread; read by a
 * thread that has the slot's block, which took the lock after that. */
static struct slot_kind kinds[MHDCTX__THREAD_SLOTS];
static bool kind_known[MHDCTX__THREAD_SLOTS];
static pthread_mutex_t kinds_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local void *blocks[MHDCTX__THREAD_SLOTS]
    __attribute__((tls_model("initial-exec")));
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static bool exit_key_made;

static size_t mapped_size(size_t size)
{
    size_t page = 4096;
    return (size + page - 1) / page * page;
}

static void *allocate(const struct slot_kind *kind)
{
    if (!kind->wipe_on_fork)
        return calloc(1, kind->size);
    void *block = mmap(NULL, mapped_size(kind->size), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (block == MAP_FAILED)
        return NULL;
#ifdef MADV_WIPEONFORK
    /* Older kernels refuse it (EINVAL): the generator's fork counter still covers a
     * fork() there. */
    madvise(block, mapped_size(kind->size), MADV_WIPEONFORK);
#endif
    return block;
}

static void release(const struct slot_kind *kind, void *block)
{
    /* Before the memory goes back: what the block held (a generator's key) must not
     * outlive it. */
    explicit_bzero(block, kind->size);
    if (kind->wipe_on_fork)
        munmap(block, mapped_size(kind->size));
    else
        free(block);
}

/* The thread exits: each block's module lets go of it, then it is freed. A block asked
 * for again by a later destructor registers the key again, and glibc calls this once
 * more for it. */
static void release_thread_blocks(void *unused)
{
    (void)unused;
    for (int i = 0; i < MHDCTX__THREAD_SLOTS; i++) {
        void *block = blocks[i];
        if (block == NULL)
            continue;
        blocks[i] = NULL;
        if (kinds[i].cleanup)
            kinds[i].cleanup(block);
        release(&kinds[i], block);
    }
}

static void make_exit_key(void)
{
    exit_key_made = pthread_key_create(&exit_key, release_thread_blocks) == 0;
}

/* The library unloaded (dlclose): no thread may call into it at its exit. Blocks of
 * live threads are then left to the process. */
__attribute__((destructor)) static void forget_exit_key(void)
{
    if (exit_key_made)
        pthread_key_delete(exit_key);
}

void *mhdctx__thread_block(enum mhdctx__thread_slot slot, size_t size, bool wipe_on_fork,
                           void (*cleanup)(void *block))
{
    if (blocks[slot])
        return blocks[slot];
    pthread_once(&exit_key_once, make_exit_key);
    /* Without the key the block could never be freed: the caller does without. */
    if (!exit_key_made || pthread_setspecific(exit_key, blocks) != 0)
        return NULL;
    pthread_mutex_lock(&kinds_lock);
    if (!kind_known[slot]) {
        kinds[slot] = (struct slot_kind){size, wipe_on_fork, cleanup};
        kind_known[slot] = true;
    }
    pthread_mutex_unlock(&kinds_lock);
    blocks[slot] = allocate(&kinds[slot]);
    return blocks[slot];
}
