/* periodic.h — periodic types ([type.NAME] schedule = CRON): a job of the type, with its
 * periodic_payload, is enqueued at each slot of its schedule. Each slot is submitted with the
 * Idempotency-Key "cron:<slot>" (the slot's Unix time, 12 digits), so the store takes it at
 * most once, whatever restarts, retries or other nodes do. At start the last slot enqueued is
 * read back from the store (the greatest such key): if slots passed while flingd was down,
 * only the last of them is enqueued, once; a type that never ran starts with its next slot.
 * A submit the store refuses (disk full) is tried again with the daemon's back-off (backoff.c:
 * FL_PERIODIC_RETRY_BASE doubling up to FL_PERIODIC_RETRY_MAX seconds, equal jitter) until it
 * commits or a newer slot replaces it. Loop thread only. */
#ifndef FL_PERIODIC_H
#define FL_PERIODIC_H

#include <ev.h>

#include "config.h"
#include "store.h"

#define FL_PERIODIC_RETRY_BASE 0.5
#define FL_PERIODIC_RETRY_MAX 30.0
#define FL_PERIODIC_KEY_PREFIX "cron:"

typedef struct fl_periodic fl_periodic;

/* fl_periodic_new starts the schedules of cfg's periodic types on loop, submitting into store
 * (all borrowed for its life). 0 or -ENOMEM. */
int fl_periodic_new(fl_periodic **out, struct ev_loop *loop, const fl_config *cfg, fl_store *store);

/* fl_periodic_stop enqueues nothing more (a submit in flight still completes). A reload that
 * changes schedules stops the old fl_periodic and starts a new one, which reads the last slot
 * enqueued from the store again: the idempotency keys keep a slot from running twice. */
void fl_periodic_stop(fl_periodic *p);

/* fl_periodic_free releases p once the store has reaped its last op (after fl_store_close);
 * NULL is a no-op. */
void fl_periodic_free(fl_periodic *p);

#endif
