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
 * slopes, n - c of them, appended (so the list is not monotonic).
 *
 * Extras, all off by default: `slopes` replaces the geometric list; `alibi_heads` = k biases
 * only heads 0..k-1 (the rest see no position information at all); `trainable_slopes` makes
 * the slopes the learned tensor pos.slopes (H), initialized to the fixed ones — the paper
 * tried this (section 3) and found it no better and slower on GPU; here its gradient is
 * hand-written: d m_h = sum over (b, i, j <= i) of dscores * -(i - j). Slopes of heads >= k
 * get no gradient and stay at their initial values. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../util/util.h"
#include "position.h"

#define MAX_HEADS 1024 /* model.n_heads' maximum */

typedef struct {
    int heads;      /* heads with a bias: alibi_heads, or H */
    int slopes_idx; /* pos.slopes, or -1 when the slopes are fixed */
    int listed;     /* the slopes come from the `slopes` key, not the paper's rule */
    double *sums;   /* (H, max_T) backward scratch: dscores summed per distance, or NULL */
    float m[];      /* (H) slopes in use; refreshed from pos.slopes by prepare() */
} Alibi;

static const ConfigKey keys[] = {
    {"trainable_slopes", KEY_BOOL, "false", 0, 1, NULL,
     "learn the slopes (tensor pos.slopes, initialized to the fixed ones)", NO_FIELD},
    {"slopes", KEY_FLOAT_LIST, "[]", 0, 1e6, NULL,
     "one positive slope per head instead of the geometric 2^(-8h/H); [] = the paper's", NO_FIELD},
    {"alibi_heads", KEY_INT, "0", 0, MAX_HEADS, NULL,
     "bias only the first k heads, the rest get none; 0 = all heads", NO_FIELD},
};

/* Slopes for n heads into m[0..n-1]. */
void alibi_slopes(int n, float *m) {
    int c = 1;
    while (c * 2 <= n) c *= 2;
    for (int h = 0; h < c; h++) m[h] = (float)pow(2.0, -8.0 * (h + 1) / c);
    for (int k = 0; c + k < n; k++) m[c + k] = (float)pow(2.0, -8.0 * (2 * k + 1) / (2 * c));
}

static int check(const Config *c, char *err, size_t n) {
    int H = c->model.n_heads, k = (int)config_pos_num(c, "alibi_heads");
    double m[MAX_HEADS];
    int len = config_pos_list(c, "slopes", m, MAX_HEADS);
    if (len && len != H) {
        snprintf(err, n, "model.position.slopes: expected %d values (one per head), got %d", H,
                 len);
        return -1;
    }
    for (int h = 0; h < len; h++)
        if (!(m[h] > 0)) {
            snprintf(err, n, "model.position.slopes: value %d is %g, expected a positive slope", h,
                     m[h]);
            return -1;
        }
    if (k > H) {
        snprintf(err, n, "model.position.alibi_heads: %d is more than model.n_heads (%d)", k, H);
        return -1;
    }
    return 0;
}

static void declare(const Config *c, ParamTable *pt) {
    if (config_pos_bool(c, "trainable_slopes"))
        param_add(pt, "pos.slopes", 0, PARAM_POS, 1, (size_t)c->model.n_heads);
}

/* The fixed slopes: the override list if given, else the paper's geometric ones. */
static void initial_slopes(const Config *c, int H, float *m) {
    double list[MAX_HEADS];
    int len = config_pos_list(c, "slopes", list, MAX_HEADS);
    if (len == H)
        for (int h = 0; h < H; h++) m[h] = (float)list[h];
    else
        alibi_slopes(H, m);
}

static void setup(Pos *p, const Config *c) {
    int H = p->H, k = (int)config_pos_num(c, "alibi_heads");
    int slopes_idx = param_find(p->pt, "pos.slopes");
    size_t n_sums = slopes_idx >= 0 && p->grads ? (size_t)H * p->max_T : 0;
    size_t head = (sizeof(Alibi) + sizeof(float) * H + 63) / 64 * 64; /* sums 64-byte aligned */
    Alibi *a = xcalloc(1, head + sizeof(double) * n_sums); /* one block: freed with free() */
    a->heads = k ? k : H;
    a->slopes_idx = slopes_idx;
    a->listed = config_pos_list(c, "slopes", NULL, 0) == H;
    a->sums = n_sums ? (double *)((char *)a + head) : NULL;
    initial_slopes(c, H, a->m);
    p->state = a;
}

/* pos.slopes starts at the fixed slopes that setup() stored. */
static void init(Pos *p, unsigned long long key) {
    (void)key;
    const Alibi *a = p->state;
    if (a->slopes_idx < 0) return;
    float *m = p->params + p->pt->t[a->slopes_idx].offset;
    for (int h = 0; h < p->H; h++) m[h] = a->m[h];
}

static void prepare(Pos *p, int T) {
    (void)T;
    Alibi *a = p->state;
    if (a->slopes_idx < 0) return;
    const float *m = p->params + p->pt->t[a->slopes_idx].offset;
    for (int h = 0; h < p->H; h++) a->m[h] = m[h];
}

static void bias_forward(const Pos *p, float *scores, size_t ld, int layer, int h, int i0, int ni,
                         int j0, int nj) {
    (void)layer;
    const Alibi *a = p->state;
    if (h >= a->heads) return;
    const float m = a->m[h];
    for (int r = 0; r < ni; r++) {
        int i = i0 + r;
        int jmax = i - j0 + 1 < nj ? i - j0 + 1 : nj; /* keys j <= i only */
        float *row = scores + (size_t)r * ld;
        for (int cidx = 0; cidx < jmax; cidx++) row[cidx] -= m * (float)(i - (j0 + cidx));
    }
}

/* The official get_slopes, written the way it computes them rather than as alibi_slopes() does:
 * n a power of two starts at 2^(-2^-(log2(n) - 3)) and multiplies by that ratio; otherwise the
 * c-head list (c the largest power of two below n), then entries 0, 2, 4, ... of the 2c-head
 * list. */
static double paper_slope(int h, int n) {
    int c = 1;
    while (2 * c <= n) c *= 2;
    if (h >= c) return paper_slope(2 * (h - c), 2 * c);
    double start = pow(2.0, -pow(2.0, -(log2((double)c) - 3)));
    return pow(start, h + 1);
}

static double bias_reference(const Pos *p, int layer, int h, int i, int j) {
    (void)layer;
    const Alibi *a = p->state;
    if (h >= a->heads) return 0.0;
    double m = a->slopes_idx >= 0 ? p->params[p->pt->t[a->slopes_idx].offset + h]
               : a->listed        ? a->m[h]
                                  : paper_slope(h, p->H);
    return -m * (i - j);
}

static float linear_slope(const Pos *p, int layer, int h) {
    (void)layer;
    const Alibi *a = p->state;
    return h < a->heads ? a->m[h] : 0.0f;
}

/* Only installed usefully with trainable slopes: d m_h += sum_n -n * sums_h(n). */
static void bias_backward(Pos *p, const float *dscores, int layer, int B, int T) {
    (void)layer;
    Alibi *a = p->state;
    if (a->slopes_idx < 0) return;
    pos_bias_distance_sums(a->sums, dscores, B, p->H, T, T);
    float *dm = p->grads + p->pt->t[a->slopes_idx].offset;
    for (int h = 0; h < a->heads; h++) {
        double g = 0.0;
        for (int n = 1; n < T; n++) g -= n * a->sums[(size_t)h * T + n];
        dm[h] += (float)g;
    }
}

const PosMethod pos_alibi = {
    .name = "alibi",
    .summary = "linear distance penalty -m_h*(i-j) on attention scores, fixed geometric slopes",
    .label = "ALiBi",
    .color = "#d62728",
    .keys = keys,
    .n_keys = sizeof keys / sizeof keys[0],
    .check = check,
    .declare = declare,
    .setup = setup,
    .init = init,
    .prepare = prepare,
    .bias_forward = bias_forward,
    .linear_slope = linear_slope,
    .bias_backward = bias_backward,
    .bias_reference = bias_reference,
};
