/* attention.c — causal multi-head self-attention (Vaswani et al. 2017) for training:
 *
 *   s_ij = q_i . k_j / sqrt(D) + bias_h(i, j)   (j <= i; bias from the position method)
 *   p_i  = softmax_j(s_i),   o_i = sum_j dropout(p)_ij v_j
 *
 * Grouped-query attention (Ainslie et al. 2023, "GQA", sec. 2.2): the H query heads share
 * Hkv key/value heads in groups of G = H / Hkv consecutive heads (query head h reads kv head
 * h / G); Hkv = H is multi-head attention, Hkv = 1 multi-query (Shazeer 2019).
 *
 * One (batch, head) pair per OpenMP iteration, each product a single-threaded cblas_sgemm
 * (the OpenMP build of OpenBLAS runs serially inside a parallel region). Queries go in blocks
 * of ATT_BLOCK rows and each block only meets the keys up to its last row, so the products
 * cover the causal triangle plus half a block instead of the whole T x T square. The
 * probabilities (B, H, T, T) are kept for backward (only j <= i and the zeros up to each block's
 * end are written: the triangle above is never read); the bias hook fills the scores in place,
 * so no bias matrix is ever stored. The backward goes by (batch, kv head) instead: the group's
 * query heads all add into the same dK and dV, so one thread takes them in order, and the
 * result does not depend on the thread count. */
#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "../util/util.h"
#include "fastmath.h"
#include "ops.h"

#define ATT_BLOCK 64

/* Raises *m to the maximum of row[0..n) and replaces each entry x by exp(x - *m); returns
 * their sum. Both loops are `omp simd` reductions: a plain ?: max loop stays scalar (NaN order)
 * and took a third of the time, and a `j <= i` bound instead of `j < n` made gcc 12 run the
 * scalar versions of both (the training attention forward was 2.8x slower). */
static inline float exp_from_max(float *row, int n, float *m) {
    float mx = *m, sum = 0.0f;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; j++) mx = row[j] > mx ? row[j] : mx;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        row[j] = exp_fast(row[j] - mx);
        sum += row[j];
    }
    *m = mx;
    return sum;
}

/* Rows r0..r1-1 of P (row stride T): softmax over j <= i, zeros for i < j < r1 (the columns
 * the block's products read; nothing reads past them, so they are not written). */
static void softmax_causal_rows(float *P, int T, int r0, int r1) {
    for (int i = r0; i < r1; i++) {
        float *row = P + (size_t)i * T, mx = row[0];
        const int n = i + 1;
        const float inv = 1.0f / exp_from_max(row, n, &mx);
        for (int j = 0; j < n; j++) row[j] *= inv;
        memset(row + n, 0, sizeof(float) * (size_t)(r1 - n));
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

/* Where a head lives in a qkv row: q heads at h*D, k heads at k0 + g*D, v heads at v0 + g*D
 * (ops.h). For MHA ld = 3C, k0 = C, v0 = 2C, exactly the offsets of the layout before GQA. */
typedef struct {
    int D, G;          /* head width, query heads per kv head */
    size_t ld, k0, v0; /* row stride; offsets of the first k and v head */
} QkvLayout;

static QkvLayout qkv_layout(const AttnShape *s) {
    const int H = s->H, Hkv = s->Hkv > 0 ? s->Hkv : H, D = s->C / H;
    assert(H % Hkv == 0);
    return (QkvLayout){.D = D,
                       .G = H / Hkv,
                       .ld = (size_t)(H + 2 * Hkv) * D,
                       .k0 = (size_t)H * D,
                       .v0 = (size_t)(H + Hkv) * D};
}

void attention_forward(float *out, float *probs, const float *qkv, const AttnShape *s) {
    const QkvLayout L = qkv_layout(s);
    const int T = s->T, C = s->C, H = s->H, D = L.D;
    const size_t ld = L.ld, TT = (size_t)T * T;
    const float scale = 1.0f / sqrtf((float)D);
    const PosMethod *m = s->pos ? s->pos->m : NULL;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < H; h++) {
            const size_t bh = (size_t)b * H + h, kv = (size_t)(h / L.G) * D;
            const float *row = qkv + (size_t)b * T * ld, *q = row + (size_t)h * D;
            const float *k = row + L.k0 + kv, *v = row + L.v0 + kv;
            float *P = probs + bh * TT, *o = out + (size_t)b * T * C + (size_t)h * D;
            for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
                const int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T, nr = r1 - r0, kend = r1;
                float *Pr = P + (size_t)r0 * T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, kend, D, scale,
                            q + (size_t)r0 * ld, (int)ld, k, (int)ld, 0.0f, Pr, T);
                if (m && m->bias_forward)
                    m->bias_forward(s->pos, Pr, (size_t)T, s->layer, h, s->pos0 + r0, nr, s->pos0,
                                    kend);
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
 * zero for i < j < r1 (read by the block's products; bias_backward reads only j <= i). */
static void softmax_backward_rows(float *dS, const float *P, int T, int r0, int r1) {
    for (int i = r0; i < r1; i++) {
        const float *pr = P + (size_t)i * T;
        float *dr = dS + (size_t)i * T, dot = 0.0f;
        const int n = i + 1;
#pragma omp simd reduction(+ : dot)
        for (int j = 0; j < n; j++) dot += pr[j] * dr[j];
        for (int j = 0; j < n; j++) dr[j] = pr[j] * (dr[j] - dot);
        memset(dr + n, 0, sizeof(float) * (size_t)(r1 - n));
    }
}

/* The backward of query head h of batch b: dQ of the head (=), dK and dV of its kv head (+=),
 * dS of the pair. qkv, dqkv point at the batch's first row. */
static void backward_head(float *dqkv, float *dscores, const float *dout, const float *qkv,
                          const float *probs, const AttnShape *s, const QkvLayout *L, int b,
                          int h) {
    const int T = s->T, C = s->C, D = L->D;
    const size_t ld = L->ld, TT = (size_t)T * T, bh = (size_t)b * s->H + h;
    const size_t kv = (size_t)(h / L->G) * D;
    const float scale = 1.0f / sqrtf((float)D), p = s->attn_dropout;
    const float *q = qkv + (size_t)h * D, *k = qkv + L->k0 + kv, *v = qkv + L->v0 + kv;
    const float *P = probs + bh * TT, *dO = dout + (size_t)b * T * C + (size_t)h * D;
    float *dS = dscores + bh * TT;
    float *dq = dqkv + (size_t)h * D, *dk = dqkv + L->k0 + kv, *dv = dqkv + L->v0 + kv;
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
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kend, D, nr, 1.0f, Pd + (size_t)r0 * T,
                    T, dOr, C, 1.0f, dv, (int)ld);
        /* dP = dO V^T, through the dropout mask */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, kend, D, 1.0f, dOr, C, v, (int)ld,
                    0.0f, dSr, T);
        if (p > 0.0f) dropout_block(dS, dS, T, r0, r1, kend, p, s->key, bh * TT);
        softmax_backward_rows(dS, P, T, r0, r1);
        /* dQ = dS K / sqrt(D), dK += dS^T Q / sqrt(D) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, D, kend, scale, dSr, T, k,
                    (int)ld, 0.0f, dq + (size_t)r0 * ld, (int)ld);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kend, D, nr, scale, dSr, T,
                    q + (size_t)r0 * ld, (int)ld, 1.0f, dk, (int)ld);
    }
}

void attention_backward(float *dqkv, float *dscores, const float *dout, const float *qkv,
                        const float *probs, const AttnShape *s) {
    const QkvLayout L = qkv_layout(s);
    const int T = s->T, Hkv = s->H / L.G;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < s->B; b++)
        for (int g = 0; g < Hkv; g++) {
            const size_t row = (size_t)b * T * L.ld, kv = (size_t)g * L.D;
            /* dK and dV collect contributions from every query block of every head of the
             * group, always in the order h = g G, g G + 1, ... */
            zero_rows(dqkv + row + L.k0 + kv, T, L.D, L.ld);
            zero_rows(dqkv + row + L.v0 + kv, T, L.D, L.ld);
            for (int h = g * L.G; h < (g + 1) * L.G; h++)
                backward_head(dqkv + row, dscores, dout, qkv + row, probs, s, &L, b, h);
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
 * Memory per thread is the key tile transposed, one score strip and one output tile, whatever
 * T is; only the caller's qkv (B, T, (H + 2 Hkv) D) grows with T. Sizes (measured with the
 * reference model, D = 32, on 2 AVX-512 cores): the transposed key tile is 32 x 256 floats = 32 KB,
 * the score strip 16 x 256 = 16 KB, the output tile 128 x 32 = 16 KB. The products are plain C
 * loops blocked for registers (strip_scores, strip_pv) rather than cblas_sgemm calls, whose
 * per-call cost is large next to products with an inner dimension of 32: the kernel went
 * from ~95 GFLOP/s at T = 16k with sgemm on 64 x 256 tiles to ~100 with these loops, ~127
 * once the row maximum below was vectorized, and ~150 with 128-row work items, since
 * transposing a key tile costs about a quarter of its products at 64 rows. 128 rows still
 * leave the dynamic schedule enough items to balance the causal triangle.
 * tests/test_attention_tiled.c checks the result against a double-precision reference. */

/* Query rows go through a key tile ATT_STRIP at a time: the strip's scores (16 x 256 floats,
 * 16 KB) are computed, biased, exponentiated and multiplied by V while they are still in L1,
 * instead of a whole ATT_TILE_Q x 256 tile going through L2 between the passes. */
#define ATT_STRIP 16

/* Floats of one thread's tiles: the key tile transposed (D x K), the score strip (ATT_STRIP
 * x K), the output tile (Q x D), running max and sum (Q), each rounded up to 16 floats so
 * every part starts 64-byte aligned. */
static size_t tile_floats(int D) {
    size_t parts[] = {(size_t)D * ATT_TILE_K, (size_t)ATT_STRIP * ATT_TILE_K,
                      (size_t)ATT_TILE_Q * D, ATT_TILE_Q, ATT_TILE_Q};
    size_t n = 0;
    for (int i = 0; i < 5; i++) n += (parts[i] + 15) / 16 * 16;
    return n;
}

size_t attention_tiled_scratch_floats(int C, int H, int nthreads) {
    return tile_floats(C / H) * (size_t)(nthreads > 0 ? nthreads : 1);
}

/* KT (D x ATT_TILE_K) = keys 0..nj-1 of k (row stride ld) transposed, columns nj..ncp-1 zero:
 * with the keys along a row, a score row is a sum of D rows of KT, which vectorizes. */
static void transpose_keys(float *restrict KT, const float *restrict k, size_t ld, int nj, int ncp,
                           int D) {
    for (int c = 0; c < nj; c++)
        for (int d = 0; d < D; d++) KT[(size_t)d * ATT_TILE_K + c] = k[(size_t)c * ld + d];
    for (int d = 0; d < D; d++)
        for (int c = nj; c < ncp; c++) KT[(size_t)d * ATT_TILE_K + c] = 0.0f;
}

/* S (nr x ncp, row stride ATT_TILE_K) = scale * Q KT for query rows q (row stride ld); ncp is
 * a multiple of 64. Register blocking: 4 rows x 64 keys = 16 vector accumulators of 16 floats
 * (AVX-512), each KT vector loaded once for 4 rows; the compiler vectorizes the c loops. Rows
 * past nr in the last group of 4 repeat row nr-1 (S has ATT_STRIP rows, a multiple of 4). */
static void strip_scores(float *restrict S, const float *restrict q, size_t ld,
                         const float *restrict KT, int nr, int ncp, int D, float scale, float slope,
                         int i, int j0) {
    for (int r = 0; r < nr; r += 4) {
        const float *qr[4];
        for (int a = 0; a < 4; a++) qr[a] = q + (size_t)(r + a < nr ? r + a : nr - 1) * ld;
        for (int c0 = 0; c0 < ncp; c0 += 64) {
            float acc[4][64] = {{0.0f}};
            for (int d = 0; d < D; d++) {
                const float *kt = KT + (size_t)d * ATT_TILE_K + c0;
                for (int a = 0; a < 4; a++) {
                    const float qv = qr[a][d];
                    for (int c = 0; c < 64; c++) acc[a][c] += qv * kt[c];
                }
            }
            /* a linear bias -slope (i - j) is added in the same store (ALiBi's fast path) */
            for (int a = 0; a < 4; a++) {
                const int dj = j0 + c0 - (i + r + a);
                for (int c = 0; c < 64; c++)
                    S[(size_t)(r + a) * ATT_TILE_K + c0 + c] =
                        acc[a][c] * scale + slope * (float)(dj + c);
            }
        }
    }
}

/* o (nr x D) += P V for P (nr x nj, row stride ATT_TILE_K) and v (nj rows, stride ld). For
 * D = 32 (the reference model) 4 rows are kept in 8 vector accumulators and each V row is
 * loaded once for the 4; other widths take the plain loop. */
static void strip_pv(float *restrict o, const float *restrict P, const float *restrict v, size_t ld,
                     int nr, int nj, int D) {
    int r = 0;
    if (D == 32)
        for (; r + 4 <= nr; r += 4) {
            float acc[4][32];
            for (int a = 0; a < 4; a++)
                for (int d = 0; d < 32; d++) acc[a][d] = o[(size_t)(r + a) * 32 + d];
            for (int j = 0; j < nj; j++) {
                const float *vj = v + (size_t)j * ld;
                for (int a = 0; a < 4; a++) {
                    const float p = P[(size_t)(r + a) * ATT_TILE_K + j];
                    for (int d = 0; d < 32; d++) acc[a][d] += p * vj[d];
                }
            }
            for (int a = 0; a < 4; a++)
                for (int d = 0; d < 32; d++) o[(size_t)(r + a) * 32 + d] = acc[a][d];
        }
    for (; r < nr; r++)
        for (int j = 0; j < nj; j++) {
            const float p = P[(size_t)r * ATT_TILE_K + j];
            for (int d = 0; d < D; d++) o[(size_t)r * D + d] += p * v[(size_t)j * ld + d];
        }
}

/* Online-softmax step for one score tile S (ni x nj, row stride ATT_TILE_K) of query rows
 * i0.. and keys j0..: masks j > i, turns S into e^(s - m') in place (0 where masked), updates
 * mx and l, and rescales o (row stride D) by e^(m - m'). first: no earlier tile (o, l unset;
 * o is zeroed). */
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
        const float sum = exp_from_max(row, valid, &m_new);
        if (valid < nj) memset(row + valid, 0, sizeof(float) * (size_t)(nj - valid));
        if (first) {
            l[r] = sum;
            memset(o + (size_t)r * D, 0, sizeof(float) * (size_t)D);
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
    const QkvLayout L = qkv_layout(s);
    const int T = s->T, C = s->C, D = L.D;
    const size_t ld = L.ld, kv = (size_t)(h / L.G) * D;
    const float scale = 1.0f / sqrtf((float)D);
    const PosMethod *m = s->pos ? s->pos->m : NULL;
    const float *row = qkv + (size_t)b * T * ld, *q = row + (size_t)h * D;
    const float *k = row + L.k0 + kv, *v = row + L.v0 + kv;
    float *KT = tiles, *S = KT + ((size_t)D * ATT_TILE_K + 15) / 16 * 16;
    float *o = S + ((size_t)ATT_STRIP * ATT_TILE_K + 15) / 16 * 16;
    float *mx = o + ((size_t)ATT_TILE_Q * D + 15) / 16 * 16, *l = mx + (ATT_TILE_Q + 15) / 16 * 16;
    const int kend = i0 + ni; /* causal: the last row sees keys 0..kend-1 */
    const float slope = m && m->linear_slope ? m->linear_slope(s->pos, s->layer, h) : 0.0f;
    for (int j0 = 0; j0 < kend; j0 += ATT_TILE_K) {
        const int nj = kend - j0 < ATT_TILE_K ? kend - j0 : ATT_TILE_K, first = j0 == 0;
        transpose_keys(KT, k + (size_t)j0 * ld, ld, nj, (nj + 63) / 64 * 64, D);
        for (int r0 = 0; r0 < ni; r0 += ATT_STRIP) {
            const int i = i0 + r0, nr = ni - r0 < ATT_STRIP ? ni - r0 : ATT_STRIP;
            if (i + nr <= j0) continue; /* every row of the strip is before the key tile */
            /* the strip's last row sees keys up to i + nr - 1: fewer than nj on the diagonal */
            const int nc = i + nr - j0 < nj ? i + nr - j0 : nj;
            /* S = Q K^T / sqrt(D) + bias: the bias after the scaling, as attention_forward */
            strip_scores(S, q + (size_t)i * ld, ld, KT, nr, (nc + 63) / 64 * 64, D, scale, slope, i,
                         j0);
            if (m && m->bias_forward && !m->linear_slope)
                m->bias_forward(s->pos, S, ATT_TILE_K, s->layer, h, s->pos0 + i, nr, s->pos0 + j0,
                                nc);
            online_softmax_tile(S, o + (size_t)r0 * D, mx + r0, l + r0, i, nr, j0, nc, D, first);
            /* o = o * alpha (done above) + P V */
            strip_pv(o + (size_t)r0 * D, S, v + (size_t)j0 * ld, ld, nr, nc, D);
        }
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

/* ---- generation: attention against the paged KV cache (kvcache.c) ----------------------
 *
 * A decode step has one query row per sequence and head against every cached key: memory-bound
 * on the cache, not compute-bound, so each (batch, head, row) is one work item that streams its
 * kv head's blocks once, with the same online softmax as the tiled kernel (one row, one block of
 * KV_BLOCK keys at a time). Rows of a pass with T > 1 (a prompt continued from a cached prefix)
 * are separate items too: correct for any T, but re-reading the blocks per row, so a prompt
 * that starts at position 0 goes through attention_forward_tiled instead (model.c). The block
 * loop is compiled once per cache dtype (KvDtype); with bf16 a step reads half the bytes. */

void kv_store(const KvPass *kv, const float *qkv, const AttnShape *s) {
    const QkvLayout L = qkv_layout(s);
    const int T = s->T, D = L.D, Hkv = s->H / L.G;
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < T; t++) {
            const float *row = qkv + ((size_t)b * T + t) * L.ld;
            const int pos = kv->pos0[b] + t, c = pos % KV_BLOCK;
            for (int g = 0; g < Hkv; g++) {
                void *KT = kv_block_keys(kv->pool, kv->seq[b], s->layer, g, pos);
                void *V = kv_block_values(kv->pool, kv->seq[b], s->layer, g, pos);
                const float *k = row + L.k0 + (size_t)g * D, *v = row + L.v0 + (size_t)g * D;
                for (int d = 0; d < D; d++) {
                    kv_put(kv->pool, KT, (size_t)d * KV_BLOCK + c, k[d]);
                    kv_put(kv->pool, V, (size_t)c * D + d, v[d]);
                }
            }
        }
}

/* Element i of a block part; bf16 is a compile-time constant at every call, so each of the
 * block kernels below is compiled once per dtype, and the bf16 loads widen in registers
 * (zero-extend and shift) instead of going through memory. */
static inline float kv_load(const void *part, size_t i, int bf16) {
    return bf16 ? bf16_to_float(((const uint16_t *)part)[i]) : ((const float *)part)[i];
}

/* S (KV_BLOCK) = scale q . keys of one block part KT (D x KV_BLOCK), scaled after the sum as
 * in the tiled kernel; the scores stay in registers across the D rows. */
static inline void block_scores(float *restrict S, const float *restrict q, const void *KT, int D,
                                float scale, int bf16) {
    float acc[KV_BLOCK] = {0.0f};
    for (int d = 0; d < D; d++) {
        const float qd = q[d];
        for (int c = 0; c < KV_BLOCK; c++)
            acc[c] += qd * kv_load(KT, (size_t)d * KV_BLOCK + c, bf16);
    }
    for (int c = 0; c < KV_BLOCK; c++) S[c] = acc[c] * scale;
}

/* o (D) = alpha o + sum over c in ca..cb-1 of P[c] V[c] for one block part V (KV_BLOCK x D).
 * Columns go 32 at a time through two register accumulators (even and odd keys), so the adds
 * of consecutive keys do not wait on each other; a rest below 32 takes the plain loop. */
static inline void block_pv(float *restrict o, float alpha, const float *restrict P, const void *V,
                            int ca, int cb, int D, int bf16) {
    int d0 = 0;
    for (; d0 + 32 <= D; d0 += 32) {
        float acc[2][32];
        for (int d = 0; d < 32; d++) acc[0][d] = alpha * o[d0 + d], acc[1][d] = 0.0f;
        int c = ca;
        for (; c + 2 <= cb; c += 2)
            for (int e = 0; e < 2; e++)
                for (int d = 0; d < 32; d++)
                    acc[e][d] += P[c + e] * kv_load(V, (size_t)(c + e) * D + d0 + d, bf16);
        for (; c < cb; c++)
            for (int d = 0; d < 32; d++)
                acc[0][d] += P[c] * kv_load(V, (size_t)c * D + d0 + d, bf16);
        for (int d = 0; d < 32; d++) o[d0 + d] = acc[0][d] + acc[1][d];
    }
    for (int d = d0; d < D; d++) {
        float x = alpha * o[d];
        for (int c = ca; c < cb; c++) x += P[c] * kv_load(V, (size_t)c * D + d, bf16);
        o[d] = x;
    }
}

/* Asks for the next block's keys and values of this head while the current one is computed:
 * one head's part of a block is 4 KB (bf16) or 8 KB (f32) with the other heads and layers in
 * between, and the hardware prefetcher starts over at every 4 KB page, so without this a long
 * context streamed at about half the machine's read bandwidth. */
static void prefetch_block(const KvPool *p, int seq, int l, int g, int pos, int D) {
    const char *k = kv_block_keys(p, seq, l, g, pos), *v = kv_block_values(p, seq, l, g, pos);
    const size_t bytes = (size_t)KV_BLOCK * D * p->elem_bytes;
    for (size_t x = 0; x < bytes; x += 64) {
        __builtin_prefetch(k + x);
        __builtin_prefetch(v + x);
    }
}

/* o (D) = softmax-weighted values for query q of head h at absolute position i, reading keys
 * lo..i of sequence `seq`; the position method's bias as in the other kernels. */
static inline void paged_row_dtype(float *restrict o, const float *restrict q, const AttnShape *s,
                                   const KvPass *kv, int seq, int h, int g, int i, int lo, int D,
                                   int bf16) {
    const float scale = 1.0f / sqrtf((float)D);
    const PosMethod *m = s->pos ? s->pos->m : NULL;
    const float slope = m && m->linear_slope ? m->linear_slope(s->pos, s->layer, h) : 0.0f;
    _Alignas(64) float S[KV_BLOCK];
    float mx = -INFINITY, l = 0.0f;
    memset(o, 0, sizeof(float) * (size_t)D);
    for (int j0 = lo / KV_BLOCK * KV_BLOCK; j0 <= i; j0 += KV_BLOCK) {
        const int ca = lo > j0 ? lo - j0 : 0, cb = i - j0 < KV_BLOCK ? i - j0 + 1 : KV_BLOCK;
        if (j0 + KV_BLOCK <= i) prefetch_block(kv->pool, seq, s->layer, g, j0 + KV_BLOCK, D);
        block_scores(S, q, kv_block_keys(kv->pool, seq, s->layer, g, j0), D, scale, bf16);
        /* the bias after the scaling, as attention_forward; ALiBi's slope folded in */
        for (int c = ca; c < cb; c++) S[c] += slope * (float)(j0 + c - i);
        if (m && m->bias_forward && !m->linear_slope)
            m->bias_forward(s->pos, S + ca, KV_BLOCK, s->layer, h, i, 1, j0 + ca, cb - ca);
        /* keys outside ca..cb get -inf (probability 0), so the softmax runs over the whole
         * aligned block, a multiple of the vector width: no scalar head or tail loop */
        for (int c = 0; c < KV_BLOCK; c++)
            if (c < ca || c >= cb) S[c] = -INFINITY;
        float m_new = mx;
        const float sum = exp_from_max(S, KV_BLOCK, &m_new);
        const float alpha = exp_fast(mx - m_new); /* 0 on the first block (mx = -inf) */
        l = l * alpha + sum;
        block_pv(o, alpha, S, kv_block_values(kv->pool, seq, s->layer, g, j0), ca, cb, D, bf16);
        mx = m_new;
    }
    const float inv = 1.0f / l;
    for (int d = 0; d < D; d++) o[d] *= inv;
}

static void paged_row(float *restrict o, const float *restrict q, const AttnShape *s,
                      const KvPass *kv, int seq, int h, int g, int i, int lo, int D) {
    if (kv->pool->dtype == KV_BF16)
        paged_row_dtype(o, q, s, kv, seq, h, g, i, lo, D, 1);
    else
        paged_row_dtype(o, q, s, kv, seq, h, g, i, lo, D, 0);
}

void attention_forward_paged(float *out, const float *qkv, const AttnShape *s, const KvPass *kv) {
    const QkvLayout L = qkv_layout(s);
    const int T = s->T, H = s->H, C = s->C;
    const long items = (long)s->B * H * T;
#pragma omp parallel for schedule(dynamic, 1)
    for (long it = 0; it < items; it++) {
        const int b = (int)(it / ((long)H * T)), h = (int)(it / T % H), t = (int)(it % T);
        const int seq = kv->seq[b], i = kv->pos0[b] + t;
        const KvSeq *q = &kv->pool->seqs[seq];
        int lo = kv->window > 0 && i - kv->window + 1 > 0 ? i - kv->window + 1 : 0;
        if (lo < q->first_block * KV_BLOCK)
            sys_error("internal: key %d of KV sequence %d was evicted", lo, seq);
        const float *qr = qkv + ((size_t)b * T + t) * L.ld + (size_t)h * L.D;
        paged_row(out + ((size_t)b * T + t) * C + (size_t)h * L.D, qr, s, kv, seq, h, h / L.G, i,
                  lo, L.D);
    }
}
