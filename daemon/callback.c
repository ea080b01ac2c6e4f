/* callback.c — delivers the callbacks stored with terminal states (see callback.h). */
#include "callback.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "list.h"
#include "log.h"
#include "pump.h"
#include "store.h"
#include "webhook.h"
#include "worker.h"

/* After a failed TAKE (store error) the deliveries are looked at again after this long. */
#define FL_CB_RETRY_TAKE 1.0
/* A fresh job's first attempt waits this long at most for its ABORTED verdict (ack.c): the
 * verdict of a 202 takes at most a second (conn.c), its commit a few milliseconds more. */
#define FL_CB_HOLD_MAX 3.0
/* Only a job this young can still have a verdict pending. */
#define FL_CB_FRESH_MS 10000
/* SIGTERM → SIGKILL grace of an exec: hook that overruns its time limit. */
#define FL_CB_KILL_GRACE 2.0

typedef struct attempt {
    fl_list node;                /* in cb->attempts */
    fl_callbacks *cb;
    fl_delivery *d;              /* owned, with its job */
    ev_timer hold;               /* bounds the wait for the job's final status; or to record again */
    fl_ack_wait final;           /* waiting for the job's final status */
    fl_webhook_req *wreq;        /* http target in flight */
    fl_worker *worker;           /* exec target in flight */
    char **argv;                 /* exec: the split command; one allocation */
    char *body;                  /* the body; exec's stdin is read from it until the attempt ends */
    fl_store_op done;            /* DONE, once the attempt ended */
    int recording;               /* done is pushed (or waits to be pushed again) */
    char error[256];
} attempt;

struct fl_callbacks {
    struct ev_loop *loop;
    const fl_config *cfg;
    fl_store *store;
    struct fl_webhook *webhook;
    fl_ack *ack;
    void (*progress)(void *arg);   /* an attempt or store op ended: a stop may be complete */
    void *arg;
    fl_list attempts;            /* in flight: held, sending, or recording; newest first */
    size_t in_flight;
    int taking;                  /* a TAKE is in flight */
    int dirty;                   /* due deliveries may exist */
    int stopping;
    int closed;                  /* the daemon is going away: ops that finish only free memory */
    fl_store_op take;
    fl_pump pump;                /* TAKEs while dirty; wakes at the earliest next_at */
    fl_worker_env env;
    fl_callbacks_stats stats;
    uint64_t rng;                /* the back-off's jitter */
};

int fl_callbacks_needed(const fl_config *cfg)
{
    if (cfg->n_callback_allow)
        return 1;
    for (size_t i = 0; i < cfg->n_types; i++)
        if (cfg->types[i].on_complete || cfg->types[i].on_abort)
            return 1;
    return 0;
}

const char *fl_callbacks_hook(const void *arg, const char *type, int abort)
{
    const fl_type *t = fl_config_find_type(arg, type, strlen(type));
    if (!t)
        return NULL;
    return abort ? t->on_abort : t->on_complete;
}

static void mark_dirty(fl_callbacks *cb)
{
    cb->dirty = 1;
    fl_pump_kick(&cb->pump);
}

/* ---------------------------------------------------------------- attempts */

static void attempt_free(attempt *a)
{
    fl_callbacks *cb = a->cb;
    fl_list_remove(&a->node);
    cb->in_flight--;
    ev_timer_stop(cb->loop, &a->hold);
    fl_ack_cancel(&a->final);
    free(a->body);
    free(a->argv);
    fl_store_delivery_free(a->d);
}

static void push_done(attempt *a) { fl_store_push(a->cb->store, &a->done); }

/* The store could not record the result: try again later, so the row does not stay in flight
 * until a restart. The op keeps its inputs; the store resets its outputs. */
static void redo_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    push_done(w->data);
}

static void done_cb(fl_store_op *op)
{
    attempt *a = op->udata;
    fl_callbacks *cb = a->cb;
    if (op->result < 0 && !cb->closed) {
        fl_log(LOG_ERR, "callback %lld (job %lld): could not record its result: %s; trying again in %.0f s",
               (long long)a->d->id, (long long)a->d->job_id, strerror(-op->result), FL_CB_RETRY_TAKE);
        ev_timer_init(&a->hold, redo_cb, FL_CB_RETRY_TAKE, 0.);
        a->hold.data = a;
        ev_timer_start(cb->loop, &a->hold);
        return;
    }
    attempt_free(a);
    free(a);
    if (cb->closed)
        return;
    mark_dirty(cb);
    cb->progress(cb->arg);
}

static const char *event_name(const fl_delivery *d) { return d->abort ? "abort" : "complete"; }

/* Records how the attempt ended: delivered, due again after a back-off, or failed for good
 * (attempts spent, or permanent: retrying cannot help). */
static void attempt_finish(attempt *a, int ok, int permanent, int has_status, int status, const char *error)
{
    fl_callbacks *cb = a->cb;
    const fl_config *cfg = cb->cfg;
    fl_delivery *d = a->d;
    fl_delivery_state state;
    int64_t next_at = 0;
    if (ok) {
        cb->stats.delivered++;
        state = FL_DELIVERY_DELIVERED;
    } else if (!permanent && d->attempts < cfg->callback_attempts) {
        double delay = fl_backoff_delay(cfg->callback_backoff, cfg->callback_backoff_max, d->attempts,
                                        FL_BACKOFF_EQUAL_JITTER, &cb->rng);
        cb->stats.retried++;
        state = FL_DELIVERY_PENDING;
        next_at = fl_job_now_ms() + (int64_t)(delay * 1000.0);
        fl_log(LOG_WARNING, "callback %lld (job %lld, %s -> %s): attempt %d/%d failed: %s; retry in %.1f s",
               (long long)d->id, (long long)d->job_id, event_name(d), d->target, d->attempts,
               cfg->callback_attempts, error, delay);
    } else {
        cb->stats.failed++;
        state = FL_DELIVERY_FAILED;
        fl_log(LOG_ERR, "callback %lld (job %lld, %s -> %s): given up after %d attempt(s): %s",
               (long long)d->id, (long long)d->job_id, event_name(d), d->target, d->attempts, error);
    }
    snprintf(a->error, sizeof a->error, "%s", error ? error : "");
    a->recording = 1;
    fl_store_delivery_done(cb->store, &a->done, d->id, state, next_at, has_status, status,
                           ok ? NULL : a->error, done_cb, a);
}

static void http_done(void *udata, const fl_webhook_result *r)
{
    attempt *a = udata;
    a->wreq = NULL;
    attempt_finish(a, r->ok, 0, r->status != 0, (int)r->status, r->error);
}

static void exec_done(fl_worker *w, const fl_outcome *o, void *udata)
{
    (void)w;
    attempt *a = udata;
    a->worker = NULL;
    attempt_finish(a, o->ok, 0, o->has_exit_code, o->exit_code, o->error);
}

/* The payload as base64 text (RFC 4648, padded) for a JSON body: a new string, or NULL. */
static json_t *payload_base64(const fl_job *job)
{
    if (job->payload_len > (size_t)INT_MAX / 4 * 3 - 3)
        return NULL;
    size_t cap = 4 * ((job->payload_len + 2) / 3) + 1;
    unsigned char *text = malloc(cap);
    if (!text)
        return NULL;
    int n = EVP_EncodeBlock(text, job->payload ? job->payload : (const unsigned char *)"", (int)job->payload_len);
    json_t *s = json_stringn((const char *)text, (size_t)n);
    free(text);
    return s;
}

/* The body: the job as GET /v1/jobs/{id} shows it, plus "event", and with its type's
 * callback_payload the payload as base64 in "payload". NULL on ENOMEM. */
static char *make_body(const fl_callbacks *cb, const fl_delivery *d, size_t *len)
{
    const fl_type *t = fl_config_find_type(cb->cfg, d->job->type, strlen(d->job->type));
    json_t *o = fl_job_to_json(d->job);
    if (!o || json_object_set_new(o, "event", json_string(event_name(d))) < 0 ||
        (t && t->callback_payload && json_object_set_new(o, "payload", payload_base64(d->job)) < 0)) {
        json_decref(o);
        return NULL;
    }
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (body)
        *len = strlen(body);
    return body;
}

/* POSTs the body to the target as libcurl normalised it when it was checked again here: the
 * type's own hook as it is, a job's Fling-Callback against today's [callbacks] allow (a row
 * may predate the config). libcurl then connects to exactly the parts that were checked. */
static int send_http(attempt *a, const char *body, size_t len, const char **why)
{
    const fl_config *cfg = a->cb->cfg;
    const fl_delivery *d = a->d;
    const char *hook = fl_callbacks_hook(cfg, d->job->type, d->abort);
    char *url;
    int rc = fl_config_callback_url(cfg, d->target, !hook || strcmp(hook, d->target) != 0, &url, why);
    if (rc < 0)
        return rc;
    char ev[64], did[64], att[64], jid[64], sig[32 + 65], tp[FL_TRACE_HEADER_MAX], ts[FL_TRACE_HEADER_MAX];
    snprintf(ev, sizeof ev, "Fling-Event: %s", event_name(d));
    snprintf(did, sizeof did, "Fling-Delivery: %lld", (long long)d->id);
    snprintf(att, sizeof att, "Fling-Attempt: %d", d->attempts);
    snprintf(jid, sizeof jid, "Fling-Job-Id: %lld", (long long)d->job_id);
    const char *headers[8] = { ev, did, att, jid, NULL, NULL, NULL, NULL };
    size_t n = 4;
    if (cfg->callback_secret) {
        char hex[65];
        rc = fl_webhook_sign(cfg->callback_secret, body, len, hex);
        if (rc == 0)
            snprintf(sig, sizeof sig, "Fling-Signature: sha256=%s", hex);
        headers[n++] = sig;
    }
    fl_worker_trace_headers(d->job->traceparent, d->job->tracestate, tp, ts, headers + n);
    double connect = cfg->callback_connect_timeout < cfg->callback_timeout ? cfg->callback_connect_timeout
                                                                           : cfg->callback_timeout;
    if (rc == 0)
        rc = fl_webhook_post(a->cb->webhook, url, body, len, headers, connect, cfg->callback_timeout,
                             http_done, a, &a->wreq);
    free(url);
    return rc;
}

/* exec: runs the command through worker.c like an exec job of the job's type (its env,
 * env_pass, user and group): the body on stdin, the job's id and type in FLING_JOB_ID /
 * FLING_JOB_TYPE, the delivery attempt in FLING_ATTEMPT. */
static int send_exec(attempt *a, const char *body, size_t len, const char **why)
{
    const fl_delivery *d = a->d;
    int rc = fl_config_split(d->target + 5, &a->argv, why);
    if (rc < 0)
        return rc;
    const fl_config *cfg = a->cb->cfg;
    fl_worker_spec spec = {
        .handler = FL_HANDLER_EXEC, .argv = a->argv, .input = body, .input_len = len,
        .settings = fl_config_find_type(cfg, d->job->type, strlen(d->job->type)),   /* the config outlives us */
        .job_id = d->job_id, .job_type = d->job->type, .attempt = d->attempts, .timeout = cfg->callback_timeout,
        .traceparent = d->job->traceparent, .tracestate = d->job->tracestate,
    };
    return fl_worker_start(&a->cb->env, &spec, exec_done, a, &a->worker);
}

/* Sends the attempt now that the job's status is final. */
static void attempt_send(attempt *a)
{
    fl_delivery *d = a->d;
    if (!d->job) {
        attempt_finish(a, 0, 1, 0, 0, "the job no longer exists");
        return;
    }
    size_t len = 0;
    char *body = a->body = make_body(a->cb, d, &len);
    const char *why = NULL;
    int rc = -ENOMEM;
    if (body)
        rc = strncmp(d->target, "exec:", 5) == 0 ? send_exec(a, body, len, &why) : send_http(a, body, len, &why);
    if (rc < 0) {
        char err[200];
        snprintf(err, sizeof err, "could not start: %s", why ? why : strerror(-rc));
        attempt_finish(a, 0, rc == -EINVAL, 0, 0, err);   /* a bad URL or command stays bad */
    }
}

/* The job's status is final, or the wait for it ran out, or the daemon stops: send now. */
static void hold_end(attempt *a)
{
    ev_timer_stop(a->cb->loop, &a->hold);
    fl_ack_cancel(&a->final);
    attempt_send(a);
}

static void hold_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    hold_end(w->data);
}

static void final_cb(fl_ack_wait *w)
{
    hold_end(w->udata);
}

static void attempt_start(fl_callbacks *cb, fl_delivery *d)
{
    attempt *a = calloc(1, sizeof *a);
    if (!a) {
        /* Stays in flight in the store: due again after a restart. */
        fl_log(LOG_ERR, "callback %lld (job %lld): out of memory; it is retried after a restart",
               (long long)d->id, (long long)d->job_id);
        fl_store_delivery_free(d);
        return;
    }
    a->cb = cb;
    a->d = d;
    fl_list_push_head(&cb->attempts, &a->node);
    cb->in_flight++;
    ev_timer_init(&a->hold, hold_cb, FL_CB_HOLD_MAX, 0.);
    a->hold.data = a;
    if (d->job && d->attempts == 1 && d->job->created_at > fl_job_now_ms() - FL_CB_FRESH_MS &&
        fl_ack_when_final(cb->ack, &a->final, d->job_id, final_cb, a) > 0) {
        ev_timer_start(cb->loop, &a->hold);
        return;
    }
    attempt_send(a);
}

/* ---------------------------------------------------------------- taking due deliveries */

static void take_done(fl_store_op *op)
{
    fl_callbacks *cb = op->udata;
    cb->taking = 0;
    if (cb->closed || (cb->stopping && op->result == 0)) {
        /* Taken during a stop: left in flight, due again at the next start. */
        fl_store_deliveries_free(op->u.take.items, op->u.take.n);
        if (!cb->closed)
            cb->progress(cb->arg);
        return;
    }
    if (op->result < 0) {
        fl_log(LOG_ERR, "callbacks: reading due deliveries failed: %s; retrying in %.0f s", strerror(-op->result),
               FL_CB_RETRY_TAKE);
        fl_pump_wake_at(&cb->pump, fl_job_now_ms() + (int64_t)(FL_CB_RETRY_TAKE * 1000));
        cb->progress(cb->arg);
        return;
    }
    for (size_t i = 0; i < op->u.take.n; i++)
        attempt_start(cb, op->u.take.items[i]);
    free(op->u.take.items);
    if (op->u.take.n == (size_t)op->u.take.limit || cb->dirty)
        mark_dirty(cb);   /* there may be more, or more came while this TAKE ran */
    fl_pump_wake_at(&cb->pump, op->u.take.next_at);
    cb->progress(cb->arg);
}

static void pump_cb(void *udata, int woke)
{
    fl_callbacks *cb = udata;
    if (woke)
        cb->dirty = 1;   /* a delivery's next_at has come */
    int room = cb->cfg->callback_concurrency - (int)cb->in_flight;
    if (!cb->dirty || cb->taking || cb->stopping || room <= 0)
        return;   /* stays dirty: a finished attempt pumps again */
    cb->dirty = 0;
    cb->taking = 1;
    fl_store_delivery_take(cb->store, &cb->take, fl_job_now_ms(), room, take_done, cb);
}

/* ---------------------------------------------------------------- public */

int fl_callbacks_new(fl_callbacks **out, struct ev_loop *loop, const fl_config *cfg, fl_store *store,
                     struct fl_webhook *webhook, fl_ack *ack, void (*progress)(void *arg), void *arg)
{
    fl_callbacks *cb = calloc(1, sizeof *cb);
    if (!cb)
        return -ENOMEM;
    *cb = (fl_callbacks){ .loop = loop, .cfg = cfg, .store = store, .webhook = webhook, .ack = ack,
                          .progress = progress, .arg = arg };
    fl_list_init(&cb->attempts);
    cb->rng = fl_backoff_seed();
    cb->env = (fl_worker_env){ .loop = loop, .webhook = webhook, .kill_grace = FL_CB_KILL_GRACE };
    fl_pump_init(&cb->pump, loop, pump_cb, cb);
    mark_dirty(cb);
    *out = cb;
    return 0;
}

void fl_callbacks_job_changed(fl_callbacks *cb, const fl_job *job)
{
    /* A status bit committed while an attempt waits for it goes into that attempt's body. */
    fl_list *n, *tmp;
    fl_list_each(n, tmp, &cb->attempts) {
        attempt *a = fl_list_entry(n, attempt, node);
        if (a->d->job && a->d->job_id == job->id && ev_is_active(&a->hold))
            a->d->job->status = job->status;
    }
    if (fl_proto_state_terminal(job->state) &&
        (job->callback || fl_callbacks_hook(cb->cfg, job->type, job->state != FL_STATE_SUCCEEDED)))
        mark_dirty(cb);
}

void fl_callbacks_due(fl_callbacks *cb)
{
    mark_dirty(cb);
}

void fl_callbacks_stop(fl_callbacks *cb)
{
    cb->stopping = 1;
    fl_pump_stop(&cb->pump);
    /* Held attempts go out now rather than wait through the stop. */
    fl_list *n, *tmp;
    fl_list_each(n, tmp, &cb->attempts) {
        attempt *a = fl_list_entry(n, attempt, node);
        /* (An attempt whose result waits to be recorded again uses the same timer: it is not
         * held, and must not be sent a second time.) */
        if (ev_is_active(&a->hold) && !a->recording)
            hold_end(a);
    }
}

int fl_callbacks_idle(const fl_callbacks *cb)
{
    return cb->in_flight == 0 && !cb->taking;
}

void fl_callbacks_stats_get(const fl_callbacks *cb, fl_callbacks_stats *out)
{
    *out = cb->stats;
    out->in_flight = cb->in_flight;
}

void fl_callbacks_close(fl_callbacks *cb)
{
    if (!cb)
        return;
    cb->closed = 1;
    fl_pump_stop(&cb->pump);
    fl_list *n, *tmp;
    fl_list_each(n, tmp, &cb->attempts) {
        attempt *a = fl_list_entry(n, attempt, node);
        if (a->recording && !ev_is_active(&a->hold))
            continue;   /* its DONE is in the store's hands: done_cb frees it */
        if (a->wreq)
            fl_webhook_cancel(a->wreq);
        if (a->worker)
            fl_worker_abandon(a->worker);
        attempt_free(a);
        free(a);
    }
}

void fl_callbacks_free(fl_callbacks *cb)
{
    if (!cb)
        return;
    fl_callbacks_close(cb);
    free(cb);
}
