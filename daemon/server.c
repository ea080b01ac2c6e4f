/* server.c — starts, wires and stops one flingd (see server.h). Every module gets what it
 * needs at construction, and reaches back up only through the callbacks given here: the
 * store's events (store_changed, store_due), the progress of a stop (maybe_done). */
#include "server.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ack.h"
#include "callback.h"
#include "cancel.h"
#include "conn.h"
#include "events.h"
#include "http.h"
#include "listen.h"
#include "log.h"
#include "mirror.h"
#include "periodic.h"
#include "prune.h"
#include "remote.h"
#include "sched.h"
#include "stats.h"
#include "store.h"
#include "wait.h"
#include "webhook.h"

/* The callback hooks of every type, for the store's writer thread, which must not read the
 * configuration a reload changes on the loop: immutable once published; a reload publishes a
 * new one and keeps the old (the writer may be reading it) until the server is freed. */
typedef struct hook_entry { char *type, *on_complete, *on_abort; } hook_entry;
typedef struct hook_table {
    size_t n;
    hook_entry *e;
    struct hook_table *older;
} hook_table;

/* A graceful stop waits this long for in-flight requests to get their commit and reply. */
#define FL_STOP_REQUESTS_MAX 10.0

/* A graceful stop waits this long for the mirror's writes in flight (the requeues of the stop
 * among them) to be acknowledged: Redis answers in milliseconds when it is there at all. */
#define FL_STOP_MIRROR_MAX 1.0

/* On a shared database a node follows the other nodes' changes (fl_store_follow) while it has
 * a mirror, an event stream open or a client attached to a job, and this long after the last
 * attached client: a burst of attached submits does not start and stop following each time. */
#define FL_FOLLOW_LINGER 30.0
/* When following starts for an attached client, the other nodes hear of it a moment later: a
 * job that ended on one of them meanwhile was not notified. The attached jobs are read again
 * this long after following started, when every node has heard. */
#define FL_FOLLOW_SETTLE 0.5
/* A mirror's first catch-up on a shared database waits for the listener's first LISTEN and
 * FL_FOLLOW_SETTLE after it; at most this long if the listener cannot listen. */
#define FL_MIRROR_HOLD_MAX 5.0

struct fl_server {
    struct ev_loop *loop;
    fl_config *cfg;                /* borrowed from main for the server's life; reloads change it */
    _Atomic(hook_table *) hooks;   /* what the writer's hook reads */
    fl_config **retired;           /* the configurations reloads replaced, with the old values */
    size_t n_retired;
    fl_periodic **old_periodic;    /* stopped by reloads, freed once the store reaped their ops */
    size_t n_old_periodic;
    fl_store *store;
    fl_sched *sched;               /* runs the stored jobs */
    fl_prune *prune;               /* [store] retention */
    fl_periodic *periodic;         /* the schedules of periodic types */
    fl_webhook *webhook;           /* outgoing HTTP (http handler); NULL if no type needs it */
    fl_mirror *mirror;             /* the Redis status mirror; NULL without [redis] url */
    fl_callbacks *callbacks;       /* callback deliveries; NULL if none can exist */
    fl_ack *ack;                   /* 202 verdicts and ABORTED bits */
    fl_wait *wait;                 /* attached submits */
    fl_events *events;             /* GET /v1/events: the ring and its streams */
    fl_http *http;                 /* the routes */
    fl_conns *conns;               /* every open connection */
    fl_cancel cancel;              /* the cancel policy's inputs (DELETE and departures) */
    fl_stats stats;                /* the sources of /metrics */
    ev_async store_done;           /* the store's writer thread wakes the loop with it */
    ev_io store_io;                /* a shared database's listener (fl_store_watch), if any */
    ev_timer store_tick;           /* wakes that listener once a second: reconnects, safety net */
    fl_store_op sweep;             /* the safety net's sweep (remote_due) ... */
    int sweeping;                  /* ... while it is pushed */
    int store_gen;                 /* the listener fd's generation that store_io watches */
    int store_watching;            /* store_io, store_tick and follow_check were set up */
    ev_prepare follow_check;       /* before each sleep: does this node follow the others now? */
    ev_timer follow_settle;        /* reads the attached jobs again once following settled */
    ev_timer mirror_hold;          /* releases the mirror's held catch-up (FL_MIRROR_HOLD_MAX) */
    int following;                 /* what fl_store_follow was last told */
    int read_all;                  /* reads_every_change, as follow_check_cb last saw it */
    int listened;                  /* the store's listener listened once (remote_back) */
    ev_tstamp follow_until;        /* following lingers until then after the last attached client */
    fl_remote *remote;             /* other nodes' changes as events; NULL for SQLite */
    fl_listener *tcp;              /* NULL until started */
    fl_listener *unix_sock;        /* NULL without [server] unix */
    int port;
    int stopping;                  /* SIGTERM/SIGINT seen: no new connections, finish the rest */
    ev_timer stop_timer;           /* bounds how long a graceful stop waits for connections */
    int conns_abandoned;           /* that bound passed: the stop no longer waits for them */
    int stop_expired;              /* that bound passed: nor for callback attempts */
    ev_timer mirror_timer;         /* bounds how long a stop waits for the mirror's replies */
    int mirror_abandoned;          /* that bound passed: the stop no longer waits for them */
    fl_metrics metrics;
};

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
    if (srv->stopping && (fl_conns_empty(srv->conns) || srv->conns_abandoned) && fl_sched_idle(srv->sched) &&
        (!srv->callbacks || fl_callbacks_idle(srv->callbacks) || srv->stop_expired) && mirror_flushed(srv))
        ev_break(srv->loop, EVBREAK_ALL);
}

/* The scheduler, the callbacks, the mirror and the connections call this when something they
 * hold ended: a graceful stop may be complete. */
static void progress(void *arg)
{
    maybe_done(arg);
}

/* A connection closed: accept may have been waiting for room. */
static void conn_closed(void *arg)
{
    fl_server *srv = arg;
    fl_listen_resume(srv->tcp);
    fl_listen_resume(srv->unix_sock);
    maybe_done(srv);
}

/* Another node's change of job (the row after it, borrowed), and through store_changed each of
 * this node's own: the attached clients, the event streams and the Redis mirror hear of it.
 * Another node's goes no further: that node delivers its callbacks, and the scheduler hears
 * of due jobs by remote_due. */
static void tell_followers(const fl_job *job, fl_store_event ev, void *arg)
{
    fl_server *srv = arg;
    fl_wait_job_changed(srv->wait, job);
    if (srv->events)
        fl_events_publish(srv->events, job, fl_store_event_name(ev));
    if (srv->mirror)
        fl_mirror_job_changed(srv->mirror, job, fl_store_event_name(ev));
}

/* The store's on_change: every committed change of a job, in commit order, with the row after
 * it (borrowed), goes down to whoever follows jobs: those tell_followers tells, and the
 * callback deliveries. */
static void store_changed(const fl_job *job, fl_store_event ev, void *arg)
{
    fl_server *srv = arg;
    tell_followers(job, ev, arg);
    if (srv->callbacks)
        fl_callbacks_job_changed(srv->callbacks, job);
    if (ev == FL_STORE_EV_SUBMITTED && srv->remote)
        fl_remote_submitted(srv->remote, job->id);   /* its client may attach now */
}

/* The store's on_due: a job waits to run (after a submit, a retry, a requeue). The scheduler
 * is gone while fl_server_free closes the store. */
static void store_due(const fl_job *job, void *arg)
{
    fl_server *srv = arg;
    if (srv->sched)
        fl_sched_committed(srv->sched, job);
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

static void hook_table_free(hook_table *h)
{
    while (h) {
        hook_table *older = h->older;
        for (size_t i = 0; i < h->n; i++) {
            free(h->e[i].type);
            free(h->e[i].on_complete);
            free(h->e[i].on_abort);
        }
        free(h->e);
        free(h);
        h = older;
    }
}

static int dup_or_null(char **dst, const char *src)
{
    *dst = src ? strdup(src) : NULL;
    return src && !*dst ? -1 : 0;
}

/* publish_hooks makes the writer's hook table from cfg's types and swaps it in. */
static int publish_hooks(fl_server *srv)
{
    const fl_config *cfg = srv->cfg;
    hook_table *h = calloc(1, sizeof *h);
    if (!h || !(h->e = calloc(cfg->n_types ? cfg->n_types : 1, sizeof *h->e))) {
        free(h);
        return -ENOMEM;
    }
    for (size_t i = 0; i < cfg->n_types; i++, h->n++) {
        const fl_type *t = &cfg->types[i];
        if (dup_or_null(&h->e[i].type, t->name) < 0 || dup_or_null(&h->e[i].on_complete, t->on_complete) < 0 ||
            dup_or_null(&h->e[i].on_abort, t->on_abort) < 0) {
            h->n++;
            hook_table_free(h);
            return -ENOMEM;
        }
    }
    h->older = atomic_exchange_explicit(&srv->hooks, h, memory_order_acq_rel);
    return 0;
}

/* The store's hook, on the writer thread: a type's on_complete or on_abort, or NULL. */
static const char *writer_hook(const void *arg, const char *type, int abort)
{
    const fl_server *srv = arg;
    const hook_table *h = atomic_load_explicit(&((fl_server *)srv)->hooks, memory_order_acquire);
    for (size_t i = 0; h && i < h->n; i++)
        if (strcmp(h->e[i].type, type) == 0)
            return abort ? h->e[i].on_abort : h->e[i].on_complete;
    return NULL;
}

/* types_due: type (NULL: every type) may have due jobs: the scheduler claims as after a
 * commit of this node's own. */
static void types_due(fl_server *srv, const char *type)
{
    if (!srv->sched)
        return;
    for (size_t i = 0; i < srv->cfg->n_types; i++) {
        const fl_type *t = &srv->cfg->types[i];
        if (type && strcmp(type, t->name) != 0)
            continue;
        fl_job due = { .type = t->name, .state = FL_STATE_QUEUED };
        fl_sched_committed(srv->sched, &due);
    }
}

static void sweep_done(fl_store_op *op)
{
    fl_server *srv = op->udata;

    srv->sweeping = 0;
    /* The scheduler and the deliverer need no word: remote_due pushed their claims and take
     * after this op, so they see what it freed. The other nodes hear of the re-queued jobs
     * from its notification, this one from here: its mirror, streams and attached clients,
     * as for another node's change. Not while tearing down, nor if the store failed. */
    if (srv->sched && op->result == 0 && op->u.sweep.jobs && srv->remote) {
        for (size_t i = 0; i < op->u.sweep.jobs; i++)
            fl_remote_changed(srv->remote, op->u.sweep.ids[i], FL_STORE_EV_REQUEUED);
        fl_remote_flush(srv->remote);
    }
    free(op->u.sweep.ids);
}

/* A type another node made due (NULL: any may be: the listener was away, or the slow safety
 * net of store_tick_cb, which also sweeps: the jobs of nodes that are gone run again even
 * while every slot here is busy, and their deliveries, and those they never took, are taken). */
static void remote_due(const char *type, void *arg)
{
    fl_server *srv = arg;

    if (!type && !srv->stopping && srv->sched) {
        if (!srv->sweeping) {
            srv->sweeping = 1;
            fl_store_sweep(srv->store, &srv->sweep, sweep_done, srv);
        }
        if (srv->callbacks)
            fl_callbacks_due(srv->callbacks);
    }
    types_due(srv, type);
}

/* A CANCEL on another node found a job running here: stop it as this node's DELETE would. Not
 * running here (any more) means its attempt is ending: it ends as its outcome says. */
static void remote_stop(int64_t id, void *arg)
{
    fl_server *srv = arg;
    srv->metrics.remote_stops++;
    if (!srv->sched || fl_sched_cancel(srv->sched, id) < 0)
        fl_log(LOG_INFO, "job %lld: cancelled by another node, but its attempt here was already ending",
               (long long)id);
}

static void remote_changed(int64_t id, fl_store_event ev, void *arg)
{
    fl_server *srv = arg;
    if (srv->remote)
        fl_remote_changed(srv->remote, id, ev);
}

/* Whether every change another node makes is read here: the mirror writes every job, an event
 * stream may want any. */
static int reads_every_change(const fl_server *srv)
{
    return srv->mirror || srv->metrics.streams_open;
}

/* Whether anything here follows job id, so that another node's change of it is worth a read:
 * every job (reads_every_change), or an attached client's own. */
static int remote_follows(int64_t id, void *arg)
{
    fl_server *srv = arg;
    return reads_every_change(srv) || fl_wait_has(srv->wait, id);
}

/* A job read again for the clients attached to it (not a change: nothing else hears of it). */
static void remote_refreshed(const fl_job *job, void *arg)
{
    fl_server *srv = arg;
    fl_wait_job_changed(srv->wait, job);
}

static void refresh_waited(int64_t id, void *arg)
{
    fl_remote_refresh(arg, id);
}

/* reread_attached has the jobs that clients here wait on read again at the next flush. */
static void reread_attached(fl_server *srv)
{
    fl_wait_each(srv->wait, refresh_waited, srv->remote);
}

/* A pause or resume committed on another node applies here as well, at once, and the store
 * reads the paused types again for itself (a paused type's submits wake no node). */
static void remote_paused(const char *type, int paused, void *arg)
{
    fl_server *srv = arg;
    if (!srv->sched)
        return;
    fl_sched_set_paused(srv->sched, type, paused);
    fl_sched_reload_paused(srv->sched);
}

/* The listener listens again after it was away: the jobs clients here wait on may have ended
 * on another node meanwhile, unheard. They are read again in the wake's one read, the paused
 * types once more, and the Redis mirror catches up with the jobs changed since the listener
 * was last seen listening. The event streams are told, with a gap comment in their place
 * (docs/scaling.md). Not at the first LISTEN: the mirror's first catch-up waited for it, and
 * reads once following has settled (mirror_hold). */
static void follow_settle_later(fl_server *srv);

static void remote_back(int64_t since, void *arg)
{
    fl_server *srv = arg;
    if (srv->listened) {
        if (srv->events)
            fl_events_gap(srv->events, "other nodes' changes while this node's listener was away were not heard;"
                          " reread what you need (GET /v1/jobs)");
        if (srv->mirror)
            fl_mirror_catch_up(srv->mirror, since);
    } else if (srv->mirror) {
        if (!ev_is_active(&srv->mirror_hold)) {   /* released already: it read too early */
            fl_mirror_hold_catch_up(srv->mirror);
            fl_mirror_catch_up(srv->mirror, since);
        }
        ev_timer_stop(srv->loop, &srv->mirror_hold);
        ev_timer_set(&srv->mirror_hold, FL_FOLLOW_SETTLE, 0.);
        ev_timer_start(srv->loop, &srv->mirror_hold);
    }
    srv->listened = 1;
    if (srv->remote)
        reread_attached(srv);
    if (srv->sched)
        fl_sched_reload_paused(srv->sched);
    follow_settle_later(srv);   /* and once more when the followers heard it ask (see below) */
}

static void store_rewatch(fl_server *srv);

static void mirror_hold_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    fl_server *srv = w->data;
    fl_mirror_release_catch_up(srv->mirror);
}

/* follow_settle_later reads the attached jobs again FL_FOLLOW_SETTLE from now, if there are. */
static void follow_settle_later(fl_server *srv)
{
    if (!fl_wait_any(srv->wait) || ev_is_active(&srv->follow_settle))
        return;
    ev_timer_set(&srv->follow_settle, FL_FOLLOW_SETTLE, 0.);
    ev_timer_start(srv->loop, &srv->follow_settle);
}

static void follow_settle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    fl_server *srv = w->data;
    reread_attached(srv);
    fl_remote_flush(srv->remote);
}

/* follow_check_cb tells the store whether this node follows the other nodes' changes: a
 * mirror and open event streams follow them all, attached clients their jobs (and for
 * FL_FOLLOW_LINGER after the last one). */
static void follow_check_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    fl_server *srv = w->data;
    int attached = fl_wait_any(srv->wait);
    if (attached)
        srv->follow_until = ev_now(loop) + FL_FOLLOW_LINGER;
    int all = reads_every_change(srv), want = all || ev_now(loop) < srv->follow_until;
    /* Without a mirror or a stream, the other nodes' changes are not read here (only those of
     * attached jobs): a stream resumed later (Last-Event-ID) from before here replays through
     * this comment. */
    if (srv->remote && srv->events && srv->read_all && !all)
        fl_events_gap(srv->events, "other nodes' changes from here until a stream or a mirror follows them"
                      " on this node again are missing; reread what you need (GET /v1/jobs)");
    srv->read_all = all;
    if (want == srv->following)
        return;
    srv->following = want;
    fl_store_follow(srv->store, want);
    store_rewatch(srv);   /* saying so may have left the listener a write to finish */
    if (want)
        follow_settle_later(srv);
}

/* store_rewatch points store_io at the listener's socket and events, after each wake. The
 * watchers do not keep the loop alive (unref'd): a stop ends with ev_break. */
static void store_rewatch(fl_server *srv)
{
    int fd, events, gen, want;
    if (fl_store_watch(srv->store, &fd, &events, &gen) < 0)
        return;
    want = (events & 1 ? EV_READ : 0) | (events & 2 ? EV_WRITE : 0);
    if (ev_is_active(&srv->store_io) && gen == srv->store_gen && srv->store_io.fd == fd &&
        (srv->store_io.events & (EV_READ | EV_WRITE)) == want)
        return;
    if (ev_is_active(&srv->store_io)) {
        ev_ref(srv->loop);
        ev_io_stop(srv->loop, &srv->store_io);
    }
    srv->store_gen = gen;
    if (fd < 0)
        return;
    ev_io_set(&srv->store_io, fd, want);
    ev_io_start(srv->loop, &srv->store_io);
    ev_unref(srv->loop);
}

/* store_listen lets the listener read what arrived (or go on connecting), then re-aims store_io. */
static void store_listen(fl_server *srv)
{
    const fl_store_remote r = { .due = remote_due, .stop = remote_stop, .changed = remote_changed, .arg = srv,
                                .back = remote_back, .paused = remote_paused };
    fl_store_wake(srv->store, &r);
    if (srv->remote)
        fl_remote_flush(srv->remote);   /* what this wake heard, in one read */
    store_rewatch(srv);
}

static void store_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    store_listen(w->data);
}

/* Once a second: the listener reconnects if it must, and the slow safety net runs (a lost
 * notification; the jobs and deliveries of nodes that are gone: remote_due). */
static void store_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    store_listen(w->data);
    remote_due(NULL, w->data);
}

/* start_store_watch wires a shared database's listener to the loop; nothing for SQLite.
 * 0 or -ENOMEM. */
static int start_store_watch(fl_server *srv)
{
    int fd, events, gen;
    if (fl_store_watch(srv->store, &fd, &events, &gen) < 0)
        return 0;
    const fl_remote_hooks hooks = { .report = tell_followers, .follows = remote_follows,
                                    .refreshed = remote_refreshed, .arg = srv };
    if (fl_remote_new(&srv->remote, srv->store, &srv->metrics, &hooks) < 0)
        return -ENOMEM;
    ev_init(&srv->store_io, store_io_cb);
    srv->store_io.data = srv;
    ev_timer_init(&srv->store_tick, store_tick_cb, 1.0, 1.0);
    srv->store_tick.data = srv;
    ev_timer_start(srv->loop, &srv->store_tick);
    ev_unref(srv->loop);
    ev_prepare_init(&srv->follow_check, follow_check_cb);
    srv->follow_check.data = srv;
    ev_prepare_start(srv->loop, &srv->follow_check);
    ev_unref(srv->loop);
    ev_timer_init(&srv->follow_settle, follow_settle_cb, 0., 0.);
    srv->follow_settle.data = srv;
    ev_timer_init(&srv->mirror_hold, mirror_hold_cb, FL_MIRROR_HOLD_MAX, 0.);
    srv->mirror_hold.data = srv;
    if (srv->mirror) {   /* its handshake completes on the loop, after this */
        fl_mirror_hold_catch_up(srv->mirror);
        ev_now_update(srv->loop);   /* opening the store took a while since the loop's clock */
        ev_timer_start(srv->loop, &srv->mirror_hold);
    }
    srv->store_watching = 1;
    store_rewatch(srv);
    return 0;
}

static void stop_store_watch(fl_server *srv)
{
    if (!srv->store_watching)
        return;
    ev_ref(srv->loop);
    ev_timer_stop(srv->loop, &srv->store_tick);
    ev_ref(srv->loop);
    ev_prepare_stop(srv->loop, &srv->follow_check);
    ev_timer_stop(srv->loop, &srv->follow_settle);
    ev_timer_stop(srv->loop, &srv->mirror_hold);
    if (ev_is_active(&srv->store_io)) {
        ev_ref(srv->loop);
        ev_io_stop(srv->loop, &srv->store_io);
    }
    srv->store_watching = 0;
}

/* node_name writes the owner this daemon's claims record: [store] node, else hostname:port
 * in a shared database; a single SQLite file keeps the one owner it always had. */
static const char *node_name(const fl_config *cfg, char *buf, size_t len)
{
    char host[256];

    if (strcmp(cfg->store_backend, "sqlite") == 0)
        return NULL;
    if (cfg->store_node)
        return cfg->store_node;
    if (gethostname(host, sizeof host) < 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    snprintf(buf, len, "%s:%d", host, cfg->listen_port);
    return buf;
}

/* The store, recovered, with its delivery hooks. */
static int open_store(fl_server *srv, char *err, size_t errlen)
{
    const fl_config *cfg = srv->cfg;
    char node[300];
    const fl_store_options so = { .backend = cfg->store_backend, .path = cfg->db_path, .url = cfg->store_url,
                                  .durability_full = cfg->durability_full,
                                  .node = node_name(cfg, node, sizeof node),
                                  .readers = cfg->store_connections,
                                  .statement_ms = (int)(cfg->store_statement_timeout * 1000),
                                  .writers = cfg->store_writers };
    const fl_store_hooks hooks = { .notify = store_notify, .on_change = store_changed, .on_due = store_due,
                                   .udata = srv };
    int rc;
    fl_log_set_node(so.node);   /* before the store's writer thread logs */
    rc = fl_store_open(&srv->store, &so, &hooks, err, errlen);
    if (rc < 0)
        return rc;
    rc = fl_store_recover(srv->store);
    if (rc < 0) {
        snprintf(err, errlen, "store %s: recovery failed: %s", cfg->db_path, strerror(-rc));
        return rc;
    }
    if (rc > 0)
        fl_log(LOG_WARNING, "store: %d job(s) left running by a previous daemon re-queued", rc);
    if ((rc = publish_hooks(srv)) < 0) {
        snprintf(err, errlen, "callback hooks: %s", strerror(-rc));
        return rc;
    }
    fl_store_set_hooks(srv->store, writer_hook, srv);
    return 0;
}

/* What runs jobs and follows them: mirror, webhook, ack ledger, callbacks, scheduler. */
static int start_jobs(fl_server *srv, char *err, size_t errlen)
{
    const fl_config *cfg = srv->cfg;
    int rc;
    if (cfg->redis_url && (rc = fl_mirror_new(&srv->mirror, srv->loop, srv->store, cfg->redis_url, cfg->redis_prefix,
                                               cfg->redis_retention, progress, srv, err, errlen)) < 0)
        return rc;
    if (needs_webhook(cfg) && (rc = fl_webhook_new(&srv->webhook, srv->loop)) < 0) {
        snprintf(err, errlen, "http client: %s", strerror(-rc));
        return rc;
    }
    if ((rc = fl_ack_new(&srv->ack, srv->store, &srv->metrics)) < 0) {
        snprintf(err, errlen, "acks: %s", strerror(-rc));
        return rc;
    }
    if (fl_callbacks_needed(cfg) && (rc = fl_callbacks_new(&srv->callbacks, srv->loop, cfg, srv->store, srv->webhook,
                                                           srv->ack, progress, srv)) < 0) {
        snprintf(err, errlen, "callbacks: %s", strerror(-rc));
        return rc;
    }
    if ((rc = fl_sched_new(&srv->sched, srv->loop, cfg, srv->store, srv->webhook, progress, srv)) < 0) {
        snprintf(err, errlen, "scheduler: %s", strerror(-rc));
        return rc;
    }
    if ((rc = fl_prune_new(&srv->prune, srv->loop, srv->store, cfg->store_retention, &srv->metrics)) < 0) {
        snprintf(err, errlen, "retention: %s", strerror(-rc));
        return rc;
    }
    if ((rc = fl_periodic_new(&srv->periodic, srv->loop, cfg, srv->store)) < 0) {
        snprintf(err, errlen, "periodic types: %s", strerror(-rc));
        return rc;
    }
    return 0;
}

/* The request path, bottom up: waits, routes, connections, listeners. */
static int start_requests(fl_server *srv, char *err, size_t errlen)
{
    const fl_config *cfg = srv->cfg;
    srv->cancel = (fl_cancel){ .sched = srv->sched };
    srv->stats = (fl_stats){ .cfg = cfg, .metrics = &srv->metrics, .store = srv->store, .sched = srv->sched,
                             .mirror = srv->mirror, .callbacks = srv->callbacks };
    fl_http_env env = { .cfg = cfg, .store = srv->store, .sched = srv->sched, .metrics = &srv->metrics,
                        .cancel = &srv->cancel, .stats = &srv->stats };
    int rc;
    if ((rc = fl_wait_new(&srv->wait, srv->loop, srv->ack, srv->store, &srv->cancel)) < 0 ||
        (rc = fl_events_new(&srv->events, srv->loop, cfg->max_stream_buffer, &srv->metrics)) < 0 ||
        (env.wait = srv->wait, env.events = srv->events, rc = fl_http_new(&srv->http, &env)) < 0 ||
        (rc = fl_conns_new(&srv->conns, srv->loop, cfg, &srv->metrics, srv->http, srv->ack, conn_closed, srv)) < 0) {
        snprintf(err, errlen, "requests: %s", strerror(-rc));
        return rc;
    }
    fl_listen_env lenv = { .loop = srv->loop, .cfg = cfg, .metrics = &srv->metrics, .conns = srv->conns };
    rc = fl_listen_tcp(&lenv, cfg->listen_host, cfg->listen_port, &srv->tcp, &srv->port, err, errlen);
    if (rc == 0 && cfg->unix_path)
        rc = fl_listen_unix(&lenv, cfg->unix_path, &srv->unix_sock, err, errlen);
    return rc;
}

int fl_server_start(fl_server **out, struct ev_loop *loop, fl_config *cfg, char *err, size_t errlen)
{
    fl_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    srv->loop = loop;
    srv->cfg = cfg;
    ev_async_init(&srv->store_done, store_done_cb);
    srv->store_done.data = srv;
    ev_async_start(loop, &srv->store_done);
    int rc;
    if ((rc = open_store(srv, err, errlen)) < 0 || (rc = start_jobs(srv, err, errlen)) < 0 ||
        (rc = start_requests(srv, err, errlen)) < 0) {
        fl_server_free(srv);
        return rc;
    }
    if ((rc = start_store_watch(srv)) < 0) {
        snprintf(err, errlen, "other nodes' changes: %s", strerror(-rc));
        fl_server_free(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

static void stop_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    fl_server *srv = w->data;
    srv->stop_expired = 1;
    if (!fl_conns_empty(srv->conns)) {
        fl_log(LOG_WARNING, "stop: %zu connection(s) still busy after %.0f s; leaving them",
               srv->metrics.connections_open, FL_STOP_REQUESTS_MAX);
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
    fl_conns_stop(srv->conns);
    fl_http_stop(srv->http);
    fl_listen_close(srv->tcp);
    fl_listen_close(srv->unix_sock);
    srv->tcp = srv->unix_sock = NULL;
    ev_init(&srv->stop_timer, stop_timer_cb);
    srv->stop_timer.data = srv;
    ev_timer_set(&srv->stop_timer, FL_STOP_REQUESTS_MAX, 0.);
    ev_timer_start(srv->loop, &srv->stop_timer);
    ev_unref(srv->loop);   /* the stop timer alone must not keep the loop alive */
    fl_sched_stop(srv->sched);
    fl_prune_stop(srv->prune);
    fl_periodic_stop(srv->periodic);
    if (srv->callbacks)
        fl_callbacks_stop(srv->callbacks);
    fl_wait_stop(srv->wait);
    fl_events_stop(srv->events);
    if (srv->mirror)
        fl_mirror_stop(srv->mirror);
    fl_conns_shutdown(srv->conns);
    maybe_done(srv);
}

int fl_server_stopping(const fl_server *srv) { return srv->stopping; }

int fl_server_port(const fl_server *srv) { return srv->port; }

int fl_server_adopt(fl_server *srv, int fd, int is_unix)
{
    return fl_conn_new(srv->conns, fd, is_unix, NULL, 0);
}

const fl_metrics *fl_server_metrics(const fl_server *srv) { return &srv->metrics; }

int fl_server_idle(const fl_server *srv)
{
    return fl_conns_empty(srv->conns) && fl_store_pending(srv->store) == 0;
}

void fl_server_free(fl_server *srv)
{
    if (!srv)
        return;
    fl_listen_close(srv->tcp);
    fl_listen_close(srv->unix_sock);
    srv->tcp = srv->unix_sock = NULL;
    fl_callbacks_close(srv->callbacks);   /* attempts still sending are left for the next start */
    fl_sched_free(srv->sched);
    srv->sched = NULL;
    fl_webhook_free(srv->webhook);
    srv->webhook = NULL;
    /* The mirror stops asking the store for more before the store reaps its last ops, and is
     * freed only after them: they may still be its catch-up reads. */
    if (srv->mirror)
        fl_mirror_stop(srv->mirror);
    fl_prune_stop(srv->prune);
    fl_periodic_stop(srv->periodic);
    stop_store_watch(srv);
    fl_store_close(srv->store);      /* runs the callbacks' last DONE ops, and any request's */
    srv->store = NULL;
    fl_remote_free(srv->remote);     /* after the store reaped its last GET */
    fl_prune_free(srv->prune);       /* after the store reaped its last batch */
    fl_periodic_free(srv->periodic); /* and its last submit */
    for (size_t i = 0; i < srv->n_old_periodic; i++)
        fl_periodic_free(srv->old_periodic[i]);
    free(srv->old_periodic);
    fl_callbacks_free(srv->callbacks);
    fl_mirror_free(srv->mirror);
    /* Connections still open (the stop deadline passed) go without a word; every acked job is
     * committed, since the store finished every pushed op before closing. */
    fl_conns_free(srv->conns);
    fl_http_free(srv->http);
    fl_wait_free(srv->wait);
    fl_events_free(srv->events);
    fl_ack_free(srv->ack);
    if (ev_is_active(&srv->mirror_timer))
        ev_timer_stop(srv->loop, &srv->mirror_timer);
    if (ev_is_active(&srv->stop_timer)) {
        ev_ref(srv->loop);
        ev_timer_stop(srv->loop, &srv->stop_timer);
    }
    ev_async_stop(srv->loop, &srv->store_done);
    hook_table_free(atomic_load(&srv->hooks));
    for (size_t i = 0; i < srv->n_retired; i++) {
        fl_config_free(srv->retired[i]);
        free(srv->retired[i]);
    }
    free(srv->retired);
    free(srv);
}

/* restart_periodic replaces the schedules' timers with ones made from the reloaded types; the
 * old fl_periodic is stopped and kept until the store has reaped its last op. */
static int restart_periodic(fl_server *srv)
{
    fl_periodic **old = realloc(srv->old_periodic, (srv->n_old_periodic + 1) * sizeof *old);
    fl_periodic *p;
    if (!old)
        return -ENOMEM;
    srv->old_periodic = old;
    int rc = fl_periodic_new(&p, srv->loop, srv->cfg, srv->store);
    if (rc < 0)
        return rc;
    fl_periodic_stop(srv->periodic);
    old[srv->n_old_periodic++] = srv->periodic;
    srv->periodic = p;
    return 0;
}

/* reload_effects redoes what the new values of a reload need beyond being in place. */
static void reload_effects(fl_server *srv, int mask)
{
    const fl_config *cfg = srv->cfg;
    int rc;
    if (mask & FL_RELOAD_LOG)
        fl_log_set_level(cfg->log_level);
    if ((mask & FL_RELOAD_LOG) && (rc = fl_log_switch(cfg->log_path, cfg->log_json ? FL_LOG_JSON : FL_LOG_TEXT)) < 0)
        fl_log(LOG_ERR, "reload: cannot open the log %s: %s; still logging as before",
               cfg->log_path ? cfg->log_path : "(stderr)", strerror(-rc));
    if ((mask & FL_RELOAD_HOOKS) && (rc = publish_hooks(srv)) < 0)
        fl_log(LOG_ERR, "reload: callback hooks: %s; new jobs still get the previous hooks", strerror(-rc));
    if ((mask & FL_RELOAD_HOOKS) && !srv->callbacks && fl_callbacks_needed(cfg))
        fl_log(LOG_WARNING, "reload: callbacks were off at start; their deliveries are stored and sent after a restart");
    if ((mask & FL_RELOAD_RETENTION) && !srv->stopping)
        fl_prune_set_retention(srv->prune, cfg->store_retention);
    if ((mask & FL_RELOAD_SLOTS) && srv->sched)
        fl_sched_slots_changed(srv->sched);
    if ((mask & FL_RELOAD_SCHEDULE) && !srv->stopping && (rc = restart_periodic(srv)) < 0)
        fl_log(LOG_ERR, "reload: schedules: %s; the previous schedules go on", strerror(-rc));
}

int fl_server_reload(fl_server *srv, fl_config *next)
{
    char changed[2048], restart[2048];
    fl_config **retired = realloc(srv->retired, (srv->n_retired + 1) * sizeof *retired);
    if (!retired) {
        fl_config_free(next);
        free(next);
        return -ENOMEM;
    }
    srv->retired = retired;
    int mask = fl_config_reload(srv->cfg, next, changed, sizeof changed, restart, sizeof restart);
    if (changed[0]) {
        retired[srv->n_retired++] = next;   /* its old values may still be borrowed (a running command) */
    } else {
        fl_config_free(next);   /* nothing was swapped: logrotate's daily SIGHUP keeps nothing */
        free(next);
    }
    reload_effects(srv, mask);
    fl_log(LOG_INFO, "reload: %s%s", changed[0] ? "changed: " : "nothing changed that can change live", changed);
    if (restart[0])
        fl_log(LOG_WARNING, "reload: kept as they were until a restart: %s", restart);
    return 0;
}
