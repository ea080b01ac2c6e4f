/* headcheck.h — a strict check of the bytes of an HTTP/1.1 request head (request line, header
 * lines, line ends), run on the bytes before llhttp parses them.
 *
 * Why: llhttp 8 is lenient where proxies are not (a bare LF ends a line, a CR followed by any
 * byte does too, a space may sit inside a field name, "HTTP/2.0" passes as a version). A head
 * that two parsers frame differently is how request smuggling starts, so flingd refuses any
 * head that is not exactly RFC 9112's grammar: request-line = token SP target SP "HTTP/1.0|1.1"
 * CRLF; field-line = token ":" value CRLF (no obs-fold, no control bytes but HTAB); CRLF at the
 * end. Empty lines before the request line are skipped, as the RFC asks.
 * Pure and incremental: the state lives in the caller's fl_headcheck, no allocation. */
#ifndef FL_HEADCHECK_H
#define FL_HEADCHECK_H

#include <stddef.h>

typedef struct fl_headcheck {
    int state;
    unsigned n;           /* bytes of the current token seen (method, target, version) */
    const char *why;      /* set once the head is refused */
} fl_headcheck;

/* fl_headcheck_init readies h for a new head. */
void fl_headcheck_init(fl_headcheck *h);

/* fl_headcheck_feed scans len bytes of input. It returns how many of them belong to the head:
 * len while the head goes on, fewer once its final CRLF is seen (then *done = 1), or -1 when
 * the head is malformed (h->why then says how, as a static string). */
long fl_headcheck_feed(fl_headcheck *h, const char *p, size_t len, int *done);

#endif
