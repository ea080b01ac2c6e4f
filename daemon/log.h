/* log.h — flingd's log: one line per event on stderr, with a UTC timestamp and a level.
 * Callers log once, where an error is handled, with its context (job id, peer). Thread-safe
 * (one fprintf per line; stderr is unbuffered). */
#ifndef FL_LOG_H
#define FL_LOG_H

#include <syslog.h>   /* LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */

/* fl_log_set_level drops messages less severe than level (default LOG_INFO). */
void fl_log_set_level(int level);

/* fl_log writes one line "2026-11-23T10:00:00.123Z flingd[pid] level: message". */
void fl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A budget of log lines per second for messages a client can cause at will (refused requests,
 * refused connections), so that a flood cannot fill the disk. Loop thread only. */
typedef struct fl_log_limit {
    long window;              /* the second the budget applies to */
    unsigned used;            /* lines logged in it */
    unsigned long suppressed; /* lines dropped since the last summary */
} fl_log_limit;

#define FL_LOG_LIMIT_PER_SEC 10

/* fl_log_allow returns 1 if one more line may be logged now under l's budget, else counts it as
 * suppressed and returns 0. The first line allowed after a suppression is preceded by one line
 * "suppressed N similar messages" naming what (e.g. "refused requests"). */
int fl_log_allow(fl_log_limit *l, const char *what);

#endif
