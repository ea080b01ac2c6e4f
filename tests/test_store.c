/* test_store.c — daemon/store.c on real SQLite files in a mkdtemp directory: durability across
 * a re-open, migrations and the schema version guard, every op kind and its results, claim
 * order, crash recovery, a failed group (fault seam), callbacks that push, close draining.
 * The store is driven as the daemon drives it, minus libev: notify() signals a condition
 * variable, the test thread waits on it and calls fl_store_reap. */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "store.h"

extern const int fl_migrations_count;

/* Longest a test waits for the writer: a group is milliseconds; this only stops a hang. */
#define WAIT_MS 10000
/* How long one wait for notify() may sleep before the test looks again. */
#define POLL_MS 50
#define ERR_LEN 256
#define PATH_LEN 256
#define EVENTS_LEN 512
/* A fixed "now" keeps times exact: the store takes every time from its ops, except updated_at
 * (its own clock, which no test compares exactly). */
#define NOW INT64_C(1795428000000)

typedef struct harness {
    char dir[64];
    char path[PATH_LEN];
    fl_store *store;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned notified;           /* under mu: notify() calls so far */
    void (*on_change)(const fl_job *job, fl_store_event ev, void *udata);   /* at open */
    char events[EVENTS_LEN];     /* record_event: "id:name " for each event, in order */
    int readers;                 /* reader threads at open (0: every read on the writer) */
} harness;

/* ---- harness ------------------------------------------------------------------------- */

static void notify_cb(void *arg)
{
    harness *h = arg;

    pthread_mutex_lock(&h->mu);
    h->notified++;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static int open_store(harness *h, char *err)
{
    const fl_store_options opt = { .path = h->path, .durability_full = 1, .readers = h->readers };
    const fl_store_hooks hooks = { .notify = notify_cb, .on_change = h->on_change, .udata = h };

    return fl_store_open(&h->store, &opt, &hooks, err, ERR_LEN);
}

/* open_path opens the default backend on path, without hooks. */
static int open_path(fl_store **s, const char *path, char *err, size_t errlen)
{
    const fl_store_options opt = { .path = path, .durability_full = 1 };

    return fl_store_open(s, &opt, NULL, err, errlen);
}

static void reopen(harness *h)
{
    char err[ERR_LEN] = "";

    fl_store_close(h->store);
    h->store = NULL;
    assert_int_equal(open_store(h, err), 0);
}

static int setup(void **state)
{
    char err[ERR_LEN] = "";
    harness *h = calloc(1, sizeof(*h));

    if (!h)
        return -1;
    snprintf(h->dir, sizeof(h->dir), "/tmp/fl_test_store_XXXXXX");
    if (!mkdtemp(h->dir)) {
        free(h);
        return -1;
    }
    /* A nested path: open must create the missing directories. */
    snprintf(h->path, sizeof(h->path), "%s/var/db/fling.db", h->dir);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    *state = h;
    if (open_store(h, err)) {
        fprintf(stderr, "open: %s\n", err);
        return -1;
    }
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    harness *h = *state;
    int rc;

    fl_store_close(h->store);
    rc = nftw(h->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
    return rc;
}

/* settle reaps until every pushed op has had its callback, waiting on notify() between
 * reaps; fails the test after WAIT_MS. */
static void settle(harness *h)
{
    int64_t deadline = fl_job_now_ms() + WAIT_MS;
    struct timespec ts;
    unsigned seen;

    for (;;) {
        pthread_mutex_lock(&h->mu);
        seen = h->notified;
        pthread_mutex_unlock(&h->mu);
        fl_store_reap(h->store);
        if (fl_store_pending(h->store) == 0)
            return;
        assert_true(fl_job_now_ms() < deadline);
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&h->mu);
        if (h->notified == seen)
            pthread_cond_timedwait(&h->cv, &h->mu, &ts);
        pthread_mutex_unlock(&h->mu);
    }
}

static void count_cb(fl_store_op *op)
{
    (*(int *)op->udata)++;
}

/* check_row checks the row a FINISH or SET_STATUS returns (the job after the change) and
 * frees it, so the tests that reuse one op never leak it. */
static void check_row(fl_store_op *op)
{
    fl_job **row = op->kind == FL_STORE_FINISH ? &op->u.finish.job
                 : op->kind == FL_STORE_SET_STATUS ? &op->u.set_status.job : NULL;
    if (!row)
        return;
    if (op->result == 0 && op->answer == FL_STORE_OK) {
        assert_non_null(*row);
        assert_int_equal((*row)->id, op->kind == FL_STORE_FINISH ? op->u.finish.id : op->u.set_status.id);
        assert_true((*row)->updated_at > 0);
        if (op->kind == FL_STORE_FINISH)
            assert_int_equal((*row)->state, op->u.finish.o.state);
    } else {
        assert_null(*row);
    }
    fl_job_free(*row);
    *row = NULL;
}

/* run pushes op and waits until its callback ran once. */
static void run(harness *h, fl_store_op *op)
{
    int calls = 0;

    op->cb = count_cb;
    op->udata = &calls;
    fl_store_push(h->store, op);
    settle(h);
    assert_int_equal(calls, 1);
    check_row(op);
}

/* ---- job helpers ----------------------------------------------------------------------- */

typedef struct spec {
    const char *type, *key, *callback;
    const char *payload;
    size_t payload_len;
    int priority;
    fl_state state;
    int64_t run_at;
} spec;

static fl_job *make_job(const spec *sp)
{
    fl_job_sizes sz = { FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT,
                        FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT,
                        FL_JOB_ABSENT, FL_JOB_ABSENT };
    fl_job *job;

    sz.type = strlen(sp->type);
    if (sp->key)
        sz.idem_key = strlen(sp->key);
    if (sp->callback)
        sz.callback = strlen(sp->callback);
    sz.payload = sp->payload ? sp->payload_len : 0;
    job = fl_job_new(&sz);
    assert_non_null(job);
    memcpy(job->type, sp->type, sz.type);
    if (sp->key)
        memcpy(job->idem_key, sp->key, sz.idem_key);
    if (sp->callback)
        memcpy(job->callback, sp->callback, sz.callback);
    if (sp->payload)
        memcpy(job->payload, sp->payload, sp->payload_len);
    job->state = sp->state;
    job->priority = sp->priority;
    job->max_attempts = 3;
    job->timeout = 30;
    job->created_at = NOW;
    job->run_at = sp->run_at ? sp->run_at : NOW;
    return job;
}

static void submit_op(fl_store_op *op, fl_job *job)
{
    memset(op, 0, sizeof(*op));
    op->kind = FL_STORE_SUBMIT;
    op->u.submit.job = job;
}

/* submit_result submits a new job made from sp: the op's result, and the job's id in *id
 * (0 when the group failed). */
static int submit_result(harness *h, const spec *sp, int64_t *id)
{
    fl_job *job = make_job(sp);
    fl_store_op op;

    submit_op(&op, job);
    run(h, &op);
    *id = job->id;
    if (op.result)
        assert_int_equal(*id, 0);
    else
        assert_int_equal(op.answer, FL_STORE_OK);
    fl_job_free(job);
    return op.result;
}

/* submit stores a job made from sp and returns its id. */
static int64_t submit(harness *h, const spec *sp)
{
    int64_t id;

    assert_int_equal(submit_result(h, sp, &id), 0);
    assert_true(id > 0);
    return id;
}

static int64_t submit_simple(harness *h, const char *type, fl_state state, int64_t run_at)
{
    spec sp = { .type = type, .payload = "p", .payload_len = 1, .state = state,
                .run_at = run_at };
    return submit(h, &sp);
}

/* get returns job id (caller frees) or NULL, with the op's answer in *answer. */
static fl_job *get(harness *h, int64_t id, fl_store_answer *answer)
{
    fl_store_op op = { .kind = FL_STORE_GET };

    op.u.get.id = id;
    run(h, &op);
    assert_int_equal(op.result, 0);
    *answer = op.answer;
    fl_store_deliveries_free(op.u.get.deliveries, op.u.get.n_deliveries);
    return op.u.get.job;
}

static fl_job *get_ok(harness *h, int64_t id)
{
    fl_store_answer answer;
    fl_job *job = get(h, id, &answer);

    assert_int_equal(answer, FL_STORE_OK);
    assert_non_null(job);
    return job;
}

static void list_op(harness *h, fl_store_op *op, const fl_state *state, const char *type,
                    int limit, int64_t after)
{
    memset(op, 0, sizeof(*op));
    op->kind = FL_STORE_LIST;
    if (state) {
        op->u.list.q.has_state = 1;
        op->u.list.q.state = *state;
    }
    op->u.list.q.type = type;
    op->u.list.q.limit = limit;
    op->u.list.q.after = after;
    run(h, op);
}

/* expect_page checks a page against the expected ids (newest first) and next cursor. */
static void expect_page(harness *h, const fl_state *state, const char *type, int limit,
                        int64_t after, const int64_t *ids, size_t n, int64_t next)
{
    fl_store_op op;
    size_t i;

    list_op(h, &op, state, type, limit, after);
    assert_int_equal(op.result, 0);
    assert_int_equal(op.u.list.n, n);
    for (i = 0; i < n; i++) {
        assert_int_equal(op.u.list.jobs[i]->id, ids[i]);
        assert_null(op.u.list.jobs[i]->payload);
    }
    assert_int_equal(op.u.list.next, next);
    fl_store_list_free(op.u.list.jobs, op.u.list.n);
}

static void claim(harness *h, fl_store_op *op, const char *type, int limit, int64_t now)
{
    memset(op, 0, sizeof(*op));
    op->kind = FL_STORE_CLAIM;
    op->u.claim.type = type;
    op->u.claim.limit = limit;
    op->u.claim.now = now;
    run(h, op);
}

/* expect_claim claims and checks the ids taken, in order, and next_run_at. */
static void expect_claim(harness *h, const char *type, int limit, int64_t now,
                         const int64_t *ids, size_t n, int64_t next_run_at)
{
    fl_store_op op;
    size_t i;

    claim(h, &op, type, limit, now);
    assert_int_equal(op.result, 0);
    assert_int_equal(op.u.claim.n, n);
    for (i = 0; i < n; i++) {
        assert_int_equal(op.u.claim.jobs[i]->id, ids[i]);
        assert_int_equal(op.u.claim.jobs[i]->state, FL_STATE_RUNNING);
        assert_int_equal(op.u.claim.jobs[i]->started_at, now);
        assert_non_null(op.u.claim.jobs[i]->payload);
    }
    assert_int_equal(op.u.claim.next_run_at, next_run_at);
    fl_store_list_free(op.u.claim.jobs, op.u.claim.n);
}

static void finish_op(fl_store_op *op, int64_t id, fl_state state)
{
    memset(op, 0, sizeof(*op));
    op->kind = FL_STORE_FINISH;
    op->u.finish.id = id;
    op->u.finish.o.state = state;
}

static int sql_int(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int v = -1;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* sql_exec runs sql on the file at path (created if missing) with a connection of its own. */
static void sql_exec(const char *path, const char *sql)
{
    sqlite3 *db;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_submit_reopen(void **state)
{
    static const char payload[] = "a\0b\xff";
    harness *h = *state;
    spec sp = { .type = "echo", .key = "k-1", .callback = "http://127.0.0.1:9/cb",
                .payload = payload, .payload_len = sizeof(payload) - 1, .priority = 5,
                .state = FL_STATE_QUEUED };
    fl_store_op op;
    fl_job *job;
    int64_t id;

    id = submit(h, &sp);
    reopen(h);
    job = get_ok(h, id);
    assert_int_equal(job->id, id);
    assert_string_equal(job->type, "echo");
    assert_int_equal(job->state, FL_STATE_QUEUED);
    assert_int_equal(job->status, 0);
    assert_int_equal(job->attempts, 0);
    assert_int_equal(job->max_attempts, 3);
    assert_int_equal(job->priority, 5);
    assert_true(job->timeout == 30.0);
    assert_int_equal(job->created_at, NOW);
    assert_int_equal(job->run_at, NOW);
    assert_int_equal(job->started_at, 0);
    assert_int_equal(job->finished_at, 0);
    assert_int_equal(job->has_exit_code, 0);
    assert_string_equal(job->idem_key, "k-1");
    assert_string_equal(job->callback, "http://127.0.0.1:9/cb");
    assert_null(job->error);
    assert_null(job->output);
    assert_null(job->payload);
    fl_job_free(job);

    claim(h, &op, "echo", 1, NOW);
    assert_int_equal(op.u.claim.n, 1);
    job = op.u.claim.jobs[0];
    assert_int_equal(job->payload_len, sizeof(payload) - 1);
    assert_memory_equal(job->payload, payload, sizeof(payload) - 1);
    assert_int_equal(job->attempts, 1);
    fl_store_list_free(op.u.claim.jobs, op.u.claim.n);
}

/* A job submitted before the payload moved into its row (migration 010) has it in job_payloads
 * and NULL in the row: a GET and a claim read it from there. */
static void test_payload_of_an_older_job(void **state)
{
    static const char payload[] = "from before 010";
    harness *h = *state;
    spec sp = { .type = "old", .payload = payload, .payload_len = sizeof payload - 1,
                .state = FL_STATE_QUEUED };
    fl_store_op op = { .kind = FL_STORE_GET };
    char sql[160];
    int64_t id = submit(h, &sp);

    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM job_payloads"), 0);
    snprintf(sql, sizeof sql, "INSERT INTO job_payloads (id, data) SELECT id, payload FROM jobs"
             " WHERE id = %lld; UPDATE jobs SET payload = NULL", (long long)id);
    sql_exec(h->path, sql);
    reopen(h);
    op.u.get.id = id;
    op.u.get.with_payload = 1;
    run(h, &op);
    assert_int_equal(op.answer, FL_STORE_OK);
    assert_int_equal(op.u.get.job->payload_len, sizeof payload - 1);
    assert_memory_equal(op.u.get.job->payload, payload, sizeof payload - 1);
    fl_job_free(op.u.get.job);
    claim(h, &op, "old", 1, NOW);
    assert_int_equal(op.u.claim.n, 1);
    assert_memory_equal(op.u.claim.jobs[0]->payload, payload, sizeof payload - 1);
    fl_store_list_free(op.u.claim.jobs, op.u.claim.n);
}

static void test_get_missing(void **state)
{
    harness *h = *state;
    fl_store_answer answer;

    assert_null(get(h, 42, &answer));
    assert_int_equal(answer, FL_STORE_NOT_FOUND);
}

static void test_empty_payload(void **state)
{
    harness *h = *state;
    spec sp = { .type = "noop", .state = FL_STATE_QUEUED };
    fl_store_op op;

    submit(h, &sp);
    claim(h, &op, "noop", 1, NOW);
    assert_int_equal(op.u.claim.n, 1);
    assert_non_null(op.u.claim.jobs[0]->payload);
    assert_int_equal(op.u.claim.jobs[0]->payload_len, 0);
    fl_store_list_free(op.u.claim.jobs, op.u.claim.n);
}

static void test_migrations_once(void **state)
{
    harness *h = *state;
    const char *objects = "SELECT count(*) FROM sqlite_master";
    int64_t id = submit_simple(h, "echo", FL_STATE_QUEUED, 0);
    int n;
    fl_job *job;

    assert_true(fl_migrations_count >= 1);
    assert_int_equal(sql_int(h->path, "PRAGMA user_version"), fl_migrations_count);
    n = sql_int(h->path, objects);
    assert_true(n > 1);
    /* A second open finds the schema current: it would fail if it ran CREATE TABLE again. */
    reopen(h);
    assert_int_equal(sql_int(h->path, "PRAGMA user_version"), fl_migrations_count);
    assert_int_equal(sql_int(h->path, objects), n);
    job = get_ok(h, id);
    fl_job_free(job);
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM pragma_journal_mode"
                                      " WHERE journal_mode = 'wal'"), 1);
}

static void test_newer_version_refused(void **state)
{
    harness *h = *state;
    char path[PATH_LEN], sql[64], err[ERR_LEN] = "";
    fl_store *s = NULL;

    snprintf(path, sizeof(path), "%s/newer.db", h->dir);
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", fl_migrations_count + 1);
    sql_exec(path, sql);

    assert_true(open_path(&s, path, err, sizeof(err)) < 0);
    assert_null(s);
    assert_non_null(strstr(err, "newer"));
    assert_int_equal(sql_int(path, "PRAGMA user_version"), fl_migrations_count + 1);
}

static void test_open_errors(void **state)
{
    harness *h = *state;
    char path[PATH_LEN], err[ERR_LEN] = "";
    fl_store *s = NULL;
    FILE *f;
    int i;

    /* The parent "directory" is a file. */
    snprintf(path, sizeof(path), "%s/plain", h->dir);
    f = fopen(path, "w");
    assert_non_null(f);
    for (i = 0; i < 1024; i++)
        fputs("not a database ", f);
    assert_int_equal(fclose(f), 0);
    snprintf(path, sizeof(path), "%s/plain/fling.db", h->dir);
    assert_int_equal(open_path(&s, path, err, sizeof(err)), -ENOTDIR);
    assert_null(s);
    assert_true(strlen(err) > 0);

    /* A file that is not an SQLite database: an I/O-class error with a reason. */
    err[0] = '\0';
    snprintf(path, sizeof(path), "%s/plain", h->dir);
    assert_int_equal(open_path(&s, path, err, sizeof(err)), -EIO);
    assert_null(s);
    assert_true(strlen(err) > 0);

    /* A backend this flingd does not have. */
    const fl_store_options nosuch = { .backend = "nosuch", .path = h->path };
    assert_int_equal(fl_store_open(&s, &nosuch, NULL, err, sizeof(err)), -EINVAL);
    assert_null(s);
    assert_non_null(strstr(err, "nosuch"));
    assert_true(fl_store_backend_known("sqlite"));
    assert_false(fl_store_backend_known("nosuch"));
}

static void test_idempotency(void **state)
{
    harness *h = *state;
    spec sp = { .type = "echo", .key = "K", .payload = "x", .payload_len = 1,
                .state = FL_STATE_SCHEDULED, .run_at = NOW + 5000 };
    fl_job *a, *b;
    fl_store_op op1, op2;
    int64_t id1, id2;

    id1 = submit(h, &sp);

    /* Same type and key: nothing inserted, the first job's identity comes back. */
    sp.state = FL_STATE_QUEUED;
    sp.run_at = 0;
    a = make_job(&sp);
    a->created_at = NOW + 1;
    submit_op(&op1, a);
    run(h, &op1);
    assert_int_equal(op1.result, 0);
    assert_int_equal(op1.answer, FL_STORE_DUPLICATE);
    assert_int_equal(a->id, id1);
    assert_int_equal(a->state, FL_STATE_SCHEDULED);
    assert_int_equal(a->created_at, NOW);
    assert_int_equal(a->run_at, NOW + 5000);
    fl_job_free(a);

    /* Same key, other type: a new job. */
    sp.type = "other";
    id2 = submit(h, &sp);
    assert_true(id2 != id1);

    /* Two submits with one new key in the same group: one job, one duplicate. */
    sp.type = "echo";
    sp.key = "K2";
    a = make_job(&sp);
    b = make_job(&sp);
    submit_op(&op1, a);
    submit_op(&op2, b);
    fl_store_hold(h->store, 1);
    fl_store_push(h->store, &op1);
    fl_store_push(h->store, &op2);
    fl_store_hold(h->store, 0);
    settle(h);
    assert_int_equal(op1.result, 0);
    assert_int_equal(op2.result, 0);
    assert_int_equal(op1.answer, FL_STORE_OK);
    assert_int_equal(op2.answer, FL_STORE_DUPLICATE);
    assert_int_equal(b->id, a->id);
    fl_job_free(a);
    fl_job_free(b);

    /* Jobs without a key are never duplicates of each other. */
    sp.key = NULL;
    assert_true(submit(h, &sp) != submit(h, &sp));
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM jobs"), 5);
}

static void test_list_pages(void **state)
{
    harness *h = *state;
    const fl_state sched = FL_STATE_SCHEDULED, running = FL_STATE_RUNNING, queued = FL_STATE_QUEUED;
    int64_t all[25], a[13], want[10];
    size_t na = 0, i;
    fl_store_op op;

    /* ids 1..25; odd ids are type a; ids 1, 6, 11, 16, 21 are scheduled. */
    for (i = 0; i < 25; i++) {
        all[i] = submit_simple(h, i % 2 ? "b" : "a",
                               i % 5 ? FL_STATE_QUEUED : FL_STATE_SCHEDULED, NOW + 1000);
        assert_int_equal(all[i], (int64_t)i + 1);
    }
    for (i = 0; i < 25; i++)
        if (i % 2 == 0)
            a[na++] = 25 - (int64_t)i; /* newest first */

    for (i = 0; i < 10; i++)
        want[i] = 25 - (int64_t)i;
    expect_page(h, NULL, NULL, 10, 0, want, 10, 16);
    for (i = 0; i < 10; i++)
        want[i] = 15 - (int64_t)i;
    expect_page(h, NULL, NULL, 10, 16, want, 10, 6);
    for (i = 0; i < 5; i++)
        want[i] = 5 - (int64_t)i;
    expect_page(h, NULL, NULL, 10, 6, want, 5, 0);

    expect_page(h, NULL, "a", 10, 0, a, 10, a[9]);
    expect_page(h, NULL, "a", 10, a[9], a + 10, 3, 0);

    expect_page(h, &sched, NULL, 5, 0, (int64_t[]){ 21, 16, 11, 6, 1 }, 5, 0);
    expect_page(h, &sched, NULL, 4, 0, (int64_t[]){ 21, 16, 11, 6 }, 4, 6);
    expect_page(h, &sched, NULL, 4, 6, (int64_t[]){ 1 }, 1, 0);
    expect_page(h, &sched, "a", 10, 0, (int64_t[]){ 21, 11, 1 }, 3, 0);
    expect_page(h, &sched, "b", 10, 0, (int64_t[]){ 16, 6 }, 2, 0);
    expect_page(h, &running, NULL, 10, 0, NULL, 0, 0);
    expect_page(h, NULL, "nope", 10, 0, NULL, 0, 0);
    expect_page(h, NULL, NULL, 1, 2, (int64_t[]){ 1 }, 1, 0);

    /* The queued ones come from jobs_queued, newest first whatever their priority. */
    expect_page(h, &queued, NULL, 5, 0, (int64_t[]){ 25, 24, 23, 22, 20 }, 5, 20);
    expect_page(h, &queued, NULL, 5, 20, (int64_t[]){ 19, 18, 17, 15, 14 }, 5, 14);
    expect_page(h, &queued, "a", 4, 0, (int64_t[]){ 25, 23, 19, 17 }, 4, 17);
    expect_page(h, &queued, "a", 4, 17, (int64_t[]){ 15, 13, 9, 7 }, 4, 7);
    expect_page(h, &queued, "a", 4, 7, (int64_t[]){ 5, 3 }, 2, 0);
    spec urgent = { .type = "a", .payload = "p", .payload_len = 1, .priority = 9,
                    .state = FL_STATE_QUEUED };
    assert_int_equal(submit(h, &urgent), 26);
    expect_page(h, &queued, "a", 2, 0, (int64_t[]){ 26, 25 }, 2, 25);
    claim(h, &op, "b", 2, NOW);   /* the oldest two: 2 and 4 */
    assert_int_equal(op.u.claim.n, 2);
    fl_store_list_free(op.u.claim.jobs, op.u.claim.n);
    expect_page(h, &running, NULL, 10, 0, (int64_t[]){ 4, 2 }, 2, 0);
    expect_page(h, &queued, "b", 3, 10, (int64_t[]){ 8 }, 1, 0);

    list_op(h, &op, NULL, NULL, 0, 0);
    assert_int_equal(op.result, -EINVAL);
    assert_null(op.u.list.jobs);
    list_op(h, &op, NULL, NULL, 1001, 0);
    assert_int_equal(op.result, -EINVAL);
}

static void test_cancel(void **state)
{
    harness *h = *state;
    int64_t queued = submit_simple(h, "echo", FL_STATE_QUEUED, 0);
    int64_t sched = submit_simple(h, "echo", FL_STATE_SCHEDULED, NOW + 60000);
    int64_t run_id = submit_simple(h, "busy", FL_STATE_QUEUED, 0);
    fl_store_op op;
    fl_job *job;

    expect_claim(h, "busy", 1, NOW, &run_id, 1, 0);

    memset(&op, 0, sizeof(op));
    op.kind = FL_STORE_CANCEL;
    op.u.cancel.id = queued;
    op.u.cancel.now = NOW + 7;
    run(h, &op);
    assert_int_equal(op.result, 0);
    assert_int_equal(op.answer, FL_STORE_OK);
    assert_int_equal(op.u.cancel.job->state, FL_STATE_CANCELLED);
    assert_int_equal(op.u.cancel.job->finished_at, NOW + 7);
    fl_job_free(op.u.cancel.job);
    job = get_ok(h, queued);
    assert_int_equal(job->state, FL_STATE_CANCELLED);
    assert_int_equal(job->finished_at, NOW + 7);
    fl_job_free(job);

    op.u.cancel.id = sched;
    run(h, &op);
    assert_int_equal(op.result, 0);
    fl_job_free(op.u.cancel.job);
    /* A cancelled job is never claimed, even once due. */
    expect_claim(h, "echo", 10, NOW + 120000, NULL, 0, 0);

    op.u.cancel.id = run_id;
    run(h, &op);
    assert_int_equal(op.result, 0);
    assert_int_equal(op.answer, FL_STORE_RUNNING);
    assert_non_null(op.u.cancel.job);
    assert_int_equal(op.u.cancel.job->state, FL_STATE_RUNNING);
    fl_job_free(op.u.cancel.job);
    job = get_ok(h, run_id);
    assert_int_equal(job->state, FL_STATE_RUNNING);
    fl_job_free(job);

    op.u.cancel.id = queued;
    op.u.cancel.now = NOW + 99;
    run(h, &op);
    assert_int_equal(op.result, 0);
    assert_int_equal(op.answer, FL_STORE_ENDED);
    assert_int_equal(op.u.cancel.job->state, FL_STATE_CANCELLED);
    assert_int_equal(op.u.cancel.job->finished_at, NOW + 7);
    fl_job_free(op.u.cancel.job);

    op.u.cancel.id = 999;
    run(h, &op);
    assert_int_equal(op.result, 0);
    assert_int_equal(op.answer, FL_STORE_NOT_FOUND);
    assert_null(op.u.cancel.job);
}

static void test_set_status(void **state)
{
    harness *h = *state;
    int64_t id = submit_simple(h, "echo", FL_STATE_QUEUED, 0);
    fl_store_op op = { .kind = FL_STORE_SET_STATUS };
    fl_job *job;

    op.u.set_status.id = id;
    op.u.set_status.bits = FL_STATUS_ABORTED;
    run(h, &op);
    assert_int_equal(op.result, 0);
    assert_int_equal(op.u.set_status.changed, 1);
    op.u.set_status.bits = FL_STATUS_TIMEOUT;
    run(h, &op);
    assert_int_equal(op.result, 0);
    assert_int_equal(op.u.set_status.changed, 1);
    op.u.set_status.bits = FL_STATUS_ABORTED;
    run(h, &op);
    assert_int_equal(op.u.set_status.changed, 0);   /* nothing new: not written */
    job = get_ok(h, id);
    assert_int_equal(job->status, FL_STATUS_ABORTED | FL_STATUS_TIMEOUT);
    fl_job_free(job);

    op.u.set_status.id = id + 1;
    run(h, &op);
    assert_int_equal(op.result, 0);
    assert_int_equal(op.answer, FL_STORE_NOT_FOUND);
}

/* changed_ids runs CHANGED pages of limit from since and returns the ids seen, in order. */
static size_t changed_ids(harness *h, int64_t since, int limit, int64_t *ids, size_t cap)
{
    fl_store_op op = { .kind = FL_STORE_CHANGED };
    size_t n = 0;
    int pages = 0;
    op.u.changed.since = since;
    op.u.changed.limit = limit;
    do {
        run(h, &op);
        assert_int_equal(op.result, 0);
        for (size_t i = 0; i < op.u.changed.n; i++) {
            assert_true(n < cap);
            assert_null(op.u.changed.jobs[i]->payload);
            ids[n++] = op.u.changed.jobs[i]->id;
        }
        fl_store_list_free(op.u.changed.jobs, op.u.changed.n);
        op.u.changed.after = op.u.changed.next;
        assert_true(++pages < 100);
    } while (op.u.changed.after);
    return n;
}

static void test_updated_at_and_changed(void **state)
{
    harness *h = *state;
    int64_t before = fl_job_now_ms();
    int64_t done = submit_simple(h, "c", FL_STATE_QUEUED, NOW - 10);
    int64_t waiting = submit_simple(h, "c", FL_STATE_QUEUED, NOW - 5);
    int64_t ids[8];
    fl_store_op op;

    fl_job *job = get_ok(h, done);
    assert_true(job->updated_at >= before && job->updated_at <= fl_job_now_ms());
    fl_job_free(job);
    expect_claim(h, "c", 1, NOW, (int64_t[]){ done }, 1, NOW - 5);
    finish_op(&op, done, FL_STATE_SUCCEEDED);
    op.u.finish.o.finished_at = NOW;
    run(h, &op);
    assert_int_equal(op.result, 0);

    /* Everything changed since before; both, in id order, over pages of one. */
    assert_int_equal(changed_ids(h, before, 1, ids, 8), 2);
    assert_int_equal(ids[0], done);
    assert_int_equal(ids[1], waiting);
    /* From the future only what is not terminal yet. */
    assert_int_equal(changed_ids(h, fl_job_now_ms() + 60000, 1000, ids, 8), 1);
    assert_int_equal(ids[0], waiting);

    fl_store_op bad = { .kind = FL_STORE_CHANGED };
    bad.u.changed.limit = 0;
    run(h, &bad);
    assert_int_equal(bad.result, -EINVAL);
}

/* cancel_waiting cancels a queued or scheduled job, which must succeed. */
static void cancel_waiting(harness *h, int64_t id)
{
    fl_store_op op = { .kind = FL_STORE_CANCEL };
    op.u.cancel.id = id;
    op.u.cancel.now = NOW;
    run(h, &op);
    assert_int_equal(op.result, 0);
    fl_job_free(op.u.cancel.job);
}

static void test_count_all_states(void **state)
{
    harness *h = *state;
    int64_t id = submit_simple(h, "k", FL_STATE_QUEUED, 0);
    submit_simple(h, "k", FL_STATE_QUEUED, 0);
    cancel_waiting(h, id);
    submit_simple(h, "k", FL_STATE_SCHEDULED, NOW + 100000);
    submit_simple(h, "j", FL_STATE_QUEUED, 0);
    fl_store_op claimed;
    claim(h, &claimed, "j", 1, NOW);
    assert_int_equal(claimed.u.claim.n, 1);
    fl_store_list_free(claimed.u.claim.jobs, claimed.u.claim.n);

    for (int all = 0; all <= 1; all++) {
        fl_store_op c = { .kind = FL_STORE_COUNT };
        c.u.count.all_states = all;
        run(h, &c);
        assert_int_equal(c.result, 0);
        int64_t queued = 0, cancelled = 0, scheduled = 0, running = 0;
        for (size_t i = 0; i < c.u.count.n; i++) {
            const fl_store_count *r = &c.u.count.rows[i];
            if (r->state == FL_STATE_QUEUED)
                queued += r->n;
            if (r->state == FL_STATE_CANCELLED)
                cancelled += r->n;
            if (r->state == FL_STATE_SCHEDULED && !strcmp(r->type, "k"))
                scheduled += r->n;
            if (r->state == FL_STATE_RUNNING && !strcmp(r->type, "j"))
                running += r->n;
        }
        assert_int_equal(queued, 1);
        assert_int_equal(cancelled, all ? 1 : 0);
        assert_int_equal(scheduled, 1);
        assert_int_equal(running, 1);
        free(c.u.count.rows);
    }
}

/* The type hook of the delivery tests: type "h" has hooks, others none. */
static const char *test_hook(const void *arg, const char *type, int abort)
{
    (void)arg;
    if (strcmp(type, "h") != 0)
        return NULL;
    return abort ? "exec:/bin/alert" : "http://127.0.0.1:1/done";
}

static void take(harness *h, fl_store_op *op, int64_t now, int limit)
{
    memset(op, 0, sizeof *op);
    op->kind = FL_STORE_DELIVERY_TAKE;
    op->u.take.now = now;
    op->u.take.limit = limit;
    run(h, op);
    assert_int_equal(op->result, 0);
}

static void test_deliveries(void **state)
{
    harness *h = *state;
    fl_store_set_hooks(h->store, test_hook, NULL);
    spec sp = { .type = "h", .callback = "http://127.0.0.1:2/cb", .state = FL_STATE_QUEUED, .run_at = NOW - 10 };
    int64_t ok = submit(h, &sp);
    int64_t plain = submit_simple(h, "other", FL_STATE_QUEUED, NOW - 10);
    int64_t cancelled = submit_simple(h, "h", FL_STATE_QUEUED, NOW - 10);
    fl_store_op op;

    /* Nothing is delivered for a state that is not terminal. */
    expect_claim(h, "h", 1, NOW, (int64_t[]){ ok }, 1, NOW - 10);
    take(h, &op, fl_job_now_ms() + 1000, 10);
    assert_int_equal(op.u.take.n, 0);
    assert_int_equal(op.u.take.next_at, 0);

    /* succeeded: the job's URL and the type's on_complete, in one transaction with the state. */
    finish_op(&op, ok, FL_STATE_SUCCEEDED);
    op.u.finish.o.finished_at = NOW;
    run(h, &op);
    assert_int_equal(op.result, 0);
    /* cancelled: only the type's on_abort (no URL of its own); a type without hooks: none. */
    cancel_waiting(h, cancelled);
    cancel_waiting(h, plain);

    int64_t now = fl_job_now_ms() + 1000;
    take(h, &op, now, 2);
    assert_int_equal(op.u.take.n, 2);
    fl_delivery *a = op.u.take.items[0], *b = op.u.take.items[1];
    assert_int_equal(a->job_id, ok);
    assert_int_equal(a->abort, 0);
    assert_string_equal(a->target, "http://127.0.0.1:2/cb");
    assert_int_equal(a->attempts, 1);
    assert_non_null(a->job);
    assert_int_equal(a->job->state, FL_STATE_SUCCEEDED);
    assert_string_equal(b->target, "http://127.0.0.1:1/done");
    assert_true(op.u.take.next_at > 0);   /* the cancelled job's on_abort waits */
    int64_t a_id = a->id, b_id = b->id;
    fl_store_deliveries_free(op.u.take.items, op.u.take.n);

    /* In flight: not taken again. After a restart (recover) it is due again. */
    take(h, &op, now, 10);
    assert_int_equal(op.u.take.n, 1);
    assert_int_equal(op.u.take.items[0]->job_id, cancelled);
    assert_int_equal(op.u.take.items[0]->abort, 1);
    assert_string_equal(op.u.take.items[0]->target, "exec:/bin/alert");
    fl_store_deliveries_free(op.u.take.items, op.u.take.n);
    reopen(h);
    fl_store_set_hooks(h->store, test_hook, NULL);
    assert_int_equal(fl_store_recover(h->store), 0);
    take(h, &op, now, 10);
    assert_int_equal(op.u.take.n, 3);
    assert_int_equal(op.u.take.items[0]->attempts, 2);
    fl_store_deliveries_free(op.u.take.items, op.u.take.n);

    /* Outcomes: a delivered, b retried later, then failed for good. */
    fl_store_op d = { .kind = FL_STORE_DELIVERY_DONE };
    d.u.done.id = a_id;
    d.u.done.state = FL_DELIVERY_DELIVERED;
    d.u.done.has_status = 1;
    d.u.done.status = 204;
    run(h, &d);
    assert_int_equal(d.result, 0);
    d.u.done.id = b_id;
    d.u.done.state = FL_DELIVERY_PENDING;
    d.u.done.next_at = now + 5000;
    d.u.done.status = 500;
    d.u.done.error = "HTTP 500";
    run(h, &d);
    assert_int_equal(d.result, 0);
    take(h, &op, now, 10);
    assert_int_equal(op.u.take.n, 0);
    assert_int_equal(op.u.take.next_at, now + 5000);
    take(h, &op, now + 5000, 10);
    assert_int_equal(op.u.take.n, 1);
    assert_int_equal(op.u.take.items[0]->id, b_id);
    assert_int_equal(op.u.take.items[0]->attempts, 3);
    assert_string_equal(op.u.take.items[0]->last_error, "HTTP 500");
    fl_store_deliveries_free(op.u.take.items, op.u.take.n);
    d.u.done.state = FL_DELIVERY_FAILED;
    run(h, &d);
    d.u.done.id = b_id + 100;
    run(h, &d);
    assert_int_equal(d.result, 0);
    assert_int_equal(d.answer, FL_STORE_NOT_FOUND);

    /* GET shows a job's deliveries and their last result. */
    fl_store_op g = { .kind = FL_STORE_GET };
    g.u.get.id = ok;
    run(h, &g);
    assert_int_equal(g.result, 0);
    assert_int_equal(g.u.get.n_deliveries, 2);
    assert_int_equal(g.u.get.deliveries[0]->state, FL_DELIVERY_DELIVERED);
    assert_int_equal(g.u.get.deliveries[0]->last_status, 204);
    assert_null(g.u.get.deliveries[0]->last_error);
    assert_int_equal(g.u.get.deliveries[1]->state, FL_DELIVERY_FAILED);
    assert_string_equal(g.u.get.deliveries[1]->last_error, "HTTP 500");
    fl_job_free(g.u.get.job);
    fl_store_deliveries_free(g.u.get.deliveries, g.u.get.n_deliveries);
}

static void test_claim_order(void **state)
{
    harness *h = *state;
    spec sp = { .type = "w", .payload = "p", .payload_len = 1 };
    int64_t q0a, q10, due10, fut100, q0b, other, fut0, claimed[2];
    fl_store_op op;
    fl_job *job;

    sp.state = FL_STATE_QUEUED;
    sp.run_at = NOW - 5000;
    q0a = submit(h, &sp);
    sp.priority = 10;
    sp.run_at = NOW - 100;
    q10 = submit(h, &sp);
    sp.state = FL_STATE_SCHEDULED;
    sp.run_at = NOW - 1000;
    due10 = submit(h, &sp);
    sp.priority = 100;
    sp.run_at = NOW + 60000;
    fut100 = submit(h, &sp);
    sp.state = FL_STATE_QUEUED;
    sp.priority = 0;
    sp.run_at = NOW - 4000;
    q0b = submit(h, &sp);
    sp.type = "v";
    sp.priority = 99;
    other = submit(h, &sp);
    sp.type = "w";
    sp.state = FL_STATE_SCHEDULED;
    sp.priority = 0;
    sp.run_at = NOW + 30000;
    fut0 = submit(h, &sp);

    /* Priority 10 first (queued and due-scheduled merged by id), the future ones left out;
     * the queued jobs left behind are due now. */
    expect_claim(h, "w", 2, NOW, (int64_t[]){ q10, due10 }, 2, NOW - 5000);
    job = get_ok(h, q10);
    assert_int_equal(job->state, FL_STATE_RUNNING);
    assert_int_equal(job->attempts, 1);
    assert_int_equal(job->started_at, NOW);
    fl_job_free(job);

    /* Then the priority-0 queued jobs by id; next is the earliest future run_at. */
    claimed[0] = q0a;
    claimed[1] = q0b;
    expect_claim(h, "w", 10, NOW, claimed, 2, NOW + 30000);
    expect_claim(h, "w", 10, NOW + 29999, NULL, 0, NOW + 30000);
    expect_claim(h, "w", 10, NOW + 30000, &fut0, 1, NOW + 60000);
    expect_claim(h, "w", 10, NOW + 90000, &fut100, 1, 0);
    expect_claim(h, "w", 10, NOW + 90000, NULL, 0, 0);
    expect_claim(h, "v", 10, NOW, &other, 1, 0);

    claim(h, &op, "w", 0, NOW);
    assert_int_equal(op.result, -EINVAL);
    claim(h, &op, NULL, 1, NOW);
    assert_int_equal(op.result, -EINVAL);
}

static void test_claim_queued_not_yet_due(void **state)
{
    harness *h = *state;
    /* A queued job runs whatever its run_at says (a clock stepped back, a hand-back). */
    int64_t id = submit_simple(h, "w", FL_STATE_QUEUED, NOW + 999999);

    expect_claim(h, "w", 1, NOW, &id, 1, 0);
}

static void test_finish(void **state)
{
    static const char raw[] = "\xff\0x";
    harness *h = *state;
    int64_t ok = submit_simple(h, "f", FL_STATE_QUEUED, NOW - 10);
    int64_t bad = submit_simple(h, "f", FL_STATE_QUEUED, NOW - 10);
    int64_t retry = submit_simple(h, "f", FL_STATE_QUEUED, NOW - 10);
    int64_t back = submit_simple(h, "f", FL_STATE_QUEUED, NOW - 10);
    int64_t gone = submit_simple(h, "f", FL_STATE_QUEUED, NOW - 10);
    fl_store_op op;
    fl_job *job;

    expect_claim(h, "f", 10, NOW, (int64_t[]){ ok, bad, retry, back, gone }, 5, 0);

    finish_op(&op, ok, FL_STATE_SUCCEEDED);
    op.u.finish.o.has_exit_code = 1;
    op.u.finish.o.output = "hello\n";
    op.u.finish.o.output_len = 6;
    op.u.finish.o.finished_at = NOW + 100;
    run(h, &op);
    assert_int_equal(op.result, 0);
    job = get_ok(h, ok);
    assert_int_equal(job->state, FL_STATE_SUCCEEDED);
    assert_int_equal(job->has_exit_code, 1);
    assert_int_equal(job->exit_code, 0);
    assert_int_equal(job->output_len, 6);
    assert_memory_equal(job->output, "hello\n", 6);
    assert_null(job->error);
    assert_int_equal(job->finished_at, NOW + 100);
    assert_int_equal(job->status, 0);
    fl_job_free(job);

    finish_op(&op, bad, FL_STATE_FAILED);
    op.u.finish.o.status_bits = FL_STATUS_TIMEOUT;
    op.u.finish.o.has_exit_code = 1;
    op.u.finish.o.exit_code = -9;
    op.u.finish.o.error = "timed out";
    op.u.finish.o.output = raw;
    op.u.finish.o.output_len = sizeof(raw) - 1;
    op.u.finish.o.finished_at = NOW + 200;
    run(h, &op);
    assert_int_equal(op.result, 0);
    job = get_ok(h, bad);
    assert_int_equal(job->state, FL_STATE_FAILED);
    assert_int_equal(job->status, FL_STATUS_TIMEOUT);
    assert_int_equal(job->exit_code, -9);
    assert_string_equal(job->error, "timed out");
    assert_int_equal(job->output_len, 3);
    assert_memory_equal(job->output, raw, 3);
    assert_int_equal(job->finished_at, NOW + 200);
    fl_job_free(job);

    /* A retry: scheduled at run_at, not finished, claimable again then. */
    finish_op(&op, retry, FL_STATE_SCHEDULED);
    op.u.finish.o.error = "exit status 1";
    op.u.finish.o.has_exit_code = 1;
    op.u.finish.o.exit_code = 1;
    op.u.finish.o.run_at = NOW + 2000;
    op.u.finish.o.finished_at = NOW + 300; /* ignored: not terminal */
    run(h, &op);
    assert_int_equal(op.result, 0);
    job = get_ok(h, retry);
    assert_int_equal(job->state, FL_STATE_SCHEDULED);
    assert_int_equal(job->run_at, NOW + 2000);
    assert_int_equal(job->finished_at, 0);
    assert_string_equal(job->error, "exit status 1");
    fl_job_free(job);

    /* Handed back at shutdown: queued, run_at as it was. */
    finish_op(&op, back, FL_STATE_QUEUED);
    op.u.finish.o.run_at = NOW + 5000; /* ignored: only a retry moves run_at */
    run(h, &op);
    assert_int_equal(op.result, 0);
    job = get_ok(h, back);
    assert_int_equal(job->state, FL_STATE_QUEUED);
    assert_int_equal(job->run_at, NOW - 10);
    assert_int_equal(job->finished_at, 0);
    assert_int_equal(job->has_exit_code, 0);
    fl_job_free(job);

    finish_op(&op, gone, FL_STATE_CANCELLED);
    op.u.finish.o.status_bits = FL_STATUS_ABORTED;
    op.u.finish.o.finished_at = NOW + 400;
    run(h, &op);
    assert_int_equal(op.result, 0);
    job = get_ok(h, gone);
    assert_int_equal(job->state, FL_STATE_CANCELLED);
    assert_int_equal(job->status, FL_STATUS_ABORTED);
    assert_int_equal(job->finished_at, NOW + 400);
    fl_job_free(job);

    expect_claim(h, "f", 10, NOW + 1999, &back, 1, NOW + 2000);
    expect_claim(h, "f", 10, NOW + 2000, &retry, 1, 0);
    job = get_ok(h, retry);
    assert_int_equal(job->attempts, 2);
    fl_job_free(job);

    finish_op(&op, 999, FL_STATE_SUCCEEDED);
    run(h, &op);
    assert_int_equal(op.result, 0);
    assert_int_equal(op.answer, FL_STORE_NOT_FOUND);
    finish_op(&op, ok, FL_STATE_RUNNING);
    run(h, &op);
    assert_int_equal(op.result, -EINVAL);
}

/* A part of a job (a string, or output bytes) is the same in both: both absent, or equal. */
static void assert_same_part(const char *a, const char *b, size_t alen, size_t blen)
{
    assert_int_equal(a == NULL, b == NULL);
    assert_int_equal(alen, blen);
    if (a)
        assert_memory_equal(a, b, alen);
}

static void assert_same_str(const char *a, const char *b)
{
    assert_same_part(a, b, a ? strlen(a) : 0, b ? strlen(b) : 0);
}

/* finish_row runs a FINISH of id into state (o's other fields from *o) and checks that the
 * row it answers is the row a GET reads afterwards, field by field. */
static void finish_row(harness *h, int64_t id, const fl_store_outcome *o)
{
    fl_store_op op;
    fl_job *got, *row;
    int calls = 0;

    finish_op(&op, id, o->state);
    op.u.finish.o = *o;
    op.cb = count_cb;
    op.udata = &calls;
    fl_store_push(h->store, &op);
    settle(h);
    assert_int_equal(calls, 1);
    assert_int_equal(op.result, 0);
    assert_int_equal(op.answer, FL_STORE_OK);
    row = op.u.finish.job;
    assert_non_null(row);
    got = get_ok(h, id);
    assert_int_equal(row->id, got->id);
    assert_int_equal(row->state, got->state);
    assert_int_equal(row->status, got->status);
    assert_int_equal(row->attempts, got->attempts);
    assert_int_equal(row->max_attempts, got->max_attempts);
    assert_int_equal(row->priority, got->priority);
    assert_true(row->timeout == got->timeout);
    assert_int_equal(row->created_at, got->created_at);
    assert_int_equal(row->run_at, got->run_at);
    assert_int_equal(row->started_at, got->started_at);
    assert_int_equal(row->finished_at, got->finished_at);
    assert_int_equal(row->updated_at, got->updated_at);
    assert_int_equal(row->has_exit_code, got->has_exit_code);
    assert_int_equal(row->exit_code, got->exit_code);
    assert_int_equal(row->retried, got->retried);
    assert_int_equal(row->previous_attempts, got->previous_attempts);
    assert_same_str(row->type, got->type);
    assert_same_str(row->callback, got->callback);
    assert_same_str(row->idem_key, got->idem_key);
    assert_same_str(row->error, got->error);
    assert_same_part(row->output, got->output, row->output_len, got->output_len);
    assert_same_str(row->previous_error, got->previous_error);
    assert_same_str(row->content_type, got->content_type);
    assert_same_str(row->traceparent, got->traceparent);
    assert_same_str(row->tracestate, got->tracestate);
    assert_null(row->payload);
    fl_job_free(got);
    fl_job_free(row);
}

/* A FINISH answers with the row it wrote, whether it knew the row from the claim (a success
 * without output) or read it: after a status bit added while running, a retry, a requeue, and
 * a group rolled back between the claim and the finish. */
static void test_finish_answers_its_row(void **state)
{
    harness *h = *state;
    spec sp = { .type = "r", .key = "k1", .callback = "http://127.0.0.1:9/cb", .payload = "pp",
                .payload_len = 2, .priority = 5, .state = FL_STATE_QUEUED, .run_at = NOW - 10 };
    int64_t a = submit(h, &sp), b, c;
    fl_store_outcome ok = { .state = FL_STATE_SUCCEEDED, .has_exit_code = 1, .finished_at = NOW + 50 };
    fl_store_outcome failed = { .state = FL_STATE_FAILED, .error = "exit status 3", .has_exit_code = 1,
                                .exit_code = 3, .output = "out", .output_len = 3, .finished_at = NOW + 60 };
    fl_store_outcome later = { .state = FL_STATE_SCHEDULED, .status_bits = FL_STATUS_TIMEOUT,
                               .run_at = NOW + 1000 };
    fl_store_outcome back = { .state = FL_STATE_QUEUED, .run_at = NOW + 7 };
    fl_store_op op = { .kind = FL_STORE_SET_STATUS };

    sp.key = NULL;
    sp.priority = 0;
    b = submit(h, &sp);
    c = submit(h, &sp);
    expect_claim(h, "r", 2, NOW, (int64_t[]){ a, b }, 2, NOW - 10);
    op.u.set_status.id = a;
    op.u.set_status.bits = FL_STATUS_ABORTED;
    run(h, &op);
    assert_int_equal(op.u.set_status.changed, 1);
    finish_row(h, a, &ok);

    /* b fails with an error and output, is retried, and runs twice more. */
    finish_row(h, b, &failed);
    memset(&op, 0, sizeof(op));
    op.kind = FL_STORE_RETRY;
    op.u.retry.id = b;
    op.u.retry.now = NOW + 70;
    run(h, &op);
    assert_int_equal(op.answer, FL_STORE_OK);
    fl_job_free(op.u.retry.job);
    expect_claim(h, "r", 1, NOW + 80, &b, 1, NOW - 10);
    finish_row(h, b, &later);
    expect_claim(h, "r", 1, NOW + 1000, &b, 1, NOW - 10);
    finish_row(h, b, &back);

    /* b is claimed again, then a finish of it fails with its group: the next one still
     * answers its row. A claim in a failed group took nothing. */
    expect_claim(h, "r", 1, NOW + 1001, &b, 1, NOW - 10);
    fl_store_inject_fault(h->store, -ENOSPC, 1);
    finish_op(&op, b, FL_STATE_SUCCEEDED);
    op.u.finish.o = ok;
    run(h, &op);
    assert_int_equal(op.result, -ENOSPC);
    finish_row(h, b, &ok);
    fl_store_inject_fault(h->store, -ENOSPC, 1);
    claim(h, &op, "r", 1, NOW + 1002);
    assert_int_equal(op.result, -ENOSPC);
    expect_claim(h, "r", 1, NOW + 1003, &c, 1, 0);
    /* A status bit of a failed group is not in the row either. */
    fl_store_inject_fault(h->store, -ENOSPC, 1);
    memset(&op, 0, sizeof(op));
    op.kind = FL_STORE_SET_STATUS;
    op.u.set_status.id = c;
    op.u.set_status.bits = FL_STATUS_TIMEOUT;
    run(h, &op);
    assert_int_equal(op.result, -ENOSPC);
    finish_row(h, c, &ok);
}

static void test_recover(void **state)
{
    harness *h = *state;
    int64_t a = submit_simple(h, "r", FL_STATE_QUEUED, 0);
    int64_t b = submit_simple(h, "r", FL_STATE_QUEUED, 0);
    int64_t c = submit_simple(h, "r", FL_STATE_QUEUED, 0);
    fl_job *job;

    expect_claim(h, "r", 2, NOW, (int64_t[]){ a, b }, 2, NOW);
    reopen(h); /* as if the daemon had died with a and b running */
    assert_int_equal(fl_store_recover(h->store), 2);
    job = get_ok(h, a);
    assert_int_equal(job->state, FL_STATE_QUEUED);
    assert_int_equal(job->attempts, 1);
    fl_job_free(job);
    job = get_ok(h, c);
    assert_int_equal(job->state, FL_STATE_QUEUED);
    assert_int_equal(job->attempts, 0);
    fl_job_free(job);
    assert_int_equal(fl_store_recover(h->store), 0);
    expect_claim(h, "r", 3, NOW, (int64_t[]){ a, b, c }, 3, 0);
}

/* A SUBMIT and the CLAIM pushed behind it while corked are one group, so one commit, even with
 * the writer idle and time passing between the two pushes; the claim takes the job the submit
 * wrote in the same transaction. */
static void test_cork_makes_one_group(void **state)
{
    harness *h = *state;
    spec sp = { .type = "corked", .payload = "p", .payload_len = 1, .state = FL_STATE_QUEUED };
    fl_job *job = make_job(&sp);
    fl_store_op sub, cl;
    fl_store_stats before, after;
    int calls = 0;

    settle(h);
    usleep(20000);   /* the writer, done with the last group, waits for work */
    fl_store_stats_get(h->store, &before);
    fl_store_cork(h->store);
    submit_op(&sub, job);
    sub.cb = count_cb;
    sub.udata = &calls;
    fl_store_push(h->store, &sub);
    usleep(50000);   /* without the cork, the writer would commit the submit alone meanwhile */
    memset(&cl, 0, sizeof cl);
    cl.kind = FL_STORE_CLAIM;
    cl.u.claim.type = "corked";
    cl.u.claim.limit = 5;
    cl.u.claim.now = NOW;
    cl.cb = count_cb;
    cl.udata = &calls;
    fl_store_push(h->store, &cl);
    fl_store_uncork(h->store);
    settle(h);
    fl_store_stats_get(h->store, &after);
    assert_int_equal(calls, 2);
    assert_int_equal(sub.result, 0);
    assert_int_equal(cl.result, 0);
    assert_int_equal(after.commits, before.commits + 1);
    assert_int_equal(cl.u.claim.n, 1);
    assert_int_equal(cl.u.claim.jobs[0]->id, job->id);
    fl_store_list_free(cl.u.claim.jobs, cl.u.claim.n);
    fl_job_free(job);
}

/* Submits that share a group go in as runs of rows: each op gets its own id, growing in op
 * order with no gap, its own payload, and a key already taken in the run is a duplicate.
 * Every third payload is too large for the jobs row (store_sqlite.c keeps up to 256 bytes
 * there), so the runs insert job_payloads rows singly and several at once. */
static void test_submits_in_one_group(void **state)
{
    enum { N = 24, LARGE = 700 };
    harness *h = *state;
    spec sp = { .type = "many", .state = FL_STATE_QUEUED };
    char payloads[N][LARGE];
    size_t lens[N];
    fl_job *jobs[N];
    fl_store_op ops[N], get;
    int64_t last = 0;
    size_t i, k;

    fl_store_hold(h->store, 1);
    for (i = 0; i < N; i++) {
        /* keyed: op 7 and op 11 (the same key: a duplicate of op 7) */
        sp.key = i == 7 || i == 11 ? "A" : NULL;
        if (i % 3 == 1) {
            for (k = 0; k < LARGE; k++)
                payloads[i][k] = (char)('a' + (i + k) % 26);
            lens[i] = LARGE;
        } else {
            lens[i] = (size_t)snprintf(payloads[i], sizeof payloads[i], "p%zu", i);
        }
        sp.payload_len = lens[i];
        sp.payload = i == 3 ? NULL : payloads[i];
        jobs[i] = make_job(&sp);
        submit_op(&ops[i], jobs[i]);
        fl_store_push(h->store, &ops[i]);
    }
    fl_store_hold(h->store, 0);
    settle(h);
    for (i = 0; i < N; i++) {
        assert_int_equal(ops[i].result, 0);
        if (i == 11) {
            assert_int_equal(ops[i].answer, FL_STORE_DUPLICATE);
            assert_int_equal(jobs[i]->id, jobs[7]->id);
            continue;
        }
        assert_int_equal(ops[i].answer, FL_STORE_OK);
        if (last)
            assert_int_equal(jobs[i]->id, last + 1);
        last = jobs[i]->id;
        memset(&get, 0, sizeof get);
        get.kind = FL_STORE_GET;
        get.u.get.id = jobs[i]->id;
        get.u.get.with_payload = 1;
        run(h, &get);
        assert_int_equal(get.answer, FL_STORE_OK);
        assert_int_equal(get.u.get.job->payload_len, i == 3 ? 0 : lens[i]);
        if (i != 3)
            assert_memory_equal(get.u.get.job->payload, payloads[i], lens[i]);
        assert_string_equal(get.u.get.job->type, "many");
        assert_int_equal(get.u.get.job->updated_at, jobs[i]->updated_at);
        fl_job_free(get.u.get.job);
    }
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM jobs"), N - 1);
    /* the large ones each in job_payloads and not in its row, the others in their row */
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM job_payloads"), N / 3);
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM jobs WHERE payload IS NULL"
                                      " AND id IN (SELECT id FROM job_payloads)"), N / 3);
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM jobs WHERE payload IS NOT NULL"),
                     N - 1 - N / 3);
    for (i = 0; i < N; i++)
        fl_job_free(jobs[i]);
}

/* An op whose own data fails (a constraint, a value too big) fails alone: the rest of its group
 * is committed without it, so one bad op cannot turn the submits beside it into 503s. */
static void test_op_error_fails_alone(void **state)
{
    harness *h = *state;
    spec sp = { .type = "echo", .payload = "x", .payload_len = 1, .state = FL_STATE_QUEUED };
    fl_job *jobs[3];
    fl_store_op ops[3];
    size_t i;

    fl_store_hold(h->store, 1);
    for (i = 0; i < 3; i++) {
        jobs[i] = make_job(&sp);
        submit_op(&ops[i], jobs[i]);
    }
    /* The first submit the writer runs (ops[0]) fails as a constraint would. */
    fl_store_inject_op_fault(h->store, FL_STORE_SUBMIT, -EEXIST);
    for (i = 0; i < 3; i++)
        fl_store_push(h->store, &ops[i]);
    fl_store_hold(h->store, 0);
    settle(h);
    assert_int_equal(ops[0].result, -EEXIST);
    assert_int_equal(jobs[0]->id, 0);
    for (i = 1; i < 3; i++) {
        assert_int_equal(ops[i].result, 0);
        assert_true(jobs[i]->id > 0);
        fl_job_free(get_ok(h, jobs[i]->id));
    }
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM jobs"), 2);
    for (i = 0; i < 3; i++)
        fl_job_free(jobs[i]);
}

static void test_fault_fails_group(void **state)
{
    harness *h = *state;
    int64_t first = submit_simple(h, "echo", FL_STATE_QUEUED, 0);
    static char large[1024];   /* beyond the jobs row's 256 bytes: a job_payloads row each */
    spec sp = { .type = "echo", .key = "F", .payload = large, .payload_len = sizeof large,
                .state = FL_STATE_QUEUED };
    fl_job *jobs[3];
    fl_store_op ops[5];
    fl_store_stats before, after;
    size_t i;

    fl_store_stats_get(h->store, &before);
    fl_store_hold(h->store, 1);
    fl_store_inject_fault(h->store, -ENOSPC, 1);
    for (i = 0; i < 3; i++) {
        jobs[i] = make_job(&sp);
        submit_op(&ops[i], jobs[i]);
        sp.key = NULL;
    }
    memset(&ops[3], 0, sizeof(ops[3]));
    ops[3].kind = FL_STORE_GET;
    ops[3].u.get.id = first;
    memset(&ops[4], 0, sizeof(ops[4]));
    ops[4].kind = FL_STORE_CLAIM;
    ops[4].u.claim.type = "echo";
    ops[4].u.claim.limit = 10;
    ops[4].u.claim.now = NOW;
    for (i = 0; i < 5; i++)
        fl_store_push(h->store, &ops[i]);
    fl_store_hold(h->store, 0);
    settle(h);

    for (i = 0; i < 5; i++)
        assert_int_equal(ops[i].result, -ENOSPC);
    for (i = 0; i < 3; i++)
        assert_int_equal(jobs[i]->id, 0);
    assert_null(ops[3].u.get.job);
    assert_null(ops[4].u.claim.jobs);
    assert_int_equal(ops[4].u.claim.n, 0);
    fl_store_stats_get(h->store, &after);
    assert_int_equal(after.failed_commits, before.failed_commits + 1);
    assert_int_equal(after.commits, before.commits);
    /* Nothing of the group reached the file, not even the claim's state change. */
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM jobs"), 1);
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM job_payloads"), 0);
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM jobs WHERE state = 'queued'"), 1);

    /* The next group succeeds, the same jobs included. */
    for (i = 0; i < 3; i++) {
        submit_op(&ops[i], jobs[i]);
        fl_store_push(h->store, &ops[i]);
    }
    settle(h);
    for (i = 0; i < 3; i++) {
        assert_int_equal(ops[i].result, 0);
        assert_true(jobs[i]->id > first);
        fl_job_free(jobs[i]);
    }
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM jobs"), 4);
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM job_payloads"), 3);
    fl_store_stats_get(h->store, &after);
    assert_true(after.commits > before.commits);
    assert_true(after.ops >= before.ops + 3);
}

/* A real write error, not the fault seam: with RLIMIT_FSIZE below what the WAL needs, the
 * write fails (EFBIG), the group is rolled back with -EIO, and once the limit is lifted the
 * same job goes in. */
static void test_io_error_fails_group(void **state)
{
    enum { BIG = 1 << 20 }; /* more than the files hold so far, so the WAL must grow */
    harness *h = *state;
    int64_t first = submit_simple(h, "echo", FL_STATE_QUEUED, 0);
    char *payload = malloc(BIG);
    spec sp = { .type = "echo", .payload = payload, .payload_len = BIG,
                .state = FL_STATE_QUEUED };
    struct rlimit old, low;
    fl_store_op op, get_op;
    fl_job *job;

    assert_non_null(payload);
    memset(payload, 'b', BIG);
    job = make_job(&sp);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    low = old;
    low.rlim_cur = BIG / 2;
    signal(SIGXFSZ, SIG_IGN);
    fl_store_hold(h->store, 1);
    submit_op(&op, job);
    memset(&get_op, 0, sizeof(get_op));
    get_op.kind = FL_STORE_GET;
    get_op.u.get.id = first;
    fl_store_push(h->store, &op);
    fl_store_push(h->store, &get_op);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &low), 0);
    fl_store_hold(h->store, 0);
    settle(h);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_int_equal(op.result, -EIO);
    assert_int_equal(job->id, 0);
    assert_int_equal(get_op.result, -EIO);
    assert_null(get_op.u.get.job);

    submit_op(&op, job);
    run(h, &op);
    assert_int_equal(op.result, 0);
    assert_true(job->id > first);
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM jobs"), 2);
    fl_job_free(job);
    free(payload);
}

/* A chain: the callback of its first op (a submit) pushes the second (a get of that job). */
typedef struct chain {
    fl_store *store;
    fl_store_op first, second;
    int calls_first, calls_second;
    int order_ok;
} chain;

static void chain_second_cb(fl_store_op *op)
{
    chain *c = op->udata;

    c->calls_second++;
    c->order_ok = c->calls_first == 1;
}

static void chain_first_cb(fl_store_op *op)
{
    chain *c = op->udata;

    c->calls_first++;
    memset(&c->second, 0, sizeof(c->second));
    c->second.kind = FL_STORE_GET;
    c->second.u.get.id = op->u.submit.job->id;
    c->second.cb = chain_second_cb;
    c->second.udata = c;
    fl_store_push(c->store, &c->second);
}

static void chain_start(chain *c, fl_store *s, fl_job *job)
{
    memset(c, 0, sizeof(*c));
    c->store = s;
    submit_op(&c->first, job);
    c->first.cb = chain_first_cb;
    c->first.udata = c;
    fl_store_push(s, &c->first);
}

static void test_callback_pushes(void **state)
{
    harness *h = *state;
    spec sp = { .type = "echo", .payload = "x", .payload_len = 1, .state = FL_STATE_QUEUED };
    fl_job *job = make_job(&sp);
    chain c;

    chain_start(&c, h->store, job);
    settle(h);
    assert_int_equal(c.calls_first, 1);
    assert_int_equal(c.calls_second, 1);
    assert_true(c.order_ok);
    assert_int_equal(c.second.result, 0);
    assert_non_null(c.second.u.get.job);
    assert_int_equal(c.second.u.get.job->id, job->id);
    fl_job_free(c.second.u.get.job);
    fl_job_free(job);
}

/* Close runs the callbacks of everything pushed, including ops pushed by those callbacks. */
static void test_close_drains(void **state)
{
    harness *h = *state;
    spec sp = { .type = "echo", .payload = "x", .payload_len = 1, .state = FL_STATE_QUEUED };
    fl_job *job = make_job(&sp);
    fl_store_op more[3];
    int calls = 0;
    size_t i;
    chain c;

    fl_store_hold(h->store, 1); /* close must release a held writer too */
    chain_start(&c, h->store, job);
    for (i = 0; i < 3; i++) {
        memset(&more[i], 0, sizeof(more[i]));
        more[i].kind = FL_STORE_GET;
        more[i].u.get.id = 1000 + (int64_t)i;
        more[i].cb = count_cb;
        more[i].udata = &calls;
        fl_store_push(h->store, &more[i]);
    }
    assert_int_equal(fl_store_pending(h->store), 4);
    fl_store_close(h->store);
    h->store = NULL;
    assert_int_equal(c.calls_first, 1);
    assert_int_equal(c.calls_second, 1);
    assert_int_equal(calls, 3);
    for (i = 0; i < 3; i++) {
        assert_int_equal(more[i].result, 0);
        assert_int_equal(more[i].answer, FL_STORE_NOT_FOUND);
    }
    assert_true(job->id > 0);
    fl_job_free(c.second.u.get.job);
    fl_job_free(job);
    fl_store_close(NULL);
}

/* What an op found and whether the store worked never share a code: a cancel of a running
 * job in a group that fails on a locked database is a failure with no answer, the same
 * cancel in a group that commits is an answer with no failure. */
static void test_answer_apart_from_failure(void **state)
{
    harness *h = *state;
    int64_t id = submit_simple(h, "busy", FL_STATE_QUEUED, 0);
    fl_store_op op = { .kind = FL_STORE_CANCEL };

    expect_claim(h, "busy", 1, NOW, &id, 1, 0);
    op.u.cancel.id = id;
    op.u.cancel.now = NOW;
    fl_store_inject_fault(h->store, -EBUSY, 1);
    run(h, &op);
    assert_int_equal(op.result, -EBUSY);
    assert_int_equal(op.answer, FL_STORE_OK);
    assert_null(op.u.cancel.job);

    run(h, &op);
    assert_int_equal(op.result, 0);
    assert_int_equal(op.answer, FL_STORE_RUNNING);
    assert_non_null(op.u.cancel.job);
    fl_job_free(op.u.cancel.job);
}

/* remove_db deletes the database with its -wal and -shm, as `rm fling.db*` does. */
static void remove_db(const char *path)
{
    static const char *const suffix[] = { "", "-wal", "-shm" };
    char p[PATH_LEN + 8];

    for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        assert_int_equal(unlink(p), 0);
    }
}

/* A database deleted under the store: nothing is acked into the unlinked file, now or later
 * (reads fail too: they would show a past nobody can see after a restart); a re-open starts
 * a fresh database, whose ids start at 1 again. */
static void test_deleted_db_refused(void **state)
{
    harness *h = *state;
    spec sp = { .type = "echo", .payload = "p", .payload_len = 1, .state = FL_STATE_QUEUED };
    fl_store_answer answer;
    fl_store_stats before, after;
    int64_t id;

    assert_int_equal(submit(h, &sp), 1);
    assert_int_equal(submit(h, &sp), 2);
    remove_db(h->path);
    fl_store_stats_get(h->store, &before);
    assert_int_equal(submit_result(h, &sp, &id), -ESTALE);
    assert_int_equal(submit_result(h, &sp, &id), -ESTALE);
    fl_store_op op = { .kind = FL_STORE_GET };
    op.u.get.id = 1;
    run(h, &op);
    assert_int_equal(op.result, -ESTALE);
    assert_null(op.u.get.job);
    fl_store_stats_get(h->store, &after);
    assert_int_equal(after.failed_commits, before.failed_commits + 3);

    reopen(h);
    assert_null(get(h, 2, &answer));
    assert_int_equal(answer, FL_STORE_NOT_FOUND);
    assert_int_equal(submit(h, &sp), 1);
}

/* A database replaced by another file (a restore under a running daemon) is refused too. */
static void test_replaced_db_refused(void **state)
{
    harness *h = *state;
    spec sp = { .type = "echo", .payload = "p", .payload_len = 1, .state = FL_STATE_QUEUED };
    char other[PATH_LEN + 8];
    int64_t id;
    FILE *f;

    submit(h, &sp);
    snprintf(other, sizeof other, "%s.new", h->path);
    f = fopen(other, "w");
    assert_non_null(f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(other, h->path), 0);
    assert_int_equal(submit_result(h, &sp, &id), -ESTALE);
}

/* Ids are never handed out twice within one database: deleting the newest rows (as a prune
 * would) does not bring their ids back, the schema's AUTOINCREMENT keeps the high-water mark. */
static void test_ids_not_reused(void **state)
{
    harness *h = *state;
    spec sp = { .type = "echo", .payload = "p", .payload_len = 1, .state = FL_STATE_QUEUED };
    int64_t last = 0;

    for (int i = 0; i < 3; i++)
        last = submit(h, &sp);
    sql_int(h->path, "DELETE FROM jobs WHERE id >= 2");
    assert_int_equal(sql_int(h->path, "SELECT max(id) FROM jobs"), 1);
    reopen(h);
    assert_int_equal(submit(h, &sp), last + 1);
}

/* run_expect runs op and checks its result. */
static void run_expect(harness *h, fl_store_op *op, int want)
{
    run(h, op);
    assert_int_equal(op->result, want);
}

/* finish_at records job id's end in state at `at` (ms). */
static void finish_at(harness *h, int64_t id, fl_state state, int64_t at)
{
    fl_store_op op;
    finish_op(&op, id, state);
    op.u.finish.o.finished_at = at;
    run_expect(h, &op, 0);
    fl_job_free(op.u.finish.job);
}

/* prune runs one PRUNE and returns how many jobs it deleted. */
static size_t prune(harness *h, int64_t before, int limit)
{
    fl_store_op op = { .kind = FL_STORE_PRUNE };
    op.u.prune.before = before;
    op.u.prune.limit = limit;
    run_expect(h, &op, 0);
    return op.u.prune.n;
}

/* PRUNE deletes finished jobs that ended before the time, oldest first and at most limit at a
 * time, with their payloads and deliveries; waiting and running jobs and younger ones stay, and
 * the ids of deleted jobs are not handed out again. */
static void test_prune(void **state)
{
    harness *h = *state;
    fl_store_set_hooks(h->store, test_hook, NULL);
    int64_t old_ok = submit_simple(h, "h", FL_STATE_QUEUED, NOW - 10);
    static char large[1024];   /* in job_payloads, not the row: PRUNE must delete it there */
    spec big = { .type = "k", .payload = large, .payload_len = sizeof large, .state = FL_STATE_QUEUED,
                 .run_at = NOW - 10 };
    int64_t old_failed = submit(h, &big);
    int64_t old_cancelled = submit_simple(h, "h", FL_STATE_QUEUED, NOW - 10);
    int64_t young = submit(h, &big);
    int64_t waiting = submit_simple(h, "k", FL_STATE_SCHEDULED, NOW + 100000);
    finish_at(h, old_ok, FL_STATE_SUCCEEDED, NOW - 3000);   /* on_complete: one delivery */
    finish_at(h, old_failed, FL_STATE_FAILED, NOW - 2000);
    cancel_waiting(h, old_cancelled);                       /* finished_at = NOW; on_abort */
    finish_at(h, young, FL_STATE_SUCCEEDED, NOW + 5000);
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM deliveries"), 2);

    assert_int_equal(prune(h, NOW + 1, 1), 1);              /* the oldest first */
    fl_store_answer answer;
    assert_null(get(h, old_ok, &answer));
    assert_int_equal(answer, FL_STORE_NOT_FOUND);
    fl_job_free(get_ok(h, old_failed));
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM deliveries"), 1);   /* the cancel's abort */
    assert_int_equal(prune(h, NOW + 1, 10), 2);             /* fewer than the limit: done */
    assert_int_equal(prune(h, NOW + 1, 10), 0);
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM job_payloads"), 1);   /* young's */
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM deliveries"), 0);
    fl_job_free(get_ok(h, young));
    fl_job_free(get_ok(h, waiting));

    assert_int_equal(prune(h, NOW + 10000, FL_STORE_PRUNE_BATCH), 1);
    assert_int_equal(sql_int(h->path, "SELECT count(*) FROM job_payloads"), 0);
    assert_true(submit_simple(h, "k", FL_STATE_QUEUED, 0) > waiting);
    fl_store_op bad = { .kind = FL_STORE_PRUNE };
    bad.u.prune.limit = 1001;   /* over a page */
    run_expect(h, &bad, -EINVAL);
}

/* A PRUNE batch is bound to the partial index jobs_finished: left to choose, SQLite took
 * jobs_state and read every finished job at each batch. Bound, a file without that index is
 * refused at open (the statement cannot be prepared) rather than scanned once a minute. */
static void test_prune_index(void **state)
{
    harness *h = *state;
    char err[ERR_LEN] = "";

    fl_store_close(h->store);
    h->store = NULL;
    sql_exec(h->path, "DROP INDEX jobs_finished");
    assert_true(open_store(h, err) < 0);
    assert_null(h->store);
    assert_non_null(strstr(err, "jobs_finished"));
}

/* last_key returns LAST_KEY's answer for type and prefix (caller frees), NULL if none. */
static char *last_key(harness *h, const char *type, const char *prefix)
{
    fl_store_op op = { .kind = FL_STORE_LAST_KEY };
    op.u.last_key.type = type;
    op.u.last_key.prefix = prefix;
    run_expect(h, &op, 0);
    return op.u.last_key.key;
}

/* LAST_KEY: the greatest key of the type with the prefix, not another type's, not another prefix's. */
static void test_last_key(void **state)
{
    harness *h = *state;
    static const struct { const char *type, *key; } jobs[] = {
        { "p", "cron:000000000100" }, { "p", "cron:000000000300" }, { "p", "cron:000000000200" },
        { "p", "cros:999" }, { "p", "cron;1" }, { "q", "cron:000000000900" },
    };
    for (size_t i = 0; i < sizeof jobs / sizeof *jobs; i++) {
        spec sp = { .type = jobs[i].type, .key = jobs[i].key, .state = FL_STATE_QUEUED };
        submit(h, &sp);
    }
    char *k = last_key(h, "p", "cron:");
    assert_string_equal(k, "cron:000000000300");
    free(k);
    assert_null(last_key(h, "r", "cron:"));
    fl_store_op bad = { .kind = FL_STORE_LAST_KEY };
    bad.u.last_key.type = "p";
    bad.u.last_key.prefix = "";
    run_expect(h, &bad, -EINVAL);
}

/* check_private asserts path is a regular file of mode 0600. */
static void check_private(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    if ((st.st_mode & 07777) != 0600)
        fail_msg("%s has mode %04o, want 0600", path, (unsigned)(st.st_mode & 07777));
}

/* The database, -wal and -shm are 0600 whatever the umask: open()'s mode would give 0644
 * under 022 and an unwritable 0400 under 0277. */
static void test_files_private(void **state)
{
    static const mode_t masks[] = { 022, 0277 };
    harness *h = *state;
    spec sp = { .type = "echo", .payload = "p", .payload_len = 1, .state = FL_STATE_QUEUED };
    char path[PATH_LEN + 8], err[ERR_LEN] = "";

    fl_store_close(h->store);
    h->store = NULL;
    for (size_t i = 0; i < sizeof masks / sizeof *masks; i++) {
        mode_t old = umask(masks[i]);
        snprintf(h->path, sizeof h->path, "%s/private%zu.db", h->dir, i);
        int rc = open_store(h, err);
        umask(old);
        assert_int_equal(rc, 0);
        submit(h, &sp);
        check_private(h->path);
        snprintf(path, sizeof path, "%s-wal", h->path);
        check_private(path);
        snprintf(path, sizeof path, "%s-shm", h->path);
        check_private(path);
        fl_store_close(h->store);
        h->store = NULL;
    }
    assert_int_equal(open_store(h, err), 0);
}

static void test_submit_invalid(void **state)
{
    harness *h = *state;
    spec sp = { .type = "echo", .state = FL_STATE_RUNNING };
    fl_job *job = make_job(&sp);
    fl_store_op op;

    submit_op(&op, job);
    run(h, &op);
    assert_int_equal(op.result, -EINVAL);
    assert_int_equal(job->id, 0);
    fl_job_free(job);
}

/* ---- events ---------------------------------------------------------------------------- */

static void record_event(const fl_job *job, fl_store_event ev, void *udata)
{
    harness *h = udata;
    size_t len = strlen(h->events);

    snprintf(h->events + len, sizeof h->events - len, "%lld:%s ", (long long)job->id,
             fl_store_event_name(ev));
}

/* An op's callback notes itself in the event log, to show where events fall beside it. */
static void log_cb(fl_store_op *op)
{
    harness *h = op->udata;
    size_t len = strlen(h->events);

    snprintf(h->events + len, sizeof h->events - len, "cb ");
}

/* expect_events checks the log since the last call ("id:name " per event, "cb " per callback
 * of log_cb) and forgets it. */
static void expect_events(harness *h, const char *want)
{
    assert_string_equal(h->events, want);
    h->events[0] = '\0';
}

static void free_row(fl_job **job)
{
    fl_job_free(*job);
    *job = NULL;
}

/* Every committed change comes out of the store once, in commit order and before the callback
 * of its op; what changed nothing, or was rolled back, comes out as nothing. */
static void test_events(void **state)
{
    harness *h = *state;
    spec keyed = { .type = "t", .key = "k", .payload = "p", .payload_len = 1, .state = FL_STATE_QUEUED };
    char want[EVENTS_LEN];
    fl_store_op op, ops[3];
    fl_job *dup;
    int64_t a, b, c;

    h->on_change = record_event;
    reopen(h);
    assert_string_equal(fl_store_event_name(FL_STORE_EV_COUNT), "unknown");

    /* A new job, then a duplicate of it: one "submitted". */
    a = submit(h, &keyed);
    dup = make_job(&keyed);
    fl_store_submit(h->store, &op, dup, log_cb, h);
    settle(h);
    assert_int_equal(op.answer, FL_STORE_DUPLICATE);
    fl_job_free(dup);
    snprintf(want, sizeof want, "%lld:submitted cb ", (long long)a);
    expect_events(h, want);

    /* Claimed; a cancel that finds it running changes nothing; its FINISH does. */
    fl_store_claim(h->store, &op, "t", 10, NOW, log_cb, h);
    settle(h);
    assert_int_equal(op.u.claim.n, 1);
    fl_store_list_free(op.u.claim.jobs, op.u.claim.n);
    fl_store_cancel(h->store, &op, a, NOW, log_cb, h);
    settle(h);
    assert_int_equal(op.answer, FL_STORE_RUNNING);
    free_row(&op.u.cancel.job);
    snprintf(want, sizeof want, "%lld:started cb cb ", (long long)a);
    expect_events(h, want);
    fl_store_outcome cancelled = { .state = FL_STATE_CANCELLED, .finished_at = NOW };
    fl_store_finish(h->store, &op, a, &cancelled, log_cb, h);
    settle(h);
    free_row(&op.u.finish.job);
    snprintf(want, sizeof want, "%lld:cancelled cb ", (long long)a);
    expect_events(h, want);

    /* One group, in push order: a retry, a requeue, a status bit, a status bit it already has,
     * and a cancel of a waiting job. */
    b = submit_simple(h, "u", FL_STATE_QUEUED, 0);
    c = submit_simple(h, "v", FL_STATE_QUEUED, 0);
    h->events[0] = '\0';
    fl_store_claim(h->store, &op, "u", 1, NOW, NULL, NULL);
    settle(h);
    fl_store_list_free(op.u.claim.jobs, op.u.claim.n);
    h->events[0] = '\0';
    fl_store_hold(h->store, 1);
    fl_store_outcome retry = { .state = FL_STATE_SCHEDULED, .run_at = NOW + 1000 };
    fl_store_finish(h->store, &ops[0], b, &retry, log_cb, h);
    fl_store_set_status(h->store, &ops[1], b, FL_STATUS_ABORTED, log_cb, h);
    fl_store_cancel(h->store, &ops[2], c, NOW, log_cb, h);
    fl_store_set_status(h->store, &op, b, FL_STATUS_ABORTED, log_cb, h);
    fl_store_hold(h->store, 0);
    settle(h);
    free_row(&ops[0].u.finish.job);
    free_row(&ops[1].u.set_status.job);
    free_row(&ops[2].u.cancel.job);
    free_row(&op.u.set_status.job);
    snprintf(want, sizeof want, "%lld:retrying cb %lld:status cb %lld:cancelled cb cb ", (long long)b,
             (long long)b, (long long)c);
    expect_events(h, want);

    /* A requeue and an end: requeued, succeeded, failed. */
    fl_store_claim(h->store, &op, "u", 1, NOW + 2000, NULL, NULL);
    settle(h);
    assert_int_equal(op.u.claim.n, 1);
    fl_store_list_free(op.u.claim.jobs, op.u.claim.n);
    fl_store_outcome requeue = { .state = FL_STATE_QUEUED, .run_at = NOW };
    fl_store_finish(h->store, &op, b, &requeue, NULL, NULL);
    settle(h);
    free_row(&op.u.finish.job);
    fl_store_outcome failed = { .state = FL_STATE_FAILED, .finished_at = NOW };
    fl_store_finish(h->store, &op, b, &failed, NULL, NULL);
    settle(h);
    free_row(&op.u.finish.job);
    snprintf(want, sizeof want, "%lld:started %lld:requeued %lld:failed ", (long long)b, (long long)b,
             (long long)b);
    expect_events(h, want);

    /* A group that fails emits nothing, though its ops would have changed jobs. */
    fl_store_inject_fault(h->store, -ENOSPC, 1);
    keyed.key = "k2";
    dup = make_job(&keyed);
    fl_store_submit(h->store, &op, dup, log_cb, h);
    settle(h);
    assert_int_equal(op.result, -ENOSPC);
    fl_job_free(dup);
    expect_events(h, "cb ");
}

/* With readers, the reads that need only what is committed are answered while the writer is
 * held in the middle of a group: a GET with its deliveries, a page, the counts (which do not
 * see the held submit); a batch GET (ordered after the writer's earlier ops) comes once the
 * group is done, found ids in order, each once. */
static void test_reads_beside_the_writer(void **state)
{
    harness *h = *state;
    spec sp = { .type = "r", .payload = "p", .payload_len = 1, .state = FL_STATE_QUEUED };
    fl_store_op held, g, l, c, many;
    fl_store_query q = { .limit = 10 };
    fl_job *job = make_job(&sp);
    int64_t ids[3], wanted[4];
    int got = 0, batch = 0;

    h->readers = 2;
    reopen(h);
    assert_int_equal(fl_store_readers(h->store), 2);
    for (int i = 0; i < 3; i++)
        ids[i] = submit(h, &sp);

    fl_store_hold(h->store, 1);
    submit_op(&held, job);
    fl_store_push(h->store, &held);
    fl_store_get_committed(h->store, &g, ids[1], count_cb, &got);
    fl_store_list_committed(h->store, &l, &q, count_cb, &got);
    fl_store_count_committed(h->store, &c, 1, count_cb, &got);
    wanted[0] = ids[2], wanted[1] = 999, wanted[2] = ids[0], wanted[3] = ids[2];
    fl_store_get_many(h->store, &many, wanted, 4, count_cb, &batch);
    for (int64_t deadline = fl_job_now_ms() + WAIT_MS; got < 3; usleep(2000)) {
        assert_true(fl_job_now_ms() < deadline);
        fl_store_reap(h->store);
    }
    assert_int_equal(batch, 0);
    assert_int_equal(g.result, 0);
    assert_int_equal(g.answer, FL_STORE_OK);
    assert_int_equal(g.u.get.job->id, ids[1]);
    assert_int_equal(l.result, 0);
    assert_int_equal(l.u.list.n, 3);
    assert_int_equal(l.u.list.jobs[0]->id, ids[2]);
    assert_int_equal(c.result, 0);
    assert_int_equal(c.u.count.n, 1);
    assert_int_equal(c.u.count.rows[0].n, 3);

    fl_store_hold(h->store, 0);
    settle(h);
    assert_int_equal(held.result, 0);
    assert_int_equal(batch, 1);
    assert_int_equal(many.result, 0);
    assert_int_equal(many.u.get.n_jobs, 2);
    assert_int_equal(many.u.get.jobs[0]->id, ids[0]);
    assert_int_equal(many.u.get.jobs[1]->id, ids[2]);
    fl_store_list_free(many.u.get.jobs, many.u.get.n_jobs);
    fl_job_free(g.u.get.job);
    fl_store_deliveries_free(g.u.get.deliveries, g.u.get.n_deliveries);
    fl_store_list_free(l.u.list.jobs, l.u.list.n);
    free(c.u.count.rows);
    fl_job_free(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_submit_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_payload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrations_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_payload_of_an_older_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_version_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_updated_at_and_changed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_count_all_states, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deliveries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_queued_not_yet_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_answers_its_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_fails_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cork_makes_one_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_beside_the_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_op_error_fails_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submits_in_one_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_error_fails_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_pushes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_apart_from_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_db_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replaced_db_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_not_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_private, setup, teardown),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
