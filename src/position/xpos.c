/* xpos.c — xPos (Sun et al. 2022, "A Length-Extrapolatable Transformer", arXiv 2212.10554):
 * rotary embeddings (interleaved pairs, the whole head, theta_k = base^(-2k/D); see rotary.c)
 * with an exponential decay of the q.k product with distance.
 *
 * Paper sec. 3.2 (and the official torchscale XPOS module): per pair k,
 *   zeta_k = (2k/D + gamma) / (1 + gamma),     gamma = 0.4 (torchscale: (2k + 0.4 D)/(1.4 D))
 * q at position n is scaled by zeta_k^(n/scale_base) and k at position m by zeta_k^(-m/scale_base),
 * so q_n . k_m carries zeta_k^((n-m)/scale_base) <= 1: a decay that, like the rotation, depends
 * on n - m only. scale_base = 512 as in the paper.
 *
 * Only n - m matters, so positions may be shifted by any constant c without changing a score.
 * Like torchscale (which starts at -(T//2)) we use c = T/2: with 0-based positions the scales
 * would reach zeta_0^(±T/512) = 0.29^(±62) ≈ 1e±34 at T = 32000, at the edge of float's range;
 * centred they stay within 1e±17. c depends on T, so the scaled tables are rebuilt in prepare()
 * when the segment length changes.
 *
 * Even centred, the scales reach e^±E with E = (T/2) |ln zeta_0| / scale_base, and past e^88 a
 * float is inf (then the scores are NaN: the former minimum scale_base 1e-6 diverged at step 1 at
 * every length). E is kept <= 64, which leaves float room for the q, k values and the products
 * of the backward: check() refuses a scale_base too small for train.seq_len, naming the smallest
 * that fits, and max_positions() reports the longest length the scale_base allows, which ./eval
 * checks every L_valid against, as for learned positions' table. The static minimum 1 is a floor
 * below any sensible setting (at 1, pair 0 already decays by zeta_0 = 0.29 per token), not the
 * rule. */
#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../util/util.h"
#include "position.h"

void rope_apply(float *x, size_t ld, const float *cos_t, const float *sin_t, float sign, int B,
                int T, int H, int D, int d_rot, int half);

typedef struct {
    double base, gamma, scale_base;
    int built_T;              /* segment length the tables are centred for (0: none yet) */
    float *cq, *sq, *ck, *sk; /* (max_T, D/2): cos/sin times zeta^(±(t-c)/scale_base) */
} Xpos;

static const ConfigKey keys[] = {
    {"base", KEY_FLOAT, "10000", 1, 1e12, NULL, "theta_k = base^(-2k/D); must be > 1", NO_FIELD},
    {"xpos_gamma", KEY_FLOAT, "0.4", 1e-30, 1e6, NULL, /* > 0: the tiny min */
     "zeta_k = (2k/D + gamma)/(1 + gamma): the per-pair decay base; must be > 0", NO_FIELD},
    {"xpos_scale_base", KEY_FLOAT, "512", 1, 1e12, NULL,
     "q.k decays as zeta_k^((i-j)/scale_base); at least (T/2) |ln zeta_0| / 64 for the training "
     "and evaluation lengths T, so the q and k scales stay in float's range",
     NO_FIELD},
};

/* The q and k scales of a segment of length T reach e^((T/2) |ln zeta_0| / scale_base) (see the
 * top), kept <= e^64 by a scale_base of at least this. */
#define MAX_EXPONENT 64.0
static double min_scale_base(int T, double gamma) {
    return (T / 2) * -log(gamma / (1.0 + gamma)) / MAX_EXPONENT;
}

/* The longest T whose (T/2) stays within the bound above: the one place that decides, so
 * training (check) and evaluation (./eval's length check, setup's assert) agree exactly. */
static int max_positions(const Config *c) {
    double gamma = config_pos_num(c, "xpos_gamma"),
           half = floor(MAX_EXPONENT * config_pos_num(c, "xpos_scale_base") /
                        -log(gamma / (1.0 + gamma)));
    return half < (INT_MAX - 1) / 2 ? 2 * (int)half + 1 : INT_MAX;
}

static int check(const Config *c, char *err, size_t n) {
    int D = c->model.d_model / c->model.n_heads, T = c->train.seq_len;
    double gamma = config_pos_num(c, "xpos_gamma"),
           scale_base = config_pos_num(c, "xpos_scale_base");
    if (D % 2)
        snprintf(err, n, "model.d_model/model.n_heads = %d: xpos needs an even head dim", D);
    else if (config_pos_num(c, "base") <= 1)
        snprintf(err, n, "model.position.base: expected a number > 1, got %g",
                 config_pos_num(c, "base"));
    else if (gamma <= 0)
        snprintf(err, n, "model.position.xpos_gamma: expected a number > 0, got %g", gamma);
    else if (T > max_positions(c))
        snprintf(err, n,
                 "model.position.xpos_scale_base: %g is too small for train.seq_len %d (the q and "
                 "k scales would pass e^64, near float's limit); use at least %.4g",
                 scale_base, T, min_scale_base(T, gamma));
    else
        return 0;
    return -1;
}

static void setup(Pos *p, const Config *c) {
    double gamma = config_pos_num(c, "xpos_gamma"),
           scale_base = config_pos_num(c, "xpos_scale_base");
    assert(p->max_T <= max_positions(c)); /* check() and ./eval's length check come first */
    size_t tab = (size_t)p->max_T * (p->D / 2);
    Xpos *x = xcalloc(1, sizeof *x + 4 * tab * sizeof(float));
    x->cq = (float *)(x + 1);
    x->sq = x->cq + tab;
    x->ck = x->sq + tab;
    x->sk = x->ck + tab;
    x->base = config_pos_num(c, "base");
    x->gamma = gamma;
    x->scale_base = scale_base;
    p->state = x;
}

/* Tables for positions 0 .. T-1 (a pass reading positions below T; centred at c = T/2), built
 * in double. */
static void prepare(Pos *p, int T) {
    Xpos *x = p->state;
    if (x->built_T == T) return;
    const int D = p->D, P = D / 2, c = T / 2;
    for (int k = 0; k < P; k++) {
        double theta = pow(x->base, -2.0 * k / D);
        double log_zeta = log((2.0 * k / D + x->gamma) / (1.0 + x->gamma));
        for (int t = 0; t < T; t++) {
            double a = (double)t * theta, z = exp((t - c) * log_zeta / x->scale_base);
            size_t i = (size_t)t * P + k;
            x->cq[i] = (float)(cos(a) * z);
            x->sq[i] = (float)(sin(a) * z);
            x->ck[i] = (float)(cos(a) / z);
            x->sk[i] = (float)(sin(a) / z);
        }
    }
    x->built_T = T;
}

/* The tables from row pos0 on: row t of the segment is at position pos0 + t. */
static void rotate_forward(const Pos *p, float *q, float *k, size_t ld, int layer, int B, int T,
                           int pos0) {
    (void)layer;
    const Xpos *x = p->state;
    const size_t at = (size_t)pos0 * (p->D / 2);
    rope_apply(q, ld, x->cq + at, x->sq + at, 1.0f, B, T, p->H, p->D, p->D, 0);
    rope_apply(k, ld, x->ck + at, x->sk + at, 1.0f, B, T, p->Hkv, p->D, p->D, 0);
}

/* The forward is a rotation times a diagonal scale per pair: its transpose is the same table
 * with the sine negated. */
static void rotate_backward(Pos *p, float *dq, float *dk, size_t ld, int layer, int B, int T,
                            int pos0) {
    (void)layer;
    const Xpos *x = p->state;
    const size_t at = (size_t)pos0 * (p->D / 2);
    rope_apply(dq, ld, x->cq + at, x->sq + at, -1.0f, B, T, p->H, p->D, p->D, 0);
    rope_apply(dk, ld, x->ck + at, x->sk + at, -1.0f, B, T, p->Hkv, p->D, p->D, 0);
}

/* The scales are centred on the pass's length (prepare), so a key cached during a short pass
 * carries a different centre from the queries of a later, longer one. */
static const char *cache_refusal(const Config *c) {
    (void)c;
    return "xpos centres its q and k scales on the length of each pass, so keys cached at one "
           "length are wrong at the next";
}

const PosMethod pos_xpos = {
    .name = "xpos",
    .summary = "rotary with a per-pair decay zeta^((i-j)/scale_base) of q.k (Sun et al. 2022)",
    .label = "xPos",
    .color = "#8c564b",
    .keys = keys,
    .n_keys = (int)(sizeof keys / sizeof keys[0]),
    .check = check,
    .max_positions_key = "xpos_scale_base",
    .max_positions = max_positions,
    .cache_refusal = cache_refusal,
    .setup = setup,
    .prepare = prepare,
    .rotate_forward = rotate_forward,
    .rotate_backward = rotate_backward,
};
