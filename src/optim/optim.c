/* optim.c — see optim.h. */
#include "optim.h"

#include <math.h>
#include <omp.h>
#include <string.h>

void adamw_step(float *params, const float *grads, float *m, float *v, const ParamTable *pt,
                const AdamW *o, long t) {
    const float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
    const float c1 = (float)(1.0 / (1.0 - pow(o->beta1, (double)t)));
    const float c2 = (float)(1.0 / (1.0 - pow(o->beta2, (double)t)));
    const float lr = (float)o->lr;
    for (int k = 0; k < pt->n; k++) {
        const TensorSpec *ts = &pt->t[k];
        const float decay = ts->decay ? (float)(o->lr * o->weight_decay) : 0.0f;
        float *p = params + ts->offset, *mk = m + ts->offset, *vk = v + ts->offset;
        const float *g = grads + ts->offset;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < ts->numel; i++) {
            float mi = b1 * mk[i] + (1.0f - b1) * g[i];
            float vi = b2 * vk[i] + (1.0f - b2) * g[i] * g[i];
            mk[i] = mi;
            vk[i] = vi;
            p[i] -= lr * (mi * c1) / (sqrtf(vi * c2) + eps) + decay * p[i];
        }
    }
}

double grad_norm(const float *grads, const ParamTable *pt) {
    /* per-thread partial sums combined in thread order, so the result is bit-identical
     * from run to run at a given thread count (OpenMP's reduction order is unspecified). The
     * region gets no more threads than slots (train.threads goes up to 1,024), so every share
     * of the sum is counted. */
    enum { SLOTS = 1024 };
    double partial[SLOTS] = {0};
    int nt = omp_get_max_threads() < SLOTS ? omp_get_max_threads() : SLOTS;
#pragma omp parallel num_threads(nt)
    {
#pragma omp single
        nt = omp_get_num_threads();
        int id = omp_get_thread_num();
        for (int k = 0; k < pt->n; k++) {
            const float *g = grads + pt->t[k].offset;
            double s = 0.0;
#pragma omp for schedule(static)
            for (size_t i = 0; i < pt->t[k].numel; i++) s += (double)g[i] * g[i];
            partial[id] += s;
        }
    }
    double total = 0.0;
    for (int i = 0; i < nt; i++) total += partial[i];
    return sqrt(total);
}

void grad_scale(float *grads, const ParamTable *pt, float s) {
    for (int k = 0; k < pt->n; k++) {
        float *g = grads + pt->t[k].offset;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < pt->t[k].numel; i++) g[i] *= s;
    }
}

Schedule schedule_parse(const char *name) {
    if (strcmp(name, "inverse_sqrt") == 0) return SCHED_INVSQRT;
    if (strcmp(name, "constant") == 0) return SCHED_CONSTANT;
    return SCHED_COSINE;
}

double lr_at(Schedule s, long step, long steps, long warmup, double lr, double min_lr) {
    if (step < warmup) return lr * (double)(step + 1) / (double)warmup;
    switch (s) {
    case SCHED_CONSTANT:
        return lr;
    case SCHED_INVSQRT: {
        double r = lr * sqrt((double)(warmup > 0 ? warmup : 1) / (double)(step + 1));
        return r > min_lr ? r : min_lr;
    }
    case SCHED_COSINE:
    default: {
        double span = (double)(steps - warmup);
        double frac = span > 0 ? (double)(step - warmup) / span : 1.0;
        if (frac > 1.0) frac = 1.0;
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(M_PI * frac));
    }
    }
}
