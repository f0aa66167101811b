/* test_limits.c — the ends of the documented config ranges work: a model at the largest
 * model.n_layers of the key table (its tensor table grows with the depth; it once held 1,024
 * rows, 12 per layer, and 86 layers aborted) is declared, trained one step through ./train,
 * saved, and evaluated by ./eval. Tiny widths keep it fast. */
#include <stdlib.h>
#include <string.h>

#include "../src/config/config.h"
#include "../src/model.h"
#include "test.h"

/* The documented [min, max] of a core key. */
static void key_range(const char *name, double *min, double *max) {
    int n;
    const ConfigKey *keys = config_keys(&n);
    *min = *max = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(keys[i].name, name)) *min = keys[i].min, *max = keys[i].max;
}

TEST(test_limits_max_layers_table) {
    double lo, hi;
    key_range("model.n_layers", &lo, &hi);
    CHECK(hi >= 86, "model.n_layers documents [%g, %g]", lo, hi);
    char text[256], err[512], last[64];
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": %d, \"d_model\": 8, \"n_heads\": 2, \"d_ff\": 8, "
             "\"activation\": \"swiglu\", \"position\": {\"type\": \"t5\", \"per_layer\": true}}}",
             (int)hi);
    Config c;
    int rc = config_from_text(&c, text, "test", err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc) return;
    ModelSpec spec;
    model_spec_init(&spec, &c, 11);
    const ParamTable pt = spec.pt;
    /* 14 tensors per SwiGLU layer, the embedding, ln_f (2) and the per-layer T5 table */
    CHECK(pt.n == 14 * (int)hi + 4, "%d layers: %d tensors, expected %d", (int)hi, pt.n,
          14 * (int)hi + 4);
    snprintf(last, sizeof last, "layers.%d.ffn.fc2.bias", (int)hi - 1);
    int k = param_find(&pt, last);
    CHECK(k >= 0 && pt.t[k].numel == 8 && pt.t[k].offset + 16 <= pt.total,
          "%s: missing or outside the buffers", last);
    model_spec_free(&spec);
    config_free(&c);
}

TEST(test_limits_max_layers_train_and_eval) {
    double lo, hi;
    key_range("model.n_layers", &lo, &hi);
    char dir[256], out[OUT_LEN], want[64];
    cli_scratch("limits_max_layers", dir, sizeof dir);
    cli_tiny_config(dir, "\"dropout\": 0");
    int rc = sh(out,
                "./train --config %s/cfg.json --out %s/run --set model.n_layers=%d "
                "--set model.d_model=8 --set model.d_ff=16 --set train.steps=1",
                dir, dir, (int)hi);
    snprintf(want, sizeof want, "%d layers", (int)hi);
    CHECK(rc == 0 && strstr(out, want), "./train with %d layers: status %d: %s", (int)hi, rc, out);
    if (rc) return;
    rc = sh(out, "./eval --ckpt %s/run --lvalid 16", dir);
    CHECK(rc == 0, "./eval of the %d-layer checkpoint: status %d: %s", (int)hi, rc, out);
}
