/* test_checkpoint.c — save -> load gives a model with bit-identical outputs, the optimizer state
 * round-trips, and a checkpoint of a different shape is refused with a message naming the
 * tensor. (Corrupted and truncated files are covered in test_safetensors.c and test_cli.c.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/checkpoint.h"
#include "../src/util/util.h"
#include "gradcheck.h"
#include "test.h"

static const char *CFG = "{\"model\": {\"n_layers\": 2, \"d_model\": 16, \"n_heads\": 4, "
                         "\"d_ff\": 24, \"activation\": \"swiglu\", "
                         "\"position\": {\"type\": \"alibi\"}}}";

TEST(test_checkpoint_round_trip) {
    const char *dir = test_tmpdir("checkpoint");
    char model_path[600], optim_path[600], err[512];
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", dir);
    snprintf(optim_path, sizeof optim_path, "%s/optim.safetensors", dir);
    Config cfg;
    CHECK(config_from_text(&cfg, CFG, "test", err, sizeof err) == 0, "%s", err);
    const int V = 23, B = 2, T = 7;
    Model a, b;
    model_create(&a, &cfg, V, B, T, 1);
    model_init(&a, 9);
    float *m = xcalloc(a.spec.pt.total, 4), *v = xcalloc(a.spec.pt.total, 4);
    fill_random(m, a.spec.pt.total, 1, 1), fill_random(v, a.spec.pt.total, 1, 2);
    for (size_t i = 0; i < a.spec.pt.total; i++) v[i] = fabsf(v[i]); /* second moments are >= 0 */
    TrainState ts = {.step = 42, .tokens = 4242, .elapsed = 1.5};
    CHECK(ckpt_save_model(model_path, &a, &ts, err, sizeof err) == 0, "%s", err);
    CHECK(ckpt_save_optim(optim_path, &a, m, v, &ts, err, sizeof err) == 0, "%s", err);

    /* the config travels inside the checkpoint */
    Config c2;
    int V2;
    long step;
    CHECK(ckpt_read_config(model_path, &c2, &V2, &step, err, sizeof err) == 0, "%s", err);
    CHECK(V2 == V && step == 42 && !strcmp(c2.model.activation, "swiglu") &&
              !strcmp(c2.model.position, "alibi"),
          "config/vocab/step from the checkpoint");
    model_create(&b, &c2, V2, B, T, 0); /* an evaluation model, as ./eval builds it */
    CHECK(ckpt_load_model(model_path, &b, err, sizeof err) == 0, "%s", err);

    int32_t in[14], tg[14];
    for (int i = 0; i < 14; i++)
        in[i] = (int32_t)(hash64(i) % V), tg[i] = (int32_t)(hash64(i + 3) % V);
    float la[14], lb[14];
    const Pass p = {.B = B, .T = T};
    model_forward(&a, &p, in);
    model_loss(&a, &p, tg, la);
    model_forward(&b, &p, in);
    model_loss(&b, &p, tg, lb);
    CHECK(memcmp(la, lb, sizeof la) == 0, "losses after save/load differ");

    float *m2 = xcalloc(a.spec.pt.total, 4), *v2 = xcalloc(a.spec.pt.total, 4);
    TrainState ts2 = {0};
    CHECK(ckpt_load_optim(optim_path, &a, m2, v2, &ts2, err, sizeof err) == 0, "%s", err);
    int same = ts2.step == 42 && ts2.tokens == 4242;
    for (int k = 0; k < a.spec.pt.n; k++) {
        size_t o = a.spec.pt.t[k].offset, bytes = a.spec.pt.t[k].numel * 4;
        same = same && !memcmp(m + o, m2 + o, bytes) && !memcmp(v + o, v2 + o, bytes);
    }
    CHECK(same, "optimizer state differs after save/load");

    /* a model of another shape refuses the file, naming a tensor */
    Config c3;
    CHECK(config_from_text(&c3,
                           "{\"model\": {\"n_layers\": 2, \"d_model\": 32, \"n_heads\": 4, "
                           "\"d_ff\": 24, \"activation\": \"swiglu\"}}",
                           "test", err, sizeof err) == 0,
          "%s", err);
    Model c;
    model_create(&c, &c3, V, 1, 4, 0);
    CHECK(ckpt_load_model(model_path, &c, err, sizeof err) != 0 && strstr(err, "tok_emb.weight"),
          "shape mismatch not reported: %s", err);
    model_free(&a), model_free(&b), model_free(&c);
    config_free(&cfg), config_free(&c2), config_free(&c3);
    free(m), free(v), free(m2), free(v2);
}

/* The message of loading model_path into a model of the CFG shape with `members` changed. */
static void expect_arch_error(const char *model_path, const char *members, const char *want) {
    char text[512], err[512] = "";
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 2, \"d_model\": 16, \"n_heads\": 4, \"d_ff\": 24, "
             "\"position\": {\"type\": \"alibi\"}, %s}}",
             members);
    Config c;
    CHECK(config_from_text(&c, text, "test", err, sizeof err) == 0, "%s", err);
    Model m;
    model_create(&m, &c, 23, 1, 4, 0);
    int rc = ckpt_load_model(model_path, &m, err, sizeof err);
    CHECK(rc != 0 && strstr(err, want) && !strchr(err, '\n'),
          "%s: expected one line naming %s, got rc %d '%s'", members, want, rc, err);
    model_free(&m);
    config_free(&c);
}

/* A checkpoint of the pre-LN, LayerNorm, multi-head model of CFG refused by every other
 * architecture with one line naming the first tensor that differs (and both shapes). */
TEST(test_checkpoint_other_architecture_refused) {
    const char *dir = test_tmpdir("checkpoint_arch");
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    Config cfg;
    CHECK(config_from_text(&cfg, CFG, "test", err, sizeof err) == 0, "%s", err);
    Model a;
    model_create(&a, &cfg, 23, 1, 4, 0);
    model_init(&a, 3);
    TrainState ts = {0};
    CHECK(ckpt_save_model(path, &a, &ts, err, sizeof err) == 0, "%s", err);
    expect_arch_error(
        path, "\"activation\": \"swiglu\", \"n_kv_heads\": 2",
        "'layers.0.attn.qkv.weight' is float32 48x16, the config needs float32 32x16");
    expect_arch_error(path, "\"activation\": \"swiglu\", \"norm\": \"rmsnorm\"",
                      "tensor 'layers.0.ln1.bias' is not in");
    expect_arch_error(path, "\"activation\": \"swiglu\", \"norm_position\": \"sandwich\"",
                      "tensor 'layers.0.ln1_post.weight' is missing");
    expect_arch_error(path, "\"activation\": \"gelu\"",
                      "tensor 'layers.0.ffn.gate.weight' is not in");
    model_free(&a);
    config_free(&cfg);
}
