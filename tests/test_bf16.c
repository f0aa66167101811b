/* test_bf16.c — float32 <-> bfloat16 conversion on hand-picked bit patterns: ties to even in
 * both directions, just above and below a tie, subnormals, the largest finite values and their
 * overflow to infinity, ±0, ±inf, NaN (quiet, sign kept, never rounded into infinity); bf16 ->
 * float32 exact for every one of the 65,536 patterns; the bulk converters equal the scalar ones
 * on every thread count's split; gemm.c's oneDNN products (float32 and bf16) within bounds
 * derived from float32's and bf16's significands (the derivation is above the check), for every
 * transpose pair, strided, with alpha and +=; bf16 weights read from the parameters' copy. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/config/config.h"
#include "../src/model.h"
#include "../src/ops/ops.h"
#include "../src/util/util.h"
#include "gradcheck.h"
#include "test.h"

static float bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

TEST(test_bf16_round_to_nearest_even) {
    static const struct {
        uint32_t in;
        uint16_t want;
        const char *what;
    } cases[] = {
        {0x3f800000, 0x3f80, "1.0 exact"},
        {0x3f808000, 0x3f80, "tie below an even kept half stays"},
        {0x3f818000, 0x3f82, "tie above an odd kept half rounds up to even"},
        {0x3f808001, 0x3f81, "just above a tie rounds up"},
        {0x3f807fff, 0x3f80, "just below a tie rounds down"},
        {0xbf808001, 0xbf81, "negative: magnitude rounds like the positive"},
        {0x00000001, 0x0000, "smallest subnormal rounds to +0"},
        {0x00008000, 0x0000, "subnormal tie to even (0)"},
        {0x00018000, 0x0002, "subnormal tie to even (2)"},
        {0x007fffff, 0x0080, "largest subnormal rounds up to the smallest normal"},
        {0x80000000, 0x8000, "-0 keeps its sign"},
        {0x7f7f7fff, 0x7f7f, "largest finite bf16 from below"},
        {0x7f7f8000, 0x7f80, "a tie above the largest finite bf16 overflows to +inf"},
        {0x7f7fffff, 0x7f80, "FLT_MAX rounds to +inf"},
        {0xff7fffff, 0xff80, "-FLT_MAX rounds to -inf"},
        {0x7f800000, 0x7f80, "+inf"},
        {0xff800000, 0xff80, "-inf"},
        {0x7fc00000, 0x7fc0, "quiet NaN"},
        {0x7f800001, 0x7fc0, "signalling NaN with a low payload stays NaN (not inf)"},
        {0x7fffffff, 0x7fff, "NaN with every payload bit does not carry into the sign"},
        {0xff800001, 0xffc0, "negative NaN keeps its sign"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = bf16_round(bits(cases[i].in));
        CHECK(got == cases[i].want, "%s: 0x%08x -> 0x%04x, expected 0x%04x", cases[i].what,
              cases[i].in, got, cases[i].want);
    }
}

TEST(test_bf16_to_float_exact_and_round_trips) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float x = bf16_to_float((uint16_t)h);
        uint32_t u;
        memcpy(&u, &x, sizeof u);
        bad += u != h << 16;
        /* every bf16 value is a float32 that rounds to itself (NaN patterns: to a NaN) */
        uint16_t back = bf16_round(x);
        bad += isnan(x) ? !isnan(bf16_to_float(back)) : back != h;
    }
    CHECK(bad == 0, "%d of 65,536 bf16 patterns not exact or not a round trip", bad);
}

TEST(test_bf16_bulk_equals_scalar) {
    const size_t n = 100003; /* not a multiple of any vector width */
    float *x = xcalloc(n, sizeof *x), *y = xcalloc(n, sizeof *y);
    uint16_t *h = xcalloc(n, sizeof *h);
    for (size_t i = 0; i < n; i++) x[i] = bits((uint32_t)hash64(i));
    bf16_from_f32(h, x, n);
    bf16_to_f32(y, h, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t want = bf16_round(x[i]);
        float back = bf16_to_float(want);
        bad += h[i] != want || memcmp(&y[i], &back, sizeof back) != 0;
    }
    CHECK(bad == 0, "%zu of %zu entries differ from the scalar conversion", bad, n);
    free(x), free(y), free(h);
}

/* ---- gemm.c on the oneDNN engines ---- */

/* A gemm operand: a (rows x cols) matrix stored with row stride ld (transposed operands are
 * stored (K, M) or (N, K) as cblas reads them). */
typedef struct {
    int rows, cols, ld;
    float *x;
} Operand;

static Operand operand(int rows, int cols, int pad, float *base, size_t *used, unsigned seed) {
    Operand o = {rows, cols, cols + pad, base + *used};
    fill_random(o.x, (size_t)rows * o.ld, 1.0f, seed);
    *used += (size_t)rows * o.ld;
    return o;
}

/* op(X)[i][k] of an operand stored as cblas reads it */
static double at(const Operand *o, int t, int i, int k, int bf16) {
    float v = t ? o->x[(size_t)k * o->ld + i] : o->x[(size_t)i * o->ld + k];
    return bf16 ? bf16_to_float(bf16_round(v)) : v;
}

/* Error bounds, per entry, with S = sum_k |a_k b_k| (computed in double):
 * - float32 engine, and bf16 against the exact product of the same bf16-rounded inputs: in
 *   bf16 each a_k b_k has at most 16 significant bits, so it is exact in float32; the K-term
 *   float32 sum (vdpbf16ps adds two products into the accumulator per instruction, and oneDNN
 *   may add partial sums of blocks of K: at most 2K roundings on any path) is within
 *   gamma_2K S, gamma_n = n u / (1 - n u), u = 2^-24; alpha != 1 adds one rounding of |alpha S|;
 * - bf16 against the exact product of the float32 inputs before rounding: rounding to bf16 (8
 *   significant bits, unit roundoff 2^-8) changes each term by a relative 2 * 2^-8 + 2^-16 at
 *   most, so the bound adds (2^-7 + 2^-16) S.
 * The inputs are normal floats of modest size, so vdpbf16ps's flushing of subnormals does not
 * enter. */
static double gamma_n(double n) {
    double u = ldexp(1.0, -24);
    return n * u / (1.0 - n * u);
}

/* One product C = alpha op(A) op(B) + beta C with padded strides, checked entry by entry. */
static void check_gemm(Gemm *g, int bf16, int M, int N, int K, int ta, int tb, float alpha,
                       float beta) {
    size_t used = 0,
           total = (size_t)(M + 3) * (K + 3) + (size_t)(K + 3) * (N + 3) + (size_t)M * (N + 2);
    float *buf = xcalloc(total, sizeof *buf);
    Operand A = operand(ta ? K : M, ta ? M : K, 3, buf, &used, 11u + (unsigned)(ta + 2 * tb));
    Operand B = operand(tb ? N : K, tb ? K : N, 1, buf, &used, 23u + (unsigned)K);
    Operand Cm = operand(M, N, 2, buf, &used, 5);
    size_t nc = (size_t)M * Cm.ld;
    float *c0 = xcalloc(nc, sizeof *c0);
    memcpy(c0, Cm.x, nc * sizeof *c0);
    gemm(g, ta, tb, M, N, K, alpha, A.x, A.ld, B.x, B.ld, beta, Cm.x, Cm.ld);
    double worst_same = 0.0, worst_f32 = 0.0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double same = 0.0, f32 = 0.0, S = 0.0;
            for (int k = 0; k < K; k++) {
                double t = at(&A, ta, i, k, bf16) * at(&B, !tb, j, k, bf16);
                same += t, S += fabs(t), f32 += at(&A, ta, i, k, 0) * at(&B, !tb, j, k, 0);
            }
            double base = beta * c0[(size_t)i * Cm.ld + j], got = Cm.x[(size_t)i * Cm.ld + j];
            double exact = base + alpha * same, exact32 = base + alpha * f32;
            /* alpha's rounding, and the accumulated C's one more rounding of a value of size |C| */
            double slack =
                ldexp(fabs(alpha * S), -24) + (beta != 0.0f ? ldexp(fabs(exact), -23) : 0);
            double S_a = fabs(alpha) * S;
            worst_same = fmax(worst_same, fabs(got - exact) / (gamma_n(2.0 * K) * S_a + slack));
            if (bf16)
                worst_f32 =
                    fmax(worst_f32,
                         fabs(got - exact32) /
                             ((ldexp(1.0, -7) + ldexp(1.0, -16) + gamma_n(2.0 * K)) * S_a + slack));
        }
    CHECK(worst_same <= 1.0, "%s %dx%dx%d ta %d tb %d alpha %g beta %g: %.3g of the bound%s",
          bf16 ? "bf16" : "f32", M, N, K, ta, tb, alpha, beta, worst_same,
          bf16 ? " against exact bf16 inputs" : "");
    CHECK(worst_f32 <= 1.0, "bf16 %dx%dx%d ta %d tb %d: %.3g of the bound against float32 inputs",
          M, N, K, ta, tb, worst_f32);
    /* the padding between rows of C is never written */
    int pad_ok = 1;
    for (int i = 0; i < M; i++)
        for (int j = N; j < Cm.ld; j++)
            pad_ok &= Cm.x[(size_t)i * Cm.ld + j] == c0[(size_t)i * Cm.ld + j];
    CHECK(pad_ok, "%dx%dx%d: gemm wrote into C's row padding", M, N, K);
    free(buf), free(c0);
}

/* Every transpose pair, alpha 1 and not, beta 0 and 1, with strided operands, on one engine;
 * then calling a shape again creates no primitive. */
static void check_engine(GemmEngine e) {
    Gemm *g = gemm_create(e, NULL, NULL, 0);
    const int shapes[][3] = {{37, 45, 300}, {64, 256, 1024}, {130, 33, 7}};
    int n = 0;
    for (int s = 0; s < 3; s++)
        for (int t = 0; t < 4; t++)
            for (int v = 0; v < 2; v++, n++)
                check_gemm(g, e == GEMM_ONEDNN_BF16, shapes[s][0], shapes[s][1], shapes[s][2],
                           t & 1, t >> 1, v ? 0.25f : 1.0f, v ? 1.0f : 0.0f);
    int before = gemm_primitives(g);
    check_gemm(g, e == GEMM_ONEDNN_BF16, 37, 45, 300, 0, 0, 1.0f, 0.0f);
    CHECK(before == n && gemm_primitives(g) == n, "primitive cache: %d then %d, expected %d",
          before, gemm_primitives(g), n);
    gemm_free(g);
}

TEST(test_gemm_onednn_f32_within_derived_bounds) {
    check_engine(GEMM_ONEDNN_F32);
}

TEST(test_gemm_bf16_within_derived_bounds) {
    if (!bf16_cpu_supported()) {
        SKIP("this CPU has no AVX512-BF16: the bf16 products are not checked");
        return;
    }
    check_engine(GEMM_ONEDNN_BF16);
}

/* An input inside the parameters is read from their bf16 copy, not rounded from the float32
 * values: with a copy that holds 2 x params the product doubles; outside them it does not. */
TEST(test_gemm_bf16_reads_the_parameters_copy) {
    if (!bf16_cpu_supported()) {
        SKIP("this CPU has no AVX512-BF16: the bf16 products are not checked");
        return;
    }
    enum { M = 5, N = 6, K = 8 };
    float params[N * K + 4], x[M * K], outside[N * K], c[M * N], c2[M * N];
    uint16_t params16[N * K + 4];
    fill_random(params, N * K + 4, 1.0f, 3), fill_random(x, M * K, 1.0f, 4);
    for (int i = 0; i < N * K + 4; i++) params16[i] = bf16_round(2.0f * params[i]);
    memcpy(outside, params + 4, sizeof outside);
    Gemm *g = gemm_create(GEMM_ONEDNN_BF16, params, params16, N * K + 4);
    gemm(g, 0, 1, M, N, K, 1.0f, x, K, params + 4, K, 0.0f, c, N);
    gemm(g, 0, 1, M, N, K, 1.0f, x, K, outside, K, 0.0f, c2, N);
    int bad = 0;
    for (int i = 0; i < M * N; i++) bad += c[i] != 2.0f * c2[i];
    CHECK(bad == 0, "%d of %d entries are not twice the product of the float32 weights", bad,
          M * N);
    gemm_free(g);
}

/* gemm_rows1_bf16 (generation's --weights-dtype bf16) needs no bf16 instructions: a one-row
 * product with weights inside the parameters equals, within float32 summation error, the exact
 * product with the bf16-rounded weights (each term is exact in float32 as above; K = 300 leaves
 * a vector remainder); bias accumulation (beta 1) is kept; products of two rows, and weights
 * outside the parameters, stay on the float32 path. */
TEST(test_gemm_one_row_reads_bf16_weights) {
    enum { N = 7, K = 300 };
    float *params = xcalloc(N * K + 4, sizeof *params), x[2 * K], y[2 * N], y32[2 * N];
    uint16_t *params16 = xcalloc(N * K + 4, sizeof *params16);
    fill_random(params, N * K + 4, 1.0f, 5), fill_random(x, 2 * K, 1.0f, 6);
    bf16_from_f32(params16, params, N * K + 4);
    Gemm *g = gemm_create(GEMM_OPENBLAS, params, NULL, N * K + 4);
    gemm_rows1_bf16(g, params16);
    const float *w = params + 4;
    for (int n = 0; n < N; n++) y[n] = 0.5f; /* a bias, accumulated with beta 1 */
    gemm(g, 0, 1, 1, N, K, 2.0f, x, K, w, K, 1.0f, y, N);
    double worst = 0.0;
    int rounded = 0;
    for (int n = 0; n < N; n++) {
        double e = 0.0, e32 = 0.0, S = 0.0;
        for (int k = 0; k < K; k++) {
            const double b = bf16_to_float(params16[4 + (size_t)n * K + k]);
            e += x[k] * b, e32 += x[k] * (double)w[(size_t)n * K + k], S += fabs(x[k] * b);
        }
        worst = fmax(worst, fabs(y[n] - (0.5 + 2.0 * e)) / ((2 * gamma_n(2 * K) + 1e-7) * 2 * S));
        rounded += fabs(y[n] - (0.5 + 2.0 * e32)) > fabs(y[n] - (0.5 + 2.0 * e));
    }
    CHECK(worst <= 1.0, "one row, bf16 weights: error %.3g of the float32 summation bound", worst);
    CHECK(rounded == N, "only %d of %d entries are closer to the bf16 weights' product", rounded,
          N);
    gemm(g, 0, 1, 2, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
    gemm(NULL, 0, 1, 2, N, K, 1.0f, x, K, w, K, 0.0f, y32, N);
    CHECK(!memcmp(y, y32, sizeof y), "two rows must stay on the float32 product");
    gemm_free(g);
    free(params), free(params16);
}

/* ---- whole models in bf16 ---- */

/* Loss and every gradient of the model `extra` describes, trained one micro-batch with the
 * train keys `train` (precision, engine) from the same weights (seed 3): *loss, grads
 * (pt.total floats, caller frees) and *prims, the oneDNN primitives the pass created (0 on
 * OpenBLAS). */
static float *model_grads(const char *extra, const char *train, double *loss, size_t *n,
                          int *prims) {
    char text[640], err[512];
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 2, \"d_model\": 32, \"n_heads\": 4, \"d_ff\": 64, "
             "\"dropout\": 0, \"init_std\": 0.1%s}, \"train\": {%s}}",
             extra, train);
    Config cfg;
    if (config_from_text(&cfg, text, "test", err, sizeof err)) {
        CHECK(0, "%s: %s", text, err);
        return NULL;
    }
    const int B = 2, T = 40, V = 50, N = B * T;
    Model m;
    model_create(&m, &cfg, V, B, T, 1);
    model_init(&m, 3);
    int32_t in[80], tg[80];
    for (int i = 0; i < N; i++)
        in[i] = (int32_t)(hash64(i) % V), tg[i] = (int32_t)(hash64(i + 9) % V);
    const Pass p = {.B = B, .T = T, .train = 1, .key = 1};
    model_forward(&m, &p, in);
    *loss = model_backward(&m, &p, in, tg, 1.0f / N) / N;
    *n = m.spec.pt.total;
    *prims = gemm_primitives(m.state.gemm);
    float *g = xcalloc(*n, sizeof *g);
    memcpy(g, m.weights.grads, *n * sizeof *g);
    model_free(&m);
    config_free(&cfg);
    return g;
}

/* The model variant k of 0..pos_count(): a position method, or (k = pos_count()) the
 * adaptive input and softmax. */
static void variant(char *extra, size_t size, int k) {
    if (k < pos_count())
        snprintf(extra, size, ", \"position\": {\"type\": \"%s\"}", pos_at(k)->name);
    else
        snprintf(extra, size,
                 ", \"output\": {\"type\": \"adaptive\", \"cutoffs\": [10, 30], \"factor\": 2}");
}

/* Every variant's loss and gradient with the train keys `train`, against OpenBLAS float32:
 * the gradient cosine is at least min_cos and the loss within rel_loss, and oneDNN really ran
 * (it created primitives; its float32 gradients can equal OpenBLAS's bit for bit on a host
 * where both sum these short products in the same order). */
static void engine_follows_fp32(const char *train, double min_cos, double rel_loss) {
    for (int k = 0; k <= pos_count(); k++) {
        char extra[256];
        variant(extra, sizeof extra, k);
        double l32, l;
        size_t n;
        int prims32, prims;
        float *g32 = model_grads(extra, "\"precision\": \"fp32\"", &l32, &n, &prims32),
              *g = model_grads(extra, train, &l, &n, &prims);
        if (!g32 || !g) return;
        double dot = 0.0, a2 = 0.0, b2 = 0.0;
        for (size_t i = 0; i < n; i++)
            dot += (double)g32[i] * g[i], a2 += (double)g32[i] * g32[i], b2 += (double)g[i] * g[i];
        double cosine = dot / sqrt(a2 * b2);
        CHECK(cosine >= min_cos, "%s %s: gradient cosine %.8f against OpenBLAS fp32", train, extra,
              cosine);
        CHECK(fabs(l - l32) < rel_loss * l32, "%s %s: loss %.7f, %.7f in OpenBLAS fp32", train,
              extra, l, l32);
        CHECK(prims32 == 0 && prims > 0, "%s %s: %d oneDNN primitives, %d in OpenBLAS fp32", train,
              extra, prims, prims32);
        free(g32), free(g);
    }
}

/* Every registered position method and the adaptive output: the bf16 gradient points the way of
 * the float32 one (cosine >= 0.999, the bound) and the loss moves by less than 1% — bf16
 * rounds each product input by at most 2^-8 relative, so the logits move by about that much of
 * their spread, far below 1% of a loss near log V. */
TEST(test_bf16_model_gradients_follow_fp32) {
    if (!bf16_cpu_supported()) {
        SKIP("this CPU has no AVX512-BF16: bf16 models are not checked");
        return;
    }
    engine_follows_fp32("\"precision\": \"bf16\"", 0.999, 0.01);
}

/* oneDNN's float32 products differ from OpenBLAS's only in summation order: each product
 * within gamma_2K of its terms' magnitude (test_gemm_onednn_f32_within_derived_bounds), about
 * 1e-5 relative at K <= 256 here, so the gradients agree to a cosine of 1 - 1e-6 and the loss
 * to 1e-5. */
TEST(test_onednn_f32_model_gradients_match_openblas) {
    engine_follows_fp32("\"matmul\": \"onednn\"", 1.0 - 1e-6, 1e-5);
}
