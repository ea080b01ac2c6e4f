/* wait.h — attached mode (Prefer: wait=N): a committed submit whose client asked to wait holds
 * its reply until the job ends (200 with the job), the time runs out or the daemon stops (the
 * usual 202), or the client leaves (Fling-On-Disconnect: the job goes on with status bit 1, or
 * is cancelled under the shared cancel policy). Owns the list of waiting requests and their
 * timers. Loop thread only. */
#ifndef FL_WAIT_H
#define FL_WAIT_H

#include <ev.h>
#include "ack.h"
#include "cancel.h"
#include "req.h"
#include "store.h"

typedef struct fl_wait fl_wait;

/* fl_wait_new makes the waiters' list on loop; a departing client's job is marked through ack
 * and cancelled through store and cancel. All borrowed; they must outlive it. 0 or -ENOMEM. */
int fl_wait_new(fl_wait **out, struct ev_loop *loop, fl_ack *ack, fl_store *store, const fl_cancel *cancel);

/* fl_wait_begin holds req's reply for job (just committed; borrowed for the call) for
 * req->wait_secs seconds. req->ready(req) follows: at once (no reply yet) while it waits, and
 * again with the reply; a client already gone or a stopping daemon gets its answer at once. */
void fl_wait_begin(fl_wait *w, fl_req *req, const fl_job *job);

/* fl_wait_job_changed answers the requests waiting for job once it is terminal. */
void fl_wait_job_changed(fl_wait *w, const fl_job *job);

/* fl_wait_has tells whether a request waits for job id (1) or none does (0). */
int fl_wait_has(const fl_wait *w, int64_t id);

/* fl_wait_any tells whether any request waits (1) or none does (0). */
int fl_wait_any(const fl_wait *w);

/* fl_wait_each calls fn(id, arg) for the job of every waiting request (an id once per request). */
void fl_wait_each(const fl_wait *w, void (*fn)(int64_t id, void *arg), void *arg);

/* fl_wait_client_gone applies the Fling-On-Disconnect choice of req, a waiting request whose
 * client closed or reset the connection, and answers it (a request that does not wait is left
 * alone). */
void fl_wait_client_gone(fl_wait *w, fl_req *req);

/* fl_wait_stop answers every waiting request 202 now; later submits do not wait (graceful stop). */
void fl_wait_stop(fl_wait *w);

/* fl_wait_free releases w (no request may still wait); NULL is a no-op. */
void fl_wait_free(fl_wait *w);

#endif
