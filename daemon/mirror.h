/* mirror.h — the Redis status mirror ([redis] url): every committed job change becomes, in one
 * Lua script run atomically by Redis, the hash {prefix}job:{id}, a move in the per-state hash
 * {prefix}counts and a PUBLISH of the job's JSON on {prefix}events. hiredis's async API on the
 * libev loop; nothing here blocks the loop.
 *
 * DESIGN. SQLite is the truth and the mirror may lag or miss writes: while Redis is away,
 * changes are dropped and counted, the connection is retried with back-off, and every new
 * connection (the first one too) first brings the mirror up to date from the store: it pages
 * through the jobs changed since the watermark {prefix}mirror synced_at (minus clock slack)
 * re-applying with the same script each that Redis does not hold as it is (the script leaves
 * a hash whose every field already matches alone, and publishes nothing for it), then overwrites
 * {prefix}counts with the store's absolute counts. Live changes keep flowing meanwhile; the store reaps its ops in push order
 * and Redis runs one connection's commands in order, so nothing older overwrites anything newer.
 * The script reads the hash's old state before it moves the counts, which makes re-applying a
 * change harmless. Loop thread only. */
#ifndef FL_MIRROR_H
#define FL_MIRROR_H

#include <stddef.h>
#include <stdint.h>
#include "job.h"
#include "store.h"

struct ev_loop;

typedef struct fl_mirror fl_mirror;

/* What /metrics shows of the mirror. */
typedef struct fl_mirror_stats {
    int connected;          /* 1 once a connection is authenticated and the script loaded */
    double lag_seconds;     /* age of the oldest change sent and not yet acknowledged, or 0 */
    uint64_t errors;        /* failed connects, lost connections, error replies */
    uint64_t dropped;       /* changes that never reached Redis (disconnected, or lost in flight) */
    uint64_t writes;        /* changes (live and catch-up) and count resets Redis acknowledged */
} fl_mirror_stats;

/* fl_mirror_new parses url (fl_redis_url_parse) and starts connecting to it on loop. loop and
 * store are borrowed and must outlive the mirror; prefix is copied. on_idle(arg) runs on the
 * loop after fl_mirror_stop whenever the last change in flight has been answered or dropped.
 * Returns 0 and *out (free with fl_mirror_free), or -EINVAL (bad url, reason in err) or -ENOMEM.
 * A Redis that cannot be reached is not an error: the mirror keeps retrying. */
int fl_mirror_new(fl_mirror **out, struct ev_loop *loop, fl_store *store, const char *url,
                  const char *prefix, long retention, void (*on_idle)(void *arg), void *arg,
                  char *err, size_t errlen);

/* fl_mirror_job_changed sends job's state after a committed change (job and event borrowed for
 * the call; event is the name published with it, e.g. "started"), or counts it dropped when
 * Redis is not connected. Call in commit order. */
void fl_mirror_job_changed(fl_mirror *m, const fl_job *job, const char *event);

/* fl_mirror_hold_catch_up makes every catch-up (a connection's, fl_mirror_catch_up's) wait for
 * fl_mirror_release_catch_up; changes are mirrored meanwhile. On a database that other nodes
 * share, a catch-up read before this node hears their changes would miss those committed
 * between its read and that moment. */
void fl_mirror_hold_catch_up(fl_mirror *m);
void fl_mirror_release_catch_up(fl_mirror *m);

/* fl_mirror_catch_up: the changes committed since (wall clock, ms) may not all have been
 * reported (another node's, while this node did not hear of them): the mirror re-applies every
 * job changed since then, as after a reconnect, now if it is connected, not catching up already
 * and not held, else right after. */
void fl_mirror_catch_up(fl_mirror *m, int64_t since);

/* fl_mirror_idle returns 1 when no change waits for Redis's answer. */
int fl_mirror_idle(const fl_mirror *m);

/* fl_mirror_stop ends reconnecting and catching up (the daemon is stopping); changes still
 * reported are sent if connected. Idempotent. */
void fl_mirror_stop(fl_mirror *m);

/* fl_mirror_stats_get fills *out for /metrics. */
void fl_mirror_stats_get(const fl_mirror *m, fl_mirror_stats *out);

/* fl_mirror_free closes the connection (replies still in flight are dropped) and frees m; call
 * it after fl_store_close, which may still reap the mirror's store ops. NULL is a no-op. */
void fl_mirror_free(fl_mirror *m);

#endif
