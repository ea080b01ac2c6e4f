/* cancel.h — the one cancel policy, shared by DELETE /v1/jobs/{id} and the departure of a
 * waiting client with Fling-On-Disconnect: cancel. A job still waiting is cancelled by the
 * store (CANCEL); a running one is stopped by the scheduler and ends cancelled (on a shared
 * database, by the scheduler of the node that runs it, which the store tells); one that ended
 * already, or whose attempt is ending right now, is not cancellable. Loop thread only. */
#ifndef FL_CANCEL_H
#define FL_CANCEL_H

#include "job.h"
#include "sched.h"
#include "store.h"

/* What a cancel came to. */
typedef enum fl_cancel_result {
    FL_CANCEL_DONE,          /* it was waiting: now cancelled */
    FL_CANCEL_STOPPING,      /* it was running: being stopped, it ends cancelled */
    FL_CANCEL_ENDED,         /* already terminal, or its attempt was ending: it ends as it ends */
    FL_CANCEL_NOT_FOUND,
    FL_CANCEL_FAILED         /* the store failed (op->result) */
} fl_cancel_result;

/* What the policy acts on; borrowed, and must outlive every cancel. */
typedef struct fl_cancel {
    fl_sched *sched;
} fl_cancel;

/* fl_cancel_settle reads the answer of a reaped CANCEL op, stops a running job, and returns
 * what the cancel came to (the store already told the change of a job it cancelled);
 * op->u.cancel.job stays the caller's. */
fl_cancel_result fl_cancel_settle(const fl_cancel *c, const fl_store_op *op);

#endif
