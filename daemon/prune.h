/* prune.h — retention ([store] retention): finished jobs older than it are deleted from the
 * store with their payloads and callback deliveries, in small batches off the request path.
 * One PRUNE op of FL_STORE_PRUNE_BATCH jobs at a time, one per FL_PRUNE_BUSY second while
 * there is a backlog, one per FL_PRUNE_IDLE seconds once caught up: each batch joins a store
 * group like any other op, so a submit never waits behind a giant delete. The Redis mirror is
 * not touched: its hashes expire by [redis] retention. Loop thread only. */
#ifndef FL_PRUNE_H
#define FL_PRUNE_H

#include <ev.h>
#include <stdint.h>

#include "metrics.h"
#include "store.h"

/* Seconds between batches while a full batch was deleted, and once fewer were. */
#define FL_PRUNE_BUSY 1.0
#define FL_PRUNE_IDLE 60.0

typedef struct fl_prune fl_prune;

/* fl_prune_new starts deleting, on loop, the jobs of store that finished more than
 * retention_secs ago (0 = keep everything: nothing runs), counting them in
 * metrics->jobs_pruned. Every pointer borrowed for the pruner's life. 0 or -ENOMEM. */
int fl_prune_new(fl_prune **out, struct ev_loop *loop, fl_store *store, long retention_secs,
                 fl_metrics *metrics);

/* fl_prune_set_retention changes the retention (a reload): 0 stops pruning, another value
 * starts the next batch soon with it. Not after fl_prune_stop. */
void fl_prune_set_retention(fl_prune *p, long retention_secs);

/* fl_prune_stop starts no further batch (one in flight still completes). */
void fl_prune_stop(fl_prune *p);

/* fl_prune_free releases p once the store has reaped its last op (after fl_store_close);
 * NULL is a no-op. */
void fl_prune_free(fl_prune *p);

#endif
