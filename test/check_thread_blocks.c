/*
 * check_thread_blocks.c - the library loaded with dlopen() after the program started,
 * as a plugin or a language binding loads it: its thread-local storage is pointers
 * only (the blocks are mappings, thread_blocks.c), so it fits the little static TLS
 * left then. With the blocks themselves in TLS (9.9 KB) dlopen() failed: "cannot
 * allocate memory in static TLS block". Threads of the loaded library draw ids, log
 * and free contexts, and exit (their blocks given back by the library's key
 * destructor, which dlclose() leaves in place: the library is linked -z nodelete).
 *
 * This program is not linked with the library: MHDCTX_LIBRARY names the built one.
 * (The generator's memory wiped in a child: check_random.c.)
 */
#include "mhdctx.h"

#include <check.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void *library;

static void load_library(void)
{
    library = dlopen(MHDCTX_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(library != NULL, "dlopen: %s", dlerror());
}

static void *symbol(const char *name)
{
    void *p = dlsym(library, name);
    ck_assert_msg(p != NULL, "dlsym %s: %s", name, dlerror());
    return p;
}

START_TEST(library_loads_after_start_and_draws_ids)
{
    load_library();
    mhdctx_error (*uuid_v4)(char *) = (mhdctx_error(*)(char *))symbol("mhdctx_uuid_v4");
    char a[MHDCTX_UUID_LEN + 1], b[MHDCTX_UUID_LEN + 1];
    ck_assert_int_eq(uuid_v4(a), MHDCTX_OK);
    ck_assert_int_eq(uuid_v4(b), MHDCTX_OK);
    ck_assert_uint_eq(strlen(a), MHDCTX_UUID_LEN);
    ck_assert_str_ne(a, b);
    ck_assert_int_eq(dlclose(library), 0);
}
END_TEST

enum { THREADS = 4, LINES_PER_THREAD = 10, CONTEXTS_PER_THREAD = 100 };

struct api {
    void (*log)(mhdctx_log_level, const char *, ...);
    mhdctx_context *(*context_new)(void);
    void (*context_unref)(mhdctx_context *);
    mhdctx_error (*uuid_v4)(char *);
};

/* Uses each kind of block: the generator, the line storage, the block cache. */
static void *use_every_block(void *arg)
{
    const struct api *api = arg;
    char id[MHDCTX_UUID_LEN + 1];
    api->uuid_v4(id);
    for (int i = 0; i < CONTEXTS_PER_THREAD; i++)
        api->context_unref(api->context_new());
    for (int i = 0; i < LINES_PER_THREAD; i++)
        api->log(MHDCTX_LOG_INFO, "line %d of a thread that drew %s", i, id);
    return NULL;
}

static size_t count_lines(int fd)
{
    char buf[4096];
    size_t lines = 0;
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) {
        for (ssize_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    }
    return lines;
}

START_TEST(threads_of_the_loaded_library_log_and_exit)
{
    load_library();
    struct api api = {
        .log = (void (*)(mhdctx_log_level, const char *, ...))symbol("mhdctx_log"),
        .context_new = (mhdctx_context * (*)(void)) symbol("mhdctx_context_new"),
        .context_unref = (void (*)(mhdctx_context *))symbol("mhdctx_context_unref"),
        .uuid_v4 = (mhdctx_error(*)(char *))symbol("mhdctx_uuid_v4"),
    };
    mhdctx_error (*log_to_fd)(int) = (mhdctx_error(*)(int))symbol("mhdctx_log_to_fd");
    void (*log_shutdown)(void) = (void (*)(void))symbol("mhdctx_log_shutdown");
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0); /* 40 lines of about 150 bytes: the pipe holds them */
    ck_assert_int_eq(log_to_fd(fds[1]), MHDCTX_OK);
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, use_every_block, &api), 0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
    log_shutdown();
    close(fds[1]);
    ck_assert_uint_eq(count_lines(fds[0]), THREADS * LINES_PER_THREAD);
    close(fds[0]);
    ck_assert_int_eq(dlclose(library), 0);
}
END_TEST

static Suite *thread_blocks_suite(void)
{
    Suite *s = suite_create("thread_blocks");
    TCase *tc = tcase_create("dlopen");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, library_loads_after_start_and_draws_ids);
    tcase_add_test(tc, threads_of_the_loaded_library_log_and_exit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(thread_blocks_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? 0 : 1;
}
