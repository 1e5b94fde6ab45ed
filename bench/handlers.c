/* handlers.c - the hello handlers of the benchmarks: MHD's two-call idiom, answering
 * "hello, world" at the second call. */
#include "handlers.h"

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

static const char body[] = "hello, world";
static struct MHD_Response *shared_response;
bool bench_app_line;
bool bench_echo_id;

bool bench_handlers_init(void)
{
    shared_response = MHD_create_response_from_buffer_with_free_callback_cls(
        sizeof body - 1, (void *)body, NULL, NULL);
    return shared_response != NULL;
}

void bench_handlers_free(void)
{
    if (shared_response)
        MHD_destroy_response(shared_response);
    shared_response = NULL;
}

/* The first call only marks the request (headers are in); true when it was the first. */
static bool first_call(void **req_cls)
{
    if (*req_cls != NULL)
        return false;
    *req_cls = &shared_response;
    return true;
}

/* A known amount of work in the request thread: xorshift rounds, @loops of them. A loop,
 * not a wait on the clock: a clock read in a VM may leave the CPU (kvm-clock), and
 * waiting for the clock's time would count a preemption as work done. */
static _Atomic uint64_t spin_result = 88172645463325252u;
static unsigned long spin_loops;

static uint64_t xorshift_rounds(uint64_t x, unsigned long n)
{
    while (n-- > 0) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

/* @n rounds from the last result, stored: the compiler may not drop rounds whose result
 * is used. Races between threads are harmless (any value will do) but undefined: a
 * relaxed atomic. */
static void spin(unsigned long n)
{
    uint64_t x = atomic_load_explicit(&spin_result, memory_order_relaxed);
    atomic_store_explicit(&spin_result, xorshift_rounds(x | 1, n), memory_order_relaxed);
}

static long thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

void bench_set_spin_ns(long ns)
{
    spin_loops = 0;
    if (ns <= 0)
        return;
    /* Loops per ns from the fastest of five timed runs of 2^20 loops (a run the
     * scheduler cut short in CPU time is still slower: its caches were lost). */
    enum { CALIBRATION_LOOPS = 1 << 20 };
    long best = 0;
    for (int i = 0; i < 5; i++) {
        long t0 = thread_cpu_ns();
        spin(CALIBRATION_LOOPS);
        long took = thread_cpu_ns() - t0;
        if (took > 0 && (best == 0 || took < best))
            best = took;
    }
    if (best > 0) /* else a clock that did not move: no spin rather than a division by 0 */
        spin_loops = (unsigned long)((double)CALIBRATION_LOOPS * (double)ns / (double)best);
}

enum MHD_Result bench_bare(void *cls, struct MHD_Connection *connection, const char *url,
                           const char *method, const char *version, const char *upload_data,
                           size_t *upload_data_size, void **req_cls)
{
    (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
    if (first_call(req_cls))
        return MHD_YES;
    *upload_data_size = 0;
    if (spin_loops > 0)
        spin(spin_loops);
    return MHD_queue_response(connection, MHD_HTTP_OK, shared_response);
}

enum MHD_Result bench_mhdctx(void *cls, struct MHD_Connection *connection, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **req_cls)
{
    (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
    if (first_call(req_cls))
        return MHD_YES;
    *upload_data_size = 0;
    if (bench_app_line)
        mhdctx_log(MHDCTX_LOG_INFO, "saying hello");
    if (!bench_echo_id)
        return MHD_queue_response(connection, MHD_HTTP_OK, shared_response);
    struct MHD_Response *response = MHD_create_response_from_buffer_with_free_callback_cls(
        sizeof body - 1, (void *)body, NULL, NULL);
    if (response == NULL ||
        mhdctx_response_add_request_id(response, mhdctx_current()) != MHDCTX_OK) {
        if (response)
            MHD_destroy_response(response);
        return MHD_NO;
    }
    enum MHD_Result result = MHD_queue_response(connection, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return result;
}
