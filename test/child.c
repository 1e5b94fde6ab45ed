/*
 * child.c - see child.h.
 */
#include "child.h"

#include <check.h>
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
