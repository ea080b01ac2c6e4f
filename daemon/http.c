/* http.c — routes of the HTTP API v1, their auth and validation, and the store operation behind
 * each (see http.h). No socket I/O and no reply bytes here: reply.c writes them, the
 * connection sends them. */
#include "http.h"

#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "reply.h"
#include "sse.h"
#include "ui.h"

/* A submit's Content-Type is kept for GET /v1/jobs/{id}/payload up to this many bytes. */
#define FL_CONTENT_TYPE_MAX 255
#define FL_LIST_DEFAULT 50
#define FL_LIST_MAX 1000

struct fl_http {
    fl_http_env env;
    const fl_config *cfg;        /* env.cfg */
    int store_failing;           /* the errno of the last store failure logged; 0 = working */
    int stopping;
};

int fl_http_new(fl_http **out, const fl_http_env *env)
{
    fl_http *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    h->env = *env;
    h->cfg = env->cfg;
    *out = h;
    return 0;
}

void fl_http_stop(fl_http *h) { h->stopping = 1; }

void fl_http_free(fl_http *h) { free(h); }

/* ---------------------------------------------------------------- request head */

static int path_is(const char *p, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(p, want, len) == 0;
}

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

/* open_route tells whether h is a GET of a route the config leaves open to everyone
 * ([server] open_health, open_metrics: for load balancers and Prometheus). */
static int open_route(const fl_config *cfg, const fl_http_head *h)
{
    const char *qm = memchr(h->url, '?', h->url_len);
    size_t plen = qm ? (size_t)(qm - h->url) : h->url_len;
    return h->method == HTTP_GET && ((cfg->open_health && path_is(h->url, plen, FL_PROTO_HEALTH_PATH)) ||
                                     (cfg->open_metrics && path_is(h->url, plen, FL_PROTO_METRICS_PATH)));
}

static int authorized(const fl_req *req, const fl_http_head *h)
{
    const char *token = req->http->cfg->token;
    if (!token || open_route(req->http->cfg, h))
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
    if (h->chunked || h->content_length > req->http->cfg->max_payload) {
        a = FL_BODY_REFUSE;
        req->close_after = 1;
    }
    fl_reply_error(req, status, code, "%s", msg);
    return a;
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

/* The submit's Content-Type, if it has one fit to be sent back (visible ASCII and spaces, at
 * most FL_CONTENT_TYPE_MAX bytes): 1 and *ct, 0 if absent, -EINVAL if unfit. */
static int content_type(const fl_http_head *h, const fl_http_header **ct)
{
    *ct = find_header(h, "Content-Type");
    if (!*ct)
        return 0;
    if ((*ct)->value_len == 0 || (*ct)->value_len > FL_CONTENT_TYPE_MAX)
        return -EINVAL;
    for (size_t i = 0; i < (*ct)->value_len; i++)
        if ((unsigned char)(*ct)->value[i] < 0x20 || (unsigned char)(*ct)->value[i] > 0x7e)
            return -EINVAL;
    return 1;
}

/* The submit's W3C trace context: *tp a valid traceparent or NULL (an invalid one is ignored,
 * as the spec says, and its tracestate with it), *ts a tracestate fit to be sent on or NULL. */
static void trace_context(const fl_http_head *h, const fl_http_header **tp, const fl_http_header **ts)
{
    *tp = find_header(h, FL_HDR_TRACEPARENT);
    *ts = NULL;
    if (*tp && !fl_proto_traceparent_valid((*tp)->value, (*tp)->value_len))
        *tp = NULL;
    if (*tp)
        *ts = find_header(h, FL_HDR_TRACESTATE);
    if (*ts && !fl_proto_tracestate_valid((*ts)->value, (*ts)->value_len))
        *ts = NULL;
}

/* Copies option header values into the job allocation and sets its fields. */
static fl_body_action start_submit(fl_req *req, const fl_http_head *h, const char *type, size_t type_len)
{
    const fl_config *cfg = req->http->cfg;
    char msg[160];
    if (h->chunked) {
        req->close_after = 1;
        fl_reply_error(req, 411, "length_required", "Content-Length required; chunked bodies are not accepted");
        return FL_BODY_REFUSE;
    }
    if (h->content_length > cfg->max_payload) {
        snprintf(msg, sizeof msg, "payload of %llu bytes exceeds max_payload %zu",
                 (unsigned long long)h->content_length, cfg->max_payload);
        req->close_after = 1;
        fl_reply_error(req, 413, "payload_too_large", "%s", msg);
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
    const fl_http_header *ct, *tp, *ts;
    int has_ct = content_type(h, &ct);
    trace_context(h, &tp, &ts);
    if (has_ct < 0)
        return head_error(req, h, 400, "bad_header", "Content-Type must be 1 to 255 visible ASCII characters");
    fl_job_sizes sz = {
        .type = type_len,
        .callback = o.callback ? o.callback_len : FL_JOB_ABSENT,
        .idem_key = o.idem_key ? o.idem_key_len : FL_JOB_ABSENT,
        .error = FL_JOB_ABSENT, .output = FL_JOB_ABSENT,
        .payload = (size_t)h->content_length, .previous_error = FL_JOB_ABSENT,
        .content_type = has_ct ? ct->value_len : FL_JOB_ABSENT,
        .traceparent = tp ? tp->value_len : FL_JOB_ABSENT, .tracestate = ts ? ts->value_len : FL_JOB_ABSENT,
    };
    fl_job *job = fl_job_new(&sz);
    if (!job) {
        req->close_after = 1;
        fl_reply_error(req, 503, "out_of_memory", "the server is out of memory");
        return FL_BODY_REFUSE;
    }
    memcpy(job->type, type, type_len);
    if (o.callback)
        memcpy(job->callback, o.callback, o.callback_len);
    if (o.idem_key)
        memcpy(job->idem_key, o.idem_key, o.idem_key_len);
    if (has_ct)
        memcpy(job->content_type, ct->value, ct->value_len);
    if (tp)
        memcpy(job->traceparent, tp->value, tp->value_len);
    if (ts)
        memcpy(job->tracestate, ts->value, ts->value_len);
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
    if (h->chunked || h->content_length > req->http->cfg->max_payload) {
        req->close_after = 1;
        fl_reply_error(req, 413, "payload_too_large", "this route takes no body");
        return FL_BODY_REFUSE;
    }
    return FL_BODY_DISCARD;
}

/* GET /v1/events: the filters and the resume point, read here; the stream is sse.c's. */
static fl_body_action start_events(fl_req *req, const fl_http_head *h, const char *q, size_t qlen)
{
    char type[FL_TYPE_NAME_MAX + 1] = "", states[128] = "", msg[160];
    req->route = FL_ROUTE_EVENTS;
    if (h->method != HTTP_GET)
        return head_error(req, h, 405, "method_not_allowed", "use GET " FL_PROTO_EVENTS_PATH);
    if (query_param(q, qlen, "type", type, sizeof type) < 0 || query_param(q, qlen, "state", states, sizeof states) < 0)
        return head_error(req, h, 400, "bad_request", "type and state must be well-formed and short");
    const fl_http_header *last = find_header(h, "Last-Event-ID");
    int rc = fl_sse_prepare(req, type, states, last ? last->value : NULL, last ? last->value_len : 0, msg, sizeof msg);
    if (rc < 0)
        return head_error(req, h, rc == -ENOMEM ? 503 : 400, rc == -ENOMEM ? "out_of_memory" : "bad_request", msg);
    return no_body(req, h, FL_ROUTE_EVENTS);
}

/* GET /ui: the dashboard's files go without the token (they hold no data; the page sends the
 * token with each API call it makes). */
static fl_body_action start_ui(fl_req *req, const fl_http_head *h, const fl_ui_file *f)
{
    fl_reply(req, 200, f->ctype, FL_UI_HEADERS, f->data, f->len);
    return no_body(req, h, FL_ROUTE_UI);
}

/* A route under one job, /v1/jobs/{id}/{action} (seg is "{id}/{action}", slash its '/'). */
static fl_body_action start_job_action(fl_req *req, const fl_http_head *h, const char *seg, size_t slen,
                                       const char *slash)
{
    const char *action = slash + 1;
    size_t alen = slen - (size_t)(action - seg);
    int payload = path_is(action, alen, "payload");
    if (!payload && !path_is(action, alen, "retry"))
        return head_error(req, h, 404, "not_found", "no such route");
    req->route = payload ? FL_ROUTE_PAYLOAD : FL_ROUTE_RETRY;
    if (h->method != (payload ? HTTP_GET : HTTP_POST))
        return head_error(req, h, 405, "method_not_allowed",
                          payload ? "use GET /v1/jobs/{id}/payload" : "use POST /v1/jobs/{id}/retry");
    if (fl_proto_parse_id(seg, (size_t)(slash - seg), &req->id) < 0)
        return head_error(req, h, 404, "not_found", "no such job");
    return no_body(req, h, req->route);
}

/* POST /v1/prune?older_than=DURATION (seconds, or with s, m, h, d). */
static fl_body_action start_prune(fl_req *req, const fl_http_head *h, const char *q, size_t qlen)
{
    char v[32];
    int64_t secs;
    req->route = FL_ROUTE_PRUNE;
    if (h->method != HTTP_POST)
        return head_error(req, h, 405, "method_not_allowed", "use POST /v1/prune?older_than=SECONDS");
    if (query_param(q, qlen, "older_than", v, sizeof v) != 1 || fl_proto_parse_duration(v, strlen(v), &secs) < 0)
        return head_error(req, h, 400, "bad_request",
                          "older_than must be a duration: seconds, or a number with s, m, h or d");
    req->prune_before = fl_job_now_ms() - secs * 1000;
    return no_body(req, h, FL_ROUTE_PRUNE);
}

/* GET /v1/types, POST /v1/types/{type}/pause and /resume (path is under FL_PROTO_TYPES_PATH). */
static fl_body_action start_types(fl_req *req, const fl_http_head *h, const char *path, size_t plen)
{
    static const char base[] = FL_PROTO_TYPES_PATH;
    const char *seg = path + sizeof base - 1, *slash;
    size_t slen = plen - (sizeof base - 1);

    req->route = FL_ROUTE_TYPES;
    if (slen == 0 || (slen == 1 && *seg == '/')) {
        if (h->method != HTTP_GET)
            return head_error(req, h, 405, "method_not_allowed", "use GET /v1/types");
        return no_body(req, h, FL_ROUTE_TYPES);
    }
    seg++;
    slen--;
    slash = memchr(seg, '/', slen);
    size_t tlen = slash ? (size_t)(slash - seg) : slen;
    const char *action = slash ? slash + 1 : "";
    size_t alen = slash ? slen - tlen - 1 : 0;
    int pause = path_is(action, alen, "pause");
    if (!pause && !path_is(action, alen, "resume"))
        return head_error(req, h, 404, "not_found", "no such route");
    req->route = FL_ROUTE_PAUSE;
    if (h->method != HTTP_POST)
        return head_error(req, h, 405, "method_not_allowed", "use POST /v1/types/{type}/pause or /resume");
    if (!fl_config_find_type(req->http->cfg, seg, tlen) || tlen >= sizeof req->list_type)
        return head_error(req, h, 404, "unknown_type", "no such job type");
    memcpy(req->list_type, seg, tlen);
    req->list_type[tlen] = '\0';
    req->pause = pause;
    return no_body(req, h, FL_ROUTE_PAUSE);
}

fl_body_action fl_http_start(fl_http *http, fl_req *req, const fl_http_head *h)
{
    req->http = http;
    const char *path = h->url;
    const char *qm = memchr(h->url, '?', h->url_len);
    size_t plen = qm ? (size_t)(qm - path) : h->url_len;
    const char *q = qm ? qm + 1 : "";
    size_t qlen = qm ? h->url_len - plen - 1 : 0;
    static const char jobs[] = FL_PROTO_JOBS_PATH "/";
    size_t jl = sizeof jobs - 1;
    const fl_ui_file *ui = h->method == HTTP_GET ? fl_ui_find(path, plen) : NULL;
    if (ui)
        return start_ui(req, h, ui);
    if (!authorized(req, h))
        return head_error(req, h, 401, "unauthorized", "missing or wrong bearer token");

    if (plen > jl && memcmp(path, jobs, jl) == 0) {
        const char *seg = path + jl;
        size_t slen = plen - jl;
        const char *slash = memchr(seg, '/', slen);   /* a type name has none */
        if (slash)
            return start_job_action(req, h, seg, slen, slash);
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
    if (path_is(path, plen, FL_PROTO_EVENTS_PATH))
        return start_events(req, h, q, qlen);
    if (plen >= sizeof FL_PROTO_TYPES_PATH - 1 && memcmp(path, FL_PROTO_TYPES_PATH, sizeof FL_PROTO_TYPES_PATH - 1) == 0 &&
        (plen == sizeof FL_PROTO_TYPES_PATH - 1 || path[sizeof FL_PROTO_TYPES_PATH - 1] == '/'))
        return start_types(req, h, path, plen);
    if (path_is(path, plen, FL_PROTO_PRUNE_PATH))
        return start_prune(req, h, q, qlen);
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
 * any other result means the store works again. store_failing holds the errno last logged:
 * one line per outage and cause, not one per request, so every 503 has its cause in the log. */
static int store_failed(fl_req *req, int result)
{
    fl_http *h = req->http;
    if (result >= 0) {
        if (h->store_failing) {
            h->store_failing = 0;
            fl_log(LOG_INFO, "store: writing again");
        }
        return 0;
    }
    h->env.metrics->store_errors++;
    if (h->store_failing != result) {
        h->store_failing = result;
        fl_log(LOG_ERR, "store: %s; answering 503 until it recovers", strerror(-result));
    }
    fl_reply_error(req, 503, "store_unavailable", "the job store failed: %s", strerror(-result));
    return 1;
}

static void submit_done(fl_store_op *op)
{
    fl_req *req = op->udata;
    fl_http *h = req->http;
    /* The job is ours from here: fl_wait_begin may answer and free req (a client that already
     * left), so req must not own it, nor be touched after that call. */
    fl_job *job = req->job;
    req->job = NULL;
    if (!store_failed(req, op->result)) {
        if (op->answer == FL_STORE_DUPLICATE) {
            h->env.metrics->jobs_duplicate++;
            fl_reply_duplicate(req, job->id, job->state);
        } else {
            h->env.metrics->jobs_submitted++;
            if (req->wait_secs > 0) {
                fl_wait_begin(h->env.wait, req, job);
                fl_job_free(job);
                return;
            }
            fl_reply_accepted(req, job->id, job->state);
        }
    }
    fl_job_free(job);
    req->ready(req);
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
    if (store_failed(req, op->result)) {
        /* the error reply is set */
    } else if (op->answer == FL_STORE_NOT_FOUND) {
        fl_reply_error(req, 404, "not_found", "no job %lld", (long long)req->id);
    } else {
        fl_reply_json(req, 200, job_with_deliveries(op), NULL);
    }
    fl_store_deliveries_free(op->u.get.deliveries, op->u.get.n_deliveries);
    fl_job_free(op->u.get.job);
    req->ready(req);
}

static void cancel_done(fl_store_op *op)
{
    fl_req *req = op->udata;
    fl_job *job = op->u.cancel.job;
    fl_cancel_result r = store_failed(req, op->result) ? FL_CANCEL_FAILED : fl_cancel_settle(req->http->env.cancel, op);
    switch (r) {
    case FL_CANCEL_FAILED:     /* the 503 is set */
        break;
    case FL_CANCEL_NOT_FOUND:
        fl_reply_error(req, 404, "not_found", "no job %lld", (long long)req->id);
        break;
    case FL_CANCEL_STOPPING:   /* running: it is being stopped and will end cancelled */
        fl_reply_json(req, 202, fl_job_to_json(job), NULL);
        break;
    case FL_CANCEL_ENDED:
        fl_reply_error(req, 409, "not_cancellable", "job %lld is %s", (long long)req->id,
                       job ? fl_proto_state_name(job->state) : "finished");
        break;
    case FL_CANCEL_DONE:
        fl_reply_json(req, 200, fl_job_to_json(job), NULL);
        break;
    }
    fl_job_free(job);
    req->ready(req);
}

/* GET /v1/jobs/{id}/payload: the stored bytes, typed as the submit typed them. */
static void payload_done(fl_store_op *op)
{
    fl_req *req = op->udata;
    const fl_job *job = op->u.get.job;
    if (store_failed(req, op->result)) {
        /* the 503 is set */
    } else if (op->answer == FL_STORE_NOT_FOUND) {
        fl_reply_error(req, 404, "not_found", "no job %lld", (long long)req->id);
    } else {
        /* nosniff: a browser must not run a payload typed as something harmless */
        fl_reply(req, 200, job->content_type ? job->content_type : "application/octet-stream",
                 "X-Content-Type-Options: nosniff\r\n", (const char *)job->payload, job->payload_len);
    }
    fl_job_free(op->u.get.job);
    req->ready(req);
}

/* One batch of POST /v1/prune is done: the next one, or the answer once a batch was short. */
static void prune_done(fl_store_op *op)
{
    fl_req *req = op->udata;
    fl_http *h = req->http;
    if (store_failed(req, op->result)) {
        req->ready(req);
        return;
    }
    req->pruned += op->u.prune.n;
    h->env.metrics->jobs_pruned += op->u.prune.n;
    if (op->u.prune.n == FL_STORE_PRUNE_BATCH) {
        fl_store_prune(h->env.store, &req->op, req->prune_before, FL_STORE_PRUNE_BATCH, prune_done, req);
        return;
    }
    fl_reply_json(req, 200, json_pack("{s:I}", "pruned", (json_int_t)req->pruned), NULL);
    req->ready(req);
}

static void retry_done(fl_store_op *op)
{
    fl_req *req = op->udata;
    fl_job *job = op->u.retry.job;
    if (store_failed(req, op->result)) {
        /* the 503 is set */
    } else if (op->answer == FL_STORE_NOT_FOUND) {
        fl_reply_error(req, 404, "not_found", "no job %lld", (long long)req->id);
    } else if (op->answer == FL_STORE_WRONG_STATE) {
        fl_reply_error(req, 409, "not_retryable", "job %lld is %s; only a failed or cancelled job can be retried",
                       (long long)req->id, fl_proto_state_name(job->state));
    } else {
        fl_reply_json(req, 200, fl_job_to_json(job), NULL);
    }
    fl_job_free(job);
    req->ready(req);
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
        fl_reply_json(req, 200, o, NULL);
    }
    fl_store_list_free(op->u.list.jobs, op->u.list.n);
    req->ready(req);
}

/* /metrics asks the store for the queue depth first, then renders everything at once. */
static void metrics_done(fl_store_op *op)
{
    fl_req *req = op->udata;
    size_t len = 0;
    char *text = fl_stats_render(req->http->env.stats, op->result == 0 ? op->u.count.rows : NULL,
                                 op->result == 0 ? op->u.count.n : 0, &len);
    free(op->u.count.rows);
    if (!text)
        fl_reply_error(req, 503, "out_of_memory", "the server is out of memory");
    else
        fl_reply(req, 200, "text/plain; version=0.0.4", NULL, text, len);
    free(text);
    req->ready(req);
}

/* One configured type as /v1/types shows it: its settings, paused flag and jobs by state. */
static json_t *type_json(fl_http *h, const fl_type *t, const fl_store_count *rows, size_t n)
{
    json_t *counts = json_object();
    for (int st = 0; counts && st < FL_STATE_COUNT; st++) {
        json_int_t c = 0;
        for (size_t i = 0; i < n; i++)
            if (rows[i].state == (fl_state)st && strcmp(rows[i].type, t->name) == 0)
                c += rows[i].n;
        if (json_object_set_new(counts, fl_proto_state_name((fl_state)st), json_integer(c)) < 0) {
            json_decref(counts);
            counts = NULL;
        }
    }
    if (!counts)
        return NULL;
    return json_pack("{s:s, s:s, s:i, s:b, s:o}", "name", t->name, "handler", fl_config_handler_name(t->handler),
                     "concurrency", t->concurrency, "paused", fl_sched_paused(h->env.sched, t->name) == 1,
                     "counts", counts);
}

/* After the counts: GET /v1/types lists every type, a pause or resume shows its own. */
static void types_done(fl_store_op *op)
{
    fl_req *req = op->udata;
    fl_http *h = req->http;
    const fl_config *cfg = h->cfg;
    if (!store_failed(req, op->result)) {
        json_t *o = NULL;
        if (req->route == FL_ROUTE_PAUSE) {
            o = type_json(h, fl_config_find_type(cfg, req->list_type, strlen(req->list_type)),
                          op->u.count.rows, op->u.count.n);
        } else {
            json_t *arr = json_array();
            for (size_t i = 0; arr && i < cfg->n_types; i++)
                if (json_array_append_new(arr, type_json(h, &cfg->types[i], op->u.count.rows, op->u.count.n)) < 0) {
                    json_decref(arr);
                    arr = NULL;
                }
            o = arr ? json_pack("{s:o}", "types", arr) : NULL;
        }
        fl_reply_json(req, 200, o, NULL);
    }
    free(op->u.count.rows);
    req->ready(req);
}

/* The pause or resume is committed: the scheduler follows it, then the reply shows the type. */
static void pause_done(fl_store_op *op)
{
    fl_req *req = op->udata;
    free(op->u.pause.types);
    if (store_failed(req, op->result)) {
        req->ready(req);
        return;
    }
    fl_sched_set_paused(req->http->env.sched, req->list_type, req->pause);
    fl_store_count_committed(req->http->env.store, &req->op, 1, types_done, req);
}

/* 200 while flingd takes jobs; 503 while it stops or while the store's writes fail. */
static void reply_health(fl_req *req)
{
    fl_http *h = req->http;
    fl_stats_health hs;
    fl_stats_health_get(h->env.stats, &hs);
    const char *status = h->stopping ? "stopping" : hs.store_error ? "store_failing" : "ok";
    json_t *o = json_pack("{s:s, s:i, s:i, s:s, s:s}", "status", status,
                          "connections", (json_int_t)h->env.metrics->connections_open,
                          "store_pending", (json_int_t)fl_store_pending(h->env.store),
                          "store", hs.store_error ? strerror(-hs.store_error) : "ok",
                          "redis", hs.redis < 0 ? "off" : hs.redis ? "connected" : "disconnected");
    fl_reply_json(req, strcmp(status, "ok") == 0 ? 200 : 503, o, NULL);
}

void fl_http_complete(fl_req *req)
{
    fl_store *store = req->http->env.store;
    if (req->resp) {   /* an error prepared at the head */
        req->ready(req);
        return;
    }
    switch (req->route) {
    case FL_ROUTE_SUBMIT: {
        /* Read before the push: from then on the writer thread may write the job's state. */
        const char *type = req->job->type;
        int queued = req->job->state == FL_STATE_QUEUED;
        fl_store_cork(store);   /* its claim goes right behind it, in the same group */
        fl_store_submit(store, &req->op, req->job, submit_done, req);
        if (queued)
            fl_sched_submitting(req->http->env.sched, type);
        fl_store_uncork(store);
        return;
    }
    case FL_ROUTE_GET:
        fl_store_get_committed(store, &req->op, req->id, get_done, req);   /* its id came with a 202 */
        return;
    case FL_ROUTE_CANCEL:
        fl_store_cancel(store, &req->op, req->id, fl_job_now_ms(), cancel_done, req);
        return;
    case FL_ROUTE_LIST:
        fl_store_list_committed(store, &req->op, &req->list_query, list_done, req);
        return;
    case FL_ROUTE_EVENTS:
        fl_sse_begin(req->http->env.events, req);
        return;
    case FL_ROUTE_HEALTH:
        reply_health(req);
        break;
    case FL_ROUTE_METRICS:
        fl_store_count_committed(store, &req->op, 0, metrics_done, req);
        return;
    case FL_ROUTE_TYPES:
        fl_store_count_committed(store, &req->op, 1, types_done, req);
        return;
    case FL_ROUTE_PAUSE:
        fl_store_pause(store, &req->op, req->list_type, req->pause, pause_done, req);
        return;
    case FL_ROUTE_PRUNE:
        fl_store_prune(store, &req->op, req->prune_before, FL_STORE_PRUNE_BATCH, prune_done, req);
        return;
    case FL_ROUTE_PAYLOAD:
        fl_store_get_payload(store, &req->op, req->id, payload_done, req);
        return;
    case FL_ROUTE_RETRY:
        fl_store_retry(store, &req->op, req->id, fl_job_now_ms(), retry_done, req);
        return;
    case FL_ROUTE_UI:     /* its reply was set at the head: answered above */
    case FL_ROUTE_NONE:
        fl_reply_error(req, 404, "not_found", "no such route");
        break;
    }
    req->ready(req);
}

void fl_http_client_gone(fl_req *req)
{
    if (req->waiting)
        fl_wait_client_gone(req->http->env.wait, req);
}
