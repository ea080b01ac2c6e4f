/* test_pgstore.c — the store engine (daemon/store.c) on its PostgreSQL backend, driven as
 * flingd drives it minus libev, on a real PostgreSQL 15 server (tests/harness_pg.h): a group's
 * run of SUBMITs or FINISHes, which the backend writes in one statement. Each op keeps its own
 * answer: ids growing in op order, an Idempotency-Key taken before the group or by an earlier
 * op of the same group answered as a duplicate with that job; a job finished twice in one
 * group, or not running, fenced; a group that fails fails every op and leaves no row; an op
 * whose data the server refuses fails alone; large payloads cut a run into several
 * statements. Around the group: a submit wakes the other nodes unless a committed pause says
 * its type is paused; a reader's GET reads the job and its deliveries in one snapshot; a
 * second writer commits plain submits beside the first's group, but never beside a claim.
 * Skipped (77) when the server binaries are not installed. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "harness_pg.h"
#include "store.h"

#define WAIT_MS 10000
#define NOW INT64_C(1795428000000)

typedef struct harness {
    flh_pg *pg;
    char db[64];
    fl_store *store;
} harness;

/* open_store opens h's store (node s, durability full) with readers and writers
 * (fl_store_options; 0: the defaults): fl_store_open's result, its error printed. */
static int open_store(harness *h, int readers, int writers)
{
    char url[160], err[256] = "";

    flh_pg_url(h->pg, h->db, url, sizeof url);
    const fl_store_options opt = { .backend = "postgres", .url = url, .durability_full = 1, .node = "s",
                                   .readers = readers, .writers = writers };
    int rc = fl_store_open(&h->store, &opt, NULL, err, sizeof err);
    if (rc)
        fprintf(stderr, "open: %s\n", err);
    return rc;
}

static int setup(void **state)
{
    harness *h = calloc(1, sizeof *h);

    if (!h || !(h->pg = flh_pg_shared()) || flh_pg_create_db(h->pg, h->db, sizeof h->db)) {
        free(h);
        return -1;
    }
    if (open_store(h, 0, 0)) {
        free(h);
        return -1;
    }
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    harness *h = *state;

    fl_store_close(h->store);
    free(h);
    return 0;
}

/* settle reaps until every pushed op has had its callback; fails the test after WAIT_MS. */
static void settle(harness *h)
{
    int64_t deadline = fl_job_now_ms() + WAIT_MS;

    for (fl_store_reap(h->store); fl_store_pending(h->store); fl_store_reap(h->store)) {
        assert_true(fl_job_now_ms() < deadline);
        usleep(2000);
    }
}

/* make_job: a queued job of type with an Idempotency-Key (NULL: none), a payload and, if
 * content_type is not NULL, that Content-Type. */
static fl_job *make_job(const char *type, const char *key, const char *payload, const char *content_type)
{
    fl_job_sizes sz = { FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT,
                        FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT };
    fl_job *job;

    sz.type = strlen(type);
    sz.idem_key = key ? strlen(key) : FL_JOB_ABSENT;
    sz.payload = strlen(payload);
    sz.content_type = content_type ? strlen(content_type) : FL_JOB_ABSENT;
    job = fl_job_new(&sz);
    assert_non_null(job);
    memcpy(job->type, type, sz.type);
    if (key)
        memcpy(job->idem_key, key, sz.idem_key);
    memcpy(job->payload, payload, sz.payload);
    if (content_type)
        memcpy(job->content_type, content_type, sz.content_type);
    job->state = FL_STATE_QUEUED;
    job->max_attempts = 3;
    job->timeout = 30;
    job->created_at = NOW;
    job->run_at = NOW;
    return job;
}

/* run_group pushes the n submits of jobs while the writer is held, so that they are one
 * group, and waits for their answers. */
static void run_group(harness *h, fl_job **jobs, fl_store_op *ops, size_t n)
{
    fl_store_hold(h->store, 1);
    for (size_t i = 0; i < n; i++) {
        memset(&ops[i], 0, sizeof ops[i]);
        ops[i].kind = FL_STORE_SUBMIT;
        ops[i].u.submit.job = jobs[i];
        fl_store_push(h->store, &ops[i]);
    }
    fl_store_hold(h->store, 0);
    settle(h);
}

static void free_jobs(fl_job **jobs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fl_job_free(jobs[i]);
}

static long query(harness *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static long query(harness *h, const char *fmt, ...)
{
    char sql[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    return flh_pg_query_long(h->pg, h->db, sql);
}

/* One group of twelve submits: new jobs get ids in op order with their payloads; a key taken
 * by an earlier group, and one taken by an earlier op of this group, answer as duplicates
 * with that job's id; the same key under another type is a new job. Fewer round trips than
 * ops: the run went to the server as one statement. */
static void test_group_of_submits(void **state)
{
    harness *h = *state;
    enum { N = 12 };
    fl_job *first = make_job("b", "old", "o", NULL), *jobs[N];
    fl_store_op op, ops[N];
    fl_store_stats before, after;
    char payload[8];
    int64_t last = 0;

    run_group(h, &first, &op, 1);
    assert_int_equal(op.result, 0);
    assert_int_equal(op.answer, FL_STORE_OK);
    for (int i = 0; i < N; i++) {
        snprintf(payload, sizeof payload, "p%d", i);
        jobs[i] = make_job("b", i == 3 ? "old" : i == 5 || i == 9 ? "new" : NULL, payload, NULL);
    }
    fl_job_free(jobs[10]);
    jobs[10] = make_job("c", "new", "p10", NULL);   /* keys are per type */
    fl_store_stats_get(h->store, &before);
    run_group(h, jobs, ops, N);
    fl_store_stats_get(h->store, &after);
    assert_true(after.round_trips - before.round_trips <= N / 2);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ops[i].result, 0);
        if (i == 3) {
            assert_int_equal(ops[i].answer, FL_STORE_DUPLICATE);
            assert_int_equal(jobs[i]->id, first->id);
            continue;
        }
        if (i == 9) {
            assert_int_equal(ops[i].answer, FL_STORE_DUPLICATE);
            assert_int_equal(jobs[i]->id, jobs[5]->id);
            assert_int_equal(jobs[i]->state, FL_STATE_QUEUED);
            continue;
        }
        assert_int_equal(ops[i].answer, FL_STORE_OK);
        assert_true(jobs[i]->id > last);
        last = jobs[i]->id;
        assert_int_equal(query(h, "SELECT count(*) FROM jobs JOIN job_payloads USING (id) WHERE id = %lld"
                                  " AND data = 'p%d' AND type = '%s' AND state = 'queued'",
                               (long long)jobs[i]->id, i, i == 10 ? "c" : "b"), 1);
    }
    assert_int_equal(query(h, "SELECT count(*) FROM jobs"), 1 + N - 2);
    free_jobs(jobs, N);
    fl_job_free(first);
}

/* A group that fails (the store's error, after its ops ran) fails every submit of it: no id,
 * no row; the next group writes them. */
static void test_failed_group(void **state)
{
    harness *h = *state;
    enum { N = 5 };
    fl_job *jobs[N];
    fl_store_op ops[N];

    for (int i = 0; i < N; i++)
        jobs[i] = make_job("f", i == 2 ? "k" : NULL, "x", NULL);
    fl_store_inject_fault(h->store, -ENOSPC, 1);
    run_group(h, jobs, ops, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ops[i].result, -ENOSPC);
        assert_int_equal(jobs[i]->id, 0);
    }
    assert_int_equal(query(h, "SELECT count(*) FROM jobs"), 0);
    assert_int_equal(query(h, "SELECT count(*) FROM job_payloads"), 0);
    run_group(h, jobs, ops, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ops[i].result, 0);
        assert_int_equal(ops[i].answer, FL_STORE_OK);
        assert_true(jobs[i]->id > 0);
    }
    assert_int_equal(query(h, "SELECT count(*) FROM jobs"), N);
    free_jobs(jobs, N);
}

/* An op whose data the server refuses (a Content-Type that is not UTF-8) fails alone with
 * -EINVAL, as it would on its own; the others of its run commit, in op order. */
/* One group of submits none of which has a key (the statement without ON CONFLICT): each
 * job its own id in op order, with its own payload, type and Content-Type; one statement with
 * its BEGIN and its COMMIT, in one round trip (no other node follows this one's changes). */
static void test_group_of_fresh_submits(void **state)
{
    harness *h = *state;
    enum { N = 10 };
    fl_job *first = make_job("a", NULL, "first", NULL), *jobs[N];
    fl_store_op op, ops[N];
    fl_store_stats before, after;
    char payload[8];

    run_group(h, &first, &op, 1);   /* and the first group looks up which other nodes are live */
    assert_int_equal(op.result, 0);
    for (int i = 0; i < N; i++) {
        snprintf(payload, sizeof payload, "f%d", i);
        jobs[i] = make_job(i % 3 ? "a" : "b", NULL, payload, i % 2 ? "text/plain" : NULL);
    }
    fl_store_stats_get(h->store, &before);
    run_group(h, jobs, ops, N);
    fl_store_stats_get(h->store, &after);
    assert_int_equal(after.round_trips - before.round_trips, 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ops[i].result, 0);
        assert_int_equal(ops[i].answer, FL_STORE_OK);
        assert_true(i == 0 || jobs[i]->id > jobs[i - 1]->id);
        assert_int_equal(query(h, "SELECT count(*) FROM jobs JOIN job_payloads USING (id) WHERE id = %lld"
                                  " AND data = 'f%d' AND type = '%s' AND content_type IS %s AND state = 'queued'",
                               (long long)jobs[i]->id, i, i % 3 ? "a" : "b", i % 2 ? "NOT NULL" : "NULL"), 1);
    }
    assert_int_equal(query(h, "SELECT count(*) FROM jobs"), 1 + N);
    free_jobs(jobs, N);
    fl_job_free(first);
}

static void test_bad_op_fails_alone(void **state)
{
    harness *h = *state;
    enum { N = 6 };
    fl_job *jobs[N];
    fl_store_op ops[N];
    int64_t last = 0;

    for (int i = 0; i < N; i++)
        jobs[i] = make_job("e", NULL, "x", i == 2 ? "text/\xff" : "text/plain");
    run_group(h, jobs, ops, N);
    for (int i = 0; i < N; i++) {
        if (i == 2) {
            assert_int_equal(ops[i].result, -EINVAL);
            assert_int_equal(jobs[i]->id, 0);
            continue;
        }
        assert_int_equal(ops[i].result, 0);
        assert_true(jobs[i]->id > last);
        last = jobs[i]->id;
    }
    assert_int_equal(query(h, "SELECT count(*) FROM jobs"), N - 1);
    assert_int_equal(query(h, "SELECT count(*) FROM job_payloads"), N - 1);
    free_jobs(jobs, N);
}

/* Submits whose payloads together pass what one statement carries (16 MB) are cut into
 * several statements; each job keeps its own payload, ids still in op order. */
static void test_large_payloads(void **state)
{
    harness *h = *state;
    enum { N = 3, SIZE = 9 << 20 };
    fl_job *jobs[N];
    fl_store_op ops[N];
    fl_store_stats before, after;
    char *big = malloc(SIZE + 1);

    assert_non_null(big);
    for (int i = 0; i < N; i++) {
        memset(big, 'a' + i, SIZE);
        big[SIZE] = '\0';
        jobs[i] = make_job("big", NULL, big, NULL);
    }
    free(big);
    fl_store_stats_get(h->store, &before);
    run_group(h, jobs, ops, N);
    fl_store_stats_get(h->store, &after);
    assert_true(after.round_trips - before.round_trips >= N + 1);   /* a statement each, the COMMIT */
    for (int i = 0; i < N; i++) {
        assert_int_equal(ops[i].result, 0);
        assert_true(i == 0 || jobs[i]->id > jobs[i - 1]->id);
        assert_int_equal(query(h, "SELECT count(*) FROM job_payloads WHERE id = %lld AND length(data) = %d"
                                  " AND substr(data, %d, 1) = '%c'", (long long)jobs[i]->id, SIZE, SIZE, 'a' + i), 1);
    }
    free_jobs(jobs, N);
}

/* push_claim queues a CLAIM of up to limit jobs of type at NOW into op. */
static void push_claim(harness *h, fl_store_op *op, const char *type, int limit)
{
    memset(op, 0, sizeof *op);
    op->kind = FL_STORE_CLAIM;
    op->u.claim.type = type;
    op->u.claim.limit = limit;
    op->u.claim.now = NOW;
    fl_store_push(h->store, op);
}

/* claim_of claims up to limit jobs of type at NOW and returns how many it took (their ids in
 * ids, in the order the claim answered). */
static size_t claim_of(harness *h, const char *type, int limit, int64_t *ids)
{
    fl_store_op claim;
    size_t n;

    push_claim(h, &claim, type, limit);
    settle(h);
    assert_int_equal(claim.result, 0);
    n = claim.u.claim.n;
    for (size_t i = 0; i < n; i++)
        ids[i] = claim.u.claim.jobs[i]->id;
    fl_store_list_free(claim.u.claim.jobs, claim.u.claim.n);
    return n;
}

/* A claim takes queued jobs and scheduled ones due by now together, highest priority first,
 * then oldest, up to its limit; a due job it did not take (locked by it all the same) is the
 * next claim's, and one not yet due stays scheduled. */
static void test_claim_order(void **state)
{
    harness *h = *state;
    enum { N = 6 };
    static const int prio[N] = { 0, 5, 9, 10, 5, 1 };
    fl_job *jobs[N];
    fl_store_op ops[N];
    int64_t ids[N];

    for (int i = 0; i < N; i++) {
        jobs[i] = make_job("o", NULL, "x", NULL);
        jobs[i]->priority = prio[i];
        if (i == 2 || i == 3 || i == 5) {   /* 2 and 5 due, 3 later */
            jobs[i]->state = FL_STATE_SCHEDULED;
            jobs[i]->run_at = i == 3 ? NOW + 60000 : NOW - 1000;
        }
    }
    run_group(h, jobs, ops, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(ops[i].result, 0);
    assert_int_equal(claim_of(h, "o", 3, ids), 3);
    assert_int_equal(ids[0], jobs[2]->id);
    assert_int_equal(ids[1], jobs[1]->id);
    assert_int_equal(ids[2], jobs[4]->id);
    assert_int_equal(claim_of(h, "o", 10, ids), 2);
    assert_int_equal(ids[0], jobs[5]->id);
    assert_int_equal(ids[1], jobs[0]->id);
    assert_int_equal(claim_of(h, "o", 10, ids), 0);
    assert_int_equal(query(h, "SELECT count(*) FROM jobs WHERE id = %lld AND state = 'scheduled'",
                           (long long)jobs[3]->id), 1);
    free_jobs(jobs, N);
}

/* push_finish queues a FINISH of job id into state (with an error and an output if given). */
static void push_finish(harness *h, fl_store_op *op, int64_t id, fl_state state, const char *error, const char *output)
{
    memset(op, 0, sizeof *op);
    op->kind = FL_STORE_FINISH;
    op->u.finish.id = id;
    op->u.finish.o.state = state;
    op->u.finish.o.has_exit_code = 1;
    op->u.finish.o.exit_code = state == FL_STATE_SUCCEEDED ? 0 : 3;
    op->u.finish.o.error = error;
    op->u.finish.o.output = output;
    op->u.finish.o.output_len = output ? strlen(output) : 0;
    op->u.finish.o.finished_at = NOW + 1;
    op->u.finish.o.attempt = 1;
    fl_store_push(h->store, op);
}

/* One group of FINISHes of claimed jobs: each writes its outcome and answers with the job; a
 * job finished twice in the group, and a job that is not running, answer not found (fenced);
 * a job with a callback URL gets its delivery (the engine's, after the batch). Fewer round
 * trips than op by op. */
static void test_group_of_finishes(void **state)
{
    harness *h = *state;
    enum { N = 5, F = 6 };
    fl_job *jobs[N];
    fl_store_op ops[N], claim, fin[F];
    fl_store_stats before, after;

    for (int i = 0; i < N; i++)
        jobs[i] = make_job(i == N - 1 ? "idle" : "w", NULL, "x", NULL);
    run_group(h, jobs, ops, N);
    assert_int_equal(flh_pg_exec(h->pg, h->db, "UPDATE jobs SET callback = 'http://127.0.0.1:9/cb' WHERE id = "
                                 "(SELECT min(id) + 3 FROM jobs)"), 0);
    push_claim(h, &claim, "w", 10);
    settle(h);
    assert_int_equal(claim.result, 0);
    assert_int_equal(claim.u.claim.n, N - 1);
    fl_store_list_free(claim.u.claim.jobs, claim.u.claim.n);

    fl_store_stats_get(h->store, &before);
    fl_store_hold(h->store, 1);
    push_finish(h, &fin[0], jobs[0]->id, FL_STATE_SUCCEEDED, NULL, "out0");
    push_finish(h, &fin[1], jobs[1]->id, FL_STATE_FAILED, "exit 3", "out1");
    push_finish(h, &fin[2], jobs[0]->id, FL_STATE_FAILED, "late", NULL);   /* twice */
    push_finish(h, &fin[3], jobs[2]->id, FL_STATE_SUCCEEDED, NULL, NULL);
    push_finish(h, &fin[4], jobs[4]->id, FL_STATE_SUCCEEDED, NULL, NULL);   /* queued, not running */
    push_finish(h, &fin[5], jobs[3]->id, FL_STATE_SUCCEEDED, NULL, NULL);
    fl_store_hold(h->store, 0);
    settle(h);
    fl_store_stats_get(h->store, &after);
    /* two statements (the job repeated starts a second), two fence reads, the delivery, the
     * COMMIT, maybe the look for other nodes: at most 7, where op by op would be 11 */
    assert_true(after.round_trips - before.round_trips <= 7);
    for (int i = 0; i < F; i++) {
        assert_int_equal(fin[i].result, 0);
        if (i == 2 || i == 4) {
            assert_int_equal(fin[i].answer, FL_STORE_NOT_FOUND);
            assert_null(fin[i].u.finish.job);
            continue;
        }
        assert_int_equal(fin[i].answer, FL_STORE_OK);
        assert_non_null(fin[i].u.finish.job);
        assert_int_equal(fin[i].u.finish.job->id, fin[i].u.finish.id);
        assert_int_equal(fin[i].u.finish.job->state, fin[i].u.finish.o.state);
        fl_job_free(fin[i].u.finish.job);
    }
    assert_int_equal(query(h, "SELECT count(*) FROM jobs WHERE id = %lld AND state = 'succeeded' AND output = 'out0'"
                              " AND exit_code = 0 AND finished_at = %lld", (long long)jobs[0]->id, (long long)(NOW + 1)), 1);
    assert_int_equal(query(h, "SELECT count(*) FROM jobs WHERE id = %lld AND state = 'failed' AND error = 'exit 3'"
                              " AND output = 'out1' AND exit_code = 3", (long long)jobs[1]->id), 1);
    assert_int_equal(query(h, "SELECT count(*) FROM jobs WHERE id = %lld AND state = 'queued'", (long long)jobs[4]->id), 1);
    assert_int_equal(query(h, "SELECT count(*) FROM deliveries WHERE job_id = %lld AND event = 'complete'",
                           (long long)jobs[3]->id), 1);
    assert_int_equal(query(h, "SELECT count(*) FROM deliveries"), 1);
    free_jobs(jobs, N);
}

/* An outcome of an earlier attempt is fenced even on the node that runs the newer one (its
 * session was gone, the job re-queued by another node, claimed back here while the first
 * child still ran): only the attempt the job is in writes its outcome. */
static void test_old_attempt_fenced(void **state)
{
    harness *h = *state;
    fl_job *job = make_job("w", NULL, "x", NULL);
    fl_store_op sub, claim, fin;

    run_group(h, &job, &sub, 1);
    push_claim(h, &claim, "w", 1);
    settle(h);
    assert_int_equal(claim.u.claim.n, 1);
    assert_int_equal(claim.u.claim.jobs[0]->attempts, 1);
    fl_store_list_free(claim.u.claim.jobs, claim.u.claim.n);
    assert_int_equal(flh_pg_exec(h->pg, h->db, "UPDATE jobs SET attempts = 2"), 0);

    push_finish(h, &fin, job->id, FL_STATE_FAILED, "late", NULL);   /* attempt 1 */
    settle(h);
    assert_int_equal(fin.result, 0);
    assert_int_equal(fin.answer, FL_STORE_NOT_FOUND);
    assert_int_equal(query(h, "SELECT count(*) FROM jobs WHERE state = 'running' AND attempts = 2"), 1);

    fl_store_hold(h->store, 1);   /* the op is the writer's only once released */
    push_finish(h, &fin, job->id, FL_STATE_SUCCEEDED, NULL, "second");
    fin.u.finish.o.attempt = 2;
    fl_store_hold(h->store, 0);
    settle(h);
    assert_int_equal(fin.result, 0);
    assert_int_equal(fin.answer, FL_STORE_OK);
    fl_job_free(fin.u.finish.job);
    assert_int_equal(query(h, "SELECT count(*) FROM jobs WHERE state = 'succeeded' AND output = 'second'"), 1);
    fl_job_free(job);
}

/* pg_long runs a one-value query on c: the value, or -1. */
static long pg_long(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    long v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? strtol(PQgetvalue(r, 0, 0), NULL, 10) : -1;

    PQclear(r);
    return v;
}

/* session opens a connection of the test's own to h's database; the caller PQfinishes it. */
static PGconn *session(harness *h)
{
    char url[160];
    PGconn *c;

    flh_pg_url(h->pg, h->db, url, sizeof url);
    c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    return c;
}

/* hold_node_lock makes c hold the lock a running node named `name` holds (store_pg.c's
 * FL_PG_NODE_LOCK, keyed by the name's hashtext), as that node's own session would. */
static void hold_node_lock(PGconn *c, const char *name)
{
    char sql[128];

    snprintf(sql, sizeof sql, "SELECT count(pg_advisory_lock(1718382183, hashtext('%s')))", name);
    assert_int_equal(pg_long(c, sql), 1);
}

/* A sweep re-queues the jobs a gone node left running, but not one that a live node re-queued
 * and claimed again after the sweep's statement began: 100,000 orphans keep the sweep busy
 * long enough for a second session, holding a live node's lock, to move the last of them to
 * its node and a new attempt, as a claim would; that job is still running there after. */
static void test_sweep_spares_a_claimed_orphan(void **state)
{
    harness *h = *state;
    enum { ORPHANS = 100000 };
    char sql[256];
    fl_store_op claim;
    fl_store_stats before, after;
    long last, moved = -1;
    int64_t deadline = fl_job_now_ms() + WAIT_MS;
    PGconn *live;

    snprintf(sql, sizeof sql, "INSERT INTO jobs (type, state, max_attempts, timeout_ms, created_at, run_at, owner,"
             " attempts) SELECT 'o', 'running', 3, 0, 0, 0, 'gone', 1 FROM generate_series(1, %d)", ORPHANS);
    assert_int_equal(flh_pg_exec(h->pg, h->db, sql), 0);
    last = query(h, "SELECT max(id) FROM jobs");
    live = session(h);
    hold_node_lock(live, "live");

    fl_store_stats_get(h->store, &before);
    push_claim(h, &claim, "none", 1);
    /* the sweep's statement is running, so its snapshot is taken: the live node takes the job */
    while (moved < 0 && fl_store_pending(h->store) && fl_job_now_ms() < deadline) {
        if (pg_long(live, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                          " AND state = 'active' AND query LIKE '%pg_locks%' AND pid <> pg_backend_pid()") > 0) {
            snprintf(sql, sizeof sql, "WITH m AS (UPDATE jobs SET owner = 'live', attempts = 2 WHERE id = %ld"
                     " AND state = 'running' AND owner = 'gone' RETURNING 1) SELECT count(*) FROM m", last);
            moved = pg_long(live, sql);
        }
        fl_store_reap(h->store);
    }
    settle(h);
    assert_int_equal(claim.result, 0);
    assert_int_equal(claim.u.claim.n, 0);
    if (moved != 1) {
        PQfinish(live);
        skip();   /* the sweep was over before this session saw it run: nothing was tested */
    }
    fl_store_stats_get(h->store, &after);
    assert_int_equal(query(h, "SELECT count(*) FROM jobs WHERE id = %ld AND state = 'running' AND owner = 'live'"
                              " AND attempts = 2", last), 1);
    assert_int_equal(query(h, "SELECT count(*) FROM jobs WHERE state = 'queued' AND owner = 'gone'"), ORPHANS - 1);
    assert_int_equal(after.orphans - before.orphans, ORPHANS - 1);
    PQfinish(live);
}

/* next_wake waits up to secs for a notification on c (LISTENing): 1 with its payload in buf,
 * 0 if none came. */
static int next_wake(PGconn *c, char *buf, size_t len, double secs)
{
    int64_t deadline = fl_job_now_ms() + (int64_t)(secs * 1000);

    while (fl_job_now_ms() < deadline) {
        PGnotify *n;
        struct pollfd p = { PQsocket(c), POLLIN, 0 };
        if (!PQconsumeInput(c))
            return 0;
        if ((n = PQnotifies(c))) {
            snprintf(buf, len, "%s", n->extra);
            PQfreemem(n);
            return 1;
        }
        poll(&p, 1, 50);
    }
    return 0;
}

/* push_pause pauses type in a group of its own and waits for its answer: the op's result. */
static int push_pause(harness *h, const char *type)
{
    fl_store_op op;

    memset(&op, 0, sizeof op);
    fl_store_pause(h->store, &op, type, 1, NULL, NULL);
    settle(h);
    free(op.u.pause.types);
    return op.result;
}

/* A submit wakes the other nodes unless its type is paused as the writer last committed it: a
 * pause whose group failed (rolled back, the type not paused) leaves the type's submits waking
 * them; one that committed stops them. Another node is live (a session holds its lock), and a
 * session LISTENs where the wakes go. */
static void test_wakes_follow_committed_pauses(void **state)
{
    harness *h = *state;
    char wake[128];
    PGconn *live = session(h), *ear = session(h);
    fl_job *job;
    fl_store_op op;

    hold_node_lock(live, "live");
    PQclear(PQexec(ear, "LISTEN fling_due"));

    fl_store_inject_fault(h->store, -ENOSPC, 1);
    assert_int_equal(push_pause(h, "p"), -ENOSPC);
    assert_int_equal(query(h, "SELECT count(*) FROM paused_types"), 0);
    job = make_job("p", NULL, "x", NULL);
    run_group(h, &job, &op, 1);
    assert_int_equal(op.answer, FL_STORE_OK);
    fl_job_free(job);
    assert_int_equal(next_wake(ear, wake, sizeof wake, 5), 1);
    assert_string_equal(wake, "p s");

    assert_int_equal(push_pause(h, "p"), 0);
    const char *types[] = { "p", "q" };
    for (int i = 0; i < 2; i++) {
        job = make_job(types[i], NULL, "x", NULL);
        run_group(h, &job, &op, 1);
        assert_int_equal(op.answer, FL_STORE_OK);
        fl_job_free(job);
    }
    assert_int_equal(next_wake(ear, wake, sizeof wake, 5), 1);
    assert_string_equal(wake, "q s");   /* the first: p's submit woke no one */
    PQfinish(ear);
    PQfinish(live);
}

/* A starting node waits for its name's lock while the session that holds it ends, as its own
 * previous session does for a moment after a restart: here a session of the test's own holds
 * it and is ended a second later, and the open that began meanwhile succeeds after that. */
static void test_open_waits_for_the_lock(void **state)
{
    harness *h = *state;
    char sql[128];
    PGconn *holder, *ender;
    PGresult *r;
    int64_t start;

    fl_store_close(h->store);
    h->store = NULL;
    holder = session(h);
    ender = session(h);
    hold_node_lock(holder, "s");
    snprintf(sql, sizeof sql, "SELECT pg_sleep(1), pg_terminate_backend(%d)", PQbackendPID(holder));
    assert_int_equal(PQsendQuery(ender, sql), 1);

    start = fl_job_now_ms();
    assert_int_equal(open_store(h, 0, 0), 0);
    assert_true(fl_job_now_ms() - start >= 900);
    while ((r = PQgetResult(ender))) {
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        PQclear(r);
    }
    PQfinish(ender);
    PQfinish(holder);
}

/* reopen opens h's store again with readers and writers (fl_store_options) and returns a
 * session of the test's own on its database. */
static PGconn *reopen(harness *h, int readers, int writers)
{
    fl_store_close(h->store);
    assert_int_equal(open_store(h, readers, writers), 0);
    assert_int_equal(fl_store_readers(h->store), readers);
    return session(h);
}

/* wait_long waits until sql, run on c, answers want; fails the test after WAIT_MS. */
static void wait_long(PGconn *c, const char *sql, long want)
{
    int64_t deadline = fl_job_now_ms() + WAIT_MS;

    while (pg_long(c, sql) != want) {
        assert_true(fl_job_now_ms() < deadline);
        usleep(2000);
    }
}

/* A reader's GET reads a job and its deliveries in one snapshot. The test's session holds the
 * deliveries table, so that the reader's second statement (the deliveries) waits after its
 * first (the job) has run, and meanwhile finishes the job and adds its delivery: the GET
 * still answers the job as it was, without the delivery, not a queued job with the delivery
 * of its end. */
static void test_reader_get_one_snapshot(void **state)
{
    harness *h = *state;
    char sql[320];
    fl_job *job = make_job("g", NULL, "x", NULL);
    fl_store_op sub, get;
    PGconn *locker = reopen(h, 1, 1);

    run_group(h, &job, &sub, 1);
    assert_int_equal(sub.answer, FL_STORE_OK);

    PQclear(PQexec(locker, "BEGIN"));
    PQclear(PQexec(locker, "LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE"));
    memset(&get, 0, sizeof get);
    fl_store_get_committed(h->store, &get, job->id, NULL, NULL);
    wait_long(locker, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'flingd reader'"
                      " AND datname = current_database() AND wait_event_type = 'Lock'", 1);
    snprintf(sql, sizeof sql, "UPDATE jobs SET state = 'succeeded' WHERE id = %lld", (long long)job->id);
    PQclear(PQexec(locker, sql));
    snprintf(sql, sizeof sql, "INSERT INTO deliveries (job_id, event, target, created_at, next_at)"
             " VALUES (%lld, 'complete', 'http://127.0.0.1:9/', 0, 0)", (long long)job->id);
    PQclear(PQexec(locker, sql));
    PQclear(PQexec(locker, "COMMIT"));
    settle(h);
    assert_int_equal(get.result, 0);
    assert_int_equal(get.answer, FL_STORE_OK);
    assert_int_equal(get.u.get.job->state, FL_STATE_QUEUED);
    assert_int_equal(get.u.get.n_deliveries, 0);
    assert_int_equal(query(h, "SELECT count(*) FROM deliveries"), 1);
    fl_job_free(get.u.get.job);
    fl_store_deliveries_free(get.u.get.deliveries, get.u.get.n_deliveries);
    PQfinish(locker);
    fl_job_free(job);
}

/* The order the ops of test_second_writer reached their callbacks in: each its udata. */
static int reaped[16], n_reaped;

static void note_reaped(fl_store_op *op)
{
    if (n_reaped < 16)
        reaped[n_reaped++] = (int)(intptr_t)op->udata;
}

/* hold_row reopens h's store with two writers, commits job and returns a session of the
 * test's own holding its row lock: a cancel of it waits until that session commits. */
static PGconn *hold_row(harness *h, fl_job *job)
{
    fl_store_op sub;
    char sql[160];
    PGconn *locker = reopen(h, 0, 2);

    run_group(h, &job, &sub, 1);
    assert_int_equal(sub.answer, FL_STORE_OK);
    PQclear(PQexec(locker, "BEGIN"));
    snprintf(sql, sizeof sql, "SELECT id FROM jobs WHERE id = %lld FOR UPDATE", (long long)job->id);
    assert_int_equal(pg_long(locker, sql), job->id);
    return locker;
}

/* waits_on_lock waits until the first writer's session waits on a lock. */
static void waits_on_lock(PGconn *c)
{
    wait_long(c, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'flingd'"
                 " AND datname = current_database() AND wait_event_type = 'Lock'", 1);
}

/* release_in_order ends the lock of hold_row and waits for every op: n of them, which must
 * reach their callbacks in the order of their udata 0 .. n - 1. */
static void release_in_order(harness *h, PGconn *locker, int n)
{
    PQclear(PQexec(locker, "COMMIT"));
    settle(h);
    assert_int_equal(n_reaped, n);
    for (int i = 0; i < n; i++)
        assert_int_equal(reaped[i], i);
}

/* With a second writer, plain submits commit while the first writer's group waits (here a
 * cancel, on a row the test holds), and still reach their callbacks after it, in push order;
 * a claim pushed after them is the first writer's and sees their jobs. */
static void test_second_writer(void **state)
{
    harness *h = *state;
    enum { N = 5 };
    fl_job *held = make_job("w", NULL, "held", NULL), *jobs[N];
    fl_store_op cancel, ops[N], claim;
    char sql[160];
    PGconn *locker = hold_row(h, held), *other;

    n_reaped = 0;
    memset(&cancel, 0, sizeof cancel);
    fl_store_cancel(h->store, &cancel, held->id, NOW, note_reaped, (void *)(intptr_t)0);
    waits_on_lock(locker);
    fl_store_cork(h->store);   /* one group (a writer parks one group at most) */
    for (int i = 0; i < N; i++) {
        jobs[i] = make_job("w", NULL, "beside", NULL);
        fl_store_submit(h->store, &ops[i], jobs[i], note_reaped, (void *)(intptr_t)(i + 1));
    }
    fl_store_uncork(h->store);
    /* another session sees them committed while the cancel still waits */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE type = 'w' AND state = 'queued' AND id > %lld",
             (long long)held->id);
    other = session(h);
    wait_long(other, sql, N);
    assert_int_equal(pg_long(other, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'flingd'"
                                   " AND datname = current_database() AND wait_event_type = 'Lock'"), 1);
    /* a claim is the first writer's: it waits for the cancel, and sees the submits */
    memset(&claim, 0, sizeof claim);
    fl_store_claim(h->store, &claim, "w", 10, NOW, note_reaped, (void *)(intptr_t)(N + 1));
    fl_store_reap(h->store);
    assert_int_equal(n_reaped, 0);   /* parked behind the cancel's group */
    release_in_order(h, locker, N + 2);
    assert_int_equal(cancel.answer, FL_STORE_OK);
    for (int i = 0; i < N; i++)
        assert_int_equal(ops[i].answer, FL_STORE_OK);
    assert_int_equal(claim.result, 0);
    assert_int_equal(claim.u.claim.n, N);
    fl_store_list_free(claim.u.claim.jobs, claim.u.claim.n);
    fl_job_free(cancel.u.cancel.job);
    PQfinish(other);
    PQfinish(locker);
    free_jobs(jobs, N);
    fl_job_free(held);
}

/* A claim in the first writer's group must not see jobs submitted after it: while that group
 * waits (its cancel, on a row the test holds), the second writer leaves the plain submits
 * pushed meanwhile alone; they commit after it, and the claim took none of them. */
static void test_second_writer_spares_a_claim(void **state)
{
    harness *h = *state;
    enum { N = 5 };
    fl_job *held = make_job("v", NULL, "held", NULL), *jobs[N];
    fl_store_op cancel, claim, ops[N];
    char sql[160];
    PGconn *locker = hold_row(h, held);

    n_reaped = 0;
    memset(&cancel, 0, sizeof cancel);
    memset(&claim, 0, sizeof claim);
    fl_store_cork(h->store);   /* the cancel and the claim: one group */
    fl_store_cancel(h->store, &cancel, held->id, NOW, note_reaped, (void *)(intptr_t)0);
    fl_store_claim(h->store, &claim, "v", 10, NOW, note_reaped, (void *)(intptr_t)1);
    fl_store_uncork(h->store);
    waits_on_lock(locker);
    fl_store_cork(h->store);
    for (int i = 0; i < N; i++) {
        jobs[i] = make_job("v", NULL, "after", NULL);
        fl_store_submit(h->store, &ops[i], jobs[i], note_reaped, (void *)(intptr_t)(i + 2));
    }
    fl_store_uncork(h->store);
    usleep(300 * 1000);   /* time for a second writer to commit them, were it allowed to */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id > %lld", (long long)held->id);
    assert_int_equal(pg_long(locker, sql), 0);
    release_in_order(h, locker, N + 2);
    assert_int_equal(cancel.answer, FL_STORE_OK);
    assert_int_equal(claim.result, 0);
    assert_int_equal(claim.u.claim.n, 0);   /* the held job was cancelled first */
    for (int i = 0; i < N; i++) {
        assert_int_equal(ops[i].answer, FL_STORE_OK);
        assert_true(jobs[i]->id > held->id);
    }
    fl_store_list_free(claim.u.claim.jobs, claim.u.claim.n);
    fl_job_free(cancel.u.cancel.job);
    PQfinish(locker);
    free_jobs(jobs, N);
    fl_job_free(held);
}

int main(void)
{
    if (!flh_pg_available()) {
        printf("SKIP: PostgreSQL 15 is not installed (%s); scripts/install-deps --test installs it\n", FLH_PG_BIN);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_group_of_submits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_of_fresh_submits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_op_fails_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_payloads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_of_finishes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_attempt_fenced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_spares_a_claimed_orphan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wakes_follow_committed_pauses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_waits_for_the_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_get_one_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_writer_spares_a_claim, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
