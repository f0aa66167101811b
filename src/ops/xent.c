/* xent.c — the tied output layer and full-softmax cross-entropy, in row chunks.
 *
 * logits = x W^T with W the token embedding (tied, as Press & Wolf 2017 and Baevski & Auli);
 * loss_r = logsumexp(logits_r) - logits_r[target_r]. The gradient of scale * sum(loss) w.r.t.
 * the logits is scale * (softmax - onehot), which is written over the chunk's logits in place
 * and multiplied out at once: dx = dlogits W, dW += dlogits^T x. Chunks keep the working set
 * at XENT_CHUNK x V floats (34 MB at V = 33k) instead of N x V. The three products go through
 * gemm.c's engine (in bf16 they take bf16 inputs); the softmax and the loss stay float32. */
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

void xent_forward(Gemm *g, float *losses, const float *x, const float *weight,
                  const int32_t *targets, size_t N, int C, int V, float *scratch) {
    for (size_t r0 = 0; r0 < N; r0 += XENT_CHUNK) {
        int n = (int)(N - r0 < XENT_CHUNK ? N - r0 : XENT_CHUNK);
        gemm(g, 0, 1, n, V, C, 1.0f, x + r0 * C, C, weight, C, 0.0f, scratch, V); /* x W^T */
#pragma omp parallel for schedule(static)
        for (int r = 0; r < n; r++)
            losses[r0 + r] = (float)xent_row(scratch + (size_t)r * V, V, targets[r0 + r], 0, 0);
    }
}

double xent_forward_backward(Gemm *g, float *dx, float *dweight, const float *x,
                             const float *weight, const int32_t *targets, size_t N, int C, int V,
                             float scale, float *scratch) {
    double total = 0.0;
    for (size_t r0 = 0; r0 < N; r0 += XENT_CHUNK) {
        int n = (int)(N - r0 < XENT_CHUNK ? N - r0 : XENT_CHUNK);
        double row_loss[XENT_CHUNK];
        const float *xc = x + r0 * C;
        gemm(g, 0, 1, n, V, C, 1.0f, xc, C, weight, C, 0.0f, scratch, V);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < n; r++)
            row_loss[r] = xent_row(scratch + (size_t)r * V, V, targets[r0 + r], scale, 1);
        for (int r = 0; r < n; r++) total += row_loss[r]; /* in order: deterministic */
        /* scratch holds dlogits: dx = dlogits W, dW += dlogits^T x */
        gemm(g, 0, 0, n, C, V, 1.0f, scratch, V, weight, C, 0.0f, dx + r0 * C, C);
        gemm(g, 1, 0, V, C, n, 1.0f, scratch, V, xc, C, 1.0f, dweight, C);
    }
    return total;
}
