/* sse.c — an event stream's request (see sse.h): filters in, subscriber out, and the sink that
 * turns the subscriber's bytes into the connection's (req->stream). */
#include "sse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"

/* One stream: the subscriber and where it resumes; freed with its request (sse_gone). */
typedef struct sse_stream {
    fl_events_sub sub;
    fl_events *events;           /* NULL until fl_sse_begin */
    fl_req *req;
    int has_last;
    uint64_t last;
} sse_stream;

static sse_stream *stream_of(const fl_req *req) { return req->stream.ctx; }

static int sink_write(void *ctx, const char *p, size_t len)
{
    sse_stream *st = ctx;
    return st->req->stream.write(st->req, p, len);
}

static size_t sink_queued(void *ctx)
{
    sse_stream *st = ctx;
    return st->req->stream.queued(st->req);
}

/* Ends the connection's stream; that frees the request and, through sse_gone, st. */
static void sink_dropped(void *ctx, const char *why)
{
    sse_stream *st = ctx;
    st->req->stream.end(st->req, why);
}

static void sse_drained(fl_req *req)
{
    sse_stream *st = stream_of(req);
    fl_events_drained(st->events, &st->sub);
}

static void sse_gone(fl_req *req)
{
    sse_stream *st = stream_of(req);
    if (st->events)
        fl_events_unsubscribe(st->events, &st->sub);
    free(st);
    req->stream.ctx = NULL;
}

/* Reads a comma-separated list of state names into a mask (1u << fl_state). */
static int parse_states(const char *s, unsigned *mask)
{
    *mask = 0;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        fl_state st;
        if (fl_proto_state_parse(s, len, &st) < 0)
            return -EINVAL;
        *mask |= 1u << st;
        s += len + (end != NULL);
    }
    return 0;
}

/* An event id is a decimal number, as events.c writes it. */
static int parse_last_id(const char *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9' || v > (UINT64_MAX - (uint64_t)(p[i] - '0')) / 10)
            return -EINVAL;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 0;
}

int fl_sse_prepare(fl_req *req, const char *type, const char *states, const char *last_id, size_t last_len,
                   char *msg, size_t msglen)
{
    unsigned mask;
    uint64_t last = 0;
    if (type[0] && !fl_proto_valid_type(type, strlen(type))) {
        snprintf(msg, msglen, "type is not a valid job type name");
        return -EINVAL;
    }
    if (parse_states(states, &mask) < 0) {
        snprintf(msg, msglen, "state must be a comma-separated list of queued, scheduled, running, succeeded, "
                              "failed, cancelled");
        return -EINVAL;
    }
    if (last_id && parse_last_id(last_id, last_len, &last) < 0) {
        snprintf(msg, msglen, "Last-Event-ID must be an event id this stream sent");
        return -EINVAL;
    }
    sse_stream *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(msg, msglen, "the server is out of memory");
        return -ENOMEM;
    }
    fl_events_sub_init(&st->sub);
    snprintf(st->sub.type, sizeof st->sub.type, "%s", type);
    st->sub.states = mask;
    st->sub.sink = (fl_events_sink){ .write = sink_write, .queued = sink_queued, .dropped = sink_dropped, .ctx = st };
    st->req = req;
    st->has_last = last_id != NULL;
    st->last = last;
    req->stream.ctx = st;
    req->stream.gone = sse_gone;
    req->keep_alive = 0;   /* the stream's body lasts until the connection closes */
    return 0;
}

void fl_sse_begin(fl_events *events, fl_req *req)
{
    sse_stream *st = stream_of(req);
    fl_reply_stream(req, "text/event-stream", "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\n");
    if (req->resp_status == 200) {
        st->events = events;
        req->streaming = 1;
        req->stream.drained = sse_drained;
        fl_events_subscribe(events, &st->sub, st->has_last, st->last);
    }
    req->ready(req);
}
