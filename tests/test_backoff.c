/* test_backoff.c — daemon/backoff.c: doubling, the cap, the jitter's range, bounds and no
 * overflow, for the policies its users pass (retries with equal jitter, the mirror's plain
 * doubling). */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "backoff.h"

static void doubles_then_caps(void **state)
{
    (void)state;
    assert_true(fl_backoff_delay(1, 3600, 1, 0, NULL) == 1.0);
    assert_true(fl_backoff_delay(1, 3600, 2, 0, NULL) == 2.0);
    assert_true(fl_backoff_delay(1, 3600, 3, 0, NULL) == 4.0);
    assert_true(fl_backoff_delay(1, 3600, 11, 0, NULL) == 1024.0);
    assert_true(fl_backoff_delay(1, 3600, 13, 0, NULL) == 3600.0);
    assert_true(fl_backoff_delay(1, 3600, 30, 0, NULL) == 3600.0);
    /* The mirror's reconnect: 0.1 s doubling to 5 s. */
    double want[] = { 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0 };
    for (int i = 0; i < 8; i++)
        assert_true(fabs(fl_backoff_delay(0.1, 5.0, i + 1, 0, NULL) - want[i]) < 1e-12);
}

static void attempt_below_one_is_the_first(void **state)
{
    (void)state;
    assert_true(fl_backoff_delay(2, 10, 0, 0, NULL) == 2.0);
    assert_true(fl_backoff_delay(2, 10, -5, 0, NULL) == 2.0);
    assert_true(fl_backoff_delay(0, 10, 3, 0.5, NULL) == 0.0);
    assert_true(fl_backoff_delay(-1, 10, 3, 0, NULL) == 0.0);
}

static void no_overflow_at_huge_attempts(void **state)
{
    (void)state;
    uint64_t rng = 1;
    assert_true(fl_backoff_delay(1, 1e308, 1000, 0, NULL) == ldexp(1, 999));
    int attempts[] = { 1000, 1100, 100000, INT32_MAX };
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
        assert_true(fl_backoff_delay(1, 3600, attempts[i], 0, NULL) == 3600.0);
        double d = fl_backoff_delay(1, 3600, attempts[i], 0.5, &rng);
        assert_true(d >= 1800.0 && d < 3600.0);
    }
    /* Doubling past DBL_MAX would be inf: the cap still holds. */
    for (size_t i = 1; i < sizeof attempts / sizeof attempts[0]; i++) {
        double d = fl_backoff_delay(1, 1e308, attempts[i], 0.5, &rng);
        assert_true(isfinite(d) && d >= 0.5e308 && d < 1e308);
    }
}

/* Equal jitter (0.5): every delay in [step/2, step), and the draws cover that range. */
static void equal_jitter_range(void **state)
{
    (void)state;
    uint64_t rng = fl_backoff_seed();
    for (int attempt = 1; attempt < 20; attempt++) {
        double step = fmin(0.5 * (double)(1 << (attempt - 1)), 60);
        double lo = step, hi = 0;
        for (int i = 0; i < 2000; i++) {
            double d = fl_backoff_delay(0.5, 60, attempt, 0.5, &rng);
            assert_true(d >= step / 2 && d < step);
            lo = fmin(lo, d);
            hi = fmax(hi, d);
        }
        assert_true(lo < step * 0.55 && hi > step * 0.95);   /* spread, not a constant */
    }
}

static void jitter_fraction_bounds(void **state)
{
    (void)state;
    uint64_t rng = 42;
    for (int i = 0; i < 1000; i++) {
        double d = fl_backoff_delay(8, 100, 1, 0.25, &rng);
        assert_true(d >= 6.0 && d < 8.0);
        d = fl_backoff_delay(8, 100, 1, 1.0, &rng);
        assert_true(d >= 0.0 && d < 8.0);
        d = fl_backoff_delay(8, 100, 1, 7.0, &rng);   /* more than 1 counts as 1 */
        assert_true(d >= 0.0 && d < 8.0);
    }
    assert_true(fl_backoff_delay(8, 100, 1, 0.5, NULL) == 8.0);   /* no random source: no jitter */
}

static void same_seed_same_delays(void **state)
{
    (void)state;
    uint64_t a = 7, b = 7;
    for (int i = 1; i < 50; i++)
        assert_true(fl_backoff_delay(1, 3600, i, 0.5, &a) == fl_backoff_delay(1, 3600, i, 0.5, &b));
    assert_true(a == b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(doubles_then_caps),
        cmocka_unit_test(attempt_below_one_is_the_first),
        cmocka_unit_test(no_overflow_at_huge_attempts),
        cmocka_unit_test(equal_jitter_range),
        cmocka_unit_test(jitter_fraction_bounds),
        cmocka_unit_test(same_seed_same_delays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
