/* rediskeys.h — the layout of flingd's Redis mirror, shared by the writer (daemon/mirror.c) and
 * the readers (client/mirrorview.c: fling status --redis, fling watch): key names, the fields
 * of a job's hash, and the event names published with each change. Renaming anything here
 * renames it on both sides at once. Pure: no hiredis, no sockets.
 *
 *   {prefix}job:{id}   hash, the fields below; expires `retention` after a terminal state
 *   {prefix}counts     hash, state name -> number of jobs in it
 *   {prefix}events     channel, the job's JSON plus "event" per change
 *   {prefix}mirror     hash, synced_at: the newest updated_at (ms) applied */
#ifndef FL_PROTO_REDISKEYS_H
#define FL_PROTO_REDISKEYS_H

#include <stddef.h>
#include <stdint.h>

#define FL_PROTO_REDIS_DEFAULT_PREFIX "fling:"   /* [redis] prefix when unset */
/* Longer prefixes are a configuration mistake; the bound keeps key buffers on the stack. */
#define FL_PROTO_REDIS_PREFIX_MAX 200
#define FL_PROTO_REDIS_KEY_MAX (FL_PROTO_REDIS_PREFIX_MAX + 16 + 24)

/* Key names after the prefix. */
#define FL_PROTO_REDIS_JOB     "job:"
#define FL_PROTO_REDIS_COUNTS  "counts"
#define FL_PROTO_REDIS_EVENTS  "events"
#define FL_PROTO_REDIS_MIRROR  "mirror"
#define FL_PROTO_REDIS_SYNCED_AT "synced_at"   /* the field of {prefix}mirror */

/* The fields of {prefix}job:{id}, as string literals (the mirror's Lua script is built from
 * them). Times are the job JSON's ISO strings; "" stands for the JSON's null. */
#define FL_PROTO_RF_ID           "id"
#define FL_PROTO_RF_TYPE         "type"
#define FL_PROTO_RF_STATE        "state"
#define FL_PROTO_RF_STATUS       "status"
#define FL_PROTO_RF_ATTEMPTS     "attempts"
#define FL_PROTO_RF_MAX_ATTEMPTS "max_attempts"
#define FL_PROTO_RF_CREATED_AT   "created_at"
#define FL_PROTO_RF_STARTED_AT   "started_at"
#define FL_PROTO_RF_FINISHED_AT  "finished_at"
#define FL_PROTO_RF_UPDATED_AT   "updated_at"
#define FL_PROTO_RF_EXIT_CODE    "exit_code"
#define FL_PROTO_RF_ERROR        "error"

/* The same fields by index, in the order of the daemon's job JSON. */
typedef enum fl_proto_redis_field {
    FL_PROTO_REDIS_F_ID, FL_PROTO_REDIS_F_TYPE, FL_PROTO_REDIS_F_STATE, FL_PROTO_REDIS_F_STATUS,
    FL_PROTO_REDIS_F_ATTEMPTS, FL_PROTO_REDIS_F_MAX_ATTEMPTS, FL_PROTO_REDIS_F_CREATED_AT,
    FL_PROTO_REDIS_F_STARTED_AT, FL_PROTO_REDIS_F_FINISHED_AT, FL_PROTO_REDIS_F_UPDATED_AT,
    FL_PROTO_REDIS_F_EXIT_CODE, FL_PROTO_REDIS_F_ERROR,
    FL_PROTO_REDIS_FIELDS
} fl_proto_redis_field;

/* How a field's value reads: text or a decimal integer; "optional" ones may be "" (null). */
typedef enum fl_proto_redis_kind {
    FL_PROTO_REDIS_TEXT, FL_PROTO_REDIS_OPTIONAL_TEXT, FL_PROTO_REDIS_INTEGER, FL_PROTO_REDIS_OPTIONAL_INTEGER
} fl_proto_redis_kind;

typedef struct fl_proto_redis_field_def {
    const char *name;
    fl_proto_redis_kind kind;
} fl_proto_redis_field_def;

/* fl_proto_redis_fields[f] names and types field f of a job's hash. */
extern const fl_proto_redis_field_def fl_proto_redis_fields[FL_PROTO_REDIS_FIELDS];

/* The key of the event name in the JSON published on {prefix}events, and the names themselves:
 * the state a job entered, or what happened to it. */
#define FL_PROTO_EVENT_KEY       "event"
#define FL_PROTO_EVENT_SUBMITTED "submitted"
#define FL_PROTO_EVENT_STARTED   "started"
#define FL_PROTO_EVENT_RETRYING  "retrying"    /* failed, scheduled again */
#define FL_PROTO_EVENT_REQUEUED  "requeued"    /* stopped by a shutdown, queued again */
#define FL_PROTO_EVENT_STATUS    "status"      /* its status bits changed */
#define FL_PROTO_EVENT_RETRIED   "retried"     /* failed or cancelled, queued again by a retry */
#define FL_PROTO_EVENT_SYNC      "sync"        /* re-applied by a catch-up after a reconnect */
/* ... and "succeeded", "failed", "cancelled": fl_proto_state_name of the terminal state. */

/* fl_proto_redis_key writes {prefix}{name} into out (size bytes): its length, or -ENAMETOOLONG
 * if it does not fit. */
int fl_proto_redis_key(char *out, size_t size, const char *prefix, const char *name);

/* fl_proto_redis_job_key writes {prefix}job:{id} into out: its length, or -ENAMETOOLONG. */
int fl_proto_redis_job_key(char *out, size_t size, const char *prefix, int64_t id);

#endif
