/* store_bench.c — insert throughput of the store alone: N submits pushed the way the loop
 * thread pushes them (batches of B while at most W wait for their commit), on a fresh file,
 * with durability full unless -d. Prints acked inserts/s, commits/s and the mean group size.
 *   store_bench [-n N] [-b B] [-w W] [-s payload bytes] [-k] [-d] [-p path] */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

typedef struct bench {
    fl_store *store;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned notified;     /* under mu */
    long acked, failed;    /* main thread only */
} bench;

static void notify_cb(void *arg)
{
    bench *b = arg;

    pthread_mutex_lock(&b->mu);
    b->notified++;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void submit_done(fl_store_op *op)
{
    bench *b = op->udata;

    if (op->result)
        b->failed++;
    else
        b->acked++;
    fl_job_free(op->u.submit.job);
    free(op);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* push_one submits job number i: the fields an HTTP request would carry. */
static int push_one(bench *b, long i, size_t payload, int keyed)
{
    fl_job_sizes sz = { 4, FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT, payload };
    char key[32];
    fl_store_op *op = calloc(1, sizeof(*op));
    fl_job *job;

    if (keyed)
        sz.idem_key = (size_t)snprintf(key, sizeof(key), "key-%ld", i);
    job = fl_job_new(&sz);
    if (!op || !job) {
        free(op);
        fl_job_free(job);
        return -ENOMEM;
    }
    memcpy(job->type, "echo", 4);
    if (keyed)
        memcpy(job->idem_key, key, sz.idem_key);
    memset(job->payload, 'x', payload);
    job->state = FL_STATE_QUEUED;
    job->max_attempts = 3;
    job->timeout = 30;
    job->created_at = job->run_at = fl_job_now_ms();
    op->kind = FL_STORE_SUBMIT;
    op->u.submit.job = job;
    op->cb = submit_done;
    op->udata = b;
    fl_store_push(b->store, op);
    return 0;
}

/* wait_notify sleeps until the writer reports a finished group. */
static void wait_notify(bench *b, unsigned seen)
{
    pthread_mutex_lock(&b->mu);
    while (b->notified == seen)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

int main(int argc, char **argv)
{
    long n = 200000, batch = 100, window = 200, pushed = 0, k;
    size_t payload = 128;
    int full = 1, keyed = 0, made_dir = 0, opt;
    char path[256] = "", dir[] = "/tmp/fl_store_bench_XXXXXX", err[256];
    bench b = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
    fl_store_stats st;
    double t0, t;
    unsigned seen;

    while ((opt = getopt(argc, argv, "n:b:w:s:kdp:")) != -1) {
        switch (opt) {
        case 'n': n = atol(optarg); break;
        case 'b': batch = atol(optarg); break;
        case 'w': window = atol(optarg); break;
        case 's': payload = (size_t)atol(optarg); break;
        case 'k': keyed = 1; break;
        case 'd': full = 0; break;
        case 'p': snprintf(path, sizeof(path), "%s", optarg); break;
        default:
            fprintf(stderr, "usage: %s [-n N] [-b B] [-w W] [-s bytes] [-k] [-d] [-p path]\n",
                    argv[0]);
            return 2;
        }
    }
    if (n < 1 || batch < 1 || window < batch) {
        fprintf(stderr, "need n >= 1, b >= 1, w >= b\n");
        return 2;
    }
    if (!path[0]) {
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            return 1;
        }
        snprintf(path, sizeof(path), "%s/bench.db", dir);
        made_dir = 1;
    }
    if (fl_store_open(&b.store, path, full, notify_cb, &b, err, sizeof(err))) {
        fprintf(stderr, "store_bench: %s\n", err);
        return 1;
    }

    t0 = now_s();
    while (b.acked + b.failed < n) {
        pthread_mutex_lock(&b.mu);
        seen = b.notified;
        pthread_mutex_unlock(&b.mu);
        fl_store_reap(b.store);
        while (pushed < n && (long)fl_store_pending(b.store) + batch <= window) {
            for (k = 0; k < batch && pushed < n; k++, pushed++)
                if (push_one(&b, pushed, payload, keyed)) {
                    fprintf(stderr, "store_bench: out of memory\n");
                    return 1;
                }
        }
        if (fl_store_pending(b.store) > 0)
            wait_notify(&b, seen);
    }
    t = now_s() - t0;
    fl_store_stats_get(b.store, &st);
    fl_store_close(b.store);

    printf("%ld submits, payload %zu B, %s%s, batch %ld, window %ld: %.2f s\n", n, payload,
           full ? "synchronous=FULL" : "synchronous=NORMAL", keyed ? ", idempotency keys" : "",
           batch, window, t);
    printf("  %.0f inserts/s acked, %.0f commits/s, %.1f ops/commit, %ld failed\n",
           (double)b.acked / t, (double)st.commits / t,
           st.commits ? (double)st.ops / (double)st.commits : 0.0, b.failed);
    if (made_dir) {
        char f[300];

        snprintf(f, sizeof(f), "%s-wal", path);
        unlink(f);
        snprintf(f, sizeof(f), "%s-shm", path);
        unlink(f);
        unlink(path);
        rmdir(dir);
    }
    return b.failed ? 1 : 0;
}
