/* resp.h — an incremental HTTP/1.1 response parser on llhttp, for libfling: feed it the bytes
 * as they arrive (one at a time or many responses at once) and it says when one response is
 * complete, with its status, Location, body and whether the connection may be reused.
 * Pure: no sockets. Sizes are bounded so a broken or hostile server cannot make it grow. */
#ifndef FL_RESP_H
#define FL_RESP_H

#include <stddef.h>
#include "llhttp.h"

#define FL_RESP_HEAD_MAX (16 * 1024)         /* status line and headers: as the daemon's limit */
#define FL_RESP_BODY_MAX (16 * 1024 * 1024)  /* a job's JSON is small; a list page is bounded */

/* One response being parsed. The results are valid once fl_proto_resp_feed returned 1; the
 * rest is the parser's. Not to be copied or moved once init'ed: the llhttp parser inside
 * points back at it. */
typedef struct fl_proto_resp {
    int status;                  /* HTTP status code */
    int keep_alive;              /* 1 if the connection may carry another request */
    char *location;              /* Location header, NUL-terminated, or NULL; owned */
    size_t location_len;
    char *body;                  /* body, NUL-terminated, or NULL if empty; owned */
    size_t body_len;
    /* private */
    llhttp_t parser;
    size_t head_bytes;           /* bytes fed before the head was complete */
    size_t location_cap;
    size_t body_cap;
    int in_head;                 /* the head is still being read */
    int field_is_location;       /* the header being read is Location */
    char field[16];              /* the current header name, enough to recognise "Location" */
    size_t field_len;
    int complete;                /* a whole response was parsed */
    int err;                     /* sticky negative errno once parsing failed */
} fl_proto_resp;

/* fl_proto_resp_init prepares r for its first response. */
void fl_proto_resp_init(fl_proto_resp *r);

/* fl_proto_resp_reset frees what r owns and prepares it for the next response. */
void fl_proto_resp_reset(fl_proto_resp *r);

/* fl_proto_resp_clear frees what r owns (location, body); r must be init'ed again for reuse. */
void fl_proto_resp_clear(fl_proto_resp *r);

/* fl_proto_resp_feed parses len bytes of data: 1 when a response is complete (*used = the bytes
 * of data it took; the rest belong to the next response), 0 when it needs more (*used = len),
 * -EMSGSIZE past FL_RESP_HEAD_MAX or FL_RESP_BODY_MAX, -EPROTO for bytes that are not an HTTP
 * response, -ENOMEM. Errors are sticky; after 1, call fl_proto_resp_reset before feeding more. */
int fl_proto_resp_feed(fl_proto_resp *r, const char *data, size_t len, size_t *used);

/* fl_proto_resp_take_body returns the body (NUL-terminated, or NULL if empty) and its length in
 * *len; the caller frees it and r forgets it. */
char *fl_proto_resp_take_body(fl_proto_resp *r, size_t *len);

/* fl_proto_resp_eof tells r that the peer closed: 1 if that completes a response whose body
 * runs to the end of the connection, -EPROTO if a response was cut short, 0 if none had begun. */
int fl_proto_resp_eof(fl_proto_resp *r);

#endif
