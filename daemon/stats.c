/* stats.c — samples every module's counters for /metrics (see stats.h). */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

void fl_stats_health_get(const fl_stats *st, fl_stats_health *out)
{
    fl_store_stats ss;
    fl_store_stats_get(st->store, &ss);
    out->store_error = ss.failing;
    out->redis = -1;
    if (st->mirror) {
        fl_mirror_stats ms;
        fl_mirror_stats_get(st->mirror, &ms);
        out->redis = ms.connected;
    }
}

/* The gauges owned by the store, the scheduler, the mirror and the callbacks, sampled now. */
static void gauges(const fl_stats *st, fl_metrics_gauges *g)
{
    fl_store_stats ss;
    fl_store_stats_get(st->store, &ss);
    fl_sched_stats sc;
    fl_sched_stats_get(st->sched, &sc);
    *g = (fl_metrics_gauges){
        .store_pending = fl_store_pending(st->store),
        .store_commits = ss.commits, .store_ops = ss.ops, .store_failed_commits = ss.failed_commits,
        .jobs_running = sc.running, .attempts = sc.attempts, .succeeded = sc.succeeded, .failed = sc.failed,
        .cancelled = sc.cancelled, .retried = sc.retried, .timed_out = sc.timed_out, .requeued = sc.requeued,
        .has_shared = ss.shared, .pg_claimed = ss.claimed, .pg_fenced = ss.fenced, .pg_orphans = ss.orphans,
        .pg_notifications = ss.notifications, .pg_round_trips = ss.round_trips,
        .pg_round_trip_seconds = ss.round_trip_seconds, .pg_following = ss.following, .pg_followed = ss.followed,
    };
    if (st->mirror) {
        fl_mirror_stats ms;
        fl_mirror_stats_get(st->mirror, &ms);
        g->has_redis = 1;
        g->redis_connected = ms.connected;
        g->redis_lag_seconds = ms.lag_seconds;
        g->redis_errors = ms.errors;
        g->redis_dropped = ms.dropped;
        g->redis_writes = ms.writes;
    }
    if (st->callbacks) {
        fl_callbacks_stats cs;
        fl_callbacks_stats_get(st->callbacks, &cs);
        g->cb_delivered = cs.delivered;
        g->cb_retried = cs.retried;
        g->cb_failed = cs.failed;
        g->cb_in_flight = cs.in_flight;
    }
}

char *fl_stats_render(const fl_stats *st, const fl_store_count *rows, size_t n_rows, size_t *len)
{
    fl_metrics_gauges g;
    gauges(st, &g);
    size_t n = st->cfg->n_types;
    fl_metrics_type *types = calloc(n ? n : 1, sizeof *types);
    if (!types)
        return NULL;
    fl_sched_type_metrics(st->sched, types);
    for (size_t i = 0; i < n_rows; i++) {
        const fl_store_count *c = &rows[i];
        for (size_t k = 0; k < n; k++) {
            if (strcmp(types[k].name, c->type) != 0)
                continue;
            if (c->state == FL_STATE_QUEUED)
                types[k].queued = c->n;
            else if (c->state == FL_STATE_SCHEDULED)
                types[k].scheduled = c->n;
        }
    }
    char *text = fl_metrics_render(st->metrics, &g, types, n, len);
    free(types);
    return text;
}
