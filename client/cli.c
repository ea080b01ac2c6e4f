/* cli.c — the `fling` command (README.md "The `fling` CLI"): submit, status, list and
 * cancel over libfling; status --redis and watch over the Redis mirror (mirrorview.h).
 * On failure it prints exactly one line on stderr and exits 1 when the daemon refused (or the
 * job is not in the mirror, or output could not be written), 2 for a usage error, 3 when the
 * daemon or Redis could not be reached, refused the login, or its reply was not understood.
 * submit --wait adds 4 when the job ended failed or cancelled and 5 when it had not ended
 * when the wait ran out.
 * All options of all commands are parsed in one getopt_long pass, so global ones go anywhere;
 * each option names the commands that accept it. A new command is one row in `commands`,
 * its options rows in `specs`, and one function. */
#include "fling.h"
#include "mirrorview.h"
#include "proto.h"
#include "resp.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_DAEMON 1        /* an error reply, or stdout failed */
#define EXIT_USAGE 2
#define EXIT_TRANSPORT 3     /* connect, send, receive or reply-format failure */
#define EXIT_JOB_FAILED 4    /* submit --wait: the job ended failed or cancelled */
#define EXIT_JOB_RUNNING 5   /* submit --wait: the job had not ended when the wait ran out */

#define DEFAULT_URL "http://127.0.0.1:7878"    /* flingd's default listen address */
#define STDIN_MAX (64 * 1024 * 1024)           /* far above any sane max_payload */
#define ERROR_TEXT_MAX 200                     /* of a non-JSON error body, on one line */
#define LIST_PATH_MAX 2048                     /* /v1/jobs and four bounded parameters */
#define WAIT_DEFAULT 60                        /* submit --wait without a value, in seconds */
#define REDIS_TIMEOUT_MS 3000                  /* connect, and each command's reply */
#define PREFIX_MAX 256                         /* a key prefix is a namespace, not data */
#define REDIS_ERR_MAX 400                      /* one line from mirrorview */
#define MESSAGE_SHOWN 60                       /* of a malformed event, enough to recognise it */
#define STREAM_BUF (1024 * 1024)               /* one event of the stream: a job's JSON with its output */
#define RETRY_LIMIT_DEFAULT 100                /* retry --state without --limit */
#define RETRY_PAGE 100                         /* jobs read per list page by retry --state */

enum { CMD_SUBMIT = 1, CMD_STATUS = 2, CMD_LIST = 4, CMD_CANCEL = 8, CMD_WATCH = 16,
       CMD_PAUSE = 32, CMD_RESUME = 64, CMD_TYPES = 128, CMD_RETRY = 256, CMD_PRUNE = 512,
       CMD_ANY = 0xffff };

enum opt_id {
    OPT_HELP = 'h',
    OPT_URL = 256, OPT_TOKEN, OPT_VERSION, OPT_CACERT, OPT_INSECURE,
    OPT_TIMEOUT, OPT_ATTEMPTS, OPT_DELAY, OPT_PRIORITY, OPT_KEY, OPT_CALLBACK, OPT_DETACH,
    OPT_WAIT, OPT_ON_DISCONNECT,
    OPT_STATE, OPT_TYPE, OPT_LIMIT, OPT_AFTER, OPT_JSON,
    OPT_REDIS, OPT_PREFIX, OPT_COUNT, OPT_PAYLOAD, OPT_OLDER_THAN,
};

typedef struct opt_spec {
    const char *name;
    int has_arg;
    int id;
    unsigned cmds;           /* the commands that accept it */
} opt_spec;

static const opt_spec specs[] = {
    { "help", no_argument, OPT_HELP, CMD_ANY },
    { "version", no_argument, OPT_VERSION, CMD_ANY },
    { "url", required_argument, OPT_URL, CMD_ANY },
    { "token", required_argument, OPT_TOKEN, CMD_ANY },
    { "cacert", required_argument, OPT_CACERT, CMD_ANY },
    { "insecure", no_argument, OPT_INSECURE, CMD_ANY },
    { "timeout", required_argument, OPT_TIMEOUT, CMD_SUBMIT },
    { "attempts", required_argument, OPT_ATTEMPTS, CMD_SUBMIT },
    { "delay", required_argument, OPT_DELAY, CMD_SUBMIT },
    { "priority", required_argument, OPT_PRIORITY, CMD_SUBMIT },
    { "key", required_argument, OPT_KEY, CMD_SUBMIT },
    { "callback", required_argument, OPT_CALLBACK, CMD_SUBMIT },
    { "detach", no_argument, OPT_DETACH, CMD_SUBMIT },
    { "wait", optional_argument, OPT_WAIT, CMD_SUBMIT },
    { "on-disconnect", required_argument, OPT_ON_DISCONNECT, CMD_SUBMIT },
    { "state", required_argument, OPT_STATE, CMD_LIST | CMD_RETRY },
    { "type", required_argument, OPT_TYPE, CMD_LIST | CMD_WATCH | CMD_RETRY },
    { "limit", required_argument, OPT_LIMIT, CMD_LIST | CMD_RETRY },
    { "after", required_argument, OPT_AFTER, CMD_LIST },
    { "json", no_argument, OPT_JSON, CMD_LIST | CMD_WATCH | CMD_TYPES },
    { "redis", required_argument, OPT_REDIS, CMD_STATUS | CMD_WATCH },
    { "prefix", required_argument, OPT_PREFIX, CMD_STATUS | CMD_WATCH },
    { "count", required_argument, OPT_COUNT, CMD_WATCH },
    { "payload", no_argument, OPT_PAYLOAD, CMD_STATUS },
    { "older-than", required_argument, OPT_OLDER_THAN, CMD_PRUNE },
};
#define N_SPECS (sizeof specs / sizeof specs[0])

typedef struct opt_val {
    int id;
    const char *arg;
} opt_val;

typedef struct command command;

/* One run of the CLI: the parsed command line and the client. */
typedef struct cli {
    const command *cmd;
    const char *url;
    const char *token;
    const char *cacert;      /* --cacert or env FLING_CACERT, or NULL */
    int insecure;            /* --insecure */
    char **args;             /* positional arguments after the command name */
    int nargs;
    opt_val *opts;           /* options in command-line order */
    int nopts;
    fling_client *client;    /* NULL for the commands that read the Redis mirror */
} cli;

struct command {
    const char *name;
    unsigned bit;
    int min_args, max_args;
    int (*run)(cli *);
    const char *help;        /* its part of the usage text */
};

/* The usage text: the head, each command's part (also its own --help), the options, the exit
 * status. */
static const char usage_head[] =
    "usage: fling [--url URL] [--token TOKEN] [--cacert FILE] COMMAND [ARGS]\n\n";

static const char help_submit[] =
    "  submit TYPE [PAYLOAD|-] [--timeout S] [--attempts N] [--delay S] [--priority N]\n"
    "                          [--key K] [--callback URL] [--detach]\n"
    "                          [--wait [N] [--on-disconnect cancel|continue]]\n"
    "                   submit a job and print its id (payload - or absent: stdin);\n"
    "                   --detach sends it without waiting and prints nothing;\n"
    "                   --wait N or --wait=N (1-3600, default 60) waits up to N s for the\n"
    "                   job to end and prints it as JSON; --on-disconnect says what the\n"
    "                   daemon does with the job if this client goes away meanwhile\n";
static const char help_status[] =
    "  status ID [--redis URL [--prefix P]] [--payload]\n"
    "                   print the job as JSON; --redis reads the Redis mirror instead;\n"
    "                   --payload prints the job's payload as stored, byte for byte\n";
static const char help_list[] =
    "  list [--state S] [--type T] [--limit N] [--after CURSOR] [--json]\n"
    "                   print jobs, newest first, under a header line: id type state status\n"
    "                   attempts created_at run_at (when a scheduled job is due); --json\n"
    "                   prints the daemon's reply\n";
static const char help_cancel[] =
    "  cancel ID        cancel a waiting job, or stop a running one, and say which\n";
static const char help_watch[] =
    "  watch [--type T] [--redis URL] [--prefix P] [--json] [--count N]\n"
    "                   follow the daemon's events (GET /v1/events), or with --redis (or\n"
    "                   env FLING_REDIS) the mirror's, one line each: TIME ID TYPE EVENT\n"
    "                   [state=S] status=N attempts=A/M [error=\"...\"], TIME being the\n"
    "                   event's updated_at or else the time it was received (UTC);\n"
    "                   --json prints each event's JSON; --count exits after N events\n";
static const char help_pause[] =
    "  pause TYPE       stop starting jobs of TYPE (they are still accepted and stored;\n"
    "                   those running go on); kept across restarts\n";
static const char help_resume[] =
    "  resume TYPE      start jobs of a paused TYPE again\n";
static const char help_retry[] =
    "  retry ID | retry --state failed|cancelled [--type T] [--limit N]\n"
    "                   queue a failed or cancelled job again (payload and options kept, a\n"
    "                   new attempt budget); --state retries up to N (default 100) of them,\n"
    "                   newest first, one line each\n";
static const char help_prune[] =
    "  prune --older-than D\n"
    "                   delete the jobs that finished more than D ago (seconds, or 30m, 12h,\n"
    "                   7d), with their payloads and callbacks; prints how many\n";
static const char help_types[] =
    "  types [--json]   print every configured type under a header line: name handler\n"
    "                   concurrency paused and its jobs by state\n";

static const char usage_tail[] =
    "\n"
    "  --url URL        http://host[:port], https://host[:port] or unix:/path (env FLING_URL;\n"
    "                   default " DEFAULT_URL ")\n"
    "  --token TOKEN    bearer token (env FLING_TOKEN)\n"
    "  --cacert FILE    https: trust the CA certificates (PEM) in FILE instead of the\n"
    "                   system's (env FLING_CACERT)\n"
    "  --insecure       https: accept any certificate; anyone on the path can then read and\n"
    "                   change the traffic, token included (a self-signed test only)\n"
    "  --redis URL      redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or unix:/PATH[?db=N&password=P]\n"
    "                   (watch: env FLING_REDIS; default " FL_MVIEW_DEFAULT_URL ")\n"
    "  --prefix P       the daemon's [redis] prefix (default " FL_MVIEW_DEFAULT_PREFIX ")\n"
    "  -h, --help       this text (after a command: that command's);  --version  the version\n"
    "\n"
    "exit status: 0 ok, 1 the daemon refused or the job is not in the mirror, 2 usage error,\n"
    "3 daemon or Redis unreachable (or refused the login, or TLS failed); submit --wait: 4 the\n"
    "job failed or was cancelled, 5 the job had not ended when the wait ran out\n";

/* ---- one-line errors ------------------------------------------------------------------ */

/* Prints "fling: [cmd: ]message" and returns code. */
__attribute__((format(printf, 3, 4)))
static int fail(const cli *c, int code, const char *fmt, ...)
{
    va_list ap;
    fputs("fling: ", stderr);
    if (c && c->cmd)
        fprintf(stderr, "%s: ", c->cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

/* Copies at most max bytes of s into out, control bytes as spaces: text fit for one line. */
static void one_line(const char *s, size_t len, char *out, size_t max)
{
    size_t n = len < max ? len : max;
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
    out[n] = '\0';
}

/* Reports an error reply: "404 unknown_type: no job type ..." from the JSON error body, or
 * the status and the start of the body when it is not one. */
static int fail_http(const cli *c, const fling_response *res)
{
    char code[ERROR_TEXT_MAX + 1], msg[ERROR_TEXT_MAX + 1];
    json_t *j = res->body ? json_loadb(res->body, res->body_len, 0, NULL) : NULL;
    const char *e = json_string_value(json_object_get(j, "error"));
    const char *m = json_string_value(json_object_get(j, "message"));
    int rc;
    if (e) {
        one_line(e, strlen(e), code, ERROR_TEXT_MAX);
        one_line(m ? m : "", m ? strlen(m) : 0, msg, ERROR_TEXT_MAX);
        rc = m ? fail(c, EXIT_DAEMON, "%d %s: %s", res->status, code, msg)
               : fail(c, EXIT_DAEMON, "%d %s", res->status, code);
    } else {
        one_line(res->body ? res->body : "", res->body_len, msg, ERROR_TEXT_MAX);
        rc = msg[0] ? fail(c, EXIT_DAEMON, "%d %s", res->status, msg)
                    : fail(c, EXIT_DAEMON, "%d", res->status);
    }
    json_decref(j);
    return rc;
}

/* Reports a libfling failure with the exit code its kind calls for. Call it right after the
 * failed call: a FLING_ECONNECT's reason is in errno. */
static int fail_call(const cli *c, int rc, const fling_response *res)
{
    int connect_errno = errno;
    switch (rc) {
    case FLING_EHTTP: return fail_http(c, res);
    case FLING_EINVAL: return fail(c, EXIT_USAGE, "invalid argument");
    case FLING_ERESOLVE: return fail(c, EXIT_TRANSPORT, "cannot resolve the host of %s", c->url);
    case FLING_ECONNECT:
        return fail(c, EXIT_TRANSPORT, "could not connect to %s: %s", c->url, strerror(connect_errno));
    case FLING_ESEND: return fail(c, EXIT_TRANSPORT, "could not send the request to %s", c->url);
    case FLING_ERECV: return fail(c, EXIT_TRANSPORT, "no reply from %s", c->url);
    case FLING_ETLS: return fail(c, EXIT_TRANSPORT, "TLS with %s failed: %s", c->url, fling_tls_error());
    default: return fail(c, EXIT_TRANSPORT, "%s (%s)", fling_strerror(rc), c->url);
    }
}

/* ---- output --------------------------------------------------------------------------- */

/* Parses a reply body as JSON, or reports it; NULL on failure (*code set). */
static json_t *reply_json(const cli *c, const fling_response *res, int *code)
{
    json_error_t err;
    json_t *j = res->body ? json_loadb(res->body, res->body_len, 0, &err) : NULL;
    if (!j)
        *code = fail(c, EXIT_TRANSPORT, "reply from %s is not JSON", c->url);
    return j;
}

/* Prints j indented, as status prints a job. */
static int print_json(const cli *c, const json_t *j)
{
    if (json_dumpf(j, stdout, JSON_INDENT(2)) < 0 || fputc('\n', stdout) == EOF)
        return fail(c, EXIT_DAEMON, "cannot write output");
    return 0;
}

static int print_pretty(const cli *c, const fling_response *res)
{
    int code = 0;
    json_t *j = reply_json(c, res, &code);
    if (!j)
        return code;
    code = print_json(c, j);
    json_decref(j);
    return code;
}

/* Prints a scalar JSON value as plain text ("-" for null or missing). */
static void print_scalar(const json_t *v, const char *sep)
{
    if (json_is_string(v))
        fputs(json_string_value(v), stdout);
    else if (json_is_integer(v))
        printf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        printf("%g", json_real_value(v));
    else if (json_is_boolean(v))
        fputs(json_is_true(v) ? "true" : "false", stdout);
    else
        fputs("-", stdout);
    fputs(sep, stdout);
}

static int print_job_lines(const cli *c, const fling_response *res)
{
    static const char *const fields[] = { "id", "type", "state", "status", "attempts", "created_at",
                                          "run_at" };
    const size_t nf = sizeof fields / sizeof fields[0];
    int code = 0;
    json_t *j = reply_json(c, res, &code);
    if (!j)
        return code;
    json_t *jobs = json_object_get(j, "jobs");
    if (!json_is_array(jobs)) {
        json_decref(j);
        return fail(c, EXIT_TRANSPORT, "reply from %s has no \"jobs\" array", c->url);
    }
    size_t i;
    json_t *job;
    fputs("ID\tTYPE\tSTATE\tSTATUS\tATTEMPTS\tCREATED_AT\tRUN_AT\n", stdout);
    json_array_foreach(jobs, i, job) {
        /* run_at says something only while the job waits for it */
        const char *state = json_string_value(json_object_get(job, "state"));
        int scheduled = state && strcmp(state, "scheduled") == 0;
        for (size_t f = 0; f < nf; f++)
            print_scalar(f + 1 < nf || scheduled ? json_object_get(job, fields[f]) : NULL,
                         f + 1 < nf ? "\t" : "\n");
    }
    const char *next = json_string_value(json_object_get(j, "next"));
    if (next)
        fprintf(stderr, "fling: list: more with --after %s\n", next);
    json_decref(j);
    return ferror(stdout) ? fail(c, EXIT_DAEMON, "cannot write output") : 0;
}

/* ---- commands ------------------------------------------------------------------------- */

/* The value of the last --name given, or NULL (a later option overrides an earlier one). */
static const char *opt_arg(const cli *c, int id)
{
    const char *v = NULL;
    for (int i = 0; i < c->nopts; i++)
        if (c->opts[i].id == id)
            v = c->opts[i].arg ? c->opts[i].arg : "";
    return v;
}

/* Parses a whole decimal in [lo, hi]: 0, or -1. */
static int parse_count(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Reads all of stdin into *buf (malloc'd, caller frees): 0, or an exit code after reporting. */
static int read_stdin(const cli *c, char **buf, size_t *len)
{
    size_t cap = 0;
    *buf = NULL;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            if (cap >= STDIN_MAX)
                return fail(c, EXIT_USAGE, "payload on stdin is larger than %d bytes", STDIN_MAX);
            size_t want = cap ? cap * 2 : 65536;
            char *p = realloc(*buf, want);
            if (!p)
                return fail(c, EXIT_TRANSPORT, "out of memory reading stdin");
            *buf = p;
            cap = want;
        }
        size_t n = fread(*buf + *len, 1, cap - *len, stdin);
        *len += n;
        if (n == 0) {
            if (ferror(stdin))
                return fail(c, EXIT_USAGE, "cannot read the payload from stdin: %s", strerror(errno));
            return 0;
        }
    }
}

/* Checks one submit option with the daemon's own rules (proto.h), header by header. */
static int check_opt(const cli *c, fl_proto_opts *p, const char *header, const opt_val *o,
                     const char *flag)
{
    if (fl_proto_opts_set(p, header, strlen(header), o->arg, strlen(o->arg)) != 0)
        return fail(c, EXIT_USAGE, "bad or repeated %s '%s'", flag, o->arg);
    return 0;
}

/* --wait[=N]: N seconds, or WAIT_DEFAULT without a value. */
static int wait_opt(const cli *c, const opt_val *o, int *wait)
{
    long v = WAIT_DEFAULT;
    if (o->arg && parse_count(o->arg, 1, FL_WAIT_MAX, &v) < 0)
        return fail(c, EXIT_USAGE, "bad --wait '%s' (1-%d seconds)", o->arg,
                    FL_WAIT_MAX);
    *wait = (int)v;
    return 0;
}

static int on_disconnect_opt(const cli *c, const opt_val *o, const char **out)
{
    if (strcmp(o->arg, "cancel") != 0 && strcmp(o->arg, "continue") != 0)
        return fail(c, EXIT_USAGE, "bad --on-disconnect '%s' (cancel or continue)", o->arg);
    *out = o->arg;
    return 0;
}

/* The options that only make sense together, or not at all together. */
static int check_submit_mode(const cli *c, const fling_job_opts *jo, int detach)
{
    if (jo->wait && detach)
        return fail(c, EXIT_USAGE, "--wait and --detach exclude each other");
    if (jo->on_disconnect && !jo->wait)
        return fail(c, EXIT_USAGE, "--on-disconnect needs --wait");
    return 0;
}

static int submit_opts(const cli *c, fling_job_opts *jo, int *detach)
{
    fl_proto_opts p = { 0 };
    int rc = 0;
    for (int i = 0; i < c->nopts && rc == 0; i++) {
        const opt_val *o = &c->opts[i];
        switch (o->id) {
        case OPT_TIMEOUT: rc = check_opt(c, &p, FL_HDR_TIMEOUT, o, "--timeout"); break;
        case OPT_ATTEMPTS: rc = check_opt(c, &p, FL_HDR_MAX_ATTEMPTS, o, "--attempts"); break;
        case OPT_DELAY: rc = check_opt(c, &p, FL_HDR_DELAY, o, "--delay"); break;
        case OPT_PRIORITY: rc = check_opt(c, &p, FL_HDR_PRIORITY, o, "--priority"); break;
        case OPT_CALLBACK:
            rc = check_opt(c, &p, FL_HDR_CALLBACK, o, "--callback");
            jo->callback = o->arg;
            break;
        case OPT_KEY:
            rc = check_opt(c, &p, FL_HDR_IDEM_KEY, o, "--key");
            jo->idempotency_key = o->arg;
            break;
        case OPT_DETACH: *detach = 1; break;
        case OPT_WAIT: rc = wait_opt(c, o, &jo->wait); break;
        case OPT_ON_DISCONNECT: rc = on_disconnect_opt(c, o, &jo->on_disconnect); break;
        default: break;
        }
    }
    if (rc == 0)
        rc = check_submit_mode(c, jo, *detach);
    jo->timeout = p.has_timeout ? p.timeout : 0;
    jo->max_attempts = p.has_max_attempts ? p.max_attempts : 0;
    jo->delay = p.has_delay ? p.delay : 0;
    jo->has_priority = p.has_priority;
    jo->priority = p.priority;
    return rc;
}

/* Reports a job that had not ended within the wait: its id on stdout, why on stderr. */
static int report_running(const cli *c, const fling_response *res, const json_t *j, int wait)
{
    const char *state = json_string_value(json_object_get(j, "state"));
    if (printf("%s\n", res->id) < 0)
        return fail(c, EXIT_DAEMON, "cannot write output");
    if (state)
        return fail(c, EXIT_JOB_RUNNING, "job %s still running after %d s (state %s)", res->id,
                    wait, state);
    return fail(c, EXIT_JOB_RUNNING, "job %s still running after %d s", res->id, wait);
}

/* Reports a job that ended: its JSON on stdout, and for a failure why on stderr. */
static int report_ended(const cli *c, const fling_response *res, const json_t *j)
{
    char why[ERROR_TEXT_MAX + 1] = "";
    const char *state = json_string_value(json_object_get(j, "state"));
    const char *error = json_string_value(json_object_get(j, "error"));
    const json_t *exit_code = json_object_get(j, "exit_code");
    int code = print_json(c, j);
    if (code || strcmp(state, "succeeded") == 0)
        return code;
    if (error && error[0])
        one_line(error, strlen(error), why, ERROR_TEXT_MAX);
    else if (json_is_integer(exit_code))
        snprintf(why, sizeof why, "exit code %" JSON_INTEGER_FORMAT, json_integer_value(exit_code));
    return why[0] ? fail(c, EXIT_JOB_FAILED, "job %s %s: %s", res->id, state, why)
                  : fail(c, EXIT_JOB_FAILED, "job %s %s", res->id, state);
}

/* The outcome of submit --wait: a 200 carries the job as it ended (or as it is, for a
 * duplicate of one still going), a 202 says the wait ran out. */
static int report_attached(const cli *c, const fling_response *res, int wait)
{
    fl_state st;
    int code = 0;
    if (res->status != 200) {
        /* the ack's body only adds the state to the message: without it the 202 still says all */
        json_t *ack = res->body ? json_loadb(res->body, res->body_len, 0, NULL) : NULL;
        code = report_running(c, res, ack, wait);
        json_decref(ack);
        return code;
    }
    json_t *j = reply_json(c, res, &code);
    if (!j)
        return code;
    const char *state = json_string_value(json_object_get(j, "state"));
    if (!state)
        code = fail(c, EXIT_TRANSPORT, "reply from %s has no job state", c->url);
    else if (fl_proto_state_parse(state, strlen(state), &st) == 0 && fl_proto_state_terminal(st))
        code = report_ended(c, res, j);
    else
        code = report_running(c, res, j, wait);
    json_decref(j);
    return code;
}

static int cmd_submit(cli *c)
{
    const char *type = c->args[0];
    fling_job_opts jo = { 0 };
    int detach = 0;
    if (!fl_proto_valid_type(type, strlen(type)))
        return fail(c, EXIT_USAGE, "bad job type '%s' (1-%d of A-Z a-z 0-9 _ . -)", type,
                    FL_TYPE_NAME_MAX);
    int code = submit_opts(c, &jo, &detach);
    if (code)
        return code;
    char *payload = NULL;
    size_t len = 0;
    if (c->nargs > 1 && strcmp(c->args[1], "-") != 0) {
        len = strlen(c->args[1]);
    } else if (c->nargs > 1 || !isatty(STDIN_FILENO)) {
        if ((code = read_stdin(c, &payload, &len)) != 0) {
            free(payload);
            return code;
        }
    }
    const void *data = payload ? payload : (c->nargs > 1 ? c->args[1] : "");
    fling_response res = { 0 };
    int rc = detach ? fling_fire(c->client, type, data, len, &jo)
                    : fling_submit(c->client, type, data, len, &jo, &res);
    if (rc)
        code = fail_call(c, rc, &res);   /* first: it reads errno */
    else if (jo.wait)
        code = report_attached(c, &res, jo.wait);
    else if (!detach && printf("%s\n", res.id) < 0)
        code = fail(c, EXIT_DAEMON, "cannot write output");
    free(payload);
    if (!detach)
        fling_response_clear(&res);
    return code;
}

/* Builds "/v1/jobs/ID" after checking ID: 0, or an exit code after reporting. */
static int job_path(const cli *c, char *path, size_t size)
{
    int64_t id;
    const char *arg = c->args[0];
    if (fl_proto_parse_id(arg, strlen(arg), &id) < 0)
        return fail(c, EXIT_USAGE, "bad job id '%s'", arg);
    snprintf(path, size, "%s/%lld", FL_PROTO_JOBS_PATH, (long long)id);
    return 0;
}

/* ---- the Redis mirror ------------------------------------------------------------------ */

/* The key prefix: --prefix, or the daemon's default. NULL after reporting a bad one. */
static const char *mirror_prefix(const cli *c, int *code)
{
    const char *p = opt_arg(c, OPT_PREFIX);
    if (!p)
        return FL_MVIEW_DEFAULT_PREFIX;
    if (strlen(p) > PREFIX_MAX) {
        *code = fail(c, EXIT_USAGE, "--prefix is longer than %d bytes", PREFIX_MAX);
        return NULL;
    }
    return p;
}

/* Connects to the mirror at url: the context, or NULL after reporting (*code set). */
static redisContext *mirror_connect(const cli *c, const char *url, int *code)
{
    char err[REDIS_ERR_MAX];
    redisContext *rc;
    /* a Redis that went away mid-command must be an error to report, not a SIGPIPE */
    signal(SIGPIPE, SIG_IGN);
    int rv = fl_mview_connect(url, REDIS_TIMEOUT_MS, &rc, err, sizeof err);
    if (rv < 0)
        *code = fail(c, rv == -EINVAL ? EXIT_USAGE : EXIT_TRANSPORT, "%s", err);
    return rc;
}

/* status ID --redis URL: the job's hash from the mirror, shaped as the daemon's JSON. */
static int status_from_mirror(cli *c, const char *url)
{
    int64_t id;
    int code = 0;
    char err[REDIS_ERR_MAX];
    const char *prefix = mirror_prefix(c, &code);
    if (!prefix)
        return code;
    if (fl_proto_parse_id(c->args[0], strlen(c->args[0]), &id) < 0)
        return fail(c, EXIT_USAGE, "bad job id '%s'", c->args[0]);
    redisContext *rc = mirror_connect(c, url, &code);
    if (!rc)
        return code;
    json_t *job;
    int rv = fl_mview_job(rc, prefix, id, &job, err, sizeof err);
    redisFree(rc);
    if (rv < 0)
        return fail(c, rv == -ENOENT ? EXIT_DAEMON : EXIT_TRANSPORT, "%s", err);
    code = print_json(c, job);
    json_decref(job);
    return code;
}

/* Set by SIGINT and SIGTERM: watch ends, with success, at the next wake-up. */
static volatile sig_atomic_t stop_watching;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_watching = 1;
}

/* Blocks SIGINT and SIGTERM and routes them to on_stop_signal; *wait_mask gets the mask to
 * wait under, which lets them in only while watch sleeps (so none is missed between a check
 * of the flag and the wait). */
static void catch_stop_signals(sigset_t *wait_mask)
{
    sigset_t block;
    struct sigaction sa = { .sa_handler = on_stop_signal };
    sigemptyset(&sa.sa_mask);
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, wait_mask);
    sigdelset(wait_mask, SIGINT);
    sigdelset(wait_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* watch's options: 0, or an exit code after reporting. */
static int watch_opts(const cli *c, const char **type, long *count)
{
    const char *n = opt_arg(c, OPT_COUNT);
    *type = opt_arg(c, OPT_TYPE);
    *count = 0;
    if (*type && !fl_proto_valid_type(*type, strlen(*type)))
        return fail(c, EXIT_USAGE, "bad --type '%s'", *type);
    if (n && parse_count(n, 1, LONG_MAX, count) < 0)
        return fail(c, EXIT_USAGE, "bad --count '%s' (a positive integer)", n);
    return 0;
}

/* Prints the line for one message (skipping other types, reporting malformed ones): 1 if a
 * line was printed, 0 if not, or an exit code (> 1) after reporting. */
static int print_event(const cli *c, const char *msg, size_t len, const char *type, int as_json)
{
    char *line;
    int rv = fl_mview_event_line(msg, len, type, as_json, &line);
    if (rv == -ENOMEM)
        return fail(c, EXIT_TRANSPORT, "out of memory");
    if (rv == -EBADMSG) {
        char start[MESSAGE_SHOWN + 1];
        one_line(msg, len, start, MESSAGE_SHOWN);
        fprintf(stderr, "fling: watch: skipped a message that is not a job event: %s\n", start);
        return 0;
    }
    if (rv == 1)
        return 0;
    int bad = fputs(line, stdout) == EOF || fflush(stdout) == EOF;   /* one line per write */
    free(line);
    return bad ? fail(c, EXIT_DAEMON, "cannot write output") : 1;
}

/* Follows the subscription until count lines were printed (0: no limit) or a stop signal;
 * wait_mask lets the stop signals in while it waits. */
static int follow_events(const cli *c, redisContext *rc, const sigset_t *wait_mask,
                         const char *type, long count)
{
    char err[REDIS_ERR_MAX];
    int as_json = opt_arg(c, OPT_JSON) != NULL;
    long printed = 0;
    while (!stop_watching && (count == 0 || printed < count)) {
        char *msg;
        size_t len;
        int rv = fl_mview_next_message(rc, wait_mask, &msg, &len, err, sizeof err);
        if (rv == -EINTR)
            continue;
        if (rv < 0)
            return fail(c, EXIT_TRANSPORT, "%s", rv == -ENOMEM ? "out of memory" : err);
        rv = print_event(c, msg, len, type, as_json);
        free(msg);
        if (rv > 1)
            return rv;
        printed += rv;
    }
    return 0;
}

/* ---- watch over GET /v1/events ------------------------------------------------------- */

/* The event stream as it is read: bytes not yet parsed, on one connection. */
typedef struct stream {
    fling_stream *conn;
    char *buf;
    size_t len;
} stream;

/* Reads more of the stream, with wait_mask in force while it sleeps: 1, 0 at EOF or reset,
 * -EINTR (a signal), -ENOBUFS (one event larger than STREAM_BUF). */
static int stream_fill(stream *s, const sigset_t *wait_mask)
{
    if (s->len == STREAM_BUF)
        return -ENOBUFS;
    ssize_t n = fling_stream_read(s->conn, s->buf + s->len, STREAM_BUF - s->len, wait_mask);
    if (n == FLING_EINTR)
        return -EINTR;
    if (n <= 0)
        return 0;
    s->len += (size_t)n;
    return 1;
}

static void stream_consume(stream *s, size_t n)
{
    memmove(s->buf, s->buf + n, s->len - n);
    s->len -= n;
}

/* Reads an error reply to its end with the client library's response parser (it has a
 * Content-Length, or ends with the connection) and reports it as every command does. */
static int stream_error(const cli *c, stream *s, const sigset_t *wait_mask)
{
    fl_proto_resp r;
    fl_proto_resp_init(&r);
    size_t fed = 0, used;
    int rc = 0, more = 1;
    while (rc == 0 && more > 0) {
        rc = fl_proto_resp_feed(&r, s->buf + fed, s->len - fed, &used);
        fed += used;
        if (rc == 0 && (more = stream_fill(s, wait_mask)) == 0)
            rc = fl_proto_resp_eof(&r);
    }
    int code;
    if (rc == 1) {
        fling_response res = { .status = r.status, .body = r.body, .body_len = r.body_len };
        code = fail_http(c, &res);
    } else {
        code = fail(c, EXIT_TRANSPORT, "bad reply from %s", c->url);
    }
    fl_proto_resp_clear(&r);
    return code;
}

/* Opens the stream and reads the reply's head: 0 on a 200 stream, else an exit code after
 * reporting (an error reply as every command reports one), or -1 if a stop signal came first. */
static int stream_open(const cli *c, stream *s, const char *type, const sigset_t *wait_mask)
{
    char path[sizeof FL_PROTO_EVENTS_PATH + sizeof "?type=" + FL_TYPE_NAME_MAX];
    snprintf(path, sizeof path, "%s%s%s", FL_PROTO_EVENTS_PATH, type ? "?type=" : "", type ? type : "");
    int rc = fling_stream_open(c->client, path, &s->conn);
    if (rc == FLING_EINVAL)
        return fail(c, EXIT_USAGE, "the token or --type cannot go in a request");
    if (rc < 0)
        return fail_call(c, rc, NULL);
    char *eoh;
    int rv = 1;
    while (!(eoh = memmem(s->buf, s->len, "\r\n\r\n", 4)) && (rv = stream_fill(s, wait_mask)) != 0)
        if (rv == -EINTR && stop_watching)
            return -1;
    if (!eoh)
        return fail(c, EXIT_TRANSPORT, "no reply from %s", c->url);
    int status = 0;
    if (sscanf(s->buf, "HTTP/1.%*d %d", &status) != 1)
        return fail(c, EXIT_TRANSPORT, "reply from %s is not HTTP", c->url);
    if (status != 200)
        return stream_error(c, s, wait_mask);
    stream_consume(s, (size_t)(eoh + 4 - s->buf));
    return 0;
}

/* A comment the daemon puts where the stream misses changes (docs/protocol.md, "Gaps"). */
#define GAP_COMMENT ": gap: "
#define GAP_SHOWN 400   /* the daemon's are about 150 bytes */

/* report_gap tells the user on stderr, one line, that the events printed do not hold every
 * change from here: what the daemon says is missing. */
static void report_gap(const char *why)
{
    char text[GAP_SHOWN + 1];
    one_line(why, strcspn(why, "\n"), text, GAP_SHOWN);
    fprintf(stderr, "fling: watch: gap: %s\n", text);
}

/* Prints the frames of the stream until count lines (0: no limit) or a stop signal. */
static int follow_stream(const cli *c, stream *s, const sigset_t *wait_mask, const char *type, long count)
{
    int as_json = opt_arg(c, OPT_JSON) != NULL;
    long printed = 0;
    while (!stop_watching && (count == 0 || printed < count)) {
        char *end = memmem(s->buf, s->len, "\n\n", 2);
        if (!end) {
            int rv = stream_fill(s, wait_mask);
            if (rv == -ENOBUFS)
                return fail(c, EXIT_TRANSPORT, "an event from %s exceeds %d bytes", c->url, STREAM_BUF);
            if (rv == 0)
                return fail(c, EXIT_TRANSPORT, "%s closed the event stream", c->url);
            continue;
        }
        *end = '\0';
        /* Our daemon writes one data line per event; comments (": ping") have none. */
        char *data = strncmp(s->buf, "data: ", 6) == 0 ? s->buf : strstr(s->buf, "\ndata: ");
        int rv = 0;
        if (strncmp(s->buf, GAP_COMMENT, sizeof GAP_COMMENT - 1) == 0)
            report_gap(s->buf + sizeof GAP_COMMENT - 1);
        else if (data) {
            data += data == s->buf ? 6 : 7;
            size_t len = strcspn(data, "\n");
            rv = print_event(c, data, len, type, as_json);
        }
        stream_consume(s, (size_t)(end + 2 - s->buf));
        if (rv > 1)
            return rv;
        printed += rv;
    }
    return 0;
}

/* watch without Redis: the daemon's own event stream. */
static int watch_daemon(cli *c, const char *type, long count)
{
    sigset_t wait_mask;
    catch_stop_signals(&wait_mask);
    stream s = { .conn = NULL, .buf = malloc(STREAM_BUF) };
    int code;
    if (!s.buf)
        code = fail(c, EXIT_TRANSPORT, "out of memory");
    else if ((code = stream_open(c, &s, type, &wait_mask)) == 0)
        code = follow_stream(c, &s, &wait_mask, type, count);
    if (code < 0)
        code = 0;   /* stopped by a signal before the stream began */
    fling_stream_close(s.conn);
    free(s.buf);
    return code;
}

/* watch and status read the Redis mirror with --redis; watch also with env FLING_REDIS. */
static int uses_redis(const cli *c)
{
    const char *env = getenv("FLING_REDIS");
    return opt_arg(c, OPT_REDIS) || (c->cmd->bit == CMD_WATCH && env && env[0]);
}

static int cmd_watch(cli *c)
{
    const char *type, *url = opt_arg(c, OPT_REDIS);
    char err[REDIS_ERR_MAX];
    sigset_t wait_mask;
    long count;
    int code = watch_opts(c, &type, &count);
    if (code)
        return code;
    if (!uses_redis(c))
        return watch_daemon(c, type, count);
    const char *prefix = mirror_prefix(c, &code);
    if (!prefix)
        return code;
    if (!url)
        url = getenv("FLING_REDIS");
    if (!url || !url[0])
        url = FL_MVIEW_DEFAULT_URL;
    /* from here a stop signal waits (at most a connect or command timeout) for the first
     * wait, and then ends watch with success */
    catch_stop_signals(&wait_mask);
    redisContext *rc = mirror_connect(c, url, &code);
    if (!rc)
        return code;
    if (fl_mview_subscribe(rc, prefix, err, sizeof err) < 0)
        code = fail(c, EXIT_TRANSPORT, "%s", err);
    else
        code = follow_events(c, rc, &wait_mask, type, count);
    redisFree(rc);
    return code;
}

/* ---- the daemon's job commands -------------------------------------------------------- */

/* status ID --payload: the stored bytes on stdout, unchanged. */
static int print_payload(cli *c, char *path, size_t size)
{
    size_t n = strlen(path);
    if (snprintf(path + n, size - n, "/payload") >= (int)(size - n))
        return fail(c, EXIT_USAGE, "bad job id '%s'", c->args[0]);
    fling_response res;
    int rc = fling_request(c->client, "GET", path, NULL, 0, &res), code = 0;
    if (rc)
        code = fail_call(c, rc, &res);
    else if ((res.body_len && fwrite(res.body, 1, res.body_len, stdout) != res.body_len) || fflush(stdout))
        code = fail(c, EXIT_DAEMON, "cannot write output");
    fling_response_clear(&res);
    return code;
}

static int cmd_status(cli *c)
{
    char path[sizeof FL_PROTO_JOBS_PATH + FL_ID_MAX + 16];
    const char *redis = opt_arg(c, OPT_REDIS);
    if (redis && opt_arg(c, OPT_PAYLOAD))
        return fail(c, EXIT_USAGE, "--payload reads the daemon, not --redis");
    if (redis)
        return status_from_mirror(c, redis);
    if (opt_arg(c, OPT_PREFIX))
        return fail(c, EXIT_USAGE, "--prefix needs --redis");
    int code = job_path(c, path, sizeof path);
    if (code)
        return code;
    if (opt_arg(c, OPT_PAYLOAD))
        return print_payload(c, path, sizeof path);
    fling_response res;
    int rc = fling_request(c->client, "GET", path, NULL, 0, &res);
    code = rc ? fail_call(c, rc, &res) : print_pretty(c, &res);
    fling_response_clear(&res);
    return code;
}

/* Says what a cancel did: a 200 cancelled a waiting job (its JSON says which state it left),
 * a 202 stops a running one, which then ends cancelled. */
static int report_cancel(const cli *c, const fling_response *res)
{
    const char *id = c->args[0];
    int n = res->status == 202
                ? printf("job %s is running: stopping it; it ends cancelled\n", id)
                : printf("job %s cancelled\n", id);
    return n < 0 ? fail(c, EXIT_DAEMON, "cannot write output") : 0;
}

static int cmd_cancel(cli *c)
{
    char path[sizeof FL_PROTO_JOBS_PATH + FL_ID_MAX];
    int code = job_path(c, path, sizeof path);
    if (code)
        return code;
    fling_response res;
    int rc = fling_request(c->client, "DELETE", path, NULL, 0, &res);
    code = rc ? fail_call(c, rc, &res) : report_cancel(c, &res);
    fling_response_clear(&res);
    return code;
}

/* Appends "&name=value" (or "?name=value" first) to path, value percent-encoded: 0, or -1
 * if it does not fit. */
static int add_param(char *path, size_t size, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(path);
    int k = snprintf(path + n, size - n, "%c%s=", strchr(path, '?') ? '&' : '?', name);
    if (k < 0 || (size_t)k >= size - n)
        return -1;
    n += (size_t)k;
    for (const unsigned char *v = (const unsigned char *)value; *v; v++) {
        int plain = (*v >= 'A' && *v <= 'Z') || (*v >= 'a' && *v <= 'z') ||
                    (*v >= '0' && *v <= '9') || strchr("-._~", *v);
        if (n + (plain ? 1 : 3) >= size)
            return -1;
        if (plain) {
            path[n++] = (char)*v;
        } else {
            path[n++] = '%';
            path[n++] = hex[*v >> 4];
            path[n++] = hex[*v & 15];
        }
    }
    path[n] = '\0';
    return 0;
}

/* Checks one list option and adds it to the query: 0, or an exit code after reporting. */
static int list_param(const cli *c, const opt_val *o, char *path, size_t size)
{
    fl_state st;
    const char *name = NULL;
    char *end;
    switch (o->id) {
    case OPT_STATE:
        if (fl_proto_state_parse(o->arg, strlen(o->arg), &st) < 0)
            return fail(c, EXIT_USAGE, "bad --state '%s' (queued, scheduled, running, "
                        "succeeded, failed or cancelled)", o->arg);
        name = "state";
        break;
    case OPT_TYPE:
        if (!fl_proto_valid_type(o->arg, strlen(o->arg)))
            return fail(c, EXIT_USAGE, "bad --type '%s'", o->arg);
        name = "type";
        break;
    case OPT_LIMIT: {
        errno = 0;
        long v = strtol(o->arg, &end, 10);
        if (o->arg[0] < '0' || o->arg[0] > '9' || *end || errno || v < 1)
            return fail(c, EXIT_USAGE, "bad --limit '%s' (a positive integer)", o->arg);
        name = "limit";
        break;
    }
    case OPT_AFTER:
        name = "after";
        break;
    default:
        return 0;
    }
    if (add_param(path, size, name, o->arg) < 0)
        return fail(c, EXIT_USAGE, "--%s '%s' is too long", name, o->arg);
    return 0;
}

static int cmd_list(cli *c)
{
    char path[LIST_PATH_MAX] = FL_PROTO_JOBS_PATH;
    int json = 0, code = 0;
    for (int i = 0; i < c->nopts && code == 0; i++) {
        json |= c->opts[i].id == OPT_JSON;
        code = list_param(c, &c->opts[i], path, sizeof path);
    }
    if (code)
        return code;
    fling_response res;
    int rc = fling_request(c->client, "GET", path, NULL, 0, &res);
    if (rc)
        code = fail_call(c, rc, &res);
    else
        code = json ? print_pretty(c, &res) : print_job_lines(c, &res);
    fling_response_clear(&res);
    return code;
}

/* pause and resume: POST /v1/types/{type}/pause|resume, then one line saying what it did. */
static int pause_type(cli *c, const char *action, const char *done)
{
    char path[sizeof FL_PROTO_TYPES_PATH + FL_TYPE_NAME_MAX + 16];
    const char *type = c->args[0];
    if (!fl_proto_valid_type(type, strlen(type)))
        return fail(c, EXIT_USAGE, "bad job type '%s'", type);
    snprintf(path, sizeof path, "%s/%s/%s", FL_PROTO_TYPES_PATH, type, action);
    fling_response res;
    int rc = fling_request(c->client, "POST", path, NULL, 0, &res);
    int code = rc ? fail_call(c, rc, &res) : 0;
    if (!code && printf("type %s %s\n", type, done) < 0)
        code = fail(c, EXIT_DAEMON, "cannot write output");
    fling_response_clear(&res);
    return code;
}

static int cmd_pause(cli *c) { return pause_type(c, "pause", "paused"); }

static int cmd_resume(cli *c) { return pause_type(c, "resume", "resumed"); }

static int print_type_lines(const cli *c, const fling_response *res)
{
    static const char *const states[] = { "queued", "scheduled", "running", "succeeded", "failed", "cancelled" };
    int code = 0;
    json_t *j = reply_json(c, res, &code);
    if (!j)
        return code;
    json_t *types = json_object_get(j, "types"), *t;
    if (!json_is_array(types)) {
        json_decref(j);
        return fail(c, EXIT_TRANSPORT, "reply from %s has no \"types\" array", c->url);
    }
    size_t i;
    fputs("NAME\tHANDLER\tCONCURRENCY\tPAUSED\tQUEUED\tSCHEDULED\tRUNNING\tSUCCEEDED\tFAILED\tCANCELLED\n", stdout);
    json_array_foreach(types, i, t) {
        print_scalar(json_object_get(t, "name"), "\t");
        print_scalar(json_object_get(t, "handler"), "\t");
        print_scalar(json_object_get(t, "concurrency"), "\t");
        print_scalar(json_object_get(t, "paused"), "\t");
        for (size_t k = 0; k < sizeof states / sizeof *states; k++)
            print_scalar(json_object_get(json_object_get(t, "counts"), states[k]),
                         k + 1 < sizeof states / sizeof *states ? "\t" : "\n");
    }
    json_decref(j);
    return ferror(stdout) ? fail(c, EXIT_DAEMON, "cannot write output") : 0;
}

static int cmd_types(cli *c)
{
    fling_response res;
    int rc = fling_request(c->client, "GET", FL_PROTO_TYPES_PATH, NULL, 0, &res);
    int code;
    if (rc)
        code = fail_call(c, rc, &res);
    else
        code = opt_arg(c, OPT_JSON) ? print_pretty(c, &res) : print_type_lines(c, &res);
    fling_response_clear(&res);
    return code;
}

/* POST /v1/jobs/{id}/retry for id (decimal text): 0, 1 if the job was not retryable (409,
 * only when quiet_409: a bulk retry that raced another), or an exit code after reporting. */
static int retry_one(const cli *c, const char *id, int quiet_409)
{
    char path[sizeof FL_PROTO_JOBS_PATH + FL_ID_MAX + 8];
    snprintf(path, sizeof path, "%s/%s/retry", FL_PROTO_JOBS_PATH, id);
    fling_response res;
    int rc = fling_request(c->client, "POST", path, NULL, 0, &res), code = 0;
    if (rc == FLING_EHTTP && res.status == 409 && quiet_409)
        code = 1;
    else if (rc)
        code = fail_call(c, rc, &res);
    else if (printf("job %s retried\n", id) < 0)
        code = fail(c, EXIT_DAEMON, "cannot write output");
    fling_response_clear(&res);
    return code;
}

/* Retries the jobs of one list page (reply res) while *left > 0: 0, or an exit code. */
static int retry_page(const cli *c, const fling_response *res, long *left, long *done, char *after, size_t aftersz)
{
    int code = 0;
    json_t *j = reply_json(c, res, &code), *job;
    if (!j)
        return code;
    json_t *jobs = json_object_get(j, "jobs");
    const char *next = json_string_value(json_object_get(j, "next"));
    size_t i;
    json_array_foreach(jobs, i, job) {
        const char *id = json_string_value(json_object_get(job, "id"));
        if (!id || *left <= 0 || code)
            break;
        int r = retry_one(c, id, 1);
        if (r > 1)
            code = r;
        else if (r == 0) {
            (*done)++;
            (*left)--;
        }
    }
    snprintf(after, aftersz, "%s", next && *left > 0 ? next : "");
    json_decref(j);
    return code;
}

/* retry --state S [--type T] [--limit N]: pages through GET /v1/jobs and retries each job. */
static int retry_many(const cli *c)
{
    char base[LIST_PATH_MAX] = FL_PROTO_JOBS_PATH, path[LIST_PATH_MAX + 64], after[FL_ID_MAX + 1] = "";
    long left = RETRY_LIMIT_DEFAULT, done = 0;
    int code = 0;
    const char *state = opt_arg(c, OPT_STATE), *limit = opt_arg(c, OPT_LIMIT);
    if (!state || (strcmp(state, "failed") != 0 && strcmp(state, "cancelled") != 0))
        return fail(c, EXIT_USAGE, "give a job ID, or --state failed or --state cancelled");
    if (limit && parse_count(limit, 1, 1000000, &left) < 0)
        return fail(c, EXIT_USAGE, "bad --limit '%s' (1-1000000)", limit);
    for (int i = 0; i < c->nopts && code == 0; i++)
        if (c->opts[i].id == OPT_STATE || c->opts[i].id == OPT_TYPE)
            code = list_param(c, &c->opts[i], base, sizeof base);
    if (code)
        return code;
    do {
        snprintf(path, sizeof path, "%s%climit=%d%s%s", base, strchr(base, '?') ? '&' : '?', RETRY_PAGE,
                 after[0] ? "&after=" : "", after);
        fling_response res;
        int rc = fling_request(c->client, "GET", path, NULL, 0, &res);
        code = rc ? fail_call(c, rc, &res) : retry_page(c, &res, &left, &done, after, sizeof after);
        fling_response_clear(&res);
    } while (!code && after[0]);
    if (!code && fprintf(stderr, "fling: retry: %ld job(s) retried\n", done) < 0)
        code = EXIT_DAEMON;
    return code;
}

static int cmd_retry(cli *c)
{
    if (c->nargs == 0)
        return retry_many(c);
    if (opt_arg(c, OPT_STATE) || opt_arg(c, OPT_TYPE) || opt_arg(c, OPT_LIMIT))
        return fail(c, EXIT_USAGE, "give either a job ID or --state, not both");
    int64_t id;
    if (fl_proto_parse_id(c->args[0], strlen(c->args[0]), &id) < 0)
        return fail(c, EXIT_USAGE, "bad job id '%s'", c->args[0]);
    return retry_one(c, c->args[0], 0);
}

static int cmd_prune(cli *c)
{
    char path[sizeof FL_PROTO_PRUNE_PATH + 64];
    const char *d = opt_arg(c, OPT_OLDER_THAN);
    int64_t secs;
    if (!d)
        return fail(c, EXIT_USAGE, "--older-than D is required");
    if (fl_proto_parse_duration(d, strlen(d), &secs) < 0)
        return fail(c, EXIT_USAGE, "bad --older-than '%s' (seconds, or a number with s, m, h or d)", d);
    snprintf(path, sizeof path, "%s?older_than=%lld", FL_PROTO_PRUNE_PATH, (long long)secs);
    fling_response res;
    int rc = fling_request(c->client, "POST", path, NULL, 0, &res), code = 0;
    json_t *j = rc ? NULL : reply_json(c, &res, &code);
    if (rc)
        code = fail_call(c, rc, &res);
    else if (j && printf("pruned %" JSON_INTEGER_FORMAT " job(s)\n", json_integer_value(json_object_get(j, "pruned"))) < 0)
        code = fail(c, EXIT_DAEMON, "cannot write output");
    json_decref(j);
    fling_response_clear(&res);
    return code;
}

static const command commands[] = {
    { "submit", CMD_SUBMIT, 1, 2, cmd_submit, help_submit },
    { "status", CMD_STATUS, 1, 1, cmd_status, help_status },
    { "list", CMD_LIST, 0, 0, cmd_list, help_list },
    { "cancel", CMD_CANCEL, 1, 1, cmd_cancel, help_cancel },
    { "watch", CMD_WATCH, 0, 0, cmd_watch, help_watch },
    { "pause", CMD_PAUSE, 1, 1, cmd_pause, help_pause },
    { "resume", CMD_RESUME, 1, 1, cmd_resume, help_resume },
    { "types", CMD_TYPES, 0, 0, cmd_types, help_types },
    { "retry", CMD_RETRY, 0, 1, cmd_retry, help_retry },
    { "prune", CMD_PRUNE, 0, 0, cmd_prune, help_prune },
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

/* The command named name, or NULL. */
static const command *command_named(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(name, commands[i].name) == 0)
            return &commands[i];
    return NULL;
}

/* Prints the usage of cmd, or of every command if cmd is NULL: 0, or an exit code. */
static int print_usage(const command *cmd)
{
    int bad = fputs(usage_head, stdout) == EOF;
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!cmd || cmd == &commands[i])
            bad |= fputs(commands[i].help, stdout) == EOF;
    bad |= fputs(usage_tail, stdout) == EOF;
    return bad ? EXIT_DAEMON : 0;
}

/* ---- command line --------------------------------------------------------------------- */

static const opt_spec *spec_of(int id)
{
    for (size_t i = 0; i < N_SPECS; i++)
        if (specs[i].id == id)
            return &specs[i];
    return NULL;
}

/* The value of an option: its optarg, or for --wait without '=' a number in the next word
 * (getopt takes an optional value only after '='; "--wait 10" must not send 10 as the payload). */
static const char *wait_value(int id, int argc, char **argv)
{
    const char *next = optind < argc ? argv[optind] : NULL;
    if (id != OPT_WAIT || optarg || !next || !next[0] || strspn(next, "0123456789") != strlen(next))
        return optarg;
    optind++;
    return next;
}

/* Reads argv into c: options in order, positional words (command first). 0, or an exit code
 * after reporting. *words receives the positional words; the caller frees it and c->opts. */
static int parse_args(cli *c, int argc, char **argv, char ***words, int *nwords)
{
    struct option longopts[N_SPECS + 1];
    for (size_t i = 0; i < N_SPECS; i++)
        longopts[i] = (struct option){ specs[i].name, specs[i].has_arg, NULL, specs[i].id };
    longopts[N_SPECS] = (struct option){ 0 };

    c->opts = calloc((size_t)argc, sizeof *c->opts);
    *words = calloc((size_t)argc, sizeof **words);
    if (!c->opts || !*words)
        return fail(NULL, EXIT_TRANSPORT, "out of memory");
    /* "-": words come back in order as option 1, whatever POSIXLY_CORRECT says;
     * ":": a missing argument is reported as ':' so the message can say so. */
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "-:h", longopts, NULL)) != -1) {
        if (ch == 1)
            (*words)[(*nwords)++] = optarg;
        else if (ch == ':')
            return fail(NULL, EXIT_USAGE, "option '%s' needs a value", argv[optind - 1]);
        else if (ch == '?')
            return fail(NULL, EXIT_USAGE, "unknown option '%s' (see fling --help)",
                        argv[optind - 1]);
        else
            c->opts[c->nopts++] = (opt_val){ ch, wait_value(ch, argc, argv) };
    }
    while (optind < argc)
        (*words)[(*nwords)++] = argv[optind++];
    return 0;
}

/* Finds the command and checks its arguments and options: 0, or an exit code. */
static int resolve(cli *c, char **words, int nwords)
{
    if (nwords == 0)
        return fail(NULL, EXIT_USAGE, "no command (see fling --help)");
    c->cmd = command_named(words[0]);
    if (!c->cmd)
        return fail(NULL, EXIT_USAGE, "unknown command '%s' (see fling --help)", words[0]);
    c->args = words + 1;
    c->nargs = nwords - 1;
    if (c->nargs < c->cmd->min_args)
        return fail(c, EXIT_USAGE, "missing argument (see fling --help)");
    if (c->nargs > c->cmd->max_args)
        return fail(c, EXIT_USAGE, "unexpected argument '%s'", c->args[c->cmd->max_args]);
    for (int i = 0; i < c->nopts; i++) {
        const opt_spec *s = spec_of(c->opts[i].id);
        if (!(s->cmds & c->cmd->bit))
            return fail(c, EXIT_USAGE, "option --%s does not apply", s->name);
    }
    return 0;
}

/* Applies the global options; returns -1 to go on, else the exit code. --help after a known
 * command word prints that command's usage. */
static int globals(cli *c, char **words, int nwords)
{
    int help = 0, version = 0;
    c->url = getenv("FLING_URL");
    c->token = getenv("FLING_TOKEN");
    c->cacert = getenv("FLING_CACERT");
    for (int i = 0; i < c->nopts; i++) {
        const opt_val *o = &c->opts[i];
        help |= o->id == OPT_HELP;
        version |= o->id == OPT_VERSION;
        if (o->id == OPT_URL)
            c->url = o->arg;
        else if (o->id == OPT_TOKEN)
            c->token = o->arg;
        else if (o->id == OPT_CACERT)
            c->cacert = o->arg;
        c->insecure |= o->id == OPT_INSECURE;
    }
    if (c->cacert && !c->cacert[0])
        c->cacert = NULL;
    if (!c->url || !c->url[0])
        c->url = DEFAULT_URL;
    if (help)
        return print_usage(nwords > 0 ? command_named(words[0]) : NULL);
    if (version)
        return printf("fling %s\n", FL_VERSION) < 0 ? EXIT_DAEMON : 0;
    return -1;
}

/* Makes the client (unless the command reads the Redis mirror: watch --redis, status --redis) and
 * runs the command: its exit code. */
static int run(cli *c)
{
    if (uses_redis(c))
        return c->cmd->run(c);
    c->client = fling_client_new(c->url, c->token);
    if (!c->client)
        return errno == ENOMEM ? fail(c, EXIT_TRANSPORT, "out of memory")
                               : fail(c, EXIT_USAGE, "bad URL '%s' or token "
                                      "(http://host[:port], https://host[:port] or unix:/path)", c->url);
    int rc = fling_client_set_tls(c->client, c->cacert, c->insecure ? FLING_TLS_INSECURE : 0);
    if (rc < 0)
        return fail_call(c, rc, NULL);
    return c->cmd->run(c);
}

int main(int argc, char **argv)
{
    cli c = { 0 };
    char **words = NULL;
    int nwords = 0;
    int code = parse_args(&c, argc, argv, &words, &nwords);
    if (code == 0 && (code = globals(&c, words, nwords)) < 0 && (code = resolve(&c, words, nwords)) == 0)
        code = run(&c);
    fling_client_free(c.client);
    free(c.opts);
    free(words);
    if (fflush(stdout) == EOF && code == 0)
        code = fail(&c, EXIT_DAEMON, "cannot write output");
    return code;
}
