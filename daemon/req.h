/* req.h — one HTTP request as the layers above the socket see it: what http.c decided about
 * it, the store op behind it, its reply, and the attached-mode wait. conn.c allocates it (inside
 * its own wrapper, with its queue link and accounting), hands it to http.c, and gets it back
 * through req->ready; nothing here knows the connection. Header only: the type is shared by
 * conn, http, reply and wait, and owned by none of them alone. */
#ifndef FL_REQ_H
#define FL_REQ_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "job.h"
#include "list.h"
#include "store.h"

/* Replies up to this size live inside the request: a submit's answer costs no allocation. */
#define FL_REQ_RESP_INLINE 320

typedef enum fl_req_route {
    FL_ROUTE_NONE = 0,           /* refused at the head; the reply is prepared */
    FL_ROUTE_SUBMIT, FL_ROUTE_GET, FL_ROUTE_LIST, FL_ROUTE_CANCEL, FL_ROUTE_HEALTH, FL_ROUTE_METRICS,
    FL_ROUTE_EVENTS,             /* GET /v1/events: a streamed reply */
    FL_ROUTE_UI,                 /* GET /ui: the dashboard's files; the reply is set at the head */
    FL_ROUTE_TYPES,              /* GET /v1/types */
    FL_ROUTE_PAUSE,              /* POST /v1/types/{type}/pause|resume: list_type, pause */
    FL_ROUTE_RETRY,              /* POST /v1/jobs/{id}/retry: id */
    FL_ROUTE_PAYLOAD,            /* GET /v1/jobs/{id}/payload: id */
    FL_ROUTE_PRUNE               /* POST /v1/prune: prune_before, pruned */
} fl_req_route;

typedef struct fl_req fl_req;
struct fl_http;
struct fl_wait;

/* Called by the layers above when req->resp is set, or when req starts waiting (req->waiting):
 * the connection writes what it can. Once the reply is set this hands req back to its owner,
 * who frees it (at once if its connection is gone). */
typedef void (*fl_req_ready_fn)(fl_req *req);

/* A streamed reply (GET /v1/events): resp is only its head. The owner keeps the request after
 * sending it, and the layer above appends to the stream until either side ends it. */
typedef struct fl_req_stream {
    /* set by the owner (conn.c) */
    int (*write)(fl_req *req, const char *p, size_t len);   /* queue bytes: 0 or a negative errno */
    size_t (*queued)(const fl_req *req);                    /* bytes queued, not taken by the kernel */
    void (*end)(fl_req *req, const char *why);              /* close the stream (req is freed) */
    /* set by the layer above when it makes the request a stream */
    void (*drained)(fl_req *req);                           /* the queue went out: write more */
    void (*gone)(fl_req *req);                              /* req is being freed: forget it */
    void *ctx;
} fl_req_stream;

struct fl_req {
    fl_req_ready_fn ready;       /* set by the owner (conn.c) when it creates req */
    int gone;                    /* set by the owner: its client closed or reset the connection */
    struct fl_http *http;        /* set by fl_http_start */
    fl_req_route route;
    int keep_alive;              /* the client allows another request after this one */
    fl_job *job;                 /* submit: the job being received; the body lands in its payload */
    size_t body_got;
    int64_t id;                  /* get/cancel: the job id; a waiting submit: its job */
    fl_store_op op;              /* the store operation behind this request */
    char list_type[FL_TYPE_NAME_MAX + 1];   /* LIST's type filter; PAUSE's type */
    int pause;                   /* PAUSE: 1 = pause, 0 = resume */
    int64_t prune_before;        /* PRUNE: delete jobs finished before this (ms) */
    uint64_t pruned;             /* PRUNE: deleted so far */
    fl_store_query list_query;   /* LIST: the page the head asked for */
    /* The prepared error for DISCARD/REFUSE, and for the log line of a refused request. */
    int err_status; const char *err_code; char err_msg[160];
    /* The reply: set once (reply.c), then the connection writes it. */
    char *resp; size_t resp_len; /* resp_inline when it fits (a 202, most errors), else malloc'd */
    char resp_inline[FL_REQ_RESP_INLINE];
    int resp_status;
    int close_after;             /* close the connection after this reply */
    int64_t ack_id;              /* nonzero: this reply is a 202 whose delivery decides ABORTED */
    /* Attached mode (Prefer: wait=N), owned by wait.c: after the commit the reply waits for the
     * job's end. */
    int wait_secs;               /* 0 = answer at once */
    int cancel_on_gone;          /* Fling-On-Disconnect: cancel */
    int waiting;                 /* linked in the waiters' list, wait_timer running */
    fl_state last_state;         /* the job's state as last seen while waiting */
    fl_list wait_node;
    struct fl_wait *waits_in;    /* the list it is linked in */
    ev_timer wait_timer;
    int streaming;               /* its reply is a stream (see fl_req_stream) */
    fl_req_stream stream;
};

/* fl_req_init zeroes req and gives it its ready callback. */
static inline void fl_req_init(fl_req *req, fl_req_ready_fn ready)
{
    *req = (fl_req){ .ready = ready };
    fl_list_init(&req->wait_node);
}

/* fl_req_release frees what req owns (its job and its reply bytes), not req itself, and tells
 * the layer behind a stream that req is going. */
static inline void fl_req_release(fl_req *req)
{
    if (req->stream.gone) {
        req->stream.gone(req);
        req->stream.gone = NULL;
    }
    fl_job_free(req->job);
    req->job = NULL;
    if (req->resp != req->resp_inline)
        free(req->resp);
    req->resp = NULL;
}

#endif
