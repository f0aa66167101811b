/* eval.c — `./eval --ckpt RUN --split valid --lvalid 128,256,512 [--json FILE]`:
 * nonoverlapping evaluation (see evaluate.h) of a checkpoint at several lengths L_valid. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data.h"
#include "evaluate.h"
#include "io/checkpoint.h"
#include "io/progress.h"
#include "model.h"
#include "position/position.h"
#include "util/blas_env.h"
#include "util/util.h"

static const char *USAGE =
    "usage: ./eval --ckpt RUN [--split valid|test] [--lvalid LIST] [--data DIR] [--json FILE]\n"
    "\n"
    "Scores a split with nonoverlapping segments of each length L_valid (fairseq's convention:\n"
    "every token scored once, no context carried across segments) and prints one row per length.\n"
    "  --ckpt RUN     run directory (or its model.safetensors); vocab.txt must sit beside it\n"
    "  --split S      valid (default) or test\n"
    "  --lvalid LIST  lengths: a comma list 128,256,1024 or a range A..B (A, 2A, 4A, ... and B);\n"
    "                 default: the training length\n"
    "  --data DIR     read the split from DIR instead of the run's data.dir\n"
    "  --json FILE    append one JSON line per length to FILE\n"
    "  --threads N    threads (default: the run's train.threads, 0 = all cores)\n"
    "RoPE context extension (rotary models only; sets model.position.scaling/factor/orig_len):\n"
    "  --rope-scaling none|pi|ntk|dynamic-ntk|yarn\n"
    "                 position interpolation, NTK-aware base, NTK per segment length, YaRN\n"
    "  --rope-factor F     scale factor s >= 1 for pi, ntk and yarn (e.g. L_valid / L_train)\n"
    "  --rope-orig-len N   training length for dynamic-ntk and yarn (default train.seq_len)\n";

#define MAX_LENGTHS 256

typedef struct {
    const char *ckpt, *split, *lvalid, *data, *json;
    const char *rope_scaling, *rope_factor, *rope_orig_len; /* NULL: as the checkpoint */
    int threads;
} Args;

static int parse_threads(const char *v) {
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < 0 || x > 1024)
        user_error("--threads: expected 0 (all cores) to 1024, got '%s'", v);
    return (int)x;
}

static Args parse_args(int argc, char **argv) {
    Args a = {.split = "valid", .threads = -1};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) fputs(USAGE, stdout), exit(0);
        if (i + 1 >= argc)
            user_error("unknown argument or missing value: '%s' (see ./eval --help)", o);
        const char *v = argv[++i];
        if (!strcmp(o, "--ckpt"))
            a.ckpt = v;
        else if (!strcmp(o, "--split"))
            a.split = v;
        else if (!strcmp(o, "--lvalid"))
            a.lvalid = v;
        else if (!strcmp(o, "--data"))
            a.data = v;
        else if (!strcmp(o, "--json"))
            a.json = v;
        else if (!strcmp(o, "--threads"))
            a.threads = parse_threads(v);
        else if (!strcmp(o, "--rope-scaling"))
            a.rope_scaling = v;
        else if (!strcmp(o, "--rope-factor"))
            a.rope_factor = v;
        else if (!strcmp(o, "--rope-orig-len"))
            a.rope_orig_len = v;
        else
            user_error("unknown argument '%s' (see ./eval --help)", o);
    }
    if (!a.ckpt) user_error("--ckpt RUN is required (see ./eval --help)");
    if (strcmp(a.split, "valid") && strcmp(a.split, "test"))
        user_error("--split: expected valid or test, got '%s'", a.split);
    return a;
}

static long parse_len(const char *s, const char *end, const char *all) {
    char *stop;
    errno = 0;
    long v = strtol(s, &stop, 10);
    if (stop != end || s == end || errno || v < 1 || v > 10000000)
        user_error("--lvalid: '%s' is not a list of positive lengths (e.g. 128,256 or 512..16000)",
                   all);
    return v;
}

/* "128,256,1024" or "A..B" (A, 2A, 4A, ... below B, then B). */
static int parse_lengths(const char *s, int *out) {
    int n = 0;
    const char *dots = strstr(s, "..");
    if (dots) {
        long a = parse_len(s, dots, s), b = parse_len(dots + 2, s + strlen(s), s);
        if (b < a) user_error("--lvalid: range '%s' ends below its start", s);
        for (long v = a; v < b && n < MAX_LENGTHS - 1; v *= 2) out[n++] = (int)v;
        out[n++] = (int)b;
        return n;
    }
    for (const char *p = s;; p++) {
        const char *e = p + strcspn(p, ",");
        if (n == MAX_LENGTHS) user_error("--lvalid: more than %d lengths", MAX_LENGTHS);
        out[n++] = (int)parse_len(p, e, s);
        if (!*e) break;
        p = e;
    }
    return n;
}

/* --ckpt accepts the run directory or the model file inside it. */
static void resolve_paths(const char *ckpt, char *model, char *dir, size_t n) {
    struct stat st;
    if (stat(ckpt, &st) != 0) user_error("--ckpt: cannot open '%s': %s", ckpt, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        snprintf(dir, n, "%s", ckpt);
        snprintf(model, n, "%s/model.safetensors", ckpt);
    } else {
        snprintf(model, n, "%s", ckpt);
        const char *slash = strrchr(ckpt, '/');
        snprintf(dir, n, "%.*s", slash ? (int)(slash - ckpt) : 1, slash ? ckpt : ".");
    }
}

static int has_pos_key(const Config *cfg, const char *key) {
    const PosMethod *pm = pos_find(cfg->model.position);
    for (int k = 0; k < pm->n_keys; k++)
        if (!strcmp(pm->keys[k].name, key)) return 1;
    return 0;
}

/* --rope-* flags: override the checkpoint's model.position keys. Only methods that declare them
 * (rotary) accept them. Every assignment is validated, so the order keeps each step valid: none
 * and dynamic-ntk take no factor, so for them the factor is set (to 1 unless given) before the
 * scaling, for the others after it. */
static void apply_rope_flags(const Args *a, Config *cfg, const char *ckpt) {
    const char *flag = a->rope_scaling    ? "--rope-scaling"
                       : a->rope_factor   ? "--rope-factor"
                       : a->rope_orig_len ? "--rope-orig-len"
                                          : NULL;
    if (!flag) return;
    if (!has_pos_key(cfg, "scaling"))
        user_error("%s applies to rotary models only; %s uses '%s'", flag, ckpt,
                   cfg->model.position);
    const char *factor = a->rope_factor;
    int no_factor = a->rope_scaling &&
                    (!strcmp(a->rope_scaling, "none") || !strcmp(a->rope_scaling, "dynamic-ntk"));
    if (no_factor && !factor) factor = "1";
    const struct {
        const char *flag, *key, *value;
    } f[] = {{"--rope-factor", "factor", no_factor ? factor : NULL},
             {"--rope-scaling", "scaling", a->rope_scaling},
             {"--rope-factor", "factor", no_factor ? NULL : factor},
             {"--rope-orig-len", "orig_len", a->rope_orig_len}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (!f[i].value) continue;
        char set[256], err[1024];
        snprintf(set, sizeof set, "model.position.%s=%s", f[i].key, f[i].value);
        if (config_set(cfg, set, err, sizeof err)) user_error("%s: %s", f[i].flag, err);
    }
}

/* The position method's scaling, for the --json rows of rotary models. */
static void json_scaling(cJSON *o, const Config *cfg) {
    if (!has_pos_key(cfg, "scaling")) return;
    double L = config_pos_num(cfg, "orig_len");
    cJSON_AddStringToObject(o, "rope_scaling", config_pos_str(cfg, "scaling"));
    cJSON_AddNumberToObject(o, "rope_factor", config_pos_num(cfg, "factor"));
    cJSON_AddNumberToObject(o, "rope_orig_len", L > 0 ? L : cfg->train.seq_len);
}

static void print_row(const EvalResult *r, size_t peak) {
    double loss = r->nll / (double)r->tokens;
    printf("%8d %9zu %10zu %9.4f %11.2f %10.0f %9.0f\n", r->L, r->segments, r->tokens, loss,
           exp(loss), r->tokens / r->seconds, peak / 1e6);
    fflush(stdout);
}

static void json_row(FILE *f, const EvalResult *r, const char *ckpt, const char *split,
                     const Config *cfg, size_t peak) {
    double loss = r->nll / (double)r->tokens;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ckpt", ckpt);
    cJSON_AddStringToObject(o, "split", split);
    cJSON_AddStringToObject(o, "mode", "nonoverlapping");
    cJSON_AddNumberToObject(o, "lvalid", r->L);
    cJSON_AddNumberToObject(o, "segments", (double)r->segments);
    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(o, "loss", loss);
    cJSON_AddNumberToObject(o, "ppl", exp(loss));
    cJSON_AddNumberToObject(o, "tokens_per_s", r->tokens / r->seconds);
    cJSON_AddNumberToObject(o, "peak_rss_mb", peak / 1e6);
    json_scaling(o, cfg);
    jsonl_write(f, o);
    cJSON_Delete(o);
}

typedef struct {
    Progress *pg;
    int L;
    double t0;
} EvalProgress;

static void on_progress(void *ctx, size_t done, size_t total) {
    EvalProgress *e = ctx;
    double el = now_seconds() - e->t0;
    char eta[32];
    format_duration(el / (double)done * (double)(total - done), eta, sizeof eta);
    progress_show(e->pg, 0, "L_valid %d: %zu/%zu tokens (%.0f%%), ETA %s", e->L, done, total,
                  100.0 * done / total, eta);
}

int main(int argc, char **argv) {
    blas_ensure_fast_kernels(argv);
    Args a = parse_args(argc, argv);
    char model_path[2048], dir[2048], path[4200], err[1024];
    resolve_paths(a.ckpt, model_path, dir, sizeof dir);
    Config cfg;
    int V;
    long step;
    if (ckpt_read_config(model_path, &cfg, &V, &step, err, sizeof err)) user_error("%s", err);
    apply_rope_flags(&a, &cfg, a.ckpt);
    threads_setup(a.threads >= 0 ? a.threads : cfg.train.threads);
    int lengths[MAX_LENGTHS], n_len = 1;
    lengths[0] = cfg.train.seq_len;
    if (a.lvalid) n_len = parse_lengths(a.lvalid, lengths);

    Vocab vocab;
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    if (vocab_load(&vocab, path, err, sizeof err)) user_error("%s", err);
    if (vocab.n != V)
        user_error("%s has %d words but the checkpoint's vocabulary has %d", path, vocab.n, V);
    const char *file = !strcmp(a.split, "test") ? cfg.data.test : cfg.data.valid;
    snprintf(path, sizeof path, "%s/%s", a.data ? a.data : cfg.data.dir, file);
    Tokens tok;
    if (tokens_load(&tok, path, &vocab, 1, err, sizeof err))
        user_error("%s: %s", a.data ? "--data" : "data.dir", err);

    int max_L = 0;
    for (int i = 0; i < n_len; i++) max_L = lengths[i] > max_L ? lengths[i] : max_L;
    /* up to 8k tokens per forward pass: several short segments at once, one long one */
    int max_B = max_L >= 8192 ? 1 : 8192 / max_L;
    Model m;
    model_create(&m, &cfg, V, max_B, max_L, 0);
    if (ckpt_load_model(model_path, &m, err, sizeof err)) user_error("%s", err);
    FILE *jf = NULL;
    if (a.json && !(jf = fopen(a.json, "a")))
        user_error("--json: cannot open '%s': %s", a.json, strerror(errno));

    printf("%s (step %ld, trained at L=%d), %s split: %zu tokens", model_path, step,
           cfg.train.seq_len, a.split, tok.n);
    if (tok.n_unk) printf(", %zu unknown words mapped to <unk>", tok.n_unk);
    printf("\n%8s %9s %10s %9s %11s %10s %9s\n", "L_valid", "segments", "tokens", "loss", "ppl",
           "tokens/s", "peak MB");
    Progress pg;
    progress_init(&pg);
    for (int i = 0; i < n_len; i++) {
        EvalProgress ep = {&pg, lengths[i], now_seconds()};
        EvalResult r = eval_nonoverlap(&m, tok.ids, tok.n, lengths[i], vocab.eos, on_progress, &ep);
        progress_end(&pg);
        if (pg.tty) printf("\033[1A\033[K"); /* replace the progress line with the row */
        print_row(&r, peak_rss_bytes());
        if (jf) json_row(jf, &r, model_path, a.split, &cfg, peak_rss_bytes());
    }
    if (jf) fclose(jf);
    model_free(&m);
    tokens_free(&tok);
    vocab_free(&vocab);
    config_free(&cfg);
    return 0;
}
