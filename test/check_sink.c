/*
 * check_sink.c - the fd sink against a write(2) that takes nothing and reports no error
 * (a device or a FUSE file system may answer so): the line is dropped and counted, and
 * the call returns. It used to call write() again for good, holding the sink's lock.
 *
 * The library's calls to write() come here (the program is linked with
 * -Wl,--wrap=write): to the real one, but for the fd a test names.
 */
#include "mhdctx.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ssize_t __real_write(int fd, const void *data, size_t len);
ssize_t __wrap_write(int fd, const void *data, size_t len);

static int takes_nothing_fd = -1;
static unsigned long zero_writes;

ssize_t __wrap_write(int fd, const void *data, size_t len)
{
    if (fd == takes_nothing_fd && len > 0) {
        zero_writes++;
        return 0;
    }
    return __real_write(fd, data, len);
}

START_TEST(write_that_takes_nothing_drops_the_line)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    takes_nothing_fd = fds[1];
    ck_assert_int_eq(mhdctx_log_to_fd(fds[1]), MHDCTX_OK);
    uint64_t before = mhdctx_log_dropped();
    mhdctx_log(MHDCTX_LOG_WARN, "a line the fd never takes");
    ck_assert_uint_eq(mhdctx_log_dropped(), before + 1);
    ck_assert_uint_eq(zero_writes, 1);
    takes_nothing_fd = -1; /* the fd takes lines again: the next one is written whole */
    mhdctx_log(MHDCTX_LOG_WARN, "a line the fd takes");
    ck_assert_uint_eq(mhdctx_log_dropped(), before + 1);
    mhdctx_log_shutdown();
    close(fds[1]);
    char text[512];
    ssize_t n = read(fds[0], text, sizeof text - 1);
    ck_assert_int_gt(n, 0);
    text[n] = '\0';
    ck_assert_ptr_nonnull(strstr(text, "a line the fd takes"));
    ck_assert_ptr_null(strstr(text, "never"));
    close(fds[0]);
}
END_TEST

static Suite *sink_suite(void)
{
    Suite *s = suite_create("sink");
    TCase *tc = tcase_create("fd");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, write_that_takes_nothing_drops_the_line);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(sink_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
