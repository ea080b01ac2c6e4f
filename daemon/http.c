/* http.c — routes of the HTTP API v1 (DESIGN.md), their validation, the store operation behind
 * each, and the bytes of every reply. No socket I/O here: conn.c writes what this prepares. */
#include "http.h"

#include <errno.h>
#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "callback.h"
#include "conn.h"
#include "log.h"
#include "mirror.h"
#include "sched.h"

#define FL_LIST_DEFAULT 50
#define FL_LIST_MAX 1000

/* ---------------------------------------------------------------- replies */

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

/* Sets req's reply: status line, headers and body in one buffer, so it leaves in one send. */
static void reply(fl_req *req, int status, const char *ctype, const char *extra,
                  const char *body, size_t body_len)
{
    free(req->resp);
    const char *conn = (req->close_after || !req->keep_alive) ? "Connection: close\r\n" : "";
    char head[512];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                     status, reason(status), ctype, body_len, extra ? extra : "", conn);
    if (n < 0 || (size_t)n >= sizeof head)
        n = 0;   /* cannot happen with our fixed headers; an empty reply beats a bad one */
    req->resp = malloc((size_t)n + body_len);
    if (!req->resp) {
        /* Out of memory for a reply: a static minimal one keeps the connection's order intact. */
        static const char oom[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        req->resp = strdup(oom);
        req->resp_len = req->resp ? sizeof oom - 1 : 0;
        req->resp_status = 503;
        req->close_after = 1;
        req->ack_id = 0;
        return;
    }
    memcpy(req->resp, head, (size_t)n);
    memcpy(req->resp + n, body, body_len);
    req->resp_len = (size_t)n + body_len;
    req->resp_status = status;
}

static void reply_json(fl_req *req, int status, json_t *obj, const char *extra)
{
    char *body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!body) {
        fl_http_error(req, 503, "out_of_memory", "the server is out of memory");
        return;
    }
    reply(req, status, "application/json", extra, body, strlen(body));
    free(body);
}

void fl_http_error(fl_req *req, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(req->err_msg, sizeof req->err_msg, fmt, ap);
    va_end(ap);
    req->err_status = status;
    req->err_code = code;
    json_t *o = json_pack("{s:s, s:s}", "error", code, "message", req->err_msg);
    const char *extra = NULL;
    if (status == 405)
        extra = req->route == FL_ROUTE_LIST ? "Allow: GET\r\n" : "Allow: GET, DELETE\r\n";
    reply_json(req, status, o, extra);
}

/* ---------------------------------------------------------------- request head */

static const fl_http_header *find_header(const fl_http_head *h, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < h->n_headers; i++)
        if (h->headers[i].name_len == len && strncasecmp(h->headers[i].name, name, len) == 0)
            return &h->headers[i];
    return NULL;
}

/* Compares in time independent of where the first difference is. */
static int token_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char d = alen != blen;
    for (size_t i = 0; i < alen && i < blen; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static int authorized(const fl_req *req, const fl_http_head *h)
{
    const char *token = req->srv->cfg->token;
    if (!token)
        return 1;
    const fl_http_header *a = find_header(h, FL_HDR_AUTH);
    if (!a || a->value_len < 7 || strncasecmp(a->value, "Bearer ", 7) != 0)
        return 0;
    return token_equal(a->value + 7, a->value_len - 7, token, strlen(token));
}

/* An error found in the head: skip a body of acceptable size and keep the connection, or
 * refuse one that is too large (or of unknown length) and close after the reply. */
static fl_body_action head_error(fl_req *req, const fl_http_head *h, int status, const char *code,
                                 const char *msg)
{
    fl_body_action a = FL_BODY_DISCARD;
    if (h->chunked || h->content_length > req->srv->cfg->max_payload) {
        a = FL_BODY_REFUSE;
        req->close_after = 1;
    }
    fl_http_error(req, status, code, "%s", msg);
    return a;
}

static int path_is(const char *p, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(p, want, len) == 0;
}

/* Reads the attached-mode headers: Prefer: wait=N and Fling-On-Disconnect. 0, or -EINVAL with
 * the reason in msg. */
static int parse_attached(fl_req *req, const fl_http_head *h, char *msg, size_t msglen)
{
    for (size_t i = 0; i < h->n_headers; i++) {
        const fl_http_header *x = &h->headers[i];
        if (x->name_len == sizeof FL_HDR_PREFER - 1 && strncasecmp(x->name, FL_HDR_PREFER, x->name_len) == 0) {
            if (fl_proto_prefer_wait(x->value, x->value_len, &req->wait_secs) < 0) {
                snprintf(msg, msglen, "Prefer: wait must be a whole number of seconds");
                return -EINVAL;
            }
        } else if (x->name_len == sizeof FL_HDR_ON_DISCONNECT - 1 &&
                   strncasecmp(x->name, FL_HDR_ON_DISCONNECT, x->name_len) == 0) {
            int cancel = x->value_len == 6 && strncasecmp(x->value, "cancel", 6) == 0;
            int cont = x->value_len == 8 && strncasecmp(x->value, "continue", 8) == 0;
            if (!cancel && !cont) {
                snprintf(msg, msglen, "%s must be cancel or continue", FL_HDR_ON_DISCONNECT);
                return -EINVAL;
            }
            req->cancel_on_gone = cancel;
        }
    }
    return 0;
}

/* Copies option header values into the job allocation and sets its fields. */
static fl_body_action start_submit(fl_req *req, const fl_http_head *h, const char *type, size_t type_len)
{
    const fl_config *cfg = req->srv->cfg;
    char msg[160];
    if (h->chunked) {
        req->close_after = 1;
        fl_http_error(req, 411, "length_required", "Content-Length required; chunked bodies are not accepted");
        return FL_BODY_REFUSE;
    }
    if (h->content_length > cfg->max_payload) {
        snprintf(msg, sizeof msg, "payload of %llu bytes exceeds max_payload %zu",
                 (unsigned long long)h->content_length, cfg->max_payload);
        req->close_after = 1;
        fl_http_error(req, 413, "payload_too_large", "%s", msg);
        return FL_BODY_REFUSE;
    }
    if (!h->has_content_length)
        return head_error(req, h, 411, "length_required", "Content-Length required");
    const fl_type *t = fl_config_find_type(cfg, type, type_len);
    if (!t) {
        snprintf(msg, sizeof msg, "no job type \"%.*s\"", (int)(type_len > 64 ? 64 : type_len), type);
        return head_error(req, h, 404, "unknown_type", msg);
    }
    fl_proto_opts o = { 0 };
    for (size_t i = 0; i < h->n_headers; i++) {
        const fl_http_header *x = &h->headers[i];
        if (fl_proto_opts_set(&o, x->name, x->name_len, x->value, x->value_len) < 0) {
            snprintf(msg, sizeof msg, "bad value for header %.*s", (int)(x->name_len > 40 ? 40 : x->name_len), x->name);
            return head_error(req, h, 400, "bad_header", msg);
        }
    }
    if (o.callback && !fl_config_callback_allowed(cfg, o.callback, o.callback_len))
        return head_error(req, h, 400, "callback_not_allowed",
                          "Fling-Callback is not allowed by [callbacks] allow");
    if (parse_attached(req, h, msg, sizeof msg) < 0)
        return head_error(req, h, 400, "bad_header", msg);
    fl_job_sizes sz = {
        .type = type_len,
        .callback = o.callback ? o.callback_len : FL_JOB_ABSENT,
        .idem_key = o.idem_key ? o.idem_key_len : FL_JOB_ABSENT,
        .error = FL_JOB_ABSENT, .output = FL_JOB_ABSENT,
        .payload = (size_t)h->content_length,
    };
    fl_job *job = fl_job_new(&sz);
    if (!job) {
        req->close_after = 1;
        fl_http_error(req, 503, "out_of_memory", "the server is out of memory");
        return FL_BODY_REFUSE;
    }
    memcpy(job->type, type, type_len);
    if (o.callback)
        memcpy(job->callback, o.callback, o.callback_len);
    if (o.idem_key)
        memcpy(job->idem_key, o.idem_key, o.idem_key_len);
    int64_t now = fl_job_now_ms();
    job->priority = o.has_priority ? o.priority : 0;
    job->max_attempts = o.has_max_attempts ? o.max_attempts : t->max_attempts;
    job->timeout = o.has_timeout ? o.timeout : t->timeout;
    job->created_at = now;
    job->run_at = now + (o.has_delay ? (int64_t)(o.delay * 1000.0) : 0);
    job->state = job->run_at > now ? FL_STATE_SCHEDULED : FL_STATE_QUEUED;
    req->job = job;
    req->route = FL_ROUTE_SUBMIT;
    return FL_BODY_READ;
}

/* Reads one query parameter, percent-decoded, into out (NUL-terminated). 1 found, 0 absent,
 * -EINVAL malformed or too long. */
static int query_param(const char *q, size_t qlen, const char *name, char *out, size_t outsz)
{
    size_t nlen = strlen(name);
    const char *end = q + qlen;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        if (eq && (size_t)(eq - q) == nlen && memcmp(q, name, nlen) == 0) {
            size_t o = 0;
            for (const char *v = eq + 1; v < pe; v++) {
                int ch = (unsigned char)*v;
                if (ch == '%') {
                    unsigned hi, lo;
                    if (pe - v < 3 || sscanf(v + 1, "%1x%1x", &hi, &lo) != 2)
                        return -EINVAL;
                    ch = (int)(hi * 16 + lo);
                    v += 2;
                } else if (ch == '+') {
                    ch = ' ';
                }
                if (o + 1 >= outsz || ch == 0)
                    return -EINVAL;
                out[o++] = (char)ch;
            }
            out[o] = '\0';
            return 1;
        }
        q = amp ? amp + 1 : end;
    }
    return 0;
}

static int parse_int_param(const char *s, long min, long max, long *out)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno || e == s || *e || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static fl_body_action start_list(fl_req *req, const fl_http_head *h, const char *q, size_t qlen)
{
    fl_store_query *lq = &req->list_query;
    char v[128];
    int rc;
    lq->limit = FL_LIST_DEFAULT;
    if ((rc = query_param(q, qlen, "state", v, sizeof v)) != 0) {
        if (rc < 0 || fl_proto_state_parse(v, strlen(v), &lq->state) < 0)
            return head_error(req, h, 400, "bad_request", "state must be one of queued, scheduled, running, succeeded, failed, cancelled");
        lq->has_state = 1;
    }
    if ((rc = query_param(q, qlen, "type", req->list_type, sizeof req->list_type)) != 0) {
        if (rc < 0 || !fl_proto_valid_type(req->list_type, strlen(req->list_type)))
            return head_error(req, h, 400, "bad_request", "type is not a valid job type name");
        lq->type = req->list_type;
    }
    long n;
    if ((rc = query_param(q, qlen, "limit", v, sizeof v)) != 0) {
        if (rc < 0 || parse_int_param(v, 1, FL_LIST_MAX, &n) < 0)
            return head_error(req, h, 400, "bad_request", "limit must be an integer from 1 to 1000");
        lq->limit = (int)n;
    }
    if ((rc = query_param(q, qlen, "after", v, sizeof v)) != 0) {
        if (rc < 0 || fl_proto_parse_id(v, strlen(v), &lq->after) < 0)
            return head_error(req, h, 400, "bad_request", "after must be a cursor from a previous page");
    }
    req->route = FL_ROUTE_LIST;
    return FL_BODY_DISCARD;
}

/* A request to a route that takes no body: skip any body it has (or refuse a huge one). */
static fl_body_action no_body(fl_req *req, const fl_http_head *h, fl_req_route route)
{
    req->route = route;
    if (h->chunked || h->content_length > req->srv->cfg->max_payload) {
        req->close_after = 1;
        fl_http_error(req, 413, "payload_too_large", "this route takes no body");
        return FL_BODY_REFUSE;
    }
    return FL_BODY_DISCARD;
}

fl_body_action fl_http_start(fl_req *req, const fl_http_head *h)
{
    if (!authorized(req, h))
        return head_error(req, h, 401, "unauthorized", "missing or wrong bearer token");
    const char *path = h->url;
    const char *qm = memchr(h->url, '?', h->url_len);
    size_t plen = qm ? (size_t)(qm - path) : h->url_len;
    const char *q = qm ? qm + 1 : "";
    size_t qlen = qm ? h->url_len - plen - 1 : 0;
    static const char jobs[] = FL_PROTO_JOBS_PATH "/";
    size_t jl = sizeof jobs - 1;

    if (plen > jl && memcmp(path, jobs, jl) == 0) {
        const char *seg = path + jl;
        size_t slen = plen - jl;
        if (h->method == HTTP_POST)
            return start_submit(req, h, seg, slen);
        if (h->method != HTTP_GET && h->method != HTTP_DELETE) {
            req->route = FL_ROUTE_GET;
            return head_error(req, h, 405, "method_not_allowed", "use POST /v1/jobs/{type}, GET or DELETE /v1/jobs/{id}");
        }
        if (fl_proto_parse_id(seg, slen, &req->id) < 0)
            return head_error(req, h, 404, "not_found", "no such job");
        return no_body(req, h, h->method == HTTP_GET ? FL_ROUTE_GET : FL_ROUTE_CANCEL);
    }
    if (path_is(path, plen, FL_PROTO_JOBS_PATH) || path_is(path, plen, FL_PROTO_JOBS_PATH "/")) {
        req->route = FL_ROUTE_LIST;
        if (h->method != HTTP_GET)
            return head_error(req, h, 405, "method_not_allowed", "use GET /v1/jobs to list, POST /v1/jobs/{type} to submit");
        return start_list(req, h, q, qlen);
    }
    if (h->method == HTTP_GET && path_is(path, plen, FL_PROTO_HEALTH_PATH))
        return no_body(req, h, FL_ROUTE_HEALTH);
    if (h->method == HTTP_GET && path_is(path, plen, FL_PROTO_METRICS_PATH))
        return no_body(req, h, FL_ROUTE_METRICS);
    return head_error(req, h, 404, "not_found", "no such route");
}

void fl_http_body(fl_req *req, const char *data, size_t len)
{
    if (!req->job)
        return;
    size_t room = req->job->payload_len - req->body_got;
    if (len > room)
        len = room;   /* llhttp enforces Content-Length; this only guards the copy */
    memcpy(req->job->payload + req->body_got, data, len);
    req->body_got += len;
}

/* ---------------------------------------------------------------- store results */

/* Answers 503 if result is a store failure (what the store found is in op->answer, never here);
 * any other result means the store works again. srv->store_failing holds the errno last
 * logged: one line per outage and cause, not one per request, so every 503 has its cause in
 * the log. */
static int store_failed(fl_req *req, int result)
{
    fl_server *srv = req->srv;
    if (result >= 0) {
        if (srv->store_failing) {
            srv->store_failing = 0;
            fl_log(LOG_INFO, "store: writing again");
        }
        return 0;
    }
    srv->metrics.store_errors++;
    if (srv->store_failing != result) {
        srv->store_failing = result;
        fl_log(LOG_ERR, "store: %s; answering 503 until it recovers", strerror(-result));
    }
    fl_http_error(req, 503, "store_unavailable", "the job store failed: %s", strerror(-result));
    return 1;
}

/* ---------------------------------------------------------------- attached mode */

/* The usual 202 of a submit: the job is committed and will run. */
static void reply_accepted(fl_req *req, int64_t id, fl_state state)
{
    char body[160], loc[64 + FL_ID_MAX];
    snprintf(loc, sizeof loc, "Location: %s/%lld\r\n", FL_PROTO_JOBS_PATH, (long long)id);
    int n = snprintf(body, sizeof body, "{\"id\":\"%lld\",\"state\":\"%s\"}", (long long)id,
                     fl_proto_state_name(state));
    reply(req, 202, "application/json", loc, body, (size_t)n);
    if (req->resp_status == 202)
        req->ack_id = id;
    if (!req->conn && req->ack_id) {
        fl_http_abort_ack(req->srv, req->ack_id);
        req->ack_id = 0;
    }
}

static void wait_end(fl_req *req)
{
    fl_server *srv = req->srv;
    ev_timer_stop(srv->loop, &req->wait_timer);
    if (req->w_prev)
        req->w_prev->w_next = req->w_next;
    else
        srv->waiters = req->w_next;
    if (req->w_next)
        req->w_next->w_prev = req->w_prev;
    req->w_prev = req->w_next = NULL;
    req->waiting = 0;
}

/* The wait ran out (or the daemon stops): the usual 202, judged for delivery as always. */
static void wait_expired(fl_req *req)
{
    wait_end(req);
    reply_accepted(req, req->id, req->last_state);
    fl_conn_reply_ready(req);
}

static void wait_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    wait_expired(w->data);
}

static void gone_cancel_done(fl_store_op *op)
{
    fl_server *srv = op->udata;
    int64_t id = op->u.cancel.id;
    if (op->result == 0 && op->answer == FL_STORE_RUNNING) {
        /* Running: stopped, then it ends cancelled. Not running here means its attempt is
         * ending right now (its outcome is being recorded): it ends as that outcome says. */
        if (fl_sched_cancel(srv->sched, id) < 0)
            fl_log(LOG_INFO, "job %lld: its attempt was already ending; not cancelled", (long long)id);
    } else if (op->result < 0) {
        fl_log(LOG_WARNING, "job %lld: could not cancel it for its departed client: %s", (long long)id,
               strerror(-op->result));
    }
    fl_job_free(op->u.cancel.job);
    free(op);
}

/* The client of a waiting submit left: the job goes on marked ABORTED, or is cancelled
 * (Fling-On-Disconnect: cancel) — PHP's ignore_user_abort, chosen per request. The status bit
 * is pushed first, so the cancelled row and its abort callback carry it. */
static void apply_gone_policy(fl_server *srv, int64_t id, int cancel)
{
    fl_http_abort_ack(srv, id);
    if (!cancel)
        return;
    fl_log(LOG_INFO, "job %lld: its waiting client left; cancelling it (%s: cancel)", (long long)id,
           FL_HDR_ON_DISCONNECT);
    fl_store_op *op = calloc(1, sizeof *op);
    if (!op) {
        fl_log(LOG_WARNING, "job %lld: out of memory cancelling it for its departed client", (long long)id);
        return;
    }
    fl_store_cancel(srv->store, op, id, fl_job_now_ms(), gone_cancel_done, srv);
}

/* The client of an attached submit left: apply its choice, and answer 202 (then close) on a
 * connection that is still there, or free the request of one that is gone. */
static void client_left(fl_req *req)
{
    apply_gone_policy(req->srv, req->id, req->cancel_on_gone);
    if (!req->conn) {
        fl_req_free(req);
        return;
    }
    req->close_after = 1;
    reply_accepted(req, req->id, req->last_state);
    req->ack_id = 0;   /* already marked ABORTED above */
    fl_conn_reply_ready(req);
}

/* A committed submit with Prefer: wait: hold the reply until the job ends or the time runs out. */
static void wait_begin(fl_req *req, const fl_job *job)
{
    fl_server *srv = req->srv;
    req->id = job->id;
    req->last_state = job->state;
    if (!req->conn || fl_conn_peer_closed(req->conn)) {
        client_left(req);
        return;
    }
    if (srv->stopping) {   /* no waiting through a graceful stop */
        reply_accepted(req, job->id, job->state);
        fl_conn_reply_ready(req);
        return;
    }
    req->waiting = 1;
    req->w_next = srv->waiters;
    if (srv->waiters)
        srv->waiters->w_prev = req;
    srv->waiters = req;
    ev_timer_init(&req->wait_timer, wait_timer_cb, req->wait_secs, 0.);
    req->wait_timer.data = req;
    ev_timer_start(srv->loop, &req->wait_timer);
    fl_conn_reply_ready(req);   /* no reply yet: the connection keeps watching for the client leaving */
}

void fl_http_job_changed(fl_server *srv, const fl_job *job)
{
    for (fl_req *req = srv->waiters, *next; req; req = next) {
        next = req->w_next;
        if (req->id != job->id)
            continue;
        req->last_state = job->state;
        if (!fl_proto_state_terminal(job->state))
            continue;
        wait_end(req);
        char extra[160];
        snprintf(extra, sizeof extra, "Location: %s/%lld\r\n%s: wait=%d\r\n", FL_PROTO_JOBS_PATH,
                 (long long)job->id, FL_HDR_PREF_APPLIED, req->wait_secs);
        reply_json(req, 200, fl_job_to_json(job), extra);
        fl_conn_reply_ready(req);
    }
}

void fl_http_client_gone(fl_req *req)
{
    if (!req->waiting)
        return;
    wait_end(req);
    client_left(req);
}

void fl_http_stop_waiters(fl_server *srv)
{
    while (srv->waiters)
        wait_expired(srv->waiters);
}

static void submit_done(fl_store_op *op)
{
    fl_req *req = op->udata;
    fl_server *srv = req->srv;
    /* The job is ours from here: wait_begin may answer and free req (a client that already
     * left), so req must not own it, nor be touched after that call. */
    fl_job *job = req->job;
    req->job = NULL;
    if (!store_failed(req, op->result)) {
        char id[FL_ID_MAX], loc[64 + FL_ID_MAX], body[160];
        snprintf(id, sizeof id, "%lld", (long long)job->id);
        snprintf(loc, sizeof loc, "Location: %s/%s\r\n", FL_PROTO_JOBS_PATH, id);
        int n;
        if (op->answer == FL_STORE_DUPLICATE) {
            srv->metrics.jobs_duplicate++;
            n = snprintf(body, sizeof body, "{\"id\":\"%s\",\"state\":\"%s\",\"duplicate\":true}", id,
                         fl_proto_state_name(job->state));
            reply(req, 200, "application/json", loc, body, (size_t)n);
        } else {
            srv->metrics.jobs_submitted++;
            fl_sched_committed(srv->sched, job);
            if (req->wait_secs > 0) {
                wait_begin(req, job);
                fl_job_free(job);
                return;
            }
            reply_accepted(req, job->id, job->state);
        }
    }
    fl_job_free(job);
    fl_conn_reply_ready(req);
}

/* The callback deliveries of a job, for GET /v1/jobs/{id}. */
static json_t *deliveries_json(fl_delivery *const *d, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        char id[FL_ID_MAX], at[FL_JOB_TIME_MAX], next[FL_JOB_TIME_MAX];
        snprintf(id, sizeof id, "%lld", (long long)d[i]->id);
        fl_job_time_format(d[i]->last_at, at);
        fl_job_time_format(d[i]->state == FL_DELIVERY_PENDING ? d[i]->next_at : 0, next);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:o, s:o, s:o, s:o}", "id", id,
                              "event", d[i]->abort ? "abort" : "complete", "target", d[i]->target,
                              "state", fl_store_delivery_state_name(d[i]->state), "attempts", d[i]->attempts,
                              "last_status", d[i]->has_last_status ? json_integer(d[i]->last_status) : json_null(),
                              "last_error", d[i]->last_error ? json_string(d[i]->last_error) : json_null(),
                              "last_attempt_at", *at ? json_string(at) : json_null(),
                              "next_attempt_at", *next ? json_string(next) : json_null());
        if (!o || json_array_append_new(arr, o) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* A job as GET shows it: its JSON plus its callback deliveries. */
static json_t *job_with_deliveries(const fl_store_op *op)
{
    json_t *o = fl_job_to_json(op->u.get.job);
    json_t *d = o ? deliveries_json(op->u.get.deliveries, op->u.get.n_deliveries) : NULL;
    if (!d || json_object_set_new(o, "callbacks", d) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static void get_done(fl_store_op *op)
{
    fl_req *req = op->udata;
    fl_job *job = req->route == FL_ROUTE_GET ? op->u.get.job : op->u.cancel.job;
    if (store_failed(req, op->result)) {
        /* the error reply is set */
    } else if (op->answer == FL_STORE_NOT_FOUND) {
        fl_http_error(req, 404, "not_found", "no job %lld", (long long)req->id);
    } else if (op->answer == FL_STORE_RUNNING && fl_sched_cancel(req->srv->sched, req->id) == 0) {
        /* Running: it is being stopped and will end cancelled. */
        reply_json(req, 202, fl_job_to_json(job), NULL);
    } else if (op->answer == FL_STORE_ENDED || op->answer == FL_STORE_RUNNING) {
        fl_http_error(req, 409, "not_cancellable", "job %lld is %s", (long long)req->id,
                      job ? fl_proto_state_name(job->state) : "finished");
    } else {
        reply_json(req, 200, req->route == FL_ROUTE_GET ? job_with_deliveries(op) : fl_job_to_json(job), NULL);
    }
    if (req->route == FL_ROUTE_GET)
        fl_store_deliveries_free(op->u.get.deliveries, op->u.get.n_deliveries);
    fl_job_free(job);
    fl_conn_reply_ready(req);
}

static void list_done(fl_store_op *op)
{
    fl_req *req = op->udata;
    if (!store_failed(req, op->result)) {
        json_t *arr = json_array();
        int ok = arr != NULL;
        for (size_t i = 0; ok && i < op->u.list.n; i++)
            ok = json_array_append_new(arr, fl_job_to_json(op->u.list.jobs[i])) == 0;
        json_t *next = json_null();
        if (op->u.list.next) {
            char cur[FL_ID_MAX];
            snprintf(cur, sizeof cur, "%lld", (long long)op->u.list.next);
            next = json_string(cur);
        }
        json_t *o = ok ? json_pack("{s:o, s:o}", "jobs", arr, "next", next) : NULL;
        if (!o) {
            json_decref(arr);
            json_decref(next);
        }
        reply_json(req, 200, o, NULL);
    }
    fl_store_list_free(op->u.list.jobs, op->u.list.n);
    fl_conn_reply_ready(req);
}

static void reply_health(fl_req *req)
{
    fl_server *srv = req->srv;
    json_t *o = json_pack("{s:s, s:i, s:i}", "status", srv->stopping ? "stopping" : "ok",
                          "connections", (json_int_t)srv->n_conns,
                          "store_pending", (json_int_t)fl_store_pending(srv->store));
    reply_json(req, srv->stopping ? 503 : 200, o, NULL);
}

/* /metrics asks the store for the queue depth first, then renders everything at once. */
static void metrics_done(fl_store_op *op)
{
    fl_req *req = op->udata;
    fl_server *srv = req->srv;
    fl_store_stats st;
    fl_store_stats_get(srv->store, &st);
    fl_sched_stats ss;
    fl_sched_stats_get(srv->sched, &ss);
    fl_metrics_gauges g = {
        .connections_open = srv->n_conns, .store_pending = fl_store_pending(srv->store),
        .store_commits = st.commits, .store_ops = st.ops, .store_failed_commits = st.failed_commits,
        .jobs_running = ss.running, .attempts = ss.attempts, .succeeded = ss.succeeded, .failed = ss.failed,
        .cancelled = ss.cancelled, .retried = ss.retried, .timed_out = ss.timed_out, .requeued = ss.requeued,
    };
    if (srv->mirror) {
        fl_mirror_stats ms;
        fl_mirror_stats_get(srv->mirror, &ms);
        g.has_redis = 1;
        g.redis_connected = ms.connected;
        g.redis_lag_seconds = ms.lag_seconds;
        g.redis_errors = ms.errors;
        g.redis_dropped = ms.dropped;
        g.redis_writes = ms.writes;
    }
    if (srv->callbacks) {
        fl_callbacks_stats cs;
        fl_callbacks_stats_get(srv->callbacks, &cs);
        g.cb_delivered = cs.delivered;
        g.cb_retried = cs.retried;
        g.cb_failed = cs.failed;
        g.cb_in_flight = cs.in_flight;
    }
    size_t n = srv->cfg->n_types;
    fl_metrics_type *types = calloc(n ? n : 1, sizeof *types);
    char *text = NULL;
    size_t len = 0;
    if (types) {
        fl_sched_type_metrics(srv->sched, types);
        for (size_t i = 0; op->result == 0 && i < op->u.count.n; i++) {
            const fl_store_count *c = &op->u.count.rows[i];
            for (size_t k = 0; k < n; k++) {
                if (strcmp(types[k].name, c->type) != 0)
                    continue;
                if (c->state == FL_STATE_QUEUED)
                    types[k].queued = c->n;
                else if (c->state == FL_STATE_SCHEDULED)
                    types[k].scheduled = c->n;
            }
        }
        text = fl_metrics_render(&srv->metrics, &g, types, n, &len);
    }
    free(types);
    free(op->u.count.rows);
    if (!text)
        fl_http_error(req, 503, "out_of_memory", "the server is out of memory");
    else
        reply(req, 200, "text/plain; version=0.0.4", NULL, text, len);
    free(text);
    fl_conn_reply_ready(req);
}

void fl_http_complete(fl_req *req)
{
    if (req->resp) {   /* an error prepared at the head */
        fl_conn_reply_ready(req);
        return;
    }
    switch (req->route) {
    case FL_ROUTE_SUBMIT:
        fl_store_submit(req->srv->store, &req->op, req->job, submit_done, req);
        return;
    case FL_ROUTE_GET:
        fl_store_get(req->srv->store, &req->op, req->id, get_done, req);
        return;
    case FL_ROUTE_CANCEL:
        fl_store_cancel(req->srv->store, &req->op, req->id, fl_job_now_ms(), get_done, req);
        return;
    case FL_ROUTE_LIST:
        fl_store_list(req->srv->store, &req->op, &req->list_query, list_done, req);
        return;
    case FL_ROUTE_HEALTH:
        reply_health(req);
        break;
    case FL_ROUTE_METRICS:
        fl_store_count_jobs(req->srv->store, &req->op, 0, metrics_done, req);
        return;
    case FL_ROUTE_NONE:
        fl_http_error(req, 404, "not_found", "no such route");
        break;
    }
    fl_conn_reply_ready(req);
}

/* ---------------------------------------------------------------- ABORTED */

/* An ABORTED bit on its way to the store, listed until committed (fl_http_status_pending). */
struct fl_http_abort {
    fl_store_op op;
    fl_server *srv;
    struct fl_http_abort *prev, *next;
};

static void abort_done(fl_store_op *op)
{
    struct fl_http_abort *a = (struct fl_http_abort *)op;
    fl_server *srv = a->srv;
    if (a->prev)
        a->prev->next = a->next;
    else
        srv->aborts = a->next;
    if (a->next)
        a->next->prev = a->prev;
    if (op->result < 0)
        fl_log(LOG_WARNING, "job %lld: could not record status ABORTED: %s", (long long)op->u.set_status.id,
               strerror(-op->result));
    fl_job_free(op->u.set_status.job);
    free(a);
}

void fl_http_abort_ack(fl_server *srv, int64_t id)
{
    srv->metrics.acks_aborted++;
    struct fl_http_abort *a = calloc(1, sizeof *a);
    if (!a) {
        fl_log(LOG_WARNING, "job %lld: out of memory recording status ABORTED", (long long)id);
        return;
    }
    a->srv = srv;
    a->next = srv->aborts;
    if (srv->aborts)
        srv->aborts->prev = a;
    srv->aborts = a;
    fl_store_set_status(srv->store, &a->op, id, FL_STATUS_ABORTED, abort_done, a);
}

int fl_http_status_pending(fl_server *srv, int64_t id)
{
    /* Connections first: settling an ack there may push the bit onto srv->aborts. */
    for (fl_conn *c = srv->conns; c; c = fl_conn_next(c))
        if (fl_conn_ack_pending(c, id))
            return 1;
    for (const struct fl_http_abort *a = srv->aborts; a; a = a->next)
        if (a->op.u.set_status.id == id)
            return 1;
    return 0;
}

void fl_req_free(fl_req *req)
{
    if (!req)
        return;
    fl_job_free(req->job);
    free(req->resp);
    free(req);
}
