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

/* A JSON-lines file open for appending (run logs, ./eval --json and --per-position). Each row is
 * written whole or not at all: a write that fails (disk full) is cut back to the end of the
 * previous row, so no reader ever sees half a line. Every call returns 0, or -1 with a one-line
 * message "<path>: cannot write: <reason>" in err. */
typedef struct {
    int fd;
    char path[2048];
} JsonlFile;

int jsonl_open(JsonlFile *j, const char *path, char *err, size_t n);
int jsonl_append(JsonlFile *j, const cJSON *row, char *err, size_t n); /* row is not freed */
int jsonl_sync(JsonlFile *j, char *err, size_t n);                     /* fsync */
int jsonl_close(JsonlFile *j, char *err, size_t n);                    /* fsync and close */

#endif
