/* store_backend.h — the table of operations a store backend fills (private to the store: only
 * store.c and the backends include it). The engine (store.c) owns the queue, the writer thread,
 * the group transactions and their rollback, the validation of ops, the callback policy and the
 * events; a backend only keeps rows: store_sqlite.c in SQLite, store_pg.c in PostgreSQL.
 *
 * Every function runs on one thread at a time: open, recover and close on the loop thread
 * while the writers are not running, the readers' as said at reader_open, a second writer's
 * as said at writer_open, the rest on the writer thread. Each op function runs inside
 * begin ... commit, gets an op the engine has already validated, and returns 0 or the negative
 * errno that fails (and rolls back) the whole group; what it found goes to op->answer, its
 * outputs to op->u (the engine frees them if the group fails). */
#ifndef FL_STORE_BACKEND_H
#define FL_STORE_BACKEND_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct fl_store_backend {
    const char *name;   /* as [store] backend = names it */
    /* check_url: 0 if url is an address this backend can connect to, else -EINVAL with the
     * reason in why; NULL for a backend that takes no url. Any thread, no connection made. */
    int (*check_url)(const char *url, char *why, size_t len);
    /* open returns 0 and *out (the backend's state, freed by close), or a negative errno with a
     * one-line reason in err. node is the owner the claims record (borrowed until close). */
    int (*open)(void **out, const fl_store_options *opt, const char *node, char *err, size_t errlen);
    void (*close)(void *b);
    /* recover re-queues the running jobs of owners that are gone (node's own included: it is
     * starting) and frees their deliveries in flight; returns how many jobs or a negative errno. */
    int (*recover)(void *b, const char *node, int64_t now);
    /* begin starts a group's transaction; now (ms) stamps every row the group writes. */
    int (*begin)(void *b, int64_t now);
    /* check_alive: 0 while what the backend writes to is still what it opened (SQLite: the
     * same files at path), else -ESTALE; called before each commit. */
    int (*check_alive)(void *b);
    int (*commit)(void *b);
    /* rollback ends a failed group's transaction, if one is still open. */
    void (*rollback)(void *b);
    int (*submit)(void *b, fl_store_op *op);
    /* submit_many (NULL: the engine calls submit for each) runs n >= 2 SUBMITs that follow one
     * another in a group (ops: the engine's array, borrowed for the call), with the outcome of
     * calling submit on each in turn: every op its own answer, its job's id (growing in op
     * order), and FL_STORE_DUPLICATE with the job that has the key, also when an earlier op of
     * ops took it. An error fails the group; one of an op's own data (-EINVAL, -E2BIG, -EEXIST,
     * -ERANGE) does not name the op, so the engine runs the group again op by op to find it. */
    int (*submit_many)(void *b, fl_store_op **ops, size_t n);
    /* submit_commit (NULL: none) is submit_many for a run that is the whole group, with nothing
     * left that could fail the group after it: the backend may COMMIT in the same round trip
     * as its statement. 1 if it committed (the engine then neither checks nor commits), 0 if
     * it left the transaction open, or the error that fails the group (nothing committed). */
    int (*submit_commit)(void *b, fl_store_op **ops, size_t n);
    /* finish_many (NULL: finish for each) is the same for a run of FINISHes: each op the
     * answer and the job finish would give it; the engine adds the deliveries afterwards. */
    int (*finish_many)(void *b, fl_store_op **ops, size_t n);
    int (*get)(void *b, fl_store_op *op);
    int (*list)(void *b, fl_store_op *op);
    int (*cancel)(void *b, fl_store_op *op);
    int (*set_status)(void *b, fl_store_op *op);
    int (*claim)(void *b, fl_store_op *op);
    int (*finish)(void *b, fl_store_op *op);
    int (*count)(void *b, fl_store_op *op);
    int (*changed)(void *b, fl_store_op *op);
    int (*delivery_take)(void *b, fl_store_op *op);
    int (*delivery_done)(void *b, fl_store_op *op);
    int (*pause)(void *b, fl_store_op *op);
    int (*retry)(void *b, fl_store_op *op);
    int (*prune)(void *b, fl_store_op *op);
    int (*last_key)(void *b, fl_store_op *op);
    int (*sweep)(void *b, fl_store_op *op);   /* NULL: nobody else writes (FL_STORE_SWEEP) */
    /* add_delivery inserts one pending delivery of job_id's terminal event (abort 0 =
     * "complete", 1 = "abort") to target (borrowed), due now. The engine decides which. */
    int (*add_delivery)(void *b, int64_t job_id, int abort, const char *target);
    /* A backend that hears of other writers' jobs (NULL both for one that has none) has a
     * listener the loop drives; both run on the loop thread, never on the writer's.
     * watch sets *fd (-1: none now) and *events (1 read, 2 write) the loop should wait for,
     * and returns a number that changes whenever the fd is a new one. wake runs when the fd
     * is ready and on a timer, and reports to r what the other writers did (see
     * fl_store_remote in store.h). */
    int (*watch)(void *b, int *fd, int *events);
    void (*wake)(void *b, const fl_store_remote *r);
    /* follow (NULL with watch): this node follows the other nodes' changes from now on (1) or
     * no longer (0); loop thread. */
    void (*follow)(void *b, int on);
    /* shared_stats (NULL with watch) fills the shared-database fields of *out (see
     * fl_store_stats) and returns 1 while the listener is connected, else 0. Loop thread. */
    int (*shared_stats)(void *b, fl_store_stats *out);
    /* Readers (all three NULL for a backend without): reader_open opens one more connection
     * for reads beside b's (on the loop thread at open, before the writer runs): 0 and *out,
     * or a negative errno with the reason in err. reader_run runs one GET (also a batch: get.ids),
     * LIST, COUNT or CHANGED on it, outside any transaction, on that reader's thread (one
     * thread per reader, never two at once); it reconnects first if the connection was lost,
     * and returns 0 or the negative errno that fails the op. reader_close frees a reader after
     * its thread ended, before close(b). */
    int (*reader_open)(void *b, void **out, char *err, size_t errlen);
    int (*reader_run)(void *reader, fl_store_op *op);
    void (*reader_close)(void *reader);
    /* A second writer (both NULL for a backend with one): writer_open opens one more
     * connection beside b's (loop thread, at open, before the writers run), on which the
     * engine runs groups of SUBMITs without an Idempotency-Key while b's runs another group:
     * begin, submit, submit_many, check_alive, commit and rollback get it in place of b, on
     * the second writer's thread. 0 and *out, or a negative errno with the reason in err.
     * writer_close frees it after that thread ended, before close(b). */
    int (*writer_open)(void *b, void **out, char *err, size_t errlen);
    void (*writer_close)(void *writer);
} fl_store_backend;

/* fl_store_cancel_answer is what a CANCEL answers for a job found in state: FL_STORE_OK (it
 * waits: cancel it), FL_STORE_RUNNING or FL_STORE_ENDED (leave it unchanged). The same for
 * every backend. */
fl_store_answer fl_store_cancel_answer(fl_state state);

/* fl_store_spawn starts a store thread (the engine's, or a backend's own) with every signal
 * blocked, so that SIGCHLD, SIGTERM and the rest always reach the loop thread, which is the
 * one that handles them. 0 or a negative errno. */
int fl_store_spawn(pthread_t *t, void *(*fn)(void *), void *arg);

/* fl_store_errf writes the one-line reason of a failed open into err (errlen bytes; NULL or 0
 * = no reason wanted). */
void fl_store_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The SQLite backend (store_sqlite.c). */
extern const fl_store_backend fl_store_sqlite;

#ifdef FL_POSTGRES
/* The PostgreSQL backend (store_pg.c; built when CMake finds libpq). */
extern const fl_store_backend fl_store_pg;
#endif

/* Limits the engine checks ops against and a backend may size its scratch by: one LIST,
 * CHANGED or DELIVERY_TAKE page (the contract's 1..1000), and one CLAIM (a scheduler never has
 * more free slots than that). */
#define FL_STORE_PAGE_MAX 1000
#define FL_STORE_CLAIM_MAX 1000

#endif
