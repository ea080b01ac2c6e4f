/* server.c — starts and stops one flingd: store, listeners, connections, graceful stop. */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "callback.h"
#include "conn.h"
#include "http.h"
#include "listen.h"
#include "log.h"
#include "mirror.h"
#include "sched.h"
#include "webhook.h"

/* A graceful stop waits this long for in-flight requests to get their commit and reply. */
#define FL_STOP_REQUESTS_MAX 10.0

/* A graceful stop waits this long for the mirror's writes in flight (the requeues of the stop
 * among them) to be acknowledged: Redis answers in milliseconds when it is there at all. */
#define FL_STOP_MIRROR_MAX 1.0

static void maybe_done(fl_server *srv);

static void mirror_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    fl_server *srv = w->data;
    fl_log(LOG_WARNING, "stop: Redis did not acknowledge the last mirror writes within %.0f s; leaving them",
           FL_STOP_MIRROR_MAX);
    srv->mirror_abandoned = 1;
    maybe_done(srv);
}

/* mirror_flushed tells whether the mirror has nothing left in flight, and if it has, starts the
 * bound on waiting for it. */
static int mirror_flushed(fl_server *srv)
{
    if (!srv->mirror || srv->mirror_abandoned || fl_mirror_idle(srv->mirror))
        return 1;
    if (!ev_is_active(&srv->mirror_timer)) {
        ev_timer_init(&srv->mirror_timer, mirror_timer_cb, FL_STOP_MIRROR_MAX, 0.);
        srv->mirror_timer.data = srv;
        ev_timer_start(srv->loop, &srv->mirror_timer);
    }
    return 0;
}

/* The loop may end once every connection is answered and closed, no job runs, no callback
 * attempt is in flight (those only until the stop bound) and the mirror's last writes are
 * answered (for at most FL_STOP_MIRROR_MAX); fl_store_close then completes whatever store ops
 * are left. */
static void maybe_done(fl_server *srv)
{
    if (!srv->sched)
        return;   /* tearing down: fl_server_free is under way */
    if (srv->stopping && (!srv->conns || srv->conns_abandoned) && fl_sched_idle(srv->sched) &&
        (!srv->callbacks || fl_callbacks_idle(srv->callbacks) || srv->stop_expired) && mirror_flushed(srv))
        ev_break(srv->loop, EVBREAK_ALL);
}

/* The mirror calls this during a stop when its last write in flight was answered. */
static void mirror_idle(void *arg)
{
    maybe_done(arg);
}

/* The store's on_change: every committed change of a job, in commit order, with the row
 * after it (borrowed), goes to attached clients waiting for the job (Prefer: wait), the
 * callback deliveries and the Redis mirror. */
static void store_changed(const fl_job *job, fl_store_event ev, void *arg)
{
    fl_server *srv = arg;
    fl_http_job_changed(srv, job);
    if (srv->callbacks)
        fl_callbacks_job_changed(srv->callbacks, job);
    if (srv->mirror)
        fl_mirror_job_changed(srv->mirror, job, fl_store_event_name(ev));
}

/* The store's on_due: a job waits to run (after a submit, a retry, a requeue). The scheduler
 * is gone while fl_server_free closes the store. */
static void store_due(const fl_job *job, void *arg)
{
    fl_server *srv = arg;
    if (srv->sched)
        fl_sched_committed(srv->sched, job);
}

void fl_server_sched_progress(fl_server *srv)
{
    maybe_done(srv);
}

static int needs_webhook(const fl_config *cfg)
{
    for (size_t i = 0; i < cfg->n_types; i++)
        if (cfg->types[i].handler == FL_HANDLER_HTTP)
            return 1;
    return fl_callbacks_needed(cfg);
}

static void store_done_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    fl_server *srv = w->data;
    fl_store_reap(srv->store);
    maybe_done(srv);
}

/* Runs on the store's writer thread: ev_async_send is the one libev call that is safe there. */
static void store_notify(void *arg)
{
    fl_server *srv = arg;
    ev_async_send(srv->loop, &srv->store_done);
}

int fl_server_start(fl_server *srv, struct ev_loop *loop, const fl_config *cfg, char *err, size_t errlen)
{
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->cfg = cfg;
    ev_async_init(&srv->store_done, store_done_cb);
    srv->store_done.data = srv;
    ev_async_start(loop, &srv->store_done);
    const fl_store_options so = { .backend = cfg->store_backend, .path = cfg->db_path,
                                  .durability_full = cfg->durability_full };
    const fl_store_hooks hooks = { .notify = store_notify, .on_change = store_changed, .on_due = store_due,
                                   .udata = srv };
    int rc = fl_store_open(&srv->store, &so, &hooks, err, errlen);
    if (rc < 0)
        goto fail;
    rc = fl_store_recover(srv->store);
    if (rc < 0) {
        snprintf(err, errlen, "store %s: recovery failed: %s", cfg->db_path, strerror(-rc));
        goto fail;
    }
    if (rc > 0)
        fl_log(LOG_WARNING, "store: %d job(s) left running by a previous daemon re-queued", rc);
    fl_store_set_hooks(srv->store, fl_callbacks_hook, cfg);
    if (cfg->redis_url && (rc = fl_mirror_new(&srv->mirror, loop, srv->store, cfg->redis_url, cfg->redis_prefix,
                                               cfg->redis_retention, mirror_idle, srv, err, errlen)) < 0)
        goto fail;
    if (needs_webhook(cfg) && (rc = fl_webhook_new(&srv->webhook, loop)) < 0) {
        snprintf(err, errlen, "http client: %s", strerror(-rc));
        goto fail;
    }
    if (fl_callbacks_needed(cfg) && (rc = fl_callbacks_new(&srv->callbacks, srv)) < 0) {
        snprintf(err, errlen, "callbacks: %s", strerror(-rc));
        goto fail;
    }
    if ((rc = fl_sched_new(&srv->sched, srv)) < 0) {
        snprintf(err, errlen, "scheduler: %s", strerror(-rc));
        goto fail;
    }
    rc = fl_listen_tcp(srv, cfg->listen_host, cfg->listen_port, &srv->tcp, &srv->port, err, errlen);
    if (rc < 0)
        goto fail;
    if (cfg->unix_path) {
        rc = fl_listen_unix(srv, cfg->unix_path, &srv->unix_sock, err, errlen);
        if (rc < 0)
            goto fail;
    }
    return 0;
fail:
    fl_server_free(srv);
    return rc;
}


static void stop_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    fl_server *srv = w->data;
    srv->stop_expired = 1;
    if (srv->conns) {
        fl_log(LOG_WARNING, "stop: %zu connection(s) still busy after %.0f s; leaving them",
               srv->n_conns, FL_STOP_REQUESTS_MAX);
        srv->conns_abandoned = 1;
    }
    if (srv->callbacks && !fl_callbacks_idle(srv->callbacks))
        fl_log(LOG_WARNING, "stop: callback attempts still in flight after %.0f s; they are retried at the next start",
               FL_STOP_REQUESTS_MAX);
    maybe_done(srv);
}

void fl_server_stop(fl_server *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = 1;
    fl_listen_close(srv->tcp);
    fl_listen_close(srv->unix_sock);
    srv->tcp = srv->unix_sock = NULL;
    ev_init(&srv->stop_timer, stop_timer_cb);
    srv->stop_timer.data = srv;
    ev_timer_set(&srv->stop_timer, FL_STOP_REQUESTS_MAX, 0.);
    ev_timer_start(srv->loop, &srv->stop_timer);
    ev_unref(srv->loop);   /* the stop timer alone must not keep the loop alive */
    fl_sched_stop(srv->sched);
    if (srv->callbacks)
        fl_callbacks_stop(srv->callbacks);
    fl_http_stop_waiters(srv);
    if (srv->mirror)
        fl_mirror_stop(srv->mirror);
    for (fl_conn *c = srv->conns, *next; c; c = next) {
        next = fl_conn_next(c);
        fl_conn_shutdown(c);
    }
    maybe_done(srv);
}

void fl_server_conn_closed(fl_server *srv)
{
    maybe_done(srv);
}

void fl_server_free(fl_server *srv)
{
    fl_listen_close(srv->tcp);
    fl_listen_close(srv->unix_sock);
    srv->tcp = srv->unix_sock = NULL;
    /* Connections still open (stop deadline passed) are closed by the process exit; the store
     * finishes every pushed op before closing, so every acked job is committed. */
    fl_callbacks_close(srv->callbacks);   /* attempts still sending are left for the next start */
    fl_sched_free(srv->sched);
    srv->sched = NULL;
    fl_webhook_free(srv->webhook);
    srv->webhook = NULL;
    /* The mirror stops asking the store for more before the store reaps its last ops, and is
     * freed only after them: they may still be its catch-up reads. */
    if (srv->mirror)
        fl_mirror_stop(srv->mirror);
    fl_store_close(srv->store);      /* runs the callbacks' last DONE ops */
    srv->store = NULL;
    fl_callbacks_free(srv->callbacks);
    srv->callbacks = NULL;
    fl_mirror_free(srv->mirror);
    srv->mirror = NULL;
    if (ev_is_active(&srv->mirror_timer))
        ev_timer_stop(srv->loop, &srv->mirror_timer);
    if (ev_is_active(&srv->stop_timer)) {
        ev_ref(srv->loop);
        ev_timer_stop(srv->loop, &srv->stop_timer);
    }
    ev_async_stop(srv->loop, &srv->store_done);
}
