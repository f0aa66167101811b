/* test_adaptive.c — the adaptive input and adaptive softmax (src/ops/adaptive.c) on their own:
 * finite-difference gradients through every cluster, tied and untied, with and without the
 * tail dropout; the distribution over the whole vocabulary sums to one; with no cutoffs the
 * softmax is the full softmax. Whole adaptive models are checked in test_model.c and against
 * the PyTorch reference in test_ref.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../src/ops/ops.h"
#include "../src/util/util.h"
#include "gradcheck.h"
#include "test.h"

/* Parameters of one Adaptive layout in a single buffer: input tables and projections, the
 * cluster logits, then (untied) the softmax's own tables and tail projections. */
typedef struct {
    Adaptive w, g;
    float *params, *grads;
    size_t total;
} Layer;

static size_t layout_floats(const Adaptive *a, int tie) {
    size_t n = (size_t)(a->K - 1) * a->C;
    for (int k = 0; k < a->K; k++) {
        size_t size = (size_t)(a->start[k + 1] - a->start[k]), d = (size_t)a->dim[k];
        n += size * d + (size_t)a->C * d;
        if (!tie) n += size * d + (k ? (size_t)a->C * d : 0);
    }
    return n;
}

/* Points the views of a (layout already set) into base. */
static void point(Adaptive *a, float *base, int tie) {
    float *p = base;
    for (int k = 0; k < a->K; k++) {
        size_t size = (size_t)(a->start[k + 1] - a->start[k]), d = (size_t)a->dim[k];
        a->emb[k] = p, p += size * d;
        a->proj[k] = p, p += (size_t)a->C * d;
    }
    a->cluster = a->K > 1 ? p : NULL;
    p += (size_t)(a->K - 1) * a->C;
    for (int k = 0; k < a->K; k++) {
        size_t size = (size_t)(a->start[k + 1] - a->start[k]), d = (size_t)a->dim[k];
        a->out_emb[k] = tie ? a->emb[k] : p;
        a->out_proj[k] = k && tie ? a->proj[k] : NULL;
        if (tie) continue;
        p += size * d;
        if (k) a->out_proj[k] = p, p += (size_t)a->C * d;
    }
}

/* C = 8; clusters at the cutoffs, widths 8, 4, 2, ... */
static Layer make_layer(int V, const int *cutoffs, int n_cut, int tie, unsigned long long seed) {
    Layer l;
    memset(&l, 0, sizeof l);
    Adaptive *a = &l.w;
    a->C = 8, a->K = n_cut + 1, a->dim[0] = 8, a->start[a->K] = V;
    for (int k = 1; k < a->K; k++) a->start[k] = cutoffs[k - 1], a->dim[k] = a->dim[k - 1] / 2;
    l.g = l.w;
    l.total = layout_floats(a, tie);
    l.params = xcalloc(l.total, sizeof(float));
    l.grads = xcalloc(l.total, sizeof(float));
    fill_random(l.params, l.total, 0.6f, seed);
    point(&l.w, l.params, tie);
    point(&l.g, l.grads, tie);
    return l;
}

static void free_layer(Layer *l) {
    free(l->params), free(l->grads);
}

typedef struct {
    Layer *l;
    const float *x;
    const int32_t *tg;
    size_t N;
    float *losses, *scratch;
    int32_t *rows;
    AdaptiveDrop drop;
} SoftmaxCtx;

static double softmax_f(void *p) {
    SoftmaxCtx *c = p;
    adaptive_softmax_forward(NULL, c->losses, c->x, &c->l->w, c->tg, c->N, &c->drop, c->rows,
                             c->scratch);
    double s = 0;
    for (size_t i = 0; i < c->N; i++) s += c->losses[i];
    return 0.5 * s;
}

/* N rows whose targets cycle through every cluster (so each tail is hit), then gradients of
 * 0.5 * sum(loss) w.r.t. x and every parameter. N > ADAPT_HEAD_ROWS > XENT_CHUNK crosses the
 * head's and the tails' chunk boundaries. */
static void check_softmax(const char *what, int tie, float p) {
    const int V = 23, cut[2] = {9, 15};
    Layer l = make_layer(V, cut, 2, tie, 21 + (unsigned)tie);
    const size_t N = ADAPT_HEAD_ROWS + 5;
    float *x = xcalloc(N * 8, sizeof(float)), *dx = xcalloc(N * 8, sizeof(float));
    int32_t *tg = xcalloc(N, sizeof(int32_t)), *rows = xcalloc(N, sizeof(int32_t));
    fill_random(x, N * 8, 1.0f, 5);
    int hits[3] = {0};
    for (size_t i = 0; i < N; i++) {
        tg[i] = (int32_t)(hash64(i + 3) % V);
        hits[adaptive_cluster(&l.w, tg[i])]++;
    }
    CHECK(hits[0] && hits[1] && hits[2], "%s: targets hit every cluster (%d %d %d)", what, hits[0],
          hits[1], hits[2]);
    SoftmaxCtx c = {&l,
                    x,
                    tg,
                    N,
                    xcalloc(N, sizeof(float)),
                    xcalloc(adaptive_scratch_floats(&l.w), sizeof(float)),
                    rows,
                    {p, 77}};
    double sum = adaptive_softmax_forward_backward(NULL, dx, &l.g, c.losses, x, &l.w, tg, N, 0.5f,
                                                   &c.drop, rows, c.scratch);
    CHECK_CLOSE(0.5 * sum, softmax_f(&c), 1e-6, "fused and plain forward agree");
    char name[128];
    snprintf(name, sizeof name, "%s: dx", what);
    gradcheck(name, x, N * 8, dx, softmax_f, &c, 40);
    for (int k = 0; k < l.w.K; k++) {
        size_t size = (size_t)(l.w.start[k + 1] - l.w.start[k]);
        snprintf(name, sizeof name, "%s: out_emb %d", what, k);
        gradcheck(name, l.w.out_emb[k], size * l.w.dim[k], l.g.out_emb[k], softmax_f, &c, 30);
        if (k == 0) continue;
        snprintf(name, sizeof name, "%s: out_proj %d", what, k);
        gradcheck(name, l.w.out_proj[k], 8 * (size_t)l.w.dim[k], l.g.out_proj[k], softmax_f, &c,
                  30);
    }
    snprintf(name, sizeof name, "%s: cluster logits", what);
    gradcheck(name, l.w.cluster, 2 * 8, l.g.cluster, softmax_f, &c, 16);
    free(x), free(dx), free(tg), free(rows), free(c.losses), free(c.scratch);
    free_layer(&l);
}

TEST(test_adaptive_softmax_grad) {
    check_softmax("tied", 1, 0.0f);
    check_softmax("untied", 0, 0.0f);
    check_softmax("tied, tail dropout", 1, 0.3f);
}

typedef struct {
    Layer *l;
    const int32_t *tok;
    size_t N;
    float *out, *wsum, *scratch;
    int32_t *rows;
} InputCtx;

/* sum_i w_i out_i with fixed random weights: its gradient w.r.t. out is w */
static double input_f(void *p) {
    InputCtx *c = p;
    adaptive_input_forward(NULL, c->out, c->tok, &c->l->w, c->N, 1.5f, c->rows, c->scratch);
    double s = 0;
    for (size_t i = 0; i < c->N * 8; i++) s += (double)c->wsum[i] * c->out[i];
    return s;
}

TEST(test_adaptive_input_grad) {
    const int V = 23, cut[2] = {9, 15};
    Layer l = make_layer(V, cut, 2, 1, 31);
    const size_t N = XENT_CHUNK + 9; /* repeated tokens: their gradients must add */
    InputCtx c = {&l,
                  xcalloc(N, sizeof(int32_t)),
                  N,
                  xcalloc(N * 8, sizeof(float)),
                  xcalloc(N * 8, sizeof(float)),
                  xcalloc(adaptive_scratch_floats(&l.w), sizeof(float)),
                  xcalloc(N, sizeof(int32_t))};
    int32_t *tok = (int32_t *)c.tok;
    for (size_t i = 0; i < N; i++) tok[i] = (int32_t)(hash64(i + 11) % V);
    fill_random(c.wsum, N * 8, 1.0f, 8);
    input_f(&c);
    /* row 0 by hand: 1.5 * P_k e */
    int t = tok[0], k = adaptive_cluster(&l.w, t), d = l.w.dim[k];
    const float *e = l.w.emb[k] + (size_t)(t - l.w.start[k]) * d;
    double want = 0;
    for (int j = 0; j < d; j++) want += (double)l.w.proj[k][3 * d + j] * e[j];
    CHECK_CLOSE(c.out[3], 1.5 * want, 1e-6, "adaptive input row 0, column 3");
    adaptive_input_backward(NULL, &l.g, c.wsum, tok, &l.w, N, 1.5f, c.rows, c.scratch);
    char name[64];
    for (int k2 = 0; k2 < l.w.K; k2++) {
        size_t size = (size_t)(l.w.start[k2 + 1] - l.w.start[k2]);
        snprintf(name, sizeof name, "adaptive input emb %d", k2);
        gradcheck(name, l.w.emb[k2], size * l.w.dim[k2], l.g.emb[k2], input_f, &c, 30);
        snprintf(name, sizeof name, "adaptive input proj %d", k2);
        gradcheck(name, l.w.proj[k2], 8 * (size_t)l.w.dim[k2], l.g.proj[k2], input_f, &c, 30);
    }
    free(tok), free(c.out), free(c.wsum), free(c.scratch), free(c.rows);
    free_layer(&l);
}

TEST(test_adaptive_probabilities_sum_to_one) {
    const int V = 41, cut[3] = {7, 20, 30};
    for (int tie = 0; tie < 2; tie++) {
        Layer l = make_layer(V, cut, 3, tie, 40 + (unsigned)tie);
        float *scratch = xcalloc(adaptive_scratch_floats(&l.w), sizeof(float));
        float x[8], lp[41], loss;
        int32_t rows[1];
        double worst = 0, worst_loss = 0;
        for (int trial = 0; trial < 20; trial++) {
            fill_random(x, 8, 3.0f, 100 + (unsigned)trial);
            adaptive_logprobs(NULL, lp, x, 1, &l.w, scratch);
            double sum = 0;
            for (int v = 0; v < V; v++) sum += exp((double)lp[v]);
            worst = fmax(worst, fabs(sum - 1.0));
            int32_t t = (int32_t)(hash64((uint64_t)trial) % V);
            adaptive_softmax_forward(NULL, &loss, x, &l.w, &t, 1, NULL, rows, scratch);
            worst_loss = fmax(worst_loss, fabs(loss + lp[t]));
        }
        CHECK(worst < 1e-5, "%s: sum of p over the vocabulary is 1 (worst |sum - 1| %.3g)",
              tie ? "tied" : "untied", worst);
        CHECK(worst_loss < 1e-5, "%s: loss is -log p(target) (worst diff %.3g)",
              tie ? "tied" : "untied", worst_loss);
        free(scratch);
        free_layer(&l);
    }
}

TEST(test_adaptive_no_cutoffs_is_full_softmax) {
    const int V = 13;
    Layer l = make_layer(V, NULL, 0, 1, 50);
    const size_t N = 17;
    float x[17 * 8], a[17], b[17];
    int32_t tg[17], rows[17];
    fill_random(x, N * 8, 1.0f, 51);
    for (size_t i = 0; i < N; i++) tg[i] = (int32_t)(hash64(i) % V);
    float *s1 = xcalloc(adaptive_scratch_floats(&l.w), sizeof(float));
    float *s2 = xcalloc((size_t)XENT_CHUNK * V, sizeof(float));
    adaptive_softmax_forward(NULL, a, x, &l.w, tg, N, NULL, rows, s1);
    xent_forward(NULL, b, x, l.w.emb[0], tg, N, 8, V, s2);
    double worst = 0;
    for (size_t i = 0; i < N; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    CHECK(worst < 1e-6, "no cutoffs: the full softmax's loss (worst diff %.3g)", worst);
    free(s1), free(s2);
    free_layer(&l);
}

/* ---- ./train and ./eval with an adaptive output (corpus tests/fixtures/cli, vocabulary 266) */

static void adaptive_setup(const char *name, char *dir, size_t n) {
    cli_scratch(name, dir, n);
    cli_tiny_config(dir, "\"position\": {\"type\": \"alibi\"}, \"output\": {\"type\": "
                         "\"adaptive\", \"cutoffs\": [40, 120], \"factor\": 2, \"dropout\": 0.1}");
}

TEST(test_adaptive_train_and_eval) {
    char dir[256], out[OUT_LEN], run[600];
    adaptive_setup("adaptive_cli", dir, sizeof dir);
    int rc = sh(out, "./train --config %s/cfg.json --out %s/A", dir, dir);
    CHECK(rc == 0 && strstr(out, "vocab 266,"), "adaptive training (status %d): %s", rc, out);
    if (rc) return;
    /* the checkpoint reloads to the same model: ./eval at L = 16 repeats the run's final
     * validation (the whole split at the training length) */
    snprintf(run, sizeof run, "%s/A", dir);
    double val = log_value(run, 12, "val_loss");
    rc = sh(out, "./eval --ckpt %s --lvalid 16 --json %s/rows.jsonl", run, dir);
    CHECK(rc == 0, "eval (status %d): %s", rc, out);
    char path[700];
    snprintf(path, sizeof path, "%s/rows.jsonl", dir);
    size_t len;
    char *rows = read_file(path, &len);
    cJSON *row = rows ? cJSON_Parse(rows) : NULL;
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(row, "loss");
    CHECK(cJSON_IsNumber(loss) && fabs(loss->valuedouble - val) < 1e-6,
          "./eval's loss %.7f should equal the run's final validation %.7f",
          cJSON_IsNumber(loss) ? loss->valuedouble : NAN, val);
    cJSON_Delete(row);
    free(rows);
}

TEST(test_adaptive_cli_errors) {
    char dir[256], out[OUT_LEN], absent[600];
    adaptive_setup("adaptive_cli_errors", dir, sizeof dir);
    snprintf(absent, sizeof absent, "%s/B", dir);
    int rc = sh(out, "./train --config %s/cfg.json --out %s --set model.output.cutoffs=[100,300]",
                dir, absent);
    expect_user_error(rc, out,
                      "model.output.cutoffs: the last cutoff 300 is not below the vocabulary "
                      "size 266",
                      NULL, absent, "a cutoff beyond the vocabulary");
    rc = sh(out, "./train --config %s/cfg.json --out %s --set data.vocab=missing.txt", dir, absent);
    expect_user_error(rc, out, "data.vocab: ", "missing.txt", absent, "a missing vocabulary");
    rc = sh(out, "printf 'the 10\\nof ten\\n' > %s/data/bad.txt", dir);
    rc = sh(out, "./train --config %s/cfg.json --out %s --set data.vocab=bad.txt", dir, absent);
    expect_user_error(rc, out, "data.vocab: ", "line 2", absent, "a malformed vocabulary line");
}

TEST(test_adaptive_vocab_file) {
    /* data.vocab: the model's vocabulary is the file's, whatever the train split holds — here
     * the train split's own counts plus words it never uses */
    char dir[256], out[OUT_LEN], run[600];
    adaptive_setup("adaptive_vocab", dir, sizeof dir);
    int rc = sh(out,
                "cd %s/data && tr ' ' '\\n' < wiki.train.tokens | grep -v '^$' | sort | uniq -c | "
                "awk '{print $2, $1}' > counts.txt && printf 'unseenword 1\\nrareword 1\\n' >> "
                "counts.txt",
                dir);
    CHECK(rc == 0, "cannot write the counts: %s", out);
    snprintf(run, sizeof run, "%s/V", dir);
    rc = sh(out, "./train --config %s/cfg.json --out %s --set data.vocab=counts.txt", dir, run);
    CHECK(rc == 0 && strstr(out, "vocab 268,"), "training with data.vocab (status %d): %s", rc,
          out);
    rc =
        sh(out, "head -1 %s/vocab.txt && grep -c . %s/vocab.txt && grep -x unseenword %s/vocab.txt",
           run, run, run);
    CHECK(rc == 0 && !strncmp(out, "<eos>\n268\nunseenword\n", 21),
          "vocab.txt: <eos> first (the file has none), 268 words, the unseen ones too: %s", out);
}
