/* receiver.h — an in-process HTTP/1.1 receiver for integration tests: flingd (a separate
 * process) is pointed at http://127.0.0.1:PORT/..., the receiver answers each request with a
 * programmed status (optionally late) and records it, and the test checks what arrived.
 * Ownership: the receiver owns every flr_request and every string in it until flr_stop();
 * flr_url() returns a string the caller frees. Every function but flr_stop() may be called from
 * any thread while the receiver runs. */
#ifndef FL_RECEIVER_H
#define FL_RECEIVER_H

#include <stddef.h>

typedef struct flr_receiver flr_receiver;

typedef struct flr_header_field {
    char *name;              /* as sent */
    char *value;             /* blanks around it trimmed */
} flr_header_field;

typedef struct flr_request {
    char *method;            /* "POST" */
    char *path;              /* the request target as sent: "/hook?x=1" */
    char *version;           /* "HTTP/1.1" */
    flr_header_field *headers;   /* in arrival order */
    size_t n_headers;
    char *body;              /* body_len bytes and a NUL, so a text body is a C string */
    size_t body_len;
    int status;              /* the status it was answered with */
    double at;               /* when it was complete: CLOCK_MONOTONIC seconds, as flh_now() */
} flr_request;

/* flr_start binds 127.0.0.1 on a free port and serves on its own thread; every request is
 * answered 200 with the body "received" until told otherwise. NULL on failure (errno set);
 * stop it with flr_stop(). */
flr_receiver *flr_start(void);
/* flr_stop ends the thread, closes every connection and frees the receiver and all it recorded
 * (every flr_request pointer dies with it). flr_stop(NULL) is a no-op. */
void flr_stop(flr_receiver *r);

/* flr_port returns the TCP port the receiver listens on. */
int flr_port(const flr_receiver *r);
/* flr_url returns "http://127.0.0.1:PORT/path" (path with or without its leading '/') in a
 * malloc'd string the caller frees, or NULL when out of memory. */
char *flr_url(const flr_receiver *r, const char *path);

/* flr_set_statuses programs the answers from now on: the i-th request after this call gets
 * statuses[i], every later one gets then ({500, 500} then 200: fails twice, then accepts). The
 * array is copied. 0, or -ENOMEM (the previous program stays). */
int flr_set_statuses(flr_receiver *r, const int *statuses, size_t n, int then);
/* flr_set_delay makes every later answer wait seconds after its request arrived (time-out
 * tests); 0 answers at once. Other connections are served meanwhile. */
void flr_set_delay(flr_receiver *r, double seconds);

/* flr_count returns how many complete requests have arrived. */
size_t flr_count(flr_receiver *r);
/* flr_wait blocks until at least n requests have arrived or timeout_ms passed: 0, or -1 on
 * time-out. */
int flr_wait(flr_receiver *r, size_t n, int timeout_ms);
/* flr_get returns the i-th request in arrival order (borrowed until flr_stop), or NULL if
 * fewer have arrived. */
const flr_request *flr_get(flr_receiver *r, size_t i);
/* flr_header returns the value of req's first header called name (any case), or NULL if it has
 * none; borrowed from req. */
const char *flr_header(const flr_request *req, const char *name);

#endif
