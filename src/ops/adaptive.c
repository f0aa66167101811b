/* adaptive.c — adaptive input embeddings (Baevski & Auli 2019) and the adaptive softmax
 * (Grave et al. 2017), tied as fairseq's tie_adaptive_weights + tie_adaptive_proj.
 *
 * The vocabulary, sorted by frequency, is cut into clusters: the head [0, s_1) and tails
 * [s_k, s_k+1). Cluster k has a table E_k (size_k, d_k) with d_k = C / factor^k and a
 * projection P_k (C, d_k). Input: x = scale * P_k E_k[t - s_k]. Output, for hidden state h:
 *   head  z = [h E_0^T | h W_c^T]                  (s_1 words, then one logit per tail)
 *   log p(t) = log_softmax(z)[t]                                        t in the head
 *   log p(t) = log_softmax(z)[s_1 + k - 1] + log_softmax((h P_k) E_k^T)[t - s_k]   t in tail k
 * which is an exactly normalized distribution over all V words. A tail is computed only for
 * the rows whose target lies in it: that is the whole saving, since most tokens are frequent.
 *
 * Rows are grouped by cluster with a counting sort (group_rows) and processed in chunks of at
 * most XENT_CHUNK rows, gathered into contiguous buffers so every product is one gemm (gemm.c:
 * OpenBLAS, or oneDNN in float32 or bf16). The
 * head goes ADAPT_HEAD_ROWS rows at a time: its weight gradient dE_0 += dz^T x has the chunk's rows
 * as inner dimension and reads and writes all of dE_0 (20 MB at 20,000 words) once per chunk;
 * 1,024 rows made the head ~6% faster than 256 (128 was 20% slower) with the WikiText-103
 * model at L = 512, for 82 MB of logits instead of 20 MB. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "../util/util.h"
#include "fastmath.h"
#include "ops.h"

static int head_width(const Adaptive *a) {
    return a->start[1] + a->K - 1;
}

static int max_tail_size(const Adaptive *a) {
    int m = 0;
    for (int k = 1; k < a->K; k++)
        if (a->start[k + 1] - a->start[k] > m) m = a->start[k + 1] - a->start[k];
    return m;
}

/* The logits buffer holds a head chunk (ADAPT_HEAD_ROWS rows) or at least one row of any tail. */
static size_t logits_floats(const Adaptive *a) {
    size_t head = (size_t)ADAPT_HEAD_ROWS * head_width(a), tail = (size_t)max_tail_size(a);
    return head > tail ? head : tail;
}

size_t adaptive_scratch_floats(const Adaptive *a) {
    /* logits, then gathered rows (C), projected rows (d <= C) and their gradients */
    return logits_floats(a) + 4 * (size_t)XENT_CHUNK * a->C;
}

int adaptive_cluster(const Adaptive *a, int id) {
    int k = 0;
    while (k + 1 < a->K && id >= a->start[k + 1]) k++;
    return k;
}

/* Counting sort of rows 0..N-1 by the cluster of ids[r]: cluster k's rows are
 * rows[first[k] .. first[k+1]), in increasing order. */
static void group_rows(int32_t *rows, size_t first[ADAPT_MAX + 1], const int32_t *ids, size_t N,
                       const Adaptive *a) {
    size_t count[ADAPT_MAX] = {0};
    for (size_t r = 0; r < N; r++) count[adaptive_cluster(a, ids[r])]++;
    first[0] = 0;
    for (int k = 0; k < a->K; k++) first[k + 1] = first[k] + count[k];
    size_t next[ADAPT_MAX];
    memcpy(next, first, sizeof next);
    for (size_t r = 0; r < N; r++) rows[next[adaptive_cluster(a, ids[r])]++] = (int32_t)r;
}

/* A pass's buffers, and the engine of its products. */
typedef struct {
    float *logits, *xg, *h, *dh, *dxg;
    Gemm *mm;
} Scratch;

static Scratch carve(Gemm *mm, const Adaptive *a, float *scratch) {
    size_t rc = (size_t)XENT_CHUNK * a->C;
    float *p = scratch + logits_floats(a);
    return (Scratch){scratch, p, p + rc, p + 2 * rc, p + 3 * rc, mm};
}

/* ---- adaptive input ------------------------------------------------------------------ */

/* Rows e (n, d) of E_k for the tokens of rows r. */
static void gather_emb(float *e, const Adaptive *w, int k, const int32_t *tokens, const int32_t *r,
                       int n) {
    const int d = w->dim[k];
    for (int i = 0; i < n; i++)
        memcpy(e + (size_t)i * d, w->emb[k] + (size_t)(tokens[r[i]] - w->start[k]) * d,
               d * sizeof(float));
}

/* out rows r = scale * e P_k^T */
static void input_chunk_forward(float *out, const float *dout, Adaptive *g, const Adaptive *w,
                                const int32_t *tokens, const int32_t *r, int n, int k, float scale,
                                const Scratch *s) {
    (void)dout, (void)g;
    const int C = w->C, d = w->dim[k];
    gather_emb(s->h, w, k, tokens, r, n);
    gemm(s->mm, 0, 1, n, C, d, scale, s->h, d, w->proj[k], d, 0.0f, s->xg, C);
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)r[i] * C, s->xg + (size_t)i * C, C * sizeof(float));
}

/* dP_k (C, d) += scale * dout^T e ; dE_k rows += scale * dout P_k */
static void input_chunk_backward(float *out, const float *dout, Adaptive *g, const Adaptive *w,
                                 const int32_t *tokens, const int32_t *r, int n, int k, float scale,
                                 const Scratch *s) {
    (void)out;
    const int C = w->C, d = w->dim[k];
    for (int i = 0; i < n; i++)
        memcpy(s->xg + (size_t)i * C, dout + (size_t)r[i] * C, C * sizeof(float));
    gather_emb(s->h, w, k, tokens, r, n);
    gemm(s->mm, 1, 0, C, d, n, scale, s->xg, C, s->h, d, 1.0f, g->proj[k], d);
    gemm(s->mm, 0, 0, n, d, C, scale, s->xg, C, w->proj[k], d, 0.0f, s->dh, d);
    for (int i = 0; i < n; i++) { /* serial: one token may occur in many rows */
        float *de = g->emb[k] + (size_t)(tokens[r[i]] - w->start[k]) * d;
        const float *src = s->dh + (size_t)i * d;
        for (int j = 0; j < d; j++) de[j] += src[j];
    }
}

typedef void (*InputChunk)(float *out, const float *dout, Adaptive *g, const Adaptive *w,
                           const int32_t *tokens, const int32_t *r, int n, int k, float scale,
                           const Scratch *s);

/* Runs fn over the rows of each cluster in chunks of at most XENT_CHUNK rows. */
static void input_pass(Gemm *mm, InputChunk fn, float *out, const float *dout, Adaptive *g,
                       const int32_t *tokens, const Adaptive *w, size_t N, float scale,
                       int32_t *rows, float *scratch) {
    size_t first[ADAPT_MAX + 1];
    Scratch s = carve(mm, w, scratch);
    group_rows(rows, first, tokens, N, w);
    for (int k = 0; k < w->K; k++)
        for (size_t i0 = first[k]; i0 < first[k + 1]; i0 += XENT_CHUNK) {
            int n = (int)(first[k + 1] - i0 < XENT_CHUNK ? first[k + 1] - i0 : XENT_CHUNK);
            fn(out, dout, g, w, tokens, rows + i0, n, k, scale, &s);
        }
}

void adaptive_input_forward(Gemm *mm, float *out, const int32_t *tokens, const Adaptive *w,
                            size_t N, float scale, int32_t *rows, float *scratch) {
    input_pass(mm, input_chunk_forward, out, NULL, NULL, tokens, w, N, scale, rows, scratch);
}

void adaptive_input_backward(Gemm *mm, Adaptive *g, const float *dout, const int32_t *tokens,
                             const Adaptive *w, size_t N, float scale, int32_t *rows,
                             float *scratch) {
    input_pass(mm, input_chunk_backward, NULL, dout, g, tokens, w, N, scale, rows, scratch);
}

/* ---- adaptive softmax ---------------------------------------------------------------- */

/* Head logits of rows x (n, C): z (n, head_width) = [x E_0^T | x W_c^T]. */
static void head_logits(Gemm *mm, float *z, const float *x, int n, const Adaptive *w) {
    const int C = w->C, s1 = w->start[1], hw = head_width(w);
    gemm(mm, 0, 1, n, s1, C, 1.0f, x, C, w->out_emb[0], C, 0.0f, z, hw);
    if (w->K > 1) gemm(mm, 0, 1, n, w->K - 1, C, 1.0f, x, C, w->cluster, C, 0.0f, z + s1, hw);
}

/* The head's target column: the word itself, or its tail's cluster logit. */
static int head_target(const Adaptive *w, int t) {
    int k = adaptive_cluster(w, t);
    return k == 0 ? t : w->start[1] + k - 1;
}

/* Head part of every row into losses; with grad, also dx = and the head's parameter
 * gradients. */
static void head_pass(float *losses, float *dx, Adaptive *g, const float *x, const Adaptive *w,
                      const int32_t *targets, size_t N, float scale, const Scratch *s) {
    float *z = s->logits;
    const int C = w->C, s1 = w->start[1], hw = head_width(w), grad = dx != NULL;
    for (size_t r0 = 0; r0 < N; r0 += ADAPT_HEAD_ROWS) {
        int n = (int)(N - r0 < ADAPT_HEAD_ROWS ? N - r0 : ADAPT_HEAD_ROWS);
        const float *xc = x + r0 * C;
        head_logits(s->mm, z, xc, n, w);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < n; r++)
            losses[r0 + r] = (float)xent_row(z + (size_t)r * hw, hw,
                                             head_target(w, targets[r0 + r]), scale, grad);
        if (!grad) continue;
        /* z now holds dz: dx = dz_words E_0 + dz_clusters W_c; dE_0 += dz_words^T x, ... */
        gemm(s->mm, 0, 0, n, C, s1, 1.0f, z, hw, w->out_emb[0], C, 0.0f, dx + r0 * C, C);
        gemm(s->mm, 1, 0, s1, C, n, 1.0f, z, hw, xc, C, 1.0f, g->out_emb[0], C);
        if (w->K > 1) {
            gemm(s->mm, 0, 0, n, C, w->K - 1, 1.0f, z + s1, hw, w->cluster, C, 1.0f, dx + r0 * C,
                 C);
            gemm(s->mm, 1, 0, w->K - 1, C, n, 1.0f, z + s1, hw, xc, C, 1.0f, g->cluster, C);
        }
    }
}

/* Rows r[0..n) of tail k: adds -log p(word | cluster) to losses; with grad, adds the rows'
 * gradient to dx and the tail's parameter gradients. */
static void tail_chunk(float *losses, float *dx, Adaptive *g, const float *x, const Adaptive *w,
                       const int32_t *targets, const int32_t *r, int n, int k, float scale,
                       const AdaptiveDrop *drop, const Scratch *s) {
    const int C = w->C, d = w->dim[k], size = w->start[k + 1] - w->start[k], grad = dx != NULL;
    for (int i = 0; i < n; i++)
        memcpy(s->xg + (size_t)i * C, x + (size_t)r[i] * C, C * sizeof(float));
    /* h (n, d) = x P_k: the input projection's transpose maps C -> d */
    gemm(s->mm, 0, 0, n, d, C, 1.0f, s->xg, C, w->out_proj[k], d, 0.0f, s->h, d);
    for (int i = 0; i < n; i++)
        dropout_forward(s->h + (size_t)i * d, s->h + (size_t)i * d, d, drop->p,
                        rng_key(drop->key, (uint64_t)r[i]));
    gemm(s->mm, 0, 1, n, size, d, 1.0f, s->h, d, w->out_emb[k], d, 0.0f, s->logits, size);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        losses[r[i]] += (float)xent_row(s->logits + (size_t)i * size, size,
                                        targets[r[i]] - w->start[k], scale, grad);
    if (!grad) return;
    /* du is in logits: dh = du E_k; dE_k += du^T h; through the dropout; dx_rows += dh P_k^T;
     * dP_k += x^T dh */
    gemm(s->mm, 0, 0, n, d, size, 1.0f, s->logits, size, w->out_emb[k], d, 0.0f, s->dh, d);
    gemm(s->mm, 1, 0, size, d, n, 1.0f, s->logits, size, s->h, d, 1.0f, g->out_emb[k], d);
    for (int i = 0; i < n; i++)
        dropout_backward(s->dh + (size_t)i * d, s->dh + (size_t)i * d, d, drop->p,
                         rng_key(drop->key, (uint64_t)r[i]));
    gemm(s->mm, 0, 1, n, C, d, 1.0f, s->dh, d, w->out_proj[k], d, 0.0f, s->dxg, C);
    gemm(s->mm, 1, 0, C, d, n, 1.0f, s->xg, C, s->dh, d, 1.0f, g->out_proj[k], d);
    for (int i = 0; i < n; i++) {
        float *dst = dx + (size_t)r[i] * C;
        const float *src = s->dxg + (size_t)i * C;
        for (int c = 0; c < C; c++) dst[c] += src[c];
    }
}

/* Both directions (forward only when dx is NULL); returns the sum of the losses. */
static double softmax_pass(Gemm *mm, float *losses, float *dx, Adaptive *g, const float *x,
                           const Adaptive *w, const int32_t *targets, size_t N, float scale,
                           const AdaptiveDrop *drop, int32_t *rows, float *scratch) {
    Scratch s = carve(mm, w, scratch);
    head_pass(losses, dx, g, x, w, targets, N, scale, &s);
    size_t first[ADAPT_MAX + 1];
    group_rows(rows, first, targets, N, w);
    for (int k = 1; k < w->K; k++) {
        size_t fit = logits_floats(w) / (size_t)(w->start[k + 1] - w->start[k]);
        size_t chunk = fit < XENT_CHUNK ? fit : XENT_CHUNK; /* tail rows whose logits fit */
        for (size_t i0 = first[k]; i0 < first[k + 1]; i0 += chunk) {
            size_t n = first[k + 1] - i0 < chunk ? first[k + 1] - i0 : chunk;
            tail_chunk(losses, dx, g, x, w, targets, rows + i0, (int)n, k, scale, drop, &s);
        }
    }
    double total = 0.0;
    for (size_t r = 0; r < N; r++) total += losses[r]; /* in order: deterministic */
    return total;
}

void adaptive_softmax_forward(Gemm *mm, float *losses, const float *x, const Adaptive *w,
                              const int32_t *targets, size_t N, const AdaptiveDrop *drop,
                              int32_t *rows, float *scratch) {
    const AdaptiveDrop none = {0.0f, 0};
    softmax_pass(mm, losses, NULL, NULL, x, w, targets, N, 0.0f, drop ? drop : &none, rows,
                 scratch);
}

double adaptive_softmax_forward_backward(Gemm *mm, float *dx, Adaptive *g, float *losses,
                                         const float *x, const Adaptive *w, const int32_t *targets,
                                         size_t N, float scale, const AdaptiveDrop *drop,
                                         int32_t *rows, float *scratch) {
    return softmax_pass(mm, losses, dx, g, x, w, targets, N, scale, drop, rows, scratch);
}

/* log_softmax of a row in place. */

void adaptive_logprobs(Gemm *mm, float *out, const float *x, size_t N, const Adaptive *w,
                       float *scratch) {
    const int C = w->C, s1 = w->start[1], hw = head_width(w);
    const size_t V = (size_t)w->start[w->K];
    float *z = scratch, *h = scratch + logits_floats(w);
    for (size_t r0 = 0; r0 < N; r0 += XENT_CHUNK) { /* h: XENT_CHUNK x d <= the scratch's C */
        const int n = (int)(N - r0 < XENT_CHUNK ? N - r0 : XENT_CHUNK);
        const float *xc = x + r0 * C;
        float *oc = out + r0 * V;
        head_logits(mm, z, xc, n, w);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < n; r++) {
            log_softmax_inplace(z + (size_t)r * hw, hw);
            memcpy(oc + (size_t)r * V, z + (size_t)r * hw, s1 * sizeof(float));
        }
        for (int k = 1; k < w->K; k++) {
            const int d = w->dim[k], size = w->start[k + 1] - w->start[k];
            gemm(mm, 0, 0, n, d, C, 1.0f, xc, C, w->out_proj[k], d, 0.0f, h, d);
            gemm(mm, 0, 1, n, size, d, 1.0f, h, d, w->out_emb[k], d, 0.0f, oc + w->start[k],
                 (int)V);
#pragma omp parallel for schedule(static)
            for (int r = 0; r < n; r++) {
                float *u = oc + (size_t)r * V + w->start[k];
                const float c = z[(size_t)r * hw + s1 + k - 1];
                log_softmax_inplace(u, size);
                for (int j = 0; j < size; j++) u[j] += c;
            }
        }
    }
}
