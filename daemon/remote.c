/* remote.c — other nodes' changes as this node's events (see remote.h). */
#include "remote.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "log.h"

/* Buckets of the reads under way, by job id: a power of two. */
#define FL_REMOTE_BUCKETS 1024

/* One job's read under way. */
typedef struct remote_read {
    fl_store_op op;             /* first: the GET's callback gets the op */
    fl_list node;               /* its bucket */
    fl_remote *r;
    int64_t id;
    fl_store_event ev;          /* the last change heard */
    int again;                  /* a change was heard after the GET was pushed: read once more */
} remote_read;

struct fl_remote {
    fl_store *store;
    fl_metrics *metrics;
    fl_remote_fn report;
    void *arg;
    fl_list buckets[FL_REMOTE_BUCKETS];
};

int fl_remote_new(fl_remote **out, fl_store *store, fl_metrics *metrics, fl_remote_fn report, void *arg)
{
    fl_remote *r = calloc(1, sizeof *r);

    *out = NULL;
    if (!r)
        return -ENOMEM;
    r->store = store;
    r->metrics = metrics;
    r->report = report;
    r->arg = arg;
    for (size_t i = 0; i < FL_REMOTE_BUCKETS; i++)
        fl_list_init(&r->buckets[i]);
    *out = r;
    return 0;
}

static fl_list *bucket(fl_remote *r, int64_t id)
{
    return &r->buckets[(uint64_t)id & (FL_REMOTE_BUCKETS - 1)];
}

static remote_read *find(fl_remote *r, int64_t id)
{
    fl_list *n, *tmp, *b = bucket(r, id);

    fl_list_each(n, tmp, b) {
        remote_read *rd = fl_list_entry(n, remote_read, node);
        if (rd->id == id)
            return rd;
    }
    return NULL;
}

static void read_done(fl_store_op *op);

static void push_read(remote_read *rd)
{
    rd->again = 0;
    rd->r->metrics->remote_reads++;
    fl_store_get(rd->r->store, &rd->op, rd->id, read_done, rd);
}

static void read_done(fl_store_op *op)
{
    remote_read *rd = op->udata;
    fl_remote *r = rd->r;

    if (op->result < 0)
        fl_log(LOG_WARNING, "job %lld: cannot read the change another node made: %s; not reported here",
               (long long)rd->id, strerror(-op->result));
    else if (op->answer == FL_STORE_OK)
        r->report(op->u.get.job, rd->ev, r->arg);
    /* NOT_FOUND: pruned meanwhile, nothing left to report. */
    fl_job_free(op->u.get.job);
    fl_store_deliveries_free(op->u.get.deliveries, op->u.get.n_deliveries);
    if (rd->again && op->result == 0) {
        push_read(rd);
        return;
    }
    fl_list_remove(&rd->node);
    free(rd);
}

void fl_remote_changed(fl_remote *r, int64_t id, fl_store_event ev)
{
    remote_read *rd = find(r, id);

    r->metrics->remote_changes++;
    if (rd) {
        rd->ev = ev;
        rd->again = 1;
        return;
    }
    if (!(rd = calloc(1, sizeof *rd))) {
        fl_log(LOG_WARNING, "job %lld: out of memory to read another node's change; not reported here", (long long)id);
        return;
    }
    rd->r = r;
    rd->id = id;
    rd->ev = ev;
    fl_list_push_tail(bucket(r, id), &rd->node);
    push_read(rd);
}

void fl_remote_free(fl_remote *r)
{
    free(r);
}
