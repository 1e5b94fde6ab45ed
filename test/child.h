/*
 * child.h - a forked child that reports through a pipe, for the unit suites that test
 * what a fork does to per-process state (random pools, locales). Kept apart from
 * support.h so that those suites need neither MHD nor the HTTP client.
 */
#ifndef MHDCTX_TEST_CHILD_H
#define MHDCTX_TEST_CHILD_H

#include <stddef.h>
#include <sys/types.h>

/**
 * Forks. The child calls @p child_main(@p arg, fd), which writes what it has to say
 * to fd, and _exit()s with its return value (no atexit handlers, no leak check of the
 * parent's state). The parent reads everything the child writes into @p out (at most
 * @p size bytes; *@p got says how many) and waits for it.
 * @return the child's exit status. Fails the calling test if the pipe or the fork
 * fails or the child is killed; call it from the test's own thread.
 */
int child_output(int (*child_main)(void *arg, int fd), void *arg, void *out, size_t size,
                 size_t *got);
/** The same with @p fork_fn in place of fork(): _Fork(), which runs no atfork handler. */
int child_output_of(pid_t (*fork_fn)(void), int (*child_main)(void *arg, int fd), void *arg,
                    void *out, size_t size, size_t *got);

#endif /* MHDCTX_TEST_CHILD_H */
