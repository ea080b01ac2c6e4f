/* test_nginx.c — flingd behind a real nginx (reverse proxy on a free 127.0.0.1 port, its own
 * prefix, logs and temp dirs in a temp dir, stopped by its PID: flh_nginx_start). 500 fire-and-forget requests
 * (the whole request written, then close at once) go through nginx. With the configuration the
 * README documents (proxy_ignore_client_abort on, ...) every one must be enqueued, and flingd
 * sees nginx read every 202 (status bit 1 clear). With nginx's defaults the upstream request is
 * dropped when the client has gone; how many arrived is printed as a fact. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fling.h"
#include "harness.h"

#define FIRES 500

/* The proxy settings the README's "Behind nginx" section documents. */
static const char *documented =
    "            proxy_http_version 1.1;\n"
    "            proxy_set_header Connection \"\";\n"
    "            proxy_request_buffering on;\n"
    "            proxy_ignore_client_abort on;\n"
    "            proxy_connect_timeout 5s;\n"
    "            proxy_send_timeout 30s;\n"
    "            proxy_read_timeout 30s;\n";

static flh_daemon D;
static flh_nginx N;

/* access_log counts the lines nginx logged so far, and those with status 499. */
static long access_log(const flh_nginx *n, long *with_499)
{
    FILE *f = fopen(n->access, "r");
    long lines = 0;
    *with_499 = 0;
    if (!f)
        return 0;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        lines++;
        *with_499 += strstr(line, "\" 499 ") != NULL;
    }
    fclose(f);
    return lines;
}

/* show_logs prints what nginx did not answer 202 and the end of its error log. */
static void show_logs(const flh_nginx *n)
{
    char cmd[320];
    snprintf(cmd, sizeof cmd, "grep -v '\" 202 ' '%s' | head -n 5; grep -v 'closed keepalive' '%s/error.log' | tail -n 20",
             n->access, n->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "(no nginx logs)\n");
}

/* fire_through sends FIRES jobs of type through nginx, each on its own connection closed as
 * soon as the request is written; then waits until nginx has logged every one. Returns how
 * many fling_fire calls succeeded. */
static long fire_through(const flh_nginx *n, const char *type, long *logged, long *with_499)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", n->port);
    fling_client *c = fling_client_new(url, NULL);
    assert_non_null(c);
    long sent = 0;
    for (int i = 0; i < FIRES; i++)
        sent += fling_fire(c, type, "fired", 5, NULL) == 0;
    fling_client_free(c);
    for (double end = flh_now() + 30; (*logged = access_log(n, with_499)) < sent && flh_now() < end;)
        usleep(50000);
    return sent;
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return flh_start(&D, "[type.documented]\nhandler = noop\n[type.defaults]\nhandler = noop\n");
}

static int teardown(void **state)
{
    (void)state;
    flh_nginx_stop(&N);
    return flh_stop(&D);
}

static int stop_nginx(void **state)
{
    (void)state;
    flh_nginx_stop(&N);
    return 0;
}

static void documented_config_enqueues_every_fire(void **state)
{
    (void)state;
    assert_int_equal(flh_nginx_start(&N, D.port, "", "", documented), 0);
    long logged, with_499;
    long sent = fire_through(&N, "documented", &logged, &with_499);
    long aborted = -1;
    long jobs = flh_wait_count(&D, "documented", FIRES, 30000, &aborted);
    printf("documented config: %ld fired through nginx, %ld logged (%ld with 499), %ld jobs in flingd, "
           "%ld with status bit 1\n", sent, logged, with_499, jobs, aborted);
    if (jobs != FIRES)
        show_logs(&N);
    assert_int_equal(sent, FIRES);
    assert_int_equal(jobs, FIRES);
    /* nginx, not the client, is flingd's peer: it read every 202. */
    assert_int_equal(aborted, 0);
}

static void defaults_lose_fires(void **state)
{
    (void)state;
    assert_int_equal(flh_nginx_start(&N, D.port, "", "", ""), 0);
    long logged, with_499;
    long sent = fire_through(&N, "defaults", &logged, &with_499);
    /* Whatever nginx passed on is committed within a moment; wait a little for stragglers. */
    long jobs = flh_wait_count(&D, "defaults", FIRES, 2000, NULL);
    printf("nginx defaults: %ld fired through nginx, %ld logged (%ld with 499), %ld jobs in flingd (%ld lost)\n",
           sent, logged, with_499, jobs, FIRES - jobs);
    assert_int_equal(sent, FIRES);
    assert_true(jobs >= 0 && jobs <= FIRES);
}

int main(void)
{
    if (access(FLH_NGINX, X_OK) != 0) {
        printf("test_nginx: skipped: %s is missing (scripts/install-deps --test installs nginx-light)\n", FLH_NGINX);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(documented_config_enqueues_every_fire, stop_nginx),
        cmocka_unit_test_teardown(defaults_lose_fires, stop_nginx),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
