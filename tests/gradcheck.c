/* gradcheck.c — see gradcheck.h. */
#include "gradcheck.h"

#include <math.h>
#include <stdio.h>

#include "../src/util/util.h"
#include "test.h"

#define FD_H 1e-2f

int gradcheck(const char *what, float *x, size_t n, const float *analytic, GradFn f, void *ctx,
              int max_samples) {
    return gradcheck_h(what, x, n, analytic, f, ctx, max_samples, FD_H);
}

int gradcheck_h(const char *what, float *x, size_t n, const float *analytic, GradFn f, void *ctx,
                int max_samples, float h) {
    double maxabs = 0.0, maxdiff = 0.0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) maxabs = fmax(maxabs, fabs(analytic[i]));
    double tol = 1e-2 * maxabs + 1e-4;
    size_t step = n > (size_t)max_samples ? n / (size_t)max_samples : 1;
    for (size_t i = 0; i < n; i += step) {
        size_t idx = i + step >= n ? n - 1 : i; /* the last entry is always checked */
        float saved = x[idx];
        double f0 = f(ctx);
        x[idx] = saved + h;
        double fp = f(ctx);
        x[idx] = saved - h;
        double fm = f(ctx);
        x[idx] = saved;
        double a = analytic[idx];
        double d = fabs((fp - fm) / (2.0 * h) - a);
        /* A ReLU kink inside [x - h, x + h] spoils the central difference but leaves one of
         * the one-sided differences on smooth ground; a wrong gradient fails all three. */
        if (d > tol) d = fmin(d, fmin(fabs((fp - f0) / h - a), fabs((f0 - fm) / h - a)));
        if (d > maxdiff) maxdiff = d, worst = idx;
        if (idx == n - 1) break;
    }
    CHECK(maxdiff <= tol && maxabs > 0.0,
          "gradcheck %s: max |fd - analytic| = %.3g at %zu (analytic %.6g), tolerance %.3g, "
          "max |grad| %.3g",
          what, maxdiff, worst, analytic[worst], tol, maxabs);
    return maxdiff <= tol;
}

void fill_random(float *x, size_t n, float scale, unsigned long long seed) {
    for (size_t i = 0; i < n; i++) x[i] = scale * (2.0f * rng_uniform(seed, i) - 1.0f);
}
