/* redisurl.c — parses the Redis URL forms of redisurl.h. */
#include "redisurl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Copies len bytes of s into dst (size cap) decoding %XX; -1 if malformed or too long. */
static int decode(char *dst, size_t cap, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < len ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0' || o + 1 >= cap)
            return -1;
        dst[o++] = c;
    }
    dst[o] = '\0';
    return 0;
}

/* Parses a decimal in [lo, hi] from len bytes; -1 if it is not one. */
static long number(const char *s, size_t len, long lo, long hi)
{
    if (len == 0 || len > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v < lo || v > hi ? -1 : v;
}

/* userinfo = [USER]:PASSWORD or PASSWORD alone (as redis-cli -u reads it). */
static int parse_userinfo(fl_redis_url *u, const char *s, size_t len, char *err, size_t errlen)
{
    const char *colon = memchr(s, ':', len);
    const char *pw = colon ? colon + 1 : s;
    size_t ulen = colon ? (size_t)(colon - s) : 0;
    if (decode(u->user, sizeof u->user, s, ulen) < 0 ||
        decode(u->password, sizeof u->password, pw, len - (size_t)(pw - s)) < 0)
        return fail(err, errlen, "bad user or password in the Redis URL (percent-encode special characters)");
    return 0;
}

static int parse_tcp(fl_redis_url *u, const char *s, char *err, size_t errlen)
{
    const char *end = s + strlen(s);
    const char *slash = memchr(s, '/', (size_t)(end - s));
    const char *auth_end = slash ? slash : end;
    const char *at = NULL;
    for (const char *p = s; p < auth_end; p++)   /* the last '@' ends the userinfo */
        if (*p == '@')
            at = p;
    if (at && parse_userinfo(u, s, (size_t)(at - s), err, errlen) < 0)
        return -EINVAL;
    const char *h = at ? at + 1 : s;
    const char *hend, *port = NULL;
    if (*h == '[') {
        const char *close = memchr(h, ']', (size_t)(auth_end - h));
        if (!close)
            return fail(err, errlen, "unclosed '[' in the Redis URL's host");
        hend = close + 1;
        if (hend < auth_end && *hend != ':')
            return fail(err, errlen, "unexpected text after ']' in the Redis URL");
        port = hend < auth_end ? hend + 1 : NULL;
        h++;
        hend = close;
    } else {
        const char *colon = memchr(h, ':', (size_t)(auth_end - h));
        hend = colon ? colon : auth_end;
        port = colon ? colon + 1 : NULL;
    }
    if (hend == h)
        return fail(err, errlen, "the Redis URL has no host");
    if ((size_t)(hend - h) >= sizeof u->host)
        return fail(err, errlen, "the Redis URL's host is too long");
    memcpy(u->host, h, (size_t)(hend - h));
    u->host[hend - h] = '\0';
    if (port) {
        long p = number(port, (size_t)(auth_end - port), 1, 65535);
        if (p < 0)
            return fail(err, errlen, "bad port in the Redis URL (expected 1..65535)");
        u->port = (int)p;
    }
    if (slash && slash + 1 < end) {
        long db = number(slash + 1, (size_t)(end - slash - 1), 0, 100000);
        if (db < 0)
            return fail(err, errlen, "bad database number in the Redis URL: %s", slash + 1);
        u->db = (int)db;
    }
    return 0;
}

/* ?db=N&password=P&user=U after a Unix socket path. */
static int parse_query(fl_redis_url *u, const char *q, char *err, size_t errlen)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        if (!eq)
            return fail(err, errlen, "bad parameter in the Redis URL: %.*s", (int)len, q);
        size_t klen = (size_t)(eq - q), vlen = len - klen - 1;
        int bad = 0;
        if (klen == 2 && memcmp(q, "db", 2) == 0) {
            long db = number(eq + 1, vlen, 0, 100000);
            bad = db < 0;
            u->db = (int)db;
        } else if (klen == 8 && memcmp(q, "password", 8) == 0) {
            bad = decode(u->password, sizeof u->password, eq + 1, vlen) < 0;
        } else if (klen == 4 && memcmp(q, "user", 4) == 0) {
            bad = decode(u->user, sizeof u->user, eq + 1, vlen) < 0;
        } else {
            return fail(err, errlen, "unknown parameter in the Redis URL: %.*s (expected db, password, user)",
                        (int)klen, q);
        }
        if (bad)
            return fail(err, errlen, "bad value in the Redis URL: %.*s", (int)len, q);
        q += len + (amp ? 1 : 0);
    }
    return 0;
}

static int parse_unix(fl_redis_url *u, const char *s, char *err, size_t errlen)
{
    if (strncmp(s, "//", 2) == 0)
        s += 2;
    const char *q = strchr(s, '?');
    size_t len = q ? (size_t)(q - s) : strlen(s);
    if (len == 0 || s[0] != '/')
        return fail(err, errlen, "a unix: Redis URL needs an absolute socket path");
    if (len >= sizeof u->path)
        return fail(err, errlen, "the Redis socket path is too long (max %zu bytes)", sizeof u->path - 1);
    memcpy(u->path, s, len);
    u->path[len] = '\0';
    u->is_unix = 1;
    return q ? parse_query(u, q + 1, err, errlen) : 0;
}

int fl_redis_url_parse(const char *url, fl_redis_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (strncmp(url, "redis://", 8) == 0)
        return parse_tcp(out, url + 8, err, errlen);
    if (strncmp(url, "unix:", 5) == 0)
        return parse_unix(out, url + 5, err, errlen);
    if (strncmp(url, "rediss://", 9) == 0)
        return fail(err, errlen, "rediss:// (TLS) is not supported; use redis:// or unix:");
    return fail(err, errlen, "expected redis://[:PASSWORD@]HOST[:PORT][/DB] or unix:/PATH");
}

void fl_redis_url_where(const fl_redis_url *u, char *out, size_t size)
{
    if (u->is_unix)
        snprintf(out, size, "unix:%s", u->path);
    else if (strchr(u->host, ':'))
        snprintf(out, size, "[%s]:%d", u->host, u->port);
    else
        snprintf(out, size, "%s:%d", u->host, u->port);
}
