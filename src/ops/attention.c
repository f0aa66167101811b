/* attention.c — causal multi-head self-attention (Vaswani et al. 2017) for training:
 *
 *   s_ij = q_i . k_j / sqrt(D) + bias_h(i, j)   (j <= i; bias from the position method)
 *   p_i  = softmax_j(s_i),   o_i = sum_j dropout(p)_ij v_j
 *
 * One (batch, head) pair per OpenMP iteration, each product a single-threaded cblas_sgemm
 * (the OpenMP build of OpenBLAS runs serially inside a parallel region). Queries go in blocks
 * of ATT_BLOCK rows and each block only meets the keys up to its last row, so the products
 * cover the causal triangle plus half a block instead of the whole T x T square. The
 * probabilities (B, H, T, T) are kept for backward, zero above the diagonal; the bias hook
 * fills the scores in place, so no bias matrix is ever stored. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "../util/util.h"
#include "fastmath.h"
#include "ops.h"

#define ATT_BLOCK 64

/* Rows r0..r1-1 of P (row stride T): softmax over j <= i, zeros beyond. */
static void softmax_causal_rows(float *P, int T, int r0, int r1) {
    for (int i = r0; i < r1; i++) {
        float *row = P + (size_t)i * T;
        float mx = row[0];
        for (int j = 1; j <= i; j++) mx = row[j] > mx ? row[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j <= i; j++) {
            row[j] = exp_fast(row[j] - mx);
            sum += row[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j <= i; j++) row[j] *= inv;
        memset(row + i + 1, 0, sizeof(float) * (size_t)(T - i - 1));
    }
}

/* dst = dropout(src) on rows r0..r1-1, columns 0..kend-1 (row stride T); the mask index of
 * entry (i, j) is base + i*T + j, so every block sees the same mask as a whole-matrix pass. */
static void dropout_block(float *dst, const float *src, int T, int r0, int r1, int kend, float p,
                          uint64_t key, size_t base) {
    float scale = 1.0f / (1.0f - p);
    for (int i = r0; i < r1; i++)
        for (int j = 0; j < kend; j++) {
            size_t e = (size_t)i * T + j;
            dst[e] = rng_uniform(key, base + e) >= p ? src[e] * scale : 0.0f;
        }
}

/* Zeroes rows 0..T-1, columns 0..D-1 of a strided (T, ld) matrix. */
static void zero_rows(float *x, int T, int D, size_t ld) {
    for (int t = 0; t < T; t++) memset(x + (size_t)t * ld, 0, sizeof(float) * (size_t)D);
}

void attention_forward(float *out, float *probs, const float *qkv, const AttnShape *s) {
    const int T = s->T, C = s->C, H = s->H, D = C / H;
    const size_t ld = 3 * (size_t)C, TT = (size_t)T * T;
    const float scale = 1.0f / sqrtf((float)D);
    const PosMethod *m = s->pos ? s->pos->m : NULL;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < H; h++) {
            const size_t bh = (size_t)b * H + h;
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * D, *k = q + C, *v = q + 2 * C;
            float *P = probs + bh * TT, *o = out + (size_t)b * T * C + (size_t)h * D;
            for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
                const int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T, nr = r1 - r0, kend = r1;
                float *Pr = P + (size_t)r0 * T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, kend, D, scale,
                            q + (size_t)r0 * ld, (int)ld, k, (int)ld, 0.0f, Pr, T);
                if (m && m->bias_forward)
                    m->bias_forward(s->pos, Pr, (size_t)T, s->layer, h, r0, nr, 0, kend);
                softmax_causal_rows(P, T, r0, r1);
                const float *Pd = P;
                if (s->attn_dropout > 0.0f) {
                    /* dropped probabilities go to the caller's scratch slot for this pair */
                    float *tmp = s->scratch + bh * TT;
                    dropout_block(tmp, P, T, r0, r1, kend, s->attn_dropout, s->key, bh * TT);
                    Pd = tmp;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, D, kend, 1.0f,
                            Pd + (size_t)r0 * T, T, v, (int)ld, 0.0f, o + (size_t)r0 * C, C);
            }
        }
}

/* Softmax backward on rows r0..r1-1: ds_ij = p_ij (dp_ij - sum_k p_ik dp_ik) for j <= i,
 * zero beyond (the caller's bias_backward reads the whole row). */
static void softmax_backward_rows(float *dS, const float *P, int T, int r0, int r1) {
    for (int i = r0; i < r1; i++) {
        const float *pr = P + (size_t)i * T;
        float *dr = dS + (size_t)i * T, dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int j = 0; j <= i; j++) dot += pr[j] * dr[j];
        for (int j = 0; j <= i; j++) dr[j] = pr[j] * (dr[j] - dot);
        memset(dr + i + 1, 0, sizeof(float) * (size_t)(T - i - 1));
    }
}

void attention_backward(float *dqkv, float *dscores, const float *dout, const float *qkv,
                        const float *probs, const AttnShape *s) {
    const int T = s->T, C = s->C, H = s->H, D = C / H;
    const size_t ld = 3 * (size_t)C, TT = (size_t)T * T;
    const float scale = 1.0f / sqrtf((float)D), p = s->attn_dropout;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < H; h++) {
            const size_t bh = (size_t)b * H + h;
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * D, *k = q + C, *v = q + 2 * C;
            const float *P = probs + bh * TT, *dO = dout + (size_t)b * T * C + (size_t)h * D;
            float *dS = dscores + bh * TT;
            float *dq = dqkv + (size_t)b * T * ld + (size_t)h * D, *dk = dq + C, *dv = dq + 2 * C;
            /* dK and dV collect contributions from every query block */
            zero_rows(dk, T, D, ld);
            zero_rows(dv, T, D, ld);
            for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
                const int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T, nr = r1 - r0, kend = r1;
                const float *dOr = dO + (size_t)r0 * C;
                float *dSr = dS + (size_t)r0 * T;
                /* dV += dropout(P)^T dO; dropout(P) is rebuilt in dS, free until dP */
                const float *Pd = P;
                if (p > 0.0f) {
                    dropout_block(dS, P, T, r0, r1, kend, p, s->key, bh * TT);
                    Pd = dS;
                }
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kend, D, nr, 1.0f,
                            Pd + (size_t)r0 * T, T, dOr, C, 1.0f, dv, (int)ld);
                /* dP = dO V^T, through the dropout mask */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, kend, D, 1.0f, dOr, C, v,
                            (int)ld, 0.0f, dSr, T);
                if (p > 0.0f) dropout_block(dS, dS, T, r0, r1, kend, p, s->key, bh * TT);
                softmax_backward_rows(dS, P, T, r0, r1);
                /* dQ = dS K / sqrt(D), dK += dS^T Q / sqrt(D) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, D, kend, scale, dSr, T,
                            k, (int)ld, 0.0f, dq + (size_t)r0 * ld, (int)ld);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kend, D, nr, scale, dSr, T,
                            q + (size_t)r0 * ld, (int)ld, 1.0f, dk, (int)ld);
            }
        }
}
