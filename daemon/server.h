/* server.h — one running flingd: builds every module on the loop and wires them together
 * (the store's changes down to the waiters, the callbacks and the mirror; the listeners into
 * the connections, the connections into the routes), and runs the graceful stop. The top of
 * the tree: only main.c (and tests that run a whole server in process) include this. Loop
 * thread only. */
#ifndef FL_SERVER_H
#define FL_SERVER_H

#include <ev.h>
#include <stddef.h>
#include "config.h"
#include "metrics.h"

typedef struct fl_server fl_server;

/* fl_server_start opens the store (recovering jobs left running), binds the listeners and
 * starts serving on loop; cfg is borrowed for the server's life, and fl_server_reload changes it. 0 and *out (free with
 * fl_server_free after the loop returned), or a negative errno with a one-line reason in err;
 * on failure everything started is undone. */
int fl_server_start(fl_server **out, struct ev_loop *loop, fl_config *cfg, char *err, size_t errlen);

/* fl_server_reload applies a configuration read again (SIGHUP) to the running server: the
 * reloadable keys take their new values (fl_config_reload) and what depends on them follows
 * (the log, the writer's callback hooks, the schedules' timers); one log line lists what
 * changed, another what differs but waits for a restart. Takes next (malloc'd, loaded): if it
 * changed something it is kept, with the old values, until fl_server_free (something may
 * still borrow them); else freed at once.
 * Values read at each use (tokens, limits, concurrency, back-off) apply from the next use:
 * a job already queued waits for the scheduler's next claim (a submit or an attempt's end).
 * 0, or -ENOMEM (next freed, nothing changed). */
int fl_server_reload(fl_server *srv, fl_config *next);

/* fl_server_stop begins a graceful stop: close the listeners, let in-flight requests get their
 * commit and reply, then close every connection; the loop ends when nothing is left. */
void fl_server_stop(fl_server *srv);

/* fl_server_stopping returns 1 once fl_server_stop was called. */
int fl_server_stopping(const fl_server *srv);

/* fl_server_port returns the TCP port actually bound (listen = …:0 picks one). */
int fl_server_port(const fl_server *srv);

/* fl_server_adopt serves fd, an already connected non-blocking socket, as if the listener had
 * accepted it (its logs name the peer "unix", or "?" over TCP). 0, or a negative errno (fd is
 * closed then). */
int fl_server_adopt(fl_server *srv, int fd, int is_unix);

/* fl_server_metrics returns the server's counters (read-only; valid for its life). */
const fl_metrics *fl_server_metrics(const fl_server *srv);

/* fl_server_idle returns 1 when no connection is open and no store op is pending. */
int fl_server_idle(const fl_server *srv);

/* fl_server_free releases what start acquired (after the loop returned); NULL is a no-op. */
void fl_server_free(fl_server *srv);

#endif
