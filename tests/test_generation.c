/* test_generation.c — the paged KV cache against the full forward, the pool, sampling, NBCE.
 *
 * The cache's promise: a prompt fed once and then continued token by token (or in chunks) gives,
 * at every position, the log-probabilities that one forward over the whole sequence gives there.
 * Checked for every registered position method the cache accepts, both output layers and
 * n_kv_heads 1, 2 and H, with sequences crossing block boundaries, two sequences of different
 * lengths in one batch, and blocks released and reused between them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/config/config.h"
#include "../src/generation.h"
#include "../src/model.h"
#include "../src/util/util.h"
#include "gradcheck.h"
#include "test.h"

enum { V = 37, N = 150, PROMPT = 70, MAXT = 160 }; /* N > 2 KV_BLOCK: three blocks */

static int cache_model(Model *m, Config *cfg, const char *method, const char *output, int hkv) {
    char text[1024], err[512];
    /* learned positions: a table for every position the test reaches */
    const char *table = strcmp(method, "learned") ? "" : ", \"max_positions\": 160";
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 2, \"d_model\": 16, \"n_heads\": 4, \"n_kv_heads\": %d, "
             "\"d_ff\": 24, \"dropout\": 0, \"position\": {\"type\": \"%s\"%s}, "
             "\"output\": %s}, \"train\": {\"seq_len\": 64}}",
             hkv, method, table, output);
    if (config_from_text(cfg, text, "test", err, sizeof err)) {
        CHECK(0, "%s: %s", method, err);
        return 0;
    }
    model_create(m, cfg, V, 1, MAXT, 0);
    model_init(m, 11);
    for (int k = 0; k < m->spec.pt.n; k++) /* learnable position tensors away from their init */
        if (m->spec.pt.t[k].init.kind == INIT_POS)
            fill_random(m->weights.params + m->spec.pt.t[k].offset, m->spec.pt.t[k].numel, 0.5f,
                        40 + k);
    return 1;
}

/* lp (n, V) = log-probabilities at every position of one full forward over ids[0..n). */
static void full_logprobs(Model *m, const int32_t *ids, int n, float *lp) {
    const Pass p = {.B = 1, .T = n};
    model_forward(m, &p, ids);
    for (int t = 0; t < n; t++) model_logprobs(m, &p, (size_t)t, lp + (size_t)t * V);
}

static double rel_diff(const float *a, const float *b, int n) {
    double worst = 0.0;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]) / fmax(1.0, fabs(b[i])));
    return worst;
}

static void token_ids(int32_t *ids, int n, uint64_t seed) {
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(hash64(seed + (uint64_t)i) % V);
}

/* Sequence `seq` of the pool gets ids[0..n): PROMPT tokens at once, then `chunk` at a time
 * (1: decode steps); each position's log-probabilities against want. */
static double feed_and_compare(Model *m, KvPool *pool, int seq, const int32_t *ids, int n,
                               int chunk, const float *want) {
    char err[256];
    float *lp = xcalloc(V, sizeof *lp);
    double worst = 0.0;
    int t = PROMPT < n ? PROMPT : n;
    if (gen_feed(m, pool, 0, seq, ids, t, lp, err, sizeof err)) CHECK(0, "%s", err);
    worst = fmax(worst, rel_diff(lp, want + (size_t)(t - 1) * V, V));
    while (t < n) {
        const int c = n - t < chunk ? n - t : chunk;
        if (gen_feed(m, pool, 0, seq, ids + t, c, lp, err, sizeof err)) CHECK(0, "%s", err);
        t += c;
        worst = fmax(worst, rel_diff(lp, want + (size_t)(t - 1) * V, V));
    }
    free(lp);
    return worst;
}

/* Two sequences of lengths n0 > n1 decoded as one batch after their prompts, with a third
 * sequence released before them so that their blocks are reused ones. */
static double batch_compare(Model *m, KvPool *pool, const int32_t *a, int na, const int32_t *b,
                            int nb, const float *want_a, const float *want_b) {
    char err[256];
    float *lp = xcalloc(2 * V, sizeof *lp);
    const int seqs[2] = {0, 1}, pa = na - 40, pb = nb - 40;
    double worst = 0.0;
    if (gen_feed(m, pool, 0, 0, a, pa, lp, err, sizeof err) ||
        gen_feed(m, pool, 0, 1, b, pb, lp + V, err, sizeof err))
        CHECK(0, "%s", err);
    worst = fmax(worst, rel_diff(lp, want_a + (size_t)(pa - 1) * V, V));
    worst = fmax(worst, rel_diff(lp + V, want_b + (size_t)(pb - 1) * V, V));
    for (int k = 0; k < 40; k++) {
        const int32_t next[2] = {a[pa + k], b[pb + k]};
        if (gen_step(m, pool, 0, seqs, next, 2, lp, err, sizeof err)) CHECK(0, "%s", err);
        worst = fmax(worst, rel_diff(lp, want_a + (size_t)(pa + k) * V, V));
        worst = fmax(worst, rel_diff(lp + V, want_b + (size_t)(pb + k) * V, V));
    }
    free(lp);
    return worst;
}

static void check_cache(const char *method, const char *output, int hkv) {
    Model m;
    Config cfg;
    if (!cache_model(&m, &cfg, method, output, hkv)) return;
    const PosMethod *pm = m.spec.pos;
    if (pm->cache_refusal && pm->cache_refusal(&cfg)) { /* tested in cache_refusals */
        model_free(&m);
        config_free(&cfg);
        return;
    }
    int32_t a[N], b[N - 37];
    token_ids(a, N, 1);
    token_ids(b, N - 37, 2);
    float *want_a = xcalloc((size_t)N * V, sizeof(float)), *want_b = xcalloc((size_t)N * V, 4);
    full_logprobs(&m, a, N, want_a);
    full_logprobs(&m, b, N - 37, want_b);
    KvPool pool;
    kv_pool_init(&pool, m.spec.L, m.spec.Hkv, m.spec.D, 12, 3);
    double d1 = feed_and_compare(&m, &pool, 2, a, N, 1, want_a);
    kv_release(&pool, 2);
    double d2 = feed_and_compare(&m, &pool, 2, a, N, 13, want_a);
    kv_release(&pool, 2);
    double d3 = batch_compare(&m, &pool, a, N, b, N - 37, want_a, want_b);
    CHECK(d1 <= 1e-5, "%s, %s output, %d kv heads: prompt + decode steps differ from the full "
          "forward by %.3g (relative)", method, output, hkv, d1);
    CHECK(d2 <= 1e-5, "%s, %s output, %d kv heads: prompt + chunks of 13 differ by %.3g", method,
          output, hkv, d2);
    CHECK(d3 <= 1e-5, "%s, %s output, %d kv heads: a batch of two lengths differs by %.3g",
          method, output, hkv, d3);
    kv_pool_free(&pool);
    free(want_a);
    free(want_b);
    model_free(&m);
    config_free(&cfg);
}

TEST(test_kv_cache_matches_full_forward) {
    static const char *const outputs[] = {
        "{\"type\": \"full\"}",
        "{\"type\": \"adaptive\", \"cutoffs\": [10, 20], \"factor\": 2}",
    };
    const int hkvs[] = {1, 2, 4};
    for (int i = 0; i < pos_count(); i++)
        for (int o = 0; o < 2; o++)
            for (int k = 0; k < 3; k++) check_cache(pos_at(i)->name, outputs[o], hkvs[k]);
}
