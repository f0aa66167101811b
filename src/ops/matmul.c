/* matmul.c — linear layers, y = x W^T + b, with PyTorch's (out, in) weight layout.
 * Every product goes to cblas_sgemm; the bias is a rank-1 update folded into the same call
 * path (copy bias rows, then sgemm with beta = 1) so no separate pass over `out` is needed.
 * The bf16 variants convert the activations to bf16 (round to nearest even) where they are
 * used and multiply through oneDNN (matmul_bf16.c) with float32 accumulation; the bias and its
 * gradient stay float32. */
#include <cblas.h>
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

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, size_t N,
                    int IC, int OC) {
    float beta = 0.0f;
    if (bias) {
#pragma omp parallel for schedule(static)
        for (size_t r = 0; r < N; r++) memcpy(out + r * OC, bias, sizeof(float) * OC);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, OC, IC, 1.0f, inp, IC, weight, IC,
                beta, out, OC);
}

void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, size_t N, int IC, int OC, int accumulate) {
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, IC, OC, 1.0f, dout, OC,
                    weight, IC, accumulate ? 1.0f : 0.0f, dinp, IC);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, (int)N, 1.0f, dout, OC, inp, IC,
                1.0f, dweight, IC);
    if (dbias) bias_backward(dbias, dout, N, OC);
}

void matmul_forward_bf16(const Bf16Ctx *c, float *out, const float *inp, const uint16_t *weight,
                         const float *bias, size_t N, int IC, int OC) {
    if (bias) {
#pragma omp parallel for schedule(static)
        for (size_t r = 0; r < N; r++) memcpy(out + r * OC, bias, sizeof(float) * OC);
    }
    bf16_from_f32(c->x16, inp, N * (size_t)IC);
    bf16_matmul(c->mm, out, c->x16, weight, (int)N, OC, IC, MM_FWD, bias != NULL);
}

void matmul_backward_bf16(const Bf16Ctx *c, float *dinp, float *dweight, float *dbias,
                          const float *dout, const float *inp, const uint16_t *weight, size_t N,
                          int IC, int OC, int accumulate) {
    bf16_from_f32(c->y16, dout, N * (size_t)OC);
    if (dinp) bf16_matmul(c->mm, dinp, c->y16, weight, (int)N, IC, OC, MM_DINP, accumulate);
    bf16_from_f32(c->x16, inp, N * (size_t)IC);
    bf16_matmul(c->mm, dweight, c->y16, c->x16, OC, IC, (int)N, MM_DW, 1);
    if (dbias) bias_backward(dbias, dout, N, OC);
}
