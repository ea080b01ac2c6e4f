/* cancel.c — what a committed CANCEL means (see cancel.h). */
#include "cancel.h"

fl_cancel_result fl_cancel_settle(const fl_cancel *c, const fl_store_op *op)
{
    if (op->result < 0)
        return FL_CANCEL_FAILED;
    switch (op->answer) {
    case FL_STORE_OK:
        return FL_CANCEL_DONE;
    case FL_STORE_RUNNING:
        /* Running on another node: the store told that node to stop it. Not running here
         * otherwise means its attempt is ending right now (its outcome is being recorded): it
         * ends as that outcome says. */
        if (op->u.cancel.elsewhere)
            return FL_CANCEL_STOPPING;
        return fl_sched_cancel(c->sched, op->u.cancel.id) == 0 ? FL_CANCEL_STOPPING : FL_CANCEL_ENDED;
    case FL_STORE_NOT_FOUND:
        return FL_CANCEL_NOT_FOUND;
    default:
        return FL_CANCEL_ENDED;
    }
}
