/* pglisten.c — a LISTEN-only PostgreSQL connection on the loop thread (see pglisten.h). */
#include "pglisten.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

#include "job.h"
#include "log.h"

/* How long to wait before connecting again after the connection was lost or refused. */
#define FL_PGLISTEN_RETRY_MS 1000

struct fl_pglisten {
    const char *const *keys, *const *vals;   /* libpq's connection parameters, borrowed */
    char listen_sql[256];          /* LISTEN a; LISTEN b; ... */
    PGconn *conn;                  /* NULL while waiting to connect again */
    int connecting;                /* PQconnectPoll has not finished */
    int listen_sent;               /* LISTEN was sent and has not answered yet */
    int query_sent;                /* a query (LISTEN or fl_pglisten_notify's) has not answered yet */
    int listening;                 /* this connection's LISTEN was answered */
    int events;                    /* what the connection waits for: 1 = read, 2 = write, 3 = both */
    int down;                      /* the loss was logged; say when it is back */
    int gen;                       /* + 1 for every new connection (its fd may be reused) */
    int64_t retry_at;              /* ms: when to connect again */
};

static void lost(fl_pglisten *l, const char *why)
{
    if (!l->down)
        fl_log(LOG_ERR, "store: the PostgreSQL listener %s: %s; other nodes' jobs wait until it is back", why,
               l->conn ? PQerrorMessage(l->conn) : "out of memory");
    l->down = 1;
    l->listen_sent = 0;
    l->query_sent = 0;
    l->listening = 0;
    PQfinish(l->conn);
    l->conn = NULL;
    l->retry_at = fl_job_now_ms() + FL_PGLISTEN_RETRY_MS;
}

static void start(fl_pglisten *l)
{
    l->conn = PQconnectStartParams(l->keys, l->vals, 1);
    if (!l->conn || PQstatus(l->conn) == CONNECTION_BAD) {
        lost(l, "cannot connect");
        return;
    }
    l->connecting = 1;
    l->events = 2;   /* a new connection first waits to be writable */
    l->gen++;
}

/* poll_connect advances the connect; once it is done, sends LISTEN (its reply is read with
 * the notifications). */
static void poll_connect(fl_pglisten *l)
{
    switch (PQconnectPoll(l->conn)) {
    case PGRES_POLLING_READING:
        l->events = 1;
        return;
    case PGRES_POLLING_WRITING:
        l->events = 2;
        return;
    case PGRES_POLLING_OK:
        break;
    default:
        lost(l, "cannot connect");
        return;
    }
    l->connecting = 0;
    l->events = 1;
    if (PQsetnonblocking(l->conn, 1) < 0 || !PQsendQuery(l->conn, l->listen_sql) || PQflush(l->conn) != 0) {
        lost(l, "cannot LISTEN");
        return;
    }
    l->listen_sent = l->query_sent = 1;
    if (l->down)
        fl_log(LOG_NOTICE, "store: the PostgreSQL listener is connected again");
    l->down = 0;
}

/* read_replies reads the replies of LISTEN: 1 once they all came and the connection listens
 * (LISTEN takes effect when it commits: a read made after that misses nothing its
 * notifications would not tell), 0 while they are still to come or long done, -1 when one
 * failed (the connection is dropped). */
static int read_replies(fl_pglisten *l)
{
    PGresult *r;

    while (!PQisBusy(l->conn) && (r = PQgetResult(l->conn))) {
        ExecStatusType st = PQresultStatus(r);
        PQclear(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            lost(l, l->listen_sent ? "cannot LISTEN" : "cannot NOTIFY");
            return -1;
        }
    }
    if (PQisBusy(l->conn))
        return 0;
    l->query_sent = 0;
    if (!l->listen_sent)
        return 0;
    l->listen_sent = 0;
    l->listening = 1;
    return 1;
}

int fl_pglisten_new(fl_pglisten **out, const char *const *keys, const char *const *vals,
                    const char *const *channels)
{
    fl_pglisten *l = calloc(1, sizeof *l);
    size_t used = 0;

    *out = NULL;
    if (!l)
        return -ENOMEM;
    l->keys = keys;
    l->vals = vals;
    for (; *channels; channels++) {
        int n = snprintf(l->listen_sql + used, sizeof l->listen_sql - used, "LISTEN %s;", *channels);
        if (n < 0 || (size_t)n >= sizeof l->listen_sql - used) {
            free(l);
            return -EINVAL;
        }
        used += (size_t)n;
    }
    start(l);
    *out = l;
    return 0;
}

void fl_pglisten_free(fl_pglisten *l)
{
    if (!l)
        return;
    PQfinish(l->conn);
    free(l);
}

/* flush sends what libpq still holds of a query: 0 when all is sent (then only reads are
 * waited for), 1 while some is left (writes too), -1 when the connection failed (dropped). */
static int flush(fl_pglisten *l)
{
    int rc = PQflush(l->conn);

    if (rc < 0)
        lost(l, "lost its connection");
    else
        l->events = rc ? 3 : 1;
    return rc;
}

int fl_pglisten_notify(fl_pglisten *l, const char *channel, const char *payload)
{
    const char *vals[2] = { channel, payload };

    if (!l->conn || l->connecting || l->query_sent)
        return -EAGAIN;
    if (!PQsendQueryParams(l->conn, "SELECT pg_notify($1, $2)", 2, NULL, vals, NULL, NULL, 0)) {
        lost(l, "cannot NOTIFY");
        return -EIO;
    }
    l->query_sent = 1;
    return flush(l) < 0 ? -EIO : 0;
}

int fl_pglisten_listening(const fl_pglisten *l)
{
    return l->listening;
}

int fl_pglisten_up(const fl_pglisten *l)
{
    return !l->down;
}

int fl_pglisten_watch(const fl_pglisten *l, int *fd, int *events)
{
    *fd = l->conn ? PQsocket(l->conn) : -1;
    *events = l->conn ? l->events : 0;
    return l->gen;
}

void fl_pglisten_wake(fl_pglisten *l, fl_pglisten_fn heard, void *arg)
{
    PGnotify *n;
    int rc;

    if (!l->conn) {
        if (fl_job_now_ms() >= l->retry_at)
            start(l);
        if (!l->conn)
            return;
    }
    if (l->connecting) {
        poll_connect(l);
        return;
    }
    if (l->events & 2 && flush(l) < 0)
        return;
    if (!PQconsumeInput(l->conn)) {
        lost(l, "lost its connection");
        return;
    }
    if ((rc = read_replies(l)) < 0)
        return;
    if (rc)
        heard(NULL, NULL, arg);
    while ((n = PQnotifies(l->conn))) {
        heard(n->relname, n->extra, arg);
        PQfreemem(n);
    }
}
