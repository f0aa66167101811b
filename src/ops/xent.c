/* xent.c — the tied output layer and full-softmax cross-entropy, in row chunks.
 *
 * logits = x W^T with W the token embedding (tied, as Press & Wolf 2017 and Baevski & Auli);
 * loss_r = logsumexp(logits_r) - logits_r[target_r]. The gradient of scale * sum(loss) w.r.t.
 * the logits is scale * (softmax - onehot), which is written over the chunk's logits in place
 * and multiplied out at once: dx = dlogits W, dW += dlogits^T x. Chunks keep the working set
 * at XENT_CHUNK x V floats (34 MB at V = 33k) instead of N x V. In bf16 (XentBf16) the three
 * products take bf16 inputs through oneDNN; the softmax and the loss stay float32. */
#include <cblas.h>
#include <math.h>

#include "fastmath.h"
#include "ops.h"

double xent_row(float *row, int V, int target, float scale, int grad) {
    float mx = row[0];
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < V; j++) mx = row[j] > mx ? row[j] : mx;
    const float logit = row[target];
    float sum = 0.0f;
    if (grad) {
        /* one exponential per entry: keep exp(l - max) in place, then scale it */
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) {
            row[j] = exp_fast(row[j] - mx);
            sum += row[j];
        }
        const float inv = scale / sum;
#pragma omp simd
        for (int j = 0; j < V; j++) row[j] *= inv;
        row[target] -= scale;
    } else {
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) sum += exp_fast(row[j] - mx);
    }
    return (double)mx + log((double)sum) - (double)logit;
}

/* logits (n, V) = x W^T of one chunk; in bf16 the chunk's x goes to bf->x16 (read again by
 * the backward's dW product) */
static void chunk_logits(float *logits, const float *x, const float *weight, int n, int C, int V,
                         const XentBf16 *bf) {
    if (bf) {
        bf16_from_f32(bf->ctx->x16, x, (size_t)n * C);
        bf16_matmul(bf->ctx->mm, logits, bf->ctx->x16, bf->weight, n, V, C, MM_FWD, 0);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, V, C, 1.0f, x, C, weight, C, 0.0f,
                logits, V);
}

/* dx (n, C) = dlogits W, dW += dlogits^T x for one chunk (x: the chunk's rows) */
static void chunk_backward(float *dx, float *dweight, const float *dlogits, const float *x,
                           const float *weight, int n, int C, int V, const XentBf16 *bf) {
    if (bf) {
        bf16_from_f32(bf->logits16, dlogits, (size_t)n * V);
        bf16_matmul(bf->ctx->mm, dx, bf->logits16, bf->weight, n, C, V, MM_DINP, 0);
        bf16_matmul(bf->ctx->mm, dweight, bf->logits16, bf->ctx->x16, V, C, n, MM_DW, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, C, V, 1.0f, dlogits, V, weight, C,
                0.0f, dx, C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, n, 1.0f, dlogits, V, x, C, 1.0f,
                dweight, C);
}

void xent_forward(float *losses, const float *x, const float *weight, const int32_t *targets,
                  size_t N, int C, int V, float *scratch, const XentBf16 *bf) {
    for (size_t r0 = 0; r0 < N; r0 += XENT_CHUNK) {
        int n = (int)(N - r0 < XENT_CHUNK ? N - r0 : XENT_CHUNK);
        chunk_logits(scratch, x + r0 * C, weight, n, C, V, bf);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < n; r++)
            losses[r0 + r] = (float)xent_row(scratch + (size_t)r * V, V, targets[r0 + r], 0, 0);
    }
}

double xent_forward_backward(float *dx, float *dweight, const float *x, const float *weight,
                             const int32_t *targets, size_t N, int C, int V, float scale,
                             float *scratch, const XentBf16 *bf) {
    double total = 0.0;
    for (size_t r0 = 0; r0 < N; r0 += XENT_CHUNK) {
        int n = (int)(N - r0 < XENT_CHUNK ? N - r0 : XENT_CHUNK);
        double row_loss[XENT_CHUNK];
        chunk_logits(scratch, x + r0 * C, weight, n, C, V, bf);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < n; r++)
            row_loss[r] = xent_row(scratch + (size_t)r * V, V, targets[r0 + r], scale, 1);
        for (int r = 0; r < n; r++) total += row_loss[r]; /* in order: deterministic */
        chunk_backward(dx + r0 * C, dweight, scratch, x + r0 * C, weight, n, C, V, bf);
    }
    return total;
}
