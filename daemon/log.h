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

#endif
