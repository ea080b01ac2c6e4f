/* redisurl.h — the Redis address of [redis] url and of the CLI's --redis, parsed once for both
 * the daemon's mirror and the fling CLI:
 *     redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]      (HOST may be [IPv6]; PORT 6379, DB 0)
 *     unix:PATH  or  unix://PATH   with optional ?db=N&password=P (and &user=U)
 * USER and PASSWORD may be percent-encoded. Libc only; no allocation. */
#ifndef FL_REDISURL_H
#define FL_REDISURL_H

#include <stddef.h>

typedef struct fl_redis_url {
    int is_unix;            /* 1: connect to path; 0: to host:port */
    char host[256];
    int port;
    char path[108];         /* sizeof sun_path */
    char user[128];         /* "" = none (AUTH with the password alone) */
    char password[256];     /* "" = no AUTH */
    int db;                 /* SELECT this database when not 0 */
} fl_redis_url;

/* fl_redis_url_parse fills *out from url; 0, or -EINVAL with a one-line reason in err. */
int fl_redis_url_parse(const char *url, fl_redis_url *out, char *err, size_t errlen);

/* fl_redis_url_where writes where u points, for messages and logs, without the password:
 * "HOST:PORT", "[IPv6]:PORT" or "unix:PATH". */
void fl_redis_url_where(const fl_redis_url *u, char *out, size_t size);

#endif
