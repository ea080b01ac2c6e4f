/* test_sched.c — the scheduler's claim-ahead ("ready") list with a real flingd: a fast type
 * with one slot claims more jobs than it has slots, and those wait `running` in the store,
 * their attempt counted, until the slot frees. A cancel of such a job ends it cancelled and it
 * never runs; a graceful stop hands them back to the queue (their attempt counted once) and the
 * next start runs them; a paused type starts none of its queued jobs; after kill -9, recovery
 * re-queues them and they run. Last, in this process: a slot is free before its outcome commits
 * (see "slots and outcomes"), and a stop waits for a claim that holds no slot.
 *
 * The type's job appends its id to `ran` and ends, unless the file `gate` exists: then it
 * writes its id and pid to `blocked` and sleeps, holding the only slot. With the gate set, the
 * jobs `running` in the store besides the blocked one are exactly the claimed-ahead ones. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>
#include <sqlite3.h>

#include "config.h"
#include "harness.h"
#include "job.h"
#include "sched.h"
#include "store.h"

#define N_JOBS 800        /* enough that 256 claimed ahead (the most) still leave some queued */
#define BATCH 100          /* requests pipelined per send */
#define MAX_READY 1024     /* more than the scheduler ever claims ahead */

static flh_daemon D;       /* static: the harness's exit hook still finds it if an assert jumps out */
static char work[64];      /* the jobs' files: ran, gate, blocked */
static char ran_path[96], gate_path[96], blocked_path[96];
static pid_t blocker_pid;  /* the blocked job's shell (exec'd into sleep), to stop after a kill -9 */

static int start(void)
{
    snprintf(work, sizeof work, "/tmp/flingsched.XXXXXX");
    if (!mkdtemp(work))
        return -1;
    snprintf(ran_path, sizeof ran_path, "%s/ran", work);
    snprintf(gate_path, sizeof gate_path, "%s/gate", work);
    snprintf(blocked_path, sizeof blocked_path, "%s/blocked", work);
    blocker_pid = 0;
    char conf[1024];
    snprintf(conf, sizeof conf,
             "[type.fast]\nhandler = exec\nconcurrency = 1\n"
             "command = /bin/sh -c 'echo $FLING_JOB_ID >> \"$0/ran\"; if [ -e \"$0/gate\" ]; then "
             "echo $FLING_JOB_ID $$ > \"$0/blocked.tmp\"; mv \"$0/blocked.tmp\" \"$0/blocked\"; exec sleep 30; fi' %s\n",
             work);
    return flh_start(&D, conf);
}

static void finish(void)
{
    assert_int_equal(flh_stop(&D), 0);
    unlink(ran_path);
    unlink(gate_path);
    unlink(blocked_path);
    rmdir(work);
}

/* Reads replies from fd until n whole ones have arrived; returns how many were 202. */
static int read_replies(int fd, int n)
{
    static char buf[1 << 16];
    size_t have = 0;
    int got = 0, accepted = 0;
    while (got < n) {
        char *end = have ? memmem(buf, have, "\r\n\r\n", 4) : NULL;
        const char *cl = end ? memmem(buf, (size_t)(end - buf), "Content-Length: ", 16) : NULL;
        size_t len = end ? (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 16, NULL, 10) : 0) : 0;
        if (end && have >= len) {
            accepted += strncmp(buf, "HTTP/1.1 202 ", 13) == 0;
            got++;
            memmove(buf, buf + len, have - len);
            have -= len;
            continue;
        }
        assert_true(have < sizeof buf);
        ssize_t r = read(fd, buf + have, sizeof buf - have);
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    return accepted;
}

/* Submits n jobs of type fast, pipelined BATCH at a time on one connection, each acked. */
static void submit_many(int n)
{
    int fd = flh_connect_tcp(D.port);
    assert_true(fd >= 0);
    size_t one_len;
    char *one = flh_submit_req("fast", "x", 1, NULL, &one_len);
    char *batch = malloc(one_len * BATCH);
    assert_non_null(one);
    assert_non_null(batch);
    for (int i = 0; i < BATCH; i++)
        memcpy(batch + i * one_len, one, one_len);
    for (int done = 0; done < n; done += BATCH) {
        int k = n - done < BATCH ? n - done : BATCH;
        assert_int_equal(flh_send_all(fd, batch, one_len * (size_t)k), 0);
        assert_int_equal(read_replies(fd, k), k);
    }
    free(batch);
    free(one);
    close(fd);
}

/* How many jobs of type fast are in state, from GET /v1/types. */
static long type_count(const char *state)
{
    json_t *body = NULL;
    assert_int_equal(flh_http(&D, "GET", "/v1/types", &body), 200);
    long n = -1;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(body, "types"), i, t)
        if (!strcmp(json_string_value(json_object_get(t, "name")), "fast"))
            n = (long)json_integer_value(json_object_get(json_object_get(t, "counts"), state));
    json_decref(body);
    assert_true(n >= 0);
    return n;
}

/* Polls until type fast has want jobs in state, or the count stalls; returns the last count. */
static long wait_count(const char *state, long want)
{
    long n = -1, seen = -2;

    /* Gives up only on a stall (the count unchanged for 60 s), not after a fixed time: under
     * ASan the 800 jobs of one slot take under a minute on two cores, more when loaded. */
    for (double stall = flh_now() + 60; flh_now() < stall; usleep(20000)) {
        if ((n = type_count(state)) == want)
            break;
        if (n != seen) {
            seen = n;
            stall = flh_now() + 60;
        }
    }
    return n;
}

/* The ids in the file `ran`, one per attempt that started, in start order. */
static long ran_ids(long *ids, long max)
{
    FILE *f = fopen(ran_path, "r");
    long n = 0, id;
    while (f && n < max && fscanf(f, "%ld", &id) == 1)
        ids[n++] = id;
    if (f)
        fclose(f);
    return n;
}

/* How many of the n ids are id. */
static int count_of(const long *ids, long n, long id)
{
    int count = 0;
    for (long i = 0; i < n; i++)
        count += ids[i] == id;
    return count;
}

/* How many attempts of job id started. */
static int runs_of(long id)
{
    static long ids[4 * N_JOBS];
    return count_of(ids, ran_ids(ids, 4 * N_JOBS), id);
}

/* Waits until at least min jobs have run, then sets the gate and waits for the job it blocks;
 * returns that job's id. */
static long block_the_slot(long min)
{
    static long ids[N_JOBS];
    for (double end = flh_now() + 60; flh_now() < end && ran_ids(ids, N_JOBS) < min;)
        usleep(5000);
    assert_true(ran_ids(ids, N_JOBS) >= min);
    FILE *g = fopen(gate_path, "w");
    assert_non_null(g);
    fclose(g);
    long id = 0;
    for (double end = flh_now() + 30; flh_now() < end && !id; usleep(5000)) {
        FILE *f = fopen(blocked_path, "r");
        if (f && fscanf(f, "%ld %d", &id, &blocker_pid) != 2)
            id = 0;
        if (f)
            fclose(f);
    }
    assert_true(id > 0 && blocker_pid > 0);
    return id;
}

/* The ids of the jobs of type fast the store has `running` that never started; waits until
 * there is at least one (the scheduler claims ahead while the slot is held). Returns how many.
 * A job that started is left out: the blocked one, and the one before it, whose slot freed
 * when it exited while its outcome may not have committed yet (the store still says running).
 * With the slot held no job starts, so the file read after the list holds every started one. */
static int claimed_ahead(long *ids)
{
    static long ran[N_JOBS];
    int n = 0;
    for (double end = flh_now() + 30; flh_now() < end && n == 0; usleep(20000)) {
        json_t *body = NULL;
        assert_int_equal(flh_http(&D, "GET", "/v1/jobs?type=fast&state=running&limit=1000", &body), 200);
        long n_ran = ran_ids(ran, N_JOBS);
        size_t i;
        json_t *j;
        n = 0;
        json_array_foreach(json_object_get(body, "jobs"), i, j) {
            long id = strtol(json_string_value(json_object_get(j, "id")), NULL, 10);
            if (!count_of(ran, n_ran, id) && n < MAX_READY)
                ids[n++] = id;
        }
        json_decref(body);
    }
    assert_true(n > 0);
    return n;
}

/* The state and attempts of job id, read from the database file path by a connection of its
 * own (the daemon's stopped, or its writer held). */
static void db_row(const char *path, long id, char *state, size_t cap, int *attempts)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT state, attempts FROM jobs WHERE id = ?1", -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(q, 1, id);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    snprintf(state, cap, "%s", (const char *)sqlite3_column_text(q, 0));
    *attempts = sqlite3_column_int(q, 1);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static int attempts_of(long id)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%ld", id);
    json_t *job = NULL;
    assert_int_equal(flh_http(&D, "GET", path, &job), 200);
    int n = (int)json_integer_value(json_object_get(job, "attempts"));
    json_decref(job);
    return n;
}

/* Starts a daemon, submits N_JOBS, blocks the slot once 100 have run and collects the jobs
 * then claimed ahead into ready; returns how many, and the blocked job's id in *blocker. */
static int claimed_behind_a_held_slot(long *blocker, long *ready)
{
    assert_int_equal(start(), 0);
    submit_many(N_JOBS);
    *blocker = block_the_slot(100);
    return claimed_ahead(ready);
}

/* Asserts that the stopped daemon's database has each of the n jobs in state, with attempts. */
static void expect_rows(const long *ids, int n, const char *state, int attempts)
{
    char row_state[16];
    int row_attempts;
    for (int i = 0; i < n; i++) {
        db_row(D.db, ids[i], row_state, sizeof row_state, &row_attempts);
        assert_string_equal(row_state, state);
        assert_int_equal(row_attempts, attempts);
        assert_int_equal(runs_of(ids[i]), 0);
    }
}

/* Opens the gate and starts the daemon again: every job succeeds, each of the n claimed ahead
 * after one run and two attempts (the claim's, then the run's), the blocked one after two runs. */
static void restart_runs_them_all(const long *ready, int n, long blocker)
{
    assert_int_equal(unlink(gate_path), 0);
    assert_int_equal(flh_restart(&D), 0);
    assert_int_equal(wait_count("succeeded", N_JOBS), N_JOBS);
    for (int i = 0; i < n; i++) {
        assert_int_equal(runs_of(ready[i]), 1);
        assert_int_equal(attempts_of(ready[i]), 2);
    }
    assert_int_equal(runs_of(blocker), 2);
    assert_int_equal(attempts_of(blocker), 2);
    finish();
}

/* DELETE of a job claimed ahead: the store has it running, so the answer is 202 (being
 * stopped), and it ends cancelled without ever starting. */
static void cancel_of_a_claimed_job_never_runs_it(void **state)
{
    (void)state;
    static long ready[MAX_READY];
    long blocker;
    int n = claimed_behind_a_held_slot(&blocker, ready);
    char path[64];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "/v1/jobs/%ld", ready[i]);
        json_t *job = NULL;
        assert_int_equal(flh_http(&D, "DELETE", path, &job), 202);
        assert_string_equal(json_string_value(json_object_get(job, "state")), "running");
        json_decref(job);
    }
    assert_int_equal(wait_count("cancelled", n), n);   /* while the slot is still held */
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%ld", ready[i]);
        json_t *job = flh_wait_terminal(&D, path, 1000);
        assert_string_equal(json_string_value(json_object_get(job, "state")), "cancelled");
        json_decref(job);
    }
    assert_int_equal(unlink(gate_path), 0);
    snprintf(path, sizeof path, "/v1/jobs/%ld", blocker);
    assert_int_equal(flh_http(&D, "DELETE", path, NULL), 202);
    assert_int_equal(wait_count("succeeded", N_JOBS - n - 1), N_JOBS - n - 1);
    assert_int_equal(type_count("cancelled"), n + 1);
    for (int i = 0; i < n; i++)
        assert_int_equal(runs_of(ready[i]), 0);
    assert_int_equal(runs_of(blocker), 1);
    finish();
}

/* SIGTERM: the blocked attempt outlives shutdown_grace and is handed back, and so is every job
 * claimed ahead, each with the one attempt its claim counted; the next start runs them all. */
static void graceful_stop_hands_claimed_jobs_back(void **state)
{
    (void)state;
    static long ready[MAX_READY];
    long blocker;
    int n = claimed_behind_a_held_slot(&blocker, ready);
    int st = flh_kill(&D, SIGTERM);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    expect_rows(ready, n, "queued", 1);
    char row_state[16];
    int attempts;
    db_row(D.db, blocker, row_state, sizeof row_state, &attempts);
    assert_string_equal(row_state, "queued");
    assert_int_equal(attempts, 1);
    restart_runs_them_all(ready, n, blocker);
}

/* A paused type starts none of the jobs still queued when the pause is answered (those claimed
 * before it are running in the store and go on); a resume runs them. */
static void pause_starts_nothing_queued(void **state)
{
    (void)state;
    assert_int_equal(start(), 0);
    submit_many(N_JOBS);
    static long ids[N_JOBS];
    for (double end = flh_now() + 60; flh_now() < end && ran_ids(ids, N_JOBS) < 100;)
        usleep(5000);
    assert_int_equal(flh_http(&D, "POST", "/v1/types/fast/pause", NULL), 200);
    long queued = type_count("queued");
    assert_true(queued > 0);
    assert_int_equal(wait_count("running", 0), 0);
    long succeeded = type_count("succeeded");
    assert_int_equal(type_count("queued"), queued);
    assert_int_equal(succeeded + queued, N_JOBS);
    usleep(300000);   /* nothing may start meanwhile */
    assert_int_equal(type_count("queued"), queued);
    assert_int_equal(ran_ids(ids, N_JOBS), succeeded);
    assert_int_equal(flh_http(&D, "POST", "/v1/types/fast/resume", NULL), 200);
    assert_int_equal(wait_count("succeeded", N_JOBS), N_JOBS);
    assert_int_equal(ran_ids(ids, N_JOBS), N_JOBS);
    finish();
}

/* kill -9 while jobs wait claimed ahead: the next start's recovery puts them back in the queue
 * (the interrupted claim's attempt counts) and each runs once. */
static void kill9_with_claimed_jobs_then_all_run(void **state)
{
    (void)state;
    static long ready[MAX_READY];
    long blocker;
    int n = claimed_behind_a_held_slot(&blocker, ready);
    flh_kill(&D, SIGKILL);
    kill(blocker_pid, SIGKILL);   /* the orphaned sleep of the blocked job */
    expect_rows(ready, n, "running", 1);
    restart_runs_them_all(ready, n, blocker);
}

/* ---------------------------------------------------------------- slots and outcomes
 *
 * An exec attempt's slot is free when its child exits, not when its outcome commits: the
 * scheduler, a real SQLite store and real children in this process, with the store's writer
 * held (fl_store_hold) so that no FINISH can commit. Jobs claimed ahead then still run one
 * after the other in the type's one slot, never two at once, each once, while the store shows
 * them all running; once the writer goes on they all succeed, each attempt counted once. And
 * a crash (kill -9) while those outcomes wait loses nothing: the restart's recovery puts every
 * one of those jobs back in the queue, to run again (at least once). The type's command
 * appends "start ID" and "end ID" to a file around a 10 ms nap. */

#define N_WARM 12      /* short attempts first, so the type claims ahead of its one slot */
#define N_HELD 3       /* submitted in one commit, then run with the writer held */
#define WAIT_S 20.0    /* the longest any wait here takes before the test fails */

typedef struct world {
    char dir[64], db[96], ran[96], conf[96];
    fl_config cfg;
    struct ev_loop *loop;
    ev_async reaped;
    fl_store *store;
    fl_sched *sched;
    int progress_calls;        /* the scheduler's progress calls since the count was reset */
    int first_idle_call;       /* of those, the first that found it idle (0: none yet) */
} world;

static void notify(void *arg)
{
    world *w = arg;
    ev_async_send(w->loop, &w->reaped);
}

static void due(const fl_job *job, void *arg)
{
    world *w = arg;
    if (w->sched)
        fl_sched_committed(w->sched, job);
}

static void reap_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    world *w = a->data;
    fl_store_reap(w->store);
}

/* The scheduler's progress call: a stop waits for the first that finds it idle. */
static void progressed(void *arg)
{
    world *w = arg;
    w->progress_calls++;
    if (!w->first_idle_call && w->sched && fl_sched_idle(w->sched))
        w->first_idle_call = w->progress_calls;
}

/* Writes the config of a new world in a new directory: [workers] count is workers, and the
 * text first_type (a type's section, or "") comes before type one's. */
static void make_world_of(world *w, int workers, const char *first_type)
{
    memset(w, 0, sizeof *w);
    snprintf(w->dir, sizeof w->dir, "/tmp/flingslots.XXXXXX");
    assert_non_null(mkdtemp(w->dir));
    snprintf(w->db, sizeof w->db, "%s/fling.db", w->dir);
    snprintf(w->ran, sizeof w->ran, "%s/ran", w->dir);
    snprintf(w->conf, sizeof w->conf, "%s/flingd.conf", w->dir);
    FILE *f = fopen(w->conf, "w");
    assert_non_null(f);
    fprintf(f, "[store]\npath = %s\n[workers]\ncount = %d\n%s"
               "[type.one]\nhandler = exec\nconcurrency = 1\n"
               "command = /bin/sh -c 'echo start $FLING_JOB_ID >> \"$0\"; sleep 0.01; "
               "echo end $FLING_JOB_ID >> \"$0\"' %s\n",
            w->db, workers, first_type, w->ran);
    assert_int_equal(fclose(f), 0);
}

static void make_world(world *w)
{
    make_world_of(w, 8, "");
}

/* Starts the world of w's directory as a flingd start would: store, recovery, scheduler.
 * Returns how many jobs the recovery re-queued. */
static int open_world(world *w)
{
    char err[256] = "";
    assert_int_equal(fl_config_init(&w->cfg), 0);
    assert_int_equal(fl_config_load(&w->cfg, w->conf, err, sizeof err), 0);
    w->loop = ev_default_loop(0);   /* ev_child watches children only there */
    ev_async_init(&w->reaped, reap_cb);
    w->reaped.data = w;
    ev_async_start(w->loop, &w->reaped);
    const fl_store_options so = { .path = w->db, .durability_full = 1 };
    const fl_store_hooks hooks = { .notify = notify, .on_due = due, .udata = w };
    assert_int_equal(fl_store_open(&w->store, &so, &hooks, err, sizeof err), 0);
    int recovered = fl_store_recover(w->store);
    assert_true(recovered >= 0);
    assert_int_equal(fl_sched_new(&w->sched, w->loop, &w->cfg, w->store, NULL, progressed, w), 0);
    return recovered;
}

/* Stops the scheduler (nothing may be running), closes the store. */
static void close_world(world *w)
{
    fl_sched_stop(w->sched);
    fl_store_close(w->store);
    fl_sched_free(w->sched);
    w->sched = NULL;
    ev_async_stop(w->loop, &w->reaped);
    fl_config_free(&w->cfg);
}

static void remove_world(const world *w)
{
    char path[128];
    static const char *const files[] = { "fling.db", "fling.db-wal", "fling.db-shm", "ran", "flingd.conf" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", w->dir, files[i]);
        unlink(path);
    }
    rmdir(w->dir);
}

static void submitted(fl_store_op *op)
{
    assert_int_equal(op->result, 0);
    fl_job_free(op->u.submit.job);
    free(op);
}

/* Pushes n SUBMITs of type one; with the writer held they share one commit. */
static void submit(world *w, int n)
{
    for (int i = 0; i < n; i++) {
        fl_job_sizes sz = { .type = 3, .callback = FL_JOB_ABSENT, .idem_key = FL_JOB_ABSENT,
                            .error = FL_JOB_ABSENT, .output = FL_JOB_ABSENT, .payload = 0,
                            .previous_error = FL_JOB_ABSENT, .content_type = FL_JOB_ABSENT,
                            .traceparent = FL_JOB_ABSENT, .tracestate = FL_JOB_ABSENT };
        fl_job *job = fl_job_new(&sz);
        fl_store_op *op = calloc(1, sizeof *op);
        assert_non_null(job);
        assert_non_null(op);
        memcpy(job->type, "one", 3);
        job->state = FL_STATE_QUEUED;
        job->max_attempts = 3;
        job->timeout = 30;
        job->created_at = job->run_at = fl_job_now_ms();
        fl_store_submit(w->store, op, job, submitted, w);
    }
}

/* The lines of the ran file, at most max, each "start ID" or "end ID" as +ID or -ID. */
static int ran_lines(const world *w, long *out, int max)
{
    FILE *f = fopen(w->ran, "r");
    int n = 0;
    char word[8];
    long id;
    while (f && n < max && fscanf(f, "%7s %ld", word, &id) == 2)
        out[n++] = strcmp(word, "start") == 0 ? id : -id;
    if (f)
        fclose(f);
    return n;
}

/* Runs the loop until done(w, arg) says so, failing after WAIT_S seconds. */
static void run_until(world *w, int (*done)(world *, long), long arg)
{
    double deadline = ev_time() + WAIT_S;
    while (!done(w, arg)) {
        assert_true(ev_time() < deadline);
        ev_run(w->loop, EVRUN_ONCE | EVRUN_NOWAIT);
        usleep(1000);
    }
}

static int lines_at_least(world *w, long n)
{
    long l[4 * (N_WARM + N_HELD)];
    return ran_lines(w, l, (int)(sizeof l / sizeof l[0])) >= n;
}

static int running_at_most(world *w, long n)
{
    fl_sched_stats st;
    fl_sched_stats_get(w->sched, &st);
    return (long)st.running <= n;
}

static int attempts_at_least(world *w, long n)
{
    fl_sched_stats st;
    fl_sched_stats_get(w->sched, &st);
    return (long)st.attempts >= n;
}

static int succeeded_at_least(world *w, long n)
{
    fl_sched_stats st;
    fl_sched_stats_get(w->sched, &st);
    return (long)st.succeeded >= n && fl_sched_idle(w->sched);
}

static void expect_row(const world *w, long id, const char *state, int attempts)
{
    char got[32];
    int a;
    db_row(w->db, id, got, sizeof got, &a);
    assert_string_equal(got, state);
    assert_int_equal(a, attempts);
}

/* Warms the type up (N_WARM short attempts), submits N_HELD jobs in one commit and waits for
 * their claim to start the first; then holds the writer (that attempt's end is not reaped
 * yet: a child's exit is seen in a later loop iteration than its start) and runs the loop
 * until all N_HELD have ended. Returns the held jobs' ids in ids; the writer is left held. */
static void run_held(world *w, long *ids)
{
    submit(w, N_WARM);
    run_until(w, succeeded_at_least, N_WARM);
    fl_store_hold(w->store, 1);
    submit(w, N_HELD);
    fl_store_hold(w->store, 0);
    run_until(w, attempts_at_least, N_WARM + 1);
    fl_store_hold(w->store, 1);
    run_until(w, lines_at_least, 2 * (N_WARM + N_HELD));
    run_until(w, running_at_most, 0);   /* the last one's exit reaped */
    long l[2 * (N_WARM + N_HELD)];
    assert_int_equal(ran_lines(w, l, 2 * (N_WARM + N_HELD)), 2 * (N_WARM + N_HELD));
    /* One slot: every start is followed by its own end before the next start. */
    for (int i = 0; i < N_WARM + N_HELD; i++) {
        assert_true(l[2 * i] > 0);
        assert_int_equal(l[2 * i + 1], -l[2 * i]);
    }
    for (int i = 0; i < N_HELD; i++)
        ids[i] = l[2 * (N_WARM + i)];
}

/* The held jobs ran one after the other in the one slot while no outcome could commit. */
static void slot_is_free_before_the_outcome_commits(void **state)
{
    (void)state;
    world w;
    long ids[N_HELD];
    make_world(&w);
    assert_int_equal(open_world(&w), 0);
    run_held(&w, ids);
    assert_false(fl_sched_idle(w.sched));   /* their outcomes wait for the writer */
    for (int i = 0; i < N_HELD; i++)
        expect_row(&w, ids[i], "running", 1);
    fl_store_hold(w.store, 0);
    run_until(&w, succeeded_at_least, N_WARM + N_HELD);
    for (int i = 0; i < N_HELD; i++)
        expect_row(&w, ids[i], "succeeded", 1);
    long l[4 * (N_WARM + N_HELD)];
    assert_int_equal(ran_lines(&w, l, (int)(sizeof l / sizeof l[0])), 2 * (N_WARM + N_HELD));   /* each once */
    close_world(&w);
    remove_world(&w);
}

/* kill -9 while the held jobs' outcomes wait: the next start re-queues them, their attempt
 * counted, and runs each of them again. */
static void crash_before_the_outcomes_commit_loses_nothing(void **state)
{
    (void)state;
    int fds[2];
    world w;
    long ids[N_HELD];
    make_world(&w);
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {   /* the daemon that crashes */
        close(fds[0]);
        ev_loop_fork(ev_default_loop(0));
        assert_int_equal(open_world(&w), 0);
        run_held(&w, ids);
        if (write(fds[1], ids, sizeof ids) != (ssize_t)sizeof ids)
            _exit(2);
        pause();   /* killed here, the outcomes still held */
        _exit(3);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], ids, sizeof ids);
    close(fds[0]);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(n, (ssize_t)sizeof ids);
    for (int i = 0; i < N_HELD; i++)
        expect_row(&w, ids[i], "running", 1);
    assert_int_equal(open_world(&w), N_HELD);
    for (int i = 0; i < N_HELD; i++)
        expect_row(&w, ids[i], "queued", 1);
    run_until(&w, succeeded_at_least, N_HELD);
    for (int i = 0; i < N_HELD; i++)
        expect_row(&w, ids[i], "succeeded", 2);
    long l[4 * (N_WARM + N_HELD)];
    assert_int_equal(ran_lines(&w, l, (int)(sizeof l / sizeof l[0])), 2 * (N_WARM + 2 * N_HELD));
    close_world(&w);
    remove_world(&w);
}

static int progress_calls_at_least(world *w, long n) { return w->progress_calls >= n; }

/* Type first, listed before type one, takes the one worker's slot with its claim; type one,
 * warm and so claiming ahead, then claims with no slot of its own. A stop must wait for that
 * claim too: when the claim before it is reaped the scheduler is not idle yet (flingd once
 * ended its loop there, freed the scheduler and crashed reaping the second claim). */
static void a_claim_without_a_slot_holds_a_stop(void **state)
{
    (void)state;
    world w;
    make_world_of(&w, 1, "[type.first]\nhandler = noop\n");
    assert_int_equal(open_world(&w), 0);
    submit(&w, N_WARM);
    run_until(&w, succeeded_at_least, N_WARM);
    fl_store_hold(w.store, 1);
    fl_sched_committed(w.sched, &(fl_job){ .type = "first", .state = FL_STATE_QUEUED });
    fl_sched_committed(w.sched, &(fl_job){ .type = "one", .state = FL_STATE_QUEUED });
    ev_run(w.loop, EVRUN_ONCE | EVRUN_NOWAIT);   /* the pump pushes both claims, in that order */
    w.progress_calls = w.first_idle_call = 0;
    fl_sched_stop(w.sched);
    fl_store_hold(w.store, 0);
    run_until(&w, progress_calls_at_least, 2);
    assert_int_equal(w.first_idle_call, 2);   /* idle only once type one's claim is reaped */
    close_world(&w);
    remove_world(&w);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cancel_of_a_claimed_job_never_runs_it),
        cmocka_unit_test(graceful_stop_hands_claimed_jobs_back),
        cmocka_unit_test(pause_starts_nothing_queued),
        cmocka_unit_test(kill9_with_claimed_jobs_then_all_run),
        cmocka_unit_test(slot_is_free_before_the_outcome_commits),
        cmocka_unit_test(crash_before_the_outcomes_commit_loses_nothing),
        cmocka_unit_test(a_claim_without_a_slot_holds_a_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
