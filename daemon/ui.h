/* ui.h — the dashboard's static files (the ui/ folder), compiled into flingd by cmake/embed_ui.cmake and
 * served at GET /ui. They hold no data: the page reads the API (/metrics, /v1/jobs,
 * /v1/events) with the operator's token, so the files themselves are served without it. */
#ifndef FL_UI_H
#define FL_UI_H

#include <stddef.h>

typedef struct fl_ui_file {
    const char *path;            /* "/ui/index.html" */
    const char *ctype;           /* its Content-Type */
    const char *data;
    size_t len;
} fl_ui_file;

/* The headers of every file: nothing but this origin may be loaded or fetched by the page, and
 * no page may frame it. */
#define FL_UI_HEADERS                                                                                  \
    "Content-Security-Policy: default-src 'self'; img-src 'self' data:; connect-src 'self'; "          \
    "frame-ancestors 'none'\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"  \
    "Cache-Control: no-cache\r\n"

/* Generated: every file of the ui/ folder, then one with path NULL. */
extern const fl_ui_file fl_ui_files[];

/* fl_ui_find returns the file served at path (len bytes, no query): /ui and /ui/ are
 * /ui/index.html. NULL if there is none. */
const fl_ui_file *fl_ui_find(const char *path, size_t len);

#endif
