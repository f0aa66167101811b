/* evaluate.c — see evaluate.h. */
#include "evaluate.h"

#include <stdlib.h>

#include "util/util.h"

/* Inputs and targets of segment k (length len) of the stream. */
static void segment(const int32_t *ids, size_t start, int len, int eos, int32_t *in, int32_t *tg) {
    in[0] = start == 0 ? eos : ids[start - 1];
    for (int t = 0; t < len; t++) {
        if (t > 0) in[t] = ids[start + t - 1];
        tg[t] = ids[start + t];
    }
}

EvalResult eval_nonoverlap(Model *m, const int32_t *ids, size_t n, int L, int eos,
                           EvalProgressFn progress, void *ctx) {
    EvalResult r = {.L = L};
    double t0 = now_seconds();
    int maxB = m->max_B * m->max_T / L;
    if (maxB > m->max_B) maxB = m->max_B;
    if (maxB < 1) maxB = 1;
    size_t cap = (size_t)maxB * L;
    int32_t *in = xcalloc(cap, sizeof *in), *tg = xcalloc(cap, sizeof *tg);
    float *losses = xcalloc(cap, sizeof *losses);
    size_t pos = 0;
    while (pos < n) {
        /* full segments batched together; the final short one alone */
        int len = n - pos >= (size_t)L ? L : (int)(n - pos), B = 0;
        while (B < maxB && pos + (size_t)len <= n && (len == L || B == 0)) {
            segment(ids, pos, len, eos, in + (size_t)B * len, tg + (size_t)B * len);
            pos += (size_t)len;
            B++;
            if (len < L) break;
            if (n - pos < (size_t)L) break;
        }
        model_forward(m, in, B, len, 0, 0);
        r.nll += model_loss(m, tg, losses);
        r.segments += (size_t)B;
        r.tokens += (size_t)B * len;
        if (progress) progress(ctx, pos, n);
    }
    free(in);
    free(tg);
    free(losses);
    r.seconds = now_seconds() - t0;
    return r;
}
