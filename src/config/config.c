/* config.c — the key table and the JSON validator behind config.h.
 *
 * Resolving a user's tree is one pass over the tables: each known key is looked up in the
 * user's JSON, checked (type, range, choices) or taken from its default, and added to a fresh
 * tree in table order. The user's tree is then walked for keys that no table knows. The fresh
 * tree is what config_to_json prints, so printing and parsing again gives the same config.
 *
 * Conventions: a key's path is dotted ("model.position.offset"); every error is one line
 * "<origin>: <path>: <what>", where origin is the file name or "--set <assignment>", except a
 * text that is not strict JSON (json_check.h), which is "<origin>:<line>:<column>: <what>".
 * Work happens in a temporary Config that replaces the caller's only on success. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../position/position.h"
#include "../util/util.h"
#include "../io/json_check.h"

#define PATH_LEN 256
#define FIELD(f) offsetof(Config, f)
/* For string and enum keys, [min, max] bounds the length in bytes; the mirror's capacity. */
#define CAP(f) (double)(sizeof(((Config *)0)->f) - 1)
#define INT31  2147483647.0
/* The table's bounds are inclusive; an open bound such as lr > 0 becomes a tiny positive min. */
#define POSITIVE 1e-30

static ConfigKey core_keys[] = {
    {"model.n_layers", KEY_INT, "6", 1, 256, NULL, "number of transformer blocks",
     FIELD(model.n_layers)},
    {"model.d_model", KEY_INT, "256", 1, 65536, NULL,
     "model width; must be divisible by model.n_heads", FIELD(model.d_model)},
    {"model.n_heads", KEY_INT, "8", 1, 1024, NULL,
     "attention heads; each has width d_model / n_heads", FIELD(model.n_heads)},
    {"model.d_ff", KEY_INT, "1024", 1, 1 << 20, NULL,
     "FFN hidden width (for swiglu: the width of both the gate and the up projection)",
     FIELD(model.d_ff)},
    /* no default in the tree: absent means n_heads, so --set model.n_heads alone stays valid */
    {"model.n_kv_heads", KEY_INT, NULL, 1, 1024, NULL,
     "key/value heads, a divisor of n_heads (default: n_heads, multi-head attention); 1 = "
     "multi-query attention (Shazeer 2019), else grouped-query (Ainslie et al. 2023): query "
     "head h reads kv head h / (n_heads / n_kv_heads)",
     FIELD(model.n_kv_heads)},
    {"model.activation", KEY_ENUM, "\"gelu\"", 1, CAP(model.activation),
     "relu|gelu|swiglu|glu|geglu",
     "FFN non-linearity; swiglu, glu and geglu are gated units (Shazeer 2020): act(x W_gate) * "
     "(x W_fc1) with act = SiLU, sigmoid, GELU",
     FIELD(model.activation)},
    {"model.norm", KEY_ENUM, "\"layernorm\"", 1, CAP(model.norm), "layernorm|rmsnorm",
     "every norm of the model: LayerNorm, or RMSNorm (Zhang & Sennrich 2019: x / rms(x) * g, no "
     "mean, no bias)",
     FIELD(model.norm)},
    {"model.norm_eps", KEY_FLOAT, "1e-5", POSITIVE, 1, NULL,
     "epsilon inside the square root of every norm", FIELD(model.norm_eps)},
    {"model.norm_position", KEY_ENUM, "\"pre\"", 1, CAP(model.norm_position),
     "pre|post|sandwich|deepnorm",
     "where the norms sit: pre x + f(N(x)); post N(x + f(x)); sandwich x + N'(f(N(x))); deepnorm "
     "N(a x + f(x)), a = (2 n_layers)^(1/4) (docs/architecture.md)",
     FIELD(model.norm_position)},
    {"model.final_norm", KEY_BOOL, "true", 0, 1, NULL,
     "norm after the last block (Baevski & Auli's adaptive-input model has none); must be false "
     "with post and deepnorm, whose blocks end in a norm",
     FIELD(model.final_norm)},
    {"model.dropout", KEY_FLOAT, "0.1", 0, 0.99, NULL,
     "dropout on the embeddings and on the output of every residual branch", FIELD(model.dropout)},
    {"model.attn_dropout", KEY_FLOAT, "0.0", 0, 0.99, NULL, "dropout on the attention weights",
     FIELD(model.attn_dropout)},
    {"model.act_dropout", KEY_FLOAT, "0.0", 0, 0.99, NULL,
     "dropout on the FFN activation (inside the FFN)", FIELD(model.act_dropout)},
    {"model.init_std", KEY_FLOAT, "0.02", 0, 10, NULL,
     "weight matrices start as normal(0, init_std); the residual output projections (attn.proj, "
     "ffn.fc2) use init_std/sqrt(2*n_layers), or with deepnorm v, attn.proj and the FFN "
     "matrices init_std*(8*n_layers)^(-1/4); the tied embedding uses d_model^-1/2",
     FIELD(model.init_std)},
    /* choices is filled by config_keys(): the methods are only known from the registry. */
    {"model.position.type", KEY_ENUM, "\"sinusoidal\"", 1, CAP(model.position), NULL,
     "position method; its own keys sit beside type in model.position (see Position methods)",
     FIELD(model.position)},
    {"model.output.type", KEY_ENUM, "\"full\"", 1, CAP(model.output.type), "full|adaptive",
     "output layer: full = softmax over the vocabulary with the tied token embedding; adaptive = "
     "Baevski & Auli's adaptive input with Grave et al.'s adaptive softmax (the vocabulary must "
     "be sorted by frequency, as it always is here)",
     FIELD(model.output.type)},
    {"model.output.cutoffs", KEY_FLOAT_LIST, "[20000, 60000]", 1, INT31, NULL,
     "adaptive only: ids where the head and each tail cluster end (increasing integers below the "
     "vocabulary size; [] = one cluster, a full softmax through the projection)",
     NO_FIELD},
    {"model.output.factor", KEY_INT, "4", 1, 65536, NULL,
     "adaptive only: cluster k embeds in d_model / factor^k dimensions",
     FIELD(model.output.factor)},
    {"model.output.tie", KEY_BOOL, "true", 0, 1, NULL,
     "adaptive only: the softmax reuses the input tables and projections (fairseq's "
     "tie_adaptive_weights + tie_adaptive_proj)",
     FIELD(model.output.tie)},
    {"model.output.dropout", KEY_FLOAT, "0.0", 0, 0.99, NULL,
     "adaptive only: dropout on the hidden state entering the softmax and on each tail's "
     "projection (fairseq's adaptive_softmax_dropout; 0.2 in Baevski & Auli)",
     FIELD(model.output.dropout)},

    {"train.seq_len", KEY_INT, "256", 1, 1 << 20, NULL,
     "training sequence length L (tokens per sequence)", FIELD(train.seq_len)},
    {"train.batch", KEY_INT, "8", 1, 1 << 16, NULL, "sequences per micro-batch",
     FIELD(train.batch)},
    {"train.accum", KEY_INT, "1", 1, 1 << 16, NULL,
     "micro-batches per optimizer step (gradient accumulation)", FIELD(train.accum)},
    {"train.steps", KEY_INT, "1000", 0, 1e9, NULL, "optimizer steps", FIELD(train.steps)},
    {"train.lr", KEY_FLOAT, "5e-4", POSITIVE, 10, NULL,
     "peak learning rate, reached at the end of warmup", FIELD(train.lr)},
    {"train.min_lr", KEY_FLOAT, "0", 0, 10, NULL, "floor of the learning-rate decay",
     FIELD(train.min_lr)},
    {"train.warmup", KEY_INT, "100", 0, 1e9, NULL,
     "steps of linear learning-rate warmup (may exceed train.steps)", FIELD(train.warmup)},
    {"train.schedule", KEY_ENUM, "\"cosine\"", 1, CAP(train.schedule),
     "cosine|inverse_sqrt|constant", "learning-rate decay after warmup", FIELD(train.schedule)},
    {"train.precision", KEY_ENUM, "\"fp32\"", 1, CAP(train.precision), "fp32|bf16",
     "fp32: every product in float32 (train.matmul's engine); bf16: the products of the linear "
     "layers and the output layer take bfloat16 inputs with float32 accumulation through oneDNN "
     "(a CPU with AVX512-BF16); attention, weights, gradients, optimizer state, norms, softmax "
     "and the loss stay float32",
     FIELD(train.precision)},
    {"train.matmul", KEY_ENUM, "\"openblas\"", 1, CAP(train.matmul), "openblas|onednn",
     "the engine of float32 products outside attention: OpenBLAS's sgemm or oneDNN's matmul "
     "(faster on some hosts: scripts/bench_matmul.sh); bf16 always multiplies through oneDNN",
     FIELD(train.matmul)},
    {"train.weight_decay", KEY_FLOAT, "0.01", 0, 10, NULL,
     "AdamW decoupled weight decay (weight matrices only)", FIELD(train.weight_decay)},
    {"train.beta1", KEY_FLOAT, "0.9", 0, 0.999999, NULL, "AdamW decay rate of the first moment",
     FIELD(train.beta1)},
    {"train.beta2", KEY_FLOAT, "0.98", 0, 0.999999, NULL, "AdamW decay rate of the second moment",
     FIELD(train.beta2)},
    {"train.eps", KEY_FLOAT, "1e-8", POSITIVE, 1, NULL,
     "AdamW epsilon, added to the root of the second moment", FIELD(train.eps)},
    {"train.clip", KEY_FLOAT, "1.0", 0, 1e9, NULL,
     "clip the global gradient norm to this value (0 = no clipping)", FIELD(train.clip)},
    {"train.seed", KEY_INT, "1", 0, INT31, NULL,
     "seed of every random stream (initialization, batch order, dropout)", FIELD(train.seed)},
    {"train.log_every", KEY_INT, "10", 1, 1e9, NULL, "steps between training log lines",
     FIELD(train.log_every)},
    {"train.eval_every", KEY_INT, "200", 0, 1e9, NULL,
     "steps between validation evaluations (0 = only at the end)", FIELD(train.eval_every)},
    {"train.eval_tokens", KEY_INT, "65536", 0, INT31, NULL,
     "validation tokens used by periodic evaluation (0 = the whole split)",
     FIELD(train.eval_tokens)},
    {"train.ckpt_every", KEY_INT, "0", 0, 1e9, NULL,
     "steps between checkpoints (0 = only at the end and on interrupt)", FIELD(train.ckpt_every)},
    {"train.threads", KEY_INT, "0", 0, 1024, NULL, "OpenMP threads (0 = all cores)",
     FIELD(train.threads)},

    {"data.dir", KEY_STRING, "\"data/wikitext-2\"", 1, CAP(data.dir), NULL,
     "directory holding the token files", FIELD(data.dir)},
    {"data.train", KEY_STRING, "\"wiki.train.tokens\"", 1, CAP(data.train), NULL,
     "training split, a file in data.dir", FIELD(data.train)},
    {"data.valid", KEY_STRING, "\"wiki.valid.tokens\"", 1, CAP(data.valid), NULL,
     "validation split, a file in data.dir", FIELD(data.valid)},
    {"data.test", KEY_STRING, "\"wiki.test.tokens\"", 1, CAP(data.test), NULL,
     "test split, a file in data.dir", FIELD(data.test)},
    {"data.vocab", KEY_STRING, "\"\"", 0, CAP(data.vocab), NULL,
     "vocabulary file in data.dir, one `word count` per line (e.g. WikiText-103's full-train "
     "counts); \"\" = build the vocabulary from data.train",
     FIELD(data.vocab)},
};
#define N_CORE     (int)(sizeof core_keys / sizeof core_keys[0])
#define POS_PREFIX "model.position."

const ConfigKey *config_keys(int *n) {
    for (int i = 0; i < N_CORE; i++)
        if (!strcmp(core_keys[i].name, POS_PREFIX "type")) core_keys[i].choices = pos_names();
    *n = N_CORE;
    return core_keys;
}

/* ---- errors ---- */

typedef struct {
    const char *origin; /* file name or "--set <assignment>" */
    char *buf;
    size_t n;
} Err;

__attribute__((format(printf, 2, 3))) static int fail(const Err *e, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(e->buf, e->n, "%s: %s", e->origin, msg);
    /* Key names come from the user's JSON and may hold line breaks; a message is one line. */
    for (char *p = e->buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return -1;
}

/* A value as the user wrote it, for "got ...": compact JSON, shortened. */
static void describe(const cJSON *v, char *out, size_t n) {
    if (cJSON_IsNumber(v) && !isfinite(v->valuedouble)) { /* cJSON would print "null" */
        snprintf(out, n, "%g", v->valuedouble);
        return;
    }
    char *s = cJSON_PrintUnformatted(v);
    assert(s);
    if (strlen(s) > 40) memcpy(s + 37, "...", 4);
    snprintf(out, n, "%s", s);
    cJSON_free(s);
}

/* ---- dotted paths ---- */

/* Copies the first component of a dotted path into part; returns the rest, NULL at the end. */
static const char *split(const char *path, char *part, size_t n) {
    const char *dot = strchr(path, '.');
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    snprintf(part, n, "%.*s", (int)len, path);
    return dot ? dot + 1 : NULL;
}

/* The value at a dotted path of tree, or NULL if absent. If a component on the way is present
 * but not an object ({"model": 5} for model.n_layers), returns that component and sets *stop
 * to the length of its path; otherwise *stop is 0. stop may be NULL. */
static const cJSON *find(const cJSON *tree, const char *path, size_t *stop) {
    char part[PATH_LEN];
    const cJSON *node = tree;
    const char *rest = path;
    if (stop) *stop = 0;
    for (;;) {
        rest = split(rest, part, sizeof part);
        node = cJSON_GetObjectItemCaseSensitive(node, part);
        if (!node || !rest) return node;
        if (!cJSON_IsObject(node)) {
            if (stop) *stop = (size_t)(rest - 1 - path);
            return node;
        }
    }
}

/* Adds item at a dotted path of tree, creating the objects on the way. */
static void insert(cJSON *tree, const char *path, cJSON *item) {
    char part[PATH_LEN];
    cJSON *node = tree;
    const char *rest = split(path, part, sizeof part);
    while (rest) {
        cJSON *child = cJSON_GetObjectItemCaseSensitive(node, part);
        node = child ? child : cJSON_AddObjectToObject(node, part);
        rest = split(rest, part, sizeof part);
    }
    cJSON_AddItemToObject(node, part, item);
}

/* ---- checking one value ---- */

static int in_choices(const char *choices, const char *s) {
    size_t len = strlen(s);
    for (const char *p = choices; p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && !strncmp(p, s, n)) return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

static int check_range(const Err *e, const ConfigKey *k, const char *path, const cJSON *v) {
    double x = v->valuedouble;
    if (x >= k->min && x <= k->max) return 0;
    char got[64];
    describe(v, got, sizeof got);
    if (k->type == KEY_INT)
        return fail(e, "%s: %s is out of range [%.0f, %.0f]", path, got, k->min, k->max);
    return fail(e, "%s: %s is out of range [%.12g, %.12g]", path, got, k->min, k->max);
}

static int check_list(const Err *e, const ConfigKey *k, const char *path, const cJSON *v) {
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, v) {
        char item[PATH_LEN + 16], got[64];
        snprintf(item, sizeof item, "%s[%d]", path, i++);
        describe(x, got, sizeof got);
        if (!cJSON_IsNumber(x)) return fail(e, "%s: expected a number, got %s", item, got);
        if (check_range(e, k, item, x)) return -1;
    }
    return 0;
}

static int check_value(const Err *e, const ConfigKey *k, const char *path, const cJSON *v) {
    char got[64];
    describe(v, got, sizeof got);
    switch (k->type) {
    case KEY_INT:
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
            return fail(e, "%s: expected an integer, got %s", path, got);
        return check_range(e, k, path, v);
    case KEY_FLOAT:
        if (!cJSON_IsNumber(v)) return fail(e, "%s: expected a number, got %s", path, got);
        return check_range(e, k, path, v);
    case KEY_BOOL:
        if (!cJSON_IsBool(v)) return fail(e, "%s: expected true or false, got %s", path, got);
        return 0;
    case KEY_STRING: {
        if (!cJSON_IsString(v)) return fail(e, "%s: expected a string, got %s", path, got);
        size_t len = strlen(v->valuestring);
        if (len > k->max)
            return fail(e, "%s: %s is too long (%zu bytes, at most %.0f)", path, got, len, k->max);
        if (len < k->min)
            return fail(e, "%s: %s is too short (%zu bytes, at least %.0f)", path, got, len,
                        k->min);
        return 0;
    }
    case KEY_ENUM:
        if (!cJSON_IsString(v) || !in_choices(k->choices, v->valuestring))
            return fail(e, "%s: expected one of %s, got %s", path, k->choices, got);
        return 0;
    case KEY_FLOAT_LIST:
        if (!cJSON_IsArray(v)) return fail(e, "%s: expected a list of numbers, got %s", path, got);
        return check_list(e, k, path, v);
    }
    assert(0 && "unknown key type");
    return -1;
}

/* ---- resolving a tree ---- */

/* Resolves one table into out: each key's value from the user's tree (checked) or from its
 * default, in table order. prefix is "" for the core keys and POS_PREFIX for a method's. */
static int resolve_keys(const Err *e, const cJSON *in, cJSON *out, const char *prefix,
                        const ConfigKey *keys, int n) {
    for (int i = 0; i < n; i++) {
        const ConfigKey *k = &keys[i];
        char path[PATH_LEN];
        snprintf(path, sizeof path, "%s%s", prefix, k->name);
        size_t stop;
        const cJSON *v = find(in, path, &stop);
        if (stop) {
            char got[64];
            describe(v, got, sizeof got);
            return fail(e, "%.*s: expected an object, got %s", (int)stop, path, got);
        }
        cJSON *item;
        if (v) {
            if (check_value(e, k, path, v)) return -1;
            item = cJSON_Duplicate(v, 1);
        } else {
            if (!k->def) continue; /* optional, no value */
            item = cJSON_Parse(k->def);
            assert(item && "a key table's default is not JSON");
            assert(check_value(e, k, path, item) == 0 && "a key table's default is invalid");
        }
        insert(out, path, item);
    }
    return 0;
}

/* The i-th known key as a full path: the core keys, then the position method's. 0 past the
 * end. */
static int known_key(int i, const PosMethod *m, char *out, size_t n) {
    if (i < N_CORE) {
        snprintf(out, n, "%s", core_keys[i].name);
        return 1;
    }
    i -= N_CORE;
    if (i >= m->n_keys) return 0;
    snprintf(out, n, POS_PREFIX "%s", m->keys[i].name);
    return 1;
}

/* If key lies inside section parent ("" = top level), copies the component below parent into
 * part: child_of("model.position.type", "model") is "position". */
static int child_of(const char *key, const char *parent, char *part, size_t n) {
    size_t len = strlen(parent);
    if (len && (strncmp(key, parent, len) || key[len] != '.')) return 0;
    split(key + (len ? len + 1 : 0), part, n);
    return 1;
}

/* The keys of a section, "n_layers, d_model, ...", each once. */
static void list_children(const char *parent, const PosMethod *m, char *out, size_t n) {
    char key[PATH_LEN], part[PATH_LEN], prev[PATH_LEN], prev_part[PATH_LEN];
    out[0] = 0;
    for (int i = 0; known_key(i, m, key, sizeof key); i++) {
        if (!child_of(key, parent, part, sizeof part)) continue;
        int seen = 0;
        for (int j = 0; j < i && !seen && known_key(j, m, prev, sizeof prev); j++)
            seen = child_of(prev, parent, prev_part, sizeof prev_part) && !strcmp(prev_part, part);
        if (seen) continue;
        size_t used = strlen(out);
        snprintf(out + used, n - used, "%s%s", used ? ", " : "", part);
    }
}

/* 2: path is a key; 1: path is a section (holds keys); 0: unknown. */
static int classify(const char *path, const PosMethod *m) {
    char key[PATH_LEN];
    size_t len = strlen(path);
    int kind = 0;
    for (int i = 0; known_key(i, m, key, sizeof key); i++) {
        if (!strcmp(key, path)) return 2;
        if (!strncmp(key, path, len) && key[len] == '.') kind = 1;
    }
    return kind;
}

static int fail_unknown(const Err *e, const char *path, const char *parent, const PosMethod *m) {
    char keys[1024];
    list_children(parent, m, keys, sizeof keys);
    if (!*parent) return fail(e, "%s: unknown section (sections: %s)", path, keys);
    if (!strcmp(parent, "model.position"))
        return fail(e, "%s: unknown key for position type '%s' (keys: %s)", path, m->name, keys);
    return fail(e, "%s: unknown key (keys: %s)", path, keys);
}

/* Walks the user's tree for keys that no table knows. (Duplicate keys, which cJSON would keep
 * both of, never get this far: json_check refuses them in the text.) */
static int check_unknown(const Err *e, const cJSON *obj, const char *parent, const PosMethod *m) {
    for (const cJSON *c = obj->child; c; c = c->next) {
        char path[PATH_LEN];
        snprintf(path, sizeof path, "%s%s%s", parent, *parent ? "." : "", c->string);
        if (strchr(c->string, '.'))
            return fail(e, "\"%s\": a key name cannot contain '.'; nest objects instead", path);
        int kind = classify(path, m);
        if (kind == 0) return fail_unknown(e, path, parent, m);
        if (kind == 1 && check_unknown(e, c, path, m)) return -1;
    }
    return 0;
}

/* Copies the resolved values into the typed fields of Config. */
static void fill_mirrors(Config *c) {
    for (int i = 0; i < N_CORE; i++) {
        const ConfigKey *k = &core_keys[i];
        const cJSON *v = find(c->json, k->name, NULL);
        if (k->offset == NO_FIELD || !v) continue;
        char *field = (char *)c + k->offset;
        switch (k->type) {
        case KEY_INT:
            *(int *)field = (int)v->valuedouble;
            break;
        case KEY_BOOL:
            *(int *)field = cJSON_IsTrue(v);
            break;
        case KEY_FLOAT:
            *(double *)field = v->valuedouble;
            break;
        case KEY_STRING:
        case KEY_ENUM:
            assert(strlen(v->valuestring) <= k->max && "a choice is longer than its field");
            strcpy(field, v->valuestring);
            break;
        case KEY_FLOAT_LIST:
            assert(0 && "a list key cannot have a typed field");
        }
    }
}

/* model.output.cutoffs into its typed mirror: integers, increasing, few enough, and each
 * cluster at least one dimension wide. */
static int fill_cutoffs(const Err *e, Config *c) {
    const cJSON *list = find(c->json, "model.output.cutoffs", NULL), *x;
    int n = 0, prev = 0, width = c->model.d_model;
    cJSON_ArrayForEach(x, list) {
        double v = x->valuedouble;
        if (n == CONFIG_MAX_CUTOFFS)
            return fail(e, "model.output.cutoffs: more than %d cutoffs", CONFIG_MAX_CUTOFFS);
        if (v != floor(v))
            return fail(e, "model.output.cutoffs[%d]: expected an integer, got %g", n, v);
        if ((int)v <= prev)
            return fail(e, "model.output.cutoffs[%d]: %d does not increase (previous %d)", n,
                        (int)v, prev);
        width /= c->model.output.factor;
        if (width < 1 && !strcmp(c->model.output.type, "adaptive"))
            return fail(e,
                        "model.output.cutoffs: cluster %d would have d_model / factor^%d = 0 "
                        "dimensions (d_model %d, factor %d)",
                        n + 1, n + 1, c->model.d_model, c->model.output.factor);
        c->model.output.cutoffs[n++] = prev = (int)v;
    }
    c->model.output.n_cutoffs = n;
    return 0;
}

static int check_cross(const Err *e, Config *c) {
    if (c->model.d_model % c->model.n_heads)
        return fail(e, "model.d_model (%d) must be divisible by model.n_heads (%d)",
                    c->model.d_model, c->model.n_heads);
    if (!c->model.n_kv_heads) c->model.n_kv_heads = c->model.n_heads;
    if (c->model.n_heads % c->model.n_kv_heads)
        return fail(e, "model.n_kv_heads (%d) must divide model.n_heads (%d)", c->model.n_kv_heads,
                    c->model.n_heads);
    const char *np = c->model.norm_position;
    if (c->model.final_norm && (!strcmp(np, "post") || !strcmp(np, "deepnorm")))
        return fail(e,
                    "model.final_norm must be false with model.norm_position \"%s\" (its "
                    "blocks already end in a norm)",
                    np);
    return fill_cutoffs(e, c);
}

/* Resolves and checks a parsed tree into c; c is untouched on failure. cross = 0 skips the
 * checks between keys (check_cross and the method's check), for a --set that is not the last
 * of a list: `--set model.norm_position=post --set model.final_norm=false` passes through a
 * state that is only an error until the second assignment. */
static int from_tree(Config *c, const cJSON *in, const char *origin, char *err, size_t n,
                     int cross) {
    Err e = {origin, err, n};
    if (!cJSON_IsObject(in)) {
        char got[64];
        describe(in, got, sizeof got);
        return fail(&e, "expected a JSON object at the top level, got %s", got);
    }
    int nk;
    const ConfigKey *keys = config_keys(&nk);
    Config tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.json = cJSON_CreateObject();
    if (resolve_keys(&e, in, tmp.json, "", keys, nk)) goto fail;
    fill_mirrors(&tmp);
    const PosMethod *m = tmp.model.pos_method = pos_find(tmp.model.position);
    assert(m && "model.position.type passed its enum check");
    if (resolve_keys(&e, in, tmp.json, POS_PREFIX, m->keys, m->n_keys)) goto fail;
    if (check_unknown(&e, in, "", m) || (cross && check_cross(&e, &tmp))) goto fail;
    if (cross && m->check) {
        char msg[1024] = "";
        if (m->check(&tmp, msg, sizeof msg)) {
            fail(&e, "%s", msg);
            goto fail;
        }
    }
    *c = tmp;
    return 0;
fail:
    cJSON_Delete(tmp.json);
    return -1;
}

/* ---- public ---- */

/* The problem json_check finds in a user's text, as "<origin>:<line>:<column>: <what>", the
 * position an editor jumps to. */
static int check_text(const char *text, size_t len, const char *origin, char *err, size_t n) {
    size_t pos;
    char msg[512], where[1100];
    if (!json_check(text, len, 0, &pos, msg, sizeof msg)) return 0;
    int line, col;
    json_line_col(text, pos, &line, &col);
    snprintf(where, sizeof where, "%s:%d:%d", origin, line, col);
    Err e = {where, err, n};
    return fail(&e, "%s", msg);
}

/* text[0, len) may hold NUL bytes (a file); json_check reports them like any bad byte. */
static int from_text(Config *c, const char *text, size_t len, const char *origin, char *err,
                     size_t n) {
    if (check_text(text, len, origin, err, n)) return -1;
    cJSON *in = cJSON_ParseWithLength(text, len);
    if (!in) sys_error("out of memory parsing %s", origin); /* the text is valid JSON */
    int rc = from_tree(c, in, origin, err, n, 1);
    cJSON_Delete(in);
    return rc;
}

int config_from_text(Config *c, const char *json_text, const char *origin, char *err, size_t n) {
    return from_text(c, json_text, strlen(json_text), origin, err, n);
}

int config_from_file(Config *c, const char *path, char *err, size_t n) {
    size_t len;
    char *text = read_file(path, &len);
    if (!text) {
        snprintf(err, n, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    int rc = from_text(c, text, len, path, err, n);
    free(text);
    return rc;
}

/* The table entry of a full path, or NULL: a core key or a key of c's position method. */
static const ConfigKey *key_at(const Config *c, const char *path) {
    for (int i = 0; i < N_CORE; i++)
        if (!strcmp(core_keys[i].name, path)) return &core_keys[i];
    const PosMethod *m = c->model.pos_method;
    size_t np = strlen(POS_PREFIX);
    for (int i = 0; m && !strncmp(path, POS_PREFIX, np) && i < m->n_keys; i++)
        if (!strcmp(m->keys[i].name, path + np)) return &m->keys[i];
    return NULL;
}

/* A bare --set string goes into config.json and the checkpoint as it is: it must be text
 * that their readers accept, i.e. valid UTF-8 once cJSON has escaped it. */
static int check_bare(const Err *e, const cJSON *s) {
    char *printed = cJSON_PrintUnformatted(s), msg[512];
    if (!printed) sys_error("out of memory printing a --set value");
    size_t pos;
    int rc = json_check(printed, strlen(printed), 0, &pos, msg, sizeof msg);
    cJSON_free(printed);
    return rc ? fail(e, "the value is not text: %s", msg) : 0;
}

/* --set values are JSON ("3e-4", "true", "[0.5,0.25]") when json_check accepts them. Anything
 * else, and any value of a string key, is a bare string, so `data.dir=2024` and
 * `model.activation=relu` need no quotes; but a value that opens an object or a list is meant
 * as JSON, and its mistake is reported rather than turned into a string. *out is owned. */
static int parse_value(const Err *e, const Config *c, const char *path, const char *text,
                       cJSON **out) {
    const ConfigKey *k = key_at(c, path);
    int stringy = k && (k->type == KEY_STRING || k->type == KEY_ENUM);
    size_t len = strlen(text), pos;
    char msg[512], first = text[strspn(text, " \t\r\n")];
    if (!json_check(text, len, 0, &pos, msg, sizeof msg)) {
        *out = cJSON_ParseWithLength(text, len);
        if (!*out) sys_error("out of memory parsing --set %s", path); /* valid JSON */
        if (!stringy || cJSON_IsString(*out)) return 0;
        cJSON_Delete(*out);
    } else if (!stringy && (first == '{' || first == '[')) {
        int line, col;
        json_line_col(text, pos, &line, &col);
        *out = NULL;
        return fail(e, "invalid JSON value at character %d: %s", col, msg);
    }
    *out = cJSON_CreateString(text);
    return check_bare(e, *out);
}

/* Puts value (owned) at a dotted path of tree, creating objects on the way. Setting
 * model.position.type to another method starts a fresh position object: the old method's keys
 * mean nothing to the new one, and the new one's defaults fill in. */
static int set_path(const Err *e, cJSON *tree, const char *path, cJSON *value) {
    if (!strcmp(path, POS_PREFIX "type")) {
        const char *old = cJSON_GetStringValue(find(tree, path, NULL));
        if (!cJSON_IsString(value) || !old || strcmp(old, value->valuestring))
            cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(tree, "model"),
                                                    "position");
    }
    char part[PATH_LEN];
    cJSON *node = tree;
    const char *rest = split(path, part, sizeof part);
    while (rest) {
        cJSON *child = cJSON_GetObjectItemCaseSensitive(node, part);
        if (!child) child = cJSON_AddObjectToObject(node, part);
        if (!cJSON_IsObject(child)) {
            cJSON_Delete(value);
            return fail(e, "%s: unknown key (%.*s is not a section)", path, (int)(rest - 1 - path),
                        path);
        }
        node = child;
        rest = split(rest, part, sizeof part);
    }
    if (cJSON_GetObjectItemCaseSensitive(node, part))
        cJSON_ReplaceItemInObjectCaseSensitive(node, part, value);
    else
        cJSON_AddItemToObject(node, part, value);
    return 0;
}

static int valid_path(const char *path) {
    if (!*path || *path == '.' || path[strlen(path) - 1] == '.') return 0;
    return !strstr(path, "..");
}

static int set_one(Config *c, const char *assignment, int cross, char *err, size_t n) {
    char origin[160], path[PATH_LEN];
    if (snprintf(origin, sizeof origin, "--set %s", assignment) >= (int)sizeof origin)
        memcpy(origin + sizeof origin - 4, "...", 4);
    Err e = {origin, err, n};
    const char *eq = strchr(assignment, '=');
    if (!eq) return fail(&e, "expected key=value, e.g. train.lr=3e-4");
    if (eq - assignment >= PATH_LEN) return fail(&e, "key too long");
    snprintf(path, sizeof path, "%.*s", (int)(eq - assignment), assignment);
    if (!valid_path(path)) return fail(&e, "'%s' is not a dotted key like train.lr", path);

    cJSON *value;
    if (parse_value(&e, c, path, eq + 1, &value)) {
        cJSON_Delete(value);
        return -1;
    }
    cJSON *tree = cJSON_Duplicate(c->json, 1);
    if (set_path(&e, tree, path, value)) {
        cJSON_Delete(tree);
        return -1;
    }
    Config tmp;
    int rc = from_tree(&tmp, tree, origin, err, n, cross);
    cJSON_Delete(tree);
    if (rc) return -1;
    config_free(c);
    *c = tmp;
    return 0;
}

int config_set(Config *c, const char *assignment, char *err, size_t n) {
    return set_one(c, assignment, 1, err, n);
}

int config_set_list(Config *c, const char *const *assignments, int count, char *err, size_t n) {
    if (count <= 0) return 0;
    Config tmp;
    if (from_tree(&tmp, c->json, "", err, n, 1))
        sys_error("internal: config_set_list on an invalid config");
    for (int i = 0; i < count; i++)
        if (set_one(&tmp, assignments[i], i == count - 1, err, n)) {
            config_free(&tmp);
            return -1;
        }
    config_free(c);
    *c = tmp;
    return 0;
}

void config_free(Config *c) {
    cJSON_Delete(c->json);
    c->json = NULL;
}

char *config_to_json(const Config *c) {
    char *s = cJSON_Print(c->json);
    if (!s) sys_error("out of memory printing the config");
    return s;
}

/* ---- position-method keys ---- */

static const cJSON *pos_value(const Config *c, const char *key) {
    const cJSON *pos = find(c->json, "model.position", NULL);
    return cJSON_GetObjectItemCaseSensitive(pos, key);
}

double config_pos_num(const Config *c, const char *key) {
    const cJSON *v = pos_value(c, key);
    assert(cJSON_IsNumber(v) && "not a numeric key of this position method");
    return v->valuedouble;
}

int config_pos_bool(const Config *c, const char *key) {
    const cJSON *v = pos_value(c, key);
    assert(cJSON_IsBool(v) && "not a bool key of this position method");
    return cJSON_IsTrue(v);
}

const char *config_pos_str(const Config *c, const char *key) {
    const cJSON *v = pos_value(c, key);
    assert(cJSON_IsString(v) && "not a string key of this position method");
    return v->valuestring;
}

int config_pos_list(const Config *c, const char *key, double *out, int max) {
    const cJSON *v = pos_value(c, key);
    if (!v) return 0;
    assert(cJSON_IsArray(v) && "not a list key of this position method");
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, v) {
        if (i < max) out[i] = x->valuedouble;
        i++;
    }
    return i;
}

/* ---- docs/config.md ---- */

/* A table cell: '|' would end the cell early in Markdown. */
static void md_cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s, f);
    }
}

static void doc_row(FILE *f, const char *prefix, const ConfigKey *k) {
    static const char *type_names[] = {"int", "float", "bool", "string", "enum", "float list"};
    fprintf(f, "| `%s%s` | %s | ", prefix, k->name, type_names[k->type]);
    if (k->def) {
        fputc('`', f);
        md_cell(f, k->def);
        fputc('`', f);
    } else {
        fputs("(none)", f);
    }
    fputs(" | ", f);
    switch (k->type) {
    case KEY_INT:
        fprintf(f, "[%.0f, %.0f]", k->min, k->max);
        break;
    case KEY_FLOAT:
        fprintf(f, "[%.12g, %.12g]", k->min, k->max);
        break;
    case KEY_BOOL:
        fputs("true, false", f);
        break;
    case KEY_STRING:
        fprintf(f, "%.0f to %.0f bytes", k->min, k->max);
        break;
    case KEY_ENUM:
        for (const char *p = k->choices; *p; p++) {
            if (*p == '|')
                fputs(", ", f);
            else
                fputc(*p, f);
        }
        break;
    case KEY_FLOAT_LIST:
        fprintf(f, "each in [%.12g, %.12g]", k->min, k->max);
        break;
    }
    fputs(" | ", f);
    md_cell(f, k->help);
    fputs(" |\n", f);
}

static void doc_table_head(FILE *f) {
    fputs("| key | type | default | range / choices | meaning |\n", f);
    fputs("|---|---|---|---|---|\n", f);
}

void config_write_docs(FILE *f) {
    int nk;
    const ConfigKey *keys = config_keys(&nk);
    fputs("# Configuration reference\n\n"
          "A configuration is a JSON file with three sections: `model` (the network), `train` "
          "(the optimization) and `data` (where the tokens are). Every key is optional and "
          "takes its default when absent, so `{}` is a complete configuration. The resolved "
          "configuration, every default filled in, is saved with each run.\n\n"
          "Any key can be overridden on the command line with `--set key=value` (repeatable, "
          "applied in order), e.g. `--set train.lr=3e-4 --set model.position.type=alibi`. "
          "The value is read as JSON, or else as a bare string; for string keys it is always "
          "the bare text. Setting `model.position.type` to another method resets the other "
          "position keys to that method's defaults.\n\n"
          "Unknown keys, wrong types, out-of-range values and invalid combinations (such as "
          "`model.d_model` not divisible by `model.n_heads`) are errors naming the key; the "
          "programs then exit with status 2.\n\n"
          "This file is generated by `./train --help-config` (`make docs`).\n",
          f);
    char section[PATH_LEN] = "";
    for (int i = 0; i < nk; i++) {
        char part[PATH_LEN];
        split(keys[i].name, part, sizeof part);
        if (strcmp(part, section)) {
            snprintf(section, sizeof section, "%s", part);
            fprintf(f, "\n## %s\n\n", section);
            doc_table_head(f);
        }
        doc_row(f, "", &keys[i]);
    }
    fputs("\n## Position methods\n\n"
          "`model.position.type` selects the method; the method's own keys sit beside it, e.g. "
          "`{\"model\": {\"position\": {\"type\": \"sinusoidal\", \"offset\": 2}}}`. "
          "A key that belongs to another method is an error.\n",
          f);
    for (int i = 0; i < pos_count(); i++) {
        const PosMethod *m = pos_at(i);
        fprintf(f, "\n### %s\n\n%s\n\n", m->name, m->summary);
        if (m->n_keys == 0) {
            fputs("No keys of its own.\n", f);
            continue;
        }
        doc_table_head(f);
        for (int j = 0; j < m->n_keys; j++) doc_row(f, POS_PREFIX, &m->keys[j]);
    }
}
