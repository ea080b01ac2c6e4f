/* events.h — the live stream of job changes behind GET /v1/events: every committed change (the
 * store's on_change, as the Redis channel carries it) becomes one Server-Sent Events frame
 *   id: SEQ\nevent: NAME\ndata: {job JSON plus "event"}\n\n
 * kept in a bounded ring for replay, and written to each subscriber whose filter it matches.
 * The ring keeps a copy of the job and makes its frame the first time a stream needs it, so a
 * daemon that nobody streams from never formats one.
 *
 * Event ids are this module's own counter, independent of the database: the first id of a
 * process is its start time in microseconds since the epoch, and each event adds one. So ids
 * only grow, across restarts too (while the clock does not go back and fewer than a million
 * events a second are emitted), and an id from before a restart is simply older than the ring.
 *
 * A subscriber knows no socket: it is given a sink (write bytes, how many are queued, "you are
 * dropped") and a byte budget. It is a cursor into the ring: events are written while its
 * queued bytes stay within the budget, and the rest when its sink says it drained. A subscriber
 * that is caught up and cannot take a new event within its budget, or whose next event falls
 * out of the ring while it lags, is a slow consumer: it is dropped, never buffered further.
 * Loop thread only. */
#ifndef FL_EVENTS_H
#define FL_EVENTS_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include "job.h"
#include "list.h"
#include "metrics.h"

/* The ring holds the last FL_EVENTS_RING_MAX events, and at most FL_EVENTS_RING_BYTES of them
 * (a job's JSON carries its output, so a count alone would not bound the memory). */
#define FL_EVENTS_RING_MAX 10000
#define FL_EVENTS_RING_BYTES (16u * 1024 * 1024)
/* A comment line goes to every subscriber this often, so proxies and clients see a live stream. */
#define FL_EVENTS_HEARTBEAT 15.0

/* Where a subscriber's bytes go; every function gets ctx. */
typedef struct fl_events_sink {
    int (*write)(void *ctx, const char *p, size_t len);   /* queue bytes: 0 or a negative errno */
    size_t (*queued)(void *ctx);                          /* bytes queued and not yet sent */
    void (*dropped)(void *ctx, const char *why);          /* unsubscribed as too slow: end the stream */
    void *ctx;
} fl_events_sink;

/* A subscriber, in the caller's memory (fl_events_sub_init, then fl_events_subscribe). */
typedef struct fl_events_sub {
    fl_list node;                       /* the subscribers' list; unlinked when not subscribed */
    char type[FL_TYPE_NAME_MAX + 1];    /* only jobs of this type; "" = all */
    unsigned states;                    /* only jobs in these states (1u << fl_state); 0 = all */
    fl_events_sink sink;
    uint64_t next;                      /* the id of the next event to consider */
    int started;                        /* the sink takes bytes (set by the first fl_events_drained) */
    int gap;                            /* it resumes after events the ring no longer has */
} fl_events_sub;

typedef struct fl_events fl_events;

/* fl_events_new makes the ring and its heartbeat timer on loop; budget is the byte cap of each
 * subscriber's queue; metrics (borrowed) gets the streams open and dropped. 0 or -ENOMEM. */
int fl_events_new(fl_events **out, struct ev_loop *loop, size_t budget, fl_metrics *metrics);

/* fl_events_publish records one committed change of job (borrowed) named event and writes it
 * to the subscribers that are caught up; one that cannot take it is dropped. */
void fl_events_publish(fl_events *e, const fl_job *job, const char *event);

/* fl_events_gap records the comment ": gap: WHY" (why: one line, copied) in the event's place:
 * every stream gets it there, whatever its filter, live or replayed after a Last-Event-ID. It
 * says that changes of that time are missing (another node's, not heard here) and that the
 * client should reread what it needs. It takes an event id of its own, like an event. */
void fl_events_gap(fl_events *e, const char *why);

/* fl_events_sub_init readies sub (unlinked, no filter). */
void fl_events_sub_init(fl_events_sub *sub);

/* fl_events_subscribe adds sub: with has_last, it resumes after event id last (from the ring:
 * if that id is older than the ring, it gets the whole ring, after a comment saying so), else
 * it gets the events from now on. Nothing is written until the first fl_events_drained. */
void fl_events_subscribe(fl_events *e, fl_events_sub *sub, int has_last, uint64_t last);

/* fl_events_drained says sub's sink has room again (its queue went out): the events it has not
 * had yet are written, within its budget. */
void fl_events_drained(fl_events *e, fl_events_sub *sub);

/* fl_events_unsubscribe removes sub (a no-op if it is not subscribed). */
void fl_events_unsubscribe(fl_events *e, fl_events_sub *sub);

/* fl_events_stop ends the heartbeat (a graceful stop). */
void fl_events_stop(fl_events *e);

/* fl_events_free releases e and its ring; every subscriber must be gone. NULL is a no-op. */
void fl_events_free(fl_events *e);

#endif
