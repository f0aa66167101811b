/* norm.c — the normalizations over the last dimension, each applied row by row:
 *   LayerNorm (Ba et al. 2016): (x - mean) / sqrt(var + eps) * g + b, biased variance;
 *   RMSNorm (Zhang & Sennrich 2019, eq. 4): x / sqrt(mean(x^2) + eps) * g, no centring, no
 *   bias (eps inside the square root, as fairseq and T5/LLaMA do).
 * eps is the caller's (model.norm_eps; 1e-5 is PyTorch's and fairseq's LayerNorm default).
 * Backward runs in two passes so that no thread shares an output: rows for dinp, then column
 * blocks for the parameter gradients, each a float sum over rows in row order. So the result
 * does not depend on the thread count (no atomics, no scratch). */
#include <math.h>

#include "ops.h"

/* Columns per block of the parameter-gradient pass: a block's sums stay in registers. */
#define NORM_COLS 32

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, size_t N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        const float *x = inp + r * C;
        float m = 0.0f, v = 0.0f;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        float s = 1.0f / sqrtf(v / C + eps);
        float *y = out + r * C;
        for (int c = 0; c < C; c++) y[c] = (x[c] - m) * s * weight[c] + bias[c];
        mean[r] = m;
        rstd[r] = s;
    }
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean, const float *rstd,
                        size_t N, int C) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        const float *x = inp + r * C, *dy = dout + r * C;
        float m = mean[r], s = rstd[r];
        /* dxhat = dy * w;  dx = s * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) */
        float sum_d = 0.0f, sum_dx = 0.0f;
        for (int c = 0; c < C; c++) {
            float d = dy[c] * weight[c];
            sum_d += d;
            sum_dx += d * (x[c] - m) * s;
        }
        sum_d /= C;
        sum_dx /= C;
        float *dx = dinp + r * C;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * s;
            dx[c] += s * (dy[c] * weight[c] - sum_d - xhat * sum_dx);
        }
    }
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += NORM_COLS) {
        int c1 = c0 + NORM_COLS < C ? c0 + NORM_COLS : C;
        float dw[NORM_COLS] = {0}, db[NORM_COLS] = {0};
        for (size_t r = 0; r < N; r++) {
            const float *x = inp + r * C, *dy = dout + r * C;
            float m = mean[r], s = rstd[r];
            for (int c = c0; c < c1; c++) {
                dw[c - c0] += dy[c] * (x[c] - m) * s;
                db[c - c0] += dy[c];
            }
        }
        for (int c = c0; c < c1; c++) {
            dweight[c] += dw[c - c0];
            dbias[c] += db[c - c0];
        }
    }
}

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, size_t N,
                     int C, float eps) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        const float *x = inp + r * C;
        float ms = 0.0f;
        for (int c = 0; c < C; c++) ms += x[c] * x[c];
        float s = 1.0f / sqrtf(ms / C + eps);
        float *y = out + r * C;
        for (int c = 0; c < C; c++) y[c] = x[c] * s * weight[c];
        rstd[r] = s;
    }
}

void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, size_t N, int C) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        const float *x = inp + r * C, *dy = dout + r * C;
        const float s = rstd[r];
        /* xhat = x s with s = (mean(x^2) + eps)^(-1/2), ds/dx_c = -s^3 x_c / C, so
         * dx = s * (dxhat - xhat * mean(dxhat * xhat)) for dxhat = dy * w: LayerNorm's
         * formula without the mean term, since nothing was subtracted. */
        float sum_dx = 0.0f;
        for (int c = 0; c < C; c++) sum_dx += dy[c] * weight[c] * x[c] * s;
        sum_dx /= C;
        float *dx = dinp + r * C;
        for (int c = 0; c < C; c++) dx[c] += s * (dy[c] * weight[c] - x[c] * s * sum_dx);
    }
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += NORM_COLS) {
        int c1 = c0 + NORM_COLS < C ? c0 + NORM_COLS : C;
        float dw[NORM_COLS] = {0};
        for (size_t r = 0; r < N; r++) {
            const float *x = inp + r * C, *dy = dout + r * C;
            const float s = rstd[r];
            for (int c = c0; c < c1; c++) dw[c - c0] += dy[c] * x[c] * s;
        }
        for (int c = c0; c < c1; c++) dweight[c] += dw[c - c0];
    }
}
