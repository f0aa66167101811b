/* progress.h — one updating status line on a terminal (\r, clear to end of line), plain lines
 * when stdout is a file or pipe, plus JSON-lines logs. */
#ifndef PROGRESS_H
#define PROGRESS_H

#include <stdio.h>

typedef struct cJSON cJSON;

typedef struct {
    int tty;
    int open; /* a \r line is showing and needs a newline before other output */
} Progress;

void progress_init(Progress *p);
/* On a terminal, overwrite the status line; otherwise print it only when `keep` is set. */
void progress_show(Progress *p, int keep, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Print a permanent line (ends the status line first). */
void progress_say(Progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void progress_end(Progress *p);
/* "1h02m", "3m05s", "42s" */
const char *format_duration(double seconds, char *buf, size_t n);

/* Appends one JSON object as a line and flushes (the object is not freed). */
void jsonl_write(FILE *f, const cJSON *obj);

#endif
