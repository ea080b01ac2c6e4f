/* config.c — flingd's configuration: the defaults, the INI file (read with inih) and validation.
 * inih splits lines into sections and key = value pairs and strips comments. We hand it the
 * lines through our own reader, which counts them (inih's handler gets no line number), refuses
 * over-long lines instead of letting inih cut them in two, and sees every [section] header, even
 * one with no keys under it. Every value is checked as it is read, so a bad file is refused with
 * "FILE:LINE: reason" for its first bad line.
 *
 * Why one long file: every key lives in one table (name, kind, field, bounds), and each value
 * kind's parser, its cross-key checks and its printer (--print-config) sit beside that table, so
 * that adding or changing a key is one edit in one place; splitting the kinds into files would
 * spread each key over three. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <syslog.h>

#include "proto.h"
#include "redisurl.h"
#include "rediskeys.h"
#include "store.h"

/* Longest line accepted, newline included. inih keeps its line buffer on the stack; a command or
 * an allow list longer than this is better split into shorter pieces anyway. */
#define LINE_MAX_BYTES 8192
/* A value quoted back in an error message is cut here so the message stays one readable line. */
#define ECHO_MAX 80
/* Longest [section] name we ever accept: "type." plus a type name. */
#define SECTION_MAX (5 + FL_TYPE_NAME_MAX)

#define KIB 1024.0
#define MIB (1024.0 * 1024.0)
/* Upper bound for the seconds settings without a tighter one: a year, like Fling-Delay. */
#define SECONDS_MAX FL_DELAY_MAX
/* Bytes a Unix socket path may take in struct sockaddr_un, its NUL included. */
#define SUN_PATH_SIZE sizeof(((struct sockaddr_un *)0)->sun_path)
/* Redis retention: ten years is already "forever" for a job hash. */
#define RETENTION_MAX (10 * 365 * 86400.0)
/* [store] node: a name for logs, metrics and the owner column, not a paragraph. */
#define NODE_MAX 64

/* ---- defaults ---------------------------------------------------------------------------- */

#define DEFAULT_HOST            "127.0.0.1"
#define DEFAULT_PORT            7878
#define DEFAULT_MAX_PAYLOAD     (1024 * 1024)
#define DEFAULT_MAX_HEADER      (16 * 1024)
#define DEFAULT_BACKLOG         4096    /* Linux's SOMAXCONN since 5.4 */
#define DEFAULT_MAX_CONNECTIONS 10000
#define DEFAULT_READ_TIMEOUT    10.0
#define DEFAULT_IDLE_TIMEOUT    60.0
#define DEFAULT_MAX_PIPELINE    128     /* deep enough for a pipelining submitter to fill a commit group */
#define DEFAULT_MAX_OUTPUT      (256 * 1024)
#define DEFAULT_MAX_STREAM_BUFFER (1024 * 1024)
#define DEFAULT_DB_PATH         "var/fling.db"
#define DEFAULT_WORKERS         8
#define DEFAULT_SHUTDOWN_GRACE  30.0
#define DEFAULT_REDIS_PREFIX    FL_PROTO_REDIS_DEFAULT_PREFIX
#define DEFAULT_RETENTION       86400
#define DEFAULT_TIMEOUT         30.0
#define DEFAULT_MAX_ATTEMPTS    3
#define DEFAULT_BACKOFF         1.0
#define DEFAULT_BACKOFF_MAX     3600.0

/* ---- the key table ----------------------------------------------------------------------- */

typedef enum section_kind {
    SEC_NONE = 0,   /* before the first [section] */
    SEC_SERVER,
    SEC_STORE,
    SEC_WORKERS,
    SEC_REDIS,
    SEC_CALLBACKS,
    SEC_TYPE        /* [type.NAME]: keys go into the last fl_type */
} section_kind;

typedef enum value_kind {
    V_INT,          /* int: decimal integer lo..hi */
    V_LONG,         /* long: decimal integer lo..hi */
    V_BYTES,        /* size_t: decimal integer lo..hi, optional k/K or m/M suffix (x1024) */
    V_SECONDS,      /* double: decimal seconds > 0, at most hi */
    V_SECONDS0,     /* double: decimal seconds >= 0, at most hi */
    V_TEXT,         /* char *: any text, empty too */
    V_PATH,         /* char *: non-empty */
    V_UNIX,         /* char *: non-empty and short enough for sockaddr_un */
    V_SECRET,       /* char *: visible ASCII; never quoted back in an error */
    V_REDIS_URL,    /* char *: redis://... or unix:... */
    V_LISTEN,       /* listen_host and listen_port */
    V_DURABILITY,   /* int: full = 1, normal = 0 */
    V_LOG_FORMAT,   /* int: json = 1, text = 0 */
    V_LOG_LEVEL,    /* int: a syslog level, from error, warning, info, debug */
    V_BACKEND,      /* char *: the name of a store backend */
    V_STORE_URL,    /* char *: the store server's address (checked once the backend is known) */
    V_NODE,         /* char *: 1..64 visible ASCII characters */
    V_ALLOW,        /* callback_allow list */
    V_HANDLER,      /* fl_handler */
    V_COMMAND,      /* argv */
    V_URL,          /* char *: http:// or https:// URL, stored as libcurl normalises it */
    V_HOOK,         /* char *: URL (normalised) or exec:COMMAND */
    V_ENV,          /* char **: NAME=value, ... */
    V_ENV_PASS,     /* char **: NAME, ... */
    V_USER,         /* user, uid, user_home (and gid unless a group is set) */
    V_GROUP,        /* group, gid */
    V_BOOL,         /* int: true = 1, false = 0 */
    V_DURATION,     /* long: seconds, written N, Ns, Nm, Nh or Nd (fl_proto_parse_duration) */
    V_CRON,         /* schedule: its text and the parsed fl_cron */
    V_ZONE          /* schedule_tz: its text, and the zone read from its TZif file (fl_tz_load) */
} value_kind;

typedef struct key_spec {
    section_kind section;
    const char *name;
    value_kind kind;
    size_t off;             /* field offset in fl_config, or in fl_type for SEC_TYPE */
    double lo, hi;          /* bounds of the numeric kinds */
} key_spec;

#define CFG(field) offsetof(fl_config, field)
#define TYP(field) offsetof(fl_type, field)

/* [store] retention: finished jobs are kept a week by default. */
#define DEFAULT_STORE_RETENTION (7 * 86400L)
/* [store] connections: PostgreSQL readers beside the writer's connection. */
#define DEFAULT_STORE_CONNECTIONS 2
/* [store] writers: PostgreSQL writer connections (a second runs plain submits beside the first). */
#define DEFAULT_STORE_WRITERS 2
/* [store] statement_timeout: seconds a PostgreSQL statement may take. */
#define DEFAULT_STORE_STATEMENT_TIMEOUT 30.0

static const key_spec keys[] = {
    {SEC_SERVER, "listen", V_LISTEN, 0, 0, 0},
    {SEC_SERVER, "unix", V_UNIX, CFG(unix_path), 0, 0},
    {SEC_SERVER, "token", V_SECRET, CFG(token), 0, 0},
    {SEC_SERVER, "max_payload", V_BYTES, CFG(max_payload), 1, 64 * MIB},
    {SEC_SERVER, "max_header", V_BYTES, CFG(max_header), KIB, MIB},
    {SEC_SERVER, "backlog", V_INT, CFG(backlog), 1, 65535},
    {SEC_SERVER, "max_connections", V_INT, CFG(max_connections), 1, 1000000},
    {SEC_SERVER, "read_timeout", V_SECONDS, CFG(read_timeout), 0, SECONDS_MAX},
    {SEC_SERVER, "idle_timeout", V_SECONDS, CFG(idle_timeout), 0, SECONDS_MAX},
    {SEC_SERVER, "max_pipeline", V_INT, CFG(max_pipeline), 1, 65536},
    {SEC_SERVER, "max_output", V_BYTES, CFG(max_output), 4 * KIB, 64 * MIB},
    {SEC_SERVER, "max_stream_buffer", V_BYTES, CFG(max_stream_buffer), 4 * KIB, 64 * MIB},
    {SEC_SERVER, "log", V_PATH, CFG(log_path), 0, 0},
    {SEC_SERVER, "log_format", V_LOG_FORMAT, CFG(log_json), 0, 0},
    {SEC_SERVER, "log_level", V_LOG_LEVEL, CFG(log_level), 0, 0},
    {SEC_SERVER, "open_health", V_BOOL, CFG(open_health), 0, 0},
    {SEC_SERVER, "open_metrics", V_BOOL, CFG(open_metrics), 0, 0},
    {SEC_STORE, "backend", V_BACKEND, CFG(store_backend), 0, 0},
    {SEC_STORE, "path", V_PATH, CFG(db_path), 0, 0},
    {SEC_STORE, "url", V_STORE_URL, CFG(store_url), 0, 0},
    {SEC_STORE, "node", V_NODE, CFG(store_node), 0, 0},
    {SEC_STORE, "durability", V_DURABILITY, CFG(durability_full), 0, 0},
    {SEC_STORE, "retention", V_DURATION, CFG(store_retention), 0, 0},
    {SEC_STORE, "connections", V_INT, CFG(store_connections), 1, 64},
    {SEC_STORE, "statement_timeout", V_SECONDS, CFG(store_statement_timeout), 0, 3600},
    {SEC_STORE, "writers", V_INT, CFG(store_writers), 1, 2},
    {SEC_WORKERS, "count", V_INT, CFG(workers), 1, 1024},
    {SEC_WORKERS, "shutdown_grace", V_SECONDS0, CFG(shutdown_grace), 0, SECONDS_MAX},
    {SEC_REDIS, "url", V_REDIS_URL, CFG(redis_url), 0, 0},
    {SEC_REDIS, "prefix", V_TEXT, CFG(redis_prefix), 0, 0},
    {SEC_REDIS, "retention", V_LONG, CFG(redis_retention), 1, RETENTION_MAX},
    {SEC_CALLBACKS, "allow", V_ALLOW, 0, 0, 0},
    {SEC_CALLBACKS, "secret", V_SECRET, CFG(callback_secret), 0, 0},
    {SEC_CALLBACKS, "max_attempts", V_INT, CFG(callback_attempts), 1, FL_ATTEMPTS_MAX},
    {SEC_CALLBACKS, "timeout", V_SECONDS, CFG(callback_timeout), 0, 3600},
    {SEC_CALLBACKS, "connect_timeout", V_SECONDS, CFG(callback_connect_timeout), 0, 3600},
    {SEC_CALLBACKS, "backoff", V_SECONDS, CFG(callback_backoff), 0, SECONDS_MAX},
    {SEC_CALLBACKS, "backoff_max", V_SECONDS, CFG(callback_backoff_max), 0, SECONDS_MAX},
    {SEC_CALLBACKS, "concurrency", V_INT, CFG(callback_concurrency), 1, 10000},
    {SEC_TYPE, "handler", V_HANDLER, TYP(handler), 0, 0},
    {SEC_TYPE, "command", V_COMMAND, TYP(argv), 0, 0},
    {SEC_TYPE, "url", V_URL, TYP(url), 0, 0},
    {SEC_TYPE, "timeout", V_SECONDS, TYP(timeout), 0, FL_TIMEOUT_MAX},
    {SEC_TYPE, "max_attempts", V_INT, TYP(max_attempts), 1, FL_ATTEMPTS_MAX},
    {SEC_TYPE, "concurrency", V_INT, TYP(concurrency), 0, 100000},
    {SEC_TYPE, "backoff", V_SECONDS, TYP(backoff_base), 0, SECONDS_MAX},
    {SEC_TYPE, "backoff_max", V_SECONDS, TYP(backoff_max), 0, SECONDS_MAX},
    {SEC_TYPE, "on_complete", V_HOOK, TYP(on_complete), 0, 0},
    {SEC_TYPE, "on_abort", V_HOOK, TYP(on_abort), 0, 0},
    {SEC_TYPE, "env", V_ENV, TYP(env), 0, 0},
    {SEC_TYPE, "env_pass", V_ENV_PASS, TYP(env_pass), 0, 0},
    {SEC_TYPE, "user", V_USER, 0, 0, 0},
    {SEC_TYPE, "group", V_GROUP, 0, 0, 0},
    {SEC_TYPE, "callback_payload", V_BOOL, TYP(callback_payload), 0, 0},
    {SEC_TYPE, "schedule", V_CRON, TYP(schedule), 0, 0},
    {SEC_TYPE, "schedule_tz", V_ZONE, TYP(schedule_tz), 0, 0},
    {SEC_TYPE, "periodic_payload", V_TEXT, TYP(periodic_payload), 0, 0},
};

static const struct {
    const char *name;
    section_kind kind;
} sections[] = {
    {"server", SEC_SERVER},   {"store", SEC_STORE}, {"workers", SEC_WORKERS},
    {"redis", SEC_REDIS},     {"callbacks", SEC_CALLBACKS},
};

static const struct {
    const char *name;
    int level;
} log_levels[] = {
    {"error", LOG_ERR}, {"warning", LOG_WARNING}, {"info", LOG_INFO}, {"debug", LOG_DEBUG},
};

static const char *const handler_names[] = {
    [FL_HANDLER_EXEC] = "exec",
    [FL_HANDLER_HTTP] = "http",
    [FL_HANDLER_NOOP] = "noop",
    [FL_HANDLER_SLEEP] = "sleep",
};

const char *fl_config_handler_name(fl_handler h)
{
    return (unsigned)h < sizeof handler_names / sizeof *handler_names ? handler_names[h] : "unknown";
}

/* ---- the loader: state of one fl_config_load ------------------------------------------- */

typedef struct loader {
    fl_config *c;
    const char *path;
    FILE *f;
    char *buf;                      /* getline's buffer: the line inih works on */
    size_t cap;
    int line;                       /* number of the line in buf */
    section_kind kind;
    char section[SECTION_MAX + 1];  /* current section name, for messages */
    int section_line;
    /* what the current [type.*] section said so far, checked when it ends */
    int has_handler;
    int command_line;               /* line of its command key, 0 if none */
    int url_line;
    char why[160];                  /* reason a value was refused, filled by reject() */
    int rc;                         /* first error (negative errno), 0 so far */
    char *err;
    size_t errlen;
} loader;

__attribute__((format(printf, 3, 0)))
static void put_verr(char *err, size_t errlen, const char *fmt, va_list ap)
{
    if (err && errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
}

__attribute__((format(printf, 3, 4)))
static void put_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    put_verr(err, errlen, fmt, ap);
    va_end(ap);
}

/* fail records the load's first error as "PATH:LINE: message" ("PATH: message" for line 0) and
 * returns rc; later errors are consequences of the first and are dropped. */
__attribute__((format(printf, 4, 5)))
static int fail(loader *ld, int line, int rc, const char *fmt, ...)
{
    if (ld->rc)
        return ld->rc;
    ld->rc = rc;
    if (!ld->err || ld->errlen == 0)
        return rc;
    int n = line > 0 ? snprintf(ld->err, ld->errlen, "%s:%d: ", ld->path, line)
                     : snprintf(ld->err, ld->errlen, "%s: ", ld->path);
    if (n >= 0 && (size_t)n < ld->errlen) {
        va_list ap;
        va_start(ap, fmt);
        put_verr(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* reject notes why a value was refused; the key handler adds section, key and the value. */
__attribute__((format(printf, 2, 3)))
static int reject(loader *ld, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->why, sizeof ld->why, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* ---- value parsers ----------------------------------------------------------------------- */

/* parse_digits reads a run of decimal digits at *s up to max; 0, or -EINVAL if there is none
 * or it is larger than max. */
static int parse_digits(const char **s, double max, double *out)
{
    const char *p = *s;
    double n = 0;
    if (!isdigit((unsigned char)*p))
        return -EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        n = n * 10 + (*p - '0');
        if (n > max)
            return -EINVAL;
    }
    *s = p;
    *out = n;
    return 0;
}

/* parse_integer accepts only digits (no sign, no blanks): lo..hi. */
static int parse_integer(const char *s, double lo, double hi, double *out)
{
    if (parse_digits(&s, hi, out) < 0 || *s != '\0' || *out < lo)
        return -EINVAL;
    return 0;
}

/* parse_bytes accepts digits with an optional k/K or m/M suffix (1024 multiples): lo..hi. */
static int parse_bytes(const char *s, double lo, double hi, double *out)
{
    double scale = 1;
    if (parse_digits(&s, hi, out) < 0)
        return -EINVAL;
    if (*s == 'k' || *s == 'K')
        scale = KIB, s++;
    else if (*s == 'm' || *s == 'M')
        scale = MIB, s++;
    if (*s != '\0')
        return -EINVAL;
    *out *= scale;
    return *out < lo || *out > hi ? -EINVAL : 0;
}

/* parse_seconds accepts a plain decimal ("30", "0.25", "1."): digits with at most one point,
 * no sign, no exponent, so what a user reads is what we take. 0, or -EINVAL if malformed. */
static int parse_seconds(const char *s, double *out)
{
    size_t digits = 0, points = 0;
    for (const char *p = s; *p; p++) {
        if (isdigit((unsigned char)*p))
            digits++;
        else if (*p == '.')
            points++;
        else
            return -EINVAL;
    }
    if (digits == 0 || points > 1)
        return -EINVAL;
    *out = strtod(s, NULL);
    return isfinite(*out) ? 0 : -EINVAL;
}

/* ---- URLs, read with libcurl's URL API ----------------------------------------------------
 * Every URL flingd will hand to libcurl is parsed by libcurl's own parser here, so the parts we
 * judge are the parts libcurl connects to; the normalised URL it gives back is what we store
 * and send. */

/* The parts of a parsed URL we look at, each allocated by libcurl (url_parts_free). */
typedef struct url_parts {
    char *url;              /* normalised */
    char *scheme, *host, *port, *path;   /* port with the scheme's default filled in */
    int has_extra;          /* a ?query or #fragment */
} url_parts;

static void url_parts_free(url_parts *u)
{
    curl_free(u->url);
    curl_free(u->scheme);
    curl_free(u->host);
    curl_free(u->port);
    curl_free(u->path);
    memset(u, 0, sizeof *u);
}

/* url_part gets one part: 1 if present, 0 if absent, -ENOMEM. */
static int url_part(CURLU *h, CURLUPart what, unsigned flags, char **out)
{
    char *part = NULL;
    CURLUcode uc = curl_url_get(h, what, &part, flags);
    if (uc == CURLUE_OUT_OF_MEMORY)
        return -ENOMEM;
    if (!out)
        curl_free(part);
    else
        *out = part;
    return uc == CURLUE_OK;
}

/* url_read fills u from the URL in h: an http or https URL without user info or zone id. */
static int url_read(CURLU *h, url_parts *u, const char **why)
{
    int rc, user, password, zone, query, fragment;
    if ((rc = url_part(h, CURLUPART_SCHEME, 0, &u->scheme)) < 0 ||
        (rc = url_part(h, CURLUPART_HOST, 0, &u->host)) < 0 ||
        (rc = url_part(h, CURLUPART_PORT, CURLU_DEFAULT_PORT, &u->port)) < 0 ||
        (rc = url_part(h, CURLUPART_PATH, 0, &u->path)) < 0 ||
        (rc = url_part(h, CURLUPART_URL, 0, &u->url)) < 0 ||
        (user = url_part(h, CURLUPART_USER, 0, NULL)) < 0 ||
        (password = url_part(h, CURLUPART_PASSWORD, 0, NULL)) < 0 ||
        (zone = url_part(h, CURLUPART_ZONEID, 0, NULL)) < 0 ||
        (query = url_part(h, CURLUPART_QUERY, 0, NULL)) < 0 ||
        (fragment = url_part(h, CURLUPART_FRAGMENT, 0, NULL)) < 0)
        return -ENOMEM;
    if (!u->scheme || !u->host || !u->port || !u->path || !u->url) {
        *why = "incomplete URL";
        return -EINVAL;
    }
    if (strcmp(u->scheme, "http") != 0 && strcmp(u->scheme, "https") != 0) {
        *why = "the scheme must be http or https";
        return -EINVAL;
    }
    if (user || password) {
        *why = "user info (user:password@) is not allowed";
        return -EINVAL;
    }
    if (zone) {
        *why = "an IPv6 zone id is not allowed";
        return -EINVAL;
    }
    u->has_extra = query || fragment;
    return 0;
}

/* url_parse parses s (NUL-terminated) as an http(s) URL into u: 0, -EINVAL with *why (a
 * static string), or -ENOMEM. Nothing is left to free after an error. */
static int url_parse(const char *s, url_parts *u, const char **why)
{
    memset(u, 0, sizeof *u);
    CURLU *h = curl_url();
    if (!h)
        return -ENOMEM;
    /* No CURLU_GUESS_SCHEME, CURLU_NON_SUPPORT_SCHEME or CURLU_ALLOW_SPACE: a URL is whole,
     * for a scheme libcurl speaks, with no blank in it. */
    CURLUcode uc = curl_url_set(h, CURLUPART_URL, s, 0);
    int rc = uc == CURLUE_OK ? url_read(h, u, why) : uc == CURLUE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
    if (uc != CURLUE_OK && uc != CURLUE_OUT_OF_MEMORY)
        *why = curl_url_strerror(uc);
    curl_url_cleanup(h);
    if (rc < 0)
        url_parts_free(u);
    return rc;
}

/* path_within says whether path is prefix or below it. An encoded '.', '/' or backslash could
 * name a path outside prefix to a receiver that decodes them, and some take a plain backslash
 * for a '/': under a prefix all of these are refused. */
static int path_within(const char *prefix, const char *path)
{
    size_t n = strlen(prefix);
    if (n == 0)
        return 1;
    if (strchr(path, '\\') || strcasestr(path, "%2e") || strcasestr(path, "%2f") ||
        strcasestr(path, "%5c"))
        return 0;
    return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int allow_match(const fl_allow *a, const url_parts *u)
{
    return strcmp(a->scheme, u->scheme) == 0 && strcasecmp(a->host, u->host) == 0 &&
           strcmp(a->port, u->port) == 0 && path_within(a->path, u->path);
}

static int allowed_by(const fl_config *c, const url_parts *u)
{
    for (size_t i = 0; i < c->n_callback_allow; i++)
        if (allow_match(&c->callback_allow[i], u))
            return 1;
    return 0;
}

/* is_visible says whether s is non-empty visible ASCII: a bearer token or a secret that can
 * travel in a header unchanged. */
static int is_visible(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

/* parse_listen splits "HOST:PORT" (IPv4, "localhost" or "[IPv6]") into a new host string
 * (brackets removed, caller frees) and a port 0..65535; 0, -EINVAL or -ENOMEM. */
static int parse_listen(const char *s, char **host, int *port)
{
    const char *h = s, *h_end, *p;
    char buf[INET6_ADDRSTRLEN];
    unsigned char addr[sizeof(struct in6_addr)];
    int family = AF_INET;
    if (*s == '[') {
        h = s + 1;
        h_end = strchr(h, ']');
        if (!h_end || h_end[1] != ':')
            return -EINVAL;
        p = h_end + 2;
        family = AF_INET6;
    } else {
        h_end = strrchr(s, ':');
        if (!h_end)
            return -EINVAL;
        p = h_end + 1;
    }
    size_t hlen = (size_t)(h_end - h);
    if (hlen == 0 || hlen >= sizeof buf)
        return -EINVAL;
    memcpy(buf, h, hlen);
    buf[hlen] = '\0';
    int named = family == AF_INET && strcmp(buf, "localhost") == 0;
    if (!named && inet_pton(family, buf, addr) != 1)
        return -EINVAL;
    double n;
    if (parse_integer(p, 0, 65535, &n) < 0)
        return -EINVAL;
    char *copy = strdup(buf);
    if (!copy)
        return -ENOMEM;
    *host = copy;
    *port = (int)n;
    return 0;
}

#define LISTEN_EXPECTED "expected HOST:PORT (IPv4, localhost or [IPv6]; port 0..65535)"

/* ---- shell-like word splitting ----------------------------------------------------------- */

/* A splitter writes words into out when it is not NULL and counts bytes either way, so one
 * function serves to measure, to check and to fill. */
typedef struct splitter {
    char **argv;
    char *out;
    size_t words;
    size_t bytes;           /* NULs included */
} splitter;

static void put_byte(splitter *sp, char ch)
{
    if (sp->out)
        sp->out[sp->bytes] = ch;
    sp->bytes++;
}

/* split_word reads one word at *pp: single quotes are literal, double quotes take backslash
 * escapes of " \ $ ` only, a backslash outside quotes escapes any next byte. NULL, or why not. */
static const char *split_word(splitter *sp, const char **pp)
{
    const char *p = *pp;
    if (sp->argv)
        sp->argv[sp->words] = sp->out + sp->bytes;
    while (*p && *p != ' ' && *p != '\t') {
        char ch = *p++;
        if (ch == '\'') {
            while (*p && *p != '\'')
                put_byte(sp, *p++);
            if (!*p)
                return "unterminated ' quote";
            p++;
        } else if (ch == '"') {
            while (*p && *p != '"') {
                if (*p == '\\' && p[1] && strchr("\"\\$`", p[1]))
                    p++;
                put_byte(sp, *p++);
            }
            if (!*p)
                return "unterminated \" quote";
            p++;
        } else if (ch == '\\') {
            if (!*p)
                return "backslash at the end";
            put_byte(sp, *p++);
        } else {
            put_byte(sp, ch);
        }
    }
    put_byte(sp, '\0');
    sp->words++;
    *pp = p;
    return NULL;
}

/* split_words splits s into words like a POSIX shell, without running one and without any
 * expansion; NULL, or why not (an empty command is refused). */
static const char *split_words(splitter *sp, const char *s)
{
    for (;;) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        const char *why = split_word(sp, &s);
        if (why)
            return why;
    }
    return sp->words == 0 ? "empty command" : NULL;
}

/* fl_config_split returns in *argv a NULL-terminated argv for s in one allocation (the pointers,
 * then the strings; one free releases it): 0, -EINVAL with *why, or -ENOMEM. */
int fl_config_split(const char *s, char ***argv, const char **why)
{
    splitter count = {0};
    *why = split_words(&count, s);
    if (*why)
        return -EINVAL;
    size_t ptrs = (count.words + 1) * sizeof(char *);
    char **v = malloc(ptrs + count.bytes);
    if (!v)
        return -ENOMEM;
    splitter fill = {.argv = v, .out = (char *)v + ptrs};
    split_words(&fill, s);
    v[fill.words] = NULL;
    *argv = v;
    return 0;
}

/* ---- owned memory ------------------------------------------------------------------------ */

/* strv_free frees a NULL-terminated array of strings and the strings. */
static void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static void type_free(fl_type *t)
{
    free(t->name);
    free(t->argv);
    free(t->url);
    free(t->on_complete);
    free(t->on_abort);
    free(t->schedule);
    free(t->schedule_tz);
    fl_tz_free(t->tz);
    free(t->periodic_payload);
    strv_free(t->env);
    strv_free(t->env_pass);
    free(t->user);
    free(t->user_home);
    free(t->group);
}

static void types_free(fl_config *c)
{
    for (size_t i = 0; i < c->n_types; i++)
        type_free(&c->types[i]);
    free(c->types);
    c->types = NULL;
    c->n_types = 0;
}

static void allow_free(fl_allow *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++) {
        free(list[i].scheme);
        free(list[i].host);
        free(list[i].port);
        free(list[i].path);
    }
    free(list);
}

/* types_append adds a type called name (len bytes) with the default limits; NULL on ENOMEM
 * (then c is unchanged apart from maybe a larger array). */
static fl_type *types_append(fl_config *c, const char *name, size_t len, fl_handler handler)
{
    fl_type *grown = realloc(c->types, (c->n_types + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    c->types = grown;
    fl_type *t = &grown[c->n_types];
    memset(t, 0, sizeof *t);
    t->name = strndup(name, len);
    if (!t->name)
        return NULL;
    t->handler = handler;
    t->timeout = DEFAULT_TIMEOUT;
    t->max_attempts = DEFAULT_MAX_ATTEMPTS;
    t->backoff_base = DEFAULT_BACKOFF;
    t->backoff_max = DEFAULT_BACKOFF_MAX;
    c->n_types++;
    return t;
}

/* replace_string stores a copy of v in *dst, freeing the old one; 0 or -ENOMEM. */
static int replace_string(char **dst, const char *v)
{
    char *copy = strdup(v);
    if (!copy)
        return -ENOMEM;
    free(*dst);
    *dst = copy;
    return 0;
}

/* ---- setting values ---------------------------------------------------------------------- */

/* set_list reads the comma-separated list v (blanks around each item trimmed; an empty v is an
 * empty list) into a new NULL-terminated array of strings, each item checked by check (NULL or
 * why not). 0, -EINVAL (reject's reason set) or -ENOMEM. */
static int set_list(loader *ld, const char *v, const char *(*check)(const char *item), char ***out)
{
    size_t n = 0;
    if (*v) {
        n = 1;
        for (const char *p = v; *p; p++)
            n += *p == ',';
    }
    char **list = calloc(n + 1, sizeof *list);
    if (!list)
        return -ENOMEM;
    const char *p = v;
    for (size_t i = 0; i < n; i++) {
        size_t len = strcspn(p, ",");
        const char *s = p, *why = NULL;
        p += len + 1;
        while (len > 0 && (*s == ' ' || *s == '\t'))
            s++, len--;
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (len == 0)
            why = "empty entry in the list";
        else if (!(list[i] = strndup(s, len))) {
            strv_free(list);
            return -ENOMEM;
        } else if (check) {
            why = check(list[i]);
        }
        if (why) {
            strv_free(list);
            return reject(ld, "%s", why);
        }
    }
    *out = list;
    return 0;
}

#define ALLOW_FORM "each entry must be an http(s) URL scheme://host[:port][/path]"

/* allow_parse turns one allow entry into its parts: libcurl's, the path without a trailing '/'.
 * "host:" with no port is refused: it used to mean any port, now it would mean the default. */
static int allow_parse(loader *ld, const char *entry, fl_allow *a)
{
    url_parts u;
    const char *why = NULL;
    const char *authority = strstr(entry, "://");
    size_t alen = authority ? strcspn(authority + 3, "/?#") : 0;
    if (authority && alen > 0 && authority[3 + alen - 1] == ':')
        return reject(ld, ALLOW_FORM " (\"%s\" names no port: there is no any-port form)", entry);
    int rc = url_parse(entry, &u, &why);
    if (rc == -EINVAL)
        return reject(ld, ALLOW_FORM " (\"%s\": %s)", entry, why);
    if (rc < 0)
        return rc;
    if (u.has_extra) {
        url_parts_free(&u);
        return reject(ld, ALLOW_FORM " (\"%s\" has a ?query or #fragment)", entry);
    }
    size_t plen = strlen(u.path);
    while (plen > 0 && u.path[plen - 1] == '/')
        plen--;
    a->scheme = strdup(u.scheme);
    a->host = strdup(u.host);
    a->port = strdup(u.port);
    a->path = strndup(u.path, plen);
    url_parts_free(&u);
    return a->scheme && a->host && a->port && a->path ? 0 : -ENOMEM;
}

/* set_allow replaces the callback allow list with the comma-separated entries in v. */
static int set_allow(loader *ld, const char *v)
{
    fl_config *c = ld->c;
    char **entries = NULL;
    int rc = set_list(ld, v, NULL, &entries);
    if (rc < 0)
        return rc;
    size_t n = 0;
    while (entries[n])
        n++;
    fl_allow *list = calloc(n ? n : 1, sizeof *list);
    rc = list ? 0 : -ENOMEM;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = allow_parse(ld, entries[i], &list[i]);
    strv_free(entries);
    if (rc < 0) {
        allow_free(list, n);
        return rc;
    }
    allow_free(c->callback_allow, c->n_callback_allow);
    c->callback_allow = list;
    c->n_callback_allow = n;
    return 0;
}

/* set_url stores the URL v as libcurl normalises it; what names the key in the reason. */
static int set_url(loader *ld, char **dst, const char *v, const char *what)
{
    url_parts u;
    const char *why = NULL;
    int rc = url_parse(v, &u, &why);
    if (rc == -EINVAL)
        return reject(ld, "expected %s (%s)", what, why);
    if (rc == 0)
        rc = replace_string(dst, u.url);
    url_parts_free(&u);
    return rc;
}

/* ---- the environment and credentials of exec children -------------------------------------- */

/* env_name_check says why name (len bytes) cannot be a variable the config sets or passes. */
static const char *env_name_check(const char *name, size_t len)
{
    if (len == 0 || isdigit((unsigned char)name[0]))
        return "bad variable name: expected A-Z a-z 0-9 _, not starting with a digit";
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '_')
            return "bad variable name: expected A-Z a-z 0-9 _, not starting with a digit";
    if (len >= 6 && memcmp(name, "FLING_", 6) == 0)
        return "FLING_* variables are the job's own and cannot be set or passed";
    return NULL;
}

static const char *env_assign_check(const char *item)
{
    const char *eq = strchr(item, '=');
    return eq ? env_name_check(item, (size_t)(eq - item)) : "expected NAME=value";
}

static const char *env_pass_check(const char *item) { return env_name_check(item, strlen(item)); }

static int set_env_list(loader *ld, char ***dst, const char *v, const char *(*check)(const char *))
{
    char **list = NULL;
    int rc = set_list(ld, v, check, &list);
    if (rc < 0)
        return rc;
    strv_free(*dst);
    *dst = list;
    return 0;
}

/* set_user resolves the user now (the child cannot read /etc/passwd between fork and exec). */
static int set_user(loader *ld, fl_type *t, const char *v)
{
    errno = 0;
    const struct passwd *pw = *v ? getpwnam(v) : NULL;
    if (!pw && errno == ENOMEM)
        return -ENOMEM;
    if (!pw)
        return reject(ld, "unknown user");
    int rc = replace_string(&t->user_home, pw->pw_dir);
    if (rc == 0)
        rc = replace_string(&t->user, v);
    if (rc < 0)
        return rc;
    t->uid = pw->pw_uid;
    if (!t->group)
        t->gid = pw->pw_gid;
    return 0;
}

static int set_group(loader *ld, fl_type *t, const char *v)
{
    errno = 0;
    const struct group *gr = *v ? getgrnam(v) : NULL;
    if (!gr && errno == ENOMEM)
        return -ENOMEM;
    if (!gr)
        return reject(ld, "unknown group");
    int rc = replace_string(&t->group, v);
    if (rc == 0)
        t->gid = gr->gr_gid;
    return rc;
}

static int set_handler(loader *ld, fl_type *t, const char *v)
{
    for (size_t i = 0; i < sizeof handler_names / sizeof handler_names[0]; i++) {
        if (strcmp(v, handler_names[i]) == 0) {
            t->handler = (fl_handler)i;
            ld->has_handler = 1;
            return 0;
        }
    }
    return reject(ld, "expected exec, http, noop or sleep");
}

static int set_command(loader *ld, fl_type *t, const char *v)
{
    char **argv;
    const char *why;
    int rc = fl_config_split(v, &argv, &why);
    if (rc == -EINVAL)
        return reject(ld, "%s", why);
    if (rc < 0)
        return rc;
    free(t->argv);
    t->argv = argv;
    ld->command_line = ld->line;
    return 0;
}

static int set_hook(loader *ld, char **dst, const char *v)
{
    if (strncmp(v, "exec:", 5) != 0)
        return set_url(ld, dst, v, "an http:// or https:// URL or exec:COMMAND");
    splitter check = {0};
    const char *why = split_words(&check, v + 5);
    if (why)
        return reject(ld, "exec: %s", why);
    return replace_string(dst, v);
}

/* set_number parses the numeric kinds into their field. */
static int set_number(loader *ld, const key_spec *k, void *field, const char *v)
{
    double n;
    switch (k->kind) {
    case V_INT:
    case V_LONG:
        if (parse_integer(v, k->lo, k->hi, &n) < 0)
            return reject(ld, "expected an integer %.0f..%.0f", k->lo, k->hi);
        if (k->kind == V_INT)
            *(int *)field = (int)n;
        else
            *(long *)field = (long)n;
        return 0;
    case V_BYTES:
        if (parse_bytes(v, k->lo, k->hi, &n) < 0)
            return reject(ld, "expected bytes %.0f..%.0f (suffix k or m for x1024)", k->lo, k->hi);
        *(size_t *)field = (size_t)n;
        return 0;
    default:
        if (parse_seconds(v, &n) < 0 || (k->kind == V_SECONDS && n <= 0))
            return reject(ld, "expected seconds %s 0", k->kind == V_SECONDS ? ">" : ">=");
        if (n > k->hi)
            return reject(ld, "expected seconds at most %.0f", k->hi);
        *(double *)field = n;
        return 0;
    }
}

/* set_value parses v as key k into the config or into the current type. */
static int set_value(loader *ld, const key_spec *k, const char *v)
{
    fl_config *c = ld->c;
    fl_type *t = k->section == SEC_TYPE ? &c->types[c->n_types - 1] : NULL;
    char *field = (t ? (char *)t : (char *)c) + k->off;
    char **str = (char **)(void *)field;
    switch (k->kind) {
    case V_INT:
    case V_LONG:
    case V_BYTES:
    case V_SECONDS:
    case V_SECONDS0:
        return set_number(ld, k, field, v);
    case V_TEXT:
        return replace_string(str, v);
    case V_PATH:
        return *v ? replace_string(str, v) : reject(ld, "expected a path");
    case V_UNIX:
        if (*v == '\0' || strlen(v) >= SUN_PATH_SIZE)
            return reject(ld, "expected a socket path of 1..%zu bytes", SUN_PATH_SIZE - 1);
        return replace_string(str, v);
    case V_SECRET:
        return is_visible(v) ? replace_string(str, v)
                             : reject(ld, "expected visible ASCII characters, no blanks");
    case V_REDIS_URL:
    {
        fl_redis_url u;
        char why[200];
        if (fl_redis_url_parse(v, &u, why, sizeof why) < 0)
            return reject(ld, "%s", why);
        return replace_string(str, v);
    }
    case V_LISTEN: {
        char *host;
        int rc = parse_listen(v, &host, &c->listen_port);
        if (rc == -EINVAL)
            return reject(ld, LISTEN_EXPECTED);
        if (rc == 0) {
            free(c->listen_host);
            c->listen_host = host;
        }
        return rc;
    }
    case V_DURABILITY:
        if (strcmp(v, "full") != 0 && strcmp(v, "normal") != 0)
            return reject(ld, "expected full or normal");
        c->durability_full = strcmp(v, "full") == 0;
        return 0;
    case V_CRON: {
        char why[160];
        if (fl_cron_parse(v, &t->cron, why, sizeof why) < 0)
            return reject(ld, "%s", why);
        return replace_string(str, v);
    }
    case V_ZONE: {
        char why[160];
        fl_tz *z;
        int rc = fl_tz_load(&z, v, why, sizeof why);
        if (rc == -EINVAL)
            return reject(ld, "%s", why);
        if (rc < 0)
            return rc;
        fl_tz_free(t->tz);
        t->tz = z;
        return replace_string(str, v);
    }
    case V_DURATION: {
        int64_t secs;
        if (fl_proto_parse_duration(v, strlen(v), &secs) < 0)
            return reject(ld, "expected a duration: seconds, or a number with s, m, h or d (at most 36500d)");
        *(long *)(void *)field = (long)secs;
        return 0;
    }
    case V_BOOL:
        if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
            return reject(ld, "expected true or false");
        *(int *)(void *)field = strcmp(v, "true") == 0;
        return 0;
    case V_LOG_FORMAT:
        if (strcmp(v, "text") != 0 && strcmp(v, "json") != 0)
            return reject(ld, "expected text or json");
        c->log_json = strcmp(v, "json") == 0;
        return 0;
    case V_LOG_LEVEL:
        for (size_t i = 0; i < sizeof log_levels / sizeof log_levels[0]; i++)
            if (strcmp(v, log_levels[i].name) == 0) {
                c->log_level = log_levels[i].level;
                return 0;
            }
        return reject(ld, "expected error, warning, info or debug");
    case V_BACKEND:
        if (fl_store_backend_known(v))
            return replace_string(str, v);
        if (strcmp(v, "postgres") == 0)
            return reject(ld, "this flingd was built without PostgreSQL (libpq was not found at build time)");
        return reject(ld, "expected a store backend: %s", fl_store_backend_names());
    case V_STORE_URL:
        return *v ? replace_string(str, v) : reject(ld, "expected a connection string or URI");
    case V_NODE:
        return is_visible(v) && strlen(v) <= NODE_MAX ? replace_string(str, v)
                                                      : reject(ld, "expected 1..%d visible ASCII characters", NODE_MAX);
    case V_ALLOW:
        return set_allow(ld, v);
    case V_HANDLER:
        return set_handler(ld, t, v);
    case V_COMMAND:
        return set_command(ld, t, v);
    case V_URL:
        ld->url_line = ld->line;
        return set_url(ld, str, v, "an http:// or https:// URL");
    case V_HOOK:
        return set_hook(ld, str, v);
    case V_ENV:
        return set_env_list(ld, (char ***)(void *)field, v, env_assign_check);
    case V_ENV_PASS:
        return set_env_list(ld, (char ***)(void *)field, v, env_pass_check);
    case V_USER:
        return set_user(ld, t, v);
    case V_GROUP:
        break;
    }
    return set_group(ld, t, v);
}

/* on_key is inih's handler: one key = value of the line the reader just handed over. */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
    loader *ld = user;
    (void)section;  /* inih cuts section names at 49 bytes; the reader kept the whole name */
    if (ld->kind == SEC_NONE) {
        fail(ld, ld->line, -EINVAL, "%s: key before any [section]", name);
        return 0;
    }
    const key_spec *k = NULL;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && !k; i++)
        if (keys[i].section == ld->kind && strcmp(keys[i].name, name) == 0)
            k = &keys[i];
    if (!k) {
        fail(ld, ld->line, -EINVAL, "[%s] %s: unknown key", ld->section, name);
        return 0;
    }
    int rc = set_value(ld, k, value);
    /* A Redis URL may carry a password: like a secret, it is never quoted back. */
    if (rc == -EINVAL && (k->kind == V_SECRET || k->kind == V_REDIS_URL))
        fail(ld, ld->line, rc, "[%s] %s: %s", ld->section, name, ld->why);
    else if (rc == -EINVAL)
        fail(ld, ld->line, rc, "[%s] %s: %s, got \"%.*s%s\"", ld->section, name, ld->why,
             ECHO_MAX, value, strlen(value) > ECHO_MAX ? "..." : "");
    else if (rc < 0)
        fail(ld, ld->line, rc, "[%s] %s: %s", ld->section, name, strerror(-rc));
    return rc == 0;
}

/* ---- sections ---------------------------------------------------------------------------- */

/* schedule_zone gives a periodic type its zone: schedule_tz's, else flingd's own. */
static void schedule_zone(loader *ld, fl_type *t)
{
    char name[256], why[200];
    int rc = 0;
    if (!t->tz && (rc = fl_tz_local(&t->tz, name, sizeof name, why, sizeof why)) < 0)
        fail(ld, ld->section_line, rc, "[%s] schedule: flingd's time zone %s: %s", ld->section, name,
             rc == -EINVAL ? why : strerror(-rc));
    t->cron.tz = t->tz;
}

/* close_type checks what only the whole [type.*] section can tell. */
static void close_type(loader *ld)
{
    fl_type *t = &ld->c->types[ld->c->n_types - 1];
    const char *s = ld->section;
    if (!ld->has_handler)
        fail(ld, ld->section_line, -EINVAL, "[%s] handler: missing (exec, http, noop or sleep)", s);
    else if (t->handler == FL_HANDLER_EXEC && !t->argv)
        fail(ld, ld->section_line, -EINVAL, "[%s] command: missing, handler = exec needs it", s);
    else if (t->handler != FL_HANDLER_EXEC && t->argv)
        fail(ld, ld->command_line, -EINVAL, "[%s] command: only for handler = exec", s);
    else if (t->handler == FL_HANDLER_HTTP && !t->url)
        fail(ld, ld->section_line, -EINVAL, "[%s] url: missing, handler = http needs it", s);
    else if (t->handler != FL_HANDLER_HTTP && t->url)
        fail(ld, ld->url_line, -EINVAL, "[%s] url: only for handler = http", s);
    else if (t->backoff_base > t->backoff_max)
        fail(ld, ld->section_line, -EINVAL, "[%s] backoff: %g is more than backoff_max %g", s,
             t->backoff_base, t->backoff_max);
    else if (t->schedule)
        schedule_zone(ld, t);
}

/* open_type starts [type.NAME]: the name must be valid and new. */
static int open_type(loader *ld, const char *name, size_t len)
{
    fl_config *c = ld->c;
    if (!fl_proto_valid_type(name, len))
        return fail(ld, ld->line, -EINVAL,
                    "[type.%.*s] bad type name: expected 1..%d of A-Z a-z 0-9 _ . -",
                    (int)(len > ECHO_MAX ? ECHO_MAX : len), name, FL_TYPE_NAME_MAX);
    if (fl_config_find_type(c, name, len))
        return fail(ld, ld->line, -EINVAL, "[type.%.*s] duplicate section", (int)len, name);
    if (!types_append(c, name, len, FL_HANDLER_NOOP))
        return fail(ld, ld->line, -ENOMEM, "%s", strerror(ENOMEM));
    ld->kind = SEC_TYPE;
    ld->has_handler = 0;
    ld->command_line = 0;
    ld->url_line = 0;
    return 0;
}

/* open_section ends the current section and starts the one named name (len bytes). */
static int open_section(loader *ld, const char *name, size_t len)
{
    if (ld->kind == SEC_TYPE)
        close_type(ld);
    if (ld->rc)
        return ld->rc;
    ld->kind = SEC_NONE;
    ld->section_line = ld->line;
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        if (strlen(sections[i].name) == len && memcmp(sections[i].name, name, len) == 0)
            ld->kind = sections[i].kind;
    if (ld->kind == SEC_NONE && len >= 5 && memcmp(name, "type.", 5) == 0 &&
        open_type(ld, name + 5, len - 5) < 0)
        return ld->rc;
    if (ld->kind == SEC_NONE)
        return fail(ld, ld->line, -EINVAL,
                    "unknown section [%.*s] (expected server, store, workers, redis, callbacks "
                    "or type.NAME)", (int)(len > ECHO_MAX ? ECHO_MAX : len), name);
    memcpy(ld->section, name, len);   /* fits: a known name or "type." + a valid type name */
    ld->section[len] = '\0';
    return 0;
}

/* header_name finds a "[name]" header in line the way inih does (leading blanks and a UTF-8
 * BOM on line 1 skipped, the first ']' not after an inline " ;" comment) and refuses text after
 * the ']' other than a comment. Returns 1 and sets name/len for a header, 0 for any other
 * line (inih judges those), -1 for a header with trailing text. */
static int header_name(const char *line, int lineno, const char **name, size_t *len)
{
    const char *p = line;
    int was_space = 0;
    if (lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (isspace((unsigned char)*p))
        p++;
    if (*p != '[')
        return 0;
    const char *q = ++p;
    for (; *q && *q != ']'; q++) {
        if (was_space && *q == ';')
            return 0;
        was_space = isspace((unsigned char)*q);
    }
    if (*q != ']')
        return 0;
    *name = p;
    *len = (size_t)(q - p);
    for (q++; isspace((unsigned char)*q); q++)
        ;
    return *q == '\0' || *q == ';' || *q == '#' ? 1 : -1;
}

/* ---- the reader inih pulls lines from ---------------------------------------------------- */

/* read_line hands inih the next line (fgets-like: at most num - 1 bytes plus a NUL) and keeps
 * the count. Returning NULL ends the parse, at the end of the file or at our first error. */
static char *read_line(char *str, int num, void *stream)
{
    loader *ld = stream;
    if (ld->rc)
        return NULL;
    errno = 0;
    ssize_t n = getline(&ld->buf, &ld->cap, ld->f);
    if (n < 0) {
        int e = errno ? errno : EIO;
        if (e == ENOMEM || ferror(ld->f))
            fail(ld, ld->line, -e, "%s", strerror(e));
        else if (ld->kind == SEC_TYPE)
            close_type(ld);
        return NULL;
    }
    ld->line++;
    if (memchr(ld->buf, '\0', (size_t)n)) {
        fail(ld, ld->line, -EINVAL, "NUL byte in the line");
        return NULL;
    }
    if (n >= num) {
        fail(ld, ld->line, -EINVAL, "line longer than %d bytes", num - 2);
        return NULL;
    }
    const char *name;
    size_t len;
    int header = header_name(ld->buf, ld->line, &name, &len);
    if (header < 0)
        fail(ld, ld->line, -EINVAL, "text after [%.*s]", (int)(len > ECHO_MAX ? ECHO_MAX : len),
             name);
    else if (header > 0)
        open_section(ld, name, len);
    if (ld->rc)
        return NULL;
    memcpy(str, ld->buf, (size_t)n + 1);
    return str;
}

/* check_store checks the [store] keys that depend on each other, once the file is read: the
 * url against the backend that will use it, and a node name where none can be made. */
static int check_store(loader *ld)
{
    fl_config *c = ld->c;
    int pg = strcmp(c->store_backend, "postgres") == 0;
    char why[240];

    if (pg && !c->store_url)
        return fail(ld, 0, -EINVAL, "[store] backend = postgres needs url (a libpq connection string or URI)");
    if (c->store_url && fl_store_url_check(c->store_backend, c->store_url, why, sizeof why) < 0)
        return fail(ld, 0, -EINVAL, "[store] url: %s", why);
    /* The default node name is hostname:port; with port 0 every node on a host would share it. */
    if (pg && !c->store_node && c->listen_port == 0)
        return fail(ld, 0, -EINVAL, "[store] node: must be set when [server] listen has port 0");
    return 0;
}

/* resolve_paths makes c's relative paths absolute against the folder of the file ld reads. */
static int resolve_paths(loader *ld)
{
    fl_config *c = ld->c;
    char **paths[] = { &c->db_path, &c->unix_path, &c->log_path };
    char *dir = realpath(ld->path, NULL);
    if (!dir)
        return fail(ld, 0, -errno, "%s", strerror(errno));
    *strrchr(dir, '/') = '\0';   /* realpath names a file: there is a '/' before its name */
    for (size_t i = 0; i < sizeof paths / sizeof paths[0] && !ld->rc; i++) {
        char *abs, *p = *paths[i];
        if (!p || p[0] == '/')
            continue;
        if (asprintf(&abs, "%s/%s", dir, p) < 0) {
            fail(ld, 0, -ENOMEM, "%s", strerror(ENOMEM));
        } else {
            free(p);
            *paths[i] = abs;
        }
    }
    if (!ld->rc && c->unix_path && strlen(c->unix_path) >= SUN_PATH_SIZE)
        fail(ld, 0, -EINVAL, "[server] unix: \"%.*s...\" is longer than %zu bytes once made "
             "relative to the folder of this file", ECHO_MAX, c->unix_path, SUN_PATH_SIZE - 1);
    free(dir);
    return ld->rc;
}

/* inih_setup pins down the inih behaviour we rely on. Debian builds inih with these as run-time
 * globals (INI_RUNTIME_OPTIONS); flingd is their only user and loads its config once at start. */
static void inih_setup(void)
{
    static char start_comments[] = ";#";
    static char inline_comments[] = ";";
    ini_allow_multiline = false;        /* an indented key is a key, not a continuation */
    ini_allow_bom = true;
    ini_start_comment_prefixes = start_comments;
    ini_allow_inline_comments = true;   /* "listen = 127.0.0.1:7878 ; default" */
    ini_inline_comment_prefixes = inline_comments;
    ini_use_stack = true;
    ini_max_line = LINE_MAX_BYTES;
    ini_stop_on_first_error = true;     /* the first bad line is the one we report */
    ini_allow_no_value = false;
}

/* ---- public API -------------------------------------------------------------------------- */

int fl_config_init(fl_config *c)
{
    memset(c, 0, sizeof *c);
    c->listen_port = DEFAULT_PORT;
    c->max_payload = DEFAULT_MAX_PAYLOAD;
    c->max_header = DEFAULT_MAX_HEADER;
    c->backlog = DEFAULT_BACKLOG;
    c->max_connections = DEFAULT_MAX_CONNECTIONS;
    c->read_timeout = DEFAULT_READ_TIMEOUT;
    c->idle_timeout = DEFAULT_IDLE_TIMEOUT;
    c->max_pipeline = DEFAULT_MAX_PIPELINE;
    c->max_output = DEFAULT_MAX_OUTPUT;
    c->max_stream_buffer = DEFAULT_MAX_STREAM_BUFFER;
    c->log_level = LOG_INFO;
    c->durability_full = 1;
    c->store_retention = DEFAULT_STORE_RETENTION;
    c->store_connections = DEFAULT_STORE_CONNECTIONS;
    c->store_statement_timeout = DEFAULT_STORE_STATEMENT_TIMEOUT;
    c->store_writers = DEFAULT_STORE_WRITERS;
    c->workers = DEFAULT_WORKERS;
    c->shutdown_grace = DEFAULT_SHUTDOWN_GRACE;
    c->redis_retention = DEFAULT_RETENTION;
    c->callback_attempts = 10;
    c->callback_timeout = 10;
    c->callback_connect_timeout = 5;
    c->callback_backoff = 1;
    c->callback_backoff_max = 300;
    c->callback_concurrency = 32;
    c->listen_host = strdup(DEFAULT_HOST);
    c->db_path = strdup(DEFAULT_DB_PATH);
    c->store_backend = strdup("sqlite");
    c->redis_prefix = strdup(DEFAULT_REDIS_PREFIX);
    if (!c->listen_host || !c->db_path || !c->store_backend || !c->redis_prefix ||
        !types_append(c, "noop", 4, FL_HANDLER_NOOP) ||
        !types_append(c, "sleep", 5, FL_HANDLER_SLEEP)) {
        fl_config_free(c);
        return -ENOMEM;
    }
    return 0;
}

int fl_config_load(fl_config *c, const char *path, char *err, size_t errlen)
{
    loader ld = {.c = c, .path = path, .err = err, .errlen = errlen};
    ld.f = fopen(path, "re");
    if (!ld.f) {
        int e = errno;
        put_err(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    types_free(c);
    inih_setup();
    int rc = ini_parse_stream(read_line, &ld, on_key, &ld);
    if (rc > 0 && !ld.rc) {
        /* inih's own complaint: stopped at once, so buf still holds that line */
        size_t len = strcspn(ld.buf, "\r\n");
        fail(&ld, rc, -EINVAL, "expected [section] or key = value, got \"%.*s%s\"",
             (int)(len > ECHO_MAX ? ECHO_MAX : len), ld.buf, len > ECHO_MAX ? "..." : "");
    } else if (rc < 0 && !ld.rc) {
        fail(&ld, 0, -ENOMEM, "%s", strerror(ENOMEM));
    }
    if (!ld.rc)
        resolve_paths(&ld);
    if (!ld.rc)
        check_store(&ld);
    free(ld.buf);
    fclose(ld.f);
    return ld.rc;
}

int fl_config_set_listen(fl_config *c, const char *hostport, char *err, size_t errlen)
{
    char *host;
    int rc = parse_listen(hostport, &host, &c->listen_port);
    if (rc == -EINVAL)
        put_err(err, errlen, "--listen: " LISTEN_EXPECTED ", got \"%.*s\"", ECHO_MAX, hostport);
    else if (rc < 0)
        put_err(err, errlen, "--listen: %s", strerror(-rc));
    if (rc < 0)
        return rc;
    free(c->listen_host);
    c->listen_host = host;
    return 0;
}

const fl_type *fl_config_find_type(const fl_config *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->n_types; i++) {
        const char *n = c->types[i].name;
        if (n && strlen(n) == len && memcmp(n, name, len) == 0)
            return &c->types[i];
    }
    return NULL;
}

int fl_config_callback_allowed(const fl_config *c, const char *url, size_t len)
{
    if (c->n_callback_allow == 0)
        return 0;
    char *copy = strndup(url, len);
    url_parts u;
    const char *why;
    int ok = copy && memchr(url, '\0', len) == NULL && url_parse(copy, &u, &why) == 0;
    free(copy);
    if (!ok)
        return 0;
    ok = allowed_by(c, &u);
    url_parts_free(&u);
    return ok;
}

int fl_config_callback_url(const fl_config *c, const char *url, int allow, char **out, const char **why)
{
    url_parts u;
    int rc = url_parse(url, &u, why);
    if (rc < 0)
        return rc;
    if (allow && !allowed_by(c, &u)) {
        *why = "not allowed by [callbacks] allow";
        rc = -EINVAL;
    } else if (!(*out = strdup(u.url))) {
        rc = -ENOMEM;
    }
    url_parts_free(&u);
    return rc;
}

void fl_config_free(fl_config *c)
{
    free(c->listen_host);
    free(c->unix_path);
    free(c->log_path);
    free(c->token);
    free(c->store_backend);
    free(c->db_path);
    free(c->store_url);
    free(c->store_node);
    free(c->redis_url);
    free(c->redis_prefix);
    allow_free(c->callback_allow, c->n_callback_allow);
    free(c->callback_secret);
    types_free(c);
    memset(c, 0, sizeof *c);
}

/* ---- printing the effective configuration ------------------------------------------------ */

#define SECRET_SHOWN "(set)"

/* Seconds as a plain decimal, the only form the loader reads (no exponent). */
static void put_seconds(FILE *f, const char *key, double v)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.6f", v);
    char *end = buf + strlen(buf) - 1;
    while (*end == '0')
        *end-- = '\0';
    if (*end == '.')
        *end = '\0';
    fprintf(f, "%s = %s\n", key, buf);
}

static void put_text(FILE *f, const char *key, const char *v)
{
    if (v)
        fprintf(f, "%s = %s\n", key, v);
}

static void put_secret(FILE *f, const char *key, const char *v)
{
    if (v)
        fprintf(f, "%s = " SECRET_SHOWN "\n", key);
}

/* A list key: items joined by ", " (no item holds a comma: the loader splits on them). */
static void put_list(FILE *f, const char *key, char *const *items)
{
    if (!items)
        return;
    fprintf(f, "%s = ", key);
    for (size_t i = 0; items[i]; i++)
        fprintf(f, "%s%s", i ? ", " : "", items[i]);
    fputc('\n', f);
}

/* One word of a command, quoted so that fl_config_split gives it back unchanged. */
static void put_word(FILE *f, const char *w)
{
    if (*w && strspn(w, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                        "_./=:,@%+-") == strlen(w)) {
        fputs(w, f);
        return;
    }
    fputc('\'', f);
    for (; *w; w++) {
        if (*w == '\'')
            fputs("'\\''", f);   /* end the quote, an escaped quote, quote again */
        else
            fputc(*w, f);
    }
    fputc('\'', f);
}

/* A Redis URL with a password is a secret: "(set)", and where it points as a comment. */
static void put_redis_url(FILE *f, const char *url)
{
    fl_redis_url u;
    char err[200], where[400];
    if (fl_redis_url_parse(url, &u, err, sizeof err) == 0 && u.password[0]) {
        fl_redis_url_where(&u, where, sizeof where);
        fprintf(f, "url = " SECRET_SHOWN "          ; %s, with a password\n", where);
    } else {
        put_text(f, "url", url);
    }
}

static void put_allow(FILE *f, const fl_config *c)
{
    fputs("allow = ", f);
    for (size_t i = 0; i < c->n_callback_allow; i++) {
        const fl_allow *a = &c->callback_allow[i];
        fprintf(f, "%s%s://%s:%s%s", i ? ", " : "", a->scheme, a->host, a->port, a->path);
    }
    fputc('\n', f);
}

static void put_command(FILE *f, char *const *argv)
{
    if (!argv)
        return;
    fputs("command = ", f);
    for (size_t i = 0; argv[i]; i++) {
        if (i)
            fputc(' ', f);
        put_word(f, argv[i]);
    }
    fputc('\n', f);
}

/* put_key writes key k of the config c or of the type t (for SEC_TYPE), as the loader reads it. */
static void put_key(FILE *f, const key_spec *k, const fl_config *c, const fl_type *t)
{
    const char *field = (t ? (const char *)t : (const char *)c) + k->off;
    switch (k->kind) {
    case V_INT: fprintf(f, "%s = %d\n", k->name, *(const int *)(const void *)field); break;
    case V_LONG: fprintf(f, "%s = %ld\n", k->name, *(const long *)(const void *)field); break;
    case V_BYTES: fprintf(f, "%s = %zu\n", k->name, *(const size_t *)(const void *)field); break;
    case V_SECONDS:
    case V_SECONDS0: put_seconds(f, k->name, *(const double *)(const void *)field); break;
    case V_TEXT:
    case V_PATH:
    case V_UNIX:
    case V_URL:
    case V_HOOK:
    case V_BACKEND:
    case V_NODE: put_text(f, k->name, *(char *const *)(const void *)field); break;
    case V_STORE_URL: put_secret(f, k->name, c->store_url); break;   /* it may hold a password */
    case V_SECRET: put_secret(f, k->name, *(char *const *)(const void *)field); break;
    case V_REDIS_URL: put_redis_url(f, c->redis_url); break;
    case V_LISTEN: {
        int v6 = strchr(c->listen_host, ':') != NULL;
        fprintf(f, "listen = %s%s%s:%d\n", v6 ? "[" : "", c->listen_host, v6 ? "]" : "",
                c->listen_port);
        break;
    }
    case V_DURABILITY: fprintf(f, "durability = %s\n", c->durability_full ? "full" : "normal"); break;
    case V_LOG_FORMAT: fprintf(f, "log_format = %s\n", c->log_json ? "json" : "text"); break;
    case V_LOG_LEVEL:
        for (size_t i = 0; i < sizeof log_levels / sizeof log_levels[0]; i++)
            if (log_levels[i].level == c->log_level)
                fprintf(f, "log_level = %s\n", log_levels[i].name);
        break;
    case V_ALLOW: put_allow(f, c); break;
    case V_HANDLER: fprintf(f, "handler = %s\n", fl_config_handler_name(t->handler)); break;
    case V_COMMAND: put_command(f, t->argv); break;
    case V_ENV:
    case V_ENV_PASS: put_list(f, k->name, *(char **const *)(const void *)field); break;
    case V_USER: put_text(f, "user", t->user); break;
    case V_GROUP: put_text(f, "group", t->group); break;
    case V_CRON: put_text(f, k->name, t->schedule); break;
    case V_ZONE: put_text(f, k->name, t->schedule_tz); break;
    case V_DURATION: fprintf(f, "%s = %ld\n", k->name, *(const long *)(const void *)field); break;
    case V_BOOL: fprintf(f, "%s = %s\n", k->name, *(const int *)(const void *)field ? "true" : "false"); break;
    }
}

/* put_section writes every key of one kind of section, in the order of the key table. */
static void put_section(FILE *f, section_kind kind, const fl_config *c, const fl_type *t)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (keys[i].section == kind)
            put_key(f, &keys[i], c, t);
}

void fl_config_print(const fl_config *c, FILE *f)
{
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        /* without a url, the other [redis] keys do nothing */
        if (sections[i].kind == SEC_REDIS && !c->redis_url)
            continue;
        fprintf(f, "%s[%s]\n", i ? "\n" : "", sections[i].name);
        put_section(f, sections[i].kind, c, NULL);
    }
    for (size_t i = 0; i < c->n_types; i++) {
        fprintf(f, "\n[type.%s]\n", c->types[i].name);
        put_section(f, SEC_TYPE, c, &c->types[i]);
    }
}

/* ---- reloading (SIGHUP) ------------------------------------------------------------------ */

/* The keys SIGHUP applies to a running flingd (docs/config.md marks them "reloadable"). The
 * others are bound into something made once: sockets, the store, the mirror, the event ring,
 * a type's handler and the scheduler's table of types. */
static const struct { section_kind section; const char *name; } live_keys[] = {
    {SEC_SERVER, "token"}, {SEC_SERVER, "max_payload"}, {SEC_SERVER, "max_header"},
    {SEC_SERVER, "max_connections"}, {SEC_SERVER, "read_timeout"}, {SEC_SERVER, "idle_timeout"},
    {SEC_SERVER, "max_pipeline"}, {SEC_SERVER, "max_output"}, {SEC_SERVER, "log"},
    {SEC_SERVER, "log_format"}, {SEC_SERVER, "log_level"}, {SEC_SERVER, "open_health"},
    {SEC_SERVER, "open_metrics"},
    {SEC_STORE, "retention"}, {SEC_WORKERS, "count"}, {SEC_WORKERS, "shutdown_grace"},
    {SEC_CALLBACKS, "allow"}, {SEC_CALLBACKS, "secret"}, {SEC_CALLBACKS, "max_attempts"},
    {SEC_CALLBACKS, "timeout"}, {SEC_CALLBACKS, "connect_timeout"}, {SEC_CALLBACKS, "backoff"},
    {SEC_CALLBACKS, "backoff_max"}, {SEC_CALLBACKS, "concurrency"},
    {SEC_TYPE, "command"}, {SEC_TYPE, "url"}, {SEC_TYPE, "timeout"}, {SEC_TYPE, "max_attempts"},
    {SEC_TYPE, "concurrency"}, {SEC_TYPE, "backoff"}, {SEC_TYPE, "backoff_max"},
    {SEC_TYPE, "on_complete"}, {SEC_TYPE, "on_abort"}, {SEC_TYPE, "env"}, {SEC_TYPE, "env_pass"},
    {SEC_TYPE, "user"}, {SEC_TYPE, "group"}, {SEC_TYPE, "callback_payload"}, {SEC_TYPE, "schedule"},
    {SEC_TYPE, "schedule_tz"}, {SEC_TYPE, "periodic_payload"},
};

int fl_config_key_reloadable(const char *section, const char *name)
{
    for (size_t i = 0; i < sizeof live_keys / sizeof live_keys[0]; i++) {
        const char *sec = live_keys[i].section == SEC_TYPE ? "type" : NULL;
        for (size_t j = 0; !sec && j < sizeof sections / sizeof sections[0]; j++)
            if (sections[j].kind == live_keys[i].section)
                sec = sections[j].name;
        if (strcmp(sec, section) == 0 && strcmp(live_keys[i].name, name) == 0)
            return 1;
    }
    return 0;
}

static int key_live(const key_spec *k)
{
    for (size_t i = 0; i < sizeof live_keys / sizeof live_keys[0]; i++)
        if (live_keys[i].section == k->section && strcmp(live_keys[i].name, k->name) == 0)
            return 1;
    return 0;
}

/* key_text is key k as --print-config writes it, secrets in clear (malloc'd; NULL if out of memory). */
static char *key_text(const key_spec *k, const fl_config *c, const fl_type *t)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    if (k->kind == V_SECRET)
        put_text(f, k->name, *(char *const *)(const void *)((t ? (const char *)t : (const char *)c) + k->off));
    else if (k->kind == V_REDIS_URL)
        put_text(f, k->name, c->redis_url);
    else
        put_key(f, k, c, t);
    fclose(f);
    return buf;
}

static int key_differs(const key_spec *k, const fl_config *a, const fl_type *ta, const fl_config *b,
                       const fl_type *tb)
{
    char *x = key_text(k, a, ta), *y = key_text(k, b, tb);
    int differs = !x || !y || strcmp(x, y) != 0;   /* out of memory: applied, harmless */
    free(x);
    free(y);
    return differs;
}

static void swap_mem(void *a, void *b, size_t n)
{
    unsigned char tmp[sizeof(fl_cron)];
    while (n) {
        size_t m = n < sizeof tmp ? n : sizeof tmp;
        memcpy(tmp, a, m);
        memcpy(a, b, m);
        memcpy(b, tmp, m);
        a = (unsigned char *)a + m, b = (unsigned char *)b + m, n -= m;
    }
}

#define SWAP(a, b, field) swap_mem(&(a)->field, &(b)->field, sizeof (a)->field)

/* swap_key exchanges the value of key k between a and b (or types ta and tb); what belongs
 * together goes together: a user and a group with their ids, a schedule with its zone. */
static void swap_key(const key_spec *k, fl_config *a, fl_type *ta, fl_config *b, fl_type *tb)
{
    static const size_t sizes[] = {
        [V_INT] = sizeof(int), [V_LONG] = sizeof(long), [V_BYTES] = sizeof(size_t), [V_SECONDS] = sizeof(double),
        [V_SECONDS0] = sizeof(double), [V_TEXT] = sizeof(char *), [V_PATH] = sizeof(char *),
        [V_SECRET] = sizeof(char *), [V_LOG_FORMAT] = sizeof(int), [V_LOG_LEVEL] = sizeof(int),
        [V_COMMAND] = sizeof(char **),
        [V_URL] = sizeof(char *), [V_HOOK] = sizeof(char *), [V_ENV] = sizeof(char **),
        [V_ENV_PASS] = sizeof(char **), [V_BOOL] = sizeof(int), [V_DURATION] = sizeof(long),
    };
    switch (k->kind) {
    case V_ALLOW:
        SWAP(a, b, callback_allow);
        SWAP(a, b, n_callback_allow);
        return;
    case V_USER:
    case V_GROUP:
        SWAP(ta, tb, user);
        SWAP(ta, tb, user_home);
        SWAP(ta, tb, uid);
        SWAP(ta, tb, group);
        SWAP(ta, tb, gid);
        return;
    case V_CRON:
    case V_ZONE:
        SWAP(ta, tb, schedule);
        SWAP(ta, tb, schedule_tz);
        SWAP(ta, tb, tz);
        SWAP(ta, tb, cron);
        return;
    default:
        swap_mem((ta ? (char *)ta : (char *)a) + k->off, (tb ? (char *)tb : (char *)b) + k->off, sizes[k->kind]);
    }
}

/* note appends "[section] key" to a list of keys. */
static void note(char *list, size_t size, const char *section, const char *key)
{
    size_t len = strlen(list);
    if (len < size)
        snprintf(list + len, size - len, "%s[%s]%s%s", len ? ", " : "", section, key ? " " : "", key ? key : "");
}

typedef struct reload_out { char *changed, *restart; size_t changed_len, restart_len; int mask; } reload_out;

/* reload_keys applies the keys of one section (of c or of type t) that differ. */
static void reload_keys(section_kind kind, const char *section, fl_config *live, fl_type *lt, fl_config *next,
                        fl_type *nt, reload_out *out)
{
    int paired = 0;   /* user/group and schedule/schedule_tz are swapped once, as a pair */
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const key_spec *k = &keys[i];
        if (k->section != kind || !key_differs(k, live, lt, next, nt))
            continue;
        if (!key_live(k)) {
            note(out->restart, out->restart_len, section, k->name);
            continue;
        }
        note(out->changed, out->changed_len, section, k->name);
        int pair = k->kind == V_USER || k->kind == V_GROUP ? 1 : k->kind == V_CRON || k->kind == V_ZONE ? 2 : 0;
        if (!pair || !(paired & pair))
            swap_key(k, live, lt, next, nt);
        paired |= pair;
        if (k->kind == V_CRON || k->kind == V_ZONE || strcmp(k->name, "periodic_payload") == 0)
            out->mask |= FL_RELOAD_SCHEDULE;
        else if (k->kind == V_HOOK)
            out->mask |= FL_RELOAD_HOOKS;
        else if (k->section == SEC_STORE)
            out->mask |= FL_RELOAD_RETENTION;
        else if (strcmp(k->name, "log") == 0 || k->kind == V_LOG_FORMAT || k->kind == V_LOG_LEVEL)
            out->mask |= FL_RELOAD_LOG;
        else if ((k->section == SEC_WORKERS && strcmp(k->name, "count") == 0) ||
                 (k->section == SEC_TYPE && strcmp(k->name, "concurrency") == 0))
            out->mask |= FL_RELOAD_SLOTS;
    }
}

/* A type whose handler changed is a new type to the scheduler: it waits for a restart whole. */
static void reload_type(fl_config *live, fl_type *lt, fl_config *next, reload_out *out)
{
    char section[sizeof "type." + FL_TYPE_NAME_MAX];
    snprintf(section, sizeof section, "type.%s", lt->name);
    fl_type *nt = (fl_type *)fl_config_find_type(next, lt->name, strlen(lt->name));
    if (!nt)
        note(out->restart, out->restart_len, section, "(removed)");
    else if (nt->handler != lt->handler)
        note(out->restart, out->restart_len, section, "handler");
    else
        reload_keys(SEC_TYPE, section, live, lt, next, nt, out);
}

int fl_config_reload(fl_config *live, fl_config *next, char *changed, size_t changed_len, char *restart,
                     size_t restart_len)
{
    reload_out out = { changed, restart, changed_len, restart_len, 0 };
    changed[0] = restart[0] = '\0';
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        reload_keys(sections[i].kind, sections[i].name, live, NULL, next, NULL, &out);
    for (size_t i = 0; i < live->n_types; i++)
        reload_type(live, &live->types[i], next, &out);
    for (size_t i = 0; i < next->n_types; i++) {
        char section[sizeof "type." + FL_TYPE_NAME_MAX];
        snprintf(section, sizeof section, "type.%s", next->types[i].name);
        if (!fl_config_find_type(live, next->types[i].name, strlen(next->types[i].name)))
            note(restart, restart_len, section, "(new)");
    }
    return out.mask;
}
