/* encode.h — the bytes of the requests libfling sends. Each request, head and body, is built
 * in ONE malloc'd buffer so the client can write it with one send (no Nagle stall, no
 * half-written head; docs/protocol.md "What the client does"). Inputs are checked with proto.h's rules first: nothing is
 * built that the daemon would refuse for its shape. Pure: no sockets, no globals. */
#ifndef FL_ENCODE_H
#define FL_ENCODE_H

#include <stddef.h>
#include "proto.h"

#define FL_ENCODE_HEAD_MAX (16 * 1024)  /* the daemon answers 431 past this many header bytes */
#define FL_ENCODE_HOST_MAX 300          /* a DNS name (253) plus brackets and a port */
#define FL_ENCODE_TOKEN_MAX 4096        /* a bearer token is a secret, not a document */
#define FL_ENCODE_PATH_MAX 8192         /* request target, query string included */
#define FL_ENCODE_EXTRA_MAX 4           /* extra headers of a submit: Prefer, Fling-On-Disconnect, room */

/* A header beyond the job options, such as "Prefer: wait=30". Both strings are borrowed. */
typedef struct fl_proto_header {
    const char *name;            /* an RFC 9110 token, not one the encoder writes itself */
    const char *value;           /* 1..n of visible ASCII and spaces: no CR/LF */
} fl_proto_header;

/* fl_proto_encode_submit builds "POST /v1/jobs/{type}" with Host, Content-Length, the optional
 * "Authorization: Bearer token" (token NULL or "" for none) and one header per option set in
 * opts (NULL for none), then the payload: 0 with *out malloc'd (the caller frees it) and
 * *out_len set, -EINVAL for a bad host, token, type or option value, -ENOMEM. */
int fl_proto_encode_submit(const char *host, const char *token, const char *type,
                           const void *payload, size_t len, const fl_proto_opts *opts,
                           char **out, size_t *out_len);

/* fl_proto_encode_submit_extra is fl_proto_encode_submit plus up to FL_ENCODE_EXTRA_MAX extra
 * headers after the options (extra may be NULL when nextra is 0): -EINVAL also for a malformed
 * extra header or one that repeats Host, Content-Length, Authorization or an option header. */
int fl_proto_encode_submit_extra(const char *host, const char *token, const char *type,
                                 const void *payload, size_t len, const fl_proto_opts *opts,
                                 const fl_proto_header *extra, size_t nextra,
                                 char **out, size_t *out_len);

/* fl_proto_encode_request builds any request: method (upper-case letters), path (starting with
 * '/', visible ASCII), Host, Content-Length when a body is given (body non-NULL or len > 0) or
 * the method is not GET/HEAD/DELETE, the optional bearer token, then the body: 0 with *out
 * malloc'd (the caller frees it), -EINVAL for a bad argument, -ENOMEM. */
int fl_proto_encode_request(const char *host, const char *token, const char *method,
                            const char *path, const void *body, size_t len,
                            char **out, size_t *out_len);

#endif
