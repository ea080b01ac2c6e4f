/* listen.c — listening sockets and the accept loop. */
#include "listen.h"

#include <errno.h>
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

/* When accept has no room (every connection busy, no descriptor, no memory) it waits this long
 * before it looks again, instead of spinning on a readable socket; a connection that closes
 * resumes it at once (fl_listen_resume). */
#define FL_ACCEPT_RETRY 0.1

struct fl_listener {
    fl_listen_env env;
    int fd;
    int is_unix;
    char *path;          /* Unix socket file to unlink at close */
    ev_io io;
    ev_timer retry;
    fl_log_limit full_log;     /* the log budget of "the connection table is full" */
};

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

/* Stops accepting for FL_ACCEPT_RETRY (or until fl_listen_resume), instead of spinning on a
 * readable listener that cannot be served. */
static void pause_accept(fl_listener *l)
{
    ev_io_stop(l->env.loop, &l->io);
    ev_timer_set(&l->retry, FL_ACCEPT_RETRY, 0.);
    ev_timer_start(l->env.loop, &l->retry);
}

/* At max_connections, or out of descriptors: make room by closing an idle or too slow
 * connection (fl_conns_reclaim). If none qualifies, every connection holds a complete request
 * whose job is being committed or answered, and refusing the new client would lose its job
 * (a fire-and-forget client never reads a 503): it waits in the backlog instead, and accept
 * looks again shortly. 1 if there is room now. */
static int make_room(fl_listener *l, const char *why)
{
    if (fl_conns_reclaim(l->env.conns))
        return 1;
    if (fl_log_allow(&l->full_log, "a full connection table"))
        fl_log(LOG_WARNING, "accept: %s and every connection is busy; new clients wait in the backlog", why);
    pause_accept(l);
    return 0;
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    fl_listener *l = w->data;
    const fl_listen_env *env = &l->env;
    for (;;) {
        if (env->metrics->connections_open >= (size_t)env->cfg->max_connections &&
            !make_room(l, "max_connections reached"))
            return;
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EMFILE || errno == ENFILE) {
                if (make_room(l, "out of file descriptors"))
                    continue;
                return;
            }
            env->metrics->connections_refused++;
            if (errno == ENOBUFS || errno == ENOMEM) {
                fl_log(LOG_WARNING, "accept: %s; pausing accept for %.0f ms", strerror(errno), FL_ACCEPT_RETRY * 1000);
                pause_accept(l);
                return;
            }
            fl_log(LOG_WARNING, "accept: %s", strerror(errno));
            return;
        }
        /* A refusal (out of memory) is counted and logged by fl_conn_new. */
        (void)fl_conn_new(env->conns, fd, l->is_unix, (const struct sockaddr *)&ss, len);
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
        /* No Nagle stall behind a reply. Linux copies it to every accepted socket, which
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

void fl_listen_resume(fl_listener *l)
{
    if (!l || !ev_is_active(&l->retry))
        return;
    ev_timer_stop(l->env.loop, &l->retry);
    watch(l);
}

void fl_listen_close(fl_listener *l)
{
    if (!l)
        return;
    ev_io_stop(l->env.loop, &l->io);
    ev_timer_stop(l->env.loop, &l->retry);
    close(l->fd);
    if (l->path)
        unlink(l->path);
    free(l->path);
    free(l);
}
