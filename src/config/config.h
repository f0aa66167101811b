/* config.h — the run configuration: one table of keys drives parsing, validation, defaults,
 * `--set` overrides, `--help-config` and docs/config.md, so they cannot disagree.
 *
 * A config is JSON with sections "model", "train", "data". Every key has a type, a default and
 * a range; unknown keys, wrong types and out-of-range values are errors naming the key. The
 * position method's own keys live under "model.position" and come from the method's table
 * (PosMethod.keys), so adding a method never touches this file.
 *
 * The resolved config (every default filled in) is kept as a cJSON tree — that is what a run
 * directory and a checkpoint store — and mirrored into typed fields for the code to read. */
#ifndef CONFIG_H
#define CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef struct cJSON cJSON;
/* position.h includes this file, so the method is only declared here */
struct PosMethod;

typedef enum { KEY_INT, KEY_FLOAT, KEY_BOOL, KEY_STRING, KEY_ENUM, KEY_FLOAT_LIST } KeyType;

/* One configuration key. `def` is the default written as JSON text ("6", "0.02", "true",
 * "\"gelu\"", "[]"); NULL means the key is optional with no value. Numbers (and list elements)
 * must lie in [min, max]. `offset` locates the typed mirror in Config, or NO_FIELD for keys
 * that only live in the JSON tree (position-method keys). */
typedef struct {
    const char *name; /* dotted path relative to its table: "model.n_layers" or "base" */
    KeyType type;
    const char *def;
    double min, max;
    const char *choices; /* KEY_ENUM: "relu|gelu|swiglu" */
    const char *help;
    size_t offset;
} ConfigKey;
#define NO_FIELD ((size_t)-1)

#define CONFIG_MAX_CUTOFFS 7

typedef struct {
    struct {
        int n_layers, d_model, n_heads, d_ff;
        int n_kv_heads;         /* key and value heads: n_heads when the key is absent */
        char activation[16];    /* relu | gelu | swiglu | glu | geglu */
        char norm[16];          /* layernorm | rmsnorm */
        double norm_eps;        /* of every norm */
        char norm_position[16]; /* pre | post | sandwich | deepnorm */
        int final_norm;         /* bool */
        double dropout;         /* embeddings and residual branches */
        double attn_dropout;    /* attention probabilities */
        double act_dropout;     /* FFN activation */
        double init_std;
        char position[32]; /* model.position.type */
        /* its registry entry, resolved once when the config is read or --set */
        const struct PosMethod *pos_method;
        struct {
            char type[16];                   /* full | adaptive */
            int cutoffs[CONFIG_MAX_CUTOFFS]; /* adaptive: cluster boundaries, increasing */
            int n_cutoffs;
            int factor; /* cluster k has width d_model / factor^k */
            int tie;    /* bool: the softmax reuses the input tables and projections */
            double dropout;
        } output;
    } model;
    struct {
        int seq_len, batch, accum, steps, warmup;
        double lr, min_lr, weight_decay, beta1, beta2, eps, clip;
        char schedule[16]; /* cosine | inverse_sqrt | constant */
        char precision[8]; /* fp32 | bf16 */
        char matmul[16];   /* openblas | onednn: the float32 engine */
        int seed;
        int log_every, eval_every, eval_tokens, ckpt_every;
        int threads;
    } train;
    struct {
        char dir[1024];
        char train[256], valid[256], test[256]; /* file names inside dir */
        char vocab[256]; /* "word count" vocabulary in dir; "" = built from train */
    } data;
    cJSON *json; /* the resolved tree (owned) */
} Config;

/* The core keys (model.*, train.*, data.*); n receives the count. */
const ConfigKey *config_keys(int *n);

/* All of these return 0 on success, or -1 with a one-line message in err (naming the key, the
 * value and what was expected). On failure the Config is left unchanged or freed. The text must
 * pass json_check (strict RFC 8259, no duplicate keys: see json_check.h); where it does not,
 * the message is "<origin>:<line>:<column>: <what>". */
int config_from_text(Config *c, const char *json_text, const char *origin, char *err, size_t n);
int config_from_file(Config *c, const char *path, char *err, size_t n);
/* "train.lr=3e-4", "model.position.type=alibi", "model.position.slopes=[0.5,0.25]".
 * The value is parsed as strict JSON; if that fails, as a bare string (which must be valid
 * UTF-8), except that a value opening '{' or '[' must be valid JSON. Re-validates the whole
 * config. */
int config_set(Config *c, const char *assignment, char *err, size_t n);
/* The assignments in order, as ./train's --set list: each is checked as config_set checks it,
 * but the checks between keys (d_model divisible by n_heads, final_norm with norm_position, a
 * method's own) run once, after the last, so the list may pass through a state that only its
 * later assignments make valid. c is untouched on failure. */
int config_set_list(Config *c, const char *const *assignments, int count, char *err, size_t n);
void config_free(Config *c);
/* The resolved config as pretty JSON (caller frees). */
char *config_to_json(const Config *c);

/* Typed access to position-method keys (already validated and defaulted). */
double config_pos_num(const Config *c, const char *key);
int config_pos_bool(const Config *c, const char *key);
const char *config_pos_str(const Config *c, const char *key);
/* Copies at most max list elements into out; returns the list length (0 if absent). */
int config_pos_list(const Config *c, const char *key, double *out, int max);

/* Markdown reference of every key, core and per position method (docs/config.md). */
void config_write_docs(FILE *f);

#endif
