/* periodic.c — enqueues the slots of periodic types (see periodic.h). */
#include "periodic.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "job.h"
#include "log.h"

/* A slot whose timer fires more than this late is the last of a backlog only if no later one
 * has passed too: past it, the schedule skips to the current slot (a suspended machine). */
#define FL_PERIODIC_LATE_MS 5000
/* "cron:" and 12 digits: the key's width is fixed, so the greatest key is the latest slot. */
#define FL_PERIODIC_KEY_LEN (sizeof FL_PERIODIC_KEY_PREFIX - 1 + 12)

typedef struct periodic_type {
    fl_periodic *p;
    const fl_type *type;
    ev_timer slot_timer;     /* the next slot */
    ev_timer retry_timer;    /* the last read or submit failed */
    fl_store_op op;          /* LAST_KEY at start, then one SUBMIT at a time */
    fl_job *job;             /* the submit's, while in flight */
    int busy;                /* op in flight */
    int loaded;              /* the last slot enqueued is known */
    int failures;            /* store ops failed in a row (the first is logged) */
    int64_t next;            /* the slot slot_timer waits for, s */
    int64_t want;            /* the latest slot not yet committed, s; 0 = none */
    int64_t sent;            /* the slot of the submit in flight */
} periodic_type;

struct fl_periodic {
    struct ev_loop *loop;
    fl_store *store;
    periodic_type *types;
    size_t n;
    int stopped;
    uint64_t rng;            /* the retries' jitter */
};

static void kick(periodic_type *pt);

/* arm makes slot_timer fire at slot (s since the epoch, wall clock). */
static void arm(periodic_type *pt, int64_t slot)
{
    if (slot < 0) {
        fl_log(LOG_WARNING, "type %s: schedule \"%s\" has no further slot; nothing more is enqueued",
               pt->type->name, pt->type->schedule);
        return;
    }
    pt->next = slot;
    double delay = (double)(slot * 1000 - fl_job_now_ms()) / 1000.0;
    ev_timer_set(&pt->slot_timer, delay > 0 ? delay : 0., 0.);
    ev_timer_start(pt->p->loop, &pt->slot_timer);
}

static void slot_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    periodic_type *pt = w->data;
    int64_t now = fl_job_now_ms();
    if (pt->p->stopped)
        return;
    if (now < pt->next * 1000) {   /* the monotonic timer ran ahead of the wall clock */
        arm(pt, pt->next);
        return;
    }
    pt->want = pt->next;
    int64_t following = fl_cron_next(&pt->type->cron, pt->next);
    if (following >= 0 && following * 1000 < now - FL_PERIODIC_LATE_MS)
        following = fl_cron_next(&pt->type->cron, fl_cron_prev(&pt->type->cron, now / 1000) - 1);
    arm(pt, following);
    kick(pt);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* failed logs a failed store op once per outage and tries again after a back-off. */
static void failed(periodic_type *pt, int err, const char *what)
{
    if (!pt->failures++)
        fl_log(LOG_ERR, "type %s: %s failed: %s; trying again with back-off up to %.0f s", pt->type->name, what,
               strerror(-err), FL_PERIODIC_RETRY_MAX);
    if (!pt->p->stopped) {
        double delay = fl_backoff_delay(FL_PERIODIC_RETRY_BASE, FL_PERIODIC_RETRY_MAX, pt->failures,
                                        FL_BACKOFF_EQUAL_JITTER, &pt->p->rng);
        ev_timer_set(&pt->retry_timer, delay, 0.);
        ev_timer_start(pt->p->loop, &pt->retry_timer);
    }
}

static void submitted(fl_store_op *op)
{
    periodic_type *pt = op->udata;
    fl_job_free(pt->job);
    pt->job = NULL;
    pt->busy = 0;
    if (op->result < 0) {
        failed(pt, op->result, "enqueueing a slot");
        return;
    }
    if (pt->failures)
        fl_log(LOG_INFO, "type %s: enqueueing works again", pt->type->name);
    pt->failures = 0;
    if (pt->want == pt->sent)
        pt->want = 0;
    kick(pt);   /* a newer slot may have come meanwhile */
}

/* slot_job makes the job of slot: the type's defaults, periodic_payload, the slot's key. */
static fl_job *slot_job(const fl_type *t, int64_t slot)
{
    char key[FL_PERIODIC_KEY_LEN + 1];
    const char *payload = t->periodic_payload ? t->periodic_payload : "";
    snprintf(key, sizeof key, FL_PERIODIC_KEY_PREFIX "%012" PRId64, slot);
    fl_job_sizes sz = {
        .type = strlen(t->name), .callback = FL_JOB_ABSENT, .idem_key = strlen(key), .error = FL_JOB_ABSENT,
        .output = FL_JOB_ABSENT, .payload = strlen(payload), .previous_error = FL_JOB_ABSENT,
        .content_type = FL_JOB_ABSENT, .traceparent = FL_JOB_ABSENT, .tracestate = FL_JOB_ABSENT,
    };
    fl_job *job = fl_job_new(&sz);
    if (!job)
        return NULL;
    memcpy(job->type, t->name, sz.type);
    memcpy(job->idem_key, key, sz.idem_key);
    memcpy(job->payload, payload, sz.payload);
    int64_t now = fl_job_now_ms();
    job->max_attempts = t->max_attempts;
    job->timeout = t->timeout;
    job->created_at = now;
    job->run_at = now;
    job->state = FL_STATE_QUEUED;
    return job;
}

/* kick submits the wanted slot unless an op is in flight. */
static void kick(periodic_type *pt)
{
    if (pt->busy || !pt->loaded || !pt->want || pt->p->stopped)
        return;
    pt->job = slot_job(pt->type, pt->want);
    if (!pt->job) {
        failed(pt, -ENOMEM, "enqueueing a slot");
        return;
    }
    pt->busy = 1;
    pt->sent = pt->want;
    fl_store_submit(pt->p->store, &pt->op, pt->job, submitted, pt);
}

/* The last slot enqueued before this start is known: the last missed one (if any) is
 * enqueued once, then the schedule goes on from now. */
static void loaded(fl_store_op *op)
{
    periodic_type *pt = op->udata;
    const fl_cron *c = &pt->type->cron;
    pt->busy = 0;
    if (pt->p->stopped) {   /* replaced by a reload, or stopping */
        free(op->u.last_key.key);
        return;
    }
    if (op->result < 0) {
        failed(pt, op->result, "reading its last slot");
        return;
    }
    int64_t last = 0, now = fl_job_now_ms() / 1000, prev = fl_cron_prev(c, now);
    const char *key = op->u.last_key.key;
    if (key && strlen(key) == FL_PERIODIC_KEY_LEN)
        last = strtoll(key + sizeof FL_PERIODIC_KEY_PREFIX - 1, NULL, 10);
    free(op->u.last_key.key);
    pt->failures = 0;
    pt->loaded = 1;
    if (last && prev > last) {
        fl_log(LOG_INFO, "type %s: slots passed while flingd was down; enqueueing the last one once", pt->type->name);
        pt->want = prev;
    }
    arm(pt, fl_cron_next(c, now));
    kick(pt);
}

static void load(periodic_type *pt)
{
    pt->busy = 1;
    fl_store_last_key(pt->p->store, &pt->op, pt->type->name, FL_PERIODIC_KEY_PREFIX, loaded, pt);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    periodic_type *pt = w->data;
    if (pt->p->stopped || pt->busy)
        return;
    if (pt->loaded)
        kick(pt);
    else
        load(pt);
}

int fl_periodic_new(fl_periodic **out, struct ev_loop *loop, const fl_config *cfg, fl_store *store)
{
    fl_periodic *p = calloc(1, sizeof *p);
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_types; i++)
        n += cfg->types[i].schedule != NULL;
    if (!p || (n && !(p->types = calloc(n, sizeof *p->types)))) {
        free(p);
        return -ENOMEM;
    }
    p->loop = loop;
    p->store = store;
    p->rng = fl_backoff_seed();
    for (size_t i = 0; i < cfg->n_types; i++) {
        if (!cfg->types[i].schedule)
            continue;
        periodic_type *pt = &p->types[p->n++];
        pt->p = p;
        pt->type = &cfg->types[i];
        ev_init(&pt->slot_timer, slot_cb);
        pt->slot_timer.data = pt;
        ev_init(&pt->retry_timer, retry_cb);
        pt->retry_timer.data = pt;
        load(pt);
    }
    *out = p;
    return 0;
}

void fl_periodic_stop(fl_periodic *p)
{
    if (!p)
        return;
    p->stopped = 1;
    for (size_t i = 0; i < p->n; i++) {
        ev_timer_stop(p->loop, &p->types[i].slot_timer);
        ev_timer_stop(p->loop, &p->types[i].retry_timer);
    }
}

void fl_periodic_free(fl_periodic *p)
{
    if (!p)
        return;
    fl_periodic_stop(p);
    free(p->types);
    free(p);
}
