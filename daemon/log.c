/* log.c — one-line, timestamped log records on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_level = LOG_INFO;

void fl_log_set_level(int level) { log_level = level; }

static const char *level_name(int level)
{
    switch (level) {
    case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: case LOG_ERR: return "error";
    case LOG_WARNING: return "warning";
    case LOG_NOTICE: case LOG_INFO: return "info";
    default: return "debug";
    }
}

void fl_log(int level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char line[1024];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ flingd[%d] %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (long)(tv.tv_usec / 1000), (int)getpid(), level_name(level));
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
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
