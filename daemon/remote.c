/* remote.c — other nodes' changes as this node's events (see remote.h). */
#include "remote.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "log.h"

/* Buckets of the jobs waiting or being read, by id: a power of two. */
#define FL_REMOTE_BUCKETS 1024
/* Ids per read: the most one fl_store_get_many takes. */
#define FL_REMOTE_BATCH 1000

/* One job whose change is to be read, or being read. */
typedef struct remote_job {
    fl_list node;               /* its bucket */
    fl_list link;               /* r->waiting, or its batch's jobs */
    int64_t id;
    fl_store_event ev;          /* the last change heard */
    int reading;                /* in a batch under way */
    int again;                  /* a change was heard while it was read: read once more */
    int refresh;                /* no change heard, only read again for its waiters */
} remote_job;

/* One read under way: the ids of up to FL_REMOTE_BATCH jobs. */
typedef struct remote_batch {
    fl_store_op op;
    fl_remote *r;
    fl_list jobs;               /* remote_job.link, in the order heard */
    int64_t ids[FL_REMOTE_BATCH];
} remote_batch;

struct fl_remote {
    fl_store *store;
    fl_metrics *metrics;
    fl_remote_hooks hooks;
    fl_list waiting;            /* remote_job.link: heard, to read at the next flush */
    fl_list buckets[FL_REMOTE_BUCKETS];
    int64_t skipped[FL_REMOTE_SKIP_MEMORY];   /* the ids of skipped changes, by their low bits */
};

int fl_remote_new(fl_remote **out, fl_store *store, fl_metrics *metrics, const fl_remote_hooks *hooks)
{
    fl_remote *r = calloc(1, sizeof *r);

    *out = NULL;
    if (!r)
        return -ENOMEM;
    r->store = store;
    r->metrics = metrics;
    r->hooks = *hooks;
    fl_list_init(&r->waiting);
    for (size_t i = 0; i < FL_REMOTE_BUCKETS; i++)
        fl_list_init(&r->buckets[i]);
    *out = r;
    return 0;
}

static fl_list *bucket(fl_remote *r, int64_t id)
{
    return &r->buckets[(uint64_t)id & (FL_REMOTE_BUCKETS - 1)];
}

static remote_job *find(fl_remote *r, int64_t id)
{
    fl_list *n, *tmp, *b = bucket(r, id);

    fl_list_each(n, tmp, b) {
        remote_job *j = fl_list_entry(n, remote_job, node);
        if (j->id == id)
            return j;
    }
    return NULL;
}

static void drop(remote_job *j)
{
    fl_list_remove(&j->node);
    fl_list_remove(&j->link);
    free(j);
}

/* row_of finds job id among the n rows of a read (sorted by id), or NULL. */
static const fl_job *row_of(fl_job *const *rows, size_t n, int64_t id)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rows[mid]->id == id)
            return rows[mid];
        if (rows[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void read_done(fl_store_op *op)
{
    remote_batch *b = op->udata;
    fl_remote *r = b->r;
    fl_list *n, *tmp;

    if (op->result < 0)
        fl_log(LOG_WARNING, "cannot read the changes other nodes made to %lld and more: %s; not reported here",
               (long long)b->ids[0], strerror(-op->result));
    /* In the order heard; a job not found was pruned meanwhile: nothing left to report. */
    fl_list_each(n, tmp, &b->jobs) {
        remote_job *j = fl_list_entry(n, remote_job, link);
        const fl_job *row = op->result ? NULL : row_of(op->u.get.jobs, op->u.get.n_jobs, j->id);
        if (row && j->refresh)
            r->hooks.refreshed(row, r->hooks.arg);
        else if (row)
            r->hooks.report(row, j->ev, r->hooks.arg);
        if (!j->again || op->result) {
            drop(j);
            continue;
        }
        fl_list_remove(&j->link);
        j->reading = j->again = 0;
        fl_list_push_tail(&r->waiting, &j->link);
    }
    fl_store_list_free(op->u.get.jobs, op->u.get.n_jobs);
    free(b);
    fl_remote_flush(r);
}

/* enqueue makes job id wait for the next flush. */
static void enqueue(fl_remote *r, int64_t id, fl_store_event ev, int refresh)
{
    remote_job *j = calloc(1, sizeof *j);

    if (!j) {
        fl_log(LOG_WARNING, "job %lld: out of memory to read another node's change; not reported here", (long long)id);
        return;
    }
    j->id = id;
    j->ev = ev;
    j->refresh = refresh;
    fl_list_push_tail(bucket(r, id), &j->node);
    fl_list_push_tail(&r->waiting, &j->link);
}

void fl_remote_changed(fl_remote *r, int64_t id, fl_store_event ev)
{
    remote_job *j = find(r, id);

    r->metrics->remote_changes++;
    if (j) {
        j->ev = ev;
        j->refresh = 0;
        j->again |= j->reading;   /* waiting: folded into the read to come */
        return;
    }
    if (!r->hooks.follows(id, r->hooks.arg)) {
        r->skipped[(uint64_t)id & (FL_REMOTE_SKIP_MEMORY - 1)] = id;
        r->metrics->remote_skipped++;
        return;
    }
    enqueue(r, id, ev, 0);
}

void fl_remote_refresh(fl_remote *r, int64_t id)
{
    remote_job *j = find(r, id);

    if (j)
        j->again |= j->reading;   /* a read to come is reported to its waiters too */
    else
        enqueue(r, id, FL_STORE_EV_SUBMITTED, 1);
}

void fl_remote_submitted(fl_remote *r, int64_t id)
{
    int64_t *slot = &r->skipped[(uint64_t)id & (FL_REMOTE_SKIP_MEMORY - 1)];

    if (*slot != id)
        return;
    *slot = 0;
    fl_remote_refresh(r, id);
    fl_remote_flush(r);
}

void fl_remote_flush(fl_remote *r)
{
    while (!fl_list_empty(&r->waiting)) {
        remote_batch *b = calloc(1, sizeof *b);
        size_t n = 0;
        fl_list *first;

        if (!b) {
            fl_log(LOG_WARNING, "out of memory to read other nodes' changes; tried again at the next one");
            return;
        }
        b->r = r;
        fl_list_init(&b->jobs);
        while (n < FL_REMOTE_BATCH && (first = fl_list_first(&r->waiting))) {
            remote_job *j = fl_list_entry(first, remote_job, link);
            fl_list_remove(&j->link);
            fl_list_push_tail(&b->jobs, &j->link);
            j->reading = 1;
            b->ids[n++] = j->id;
        }
        r->metrics->remote_reads += n;
        fl_store_get_many(r->store, &b->op, b->ids, n, read_done, b);
    }
}

void fl_remote_free(fl_remote *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < FL_REMOTE_BUCKETS; i++) {
        fl_list *n, *tmp;
        fl_list_each(n, tmp, &r->buckets[i])
            drop(fl_list_entry(n, remote_job, node));
    }
    free(r);
}
