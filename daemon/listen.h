/* listen.h — the listening sockets (TCP and, optionally, Unix) and their accept loop:
 * configurable backlog, accept4 until EAGAIN on each wake-up. A connection beyond
 * max_connections, or one accepted with the spare descriptor when the process is out of them
 * (EMFILE/ENFILE), is answered 503 too_many_connections with Connection: close and closed at
 * once (counted in fling_connections_refused_total, logged at most once a second). */
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
    fl_conns *conns;
} fl_listen_env;

/* fl_listen_tcp binds host:port (port 0 = a free one; *bound gets the real port) and starts
 * accepting into env->conns. 0 and *out (free with fl_listen_close), or a negative errno with err. */
int fl_listen_tcp(const fl_listen_env *env, const char *host, int port, fl_listener **out, int *bound,
                  char *err, size_t errlen);

/* fl_listen_unix binds a Unix stream socket at path, replacing a stale socket file but never a
 * live one (another daemon answering there is an error). Same contract as fl_listen_tcp. */
int fl_listen_unix(const fl_listen_env *env, const char *path, fl_listener **out, char *err, size_t errlen);

/* fl_listen_close stops accepting, closes the socket (unlinking a Unix socket file) and frees l;
 * NULL is a no-op. */
void fl_listen_close(fl_listener *l);

#endif
