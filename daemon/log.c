/* log.c — log records as text lines or JSON objects (jansson), on stderr or an appended file. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MESSAGE_MAX 1024   /* of one message; longer ones are cut */
#define RECORD_MAX 4096    /* a text record: time, pid, level, message, context */

/* Read by every thread that logs, changed by the loop (start, SIGHUP): atomics, so a record
 * is written whole in the old way or the new one. */
static atomic_int log_level = LOG_INFO;
static atomic_int log_fd = STDERR_FILENO;
static atomic_int log_format = FL_LOG_TEXT;
static char *log_path;                  /* NULL: stderr; the loop's alone */
static char log_node[128];              /* "": unnamed; set before other threads log */

void fl_log_set_level(int level) { atomic_store(&log_level, level); }

void fl_log_set_node(const char *node)
{
    snprintf(log_node, sizeof log_node, "%s", node ? node : "");
}

static const char *level_name(int level)
{
    switch (level) {
    case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: case LOG_ERR: return "error";
    case LOG_WARNING: return "warning";
    case LOG_NOTICE: case LOG_INFO: return "info";
    default: return "debug";
    }
}

static int open_append(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    return fd < 0 ? -errno : fd;
}

int fl_log_open(const char *path, fl_log_format format)
{
    char *copy = NULL;
    int fd = STDERR_FILENO;
    if (path) {
        if (!(copy = strdup(path)))
            return -ENOMEM;
        if ((fd = open_append(path)) < 0) {
            free(copy);
            return fd;
        }
    }
    fl_log_close();
    atomic_store(&log_fd, fd);
    log_path = copy;
    atomic_store(&log_format, format);
    return 0;
}

int fl_log_reopen(void)
{
    if (!log_path)
        return 0;
    int fd = open_append(log_path);
    if (fd < 0) {
        fl_log(LOG_ERR, "SIGHUP: cannot reopen the log %s: %s; still writing to the old file",
               log_path, strerror(-fd));
        return fd;
    }
    /* the same descriptor number now names the new file: no writer ever sees a closed one */
    int rc = dup2(fd, atomic_load(&log_fd)) < 0 ? -errno : 0;
    close(fd);
    if (rc < 0)
        fl_log(LOG_ERR, "SIGHUP: cannot reopen the log %s: %s", log_path, strerror(-rc));
    else
        fl_log(LOG_INFO, "SIGHUP: log reopened: %s", log_path);
    return rc;
}

void fl_log_close(void)
{
    int fd = atomic_exchange(&log_fd, STDERR_FILENO);
    if (fd != STDERR_FILENO)
        close(fd);
    free(log_path);
    log_path = NULL;
    atomic_store(&log_format, FL_LOG_TEXT);
}

int fl_log_switch(const char *path, fl_log_format format)
{
    char *copy = NULL;
    int fd = STDERR_FILENO;
    if (path && (!(copy = strdup(path)) || (fd = open_append(path)) < 0)) {
        free(copy);
        return copy ? fd : -ENOMEM;
    }
    int cur = atomic_load(&log_fd);
    if (cur == STDERR_FILENO) {
        if (fd != STDERR_FILENO)
            atomic_store(&log_fd, fd);   /* stderr stays open for whoever still writes there */
    } else {
        /* the same descriptor number now names the new target: no writer sees a closed one */
        int rc = dup2(fd, cur) < 0 ? -errno : 0;
        if (fd != STDERR_FILENO)
            close(fd);
        if (rc < 0) {
            free(copy);
            return rc;
        }
    }
    free(log_path);
    log_path = copy;
    atomic_store(&log_format, format);
    return 0;
}

/* One record in one write, so that records of several threads never interleave. */
static void put_record(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(atomic_load(&log_fd), buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;   /* nowhere left to report it */
        buf += n;
        len -= (size_t)n;
    }
}

/* A JSON string for s: bytes that are not UTF-8 (a client's request target) become '?'. */
static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

/* Writes the record as one JSON object; 0, or -1 if it could not be built. */
static int put_json(const char *when, int level, const fl_log_ctx *ctx, const char *msg)
{
    json_t *o = json_object();
    int bad = !o || json_object_set_new(o, "time", json_string(when)) < 0 ||
              json_object_set_new(o, "level", json_string(level_name(level))) < 0 ||
              json_object_set_new(o, "pid", json_integer(getpid())) < 0 ||
              json_object_set_new(o, "msg", json_text(msg)) < 0;
    if (!bad && log_node[0])
        bad = json_object_set_new(o, "node", json_text(log_node)) < 0;
    if (!bad && ctx && ctx->job_id > 0) {
        char id[24];
        snprintf(id, sizeof id, "%" PRId64, ctx->job_id);
        bad = json_object_set_new(o, "job_id", json_string(id)) < 0;
    }
    if (!bad && ctx && ctx->type)
        bad = json_object_set_new(o, "type", json_text(ctx->type)) < 0;
    if (!bad && ctx && ctx->peer)
        bad = json_object_set_new(o, "peer", json_text(ctx->peer)) < 0;
    char *line = bad ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!line)
        return -1;
    size_t len = strlen(line);
    char *rec = realloc(line, len + 2);
    if (!rec) {
        free(line);
        return -1;
    }
    rec[len] = '\n';
    put_record(rec, len + 1);
    free(rec);
    return 0;
}

/* Writes the record as a text line, the context in brackets after the message. */
static void put_text(const char *when, int level, const fl_log_ctx *ctx, const char *msg)
{
    char rec[RECORD_MAX];
    size_t n = (size_t)snprintf(rec, sizeof rec, "%s flingd[%d] %s: %s", when, (int)getpid(),
                                level_name(level), msg);
    const char *sep = " [";
    if (log_node[0] && n < sizeof rec) {
        n += (size_t)snprintf(rec + n, sizeof rec - n, "%snode=%s", sep, log_node);
        sep = " ";
    }
    if (ctx && ctx->job_id > 0 && n < sizeof rec) {
        n += (size_t)snprintf(rec + n, sizeof rec - n, "%sjob=%" PRId64, sep, ctx->job_id);
        sep = " ";
    }
    if (ctx && ctx->type && n < sizeof rec) {
        n += (size_t)snprintf(rec + n, sizeof rec - n, "%stype=%s", sep, ctx->type);
        sep = " ";
    }
    if (ctx && ctx->peer && n < sizeof rec) {
        n += (size_t)snprintf(rec + n, sizeof rec - n, "%speer=%s", sep, ctx->peer);
        sep = " ";
    }
    if (sep[0] == ' ' && sep[1] == '\0' && n < sizeof rec)
        n += (size_t)snprintf(rec + n, sizeof rec - n, "]");
    if (n >= sizeof rec - 1)
        n = sizeof rec - 2;   /* cut, but still one line */
    rec[n++] = '\n';
    put_record(rec, n);
}

static void log_record(int level, const fl_log_ctx *ctx, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void log_record(int level, const fl_log_ctx *ctx, const char *fmt, va_list ap)
{
    char msg[MESSAGE_MAX], when[64];
    struct timeval tv;
    struct tm tm;
    vsnprintf(msg, sizeof msg, fmt, ap);
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000));
    /* a JSON record that cannot be built (out of memory) still leaves as text */
    if (atomic_load(&log_format) != FL_LOG_JSON || put_json(when, level, ctx, msg) < 0)
        put_text(when, level, ctx, msg);
}

void fl_log_kv(int level, const fl_log_ctx *ctx, const char *fmt, ...)
{
    if (level > atomic_load(&log_level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_record(level, ctx, fmt, ap);
    va_end(ap);
}

int fl_log_allow(fl_log_limit *l, const char *what)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ts.tv_sec != l->window) {
        l->window = ts.tv_sec;
        l->used = 0;
    }
    if (l->used >= FL_LOG_LIMIT_PER_SEC) {
        l->suppressed++;
        return 0;
    }
    l->used++;
    if (l->suppressed) {
        fl_log(LOG_WARNING, "suppressed %lu log lines about %s in the last seconds", l->suppressed, what);
        l->suppressed = 0;
    }
    return 1;
}
