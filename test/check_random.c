/*
 * check_random.c - the id generator: the ChaCha block function against RFC 8439's test
 * vectors (the same code runs 8 rounds for ids), byte statistics of the output, large
 * and odd-sized draws across refills, threads and fork.
 * (UUID and hex-id formatting on top of it: check_request_id.c.)
 */
#include "internal.h"

#include "child.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

/* The library's getrandom() calls, counted (linked with -Wl,--wrap=getrandom): a
 * generator keyed afresh asks the kernel; one that goes on with old state does not. */
ssize_t __real_getrandom(void *buf, size_t len, unsigned flags);
ssize_t __wrap_getrandom(void *buf, size_t len, unsigned flags);
static atomic_uint kernel_draws;

ssize_t __wrap_getrandom(void *buf, size_t len, unsigned flags)
{
    atomic_fetch_add(&kernel_draws, 1);
    return __real_getrandom(buf, len, flags);
}

static void unhex(const char *hex, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (unsigned char)v;
    }
}

/* Block @b of the four the generator computes at once, in RFC 8439's byte order. */
static void block_of(const unsigned char four[256], int b, unsigned char out[64])
{
    for (int i = 0; i < 16; i++)
        memcpy(out + 4 * i, four + 16 * i + 4 * b, 4);
}

static void chacha_block(const unsigned char key[32], uint32_t counter,
                         const unsigned char nonce[12], int rounds, unsigned char out[64])
{
    unsigned char four[256];
    mhdctx__chacha_4blocks(key, counter, nonce, rounds, four);
    block_of(four, 0, out);
}

/* RFC 8439 appendix A.1, test vector #1: all-zero key and nonce, counter 0. */
START_TEST(chacha20_zero_key_vector)
{
    unsigned char key[32] = {0}, nonce[12] = {0}, out[64], expected[64];
    unhex("76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
          "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586",
          expected, 64);
    chacha_block(key, 0, nonce, 20, out);
    ck_assert_mem_eq(out, expected, 64);
}
END_TEST

/* RFC 8439 section 2.3.2: key 00..1f, nonce 000000090000004a00000000, counter 1. */
START_TEST(chacha20_rfc_block_vector)
{
    unsigned char key[32], nonce[12], out[64], expected[64];
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)i;
    unhex("000000090000004a00000000", nonce, 12);
    unhex("10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
          "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e",
          expected, 64);
    chacha_block(key, 1, nonce, 20, out);
    ck_assert_mem_eq(out, expected, 64);
}
END_TEST

/* Lane b is the block of counter + b: each of the four equals the first block of a call
 * starting there (the first block is checked against the RFC above), across the
 * counter's wrap too. */
START_TEST(four_blocks_are_consecutive_blocks)
{
    unsigned char key[32], nonce[12] = {9, 8, 7}, four[256], one[64], lane[64], first[64];
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)(3 * i + 1);
    uint32_t starts[] = {0, 1, 12, 0xfffffffeu};
    for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
        mhdctx__chacha_4blocks(key, starts[s], nonce, 8, four);
        block_of(four, 0, first);
        for (int b = 0; b < 4; b++) {
            chacha_block(key, starts[s] + (uint32_t)b, nonce, 8, one);
            block_of(four, b, lane);
            ck_assert_mem_eq(lane, one, 64);
            if (b > 0)
                ck_assert(memcmp(lane, first, 64) != 0);
        }
    }
}
END_TEST

START_TEST(fewer_rounds_give_another_stream)
{
    unsigned char key[32] = {1}, nonce[12] = {0}, eight[64], twenty[64];
    chacha_block(key, 0, nonce, 8, eight);
    chacha_block(key, 0, nonce, 20, twenty);
    ck_assert(memcmp(eight, twenty, 64) != 0);
}
END_TEST

/* 1 MiB of output, drawn in odd sizes across many refills: every byte value appears
 * close to 1/256 of the time (a broken generator - zeros, repeats, a stuck block -
 * fails this by orders of magnitude), and no 16-byte draw repeats. */
START_TEST(output_is_evenly_spread_and_never_repeats)
{
    enum { TOTAL = 1 << 20 };
    unsigned char *buf = malloc(TOTAL);
    ck_assert_ptr_nonnull(buf);
    size_t sizes[] = {1, 7, 16, 40, 64, 100, 991, 5000};
    size_t done = 0;
    for (size_t i = 0; done < TOTAL; i++) {
        size_t n = sizes[i % 8];
        if (n > TOTAL - done)
            n = TOTAL - done;
        mhdctx__random_bytes(buf + done, n);
        done += n;
    }
    unsigned long counts[256] = {0};
    for (size_t i = 0; i < TOTAL; i++)
        counts[buf[i]]++;
    for (int v = 0; v < 256; v++) /* expected 4096 each; 5 sigma is about 320 */
        ck_assert_msg(counts[v] > 3600 && counts[v] < 4600, "byte %d seen %lu times", v,
                      counts[v]);
    for (size_t i = 16; i + 16 <= TOTAL; i += 4096) /* sampled: no block repeats */
        ck_assert(memcmp(buf, buf + i, 16) != 0);
    free(buf);
}
END_TEST

struct draw {
    pthread_t thread;
    unsigned char bytes[64];
};

static void *draw_main(void *arg)
{
    struct draw *d = arg;
    mhdctx__random_bytes(d->bytes, sizeof d->bytes);
    return NULL;
}

START_TEST(threads_draw_different_bytes)
{
    struct draw draws[8];
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(pthread_create(&draws[i].thread, NULL, draw_main, &draws[i]), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(draws[i].thread, NULL);
    for (int i = 0; i < 8; i++) {
        for (int j = i + 1; j < 8; j++)
            ck_assert(memcmp(draws[i].bytes, draws[j].bytes, 64) != 0);
    }
}
END_TEST

/* Threads one after another: each exits before the next starts, so each takes the
 * generator memory the one before gave back (thread_blocks.c keeps it for the next
 * thread), wiped: each draws bytes of its own, none all zero. */
START_TEST(threads_one_after_another_draw_different_bytes)
{
    struct draw draws[8];
    unsigned char zeros[64] = {0};
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(pthread_create(&draws[i].thread, NULL, draw_main, &draws[i]), 0);
        pthread_join(draws[i].thread, NULL);
        ck_assert(memcmp(draws[i].bytes, zeros, 64) != 0);
        for (int j = 0; j < i; j++)
            ck_assert(memcmp(draws[i].bytes, draws[j].bytes, 64) != 0);
    }
}
END_TEST

/* The block of a thread that exited is wiped before the next thread gets it: that
 * thread's generator is keyed from the kernel, not continued from the last one's key
 * (which, in a spare that kept it, would outlive its thread). */
START_TEST(a_thread_after_an_exited_one_is_keyed_afresh)
{
    struct draw first, second;
    ck_assert_int_eq(pthread_create(&first.thread, NULL, draw_main, &first), 0);
    ck_assert_int_eq(pthread_join(first.thread, NULL), 0);
    unsigned before = atomic_load(&kernel_draws);
    ck_assert_uint_gt(before, 0);
    ck_assert_int_eq(pthread_create(&second.thread, NULL, draw_main, &second), 0);
    ck_assert_int_eq(pthread_join(second.thread, NULL), 0);
    unsigned after = atomic_load(&kernel_draws);
    ck_assert_uint_gt(after, before);
}
END_TEST

/* A thread whose first draw asks for no bytes, then for some, gets random bytes: the
 * empty draw must not mark the thread's unkeyed (all-zero) buffer as ready. */
static void *empty_then_real_draw(void *arg)
{
    unsigned char *bytes = arg;
    mhdctx__random_bytes(bytes, 0);
    mhdctx__random_bytes(bytes, 64);
    return NULL;
}

START_TEST(an_empty_first_draw_leaves_the_generator_to_be_keyed)
{
    unsigned char bytes[64], zeros[64] = {0};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, empty_then_real_draw, bytes), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert(memcmp(bytes, zeros, sizeof bytes) != 0);
}
END_TEST

/* In the child: 64 bytes from the generator, written to @fd. */
static int write_random_bytes(void *unused, int fd)
{
    (void)unused;
    unsigned char bytes[64];
    mhdctx__random_bytes(bytes, sizeof bytes);
    return write(fd, bytes, sizeof bytes) == (ssize_t)sizeof bytes ? 0 : 1;
}

/* After a fork, parent and child draw different bytes from the same inherited state. */
START_TEST(forked_child_draws_other_bytes)
{
    unsigned char first[16];
    mhdctx__random_bytes(first, sizeof first); /* the state is keyed now */
    unsigned char parent[64], child[64];
    size_t got = 0;
    ck_assert_int_eq(child_output(write_random_bytes, NULL, child, sizeof child, &got), 0);
    ck_assert_uint_eq(got, sizeof child);
    mhdctx__random_bytes(parent, sizeof parent);
    ck_assert(memcmp(parent, child, sizeof child) != 0);
}
END_TEST

/* The same through _Fork(), which runs no atfork handler: the kernel zeroes the
 * generator's memory in the child (it used to go on with the parent's stream and repeat
 * its ids). */
START_TEST(child_of_fork_without_atfork_handlers_draws_other_bytes)
{
    unsigned char first[16];
    mhdctx__random_bytes(first, sizeof first);
    unsigned char parent[64], child[64];
    size_t got = 0;
    ck_assert_int_eq(
        child_output_of(_Fork, write_random_bytes, NULL, child, sizeof child, &got), 0);
    ck_assert_uint_eq(got, sizeof child);
    mhdctx__random_bytes(parent, sizeof parent);
    ck_assert(memcmp(parent, child, sizeof child) != 0);
}
END_TEST

static Suite *random_suite(void)
{
    Suite *s = suite_create("random");
    TCase *tc = tcase_create("chacha");
    tcase_add_test(tc, chacha20_zero_key_vector);
    tcase_add_test(tc, chacha20_rfc_block_vector);
    tcase_add_test(tc, four_blocks_are_consecutive_blocks);
    tcase_add_test(tc, fewer_rounds_give_another_stream);
    suite_add_tcase(s, tc);
    tc = tcase_create("generator");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, output_is_evenly_spread_and_never_repeats);
    tcase_add_test(tc, threads_draw_different_bytes);
    tcase_add_test(tc, threads_one_after_another_draw_different_bytes);
    tcase_add_test(tc, a_thread_after_an_exited_one_is_keyed_afresh);
    tcase_add_test(tc, an_empty_first_draw_leaves_the_generator_to_be_keyed);
    tcase_add_test(tc, forked_child_draws_other_bytes);
    tcase_add_test(tc, child_of_fork_without_atfork_handlers_draws_other_bytes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(random_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failures = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failures ? 1 : 0;
}
