/*
 * sink.c - log sinks: stdout, stderr, an appended file, a caller's fd, a callback.
 *
 * One lock serializes the writes, so lines from concurrent threads never interleave,
 * whatever their size and whether the fd is a file or a pipe (PIPE_BUF atomicity alone
 * would only cover lines up to 4 KiB). The line is written with one write(2) whenever
 * the kernel takes it whole; partial writes are completed before the lock is released.
 */
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum sink_kind { SINK_FD, SINK_CALLBACK };

struct sink {
    enum sink_kind kind;
    int fd;
    bool owns_fd;       /* a file we opened: closed when replaced */
    bool guard_sigpipe; /* fd is a pipe or socket and SIGPIPE is not ignored */
    mhdctx_log_callback fn;
    void *cls;
};

static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sink active = {.kind = SINK_FD, .fd = STDOUT_FILENO};
static bool active_checked; /* guard_sigpipe computed for the default sink */
static atomic_ullong dropped;

void mhdctx__sink_count_drop(void)
{
    atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
}

uint64_t mhdctx_log_dropped(void)
{
    return atomic_load_explicit(&dropped, memory_order_relaxed);
}

static bool sigpipe_ignored(void)
{
    struct sigaction current;
    if (sigaction(SIGPIPE, NULL, &current) != 0)
        return false;
    return current.sa_handler == SIG_IGN;
}

static bool fd_can_raise_sigpipe(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return true;
    return S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode);
}

/* write() the whole line; false on an error other than EINTR. */
static bool write_all(int fd, const char *line, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, line, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        line += n;
        len -= (size_t)n;
    }
    return true;
}

/* A write to a pipe whose reader is gone raises SIGPIPE, which kills a process that
 * did not ignore it. Block it on this thread for the write, and swallow the one the
 * write raised, as curl does. */
static bool write_without_sigpipe(int fd, const char *line, size_t len)
{
    sigset_t pipe_only, previous;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &previous);
    int saved = 0;
    bool ok = write_all(fd, line, len);
    if (!ok && errno == EPIPE) {
        saved = errno;
        struct timespec no_wait = {0, 0};
        while (sigtimedwait(&pipe_only, NULL, &no_wait) == SIGPIPE) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (saved)
        errno = saved;
    return ok;
}

void mhdctx__sink_write(mhdctx_log_level level, const char *line, size_t len)
{
    bool ok = true;
    pthread_mutex_lock(&sink_lock);
    if (active.kind == SINK_CALLBACK) {
        active.fn(level, line, len, active.cls);
    } else {
        if (!active_checked) {
            active.guard_sigpipe = fd_can_raise_sigpipe(active.fd) && !sigpipe_ignored();
            active_checked = true;
        }
        ok = active.guard_sigpipe ? write_without_sigpipe(active.fd, line, len)
                                  : write_all(active.fd, line, len);
    }
    pthread_mutex_unlock(&sink_lock);
    if (!ok)
        mhdctx__sink_count_drop();
}

static void replace_sink(struct sink next)
{
    pthread_mutex_lock(&sink_lock);
    struct sink old = active;
    active = next;
    active_checked = false;
    pthread_mutex_unlock(&sink_lock);
    if (old.kind == SINK_FD && old.owns_fd)
        close(old.fd);
}

mhdctx_error mhdctx_log_to_fd(int fd)
{
    if (fd < 0)
        return MHDCTX_EINVAL;
    replace_sink((struct sink){.kind = SINK_FD, .fd = fd});
    return MHDCTX_OK;
}

mhdctx_error mhdctx_log_to_stdout(void)
{
    return mhdctx_log_to_fd(STDOUT_FILENO);
}

mhdctx_error mhdctx_log_to_stderr(void)
{
    return mhdctx_log_to_fd(STDERR_FILENO);
}

mhdctx_error mhdctx_log_to_file(const char *path)
{
    if (path == NULL || *path == '\0')
        return MHDCTX_EINVAL;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return MHDCTX_EIO;
    replace_sink((struct sink){.kind = SINK_FD, .fd = fd, .owns_fd = true});
    return MHDCTX_OK;
}

mhdctx_error mhdctx_log_to_callback(mhdctx_log_callback fn, void *cls)
{
    if (fn == NULL)
        return MHDCTX_EINVAL;
    replace_sink((struct sink){.kind = SINK_CALLBACK, .fn = fn, .cls = cls});
    return MHDCTX_OK;
}

void mhdctx_log_shutdown(void)
{
    replace_sink((struct sink){.kind = SINK_FD, .fd = STDOUT_FILENO});
}
