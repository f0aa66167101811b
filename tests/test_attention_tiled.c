/* test_attention_tiled.c — the evaluation attention (attention_forward_tiled, online softmax
 * over tiles) against a plain reference that materializes the scores, for every registered
 * position method, at odd lengths and at the tile boundaries; with grouped kv heads against the
 * training kernel; an evaluation model against a
 * training model with the same weights; and the evaluation model's memory: linear in T. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../src/config/config.h"
#include "../src/model.h"
#include "../src/util/util.h"
#include "gradcheck.h"
#include "test.h"

/* Longest T below; learned positions need a table row per position (train.seq_len). */
#define MAX_T 1024

/* A tiny model with the given position method: 2 layers, H heads of width D; extra: more
 * members of "model" (an architecture variant) or "". */
static int tiny_model_with(Model *m, Config *cfg, const char *method, int H, int D, int B, int T,
                           int training, const char *extra) {
    char text[512], err[512];
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 2, \"d_model\": %d, \"n_heads\": %d, \"d_ff\": 24, "
             "\"dropout\": 0, \"position\": {\"type\": \"%s\"}%s}, \"train\": {\"seq_len\": %d}}",
             H * D, H, method, extra, MAX_T);
    if (config_from_text(cfg, text, "test", err, sizeof err)) {
        CHECK(0, "%s: %s", method, err);
        return 0;
    }
    model_create(m, cfg, 11, B, T, training);
    model_init(m, 7);
    return 1;
}

static int tiny_model(Model *m, Config *cfg, const char *method, int H, int D, int B, int T,
                      int training) {
    return tiny_model_with(m, cfg, method, H, D, B, T, training, "");
}

/* Every learnable position tensor random, so biases differ per head, layer and distance. */
static void randomize_pos(Model *m, unsigned long long seed) {
    for (int k = 0; k < m->spec.pt.n; k++)
        if (m->spec.pt.t[k].init.kind == INIT_POS)
            fill_random(m->weights.params + m->spec.pt.t[k].offset, m->spec.pt.t[k].numel, 0.5f,
                        seed + k);
}

/* The definition, in double: s_ij = q_i.k_j / sqrt(D) + bias(i, j) for j <= i, the bias from
 * the method's hook called once on the whole T x T matrix; p_i = softmax(s_i); o_i = p_i V. */
static void naive_attention(double *out, const float *qkv, const Pos *pos, int layer, int B, int T,
                            int C, int H) {
    const int D = C / H;
    const size_t ld = 3 * (size_t)C;
    float *bias = xcalloc((size_t)T * T, sizeof *bias);
    double *s = xcalloc((size_t)T, sizeof *s);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            memset(bias, 0, sizeof(float) * (size_t)T * T);
            if (pos->m->bias_forward)
                pos->m->bias_forward(pos, bias, (size_t)T, layer, h, 0, T, 0, T);
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * D, *k = q + C, *v = q + 2 * C;
            for (int i = 0; i < T; i++) {
                double mx = -1e300, sum = 0.0;
                for (int j = 0; j <= i; j++) {
                    double dot = 0.0;
                    for (int d = 0; d < D; d++) dot += (double)q[i * ld + d] * k[j * ld + d];
                    s[j] = dot / sqrt((double)D) + bias[(size_t)i * T + j];
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int j = 0; j <= i; j++) sum += (s[j] = exp(s[j] - mx));
                double *o = out + ((size_t)b * T + i) * C + (size_t)h * D;
                for (int d = 0; d < D; d++) {
                    double acc = 0.0;
                    for (int j = 0; j <= i; j++) acc += s[j] * v[j * ld + d];
                    o[d] = acc / sum;
                }
            }
        }
    free(bias);
    free(s);
}

/* The largest relative error of out against ref (a NaN counts as the largest), at *at; *differ:
 * how many entries of out and out1 (the same computation on another thread count) differ. */
static double compare_outputs(const float *out, const float *out1, const double *ref, size_t n,
                              size_t *at, size_t *differ) {
    double worst = 0.0;
    *at = *differ = 0;
    for (size_t e = 0; e < n; e++) {
        double err = fabs(out[e] - ref[e]) / (fabs(ref[e]) > 1.0 ? fabs(ref[e]) : 1.0);
        if (err > worst || err != err) worst = err, *at = e;
        *differ += out[e] != out1[e];
    }
    return worst;
}

/* Tiled vs naive for one method, length and head width; also tiled on one thread vs all
 * threads (every work item is computed alone, so the result must not depend on the thread
 * count). */
static void check_tiled(const char *method, int T, int D) {
    const int B = 2, H = 3, C = H * D, layer = 1;
    Model m;
    Config cfg;
    if (!tiny_model(&m, &cfg, method, H, D, B, T, 0)) return;
    randomize_pos(&m, 11);
    if (m.state.pos.m->prepare) m.state.pos.m->prepare(&m.state.pos, T);
    const size_t N = (size_t)B * T;
    float *qkv = xcalloc(N * 3 * C, sizeof *qkv), *out = xcalloc(N * C, sizeof *out);
    float *out1 = xcalloc(N * C, sizeof *out1);
    double *ref = xcalloc(N * C, sizeof *ref);
    /* amplitude 1.5: scores spread over several units, so softmax rows are far from uniform
     * and the running maximum changes from tile to tile */
    fill_random(qkv, N * 3 * C, 1.5f, 1000 + T);
    if (m.state.pos.m->rotate_forward)
        m.state.pos.m->rotate_forward(&m.state.pos, qkv, qkv + C, 3 * (size_t)C, layer, B, T, 0);

    int nt = omp_get_max_threads();
    float *scratch = xcalloc(attention_tiled_scratch_floats(C, H, nt), sizeof *scratch);
    AttnShape s = {
        .B = B, .T = T, .C = C, .H = H, .layer = layer, .pos = &m.state.pos, .tile_threads = nt};
    attention_forward_tiled(out, qkv, &s, scratch);
    s.tile_threads = 1;
    attention_forward_tiled(out1, qkv, &s, scratch);
    naive_attention(ref, qkv, &m.state.pos, layer, B, T, C, H);

    size_t at, differ;
    double worst = compare_outputs(out, out1, ref, N * C, &at, &differ);
    CHECK(worst <= 1e-5, "%s T=%d: tiled vs naive, max relative error %.3g at b=%zu i=%zu col %zu",
          method, T, worst, at / C / T, at / C % T, at % C);
    CHECK(differ == 0, "%s T=%d: %zu outputs differ between 1 and %d threads", method, T, differ,
          nt);
    free(qkv), free(out), free(out1), free(ref), free(scratch);
    model_free(&m);
    config_free(&cfg);
}

TEST(test_attention_tiled_every_method_and_length) {
    /* odd lengths, then each side of the query and key tile boundaries */
    const int Ts[] = {1,
                      7,
                      129,
                      1000,
                      ATT_TILE_Q,
                      ATT_TILE_Q + 1,
                      ATT_TILE_K - 1,
                      ATT_TILE_K,
                      ATT_TILE_K + 1,
                      2 * ATT_TILE_K};
    for (int i = 0; i < pos_count(); i++)
        for (size_t t = 0; t < sizeof Ts / sizeof Ts[0]; t++)
            check_tiled(pos_at(i)->name, Ts[t], 8);
}

/* Head width 32 (the reference model's) takes the kernel's specialized P.V path, for every
 * registered method. */
TEST(test_attention_tiled_head_width_32) {
    const int Ts[] = {1, 129, ATT_TILE_K + 1, 1000};
    for (int i = 0; i < pos_count(); i++)
        for (size_t t = 0; t < sizeof Ts / sizeof Ts[0]; t++)
            check_tiled(pos_at(i)->name, Ts[t], 32);
}

/* Grouped-query attention: the tiled kernel against the training kernel (attention_forward,
 * itself checked by finite differences and against repeated-head MHA in test_ops.c) for H = 4
 * and Hkv kv heads, q and k rotated by the method with Hkv key heads; and the tiled result on
 * 1 thread vs all. */
static void check_tiled_gqa(const char *method, int Hkv, int T) {
    const int B = 2, H = 4, D = 8, C = H * D, layer = 1;
    Model m;
    Config cfg;
    if (!tiny_model(&m, &cfg, method, H, D, B, T, 0)) return;
    randomize_pos(&m, 13);
    if (m.state.pos.m->prepare) m.state.pos.m->prepare(&m.state.pos, T);
    Pos pos = m.state.pos;
    pos.Hkv = Hkv;
    const size_t N = (size_t)B * T, ld = (size_t)(H + 2 * Hkv) * D;
    float *qkv = xcalloc(N * ld, sizeof *qkv), *out = xcalloc(N * C, sizeof *out);
    float *out1 = xcalloc(N * C, sizeof *out1), *train = xcalloc(N * C, sizeof *train);
    float *probs = xcalloc((size_t)B * H * T * T, sizeof *probs);
    double *ref = xcalloc(N * C, sizeof *ref);
    fill_random(qkv, N * ld, 1.5f, 2000 + Hkv);
    if (pos.m->rotate_forward) pos.m->rotate_forward(&pos, qkv, qkv + C, ld, layer, B, T, 0);
    int nt = omp_get_max_threads();
    float *scratch = xcalloc(attention_tiled_scratch_floats(C, H, nt), sizeof *scratch);
    AttnShape s = {.B = B,
                   .T = T,
                   .C = C,
                   .H = H,
                   .Hkv = Hkv,
                   .layer = layer,
                   .pos = &pos,
                   .tile_threads = nt};
    attention_forward_tiled(out, qkv, &s, scratch);
    s.tile_threads = 1;
    attention_forward_tiled(out1, qkv, &s, scratch);
    attention_forward(train, probs, qkv, &s);
    for (size_t e = 0; e < N * C; e++) ref[e] = train[e];
    size_t at, differ;
    double worst = compare_outputs(out, out1, ref, N * C, &at, &differ);
    CHECK(worst <= 1e-5,
          "%s Hkv %d T=%d: tiled vs training kernel, max relative error %.3g at b=%zu i=%zu "
          "col %zu",
          method, Hkv, T, worst, at / C / T, at / C % T, at % C);
    CHECK(differ == 0, "%s Hkv %d T=%d: %zu outputs differ between 1 and %d threads", method, Hkv,
          T, differ, nt);
    free(qkv), free(out), free(out1), free(train), free(ref), free(probs), free(scratch);
    model_free(&m);
    config_free(&cfg);
}

/* T = 600: five query tiles of ATT_TILE_Q = 128 and three key tiles of ATT_TILE_K = 256, the
 * last ones partial; Hkv = 1 (multi-query), 2, 4 (multi-head). */
TEST(test_attention_tiled_gqa_every_method) {
    const int Hkvs[] = {1, 2, 4};
    for (int i = 0; i < pos_count(); i++)
        for (int k = 0; k < 3; k++) check_tiled_gqa(pos_at(i)->name, Hkvs[k], 600);
}

/* Per-token losses of an evaluation model (tiled attention) and a training model (the
 * training attention, in its evaluation forward) holding the same weights, for every method
 * and architecture variant (kv heads, norms and their placements). */
TEST(test_attention_tiled_model_matches_training_model) {
    const char *variants[] = {"",
                              ", \"n_kv_heads\": 1",
                              ", \"n_kv_heads\": 2",
                              ", \"norm\": \"rmsnorm\", \"norm_position\": \"sandwich\"",
                              ", \"norm_position\": \"post\", \"final_norm\": false",
                              ", \"norm_position\": \"deepnorm\", \"final_norm\": false, "
                              "\"activation\": \"geglu\""};
    const int B = 2, T = 300, V = 11; /* T spans two key tiles and five query tiles */
    int32_t *in = xcalloc((size_t)B * T, sizeof *in), *tg = xcalloc((size_t)B * T, sizeof *tg);
    float *le = xcalloc((size_t)B * T, sizeof *le), *lt = xcalloc((size_t)B * T, sizeof *lt);
    for (int i = 0; i < B * T; i++)
        in[i] = (int32_t)(hash64(i) % V), tg[i] = (int32_t)(hash64(i + 7777) % V);
    for (int k = 0; k < pos_count() * 6; k++) {
        const char *method = pos_at(k / 6)->name, *variant = variants[k % 6];
        Model ev, tr;
        Config cfg;
        if (!tiny_model_with(&tr, &cfg, method, 4, 4, B, T, 1, variant)) continue;
        model_create(&ev, &cfg, V, B, T, 0);
        randomize_pos(&tr, 5);
        memcpy(ev.weights.params, tr.weights.params, sizeof(float) * tr.spec.pt.total);
        CHECK(ev.state.a.probs == NULL && ev.state.a.bh_tt == NULL && ev.state.a.att_tiles != NULL,
              "%s%s: the evaluation model allocates (B, H, T, T) buffers", method, variant);
        const Pass p = {.B = B, .T = T};
        model_forward(&ev, &p, in);
        model_loss(&ev, &p, tg, le);
        model_forward(&tr, &p, in);
        model_loss(&tr, &p, tg, lt);
        double worst = 0.0;
        for (int i = 0; i < B * T; i++) {
            double e = fabs(le[i] - lt[i]) / (fabs(lt[i]) > 1.0 ? fabs(lt[i]) : 1.0);
            worst = e > worst || e != e ? e : worst;
        }
        CHECK(worst <= 1e-5,
              "%s%s: per-token losses of the evaluation and training models differ "
              "by %.3g (relative)",
              method, variant, worst);
        model_free(&ev);
        model_free(&tr);
        config_free(&cfg);
    }
    free(in), free(tg), free(le), free(lt);
}

/* The allocator's bookkeeping (act_bytes) of an evaluation model is a + b*T: no T^2 term. */
static size_t eval_act_bytes(int T) {
    Model m;
    Config cfg;
    if (!tiny_model(&m, &cfg, "alibi", 8, 32, 1, T, 0)) return 0;
    size_t bytes = m.state.act_bytes;
    model_free(&m);
    config_free(&cfg);
    return bytes;
}

TEST(test_attention_tiled_memory_linear_in_T) {
    size_t a1 = eval_act_bytes(1024), a2 = eval_act_bytes(2048), a4 = eval_act_bytes(4096);
    CHECK(a4 <= 2.1 * a2, "activations: %zu bytes at T=4096, %zu at T=2048 (ratio %.3f > 2.1)", a4,
          a2, (double)a4 / a2);
    CHECK(a4 - a2 == 2 * (a2 - a1),
          "activations not linear in T: %zu, %zu, %zu bytes at T = 1024, 2048, 4096", a1, a2, a4);
    /* the per-thread tiles are sized by (C, H, threads) only: a score tile, an output tile
     * and two vectors, with at most 16 floats of alignment padding each */
    size_t one = attention_tiled_scratch_floats(256, 8, 1);
    CHECK(one <= (size_t)ATT_TILE_Q * ATT_TILE_K + (size_t)ATT_TILE_Q * 32 + 2 * ATT_TILE_Q + 64,
          "tile scratch: %zu floats per thread", one);
    CHECK(attention_tiled_scratch_floats(256, 8, 4) == 4 * one, "tile scratch is not per thread");
}
