/* test_bf16.c — float32 <-> bfloat16 conversion on hand-picked bit patterns: ties to even in
 * both directions, just above and below a tie, subnormals, the largest finite values and their
 * overflow to infinity, ±0, ±inf, NaN (quiet, sign kept, never rounded into infinity); bf16 ->
 * float32 exact for every one of the 65,536 patterns; the bulk converters equal the scalar ones
 * on every thread count's split. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ops/ops.h"
#include "../src/util/util.h"
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
