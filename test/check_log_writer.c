/*
 * check_log_writer.c - the batched (asynchronous) sink: options, every line written on
 * flush and on stop, the full-buffer policies against a reader that never reads (no
 * call blocks forever, drops are counted), a sink switch, /dev/full, fork.
 * Whole lines from many threads at once: check_log.c ("threads", batched variants).
 */
#include "internal.h"
#include "sink.h"
#include "support.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

static char path[64];

static void setup(void)
{
    mhdctx_log_set_level(MHDCTX_LOG_INFO);
    snprintf(path, sizeof path, "/tmp/check_log_writer_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
}

static void teardown(void)
{
    mhdctx_log_shutdown();
    unlink(path);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Lines of @file, each checked to be one JSON object; their "n" fields in order. */
static size_t numbered_lines(const char *file, long *ns, size_t max)
{
    FILE *f = fopen(file, "r");
    ck_assert_ptr_nonnull(f);
    char *line = NULL;
    size_t cap = 0, count = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        json_t *v = support_parse_line(line, (size_t)len, JSON_REJECT_DUPLICATES);
        if (count < max)
            ns[count] = (long)json_integer_value(json_object_get(v, "n"));
        count++;
        json_decref(v);
    }
    free(line);
    fclose(f);
    return count;
}

static void log_numbered(long from, long to)
{
    for (long i = from; i < to; i++)
        mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_INT("n", i)), "numbered");
}

static void assert_numbered_file(const char *file, long count)
{
    long *ns = calloc((size_t)count + 1, sizeof *ns);
    ck_assert_ptr_nonnull(ns);
    ck_assert_uint_eq(numbered_lines(file, ns, (size_t)count + 1), (size_t)count);
    for (long i = 0; i < count; i++)
        ck_assert_int_eq(ns[i], i); /* one thread: its lines in order */
    free(ns);
}

/* The writer with options @o, writing to the test's file; returns @o. */
static mhdctx_log_async_options start_writer_to_file(mhdctx_log_async_options o)
{
    ck_assert_int_eq(mhdctx_log_to_file(path), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_log_async_start(&o), MHDCTX_OK);
    return o;
}

START_TEST(options_are_checked)
{
    mhdctx_log_async_options small = {.buffer_bytes = 1000};
    ck_assert_int_eq(mhdctx_log_async_start(&small), MHDCTX_EINVAL);
    mhdctx_log_async_options policy = {.when_full = (mhdctx_log_full_policy)7};
    ck_assert_int_eq(mhdctx_log_async_start(&policy), MHDCTX_EINVAL);
    mhdctx_log_async_options slow = {.flush_interval_ms = 600000};
    ck_assert_int_eq(mhdctx_log_async_start(&slow), MHDCTX_EINVAL);
    ck_assert(!mhdctx_log_async_running());

    ck_assert_int_eq(mhdctx_log_async_start(NULL), MHDCTX_OK); /* defaults */
    ck_assert(mhdctx_log_async_running());
    ck_assert_int_eq(mhdctx_log_async_start(NULL), MHDCTX_ESTATE);
    mhdctx_log_async_stop();
    ck_assert(!mhdctx_log_async_running());
    mhdctx_log_async_stop(); /* idempotent */
}
END_TEST

static void ignore_line(mhdctx_log_level level, const char *line, size_t len, void *cls)
{
    (void)level, (void)line, (void)len, (void)cls;
}

START_TEST(callback_sink_is_refused_both_ways)
{
    support_capture_start();
    ck_assert_int_eq(mhdctx_log_async_start(NULL), MHDCTX_ESTATE);
    support_capture_stop();
    ck_assert_int_eq(mhdctx_log_async_start(NULL), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_log_to_callback(ignore_line, NULL), MHDCTX_ESTATE);
}
END_TEST

START_TEST(flush_writes_every_line_logged_before_it)
{
    start_writer_to_file(
        (mhdctx_log_async_options){.flush_interval_ms = 60000}); /* only flush writes */
    log_numbered(0, 5000);
    mhdctx_log_flush();
    assert_numbered_file(path, 5000);
}
END_TEST

START_TEST(stop_writes_what_is_queued)
{
    start_writer_to_file((mhdctx_log_async_options){.flush_interval_ms = 60000});
    log_numbered(0, 3000);
    mhdctx_log_async_stop();
    log_numbered(3000, 3010); /* synchronous again, after the queued ones */
    assert_numbered_file(path, 3010);
}
END_TEST

/* Waits until the test's file holds @count lines, without a flush: the writer writes
 * them on its own within its interval (tens of ms here); 5 s allowed for slow runs. */
static void wait_written_alone(size_t count)
{
    long ns[8];
    ck_assert_uint_le(count, sizeof ns / sizeof *ns);
    size_t seen = 0;
    for (int i = 0; i < 500 && seen < count; i++) {
        sleep_ms(10);
        seen = numbered_lines(path, ns, count);
    }
    ck_assert_uint_eq(seen, count);
}

START_TEST(idle_lines_are_written_within_the_interval)
{
    start_writer_to_file((mhdctx_log_async_options){.flush_interval_ms = 20});
    log_numbered(0, 3);
    wait_written_alone(3);
}
END_TEST

/* /proc's status file of this process's thread named @name, open for reading; NULL when
 * no thread has that name. */
static FILE *thread_status(const char *name)
{
    DIR *tasks = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(tasks);
    FILE *status = NULL;
    struct dirent *e;
    while (status == NULL && (e = readdir(tasks)) != NULL) {
        char file[300], text[64] = "";
        snprintf(file, sizeof file, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(file, "r");
        if (f == NULL)
            continue; /* "." and "..", or a thread that ended */
        bool got = fgets(text, sizeof text, f) != NULL;
        fclose(f);
        text[strcspn(text, "\n")] = '\0';
        snprintf(file, sizeof file, "/proc/self/task/%s/status", e->d_name);
        if (got && strcmp(text, name) == 0)
            status = fopen(file, "r");
    }
    closedir(tasks);
    return status;
}

/* The context switches so far of the thread named @name (voluntary and not); -1 when no
 * thread has that name. */
static long thread_switches(const char *name)
{
    FILE *f = thread_status(name);
    if (f == NULL)
        return -1;
    char line[256];
    long n, switches = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "voluntary_ctxt_switches: %ld", &n) == 1 ||
            sscanf(line, "nonvoluntary_ctxt_switches: %ld", &n) == 1)
            switches += n;
    }
    fclose(f);
    return switches;
}

/* The writer blocks every signal: one the application handles on a thread of its own
 * (sigwait, signalfd) must not be delivered to the writer, whose default action would
 * end the process with the lines it holds. */
START_TEST(writer_thread_blocks_signals)
{
    start_writer_to_file((mhdctx_log_async_options){0});
    log_numbered(0, 1);
    mhdctx_log_flush(); /* the writer has run, and named itself */
    FILE *f = thread_status("mhdctx-log");
    ck_assert_ptr_nonnull(f);
    char line[256];
    unsigned long long blocked = 0;
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = sscanf(line, "SigBlk: %llx", &blocked) == 1;
    fclose(f);
    ck_assert(found);
    int signals[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGCHLD};
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
        ck_assert_msg(blocked & (1ULL << (signals[i] - 1)), "signal %d not blocked (%llx)",
                      signals[i], blocked);
    /* the caller's own mask is as it was */
    sigset_t mine;
    ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, NULL, &mine), 0);
    ck_assert(!sigismember(&mine, SIGTERM));
    wait_written_alone(1);
}
END_TEST

/* With nothing queued the writer sleeps until a line comes, however short the interval
 * (it used to wake every interval); the line that ends the idle time is written within
 * the interval all the same. */
START_TEST(idle_writer_sleeps_until_a_line_comes)
{
    start_writer_to_file((mhdctx_log_async_options){.flush_interval_ms = 10});
    log_numbered(0, 1);
    mhdctx_log_flush();
    sleep_ms(50); /* the writer is back to sleep */
    long before = thread_switches("mhdctx-log");
    ck_assert_int_ge(before, 0);
    sleep_ms(500); /* 50 intervals */
    long after = thread_switches("mhdctx-log");
    ck_assert_msg(after - before <= 2, "the idle writer woke %ld times", after - before);

    log_numbered(1, 2);
    wait_written_alone(2);
}
END_TEST

START_TEST(switching_sinks_sends_queued_lines_to_the_old_one)
{
    char second[] = "/tmp/check_log_writer_b_XXXXXX";
    int fd = mkstemp(second);
    ck_assert_int_ge(fd, 0);
    close(fd);
    start_writer_to_file((mhdctx_log_async_options){.flush_interval_ms = 60000});
    log_numbered(0, 100);
    ck_assert_int_eq(mhdctx_log_to_file(second), MHDCTX_OK);
    log_numbered(0, 7);
    mhdctx_log_flush();
    assert_numbered_file(path, 100);
    assert_numbered_file(second, 7);
    unlink(second);
}
END_TEST

START_TEST(dev_full_counts_every_line_as_dropped)
{
    ck_assert_int_eq(mhdctx_log_to_file("/dev/full"), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_log_async_start(NULL), MHDCTX_OK);
    uint64_t before = mhdctx_log_dropped();
    log_numbered(0, 250);
    mhdctx_log_flush();
    ck_assert_uint_eq(mhdctx_log_dropped(), before + 250);
}
END_TEST

/* Fills a pipe to the brim, so that the next write to it blocks. */
static void fill_pipe(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    ck_assert_int_eq(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
    char junk[4096];
    memset(junk, 'j', sizeof junk);
    while (write(fd, junk, sizeof junk) > 0 || write(fd, junk, 1) > 0) {
    }
    ck_assert_int_eq(fcntl(fd, F_SETFL, flags), 0);
}

/* A new pipe in @fds, the writer started with @o to write into it. */
static void start_writer_to_pipe(int fds[2], mhdctx_log_async_options o)
{
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(mhdctx_log_to_fd(fds[1]), MHDCTX_OK);
    ck_assert_int_eq(mhdctx_log_async_start(&o), MHDCTX_OK);
}

/* A pipe whose reader never reads: the writer thread blocks in write() for good. */
struct stalled_pipe {
    int fds[2];
};

static void stall_the_writer(struct stalled_pipe *p, mhdctx_log_full_policy policy)
{
    start_writer_to_pipe(p->fds, (mhdctx_log_async_options){.buffer_bytes = 64 * 1024,
                                                            .when_full = policy,
                                                            .block_timeout_ms = 50});
}

/* Reads and discards until EOF, so that the writer can finish. */
static void *drain(void *arg)
{
    int fd = *(int *)arg;
    char buf[65536];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    return NULL;
}

static void unstall_and_stop(struct stalled_pipe *p)
{
    pthread_t drainer;
    ck_assert_int_eq(pthread_create(&drainer, NULL, drain, &p->fds[0]), 0);
    mhdctx_log_shutdown(); /* must return once the reader reads */
    close(p->fds[1]);
    pthread_join(drainer, NULL);
    close(p->fds[0]);
}

/* 2,000 lines of 1 KB: 2 MB against 64 KiB of pipe and 128 KiB of buffers. */
static void flood(void)
{
    char *text = repeat('x', 1000);
    for (int i = 0; i < 2000; i++)
        mhdctx_log_info("%s", text);
    free(text);
}

START_TEST(full_buffer_drop_policy_never_waits)
{
    struct stalled_pipe p;
    stall_the_writer(&p, MHDCTX_LOG_FULL_DROP);
    uint64_t before = mhdctx_log_dropped();
    double t0 = now_s();
    flood();
    double took = now_s() - t0;
    uint64_t dropped = mhdctx_log_dropped() - before;
    ck_assert_msg(dropped >= 1800, "only %llu of 2000 lines dropped",
                  (unsigned long long)dropped);
    ck_assert_msg(took < 10.0, "logging against a stalled sink took %.1f s", took);
    unstall_and_stop(&p);
}
END_TEST

/* The size of @file; with @text, its bytes too, NUL-terminated (free()). */
static size_t file_bytes(const char *file, char **text)
{
    FILE *f = fopen(file, "r");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    size_t size = (size_t)ftell(f);
    if (text) {
        rewind(f);
        *text = malloc(size + 1);
        ck_assert_ptr_nonnull(*text);
        ck_assert_uint_eq(fread(*text, 1, size, f), size);
        (*text)[size] = '\0';
    }
    fclose(f);
    return size;
}

/* After a flush, the test's file holds two lines: the first with @a, the second @b. */
static void assert_file_holds_two_lines(const char *a, const char *b)
{
    mhdctx_log_flush();
    char *text;
    file_bytes(path, &text);
    char *second = strchr(text, '\n');
    ck_assert_ptr_nonnull(second);
    ck_assert_ptr_nonnull(strstr(text, a));
    ck_assert_ptr_nonnull(strstr(second, b));
    ck_assert_ptr_eq(strchr(second + 1, '\n'), text + strlen(text) - 1);
    free(text);
}

/* A line dropped for want of room while the buffer is under half full has the writer
 * write what it holds: the next such line finds room (the writer used to wait out its
 * interval, a minute here, dropping every large line meanwhile). */
START_TEST(drop_policy_makes_room_for_the_next_line)
{
    start_writer_to_file((mhdctx_log_async_options){.buffer_bytes = 64 * 1024,
                                                    .flush_interval_ms = 60000,
                                                    .when_full = MHDCTX_LOG_FULL_DROP});
    char *small = repeat('a', 20 * 1024), *large = repeat('b', 50 * 1024);
    uint64_t before = mhdctx_log_dropped();
    mhdctx_log_info("%s", small);
    mhdctx_log_info("%s", large); /* 50 KB against 44 KB of room: dropped */
    ck_assert_uint_eq(mhdctx_log_dropped(), before + 1);
    for (int i = 0; i < 500 && file_bytes(path, NULL) == 0; i++) /* written alone */
        sleep_ms(10);
    mhdctx_log_info("%s", large); /* room again */
    ck_assert_uint_eq(mhdctx_log_dropped(), before + 1);
    assert_file_holds_two_lines(small, large);
    free(small);
    free(large);
}
END_TEST

/* The same under the block policy: the line waits for the batch to be written, not for
 * the writer's interval (a minute here: it used to be dropped after its 10 s). */
START_TEST(block_policy_makes_room_at_once)
{
    start_writer_to_file((mhdctx_log_async_options){.buffer_bytes = 64 * 1024,
                                                    .flush_interval_ms = 60000,
                                                    .when_full = MHDCTX_LOG_FULL_BLOCK,
                                                    .block_timeout_ms = 10000});
    char *small = repeat('a', 20 * 1024), *large = repeat('b', 50 * 1024);
    uint64_t before = mhdctx_log_dropped();
    mhdctx_log_info("%s", small);
    double t0 = now_s();
    mhdctx_log_info("%s", large); /* 50 KB against 44 KB of room: waits for the batch */
    double took = now_s() - t0;
    ck_assert_uint_eq(mhdctx_log_dropped(), before);
    ck_assert_msg(took < 5.0, "the line waited %.1f s for room", took);
    assert_file_holds_two_lines(small, large);
    free(small);
    free(large);
}
END_TEST

START_TEST(full_buffer_block_policy_gives_up_after_its_timeout)
{
    struct stalled_pipe p;
    stall_the_writer(&p, MHDCTX_LOG_FULL_BLOCK);
    uint64_t before = mhdctx_log_dropped();
    char *text = repeat('y', 1000);
    for (int i = 0; i < 200; i++) /* fills the buffers and the pipe */
        mhdctx_log_info("%s", text);
    double t0 = now_s();
    mhdctx_log_info("%s", text); /* waits 50 ms for room, then drops */
    double took = now_s() - t0;
    free(text);
    ck_assert_uint_gt(mhdctx_log_dropped(), before);
    ck_assert_msg(took >= 0.045 && took < 10.0, "a blocked line took %.3f s", took);
    unstall_and_stop(&p);
}
END_TEST

/* A pipe's bytes up to its end, read by a thread of their own. */
struct pipe_text {
    int fd;
    char *data; /* NUL-terminated */
    size_t len;
};

static void *read_to_the_end(void *arg)
{
    struct pipe_text *t = arg;
    char buf[65536];
    ssize_t n;
    while ((n = read(t->fd, buf, sizeof buf)) > 0) {
        char *grown = realloc(t->data, t->len + (size_t)n + 1);
        ck_assert_ptr_nonnull(grown);
        t->data = grown;
        memcpy(t->data + t->len, buf, (size_t)n);
        t->len += (size_t)n;
        t->data[t->len] = '\0';
    }
    return NULL;
}

/* Stops logging, closes the pipe's write end and waits for @reader to read the rest. */
static void shut_down_and_read_to_the_end(int fds[2], pthread_t reader)
{
    mhdctx_log_shutdown();
    close(fds[1]);
    pthread_join(reader, NULL);
    close(fds[0]);
}

static bool wait_waiting(size_t producers, double seconds)
{
    for (double until = now_s() + seconds; now_s() < until; sleep_ms(5))
        if (mhdctx__writer_waiting() == producers)
            return true;
    return false;
}

static void *log_one_large_line(void *arg)
{
    (void)arg;
    char *large = repeat('w', 40 * 1024);
    mhdctx_log_info("%s", large);
    free(large);
    return NULL;
}

#define SMALL_LINES 50

static void *log_small_lines(void *arg)
{
    (void)arg;
    for (int i = 0; i < SMALL_LINES; i++)
        mhdctx_log_info("small-%d", i);
    return NULL;
}

/* The block policy's writer held in write() into a full pipe (@fds) with one batch of
 * 40 KiB, and a 64 KiB buffer that has about 34 KiB of room left. */
static void hold_the_writer(int fds[2], unsigned block_timeout_ms)
{
    start_writer_to_pipe(fds, (mhdctx_log_async_options){.buffer_bytes = 64 * 1024,
                                                         .flush_interval_ms = 60000,
                                                         .when_full = MHDCTX_LOG_FULL_BLOCK,
                                                         .block_timeout_ms = block_timeout_ms});
    fill_pipe(fds[1]);
    char *first = repeat('f', 40 * 1024), *second = repeat('s', 30 * 1024);
    mhdctx_log_info("%s", first);  /* over half full: the writer takes it, held in write() */
    mhdctx_log_info("%s", second); /* the other buffer */
    free(first);
    free(second);
}

/* Under the block policy producers waiting for room are served in order, and a line
 * that comes while one waits goes behind it even if it would fit. Here small lines come
 * while a large one waits with room for them: they used to go ahead of it (and in a
 * flood, a waiter could lose the race for room to newcomers until its timeout). */
START_TEST(blocked_line_is_served_before_lines_that_come_after_it)
{
    int fds[2];
    uint64_t dropped_before = mhdctx_log_dropped();
    hold_the_writer(fds, 30000);
    pthread_t large, small;
    ck_assert_int_eq(pthread_create(&large, NULL, log_one_large_line, NULL), 0);
    ck_assert_msg(wait_waiting(1, 30), "the 40 KiB line does not wait for room");
    ck_assert_int_eq(pthread_create(&small, NULL, log_small_lines, NULL), 0);
    ck_assert_msg(wait_waiting(2, 30), "a line that fits went ahead of one waiting");
    struct pipe_text out = {.fd = fds[0]};
    pthread_t reader;
    ck_assert_int_eq(pthread_create(&reader, NULL, read_to_the_end, &out), 0);
    pthread_join(large, NULL);
    pthread_join(small, NULL);
    shut_down_and_read_to_the_end(fds, reader);
    ck_assert_uint_eq(mhdctx_log_dropped(), dropped_before);
    ck_assert_ptr_nonnull(out.data);
    const char *waited = strstr(out.data, "wwww"), *came_later = strstr(out.data, "small-0");
    ck_assert_ptr_nonnull(waited);
    ck_assert_ptr_nonnull(came_later);
    ck_assert_msg(waited < came_later, "a line that came later was written first");
    char last[32];
    snprintf(last, sizeof last, "small-%d\"", SMALL_LINES - 1);
    ck_assert_ptr_nonnull(strstr(came_later, last));
    free(out.data);
}
END_TEST

#define WAITERS 4

static void start_waiters(pthread_t threads[WAITERS])
{
    for (int i = 0; i < WAITERS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, log_one_large_line, NULL), 0);
    ck_assert_msg(wait_waiting(WAITERS, 30), "the large lines do not wait for room");
}

/* Producers waiting one behind the other each give up after their own timeout, counted
 * from when they came, wherever they are in the queue: four waiting side by side take
 * one timeout, where waiting in turn would take four. Every line is counted as dropped
 * and the queue is left empty (waiters leave from the middle; ASan and valgrind watch
 * the links). */
START_TEST(every_waiter_in_the_queue_gives_up_after_its_timeout)
{
    int fds[2];
    hold_the_writer(fds, 2000);
    uint64_t before = mhdctx_log_dropped();
    pthread_t threads[WAITERS];
    double t0 = now_s();
    start_waiters(threads);
    for (int i = 0; i < WAITERS; i++)
        pthread_join(threads[i], NULL);
    double took = now_s() - t0;
    ck_assert_uint_eq(mhdctx_log_dropped(), before + WAITERS);
    ck_assert_uint_eq(mhdctx__writer_waiting(), 0);
    ck_assert_msg(took >= 1.9 && took < 5.0, "%d lines blocked side by side took %.3f s",
                  WAITERS, took);
    struct stalled_pipe p = {{fds[0], fds[1]}};
    unstall_and_stop(&p);
}
END_TEST

static size_t count_of(const char *text, const char *what)
{
    size_t n = 0;
    for (const char *at = text; at && (at = strstr(at, what)) != NULL; at += strlen(what))
        n++;
    return n;
}

START_TEST(blocked_lines_are_written_once_the_reader_reads)
{
    struct stalled_pipe p;
    start_writer_to_pipe(p.fds, (mhdctx_log_async_options){.buffer_bytes = 64 * 1024,
                                                           .when_full = MHDCTX_LOG_FULL_BLOCK,
                                                           .block_timeout_ms = 60000});
    pthread_t drainer;
    ck_assert_int_eq(pthread_create(&drainer, NULL, drain, &p.fds[0]), 0);
    uint64_t before = mhdctx_log_dropped();
    flood(); /* a slow reader: the policy waits, nothing is lost */
    mhdctx_log_shutdown();
    close(p.fds[1]);
    pthread_join(drainer, NULL);
    close(p.fds[0]);
    ck_assert_uint_eq(mhdctx_log_dropped(), before);
}
END_TEST

/* A thread held in a signal handler while it waits in mhdctx_log_flush (or for room):
 * it goes on waiting only once the test lets it go. */
static atomic_bool flusher_held, flusher_in_handler;

static void hold_flusher(int sig)
{
    (void)sig;
    atomic_store(&flusher_in_handler, true);
    while (atomic_load(&flusher_held))
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
}

static bool wait_flag(atomic_bool *flag, double seconds)
{
    for (double until = now_s() + seconds; !atomic_load(flag) && now_s() < until;)
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    return atomic_load(flag);
}

/* Reads a pipe after a pause, and notes when a line with "marker" first arrives. */
struct marker_reader {
    int fd;
    double pause_s;
    _Atomic double seen_at; /* 0 until seen */
};

static void *read_until_marker(void *arg)
{
    struct marker_reader *m = arg;
    sleep_ms((unsigned)(m->pause_s * 1000));
    char buf[65536 + 8] = "";
    size_t kept = 0; /* the last bytes of the previous read: a marker across two reads */
    ssize_t n;
    while ((n = read(m->fd, buf + kept, sizeof buf - 1 - kept)) > 0) {
        buf[kept + (size_t)n] = '\0';
        if (atomic_load(&m->seen_at) == 0 && strstr(buf, "marker"))
            atomic_store(&m->seen_at, now_s());
        size_t len = kept + (size_t)n;
        kept = len < 8 ? len : 8;
        memmove(buf, buf + len - kept, kept);
    }
    return NULL;
}

/* A line queued while the writer is held in a slow write is written at most one
 * interval after that write began, not one interval after it ended: here the write
 * takes 1.5 s and the interval is 1 s, so the line used to arrive after 2.5 s. */
START_TEST(lines_queued_during_a_slow_write_count_from_its_start)
{
    int fds[2];
    start_writer_to_pipe(fds, (mhdctx_log_async_options){.buffer_bytes = 64 * 1024,
                                                         .flush_interval_ms = 1000,
                                                         .when_full = MHDCTX_LOG_FULL_BLOCK,
                                                         .block_timeout_ms = 60000});
    struct marker_reader m = {.fd = fds[0], .pause_s = 1.5};
    pthread_t reader;
    ck_assert_int_eq(pthread_create(&reader, NULL, read_until_marker, &m), 0);
    fill_pipe(fds[1]);
    char *text = repeat('s', 1000);
    for (int i = 0; i < 40; i++) /* past half the buffer: the writer takes them now */
        mhdctx_log_info("%s", text);
    free(text);
    sleep_ms(100); /* it waits in write() */
    double logged = now_s();
    mhdctx_log_info("marker");
    for (int i = 0; i < 500 && atomic_load(&m.seen_at) == 0; i++)
        sleep_ms(10);
    double took = atomic_load(&m.seen_at) - logged;
    shut_down_and_read_to_the_end(fds, reader);
    ck_assert_msg(took > 0 && took < 2.0, "the line arrived after %.2f s", took);
}
END_TEST

/* Whether thread @tid of this process sleeps (state S in /proc): then the flusher waits
 * inside pthread_cond_wait, without the writer's lock, for a writer held in write(). */
static bool thread_sleeps(pid_t tid)
{
    char file[64], stat[512] = "";
    snprintf(file, sizeof file, "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return false;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *end_of_name = strrchr(stat, ')');
    return end_of_name && end_of_name[1] == ' ' && end_of_name[2] == 'S';
}

/* Waits until thread @tid has slept at 10 successive looks 10 ms apart. */
static bool wait_asleep(pid_t tid)
{
    int asleep = 0;
    for (int i = 0; i < 1000 && asleep < 10; i++) {
        sleep_ms(10);
        asleep = thread_sleeps(tid) ? asleep + 1 : 0;
    }
    return asleep == 10;
}

/* A library call made in a thread of its own, for a test to watch it block. */
struct call_in_thread {
    void (*call)(void);
    pthread_t thread;
    _Atomic pid_t tid; /* 0 until the thread runs */
    atomic_bool done;  /* the call returned */
};

static void *run_call(void *arg)
{
    struct call_in_thread *c = arg;
    atomic_store(&c->tid, (pid_t)syscall(SYS_gettid));
    c->call();
    atomic_store(&c->done, true);
    return NULL;
}

/* Starts @call in a thread and returns once the call sleeps (it blocks). */
static void start_blocking_call(struct call_in_thread *c, void (*call)(void))
{
    c->call = call;
    atomic_store(&c->tid, 0);
    atomic_store(&c->done, false);
    ck_assert_int_eq(pthread_create(&c->thread, NULL, run_call, c), 0);
    for (int i = 0; i < 1000 && atomic_load(&c->tid) == 0; i++)
        sleep_ms(1);
    ck_assert(wait_asleep(atomic_load(&c->tid)));
    ck_assert(!atomic_load(&c->done));
}

/* A flush waiting for the bytes of one run of the writer returns in the next run too:
 * the byte counters used to start again from 0 at every start, and the flush waited for
 * as many bytes of the new run as the old one had queued (here none come: for ever). */
START_TEST(flush_across_a_restart_returns)
{
    struct stalled_pipe p;
    stall_the_writer(&p, MHDCTX_LOG_FULL_BLOCK);
    mhdctx_log_async_options o = {
        .buffer_bytes = 64 * 1024, .when_full = MHDCTX_LOG_FULL_BLOCK, .block_timeout_ms = 50};
    fill_pipe(p.fds[1]); /* the flush below holds the writer in write() */
    mhdctx_log_info("waits for a reader");
    struct sigaction hold = {.sa_handler = hold_flusher}, old;
    ck_assert_int_eq(sigaction(SIGUSR1, &hold, &old), 0);
    atomic_store(&flusher_in_handler, false);
    atomic_store(&flusher_held, true);
    pthread_t drainer;
    struct call_in_thread flusher;
    start_blocking_call(&flusher, mhdctx_log_flush); /* waiting in the flush */
    ck_assert_int_eq(pthread_kill(flusher.thread, SIGUSR1), 0);
    ck_assert(wait_flag(&flusher_in_handler, 10));
    ck_assert_int_eq(pthread_create(&drainer, NULL, drain, &p.fds[0]), 0);
    mhdctx_log_async_stop(); /* every line written: the flush's wait is over */
    ck_assert_int_eq(mhdctx_log_async_start(&o), MHDCTX_OK);
    atomic_store(&flusher_held, false); /* it looks again, in the new run */
    ck_assert_msg(wait_flag(&flusher.done, 5), "the flush waits for the old run's bytes");
    pthread_join(flusher.thread, NULL);
    sigaction(SIGUSR1, &old, NULL);
    mhdctx_log_shutdown();
    close(p.fds[1]);
    pthread_join(drainer, NULL);
    close(p.fds[0]);
}
END_TEST

/* A stop sends the waiting producers' lines on (each writes its own) and returns only
 * once they have left the queue. Here one waiter is held in a signal handler while the
 * stop runs: a waiter still queued when the next run starts used to wait there under
 * the old run's size and deadline, every newcomer behind it (dropped at once by a run
 * with the drop policy). The pipe is read once the stop waits for the writer: no
 * waiting line is copied before (the writer would have room for the first). */
START_TEST(stop_returns_once_the_waiters_have_left)
{
    int fds[2];
    hold_the_writer(fds, 30000);
    uint64_t before = mhdctx_log_dropped();
    pthread_t threads[WAITERS];
    start_waiters(threads);
    struct sigaction hold = {.sa_handler = hold_flusher}, old;
    ck_assert_int_eq(sigaction(SIGUSR1, &hold, &old), 0);
    atomic_store(&flusher_in_handler, false);
    atomic_store(&flusher_held, true);
    ck_assert_int_eq(pthread_kill(threads[0], SIGUSR1), 0);
    ck_assert(wait_flag(&flusher_in_handler, 10));
    pthread_t reader;
    struct call_in_thread stopper;
    start_blocking_call(&stopper, mhdctx_log_async_stop); /* joining the writer */
    struct pipe_text out = {.fd = fds[0]};
    ck_assert_int_eq(pthread_create(&reader, NULL, read_to_the_end, &out), 0);
    ck_assert_msg(!wait_flag(&stopper.done, 0.5), "the stop returned with a waiter queued");
    atomic_store(&flusher_held, false);
    ck_assert(wait_flag(&stopper.done, 60));
    pthread_join(stopper.thread, NULL);
    sigaction(SIGUSR1, &old, NULL);
    ck_assert_uint_eq(mhdctx__writer_waiting(), 0);
    ck_assert_int_eq(mhdctx_log_async_start(&(mhdctx_log_async_options){
                         .buffer_bytes = 1 << 20, .when_full = MHDCTX_LOG_FULL_DROP}),
                     MHDCTX_OK);
    mhdctx_log_info("after the restart");
    for (int i = 0; i < WAITERS; i++)
        pthread_join(threads[i], NULL);
    shut_down_and_read_to_the_end(fds, reader);
    ck_assert_uint_eq(mhdctx_log_dropped(), before);
    ck_assert_ptr_nonnull(out.data);
    char *large = repeat('w', 40 * 1024);
    ck_assert_uint_eq(count_of(out.data, large), WAITERS);
    ck_assert_uint_eq(count_of(out.data, "after the restart"), 1);
    free(large);
    free(out.data);
}
END_TEST

/* A producer cancelled (deferred, pthread_cancel's default) while it waits for room
 * finishes its line first: cancelled inside the wait, it would leave the writer's lock
 * held and its stack linked into the queue, and every later line would wait for ever. */
START_TEST(cancelled_waiter_finishes_its_line)
{
    int fds[2];
    hold_the_writer(fds, 30000);
    pthread_t waiter;
    ck_assert_int_eq(pthread_create(&waiter, NULL, log_one_large_line, NULL), 0);
    ck_assert(wait_waiting(1, 30));
    ck_assert_int_eq(pthread_cancel(waiter), 0);
    sleep_ms(100);
    ck_assert_uint_eq(mhdctx__writer_waiting(), 1); /* still waiting, for its line */
    struct pipe_text out = {.fd = fds[0]};
    pthread_t reader;
    ck_assert_int_eq(pthread_create(&reader, NULL, read_to_the_end, &out), 0);
    pthread_join(waiter, NULL);
    mhdctx_log_info("after the cancel");
    shut_down_and_read_to_the_end(fds, reader);
    char *large = repeat('w', 40 * 1024);
    ck_assert_uint_eq(count_of(out.data, large), 1);
    ck_assert_uint_eq(count_of(out.data, "after the cancel"), 1);
    free(large);
    free(out.data);
}
END_TEST

static void log_one_line(void)
{
    mhdctx_log_info("held in write");
}

/* The same for a line written synchronously into a full pipe: cancelled in write(2),
 * the thread would leave the sink's lock held. */
START_TEST(cancelled_writer_of_a_line_finishes_it)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(mhdctx_log_to_fd(fds[1]), MHDCTX_OK);
    fill_pipe(fds[1]);
    struct call_in_thread logger;
    start_blocking_call(&logger, log_one_line);
    ck_assert_int_eq(pthread_cancel(logger.thread), 0);
    sleep_ms(100);
    ck_assert(!atomic_load(&logger.done));
    struct pipe_text out = {.fd = fds[0]};
    pthread_t reader;
    ck_assert_int_eq(pthread_create(&reader, NULL, read_to_the_end, &out), 0);
    pthread_join(logger.thread, NULL);
    mhdctx_log_info("after the cancel");
    shut_down_and_read_to_the_end(fds, reader);
    ck_assert_uint_eq(count_of(out.data, "held in write"), 1);
    ck_assert_uint_eq(count_of(out.data, "after the cancel"), 1);
    free(out.data);
}
END_TEST

START_TEST(line_larger_than_a_buffer_is_written_directly)
{
    start_writer_to_file((mhdctx_log_async_options){.buffer_bytes = 64 * 1024});
    char *big = repeat('z', 100 * 1024);
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_INT("n", 0)), "%s", big);
    free(big);
    mhdctx_log_flush();
    assert_numbered_file(path, 1);
}
END_TEST

START_TEST(larger_line_keeps_its_place_after_queued_lines)
{
    start_writer_to_file(
        (mhdctx_log_async_options){.buffer_bytes = 64 * 1024, .flush_interval_ms = 60000});
    log_numbered(0, 1); /* queued, and the writer waits a minute */
    char *big = repeat('z', 100 * 1024);
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_INT("n", 1)), "%s", big);
    free(big);
    mhdctx_log_flush();
    assert_numbered_file(path, 2); /* 0 before 1 */
}
END_TEST

/* Behind a writer held in write() by a reader that stopped reading, a line larger than a
 * buffer waits for the lines queued before it at most block_timeout_ms (50 ms here),
 * under either policy, then is dropped and counted (it waited for good). */
static void larger_line_behind_a_stalled_writer(mhdctx_log_full_policy policy)
{
    struct stalled_pipe p;
    stall_the_writer(&p, policy);
    fill_pipe(p.fds[1]);
    mhdctx_log_info("queued, never written while the reader stalls");
    uint64_t before = mhdctx_log_dropped();
    char *big = repeat('z', 70 * 1024);
    double t0 = now_s();
    mhdctx_log_info("%s", big);
    double took = now_s() - t0;
    free(big);
    ck_assert_uint_eq(mhdctx_log_dropped(), before + 1);
    ck_assert_msg(took >= 0.045 && took < 10.0, "the larger line took %.3f s", took);
    unstall_and_stop(&p);
}

START_TEST(larger_line_behind_a_stalled_writer_is_dropped_in_time_when_blocking)
{
    larger_line_behind_a_stalled_writer(MHDCTX_LOG_FULL_BLOCK);
}
END_TEST

START_TEST(larger_line_behind_a_stalled_writer_is_dropped_in_time_when_dropping)
{
    larger_line_behind_a_stalled_writer(MHDCTX_LOG_FULL_DROP);
}
END_TEST

/* What a reader of a SOCK_SEQPACKET socket saw: one record per write(2) of the writer. */
struct records {
    int fd;
    char *data;
    size_t len, count, max_plain; /* max_plain: the largest record of more than one line */
    bool torn;                    /* a record that did not end with a newline */
};

static void *read_records(void *arg)
{
    struct records *r = arg;
    char *one = malloc(1 << 20);
    ssize_t n;
    while (one && (n = recv(r->fd, one, 1 << 20, 0)) > 0) {
        char *grown = realloc(r->data, r->len + (size_t)n);
        if (grown == NULL)
            break;
        r->data = grown;
        memcpy(r->data + r->len, one, (size_t)n);
        r->len += (size_t)n;
        r->count++;
        r->torn |= one[n - 1] != '\n';
        bool several_lines = memchr(one, '\n', (size_t)n - 1) != NULL;
        if (several_lines && (size_t)n > r->max_plain)
            r->max_plain = (size_t)n;
    }
    free(one);
    return NULL;
}

/* A batch of 250 KB and one line of 100 KB in it: the writer writes it in slices of at
 * most 64 KiB of whole lines (a single longer line is a slice of its own), so that a
 * request thread on the same CPU waits for one slice at most. One write of the whole
 * batch would be one record here. */
START_TEST(large_batch_is_written_in_whole_line_slices)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    int room = 1 << 20; /* the kernel caps it; a slice fits in any case */
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
    struct records r = {.fd = sv[1]};
    pthread_t reader;
    ck_assert_int_eq(pthread_create(&reader, NULL, read_records, &r), 0);
    ck_assert_int_eq(mhdctx_log_to_fd(sv[0]), MHDCTX_OK);
    mhdctx_log_async_options o = {.flush_interval_ms = 60000}; /* 1 MiB: no half-full */
    ck_assert_int_eq(mhdctx_log_async_start(&o), MHDCTX_OK);
    log_numbered(0, 1500);
    char *big = repeat('z', 100 * 1024);
    mhdctx_log_fields(MHDCTX_LOG_INFO, MHDCTX_FIELDS(MHDCTX_F_INT("n", 1500)), "%s", big);
    free(big);
    log_numbered(1501, 3000);
    mhdctx_log_flush();
    mhdctx_log_shutdown();
    close(sv[0]);
    pthread_join(reader, NULL);
    close(sv[1]);

    ck_assert(!r.torn);
    ck_assert_uint_le(r.max_plain, 64 * 1024);
    ck_assert_uint_ge(r.count, 5); /* 350 KB in slices of at most 64 KiB */
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(r.data, 1, r.len, f), r.len);
    fclose(f);
    free(r.data);
    assert_numbered_file(path, 3000); /* every line once, in order */
}
END_TEST

/* The parent's queued lines are not the child's: a child that starts a writer of its
 * own can flush it (it used to wait forever for the parent's bytes). */
START_TEST(child_of_fork_flushes_its_own_writer)
{
    mhdctx_log_async_options o =
        start_writer_to_file((mhdctx_log_async_options){.flush_interval_ms = 60000});
    log_numbered(0, 1);
    /* The writer thread is up and waiting: under AddressSanitizer, a child forked while
     * it was still starting sometimes hung in its own pthread_create. */
    mhdctx_log_flush();
    log_numbered(1, 2); /* still queued at the fork */
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        if (!UNDER_TSAN && mhdctx_log_async_start(&o) != MHDCTX_OK) /* see below */
            _exit(4);
        log_numbered(2, 3);
        mhdctx_log_flush();
        _exit(0);
    }
    ck_assert_int_eq(support_wait_child(child), 0);
    mhdctx_log_flush();
    long ns[4];
    ck_assert_uint_eq(numbered_lines(path, ns, 4), 3); /* 0, the child's 2, then 1 */
}
END_TEST

START_TEST(child_of_fork_logs_synchronously)
{
    mhdctx_log_async_options o =
        start_writer_to_file((mhdctx_log_async_options){.flush_interval_ms = 60000});
    log_numbered(0, 1);
    mhdctx_log_flush();
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        /* No writer thread here: a queued line would never be written. */
        log_numbered(1, 2);
        if (mhdctx_log_async_running())
            _exit(3);
        /* A writer of its own works (lock and conditions made anew). ThreadSanitizer
         * cannot follow a thread started after a multi-threaded fork (it dies): there
         * the child stays synchronous. */
        if (!UNDER_TSAN && mhdctx_log_async_start(&o) != MHDCTX_OK)
            _exit(4);
        log_numbered(2, 3);
        mhdctx_log_shutdown();
        _exit(0);
    }
    ck_assert_int_eq(support_wait_child(child), 0);
    assert_numbered_file(path, 3);
}
END_TEST

static Suite *log_writer_suite(void)
{
    Suite *s = suite_create("log_writer");
    TCase *tc = support_tcase(s, "writer", 60, setup, teardown);
    tcase_add_test(tc, options_are_checked);
    tcase_add_test(tc, callback_sink_is_refused_both_ways);
    tcase_add_test(tc, flush_writes_every_line_logged_before_it);
    tcase_add_test(tc, stop_writes_what_is_queued);
    tcase_add_test(tc, idle_lines_are_written_within_the_interval);
    tcase_add_test(tc, lines_queued_during_a_slow_write_count_from_its_start);
    tcase_add_test(tc, idle_writer_sleeps_until_a_line_comes);
    tcase_add_test(tc, writer_thread_blocks_signals);
    tcase_add_test(tc, switching_sinks_sends_queued_lines_to_the_old_one);
    tcase_add_test(tc, dev_full_counts_every_line_as_dropped);
    tcase_add_test(tc, full_buffer_drop_policy_never_waits);
    tcase_add_test(tc, drop_policy_makes_room_for_the_next_line);
    tcase_add_test(tc, block_policy_makes_room_at_once);
    tcase_add_test(tc, full_buffer_block_policy_gives_up_after_its_timeout);
    tcase_add_test(tc, blocked_lines_are_written_once_the_reader_reads);
    tcase_add_test(tc, blocked_line_is_served_before_lines_that_come_after_it);
    tcase_add_test(tc, every_waiter_in_the_queue_gives_up_after_its_timeout);
    tcase_add_test(tc, stop_returns_once_the_waiters_have_left);
    tcase_add_test(tc, cancelled_waiter_finishes_its_line);
    tcase_add_test(tc, cancelled_writer_of_a_line_finishes_it);
    tcase_add_test(tc, flush_across_a_restart_returns);
    tcase_add_test(tc, line_larger_than_a_buffer_is_written_directly);
    tcase_add_test(tc, larger_line_keeps_its_place_after_queued_lines);
    tcase_add_test(tc, larger_line_behind_a_stalled_writer_is_dropped_in_time_when_blocking);
    tcase_add_test(tc, larger_line_behind_a_stalled_writer_is_dropped_in_time_when_dropping);
    tcase_add_test(tc, large_batch_is_written_in_whole_line_slices);
    tcase_add_test(tc, child_of_fork_logs_synchronously);
    tcase_add_test(tc, child_of_fork_flushes_its_own_writer);
    return s;
}

int main(void)
{
    SRunner *runner = srunner_create(log_writer_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
