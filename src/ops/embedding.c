/* embedding.c — token embedding lookup, scaled by sqrt(C) as in Vaswani et al. and fairseq
 * (embed_scale), which keeps the tied embedding's O(1/sqrt(C))-sized entries comparable to the
 * position embeddings added next. */
#include <string.h>

#include "ops.h"

void embedding_forward(float *out, const int32_t *tokens, const float *weight, size_t N, int C,
                       float scale) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        const float *w = weight + (size_t)tokens[r] * C;
        float *y = out + r * C;
        for (int c = 0; c < C; c++) y[c] = w[c] * scale;
    }
}

void embedding_backward(float *dweight, const float *dout, const int32_t *tokens, size_t N, int C,
                        float scale) {
    /* serial: the same token may occur in many rows; N*C adds are cheap next to the matmuls */
    for (size_t r = 0; r < N; r++) {
        float *dw = dweight + (size_t)tokens[r] * C;
        const float *dy = dout + r * C;
        for (int c = 0; c < C; c++) dw[c] += dy[c] * scale;
    }
}
