/* listen.h — the listening sockets (TCP and, optionally, Unix) and their accept loop:
 * configurable backlog, accept4 until EAGAIN on each wake-up. At max_connections, or out of
 * descriptors (EMFILE/ENFILE), an idle or too slow connection is closed to make room
 * (fl_conns_reclaim, counted in fling_connections_reclaimed_total); if every connection holds
 * a complete request, new clients wait in the backlog until one closes: refusing them would
 * lose the job of a fire-and-forget client, which never reads an answer. */
#ifndef FL_LISTEN_H
#define FL_LISTEN_H

#include <ev.h>
#include <stddef.h>
#include "config.h"
#include "conn.h"
#include "metrics.h"

typedef struct fl_listener fl_listener;

/* Where accepted connections go, and under which limits ([server] backlog, max_connections);
 * copied, the pointers borrowed for the listener's life. */
typedef struct fl_listen_env {
    struct ev_loop *loop;
    const fl_config *cfg;
    fl_metrics *metrics;         /* connections_open is checked, connections_refused counted */
    /* conns: where new connections go, and what fl_conns_reclaim makes room in */
    fl_conns *conns;
} fl_listen_env;

/* fl_listen_tcp binds host:port (port 0 = a free one; *bound gets the real port) and starts
 * accepting into env->conns. 0 and *out (free with fl_listen_close), or a negative errno with err. */
int fl_listen_tcp(const fl_listen_env *env, const char *host, int port, fl_listener **out, int *bound,
                  char *err, size_t errlen);

/* fl_listen_unix binds a Unix stream socket at path, replacing a stale socket file but never a
 * live one (another daemon answering there is an error). Same contract as fl_listen_tcp. */
int fl_listen_unix(const fl_listen_env *env, const char *path, fl_listener **out, char *err, size_t errlen);

/* fl_listen_resume looks at the backlog again now if accept waits for room (a connection just
 * closed); NULL, or a listener that is not waiting, is a no-op. */
void fl_listen_resume(fl_listener *l);

/* fl_listen_close stops accepting, closes the socket (unlinking a Unix socket file) and frees l;
 * NULL is a no-op. */
void fl_listen_close(fl_listener *l);

#endif
