/* alibi.c — Attention with Linear Biases (Press, Smith & Lewis, ICLR 2022, arXiv 2108.12409).
 *
 * No position embedding; the score of query i and key j <= i gets the bias -m_h * (i - j),
 * added after the 1/sqrt(D) scaling and not scaled by it (paper footnote 10; in the official
 * fairseq fork the mask is added to the already-scaled q.k). The official code adds +m*j
 * instead, which differs by m*i — a constant per softmax row, so the probabilities are the
 * same — but the -m*(i-j) form keeps the logits small, which matters in float at 16k tokens.
 *
 * Slopes (official get_slopes): for n heads, n a power of two, the geometric sequence with
 * first term and ratio 2^(-8/n), so 8 heads get 1/2 ... 1/256. Otherwise, with c the largest
 * power of two <= n: the c-head slopes, then every other entry (0, 2, 4, ...) of the 2c-head
 * slopes, n - c of them, appended (so the list is not monotonic). */
#include <math.h>
#include <stdlib.h>

#include "../util/util.h"
#include "position.h"

/* Slopes for n heads into m[0..n-1]. */
void alibi_slopes(int n, float *m) {
    int c = 1;
    while (c * 2 <= n) c *= 2;
    for (int h = 0; h < c; h++) m[h] = (float)pow(2.0, -8.0 * (h + 1) / c);
    for (int k = 0; c + k < n; k++) m[c + k] = (float)pow(2.0, -8.0 * (2 * k + 1) / (2 * c));
}

static void setup(Pos *p, const Config *c) {
    (void)c;
    float *m = xcalloc((size_t)p->H, sizeof *m);
    alibi_slopes(p->H, m);
    free(p->state);
    p->state = m;
}

static void bias_forward(const Pos *p, float *scores, size_t ld, int layer, int h, int i0, int ni,
                         int j0, int nj) {
    (void)layer;
    const float m = ((const float *)p->state)[h];
    for (int r = 0; r < ni; r++) {
        int i = i0 + r;
        int jmax = i - j0 + 1 < nj ? i - j0 + 1 : nj; /* keys j <= i only */
        float *row = scores + (size_t)r * ld;
        for (int cidx = 0; cidx < jmax; cidx++) row[cidx] -= m * (float)(i - (j0 + cidx));
    }
}

const PosMethod pos_alibi = {
    .name = "alibi",
    .summary = "linear distance penalty -m_h*(i-j) on attention scores, fixed geometric slopes",
    .setup = setup,
    .bias_forward = bias_forward,
};
