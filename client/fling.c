/* fling.c — libfling: connections for the requests that proto/encode.c builds and the replies
 * that proto/resp.c parses; the client rules of docs/protocol.md "Detached clients".
 * A connection (conn) is a plain socket (http://, unix:) or a TLS session that libcurl opens
 * (https://: CURLOPT_CONNECT_ONLY, then curl_easy_send/recv), so TLS, certificate checks, SNI
 * and the CA bundle are libcurl's, and the HTTP spoken on top is the same encoder and parser.
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
 * the daemon may have enqueued it, and a resend would enqueue it twice.
 * Every read tries the connection before it polls: TLS may hold decrypted bytes that the
 * socket no longer shows. An idle TLS connection can be readable and healthy (a TLS 1.3 server
 * sends its session tickets after the handshake), so "idle and usable" means a read that finds
 * nothing, not a poll that finds nothing. */
#include "fling.h"

#include "encode.h"
#include "proto.h"
#include "resp.h"

#include <arpa/inet.h>
#include <curl/curl.h>
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
#define UNIX_RETRY_MS 5          /* a full Unix listen backlog fails at once with EAGAIN: wait */
#define READ_CHUNK 16384         /* one recv; a submit's reply is a few hundred bytes */
#define WAIT_GRACE_MS 10000      /* past Prefer: wait, the daemon still needs to commit and answer */
#define WAIT_TEXT 24             /* "wait=3600" and room */

/* One connection: fd for poll(), and for https the libcurl handle that owns fd and the TLS. */
typedef struct conn {
    int fd;                      /* -1: none */
    CURL *tls;                   /* NULL: a plain socket */
} conn;

#define NO_CONN ((conn){ .fd = -1, .tls = NULL })

struct fling_client {
    char *host;                  /* name to resolve at each connect, or NULL if addr is set */
    char *tls_url;               /* "https://host:port/" for libcurl, or NULL for plain HTTP */
    char *ca_file;               /* CURLOPT_CAINFO, or NULL for libcurl's CA bundle */
    int insecure;                /* FLING_TLS_INSECURE: no certificate or host name check */
    char port[8];                /* decimal, for getaddrinfo */
    char *host_header;           /* "host:port" as in the URL; "localhost" for a Unix socket */
    char *token;                 /* bearer token, or NULL */
    struct sockaddr_storage addr;/* an IP literal or Unix path, resolved once */
    socklen_t addr_len;          /* 0 when host must be resolved */
    atomic_int connect_ms;       /* read by fling_fire without the lock */
    atomic_int io_ms;
    pthread_mutex_t lock;        /* guards kept and every exchange on it */
    conn kept;                   /* the kept-alive connection, or NO_CONN */
};

struct fling_stream {
    conn k;
};

/* The reason of the last FLING_ETLS of this thread: libcurl's message. */
static _Thread_local char tls_error[CURL_ERROR_SIZE];

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

/* Keeps an IPv4 or IPv6 literal (brackets already removed) in c->addr, so a connect needs no
 * lookup; a name is kept in c->host and resolved at each connect. */
static int store_host(fling_client *c, const char *host, int port)
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
    c->host = strdup(host);
    return c->host ? 0 : -ENOMEM;
}

/* 1 if the URL has a part (user, query, ...) that a daemon's base URL cannot have. */
static int has_extra_part(CURLU *u)
{
    static const CURLUPart parts[] = { CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS,
                                       CURLUPART_QUERY, CURLUPART_FRAGMENT, CURLUPART_ZONEID };
    char *v = NULL;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (curl_url_get(u, parts[i], &v, 0) == CURLUE_OK) {
            curl_free(v);
            return 1;
        }
    }
    v = NULL;
    int bad = curl_url_get(u, CURLUPART_PATH, &v, 0) != CURLUE_OK || strcmp(v, "/") != 0;
    curl_free(v);
    return bad;
}

/* Fills c from the parsed u: host, port, Host header, and for https the URL libcurl opens. */
static int store_web(fling_client *c, CURLU *u)
{
    char *scheme = NULL, *host = NULL, *port = NULL, *given = NULL, *full = NULL;
    int rc = -EINVAL;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        has_extra_part(u))
        goto out;
    int tls = strcmp(scheme, "https") == 0;
    long num = strtol(port, NULL, 10);
    size_t hlen = strlen(host);
    if ((!tls && strcmp(scheme, "http") != 0) || num < 1 || num > 65535 || hlen == 0 ||
        hlen + 1 + strlen(port) > FL_ENCODE_HOST_MAX)
        goto out;
    snprintf(c->port, sizeof c->port, "%ld", num);
    int given_port = curl_url_get(u, CURLUPART_PORT, &given, 0) == CURLUE_OK;
    if (asprintf(&c->host_header, "%s%s%s", host, given_port ? ":" : "", given_port ? given : "") < 0) {
        c->host_header = NULL;
        rc = -ENOMEM;
        goto out;
    }
    if (tls) {
        rc = curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK ? 0 : -ENOMEM;
        if (rc == 0 && !(c->tls_url = strdup(full)))
            rc = -ENOMEM;
        goto out;
    }
    if (host[0] == '[') {   /* an IPv6 literal: inet_pton wants it bare */
        host[hlen - 1] = '\0';
        memmove(host, host + 1, hlen - 1);
    }
    rc = store_host(c, host, (int)num);
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(given);
    curl_free(full);
    return rc;
}

/* "http://" or "https://" host [":" port] ["/"], read by libcurl's URL parser (the one that
 * opens https connections), or "unix:" path. */
static int parse_url(fling_client *c, const char *url)
{
    if (strncmp(url, "unix:", 5) == 0)
        return parse_unix(c, url + 5);
    CURLU *u = curl_url();
    if (!u)
        return -ENOMEM;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    int rc = uc == CURLUE_OUT_OF_MEMORY ? -ENOMEM : uc != CURLUE_OK ? -EINVAL : store_web(c, u);
    curl_url_cleanup(u);
    return rc;
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

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

/* libcurl's global state, set up once for the process (curl_easy_init would do it unguarded
 * by a lock on its first call) and never torn down: other code of the process may use it. */
static void init_curl(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void free_parts(fling_client *c)
{
    free(c->host);
    free(c->host_header);
    free(c->tls_url);
    free(c->ca_file);
    free(c->token);
    free(c);
}

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
    c->kept = NO_CONN;
    atomic_init(&c->connect_ms, DEFAULT_CONNECT_MS);
    atomic_init(&c->io_ms, DEFAULT_IO_MS);
    if ((err = parse_url(c, url)) < 0)
        goto fail;
    if (token && token[0] && !(c->token = strdup(token))) {
        err = -ENOMEM;
        goto fail;
    }
    if (c->tls_url && (pthread_once(&curl_once, init_curl) != 0 || curl_init_rc != CURLE_OK)) {
        err = -ENOMEM;   /* curl_global_init fails only for want of memory or of a TLS library */
        goto fail;
    }
    if ((err = -pthread_mutex_init(&c->lock, NULL)) < 0)
        goto fail;
    return c;
fail:
    free_parts(c);
    errno = -err;
    return NULL;
}

static void conn_close(conn *k);

void fling_client_free(fling_client *c)
{
    if (!c)
        return;
    conn_close(&c->kept);
    pthread_mutex_destroy(&c->lock);
    free_parts(c);
}

int fling_client_set_tls(fling_client *c, const char *ca_file, int flags)
{
    char *copy = NULL;
    if (!c || (flags & ~FLING_TLS_INSECURE) || (ca_file && !ca_file[0]))
        return FLING_EINVAL;
    if (ca_file && !(copy = strdup(ca_file)))
        return FLING_ENOMEM;
    free(c->ca_file);
    c->ca_file = copy;
    c->insecure = (flags & FLING_TLS_INSECURE) != 0;
    return 0;
}

const char *fling_tls_error(void)
{
    return tls_error;
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

/* Opens a plain connection to the client's address (each resolved one in turn, within one
 * connect deadline): 0, FLING_ERESOLVE, or FLING_ECONNECT with errno set to the last
 * connect error, which is what the caller's message needs. */
static int open_plain(const fling_client *c, conn *k)
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
    if (fd < 0) {
        errno = -fd;
        return FLING_ECONNECT;
    }
    *k = (conn){ .fd = fd, .tls = NULL };
    return 0;
}

/* The options of one https connection: connect and handshake within connect_ms, no proxy
 * from the environment (a plain http:// client uses none either), no signals (threads). */
static CURLcode tls_options(const fling_client *c, CURL *h, char *err)
{
    CURLcode rc;
    long verify = c->insecure ? 0L : 1L;
    if ((rc = curl_easy_setopt(h, CURLOPT_URL, c->tls_url)) ||
        (rc = curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https")) ||
        (rc = curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L)) ||
        (rc = curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L)) ||
        (rc = curl_easy_setopt(h, CURLOPT_PROXY, "")) ||
        (rc = curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)atomic_load(&c->connect_ms))) ||
        (rc = curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, verify)) ||
        (rc = curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L)) ||
        (rc = curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err)))
        return rc;
    return c->ca_file ? curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file) : CURLE_OK;
}

/* Turns what libcurl said about a failed connect into a FLING_E*, with errno (FLING_ECONNECT)
 * or fling_tls_error() (FLING_ETLS) telling why. */
static int tls_failure(CURL *h, CURLcode rc, const char *err)
{
    long os_errno = 0;
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
        return FLING_ERESOLVE;
    case CURLE_OUT_OF_MEMORY:
        return FLING_ENOMEM;
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
        if (curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno) != CURLE_OK || os_errno == 0)
            os_errno = rc == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : ECONNREFUSED;
        errno = (int)os_errno;
        return FLING_ECONNECT;
    default:
        snprintf(tls_error, sizeof tls_error, "%s", err[0] ? err : curl_easy_strerror(rc));
        return FLING_ETLS;
    }
}

/* Opens an https connection: TCP connect and TLS handshake by libcurl (certificate and host
 * name checked against the CA bundle or c->ca_file, SNI sent), within connect_ms. 0, or
 * FLING_ERESOLVE / FLING_ECONNECT / FLING_ETLS / FLING_ENOMEM. */
static int open_tls(const fling_client *c, conn *k)
{
    char err[CURL_ERROR_SIZE] = "";
    CURL *h = curl_easy_init();
    if (!h)
        return FLING_ENOMEM;
    curl_socket_t fd = CURL_SOCKET_BAD;
    CURLcode rc = tls_options(c, h, err);
    if (rc == CURLE_OK)
        rc = curl_easy_perform(h);
    if (rc == CURLE_OK)
        rc = curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &fd);
    /* err lives on this stack: later messages of the handle must not land in it */
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    if (rc == CURLE_OK && fd != CURL_SOCKET_BAD) {
        *k = (conn){ .fd = fd, .tls = h };
        return 0;
    }
    int out = tls_failure(h, rc, err);
    int saved = errno;
    curl_easy_cleanup(h);
    errno = saved;
    return out;
}

/* Opens a new connection of the client's kind into *k: 0 or a FLING_E*. */
static int open_conn(const fling_client *c, conn *k)
{
    *k = NO_CONN;
    return c->tls_url ? open_tls(c, k) : open_plain(c, k);
}

/* Ends a connection: for TLS libcurl sends close_notify and closes the socket; a plain one
 * gets a plain close() (see DESIGN). */
static void conn_close(conn *k)
{
    if (k->tls)
        curl_easy_cleanup(k->tls);
    else if (k->fd >= 0)
        close(k->fd);
    *k = NO_CONN;
}

/* One send: bytes taken (> 0), -EAGAIN, or -errno (-EIO for a TLS failure). */
static ssize_t conn_send(conn *k, const char *buf, size_t len)
{
    if (!k->tls) {
        ssize_t n = send(k->fd, buf, len, MSG_NOSIGNAL);
        return n >= 0 ? n : errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
    size_t n = 0;
    CURLcode rc = curl_easy_send(k->tls, buf, len, &n);
    if (rc == CURLE_OK)
        return n > 0 ? (ssize_t)n : -EAGAIN;
    return rc == CURLE_AGAIN ? -EAGAIN : -EIO;
}

/* One receive: bytes read (> 0), 0 at the end, -EAGAIN, or -errno (-ECONNRESET for a TLS
 * failure). */
static ssize_t conn_recv(conn *k, char *buf, size_t len)
{
    if (!k->tls) {
        ssize_t n = recv(k->fd, buf, len, 0);
        return n >= 0 ? n : errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
    size_t n = 0;
    CURLcode rc = curl_easy_recv(k->tls, buf, len, &n);
    if (rc == CURLE_OK)
        return (ssize_t)n;
    return rc == CURLE_AGAIN ? -EAGAIN : -ECONNRESET;
}

/* Sends all len bytes before the deadline; *sent counts what the connection took. 0 or -errno. */
static int send_all(conn *k, const char *buf, size_t len, int64_t deadline, size_t *sent)
{
    *sent = 0;
    while (*sent < len) {
        ssize_t n = conn_send(k, buf + *sent, len - *sent);
        if (n > 0) {
            *sent += (size_t)n;
            continue;
        }
        if (n == -EINTR)
            continue;
        if (n != -EAGAIN)
            return (int)n;
        int rc = wait_fd(k->fd, POLLOUT, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Reads one response into r before the deadline: 0, FLING_ERECV (closed, reset, timeout),
 * FLING_EPROTO or FLING_ENOMEM. *extra is set if bytes followed the response. */
static int read_reply(conn *k, fl_proto_resp *r, int64_t deadline, int *extra)
{
    char buf[READ_CHUNK];
    *extra = 0;
    for (;;) {
        ssize_t n = conn_recv(k, buf, sizeof buf);
        if (n == -EINTR)
            continue;
        if (n == -EAGAIN) {
            if (wait_fd(k->fd, POLLIN, deadline) < 0)
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

/* An idle kept connection has nothing to say: if a read finds bytes, an end or an error, the
 * server closed or reset it (or sent stray bytes), and it must not carry a request. A read,
 * not a poll: TLS session tickets make a healthy connection readable (see DESIGN). */
static int idle_conn_usable(conn *k)
{
    char byte;
    return conn_recv(k, &byte, 1) == -EAGAIN;
}

/* Sends req and reads its reply into r within io_ms, on the kept connection or a new one; see
 * DESIGN. 0 (a reply of any status), or FLING_ERESOLVE/ECONNECT/ETLS/ESEND/ERECV/EPROTO/ENOMEM.
 * Caller holds lock. */
static int exchange(fling_client *c, const char *req, size_t len, int io_ms, fl_proto_resp *r)
{
    conn *k = &c->kept;
    for (int attempt = 0;; attempt++) {
        int reused = k->fd >= 0;
        if (reused && !idle_conn_usable(k)) {
            conn_close(k);
            reused = 0;
        }
        if (k->fd < 0) {
            int rc = open_conn(c, k);
            if (rc < 0)
                return rc;
        }
        int64_t deadline = now_ms() + io_ms;
        size_t sent;
        int send_rc = send_all(k, req, len, deadline, &sent);
        if (send_rc < 0 && sent == 0 && reused && attempt == 0 && send_rc != -ETIMEDOUT) {
            conn_close(k);    /* the connection took nothing: the daemon cannot have it */
            continue;
        }
        int extra;
        int rc = read_reply(k, r, deadline, &extra);
        if (send_rc < 0) {
            /* C5: an early error reply (413, 431) may explain the failed send */
            conn_close(k);
            return rc == 0 ? 0 : FLING_ESEND;
        }
        if (rc < 0 || !r->keep_alive || extra)
            conn_close(k);
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
    conn k;
    if (!c || (opts && (opts->wait || opts->on_disconnect)))
        return FLING_EINVAL;   /* attached mode needs a reader; fire never reads */
    int rc = encode_job(c, type, payload, len, opts, &req, &req_len);
    if (rc < 0)
        return rc;
    if ((rc = open_conn(c, &k)) < 0) {
        int connect_errno = errno;
        free(req);
        errno = connect_errno;
        return rc;
    }
    rc = send_all(&k, req, req_len, now_ms() + atomic_load(&c->io_ms), &sent);
    conn_close(&k);          /* C2: a plain close (TLS: close_notify first), no reset */
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

/* ---- streams ------------------------------------------------------------------------ */

int fling_stream_open(fling_client *c, const char *path, fling_stream **out)
{
    char *req;
    size_t req_len, sent;
    *out = NULL;
    if (!c)
        return FLING_EINVAL;
    int rc = fl_proto_encode_request(c->host_header, c->token, "GET", path, NULL, 0, &req, &req_len);
    if (rc < 0)
        return map_errno(rc);
    fling_stream *s = malloc(sizeof *s);
    if (!s) {
        free(req);
        return FLING_ENOMEM;
    }
    if ((rc = open_conn(c, &s->k)) == 0 &&
        send_all(&s->k, req, req_len, now_ms() + atomic_load(&c->io_ms), &sent) < 0)
        rc = FLING_ESEND;
    int saved = errno;
    free(req);
    if (rc < 0) {
        fling_stream_close(s);
        errno = saved;
        return rc;
    }
    *out = s;
    return 0;
}

ssize_t fling_stream_read(fling_stream *s, void *buf, size_t len, const sigset_t *wait_mask)
{
    for (;;) {
        ssize_t n = conn_recv(&s->k, buf, len);
        if (n >= 0)
            return n;
        if (n == -EINTR)
            continue;
        if (n != -EAGAIN)
            return FLING_ERECV;
        struct pollfd p = { .fd = s->k.fd, .events = POLLIN };
        if (ppoll(&p, 1, NULL, wait_mask) < 0)
            return errno == EINTR ? FLING_EINTR : FLING_ERECV;   /* EINTR: wait_mask let a signal in */
    }
}

void fling_stream_close(fling_stream *s)
{
    if (!s)
        return;
    conn_close(&s->k);
    free(s);
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
    case FLING_ETLS: return "TLS failed";
    case FLING_EINTR: return "interrupted by a signal";
    default: return "unknown error";
    }
}
