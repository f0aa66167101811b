/* test_pos_bias.c — the attention-bias position methods (alibi and its extras, t5, kerple_log,
 * fire): the properties that define them, their config checks, and the tile form of the bias
 * hook. Gradients are checked by test_model.c (every registered method) and values against
 * the PyTorch reference by test_ref.c (fixtures t5_*, kerple_*, fire_*, alibi_trainable_*). */
#include <stdlib.h>
#include <string.h>

#include "../src/config/config.h"
#include "../src/model.h"
#include "../src/util/util.h"
#include "gradcheck.h"
#include "test.h"

int t5_bucket(long n, int n_buckets, int max_distance);

/* A tiny model (2 layers, d_model 8, heads H) with the given position object. */
static int tiny_model(Model *m, Config *cfg, int H, const char *position, int T, int training) {
    char text[512], err[512];
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 2, \"d_model\": %d, \"n_heads\": %d, \"d_ff\": 12, "
             "\"dropout\": 0, \"position\": %s}}",
             2 * H, H, position);
    if (config_from_text(cfg, text, "test", err, sizeof err)) {
        CHECK(0, "%s: %s", position, err);
        return 0;
    }
    model_create(m, cfg, 11, 2, T, training);
    model_init(m, 7);
    return 1;
}

static void free_model(Model *m, Config *cfg) {
    model_free(m);
    config_free(cfg);
}

/* The bias of head h of layer l as a T x T matrix (entries j > i left at 0). */
static void bias_matrix(const Model *m, int l, int h, int T, float *out) {
    memset(out, 0, sizeof(float) * T * T);
    m->state.pos.m->bias_forward(&m->state.pos, out, (size_t)T, l, h, 0, T, 0, T);
}

TEST(test_pos_bias_t5_buckets) {
    /* HF T5 unidirectional buckets, 32 buckets, max distance 128: the table of
     * ../shared/reference/alibi-paper-facts.md section 5 (16-18 -> 16, 19-20 -> 17, 99-112 ->
     * 30, 113 and above -> 31) */
    const long n[] = {0, 1, 15, 16, 18, 19, 20, 21, 98, 99, 112, 113, 127, 128, 1000, 100000};
    const int want[] = {0, 1, 15, 16, 16, 17, 17, 18, 29, 30, 30, 31, 31, 31, 31, 31};
    for (size_t k = 0; k < sizeof n / sizeof n[0]; k++)
        CHECK(t5_bucket(n[k], 32, 128) == want[k], "bucket(%ld) = %d, expected %d", n[k],
              t5_bucket(n[k], 32, 128), want[k]);
    /* buckets never decrease with distance and use every id */
    long bad = -1;
    for (long d = 1; d < 5000 && bad < 0; d++) {
        int step = t5_bucket(d, 32, 128) - t5_bucket(d - 1, 32, 128);
        if (step != 0 && step != 1) bad = d;
    }
    CHECK(bad < 0, "bucket ids jump at distance %ld", bad);
}

TEST(test_pos_bias_t5_shares_table) {
    /* shared: every layer sees the same bias; per_layer: the layers differ */
    Model m;
    Config cfg;
    const int T = 7;
    float a[49], b[49];
    if (!tiny_model(&m, &cfg, 2, "{\"type\": \"t5\", \"num_buckets\": 4, \"max_distance\": 5}", T,
                    0))
        return;
    CHECK(m.spec.pt.t[param_find(&m.spec.pt, "pos.rel_bias")].ndim == 2,
          "shared table is (buckets, H)");
    m.state.pos.m->prepare(&m.state.pos, T);
    bias_matrix(&m, 0, 1, T, a);
    bias_matrix(&m, 1, 1, T, b);
    CHECK(!memcmp(a, b, sizeof a), "shared table: layers 0 and 1 differ");
    /* entry (i, j) is rel_bias[bucket(i - j)][h]: buckets 0, 1, then 2 for 2..3, 3 beyond */
    const float *w = m.weights.params + m.spec.pt.t[param_find(&m.spec.pt, "pos.rel_bias")].offset;
    const int bk[] = {0, 1, 2, 2, 3, 3, 3};
    for (int i = 0; i < T; i++)
        for (int j = 0; j <= i; j++)
            CHECK(a[i * T + j] == w[bk[i - j] * 2 + 1], "t5 bias (%d, %d)", i, j);
    free_model(&m, &cfg);

    if (!tiny_model(&m, &cfg, 2, "{\"type\": \"t5\", \"per_layer\": true}", T, 0)) return;
    CHECK(m.spec.pt.t[param_find(&m.spec.pt, "pos.rel_bias")].ndim == 3,
          "per-layer table is (L, B, H)");
    m.state.pos.m->prepare(&m.state.pos, T);
    bias_matrix(&m, 0, 0, T, a);
    bias_matrix(&m, 1, 0, T, b);
    CHECK(memcmp(a, b, sizeof a) != 0, "per-layer tables: layers 0 and 1 are equal");
    free_model(&m, &cfg);
}

TEST(test_pos_bias_alibi_matrix) {
    /* 4 heads, slopes 1/4, 1/16, 1/64, 1/256: bias(i, j) = -m_h (i - j) */
    Model m;
    Config cfg;
    const int T = 5;
    float s[25];
    if (!tiny_model(&m, &cfg, 4, "{\"type\": \"alibi\"}", T, 0)) return;
    for (int h = 0; h < 4; h++) {
        bias_matrix(&m, 1, h, T, s);
        double slope = pow(2.0, -2.0 * (h + 1));
        for (int i = 0; i < T; i++)
            for (int j = 0; j <= i; j++)
                CHECK(s[i * T + j] == (float)(-slope * (i - j)), "alibi h=%d (%d, %d): %g", h, i, j,
                      s[i * T + j]);
    }
    free_model(&m, &cfg);

    /* a slope override, and only the first 2 heads biased */
    if (!tiny_model(&m, &cfg, 4,
                    "{\"type\": \"alibi\", \"slopes\": [0.5, 3, 0.125, 2], \"alibi_heads\": 2}", T,
                    0))
        return;
    const float want_slope[] = {0.5f, 3.0f, 0, 0};
    for (int h = 0; h < 4; h++) {
        bias_matrix(&m, 0, h, T, s);
        for (int i = 0; i < T; i++)
            for (int j = 0; j <= i; j++)
                CHECK(s[i * T + j] == -want_slope[h] * (float)(i - j), "alibi override h=%d", h);
    }
    free_model(&m, &cfg);
}

TEST(test_pos_bias_alibi_trainable_starts_fixed) {
    /* trainable slopes start at the fixed ones: the same network, bit for bit */
    const char *pos[2] = {"{\"type\": \"alibi\", \"slopes\": [0.3, 0.05, 0.7]}",
                          "{\"type\": \"alibi\", \"slopes\": [0.3, 0.05, 0.7], "
                          "\"trainable_slopes\": true}"};
    Model m[2];
    Config cfg[2];
    int32_t in[12];
    const Pass p = {.B = 2, .T = 6};
    for (int k = 0; k < 12; k++) in[k] = (int32_t)(hash64(k) % 11);
    for (int k = 0; k < 2; k++) {
        if (!tiny_model(&m[k], &cfg[k], 3, pos[k], 6, 1)) return;
        model_forward(&m[k], &p, in);
    }
    int idx = param_find(&m[1].spec.pt, "pos.slopes");
    CHECK(param_find(&m[0].spec.pt, "pos.slopes") < 0 && idx >= 0,
          "pos.slopes only when trainable");
    CHECK(m[1].weights.params[m[1].spec.pt.t[idx].offset + 2] == 0.7f,
          "pos.slopes starts at the override");
    CHECK(
        !memcmp(model_hidden(&m[0], &p), model_hidden(&m[1], &p), sizeof(float) * 12 * m[0].spec.C),
        "trainable slopes change the initial network");
    for (int k = 0; k < 2; k++) free_model(&m[k], &cfg[k]);
}

TEST(test_pos_bias_config_errors) {
    const struct {
        const char *position, *want;
    } cases[] = {
        {"{\"type\": \"alibi\", \"slopes\": [0.5, 0.25, 0.125]}",
         "model.position.slopes: expected 4 values (one per head), got 3"},
        {"{\"type\": \"alibi\", \"slopes\": [0.5, 0.25, 0, 0.1]}",
         "model.position.slopes: value 2 is 0, expected a positive slope"},
        {"{\"type\": \"alibi\", \"slopes\": [0.5, -1, 0.2, 0.1]}",
         "model.position.slopes[1]: -1 is out of range"},
        {"{\"type\": \"alibi\", \"alibi_heads\": 5}",
         "model.position.alibi_heads: 5 is more than model.n_heads (4)"},
        {"{\"type\": \"t5\", \"num_buckets\": 31}",
         "model.position.num_buckets: expected an even number, got 31"},
        {"{\"type\": \"t5\", \"num_buckets\": 32, \"max_distance\": 16}",
         "model.position.max_distance: 16 must exceed num_buckets/2 (16)"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char text[512], err[512] = "";
        snprintf(text, sizeof text,
                 "{\"model\": {\"d_model\": 16, \"n_heads\": 4, \"position\": %s}}",
                 cases[k].position);
        Config c;
        int rc = config_from_text(&c, text, "test", err, sizeof err);
        CHECK(rc != 0 && strstr(err, cases[k].want), "%s: got '%s', expected '%s'",
              cases[k].position, rc ? err : "success", cases[k].want);
        if (rc == 0) config_free(&c);
    }
}

/* Randomizes the method's tensors (as the gradient check does) so every term shows. */
static void randomize_pos(Model *m) {
    for (int k = 0; k < m->spec.pt.n; k++)
        if (m->spec.pt.t[k].init.kind == INIT_POS)
            fill_random(m->weights.params + m->spec.pt.t[k].offset, m->spec.pt.t[k].numel, 0.3f,
                        11 + k);
}

TEST(test_pos_bias_tiles_equal_whole) {
    /* The tile form (i0, ni, j0, nj, ld) gives the whole-matrix values, tile by tile: every
     * registered method with a bias hook at its defaults, plus settings that take other code
     * paths (FIRE with a small threshold runs both its tabulated rows, i <= thr, and its
     * per-pair rows). */
    static const char *special[] = {
        "{\"type\": \"t5\", \"num_buckets\": 8, \"max_distance\": 12}",
        "{\"type\": \"t5\", \"per_layer\": true}",
        "{\"type\": \"alibi\", \"trainable_slopes\": true, \"alibi_heads\": 2}",
        "{\"type\": \"fire\", \"init_L\": 20, \"mlp_width\": 5}",
    };
    enum { N_SPECIAL = sizeof special / sizeof special[0], MAX_CASES = N_SPECIAL + 32 };
    char cases[MAX_CASES][160];
    int n = 0;
    for (; n < N_SPECIAL; n++) snprintf(cases[n], sizeof cases[n], "%s", special[n]);
    for (int k = 0; k < pos_count() && n < MAX_CASES; k++)
        if (pos_at(k)->bias_forward)
            snprintf(cases[n++], sizeof cases[0], "{\"type\": \"%s\"}", pos_at(k)->name);
    enum { T = 23 };
    static float whole[T * T], tiled[T * T];
    const int cuts[] = {0, 4, 5, 13, 16, T}; /* uneven tile edges */
    for (int k = 0; k < n; k++) {
        Model m;
        Config cfg;
        if (!tiny_model(&m, &cfg, 3, cases[k], T, 1)) continue;
        randomize_pos(&m);
        int lm = param_find(&m.spec.pt, "pos.fire.L_mult");
        if (lm >= 0 && strstr(cases[k], "init_L")) /* thr = 0.3 * 20 = 6: rows 7.. per pair */
            for (int l = 0; l < 2; l++) m.weights.params[m.spec.pt.t[lm].offset + l] = 0.3f;
        if (m.state.pos.m->prepare) m.state.pos.m->prepare(&m.state.pos, T);
        for (int l = 0; l < 2; l++) {
            int nonzero = 0; /* in some head of the layer (ALiBi may leave heads unbiased) */
            for (int h = 0; h < 3; h++) {
                bias_matrix(&m, l, h, T, whole);
                memset(tiled, 0, sizeof tiled);
                for (int a = 0; a + 1 < 6; a++)
                    for (int b = 0; b + 1 < 6 && cuts[b] <= cuts[a + 1] - 1; b++) {
                        int i0 = cuts[a], j0 = cuts[b];
                        m.state.pos.m->bias_forward(&m.state.pos, tiled + i0 * T + j0, T, l, h, i0,
                                                    cuts[a + 1] - i0, j0, cuts[b + 1] - j0);
                    }
                int same = 1;
                for (int i = 0; i < T; i++)
                    for (int j = 0; j <= i; j++) same &= whole[i * T + j] == tiled[i * T + j];
                CHECK(same, "%s layer %d head %d: tiles differ from the whole matrix", cases[k], l,
                      h);
                for (int i = 0; i < T * T; i++) nonzero |= whole[i] != 0;
            }
            CHECK(nonzero, "%s layer %d: the bias is zero in every head", cases[k], l);
        }
        free_model(&m, &cfg);
    }
}
