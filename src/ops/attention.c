/* attention.c — causal multi-head self-attention (Vaswani et al. 2017) for training:
 *
 *   s_ij = q_i . k_j / sqrt(D) + bias_h(i, j)   (j <= i; bias from the position method)
 *   p_i  = softmax_j(s_i),   o_i = sum_j dropout(p)_ij v_j
 *
 * One (batch, head) pair per OpenMP iteration, each product a single-threaded cblas_sgemm
 * (the OpenMP build of OpenBLAS runs serially inside a parallel region). The probabilities
 * (B, H, T, T) are kept for backward; the bias hook fills the scores in place, so no bias
 * matrix is ever stored. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "../util/util.h"
#include "fastmath.h"
#include "ops.h"

static void softmax_causal_rows(float *P, int T) {
    for (int i = 0; i < T; i++) {
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

/* dst = src with dropout applied (row-major T x T, element index offset base in the mask) */
static void dropout_probs(float *dst, const float *src, int T, float p, uint64_t key, size_t base) {
    float scale = 1.0f / (1.0f - p);
    for (size_t e = 0; e < (size_t)T * T; e++)
        dst[e] = rng_uniform(key, base + e) >= p ? src[e] * scale : 0.0f;
}

void attention_forward(float *out, float *probs, const float *qkv, const AttnShape *s) {
    const int T = s->T, C = s->C, H = s->H, D = C / H;
    const size_t ld = 3 * (size_t)C, TT = (size_t)T * T;
    const float scale = 1.0f / sqrtf((float)D);
    const PosMethod *m = s->pos ? s->pos->m : NULL;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < H; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * D, *k = q + C, *v = q + 2 * C;
            float *P = probs + ((size_t)b * H + h) * TT;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, scale, q, (int)ld, k,
                        (int)ld, 0.0f, P, T);
            if (m && m->bias_forward)
                m->bias_forward(s->pos, P, (size_t)T, s->layer, h, 0, T, 0, T);
            softmax_causal_rows(P, T);
            const float *Pd = P;
            if (s->attn_dropout > 0.0f) {
                /* dropped probabilities go to the caller's scratch slot for this pair */
                float *tmp = s->scratch + ((size_t)b * H + h) * TT;
                dropout_probs(tmp, P, T, s->attn_dropout, s->key, ((size_t)b * H + h) * TT);
                Pd = tmp;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1.0f, Pd, T, v, (int)ld,
                        0.0f, out + (size_t)b * T * C + (size_t)h * D, C);
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
            size_t bh = (size_t)b * H + h;
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * D, *k = q + C, *v = q + 2 * C;
            const float *P = probs + bh * TT, *dO = dout + (size_t)b * T * C + (size_t)h * D;
            float *dS = dscores + bh * TT;
            float *dq = dqkv + (size_t)b * T * ld + (size_t)h * D, *dk = dq + C, *dv = dq + 2 * C;
            /* dV = dropout(P)^T dO; dropout(P) is rebuilt in dS, which is free until dP */
            const float *Pd = P;
            if (p > 0.0f) {
                dropout_probs(dS, P, T, p, s->key, bh * TT);
                Pd = dS;
            }
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, 1.0f, Pd, T, dO, C, 0.0f,
                        dv, (int)ld);
            /* dP = dO V^T, through the dropout mask */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1.0f, dO, C, v, (int)ld,
                        0.0f, dS, T);
            if (p > 0.0f) dropout_probs(dS, dS, T, p, s->key, bh * TT);
            /* softmax backward: ds_ij = p_ij (dp_ij - sum_k p_ik dp_ik), zero above diagonal */
            for (int i = 0; i < T; i++) {
                const float *pr = P + (size_t)i * T;
                float *dr = dS + (size_t)i * T, dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int j = 0; j <= i; j++) dot += pr[j] * dr[j];
                for (int j = 0; j <= i; j++) dr[j] = pr[j] * (dr[j] - dot);
                memset(dr + i + 1, 0, sizeof(float) * (size_t)(T - i - 1));
            }
            /* dQ = dS K / sqrt(D), dK = dS^T Q / sqrt(D) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, scale, dS, T, k,
                        (int)ld, 0.0f, dq, (int)ld);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, scale, dS, T, q, (int)ld,
                        0.0f, dk, (int)ld);
        }
}
