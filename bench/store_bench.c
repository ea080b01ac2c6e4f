/* store_bench.c — throughput of the store alone, on a fresh file, durability full unless -d.
 * Phase 1: N submits pushed the way the loop thread pushes them (batches of B while at most W
 * wait for their commit); prints acked inserts/s, commits/s, the mean group size and the bytes
 * written per insert, the process's CPU time and context switches per insert (both threads).
 * Phase 2 (-c): the scheduler's side, CLAIM B at a time and FINISH each
 * job, the next claim sharing a group with the previous one's finishes, until none is left.
 * Phase 2 (-C instead): every job CLAIMed first, B at a time, then every one FINISHed as the
 * submits were pushed, so that each kind's cost shows apart.
 * Every phase prints the writer thread's CPU per job: what the store alone costs, whatever
 * the load of the machine does to the wall clock.
 *   store_bench [-n N] [-b B] [-w W] [-s payload bytes] [-k] [-c | -C] [-d] [-p path] */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

typedef struct bench {
    fl_store *store;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned notified;     /* under mu */
    long acked, failed;    /* main thread only */
    fl_store_op claim;     /* phase 2: re-pushed from its own callback */
    long finished;
    int drained;           /* a claim found nothing */
    int split;             /* -C: claims keep their jobs in held[] instead of finishing them */
    fl_job **held;         /* -C: the claimed jobs, n_held of them, cap_held allocated */
    size_t n_held, cap_held;
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

/* written_bytes returns what this process has written so far (wchar in /proc/self/io): the
 * WAL frames and checkpoints, the store's I/O cost per row. 0 if unknown. */
static unsigned long long written_bytes(void)
{
    unsigned long long v = 0;
    char line[128];
    FILE *f = fopen("/proc/self/io", "r");

    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "wchar: %llu", &v) == 1)
            break;
    fclose(f);
    return v;
}

/* cpu_s returns the process's user + system time so far, every thread's, and in *switches
 * its context switches (a thread going to sleep, or preempted): the hand-off's cost. */
static double cpu_s(long *switches)
{
    struct rusage ru;

    *switches = 0;
    if (getrusage(RUSAGE_SELF, &ru))
        return 0;
    *switches = ru.ru_nvcsw + ru.ru_nivcsw;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* writer_cpu_s returns the CPU time (user + system) of the store's writer thread so far, the
 * thread named "fl-store" in /proc/self/task; 0 if it cannot be read. */
static double writer_cpu_s(void)
{
    char path[300], buf[512], *p;
    unsigned long long ut, st;
    double v = 0;
    struct dirent *e;
    DIR *d = opendir("/proc/self/task");
    FILE *f;

    while (d && (e = readdir(d))) {
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        if (!(f = fopen(path, "r")))
            continue;
        p = fgets(buf, sizeof(buf), f);
        fclose(f);
        if (!p || strcmp(buf, "fl-store\n") != 0)
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
        if (!(f = fopen(path, "r")))
            break;
        p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
        /* After the comm: state, then fields 4..13, then utime and stime (14, 15). */
        if (p && sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
            v = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
        fclose(f);
        break;
    }
    if (d)
        closedir(d);
    return v;
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
    fl_job_sizes sz = { 4, FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT, payload, FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT };
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
    fl_store_submit(b->store, op, job, submit_done, b);
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

/* wait_all reaps until every pushed op is done and until_done() holds. */
static void wait_all(bench *b, int (*until_done)(const bench *b))
{
    unsigned seen;

    for (;;) {
        pthread_mutex_lock(&b->mu);
        seen = b->notified;
        pthread_mutex_unlock(&b->mu);
        fl_store_reap(b->store);
        if (fl_store_pending(b->store) == 0 && until_done(b))
            return;
        wait_notify(b, seen);
    }
}

static void finish_done(fl_store_op *op)
{
    bench *b = op->udata;

    if (op->result)
        b->failed++;
    else
        b->finished++;
    free(op);
}

/* finish_one pushes the FINISH of job id as succeeded. */
static void finish_one(bench *b, int64_t id)
{
    fl_store_op *f = calloc(1, sizeof(*f));
    fl_store_outcome o = { .state = FL_STATE_SUCCEEDED, .has_exit_code = 1,
                           .finished_at = fl_job_now_ms() };

    if (!f) {
        b->failed++;
        return;
    }
    fl_store_finish(b->store, f, id, &o, finish_done, b);
}

/* hold_jobs moves a claim's jobs into b->held (-C), for the finish phase. */
static void hold_jobs(bench *b, fl_store_op *op)
{
    size_t i;

    if (b->n_held + op->u.claim.n > b->cap_held) {
        size_t cap = (b->n_held + op->u.claim.n) * 2;
        fl_job **grown = realloc(b->held, cap * sizeof(*grown));
        if (!grown) {
            b->failed += (long)op->u.claim.n;
            fl_store_list_free(op->u.claim.jobs, op->u.claim.n);
            return;
        }
        b->held = grown;
        b->cap_held = cap;
    }
    for (i = 0; i < op->u.claim.n; i++)
        b->held[b->n_held++] = op->u.claim.jobs[i];
    free(op->u.claim.jobs);
}

/* claim_done finishes every claimed job and claims again, in the same next group. */
static void claim_done(fl_store_op *op)
{
    bench *b = op->udata;
    size_t i;

    if (op->result || op->u.claim.n == 0) {
        b->failed += op->result != 0;
        b->drained = 1;
        return;
    }
    if (b->split) {
        hold_jobs(b, op);
        fl_store_claim(b->store, op, op->u.claim.type, op->u.claim.limit, fl_job_now_ms(), claim_done, b);
        return;
    }
    for (i = 0; i < op->u.claim.n; i++)
        finish_one(b, op->u.claim.jobs[i]->id);
    fl_store_list_free(op->u.claim.jobs, op->u.claim.n);
    fl_store_claim(b->store, op, op->u.claim.type, op->u.claim.limit, fl_job_now_ms(), claim_done, b);
}

static int drained(const bench *b)
{
    return b->drained;
}

/* A phase's starting point, and its report: rates, and the writer's and the process's CPU
 * per job (both threads for the latter: the pushing and the callbacks too). */
typedef struct phase { fl_store_stats st; double t, writer, cpu; long sw; } phase;

static void phase_start(bench *b, phase *p)
{
    fl_store_stats_get(b->store, &p->st);
    p->writer = writer_cpu_s();
    p->cpu = cpu_s(&p->sw);
    p->t = now_s();
}

static void phase_report(bench *b, const phase *p, const char *what, long jobs)
{
    fl_store_stats st;
    double t = now_s() - p->t, writer = writer_cpu_s() - p->writer, cpu;
    long sw;

    cpu = cpu_s(&sw) - p->cpu;
    fl_store_stats_get(b->store, &st);
    printf("  %s: %ld jobs, %.0f jobs/s, %.0f commits/s, %.1f ops/commit, writer %.1f CPU us/job,"
           " process %.1f CPU us/job\n", what, jobs, (double)jobs / t,
           (double)(st.commits - p->st.commits) / t,
           st.commits > p->st.commits ? (double)(st.ops - p->st.ops) / (double)(st.commits - p->st.commits) : 0.0,
           writer * 1e6 / (double)jobs, cpu * 1e6 / (double)jobs);
}

static int all_finished(const bench *b)
{
    return b->finished + b->failed >= (long)b->n_held;
}

/* finish_held finishes every held job (-C), B at a time while at most W wait, as the submits. */
static void finish_held(bench *b, long batch, long window)
{
    size_t next = 0;
    long k;
    unsigned seen;

    while (next < b->n_held) {
        pthread_mutex_lock(&b->mu);
        seen = b->notified;
        pthread_mutex_unlock(&b->mu);
        fl_store_reap(b->store);
        while (next < b->n_held && (long)fl_store_pending(b->store) + batch <= window)
            for (k = 0; k < batch && next < b->n_held; k++)
                finish_one(b, b->held[next++]->id);
        if (fl_store_pending(b->store) > 0)
            wait_notify(b, seen);
    }
    wait_all(b, all_finished);
}

/* drain runs phase 2 and prints its rates. */
static void drain(bench *b, long batch, long window)
{
    phase p;

    phase_start(b, &p);
    fl_store_claim(b->store, &b->claim, "echo", (int)batch, fl_job_now_ms(), claim_done, b);
    wait_all(b, drained);
    if (!b->split) {
        phase_report(b, &p, "claimed and finished", b->finished);
        return;
    }
    phase_report(b, &p, "claimed", (long)b->n_held);
    phase_start(b, &p);
    finish_held(b, batch, window);
    phase_report(b, &p, "finished", b->finished);
    fl_store_list_free(b->held, b->n_held);
}

/* remove_db deletes the database at path, its WAL files, and the directory made for it. */
static void remove_db(const char *path, const char *dir)
{
    char f[300];

    snprintf(f, sizeof(f), "%s-wal", path);
    unlink(f);
    snprintf(f, sizeof(f), "%s-shm", path);
    unlink(f);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    long n = 200000, batch = 100, window = 200, pushed = 0, k;
    size_t payload = 128;
    int full = 1, keyed = 0, made_dir = 0, claims = 0, opt;
    char path[256] = "", dir[] = "/tmp/fl_store_bench_XXXXXX", err[256];
    bench b = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
    fl_store_stats st;
    unsigned long long w0;
    double t0, t, c0, wc;
    long sw0, sw1;
    unsigned seen;

    while ((opt = getopt(argc, argv, "n:b:w:s:kcCdp:")) != -1) {
        switch (opt) {
        case 'n': n = atol(optarg); break;
        case 'b': batch = atol(optarg); break;
        case 'w': window = atol(optarg); break;
        case 's': payload = (size_t)atol(optarg); break;
        case 'k': keyed = 1; break;
        case 'c': claims = 1; break;
        case 'C': claims = 1; b.split = 1; break;
        case 'd': full = 0; break;
        case 'p': snprintf(path, sizeof(path), "%s", optarg); break;
        default:
            fprintf(stderr, "usage: %s [-n N] [-b B] [-w W] [-s bytes] [-k] [-c | -C] [-d] [-p path]\n",
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
    const fl_store_options sopt = { .path = path, .durability_full = full };
    const fl_store_hooks hooks = { .notify = notify_cb, .udata = &b };
    if (fl_store_open(&b.store, &sopt, &hooks, err, sizeof(err))) {
        fprintf(stderr, "store_bench: %s\n", err);
        if (made_dir)
            remove_db(path, dir);
        return 1;
    }

    w0 = written_bytes();
    c0 = cpu_s(&sw0);
    wc = writer_cpu_s();
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
    c0 = cpu_s(&sw1) - c0;
    wc = writer_cpu_s() - wc;
    fl_store_stats_get(b.store, &st);
    w0 = written_bytes() - w0;

    printf("%ld submits, payload %zu B, %s%s, batch %ld, window %ld: %.2f s\n", n, payload,
           full ? "synchronous=FULL" : "synchronous=NORMAL", keyed ? ", idempotency keys" : "",
           batch, window, t);
    printf("  %.0f inserts/s acked, %.0f commits/s, %.1f ops/commit, %.0f bytes written/insert,"
           " %.1f CPU us/insert (writer %.1f), %.2f context switches/insert, %ld failed\n",
           (double)b.acked / t, (double)st.commits / t,
           st.commits ? (double)st.ops / (double)st.commits : 0.0, (double)w0 / (double)n,
           c0 * 1e6 / (double)n, wc * 1e6 / (double)n, (double)(sw1 - sw0) / (double)n, b.failed);
    if (claims)
        drain(&b, batch, window);
    fl_store_close(b.store);
    if (made_dir)
        remove_db(path, dir);
    return b.failed ? 1 : 0;
}
