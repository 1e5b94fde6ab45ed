/*
 * workers.c - a fixed pool of threads with a FIFO of mhdctx tasks. The tasks carry
 * their request's context (mhdctx_task_bind), so a worker logs with the right request
 * id and never keeps one after the task: the pool itself knows nothing of contexts.
 */
#include "workers.h"

#include <pthread.h>
#include <stdlib.h>

struct job {
    mhdctx_task *task;
    struct job *next;
};

struct workers {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    struct job *head, *tail;
    bool stopping;
    unsigned n;
    pthread_t threads[];
};

static struct job *next_job(workers *pool)
{
    pthread_mutex_lock(&pool->lock);
    while (pool->head == NULL && !pool->stopping)
        pthread_cond_wait(&pool->ready, &pool->lock);
    struct job *job = pool->head;
    if (job) {
        pool->head = job->next;
        if (pool->head == NULL)
            pool->tail = NULL;
    }
    pthread_mutex_unlock(&pool->lock);
    return job;
}

static void *worker_main(void *arg)
{
    workers *pool = arg;
    struct job *job;
    while ((job = next_job(pool)) != NULL) {
        mhdctx_task_run(job->task); /* context current only for the task */
        free(job);
    }
    return NULL;
}

workers *workers_start(unsigned n)
{
    workers *pool = calloc(1, sizeof *pool + n * sizeof(pthread_t));
    if (pool == NULL)
        return NULL;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->ready, NULL);
    for (; pool->n < n; pool->n++) {
        if (pthread_create(&pool->threads[pool->n], NULL, worker_main, pool) != 0) {
            workers_stop(pool);
            return NULL;
        }
    }
    return pool;
}

bool workers_submit(workers *pool, mhdctx_task *task)
{
    struct job *job = malloc(sizeof *job);
    pthread_mutex_lock(&pool->lock);
    bool accepted = job != NULL && !pool->stopping;
    if (accepted) {
        *job = (struct job){task, NULL};
        if (pool->tail)
            pool->tail->next = job;
        else
            pool->head = job;
        pool->tail = job;
        pthread_cond_signal(&pool->ready);
    }
    pthread_mutex_unlock(&pool->lock);
    if (!accepted) {
        free(job);
        mhdctx_task_cancel(task);
    }
    return accepted;
}

void workers_stop(workers *pool)
{
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->ready);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->n; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->ready);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}
