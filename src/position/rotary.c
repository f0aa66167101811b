/* rotary.c — rotary position embeddings (RoPE; Su et al. 2021, RoFormer, arXiv 2104.09864) and
 * the RoPE context-extension family (PI, NTK-aware, dynamic NTK, YaRN).
 *
 * RoFormer eq. 34: pair k of a head (k = 0 .. d_rot/2-1) of q and of k (never v) at 0-based
 * position t is rotated by the angle t*theta_k, theta_k = base^(-2k/d_rot):
 *   x0' = x0 cos - x1 sin,   x1' = x0 sin + x1 cos.
 * So q_i . k_j depends on i - j only. Pairing `interleaved` rotates dims (2k, 2k+1) (RoFormer,
 * GPT-J, the ALiBi paper's rotary baseline); `half` pairs dim k with k + d_rot/2 (GPT-NeoX,
 * LLaMA) — the same function up to a fixed permutation of the head dims. Dims >= rotary_dim
 * pass through. The backward of a rotation is the rotation by -angle (its transpose).
 *
 * Scaling, with s = factor and L = orig_len (the training length):
 *   pi           positions times 1/s (Chen et al. 2023, "Extending Context Window of Large
 *                Language Models via Positional Interpolation", arXiv 2306.15595, sec. 2.2:
 *                f'(x, m) = f(x, mL/L')).
 *   ntk          base -> base * s^(d_rot/(d_rot-2)) (bloc97's "NTK-aware" scaling, as written
 *                in the YaRN paper, Peng et al. 2023, arXiv 2309.00071, sec. 3.1).
 *   dynamic-ntk  ntk with s = max(1, T/L) chosen per segment of length T (YaRN paper sec. 3.3,
 *                "Dynamic Scaling"): no change at or below L.
 *   yarn         "NTK-by-parts" frequencies plus attention temperature (YaRN paper sec. 3.2 and
 *                3.4): with lambda_k = 2 pi / theta_k and r_k = L / lambda_k,
 *                gamma(r) = 0 if r < alpha, 1 if r > beta, (r - alpha)/(beta - alpha) between,
 *                h(theta_k) = (1 - gamma) theta_k / s + gamma theta_k (sec. 3.2);
 *                and softmax(q.k / (t sqrt(D))) with sqrt(1/t) = 0.1 ln(s) + 1 (sec. 3.4), which
 *                the official code (jquesnelle/yarn, LlamaYaRNScaledRotaryEmbedding: cos and sin
 *                times mscale = 0.1 ln(s) + 1) realises by scaling q and k each by sqrt(1/t).
 *                We do the same: the factor is folded into the cos/sin table, so the backward
 *                (the transposed table) is still exact. The paper's ramp is continuous in r; the
 *                official code rounds its ends to whole dims (find_correction_range) — we keep
 *                the paper's form.
 * Angles are computed in double (at positions in the tens of thousands float angles lose
 * digits) and stored as per-position cos/sin tables of (max_T, d_rot/2) floats. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "position.h"

enum { SCALE_NONE, SCALE_PI, SCALE_NTK, SCALE_DYNAMIC_NTK, SCALE_YARN };
static const char *const SCALINGS[] = {"none", "pi", "ntk", "dynamic-ntk", "yarn"};

typedef struct {
    int scaling, half, d_rot, orig_len;
    double base, factor, alpha, beta;
    double built_factor; /* the s the tables hold (dynamic-ntk rebuilds when it changes) */
    int rows;            /* table rows = positions 0 .. rows-1 */
    float *cos, *sin;    /* (rows, d_rot/2), magnitude factor included */
} Rotary;

static const ConfigKey keys[] = {
    {"base", KEY_FLOAT, "10000", 1, 1e12, NULL,
     "theta_k = base^(-2k/rotary_dim) (RoFormer sec. 3.2); must be > 1", NO_FIELD},
    {"rotary_dim", KEY_INT, "0", 0, 1e6, NULL,
     "head dims that rotate (even, <= head dim); 0 = the whole head; the rest pass through",
     NO_FIELD},
    {"rotary_pairing", KEY_ENUM, "\"interleaved\"", 0, 0, "interleaved|half",
     "interleaved: dims (2k, 2k+1) rotate together (RoFormer, GPT-J, the paper's baseline); "
     "half: dim k with k + rotary_dim/2 (GPT-NeoX, LLaMA)",
     NO_FIELD},
    {"scaling", KEY_ENUM, "\"none\"", 0, 0, "none|pi|ntk|dynamic-ntk|yarn",
     "context extension: position interpolation, NTK-aware base, NTK per segment length, YaRN",
     NO_FIELD},
    {"factor", KEY_FLOAT, "1", 1, 1e6, NULL,
     "scale factor s for pi, ntk and yarn (dynamic-ntk picks max(1, T/orig_len) itself)", NO_FIELD},
    {"orig_len", KEY_INT, "0", 0, 1e9, NULL,
     "original training length L for dynamic-ntk and yarn; 0 = train.seq_len", NO_FIELD},
    {"yarn_alpha", KEY_FLOAT, "1", 0, 1e6, NULL,
     "YaRN ramp start: frequencies with fewer than alpha turns over orig_len are interpolated",
     NO_FIELD},
    {"yarn_beta", KEY_FLOAT, "32", 0, 1e6, NULL,
     "YaRN ramp end: frequencies with more than beta turns over orig_len are kept", NO_FIELD},
};
#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))

static int scaling_id(const char *s) {
    for (int i = 0; i < (int)(sizeof SCALINGS / sizeof SCALINGS[0]); i++)
        if (!strcmp(s, SCALINGS[i])) return i;
    return SCALE_NONE; /* unreachable: the enum was checked */
}

static int check(const Config *c, char *err, size_t n) {
    int D = c->model.d_model / c->model.n_heads, d_rot = (int)config_pos_num(c, "rotary_dim");
    int scaling = scaling_id(config_pos_str(c, "scaling"));
    double factor = config_pos_num(c, "factor");
    if (d_rot == 0 && D % 2)
        snprintf(err, n,
                 "model.position.rotary_dim: the head dim (d_model/n_heads = %d) is odd; "
                 "set an even rotary_dim <= %d",
                 D, D);
    else if (d_rot % 2 || d_rot > D)
        snprintf(err, n,
                 "model.position.rotary_dim: expected an even number <= the head dim "
                 "(d_model/n_heads = %d), got %d",
                 D, d_rot);
    else if (config_pos_num(c, "base") <= 1)
        snprintf(err, n, "model.position.base: expected a number > 1, got %g",
                 config_pos_num(c, "base"));
    else if (factor != 1 && (scaling == SCALE_NONE || scaling == SCALE_DYNAMIC_NTK))
        snprintf(err, n, "model.position.factor (%g) has no effect with scaling '%s'%s", factor,
                 SCALINGS[scaling],
                 scaling == SCALE_NONE ? "; choose a scaling method"
                                       : " (it uses max(1, T/orig_len)); leave it at 1");
    else if (config_pos_num(c, "yarn_beta") <= config_pos_num(c, "yarn_alpha"))
        snprintf(err, n, "model.position.yarn_beta (%g) must be greater than yarn_alpha (%g)",
                 config_pos_num(c, "yarn_beta"), config_pos_num(c, "yarn_alpha"));
    else
        return 0;
    return -1;
}

/* YaRN sec. 3.2: the ramp between interpolation (gamma 0) and extrapolation (gamma 1). */
static double yarn_ramp(double r, double alpha, double beta) {
    return r < alpha ? 0.0 : r > beta ? 1.0 : (r - alpha) / (beta - alpha);
}

/* Fills rows [0, rows) of the tables for scale factor s. */
static void build_tables(Rotary *r, double s, int rows) {
    int P = r->d_rot / 2;
    double base = r->base, mscale = 1.0;
    if ((r->scaling == SCALE_NTK || r->scaling == SCALE_DYNAMIC_NTK) && r->d_rot > 2)
        base *= pow(s, (double)r->d_rot / (r->d_rot - 2)); /* NTK-aware (YaRN sec. 3.1) */
    if (r->scaling == SCALE_YARN)
        mscale = 0.1 * log(s) + 1.0; /* YaRN sec. 3.4: sqrt(1/t) on q and k */
    for (int k = 0; k < P; k++) {
        double theta = pow(base, -2.0 * k / r->d_rot);
        if (r->scaling == SCALE_PI) theta /= s; /* PI: position m -> m/s */
        if (r->scaling == SCALE_YARN) {
            double g = yarn_ramp(r->orig_len * theta / (2 * M_PI), r->alpha, r->beta);
            theta = (1 - g) * theta / s + g * theta; /* YaRN sec. 3.2: h(theta) */
        }
        for (int t = 0; t < rows; t++) {
            double a = (double)t * theta;
            r->cos[(size_t)t * P + k] = (float)(mscale * cos(a));
            r->sin[(size_t)t * P + k] = (float)(mscale * sin(a));
        }
    }
    r->built_factor = s;
}

/* The state is one block: the struct, then both tables, so Pos.state frees with free(). */
static void setup(Pos *p, const Config *c) {
    int d_rot = (int)config_pos_num(c, "rotary_dim");
    if (d_rot == 0) d_rot = p->D;
    size_t tab = (size_t)p->max_T * (d_rot / 2);
    Rotary *r = xcalloc(1, sizeof *r + 2 * tab * sizeof(float));
    r->cos = (float *)(r + 1);
    r->sin = r->cos + tab;
    r->d_rot = d_rot;
    r->half = !strcmp(config_pos_str(c, "rotary_pairing"), "half");
    r->scaling = scaling_id(config_pos_str(c, "scaling"));
    r->base = config_pos_num(c, "base");
    r->factor = r->scaling == SCALE_DYNAMIC_NTK ? 1.0 : config_pos_num(c, "factor");
    r->orig_len = (int)config_pos_num(c, "orig_len");
    if (r->orig_len == 0) r->orig_len = c->train.seq_len;
    r->alpha = config_pos_num(c, "yarn_alpha");
    r->beta = config_pos_num(c, "yarn_beta");
    r->rows = p->max_T;
    build_tables(r, r->factor, r->rows);
    p->state = r;
}

/* Dynamic NTK (YaRN sec. 3.3): s = max(1, n/L) for a pass reading positions below n (a segment
 * of n tokens from position 0); rebuild only when s changes. */
static void prepare(Pos *p, int n) {
    Rotary *r = p->state;
    if (r->scaling != SCALE_DYNAMIC_NTK) return;
    double s = fmax(1.0, (double)n / r->orig_len);
    if (s != r->built_factor) build_tables(r, s, r->rows);
}

/* x: B*T rows of H*D floats, row stride ld. Rotates pair k of every head of the row at
 * position t by the table entry (cos, sin)[t*P + k]; sign -1 applies the transpose (the
 * backward). Shared with xpos.c, which passes its own (magnitude-scaled) tables. The hooks pass
 * H = Pos.H for q and Pos.Hkv for k; H = 0 (a Pos built without Hkv) would leave k unrotated
 * without a sound, hence the assert. */
void rope_apply(float *x, size_t ld, const float *cos_t, const float *sin_t, float sign, int B,
                int T, int H, int D, int d_rot, int half) {
    assert(H > 0);
    const int P = d_rot / 2;
    const int stride = half ? 1 : 2, other = half ? P : 1; /* pair k: dims k*stride, +other */
#pragma omp parallel for schedule(static)
    for (long n = 0; n < (long)B * T; n++) {
        const float *c = cos_t + (size_t)(n % T) * P, *s = sin_t + (size_t)(n % T) * P;
        for (int h = 0; h < H; h++) {
            float *v = x + (size_t)n * ld + (size_t)h * D;
            for (int k = 0; k < P; k++) {
                float x0 = v[k * stride], x1 = v[k * stride + other], sk = sign * s[k];
                v[k * stride] = x0 * c[k] - x1 * sk;
                v[k * stride + other] = x0 * sk + x1 * c[k];
            }
        }
    }
}

/* The tables from row pos0 on: row t of the segment is at position pos0 + t. */
static void rotate_forward(const Pos *p, float *q, float *k, size_t ld, int layer, int B, int T,
                           int pos0) {
    (void)layer;
    const Rotary *r = p->state;
    const size_t at = (size_t)pos0 * (r->d_rot / 2);
    rope_apply(q, ld, r->cos + at, r->sin + at, 1.0f, B, T, p->H, p->D, r->d_rot, r->half);
    rope_apply(k, ld, r->cos + at, r->sin + at, 1.0f, B, T, p->Hkv, p->D, r->d_rot, r->half);
}

static void rotate_backward(Pos *p, float *dq, float *dk, size_t ld, int layer, int B, int T,
                            int pos0) {
    (void)layer;
    const Rotary *r = p->state;
    const size_t at = (size_t)pos0 * (r->d_rot / 2);
    rope_apply(dq, ld, r->cos + at, r->sin + at, -1.0f, B, T, p->H, p->D, r->d_rot, r->half);
    rope_apply(dk, ld, r->cos + at, r->sin + at, -1.0f, B, T, p->Hkv, p->D, r->d_rot, r->half);
}

/* Dynamic NTK's frequencies follow the pass's length (prepare): keys cached while the sequence
 * was short were rotated with other frequencies than the queries of a longer pass. The other
 * scalings have fixed tables. */
static const char *cache_refusal(const Config *c) {
    if (scaling_id(config_pos_str(c, "scaling")) != SCALE_DYNAMIC_NTK) return NULL;
    return "rotary with scaling dynamic-ntk rebuilds its frequencies for every length, so keys "
           "cached at one length are wrong at the next (use ntk or yarn with a fixed factor)";
}

const PosMethod pos_rotary = {
    .name = "rotary",
    .summary = "rotate q and k by position (RoPE), with PI/NTK/dynamic-NTK/YaRN extension",
    .label = "Rotary",
    .color = "#2ca02c",
    .keys = keys,
    .n_keys = N_KEYS,
    .check = check,
    .cache_refusal = cache_refusal,
    .setup = setup,
    .prepare = prepare,
    .rotate_forward = rotate_forward,
    .rotate_backward = rotate_backward,
};
