/* soak.c — the crash soak (`make soak`, not a ctest: it runs for minutes). Each round starts
 * the real flingd on the same database, lets clients submit acked jobs (every 202's id is kept)
 * and fire-and-forget jobs (only counted) of three kinds — sleep, exec (a shell appending
 * $FLING_JOB_ID to a run log with O_APPEND) and http (a POST to a receiver in this process) —
 * each with on_complete/on_abort callbacks to the same receiver, and SIGKILLs flingd at a random
 * moment. A final clean run lets everything finish. Then: every acked job must exist and be
 * terminal (lost = 0 is the hard check), every job's callback must have arrived, and what
 * at-least-once allows is counted: bodies that ran more than once, callbacks delivered more
 * than once. Everything is bounded in time and count. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fling.h"
#include "harness.h"
#include "receiver.h"

#define ACKED_CLIENTS 3
#define FIRE_CLIENTS 1
#define SUBMITS_PER_ROUND 150      /* per client: bounds the jobs a round adds */
#define MAX_ACKED 200000
#define FINAL_WAIT_S 300           /* the clean run's bound for everything to finish */

static const char *const kinds[] = { "sleep", "exec", "http" };
#define N_KINDS 3

typedef struct opts {
    int rounds;
    unsigned seed;
    double max_seconds;         /* the rounds stop early past this */
} opts;

typedef struct tally {
    long acked_ids[MAX_ACKED];
    atomic_long n_acked;
    atomic_long fires_sent;
    atomic_long unanswered;     /* acked submits that got no 202 (refused, cut by the kill) */
} tally;

static flh_daemon D;
static flr_receiver *R;
static tally T;
static atomic_int stop_clients;
static char work[64] = "/tmp/flingsoak.XXXXXX";   /* the run log lives here */
static char run_log[128];

/* ---- configuration ---------------------------------------------------------------------- */

/* Acked jobs use the types a-KIND, fire-and-forget ones f-KIND, so their counts stay apart. */
static int write_types(char *buf, size_t cap)
{
    char *cb = flr_url(R, "/cb"), *hook = flr_url(R, "/http");
    if (!cb || !hook) {
        free(cb);
        free(hook);
        return -1;
    }
    int n = snprintf(buf, cap, "[callbacks]\nbackoff = 0.2\nbackoff_max = 2\nmax_attempts = 50\n");
    for (int f = 0; f < 2; f++) {
        const char *p = f ? "f" : "a";
        n += snprintf(buf + n, cap - (size_t)n,
                      "[type.%s-sleep]\nhandler = sleep\nmax_attempts = 10\non_complete = %s\non_abort = %s\n"
                      "[type.%s-exec]\nhandler = exec\nmax_attempts = 10\n"
                      "command = /bin/sh -c 'echo \"$FLING_JOB_ID\" >> %s'\non_complete = %s\non_abort = %s\n"
                      "[type.%s-http]\nhandler = http\nmax_attempts = 10\nurl = %s\non_complete = %s\non_abort = %s\n",
                      p, cb, cb, p, run_log, cb, cb, p, hook, cb, cb);
    }
    free(cb);
    free(hook);
    return (size_t)n < cap ? 0 : -1;
}

/* ---- clients ------------------------------------------------------------------------------ */

static void pause_ms(unsigned *seed, int lo, int hi)
{
    usleep((useconds_t)(lo + (int)(rand_r(seed) % (unsigned)(hi - lo + 1))) * 1000);
}

/* submit_one sends one job of a random kind: acked (the 202's id is kept) or fire-and-forget
 * (only counted once the kernel took it). */
static void submit_one(fling_client *c, int fire, unsigned *seed)
{
    char type[16];
    snprintf(type, sizeof type, "%s-%s", fire ? "f" : "a", kinds[rand_r(seed) % N_KINDS]);
    if (fire) {
        if (fling_fire(c, type, "0.05", 4, NULL) == 0)
            atomic_fetch_add(&T.fires_sent, 1);
        return;
    }
    fling_response r = { 0 };
    if (fling_submit(c, type, "0.05", 4, NULL, &r) == 0 && r.status == 202) {
        long k = atomic_fetch_add(&T.n_acked, 1);
        if (k < MAX_ACKED)
            T.acked_ids[k] = strtol(r.id, NULL, 10);
    } else {
        atomic_fetch_add(&T.unanswered, 1);
    }
    fling_response_clear(&r);
}

typedef struct client_arg {
    unsigned seed;
    int fire;
} client_arg;

static void *client(void *arg)
{
    client_arg *a = arg;
    fling_client *c = fling_client_new(D.url, NULL);
    fling_client_set_timeouts(c, 1000, 5000);
    for (int i = 0; i < SUBMITS_PER_ROUND && !atomic_load(&stop_clients); i++) {
        submit_one(c, a->fire, &a->seed);
        pause_ms(&a->seed, 4, 20);
    }
    fling_client_free(c);
    return NULL;
}

/* run_round runs the clients against a started flingd and SIGKILLs it after kill_ms. */
static int run_round(unsigned *seed, int kill_ms)
{
    pthread_t th[ACKED_CLIENTS + FIRE_CLIENTS];
    client_arg args[ACKED_CLIENTS + FIRE_CLIENTS];
    atomic_store(&stop_clients, 0);
    for (int k = 0; k < ACKED_CLIENTS + FIRE_CLIENTS; k++) {
        args[k] = (client_arg){ .seed = (unsigned)rand_r(seed), .fire = k >= ACKED_CLIENTS };
        if (pthread_create(&th[k], NULL, client, &args[k]) != 0)
            return -1;
    }
    usleep((useconds_t)kill_ms * 1000);
    int st = flh_kill(&D, SIGKILL);
    usleep(50000);   /* clients meet the dead daemon for a moment */
    atomic_store(&stop_clients, 1);
    for (int k = 0; k < ACKED_CLIENTS + FIRE_CLIENTS; k++)
        pthread_join(th[k], NULL);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? 0 : -1;
}

/* ---- the final accounting ----------------------------------------------------------------- */

typedef struct job_stats {
    long total, unfinished, fires_enqueued;
    long *exec_succeeded;   /* ids of succeeded exec jobs */
    size_t n_exec, cap_exec;
    long *ids;              /* every job id */
    size_t n_ids, cap_ids;
} job_stats;

static int push_id(long **arr, size_t *n, size_t *cap, long v)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        long *p = realloc(*arr, nc * sizeof *p);
        if (!p)
            return -ENOMEM;
        *arr = p;
        *cap = nc;
    }
    (*arr)[(*n)++] = v;
    return 0;
}

static int is_terminal(const char *state)
{
    return state && (!strcmp(state, "succeeded") || !strcmp(state, "failed") || !strcmp(state, "cancelled"));
}

static void tally_job(json_t *job, void *arg)
{
    job_stats *s = arg;
    const char *type = json_string_value(json_object_get(job, "type"));
    const char *state = json_string_value(json_object_get(job, "state"));
    const char *id_text = json_string_value(json_object_get(job, "id"));
    long id = id_text ? strtol(id_text, NULL, 10) : 0;
    s->total++;
    s->unfinished += !is_terminal(state);
    s->fires_enqueued += type && type[0] == 'f';
    if (type && strcmp(type + 1, "-exec") == 0 && state && strcmp(state, "succeeded") == 0)
        push_id(&s->exec_succeeded, &s->n_exec, &s->cap_exec, id);
    push_id(&s->ids, &s->n_ids, &s->cap_ids, id);
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* repeats sorts v and counts the values that occur more than once. */
static long repeats(long *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_long);
    long r = 0;
    for (size_t i = 1; i < n; i++)
        r += v[i] == v[i - 1] && (i < 2 || v[i - 1] != v[i - 2]);
    return r;
}

static int contains(const long *sorted, size_t n, long v)
{
    return bsearch(&v, sorted, n, sizeof v, cmp_long) != NULL;
}

/* receiver_ids collects the value of header (a number) of every request that came to path. */
static void receiver_ids(const char *path, const char *header, long **out, size_t *n, size_t *cap)
{
    for (size_t i = 0; i < flr_count(R); i++) {
        const flr_request *q = flr_get(R, i);
        const char *v = flr_header(q, header);
        if (strcmp(q->path, path) == 0 && v)
            push_id(out, n, cap, strtol(v, NULL, 10));
    }
}

static void run_log_ids(long **out, size_t *n, size_t *cap)
{
    FILE *f = fopen(run_log, "r");
    char line[64];
    while (f && fgets(line, sizeof line, f))
        push_id(out, n, cap, strtol(line, NULL, 10));
    if (f)
        fclose(f);
}

/* missing counts the values of want (any order) absent from sorted have. */
static long missing(const long *want, size_t n_want, const long *have, size_t n_have)
{
    long m = 0;
    for (size_t i = 0; i < n_want; i++)
        m += !contains(have, n_have, want[i]);
    return m;
}

/* lost_acked counts acked jobs that are not in the store or not terminal. */
static long lost_acked(void)
{
    long lost = 0, n = atomic_load(&T.n_acked);
    for (long i = 0; i < n && i < MAX_ACKED; i++) {
        char path[48];
        snprintf(path, sizeof path, "/v1/jobs/%ld", T.acked_ids[i]);
        json_t *job = NULL;
        int st = flh_http(&D, "GET", path, &job);
        if (st != 200 || !is_terminal(json_string_value(json_object_get(job, "state")))) {
            if (lost++ < 10)
                fprintf(stderr, "soak: acked job %ld: HTTP %d, state %s\n", T.acked_ids[i], st,
                        job ? json_string_value(json_object_get(job, "state")) : "-");
        }
        json_decref(job);
    }
    return lost;
}

static void stats_free(job_stats *s)
{
    free(s->exec_succeeded);
    free(s->ids);
    memset(s, 0, sizeof *s);
}

/* settle waits (bounded) until every job is terminal and every job has had a callback. */
static void settle(job_stats *s, long **cb_jobs, size_t *n_cb, size_t *cap_cb)
{
    for (double end = flh_now() + FINAL_WAIT_S;;) {
        stats_free(s);
        *n_cb = 0;
        long seen = flh_each_job(&D, NULL, tally_job, s);
        receiver_ids("/cb", "Fling-Job-Id", cb_jobs, n_cb, cap_cb);
        qsort(*cb_jobs, *n_cb, sizeof **cb_jobs, cmp_long);
        long no_cb = seen < 0 ? -1 : missing(s->ids, s->n_ids, *cb_jobs, *n_cb);
        if ((seen >= 0 && s->unfinished == 0 && no_cb == 0) || flh_now() > end)
            return;
        sleep(1);
    }
}

/* ---- main ---------------------------------------------------------------------------------- */

static int parse_opts(int argc, char **argv, opts *o)
{
    *o = (opts){ .rounds = 20, .seed = (unsigned)time(NULL), .max_seconds = 1800 };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            o->rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            o->seed = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc)
            o->max_seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: flingsoak [--rounds N] [--seed S] [--max-seconds S]\n");
            return -1;
        }
    }
    return o->rounds > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse_opts(argc, argv, &o) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    double t0 = flh_now();
    unsigned seed = o.seed;
    static char conf[8192];
    if (!mkdtemp(work) || !(R = flr_start()))
        return 1;
    snprintf(run_log, sizeof run_log, "%s/run.log", work);
    if (write_types(conf, sizeof conf) < 0 || flh_start(&D, conf) < 0)
        return 1;
    printf("soak: seed %u, %d rounds, flingd in %s\n", o.seed, o.rounds, D.dir);
    int rounds = 0;
    for (; rounds < o.rounds && flh_now() - t0 < o.max_seconds; rounds++) {
        if (rounds > 0 && flh_restart(&D) < 0) {
            fprintf(stderr, "soak: flingd did not restart in round %d\n", rounds);
            return 1;
        }
        int kill_ms = 200 + (int)(rand_r(&seed) % 1800);
        if (run_round(&seed, kill_ms) < 0) {
            fprintf(stderr, "soak: round %d: flingd was not killed by our SIGKILL\n", rounds);
            return 1;
        }
        printf("soak: round %d: killed after %d ms; %ld acked, %ld fired so far\n", rounds, kill_ms,
               atomic_load(&T.n_acked), atomic_load(&T.fires_sent));
        fflush(stdout);
    }

    if (flh_restart(&D) < 0)
        return 1;
    job_stats s = { 0 };
    long *cb_jobs = NULL, *deliveries = NULL, *http_jobs = NULL, *runs = NULL;
    size_t n_cb = 0, cap_cb = 0, n_del = 0, cap_del = 0, n_http = 0, cap_http = 0, n_runs = 0, cap_runs = 0;
    settle(&s, &cb_jobs, &n_cb, &cap_cb);
    long lost = lost_acked();
    long no_callback = missing(s.ids, s.n_ids, cb_jobs, n_cb);
    receiver_ids("/cb", "Fling-Delivery", &deliveries, &n_del, &cap_del);
    receiver_ids("/http", "Fling-Job-Id", &http_jobs, &n_http, &cap_http);
    run_log_ids(&runs, &n_runs, &cap_runs);
    long dup_callbacks = repeats(deliveries, n_del);
    long dup_http = repeats(http_jobs, n_http);
    long dup_exec = repeats(runs, n_runs);
    long exec_not_run = missing(s.exec_succeeded, s.n_exec, runs, n_runs);
    int clean = flh_stop(&D) == 0;

    long acked = atomic_load(&T.n_acked), fired = atomic_load(&T.fires_sent);
    printf("soak: %d rounds, seed %u, %.1f s\n", rounds, o.seed, flh_now() - t0);
    printf("  acked jobs:              %ld (submits without a 202: %ld)\n", acked, atomic_load(&T.unanswered));
    printf("  fire-and-forget:         %ld sent, %ld enqueued\n", fired, s.fires_enqueued);
    printf("  jobs in the store:       %ld, %ld not terminal at the end\n", s.total, s.unfinished);
    printf("  lost acked jobs:         %ld\n", lost);
    printf("  duplicate bodies:        exec %ld (run log: %zu runs), http %ld (%zu requests)\n", dup_exec, n_runs,
           dup_http, n_http);
    printf("  duplicate callbacks:     %ld (%zu deliveries)\n", dup_callbacks, n_del);
    printf("  jobs without a callback: %ld\n", no_callback);
    printf("  exec jobs succeeded but absent from the run log: %ld\n", exec_not_run);
    int ok = lost == 0 && s.unfinished == 0 && no_callback == 0 && exec_not_run == 0 && s.fires_enqueued <= fired &&
             clean && acked <= MAX_ACKED;
    printf("soak: %s\n", ok ? "PASS" : "FAIL");
    stats_free(&s);
    free(cb_jobs);
    free(deliveries);
    free(http_jobs);
    free(runs);
    flr_stop(R);
    flh_rmdir(work);
    return ok ? 0 : 1;
}
