/* metrics.c — renders flingd's counters as Prometheus text exposition format 0.0.4. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct outbuf { char *p; size_t len, cap; int failed; } outbuf;

static void put(outbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(outbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static void metric(outbuf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
        (unsigned long long)v);
}

const double fl_metrics_bucket_bounds[FL_M_BUCKETS] = { 0.005, 0.05, 0.25, 1, 5, 30, 120, 600, 3600 };

void fl_metrics_observe(fl_metrics_type *t, double seconds)
{
    size_t i = 0;
    while (i < FL_M_BUCKETS && seconds > fl_metrics_bucket_bounds[i])
        i++;
    t->buckets[i]++;
    t->seconds_sum += seconds;
}

/* The node's part in a shared database (PostgreSQL). */
static void render_shared(outbuf *b, const fl_metrics *m, const fl_metrics_gauges *g)
{
    metric(b, "fling_pg_claimed_jobs_total", "counter", "Jobs this node claimed.", g->pg_claimed);
    metric(b, "fling_pg_notifications_total", "counter", "Notifications this node's listener heard.",
           g->pg_notifications);
    metric(b, "fling_pg_remote_changes_total", "counter", "Job changes committed by other nodes, heard here.",
           m->remote_changes);
    metric(b, "fling_pg_remote_skipped_total", "counter",
           "Other nodes' changes not read: no Redis mirror, no event stream and no attached client followed the job.",
           m->remote_skipped);
    metric(b, "fling_pg_remote_reads_total", "counter",
           "Rows read to report other nodes' changes (changes heard during a read are folded into it).",
           m->remote_reads);
    metric(b, "fling_pg_following", "gauge",
           "1 while this node follows other nodes' changes (a Redis mirror, an event stream or an attached client).",
           (uint64_t)g->pg_following);
    metric(b, "fling_pg_followed", "gauge",
           "1 while another node follows this node's changes: its commits notify them.", (uint64_t)g->pg_followed);
    metric(b, "fling_pg_remote_stops_total", "counter", "Jobs stopped here for a cancel asked on another node.",
           m->remote_stops);
    metric(b, "fling_pg_fenced_outcomes_total", "counter",
           "Outcomes dropped: their job had been re-queued while this node's session was gone.", g->pg_fenced);
    metric(b, "fling_pg_orphans_requeued_total", "counter", "Running jobs of nodes that are gone re-queued here.",
           g->pg_orphans);
    put(b, "# HELP fling_pg_round_trip_seconds Statements sent to PostgreSQL and their time waiting for it.\n"
           "# TYPE fling_pg_round_trip_seconds summary\n"
           "fling_pg_round_trip_seconds_sum %.6f\nfling_pg_round_trip_seconds_count %llu\n",
        g->pg_round_trip_seconds, (unsigned long long)g->pg_round_trips);
}

static void render_types(outbuf *b, const fl_metrics_type *types, size_t n)
{
    put(b, "# HELP fling_jobs Jobs waiting or running, by type and state (queue depth).\n# TYPE fling_jobs gauge\n");
    for (size_t i = 0; i < n; i++)
        put(b, "fling_jobs{type=\"%s\",state=\"queued\"} %lld\nfling_jobs{type=\"%s\",state=\"scheduled\"} %lld\n"
               "fling_jobs{type=\"%s\",state=\"running\"} %lld\n",
            types[i].name, (long long)types[i].queued, types[i].name, (long long)types[i].scheduled, types[i].name,
            (long long)types[i].running);
    put(b, "# HELP fling_type_attempts_total Attempts ended, by type and what became of the job.\n"
           "# TYPE fling_type_attempts_total counter\n");
    for (size_t i = 0; i < n; i++) {
        const fl_metrics_type *t = &types[i];
        const char *names[] = { "succeeded", "failed", "cancelled", "retried" };
        uint64_t v[] = { t->succeeded, t->failed, t->cancelled, t->retried };
        for (size_t k = 0; k < 4; k++)
            put(b, "fling_type_attempts_total{type=\"%s\",outcome=\"%s\"} %llu\n", t->name, names[k],
                (unsigned long long)v[k]);
    }
    put(b, "# HELP fling_attempt_seconds How long attempts ran, by type.\n# TYPE fling_attempt_seconds histogram\n");
    for (size_t i = 0; i < n; i++) {
        const fl_metrics_type *t = &types[i];
        uint64_t cum = 0;
        for (size_t k = 0; k < FL_M_BUCKETS; k++) {
            cum += t->buckets[k];
            put(b, "fling_attempt_seconds_bucket{type=\"%s\",le=\"%g\"} %llu\n", t->name, fl_metrics_bucket_bounds[k],
                (unsigned long long)cum);
        }
        cum += t->buckets[FL_M_BUCKETS];
        put(b, "fling_attempt_seconds_bucket{type=\"%s\",le=\"+Inf\"} %llu\n", t->name, (unsigned long long)cum);
        put(b, "fling_attempt_seconds_sum{type=\"%s\"} %.6f\nfling_attempt_seconds_count{type=\"%s\"} %llu\n", t->name,
            t->seconds_sum, t->name, (unsigned long long)cum);
    }
}

static void render_redis(outbuf *b, const fl_metrics_gauges *g)
{
    metric(b, "fling_redis_connected", "gauge", "1 while the Redis mirror is connected and writing.",
           (uint64_t)g->redis_connected);
    put(b, "# HELP fling_redis_lag_seconds Age of the oldest mirror write not yet acknowledged by Redis.\n"
           "# TYPE fling_redis_lag_seconds gauge\nfling_redis_lag_seconds %.3f\n", g->redis_lag_seconds);
    metric(b, "fling_redis_errors_total", "counter",
           "Redis mirror failures: connects, lost connections, error replies.", g->redis_errors);
    metric(b, "fling_redis_dropped_total", "counter",
           "Job changes that never reached Redis (disconnected); the catch-up repairs them.", g->redis_dropped);
    metric(b, "fling_redis_writes_total", "counter", "Mirror writes Redis acknowledged.", g->redis_writes);
}

char *fl_metrics_render(const fl_metrics *m, const fl_metrics_gauges *g, const fl_metrics_type *types,
                        size_t n_types, size_t *len)
{
    outbuf b = { .p = malloc(4096), .cap = 4096 };
    if (!b.p)
        return NULL;
    b.p[0] = '\0';
    metric(&b, "fling_connections_accepted_total", "counter", "Connections accepted.", m->connections_accepted);
    metric(&b, "fling_connections_refused_total", "counter", "Failed accepts (out of memory or buffers).",
           m->connections_refused);
    metric(&b, "fling_connections_reclaimed_total", "counter",
           "Connections closed to make room at max_connections or out of descriptors: idle keep-alive ones, "
           "then those whose request took over a second to arrive.", m->connections_reclaimed);
    metric(&b, "fling_connections_open", "gauge", "Connections open now.", m->connections_open);
    metric(&b, "fling_requests_total", "counter", "Complete HTTP requests parsed.", m->requests);
    put(&b, "# HELP fling_responses_total HTTP responses by status class.\n"
            "# TYPE fling_responses_total counter\n"
            "fling_responses_total{code=\"2xx\"} %llu\n"
            "fling_responses_total{code=\"4xx\"} %llu\n"
            "fling_responses_total{code=\"5xx\"} %llu\n",
        (unsigned long long)m->responses[FL_M_2XX], (unsigned long long)m->responses[FL_M_4XX],
        (unsigned long long)m->responses[FL_M_5XX]);
    metric(&b, "fling_requests_truncated_total", "counter",
           "Requests cut short by EOF, reset or the read deadline; never enqueued.", m->requests_truncated);
    put(&b, "# HELP fling_requests_refused_total Requests answered with an error, by error code.\n"
            "# TYPE fling_requests_refused_total counter\n");
    for (size_t i = 0; i < FL_M_REASONS && m->refused[i].code; i++)
        put(&b, "fling_requests_refused_total{reason=\"%s\"} %llu\n", m->refused[i].code,
            (unsigned long long)m->refused[i].n);
    metric(&b, "fling_jobs_submitted_total", "counter", "Jobs committed and acknowledged with 202.",
           m->jobs_submitted);
    metric(&b, "fling_jobs_duplicate_total", "counter", "Submits answered with an existing job (Idempotency-Key).",
           m->jobs_duplicate);
    metric(&b, "fling_acks_delivered_total", "counter", "202 replies the client's TCP acknowledged.",
           m->acks_delivered);
    metric(&b, "fling_acks_aborted_total", "counter",
           "202 replies that could not be delivered: the job got status bit 1 (ABORTED).", m->acks_aborted);
    metric(&b, "fling_acks_unknown_total", "counter", "202 replies with no delivery verdict in time: no bit set.",
           m->acks_unknown);
    metric(&b, "fling_store_errors_total", "counter", "Requests answered 503 because the store failed.",
           m->store_errors);
    metric(&b, "fling_event_streams_open", "gauge", "GET /v1/events streams open now.", m->streams_open);
    metric(&b, "fling_event_streams_dropped_total", "counter",
           "Event streams closed because their client fell behind max_stream_buffer or the event ring.",
           m->streams_dropped);
    metric(&b, "fling_jobs_pruned_total", "counter",
           "Finished jobs deleted with their payloads and deliveries ([store] retention, POST /v1/prune).",
           m->jobs_pruned);
    metric(&b, "fling_store_pending", "gauge", "Store operations waiting for their commit.", g->store_pending);
    metric(&b, "fling_store_commits_total", "counter", "Store transactions committed.", g->store_commits);
    metric(&b, "fling_store_ops_total", "counter", "Store operations executed.", g->store_ops);
    metric(&b, "fling_store_failed_commits_total", "counter", "Store transactions rolled back on error.",
           g->store_failed_commits);
    metric(&b, "fling_jobs_running", "gauge", "Attempts running now.", g->jobs_running);
    metric(&b, "fling_job_attempts_total", "counter", "Attempts started.", g->attempts);
    put(&b, "# HELP fling_jobs_finished_total Attempts ended, by what became of the job.\n"
            "# TYPE fling_jobs_finished_total counter\n"
            "fling_jobs_finished_total{outcome=\"succeeded\"} %llu\n"
            "fling_jobs_finished_total{outcome=\"failed\"} %llu\n"
            "fling_jobs_finished_total{outcome=\"cancelled\"} %llu\n"
            "fling_jobs_finished_total{outcome=\"retried\"} %llu\n"
            "fling_jobs_finished_total{outcome=\"requeued\"} %llu\n",
        (unsigned long long)g->succeeded, (unsigned long long)g->failed, (unsigned long long)g->cancelled,
        (unsigned long long)g->retried, (unsigned long long)g->requeued);
    metric(&b, "fling_job_timeouts_total", "counter", "Attempts stopped by their time limit.", g->timed_out);
    put(&b, "# HELP fling_callbacks_total Callback delivery attempts, by outcome (retried: failed, due again; "
            "failed: failed, attempts spent).\n"
            "# TYPE fling_callbacks_total counter\n"
            "fling_callbacks_total{outcome=\"delivered\"} %llu\n"
            "fling_callbacks_total{outcome=\"retried\"} %llu\n"
            "fling_callbacks_total{outcome=\"failed\"} %llu\n",
        (unsigned long long)g->cb_delivered, (unsigned long long)g->cb_retried, (unsigned long long)g->cb_failed);
    metric(&b, "fling_callbacks_in_flight", "gauge", "Callback deliveries being attempted now.", g->cb_in_flight);
    if (g->has_redis)
        render_redis(&b, g);
    if (g->has_shared)
        render_shared(&b, m, g);
    render_types(&b, types, n_types);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

void fl_metrics_response(fl_metrics *m, int status)
{
    if (status >= 500)
        m->responses[FL_M_5XX]++;
    else if (status >= 400)
        m->responses[FL_M_4XX]++;
    else
        m->responses[FL_M_2XX]++;
}

void fl_metrics_refused(fl_metrics *m, const char *code)
{
    /* The last slot takes whatever does not fit: a new code is a bug, not a reason to lose counts. */
    size_t i = 0;
    while (i < FL_M_REASONS - 1 && m->refused[i].code && strcmp(m->refused[i].code, code) != 0)
        i++;
    if (!m->refused[i].code)
        m->refused[i].code = i == FL_M_REASONS - 1 ? "other" : code;
    m->refused[i].n++;
}
