/* http.h — what flingd does with a parsed HTTP request: routing, auth, validation, the store
 * operation behind each route, and the bytes of each reply. conn.c owns the socket and the
 * parser and hands requests here in three steps: head (decide what to do with the body),
 * body bytes, complete (dispatch). A reply is ready when req->resp is set; conn.c writes the
 * replies of one connection in request order. */
#ifndef FL_HTTP_H
#define FL_HTTP_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include "server.h"
#include "store.h"

#define FL_HTTP_MAX_HEADERS 64   /* more header lines than any sane client sends: 431 */

/* One header as the parser saw it; pointers into the connection's head buffer. */
typedef struct fl_http_header { const char *name; size_t name_len; const char *value; size_t value_len; } fl_http_header;

/* The head of a request, valid only during fl_http_start(). */
typedef struct fl_http_head {
    int method;                  /* llhttp_method_t */
    const char *url; size_t url_len;
    const fl_http_header *headers; size_t n_headers;
    int has_content_length; uint64_t content_length;
    int chunked;                 /* Transfer-Encoding: chunked (refused with 411) */
} fl_http_head;

typedef enum fl_req_route {
    FL_ROUTE_NONE = 0,           /* refused at the head; the reply is prepared */
    FL_ROUTE_SUBMIT, FL_ROUTE_GET, FL_ROUTE_LIST, FL_ROUTE_CANCEL, FL_ROUTE_HEALTH, FL_ROUTE_METRICS
} fl_req_route;

/* What conn.c does with the body after fl_http_start. */
typedef enum fl_body_action {
    FL_BODY_READ,      /* feed it to fl_http_body, then fl_http_complete */
    FL_BODY_DISCARD,   /* read and drop it; fl_http_complete then sends the prepared error */
    FL_BODY_REFUSE     /* do not read it: send the prepared error now, then close (SOCKETS D8) */
} fl_body_action;

typedef struct fl_req fl_req;
struct fl_req {
    fl_server *srv;
    fl_conn *conn;               /* NULL once the connection is gone: the reply is dropped */
    fl_req *next;                /* the connection's queue, in request order */
    fl_req_route route;
    int keep_alive;              /* the client allows another request after this one */
    fl_job *job;                 /* submit: the job being received; the body lands in its payload */
    size_t body_got;
    int64_t id;                  /* get/cancel: the job id */
    fl_store_op op;              /* the store operation behind this request */
    char list_type[FL_TYPE_NAME_MAX + 1];
    fl_store_query list_query;   /* LIST: the page the head asked for */
    /* The prepared error for DISCARD/REFUSE. */
    int err_status; const char *err_code; char err_msg[160];
    /* The reply: set once, then the connection writes it. */
    char *resp; size_t resp_len; /* malloc'd */
    int resp_status;
    int close_after;             /* close the connection after this reply */
    int64_t ack_id;              /* nonzero: this reply is a 202 whose delivery decides ABORTED */
    /* Attached mode (Prefer: wait=N): after the commit the reply waits for the job's end. */
    int wait_secs;               /* 0 = answer at once */
    int cancel_on_gone;          /* Fling-On-Disconnect: cancel */
    int waiting;                 /* linked in srv->waiters, wait_timer running */
    fl_state last_state;         /* the job's state as last seen while waiting */
    fl_req *w_prev, *w_next;
    ev_timer wait_timer;
    /* conn.c's accounting while the request sits in its connection's queue. */
    size_t held;                 /* bytes counted against [server] max_output */
    int replied;                 /* its reply is set and counted */
    /* What a refused request was, for its log line (empty when the head never parsed). */
    char method[16];
    char target[80];
};

/* fl_http_start looks at a request's head: route, auth, limits, option headers. For a submit it
 * allocates req->job sized for the body. Returns what to do with the body. */
fl_body_action fl_http_start(fl_req *req, const fl_http_head *head);

/* fl_http_body appends body bytes (FL_BODY_READ only). */
void fl_http_body(fl_req *req, const char *data, size_t len);

/* fl_http_complete runs the request whose body is all in: it replies at once or pushes a store
 * op whose callback replies. Either way fl_conn_reply_ready(req) follows, exactly once. */
void fl_http_complete(fl_req *req);

/* fl_http_error prepares an error reply {"error":code,"message":…} in req (no I/O). */
void fl_http_error(fl_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* fl_http_abort_ack records that the 202 for job id could not be delivered: it counts it and
 * pushes status bit 1 (ABORTED) to the store. */
void fl_http_abort_ack(fl_server *srv, int64_t id);

/* fl_http_status_pending returns 1 while the ABORTED bit of job id may still change: its 202
 * is queued or awaits its delivery verdict, or the bit is pushed but not committed. Callbacks
 * wait for it so that their "status" is final. */
int fl_http_status_pending(fl_server *srv, int64_t id);

/* fl_http_job_changed answers the attached clients waiting for job once it is terminal. */
void fl_http_job_changed(fl_server *srv, const fl_job *job);

/* fl_http_client_gone is called by conn.c for a request without a reply when its client has
 * closed or reset the connection (req->conn is NULL if the connection is being freed). A
 * waiting request applies its Fling-On-Disconnect choice (the job goes on with status bit 1,
 * or is cancelled) and ends; other requests are left to their store callback. */
void fl_http_client_gone(fl_req *req);

/* fl_http_stop_waiters answers every waiting request 202 now (graceful stop). */
void fl_http_stop_waiters(fl_server *srv);

/* fl_req_free releases req and what it owns; NULL is a no-op. A request whose store op is
 * still pending must not be freed: detach it (req->conn = NULL) and its callback frees it. */
void fl_req_free(fl_req *req);

#endif
