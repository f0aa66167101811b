/* lengths.c — see lengths.h. */
#include "lengths.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int *out, n;
    char *err;
    size_t errlen;
} List;

__attribute__((format(printf, 2, 3))) static int fail(List *l, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->err, l->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int push(List *l, long v) {
    if (v > LENGTHS_MAX_VALUE) return fail(l, "length %ld is above %d", v, LENGTHS_MAX_VALUE);
    if (l->n == LENGTHS_MAX) return fail(l, "more than %d lengths", LENGTHS_MAX);
    l->out[l->n++] = (int)v;
    return 0;
}

/* A positive decimal integer filling [s, e) exactly; 0 if it is not one. */
static long number(const char *s, const char *e) {
    if (s == e || *s < '0' || *s > '9') return 0; /* no sign, no space, no empty */
    char *stop;
    errno = 0;
    long v = strtol(s, &stop, 10);
    if (stop != e || errno || v > LENGTHS_MAX_VALUE) return 0;
    return v;
}

/* The paper's offsets from the training length (Press et al. 2022, Tables 2-4). */
static int paper(List *l, long L) {
    if (push(l, L) || push(l, L + 1)) return -1;
    for (long d = 10; d <= 100; d += 10)
        if (push(l, L + d)) return -1;
    for (long d = 200; d <= 1000; d += 100)
        if (push(l, L + d)) return -1;
    for (long d = 2000; d <= 15000; d += 1000)
        if (push(l, L + d)) return -1;
    return 0;
}

/* "A..B" (step 0: doubling) or "A..B:S". */
static int range(List *l, const char *s, const char *dots, const char *e) {
    const char *colon = memchr(dots, ':', (size_t)(e - dots));
    const char *b_end = colon ? colon : e;
    long a = number(s, dots), b = number(dots + 2, b_end), step = colon ? number(colon + 1, e) : 0;
    if (!a || !b || (colon && !step))
        return fail(l, "'%.*s' is not a range A..B or A..B:S of positive integers", (int)(e - s),
                    s);
    if (b < a) return fail(l, "range '%.*s' ends below its start", (int)(e - s), s);
    for (long v = a; v < b; v = step ? v + step : 2 * v)
        if (push(l, v)) return -1;
    return push(l, b);
}

static int item(List *l, const char *s, const char *e, int train_len) {
    if (e - s == 5 && !strncmp(s, "paper", 5)) return paper(l, train_len);
    const char *dots = NULL;
    for (const char *p = s; p + 1 < e; p++)
        if (p[0] == '.' && p[1] == '.') {
            dots = p;
            break;
        }
    if (dots) return range(l, s, dots, e);
    long v = number(s, e);
    if (!v) return fail(l, "'%.*s' is not a positive length", (int)(e - s), s);
    return push(l, v);
}

int lengths_parse(const char *spec, int train_len, int *out, char *err, size_t n) {
    List l = {out, 0, err, n};
    if (!*spec) return fail(&l, "empty list (e.g. 128,256 or 512..16000 or paper)");
    for (const char *p = spec;; p++) {
        const char *e = p + strcspn(p, ",");
        if (e == p) return fail(&l, "empty item in '%s'", spec);
        if (item(&l, p, e, train_len)) return -1;
        if (!*e) break;
        p = e;
    }
    return l.n;
}
