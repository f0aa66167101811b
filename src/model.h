/* model.h — the Baevski & Auli-style decoder: config -> spec and parameter table (views into
 * one buffer), run state allocated once, forward and backward written top to bottom.
 *
 *   x = E[tokens] * sqrt(C) (+ position embedding) -> dropout
 *   N x { x += drop(Attn(LN1(x)));  x += drop(FFN(LN2(x))) }      pre-LN blocks (default)
 *   [LN_f] -> logits = x E^T (tied) -> softmax cross-entropy
 *
 * With model.output.type = adaptive, E[tokens] is the adaptive input and the last line the
 * tied adaptive softmax (ops/adaptive.c); everything between is the same. The blocks' norms are
 * LayerNorm or RMSNorm, placed pre, post, sandwich or deepnorm (NormPlace); attention may share
 * kv heads (n_kv_heads). Each variant is chosen at one point in model.c: the output layer by a
 * table of hooks (OutputLayer, both ends), the norm by norm_forward/norm_backward, its placement
 * by branch_in/branch_out, the position method by its PosMethod.
 */
#ifndef MODEL_H
#define MODEL_H

#include <stdint.h>

#include "config/config.h"
#include "ops/ops.h"
#include "params.h"
#include "position/position.h"

/* Where the norms sit around each sub-block f (attention, FFN) of a layer (docs/architecture.md):
 *   pre       x = x + f(N(x))                 post      x = N(x + f(x))
 *   sandwich  x = x + N'(f(N(x)))             deepnorm  x = N(alpha x + f(x)) */
typedef enum { NORM_PRE, NORM_POST, NORM_SANDWICH, NORM_DEEPNORM } NormPlace;

/* Indices into the ParamTable for one layer's tensors (-1: absent: a norm bias with RMSNorm,
 * the post norms outside sandwich, the gate of an ungated FFN). Index [0] of a norm pair belongs
 * to the attention sub-block (ln1, ln1_post), [1] to the FFN (ln2, ln2_post). */
typedef struct {
    int ln_w[2], ln_b[2], lnp_w[2], lnp_b[2];
    int qkv_w, qkv_b, proj_w, proj_b, fc1_w, fc1_b, gate_w, gate_b, fc2_w, fc2_b;
} LayerIdx;

/* Pointers of one layer into a buffer with the parameter layout (params or grads). */
typedef struct {
    float *ln_w[2], *ln_b[2], *lnp_w[2], *lnp_b[2];
    float *qkv_w, *qkv_b, *proj_w, *proj_b, *fc1_w, *fc1_b, *gate_w, *gate_b, *fc2_w, *fc2_b;
} LayerView;

/* Op families timed for --profile, forward and backward separately. */
enum { PF_EMBED, PF_LN, PF_QKV, PF_ATTN, PF_PROJ, PF_FFN_MM, PF_ACT, PF_RESID, PF_OUTPUT, PF_N };

/* S slots of each per-layer buffer: L in training, 1 in evaluation (layers share it). Q is the
 * fused projection's width (H + 2 Hkv) D. Sub-block j: 0 attention, 1 FFN. */
typedef struct {
    float *res; /* (S+1, N, C) residual stream entering each layer; res[L] leaves the last */
    float *mid; /* (S, N, C) residual stream after the attention sub-block */
    /* pre, sandwich: the normalized input of sub-block j, its mean and rstd: (S, N, C), (S, N) */
    float *nin[2], *nin_mean[2], *nin_rstd[2];
    /* the input of the norm after sub-block j: post, deepnorm the residual sum; sandwich the
     * sub-block's output; with its mean and rstd */
    float *nout[2], *nout_mean[2], *nout_rstd[2];
    float *qkv;              /* (S, N, Q), q and k after the position method's rotation */
    float *probs;            /* (L, B, H, T, T), training models only */
    float *att;              /* (S, N, C) concatenated head outputs */
    float *fc1, *gate, *act; /* (S, N, F): pre-activation, gate (gated units), FFN hidden */
    float *lnf, *lnf_mean, *lnf_rstd; /* (N, C), (N) */
    float *tmp;                       /* (N, C) */
    float *bh_tt;  /* (B, H, T, T): dropout probabilities in forward, dscores in backward;
                    * training models only */
    float *logits; /* full output: (XENT_CHUNK, V); adaptive: adaptive_scratch_floats */
    float *losses; /* (N) per-row losses of the adaptive softmax's backward */
    float *outx;   /* (N, C) the hidden state after the adaptive softmax's dropout (training) */
    int32_t *rows; /* (N) rows grouped by cluster (adaptive) */
    /* evaluation models only (probs and bh_tt are then NULL): per-thread tiles of
     * attention_forward_tiled, sized for att_threads threads; independent of T */
    float *att_tiles;
    int att_threads;
    /* gradient scratch (training only): (N, C) but dqkv (N, Q) and dff1, dff2 (N, F) */
    float *dres, *dtmp, *dln, *datt, *dqkv, *dff1, *dff2;
} Activations;

typedef struct OutputLayer OutputLayer; /* full or adaptive softmax: model.c's one seam */

/* What the model is: the shape and every variant, resolved once from the config, and the tensor
 * table with the indices of every tensor. Nothing here changes after model_spec_init. */
typedef struct {
    const Config *cfg;
    const OutputLayer *out;
    const PosMethod *pos;
    int L, C, H, F, V;
    int Hkv, D, Q; /* kv heads, head width C / H, fused projection width (H + 2 Hkv) D */
    Activation act;
    int gated;         /* act_gated(act): the FFN has a gate projection */
    int rms;           /* model.norm: RMSNorm (gains only) instead of LayerNorm */
    NormPlace place;   /* model.norm_position */
    float eps;         /* model.norm_eps */
    float alpha;       /* deepnorm's residual weight (2L)^(1/4); 1 otherwise */
    int bf16;          /* train.precision bf16: every product outside attention takes bfloat16
                        * inputs (oneDNN) */
    GemmEngine engine; /* those products' engine: train.precision and train.matmul */
    int final_norm;
    ParamTable pt;
    int tok_emb, lnf_w, lnf_b; /* tok_emb: -1 with an adaptive output */
    /* adaptive output: tensor indices (-1: absent) and the cluster layout */
    int ad_emb[ADAPT_MAX], ad_proj[ADAPT_MAX], ad_out_emb[ADAPT_MAX], ad_out_proj[ADAPT_MAX];
    int ad_cluster;
    Adaptive ad;     /* layout only (K, C, start, dim); pointers come from adaptive_view() */
    LayerIdx *layer; /* L entries */
} ModelSpec;

/* The numbers: parameters and their gradients, each pt.total floats in the table's layout, and
 * for bf16 models the parameters' bf16 copy in the same layout. */
typedef struct {
    float *params, *grads; /* grads NULL when not training */
    uint16_t *params16;    /* bf16 models: params rounded to bf16 (weights_sync_bf16) */
} Weights;

/* What running the model needs: activations and scratch for sequences of up to max_T tokens,
 * max_B at a time (training: every layer's activations and the gradient scratch), the position
 * method's precomputed state, the matrix-product engine (with its oneDNN primitives and bf16
 * scratch), and the profiler. Allocated once; passes only reuse it (oneDNN primitives: created at
 * first use). */
typedef struct {
    int max_B, max_T, training;
    Activations a;
    size_t act_bytes;
    Pos pos;
    Gemm *gemm;           /* the engine of every product outside attention (gemm.c) */
    double prof[2][PF_N]; /* seconds per op family: [0] forward, [1] backward */
} RunState;

typedef struct {
    ModelSpec spec;
    Weights weights;
    RunState state;
} Model;

/* What one forward (and the backward, loss and hidden state of that forward) does; the model
 * keeps no mode between calls. */
typedef struct {
    int B, T;     /* B sequences of T tokens; B <= max_B */
    int pos0;     /* absolute position of each sequence's first token; pos0 + T <= max_T */
    int train;    /* dropout on and every layer's activations kept for backward (a training
                   * model only); 0: an evaluation pass, layers share one activation slot */
    uint64_t key; /* seeds the dropout masks (unique per micro-batch) */
    /* Generation (an evaluation pass): NULL, or the KV cache the pass continues. Then sequence
     * b's T tokens sit at positions kv->pos0[b] .. (pos0 above must be 0), every layer stores
     * their keys and values in the cache and attends to all the cached ones, and the sequences'
     * lengths in the pool advance by T. The blocks must be reserved (kv_reserve). */
    const KvPass *kv;
} Pass;

/* 0 if the config's output layer fits a vocabulary of V words (adaptive cutoffs below V),
 * else -1 with a one-line message naming the key. */
int model_check_vocab(const Config *cfg, int V, char *err, size_t n);
/* The spec of a (validated) config for a vocabulary of V words: its choices resolved and its
 * tensor table (names, shapes, decay flags, init kinds), no buffers. s keeps cfg. */
void model_spec_init(ModelSpec *s, const Config *cfg, int V);
void model_spec_free(ModelSpec *s);
/* Parameters (and, with grads, gradients) for the spec's table, zeroed. */
void weights_alloc(Weights *w, const ModelSpec *s, int grads);
void weights_free(Weights *w);
/* bf16 models: params16 = params rounded to bf16. Call after every change of params (init,
 * load, each optimizer step): the bf16 products read params16 only. */
void weights_sync_bf16(Weights *w, const ModelSpec *s);
/* Activations for max_B x max_T and the position method's state, reading w's buffers. An
 * evaluation state (training = 0) keeps one layer's activations and uses the tiled attention,
 * so it grows as O(max_B * max_T * (C + F)), with no T x T term; it runs with at most the
 * omp_get_max_threads() current at creation. s and w must outlive it. */
void run_state_alloc(RunState *r, const ModelSpec *s, const Weights *w, int max_B, int max_T,
                     int training);
void run_state_free(RunState *r);
/* All three parts at once (training: with gradients and a training state). m must not move
 * afterwards: the state points into the spec and the weights. */
void model_create(Model *m, const Config *cfg, int V, int max_B, int max_T, int training);
void model_free(Model *m);
/* Generation with bf16 weights: one-row products (decode steps) read a bf16 copy of the
 * parameters from now on (gemm_rows1_bf16). Call after the weights are loaded. */
void model_rows1_bf16(Model *m);
/* Random initialization from the seed (see docs in model.c). */
void model_init(Model *m, uint64_t seed);
LayerView layer_view(const ModelSpec *s, float *base, int l);
/* The adaptive input/softmax tensors inside base (params or grads); tied views share them. */
Adaptive adaptive_view(const ModelSpec *s, float *base);
float *tensor_ptr(const ModelSpec *s, float *base, int idx);

/* Forward of inputs (B*T tokens) through all layers to the final hidden state. */
void model_forward(Model *m, const Pass *p, const int32_t *inputs);
/* The final hidden state (B*T, C) of the last forward, which had pass p. */
const float *model_hidden(const Model *m, const Pass *p);
/* Per-token losses (B*T) of the last forward, which had pass p; returns their sum. */
double model_loss(Model *m, const Pass *p, const int32_t *targets, float *losses);
/* Output layer (fused forward + backward) and backward through every layer of the last
 * forward, which had pass p (a training pass starting at position 0) and these inputs.
 * Parameter gradients accumulate (+=) with weight `scale` on the summed loss. Returns the
 * summed loss. */
double model_backward(Model *m, const Pass *p, const int32_t *inputs, const int32_t *targets,
                      float scale);

/* out (n, V) = log p(every word) at rows row0 .. row0 + n - 1 (of B*T) of the last forward,
 * which had pass p: the full softmax over the tied embedding or the exact adaptive one, on the
 * run's engine. */
void model_logprobs(Model *m, const Pass *p, size_t row0, size_t n, float *out);
/* FLOPs per token of one forward pass at sequence length T (matmuls, causal attention as the
 * lower triangle, output layer). Training costs 3x. */
double model_flops_per_token(const Config *cfg, int V, int T);
/* Bytes of parameters, gradients and both AdamW moments (4 buffers). */
size_t model_param_bytes(const Model *m);

#endif
