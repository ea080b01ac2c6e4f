/* listen.c — listening sockets and the accept loop. */
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

/* When accept cannot get a descriptor or memory even with the spare one given up, accepting
 * waits this long for them to free up instead of spinning. */
#define FL_ACCEPT_RETRY 0.1

/* What a connection over max_connections, or past the descriptor limit, gets before its close. */
#define FL_BUSY_BODY "{\"error\":\"too_many_connections\",\"message\":\"the server is at its connection limit; retry shortly\"}"

struct fl_listener {
    fl_listen_env env;
    int fd;
    int is_unix;
    char *path;          /* Unix socket file to unlink at close */
    int spare;           /* a descriptor held in reserve, given up at EMFILE to accept and refuse */
    ev_io io;
    ev_timer retry;
    fl_log_limit refused_log;  /* the log budget of refused connections */
};

static void peer_name(const struct sockaddr_storage *ss, int is_unix, char *out, size_t outsz)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (is_unix) {
        snprintf(out, outsz, "unix");
        return;
    }
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
    }
    snprintf(out, outsz, "%s:%d", host, port);
}

static void watch(fl_listener *l)
{
    if (!ev_is_active(&l->retry))
        ev_io_start(l->env.loop, &l->io);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    watch(w->data);
}

static void log_refused(fl_listener *l, const char *peer, const char *why)
{
    if (fl_log_allow(&l->refused_log, "refused connections"))
        fl_log(LOG_WARNING, "peer %s: %s: answered 503 and closed", peer, why);
}

/* Tells a connection we will not serve why, and closes it. One non-blocking send of a short
 * reply (a new socket's buffer takes it whole) and one non-blocking read of what the client
 * already sent, so the close is a FIN after the reply rather than a reset that could discard
 * it; never waits for the client. */
static void refuse(fl_listener *l, int fd, const char *peer, const char *why)
{
    static const char reply[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                "Connection: close\r\nRetry-After: 1\r\nContent-Length: %zu\r\n\r\n%s";
    char buf[512], sink[16384];
    int n = snprintf(buf, sizeof buf, reply, sizeof FL_BUSY_BODY - 1, FL_BUSY_BODY);
    /* Failures are no news: the client may be gone already, and the close is all that is left. */
    (void)send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)shutdown(fd, SHUT_WR);
    (void)recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    close(fd);
    l->env.metrics->connections_refused++;
    log_refused(l, peer, why);
}

/* Out of descriptors: give up the spare one for as long as it takes to accept one connection
 * and refuse it, so a full backlog drains with 503s instead of the listener spinning on a
 * readable socket it cannot accept from. 1 if a connection was refused, 0 if it could not be. */
static int refuse_with_spare(fl_listener *l)
{
    if (l->spare < 0)
        return 0;
    close(l->spare);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        char peer[64];
        peer_name(&ss, l->is_unix, peer, sizeof peer);
        refuse(l, fd, peer, "out of file descriptors");
    }
    l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0;
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    fl_listener *l = w->data;
    const fl_listen_env *env = &l->env;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if ((errno == EMFILE || errno == ENFILE) && refuse_with_spare(l))
                continue;
            env->metrics->connections_refused++;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                fl_log(LOG_WARNING, "accept: %s; pausing accept for %.0f ms", strerror(errno), FL_ACCEPT_RETRY * 1000);
                ev_io_stop(loop, w);
                ev_timer_set(&l->retry, FL_ACCEPT_RETRY, 0.);
                ev_timer_start(loop, &l->retry);
                return;
            }
            fl_log(LOG_WARNING, "accept: %s", strerror(errno));
            return;
        }
        char peer[64];
        peer_name(&ss, l->is_unix, peer, sizeof peer);
        /* Over the cap a client learns so at once: left in the backlog it would wait, silent,
         * for as long as the slowest connections hold their slots. */
        if (env->metrics->connections_open >= (size_t)env->cfg->max_connections)
            refuse(l, fd, peer, "max_connections reached");
        else if (fl_conn_new(env->conns, fd, l->is_unix, peer) < 0) {
            env->metrics->connections_refused++;
            fl_log(LOG_WARNING, "peer %s: out of memory for a connection; closed", peer);
        }
    }
}

static int listener_new(const fl_listen_env *env, int fd, int is_unix, const char *path, fl_listener **out)
{
    fl_listener *l = calloc(1, sizeof *l);
    if (!l || (path && !(l->path = strdup(path)))) {
        free(l);
        return -ENOMEM;
    }
    l->env = *env;
    l->fd = fd;
    l->is_unix = is_unix;
    l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);   /* -1: EMFILE just pauses accept */
    ev_io_init(&l->io, accept_cb, fd, EV_READ);
    ev_init(&l->retry, retry_cb);
    l->io.data = l->retry.data = l;
    watch(l);
    *out = l;
    return 0;
}

static int bind_listen(int fd, const struct sockaddr *sa, socklen_t len, int backlog)
{
    if (bind(fd, sa, len) < 0 || listen(fd, backlog) < 0)
        return -errno;
    return 0;
}

int fl_listen_tcp(const fl_listen_env *env, const char *host, int port, fl_listener **out, int *bound,
                  char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
    struct addrinfo *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "listen %s:%d: %s", host, port, gai_strerror(gai));
        return -EINVAL;
    }
    int rc = -EADDRNOTAVAIL, fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* D9: no Nagle stall behind a reply. Linux copies it to every accepted socket, which
         * saves a setsockopt per connection. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        rc = bind_listen(fd, ai->ai_addr, ai->ai_addrlen, env->cfg->backlog);
        if (rc == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "listen %s:%d: %s", host, port, strerror(-rc));
        return rc;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    rc = listener_new(env, fd, 0, NULL, out);
    if (rc < 0) {
        close(fd);
        snprintf(err, errlen, "listen: %s", strerror(-rc));
    }
    return rc;
}

/* A socket file nobody answers on is left over from a dead daemon: remove it. */
static int clear_stale(const char *path, const struct sockaddr_un *sa)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int live = connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0;
    close(fd);
    if (live)
        return -EADDRINUSE;
    return unlink(path) < 0 ? -errno : 0;
}

int fl_listen_unix(const fl_listen_env *env, const char *path, fl_listener **out, char *err, size_t errlen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "unix %s: path longer than %zu bytes", path, sizeof sa.sun_path - 1);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    int rc = clear_stale(path, &sa);
    if (rc < 0) {
        snprintf(err, errlen, "unix %s: %s", path,
                 rc == -EADDRINUSE ? "another daemon is listening there" : strerror(-rc));
        return rc;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "unix %s: %s", path, strerror(-rc));
        return rc;
    }
    rc = bind_listen(fd, (struct sockaddr *)&sa, sizeof sa, env->cfg->backlog);
    if (rc == 0)
        rc = listener_new(env, fd, 1, path, out);
    if (rc < 0) {
        close(fd);
        snprintf(err, errlen, "unix %s: %s", path, strerror(-rc));
    }
    return rc;
}

void fl_listen_close(fl_listener *l)
{
    if (!l)
        return;
    ev_io_stop(l->env.loop, &l->io);
    ev_timer_stop(l->env.loop, &l->retry);
    close(l->fd);
    if (l->spare >= 0)
        close(l->spare);
    if (l->path)
        unlink(l->path);
    free(l->path);
    free(l);
}
