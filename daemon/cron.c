/* cron.c — cron expressions and their slots (see cron.h). */
#include "cron.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Steps a search may take before it gives up: enough for Feb 29 eight years away. */
#define FL_CRON_STEPS 200000

typedef struct field_spec { const char *name; int lo, hi; } field_spec;

static const field_spec fields[] = {
    { "second", 0, 59 }, { "minute", 0, 59 }, { "hour", 0, 23 },
    { "day of month", 1, 31 }, { "month", 1, 12 }, { "day of week", 0, 7 },
};
enum { F_SEC, F_MIN, F_HOUR, F_DOM, F_MON, F_DOW, F_COUNT };

/* number reads a decimal at *p into *v, advancing *p: 0, or -1 if there is none or it is huge. */
static int number(const char **p, int *v)
{
    const char *s = *p;
    long n = 0;
    if (*s < '0' || *s > '9')
        return -1;
    while (*s >= '0' && *s <= '9' && n < 1000)
        n = n * 10 + (*s++ - '0');
    if (*s >= '0' && *s <= '9')
        return -1;
    *v = (int)n;
    *p = s;
    return 0;
}

/* item parses one list item ("*", "n", "a-b", with an optional "/step") of field f into bits. */
static int item(const char *s, const char *end, const field_spec *f, uint64_t *bits, int *any)
{
    int lo = f->lo, hi = f->hi, step = 1, range = *s == '*';
    const char *p = s;
    if (*p == '*') {
        p++;
    } else {
        if (number(&p, &lo) < 0)
            return -1;
        hi = lo;
        if (*p == '-') {
            p++;
            range = 1;
            if (number(&p, &hi) < 0)
                return -1;
        }
    }
    if (p < end && *p == '/') {
        p++;
        if (number(&p, &step) < 0 || step < 1)
            return -1;
        if (!range)
            hi = f->hi;   /* "5/15" means from 5 to the end, every 15 */
    }
    if (p != end || lo < f->lo || hi > f->hi || lo > hi)
        return -1;
    *any = *s == '*' && step == 1;
    for (int v = lo; v <= hi; v += step)
        *bits |= (uint64_t)1 << v;
    return 0;
}

/* field parses the comma-separated list [s, end) of field f. */
static int field(const char *s, const char *end, const field_spec *f, uint64_t *bits, int *any)
{
    *bits = 0;
    *any = 0;
    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *e = comma ? comma : end;
        int a;
        if (e == s || item(s, e, f, bits, &a) < 0)
            return -1;
        *any |= a;
        s = comma ? comma + 1 : end;
        if (comma && s == end)
            return -1;
    }
    return *bits ? 0 : -1;
}

int fl_cron_parse(const char *expr, fl_cron *out, char *err, size_t errlen)
{
    const char *starts[F_COUNT + 1], *ends[F_COUNT + 1];
    int n = 0;
    for (const char *p = expr; *p;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        if (n == F_COUNT) {
            snprintf(err, errlen, "expected 5 or 6 fields");
            return -EINVAL;
        }
        starts[n] = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        ends[n++] = p;
    }
    if (n != 5 && n != 6) {
        snprintf(err, errlen, "expected 5 or 6 fields, got %d", n);
        return -EINVAL;
    }
    uint64_t bits[F_COUNT];
    int any[F_COUNT];
    int first = n == 5 ? F_MIN : F_SEC;
    bits[F_SEC] = 1;   /* five fields: at second 0 */
    any[F_SEC] = 0;
    for (int i = first; i < F_COUNT; i++) {
        if (field(starts[i - first], ends[i - first], &fields[i], &bits[i], &any[i]) < 0) {
            snprintf(err, errlen, "bad %s field \"%.*s\" (%d-%d, *, a-b, */n, lists)", fields[i].name,
                     (int)(ends[i - first] - starts[i - first]), starts[i - first], fields[i].lo, fields[i].hi);
            return -EINVAL;
        }
    }
    if (bits[F_DOW] & (1u << 7))
        bits[F_DOW] = (bits[F_DOW] | 1u) & 0x7f;   /* 7 is Sunday too */
    *out = (fl_cron){ .second = bits[F_SEC], .minute = bits[F_MIN], .hour = (uint32_t)bits[F_HOUR],
                      .dom = (uint32_t)bits[F_DOM], .month = (uint16_t)bits[F_MON], .dow = (uint8_t)bits[F_DOW],
                      .dom_any = any[F_DOM], .dow_any = any[F_DOW] };
    return 0;
}

static int has(uint64_t bits, int v) { return (int)((bits >> v) & 1); }

/* day_matches applies cron's rule: with both day fields restricted, either one will do. */
static int day_matches(const fl_cron *c, const struct tm *tm)
{
    int dom = has(c->dom, tm->tm_mday), dow = has(c->dow, tm->tm_wday);
    if (c->dom_any || c->dow_any)
        return dom && dow;
    return dom || dow;
}

/* The first unit of tm that does not match, from the month down: 0 month, 1 day, 2 hour,
 * 3 minute, 4 second; 5 if tm is a slot. */
static int mismatch(const fl_cron *c, const struct tm *tm)
{
    if (!has(c->month, tm->tm_mon + 1))
        return 0;
    if (!day_matches(c, tm))
        return 1;
    if (!has(c->hour, tm->tm_hour))
        return 2;
    if (!has(c->minute, tm->tm_min))
        return 3;
    if (!has(c->second, tm->tm_sec))
        return 4;
    return 5;
}

/* start_of sets tm to the start of its unit u (0 month ... 4 second). */
static void start_of(struct tm *tm, int u)
{
    if (u <= 0)
        tm->tm_mday = 1;
    if (u <= 1)
        tm->tm_hour = 0;
    if (u <= 2)
        tm->tm_min = 0;
    if (u <= 3)
        tm->tm_sec = 0;
}

/* civil_search walks from civil time t (dir 1: forward, t excluded; -1: backward, t included)
 * to the nearest civil slot, a whole unit at a time: past the first unit that does not match,
 * to the start of the next one or the last second of the one before. Civil times are counted
 * like UTC instants, so gmtime_r and timegm do the calendar without any zone. */
static int64_t civil_search(const fl_cron *c, int64_t t, int dir)
{
    if (dir > 0)
        t++;
    for (int i = 0; i < FL_CRON_STEPS; i++) {
        time_t tt = (time_t)t;
        struct tm tm;
        if (!gmtime_r(&tt, &tm))
            return -1;
        int u = mismatch(c, &tm);
        if (u == 5)
            return t;
        start_of(&tm, u);
        if (dir > 0) {
            int *unit[] = { &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec };
            (*unit[u])++;
        }
        t = (int64_t)timegm(&tm) - (dir < 0);
    }
    return -1;
}

/* A slot is a civil time S; it runs at the first instant the zone's clock shows S or later
 * (I(S)). I never decreases, and I(S) > t exactly when S is past the latest civil time shown
 * by t: so the next slot is I of the first civil slot past that, the previous one I of the
 * last civil slot not past it. */
int64_t fl_cron_next(const fl_cron *c, int64_t t)
{
    int64_t s = civil_search(c, c->tz ? fl_tz_civil_max(c->tz, t) : t, 1);
    return s < 0 || !c->tz ? s : fl_tz_first_at(c->tz, s);
}

int64_t fl_cron_prev(const fl_cron *c, int64_t t)
{
    int64_t s = civil_search(c, c->tz ? fl_tz_civil_max(c->tz, t) : t, -1);
    return s < 0 || !c->tz ? s : fl_tz_first_at(c->tz, s);
}
