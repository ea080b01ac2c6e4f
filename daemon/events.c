/* events.c — the ring of job-change frames and the cursors that read it (see events.h). */
#include "events.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One event of the ring: its id, what filters look at, and either the change itself or its
 * frame. The frame (a jansson object, its dump, RFC 3339 times) is made only when a stream
 * first needs it: building it at publish was 36-39% of the loop thread under acked load with no
 * stream open (perf), for frames nobody read. */
typedef struct ev_rec {
    uint64_t seq;
    fl_state state;
    const char *event;           /* the change's name (static); NULL: a gap comment (fl_events_gap) */
    fl_job *job;                 /* a copy of the job after the change, until the frame is made */
    char *frame;                 /* NULL until made; then job is NULL */
    size_t len;                  /* bytes the ring counts: the job copy's, then the frame's */
    char type[];
} ev_rec;

struct fl_events {
    struct ev_loop *loop;
    size_t budget;
    fl_metrics *metrics;
    ev_timer heartbeat;
    ev_rec *ring[FL_EVENTS_RING_MAX];
    size_t head, n;              /* ring[head] is the oldest of n */
    size_t bytes;                /* frame bytes in the ring */
    uint64_t next_seq;           /* the id the next event gets */
    fl_list subs;                /* fl_events_sub.node */
};

static const char ping[] = ": ping\n\n";

static void heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents);

int fl_events_new(fl_events **out, struct ev_loop *loop, size_t budget, fl_metrics *metrics)
{
    fl_events *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->loop = loop;
    e->budget = budget;
    e->metrics = metrics;
    e->next_seq = (uint64_t)fl_job_now_ms() * 1000;
    fl_list_init(&e->subs);
    ev_timer_init(&e->heartbeat, heartbeat_cb, FL_EVENTS_HEARTBEAT, FL_EVENTS_HEARTBEAT);
    e->heartbeat.data = e;
    ev_timer_start(loop, &e->heartbeat);
    ev_unref(loop);   /* the heartbeat alone must not keep the loop alive */
    *out = e;
    return 0;
}

static uint64_t oldest_seq(const fl_events *e) { return e->n ? e->ring[e->head]->seq : e->next_seq; }

static ev_rec *rec_at(const fl_events *e, uint64_t seq)
{
    return e->ring[(e->head + (size_t)(seq - oldest_seq(e))) % FL_EVENTS_RING_MAX];
}

static int matches(const fl_events_sub *sub, const ev_rec *r)
{
    return !r->event ||
           ((!sub->type[0] || strcmp(sub->type, r->type) == 0) && (!sub->states || (sub->states & (1u << r->state))));
}

static void drop(fl_events *e, fl_events_sub *sub, const char *why)
{
    fl_events_unsubscribe(e, sub);
    e->metrics->streams_dropped++;
    sub->sink.dropped(sub->sink.ctx, why);
}

static int fits(const fl_events *e, const fl_events_sub *sub, size_t len)
{
    return sub->sink.queued(sub->sink.ctx) + len <= e->budget;
}

static ev_rec *rec_new(uint64_t seq, const fl_job *job, const char *event)
{
    size_t tlen = strlen(job->type);
    ev_rec *r = malloc(sizeof *r + tlen + 1);
    if (!r)
        return NULL;
    if (!(r->job = fl_job_copy(job, &r->len))) {
        free(r);
        return NULL;
    }
    r->seq = seq;
    r->state = job->state;
    r->event = event;
    r->frame = NULL;
    memcpy(r->type, job->type, tlen + 1);
    return r;
}

/* make_frame turns r's job into its frame  id: SEQ\nevent: NAME\ndata: JSON\n\n  (once);
 * 0 or -ENOMEM (the job is kept, a later reader may try again). */
static int make_frame(fl_events *e, ev_rec *r)
{
    if (r->frame)
        return 0;
    json_t *o = fl_job_event_json(r->job, r->event);
    char *data = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!data)
        return -ENOMEM;
    /* Only the short head goes through snprintf: formatting the JSON through it as well (once
     * to measure, once to write) was 6% of the loop thread under acked load (perf). */
    char head[96];
    int h = snprintf(head, sizeof head, "id: %llu\nevent: %s\ndata: ", (unsigned long long)r->seq, r->event);
    size_t dlen = strlen(data);
    char *frame = h > 0 && (size_t)h < sizeof head ? malloc((size_t)h + dlen + 3) : NULL;
    if (!frame) {
        free(data);
        return -ENOMEM;
    }
    memcpy(frame, head, (size_t)h);
    memcpy(frame + h, data, dlen);
    memcpy(frame + h + dlen, "\n\n", 3);
    free(data);
    e->bytes -= r->len;
    r->len = (size_t)h + dlen + 2;
    e->bytes += r->len;
    r->frame = frame;
    fl_job_free(r->job);
    r->job = NULL;
    return 0;
}

static void rec_free(ev_rec *r)
{
    fl_job_free(r->job);
    free(r->frame);
    free(r);
}

/* Writes sub's pending events while they fit its budget. 0, or -ENOSPC when one did not fit
 * (it stays pending), or the sink's error. */
static int feed(fl_events *e, fl_events_sub *sub)
{
    if (!sub->started)
        return 0;
    while (sub->next < e->next_seq) {
        ev_rec *r = rec_at(e, sub->next);
        if (matches(sub, r)) {
            int rc = make_frame(e, r);
            if (rc < 0)
                return rc;
            if (!fits(e, sub, r->len))
                return -ENOSPC;
            rc = sub->sink.write(sub->sink.ctx, r->frame, r->len);
            if (rc < 0)
                return rc;
        }
        sub->next++;
    }
    return 0;
}

/* Drops the oldest frame; a subscriber that still needed it lags beyond the ring. */
static void evict(fl_events *e)
{
    ev_rec *r = e->ring[e->head];
    fl_list *pos, *tmp;
    fl_list_each(pos, tmp, &e->subs) {
        fl_events_sub *sub = fl_list_entry(pos, fl_events_sub, node);
        if (sub->next <= r->seq && sub->started)
            drop(e, sub, "fell behind the event ring");
        else if (sub->next <= r->seq)
            sub->next = r->seq + 1;   /* its head is not even out yet: it resumes from what is kept */
    }
    e->head = (e->head + 1) % FL_EVENTS_RING_MAX;
    e->n--;
    e->bytes -= r->len;
    rec_free(r);
}

/* trim evicts the oldest events while the ring holds more bytes than its cap (frames made by a
 * replay can outgrow the copies they replace); the newest always stays. */
static void trim(fl_events *e)
{
    while (e->n > 1 && e->bytes > FL_EVENTS_RING_BYTES)
        evict(e);
}

/* gap_new makes a gap comment's record: its frame from the start, no job, every filter's. */
static ev_rec *gap_new(uint64_t seq, const char *why)
{
    ev_rec *r = malloc(sizeof *r + 1);
    int n = snprintf(NULL, 0, ": gap: %s\n\n", why);
    if (!r || n < 0 || !(r->frame = malloc((size_t)n + 1))) {
        free(r);
        return NULL;
    }
    snprintf(r->frame, (size_t)n + 1, ": gap: %s\n\n", why);
    r->seq = seq;
    r->state = FL_STATE_QUEUED;
    r->event = NULL;
    r->job = NULL;
    r->len = (size_t)n;
    r->type[0] = '\0';
    return r;
}

static void append(fl_events *e, ev_rec *r);

void fl_events_publish(fl_events *e, const fl_job *job, const char *event)
{
    append(e, rec_new(e->next_seq, job, event));
}

void fl_events_gap(fl_events *e, const char *why)
{
    append(e, gap_new(e->next_seq, why));
}

/* append adds r (NULL: it could not be made) as the newest event and feeds it to the
 * subscribers that are caught up. */
static void append(fl_events *e, ev_rec *r)
{
    if (!r) {
        /* Nothing to replay it from: every stream would silently miss it, so end them all and
         * let their clients resume (from the ring) rather than go on with a hole. */
        fl_list *pos, *tmp;
        fl_list_each(pos, tmp, &e->subs)
            drop(e, fl_list_entry(pos, fl_events_sub, node), "out of memory for an event");
        e->next_seq++;
        return;
    }
    while (e->n == FL_EVENTS_RING_MAX || (e->n && e->bytes + r->len > FL_EVENTS_RING_BYTES))
        evict(e);
    e->ring[(e->head + e->n) % FL_EVENTS_RING_MAX] = r;
    e->n++;
    e->bytes += r->len;
    e->next_seq++;
    fl_list *pos, *tmp;
    fl_list_each(pos, tmp, &e->subs) {
        fl_events_sub *sub = fl_list_entry(pos, fl_events_sub, node);
        /* Only a caught-up subscriber is judged here; one still replaying is fed on drain. */
        if (sub->next != r->seq)
            continue;
        int rc = feed(e, sub);
        if (rc == -ENOSPC)
            drop(e, sub, "too slow: its queue reached [server] max_stream_buffer");
        else if (rc < 0)
            drop(e, sub, "cannot queue an event");
    }
    trim(e);
}

void fl_events_sub_init(fl_events_sub *sub)
{
    memset(sub, 0, sizeof *sub);
    fl_list_init(&sub->node);
}

/* A comment saying that the events between the client's last id and the oldest kept are gone. */
static void note_gap(fl_events_sub *sub, uint64_t oldest)
{
    char line[96];
    int n = snprintf(line, sizeof line, ": gap: events before id %llu are no longer kept\n\n",
                     (unsigned long long)oldest);
    sub->sink.write(sub->sink.ctx, line, (size_t)n);
}

void fl_events_subscribe(fl_events *e, fl_events_sub *sub, int has_last, uint64_t last)
{
    uint64_t oldest = oldest_seq(e);
    sub->next = e->next_seq;
    sub->started = 0;
    sub->gap = has_last && last + 1 < oldest;
    if (has_last && last < e->next_seq)
        sub->next = sub->gap ? oldest : last + 1;
    fl_list_push_tail(&e->subs, &sub->node);
    e->metrics->streams_open++;
}

void fl_events_drained(fl_events *e, fl_events_sub *sub)
{
    if (fl_list_empty(&sub->node))
        return;
    if (!sub->started && sub->gap)
        note_gap(sub, sub->next);
    sub->started = 1;
    int rc = feed(e, sub);
    if (rc < 0 && rc != -ENOSPC)
        drop(e, sub, "cannot queue an event");
    trim(e);
}

void fl_events_unsubscribe(fl_events *e, fl_events_sub *sub)
{
    if (fl_list_empty(&sub->node))
        return;
    fl_list_remove(&sub->node);
    e->metrics->streams_open--;
}

static void heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    fl_events *e = w->data;
    fl_list *pos, *tmp;
    fl_list_each(pos, tmp, &e->subs) {
        fl_events_sub *sub = fl_list_entry(pos, fl_events_sub, node);
        /* One with a full queue is either replaying or about to be dropped: it needs no ping. */
        if (sub->started && fits(e, sub, sizeof ping - 1) &&
            sub->sink.write(sub->sink.ctx, ping, sizeof ping - 1) < 0)
            drop(e, sub, "cannot queue a heartbeat");
    }
}

void fl_events_stop(fl_events *e)
{
    if (!e || !ev_is_active(&e->heartbeat))
        return;
    ev_ref(e->loop);
    ev_timer_stop(e->loop, &e->heartbeat);
}

void fl_events_free(fl_events *e)
{
    if (!e)
        return;
    fl_events_stop(e);
    while (e->n)
        evict(e);
    free(e);
}
