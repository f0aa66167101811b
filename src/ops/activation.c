/* activation.c — FFN nonlinearities: ReLU (Baevski & Auli), GELU (Hendrycks & Gimpel 2016,
 * the exact erf form that PyTorch's F.gelu computes by default) and SwiGLU (Shazeer 2020:
 * silu(x W_gate) * (x W_up), then the down projection). */
#include "fastmath.h"
#include "ops.h"

#define INV_SQRT2    0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

void act_forward(float *out, const float *inp, size_t n, Activation a) {
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

void swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = gate[i] / (1.0f + exp_fast(-gate[i])) * up[i];
}

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, size_t n) {
    /* silu(g) = g * sig(g);  silu'(g) = sig(g) * (1 + g * (1 - sig(g))) */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], sig = 1.0f / (1.0f + exp_fast(-g)), d = dout[i];
        float u = up[i];
        dup[i] = d * g * sig;
        dgate[i] = d * u * sig * (1.0f + g * (1.0f - sig));
    }
}
