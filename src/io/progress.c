/* progress.c — see progress.h. */
#include "progress.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

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

const char *format_duration(double s, char *buf, size_t n) {
    long t = s < 0 ? 0 : (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%lds", t);
    return buf;
}

void jsonl_write(FILE *f, const cJSON *obj) {
    char *s = cJSON_PrintUnformatted(obj);
    fprintf(f, "%s\n", s);
    fflush(f);
    free(s);
}
