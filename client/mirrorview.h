/* mirrorview.h — the fling CLI's read-only view of flingd's Redis mirror (README.md "Redis
 * mirror"): connect where a Redis URL (proto/redisurl.h) says, read a job's hash back as the JSON
 * GET /v1/jobs/{id} gives, and follow the events channel message by message. Synchronous
 * hiredis plus jansson; used by the fling binary only, so libfling stays libc-only. */
#ifndef FL_MIRRORVIEW_H
#define FL_MIRRORVIEW_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "rediskeys.h"

#define FL_MVIEW_DEFAULT_URL "redis://127.0.0.1:6379/0"   /* redis-server's own default */
#define FL_MVIEW_DEFAULT_PREFIX FL_PROTO_REDIS_DEFAULT_PREFIX   /* the daemon's [redis] prefix default */

/* fl_mview_connect parses url, connects within timeout_ms (also the bound on each command's
 * reply), then sends AUTH and SELECT as the URL asks: 0 with *out (the caller frees it with
 * redisFree), -EINVAL for a bad URL, -ECONNREFUSED if Redis cannot be reached, -EACCES if it
 * refused AUTH or SELECT, -ENOMEM. err gets one line saying why, without the password. */
int fl_mview_connect(const char *url, int timeout_ms, redisContext **out, char *err, size_t errlen);

/* fl_mview_job reads the hash {prefix}job:{id}: 0 with *out, a JSON object shaped like the
 * daemon's job (the caller json_decref's it); -ENOENT if there is no such hash, -EIO if Redis
 * failed or answered with an error, -EBADMSG if a field is malformed, -ENOMEM; err says which. */
int fl_mview_job(redisContext *rc, const char *prefix, int64_t id, json_t **out,
                 char *err, size_t errlen);

/* fl_mview_subscribe subscribes rc to {prefix}events: 0, or -EIO with err set. Afterwards rc
 * is only good for fl_mview_next_message. */
int fl_mview_subscribe(redisContext *rc, const char *prefix, char *err, size_t errlen);

/* fl_mview_next_message waits for the next message of the subscription, with the signal mask
 * wait_mask in force while it sleeps (ppoll): 0 with *msg (NUL-terminated, malloc'd, the caller
 * frees it) and *len; -EINTR if a signal came first; -EIO if the connection was lost or broke
 * the protocol (err says), -ENOMEM. */
int fl_mview_next_message(redisContext *rc, const sigset_t *wait_mask, char **msg, size_t *len,
                          char *err, size_t errlen);

/* fl_mview_event_line turns one events message into one output line ending in '\n': with
 * as_json the message itself (on one line), else "TIME ID TYPE EVENT[ state=S] status=N
 * attempts=A/M[ error="…"]", TIME being the event's "updated_at" if it has one, else the local
 * receipt time (UTC, milliseconds). 0 with *line (malloc'd, the caller frees it); 1 if type is
 * not NULL and the job is of another type (no line); -EBADMSG if msg is not a JSON object with
 * string "id", "type" and "event"; -ENOMEM. */
int fl_mview_event_line(const char *msg, size_t len, const char *type, int as_json, char **line);

#endif
