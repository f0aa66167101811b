/* gradcheck.h — the one finite-difference gradient checker.
 *
 * f(ctx) runs a forward pass and returns a scalar in double (a loss, or sum_i w_i * out_i with
 * fixed random weights w, whose gradient w.r.t. out is w). For sampled entries x_i the central
 * difference (f(x + h e_i) - f(x - h e_i)) / 2h is compared with the analytic gradient.
 *
 * Tolerance: the ops run in float32, so f carries rounding noise of about 1e-7 * |f|; with
 * h = 1e-2 that is ~1e-5 in the difference quotient, and the truncation error h^2 f''' / 6 is of
 * the same order for our smooth ops. We therefore require max |fd - analytic| over the samples
 * to stay below 1e-2 * max |analytic| of the tensor + 1e-4. Every bug class we guard against
 * (missing term, wrong sign, transposed index, wrong scale) gives errors of order 100%. */
#ifndef GRADCHECK_H
#define GRADCHECK_H

#include <stddef.h>

typedef double (*GradFn)(void *ctx);

/* Returns 1 if the check passed; records one CHECK. Samples at most max_samples entries
 * (spread over the tensor, always including the first and last). */
int gradcheck(const char *what, float *x, size_t n, const float *analytic, GradFn f, void *ctx,
              int max_samples);
/* The same with step h. Functions with kinks (ReLU) need a smaller h so that no
 * pre-activation crosses zero inside [x - h, x + h]; the float noise term grows as 1/h. */
int gradcheck_h(const char *what, float *x, size_t n, const float *analytic, GradFn f, void *ctx,
                int max_samples, float h);

/* Fills x with deterministic pseudo-random values in [-scale, scale). */
void fill_random(float *x, size_t n, float scale, unsigned long long seed);

#endif
