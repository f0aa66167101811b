/* matmul.c — linear layers, y = x W^T + b, with PyTorch's (out, in) weight layout.
 * Every product goes to gemm.c's engine; the bias is a rank-1 update folded into the same call
 * (copy bias rows, then the product with beta = 1) so no separate pass over `out` is needed.
 * The bias and its gradient stay float32 in every precision. */
#include <string.h>

#include "ops.h"

/* dbias (OC) += column sums of dout (N, OC), in float32 in both precisions; parallel over
 * column blocks so each thread owns its outputs */
static void bias_backward(float *dbias, const float *dout, size_t N, int OC) {
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < OC; c0 += 64) {
        int c1 = c0 + 64 < OC ? c0 + 64 : OC;
        float acc[64] = {0};
        for (size_t r = 0; r < N; r++) {
            const float *row = dout + r * OC;
            for (int c = c0; c < c1; c++) acc[c - c0] += row[c];
        }
        for (int c = c0; c < c1; c++) dbias[c] += acc[c - c0];
    }
}

void matmul_forward(Gemm *g, float *out, const float *inp, const float *weight, const float *bias,
                    size_t N, int IC, int OC) {
    float beta = 0.0f;
    if (bias) {
#pragma omp parallel for schedule(static)
        for (size_t r = 0; r < N; r++) memcpy(out + r * OC, bias, sizeof(float) * OC);
        beta = 1.0f;
    }
    gemm(g, 0, 1, (int)N, OC, IC, 1.0f, inp, IC, weight, IC, beta, out, OC);
}

void matmul_backward(Gemm *g, float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, size_t N, int IC, int OC,
                     int accumulate) {
    if (dinp)
        gemm(g, 0, 0, (int)N, IC, OC, 1.0f, dout, OC, weight, IC, accumulate ? 1.0f : 0.0f, dinp,
             IC);
    gemm(g, 1, 0, OC, IC, (int)N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC);
    if (dbias) bias_backward(dbias, dout, N, OC);
}
