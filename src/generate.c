/* generate.c — `./generate --ckpt RUN --prompt "text" [--max-new N] [sampling flags]`: text from
 * a trained model, decoded with the paged KV cache (generation.h, docs/generate.md). Plain
 * generation streams its tokens as they come; --num-samples N decodes N continuations of one
 * prompt as a batch; --nbce-chunk-len M spreads a long prompt over chunks combined by NBCE. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "data/data.h"
#include "generation.h"
#include "model.h"
#include "util/blas_env.h"
#include "util/util.h"

static const char *USAGE =
    "usage: ./generate --ckpt RUN (--prompt TEXT | --prompt-file F) [--max-new N]\n"
    "                  [--greedy | --temperature T [--top-k K] [--top-p P]] [--seed S]\n"
    "                  [--num-samples N] [--stop-at-eos] [--max-context W] [--json FILE]\n"
    "                  [--nbce-chunk-len M [--nbce-beta B] [--nbce-question Q]]\n"
    "                  [--kv-dtype f32|bf16] [--weights-dtype f32|bf16] [--no-cache] [--quiet]\n"
    "                  [--threads N]\n"
    "\n"
    "Continues a prompt with the model of a run. The prompt is tokenized as training text is\n"
    "(whitespace split, a newline is <eos>, unknown words become <unk> and are counted), and the\n"
    "model reads <eos> before it, as it read one before every line of its training text. Tokens\n"
    "are printed as they are produced (<eos> as a newline); a summary line follows on stderr.\n"
    "  --ckpt RUN         run directory (or its model.safetensors); vocab.txt must sit beside it\n"
    "  --prompt TEXT      the prompt; --prompt-file F reads it from F instead\n"
    "  --max-new N        tokens to generate per sample (default 50)\n"
    "  --greedy           always the most probable token (ignores the sampling flags)\n"
    "  --temperature T    sample from softmax(log p / T), T > 0 (default 1)\n"
    "  --top-k K          keep the K most probable tokens (0 = all, the default)\n"
    "  --top-p P          keep the smallest set of most probable tokens whose probability\n"
    "                     reaches P, 0 < P <= 1 (default 1 = all)\n"
    "  --seed S           sampling seed (default 1): the same seed and flags give the same text\n"
    "  --num-samples N    N continuations of the prompt, decoded as one batch (default 1);\n"
    "                     printed when all are done\n"
    "  --stop-at-eos      a sample ends at its first <eos> and returns its cache blocks\n"
    "  --max-context W    attend to the last W positions only (a sliding window; whole cache\n"
    "                     blocks before it are freed); positions still count from the prompt's\n"
    "                     start\n"
    "  --json FILE        write one JSON object: prompt and generated ids, each generated token's\n"
    "                     log-probability, the settings, the cache pool's use, the speeds\n"
    "  --nbce-chunk-len M NBCE (Su 2023): split the prompt, minus its last Q tokens (the\n"
    "                     question), into chunks of at most M tokens; each chunk + question is\n"
    "                     one sequence, the question alone another; the next token comes from\n"
    "                     (1 + B) log p(chunk with the lowest entropy) - B log p(question alone)\n"
    "  --nbce-beta B      B >= 0 (default 0.25)\n"
    "  --nbce-question Q  prompt tokens at the end that every chunk is followed by (default 0)\n"
    "  --kv-dtype T       the KV cache's element type: f32 (default; decoding equals a full\n"
    "                     forward pass) or bf16 (half the memory and the bytes each decode step\n"
    "                     reads, rounded to 8 significant bits; faster at long contexts)\n"
    "  --weights-dtype T  the weights decode steps read: f32 (default) or bf16 (a bf16 copy,\n"
    "                     float32 sums: half the bytes of a step's products; a prompt and\n"
    "                     --num-samples batches still read float32)\n"
    "  --no-cache         no KV cache: a whole forward pass over the sequence per new token (the\n"
    "                     slow reference the cache is measured against; plain generation only)\n"
    "  --quiet            print no tokens (the summary and --json only)\n"
    "  --threads N        threads (default: the run's train.threads, 0 = all cores)\n";

typedef struct {
    const char *ckpt, *prompt, *prompt_file, *json, *kv_dtype, *weights_dtype;
    int max_new, greedy, top_k, num_samples, stop_eos, max_context, nbce_len, nbce_q;
    int no_cache, quiet, threads;
    double temperature, top_p, nbce_beta;
    unsigned long long seed;
} Args;

/* The integer flags: where each goes and its smallest value. */
static const struct {
    const char *name;
    size_t field;
    int lo;
} INT_FLAGS[] = {
    {"--max-new", offsetof(Args, max_new), 1},
    {"--top-k", offsetof(Args, top_k), 0},
    {"--num-samples", offsetof(Args, num_samples), 1},
    {"--max-context", offsetof(Args, max_context), 1},
    {"--nbce-chunk-len", offsetof(Args, nbce_len), 1},
    {"--nbce-question", offsetof(Args, nbce_q), 0},
    {"--threads", offsetof(Args, threads), 0},
};

/* One flag with a value; returns 0 if o is not one of them. */
static int parse_flag(Args *a, const char *o, const char *v) {
    const char **str = !strcmp(o, "--ckpt")            ? &a->ckpt
                       : !strcmp(o, "--prompt")        ? &a->prompt
                       : !strcmp(o, "--prompt-file")   ? &a->prompt_file
                       : !strcmp(o, "--json")          ? &a->json
                       : !strcmp(o, "--kv-dtype")      ? &a->kv_dtype
                       : !strcmp(o, "--weights-dtype") ? &a->weights_dtype
                                                       : NULL;
    double *real = !strcmp(o, "--temperature") ? &a->temperature
                   : !strcmp(o, "--top-p")     ? &a->top_p
                   : !strcmp(o, "--nbce-beta") ? &a->nbce_beta
                                               : NULL;
    for (size_t i = 0; i < sizeof INT_FLAGS / sizeof *INT_FLAGS; i++)
        if (!strcmp(o, INT_FLAGS[i].name)) {
            *(int *)((char *)a + INT_FLAGS[i].field) =
                (int)flag_int(o, v, INT_FLAGS[i].lo, 1 << 24);
            return 1;
        }
    if (str)
        *str = v;
    else if (real)
        *real = flag_number(o, v);
    else if (!strcmp(o, "--seed"))
        a->seed = (unsigned long long)flag_int(o, v, 0, (long)1 << 62);
    else
        return 0;
    return 1;
}

/* Flags that only make sense together. */
static void check_args(const Args *a) {
    if (!a->ckpt) user_error("--ckpt RUN is required (see ./generate --help)");
    if (!!a->prompt == !!a->prompt_file)
        user_error("give the prompt with exactly one of --prompt TEXT and --prompt-file F");
    if (!a->greedy && a->temperature <= 0)
        user_error("--temperature: expected a number > 0 (or --greedy), got %g", a->temperature);
    if (!(a->top_p > 0 && a->top_p <= 1))
        user_error("--top-p: expected a number in (0, 1], got %g", a->top_p);
    if (a->nbce_beta < 0) user_error("--nbce-beta: expected a number >= 0, got %g", a->nbce_beta);
    if (!a->nbce_len && (a->nbce_q || a->nbce_beta != 0.25))
        user_error("--nbce-beta and --nbce-question need --nbce-chunk-len M");
    if (a->nbce_len && a->num_samples > 1)
        user_error("--num-samples applies to plain generation, not to --nbce-chunk-len");
    if (a->no_cache &&
        (a->nbce_len || a->max_context || a->num_samples > 1 || a->kv_dtype || a->weights_dtype))
        user_error("--no-cache is plain generation of one sample in float32: no "
                   "--nbce-chunk-len, --max-context, --num-samples, --kv-dtype or "
                   "--weights-dtype");
    if (a->kv_dtype && kv_dtype_parse(a->kv_dtype) < 0)
        user_error("--kv-dtype: expected f32 or bf16, got '%s'", a->kv_dtype);
    if (a->weights_dtype && strcmp(a->weights_dtype, "f32") && strcmp(a->weights_dtype, "bf16"))
        user_error("--weights-dtype: expected f32 or bf16, got '%s'", a->weights_dtype);
}

static Args parse_args(int argc, char **argv) {
    Args a = {.max_new = 50,
              .num_samples = 1,
              .threads = -1,
              .temperature = 1.0,
              .top_p = 1.0,
              .nbce_beta = 0.25,
              .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int *sw = !strcmp(o, "--greedy")        ? &a.greedy
                  : !strcmp(o, "--stop-at-eos") ? &a.stop_eos
                  : !strcmp(o, "--no-cache")    ? &a.no_cache
                  : !strcmp(o, "--quiet")       ? &a.quiet
                                                : NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) fputs(USAGE, stdout), exit_flushed();
        if (sw) {
            *sw = 1;
            continue;
        }
        if (i + 1 >= argc)
            user_error("unknown argument or missing value: '%s' (see ./generate --help)", o);
        if (!parse_flag(&a, o, argv[i + 1]))
            user_error("unknown argument '%s' (see ./generate --help)", o);
        i++;
    }
    check_args(&a);
    return a;
}

/* What one output sequence produced. */
typedef struct {
    int32_t *ids;
    float *logp;   /* the model's log-probability of each chosen id (NBCE: the combined one) */
    int32_t *pick; /* NBCE: the chunk k* of each step */
    int n, done;
} Sample;

typedef struct {
    const Args *a;
    Model m;
    Vocab vocab;
    KvPool pool;
    SampleScratch sc;
    Sampler sampler;
    int V, streaming;
    float *lp; /* (sequences, V) next-token log-probabilities */
    double prefill_s, decode_s;
    long prefill_tokens, decode_tokens;
} Gen;

static void emit(const Gen *g, int32_t id) {
    if (id == g->vocab.eos)
        putchar('\n');
    else
        printf("%s ", g->vocab.words[id]);
    fflush(stdout);
}

/* Records the token chosen for sample s from log-probabilities lp at step k. */
static int32_t choose(Gen *g, Sample *s, int si, const float *lp, int k) {
    const float u = rng_uniform(rng_key(g->a->seed, (uint64_t)si), (uint64_t)k);
    const int32_t id = sample_token(lp, g->V, &g->sampler, u, &g->sc);
    s->ids[s->n] = id;
    s->logp[s->n++] = lp[id];
    if (g->streaming) emit(g, id);
    if (g->a->stop_eos && id == g->vocab.eos) s->done = 1;
    return id;
}

/* The pool is sized for every sequence's full length, so running out is a bug, not a user's
 * mistake. */
static void check_rc(int rc, const char *err) {
    if (rc) sys_error("internal: %s", err);
}

/* Plain generation: the prompt once, copied to every sample, then one batched step per token. */
static void run_plain(Gen *g, const int32_t *in, int n_in, Sample *smp) {
    const int N = g->a->num_samples, W = g->a->max_context;
    char err[256];
    double t0 = now_seconds();
    check_rc(gen_feed(&g->m, &g->pool, W, 0, in, n_in, g->lp, err, sizeof err), err);
    for (int s = 1; s < N; s++) {
        check_rc(gen_fork(&g->pool, s, 0, err, sizeof err), err);
        memcpy(g->lp + (size_t)s * g->V, g->lp, sizeof(float) * (size_t)g->V);
    }
    g->prefill_s = now_seconds() - t0, g->prefill_tokens = n_in;
    int *seq = xcalloc((size_t)N, sizeof(int)), *from = xcalloc((size_t)N, sizeof(int));
    int32_t *next = xcalloc((size_t)N, sizeof(int32_t));
    for (int s = 0; s < N; s++) from[s] = s; /* row of sample s in g->lp */
    for (int k = 0; k < g->a->max_new; k++) {
        int B = 0;
        for (int s = 0; s < N; s++) {
            if (smp[s].done) continue;
            const int32_t id = choose(g, &smp[s], s, g->lp + (size_t)from[s] * g->V, k);
            if (smp[s].done) { /* ended: its blocks go back to the pool at once */
                kv_release(&g->pool, s);
                continue;
            }
            seq[B] = s, next[B++] = id;
        }
        if (!B || k + 1 == g->a->max_new) break;
        t0 = now_seconds();
        check_rc(gen_step(&g->m, &g->pool, W, seq, next, B, g->lp, err, sizeof err), err);
        g->decode_s += now_seconds() - t0, g->decode_tokens += B;
        for (int b = 0; b < B; b++) from[seq[b]] = b;
    }
    free(seq), free(from), free(next);
}

/* --no-cache: the whole sequence through the evaluation path for every new token. */
static void run_uncached(Gen *g, int32_t *in, int n_in, Sample *smp) {
    for (int k = 0, n = n_in; k < g->a->max_new && !smp->done; k++, n++) {
        const double t0 = now_seconds();
        const Pass p = {.B = 1, .T = n};
        model_forward(&g->m, &p, in);
        model_logprobs(&g->m, &p, (size_t)n - 1, 1, g->lp);
        const double dt = now_seconds() - t0;
        if (k)
            g->decode_s += dt, g->decode_tokens++;
        else
            g->prefill_s = dt, g->prefill_tokens = n;
        in[n] = choose(g, smp, 0, g->lp, k);
    }
}

/* NBCE: sequences 0..nc-1 are <eos> + chunk k + question, sequence nc is <eos> + question; the
 * combined distribution picks one token, which every sequence is then fed. */
static void run_nbce(Gen *g, const int32_t *prompt, int n, Sample *smp) {
    const int M = g->a->nbce_len, Q = g->a->nbce_q, ctx = n - Q, nc = (ctx + M - 1) / M;
    char err[256];
    int32_t *buf = xcalloc((size_t)M + Q + 1, sizeof(int32_t));
    const float **lps = xcalloc((size_t)nc, sizeof *lps);
    double t0 = now_seconds();
    for (int k = 0; k <= nc; k++) {
        const int len = k < nc ? (ctx - k * M < M ? ctx - k * M : M) : 0;
        buf[0] = g->vocab.eos;
        memcpy(buf + 1, prompt + (size_t)k * M, sizeof(int32_t) * (size_t)len);
        memcpy(buf + 1 + len, prompt + ctx, sizeof(int32_t) * (size_t)Q);
        check_rc(gen_feed(&g->m, &g->pool, 0, k, buf, 1 + len + Q, g->lp + (size_t)k * g->V, err,
                          sizeof err),
                 err);
        g->prefill_tokens += 1 + len + Q;
        if (k < nc) lps[k] = g->lp + (size_t)k * g->V;
    }
    g->prefill_s = now_seconds() - t0;
    float *mix = xcalloc((size_t)g->V, sizeof *mix);
    int *seq = xcalloc((size_t)nc + 1, sizeof(int));
    int32_t *next = xcalloc((size_t)nc + 1, sizeof(int32_t));
    for (int k = 0; k <= nc; k++) seq[k] = k;
    for (int k = 0; k < g->a->max_new && !smp->done; k++) {
        smp->pick[smp->n] =
            nbce_combine(mix, lps, nc, g->lp + (size_t)nc * g->V, g->V, (float)g->a->nbce_beta);
        const int32_t id = choose(g, smp, 0, mix, k);
        if (smp->done || k + 1 == g->a->max_new) break;
        for (int s = 0; s <= nc; s++) next[s] = id;
        t0 = now_seconds();
        check_rc(gen_step(&g->m, &g->pool, 0, seq, next, nc + 1, g->lp, err, sizeof err), err);
        g->decode_s += now_seconds() - t0, g->decode_tokens += nc + 1;
    }
    free(buf), free(lps), free(mix), free(seq), free(next);
}

static char *read_prompt(const Args *a) {
    if (a->prompt) return xstrdup(a->prompt);
    size_t len;
    char *text = read_file(a->prompt_file, &len);
    if (!text) user_error("--prompt-file: cannot read '%s': %s", a->prompt_file, strerror(errno));
    if (memchr(text, 0, len)) user_error("--prompt-file: '%s' holds a NUL byte", a->prompt_file);
    return text;
}

/* The positions the longest sequence reaches, refused past what the position method holds. */
static int plan_positions(const Args *a, const Config *cfg, int n) {
    if (a->nbce_len && a->nbce_q >= n)
        user_error("--nbce-question %d leaves no context: the prompt has %d tokens", a->nbce_q, n);
    const long longest = a->nbce_len
                             ? 1L + (a->nbce_len < n - a->nbce_q ? a->nbce_len : n - a->nbce_q) +
                                   a->nbce_q + a->max_new
                             : 1L + n + a->max_new;
    const PosMethod *pm = cfg->model.pos_method;
    const int limit = pos_max_positions(pm, cfg);
    if (longest > limit)
        user_error("<eos> + %s + --max-new %d need %ld positions, but this %s model represents "
                   "%d (model.position.%s)",
                   a->nbce_len ? "a chunk and the question" : "the prompt", a->max_new, longest,
                   pm->name, limit, pm->max_positions_key ? pm->max_positions_key : "type");
    if (longest > (1L << 24)) user_error("%ld positions: more than 2^24", longest);
    return (int)longest;
}

static cJSON *int_array(const int32_t *x, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(x[i]));
    return a;
}

static cJSON *settings_json(const Args *a) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "max_new", a->max_new);
    cJSON_AddBoolToObject(o, "greedy", a->greedy);
    cJSON_AddNumberToObject(o, "temperature", a->temperature);
    cJSON_AddNumberToObject(o, "top_k", a->top_k);
    cJSON_AddNumberToObject(o, "top_p", a->top_p);
    cJSON_AddNumberToObject(o, "seed", (double)a->seed);
    cJSON_AddNumberToObject(o, "num_samples", a->num_samples);
    cJSON_AddBoolToObject(o, "stop_at_eos", a->stop_eos);
    cJSON_AddNumberToObject(o, "max_context", a->max_context);
    cJSON_AddStringToObject(o, "cache", a->no_cache ? "none" : "paged");
    if (!a->no_cache) cJSON_AddStringToObject(o, "kv_dtype", a->kv_dtype ? a->kv_dtype : "f32");
    cJSON_AddStringToObject(o, "weights_dtype", a->weights_dtype ? a->weights_dtype : "f32");
    if (a->nbce_len) {
        cJSON *n = cJSON_AddObjectToObject(o, "nbce");
        cJSON_AddNumberToObject(n, "chunk_len", a->nbce_len);
        cJSON_AddNumberToObject(n, "beta", a->nbce_beta);
        cJSON_AddNumberToObject(n, "question", a->nbce_q);
    }
    return o;
}

static void write_json(const Gen *g, const char *model_path, const int32_t *prompt, int n,
                       size_t n_unk, const Sample *smp, int n_smp) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "checkpoint", model_path);
    cJSON_AddStringToObject(o, "first_input", "<eos>");
    cJSON_AddItemToObject(o, "prompt_ids", int_array(prompt, n));
    cJSON_AddNumberToObject(o, "unknown_words", (double)n_unk);
    cJSON *arr = cJSON_AddArrayToObject(o, "samples");
    for (int s = 0; s < n_smp; s++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddItemToObject(x, "ids", int_array(smp[s].ids, smp[s].n));
        cJSON *lp = cJSON_AddArrayToObject(x, "logprobs");
        for (int i = 0; i < smp[s].n; i++)
            cJSON_AddItemToArray(lp, cJSON_CreateNumber(smp[s].logp[i]));
        if (g->a->nbce_len)
            cJSON_AddItemToObject(x, "nbce_chunk", int_array(smp[s].pick, smp[s].n));
        cJSON_AddItemToArray(arr, x);
    }
    cJSON_AddItemToObject(o, "settings", settings_json(g->a));
    cJSON *pool = cJSON_AddObjectToObject(o, "pool");
    cJSON_AddNumberToObject(pool, "block_positions", KV_BLOCK);
    cJSON_AddNumberToObject(pool, "kv_heads", g->pool.Hkv);
    cJSON_AddNumberToObject(pool, "blocks", g->pool.n_blocks);
    cJSON_AddStringToObject(pool, "dtype", kv_dtype_name(g->pool.dtype));
    cJSON_AddNumberToObject(pool, "block_bytes",
                            (double)(g->pool.block_elems * g->pool.elem_bytes));
    cJSON_AddNumberToObject(pool, "peak_blocks_used", g->pool.peak_used);
    cJSON *sp = cJSON_AddObjectToObject(o, "speed");
    cJSON_AddNumberToObject(sp, "prefill_tokens", (double)g->prefill_tokens);
    cJSON_AddNumberToObject(sp, "prefill_seconds", g->prefill_s);
    cJSON_AddNumberToObject(sp, "decode_tokens", (double)g->decode_tokens);
    cJSON_AddNumberToObject(sp, "decode_seconds", g->decode_s);
    cJSON_AddNumberToObject(o, "peak_rss_mb", peak_rss_bytes() / 1e6);
    char *text = cJSON_Print(o);
    size_t len = strlen(text);
    text[len] = '\n'; /* cJSON_Print's terminator becomes the file's last newline */
    if (write_file_atomic(g->a->json, text, len + 1))
        sys_error("--json: cannot write '%s': %s", g->a->json, strerror(errno));
    free(text);
    cJSON_Delete(o);
}

int main(int argc, char **argv) {
    blas_ensure_fast_kernels(argv);
    Args a = parse_args(argc, argv);
    char model_path[2048], dir[2048], path[4200], err[1024];
    Config cfg;
    int V;
    long step;
    ckpt_open_run(a.ckpt, model_path, dir, sizeof dir, &cfg, &V, &step);
    const PosMethod *pm = cfg.model.pos_method;
    const char *why = !a.no_cache && pm->cache_refusal ? pm->cache_refusal(&cfg) : NULL;
    if (why)
        user_error("model.position %s: %s; --no-cache generates without a cache", pm->name, why);
    threads_setup(a.threads >= 0 ? a.threads : cfg.train.threads);
    Gen g = {.a = &a, .V = V};
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    if (vocab_load(&g.vocab, path, err, sizeof err)) user_error("%s", err);
    if (g.vocab.n != V)
        user_error("%s has %d words but the checkpoint's vocabulary has %d", path, g.vocab.n, V);
    char *text = read_prompt(&a);
    size_t n, n_unk;
    int32_t *prompt = tokens_from_text(&g.vocab, text, &n, &n_unk);
    free(text);
    if (!n) user_error("the prompt is empty: it holds no word and no newline");
    const int P = plan_positions(&a, &cfg, (int)n);
    const int nc = a.nbce_len ? ((int)n - a.nbce_q + a.nbce_len - 1) / a.nbce_len : 0;
    const int n_seqs = a.nbce_len ? nc + 1 : a.num_samples;
    model_create(&g.m, &cfg, V, 1 + n_seqs / P, P, 0);
    if (ckpt_load_model(model_path, &g.m, err, sizeof err)) user_error("%s", err);
    if (a.weights_dtype && !strcmp(a.weights_dtype, "bf16")) model_rows1_bf16(&g.m);
    kv_pool_init(&g.pool, g.m.spec.L, g.m.spec.Hkv, g.m.spec.D,
                 a.kv_dtype ? (KvDtype)kv_dtype_parse(a.kv_dtype) : KV_F32,
                 n_seqs * ((P + KV_BLOCK - 1) / KV_BLOCK + 1), n_seqs);
    sample_scratch_alloc(&g.sc, V);
    g.sampler = (Sampler){a.greedy, (float)a.temperature, a.top_k, (float)a.top_p};
    g.lp = xcalloc((size_t)n_seqs * V, sizeof *g.lp);
    g.streaming = !a.quiet && a.num_samples == 1;
    const int n_smp = a.nbce_len ? 1 : a.num_samples;
    Sample *smp = xcalloc((size_t)n_smp, sizeof *smp);
    for (int s = 0; s < n_smp; s++) {
        smp[s].ids = xcalloc((size_t)a.max_new, sizeof(int32_t));
        smp[s].logp = xcalloc((size_t)a.max_new, sizeof(float));
        smp[s].pick = xcalloc((size_t)a.max_new, sizeof(int32_t));
    }
    /* the model's input: <eos>, the prompt, room for every generated token (--no-cache) */
    int32_t *in = xcalloc(n + 1 + (size_t)a.max_new, sizeof(int32_t));
    in[0] = g.vocab.eos;
    memcpy(in + 1, prompt, n * sizeof(int32_t));
    if (a.nbce_len)
        run_nbce(&g, prompt, (int)n, smp);
    else if (a.no_cache)
        run_uncached(&g, in, (int)n + 1, smp);
    else
        run_plain(&g, in, (int)n + 1, smp);
    if (g.streaming) putchar('\n');
    for (int s = 0; s < n_smp && !g.streaming && !a.quiet; s++) {
        printf("--- sample %d ---\n", s + 1);
        for (int i = 0; i < smp[s].n; i++) emit(&g, smp[s].ids[i]);
        putchar('\n');
    }
    long produced = 0;
    for (int s = 0; s < n_smp; s++) produced += smp[s].n;
    fflush(stdout); /* the text before the summary on a terminal that shows both */
    fprintf(stderr,
            "prompt %zu tokens (%zu unknown -> <unk>), generated %ld, prefill %.0f tokens/s, "
            "decode %.1f tokens/s, peak %.0f MB\n",
            n, n_unk, produced, g.prefill_tokens / fmax(g.prefill_s, 1e-9),
            g.decode_tokens / fmax(g.decode_s, 1e-9), peak_rss_bytes() / 1e6);
    if (a.json) write_json(&g, model_path, prompt, (int)n, n_unk, smp, n_smp);
    for (int s = 0; s < n_smp; s++) free(smp[s].ids), free(smp[s].logp), free(smp[s].pick);
    free(smp), free(in), free(prompt), free(g.lp);
    sample_scratch_free(&g.sc);
    kv_pool_free(&g.pool);
    model_free(&g.m);
    vocab_free(&g.vocab);
    config_free(&cfg);
    exit_flushed();
}
