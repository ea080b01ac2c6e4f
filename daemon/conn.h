/* conn.h — the client connections: each a state machine that reads and parses HTTP/1.1
 * (llhttp), hands complete requests to http.c, writes replies in request order, and decides
 * for every 202 whether it reached the client (the verdict goes to ack.c).
 *
 * DESIGN. Bytes are read until EAGAIN, EOF or reset and parsed at once, so every complete
 * request (pipelined ones too) is dispatched before an EOF or reset is acted on. EOF is never
 * an error: the connection stays open until its requests are committed and answered. After a
 * 202 goes out, its delivery is judged from the socket (SIOCOUTQ: bytes the peer has not
 * acknowledged; TCP_INFO state CLOSE or a send error: the peer is gone), right after the send
 * and then on a short timer, never on a read watcher (after a FIN the fd stays readable).
 * A new connection is first read in the loop iteration that accepted it (a fed read event),
 * before any epoll_ctl: a connect-write-close client is served without its fd ever entering
 * epoll. Requests, their replies (inside fl_req when small) and ack entries are reused, so a
 * keep-alive request allocates only its job here (the events ring still builds a frame).
 * Requests reach http.c through fl_http_start/body/complete and come back through req->ready;
 * http.c never sees a connection. Loop thread only. */
#ifndef FL_CONN_H
#define FL_CONN_H

#include <sys/socket.h>
#include <ev.h>
#include "ack.h"
#include "config.h"
#include "http.h"
#include "metrics.h"

typedef struct fl_conns fl_conns;

/* fl_conns_new makes the set of connections of one server: they run on loop under cfg's
 * [server] limits, count into metrics, hand requests to http and 202 verdicts to ack (all
 * borrowed, outliving the set); on_closed(arg) runs after each connection is gone (a graceful
 * stop may be complete). 0 or -ENOMEM. */
int fl_conns_new(fl_conns **out, struct ev_loop *loop, const fl_config *cfg, fl_metrics *metrics, fl_http *http,
                 fl_ack *ack, void (*on_closed)(void *arg), void *arg);

/* fl_conn_new takes fd (an accepted, non-blocking socket) and starts serving it in cs; 0, or
 * -ENOMEM (fd is closed then, the refusal counted and logged). peer (peer_len bytes, from
 * accept; NULL if unknown) is copied, and named in logs: it is formatted only when a log line
 * needs it, which on a fire-and-forget connection is almost never. */
int fl_conn_new(fl_conns *cs, int fd, int is_unix, const struct sockaddr *peer, socklen_t peer_len);

/* fl_conns_reclaim makes room at max_connections (or out of descriptors) by closing the
 * connection that costs its client least: an idle keep-alive one (HTTP lets a server close
 * those; the client reconnects), else the one whose incomplete request has been arriving the
 * longest, if for more than FL_CONN_SLOW_REQUEST seconds (a slow or stalled client, whose
 * partial request is never enqueued). A connection with a complete request is never chosen:
 * its job is committed or about to be. Returns 1 if one was closed, 0 if none qualifies. */
#define FL_CONN_SLOW_REQUEST 1.0
int fl_conns_reclaim(fl_conns *cs);

/* fl_conns_stop begins a graceful stop: every request parsed from now on closes its
 * connection after its reply. */
void fl_conns_stop(fl_conns *cs);

/* fl_conns_shutdown asks every connection to close once its in-flight requests are answered. */
void fl_conns_shutdown(fl_conns *cs);

/* fl_conns_empty returns 1 when no connection is open. */
int fl_conns_empty(const fl_conns *cs);

/* fl_conns_free releases cs and every connection still open (left by a stop that gave up on
 * them), without a word to their clients; only after the store is closed, when no request
 * waits for anything. NULL is a no-op. */
void fl_conns_free(fl_conns *cs);

#endif
