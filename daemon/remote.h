/* remote.h — the changes other nodes of a shared database committed, turned into this node's
 * change events: the store's listener reports each as a job id and an event
 * (fl_store_remote.changed), this module reads the rows back and hands each to report, which
 * the daemon wires to the attached clients, the event streams and the Redis mirror, never to
 * the scheduler or the callbacks (the node that made the change acts on it).
 *
 * Volume: the ids heard in one wake of the listener (fl_remote_changed ... fl_remote_flush)
 * are read in one statement per 1,000 (fl_store_get_many, on a store reader when the store has
 * them, so the reads do not lengthen the writer's groups). A change heard while that job is
 * still waiting for its read is folded into it; one heard while its read is under way is read
 * once more, after it, so the last state is never missed: a job that starts and ends in quick
 * succession costs one or two reads, not one per change, and the event reported is the last
 * one heard.
 *
 * Only what this node follows is read: a change of a job that nothing here follows (no Redis
 * mirror, no event stream open, no client attached to it: the follows hook says) is skipped and
 * counted, not read. A client attaches to a job only at its submit on this node, whose commit
 * other nodes hear of only once it is done; but their changes may still be heard before this
 * node reaps its own submit, and skipped: the last FL_REMOTE_SKIP_MEMORY skipped ids are kept,
 * and fl_remote_submitted reads a job of those again for its waiters. An event stream opened
 * later wants only the changes after it opened.
 *
 * A listener that was away heard nothing meanwhile: fl_remote_refresh reads the jobs that
 * clients here wait on once more, for them alone (the refreshed hook), not as a change.
 * Loop thread only. */
#ifndef FL_REMOTE_H
#define FL_REMOTE_H

#include <stddef.h>
#include <stdint.h>
#include "metrics.h"
#include "store.h"

typedef struct fl_remote fl_remote;

/* The ids remembered as skipped, by their low bits: ids come from one sequence, so these are
 * the last this many jobs' ids (a power of two). */
#define FL_REMOTE_SKIP_MEMORY 4096

/* What the rows read go to, each called with arg (rows borrowed for the call):
 * report(job, ev): the row of a job after another node's change ev;
 * follows(id): 1 if anything on this node follows job id (a change of it is read), 0 to skip it;
 * refreshed(job): the row of a job read again by fl_remote_refresh or fl_remote_submitted, for
 * the clients waiting on it. */
typedef struct fl_remote_hooks {
    void (*report)(const fl_job *job, fl_store_event ev, void *arg);
    int (*follows)(int64_t id, void *arg);
    void (*refreshed)(const fl_job *job, void *arg);
    void *arg;
} fl_remote_hooks;

/* fl_remote_new reads rows through store (borrowed; it must outlive every read) and hands them
 * to hooks (copied); metrics (borrowed) gets the changes heard, skipped, and the rows read. 0
 * or -ENOMEM. */
int fl_remote_new(fl_remote **out, fl_store *store, fl_metrics *metrics, const fl_remote_hooks *hooks);

/* fl_remote_changed: another node committed change ev of job id; read at the next flush. */
void fl_remote_changed(fl_remote *r, int64_t id, fl_store_event ev);

/* fl_remote_refresh: job id is read again at the next flush for the clients waiting on it
 * (this node's listener was away: its changes meanwhile were not heard). */
void fl_remote_refresh(fl_remote *r, int64_t id);

/* fl_remote_submitted: this node's own submit of job id was reaped (a client may attach to it
 * now): if a change of it was skipped, it is read again, at once, for its waiters. */
void fl_remote_submitted(fl_remote *r, int64_t id);

/* fl_remote_flush reads the jobs heard since the last flush (the caller calls it after each
 * wake of the listener). */
void fl_remote_flush(fl_remote *r);

/* fl_remote_free releases r after the store reaped its last read (fl_store_close); NULL is a
 * no-op. */
void fl_remote_free(fl_remote *r);

#endif
