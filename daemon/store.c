/* store.c — the store's engine, the part that is the same for every backend: the op queue,
 * the writer thread and its group transactions, the validation of ops, which callback
 * deliveries a terminal state creates, and the change events. The rows themselves are the
 * backend's (store_backend.h; store_sqlite.c), picked by name at open.
 *
 * DESIGN. The loop thread appends ops to `pending` under `mu` and signals a writer. The writer
 * takes the whole pending list, releases the mutex, and runs the group in one backend
 * transaction (begin, each op, check_alive, commit; a backend with submit_many / finish_many
 * gets each run of consecutive SUBMITs / FINISHes in one call); it never holds the mutex
 * while the backend works, so the loop can keep pushing during a commit (those ops form the
 * next group).
 * It then appends the group to `done`, signals `done_cv` (for fl_store_close) and calls
 * notify(). A backend with a second writer connection (PostgreSQL) runs a second writer
 * thread for groups of plain SUBMITs while the first is busy (see store_writer), so one
 * group's statements run while the other's COMMIT waits for its flush. fl_store_reap detaches the done list under the mutex and, without it, handles the
 * ops one by one: the events of what the op committed, then its callback, so a callback may
 * push again. An error of the store (disk full, I/O, a lost file) rolls the whole group back
 * and gives every op of it the same errno: a caller never sees half a group, and a listener
 * never hears of one. An error of one op's own data (a constraint, a value too big) fails that
 * op alone and the group runs again without it (run_group).
 *
 * Readers (a backend with reader_open, fl_store_options.readers): threads that take the reads
 * queued by read_start from `rd_pending` one at a time, run each alone on their own connection
 * and append it to `done` as the writer does; fl_store_reap holds a GET_MANY back until the
 * writer's ops pushed before it were reaped.
 *
 * About 1,300 lines: one constructor per op kind (the only way callers fill an op) sits
 * here beside the validation and the events of each kind, so a new kind is one file's change. */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rediskeys.h"
#include "store_backend.h"

/* The backends this flingd has, by the name [store] backend = gives. */
#ifdef FL_POSTGRES
static const fl_store_backend *const backends[] = { &fl_store_sqlite, &fl_store_pg };
#define BACKEND_NAMES "sqlite, postgres"
#else
static const fl_store_backend *const backends[] = { &fl_store_sqlite };
#define BACKEND_NAMES "sqlite"
#endif

/* One writer: a thread and the backend connection its groups run on. The first runs any group
 * on s->b. A second (a backend with writer_open, fl_store_options.writers = 2) runs, on a
 * connection of its own, only a group of SUBMITs without an Idempotency-Key, taken while the
 * first is busy with a group that reads no set of jobs (see scans_jobs): its rows are new, no
 * earlier group's writes matter to it and none of its rows is what another group's op waits
 * for, so it may commit before or after the first's, and no op pushed before it can see them
 * (a CLAIM of the first's group never claims a job submitted after it). While it has a group
 * in flight the first starts only another such group, so every other op still sees every
 * group taken before it committed (a CLAIM sees the jobs of the SUBMITs pushed before it); and
 * groups reach `done` in the order they were taken (one done early is parked until the one
 * before it is handed), so reaping stays in push order. */
typedef struct store_writer {
    struct fl_store *s;
    void *b;                       /* the backend connection it writes on */
    pthread_t thread;
    int started;
    pthread_cond_t cv;             /* under mu: it may take the pending ops (may_take), or stop */
    int cv_ready;
    int busy;                      /* under mu: running a group */
    int scans;                     /* under mu: that group holds an op of scans_jobs */
    int failing;                   /* under mu: its last group with writes failed (see stats) */
    uint64_t seq;                  /* under mu: the number of the group it runs or has parked */
    fl_store_op *parked, *parked_tail;   /* under mu: its group, done before the one before it */
    int op_fault_err;              /* the first's thread only: fl_store_inject_op_fault's */
    fl_store_kind op_fault_kind;
} store_writer;

struct fl_store {
    const fl_store_backend *be;
    void *b;                       /* the backend's state: open and recover, then the writer's */
    char *node;                    /* the owner this daemon's claims record */
    fl_store_hooks hooks;
    struct store_writer writers[2];
    int n_writers;                 /* 1, or 2 with a backend's second writer (see store_writer) */
    int sync_ready;                /* mu and the condition variables are initialised */
    pthread_mutex_t mu;            /* guards every field down to `stats` */
    pthread_cond_t done_cv;        /* fl_store_close: a group is done */
    fl_store_op *pending, *pending_tail;
    int pending_mixed;             /* pending holds an op the second writer may not run */
    int pending_scans;             /* pending holds an op of scans_jobs */
    uint64_t taken, handed;        /* groups taken by the writers, and handed to `done` */
    fl_store_op *done, *done_tail;
    int stop;
    int hold;                      /* fl_store_hold: start no new group */
    int corked_ops;                /* ops pushed under a cork: no group starts until the uncork */
    int fault_err, fault_count;    /* fl_store_inject_fault */
    int op_fault_err;              /* fl_store_inject_op_fault: 0, or the error ... */
    fl_store_kind op_fault_kind;   /* ... the next op of this kind gets */
    fl_store_stats stats;
    fl_store_hook_fn hook;         /* a type's on_complete/on_abort; called on the writer */
    const void *hook_arg;
    size_t outstanding;            /* loop thread only: pushed, not yet reaped */
    int corked;                    /* loop thread only: fl_store_cork: 1, 2 once an op was pushed */
    int reaping;                   /* loop thread only: inside fl_store_reap */
    /* The readers (fl_store_options.readers): threads that run the reads pushed with read_start
     * one op at a time, each on its backend connection, and hand them to `done` like the writer. */
    struct store_reader *readers;
    int n_readers;                 /* opened; their threads started or not (see stop_readers) */
    int rd_sync_ready;             /* rd_cv is initialised */
    pthread_cond_t rd_cv;          /* readers: rd_pending, or rd_stop (under mu) */
    fl_store_op *rd_pending, *rd_pending_tail;   /* under mu */
    int rd_stop;                   /* under mu */
    uint64_t pushed, reaped;       /* loop thread only: the writer's ops pushed, and reaped */
    fl_store_op *held, *held_tail; /* loop thread only: reads done before a writer's op pushed
                                    * ahead of them was reaped (see fl_store_reap) */
};

/* One reader: its thread and the backend's connection it reads on. */
typedef struct store_reader {
    fl_store *s;
    void *conn;
    pthread_t thread;
    int started;
} store_reader;

void fl_store_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

fl_store_answer fl_store_cancel_answer(fl_state state)
{
    if (state == FL_STATE_RUNNING)
        return FL_STORE_RUNNING;
    return fl_proto_state_terminal(state) ? FL_STORE_ENDED : FL_STORE_OK;
}

static const fl_store_backend *find_backend(const char *name)
{
    for (size_t i = 0; i < sizeof backends / sizeof *backends; i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

int fl_store_backend_known(const char *name)
{
    return name && find_backend(name) != NULL;
}

const char *fl_store_backend_names(void)
{
    return BACKEND_NAMES;
}

int fl_store_url_check(const char *backend, const char *url, char *why, size_t len)
{
    const fl_store_backend *be = find_backend(backend ? backend : "sqlite");

    if (!be || !be->check_url) {
        snprintf(why, len, "the %s backend takes no url", backend ? backend : "sqlite");
        return -ENOTSUP;
    }
    return be->check_url(url, why, len);
}

void fl_store_set_hooks(fl_store *s, fl_store_hook_fn fn, const void *arg)
{
    s->hook = fn;
    s->hook_arg = arg;
}

/* ---- running a group (writer thread) --------------------------------------------------- */

/* op_valid tells whether op's inputs are within its contract (store.h); a malformed op gets
 * -EINVAL without failing the others of its group. */
static int op_valid(const fl_store_op *op)
{
    switch (op->kind) {
    case FL_STORE_SUBMIT: {
        const fl_job *job = op->u.submit.job;
        return job && job->type && (job->state == FL_STATE_QUEUED || job->state == FL_STATE_SCHEDULED);
    }
    case FL_STORE_LIST: {
        const fl_store_query *q = &op->u.list.q;
        return q->limit >= 1 && q->limit <= FL_STORE_PAGE_MAX && q->after >= 0 &&
               (!q->has_state || ((int)q->state >= 0 && q->state < FL_STATE_COUNT));
    }
    case FL_STORE_CLAIM:
        return op->u.claim.type && op->u.claim.limit >= 1;
    case FL_STORE_FINISH: {
        fl_state st = op->u.finish.o.state;
        return (int)st >= 0 && st < FL_STATE_COUNT && st != FL_STATE_RUNNING;
    }
    case FL_STORE_CHANGED:
        return op->u.changed.limit >= 1 && op->u.changed.limit <= FL_STORE_PAGE_MAX &&
               op->u.changed.after >= 0;
    case FL_STORE_DELIVERY_TAKE:
        return op->u.take.limit >= 1 && op->u.take.limit <= FL_STORE_PAGE_MAX;
    case FL_STORE_DELIVERY_DONE:
        return (unsigned)op->u.done.state <= FL_DELIVERY_FAILED;
    case FL_STORE_LAST_KEY:
        return op->u.last_key.type && op->u.last_key.prefix && op->u.last_key.prefix[0];
    case FL_STORE_SWEEP:
        return 1;
    case FL_STORE_PRUNE:
        return op->u.prune.limit >= 1 && op->u.prune.limit <= FL_STORE_PAGE_MAX && op->u.prune.before >= 0;
    case FL_STORE_PAUSE:
        return !op->u.pause.type || op->u.pause.paused == 0 || op->u.pause.paused == 1;
    case FL_STORE_GET:
    case FL_STORE_CANCEL:
    case FL_STORE_SET_STATUS:
    case FL_STORE_COUNT:
    case FL_STORE_RETRY:
        return 1;
    }
    return 0;
}

/* add_deliveries hands the backend the callbacks of job's terminal state, in the transaction
 * that commits that state: the job's own Fling-Callback URL and its type's hook. The policy
 * lives here so that every backend creates the same deliveries. */
static int add_deliveries(store_writer *w, const fl_job *job)
{
    fl_store *s = w->s;
    int abort = job->state != FL_STATE_SUCCEEDED, rc = 0;
    const char *hook = s->hook && job->type ? s->hook(s->hook_arg, job->type, abort) : NULL;

    if (job->callback)
        rc = s->be->add_delivery(w->b, job->id, abort, job->callback);
    if (!rc && hook)
        rc = s->be->add_delivery(w->b, job->id, abort, hook);
    return rc;
}

/* ended_job is the job op moved into a terminal state, if it did, else NULL. */
static const fl_job *ended_job(const fl_store_op *op)
{
    if (op->result || op->answer != FL_STORE_OK)
        return NULL;
    if (op->kind == FL_STORE_CANCEL)
        return op->u.cancel.job;
    if (op->kind == FL_STORE_FINISH && op->u.finish.job && fl_proto_state_terminal(op->u.finish.job->state))
        return op->u.finish.job;
    return NULL;
}

static int run_op(store_writer *w, fl_store_op *op)
{
    const fl_store_backend *be = w->s->be;
    void *b = w->b;
    const fl_job *ended;
    int rc = 0;

    if (!op_valid(op)) {
        op->result = -EINVAL;
        return 0;
    }
    if (w->op_fault_err && op->kind == w->op_fault_kind) {
        rc = w->op_fault_err;
        w->op_fault_err = 0;
        return rc;
    }
    switch (op->kind) {
    case FL_STORE_SUBMIT: rc = be->submit(b, op); break;
    case FL_STORE_GET: rc = be->get(b, op); break;
    case FL_STORE_LIST: rc = be->list(b, op); break;
    case FL_STORE_CANCEL: rc = be->cancel(b, op); break;
    case FL_STORE_SET_STATUS: rc = be->set_status(b, op); break;
    case FL_STORE_CLAIM: rc = be->claim(b, op); break;
    case FL_STORE_FINISH: rc = be->finish(b, op); break;
    case FL_STORE_COUNT: rc = be->count(b, op); break;
    case FL_STORE_CHANGED: rc = be->changed(b, op); break;
    case FL_STORE_DELIVERY_TAKE: rc = be->delivery_take(b, op); break;
    case FL_STORE_DELIVERY_DONE: rc = be->delivery_done(b, op); break;
    case FL_STORE_PAUSE: rc = be->pause(b, op); break;
    case FL_STORE_RETRY: rc = be->retry(b, op); break;
    case FL_STORE_PRUNE: rc = be->prune(b, op); break;
    case FL_STORE_LAST_KEY: rc = be->last_key(b, op); break;
    case FL_STORE_SWEEP: rc = be->sweep ? be->sweep(b, op) : 0; break;
    }
    if (!rc && (ended = ended_job(op)))
        rc = add_deliveries(w, ended);
    return rc;
}

/* clear_outputs resets op's out fields, so a failed group can free exactly what it made. */
static void clear_outputs(fl_store_op *op)
{
    op->result = 0;
    op->answer = FL_STORE_OK;
    switch (op->kind) {
    case FL_STORE_SUBMIT:
        break;
    case FL_STORE_GET:
        op->u.get.job = NULL;
        op->u.get.deliveries = NULL;
        op->u.get.n_deliveries = 0;
        op->u.get.jobs = NULL;
        op->u.get.n_jobs = 0;
        break;
    case FL_STORE_LIST:
        op->u.list.jobs = NULL;
        op->u.list.n = 0;
        op->u.list.next = 0;
        break;
    case FL_STORE_CANCEL:
        op->u.cancel.job = NULL;
        op->u.cancel.elsewhere = 0;
        break;
    case FL_STORE_CLAIM:
        op->u.claim.jobs = NULL;
        op->u.claim.n = 0;
        op->u.claim.next_run_at = 0;
        break;
    case FL_STORE_COUNT:
        op->u.count.rows = NULL;
        op->u.count.n = 0;
        break;
    case FL_STORE_SET_STATUS:
        op->u.set_status.job = NULL;
        op->u.set_status.changed = 0;
        break;
    case FL_STORE_FINISH:
        op->u.finish.job = NULL;
        break;
    case FL_STORE_CHANGED:
        op->u.changed.jobs = NULL;
        op->u.changed.n = 0;
        op->u.changed.next = 0;
        break;
    case FL_STORE_DELIVERY_TAKE:
        op->u.take.items = NULL;
        op->u.take.n = 0;
        op->u.take.next_at = 0;
        break;
    case FL_STORE_DELIVERY_DONE:
        break;
    case FL_STORE_PAUSE:
        op->u.pause.types = NULL;
        op->u.pause.n = 0;
        break;
    case FL_STORE_RETRY:
        op->u.retry.job = NULL;
        break;
    case FL_STORE_PRUNE:
        op->u.prune.n = 0;
        break;
    case FL_STORE_SWEEP:
        op->u.sweep.ids = NULL;
        op->u.sweep.jobs = op->u.sweep.deliveries = 0;
        break;
    case FL_STORE_LAST_KEY:
        op->u.last_key.key = NULL;
        break;
    }
}

/* fail_op frees what op produced in a group that was rolled back and gives it err. */
static void fail_op(fl_store_op *op, int err)
{
    switch (op->kind) {
    case FL_STORE_SUBMIT:
        if (op->u.submit.job)
            op->u.submit.job->id = 0;
        break;
    case FL_STORE_GET:
        fl_job_free(op->u.get.job);
        fl_store_deliveries_free(op->u.get.deliveries, op->u.get.n_deliveries);
        fl_store_list_free(op->u.get.jobs, op->u.get.n_jobs);
        break;
    case FL_STORE_LIST:
        fl_store_list_free(op->u.list.jobs, op->u.list.n);
        break;
    case FL_STORE_CANCEL:
        fl_job_free(op->u.cancel.job);
        break;
    case FL_STORE_CLAIM:
        fl_store_list_free(op->u.claim.jobs, op->u.claim.n);
        break;
    case FL_STORE_COUNT:
        free(op->u.count.rows);
        break;
    case FL_STORE_SET_STATUS:
        fl_job_free(op->u.set_status.job);
        break;
    case FL_STORE_FINISH:
        fl_job_free(op->u.finish.job);
        break;
    case FL_STORE_CHANGED:
        fl_store_list_free(op->u.changed.jobs, op->u.changed.n);
        break;
    case FL_STORE_DELIVERY_TAKE:
        fl_store_deliveries_free(op->u.take.items, op->u.take.n);
        break;
    case FL_STORE_DELIVERY_DONE:
        break;
    case FL_STORE_PAUSE:
        free(op->u.pause.types);
        break;
    case FL_STORE_RETRY:
        fl_job_free(op->u.retry.job);
        break;
    case FL_STORE_PRUNE:
        break;
    case FL_STORE_SWEEP:
        free(op->u.sweep.ids);
        break;
    case FL_STORE_LAST_KEY:
        free(op->u.last_key.key);
        break;
    }
    clear_outputs(op);
    op->result = err;
}

static const char *kind_name(fl_store_kind kind)
{
    static const char *const names[] = {
        [FL_STORE_SUBMIT] = "submit", [FL_STORE_GET] = "get", [FL_STORE_LIST] = "list",
        [FL_STORE_CANCEL] = "cancel", [FL_STORE_SET_STATUS] = "set-status", [FL_STORE_CLAIM] = "claim",
        [FL_STORE_FINISH] = "finish", [FL_STORE_COUNT] = "count", [FL_STORE_CHANGED] = "changed",
        [FL_STORE_DELIVERY_TAKE] = "delivery-take", [FL_STORE_DELIVERY_DONE] = "delivery-done",
        [FL_STORE_PAUSE] = "pause", [FL_STORE_RETRY] = "retry", [FL_STORE_PRUNE] = "prune",
        [FL_STORE_LAST_KEY] = "last-key", [FL_STORE_SWEEP] = "sweep",
    };
    return (unsigned)kind < sizeof names / sizeof *names ? names[kind] : "unknown";
}

/* Errors that come from one op's data (a constraint, a value too big or out of range), not from
 * the store: such an op fails alone, and its group is run again without it, so that one bad
 * op cannot turn the submits committed beside it into 503s. */
static int op_error(int rc)
{
    return rc == -EINVAL || rc == -E2BIG || rc == -EEXIST || rc == -ERANGE;
}

/* The most ops one submit_many or finish_many call gets (an array on the writer's stack); a
 * longer run of them is several calls. */
#define BATCH_MAX 256

typedef int (*many_fn)(void *b, fl_store_op **ops, size_t n);

/* batch_fn is the backend's function that takes a run of ops of kind at once, or NULL. */
static many_fn batch_fn(const fl_store_backend *be, fl_store_kind kind)
{
    return kind == FL_STORE_SUBMIT ? be->submit_many : kind == FL_STORE_FINISH ? be->finish_many : NULL;
}

/* run_batch runs the ops of one kind that follow one another from *at (not failed alone) in
 * one call of the backend's batch_fn, adds the deliveries of the jobs they ended, and moves
 * *at past them: 0, or the error that fails the group. A run of fewer than two, or one an
 * injected op fault is waiting for, is left to run_op (*at stays). may_commit: nothing ran
 * before it in this transaction and nothing may fail the group after it, so a run of SUBMITs
 * that ends the group goes to the backend's submit_commit, which sets *committed if it
 * committed the group too. */
static int run_batch(store_writer *w, fl_store_op **at, int may_commit, int *committed)
{
    fl_store_kind kind = (*at)->kind;
    many_fn many = batch_fn(w->s->be, kind);
    fl_store_op *batch[BATCH_MAX], *op;
    const fl_job *ended;
    size_t n = 0;
    int rc;

    if (!many || (w->op_fault_err && w->op_fault_kind == kind))
        return 0;
    for (op = *at; op && op->kind == kind && n < BATCH_MAX; op = op->next) {
        if (op->alone)
            continue;
        if (op_valid(op))
            batch[n++] = op;
        else
            op->result = -EINVAL;   /* as run_op would: it fails alone, nothing written */
    }
    if (n < 2)
        return 0;
    *at = op;
    if (may_commit && !op && kind == FL_STORE_SUBMIT && w->s->be->submit_commit) {
        rc = w->s->be->submit_commit(w->b, batch, n);
        *committed = rc == 1;
        return rc < 0 ? rc : 0;
    }
    rc = many(w->b, batch, n);
    for (size_t i = 0; i < n && !rc; i++)
        if ((ended = ended_job(batch[i])))
            rc = add_deliveries(w, ended);
    return rc;
}

/* run_once runs the ops not failed alone in one transaction: 0 if committed, else the error,
 * with *culprit the op that raised it (NULL if the group as a whole failed, or a batch did:
 * then *in_batch is 1). batch: hand runs of SUBMITs and FINISHes to the backend at once. */
static int run_once(store_writer *w, fl_store_op *ops, int fault, int batch, fl_store_op **culprit, int *in_batch)
{
    const fl_store_backend *be = w->s->be;
    fl_store_op *op, *at;
    int rc, ran = 0, committed = 0;

    *culprit = NULL;
    *in_batch = 0;
    rc = be->begin(w->b, fl_job_now_ms());
    for (op = ops; op && !rc;) {
        at = op;
        if (batch && (rc = run_batch(w, &at, !fault && !ran, &committed))) {
            *in_batch = 1;
        } else if (at != op) {
            op = at;   /* ran a batch: go on after it */
            ran = 1;
        } else {
            if (!op->alone) {
                ran = 1;
                if ((rc = run_op(w, op)))
                    *culprit = op;
            }
            op = op->next;
        }
    }
    if (!rc)
        rc = fault;
    if (!rc && !committed)
        rc = be->check_alive(w->b);
    if (!rc && !committed)
        rc = be->commit(w->b);
    if (rc)
        be->rollback(w->b);
    return rc;
}

/* run_group runs ops in one transaction: 0 if committed (ops failed alone have their error),
 * else the errno every op now has. */
static int run_group(store_writer *w, fl_store_op *ops, int fault)
{
    fl_store_op *op, *culprit;
    int rc, batch = 1, in_batch;

    for (op = ops; op; op = op->next) {
        op->alone = 0;
        clear_outputs(op);
    }
    while ((rc = run_once(w, ops, fault, batch, &culprit, &in_batch)) && (culprit || in_batch) && op_error(rc)) {
        for (op = ops; op != culprit; op = op->next)
            if (!op->alone)
                fail_op(op, 0);   /* undone by the rollback: run again */
        if (!culprit) {
            batch = 0;   /* one of the batch's ops: run them one by one to find which */
            fl_log(LOG_WARNING, "store: a batch of ops failed on the data of one of them (%s); its group"
                   " runs again op by op", strerror(-rc));
            continue;
        }
        fail_op(culprit, rc);
        culprit->alone = 1;
        fl_log(LOG_WARNING, "store: a %s op failed on its own (%s); its group runs again without it",
               kind_name(culprit->kind), strerror(-rc));
    }
    if (!rc)
        return 0;
    for (op = ops; op; op = op->next)
        if (!op->alone)
            fail_op(op, rc);
    return rc;
}

/* ---- the writer thread ----------------------------------------------------------------- */

/* group_writes tells, once the group ran, whether any op of it changes rows (see
 * fl_store_stats.failing). A SWEEP or a TAKE, which the loop pushes every second, writes only
 * if it found rows: one that found none commits even on a full disk, and must not say that the
 * store writes again. */
static int group_writes(const fl_store_op *ops)
{
    for (const fl_store_op *op = ops; op; op = op->next) {
        switch (op->kind) {
        case FL_STORE_GET:
        case FL_STORE_LIST:
        case FL_STORE_COUNT:
        case FL_STORE_CHANGED:
        case FL_STORE_LAST_KEY:
            break;
        case FL_STORE_SWEEP:
            if (op->u.sweep.jobs || op->u.sweep.deliveries)
                return 1;
            break;
        case FL_STORE_DELIVERY_TAKE:
            if (op->u.take.n)
                return 1;
            break;
        case FL_STORE_PAUSE:
            if (op->u.pause.type)
                return 1;
            break;
        default:
            return 1;
        }
    }
    return 0;
}

/* hand_done appends the ops first .. last (linked through next) to the done list for
 * fl_store_reap and wakes the loop: called under mu, it releases mu around the notify and
 * returns holding it again. The writer's groups and the readers' reads both end here. */
static void hand_done(fl_store *s, fl_store_op *first, fl_store_op *last)
{
    if (s->done_tail)
        s->done_tail->next = first;
    else
        s->done = first;
    s->done_tail = last;
    pthread_cond_broadcast(&s->done_cv);
    pthread_mutex_unlock(&s->mu);
    if (s->hooks.notify)
        s->hooks.notify(s->hooks.udata);
    pthread_mutex_lock(&s->mu);
}

/* note_failing records the outcome of w's group that wrote (under mu). A group the first
 * commits also clears an idle second's failure: the store writes again, and the second's next
 * group connects again. */
static void note_failing(fl_store *s, store_writer *w, int rc)
{
    w->failing = rc;
    if (!rc && w == s->writers && s->n_writers > 1 && !s->writers[1].busy)
        s->writers[1].failing = 0;
}

/* scans_jobs: whether op reads a set of jobs, which a second writer's jobs must not join
 * while it runs (see store_writer). Ops by id are not: no client knows the id of a job whose
 * submit was not yet answered. */
static int scans_jobs(const fl_store_op *op)
{
    switch (op->kind) {
    case FL_STORE_CLAIM:
    case FL_STORE_LIST:
    case FL_STORE_COUNT:
    case FL_STORE_CHANGED:
        return 1;
    default:
        return 0;
    }
}

/* runs_beside: whether op may run on the second writer (see store_writer). */
static int runs_beside(const fl_store_op *op)
{
    return op->kind == FL_STORE_SUBMIT && op->u.submit.job && !op->u.submit.job->idem_key;
}

/* may_take: whether writer w may take the pending ops as its group now (under mu). */
static int may_take(const fl_store *s, const store_writer *w)
{
    const store_writer *other = &s->writers[w == s->writers];

    if (!s->pending || s->hold || s->corked_ops || w->parked)
        return 0;
    if (s->n_writers < 2)
        return 1;
    if (w == s->writers)
        return !other->busy || !s->pending_mixed;
    return other->busy && !other->scans && !s->pending_mixed;
}

/* writer_to_wake: the idle writer that may take the pending ops now, if any (under mu). */
static pthread_cond_t *writer_to_wake(fl_store *s)
{
    for (int i = 0; i < s->n_writers; i++)
        if (!s->writers[i].busy && may_take(s, &s->writers[i]))
            return &s->writers[i].cv;
    return NULL;
}

/* wake_writers tells every writer to look again: hold released, or stopping (under mu). */
static void wake_writers(fl_store *s)
{
    for (int i = 0; i < s->n_writers; i++)
        pthread_cond_signal(&s->writers[i].cv);
}

/* hand_in_order hands each parked group whose turn it is to `done` (under mu). */
static void hand_in_order(fl_store *s)
{
    for (int i = 0; i < s->n_writers;) {
        store_writer *w = &s->writers[i];
        if (!w->parked || w->seq != s->handed) {
            i++;
            continue;
        }
        fl_store_op *first = w->parked, *last = w->parked_tail;
        w->parked = w->parked_tail = NULL;
        s->handed++;
        hand_done(s, first, last);   /* releases mu for a moment: look at both again */
        i = 0;
    }
}

/* take_group makes the pending ops w's group (under mu, may_take): the faults injected for it. */
static fl_store_op *take_group(fl_store *s, store_writer *w, fl_store_op **last, int *fault)
{
    fl_store_op *ops = s->pending;

    *last = s->pending_tail;
    s->pending = s->pending_tail = NULL;
    w->scans = s->pending_scans;
    s->pending_mixed = s->pending_scans = 0;
    w->busy = 1;
    w->seq = s->taken++;
    *fault = 0;
    if (s->fault_count > 0) {
        s->fault_count--;
        *fault = s->fault_err;
    }
    if (s->op_fault_err && w == s->writers) {   /* the second may never run one of its kind */
        w->op_fault_err = s->op_fault_err;
        w->op_fault_kind = s->op_fault_kind;
        s->op_fault_err = 0;
    }
    return ops;
}

static void *writer_main(void *arg)
{
    store_writer *w = arg;
    fl_store *s = w->s;
    fl_store_op *ops, *last, *op;
    pthread_cond_t *other;
    uint64_t n;
    int fault, rc, writes;

    /* for ps, top and /proc/PID/task */
    pthread_setname_np(pthread_self(), w == s->writers ? "fl-store" : "fl-store2");
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && !may_take(s, w))
            pthread_cond_wait(&w->cv, &s->mu);
        if (!may_take(s, w))
            break; /* stopping, and every op has been run */
        ops = take_group(s, w, &last, &fault);
        pthread_mutex_unlock(&s->mu);

        n = 0;
        for (op = ops; op; op = op->next)
            n++;
        rc = run_group(w, ops, fault);
        writes = group_writes(ops);

        pthread_mutex_lock(&s->mu);
        if (rc) {
            s->stats.failed_commits++;
        } else {
            s->stats.commits++;
            s->stats.ops += n;
        }
        if (writes)
            note_failing(s, w, rc);
        w->busy = w->scans = 0;
        w->parked = ops;
        w->parked_tail = last;
        hand_in_order(s);
        /* The other may have waited for this one: for its turn to hand, or to run ops that
         * must see this group. */
        if ((other = writer_to_wake(s)) && other != &w->cv)
            pthread_cond_signal(other);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- threads ------------------------------------------------------------------------- */

int fl_store_spawn(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    rc = -pthread_sigmask(SIG_SETMASK, &all, &old);
    if (!rc) {
        rc = -pthread_create(t, NULL, fn, arg);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    return rc;
}

/* ---- the readers (reader threads) ------------------------------------------------------ */

/* run_read runs one read on a reader's connection: the same validation and, on failure, the
 * same freeing as in a group, but alone and outside any transaction. */
static void run_read(fl_store *s, void *conn, fl_store_op *op)
{
    int rc;

    clear_outputs(op);
    if (!op_valid(op)) {
        op->result = -EINVAL;
        return;
    }
    if ((rc = s->be->reader_run(conn, op)))
        fail_op(op, rc);
}

static void *reader_main(void *arg)
{
    store_reader *rd = arg;
    fl_store *s = rd->s;
    fl_store_op *op;

    pthread_setname_np(pthread_self(), "fl-read");
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->rd_stop && !s->rd_pending)
            pthread_cond_wait(&s->rd_cv, &s->mu);
        if (!(op = s->rd_pending))
            break;   /* stopping: fl_store_close reaped every op first */
        if (!(s->rd_pending = op->next))
            s->rd_pending_tail = NULL;
        pthread_mutex_unlock(&s->mu);
        run_read(s, rd->conn, op);
        pthread_mutex_lock(&s->mu);
        op->next = NULL;
        hand_done(s, op, op);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* start_readers opens n readers of a backend that has them (none for one that has not, or for
 * n = 0) and starts their threads ("fl-read"). */
static int start_readers(fl_store *s, int n, char *err, size_t errlen)
{
    int rc = 0;

    if (n <= 0 || !s->be->reader_open)
        return 0;
    if (pthread_cond_init(&s->rd_cv, NULL) || !(s->readers = calloc((size_t)n, sizeof *s->readers))) {
        fl_store_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->rd_sync_ready = 1;
    for (; s->n_readers < n && !rc; s->n_readers++) {
        store_reader *rd = &s->readers[s->n_readers];
        rd->s = s;
        if ((rc = s->be->reader_open(s->b, &rd->conn, err, errlen)))
            break;
        if ((rc = fl_store_spawn(&rd->thread, reader_main, rd)))
            fl_store_errf(err, errlen, "cannot start a store reader thread: %s", strerror(-rc));
        rd->started = !rc;
    }
    return rc;
}

/* stop_readers ends the reader threads (no read is left: fl_store_close reaped them all) and
 * closes their connections. */
static void stop_readers(fl_store *s)
{
    if (!s->rd_sync_ready)
        return;
    pthread_mutex_lock(&s->mu);
    s->rd_stop = 1;
    pthread_cond_broadcast(&s->rd_cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_readers; i++) {
        if (s->readers[i].started)
            pthread_join(s->readers[i].thread, NULL);
        if (s->readers[i].conn)
            s->be->reader_close(s->readers[i].conn);
    }
    free(s->readers);
    pthread_cond_destroy(&s->rd_cv);
}

/* read_start queues a read that needs only what was committed before now: on a reader if the
 * store has readers, else on the writer's queue (start). An ordered read is reaped after every
 * op pushed to the writer before it (see fl_store_reap). */
static void read_start(fl_store *s, fl_store_op *op, fl_store_kind kind, int ordered, fl_store_cb cb, void *udata)
{
    op->kind = kind;
    op->cb = cb;
    op->udata = udata;
    if (!s->n_readers) {
        fl_store_push(s, op);
        return;
    }
    op->next = NULL;
    op->after = 1 + (ordered ? s->pushed : 0);
    s->outstanding++;
    pthread_mutex_lock(&s->mu);
    if (s->rd_pending_tail)
        s->rd_pending_tail->next = op;
    else
        s->rd_pending = op;
    s->rd_pending_tail = op;
    pthread_cond_signal(&s->rd_cv);
    pthread_mutex_unlock(&s->mu);
}

void fl_store_get_committed(fl_store *s, fl_store_op *op, int64_t id, fl_store_cb cb, void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.get.id = id;
    read_start(s, op, FL_STORE_GET, 0, cb, udata);
}

void fl_store_list_committed(fl_store *s, fl_store_op *op, const fl_store_query *q, fl_store_cb cb,
                             void *udata)
{
    fl_store_query copy = *q;   /* q may live inside op */

    memset(op, 0, sizeof *op);
    op->u.list.q = copy;
    read_start(s, op, FL_STORE_LIST, 0, cb, udata);
}

void fl_store_count_committed(fl_store *s, fl_store_op *op, int all_states, fl_store_cb cb, void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.count.all_states = all_states;
    read_start(s, op, FL_STORE_COUNT, 0, cb, udata);
}

void fl_store_get_many(fl_store *s, fl_store_op *op, const int64_t *ids, size_t n, fl_store_cb cb,
                       void *udata)
{
    /* A backend with readers reads batches, on the writer too when it has no reader. */
    int err = !s->be->reader_open ? -ENOTSUP : n < 1 || n > FL_STORE_PAGE_MAX ? -EINVAL : 0;

    memset(op, 0, sizeof *op);
    op->u.get.ids = ids;
    op->u.get.n_ids = n;
    if (!err) {
        read_start(s, op, FL_STORE_GET, 1, cb, udata);
        return;
    }
    /* Failed as it is: through reap, like any op. */
    op->kind = FL_STORE_GET;
    op->cb = cb;
    op->udata = udata;
    op->result = err;
    op->after = 1;   /* nothing to wait for */
    s->outstanding++;
    op->next = NULL;
    pthread_mutex_lock(&s->mu);
    hand_done(s, op, op);
    pthread_mutex_unlock(&s->mu);
}

int fl_store_readers(const fl_store *s)
{
    return s->n_readers;
}

/* ---- open, recover, close -------------------------------------------------------------- */

static int init_sync(fl_store *s)
{
    if (pthread_mutex_init(&s->mu, NULL))
        return -ENOMEM;
    if (pthread_cond_init(&s->done_cv, NULL)) {
        pthread_mutex_destroy(&s->mu);
        return -ENOMEM;
    }
    s->sync_ready = 1;
    return 0;
}

/* start_writers starts the first writer on s->b and, if want is 2 and the backend has
 * writer_open, a second on a connection of its own (threads "fl-store", "fl-store2"). */
static int start_writers(fl_store *s, int want, char *err, size_t errlen)
{
    char why[256];
    int rc = 0;

    for (int i = 0; i < (want >= 2 && s->be->writer_open ? 2 : 1) && !rc; i++) {
        store_writer *w = &s->writers[i];
        w->s = s;
        w->b = s->b;
        if (pthread_cond_init(&w->cv, NULL)) {
            fl_store_errf(err, errlen, "cannot initialise the store's locks");
            return -ENOMEM;
        }
        w->cv_ready = 1;
        if (i && (rc = s->be->writer_open(s->b, &w->b, why, sizeof why))) {
            /* a tight max_connections, say: the node works, a little slower */
            fl_log(LOG_WARNING, "store: no second writer (%s); every group runs on one", why);
            w->b = NULL;
            pthread_cond_destroy(&w->cv);
            w->cv_ready = 0;
            return 0;
        }
        pthread_mutex_lock(&s->mu);   /* the first writer's thread may be looking */
        s->n_writers = i + 1;
        pthread_mutex_unlock(&s->mu);
        if ((rc = fl_store_spawn(&w->thread, writer_main, w)))
            fl_store_errf(err, errlen, "cannot start the store's writer thread: %s", strerror(-rc));
        w->started = !rc;
    }
    return rc;
}

/* stop_writers ends the writer threads (no op is left: fl_store_close reaped them all) and
 * closes the second's connection. */
static void stop_writers(fl_store *s)
{
    if (!s->sync_ready)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    wake_writers(s);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_writers; i++) {
        store_writer *w = &s->writers[i];
        if (w->started)
            pthread_join(w->thread, NULL);
        w->started = 0;
        if (i && w->b)
            s->be->writer_close(w->b);
        w->b = NULL;
        if (w->cv_ready)
            pthread_cond_destroy(&w->cv);
        w->cv_ready = 0;
    }
    s->n_writers = 0;
}

static void stop_readers(fl_store *s);

static void destroy(fl_store *s)
{
    stop_writers(s);
    stop_readers(s);
    if (s->b)
        s->be->close(s->b);
    if (s->sync_ready) {
        pthread_cond_destroy(&s->done_cv);
        pthread_mutex_destroy(&s->mu);
    }
    free(s->node);
    free(s);
}

int fl_store_open(fl_store **out, const fl_store_options *opt, const fl_store_hooks *hooks,
                  char *err, size_t errlen)
{
    const char *name = opt->backend ? opt->backend : "sqlite";
    const fl_store_backend *be = find_backend(name);
    fl_store *s;
    int rc;

    *out = NULL;
    if (!be) {
        fl_store_errf(err, errlen, "unknown store backend \"%s\"", name);
        return -EINVAL;
    }
    s = calloc(1, sizeof(*s));
    if (!s || !(s->node = strdup(opt->node ? opt->node : FL_STORE_NODE_LOCAL))) {
        free(s);
        fl_store_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->be = be;
    if (hooks)
        s->hooks = *hooks;
    rc = init_sync(s);
    if (rc) {
        fl_store_errf(err, errlen, "cannot initialise the store's locks");
        goto fail;
    }
    rc = be->open(&s->b, opt, s->node, err, errlen);
    if (!rc)
        rc = start_readers(s, opt->readers, err, errlen);
    if (!rc)
        rc = start_writers(s, opt->writers, err, errlen);
    if (rc)
        goto fail;
    *out = s;
    return 0;
fail:
    destroy(s);
    return rc;
}

int fl_store_watch(fl_store *s, int *fd, int *events, int *gen)
{
    *fd = -1;
    *events = *gen = 0;
    if (!s->be->watch)
        return -ENOTSUP;
    *gen = s->be->watch(s->b, fd, events);
    return 0;
}

void fl_store_wake(fl_store *s, const fl_store_remote *r)
{
    if (s->be->wake)
        s->be->wake(s->b, r);
}

void fl_store_follow(fl_store *s, int on)
{
    if (s->be->follow)
        s->be->follow(s->b, on);
}

int fl_store_recover(fl_store *s)
{
    /* The writers own the connections while they have work; nothing unreaped means they are idle. */
    if (s->outstanding)
        return -EBUSY;
    return s->be->recover(s->b, s->node, fl_job_now_ms());
}

/* ---- the constructors (loop thread) ---------------------------------------------------- */

/* start fills what every op has, after the caller's kind-specific inputs, and queues it. */
static void start(fl_store *s, fl_store_op *op, fl_store_kind kind, fl_store_cb cb, void *udata)
{
    op->kind = kind;
    op->cb = cb;
    op->udata = udata;
    fl_store_push(s, op);
}

void fl_store_submit(fl_store *s, fl_store_op *op, fl_job *job, fl_store_cb cb, void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.submit.job = job;
    start(s, op, FL_STORE_SUBMIT, cb, udata);
}

void fl_store_get(fl_store *s, fl_store_op *op, int64_t id, fl_store_cb cb, void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.get.id = id;
    start(s, op, FL_STORE_GET, cb, udata);
}

void fl_store_get_payload(fl_store *s, fl_store_op *op, int64_t id, fl_store_cb cb, void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.get.id = id;
    op->u.get.with_payload = 1;
    start(s, op, FL_STORE_GET, cb, udata);
}

void fl_store_list(fl_store *s, fl_store_op *op, const fl_store_query *q, fl_store_cb cb, void *udata)
{
    fl_store_query copy = *q;   /* q may live inside op */

    memset(op, 0, sizeof *op);
    op->u.list.q = copy;
    start(s, op, FL_STORE_LIST, cb, udata);
}

void fl_store_cancel(fl_store *s, fl_store_op *op, int64_t id, int64_t now, fl_store_cb cb, void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.cancel.id = id;
    op->u.cancel.now = now;
    start(s, op, FL_STORE_CANCEL, cb, udata);
}

void fl_store_set_status(fl_store *s, fl_store_op *op, int64_t id, int bits, fl_store_cb cb, void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.set_status.id = id;
    op->u.set_status.bits = bits;
    start(s, op, FL_STORE_SET_STATUS, cb, udata);
}

void fl_store_claim(fl_store *s, fl_store_op *op, const char *type, int limit, int64_t now,
                    fl_store_cb cb, void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.claim.type = type;
    op->u.claim.limit = limit;
    op->u.claim.now = now;
    start(s, op, FL_STORE_CLAIM, cb, udata);
}

void fl_store_finish(fl_store *s, fl_store_op *op, int64_t id, const fl_store_outcome *o,
                     fl_store_cb cb, void *udata)
{
    fl_store_outcome copy = *o;

    memset(op, 0, sizeof *op);
    op->u.finish.id = id;
    op->u.finish.o = copy;
    start(s, op, FL_STORE_FINISH, cb, udata);
}

void fl_store_count_jobs(fl_store *s, fl_store_op *op, int all_states, fl_store_cb cb, void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.count.all_states = all_states;
    start(s, op, FL_STORE_COUNT, cb, udata);
}

void fl_store_changed(fl_store *s, fl_store_op *op, int64_t since, int64_t after, int limit,
                      fl_store_cb cb, void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.changed.since = since;
    op->u.changed.after = after;
    op->u.changed.limit = limit;
    start(s, op, FL_STORE_CHANGED, cb, udata);
}

void fl_store_delivery_take(fl_store *s, fl_store_op *op, int64_t now, int limit, fl_store_cb cb,
                            void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.take.now = now;
    op->u.take.limit = limit;
    start(s, op, FL_STORE_DELIVERY_TAKE, cb, udata);
}

void fl_store_delivery_done(fl_store *s, fl_store_op *op, int64_t id, fl_delivery_state state,
                            int64_t next_at, int has_status, int status, const char *error,
                            fl_store_cb cb, void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.done.id = id;
    op->u.done.state = state;
    op->u.done.next_at = next_at;
    op->u.done.has_status = has_status;
    op->u.done.status = status;
    op->u.done.error = error;
    start(s, op, FL_STORE_DELIVERY_DONE, cb, udata);
}

void fl_store_pause(fl_store *s, fl_store_op *op, const char *type, int paused, fl_store_cb cb,
                    void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.pause.type = type;
    op->u.pause.paused = paused;
    start(s, op, FL_STORE_PAUSE, cb, udata);
}

void fl_store_retry(fl_store *s, fl_store_op *op, int64_t id, int64_t now, fl_store_cb cb, void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.retry.id = id;
    op->u.retry.now = now;
    start(s, op, FL_STORE_RETRY, cb, udata);
}

void fl_store_prune(fl_store *s, fl_store_op *op, int64_t before, int limit, fl_store_cb cb, void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.prune.before = before;
    op->u.prune.limit = limit;
    start(s, op, FL_STORE_PRUNE, cb, udata);
}

void fl_store_sweep(fl_store *s, fl_store_op *op, fl_store_cb cb, void *udata)
{
    memset(op, 0, sizeof *op);
    start(s, op, FL_STORE_SWEEP, cb, udata);
}

void fl_store_last_key(fl_store *s, fl_store_op *op, const char *type, const char *prefix, fl_store_cb cb,
                       void *udata)
{
    memset(op, 0, sizeof *op);
    op->u.last_key.type = type;
    op->u.last_key.prefix = prefix;
    start(s, op, FL_STORE_LAST_KEY, cb, udata);
}

/* ---- events (loop thread) -------------------------------------------------------------- */

/* The names the Redis channel and the callbacks carry (proto/rediskeys.h); a terminal event is
 * named after its state. */
static const char *const event_names[FL_STORE_EV_COUNT] = {
    [FL_STORE_EV_SUBMITTED] = FL_PROTO_EVENT_SUBMITTED, [FL_STORE_EV_STARTED] = FL_PROTO_EVENT_STARTED,
    [FL_STORE_EV_RETRYING] = FL_PROTO_EVENT_RETRYING,   [FL_STORE_EV_REQUEUED] = FL_PROTO_EVENT_REQUEUED,
    [FL_STORE_EV_SUCCEEDED] = "succeeded",              [FL_STORE_EV_FAILED] = "failed",
    [FL_STORE_EV_CANCELLED] = "cancelled",              [FL_STORE_EV_STATUS] = FL_PROTO_EVENT_STATUS,
    [FL_STORE_EV_RETRIED] = FL_PROTO_EVENT_RETRIED,
};

const char *fl_store_event_name(fl_store_event ev)
{
    return (unsigned)ev < FL_STORE_EV_COUNT ? event_names[ev] : "unknown";
}

/* finish_event names the change of a FINISH that left job in its state. */
static fl_store_event finish_event(const fl_job *job)
{
    switch (job->state) {
    case FL_STATE_SCHEDULED:
        return FL_STORE_EV_RETRYING;
    case FL_STATE_QUEUED:
        return FL_STORE_EV_REQUEUED;
    case FL_STATE_SUCCEEDED:
        return FL_STORE_EV_SUCCEEDED;
    case FL_STATE_CANCELLED:
        return FL_STORE_EV_CANCELLED;
    default:
        return FL_STORE_EV_FAILED;
    }
}

static void changed(fl_store *s, const fl_job *job, fl_store_event ev)
{
    if (s->hooks.on_change)
        s->hooks.on_change(job, ev, s->hooks.udata);
}

static void due(fl_store *s, const fl_job *job)
{
    if (s->hooks.on_due)
        s->hooks.on_due(job, s->hooks.udata);
}

/* emit reports what op committed, if anything: a duplicate submit, a cancel that found the
 * job running or ended, and a status bit the job had already change nothing. */
static void emit(fl_store *s, const fl_store_op *op)
{
    if (op->result)
        return;
    switch (op->kind) {
    case FL_STORE_SUBMIT:
        if (op->answer == FL_STORE_OK) {
            changed(s, op->u.submit.job, FL_STORE_EV_SUBMITTED);
            due(s, op->u.submit.job);
        }
        break;
    case FL_STORE_CLAIM:
        for (size_t i = 0; i < op->u.claim.n; i++)
            changed(s, op->u.claim.jobs[i], FL_STORE_EV_STARTED);
        break;
    case FL_STORE_FINISH:
        if (op->answer == FL_STORE_OK && op->u.finish.job) {
            changed(s, op->u.finish.job, finish_event(op->u.finish.job));
            if (!fl_proto_state_terminal(op->u.finish.job->state))
                due(s, op->u.finish.job);
        }
        break;
    case FL_STORE_CANCEL:
        if (op->answer == FL_STORE_OK)
            changed(s, op->u.cancel.job, FL_STORE_EV_CANCELLED);
        break;
    case FL_STORE_SET_STATUS:
        if (op->answer == FL_STORE_OK && op->u.set_status.changed)
            changed(s, op->u.set_status.job, FL_STORE_EV_STATUS);
        break;
    case FL_STORE_RETRY:
        if (op->answer == FL_STORE_OK) {
            changed(s, op->u.retry.job, FL_STORE_EV_RETRIED);
            due(s, op->u.retry.job);
        }
        break;
    default:
        break;
    }
}

/* ---- the queue (loop thread) ----------------------------------------------------------- */

void fl_store_push(fl_store *s, fl_store_op *op)
{
    pthread_cond_t *wake = NULL;

    op->next = NULL;
    op->after = 0;
    s->pushed++;
    s->outstanding++;
    pthread_mutex_lock(&s->mu);
    if (s->pending_tail)
        s->pending_tail->next = op;
    else
        s->pending = op;
    s->pending_tail = op;
    if (!runs_beside(op))
        s->pending_mixed = 1;
    if (scans_jobs(op))
        s->pending_scans = 1;
    if (s->corked) {
        s->corked = 2;
        s->corked_ops = 1;   /* a writer between two groups must not take half of what is corked */
    } else {
        wake = writer_to_wake(s);
    }
    pthread_mutex_unlock(&s->mu);
    /* After the unlock: a writer woken while the mutex is still held would only go back to
     * sleep on it, and be woken a second time by the unlock. */
    if (wake)
        pthread_cond_signal(wake);
}

void fl_store_cork(fl_store *s)
{
    s->corked = 1;
}

void fl_store_uncork(fl_store *s)
{
    int pushed = s->corked == 2;
    s->corked = 0;
    if (!pushed)
        return;
    pthread_cond_t *wake;
    pthread_mutex_lock(&s->mu);
    s->corked_ops = 0;
    wake = writer_to_wake(s);
    pthread_mutex_unlock(&s->mu);
    if (wake)
        pthread_cond_signal(wake);   /* after the unlock, as in fl_store_push */
}

/* reap_one emits the events of op and runs its callback; a writer's op then lets the reads
 * held for it go. */
static void reap_one(fl_store *s, fl_store_op *op)
{
    s->outstanding--;
    if (!op->after)
        s->reaped++;
    emit(s, op);
    if (op->cb)
        op->cb(op);   /* the callback owns op from here on, and may free or push it */
}

static void release_held(fl_store *s)
{
    fl_store_op *op;

    while ((op = s->held) && op->after - 1 <= s->reaped) {
        if (!(s->held = op->next))
            s->held_tail = NULL;
        op->next = NULL;
        reap_one(s, op);
    }
}

void fl_store_reap(fl_store *s)
{
    fl_store_op *op, *next;

    /* A callback that reaps would run later ops before the rest of this list. */
    if (s->reaping)
        return;
    pthread_mutex_lock(&s->mu);
    op = s->done;
    s->done = s->done_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    s->reaping = 1;
    for (; op; op = next) {
        next = op->next;
        op->next = NULL;
        /* A reader's op may finish before a writer's op pushed ahead of it was reaped (whose
         * change it may have heard of): it waits, in order, for that one. */
        if (op->after && op->after - 1 > s->reaped) {
            if (s->held_tail)
                s->held_tail->next = op;
            else
                s->held = op;
            s->held_tail = op;
            continue;
        }
        reap_one(s, op);
        release_held(s);
    }
    s->reaping = 0;
}

size_t fl_store_pending(const fl_store *s)
{
    return s->outstanding;
}

void fl_store_stats_get(fl_store *s, fl_store_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    for (int i = 0; i < s->n_writers && !out->failing; i++)
        out->failing = s->writers[i].failing;
    pthread_mutex_unlock(&s->mu);
    if (s->be->shared_stats) {
        out->shared = 1;
        if (!s->be->shared_stats(s->b, out) && !out->failing)
            out->failing = -ENOTCONN;
    }
}

void fl_store_list_free(fl_job **jobs, size_t n)
{
    size_t i;

    if (!jobs)
        return;
    for (i = 0; i < n; i++)
        fl_job_free(jobs[i]);
    free(jobs);
}

void fl_store_close(fl_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->hold = 0;
    wake_writers(s);
    pthread_mutex_unlock(&s->mu);
    /* Callbacks run here may push more; keep going until nothing is left. */
    while (s->outstanding > 0) {
        pthread_mutex_lock(&s->mu);
        while (!s->done)
            pthread_cond_wait(&s->done_cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
        fl_store_reap(s);
    }
    destroy(s);
}

void fl_store_inject_fault(fl_store *s, int err, int count)
{
    pthread_mutex_lock(&s->mu);
    s->fault_err = err;
    s->fault_count = count;
    pthread_mutex_unlock(&s->mu);
}

void fl_store_inject_op_fault(fl_store *s, fl_store_kind kind, int err)
{
    pthread_mutex_lock(&s->mu);
    s->op_fault_kind = kind;
    s->op_fault_err = err;
    pthread_mutex_unlock(&s->mu);
}

void fl_store_hold(fl_store *s, int hold)
{
    pthread_mutex_lock(&s->mu);
    s->hold = hold;
    wake_writers(s);
    pthread_mutex_unlock(&s->mu);
}

/* ---- callback deliveries --------------------------------------------------------------- */

static const char *const delivery_state_names[] = {
    [FL_DELIVERY_PENDING] = "pending", [FL_DELIVERY_DELIVERED] = "delivered", [FL_DELIVERY_FAILED] = "failed",
};

const char *fl_store_delivery_state_name(fl_delivery_state st)
{
    return (unsigned)st < sizeof delivery_state_names / sizeof *delivery_state_names ? delivery_state_names[st]
                                                                                      : "unknown";
}


void fl_store_delivery_free(fl_delivery *d)
{
    if (!d)
        return;
    fl_job_free(d->job);
    free(d);
}

void fl_store_deliveries_free(fl_delivery **items, size_t n)
{
    if (!items)
        return;
    for (size_t i = 0; i < n; i++)
        fl_store_delivery_free(items[i]);
    free(items);
}


