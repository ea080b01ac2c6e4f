/* fling.c — libfling: sockets for the requests that proto/encode.c builds and the replies
 * that proto/resp.c parses. libc and pthread only; the client rules of
 * docs/protocol.md "Detached clients".
 *
 * DESIGN: every socket is non-blocking and every wait is a poll() bounded by a deadline
 * (connect: connect_ms; send + reply: io_ms), so no call can hang. fling_fire opens a fresh
 * connection per job and ends with a plain close(): the kernel still delivers every byte it
 * took, then a FIN (SO_LINGER {1,0} or shutdown() would lose or cut the request).
 * fling_submit and fling_request share one kept-alive connection per client, under a mutex.
 * A kept connection may have been closed by the server while idle; that is only safe to find
 * out before the request leaves: an idle connection that polls readable (FIN, reset or stray
 * bytes) is replaced, and so is one whose first send() fails outright (the kernel took none
 * of the request). Once any byte was sent, the request is never sent again, whatever happens:
 * the daemon may have enqueued it, and a resend would enqueue it twice. */
#include "fling.h"

#include "encode.h"
#include "proto.h"
#include "resp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CONNECT_MS 3000  /* one dropped SYN costs 1 s, two cost 3 s */
#define DEFAULT_IO_MS 10000      /* a commit waits for an fsync; a busy disk takes seconds */
#define DEFAULT_PORT 80
#define UNIX_RETRY_MS 5          /* a full Unix listen backlog fails at once with EAGAIN: wait */
#define READ_CHUNK 16384         /* one recv; a submit's reply is a few hundred bytes */
#define HOST_NAME_MAX_LEN 253    /* the longest DNS name */
#define WAIT_GRACE_MS 10000      /* past Prefer: wait, the daemon still needs to commit and answer */
#define WAIT_TEXT 24             /* "wait=3600" and room */

struct fling_client {
    char *host;                  /* name to resolve at each connect, or NULL if addr is set */
    char port[8];                /* decimal, for getaddrinfo */
    char *host_header;           /* "host:port" as in the URL; "localhost" for a Unix socket */
    char *token;                 /* bearer token, or NULL */
    struct sockaddr_storage addr;/* an IP literal or Unix path, resolved once */
    socklen_t addr_len;          /* 0 when host must be resolved */
    atomic_int connect_ms;       /* read by fling_fire without the lock */
    atomic_int io_ms;
    pthread_mutex_t lock;        /* guards fd and every exchange on it */
    int fd;                      /* the kept-alive connection, or -1 */
};

/* ---- URL parsing ---------------------------------------------------------------------- */

static int parse_unix(fling_client *c, const char *path)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&c->addr;
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof un->sun_path)
        return -EINVAL;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, len + 1);
    c->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    c->host_header = strdup("localhost");
    return c->host_header ? 0 : -ENOMEM;
}

static int valid_host_name(const char *s, size_t len)
{
    if (len == 0 || len > HOST_NAME_MAX_LEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.'))
            return 0;
    }
    return 1;
}

/* Parses ":port" (or nothing, for the default), then an optional "/" and the end. */
static int parse_port(const char *s, int *port)
{
    *port = DEFAULT_PORT;
    if (*s == ':') {
        int v = 0, digits = 0;
        for (s++; *s >= '0' && *s <= '9' && digits < 6; s++, digits++)
            v = v * 10 + (*s - '0');
        if (digits == 0 || v < 1 || v > 65535)
            return -EINVAL;
        *port = v;
    }
    if (*s == '/')
        s++;
    return *s == '\0' ? 0 : -EINVAL;
}

/* Stores an IPv4 or IPv6 literal in c->addr; 0, or -EINVAL if host is a name. */
static int store_literal(fling_client *c, const char *host, int port)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)&c->addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&c->addr;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        c->addr_len = sizeof *in4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        c->addr_len = sizeof *in6;
        return 0;
    }
    return -EINVAL;
}

/* "http://" host [":" port] ["/"], host a name, an IPv4 literal or "[" IPv6 "]". */
static int parse_http(fling_client *c, const char *rest)
{
    const char *host = rest, *after;
    size_t host_len;
    int bracketed = rest[0] == '[';
    if (bracketed) {
        host = rest + 1;
        const char *close = strchr(host, ']');
        if (!close)
            return -EINVAL;
        host_len = (size_t)(close - host);
        after = close + 1;
    } else {
        host_len = strcspn(rest, ":/");
        after = rest + host_len;
    }
    int port;
    if (parse_port(after, &port) < 0 || host_len == 0 || host_len > HOST_NAME_MAX_LEN)
        return -EINVAL;
    char name[HOST_NAME_MAX_LEN + 1];
    memcpy(name, host, host_len);
    name[host_len] = '\0';
    int literal = store_literal(c, name, port) == 0;
    if (bracketed ? c->addr.ss_family != AF_INET6 : (!literal && !valid_host_name(name, host_len)))
        return -EINVAL;
    if (!literal && !(c->host = strdup(name)))
        return -ENOMEM;
    snprintf(c->port, sizeof c->port, "%d", port);
    size_t authority = strcspn(rest, "/");
    c->host_header = strndup(rest, authority);
    return c->host_header ? 0 : -ENOMEM;
}

static int parse_url(fling_client *c, const char *url)
{
    if (strncmp(url, "unix:", 5) == 0)
        return parse_unix(c, url + 5);
    if (strncmp(url, "http://", 7) == 0)
        return parse_http(c, url + 7);
    return -EINVAL;
}

static int valid_token(const char *t)
{
    size_t i = 0;
    for (; t[i]; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f || i >= FL_ENCODE_TOKEN_MAX)
            return 0;
    return 1;
}

/* ---- client lifetime ------------------------------------------------------------------ */

fling_client *fling_client_new(const char *url, const char *token)
{
    int err = -EINVAL;
    if (!url || (token && !valid_token(token))) {
        errno = EINVAL;
        return NULL;
    }
    fling_client *c = calloc(1, sizeof *c);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    c->fd = -1;
    atomic_init(&c->connect_ms, DEFAULT_CONNECT_MS);
    atomic_init(&c->io_ms, DEFAULT_IO_MS);
    if ((err = parse_url(c, url)) < 0)
        goto fail;
    if (token && token[0] && !(c->token = strdup(token))) {
        err = -ENOMEM;
        goto fail;
    }
    if ((err = -pthread_mutex_init(&c->lock, NULL)) < 0)
        goto fail;
    return c;
fail:
    free(c->host);
    free(c->host_header);
    free(c->token);
    free(c);
    errno = -err;
    return NULL;
}

void fling_client_free(fling_client *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    pthread_mutex_destroy(&c->lock);
    free(c->host);
    free(c->host_header);
    free(c->token);
    free(c);
}

/* Values <= 0 restore the defaults. */
void fling_client_set_timeouts(fling_client *c, int connect_ms, int io_ms)
{
    atomic_store(&c->connect_ms, connect_ms > 0 ? connect_ms : DEFAULT_CONNECT_MS);
    atomic_store(&c->io_ms, io_ms > 0 ? io_ms : DEFAULT_IO_MS);
}

/* ---- sockets under deadlines ---------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(int64_t deadline)
{
    int64_t left = deadline - now_ms();
    return left > 0 ? (int)left : 0;
}

/* Waits until fd reports events (or an error/hang-up): 0, -ETIMEDOUT, or -errno.
 * Polls at least once, so bytes already there are seen even past the deadline. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = events };
        int n = poll(&p, 1, left_ms(deadline));
        if (n > 0)
            return 0;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

/* Opens a non-blocking socket for sa and starts connect(): fd, or -errno. */
static int start_connect(const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (sa->sa_family != AF_UNIX &&
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        goto fail;
    while (connect(fd, sa, len) < 0) {
        if (errno == EINPROGRESS || errno == EINTR)
            return fd;       /* in progress: the caller polls for writability */
        if (errno != EAGAIN || sa->sa_family != AF_UNIX || left_ms(deadline) == 0)
            goto fail;
        (void)poll(NULL, 0, UNIX_RETRY_MS);  /* a sleep: its result says nothing */
    }
    return fd;
fail:;
    int err = -errno;
    close(fd);
    return err;
}

/* Connects to one address within the deadline: a connected fd, or -errno. */
static int connect_addr(const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
    int fd = start_connect(sa, len, deadline);
    if (fd < 0)
        return fd;
    int rc = wait_fd(fd, POLLOUT, deadline);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        rc = -errno;
    if (rc == 0 && soerr)
        rc = -soerr;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* Resolves the client's host name: 0 with *list set, FLING_ERESOLVE or FLING_ENOMEM. */
static int resolve(const fling_client *c, struct addrinfo **list)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV };
    int rc = getaddrinfo(c->host, c->port, &hints, list);
    if (rc == 0)
        return 0;
    return rc == EAI_MEMORY ? FLING_ENOMEM : FLING_ERESOLVE;
}

/* Opens a new connection to the client's address (each resolved one in turn, within one
 * connect deadline): fd, FLING_ERESOLVE, or FLING_ECONNECT with errno set to the last
 * connect error, which is what the caller's message needs. */
static int open_conn(const fling_client *c)
{
    int64_t deadline = now_ms() + atomic_load(&c->connect_ms);
    int fd = -ETIMEDOUT;
    if (c->addr_len) {
        fd = connect_addr((const struct sockaddr *)&c->addr, c->addr_len, deadline);
    } else {
        struct addrinfo *list = NULL;
        int rc = resolve(c, &list);
        if (rc < 0)
            return rc;
        for (struct addrinfo *a = list; a && fd < 0 && left_ms(deadline) > 0; a = a->ai_next)
            fd = connect_addr(a->ai_addr, a->ai_addrlen, deadline);
        freeaddrinfo(list);
    }
    if (fd >= 0)
        return fd;
    errno = -fd;
    return FLING_ECONNECT;
}

int fling_client_connect(const fling_client *c)
{
    return open_conn(c);
}

/* Sends all len bytes before the deadline; *sent counts what the kernel took. 0 or -errno. */
static int send_all(int fd, const char *buf, size_t len, int64_t deadline, size_t *sent)
{
    *sent = 0;
    while (*sent < len) {
        ssize_t n = send(fd, buf + *sent, len - *sent, MSG_NOSIGNAL);
        if (n > 0) {
            *sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = wait_fd(fd, POLLOUT, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Reads one response into r before the deadline: 0, FLING_ERECV (closed, reset, timeout),
 * FLING_EPROTO or FLING_ENOMEM. *extra is set if bytes followed the response. */
static int read_reply(int fd, fl_proto_resp *r, int64_t deadline, int *extra)
{
    char buf[READ_CHUNK];
    *extra = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLIN, deadline) < 0)
                return FLING_ERECV;
            continue;
        }
        if (n < 0)
            return FLING_ERECV;
        if (n == 0)
            return fl_proto_resp_eof(r) == 1 ? 0 : FLING_ERECV;  /* cut short or none at all */
        size_t used = 0;
        int rc = fl_proto_resp_feed(r, buf, (size_t)n, &used);
        if (rc == 1) {
            *extra = used < (size_t)n;
            return 0;
        }
        if (rc < 0)
            return rc == -ENOMEM ? FLING_ENOMEM : FLING_EPROTO;
    }
}

/* ---- exchanges on the kept connection ------------------------------------------------- */

static void drop_conn(fling_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* An idle kept connection has nothing to say: if it polls readable, the server closed or
 * reset it (or sent stray bytes), and it must not carry a request. */
static int idle_conn_usable(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, 0) == 0;
}

/* Sends req and reads its reply into r within io_ms, on the kept connection or a new one; see
 * DESIGN. 0 (a reply of any status), or FLING_ERESOLVE/ECONNECT/ESEND/ERECV/EPROTO/ENOMEM.
 * Caller holds lock. */
static int exchange(fling_client *c, const char *req, size_t len, int io_ms, fl_proto_resp *r)
{
    for (int attempt = 0;; attempt++) {
        int reused = c->fd >= 0;
        if (reused && !idle_conn_usable(c->fd)) {
            drop_conn(c);
            reused = 0;
        }
        if (c->fd < 0 && (c->fd = open_conn(c)) < 0) {
            int rc = c->fd;
            c->fd = -1;
            return rc;
        }
        int64_t deadline = now_ms() + io_ms;
        size_t sent;
        int send_rc = send_all(c->fd, req, len, deadline, &sent);
        if (send_rc < 0 && sent == 0 && reused && attempt == 0 && send_rc != -ETIMEDOUT) {
            drop_conn(c);    /* the kernel took nothing: the daemon cannot have it */
            continue;
        }
        int extra;
        int rc = read_reply(c->fd, r, deadline, &extra);
        if (send_rc < 0) {
            /* C5: an early error reply (413, 431) may explain the failed send */
            drop_conn(c);
            return rc == 0 ? 0 : FLING_ESEND;
        }
        if (rc < 0 || !r->keep_alive || extra)
            drop_conn(c);
        return rc;
    }
}

static int map_errno(int rc)
{
    return rc == -ENOMEM ? FLING_ENOMEM : FLING_EINVAL;
}

/* Turns the public options into proto's; the encoder then checks every value. */
static void to_proto_opts(const fling_job_opts *o, fl_proto_opts *p)
{
    memset(p, 0, sizeof *p);
    if (!o)
        return;
    p->has_timeout = o->timeout != 0;
    p->timeout = o->timeout;
    p->has_max_attempts = o->max_attempts != 0;
    p->max_attempts = o->max_attempts;
    p->has_delay = o->delay != 0;
    p->delay = o->delay;
    p->has_priority = o->has_priority;
    p->priority = o->priority;
    if (o->callback) {
        p->callback = o->callback;
        p->callback_len = strlen(o->callback);
    }
    if (o->idempotency_key) {
        p->idem_key = o->idempotency_key;
        p->idem_key_len = strlen(o->idempotency_key);
    }
}

/* Fills the attached-mode headers (Prefer, Fling-On-Disconnect) that opts asks for into h,
 * with their text in wait_text: how many, or FLING_EINVAL for a value out of range. */
static int attached_headers(const fling_job_opts *o, char wait_text[WAIT_TEXT], fl_proto_header *h)
{
    int n = 0;
    if (!o)
        return 0;
    if (o->wait) {
        if (o->wait < 1 || o->wait > FL_WAIT_MAX)
            return FLING_EINVAL;
        snprintf(wait_text, WAIT_TEXT, "wait=%d", o->wait);
        h[n++] = (fl_proto_header){ FL_HDR_PREFER, wait_text };
    }
    if (o->on_disconnect) {
        if (!o->wait || (strcmp(o->on_disconnect, "cancel") != 0 &&
                         strcmp(o->on_disconnect, "continue") != 0))
            return FLING_EINVAL;
        h[n++] = (fl_proto_header){ FL_HDR_ON_DISCONNECT, o->on_disconnect };
    }
    return n;
}

static int encode_job(const fling_client *c, const char *type, const void *payload, size_t len,
                      const fling_job_opts *opts, char **req, size_t *req_len)
{
    fl_proto_opts p;
    fl_proto_header extra[2];
    char wait_text[WAIT_TEXT];
    int n = attached_headers(opts, wait_text, extra);
    if (n < 0)
        return n;
    to_proto_opts(opts, &p);
    /* A detached submit has no extra header: pass none rather than the unset array. */
    int rc = fl_proto_encode_submit_extra(c->host_header, c->token, type, payload, len, &p,
                                          n ? extra : NULL, (size_t)n, req, req_len);
    return rc < 0 ? map_errno(rc) : 0;
}

/* The send + reply deadline of one exchange: an attached submit waits its wait (checked by
 * encode_job) and a grace. */
static int exchange_ms(const fling_client *c, const fling_job_opts *opts)
{
    int io = atomic_load(&c->io_ms);
    int attached = opts && opts->wait ? opts->wait * 1000 + WAIT_GRACE_MS : 0;
    return attached > io ? attached : io;
}

int fling_fire(fling_client *c, const char *type, const void *payload, size_t len,
               const fling_job_opts *opts)
{
    char *req;
    size_t req_len, sent;
    if (!c || (opts && (opts->wait || opts->on_disconnect)))
        return FLING_EINVAL;   /* attached mode needs a reader; fire never reads */
    int rc = encode_job(c, type, payload, len, opts, &req, &req_len);
    if (rc < 0)
        return rc;
    int fd = open_conn(c);
    if (fd < 0) {
        int connect_errno = errno;
        free(req);
        errno = connect_errno;
        return fd;
    }
    rc = send_all(fd, req, req_len, now_ms() + atomic_load(&c->io_ms), &sent);
    close(fd);               /* C2: a plain close, so the kernel delivers all it took */
    free(req);
    return rc < 0 ? FLING_ESEND : 0;
}

/* How a reply is read: submits take the job id from Location, and a 200 to an attached
 * submit is the finished job rather than a duplicate. */
enum reply_kind { REPLY_PLAIN, REPLY_SUBMIT, REPLY_ATTACHED };

/* Fills res from a parsed reply of the given kind. */
static int fill_response(fling_response *res, fl_proto_resp *r, enum reply_kind kind)
{
    res->status = r->status;
    res->body = fl_proto_resp_take_body(r, &res->body_len);
    if (r->status < 200 || r->status > 299)
        return FLING_EHTTP;
    if (kind == REPLY_PLAIN)
        return 0;
    static const char prefix[] = FL_PROTO_JOBS_PATH "/";
    size_t plen = sizeof prefix - 1;
    int64_t id;
    if (!r->location || r->location_len <= plen || memcmp(r->location, prefix, plen) != 0 ||
        fl_proto_parse_id(r->location + plen, r->location_len - plen, &id) < 0)
        return FLING_EPROTO;
    snprintf(res->id, sizeof res->id, "%lld", (long long)id);
    res->duplicate = r->status == 200 && kind == REPLY_SUBMIT;
    return 0;
}

/* Runs one exchange of at most io_ms under the lock and fills res (or a scratch response if
 * res is NULL). Takes req. */
static int round_trip(fling_client *c, char *req, size_t req_len, int io_ms,
                      enum reply_kind kind, fling_response *res)
{
    fling_response scratch;
    fling_response *out = res ? res : &scratch;
    fl_proto_resp r;
    memset(out, 0, sizeof *out);
    fl_proto_resp_init(&r);
    pthread_mutex_lock(&c->lock);
    int rc = exchange(c, req, req_len, io_ms, &r);
    int connect_errno = errno;
    pthread_mutex_unlock(&c->lock);
    free(req);
    if (rc == 0)
        rc = fill_response(out, &r, kind);
    fl_proto_resp_clear(&r);
    if (!res)
        fling_response_clear(&scratch);
    errno = connect_errno;   /* FLING_ECONNECT's reason, past unlock and free */
    return rc;
}

int fling_submit(fling_client *c, const char *type, const void *payload, size_t len,
                 const fling_job_opts *opts, fling_response *res)
{
    char *req;
    size_t req_len;
    if (res)
        memset(res, 0, sizeof *res);
    if (!c)
        return FLING_EINVAL;
    int rc = encode_job(c, type, payload, len, opts, &req, &req_len);
    if (rc < 0)
        return rc;
    return round_trip(c, req, req_len, exchange_ms(c, opts),
                      opts && opts->wait ? REPLY_ATTACHED : REPLY_SUBMIT, res);
}

int fling_request(fling_client *c, const char *method, const char *path,
                  const void *body, size_t len, fling_response *res)
{
    char *req;
    size_t req_len;
    if (res)
        memset(res, 0, sizeof *res);
    if (!c)
        return FLING_EINVAL;
    int rc = fl_proto_encode_request(c->host_header, c->token, method, path, body, len,
                                     &req, &req_len);
    if (rc < 0)
        return map_errno(rc);
    return round_trip(c, req, req_len, atomic_load(&c->io_ms), REPLY_PLAIN, res);
}

void fling_response_clear(fling_response *res)
{
    if (!res)
        return;
    free(res->body);
    memset(res, 0, sizeof *res);
}

const char *fling_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case FLING_EINVAL: return "invalid argument";
    case FLING_ENOMEM: return "out of memory";
    case FLING_ECONNECT: return "could not connect";
    case FLING_ERESOLVE: return "cannot resolve host";
    case FLING_ESEND: return "could not send the request";
    case FLING_ERECV: return "no reply";
    case FLING_EPROTO: return "reply not understood";
    case FLING_EHTTP: return "error reply";
    default: return "unknown error";
    }
}
