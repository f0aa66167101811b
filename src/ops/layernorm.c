/* layernorm.c — LayerNorm over the last dimension (Ba et al. 2016), eps 1e-5 as PyTorch and
 * fairseq, biased variance. Backward runs in two passes so that no thread shares an output:
 * rows for dinp, then column blocks for dweight/dbias (deterministic, no atomics, no scratch). */
#include <math.h>

#include "ops.h"

#define LN_EPS 1e-5f

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, size_t N, int C) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        const float *x = inp + r * C;
        float m = 0.0f, v = 0.0f;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        float s = 1.0f / sqrtf(v / C + LN_EPS);
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
    for (int c0 = 0; c0 < C; c0 += 32) {
        int c1 = c0 + 32 < C ? c0 + 32 : C;
        float dw[32] = {0}, db[32] = {0};
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
