/* bf16.c — conversions between float32 and bfloat16 (the top 16 bits of a float32: sign, the
 * 8-bit exponent, 7 mantissa bits), the storage type of bf16 matrix products.
 *
 * float32 -> bf16 rounds to nearest, ties to even, on the bit pattern: adding 0x7fff plus the
 * lowest kept bit carries into the kept half exactly when the dropped half is above one half,
 * or equal to it with an odd kept half. This is the rounding of AVX512-BF16's vcvtne2ps2bf16
 * and of PyTorch's float -> bfloat16. It is right for subnormals (same bit pattern rule), for
 * ±inf (the dropped half is 0), and for finite values above the largest bf16, which round to
 * ±inf as round-to-nearest must. A NaN would carry into the exponent or lose its payload's
 * only set bits, so NaN is handled first: it stays a quiet NaN with its sign. bf16 -> float32
 * is exact (append 16 zero bits). */
#include <string.h>

#include "ops.h"

uint16_t bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

void bf16_from_f32(uint16_t *out, const float *in, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = bf16_round(in[i]);
}

void bf16_to_f32(float *out, const uint16_t *in, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = bf16_to_float(in[i]);
}
