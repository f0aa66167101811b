/* test_model.c — the whole model: finite-difference gradients for every position method and
 * every FFN type, and forward values, loss and gradients against the independent PyTorch
 * reference (tests/ref, fixtures committed so the test does not need PyTorch). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/config/config.h"
#include "../src/io/safetensors.h"
#include "../src/model.h"
#include "../src/util/util.h"
#include "gradcheck.h"
#include "test.h"

typedef struct {
    Model m;
    int32_t *in, *tg;
    float *losses;
    int B, T;
} ModelCtx;

static double model_f(void *p) {
    ModelCtx *c = p;
    const Pass pass = {.B = c->B, .T = c->T, .train = 1, .key = 5};
    model_forward(&c->m, &pass, c->in);
    return model_loss(&c->m, &pass, c->tg, c->losses) / (c->B * c->T);
}

static void load_config(Config *cfg, const char *text) {
    char err[512];
    if (config_from_text(cfg, text, "test", err, sizeof err) != 0) {
        CHECK(0, "config: %s", err);
        exit(1);
    }
}

/* Random, non-trivial parameters: gains and biases away from 1 and 0, and the position
 * method's tensors away from their initial values, so every term shows. */
static void randomize(Model *m, unsigned long long seed) {
    model_init(m, seed);
    for (int k = 0; k < m->spec.pt.n; k++) {
        const TensorSpec *t = &m->spec.pt.t[k];
        float *p = m->weights.params + t->offset;
        InitKind kind = t->init.kind;
        if (kind == INIT_ZEROS || kind == INIT_ONES || kind == INIT_POS) {
            fill_random(p, t->numel, 0.3f, seed + 100 + k);
            if (kind == INIT_ONES)
                for (size_t i = 0; i < t->numel; i++) p[i] += 1.0f;
        }
    }
}

/* Finite-difference check of every tensor of the model a config text describes (V = 11, random
 * tokens, B sequences of T), each tensor sampled at `samples` entries with step h. */
static void gradcheck_model(const char *text, int B, int T, float h, int samples,
                            const char *label) {
    Config cfg;
    load_config(&cfg, text);
    ModelCtx c = {.B = B, .T = T};
    const int V = 11, N = B * T;
    model_create(&c.m, &cfg, V, c.B, c.T, 1);
    randomize(&c.m, 3);
    c.in = xcalloc(N, 4), c.tg = xcalloc(N, 4), c.losses = xcalloc(N, 4);
    for (int i = 0; i < N; i++)
        c.in[i] = (int32_t)(hash64(i) % V), c.tg[i] = (int32_t)(hash64(i + 50) % V);
    int hits[ADAPT_MAX] = {0}, missed = 0;
    for (int i = 0; i < N && c.m.spec.ad.K; i++) hits[adaptive_cluster(&c.m.spec.ad, c.tg[i])]++;
    for (int k = 0; k < c.m.spec.ad.K; k++) missed += hits[k] == 0;
    CHECK(missed == 0, "%s: the targets miss %d of the adaptive clusters", label, missed);
    const Pass pass = {.B = c.B, .T = c.T, .train = 1, .key = 5};
    model_forward(&c.m, &pass, c.in);
    model_backward(&c.m, &pass, c.in, c.tg, 1.0f / N);
    for (int k = 0; k < c.m.spec.pt.n; k++) {
        const TensorSpec *t = &c.m.spec.pt.t[k];
        char what[700];
        snprintf(what, sizeof what, "%s: %s", label, t->name);
        gradcheck_h(what, c.m.weights.params + t->offset, t->numel, c.m.weights.grads + t->offset,
                    model_f, &c, samples, h);
    }
    free(c.in), free(c.tg), free(c.losses);
    model_free(&c.m);
    config_free(&cfg);
}

/* ReLU FFNs and FIRE's ReLU MLP have kinks: those models use the smaller step (gradcheck.h).
 * extra: more JSON members of "model" (an adaptive output, an architecture variant), or "". */
static void check_model_grads(const char *pos, const char *act, int final_norm, const char *extra) {
    char text[768], label[512];
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 2, \"d_model\": 8, \"n_heads\": 2, \"d_ff\": 12, "
             "\"activation\": \"%s\", \"final_norm\": %s, \"dropout\": 0, \"init_std\": 0.4, "
             "\"position\": {\"type\": \"%s\"}%s}}",
             act, final_norm ? "true" : "false", pos, extra);
    snprintf(label, sizeof label, "%s/%s/%s%s", pos, act, final_norm ? "final" : "nofinal", extra);
    gradcheck_model(text, 2, 6,
                    strcmp(act, "relu") == 0 || strcmp(pos, "fire") == 0 ? 1e-3f : 1e-2f, 12,
                    label);
}

TEST(test_model_gradcheck_every_position_and_ffn) {
    const char *acts[] = {"relu", "gelu", "swiglu", "glu", "geglu"};
    for (int i = 0; i < pos_count(); i++)
        for (int a = 0; a < 5; a++) check_model_grads(pos_at(i)->name, acts[a], a % 2 == 0, "");
}

/* Every method under each norm (LayerNorm, RMSNorm) in each placement; post and deepnorm end
 * every block in a norm and have no final one. */
TEST(test_model_gradcheck_every_position_norm_and_placement) {
    const char *places[] = {"pre", "post", "sandwich", "deepnorm"};
    for (int i = 0; i < pos_count(); i++)
        for (int rms = 0; rms < 2; rms++)
            for (int k = 0; k < 4; k++) {
                char extra[128];
                snprintf(extra, sizeof extra, ", \"norm\": \"%s\", \"norm_position\": \"%s\"",
                         rms ? "rmsnorm" : "layernorm", places[k]);
                check_model_grads(pos_at(i)->name, "gelu", k % 2 == 0, extra);
            }
}

/* Every method with multi-query, grouped (2 kv heads) and multi-head attention over 4 heads:
 * a kv head's gradient sums over its group. */
TEST(test_model_gradcheck_every_position_and_kv_heads) {
    for (int i = 0; i < pos_count(); i++)
        for (int kv = 1; kv <= 4; kv *= 2) {
            char text[512], label[128];
            snprintf(text, sizeof text,
                     "{\"model\": {\"n_layers\": 2, \"d_model\": 8, \"n_heads\": 4, "
                     "\"n_kv_heads\": %d, \"d_ff\": 12, \"dropout\": 0, \"init_std\": 0.4, "
                     "\"position\": {\"type\": \"%s\"}}}",
                     kv, pos_at(i)->name);
            snprintf(label, sizeof label, "%s/%d of 4 kv heads", pos_at(i)->name, kv);
            gradcheck_model(text, 2, 6, strcmp(pos_at(i)->name, "fire") ? 1e-2f : 1e-3f, 12, label);
        }
}

/* T = 150 (three 64-row attention blocks): every block's score gradients reach the position
 * method's bias_backward (the model tests above have T = 6, a single block). Every registered
 * method with its defaults, then variants whose gradients take other paths: T5 with its
 * logarithmic buckets inside the 150 positions, and trainable ALiBi slopes. */
static void check_blocks_grads(const char *pos) {
    char text[512], label[300];
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 1, \"d_model\": 8, \"n_heads\": 2, \"d_ff\": 12, "
             "\"dropout\": 0, \"init_std\": 0.4, \"position\": %s}}",
             pos);
    snprintf(label, sizeof label, "T = 150, %s", pos);
    /* FIRE's ReLU MLP has kinks: the smaller step (gradcheck.h) */
    gradcheck_model(text, 1, 150, strstr(pos, "\"fire\"") ? 1e-3f : 1e-2f, 8, label);
}

TEST(test_model_gradcheck_several_attention_blocks) {
    for (int i = 0; i < pos_count(); i++) {
        char pos[128];
        snprintf(pos, sizeof pos, "{\"type\": \"%s\"}", pos_at(i)->name);
        check_blocks_grads(pos);
    }
    check_blocks_grads("{\"type\": \"t5\", \"num_buckets\": 8, \"max_distance\": 100}");
    check_blocks_grads("{\"type\": \"alibi\", \"trainable_slopes\": true}");
}

/* V = 11 in clusters [0, 4), [4, 7), [7, 11) of widths 8, 4, 2; the 12 targets hit each. */
TEST(test_model_gradcheck_adaptive) {
    const char *tied = ", \"output\": {\"type\": \"adaptive\", \"cutoffs\": [4, 7], \"factor\": 2}";
    const char *untied = ", \"output\": {\"type\": \"adaptive\", \"cutoffs\": [4, 7], "
                         "\"factor\": 2, \"tie\": false}";
    const char *dropout = ", \"output\": {\"type\": \"adaptive\", \"cutoffs\": [4, 7], "
                          "\"factor\": 2, \"dropout\": 0.3}";
    check_model_grads("alibi", "gelu", 1, tied);
    check_model_grads("sinusoidal", "swiglu", 0, untied);
    check_model_grads("rotary", "gelu", 1, dropout);
}

static int ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

/* The init kind each tensor is declared with, as the names and docs/architecture.md document
 * it (deepnorm: DeepNet's beta on v, proj, fc1, gate, fc2). */
static InitKind expected_kind(const char *name, int deepnorm) {
    if (!strncmp(name, "pos.", 4)) return INIT_POS;
    if (ends_with(name, ".bias")) return INIT_ZEROS;
    if (strstr(name, "ln1") || strstr(name, "ln2") || !strcmp(name, "ln_f.weight"))
        return INIT_ONES;
    int out = ends_with(name, "attn.proj.weight") || ends_with(name, "ffn.fc2.weight");
    if (deepnorm && (out || strstr(name, "attn.qkv") || strstr(name, "ffn."))) return INIT_SCALED;
    return out ? INIT_RESIDUAL : INIT_NORMAL;
}

/* rms of rows [r0, r1) of a (rows, cols) tensor */
static double rows_rms(const float *p, size_t r0, size_t r1, size_t cols) {
    double sum2 = 0.0;
    for (size_t i = r0 * cols; i < r1 * cols; i++) sum2 += (double)p[i] * p[i];
    return sqrt(sum2 / (double)((r1 - r0) * cols));
}

/* Every tensor is declared with its kind, and model_init gives it that kind's values: constants
 * exactly, normals with the declared std (the residual ones divided by sqrt(2 L)) within
 * sampling error, the position method's tensors by the method (not left at zero). */
static void check_init_kinds(const char *model_json, int deepnorm) {
    char text[512];
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 3, \"d_model\": 32, \"n_heads\": 2, \"d_ff\": 64, "
             "\"init_std\": 0.1, %s}}",
             model_json);
    Config cfg;
    load_config(&cfg, text);
    Model m;
    model_create(&m, &cfg, 300, 1, 8, 0);
    model_init(&m, 5);
    for (int k = 0; k < m.spec.pt.n; k++) {
        const TensorSpec *t = &m.spec.pt.t[k];
        const float *p = m.weights.params + t->offset;
        CHECK(t->init.kind == expected_kind(t->name, deepnorm),
              "%s: declared with init kind %d, expected %d", t->name, (int)t->init.kind,
              (int)expected_kind(t->name, deepnorm));
        double sum2 = 0.0, maxdev = 0.0, want = t->init.kind == INIT_ONES ? 1.0 : 0.0;
        for (size_t i = 0; i < t->numel; i++) sum2 += (double)p[i] * p[i];
        for (size_t i = 0; i < t->numel; i++) maxdev = fmax(maxdev, fabs(p[i] - want));
        double rms = sqrt(sum2 / (double)t->numel), std = t->init.std;
        switch (t->init.kind) {
        case INIT_ZEROS:
        case INIT_ONES:
            CHECK(maxdev == 0.0, "%s: off its constant %g by %g", t->name, want, maxdev);
            break;
        case INIT_RESIDUAL:
            std /= sqrt(2.0 * 3);
            /* fall through */
        case INIT_NORMAL:
            CHECK(std > 0 && fabs(rms / std - 1.0) < 0.15, "%s: rms %g, expected std %g", t->name,
                  rms, std);
            break;
        case INIT_SCALED: { /* rows before init.row: std; from it: std * gain */
            size_t rows = t->shape[0], cols = t->numel / rows, r = t->init.row;
            if (r)
                CHECK(fabs(rows_rms(p, 0, r, cols) / std - 1.0) < 0.15, "%s: q, k rows", t->name);
            CHECK(fabs(rows_rms(p, r, rows, cols) / (std * t->init.gain) - 1.0) < 0.15,
                  "%s: rows from %zu: rms %g, expected %g", t->name, r, rows_rms(p, r, rows, cols),
                  std * t->init.gain);
            break;
        }
        case INIT_POS:
            CHECK(rms > 0, "%s: the method did not initialize it", t->name);
            break;
        }
    }
    model_free(&m);
    config_free(&cfg);
}

TEST(test_model_init_follows_the_kinds_in_the_table) {
    check_init_kinds("\"activation\": \"swiglu\", \"position\": {\"type\": \"t5\"}", 0);
    check_init_kinds("\"position\": {\"type\": \"learned\"}, \"output\": {\"type\": "
                     "\"adaptive\", \"cutoffs\": [40, 100], \"factor\": 2, \"tie\": false}",
                     0);
    check_init_kinds("\"norm\": \"rmsnorm\", \"norm_position\": \"sandwich\"", 0);
    check_init_kinds("\"norm_position\": \"deepnorm\", \"final_norm\": false, \"activation\": "
                     "\"geglu\", \"n_kv_heads\": 1",
                     1);
}

/* DeepNorm's constants for the 3 layers of check_init_kinds: alpha = (2 N)^(1/4) on the
 * residual, beta = (8 N)^(-1/4) on v (from row (H + Hkv) D of qkv), proj, fc1, gate, fc2. */
TEST(test_model_deepnorm_alpha_beta) {
    Config cfg;
    load_config(&cfg, "{\"model\": {\"n_layers\": 3, \"d_model\": 32, \"n_heads\": 4, "
                      "\"n_kv_heads\": 2, \"d_ff\": 64, \"norm_position\": \"deepnorm\", "
                      "\"final_norm\": false}}");
    ModelSpec s;
    model_spec_init(&s, &cfg, 50);
    CHECK(fabs(s.alpha - pow(6.0, 0.25)) < 1e-6, "alpha %g, expected 6^(1/4)", s.alpha);
    const TensorSpec *qkv = &s.pt.t[param_find(&s.pt, "layers.1.attn.qkv.weight")];
    CHECK(qkv->shape[0] == 64 && qkv->init.row == 48 &&
              fabs(qkv->init.gain - pow(24.0, -0.25)) < 1e-12,
          "qkv: %zu rows, beta from row %zu with gain %g; expected 64, 48, 24^(-1/4)",
          qkv->shape[0], qkv->init.row, qkv->init.gain);
    const char *scaled[] = {"attn.proj", "ffn.fc1", "ffn.fc2"};
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "layers.2.%s.weight", scaled[i]);
        const TensorSpec *t = &s.pt.t[param_find(&s.pt, name)];
        CHECK(t->init.kind == INIT_SCALED && t->init.row == 0 &&
                  fabs(t->init.gain - pow(24.0, -0.25)) < 1e-12,
              "%s: not beta-scaled as a whole", name);
    }
    model_spec_free(&s);
    config_free(&cfg);
}

/* Copies every tensor of src into dst by name (tensors dst lacks are skipped). */
static void copy_by_name(Model *dst, const Model *src) {
    for (int k = 0; k < src->spec.pt.n; k++) {
        int j = param_find(&dst->spec.pt, src->spec.pt.t[k].name);
        if (j >= 0)
            memcpy(dst->weights.params + dst->spec.pt.t[j].offset,
                   src->weights.params + src->spec.pt.t[k].offset,
                   src->spec.pt.t[k].numel * sizeof(float));
    }
}

TEST(test_model_adaptive_without_cutoffs_is_full) {
    /* one cluster, its projection the identity: the tied full-softmax model, same weights */
    const char *base = "{\"model\": {\"n_layers\": 1, \"d_model\": 8, \"n_heads\": 2, "
                       "\"d_ff\": 12, \"dropout\": 0, \"position\": {\"type\": \"alibi\"}%s}}";
    char text[512];
    Config full_cfg, ad_cfg;
    snprintf(text, sizeof text, base, "");
    load_config(&full_cfg, text);
    snprintf(text, sizeof text, base, ", \"output\": {\"type\": \"adaptive\", \"cutoffs\": []}");
    load_config(&ad_cfg, text);
    Model full, ad;
    model_create(&full, &full_cfg, 11, 2, 6, 0);
    model_create(&ad, &ad_cfg, 11, 2, 6, 0);
    randomize(&full, 9);
    copy_by_name(&ad, &full);
    memcpy(ad.weights.params + ad.spec.pt.t[ad.spec.ad_emb[0]].offset,
           full.weights.params + full.spec.pt.t[full.spec.tok_emb].offset, 11 * 8 * sizeof(float));
    float *proj = ad.weights.params + ad.spec.pt.t[ad.spec.ad_proj[0]].offset;
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++) proj[i * 8 + j] = i == j;
    int32_t in[12], tg[12];
    float la[12], lb[12];
    for (int i = 0; i < 12; i++)
        in[i] = (int32_t)(hash64(i + 1) % 11), tg[i] = (int32_t)(hash64(i + 2) % 11);
    const Pass p = {.B = 2, .T = 6};
    model_forward(&full, &p, in);
    model_forward(&ad, &p, in);
    CHECK_CLOSE(model_loss(&ad, &p, tg, la), model_loss(&full, &p, tg, lb), 1e-5,
                "adaptive with no cutoffs and an identity projection");
    model_free(&full), model_free(&ad);
    config_free(&full_cfg), config_free(&ad_cfg);
}

TEST(test_model_gradcheck_dropout) {
    /* dropout masks depend only on (key, site, index), so a fixed key makes the loss a smooth
     * function of the parameters and finite differences apply */
    Config cfg;
    load_config(&cfg, "{\"model\": {\"n_layers\": 1, \"d_model\": 8, \"n_heads\": 2, \"d_ff\": 12, "
                      "\"dropout\": 0.2, \"attn_dropout\": 0.2, \"act_dropout\": 0.2, "
                      "\"init_std\": 0.4, \"position\": {\"type\": \"alibi\"}}}");
    ModelCtx c = {.B = 2, .T = 6};
    model_create(&c.m, &cfg, 11, 2, 6, 1);
    randomize(&c.m, 4);
    c.in = xcalloc(12, 4), c.tg = xcalloc(12, 4), c.losses = xcalloc(12, 4);
    for (int i = 0; i < 12; i++)
        c.in[i] = (int32_t)(hash64(i + 7) % 11), c.tg[i] = (int32_t)(hash64(i + 9) % 11);
    const Pass pass = {.B = 2, .T = 6, .train = 1, .key = 5};
    model_forward(&c.m, &pass, c.in);
    model_backward(&c.m, &pass, c.in, c.tg, 1.0f / 12);
    for (int k = 0; k < c.m.spec.pt.n; k++) {
        const TensorSpec *t = &c.m.spec.pt.t[k];
        char what[128];
        snprintf(what, sizeof what, "dropout model: %s", t->name);
        gradcheck(what, c.m.weights.params + t->offset, t->numel, c.m.weights.grads + t->offset,
                  model_f, &c, 12);
    }
    free(c.in), free(c.tg), free(c.losses);
    model_free(&c.m);
    config_free(&cfg);
}

/* NaN weights give a NaN loss and NaN gradients, with no undefined behaviour on the way (exp_fast
 * once shifted a negative number for a NaN score; FIRE's threshold went through (int)floor(NaN)
 * and read before its table), for every position method and FFN type. make test-asan runs this
 * under UBSan. */
TEST(test_model_nan_weights_give_nan_loss) {
    const char *ffns[] = {"gelu", "swiglu", "relu"};
    const int B = 2, T = 6, V = 11;
    int32_t in[12], tg[12];
    for (int i = 0; i < B * T; i++) in[i] = (int32_t)(hash64(i) % V), tg[i] = (int32_t)(i % V);
    for (int k = 0; k < pos_count(); k++)
        for (int a = 0; a < 3; a++) {
            char text[512];
            snprintf(text, sizeof text,
                     "{\"model\": {\"n_layers\": 2, \"d_model\": 8, \"n_heads\": 2, \"d_ff\": 8, "
                     "\"activation\": \"%s\", \"dropout\": 0, \"position\": {\"type\": \"%s\"}},"
                     " \"train\": {\"seq_len\": %d}}",
                     ffns[a], pos_at(k)->name, T);
            Config cfg;
            load_config(&cfg, text);
            Model m;
            model_create(&m, &cfg, V, B, T, 1);
            model_init(&m, 1);
            for (size_t i = 0; i < m.spec.pt.total; i++) m.weights.params[i] = NAN;
            const Pass p = {.B = B, .T = T, .train = 1, .key = 1};
            model_forward(&m, &p, in);
            double loss = model_backward(&m, &p, in, tg, 1.0f);
            size_t finite = 0;
            for (size_t i = 0; i < m.spec.pt.total; i++)
                finite += isfinite(m.weights.grads[i]) != 0;
            CHECK(isnan(loss), "%s, %s: loss %g from NaN weights", pos_at(k)->name, ffns[a], loss);
            CHECK(finite < m.spec.pt.total, "%s, %s: every gradient finite from NaN weights",
                  pos_at(k)->name, ffns[a]);
            model_free(&m);
            config_free(&cfg);
        }
}
