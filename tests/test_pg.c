/* test_pg.c — the PostgreSQL store backend with real flingd nodes on one real PostgreSQL 15
 * server (tests/harness_pg.h): migrations applied once by ten nodes starting at once; an
 * Idempotency-Key shared by the nodes; every job of several nodes run exactly once; a node's
 * restart re-queues its own orphans and no other node's; a node whose lock another session
 * took acking nothing; a server restart under load (503
 * while it is away, reconnection without help, every acked job ends); a cancel through one
 * node of a job another runs; callbacks delivered with a node killed meanwhile; an attached wait, an event stream and a Redis mirror on one node
 * following a job another runs; a node that follows nothing reading none of the other's
 * changes, a client attached (or a Redis mirror) across the loss of its node's listener, and
 * the gap comments of event streams that missed other nodes' changes; [store] connections readers (1, 2 and 3 of them) serving
 * reads while every writer waits on a lock, and reconnecting after a server restart; the
 * configuration's errors. Skipped (77) when the server binaries are not installed. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "fling.h"
#include "harness.h"
#include "harness_pg.h"
#include "receiver.h"

static flh_pg *pg;

/* node_conf writes the [store] of a node named name on database db (plus more INI text). */
static void node_conf(char *buf, size_t len, const char *db, const char *name, const char *more)
{
    char url[160];

    flh_pg_url(pg, db, url, sizeof url);
    snprintf(buf, len, "[store]\nbackend = postgres\nurl = %s\nnode = %s\n[type.noop]\nhandler = noop\n%s", url, name,
             more ? more : "");
}

/* submit posts one job of type to d (extra headers may be NULL): the HTTP status, and the id
 * into id (if not NULL) from a 202 or 200. */
static int submit(const flh_daemon *d, const char *type, const char *payload, const char *headers, char *id,
                  size_t idlen)
{
    size_t len;
    char *req = flh_submit_req(type, payload, strlen(payload), headers, &len);
    char reply[4096];
    int fd = flh_connect_tcp(d->port), status = 0;

    if (req && fd >= 0 && flh_send_all(fd, req, len) == 0)
        status = flh_read_reply(fd, reply, sizeof reply, 10000);
    if (fd >= 0)
        close(fd);
    free(req);
    if (id && (status == 202 || status == 200)) {
        const char *p = strstr(reply, "\"id\":\"");
        id[0] = '\0';
        if (p)
            snprintf(id, idlen, "%.*s", (int)strcspn(p + 6, "\""), p + 6);
    }
    return status;
}

/* start_nodes starts n nodes at once on database db, named PREFIX0, PREFIX1, ..., each with
 * more INI text. */
static void start_nodes(flh_daemon *d, int n, const char *db, char prefix, const char *more)
{
    char conf[16][1024], name[16];
    const char *confs[16];

    assert_true(n <= 16);
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%c%d", prefix, i);
        node_conf(conf[i], sizeof conf[i], db, name, more);
        confs[i] = conf[i];
    }
    assert_int_equal(flh_start_many(d, n, confs), 0);
}

/* start_two starts nodes "a" and "b" (with more INI text) on a new database, named into db. */
static void start_two(flh_daemon *a, flh_daemon *b, char *db, size_t len, const char *more)
{
    char ca[1024], cb[1024];

    assert_int_equal(flh_pg_create_db(pg, db, len), 0);
    node_conf(ca, sizeof ca, db, "a", more);
    node_conf(cb, sizeof cb, db, "b", more);
    assert_int_equal(flh_start(a, ca), 0);
    assert_int_equal(flh_start(b, cb), 0);
}

/* wait_query polls a one-number query on db until it gives want or secs pass: the last value. */
static long wait_query(const char *db, const char *sql, long want, double secs)
{
    long v = -1;
    for (double end = flh_now() + secs; flh_now() < end; usleep(20000))
        if ((v = flh_pg_query_long(pg, db, sql)) == want)
            break;
    return v;
}

static long count_log(const char *path, const char *what)
{
    flh_daemon tmp = { 0 };
    snprintf(tmp.log, sizeof tmp.log, "%s", path);
    return flh_log_count(&tmp, what);
}

/* Ten nodes starting at once on an empty database: the migrations are applied once, under
 * the advisory lock, and every node comes up. */
static void test_migrate_once(void **state)
{
    (void)state;
    enum { N = 10 };
    flh_daemon d[N];
    char db[64];
    long applied = 0;

    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    start_nodes(d, N, db, 'm', NULL);
    for (int i = 0; i < N; i++)
        applied += count_log(d[i].log, "applied PostgreSQL migration");
    assert_int_equal(applied, flh_pg_query_long(pg, db, "SELECT count(*) FROM fling_schema"));
    assert_true(applied >= 1);
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT count(DISTINCT version) FROM fling_schema"), applied);
    for (int i = 0; i < N; i++)
        assert_int_equal(flh_stop(&d[i]), 0);
}

/* An Idempotency-Key is one job whichever node sees it: the second submit, on another node,
 * answers 200 with the first one's id. */
static void test_idempotency_across_nodes(void **state)
{
    (void)state;
    flh_daemon a, b;
    char db[64], id1[32], id2[32];

    start_two(&a, &b, db, sizeof db, NULL);
    assert_int_equal(submit(&a, "noop", "x", "Idempotency-Key: k-1\r\n", id1, sizeof id1), 202);
    assert_int_equal(submit(&b, "noop", "x", "Idempotency-Key: k-1\r\n", id2, sizeof id2), 200);
    assert_string_equal(id1, id2);
    assert_int_equal(submit(&b, "noop", "x", "Idempotency-Key: k-2\r\n", id2, sizeof id2), 202);
    assert_string_not_equal(id1, id2);
    assert_int_equal(flh_stop(&a), 0);
    assert_int_equal(flh_stop(&b), 0);
}

/* counts how often each job id appears in the file the exec handler appends to. */
typedef struct runs { int n_lines, dup; long max_id; unsigned char *seen; } runs;

static void read_runs(const char *path, runs *r, long max_id)
{
    char line[64];
    FILE *f = fopen(path, "r");

    memset(r, 0, sizeof *r);
    r->seen = calloc((size_t)max_id + 1, 1);
    assert_non_null(r->seen);
    while (f && fgets(line, sizeof line, f)) {
        long id = strtol(line, NULL, 10);
        r->n_lines++;
        if (id > 0 && id <= max_id && r->seen[id]++)
            r->dup++;
    }
    if (f)
        fclose(f);
}

/* Jobs submitted round-robin to three nodes on one database: each is run once, by one node,
 * and ends succeeded; no id repeats. */
static void test_three_nodes_run_once(void **state)
{
    (void)state;
    enum { N = 3, JOBS = 3000 };
    flh_daemon d[N];
    char db[64], out[192], type[512], id[32];
    runs r;

    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    snprintf(out, sizeof out, "/tmp/flingpgruns.%d", (int)getpid());
    unlink(out);
    snprintf(type, sizeof type, "[type.log]\nhandler = exec\ncommand = /bin/sh -c 'echo $FLING_JOB_ID >> %s'\n", out);
    start_nodes(d, N, db, 'r', type);
    for (int i = 0; i < JOBS; i++)
        assert_int_equal(submit(&d[i % N], "log", "", NULL, id, sizeof id), 202);
    assert_int_equal(wait_query(db, "SELECT count(*) FROM jobs WHERE state = 'succeeded'", JOBS, 60), JOBS);
    read_runs(out, &r, JOBS * 2);
    assert_int_equal(r.n_lines, JOBS);
    assert_int_equal(r.dup, 0);
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT count(DISTINCT id) FROM jobs"), JOBS);
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT max(attempts) FROM jobs"), 1);
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT count(DISTINCT owner) FROM jobs"), N);
    /* each node's /metrics counts its own claims; its log names it */
    long claimed = 0;
    char named[32];
    for (int i = 0; i < N; i++) {
        claimed += flh_metric(&d[i], "fling_pg_claimed_jobs_total");
        assert_true(flh_metric(&d[i], "fling_pg_round_trip_seconds_count") > 0);
        snprintf(named, sizeof named, "[node=r%d", i);
        assert_true(flh_log_count(&d[i], named) >= 1);
    }
    assert_int_equal(claimed, JOBS);
    free(r.seen);
    unlink(out);
    for (int i = 0; i < N; i++)
        assert_int_equal(flh_stop(&d[i]), 0);
}

/* The state of job id on db, read from the database itself. */
static void job_row(const char *db, const char *id, const char *col, char *buf, size_t len)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT %s FROM jobs WHERE id = %s", col, id);
    long v = flh_pg_query_long(pg, db, sql);
    snprintf(buf, len, "%ld", v);
}

/* A node killed while its job runs re-queues that job when it starts again (its attempt
 * counted), and leaves the job another node runs alone. One slot per node: each runs one. */
static void test_restart_requeues_own_orphans_only(void **state)
{
    (void)state;
    flh_daemon a, b;
    char db[64], ida[32], idb[32], v[32], sql[200];

    start_two(&a, &b, db, sizeof db, "[workers]\ncount = 1\n");
    assert_int_equal(submit(&a, "t", "30", NULL, ida, sizeof ida), 202);
    assert_int_equal(submit(&b, "t", "30", NULL, idb, sizeof idb), 202);
    assert_int_equal(wait_query(db, "SELECT count(DISTINCT owner) FROM jobs WHERE state = 'running'", 2, 10), 2);
    /* which job each node runs: a may have claimed b's submit, and the other way round */
    snprintf(sql, sizeof sql, "SELECT id FROM jobs WHERE owner = 'a'");
    snprintf(ida, sizeof ida, "%ld", flh_pg_query_long(pg, db, sql));
    snprintf(sql, sizeof sql, "SELECT id FROM jobs WHERE owner = 'b'");
    snprintf(idb, sizeof idb, "%ld", flh_pg_query_long(pg, db, sql));
    /* b sweeps every second, busy or not: frozen, it cannot take a's job before a is back */
    assert_int_equal(kill(b.pid, SIGSTOP), 0);
    flh_kill(&a, SIGKILL);
    int restarted = flh_restart(&a);
    assert_int_equal(kill(b.pid, SIGCONT), 0);
    assert_int_equal(restarted, 0);
    if (flh_log_count(&a, "1 job(s) left running by a previous daemon re-queued") != 1) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "cat %s >&2", a.log);
        assert_int_equal(system(cmd), 0);
        fail();
    }
    /* a's job runs again, as its second attempt; b's is untouched, still its first */
    snprintf(sql, sizeof sql, "SELECT attempts FROM jobs WHERE id = %s AND state = 'running'", ida);
    assert_int_equal(wait_query(db, sql, 2, 10), 2);
    job_row(db, idb, "attempts", v, sizeof v);
    assert_string_equal(v, "1");
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND state = 'running' AND owner = 'b'", idb);
    assert_int_equal(flh_pg_query_long(pg, db, sql), 1);
    assert_int_equal(flh_stop(&a), 0);
    assert_int_equal(flh_stop(&b), 0);
}

/* A job submitted to a node whose only slot is busy starts on an idle node: the submit's
 * commit notifies, and the other node's listener wakes its scheduler (without it the job
 * would wait for the busy node's slot, a minute here). */
static void test_idle_node_takes_the_job(void **state)
{
    (void)state;
    flh_daemon a, b;
    char db[64], id[32], sql[200];

    start_two(&a, &b, db, sizeof db, "[workers]\ncount = 1\n");
    /* a minute of sleep fills one node's slot (whichever claimed it) */
    assert_int_equal(submit(&a, "t", "60", NULL, id, sizeof id), 202);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND state = 'running'", id);
    assert_int_equal(wait_query(db, sql, 1, 10), 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND owner = 'a'", id);
    long on_a = flh_pg_query_long(pg, db, sql);
    flh_daemon *busy = on_a ? &a : &b, *idle = on_a ? &b : &a;
    const char *idle_name = on_a ? "b" : "a";
    assert_int_equal(submit(busy, "noop", "", NULL, id, sizeof id), 202);
    json_t *job = flh_wait_terminal(idle, id, 20000);
    assert_non_null(job);
    assert_string_equal(json_string_value(json_object_get(job, "state")), "succeeded");
    json_decref(job);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND owner = '%s'", id, idle_name);
    assert_int_equal(flh_pg_query_long(pg, db, sql), 1);
    assert_int_equal(flh_stop(&a), 0);
    assert_int_equal(flh_stop(&b), 0);
}

/* Priority across nodes with one slot each: nine jobs wait while every slot is busy; then each
 * node's claims come in priority order (a claim takes the best job no other node is taking at
 * that moment), and every job runs once. Checked per node, by the database's own record. */
static void test_priority_across_nodes(void **state)
{
    (void)state;
    enum { N = 3, JOBS = 9 };
    static const int prio[JOBS] = { 4, 9, 1, 7, 3, 8, 2, 6, 5 };
    flh_daemon d[N];
    char db[64], id[32], hdr[64], sql[300];

    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    start_nodes(d, N, db, 'p', "[workers]\ncount = 1\n");
    for (int i = 0; i < N; i++)
        assert_int_equal(submit(&d[i], "t", "6", NULL, id, sizeof id), 202);   /* outlasts the nine submits, under TSan too */
    assert_int_equal(wait_query(db, "SELECT count(*) FROM jobs WHERE state = 'running'", N, 10), N);
    for (int i = 0; i < JOBS; i++) {
        snprintf(hdr, sizeof hdr, "Fling-Priority: %d\r\n", prio[i]);
        assert_int_equal(submit(&d[i % N], "t", "0.1", hdr, id, sizeof id), 202);
    }
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT count(*) FROM jobs WHERE state = 'queued'"), JOBS);
    assert_int_equal(wait_query(db, "SELECT count(*) FROM jobs WHERE state = 'succeeded'", N + JOBS, 30), N + JOBS);
    /* per node, a later claim never took a higher priority than an earlier one */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs a JOIN jobs b ON a.owner = b.owner AND a.priority > 0"
             " AND b.priority > 0 AND (a.started_at, a.id) < (b.started_at, b.id) WHERE b.priority > a.priority");
    assert_int_equal(flh_pg_query_long(pg, db, sql), 0);
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT max(attempts) FROM jobs"), 1);
    for (int i = 0; i < N; i++)
        assert_int_equal(flh_stop(&d[i]), 0);
}

/* A claim of several jobs (a node claims ahead of its free slots for short jobs) starts them
 * highest priority first: PostgreSQL's UPDATE ... RETURNING gives rows in no set order, so the
 * claim must order what it returns. One slot; the exec handler appends each payload (its
 * priority) to a file, which must come out in non-increasing order. */
static void test_claim_batch_in_priority_order(void **state)
{
    (void)state;
    enum { JOBS = 40 };
    flh_daemon d;
    char db[64], conf[1536], more[512], dir[] = "/tmp/fling-pgorder-XXXXXX", path[128], pay[16], hdr[64];

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/order", dir);
    snprintf(more, sizeof more,
             "[workers]\ncount = 1\n[type.log]\nhandler = exec\n"
             "command = /bin/sh -c \"cat >> %s; echo >> %s\"\n", path, path);
    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    node_conf(conf, sizeof conf, db, "o", more);
    assert_int_equal(flh_start(&d, conf), 0);
    assert_int_equal(flh_http(&d, "POST", "/v1/types/log/pause", NULL), 200);
    for (int i = 0; i < JOBS; i++) {
        int prio = (i * 17) % JOBS;   /* 0..39, each once, shuffled */
        snprintf(pay, sizeof pay, "%d", prio);
        snprintf(hdr, sizeof hdr, "Fling-Priority: %d\r\n", prio);
        assert_int_equal(submit(&d, "log", pay, hdr, NULL, 0), 202);
    }
    assert_int_equal(flh_http(&d, "POST", "/v1/types/log/resume", NULL), 200);
    assert_int_equal(wait_query(db, "SELECT count(*) FROM jobs WHERE state = 'succeeded'", JOBS, 30), JOBS);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int prev = JOBS, n = 0, v, out_of_order = 0;
    while (fscanf(f, "%d", &v) == 1) {
        out_of_order += v > prev;
        prev = v;
        n++;
    }
    fclose(f);
    assert_int_equal(n, JOBS);
    assert_int_equal(out_of_order, 0);
    assert_true(flh_metric(&d, "fling_pg_claimed_jobs_total") == JOBS);
    assert_int_equal(flh_stop(&d), 0);
    unlink(path);
    rmdir(dir);
}

/* kill -9 of a node while it runs jobs: the other nodes see its lock free and re-queue them
 * (the interrupted attempt counts) though every slot of theirs is busy, run them, and nothing
 * acked is lost. */
static void test_killed_node_jobs_run_elsewhere(void **state)
{
    (void)state;
    enum { N = 3, JOBS = 6 };
    flh_daemon d[N];
    char db[64], id[32], sql[256];

    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    start_nodes(d, N, db, 'k', "[workers]\ncount = 2\n");
    for (int i = 0; i < JOBS; i++)
        assert_int_equal(submit(&d[i % N], "t", "6", NULL, id, sizeof id), 202);
    assert_int_equal(wait_query(db, "SELECT count(*) FROM jobs WHERE state = 'running' AND owner = 'k0'", 2, 10), 2);
    double killed = flh_now();
    flh_kill(&d[0], SIGKILL);
    /* about a second (the sweep's period), not when a slot frees in 6 s: the bound leaves
     * room for a loaded machine, the figure is printed */
    assert_int_equal(wait_query(db, "SELECT count(*) FROM jobs WHERE owner = 'k0' AND state = 'running'", 0, 10), 0);
    printf("k0's running jobs re-queued %.2f s after its kill\n", flh_now() - killed);
    assert_true(flh_now() - killed < 4.5);
    assert_int_equal(wait_query(db, "SELECT count(*) FROM jobs WHERE state = 'succeeded'", JOBS, 30), JOBS);
    /* k0's two jobs ran again elsewhere, as their second attempt */
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT count(*) FROM jobs WHERE attempts = 2 AND owner <> 'k0'"), 2);
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT count(*) FROM jobs WHERE owner = 'k0'"), 0);
    long requeued = flh_log_count(&d[1], "left running by nodes that are gone re-queued") +
                    flh_log_count(&d[2], "left running by nodes that are gone re-queued");
    assert_true(requeued >= 1);
    assert_int_equal(flh_metric(&d[1], "fling_pg_orphans_requeued_total") +
                     flh_metric(&d[2], "fling_pg_orphans_requeued_total"), 2);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE state <> 'succeeded'");
    assert_int_equal(flh_pg_query_long(pg, db, sql), 0);
    for (int i = 1; i < N; i++)
        assert_int_equal(flh_stop(&d[i]), 0);
    flh_rmdir(d[0].dir);
}

/* delivered_ids counts, for each job id below max, the complete callbacks r received for it
 * (their body is the job's JSON): how many ids have at least one, and into *dups how many
 * deliveries were a second or later one. */
static int delivered_ids(flr_receiver *r, int *counts, int max, long *dups)
{
    int ids = 0;

    memset(counts, 0, sizeof *counts * (size_t)max);
    *dups = 0;
    for (size_t i = 0; i < flr_count(r); i++) {
        const flr_request *q = flr_get(r, i);
        json_t *job = q ? json_loads(q->body, 0, NULL) : NULL;
        long id = job ? atol(json_string_value(json_object_get(job, "id")) ?: "0") : 0;
        json_decref(job);
        if (id <= 0 || id >= max)
            continue;
        ids += counts[id] == 0;
        *dups += counts[id] > 0;
        counts[id]++;
    }
    return ids;
}

/* Callbacks on three nodes: each job's Fling-Callback is delivered once (by the node that
 * ended it, or any node's once-a-second take). One node killed (-9) with deliveries in flight (the receiver answers slowly) leaves
 * them, and its running jobs, to the others: every job gets its callback, and every delivery
 * row ends delivered. Deliveries are at least once: a node killed between the receiver's
 * answer and its commit leaves one to be sent again; the duplicates are counted, printed,
 * and bounded by what the killed node had in flight. */
static void test_callbacks_across_nodes(void **state)
{
    (void)state;
    enum { N = 3, JOBS = 300, MAX_ID = 4 * JOBS };
    static int counts[MAX_ID];
    flh_daemon d[N];
    flr_receiver *r = flr_start();
    char db[64], more[256], hdr[160], id[32];
    char *url;
    long dups = 0;
    int ids = 0;

    assert_non_null(r);
    url = flr_url(r, "/done");
    snprintf(more, sizeof more, "[callbacks]\nallow = http://127.0.0.1:%d\nbackoff = 0.1\nbackoff_max = 0.2\n"
             "concurrency = 8\n[workers]\ncount = 4\n", flr_port(r));
    snprintf(hdr, sizeof hdr, "Fling-Callback: %s\r\n", url);
    flr_set_delay(r, 0.05);
    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    start_nodes(d, N, db, 'c', more);
    for (int i = 0; i < JOBS; i++)
        assert_int_equal(submit(&d[i % N], "noop", "", hdr, id, sizeof id), 202);
    assert_int_equal(flr_wait(r, JOBS / 10, 30000), 0);
    flh_kill(&d[0], SIGKILL);
    for (double end = flh_now() + 60; flh_now() < end && ids < JOBS; usleep(100000))
        ids = delivered_ids(r, counts, MAX_ID, &dups);
    assert_int_equal(ids, JOBS);
    assert_int_equal(wait_query(db, "SELECT count(*) FROM deliveries WHERE state = 'delivered' AND NOT inflight",
                                JOBS, 30), JOBS);
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"), JOBS);
    ids = delivered_ids(r, counts, MAX_ID, &dups);
    printf("callbacks across nodes: %d jobs, %zu deliveries, %ld duplicate(s) after the kill\n", ids, flr_count(r),
           dups);
    /* a node has at most [callbacks] concurrency (8 here) in flight */
    assert_true(dups <= 8);
    for (int i = 1; i < N; i++)
        assert_int_equal(flh_stop(&d[i]), 0);
    flh_rmdir(d[0].dir);
    free(url);
    flr_stop(r);
}

/* end_session ends the session that holds node's lock on db (pg_terminate_backend): how many
 * it ended. */
static long end_session(const char *db, const char *node)
{
    char sql[300];

    snprintf(sql, sizeof sql, "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory'"
             " AND classid = 1718382183 AND objid = (hashtext('%s')::bigint & 4294967295)::oid", node);
    return flh_pg_query_long(pg, db, sql);
}

/* steal_lock ends the session that holds node's lock on db (pg_terminate_backend) and takes
 * the lock on a session of the test's own before the node connects again: the returned
 * session, whose PQfinish frees it. */
static PGconn *steal_lock(const char *db, const char *node)
{
    char url[160], take[120];
    PGconn *thief;
    int held = 0;

    flh_pg_url(pg, db, url, sizeof url);
    thief = PQconnectdb(url);
    assert_int_equal(PQstatus(thief), CONNECTION_OK);
    snprintf(take, sizeof take, "SELECT pg_try_advisory_lock(1718382183, hashtext('%s'))", node);
    for (int tries = 0; tries < 20 && !held; tries++) {
        end_session(db, node);
        for (double end = flh_now() + 0.5; flh_now() < end && !held; usleep(1000)) {
            PGresult *r = PQexec(thief, take);
            held = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
            PQclear(r);
        }
    }
    assert_true(held);
    return thief;
}

/* A node whose session the server ended (pg_terminate_backend) while its job runs: another
 * node re-runs the job, and the first node's late outcome is fenced: the job's final record
 * is the second attempt's. The first node is frozen (SIGSTOP) from just before its session
 * ends until the job ran again elsewhere, as in a partition: a node that got its lock back
 * before any other swept would just finish its own attempt. */
static void test_terminated_session_is_fenced(void **state)
{
    (void)state;
    flh_daemon a, b;
    char db[64], id[32], sql[400];

    start_two(&a, &b, db, sizeof db, "[workers]\ncount = 1\n");
    assert_int_equal(submit(&a, "t", "3", NULL, id, sizeof id), 202);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND state = 'running'", id);
    assert_int_equal(wait_query(db, sql, 1, 10), 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND owner = 'a'", id);
    int on_a = flh_pg_query_long(pg, db, sql) == 1;
    const char *first = on_a ? "a" : "b", *second = on_a ? "b" : "a";
    flh_daemon *first_d = on_a ? &a : &b;
    assert_int_equal(kill(first_d->pid, SIGSTOP), 0);
    long ended = end_session(db, first);   /* its writer's: the session holding its lock */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND state = 'succeeded' AND owner = '%s'"
             " AND attempts = 2", id, second);
    long rerun = ended == 1 ? wait_query(db, sql, 1, 30) : 0;
    assert_int_equal(kill(first_d->pid, SIGCONT), 0);   /* it connects again, and its outcome comes */
    assert_int_equal(ended, 1);
    assert_int_equal(rerun, 1);
    int fenced = 0;
    for (double end = flh_now() + 20; flh_now() < end && !fenced; usleep(50000))
        fenced = flh_log_count(first_d, "no longer this node's attempt") == 1;
    assert_true(fenced);
    assert_int_equal(flh_metric(first_d, "fling_pg_fenced_outcomes_total"), 1);
    assert_int_equal(wait_query(db, sql, 1, 1), 1);   /* still the second attempt's record */
    assert_int_equal(flh_stop(&a), 0);
    assert_int_equal(flh_stop(&b), 0);
}

/* burst sends n submits of type, each on its own connection, gap_us apart, and counts the
 * answers with status want. */
static int burst(const flh_daemon *d, const char *type, int n, int gap_us, int want)
{
    int fd[32], got = 0;
    size_t len;
    char *req = flh_submit_req(type, "", 0, NULL, &len), reply[4096];

    assert_non_null(req);
    assert_true(n <= 32);
    for (int i = 0; i < n; i++) {
        fd[i] = flh_connect_tcp(d->port);
        assert_true(fd[i] >= 0);
        assert_int_equal(flh_send_all(fd[i], req, len), 0);
        usleep(gap_us);
    }
    for (int i = 0; i < n; i++) {
        got += flh_read_reply(fd[i], reply, sizeof reply, 10000) == want;
        close(fd[i]);
    }
    free(req);
    return got;
}

/* A node whose session is gone while another session holds its lock acks nothing: bursts of
 * plain submits (which its second writer could commit on a session that still works) all
 * answer 503 and leave no row; once the lock is free again, the node takes it back and acks. */
static void test_lockless_node_acks_nothing(void **state)
{
    (void)state;
    flh_daemon d;
    char db[64], conf[512], id[32];
    PGconn *thief;

    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    node_conf(conf, sizeof conf, db, "n", NULL);
    assert_int_equal(flh_start(&d, conf), 0);
    assert_int_equal(submit(&d, "noop", "", NULL, id, sizeof id), 202);
    thief = steal_lock(db, "n");
    /* a few milliseconds apart: most arrive while the first writer is busy reconnecting */
    for (int round = 0; round < 10; round++)
        assert_int_equal(burst(&d, "noop", 16, 2000, 503), 16);
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT count(*) FROM jobs"), 1);
    PQfinish(thief);   /* the lock is free again */
    int st = 0;
    for (double end = flh_now() + 20; flh_now() < end && st != 202; usleep(100000))
        st = submit(&d, "noop", "", NULL, id, sizeof id);
    assert_int_equal(st, 202);
    assert_int_equal(burst(&d, "noop", 16, 0, 202), 16);
    assert_int_equal(flh_stop(&d), 0);
}

/* The server restarted under load: submits answer 503 while it is away (never a 202 that was
 * not committed), the node reconnects by itself (its writer and its listener), and every
 * acked job ends succeeded. */
static void test_server_restart(void **state)
{
    (void)state;
    flh_pg own;
    flh_daemon d;
    char db[64], conf[512], id[32], first[32], path[64];
    int acked = 0, refused = 0;

    assert_int_equal(flh_pg_start(&own), 0);
    flh_pg *shared = pg;
    pg = &own;
    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    node_conf(conf, sizeof conf, db, "n", NULL);
    assert_int_equal(flh_start(&d, conf), 0);
    for (int i = 0; i < 50; i++)
        acked += submit(&d, "noop", "", NULL, id, sizeof id) == 202;
    snprintf(first, sizeof first, "%s", id);
    flh_pg_kill(&own);
    /* /healthz says the database is unreachable before anything is written: the listener's
     * connection ended with the server */
    json_t *h = NULL;
    int health = 0;
    for (double end = flh_now() + 10; flh_now() < end && health != 503; usleep(50000)) {
        json_decref(h);
        h = NULL;
        health = flh_http(&d, "GET", "/healthz", &h);
    }
    assert_int_equal(health, 503);
    assert_string_equal(json_string_value(json_object_get(h, "status")), "store_failing");
    json_decref(h);
    for (int i = 0; i < 20; i++) {
        int st = submit(&d, "noop", "", NULL, id, sizeof id);
        assert_true(st == 503 || st == 202);   /* a group that committed just before the stop */
        refused += st == 503;
        acked += st == 202;
    }
    assert_true(refused > 0);
    h = NULL;
    assert_int_equal(flh_http(&d, "GET", "/healthz", &h), 503);
    json_decref(h);
    /* the readers' GETs fail as the writer's groups do */
    snprintf(path, sizeof path, "/v1/jobs/%s", first);
    for (int i = 0; i < 3; i++) {
        h = NULL;
        assert_int_equal(flh_http(&d, "GET", path, &h), 503);
        json_decref(h);
    }
    assert_int_equal(flh_pg_restart(&own), 0);
    int st = 0;
    for (double end = flh_now() + 20; flh_now() < end && st != 202; usleep(100000))
        st = submit(&d, "noop", "", NULL, id, sizeof id);
    assert_int_equal(st, 202);
    acked++;
    assert_true(flh_log_count(&d, "connected to PostgreSQL again") >= 1);
    /* the listener connects again by itself too, on the loop's one-second tick */
    int back = 0;
    for (double end = flh_now() + 15; flh_now() < end && !back; usleep(100000))
        back = flh_log_count(&d, "listener is connected again") == 1;
    assert_true(back);
    /* and so do its readers, each at its first read after the server is back */
    st = 0;
    for (double end = flh_now() + 15; flh_now() < end && st != 200; usleep(100000)) {
        h = NULL;
        st = flh_http(&d, "GET", path, &h);
        json_decref(h);
    }
    assert_int_equal(st, 200);
    assert_true(flh_log_count(&d, "store reader: connected to PostgreSQL again") >= 1);
    assert_int_equal(wait_query(db, "SELECT count(*) FROM jobs WHERE state = 'succeeded'", acked, 30), acked);
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT count(*) FROM jobs"), acked);
    assert_int_equal(flh_stop(&d), 0);
    flh_pg_stop(&own);
    pg = shared;
}

/* busy_and_idle fills one node's only slot with a minute of sleep (whichever node claims it):
 * *busy is that node, *idle the other; the sleeping job's id into id. */
static void busy_and_idle(flh_daemon *a, flh_daemon *b, const char *db, flh_daemon **busy, flh_daemon **idle,
                          const char **idle_name, char *id, size_t idlen)
{
    char sql[200];

    assert_int_equal(submit(a, "t", "60", NULL, id, idlen), 202);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND state = 'running'", id);
    assert_int_equal(wait_query(db, sql, 1, 10), 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND owner = 'a'", id);
    long on_a = flh_pg_query_long(pg, db, sql);
    *busy = on_a ? a : b;
    *idle = on_a ? b : a;
    *idle_name = on_a ? "b" : "a";
}

/* DELETE through the node that does not run the job: the store tells the owner, whose
 * scheduler stops it as its own DELETE would; 202 (being stopped), and the job ends cancelled
 * after its first attempt (a minute of sleep: without the stop it would still run). */
static void test_cancel_across_nodes(void **state)
{
    (void)state;
    flh_daemon a, b, *busy, *idle;
    const char *idle_name;
    char db[64], id[32], path[64], sql[200];
    json_t *body = NULL;

    start_two(&a, &b, db, sizeof db, "[workers]\ncount = 1\n");
    busy_and_idle(&a, &b, db, &busy, &idle, &idle_name, id, sizeof id);
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    assert_int_equal(flh_http(idle, "DELETE", path, &body), 202);
    json_decref(body);
    json_t *job = flh_wait_terminal(idle, id, 20000);
    assert_non_null(job);
    assert_string_equal(json_string_value(json_object_get(job, "state")), "cancelled");
    json_decref(job);
    assert_int_equal(flh_metric(busy, "fling_pg_remote_stops_total"), 1);
    assert_int_equal(flh_metric(idle, "fling_pg_remote_stops_total"), 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND owner <> '%s' AND attempts = 1", id,
             idle_name);
    assert_int_equal(flh_pg_query_long(pg, db, sql), 1);
    /* a cancel of an ended job is still refused, wherever it is asked */
    assert_int_equal(flh_http(busy, "DELETE", path, &body), 409);
    json_decref(body);
    assert_int_equal(flh_stop(&a), 0);
    assert_int_equal(flh_stop(&b), 0);
}

/* DELETE of a job whose node was killed, before any node re-queued it: it runs nowhere, so it
 * is cancelled at once (200), not refused until the sweep. Type t is paused on the live node
 * so that, should its sweep come first, the job waits queued (also a 200) instead of
 * starting again. */
static void test_cancel_of_dead_nodes_job(void **state)
{
    (void)state;
    flh_daemon a, b, *busy, *idle;
    const char *idle_name;
    char db[64], id[32], path[64], sql[200];
    json_t *body = NULL;

    start_two(&a, &b, db, sizeof db, "[workers]\ncount = 1\n");
    busy_and_idle(&a, &b, db, &busy, &idle, &idle_name, id, sizeof id);
    assert_int_equal(flh_http(idle, "POST", "/v1/types/t/pause", NULL), 200);
    flh_kill(busy, SIGKILL);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
             " AND classid = 1718382183 AND objsubid = 2"
             " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())");
    assert_int_equal(wait_query(db, sql, 1, 10), 1);   /* the killed node's session is gone */
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    assert_int_equal(flh_http(idle, "DELETE", path, &body), 200);
    assert_string_equal(json_string_value(json_object_get(body, "state")), "cancelled");
    json_decref(body);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND state = 'cancelled' AND attempts = 1", id);
    assert_int_equal(flh_pg_query_long(pg, db, sql), 1);
    assert_int_equal(flh_stop(idle), 0);
    flh_rmdir(busy->dir);
}

/* A server that stops answering (its writer's backend frozen with SIGSTOP: the kernel still
 * acknowledges the statement) is cut off after statement_timeout plus the slack: the submit
 * waiting for it answers 503 instead of hanging. Once the backend runs again it sees its
 * client gone and ends, the node's lock with it, and the node takes submits again. */
static void test_frozen_server_answers_503(void **state)
{
    (void)state;
    flh_daemon d;
    char db[64], conf[1024], sql[300];
    int status = 0;

    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    /* one writer: with two, a plain submit that came while the first waits on the frozen
     * backend (on the second's tick SWEEP, say) commits on the second, as it should */
    node_conf(conf, sizeof conf, db, "f", "[store]\nstatement_timeout = 1\nwriters = 1\n");
    assert_int_equal(flh_start(&d, conf), 0);
    assert_int_equal(submit(&d, "noop", "", NULL, NULL, 0), 202);
    /* the writer's backend: the session that holds the node's lock */
    snprintf(sql, sizeof sql, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 1718382183"
             " AND objid = (hashtext('f')::bigint & 4294967295)::oid");
    long pid = flh_pg_query_long(pg, db, sql);
    assert_true(pid > 0);
    assert_int_equal(kill((pid_t)pid, SIGSTOP), 0);
    double t0 = flh_now();
    status = submit(&d, "noop", "", NULL, NULL, 0);   /* the client gives up after 10 s */
    double took = flh_now() - t0;
    kill((pid_t)pid, SIGCONT);
    assert_int_equal(status, 503);
    assert_true(took < 8);
    assert_true(flh_log_count(&d, "PostgreSQL has not answered") >= 1);
    status = 0;
    for (double end = flh_now() + 20; flh_now() < end && status != 202; usleep(200000))
        status = submit(&d, "noop", "", NULL, NULL, 0);
    assert_int_equal(status, 202);
    assert_int_equal(flh_stop(&d), 0);
}

/* sse_read reads the event stream on fd until found says what arrived (buf, a string) holds
 * what it looks for, or secs pass: 1 if it did. */
static int sse_read(int fd, int (*found)(const char *buf, void *arg), void *arg, double secs)
{
    static char buf[1 << 16];
    size_t len = 0;

    for (double end = flh_now() + secs; flh_now() < end;) {
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, 100) < 0)
            return 0;
        if (!p.revents)
            continue;
        if (len == sizeof buf - 1)
            len = 0;   /* frames of other jobs: the one wanted comes later */
        ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (k <= 0)
            return 0;
        len += (size_t)k;
        buf[len] = '\0';
        if (found(buf, arg))
            return 1;
    }
    return 0;
}

/* A frame of one event of one job, and the event id it came with (into seq). */
typedef struct frame_want {
    char ev_line[64], id_field[48];
    char seq[32];
} frame_want;

static int frame_found(const char *buf, void *arg)
{
    frame_want *w = arg;

    for (const char *f = strstr(buf, w->ev_line); f; f = strstr(f + 1, w->ev_line)) {
        const char *frame_end = strstr(f, "\n\n");
        if (!frame_end || !memmem(f, (size_t)(frame_end - f), w->id_field, strlen(w->id_field)))
            continue;
        const char *head = f > buf ? f - 1 : f;   /* the frame's "id: SEQ" line is the one before */
        while (head > buf && head[-1] != '\n')
            head--;
        if (sscanf(head, "id: %31[0-9]", w->seq) != 1)
            w->seq[0] = '\0';
        return 1;
    }
    return 0;
}

static int text_found(const char *buf, void *arg)
{
    return strstr(buf, arg) != NULL;
}

/* sse_until reads the event stream on fd until a frame of event for job id arrived, or secs
 * pass: 1 if it did, with its event id into seq (seqlen bytes; NULL: not wanted). */
static int sse_until(int fd, const char *event, const char *id, double secs, char *seq, size_t seqlen)
{
    frame_want w;

    snprintf(w.ev_line, sizeof w.ev_line, "event: %s\n", event);
    snprintf(w.id_field, sizeof w.id_field, "\"id\":\"%s\"", id);
    int ok = sse_read(fd, frame_found, &w, secs);
    if (ok && seq)
        snprintf(seq, seqlen, "%s", w.seq);
    return ok;
}

/* open_stream opens GET /v1/events on d, resuming after event id last (NULL: from now): the fd. */
static int open_stream(flh_daemon *d, const char *last)
{
    char get[200];
    int fd = flh_connect_tcp(d->port);
    int n = snprintf(get, sizeof get, "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s\r\n",
                     last ? "Last-Event-ID: " : "", last ? last : "", last ? "\r\n" : "");

    assert_true(fd >= 0);
    assert_int_equal(flh_send_all(fd, get, (size_t)n), 0);
    return fd;
}

/* mirrored_as waits up to secs for Redis (c) to hold state in key's hash: 1 once it does. */
static int mirrored_as(redisContext *c, const char *key, const char *state, double secs)
{
    int ok = 0;

    for (double end = flh_now() + secs; !ok; usleep(50000)) {
        redisReply *r = redisCommand(c, "HGET %s state", key);
        ok = r && r->type == REDIS_REPLY_STRING && strcmp(r->str, state) == 0;
        freeReplyObject(r);
        if (flh_now() >= end)
            break;
    }
    return ok;
}

/* start_mirrored starts a Redis server and two nodes a and b of one slot each on a new
 * database (its name into db), each mirroring to it under a prefix of its own (ma:, mb:), so
 * that what one node's mirror wrote is told apart. */
static void start_mirrored(flh_daemon *a, flh_daemon *b, flh_redis *redis, char *db, size_t len)
{
    char ca[1024], cb[1024], more[512];

    assert_int_equal(flh_redis_start(redis, NULL), 0);
    assert_int_equal(flh_pg_create_db(pg, db, len), 0);
    snprintf(more, sizeof more, "[workers]\ncount = 1\n[redis]\nurl = %s\nprefix = ma:\n", redis->url);
    node_conf(ca, sizeof ca, db, "a", more);
    snprintf(more, sizeof more, "[workers]\ncount = 1\n[redis]\nurl = %s\nprefix = mb:\n", redis->url);
    node_conf(cb, sizeof cb, db, "b", more);
    assert_int_equal(flh_start(a, ca), 0);
    assert_int_equal(flh_start(b, cb), 0);
}

/* stop_mirrored stops the two nodes and the Redis server of start_mirrored (or the like). */
static void stop_mirrored(flh_daemon *a, flh_daemon *b, flh_redis *redis)
{
    assert_int_equal(flh_stop(a), 0);
    assert_int_equal(flh_stop(b), 0);
    flh_redis_stop(redis);
}

/* A job that runs on the idle node, followed from the busy one: a client attached to its submit
 * (Prefer: wait) gets its 200 when it ends there, the busy node's event stream carries its
 * start and end, and the busy node's Redis mirror says succeeded. */
static void test_changes_across_nodes(void **state)
{
    (void)state;
    flh_daemon a, b, *busy, *idle;
    flh_redis redis;
    const char *idle_name;
    char db[64], id[32], sql[200], key[80];

    start_mirrored(&a, &b, &redis, db, sizeof db);
    busy_and_idle(&a, &b, db, &busy, &idle, &idle_name, id, sizeof id);

    int fd = open_stream(busy, NULL);
    assert_int_equal(submit(busy, "t", "0.5", "Prefer: wait=20\r\n", id, sizeof id), 200);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND state = 'succeeded' AND owner = '%s'", id,
             idle_name);
    assert_int_equal(flh_pg_query_long(pg, db, sql), 1);
    assert_true(sse_until(fd, "succeeded", id, 10, NULL, 0));
    close(fd);

    redisContext *c = flh_redis_connect(&redis, 0);
    assert_non_null(c);
    snprintf(key, sizeof key, "%sjob:%s", busy == &a ? "ma:" : "mb:", id);
    assert_true(mirrored_as(c, key, "succeeded", 10));
    redisFree(c);
    /* the idle node started and ended the job: two changes at least, read at least once */
    assert_true(flh_metric(busy, "fling_pg_remote_changes_total") >= 2);
    assert_true(flh_metric(busy, "fling_pg_remote_reads_total") >= 1);
    stop_mirrored(&a, &b, &redis);
}

/* The node whose sweep re-queues a killed node's job tells its own Redis mirror so: the other
 * nodes hear it from the sweep's notification, the sweeping node does not hear its own. Both
 * nodes' one slot is busy, so the job stays queued for seconds before it runs again. */
static void test_mirror_hears_its_own_sweep(void **state)
{
    (void)state;
    flh_daemon a, b;
    flh_redis redis;
    char db[64], id[32], sql[200], key[80];

    start_mirrored(&a, &b, &redis, db, sizeof db);
    assert_int_equal(submit(&a, "t", "6", NULL, id, sizeof id), 202);
    assert_int_equal(submit(&a, "t", "6", NULL, id, sizeof id), 202);
    assert_int_equal(wait_query(db, "SELECT count(DISTINCT owner) FROM jobs WHERE state = 'running'", 2, 10), 2);
    snprintf(id, sizeof id, "%ld", flh_pg_query_long(pg, db, "SELECT id FROM jobs WHERE owner = 'a'"));
    redisContext *c = flh_redis_connect(&redis, 0);
    assert_non_null(c);
    snprintf(key, sizeof key, "mb:job:%s", id);
    assert_true(mirrored_as(c, key, "running", 10));
    flh_kill(&a, SIGKILL);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND state = 'queued'", id);
    assert_int_equal(wait_query(db, sql, 1, 4), 1);
    assert_true(mirrored_as(c, key, "queued", 4));   /* b's slot frees only after 6 s */
    redisFree(c);
    assert_int_equal(flh_stop(&b), 0);
    flh_redis_stop(&redis);
    flh_rmdir(a.dir);
}

/* A node that follows nothing (no mirror, no event stream, no attached client) is sent none of
 * the other node's changes: the other node's commits notify nothing. An event stream opened on
 * it makes it follow, the other node hears so and notifies, and the stream gets its changes
 * from then on; once the stream is gone the other node stops notifying (within its 6 s). A
 * client attached to it gets its 200 when the job ends on the other node, also the first one,
 * whose job may end before the other node heard that this one follows (read again 0.5 s
 * after following started). */
static void test_changes_nobody_follows(void **state)
{
    (void)state;
    flh_daemon a, b, *busy, *idle;
    const char *idle_name;
    char db[64], id[32];
    static const char heard[] = "fling_pg_remote_changes_total", reads[] = "fling_pg_remote_reads_total";

    start_two(&a, &b, db, sizeof db, "[workers]\ncount = 1\n");
    busy_and_idle(&a, &b, db, &busy, &idle, &idle_name, id, sizeof id);   /* the busy node only follows */
    assert_int_equal(flh_metric(busy, "fling_pg_following"), 0);
    /* a node notifies its changes for 6 s after its listener listens, until it knows better */
    assert_int_equal(flh_wait_metric_down(idle, "fling_pg_followed", 0, 10), 0);
    long heard0 = flh_metric(busy, heard);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(submit(idle, "noop", "x", NULL, id, sizeof id), 202);
        json_decref(flh_wait_terminal(idle, id, 10000));
    }
    usleep(200 * 1000);   /* what would have been notified has arrived */
    assert_int_equal(flh_metric(busy, heard), heard0);
    assert_int_equal(flh_metric(busy, reads), 0);

    int fd = open_stream(busy, NULL);
    assert_int_equal(flh_wait_metric(busy, "fling_event_streams_open", 1, 10), 1);
    assert_int_equal(flh_wait_metric(busy, "fling_pg_following", 1, 5), 1);
    assert_int_equal(flh_wait_metric(idle, "fling_pg_followed", 1, 5), 1);
    assert_int_equal(submit(idle, "noop", "x", NULL, id, sizeof id), 202);
    assert_true(sse_until(fd, "succeeded", id, 10, NULL, 0));
    close(fd);
    assert_true(flh_metric(busy, reads) >= 1);
    assert_int_equal(flh_wait_metric_down(busy, "fling_event_streams_open", 0, 10), 0);
    assert_int_equal(flh_wait_metric_down(busy, "fling_pg_following", 0, 5), 0);
    assert_int_equal(flh_wait_metric_down(idle, "fling_pg_followed", 0, 10), 0);
    long heard1 = flh_metric(busy, heard);
    assert_int_equal(submit(idle, "noop", "x", NULL, id, sizeof id), 202);
    json_decref(flh_wait_terminal(idle, id, 10000));
    usleep(200 * 1000);
    assert_int_equal(flh_metric(busy, heard), heard1);

    /* attached on the busy node, run on the idle one */
    long streamed = flh_metric(busy, reads);
    for (int i = 0; i < 5; i++)
        assert_int_equal(submit(busy, "noop", "x", "Prefer: wait=10\r\n", id, sizeof id), 200);
    assert_true(flh_metric(busy, reads) > streamed);
    assert_int_equal(flh_metric(busy, "fling_pg_following"), 1);   /* for 30 s after the last */
    assert_int_equal(flh_stop(&a), 0);
    assert_int_equal(flh_stop(&b), 0);
}

/* end_unheard keeps both nodes' listeners away (new connections to database db refused, the
 * listeners' ended; the connections already open go on) while job run_id ends, successfully,
 * on node idle; listeners_back lets them connect again. */
static void end_unheard(const char *db, flh_daemon *idle, const char *run_id)
{
    char sql[240];

    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS false", db);
    assert_int_equal(flh_pg_exec(pg, "postgres", sql), 0);
    snprintf(sql, sizeof sql, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE datname = '%s' AND application_name = 'flingd listener'", db);
    assert_int_equal(flh_pg_query_long(pg, "postgres", sql), 2);
    json_t *job = flh_wait_terminal(idle, run_id, 10000);
    assert_string_equal(json_string_value(json_object_get(job, "state")), "succeeded");
    json_decref(job);
    usleep(300000);
}

static void listeners_back(const char *db)
{
    char sql[120];

    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS true", db);
    assert_int_equal(flh_pg_exec(pg, "postgres", sql), 0);
}

/* A client attached to a node whose listener is away while its job ends on another node gets
 * its 200 as soon as the listener is back, not when its wait runs out: the node reads the jobs
 * its clients wait on again. The listeners are kept away by refusing new connections to the
 * database (the connections already open go on) and ending theirs. */
static void test_attached_across_listener_loss(void **state)
{
    (void)state;
    flh_daemon a, b, *busy, *idle;
    const char *idle_name;
    char db[64], id[32], run_id[32], sql[240], reply[4096];

    start_two(&a, &b, db, sizeof db, "[workers]\ncount = 1\n");
    busy_and_idle(&a, &b, db, &busy, &idle, &idle_name, id, sizeof id);
    int fd = flh_connect_tcp(busy->port);
    size_t len;
    char *req = flh_submit_req("t", "3", 1, "Prefer: wait=30\r\n", &len);
    assert_true(fd >= 0 && req);
    assert_int_equal(flh_send_all(fd, req, len), 0);
    free(req);
    snprintf(sql, sizeof sql, "SELECT max(id) FROM jobs WHERE state = 'running' AND owner = '%s'", idle_name);
    long run = -1;
    for (double end = flh_now() + 10; flh_now() < end && (run = flh_pg_query_long(pg, db, sql)) <= 0; usleep(20000))
        ;
    assert_true(run > 0);
    snprintf(run_id, sizeof run_id, "%ld", run);

    end_unheard(db, idle, run_id);
    listeners_back(db);
    double t0 = flh_now();
    assert_int_equal(flh_read_reply(fd, reply, sizeof reply, 15000), 200);
    assert_true(flh_now() - t0 < 5);
    assert_non_null(strstr(reply, "\"state\":\"succeeded\""));
    close(fd);
    assert_int_equal(flh_stop(&a), 0);
    assert_int_equal(flh_stop(&b), 0);
}

/* A node's Redis mirror whose listener was away while a job ended on another node: the job's
 * hash still says running then (the change went unheard), and says succeeded within seconds
 * of the listener being back, the mirror having caught up from the store. */
static void test_mirror_across_listener_loss(void **state)
{
    (void)state;
    flh_daemon a, b, *busy, *idle;
    flh_redis redis;
    const char *idle_name;
    char db[64], id[32], run_id[32], key[80];

    start_mirrored(&a, &b, &redis, db, sizeof db);
    busy_and_idle(&a, &b, db, &busy, &idle, &idle_name, id, sizeof id);
    assert_int_equal(submit(busy, "t", "3", NULL, run_id, sizeof run_id), 202);   /* runs on the idle node */
    redisContext *c = flh_redis_connect(&redis, 0);
    assert_non_null(c);
    snprintf(key, sizeof key, "%sjob:%s", busy == &a ? "ma:" : "mb:", run_id);
    assert_true(mirrored_as(c, key, "running", 10));

    end_unheard(db, idle, run_id);
    assert_true(mirrored_as(c, key, "running", 0));   /* unheard */
    listeners_back(db);
    assert_true(mirrored_as(c, key, "succeeded", 5));
    redisReply *r = redisCommand(c, "HGET %scounts running", busy == &a ? "ma:" : "mb:");
    assert_true(r && r->type == REDIS_REPLY_STRING);
    assert_string_equal(r->str, "1");   /* the minute of sleep alone: the counts were reset too */
    freeReplyObject(r);
    redisFree(c);
    stop_mirrored(&a, &b, &redis);
}

/* On a shared database a node's mirror catches up once its listener listens and the other
 * nodes have heard that it follows, not at its connection to Redis: a change that no node
 * notified it of (the test's own session writes it), committed after the mirror connected, is
 * in Redis after the start's one catch-up. */
static void test_mirror_catches_up_after_listen(void **state)
{
    (void)state;
    flh_daemon a, b;
    flh_redis redis;
    char db[64], ca[1024], cb[1024], more[512], held[32], moved[32], key[80], sql[300];

    assert_int_equal(flh_redis_start(&redis, NULL), 0);
    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    node_conf(cb, sizeof cb, db, "b", "");
    assert_int_equal(flh_start(&b, cb), 0);
    assert_int_equal(flh_http(&b, "POST", "/v1/types/noop/pause", NULL), 200);
    assert_int_equal(submit(&b, "noop", "x", NULL, held, sizeof held), 202);
    assert_int_equal(submit(&b, "noop", "x", NULL, moved, sizeof moved), 202);

    snprintf(more, sizeof more, "[redis]\nurl = %s\nprefix = ma:\n", redis.url);
    node_conf(ca, sizeof ca, db, "a", more);
    assert_int_equal(flh_start(&a, ca), 0);
    double started = flh_now();
    assert_int_equal(flh_wait_metric(&a, "fling_redis_connected", 1, 10), 1);
    snprintf(sql, sizeof sql, "UPDATE jobs SET state = 'cancelled', finished_at = t, updated_at = t"
             " FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS t) AS now WHERE id = %s", moved);
    assert_int_equal(flh_pg_exec(pg, db, sql), 0);
    if (flh_now() - started > 0.4) {   /* too slow here to change it before the settle */
        stop_mirrored(&a, &b, &redis);
        skip();
    }
    redisContext *c = flh_redis_connect(&redis, 0);
    assert_non_null(c);
    snprintf(key, sizeof key, "ma:job:%s", moved);
    assert_true(mirrored_as(c, key, "cancelled", 10));
    snprintf(key, sizeof key, "ma:job:%s", held);
    assert_true(mirrored_as(c, key, "queued", 0));
    assert_int_equal(flh_log_count(&a, "mirror in sync with the store (2 job(s) read, 2 re-applied"), 1);
    redisFree(c);
    stop_mirrored(&a, &b, &redis);
}

/* An event stream is told when it misses other nodes' changes, with a gap comment in their
 * place: one open while its node's listener was away gets it once the listener is back (and
 * `fling watch` says so in one line on stderr, and goes on); one
 * resumed (Last-Event-ID) from before a time when no stream was open on its node, and the
 * node so did not read the other nodes' changes, gets it in its replay. */
static void test_stream_gaps(void **state)
{
    (void)state;
    flh_daemon a, b;
    char db[64], id[32], seq[32], sql[240];

    start_two(&a, &b, db, sizeof db, "");
    int fd = open_stream(&a, NULL);
    assert_int_equal(flh_wait_metric(&a, "fling_pg_following", 1, 10), 1);
    assert_int_equal(flh_wait_metric(&b, "fling_pg_followed", 1, 5), 1);
    assert_int_equal(submit(&b, "noop", "x", NULL, id, sizeof id), 202);
    assert_true(sse_until(fd, "succeeded", id, 10, seq, sizeof seq));
    assert_true(seq[0]);
    /* type t alone: a late read of the noop job above (a node may read a change twice) must
     * not end the watch before the gap */
    char *watch[] = { "fling", "watch", "--url", a.url, "--type", "t", "--count", "1", NULL };
    flh_child ch;
    flh_cli r;
    assert_int_equal(flh_cli_spawn(&ch, watch, NULL), 0);
    if (flh_wait_metric(&a, "fling_event_streams_open", 2, 10) != 2) {
        flh_cli_finish(&ch, &r, 1000);
        fail_msg("fling watch did not follow the stream: exit %d, stderr: %s", r.status, r.err);
    }

    snprintf(sql, sizeof sql, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE datname = '%s' AND application_name = 'flingd listener'", db);
    assert_int_equal(flh_pg_query_long(pg, "postgres", sql), 2);
    assert_true(sse_read(fd, text_found, ": gap: other nodes' changes while this node's listener was away", 10));
    /* fling watch says so on stderr and goes on: the next event is its --count 1 */
    assert_int_equal(flh_wait_metric(&b, "fling_pg_followed", 1, 10), 1);
    assert_int_equal(submit(&b, "t", "0", NULL, id, sizeof id), 202);
    assert_int_equal(flh_cli_finish(&ch, &r, 10000), 0);
    assert_int_equal(r.status, 0);
    char line_of[48];
    snprintf(line_of, sizeof line_of, " %s t ", id);   /* TIME ID TYPE EVENT ... */
    assert_non_null(strstr(r.out, line_of));
    assert_non_null(strstr(r.err, "fling: watch: gap: other nodes' changes while this node's listener was away"));
    assert_string_equal(strchr(r.err, '\n'), "\n");   /* that one line alone */
    close(fd);
    assert_int_equal(flh_wait_metric_down(&a, "fling_event_streams_open", 0, 10), 0);
    assert_int_equal(submit(&b, "noop", "x", NULL, id, sizeof id), 202);   /* not read on a */
    json_decref(flh_wait_terminal(&b, id, 10000));

    fd = open_stream(&a, seq);
    assert_true(sse_read(fd, text_found, ": gap: other nodes' changes from here until a stream", 5));
    close(fd);
    fd = open_stream(&a, NULL);   /* a stream from now on has no gap to be told of */
    assert_int_equal(submit(&b, "noop", "x", NULL, id, sizeof id), 202);
    assert_false(sse_read(fd, text_found, ": gap:", 2));
    close(fd);
    assert_int_equal(flh_stop(&a), 0);
    assert_int_equal(flh_stop(&b), 0);
}

/* readers_of counts the reader connections ([store] connections) open on database db. */
static long readers_of(const char *db)
{
    char sql[200];

    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'"
             " AND application_name = 'flingd reader'", db);
    return flh_pg_query_long(pg, db, sql);
}

/* get_state GETs job id on d: the HTTP status, and its state into state. */
static int get_state(flh_daemon *d, const char *id, char *state, size_t len)
{
    char path[64];
    json_t *body = NULL;
    int st;

    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    st = flh_http(d, "GET", path, &body);
    snprintf(state, len, "%s", st == 200 ? json_string_value(json_object_get(body, "state")) : "");
    json_decref(body);
    return st;
}

/* Three nodes with 1, 2 (the default) and 3 readers: each opens that many connections of its
 * own. A client attached to its submit on the node whose slot is busy gets its 200 when the
 * job ends on another node (the other node's changes are read on the readers), and every node
 * answers a GET of a job running elsewhere. While a session of the test holds the jobs table
 * against writes, so that every node's writer waits, GET, LIST and /metrics still answer:
 * they are served by the readers, not behind the writer's group. */
static void test_readers_across_nodes(void **state)
{
    (void)state;
    flh_daemon n[3], *busy = NULL;
    char db[64], conf[3][1024], id[32], run_id[32], sql[240], st[32], url[160];
    const char *confs[3];
    static const char *const more[3] = {
        "[workers]\ncount = 1\n[store]\nconnections = 1\n", "[workers]\ncount = 1\n",
        "[workers]\ncount = 1\n[store]\nconnections = 3\n",
    };

    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    for (int i = 0; i < 3; i++) {
        char name[8];
        snprintf(name, sizeof name, "r%d", i);
        /* node_conf's [type.noop] closes [store]: the more text opens it again */
        node_conf(conf[i], sizeof conf[i], db, name, more[i]);
        confs[i] = conf[i];
    }
    assert_int_equal(flh_start_many(n, 3, confs), 0);
    long want = 1 + 2 + 3;
    for (double end = flh_now() + 10; flh_now() < end && readers_of(db) != want; usleep(50000))
        ;
    assert_int_equal(readers_of(db), want);

    /* one node's only slot is busy for a minute; attach to it */
    assert_int_equal(submit(&n[0], "t", "60", NULL, id, sizeof id), 202);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND state = 'running'", id);
    assert_int_equal(wait_query(db, sql, 1, 10), 1);
    for (int i = 0; i < 3; i++) {
        snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND owner = 'r%d'", id, i);
        if (flh_pg_query_long(pg, db, sql) == 1)
            busy = &n[i];
    }
    assert_non_null(busy);
    for (int i = 0; i < 3; i++) {   /* every node reads the running job, wherever it runs */
        assert_int_equal(get_state(&n[i], id, st, sizeof st), 200);
        assert_string_equal(st, "running");
    }
    assert_int_equal(submit(busy, "t", "0.5", "Prefer: wait=20\r\n", run_id, sizeof run_id), 200);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND state = 'succeeded'"
             " AND owner <> 'r%d'", run_id, (int)(busy - n));
    assert_int_equal(flh_pg_query_long(pg, db, sql), 1);
    assert_true(flh_metric(busy, "fling_pg_remote_reads_total") >= 1);

    /* every writer waits on the table lock; the readers do not */
    flh_pg_url(pg, db, url, sizeof url);
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PQclear(PQexec(c, "BEGIN"));
    PGresult *r = PQexec(c, "LOCK TABLE jobs IN EXCLUSIVE MODE");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    flh_daemon *other = busy == &n[0] ? &n[1] : &n[0];
    int fd = flh_connect_tcp(other->port);   /* a submit whose group waits for the lock */
    size_t len;
    char *req = flh_submit_req("noop", "", 0, NULL, &len);
    assert_true(fd >= 0);
    assert_int_equal(flh_send_all(fd, req, len), 0);
    free(req);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'"
             " AND wait_event_type = 'Lock'", db);
    long waiting = 0;
    for (double end = flh_now() + 10; flh_now() < end && waiting < 1; usleep(20000))
        waiting = flh_pg_query_long(pg, db, sql);
    assert_true(waiting >= 1);
    for (int i = 0; i < 3; i++) {
        json_t *body = NULL;
        double t0 = flh_now();
        assert_int_equal(get_state(&n[i], run_id, st, sizeof st), 200);
        assert_string_equal(st, "succeeded");
        assert_int_equal(flh_http(&n[i], "GET", "/v1/jobs?limit=5", &body), 200);
        json_decref(body);
        /* the queue depth of /v1/types and /metrics (a COUNT each) */
        assert_int_equal(flh_http(&n[i], "GET", "/v1/types", &body), 200);
        json_t *counts = json_object_get(json_array_get(json_object_get(body, "types"), 0), "counts");
        assert_int_equal(json_integer_value(json_object_get(counts, "running")), 1);
        json_decref(body);
        assert_int_equal(flh_metric(&n[i], "fling_jobs{type=\"t\",state=\"queued\"}"), 0);
        assert_true(flh_now() - t0 < 5);
    }
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
    char reply[4096];
    assert_int_equal(flh_read_reply(fd, reply, sizeof reply, 10000), 202);   /* its group went on */
    close(fd);
    for (int i = 0; i < 3; i++)
        assert_int_equal(flh_stop(&n[i]), 0);
}

/* check_config runs flingd --check-config on text: its exit status, and its stderr in err. */
static int check_config(const char *text, char *err, size_t errlen)
{
    char dir[] = "/tmp/flingpgconf.XXXXXX", path[64], log[96];
    int st = -1;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/flingd.conf", dir);
    snprintf(log, sizeof log, "%s/err", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        freopen(log, "w", stderr);
        execl(FLINGD_PATH, FLINGD_PATH, "-c", path, "--check-config", (char *)NULL);
        _exit(127);
    }
    waitpid(pid, &st, 0);
    f = fopen(log, "r");
    size_t n = f ? fread(err, 1, errlen - 1, f) : 0;
    err[n] = '\0';
    if (f)
        fclose(f);
    flh_remove_dir(dir);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_config_errors(void **state)
{
    (void)state;
    char err[1024];

    assert_int_not_equal(check_config("[store]\nbackend = postgres\n", err, sizeof err), 0);
    assert_non_null(strstr(err, "needs url"));
    assert_int_not_equal(check_config("[store]\nbackend = postgres\nurl = host='unterminated\n", err, sizeof err), 0);
    assert_non_null(strstr(err, "[store] url"));
    assert_int_not_equal(check_config("[server]\nlisten = 127.0.0.1:0\n[store]\nbackend = postgres\n"
                                      "url = postgresql://127.0.0.1/x\n", err, sizeof err), 0);
    assert_non_null(strstr(err, "[store] node"));
    assert_int_not_equal(check_config("[store]\nurl = postgresql://127.0.0.1/x\n", err, sizeof err), 0);
    assert_non_null(strstr(err, "takes no url"));
    assert_int_equal(check_config("[store]\nbackend = postgres\nurl = host=127.0.0.1 dbname=x\nnode = n1\n", err,
                                  sizeof err), 0);
    /* without node, the default hostname:port needs a real port */
    assert_int_equal(check_config("[server]\nlisten = 127.0.0.1:7999\n[store]\nbackend = postgres\n"
                                  "url = postgresql://u:secret@127.0.0.1/x\n", err, sizeof err), 0);
    assert_int_not_equal(check_config("[store]\nbackend = postgres\nurl = x\nnode = has space\n", err, sizeof err), 0);
    assert_non_null(strstr(err, "visible ASCII"));
    assert_int_equal(check_config("[store]\nbackend = postgres\nurl = host=127.0.0.1 dbname=x\nnode = n1\nconnections = 64\n", err,
                                  sizeof err), 0);
    assert_int_not_equal(check_config("[store]\nbackend = postgres\nurl = host=127.0.0.1 dbname=x\nnode = n1\nconnections = 0\n", err,
                                      sizeof err), 0);
    assert_non_null(strstr(err, "connections"));
}

/* paused_on returns d's "paused" for type from GET /v1/types: 1, 0, or -1 if not there. */
static int paused_on(const flh_daemon *d, const char *type)
{
    json_t *body = NULL, *t;
    size_t i;
    int v = -1;

    if (flh_http(d, "GET", "/v1/types", &body) == 200)
        json_array_foreach(json_object_get(body, "types"), i, t)
            if (json_is_string(json_object_get(t, "name")) &&
                strcmp(json_string_value(json_object_get(t, "name")), type) == 0)
                v = json_is_true(json_object_get(t, "paused"));
    json_decref(body);
    return v;
}

static int wait_paused(const flh_daemon *d, const char *type, int want, double secs)
{
    int v = -1;
    for (double end = flh_now() + secs; flh_now() < end; usleep(20000))
        if ((v = paused_on(d, type)) == want)
            break;
    return v;
}

/* A pause through one node pauses the type on every node, as a pause on one SQLite node does:
 * the other node's GET /v1/types says so within moments, submits of the type wake no node, a
 * job submitted to it waits queued, and a resume there runs them all. A node whose listener was away when a pause committed reads the
 * paused types again once it listens again. */
static void test_pause_applies_to_every_node(void **state)
{
    (void)state;
    flh_daemon a, b;
    char db[64], id[32], sql[256];

    start_two(&a, &b, db, sizeof db, "");
    assert_int_equal(flh_http(&a, "POST", "/v1/types/noop/pause", NULL), 200);
    assert_int_equal(wait_paused(&b, "noop", 1, 5), 1);
    assert_int_equal(flh_wait_metric_down(&a, "fling_pg_followed", 0, 10), 0);   /* see nobody_follows */
    long heard = flh_metric(&b, "fling_pg_notifications_total");
    for (int i = 0; i < 5; i++)   /* a paused type's submits wake no node (and nobody follows) */
        assert_int_equal(submit(&a, "noop", "x", NULL, NULL, 0), 202);
    usleep(300 * 1000);
    assert_int_equal(flh_metric(&b, "fling_pg_notifications_total"), heard);
    assert_int_equal(submit(&b, "noop", "x", NULL, id, sizeof id), 202);
    usleep(500 * 1000);   /* neither node may start it meanwhile */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND state = 'queued' AND attempts = 0", id);
    assert_int_equal(flh_pg_query_long(pg, db, sql), 1);
    assert_int_equal(flh_http(&b, "POST", "/v1/types/noop/resume", NULL), 200);
    assert_int_equal(wait_paused(&a, "noop", 0, 5), 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND state = 'succeeded'", id);
    assert_int_equal(wait_query(db, sql, 1, 10), 1);
    assert_int_equal(wait_query(db, "SELECT count(*) FROM jobs WHERE state = 'succeeded'", 6, 10), 6);

    /* Both listeners cut: they listen again a second later, after this pause committed. */
    snprintf(sql, sizeof sql, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE datname = '%s' AND application_name = 'flingd listener'", db);
    assert_int_equal(flh_pg_query_long(pg, db, sql), 2);
    assert_int_equal(flh_http(&a, "POST", "/v1/types/noop/pause", NULL), 200);
    assert_int_equal(wait_paused(&b, "noop", 1, 10), 1);
    assert_int_equal(flh_stop(&a), 0);
    assert_int_equal(flh_stop(&b), 0);
}

int main(void)
{
    if (!flh_pg_available()) {
        printf("SKIP: PostgreSQL 15 is not installed (%s); scripts/install-deps --test installs it\n", FLH_PG_BIN);
        return 77;
    }
    if (!(pg = flh_pg_shared()))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_migrate_once),
        cmocka_unit_test(test_idempotency_across_nodes),
        cmocka_unit_test(test_three_nodes_run_once),
        cmocka_unit_test(test_restart_requeues_own_orphans_only),
        cmocka_unit_test(test_idle_node_takes_the_job),
        cmocka_unit_test(test_priority_across_nodes),
        cmocka_unit_test(test_claim_batch_in_priority_order),
        cmocka_unit_test(test_killed_node_jobs_run_elsewhere),
        cmocka_unit_test(test_callbacks_across_nodes),
        cmocka_unit_test(test_terminated_session_is_fenced),
        cmocka_unit_test(test_lockless_node_acks_nothing),
        cmocka_unit_test(test_server_restart),
        cmocka_unit_test(test_frozen_server_answers_503),
        cmocka_unit_test(test_cancel_across_nodes),
        cmocka_unit_test(test_cancel_of_dead_nodes_job),
        cmocka_unit_test(test_pause_applies_to_every_node),
        cmocka_unit_test(test_changes_across_nodes),
        cmocka_unit_test(test_mirror_hears_its_own_sweep),
        cmocka_unit_test(test_changes_nobody_follows),
        cmocka_unit_test(test_attached_across_listener_loss),
        cmocka_unit_test(test_mirror_across_listener_loss),
        cmocka_unit_test(test_mirror_catches_up_after_listen),
        cmocka_unit_test(test_stream_gaps),
        cmocka_unit_test(test_readers_across_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
