/* test_sched.c — the scheduler's pure parts: exponential back-off with equal jitter. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "sched.h"

static void backoff_doubles_then_caps(void **state)
{
    (void)state;
    /* r01 = 0 gives the fixed half, r01 -> 1 the whole delay. */
    assert_true(fl_sched_backoff(1, 3600, 1, 0.0) == 0.5);
    assert_true(fl_sched_backoff(1, 3600, 2, 0.0) == 1.0);
    assert_true(fl_sched_backoff(1, 3600, 3, 0.0) == 2.0);
    assert_true(fl_sched_backoff(1, 3600, 11, 0.0) == 512.0);
    assert_true(fl_sched_backoff(1, 3600, 30, 0.0) == 1800.0);   /* capped at 3600, half fixed */
    assert_true(fl_sched_backoff(2, 10, 1, 0.5) == 1.5);
}

static void jitter_stays_within_half_to_whole(void **state)
{
    (void)state;
    for (int attempt = 1; attempt < 20; attempt++) {
        for (double r = 0; r < 1.0; r += 0.125) {
            double d = fl_sched_backoff(0.5, 60, attempt, r);
            double full = 0.5 * (double)(1 << (attempt - 1));
            if (full > 60)
                full = 60;
            assert_true(d >= full / 2 && d < full + 1e-9);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backoff_doubles_then_caps),
        cmocka_unit_test(jitter_stays_within_half_to_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
