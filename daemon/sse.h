/* sse.h — GET /v1/events, the request side of an event stream: fl_sse_prepare reads what the
 * request asks for (its type and state filters, its Last-Event-ID), fl_sse_begin answers with
 * the stream's head and subscribes the request to events.c, whose frames then reach the
 * connection through req->stream (req.h). The connection stays unaware of events, and
 * events.c of requests. Loop thread only. */
#ifndef FL_SSE_H
#define FL_SSE_H

#include <stddef.h>
#include "events.h"
#include "req.h"

/* fl_sse_prepare readies req as an event stream: type ("" = all) filters the job type, states
 * (a comma-separated list of state names, "" = all) the job's state after the change, and
 * last_id (last_len bytes, NULL = none) is the Last-Event-ID to resume after. 0; -EINVAL with
 * the reason in msg; -ENOMEM. */
int fl_sse_prepare(fl_req *req, const char *type, const char *states, const char *last_id, size_t last_len,
                   char *msg, size_t msglen);

/* fl_sse_begin answers a prepared req with the head of its stream and subscribes it to events
 * (borrowed, outliving every stream); the frames follow as the connection takes them. */
void fl_sse_begin(fl_events *events, fl_req *req);

#endif
