/* pglisten.h — a PostgreSQL connection that only LISTENs on one channel, driven by the libev
 * loop without ever blocking it (used by the PostgreSQL store backend, store_pg.c, to hear of
 * the jobs other nodes commit). It connects with PQconnectStartParams + PQconnectPoll, then
 * reads with PQconsumeInput + PQnotifies whenever its socket is readable, and connects again
 * a second after it lost its connection. A notification's payload is "TYPE NODE": a type some
 * node made due, and that node's name; this node's own are ignored.
 *
 * Host names are resolved when a connection starts, on the caller's thread: the url should
 * give an IP address (or hostaddr) where DNS may be slow. Loop thread only. */
#ifndef FL_PGLISTEN_H
#define FL_PGLISTEN_H

typedef struct fl_pglisten fl_pglisten;

/* fl_pglisten_new starts connecting with libpq's keys and vals (NULL-terminated arrays with
 * expand_dbname, borrowed until free), to LISTEN on channel as node self (both borrowed).
 * Returns 0 and *out, or -ENOMEM. A failed first attempt is retried by wake. */
int fl_pglisten_new(fl_pglisten **out, const char *const *keys, const char *const *vals, const char *channel,
                    const char *self);

/* fl_pglisten_free closes the connection; NULL is a no-op. */
void fl_pglisten_free(fl_pglisten *l);

/* fl_pglisten_watch sets *fd (-1 while waiting to connect again) and *events (1 read, 2 write)
 * to wait for, and returns a generation that changes with each new connection (a new
 * connection may reuse the old fd's number). */
int fl_pglisten_watch(const fl_pglisten *l, int *fd, int *events);

/* fl_pglisten_wake runs when the fd is ready and on a timer: it goes on connecting, or reads
 * what arrived and calls due(type, arg) for each notification of another node, or connects
 * again once the retry time passed. When a new connection is listening it calls due(NULL,
 * arg): anything may have been notified while it was away. */
void fl_pglisten_wake(fl_pglisten *l, void (*due)(const char *type, void *arg), void *arg);

#endif
