/* test_generation.c — the paged KV cache against the full forward, the pool, sampling, NBCE.
 *
 * The cache's promise: a prompt fed once and then continued token by token (or in chunks) gives,
 * at every position, the log-probabilities that one forward over the whole sequence gives there.
 * Checked for every registered position method the cache accepts, both output layers and
 * n_kv_heads 1, 2 and H, with sequences crossing block boundaries, two sequences of different
 * lengths in one batch, and blocks released and reused between them. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/config/config.h"
#include "../src/evaluate.h"
#include "../src/generation.h"
#include "../src/io/safetensors.h"
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
    model_logprobs(m, &p, 0, (size_t)n, lp);
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
    kv_pool_init(&pool, m.spec.L, m.spec.Hkv, m.spec.D, KV_F32, 12, 3);
    double d1 = feed_and_compare(&m, &pool, 2, a, N, 1, want_a);
    kv_release(&pool, 2);
    double d2 = feed_and_compare(&m, &pool, 2, a, N, 13, want_a);
    kv_release(&pool, 2);
    double d3 = batch_compare(&m, &pool, a, N, b, N - 37, want_a, want_b);
    CHECK(d1 <= 1e-5,
          "%s, %s output, %d kv heads: prompt + decode steps differ from the full "
          "forward by %.3g (relative)",
          method, output, hkv, d1);
    CHECK(d2 <= 1e-5, "%s, %s output, %d kv heads: prompt + chunks of 13 differ by %.3g", method,
          output, hkv, d2);
    CHECK(d3 <= 1e-5, "%s, %s output, %d kv heads: a batch of two lengths differs by %.3g", method,
          output, hkv, d3);
    kv_pool_free(&pool);
    /* a bf16 cache: the decode steps read rounded keys and values, so they move a little */
    kv_pool_init(&pool, m.spec.L, m.spec.Hkv, m.spec.D, KV_BF16, 12, 3);
    const double d4 = feed_and_compare(&m, &pool, 0, a, N, 1, want_a);
    CHECK(d4 > 0 && d4 <= 1e-3,
          "%s, %s output, %d kv heads: a bf16 cache differs from the full forward by %.3g "
          "(expected 0 < x <= 1e-3)",
          method, output, hkv, d4);
    kv_pool_free(&pool);
    free(want_a);
    free(want_b);
    model_free(&m);
    config_free(&cfg);
}

/* --max-context W: with one layer, the keys and values are functions of their own token and
 * position only, so the window's answer at position i is the last row of a forward over the W
 * tokens i-W+1..i placed at their absolute positions (Pass.pos0). The prompt is longer than the
 * window and the sequence crosses blocks, so blocks are evicted on the way. */
static void check_window(const char *method) {
    enum { W = 20 };
    Model m;
    Config cfg;
    char text[512], err[256];
    const char *table = strcmp(method, "learned") ? "" : ", \"max_positions\": 160";
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 1, \"d_model\": 16, \"n_heads\": 4, \"d_ff\": 24, "
             "\"dropout\": 0, \"position\": {\"type\": \"%s\"%s}}, \"train\": {\"seq_len\": 64}}",
             method, table);
    if (config_from_text(&cfg, text, "test", err, sizeof err)) {
        CHECK(0, "%s: %s", method, err);
        return;
    }
    if (cfg.model.pos_method->cache_refusal && cfg.model.pos_method->cache_refusal(&cfg)) {
        config_free(&cfg);
        return;
    }
    model_create(&m, &cfg, V, 1, MAXT, 0);
    model_init(&m, 5);
    int32_t ids[N];
    token_ids(ids, N, 3);
    KvPool pool;
    kv_pool_init(&pool, 1, m.spec.Hkv, m.spec.D, KV_F32, 4, 1);
    float *lp = xcalloc(V, sizeof *lp), *want = xcalloc(V, sizeof *want);
    double worst = 0.0;
    if (gen_feed(&m, &pool, W, 0, ids, PROMPT, lp, err, sizeof err)) CHECK(0, "%s", err);
    for (int t = PROMPT - 1; t < N; t++) {
        if (t >= PROMPT && gen_feed(&m, &pool, W, 0, ids + t, 1, lp, err, sizeof err))
            CHECK(0, "%s", err);
        const Pass p = {.B = 1, .T = W, .pos0 = t - W + 1};
        model_forward(&m, &p, ids + t - W + 1);
        model_logprobs(&m, &p, W - 1, 1, want);
        worst = fmax(worst, rel_diff(lp, want, V));
    }
    CHECK(worst <= 1e-5 && pool.peak_used <= 2,
          "%s: a window of %d differs from forwards over "
          "the last %d tokens by %.3g (peak %d blocks)",
          method, W, W, worst, pool.peak_used);
    free(lp), free(want);
    kv_pool_free(&pool);
    model_free(&m);
    config_free(&cfg);
}

TEST(test_kv_window_matches_forwards_over_the_window) {
    for (int i = 0; i < pos_count(); i++) check_window(pos_at(i)->name);
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

/* ---- greedy generation against the PyTorch reference (tests/ref/ref_generate.py) ---- */

/* An evaluation model holding the parameters of a tests/ref fixture, for positions below T. */
static int fixture_model(Model *m, Config *cfg, const char *file, int T) {
    char path[512], err[512];
    snprintf(path, sizeof path, "tests/ref/fixtures/%s", file);
    StFile *f = st_open(path, err, sizeof err);
    const char *config = f ? st_meta(f, "config") : NULL, *vocab = f ? st_meta(f, "vocab_size") : 0;
    int ok = config && vocab && !config_from_text(cfg, config, path, err, sizeof err);
    CHECK(ok, "%s: %s", path, f ? "no config, vocab_size, or a bad config" : err);
    if (ok) {
        model_create(m, cfg, atoi(vocab), 1, T, 0);
        for (int k = 0; k < m->spec.pt.n; k++) {
            const TensorSpec *t = &m->spec.pt.t[k];
            const StTensor *x = st_get(f, t->name);
            ok = ok && x && st_numel(x) == t->numel;
            if (ok) memcpy(m->weights.params + t->offset, x->data, t->numel * sizeof(float));
        }
        CHECK(ok, "%s: a tensor of the model is missing or has another size", path);
        if (!ok) model_free(m), config_free(cfg);
    }
    if (f) st_close(f);
    return ok;
}

static int json_ints(const cJSON *a, int32_t *out, int max) {
    int n = 0;
    for (const cJSON *x = a ? a->child : NULL; x && n < max; x = x->next) out[n++] = x->valueint;
    return n;
}

static void check_greedy_case(const cJSON *c) {
    const char *file = cJSON_GetObjectItem(c, "checkpoint")->valuestring;
    int32_t prompt[64], want[64];
    const int P = json_ints(cJSON_GetObjectItem(c, "prompt"), prompt, 64),
              G = json_ints(cJSON_GetObjectItem(c, "generated"), want, 64);
    const cJSON *lps = cJSON_GetObjectItem(c, "logprobs");
    Model m;
    Config cfg;
    if (!fixture_model(&m, &cfg, file, P + G)) return;
    const int V = m.spec.V;
    KvPool pool;
    kv_pool_init(&pool, m.spec.L, m.spec.Hkv, m.spec.D, KV_F32, 4, 1);
    float *lp = xcalloc((size_t)V, sizeof *lp);
    SampleScratch sc;
    sample_scratch_alloc(&sc, V);
    const Sampler greedy = {.greedy = 1};
    char err[256];
    int same = 1, seq = 0;
    double worst = 0.0;
    if (gen_feed(&m, &pool, 0, 0, prompt, P, lp, err, sizeof err)) CHECK(0, "%s", err);
    const cJSON *lpw = lps->child;
    for (int g = 0; g < G && lpw; g++, lpw = lpw->next) {
        const int32_t id = sample_token(lp, V, &greedy, 0.0f, &sc);
        same = same && id == want[g];
        worst = fmax(worst, fabs(lp[id] - lpw->valuedouble) / fmax(1.0, fabs(lpw->valuedouble)));
        if (g + 1 < G && gen_step(&m, &pool, 0, &seq, &id, 1, lp, err, sizeof err))
            CHECK(0, "%s", err);
    }
    CHECK(same, "%s: greedy ids differ from the PyTorch reference's", file);
    CHECK(worst <= 1e-5, "%s: greedy log-probabilities differ from the reference's by %.3g", file,
          worst);
    sample_scratch_free(&sc);
    free(lp);
    kv_pool_free(&pool);
    model_free(&m);
    config_free(&cfg);
}

TEST(test_greedy_generation_matches_pytorch_reference) {
    size_t len;
    char *text = read_file("tests/ref/fixtures/generate.json", &len);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    CHECK(cases && cJSON_GetArraySize(cases) >= 6, "tests/ref/fixtures/generate.json: no cases");
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next) check_greedy_case(c);
    cJSON_Delete(root);
    free(text);
}

/* ---- the pool ---- */

TEST(test_kv_pool_grows_releases_and_refuses_when_exhausted) {
    KvPool p;
    char err[256] = "";
    kv_pool_init(&p, 2, 1, 4, KV_F32, 3, 2);
    CHECK(kv_reserve(&p, 0, 1, err, sizeof err) == 0 && p.seqs[0].n_blocks == 1 && p.n_free == 2,
          "one position takes one block");
    CHECK(kv_reserve(&p, 0, KV_BLOCK, err, sizeof err) == 0 && p.seqs[0].n_blocks == 1,
          "a full block needs no second one");
    CHECK(kv_reserve(&p, 0, KV_BLOCK + 1, err, sizeof err) == 0 && p.seqs[0].n_blocks == 2,
          "position KV_BLOCK crosses into a second block");
    /* the blocks are distinct memory: keys written at positions 0 and 64 stay apart */
    ((float *)kv_block_keys(&p, 0, 1, 0, 0))[3 * KV_BLOCK] = 1.0f;
    ((float *)kv_block_keys(&p, 0, 1, 0, KV_BLOCK))[3 * KV_BLOCK] = 2.0f;
    CHECK(((float *)kv_block_keys(&p, 0, 1, 0, 0))[3 * KV_BLOCK] == 1.0f, "blocks overlap");
    CHECK(kv_reserve(&p, 1, 2 * KV_BLOCK, err, sizeof err) == -1 && p.seqs[1].n_blocks == 0 &&
              p.n_free == 1 && strstr(err, "KV cache exhausted"),
          "two blocks from one free: refused, nothing taken (%s)", err);
    CHECK(kv_reserve(&p, 1, KV_BLOCK, err, sizeof err) == 0 && p.n_free == 0, "the last block");
    CHECK(p.peak_used == 3, "peak use %d, expected 3", p.peak_used);
    const int second = p.seqs[0].table[1];
    p.seqs[0].len = KV_BLOCK + 1;
    kv_evict_before(&p, 0, KV_BLOCK + 1);
    CHECK(p.seqs[0].n_blocks == 1 && p.seqs[0].first_block == 1 && p.n_free == 1 &&
              ((float *)kv_block_keys(&p, 0, 1, 0, KV_BLOCK))[3 * KV_BLOCK] == 2.0f,
          "a window past position 64 returns block 0 and keeps block 1 where it was");
    kv_release(&p, 0);
    CHECK(p.n_free == 2 && p.seqs[0].len == 0 && p.seqs[0].n_blocks == 0, "release returns all");
    CHECK(kv_reserve(&p, 0, 1, err, sizeof err) == 0 && p.seqs[0].table[0] == second,
          "the block released last is reused first");
    kv_pool_free(&p);
}

/* ---- the paged kernel and the cache dtypes ---- */

/* n positions of k and v heads in qkv (n, (H + 2 Hkv) D), stored one pass per position;
 * round: the k and v values rounded to bf16 first (for the f32 twin of a bf16 pool). */
static void store_rows(KvPool *pool, const float *qkv, int n, const AttnShape *s, int round) {
    const size_t ld = (size_t)(s->H + 2 * s->Hkv) * pool->D;
    float *row = xcalloc(ld, sizeof *row);
    int seq = 0, pos0 = 0;
    for (int t = 0; t < n; t++) {
        memcpy(row, qkv + (size_t)t * ld, ld * sizeof *row);
        for (size_t c = (size_t)s->H * pool->D; c < ld && round; c++)
            row[c] = bf16_to_float(bf16_round(row[c]));
        pos0 = t;
        const KvPass kv = {pool, &seq, &pos0, 0};
        kv_store(&kv, row, s);
    }
    pool->seqs[0].len = n;
    free(row);
}

/* out (H D) in double: query row i of qkv against keys lo..i of the same rows, causal softmax,
 * no position bias: the definition the paged kernel must match. */
static void dense_row(double *out, const float *qkv, int i, int lo, int H, int Hkv, int D) {
    const size_t ld = (size_t)(H + 2 * Hkv) * D;
    double *w = xcalloc((size_t)i + 1, sizeof *w);
    for (int h = 0; h < H; h++) {
        const int g = h / (H / Hkv);
        const float *q = qkv + (size_t)i * ld + (size_t)h * D;
        double mx = -INFINITY, sum = 0.0;
        for (int j = lo; j <= i; j++) {
            const float *k = qkv + (size_t)j * ld + (size_t)(H + g) * D;
            double x = 0.0;
            for (int d = 0; d < D; d++) x += (double)q[d] * k[d];
            w[j] = x / sqrt((double)D);
            mx = fmax(mx, w[j]);
        }
        for (int j = lo; j <= i; j++) sum += w[j] = exp(w[j] - mx);
        for (int d = 0; d < D; d++) {
            double o = 0.0;
            for (int j = lo; j <= i; j++)
                o += w[j] * qkv[(size_t)j * ld + (size_t)(H + Hkv + g) * D + d];
            out[(size_t)h * D + d] = o / sum;
        }
    }
    free(w);
}

/* D = 32 and 40 take the kernel's 32-wide register path (40 with a rest of 8), D = 4 only the
 * rest loop; 150 positions cross two block boundaries; windows start inside a block. */
TEST(test_paged_attention_matches_dense_and_bf16_equals_rounded_f32) {
    enum { H = 4, HKV = 2, T = 150 };
    static const int widths[] = {4, 32, 40};
    for (size_t w = 0; w < sizeof widths / sizeof *widths; w++) {
        const int D = widths[w];
        const size_t ld = (size_t)(H + 2 * HKV) * D;
        float *qkv = xcalloc((size_t)T * ld, sizeof *qkv), *o32 = xcalloc((size_t)H * D, 4),
              *o16 = xcalloc((size_t)H * D, 4), *ornd = xcalloc((size_t)H * D, 4);
        double *want = xcalloc((size_t)H * D, sizeof *want);
        fill_random(qkv, (size_t)T * ld, 2.0f, 77 + (uint64_t)D);
        KvPool f32, bf16, rnd;
        kv_pool_init(&f32, 1, HKV, D, KV_F32, 3, 1);
        kv_pool_init(&bf16, 1, HKV, D, KV_BF16, 3, 1);
        kv_pool_init(&rnd, 1, HKV, D, KV_F32, 3, 1);
        char err[256];
        if (kv_reserve(&f32, 0, T, err, sizeof err) || kv_reserve(&bf16, 0, T, err, sizeof err) ||
            kv_reserve(&rnd, 0, T, err, sizeof err))
            CHECK(0, "%s", err);
        const AttnShape s = {.B = 1, .T = 1, .C = H * D, .H = H, .Hkv = HKV};
        store_rows(&f32, qkv, T, &s, 0);
        store_rows(&bf16, qkv, T, &s, 0);
        store_rows(&rnd, qkv, T, &s, 1);
        static const int rows[][2] = {{0, 0}, {63, 0}, {64, 0}, {149, 0}, {149, 70}, {100, 37}};
        double worst = 0.0, bf16_vs_f32 = 0.0;
        int exact = 1;
        for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
            const int i = rows[r][0], lo = rows[r][1], seq = 0;
            const KvPass a = {&f32, &seq, &i, lo ? i - lo + 1 : 0};
            const KvPass b = {&bf16, &seq, &i, a.window}, c = {&rnd, &seq, &i, a.window};
            const float *q = qkv + (size_t)i * ld;
            attention_forward_paged(o32, q, &s, &a);
            attention_forward_paged(o16, q, &s, &b);
            attention_forward_paged(ornd, q, &s, &c);
            dense_row(want, qkv, i, lo, H, HKV, D);
            for (int x = 0; x < H * D; x++) {
                worst = fmax(worst, fabs(o32[x] - want[x]) / fmax(1.0, fabs(want[x])));
                bf16_vs_f32 = fmax(bf16_vs_f32, fabs(o16[x] - o32[x]));
                exact &= o16[x] == ornd[x];
            }
        }
        CHECK(worst <= 2e-6,
              "D = %d: the f32 paged kernel differs from the dense reference by "
              "%.3g (relative)",
              D, worst);
        CHECK(exact,
              "D = %d: the bf16 cache differs from an f32 cache holding the same values "
              "rounded to bf16",
              D);
        /* rounding to 8 significant bits moves outputs of size ~1 by ~1e-3, never by 0.05 */
        CHECK(bf16_vs_f32 > 0 && bf16_vs_f32 < 0.05,
              "D = %d: bf16 against f32 cache differs by %.3g (expected 0 < x < 0.05)", D,
              bf16_vs_f32);
        kv_pool_free(&f32), kv_pool_free(&bf16), kv_pool_free(&rnd);
        free(qkv), free(o32), free(o16), free(ornd), free(want);
    }
}

TEST(test_kv_dtype_store_and_names) {
    KvPool p;
    char err[64];
    kv_pool_init(&p, 1, 1, 2, KV_BF16, 1, 1);
    CHECK(p.elem_bytes == 2 && kv_reserve(&p, 0, 1, err, sizeof err) == 0, "a bf16 pool");
    void *k = kv_block_keys(&p, 0, 0, 0, 0);
    const float x = 1.0f + 1.0f / 256 + 1.0f / 512; /* between two bf16 values: rounds up */
    kv_put(&p, k, 5, x);
    CHECK(kv_get(&p, k, 5) == bf16_to_float(bf16_round(x)) && kv_get(&p, k, 5) != x &&
              kv_get(&p, k, 5) == 1.0f + 1.0f / 128,
          "bf16 storage rounds to nearest even: got %.9g", kv_get(&p, k, 5));
    kv_pool_free(&p);
    CHECK(kv_dtype_parse("f32") == KV_F32 && kv_dtype_parse("bf16") == KV_BF16 &&
              kv_dtype_parse("fp16") == -1 && !strcmp(kv_dtype_name(KV_BF16), "bf16"),
          "dtype names");
}

/* ---- sampling ---- */

/* logp of a hand-made distribution over 6 words */
static void hand_made(float *lp) {
    const double p[6] = {0.05, 0.4, 0.1, 0.3, 0.1, 0.05};
    for (int v = 0; v < 6; v++) lp[v] = (float)log(p[v]);
}

TEST(test_sampling_filters_on_hand_made_distributions) {
    float lp[6];
    hand_made(lp);
    SampleScratch s;
    sample_scratch_alloc(&s, 6);
    Sampler o = {.temperature = 1.0f, .top_k = 2, .top_p = 1.0f};
    int n = sample_filter(lp, 6, &o, &s);
    CHECK(n == 2 && s.idx[0] == 1 && s.idx[1] == 3 && fabs(s.prob[0] - 0.4 / 0.7) < 1e-6,
          "top-2 keeps words 1 and 3 renormalized (n %d, %d %d, %g)", n, s.idx[0], s.idx[1],
          s.prob[0]);
    o = (Sampler){.temperature = 1.0f, .top_p = 0.75f};
    n = sample_filter(lp, 6, &o, &s);
    /* 0.4 + 0.3 = 0.7 < 0.75, so the nucleus also takes a 0.1: the lower id, 2 */
    CHECK(n == 3 && s.idx[2] == 2 && fabs(s.prob[2] - 0.1 / 0.8) < 1e-6,
          "top-p 0.75 keeps 1, 3, 2 (n %d, third %d)", n, s.idx[2]);
    o = (Sampler){.temperature = 1.0f, .top_p = 0.7f};
    n = sample_filter(lp, 6, &o, &s);
    CHECK(n == 2, "top-p 0.7 is reached exactly by two words (n %d)", n);
    o = (Sampler){.temperature = 1.0f, .top_p = 1.0f};
    n = sample_filter(lp, 6, &o, &s);
    CHECK(n == 6 && fabs(s.prob[3] - 0.3) < 1e-6 && s.idx[3] == 3,
          "no filter: every word, its own probability, in id order");
    o.temperature = 2.0f;
    sample_filter(lp, 6, &o, &s);
    double z = 0.0;
    for (int v = 0; v < 6; v++) z += sqrt(exp(lp[v]));
    CHECK(fabs(s.prob[1] - sqrt(0.4) / z) < 1e-6, "temperature 2 takes the square roots");
    /* inverting the cumulative: u below 0.05 -> word 0, u in [0.05, 0.45) -> word 1 */
    o.temperature = 1.0f;
    CHECK(sample_token(lp, 6, &o, 0.01f, &s) == 0 && sample_token(lp, 6, &o, 0.3f, &s) == 1 &&
              sample_token(lp, 6, &o, 0.999f, &s) == 5,
          "the draw u picks the word whose cumulative interval holds it");
    const Sampler greedy = {.greedy = 1};
    CHECK(sample_token(lp, 6, &greedy, 0.99f, &s) == 1, "greedy takes the argmax");
    sample_scratch_free(&s);
}

TEST(test_sampling_is_seeded_and_tends_to_greedy) {
    enum { W = 500 };
    float lp[W];
    double z = 0.0;
    for (int v = 0; v < W; v++) z += exp(lp[v] = (float)(-0.01 * v + 0.3 * sin(v)));
    for (int v = 0; v < W; v++) lp[v] -= (float)log(z);
    SampleScratch s;
    sample_scratch_alloc(&s, W);
    const Sampler o = {.temperature = 0.9f, .top_k = 40, .top_p = 0.9f};
    int same = 1, distinct = 0, prev = -1;
    for (int i = 0; i < 50; i++) {
        const int a = sample_token(lp, W, &o, rng_uniform(7, (uint64_t)i), &s);
        same = same && a == sample_token(lp, W, &o, rng_uniform(7, (uint64_t)i), &s);
        distinct += a != prev;
        prev = a;
    }
    CHECK(same && distinct > 5, "the same draws give the same ids (%d changes in 50)", distinct);
    const int best = sample_token(lp, W, &(Sampler){.greedy = 1}, 0.0f, &s);
    const Sampler cold = {.temperature = 1e-3f, .top_p = 1.0f};
    int all_best = 1;
    for (int i = 0; i < 50; i++)
        all_best = all_best && sample_token(lp, W, &cold, rng_uniform(8, (uint64_t)i), &s) == best;
    CHECK(all_best, "temperature 1e-3 always draws the argmax %d", best);
    sample_scratch_free(&s);
}

/* ---- NBCE ---- */

TEST(test_nbce_combine_on_hand_made_distributions) {
    float a[3], b[3], u[3], out[3];
    const double pa[3] = {0.4, 0.3, 0.3}, pb[3] = {0.8, 0.1, 0.1}, pu[3] = {0.5, 0.25, 0.25};
    for (int v = 0; v < 3; v++)
        a[v] = (float)log(pa[v]), b[v] = (float)log(pb[v]), u[v] = (float)log(pu[v]);
    const float *lp[2] = {a, b};
    const int k = nbce_combine(out, lp, 2, u, 3, 0.25f);
    /* b has the lower entropy; (1.25 log pb - 0.25 log pu), renormalized */
    double want[3], sum = 0.0;
    for (int v = 0; v < 3; v++) sum += want[v] = exp(1.25 * log(pb[v]) - 0.25 * log(pu[v]));
    double worst = 0.0;
    for (int v = 0; v < 3; v++) worst = fmax(worst, fabs(out[v] - log(want[v] / sum)));
    CHECK(k == 1 && worst < 1e-6, "k* %d (expected 1), log-probabilities off by %.3g", k, worst);
    const float *one[1] = {a};
    nbce_combine(out, one, 1, u, 3, 0.0f);
    CHECK(rel_diff(out, a, 3) < 1e-6, "one chunk with beta 0 is that chunk's distribution");
    CHECK(fabs(logp_entropy(b, 3) - (-0.8 * log(0.8) - 0.2 * log(0.1))) < 1e-6, "entropy");
    /* a word the unconditional term rules out keeps the chunk's value; one the chunk rules out
     * stays out */
    const float cut_u[3] = {u[0], -INFINITY, u[2]}, cut_b[3] = {b[0], b[1], -INFINITY};
    const float *cb[1] = {cut_b};
    nbce_combine(out, cb, 1, cut_u, 3, 0.25f);
    CHECK(isfinite(out[1]) && out[2] == -INFINITY, "ruled-out words: %g %g", out[1], out[2]);
}

/* ---- NBCE evaluation ---- */

/* Accounting: every token once, window sums add up to the total. And with beta 0 and a chunk as
 * long as the context, NBCE's one chunk followed by the scored tokens is exactly the sliding
 * window, so both evaluations agree. */
TEST(test_nbce_eval_scores_every_token_once) {
    enum { NS = 300, W = 40, S = 8 };
    Model m;
    Config cfg;
    if (!cache_model(&m, &cfg, "alibi", "{\"type\": \"full\"}", 4)) return;
    /* larger weights than the init's, so the context changes the predictions visibly */
    for (size_t i = 0; i < m.spec.pt.total; i++) m.weights.params[i] *= 4.0f;
    int32_t ids[NS];
    token_ids(ids, NS, 9);
    const size_t nw = eval_window_count(NS, W, S);
    double win[64] = {0}, nll[W] = {0};
    size_t count[W] = {0};
    EvalPositions pos = {nll, count, win};
    CHECK(nw <= 64, "%zu windows", nw);
    EvalResult r = eval_nbce(&m, ids, NS, W, S, 10, 0.25f, 0, &pos, NULL, NULL);
    double sum = 0.0;
    size_t counted = 0;
    for (size_t k = 0; k < nw; k++) sum += win[k];
    for (int p = 0; p < W; p++) counted += count[p];
    CHECK(r.tokens == NS && counted == NS && r.segments == nw,
          "NBCE scored %zu tokens (%zu by position) in %zu windows; the stream has %d in %zu",
          r.tokens, counted, r.segments, NS, nw);
    CHECK(fabs(sum - r.nll) <= 1e-9 * fabs(r.nll), "window sums %.9g, total %.9g", sum, r.nll);
    const EvalResult one = eval_nbce(&m, ids, NS, W, S, W - S, 0.0f, 0, NULL, NULL, NULL),
                     sl = eval_sliding(&m, ids, NS, W, S, 0, NULL, NULL, NULL);
    CHECK(fabs(one.nll - sl.nll) <= 1e-5 * sl.nll && one.tokens == sl.tokens,
          "one chunk, beta 0: NBCE nll %.9g, sliding %.9g", one.nll, sl.nll);
    /* the equality above is not vacuous: real chunking moves the sum well past its tolerance */
    CHECK(fabs(r.nll - sl.nll) > 1e-4 * sl.nll,
          "chunks of 10 should differ from sliding: %.9g vs %.9g", r.nll, sl.nll);
    model_free(&m);
    config_free(&cfg);
}
