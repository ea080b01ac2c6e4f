/* test_cron.c — the cron parser and its slot search (daemon/cron.c): fields, lists, ranges,
 * steps, the day-of-month/day-of-week rule, month and year roll-over, a day that never comes,
 * both directions, six fields; and time zones (daemon/tz.c) from tzdata's real TZif files:
 * offsets checked against glibc's localtime_r (the oracle, set through TZ in this one-thread
 * test) over three centuries and at every change, the POSIX footer rules far past the tables,
 * refused files and rules, and cron slots across DST in Europe/Berlin, America/New_York,
 * Asia/Kathmandu (+05:45) and Pacific/Chatham (+12:45/+13:45). */
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
#include "tz.h"

/* Seconds since the epoch of a UTC date. */
static int64_t at(int y, int mon, int d, int h, int mi, int s)
{
    struct tm tm = { .tm_year = y - 1900, .tm_mon = mon - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
                     .tm_sec = s };
    return (int64_t)timegm(&tm);
}

static fl_cron parse_ok(const char *expr)
{
    fl_cron c;
    char err[128] = "";
    if (fl_cron_parse(expr, &c, err, sizeof err) != 0)
        fail_msg("\"%s\": %s", expr, err);
    return c;
}

/* glibc's zone, the oracle: only this thread runs. */
static void use_zone(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static fl_tz *zone(const char *name)
{
    fl_tz *z = NULL;
    char err[256] = "";
    if (fl_tz_load(&z, name, err, sizeof err) != 0)
        fail_msg("zone %s: %s (tzdata comes with scripts/install-deps)", name, err);
    return z;
}

static fl_tz *rule(const char *r)
{
    fl_tz *z = NULL;
    char err[256] = "";
    if (fl_tz_rule(&z, r, err, sizeof err) != 0)
        fail_msg("rule %s: %s", r, err);
    return z;
}

/* The instant of a civil time of glibc's current zone (mktime's choice for a repeated time). */
static int64_t local_at(int y, int mon, int d, int h, int mi, int s, int isdst)
{
    struct tm tm = { .tm_year = y - 1900, .tm_mon = mon - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
                     .tm_sec = s, .tm_isdst = isdst };
    return (int64_t)mktime(&tm);
}

static long libc_offset(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    assert_non_null(localtime_r(&tt, &tm));
    return tm.tm_gmtoff;
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


/* expect_same_offsets compares z with glibc's zone tz from year `from` to `to`: at samples a
 * little over a day apart and, wherever glibc's offset changed between two samples, at the
 * exact second of the change (found by bisection) and the second before it. Returns the
 * number of changes seen. */
static int expect_same_offsets(const char *tz, const fl_tz *z, int from, int to)
{
    use_zone(tz);
    int changes = 0;
    int64_t end = at(to, 1, 1, 0, 0, 0), step = 86400 + 3 * 3600 + 17;
    for (int64_t t = at(from, 1, 1, 0, 0, 0), prev = t; t < end; prev = t, t += step) {
        if (fl_tz_offset(z, t) != libc_offset(t))
            fail_msg("%s at %lld: %d, glibc %ld", tz, (long long)t, fl_tz_offset(z, t), libc_offset(t));
        if (t == prev || libc_offset(prev) == libc_offset(t))
            continue;
        int64_t lo = prev, hi = t;   /* offset(lo) != offset(hi): find the first second of hi's */
        while (hi - lo > 1) {
            int64_t mid = lo + (hi - lo) / 2;
            *(libc_offset(mid) == libc_offset(lo) ? &lo : &hi) = mid;
        }
        if (fl_tz_offset(z, hi) != libc_offset(hi) || fl_tz_offset(z, lo) != libc_offset(lo))
            fail_msg("%s around %lld: %d/%d, glibc %ld/%ld", tz, (long long)hi, fl_tz_offset(z, lo),
                     fl_tz_offset(z, hi), libc_offset(lo), libc_offset(hi));
        changes++;
    }
    use_zone("UTC");
    return changes;
}

/* Real zones, from before their first transition (LMT) to long past their tables (footers). */
static void test_tz_files_match_libc(void **state)
{
    (void)state;
    static const char *const zones[] = {
        "Europe/Berlin", "America/New_York", "Asia/Kathmandu", "Pacific/Chatham", "Australia/Lord_Howe",
        "America/Sao_Paulo", "Africa/Casablanca", "Europe/Dublin", "Pacific/Apia", "America/St_Johns",
        "Antarctica/Troll", "Asia/Tehran", "Pacific/Kiritimati", "America/Nuuk", "UTC", "Etc/GMT+12",
    };
    for (size_t i = 0; i < sizeof zones / sizeof *zones; i++) {
        fl_tz *z = zone(zones[i]);
        int n = expect_same_offsets(zones[i], z, 1850, 2150);
        if (strcmp(zones[i], "Europe/Berlin") == 0)
            assert_true(n > 2 * 2150 - 2 * 1980);   /* two a year since 1980, past 2037 by the footer */
        fl_tz_free(z);
    }
}

/* POSIX rules alone, as footers and TZ spell them: northern and southern DST, quoted names,
 * minutes, negative and beyond-24 h change times, Jn and n dates, DST all year, no DST. */
static void test_tz_rules_match_libc(void **state)
{
    (void)state;
    static const char *const rules[] = {
        "CET-1CEST,M3.5.0,M10.5.0/3", "EST5EDT,M3.2.0,M11.1.0", "NZST-12NZDT,M9.5.0,M4.1.0/3",
        "<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45", "<+0545>-5:45", "<-03>3<-02>,M3.5.0/-2,M10.5.0/-1",
        "IST-2IDT,M3.4.4/26,M10.5.0", "AAA3BBB,J60/2,J300/2", "AAA3BBB,59,300",
        "XXX-10:30YYY-11,M10.1.0,M4.1.0", "EST5EDT", "<-0330>3:30", "ABC+4:30:15",
    };
    for (size_t i = 0; i < sizeof rules / sizeof *rules; i++) {
        fl_tz *z = rule(rules[i]);
        expect_same_offsets(rules[i], z, 2020, 2060);
        expect_same_offsets(rules[i], z, 2390, 2410);
        fl_tz_free(z);
    }
    /* RFC 8536's DST all year (glibc reads it as a change at each new year: not an oracle here) */
    fl_tz *all_year = rule("EST5EDT,0/0,J365/25");
    for (int64_t t = at(2020, 1, 1, 0, 0, 0) - 7200; t < at(2030, 1, 1, 0, 0, 0); t += 3 * 3600 + 7)
        if (fl_tz_offset(all_year, t) != -4 * 3600)
            fail_msg("DST all year: %d at %lld", fl_tz_offset(all_year, t), (long long)t);
    fl_tz_free(all_year);
    static const char *const bad[] = {
        "", "AB1", "CET", "CET-1CEST,M3.5.0", "CET-1CEST,M13.5.0,M10.5.0", "CET-1CEST,M3.6.0,M10.5.0",
        "CET-1CEST,M3.5.7,M10.5.0", "CET-1CEST,J0,J10", "CET-1CEST,366,10", "CET-1CEST,M3.5.0/168,M10.5.0",
        "CET-25", "CET-1:60", "<AB>1", "<ABC1", "CET-1CEST,M3.5.0,M10.5.0x", "CET-1CEST,M3.5.0,,M10.5.0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fl_tz *z = NULL;
        char err[256] = "";
        if (fl_tz_rule(&z, bad[i], err, sizeof err) != -EINVAL || !strstr(err, "bad TZ rule") || z)
            fail_msg("rule \"%s\" accepted (err \"%s\")", bad[i], err);
    }
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static unsigned char buf[256 * 1024];
    *len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return buf;
}

static void expect_bad_file(const unsigned char *data, size_t len, const char *want)
{
    fl_tz *z = NULL;
    char err[256] = "";
    if (fl_tz_parse(&z, data, len, err, sizeof err) != -EINVAL || !strstr(err, want) || z)
        fail_msg("%zu bytes: err \"%s\", want \"%s\"", len, err, want);
}

/* Every truncation of a real file is refused cleanly, and so are other damaged files. */
static void test_tz_bad_files(void **state)
{
    (void)state;
    size_t len;
    unsigned char *data = slurp("/usr/share/zoneinfo/America/New_York", &len);
    assert_true(len > 1000);
    for (size_t n = 0; n < len - 1; n++)
        expect_bad_file(data, n, "bad zone file");   /* the footer's closing newline is the last byte */
    fl_tz *z = NULL;
    char err[256];
    assert_int_equal(fl_tz_parse(&z, data, len, err, sizeof err), 0);
    fl_tz_free(z);

    unsigned char copy[256 * 1024];
    memcpy(copy, data, len);
    copy[4] = '\0';   /* version 1 */
    expect_bad_file(copy, len, "version 1");
    memcpy(copy, data, len);
    copy[0] = 'X';
    expect_bad_file(copy, len, "not a TZif file");
    memcpy(copy, data, len);
    memcpy(copy + len - 10, "\nXYZ\n", 5);   /* a footer that is no rule */
    expect_bad_file(copy, len - 5, "bad");

    data = slurp("/usr/share/zoneinfo/right/UTC", &len);
    expect_bad_file(data, len, "leap-second zone files are not supported");
}

static void expect_load_error(const char *name, const char *want)
{
    fl_tz *z = NULL;
    char err[256] = "";
    if (fl_tz_load(&z, name, err, sizeof err) != -EINVAL || !strstr(err, want) || z)
        fail_msg("zone \"%s\": err \"%s\", want \"%s\"", name, err, want);
}

static void test_tz_names(void **state)
{
    (void)state;
    const char *unknown[] = { "", "Nowhere/City", "../../../etc/passwd", "/etc/passwd", "Europe/Berlin ",
                              "Europe/../Europe/Berlin" };
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
        expect_load_error(unknown[i], "unknown time zone");
    expect_load_error("Europe", "unknown time zone");       /* a folder */
    expect_load_error("zone.tab", "not a TZif file");       /* a file that is no zone */

    /* flingd's own zone, as TZ or /etc/localtime say */
    static const struct { const char *tz, *name; int32_t summer; } locals[] = {
        { "Europe/Berlin", "Europe/Berlin", 7200 }, { ":Europe/Berlin", "Europe/Berlin", 7200 },
        { "/usr/share/zoneinfo/America/New_York", "America/New_York", -4 * 3600 },
        { "CET-1CEST,M3.5.0,M10.5.0/3", "CET-1CEST,M3.5.0,M10.5.0/3", 7200 }, { "", "UTC0", 0 },
    };
    for (size_t i = 0; i < sizeof locals / sizeof *locals; i++) {
        char name[256] = "", err[256] = "";
        setenv("TZ", locals[i].tz, 1);
        fl_tz *z = NULL;
        if (fl_tz_local(&z, name, sizeof name, err, sizeof err) != 0)
            fail_msg("TZ=%s: %s", locals[i].tz, err);
        assert_string_equal(name, locals[i].name);
        assert_int_equal(fl_tz_offset(z, at(2026, 7, 1, 0, 0, 0)), locals[i].summer);
        fl_tz_free(z);
    }
    char name[256], err[256];
    fl_tz *z = NULL;
    setenv("TZ", "Nowhere/City", 1);
    assert_int_equal(fl_tz_local(&z, name, sizeof name, err, sizeof err), -EINVAL);
    unsetenv("TZ");   /* /etc/localtime, compared with glibc's reading of it */
    tzset();
    assert_int_equal(fl_tz_local(&z, name, sizeof name, err, sizeof err), 0);
    assert_int_equal(fl_tz_offset(z, at(2026, 7, 1, 0, 0, 0)), libc_offset(at(2026, 7, 1, 0, 0, 0)));
    assert_int_equal(fl_tz_offset(z, at(2026, 1, 1, 0, 0, 0)), libc_offset(at(2026, 1, 1, 0, 0, 0)));
    fl_tz_free(z);
    use_zone("UTC");
}

/* The clock's view: the latest civil time shown, the first instant a civil time is shown. */
static void test_tz_civil(void **state)
{
    (void)state;
    fl_tz *z = zone("Europe/Berlin");
    int64_t jump = at(2026, 3, 29, 1, 0, 0);   /* 02:00 CET becomes 03:00 CEST */
    assert_int_equal(fl_tz_civil_max(z, jump - 1), at(2026, 3, 29, 1, 59, 59));
    assert_int_equal(fl_tz_civil_max(z, jump), at(2026, 3, 29, 3, 0, 0));
    assert_int_equal(fl_tz_first_at(z, at(2026, 3, 29, 1, 59, 59)), jump - 1);
    assert_int_equal(fl_tz_first_at(z, at(2026, 3, 29, 2, 0, 0)), jump);   /* skipped: the jump */
    assert_int_equal(fl_tz_first_at(z, at(2026, 3, 29, 2, 30, 0)), jump);
    assert_int_equal(fl_tz_first_at(z, at(2026, 3, 29, 3, 0, 0)), jump);
    assert_int_equal(fl_tz_first_at(z, at(2026, 3, 29, 3, 0, 1)), jump + 1);
    int64_t back = at(2026, 10, 25, 1, 0, 0);  /* 03:00 CEST becomes 02:00 CET */
    assert_int_equal(fl_tz_first_at(z, at(2026, 10, 25, 2, 30, 0)), back - 1800);   /* first pass */
    assert_int_equal(fl_tz_civil_max(z, back), at(2026, 10, 25, 2, 59, 59));        /* shows 02:00 again */
    assert_int_equal(fl_tz_civil_max(z, back + 3599), at(2026, 10, 25, 2, 59, 59));
    assert_int_equal(fl_tz_civil_max(z, back + 3600), at(2026, 10, 25, 3, 0, 0));
    assert_int_equal(fl_tz_first_at(z, at(2026, 10, 25, 3, 0, 0)), back + 3600);
    fl_tz_free(z);
}

/* slot_in returns fl_cron_next (dir 1) or fl_cron_prev (-1) of expr in zone_name at t. */
static int64_t slot_in(const char *zone_name, const char *expr, int64_t t, int dir)
{
    fl_tz *z = zone(zone_name);
    fl_cron c = parse_ok(expr);
    c.tz = z;
    int64_t n = dir > 0 ? fl_cron_next(&c, t) : fl_cron_prev(&c, t);
    fl_tz_free(z);
    return n;
}

#define next_in(zone_name, expr, t) slot_in(zone_name, expr, t, 1)
#define prev_in(zone_name, expr, t) slot_in(zone_name, expr, t, -1)

/* Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST. A slot in the skipped hour runs
 * once, at the jump; slots that collapse there run once; an hourly job stays an hour apart. */
static void test_dst_spring_berlin(void **state)
{
    (void)state;
    use_zone("Asia/Tokyo");   /* the process's zone plays no part */
    int64_t jump = at(2026, 3, 29, 1, 0, 0);
    assert_int_equal(next_in("Europe/Berlin", "30 2 * * *", at(2026, 3, 28, 12, 0, 0)), jump);
    assert_int_equal(next_in("Europe/Berlin", "30 2 * * *", jump), at(2026, 3, 30, 0, 30, 0));   /* 02:30 CEST */
    assert_int_equal(next_in("Europe/Berlin", "*/15 2 * * *", jump - 60), jump);
    assert_int_equal(next_in("Europe/Berlin", "*/15 2 * * *", jump), at(2026, 3, 30, 0, 0, 0));   /* no 02:15 */
    assert_int_equal(next_in("Europe/Berlin", "0 * * * *", jump - 3600), jump);          /* 01:00 -> 03:00 */
    assert_int_equal(next_in("Europe/Berlin", "0 * * * *", jump), jump + 3600);
    assert_int_equal(next_in("Europe/Berlin", "0 3 * * *", jump - 60), jump);            /* 03:00 itself */
    assert_int_equal(prev_in("Europe/Berlin", "30 2 * * *", jump + 60), jump);
    assert_int_equal(prev_in("Europe/Berlin", "30 2 * * *", jump - 1), at(2026, 3, 28, 1, 30, 0));
    /* past the table (2037): the footer rule, last Sunday of March 2300 is the 25th */
    assert_int_equal(next_in("Europe/Berlin", "30 2 * * *", at(2300, 3, 24, 12, 0, 0)), at(2300, 3, 25, 1, 0, 0));
    use_zone("UTC");
}

/* Europe/Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET. A slot in the repeated hour
 * runs once, at its first pass; an hourly job does not run twice at 02:00. */
static void test_dst_fall_berlin(void **state)
{
    (void)state;
    int64_t back = at(2026, 10, 25, 1, 0, 0);
    assert_int_equal(next_in("Europe/Berlin", "30 2 * * *", at(2026, 10, 24, 12, 0, 0)), back - 1800);
    assert_int_equal(next_in("Europe/Berlin", "30 2 * * *", back - 1800), at(2026, 10, 26, 1, 30, 0));
    assert_int_equal(next_in("Europe/Berlin", "30 2 * * *", back + 1800), at(2026, 10, 26, 1, 30, 0));
    assert_int_equal(prev_in("Europe/Berlin", "30 2 * * *", back + 2700), back - 1800);   /* 02:45 CET */
    assert_int_equal(next_in("Europe/Berlin", "0 * * * *", back - 3600), back + 3600);    /* 02:00 CEST -> 03:00 CET */
    assert_int_equal(next_in("Europe/Berlin", "*/20 * * * *", back - 1200), back + 3600);
    assert_int_equal(next_in("Europe/Berlin", "0 12 * * *", back), at(2026, 10, 25, 11, 0, 0));   /* CET noon */
}

/* America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST. */
static void test_dst_new_york(void **state)
{
    (void)state;
    int64_t jump = at(2026, 3, 8, 7, 0, 0), back = at(2026, 11, 1, 6, 0, 0);
    assert_int_equal(next_in("America/New_York", "30 2 * * *", at(2026, 3, 7, 12, 0, 0)), jump);
    assert_int_equal(next_in("America/New_York", "30 2 * * *", jump), at(2026, 3, 9, 6, 30, 0));
    assert_int_equal(next_in("America/New_York", "30 1 * * *", at(2026, 10, 31, 12, 0, 0)), back - 1800);
    assert_int_equal(next_in("America/New_York", "30 1 * * *", back - 1800), at(2026, 11, 2, 6, 30, 0));
    assert_int_equal(next_in("America/New_York", "30 1 * * *", back + 1), at(2026, 11, 2, 6, 30, 0));
    assert_int_equal(next_in("America/New_York", "0 9 * * 1-5", at(2026, 11, 1, 0, 0, 0)), at(2026, 11, 2, 14, 0, 0));
    assert_int_equal(next_in("America/New_York", "0 9 * * 1-5", at(2026, 10, 29, 0, 0, 0)), at(2026, 10, 29, 13, 0, 0));
}

/* Zones far from UTC, with quarter-hour offsets: Asia/Kathmandu (+05:45, +05:30 before 1986)
 * and Pacific/Chatham (+12:45, DST +13:45 from the last Sunday of September at 02:45). */
static void test_far_zones(void **state)
{
    (void)state;
    assert_int_equal(next_in("Asia/Kathmandu", "0 9 * * *", at(2026, 6, 1, 0, 0, 0)), at(2026, 6, 1, 3, 15, 0));
    assert_int_equal(next_in("Asia/Kathmandu", "0 0 1 1 *", at(2026, 6, 1, 0, 0, 0)), at(2026, 12, 31, 18, 15, 0));
    assert_int_equal(next_in("Asia/Kathmandu", "0 9 * * *", at(1985, 6, 1, 0, 0, 0)), at(1985, 6, 1, 3, 30, 0));
    /* Chatham's days start the day before in UTC */
    assert_int_equal(next_in("Pacific/Chatham", "0 12 * * *", at(2026, 6, 1, 0, 0, 0)), at(2026, 6, 1, 23, 15, 0));
    assert_int_equal(next_in("Pacific/Chatham", "0 0 * * 1", at(2026, 6, 1, 0, 0, 0)), at(2026, 6, 7, 11, 15, 0));
    use_zone("Pacific/Chatham");   /* glibc places the jump and the summer slot */
    int64_t jump = local_at(2026, 9, 27, 3, 45, 0, -1);
    int64_t summer = local_at(2026, 9, 28, 3, 0, 0, -1);
    use_zone("UTC");
    assert_int_equal(jump, at(2026, 9, 26, 14, 0, 0));
    assert_int_equal(next_in("Pacific/Chatham", "0 3 * * *", at(2026, 9, 26, 0, 0, 0)), jump);   /* 03:00 skipped */
    assert_int_equal(next_in("Pacific/Chatham", "0 3 * * *", jump), summer);
    assert_int_equal(summer, at(2026, 9, 27, 13, 15, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fields),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_next_and_prev),
        cmocka_unit_test(test_tz_files_match_libc),
        cmocka_unit_test(test_tz_rules_match_libc),
        cmocka_unit_test(test_tz_bad_files),
        cmocka_unit_test(test_tz_names),
        cmocka_unit_test(test_tz_civil),
        cmocka_unit_test(test_dst_spring_berlin),
        cmocka_unit_test(test_dst_fall_berlin),
        cmocka_unit_test(test_dst_new_york),
        cmocka_unit_test(test_far_zones),
    };
    return cmocka_run_group_tests_name("cron", tests, NULL, NULL);
}
