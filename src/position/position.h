/* position.h — the position-method interface.
 *
 * A method is one file that fills a PosMethod and one line in registry.c. The model never
 * names a method: it calls the hooks below, each optional (NULL means "this method does
 * nothing here"), as fairseq/x-transformers ask a position module for its contribution:
 *
 *   embed   add a vector per position to the (scaled) token embeddings  x: (B, T, C)
 *   rotate  transform q and k in place before the dot product           q,k rows of stride ld
 *   bias    add bias(i, j) to the attention scores of a tile            after the 1/sqrt(D) scale
 *
 * Each hook has a backward. Backward hooks *accumulate* (+=) into the method's parameter
 * gradients (Pos.grads) and transform gradients in place where the forward did.
 * Positions are absolute: a pass over a segment of T tokens covers positions pos0 .. pos0+T-1,
 * pos0 the position of its first token (training and evaluation start every segment at 0;
 * nothing carries across segments). The embed and rotate hooks take pos0; the bias hooks are
 * given absolute positions i, j. prepare() is told pos0 + T, so every table a hook reads covers
 * the positions of the pass, and a segment starting at pos0 sees exactly the values that rows
 * pos0.. of a segment starting at 0 see. pos0 + T never exceeds Pos.max_T.
 * Head h of layer l is addressed explicitly so methods may have per-layer or per-head
 * parameters.
 * label and color are how scripts/results.py names and draws the method; it reads them through
 * ./train --list-positions, so a new method needs no edit in the scripts. */
#ifndef POSITION_H
#define POSITION_H

#include <stddef.h>

#include "../config/config.h"
#include "../params.h"

typedef struct Pos Pos;

typedef struct PosMethod {
    const char *name;
    const char *summary;   /* one line for --help and docs */
    const char *label;     /* its name in tables and figures, e.g. "ALiBi", "T5 bias" */
    const char *color;     /* matplotlib colour of its curves and bars, "#rrggbb" */
    const ConfigKey *keys; /* keys under model.position (besides "type"); may be NULL */
    int n_keys;

    /* Cross-key checks beyond type/range (e.g. a slope list's length). 0, or -1 + message. */
    int (*check)(const Config *c, char *err, size_t n);
    /* The longest sequence the method can represent under config c (learned positions: their
     * table; xPos: where its scales leave float's range), or NULL: no limit. The programs check
     * every length against it before they build a model (pos_max_positions). */
    int (*max_positions)(const Config *c);
    const char *max_positions_key; /* the key under model.position that sets that limit */
    /* Generation (./generate) keeps each key as the rotate hook left it and reuses it while the
     * sequence grows. NULL, or a function returning NULL, when that is exact under config c;
     * else a one-line reason it is not (tables that depend on the pass's length), and
     * ./generate refuses the model with it. */
    const char *(*cache_refusal)(const Config *c);
    /* Declare learnable tensors, named "pos.*". */
    void (*declare)(const Config *c, ParamTable *pt);
    /* Called once, when the model is created: builds the precomputed state for sequences up to
     * p->max_T into p->state, which must be one allocation (the model frees it with one
     * free()). */
    void (*setup)(Pos *p, const Config *c);
    /* Initial values of the learnable tensors (p->params), from a random key. */
    void (*init)(Pos *p, unsigned long long key);
    /* Called once per forward pass before any hook (e.g. refresh a table from parameters);
     * n = pos0 + T: the pass reads positions below n. */
    void (*prepare)(Pos *p, int n);

    /* x: (B, T, C) += pe(pos0 + t) */
    void (*embed_forward)(const Pos *p, float *x, int B, int T, int pos0);
    void (*embed_backward)(Pos *p, const float *dx, int B, int T, int pos0);

    /* q: B*T rows of H*D floats, k: B*T rows of Hkv*D floats, both of row stride ld; row t of
     * each sequence is at position pos0 + t; rotated in place for layer l. */
    void (*rotate_forward)(const Pos *p, float *q, float *k, size_t ld, int layer, int B, int T,
                           int pos0);
    void (*rotate_backward)(Pos *p, float *dq, float *dk, size_t ld, int layer, int B, int T,
                            int pos0);

    /* scores[r*ld + c] += bias(i0 + r, j0 + c) for head h of layer l. Entries with j > i are
     * masked by the caller and may be left untouched. */
    void (*bias_forward)(const Pos *p, float *scores, size_t ld, int layer, int h, int i0, int ni,
                         int j0, int nj);
    /* Optional shortcut for biases that are exactly -slope_h * (i - j) (ALiBi): returns the
     * slope of head h in layer l (0 for an unbiased head). The evaluation kernel then folds
     * the bias into its score loop instead of a separate pass over each tile; bias_forward
     * must still be given and compute the same values. */
    float (*linear_slope)(const Pos *p, int layer, int h);
    /* dscores: (B, H, T, T), defined for j <= i only; accumulate parameter gradients. Only
     * training calls it, and training starts every segment at position 0. */
    void (*bias_backward)(Pos *p, const float *dscores, int layer, int B, int T);

    /* Optional slow references, straight from the paper's formula: no table that setup() or
     * prepare() filled, only p's shape, the method's config values in p->state and the
     * parameters in p->params. tests/test_pos_reference.c compares every registered method's
     * forward hooks with them, at positions away from 0; they catch a formula that is wrong in
     * forward and backward alike, which the gradient checks cannot. */
    /* The bias bias_forward adds to score (i, j), j <= i, of head h in layer l. */
    double (*bias_reference)(const Pos *p, int layer, int h, int i, int j);
    /* out (C) = the vector embed_forward adds at absolute position t. */
    void (*embed_reference)(const Pos *p, int t, float *out);
} PosMethod;

struct Pos {
    const PosMethod *m;
    int n_layers, C, H, D; /* model shape */
    int Hkv;               /* key/value heads (a divisor of H): rotate hooks see Hkv k heads */
    int max_T;             /* longest sequence setup() prepared for */
    const ParamTable *pt;  /* the model's tensor table: find "pos.*" tensors with param_find */
    float *params, *grads; /* the model's whole buffers (grads NULL when not training) */
    void *state;           /* method-owned, one allocation (freed with one free()) */
};

/* Helpers for biases that depend on the distance i - j only (distance.c). */
/* row[c] += table[i - (j0 + c)] for the keys j0 + c <= i among j0 .. j0 + nj - 1. */
void pos_add_distance_bias(float *row, const float *table, int i, int j0, int nj);
/* sums[h*T + n] = sum over b and rows i < rows of dscores[b, h, i, i - n], for n < T.
 * dscores: (B, H, T, T). One head per OpenMP iteration, each sum in a fixed order, so the
 * result does not depend on the thread count. */
void pos_bias_distance_sums(double *sums, const float *dscores, int B, int H, int T, int rows);

const PosMethod *pos_find(const char *name); /* NULL if unknown */
/* The method's max_positions(c), INT_MAX for a method without a limit. */
int pos_max_positions(const PosMethod *m, const Config *c);
/* "none|sinusoidal|alibi" — the registered names, for config enums and messages. */
const char *pos_names(void);
int pos_count(void);
const PosMethod *pos_at(int i);

#endif
