/* tz.h — a time zone read from its TZif file (RFC 8536, version 2 and later), for the slots of
 * periodic types in any IANA zone without touching TZ: setenv("TZ") and tzset() change the
 * whole process under its running threads. A zone is its table of UTC-offset changes and,
 * for instants past the table, the POSIX TZ rule of the file's footer (std offset dst [offset]
 * [,start[/time],end[/time]], dates Jn, n or Mm.w.d). Leap-second files (right/...) are
 * refused. An fl_tz is immutable once made: any thread may read it. No loop, no store. */
#ifndef FL_TZ_H
#define FL_TZ_H

#include <stddef.h>
#include <stdint.h>

#define FL_TZ_DIR "/usr/share/zoneinfo/"

typedef struct fl_tz fl_tz;

/* fl_tz_load reads the zone called name (Area/City, as tzdata spells it) from FL_TZ_DIR.
 * 0 and *out (free with fl_tz_free); -EINVAL with a one-line reason in err for a name that is
 * not a zone or a file that is not a valid TZif v2+ file; -ENOMEM. */
int fl_tz_load(fl_tz **out, const char *name, char *err, size_t errlen);

/* fl_tz_local makes the daemon's own zone: TZ if set (":Area/City", "Area/City", an absolute
 * file, or a POSIX rule such as "CET-1CEST,M3.5.0,M10.5.0/3"; "" is UTC), else /etc/localtime,
 * else UTC. Its name ("Europe/Berlin" or the rule) goes to name. 0, -EINVAL with err, -ENOMEM. */
int fl_tz_local(fl_tz **out, char *name, size_t namelen, char *err, size_t errlen);

/* fl_tz_parse makes a zone from the bytes of a TZif file (len bytes, borrowed). 0 and *out,
 * -EINVAL with err, -ENOMEM. */
int fl_tz_parse(fl_tz **out, const unsigned char *data, size_t len, char *err, size_t errlen);

/* fl_tz_rule makes a zone from a POSIX TZ rule alone (no table). 0 and *out, -EINVAL, -ENOMEM. */
int fl_tz_rule(fl_tz **out, const char *rule, char *err, size_t errlen);

/* fl_tz_offset returns the UTC offset in seconds east of Greenwich at instant t (s since the
 * epoch): local civil time is t + offset. */
int32_t fl_tz_offset(const fl_tz *z, int64_t t);

/* Civil times are counted like instants (seconds since 1970-01-01 00:00 of the wall clock),
 * so gmtime_r and timegm break them down and build them without any zone. */

/* fl_tz_civil_max returns the latest civil time the zone's clock has shown at or before t:
 * t + offset, or more just after the clock was set back (in a repeated hour). */
int64_t fl_tz_civil_max(const fl_tz *z, int64_t t);

/* fl_tz_first_at returns the first instant at which the clock shows civil time c or later:
 * the first of two instants in a repeated hour, the instant the clock jumped for a time in a
 * skipped hour. Never decreases as c grows. */
int64_t fl_tz_first_at(const fl_tz *z, int64_t c);

/* fl_tz_free releases z; NULL is a no-op. */
void fl_tz_free(fl_tz *z);

#endif
