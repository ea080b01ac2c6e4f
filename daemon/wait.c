/* wait.c — attached mode (see wait.h). */
#include "wait.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "reply.h"

struct fl_wait {
    struct ev_loop *loop;
    fl_ack *ack;
    fl_store *store;
    const fl_cancel *cancel;
    fl_list waiters;             /* fl_req.wait_node of requests with waiting set */
    int stopping;                /* no waiting through a graceful stop */
};

/* A departing client's cancel: the op outlives its request. */
typedef struct gone_cancel {
    fl_store_op op;
    fl_wait *w;
} gone_cancel;

int fl_wait_new(fl_wait **out, struct ev_loop *loop, fl_ack *ack, fl_store *store, const fl_cancel *cancel)
{
    fl_wait *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->loop = loop;
    w->ack = ack;
    w->store = store;
    w->cancel = cancel;
    fl_list_init(&w->waiters);
    *out = w;
    return 0;
}

static void wait_end(fl_wait *w, fl_req *req)
{
    ev_timer_stop(w->loop, &req->wait_timer);
    fl_list_remove(&req->wait_node);
    req->waiting = 0;
}

/* The wait ran out (or the daemon stops): the usual 202, judged for delivery as always. */
static void wait_expired(fl_wait *w, fl_req *req)
{
    wait_end(w, req);
    fl_reply_accepted(req, req->id, req->last_state);
    req->ready(req);
}

static void wait_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    fl_req *req = t->data;
    wait_expired(req->waits_in, req);
}

static void gone_cancel_done(fl_store_op *op)
{
    gone_cancel *g = (gone_cancel *)op;
    int64_t id = op->u.cancel.id;
    fl_cancel_result r = fl_cancel_settle(g->w->cancel, op);
    if (r == FL_CANCEL_ENDED && op->answer == FL_STORE_RUNNING)
        fl_log(LOG_INFO, "job %lld: its attempt was already ending; not cancelled", (long long)id);
    else if (r == FL_CANCEL_FAILED)
        fl_log(LOG_WARNING, "job %lld: could not cancel it for its departed client: %s", (long long)id,
               strerror(-op->result));
    fl_job_free(op->u.cancel.job);
    free(g);
}

/* The client of a waiting submit left: the job goes on marked ABORTED, or is cancelled
 * (Fling-On-Disconnect: cancel) — PHP's ignore_user_abort, chosen per request. The status bit
 * is pushed first, so the cancelled row and its abort callback carry it. */
static void apply_gone_policy(fl_wait *w, int64_t id, int cancel)
{
    fl_ack_aborted(w->ack, id);
    if (!cancel)
        return;
    fl_log(LOG_INFO, "job %lld: its waiting client left; cancelling it (%s: cancel)", (long long)id,
           FL_HDR_ON_DISCONNECT);
    gone_cancel *g = calloc(1, sizeof *g);
    if (!g) {
        fl_log(LOG_WARNING, "job %lld: out of memory cancelling it for its departed client", (long long)id);
        return;
    }
    g->w = w;
    fl_store_cancel(w->store, &g->op, id, fl_job_now_ms(), gone_cancel_done, g);
}

/* The client of an attached submit left: apply its choice, and answer 202 (then close); a
 * connection that is gone drops the answer and frees the request. */
static void client_left(fl_wait *w, fl_req *req)
{
    apply_gone_policy(w, req->id, req->cancel_on_gone);
    req->close_after = 1;
    fl_reply_accepted(req, req->id, req->last_state);
    req->ack_id = 0;   /* already marked ABORTED above */
    req->ready(req);
}

void fl_wait_begin(fl_wait *w, fl_req *req, const fl_job *job)
{
    req->id = job->id;
    req->last_state = job->state;
    if (req->gone) {
        client_left(w, req);
        return;
    }
    if (w->stopping) {
        fl_reply_accepted(req, job->id, job->state);
        req->ready(req);
        return;
    }
    req->waiting = 1;
    fl_list_push_tail(&w->waiters, &req->wait_node);
    ev_timer_init(&req->wait_timer, wait_timer_cb, req->wait_secs, 0.);
    req->wait_timer.data = req;
    req->waits_in = w;
    ev_timer_start(w->loop, &req->wait_timer);
    req->ready(req);   /* no reply yet: the connection keeps watching for the client leaving */
}

void fl_wait_job_changed(fl_wait *w, const fl_job *job)
{
    fl_list *pos, *tmp;
    fl_list_each(pos, tmp, &w->waiters) {
        fl_req *req = fl_list_entry(pos, fl_req, wait_node);
        if (req->id != job->id)
            continue;
        req->last_state = job->state;
        if (!fl_proto_state_terminal(job->state))
            continue;
        wait_end(w, req);
        fl_reply_waited(req, job);
        req->ready(req);
    }
}

int fl_wait_has(const fl_wait *w, int64_t id)
{
    fl_list *pos, *tmp;
    fl_list_each(pos, tmp, &w->waiters)
        if (fl_list_entry(pos, fl_req, wait_node)->id == id)
            return 1;
    return 0;
}

int fl_wait_any(const fl_wait *w)
{
    return !fl_list_empty(&w->waiters);
}

void fl_wait_each(const fl_wait *w, void (*fn)(int64_t id, void *arg), void *arg)
{
    fl_list *pos, *tmp;
    fl_list_each(pos, tmp, &w->waiters)
        fn(fl_list_entry(pos, fl_req, wait_node)->id, arg);
}

void fl_wait_client_gone(fl_wait *w, fl_req *req)
{
    if (!req->waiting)
        return;
    wait_end(w, req);
    client_left(w, req);
}

void fl_wait_stop(fl_wait *w)
{
    w->stopping = 1;
    fl_list *first;
    while ((first = fl_list_first(&w->waiters)))
        wait_expired(w, fl_list_entry(first, fl_req, wait_node));
}

void fl_wait_free(fl_wait *w)
{
    free(w);
}
