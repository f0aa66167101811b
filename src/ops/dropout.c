/* dropout.c — inverted dropout (scale kept elements by 1/(1-p) in training, identity in
 * evaluation). The mask is a pure function of (key, element index): backward recomputes it,
 * nothing is stored, and results are the same for any thread count. */
#include <string.h>

#include "../util/util.h"
#include "ops.h"

void dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t key) {
    if (p <= 0.0f) {
        if (out != inp) memcpy(out, inp, n * sizeof(float));
        return;
    }
    float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = rng_uniform(key, i) >= p ? inp[i] * scale : 0.0f;
}

void dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t key) {
    dropout_forward(dinp, dout, n, p, key); /* the same masked scaling is its own transpose */
}
