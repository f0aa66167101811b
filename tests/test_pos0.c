/* test_pos0.c — a pass that starts at position pos0 (Pass.pos0, a segment of tokens
 * [p, p + T)) gets from every registered position method what rows p.. of a pass from 0 over
 * [0, p + T) get. What is comparable depends on the hook, since causal attention inside the
 * segment does not see tokens before p:
 *   embed  (sinusoidal, learned): the embedding rows of the model, bit for bit;
 *   rotate (rotary, xpos): layer 0's rotated q and k rows of the model, so every q.k score
 *          matches (xpos: its tables are centred for the positions read, p + T, in both);
 *   bias   (alibi, t5, kerple_log, fire): the attention of both kernels (training and tiled)
 *          over the segment equals the attention with block [p.., p..] of the whole bias
 *          matrix from 0. A bias of i - j alone passes even if pos0 were dropped, so FIRE also
 *          runs with a threshold below p, where its normalizer depends on i itself;
 *   none: nothing to compare. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../src/config/config.h"
#include "../src/model.h"
#include "../src/util/util.h"
#include "gradcheck.h"
#include "test.h"

enum { P0 = 37, SEG = 29, ALL = P0 + SEG, V = 11 }; /* ALL > 64: two attention blocks */

static int tiny_model(Model *m, Config *cfg, const char *position) {
    char text[512], err[512];
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 2, \"d_model\": 12, \"n_heads\": 3, \"d_ff\": 16, "
             "\"dropout\": 0, \"position\": %s}, \"train\": {\"seq_len\": %d}}",
             position, ALL);
    if (config_from_text(cfg, text, "test", err, sizeof err)) {
        CHECK(0, "%s: %s", position, err);
        return 0;
    }
    model_create(m, cfg, V, 1, ALL, 1);
    model_init(m, 3);
    for (int k = 0; k < m->spec.pt.n; k++) /* the method's tensors away from their init */
        if (m->spec.pt.t[k].init.kind == INIT_POS)
            fill_random(m->weights.params + m->spec.pt.t[k].offset, m->spec.pt.t[k].numel, 0.5f,
                        40 + k);
    return 1;
}

static double max_diff(const float *a, const float *b, size_t rows, size_t cols, size_t ld) {
    double worst = 0.0;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) worst = fmax(worst, fabs(a[r * ld + c] - b[r * ld + c]));
    return worst;
}

/* embed and rotate: the model's activations of the pass from p against rows p.. from 0. */
static void check_model_rows(Model *m, const char *label) {
    const PosMethod *pm = m->state.pos.m;
    const size_t C = (size_t)m->spec.C;
    int32_t in[ALL];
    for (int i = 0; i < ALL; i++) in[i] = (int32_t)(hash64(i + 5) % V);
    const Pass whole = {.B = 1, .T = ALL, .train = 1},
               seg = {.B = 1, .T = SEG, .pos0 = P0, .train = 1};
    float *emb = xcalloc(ALL * C, sizeof *emb), *qkv = xcalloc(ALL * 3 * C, sizeof *qkv);
    model_forward(m, &whole, in);
    memcpy(emb, m->state.a.res, ALL * C * sizeof *emb);
    memcpy(qkv, m->state.a.qkv, ALL * 3 * C * sizeof *qkv);
    model_forward(m, &seg, in + P0);
    if (pm->embed_forward) {
        double d = max_diff(m->state.a.res, emb + P0 * C, SEG, C, C);
        CHECK(d == 0.0, "%s: embedding rows from pos0 %d differ from rows %d.. from 0 by %g", label,
              P0, P0, d);
    }
    if (pm->rotate_forward) {
        /* the same inputs through different-sized products: equal up to rounding */
        double d = max_diff(m->state.a.qkv, qkv + P0 * 3 * C, SEG, 2 * C, 3 * C);
        CHECK(d <= 1e-6, "%s: rotated q, k rows from pos0 %d differ from rows %d.. from 0 by %g",
              label, P0, P0, d);
    }
    free(emb), free(qkv);
}

/* The definition for the segment, in double: s_ij = q_i.k_j / sqrt(D) + whole[P0 + i][P0 + j],
 * j <= i, whole = the bias matrix of positions 0 .. ALL-1; out_i = softmax(s_i) V. */
static void reference_attention(double *out, const float *qkv, const Model *m, int layer) {
    const int C = m->spec.C, H = m->spec.H, D = C / H;
    const size_t ld = 3 * (size_t)C;
    float *whole = xcalloc((size_t)ALL * ALL, sizeof *whole);
    double s[SEG];
    for (int h = 0; h < H; h++) {
        memset(whole, 0, sizeof(float) * ALL * ALL);
        m->state.pos.m->bias_forward(&m->state.pos, whole, ALL, layer, h, 0, ALL, 0, ALL);
        for (int i = 0; i < SEG; i++) {
            double mx = -1e300, sum = 0.0;
            for (int j = 0; j <= i; j++) {
                double dot = 0.0;
                for (int d = 0; d < D; d++)
                    dot += (double)qkv[i * ld + h * D + d] * qkv[j * ld + C + h * D + d];
                s[j] = dot / sqrt((double)D) + whole[(size_t)(P0 + i) * ALL + P0 + j];
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j <= i; j++) sum += s[j] = exp(s[j] - mx);
            for (int d = 0; d < D; d++) {
                double o = 0.0;
                for (int j = 0; j <= i; j++) o += s[j] / sum * qkv[j * ld + 2 * C + h * D + d];
                out[(size_t)i * C + h * D + d] = o;
            }
        }
    }
    free(whole);
}

static void check_bias(Model *m, const char *label) {
    const int C = m->spec.C, H = m->spec.H, layer = 1, nt = omp_get_max_threads();
    float *qkv = xcalloc((size_t)SEG * 3 * C, sizeof *qkv), *out = xcalloc((size_t)SEG * C, 4);
    float *tiled = xcalloc((size_t)SEG * C, 4), *probs = xcalloc((size_t)H * SEG * SEG, 4);
    float *scratch = xcalloc(attention_tiled_scratch_floats(C, H, nt), sizeof *scratch);
    double *ref = xcalloc((size_t)SEG * C, sizeof *ref);
    fill_random(qkv, (size_t)SEG * 3 * C, 1.5f, 77);
    if (m->state.pos.m->prepare) /* a parameter-free bias may have none */
        m->state.pos.m->prepare(&m->state.pos, ALL);
    AttnShape s = {.B = 1,
                   .T = SEG,
                   .C = C,
                   .H = H,
                   .layer = layer,
                   .pos = &m->state.pos,
                   .pos0 = P0,
                   .tile_threads = nt};
    attention_forward(out, probs, qkv, &s);
    attention_forward_tiled(tiled, qkv, &s, scratch);
    reference_attention(ref, qkv, m, layer);
    double worst = 0.0, worst_tiled = 0.0;
    for (size_t e = 0; e < (size_t)SEG * C; e++) {
        worst = fmax(worst, fabs(out[e] - ref[e]));
        worst_tiled = fmax(worst_tiled, fabs(tiled[e] - ref[e]));
    }
    CHECK(worst <= 1e-5 && worst_tiled <= 1e-5,
          "%s: attention from pos0 %d differs from the bias block [%d.., %d..] of a pass from 0 "
          "by %g (training kernel), %g (tiled kernel)",
          label, P0, P0, P0, worst, worst_tiled);
    free(qkv), free(out), free(tiled), free(probs), free(scratch), free(ref);
}

static void check_method(const char *position) {
    Model m;
    Config cfg;
    if (!tiny_model(&m, &cfg, position)) return;
    const PosMethod *pm = m.state.pos.m;
    if (pm->embed_forward || pm->rotate_forward) check_model_rows(&m, position);
    if (pm->bias_forward) check_bias(&m, position);
    model_free(&m);
    config_free(&cfg);
}

TEST(test_pos0_segment_sees_rows_of_a_pass_from_0) {
    for (int k = 0; k < pos_count(); k++) {
        char position[128];
        snprintf(position, sizeof position, "{\"type\": \"%s\"}", pos_at(k)->name);
        check_method(position);
    }
    /* thr = |L_mult| * 2 <= 1 after the randomization: every row past it */
    check_method("{\"type\": \"fire\", \"init_L\": 2}");
    check_method("{\"type\": \"rotary\", \"scaling\": \"dynamic-ntk\", \"orig_len\": 40}");
}
