/* optim.h — AdamW (Loshchilov & Hutter 2019), learning-rate schedules and gradient clipping.
 * All loop over the parameter table, so a new tensor needs no change here. */
#ifndef OPTIM_H
#define OPTIM_H

#include <stddef.h>

#include "../params.h"

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
} AdamW;

/* One update at step t (1-based, for bias correction). Decoupled weight decay
 * p -= lr * wd * p only on tensors with decay set (matrices; not biases, gains, positions):
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + lr * wd * p                      */
void adamw_step(float *params, const float *grads, float *m, float *v, const ParamTable *pt,
                const AdamW *opt, long t);

/* Global L2 norm of the gradients (summed in a fixed order: deterministic). */
double grad_norm(const float *grads, const ParamTable *pt);
void grad_scale(float *grads, const ParamTable *pt, float s);

typedef enum { SCHED_COSINE, SCHED_INVSQRT, SCHED_CONSTANT } Schedule;
Schedule schedule_parse(const char *name);
/* Learning rate for 0-based step: linear warmup to lr over `warmup` steps (step+1)/warmup,
 * then cosine to min_lr at `steps`, inverse-sqrt lr*sqrt(warmup/(step+1)) (floored at
 * min_lr), or constant. */
double lr_at(Schedule s, long step, long steps, long warmup, double lr, double min_lr);

#endif
