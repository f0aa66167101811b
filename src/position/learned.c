/* learned.c — absolute learned position embeddings (GPT-2's wpe; fairseq's
 * LearnedPositionalEmbedding), one trained vector per position:
 *
 *   x[b][t] = E[token] * sqrt(C) + P[t]        P = pos.weight, (max_positions, C)
 *
 * added after the sqrt(C) scaling, like sinusoidal. The table has no row for position
 * max_positions or beyond, so the method cannot run on longer sequences: it reports its table
 * size as max_positions(), which ./eval checks every L_valid against (a one-line error instead
 * of reading past the table). max_positions = 0 means train.seq_len.
 *
 * Init normal(0, C^-1/2), fairseq's LearnedPositionalEmbedding (the codebase of the ALiBi
 * paper's baselines), rather than model.init_std: fairseq's model is the one whose behaviour we
 * compare against, and our token embedding already follows its init. The position term then
 * starts sqrt(C) times smaller than the scaled token term (std 1), where the sinusoidal
 * baseline adds unit-amplitude vectors; training grows it as far as it pays. fairseq also
 * shifts its rows by padding_idx + 1; for a learned table that only renames rows, so row t is
 * position t here.
 * Like every pos.* tensor it gets no weight decay. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../util/util.h"
#include "position.h"

static const ConfigKey keys[] = {
    {"max_positions", KEY_INT, "0", 0, 1 << 20, NULL,
     "rows of the position table = the longest sequence the model can read; 0 = train.seq_len",
     NO_FIELD},
};

static int rows_of(const Config *c) {
    int n = (int)config_pos_num(c, "max_positions");
    return n ? n : c->train.seq_len;
}

static int check(const Config *c, char *err, size_t n) {
    if (rows_of(c) >= c->train.seq_len) return 0;
    snprintf(err, n,
             "model.position.max_positions (%d) is shorter than train.seq_len (%d): learned "
             "positions need a row per training position",
             rows_of(c), c->train.seq_len);
    return -1;
}

static void declare(const Config *c, ParamTable *pt) {
    param_add(pt, "pos.weight", 0, PARAM_POS, 2, (size_t)rows_of(c), (size_t)c->model.d_model);
}

typedef struct {
    size_t offset; /* of pos.weight in the model's buffers */
    int rows;      /* max_positions */
} Learned;

static void setup(Pos *p, const Config *c) {
    (void)c;
    const TensorSpec *t = &p->pt->t[param_find(p->pt, "pos.weight")];
    int rows = (int)t->shape[0];
    assert(p->max_T <= rows); /* the programs check lengths against max_positions() first */
    Learned *s = xcalloc(1, sizeof *s);
    *s = (Learned){.offset = t->offset, .rows = rows};
    p->state = s;
}

static void init(Pos *p, unsigned long long key) {
    const Learned *s = p->state;
    float *w = p->params + s->offset;
    const double std = 1.0 / sqrt((double)p->C);
    for (size_t i = 0; i < (size_t)s->rows * p->C; i++) w[i] = (float)(std * rng_normal(key, i));
}

/* x: (B, T, C) += P[pos0 + t] */
static void embed_forward(const Pos *p, float *x, int B, int T, int pos0) {
    const Learned *s = p->state;
    const size_t C = (size_t)p->C;
    const float *w = p->params + s->offset + (size_t)pos0 * C;
    assert(pos0 + T <= s->rows);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *row = x + ((size_t)b * T + t) * C;
            const float *pe = w + (size_t)t * C;
            for (size_t k = 0; k < C; k++) row[k] += pe[k];
        }
}

/* Row t of pos.weight, the definition: catches an embed_forward that reads the wrong row. */
static void embed_reference(const Pos *p, int t, float *out) {
    const Learned *s = p->state;
    for (int k = 0; k < p->C; k++) out[k] = p->params[s->offset + (size_t)t * p->C + k];
}

/* dP[pos0 + t] += sum_b dx[b][t]; each thread owns whole rows t and sums b in order, so the result
 * does not depend on the thread count. */
static void embed_backward(Pos *p, const float *dx, int B, int T, int pos0) {
    const Learned *s = p->state;
    const size_t C = (size_t)p->C;
    float *dw = p->grads + s->offset + (size_t)pos0 * C;
    assert(pos0 + T <= s->rows);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            const float *g = dx + ((size_t)b * T + t) * C;
            float *d = dw + (size_t)t * C;
            for (size_t k = 0; k < C; k++) d[k] += g[k];
        }
}

const PosMethod pos_learned = {
    .name = "learned",
    .summary = "a trained vector per position added to the token embeddings (max_positions rows)",
    .label = "Learned",
    .color = "#9467bd",
    .keys = keys,
    .n_keys = 1,
    .check = check,
    .declare = declare,
    .max_positions_key = "max_positions",
    .max_positions = rows_of,
    .setup = setup,
    .init = init,
    .embed_forward = embed_forward,
    .embed_backward = embed_backward,
    .embed_reference = embed_reference,
};
