/* prune.c — retention: a timer pushes one small PRUNE op at a time (see prune.h). */
#include "prune.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "log.h"

/* The first batch runs this long after start, not during recovery's catch-up. */
#define FL_PRUNE_FIRST 1.0

struct fl_prune {
    struct ev_loop *loop;
    fl_store *store;
    fl_metrics *metrics;
    int64_t retention_ms;
    ev_timer timer;
    fl_store_op op;
    int in_flight;           /* op pushed, not yet reaped */
    int stopped;
    int failing;             /* the last batch failed (logged once until one works) */
};

static void schedule(fl_prune *p, double after)
{
    if (p->stopped)
        return;
    ev_timer_set(&p->timer, after, 0.);
    ev_timer_start(p->loop, &p->timer);
}

static void pruned(fl_store_op *op)
{
    fl_prune *p = op->udata;
    p->in_flight = 0;
    if (op->result < 0) {
        if (!p->failing)
            fl_log(LOG_ERR, "retention: deleting old jobs failed: %s; trying again in %.0f s",
                   strerror(-op->result), FL_PRUNE_IDLE);
        p->failing = 1;
        schedule(p, FL_PRUNE_IDLE);
        return;
    }
    p->failing = 0;
    p->metrics->jobs_pruned += op->u.prune.n;
    schedule(p, op->u.prune.n == FL_STORE_PRUNE_BATCH ? FL_PRUNE_BUSY : FL_PRUNE_IDLE);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    fl_prune *p = w->data;
    if (p->stopped || p->in_flight)
        return;
    p->in_flight = 1;
    fl_store_prune(p->store, &p->op, fl_job_now_ms() - p->retention_ms, FL_STORE_PRUNE_BATCH, pruned, p);
}

int fl_prune_new(fl_prune **out, struct ev_loop *loop, fl_store *store, long retention_secs,
                 fl_metrics *metrics)
{
    fl_prune *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->loop = loop;
    p->store = store;
    p->metrics = metrics;
    p->retention_ms = (int64_t)retention_secs * 1000;
    p->stopped = retention_secs == 0;
    ev_init(&p->timer, timer_cb);
    p->timer.data = p;
    schedule(p, FL_PRUNE_FIRST);
    *out = p;
    return 0;
}

void fl_prune_set_retention(fl_prune *p, long retention_secs)
{
    p->retention_ms = (int64_t)retention_secs * 1000;
    p->stopped = retention_secs == 0;
    ev_timer_stop(p->loop, &p->timer);
    if (!p->in_flight)
        schedule(p, FL_PRUNE_FIRST);   /* else the batch in flight schedules the next */
}

void fl_prune_stop(fl_prune *p)
{
    if (!p)
        return;
    p->stopped = 1;
    ev_timer_stop(p->loop, &p->timer);
}

void fl_prune_free(fl_prune *p)
{
    if (!p)
        return;
    ev_timer_stop(p->loop, &p->timer);
    free(p);
}
