/* main.c — flingd's entry point: command line, configuration, signals, the ready file, the loop. */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "server.h"

/* The build passes the project's version; this fallback keeps other builds working. */
#ifndef FL_VERSION
#define FL_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "usage: flingd [-c FILE] [--listen HOST:PORT] [--unix PATH] [--db PATH] [--workers N]\n"
            "              [--ready-file PATH] [--check-config] [--print-config] [--allow-root] [--verbose]\n"
            "              [--version]\n"
            "  -c, --config FILE    INI configuration (default: built-in defaults)\n"
            "  --listen HOST:PORT   TCP address (port 0 picks a free one)\n"
            "  --unix PATH          also listen on a Unix socket\n"
            "  --db PATH            SQLite database file\n"
            "  --workers N          worker pool size\n"
            "  --ready-file PATH    write {\"pid\":…,\"port\":…} there once accepting\n"
            "  --check-config       validate the configuration and exit\n"
            "  --print-config       print the effective configuration (secrets as \"(set)\") and exit\n"
            "  --allow-root         run as root all the same (jobs then run as root too)\n"
            "  -v, --verbose        log debug messages too\n"
            "  --version            print the version and exit\n");
}

typedef struct opts {
    const char *config, *listen, *unix_path, *db, *ready_file;
    int workers, check, print, verbose, allow_root;
} opts;

static int parse_args(int argc, char **argv, opts *o)
{
    enum { O_LISTEN = 256, O_UNIX, O_DB, O_WORKERS, O_READY, O_CHECK, O_PRINT, O_ALLOW_ROOT, O_VERSION };
    static const struct option longopts[] = {
        { "config", required_argument, 0, 'c' }, { "listen", required_argument, 0, O_LISTEN },
        { "unix", required_argument, 0, O_UNIX }, { "db", required_argument, 0, O_DB },
        { "workers", required_argument, 0, O_WORKERS }, { "ready-file", required_argument, 0, O_READY },
        { "check-config", no_argument, 0, O_CHECK }, { "print-config", no_argument, 0, O_PRINT },
        { "verbose", no_argument, 0, 'v' },
        { "allow-root", no_argument, 0, O_ALLOW_ROOT }, { "version", no_argument, 0, O_VERSION },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:vh", longopts, NULL)) != -1) {
        char *end;
        switch (ch) {
        case 'c': o->config = optarg; break;
        case O_LISTEN: o->listen = optarg; break;
        case O_UNIX: o->unix_path = optarg; break;
        case O_DB: o->db = optarg; break;
        case O_READY: o->ready_file = optarg; break;
        case O_CHECK: o->check = 1; break;
        case O_PRINT: o->print = 1; break;
        case O_ALLOW_ROOT: o->allow_root = 1; break;
        case O_VERSION: printf("flingd %s\n", FL_VERSION); return 1;
        case 'v': o->verbose = 1; break;
        case O_WORKERS:
            errno = 0;
            o->workers = (int)strtol(optarg, &end, 10);
            if (errno || *end || o->workers < 1 || o->workers > 1024) {
                fprintf(stderr, "flingd: --workers: expected 1..1024, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "flingd: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    return 0;
}

static int replace_str(char **dst, const char *src)
{
    char *s = strdup(src);
    if (!s)
        return -ENOMEM;
    free(*dst);
    *dst = s;
    return 0;
}

static int load_config(fl_config *cfg, const opts *o, char *err, size_t errlen)
{
    int rc = fl_config_init(cfg);
    if (rc < 0) {
        snprintf(err, errlen, "%s", strerror(-rc));
        return rc;
    }
    if (o->config && (rc = fl_config_load(cfg, o->config, err, errlen)) < 0)
        return rc;
    if (o->listen && (rc = fl_config_set_listen(cfg, o->listen, err, errlen)) < 0)
        return rc;
    if ((o->db && replace_str(&cfg->db_path, o->db) < 0) ||
        (o->unix_path && replace_str(&cfg->unix_path, o->unix_path) < 0)) {
        snprintf(err, errlen, "%s", strerror(ENOMEM));
        return -ENOMEM;
    }
    if (o->workers)
        cfg->workers = o->workers;
    if (o->verbose)
        cfg->log_level = LOG_DEBUG;
    return 0;
}

/* Written to a temp file and renamed, so a reader never sees half of it. */
static int write_ready_file(const char *path, int port)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    fprintf(f, "{\"pid\":%d,\"port\":%d}\n", (int)getpid(), port);
    if (fclose(f) != 0 || rename(tmp, path) < 0) {
        int rc = -errno;
        unlink(tmp);
        return rc;
    }
    return 0;
}

/* Connection-per-job load holds many descriptors at once: use all the hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    fl_server *srv = w->data;
    if (!fl_server_stopping(srv))
        fl_log(LOG_INFO, "signal %d: stopping (no new connections; finishing in-flight requests)", w->signum);
    fl_server_stop(srv);
}

/* What the SIGHUP handler needs: the server and the command line to read the file again with. */
typedef struct reload_ctx {
    fl_server *srv;
    const opts *o;
} reload_ctx;

/* SIGHUP would end the process by default. It reopens the log file ([server] log), as
 * logrotate expects, and reads the configuration file again: a file that does not load is
 * logged with its FILE:LINE and changes nothing; one that does is applied by the server (the
 * reloadable keys, docs/config.md), with the same command-line overrides as at start. */
static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    const reload_ctx *rc = w->data;
    char err[512] = "";
    fl_log_reopen();
    if (!rc->o->config) {
        fl_log(LOG_INFO, "SIGHUP: no configuration file (-c) to read again");
        return;
    }
    fl_config *next = malloc(sizeof *next);
    if (!next || load_config(next, rc->o, err, sizeof err) < 0) {
        fl_log(LOG_ERR, "SIGHUP: %s; still running the previous configuration", next ? err : strerror(ENOMEM));
        if (next)
            fl_config_free(next);
        free(next);
        return;
    }
    fl_log(LOG_INFO, "SIGHUP: read %s again", rc->o->config);
    if (fl_server_reload(rc->srv, next) < 0)
        fl_log(LOG_ERR, "SIGHUP: %s; still running the previous configuration", strerror(ENOMEM));
}

int main(int argc, char **argv)
{
    opts o = { 0 };
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : 2;

    fl_config cfg;
    char err[512] = "";
    if (load_config(&cfg, &o, err, sizeof err) < 0) {
        fprintf(stderr, "flingd: %s\n", err);
        fl_config_free(&cfg);
        return 2;
    }
    if (o.check || o.print) {
        if (o.print)
            fl_config_print(&cfg, stdout);
        else
            printf("%s: ok (%zu job types)\n", o.config ? o.config : "defaults", cfg.n_types);
        fl_config_free(&cfg);
        return 0;
    }
    if (geteuid() == 0 && !o.allow_root) {
        fprintf(stderr, "flingd: refusing to run as root: jobs would run as root too; use a service user, "
                        "or --allow-root\n");
        fl_config_free(&cfg);
        return 2;
    }

    fl_log_set_level(cfg.log_level);
    if ((rc = fl_log_open(cfg.log_path, cfg.log_json ? FL_LOG_JSON : FL_LOG_TEXT)) < 0) {
        fprintf(stderr, "flingd: log %s: %s\n", cfg.log_path, strerror(-rc));
        fl_config_free(&cfg);
        return 2;
    }
    /* a departed client is a normal outcome, never a signal (docs/protocol.md) */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    /* Signals through a signalfd: libev blocks each one it watches in this thread, and the loop
     * reads them like any descriptor; no handler ever interrupts anything. Every thread flingd
     * starts blocks all signals (store.c), those started later from the loop inherit its mask,
     * and a child unblocks them all before its exec (worker.c). With a handler, one SIGHUP of
     * a test run under ThreadSanitizer (whose runtime runs handlers at points of its own) was
     * never handled; a signalfd leaves no handler to run. */
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO | EVFLAG_SIGNALFD);
    if (!loop) {
        fprintf(stderr, "flingd: cannot initialise the event loop\n");
        fl_config_free(&cfg);
        return 1;
    }
    fl_server *srv;
    if (fl_server_start(&srv, loop, &cfg, err, sizeof err) < 0) {
        fl_log(LOG_ERR, "%s", err);
        fl_config_free(&cfg);
        return 1;
    }
    ev_signal sigterm, sigint, sighup;
    ev_signal_init(&sigterm, on_stop_signal, SIGTERM);
    ev_signal_init(&sigint, on_stop_signal, SIGINT);
    ev_signal_init(&sighup, on_hup, SIGHUP);
    reload_ctx reload = { srv, &o };
    sigterm.data = sigint.data = srv;
    sighup.data = &reload;
    ev_signal_start(loop, &sigterm);
    ev_signal_start(loop, &sigint);
    ev_signal_start(loop, &sighup);

    fl_log(LOG_INFO, "listening on %s:%d%s%s (db %s, durability %s, %zu job types)", cfg.listen_host, fl_server_port(srv),
           cfg.unix_path ? " and unix:" : "", cfg.unix_path ? cfg.unix_path : "", cfg.db_path,
           cfg.durability_full ? "full" : "normal", cfg.n_types);
    if (o.ready_file && (rc = write_ready_file(o.ready_file, fl_server_port(srv))) < 0)
        fl_log(LOG_ERR, "ready file %s: %s", o.ready_file, strerror(-rc));

    ev_run(loop, 0);

    ev_signal_stop(loop, &sigterm);
    ev_signal_stop(loop, &sigint);
    ev_signal_stop(loop, &sighup);
    fl_server_free(srv);
    fl_log(LOG_INFO, "stopped");
    fl_log_close();
    fl_config_free(&cfg);
    ev_loop_destroy(loop);
    return 0;
}
