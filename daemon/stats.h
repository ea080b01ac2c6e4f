/* stats.h — gathers what GET /metrics shows from the modules that own it (flingd's counters,
 * the store, the scheduler, the callbacks, the Redis mirror, the queue depths a COUNT op read)
 * and hands it to metrics.c, which only renders. Loop thread only. */
#ifndef FL_STATS_H
#define FL_STATS_H

#include <stddef.h>
#include "callback.h"
#include "config.h"
#include "metrics.h"
#include "mirror.h"
#include "sched.h"
#include "store.h"

/* The sources, borrowed for the server's life; mirror and callbacks may be NULL (not configured). */
typedef struct fl_stats {
    const fl_config *cfg;
    const fl_metrics *metrics;
    fl_store *store;
    const fl_sched *sched;
    fl_mirror *mirror;
    const fl_callbacks *callbacks;
} fl_stats;

/* What GET /healthz reports beside flingd's own state: store_error = the negative errno the
 * store's writes last failed with (0: working), redis = -1 not configured, 0 not connected,
 * 1 connected. */
typedef struct fl_stats_health { int store_error; int redis; } fl_stats_health;
void fl_stats_health_get(const fl_stats *st, fl_stats_health *out);

/* fl_stats_render returns the Prometheus text of everything (*len bytes, caller frees), with the
 * per-type queue depths from rows[0..n) of a COUNT op, or NULL on ENOMEM. */
char *fl_stats_render(const fl_stats *st, const fl_store_count *rows, size_t n, size_t *len);

#endif
