/* params.c — see params.h. */
#include "params.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

int param_add(ParamTable *pt, const char *name, int decay, ParamInit init, int ndim, ...) {
    assert(ndim >= 1 && ndim <= MAX_DIMS);
    if (pt->n == pt->cap) {
        pt->cap = pt->cap ? 2 * pt->cap : 64;
        pt->t = realloc(pt->t, (size_t)pt->cap * sizeof *pt->t);
        if (!pt->t) sys_error("out of memory: a table of %d tensors", pt->cap);
    }
    TensorSpec *t = &pt->t[pt->n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->decay = decay;
    t->init = init;
    t->numel = 1;
    va_list ap;
    va_start(ap, ndim);
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = va_arg(ap, size_t);
        t->numel *= t->shape[d];
    }
    va_end(ap);
    /* 16-float (64-byte) alignment keeps every tensor on its own cache lines for SIMD. */
    t->offset = pt->total;
    pt->total += (t->numel + 15) / 16 * 16;
    return pt->n++;
}

int param_find(const ParamTable *pt, const char *name) {
    for (int i = 0; i < pt->n; i++)
        if (strcmp(pt->t[i].name, name) == 0) return i;
    return -1;
}

size_t param_count(const ParamTable *pt) {
    size_t n = 0;
    for (int i = 0; i < pt->n; i++) n += pt->t[i].numel;
    return n;
}

void param_free(ParamTable *pt) {
    free(pt->t);
    memset(pt, 0, sizeof *pt);
}
