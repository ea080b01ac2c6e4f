/* http.h — what flingd does with a parsed HTTP request: routing, auth, validation and the store
 * operation behind each route. The connection owns the socket and the parser and hands each
 * request over in three steps: head (decide what to do with the body), body bytes, complete
 * (dispatch); the reply comes back through req->ready (req.h), whose bytes reply.c writes.
 * Attached waits are wait.c's, the 202 verdicts ack.c's, the /metrics gathering stats.c's. */
#ifndef FL_HTTP_H
#define FL_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include "cancel.h"
#include "config.h"
#include "metrics.h"
#include "req.h"
#include "sched.h"
#include "stats.h"
#include "store.h"
#include "wait.h"

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

/* What the connection does with the body after fl_http_start. */
typedef enum fl_body_action {
    FL_BODY_READ,      /* feed it to fl_http_body, then fl_http_complete */
    FL_BODY_DISCARD,   /* read and drop it; fl_http_complete then sends the prepared error */
    FL_BODY_REFUSE     /* do not read it: send the prepared error now, then close */
} fl_body_action;

/* What the routes act on, all borrowed for the life of the fl_http. */
struct fl_events;

typedef struct fl_http_env {
    const fl_config *cfg;
    fl_store *store;
    fl_sched *sched;             /* paused types: what /v1/types shows, what pause/resume change */
    fl_metrics *metrics;
    fl_wait *wait;               /* attached submits */
    const fl_cancel *cancel;     /* DELETE's policy */
    const fl_stats *stats;       /* GET /metrics */
    struct fl_events *events;    /* GET /v1/events (events.h) */
} fl_http_env;

typedef struct fl_http fl_http;

/* fl_http_new makes the request handler over env (copied). 0 or -ENOMEM. */
int fl_http_new(fl_http **out, const fl_http_env *env);

/* fl_http_start looks at a request's head: route, auth, limits, option headers. For a submit it
 * allocates req->job sized for the body. Returns what to do with the body. */
fl_body_action fl_http_start(fl_http *h, fl_req *req, const fl_http_head *head);

/* fl_http_body appends body bytes (FL_BODY_READ only). */
void fl_http_body(fl_req *req, const char *data, size_t len);

/* fl_http_complete runs the request whose body is all in: it replies at once or pushes a store
 * op whose callback replies. Either way req->ready(req) follows with the reply set, exactly
 * once (an attached submit also calls it once, earlier, when it starts waiting). */
void fl_http_complete(fl_req *req);

/* fl_http_client_gone is called for a request without a reply whose client has closed or reset
 * the connection (req->gone is set): a waiting request applies its Fling-On-Disconnect choice
 * and ends; others are left to their store callback, which sees req->gone. */
void fl_http_client_gone(fl_req *req);

/* fl_http_stop marks the daemon stopping: /healthz answers 503 from now on. */
void fl_http_stop(fl_http *h);

/* fl_http_free releases h; NULL is a no-op. */
void fl_http_free(fl_http *h);

#endif
