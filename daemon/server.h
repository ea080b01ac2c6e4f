/* server.h — one running flingd: the libev loop and everything hanging off it (config, store,
 * listeners, connections, metrics). Passed explicitly as fl_server * to every module: there is
 * no global server struct. Loop thread only, except where a module says otherwise. */
#ifndef FL_SERVER_H
#define FL_SERVER_H

#include <ev.h>
#include <stddef.h>
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

typedef struct fl_conn fl_conn;
typedef struct fl_listener fl_listener;
typedef struct fl_sched fl_sched;
struct fl_webhook;
struct fl_mirror;

typedef struct fl_server {
    struct ev_loop *loop;
    const fl_config *cfg;          /* borrowed from main for the server's life */
    fl_store *store;
    fl_sched *sched;               /* runs the stored jobs */
    struct fl_webhook *webhook;    /* outgoing HTTP (http handler); NULL if no type needs it */
    struct fl_mirror *mirror;      /* the Redis status mirror; NULL without [redis] url */
    ev_async store_done;           /* the store's writer thread wakes the loop with it */
    fl_listener *tcp;              /* NULL until started */
    fl_listener *unix_sock;        /* NULL without [server] unix */
    int port;                      /* the TCP port actually bound (listen = …:0 picks one) */
    fl_conn *conns;                /* every open connection (for shutdown) */
    struct fl_req *waiters;        /* attached submits waiting for their job's end */
    struct fl_http_abort *aborts;  /* ABORTED status bits pushed, not yet committed */
    struct fl_callbacks *callbacks;  /* callback deliveries; NULL if none can exist */
    size_t n_conns;
    int store_failing;             /* the last store group failed: logged once per outage */
    int stopping;                  /* SIGTERM/SIGINT seen: no new connections, finish the rest */
    ev_timer stop_timer;           /* bounds how long a graceful stop waits for connections */
    int conns_abandoned;           /* that bound passed: the stop no longer waits for them */
    int stop_expired;              /* that bound passed: nor for callback attempts */
    ev_timer mirror_timer;         /* bounds how long a stop waits for the mirror's replies */
    int mirror_abandoned;          /* that bound passed: the stop no longer waits for them */
    fl_metrics metrics;
    fl_log_limit refused_log;      /* the log budget of refused requests */
} fl_server;

/* fl_server_start opens the store (recovering jobs left running), binds the listeners and
 * starts serving on loop. 0, or a negative errno with a one-line reason in err; on failure
 * everything started is undone. */
int fl_server_start(fl_server *srv, struct ev_loop *loop, const fl_config *cfg, char *err, size_t errlen);

/* fl_server_stop begins a graceful stop: close the listeners, let in-flight requests get their
 * commit and reply, then close every connection; the loop ends when nothing is left. */
void fl_server_stop(fl_server *srv);

/* fl_server_free releases what start acquired (after the loop returned). */
void fl_server_free(fl_server *srv);

/* fl_server_conn_closed is called by conn.c when a connection is gone: a graceful stop may be
 * complete. */
void fl_server_conn_closed(fl_server *srv);

/* fl_server_sched_progress is called by sched.c when an attempt or its record ended: a
 * graceful stop may be complete. */
void fl_server_sched_progress(fl_server *srv);

#endif
