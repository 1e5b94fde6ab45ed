/*
 * child.c - see child.h.
 */
#include "child.h"

#include <check.h>
#include <ctype.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* All that @fd yields until end of input or @size bytes. */
static size_t read_all(int fd, char *out, size_t size)
{
    size_t len = 0;
    for (ssize_t n; len < size && (n = read(fd, out + len, size - len)) > 0;)
        len += (size_t)n;
    return len;
}

int child_output(int (*child_main)(void *arg, int fd), void *arg, void *out, size_t size,
                 size_t *got)
{
    return child_output_of(fork, child_main, arg, out, size, got);
}

int child_output_of(pid_t (*fork_fn)(void), int (*child_main)(void *arg, int fd), void *arg,
                    void *out, size_t size, size_t *got)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork_fn();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        _exit(child_main(arg, fds[1]));
    }
    close(fds[1]);
    *got = read_all(fds[0], out, size);
    close(fds[0]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "child %d did not exit: status %d", (int)pid, status);
    return WEXITSTATUS(status);
}

void test_locales_make(char dir[32], const char *const *names, size_t n)
{
    strcpy(dir, "/tmp/mhdctx-locale-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    for (size_t i = 0; i < n; i++) {
        char cmd[512], path[256];
        snprintf(cmd, sizeof cmd, "localedef -c -i %s -f UTF-8 %s/%s.UTF-8 >/dev/null 2>&1",
                 names[i], dir, names[i]);
        ck_assert_int_ne(system(cmd), -1);
        snprintf(path, sizeof path, "%s/%s.UTF-8", dir, names[i]);
        ck_assert_msg(access(path, F_OK) == 0, "localedef could not make %s (package locales)",
                      path);
    }
}

void test_locales_remove(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

void test_turkish_ctype_begin(char dir[32])
{
    static const char *const turkish[] = {"tr_TR"};
    test_locales_make(dir, turkish, 1);
    setenv("LOCPATH", dir, 1);
    ck_assert_ptr_nonnull(setlocale(LC_CTYPE, "tr_TR.UTF-8"));
    ck_assert_int_ne(tolower('I'), 'i');
}

void test_ctype_locale_end(const char *dir)
{
    setlocale(LC_CTYPE, "C");
    unsetenv("LOCPATH");
    test_locales_remove(dir);
}
