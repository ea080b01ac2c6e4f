/* test_receiver.c — tests/receiver.c over real client sockets on 127.0.0.1: keep-alive and
 * Connection: close, a second connection while the first idles, a programmed status sequence,
 * a late answer, header lookup, flr_wait's time-out and a malformed request refused. Each test
 * has its own receiver. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "receiver.h"

#define REPLY_MAX 1024
#define IO_MS 2000   /* bound on any one answer */

/* exchange sends req on fd and reads one answer into reply; returns its status (0 if none). */
static int exchange(int fd, const char *req, char reply[REPLY_MAX])
{
    assert_int_equal(flh_send_all(fd, req, strlen(req)), 0);
    return flh_read_reply(fd, reply, REPLY_MAX, IO_MS);
}

/* closed_by_peer: does fd read EOF within IO_MS? */
static int closed_by_peer(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char c;
    return poll(&p, 1, IO_MS) == 1 && recv(fd, &c, 1, 0) == 0;
}

static int start(void **state)
{
    *state = flr_start();
    return *state ? 0 : -1;
}

static int stop(void **state)
{
    flr_stop(*state);
    return 0;
}

static void url_names_the_loopback_port(void **state)
{
    flr_receiver *r = *state;
    char want[64];
    snprintf(want, sizeof want, "http://127.0.0.1:%d/hook", flr_port(r));
    char *a = flr_url(r, "hook"), *b = flr_url(r, "/hook");
    assert_string_equal(a, want);
    assert_string_equal(b, want);
    free(a);
    free(b);
}

static void keep_alive_serves_two_requests_on_one_connection(void **state)
{
    flr_receiver *r = *state;
    char reply[REPLY_MAX];
    int fd = flh_connect_tcp(flr_port(r));
    assert_true(fd >= 0);
    assert_int_equal(exchange(fd, "POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst", reply), 200);
    assert_non_null(strstr(reply, "\r\n\r\nreceived"));
    assert_null(strstr(reply, "Connection: close"));
    assert_int_equal(exchange(fd, "PUT /two?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", reply), 200);
    close(fd);
    assert_int_equal(flr_wait(r, 2, IO_MS), 0);
    const flr_request *q = flr_get(r, 0);
    assert_string_equal(q->method, "POST");
    assert_string_equal(q->path, "/one");
    assert_int_equal(q->body_len, 5);
    assert_string_equal(q->body, "first");
    assert_int_equal(q->status, 200);
    q = flr_get(r, 1);
    assert_string_equal(q->method, "PUT");
    assert_string_equal(q->path, "/two?x=1");
    assert_int_equal(q->body_len, 0);
    assert_true(q->at >= flr_get(r, 0)->at);
    assert_null(flr_get(r, 2));
}

/* The deadlock to avoid: libcurl opens a second connection while its first one idles. */
static void second_connection_while_the_first_idles(void **state)
{
    flr_receiver *r = *state;
    char reply[REPLY_MAX];
    int a = flh_connect_tcp(flr_port(r)), b = flh_connect_tcp(flr_port(r));
    assert_true(a >= 0 && b >= 0);
    assert_int_equal(exchange(a, "GET /a HTTP/1.1\r\n\r\n", reply), 200);
    assert_int_equal(exchange(b, "GET /b HTTP/1.1\r\n\r\n", reply), 200);
    assert_int_equal(exchange(a, "GET /a2 HTTP/1.1\r\n\r\n", reply), 200);
    close(a);
    close(b);
    assert_int_equal(flr_count(r), 3);
    assert_string_equal(flr_get(r, 1)->path, "/b");
}

static void statuses_fail_twice_then_accept(void **state)
{
    flr_receiver *r = *state;
    char reply[REPLY_MAX];
    assert_int_equal(flr_set_statuses(r, (const int[]){ 500, 500 }, 2, 200), 0);
    int fd = flh_connect_tcp(flr_port(r));
    const char *req = "POST /cb HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    assert_int_equal(exchange(fd, req, reply), 500);
    assert_int_equal(exchange(fd, req, reply), 500);
    assert_int_equal(exchange(fd, req, reply), 200);
    assert_int_equal(exchange(fd, req, reply), 200);
    close(fd);
    int want[] = { 500, 500, 200, 200 };
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(flr_get(r, i)->status, want[i]);
}

static void headers_are_found_in_any_case(void **state)
{
    flr_receiver *r = *state;
    char reply[REPLY_MAX];
    int fd = flh_connect_tcp(flr_port(r));
    assert_int_equal(exchange(fd, "POST /h HTTP/1.1\r\ncontent-type:application/json\r\n"
                                  "X-Fling-Signature:  sha256=ab12 \r\nContent-Length: 0\r\n\r\n", reply), 200);
    close(fd);
    const flr_request *q = flr_get(r, 0);
    assert_string_equal(flr_header(q, "Content-Type"), "application/json");
    assert_string_equal(flr_header(q, "x-fling-signature"), "sha256=ab12");
    assert_null(flr_header(q, "X-Missing"));
    assert_int_equal(q->n_headers, 3);
}

static void wait_times_out(void **state)
{
    flr_receiver *r = *state;
    double t0 = flh_now();
    assert_int_equal(flr_wait(r, 1, 150), -1);
    double took = flh_now() - t0;
    assert_true(took >= 0.14 && took < 1.0);
    assert_int_equal(flr_count(r), 0);
}

static void connection_close_is_honoured(void **state)
{
    flr_receiver *r = *state;
    char reply[REPLY_MAX];
    int fd = flh_connect_tcp(flr_port(r));
    assert_int_equal(exchange(fd, "DELETE /c HTTP/1.1\r\nConnection: close\r\n\r\n", reply), 200);
    assert_non_null(strstr(reply, "Connection: close\r\n"));
    assert_true(closed_by_peer(fd));
    close(fd);
    assert_int_equal(flr_count(r), 1);
}

static void delay_answers_late(void **state)
{
    flr_receiver *r = *state;
    char reply[REPLY_MAX];
    flr_set_delay(r, 0.3);
    int fd = flh_connect_tcp(flr_port(r));
    double t0 = flh_now();
    assert_int_equal(exchange(fd, "GET /slow HTTP/1.1\r\n\r\n", reply), 200);
    assert_true(flh_now() - t0 >= 0.29);
    close(fd);
}

static void malformed_request_is_refused_not_recorded(void **state)
{
    flr_receiver *r = *state;
    char reply[REPLY_MAX];
    int fd = flh_connect_tcp(flr_port(r));
    assert_int_equal(exchange(fd, "NONSENSE\r\nContent-Length: 1\r\n\r\n", reply), 400);
    assert_true(closed_by_peer(fd));
    close(fd);
    assert_int_equal(flr_count(r), 0);
}

#define RECEIVER_TEST(f) cmocka_unit_test_setup_teardown(f, start, stop)

int main(void)
{
    const struct CMUnitTest tests[] = {
        RECEIVER_TEST(url_names_the_loopback_port),
        RECEIVER_TEST(keep_alive_serves_two_requests_on_one_connection),
        RECEIVER_TEST(second_connection_while_the_first_idles),
        RECEIVER_TEST(statuses_fail_twice_then_accept),
        RECEIVER_TEST(headers_are_found_in_any_case),
        RECEIVER_TEST(wait_times_out),
        RECEIVER_TEST(connection_close_is_honoured),
        RECEIVER_TEST(delay_answers_late),
        RECEIVER_TEST(malformed_request_is_refused_not_recorded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
