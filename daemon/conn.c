/* conn.c — the connection state machine: read, parse, dispatch, reply in order, judge delivery.
 * See conn.h for the design. States, from the flags below:
 *   reading     parser between requests or inside one (in_message)
 *   waiting     requests queued for their store commit (q_head != NULL)
 *   verdict     EOF seen, replies written, 202 deliveries still being judged (n_acks > 0)
 *   lingering   our write side shut down after a final reply; input drained until EOF or deadline
 */
#include "conn.h"

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

/* A read burst: libuv caps one wake-up at 32 reads so one busy client cannot starve others. */
#define FL_CONN_READS_PER_EVENT 32
/* The shared read buffer: 64 KiB is what one loopback segment train typically carries. */
#define FL_CONN_READ_BUF (64 * 1024)
/* Delivery verdict of a 202: first look 1 ms after the send, doubling, for at most 1 s
 * (SOCKETS.md D7). On loopback the peer's RST or ACK arrives within microseconds. */
#define FL_VERDICT_FIRST 0.001
#define FL_VERDICT_MAX 1.0
/* Open acks on a live keep-alive connection are settled in bulk once this many wait. */
#define FL_ACKS_TRIM 64
/* Lingering close: how long we drain a client's input after our final reply (D8). */
#define FL_LINGER_MAX 2.0
/* The head buffer starts small and grows up to [server] max_header. */
#define FL_HEAD_INITIAL 512

typedef struct fl_ack { uint64_t end; int64_t id; } fl_ack;

struct fl_conn {
    fl_server *srv;
    fl_conn *prev, *next;           /* srv->conns */
    int fd;
    int is_unix;
    char peer[64];
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
    fl_req *cur;                    /* the request being parsed */
    fl_headcheck check;             /* the strict grammar check of the head being read */
    char *rest; size_t rest_len;    /* input read but not parsed while paused (at most one read) */
    size_t held;                    /* bytes of queued payloads and replies (see over_limits) */
    size_t n_unbounded;             /* queued requests whose reply size is not bounded yet */
    fl_body_action body;
    int expect_continue;
    fl_req *q_head, *q_tail;        /* requests awaiting or holding their reply, in order */
    size_t n_q;
    char *out; size_t out_off, out_len, out_cap;
    uint64_t sent;                  /* bytes the kernel took from us on this socket */
    fl_ack *acks; size_t n_acks, acks_cap;  /* sent 202s whose delivery is not judged yet */
    ev_tstamp msg_start, last_active, verdict_start, verdict_step;
    ev_tstamp write_start;          /* output has waited since then without the client taking any */
    unsigned in_message : 1;        /* bytes of an incomplete request have arrived */
    unsigned eof : 1;               /* the peer sent FIN */
    unsigned gone : 1;              /* reset, or a send failed: nothing more can be written */
    unsigned closing : 1;           /* no more requests: close after the queued replies */
    unsigned lingering : 1;
    unsigned reading : 1;           /* rio is started */
    unsigned stop_parse : 1;        /* ignore further input (after an error or Connection: close) */
    unsigned in_read : 1;           /* parsing: replies are flushed at the end of the burst */
    unsigned in_head : 1;           /* the next input bytes belong to a request head */
    unsigned paused : 1;            /* parsing stopped at a request boundary until replies drain */
    ev_tstamp linger_start;
};

static char read_buf[FL_CONN_READ_BUF];   /* loop thread only: parsed at once, never kept */

static void conn_close(fl_conn *c);
static void conn_flush(fl_conn *c);
static void conn_progress(fl_conn *c);
static size_t acks_check(fl_conn *c);

fl_conn *fl_conn_next(const fl_conn *c) { return c->next; }

int fl_conn_peer_closed(const fl_conn *c) { return c->eof || c->gone; }

static int ack_listed(const fl_conn *c, int64_t id)
{
    for (size_t i = 0; i < c->n_acks; i++)
        if (c->acks[i].id == id)
            return 1;
    return 0;
}

int fl_conn_ack_pending(fl_conn *c, int64_t id)
{
    for (const fl_req *req = c->q_head; req; req = req->next)
        if (req->ack_id == id)
            return 1;
    /* A keep-alive connection settles its acks only now and then: settle them now. */
    return ack_listed(c, id) && acks_check(c) && ack_listed(c, id);
}

static int has_waiting(const fl_conn *c)
{
    for (const fl_req *req = c->q_head; req; req = req->next)
        if (req->waiting)
            return 1;
    return 0;
}

/* The client closed or reset: requests waiting for their job's end (attached mode) learn it. */
static void tell_waiting(fl_conn *c)
{
    for (fl_req *req = c->q_head, *next; req; req = next) {
        next = req->next;
        if (!req->resp)
            fl_http_client_gone(req);
    }
}

/* ---------------------------------------------------------------- request queue */

/* Requests whose reply can be large (a page of up to 1000 jobs, the metrics text): while one is
 * queued without its reply nothing more is parsed, so a connection holds at most one of them. */
static int unbounded_reply(const fl_req *req)
{
    return req->route == FL_ROUTE_LIST || req->route == FL_ROUTE_METRICS;
}

static void queue_push(fl_conn *c, fl_req *req)
{
    req->held = req->job ? req->job->payload_len : 0;
    c->held += req->held;
    if (unbounded_reply(req))
        c->n_unbounded++;
    req->next = NULL;
    if (c->q_tail)
        c->q_tail->next = req;
    else
        c->q_head = req;
    c->q_tail = req;
    c->n_q++;
}

static fl_req *queue_pop(fl_conn *c)
{
    fl_req *req = c->q_head;
    c->q_head = req->next;
    if (!c->q_head)
        c->q_tail = NULL;
    c->n_q--;
    c->held -= req->held;
    if (unbounded_reply(req) && !req->replied)
        c->n_unbounded--;
    req->next = NULL;
    return req;
}

/* A queued request's reply is set: from now on the connection holds its bytes. */
static void count_reply(fl_conn *c, fl_req *req)
{
    if (req->replied || !req->resp)
        return;
    req->replied = 1;
    c->held = c->held - req->held + req->resp_len;
    req->held = req->resp_len;
    if (unbounded_reply(req))
        c->n_unbounded--;
}

/* Back-pressure: a connection stops parsing (and so reading) at a request boundary once it
 * has max_pipeline requests queued, max_output bytes of payloads and replies held, or a
 * request with an unbounded reply pending. With read sizes bounded too, what one connection
 * can make flingd hold is bounded by its config, whatever the client sends. */
static int over_limits(const fl_conn *c)
{
    const fl_config *cfg = c->srv->cfg;
    return c->n_q >= (size_t)cfg->max_pipeline || c->n_unbounded > 0 ||
           c->held + (c->out_len - c->out_off) >= cfg->max_output;
}

static fl_req *req_new(fl_conn *c)
{
    fl_req *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->srv = c->srv;
    req->conn = c;
    return req;
}

/* ---------------------------------------------------------------- delivery verdicts */

static int ack_push(fl_conn *c, uint64_t end, int64_t id)
{
    if (c->n_acks == c->acks_cap) {
        size_t cap = c->acks_cap ? c->acks_cap * 2 : 8;
        fl_ack *a = realloc(c->acks, cap * sizeof *a);
        if (!a)
            return -ENOMEM;
        c->acks = a;
        c->acks_cap = cap;
    }
    c->acks[c->n_acks++] = (fl_ack){ end, id };
    return 0;
}

/* Drops the first n acks (delivered, aborted or unknown). */
static void acks_drop(fl_conn *c, size_t n)
{
    memmove(c->acks, c->acks + n, (c->n_acks - n) * sizeof *c->acks);
    c->n_acks -= n;
}

static void acks_abort_all(fl_conn *c)
{
    for (size_t i = 0; i < c->n_acks; i++)
        fl_http_abort_ack(c->srv, c->acks[i].id);
    c->n_acks = 0;
}

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
    if (c->gone || (c->eof && peer_gone(c))) {
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
    c->srv->metrics.acks_delivered += n;
    acks_drop(c, n);
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
    c->srv->metrics.acks_unknown += c->n_acks;
    c->n_acks = 0;
    conn_progress(c);
}

/* Judges the open acks on a timer until every one is settled or FL_VERDICT_MAX passed. */
static void verdict_start(fl_conn *c)
{
    if (ev_is_active(&c->verdict))
        return;
    c->verdict_start = ev_now(c->srv->loop);
    c->verdict_step = FL_VERDICT_FIRST;
    ev_timer_set(&c->verdict, c->verdict_step, 0.);
    ev_timer_start(c->srv->loop, &c->verdict);
}

/* ---------------------------------------------------------------- writing */

static int out_append(fl_conn *c, const char *p, size_t len)
{
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        c->write_start = ev_now(c->srv->loop);
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
    c->gone = 1;
    c->out_off = c->out_len = 0;
    acks_abort_all(c);
}

/* A refused request leaves one warning (under a budget: a flood must not fill the disk) and a
 * count by reason. A 409 is an answer about a job's state, not a refusal. */
static void log_refused(fl_conn *c, const fl_req *req)
{
    if (req->resp_status < 400 || req->resp_status == 409)
        return;
    const char *code = req->err_code ? req->err_code : "out_of_memory";
    fl_metrics_refused(&c->srv->metrics, code);
    if (fl_log_allow(&c->srv->refused_log, "refused requests"))
        fl_log(LOG_WARNING, "peer %s: %s %s refused with %d %s: %s", c->peer, req->method[0] ? req->method : "-",
               req->target[0] ? req->target : "-", req->resp_status, code,
               req->err_status ? req->err_msg : "out of memory for the reply");
}

/* Moves ready replies, in order, from the queue into the output buffer. */
static void take_replies(fl_conn *c)
{
    while (c->q_head && c->q_head->resp && c->out_len - c->out_off < c->srv->cfg->max_output) {
        fl_req *req = queue_pop(c);
        fl_metrics_response(&c->srv->metrics, req->resp_status);
        log_refused(c, req);
        if (c->gone) {
            if (req->ack_id)
                fl_http_abort_ack(c->srv, req->ack_id);
        } else if (out_append(c, req->resp, req->resp_len) < 0) {
            fl_log(LOG_ERR, "peer %s: out of memory for a reply; closing", c->peer);
            if (req->ack_id)
                fl_http_abort_ack(c->srv, req->ack_id);
            conn_gone(c);
        } else if (req->ack_id && ack_push(c, c->sent + (c->out_len - c->out_off), req->ack_id) < 0) {
            c->srv->metrics.acks_unknown++;
        }
        if (req->close_after)
            c->closing = 1;
        fl_req_free(req);
    }
}

static void conn_send(fl_conn *c)
{
    while (!c->gone && c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            c->sent += (uint64_t)n;
            c->write_start = ev_now(c->srv->loop);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!ev_is_active(&c->wio))
                ev_io_start(c->srv->loop, &c->wio);
            return;
        }
        /* EPIPE, ECONNRESET, a short write that cannot go on: a normal outcome (D6). */
        conn_gone(c);
    }
    if (ev_is_active(&c->wio))
        ev_io_stop(c->srv->loop, &c->wio);
}

static void conn_flush(fl_conn *c)
{
    take_replies(c);
    conn_send(c);
    /* A client that keeps its connection open is judged when it closes; until then its acks
     * are only trimmed now and then, so keep-alive traffic pays no syscall for them. */
    if (c->eof || c->gone || c->closing || c->n_acks >= FL_ACKS_TRIM)
        acks_check(c);
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
    size_t max = c->srv->cfg->max_header;
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
        fl_http_error(c->cur, 503, "out_of_memory", "the server is out of memory");
    else
        fl_http_error(c->cur, 431, "headers_too_large", "request line and headers exceed %zu bytes or %d lines",
                      c->srv->cfg->max_header, FL_HTTP_MAX_HEADERS);
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
    c->msg_start = ev_now(c->srv->loop);
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
static void note_request(fl_req *req, const fl_http_head *h)
{
    snprintf(req->method, sizeof req->method, "%s", llhttp_method_name((llhttp_method_t)h->method));
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
    c->cur->keep_alive = llhttp_should_keep_alive(p);
    note_request(c->cur, &head);
    if (p->upgrade) {
        /* Refused at the head: otherwise llhttp stops at the upgrade and the client would see
         * the answer to this request followed by an error about the bytes after it. */
        fl_http_error(c->cur, 400, "upgrade_not_supported", "CONNECT and protocol upgrades are not supported");
        c->cur->close_after = 1;
        return HPE_USER;
    }
    c->body = fl_http_start(c->cur, &head);
    if (c->body == FL_BODY_REFUSE)
        return HPE_USER;
    /* 100 Continue only when it is the next thing the client will read. */
    if (c->expect_continue && c->body == FL_BODY_READ && head.content_length > 0 && !c->q_head &&
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
        fl_http_body(c->cur, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    fl_conn *c = conn_of(p);
    fl_req *req = c->cur;
    c->cur = NULL;
    c->in_message = 0;
    c->last_active = ev_now(c->srv->loop);
    c->srv->metrics.requests++;
    int keep_alive = req->keep_alive && !c->srv->stopping;
    if (!keep_alive)
        req->close_after = 1;
    queue_push(c, req);
    fl_http_complete(req);
    if (!keep_alive)
        c->stop_parse = 1;
    else if (over_limits(c))
        c->paused = 1;
    /* Always stop at the end of a message: the next head is checked before llhttp sees it. */
    c->in_head = 1;
    fl_headcheck_init(&c->check);
    return HPE_PAUSED;
}

/* Queues an error for input the parser refused (bad syntax, too large), and stops parsing.
 * why (if not NULL) is the head check's reason, else llhttp's error tells. */
static void parse_failed(fl_conn *c, llhttp_errno_t err, const char *why)
{
    fl_req *req = c->cur;
    c->cur = NULL;
    if (!req && !(req = req_new(c))) {
        c->stop_parse = 1;
        conn_gone(c);
        return;
    }
    if (!req->resp && !req->err_status) {
        if (why)
            fl_http_error(req, 400, "bad_request", "malformed HTTP request: %s", why);
        else
            fl_http_error(req, 400, "bad_request", "malformed HTTP request: %s (%s)", llhttp_errno_name(err),
                          llhttp_get_error_reason(&c->parser));
    }
    if (req->job) {
        fl_job_free(req->job);
        req->job = NULL;
    }
    req->close_after = 1;
    c->in_message = 0;
    c->stop_parse = 1;
    queue_push(c, req);
    fl_conn_reply_ready(req);
}

/* Keeps input that arrived past a pause, to parse when the replies have drained. */
static void keep_rest(fl_conn *c, const char *data, size_t len)
{
    char *r = malloc(len);
    if (!r) {
        fl_log(LOG_ERR, "peer %s: out of memory holding pipelined input; closing", c->peer);
        c->stop_parse = 1;
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
    while (len > 0 && !c->stop_parse && !c->paused) {
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
    if (len > 0 && c->paused && !c->stop_parse)
        keep_rest(c, data, len);
}

/* Parses what a pause kept, once the replies have drained below the limits. */
static void resume_parsing(fl_conn *c)
{
    char *rest = c->rest;
    size_t len = c->rest_len;
    c->rest = NULL;
    c->rest_len = 0;
    c->paused = 0;
    c->in_read = 1;
    parse(c, rest, len);
    c->in_read = 0;
    free(rest);
    conn_flush(c);
}

/* ---------------------------------------------------------------- reading */

static void stop_reading(fl_conn *c)
{
    if (c->reading) {
        ev_io_stop(c->srv->loop, &c->rio);
        c->reading = 0;
    }
}

static void start_reading(fl_conn *c)
{
    if (!c->reading && !c->eof && !c->gone) {
        ev_io_start(c->srv->loop, &c->rio);
        c->reading = 1;
    }
}

/* The input ended (FIN, reset, deadline) inside a request: it is never enqueued (D4). */
static void drop_partial(fl_conn *c, const char *why)
{
    if (!c->in_message)
        return;
    c->srv->metrics.requests_truncated++;
    fl_log(LOG_INFO, "peer %s: request cut short (%s); nothing enqueued", c->peer, why);
    fl_req_free(c->cur);
    c->cur = NULL;
    c->in_message = 0;
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    fl_conn *c = w->data;
    c->in_read = 1;
    for (int i = 0; i < FL_CONN_READS_PER_EVENT; i++) {
        ssize_t n = recv(c->fd, read_buf, sizeof read_buf, 0);
        if (n > 0) {
            c->last_active = ev_now(loop);
            if (!c->lingering)
                parse(c, read_buf, (size_t)n);
            if (c->paused)
                break;
            /* A short read has drained the socket. Reading again costs a syscall per request
             * on keep-alive connections; it pays only when the client announced its close. */
            if ((size_t)n < sizeof read_buf && !c->stop_parse)
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
        /* ECONNRESET and friends: every byte before the reset was read above (fact 2). */
        drop_partial(c, "reset");
        conn_gone(c);
        break;
    }
    if (c->eof || c->gone)
        tell_waiting(c);
    c->in_read = 0;
    conn_flush(c);
    conn_progress(c);
}

/* ---------------------------------------------------------------- deadlines */

/* When the deadline timer should next act, or 0 when no deadline applies (waiting on the store). */
static ev_tstamp conn_deadline(const fl_conn *c)
{
    const fl_config *cfg = c->srv->cfg;
    if (c->lingering)
        return c->linger_start + FL_LINGER_MAX;
    if (c->in_message)
        return c->msg_start + cfg->read_timeout;
    if (c->out_off < c->out_len)
        return c->write_start + cfg->idle_timeout;
    if (c->q_head || c->eof)
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
        ev_timer_set(w, c->srv->cfg->read_timeout, 0.);
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
        fl_log(LOG_WARNING, "peer %s: took none of %zu reply bytes for %gs; closing", c->peer,
               c->out_len - c->out_off, c->srv->cfg->idle_timeout);
        conn_gone(c);
    }
    c->srv->metrics.acks_unknown += c->n_acks;
    c->n_acks = 0;
    conn_close(c);
}

/* Makes sure the deadline timer fires no later than the current deadline. */
static void deadline_arm(fl_conn *c)
{
    ev_tstamp at = conn_deadline(c);
    if (at == 0)
        return;
    ev_tstamp in = at - ev_now(c->srv->loop);
    if (in < 0)
        in = 0;
    if (ev_is_active(&c->deadline) && ev_timer_remaining(c->srv->loop, &c->deadline) <= in)
        return;
    ev_timer_stop(c->srv->loop, &c->deadline);
    ev_timer_set(&c->deadline, in, 0.);
    ev_timer_start(c->srv->loop, &c->deadline);
}

/* ---------------------------------------------------------------- life cycle */

/* Decides what the connection does next, after any event. */
static void conn_progress(fl_conn *c)
{
    while (c->paused && !c->in_read && !c->gone && !over_limits(c))
        resume_parsing(c);
    if (c->gone) {
        conn_close(c);
        return;
    }
    int idle = !c->q_head && c->out_off == c->out_len;
    if (c->lingering) {
        if (c->eof)
            conn_close(c);
        return;
    }
    if ((c->eof || c->closing) && idle && !c->in_message) {
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
         * its input for a bounded time, then close, so it can read the reply (D8). */
        shutdown(c->fd, SHUT_WR);
        c->lingering = 1;
        c->linger_start = ev_now(c->srv->loop);
        start_reading(c);
        deadline_arm(c);
        return;
    }
    if (c->eof)
        stop_reading(c);
    else if (c->stop_parse)   /* no more requests; a waiting one must still see the client leave */
        has_waiting(c) ? start_reading(c) : stop_reading(c);
    else if (c->paused)
        stop_reading(c);
    else
        start_reading(c);
    deadline_arm(c);
}

void fl_conn_reply_ready(fl_req *req)
{
    fl_conn *c = req->conn;
    if (!c) {
        fl_req_free(req);
        return;
    }
    count_reply(c, req);
    /* Replies that complete inside the parser wait for the end of the read burst, and a
     * reply behind one still waiting for its commit waits for that one. */
    if (c->in_read || req != c->q_head)
        return;
    conn_flush(c);
    conn_progress(c);
}

void fl_conn_shutdown(fl_conn *c)
{
    if (!c->in_message && !c->q_head) {
        c->closing = 1;
        c->stop_parse = 1;
    }
    conn_progress(c);
}

static void conn_close(fl_conn *c)
{
    fl_server *srv = c->srv;
    ev_io_stop(srv->loop, &c->rio);
    ev_io_stop(srv->loop, &c->wio);
    ev_timer_stop(srv->loop, &c->deadline);
    ev_timer_stop(srv->loop, &c->verdict);
    /* Requests still waiting for the store finish without us; their 202 can't be delivered. */
    while (c->q_head) {
        fl_req *req = queue_pop(c);
        req->conn = NULL;
        if (req->resp) {
            if (req->ack_id)
                fl_http_abort_ack(srv, req->ack_id);
            fl_req_free(req);
        } else {
            fl_http_client_gone(req);   /* frees a waiting request; a committing one is freed by its callback */
        }
    }
    fl_req_free(c->cur);
    free(c->rest);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->n_conns--;
    free(c->head);
    free(c->out);
    free(c->acks);
    free(c);
    fl_server_conn_closed(srv);
}

int fl_conn_new(fl_server *srv, int fd, int is_unix, const char *peer)
{
    fl_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->srv = srv;
    c->fd = fd;
    c->is_unix = is_unix;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
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
    c->last_active = ev_now(srv->loop);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    srv->metrics.connections_accepted++;
    start_reading(c);
    deadline_arm(c);
    return 0;
}
