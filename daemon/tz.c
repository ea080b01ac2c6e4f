/* tz.c — time zones from TZif files and POSIX TZ rules (see tz.h). */
#include "tz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Zone files are a few KiB; anything much larger is not one. */
#define TZ_FILE_MAX (1024 * 1024)
/* RFC 8536 keeps offsets within -25 h .. +26 h, so the clock's time of an instant a window
 * earlier than t is before t's, whatever the offsets: walks over changes start there. */
#define TZ_OFF_MIN (-89999)
#define TZ_OFF_MAX 93599
#define TZ_WINDOW (3 * 86400)
#define TZ_HEADER 44
#define DAY 86400

typedef struct tz_date {
    char kind;    /* 'J': Jn, day 1..365 without Feb 29; 'D': n, day 0..365; 'M': Mm.w.d */
    int a, b, c;  /* J, D: a = n; M: month a, week b (5 = last), weekday c (0 = Sunday) */
} tz_date;

typedef struct tz_rule {
    int32_t std_off, dst_off;          /* seconds east of UTC */
    int has_dst;
    tz_date start, end;
    int32_t start_time, end_time;      /* after local midnight: std time for start, dst for end */
} tz_rule;

struct fl_tz {
    size_t n;
    int64_t *at;          /* instants where the offset changes, ascending */
    int32_t *off;         /* off[i] holds from at[i] on */
    int32_t off0;         /* before at[0] (the file's first local time type) */
    int64_t rule_from;    /* the rule holds from here on (the file's last transition) */
    int has_rule;
    tz_rule rule;
};

/* ---- calendar arithmetic (proleptic Gregorian, any year) --------------------------------- */

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

static int is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int month_days(int64_t y, int m)
{
    static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return days[m - 1] + (m == 2 && is_leap(y));
}

/* Days from 1970-01-01 to y-m-d (Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The year of the day `days` after 1970-01-01. */
static int64_t year_of_day(int64_t days)
{
    int64_t z = days + 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    return yoe + era * 400 + (mp >= 10);
}

/* ---- POSIX TZ rules ---------------------------------------------------------------------- */

/* rule_name skips a zone abbreviation: three or more letters, or <...> of letters, digits, + and -. */
static int rule_name(const char **p)
{
    const char *s = *p;
    size_t n = 0;
    if (*s == '<') {
        for (s++; *s && *s != '>'; s++, n++)
            if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-", *s))
                return -1;
        if (*s++ != '>')
            return -1;
    } else {
        while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))
            s++, n++;
    }
    if (n < 3)
        return -1;
    *p = s;
    return 0;
}

/* rule_num reads 1 to `digits` digits at *p, at most max. */
static int rule_num(const char **p, int digits, int max, int *out)
{
    int v = 0, n = 0;
    while (**p >= '0' && **p <= '9' && n < digits)
        v = v * 10 + (*(*p)++ - '0'), n++;
    if (!n || v > max)
        return -1;
    *out = v;
    return 0;
}

/* rule_hms reads [+-]hh[:mm[:ss]] with hours up to max_h, as signed seconds. */
static int rule_hms(const char **p, int max_h, int32_t *out)
{
    int sign = 1, h, m = 0, s = 0;
    if (**p == '+' || **p == '-')
        sign = *(*p)++ == '-' ? -1 : 1;
    if (rule_num(p, 3, max_h, &h) < 0)
        return -1;
    if (**p == ':' && ((*p)++, rule_num(p, 2, 59, &m) < 0))
        return -1;
    if (**p == ':' && ((*p)++, rule_num(p, 2, 59, &s) < 0))
        return -1;
    *out = sign * (h * 3600 + m * 60 + s);
    return 0;
}

/* rule_date reads Jn, n or Mm.w.d. */
static int rule_date(const char **p, tz_date *d)
{
    d->kind = **p == 'J' || **p == 'M' ? *(*p)++ : 'D';
    if (d->kind == 'J')
        return rule_num(p, 3, 365, &d->a) < 0 || d->a < 1 ? -1 : 0;
    if (d->kind == 'D')
        return rule_num(p, 3, 365, &d->a);
    if (rule_num(p, 2, 12, &d->a) < 0 || d->a < 1 || *(*p)++ != '.' || rule_num(p, 1, 5, &d->b) < 0 ||
        d->b < 1 || *(*p)++ != '.' || rule_num(p, 1, 6, &d->c) < 0)
        return -1;
    return 0;
}

/* rule_change reads ",date[/time]"; the time defaults to 02:00 and may be -167..167 h (RFC 8536). */
static int rule_change(const char **p, tz_date *d, int32_t *time)
{
    *time = 7200;
    if (*(*p)++ != ',' || rule_date(p, d) < 0)
        return -1;
    if (**p == '/' && ((*p)++, rule_hms(p, 167, time) < 0))
        return -1;
    return 0;
}

static int rule_parse(const char *s, tz_rule *r)
{
    int32_t west;
    memset(r, 0, sizeof *r);
    if (rule_name(&s) < 0 || rule_hms(&s, 24, &west) < 0)
        return -1;
    r->std_off = -west;
    if (!*s)
        return 0;
    if (rule_name(&s) < 0)
        return -1;
    r->has_dst = 1;
    r->dst_off = r->std_off + 3600;
    if (*s && *s != ',') {
        if (rule_hms(&s, 24, &west) < 0)
            return -1;
        r->dst_off = -west;
    }
    if (!*s) {   /* no dates: the US rule, as glibc assumes */
        r->start = (tz_date){ 'M', 3, 2, 0 };
        r->end = (tz_date){ 'M', 11, 1, 0 };
        r->start_time = r->end_time = 7200;
    } else if (rule_change(&s, &r->start, &r->start_time) < 0 || rule_change(&s, &r->end, &r->end_time) < 0 || *s) {
        return -1;
    }
    r->has_dst = r->dst_off != r->std_off;
    return 0;
}

/* rule_day returns the day (since 1970-01-01) that d names in year y. */
static int64_t rule_day(const tz_date *d, int64_t y)
{
    int64_t jan1 = days_from_civil(y, 1, 1);
    if (d->kind == 'J')
        return jan1 + d->a - 1 + (is_leap(y) && d->a >= 60);
    if (d->kind == 'D')
        return jan1 + d->a;
    int64_t first = days_from_civil(y, d->a, 1);
    int wday = (int)(((first + 4) % 7 + 7) % 7);   /* 1970-01-01 was a Thursday */
    int day = 1 + (d->c - wday + 7) % 7 + 7 * (d->b - 1);
    while (day > month_days(y, d->a))
        day -= 7;   /* week 5: the last such weekday */
    return first + day - 1;
}

/* rule_year gives the instants DST starts and ends in year y. */
static void rule_year(const tz_rule *r, int64_t y, int64_t *start, int64_t *end)
{
    *start = rule_day(&r->start, y) * DAY + r->start_time - r->std_off;
    *end = rule_day(&r->end, y) * DAY + r->end_time - r->dst_off;
}

static int64_t rule_year_at(const tz_rule *r, int64_t t)
{
    return year_of_day(floor_div(t + r->std_off, DAY));
}

static int32_t rule_offset(const tz_rule *r, int64_t t)
{
    if (!r->has_dst)
        return r->std_off;
    int64_t y = rule_year_at(r, t), best = INT64_MIN;
    int dst = 0;
    /* the latest change at or before t; a start at the instant of an end wins (DST all year) */
    for (int64_t yy = y - 1; yy <= y + 1; yy++) {
        int64_t s, e;
        rule_year(r, yy, &s, &e);
        if (s <= t && s >= best)
            best = s, dst = 1;
        if (e <= t && e > best)
            best = e, dst = 0;
    }
    return dst ? r->dst_off : r->std_off;
}

/* rule_next returns the first start or end after t. */
static int64_t rule_next(const tz_rule *r, int64_t t)
{
    if (!r->has_dst)
        return INT64_MAX;
    int64_t y = rule_year_at(r, t), best = INT64_MAX;
    for (int64_t yy = y - 1; yy <= y + 2; yy++) {
        int64_t s, e;
        rule_year(r, yy, &s, &e);
        if (s > t && s < best)
            best = s;
        if (e > t && e < best)
            best = e;
    }
    return best;
}

/* ---- offsets and changes ----------------------------------------------------------------- */

/* upper_bound: the index of the first change after t (n if none). */
static size_t upper_bound(const fl_tz *z, int64_t t)
{
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->at[mid] <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int32_t fl_tz_offset(const fl_tz *z, int64_t t)
{
    if (z->has_rule && t >= z->rule_from)
        return rule_offset(&z->rule, t);
    size_t i = upper_bound(z, t);
    return i ? z->off[i - 1] : z->off0;
}

/* candidate returns the first instant after t where the offset may change. */
static int64_t candidate(const fl_tz *z, int64_t t)
{
    if (t < z->rule_from) {
        size_t i = upper_bound(z, t);
        if (i < z->n)
            return z->at[i];
        return z->has_rule ? z->rule_from : INT64_MAX;
    }
    return rule_next(&z->rule, t);
}

/* next_change returns the first instant in (t, limit] where the offset changes, else INT64_MAX. */
static int64_t next_change(const fl_tz *z, int64_t t, int64_t limit)
{
    for (;;) {
        t = candidate(z, t);
        if (t > limit)
            return INT64_MAX;
        if (fl_tz_offset(z, t) != fl_tz_offset(z, t - 1))
            return t;
    }
}

int64_t fl_tz_civil_max(const fl_tz *z, int64_t t)
{
    int64_t best = t + fl_tz_offset(z, t);
    for (int64_t u = t - TZ_WINDOW, ch; (ch = next_change(z, u, t)) != INT64_MAX; u = ch) {
        int64_t before = ch - 1 + fl_tz_offset(z, ch - 1);   /* the clock just before it changed */
        if (before > best)
            best = before;
    }
    return best;
}

int64_t fl_tz_first_at(const fl_tz *z, int64_t c)
{
    /* Walk the spans of one offset from a window before c; in span [a, b) with offset o the
     * clock shows [a + o, b + o): the first span that reaches c holds the answer. */
    for (int64_t a = c - TZ_WINDOW;;) {
        int32_t o = fl_tz_offset(z, a);
        int64_t b = next_change(z, a, c + TZ_WINDOW);
        if (b == INT64_MAX || b + o > c)
            return a + o >= c ? a : c - o;
        a = b;
    }
}

/* ---- TZif files -------------------------------------------------------------------------- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p) { return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4)); }

typedef struct tzif_counts { uint64_t isut, isstd, leap, time, type, chars; } tzif_counts;

/* header reads a 44-byte header at p; v2: 8-byte times (the second block) */
static int header(const unsigned char *p, size_t len, tzif_counts *c, uint64_t *block, int v2, const char **why)
{
    if (len < TZ_HEADER || memcmp(p, "TZif", 4) != 0) {
        *why = "not a TZif file";
        return -1;
    }
    if (p[4] < '2') {
        *why = "TZif version 1 (no 64-bit data)";
        return -1;
    }
    *c = (tzif_counts){ be32(p + 20), be32(p + 24), be32(p + 28), be32(p + 32), be32(p + 36), be32(p + 40) };
    uint64_t tsize = v2 ? 8 : 4;
    *block = c->time * tsize + c->time + c->type * 6 + c->chars + c->leap * (tsize + 4) + c->isstd + c->isut;
    if (*block > len - TZ_HEADER) {
        *why = "truncated";
        return -1;
    }
    return 0;
}

/* check_counts applies RFC 8536's rules on the v2 block's counts. */
static const char *check_counts(const tzif_counts *c)
{
    if (c->type == 0 || c->type > 256 || c->chars == 0)
        return "no local time types";
    if ((c->isut && c->isut != c->type) || (c->isstd && c->isstd != c->type))
        return "inconsistent counts";
    if (c->leap)
        return "leap-second zone files are not supported";
    return NULL;
}

/* footer reads the "\nRULE\n" after the v2 block into z. */
static const char *footer(fl_tz *z, const unsigned char *p, size_t len)
{
    char rule[256];
    if (len < 2 || p[0] != '\n')
        return "no footer";
    const unsigned char *nl = memchr(p + 1, '\n', len - 1);
    if (!nl || (size_t)(nl - p - 1) >= sizeof rule)
        return "bad footer";
    memcpy(rule, p + 1, (size_t)(nl - p - 1));
    rule[nl - p - 1] = '\0';
    if (!rule[0])
        return NULL;   /* no rule: the last type holds for ever */
    if (rule_parse(rule, &z->rule) < 0)
        return "bad TZ rule in the footer";
    z->has_rule = 1;
    return NULL;
}

/* table reads the v2 transitions at p into z, keeping only those that change the offset. */
static const char *table(fl_tz *z, const unsigned char *p, const tzif_counts *c)
{
    const unsigned char *times = p, *idx = p + c->time * 8, *types = idx + c->time;
    int32_t offs[256];
    for (uint64_t i = 0; i < c->type; i++) {
        int32_t o = (int32_t)be32(types + i * 6);
        if (o < TZ_OFF_MIN || o > TZ_OFF_MAX || types[i * 6 + 4] > 1)
            return "bad local time type";
        offs[i] = o;
    }
    z->off0 = offs[0];
    if (c->time && (!(z->at = malloc(c->time * sizeof *z->at)) || !(z->off = malloc(c->time * sizeof *z->off))))
        return "out of memory";
    int32_t prev = z->off0;
    for (uint64_t i = 0; i < c->time; i++) {
        int64_t t = be64(times + i * 8);
        if (idx[i] >= c->type || (i && t <= be64(times + (i - 1) * 8)))
            return "bad transition";
        if (offs[idx[i]] != prev) {
            z->at[z->n] = t;
            z->off[z->n++] = prev = offs[idx[i]];
        }
    }
    z->rule_from = c->time ? be64(times + (c->time - 1) * 8) : INT64_MIN;
    return NULL;
}

static fl_tz *tz_new(void)
{
    fl_tz *z = calloc(1, sizeof *z);
    if (z)
        z->rule_from = INT64_MAX;   /* no rule until one is read */
    return z;
}

int fl_tz_parse(fl_tz **out, const unsigned char *data, size_t len, char *err, size_t errlen)
{
    tzif_counts c;
    uint64_t v1_block, block;
    const char *why = NULL;
    fl_tz *z = NULL;
    if (header(data, len, &c, &v1_block, 0, &why) == 0) {
        const unsigned char *h2 = data + TZ_HEADER + v1_block;
        size_t left = len - TZ_HEADER - (size_t)v1_block;
        if (header(h2, left, &c, &block, 1, &why) == 0 && !(why = check_counts(&c))) {
            if (!(z = tz_new())) {
                why = "out of memory";
            } else if (!(why = table(z, h2 + TZ_HEADER, &c))) {
                int64_t last = z->rule_from;
                if (!(why = footer(z, h2 + TZ_HEADER + block, left - TZ_HEADER - (size_t)block)))
                    z->rule_from = z->has_rule ? last : INT64_MAX;
            }
        }
    }
    if (why) {
        fl_tz_free(z);
        snprintf(err, errlen, "bad zone file: %s", why);
        return strcmp(why, "out of memory") == 0 ? -ENOMEM : -EINVAL;
    }
    *out = z;
    return 0;
}

int fl_tz_rule(fl_tz **out, const char *rule, char *err, size_t errlen)
{
    fl_tz *z = tz_new();
    if (!z)
        return -ENOMEM;
    if (rule_parse(rule, &z->rule) < 0) {
        fl_tz_free(z);
        snprintf(err, errlen, "bad TZ rule (expected e.g. CET-1CEST,M3.5.0,M10.5.0/3)");
        return -EINVAL;
    }
    z->has_rule = 1;
    z->rule_from = INT64_MIN;
    z->off0 = z->rule.std_off;
    *out = z;
    return 0;
}

/* load_file parses the zone file at path. */
static int load_file(fl_tz **out, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int e = fd < 0 ? errno : ENOENT;
        if (fd >= 0)
            close(fd);
        snprintf(err, errlen, "unknown time zone (no zone file %s: %s)", path, strerror(e));
        return -EINVAL;
    }
    if (st.st_size > TZ_FILE_MAX) {
        close(fd);
        snprintf(err, errlen, "bad zone file %s: larger than %d bytes", path, TZ_FILE_MAX);
        return -EINVAL;
    }
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    ssize_t n = 1;
    while (got < (size_t)st.st_size && (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
        got += (size_t)n;
    int e = errno;
    close(fd);
    int rc;
    if (n < 0) {
        snprintf(err, errlen, "zone file %s: %s", path, strerror(e));
        rc = -EINVAL;
    } else {
        rc = fl_tz_parse(out, buf, got, err, errlen);
    }
    free(buf);
    return rc;
}

/* A zone name as tzdata spells it (no leading '/', no "..", plain characters). */
static int valid_name(const char *z)
{
    return z[0] && z[0] != '/' && !strstr(z, "..") && strlen(z) < 200 &&
           z[strspn(z, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_+-.")] == '\0';
}

int fl_tz_load(fl_tz **out, const char *name, char *err, size_t errlen)
{
    char path[sizeof FL_TZ_DIR + 200];
    if (!valid_name(name)) {
        snprintf(err, errlen, "unknown time zone (expected a name such as Europe/Berlin)");
        return -EINVAL;
    }
    snprintf(path, sizeof path, FL_TZ_DIR "%s", name);
    return load_file(out, path, err, errlen);
}

int fl_tz_local(fl_tz **out, char *name, size_t namelen, char *err, size_t errlen)
{
    const char *tz = getenv("TZ");
    if (!tz) {
        char link[256];
        ssize_t n = readlink("/etc/localtime", link, sizeof link - 1);
        link[n > 0 ? n : 0] = '\0';
        const char *in = strstr(link, "zoneinfo/");
        snprintf(name, namelen, "%s", in ? in + strlen("zoneinfo/") : "localtime");
        if (access("/etc/localtime", F_OK) == 0)
            return load_file(out, "/etc/localtime", err, errlen);
        tz = "UTC0";
    }
    tz += tz[0] == ':';
    if (!tz[0])
        tz = "UTC0";   /* glibc reads an empty TZ as UTC */
    const char *in = strstr(tz, "zoneinfo/");
    snprintf(name, namelen, "%s", tz[0] == '/' && in ? in + strlen("zoneinfo/") : tz);
    if (tz[0] == '/')
        return load_file(out, tz, err, errlen);
    int rc = valid_name(tz) ? fl_tz_load(out, tz, err, errlen) : -EINVAL;
    if (rc == 0 || (strchr(tz, '/') && !strchr(tz, ',')))   /* Area/City: a zone file or nothing */
        return rc;
    return fl_tz_rule(out, tz, err, errlen);
}

void fl_tz_free(fl_tz *z)
{
    if (!z)
        return;
    free(z->at);
    free(z->off);
    free(z);
}
