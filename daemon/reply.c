/* reply.c — the bytes of every reply (see reply.h): one function per kind of answer, all
 * through fl_reply, so status lines and headers are written in one place. */
#include "reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Sets req's reply to head (n bytes) and body; out of memory, a static minimal 503 keeps the
 * connection's order intact. */
static void set_reply(fl_req *req, int status, const char *head, size_t n, const char *body, size_t body_len)
{
    free(req->resp);
    req->resp = malloc(n + body_len);
    if (!req->resp) {
        static const char oom[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        req->resp = strdup(oom);
        req->resp_len = req->resp ? sizeof oom - 1 : 0;
        req->resp_status = 503;
        req->close_after = 1;
        req->ack_id = 0;
        return;
    }
    memcpy(req->resp, head, n);
    if (body_len)
        memcpy(req->resp + n, body, body_len);
    req->resp_len = n + body_len;
    req->resp_status = status;
}

void fl_reply(fl_req *req, int status, const char *ctype, const char *extra, const char *body, size_t body_len)
{
    const char *conn = (req->close_after || !req->keep_alive) ? "Connection: close\r\n" : "";
    char head[512];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                     status, reason(status), ctype, body_len, extra ? extra : "", conn);
    if (n < 0 || (size_t)n >= sizeof head)
        n = 0;   /* cannot happen with our fixed headers; an empty reply beats a bad one */
    set_reply(req, status, head, (size_t)n, body, body_len);
}

void fl_reply_stream(fl_req *req, const char *ctype, const char *extra)
{
    char head[512];
    int n = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n%sConnection: close\r\n\r\n", ctype,
                     extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof head)
        n = 0;
    set_reply(req, 200, head, (size_t)n, NULL, 0);
}

void fl_reply_json(fl_req *req, int status, json_t *obj, const char *extra)
{
    char *body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!body) {
        fl_reply_error(req, 503, "out_of_memory", "the server is out of memory");
        return;
    }
    fl_reply(req, status, "application/json", extra, body, strlen(body));
    free(body);
}

/* The methods a 405 names for the route the path matched. */
static const char *allow_header(fl_req_route route)
{
    switch (route) {
    case FL_ROUTE_LIST:
    case FL_ROUTE_TYPES:
    case FL_ROUTE_PAYLOAD:
        return "Allow: GET\r\n";
    case FL_ROUTE_PAUSE:
    case FL_ROUTE_RETRY:
    case FL_ROUTE_PRUNE:
        return "Allow: POST\r\n";
    default:
        return "Allow: GET, DELETE\r\n";
    }
}

void fl_reply_error(fl_req *req, int status, const char *code, const char *fmt, ...)
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
        extra = allow_header(req->route);
    fl_reply_json(req, status, o, extra);
}

/* The answers of a submit name their job in a Location header and an {"id","state"} body. */
static void reply_submit(fl_req *req, int status, int64_t id, fl_state state, const char *more)
{
    char body[160], loc[64 + FL_ID_MAX];
    snprintf(loc, sizeof loc, "Location: %s/%lld\r\n", FL_PROTO_JOBS_PATH, (long long)id);
    int n = snprintf(body, sizeof body, "{\"id\":\"%lld\",\"state\":\"%s\"%s}", (long long)id,
                     fl_proto_state_name(state), more);
    fl_reply(req, status, "application/json", loc, body, (size_t)n);
}

void fl_reply_accepted(fl_req *req, int64_t id, fl_state state)
{
    reply_submit(req, 202, id, state, "");
    if (req->resp_status == 202)
        req->ack_id = id;
}

void fl_reply_duplicate(fl_req *req, int64_t id, fl_state state)
{
    reply_submit(req, 200, id, state, ",\"duplicate\":true");
}

void fl_reply_waited(fl_req *req, const fl_job *job)
{
    char extra[160];
    snprintf(extra, sizeof extra, "Location: %s/%lld\r\n%s: wait=%d\r\n", FL_PROTO_JOBS_PATH,
             (long long)job->id, FL_HDR_PREF_APPLIED, req->wait_secs);
    fl_reply_json(req, 200, fl_job_to_json(job), extra);
}
