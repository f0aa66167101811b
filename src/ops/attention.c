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
#include <omp.h>
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

/* ---- evaluation: tiled attention with an online softmax --------------------------------
 *
 * The forward pass of FlashAttention (Dao et al. 2022, Algorithm 1) on a CPU: a tile of
 * ATT_TILE_Q query rows meets the keys ATT_TILE_K at a time, and each row keeps a running
 * maximum m, a running sum l and an unnormalized output o (Milakov & Gimelshein 2018,
 * "Online normalizer calculation for softmax", Algorithm 3). When a key tile raises the
 * maximum from m to m', the earlier sum and output are rescaled by exp(m - m'):
 *
 *   m' = max(m, max_j s_j),  l' = l e^(m - m') + sum_j e^(s_j - m'),
 *   o' = o e^(m - m') + sum_j e^(s_j - m') v_j,                 and at the end o / l.
 *
 * Memory per thread is one score tile and one output tile, whatever T is; only the caller's
 * qkv (B, T, 3C) grows with T. Tile sizes (measured by scripts/bench_eval.sh, reference model,
 * D = 32): a K or V tile is 256 x 32 floats = 32 KB, the score tile 64 x 256 = 64 KB and the
 * Q and output tiles 8 KB each, ~140 KB in all, which stays in a 512 KB-1 MB L2 while the
 * tile's two products run; 256 keys per tile make the exp/max pass and the rescale of o cheap
 * next to the products, and 64 query rows keep the per-item work small enough for the dynamic
 * schedule to balance the causal triangle. */

/* Floats of one thread's tiles: scores (Q x K), output (Q x D), running max and sum (Q),
 * each rounded up to 16 floats so every part starts 64-byte aligned. */
static size_t tile_floats(int D) {
    size_t parts[] = {(size_t)ATT_TILE_Q * ATT_TILE_K, (size_t)ATT_TILE_Q * D, ATT_TILE_Q,
                      ATT_TILE_Q};
    size_t n = 0;
    for (int i = 0; i < 4; i++) n += (parts[i] + 15) / 16 * 16;
    return n;
}

size_t attention_tiled_scratch_floats(int C, int H, int nthreads) {
    return tile_floats(C / H) * (size_t)(nthreads > 0 ? nthreads : 1);
}

/* Online-softmax step for one score tile S (ni x nj, row stride ATT_TILE_K) of query rows
 * i0.. and keys j0..: masks j > i, turns S into e^(s - m') in place (0 where masked), updates
 * mx and l, and rescales o (row stride D) by e^(m - m'). first: no earlier tile (o, l unset). */
static void online_softmax_tile(float *S, float *o, float *mx, float *l, int i0, int ni, int j0,
                                int nj, int D, int first) {
    for (int r = 0; r < ni; r++) {
        float *row = S + (size_t)r * ATT_TILE_K;
        int valid = i0 + r - j0 + 1; /* keys j <= i: the causal mask on the diagonal tile */
        if (valid > nj) valid = nj;
        if (valid <= 0) { /* the whole row is masked: nothing changes */
            memset(row, 0, sizeof(float) * (size_t)nj);
            continue;
        }
        float m_new = first ? row[0] : mx[r];
        for (int c = 0; c < valid; c++) m_new = row[c] > m_new ? row[c] : m_new;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int c = 0; c < valid; c++) {
            row[c] = exp_fast(row[c] - m_new);
            sum += row[c];
        }
        if (valid < nj) memset(row + valid, 0, sizeof(float) * (size_t)(nj - valid));
        if (first) {
            l[r] = sum;
        } else {
            float alpha = exp_fast(mx[r] - m_new);
            l[r] = l[r] * alpha + sum;
            if (alpha != 1.0f)
                for (int d = 0; d < D; d++) o[(size_t)r * D + d] *= alpha;
        }
        mx[r] = m_new;
    }
}

/* One work item: query rows i0..i0+ni-1 of (batch b, head h); out rows get o / l. */
static void attention_query_tile(float *out, const float *qkv, const AttnShape *s, int b, int h,
                                 int i0, int ni, float *tiles) {
    const int T = s->T, C = s->C, D = C / s->H;
    const size_t ld = 3 * (size_t)C;
    const float scale = 1.0f / sqrtf((float)D);
    const PosMethod *m = s->pos ? s->pos->m : NULL;
    const float *q = qkv + (size_t)b * T * ld + (size_t)h * D, *k = q + C, *v = q + 2 * C;
    float *S = tiles, *o = S + ((size_t)ATT_TILE_Q * ATT_TILE_K + 15) / 16 * 16;
    float *mx = o + ((size_t)ATT_TILE_Q * D + 15) / 16 * 16, *l = mx + (ATT_TILE_Q + 15) / 16 * 16;
    const int kend = i0 + ni; /* causal: the last row sees keys 0..kend-1 */
    for (int j0 = 0; j0 < kend; j0 += ATT_TILE_K) {
        const int nj = kend - j0 < ATT_TILE_K ? kend - j0 : ATT_TILE_K, first = j0 == 0;
        /* S = Q K^T / sqrt(D) + bias: the bias after the scaling, as attention_forward */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ni, nj, D, scale, q + (size_t)i0 * ld,
                    (int)ld, k + (size_t)j0 * ld, (int)ld, 0.0f, S, ATT_TILE_K);
        if (m && m->bias_forward)
            m->bias_forward(s->pos, S, ATT_TILE_K, s->layer, h, i0, ni, j0, nj);
        online_softmax_tile(S, o, mx, l, i0, ni, j0, nj, D, first);
        /* o = o * alpha (done above) + P V */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, D, nj, 1.0f, S, ATT_TILE_K,
                    v + (size_t)j0 * ld, (int)ld, first ? 0.0f : 1.0f, o, D);
    }
    float *dst = out + ((size_t)b * T + i0) * C + (size_t)h * D;
    for (int r = 0; r < ni; r++) {
        const float inv = 1.0f / l[r];
        for (int d = 0; d < D; d++) dst[(size_t)r * C + d] = o[(size_t)r * D + d] * inv;
    }
}

void attention_forward_tiled(float *out, const float *qkv, const AttnShape *s, float *scratch) {
    const int BH = s->B * s->H, nqt = (s->T + ATT_TILE_Q - 1) / ATT_TILE_Q;
    const size_t per_thread = tile_floats(s->C / s->H);
    const long items = (long)BH * nqt;
    int nt = omp_get_max_threads();
    if (nt > s->tile_threads) nt = s->tile_threads; /* the scratch has tile_threads slots */
    if (nt < 1) nt = 1;
        /* Later query tiles meet more keys, so items go out longest first (query tile descending)
         * under a dynamic schedule: the greedy longest-first order balances the triangle. */
#pragma omp parallel num_threads(nt)
    {
        float *tiles = scratch + per_thread * (size_t)omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < items; it++) {
            const int qt = nqt - 1 - (int)(it / BH), bh = (int)(it % BH);
            const int i0 = qt * ATT_TILE_Q, ni = s->T - i0 < ATT_TILE_Q ? s->T - i0 : ATT_TILE_Q;
            attention_query_tile(out, qkv, s, bh / s->H, bh % s->H, i0, ni, tiles);
        }
    }
}
