/* fire.c — FIRE, Functional Interpolation for Relative Positions (Li, You, Bhojanapalli, Li,
 * Rawat, Reddi, Ye, Chern, Yu, Kumar & Chaudhuri, ICLR 2024, arXiv 2310.04418), section 3.2
 * (eq. 3.4 with the log transform of 3.3 and the thresholded normalizer), as in the paper's
 * PyTorch listing (appendix):
 *
 *   bias_lh(i, j) = f_l(psi(i - j) / (psi(max(i, thr_l)) + eps))_h,   psi(x) = log(|c_l x| + 1)
 *   thr_l = |Lmult_l * init_L|,   f_l(x) = W2 relu(W1 x + b1) + b2   (1 -> width -> H)
 *
 * Positions i, j are 0-based (the listing's torch.arange). c_l and Lmult_l are learned per
 * layer (the listing's c and L_multiplier; init c = init_c = 0.1, L_multiplier = 1 so thr
 * starts at init_L = 512, a constant), eps = 1e-6, and the MLP of each layer has one output
 * per head. The absolute values are the listing's way of keeping c and thr non-negative.
 * MLP init: PyTorch's nn.Linear default, uniform(+-1/sqrt(fan_in)). ReLU as in the paper
 * (its kinks are where the gradient check uses one-sided differences). b2 shifts every score
 * of a head by the same amount, which the softmax cancels: its gradient is zero up to
 * rounding and its value has no effect (kept to hold the listing's whole MLP).
 *
 * Tensors (per layer l): pos.fire.c (L), pos.fire.L_mult (L), pos.fire.w1 (L, W),
 * pos.fire.b1 (L, W), pos.fire.w2 (L, H, W), pos.fire.b2 (L, H).
 *
 * Speed: for rows i <= thr the normalizer is psi(thr), the same for the whole row, so the bias
 * depends on i - j only: prepare() tabulates it per (layer, head, distance) and such a pair is
 * one load. Rows i > thr (sequences longer than the threshold, e.g. evaluation far beyond
 * init_L) have their own normalizer psi(i) and evaluate the MLP per pair, in bias_forward and
 * in backward (serially, in a fixed order, so gradients are reproducible). */
#include <math.h>
#include <stdlib.h>

#include "../util/util.h"
#include "position.h"

#define FIRE_EPS 1e-6 /* the listing's eps, added to the normalizer */

enum { P_C, P_LMULT, P_W1, P_B1, P_W2, P_B2, N_TENSORS };
static const char *const tensor_names[N_TENSORS] = {
    "pos.fire.c", "pos.fire.L_mult", "pos.fire.w1", "pos.fire.b1", "pos.fire.w2", "pos.fire.b2"};

typedef struct {
    int W; /* MLP width */
    double init_L, init_c;
    int idx[N_TENSORS];
    double *thr, *norm; /* (L) threshold and psi(thr) + eps, set by prepare() */
    double *psi;        /* (L, max_T) psi(n) */
    float *bias;        /* (L, H, max_T) bias by distance for rows i <= thr */
    double *sums;       /* (H, max_T) backward scratch, or NULL */
    double *acc;        /* backward accumulators: dW1, db1 (W each), dW2 (H*W), db2 (H) */
    double *hid, *dhid; /* (W) MLP scratch for backward */
} Fire;

static const ConfigKey keys[] = {
    {"mlp_width", KEY_INT, "32", 1, 4096, NULL, "hidden width of each layer's bias MLP", NO_FIELD},
    {"init_c", KEY_FLOAT, "0.1", 1e-9, 1e9, NULL,
     "initial c of the log transform psi(x) = log(c x + 1)", NO_FIELD},
    {"init_L", KEY_FLOAT, "512", 1e-9, 1e9, NULL,
     "threshold scale: thr = |L_mult| * init_L, L_mult learned from 1", NO_FIELD},
};

static void declare(const Config *c, ParamTable *pt) {
    size_t L = (size_t)c->model.n_layers, H = (size_t)c->model.n_heads;
    size_t W = (size_t)config_pos_num(c, "mlp_width");
    param_add(pt, tensor_names[P_C], 0, PARAM_POS, 1, L);
    param_add(pt, tensor_names[P_LMULT], 0, PARAM_POS, 1, L);
    param_add(pt, tensor_names[P_W1], 0, PARAM_POS, 2, L, W);
    param_add(pt, tensor_names[P_B1], 0, PARAM_POS, 2, L, W);
    param_add(pt, tensor_names[P_W2], 0, PARAM_POS, 3, L, H, W);
    param_add(pt, tensor_names[P_B2], 0, PARAM_POS, 2, L, H);
}

static void setup(Pos *p, const Config *c) {
    size_t L = (size_t)p->n_layers, H = (size_t)p->H, T = (size_t)p->max_T;
    size_t W = (size_t)config_pos_num(c, "mlp_width"), n_sums = p->grads ? H * T : 0;
    size_t n_dbl = 2 * L + L * T + n_sums + 2 * W + H * W + H + 2 * W;
    size_t head = (sizeof(Fire) + 63) / 64 * 64;
    Fire *f = xcalloc(1, head + sizeof(double) * n_dbl + sizeof(float) * L * H * T); /* one block */
    f->W = (int)W;
    f->init_L = config_pos_num(c, "init_L");
    f->init_c = config_pos_num(c, "init_c");
    for (int k = 0; k < N_TENSORS; k++) f->idx[k] = param_find(p->pt, tensor_names[k]);
    double *d = (double *)((char *)f + head);
    f->thr = d, d += L;
    f->norm = d, d += L;
    f->psi = d, d += L * T;
    f->sums = n_sums ? d : NULL, d += n_sums;
    f->acc = d, d += 2 * W + H * W + H;
    f->hid = d, d += W;
    f->dhid = d, d += W;
    f->bias = (float *)d;
    p->state = f;
}

static float *tensor(const Pos *p, float *base, int k, int layer) {
    const Fire *f = p->state;
    const TensorSpec *t = &p->pt->t[f->idx[k]];
    return base + t->offset + (size_t)layer * (t->numel / (size_t)p->n_layers);
}

static void init(Pos *p, unsigned long long key) {
    const Fire *f = p->state;
    double b2 = 1.0 / sqrt((double)f->W); /* 1/sqrt(fan_in) of the second layer; 1 for the first */
    for (int k = 0; k < N_TENSORS; k++) {
        const TensorSpec *t = &p->pt->t[f->idx[k]];
        float *w = p->params + t->offset;
        uint64_t kk = rng_key(key, (uint64_t)k);
        for (size_t i = 0; i < t->numel; i++) {
            double u = 2.0 * rng_uniform(kk, i) - 1.0;
            w[i] = (float)(k == P_C ? f->init_c : k == P_LMULT ? 1.0 : k <= P_B1 ? u : u * b2);
        }
    }
}

/* The MLP of one layer at input x, output of head h. */
static float mlp(const Pos *p, int layer, int h, float x) {
    const Fire *f = p->state;
    const float *w1 = tensor(p, p->params, P_W1, layer), *b1 = tensor(p, p->params, P_B1, layer);
    const float *w2 = tensor(p, p->params, P_W2, layer) + (size_t)h * f->W;
    float y = tensor(p, p->params, P_B2, layer)[h];
    for (int k = 0; k < f->W; k++) {
        float z = w1[k] * x + b1[k];
        y += w2[k] * (z > 0 ? z : 0);
    }
    return y;
}

static void prepare(Pos *p, int T) {
    Fire *f = p->state;
    for (int l = 0; l < p->n_layers; l++) {
        double c = fabs(tensor(p, p->params, P_C, l)[0]);
        f->thr[l] = fabs(tensor(p, p->params, P_LMULT, l)[0] * f->init_L);
        f->norm[l] = log1p(c * f->thr[l]) + FIRE_EPS;
        double *psi = f->psi + (size_t)l * p->max_T;
        for (int n = 0; n < T; n++) psi[n] = log1p(c * n);
        for (int h = 0; h < p->H; h++) {
            float *b = f->bias + ((size_t)l * p->H + h) * p->max_T;
            for (int n = 0; n < T; n++) b[n] = mlp(p, l, h, (float)(psi[n] / f->norm[l]));
        }
    }
}

static void bias_forward(const Pos *p, float *scores, size_t ld, int layer, int h, int i0, int ni,
                         int j0, int nj) {
    const Fire *f = p->state;
    const float *b = f->bias + ((size_t)layer * p->H + h) * p->max_T;
    const double *psi = f->psi + (size_t)layer * p->max_T;
    for (int r = 0; r < ni; r++) {
        int i = i0 + r;
        float *row = scores + (size_t)r * ld;
        if (i <= f->thr[layer]) {
            pos_add_distance_bias(row, b, i, j0, nj);
        } else {
            int jmax = i - j0 + 1 < nj ? i - j0 + 1 : nj; /* keys j <= i only */
            double norm = psi[i] + FIRE_EPS;
            for (int c = 0; c < jmax; c++)
                row[c] += mlp(p, layer, h, (float)(psi[i - (j0 + c)] / norm));
        }
    }
}

/* Eq. 3.4 for one pair, in double, as the listing computes it: no table, and the normalizer
 * psi(max(i, thr)) of every row from the parameters. */
static double bias_reference(const Pos *p, int layer, int h, int i, int j) {
    const Fire *f = p->state;
    const double c = fabs(tensor(p, p->params, P_C, layer)[0]);
    const double thr = fabs(tensor(p, p->params, P_LMULT, layer)[0] * f->init_L);
    const double x = log(c * (i - j) + 1) / (log(c * fmax(i, thr) + 1) + FIRE_EPS);
    const float *w1 = tensor(p, p->params, P_W1, layer), *b1 = tensor(p, p->params, P_B1, layer);
    const float *w2 = tensor(p, p->params, P_W2, layer) + (size_t)h * f->W;
    double y = tensor(p, p->params, P_B2, layer)[h];
    for (int k = 0; k < f->W; k++) y += w2[k] * fmax(w1[k] * x + b1[k], 0.0);
    return y;
}

/* Backward of the layer's MLP at input x with output gradient g (H): accumulates into f->acc
 * (dW1, db1, dW2, db2) and returns dL/dx. */
static double mlp_backward(const Pos *p, int layer, double x, const double *g) {
    const Fire *f = p->state;
    const int W = f->W, H = p->H;
    const float *w1 = tensor(p, p->params, P_W1, layer), *b1 = tensor(p, p->params, P_B1, layer);
    const float *w2 = tensor(p, p->params, P_W2, layer);
    double *dw1 = f->acc, *db1 = dw1 + W, *dw2 = db1 + W, *db2 = dw2 + (size_t)H * W;
    for (int k = 0; k < W; k++) {
        double z = (double)w1[k] * x + b1[k];
        f->hid[k] = z > 0 ? z : 0;
        f->dhid[k] = 0;
    }
    for (int h = 0; h < H; h++) {
        db2[h] += g[h];
        for (int k = 0; k < W; k++) {
            dw2[(size_t)h * W + k] += g[h] * f->hid[k];
            f->dhid[k] += g[h] * w2[(size_t)h * W + k];
        }
    }
    double dx = 0;
    for (int k = 0; k < W; k++) {
        double dz = f->hid[k] > 0 ? f->dhid[k] : 0;
        dw1[k] += dz * x;
        db1[k] += dz;
        dx += dz * w1[k];
    }
    return dx;
}

static void bias_backward(Pos *p, const float *dscores, int layer, int B, int T) {
    Fire *f = p->state;
    const int H = p->H, W = f->W;
    const float craw = tensor(p, p->params, P_C, layer)[0];
    const float lraw = tensor(p, p->params, P_LMULT, layer)[0];
    const double c = fabs(craw), sc = (craw > 0) - (craw < 0), sl = (lraw > 0) - (lraw < 0);
    const double thr = f->thr[layer], norm = f->norm[layer];
    const double *psi = f->psi + (size_t)layer * p->max_T;
    double dc = 0, dlm = 0, g[1024];
    for (size_t k = 0; k < 2 * (size_t)W + (size_t)H * W + H; k++) f->acc[k] = 0;

    /* rows i <= thr: one normalizer psi(thr) + eps; sum per distance first. A NaN thr (NaN
     * weights) takes the first branch: (int)floor(NaN) is undefined, and became a row index
     * far before the tables. */
    int rows = !(thr < T - 1) ? T : (int)floor(thr) + 1;
    pos_bias_distance_sums(f->sums, dscores, B, H, T, rows);
    const double dnorm_dc = sc * thr / (1 + c * thr), dnorm_dl = c * sl * f->init_L / (1 + c * thr);
    for (int n = 0; n < rows; n++) {
        for (int h = 0; h < H; h++) g[h] = f->sums[(size_t)h * T + n];
        double x = psi[n] / norm, dx = mlp_backward(p, layer, x, g);
        dc += dx * (sc * n / (1 + c * n) - x * dnorm_dc) / norm;
        dlm -= dx * x * dnorm_dl / norm;
    }
    /* rows i > thr: normalizer psi(i) + eps, per pair */
    for (int i = rows; i < T; i++) {
        double ni = psi[i] + FIRE_EPS, dni_dc = sc * i / (1 + c * i);
        for (int j = 0; j <= i; j++) {
            int n = i - j;
            for (int h = 0; h < H; h++) {
                double s = 0;
                for (int b = 0; b < B; b++) s += dscores[(((size_t)b * H + h) * T + i) * T + j];
                g[h] = s;
            }
            double x = psi[n] / ni, dx = mlp_backward(p, layer, x, g);
            dc += dx * (sc * n / (1 + c * n) - x * dni_dc) / ni;
        }
    }

    tensor(p, p->grads, P_C, layer)[0] += (float)dc;
    tensor(p, p->grads, P_LMULT, layer)[0] += (float)dlm;
    const double *a = f->acc;
    for (int k = P_W1; k <= P_B2; k++) {
        float *gt = tensor(p, p->grads, k, layer);
        size_t n = k == P_W2 ? (size_t)H * W : k == P_B2 ? (size_t)H : (size_t)W;
        for (size_t e = 0; e < n; e++) gt[e] += (float)*a++;
    }
}

const PosMethod pos_fire = {
    .name = "fire",
    .summary = "FIRE: per-layer MLP of the log-transformed, progressively normalized distance",
    .label = "FIRE",
    .color = "#17becf",
    .keys = keys,
    .n_keys = sizeof keys / sizeof keys[0],
    .declare = declare,
    .setup = setup,
    .init = init,
    .prepare = prepare,
    .bias_forward = bias_forward,
    .bias_backward = bias_backward,
    .bias_reference = bias_reference,
};
