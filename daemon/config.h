/* config.h — flingd's configuration: the INI file (inih), its defaults and validation.
 * A loaded fl_config owns every string and array in it; fl_config_free releases them.
 * The loop thread alone reads a running daemon's fl_config, and changes it only through
 * fl_config_reload (SIGHUP); the store's writer thread never reads it (server.c gives it a
 * table of its own for the callback hooks). */
#ifndef FL_CONFIG_H
#define FL_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "cron.h"

typedef enum fl_handler {
    FL_HANDLER_EXEC = 0,  /* argv from the config, payload on stdin */
    FL_HANDLER_HTTP,      /* POST the payload to url */
    FL_HANDLER_NOOP,      /* succeeds at once */
    FL_HANDLER_SLEEP      /* sleeps for the seconds in its payload (a decimal) */
} fl_handler;

typedef struct fl_type {
    char *name;             /* [type.NAME] */
    fl_handler handler;
    char **argv;            /* exec: NULL-terminated, split like a shell (quotes, backslash); else NULL */
    char *url;              /* http: target URL; else NULL */
    double timeout;         /* seconds an attempt may run; default 30 */
    int max_attempts;       /* default 3 */
    int concurrency;        /* max running at once for this type; 0 = only [workers] count limits */
    double backoff_base;    /* seconds before the first retry, doubled each time; default 1 */
    double backoff_max;     /* cap on one back-off; default 3600 */
    char *on_complete;      /* URL (normalised by libcurl) or "exec:COMMAND"; NULL if unset */
    char *on_abort;         /* URL (normalised by libcurl) or "exec:COMMAND"; NULL if unset */
    /* The environment and credentials of the exec command and of exec: hooks. */
    char **env;             /* "NAME=value" strings set for the child; NULL-terminated or NULL */
    char **env_pass;        /* names passed on from flingd's environment; NULL-terminated or NULL */
    char *user;             /* run as this user (its uid, group and home); NULL = as flingd */
    char *user_home;        /* that user's home directory, the child's HOME */
    char *group;            /* run with this group (else the user's); NULL = as flingd */
    uid_t uid;              /* resolved at load: valid when user is set */
    gid_t gid;              /* resolved at load: valid when user or group is set */
    int callback_payload;   /* callbacks carry the payload, base64, as "payload"; default false */
    char *schedule;         /* periodic: the cron expression as written; NULL = not periodic */
    char *schedule_tz;      /* periodic: schedule_tz as written (an IANA zone); NULL = flingd's zone */
    fl_tz *tz;              /* periodic: the zone of the slots, schedule_tz's or flingd's; else NULL */
    fl_cron cron;           /* periodic: schedule, parsed; cron.tz borrows tz */
    char *periodic_payload; /* periodic: the payload of each job it enqueues; NULL = empty */
} fl_type;

/* One [callbacks] allow entry, parsed at load by libcurl's URL API. A callback URL is allowed
 * by it when scheme and port are equal, the host is equal ignoring case and the path is the
 * entry's path or below it (on a '/' boundary). */
typedef struct fl_allow {
    char *scheme;           /* "http" or "https" */
    char *host;             /* as libcurl normalises it; an IPv6 address in brackets */
    char *port;             /* decimal; the scheme's default when the entry names none */
    char *path;             /* "" = every path; else "/a/b" (no trailing '/') = /a/b and /a/b/... */
} fl_allow;

typedef struct fl_config {
    /* [server] */
    char *listen_host;      /* "127.0.0.1" */
    int listen_port;        /* 7878; 0 = a free port (see --ready-file) */
    char *unix_path;        /* NULL = no Unix socket */
    char *token;            /* NULL = no auth */
    size_t max_payload;     /* 1048576; larger bodies get 413 */
    size_t max_header;      /* 16384 bytes of request line + headers; more gets 431 */
    int backlog;            /* listen() backlog; default 4096 (SOMAXCONN) */
    int max_connections;    /* accept pauses at this many open connections; default 10000 */
    double read_timeout;    /* seconds an incomplete request may take; default 10 */
    double idle_timeout;    /* seconds a keep-alive connection may sit idle; default 60 */
    int max_pipeline;       /* requests one connection may have waiting for their reply; default 128 */
    size_t max_output;      /* reply and queued payload bytes one connection may hold; default 256 KiB */
    size_t max_stream_buffer; /* bytes an event stream may have queued before it is dropped; 1 MiB */
    char *log_path;         /* NULL = stderr */
    int log_json;           /* log_format: 1 = json, 0 = text (default) */
    int log_level;          /* the least severe level logged (syslog.h); LOG_INFO; --verbose: LOG_DEBUG */
    int open_health;        /* GET /healthz needs no token; default false */
    int open_metrics;       /* GET /metrics needs no token; default false */
    /* [store] */
    char *store_backend;    /* NULL = "sqlite"; a name fl_store_backend_known accepts */
    char *db_path;          /* "var/fling.db" */
    char *store_url;        /* PostgreSQL: a libpq connection string or URI; NULL = none */
    char *store_node;       /* this node's name in a shared database; NULL = hostname:port */
    int store_connections;  /* reader connections beside the writer's; default 2 */
    double store_statement_timeout;   /* PostgreSQL: seconds a statement may take; default 30 */
    int store_writers;      /* PostgreSQL: writer connections, 1 or 2; default 2 */
    int durability_full;    /* 1 = full (fsync every commit, default), 0 = normal */
    long store_retention;   /* seconds a finished job is kept; 0 = for ever; default 7 days */
    /* [workers] */
    int workers;            /* default 8 */
    double shutdown_grace;  /* seconds running jobs get on SIGTERM; default 30 */
    /* [redis] */
    char *redis_url;        /* NULL = no mirror */
    char *redis_prefix;     /* "fling:" */
    long redis_retention;   /* seconds a terminal job's hash lives; default 86400 */
    /* [callbacks] */
    fl_allow *callback_allow;   /* where a Fling-Callback may point */
    size_t n_callback_allow;
    char *callback_secret;  /* NULL = unsigned */
    int callback_attempts;  /* attempts per delivery before it is given up; default 10 */
    double callback_timeout;         /* seconds one attempt may take; default 10 */
    double callback_connect_timeout; /* seconds to connect; default 5 (at most timeout) */
    double callback_backoff;         /* seconds before the first retry, doubled each time; default 1 */
    double callback_backoff_max;     /* cap on one back-off; default 300 */
    int callback_concurrency;        /* deliveries in flight at once; default 32 */
    /* [type.*] */
    fl_type *types;
    size_t n_types;
} fl_config;

/* fl_config_init fills c with the defaults (and the built-in types noop and sleep, used when
 * no file is given); 0 or -ENOMEM. Free with fl_config_free. */
int fl_config_init(fl_config *c);

/* fl_config_load reads the INI file at path over the defaults already in c. With a file, the
 * types are exactly the file's [type.*] sections, and the relative paths ([store] path,
 * [server] unix and log, the default database too) are made absolute against the folder of the
 * file, so that the file means the same whatever the working directory. Returns 0, or a negative errno with a
 * one-line reason "FILE:LINE: reason" (or "FILE: reason") written to err. */
int fl_config_load(fl_config *c, const char *path, char *err, size_t errlen);

/* fl_config_print writes c to f as an INI file flingd would read back the same way, every key
 * with its effective value (defaults included, relative paths resolved); unset optional keys
 * are left out, and secrets (token, callback secret, a Redis URL with a password) are written
 * as "(set)". For flingd --print-config. */
void fl_config_print(const fl_config *c, FILE *f);

/* fl_config_set_listen parses "HOST:PORT" into c (the --listen override); 0 or -EINVAL with err. */
int fl_config_set_listen(fl_config *c, const char *hostport, char *err, size_t errlen);

/* fl_config_handler_name returns the handler's name as handler = spells it ("exec", ...). */
const char *fl_config_handler_name(fl_handler h);

/* fl_config_find_type returns the type called name (len bytes), or NULL. Borrowed from c. */
const fl_type *fl_config_find_type(const fl_config *c, const char *name, size_t len);

/* fl_config_callback_allowed returns 1 if url (len bytes) is an http(s) URL without user info
 * that one of [callbacks] allow allows, else 0 (see fl_allow). */
int fl_config_callback_allowed(const fl_config *c, const char *url, size_t len);

/* fl_config_callback_url checks url as a delivery target: an http(s) URL without user info,
 * and, if allow is set, allowed by [callbacks] allow. 0 with *out the URL as libcurl normalised
 * it (caller frees) — the string to hand to libcurl, so what it connects to is what was checked;
 * -EINVAL with *why (a static string) if refused; -ENOMEM. */
int fl_config_callback_url(const fl_config *c, const char *url, int allow, char **out, const char **why);

/* fl_config_split splits command like a POSIX shell (quotes, backslashes; no expansion) into
 * a NULL-terminated argv in one allocation (free(*argv) releases it): 0, -EINVAL with *why,
 * or -ENOMEM. For exec: callback hooks, checked at load and split again when they run. */
int fl_config_split(const char *command, char ***argv, const char **why);

/* What fl_config_reload applied that needs more than the new value in place. */
#define FL_RELOAD_LOG 1       /* [server] log or log_format: reopen the log */
#define FL_RELOAD_SCHEDULE 2  /* a schedule, its zone or periodic_payload: restart the timers */
#define FL_RELOAD_HOOKS 4     /* an on_complete or on_abort: republish the writer's hook table */
#define FL_RELOAD_RETENTION 8 /* [store] retention: tell the pruner */
#define FL_RELOAD_SLOTS 16    /* [workers] count or a type's concurrency: more may run now */

/* fl_config_reload applies to live (the running daemon's, on the loop thread) the keys of next
 * that may change while flingd runs (fl_config_key_reloadable), by swapping each changed value
 * between the two: next then holds the old values, and the caller keeps it alive for as long
 * as anything may still borrow one (an attempt running with the old command). Keys that differ
 * but cannot change live, and types added, removed or given another handler, are left as they
 * are. changed and restart receive the comma-separated keys ("[server] token, [type.a]
 * concurrency"; "" if none). Returns a mask of FL_RELOAD_* for what the caller must redo. */
int fl_config_reload(fl_config *live, fl_config *next, char *changed, size_t changed_len, char *restart,
                     size_t restart_len);

/* fl_config_key_reloadable returns 1 if SIGHUP applies key name of section ("server", "type",
 * ...) to a running flingd, else 0. */
int fl_config_key_reloadable(const char *section, const char *name);

/* fl_config_free releases everything c owns; c itself is the caller's. Safe on a zeroed c. */
void fl_config_free(fl_config *c);

#endif
