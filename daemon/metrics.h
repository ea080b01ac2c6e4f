/* metrics.h — flingd's counters and their Prometheus text form (GET /metrics).
 * Every counter is touched only on the loop thread, so plain integers suffice; values that
 * other modules own (store stats, the scheduler's) are gathered by stats.c and passed in. */
#ifndef FL_METRICS_H
#define FL_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* HTTP status classes we count separately; the index of fl_metrics.responses. */
enum { FL_M_2XX, FL_M_4XX, FL_M_5XX, FL_M_CODES };

/* Refused requests are counted by their error code ("unknown_type", ...). The codes are the
 * static strings of http.c and conn.c, a small fixed set; this bounds the table. */
#define FL_M_REASONS 32
typedef struct fl_metrics_reason { const char *code; uint64_t n; } fl_metrics_reason;

typedef struct fl_metrics {
    uint64_t connections_accepted;
    size_t connections_open;          /* a gauge: open now (kept by conn.c) */
    uint64_t connections_refused;     /* accept() failures */
    uint64_t connections_reclaimed;   /* idle or too slow, closed to make room at max_connections */
    uint64_t requests;                /* complete requests parsed */
    uint64_t responses[FL_M_CODES];
    uint64_t requests_truncated;      /* EOF, reset or deadline before a request was complete */
    uint64_t jobs_submitted;          /* committed new jobs (202) */
    uint64_t jobs_duplicate;          /* Idempotency-Key matches (200) */
    uint64_t acks_delivered;          /* 202 known to have reached the client */
    uint64_t acks_aborted;            /* 202 not delivered: status bit 1 set */
    uint64_t acks_unknown;            /* no verdict within the bound: no bit set */
    uint64_t store_errors;            /* ops answered 503 */
    size_t streams_open;              /* a gauge: GET /v1/events streams subscribed (kept by events.c) */
    uint64_t streams_dropped;         /* event streams ended as too slow */
    uint64_t jobs_pruned;             /* finished jobs deleted by retention or POST /v1/prune */
    /* A shared database: other nodes' changes heard, skipped (nothing here followed the job),
     * rows read to report them (remote.c), jobs stopped here for a cancel on another node
     * (server.c). */
    uint64_t remote_changes, remote_skipped, remote_reads, remote_stops;
    fl_metrics_reason refused[FL_M_REASONS];   /* refused requests by error code */
} fl_metrics;

/* Gauges owned elsewhere, sampled when /metrics is asked for. */
typedef struct fl_metrics_gauges {
    size_t store_pending;
    uint64_t store_commits, store_ops, store_failed_commits;
    size_t jobs_running;
    uint64_t attempts, succeeded, failed, cancelled, retried, timed_out, requeued;
    /* callback deliveries: attempts by outcome, in flight now */
    uint64_t cb_delivered, cb_retried, cb_failed;
    size_t cb_in_flight;
    /* The Redis mirror (mirror.h), rendered only when has_redis. */
    int has_redis;
    int redis_connected;
    double redis_lag_seconds;
    uint64_t redis_errors, redis_dropped, redis_writes;
    /* A shared database (store.h's fl_store_stats), rendered only when has_shared. */
    int has_shared;
    uint64_t pg_claimed, pg_fenced, pg_orphans, pg_notifications, pg_round_trips;
    double pg_round_trip_seconds;
    int pg_following, pg_followed;
} fl_metrics_gauges;

/* Attempt durations, in seconds: the upper bounds of the histogram buckets (+Inf implied). */
#define FL_M_BUCKETS 9
extern const double fl_metrics_bucket_bounds[FL_M_BUCKETS];

/* Per job type: queue depth (from the store) and attempt outcomes and durations (from sched). */
typedef struct fl_metrics_type {
    const char *name;
    int64_t queued, scheduled, running;
    uint64_t succeeded, failed, cancelled, retried;
    uint64_t buckets[FL_M_BUCKETS + 1];   /* non-cumulative counts; the last is +Inf */
    double seconds_sum;
} fl_metrics_type;

/* fl_metrics_observe counts one attempt of `seconds` in t's histogram. */
void fl_metrics_observe(fl_metrics_type *t, double seconds);

/* fl_metrics_render returns the Prometheus text in a new malloc'd buffer of *len bytes
 * (caller frees), or NULL on ENOMEM. types (n of them) are borrowed. */
char *fl_metrics_render(const fl_metrics *m, const fl_metrics_gauges *g, const fl_metrics_type *types,
                        size_t n_types, size_t *len);

/* fl_metrics_response counts one response of the given HTTP status. */
void fl_metrics_response(fl_metrics *m, int status);

/* fl_metrics_refused counts one request refused with error code (a static string, borrowed for
 * the life of the process). */
void fl_metrics_refused(fl_metrics *m, const char *code);

#endif
