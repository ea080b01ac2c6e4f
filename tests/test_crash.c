/* test_crash.c — ack means durable: kill -9 flingd while clients submit, restart it on the same
 * database, and every job that got a 202 is there. Also: SIGTERM stops it cleanly (exit 0). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fling.h"
#include "harness.h"

#define SUBMITTERS 4
#define MAX_IDS 200000

static flh_daemon D;
static long acked_ids[SUBMITTERS][MAX_IDS / SUBMITTERS];
static long n_acked[SUBMITTERS];
static atomic_int stop_submitting;

static void *submitter(void *arg)
{
    long k = (long)arg;
    fling_client *c = fling_client_new(D.url, NULL);
    fling_client_set_timeouts(c, 1000, 2000);
    while (!atomic_load(&stop_submitting) && n_acked[k] < MAX_IDS / SUBMITTERS) {
        fling_response r = { 0 };
        if (fling_submit(c, "t", "3600", 4, NULL, &r) == 0 && r.status == 202)
            acked_ids[k][n_acked[k]++] = strtol(r.id, NULL, 10);
        fling_response_clear(&r);
    }
    fling_client_free(c);
    return NULL;
}

static void kill9_keeps_every_acked_job(void **state)
{
    (void)state;
    assert_int_equal(flh_start(&D, NULL), 0);
    long total = 0;
    for (int round = 0; round < 3; round++) {
        memset(n_acked, 0, sizeof n_acked);
        atomic_store(&stop_submitting, 0);
        pthread_t th[SUBMITTERS];
        for (long k = 0; k < SUBMITTERS; k++)
            assert_int_equal(pthread_create(&th[k], NULL, submitter, (void *)k), 0);
        usleep(300000 + round * 100000);
        assert_true(WIFSIGNALED(flh_kill(&D, SIGKILL)));
        atomic_store(&stop_submitting, 1);
        for (int k = 0; k < SUBMITTERS; k++)
            pthread_join(th[k], NULL);
        assert_int_equal(flh_restart(&D), 0);
        fling_client *c = fling_client_new(D.url, NULL);
        long checked = 0, lost = 0;
        for (int k = 0; k < SUBMITTERS; k++) {
            for (long i = 0; i < n_acked[k]; i++) {
                char path[64];
                snprintf(path, sizeof path, "/v1/jobs/%ld", acked_ids[k][i]);
                fling_response r = { 0 };
                if (fling_request(c, "GET", path, NULL, 0, &r) != 0) {
                    if (lost++ < 10)
                        fprintf(stderr, "round %d: acked job %ld lost (status %d)\n", round, acked_ids[k][i], r.status);
                }
                fling_response_clear(&r);
                checked++;
            }
        }
        fling_client_free(c);
        printf("round %d: %ld acked jobs checked after kill -9, %ld lost\n", round, checked, lost);
        assert_true(checked > 0);
        assert_int_equal(lost, 0);
        total += checked;
    }
    assert_true(flh_count_jobs(&D, "t", NULL) >= total);
}

static void sigterm_exits_zero(void **state)
{
    (void)state;
    double t0 = flh_now();
    assert_int_equal(flh_stop(&D), 0);   /* SIGTERM, then exit status 0 */
    assert_true(flh_now() - t0 < 5);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kill9_keeps_every_acked_job),
        cmocka_unit_test(sigterm_exits_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
