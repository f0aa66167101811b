/* generation.c — decoding with the paged KV cache, sampling, and NBCE (generation.h). */
#include "generation.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/fastmath.h"
#include "util/util.h"

/* Before a pass that starts at position pos0: with a window, the blocks no query of the pass
 * can see (wholly before pos0 - window + 1) go back to the pool; then the pass's positions are
 * reserved. */
static int make_room(KvPool *pool, int window, int s, int n, char *err, size_t en) {
    const int pos0 = pool->seqs[s].len;
    if (window > 0) kv_evict_before(pool, s, pos0 - window + 1);
    return kv_reserve(pool, s, pos0 + n, err, en);
}

int gen_feed(Model *m, KvPool *pool, int window, int s, const int32_t *ids, int n, float *logp,
             char *err, size_t en) {
    if (make_room(pool, window, s, n, err, en)) return -1;
    const int pos0 = pool->seqs[s].len;
    const KvPass kv = {pool, &s, &pos0, window};
    const Pass p = {.B = 1, .T = n, .kv = &kv};
    model_forward(m, &p, ids);
    model_logprobs(m, &p, (size_t)n - 1, 1, logp);
    /* the window for the next position: what the prompt needed is no longer reachable */
    if (window > 0) kv_evict_before(pool, s, pool->seqs[s].len - window + 1);
    return 0;
}

int gen_step(Model *m, KvPool *pool, int window, const int *seq, const int32_t *tokens, int B,
             float *logp, char *err, size_t en) {
    int *pos0 = pool->pass_pos0; /* B <= n_seqs: each sequence once */
    for (int b = 0; b < B; b++) {
        if (make_room(pool, window, seq[b], 1, err, en)) return -1;
        pos0[b] = pool->seqs[seq[b]].len;
    }
    const KvPass kv = {pool, seq, pos0, window};
    const Pass p = {.B = B, .T = 1, .kv = &kv};
    model_forward(m, &p, tokens);
    model_logprobs(m, &p, 0, (size_t)B, logp);
    return 0;
}

int gen_fork(KvPool *pool, int dst, int src, char *err, size_t en) {
    const KvSeq *a = &pool->seqs[src];
    KvSeq *b = &pool->seqs[dst];
    if (b->len || b->n_blocks) sys_error("internal: gen_fork into a sequence that is not empty");
    if (a->n_blocks > pool->n_free) {
        snprintf(err, en, "KV cache exhausted: %d blocks needed to copy a sequence, %d of %d free",
                 a->n_blocks, pool->n_free, pool->n_blocks);
        return -1;
    }
    for (int k = 0; k < a->n_blocks; k++) {
        b->table[k] = pool->free_ids[--pool->n_free];
        const size_t bytes = pool->block_elems * pool->elem_bytes;
        memcpy(pool->data + (size_t)b->table[k] * bytes, pool->data + (size_t)a->table[k] * bytes,
               bytes);
    }
    b->n_blocks = a->n_blocks;
    b->first_block = a->first_block;
    b->len = a->len;
    if (pool->n_blocks - pool->n_free > pool->peak_used)
        pool->peak_used = pool->n_blocks - pool->n_free;
    return 0;
}

/* ---- sampling ---- */

void sample_scratch_alloc(SampleScratch *s, int V) {
    s->idx = xcalloc((size_t)V, sizeof(int));
    s->prob = xcalloc((size_t)V, sizeof(float));
}

void sample_scratch_free(SampleScratch *s) {
    free(s->idx);
    free(s->prob);
    memset(s, 0, sizeof *s);
}

static int argmax(const float *x, int V) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (x[v] > x[best]) best = v;
    return best;
}

/* qsort_r order of ids by key: larger value first, then the lower id (a total order: the result
 * does not depend on the sort's algorithm). */
static int by_value_desc(const void *a, const void *b, void *key) {
    const float *x = key;
    const int i = *(const int *)a, j = *(const int *)b;
    if (x[i] != x[j]) return x[i] > x[j] ? -1 : 1;
    return (i > j) - (i < j);
}

/* Moves the k largest of key[idx[0..n)] to the front, in sort order: a selection pass keeps a
 * running set of k, so top-k over 33k words sorts k, not V, entries. */
static void sort_prefix(int *idx, int n, int k, const float *key) {
    void *ctx = (void *)key;
    if (k < n && k <= 256) {
        int kept = 0;
        for (int t = 0; t < n; t++) {
            /* insertion into the sorted kept prefix; most words fall below its last entry */
            int v = idx[t], at = kept < k ? kept : k - 1;
            if (kept == k && by_value_desc(&v, &idx[k - 1], ctx) >= 0) continue;
            while (at > 0 && by_value_desc(&v, &idx[at - 1], ctx) < 0) {
                idx[at] = idx[at - 1];
                at--;
            }
            idx[at] = v;
            if (kept < k) kept++;
        }
        return;
    }
    qsort_r(idx, (size_t)n, sizeof(int), by_value_desc, ctx);
}

int sample_filter(const float *logp, int V, const Sampler *o, SampleScratch *s) {
    if (o->greedy) {
        s->idx[0] = argmax(logp, V);
        s->prob[0] = 1.0f;
        return 1;
    }
    const int k = o->top_k > 0 && o->top_k < V ? o->top_k : V;
    /* the words in id order are only needed sorted when a filter cuts them */
    for (int v = 0; v < V; v++) s->idx[v] = v;
    if (k < V || o->top_p < 1.0f) sort_prefix(s->idx, V, k, logp);
    /* softmax(logp / temperature) over the first k, in double */
    const double inv_t = 1.0 / o->temperature;
    double mx = -INFINITY, sum = 0.0;
    for (int r = 0; r < k; r++) mx = fmax(mx, logp[s->idx[r]] * inv_t);
    for (int r = 0; r < k; r++) sum += exp(logp[s->idx[r]] * inv_t - mx);
    int n = k;
    if (o->top_p < 1.0f) { /* the smallest prefix reaching top_p (Holtzman et al. 2020) */
        double cum = 0.0;
        for (n = 0; n < k;) {
            cum += exp(logp[s->idx[n]] * inv_t - mx) / sum;
            n++;
            if (cum >= o->top_p) break;
        }
        sum = 0.0;
        for (int r = 0; r < n; r++) sum += exp(logp[s->idx[r]] * inv_t - mx);
    }
    for (int r = 0; r < n; r++) s->prob[r] = (float)(exp(logp[s->idx[r]] * inv_t - mx) / sum);
    return n;
}

int sample_token(const float *logp, int V, const Sampler *o, float u, SampleScratch *s) {
    const int n = sample_filter(logp, V, o, s);
    double cum = 0.0;
    for (int r = 0; r < n; r++) {
        cum += s->prob[r];
        if (u < cum) return s->idx[r];
    }
    /* u within rounding of 1: the last kept word with a probability above zero */
    for (int r = n - 1; r > 0; r--)
        if (s->prob[r] > 0.0f) return s->idx[r];
    return s->idx[0];
}

/* ---- NBCE ---- */

double logp_entropy(const float *lp, int V) {
    double h = 0.0;
    /* exp_fast(-inf) is 0, but 0 * -inf is NaN: a word ruled out adds nothing */
#pragma omp simd reduction(+ : h)
    for (int v = 0; v < V; v++) h -= lp[v] > -INFINITY ? exp_fast(lp[v]) * lp[v] : 0.0f;
    return h;
}

/* Su's NBCE, "pick the least uncertain" pooling: the chunk whose next-token distribution has
 * the lowest entropy speaks for the context; the unconditional distribution (the question
 * alone) is subtracted with weight beta, which Su derives from Naive Bayes with a tempered
 * prior: log p(T|S_1..S_n) = (1 + beta) pool_k log p(T|S_k) - beta log p(T) + const. */
int nbce_combine(float *out, const float *const *lp, int n, const float *lp_uncond, int V,
                 float beta) {
    int best = 0;
    double h_best = INFINITY;
    for (int k = 0; k < n; k++) {
        const double h = logp_entropy(lp[k], V);
        if (h < h_best) h_best = h, best = k;
    }
    double mx = -INFINITY, sum = 0.0;
    for (int v = 0; v < V; v++) {
        /* a word the chunk rules out stays out; where the unconditional term rules one out,
         * the chunk's value stands (as Su's code does), not -beta * -inf = +inf */
        const float k = lp[best][v], u = lp_uncond[v];
        out[v] = k > -INFINITY && u > -INFINITY ? (1.0f + beta) * k - beta * u : k;
        mx = fmax(mx, out[v]);
    }
#pragma omp simd reduction(+ : sum)
    for (int v = 0; v < V; v++) sum += exp_fast(out[v] - (float)mx);
    const float lse = (float)(mx + log(sum));
    for (int v = 0; v < V; v++) out[v] -= lse;
    return best;
}
