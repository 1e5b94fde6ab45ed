/*
 * check_block_cache.c - the per-thread cache of context blocks: a block given back is
 * the next one taken, at most 64 are kept, a thread's blocks are freed at its exit,
 * and contexts live in blocks whatever their path's length. Under AddressSanitizer and
 * ThreadSanitizer the cache is off (blocks go back to malloc): the same tests check
 * that instead.
 *
 * The fault-injection build's counters make the cache visible: with the allocation
 * countdown at 0 the next allocation fails, so a take that succeeds came from the
 * cache; mhdctx__alloc_live counts blocks allocated and not yet freed.
 */
#include "internal.h"

#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

extern atomic_long mhdctx__alloc_countdown;
extern atomic_long mhdctx__alloc_live;

/* Takes a block with every allocation failing: NULL unless the cache had one. */
static void *take_cached_only(void)
{
    atomic_store(&mhdctx__alloc_countdown, 0);
    void *block = mhdctx__block_take();
    atomic_store(&mhdctx__alloc_countdown, -1);
    return block;
}

START_TEST(a_block_given_back_is_taken_next)
{
    void *first = mhdctx__block_take();
    ck_assert_ptr_nonnull(first);
    memset(first, 0xa5, MHDCTX__BLOCK_BYTES); /* the whole size is usable */
    mhdctx__block_give(first);
    void *again = take_cached_only();
    if (mhdctx__block_cache_on)
        ck_assert_ptr_eq(again, first);
    else
        ck_assert_ptr_null(again); /* ASan, TSan: given back to malloc */
    mhdctx__block_give(again);
}
END_TEST

START_TEST(at_most_64_blocks_are_kept)
{
    enum { GIVEN = 70 };
    void *blocks[GIVEN];
    for (int i = 0; i < GIVEN; i++) {
        blocks[i] = mhdctx__block_take();
        ck_assert_ptr_nonnull(blocks[i]);
    }
    for (int i = 0; i < GIVEN; i++)
        mhdctx__block_give(blocks[i]);
    int cached = 0;
    void *back[GIVEN];
    while (cached < GIVEN && (back[cached] = take_cached_only()) != NULL)
        cached++;
    ck_assert_int_eq(cached, mhdctx__block_cache_on ? 64 : 0);
    for (int i = 0; i < cached; i++)
        mhdctx__block_give(back[i]);
}
END_TEST

static void *fill_cache_and_exit(void *arg)
{
    (void)arg;
    void *blocks[10];
    for (int i = 0; i < 10; i++)
        blocks[i] = mhdctx__block_take();
    for (int i = 0; i < 10; i++)
        mhdctx__block_give(blocks[i]);
    return NULL;
}

START_TEST(a_threads_blocks_are_freed_at_its_exit)
{
    long before = atomic_load(&mhdctx__alloc_live);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, fill_cache_and_exit, NULL), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    long after = atomic_load(&mhdctx__alloc_live);
    ck_assert_int_eq(after, before);
}
END_TEST

/* A context takes a block when its path and query fit, and any path still works. */
START_TEST(contexts_of_any_length_are_made_and_freed)
{
    /* the uri is length + 2 bytes; a block holds the struct, the uri and its NUL */
    size_t fits = MHDCTX__BLOCK_BYTES - sizeof(mhdctx_context) - 3;
    size_t lengths[] = {0, 1, 400, fits, fits + 1, 5000};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        char *uri = malloc(lengths[i] + 3);
        ck_assert_ptr_nonnull(uri);
        memset(uri, 'p', lengths[i] + 2);
        uri[0] = '/';
        uri[lengths[i] + 2] = '\0';
        if (lengths[i] > 2)
            uri[lengths[i] / 2] = '?';            /* a query in the middle */
        for (int round = 0; round < 3; round++) { /* the second and third reuse blocks */
            mhdctx_context *ctx = mhdctx__context_create(uri);
            ck_assert_ptr_nonnull(ctx);
            ck_assert(ctx->in_block == (lengths[i] <= fits));
            size_t path_len = strlen(mhdctx_path(ctx));
            const char *query = mhdctx_query(ctx);
            ck_assert_uint_eq(path_len + (query ? strlen(query) + 1 : 0), lengths[i] + 2);
            mhdctx_context_unref(ctx);
        }
        free(uri);
    }
}
END_TEST

static Suite *block_cache_suite(void)
{
    Suite *s = suite_create("block_cache");
    TCase *tc = tcase_create("cache");
    tcase_add_test(tc, a_block_given_back_is_taken_next);
    tcase_add_test(tc, at_most_64_blocks_are_kept);
    tcase_add_test(tc, a_threads_blocks_are_freed_at_its_exit);
    tcase_add_test(tc, contexts_of_any_length_are_made_and_freed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(block_cache_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
