/* log.h — flingd's log: one record per event, with a UTC timestamp and a level, as a text line
 * or a JSON object per line, on stderr (the default) or appended to a file that SIGHUP reopens.
 * Callers log once, where an error is handled, with its context (job id, type, peer).
 * Thread-safe: a record is built in a buffer and leaves in one write(2) on an O_APPEND file;
 * fl_log_reopen swaps the file under the same descriptor number (dup2), so a thread writing
 * at that moment writes whole records to the old file or to the new one. */
#ifndef FL_LOG_H
#define FL_LOG_H

#include <stdint.h>
#include <syslog.h>   /* LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */

typedef enum fl_log_format {
    FL_LOG_TEXT = 0,  /* "2026-11-23T10:00:00.123Z flingd[pid] level: message [node=n job=7 type=t peer=p]" */
    FL_LOG_JSON       /* {"time":..,"level":..,"pid":..,"msg":..,"node":..,"job_id":"7","type":..,"peer":..} */
} fl_log_format;

/* What a record is about; zero-initialise and set what is known (0 / NULL = unknown). */
typedef struct fl_log_ctx {
    int64_t job_id;
    const char *type;
    const char *peer;         /* "127.0.0.1:5000", "unix" */
} fl_log_ctx;

/* fl_log_set_node names this daemon in every record from now on ("node=NAME" first in a text
 * line's brackets, "node" in JSON), for the nodes of a shared database; NULL = no name (the
 * default). node is copied (cut at 127 bytes). Call before other threads log. */
void fl_log_set_node(const char *node);

/* fl_log_set_level drops messages less severe than level (default LOG_INFO). */
void fl_log_set_level(int level);

/* fl_log_open sends the log to path (NULL: stderr), opened for appending and created 0640, in
 * the given format. Call before threads start. 0, or a negative errno (the log is unchanged). */
int fl_log_open(const char *path, fl_log_format format);

/* fl_log_reopen opens the log file's path again (after logrotate renamed it) and logs that it
 * did; with stderr it does nothing. 0, or a negative errno (logged to the old file). */
int fl_log_reopen(void);

/* fl_log_switch sends the log to path (NULL: stderr) in format while other threads log (a
 * reload): a record goes whole to the old target or the new one. 0, or a negative errno (the
 * log is unchanged). Loop thread. */
int fl_log_switch(const char *path, fl_log_format format);

/* fl_log_close goes back to stderr and text. */
void fl_log_close(void);

/* fl_log_kv writes one record with the message and what ctx knows (ctx may be NULL). */
void fl_log_kv(int level, const fl_log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* fl_log(level, fmt, ...) writes one record with the message only. */
#define fl_log(level, ...) fl_log_kv((level), NULL, __VA_ARGS__)

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
