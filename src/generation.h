/* generation.h — decoding with the paged KV cache, sampling, and NBCE (docs/generate.md).
 *
 * A sequence of the pool is fed tokens with gen_feed (the prompt: one pass, the tiled kernel when
 * the sequence is empty) and then one token per step with gen_step, which runs every sequence
 * of a batch in one pass against its cached keys and values. Both leave the log-probabilities of
 * the next token. The model must be an evaluation model (training = 0) whose max_T covers every
 * position the sequences will reach, and whose max_B * max_T covers the longest feed and the
 * batch of a step. */
#ifndef GENERATION_H
#define GENERATION_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* Feeds ids[0..n) to pool sequence s after the positions it holds; logp (V) = log p of the
 * token after the last one. window > 0: every query sees its last `window` positions only, and
 * blocks wholly before the window of the next position are returned to the pool. 0, or -1 with
 * a message (the pool is exhausted; nothing was run). */
int gen_feed(Model *m, KvPool *pool, int window, int s, const int32_t *ids, int n, float *logp,
             char *err, size_t en);
/* One token for each of B sequences seq[0..B) in one pass; logp (B, V) as gen_feed's. */
int gen_step(Model *m, KvPool *pool, int window, const int *seq, const int32_t *tokens, int B,
             float *logp, char *err, size_t en);
/* Sequence dst (empty) becomes a copy of sequence src: the same positions, in blocks of its
 * own. 0, or -1 with a message when the pool is exhausted. */
int gen_fork(KvPool *pool, int dst, int src, char *err, size_t en);

/* How the next token is chosen from log-probabilities. */
typedef struct {
    int greedy;        /* argmax (the lowest id among equal maxima); the rest is ignored */
    float temperature; /* > 0: sample from softmax(logp / temperature) */
    int top_k;         /* 0 = off: keep the k most probable */
    float top_p;       /* 1 = off: keep the smallest set of most probable words whose
                        * probability (after temperature and top-k) reaches top_p */
} Sampler;
/* Scratch for sample_token over V words: (V) ints and (V) floats. */
typedef struct {
    int *idx;
    float *prob;
} SampleScratch;
void sample_scratch_alloc(SampleScratch *s, int V);
void sample_scratch_free(SampleScratch *s);
/* The kept words' renormalized probabilities: prob[0..n) for ids idx[0..n), most probable
 * first (ties: lower id first); returns n >= 1. Greedy keeps the one argmax. */
int sample_filter(const float *logp, int V, const Sampler *o, SampleScratch *s);
/* The chosen id: the filtered distribution inverted at u in [0, 1) (greedy: the argmax). */
int sample_token(const float *logp, int V, const Sampler *o, float u, SampleScratch *s);

/* NBCE (Su 2023, "Naive Bayes-based Context Extension"): out (V) = the renormalized
 *   (1 + beta) log p_k* - beta log p_uncond,
 * k* = the one of the n chunk distributions lp[0..n) (each V normalized log-probabilities) with
 * the lowest entropy (the first on ties); returns k*. */
int nbce_combine(float *out, const float *const *lp, int n, const float *lp_uncond, int V,
                 float beta);
/* -sum p log p of normalized log-probabilities (V), in nats. */
double logp_entropy(const float *lp, int V);

#endif
