/* headcheck.c — the strict request-head grammar of headcheck.h, one byte at a time. */
#include "headcheck.h"

enum {
    HC_START,        /* before the request line; empty lines are skipped */
    HC_START_LF,     /* a CR of an empty leading line */
    HC_METHOD,
    HC_TARGET,
    HC_VERSION,      /* "HTTP/1." */
    HC_MINOR,        /* the digit after it */
    HC_LINE_CR,      /* the request line's CR */
    HC_LINE_LF,
    HC_FIELD_START,  /* the first byte of a field line, or the CR of the final empty line */
    HC_NAME,
    HC_VALUE,
    HC_VALUE_LF,
    HC_END_LF,
    HC_BAD
};

static const char version_prefix[] = "HTTP/1.";

/* RFC 9110 tchar: the bytes of a method or a field name. */
static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '.': case '^': case '_': case '`': case '|': case '~':
        return 1;
    default:
        return 0;
    }
}

/* A field value: visible ASCII, SP, HTAB and obs-text; never NUL or another control byte. */
static int is_value_byte(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

/* A request target: visible ASCII only (a URL is percent-encoded; raw UTF-8 is refused). */
static int is_target_byte(unsigned char c) { return c > 0x20 && c < 0x7f; }

void fl_headcheck_init(fl_headcheck *h)
{
    h->state = HC_START;
    h->n = 0;
    h->why = 0;
}

static long refuse(fl_headcheck *h, const char *why)
{
    h->state = HC_BAD;
    h->why = why;
    return -1;
}

/* A line break where the grammar wants one: CR must be followed by LF, LF preceded by CR. */
static const char *bad_break(unsigned char c)
{
    if (c == '\n')
        return "bare LF in the request head (lines end with CRLF)";
    if (c == '\r')
        return "CR not followed by LF in the request head";
    return 0;
}

/* Refuses byte c where it does not belong: a stray CR or LF is named as such, anything else
 * with what. */
static long refuse_byte(fl_headcheck *h, unsigned char c, const char *what)
{
    const char *line = bad_break(c);
    return refuse(h, line ? line : what);
}

long fl_headcheck_feed(fl_headcheck *h, const char *p, size_t len, int *done)
{
    *done = 0;
    if (h->state == HC_BAD)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        switch (h->state) {
        case HC_START:
            if (c == '\r') {
                h->state = HC_START_LF;
                break;
            }
            if (!is_tchar(c))
                return refuse_byte(h, c, "bad character in the request method");
            h->state = HC_METHOD;
            break;
        case HC_START_LF:
            if (c != '\n')
                return refuse(h, "CR not followed by LF in the request head");
            h->state = HC_START;
            break;
        case HC_METHOD:
            if (c == ' ') {
                h->state = HC_TARGET;
                h->n = 0;
            } else if (!is_tchar(c)) {
                return refuse(h, "bad character in the request method");
            }
            break;
        case HC_TARGET:
            if (c == ' ' && h->n > 0) {
                h->state = HC_VERSION;
                h->n = 0;
            } else if (is_target_byte(c)) {
                h->n++;
            } else {
                return refuse(h, "bad character in the request target (it must be percent-encoded ASCII)");
            }
            break;
        case HC_VERSION:
            if (c != (unsigned char)version_prefix[h->n])
                return refuse(h, "unsupported HTTP version (flingd speaks 1.0 and 1.1)");
            if (++h->n == sizeof version_prefix - 1)
                h->state = HC_MINOR;
            break;
        case HC_MINOR:
            if (c != '0' && c != '1')
                return refuse(h, "unsupported HTTP version (flingd speaks 1.0 and 1.1)");
            h->state = HC_LINE_CR;
            break;
        case HC_LINE_CR:
            if (c != '\r')
                return refuse(h, c == '\n' ? bad_break(c) : "unsupported HTTP version (flingd speaks 1.0 and 1.1)");
            h->state = HC_LINE_LF;
            break;
        case HC_LINE_LF:
        case HC_VALUE_LF:
            if (c != '\n')
                return refuse(h, "CR not followed by LF in the request head");
            h->state = HC_FIELD_START;
            break;
        case HC_FIELD_START:
            if (c == '\r')
                h->state = HC_END_LF;
            else if (c == ' ' || c == '\t')
                return refuse(h, "folded header line (obs-fold) in the request head");
            else if (c == ':')
                return refuse(h, "empty header name");
            else if (is_tchar(c))
                h->state = HC_NAME;
            else
                return refuse_byte(h, c, "bad character in a header name");
            break;
        case HC_NAME:
            if (c == ':')
                h->state = HC_VALUE;
            else if (!is_tchar(c))
                return refuse_byte(h, c, "space or bad character in a header name");
            break;
        case HC_VALUE:
            if (c == '\r')
                h->state = HC_VALUE_LF;
            else if (!is_value_byte(c))
                return refuse_byte(h, c, "control character in a header value");
            break;
        case HC_END_LF:
            if (c != '\n')
                return refuse(h, "CR not followed by LF in the request head");
            *done = 1;
            return (long)(i + 1);
        }
    }
    return (long)len;
}
