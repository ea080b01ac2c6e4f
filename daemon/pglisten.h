/* pglisten.h — a PostgreSQL connection that only LISTENs, on a few channels, driven by the
 * libev loop without ever blocking it (used by the PostgreSQL store backend, store_pg.c, to
 * hear of what other nodes commit). It connects with PQconnectStartParams + PQconnectPoll,
 * then reads with PQconsumeInput + PQnotifies whenever its socket is readable, and connects
 * again a second after it lost its connection. What a payload means is the caller's.
 *
 * Host names are resolved when a connection starts, on the caller's thread: the url should
 * give an IP address (or hostaddr) where DNS may be slow. Loop thread only. */
#ifndef FL_PGLISTEN_H
#define FL_PGLISTEN_H

typedef struct fl_pglisten fl_pglisten;

/* fl_pglisten_new starts connecting with libpq's keys and vals (NULL-terminated arrays with
 * expand_dbname, borrowed until free), to LISTEN on each of channels (NULL-terminated; plain
 * lower-case identifiers, copied). Returns 0 and *out, -EINVAL if the channels' names are too
 * long together, or -ENOMEM. A failed first attempt is retried by wake. */
int fl_pglisten_new(fl_pglisten **out, const char *const *keys, const char *const *vals,
                    const char *const *channels);

/* fl_pglisten_free closes the connection; NULL is a no-op. */
void fl_pglisten_free(fl_pglisten *l);

/* fl_pglisten_watch sets *fd (-1 while waiting to connect again) and *events (1 read, 2 write,
 * 3 both while a query is not yet all sent) to wait for, and returns a generation that changes with each new connection (a new
 * connection may reuse the old fd's number). */
int fl_pglisten_watch(const fl_pglisten *l, int *fd, int *events);

/* fl_pglisten_listening returns 1 while the connection listens (its LISTEN answered), else 0. */
int fl_pglisten_listening(const fl_pglisten *l);

/* fl_pglisten_up returns 0 from a lost connection or a failed attempt until a new connection
 * listens, else 1 (also while the first attempt is under way). */
int fl_pglisten_up(const fl_pglisten *l);

/* What fl_pglisten_wake calls for each notification (channel and payload borrowed for the
 * call), and with both NULL once a new connection listens (its LISTEN answered, so what is
 * committed from then on is notified to it): anything may have been notified while it was
 * away. */
typedef void (*fl_pglisten_fn)(const char *channel, const char *payload, void *arg);

/* fl_pglisten_notify sends pg_notify(channel, payload) (both copied) on the connection, to be
 * committed by the server on its own: 0 once sent, -EAGAIN while the connection is not
 * listening or still busy with an earlier query (try again at a later wake), -EIO if sending
 * failed (the connection is dropped and made again). */
int fl_pglisten_notify(fl_pglisten *l, const char *channel, const char *payload);

/* fl_pglisten_wake runs when the fd is ready and on a timer: it goes on connecting, or reads
 * what arrived and calls heard for each notification, or connects again once the retry time
 * passed. */
void fl_pglisten_wake(fl_pglisten *l, fl_pglisten_fn heard, void *arg);

#endif
