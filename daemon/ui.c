/* ui.c — looks up the dashboard's embedded files (see ui.h). */
#include "ui.h"

#include <string.h>

#define FL_UI_INDEX "/ui/index.html"

static int same(const char *a, size_t alen, const char *b) { return strlen(b) == alen && memcmp(a, b, alen) == 0; }

const fl_ui_file *fl_ui_find(const char *path, size_t len)
{
    if (same(path, len, "/ui") || same(path, len, "/ui/")) {
        path = FL_UI_INDEX;
        len = sizeof FL_UI_INDEX - 1;
    }
    for (const fl_ui_file *f = fl_ui_files; f->path; f++)
        if (same(path, len, f->path))
            return f;
    return NULL;
}
