/* ops.h — the layer operations, each a _forward/_backward pair of plain functions.
 *
 * Conventions (as llm.c): outputs first, then inputs, then dimensions. Shapes use one set of
 * names: B batch, T sequence, C model width, H heads, D = C/H head width, F FFN width,
 * V vocabulary, N = B*T rows; Hkv key/value heads (attention). Activations are row-major
 * (N, width). Backward functions say per argument whether they overwrite (=) or accumulate (+=).
 * Parameter gradients always accumulate, so micro-batches add up without extra copies. */
#ifndef OPS_H
#define OPS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../position/position.h"

/* ---- gemm.c: the matrix product of every layer outside attention -------------------- */
/* Engines: float32 through OpenBLAS (a NULL Gemm) or oneDNN, or bf16 inputs with float32
 * accumulation through oneDNN (train.precision bf16). */
typedef enum { GEMM_OPENBLAS, GEMM_ONEDNN_F32, GEMM_ONEDNN_BF16 } GemmEngine;
typedef struct Gemm Gemm;
int bf16_cpu_supported(void); /* AVX512-BF16 (vdpbf16ps) on this CPU */
const char *gemm_engine_name(GemmEngine e);
/* params (n_params floats) and, for bf16, their bf16 copy in the same layout: an input inside
 * params is read from params16 (gemm.c); both may be NULL. */
Gemm *gemm_create(GemmEngine engine, const float *params, const uint16_t *params16,
                  size_t n_params);
void gemm_free(Gemm *g);
/* C (M, N) = alpha op(A) op(B) + beta C, row-major, op = transpose when ta / tb, as
 * cblas_sgemm. oneDNN engines take beta 0 or 1 only and must be called outside parallel
 * regions (oneDNN runs its own OpenMP threads); a oneDNN primitive is created per (shape,
 * strides, alpha, beta) at its first call and reused. */
void gemm(Gemm *g, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);
int gemm_primitives(const Gemm *g); /* oneDNN primitives created so far */
/* Generation's bf16 weights (./generate --weights-dtype bf16), on the OpenBLAS engine: a
 * one-row product y = a B^T whose B lies inside the parameters reads B from params16 (their
 * bf16 copy, same layout) with float32 accumulation, instead of cblas_sgemv on the float32
 * copy. A decode step is memory-bound and these products read every weight once, so this
 * halves most of its bytes. Products of more rows (a prompt) stay float32. */
void gemm_rows1_bf16(Gemm *g, const uint16_t *params16);

/* ---- matmul.c: linear layers ----------------------------------------------------------- */
/* out (N, OC) = inp (N, IC) @ weight (OC, IC)^T + bias (OC); bias may be NULL. */
void matmul_forward(Gemm *g, float *out, const float *inp, const float *weight, const float *bias,
                    size_t N, int IC, int OC);
/* dinp (N, IC) = or += (accumulate) dout @ weight; dweight (OC, IC) += dout^T @ inp;
 * dbias (OC) += column sums of dout. dinp/dbias may be NULL. */
void matmul_backward(Gemm *g, float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, size_t N, int IC, int OC,
                     int accumulate);

/* ---- norm.c: LayerNorm and RMSNorm ----------------------------------------------------- */
/* out (N, C) = (inp - mean) * rstd * weight + bias, rstd = 1 / sqrt(var + eps); saves mean,
 * rstd (N). */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, size_t N, int C, float eps);
/* dinp += ; dweight, dbias += */
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean, const float *rstd,
                        size_t N, int C);
/* out (N, C) = inp * rstd * weight, rstd = 1 / sqrt(mean(inp^2) + eps) (no mean, no bias);
 * saves rstd (N). */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, size_t N,
                     int C, float eps);
/* dinp += ; dweight += */
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, size_t N, int C);

/* ---- activation.c: FFN nonlinearities ------------------------------------------------ */
typedef enum { ACT_RELU, ACT_GELU, ACT_SWIGLU, ACT_GLU, ACT_GEGLU } Activation;
/* out = act(inp), n elements, for the ungated kinds (RELU, GELU). GELU is the exact erf form. */
void act_forward(float *out, const float *inp, size_t n, Activation a);
/* dinp = dout * act'(inp) (overwrite; dinp may alias dout) */
void act_backward(float *dinp, const float *dout, const float *inp, size_t n, Activation a);
/* 1 for the gated kinds (GLU, GEGLU, SWIGLU), which take two inputs and glu_*; 0 otherwise. */
int act_gated(Activation a);
/* Gated units: out = phi(gate) * up, n elements; phi = sigmoid (GLU), GELU (GEGLU, exact erf),
 * silu (SWIGLU). */
void glu_forward(float *out, const float *gate, const float *up, size_t n, Activation a);
/* dgate = dout * up * phi'(gate), dup = dout * phi(gate) (overwrite; dup may alias dout) */
void glu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                  size_t n, Activation a);

/* ---- dropout.c: inverted dropout with a stateless mask -------------------------------- */
/* The keep decision for element i is hash(key, i) >= p, so backward recomputes the mask
 * instead of storing it, and the result does not depend on the thread count. p = 0: copy. */
void dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t key);
/* dinp = dout * mask / (1 - p) (overwrite; may alias) */
void dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t key);

/* ---- embedding.c ----------------------------------------------------------------------- */
/* out (N, C) = weight[tokens] * scale */
void embedding_forward(float *out, const int32_t *tokens, const float *weight, size_t N, int C,
                       float scale);
/* dweight[tokens] += dout * scale */
void embedding_backward(float *dweight, const float *dout, const int32_t *tokens, size_t N, int C,
                        float scale);

/* ---- attention.c: causal self-attention, grouped-query kv heads ---------------------- */
typedef struct {
    int B, T, C, H;
    int Hkv; /* key/value heads, a divisor of H (Ainslie et al. 2023, GQA): query head h reads
              * kv head h / (H / Hkv); H is multi-head, 1 multi-query. 0 means H, so a shape
              * written before kv heads existed keeps its meaning. */
    int layer;
    const Pos *pos;     /* bias hook source (per query head); q,k are rotated by the caller */
    int pos0;           /* position of row 0: the bias hooks get positions pos0 + row */
    float attn_dropout; /* 0 in evaluation */
    uint64_t key;       /* dropout key for this layer and step */
    float *scratch;     /* (B, H, T, T), needed in forward when attn_dropout > 0 */
    int tile_threads;   /* attention_forward_tiled: threads its scratch was sized for */
} AttnShape;
/* qkv (B, T, (H + 2 Hkv) D), row stride ld = (H + 2 Hkv) D (3C for MHA): q (H heads), then k
 * (Hkv heads), then v (Hkv heads), heads contiguous inside each. out (B, T, C): concatenated
 * query heads. probs (B, H, T, T): softmax probabilities (before dropout), saved for backward;
 * row i holds j <= i, zeros up to the end of its 64-row query block, and is not written
 * beyond. */
void attention_forward(float *out, float *probs, const float *qkv, const AttnShape *s);
/* dqkv (B, T, (H + 2 Hkv) D) = d loss / d qkv (overwritten; a kv head's dk, dv sum over its
 * group of query heads); dscores (B, H, T, T) = gradient w.r.t. the biased, scaled scores for
 * j <= i, written like probs (scratch, also handed to the position method's bias_backward by
 * the caller, which reads j <= i only). Deterministic: independent of the thread count. */
void attention_backward(float *dqkv, float *dscores, const float *dout, const float *qkv,
                        const float *probs, const AttnShape *s);

/* Evaluation attention in memory independent of T (the same maths as attention_forward, no
 * dropout, nothing saved): query tiles of ATT_TILE_Q rows meet key tiles of ATT_TILE_K keys
 * with an online softmax, so no (T, T) matrix exists. scratch: attention_tiled_scratch_floats
 * (C, H, s->tile_threads) floats (independent of Hkv); at most s->tile_threads OpenMP threads
 * are used. */
#define ATT_TILE_Q 128
#define ATT_TILE_K 256
size_t attention_tiled_scratch_floats(int C, int H, int nthreads);
/* qkv (B, T, (H + 2 Hkv) D) as above; out (B, T, C) = . */
void attention_forward_tiled(float *out, const float *qkv, const AttnShape *s, float *scratch);

/* ---- kvcache.c: the paged key/value cache of generation ----------------------------------
 * PagedAttention's memory layout (Kwon et al. 2023, sec. 4.1-4.2) on a CPU: the keys and values
 * of every sequence live in fixed-size blocks of KV_BLOCK positions drawn from one pool, and each
 * sequence has a block table, so a sequence grows one block at a time, sequences of different
 * lengths share the pool, and a finished sequence returns its blocks. One block holds all L
 * layers: per layer the keys of each kv head transposed, (Hkv, D, KV_BLOCK), then the values
 * (Hkv, KV_BLOCK, D): one head's scores over a block are then D rows of KV_BLOCK keys that
 * vectorize along the keys, as in the tiled evaluation kernel. Positions are absolute: a sequence
 * holds positions first_block * KV_BLOCK .. len - 1 (first_block > 0 once a sliding window has
 * evicted blocks from its front). */
#define KV_BLOCK 64
/* The cache's element type. A decode step at a long context reads the whole cache once per
 * token, so it is bound by memory bandwidth, and bf16 (rounded to nearest even as in bf16.c,
 * widened to float32 in registers) halves what it reads; f32 keeps decoding equal to a
 * full forward pass. */
typedef enum { KV_F32, KV_BF16 } KvDtype;
typedef struct {
    int *table;      /* block ids; table[k] holds positions (first_block + k) * KV_BLOCK .. */
    int n_blocks;    /* entries of table in use */
    int first_block; /* blocks evicted from the front */
    int len;         /* positions written so far: the next one is len */
} KvSeq;
typedef struct {
    int L, Hkv, D;
    KvDtype dtype;
    int n_blocks, n_free, peak_used; /* blocks in the pool, free now, most ever in use */
    int n_seqs, max_table;           /* sequences; table entries each may have */
    size_t block_elems, elem_bytes;  /* L * 2 * Hkv * KV_BLOCK * D elements of the dtype */
    unsigned char *data;             /* n_blocks blocks, pages touched only when a block is used */
    int *free_ids;                   /* stack of the n_free free block ids */
    KvSeq *seqs;
    int *pass_pos0; /* (n_seqs) scratch for a pass's KvPass.pos0 (generation.c) */
} KvPool;
/* A pool of n_blocks blocks of the given dtype for n_seqs sequences of a model with L layers
 * and Hkv kv heads of width D; every sequence empty. */
void kv_pool_init(KvPool *p, int L, int Hkv, int D, KvDtype dtype, int n_blocks, int n_seqs);
/* "f32" or "bf16" -> the dtype; -1 for any other name. */
int kv_dtype_parse(const char *name);
const char *kv_dtype_name(KvDtype t);
void kv_pool_free(KvPool *p);
/* Gives sequence s the blocks to hold positions below n. 0, or -1 with a message when the pool
 * has too few free blocks (nothing is taken then). */
int kv_reserve(KvPool *p, int s, int n, char *err, size_t en);
/* Returns the blocks of sequence s that hold only positions below pos (a sliding window). */
void kv_evict_before(KvPool *p, int s, int pos);
/* Returns every block of sequence s; it is empty again (len 0). */
void kv_release(KvPool *p, int s);
/* The block of sequence s holding position pos, layer l, kv head g: its keys transposed
 * (D, KV_BLOCK) and its values (KV_BLOCK, D), elements of the pool's dtype; column / row
 * pos % KV_BLOCK is pos's. pos must be held. */
void *kv_block_keys(const KvPool *p, int s, int l, int g, int pos);
void *kv_block_values(const KvPool *p, int s, int l, int g, int pos);
/* Element i of a block part as float32 / stored from float32 (rounded for bf16). */
float kv_get(const KvPool *p, const void *part, size_t i);
void kv_put(const KvPool *p, void *part, size_t i, float x);
/* One row of a pass over cached sequences: batch row b continues pool sequence seq[b], whose
 * first new position is pos0[b] (its len before the pass). window > 0: query i sees keys
 * i - window + 1 .. i only (generate --max-context). */
typedef struct {
    KvPool *pool;
    const int *seq, *pos0;
    int window;
} KvPass;
/* Stores the k and v heads of qkv (B, T, (H + 2 Hkv) D) for layer s->layer at positions
 * pos0[b] + t (reserved beforehand). */
void kv_store(const KvPass *kv, const float *qkv, const AttnShape *s);
/* out (B, T, C) = attention of the pass's query rows (positions pos0[b] + t) against the cached
 * keys and values of layer s->layer, which kv_store already holds for this pass; causal, with the
 * position method's bias hooks at absolute positions. */
void attention_forward_paged(float *out, const float *qkv, const AttnShape *s, const KvPass *kv);

/* ---- bf16.c: bfloat16 storage for bf16 matrix products ------------------------------ */
/* float32 -> bf16, round to nearest even; NaN stays a quiet NaN, overflow goes to ±inf. */
uint16_t bf16_round(float x);
/* exact; inline so that loops over bf16 data vectorize */
static inline float bf16_to_float(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}
void bf16_from_f32(uint16_t *out, const float *in, size_t n);
void bf16_to_f32(float *out, const uint16_t *in, size_t n);

/* ---- xent.c: tied output layer + softmax cross-entropy, chunked ---------------------- */
/* The [N x V] logits are the largest tensor of the model (270 MB at N = 2048, V = 33k), so
 * they are never whole: rows are processed in chunks of XENT_CHUNK, and in training the
 * backward of a chunk runs right after its forward (a fused op) instead of storing logits. */
#define XENT_CHUNK 256
/* One row of logits (V): returns -log softmax(row)[target]; with grad, the row becomes
 * scale * (softmax - onehot(target)) (overwrite). */
double xent_row(float *row, int V, int target, float scale, int grad);
/* losses (N) = -log softmax(x W^T)[target]; scratch: XENT_CHUNK * V floats. */
void xent_forward(Gemm *g, float *losses, const float *x, const float *weight,
                  const int32_t *targets, size_t N, int C, int V, float *scratch);
/* As xent_forward, plus the gradient of scale * sum(losses): dx (N, C) = ; dweight (V, C) +=.
 * Returns the sum of the losses. */
double xent_forward_backward(Gemm *g, float *dx, float *dweight, const float *x,
                             const float *weight, const int32_t *targets, size_t N, int C, int V,
                             float scale, float *scratch);

/* ---- adaptive.c: adaptive input (Baevski & Auli 2019) + adaptive softmax (Grave et al. 2017) */
/* The frequency-sorted vocabulary is cut into K clusters, the head and K-1 tails: cluster k
 * holds ids [start[k], start[k+1]), a table (size_k, d_k) and a projection (C, d_k) that maps
 * d_k -> C on the input side and, transposed, C -> d_k in the softmax. Tied (fairseq's
 * tie_adaptive_weights + tie_adaptive_proj): the out_ pointers equal the input ones. The head
 * never projects (d_0 = C): out_proj[0] is unused. A gradient view has the same layout. */
#define ADAPT_MAX       8
#define ADAPT_HEAD_ROWS 1024 /* head rows per chunk (why: adaptive.c) */
typedef struct {
    int K, C;
    int start[ADAPT_MAX + 1];                        /* start[0] = 0, start[K] = V */
    int dim[ADAPT_MAX];                              /* d_k = C / factor^k */
    float *emb[ADAPT_MAX], *proj[ADAPT_MAX];         /* input: (size_k, d_k), (C, d_k) */
    float *out_emb[ADAPT_MAX], *out_proj[ADAPT_MAX]; /* softmax: the same shapes */
    float *cluster;                                  /* (K-1, C) head logits of the tails */
} Adaptive;
/* Dropout on a tail's projected hidden state (fairseq's adaptive_softmax_dropout); the mask of
 * row r is keyed by (key, r). p = 0 in evaluation. */
typedef struct {
    float p;
    uint64_t key;
} AdaptiveDrop;
/* Scratch floats for every function below, independent of N; rows: N int32. */
size_t adaptive_scratch_floats(const Adaptive *a);
int adaptive_cluster(const Adaptive *a, int id);
/* out (N, C) = scale * P_k E_k[t - start_k] for each token t of cluster k. */
void adaptive_input_forward(Gemm *mm, float *out, const int32_t *tokens, const Adaptive *w,
                            size_t N, float scale, int32_t *rows, float *scratch);
/* g->emb, g->proj += the gradients of dout (N, C). */
void adaptive_input_backward(Gemm *mm, Adaptive *g, const float *dout, const int32_t *tokens,
                             const Adaptive *w, size_t N, float scale, int32_t *rows,
                             float *scratch);
/* losses (N) = -log p(target) for hidden states x (N, C): exact, normalized over all V.
 * drop: NULL (evaluation) or the training forward's tail dropout. */
void adaptive_softmax_forward(Gemm *mm, float *losses, const float *x, const Adaptive *w,
                              const int32_t *targets, size_t N, const AdaptiveDrop *drop,
                              int32_t *rows, float *scratch);
/* As forward (with tail dropout), plus the gradient of scale * sum(losses): dx (N, C) = ;
 * g->out_emb, g->out_proj, g->cluster +=. Returns the sum of the losses. */
double adaptive_softmax_forward_backward(Gemm *mm, float *dx, Adaptive *g, float *losses,
                                         const float *x, const Adaptive *w, const int32_t *targets,
                                         size_t N, float scale, const AdaptiveDrop *drop,
                                         int32_t *rows, float *scratch);
/* out (N, V) = log p(every word | x) for hidden states x (N, C), in float32 on engine mm;
 * scratch as above. Must be called outside parallel regions (oneDNN engines). */
void adaptive_logprobs(Gemm *mm, float *out, const float *x, size_t N, const Adaptive *w,
                       float *scratch);

#endif
