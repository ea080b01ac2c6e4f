/* resp.c — the response parser: llhttp does the HTTP, this file keeps what libfling needs
 * (status, Location, body, keep-alive) and enforces the size bounds.
 *
 * DESIGN: llhttp would run on into a pipelined next response within one execute call, so
 * on_message_complete pauses the parser; the pause position tells how many bytes the response
 * took. The head bound is enforced by feeding llhttp at most the head bytes still allowed
 * while the head is incomplete: a head can then never be longer than FL_RESP_HEAD_MAX. */
#include "resp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Appends n bytes to the NUL-terminated buffer *buf of *len bytes (capacity *cap), up to max. */
static int append(char **buf, size_t *len, size_t *cap, const char *at, size_t n, size_t max)
{
    if (n > max - *len)
        return -EMSGSIZE;
    if (*len + n + 1 > *cap) {
        size_t want = *cap ? *cap : 256;
        while (want < *len + n + 1)
            want *= 2;
        if (want > max + 1)
            want = max + 1;
        char *p = realloc(*buf, want);
        if (!p)
            return -ENOMEM;
        *buf = p;
        *cap = want;
    }
    memcpy(*buf + *len, at, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static fl_proto_resp *of(llhttp_t *p)
{
    return p->data;
}

/* Records err and stops llhttp with a user error. */
static int fail(fl_proto_resp *r, int err)
{
    r->err = err;
    return -1;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    fl_proto_resp *r = of(p);
    size_t room = sizeof r->field - r->field_len;
    memcpy(r->field + r->field_len, at, n < room ? n : room);
    /* A name longer than the buffer is no name we look for: keep it over-long. */
    r->field_len = n < room ? r->field_len + n : sizeof r->field;
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    fl_proto_resp *r = of(p);
    r->field_is_location = r->field_len == 8 && strncasecmp(r->field, "location", 8) == 0;
    r->field_len = 0;
    if (r->field_is_location) {
        /* A repeated Location replaces the earlier one. */
        r->location_len = 0;
        if (r->location)
            r->location[0] = '\0';
    }
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    fl_proto_resp *r = of(p);
    if (!r->field_is_location)
        return 0;
    int rc = append(&r->location, &r->location_len, &r->location_cap, at, n, FL_RESP_HEAD_MAX);
    return rc < 0 ? fail(r, rc) : 0;
}

static int on_headers_complete(llhttp_t *p)
{
    fl_proto_resp *r = of(p);
    r->in_head = 0;
    r->status = p->status_code;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > FL_RESP_BODY_MAX)
        return fail(r, -EMSGSIZE);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    fl_proto_resp *r = of(p);
    int rc = append(&r->body, &r->body_len, &r->body_cap, at, n, FL_RESP_BODY_MAX);
    return rc < 0 ? fail(r, rc) : 0;
}

/* Forgets an interim (1xx) response so that the final one is parsed in its place. */
static void skip_interim(fl_proto_resp *r)
{
    free(r->location);
    r->location = NULL;
    r->location_len = 0;
    r->location_cap = 0;
    r->body_len = 0;
    r->head_bytes = 0;
    r->in_head = 1;
}

static int on_message_complete(llhttp_t *p)
{
    fl_proto_resp *r = of(p);
    if (r->status >= 100 && r->status < 200 && r->status != 101) {
        skip_interim(r);
        return 0;
    }
    r->keep_alive = llhttp_should_keep_alive(p);
    r->complete = 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void fl_proto_resp_init(fl_proto_resp *r)
{
    memset(r, 0, sizeof *r);
    llhttp_init(&r->parser, HTTP_RESPONSE, &settings);
    r->parser.data = r;
    r->in_head = 1;
}

void fl_proto_resp_clear(fl_proto_resp *r)
{
    if (!r)
        return;
    free(r->location);
    free(r->body);
    r->location = NULL;
    r->body = NULL;
    r->location_cap = r->body_cap = 0;
}

void fl_proto_resp_reset(fl_proto_resp *r)
{
    fl_proto_resp_clear(r);
    fl_proto_resp_init(r);
}

/* Maps an llhttp outcome of one execute over n bytes to our return convention. */
static int finish_execute(fl_proto_resp *r, llhttp_errno_t e, const char *data, size_t n,
                          size_t *used)
{
    if (e == HPE_PAUSED && r->complete) {
        *used = (size_t)(llhttp_get_error_pos(&r->parser) - data);
        return 1;
    }
    if (e != HPE_OK) {
        if (r->err == 0)
            r->err = -EPROTO;
        return r->err;
    }
    *used = n;
    return 0;
}

int fl_proto_resp_feed(fl_proto_resp *r, const char *data, size_t len, size_t *used)
{
    size_t done = 0;
    *used = 0;
    if (r->err)
        return r->err;
    if (r->complete)
        return -EINVAL;
    while (done < len) {
        size_t n = len - done;
        if (r->in_head) {
            if (r->head_bytes >= FL_RESP_HEAD_MAX)
                return r->err = -EMSGSIZE;
            if (n > FL_RESP_HEAD_MAX - r->head_bytes)
                n = FL_RESP_HEAD_MAX - r->head_bytes;
        }
        int was_in_head = r->in_head;
        size_t step = 0;
        llhttp_errno_t e = llhttp_execute(&r->parser, data + done, n);
        int rc = finish_execute(r, e, data + done, n, &step);
        if (was_in_head && r->in_head)
            r->head_bytes += step;
        done += step;
        if (rc != 0) {
            *used = done;
            return rc;
        }
    }
    *used = done;
    return 0;
}

char *fl_proto_resp_take_body(fl_proto_resp *r, size_t *len)
{
    char *b = r->body;
    *len = r->body_len;
    r->body = NULL;
    r->body_len = r->body_cap = 0;
    return b;
}

int fl_proto_resp_eof(fl_proto_resp *r)
{
    if (r->err)
        return r->err;
    if (r->complete)
        return 1;
    llhttp_errno_t e = llhttp_finish(&r->parser);
    if (r->complete)
        return 1;
    if (e != HPE_OK || r->in_head == 0 || r->head_bytes > 0)
        return r->err = -EPROTO;
    return 0;
}
