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
 * one heard. Loop thread only. */
#ifndef FL_REMOTE_H
#define FL_REMOTE_H

#include <stddef.h>
#include <stdint.h>
#include "metrics.h"
#include "store.h"

typedef struct fl_remote fl_remote;

/* report(job, ev, arg): the row of a job after another node's change ev (borrowed for the call). */
typedef void (*fl_remote_fn)(const fl_job *job, fl_store_event ev, void *arg);

/* fl_remote_new reads rows through store (borrowed; it must outlive every read) and reports
 * them to report with arg; metrics (borrowed) gets the changes heard and the rows read. 0 or
 * -ENOMEM. */
int fl_remote_new(fl_remote **out, fl_store *store, fl_metrics *metrics, fl_remote_fn report, void *arg);

/* fl_remote_changed: another node committed change ev of job id; read at the next flush. */
void fl_remote_changed(fl_remote *r, int64_t id, fl_store_event ev);

/* fl_remote_flush reads the jobs heard since the last flush (the caller calls it after each
 * wake of the listener). */
void fl_remote_flush(fl_remote *r);

/* fl_remote_free releases r after the store reaped its last read (fl_store_close); NULL is a
 * no-op. */
void fl_remote_free(fl_remote *r);

#endif
