/* ack.c — the ledger of 202 verdicts and ABORTED bits (see ack.h). */
#include "ack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Buckets start at this many and double when the entries outnumber them. */
#define FL_ACK_BUCKETS_MIN 64
/* Settled entries kept for reuse (a 202 then costs no allocation here); beyond this many, freed. */
#define FL_ACK_SPARE_MAX 256

typedef struct entry {
    struct entry *next;          /* the bucket's chain */
    int64_t id;
    int n;                       /* 202s awaiting their verdict + ABORTED bits not committed */
    fl_ack_probe_fn probe;       /* the holder of the 202, or NULL */
    void *probe_ctx;
    fl_list waits;               /* fl_ack_wait.node */
} entry;

/* An ABORTED bit on its way to the store. */
typedef struct abort_op {
    fl_store_op op;
    fl_ack *ack;
} abort_op;

struct fl_ack {
    fl_store *store;
    fl_metrics *metrics;
    entry **buckets;
    size_t n_buckets;            /* a power of two */
    size_t n_entries;
    entry *spare;                /* chained by next */
    size_t n_spare;
};

static size_t bucket_of(const fl_ack *a, int64_t id)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;   /* Fibonacci hashing: ids are sequential */
    return (size_t)(h >> 32) & (a->n_buckets - 1);
}

static entry **slot_of(const fl_ack *a, int64_t id)
{
    entry **p = &a->buckets[bucket_of(a, id)];
    while (*p && (*p)->id != id)
        p = &(*p)->next;
    return p;
}

/* Doubles the table; a failure leaves it as it was (longer chains, still correct). */
static void grow(fl_ack *a)
{
    size_t n = a->n_buckets * 2;
    entry **b = calloc(n, sizeof *b);
    if (!b)
        return;
    entry **old = a->buckets;
    size_t n_old = a->n_buckets;
    a->buckets = b;
    a->n_buckets = n;
    for (size_t i = 0; i < n_old; i++) {
        for (entry *e = old[i], *next; e; e = next) {
            next = e->next;
            size_t k = bucket_of(a, e->id);
            e->next = b[k];
            b[k] = e;
        }
    }
    free(old);
}

/* Adds one pending thing to id's entry, creating it. NULL on ENOMEM. */
static entry *hold(fl_ack *a, int64_t id)
{
    entry **p = slot_of(a, id);
    if (!*p) {
        entry *e = a->spare;
        if (e) {
            a->spare = e->next;
            a->n_spare--;
            *e = (entry){ 0 };
        } else if (!(e = calloc(1, sizeof *e))) {
            return NULL;
        }
        e->id = id;
        fl_list_init(&e->waits);
        *p = e;
        if (++a->n_entries > a->n_buckets)
            grow(a);
        p = slot_of(a, id);
    }
    (*p)->n++;
    return *p;
}

/* Removes one pending thing from id's entry; the last one makes the id final: its waits run. */
static void release(fl_ack *a, int64_t id)
{
    entry **p = slot_of(a, id);
    entry *e = *p;
    if (!e || --e->n > 0)
        return;
    *p = e->next;
    a->n_entries--;
    fl_list *pos, *tmp;
    fl_list_each(pos, tmp, &e->waits) {
        fl_ack_wait *w = fl_list_entry(pos, fl_ack_wait, node);
        fl_list_remove(pos);
        w->cb(w);
    }
    if (a->n_spare < FL_ACK_SPARE_MAX) {
        e->next = a->spare;
        a->spare = e;
        a->n_spare++;
    } else {
        free(e);
    }
}

int fl_ack_new(fl_ack **out, fl_store *store, fl_metrics *metrics)
{
    fl_ack *a = malloc(sizeof *a);
    entry **buckets = calloc(FL_ACK_BUCKETS_MIN, sizeof *buckets);
    if (!a || !buckets) {
        free(a);
        free(buckets);
        return -ENOMEM;
    }
    *a = (fl_ack){ .store = store, .metrics = metrics, .buckets = buckets, .n_buckets = FL_ACK_BUCKETS_MIN };
    *out = a;
    return 0;
}

int fl_ack_expect(fl_ack *a, int64_t id, fl_ack_probe_fn probe, void *ctx)
{
    entry *e = hold(a, id);
    if (!e) {
        fl_log(LOG_WARNING, "job %lld: out of memory tracking the delivery of its 202", (long long)id);
        return -ENOMEM;
    }
    e->probe = probe;
    e->probe_ctx = ctx;
    return 0;
}

void fl_ack_settle(fl_ack *a, int64_t id, fl_ack_verdict v)
{
    entry *e = *slot_of(a, id);
    if (e)
        e->probe = NULL;   /* the 202 is judged: its holder has nothing more to tell */
    if (v == FL_ACK_DELIVERED)
        a->metrics->acks_delivered++;
    else if (v == FL_ACK_UNKNOWN)
        a->metrics->acks_unknown++;
    else
        fl_ack_aborted(a, id);
    if (e)
        release(a, id);
}

static void abort_done(fl_store_op *op)
{
    abort_op *ab = (abort_op *)op;
    fl_ack *a = ab->ack;
    if (op->result < 0)
        fl_log(LOG_WARNING, "job %lld: could not record status ABORTED: %s", (long long)op->u.set_status.id,
               strerror(-op->result));
    release(a, op->u.set_status.id);
    fl_job_free(op->u.set_status.job);
    free(ab);
}

void fl_ack_aborted(fl_ack *a, int64_t id)
{
    a->metrics->acks_aborted++;
    abort_op *ab = calloc(1, sizeof *ab);
    if (!ab || !hold(a, id)) {
        free(ab);
        fl_log(LOG_WARNING, "job %lld: out of memory recording status ABORTED", (long long)id);
        return;
    }
    ab->ack = a;
    fl_store_set_status(a->store, &ab->op, id, FL_STATUS_ABORTED, abort_done, ab);
}

int fl_ack_pending(const fl_ack *a, int64_t id)
{
    return *slot_of(a, id) != NULL;
}

int fl_ack_when_final(fl_ack *a, fl_ack_wait *w, int64_t id, void (*cb)(fl_ack_wait *w), void *udata)
{
    entry *e = *slot_of(a, id);
    if (e && e->probe)
        e->probe(e->probe_ctx, id);   /* may settle it, and free e */
    if (!(e = *slot_of(a, id)))
        return 0;
    w->cb = cb;
    w->udata = udata;
    fl_list_push_tail(&e->waits, &w->node);
    return 1;
}

void fl_ack_cancel(fl_ack_wait *w)
{
    if (w->node.next)   /* a zeroed wait was never linked */
        fl_list_remove(&w->node);
}

void fl_ack_free(fl_ack *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_buckets; i++) {
        for (entry *e = a->buckets[i], *next; e; e = next) {
            next = e->next;
            fl_list *pos, *tmp;
            fl_list_each(pos, tmp, &e->waits)
                fl_list_remove(pos);
            free(e);
        }
    }
    for (entry *e = a->spare, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    free(a->buckets);
    free(a);
}
