/* conn.h — one accepted client connection: a state machine that reads and parses HTTP/1.1
 * (llhttp), hands complete requests to http.c, writes replies in request order, and decides
 * for every 202 whether it reached the client (SOCKETS.md D3–D10).
 *
 * DESIGN. Bytes are read until EAGAIN, EOF or reset and parsed at once, so every complete
 * request (pipelined ones too) is dispatched before an EOF or reset is acted on. EOF is never
 * an error: the connection stays open until its requests are committed and answered. After a
 * 202 goes out, its delivery is judged from the socket (SIOCOUTQ: bytes the peer has not
 * acknowledged; TCP_INFO state CLOSE or a send error: the peer is gone), right after the send
 * and then on a short timer, never on a read watcher (after a FIN the fd stays readable). */
#ifndef FL_CONN_H
#define FL_CONN_H

#include "http.h"
#include "server.h"

/* fl_conn_new takes fd (an accepted, non-blocking socket) and starts serving it; 0, or a
 * negative errno (fd is closed then). peer is copied, for logs. */
int fl_conn_new(fl_server *srv, int fd, int is_unix, const char *peer);

/* fl_conn_reply_ready tells req's connection that req->resp is set; it writes what it can.
 * If req->conn is NULL (the client is gone) the request is freed instead. */
void fl_conn_reply_ready(fl_req *req);

/* fl_conn_shutdown asks c to close once its in-flight requests are answered (graceful stop). */
void fl_conn_shutdown(fl_conn *c);

/* fl_conn_peer_closed returns 1 once c's client has sent FIN or reset the connection. */
int fl_conn_peer_closed(const fl_conn *c);

/* fl_conn_ack_pending returns 1 if the 202 of job id on c is not yet judged delivered or not
 * (queued, unsent, or sent and waiting for its verdict). */
int fl_conn_ack_pending(const fl_conn *c, int64_t id);

/* fl_conn_next returns the connection after c in the server's list (for iteration). */
fl_conn *fl_conn_next(const fl_conn *c);

#endif
