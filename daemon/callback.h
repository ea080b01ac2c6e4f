/* callback.h — delivers the completion and abort callbacks the store records with every
 * terminal state (docs/protocol.md "Callbacks"): POSTs the job's JSON plus "event" to a URL through
 * webhook.c, or runs `exec:` a command with that JSON on its stdin through worker.c; signs
 * HTTP bodies with [callbacks] secret; retries with back-off until a 2xx (exit 0) or until
 * [callbacks] max_attempts are spent; records each attempt's result in the store.
 *
 * DESIGN. The deliveries table is the queue: nothing is kept only in memory. A TAKE op marks up
 * to `concurrency` due rows in flight and hands them over with their jobs; each attempt ends in
 * a DONE op. A restart resets rows left in flight (fl_store_recover), so a crash between a
 * terminal state and its callback delays the callback, never loses it (at-least-once: a
 * receiver may see an attempt twice and can tell by Fling-Delivery). Like the scheduler it
 * wakes on commits (fl_callbacks_kick), on finished attempts and on a timer for the next
 * retry, and never polls. The body is built when an attempt starts, and the first attempt of
 * a fresh job waits while its ABORTED bit may still change (fl_ack_when_final), so the
 * "status" a receiver reads is the final one. Loop thread only. */
#ifndef FL_CALLBACK_H
#define FL_CALLBACK_H

#include <ev.h>
#include <stdint.h>
#include "ack.h"
#include "config.h"
#include "job.h"
#include "store.h"

struct fl_webhook;

typedef struct fl_callbacks fl_callbacks;

/* fl_callbacks_needed returns 1 if cfg allows any callback (a [callbacks] allow prefix or a
 * type hook); without one no delivery can ever exist. */
int fl_callbacks_needed(const fl_config *cfg);

/* fl_callbacks_hook is the store's fl_store_hook_fn: the on_complete/on_abort target of type
 * (arg is the fl_config), or NULL. Safe on any thread (the config is read-only). */
const char *fl_callbacks_hook(const void *arg, const char *type, int abort);

/* fl_callbacks_new starts delivering on loop with cfg, store and webhook (which must exist); a
 * fresh job's first attempt waits for its final status through ack; progress(arg) runs when an
 * attempt or a store op of it ended (a graceful stop may be complete). All borrowed for the
 * deliverer's life. Deliveries left pending by an earlier run are looked at once at start.
 * 0 or -ENOMEM. */
int fl_callbacks_new(fl_callbacks **out, struct ev_loop *loop, const fl_config *cfg, fl_store *store,
                     struct fl_webhook *webhook, fl_ack *ack, void (*progress)(void *arg), void *arg);

/* fl_callbacks_job_changed tells the deliverer a job changed: a terminal state brings new
 * deliveries, a status change completes the body of an attempt that waits for it. */
void fl_callbacks_job_changed(fl_callbacks *cb, const fl_job *job);

/* fl_callbacks_due tells the deliverer that deliveries may be due which no change of this node
 * announced: on a shared database, those a node that is gone left in flight (freed by a
 * sweep, see store_pg.c) or never took. It takes again soon. */
void fl_callbacks_due(fl_callbacks *cb);

/* fl_callbacks_stop starts no new attempt (graceful stop); those in flight go on. */
void fl_callbacks_stop(fl_callbacks *cb);

/* fl_callbacks_idle returns 1 when no attempt or store op of cb is in flight. */
int fl_callbacks_idle(const fl_callbacks *cb);

/* Counters for /metrics: attempts by outcome and deliveries in flight. */
typedef struct fl_callbacks_stats {
    uint64_t delivered, retried, failed;
    size_t in_flight;
} fl_callbacks_stats;
void fl_callbacks_stats_get(const fl_callbacks *cb, fl_callbacks_stats *out);

/* fl_callbacks_close, after the loop ended and before the webhook and the scheduler go away,
 * abandons every attempt still sending (its row stays in flight in the store and is due again
 * at the next start: at-least-once); ops the store still runs then only free memory.
 * fl_callbacks_free (after fl_store_close, which runs those ops) frees cb. NULL is a no-op. */
void fl_callbacks_close(fl_callbacks *cb);
void fl_callbacks_free(fl_callbacks *cb);

#endif
