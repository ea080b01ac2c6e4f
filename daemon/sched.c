/* sched.c — claims due jobs per type and runs them on workers; records outcomes (see sched.h).
 *
 * DESIGN. Each type has a "dirty" flag: it may have due work. Commits, finished attempts and
 * the pump's wake time (pump.h) set it; the pump's run (once per loop iteration, before the
 * loop blocks) turns dirty types with free slots into one CLAIM op each, so a burst of commits
 * costs one claim, not one per job. Slots claimed but not yet returned are reserved, so the
 * global [workers] count holds across concurrent claims.
 *
 * A claim takes more jobs than there are free slots when the type's attempts end quickly: its
 * pace is how many short ones (FL_SCHED_AHEAD_SECONDS) ended between the last two claims, and a claim asks for twice that beyond
 * the free slots (at most FL_SCHED_AHEAD_MAX), and goes out as soon as fewer than a pace's
 * worth are left waiting. The extra ones wait in the type's `ready` list (running in the
 * store, their attempt counted) and start as slots free up, without waiting for a commit; so
 * a fast type runs a whole group's worth per commit instead of [workers] count per two
 * commits. A slow type ends few attempts per round trip and claims about its free slots.
 *
 * A type becomes dirty only when work may be due that no claim has seen: a commit reaped while
 * the type's claim is in flight was made before that claim ran (the store reaps in push
 * order), so the claim saw it; and a claim tells through next_run_at whether it left due jobs
 * behind. A freed slot only kicks the pump. So no claim runs that is known to find nothing.
 *
 * A submit that makes a type due need not wait for its commit to be claimed: http.c calls
 * fl_sched_submitting right after pushing the SUBMIT, and a type with free slots and no claim in
 * flight pushes its CLAIM behind it at once. http.c corks the store around both pushes, so they
 * land in the same writer group, and one commit carries the job from submitted to running (the claim sees the submit's row in the same
 * transaction), and the SUBMIT's on_due, reaped while that claim is in flight, claims nothing
 * more. A lone job thus costs two commits (SUBMIT+CLAIM, FINISH) instead of three. */
#include "sched.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "list.h"
#include "log.h"
#include "pump.h"
#include "rediskeys.h"
#include "worker.h"

/* After a failed claim (store error) the type is looked at again after this long. */
#define FL_SCHED_RETRY_CLAIM 1.0
/* Seconds between SIGTERM and SIGKILL when an attempt is stopped. */
#define FL_SCHED_KILL_GRACE 5.0
/* An outcome the store could not write (disk full, I/O error) is written again after a back-off
 * from this long, doubling up to the max: the disk may come back at any moment. */
#define FL_SCHED_REWRITE_MIN 0.1
#define FL_SCHED_REWRITE_MAX 5.0
/* The most jobs a type claims ahead of its free slots (each holds its payload in memory). */
#define FL_SCHED_AHEAD_MAX 256
/* Only attempts shorter than this count towards a type's pace: for longer ones a commit's
 * round trip is small beside the attempt, and a job claimed ahead would show running in the
 * store for as long as the attempt before it takes. */
#define FL_SCHED_AHEAD_SECONDS 0.05

typedef struct sched_type {
    fl_sched *s;
    const fl_type *type;
    int running;
    int rewriting;           /* outcomes of this type waiting to be written again */
    int claiming;            /* a CLAIM op is in flight */
    int claim_limit;
    int claim_slots;         /* of claim_limit, the free slots it reserved */
    int ended;               /* short attempts ended since the last claim was pushed */
    int pace;                /* attempts that ended between the last two claims pushed */
    int n_ready;
    fl_list ready;           /* claimed ahead (run.node), waiting for a free slot, oldest first */
    int dirty;               /* may have due jobs */
    int paused;              /* POST /v1/types/{type}/pause: claim nothing until resumed */
    int64_t next_run_at;     /* earliest known run_at of a scheduled job, ms; 0 = none known */
    fl_store_op claim;
    fl_metrics_type m;       /* outcomes and durations for /metrics */
} sched_type;

typedef struct finish_op finish_op;

/* The read of the paused types at start. Its own allocation: should the scheduler be freed
 * before the store reaps it, the callback finds s NULL and only frees it. */
typedef struct pause_load {
    fl_store_op op;
    fl_sched *s;
} pause_load;

typedef struct run {
    fl_list node;            /* in s->runs, or in its type's ready list until it starts */
    sched_type *st;
    fl_job *job;             /* claimed, with payload; owned */
    fl_worker *worker;
} run;

struct fl_sched {
    struct ev_loop *loop;
    const fl_config *cfg;
    fl_store *store;
    void (*progress)(void *arg); /* an attempt or its record ended */
    void *arg;
    sched_type *types;
    size_t n_types;
    int running;
    int reserved;            /* slots of claims in flight */
    int claims;              /* CLAIM ops in flight: one may reserve no slot (it only claims ahead) */
    int finishing;           /* FINISH ops pushed, not yet reaped */
    int rewriting;           /* outcomes whose write failed, until one commits: their slots stay busy */
    int stopping;
    fl_list runs;            /* attempts running, newest first */
    fl_list rewrites;        /* outcomes waiting for their next write (on their timer) */
    fl_worker_env env;
    fl_pump pump;            /* claims for dirty types; wakes at the earliest next_run_at */
    ev_timer grace;
    fl_sched_stats stats;
    uint64_t rng;            /* the back-off's jitter */
    pause_load *loading;     /* the paused types are being read (one read at a time) */
    int paused_read;         /* they were read once: nothing is claimed before; a later read applies what changed */
    int read_again;          /* a read was asked for while one was under way: its result may be older */
    ev_timer load_retry;     /* after a failed read of the paused types */
};

static int64_t now_ms(void) { return fl_job_now_ms(); }

static sched_type *type_of(fl_sched *s, const char *name)
{
    for (size_t i = 0; i < s->n_types; i++)
        if (strcmp(s->types[i].type->name, name) == 0)
            return &s->types[i];
    return NULL;
}

static void mark_dirty(sched_type *st)
{
    st->dirty = 1;
    fl_pump_kick(&st->s->pump);
}

static void note_run_at(sched_type *st, int64_t run_at)
{
    if (!st->next_run_at || run_at < st->next_run_at) {
        st->next_run_at = run_at;
        fl_pump_wake_at(&st->s->pump, run_at);
    }
}

/* The pump's wake time passed: types whose next run_at is due become dirty, and the pump wakes
 * again at the earliest run_at still ahead. */
static void wake_due(fl_sched *s)
{
    int64_t now = now_ms(), next = 0;
    for (size_t i = 0; i < s->n_types; i++) {
        sched_type *st = &s->types[i];
        if (st->next_run_at && st->next_run_at <= now + 1) {
            st->next_run_at = 0;
            st->dirty = 1;
        }
        if (st->next_run_at && (!next || st->next_run_at < next))
            next = st->next_run_at;
    }
    fl_pump_wake_at(&s->pump, next);
}

/* ---------------------------------------------------------------- outcomes */

struct finish_op {
    fl_store_op op;
    fl_sched *s;
    sched_type *st;
    fl_list node;            /* in s->rewrites while its timer runs */
    ev_timer retry;
    int failures;            /* writes of this outcome that failed */
    char text[];             /* error, then output */
};

static void push_finish(finish_op *f)
{
    f->s->finishing++;
    fl_store_push(f->s->store, &f->op);
}

static void rewrite_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    finish_op *f = w->data;
    fl_list_remove(&f->node);
    push_finish(f);
}

/* The store could not write f (disk full, I/O error): keep the outcome and write it again after
 * a back-off. Until it commits the job is still running in the store, so its slot stays busy. */
static void rewrite_later(finish_op *f)
{
    fl_sched *s = f->s;
    if (f->failures++ == 0) {
        fl_log(LOG_ERR, "job %lld: could not record its outcome (%s): %s; writing it again until it commits",
               (long long)f->op.u.finish.id, fl_proto_state_name(f->op.u.finish.o.state), strerror(-f->op.result));
        s->rewriting++;
        f->st->rewriting++;
    }
    fl_list_push_head(&s->rewrites, &f->node);
    double delay = fl_backoff_delay(FL_SCHED_REWRITE_MIN, FL_SCHED_REWRITE_MAX, f->failures,
                                    FL_BACKOFF_EQUAL_JITTER, &s->rng);
    ev_timer_init(&f->retry, rewrite_cb, delay, 0.);
    f->retry.data = f;
    ev_timer_start(s->loop, &f->retry);
}

/* A rewritten outcome is committed: its slot is free again. */
static void rewrite_end(finish_op *f)
{
    if (!f->failures)
        return;
    f->s->rewriting--;
    f->st->rewriting--;
    fl_pump_kick(&f->s->pump);   /* its slot is free */
}

static void finish_done(fl_store_op *op)
{
    finish_op *f = (finish_op *)op;
    fl_sched *s = f->s;
    s->finishing--;
    if (op->result < 0) {
        rewrite_later(f);
        s->progress(s->arg);   /* a stop does not wait for it: see fl_sched_free */
        return;
    }
    if (op->answer == FL_STORE_NOT_FOUND)
        fl_log(LOG_ERR, "job %lld: could not record its outcome: the job is not in the store",
               (long long)op->u.finish.id);
    if (op->result == 0 && f->failures)
        fl_log(LOG_INFO, "job %lld: outcome (%s) recorded after %d failed write(s)", (long long)op->u.finish.id,
               fl_proto_state_name(op->u.finish.o.state), f->failures);
    rewrite_end(f);
    fl_job_free(op->u.finish.job);
    free(f);
    s->progress(s->arg);
}

/* Decides what an attempt's end means for the job, logs it unless it succeeded. */
static fl_state outcome_state(fl_sched *s, const run *r, const fl_outcome *o, int64_t *run_at)
{
    const fl_job *job = r->job;
    const fl_type *t = r->st->type;
    /* r->worker is NULL for a job claimed ahead that never started (hand_back): no duration to
     * observe, and its callers log it, once per batch handed back. */
    if (r->worker)
        fl_metrics_observe(&r->st->m, o->seconds);
    if (o->stopped == FL_STOP_SHUTDOWN) {
        s->stats.requeued++;
        if (r->worker)
            fl_log(LOG_INFO, "job %lld (%s): stopped by shutdown; back in the queue", (long long)job->id, t->name);
        return FL_STATE_QUEUED;
    }
    if (o->stopped == FL_STOP_CANCEL) {
        r->st->m.cancelled++;
        fl_log(LOG_INFO, "job %lld (%s): cancelled %s", (long long)job->id, t->name,
               r->worker ? "while running" : "before it started");
        return FL_STATE_CANCELLED;
    }
    if (o->ok) {
        r->st->m.succeeded++;
        return FL_STATE_SUCCEEDED;
    }
    if (job->attempts < job->max_attempts) {
        double delay = fl_backoff_delay(t->backoff_base, t->backoff_max, job->attempts, FL_BACKOFF_EQUAL_JITTER,
                                        &s->rng);
        *run_at = now_ms() + (int64_t)(delay * 1000.0);
        r->st->m.retried++;
        fl_log(LOG_WARNING, "job %lld (%s): attempt %d/%d failed: %s; retry in %.1f s", (long long)job->id, t->name,
               job->attempts, job->max_attempts, o->error, delay);
        note_run_at(r->st, *run_at);
        return FL_STATE_SCHEDULED;
    }
    r->st->m.failed++;
    fl_log(LOG_WARNING, "job %lld (%s): failed after %d attempt(s): %s", (long long)job->id, t->name,
           job->attempts, o->error);
    return FL_STATE_FAILED;
}

static void record(fl_sched *s, const run *r, const fl_outcome *o)
{
    size_t elen = strlen(o->error), output_len = o->output_len;
    finish_op *f = calloc(1, sizeof *f + elen + 1 + output_len + 1);
    const char *error = f ? f->text : NULL;
    if (!f) {   /* keep the outcome itself; only its text does not fit */
        f = calloc(1, sizeof *f);
        error = "out of memory: the attempt's error and output were not kept";
        elen = strlen(error);
        output_len = 0;
    }
    if (!f) {
        fl_log(LOG_ERR, "job %lld: out of memory recording its outcome; the next start re-queues it",
               (long long)r->job->id);
        return;
    }
    f->s = s;
    f->st = r->st;
    if (error == f->text) {
        memcpy(f->text, o->error, elen);
        if (output_len)
            memcpy(f->text + elen + 1, o->output, output_len);
    }
    int64_t run_at = 0;
    fl_state state = outcome_state(s, r, o, &run_at);
    if (o->timed_out)
        s->stats.timed_out++;
    fl_store_outcome out = {
        .state = state,
        .status_bits = o->timed_out ? FL_STATUS_TIMEOUT : 0,
        .has_exit_code = o->has_exit_code,
        .exit_code = o->exit_code,
        .error = elen ? error : NULL,
        .output = output_len ? f->text + elen + 1 : NULL,
        .output_len = output_len,
        .run_at = state == FL_STATE_SCHEDULED ? run_at : state == FL_STATE_QUEUED ? now_ms() : 0,
        .finished_at = fl_proto_state_terminal(state) ? now_ms() : 0,
        .attempt = r->job->attempts,
    };
    s->finishing++;
    fl_store_finish(s->store, &f->op, r->job->id, &out, finish_done, f);
}

static void worker_done(fl_worker *w, const fl_outcome *o, void *udata)
{
    (void)w;
    run *r = udata;
    fl_sched *s = r->st->s;
    record(s, r, o);
    fl_list_remove(&r->node);
    s->running--;
    r->st->running--;
    if (o->seconds < FL_SCHED_AHEAD_SECONDS)
        r->st->ended++;
    fl_pump_kick(&s->pump);   /* a free slot: a ready job may start, or a dirty type claim */
    fl_job_free(r->job);
    free(r);
    s->progress(s->arg);
}

/* ---------------------------------------------------------------- claiming */

static int free_slots(const fl_sched *s, const sched_type *st)
{
    int global = s->cfg->workers - s->running - s->reserved - s->rewriting;
    int mine = st->type->concurrency ? st->type->concurrency - st->running - st->rewriting : global;
    return mine < global ? mine : global;
}

/* The worker's spec of one attempt of job by its type's handler; borrows both. */
static fl_worker_spec job_spec(const fl_type *t, const fl_job *job)
{
    return (fl_worker_spec){
        .handler = t->handler, .argv = t->argv, .url = t->url, .settings = t,
        .input = job->payload, .input_len = job->payload_len,
        .job_id = job->id, .job_type = job->type, .attempt = job->attempts, .timeout = job->timeout,
        .traceparent = job->traceparent, .tracestate = job->tracestate,
    };
}

/* start_run starts r's attempt (r owned; its job claimed) on a worker, or records it failed. */
static void start_run(fl_sched *s, run *r)
{
    sched_type *st = r->st;
    fl_job *job = r->job;
    fl_worker_spec spec = job_spec(st->type, job);
    int rc = fl_worker_start(&s->env, &spec, worker_done, r, &r->worker);
    if (rc == 0) {
        fl_list_push_head(&s->runs, &r->node);
        s->running++;
        st->running++;
        s->stats.attempts++;
        return;
    }
    fl_log(LOG_ERR, "job %lld (%s): could not start: %s", (long long)job->id, st->type->name, strerror(-rc));
    /* Could not even start: the attempt counts and is recorded as failed, so nothing is stuck. */
    fl_outcome o = { .error = "could not start the handler (out of resources)" };
    record(s, r, &o);
    fl_job_free(job);
    free(r);
}

/* hand_back ends a claimed attempt that never started (stop or pause: back in the queue, the
 * claim's attempt counted; cancel: cancelled), and frees r. */
static void hand_back(fl_sched *s, run *r, fl_stop_reason why)
{
    fl_outcome o = { .stopped = why, .error = "" };
    record(s, r, &o);
    fl_job_free(r->job);
    free(r);
}

/* start_ready starts st's ready jobs while it has free slots. */
static void start_ready(fl_sched *s, sched_type *st)
{
    fl_list *n;
    while (free_slots(s, st) > 0 && (n = fl_list_first(&st->ready))) {
        fl_list_remove(n);
        st->n_ready--;
        start_run(s, fl_list_entry(n, run, node));
    }
}

/* drop_ready hands every ready job of s back to the queue (a stop). */
static void drop_ready(fl_sched *s)
{
    fl_list *n;
    for (size_t i = 0; i < s->n_types; i++) {
        sched_type *st = &s->types[i];
        if (st->n_ready)
            fl_log(LOG_INFO, "stop: type %s: %d job(s) claimed but not started; back in the queue "
                             "(their attempt counted)", st->type->name, st->n_ready);
        while ((n = fl_list_first(&st->ready))) {
            fl_list_remove(n);
            st->n_ready--;
            hand_back(s, fl_list_entry(n, run, node), FL_STOP_SHUTDOWN);
        }
    }
}

static void claim_done(fl_store_op *op)
{
    sched_type *st = op->udata;
    fl_sched *s = st->s;
    st->claiming = 0;
    s->claims--;
    s->reserved -= st->claim_slots;
    /* Slots this claim reserved but did not fill are free again for types left waiting. */
    fl_pump_kick(&s->pump);
    if (op->result < 0) {
        fl_log(LOG_ERR, "type %s: claiming jobs failed: %s; retrying in %.0f s", st->type->name,
               strerror(-op->result), FL_SCHED_RETRY_CLAIM);
        note_run_at(st, now_ms() + (int64_t)(FL_SCHED_RETRY_CLAIM * 1000));
        s->progress(s->arg);   /* a stop may have waited for this claim */
        return;
    }
    /* A claim reads the store's pause itself and takes nothing once it committed. Jobs it
     * took before a pause that this node applied since (another node's, heard meanwhile) go
     * back untouched but counted, like the ones claimed during a stop. */
    int back = s->stopping || st->paused;
    if (back && op->u.claim.n)
        fl_log(LOG_INFO, "type %s: %zu job(s) claimed while %s; back in the queue (their attempt counted)",
               st->type->name, op->u.claim.n, s->stopping ? "stopping" : "paused");
    size_t i;
    for (i = 0; i < op->u.claim.n; i++) {
        run *r = calloc(1, sizeof *r);
        if (!r) {
            fl_log(LOG_ERR, "job %lld: out of memory starting it; the next start re-queues it",
                   (long long)op->u.claim.jobs[i]->id);
            fl_job_free(op->u.claim.jobs[i]);
            continue;
        }
        r->st = st;
        r->job = op->u.claim.jobs[i];
        if (back)
            hand_back(s, r, FL_STOP_SHUTDOWN);
        else {
            fl_list_push_tail(&st->ready, &r->node);
            st->n_ready++;
        }
    }
    free(op->u.claim.jobs);
    op->u.claim.jobs = NULL;
    start_ready(s, st);
    /* Due jobs left behind (a queued one makes next_run_at at most now): claim again. */
    if (op->u.claim.next_run_at && op->u.claim.next_run_at <= now_ms())
        mark_dirty(st);
    else if (op->u.claim.next_run_at)
        note_run_at(st, op->u.claim.next_run_at);
    s->progress(s->arg);
}

/* How many jobs st claims beyond its free slots: twice its pace. */
static int ahead_of(const sched_type *st)
{
    int ahead = 2 * (st->ended > st->pace ? st->ended : st->pace);
    return ahead < FL_SCHED_AHEAD_MAX ? ahead : FL_SCHED_AHEAD_MAX;
}

/* push_claim sends st's CLAIM for its n free slots (reserved until it is reaped) and ahead more,
 * less those already waiting in its ready list; the caller made sure that is at least one. */
static void push_claim(fl_sched *s, sched_type *st, int n, int ahead)
{
    st->dirty = 0;
    st->claiming = 1;
    s->claims++;
    st->claim_slots = n;
    st->claim_limit = n + ahead - st->n_ready;
    st->pace = st->ended;
    st->ended = 0;
    s->reserved += n;
    fl_store_claim(s->store, &st->claim, st->type->name, st->claim_limit, now_ms(), claim_done, st);
}

static void pump_cb(void *udata, int woke)
{
    fl_sched *s = udata;
    if (s->stopping || !s->paused_read)
        return;
    if (woke)
        wake_due(s);
    for (size_t i = 0; i < s->n_types; i++) {
        sched_type *st = &s->types[i];
        start_ready(s, st);   /* claimed before a pause: running in the store already */
        if (!st->dirty || st->claiming || st->paused)
            continue;   /* a paused type stays dirty: its resume claims at once */
        int n = free_slots(s, st), ahead = ahead_of(st);
        /* start_ready left jobs waiting only if no slot is free */
        if (n <= 0 && (ahead == 0 || st->n_ready >= (ahead + 1) / 2))
            continue;   /* stays dirty: a finishing attempt frees a slot and pumps again */
        push_claim(s, st, n < 0 ? 0 : n, ahead);
    }
}

/* ---------------------------------------------------------------- paused types */

static void load_paused(fl_sched *s);

static void load_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    load_paused(w->data);
}

/* apply_paused makes the types listed (n of them) the paused ones: at start quietly, after
 * that as any pause or resume is applied (logged; a resume claims). */
static void apply_paused(fl_sched *s, const char (*types)[FL_TYPE_NAME_MAX + 1], size_t n, int again)
{
    for (size_t t = 0; t < s->n_types; t++) {
        int listed = 0;
        for (size_t i = 0; i < n && !listed; i++)
            listed = strcmp(types[i], s->types[t].type->name) == 0;
        if (again)
            fl_sched_set_paused(s, s->types[t].type->name, listed);
        else
            s->types[t].paused = listed;
    }
}

static void paused_loaded(fl_store_op *op)
{
    pause_load *l = (pause_load *)op;
    fl_sched *s = l->s;
    if (s)
        s->loading = NULL;
    if (s && op->result < 0 && !s->stopping) {
        fl_log(LOG_ERR, "scheduler: reading the paused types failed: %s; %s (retrying in %.0f s)",
               strerror(-op->result), s->paused_read ? "other nodes' pauses may be missed" : "no job starts until it works",
               FL_SCHED_RETRY_CLAIM);
        s->read_again = 0;
        ev_timer_set(&s->load_retry, FL_SCHED_RETRY_CLAIM, 0.);
        ev_timer_start(s->loop, &s->load_retry);
    } else if (s && op->result == 0) {
        apply_paused(s, (const char (*)[FL_TYPE_NAME_MAX + 1])op->u.pause.types, op->u.pause.n, s->paused_read);
        s->paused_read = 1;
        fl_pump_kick(&s->pump);
    }
    free(op->u.pause.types);
    free(l);
    if (s && s->read_again && !s->stopping) {
        s->read_again = 0;
        load_paused(s);
    }
    if (s)
        s->progress(s->arg);
}

/* load_paused reads which types are paused before anything is claimed: the flag is the
 * store's, so it survives restarts. */
static void load_paused(fl_sched *s)
{
    pause_load *l = calloc(1, sizeof *l);
    if (!l) {
        ev_timer_set(&s->load_retry, FL_SCHED_RETRY_CLAIM, 0.);
        ev_timer_start(s->loop, &s->load_retry);
        return;
    }
    l->s = s;
    s->loading = l;
    fl_store_pause(s->store, &l->op, NULL, 0, paused_loaded, l);
}

void fl_sched_reload_paused(fl_sched *s)
{
    if (s->stopping || ev_is_active(&s->load_retry))
        return;   /* the retry reads them anew */
    if (s->loading)
        s->read_again = 1;
    else
        load_paused(s);
}

int fl_sched_paused(const fl_sched *s, const char *type)
{
    for (size_t i = 0; i < s->n_types; i++)
        if (strcmp(s->types[i].type->name, type) == 0)
            return s->types[i].paused;
    return -ENOENT;
}

void fl_sched_set_paused(fl_sched *s, const char *type, int paused)
{
    sched_type *st = type_of(s, type);
    if (!st || st->paused == !!paused)
        return;
    st->paused = !!paused;
    fl_log(LOG_INFO, "type %s: %s", type, paused ? "paused: its jobs wait until it is resumed" : "resumed");
    if (!paused)
        mark_dirty(st);
}

/* ---------------------------------------------------------------- public */

int fl_sched_new(fl_sched **out, struct ev_loop *loop, const fl_config *cfg, fl_store *store,
                 struct fl_webhook *webhook, void (*progress)(void *arg), void *arg)
{
    fl_sched *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->types = calloc(cfg->n_types ? cfg->n_types : 1, sizeof *s->types);
    if (!s->types) {
        free(s);
        return -ENOMEM;
    }
    s->loop = loop;
    s->cfg = cfg;
    s->store = store;
    s->progress = progress;
    s->arg = arg;
    fl_list_init(&s->runs);
    fl_list_init(&s->rewrites);
    s->n_types = cfg->n_types;
    s->env = (fl_worker_env){ .loop = loop, .webhook = webhook, .kill_grace = FL_SCHED_KILL_GRACE };
    fl_pump_init(&s->pump, loop, pump_cb, s);
    for (size_t i = 0; i < s->n_types; i++) {
        s->types[i] = (sched_type){ .s = s, .type = &cfg->types[i] };
        fl_list_init(&s->types[i].ready);
        mark_dirty(&s->types[i]);
    }
    s->rng = fl_backoff_seed();
    ev_timer_init(&s->load_retry, load_retry_cb, 0., 0.);
    s->load_retry.data = s;
    load_paused(s);
    *out = s;
    return 0;
}

void fl_sched_committed(fl_sched *s, const fl_job *job)
{
    sched_type *st = type_of(s, job->type);
    if (!st || s->stopping)
        return;
    if (job->state == FL_STATE_SCHEDULED)
        note_run_at(st, job->run_at);
    else if (!st->claiming)   /* else committed before the claim in flight ran: it saw the job */
        mark_dirty(st);
}

void fl_sched_submitting(fl_sched *s, const char *type)
{
    sched_type *st = type_of(s, type);
    /* A type with jobs claimed ahead, or without a free slot, claims as its pump decides. */
    if (!st || s->stopping || !s->paused_read || st->paused || st->claiming || st->n_ready)
        return;
    int n = free_slots(s, st);
    if (n > 0)
        push_claim(s, st, n, ahead_of(st));
}

void fl_sched_slots_changed(fl_sched *s)
{
    if (s->stopping)
        return;
    for (size_t i = 0; i < s->n_types; i++)
        mark_dirty(&s->types[i]);
}

int fl_sched_cancel(fl_sched *s, int64_t id)
{
    fl_list *n, *tmp;
    for (size_t i = 0; i < s->n_types; i++)
        fl_list_each(n, tmp, &s->types[i].ready) {
            run *r = fl_list_entry(n, run, node);
            if (r->job->id == id) {   /* claimed, not started: it ends cancelled at once */
                fl_list_remove(n);
                s->types[i].n_ready--;
                hand_back(s, r, FL_STOP_CANCEL);
                return 0;
            }
        }
    fl_list_each(n, tmp, &s->runs) {
        run *r = fl_list_entry(n, run, node);
        if (r->job->id == id) {
            fl_worker_stop(r->worker, FL_STOP_CANCEL);
            return 0;
        }
    }
    return -ENOENT;
}

static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    fl_sched *s = w->data;
    fl_log(LOG_WARNING, "stop: %d job(s) still running after %.0f s; stopping them and re-queueing", s->running,
           s->cfg->shutdown_grace);
    fl_list *n, *tmp;
    fl_list_each(n, tmp, &s->runs)
        fl_worker_stop(fl_list_entry(n, run, node)->worker, FL_STOP_SHUTDOWN);
}

void fl_sched_stop(fl_sched *s)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    fl_pump_stop(&s->pump);
    ev_timer_stop(s->loop, &s->load_retry);
    drop_ready(s);
    if (s->running) {
        fl_log(LOG_INFO, "stop: waiting up to %.0f s for %d running job(s)", s->cfg->shutdown_grace, s->running);
        ev_timer_init(&s->grace, grace_cb, s->cfg->shutdown_grace, 0.);
        s->grace.data = s;
        ev_timer_start(s->loop, &s->grace);
    }
    /* One last write of each outcome still waiting: should it fail too, the stop goes on. */
    fl_list *n;
    while ((n = fl_list_first(&s->rewrites))) {
        finish_op *f = fl_list_entry(n, finish_op, node);
        ev_timer_stop(s->loop, &f->retry);
        fl_list_remove(&f->node);
        push_finish(f);
    }
}

int fl_sched_idle(const fl_sched *s)
{
    /* A claim in flight holds the stop: its callback needs the scheduler, and the jobs it
     * claims go back to the queue (FINISH ops) before the loop may end. */
    return s->running == 0 && s->finishing == 0 && s->claims == 0;
}

void fl_sched_stats_get(const fl_sched *s, fl_sched_stats *out)
{
    *out = s->stats;
    out->running = (size_t)s->running;
    for (size_t i = 0; i < s->n_types; i++) {   /* outcome totals are the sums over types */
        const fl_metrics_type *m = &s->types[i].m;
        out->succeeded += m->succeeded;
        out->failed += m->failed;
        out->cancelled += m->cancelled;
        out->retried += m->retried;
    }
}

void fl_sched_type_metrics(const fl_sched *s, fl_metrics_type *out)
{
    for (size_t i = 0; i < s->n_types; i++) {
        out[i] = s->types[i].m;
        out[i].name = s->types[i].type->name;
        out[i].running = s->types[i].running;
    }
}

void fl_sched_free(fl_sched *s)
{
    if (!s)
        return;
    fl_pump_stop(&s->pump);
    ev_timer_stop(s->loop, &s->grace);
    ev_timer_stop(s->loop, &s->load_retry);
    if (s->loading)
        s->loading->s = NULL;
    fl_list *n;
    for (size_t i = 0; i < s->n_types; i++)   /* running in the store: the next start re-queues them */
        while ((n = fl_list_first(&s->types[i].ready))) {
            run *r = fl_list_entry(n, run, node);
            fl_list_remove(n);
            fl_job_free(r->job);
            free(r);
        }
    while ((n = fl_list_first(&s->rewrites))) {
        finish_op *f = fl_list_entry(n, finish_op, node);
        fl_log(LOG_ERR, "job %lld: outcome (%s) still not recorded at exit; the next start re-queues the job "
                        "(this attempt counted)", (long long)f->op.u.finish.id, fl_proto_state_name(f->op.u.finish.o.state));
        ev_timer_stop(s->loop, &f->retry);
        fl_list_remove(&f->node);
        free(f);
    }
    free(s->types);
    free(s);
}
