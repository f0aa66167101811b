/* kerple_log.c — KERPLE, logarithmic variant (Chi, Fan, Ramadge & Rudnicky, NeurIPS 2022,
 * "KERPLE: Kernelized Relative Positional Embedding for Length Extrapolation", arXiv
 * 2205.09921, eq. for the "log" conditionally positive definite kernel):
 *
 *   bias_lh(i, j) = -r1_lh * log(1 + r2_lh * (i - j)),     r1, r2 > 0, per layer l and head h
 *
 * added to the scaled score like ALiBi's (KERPLE reduces to an ALiBi-like penalty that grows
 * logarithmically). The official code keeps r1 ("bias_p") and r2 ("bias_a") positive by
 * clamping the raw values at 0.01 in every forward pass and initializes them uniform in (0, 2)
 * and (0, 1). Clamping is a projection our optimizer does not do, and the finite-difference
 * check sets raw values anywhere in (-0.3, 0.3), so we store raw tensors pos.kerple.r1 and
 * pos.kerple.r2 (n_layers, H) and use r = softplus(raw) = log(1 + e^raw): always positive and
 * smooth. init() draws r1 ~ U(0.01, 2), r2 ~ U(0.01, 1) (the official ranges with its clamp)
 * and stores raw = softplus^-1(r) = log(e^r - 1).
 *
 * prepare() tabulates the bias per (layer, head, distance), so a pair costs one load; backward
 * sums dscores per distance first, then d r1 = sum_n S(n) * -log(1 + r2 n) and
 * d r2 = sum_n S(n) * -r1 n / (1 + r2 n), times d softplus = sigmoid(raw). */
#include <math.h>
#include <stdlib.h>

#include "../util/util.h"
#include "position.h"

typedef struct {
    int r1_idx, r2_idx; /* pos.kerple.r1, pos.kerple.r2 */
    double *sums;       /* (H, max_T) backward scratch, or NULL */
    float bias[];       /* (n_layers, H, max_T) bias by distance, filled by prepare() */
} Kerple;

static double softplus(double x) {
    return x > 30 ? x : log1p(exp(x));
}
static double sigmoid(double x) {
    return 1.0 / (1.0 + exp(-x));
}

static void declare(const Config *c, ParamTable *pt) {
    size_t L = (size_t)c->model.n_layers, H = (size_t)c->model.n_heads;
    param_add(pt, "pos.kerple.r1", 0, PARAM_POS, 2, L, H);
    param_add(pt, "pos.kerple.r2", 0, PARAM_POS, 2, L, H);
}

static void setup(Pos *p, const Config *c) {
    (void)c;
    size_t T = (size_t)p->max_T, H = (size_t)p->H, n_sums = p->grads ? H * T : 0;
    size_t n_bias = (size_t)p->n_layers * H * T;
    size_t off = (sizeof(Kerple) + sizeof(float) * n_bias + 63) / 64 * 64;
    Kerple *k = xcalloc(1, off + sizeof(double) * n_sums); /* one block, freed with free() */
    k->r1_idx = param_find(p->pt, "pos.kerple.r1");
    k->r2_idx = param_find(p->pt, "pos.kerple.r2");
    k->sums = n_sums ? (double *)((char *)k + off) : NULL;
    p->state = k;
}

static void init(Pos *p, unsigned long long key) {
    const Kerple *k = p->state;
    size_t n = (size_t)p->n_layers * p->H;
    float *r1 = p->params + p->pt->t[k->r1_idx].offset;
    float *r2 = p->params + p->pt->t[k->r2_idx].offset;
    for (size_t i = 0; i < n; i++) {
        double a = 0.01 + 1.99 * rng_uniform(key, 2 * i),
               b = 0.01 + 0.99 * rng_uniform(key, 2 * i + 1);
        r1[i] = (float)log(expm1(a));
        r2[i] = (float)log(expm1(b));
    }
}

static void prepare(Pos *p, int T) {
    Kerple *k = p->state;
    size_t n = (size_t)p->n_layers * p->H;
    const float *r1 = p->params + p->pt->t[k->r1_idx].offset;
    const float *r2 = p->params + p->pt->t[k->r2_idx].offset;
    for (size_t lh = 0; lh < n; lh++) {
        double a = softplus(r1[lh]), b = softplus(r2[lh]);
        float *bias = k->bias + lh * p->max_T;
        for (int d = 0; d < T; d++) bias[d] = (float)(-a * log1p(b * d));
    }
}

static void bias_forward(const Pos *p, float *scores, size_t ld, int layer, int h, int i0, int ni,
                         int j0, int nj) {
    const Kerple *k = p->state;
    const float *b = k->bias + ((size_t)layer * p->H + h) * p->max_T;
    for (int r = 0; r < ni; r++) pos_add_distance_bias(scores + (size_t)r * ld, b, i0 + r, j0, nj);
}

/* The kernel's bias, from the raw parameters. */
static double bias_reference(const Pos *p, int layer, int h, int i, int j) {
    const Kerple *k = p->state;
    const size_t lh = (size_t)layer * p->H + h;
    double r1 = softplus(p->params[p->pt->t[k->r1_idx].offset + lh]);
    double r2 = softplus(p->params[p->pt->t[k->r2_idx].offset + lh]);
    return -r1 * log(1.0 + r2 * (i - j));
}

static void bias_backward(Pos *p, const float *dscores, int layer, int B, int T) {
    Kerple *k = p->state;
    size_t lh0 = (size_t)layer * p->H;
    const float *r1 = p->params + p->pt->t[k->r1_idx].offset + lh0;
    const float *r2 = p->params + p->pt->t[k->r2_idx].offset + lh0;
    float *g1 = p->grads + p->pt->t[k->r1_idx].offset + lh0;
    float *g2 = p->grads + p->pt->t[k->r2_idx].offset + lh0;
    pos_bias_distance_sums(k->sums, dscores, B, p->H, T, T);
    for (int h = 0; h < p->H; h++) {
        const double *s = k->sums + (size_t)h * T;
        double a = softplus(r1[h]), b = softplus(r2[h]), da = 0.0, db = 0.0;
        for (int d = 1; d < T; d++) {
            da -= s[d] * log1p(b * d);
            db -= s[d] * a * d / (1.0 + b * d);
        }
        g1[h] += (float)(da * sigmoid(r1[h]));
        g2[h] += (float)(db * sigmoid(r2[h]));
    }
}

const PosMethod pos_kerple_log = {
    .name = "kerple_log",
    .summary = "KERPLE log bias -r1*log(1+r2*(i-j)) on the scores, r1, r2 learned per layer, head",
    .label = "KERPLE-log",
    .color = "#e377c2",
    .declare = declare,
    .setup = setup,
    .init = init,
    .prepare = prepare,
    .bias_forward = bias_forward,
    .bias_backward = bias_backward,
    .bias_reference = bias_reference,
};
