/* test_cron.c — the cron parser and its slot search (daemon/cron.c): fields, lists, ranges,
 * steps, the day-of-month/day-of-week rule, month and year roll-over, a day that never comes,
 * both directions, six fields, and a DST change (when the zone data is installed). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cron.h"

/* Seconds since the epoch of a UTC date (TZ is UTC in these tests unless set otherwise). */
static int64_t at(int y, int mon, int d, int h, int mi, int s)
{
    struct tm tm = { .tm_year = y - 1900, .tm_mon = mon - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
                     .tm_sec = s, .tm_isdst = -1 };
    return (int64_t)mktime(&tm);
}

static fl_cron parse_ok(const char *expr)
{
    fl_cron c;
    char err[128] = "";
    if (fl_cron_parse(expr, &c, err, sizeof err) != 0)
        fail_msg("\"%s\": %s", expr, err);
    return c;
}

static void use_zone(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

/* Runs the rest of a test in Europe/Berlin, or skips it where tzdata lacks that zone. */
static void use_berlin_or_skip(void)
{
    if (access("/usr/share/zoneinfo/Europe/Berlin", R_OK) != 0)
        skip();
    use_zone("Europe/Berlin");
}

static void test_parse_fields(void **state)
{
    (void)state;
    use_zone("UTC");
    fl_cron c = parse_ok("*/15 0-6/2 1,15 * *");
    assert_int_equal(c.second, 1);
    assert_true(c.minute == ((1ull << 0) | (1ull << 15) | (1ull << 30) | (1ull << 45)));
    assert_int_equal(c.hour, (1u << 0) | (1u << 2) | (1u << 4) | (1u << 6));
    assert_int_equal(c.dom, (1u << 1) | (1u << 15));
    assert_int_equal(c.month, 0x1ffe);
    assert_int_equal(c.dow, 0x7f);
    assert_false(c.dom_any);
    assert_true(c.dow_any);
    c = parse_ok("  5/20  *  *  *  7 ");
    assert_true(c.minute == ((1ull << 5) | (1ull << 25) | (1ull << 45)));
    assert_int_equal(c.dow, 1);   /* 7 is Sunday, as 0 */
    c = parse_ok("*/2 * * * * *");   /* six fields: seconds first */
    assert_true(c.second == 0x0555555555555555ull);
    assert_true(c.minute == (1ull << 60) - 1);
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "* * * *", "* * * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * 32 * *",
        "* * * 13 *", "* * * * 8", "5-1 * * * *", "*/0 * * * *", "1,,2 * * * *", "1, * * * *",
        "a * * * *", "* * * jan *", "-1 * * * *", "1-2-3 * * * *", "*/ * * * *", "1/2/3 * * * *",
        "99999999999 * * * *",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fl_cron c;
        char err[128] = "";
        if (fl_cron_parse(bad[i], &c, err, sizeof err) != -EINVAL || !err[0])
            fail_msg("\"%s\" accepted (err \"%s\")", bad[i], err);
    }
    fl_cron c;
    char err[128];
    assert_int_equal(fl_cron_parse("* 25 * * *", &c, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "bad hour field \"25\""));
}

static void test_next_and_prev(void **state)
{
    (void)state;
    use_zone("UTC");
    fl_cron c = parse_ok("30 9 * * 1-5");   /* 09:30 on weekdays */
    /* Friday 2026-12-04 10:00 -> Monday 2026-12-07 09:30 */
    assert_int_equal(fl_cron_next(&c, at(2026, 12, 4, 10, 0, 0)), at(2026, 12, 7, 9, 30, 0));
    assert_int_equal(fl_cron_next(&c, at(2026, 12, 7, 9, 29, 59)), at(2026, 12, 7, 9, 30, 0));
    assert_int_equal(fl_cron_next(&c, at(2026, 12, 7, 9, 30, 0)), at(2026, 12, 8, 9, 30, 0));   /* after, not at */
    assert_int_equal(fl_cron_prev(&c, at(2026, 12, 7, 9, 30, 0)), at(2026, 12, 7, 9, 30, 0));   /* at or before */
    assert_int_equal(fl_cron_prev(&c, at(2026, 12, 7, 9, 0, 0)), at(2026, 12, 4, 9, 30, 0));

    c = parse_ok("0 0 1 1 *");   /* new year */
    assert_int_equal(fl_cron_next(&c, at(2026, 12, 31, 23, 59, 59)), at(2027, 1, 1, 0, 0, 0));
    assert_int_equal(fl_cron_prev(&c, at(2026, 12, 31, 23, 59, 59)), at(2026, 1, 1, 0, 0, 0));

    c = parse_ok("0 12 29 2 *");   /* leap day */
    assert_int_equal(fl_cron_next(&c, at(2026, 3, 1, 0, 0, 0)), at(2028, 2, 29, 12, 0, 0));
    assert_int_equal(fl_cron_prev(&c, at(2026, 3, 1, 0, 0, 0)), at(2024, 2, 29, 12, 0, 0));

    c = parse_ok("0 0 30 2 *");   /* never */
    assert_int_equal(fl_cron_next(&c, at(2026, 1, 1, 0, 0, 0)), -1);
    assert_int_equal(fl_cron_prev(&c, at(2026, 1, 1, 0, 0, 0)), -1);

    /* both day fields restricted: the 13th or a Friday */
    c = parse_ok("0 0 13 * 5");
    assert_int_equal(fl_cron_next(&c, at(2026, 12, 1, 0, 0, 0)), at(2026, 12, 4, 0, 0, 0));   /* a Friday */
    assert_int_equal(fl_cron_next(&c, at(2026, 12, 11, 0, 0, 0)), at(2026, 12, 13, 0, 0, 0)); /* a Sunday */

    c = parse_ok("*/20 * * * * *");   /* every 20 seconds */
    assert_int_equal(fl_cron_next(&c, at(2026, 12, 31, 23, 59, 41)), at(2027, 1, 1, 0, 0, 0));
    assert_int_equal(fl_cron_prev(&c, at(2026, 12, 31, 23, 59, 59)), at(2026, 12, 31, 23, 59, 40));
    c = parse_ok("* * * * * *");
    assert_int_equal(fl_cron_next(&c, at(2026, 6, 1, 0, 0, 0)), at(2026, 6, 1, 0, 0, 1));
}

/* Europe/Berlin: 2026-03-29 02:00 does not exist (clocks go to 03:00); a 02:30 job runs at
 * 03:30 on other days only, and an hourly job's slots stay one hour apart in real time. */
static void test_dst(void **state)
{
    (void)state;
    use_berlin_or_skip();
    fl_cron c = parse_ok("0 * * * *");
    int64_t t = at(2026, 3, 29, 1, 0, 0);
    assert_int_equal(fl_cron_next(&c, t), t + 3600);   /* 01:00 -> 03:00 local, one real hour */
    c = parse_ok("30 2 * * *");
    assert_int_equal(fl_cron_next(&c, at(2026, 3, 28, 12, 0, 0)), at(2026, 3, 30, 2, 30, 0));
    use_zone("UTC");
}

/* schedule_tz = UTC: slots of UTC whatever the daemon's zone, in summer and in winter. */
static void test_utc_slots(void **state)
{
    (void)state;
    use_berlin_or_skip();
    fl_cron c = parse_ok("0 12 * * *");
    assert_false(c.utc);
    assert_int_equal(fl_cron_next(&c, at(2026, 6, 1, 0, 0, 0)), at(2026, 6, 1, 12, 0, 0));
    c.utc = 1;
    assert_int_equal(fl_cron_next(&c, at(2026, 6, 1, 0, 0, 0)), at(2026, 6, 1, 14, 0, 0));   /* CEST */
    assert_int_equal(fl_cron_next(&c, at(2026, 12, 1, 0, 0, 0)), at(2026, 12, 1, 13, 0, 0)); /* CET */
    assert_int_equal(fl_cron_prev(&c, at(2026, 12, 1, 12, 59, 59)), at(2026, 11, 30, 13, 0, 0));
    assert_false(parse_ok("0 12 * * *").utc);   /* a new parse starts in local time */
}

static void expect_zone_error(const char *zone, const char *want)
{
    int utc = -1;
    char err[160] = "";
    if (fl_cron_zone(zone, &utc, err, sizeof err) != -EINVAL || !strstr(err, want))
        fail_msg("zone \"%s\": err \"%s\", want \"%s\"", zone, err, want);
}

static void test_zone_names(void **state)
{
    (void)state;
    use_berlin_or_skip();
    const char *locals[] = { "Europe/Berlin", ":Europe/Berlin", "/usr/share/zoneinfo/Europe/Berlin" };
    for (size_t i = 0; i < sizeof locals / sizeof *locals; i++) {
        use_zone(locals[i]);
        int utc = -1;
        char err[160] = "";
        assert_int_equal(fl_cron_zone("Europe/Berlin", &utc, err, sizeof err), 0);
        assert_int_equal(utc, 0);
        assert_int_equal(fl_cron_zone("UTC", &utc, err, sizeof err), 0);
        assert_int_equal(utc, 1);
        assert_int_equal(fl_cron_zone("Etc/UTC", &utc, err, sizeof err), 0);
        assert_int_equal(utc, 1);
    }
    expect_zone_error("America/New_York",
                      "only UTC and the daemon's local zone (Europe/Berlin) are supported");
    const char *unknown[] = { "", "Nowhere/City", "Europe", "../../../etc/passwd", "/etc/passwd",
                              "Europe/Berlin " };
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
        expect_zone_error(unknown[i], "unknown time zone");
    use_zone("UTC");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fields),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_next_and_prev),
        cmocka_unit_test(test_dst),
        cmocka_unit_test(test_utc_slots),
        cmocka_unit_test(test_zone_names),
    };
    return cmocka_run_group_tests_name("cron", tests, NULL, NULL);
}
