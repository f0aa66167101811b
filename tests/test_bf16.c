/* test_bf16.c — float32 <-> bfloat16 conversion on hand-picked bit patterns: ties to even in
 * both directions, just above and below a tie, subnormals, the largest finite values and their
 * overflow to infinity, ±0, ±inf, NaN (quiet, sign kept, never rounded into infinity); bf16 ->
 * float32 exact for every one of the 65,536 patterns; the bulk converters equal the scalar ones
 * on every thread count's split; the oneDNN bf16 products within bounds derived from bf16's
 * 8-bit significand (the derivation is above the check), in every layout, with and without +=. */
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

/* ---- matmul_bf16.c ---- */

/* Entry (i, j) of the product of layout l over A and B (either type through get), in double,
 * and the sum of the absolute values of its terms. */
typedef double (*Get)(const void *x, size_t i);
static double get_bf16(const void *x, size_t i) {
    return bf16_to_float(((const uint16_t *)x)[i]);
}
static double get_f32(const void *x, size_t i) {
    return ((const float *)x)[i];
}
static double product(const void *A, const void *B, Get get, int M, int N, int K, MatmulLayout l,
                      int i, int j, double *abs_sum) {
    double s = 0.0, a_s = 0.0;
    for (int k = 0; k < K; k++) {
        size_t ia = l == MM_DW ? (size_t)k * M + i : (size_t)i * K + k;
        size_t ib = l == MM_FWD ? (size_t)j * K + k : (size_t)k * N + j;
        double t = get(A, ia) * get(B, ib);
        s += t, a_s += fabs(t);
    }
    *abs_sum = a_s;
    return s;
}

/* Error bounds, per entry, with S = sum_k |a_k b_k| (computed in double):
 * - against the exact product of the same bf16 inputs: each a_k b_k has at most 16 significant
 *   bits, so it is exact in float32; the K-term float32 sum (vdpbf16ps adds two products into
 *   the accumulator per instruction, and oneDNN may add partial sums of blocks of K: at most 2K
 *   roundings on any path) is within gamma_2K S, gamma_n = n u / (1 - n u), u = 2^-24;
 * - against the exact product of the float32 inputs before rounding: rounding to bf16 (8
 *   significant bits, unit roundoff 2^-8) changes each term by a relative 2 * 2^-8 + 2^-16 at
 *   most, so the bound adds (2^-7 + 2^-16) S.
 * The inputs are normal floats of modest size, so vdpbf16ps's flushing of subnormals does not
 * enter. */
static double gamma_n(double n) {
    double u = ldexp(1.0, -24);
    return n * u / (1.0 - n * u);
}

static void check_bf16_matmul(Bf16Matmul *mm, int M, int N, int K, MatmulLayout l, int acc) {
    size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
    float *a = xcalloc(na, sizeof *a), *b = xcalloc(nb, sizeof *b), *c = xcalloc(nc, sizeof *c);
    uint16_t *a16 = xcalloc(na, sizeof *a16), *b16 = xcalloc(nb, sizeof *b16);
    fill_random(a, na, 1.0f, 11 + (unsigned)l), fill_random(b, nb, 1.0f, 23 + (unsigned)K);
    fill_random(c, nc, 1.0f, 5);
    float *c0 = xcalloc(nc, sizeof *c0);
    memcpy(c0, c, nc * sizeof *c);
    bf16_from_f32(a16, a, na), bf16_from_f32(b16, b, nb);
    bf16_matmul(mm, c, a16, b16, M, N, K, l, acc);
    double worst_same = 0.0, worst_f32 = 0.0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double S, S32, base = acc ? c0[(size_t)i * N + j] : 0.0;
            double exact = base + product(a16, b16, get_bf16, M, N, K, l, i, j, &S);
            double exact32 = base + product(a, b, get_f32, M, N, K, l, i, j, &S32);
            double got = c[(size_t)i * N + j];
            /* the accumulated C adds one more rounding of a value of size |C| */
            double slack = acc ? ldexp(fabs(exact), -23) : 0.0;
            double r1 = fabs(got - exact) / (gamma_n(2.0 * K) * S + slack + 1e-30);
            double r2 = fabs(got - exact32) /
                        ((ldexp(1.0, -7) + ldexp(1.0, -16) + gamma_n(2.0 * K)) * S32 + slack);
            worst_same = fmax(worst_same, r1), worst_f32 = fmax(worst_f32, r2);
        }
    CHECK(worst_same <= 1.0, "layout %d, %dx%dx%d%s: %.3g of the bound against exact bf16 inputs",
          (int)l, M, N, K, acc ? " (+=)" : "", worst_same);
    CHECK(worst_f32 <= 1.0, "layout %d, %dx%dx%d%s: %.3g of the bound against the float32 inputs",
          (int)l, M, N, K, acc ? " (+=)" : "", worst_f32);
    free(a), free(b), free(c), free(c0), free(a16), free(b16);
}

TEST(test_bf16_matmul_within_derived_bounds) {
    if (!bf16_cpu_supported()) {
        SKIP("this CPU has no AVX512-BF16: the bf16 products are not checked");
        return;
    }
    Bf16Matmul *mm = bf16_matmul_create();
    const int shapes[][3] = {{37, 45, 300}, {64, 256, 1024}, {130, 33, 7}};
    for (int s = 0; s < 3; s++)
        for (int l = MM_FWD; l <= MM_DW; l++)
            for (int acc = 0; acc < 2; acc++)
                check_bf16_matmul(mm, shapes[s][0], shapes[s][1], shapes[s][2], (MatmulLayout)l,
                                  acc);
    /* every (shape, layout, accumulate) once: 18 primitives; calling again creates none */
    int before = bf16_matmul_cached(mm);
    check_bf16_matmul(mm, 37, 45, 300, MM_FWD, 0);
    CHECK(before == 18 && bf16_matmul_cached(mm) == 18, "primitive cache: %d then %d, expected 18",
          before, bf16_matmul_cached(mm));
    bf16_matmul_free(mm);
}

/* ---- whole models in bf16 ---- */

/* Loss and every gradient of the model `extra` describes, trained one micro-batch in precision
 * prec from the same weights (seed 3): *loss, and grads (pt.total floats, caller frees). */
static float *model_grads(const char *extra, const char *prec, double *loss, size_t *n) {
    char text[640], err[512];
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 2, \"d_model\": 32, \"n_heads\": 4, \"d_ff\": 64, "
             "\"dropout\": 0, \"init_std\": 0.1%s}, \"train\": {\"precision\": \"%s\"}}",
             extra, prec);
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
    float *g = xcalloc(*n, sizeof *g);
    memcpy(g, m.weights.grads, *n * sizeof *g);
    model_free(&m);
    config_free(&cfg);
    return g;
}

/* Every registered position method, and an adaptive output (whose softmax stays float32): the
 * bf16 gradient points the way of the float32 one (cosine >= 0.999, the bound) and the
 * loss moves by less than 1% — bf16 rounds each product input by at most 2^-8 relative, so the
 * logits move by about that much of their spread, far below 1% of a loss near log V. */
TEST(test_bf16_model_gradients_follow_fp32) {
    if (!bf16_cpu_supported()) {
        SKIP("this CPU has no AVX512-BF16: bf16 models are not checked");
        return;
    }
    for (int k = 0; k <= pos_count(); k++) {
        char extra[256];
        if (k < pos_count())
            snprintf(extra, sizeof extra, ", \"position\": {\"type\": \"%s\"}", pos_at(k)->name);
        else
            snprintf(
                extra, sizeof extra,
                ", \"output\": {\"type\": \"adaptive\", \"cutoffs\": [10, 30], \"factor\": 2}");
        double l32, l16;
        size_t n;
        float *g32 = model_grads(extra, "fp32", &l32, &n),
              *g16 = model_grads(extra, "bf16", &l16, &n);
        if (!g32 || !g16) return;
        double dot = 0.0, a2 = 0.0, b2 = 0.0;
        for (size_t i = 0; i < n; i++)
            dot += (double)g32[i] * g16[i], a2 += (double)g32[i] * g32[i],
                b2 += (double)g16[i] * g16[i];
        double cosine = dot / sqrt(a2 * b2);
        CHECK(cosine >= 0.999, "%s: gradient cosine %.6f between bf16 and fp32", extra, cosine);
        CHECK(fabs(l16 - l32) < 0.01 * l32, "%s: loss %.6f in bf16, %.6f in fp32", extra, l16, l32);
        CHECK(memcmp(g32, g16, n * sizeof *g32) != 0, "%s: bf16 gave fp32's exact gradients",
              extra);
        free(g32), free(g16);
    }
}
