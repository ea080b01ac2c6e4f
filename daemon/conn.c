/* conn.c — the connection state machine: read, parse, dispatch, reply in order, judge delivery.
 * See conn.h for the design; the states are fl_conn_state below. Whatever the state, requests
 * queued for their store commit are answered in order, and 202s sent are judged (n_acks) before
 * the close. EOF is a fact about the input (c->eof), not a state: a connection whose client
 * sent FIN still answers what it asked for.
 *
 * Past 900 lines on purpose: parsing, the request queue, writing and the delivery verdicts all
 * act on one fl_conn and meet in conn_progress; split into files they would share the struct
 * and call back and forth. Banners divide the sections. */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include "headcheck.h"
#include "log.h"
#include "reply.h"

/* A read burst: libuv caps one wake-up at 32 reads so one busy client cannot starve others. */
#define FL_CONN_READS_PER_EVENT 32
/* The shared read buffer: 64 KiB is what one loopback segment train typically carries. */
#define FL_CONN_READ_BUF (64 * 1024)
/* Delivery verdict of a 202: first look 1 ms after the send, doubling, for at most 1 s
 * (docs/protocol.md "The delivery verdict of a 202"). On loopback the peer's RST or ACK arrives within microseconds. */
#define FL_VERDICT_FIRST 0.001
#define FL_VERDICT_MAX 1.0
/* Open acks on a live keep-alive connection are settled in bulk once this many wait. */
#define FL_ACKS_TRIM 64
/* Lingering close: how long we drain a client's input after our final reply (docs/protocol.md "Early error replies"). */
#define FL_LINGER_MAX 2.0
/* The head buffer starts small and grows up to [server] max_header. */
#define FL_HEAD_INITIAL 512
/* Freed requests kept for reuse, so a request costs no allocation of its own in steady state;
 * beyond this many (after a burst) they go back to malloc. */
#define FL_CONN_SPARE_REQS 256

typedef struct fl_conn fl_conn;

/* Where a connection is in its life. Later states never go back to earlier ones, except
 * PAUSED back to READING. */
typedef enum fl_conn_state {
    FL_CONN_READING,                /* parsing requests as they come */
    FL_CONN_PAUSED,                 /* back-pressure: parsing stopped at a request boundary until
                                     * the replies drain; input read meanwhile is kept in rest */
    FL_CONN_LAST,                   /* no more requests (Connection: close, a refused request):
                                     * input is read only to see the client leave */
    FL_CONN_CLOSING,                /* close after the queued replies (a close_after reply, stop) */
    FL_CONN_LINGERING,              /* our write side shut after the final reply; input drained
                                     * until EOF or FL_LINGER_MAX */
    FL_CONN_GONE                    /* reset, or a send failed: nothing more can be written */
} fl_conn_state;

/* A sent 202: its last byte's offset in the stream, and its job. */
typedef struct sent_ack { uint64_t end; int64_t id; } sent_ack;

/* A request as the connection holds it: the shared part, and the queue and accounting only the
 * connection knows about. */
typedef struct conn_req {
    fl_req req;                     /* first: conn_req_of() */
    fl_conn *conn;                  /* NULL once the connection is gone */
    fl_conns *cs;
    fl_list node;                   /* the connection's queue, in request order */
    size_t held;                    /* bytes counted against [server] max_output */
    int replied;                    /* its reply is set and counted */
    /* What a refused request was, for its log line (target empty when the head never parsed;
     * the method's name is looked up only when a line is written). */
    int method;                     /* llhttp_method_t */
    char target[80];
} conn_req;

struct fl_conns {
    struct ev_loop *loop;
    const fl_config *cfg;
    fl_metrics *metrics;            /* connections_open is the count of all */
    fl_http *http;
    fl_ack *ack;
    void (*on_closed)(void *arg);
    void *arg;
    fl_list all;                    /* fl_conn.node */
    int stopping;                   /* graceful stop: requests parsed from now on close after */
    fl_log_limit refused_log;       /* the log budget of refused requests */
    fl_log_limit stream_log;        /* the log budget of dropped event streams */
    fl_list spare;                  /* conn_req.node: freed requests for reuse */
    size_t n_spare;
};

struct fl_conn {
    fl_conns *cs;
    fl_list node;                   /* cs->all */
    fl_conn_state state;
    int fd;
    int is_unix;
    struct sockaddr_storage peer_addr;   /* from accept; all zero (AF_UNSPEC) if unknown */
    char peer[64];                  /* its name for logs, made by conn_peer ("" until then) */
    ev_io rio, wio;
    ev_timer deadline;              /* read deadline, idle timeout, linger bound */
    ev_timer verdict;               /* delivery checks of sent 202s */
    llhttp_t parser;
    llhttp_settings_t settings;
    /* The head of the request being parsed: url, then header names and values. */
    char *head; size_t head_len, head_cap;
    struct { size_t name, name_len, value, value_len; } hdr[FL_HTTP_MAX_HEADERS];
    size_t n_hdr;
    size_t url_len;
    int in_value;                   /* the last head bytes were a header value */
    conn_req *cur;                  /* the request being parsed */
    fl_headcheck check;             /* the strict grammar check of the head being read */
    char *rest; size_t rest_len;    /* input read but not parsed while paused (at most one read) */
    size_t held;                    /* bytes of queued payloads and replies (see over_limits) */
    size_t n_unbounded;             /* queued requests whose reply size is not bounded yet */
    fl_body_action body;
    int expect_continue;
    fl_list q;                      /* conn_req.node: awaiting or holding their reply, in order */
    size_t n_q;
    char *out; size_t out_off, out_len, out_cap;
    uint64_t sent;                  /* bytes the kernel took from us on this socket */
    sent_ack *acks; size_t n_acks, acks_cap;  /* sent 202s whose delivery is not judged yet */
    ev_tstamp msg_start, last_active, verdict_start, verdict_step;
    ev_tstamp write_start;          /* output has waited since then without the client taking any */
    ev_tstamp linger_start;
    int eof;                        /* the peer sent FIN */
    /* Where the parser is: the next input bytes belong to a request head (checked strictly
     * first), and whether bytes of an incomplete request have arrived. */
    int in_head, in_message;
    int in_read;                    /* a read burst is parsing: replies are flushed at its end */
    int served;                     /* requests completed on it (0: a new connection) */
    int fresh;                      /* not read from yet: its first read drains (fl_conn_new) */
    conn_req *stream;               /* its reply is a stream, head sent: nothing else follows */
};

static char read_buf[FL_CONN_READ_BUF];   /* loop thread only: parsed at once, never kept */

static void conn_close(fl_conn *c);
static void conn_flush(fl_conn *c);
static void conn_progress(fl_conn *c);
static size_t acks_check(fl_conn *c);
static void verdict_start(fl_conn *c);

static conn_req *conn_req_of(fl_req *req) { return (conn_req *)req; }

/* Moves c on to state s, never back (PAUSED -> READING is resume_parsing's alone). */
static void raise_state(fl_conn *c, fl_conn_state s)
{
    if (c->state < s)
        c->state = s;
}

/* A peer's name for a log line, in out: "unix", "ADDR:PORT", or "?" when unknown. */
static const char *peer_name(const struct sockaddr_storage *ss, int is_unix, char *out, size_t outsz)
{
    char host[INET6_ADDRSTRLEN];
    const void *addr = NULL;
    int port = 0;
    if (is_unix)
        return strcpy(out, "unix");
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        addr = &a->sin_addr;
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        addr = &a->sin6_addr;
        port = ntohs(a->sin6_port);
    }
    if (!addr || !inet_ntop(ss->ss_family, addr, host, sizeof host))
        return strcpy(out, "?");
    snprintf(out, outsz, "%s:%d", host, port);
    return out;
}

/* c's peer name, formatted by the first log line that needs it: most connections log none. */
static const char *conn_peer(fl_conn *c)
{
    if (!c->peer[0])
        peer_name(&c->peer_addr, c->is_unix, c->peer, sizeof c->peer);
    return c->peer;
}

static int peer_closed(const fl_conn *c) { return c->eof || c->state == FL_CONN_GONE; }

static conn_req *q_first(const fl_conn *c)
{
    fl_list *n = fl_list_first(&c->q);
    return n ? fl_list_entry(n, conn_req, node) : NULL;
}

static int has_waiting(const fl_conn *c)
{
    const fl_list *pos;
    for (pos = c->q.next; pos != &c->q; pos = pos->next)
        if (fl_list_entry(pos, conn_req, node)->req.waiting)
            return 1;
    return 0;
}

/* The client closed or reset: every request without its reply learns it (one still committing
 * learns it from req->gone when it commits), and those waiting for their job's end (attached
 * mode) act on it now. */
static void tell_waiting(fl_conn *c)
{
    fl_list *pos, *tmp;
    fl_list_each(pos, tmp, &c->q) {
        fl_req *req = &fl_list_entry(pos, conn_req, node)->req;
        if (req->resp)
            continue;
        req->gone = 1;
        fl_http_client_gone(req);
    }
}

/* ---------------------------------------------------------------- request queue */

/* Requests whose reply can be large (a page of up to 1000 jobs, the metrics text, a payload of
 * up to max_payload): while one is queued without its reply nothing more is parsed, so a
 * connection holds at most one of them. */
static int unbounded_reply(const conn_req *r)
{
    return r->req.route == FL_ROUTE_LIST || r->req.route == FL_ROUTE_METRICS || r->req.route == FL_ROUTE_PAYLOAD;
}

static void queue_push(fl_conn *c, conn_req *r)
{
    r->held = r->req.job ? r->req.job->payload_len : 0;
    c->held += r->held;
    if (unbounded_reply(r))
        c->n_unbounded++;
    fl_list_push_tail(&c->q, &r->node);
    c->n_q++;
}

static conn_req *queue_pop(fl_conn *c)
{
    conn_req *r = q_first(c);
    fl_list_remove(&r->node);
    c->n_q--;
    c->held -= r->held;
    if (unbounded_reply(r) && !r->replied)
        c->n_unbounded--;
    return r;
}

static void ack_probe(void *ctx, int64_t id);

/* A queued request's reply is set: from now on the connection holds its bytes, and a 202's
 * verdict is expected. */
static void count_reply(fl_conn *c, conn_req *r)
{
    if (r->replied || !r->req.resp)
        return;
    r->replied = 1;
    c->held = c->held - r->held + r->req.resp_len;
    r->held = r->req.resp_len;
    if (unbounded_reply(r))
        c->n_unbounded--;
    if (r->req.ack_id && fl_ack_expect(c->cs->ack, r->req.ack_id, ack_probe, c) < 0)
        r->req.ack_id = 0;   /* untracked: judged by nobody, as an unknown verdict would be */
}

/* Back-pressure: a connection stops parsing (and so reading) at a request boundary once it
 * has max_pipeline requests queued, max_output bytes of payloads and replies held, or a
 * request with an unbounded reply pending. With read sizes bounded too, what one connection
 * can make flingd hold is bounded by its config, whatever the client sends. */
static int over_limits(const fl_conn *c)
{
    const fl_config *cfg = c->cs->cfg;
    return c->n_q >= (size_t)cfg->max_pipeline || c->n_unbounded > 0 ||
           c->held + (c->out_len - c->out_off) >= cfg->max_output;
}

static void req_ready(fl_req *req);

/* A reply that will never be sent: its 202 (if it is one) was not delivered. */
static void drop_reply(fl_conns *cs, conn_req *r)
{
    if (!r->req.ack_id)
        return;
    if (r->replied)
        fl_ack_settle(cs->ack, r->req.ack_id, FL_ACK_ABORTED);
    else
        fl_ack_aborted(cs->ack, r->req.ack_id);
}

static int stream_write(fl_req *req, const char *p, size_t len);
static size_t stream_queued(const fl_req *req);
static void stream_end(fl_req *req, const char *why);

static conn_req *req_new(fl_conn *c)
{
    conn_req *r;
    fl_list *n = fl_list_first(&c->cs->spare);
    if (n) {
        fl_list_remove(n);
        c->cs->n_spare--;
        r = fl_list_entry(n, conn_req, node);
        memset(r, 0, sizeof *r);
    } else if (!(r = calloc(1, sizeof *r))) {
        return NULL;
    }
    fl_req_init(&r->req, req_ready);
    r->req.stream = (fl_req_stream){ .write = stream_write, .queued = stream_queued, .end = stream_end };
    r->conn = c;
    r->cs = c->cs;
    fl_list_init(&r->node);
    return r;
}

static void req_free(conn_req *r)
{
    if (!r)
        return;
    fl_req_release(&r->req);
    fl_conns *cs = r->cs;
    if (cs->n_spare < FL_CONN_SPARE_REQS) {
        fl_list_push_head(&cs->spare, &r->node);
        cs->n_spare++;
        return;
    }
    free(r);
}

/* ---------------------------------------------------------------- delivery verdicts */

static int ack_push(fl_conn *c, uint64_t end, int64_t id)
{
    if (c->n_acks == c->acks_cap) {
        size_t cap = c->acks_cap ? c->acks_cap * 2 : 8;
        sent_ack *a = realloc(c->acks, cap * sizeof *a);
        if (!a)
            return -ENOMEM;
        c->acks = a;
        c->acks_cap = cap;
    }
    c->acks[c->n_acks++] = (sent_ack){ end, id };
    return 0;
}

/* Gives the first n open acks verdict v and drops them. */
static void acks_settle(fl_conn *c, size_t n, fl_ack_verdict v)
{
    if (!n)
        return;   /* acks may still be NULL */
    for (size_t i = 0; i < n; i++)
        fl_ack_settle(c->cs->ack, c->acks[i].id, v);
    memmove(c->acks, c->acks + n, (c->n_acks - n) * sizeof *c->acks);
    c->n_acks -= n;
}

static void acks_abort_all(fl_conn *c) { acks_settle(c, c->n_acks, FL_ACK_ABORTED); }

/* Is the peer gone? A reset moves a TCP socket to CLOSE and leaves an error pending. */
static int peer_gone(fl_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
        return 1;
    if (c->is_unix)
        return 0;
    struct tcp_info ti;
    len = sizeof ti;
    if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE)
        return 1;
    return 0;
}

/* Settles the acks the socket can tell about now: delivered when the peer acknowledged their
 * last byte (SIOCOUTQ counts bytes sent but not acknowledged; on a Unix socket, not read yet),
 * aborted when the peer is gone with them unacknowledged. Returns how many stay open. */
static size_t acks_check(fl_conn *c)
{
    if (!c->n_acks)
        return 0;
    /* After the client's FIN the usual verdict is "gone" (its RST answers our 202): one
     * getsockopt settles that before any other look at the socket. */
    if (c->state == FL_CONN_GONE || (c->eof && peer_gone(c))) {
        acks_abort_all(c);
        return 0;
    }
    int outq = 0;
    if (ioctl(c->fd, SIOCOUTQ, &outq) < 0)
        outq = 0;
    uint64_t delivered = c->sent - (uint64_t)outq;
    size_t n = 0;
    while (n < c->n_acks && c->acks[n].end <= delivered)
        n++;
    acks_settle(c, n, FL_ACK_DELIVERED);
    if (c->n_acks && !c->eof && peer_gone(c))
        acks_abort_all(c);
    return c->n_acks;
}

static void verdict_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    fl_conn *c = w->data;
    if (acks_check(c) && ev_now(loop) - c->verdict_start < FL_VERDICT_MAX) {
        c->verdict_step *= 2;
        ev_timer_set(w, c->verdict_step, 0.);
        ev_timer_start(loop, w);
        return;
    }
    /* A live keep-alive connection (judged early for a waiting callback) keeps its open acks
     * for later; one that is ending has waited long enough. */
    if (c->eof || c->state >= FL_CONN_CLOSING)
        acks_settle(c, c->n_acks, FL_ACK_UNKNOWN);
    conn_progress(c);
}

/* Someone waits for the verdict of a 202 on c (fl_ack_when_final): settle what the socket
 * knows now, and keep looking on the verdict timer. A keep-alive connection otherwise judges
 * its acks only now and then (FL_ACKS_TRIM). */
static void ack_probe(void *ctx, int64_t id)
{
    (void)id;
    fl_conn *c = ctx;
    if (acks_check(c))
        verdict_start(c);
}

/* Judges the open acks on a timer until every one is settled or FL_VERDICT_MAX passed. */
static void verdict_start(fl_conn *c)
{
    if (ev_is_active(&c->verdict))
        return;
    c->verdict_start = ev_now(c->cs->loop);
    c->verdict_step = FL_VERDICT_FIRST;
    ev_timer_set(&c->verdict, c->verdict_step, 0.);
    ev_timer_start(c->cs->loop, &c->verdict);
}

/* ---------------------------------------------------------------- writing */

static int out_append(fl_conn *c, const char *p, size_t len)
{
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        c->write_start = ev_now(c->cs->loop);
    }
    if (c->out_len + len > c->out_cap) {
        if (c->out_off) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        size_t cap = c->out_cap ? c->out_cap : 1024;
        while (cap < c->out_len + len)
            cap *= 2;
        if (cap != c->out_cap) {
            char *o = realloc(c->out, cap);
            if (!o)
                return -ENOMEM;
            c->out = o;
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_len, p, len);
    c->out_len += len;
    return 0;
}

/* The peer cannot be written to any more: every reply still queued or unsent is lost. */
static void conn_gone(fl_conn *c)
{
    c->state = FL_CONN_GONE;
    c->out_off = c->out_len = 0;
    acks_abort_all(c);
}

/* A refused request leaves one warning (under a budget: a flood must not fill the disk) and a
 * count by reason. A 409 is an answer about a job's state, not a refusal. */
static void log_refused(fl_conn *c, const conn_req *r)
{
    const fl_req *req = &r->req;
    if (req->resp_status < 400 || req->resp_status == 409)
        return;
    const char *code = req->err_code ? req->err_code : "out_of_memory";
    fl_metrics_refused(c->cs->metrics, code);
    if (fl_log_allow(&c->cs->refused_log, "refused requests"))
        fl_log(LOG_WARNING, "peer %s: %s %s refused with %d %s: %s", conn_peer(c),
               r->target[0] ? llhttp_method_name((llhttp_method_t)r->method) : "-",
               r->target[0] ? r->target : "-", req->resp_status, code,
               req->err_status ? req->err_msg : "out of memory for the reply");
}

/* Moves ready replies, in order, from the queue into the output buffer. */
static void take_replies(fl_conn *c)
{
    conn_req *r;
    while ((r = q_first(c)) && r->req.resp && c->out_len - c->out_off < c->cs->cfg->max_output) {
        queue_pop(c);
        fl_req *req = &r->req;
        fl_metrics_response(c->cs->metrics, req->resp_status);
        log_refused(c, r);
        if (c->state == FL_CONN_GONE) {
            drop_reply(c->cs, r);
        } else if (out_append(c, req->resp, req->resp_len) < 0) {
            fl_log(LOG_ERR, "peer %s: out of memory for a reply; closing", conn_peer(c));
            drop_reply(c->cs, r);
            conn_gone(c);
        } else if (req->ack_id && ack_push(c, c->sent + (c->out_len - c->out_off), req->ack_id) < 0) {
            fl_ack_settle(c->cs->ack, req->ack_id, FL_ACK_UNKNOWN);
        }
        if (req->streaming && c->state != FL_CONN_GONE) {
            c->stream = r;   /* the last request of the connection (it is not keep-alive) */
            return;
        }
        if (req->close_after)
            raise_state(c, FL_CONN_CLOSING);
        req_free(r);
    }
}

/* Sends what the output buffer holds, as far as the socket takes it. */
static void send_out(fl_conn *c)
{
    while (c->state != FL_CONN_GONE && c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            c->sent += (uint64_t)n;
            c->write_start = ev_now(c->cs->loop);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!ev_is_active(&c->wio))
                ev_io_start(c->cs->loop, &c->wio);
            return;
        }
        /* EPIPE, ECONNRESET, a short write that cannot go on: a normal outcome, only counted. */
        conn_gone(c);
    }
    if (ev_is_active(&c->wio))
        ev_io_stop(c->cs->loop, &c->wio);
}

/* Sends the output; a stream whose output drained is told, so it can queue what it holds. */
static void conn_send(fl_conn *c)
{
    send_out(c);
    if (c->stream && c->state != FL_CONN_GONE && c->out_off == c->out_len && c->stream->req.stream.drained)
        c->stream->req.stream.drained(&c->stream->req);
}

static void conn_flush(fl_conn *c)
{
    take_replies(c);
    conn_send(c);
    /* A client that keeps its connection open is judged when it closes; until then its acks
     * are only trimmed now and then, so keep-alive traffic pays no syscall for them. */
    if (c->eof || c->state >= FL_CONN_CLOSING || c->n_acks >= FL_ACKS_TRIM)
        acks_check(c);
}

/* ---------------------------------------------------------------- streamed replies */

static void deadline_arm(fl_conn *c);

/* A stream's bytes wait in the output buffer like a reply's, counted there (stream_queued);
 * the write watcher sends them on the next loop iteration, so a burst of events leaves in a
 * few sends. */
static int stream_write(fl_req *req, const char *p, size_t len)
{
    fl_conn *c = conn_req_of(req)->conn;
    if (c->state == FL_CONN_GONE)
        return -EPIPE;
    if (out_append(c, p, len) < 0)
        return -ENOMEM;
    if (!ev_is_active(&c->wio))
        ev_io_start(c->cs->loop, &c->wio);
    deadline_arm(c);
    return 0;
}

/* What the client has not taken: bytes still waiting are offered to the kernel first, so a
 * burst of events within one loop iteration counts against the stream's budget only as far as
 * the client's socket refuses it. */
static size_t stream_queued(const fl_req *req)
{
    fl_conn *c = conn_req_of((fl_req *)req)->conn;
    if (c->out_off < c->out_len && c->state != FL_CONN_GONE)
        send_out(c);   /* not conn_send: its drained call would re-enter the stream's writer */
    return c->out_len - c->out_off;
}

/* Ends the stream of c, if it has one: the layer above forgets it as it is freed. */
static void stream_close(fl_conn *c)
{
    conn_req *r = c->stream;
    if (!r)
        return;
    c->stream = NULL;
    req_free(r);
}

/* The layer above ends the stream (a slow consumer): the connection closes from the loop, not
 * inside the publisher that is walking its subscribers. */
static void stream_end(fl_req *req, const char *why)
{
    fl_conn *c = conn_req_of(req)->conn;
    if (fl_log_allow(&c->cs->stream_log, "closed event streams"))
        fl_log(LOG_WARNING, "peer %s: event stream closed: %s", conn_peer(c), why);
    stream_close(c);
    conn_gone(c);
    ev_feed_event(c->cs->loop, &c->wio, EV_WRITE);
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    fl_conn *c = w->data;
    conn_flush(c);
    conn_progress(c);
}

/* ---------------------------------------------------------------- parsing */

static int head_append(fl_conn *c, const char *p, size_t len)
{
    size_t max = c->cs->cfg->max_header;
    if (c->head_len + len > max)
        return -E2BIG;
    if (c->head_len + len > c->head_cap) {
        size_t cap = c->head_cap ? c->head_cap : FL_HEAD_INITIAL;
        while (cap < c->head_len + len)
            cap *= 2;
        if (cap > max)
            cap = max;
        char *h = realloc(c->head, cap);
        if (!h)
            return -ENOMEM;
        c->head = h;
        c->head_cap = cap;
    }
    memcpy(c->head + c->head_len, p, len);
    c->head_len += len;
    return 0;
}

/* Fails the request being parsed with a prepared error; parsing stops (HPE_USER). */
static int fail_head(fl_conn *c, int err)
{
    if (err == -ENOMEM)
        fl_reply_error(&c->cur->req, 503, "out_of_memory", "the server is out of memory");
    else
        fl_reply_error(&c->cur->req, 431, "headers_too_large", "request line and headers exceed %zu bytes or %d lines",
                      c->cs->cfg->max_header, FL_HTTP_MAX_HEADERS);
    c->body = FL_BODY_REFUSE;
    return HPE_USER;
}

static fl_conn *conn_of(llhttp_t *p) { return p->data; }

static int on_message_begin(llhttp_t *p)
{
    fl_conn *c = conn_of(p);
    c->cur = req_new(c);
    if (!c->cur)
        return HPE_USER;
    c->in_message = 1;
    c->msg_start = ev_now(c->cs->loop);
    c->head_len = c->url_len = c->n_hdr = 0;
    c->in_value = 0;
    c->expect_continue = 0;
    c->body = FL_BODY_READ;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    fl_conn *c = conn_of(p);
    int rc = head_append(c, at, len);
    if (rc < 0)
        return fail_head(c, rc);
    c->url_len += len;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    fl_conn *c = conn_of(p);
    if (c->in_value || c->n_hdr == 0) {
        if (c->n_hdr == FL_HTTP_MAX_HEADERS)
            return fail_head(c, -E2BIG);
        c->hdr[c->n_hdr].name = c->head_len;
        c->hdr[c->n_hdr].name_len = 0;
        c->hdr[c->n_hdr].value = c->head_len;
        c->hdr[c->n_hdr].value_len = 0;
        c->n_hdr++;
        c->in_value = 0;
    }
    int rc = head_append(c, at, len);
    if (rc < 0)
        return fail_head(c, rc);
    c->hdr[c->n_hdr - 1].name_len += len;
    c->hdr[c->n_hdr - 1].value = c->head_len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    fl_conn *c = conn_of(p);
    if (c->n_hdr == 0)
        return HPE_USER;
    c->in_value = 1;
    int rc = head_append(c, at, len);
    if (rc < 0)
        return fail_head(c, rc);
    c->hdr[c->n_hdr - 1].value_len += len;
    return 0;
}

static int name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

/* Keeps the method and target (cut short) for the log line of a refused request. */
static void note_request(conn_req *req, const fl_http_head *h)
{
    req->method = h->method;
    size_t n = h->url_len < sizeof req->target - 1 ? h->url_len : sizeof req->target - 1;
    memcpy(req->target, h->url, n);
    req->target[n] = '\0';
}

static int on_headers_complete(llhttp_t *p)
{
    fl_conn *c = conn_of(p);
    fl_http_header hdrs[FL_HTTP_MAX_HEADERS];
    for (size_t i = 0; i < c->n_hdr; i++) {
        hdrs[i] = (fl_http_header){ c->head + c->hdr[i].name, c->hdr[i].name_len,
                                    c->head + c->hdr[i].value, c->hdr[i].value_len };
        if (name_is(hdrs[i].name, hdrs[i].name_len, "Expect") && hdrs[i].value_len == 12 &&
            strncasecmp(hdrs[i].value, "100-continue", 12) == 0)
            c->expect_continue = 1;
    }
    fl_http_head head = {
        .method = p->method,
        .url = c->head, .url_len = c->url_len,
        .headers = hdrs, .n_headers = c->n_hdr,
        .has_content_length = (p->flags & F_CONTENT_LENGTH) != 0,
        .content_length = p->content_length,
        .chunked = (p->flags & F_CHUNKED) != 0,
    };
    c->cur->req.keep_alive = llhttp_should_keep_alive(p);
    note_request(c->cur, &head);
    if (p->upgrade) {
        /* Refused at the head: otherwise llhttp stops at the upgrade and the client would see
         * the answer to this request followed by an error about the bytes after it. */
        fl_reply_error(&c->cur->req, 400, "upgrade_not_supported", "CONNECT and protocol upgrades are not supported");
        c->cur->req.close_after = 1;
        return HPE_USER;
    }
    c->body = fl_http_start(c->cs->http, &c->cur->req, &head);
    if (c->body == FL_BODY_REFUSE)
        return HPE_USER;
    /* 100 Continue only when it is the next thing the client will read. */
    if (c->expect_continue && c->body == FL_BODY_READ && head.content_length > 0 && fl_list_empty(&c->q) &&
        c->out_off == c->out_len) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (out_append(c, cont, sizeof cont - 1) == 0)
            conn_send(c);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    fl_conn *c = conn_of(p);
    if (c->body == FL_BODY_READ)
        fl_http_body(&c->cur->req, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    fl_conn *c = conn_of(p);
    conn_req *r = c->cur;
    c->cur = NULL;
    c->in_message = 0;
    c->served++;
    c->last_active = ev_now(c->cs->loop);
    c->cs->metrics->requests++;
    int keep_alive = r->req.keep_alive && !c->cs->stopping;
    if (!keep_alive)
        r->req.close_after = 1;
    queue_push(c, r);
    fl_http_complete(&r->req);
    if (!keep_alive)
        raise_state(c, FL_CONN_LAST);
    else if (c->state == FL_CONN_READING && over_limits(c))
        c->state = FL_CONN_PAUSED;
    /* Always stop at the end of a message: the next head is checked before llhttp sees it. */
    c->in_head = 1;
    fl_headcheck_init(&c->check);
    return HPE_PAUSED;
}

/* Queues an error for input the parser refused (bad syntax, too large), and stops parsing.
 * why (if not NULL) is the head check's reason, else llhttp's error tells. */
static void parse_failed(fl_conn *c, llhttp_errno_t err, const char *why)
{
    conn_req *r = c->cur;
    c->cur = NULL;
    if (!r && !(r = req_new(c))) {
        conn_gone(c);
        return;
    }
    fl_req *req = &r->req;
    if (!req->resp && !req->err_status) {
        if (why)
            fl_reply_error(req, 400, "bad_request", "malformed HTTP request: %s", why);
        else
            fl_reply_error(req, 400, "bad_request", "malformed HTTP request: %s (%s)", llhttp_errno_name(err),
                           llhttp_get_error_reason(&c->parser));
    }
    if (req->job) {
        fl_job_free(req->job);
        req->job = NULL;
    }
    req->close_after = 1;
    c->in_message = 0;
    raise_state(c, FL_CONN_LAST);
    queue_push(c, r);
    req_ready(req);
}

/* Keeps input that arrived past a pause, to parse when the replies have drained. */
static void keep_rest(fl_conn *c, const char *data, size_t len)
{
    char *r = malloc(len);
    if (!r) {
        fl_log(LOG_ERR, "peer %s: out of memory holding pipelined input; closing", conn_peer(c));
        conn_gone(c);
        return;
    }
    memcpy(r, data, len);
    c->rest = r;
    c->rest_len = len;
}

/* Parses input: a request head is checked strictly first, then llhttp parses it; a body goes
 * to llhttp as it is. llhttp stops at the end of every message (on_message_complete), so
 * each head is checked from its first byte and back-pressure applies between requests. */
static void parse(fl_conn *c, const char *data, size_t len)
{
    while (len > 0 && c->state == FL_CONN_READING) {
        size_t n = len;
        if (c->in_head) {
            int done;
            long k = fl_headcheck_feed(&c->check, data, len, &done);
            if (k < 0) {
                parse_failed(c, HPE_OK, c->check.why);
                return;
            }
            n = (size_t)k;
            if (done)
                c->in_head = 0;
        }
        llhttp_errno_t err = llhttp_execute(&c->parser, data, n);
        if (err == HPE_PAUSED) {
            n = (size_t)(llhttp_get_error_pos(&c->parser) - data);
            llhttp_resume(&c->parser);
        } else if (err != HPE_OK) {
            parse_failed(c, err, NULL);
            return;
        }
        data += n;
        len -= n;
    }
    if (len > 0 && c->state == FL_CONN_PAUSED)
        keep_rest(c, data, len);
}

/* Parses what a pause kept, once the replies have drained below the limits. */
static void resume_parsing(fl_conn *c)
{
    char *rest = c->rest;
    size_t len = c->rest_len;
    c->rest = NULL;
    c->rest_len = 0;
    c->state = FL_CONN_READING;
    c->in_read = 1;
    parse(c, rest, len);
    c->in_read = 0;
    free(rest);
    conn_flush(c);
}

/* ---------------------------------------------------------------- reading */

static void stop_reading(fl_conn *c)
{
    ev_io_stop(c->cs->loop, &c->rio);
}

static void start_reading(fl_conn *c)
{
    if (!ev_is_active(&c->rio) && !peer_closed(c))
        ev_io_start(c->cs->loop, &c->rio);
}

/* The input ended (FIN, reset, deadline) inside a request: it is never enqueued (counted in fling_requests_truncated_total). */
static void drop_partial(fl_conn *c, const char *why)
{
    if (!c->in_message)
        return;
    c->cs->metrics->requests_truncated++;
    fl_log(LOG_INFO, "peer %s: request cut short (%s); nothing enqueued", conn_peer(c), why);
    req_free(c->cur);
    c->cur = NULL;
    c->in_message = 0;
}

/* A read burst. The first one of a connection reads on after a short read, until EAGAIN or
 * EOF (see fl_conn_new). */
static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    fl_conn *c = w->data;
    int drain = c->fresh;
    c->fresh = 0;
    c->in_read = 1;
    for (int i = 0; i < FL_CONN_READS_PER_EVENT; i++) {
        ssize_t n = recv(c->fd, read_buf, sizeof read_buf, 0);
        if (n > 0) {
            c->last_active = ev_now(loop);
            if (c->state != FL_CONN_LINGERING)
                parse(c, read_buf, (size_t)n);
            if (c->state == FL_CONN_PAUSED)
                break;
            /* A short read has drained the socket. Reading again costs a syscall per request
             * on keep-alive connections; it pays only when the client announced its close. */
            if ((size_t)n < sizeof read_buf && c->state == FL_CONN_READING && !drain)
                break;
            continue;
        }
        if (n == 0) {
            c->eof = 1;
            drop_partial(c, "EOF");
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        /* ECONNRESET and friends: every byte before the reset was read above (the kernel reports a reset only after the bytes that preceded it). */
        drop_partial(c, "reset");
        conn_gone(c);
        break;
    }
    if (peer_closed(c))
        tell_waiting(c);
    c->in_read = 0;
    conn_flush(c);
    conn_progress(c);
}

/* ---------------------------------------------------------------- deadlines */

/* When the deadline timer should next act, or 0 when no deadline applies (waiting on the store). */
static ev_tstamp conn_deadline(const fl_conn *c)
{
    const fl_config *cfg = c->cs->cfg;
    if (c->state == FL_CONN_LINGERING)
        return c->linger_start + FL_LINGER_MAX;
    if (c->stream && c->out_off == c->out_len)
        return 0;   /* a quiet stream is not idle: it waits for events */
    if (c->in_message)
        return c->msg_start + cfg->read_timeout;
    if (c->out_off < c->out_len)
        return c->write_start + cfg->idle_timeout;
    if (!fl_list_empty(&c->q) || c->eof)
        return 0;
    return c->last_active + cfg->idle_timeout;
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    fl_conn *c = w->data;
    ev_tstamp at = conn_deadline(c);
    ev_tstamp now = ev_now(loop);
    if (at == 0) {
        ev_timer_set(w, c->cs->cfg->read_timeout, 0.);
        ev_timer_start(loop, w);
        return;
    }
    if (at > now) {
        ev_timer_set(w, at - now, 0.);
        ev_timer_start(loop, w);
        return;
    }
    if (c->in_message)
        drop_partial(c, "read deadline");
    acks_check(c);
    if (c->out_off < c->out_len) {
        /* Its replies never left: the 202s among them were not delivered. */
        fl_log(LOG_WARNING, "peer %s: took none of %zu reply bytes for %gs; closing", conn_peer(c),
               c->out_len - c->out_off, c->cs->cfg->idle_timeout);
        conn_gone(c);
    }
    acks_settle(c, c->n_acks, FL_ACK_UNKNOWN);
    conn_close(c);
}

/* Makes sure the deadline timer fires no later than the current deadline. */
static void deadline_arm(fl_conn *c)
{
    ev_tstamp at = conn_deadline(c);
    if (at == 0)
        return;
    ev_tstamp in = at - ev_now(c->cs->loop);
    if (in < 0)
        in = 0;
    if (ev_is_active(&c->deadline) && ev_timer_remaining(c->cs->loop, &c->deadline) <= in)
        return;
    ev_timer_stop(c->cs->loop, &c->deadline);
    ev_timer_set(&c->deadline, in, 0.);
    ev_timer_start(c->cs->loop, &c->deadline);
}

/* ---------------------------------------------------------------- life cycle */

/* Decides what the connection does next, after any event. */
static void conn_progress(fl_conn *c)
{
    while (c->state == FL_CONN_PAUSED && !c->in_read && !over_limits(c))
        resume_parsing(c);
    if (c->stream && c->eof) {
        stream_close(c);   /* the client ended the stream: what it did not read is dropped */
        conn_gone(c);
    }
    if (c->state == FL_CONN_GONE) {
        conn_close(c);
        return;
    }
    int idle = fl_list_empty(&c->q) && c->out_off == c->out_len;
    if (c->state == FL_CONN_LINGERING) {
        if (c->eof)
            conn_close(c);
        return;
    }
    if ((c->eof || c->state == FL_CONN_CLOSING) && idle && !c->in_message) {
        if (c->n_acks) {
            stop_reading(c);
            verdict_start(c);
            return;
        }
        if (c->eof) {
            conn_close(c);
            return;
        }
        /* Our final reply is out and the client may still be sending: shut our side, drain
         * its input for a bounded time, then close, so it can read the reply. */
        shutdown(c->fd, SHUT_WR);
        c->state = FL_CONN_LINGERING;
        c->linger_start = ev_now(c->cs->loop);
        start_reading(c);
        deadline_arm(c);
        return;
    }
    if (c->eof)
        stop_reading(c);
    else if (c->state == FL_CONN_LAST || c->state == FL_CONN_CLOSING)
        /* a waiting one or a stream must still see the client leave */
        has_waiting(c) || c->stream ? start_reading(c) : stop_reading(c);
    else if (c->state == FL_CONN_PAUSED)
        stop_reading(c);
    else
        start_reading(c);
    deadline_arm(c);
}

/* req->ready: the layers above set req's reply, or req began to wait. */
static void req_ready(fl_req *req)
{
    conn_req *r = conn_req_of(req);
    fl_conn *c = r->conn;
    if (!c) {
        if (req->resp)
            drop_reply(r->cs, r);
        req_free(r);
        return;
    }
    count_reply(c, r);
    /* Replies that complete inside the parser wait for the end of the read burst, and a
     * reply behind one still waiting for its commit waits for that one. */
    if (c->in_read || r != q_first(c))
        return;
    conn_flush(c);
    conn_progress(c);
}

/* Asks c to close once its in-flight requests are answered (graceful stop). */
static void conn_shutdown(fl_conn *c)
{
    stream_close(c);
    if (!c->in_message && fl_list_empty(&c->q))
        raise_state(c, FL_CONN_CLOSING);
    conn_progress(c);
}

/* Frees c and what it holds; its queue must be empty. */
static void conn_release(fl_conn *c)
{
    req_free(c->cur);
    free(c->rest);
    close(c->fd);
    fl_list_remove(&c->node);
    c->cs->metrics->connections_open--;
    free(c->head);
    free(c->out);
    free(c->acks);
    free(c);
}

static void stop_watchers(fl_conn *c)
{
    ev_io_stop(c->cs->loop, &c->rio);
    ev_io_stop(c->cs->loop, &c->wio);
    ev_timer_stop(c->cs->loop, &c->deadline);
    ev_timer_stop(c->cs->loop, &c->verdict);
}

static void conn_close(fl_conn *c)
{
    fl_conns *cs = c->cs;
    stop_watchers(c);
    stream_close(c);
    /* Requests still waiting for the store finish without us; their 202 can't be delivered. */
    while (!fl_list_empty(&c->q)) {
        conn_req *r = queue_pop(c);
        r->conn = NULL;
        r->req.gone = 1;
        if (r->req.resp) {
            drop_reply(cs, r);
            req_free(r);
        } else {
            fl_http_client_gone(&r->req);   /* frees a waiting request; a committing one is freed by its callback */
        }
    }
    conn_release(c);
    cs->on_closed(cs->arg);
}

int fl_conn_new(fl_conns *cs, int fd, int is_unix, const struct sockaddr *peer, socklen_t peer_len)
{
    struct sockaddr_storage ss = { 0 };
    if (peer)
        memcpy(&ss, peer, peer_len < sizeof ss ? peer_len : sizeof ss);
    fl_conn *c = calloc(1, sizeof *c);
    if (!c) {
        char name[64];
        close(fd);
        cs->metrics->connections_refused++;
        fl_log(LOG_WARNING, "peer %s: out of memory for a connection; closed",
               peer_name(&ss, is_unix, name, sizeof name));
        return -ENOMEM;
    }
    c->cs = cs;
    c->fd = fd;
    c->is_unix = is_unix;
    c->peer_addr = ss;
    fl_list_init(&c->q);
    llhttp_settings_init(&c->settings);
    c->settings.on_message_begin = on_message_begin;
    c->settings.on_url = on_url;
    c->settings.on_header_field = on_header_field;
    c->settings.on_header_value = on_header_value;
    c->settings.on_headers_complete = on_headers_complete;
    c->settings.on_body = on_body;
    c->settings.on_message_complete = on_message_complete;
    llhttp_init(&c->parser, HTTP_REQUEST, &c->settings);
    c->parser.data = c;
    c->in_head = 1;
    fl_headcheck_init(&c->check);
    ev_io_init(&c->rio, read_cb, fd, EV_READ);
    ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
    ev_init(&c->deadline, deadline_cb);
    ev_init(&c->verdict, verdict_cb);
    c->rio.data = c->wio.data = c->deadline.data = c->verdict.data = c;
    c->last_active = ev_now(cs->loop);
    fl_list_push_head(&cs->all, &c->node);
    cs->metrics->connections_open++;
    cs->metrics->connections_accepted++;
    /* A client usually sends at once, and a fire-and-forget one has often closed already by
     * the time it is accepted: a first read in this loop iteration, up to EAGAIN or EOF, serves
     * it without an epoll_ctl; the read watcher starts only if the socket has more to come.
     * The accept loop finishes first, so the requests of a burst reach the store together. */
    c->fresh = 1;
    ev_feed_event(cs->loop, &c->rio, EV_READ);
    deadline_arm(c);
    return 0;
}

/* ---------------------------------------------------------------- all connections */

int fl_conns_new(fl_conns **out, struct ev_loop *loop, const fl_config *cfg, fl_metrics *metrics, fl_http *http,
                 fl_ack *ack, void (*on_closed)(void *arg), void *arg)
{
    fl_conns *cs = calloc(1, sizeof *cs);
    if (!cs)
        return -ENOMEM;
    *cs = (fl_conns){ .loop = loop, .cfg = cfg, .metrics = metrics, .http = http, .ack = ack,
                      .on_closed = on_closed, .arg = arg };
    fl_list_init(&cs->all);
    fl_list_init(&cs->spare);
    *out = cs;
    return 0;
}

void fl_conns_stop(fl_conns *cs) { cs->stopping = 1; }

void fl_conns_shutdown(fl_conns *cs)
{
    fl_list *pos, *tmp;
    fl_list_each(pos, tmp, &cs->all)
        conn_shutdown(fl_list_entry(pos, fl_conn, node));
}

/* Whether c can be closed to make room, and how cheaply: 2 idle keep-alive (it completed a
 * request and sits between two), 1 a request arriving too slowly, or a new connection that
 * has sent nothing for that long (then *since says since when), 0 not at all. */
static int reclaimable(const fl_conn *c, ev_tstamp now, ev_tstamp *since)
{
    if (c->state != FL_CONN_READING || c->eof || c->n_acks || c->out_off < c->out_len || !fl_list_empty(&c->q))
        return 0;
    if (!c->in_message && c->served)
        return 2;
    *since = c->in_message ? c->msg_start : c->last_active;
    return now - *since > FL_CONN_SLOW_REQUEST;
}

int fl_conns_reclaim(fl_conns *cs)
{
    ev_tstamp now = ev_now(cs->loop), since = 0, oldest = now;
    fl_conn *pick = NULL;
    fl_list *pos, *tmp;
    fl_list_each(pos, tmp, &cs->all) {
        fl_conn *c = fl_list_entry(pos, fl_conn, node);
        int how = reclaimable(c, now, &since);
        if (how == 2) {
            pick = c;
            break;
        }
        if (how == 1 && since < oldest) {
            pick = c;
            oldest = since;
        }
    }
    if (!pick)
        return 0;
    cs->metrics->connections_reclaimed++;
    if (pick->in_message)
        drop_partial(pick, "closed to make room at max_connections");
    conn_close(pick);
    return 1;
}

int fl_conns_empty(const fl_conns *cs) { return fl_list_empty(&cs->all); }

void fl_conns_free(fl_conns *cs)
{
    if (!cs)
        return;
    fl_list *pos, *tmp;
    fl_list_each(pos, tmp, &cs->all) {
        fl_conn *c = fl_list_entry(pos, fl_conn, node);
        stop_watchers(c);
        stream_close(c);
        while (!fl_list_empty(&c->q))
            req_free(queue_pop(c));
        conn_release(c);
    }
    fl_list_each(pos, tmp, &cs->spare)
        free(fl_list_entry(pos, conn_req, node));
    free(cs);
}
