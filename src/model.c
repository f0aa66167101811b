/* model.c — see model.h. Initialization:
 *   tok_emb ~ normal(0, C^-1/2): fairseq's choice for a sqrt(C)-scaled, tied embedding — the
 *     scaled input has unit variance and the initial logits have about unit spread;
 *   adaptive tables (size_k, d_k) ~ normal(0, d_k^-1/2) and projections (C, d_k) ~ normal with
 *     Xavier's variance 2 / (C + d_k), as fairseq's AdaptiveInput (which draws the projections
 *     uniformly with that variance); the head's projected input then again has unit variance;
 *   other matrices ~ normal(0, init_std); the two matrices that write into the residual stream
 *     (attn.proj, ffn.fc2) use init_std / sqrt(2 N), GPT-2's rule that keeps the stream's
 *     variance from growing with depth; under deepnorm instead the v rows of qkv, attn.proj,
 *     ffn.fc1, ffn.gate and ffn.fc2 use init_std * beta, beta = (8 N)^(-1/4) (DeepNet's rule,
 *     with its residual weight alpha bounding the update of each layer);
 *   biases 0, norm gains 1; position parameters by their method.
 * Each rule is the init kind of the tensor's row (params.h), set where the tensor is declared. */
#include "model.h"

#include <assert.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/fastmath.h"
#include "util/util.h"

#define TIMED(slot, dir, stmt)                                                                     \
    do {                                                                                           \
        double t0_ = now_seconds();                                                                \
        stmt;                                                                                      \
        m->state.prof[dir][slot] += now_seconds() - t0_;                                           \
    } while (0)

/* Dropout sites, combined with the layer into the mask key. */
enum { SITE_EMB, SITE_ATTN_P, SITE_ATTN_OUT, SITE_ACT, SITE_FFN_OUT, SITE_OUT, SITE_TAIL };
static uint64_t site_key(uint64_t key, int layer, int site) {
    return rng_key(key, (uint64_t)layer * 8 + (uint64_t)site + 1);
}

/* Gain (all ones) and, for LayerNorm, bias of the norm layers.<i>.<name>. */
static void declare_norm(ParamTable *pt, const ModelSpec *s, int l, const char *name, int *w,
                         int *b) {
    char n[64];
    snprintf(n, sizeof n, "layers.%d.%s.weight", l, name);
    *w = param_add(pt, n, 0, PARAM_ONES, 1, (size_t)s->C);
    *b = -1;
    if (s->rms) return;
    snprintf(n, sizeof n, "layers.%d.%s.bias", l, name);
    *b = param_add(pt, n, 0, PARAM_ZEROS, 1, (size_t)s->C);
}

/* The init of the fused qkv matrix and of the matrices that end a sub-block (attn.proj,
 * ffn.fc2) or start the FFN (fc1, gate). DeepNorm scales v, proj, fc1, gate and fc2 by
 * beta = (8L)^(-1/4) (Wang et al. 2022; q and k keep gain 1); otherwise proj and fc2 take
 * GPT-2's residual rule. */
typedef struct {
    ParamInit qkv, in, out;
} LayerInit;

static LayerInit layer_init(const ModelSpec *s, double std) {
    if (s->place != NORM_DEEPNORM)
        return (LayerInit){PARAM_NORMAL(std), PARAM_NORMAL(std), PARAM_RESIDUAL(std)};
    double beta = pow(8.0 * s->L, -0.25);
    size_t v_row = (size_t)(s->H + s->Hkv) * s->D;
    return (LayerInit){PARAM_SCALED(std, beta, v_row), PARAM_SCALED(std, beta, 0),
                       PARAM_SCALED(std, beta, 0)};
}

static void declare_layer(ParamTable *pt, const ModelSpec *s, LayerIdx *li, int l, double std) {
    char n[64];
#define ADD(field, suffix, decay, init, ...)                                                       \
    (snprintf(n, sizeof n, "layers.%d.%s", l, suffix),                                             \
     li->field = param_add(pt, n, decay, init, __VA_ARGS__))
    const size_t c = (size_t)s->C, f = (size_t)s->F, q = (size_t)s->Q;
    const LayerInit in = layer_init(s, std);
    for (int j = 0; j < 2; j++) li->lnp_w[j] = li->lnp_b[j] = -1;
    declare_norm(pt, s, l, "ln1", &li->ln_w[0], &li->ln_b[0]);
    ADD(qkv_w, "attn.qkv.weight", 1, in.qkv, 2, q, c);
    ADD(qkv_b, "attn.qkv.bias", 0, PARAM_ZEROS, 1, q);
    ADD(proj_w, "attn.proj.weight", 1, in.out, 2, c, c);
    ADD(proj_b, "attn.proj.bias", 0, PARAM_ZEROS, 1, c);
    if (s->place == NORM_SANDWICH) declare_norm(pt, s, l, "ln1_post", &li->lnp_w[0], &li->lnp_b[0]);
    declare_norm(pt, s, l, "ln2", &li->ln_w[1], &li->ln_b[1]);
    ADD(fc1_w, "ffn.fc1.weight", 1, in.in, 2, f, c);
    ADD(fc1_b, "ffn.fc1.bias", 0, PARAM_ZEROS, 1, f);
    li->gate_w = li->gate_b = -1;
    if (s->gated) {
        ADD(gate_w, "ffn.gate.weight", 1, in.in, 2, f, c);
        ADD(gate_b, "ffn.gate.bias", 0, PARAM_ZEROS, 1, f);
    }
    ADD(fc2_w, "ffn.fc2.weight", 1, in.out, 2, c, f);
    ADD(fc2_b, "ffn.fc2.bias", 0, PARAM_ZEROS, 1, c);
    if (s->place == NORM_SANDWICH) declare_norm(pt, s, l, "ln2_post", &li->lnp_w[1], &li->lnp_b[1]);
#undef ADD
}

/* Cluster layout of an adaptive output. */
static void adaptive_layout(Adaptive *a, const Config *cfg, int V) {
    _Static_assert(CONFIG_MAX_CUTOFFS < ADAPT_MAX, "a cluster per cutoff plus the head");
    memset(a, 0, sizeof *a);
    a->C = cfg->model.d_model;
    a->K = cfg->model.output.n_cutoffs + 1;
    a->start[a->K] = V;
    a->dim[0] = a->C;
    for (int k = 1; k < a->K; k++) {
        a->start[k] = cfg->model.output.cutoffs[k - 1];
        a->dim[k] = a->dim[k - 1] / cfg->model.output.factor;
    }
}

/* The input tables and projections, the head's cluster logits, and (untied) the softmax's own
 * tables and tail projections. Tables (size_k, d_k) ~ normal(0, d_k^-1/2), projections (C, d_k)
 * ~ normal(0, sqrt(2 / (C + d_k))) (see the top); the cluster logits ~ normal(0, std). */
static void adaptive_declare(ModelSpec *s, const Config *cfg, int V) {
    const Adaptive *a = &s->ad;
    ParamTable *pt = &s->pt;
    const int tie = cfg->model.output.tie;
    const double std = cfg->model.init_std;
    char n[64];
    adaptive_layout(&s->ad, cfg, V);
    for (int k = 0; k < ADAPT_MAX; k++) s->ad_emb[k] = s->ad_proj[k] = -1;
    for (int k = 0; k < ADAPT_MAX; k++) s->ad_out_emb[k] = s->ad_out_proj[k] = -1;
    for (int k = 0; k < a->K; k++) {
        size_t size = (size_t)(a->start[k + 1] - a->start[k]), d = (size_t)a->dim[k];
        ParamInit emb = PARAM_NORMAL(1.0 / sqrt((double)d));
        ParamInit proj = PARAM_NORMAL(sqrt(2.0 / (double)((size_t)a->C + d)));
        snprintf(n, sizeof n, "adaptive.emb.%d.weight", k);
        s->ad_emb[k] = param_add(pt, n, 1, emb, 2, size, d);
        snprintf(n, sizeof n, "adaptive.proj.%d.weight", k);
        s->ad_proj[k] = param_add(pt, n, 1, proj, 2, (size_t)a->C, d);
    }
    s->ad_cluster = a->K > 1 ? param_add(pt, "adaptive.cluster.weight", 1, PARAM_NORMAL(std), 2,
                                         (size_t)(a->K - 1), (size_t)a->C)
                             : -1;
    for (int k = 0; k < a->K && !tie; k++) {
        size_t size = (size_t)(a->start[k + 1] - a->start[k]), d = (size_t)a->dim[k];
        ParamInit emb = PARAM_NORMAL(1.0 / sqrt((double)d));
        ParamInit proj = PARAM_NORMAL(sqrt(2.0 / (double)((size_t)a->C + d)));
        snprintf(n, sizeof n, "adaptive.out.emb.%d.weight", k);
        s->ad_out_emb[k] = param_add(pt, n, 1, emb, 2, size, d);
        snprintf(n, sizeof n, "adaptive.out.proj.%d.weight", k);
        if (k) s->ad_out_proj[k] = param_add(pt, n, 1, proj, 2, (size_t)a->C, d);
    }
}

/* The tied token embedding (V, C) ~ normal(0, C^-1/2) (see the top). */
static void full_declare(ModelSpec *s, const Config *cfg, int V) {
    size_t C = (size_t)cfg->model.d_model;
    s->tok_emb = param_add(&s->pt, "tok_emb.weight", 1, PARAM_NORMAL(1.0 / sqrt((double)C)), 2,
                           (size_t)V, C);
}

/* The output layer, one row per model.output.type: the token embedding at the bottom and the
 * softmax at the top share their weights, so both ends are one choice, made in output_of(). */
struct OutputLayer {
    void (*declare)(ModelSpec *s, const Config *cfg, int V);
    /* floats of a->logits, a->losses, a->outx and int32s of a->rows for N rows */
    void (*scratch)(const ModelSpec *s, int training, size_t N, size_t sizes[4]);
    /* x (N, C) = the tokens' embeddings * sqrt(C); dweights += from dx */
    void (*embed_forward)(Model *m, float *x, const int32_t *tokens, size_t N);
    void (*embed_backward)(Model *m, const float *dx, const int32_t *tokens, size_t N);
    /* losses (N) of the hidden state of pass p */
    void (*loss)(Model *m, const Pass *p, const int32_t *targets, float *losses);
    /* forward and backward at once: dx (N, C) = d(scale * sum loss) / d hidden; returns the
     * summed loss */
    double (*loss_backward)(Model *m, const Pass *p, float *dx, const int32_t *targets,
                            float scale);
    /* out (n, V) = log p(every word) for hidden states x (n, C) */
    void (*logprobs)(Model *m, const float *x, size_t n, float *out);
    /* FLOPs per token of the softmax */
    double (*flops)(const Config *cfg, int V);
};
static const OutputLayer output_full, output_adaptive;

static const OutputLayer *output_of(const Config *cfg) {
    return strcmp(cfg->model.output.type, "adaptive") ? &output_full : &output_adaptive;
}

/* The index of a config choice among names (validated: an unknown name cannot reach here). */
static int choice(const char *const *names, int n, const char *name, const char *key) {
    for (int i = 0; i < n; i++)
        if (names[i] && !strcmp(names[i], name)) return i;
    sys_error("internal: %s '%s' passed the config check", key, name);
}

static Activation activation_of(const char *name) {
    static const char *const names[] = {[ACT_RELU] = "relu",
                                        [ACT_GELU] = "gelu",
                                        [ACT_SWIGLU] = "swiglu",
                                        [ACT_GLU] = "glu",
                                        [ACT_GEGLU] = "geglu"};
    return (Activation)choice(names, sizeof names / sizeof names[0], name, "model.activation");
}

static NormPlace place_of(const char *name) {
    static const char *const names[] = {[NORM_PRE] = "pre",
                                        [NORM_POST] = "post",
                                        [NORM_SANDWICH] = "sandwich",
                                        [NORM_DEEPNORM] = "deepnorm"};
    return (NormPlace)choice(names, sizeof names / sizeof names[0], name, "model.norm_position");
}

/* Resolves every choice of cfg and declares the tensor table; s is overwritten. */
void model_spec_init(ModelSpec *s, const Config *cfg, int V) {
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->L = cfg->model.n_layers;
    s->C = cfg->model.d_model;
    s->H = cfg->model.n_heads;
    s->F = cfg->model.d_ff;
    s->V = V;
    s->Hkv = cfg->model.n_kv_heads;
    s->D = s->C / s->H;
    s->Q = (s->H + 2 * s->Hkv) * s->D;
    s->act = activation_of(cfg->model.activation);
    s->gated = act_gated(s->act);
    s->rms = !strcmp(cfg->model.norm, "rmsnorm");
    s->place = place_of(cfg->model.norm_position);
    s->eps = (float)cfg->model.norm_eps;
    s->alpha = s->place == NORM_DEEPNORM ? (float)pow(2.0 * s->L, 0.25) : 1.0f;
    s->final_norm = cfg->model.final_norm;
    s->bf16 = !strcmp(cfg->train.precision, "bf16");
    s->engine = s->bf16                                ? GEMM_ONEDNN_BF16
                : !strcmp(cfg->train.matmul, "onednn") ? GEMM_ONEDNN_F32
                                                       : GEMM_OPENBLAS;
    s->pos = cfg->model.pos_method;
    s->out = output_of(cfg);
    s->layer = xcalloc((size_t)s->L, sizeof *s->layer);
    s->tok_emb = -1;
    s->out->declare(s, cfg, V);
    for (int l = 0; l < s->L; l++) declare_layer(&s->pt, s, &s->layer[l], l, cfg->model.init_std);
    s->lnf_w = s->lnf_b = -1;
    if (s->final_norm) {
        s->lnf_w = param_add(&s->pt, "ln_f.weight", 0, PARAM_ONES, 1, (size_t)s->C);
        if (!s->rms) s->lnf_b = param_add(&s->pt, "ln_f.bias", 0, PARAM_ZEROS, 1, (size_t)s->C);
    }
    if (s->pos->declare) s->pos->declare(cfg, &s->pt);
}

void model_spec_free(ModelSpec *s) {
    param_free(&s->pt);
    free(s->layer);
    memset(s, 0, sizeof *s);
}

int model_check_vocab(const Config *cfg, int V, char *err, size_t n) {
    const int nc = cfg->model.output.n_cutoffs;
    if (strcmp(cfg->model.output.type, "adaptive") || nc == 0 ||
        cfg->model.output.cutoffs[nc - 1] < V)
        return 0;
    snprintf(err, n,
             "model.output.cutoffs: the last cutoff %d is not below the vocabulary size %d (the "
             "last tail cluster would be empty)",
             cfg->model.output.cutoffs[nc - 1], V);
    return -1;
}

float *tensor_ptr(const ModelSpec *s, float *base, int idx) {
    return idx < 0 ? NULL : base + s->pt.t[idx].offset;
}

LayerView layer_view(const ModelSpec *s, float *base, int l) {
    const LayerIdx *i = &s->layer[l];
    LayerView v;
    for (int j = 0; j < 2; j++) {
        v.ln_w[j] = tensor_ptr(s, base, i->ln_w[j]);
        v.ln_b[j] = tensor_ptr(s, base, i->ln_b[j]);
        v.lnp_w[j] = tensor_ptr(s, base, i->lnp_w[j]);
        v.lnp_b[j] = tensor_ptr(s, base, i->lnp_b[j]);
    }
#define V_(f) v.f = tensor_ptr(s, base, i->f)
    V_(qkv_w), V_(qkv_b), V_(proj_w), V_(proj_b), V_(fc1_w), V_(fc1_b);
    V_(gate_w), V_(gate_b), V_(fc2_w), V_(fc2_b);
#undef V_
    return v;
}

Adaptive adaptive_view(const ModelSpec *s, float *base) {
    Adaptive a = s->ad;
    for (int k = 0; k < a.K; k++) {
        a.emb[k] = tensor_ptr(s, base, s->ad_emb[k]);
        a.proj[k] = tensor_ptr(s, base, s->ad_proj[k]);
        a.out_emb[k] = s->ad_out_emb[k] >= 0 ? tensor_ptr(s, base, s->ad_out_emb[k]) : a.emb[k];
        a.out_proj[k] = k == 0                   ? NULL
                        : s->ad_out_proj[k] >= 0 ? tensor_ptr(s, base, s->ad_out_proj[k])
                                                 : a.proj[k];
    }
    a.cluster = tensor_ptr(s, base, s->ad_cluster);
    return a;
}

/* Buffer sizes saturate at SAT floats instead of wrapping around size_t: at the ends of the
 * documented ranges (256 layers, batch 65,536, 1,024 heads, T = 2^20, d_ff = 2^20) the training
 * buffers (L, B, H, T, T) and (L, B*T, F) are 2^74 and 2^64 floats. The ~30 buffers then add up
 * without overflow, and any total at SAT is refused as out of memory (2^60 bytes). */
#define SAT ((size_t)1 << 58)
static size_t mul_sat(size_t a, size_t b) {
    return b && a > SAT / b ? SAT : a * b;
}

/* Carves the activation buffers out of one allocation. In evaluation only one layer's worth
 * is kept (layers overwrite each other), so memory does not grow with depth, and attention is
 * tiled (attention_forward_tiled), so nothing (B, H, T, T) is allocated: at T = 16k that
 * would be 8 GB per buffer for the reference model's 8 heads. */
static void alloc_activations(RunState *r, const ModelSpec *s) {
    Activations *a = &r->a;
    size_t N = (size_t)r->max_B * r->max_T, C = s->C, F = s->F, H = s->H, Q = (size_t)s->Q;
    size_t TT = r->training ? (size_t)r->max_T * r->max_T : 0;
    size_t S = r->training ? (size_t)s->L : 1;
    size_t NC = mul_sat(N, C), NF = mul_sat(N, F), SNC = mul_sat(S, NC), SNF = mul_sat(S, NF);
    size_t NQ = mul_sat(N, Q);
    /* which norms have saved inputs and outputs (sub-block j = 0, 1 alike) */
    size_t nin = s->place == NORM_PRE || s->place == NORM_SANDWICH ? SNC : 0;
    size_t nout = s->place == NORM_PRE ? 0 : SNC;
    size_t sin = nin ? S * N : 0, sout = nout ? S * N : 0;
    size_t BHTT = mul_sat(mul_sat((size_t)r->max_B, H), TT);
    a->att_threads = r->training ? 0 : omp_get_max_threads();
    size_t out[4];
    s->out->scratch(s, r->training, N, out);
    struct {
        float **p;
        size_t n;
    } plan[] = {
        {&a->res, mul_sat(S + 1, NC)},
        {&a->mid, SNC},
        {&a->nin[0], nin},
        {&a->nin_mean[0], sin},
        {&a->nin_rstd[0], sin},
        {&a->nin[1], nin},
        {&a->nin_mean[1], sin},
        {&a->nin_rstd[1], sin},
        {&a->nout[0], nout},
        {&a->nout_mean[0], sout},
        {&a->nout_rstd[0], sout},
        {&a->nout[1], nout},
        {&a->nout_mean[1], sout},
        {&a->nout_rstd[1], sout},
        {&a->qkv, mul_sat(S, NQ)},
        {&a->probs, mul_sat(S, BHTT)},
        {&a->att, SNC},
        {&a->fc1, SNF},
        {&a->gate, s->gated ? SNF : 0},
        {&a->act, SNF},
        {&a->lnf, NC},
        {&a->lnf_mean, N},
        {&a->lnf_rstd, N},
        {&a->tmp, NC},
        {&a->bh_tt, BHTT},
        {&a->logits, out[0]},
        {&a->losses, out[1]},
        {&a->outx, out[2]},
        {&a->att_tiles,
         r->training ? 0 : attention_tiled_scratch_floats(s->C, s->H, a->att_threads)},
        {&a->dres, r->training ? NC : 0},
        {&a->dtmp, r->training ? NC : 0},
        {&a->dln, r->training ? NC : 0},
        {&a->datt, r->training ? NC : 0},
        {&a->dqkv, r->training ? NQ : 0},
        {&a->dff1, r->training ? NF : 0},
        {&a->dff2, r->training ? NF : 0},
    };
    size_t total = 0, n_plan = sizeof plan / sizeof plan[0];
    for (size_t i = 0; i < n_plan; i++) total += (plan[i].n + 15) / 16 * 16;
    if (total >= SAT)
        sys_error("out of memory: the activations of %d sequences of %d tokens need more than "
                  "2^60 bytes",
                  r->max_B, r->max_T);
    float *base = xcalloc(total, sizeof(float));
    prefault(base, total * sizeof(float));
    for (size_t i = 0, off = 0; i < n_plan; i++) {
        *plan[i].p = plan[i].n ? base + off : NULL;
        off += (plan[i].n + 15) / 16 * 16;
    }
    r->act_bytes = total * sizeof(float);
    a->rows = out[3] ? xcalloc(out[3], sizeof(int32_t)) : NULL;
    r->act_bytes += out[3] * sizeof(int32_t);
}

void weights_alloc(Weights *w, const ModelSpec *s, int grads) {
    w->params = xcalloc(s->pt.total, sizeof(float));
    w->grads = grads ? xcalloc(s->pt.total, sizeof(float)) : NULL;
    w->params16 = s->bf16 ? xcalloc(s->pt.total, sizeof(uint16_t)) : NULL;
}

void weights_free(Weights *w) {
    free(w->params);
    free(w->grads);
    free(w->params16);
    memset(w, 0, sizeof *w);
}

/* The whole buffer, not just the matrices: one pass, and a tensor's bf16 copy sits at its
 * float32 offset. */
void weights_sync_bf16(Weights *w, const ModelSpec *s) {
    if (w->params16) bf16_from_f32(w->params16, w->params, s->pt.total);
}

void run_state_alloc(RunState *r, const ModelSpec *s, const Weights *w, int max_B, int max_T,
                     int training) {
    memset(r, 0, sizeof *r);
    r->max_B = max_B;
    r->max_T = max_T;
    r->training = training;
    alloc_activations(r, s);
    r->pos = (Pos){.m = s->pos,
                   .n_layers = s->L,
                   .C = s->C,
                   .H = s->H,
                   .Hkv = s->Hkv,
                   .D = s->D,
                   .max_T = max_T,
                   .pt = &s->pt,
                   .params = w->params,
                   .grads = w->grads};
    if (s->pos->setup) s->pos->setup(&r->pos, s->cfg);
    r->gemm = gemm_create(s->engine, w->params, w->params16, s->pt.total);
    if (s->bf16) {
        /* gemm.c rounds activations into two buffers that grow to the largest operands: about
         * the widest linear-layer input or output of a pass (C, F or the fused Q), or a chunk
         * of the full softmax's logit gradients */
        size_t wide = (size_t)(s->F > s->Q ? s->F : s->Q);
        size_t n = mul_sat((size_t)max_B * max_T, wide > (size_t)s->C ? wide : (size_t)s->C);
        size_t nl = s->tok_emb >= 0 && training ? (size_t)XENT_CHUNK * s->V : 0;
        r->act_bytes += (n + (nl > n ? nl : n)) * sizeof(uint16_t);
    }
}

void run_state_free(RunState *r) {
    gemm_free(r->gemm);
    free(r->a.res);
    free(r->a.rows);
    free(r->pos.state);
    memset(r, 0, sizeof *r);
}

void model_create(Model *m, const Config *cfg, int V, int max_B, int max_T, int training) {
    model_spec_init(&m->spec, cfg, V);
    weights_alloc(&m->weights, &m->spec, training);
    run_state_alloc(&m->state, &m->spec, &m->weights, max_B, max_T, training);
}

void model_free(Model *m) {
    run_state_free(&m->state);
    weights_free(&m->weights);
    model_spec_free(&m->spec);
}

/* Fills n floats of tensor t (key: its draws) by its init kind. */
static void init_tensor(float *p, const TensorSpec *t, uint64_t key, int n_layers) {
    double s = t->init.std;
    size_t cols = t->ndim > 1 ? t->numel / t->shape[0] : 1;
    switch (t->init.kind) {
    case INIT_ZEROS:
    case INIT_ONES:
        for (size_t i = 0; i < t->numel; i++) p[i] = t->init.kind == INIT_ONES ? 1.0f : 0.0f;
        break;
    case INIT_RESIDUAL:
        s /= sqrt(2.0 * n_layers);
        /* fall through */
    case INIT_NORMAL:
        for (size_t i = 0; i < t->numel; i++) p[i] = (float)(s * rng_normal(key, i));
        break;
    case INIT_SCALED:
        for (size_t i = 0; i < t->numel; i++)
            p[i] = (float)((i / cols >= t->init.row ? s * t->init.gain : s) * rng_normal(key, i));
        break;
    case INIT_POS: /* by the method */
        break;
    }
}

void model_rows1_bf16(Model *m) {
    if (m->spec.bf16) return; /* its products are bf16 already */
    if (!m->weights.params16)
        m->weights.params16 = xcalloc(m->spec.pt.total, sizeof *m->weights.params16);
    bf16_from_f32(m->weights.params16, m->weights.params, m->spec.pt.total);
    gemm_rows1_bf16(m->state.gemm, m->weights.params16);
}

/* Tensor k draws from rng_key(seed, k), so a tensor's values depend on its place in the table
 * only, not on the thread count or on the other tensors. */
void model_init(Model *m, uint64_t seed) {
    for (int k = 0; k < m->spec.pt.n; k++) {
        const TensorSpec *t = &m->spec.pt.t[k];
        init_tensor(m->weights.params + t->offset, t, rng_key(seed, (uint64_t)k), m->spec.L);
    }
    if (m->state.pos.m->init) m->state.pos.m->init(&m->state.pos, rng_key(seed, 0x706f73ull));
    weights_sync_bf16(&m->weights, &m->spec);
}

/* The one place a norm is applied: out (N, C) = norm(x) * g (+ b), its statistics saved for
 * the backward (mean: LayerNorm only). */
static void norm_forward(const Model *m, float *out, float *mean, float *rstd, const float *x,
                         const float *g, const float *b, size_t N) {
    const ModelSpec *s = &m->spec;
    if (s->rms)
        rmsnorm_forward(out, rstd, x, g, N, s->C, s->eps);
    else
        layernorm_forward(out, mean, rstd, x, g, b, N, s->C, s->eps);
}

/* dx += ; dg, db += */
static void norm_backward(const Model *m, float *dx, float *dg, float *db, const float *dout,
                          const float *x, const float *g, const float *mean, const float *rstd,
                          size_t N) {
    if (m->spec.rms)
        rmsnorm_backward(dx, dg, dout, x, g, rstd, N, m->spec.C);
    else
        layernorm_backward(dx, dg, db, dout, x, g, mean, rstd, N, m->spec.C);
}

/* Per-layer activation slot: every layer in a training pass, one shared slot otherwise. */
static size_t slot(const Pass *p, int l) {
    return p->train ? (size_t)l : 0;
}

/* out = alpha * x + y (alpha 1: the plain residual sum, exactly x + y) */
static void residual_add(float *out, float alpha, const float *x, const float *y, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = alpha * x[i] + y[i];
}

static void scale_into(float *out, float alpha, const float *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = alpha * x[i];
}

/* The one place a linear layer multiplies, on the run's engine (gemm.c: OpenBLAS, oneDNN
 * float32, or bf16 reading the weight's bf16 copy). */
static void linear_forward(const Model *m, float *out, const float *inp, const float *w,
                           const float *b, size_t N, int IC, int OC) {
    matmul_forward(m->state.gemm, out, inp, w, b, N, IC, OC);
}

static void linear_backward(const Model *m, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, size_t N, int IC, int OC,
                            int accumulate) {
    matmul_backward(m->state.gemm, dinp, dw, db, dout, inp, w, N, IC, OC, accumulate);
}

/* The attention shape of layer l in pass p. */
static AttnShape attn_shape(const Model *m, const Pass *p, int l) {
    return (AttnShape){.B = p->B,
                       .T = p->T,
                       .C = m->spec.C,
                       .H = m->spec.H,
                       .Hkv = m->spec.Hkv,
                       .layer = l,
                       .pos = &m->state.pos,
                       .pos0 = p->pos0,
                       .attn_dropout = p->train ? (float)m->spec.cfg->model.attn_dropout : 0.0f,
                       .key = site_key(p->key, l, SITE_ATTN_P),
                       .scratch = m->state.a.bh_tt,
                       .tile_threads = m->state.a.att_threads};
}

/* ---- the sub-blocks: f is attention (j = 0) or the FFN (j = 1); the norms around f are the
 * placement's (NormPlace) and only branch_in/branch_out and their backwards know it ---- */

/* The saved statistics of one norm at slot s of a pass with N rows. */
typedef struct {
    float *mean, *rstd;
} NormStats;
static NormStats stats_at(float *const mean[2], float *const rstd[2], int j, size_t s, size_t N) {
    return (NormStats){mean[j] + s * N, rstd[j] + s * N};
}

/* f's input for sub-block j of layer l whose stream input is x: N(x) for pre and sandwich
 * (computed when compute is set, else the saved one), x itself for post and deepnorm. */
static const float *branch_in(Model *m, const Pass *p, int l, int j, const float *x, int compute) {
    const ModelSpec *s = &m->spec;
    if (s->place == NORM_POST || s->place == NORM_DEEPNORM) return x;
    Activations *a = &m->state.a;
    const size_t N = (size_t)p->B * p->T, sl = slot(p, l);
    float *out = a->nin[j] + sl * N * s->C;
    if (compute) {
        LayerView w = layer_view(s, m->weights.params, l);
        NormStats st = stats_at(a->nin_mean, a->nin_rstd, j, sl, N);
        TIMED(PF_LN, 0, norm_forward(m, out, st.mean, st.rstd, x, w.ln_w[j], w.ln_b[j], N));
    }
    return out;
}

/* Where f writes its output y: sandwich keeps it for its second norm, the others use tmp. */
static float *branch_y(Model *m, const Pass *p, int l, int j) {
    Activations *a = &m->state.a;
    if (m->spec.place != NORM_SANDWICH) return a->tmp;
    return a->nout[j] + slot(p, l) * p->B * p->T * m->spec.C;
}

/* out = the stream after sub-block j from its input x and f's output y (branch_y); the
 * dropout on the branch (key) is applied here. out may alias x in evaluation. */
static void branch_out(Model *m, const Pass *p, int l, int j, float *out, const float *x, float *y,
                       float drop, uint64_t key) {
    const ModelSpec *s = &m->spec;
    Activations *a = &m->state.a;
    const size_t N = (size_t)p->B * p->T, NC = N * s->C, sl = slot(p, l);
    LayerView w = layer_view(s, m->weights.params, l);
    NormStats st = stats_at(a->nout_mean, a->nout_rstd, j, sl, N);
    switch (s->place) {
    case NORM_PRE:
        TIMED(PF_RESID, 0, {
            dropout_forward(y, y, NC, drop, key);
            residual_add(out, 1.0f, x, y, NC);
        });
        break;
    case NORM_SANDWICH: /* x + drop(N'(y)) */
        TIMED(PF_LN, 0, norm_forward(m, a->tmp, st.mean, st.rstd, y, w.lnp_w[j], w.lnp_b[j], N));
        TIMED(PF_RESID, 0, {
            dropout_forward(a->tmp, a->tmp, NC, drop, key);
            residual_add(out, 1.0f, x, a->tmp, NC);
        });
        break;
    case NORM_POST: /* N(alpha x + drop(y)), alpha = 1 */
    case NORM_DEEPNORM: {
        float *sum = a->nout[j] + sl * NC;
        TIMED(PF_RESID, 0, {
            dropout_forward(y, y, NC, drop, key);
            residual_add(sum, s->alpha, x, y, NC);
        });
        TIMED(PF_LN, 0, norm_forward(m, out, st.mean, st.rstd, sum, w.ln_w[j], w.ln_b[j], N));
        break;
    }
    }
}

/* Backward of branch_out: a->dres holds d out; leaves d y in a->dtmp and a->dres holding the
 * residual path's share of d x (d out itself, or alpha * d sum). Parameter gradients +=. */
static void branch_out_backward(Model *m, const Pass *p, int l, int j, float drop, uint64_t key) {
    const ModelSpec *s = &m->spec;
    Activations *a = &m->state.a;
    const size_t N = (size_t)p->B * p->T, NC = N * s->C, sl = (size_t)l;
    LayerView w = layer_view(s, m->weights.params, l), g = layer_view(s, m->weights.grads, l);
    NormStats st = stats_at(a->nout_mean, a->nout_rstd, j, sl, N);
    switch (s->place) {
    case NORM_PRE:
        TIMED(PF_RESID, 1, dropout_backward(a->dtmp, a->dres, NC, drop, key));
        break;
    case NORM_SANDWICH: {
        const float *y = a->nout[j] + sl * NC;
        TIMED(PF_RESID, 1, dropout_backward(a->dln, a->dres, NC, drop, key));
        memset(a->dtmp, 0, NC * sizeof(float));
        TIMED(PF_LN, 1,
              norm_backward(m, a->dtmp, g.lnp_w[j], g.lnp_b[j], a->dln, y, w.lnp_w[j], st.mean,
                            st.rstd, N));
        break;
    }
    case NORM_POST:
    case NORM_DEEPNORM: {
        const float *sum = a->nout[j] + sl * NC;
        memset(a->dtmp, 0, NC * sizeof(float));
        TIMED(PF_LN, 1,
              norm_backward(m, a->dtmp, g.ln_w[j], g.ln_b[j], a->dres, sum, w.ln_w[j], st.mean,
                            st.rstd, N));
        TIMED(PF_RESID, 1, {
            scale_into(a->dres, s->alpha, a->dtmp, NC);
            dropout_backward(a->dtmp, a->dtmp, NC, drop, key);
        });
        break;
    }
    }
}

/* Backward of branch_in: a->dln holds d (f's input); a->dres += its share of d x. */
static void branch_in_backward(Model *m, const Pass *p, int l, int j, const float *x) {
    const ModelSpec *s = &m->spec;
    Activations *a = &m->state.a;
    const size_t N = (size_t)p->B * p->T, NC = N * s->C;
    if (s->place == NORM_POST || s->place == NORM_DEEPNORM) {
        TIMED(PF_RESID, 1, residual_add(a->dres, 1.0f, a->dres, a->dln, NC));
        return;
    }
    LayerView w = layer_view(s, m->weights.params, l), g = layer_view(s, m->weights.grads, l);
    NormStats st = stats_at(a->nin_mean, a->nin_rstd, j, (size_t)l, N);
    TIMED(
        PF_LN, 1,
        norm_backward(m, a->dres, g.ln_w[j], g.ln_b[j], a->dln, x, w.ln_w[j], st.mean, st.rstd, N));
}

/* The absolute position of sequence b's first token in pass p. */
static int seq_pos0(const Pass *p, int b) {
    return p->kv ? p->kv->pos0[b] : p->pos0;
}

/* A KV pass whose sequences all start at position 0 without a window holds every key it reads
 * itself: the tiled evaluation kernel gives the same result faster than reading the cache. */
static int kv_fresh(const Pass *p) {
    if (p->kv->window > 0 && p->T > p->kv->window) return 0;
    for (int b = 0; b < p->B; b++)
        if (p->kv->pos0[b]) return 0;
    return 1;
}

/* y (N, C) = attention of layer l on its input in. */
static void attn_forward(Model *m, const Pass *p, int l, const float *in, float *y) {
    const ModelSpec *s = &m->spec;
    Activations *a = &m->state.a;
    const int C = s->C;
    const size_t N = (size_t)p->B * p->T, sl = slot(p, l), Q = (size_t)s->Q;
    const size_t BHTT = (size_t)p->B * s->H * p->T * p->T;
    const AttnShape as = attn_shape(m, p, l);
    LayerView w = layer_view(s, m->weights.params, l);
    float *qkv = a->qkv + sl * N * Q, *att = a->att + sl * N * C;
    const PosMethod *pm = s->pos;
    TIMED(PF_QKV, 0, linear_forward(m, qkv, in, w.qkv_w, w.qkv_b, N, C, s->Q));
    if (pm->rotate_forward)
        TIMED(PF_ATTN, 0, {
            /* one call per sequence when a KV pass gives each its own position */
            for (int b = 0, n = p->kv ? p->B : 1; b < n; b++) {
                float *rows = qkv + (size_t)b * p->T * Q;
                pm->rotate_forward(&m->state.pos, rows, rows + C, Q, l, p->kv ? 1 : p->B, p->T,
                                   seq_pos0(p, b));
            }
        });
    if (p->kv) {
        TIMED(PF_ATTN, 0, {
            kv_store(p->kv, qkv, &as);
            if (kv_fresh(p))
                attention_forward_tiled(att, qkv, &as, a->att_tiles);
            else
                attention_forward_paged(att, qkv, &as, p->kv);
        });
    } else if (a->att_tiles) /* an evaluation model */
        TIMED(PF_ATTN, 0, attention_forward_tiled(att, qkv, &as, a->att_tiles));
    else
        TIMED(PF_ATTN, 0, attention_forward(att, a->probs + sl * BHTT, qkv, &as));
    TIMED(PF_PROJ, 0, linear_forward(m, y, att, w.proj_w, w.proj_b, N, C, C));
}

/* a->dln = d in, from a->dtmp = d y; parameter gradients +=. */
static void attn_backward(Model *m, const Pass *p, int l, const float *in) {
    const ModelSpec *s = &m->spec;
    Activations *a = &m->state.a;
    const int C = s->C;
    const size_t N = (size_t)p->B * p->T, Q = (size_t)s->Q;
    const size_t BHTT = (size_t)p->B * s->H * p->T * p->T;
    const AttnShape as = attn_shape(m, p, l);
    LayerView w = layer_view(s, m->weights.params, l), g = layer_view(s, m->weights.grads, l);
    const float *qkv = a->qkv + (size_t)l * N * Q, *att = a->att + (size_t)l * N * C;
    const PosMethod *pm = s->pos;
    TIMED(PF_PROJ, 1,
          linear_backward(m, a->datt, g.proj_w, g.proj_b, a->dtmp, att, w.proj_w, N, C, C, 0));
    TIMED(PF_ATTN, 1, {
        attention_backward(a->dqkv, a->bh_tt, a->datt, qkv, a->probs + (size_t)l * BHTT, &as);
        if (pm->bias_backward) pm->bias_backward(&m->state.pos, a->bh_tt, l, p->B, p->T);
        if (pm->rotate_backward)
            pm->rotate_backward(&m->state.pos, a->dqkv, a->dqkv + C, Q, l, p->B, p->T, p->pos0);
    });
    TIMED(PF_QKV, 1,
          linear_backward(m, a->dln, g.qkv_w, g.qkv_b, a->dqkv, in, w.qkv_w, N, C, s->Q, 0));
}

/* y (N, C) = FFN of layer l on its input in. */
static void ffn_forward(Model *m, const Pass *p, int l, const float *in, float *y) {
    const ModelSpec *s = &m->spec;
    Activations *a = &m->state.a;
    const int C = s->C, F = s->F;
    const size_t N = (size_t)p->B * p->T, NF = N * F, sl = slot(p, l);
    LayerView w = layer_view(s, m->weights.params, l);
    float *fc1 = a->fc1 + sl * NF, *act = a->act + sl * NF;
    TIMED(PF_FFN_MM, 0, linear_forward(m, fc1, in, w.fc1_w, w.fc1_b, N, C, F));
    if (s->gated) {
        float *gate = a->gate + sl * NF;
        TIMED(PF_FFN_MM, 0, linear_forward(m, gate, in, w.gate_w, w.gate_b, N, C, F));
        TIMED(PF_ACT, 0, glu_forward(act, gate, fc1, NF, s->act));
    } else {
        TIMED(PF_ACT, 0, act_forward(act, fc1, NF, s->act));
    }
    float act_drop = p->train ? (float)s->cfg->model.act_dropout : 0.0f;
    TIMED(PF_ACT, 0, dropout_forward(act, act, NF, act_drop, site_key(p->key, l, SITE_ACT)));
    TIMED(PF_FFN_MM, 0, linear_forward(m, y, act, w.fc2_w, w.fc2_b, N, F, C));
}

/* a->dln = d in, from a->dtmp = d y; parameter gradients +=. */
static void ffn_backward(Model *m, const Pass *p, int l, const float *in) {
    const ModelSpec *s = &m->spec;
    Activations *a = &m->state.a;
    const int C = s->C, F = s->F;
    const size_t N = (size_t)p->B * p->T, NF = N * F, sl = (size_t)l;
    LayerView w = layer_view(s, m->weights.params, l), g = layer_view(s, m->weights.grads, l);
    const float *fc1 = a->fc1 + sl * NF, *act = a->act + sl * NF;
    float act_drop = (float)s->cfg->model.act_dropout;
    TIMED(PF_FFN_MM, 1,
          linear_backward(m, a->dff1, g.fc2_w, g.fc2_b, a->dtmp, act, w.fc2_w, N, F, C, 0));
    TIMED(PF_ACT, 1,
          dropout_backward(a->dff1, a->dff1, NF, act_drop, site_key(p->key, l, SITE_ACT)));
    if (s->gated) {
        const float *gate = a->gate + sl * NF;
        TIMED(PF_ACT, 1, glu_backward(a->dff2, a->dff1, a->dff1, gate, fc1, NF, s->act));
        TIMED(PF_FFN_MM, 1, {
            linear_backward(m, a->dln, g.gate_w, g.gate_b, a->dff2, in, w.gate_w, N, C, F, 0);
            linear_backward(m, a->dln, g.fc1_w, g.fc1_b, a->dff1, in, w.fc1_w, N, C, F, 1);
        });
    } else {
        TIMED(PF_ACT, 1, act_backward(a->dff1, a->dff1, fc1, NF, s->act));
        TIMED(PF_FFN_MM, 1,
              linear_backward(m, a->dln, g.fc1_w, g.fc1_b, a->dff1, in, w.fc1_w, N, C, F, 0));
    }
}

static void block_forward(Model *m, const Pass *p, int l, float drop) {
    Activations *a = &m->state.a;
    const size_t NC = (size_t)p->B * p->T * m->spec.C, sl = slot(p, l);
    float *xin = a->res + sl * NC, *mid = a->mid + sl * NC, *xout = a->res + (sl + 1) * NC;
    if (!p->train) xout = xin; /* evaluation: the stream is updated in place */
    float *y = branch_y(m, p, l, 0);
    attn_forward(m, p, l, branch_in(m, p, l, 0, xin, 1), y);
    branch_out(m, p, l, 0, mid, xin, y, drop, site_key(p->key, l, SITE_ATTN_OUT));
    y = branch_y(m, p, l, 1);
    ffn_forward(m, p, l, branch_in(m, p, l, 1, mid, 1), y);
    branch_out(m, p, l, 1, xout, mid, y, drop, site_key(p->key, l, SITE_FFN_OUT));
}

/* a->dres holds d x_out and becomes d x_in. */
static void block_backward(Model *m, const Pass *p, int l, float drop) {
    Activations *a = &m->state.a;
    const size_t NC = (size_t)p->B * p->T * m->spec.C;
    const float *xin = a->res + (size_t)l * NC, *mid = a->mid + (size_t)l * NC;
    branch_out_backward(m, p, l, 1, drop, site_key(p->key, l, SITE_FFN_OUT));
    ffn_backward(m, p, l, branch_in(m, p, l, 1, mid, 0));
    branch_in_backward(m, p, l, 1, mid);
    branch_out_backward(m, p, l, 0, drop, site_key(p->key, l, SITE_ATTN_OUT));
    attn_backward(m, p, l, branch_in(m, p, l, 0, xin, 0));
    branch_in_backward(m, p, l, 0, xin);
}

/* The residual stream leaving the last layer: its own slot in training, else the shared one. */
static float *last_stream(const Model *m, const Pass *p) {
    return m->state.a.res + (p->train ? (size_t)m->spec.L * p->B * p->T * m->spec.C : 0);
}

const float *model_hidden(const Model *m, const Pass *p) {
    return m->spec.final_norm ? m->state.a.lnf : last_stream(m, p);
}

/* Refuses a pass the state was not sized for; returns the end of its last position. A KV pass
 * holds B*T rows of the activations (B sequences of T new tokens, B*T <= max_B*max_T) at
 * positions up to max_T, which bounds the position tables. */
static int check_pass(const Model *m, const Pass *p) {
    const RunState *r = &m->state;
    int end = p->pos0 + p->T, ok = p->pos0 >= 0 && !(p->train && !r->training);
    if (p->kv) {
        ok = ok && !p->train && !p->pos0 && (size_t)p->B * p->T <= (size_t)r->max_B * r->max_T;
        for (int b = 0; b < p->B; b++) {
            const int e = p->kv->pos0[b] + p->T;
            ok = ok && p->kv->pos0[b] == p->kv->pool->seqs[p->kv->seq[b]].len;
            if (e > end) end = e;
        }
    } else {
        ok = ok && p->B <= r->max_B;
    }
    if (!ok || end > r->max_T)
        sys_error("internal: forward of %dx%d from position %d exceeds the model's %dx%d capacity",
                  p->B, p->T, p->pos0, r->max_B, r->max_T);
    return end;
}

void model_forward(Model *m, const Pass *p, const int32_t *inputs) {
    const int end = check_pass(m, p);
    Activations *a = &m->state.a;
    const int C = m->spec.C;
    const size_t N = (size_t)p->B * p->T, NC = N * C;
    float drop = p->train ? (float)m->spec.cfg->model.dropout : 0.0f;
    const PosMethod *pm = m->state.pos.m;
    if (pm->prepare) pm->prepare(&m->state.pos, end);

    TIMED(PF_EMBED, 0, {
        m->spec.out->embed_forward(m, a->res, inputs, N);
        if (pm->embed_forward)
            for (int b = 0, n = p->kv ? p->B : 1; b < n; b++)
                pm->embed_forward(&m->state.pos, a->res + (size_t)b * p->T * C, p->kv ? 1 : p->B,
                                  p->T, seq_pos0(p, b));
        dropout_forward(a->res, a->res, NC, drop, site_key(p->key, 0, SITE_EMB));
    });
    for (int l = 0; l < m->spec.L; l++) block_forward(m, p, l, drop);
    if (p->kv)
        for (int b = 0; b < p->B; b++) p->kv->pool->seqs[p->kv->seq[b]].len += p->T;
    if (m->spec.final_norm)
        TIMED(PF_LN, 0,
              norm_forward(m, a->lnf, a->lnf_mean, a->lnf_rstd, last_stream(m, p),
                           tensor_ptr(&m->spec, m->weights.params, m->spec.lnf_w),
                           tensor_ptr(&m->spec, m->weights.params, m->spec.lnf_b), N));
}

void model_logprobs(Model *m, const Pass *p, size_t row0, size_t n, float *out) {
    assert(row0 + n <= (size_t)p->B * p->T);
    m->spec.out->logprobs(m, model_hidden(m, p) + row0 * m->spec.C, n, out);
}

double model_loss(Model *m, const Pass *p, const int32_t *targets, float *losses) {
    size_t N = (size_t)p->B * p->T;
    TIMED(PF_OUTPUT, 0, m->spec.out->loss(m, p, targets, losses));
    double sum = 0.0;
    for (size_t i = 0; i < N; i++) sum += losses[i];
    return sum;
}

double model_backward(Model *m, const Pass *p, const int32_t *inputs, const int32_t *targets,
                      float scale) {
    /* bias_backward reduces dscores by segment distance, which is what training (pos0 = 0)
     * needs; nothing trains from another position */
    if (!p->train || p->pos0 != 0)
        sys_error("internal: backward of a pass that is not a training pass from position 0");
    Activations *a = &m->state.a;
    const int C = m->spec.C;
    const size_t N = (size_t)p->B * p->T, NC = N * C;
    float *dfinal = m->spec.final_norm ? a->dln : a->dres;
    double loss;
    TIMED(PF_OUTPUT, 1, loss = m->spec.out->loss_backward(m, p, dfinal, targets, scale));
    if (m->spec.final_norm) {
        memset(a->dres, 0, NC * sizeof(float));
        TIMED(PF_LN, 1,
              norm_backward(m, a->dres, tensor_ptr(&m->spec, m->weights.grads, m->spec.lnf_w),
                            tensor_ptr(&m->spec, m->weights.grads, m->spec.lnf_b), a->dln,
                            last_stream(m, p),
                            tensor_ptr(&m->spec, m->weights.params, m->spec.lnf_w), a->lnf_mean,
                            a->lnf_rstd, N));
    }
    float drop = (float)m->spec.cfg->model.dropout;
    for (int l = m->spec.L - 1; l >= 0; l--) block_backward(m, p, l, drop);
    TIMED(PF_EMBED, 1, {
        dropout_backward(a->dres, a->dres, NC, drop, site_key(p->key, 0, SITE_EMB));
        if (m->state.pos.m->embed_backward)
            m->state.pos.m->embed_backward(&m->state.pos, a->dres, p->B, p->T, p->pos0);
        m->spec.out->embed_backward(m, a->dres, inputs, N);
    });
    return loss;
}

/* ---- full softmax over the vocabulary with the tied token embedding (ops/xent.c) ---- */
/* logits in chunks of XENT_CHUNK rows; nothing else */
static void full_scratch(const ModelSpec *s, int training, size_t N, size_t sizes[4]) {
    (void)training, (void)N;
    sizes[0] = (size_t)XENT_CHUNK * s->V;
    sizes[1] = sizes[2] = sizes[3] = 0;
}

static void full_embed_forward(Model *m, float *x, const int32_t *tokens, size_t N) {
    embedding_forward(x, tokens, tensor_ptr(&m->spec, m->weights.params, m->spec.tok_emb), N,
                      m->spec.C, sqrtf((float)m->spec.C));
}

static void full_embed_backward(Model *m, const float *dx, const int32_t *tokens, size_t N) {
    embedding_backward(tensor_ptr(&m->spec, m->weights.grads, m->spec.tok_emb), dx, tokens, N,
                       m->spec.C, sqrtf((float)m->spec.C));
}

static void full_loss(Model *m, const Pass *p, const int32_t *targets, float *losses) {
    xent_forward(m->state.gemm, losses, model_hidden(m, p),
                 tensor_ptr(&m->spec, m->weights.params, m->spec.tok_emb), targets,
                 (size_t)p->B * p->T, m->spec.C, m->spec.V, m->state.a.logits);
}

static double full_loss_backward(Model *m, const Pass *p, float *dx, const int32_t *targets,
                                 float scale) {
    return xent_forward_backward(
        m->state.gemm, dx, tensor_ptr(&m->spec, m->weights.grads, m->spec.tok_emb),
        model_hidden(m, p), tensor_ptr(&m->spec, m->weights.params, m->spec.tok_emb), targets,
        (size_t)p->B * p->T, m->spec.C, m->spec.V, scale, m->state.a.logits);
}

/* Logits against the tied embedding (on the run's engine, as the loss), then a log-softmax per
 * row with the sum in double over vectorized exponentials. */
static void full_logprobs(Model *m, const float *x, size_t n, float *out) {
    const int V = m->spec.V, C = m->spec.C;
    gemm(m->state.gemm, 0, 1, (int)n, V, C, 1.0f, x, C,
         tensor_ptr(&m->spec, m->weights.params, m->spec.tok_emb), C, 0.0f, out, V);
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < n; r++) log_softmax_inplace(out + r * V, V);
}

static double full_flops(const Config *cfg, int V) {
    return 2.0 * cfg->model.d_model * V;
}

static const OutputLayer output_full = {
    .declare = full_declare,
    .scratch = full_scratch,
    .embed_forward = full_embed_forward,
    .embed_backward = full_embed_backward,
    .loss = full_loss,
    .loss_backward = full_loss_backward,
    .logprobs = full_logprobs,
    .flops = full_flops,
};

/* ---- adaptive input and tied adaptive softmax (ops/adaptive.c) ---- */
/* the clusters' logits; per-row losses for the backward and the dropped hidden state (training
 * only); the rows grouped by cluster */
static void adaptive_scratch(const ModelSpec *s, int training, size_t N, size_t sizes[4]) {
    sizes[0] = adaptive_scratch_floats(&s->ad);
    sizes[1] = training ? N : 0;
    sizes[2] = training && s->cfg->model.output.dropout > 0 ? mul_sat(N, (size_t)s->C) : 0;
    sizes[3] = N;
}

static void adaptive_embed_forward(Model *m, float *x, const int32_t *tokens, size_t N) {
    Adaptive w = adaptive_view(&m->spec, m->weights.params);
    adaptive_input_forward(m->state.gemm, x, tokens, &w, N, sqrtf((float)m->spec.C),
                           m->state.a.rows, m->state.a.logits);
}

static void adaptive_embed_backward(Model *m, const float *dx, const int32_t *tokens, size_t N) {
    Adaptive w = adaptive_view(&m->spec, m->weights.params),
             g = adaptive_view(&m->spec, m->weights.grads);
    adaptive_input_backward(m->state.gemm, &g, dx, tokens, &w, N, sqrtf((float)m->spec.C),
                            m->state.a.rows, m->state.a.logits);
}

/* The adaptive softmax's input: the final hidden state, after its dropout in training. */
static const float *softmax_input(Model *m, const Pass *p) {
    float drop = (float)m->spec.cfg->model.output.dropout;
    if (!p->train || drop <= 0.0f) return model_hidden(m, p);
    size_t NC = (size_t)p->B * p->T * m->spec.C;
    dropout_forward(m->state.a.outx, model_hidden(m, p), NC, drop,
                    site_key(p->key, m->spec.L, SITE_OUT));
    return m->state.a.outx;
}

static AdaptiveDrop tail_dropout(const Model *m, const Pass *p) {
    return (AdaptiveDrop){p->train ? (float)m->spec.cfg->model.output.dropout : 0.0f,
                          site_key(p->key, m->spec.L, SITE_TAIL)};
}

static void adaptive_loss(Model *m, const Pass *p, const int32_t *targets, float *losses) {
    Adaptive w = adaptive_view(&m->spec, m->weights.params);
    AdaptiveDrop drop = tail_dropout(m, p);
    adaptive_softmax_forward(m->state.gemm, losses, softmax_input(m, p), &w, targets,
                             (size_t)p->B * p->T, &drop, m->state.a.rows, m->state.a.logits);
}

static double adaptive_loss_backward(Model *m, const Pass *p, float *dx, const int32_t *targets,
                                     float scale) {
    const size_t N = (size_t)p->B * p->T;
    Adaptive w = adaptive_view(&m->spec, m->weights.params),
             g = adaptive_view(&m->spec, m->weights.grads);
    AdaptiveDrop drop = tail_dropout(m, p);
    double loss = adaptive_softmax_forward_backward(m->state.gemm, dx, &g, m->state.a.losses,
                                                    softmax_input(m, p), &w, targets, N, scale,
                                                    &drop, m->state.a.rows, m->state.a.logits);
    dropout_backward(dx, dx, N * m->spec.C, (float)m->spec.cfg->model.output.dropout,
                     site_key(p->key, m->spec.L, SITE_OUT));
    return loss;
}

static void adaptive_logprobs_rows(Model *m, const float *x, size_t n, float *out) {
    Adaptive w = adaptive_view(&m->spec, m->weights.params);
    adaptive_logprobs(m->state.gemm, out, x, n, &w, m->state.a.logits);
}

/* The head softmax and the head's input projection; the tails run only for the few tokens
 * whose target lies in them. No cutoffs: one cluster, a full softmax through the projection. */
static double adaptive_flops(const Config *cfg, int V) {
    double C = cfg->model.d_model;
    if (!cfg->model.output.n_cutoffs) return 2.0 * C * V;
    return 2.0 * C * (cfg->model.output.cutoffs[0] + cfg->model.output.n_cutoffs) + 2.0 * C * C;
}

static const OutputLayer output_adaptive = {
    .declare = adaptive_declare,
    .scratch = adaptive_scratch,
    .embed_forward = adaptive_embed_forward,
    .embed_backward = adaptive_embed_backward,
    .loss = adaptive_loss,
    .loss_backward = adaptive_loss_backward,
    .logprobs = adaptive_logprobs_rows,
    .flops = adaptive_flops,
};

double model_flops_per_token(const Config *cfg, int V, int T) {
    double C = cfg->model.d_model, F = cfg->model.d_ff;
    double ffn = act_gated(activation_of(cfg->model.activation)) ? 3 * C * F : 2 * C * F;
    /* the fused projection is (H + 2 Hkv) D = C + 2 C Hkv / H wide */
    double qkv = C * (C + 2.0 * C * cfg->model.n_kv_heads / cfg->model.n_heads);
    double matmuls = 2.0 * (qkv + C * C + ffn);
    /* q.k and p.v over the causal triangle: on average (T+1)/2 keys per query */
    double attention = 2.0 * 2.0 * C * (T + 1) / 2.0;
    return cfg->model.n_layers * (matmuls + attention) + output_of(cfg)->flops(cfg, V);
}

size_t model_param_bytes(const Model *m) {
    return 4 * m->spec.pt.total * sizeof(float);
}
