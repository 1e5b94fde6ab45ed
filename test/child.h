/*
 * child.h - process-wide state for the unit suites: a forked child that reports through
 * a pipe (what a fork does to random pools and locales), and locales compiled at test
 * time (what the application's LC_CTYPE must not change). Kept apart from support.h so
 * that those suites need neither MHD nor the HTTP client.
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

/**
 * Makes a new directory under /tmp holding the UTF-8 locales @p names (@p n of them, such
 * as "tr_TR"), compiled by localedef from glibc's sources (Debian's package locales), and
 * writes its path into @p dir: point LOCPATH at it. Fails the test if a locale cannot be
 * made. Remove it with test_locales_remove().
 */
void test_locales_make(char dir[32], const char *const *names, size_t n);
/** Removes the directory test_locales_make() made. */
void test_locales_remove(const char *dir);
/**
 * Makes tr_TR.UTF-8 the process's LC_CTYPE (every thread's), compiled into @p dir as by
 * test_locales_make(), and checks it is in force: there 'I' does not lower to 'i', and
 * strcasecmp() holds "ID" and "id" different (ASan's own strcasecmp() does not). Undo
 * with test_ctype_locale_end().
 */
void test_turkish_ctype_begin(char dir[32]);
/** Back to the C locale's LC_CTYPE; removes @p dir. */
void test_ctype_locale_end(const char *dir);

#endif /* MHDCTX_TEST_CHILD_H */
