/* flingbench.c — load generator for a running flingd, and, with the same loop, for the
 * reference servers bench/compare runs it against (Redis, beanstalkd, bench/sink). Modes:
 *   acked: C keep-alive connections, each sends one request, waits for its reply, repeats;
 *          reports jobs/s and ack latency percentiles. The URL's scheme picks the protocol:
 *          http:// (POST /v1/jobs/TYPE), redis:// (LPUSH, reply read by hiredis's reader),
 *          beanstalk:// (put).
 *   fire:  N senders, each looping connect → one send of the whole request → close() (FIN);
 *          reports the sending rate, then asks the daemon how many jobs it committed and how fast
 *          (--sink: a server that counts nothing; only the sending rate).
 *   e2e:   http: acked submits of --jobs N, then waits until the daemon counts them succeeded;
 *          beanstalk: each connection loops put → reserve → delete, one command in flight.
 *
 * DESIGN: the request is encoded once; every request leaves in one send() (TCP_NODELAY), so
 * neither Nagle nor encoding costs show up in the numbers. Acked mode spreads its connections
 * over a few threads (one per core by default), each running one level-triggered epoll loop
 * with exactly one request in flight per connection; latencies go into a per-thread histogram
 * (fixed memory, no allocation on the hot path). Fire mode uses blocking sockets, one thread
 * per sender. The daemon's own counter (GET /metrics through libfling, or the newest job id as a
 * fallback) is read before and after, and polled until it stops growing. */
#include "fling.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RESP_MAX 4096             /* one reply: a 202's headers and {"id","state"} fit in 300 bytes */
#define HOST_MAX 256              /* "host:port" from the URL */
#define MAX_CONNS 10000           /* more would need a raised RLIMIT_NOFILE */
#define MAX_PAYLOAD (64u << 20)   /* the daemon's own ceiling for max_payload */
#define MAX_SECONDS 600.0
#define EPOLL_BATCH 256           /* events taken per epoll_wait */
#define HIST_FINE 65536           /* 1 µs buckets up to 65.5 ms: where acks should land */
#define HIST_COARSE 65536         /* then 1 ms buckets up to 65 s */
#define SEND_TIMEOUT_S 5          /* bounds a fire-mode connect whose SYNs keep being dropped */
#define ADDR_BUSY_SLEEP_NS 1000000L /* ephemeral ports exhausted: let TIME_WAIT age a little */
#define SETTLE_POLL_NS 20000000L  /* how often the daemon's count is read while it settles */
/* The same for e2e, once the submits are done: the lag is known to within one period, so it is
 * short (a 20,000-job run lasts under a second here); each poll costs the daemon one GET
 * /metrics, about 0.1 ms of CPU against the drain's hundreds. */
#define E2E_POLL_NS 2000000L
#define SETTLE_QUIET_S 1.0        /* the count is final once it has not grown for this long */
#define SETTLE_MAX_S 30.0         /* give up waiting for the count after this long */

#define SUCCEEDED_METRIC "fling_jobs_finished_total{outcome=\"succeeded\"}"
#define SUBMITTED_METRIC "fling_jobs_submitted_total"
#define REDIS_KEY "flingbench"

enum { MODE_ACKED, MODE_FIRE, MODE_E2E };
enum { PROTO_HTTP, PROTO_REDIS, PROTO_BEANSTALK };
/* Where a beanstalk e2e connection is in its put → reserve → delete cycle. */
enum { STEP_PUT, STEP_RESERVE, STEP_DELETE };

typedef struct bench_opts {
    const char *url;              /* control URL (probe, counts), "http://host:port" */
    const char *unix_path;        /* load goes over this Unix socket if set */
    const char *type;             /* job type to submit */
    const char *token;            /* bearer token, or NULL */
    const char *source;           /* TCP load: bind to this local IPv4 address, or NULL */
    int mode;
    int proto;                    /* from the URL's scheme */
    int sink;                     /* fire: the server counts nothing; skip probe and count */
    long long jobs;               /* acked/e2e: stop after this many jobs; 0 = until --seconds */
    int conns;                    /* acked: connections; fire: sender threads */
    int threads;                  /* acked: epoll threads; 0 = one per core, at most conns */
    double seconds;
    size_t payload;               /* payload bytes ('x' repeated) */
} bench_opts;

/* Everything the load threads share, read-only once they run. */
typedef struct target {
    struct sockaddr_storage addr; /* where the load goes */
    socklen_t addr_len;
    int is_unix;
    int has_source;               /* bind to source before connect */
    struct sockaddr_in source;
    int proto;
    int e2e;                      /* beanstalk: a job is put, reserved and deleted */
    char *req;                    /* the pre-encoded request; owned */
    size_t req_len;
    int64_t deadline_ns;          /* acked: threads stop sending at this CLOCK_MONOTONIC time */
    long long max_jobs;           /* 0 = no limit; else jobs handed out at most */
    atomic_llong issued;          /* jobs handed out to connections so far */
} target;

typedef struct hist {
    uint64_t n[HIST_FINE + HIST_COARSE];
} hist;

/* ---- small helpers ------------------------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ns(long ns)
{
    struct timespec ts = { ns / 1000000000L, ns % 1000000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void hist_add(hist *h, int64_t us)
{
    size_t i;
    if (us < 0)
        us = 0;
    if (us < HIST_FINE)
        i = (size_t)us;
    else if (us / 1000 < HIST_COARSE)
        i = HIST_FINE + (size_t)(us / 1000);
    else
        i = HIST_FINE + HIST_COARSE - 1;
    h->n[i]++;
}

static int64_t hist_value(size_t i)
{
    return i < HIST_FINE ? (int64_t)i : (int64_t)(i - HIST_FINE) * 1000;
}

/* hist_quantile returns the latency in µs below which a fraction q of the samples fall. */
static int64_t hist_quantile(const hist *h, uint64_t total, double q)
{
    if (total == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)total);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_FINE + HIST_COARSE; i++) {
        seen += h->n[i];
        if (seen >= rank)
            return hist_value(i);
    }
    return hist_value(HIST_FINE + HIST_COARSE - 1);
}

static int64_t hist_max(const hist *h)
{
    for (size_t i = HIST_FINE + HIST_COARSE; i-- > 0;)
        if (h->n[i])
            return hist_value(i);
    return 0;
}

/* ---- target: address and request bytes ---------------------------------------------- */

/* url_proto says which protocol a URL's scheme names; -EINVAL for another. */
static int url_proto(const char *url)
{
    if (strncmp(url, "http://", 7) == 0)
        return PROTO_HTTP;
    if (strncmp(url, "redis://", 8) == 0)
        return PROTO_REDIS;
    if (strncmp(url, "beanstalk://", 12) == 0)
        return PROTO_BEANSTALK;
    return -EINVAL;
}

/* split_http_url copies "host:port" of a SCHEME://host:port URL into hostport, and host and port
 * separately (brackets of an IPv6 literal removed); 0 or -EINVAL. */
static int split_http_url(const char *url, char *hostport, char *host, char *port)
{
    const char *sep = strstr(url, "://");
    if (!sep)
        return -EINVAL;
    const char *rest = sep + 3;
    size_t len = strcspn(rest, "/");
    if (len == 0 || len >= HOST_MAX)
        return -EINVAL;
    memcpy(hostport, rest, len);
    hostport[len] = '\0';
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon[1] == '\0' || (hostport[0] == '[' && colon < strchr(hostport, ']')))
        return -EINVAL;
    size_t hlen = (size_t)(colon - hostport);
    if (hostport[0] == '[') {
        if (hlen < 3 || hostport[hlen - 1] != ']')
            return -EINVAL;
        memcpy(host, hostport + 1, hlen - 2);
        host[hlen - 2] = '\0';
    } else {
        memcpy(host, hostport, hlen);
        host[hlen] = '\0';
    }
    snprintf(port, 8, "%.7s", colon + 1);
    return 0;
}

static int resolve_tcp(target *t, const char *host, const char *port)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "flingbench: cannot resolve %s:%s: %s\n", host, port, gai_strerror(rc));
        return -EINVAL;
    }
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    t->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int set_unix(target *t, const char *path)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&t->addr;
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof sun->sun_path)
        return -EINVAL;
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, len + 1);
    t->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    t->is_unix = 1;
    return 0;
}

/* encode_redis builds LPUSH REDIS_KEY PAYLOAD with hiredis's encoder. */
static int encode_redis(target *t, const char *payload, size_t len)
{
    char *cmd = NULL;
    int n = redisFormatCommand(&cmd, "LPUSH %s %b", REDIS_KEY, payload, len);
    if (n < 0 || !(t->req = malloc((size_t)n))) {
        redisFreeCommand(cmd);
        return -ENOMEM;
    }
    memcpy(t->req, cmd, (size_t)n);
    t->req_len = (size_t)n;
    redisFreeCommand(cmd);
    return 0;
}

/* encode_beanstalk builds "put PRI DELAY TTR BYTES\r\nPAYLOAD\r\n" (priority 0, no delay). */
static int encode_beanstalk(target *t, const char *payload, size_t len)
{
    char head[64];
    int n = snprintf(head, sizeof head, "put 0 0 60 %zu\r\n", len);
    t->req_len = (size_t)n + len + 2;
    if (!(t->req = malloc(t->req_len)))
        return -ENOMEM;
    memcpy(t->req, head, (size_t)n);
    memcpy(t->req + n, payload, len);
    memcpy(t->req + n + len, "\r\n", 2);
    return 0;
}

/* encode_request builds the request once: headers and payload in one buffer, so one send(). */
static int encode_request(target *t, const bench_opts *o, const char *host_header)
{
    if (o->proto != PROTO_HTTP) {
        char *payload = malloc(o->payload + 1);
        if (!payload)
            return -ENOMEM;
        memset(payload, 'x', o->payload);
        int rc = o->proto == PROTO_REDIS ? encode_redis(t, payload, o->payload)
                                         : encode_beanstalk(t, payload, o->payload);
        free(payload);
        return rc;
    }
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "POST /v1/jobs/%s HTTP/1.1\r\nHost: %s\r\n%s%s%s"
                     "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                     o->type, host_header, o->token ? "Authorization: Bearer " : "",
                     o->token ? o->token : "", o->token ? "\r\n" : "", o->payload);
    if (n < 0 || (size_t)n >= sizeof head)
        return -EINVAL;
    t->req_len = (size_t)n + o->payload;
    if (!(t->req = malloc(t->req_len)))
        return -ENOMEM;
    memcpy(t->req, head, (size_t)n);
    memset(t->req + n, 'x', o->payload);
    return 0;
}

static int target_init(target *t, const bench_opts *o)
{
    char hostport[HOST_MAX], host[HOST_MAX], port[8];
    memset(t, 0, sizeof *t);
    t->proto = o->proto;
    t->e2e = o->mode == MODE_E2E && o->proto == PROTO_BEANSTALK;
    t->max_jobs = o->jobs;
    atomic_init(&t->issued, 0);
    if (split_http_url(o->url, hostport, host, port) < 0) {
        fprintf(stderr, "flingbench: --url must be SCHEME://HOST:PORT, not \"%s\"\n", o->url);
        return -EINVAL;
    }
    int rc = o->unix_path ? set_unix(t, o->unix_path) : resolve_tcp(t, host, port);
    if (rc == 0 && o->source) {
        t->source.sin_family = AF_INET;
        t->has_source = 1;
        if (o->unix_path || t->addr.ss_family != AF_INET ||
            inet_pton(AF_INET, o->source, &t->source.sin_addr) != 1) {
            fprintf(stderr, "flingbench: --source needs an IPv4 address and an IPv4 TCP target\n");
            return -EINVAL;
        }
    }
    if (rc < 0) {
        if (o->unix_path)
            fprintf(stderr, "flingbench: bad --unix path \"%s\"\n", o->unix_path);
        return rc;
    }
    return encode_request(t, o, o->unix_path ? "localhost" : hostport);
}

/* bind_source binds fd to --source with the port left to connect(), which then picks it per
 * destination: a fresh source address has its own ports, free of an earlier run's TIME_WAIT. */
static int bind_source(int fd, const target *t)
{
    int one = 1;
    if (!t->has_source)
        return 0;
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0 ||
        bind(fd, (const struct sockaddr *)&t->source, sizeof t->source) < 0)
        return -1;
    return 0;
}

/* open_blocking connects a fresh socket to t; the fd, or a negative errno. */
static int open_blocking(const target *t)
{
    int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = { SEND_TIMEOUT_S, 0 };
    int one = 1;
    if (bind_source(fd, t) < 0 || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
        (!t->is_unix && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) ||
        connect(fd, (const struct sockaddr *)&t->addr, t->addr_len) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* send_all sends buf on a blocking socket, looping over short sends; 0 or a negative errno. */
static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- the daemon's count of committed jobs ---------------------------------------------- */

/* metric_value finds "name value" at the start of a line of Prometheus text; 0 or -ENOENT. */
static int metric_value(const char *text, const char *name, long long *out)
{
    size_t len = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, len) == 0 && p[len] == ' ')
            return sscanf(p + len, " %lld", out) == 1 ? 0 : -ENOENT;
    return -ENOENT;
}

/* newest_id reads the id of the newest job of the type; 0 when there is none. */
static int newest_id(fling_client *cl, const char *type, long long *out)
{
    char path[256];
    fling_response res;
    snprintf(path, sizeof path, "/v1/jobs?type=%s&limit=1", type);
    int rc = fling_request(cl, "GET", path, NULL, 0, &res);
    *out = 0;
    if (rc == 0 && res.body) {
        const char *id = strstr(res.body, "\"id\":");
        if (id && sscanf(id + 5, " \"%lld", out) != 1 && sscanf(id + 5, " %lld", out) != 1)
            rc = FLING_EPROTO;
    }
    fling_response_clear(&res);
    return rc;
}

/* daemon_count reads the metric (SUBMITTED_METRIC, or the newest job id if the daemon has no
 * such metric; *source says which). 0 or a FLING_E* code. */
static int daemon_count(fling_client *cl, const char *metric, const char *type, long long *out,
                        const char **source)
{
    fling_response res;
    int rc = fling_request(cl, "GET", "/metrics", NULL, 0, &res);
    int found = rc == 0 && res.body && metric_value(res.body, metric, out) == 0;
    fling_response_clear(&res);
    if (found) {
        *source = "metrics";
        return 0;
    }
    if (strcmp(metric, SUBMITTED_METRIC) != 0) {
        *out = 0;  /* no such line yet: nothing has succeeded */
        return rc;
    }
    *source = "newest_id";
    return newest_id(cl, type, out);
}

/* settle polls the daemon's count until it reaches want or stops growing; *t_last_ns is when
 * the final value was first seen. */
static int settle(fling_client *cl, const char *metric, const char *type, long long want,
                  long poll_ns, long long *count, int64_t *t_last_ns)
{
    const char *source;
    int64_t start = now_ns();
    *t_last_ns = start;
    for (;;) {
        long long now_count;
        int rc = daemon_count(cl, metric, type, &now_count, &source);
        if (rc < 0)
            return rc;
        int64_t t = now_ns();
        if (now_count != *count) {
            *count = now_count;
            *t_last_ns = t;
        }
        if (*count >= want || (double)(t - *t_last_ns) / 1e9 >= SETTLE_QUIET_S ||
            (double)(t - start) / 1e9 >= SETTLE_MAX_S)
            return 0;
        sleep_ns(poll_ns);
    }
}

/* ---- acked mode: epoll threads --------------------------------------------------------- */

typedef struct conn {
    int fd;                       /* -1 once dropped */
    int want_out;                 /* EPOLLOUT registered: part of the request still waits */
    int idle;                     /* --jobs all handed out: this connection sends no more */
    int step;                     /* beanstalk e2e: STEP_* of the job in flight */
    const char *out;              /* what is being sent: the target's request, or cmd */
    size_t out_len;
    size_t out_off;               /* bytes of it already sent */
    size_t in_len;                /* bytes of the reply read so far */
    int64_t sent_ns;              /* when the job's first request went out */
    redisReader *rr;              /* redis: hiredis's reply parser; owned */
    char cmd[64];                 /* beanstalk e2e: the reserve or delete line */
    char in[RESP_MAX + 1];        /* +1 for a NUL, so the headers can be searched as a string */
} conn;

typedef struct acked_worker {
    pthread_t tid;
    target *t;                    /* shared; only its atomic issued count is written */
    conn *conns;                  /* borrowed slice of the run's array */
    int n_conns;
    int live;                     /* connections neither dropped nor idle */
    int ep;
    uint64_t jobs;                /* 2xx replies received before the deadline */
    uint64_t errors;              /* non-2xx replies, dropped connections */
    hist *h;                      /* owned */
} acked_worker;

static void conn_drop(acked_worker *w, conn *c)
{
    if (c->fd < 0)
        return;
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    if (!c->idle)
        w->live--;
    w->errors++;
}

static void conn_want_out(acked_worker *w, conn *c, int want)
{
    if (c->want_out == want)
        return;
    struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c };
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        conn_drop(w, c);
        return;
    }
    c->want_out = want;
}

static void conn_send_more(acked_worker *w, conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            conn_want_out(w, c, 1);
            return;
        }
        if (n < 0) {
            conn_drop(w, c);
            return;
        }
        c->out_off += (size_t)n;
    }
    conn_want_out(w, c, 0);
}

static void conn_send(acked_worker *w, conn *c, const char *buf, size_t len)
{
    c->out = buf;
    c->out_len = len;
    c->out_off = 0;
    c->in_len = 0;
    conn_send_more(w, c);
}

/* conn_next_job sends the next job's (first) request, or idles the connection once --jobs are
 * all handed out. */
static void conn_next_job(acked_worker *w, conn *c)
{
    target *t = w->t;
    if (t->max_jobs > 0 && atomic_fetch_add(&t->issued, 1) >= t->max_jobs) {
        c->idle = 1;
        w->live--;
        return;
    }
    c->step = STEP_PUT;
    c->sent_ns = now_ns();
    conn_send(w, c, t->req, t->req_len);
}

/* parse_http looks for one whole reply in c->in: its length and status, or 0 if more bytes are
 * needed, or -1 if it is not HTTP we understand. */
static long parse_http(conn *c, int *status)
{
    c->in[c->in_len] = '\0';
    char *end = strstr(c->in, "\r\n\r\n");
    if (!end)
        return c->in_len >= RESP_MAX ? -1 : 0;
    size_t head_len = (size_t)(end - c->in) + 4;
    if (sscanf(c->in, "HTTP/1.%*1d %3d", status) != 1)
        return -1;
    *end = '\0';
    size_t body = 0;
    const char *cl = strcasestr(c->in, "\r\nContent-Length:");
    if (cl && sscanf(cl + 17, " %zu", &body) != 1)
        return -1;
    *end = '\r';
    if (head_len + body > RESP_MAX)
        return -1;
    return c->in_len >= head_len + body ? (long)(head_len + body) : 0;
}

/* whole_http: 1 with *ok when c->in holds exactly one reply, 0 if more bytes are needed, -1 if
 * the stream is out of step (garbage, or bytes nobody asked for). */
static int whole_http(conn *c, int *ok)
{
    int status = 0;
    long len = parse_http(c, &status);
    if (len < 0 || (len > 0 && (size_t)len != c->in_len))
        return -1;
    *ok = status >= 200 && status < 300;
    return len > 0;
}

/* whole_redis feeds the fresh bytes to hiredis's reader; a success is LPUSH's integer. */
static int whole_redis(conn *c, int *ok)
{
    void *reply = NULL;
    if (redisReaderFeed(c->rr, c->in, c->in_len) != REDIS_OK)
        return -1;
    c->in_len = 0;  /* the reader keeps what it has not parsed yet */
    if (redisReaderGetReply(c->rr, &reply) != REDIS_OK)
        return -1;
    if (!reply)
        return 0;
    *ok = ((redisReply *)reply)->type == REDIS_REPLY_INTEGER;
    freeReplyObject(reply);
    return 1;
}

/* whole_beanstalk reads one reply line (and a RESERVED job's body) and checks it answers the
 * step in flight; a reserved job's id goes into c->cmd as its delete line. */
static int whole_beanstalk(conn *c, int *ok)
{
    c->in[c->in_len] = '\0';
    char *eol = strstr(c->in, "\r\n");
    if (!eol)
        return c->in_len >= RESP_MAX ? -1 : 0;
    size_t line = (size_t)(eol - c->in) + 2, total = line;
    unsigned long long id;
    size_t bytes;
    static const char *const want[] = { "INSERTED ", "RESERVED ", "DELETED\r\n" };
    *ok = strncmp(c->in, want[c->step], strlen(want[c->step])) == 0;
    if (*ok && c->step == STEP_RESERVE) {
        if (sscanf(c->in, "RESERVED %llu %zu", &id, &bytes) != 2 || bytes > RESP_MAX)
            return -1;
        total += bytes + 2;
        if (c->in_len < total)
            return total > RESP_MAX ? -1 : 0;
        snprintf(c->cmd, sizeof c->cmd, "delete %llu\r\n", id);
    }
    return c->in_len == total ? 1 : -1;
}

static int whole_reply(const target *t, conn *c, int *ok)
{
    return t->proto == PROTO_HTTP ? whole_http(c, ok)
           : t->proto == PROTO_REDIS ? whole_redis(c, ok) : whole_beanstalk(c, ok);
}

/* conn_on_reply: a job is done once its last reply is in; a beanstalk e2e job first goes on
 * from put to reserve to delete. A failed step counts an error and starts the next job. */
static void conn_on_reply(acked_worker *w, conn *c, int ok)
{
    int64_t done = now_ns();
    if (done > w->t->deadline_ns)
        return;  /* the run is over: this reply is not counted and nothing more is sent */
    if (ok && w->t->e2e && c->step != STEP_DELETE) {
        if (c->step++ == STEP_PUT)
            snprintf(c->cmd, sizeof c->cmd, "reserve\r\n");
        conn_send(w, c, c->cmd, strlen(c->cmd));
        return;
    }
    if (ok) {
        w->jobs++;
        hist_add(w->h, (done - c->sent_ns) / 1000);
    } else {
        w->errors++;
    }
    conn_next_job(w, c);
}

static void conn_on_readable(acked_worker *w, conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->in_len, RESP_MAX - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            conn_drop(w, c);
            return;
        }
        c->in_len += (size_t)n;
        int ok = 0, whole = whole_reply(w->t, c, &ok);
        if (whole < 0) {
            conn_drop(w, c);
            return;
        }
        if (whole == 0)
            continue;
        conn_on_reply(w, c, ok);
        return;
    }
}

static void *acked_run(void *arg)
{
    acked_worker *w = arg;
    struct epoll_event evs[EPOLL_BATCH];
    for (int i = 0; i < w->n_conns; i++)
        conn_next_job(w, &w->conns[i]);
    while (w->live > 0) {
        int64_t left = w->t->deadline_ns - now_ns();
        if (left <= 0)
            break;
        int n = epoll_wait(w->ep, evs, EPOLL_BATCH, (int)(left / 1000000) + 1);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c->fd >= 0 && (evs[i].events & EPOLLOUT))
                conn_send_more(w, c);
            if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                conn_on_readable(w, c);
        }
    }
    return NULL;
}

/* open_conn connects one keep-alive connection and makes it non-blocking; 0 or negative errno. */
static int open_conn(const target *t, conn *c)
{
    int fd = open_blocking(t);
    if (fd < 0)
        return fd;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    c->fd = fd;
    return 0;
}

static int worker_setup(acked_worker *w, target *t, conn *conns, int n)
{
    w->t = t;
    w->conns = conns;
    w->n_conns = n;
    if (!(w->h = calloc(1, sizeof *w->h)))
        return -ENOMEM;
    if ((w->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        int rc = open_conn(t, &conns[i]);
        if (rc < 0)
            return rc;
        if (t->proto == PROTO_REDIS && !(conns[i].rr = redisReaderCreate()))
            return -ENOMEM;
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &conns[i] };
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0)
            return -errno;
        w->live++;
    }
    return 0;
}

static void worker_free(acked_worker *w)
{
    for (int i = 0; i < w->n_conns; i++) {
        if (w->conns[i].fd >= 0)
            close(w->conns[i].fd);
        if (w->conns[i].rr)
            redisReaderFree(w->conns[i].rr);
    }
    if (w->ep >= 0)
        close(w->ep);
    free(w->h);
}

/* e2e_done is what an http e2e run adds: how many of its jobs the daemon counted succeeded,
 * and when the last of them was. */
typedef struct e2e_done {
    long long succeeded;
    double secs;                  /* from the first submit to the last success */
} e2e_done;

static const char *mode_name(int mode)
{
    return mode == MODE_ACKED ? "acked" : mode == MODE_FIRE ? "fire" : "e2e";
}

static const char *proto_name(int proto)
{
    return proto == PROTO_HTTP ? "http" : proto == PROTO_REDIS ? "redis" : "beanstalk";
}

/* client_cpu_us: this process's user + system time so far, all threads (the load generator's
 * own share of the cores, which bench/compare sets against the server's). */
static double client_cpu_us(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

static void print_acked(const bench_opts *o, int threads, acked_worker *ws, double secs,
                        const e2e_done *e2e)
{
    uint64_t jobs = 0, errors = 0;
    hist *h = ws[0].h;  /* merged into the first worker's histogram */
    for (int i = 0; i < threads; i++) {
        jobs += ws[i].jobs;
        errors += ws[i].errors;
        if (i > 0)
            for (size_t b = 0; b < HIST_FINE + HIST_COARSE; b++)
                h->n[b] += ws[i].h->n[b];
    }
    printf("mode=%s proto=%s transport=%s conns=%d threads=%d payload=%zu jobs=%" PRIu64
           " errors=%" PRIu64 " secs=%.2f rate=%.0f/s p50_us=%" PRId64 " p99_us=%" PRId64
           " max_us=%" PRId64,
           mode_name(o->mode), proto_name(o->proto), o->unix_path ? "unix" : "tcp", o->conns,
           threads, o->payload, jobs, errors, secs, (double)jobs / secs,
           hist_quantile(h, jobs, 0.50), hist_quantile(h, jobs, 0.99), hist_max(h));
    /* The backlog left when the submits stopped shows as lag: the seconds it took to drain. */
    if (e2e)
        printf(" succeeded=%lld done_secs=%.2f e2e_rate=%.0f/s lag_secs=%.2f", e2e->succeeded,
               e2e->secs, (double)e2e->succeeded / e2e->secs, e2e->secs - secs);
    printf(" cpu_us=%.0f\n", client_cpu_us());
}

/* await_succeeded waits until the daemon counts want more successes than before (read before
 * the probe: its job is one of them), and says how many of the run's own there were. */
static int await_succeeded(fling_client *cl, const bench_opts *o, long long before,
                           long long want, int64_t start, e2e_done *out)
{
    long long count = before;
    int64_t t_last;
    int rc = settle(cl, SUCCEEDED_METRIC, o->type, before + want, E2E_POLL_NS, &count, &t_last);
    if (rc < 0) {
        fprintf(stderr, "flingbench: reading the daemon's successes: %s\n", fling_strerror(rc));
        return -EIO;
    }
    out->succeeded = count - before - 1;
    out->secs = (double)(t_last - start) / 1e9;
    if (out->succeeded < want - 1)
        fprintf(stderr, "flingbench: only %lld of %lld jobs succeeded\n", out->succeeded, want - 1);
    return 0;
}

/* run_acked: before is the daemon's count of successes read before the probe (http e2e). */
static int run_acked(const bench_opts *o, target *t, fling_client *cl, long long before)
{
    int http_e2e = o->mode == MODE_E2E && o->proto == PROTO_HTTP;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = o->threads > 0 ? o->threads : (cores > 0 ? (int)cores : 1);
    if (threads > o->conns)
        threads = o->conns;
    conn *conns = calloc((size_t)o->conns, sizeof *conns);
    acked_worker *ws = calloc((size_t)threads, sizeof *ws);
    int rc = conns && ws ? 0 : -ENOMEM, started = 0;
    for (int i = 0; ws && i < threads; i++)
        ws[i].ep = -1;
    for (int i = 0; conns && i < o->conns; i++)
        conns[i].fd = -1;
    for (int i = 0, first = 0; rc == 0 && i < threads; i++) {
        int n = o->conns / threads + (i < o->conns % threads);
        rc = worker_setup(&ws[i], t, conns + first, n);
        first += n;
    }
    if (rc < 0)
        fprintf(stderr, "flingbench: setting up %d connections: %s\n", o->conns, strerror(-rc));
    int64_t start = now_ns();
    t->deadline_ns = start + (int64_t)(o->seconds * 1e9);
    for (; rc == 0 && started < threads; started++)
        if ((rc = -pthread_create(&ws[started].tid, NULL, acked_run, &ws[started])) < 0) {
            fprintf(stderr, "flingbench: starting threads: %s\n", strerror(-rc));
            break;
        }
    for (int i = 0; i < started; i++)
        pthread_join(ws[i].tid, NULL);
    double secs = (double)(now_ns() - start) / 1e9;
    uint64_t jobs = 0;
    for (int i = 0; rc == 0 && i < threads; i++)
        jobs += ws[i].jobs;
    e2e_done e2e = { 0, 0 };
    if (rc == 0 && http_e2e)
        rc = await_succeeded(cl, o, before, (long long)jobs + 1, start, &e2e);
    if (rc == 0)
        print_acked(o, threads, ws, secs < o->seconds ? secs : o->seconds, http_e2e ? &e2e : NULL);
    for (int i = 0; ws && i < threads; i++)
        worker_free(&ws[i]);
    free(ws);
    free(conns);
    return rc;
}

/* ---- fire mode: connection per job ----------------------------------------------------- */

typedef struct fire_sender {
    pthread_t tid;
    const target *t;
    const atomic_int *stop;
    uint64_t sent;                /* requests whose every byte the kernel took, then closed */
    uint64_t connect_errors;
    uint64_t send_errors;
    int last_errno;               /* the last connect error, to say why */
} fire_sender;

static void *fire_run(void *arg)
{
    fire_sender *s = arg;
    while (!atomic_load_explicit(s->stop, memory_order_relaxed)) {
        int fd = open_blocking(s->t);
        if (fd < 0) {
            s->connect_errors++;
            s->last_errno = -fd;
            if (fd == -EADDRNOTAVAIL || fd == -EAGAIN)
                sleep_ns(ADDR_BUSY_SLEEP_NS);
            continue;
        }
        if (send_all(fd, s->t->req, s->t->req_len) == 0)
            s->sent++;
        else
            s->send_errors++;
        close(fd);  /* a plain FIN: everything sent is still delivered (docs/protocol.md "What the client does") */
    }
    return NULL;
}

static void print_fire(const bench_opts *o, const fire_sender *ss, double secs, long long committed,
                       double commit_secs, const char *source)
{
    uint64_t sent = 0, cerr = 0, serr = 0;
    int last_errno = 0;
    for (int i = 0; i < o->conns; i++) {
        sent += ss[i].sent;
        cerr += ss[i].connect_errors;
        serr += ss[i].send_errors;
        if (ss[i].last_errno)
            last_errno = ss[i].last_errno;
    }
    printf("mode=fire transport=%s conns=%d payload=%zu sent=%" PRIu64 " connect_errors=%" PRIu64
           " send_errors=%" PRIu64 " secs=%.2f send_rate=%.0f/s",
           o->unix_path ? "unix" : "tcp", o->conns, o->payload, sent, cerr, serr, secs,
           (double)sent / secs);
    if (committed >= 0)  /* a --sink counts nothing */
        printf(" committed=%lld commit_secs=%.2f commit_rate=%.0f/s missing=%lld",
               committed, commit_secs, (double)committed / commit_secs, (long long)sent - committed);
    printf(" count_source=%s cpu_us=%.0f\n", source, client_cpu_us());
    if (cerr)
        fprintf(stderr, "flingbench: last connect error: %s\n", strerror(last_errno));
}

static int run_fire(const bench_opts *o, const target *t, fling_client *cl)
{
    long long before = 0, after;
    const char *source = "none";
    int rc = o->sink ? 0 : daemon_count(cl, SUBMITTED_METRIC, o->type, &before, &source);
    if (rc < 0) {
        fprintf(stderr, "flingbench: reading the daemon's job count: %s\n", fling_strerror(rc));
        return -EIO;
    }
    fire_sender *ss = calloc((size_t)o->conns, sizeof *ss);
    if (!ss)
        return -ENOMEM;
    atomic_int stop;
    atomic_init(&stop, 0);
    int started = 0;
    int64_t start = now_ns();
    for (; started < o->conns; started++) {
        ss[started].t = t;
        ss[started].stop = &stop;
        if ((rc = -pthread_create(&ss[started].tid, NULL, fire_run, &ss[started])) < 0)
            break;
    }
    if (rc == 0)
        sleep_ns((long)(o->seconds * 1e9));
    atomic_store(&stop, 1);
    for (int i = 0; i < started; i++)
        pthread_join(ss[i].tid, NULL);
    double secs = (double)(now_ns() - start) / 1e9;
    uint64_t sent = 0;
    for (int i = 0; i < started; i++)
        sent += ss[i].sent;
    int64_t t_last;
    after = before;
    if (rc == 0 && o->sink) {
        print_fire(o, ss, secs, -1, secs, "none");
    } else if (rc == 0 &&
               (rc = settle(cl, SUBMITTED_METRIC, o->type, before + (long long)sent,
                            SETTLE_POLL_NS, &after, &t_last)) < 0)
        fprintf(stderr, "flingbench: reading the daemon's job count: %s\n", fling_strerror(rc));
    else if (rc == 0) {
        double commit_secs = (double)(t_last - start) / 1e9;
        print_fire(o, ss, secs, after - before, commit_secs > secs ? commit_secs : secs, source);
    } else
        fprintf(stderr, "flingbench: starting threads: %s\n", strerror(-rc));
    free(ss);
    return rc < 0 ? -EIO : 0;
}

/* ---- command line ---------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: flingbench --url SCHEME://HOST:PORT [--unix PATH] --mode acked|fire|e2e\n"
            "                  [--conns N] [--threads N] [--seconds S] [--jobs N] [--payload BYTES]\n"
            "                  [--type T] [--token TOKEN] [--sink] [--source ADDR]\n"
            "  --url URL        http:// a flingd (control requests; the load too unless --unix),\n"
            "                   redis:// (acked LPUSH), beanstalk:// (acked put; e2e put+reserve+delete)\n"
            "  --unix PATH      send the load over this Unix socket\n"
            "  --mode acked     keep-alive connections, one request in flight each, wait for its reply\n"
            "  --mode fire      connection per job: connect, one send, close(), never read\n"
            "  --mode e2e       http: acked submits, then wait until the daemon counts them succeeded;\n"
            "                   beanstalk: put, reserve, delete per job on each connection\n"
            "  --conns N        acked/e2e: connections; fire: sender threads (default 16)\n"
            "  --threads N      acked: epoll threads (default: one per core, at most N conns)\n"
            "  --seconds S      length of the run (default 5); with --jobs, its bound\n"
            "  --jobs N         acked/e2e: stop after N jobs\n"
            "  --sink           acked/fire: the server is no flingd (bench/sink): no probe, no count\n"
            "  --source ADDR    TCP: connect from this local IPv4 address (e.g. 127.0.0.11)\n"
            "  --payload BYTES  payload size (default 64)\n"
            "  --type T         job type (default noop)\n"
            "  --token TOKEN    send Authorization: Bearer TOKEN\n"
            "Prints one line of key=value pairs per run.\n");
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, bench_opts *o)
{
    enum { O_URL = 256, O_UNIX, O_MODE, O_CONNS, O_THREADS, O_SECONDS, O_PAYLOAD, O_TYPE, O_TOKEN,
           O_JOBS, O_SINK, O_SOURCE };
    static const struct option longopts[] = {
        { "url", required_argument, 0, O_URL }, { "unix", required_argument, 0, O_UNIX },
        { "mode", required_argument, 0, O_MODE }, { "conns", required_argument, 0, O_CONNS },
        { "threads", required_argument, 0, O_THREADS },
        { "seconds", required_argument, 0, O_SECONDS },
        { "payload", required_argument, 0, O_PAYLOAD }, { "type", required_argument, 0, O_TYPE },
        { "token", required_argument, 0, O_TOKEN }, { "jobs", required_argument, 0, O_JOBS },
        { "sink", no_argument, 0, O_SINK }, { "source", required_argument, 0, O_SOURCE },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 }
    };
    *o = (bench_opts){ .type = "noop", .mode = -1, .conns = 16, .seconds = 5, .payload = 64 };
    int ch, idx = 0;
    long v;
    char *end;
    while ((ch = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
        switch (ch) {
        case O_URL: o->url = optarg; break;
        case O_UNIX: o->unix_path = optarg; break;
        case O_TYPE: o->type = optarg; break;
        case O_TOKEN: o->token = optarg; break;
        case O_MODE:
            o->mode = strcmp(optarg, "acked") == 0  ? MODE_ACKED
                      : strcmp(optarg, "fire") == 0 ? MODE_FIRE
                      : strcmp(optarg, "e2e") == 0  ? MODE_E2E : -1;
            if (o->mode < 0)
                goto bad;
            break;
        case O_CONNS:
            if (parse_int(optarg, 1, MAX_CONNS, &v) < 0)
                goto bad;
            o->conns = (int)v;
            break;
        case O_THREADS:
            if (parse_int(optarg, 1, MAX_CONNS, &v) < 0)
                goto bad;
            o->threads = (int)v;
            break;
        case O_JOBS:
            if (parse_int(optarg, 1, 1000000000L, &v) < 0)
                goto bad;
            o->jobs = v;
            break;
        case O_SINK: o->sink = 1; break;
        case O_SOURCE: o->source = optarg; break;
        case O_PAYLOAD:
            if (parse_int(optarg, 0, MAX_PAYLOAD, &v) < 0)
                goto bad;
            o->payload = (size_t)v;
            break;
        case O_SECONDS:
            o->seconds = strtod(optarg, &end);
            if (end == optarg || *end || !(o->seconds >= 0.1 && o->seconds <= MAX_SECONDS))
                goto bad;
            break;
        case 'h': usage(stdout); return 1;
        default: goto usage;
        }
    }
    if (optind < argc || !o->url || o->mode < 0 || strlen(o->type) > 64)
        goto usage;
    if ((o->proto = url_proto(o->url)) < 0 ||
        (o->proto == PROTO_REDIS && o->mode != MODE_ACKED) ||
        (o->proto == PROTO_BEANSTALK && o->mode == MODE_FIRE) ||
        (o->proto != PROTO_HTTP && o->unix_path) || (o->sink && o->mode == MODE_E2E)) {
        fprintf(stderr, "flingbench: --url %s cannot be used with --mode %s%s%s\n", o->url,
                mode_name(o->mode), o->unix_path ? " --unix" : "", o->sink ? " --sink" : "");
        goto usage;
    }
    return 0;
bad:
    fprintf(stderr, "flingbench: bad value \"%s\" for --%s\n", optarg, longopts[idx].name);
usage:
    usage(stderr);
    return -EINVAL;
}

/* probe submits one job through libfling, so a wrong URL, type or token fails with a clear
 * message instead of as a run full of errors. */
static int probe(fling_client *cl, const char *type)
{
    fling_response res;
    int rc = fling_submit(cl, type, "probe", 5, NULL, &res);
    if (rc == FLING_EHTTP)
        fprintf(stderr, "flingbench: probe submit got HTTP %d: %s\n", res.status,
                res.body ? res.body : "");
    else if (rc < 0)
        fprintf(stderr, "flingbench: probe submit failed: %s\n", fling_strerror(rc));
    fling_response_clear(&res);
    return rc;
}

int main(int argc, char **argv)
{
    bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    signal(SIGPIPE, SIG_IGN);  /* a closed connection is counted, not fatal */
    target t;
    if (target_init(&t, &o) < 0)
        return 2;
    /* Only a flingd has a control API: other servers get no probe and no count. */
    fling_client *cl = NULL;
    if (o.proto == PROTO_HTTP && !o.sink && !(cl = fling_client_new(o.url, o.token))) {
        fprintf(stderr, "flingbench: bad --url \"%s\": %s\n", o.url, strerror(errno));
        free(t.req);
        return 2;
    }
    long long succeeded = 0;
    const char *source;
    if (cl && o.mode == MODE_E2E && (rc = daemon_count(cl, SUCCEEDED_METRIC, o.type, &succeeded,
                                                        &source)) < 0)
        fprintf(stderr, "flingbench: reading the daemon's successes: %s\n", fling_strerror(rc));
    if (rc == 0)
        rc = cl ? probe(cl, o.type) : 0;
    if (rc == 0)
        rc = o.mode == MODE_FIRE ? run_fire(&o, &t, cl) : run_acked(&o, &t, cl, succeeded);
    if (cl)
        fling_client_free(cl);
    free(t.req);
    return rc == 0 ? 0 : 1;
}
