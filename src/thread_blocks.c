/*
 * thread_blocks.c - each thread's blocks of library state (its line storage, its random
 * generator, its cache of context blocks), mapped at its first use, given back at its
 * exit.
 *
 * Why not thread-local variables: any initial-exec access in a shared library (the
 * current context is one: one load, 1-2 ns) puts the library's whole thread-local
 * segment into the static TLS block, which a library loaded with dlopen() after start
 * finds a few hundred bytes of. With the blocks themselves in TLS (9.9 KB) dlopen()
 * failed ("cannot allocate memory in static TLS block"); here TLS holds pointers only.
 * Each module keeps its own initial-exec pointer to its block for its fast path.
 *
 * Why mappings, not malloc: a child of fork() has only the forking thread, and the
 * blocks of the others, whose pointers were in their TLS, would be leaks to valgrind in
 * every child. A block asked for with wipe_on_fork is one the kernel zeroes in a child
 * (MADV_WIPEONFORK, Linux 4.14): a child of fork(), _Fork() or clone() never keeps the
 * random generator's state, even where no pthread_atfork handler runs.
 *
 * Blocks of threads that exited are kept (up to SPARES a slot) for the next threads: a
 * mapping, its advice and its unmapping (which interrupts the other CPUs) cost a thread
 * that draws one id 18-23 us more than one that does not, 2-3 us with the spares (2
 * vCPUs, threads made and joined one after another), which a thread-per-connection
 * server would pay per connection. The spares are taken and put back with atomic
 * exchanges, no lock, so a child of fork() never finds one held.
 *
 * The key's destructor stays registered for the life of the process: the library is
 * linked with -z nodelete (Makefile.am), so a dlclose() cannot unmap the code a thread's
 * exit calls, and no ELF destructor deletes the key (one ran at exit() too, while other
 * threads still logged, and their first lines found no block).
 */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#define SPARES 64
/* Mappings are made of these (the kernel rounds up to its own page size). */
#define PAGE 4096u

static _Thread_local void *blocks[MHDCTX__THREAD_SLOTS]
    __attribute__((tls_model("initial-exec")));
static _Thread_local const struct mhdctx__thread_block_kind *block_kinds[MHDCTX__THREAD_SLOTS]
    __attribute__((tls_model("initial-exec")));
static _Atomic(void *) spares[MHDCTX__THREAD_SLOTS][SPARES];
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static bool exit_key_made;

static size_t mapped_size(const struct mhdctx__thread_block_kind *kind)
{
    return (kind->size + PAGE - 1) / PAGE * PAGE;
}

static void *take_spare(enum mhdctx__thread_slot slot)
{
    for (int i = 0; i < SPARES; i++) {
        if (atomic_load_explicit(&spares[slot][i], memory_order_relaxed) == NULL)
            continue;
        void *block = atomic_exchange_explicit(&spares[slot][i], NULL, memory_order_acquire);
        if (block)
            return block;
    }
    return NULL;
}

static bool keep_spare(enum mhdctx__thread_slot slot, void *block)
{
    for (int i = 0; i < SPARES; i++) {
        void *empty = NULL;
        if (atomic_compare_exchange_strong_explicit(&spares[slot][i], &empty, block,
                                                    memory_order_release, memory_order_relaxed))
            return true;
    }
    return false;
}

static void *map_block(const struct mhdctx__thread_block_kind *kind)
{
    if (mhdctx__mapping_refused())
        return NULL;
    void *block = take_spare(kind->slot);
    if (block)
        return block; /* zeroed when it was given back */
    block = mmap(NULL, mapped_size(kind), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
    if (block == MAP_FAILED)
        return NULL;
#ifdef MADV_WIPEONFORK
    /* Older kernels refuse it (EINVAL): the generator's fork counter still covers a
     * fork() there. */
    if (kind->wipe_on_fork)
        madvise(block, mapped_size(kind), MADV_WIPEONFORK);
#endif
    return block;
}

static void give_back(const struct mhdctx__thread_block_kind *kind, void *block)
{
    /* What the block held (a generator's key) must not outlive its thread, and the next
     * thread expects zeros. */
    explicit_bzero(block, kind->size);
    if (!keep_spare(kind->slot, block))
        munmap(block, mapped_size(kind));
}

/* The thread exits: each block's module lets go of it, then it is given back. A block
 * asked for again by a later destructor registers the key again, and glibc calls this
 * once more for it. */
static void give_back_thread_blocks(void *unused)
{
    (void)unused;
    for (int i = 0; i < MHDCTX__THREAD_SLOTS; i++) {
        void *block = blocks[i];
        const struct mhdctx__thread_block_kind *kind = block_kinds[i];
        if (block == NULL)
            continue;
        blocks[i] = NULL;
        if (kind->cleanup)
            kind->cleanup(block);
        give_back(kind, block);
    }
}

static void make_exit_key(void)
{
    exit_key_made = pthread_key_create(&exit_key, give_back_thread_blocks) == 0;
}

void *mhdctx__thread_block(const struct mhdctx__thread_block_kind *kind)
{
    if (blocks[kind->slot])
        return blocks[kind->slot];
    pthread_once(&exit_key_once, make_exit_key);
    /* Without the key the block could never be given back: the caller does without. */
    if (!exit_key_made || pthread_setspecific(exit_key, blocks) != 0)
        return NULL;
    block_kinds[kind->slot] = kind;
    blocks[kind->slot] = map_block(kind);
    return blocks[kind->slot];
}
