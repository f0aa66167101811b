/* activation.c — FFN nonlinearities: ReLU (Baevski & Auli), GELU (Hendrycks & Gimpel 2016,
 * the exact erf form that PyTorch's F.gelu computes by default) and the gated units of
 * Shazeer 2020 (GLU, GEGLU, SwiGLU: phi(x W_gate) * (x W_up), then the down projection). */
#include <assert.h>

#include "fastmath.h"
#include "ops.h"

#define INV_SQRT2    0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

void act_forward(float *out, const float *inp, size_t n, Activation a) {
    assert(!act_gated(a)); /* a gated unit has two inputs: glu_forward */
    if (a == ACT_RELU) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
    } else {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++)
            out[i] = 0.5f * inp[i] * (1.0f + erf_fast(inp[i] * INV_SQRT2));
    }
}

void act_backward(float *dinp, const float *dout, const float *inp, size_t n, Activation a) {
    assert(!act_gated(a));
    if (a == ACT_RELU) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) dinp[i] = inp[i] > 0.0f ? dout[i] : 0.0f;
    } else {
        /* d/du [u * Phi(u)] = Phi(u) + u * phi(u) */
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            float u = inp[i];
            float cdf = 0.5f * (1.0f + erf_fast(u * INV_SQRT2));
            float pdf = INV_SQRT_2PI * exp_fast(-0.5f * u * u);
            dinp[i] = dout[i] * (cdf + u * pdf);
        }
    }
}

int act_gated(Activation a) {
    return a == ACT_GLU || a == ACT_GEGLU || a == ACT_SWIGLU;
}

/* The gated units (Shazeer 2020, "GLU Variants Improve Transformer", eqs. 5-6): out =
 * phi(gate) * up with phi = sigmoid (GLU), GELU (GEGLU) or silu (SwiGLU). The kind is chosen
 * once, outside the loop: a test inside it leaves gcc 12 if-converting all three variants (or
 * not vectorizing at all for a switch), since it does not unswitch a loop on a value shared
 * into an OpenMP region. The silu expressions are the ones SwiGLU always used (g / (1 + e^-g)
 * forward, not g * sig), so its results stay bit-identical. */
static inline float glu_sigmoid(float g, float u) {
    return u / (1.0f + exp_fast(-g));
}
static inline float glu_gelu(float g, float u) {
    return 0.5f * g * (1.0f + erf_fast(g * INV_SQRT2)) * u;
}
static inline float glu_silu(float g, float u) {
    return g / (1.0f + exp_fast(-g)) * u;
}

void glu_forward(float *out, const float *gate, const float *up, size_t n, Activation a) {
    switch (a) {
    case ACT_GLU:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) out[i] = glu_sigmoid(gate[i], up[i]);
        break;
    case ACT_GEGLU:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) out[i] = glu_gelu(gate[i], up[i]);
        break;
    default:
        assert(a == ACT_SWIGLU);
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) out[i] = glu_silu(gate[i], up[i]);
    }
}

/* The gradients of d * phi(g) * u: *dg = d u phi'(g), *du = d phi(g). The callers read every
 * input before writing either output, so dup may alias dout. */
static inline void glu_sigmoid_grad(float *dg, float *du, float d, float g, float u) {
    float sig = 1.0f / (1.0f + exp_fast(-g)); /* sig' = sig (1 - sig) */
    *du = d * sig;
    *dg = d * u * sig * (1.0f - sig);
}
static inline void glu_gelu_grad(float *dg, float *du, float d, float g, float u) {
    /* d/dg [g Phi(g)] = Phi(g) + g phi(g), as act_backward's GELU */
    float cdf = 0.5f * (1.0f + erf_fast(g * INV_SQRT2));
    float pdf = INV_SQRT_2PI * exp_fast(-0.5f * g * g);
    *du = d * g * cdf;
    *dg = d * u * (cdf + g * pdf);
}
static inline void glu_silu_grad(float *dg, float *du, float d, float g, float u) {
    /* silu(g) = g * sig(g);  silu'(g) = sig(g) * (1 + g * (1 - sig(g))) */
    float sig = 1.0f / (1.0f + exp_fast(-g));
    *du = d * g * sig;
    *dg = d * u * sig * (1.0f + g * (1.0f - sig));
}

void glu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                  size_t n, Activation a) {
    switch (a) {
    case ACT_GLU:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++)
            glu_sigmoid_grad(&dgate[i], &dup[i], dout[i], gate[i], up[i]);
        break;
    case ACT_GEGLU:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) glu_gelu_grad(&dgate[i], &dup[i], dout[i], gate[i], up[i]);
        break;
    default:
        assert(a == ACT_SWIGLU);
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) glu_silu_grad(&dgate[i], &dup[i], dout[i], gate[i], up[i]);
    }
}
