/* test_config.c — daemon/config.c: defaults, the example file, every key, the first bad line of
 * bad files with its reason, shell-like command splitting, inline comments, --listen, the
 * callback allow list. Config files are real files in a mkdtemp directory, removed at the end. */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define ERR_LEN 512
#define PATH_LEN 256
/* Files the group may leave behind; the clean-up stops after this many entries. */
#define DIR_ENTRIES_MAX 10000

static char test_dir[] = "/tmp/fl_test_config_XXXXXX";
static unsigned file_seq;

static int group_setup(void **state)
{
    (void)state;
    return mkdtemp(test_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    DIR *d = opendir(test_dir);
    if (!d)
        return -1;
    struct dirent *e;
    char path[sizeof test_dir + sizeof e->d_name + 1];
    for (int i = 0; i < DIR_ENTRIES_MAX && (e = readdir(d)); i++) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", test_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    return rmdir(test_dir);
}

/* write_conf writes len bytes of text to a new file in the test directory; path gets its name. */
static void write_conf_len(const char *text, size_t len, char path[PATH_LEN])
{
    snprintf(path, PATH_LEN, "%s/c%u.conf", test_dir, file_seq++);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_conf(const char *text, char path[PATH_LEN])
{
    write_conf_len(text, strlen(text), path);
}

/* load_text initialises c and loads text into it from a fresh file; returns fl_config_load's. */
static int load_text(fl_config *c, const char *text, char err[ERR_LEN], char path[PATH_LEN])
{
    write_conf(text, path);
    assert_int_equal(fl_config_init(c), 0);
    err[0] = '\0';
    return fl_config_load(c, path, err, ERR_LEN);
}

static void assert_argv(char *const *argv, const char *const *want)
{
    assert_non_null(argv);
    size_t i = 0;
    for (; want[i]; i++) {
        assert_non_null(argv[i]);
        assert_string_equal(argv[i], want[i]);
    }
    assert_null(argv[i]);
}

static const fl_type *find(const fl_config *c, const char *name)
{
    return fl_config_find_type(c, name, strlen(name));
}

static void assert_allow(const fl_allow *a, const char *scheme, const char *host, const char *port,
                         const char *path)
{
    assert_string_equal(a->scheme, scheme);
    assert_string_equal(a->host, host);
    assert_string_equal(a->port, port);
    assert_string_equal(a->path, path);
}

/* ---- defaults and good files ------------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    fl_config c;
    assert_int_equal(fl_config_init(&c), 0);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 7878);
    assert_null(c.unix_path);
    assert_null(c.token);
    assert_null(c.log_path);
    assert_int_equal(c.log_json, 0);
    assert_int_equal(c.max_payload, 1048576);
    assert_int_equal(c.max_header, 16384);
    assert_int_equal(c.backlog, 4096);
    assert_int_equal(c.max_connections, 10000);
    assert_true(c.read_timeout == 10.0);
    assert_true(c.idle_timeout == 60.0);
    assert_string_equal(c.db_path, "var/fling.db");
    assert_int_equal(c.durability_full, 1);
    assert_int_equal(c.store_retention, 7 * 86400);
    assert_int_equal(c.store_connections, 2);
    assert_int_equal(c.workers, 8);
    assert_true(c.shutdown_grace == 30.0);
    assert_null(c.redis_url);
    assert_string_equal(c.redis_prefix, "fling:");
    assert_int_equal(c.redis_retention, 86400);
    assert_int_equal(c.n_callback_allow, 0);
    assert_null(c.callback_secret);
    assert_int_equal(c.n_types, 2);
    const fl_type *noop = find(&c, "noop"), *sleep_t = find(&c, "sleep");
    assert_non_null(noop);
    assert_non_null(sleep_t);
    assert_int_equal(noop->handler, FL_HANDLER_NOOP);
    assert_int_equal(sleep_t->handler, FL_HANDLER_SLEEP);
    assert_null(noop->argv);
    assert_null(noop->url);
    assert_true(noop->timeout == 30.0);
    assert_int_equal(noop->max_attempts, 3);
    assert_int_equal(noop->concurrency, 0);
    assert_true(noop->backoff_base == 1.0);
    assert_true(noop->backoff_max == 3600.0);
    assert_null(noop->on_complete);
    assert_null(noop->on_abort);
    assert_null(noop->env);
    assert_null(noop->env_pass);
    assert_null(noop->user);
    assert_null(noop->group);
    fl_config_free(&c);
    fl_config_free(&c); /* zeroed by the first: a second free is harmless */
}

static void test_example_file(void **state)
{
    (void)state;
    fl_config c;
    char err[ERR_LEN] = "";
    assert_int_equal(fl_config_init(&c), 0);
    int rc = fl_config_load(&c, FL_SOURCE_DIR "/examples/flingd.conf", err, sizeof err);
    if (rc != 0)
        fail_msg("%s", err);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 7878);
    /* relative to examples/, where the file is: make run keeps the database under ./var/ */
    char *examples = realpath(FL_SOURCE_DIR "/examples", NULL), want[PATH_LEN + 32];
    assert_non_null(examples);
    snprintf(want, sizeof want, "%s/../var/fling.db", examples);
    assert_string_equal(c.db_path, want);
    free(examples);
    assert_int_equal(c.durability_full, 1);
    assert_int_equal(c.workers, 8);
    assert_null(c.redis_url);
    assert_null(c.token);
    assert_int_equal(c.n_callback_allow, 2);
    assert_allow(&c.callback_allow[0], "http", "127.0.0.1", "9000", "");
    assert_allow(&c.callback_allow[1], "http", "localhost", "9000", "");
    assert_int_equal(c.n_types, 5);

    const fl_type *echo = find(&c, "echo");
    assert_non_null(echo);
    assert_int_equal(echo->handler, FL_HANDLER_EXEC);
    assert_argv(echo->argv, (const char *[]){"/bin/cat", NULL});
    assert_int_equal(echo->concurrency, 4);

    const fl_type *greet = find(&c, "greet");
    assert_non_null(greet);
    assert_argv(greet->argv, (const char *[]){"/bin/sh", "-c",
                                              "echo \"job $FLING_JOB_ID\"; cat >/dev/null", NULL});
    assert_int_equal(greet->max_attempts, 1);

    const fl_type *email = find(&c, "email");
    assert_non_null(email);
    assert_int_equal(email->handler, FL_HANDLER_EXEC);

    assert_int_equal(find(&c, "noop")->handler, FL_HANDLER_NOOP);
    assert_int_equal(find(&c, "sleep")->handler, FL_HANDLER_SLEEP);
    assert_null(find(&c, "webhook"));
    fl_config_free(&c);
}

static const char every_key[] =
    "[server]\n"
    "listen = [::1]:0\n"
    "unix = /tmp/fl.sock\n"
    "token = s3cr3t-T0ken\n"
    "max_payload = 2m\n"
    "max_header = 8K\n"
    "backlog = 128\n"
    "max_connections = 500\n"
    "read_timeout = 2.5\n"
    "idle_timeout = 0.25\n"
    "max_pipeline = 16\n"
    "max_output = 64k\n"
    "log = /tmp/x/flingd.log\n"
    "log_format = json\n"
    "[store]\n"
    "retention = 12h\n"
    "path = /tmp/x/fling.db\n"
    "durability = normal\n"
    "connections = 5\n"
    "[workers]\n"
    "count = 3\n"
    "shutdown_grace = 0\n"
    "[redis]\n"
    "url = redis://127.0.0.1:6380/2\n"
    "prefix = app:\n"
    "retention = 60\n"
    "[callbacks]\n"
    "allow = http://127.0.0.1:9000  ,HTTPS://Hooks.example.com/ , http://[::1]:9/x/y//\n"
    "secret = hmac-key\n"
    "[type.mail.send]\n"
    "handler = exec\n"
    "command = /usr/bin/env mailer --to 'a b'\n"
    "timeout = 604800\n"
    "max_attempts = 1000\n"
    "concurrency = 100000\n"
    "backoff = 0.5\n"
    "backoff_max = 30\n"
    "on_complete = https://127.0.0.1:9/done\n"
    "on_abort = exec:/bin/echo 'aborted job'\n"
    "env = APP_ENV=prod, EMPTY=, A_1=x y=z\n"
    "env_pass = DATABASE_URL ,_X\n"
    "group = root\n"
    "user = nobody\n"
    "[type.hook]\n"
    "handler = http\n"
    "url = http://127.0.0.1:9000/jobs?x=1\n"
    "on_complete = HTTP://0x7f.1:9/a/../b\n"
    "callback_payload = true\n"
    "schedule_tz = UTC\n"
    "schedule = */5 9-17 * * 1-5\n"
    "periodic_payload = {\"report\":1}\n"
    "[type.nap]\n"
    "handler = sleep\n"
    "concurrency = 0\n"
    "user = root\n";

static void test_every_key(void **state)
{
    (void)state;
    fl_config c;
    char err[ERR_LEN], path[PATH_LEN];
    int rc = load_text(&c, every_key, err, path);
    if (rc != 0)
        fail_msg("%s", err);
    assert_string_equal(c.listen_host, "::1");
    assert_int_equal(c.listen_port, 0);
    assert_string_equal(c.unix_path, "/tmp/fl.sock");
    assert_string_equal(c.token, "s3cr3t-T0ken");
    assert_int_equal(c.max_payload, 2 * 1024 * 1024);
    assert_int_equal(c.max_header, 8 * 1024);
    assert_int_equal(c.backlog, 128);
    assert_int_equal(c.max_connections, 500);
    assert_int_equal(c.store_connections, 5);
    assert_true(c.read_timeout == 2.5);
    assert_true(c.idle_timeout == 0.25);
    assert_int_equal(c.max_pipeline, 16);
    assert_int_equal(c.max_output, 64 * 1024);
    assert_string_equal(c.db_path, "/tmp/x/fling.db");
    assert_string_equal(c.log_path, "/tmp/x/flingd.log");
    assert_int_equal(c.log_json, 1);
    assert_int_equal(c.durability_full, 0);
    assert_int_equal(c.store_retention, 43200);
    assert_int_equal(c.workers, 3);
    assert_true(c.shutdown_grace == 0.0);
    assert_string_equal(c.redis_url, "redis://127.0.0.1:6380/2");
    assert_string_equal(c.redis_prefix, "app:");
    assert_int_equal(c.redis_retention, 60);
    assert_int_equal(c.n_callback_allow, 3);
    assert_allow(&c.callback_allow[0], "http", "127.0.0.1", "9000", "");
    assert_allow(&c.callback_allow[1], "https", "Hooks.example.com", "443", "");
    assert_allow(&c.callback_allow[2], "http", "[::1]", "9", "/x/y");
    assert_string_equal(c.callback_secret, "hmac-key");
    assert_int_equal(c.n_types, 3);

    const fl_type *m = find(&c, "mail.send");
    assert_non_null(m);
    assert_int_equal(m->handler, FL_HANDLER_EXEC);
    assert_argv(m->argv, (const char *[]){"/usr/bin/env", "mailer", "--to", "a b", NULL});
    assert_null(m->url);
    assert_true(m->timeout == 604800.0);
    assert_int_equal(m->max_attempts, 1000);
    assert_int_equal(m->concurrency, 100000);
    assert_true(m->backoff_base == 0.5);
    assert_true(m->backoff_max == 30.0);
    assert_string_equal(m->on_complete, "https://127.0.0.1:9/done");
    assert_string_equal(m->on_abort, "exec:/bin/echo 'aborted job'");
    assert_argv(m->env, (const char *[]){"APP_ENV=prod", "EMPTY=", "A_1=x y=z", NULL});
    assert_argv(m->env_pass, (const char *[]){"DATABASE_URL", "_X", NULL});
    const struct passwd *nobody = getpwnam("nobody");
    assert_non_null(nobody);
    assert_string_equal(m->user, "nobody");
    assert_string_equal(m->user_home, nobody->pw_dir);
    assert_int_equal(m->uid, nobody->pw_uid);
    assert_string_equal(m->group, "root");
    assert_int_equal(m->gid, 0); /* the group key wins over the user's own group */

    const fl_type *h = find(&c, "hook");
    assert_non_null(h);
    assert_int_equal(h->handler, FL_HANDLER_HTTP);
    assert_string_equal(h->url, "http://127.0.0.1:9000/jobs?x=1");
    assert_null(h->argv);
    assert_true(h->timeout == 30.0);
    assert_int_equal(h->max_attempts, 3);
    assert_string_equal(h->on_complete, "http://127.0.0.1:9/b"); /* as libcurl will send it */
    assert_int_equal(h->callback_payload, 1);
    assert_string_equal(h->schedule, "*/5 9-17 * * 1-5");
    assert_int_equal(h->cron.hour, 0x3fe00);
    assert_string_equal(h->schedule_tz, "UTC");
    assert_non_null(h->tz);
    assert_ptr_equal(h->cron.tz, h->tz);   /* set before schedule, kept by its parse */
    assert_int_equal(fl_tz_offset(h->tz, 1782864000), 0);
    assert_string_equal(h->periodic_payload, "{\"report\":1}");
    assert_null(m->schedule);
    assert_int_equal(m->callback_payload, 0);
    assert_null(h->env);
    assert_null(h->user);

    const fl_type *nap = find(&c, "nap");
    assert_non_null(nap);
    assert_int_equal(nap->handler, FL_HANDLER_SLEEP);
    assert_string_equal(nap->user, "root");
    assert_int_equal(nap->uid, 0);
    assert_int_equal(nap->gid, 0); /* the user's group */
    assert_null(nap->group);
    assert_null(find(&c, "noop")); /* a file's types replace the built-ins */
    fl_config_free(&c);
}

static void test_no_types_and_last_key_wins(void **state)
{
    (void)state;
    fl_config c;
    char err[ERR_LEN], path[PATH_LEN];
    int rc = load_text(&c,
                       "# hash comment\n"
                       "[workers]\ncount = 2\ncount = 5\n"
                       "[server]\ntoken = a\ntoken = b\n"
                       "[callbacks]\nallow = http://a/\nallow = http://b/, http://c/\n"
                       "[workers]\nshutdown_grace = 1\n",
                       err, path);
    if (rc != 0)
        fail_msg("%s", err);
    assert_int_equal(c.n_types, 0);
    assert_null(find(&c, "noop"));
    assert_int_equal(c.workers, 5);
    assert_true(c.shutdown_grace == 1.0);
    assert_string_equal(c.token, "b");
    assert_int_equal(c.n_callback_allow, 2);
    assert_allow(&c.callback_allow[0], "http", "b", "80", "");
    fl_config_free(&c);

    rc = load_text(&c, "[type.x]\nhandler = exec\ncommand = /bin/a\ncommand = /bin/b 1\n"
                       "handler = noop\nhandler = exec\n", err, path);
    if (rc != 0)
        fail_msg("%s", err);
    assert_argv(find(&c, "x")->argv, (const char *[]){"/bin/b", "1", NULL});
    fl_config_free(&c);

    rc = load_text(&c, "[callbacks]\nallow =\n", err, path);
    assert_int_equal(rc, 0);
    assert_int_equal(c.n_callback_allow, 0);
    fl_config_free(&c);
}

/* A periodic type's zone: schedule_tz's, else flingd's own (TZ here); a zone flingd cannot
 * read is an error at the type's section. */
static void test_schedule_zones(void **state)
{
    (void)state;
    fl_config c;
    char err[ERR_LEN], path[PATH_LEN];
    const char *text = "[type.far]\nhandler = noop\nschedule = 0 9 * * *\nschedule_tz = Pacific/Chatham\n"
                       "[type.own]\nhandler = noop\nschedule = 0 9 * * *\n"
                       "[type.plain]\nhandler = noop\n";
    setenv("TZ", "America/New_York", 1);
    int rc = load_text(&c, text, err, path);
    if (rc != 0)
        fail_msg("%s", err);
    const int64_t july = 1782864000;   /* 2026-07-01 00:00 UTC */
    assert_int_equal(fl_tz_offset(find(&c, "far")->cron.tz, july), 12 * 3600 + 45 * 60);
    assert_int_equal(fl_tz_offset(find(&c, "own")->cron.tz, july), -4 * 3600);
    assert_null(find(&c, "own")->schedule_tz);
    assert_null(find(&c, "plain")->tz);
    assert_int_equal(fl_cron_next(&find(&c, "far")->cron, july), july + 20 * 3600 + 15 * 60);   /* Jul 2 09:00 +12:45 */
    fl_config_free(&c);

    setenv("TZ", "Nowhere/City", 1);
    assert_int_equal(load_text(&c, text, err, path), -EINVAL);
    if (!strstr(err, ":5: [type.own] schedule: flingd's time zone Nowhere/City: unknown time zone"))
        fail_msg("%s", err);
    fl_config_free(&c);
    setenv("TZ", "UTC", 1);
}

/* docs/config.md marks each key "yes" or "restart" in its reload column as flingd applies it
 * on SIGHUP; a table without the column would say none of its keys reloads. */
static void test_docs_reload_marks(void **state)
{
    (void)state;
    FILE *f = fopen(FL_SOURCE_DIR "/docs/config.md", "r");
    assert_non_null(f);
    char line[4096], section[32] = "";
    int has_column = 0, rows = 0, live = 0;
    while (fgets(line, sizeof line, f)) {
        char name[64], mark[16];
        if (sscanf(line, "## [%31[a-z]", section) == 1) {
            has_column = 0;
        } else if (strncmp(line, "| key | reload |", 16) == 0) {
            has_column = 1;
        } else if (sscanf(line, "| `%63[a-z_]` |", name) == 1) {
            if (has_column && sscanf(line, "| `%*[a-z_]` | %15[a-z] |", mark) != 1)
                fail_msg("[%s] %s: no reload mark", section, name);
            int want = has_column && strcmp(mark, "yes") == 0;
            if (has_column && strcmp(mark, "yes") != 0 && strcmp(mark, "restart") != 0)
                fail_msg("[%s] %s: reload mark \"%s\"", section, name, mark);
            if (fl_config_key_reloadable(section, name) != want)
                fail_msg("[%s] %s: docs say %s", section, name, want ? "reloadable" : "restart");
            rows++;
            live += want;
        }
    }
    fclose(f);
    assert_true(rows >= 50);
    assert_true(live >= 35);
    assert_int_equal(fl_config_key_reloadable("server", "listen"), 0);
    assert_int_equal(fl_config_key_reloadable("type", "handler"), 0);
    assert_int_equal(fl_config_key_reloadable("store", "path"), 0);
    assert_int_equal(fl_config_key_reloadable("store", "retention"), 1);
    assert_int_equal(fl_config_key_reloadable("store", "connections"), 0);
    assert_int_equal(fl_config_key_reloadable("server", "token"), 1);
}

static void test_inline_comments(void **state)
{
    (void)state;
    fl_config c;
    char err[ERR_LEN], path[PATH_LEN];
    int rc = load_text(&c,
                       "\xEF\xBB\xBF; a BOM, then a comment\n"
                       "[server]                 ; header comment\n"
                       "listen = 127.0.0.1:7000  ; default\n"
                       "token = abc;def\t; no blank before the first ';': part of the value\n"
                       "   max_payload = 64k     ; indented keys are keys\n"
                       "[redis];comment\n"
                       "prefix = a#b             # '#' only starts a comment at line start\n"
                       "[type.t]\n"
                       "handler = exec ; c\n"
                       "command = /bin/sh -c 'a;b' ; c\n",
                       err, path);
    if (rc != 0)
        fail_msg("%s", err);
    assert_int_equal(c.listen_port, 7000);
    assert_string_equal(c.token, "abc;def");
    assert_int_equal(c.max_payload, 64 * 1024);
    assert_string_equal(c.redis_prefix, "a#b             # '#' only starts a comment at line start");
    assert_argv(find(&c, "t")->argv, (const char *[]){"/bin/sh", "-c", "a;b", NULL});
    fl_config_free(&c);
}

/* inih cuts section names at 49 bytes; a 64-byte type name must still load whole. */
static void test_long_type_name(void **state)
{
    (void)state;
    char name[65], text[256], err[ERR_LEN], path[PATH_LEN];
    memset(name, 'n', 64);
    name[63] = 'Z';
    name[64] = '\0';
    snprintf(text, sizeof text, "[type.%s]\nhandler = noop\n[type.%.48s]\nhandler = sleep\n",
             name, name);
    fl_config c;
    int rc = load_text(&c, text, err, path);
    if (rc != 0)
        fail_msg("%s", err);
    assert_int_equal(c.n_types, 2);
    assert_int_equal(find(&c, name)->handler, FL_HANDLER_NOOP);
    assert_int_equal(fl_config_find_type(&c, name, 48)->handler, FL_HANDLER_SLEEP);
    fl_config_free(&c);
}

/* A line longer than inih's default buffer loads whole and line numbers stay right after it. */
static void test_long_lines(void **state)
{
    (void)state;
    size_t arg = 5000;
    char *text = malloc(arg + 256);
    assert_non_null(text);
    int n = sprintf(text, "[type.t]\nhandler = exec\ncommand = /bin/echo ");
    memset(text + n, 'a', arg);
    strcpy(text + n + arg, "\ntimeout = x\n");
    fl_config c;
    char err[ERR_LEN], path[PATH_LEN];
    assert_int_equal(load_text(&c, text, err, path), -EINVAL);
    char want[PATH_LEN + 64];
    snprintf(want, sizeof want, "%s:4: [type.t] timeout:", path);
    assert_non_null(strstr(err, want));
    fl_config_free(&c);

    strcpy(text + n + arg, "\n");
    assert_int_equal(load_text(&c, text, err, path), 0);
    assert_int_equal(strlen(find(&c, "t")->argv[1]), arg);
    fl_config_free(&c);
    free(text);

    size_t big = 9000;
    text = malloc(big + 64);
    assert_non_null(text);
    n = sprintf(text, "[server]\ntoken = ");
    memset(text + n, 't', big);
    strcpy(text + n + big, "\n");
    assert_int_equal(load_text(&c, text, err, path), -EINVAL);
    snprintf(want, sizeof want, "%s:2: line longer than", path);
    assert_non_null(strstr(err, want));
    fl_config_free(&c);
    free(text);
}

/* ---- command splitting ------------------------------------------------------------------- */

static void test_split(void **state)
{
    (void)state;
    static const struct {
        const char *command;
        const char *argv[6];
    } cases[] = {
        {"/bin/echo a b", {"/bin/echo", "a", "b"}},
        {"/bin/echo \t a\t\tb", {"/bin/echo", "a", "b"}},
        {"echo 'a b' \"c d\"", {"echo", "a b", "c d"}},
        {"echo 'it''s'", {"echo", "its"}},
        {"echo a\\ b \\'", {"echo", "a b", "'"}},
        {"echo \"a\\\"b\" \"\\$x\" \"\\n\" \"\\\\\"", {"echo", "a\"b", "$x", "\\n", "\\"}},
        {"echo \"\\`\"", {"echo", "`"}},
        {"echo '' \"\"", {"echo", "", ""}},
        {"echo 'a\\b' 'x\"y'", {"echo", "a\\b", "x\"y"}},
        {"echo a'b'\"c\"d", {"echo", "abcd"}},
        {"echo $HOME |x >y *", {"echo", "$HOME", "|x", ">y", "*"}},
        {"/usr/bin/x", {"/usr/bin/x"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256], err[ERR_LEN], path[PATH_LEN];
        snprintf(text, sizeof text, "[type.t]\nhandler = exec\ncommand = %s\n", cases[i].command);
        fl_config c;
        int rc = load_text(&c, text, err, path);
        if (rc != 0)
            fail_msg("case %zu: %s", i, err);
        assert_argv(find(&c, "t")->argv, cases[i].argv);
        fl_config_free(&c);
    }
}

/* ---- bad files --------------------------------------------------------------------------- */

static const struct {
    const char *text;
    int line;
    const char *reason;
} bad_files[] = {
    {"[server]\nlog_format = yaml\n", 2, "[server] log_format: expected text or json, got \"yaml\""},
    {"[server]\nlog =\n", 2, "[server] log: expected a path"},
    /* numbers */
    {"[type.echo]\nhandler = noop\ntimeout = abc\n", 3,
     "[type.echo] timeout: expected seconds > 0, got \"abc\""},
    {"[type.a]\nhandler = noop\ntimeout = 0\n", 3, "expected seconds > 0"},
    {"[type.a]\nhandler = noop\ntimeout = 604801\n", 3, "expected seconds at most 604800"},
    {"[type.a]\nhandler = noop\ntimeout = 1e3\n", 3, "expected seconds > 0"},
    {"[type.a]\nhandler = noop\ntimeout = 1.2.3\n", 3, "expected seconds > 0"},
    {"[type.a]\nhandler = noop\nmax_attempts = 0\n", 3, "max_attempts: expected an integer 1..1000"},
    {"[type.a]\nhandler = noop\nmax_attempts = 1001\n", 3, "expected an integer 1..1000"},
    {"[type.a]\nhandler = noop\nconcurrency = -1\n", 3, "expected an integer 0..100000"},
    {"[type.a]\nhandler = noop\nbackoff = 0\n", 3, "backoff: expected seconds > 0"},
    {"[type.a]\nhandler = noop\nbackoff = 10\nbackoff_max = 5\n", 1,
     "backoff: 10 is more than backoff_max 5"},
    {"[server]\nmax_payload = 0\n", 2, "max_payload: expected bytes 1..67108864"},
    {"[server]\nmax_pipeline = 0\n", 2, "max_pipeline: expected an integer 1..65536"},
    {"[server]\nmax_output = 1k\n", 2, "max_output: expected bytes 4096..67108864"},
    {"[server]\nmax_payload = 65m\n", 2, "expected bytes 1..67108864"},
    {"[server]\nmax_payload = 1g\n", 2, "expected bytes"},
    {"[server]\nmax_payload = 99999999999999999999999k\n", 2, "expected bytes"},
    {"[server]\nmax_header = 1023\n", 2, "max_header: expected bytes 1024..1048576"},
    {"[server]\nbacklog = 0\n", 2, "backlog: expected an integer 1..65535"},
    {"[server]\nbacklog = +5\n", 2, "backlog: expected an integer"},
    {"[server]\nmax_connections = 1000001\n", 2, "expected an integer 1..1000000"},
    {"[server]\nread_timeout = -1\n", 2, "read_timeout: expected seconds > 0"},
    {"[server]\nidle_timeout =\n", 2, "idle_timeout: expected seconds > 0, got \"\""},
    {"[workers]\ncount = 0\n", 2, "count: expected an integer 1..1024"},
    {"[store]\nconnections = 0\n", 2, "connections: expected an integer 1..64"},
    {"[store]\nconnections = 65\n", 2, "connections: expected an integer 1..64"},
    {"[workers]\ncount = 1025\n", 2, "expected an integer 1..1024"},
    {"[workers]\nshutdown_grace = -1\n", 2, "shutdown_grace: expected seconds >= 0"},
    {"[redis]\nretention = 0\n", 2, "retention: expected an integer 1.."},
    /* unknown names */
    {"[server]\nlisen = 127.0.0.1:1\n", 2, "[server] lisen: unknown key"},
    {"[type.a]\nhandler = noop\ntimeout_s = 3\n", 3, "[type.a] timeout_s: unknown key"},
    {"[server]\nListen = 127.0.0.1:1\n", 2, "unknown key"},
    {"; top\n[srever]\n", 2, "unknown section [srever]"},
    {"[type]\nhandler = noop\n", 1, "unknown section [type]"},
    {"listen = 127.0.0.1:1\n", 1, "listen: key before any [section]"},
    /* type sections */
    {"[type.a]\ntimeout = 1\n", 1, "[type.a] handler: missing"},
    {"[type.a]\n\n[type.b]\nhandler = noop\n", 1, "[type.a] handler: missing"},
    {"[type.ok]\nhandler = noop\n[type.last]\n", 3, "[type.last] handler: missing"},
    {"[type.a]\nhandler = bash\n", 2, "handler: expected exec, http, noop or sleep, got \"bash\""},
    {"[type.a]\nhandler = exec\n", 1, "[type.a] command: missing"},
    {"[type.a]\ncommand = /bin/true\nhandler = noop\n", 2, "command: only for handler = exec"},
    {"[type.a]\nhandler = http\n", 1, "[type.a] url: missing"},
    {"[type.a]\nhandler = exec\ncommand = /bin/cat\nurl = http://x/\n", 4,
     "url: only for handler = http"},
    {"[type.a]\nhandler = http\nurl = ftp://x/\n", 3, "url: expected an http:// or https:// URL"},
    {"[type.a]\nhandler = http\nurl = http://\n", 3, "expected an http:// or https:// URL"},
    {"[type.a]\nhandler = noop\n[type.a]\nhandler = noop\n", 3, "[type.a] duplicate section"},
    {"[type.a b]\nhandler = noop\n", 1, "[type.a b] bad type name"},
    {"[type.a/b]\n", 1, "bad type name"},
    {"[type.]\n", 1, "[type.] bad type name"},
    {"[type.nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn]\n", 1,
     "bad type name: expected 1..64"},
    {"[type.a]\nhandler = noop\non_complete = ftp://x\n", 3,
     "on_complete: expected an http:// or https:// URL or exec:COMMAND"},
    {"[type.a]\nhandler = noop\non_abort = exec:'x\n", 3, "on_abort: exec: unterminated ' quote"},
    {"[type.a]\nhandler = noop\non_abort = exec:\n", 3, "on_abort: exec: empty command"},
    /* command splitting */
    {"[type.a]\nhandler = exec\ncommand = /bin/echo 'abc\n", 3,
     "[type.a] command: unterminated ' quote"},
    {"[type.a]\nhandler = exec\ncommand = /bin/echo \"abc\n", 3, "unterminated \" quote"},
    {"[type.a]\nhandler = exec\ncommand = /bin/echo \"a\\\"\n", 3, "unterminated \" quote"},
    {"[type.a]\nhandler = exec\ncommand = /bin/echo a\\\n", 3, "backslash at the end"},
    {"[type.a]\nhandler = exec\ncommand =\n", 3, "command: empty command"},
    {"[type.a]\nhandler = exec\ncommand = /bin/sh -c 'a ; b'\n", 3, "unterminated ' quote"},
    /* [store], [server] strings, [redis], [callbacks] */
    {"[store]\ndurability = fast\n", 2, "durability: expected full or normal, got \"fast\""},
    {"[store]\npath =\n", 2, "path: expected a path"},
    {"[store]\nretention = 1w\n", 2, "retention: expected a duration"},
    {"[store]\nretention = -1\n", 2, "retention: expected a duration"},
    {"[server]\nlisten = 127.0.0.1\n", 2, "listen: expected HOST:PORT"},
    {"[server]\nlisten = 127.0.0.1:65536\n", 2, "listen: expected HOST:PORT"},
    {"[server]\nlisten = example.com:80\n", 2, "listen: expected HOST:PORT"},
    {"[server]\nlisten = ::1:80\n", 2, "listen: expected HOST:PORT"},
    {"[server]\nunix =\n", 2, "unix: expected a socket path of 1..107 bytes"},
    {"[server]\nunix = /ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
     "tttttttttttttttttttttttttttttttttttttttttttttttttttttttttt.sock\n", 2,
     "unix: expected a socket path"},
    {"[redis]\nurl = http://127.0.0.1:6379\n", 2, "url: expected redis://[:PASSWORD@]HOST[:PORT][/DB] or unix:/PATH"},
    {"[callbacks]\nallow = http://a/,,http://b/\n", 2, "allow: empty entry in the list"},
    {"[callbacks]\nallow = http://a/,\n", 2, "allow: empty entry in the list"},
    {"[callbacks]\nallow = http://a b/\n", 2, "each entry must be"},
    /* URLs are read by libcurl's parser */
    {"[type.a]\nhandler = http\nurl = http://h:8x/\n", 3, "url: expected an http:// or https:// "
     "URL (Port number was not a decimal number between 0 and 65535), got \"http://h:8x/\""},
    {"[type.a]\nhandler = http\nurl = http://u:p@h/\n", 3,
     "url: expected an http:// or https:// URL (user info (user:password@) is not allowed)"},
    {"[type.a]\nhandler = noop\non_complete = http://127.0.0.1:9@evil.example/\n", 3,
     "on_complete: expected an http:// or https:// URL or exec:COMMAND (user info"},
    {"[type.a]\nhandler = noop\non_abort = gopher://h/\n", 3,
     "on_abort: expected an http:// or https:// URL or exec:COMMAND (the scheme must be http or https)"},
    /* the environment and credentials of exec children */
    {"[type.a]\nhandler = noop\nenv = A\n", 3, "[type.a] env: expected NAME=value, got \"A\""},
    {"[type.a]\nhandler = noop\nenv = A=1, =2\n", 3, "env: bad variable name: expected A-Z a-z 0-9 _"},
    {"[type.a]\nhandler = noop\nenv = 1A=x\n", 3, "env: bad variable name"},
    {"[type.a]\nhandler = noop\nenv = A-B=x\n", 3, "env: bad variable name"},
    {"[type.a]\nhandler = noop\nenv = FLING_JOB_ID=3\n", 3,
     "env: FLING_* variables are the job's own and cannot be set or passed, got \"FLING_JOB_ID=3\""},
    {"[type.a]\nhandler = noop\nenv = A=1,,B=2\n", 3, "env: empty entry in the list"},
    {"[type.a]\nhandler = noop\nenv_pass = HOME, FLING_TOKEN\n", 3, "env_pass: FLING_* variables"},
    {"[type.a]\nhandler = noop\nenv_pass = A=B\n", 3, "env_pass: bad variable name"},
    {"[type.a]\nhandler = noop\nuser = no-such-user-fl\n", 3,
     "[type.a] user: unknown user, got \"no-such-user-fl\""},
    {"[type.a]\nhandler = noop\nuser =\n", 3, "[type.a] user: unknown user"},
    {"[type.a]\nhandler = noop\ngroup = no-such-group-fl\n", 3, "[type.a] group: unknown group"},
    {"[type.a]\nhandler = noop\nschedule = * * *\n", 3, "[type.a] schedule: expected 5 or 6 fields, got 3"},
    {"[type.a]\nhandler = noop\nschedule = 61 * * * *\n", 3, "schedule: bad minute field \"61\""},
    {"[type.a]\nhandler = noop\nschedule_tz = Nowhere/City\n", 3,
     "[type.a] schedule_tz: unknown time zone (no zone file /usr/share/zoneinfo/Nowhere/City: No such file "
     "or directory), got \"Nowhere/City\""},
    {"[type.a]\nhandler = noop\nschedule_tz = ../etc/passwd\n", 3,
     "[type.a] schedule_tz: unknown time zone (expected a name such as Europe/Berlin)"},
    {"[type.a]\nhandler = noop\nschedule_tz = zone.tab\n", 3,
     "[type.a] schedule_tz: bad zone file: not a TZif file, got \"zone.tab\""},
    {"[type.a]\nhandler = noop\nschedule_tz = right/UTC\n", 3,
     "schedule_tz: bad zone file: leap-second zone files are not supported"},
    {"[type.a]\nhandler = noop\ncallback_payload = yes\n", 3,
     "[type.a] callback_payload: expected true or false, got \"yes\""},
    /* syntax */
    {"[server]\nnoequals\n", 2, "expected [section] or key = value, got \"noequals\""},
    {"[server\nlisten = 127.0.0.1:1\n", 1, "expected [section] or key = value, got \"[server\""},
    {"[server] x\n", 1, "text after [server]"},
    {"[server\t;]\n", 1, "expected [section] or key = value"},
    /* the first bad line is the one reported */
    {"[server]\nbacklog = 0\nlisen = 1\nnoequals\n", 2, "backlog"},
    {"[server]\nlisen = 1\nbacklog = 0\n", 2, "lisen"},
    {"[server]\nnoequals\nbacklog = 0\n", 2, "expected [section] or key = value"},
};

static void test_bad_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        fl_config c;
        char err[ERR_LEN], path[PATH_LEN], prefix[PATH_LEN + 16];
        int rc = load_text(&c, bad_files[i].text, err, path);
        snprintf(prefix, sizeof prefix, "%s:%d: ", path, bad_files[i].line);
        if (rc != -EINVAL || strncmp(err, prefix, strlen(prefix)) != 0 ||
            !strstr(err, bad_files[i].reason) || strchr(err, '\n'))
            fail_msg("case %zu: rc %d, err \"%s\", want \"%s...%s\"", i, rc, err, prefix,
                     bad_files[i].reason);
        fl_config_free(&c);
    }
}

static void test_secrets_not_echoed(void **state)
{
    (void)state;
    fl_config c;
    char err[ERR_LEN], path[PATH_LEN];
    assert_int_equal(load_text(&c, "[server]\ntoken = my secret\n", err, path), -EINVAL);
    assert_non_null(strstr(err, ":2: [server] token: expected visible ASCII"));
    assert_null(strstr(err, "my secret"));
    fl_config_free(&c);
    assert_int_equal(load_text(&c, "[callbacks]\nsecret = \xc3\xa9t\xc3\xa9\n", err, path),
                     -EINVAL);
    assert_non_null(strstr(err, ":2: [callbacks] secret: expected visible ASCII"));
    fl_config_free(&c);
}

static void test_nul_byte(void **state)
{
    (void)state;
    static const char text[] = "[server]\ntoken = a\0b\n";
    char path[PATH_LEN], err[ERR_LEN];
    write_conf_len(text, sizeof text - 1, path);
    fl_config c;
    assert_int_equal(fl_config_init(&c), 0);
    assert_int_equal(fl_config_load(&c, path, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, ":2: NUL byte"));
    fl_config_free(&c);
}

static void test_unreadable(void **state)
{
    (void)state;
    fl_config c;
    char err[ERR_LEN], path[PATH_LEN], want[PATH_LEN + 64];
    assert_int_equal(fl_config_init(&c), 0);
    snprintf(path, sizeof path, "%s/missing.conf", test_dir);
    assert_int_equal(fl_config_load(&c, path, err, sizeof err), -ENOENT);
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    assert_string_equal(err, want);
    assert_int_equal(c.n_types, 2); /* untouched: the defaults still stand */

    assert_int_equal(fl_config_load(&c, test_dir, err, sizeof err), -EISDIR);
    snprintf(want, sizeof want, "%s: Is a directory", test_dir);
    assert_string_equal(err, want);

    assert_int_equal(fl_config_load(&c, path, NULL, 0), -ENOENT); /* err is optional */
    fl_config_free(&c);
}

/* ---- --listen, find_type, callback_allowed ----------------------------------------------- */

static void test_set_listen(void **state)
{
    (void)state;
    static const struct {
        const char *in, *host;
        int port;
    } good[] = {
        {"127.0.0.1:0", "127.0.0.1", 0},
        {"0.0.0.0:65535", "0.0.0.0", 65535},
        {"localhost:8080", "localhost", 8080},
        {"[::1]:7878", "::1", 7878},
        {"[::]:1", "::", 1},
        {"127.0.0.1:007", "127.0.0.1", 7},
    };
    static const char *const bad[] = {
        "", "127.0.0.1", "127.0.0.1:", ":80", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:+1",
        "127.0.0.1:8 0", "127.0.0.1:80x", "256.1.1.1:80", "example.com:80", "::1:80", "[::1]80",
        "[::1:80", "[]:80", "[127.0.0.1]:80", "[::1]:", "localhost:99999999999999999999",
    };
    fl_config c;
    char err[ERR_LEN];
    assert_int_equal(fl_config_init(&c), 0);
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (fl_config_set_listen(&c, good[i].in, err, sizeof err) != 0)
            fail_msg("%s: %s", good[i].in, err);
        assert_string_equal(c.listen_host, good[i].host);
        assert_int_equal(c.listen_port, good[i].port);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char want[ERR_LEN];
        err[0] = '\0';
        if (fl_config_set_listen(&c, bad[i], err, sizeof err) != -EINVAL)
            fail_msg("\"%s\" accepted", bad[i]);
        snprintf(want, sizeof want, "got \"%s\"", bad[i]);
        assert_true(strncmp(err, "--listen: expected HOST:PORT", 28) == 0);
        assert_non_null(strstr(err, want));
        /* a refused override leaves the last good one */
        assert_string_equal(c.listen_host, "127.0.0.1");
        assert_int_equal(c.listen_port, 7);
    }
    fl_config_free(&c);
}

static void test_find_type(void **state)
{
    (void)state;
    fl_config c;
    assert_int_equal(fl_config_init(&c), 0);
    assert_non_null(fl_config_find_type(&c, "noop", 4));
    assert_non_null(fl_config_find_type(&c, "noopx", 4));
    assert_null(fl_config_find_type(&c, "noo", 3));
    assert_null(fl_config_find_type(&c, "NOOP", 4));
    assert_null(fl_config_find_type(&c, "", 0));
    assert_ptr_equal(fl_config_find_type(&c, "sleep/1", 5), &c.types[1]);
    fl_config_free(&c);
}

/* A bad allow entry is refused with its line and exactly this reason. */
static void test_allow_entries_refused(void **state)
{
    (void)state;
#define FORM "[callbacks] allow: each entry must be an http(s) URL scheme://host[:port][/path] "
    static const struct {
        const char *value, *reason;
    } cases[] = {
        {"http://127.0.0.1:", FORM "(\"http://127.0.0.1:\" names no port: there is no any-port form)"},
        {"http://a/, http://localhost:/x", FORM "(\"http://localhost:/x\" names no port: there is no "
                                           "any-port form)"},
        {"http://127.0.0.1:*", FORM "(\"http://127.0.0.1:*\": Port number was not a decimal number "
                               "between 0 and 65535)"},
        {"http://a/, ftp://b/", FORM "(\"ftp://b/\": the scheme must be http or https)"},
        {"http://u:p@h:80/", FORM "(\"http://u:p@h:80/\": user info (user:password@) is not allowed)"},
        {"http://h:80/x?y=1", FORM "(\"http://h:80/x?y=1\" has a ?query or #fragment)"},
        {"http://h:80/#top", FORM "(\"http://h:80/#top\" has a ?query or #fragment)"},
        {"127.0.0.1:80", FORM "(\"127.0.0.1:80\": Unsupported URL scheme)"},
    };
#undef FORM
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fl_config c;
        char text[256], err[ERR_LEN], path[PATH_LEN], want[ERR_LEN + PATH_LEN];
        snprintf(text, sizeof text, "[callbacks]\nallow = %s\n", cases[i].value);
        assert_int_equal(load_text(&c, text, err, path), -EINVAL);
        snprintf(want, sizeof want, "%s:2: %s, got \"%s\"", path, cases[i].reason, cases[i].value);
        assert_string_equal(err, want);
        fl_config_free(&c);
    }
}

static void test_callback_allowed(void **state)
{
    (void)state;
    fl_config c;
    char err[ERR_LEN], path[PATH_LEN];
    assert_int_equal(fl_config_init(&c), 0);
    const char *url = "http://127.0.0.1:9000/done";
    assert_int_equal(fl_config_callback_allowed(&c, url, strlen(url)), 0); /* empty list */
    fl_config_free(&c);

    assert_int_equal(load_text(&c, "[callbacks]\nallow = http://127.0.0.1:9003, "
                                   "https://H.example/hooks/, http://[::1]:8080/a/b\n",
                               err, path), 0);
    static const struct {
        const char *url;
        int allowed;
    } cases[] = {
        {"http://127.0.0.1:9003/done", 1},
        {"http://127.0.0.1:9003", 1},
        {"HTTP://127.0.0.1:9003/", 1},              /* the scheme's case does not matter */
        {"http://0x7f.1:9003/x", 1},                /* libcurl connects to 127.0.0.1 */
        {"http://127.0.0.1:09003/x", 1},
        {"http://127.0.0.1:9003@evil.example:80/x", 0},
        {"http://127.0.0.1:9003@evil.example/", 0},
        {"http://127.0.0.1:9003.evil.example/", 0},
        {"http://127.0.0.1:9003x", 0},
        {"http://127.0.0.1:9004/", 0},
        {"http://127.0.0.1/", 0},                   /* port 80 */
        {"http://127.0.0.1:/", 0},
        {"http://127.0.0.10:9003/", 0},
        {"http://user@127.0.0.1:9003/", 0},         /* user info, even for the right host */
        {"http://u:p@127.0.0.1:9003/", 0},
        {"http://:p@127.0.0.1:9003/", 0},
        {"https://127.0.0.1:9003/", 0},
        {"ftp://127.0.0.1:9003/", 0},
        {"https://h.example/hooks", 1},             /* the host's case does not matter */
        {"https://h.EXAMPLE:443/hooks/x?y=1", 1},
        {"https://h.example/hooks/", 1},
        {"https://h.example/hooksevil", 0},
        {"https://h.example/hooks/../admin", 0},    /* libcurl sends /admin */
        {"https://h.example/hooks/%2e%2e/admin", 0},
        {"https://h.example/hooks/%2F", 0},
        {"https://h.example/hooks\\..\\admin", 0},
        {"https://h.example/", 0},
        {"https://h.example:8443/hooks", 0},
        {"http://h.example/hooks", 0},
        {"http://[::1]:8080/a/b/c", 1},
        {"http://[0:0::1]:8080/a/b", 1},
        {"http://[::1]:8080/a", 0},
        {"http://[::1]:8080/a/bc", 0},
        {"http://127.0.0.1:9003/ x", 0},
        {"http://127.0.0.1:9003/\x01", 0},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (fl_config_callback_allowed(&c, cases[i].url, strlen(cases[i].url)) != cases[i].allowed)
            fail_msg("%s: want %d", cases[i].url, cases[i].allowed);
    /* only len bytes count, the URL need not be NUL-terminated there */
    assert_int_equal(fl_config_callback_allowed(&c, "http://127.0.0.1:90031", 21), 1);
    assert_int_equal(fl_config_callback_allowed(&c, "http://127.0.0.1:90031", 22), 0);
    assert_int_equal(fl_config_callback_allowed(&c, "http://127.0.0.1:9003\0@x", 24), 0);

    /* a delivery target: checked again and handed over as libcurl normalised it */
    char *out = NULL;
    const char *why = NULL;
    assert_int_equal(fl_config_callback_url(&c, "HTTP://0x7f.1:9003/a/../b", 1, &out, &why), 0);
    assert_string_equal(out, "http://127.0.0.1:9003/b");
    free(out);
    assert_int_equal(fl_config_callback_url(&c, "http://127.0.0.1:9/", 1, &out, &why), -EINVAL);
    assert_string_equal(why, "not allowed by [callbacks] allow");
    assert_int_equal(fl_config_callback_url(&c, "http://127.0.0.1:9/", 0, &out, &why), 0);
    assert_string_equal(out, "http://127.0.0.1:9/"); /* a type's hook needs no allow entry */
    free(out);
    assert_int_equal(fl_config_callback_url(&c, "http://a@127.0.0.1:9003/", 0, &out, &why), -EINVAL);
    assert_string_equal(why, "user info (user:password@) is not allowed");
    fl_config_free(&c);
}

/* The folder of the test's config files, as realpath gives it. */
static void real_test_dir(char out[PATH_LEN])
{
    char *d = realpath(test_dir, NULL);
    assert_non_null(d);
    snprintf(out, PATH_LEN, "%s", d);
    free(d);
}

/* Relative paths in a file are relative to its folder, whatever the working directory; the
 * default database too; absolute paths stay. */
static void test_relative_paths(void **state)
{
    (void)state;
    char dir[PATH_LEN], want[2 * PATH_LEN], err[ERR_LEN], path[PATH_LEN], cwd[PATH_LEN];
    real_test_dir(dir);
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir("/"), 0);
    fl_config c;
    int rc = load_text(&c, "[server]\nunix = run/fling.sock\nlog = ../flingd.log\n"
                           "[store]\npath = db/fling.db\n", err, path);
    assert_int_equal(chdir(cwd), 0);
    if (rc != 0)
        fail_msg("%s", err);
    snprintf(want, sizeof want, "%s/db/fling.db", dir);
    assert_string_equal(c.db_path, want);
    snprintf(want, sizeof want, "%s/run/fling.sock", dir);
    assert_string_equal(c.unix_path, want);
    snprintf(want, sizeof want, "%s/../flingd.log", dir);
    assert_string_equal(c.log_path, want);
    fl_config_free(&c);

    assert_int_equal(load_text(&c, "[store]\npath = /srv/fling.db\n[server]\nlog = /var/log/f.log\n",
                               err, path), 0);
    assert_string_equal(c.db_path, "/srv/fling.db");
    assert_string_equal(c.log_path, "/var/log/f.log");
    fl_config_free(&c);

    assert_int_equal(load_text(&c, "[workers]\ncount = 2\n", err, path), 0);
    snprintf(want, sizeof want, "%s/var/fling.db", dir);
    assert_string_equal(c.db_path, want);
    fl_config_free(&c);

    /* a socket path that fits as written but not once resolved is refused */
    char text[256], name[101];
    memset(name, 's', 100);
    name[100] = '\0';
    snprintf(text, sizeof text, "[server]\nunix = %s\n", name);
    assert_int_equal(load_text(&c, text, err, path), -EINVAL);
    assert_non_null(strstr(err, "[server] unix: "));
    assert_non_null(strstr(err, "is longer than 107 bytes"));
    fl_config_free(&c);
}

/* Prints c into a string (caller frees). */
static char *print_config(const fl_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    fl_config_print(c, f);
    assert_int_equal(fclose(f), 0);
    return buf;
}

/* --print-config: every key, secrets hidden, and text that loads back to the same config. */
static void test_print(void **state)
{
    (void)state;
    fl_config c;
    char err[ERR_LEN], path[PATH_LEN];
    if (load_text(&c, every_key, err, path) != 0)
        fail_msg("%s", err);
    char *first = print_config(&c);
    fl_config_free(&c);
    assert_null(strstr(first, "s3cr3t-T0ken"));
    assert_null(strstr(first, "hmac-key"));
    assert_non_null(strstr(first, "\ntoken = (set)\n"));
    assert_non_null(strstr(first, "\nsecret = (set)\n"));
    assert_non_null(strstr(first, "[server]\nlisten = [::1]:0\n"));
    assert_non_null(strstr(first, "\nlog_format = json\n"));
    assert_non_null(strstr(first, "\nidle_timeout = 0.25\n"));
    assert_non_null(strstr(first, "\ncommand = /usr/bin/env mailer --to 'a b'\n"));
    assert_non_null(strstr(first, "\nallow = http://127.0.0.1:9000, https://Hooks.example.com:443, "
                                  "http://[::1]:9/x/y\n"));
    assert_non_null(strstr(first, "\n[type.nap]\nhandler = sleep\n"));
    if (load_text(&c, first, err, path) != 0)
        fail_msg("%s in:\n%s", err, first);
    char *second = print_config(&c);
    assert_string_equal(second, first);
    fl_config_free(&c);
    free(first);
    free(second);

    /* a quote inside a command word, and a Redis password, survive as written / stay hidden */
    if (load_text(&c, "[redis]\nurl = redis://:pw-123@127.0.0.1:6390/1\n[type.q]\nhandler = exec\n"
                      "command = /bin/echo \"it's\" ''\n", err, path) != 0)
        fail_msg("%s", err);
    first = print_config(&c);
    assert_null(strstr(first, "pw-123"));
    assert_non_null(strstr(first, "\nurl = (set)"));
    assert_non_null(strstr(first, "\ncommand = /bin/echo 'it'\\''s' ''\n"));
    char **argv;
    const char *why;
    const char *cmd = strstr(first, "\ncommand = ") + strlen("\ncommand = ");
    char *line = strndup(cmd, strcspn(cmd, "\n"));
    assert_int_equal(fl_config_split(line, &argv, &why), 0);
    assert_argv(argv, (const char *const[]){ "/bin/echo", "it's", "", NULL });
    free(argv);
    free(line);
    free(first);
    fl_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_no_types_and_last_key_wins),
        cmocka_unit_test(test_schedule_zones),
        cmocka_unit_test(test_docs_reload_marks),
        cmocka_unit_test(test_inline_comments),
        cmocka_unit_test(test_long_type_name),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_secrets_not_echoed),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_unreadable),
        cmocka_unit_test(test_set_listen),
        cmocka_unit_test(test_find_type),
        cmocka_unit_test(test_allow_entries_refused),
        cmocka_unit_test(test_callback_allowed),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_print),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
