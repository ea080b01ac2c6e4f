/* sched.h — decides which stored jobs run, and when: claims due jobs of each type from the store
 * (highest priority first, then oldest), within [workers] count and the type's concurrency,
 * runs each on a worker, and records each attempt's outcome: succeeded; retried after an
 * exponential back-off with equal jitter (backoff.h; state scheduled); failed once attempts are spent;
 * cancelled; or handed back to the queue at shutdown. An outcome the store fails to write (disk
 * full) is kept and written again with back-off until it commits; meanwhile its slot stays busy.
 * It wakes on commits, on finished
 * attempts and on a timer for the next scheduled run_at — it never polls the database.
 * Loop thread only. */
#ifndef FL_SCHED_H
#define FL_SCHED_H

#include <stddef.h>
#include <stdint.h>
#include <ev.h>
#include "config.h"
#include "job.h"
#include "metrics.h"
#include "store.h"

typedef struct fl_sched fl_sched;
struct fl_webhook;

/* fl_sched_new starts scheduling the types of cfg on loop with store, running http handlers
 * through webhook (NULL if no type needs it); every type is looked at once at start (jobs left
 * by a previous run). The changes it commits (claims, outcomes) reach the job's followers
 * through the store's events. progress(arg) runs when an attempt or its record ended (a
 * graceful stop may be complete). All borrowed for the scheduler's life. 0 or -ENOMEM. */
int fl_sched_new(fl_sched **out, struct ev_loop *loop, const fl_config *cfg, fl_store *store,
                 struct fl_webhook *webhook, void (*progress)(void *arg), void *arg);

/* fl_sched_committed tells the scheduler a new job was committed (queued: run soon;
 * scheduled: wake up at its run_at). job is borrowed for the call. */
void fl_sched_committed(fl_sched *s, const fl_job *job);

/* fl_sched_submitting is called right after the SUBMIT of a queued job of type was pushed to
 * the store (type borrowed for the call): if the type has a free slot, no claim in flight and
 * no job claimed ahead, its CLAIM is pushed at once, behind the SUBMIT, so that one commit
 * carries both (the caller corks the store around the two pushes) and the job starts without
 * waiting for a second one. */
void fl_sched_submitting(fl_sched *s, const char *type);

/* fl_sched_slots_changed says [workers] count or a type's concurrency changed (a reload): every
 * type may claim again at once, into the slots it now has. */
void fl_sched_slots_changed(fl_sched *s);

/* fl_sched_cancel stops the running attempt of job id; it then ends cancelled. 0, or -ENOENT if
 * no attempt of that job is running here. */
int fl_sched_cancel(fl_sched *s, int64_t id);

/* fl_sched_paused returns 1 if type is paused, 0 if not, -ENOENT if it is not configured. At
 * start the scheduler reads the paused types from the store (FL_STORE_PAUSE) and claims
 * nothing until it has them. */
int fl_sched_paused(const fl_sched *s, const char *type);

/* fl_sched_set_paused applies a pause (1) or resume (0) of type that the store committed: a
 * paused type starts no new attempt (those running go on); a resumed one claims at once. */
void fl_sched_set_paused(fl_sched *s, const char *type, int paused);

/* fl_sched_reload_paused reads the paused types from the store again and applies what changed
 * (another node's pauses and resumes, unheard while a shared database's listener was away);
 * asked while a read is under way, it reads once more after it. Claims go on meanwhile. A
 * no-op while stopping. */
void fl_sched_reload_paused(fl_sched *s);

/* fl_sched_stop starts a graceful stop: no new attempts; running ones get shutdown_grace
 * seconds, then are stopped and handed back to the queue (their attempt counted). Outcomes
 * waiting to be written again get one more write at once; one still unwritten when the loop
 * ends is dropped, and the next start's recovery re-queues its job (the attempt counted). */
void fl_sched_stop(fl_sched *s);

/* fl_sched_idle returns 1 when nothing runs and no claim or outcome write is in flight (an
 * outcome waiting on its back-off after a failed write does not hold a stop). */
int fl_sched_idle(const fl_sched *s);

/* Counters for /metrics. */
typedef struct fl_sched_stats {
    size_t running;
    uint64_t attempts, succeeded, failed, cancelled, retried, timed_out, requeued;
} fl_sched_stats;
void fl_sched_stats_get(const fl_sched *s, fl_sched_stats *out);

/* fl_sched_type_metrics fills out[i] (one per configured type, in config order) with the type's
 * name (borrowed), running count, attempt outcomes and durations. */
void fl_sched_type_metrics(const fl_sched *s, fl_metrics_type *out);

/* fl_sched_free releases s (after the loop ended); NULL is a no-op. */
void fl_sched_free(fl_sched *s);

#endif
