/* cli.c — the `fling` command (DESIGN.md "Client library and CLI"): submit, status, list and
 * cancel, over libfling. On failure it prints exactly one line on stderr and exits 1 when the
 * daemon refused (or output could not be written), 2 for a usage error, 3 when the daemon
 * could not be reached or its reply not understood.
 * All options of all commands are parsed in one getopt_long pass, so global ones go anywhere;
 * each option names the commands that accept it. A new command is one row in `commands`,
 * its options rows in `specs`, and one function. */
#include "fling.h"
#include "proto.h"   /* the fling target does not put proto/ on its include path */

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_DAEMON 1        /* an error reply, or stdout failed */
#define EXIT_USAGE 2
#define EXIT_TRANSPORT 3     /* connect, send, receive or reply-format failure */

#define FLING_CLI_VERSION "0.1.0"              /* the project version in CMakeLists.txt */
#define DEFAULT_URL "http://127.0.0.1:7878"    /* flingd's default listen address */
#define STDIN_MAX (64 * 1024 * 1024)           /* far above any sane max_payload */
#define ERROR_TEXT_MAX 200                     /* of a non-JSON error body, on one line */
#define LIST_PATH_MAX 2048                     /* /v1/jobs and four bounded parameters */

enum { CMD_SUBMIT = 1, CMD_STATUS = 2, CMD_LIST = 4, CMD_CANCEL = 8, CMD_ANY = 0xff };

enum opt_id {
    OPT_HELP = 'h',
    OPT_URL = 256, OPT_TOKEN, OPT_VERSION,
    OPT_TIMEOUT, OPT_ATTEMPTS, OPT_DELAY, OPT_PRIORITY, OPT_KEY, OPT_CALLBACK, OPT_DETACH,
    OPT_STATE, OPT_TYPE, OPT_LIMIT, OPT_AFTER, OPT_JSON,
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
    { "timeout", required_argument, OPT_TIMEOUT, CMD_SUBMIT },
    { "attempts", required_argument, OPT_ATTEMPTS, CMD_SUBMIT },
    { "delay", required_argument, OPT_DELAY, CMD_SUBMIT },
    { "priority", required_argument, OPT_PRIORITY, CMD_SUBMIT },
    { "key", required_argument, OPT_KEY, CMD_SUBMIT },
    { "callback", required_argument, OPT_CALLBACK, CMD_SUBMIT },
    { "detach", no_argument, OPT_DETACH, CMD_SUBMIT },
    { "state", required_argument, OPT_STATE, CMD_LIST },
    { "type", required_argument, OPT_TYPE, CMD_LIST },
    { "limit", required_argument, OPT_LIMIT, CMD_LIST },
    { "after", required_argument, OPT_AFTER, CMD_LIST },
    { "json", no_argument, OPT_JSON, CMD_LIST },
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
    char **args;             /* positional arguments after the command name */
    int nargs;
    opt_val *opts;           /* options in command-line order */
    int nopts;
    fling_client *client;
} cli;

struct command {
    const char *name;
    unsigned bit;
    int min_args, max_args;
    int (*run)(cli *);
};

static const char usage_text[] =
    "usage: fling [--url URL] [--token TOKEN] COMMAND [ARGS]\n"
    "\n"
    "  submit TYPE [PAYLOAD|-] [--timeout S] [--attempts N] [--delay S] [--priority N]\n"
    "                          [--key K] [--callback URL] [--detach]\n"
    "                   submit a job and print its id (payload - or absent: stdin);\n"
    "                   --detach sends it without waiting and prints nothing\n"
    "  status ID        print the job as JSON\n"
    "  list [--state S] [--type T] [--limit N] [--after CURSOR] [--json]\n"
    "                   print jobs, newest first: id type state status attempts created_at\n"
    "  cancel ID        cancel a job\n"
    "\n"
    "  --url URL        http://host:port or unix:/path (env FLING_URL; default " DEFAULT_URL ")\n"
    "  --token TOKEN    bearer token (env FLING_TOKEN)\n"
    "  -h, --help       this text;  --version  the version\n"
    "\n"
    "exit status: 0 ok, 1 the daemon refused, 2 usage error, 3 daemon unreachable\n";

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

/* Reports a libfling failure with the exit code its kind calls for. */
static int fail_call(const cli *c, int rc, const fling_response *res)
{
    switch (rc) {
    case FLING_EHTTP: return fail_http(c, res);
    case FLING_EINVAL: return fail(c, EXIT_USAGE, "invalid argument");
    case FLING_ECONNECT: return fail(c, EXIT_TRANSPORT, "could not connect to %s", c->url);
    case FLING_ESEND: return fail(c, EXIT_TRANSPORT, "could not send the request to %s", c->url);
    case FLING_ERECV: return fail(c, EXIT_TRANSPORT, "no reply from %s", c->url);
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

static int print_pretty(const cli *c, const fling_response *res)
{
    int code = 0;
    json_t *j = reply_json(c, res, &code);
    if (!j)
        return code;
    int rc = json_dumpf(j, stdout, JSON_INDENT(2));
    json_decref(j);
    if (rc < 0 || fputc('\n', stdout) == EOF)
        return fail(c, EXIT_DAEMON, "cannot write output");
    return 0;
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
    static const char *const fields[] = { "id", "type", "state", "status", "attempts", "created_at" };
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
    json_array_foreach(jobs, i, job) {
        for (size_t f = 0; f < nf; f++)
            print_scalar(json_object_get(job, fields[f]), f + 1 < nf ? "\t" : "\n");
    }
    const char *next = json_string_value(json_object_get(j, "next"));
    if (next)
        fprintf(stderr, "fling: list: more with --after %s\n", next);
    json_decref(j);
    return ferror(stdout) ? fail(c, EXIT_DAEMON, "cannot write output") : 0;
}

/* ---- commands ------------------------------------------------------------------------- */

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
        default: break;
        }
    }
    jo->timeout = p.has_timeout ? p.timeout : 0;
    jo->max_attempts = p.has_max_attempts ? p.max_attempts : 0;
    jo->delay = p.has_delay ? p.delay : 0;
    jo->has_priority = p.has_priority;
    jo->priority = p.priority;
    return rc;
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
    free(payload);
    if (rc == 0 && !detach)
        printf("%s\n", res.id);
    code = rc ? fail_call(c, rc, &res) : 0;
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

static int cmd_status(cli *c)
{
    char path[sizeof FL_PROTO_JOBS_PATH + FL_ID_MAX];
    int code = job_path(c, path, sizeof path);
    if (code)
        return code;
    fling_response res;
    int rc = fling_request(c->client, "GET", path, NULL, 0, &res);
    code = rc ? fail_call(c, rc, &res) : print_pretty(c, &res);
    fling_response_clear(&res);
    return code;
}

static int cmd_cancel(cli *c)
{
    char path[sizeof FL_PROTO_JOBS_PATH + FL_ID_MAX];
    int code = job_path(c, path, sizeof path);
    if (code)
        return code;
    fling_response res;
    int rc = fling_request(c->client, "DELETE", path, NULL, 0, &res);
    code = rc ? fail_call(c, rc, &res) : 0;
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

static const command commands[] = {
    { "submit", CMD_SUBMIT, 1, 2, cmd_submit },
    { "status", CMD_STATUS, 1, 1, cmd_status },
    { "list", CMD_LIST, 0, 0, cmd_list },
    { "cancel", CMD_CANCEL, 1, 1, cmd_cancel },
};

/* ---- command line --------------------------------------------------------------------- */

static const opt_spec *spec_of(int id)
{
    for (size_t i = 0; i < N_SPECS; i++)
        if (specs[i].id == id)
            return &specs[i];
    return NULL;
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
            c->opts[c->nopts++] = (opt_val){ ch, optarg };
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
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(words[0], commands[i].name) == 0)
            c->cmd = &commands[i];
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

/* Applies the global options; returns -1 to go on, else the exit code. */
static int globals(cli *c)
{
    int help = 0, version = 0;
    c->url = getenv("FLING_URL");
    c->token = getenv("FLING_TOKEN");
    for (int i = 0; i < c->nopts; i++) {
        const opt_val *o = &c->opts[i];
        help |= o->id == OPT_HELP;
        version |= o->id == OPT_VERSION;
        if (o->id == OPT_URL)
            c->url = o->arg;
        else if (o->id == OPT_TOKEN)
            c->token = o->arg;
    }
    if (!c->url || !c->url[0])
        c->url = DEFAULT_URL;
    if (help)
        return fputs(usage_text, stdout) == EOF ? EXIT_DAEMON : 0;
    if (version)
        return printf("fling %s\n", FLING_CLI_VERSION) < 0 ? EXIT_DAEMON : 0;
    return -1;
}

/* Makes the client and runs the command: its exit code. */
static int run(cli *c)
{
    c->client = fling_client_new(c->url, c->token);
    if (!c->client)
        return errno == ENOMEM ? fail(c, EXIT_TRANSPORT, "out of memory")
                               : fail(c, EXIT_USAGE, "bad URL '%s' or token "
                                      "(http://host:port or unix:/path)", c->url);
    return c->cmd->run(c);
}

int main(int argc, char **argv)
{
    cli c = { 0 };
    char **words = NULL;
    int nwords = 0;
    int code = parse_args(&c, argc, argv, &words, &nwords);
    if (code == 0 && (code = globals(&c)) < 0 && (code = resolve(&c, words, nwords)) == 0)
        code = run(&c);
    fling_client_free(c.client);
    free(c.opts);
    free(words);
    if (fflush(stdout) == EOF && code == 0)
        code = fail(&c, EXIT_DAEMON, "cannot write output");
    return code;
}
