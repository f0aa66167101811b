/* t5.c — T5 relative position bias (Raffel et al. 2020, JMLR, section 2.1), the "T5 bias"
 * baseline of the ALiBi paper (section 2.3; footnote 7: based on HuggingFace Transformers).
 *
 * A learned scalar per head and per bucket of the causal distance n = i - j >= 0 is added to
 * the score of query i and key j. Unidirectional buckets, as HF's _relative_position_bucket
 * with bidirectional=False (a decoder): with B buckets and E = B/2,
 *
 *   bucket(n) = n                                                               if n < E
 *             = min(B-1, E + floor(ln(n/E) / ln(max_distance/E) * (B - E)))      otherwise
 *
 * computed in float32 as HF's torch code does; with 32/128 the last bucket starts at n = 113,
 * not 128, because of the floor. Default: one table (buckets, H) shared by all layers — HF
 * stores it in layer 0 and passes the computed bias to every later layer; per_layer = true
 * gives every layer its own table (n_layers, buckets, H). Both are the tensor pos.rel_bias.
 *
 * Scaling: HF T5 does not scale q.k by 1/sqrt(D) and adds the bias to the raw score. Our model
 * scales, and the bias is added after the scaling (as for ALiBi): a learned scalar added after
 * the scaling is the same model as HF's table multiplied by 1/sqrt(D), so nothing is lost, and
 * all bias methods share one convention. Init: normal(0, d_model^-1/2), HF's T5 init for this
 * table (initializer_factor 1).
 *
 * Speed: setup() stores the bucket of every distance; prepare() expands the table into a
 * per-(table, head, distance) float array once per forward pass, so the bias of a pair is one
 * load — never a logarithm per pair — and a shared table is expanded once for all layers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../util/util.h"
#include "position.h"

typedef struct {
    int n_buckets, n_tables; /* n_tables: 1 (shared) or n_layers */
    int max_distance;        /* for bias_reference; the buckets are in `bucket` */
    int idx;                 /* pos.rel_bias */
    int *bucket;             /* (max_T) bucket of distance n */
    float *bias;             /* (n_tables, H, max_T) bias by distance, filled by prepare() */
    double *sums;            /* (H, max_T) backward scratch, or NULL */
} T5;

static const ConfigKey keys[] = {
    {"num_buckets", KEY_INT, "32", 2, 1024, NULL,
     "distance buckets (even): the first half exact distances, the second half log-spaced",
     NO_FIELD},
    {"max_distance", KEY_INT, "128", 1, 1e9, NULL,
     "distance where the log-spaced buckets end; every longer distance shares the last bucket",
     NO_FIELD},
    {"per_layer", KEY_BOOL, "false", 0, 1, NULL,
     "one bias table per layer instead of one shared by all layers (HF T5 shares)", NO_FIELD},
};

/* HF T5's unidirectional bucket of distance n >= 0 (float32 arithmetic, as in torch). */
int t5_bucket(long n, int n_buckets, int max_distance) {
    int E = n_buckets / 2;
    if (n < E) return (int)n;
    float x =
        logf((float)n / (float)E) / (float)log((double)max_distance / E) * (float)(n_buckets - E);
    return x >= (float)(n_buckets - 1 - E) ? n_buckets - 1 : E + (int)x;
}

static int check(const Config *c, char *err, size_t n) {
    int nb = (int)config_pos_num(c, "num_buckets"), md = (int)config_pos_num(c, "max_distance");
    if (nb % 2) {
        snprintf(err, n, "model.position.num_buckets: expected an even number, got %d", nb);
        return -1;
    }
    if (md <= nb / 2) {
        /* ln(max_distance / E) must be positive for the log-spaced half to grow with n */
        snprintf(err, n, "model.position.max_distance: %d must exceed num_buckets/2 (%d)", md,
                 nb / 2);
        return -1;
    }
    return 0;
}

static void declare(const Config *c, ParamTable *pt) {
    size_t nb = (size_t)config_pos_num(c, "num_buckets"), H = (size_t)c->model.n_heads;
    if (config_pos_bool(c, "per_layer"))
        param_add(pt, "pos.rel_bias", 0, PARAM_POS, 3, (size_t)c->model.n_layers, nb, H);
    else
        param_add(pt, "pos.rel_bias", 0, PARAM_POS, 2, nb, H);
}

static void setup(Pos *p, const Config *c) {
    int nb = (int)config_pos_num(c, "num_buckets"), md = (int)config_pos_num(c, "max_distance");
    int tables = config_pos_bool(c, "per_layer") ? p->n_layers : 1;
    size_t T = (size_t)p->max_T, H = (size_t)p->H, n_sums = p->grads ? H * T : 0;
    /* one block, freed with free(): header, sums (8-byte), bias, bucket */
    size_t head = (sizeof(T5) + 63) / 64 * 64;
    T5 *s = xcalloc(1, head + sizeof(double) * n_sums + sizeof(float) * tables * H * T +
                           sizeof(int) * T);
    s->n_buckets = nb;
    s->n_tables = tables;
    s->max_distance = md;
    s->idx = param_find(p->pt, "pos.rel_bias");
    s->sums = n_sums ? (double *)((char *)s + head) : NULL;
    s->bias = (float *)((char *)s + head + sizeof(double) * n_sums);
    s->bucket = (int *)(s->bias + tables * H * T);
    for (size_t n = 0; n < T; n++) s->bucket[n] = t5_bucket((long)n, nb, md);
    p->state = s;
}

static void init(Pos *p, unsigned long long key) {
    const TensorSpec *t = &p->pt->t[((const T5 *)p->state)->idx];
    float *w = p->params + t->offset;
    double std = 1.0 / sqrt((double)p->C);
    for (size_t i = 0; i < t->numel; i++) w[i] = (float)(std * rng_normal(key, i));
}

/* bias[t][h][n] = rel_bias[t][bucket(n)][h] for n < T. */
static void prepare(Pos *p, int T) {
    T5 *s = p->state;
    const float *w = p->params + p->pt->t[s->idx].offset;
    size_t H = (size_t)p->H, nb = (size_t)s->n_buckets;
    for (int t = 0; t < s->n_tables; t++)
        for (size_t h = 0; h < H; h++) {
            float *b = s->bias + ((size_t)t * H + h) * p->max_T;
            const float *wt = w + (size_t)t * nb * H;
            for (int n = 0; n < T; n++) b[n] = wt[(size_t)s->bucket[n] * H + h];
        }
}

static void bias_forward(const Pos *p, float *scores, size_t ld, int layer, int h, int i0, int ni,
                         int j0, int nj) {
    const T5 *s = p->state;
    const int t = s->n_tables > 1 ? layer : 0;
    const float *b = s->bias + ((size_t)t * p->H + h) * p->max_T;
    for (int r = 0; r < ni; r++) pos_add_distance_bias(scores + (size_t)r * ld, b, i0 + r, j0, nj);
}

/* HF's _relative_position_bucket (bidirectional=False) as torch evaluates it — float32 log,
 * truncated to an integer, then E added and capped at the last bucket — and that bucket's entry
 * of the table in p->params. */
static double bias_reference(const Pos *p, int layer, int h, int i, int j) {
    const T5 *s = p->state;
    const int n = i - j, nb = s->n_buckets, E = nb / 2;
    int bucket = n;
    if (n >= E) {
        float scaled =
            logf((float)n / (float)E) / (float)log((double)s->max_distance / E) * (float)(nb - E);
        bucket = E + (int)scaled;
        if (bucket > nb - 1) bucket = nb - 1;
    }
    const float *w = p->params + p->pt->t[s->idx].offset;
    const size_t table = s->n_tables > 1 ? (size_t)layer : 0;
    return w[(table * nb + bucket) * p->H + h];
}

/* d rel_bias[t][bucket][h] += sum of dscores over the distances in the bucket. */
static void bias_backward(Pos *p, const float *dscores, int layer, int B, int T) {
    T5 *s = p->state;
    const int t = s->n_tables > 1 ? layer : 0;
    const size_t H = (size_t)p->H;
    pos_bias_distance_sums(s->sums, dscores, B, p->H, T, T);
    float *g = p->grads + p->pt->t[s->idx].offset + (size_t)t * s->n_buckets * H;
    for (size_t h = 0; h < H; h++) {
        const double *d = s->sums + h * T;
        /* distances in increasing order: each bucket is a run of consecutive distances */
        for (int n = 0; n < T;) {
            int k = s->bucket[n];
            double acc = 0.0;
            for (; n < T && s->bucket[n] == k; n++) acc += d[n];
            g[(size_t)k * H + h] += (float)acc;
        }
    }
}

const PosMethod pos_t5 = {
    .name = "t5",
    .summary = "T5 relative bias: a learned scalar per head and distance bucket on the scores",
    .label = "T5 bias",
    .color = "#ff7f0e",
    .keys = keys,
    .n_keys = sizeof keys / sizeof keys[0],
    .check = check,
    .declare = declare,
    .setup = setup,
    .init = init,
    .prepare = prepare,
    .bias_forward = bias_forward,
    .bias_backward = bias_backward,
    .bias_reference = bias_reference,
};
