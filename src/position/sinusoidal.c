/* sinusoidal.c — fixed sinusoidal position embeddings (Vaswani et al. 2017), in fairseq's exact
 * layout, which is what the ALiBi paper's baseline used:
 *
 *   half = C/2,  w_k = exp(-k * ln(10000) / (half - 1)),  k = 0 .. half-1
 *   pe[p][k] = sin(p * w_k),  pe[p][half + k] = cos(p * w_k)     (all sines, then all cosines)
 *
 * The divisor is (half - 1), not half, so wavelengths run exactly from 2*pi to 2*pi*10000
 * (tensor2tensor's convention, slightly different from the Vaswani paper's formula).
 * Position p of the token at 0-based offset t is t + offset; fairseq numbers positions from
 * padding_idx + 1 = 2, hence the default offset 2. The vector is added, unscaled, to the token
 * embeddings after their sqrt(C) scaling. Any position is defined, so there is no maximum. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../util/util.h"
#include "position.h"

typedef struct {
    int offset;
    int rows;   /* table rows = positions 0 .. rows-1 */
    float pe[]; /* (rows, C) */
} Sinusoidal;

static const ConfigKey keys[] = {
    {"offset", KEY_INT, "2", 0, 1e9, NULL,
     "position number of the first token of a segment (fairseq: padding_idx + 1 = 2)", NO_FIELD},
};

static int check(const Config *c, char *err, size_t n) {
    if (c->model.d_model % 2 == 0 && c->model.d_model >= 4) return 0;
    snprintf(err, n, "model.d_model (%d) must be even and at least 4 for sinusoidal positions",
             c->model.d_model);
    return -1;
}

static void setup(Pos *p, const Config *c) {
    int C = p->C, half = C / 2;
    Sinusoidal *s = xcalloc(1, sizeof *s + sizeof(float) * (size_t)p->max_T * C);
    s->offset = (int)config_pos_num(c, "offset");
    s->rows = p->max_T;
    for (int t = 0; t < p->max_T; t++)
        for (int k = 0; k < half; k++) {
            /* double: at positions in the tens of thousands float angles lose digits */
            double w = exp(-(double)k * log(10000.0) / (half - 1));
            double a = (double)(t + s->offset) * w;
            s->pe[(size_t)t * C + k] = (float)sin(a);
            s->pe[(size_t)t * C + half + k] = (float)cos(a);
        }
    p->state = s;
}

static void embed_forward(const Pos *p, float *x, int B, int T, int pos0) {
    const Sinusoidal *s = p->state;
    size_t C = (size_t)p->C;
    const float *pe0 = s->pe + (size_t)pos0 * C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *row = x + ((size_t)b * T + t) * C;
            const float *pe = pe0 + (size_t)t * C;
            for (size_t k = 0; k < C; k++) row[k] += pe[k];
        }
}

/* pe at position t + offset in double: frequency k is 10000^(-k / (half - 1)). */
static void embed_reference(const Pos *p, int t, float *out) {
    const Sinusoidal *s = p->state;
    const int half = p->C / 2;
    for (int k = 0; k < half; k++) {
        double a = (double)(t + s->offset) * pow(10000.0, -(double)k / (half - 1));
        out[k] = (float)sin(a);
        out[half + k] = (float)cos(a);
    }
}

const PosMethod pos_sinusoidal = {
    .name = "sinusoidal",
    .summary = "fixed sin/cos embeddings added to the token embeddings (fairseq layout)",
    .label = "Sinusoidal",
    .color = "#1f77b4",
    .keys = keys,
    .n_keys = 1,
    .check = check,
    .setup = setup,
    .embed_forward = embed_forward,
    .embed_reference = embed_reference,
};
