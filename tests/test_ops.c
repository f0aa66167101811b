/* test_ops.c — finite-difference checks of every op's backward, and the fast math against libm. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../src/config/config.h"
#include "../src/model.h"
#include "../src/ops/fastmath.h"
#include "../src/ops/ops.h"
#include "../src/util/util.h"
#include "gradcheck.h"
#include "test.h"

/* sum_i w_i * y_i in double: the scalar whose gradient w.r.t. y is w */
static double wsum(const float *y, const float *w, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)w[i] * y[i];
    return s;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double d = 0.0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* ---- matmul ---- */
typedef struct {
    float *x, *W, *b, *y, *w;
    size_t N;
    int IC, OC;
} MatCtx;
static double mat_f(void *p) {
    MatCtx *c = p;
    matmul_forward(NULL, c->y, c->x, c->W, c->b, c->N, c->IC, c->OC);
    return wsum(c->y, c->w, c->N * c->OC);
}
TEST(test_ops_matmul_grad) {
    MatCtx c = {.N = 7, .IC = 5, .OC = 6};
    c.x = xcalloc(35, 4), c.W = xcalloc(30, 4), c.b = xcalloc(6, 4), c.y = xcalloc(42, 4),
    c.w = xcalloc(42, 4);
    fill_random(c.x, 35, 1, 1), fill_random(c.W, 30, 1, 2), fill_random(c.b, 6, 1, 3),
        fill_random(c.w, 42, 1, 4);
    float *dx = xcalloc(35, 4), *dW = xcalloc(30, 4), *db = xcalloc(6, 4);
    matmul_backward(NULL, dx, dW, db, c.w, c.x, c.W, c.N, c.IC, c.OC, 0);
    gradcheck("matmul dx", c.x, 35, dx, mat_f, &c, 64);
    gradcheck("matmul dW", c.W, 30, dW, mat_f, &c, 64);
    gradcheck("matmul db", c.b, 6, db, mat_f, &c, 64);
    /* accumulate flag adds into dinp; parameter gradients always accumulate */
    float *dx2 = xcalloc(35, 4);
    for (int i = 0; i < 35; i++) dx2[i] = 1.0f;
    matmul_backward(NULL, dx2, dW, db, c.w, c.x, c.W, c.N, c.IC, c.OC, 1);
    CHECK_CLOSE(dx2[3], dx[3] + 1.0f, 1e-6, "matmul accumulate dinp");
    free(c.x), free(c.W), free(c.b), free(c.y), free(c.w), free(dx), free(dW), free(db), free(dx2);
}

/* ---- layernorm ---- */
typedef struct {
    float *x, *g, *b, *y, *mean, *rstd, *w;
    size_t N;
    int C;
} LnCtx;
static double ln_f(void *p) {
    LnCtx *c = p;
    layernorm_forward(c->y, c->mean, c->rstd, c->x, c->g, c->b, c->N, c->C, 1e-5f);
    return wsum(c->y, c->w, c->N * c->C);
}
TEST(test_ops_layernorm_grad) {
    LnCtx c = {.N = 5, .C = 70}; /* C > 64 exercises two column blocks in the weight pass */
    size_t n = c.N * c.C;
    c.x = xcalloc(n, 4), c.y = xcalloc(n, 4), c.w = xcalloc(n, 4), c.g = xcalloc(c.C, 4),
    c.b = xcalloc(c.C, 4);
    c.mean = xcalloc(c.N, 4), c.rstd = xcalloc(c.N, 4);
    fill_random(c.x, n, 2, 5), fill_random(c.w, n, 1, 6), fill_random(c.g, c.C, 1, 7),
        fill_random(c.b, c.C, 1, 8);
    ln_f(&c);
    float *dx = xcalloc(n, 4), *dg = xcalloc(c.C, 4), *db = xcalloc(c.C, 4);
    layernorm_backward(dx, dg, db, c.w, c.x, c.g, c.mean, c.rstd, c.N, c.C);
    gradcheck("layernorm dx", c.x, n, dx, ln_f, &c, 100);
    gradcheck("layernorm dweight", c.g, c.C, dg, ln_f, &c, 100);
    gradcheck("layernorm dbias", c.b, c.C, db, ln_f, &c, 100);
    /* forward: each output row has mean 0 and variance 1 before the affine map */
    float ones[70], zeros[70] = {0};
    for (int i = 0; i < 70; i++) ones[i] = 1.0f;
    layernorm_forward(c.y, c.mean, c.rstd, c.x, ones, zeros, c.N, c.C, 1e-5f);
    double m = 0, v = 0;
    for (int i = 0; i < c.C; i++) m += c.y[i];
    for (int i = 0; i < c.C; i++) v += (c.y[i] - m / c.C) * (c.y[i] - m / c.C);
    CHECK_CLOSE(m / c.C, 0.0, 1e-6, "layernorm row mean");
    CHECK_CLOSE(v / c.C, 1.0, 1e-4, "layernorm row variance (eps 1e-5)");
    /* eps is inside the square root: the variance becomes var / (var + eps) */
    double xm = 0, xv = 0;
    for (int i = 0; i < c.C; i++) xm += c.x[i];
    for (int i = 0; i < c.C; i++) xv += (c.x[i] - xm / c.C) * (c.x[i] - xm / c.C);
    xv /= c.C;
    layernorm_forward(c.y, c.mean, c.rstd, c.x, ones, zeros, c.N, c.C, 0.5f);
    v = 0;
    for (int i = 0; i < c.C; i++) v += c.y[i] * c.y[i];
    CHECK_CLOSE(v / c.C, xv / (xv + 0.5), 1e-5, "layernorm row variance (eps 0.5)");
    free(c.x), free(c.y), free(c.w), free(c.g), free(c.b), free(c.mean), free(c.rstd), free(dx),
        free(dg), free(db);
}

/* ---- rmsnorm ---- */
typedef struct {
    float *x, *g, *y, *rstd, *w;
    size_t N;
    int C;
    float eps;
} RmsCtx;
static double rms_f(void *p) {
    RmsCtx *c = p;
    rmsnorm_forward(c->y, c->rstd, c->x, c->g, c->N, c->C, c->eps);
    return wsum(c->y, c->w, c->N * c->C);
}
/* RMSNorm (Zhang & Sennrich 2019, eq. 4): y = x / sqrt(mean(x^2) + eps) * g, against that
 * formula in double and by finite differences, for an eps too small to matter and one that
 * does (x of amplitude 0.5: mean(x^2) is about 0.08). dinp and dweight accumulate. */
TEST(test_ops_rmsnorm_grad) {
    const float eps[] = {1e-5f, 0.1f};
    for (int e = 0; e < 2; e++) {
        RmsCtx c = {.N = 5, .C = 70, .eps = eps[e]}; /* C > 32: two column blocks in dweight */
        size_t n = c.N * c.C;
        c.x = xcalloc(n, 4), c.y = xcalloc(n, 4), c.w = xcalloc(n, 4), c.g = xcalloc(c.C, 4);
        c.rstd = xcalloc(c.N, 4);
        fill_random(c.x, n, 0.5f, 40 + e), fill_random(c.w, n, 1, 42), fill_random(c.g, c.C, 1, 43);
        rms_f(&c);
        double worst = 0;
        for (size_t r = 0; r < c.N; r++) {
            double ms = 0;
            for (int i = 0; i < c.C; i++) ms += (double)c.x[r * c.C + i] * c.x[r * c.C + i];
            double s = 1.0 / sqrt(ms / c.C + eps[e]);
            for (int i = 0; i < c.C; i++)
                worst = fmax(worst, fabs(c.y[r * c.C + i] - c.x[r * c.C + i] * s * c.g[i]));
        }
        CHECK(worst < 1e-5, "rmsnorm eps %g: forward vs formula, max diff %.3g", eps[e], worst);
        float *dx = xcalloc(n, 4), *dg = xcalloc(c.C, 4);
        rmsnorm_backward(dx, dg, c.w, c.x, c.g, c.rstd, c.N, c.C);
        char what[64];
        snprintf(what, sizeof what, "rmsnorm dx (eps %g)", eps[e]);
        gradcheck(what, c.x, n, dx, rms_f, &c, 100);
        snprintf(what, sizeof what, "rmsnorm dweight (eps %g)", eps[e]);
        gradcheck(what, c.g, c.C, dg, rms_f, &c, 100);
        /* a second backward adds the same again */
        float dx0 = dx[7], dg0 = dg[40];
        rmsnorm_backward(dx, dg, c.w, c.x, c.g, c.rstd, c.N, c.C);
        CHECK(dx[7] == 2 * dx0 && dg[40] == 2 * dg0, "rmsnorm backward does not accumulate");
        free(c.x), free(c.y), free(c.w), free(c.g), free(c.rstd), free(dx), free(dg);
    }
}

/* ---- activations ---- */
typedef struct {
    float *x, *u, *y, *w;
    size_t n;
    Activation kind; /* a gated kind uses x as gate and u as up */
} ActCtx;
static double act_f(void *p) {
    ActCtx *c = p;
    if (act_gated(c->kind))
        glu_forward(c->y, c->x, c->u, c->n, c->kind);
    else
        act_forward(c->y, c->x, c->n, c->kind);
    return wsum(c->y, c->w, c->n);
}
TEST(test_ops_activation_grad) {
    const char *names[] = {"relu", "gelu"};
    for (int kind = ACT_RELU; kind <= ACT_GELU; kind++) {
        ActCtx c = {.n = 50, .kind = (Activation)kind};
        c.x = xcalloc(50, 4), c.u = xcalloc(50, 4), c.y = xcalloc(50, 4), c.w = xcalloc(50, 4);
        fill_random(c.x, 50, 3, 9 + kind), fill_random(c.u, 50, 2, 10), fill_random(c.w, 50, 1, 11);
        /* keep ReLU inputs away from the kink, where the difference quotient is meaningless */
        for (int i = 0; i < 50; i++)
            if (fabsf(c.x[i]) < 0.05f) c.x[i] = 0.5f;
        float *dx = xcalloc(50, 4);
        char what[64];
        act_backward(dx, c.w, c.x, 50, (Activation)kind);
        snprintf(what, sizeof what, "%s dinp", names[kind]);
        gradcheck(what, c.x, 50, dx, act_f, &c, 50);
        CHECK(!act_gated((Activation)kind), "%s counted as gated", names[kind]);
        free(c.x), free(c.u), free(c.y), free(c.w), free(dx);
    }
    /* GELU forward equals the exact erf form */
    float x[5] = {-3, -0.5f, 0, 0.7f, 4}, y[5];
    act_forward(y, x, 5, ACT_GELU);
    for (int i = 0; i < 5; i++)
        CHECK_CLOSE(y[i], 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0))), 1e-6, "gelu value");
}

/* phi(g) in double: the definitions of Shazeer 2020, eqs. 5-6. */
static double gate_phi(Activation a, double g) {
    double sig = 1.0 / (1.0 + exp(-g));
    return a == ACT_GLU ? sig : a == ACT_GEGLU ? 0.5 * g * (1 + erf(g / sqrt(2.0))) : g * sig;
}

/* The gated units GLU (sigmoid), GEGLU (GELU) and SwiGLU (silu): out = phi(gate) * up against
 * the formula, both gradients by finite differences, and the backward called as the model
 * calls it, with dup aliasing dout. */
TEST(test_ops_glu_grad) {
    const Activation kinds[] = {ACT_GLU, ACT_GEGLU, ACT_SWIGLU};
    const char *names[] = {"glu", "geglu", "swiglu"};
    for (int k = 0; k < 3; k++) {
        const Activation a = kinds[k];
        ActCtx c = {.n = 60, .kind = a};
        c.x = xcalloc(60, 4), c.u = xcalloc(60, 4), c.y = xcalloc(60, 4), c.w = xcalloc(60, 4);
        fill_random(c.x, 60, 4, 50 + k), fill_random(c.u, 60, 2, 53), fill_random(c.w, 60, 1, 54);
        CHECK(act_gated(a), "%s is not counted as gated", names[k]);
        act_f(&c);
        double worst = 0;
        for (int i = 0; i < 60; i++)
            worst = fmax(worst, fabs(c.y[i] - gate_phi(a, c.x[i]) * c.u[i]));
        CHECK(worst < 1e-5, "%s forward vs phi(gate) * up: max diff %.3g", names[k], worst);
        float *dg = xcalloc(60, 4), *du = xcalloc(60, 4), *dg2 = xcalloc(60, 4);
        glu_backward(dg, du, c.w, c.x, c.u, 60, a);
        char what[64];
        snprintf(what, sizeof what, "%s dgate", names[k]);
        gradcheck(what, c.x, 60, dg, act_f, &c, 60);
        snprintf(what, sizeof what, "%s dup", names[k]);
        gradcheck(what, c.u, 60, du, act_f, &c, 60);
        float *d = xcalloc(60, 4); /* dout, overwritten by dup */
        memcpy(d, c.w, 60 * 4);
        glu_backward(dg2, d, d, c.x, c.u, 60, a);
        CHECK(!memcmp(dg2, dg, 60 * 4) && !memcmp(d, du, 60 * 4),
              "%s backward with dup aliasing dout differs", names[k]);
        free(c.x), free(c.u), free(c.y), free(c.w), free(dg), free(du), free(dg2), free(d);
    }
}

TEST(test_ops_fastmath_matches_libm) {
    double worst_exp = 0, worst_erf = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f + 175.0f * (float)i / 200000.0f;
        double e = exp((double)x);
        worst_exp = fmax(worst_exp, fabs(exp_fast(x) - e) / e);
        float z = -6.0f + 12.0f * (float)i / 200000.0f;
        worst_erf = fmax(worst_erf, fabs(erf_fast(z) - erf((double)z)));
    }
    CHECK(worst_exp < 3e-7, "exp_fast relative error %.3g", worst_exp);
    /* A&S bound 1.5e-7 plus float rounding of the polynomial */
    CHECK(worst_erf < 1e-6, "erf_fast absolute error %.3g", worst_erf);
}

/* Outside [-87, 88], as fastmath.h documents: NaN in, NaN out; above 88 (+inf included) the
 * value at 88; below -87 (-inf included) 0. Under UBSan (make test-asan) a NaN once failed here
 * with "left shift of negative value". */
TEST(test_ops_fastmath_nan_inf_and_clamps) {
    const float inf = INFINITY, top = exp_fast(88.0f);
    CHECK(isnan(exp_fast(NAN)) && isnan(exp_fast(-NAN)), "exp_fast(NaN) = %g", exp_fast(NAN));
    CHECK(fabs(top - exp(88.0)) <= 3e-7 * exp(88.0), "exp_fast(88) = %g", top);
    CHECK(exp_fast(88.5f) == top && exp_fast(1e30f) == top && exp_fast(inf) == top,
          "above 88: %g, %g, %g, expected %g", exp_fast(88.5f), exp_fast(1e30f), exp_fast(inf),
          top);
    CHECK(fabs(exp_fast(-87.0f) - exp(-87.0)) <= 3e-7 * exp(-87.0), "exp_fast(-87) = %g",
          exp_fast(-87.0f));
    CHECK(exp_fast(-87.01f) == 0 && exp_fast(-1e30f) == 0 && exp_fast(-inf) == 0,
          "below -87: %g, %g, %g, expected 0", exp_fast(-87.01f), exp_fast(-1e30f), exp_fast(-inf));
    CHECK(isnan(erf_fast(NAN)), "erf_fast(NaN) = %g", erf_fast(NAN));
    CHECK(erf_fast(inf) == 1 && erf_fast(-inf) == -1 && erf_fast(1e30f) == 1 &&
              erf_fast(-1e30f) == -1,
          "erf_fast(+-inf) = %g, %g; (+-1e30) = %g, %g", erf_fast(inf), erf_fast(-inf),
          erf_fast(1e30f), erf_fast(-1e30f));
    /* the loops that call them: a NaN logit gives a NaN loss, a -inf one no probability */
    float row[4] = {1, NAN, 2, 3}, masked[4] = {1, -inf, 2, 3};
    CHECK(isnan(xent_row(row, 4, 0, 1.0f, 0)), "a NaN logit gives a finite loss");
    double l = xent_row(masked, 4, 0, 1.0f, 1);
    CHECK(masked[1] == 0 && fabs(l - (log(exp(1) + exp(2) + exp(3)) - 1)) < 1e-6,
          "a -inf logit: probability %g, loss %.7f", masked[1], l);
}

/* ---- dropout ---- */
TEST(test_ops_dropout) {
    size_t n = 100000;
    float *x = xcalloc(n, 4), *y = xcalloc(n, 4), *dx = xcalloc(n, 4);
    for (size_t i = 0; i < n; i++) x[i] = 1.0f;
    dropout_forward(y, x, n, 0.3f, 42);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) kept += y[i] != 0.0f;
    CHECK(fabs((double)kept / n - 0.7) < 0.01, "dropout keeps %.4f, expected 0.7",
          (double)kept / n);
    CHECK_CLOSE(y[kept ? 0 : 1] == 0.0f ? 1.0 / 0.7 : y[0], 1.0 / 0.7, 1e-6, "dropout scale");
    /* backward applies the same mask and scale */
    dropout_backward(dx, x, n, 0.3f, 42);
    CHECK(memcmp(dx, y, n * 4) == 0, "dropout backward mask differs from forward");
    dropout_forward(y, x, n, 0.0f, 42);
    CHECK(memcmp(x, y, n * 4) == 0, "dropout p=0 is the identity");
    free(x), free(y), free(dx);
}

/* ---- embedding ---- */
TEST(test_ops_embedding) {
    int32_t tok[4] = {2, 0, 2, 1};
    float W[12], y[12], dW[12] = {0}, dy[12];
    fill_random(W, 12, 1, 12), fill_random(dy, 12, 1, 13);
    embedding_forward(y, tok, W, 4, 3, 2.0f);
    CHECK_CLOSE(y[3 * 3 + 1], 2.0f * W[1 * 3 + 1], 1e-7, "embedding lookup * scale");
    embedding_backward(dW, dy, tok, 4, 3, 2.0f);
    CHECK_CLOSE(dW[2 * 3 + 0], 2.0f * (dy[0] + dy[6]), 1e-6, "embedding repeated token grads add");
    CHECK_CLOSE(dW[0], 2.0f * dy[3], 1e-6, "embedding grad");
}

/* ---- cross-entropy with tied output ---- */
typedef struct {
    float *x, *W, *losses, *scratch;
    int32_t *tg;
    size_t N;
    int C, V;
} XentCtx;
static double xent_f(void *p) {
    XentCtx *c = p;
    xent_forward(NULL, c->losses, c->x, c->W, c->tg, c->N, c->C, c->V, c->scratch);
    double s = 0;
    for (size_t i = 0; i < c->N; i++) s += c->losses[i];
    return s * 0.5;
}
TEST(test_ops_xent_grad) {
    /* N > XENT_CHUNK exercises the chunk boundary */
    XentCtx c = {.N = XENT_CHUNK + 3, .C = 4, .V = 9};
    c.x = xcalloc(c.N * c.C, 4), c.W = xcalloc(c.V * c.C, 4), c.losses = xcalloc(c.N, 4);
    c.scratch = xcalloc((size_t)XENT_CHUNK * c.V, 4), c.tg = xcalloc(c.N, 4);
    fill_random(c.x, c.N * c.C, 1, 14), fill_random(c.W, c.V * c.C, 1, 15);
    for (size_t i = 0; i < c.N; i++) c.tg[i] = (int32_t)(hash64(i) % c.V);
    float *dx = xcalloc(c.N * c.C, 4), *dW = xcalloc(c.V * c.C, 4);
    double sum =
        xent_forward_backward(NULL, dx, dW, c.x, c.W, c.tg, c.N, c.C, c.V, 0.5f, c.scratch);
    CHECK_CLOSE(sum * 0.5, xent_f(&c), 1e-6, "fused and plain forward agree");
    gradcheck("xent dx", c.x, c.N * c.C, dx, xent_f, &c, 60);
    gradcheck("xent dW", c.W, c.V * c.C, dW, xent_f, &c, 60);
    /* loss of a uniform softmax is log V */
    memset(c.x, 0, c.N * c.C * 4);
    xent_forward(NULL, c.losses, c.x, c.W, c.tg, 1, c.C, c.V, c.scratch);
    CHECK_CLOSE(c.losses[0], log(9.0), 1e-6, "uniform logits give log V");
    free(c.x), free(c.W), free(c.losses), free(c.scratch), free(c.tg), free(dx), free(dW);
}

/* ---- attention (no position method; methods are checked inside whole models) ---- */
typedef struct {
    float *qkv, *out, *probs, *scratch, *w;
    AttnShape s;
} AttCtx;
static double att_f(void *p) {
    AttCtx *c = p;
    attention_forward(c->out, c->probs, c->qkv, &c->s);
    return wsum(c->out, c->w, (size_t)c->s.B * c->s.T * c->s.C);
}
TEST(test_ops_attention_grad) {
    for (int drop = 0; drop <= 1; drop++) {
        AttCtx c = {
            .s = {.B = 2, .T = 7, .C = 6, .H = 3, .attn_dropout = drop ? 0.25f : 0.0f, .key = 77}};
        size_t n = 2 * 7 * 6, tt = 2 * 3 * 49;
        c.qkv = xcalloc(3 * n, 4), c.out = xcalloc(n, 4), c.w = xcalloc(n, 4);
        c.probs = xcalloc(tt, 4), c.scratch = xcalloc(tt, 4);
        c.s.scratch = c.scratch;
        fill_random(c.qkv, 3 * n, 1.5f, 16 + drop), fill_random(c.w, n, 1, 18);
        att_f(&c);
        /* causality: row i of every probability matrix sums to 1 over j <= i, 0 beyond */
        double worst = 0;
        for (int bh = 0; bh < 6; bh++)
            for (int i = 0; i < 7; i++) {
                double s = 0;
                for (int j = 0; j < 7; j++) {
                    float p = c.probs[bh * 49 + i * 7 + j];
                    if (j > i)
                        worst = fmax(worst, fabs(p));
                    else
                        s += p;
                }
                worst = fmax(worst, fabs(s - 1));
            }
        CHECK(worst < 1e-6, "attention rows sum to 1 and are causal (err %.3g)", worst);
        float *dqkv = xcalloc(3 * n, 4), *ds = xcalloc(tt, 4);
        attention_backward(dqkv, ds, c.w, c.qkv, c.probs, &c.s);
        gradcheck(drop ? "attention dqkv (dropout 0.25)" : "attention dqkv", c.qkv, 3 * n, dqkv,
                  att_f, &c, 126);
        free(c.qkv), free(c.out), free(c.w), free(c.probs), free(c.scratch), free(dqkv), free(ds);
    }
}

/* Several query blocks (T > ATT_BLOCK = 64, not a multiple of it): outputs equal a naive
 * triple loop, and gradients pass the finite-difference check, with dropout on. probs and
 * dscores start as NaN: the triangle past each block is never written, so it must not be read. */
TEST(test_ops_attention_blocks) {
    AttCtx c = {.s = {.B = 1, .T = 150, .C = 8, .H = 2, .attn_dropout = 0.1f, .key = 5}};
    const int T = 150, C = 8, D = 4;
    size_t n = (size_t)T * C, tt = 2 * (size_t)T * T;
    c.qkv = xcalloc(3 * n, 4), c.out = xcalloc(n, 4), c.w = xcalloc(n, 4);
    c.probs = xcalloc(tt, 4), c.scratch = xcalloc(tt, 4);
    for (size_t e = 0; e < tt; e++) c.probs[e] = NAN;
    c.s.scratch = c.scratch;
    fill_random(c.qkv, 3 * n, 1.0f, 30), fill_random(c.w, n, 1, 31);
    c.s.attn_dropout = 0.0f;
    att_f(&c);
    double worst = 0;
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < T; i++) {
            double s[150], mx = -1e30, z = 0;
            for (int j = 0; j <= i; j++) {
                s[j] = 0;
                for (int d = 0; d < D; d++)
                    s[j] += (double)c.qkv[i * 3 * C + h * D + d] * c.qkv[j * 3 * C + C + h * D + d];
                s[j] /= 2.0; /* sqrt(D) */
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j <= i; j++) z += exp(s[j] - mx);
            for (int d = 0; d < D; d++) {
                double o = 0;
                for (int j = 0; j <= i; j++)
                    o += exp(s[j] - mx) / z * c.qkv[j * 3 * C + 2 * C + h * D + d];
                worst = fmax(worst, fabs(o - c.out[i * C + h * D + d]));
            }
        }
    CHECK(worst < 1e-5, "blocked attention vs naive loop: max diff %.3g", worst);
    c.s.attn_dropout = 0.1f;
    att_f(&c);
    float *dqkv = xcalloc(3 * n, 4), *ds = xcalloc(tt, 4);
    for (size_t e = 0; e < tt; e++) ds[e] = NAN;
    attention_backward(dqkv, ds, c.w, c.qkv, c.probs, &c.s);
    gradcheck("attention dqkv, T=150 (3 query blocks), dropout 0.1", c.qkv, 3 * n, dqkv, att_f, &c,
              200);
    free(c.qkv), free(c.out), free(c.w), free(c.probs), free(c.scratch), free(dqkv), free(ds);
}

/* ---- grouped-query attention (Hkv kv heads), with position methods ---- */

/* A training model of H = 4 heads of width 4 (C = 16) with `method` at its defaults and random
 * position parameters: the source of a Pos (its bias and rotate hooks). */
static int gqa_model(Model *m, Config *cfg, const char *method, int B, int T) {
    char text[512], err[512];
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 1, \"d_model\": 16, \"n_heads\": 4, \"d_ff\": 8, "
             "\"position\": {\"type\": \"%s\"}}, \"train\": {\"seq_len\": %d}}",
             method, T);
    if (config_from_text(cfg, text, "test", err, sizeof err)) {
        CHECK(0, "%s: %s", method, err);
        return 0;
    }
    model_create(m, cfg, 11, B, T, 1);
    model_init(m, 3);
    for (int k = 0; k < m->spec.pt.n; k++)
        if (m->spec.pt.t[k].init.kind == INIT_POS)
            fill_random(m->weights.params + m->spec.pt.t[k].offset, m->spec.pt.t[k].numel, 0.5f,
                        60 + k);
    if (m->state.pos.m->prepare) m->state.pos.m->prepare(&m->state.pos, T);
    return 1;
}

/* q (B, T, H D), k and v (B, T, Hkv D) apart, so that each has its own gradient check; f
 * packs them into qkv rows of (H + 2 Hkv) D, rotates q and k by the method (if it rotates)
 * and runs the training attention. */
typedef struct {
    float *q, *k, *v, *qkv, *out, *probs, *scratch, *w;
    AttnShape s;
    Pos pos;
} GqaCtx;

static size_t gqa_ld(const AttnShape *s) {
    return (size_t)(s->H + 2 * s->Hkv) * (s->C / s->H);
}

/* qkv rows <-> the three tensors; dir 1 packs, 0 unpacks. */
static void gqa_pack(float *qkv, float *q, float *k, float *v, const AttnShape *s, int dir) {
    const size_t N = (size_t)s->B * s->T, ld = gqa_ld(s), nq = (size_t)s->C,
                 nk = (size_t)s->Hkv * (s->C / s->H);
    for (size_t r = 0; r < N; r++) {
        float *row = qkv + r * ld, *parts[3] = {q + r * nq, k + r * nk, v + r * nk};
        const size_t off[3] = {0, nq, nq + nk}, len[3] = {nq, nk, nk};
        for (int t = 0; t < 3; t++)
            if (dir)
                memcpy(row + off[t], parts[t], len[t] * sizeof(float));
            else
                memcpy(parts[t], row + off[t], len[t] * sizeof(float));
    }
}

static double gqa_f(void *p) {
    GqaCtx *c = p;
    gqa_pack(c->qkv, c->q, c->k, c->v, &c->s, 1);
    if (c->pos.m->rotate_forward)
        c->pos.m->rotate_forward(&c->pos, c->qkv, c->qkv + c->s.C, gqa_ld(&c->s), 0, c->s.B, c->s.T,
                                 0);
    attention_forward(c->out, c->probs, c->qkv, &c->s);
    return wsum(c->out, c->w, (size_t)c->s.B * c->s.T * c->s.C);
}

/* d loss / d (q, k, v) through the attention backward and the rotate backward. */
static void gqa_grads(GqaCtx *c, float *dq, float *dk, float *dv) {
    const size_t N = (size_t)c->s.B * c->s.T, ld = gqa_ld(&c->s);
    float *dqkv = xcalloc(N * ld, 4), *ds = xcalloc((size_t)c->s.B * c->s.H * c->s.T * c->s.T, 4);
    gqa_f(c);
    attention_backward(dqkv, ds, c->w, c->qkv, c->probs, &c->s);
    if (c->pos.m->rotate_backward)
        c->pos.m->rotate_backward(&c->pos, dqkv, dqkv + c->s.C, ld, 0, c->s.B, c->s.T, 0);
    gqa_pack(dqkv, dq, dk, dv, &c->s, 0);
    free(dqkv), free(ds);
}

static void gqa_alloc(GqaCtx *c, unsigned long long seed) {
    const size_t N = (size_t)c->s.B * c->s.T, nk = N * c->s.Hkv * (c->s.C / c->s.H);
    const size_t tt = (size_t)c->s.B * c->s.H * c->s.T * c->s.T;
    c->q = xcalloc(N * c->s.C, 4), c->k = xcalloc(nk, 4), c->v = xcalloc(nk, 4);
    c->qkv = xcalloc(N * gqa_ld(&c->s), 4), c->out = xcalloc(N * c->s.C, 4);
    c->w = xcalloc(N * c->s.C, 4), c->probs = xcalloc(tt, 4), c->scratch = xcalloc(tt, 4);
    c->s.scratch = c->scratch;
    fill_random(c->q, N * c->s.C, 1.5f, seed), fill_random(c->k, nk, 1.5f, seed + 1);
    fill_random(c->v, nk, 1.5f, seed + 2), fill_random(c->w, N * c->s.C, 1, seed + 3);
}

static void gqa_free(GqaCtx *c) {
    free(c->q), free(c->k), free(c->v), free(c->qkv), free(c->out), free(c->w), free(c->probs),
        free(c->scratch);
}

/* Finite-difference checks of dq, dk, dv for H = 4 and Hkv = 1 (multi-query), 2 (groups of 2)
 * and 4 (multi-head), T = 70 (two query blocks), without a position method, with bias methods
 * (ALiBi's per-head slopes, T5's learned buckets: per query head) and with rotations (RoPE,
 * xPos: Hkv key heads); attention dropout on in one case. */
TEST(test_ops_attention_gqa_grad) {
    const char *methods[] = {"none", "alibi", "t5", "rotary", "xpos"};
    const int B = 2, T = 70, Hkvs[] = {1, 2, 4};
    for (size_t mi = 0; mi < sizeof methods / sizeof methods[0]; mi++) {
        Model m;
        Config cfg;
        if (!gqa_model(&m, &cfg, methods[mi], B, T)) continue;
        for (int hi = 0; hi < 3; hi++) {
            const int Hkv = Hkvs[hi];
            GqaCtx c = {.s = {.B = B, .T = T, .C = 16, .H = 4, .Hkv = Hkv, .key = 9}};
            c.pos = m.state.pos;
            c.pos.Hkv = Hkv;
            c.s.pos = &c.pos;
            c.s.attn_dropout = mi == 0 && Hkv == 2 ? 0.1f : 0.0f;
            gqa_alloc(&c, 100 + 10 * mi + hi);
            const size_t nq = (size_t)B * T * 16, nk = (size_t)B * T * Hkv * 4;
            float *dq = xcalloc(nq, 4), *dk = xcalloc(nk, 4), *dv = xcalloc(nk, 4);
            gqa_grads(&c, dq, dk, dv);
            char what[96];
            const char *grad[3] = {"dq", "dk", "dv"};
            float *x[3] = {c.q, c.k, c.v}, *g[3] = {dq, dk, dv};
            for (int t = 0; t < 3; t++) {
                snprintf(what, sizeof what, "attention %s, %s, H 4, Hkv %d%s", grad[t], methods[mi],
                         Hkv, c.s.attn_dropout > 0 ? ", dropout 0.1" : "");
                gradcheck(what, x[t], t ? nk : nq, g[t], gqa_f, &c, 40);
            }
            free(dq), free(dk), free(dv);
            gqa_free(&c);
        }
        model_free(&m);
        config_free(&cfg);
    }
}

/* GQA is MHA with each kv head repeated for its group (GQA paper, sec. 2.2): the outputs equal
 * those of multi-head attention on the expanded qkv, and each kv head's dk, dv are the sums of
 * the expanded heads' gradients over its group. */
TEST(test_ops_attention_gqa_is_repeated_mha) {
    const int B = 2, T = 100, H = 4, D = 4, C = 16, Hkv = 2, G = H / Hkv;
    const size_t N = (size_t)B * T, ldg = (size_t)(H + 2 * Hkv) * D, ldm = 3 * (size_t)C;
    const size_t tt = (size_t)B * H * T * T;
    float *g = xcalloc(N * ldg, 4), *mh = xcalloc(N * ldm, 4), *w = xcalloc(N * C, 4);
    float *og = xcalloc(N * C, 4), *om = xcalloc(N * C, 4), *pg = xcalloc(tt, 4),
          *pm = xcalloc(tt, 4), *ds = xcalloc(tt, 4);
    float *dg = xcalloc(N * ldg, 4), *dm = xcalloc(N * ldm, 4);
    fill_random(g, N * ldg, 1.5f, 70), fill_random(w, N * C, 1, 71);
    for (size_t r = 0; r < N; r++) /* q as is; k, v head h = kv head h / G */
        for (int h = 0; h < H; h++)
            for (int d = 0; d < D; d++) {
                mh[r * ldm + h * D + d] = g[r * ldg + h * D + d];
                mh[r * ldm + C + h * D + d] = g[r * ldg + C + (h / G) * D + d];
                mh[r * ldm + 2 * C + h * D + d] = g[r * ldg + C + (Hkv + h / G) * D + d];
            }
    AttnShape sg = {.B = B, .T = T, .C = C, .H = H, .Hkv = Hkv}, sm = sg;
    sm.Hkv = H;
    attention_forward(og, pg, g, &sg);
    attention_forward(om, pm, mh, &sm);
    double dout = max_abs_diff(og, om, N * C);
    attention_backward(dg, ds, w, g, pg, &sg);
    attention_backward(dm, ds, w, mh, pm, &sm);
    double dq = 0, dkv = 0;
    for (size_t r = 0; r < N; r++)
        for (int d = 0; d < D; d++) {
            for (int h = 0; h < H; h++)
                dq = fmax(dq, fabs(dg[r * ldg + h * D + d] - dm[r * ldm + h * D + d]));
            for (int kv = 0; kv < Hkv; kv++) {
                double sk = 0, sv = 0;
                for (int h = kv * G; h < (kv + 1) * G; h++) {
                    sk += dm[r * ldm + C + h * D + d];
                    sv += dm[r * ldm + 2 * C + h * D + d];
                }
                dkv = fmax(dkv, fabs(dg[r * ldg + C + kv * D + d] - sk));
                dkv = fmax(dkv, fabs(dg[r * ldg + C + (Hkv + kv) * D + d] - sv));
            }
        }
    CHECK(dout < 1e-6 && dq < 1e-6 && dkv < 1e-5,
          "GQA vs MHA on repeated kv heads: out differs by %.3g, dq by %.3g, group sums of "
          "dk, dv by %.3g",
          dout, dq, dkv);
    free(g), free(mh), free(w), free(og), free(om), free(pg), free(pm), free(ds), free(dg),
        free(dm);
}

/* Every query head of a group adds into the same dk, dv rows; the backward must give the same
 * bits on 1 thread as on 2 (no race, a fixed order of the sums), with dropout and a bias.
 * B = 1: with one sequence per thread the threads would never share a kv head. */
TEST(test_ops_attention_gqa_backward_thread_independent) {
    enum { RUNS = 5 }; /* run 0 on 1 thread, the others on 2: a race shows in some run */
    const int B = 1, T = 200, saved = omp_get_max_threads();
    Model m;
    Config cfg;
    if (!gqa_model(&m, &cfg, "alibi", B, T)) return;
    for (int Hkv = 1; Hkv <= 2; Hkv++) {
        GqaCtx c = {
            .s = {.B = B, .T = T, .C = 16, .H = 4, .Hkv = Hkv, .attn_dropout = 0.1f, .key = 3}};
        c.pos = m.state.pos;
        c.s.pos = &c.pos;
        gqa_alloc(&c, 200 + Hkv);
        const size_t n = (size_t)B * T * gqa_ld(&c.s), tt = (size_t)B * 4 * T * T;
        float *d[RUNS], *ds[RUNS];
        size_t differ = 0;
        for (int run = 0; run < RUNS; run++) {
            omp_set_num_threads(run ? 2 : 1);
            d[run] = xcalloc(n, 4), ds[run] = xcalloc(tt, 4);
            gqa_f(&c);
            attention_backward(d[run], ds[run], c.w, c.qkv, c.probs, &c.s);
            differ += memcmp(d[run], d[0], n * 4) != 0 || memcmp(ds[run], ds[0], tt * 4) != 0;
        }
        omp_set_num_threads(saved);
        CHECK(differ == 0, "Hkv %d: %zu of %d runs on 2 threads differ from the run on 1", Hkv,
              differ, RUNS - 1);
        for (int run = 0; run < RUNS; run++) free(d[run]), free(ds[run]);
        gqa_free(&c);
    }
    model_free(&m);
    config_free(&cfg);
}
