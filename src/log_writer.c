/*
 * log_writer.c - the asynchronous sink: lines are copied into a bounded buffer and one
 * background thread writes them to the sink's fd in batches.
 *
 * Why: a write(2) per line costs more than building the line. Here a request thread
 * pays one uncontended lock and a memcpy; the writer pays one system call per 64 KiB.
 *
 * Two buffers of equal size: request threads fill the active one while the writer
 * writes the other; the writer swaps them under the lock. Memory is bounded by the two
 * buffers. Lines are whole in a buffer, and a batch is written in slices of whole lines,
 * each with write_all under the sink lock, so lines never interleave with each other or
 * with synchronous writes.
 *
 * The writer wakes when the active buffer is half full, when a flush is asked for, or
 * one flush interval after the first line of a batch (at the latest: lines queued while
 * it writes count from the start of that write), whichever comes first: an idle server
 * writes its last lines within one interval, a busy one without a wake-up per line.
 * With nothing queued it sleeps without a timer (the first line wakes it), so
 * that an idle server's writer does not wake every interval for nothing.
 *
 * Under the block policy, producers that find no room wait in a queue with their line,
 * and a line that arrives while others wait goes behind them even if it would fit. When
 * room comes, whoever makes it (the writer taking a batch, a waiter giving up) copies
 * the waiting lines in order while they fit and wakes their threads, which only return:
 * lines go in in order of arrival, and a queue once formed is emptied at every batch
 * rather than one thread's wake-up at a time. Without the queue, every batch woke all
 * waiters to race the threads just arriving for the room, and one of them could lose
 * that race until its block_timeout_ms ran out while the others went on (seen under
 * valgrind, which runs one thread at a time).
 */
#include "sink.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#define DEFAULT_BUFFER_BYTES (1u << 20)
#define MIN_BUFFER_BYTES     (64u << 10)
#define DEFAULT_INTERVAL_MS  50u
#define DEFAULT_BLOCK_MS     1000u
#define WRITE_SLICE_BYTES    (64u << 10)

/* A producer waiting for room: it lives on that producer's stack while it waits. */
struct room_waiter {
    struct room_waiter *prev, *next;
    const char *line;
    size_t len;
    bool copied;         /* its line is in the buffer: the producer may return */
    pthread_cond_t done; /* signalled when copied, and when the writer stops */
};

struct log_writer {
    pthread_mutex_t lock;
    pthread_cond_t work;  /* writer: something to write, or stop */
    pthread_cond_t space; /* flushers: a batch was written; stop: waiters left */
    pthread_t thread;
    char *active; /* filled by request threads */
    char *spare;  /* written by the writer */
    size_t cap;
    size_t len;       /* bytes in active */
    uint64_t queued;  /* bytes ever queued, over every run of the writer */
    uint64_t written; /* bytes ever handed to the sink (written or dropped) */
    struct room_waiter *first_waiter, *last_waiter; /* served first to last */
    mhdctx_log_async_options options;
    bool running;
    bool stopping;
    bool flush_asked;
};

static struct log_writer writer = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work = PTHREAD_COND_INITIALIZER,
    .space = PTHREAD_COND_INITIALIZER,
};
/* Read without the lock on every line: whether to queue at all. */
static atomic_bool writer_on;

static void deadline_after_ms(struct timespec *ts, unsigned ms)
{
    *ts = mhdctx__timespec_of_ns(mhdctx__monotonic_ns() + (uint64_t)ms * 1000000u);
}

/* Monotonic, as every timed wait here: a step of the wall clock must not stall anyone. */
static void init_monotonic_condition(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

static bool batch_wanted(void)
{
    return writer.len >= writer.cap / 2 || writer.flush_asked || writer.stopping;
}

/* Nothing queued and nothing asked for (lock held): the writer sleeps until a line or a
 * call to flush or stop wakes it. */
static bool nothing_to_do(void)
{
    return writer.len == 0 && !writer.flush_asked && !writer.stopping;
}

/* Has the writer take the active buffer now, not at the end of its interval (lock
 * held). A flag, not only a signal: the writer may not be waiting yet. */
static void ask_for_a_batch(void)
{
    writer.flush_asked = true;
    pthread_cond_signal(&writer.work);
}

static bool has_room(size_t len)
{
    return writer.cap - writer.len >= len;
}

/* Asks the CPU to fetch, for writing, the cache lines that the next lines will be
 * copied to: those after @at (lock held). The buffer streams through memory, so every
 * line lands in cache lines that left the cache long ago; copied there cold, the stores
 * wait for them and the lock's release waits for the stores (perf, Intel Xeon, epoll
 * under wrk: that unlock took 180-250 ns per request, against 30-40 ns for bare MHD's
 * unlocks). Fetched while the server does the rest of a request, they are in cache
 * when the next line comes: 60-85 ns. */
static void prefetch_after(size_t at)
{
    enum { CACHE_LINE = 64, AHEAD = 512 };
    size_t end = writer.cap - at > AHEAD ? at + AHEAD : writer.cap;
    for (; at < end; at += CACHE_LINE)
        __builtin_prefetch(writer.active + at, 1, 3);
}

/* Copies a line into the active buffer (lock held, room checked). */
static void append_line(const char *line, size_t len)
{
    memcpy(writer.active + writer.len, line, len);
    writer.len += len;
    prefetch_after(writer.len);
    writer.queued += len;
    /* The first line of a batch wakes a writer asleep without a timer, crossing half
     * full wakes it once more; between the two it wakes on its own. A signal with no
     * waiter costs no system call. */
    bool first = writer.len == len;
    bool half = writer.len >= writer.cap / 2 && writer.len - len < writer.cap / 2;
    if (first || half)
        pthread_cond_signal(&writer.work);
}

static void unlink_waiter(struct room_waiter *w)
{
    if (w->next)
        w->next->prev = w->prev;
    else
        writer.last_waiter = w->prev;
    if (w->prev)
        w->prev->next = w->next;
    else
        writer.first_waiter = w->next;
}

/* Copies waiting lines, first to last, while they fit (lock held), and wakes their
 * producers; the first that does not fit waits for the next batch, asked for now. */
static void copy_waiting_lines(void)
{
    struct room_waiter *w;
    while (writer.running && (w = writer.first_waiter) != NULL && has_room(w->len)) {
        append_line(w->line, w->len);
        w->copied = true;
        unlink_waiter(w);
        pthread_cond_signal(&w->done);
    }
    if (writer.running && writer.first_waiter)
        ask_for_a_batch();
}

/* Takes the active buffer (lock held); the caller writes it without the lock. */
static size_t take_batch(void)
{
    size_t len = writer.len;
    char *full = writer.active;
    writer.active = writer.spare;
    writer.spare = full;
    writer.len = 0;
    writer.flush_asked = false;
    copy_waiting_lines(); /* the room they wait for is there now */
    return len;
}

/* Where the slice that starts at @data ends: after the last newline within
 * WRITE_SLICE_BYTES, or after the first newline if one line is longer than that. */
static size_t slice_end(const char *data, size_t len)
{
    if (len <= WRITE_SLICE_BYTES)
        return len;
    const char *nl = memrchr(data, '\n', WRITE_SLICE_BYTES);
    if (nl == NULL)
        nl = memchr(data + WRITE_SLICE_BYTES, '\n', len - WRITE_SLICE_BYTES);
    return nl ? (size_t)(nl - data) + 1 : len;
}

/* Writes a batch in whole-line slices and lets other threads run between them: where
 * the writer shares a CPU with request threads, one write of a large batch holds them
 * off for as long as the kernel takes to copy it. With 64 MiB buffers (batches of up to
 * 32 MiB, several ms of copying), hello-mhdctx's p99 latency under wrk was 3.2x bare
 * MHD's in one write per batch, 1.7x in slices without the yield, 0.9x as here. */
static void write_in_slices(const char *data, size_t len)
{
    for (size_t at = 0; at < len;) {
        if (at > 0)
            sched_yield();
        size_t n = slice_end(data + at, len - at);
        mhdctx__sink_write_batch(data + at, n);
        at += n;
    }
}

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "mhdctx-log"); /* for top -H and debuggers */
    unsigned interval = writer.options.flush_interval_ms;
    struct timespec due; /* when the lines gathered so far must be written */
    bool gathering = false;
    pthread_mutex_lock(&writer.lock);
    for (;;) {
        if (nothing_to_do()) {
            pthread_cond_wait(&writer.work, &writer.lock);
            gathering = false; /* a first line: due one interval from now */
        }
        if (!batch_wanted()) {
            if (!gathering)
                deadline_after_ms(&due, interval);
            gathering = true;
            if (pthread_cond_timedwait(&writer.work, &writer.lock, &due) != ETIMEDOUT &&
                !batch_wanted())
                continue; /* woken early for nothing: the same deadline stands */
        }
        if (writer.len == 0) {
            writer.flush_asked = false;
            pthread_cond_broadcast(&writer.space);
            if (writer.stopping)
                break;
            continue;
        }
        size_t len = take_batch();
        /* Lines queued while this batch is written came after now: they are due one
         * interval from now, not from whenever the write ends (a slow sink's write
         * would add its own time to theirs). */
        deadline_after_ms(&due, interval);
        gathering = true;
        pthread_mutex_unlock(&writer.lock);
        write_in_slices(writer.spare, len);
        pthread_mutex_lock(&writer.lock);
        writer.written += len;
        pthread_cond_broadcast(&writer.space);
    }
    pthread_mutex_unlock(&writer.lock);
    return NULL;
}

/* Waits until every byte queued before the call is written (lock held), until @until
 * when not NULL; false when that came first. Like every wait here, with cancellation
 * off (mhdctx__cancel_off()): cancelled in a wait, a thread would leave the lock held
 * (and a waiter linked into the queue from a stack gone). */
static bool wait_written(const struct timespec *until)
{
    uint64_t target = writer.queued;
    int cancel_state = mhdctx__cancel_off();
    bool in_time = true;
    while ((writer.running || writer.stopping) && writer.written < target && in_time) {
        ask_for_a_batch();
        if (until)
            in_time = pthread_cond_timedwait(&writer.space, &writer.lock, until) != ETIMEDOUT;
        else
            pthread_cond_wait(&writer.space, &writer.lock);
    }
    mhdctx__cancel_restore(cancel_state);
    return !(writer.running || writer.stopping) || writer.written >= target;
}

static void join_the_queue(struct room_waiter *w)
{
    w->next = NULL;
    w->prev = writer.last_waiter;
    if (w->prev)
        w->prev->next = w;
    else
        writer.first_waiter = w;
    writer.last_waiter = w;
}

/* Timed out or stopped, its line not copied. A first waiter leaving may leave room for
 * the next ones; the last one to leave a stopped writer lets mhdctx_log_async_stop go. */
static void leave_the_queue(struct room_waiter *w)
{
    bool was_first = w->prev == NULL;
    unlink_waiter(w);
    if (was_first)
        copy_waiting_lines();
    if (!writer.running && writer.first_waiter == NULL)
        pthread_cond_broadcast(&writer.space);
}

/* Queues @line (@len bytes) behind the producers already waiting, or as the policy says
 * when the buffer is full (lock held). Below half full the writer would wait out its
 * interval: it is asked to write now, so that the room comes back for this line (block)
 * or the next ones (drop). */
static enum mhdctx__queued wait_for_room(const char *line, size_t len)
{
    if (writer.options.when_full == MHDCTX_LOG_FULL_DROP) {
        ask_for_a_batch();
        return MHDCTX__DROPPED;
    }
    struct timespec until;
    deadline_after_ms(&until, writer.options.block_timeout_ms);
    struct room_waiter me = {.line = line, .len = len};
    init_monotonic_condition(&me.done);
    join_the_queue(&me);
    ask_for_a_batch();
    int cancel_state = mhdctx__cancel_off();
    while (!me.copied && writer.running) {
        if (pthread_cond_timedwait(&me.done, &writer.lock, &until) == ETIMEDOUT)
            break; /* the sink is stuck: never block a request forever */
    }
    mhdctx__cancel_restore(cancel_state);
    enum mhdctx__queued result = MHDCTX__QUEUED;
    if (!me.copied) {
        result = writer.running ? MHDCTX__DROPPED : MHDCTX__NOT_QUEUED;
        leave_the_queue(&me);
    }
    pthread_cond_destroy(&me.done); /* nobody signals it now: unlinked, lock held */
    return result;
}

/* A line no buffer holds (lock held): the caller writes it directly, after the lines
 * queued before it, for which it waits as long as a full buffer's line would, at most
 * block_timeout_ms (whatever the policy: a stalled sink never holds a request for
 * good); it is dropped if they are not written by then. */
static enum mhdctx__queued larger_than_a_buffer(void)
{
    struct timespec until;
    deadline_after_ms(&until, writer.options.block_timeout_ms);
    return wait_written(&until) ? MHDCTX__NOT_QUEUED : MHDCTX__DROPPED;
}

size_t mhdctx__writer_waiting(void)
{
    pthread_mutex_lock(&writer.lock);
    size_t n = 0;
    for (const struct room_waiter *w = writer.first_waiter; w; w = w->next)
        n++;
    pthread_mutex_unlock(&writer.lock);
    return n;
}

enum mhdctx__queued mhdctx__writer_queue(const char *line, size_t len)
{
    if (!atomic_load_explicit(&writer_on, memory_order_acquire))
        return MHDCTX__NOT_QUEUED;
    pthread_mutex_lock(&writer.lock);
    enum mhdctx__queued result = MHDCTX__QUEUED;
    if (!writer.running) {
        /* Stopped meanwhile: the caller writes it, after the lines queued before it,
         * which the stop writes. */
        result = MHDCTX__NOT_QUEUED;
        wait_written(NULL);
    } else if (len > writer.cap) {
        result = larger_than_a_buffer();
    } else if (writer.first_waiter == NULL && has_room(len)) {
        append_line(line, len);
    } else {
        result = wait_for_room(line, len);
        if (result == MHDCTX__NOT_QUEUED)
            wait_written(NULL); /* stopped while it waited: after the lines before it */
    }
    pthread_mutex_unlock(&writer.lock);
    return result;
}

void mhdctx_log_flush(void)
{
    if (!atomic_load_explicit(&writer_on, memory_order_acquire))
        return;
    pthread_mutex_lock(&writer.lock);
    wait_written(NULL);
    pthread_mutex_unlock(&writer.lock);
}

static mhdctx_log_async_options effective(const mhdctx_log_async_options *asked)
{
    mhdctx_log_async_options o = asked ? *asked : (mhdctx_log_async_options){0};
    if (o.buffer_bytes == 0)
        o.buffer_bytes = DEFAULT_BUFFER_BYTES;
    if (o.flush_interval_ms == 0)
        o.flush_interval_ms = DEFAULT_INTERVAL_MS;
    if (o.block_timeout_ms == 0)
        o.block_timeout_ms = DEFAULT_BLOCK_MS;
    return o;
}

static bool options_valid(const mhdctx_log_async_options *o)
{
    return o->buffer_bytes >= MIN_BUFFER_BYTES && o->buffer_bytes <= (SIZE_MAX >> 2) &&
           o->flush_interval_ms <= 60000 && o->block_timeout_ms <= 60000 &&
           (o->when_full == MHDCTX_LOG_FULL_BLOCK || o->when_full == MHDCTX_LOG_FULL_DROP);
}

static void release_buffers(void)
{
    mhdctx__free(writer.active);
    mhdctx__free(writer.spare);
    writer.active = writer.spare = NULL;
}

/* Whether the writer's conditions were made monotonic (init_monotonic_condition). */
static bool conditions_ready;

static void init_conditions(void)
{
    init_monotonic_condition(&writer.work);
    init_monotonic_condition(&writer.space);
    conditions_ready = true;
}

/* Once, lock held: the statically initialized conditions have never had a waiter. */
static void use_monotonic_conditions(void)
{
    if (conditions_ready)
        return;
    pthread_cond_destroy(&writer.work);
    pthread_cond_destroy(&writer.space);
    init_conditions();
}

static void after_fork_child(void);
static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;

static void register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, after_fork_child);
}

void mhdctx__log_fork_safe(void)
{
    pthread_once(&fork_handler_once, register_fork_handler);
}

/* The writer starts with every signal blocked, whatever the caller's mask: a signal
 * meant for a thread of the application's (sigwait, signalfd) must not land on the
 * writer, where its default action would end the process with the lines it holds. */
static bool start_writer_thread(void)
{
    sigset_t all, callers;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &callers);
    bool started = pthread_create(&writer.thread, NULL, writer_main, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &callers, NULL);
    return started;
}

mhdctx_error mhdctx_log_async_start(const mhdctx_log_async_options *options)
{
    mhdctx__log_fork_safe();
    mhdctx_log_async_options o = effective(options);
    if (!options_valid(&o))
        return MHDCTX_EINVAL;
    if (!mhdctx__sink_is_fd())
        return MHDCTX_ESTATE;
    pthread_mutex_lock(&writer.lock);
    mhdctx_error rc = MHDCTX_OK;
    if (writer.running || writer.stopping) {
        rc = MHDCTX_ESTATE;
    } else if ((writer.active = mhdctx__malloc(o.buffer_bytes)) == NULL ||
               (writer.spare = mhdctx__malloc(o.buffer_bytes)) == NULL) {
        release_buffers();
        rc = MHDCTX_ENOMEM;
    } else {
        use_monotonic_conditions();
        writer.options = o;
        writer.cap = o.buffer_bytes;
        writer.len = 0;
        /* queued and written go on from the last run (equal after a stop): a thread
         * still waiting for the last run's bytes must not wait for this run's. */
        writer.stopping = writer.flush_asked = false;
        writer.running = true;
        if (!start_writer_thread()) {
            writer.running = false;
            release_buffers();
            rc = MHDCTX_ENOMEM;
        } else {
            atomic_store_explicit(&writer_on, true, memory_order_release);
        }
    }
    pthread_mutex_unlock(&writer.lock);
    return rc;
}

bool mhdctx_log_async_running(void)
{
    return atomic_load_explicit(&writer_on, memory_order_acquire);
}

/* Lock held, a writer running; the lock is let go while the writer finishes. */
static void stop_writer(void)
{
    /* From here on lines are written synchronously, each once what was queued before
     * it is written by the writer's last passes (it leaves only with an empty buffer). */
    writer.stopping = true;
    writer.running = false;
    pthread_cond_signal(&writer.work);
    pthread_cond_broadcast(&writer.space);
    for (struct room_waiter *w = writer.first_waiter; w; w = w->next)
        pthread_cond_signal(&w->done); /* producers waiting for room write directly */
    pthread_mutex_unlock(&writer.lock);
    pthread_join(writer.thread, NULL);
    pthread_mutex_lock(&writer.lock);
    /* They leave before a new run can start: one still queued would wait in it, under
     * the old run's buffer size and policy. */
    while (writer.first_waiter != NULL)
        pthread_cond_wait(&writer.space, &writer.lock);
    atomic_store_explicit(&writer_on, false, memory_order_release);
    release_buffers();
    writer.stopping = false;
}

void mhdctx_log_async_stop(void)
{
    int cancel_state = mhdctx__cancel_off(); /* its waits, pthread_join's too */
    pthread_mutex_lock(&writer.lock);
    if (writer.running && !writer.stopping)
        stop_writer();
    pthread_mutex_unlock(&writer.lock);
    mhdctx__cancel_restore(cancel_state);
}

/* A child of fork() has no writer thread: it writes synchronously, and the parent's
 * queued lines (the parent writes them) are forgotten. The lock and the conditions may
 * have been held or waited on by threads that do not exist in the child, so they are
 * made anew (not destroyed: glibc would wait for the phantom waiters). The child may
 * start a writer of its own. */
static void after_fork_child(void)
{
    mhdctx__sink_after_fork_child();
    atomic_store(&writer_on, false);
    pthread_mutex_init(&writer.lock, NULL);
    init_conditions();
    writer.running = writer.stopping = writer.flush_asked = false;
    writer.len = 0;
    writer.first_waiter = writer.last_waiter = NULL; /* their threads are not here */
    writer.queued = writer.written = 0; /* the parent's lines are not ours to wait for */
    release_buffers(); /* the child is single-threaded: nobody else touches them */
}
