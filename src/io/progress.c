/* progress.c — see progress.h. */
#include "progress.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util/util.h"

void progress_init(Progress *p) {
    p->tty = isatty(STDOUT_FILENO);
    p->open = 0;
}

void progress_show(Progress *p, int keep, const char *fmt, ...) {
    if (!p->tty && !keep) return;
    va_list ap;
    va_start(ap, fmt);
    if (p->tty) fputs("\r\033[K", stdout);
    vprintf(fmt, ap);
    va_end(ap);
    if (p->tty)
        p->open = 1;
    else
        fputc('\n', stdout);
    fflush(stdout);
}

void progress_end(Progress *p) {
    if (p->open) fputc('\n', stdout);
    p->open = 0;
    fflush(stdout);
}

void progress_say(Progress *p, const char *fmt, ...) {
    progress_end(p);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static int jsonl_fail(const JsonlFile *j, char *err, size_t n) {
    snprintf(err, n, "%s: cannot write: %s", j->path, strerror(errno));
    return -1;
}

int jsonl_open(JsonlFile *j, const char *path, char *err, size_t n) {
    snprintf(j->path, sizeof j->path, "%s", path);
    j->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    return j->fd < 0 ? jsonl_fail(j, err, n) : 0;
}

int jsonl_append(JsonlFile *j, const cJSON *row, char *err, size_t n) {
    char *text = cJSON_PrintUnformatted(row);
    if (!text) sys_error("out of memory writing %s", j->path);
    size_t len = strlen(text) + 1, done = 0;
    text[len - 1] = '\n'; /* replaces the NUL at the end of cJSON's buffer */
    off_t start = lseek(j->fd, 0, SEEK_END);
    int error = start < 0 ? errno : 0;
    while (!error && done < len) {
        ssize_t w = write(j->fd, text + done, len - done);
        if (w > 0)
            done += (size_t)w;
        else if (w == 0 || errno != EINTR)
            error = w == 0 ? ENOSPC : errno;
    }
    cJSON_free(text);
    if (!error) return 0;
    /* cut back the partial row; should that fail too, the first error is the one to report */
    if (start >= 0) (void)!ftruncate(j->fd, start);
    errno = error;
    return jsonl_fail(j, err, n);
}

int jsonl_sync(JsonlFile *j, char *err, size_t n) {
    return fsync(j->fd) != 0 ? jsonl_fail(j, err, n) : 0;
}

int jsonl_close(JsonlFile *j, char *err, size_t n) {
    int rc = jsonl_sync(j, err, n);
    if (close(j->fd) != 0 && rc == 0) rc = jsonl_fail(j, err, n);
    j->fd = -1;
    return rc;
}
