/* fastmath.h — exp and erf written so the compiler vectorizes the loops that call them.
 *
 * Why: a training step of the reference model takes ~70 million exponentials in the output
 * softmax alone; glibc's expf/erff are scalar calls that keep those loops from vectorizing
 * (its vector variants are only declared under -ffast-math, which we do not want globally).
 * Accuracy: exp_fast is within 2 ulp of expf on [-87, 88] (range reduction by ln 2 in two
 * parts, degree-6 Taylor on |r| <= ln2/2, whose truncation error is r^7/7! < 1.3e-7);
 * erf_fast has absolute error below 1.5e-7 (Abramowitz & Stegun 7.1.26). tests/test_ops.c
 * compares both with libm, and checks NaN, +-inf and the clamps: every input, NaN included, is
 * defined behaviour (NaN weights reach these loops). The loops vectorize only because the
 * Makefile passes -fno-trapping-math: otherwise gcc 12 may not if-convert the clamps' float
 * comparisons into blends, and does so only with AVX-512 masks (on AVX2 every call ran scalar). */
#ifndef FASTMATH_H
#define FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Inputs above 88 (+inf included) saturate at e^88 = 1.65e38, inputs below -87 (-inf included)
 * give 0 (e^-87 is near float's smallest normal number), NaN gives NaN. */
static inline float exp_fast(float x) {
    float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x); /* NaN fails both: stays NaN */
    /* k = round(x / ln2) via the 1.5*2^23 trick: exact under default float semantics. t's low
     * mantissa bits are then k itself (t = 1.5*2^23 + k has an ulp of 1), so the exponent bits
     * come from t's bits in unsigned arithmetic: no float-to-int conversion or signed shift,
     * whose results are undefined for a NaN k. A NaN x gives garbage bits here, and NaN
     * through p. */
    float t = xc * 1.44269504088896341f + 12582912.0f, k = t - 12582912.0f;
    float r = xc - k * 0.693145751953125f - k * 1.428606765330187e-6f;
    float p =
        1.0f +
        r * (1.0f +
             r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    uint32_t tb, bits;
    memcpy(&tb, &t, sizeof tb);
    bits = (tb - 0x4B400000u + 127u) << 23; /* k + 127 in [1, 254] for x in [-87, 88] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.0f ? 0.0f : p * scale; /* a select (a blend under -fno-trapping-math) */
}

/* z (n) -= log sum exp z: a log-softmax in place, the sum in double over exp_fast terms (the
 * loops vectorize: generation and NBCE take 33k exponentials a row). */
static inline void log_softmax_inplace(float *z, int n) {
    float mx = z[0];
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; j++) mx = z[j] > mx ? z[j] : mx;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) sum += exp_fast(z[j] - mx);
    const float lse = mx + (float)log(sum);
    for (int j = 0; j < n; j++) z[j] -= lse;
}

static inline float erf_fast(float x) {
    float ax = x < 0.0f ? -x : x;
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float poly =
        t * (0.254829592f +
             t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    float y = 1.0f - poly * exp_fast(-ax * ax);
    return x < 0.0f ? -y : y;
}

#endif
