/*
 * sink.c - log sinks: stdout, stderr, an appended file, a caller's fd, a callback.
 *
 * One lock serializes the writes, so lines from concurrent threads never interleave,
 * whatever their size and whether the fd is a file or a pipe (PIPE_BUF atomicity alone
 * would only cover lines up to 4 KiB). The line is written with one write(2) whenever
 * the kernel takes it whole; partial writes are completed before the lock is released.
 * In the asynchronous mode (log_writer.c) lines are queued instead, and the writer
 * thread hands whole batches to mhdctx__sink_write_batch().
 */
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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
    bool torn;          /* the last write stopped inside a line */
    mhdctx_log_callback fn;
    void *cls;
};

static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sink active = {.kind = SINK_FD, .fd = STDOUT_FILENO};
static bool active_checked; /* guard_sigpipe computed for the default sink */
static atomic_ullong dropped;
_Thread_local bool mhdctx__in_log_callback __attribute__((tls_model("initial-exec")));

/* How long a write waits for a full non-blocking fd to take bytes again. */
#define WRITABLE_WAIT_MS 1000

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

/* A non-blocking fd that is full (EAGAIN): waits until it takes bytes again, for a
 * bounded time, as a blocking fd would have waited in write(). */
static bool wait_writable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int n;
    while ((n = poll(&p, 1, WRITABLE_WAIT_MS)) < 0 && errno == EINTR) {
    }
    return n > 0;
}

/* write() all @len bytes; returns how many were written (@len unless an error other
 * than EINTR, a full non-blocking fd for longer than WRITABLE_WAIT_MS, or a write that
 * took nothing stopped it). */
static size_t write_all(int fd, const char *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n == 0) {
            /* Neither progress nor an error (a device or FUSE file system may answer
             * so): asking again would spin for good with the sink's lock held. */
            errno = EIO;
            break;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait_writable(fd))
                continue;
            break;
        }
        done += (size_t)n;
    }
    return done;
}

/* A write to a pipe whose reader is gone raises SIGPIPE, which kills a process that
 * did not ignore it. Block it on this thread for the write, and swallow the one the
 * write raised, as curl does. */
static size_t write_without_sigpipe(int fd, const char *data, size_t len)
{
    sigset_t pipe_only, previous;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &previous);
    int saved = 0;
    size_t done = write_all(fd, data, len);
    if (done < len && errno == EPIPE) {
        saved = errno;
        struct timespec no_wait = {0, 0};
        while (sigtimedwait(&pipe_only, NULL, &no_wait) == SIGPIPE) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (saved)
        errno = saved;
    return done;
}

static size_t write_bytes(const char *data, size_t len)
{
    return active.guard_sigpipe ? write_without_sigpipe(active.fd, data, len)
                                : write_all(active.fd, data, len);
}

/* Writes to the active fd (sink lock held); returns the bytes written. A write that
 * stopped inside a line (disk full, a reader that stopped reading) left a fragment:
 * the next write ends it with a newline first, so that the lines after it stay whole
 * and are not glued onto it. */
static size_t write_to_fd(const char *data, size_t len)
{
    if (!active_checked) {
        active.guard_sigpipe = fd_can_raise_sigpipe(active.fd) && !sigpipe_ignored();
        active_checked = true;
    }
    if (active.torn && write_bytes("\n", 1) != 1)
        return 0;
    size_t done = write_bytes(data, len);
    active.torn = done > 0 && done < len && data[done - 1] != '\n';
    return done;
}

static size_t count_lines(const char *data, size_t len)
{
    size_t lines = 0;
    for (const char *p = data; (p = memchr(p, '\n', len - (size_t)(p - data))) != NULL; p++)
        lines++;
    return lines;
}

void mhdctx__sink_write_batch(const char *data, size_t len)
{
    pthread_mutex_lock(&sink_lock);
    size_t done = active.kind == SINK_FD ? write_to_fd(data, len) : 0;
    pthread_mutex_unlock(&sink_lock);
    if (done == len)
        return;
    /* Every line whose newline did not reach the sink is lost, a partial one too. */
    size_t lost = count_lines(data + done, len - done);
    atomic_fetch_add_explicit(&dropped, lost, memory_order_relaxed);
}

void mhdctx__sink_write(mhdctx_log_level level, const char *line, size_t len)
{
    switch (mhdctx__writer_queue(line, len)) {
    case MHDCTX__QUEUED:
        return;
    case MHDCTX__DROPPED:
        mhdctx__sink_count_drop();
        return;
    case MHDCTX__NOT_QUEUED:
        break;
    }
    mhdctx__log_fork_safe();
    bool ok = true;
    int cancel_state = mhdctx__cancel_off(); /* write(2) and a callback may be points */
    pthread_mutex_lock(&sink_lock);
    if (active.kind == SINK_CALLBACK) {
        mhdctx__in_log_callback = true;
        active.fn(level, line, len, active.cls);
        mhdctx__in_log_callback = false;
    } else {
        ok = write_to_fd(line, len) == len;
    }
    pthread_mutex_unlock(&sink_lock);
    mhdctx__cancel_restore(cancel_state);
    if (!ok)
        mhdctx__sink_count_drop();
}

bool mhdctx__sink_is_fd(void)
{
    pthread_mutex_lock(&sink_lock);
    bool fd = active.kind == SINK_FD;
    pthread_mutex_unlock(&sink_lock);
    return fd;
}

void mhdctx__sink_after_fork_child(void)
{
    pthread_mutex_init(&sink_lock, NULL);
}

static void replace_sink(struct sink next)
{
    mhdctx__log_fork_safe();
    mhdctx_log_flush(); /* queued lines go where they were meant to go */
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
    if (mhdctx_log_async_running())
        return MHDCTX_ESTATE; /* batches are bytes for an fd: stop the writer first */
    replace_sink((struct sink){.kind = SINK_CALLBACK, .fn = fn, .cls = cls});
    return MHDCTX_OK;
}

void mhdctx_log_shutdown(void)
{
    mhdctx_log_async_stop();
    replace_sink((struct sink){.kind = SINK_FD, .fd = STDOUT_FILENO});
}
