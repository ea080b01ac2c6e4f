/* ack.h — the delivery verdict of every 202 and the ABORTED status bit it decides. A 202 that
 * did not reach its client (or the departure of a waiting client) sets status bit 1 of its
 * job; until that is settled — the 202 judged delivered, aborted or unknown, and an ABORTED bit
 * committed — the job's status may still change, and callbacks wait for it (when_final).
 *
 * DESIGN. A small hash of job ids with something pending: the number of 202s awaiting their
 * verdict plus ABORTED bits pushed but not committed, and the waiters for the id to become
 * final. Lookups are O(1); nothing walks connections. The holder of a 202 whose verdict comes
 * from a socket can register a probe, called when someone starts waiting, so it can settle
 * at once what the socket already knows. Loop thread only. */
#ifndef FL_ACK_H
#define FL_ACK_H

#include <stdint.h>
#include "job.h"
#include "list.h"
#include "metrics.h"
#include "store.h"

typedef struct fl_ack fl_ack;

/* The verdict of one 202. */
typedef enum fl_ack_verdict {
    FL_ACK_DELIVERED,    /* the client acknowledged its last byte */
    FL_ACK_ABORTED,      /* it did not reach the client: the job gets status bit 1 */
    FL_ACK_UNKNOWN       /* no verdict within the bound: no bit set */
} fl_ack_verdict;

/* Asks the holder of id's 202 to judge it now if it can (calls fl_ack_settle from inside). */
typedef void (*fl_ack_probe_fn)(void *ctx, int64_t id);

/* One wait for an id to become final, owned by the caller (embedded in its struct). */
typedef struct fl_ack_wait {
    fl_list node;                /* in its id's entry; unlinked when not waiting */
    void (*cb)(struct fl_ack_wait *w);
    void *udata;                 /* the caller's */
} fl_ack_wait;

/* fl_ack_new makes the ledger: it pushes SET_STATUS ops to store (whose events tell the job's
 * followers of the new bit) and counts acks_* in metrics. Both are borrowed and must outlive
 * it. 0 or -ENOMEM. */
int fl_ack_new(fl_ack **out, fl_store *store, fl_metrics *metrics);

/* fl_ack_expect records that a 202 for job id is on its way to its client: id is pending until
 * fl_ack_settle. probe(ctx, id) (may be NULL) is how to ask for the verdict early; ctx must stay
 * valid until the settle. 0, or -ENOMEM (id is then not tracked: callbacks do not wait). */
int fl_ack_expect(fl_ack *a, int64_t id, fl_ack_probe_fn probe, void *ctx);

/* fl_ack_settle gives the verdict of an expected 202 of id and counts it; ABORTED also does
 * what fl_ack_aborted does. */
void fl_ack_settle(fl_ack *a, int64_t id, fl_ack_verdict v);

/* fl_ack_aborted counts an undelivered 202 (or a waiting client's departure) of job id and
 * pushes status bit 1 (ABORTED) to the store; id stays pending until it is committed. */
void fl_ack_aborted(fl_ack *a, int64_t id);

/* fl_ack_pending returns 1 while the ABORTED bit of job id may still change. O(1). */
int fl_ack_pending(const fl_ack *a, int64_t id);

/* fl_ack_when_final arranges for w->cb(w) to run once job id's status is final, after probing
 * the holders of its 202. Returns 1 if w now waits, or 0 if the status is final already (w->cb
 * never runs then). w is borrowed while it waits; cancel with fl_ack_cancel. */
int fl_ack_when_final(fl_ack *a, fl_ack_wait *w, int64_t id, void (*cb)(fl_ack_wait *w), void *udata);

/* fl_ack_cancel stops w waiting; a w that does not wait is left as it is. */
void fl_ack_cancel(fl_ack_wait *w);

/* fl_ack_free releases a (after the store is closed: its ops reference a); waits still linked
 * are unlinked, never called. NULL is a no-op. */
void fl_ack_free(fl_ack *a);

#endif
