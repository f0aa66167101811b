/* test_pos_learned.c — learned absolute positions and fine-tuning from a checkpoint:
 *   - the table has max_positions rows (default train.seq_len) and training cannot outgrow it;
 *   - ./eval reads at most max_positions tokens per segment and refuses longer L_valid with
 *     one line naming the maximum (the table is never read past its end);
 *   - ./train --init RUN starts a new run from RUN's weights and vocabulary: the first
 *     validation equals RUN's last, every mismatch is one line naming the tensor and shapes.
 * Forward values and gradients are checked against tests/ref/ref_learned.py by test_ref.c, and
 * by finite differences in test_model.c (every registered method).
 *
 * The corpus is tests/fixtures/cli (vocabulary 266, valid 105 tokens). */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../src/config/config.h"
#include "../src/model.h"
#include "../src/util/util.h"

/* Scratch directory with the corpus in <dir>/data and the tiny learned model's config in
 * <dir>/cfg.json (1 layer, d_model 16, 12 steps of 2 x 16 tokens). */
static void setup(const char *name, char *dir, size_t n) {
    cli_scratch(name, dir, n);
    cli_tiny_config(dir, "\"position\": {\"type\": \"learned\"}");
}

/* log_value of run inside dir */
static double run_log_value(const char *dir, const char *run, int step, const char *key) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, run);
    return log_value(path, step, key);
}

static int train(const char *dir, const char *run, const char *extra, char *out) {
    int rc = sh(out, "./train --config %s/cfg.json --out %s/%s %s", dir, dir, run, extra);
    CHECK(rc == 0, "training %s/%s (%s) failed (status %d): %s", dir, run, extra, rc, out);
    return rc == 0;
}

/* ---- the table ---- */

TEST(test_pos_learned_table_shape) {
    static const struct {
        const char *position;
        int seq_len;
        size_t rows; /* 0: the config is an error naming max_positions */
    } cases[] = {
        {"{\"type\": \"learned\"}", 16, 16},
        {"{\"type\": \"learned\", \"max_positions\": 40}", 16, 40},
        {"{\"type\": \"learned\", \"max_positions\": 16}", 16, 16},
        {"{\"type\": \"learned\", \"max_positions\": 15}", 16, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512], err[512];
        snprintf(text, sizeof text,
                 "{\"model\": {\"d_model\": 8, \"n_heads\": 2, \"position\": %s}, "
                 "\"train\": {\"seq_len\": %d}}",
                 cases[i].position, cases[i].seq_len);
        Config c;
        int rc = config_from_text(&c, text, "test", err, sizeof err);
        if (!cases[i].rows) {
            CHECK(rc != 0 && strstr(err, "model.position.max_positions") &&
                      strstr(err, "train.seq_len"),
                  "%s: expected an error naming max_positions and seq_len, got rc %d '%s'", text,
                  rc, rc ? err : "");
            continue;
        }
        CHECK(rc == 0, "%s: %s", text, err);
        if (rc) continue;
        ModelSpec spec;
        model_spec_init(&spec, &c, 11);
        const ParamTable pt = spec.pt;
        int k = param_find(&pt, "pos.weight");
        CHECK(k >= 0 && pt.t[k].ndim == 2 && pt.t[k].shape[0] == cases[i].rows &&
                  pt.t[k].shape[1] == 8 && !pt.t[k].decay,
              "%s: pos.weight should be (%zu, 8) without weight decay", text, cases[i].rows);
        model_spec_free(&spec);
        config_free(&c);
    }
}

TEST(test_pos_learned_adds_row_t) {
    /* x[b][t] = E[token] * sqrt(C) + P[t]: checked on the model's own embedding output */
    char err[512];
    Config c;
    int rc = config_from_text(&c,
                              "{\"model\": {\"n_layers\": 1, \"d_model\": 8, \"n_heads\": 2, "
                              "\"d_ff\": 8, \"dropout\": 0, \"position\": {\"type\": "
                              "\"learned\", \"max_positions\": 7}}, \"train\": {\"seq_len\": 5}}",
                              "test", err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc) return;
    Model m;
    model_create(&m, &c, 11, 2, 5, 1); /* training: a.res keeps the embedding output */
    model_init(&m, 1);
    const float *P = m.weights.params + m.spec.pt.t[param_find(&m.spec.pt, "pos.weight")].offset;
    const float *E = m.weights.params + m.spec.pt.t[m.spec.tok_emb].offset;
    double sum2 = 0;
    for (int i = 0; i < 7 * 8; i++) sum2 += (double)P[i] * P[i];
    CHECK_CLOSE(sqrt(sum2 / 56), 1 / sqrt(8.0), 0.35, "pos.weight init std ~ C^-1/2");
    int32_t in[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    model_forward(&m, &(Pass){.B = 2, .T = 5, .train = 1}, in);
    double maxdiff = 0;
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 5; t++)
            for (int k = 0; k < 8; k++) {
                double want = E[in[b * 5 + t] * 8 + k] * sqrt(8.0) + P[t * 8 + k];
                maxdiff = fmax(maxdiff, fabs(m.state.a.res[(b * 5 + t) * 8 + k] - want));
            }
    CHECK(maxdiff < 1e-5, "embedding differs from E*sqrt(C) + P[t] by %g", maxdiff);
    model_free(&m);
    config_free(&c);
}

/* ---- ./eval stops at the table's end ---- */

TEST(test_pos_learned_eval_limit) {
    char dir[256], out[OUT_LEN];
    setup("pos_learned_eval", dir, sizeof dir);
    if (!train(dir, "run", "--set model.position.max_positions=24", out)) return;
    int rc = sh(out, "./eval --ckpt %s/run --lvalid 8,16,24", dir);
    CHECK(rc == 0, "eval at L_valid <= max_positions: status %d: %s", rc, out);
    CHECK(strstr(out, "\n      24 ") != NULL, "no row for L_valid 24: %s", out);
    rc = sh(out, "./eval --ckpt %s/run --lvalid 16,25", dir);
    expect_user_error(rc, out, "learned stops at length 24 (set by model.position.max_positions)",
                      "L_valid <= 24", NULL, "eval at L_valid 25 > max_positions 24");
    CHECK(strstr(out, "25") != NULL, "the message does not name L_valid 25: %s", out);
    /* the default table is train.seq_len long */
    if (!train(dir, "short", "", out)) return;
    rc = sh(out, "./eval --ckpt %s/short --lvalid 1000", dir);
    expect_user_error(rc, out, "stops at length 16", "1000", NULL, "eval at L_valid 1000 > 16");
    rc = sh(out, "./train --config %s/cfg.json --out %s/bad --set model.position.max_positions=8",
            dir, dir);
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad", dir);
    expect_user_error(rc, out, "model.position.max_positions", NULL, bad,
                      "training beyond the table");
}

/* ---- ./train --init ---- */

TEST(test_train_init_from_checkpoint) {
    char dir[256], out[OUT_LEN], extra[1024], p[600], q[600];
    setup("train_init", dir, sizeof dir);
    /* A: trained well enough (lr 1e-2, 40 steps) that its loss is clearly below a fresh
     * model's; fresh: the same config, one step */
    if (!train(dir, "A", "--set train.lr=1e-2 --set train.steps=40", out)) return;
    if (!train(dir, "fresh", "--set train.steps=1", out)) return;
    /* B starts from A with a learning rate too small to move a float32 weight; its train file
     * has a word A never saw, which must not enter the vocabulary (ids are A's embedding rows) */
    int rc = sh(out,
                "mkdir %s/data2 && cp %s/data/*.tokens %s/data2/ && "
                "echo ' zebraword zebraword' >> %s/data2/wiki.train.tokens",
                dir, dir, dir, dir);
    CHECK(rc == 0, "cannot make data2: %s", out);
    snprintf(extra, sizeof extra,
             "--init %s/A --set train.steps=1 --set train.lr=1e-9 --set data.dir=%s/data2", dir,
             dir);
    if (!train(dir, "B", extra, out)) return;
    CHECK(strstr(out, "vocab 266,") && strstr(out, "init ") && strstr(out, "A/model.safetensors"),
          "B's summary should show A's vocabulary (266) and the init source: %s", out);
    snprintf(p, sizeof p, "%s/A/vocab.txt", dir);
    snprintf(q, sizeof q, "%s/B/vocab.txt", dir);
    CHECK(same_files(p, q), "B's vocab.txt is not a copy of A's");
    double a_val = run_log_value(dir, "A", 40, "val_loss"),
           b_val = run_log_value(dir, "B", 1, "val_loss");
    CHECK(fabs(a_val - b_val) < 1e-6, "B's validation (%.7f) should equal A's last (%.7f)", b_val,
          a_val);
    double b_loss = run_log_value(dir, "B", 1, "loss"),
           f_loss = run_log_value(dir, "fresh", 1, "loss");
    CHECK(b_loss < f_loss - 0.3, "B's first loss %.4f is not far below a fresh model's %.4f",
          b_loss, f_loss);
    CHECK(run_log_value(dir, "B", 0, "init_step") == 40, "B's log does not record A's step 40");

    /* the file form of RUN, into a longer table of another method: tensors the new model lacks
     * (pos.weight of A's learned table) are left out with a note */
    snprintf(extra, sizeof extra,
             "--init %s/A/model.safetensors --set train.steps=1 --set train.seq_len=32 "
             "--set model.position.type=sinusoidal",
             dir);
    if (train(dir, "C", extra, out))
        CHECK(strstr(out, "pos.weight"), "C's summary does not name the unused pos.weight: %s",
              out);

    /* mistakes: one line, exit 2, no run directory */
    static const struct {
        const char *args, *want, *want2;
    } bad[] = {
        /* a longer learned table: the message names the tensor and both shapes */
        {"--init %s/A --set train.seq_len=32", "pos.weight",
         "16x16, the config needs float32 32x16"},
        {"--init %s/A --set model.d_model=32 --set model.d_ff=64", "tok_emb.weight", "266x16"},
        {"--init %s/A --set model.n_heads=4", "model.n_heads", "4"},
        {"--init %s/A --set model.activation=relu", "model.activation", "gelu"},
        {"--init %s/nope", "nope", NULL},
        {"--init %s/data", "model.safetensors", NULL},
        {"--init %s/A --resume %s/A", "--resume", NULL},
        {"--init %s/A --set model.n_layers=2", "layers.1.", "missing"},
    };
    snprintf(q, sizeof q, "%s/bad", dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[1024];
        snprintf(args, sizeof args, bad[i].args, dir, dir);
        rc = sh(out, "./train --config %s/cfg.json --out %s %s", dir, q, args);
        expect_user_error(rc, out, bad[i].want, bad[i].want2, q, args);
    }
    rc = sh(out, "./train --init %s/A --out %s", dir, q);
    expect_user_error(rc, out, "--config", NULL, q, "--init without --config");
    /* a vocab.txt that does not match the checkpoint's vocabulary */
    rc = sh(out,
            "mkdir %s/D && cp %s/A/model.safetensors %s/A/vocab.txt %s/D/ && "
            "echo extraword >> %s/D/vocab.txt",
            dir, dir, dir, dir, dir);
    CHECK(rc == 0, "cannot make D: %s", out);
    rc = sh(out, "./train --config %s/cfg.json --out %s --init %s/D", dir, q, dir);
    expect_user_error(rc, out, "267 words", "266", q, "--init with a 267-word vocab.txt");
    rc = sh(out, "./train --help");
    CHECK(rc == 0 && strstr(out, "--init RUN"), "./train --help does not document --init");
}

/* Every method's length limit (max_positions) names one of its own keys as what sets it, and
 * at its defaults covers the training length (training never meets the limit; ./eval does). */
TEST(test_pos_max_positions_every_method) {
    for (int k = 0; k < pos_count(); k++) {
        const PosMethod *pm = pos_at(k);
        char text[256], err[512];
        snprintf(text, sizeof text, "{\"model\": {\"position\": {\"type\": \"%s\"}}}", pm->name);
        Config c;
        int rc = config_from_text(&c, text, "test", err, sizeof err);
        CHECK(rc == 0, "%s: %s", pm->name, err);
        if (rc) continue;
        int longest = pos_max_positions(pm, &c), named = !pm->max_positions;
        for (int i = 0; pm->max_positions && i < pm->n_keys; i++)
            named |= !strcmp(pm->keys[i].name, pm->max_positions_key);
        CHECK(named, "%s: max_positions_key '%s' is not one of its keys", pm->name,
              pm->max_positions_key ? pm->max_positions_key : "(none)");
        CHECK(longest >= c.train.seq_len, "%s: stops at %d, below train.seq_len %d", pm->name,
              longest, c.train.seq_len);
        config_free(&c);
    }
}
