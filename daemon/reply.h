/* reply.h — the bytes of every reply flingd sends to a request: status line, headers and body
 * in one buffer (so it leaves in one send), JSON bodies, the errors {"error","message"}, and
 * the three answers of a submit: 202 Accepted, 200 for a duplicate, 200 for a waited job.
 * This is the one place to change how any of them looks. No I/O: the connection writes
 * req->resp. */
#ifndef FL_REPLY_H
#define FL_REPLY_H

#include <jansson.h>
#include <stddef.h>
#include "req.h"

/* fl_reply sets req's reply (replacing any earlier one) with body_len bytes of body, Content-Type
 * ctype and the extra header lines in extra (each ending in CRLF; NULL = none); a
 * Connection: close is added when req closes after it. Out of memory, the reply is a static
 * 503 and req closes after it. */
void fl_reply(fl_req *req, int status, const char *ctype, const char *extra, const char *body, size_t body_len);

/* fl_reply_stream sets req's reply to the head of a 200 streamed reply of Content-Type ctype:
 * no length, its body lasts until the connection closes (req must not be keep-alive). */
void fl_reply_stream(fl_req *req, const char *ctype, const char *extra);

/* fl_reply_json sets req's reply to obj as compact JSON (takes obj; NULL means out of memory: a
 * 503 error reply). */
void fl_reply_json(fl_req *req, int status, json_t *obj, const char *extra);

/* fl_reply_error sets req's reply to an error {"error":code,"message":…} and keeps the status,
 * code (a static string) and message in req for the log line of a refused request. */
void fl_reply_error(fl_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* fl_reply_accepted sets req's reply to the 202 of a committed submit (job id, its state) and
 * marks it in req->ack_id: its delivery decides the job's ABORTED bit. */
void fl_reply_accepted(fl_req *req, int64_t id, fl_state state);

/* fl_reply_duplicate sets req's reply to the 200 of a submit whose Idempotency-Key matched job
 * id (in state). */
void fl_reply_duplicate(fl_req *req, int64_t id, fl_state state);

/* fl_reply_waited sets req's reply to the 200 of an attached submit whose job ended (job is
 * borrowed for the call). */
void fl_reply_waited(fl_req *req, const fl_job *job);

#endif
