/* eval.c — `./eval --ckpt RUN --lvalid 512..16000 [--mode sliding --stride S] [--json FILE]`:
 * a sweep of evaluation lengths L_valid over a split, nonoverlapping (the paper's tables) or
 * sliding-window (its Appendix B), see evaluate.h and docs/evaluation.md. One table row per
 * length, an optional JSON line per length (resumable with --skip-done) and an optional
 * per-position loss profile (the paper's "early token curse", section 5). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data.h"
#include "evaluate.h"
#include "checkpoint.h"
#include "io/json_check.h"
#include "io/lengths.h"
#include "io/progress.h"
#include "model.h"
#include "ops/ops.h"
#include "position/position.h"
#include "util/blas_env.h"
#include "util/util.h"

/* `git describe --always --dirty` at build time (the Makefile), so a --json row says which code
 * produced it. */
#ifndef TRAINSHORT_REV
#define TRAINSHORT_REV "unknown"
#endif

static const char *USAGE =
    "usage: ./eval --ckpt RUN [--split valid|test] [--lvalid LIST] [--data DIR]\n"
    "              [--mode nonoverlapping|sliding|nbce] [--stride S] [--json FILE [--skip-done]]\n"
    "              [--nbce-chunk-len M [--nbce-beta B]]\n"
    "              [--per-position FILE [--per-position-buckets N] [--per-position-scale S]]\n"
    "              [--segments FILE]\n"
    "\n"
    "Scores a split at each length L_valid and prints one row per length: L_valid, segments (or\n"
    "windows), tokens scored, mean loss, perplexity, tokens scored per second, peak memory.\n"
    "Every token is scored exactly once in both modes (docs/evaluation.md).\n"
    "  --ckpt RUN     run directory (or its model.safetensors); vocab.txt must sit beside it\n"
    "  --split S      valid (default) or test\n"
    "  --lvalid LIST  lengths, comma-separated items of these forms (default: the training "
    "length):\n"
    "                   N         one length                        128,256,1024\n"
    "                   A..B      A, 2A, 4A, ... below B, then B     512..16000 = "
    "512,1024,...,8192,16000\n"
    "                   A..B:S    A, A+S, A+2S, ... below B, then B  100..350:100 = "
    "100,200,300,350\n"
    "                   paper     the paper's rows for training length L: L + 0, 1, 10, 20, ..., "
    "100,\n"
    "                             200, ..., 1000, 2000, ..., 15000 (35 lengths)\n"
    "  --data DIR     read the split from DIR instead of the run's data.dir\n"
    "  --mode M       nonoverlapping (default): consecutive L_valid-long segments, no context\n"
    "                 carried over (fairseq --context-window 0); sliding: windows of L_valid "
    "tokens\n"
    "                 advancing by --stride S, each scoring only its last S tokens (the first "
    "window\n"
    "                 all of them), so every token sees L_valid-S to L_valid-1 tokens of context\n"
    "                 nbce: windows as sliding's, each scored token's distribution combined by\n"
    "                 NBCE over chunks of --nbce-chunk-len M tokens of the window's context\n"
    "                 (docs/evaluation.md)\n"
    "  --stride S     sliding mode only, 1 <= S <= every L_valid; S = L_valid is nonoverlapping;\n"
    "                 nbce: 1 <= S < every L_valid\n"
    "  --nbce-chunk-len M  nbce mode: chunk length M >= 1 (the model reads M + S tokens at once)\n"
    "  --nbce-beta B  nbce mode: weight of the unconditional term, B >= 0 (default 0.25)\n"
    "  --json FILE    append one JSON line per length to FILE (checkpoint, split, mode, stride,\n"
    "                 git revision, the numbers)\n"
    "  --skip-done    skip lengths whose row (same ckpt, data, split, mode, stride, RoPE "
    "settings)\n"
    "                 is already in the --json FILE: resumes an interrupted sweep; with\n"
    "                 --per-position, a length whose row is there but not its profile (same\n"
    "                 scale and buckets) is evaluated for the profile only\n"
    "  --per-position FILE       append, per length, the mean loss by position inside the\n"
    "                 segment/window, bucketed, as a JSON line (docs/evaluation.md)\n"
    "  --per-position-buckets N  number of buckets (default 64)\n"
    "  --per-position-scale S    linear (default) or log bucket widths\n"
    "  --segments FILE  append, per length, the summed loss and token count of every segment\n"
    "                 (window) in stream order, for paired bootstrap intervals\n"
    "                 (docs/evaluation.md); --skip-done evaluates a length again if only this\n"
    "                 is missing\n"
    "  --threads N    threads (default: the run's train.threads, 0 = all cores)\n"
    "  --precision P  fp32 (default, whatever precision trained the model) or bf16: the products\n"
    "                 outside attention multiply bf16 x bf16 -> f32 through oneDNN\n"
    "                 (a CPU with AVX512-BF16); bf16 rows say \"precision\": \"bf16\"\n"
    "  --matmul E     openblas (default) or onednn: the engine of the float32 products outside\n"
    "                 attention (train.matmul; bf16 always uses oneDNN); onednn rows say\n"
    "                 \"matmul\": \"onednn\"\n"
    "RoPE context extension (rotary models only; sets model.position.scaling/factor/orig_len):\n"
    "  --rope-scaling none|pi|ntk|dynamic-ntk|yarn\n"
    "                 position interpolation, NTK-aware base, NTK per segment length, YaRN\n"
    "  --rope-factor F     scale factor s >= 1 for pi, ntk and yarn (e.g. L_valid / L_train)\n"
    "  --rope-orig-len N   training length for dynamic-ntk and yarn (default train.seq_len)\n"
    "Without a checkpoint:\n"
    "  --print-lengths LIST --train-len L\n"
    "                 print the lengths LIST expands to for training length L, as one JSON\n"
    "                 array (what --lvalid LIST would evaluate), and exit\n";

typedef struct {
    const char *ckpt, *split, *lvalid, *data, *json, *mode, *per_position, *precision, *matmul;
    const char *segments;
    const char *rope_scaling, *rope_factor, *rope_orig_len; /* NULL: as the checkpoint */
    const char *print_lengths;
    int threads, stride, sliding, skip_done, buckets, log_scale, train_len;
    int nbce, nbce_len; /* --mode nbce and its chunk length */
    double nbce_beta;
} Args;

static int parse_threads(const char *v) {
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < 0 || x > 1024)
        user_error("--threads: expected 0 (all cores) to 1024, got '%s'", v);
    return (int)x;
}

/* One flag with a value; returns 0 if o is not one of them. */
static int parse_flag(Args *a, const char *o, const char *v) {
    const char **str = !strcmp(o, "--ckpt")            ? &a->ckpt
                       : !strcmp(o, "--split")         ? &a->split
                       : !strcmp(o, "--lvalid")        ? &a->lvalid
                       : !strcmp(o, "--data")          ? &a->data
                       : !strcmp(o, "--json")          ? &a->json
                       : !strcmp(o, "--mode")          ? &a->mode
                       : !strcmp(o, "--per-position")  ? &a->per_position
                       : !strcmp(o, "--segments")      ? &a->segments
                       : !strcmp(o, "--precision")     ? &a->precision
                       : !strcmp(o, "--matmul")        ? &a->matmul
                       : !strcmp(o, "--rope-scaling")  ? &a->rope_scaling
                       : !strcmp(o, "--rope-factor")   ? &a->rope_factor
                       : !strcmp(o, "--rope-orig-len") ? &a->rope_orig_len
                       : !strcmp(o, "--print-lengths") ? &a->print_lengths
                                                       : NULL;
    if (str)
        *str = v;
    else if (!strcmp(o, "--threads"))
        a->threads = parse_threads(v);
    else if (!strcmp(o, "--stride"))
        a->stride = (int)flag_int(o, v, 1, LENGTHS_MAX_VALUE);
    else if (!strcmp(o, "--nbce-chunk-len"))
        a->nbce_len = (int)flag_int(o, v, 1, LENGTHS_MAX_VALUE);
    else if (!strcmp(o, "--nbce-beta")) {
        if ((a->nbce_beta = flag_number(o, v)) < 0)
            user_error("--nbce-beta: expected a number >= 0, got '%s'", v);
    } else if (!strcmp(o, "--train-len"))
        a->train_len = (int)flag_int(o, v, 1, LENGTHS_MAX_VALUE);
    else if (!strcmp(o, "--per-position-buckets"))
        a->buckets = (int)flag_int(o, v, 1, 100000);
    else if (!strcmp(o, "--per-position-scale")) {
        if (strcmp(v, "linear") && strcmp(v, "log"))
            user_error("--per-position-scale: expected linear or log, got '%s'", v);
        a->log_scale = !strcmp(v, "log");
    } else
        return 0;
    return 1;
}

/* Flags that only make sense together. */
static void check_args(Args *a) {
    if (!a->ckpt) user_error("--ckpt RUN is required (see ./eval --help)");
    if (strcmp(a->split, "valid") && strcmp(a->split, "test"))
        user_error("--split: expected valid or test, got '%s'", a->split);
    if (strcmp(a->mode, "nonoverlapping") && strcmp(a->mode, "sliding") && strcmp(a->mode, "nbce"))
        user_error("--mode: expected nonoverlapping, sliding or nbce, got '%s'", a->mode);
    a->sliding = !strcmp(a->mode, "sliding");
    a->nbce = !strcmp(a->mode, "nbce");
    if (a->sliding && !a->stride) user_error("--mode sliding needs --stride S (1 <= S <= L_valid)");
    if (a->nbce && (!a->stride || !a->nbce_len))
        user_error("--mode nbce needs --stride S and --nbce-chunk-len M");
    if (!a->sliding && !a->nbce && a->stride)
        user_error("--stride applies to --mode sliding and nbce only");
    if (!a->nbce && (a->nbce_len || a->nbce_beta != 0.25))
        user_error("--nbce-chunk-len and --nbce-beta apply to --mode nbce only");
    if (a->nbce && a->per_position)
        user_error("--per-position applies to nonoverlapping and sliding evaluation only");
    if (a->skip_done && !a->json) user_error("--skip-done needs --json FILE (the rows to skip)");
    if (strcmp(a->precision, "fp32") && strcmp(a->precision, "bf16"))
        user_error("--precision: expected fp32 or bf16, got '%s'", a->precision);
    if (!strcmp(a->precision, "bf16") && !bf16_cpu_supported())
        user_error("--precision bf16 needs a CPU with AVX512-BF16 (vdpbf16ps), which this one "
                   "lacks; use --precision fp32");
    if (strcmp(a->matmul, "openblas") && strcmp(a->matmul, "onednn"))
        user_error("--matmul: expected openblas or onednn, got '%s'", a->matmul);
}

/* --print-lengths LIST --train-len L, alone: scripts ask for the lengths a preset will
 * evaluate instead of parsing the list themselves. */
static void print_lengths(const Args *a, int argc) {
    if (!a->print_lengths || !a->train_len || argc != 5)
        user_error("--print-lengths LIST and --train-len L go together, without other flags");
    int lengths[LENGTHS_MAX];
    char err[256];
    int n = lengths_parse(a->print_lengths, a->train_len, lengths, err, sizeof err);
    if (n < 0) user_error("--print-lengths: %s", err);
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "[", lengths[i]);
    printf("]\n");
    exit_flushed();
}

static Args parse_args(int argc, char **argv) {
    Args a = {.split = "valid",
              .mode = "nonoverlapping",
              .precision = "fp32",
              .matmul = "openblas",
              .threads = -1,
              .buckets = 64,
              .nbce_beta = 0.25};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) fputs(USAGE, stdout), exit_flushed();
        if (!strcmp(o, "--skip-done")) {
            a.skip_done = 1;
            continue;
        }
        if (i + 1 >= argc)
            user_error("unknown argument or missing value: '%s' (see ./eval --help)", o);
        if (!parse_flag(&a, o, argv[i + 1]))
            user_error("unknown argument '%s' (see ./eval --help)", o);
        i++;
    }
    if (a.print_lengths || a.train_len) print_lengths(&a, argc);
    check_args(&a);
    return a;
}

static int has_pos_key(const Config *cfg, const char *key) {
    const PosMethod *pm = cfg->model.pos_method;
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

/* What every row of a sweep shares. */
typedef struct {
    const Args *a;
    const Config *cfg;
    const char *model_path, *data_path;
} Sweep;

static int stride_of(const Args *a, int L) {
    return a->sliding || a->nbce ? a->stride : L;
}

/* The fields that say which evaluation a row is; --skip-done compares exactly these. */
static cJSON *row_identity(const Sweep *s, int L) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ckpt", s->model_path);
    cJSON_AddStringToObject(o, "data", s->data_path);
    cJSON_AddStringToObject(o, "split", s->a->split);
    cJSON_AddStringToObject(o, "mode", s->a->mode);
    cJSON_AddNumberToObject(o, "stride", stride_of(s->a, L));
    cJSON_AddNumberToObject(o, "lvalid", L);
    if (s->a->nbce) {
        cJSON_AddNumberToObject(o, "nbce_chunk_len", s->a->nbce_len);
        cJSON_AddNumberToObject(o, "nbce_beta", s->a->nbce_beta);
    }
    json_scaling(o, s->cfg);
    /* only bf16 and oneDNN rows carry these, so the float32 rows of before stay what they were */
    if (!strcmp(s->a->precision, "bf16"))
        cJSON_AddStringToObject(o, "precision", "bf16");
    else if (!strcmp(s->a->matmul, "onednn"))
        cJSON_AddStringToObject(o, "matmul", "onednn");
    return o;
}

/* A per-position row's identity: the length's, plus its bucketing. */
static cJSON *profile_identity(const Sweep *s, int L) {
    cJSON *o = row_identity(s, L);
    cJSON_AddStringToObject(o, "scale", s->a->log_scale ? "log" : "linear");
    cJSON_AddNumberToObject(o, "buckets", s->a->buckets);
    return o;
}

/* Identity fields a row carries only when they differ from the default (so the rows of before
 * stay what they were): a row that has one the id lacks is another evaluation. */
static const char *const optional_identity[] = {"rope_scaling", "rope_factor", "rope_orig_len",
                                                "precision", "matmul"};

static int same_row(const cJSON *row, const cJSON *id) {
    if (!cJSON_IsObject(row)) return 0;
    for (const cJSON *f = id->child; f; f = f->next)
        if (!cJSON_Compare(f, cJSON_GetObjectItemCaseSensitive(row, f->string), 1)) return 0;
    for (size_t i = 0; i < sizeof optional_identity / sizeof *optional_identity; i++)
        if (!cJSON_HasObjectItem(id, optional_identity[i]) &&
            cJSON_HasObjectItem(row, optional_identity[i]))
            return 0;
    return 1;
}

/* Is a row of exactly this identity among the JSON lines of text? */
static int row_done(char *text, const cJSON *id) {
    int found = 0;
    for (char *line = text, *nl; line && *line && !found; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = 0;
        /* a line that is not strict JSON (a duplicate key: which value would count?) is not a
         * row, so its length is evaluated again */
        size_t pos;
        char err[256];
        cJSON *row =
            json_check(line, strlen(line), 0, &pos, err, sizeof err) ? NULL : cJSON_Parse(line);
        found = same_row(row, id);
        cJSON_Delete(row);
        if (nl) *nl = '\n';
    }
    return found;
}

static void print_row(const EvalResult *r, size_t peak) {
    double loss = r->nll / (double)r->tokens;
    printf("%8d %9zu %10zu %9.4f %11.2f %10.0f %9.0f\n", r->L, r->segments, r->tokens, loss,
           exp(loss), r->tokens / r->seconds, peak / 1e6);
    fflush(stdout);
}

/* A row that cannot be written ends the sweep: the rows before it stay whole in the file. */
static void write_row(JsonlFile *f, cJSON *row, int L) {
    char err[2200];
    if (jsonl_append(f, row, err, sizeof err))
        sys_error("%s; the row of L_valid %d is not written (the rows before it are kept)", err, L);
    cJSON_Delete(row);
}

static void json_row(JsonlFile *f, const Sweep *s, const EvalResult *r, size_t peak) {
    double loss = r->nll / (double)r->tokens;
    cJSON *o = row_identity(s, r->L);
    cJSON_AddStringToObject(o, "rev", TRAINSHORT_REV);
    cJSON_AddNumberToObject(o, "segments", (double)r->segments);
    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(o, "nll", r->nll); /* cJSON prints doubles round-trip exact */
    cJSON_AddNumberToObject(o, "loss", loss);
    cJSON_AddNumberToObject(o, "ppl", exp(loss));
    cJSON_AddNumberToObject(o, "tokens_per_s", r->tokens / r->seconds);
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    cJSON_AddNumberToObject(o, "peak_rss_mb", peak / 1e6);
    write_row(f, o, r->L);
}

/* Bucket edges over positions [0, L): bucket i is [edges[i], edges[i+1]). Linear: N equal
 * widths; log: edges at L^(i/N), so the first positions — where the early-token curse lives —
 * get buckets of their own. Edges that coincide (L < N, or the log scale's first buckets) merge.
 * Returns the number of buckets (<= N). */
static int bucket_edges(int L, int N, int log_scale, long *edges) {
    int k = 0;
    edges[k++] = 0;
    for (int i = 1; i <= N; i++) {
        long e = log_scale ? (long)floor(pow((double)L, (double)i / N)) : (long)L * i / N;
        if (i == N) e = L; /* pow may land a hair below L */
        if (e > edges[k - 1]) edges[k++] = e;
    }
    return k - 1;
}

static void per_position_row(JsonlFile *f, const Sweep *s, int L, const EvalPositions *p) {
    long *edges = xcalloc((size_t)s->a->buckets + 1, sizeof *edges);
    int nb = bucket_edges(L, s->a->buckets, s->a->log_scale, edges);
    cJSON *o = profile_identity(s, L);
    cJSON_AddStringToObject(o, "rev", TRAINSHORT_REV);
    cJSON *je = cJSON_AddArrayToObject(o, "edges"), *jl = cJSON_AddArrayToObject(o, "loss"),
          *jc = cJSON_AddArrayToObject(o, "count");
    cJSON_AddItemToArray(je, cJSON_CreateNumber(0));
    for (int b = 0; b < nb; b++) {
        double nll = 0.0;
        size_t count = 0;
        for (long t = edges[b]; t < edges[b + 1]; t++) nll += p->nll[t], count += p->count[t];
        cJSON_AddItemToArray(je, cJSON_CreateNumber((double)edges[b + 1]));
        /* an empty bucket (a split shorter than L) has no mean: null, not 0 */
        cJSON_AddItemToArray(jl, count ? cJSON_CreateNumber(nll / count) : cJSON_CreateNull());
        cJSON_AddItemToArray(jc, cJSON_CreateNumber((double)count));
    }
    write_row(f, o, L);
    free(edges);
}

/* The progress line covers the whole sweep, each length weighted by its work: tokens the model
 * reads times FLOPs per token at that length (attention grows with L_valid). */
typedef struct {
    Progress pg;
    double t0, work_total, work_before, work_L;
    int L, index, count;
} SweepProgress;

static double length_work(const Args *a, const Config *cfg, int V, size_t n, int L, int S) {
    if (!a->nbce) return (double)eval_tokens_read(n, L, S) * model_flops_per_token(cfg, V, L);
    /* per window: the chunks with the scored tokens, and the scored tokens alone */
    const int M = a->nbce_len, chunks = (L - S + M - 1) / M;
    const double windows = (double)n / S, read = (double)chunks * (M + S) + S;
    return windows * read * model_flops_per_token(cfg, V, M + S);
}

static void on_progress(void *ctx, size_t done, size_t total) {
    SweepProgress *e = ctx;
    double frac = (e->work_before + e->work_L * done / (double)total) / e->work_total;
    double el = now_seconds() - e->t0;
    char eta[32], bar[31];
    int fill = (int)(frac * 30 + 0.5);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    format_duration(frac > 0 ? el / frac * (1 - frac) : 0, eta, sizeof eta);
    progress_show(&e->pg, 0, "[%s] %3.0f%%  L_valid %d (%d/%d)  ETA %s", bar, 100 * frac, e->L,
                  e->index, e->count, eta);
}

/* Lengths from --lvalid (default: the training length); each must admit the stride. */
static int sweep_lengths(const Args *a, const Config *cfg, int *lengths) {
    char err[512];
    int n = 1;
    lengths[0] = cfg->train.seq_len;
    if (a->lvalid &&
        (n = lengths_parse(a->lvalid, cfg->train.seq_len, lengths, err, sizeof err)) < 0)
        user_error("--lvalid: %s", err);
    const PosMethod *pm = cfg->model.pos_method;
    int longest = pos_max_positions(pm, cfg);
    if (a->nbce && a->nbce_len + a->stride > longest)
        user_error("--nbce-chunk-len %d + --stride %d: model.position %s stops at length %d (set "
                   "by model.position.%s)",
                   a->nbce_len, a->stride, pm->name, longest, pm->max_positions_key);
    for (int i = 0; i < n; i++) {
        if (a->sliding && a->stride > lengths[i])
            user_error("--stride %d is above L_valid %d (sliding needs 1 <= S <= L_valid)",
                       a->stride, lengths[i]);
        if (a->nbce && a->stride >= lengths[i])
            user_error("--stride %d leaves no context in L_valid %d (nbce needs 1 <= S < L_valid)",
                       a->stride, lengths[i]);
        if (lengths[i] > longest && !a->nbce)
            user_error("--lvalid: model.position %s stops at length %d (set by "
                       "model.position.%s); L_valid %d is longer — use L_valid <= %d",
                       pm->name, longest, pm->max_positions_key, lengths[i], longest);
    }
    return n;
}

/* What each length still needs, a set of these (--skip-done: only what its files lack, so a
 * second row never duplicates one that is there; without it, everything asked for). */
enum { NEED_ROW = 1, NEED_PROFILE = 2, NEED_SEGMENTS = 4 };

/* The lines of an output file when --skip-done looks into it, else NULL. */
static char *done_rows(const Args *a, const char *path) {
    size_t len;
    return a->skip_done && path ? read_file(path, &len) : NULL;
}

/* Fills todo[i] (NEED_* bits; 0: nothing to do); returns how many lengths need an evaluation. */
static int mark_todo(const Sweep *s, const int *lengths, int n, int *todo) {
    const Args *a = s->a;
    char *rows = done_rows(a, a->json), *profiles = done_rows(a, a->per_position),
         *segments = done_rows(a, a->segments);
    int left = 0;
    for (int i = 0; i < n; i++) {
        cJSON *id = row_identity(s, lengths[i]), *pid = profile_identity(s, lengths[i]);
        todo[i] = (rows && row_done(rows, id) ? 0 : NEED_ROW) |
                  (!a->per_position || (profiles && row_done(profiles, pid)) ? 0 : NEED_PROFILE) |
                  (!a->segments || (segments && row_done(segments, id)) ? 0 : NEED_SEGMENTS);
        left += todo[i] != 0;
        cJSON_Delete(id);
        cJSON_Delete(pid);
    }
    free(rows);
    free(profiles);
    free(segments);
    return left;
}

/* One --segments line: the row's identity, then each window's scored tokens and summed loss in
 * stream order (window k scores the tokens after those of windows 0 .. k-1). Losses are printed
 * to 1e-6 nats: far below any difference a bootstrap could resolve, and a third of the bytes. */
static void segments_row(JsonlFile *f, const Sweep *s, int L, size_t n, const double *nll) {
    int S = stride_of(s->a, L);
    size_t nw = eval_window_count(n, L, S);
    cJSON *o = row_identity(s, L);
    cJSON_AddStringToObject(o, "rev", TRAINSHORT_REV);
    cJSON *jt = cJSON_AddArrayToObject(o, "tokens"), *jn = cJSON_AddArrayToObject(o, "nll");
    for (size_t k = 0; k < nw; k++) {
        EvalWindow w = eval_window(n, L, S, k);
        char num[64];
        snprintf(num, sizeof num, "%.6f", nll[k]);
        cJSON_AddItemToArray(jt, cJSON_CreateNumber((double)(w.end - w.score)));
        /* a diverged model's NaN or inf has no JSON number: null, as cJSON writes the row's */
        cJSON_AddItemToArray(jn, isfinite(nll[k]) ? cJSON_CreateRaw(num) : cJSON_CreateNull());
    }
    write_row(f, o, L);
}

/* An output file named by flag, or NULL when the flag was not given. */
static JsonlFile *open_append(const char *flag, const char *path, JsonlFile *f) {
    char err[2200];
    if (!path) return NULL;
    if (jsonl_open(f, path, err, sizeof err)) user_error("%s: %s", flag, err);
    return f;
}

static void close_output(JsonlFile *f) {
    char err[2200];
    if (f && jsonl_close(f, err, sizeof err)) sys_error("%s", err);
}

typedef struct {
    JsonlFile *json, *per_position, *segments;
    JsonlFile files[3];
    EvalPositions pos;
} Outputs;

/* Evaluates every length still to do, printing and writing each row as it completes. */
static void run_sweep(const Sweep *s, Model *m, const Tokens *tok, int eos, const int *lengths,
                      const int *todo, int n, Outputs *out) {
    SweepProgress sp = {.t0 = now_seconds()};
    progress_init(&sp.pg);
    for (int i = 0; i < n; i++) {
        if (!todo[i]) continue;
        sp.work_total +=
            length_work(s->a, s->cfg, m->spec.V, tok->n, lengths[i], stride_of(s->a, lengths[i]));
        sp.count++;
    }
    for (int i = 0; i < n; i++) {
        int L = lengths[i], S = stride_of(s->a, L);
        if (!todo[i]) {
            printf("# L_valid %d: already in %s, skipped (--skip-done)\n", L, s->a->json);
            continue;
        }
        if (!(todo[i] & NEED_ROW))
            printf("# L_valid %d: row already in %s; evaluating for its%s%s\n", L, s->a->json,
                   todo[i] & NEED_PROFILE ? " per-position profile" : "",
                   todo[i] & NEED_SEGMENTS ? " segments" : "");
        sp.L = L, sp.index++;
        sp.work_L = length_work(s->a, s->cfg, m->spec.V, tok->n, L, S);
        EvalPositions pos = {0};
        if (todo[i] & NEED_PROFILE) {
            pos.nll = out->pos.nll, pos.count = out->pos.count;
            memset(pos.nll, 0, (size_t)L * sizeof *pos.nll);
            memset(pos.count, 0, (size_t)L * sizeof *pos.count);
        }
        if (todo[i] & NEED_SEGMENTS)
            pos.window_nll = xcalloc(eval_window_count(tok->n, L, S), sizeof *pos.window_nll);
        EvalResult r = s->a->nbce
                           ? eval_nbce(m, tok->ids, tok->n, L, S, s->a->nbce_len,
                                       (float)s->a->nbce_beta, eos, &pos, on_progress, &sp)
                           : eval_sliding(m, tok->ids, tok->n, L, S, eos, &pos, on_progress, &sp);
        sp.work_before += sp.work_L;
        progress_end(&sp.pg);
        if (sp.pg.tty) printf("\033[1A\033[K"); /* replace the progress line with the row */
        print_row(&r, peak_rss_bytes());
        if (out->json && todo[i] & NEED_ROW) json_row(out->json, s, &r, peak_rss_bytes());
        if (pos.nll) per_position_row(out->per_position, s, L, &pos);
        if (pos.window_nll) segments_row(out->segments, s, L, tok->n, pos.window_nll);
        free(pos.window_nll);
    }
}

int main(int argc, char **argv) {
    blas_ensure_fast_kernels(argv);
    Args a = parse_args(argc, argv);
    char model_path[2048], dir[2048], path[4200], err[1024];
    Config cfg;
    int V;
    long step;
    ckpt_open_run(a.ckpt, model_path, dir, sizeof dir, &cfg, &V, &step);
    /* the precision is the flag's, not the training's: float32 unless asked, so every row is
     * reproducible whichever precision trained the model */
    char set[64];
    snprintf(set, sizeof set, "train.precision=%s", a.precision);
    if (config_set(&cfg, set, err, sizeof err)) sys_error("internal: %s", err);
    snprintf(set, sizeof set, "train.matmul=%s", a.matmul);
    if (config_set(&cfg, set, err, sizeof err)) sys_error("internal: %s", err);
    apply_rope_flags(&a, &cfg, a.ckpt);
    threads_setup(a.threads >= 0 ? a.threads : cfg.train.threads);
    int lengths[LENGTHS_MAX], todo[LENGTHS_MAX];
    int n_len = sweep_lengths(&a, &cfg, lengths);

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
    Sweep s = {&a, &cfg, model_path, path};
    mark_todo(&s, lengths, n_len, todo);

    int max_L = 0;
    for (int i = 0; i < n_len; i++)
        if (todo[i] && lengths[i] > max_L) max_L = lengths[i];
    /* up to 8k tokens per forward pass: several short segments at once, one long one; NBCE
     * reads one chunk and the scored tokens at a time */
    if (a.nbce && max_L) max_L = a.nbce_len + a.stride;
    int max_B = a.nbce || max_L >= 8192 ? 1 : 8192 / (max_L ? max_L : 1);
    Model m;
    model_create(&m, &cfg, V, max_B, max_L ? max_L : 1, 0);
    if (ckpt_load_model(model_path, &m, err, sizeof err)) user_error("%s", err);
    Outputs out = {0};
    out.json = open_append("--json", a.json, &out.files[0]);
    out.per_position = open_append("--per-position", a.per_position, &out.files[1]);
    out.segments = open_append("--segments", a.segments, &out.files[2]);
    if (out.per_position) {
        out.pos.nll = xcalloc((size_t)max_L + 1, sizeof *out.pos.nll);
        out.pos.count = xcalloc((size_t)max_L + 1, sizeof *out.pos.count);
    }

    printf("%s (step %ld, trained at L=%d), %s split: %zu tokens", model_path, step,
           cfg.train.seq_len, a.split, tok.n);
    if (tok.n_unk) printf(", %zu unknown words mapped to <unk>", tok.n_unk);
    if (a.sliding) printf("; sliding windows, stride %d", a.stride);
    if (a.nbce)
        printf("; NBCE windows, stride %d, chunks of %d, beta %g", a.stride, a.nbce_len,
               a.nbce_beta);
    printf("\n%8s %9s %10s %9s %11s %10s %9s\n", "L_valid",
           a.sliding || a.nbce ? "windows" : "segments", "tokens", "loss", "ppl", "tokens/s",
           "peak MB");
    run_sweep(&s, &m, &tok, vocab.eos, lengths, todo, n_len, &out);
    close_output(out.json);
    close_output(out.per_position);
    close_output(out.segments);
    free(out.pos.nll);
    free(out.pos.count);
    model_free(&m);
    tokens_free(&tok);
    vocab_free(&vocab);
    config_free(&cfg);
    exit_flushed();
}
