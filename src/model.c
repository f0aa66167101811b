/* model.c — see model.h. Initialization:
 *   tok_emb ~ normal(0, C^-1/2): fairseq's choice for a sqrt(C)-scaled, tied embedding — the
 *     scaled input has unit variance and the initial logits have about unit spread;
 *   adaptive tables (size_k, d_k) ~ normal(0, d_k^-1/2) and projections (C, d_k) ~ normal with
 *     Xavier's variance 2 / (C + d_k), as fairseq's AdaptiveInput (which draws the projections
 *     uniformly with that variance); the head's projected input then again has unit variance;
 *   other matrices ~ normal(0, init_std); the two matrices that write into the residual stream
 *     (attn.proj, ffn.fc2) use init_std / sqrt(2 N), GPT-2's rule that keeps the stream's
 *     variance from growing with depth;
 *   biases 0, LayerNorm gains 1; position parameters by their method.
 * Each rule is the init kind of the tensor's row (params.h), set where the tensor is declared. */
#include "model.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define TIMED(slot, dir, stmt)                                                                     \
    do {                                                                                           \
        double t0_ = now_seconds();                                                                \
        stmt;                                                                                      \
        m->prof[dir][slot] += now_seconds() - t0_;                                                 \
    } while (0)

/* Dropout sites, combined with the layer into the mask key. */
enum { SITE_EMB, SITE_ATTN_P, SITE_ATTN_OUT, SITE_ACT, SITE_FFN_OUT, SITE_OUT, SITE_TAIL };
static uint64_t site_key(uint64_t key, int layer, int site) {
    return rng_key(key, (uint64_t)layer * 8 + (uint64_t)site + 1);
}

static void declare_layer(ParamTable *pt, LayerIdx *li, int l, int C, int F, int swiglu,
                          double std) {
    char n[64];
#define ADD(field, suffix, decay, init, ...)                                                       \
    (snprintf(n, sizeof n, "layers.%d.%s", l, suffix),                                             \
     li->field = param_add(pt, n, decay, init, __VA_ARGS__))
    size_t c = (size_t)C, f = (size_t)F;
    ADD(ln1_w, "ln1.weight", 0, PARAM_ONES, 1, c);
    ADD(ln1_b, "ln1.bias", 0, PARAM_ZEROS, 1, c);
    ADD(qkv_w, "attn.qkv.weight", 1, PARAM_NORMAL(std), 2, 3 * c, c);
    ADD(qkv_b, "attn.qkv.bias", 0, PARAM_ZEROS, 1, 3 * c);
    ADD(proj_w, "attn.proj.weight", 1, PARAM_RESIDUAL(std), 2, c, c);
    ADD(proj_b, "attn.proj.bias", 0, PARAM_ZEROS, 1, c);
    ADD(ln2_w, "ln2.weight", 0, PARAM_ONES, 1, c);
    ADD(ln2_b, "ln2.bias", 0, PARAM_ZEROS, 1, c);
    ADD(fc1_w, "ffn.fc1.weight", 1, PARAM_NORMAL(std), 2, f, c);
    ADD(fc1_b, "ffn.fc1.bias", 0, PARAM_ZEROS, 1, f);
    li->gate_w = li->gate_b = -1;
    if (swiglu) {
        ADD(gate_w, "ffn.gate.weight", 1, PARAM_NORMAL(std), 2, f, c);
        ADD(gate_b, "ffn.gate.bias", 0, PARAM_ZEROS, 1, f);
    }
    ADD(fc2_w, "ffn.fc2.weight", 1, PARAM_RESIDUAL(std), 2, c, f);
    ADD(fc2_b, "ffn.fc2.bias", 0, PARAM_ZEROS, 1, c);
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
static void adaptive_declare(Model *m, const Config *cfg, ParamTable *pt, int V) {
    const Adaptive *a = &m->ad;
    const int tie = cfg->model.output.tie;
    const double std = cfg->model.init_std;
    char n[64];
    adaptive_layout(&m->ad, cfg, V);
    for (int k = 0; k < ADAPT_MAX; k++) m->ad_emb[k] = m->ad_proj[k] = -1;
    for (int k = 0; k < ADAPT_MAX; k++) m->ad_out_emb[k] = m->ad_out_proj[k] = -1;
    for (int k = 0; k < a->K; k++) {
        size_t size = (size_t)(a->start[k + 1] - a->start[k]), d = (size_t)a->dim[k];
        ParamInit emb = PARAM_NORMAL(1.0 / sqrt((double)d));
        ParamInit proj = PARAM_NORMAL(sqrt(2.0 / (double)((size_t)a->C + d)));
        snprintf(n, sizeof n, "adaptive.emb.%d.weight", k);
        m->ad_emb[k] = param_add(pt, n, 1, emb, 2, size, d);
        snprintf(n, sizeof n, "adaptive.proj.%d.weight", k);
        m->ad_proj[k] = param_add(pt, n, 1, proj, 2, (size_t)a->C, d);
    }
    m->ad_cluster = a->K > 1 ? param_add(pt, "adaptive.cluster.weight", 1, PARAM_NORMAL(std), 2,
                                         (size_t)(a->K - 1), (size_t)a->C)
                             : -1;
    for (int k = 0; k < a->K && !tie; k++) {
        size_t size = (size_t)(a->start[k + 1] - a->start[k]), d = (size_t)a->dim[k];
        ParamInit emb = PARAM_NORMAL(1.0 / sqrt((double)d));
        ParamInit proj = PARAM_NORMAL(sqrt(2.0 / (double)((size_t)a->C + d)));
        snprintf(n, sizeof n, "adaptive.out.emb.%d.weight", k);
        m->ad_out_emb[k] = param_add(pt, n, 1, emb, 2, size, d);
        snprintf(n, sizeof n, "adaptive.out.proj.%d.weight", k);
        if (k) m->ad_out_proj[k] = param_add(pt, n, 1, proj, 2, (size_t)a->C, d);
    }
}

/* The tied token embedding (V, C) ~ normal(0, C^-1/2) (see the top). */
static void full_declare(Model *m, const Config *cfg, ParamTable *pt, int V) {
    size_t C = (size_t)cfg->model.d_model;
    m->tok_emb =
        param_add(pt, "tok_emb.weight", 1, PARAM_NORMAL(1.0 / sqrt((double)C)), 2, (size_t)V, C);
}

/* The output layer, one row per model.output.type: the token embedding at the bottom and the
 * softmax at the top share their weights, so both ends are one choice, made in output_of(). */
struct OutputLayer {
    void (*declare)(Model *m, const Config *cfg, ParamTable *pt, int V);
    /* floats of a->logits, a->losses, a->outx and int32s of a->rows for N rows */
    void (*scratch)(const Model *m, size_t N, size_t sizes[4]);
    /* x (N, C) = the tokens' embeddings * sqrt(C); dweights += from dx */
    void (*embed_forward)(Model *m, float *x, const int32_t *tokens, size_t N);
    void (*embed_backward)(Model *m, const float *dx, const int32_t *tokens, size_t N);
    /* losses (N) of the hidden state of pass p */
    void (*loss)(Model *m, const Pass *p, const int32_t *targets, float *losses);
    /* forward and backward at once: dx (N, C) = d(scale * sum loss) / d hidden; returns the
     * summed loss */
    double (*loss_backward)(Model *m, const Pass *p, float *dx, const int32_t *targets,
                            float scale);
    /* FLOPs per token of the softmax */
    double (*flops)(const Config *cfg, int V);
};
static const OutputLayer output_full, output_adaptive;

static const OutputLayer *output_of(const Config *cfg) {
    return strcmp(cfg->model.output.type, "adaptive") ? &output_full : &output_adaptive;
}

/* Fills pt (its previous contents are not freed) and m's tensor indices, m->layer allocated. */
static void declare(Model *m, const Config *cfg, ParamTable *pt, int V) {
    memset(pt, 0, sizeof *pt);
    m->layer = xcalloc((size_t)cfg->model.n_layers, sizeof *m->layer);
    int C = cfg->model.d_model, F = cfg->model.d_ff;
    int swiglu = strcmp(cfg->model.activation, "swiglu") == 0;
    double std = cfg->model.init_std;
    memset(&m->ad, 0, sizeof m->ad);
    m->tok_emb = -1;
    m->out = output_of(cfg);
    m->out->declare(m, cfg, pt, V);
    for (int l = 0; l < cfg->model.n_layers; l++)
        declare_layer(pt, &m->layer[l], l, C, F, swiglu, std);
    m->lnf_w = m->lnf_b = -1;
    if (cfg->model.final_norm) {
        m->lnf_w = param_add(pt, "ln_f.weight", 0, PARAM_ONES, 1, (size_t)C);
        m->lnf_b = param_add(pt, "ln_f.bias", 0, PARAM_ZEROS, 1, (size_t)C);
    }
    const PosMethod *pm = pos_find(cfg->model.position);
    if (pm && pm->declare) pm->declare(cfg, pt);
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

void model_declare(const Config *cfg, ParamTable *pt, int V) {
    Model scratch = {0}; /* only the indices are written */
    declare(&scratch, cfg, pt, V);
    free(scratch.layer);
}

float *tensor_ptr(const Model *m, float *base, int idx) {
    return idx < 0 ? NULL : base + m->pt.t[idx].offset;
}

LayerView layer_view(const Model *m, float *base, int l) {
    const LayerIdx *i = &m->layer[l];
#define V_(f) .f = tensor_ptr(m, base, i->f)
    return (LayerView){V_(ln1_w),  V_(ln1_b),  V_(qkv_w), V_(qkv_b), V_(proj_w),
                       V_(proj_b), V_(ln2_w),  V_(ln2_b), V_(fc1_w), V_(fc1_b),
                       V_(gate_w), V_(gate_b), V_(fc2_w), V_(fc2_b)};
#undef V_
}

Adaptive adaptive_view(const Model *m, float *base) {
    Adaptive a = m->ad;
    for (int k = 0; k < a.K; k++) {
        a.emb[k] = tensor_ptr(m, base, m->ad_emb[k]);
        a.proj[k] = tensor_ptr(m, base, m->ad_proj[k]);
        a.out_emb[k] = m->ad_out_emb[k] >= 0 ? tensor_ptr(m, base, m->ad_out_emb[k]) : a.emb[k];
        a.out_proj[k] = k == 0                   ? NULL
                        : m->ad_out_proj[k] >= 0 ? tensor_ptr(m, base, m->ad_out_proj[k])
                                                 : a.proj[k];
    }
    a.cluster = tensor_ptr(m, base, m->ad_cluster);
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
static void alloc_activations(Model *m) {
    Activations *a = &m->a;
    size_t N = (size_t)m->max_B * m->max_T, C = m->C, F = m->F, H = m->H;
    size_t TT = m->training ? (size_t)m->max_T * m->max_T : 0;
    size_t S = m->training ? (size_t)m->L : 1;
    size_t NC = mul_sat(N, C), NF = mul_sat(N, F), SNC = mul_sat(S, NC), SNF = mul_sat(S, NF);
    size_t BHTT = mul_sat(mul_sat((size_t)m->max_B, H), TT);
    a->att_threads = m->training ? 0 : omp_get_max_threads();
    size_t out[4];
    m->out->scratch(m, N, out);
    struct {
        float **p;
        size_t n;
    } plan[] = {
        {&a->res, mul_sat(S + 1, NC)},
        {&a->mid, SNC},
        {&a->ln1, SNC},
        {&a->ln1_mean, S * N},
        {&a->ln1_rstd, S * N},
        {&a->ln2, SNC},
        {&a->ln2_mean, S * N},
        {&a->ln2_rstd, S * N},
        {&a->qkv, mul_sat(3, SNC)},
        {&a->probs, mul_sat(S, BHTT)},
        {&a->att, SNC},
        {&a->fc1, SNF},
        {&a->gate, m->swiglu ? SNF : 0},
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
         m->training ? 0 : attention_tiled_scratch_floats(m->C, m->H, a->att_threads)},
        {&a->dres, m->training ? NC : 0},
        {&a->dtmp, m->training ? NC : 0},
        {&a->dln, m->training ? NC : 0},
        {&a->datt, m->training ? NC : 0},
        {&a->dqkv, m->training ? mul_sat(3, NC) : 0},
        {&a->dff1, m->training ? NF : 0},
        {&a->dff2, m->training ? NF : 0},
    };
    size_t total = 0, n_plan = sizeof plan / sizeof plan[0];
    for (size_t i = 0; i < n_plan; i++) total += (plan[i].n + 15) / 16 * 16;
    if (total >= SAT)
        sys_error("out of memory: the activations of %d sequences of %d tokens need more than "
                  "2^60 bytes",
                  m->max_B, m->max_T);
    float *base = xcalloc(total, sizeof(float));
    prefault(base, total * sizeof(float));
    for (size_t i = 0, off = 0; i < n_plan; i++) {
        *plan[i].p = plan[i].n ? base + off : NULL;
        off += (plan[i].n + 15) / 16 * 16;
    }
    m->act_bytes = total * sizeof(float);
    a->rows = out[3] ? xcalloc(out[3], sizeof(int32_t)) : NULL;
    m->act_bytes += out[3] * sizeof(int32_t);
}

void model_create(Model *m, const Config *cfg, int V, int max_B, int max_T, int training) {
    memset(m, 0, sizeof *m);
    m->cfg = cfg;
    m->L = cfg->model.n_layers;
    m->C = cfg->model.d_model;
    m->H = cfg->model.n_heads;
    m->F = cfg->model.d_ff;
    m->V = V;
    m->swiglu = strcmp(cfg->model.activation, "swiglu") == 0;
    m->act = m->swiglu                                    ? ACT_SWIGLU
             : strcmp(cfg->model.activation, "relu") == 0 ? ACT_RELU
                                                          : ACT_GELU;
    m->final_norm = cfg->model.final_norm;
    m->max_B = max_B;
    m->max_T = max_T;
    m->training = training;
    declare(m, cfg, &m->pt, V);
    m->params = xcalloc(m->pt.total, sizeof(float));
    if (training) m->grads = xcalloc(m->pt.total, sizeof(float));
    alloc_activations(m);
    m->pos = (Pos){.m = pos_find(cfg->model.position),
                   .n_layers = m->L,
                   .C = m->C,
                   .H = m->H,
                   .Hkv = m->H,
                   .D = m->C / m->H,
                   .max_T = max_T,
                   .pt = &m->pt,
                   .params = m->params,
                   .grads = m->grads};
    if (m->pos.m->setup) m->pos.m->setup(&m->pos, cfg);
}

void model_free(Model *m) {
    param_free(&m->pt);
    free(m->layer);
    free(m->params);
    free(m->grads);
    free(m->a.res);
    free(m->a.rows);
    free(m->pos.state);
    memset(m, 0, sizeof *m);
}

/* Tensor k draws from rng_key(seed, k), so a tensor's values depend on its place in the table
 * only, not on the thread count or on the other tensors. */
void model_init(Model *m, uint64_t seed) {
    for (int k = 0; k < m->pt.n; k++) {
        const TensorSpec *t = &m->pt.t[k];
        float *p = m->params + t->offset;
        uint64_t key = rng_key(seed, (uint64_t)k);
        double s = t->init.std;
        switch (t->init.kind) {
        case INIT_ZEROS:
        case INIT_ONES:
            for (size_t i = 0; i < t->numel; i++) p[i] = t->init.kind == INIT_ONES ? 1.0f : 0.0f;
            break;
        case INIT_RESIDUAL:
            s /= sqrt(2.0 * m->L);
            /* fall through */
        case INIT_NORMAL:
            for (size_t i = 0; i < t->numel; i++) p[i] = (float)(s * rng_normal(key, i));
            break;
        case INIT_POS: /* below, by the method */
            break;
        }
    }
    if (m->pos.m->init) m->pos.m->init(&m->pos, rng_key(seed, 0x706f73ull));
}

/* The one place a norm is applied: out (N, C) = norm(x) * g + b, mean and rstd (N) saved for
 * the backward. LayerNorm is the only model.norm yet; another (RMSNorm) is a case here. */
static void norm_forward(const Model *m, float *out, float *mean, float *rstd, const float *x,
                         const float *g, const float *b, size_t N) {
    layernorm_forward(out, mean, rstd, x, g, b, N, m->C, 1e-5f);
}

/* dx += ; dg, db += (layernorm_backward's contract) */
static void norm_backward(const Model *m, float *dx, float *dg, float *db, const float *dout,
                          const float *x, const float *g, const float *mean, const float *rstd,
                          size_t N) {
    layernorm_backward(dx, dg, db, dout, x, g, mean, rstd, N, m->C);
}

/* Per-layer activation slot: every layer in a training pass, one shared slot otherwise. */
static size_t slot(const Pass *p, int l) {
    return p->train ? (size_t)l : 0;
}

static void add_into(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* The attention shape of layer l in pass p. */
static AttnShape attn_shape(const Model *m, const Pass *p, int l) {
    return (AttnShape){.B = p->B,
                       .T = p->T,
                       .C = m->C,
                       .H = m->H,
                       .Hkv = m->H,
                       .layer = l,
                       .pos = &m->pos,
                       .pos0 = p->pos0,
                       .attn_dropout = p->train ? (float)m->cfg->model.attn_dropout : 0.0f,
                       .key = site_key(p->key, l, SITE_ATTN_P),
                       .scratch = m->a.bh_tt,
                       .tile_threads = m->a.att_threads};
}

static void block_forward(Model *m, const Pass *p, int l, float drop) {
    Activations *a = &m->a;
    const int C = m->C, F = m->F;
    const size_t N = (size_t)p->B * p->T, s = slot(p, l), NC = N * C, NF = N * F;
    const size_t BHTT = (size_t)p->B * m->H * p->T * p->T;
    const AttnShape as = attn_shape(m, p, l);
    LayerView w = layer_view(m, m->params, l);
    float *xin = a->res + s * NC, *mid = a->mid + s * NC, *xout = a->res + (s + 1) * NC;
    if (!p->train) xout = xin; /* evaluation: the stream is updated in place */
    float *ln1 = a->ln1 + s * NC, *qkv = a->qkv + s * N * 3 * C, *att = a->att + s * NC;
    float *ln2 = a->ln2 + s * NC, *fc1 = a->fc1 + s * NF, *act = a->act + s * NF;
    float *gate = m->swiglu ? a->gate + s * NF : NULL;
    const PosMethod *pm = m->pos.m;

    TIMED(PF_LN, 0,
          norm_forward(m, ln1, a->ln1_mean + s * N, a->ln1_rstd + s * N, xin, w.ln1_w, w.ln1_b, N));
    TIMED(PF_QKV, 0, matmul_forward(qkv, ln1, w.qkv_w, w.qkv_b, N, C, 3 * C));
    if (pm->rotate_forward)
        TIMED(PF_ATTN, 0,
              pm->rotate_forward(&m->pos, qkv, qkv + C, 3 * (size_t)C, l, p->B, p->T, p->pos0));
    if (a->att_tiles) /* an evaluation model */
        TIMED(PF_ATTN, 0, attention_forward_tiled(att, qkv, &as, a->att_tiles));
    else
        TIMED(PF_ATTN, 0, attention_forward(att, a->probs + s * BHTT, qkv, &as));
    TIMED(PF_PROJ, 0, matmul_forward(a->tmp, att, w.proj_w, w.proj_b, N, C, C));
    TIMED(PF_RESID, 0, {
        dropout_forward(a->tmp, a->tmp, NC, drop, site_key(p->key, l, SITE_ATTN_OUT));
        add_into(mid, xin, a->tmp, NC);
    });
    TIMED(PF_LN, 0,
          norm_forward(m, ln2, a->ln2_mean + s * N, a->ln2_rstd + s * N, mid, w.ln2_w, w.ln2_b, N));
    TIMED(PF_FFN_MM, 0, matmul_forward(fc1, ln2, w.fc1_w, w.fc1_b, N, C, F));
    if (m->swiglu) {
        TIMED(PF_FFN_MM, 0, matmul_forward(gate, ln2, w.gate_w, w.gate_b, N, C, F));
        TIMED(PF_ACT, 0, glu_forward(act, gate, fc1, NF, m->act));
    } else {
        TIMED(PF_ACT, 0, act_forward(act, fc1, NF, m->act));
    }
    float act_drop = p->train ? (float)m->cfg->model.act_dropout : 0.0f;
    TIMED(PF_ACT, 0, dropout_forward(act, act, NF, act_drop, site_key(p->key, l, SITE_ACT)));
    TIMED(PF_FFN_MM, 0, matmul_forward(a->tmp, act, w.fc2_w, w.fc2_b, N, F, C));
    TIMED(PF_RESID, 0, {
        dropout_forward(a->tmp, a->tmp, NC, drop, site_key(p->key, l, SITE_FFN_OUT));
        add_into(xout, mid, a->tmp, NC);
    });
}

/* The residual stream leaving the last layer: its own slot in training, else the shared one. */
static float *last_stream(const Model *m, const Pass *p) {
    return m->a.res + (p->train ? (size_t)m->L * p->B * p->T * m->C : 0);
}

const float *model_hidden(const Model *m, const Pass *p) {
    return m->final_norm ? m->a.lnf : last_stream(m, p);
}

void model_forward(Model *m, const Pass *p, const int32_t *inputs) {
    if (p->B > m->max_B || p->pos0 < 0 || p->pos0 + p->T > m->max_T || (p->train && !m->training))
        sys_error("internal: forward of %dx%d from position %d exceeds the model's %dx%d capacity",
                  p->B, p->T, p->pos0, m->max_B, m->max_T);
    Activations *a = &m->a;
    const int C = m->C;
    const size_t N = (size_t)p->B * p->T, NC = N * C;
    float drop = p->train ? (float)m->cfg->model.dropout : 0.0f;
    if (m->pos.m->prepare) m->pos.m->prepare(&m->pos, p->pos0 + p->T);

    TIMED(PF_EMBED, 0, {
        m->out->embed_forward(m, a->res, inputs, N);
        if (m->pos.m->embed_forward) m->pos.m->embed_forward(&m->pos, a->res, p->B, p->T, p->pos0);
        dropout_forward(a->res, a->res, NC, drop, site_key(p->key, 0, SITE_EMB));
    });
    for (int l = 0; l < m->L; l++) block_forward(m, p, l, drop);
    if (m->final_norm)
        TIMED(PF_LN, 0,
              norm_forward(m, a->lnf, a->lnf_mean, a->lnf_rstd, last_stream(m, p),
                           tensor_ptr(m, m->params, m->lnf_w), tensor_ptr(m, m->params, m->lnf_b),
                           N));
}

double model_loss(Model *m, const Pass *p, const int32_t *targets, float *losses) {
    size_t N = (size_t)p->B * p->T;
    TIMED(PF_OUTPUT, 0, m->out->loss(m, p, targets, losses));
    double sum = 0.0;
    for (size_t i = 0; i < N; i++) sum += losses[i];
    return sum;
}

static void block_backward(Model *m, const Pass *p, int l, float drop) {
    Activations *a = &m->a;
    const int C = m->C, F = m->F;
    const size_t N = (size_t)p->B * p->T, NC = N * C, NF = N * F, s = (size_t)l;
    const size_t BHTT = (size_t)p->B * m->H * p->T * p->T;
    const AttnShape as = attn_shape(m, p, l);
    LayerView w = layer_view(m, m->params, l), g = layer_view(m, m->grads, l);
    const float *xin = a->res + s * NC, *mid = a->mid + s * NC, *ln1 = a->ln1 + s * NC;
    const float *qkv = a->qkv + s * N * 3 * C, *att = a->att + s * NC, *ln2 = a->ln2 + s * NC;
    const float *fc1 = a->fc1 + s * NF, *act = a->act + s * NF;
    const float *gate = m->swiglu ? a->gate + s * NF : NULL;
    const PosMethod *pm = m->pos.m;
    float act_drop = (float)m->cfg->model.act_dropout;

    /* x_out = mid + drop(fc2(act)) ; a->dres holds d x_out and becomes d mid */
    TIMED(PF_RESID, 1,
          dropout_backward(a->dtmp, a->dres, NC, drop, site_key(p->key, l, SITE_FFN_OUT)));
    TIMED(PF_FFN_MM, 1,
          matmul_backward(a->dff1, g.fc2_w, g.fc2_b, a->dtmp, act, w.fc2_w, N, F, C, 0));
    TIMED(PF_ACT, 1,
          dropout_backward(a->dff1, a->dff1, NF, act_drop, site_key(p->key, l, SITE_ACT)));
    if (m->swiglu) {
        TIMED(PF_ACT, 1, glu_backward(a->dff2, a->dff1, a->dff1, gate, fc1, NF, m->act));
        TIMED(PF_FFN_MM, 1, {
            matmul_backward(a->dln, g.gate_w, g.gate_b, a->dff2, ln2, w.gate_w, N, C, F, 0);
            matmul_backward(a->dln, g.fc1_w, g.fc1_b, a->dff1, ln2, w.fc1_w, N, C, F, 1);
        });
    } else {
        TIMED(PF_ACT, 1, act_backward(a->dff1, a->dff1, fc1, NF, m->act));
        TIMED(PF_FFN_MM, 1,
              matmul_backward(a->dln, g.fc1_w, g.fc1_b, a->dff1, ln2, w.fc1_w, N, C, F, 0));
    }
    TIMED(PF_LN, 1,
          norm_backward(m, a->dres, g.ln2_w, g.ln2_b, a->dln, mid, w.ln2_w, a->ln2_mean + s * N,
                        a->ln2_rstd + s * N, N));
    /* mid = x_in + drop(proj(att)) ; a->dres becomes d x_in */
    TIMED(PF_RESID, 1,
          dropout_backward(a->dtmp, a->dres, NC, drop, site_key(p->key, l, SITE_ATTN_OUT)));
    TIMED(PF_PROJ, 1,
          matmul_backward(a->datt, g.proj_w, g.proj_b, a->dtmp, att, w.proj_w, N, C, C, 0));
    TIMED(PF_ATTN, 1, {
        attention_backward(a->dqkv, a->bh_tt, a->datt, qkv, a->probs + s * BHTT, &as);
        if (pm->bias_backward) pm->bias_backward(&m->pos, a->bh_tt, l, p->B, p->T);
        if (pm->rotate_backward)
            pm->rotate_backward(&m->pos, a->dqkv, a->dqkv + C, 3 * (size_t)C, l, p->B, p->T,
                                p->pos0);
    });
    TIMED(PF_QKV, 1,
          matmul_backward(a->dln, g.qkv_w, g.qkv_b, a->dqkv, ln1, w.qkv_w, N, C, 3 * C, 0));
    TIMED(PF_LN, 1,
          norm_backward(m, a->dres, g.ln1_w, g.ln1_b, a->dln, xin, w.ln1_w, a->ln1_mean + s * N,
                        a->ln1_rstd + s * N, N));
}

double model_backward(Model *m, const Pass *p, const int32_t *inputs, const int32_t *targets,
                      float scale) {
    /* bias_backward reduces dscores by segment distance, which is what training (pos0 = 0)
     * needs; nothing trains from another position */
    if (!p->train || p->pos0 != 0)
        sys_error("internal: backward of a pass that is not a training pass from position 0");
    Activations *a = &m->a;
    const int C = m->C;
    const size_t N = (size_t)p->B * p->T, NC = N * C;
    float *dfinal = m->final_norm ? a->dln : a->dres;
    double loss;
    TIMED(PF_OUTPUT, 1, loss = m->out->loss_backward(m, p, dfinal, targets, scale));
    if (m->final_norm) {
        memset(a->dres, 0, NC * sizeof(float));
        TIMED(PF_LN, 1,
              norm_backward(m, a->dres, tensor_ptr(m, m->grads, m->lnf_w),
                            tensor_ptr(m, m->grads, m->lnf_b), a->dln, last_stream(m, p),
                            tensor_ptr(m, m->params, m->lnf_w), a->lnf_mean, a->lnf_rstd, N));
    }
    float drop = (float)m->cfg->model.dropout;
    for (int l = m->L - 1; l >= 0; l--) block_backward(m, p, l, drop);
    TIMED(PF_EMBED, 1, {
        dropout_backward(a->dres, a->dres, NC, drop, site_key(p->key, 0, SITE_EMB));
        if (m->pos.m->embed_backward)
            m->pos.m->embed_backward(&m->pos, a->dres, p->B, p->T, p->pos0);
        m->out->embed_backward(m, a->dres, inputs, N);
    });
    return loss;
}

/* ---- full softmax over the vocabulary with the tied token embedding (ops/xent.c) ---- */
/* logits in chunks of XENT_CHUNK rows; nothing else */
static void full_scratch(const Model *m, size_t N, size_t sizes[4]) {
    (void)N;
    sizes[0] = (size_t)XENT_CHUNK * m->V;
    sizes[1] = sizes[2] = sizes[3] = 0;
}

static void full_embed_forward(Model *m, float *x, const int32_t *tokens, size_t N) {
    embedding_forward(x, tokens, tensor_ptr(m, m->params, m->tok_emb), N, m->C, sqrtf((float)m->C));
}

static void full_embed_backward(Model *m, const float *dx, const int32_t *tokens, size_t N) {
    embedding_backward(tensor_ptr(m, m->grads, m->tok_emb), dx, tokens, N, m->C,
                       sqrtf((float)m->C));
}

static void full_loss(Model *m, const Pass *p, const int32_t *targets, float *losses) {
    xent_forward(losses, model_hidden(m, p), tensor_ptr(m, m->params, m->tok_emb), targets,
                 (size_t)p->B * p->T, m->C, m->V, m->a.logits);
}

static double full_loss_backward(Model *m, const Pass *p, float *dx, const int32_t *targets,
                                 float scale) {
    return xent_forward_backward(dx, tensor_ptr(m, m->grads, m->tok_emb), model_hidden(m, p),
                                 tensor_ptr(m, m->params, m->tok_emb), targets, (size_t)p->B * p->T,
                                 m->C, m->V, scale, m->a.logits);
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
    .flops = full_flops,
};

/* ---- adaptive input and tied adaptive softmax (ops/adaptive.c) ---- */
/* the clusters' logits; per-row losses for the backward and the dropped hidden state (training
 * only); the rows grouped by cluster */
static void adaptive_scratch(const Model *m, size_t N, size_t sizes[4]) {
    sizes[0] = adaptive_scratch_floats(&m->ad);
    sizes[1] = m->training ? N : 0;
    sizes[2] = m->training && m->cfg->model.output.dropout > 0 ? mul_sat(N, (size_t)m->C) : 0;
    sizes[3] = N;
}

static void adaptive_embed_forward(Model *m, float *x, const int32_t *tokens, size_t N) {
    Adaptive w = adaptive_view(m, m->params);
    adaptive_input_forward(x, tokens, &w, N, sqrtf((float)m->C), m->a.rows, m->a.logits);
}

static void adaptive_embed_backward(Model *m, const float *dx, const int32_t *tokens, size_t N) {
    Adaptive w = adaptive_view(m, m->params), g = adaptive_view(m, m->grads);
    adaptive_input_backward(&g, dx, tokens, &w, N, sqrtf((float)m->C), m->a.rows, m->a.logits);
}

/* The adaptive softmax's input: the final hidden state, after its dropout in training. */
static const float *softmax_input(Model *m, const Pass *p) {
    float drop = (float)m->cfg->model.output.dropout;
    if (!p->train || drop <= 0.0f) return model_hidden(m, p);
    size_t NC = (size_t)p->B * p->T * m->C;
    dropout_forward(m->a.outx, model_hidden(m, p), NC, drop, site_key(p->key, m->L, SITE_OUT));
    return m->a.outx;
}

static AdaptiveDrop tail_dropout(const Model *m, const Pass *p) {
    return (AdaptiveDrop){p->train ? (float)m->cfg->model.output.dropout : 0.0f,
                          site_key(p->key, m->L, SITE_TAIL)};
}

static void adaptive_loss(Model *m, const Pass *p, const int32_t *targets, float *losses) {
    Adaptive w = adaptive_view(m, m->params);
    AdaptiveDrop drop = tail_dropout(m, p);
    adaptive_softmax_forward(losses, softmax_input(m, p), &w, targets, (size_t)p->B * p->T, &drop,
                             m->a.rows, m->a.logits);
}

static double adaptive_loss_backward(Model *m, const Pass *p, float *dx, const int32_t *targets,
                                     float scale) {
    const size_t N = (size_t)p->B * p->T;
    Adaptive w = adaptive_view(m, m->params), g = adaptive_view(m, m->grads);
    AdaptiveDrop drop = tail_dropout(m, p);
    double loss =
        adaptive_softmax_forward_backward(dx, &g, m->a.losses, softmax_input(m, p), &w, targets, N,
                                          scale, &drop, m->a.rows, m->a.logits);
    dropout_backward(dx, dx, N * m->C, (float)m->cfg->model.output.dropout,
                     site_key(p->key, m->L, SITE_OUT));
    return loss;
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
    .flops = adaptive_flops,
};

double model_flops_per_token(const Config *cfg, int V, int T) {
    double C = cfg->model.d_model, F = cfg->model.d_ff;
    double ffn = strcmp(cfg->model.activation, "swiglu") == 0 ? 3 * C * F : 2 * C * F;
    double matmuls = 2.0 * (3 * C * C + C * C + ffn);
    /* q.k and p.v over the causal triangle: on average (T+1)/2 keys per query */
    double attention = 2.0 * 2.0 * C * (T + 1) / 2.0;
    return cfg->model.n_layers * (matmuls + attention) + output_of(cfg)->flops(cfg, V);
}

size_t model_param_bytes(const Model *m) {
    return 4 * m->pt.total * sizeof(float);
}
