/* evaluate.c — see evaluate.h. Full-length windows are batched, up to the model's capacity, so
 * short L_valid run many windows per forward pass; a window cut short by the end of the stream
 * (or a stream shorter than L) runs alone. */
#include "evaluate.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "generation.h"
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

/* ---- NBCE ---- */

/* Scratch of one NBCE evaluation: inputs of one forward, and per scored row a chunk's
 * distribution, the lowest-entropy chunk's distribution and its entropy, and the unconditional
 * distribution; one combined row. */
typedef struct {
    int32_t *in;
    float *rows, *best, *uncond, *mix;
    double *best_h;
} NbceScratch;

/* The inputs of stream tokens [a, b) (ids shifted right by one, <eos> before the stream). */
static void inputs_of(const int32_t *ids, size_t a, size_t b, int eos, int32_t *in) {
    for (size_t t = a; t < b; t++) in[t - a] = t == 0 ? eos : ids[t - 1];
}

/* Losses of tokens [q0, q1) given context [c0, q0) in chunks of M (see eval_nbce). */
static void nbce_span(Model *m, const int32_t *ids, size_t c0, size_t q0, size_t q1, int M,
                      float beta, int eos, NbceScratch *sc, double *loss) {
    const size_t V = (size_t)m->spec.V, nq = q1 - q0;
    for (size_t r = 0; r < nq; r++) sc->best_h[r] = INFINITY;
    for (size_t a = c0; a < q0; a += (size_t)M) {
        const int len = q0 - a < (size_t)M ? (int)(q0 - a) : M;
        inputs_of(ids, a, a + (size_t)len, eos, sc->in);
        inputs_of(ids, q0, q1, eos, sc->in + len);
        const Pass p = {.B = 1, .T = len + (int)nq};
        model_forward(m, &p, sc->in);
        model_logprobs(m, &p, (size_t)len, nq, sc->rows);
        for (size_t r = 0; r < nq; r++) {
            const double h = logp_entropy(sc->rows + r * V, (int)V);
            if (h < sc->best_h[r]) {
                sc->best_h[r] = h;
                memcpy(sc->best + r * V, sc->rows + r * V, sizeof(float) * V);
            }
        }
    }
    inputs_of(ids, q0, q1, eos, sc->in);
    const Pass p = {.B = 1, .T = (int)nq};
    model_forward(m, &p, sc->in);
    model_logprobs(m, &p, 0, nq, sc->uncond);
    for (size_t r = 0; r < nq; r++) {
        const float *u = sc->uncond + r * V, *best = sc->best + r * V;
        /* without any context (a stream shorter than S) the plain model's loss stands */
        if (c0 < q0) {
            nbce_combine(sc->mix, &best, 1, u, (int)V, beta);
            u = sc->mix;
        }
        loss[r] = -u[ids[q0 + r]];
    }
}

EvalResult eval_nbce(Model *m, const int32_t *ids, size_t n, int W, int S, int M, float beta,
                     int eos, EvalPositions *pos, EvalProgressFn progress, void *ctx) {
    assert(S >= 1 && S < W && M >= 1 && M + S <= m->state.max_T);
    EvalResult r = {.L = W, .stride = S};
    const double t0 = now_seconds();
    const size_t V = (size_t)m->spec.V, nw = eval_window_count(n, W, S);
    NbceScratch sc = {.in = xcalloc((size_t)M + S, sizeof(int32_t)),
                      .rows = xcalloc((size_t)S * V, sizeof(float)),
                      .best = xcalloc((size_t)S * V, sizeof(float)),
                      .uncond = xcalloc((size_t)S * V, sizeof(float)),
                      .mix = xcalloc(V, sizeof(float)),
                      .best_h = xcalloc((size_t)S, sizeof(double))};
    float *seg = xcalloc((size_t)M, sizeof(float));
    double *loss = xcalloc((size_t)S, sizeof(double));
    for (size_t k = 0; k < nw; k++) {
        const EvalWindow w = eval_window(n, W, S, k);
        /* window 0: the tokens before its last S in nonoverlapping segments of M */
        size_t q0 = w.score;
        if (k == 0) {
            q0 = w.end > (size_t)S ? w.end - (size_t)S : 0;
            for (size_t a = 0; a < q0; a += (size_t)M) {
                const int len = q0 - a < (size_t)M ? (int)(q0 - a) : M;
                inputs_of(ids, a, a + (size_t)len, eos, sc.in);
                const Pass p = {.B = 1, .T = len};
                model_forward(m, &p, sc.in);
                model_loss(m, &p, ids + a, seg);
                for (int t = 0; t < len; t++) {
                    r.nll += seg[t];
                    if (pos && pos->nll) pos->nll[a + (size_t)t] += seg[t], pos->count[a + t]++;
                    if (pos && pos->window_nll) pos->window_nll[0] += seg[t];
                }
            }
        }
        nbce_span(m, ids, w.start, q0, w.end, M, beta, eos, &sc, loss);
        double window = 0.0;
        for (size_t t = q0; t < w.end; t++) {
            const double l = loss[t - q0];
            window += l;
            if (pos && pos->nll) pos->nll[t - w.start] += l, pos->count[t - w.start]++;
        }
        r.nll += window;
        if (pos && pos->window_nll) pos->window_nll[k] += window;
        r.tokens += w.end - w.score;
        r.segments++;
        if (progress) progress(ctx, r.tokens, n);
    }
    free(sc.in), free(sc.rows), free(sc.best), free(sc.uncond), free(sc.mix), free(sc.best_h);
    free(seg), free(loss);
    r.seconds = now_seconds() - t0;
    return r;
}
