/* evaluate.c — see evaluate.h. Full-length windows are batched, up to the model's capacity, so
 * short L_valid run many windows per forward pass; a window cut short by the end of the stream
 * (or a stream shorter than L) runs alone. */
#include "evaluate.h"

#include <assert.h>
#include <stdlib.h>

#include "util/util.h"

size_t eval_window_count(size_t n, int L, int S) {
    if (n == 0) return 0;
    if (n <= (size_t)L) return 1;
    return 1 + (n - (size_t)L + (size_t)S - 1) / (size_t)S; /* 1 + ceil((n - L) / S) */
}

EvalWindow eval_window(size_t n, int L, int S, size_t k) {
    size_t start = k * (size_t)S, end = start + (size_t)L;
    /* window k-1 reached (k-1)S + L: everything before that is already scored */
    size_t score = k == 0 ? 0 : start - (size_t)S + (size_t)L;
    if (end > n) end = n;
    assert(score < end);
    return (EvalWindow){start, score, end};
}

size_t eval_tokens_read(size_t n, int L, int S) {
    size_t total = 0, w = eval_window_count(n, L, S);
    for (size_t k = 0; k < w; k++) {
        EvalWindow x = eval_window(n, L, S, k);
        total += x.end - x.start;
    }
    return total;
}

/* Inputs and targets of a window: the targets are ids[start, start+len), the inputs the same
 * shifted right by one, <eos> before the first token of the stream. */
static void window_io(const int32_t *ids, size_t start, int len, int eos, int32_t *in,
                      int32_t *tg) {
    in[0] = start == 0 ? eos : ids[start - 1];
    for (int t = 0; t < len; t++) {
        if (t > 0) in[t] = ids[start + t - 1];
        tg[t] = ids[start + t];
    }
}

/* Sums the scored losses of B windows of length len (windows k0 .. k0+B-1) into r and pos. The
 * sum runs in one fixed order (window, then position) so a result is reproducible bit for bit. */
static void score(EvalResult *r, EvalPositions *pos, const float *losses, size_t n, int L, int S,
                  size_t k0, int B, int len) {
    double sum = 0.0;
    for (int b = 0; b < B; b++) {
        EvalWindow w = eval_window(n, L, S, k0 + (size_t)b);
        const float *l = losses + (size_t)b * len;
        double window = 0.0;
        for (size_t t = w.score - w.start; t < w.end - w.start; t++) {
            sum += l[t], window += l[t];
            if (pos && pos->nll) pos->nll[t] += l[t], pos->count[t]++;
        }
        if (pos && pos->window_nll) pos->window_nll[k0 + (size_t)b] = window;
        r->tokens += w.end - w.score;
    }
    r->nll += sum;
    r->segments += (size_t)B;
}

EvalResult eval_sliding(Model *m, const int32_t *ids, size_t n, int L, int S, int eos,
                        EvalPositions *pos, EvalProgressFn progress, void *ctx) {
    assert(L >= 1 && L <= m->state.max_T && S >= 1 && S <= L);
    EvalResult r = {.L = L, .stride = S};
    double t0 = now_seconds();
    size_t cap_tokens = (size_t)m->state.max_B * m->state.max_T;
    int maxB = (int)(cap_tokens / (size_t)L);
    if (maxB > m->state.max_B) maxB = m->state.max_B;
    if (maxB < 1) maxB = 1;
    size_t cap = (size_t)maxB * L;
    int32_t *in = xcalloc(cap, sizeof *in), *tg = xcalloc(cap, sizeof *tg);
    float *losses = xcalloc(cap, sizeof *losses);
    size_t nw = eval_window_count(n, L, S);
    for (size_t k = 0; k < nw;) {
        /* consecutive full-length windows together; a shorter one alone */
        EvalWindow w = eval_window(n, L, S, k);
        int len = (int)(w.end - w.start), B = 0;
        while (B < maxB && k + (size_t)B < nw) {
            EvalWindow x = eval_window(n, L, S, k + (size_t)B);
            if ((int)(x.end - x.start) != len || (B > 0 && len < L)) break;
            window_io(ids, x.start, len, eos, in + (size_t)B * len, tg + (size_t)B * len);
            B++;
        }
        Pass p = {.B = B, .T = len};
        model_forward(m, &p, in);
        model_loss(m, &p, tg, losses);
        score(&r, pos, losses, n, L, S, k, B, len);
        k += (size_t)B;
        if (progress) progress(ctx, r.tokens, n);
    }
    free(in);
    free(tg);
    free(losses);
    r.seconds = now_seconds() - t0;
    return r;
}

EvalResult eval_nonoverlap(Model *m, const int32_t *ids, size_t n, int L, int eos,
                           EvalProgressFn progress, void *ctx) {
    return eval_sliding(m, ids, n, L, L, eos, NULL, progress, ctx);
}
