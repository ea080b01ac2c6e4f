/* store.h — the durable job store: an engine (store.c) that runs operations on a writer thread
 * in group commits, in front of a backend that holds the rows (store_sqlite.c: SQLite in WAL
 * mode; a PostgreSQL backend plugs into the same table, store_backend.h). Callers build each
 * operation with its constructor (fl_store_submit, fl_store_claim, ...), never by filling the
 * op by hand. No SQL outside the backends; no scheduling policy inside the store.
 *
 * DESIGN. One writer thread owns the backend's connection. The loop thread pushes operations
 * onto a pending list under a mutex; the writer takes everything pending, runs it in ONE
 * transaction and commits (one fsync for the whole group, under durability=full), then moves
 * the ops to a done list and calls hooks.notify() — the daemon wires that to ev_async_send.
 * The loop thread then calls fl_store_reap(), which handles each op in push order: first the
 * change events of what it committed (hooks.on_change, hooks.on_due), then the op's callback.
 * So every listener has heard of a change before the op's owner acts on its result (a waiter
 * sees a job end before the cancel route replies), and nothing but the store emits events.
 * Requests that arrive while one commit runs share the next one, and the loop never waits on
 * the disk. If the transaction fails (disk full, I/O error) every op of that group fails with
 * the same negative errno, nothing of it is stored and no event is emitted.
 * Reads (get, list) go through the same queue and see every earlier push. A store with readers
 * (PostgreSQL with [store] connections) also runs the reads pushed with the _committed
 * constructors and fl_store_get_many on reader threads, each with a connection of its own and
 * outside any group: those see what was committed before they run, not the ops pushed before
 * them, and they do not lengthen the writer's groups. Their callbacks run from fl_store_reap
 * like any op's, in the order they finish; only fl_store_get_many's waits for those of the
 * writer's ops pushed before it (other nodes' changes are never reported here before this
 * node's own earlier ones: a submit's before the other node's start of that job).
 *
 * An op's result says whether the store worked (0) or failed (a negative errno); its answer
 * says what it found (no such job, running, ...). They never share a code: -EBUSY is a locked
 * database and nothing else.
 *
 * The SQLite backend creates the database, its -wal and -shm 0600 (payloads are private
 * whatever the umask). It checks before every commit that the files it writes are still the
 * ones at path: once one was deleted or replaced, every group fails with -ESTALE until flingd
 * restarts (a restart opens or creates whatever is at path then; a new database hands out ids
 * from 1). */
#ifndef FL_STORE_H
#define FL_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "job.h"

typedef struct fl_store fl_store;

typedef enum fl_store_kind {
    FL_STORE_SUBMIT,      /* insert a new job, or find the one with the same type + idem_key */
    FL_STORE_GET,         /* load one job (without payload, or only with it) */
    FL_STORE_LIST,        /* a page of jobs, newest first (without payloads) */
    FL_STORE_CANCEL,      /* queued/scheduled -> cancelled */
    FL_STORE_SET_STATUS,  /* OR status bits into a job (ABORTED after its ack failed) */
    FL_STORE_CLAIM,       /* mark up to limit due jobs of one type running, return them with payloads */
    FL_STORE_FINISH,      /* record the outcome of an attempt */
    FL_STORE_COUNT,       /* how many jobs wait or run, by type and state (queue depth) */
    FL_STORE_CHANGED,     /* jobs changed since a time, or not yet terminal (mirror catch-up) */
    FL_STORE_DELIVERY_TAKE,  /* due callback deliveries, marked in flight, with their jobs */
    FL_STORE_DELIVERY_DONE,  /* the outcome of one delivery attempt */
    FL_STORE_PAUSE,          /* pause or resume a type; returns the paused types */
    FL_STORE_RETRY,          /* failed/cancelled -> queued again, with a new attempt budget */
    FL_STORE_PRUNE,          /* delete a batch of jobs finished before a time */
    FL_STORE_LAST_KEY,       /* the greatest Idempotency-Key of a type with a prefix */
    FL_STORE_SWEEP           /* shared database: re-queue what nodes that are gone left in flight */
} fl_store_kind;

typedef enum fl_delivery_state { FL_DELIVERY_PENDING, FL_DELIVERY_DELIVERED, FL_DELIVERY_FAILED } fl_delivery_state;

/* One callback delivery (a row of deliveries): the target of one terminal event of one job.
 * Deliveries are created by the store itself, in the transaction of the terminal state (FINISH
 * into succeeded/failed/cancelled, CANCEL): one for the job's Fling-Callback URL, one for its
 * type's on_complete/on_abort (see fl_store_set_hooks). One allocation with its strings. */
typedef struct fl_delivery {
    int64_t id, job_id;
    int abort;                /* the event: 0 = "complete", 1 = "abort" */
    char *target;             /* http(s) URL or "exec:COMMAND" */
    fl_delivery_state state;
    int attempts;             /* attempts started, this one included for TAKE */
    int64_t created_at, next_at, last_at;   /* ms */
    int has_last_status; int last_status;   /* HTTP status or exit code of the last attempt */
    char *last_error;         /* why the last attempt failed; NULL if none */
    fl_job *job;              /* TAKE only: the job row with its payload (a type's callback_payload
                               * sends it); NULL elsewhere */
} fl_delivery;

/* Called on the writer thread: the hook target of a type for a terminal event, or NULL. */
typedef const char *(*fl_store_hook_fn)(const void *arg, const char *type, int abort);

/* One row of a COUNT: n jobs of type in state. */
typedef struct fl_store_count { char type[FL_TYPE_NAME_MAX + 1]; fl_state state; int64_t n; } fl_store_count;

/* What an op found, beside a result of 0 (see each kind); FL_STORE_OK whenever result < 0. */
typedef enum fl_store_answer {
    FL_STORE_OK,          /* done as asked */
    FL_STORE_NOT_FOUND,   /* no such job (or delivery) */
    FL_STORE_RUNNING,     /* CANCEL: the job is running, unchanged */
    FL_STORE_ENDED,       /* CANCEL: the job had already ended, unchanged */
    FL_STORE_DUPLICATE,   /* SUBMIT: a job of that type had the same idem_key, nothing inserted */
    FL_STORE_WRONG_STATE  /* RETRY: the job is not failed or cancelled, unchanged */
} fl_store_answer;

/* The page a LIST asks for: optional filters (has_state/state, type NULL = any, borrowed until
 * the callback), limit (1..1000), after (0 = from the newest; else only ids < after). */
typedef struct fl_store_query {
    int has_state; fl_state state; const char *type;
    int limit; int64_t after;
} fl_store_query;

/* The outcome of one attempt, for fl_store_finish (strings borrowed until the callback). */
typedef struct fl_store_outcome {
    fl_state state; int status_bits;
    int has_exit_code; int exit_code;
    const char *error; const char *output; size_t output_len;
    int64_t run_at; int64_t finished_at;
    int attempt;   /* the attempt it ends (the job's attempts as claimed): on a shared database an
                    * outcome of any other attempt is fenced (dropped), even on the same node */
} fl_store_outcome;

/* The committed changes of a job that the store reports (fl_store_hooks.on_change). */
typedef enum fl_store_event {
    FL_STORE_EV_SUBMITTED,   /* a new job (not a duplicate of an Idempotency-Key) */
    FL_STORE_EV_STARTED,     /* claimed: running */
    FL_STORE_EV_RETRYING,    /* finished into scheduled, for another attempt */
    FL_STORE_EV_REQUEUED,    /* finished into queued (handed back at a stop) */
    FL_STORE_EV_SUCCEEDED,
    FL_STORE_EV_FAILED,
    FL_STORE_EV_CANCELLED,   /* by CANCEL of a waiting job, or FINISH of a stopped one */
    FL_STORE_EV_STATUS,      /* a status bit was added */
    FL_STORE_EV_RETRIED,     /* a failed or cancelled job queued again by RETRY */
    FL_STORE_EV_COUNT
} fl_store_event;

/* fl_store_event_name returns the event's name as the mirror and callbacks spell it
 * ("submitted", "started", "retrying", "requeued", "succeeded", "failed", "cancelled",
 * "status", "retried"), or "unknown". */
const char *fl_store_event_name(fl_store_event ev);

typedef struct fl_store_op fl_store_op;
/* Runs on the loop thread from fl_store_reap; the op is the caller's again from then on. */
typedef void (*fl_store_cb)(fl_store_op *op);

struct fl_store_op {
    fl_store_kind kind;
    int result;               /* out: 0, or a negative errno: the group failed (-ESTALE: the
                               * database file is gone), or this op alone did: -EINVAL (it
                               * was malformed), -E2BIG, -EEXIST or -ERANGE (its data) */
    fl_store_answer answer;   /* out: what the store found, when result is 0 */
    fl_store_cb cb;
    void *udata;              /* the caller's */
    fl_store_op *next;        /* store-private link */
    int alone;                /* store-private: failed by itself in its group (see run_group) */
    uint64_t after;           /* store-private: 0 for the writer's ops; a reader's 1, or for a
                               * GET_MANY 1 + the writer's ops pushed before it, reaped first */
    union {
        /* in: job, borrowed until cb, with type, payload, priority, max_attempts, timeout,
         *     created_at, run_at, state (queued or scheduled), callback, idem_key filled.
         * out: job->id set. If a job of the same type had the same idem_key, nothing is
         *     inserted: answer FL_STORE_DUPLICATE and job->id/state/created_at/run_at are the
         *     existing job's. */
        struct { fl_job *job; } submit;
        /* in: id, with_payload. out: job (caller frees with fl_job_free) and its callback
         *     deliveries (free with fl_store_deliveries_free), or answer FL_STORE_NOT_FOUND.
         *     with_payload: the job with its payload, and no deliveries. */
        struct { int64_t id; int with_payload; fl_job *job; fl_delivery **deliveries; size_t n_deliveries;
                 /* fl_store_get_many: in: ids[0..n_ids) instead of id (borrowed until cb).
                  * out: jobs[0..n_jobs) = those found, by id, without payloads or deliveries
                  * (free with fl_store_list_free). */
                 const int64_t *ids; size_t n_ids; fl_job **jobs; size_t n_jobs; } get;
        /* in: q (see fl_store_query).
         * out: jobs[0..n) newest first (the array and each job owned by the caller: free with
         *     fl_store_list_free), next = id to pass as after for the following page, 0 if none. */
        struct { fl_store_query q; fl_job **jobs; size_t n; int64_t next; } list;
        /* in: id, now (ms). out: job after the change (caller frees).
         * answer: FL_STORE_OK = was queued/scheduled, now cancelled; FL_STORE_RUNNING = it is
         * running (unchanged, job returned so the caller can stop it and FINISH it as
         * cancelled); FL_STORE_ENDED = already terminal (unchanged, job returned);
         * FL_STORE_NOT_FOUND = no such job. elsewhere: 1 with FL_STORE_RUNNING when the job
         * runs on another node of a shared database, which was told to stop it (it ends
         * cancelled there). */
        struct { int64_t id; int64_t now; fl_job *job; int elsewhere; } cancel;
        /* in: id, bits to OR into status. answer FL_STORE_OK or FL_STORE_NOT_FOUND.
         * out: job = the row after the change (caller frees; also when nothing changed);
         *      changed = 1 if a bit was new (only then was the row written). */
        struct { int64_t id; int bits; fl_job *job; int changed; } set_status;
        /* in: type, limit (>= 1), now (ms). Picks jobs of that type in state queued, or
         *     scheduled with run_at <= now, highest priority first, then oldest id; marks them
         *     running, attempts += 1, started_at = now.
         * out: jobs[0..n) with payloads (caller frees with fl_store_list_free); next_run_at =
         *     the earliest run_at of this type's jobs still waiting, or 0 if none. */
        struct {
            const char *type; int limit; int64_t now;
            fl_job **jobs; size_t n; int64_t next_run_at;
        } claim;
        /* in: id, o: state (succeeded/failed/cancelled, or scheduled for a retry at run_at, or
         *     queued to hand a job back at shutdown), status bits to OR in, exit code, error,
         *     output (borrowed), finished_at (terminal states). answer OK or NOT_FOUND.
         * out: job = the row after the change, without payload (caller frees). */
        struct { int64_t id; fl_store_outcome o; fl_job *job; } finish;
        /* in: all_states (0 = queued, scheduled and running only; 1 = every state).
         * out: rows[0..n) (caller frees rows with free()). */
        struct { int all_states; fl_store_count *rows; size_t n; } count;
        /* in: since (ms), after (id; 0 = from the first), limit (1..1000). Jobs with
         *     updated_at >= since or a state that is not terminal, with id > after, by id.
         * out: jobs[0..n) without payloads (free with fl_store_list_free), next = the id to
         *     pass as after for the following page, 0 when this page was the last. */
        struct {
            int64_t since; int64_t after; int limit;
            fl_job **jobs; size_t n; int64_t next;
        } changed;
        /* in: now (ms), limit (1..1000). Up to limit pending deliveries due by now, oldest
         *     next_at first, are marked in flight (attempts += 1) until their DONE.
         * out: items[0..n) each with its job (free with fl_store_deliveries_free); next_at =
         *     the earliest next_at of the pending ones not taken, 0 if none. */
        struct { int64_t now; int limit; fl_delivery **items; size_t n; int64_t next_at; } take;
        /* in: id, state (delivered; failed for good; pending again at next_at), the HTTP
         *     status or exit code (has_status), error (NULL when delivered). answer OK or
         *     NOT_FOUND. */
        struct {
            int64_t id; fl_delivery_state state; int64_t next_at;
            int has_status; int status; const char *error;
        } done;
        /* in: type (borrowed; NULL = change nothing, only read), paused (1 = pause, 0 =
         *     resume; either is a no-op if already so).
         * out: types[0..n) = every paused type, by name (caller frees types with free()). */
        struct {
            const char *type; int paused;
            char (*types)[FL_TYPE_NAME_MAX + 1]; size_t n;
        } pause;
        /* in: id, now (ms). A failed or cancelled job goes back to queued, due at now: attempts
         *     0 (their sum moves to previous_attempts), retried + 1, its error moves to
         *     previous_error, exit code, output, started_at and finished_at cleared, status
         *     bits but ABORTED cleared; payload and options kept.
         * out: job = the row after (caller frees); answer FL_STORE_WRONG_STATE (job returned,
         *     unchanged) if it is not failed or cancelled, or FL_STORE_NOT_FOUND. */
        struct { int64_t id; int64_t now; fl_job *job; } retry;
        /* in: before (ms), limit (1..FL_STORE_PAGE_MAX). Deletes up to limit jobs that
         *     finished (succeeded, failed, cancelled) before `before`, earliest first, with
         *     their payloads and callback deliveries. Ids are never handed out again.
         * out: n = how many jobs were deleted (fewer than limit: none older is left). */
        struct { int64_t before; int limit; size_t n; } prune;
        /* in: type, prefix (borrowed, non-empty). out: key = the greatest idem_key of a job
         *     of type that starts with prefix (caller frees with free()), or NULL if none. */
        struct { const char *type; const char *prefix; char *key; } last_key;
        /* in: nothing. On a shared database, the jobs left running and the deliveries left in
         *     flight by nodes whose lock is free go back to the queue (a CLAIM sweeps too, at
         *     most once a second); the other nodes are notified. Nothing on SQLite, whose one
         *     node recovers its own at start.
         * out: ids = the jobs that went back (jobs of them; caller frees with free()),
         *      deliveries = how many deliveries did. */
        struct { int64_t *ids; size_t jobs, deliveries; } sweep;
    } u;
};

/* Where and how to store: backend NULL = "sqlite"; path = its database (SQLite); url = the
 * server's libpq connection string or URI (PostgreSQL); durability_full 1 = every commit on
 * disk before its callback (SQLite synchronous FULL, PostgreSQL synchronous_commit on), 0 =
 * NORMAL (off); node names this daemon as the owner of the jobs it claims (NULL =
 * FL_STORE_NODE_LOCAL). */
typedef struct fl_store_options {
    const char *backend;
    const char *path;
    const char *url;
    int durability_full;
    const char *node;
    int readers;          /* reader connections (threads) of a backend that has them ([store]
                           * connections); 0 = none: every read on the writer */
    int statement_ms;     /* PostgreSQL: how long a statement may take ([store]
                           * statement_timeout); 0 = the default, 30 s */
    int writers;          /* 2: a second writer connection beside the first, for a backend
                           * that has one ([store] writers); else one writer */
} fl_store_options;

/* The owner recorded by the claims of a single-node daemon. */
#define FL_STORE_NODE_LOCAL "local"

/* What the store calls back, all with udata. notify runs on the writer thread whenever ops are
 * done (the only hook that does); the others on the loop thread from fl_store_reap, each
 * before the callback of the op that made the change, in commit order. Any may be NULL. */
typedef struct fl_store_hooks {
    void (*notify)(void *udata);
    /* A committed change of job: the row after it (borrowed for the call; no payload, except
     * for SUBMITTED and STARTED). */
    void (*on_change)(const fl_job *job, fl_store_event ev, void *udata);
    /* job (borrowed) is waiting to run: queued now, or scheduled for job->run_at; after a
     * submit, a retry or a requeue committed. */
    void (*on_due)(const fl_job *job, void *udata);
    void *udata;
} fl_store_hooks;

/* fl_store_backend_known returns 1 if name is a store backend this flingd has ("sqlite", and
 * "postgres" when built with libpq). */
int fl_store_backend_known(const char *name);

/* fl_store_backend_names lists the backends this flingd has, for an error message
 * ("sqlite, postgres"). */
const char *fl_store_backend_names(void);

/* fl_store_url_check tells whether url is a connection address backend can use: 0, or -EINVAL
 * with the reason in why (len bytes); -ENOTSUP if that backend takes no url. */
int fl_store_url_check(const char *backend, const char *url, char *why, size_t len);

/* fl_store_open opens the backend of opt (the SQLite one creates the database 0600 and its
 * directory if needed, sets WAL mode and the durability, applies its migrations), and starts
 * the writer thread ("fl-store", every signal blocked so they reach the loop thread). hooks is
 * copied (NULL = none). Returns 0 and *out (free with fl_store_close), or a negative errno
 * with a one-line reason in err (-EINVAL for an unknown backend). */
int fl_store_open(fl_store **out, const fl_store_options *opt, const fl_store_hooks *hooks,
                  char *err, size_t errlen);

/* What a shared database's listener heard of the other nodes, reported by fl_store_wake on the
 * loop thread, each with arg: due(type) for a type another node made due (NULL: any may be,
 * the listener was away); stop(id) for a job running on this node that a CANCEL on another
 * node found running; changed(id, ev) for each change of a job another node committed, in
 * commit order (the row is not sent: read it); paused(type, 1 or 0) for a pause or resume
 * another node committed (type borrowed for the call); back(since) once the listener listens again
 * after it was away (also at its first connection): nothing committed meanwhile was heard,
 * anything committed from then on will be; since (wall clock, ms) is when it was last seen
 * listening before (the store's open for the first connection). Any may be NULL. */
typedef struct fl_store_remote {
    void (*due)(const char *type, void *arg);
    void (*stop)(int64_t id, void *arg);
    void (*changed)(int64_t id, fl_store_event ev, void *arg);
    void *arg;
    void (*back)(int64_t since, void *arg);
    void (*paused)(const char *type, int paused, void *arg);
} fl_store_remote;

/* A shared database: other nodes commit too. fl_store_watch says what the loop should watch
 * for the store to hear of their jobs: 0 with *fd (-1 = nothing now, but ask again after the
 * next wake) and *events (1 read, 2 write), and a generation in *gen that changes with the
 * fd; -ENOTSUP for a store that has no other writers (SQLite). fl_store_wake runs when that
 * fd is ready and about once a second, and reports to r (borrowed for the call) what arrived.
 * Loop thread only. */
int fl_store_watch(fl_store *s, int *fd, int *events, int *gen);
void fl_store_wake(fl_store *s, const fl_store_remote *r);

/* fl_store_follow says whether this node follows the other nodes' changes (1: something here
 * reads them, fl_store_remote.changed) or no longer (0): a shared database's nodes notify
 * their changes only while some node follows. A no-op for SQLite. Loop thread only. */
void fl_store_follow(fl_store *s, int on);

/* fl_store_set_hooks gives the store the type hooks of add-deliveries (fn(arg, type, abort));
 * fn must be callable from the writer thread (it reads the immutable config). Before any push. */
void fl_store_set_hooks(fl_store *s, fl_store_hook_fn fn, const void *arg);

/* fl_store_recover runs before any push: every job left running by an owner that is gone (for
 * SQLite: this node, as it was before this start) goes back to queued (its attempt counted),
 * and every delivery it had in flight is due again. Returns how many jobs, or a negative
 * errno. Synchronous; emits no events (the mirror catches up by itself). */
int fl_store_recover(fl_store *s);

/* The constructors: each fills op (caller's memory, borrowed until cb runs; its old contents
 * are overwritten) with one kind and its inputs, and queues it. Loop thread only. They never
 * fail: errors come back in op->result, what was found in op->answer, the outputs in op->u
 * (see each kind above for who frees them). Borrowed inputs must stay valid until cb. */

/* fl_store_submit inserts job (borrowed until cb; its id etc. are set) unless a duplicate. */
void fl_store_submit(fl_store *s, fl_store_op *op, fl_job *job, fl_store_cb cb, void *udata);
/* fl_store_get loads job id and its deliveries. */
void fl_store_get(fl_store *s, fl_store_op *op, int64_t id, fl_store_cb cb, void *udata);
/* fl_store_get_payload loads job id with its payload (no deliveries). */
void fl_store_get_payload(fl_store *s, fl_store_op *op, int64_t id, fl_store_cb cb, void *udata);
/* fl_store_list reads the page *q asks for (q copied; q->type borrowed until cb). */
void fl_store_list(fl_store *s, fl_store_op *op, const fl_store_query *q, fl_store_cb cb, void *udata);

/* The same reads for callers that need only what was committed before the call (a job id a
 * client learnt from its 202, a page, the queue depth): a reader runs them when the store has
 * readers, else the writer, in its queue, as the constructors above. */
void fl_store_get_committed(fl_store *s, fl_store_op *op, int64_t id, fl_store_cb cb, void *udata);
void fl_store_list_committed(fl_store *s, fl_store_op *op, const fl_store_query *q, fl_store_cb cb,
                             void *udata);
void fl_store_count_committed(fl_store *s, fl_store_op *op, int all_states, fl_store_cb cb, void *udata);

/* fl_store_get_many reads the committed rows of the n jobs ids[0..n) (borrowed until cb; 1..1000
 * of them, else -EINVAL) in one statement, as fl_store_get_committed does one: kind
 * FL_STORE_GET, see get.ids. A backend that has readers has it (PostgreSQL, on its writer when
 * [store] connections gave it none); with SQLite the op fails with -ENOTSUP. */
void fl_store_get_many(fl_store *s, fl_store_op *op, const int64_t *ids, size_t n, fl_store_cb cb,
                       void *udata);

/* fl_store_readers returns how many reader threads the store runs (0: every read on the writer). */
int fl_store_readers(const fl_store *s);
/* fl_store_cancel cancels job id if it waits, at now (ms). */
void fl_store_cancel(fl_store *s, fl_store_op *op, int64_t id, int64_t now, fl_store_cb cb, void *udata);
/* fl_store_set_status ORs bits into job id's status. */
void fl_store_set_status(fl_store *s, fl_store_op *op, int64_t id, int bits, fl_store_cb cb, void *udata);
/* fl_store_claim marks up to limit due jobs of type (borrowed until cb) running at now. */
void fl_store_claim(fl_store *s, fl_store_op *op, const char *type, int limit, int64_t now,
                    fl_store_cb cb, void *udata);

/* fl_store_finish records outcome *o (copied; its strings borrowed until cb) of job id. */
void fl_store_finish(fl_store *s, fl_store_op *op, int64_t id, const fl_store_outcome *o,
                     fl_store_cb cb, void *udata);
/* fl_store_count_jobs counts waiting and running jobs by type and state (every state if all_states). */
void fl_store_count_jobs(fl_store *s, fl_store_op *op, int all_states, fl_store_cb cb, void *udata);
/* fl_store_changed reads a page of jobs changed since `since` or not terminal, ids > after. */
void fl_store_changed(fl_store *s, fl_store_op *op, int64_t since, int64_t after, int limit,
                      fl_store_cb cb, void *udata);
/* fl_store_delivery_take marks up to limit deliveries due by now in flight. */
void fl_store_delivery_take(fl_store *s, fl_store_op *op, int64_t now, int limit, fl_store_cb cb,
                            void *udata);
/* fl_store_delivery_done records the outcome of delivery id: state, next_at (pending again),
 * the HTTP status or exit code (has_status), error (borrowed until cb; NULL when delivered). */
void fl_store_delivery_done(fl_store *s, fl_store_op *op, int64_t id, fl_delivery_state state,
                            int64_t next_at, int has_status, int status, const char *error,
                            fl_store_cb cb, void *udata);

/* fl_store_pause pauses (paused 1) or resumes (0) type (borrowed until cb; NULL = only read
 * which types are paused). */
void fl_store_pause(fl_store *s, fl_store_op *op, const char *type, int paused, fl_store_cb cb,
                    void *udata);

/* fl_store_retry queues failed or cancelled job id again at now (ms). */
void fl_store_retry(fl_store *s, fl_store_op *op, int64_t id, int64_t now, fl_store_cb cb, void *udata);

/* fl_store_prune deletes up to limit jobs finished before `before` (ms). */
void fl_store_prune(fl_store *s, fl_store_op *op, int64_t before, int limit, fl_store_cb cb, void *udata);

/* fl_store_sweep re-queues what nodes that are gone left in flight, on a shared database: run
 * about once a second, so that their jobs run again even while every node's slots are busy
 * (a claim sweeps too, but a node without a free slot claims nothing). */
void fl_store_sweep(fl_store *s, fl_store_op *op, fl_store_cb cb, void *udata);

/* fl_store_last_key finds the greatest Idempotency-Key of type starting with prefix (both
 * borrowed until cb): how a periodic type learns the last slot it enqueued. */
void fl_store_last_key(fl_store *s, fl_store_op *op, const char *type, const char *prefix, fl_store_cb cb,
                       void *udata);

/* Jobs one PRUNE should delete: small enough that the group it joins stays short. */
#define FL_STORE_PRUNE_BATCH 500

/* fl_store_push queues op again as it is (borrowed until its cb runs): for an op that one of
 * the constructors filled and whose callback saw it fail, to write it once more. Loop thread
 * only. Never fails: errors come back in op->result. */
void fl_store_push(fl_store *s, fl_store_op *op);

/* fl_store_cork holds the writer back from the ops pushed until fl_store_uncork, so that ops
 * pushed one after the other join one group (a SUBMIT and the CLAIM pushed behind it), whether
 * the writer is idle, between two groups or busy: no group starts with part of them. A cork
 * lasts one loop callback, never across an event. Push order is unchanged. Loop thread only;
 * not nested. */
void fl_store_cork(fl_store *s);
void fl_store_uncork(fl_store *s);

/* fl_store_reap emits the events of every finished op and runs its callback, op by op in push
 * order. Loop thread only. */
void fl_store_reap(fl_store *s);

/* fl_store_pending returns how many pushed ops have not been reaped yet. Loop thread only. */
size_t fl_store_pending(const fl_store *s);

/* fl_store_stats copies counters for /metrics: commits, rows written, failed groups; and
 * failing: the negative errno of the last group that had an op writing, if it failed, 0 once
 * such a group commits (reads alone commit even on a full disk, so they do not count); for a
 * shared database also -ENOTCONN while its listener is not connected (the server cannot be
 * reached, whether or not anything was written meanwhile).
 * A shared database (PostgreSQL) sets shared = 1 and the counters of this node: jobs it
 * claimed, its outcomes fenced (dropped: no longer its attempt), the jobs of gone nodes it
 * re-queued, notifications heard from other nodes, and the statements it sent with their
 * total time waiting for the server (round trips); following (this node follows the others'
 * changes) and followed (another node said it follows them: this node's groups notify their
 * changes). All 0 for SQLite. */
typedef struct fl_store_stats {
    uint64_t commits, ops, failed_commits;
    int failing;
    int shared;
    uint64_t claimed, fenced, orphans, notifications, round_trips;
    double round_trip_seconds;
    int following, followed;
} fl_store_stats;
void fl_store_stats_get(fl_store *s, fl_store_stats *out);

/* fl_store_delivery_free frees one delivery and its job; NULL is a no-op. */
void fl_store_delivery_free(fl_delivery *d);

/* fl_store_deliveries_free frees an array of n deliveries (and their jobs); NULL is a no-op. */
void fl_store_deliveries_free(fl_delivery **items, size_t n);

/* fl_store_delivery_state_name returns "pending", "delivered" or "failed". */
const char *fl_store_delivery_state_name(fl_delivery_state st);

/* fl_store_list_free frees an array of n jobs returned by LIST or CLAIM; NULL is a no-op. */
void fl_store_list_free(fl_job **jobs, size_t n);

/* fl_store_close finishes every pushed op (their callbacks run from this call), stops the
 * writer thread and closes the database; NULL is a no-op. Loop thread only. */
void fl_store_close(fl_store *s);

/* Fault seam for tests: the next `count` groups fail as if SQLite had returned err
 * (e.g. -ENOSPC for SQLITE_FULL) and are rolled back. */
void fl_store_inject_fault(fl_store *s, int err, int count);

/* Fault seam for tests: the next op of kind that the first writer runs fails in the backend
 * with err, as a constraint or a too-big value would make it fail (an op-level error: see
 * fl_store_op.result). */
void fl_store_inject_op_fault(fl_store *s, fl_store_kind kind, int err);

/* Test seam: while hold is 1 the writer starts no new group, so every op pushed meanwhile
 * lands in the same one once hold goes back to 0 (fl_store_close releases it too). */
void fl_store_hold(fl_store *s, int hold);

#endif
