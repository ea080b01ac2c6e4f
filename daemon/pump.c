/* pump.c — run-once-before-sleep plus a wake timer (see pump.h). */
#include "pump.h"

#include "job.h"

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    fl_pump *p = w->data;
    ev_prepare_stop(loop, w);
    int woke = p->woke;
    p->woke = 0;
    p->run(p->udata, woke);
}

static void wake_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    fl_pump *p = w->data;
    p->wake_at = 0;
    p->woke = 1;
    fl_pump_kick(p);
}

void fl_pump_init(fl_pump *p, struct ev_loop *loop, fl_pump_fn run, void *udata)
{
    *p = (fl_pump){ .loop = loop, .run = run, .udata = udata };
    ev_prepare_init(&p->prepare, prepare_cb);
    ev_init(&p->wake, wake_cb);
    p->prepare.data = p->wake.data = p;
}

void fl_pump_kick(fl_pump *p)
{
    if (!p->stopped)
        ev_prepare_start(p->loop, &p->prepare);
}

void fl_pump_wake_at(fl_pump *p, int64_t at_ms)
{
    if (p->stopped || !at_ms || (p->wake_at && p->wake_at <= at_ms))
        return;
    p->wake_at = at_ms;
    /* A millisecond late rather than early: the owner's "is it due" compares against now. */
    double in = (double)(at_ms - fl_job_now_ms()) / 1000.0;
    ev_timer_stop(p->loop, &p->wake);
    ev_timer_set(&p->wake, in > 0 ? in + 0.001 : 0., 0.);
    ev_timer_start(p->loop, &p->wake);
}

void fl_pump_stop(fl_pump *p)
{
    p->stopped = 1;
    p->wake_at = 0;
    ev_prepare_stop(p->loop, &p->prepare);
    ev_timer_stop(p->loop, &p->wake);
}
