/* train.c — `./train --config FILE [--set k=v ...] [--out DIR] [--init RUN]` or
 * `./train --resume DIR`.
 *
 * Writes a run directory: config.json (fully resolved), vocab.txt (line k = token id k),
 * model.safetensors + optim.safetensors (the checkpoint), log.jsonl (one JSON object per
 * logged step and per validation, one per start and a last one when the run is done). Ctrl-C /
 * SIGTERM finish the current step, write the checkpoint and exit 0; --resume continues with
 * bit-identical losses at the same thread count, because batches, dropout masks and the schedule
 * are functions of the step number alone.
 * --init RUN starts a new run (step 0, fresh AdamW state) from another run's weights and
 * vocabulary, for fine-tuning under a new config — a longer train.seq_len, a RoPE scaling
 * method — as Position Interpolation (Chen et al. 2023) fine-tunes at the extended length. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"
#include "describe.h"
#include "evaluate.h"
#include "checkpoint.h"
#include "config/config.h"
#include "io/lengths.h"
#include "io/progress.h"
#include "model.h"
#include "optim/optim.h"
#include "util/blas_env.h"
#include "util/util.h"

static const char *USAGE =
    "usage: ./train --config FILE [--set key=value ...] [--out DIR] [--init RUN] [--profile]\n"
    "       ./train --resume DIR [--profile]\n"
    "\n"
    "Trains a decoder-only language model and writes a run directory.\n"
    "  --config FILE     JSON config (sections model, train, data); see docs/config.md\n"
    "  --set key=value   override one key, e.g. --set train.lr=3e-4 --set "
    "model.position.type=alibi\n"
    "  --out DIR         run directory (default runs/<config name>); must not hold a run already\n"
    "  --resume DIR      continue the run in DIR from its checkpoint (same config, same data)\n"
    "  --init RUN        start from the weights of RUN (a run directory or its model.safetensors)\n"
    "                    under the new --config, e.g. a longer train.seq_len: step 0, fresh\n"
    "                    optimizer, RUN's vocab.txt; every tensor of the new model must be in RUN\n"
    "                    with the same shape\n"
    "  --stop-at STEP    stop after STEP as if interrupted (checkpoint written; for testing "
    "resume)\n"
    "  --profile         print time per op family at the end\n"
    "  --help-config     print every config key with type, default and meaning (markdown)\n"
    "  --list-positions  print the registered position methods, one JSON object a line:\n"
    "                    {\"name\", \"label\", \"color\", \"summary\"} (for scripts/results.py)\n"
    "  --describe        with --config (and --set): print, as one JSON object, the resolved\n"
    "                    config, vocab_size, params, train_flops_per_token, flops_per_token\n"
    "                    {T: forward FLOPs} and the registered methods; train nothing\n"
    "  --vocab-size V    (--describe) describe for V words instead of reading the data\n"
    "  --flops-at LIST   (--describe) also give flops_per_token at these lengths (--lvalid\n"
    "                    syntax: 512,1024 | 512..16000 | paper)\n"
    "  --help            this text\n"
    "Ctrl-C writes a checkpoint and exits; ./train --resume DIR continues it.\n";

typedef struct {
    const char *config, *out, *resume, *init, *flops_at;
    const char *sets[64];
    int n_sets, profile, describe;
    long stop_at, vocab_size;
} Args;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int takes_value(const char *o) {
    const char *with_value[] = {"--config",  "--out", "--resume",     "--init",
                                "--stop-at", "--set", "--vocab-size", "--flops-at"};
    for (size_t i = 0; i < sizeof with_value / sizeof *with_value; i++)
        if (!strcmp(o, with_value[i])) return 1;
    return 0;
}

static long parse_positive(const char *flag, const char *v) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < 1)
        user_error("%s: expected a positive integer, got '%s'", flag, v);
    return x;
}

static Args parse_args(int argc, char **argv) {
    Args a = {.stop_at = -1};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h"))
            fputs(USAGE, stdout), exit_flushed();
        else if (!strcmp(o, "--help-config"))
            config_write_docs(stdout), exit_flushed();
        else if (!strcmp(o, "--list-positions"))
            describe_list_positions(stdout), exit_flushed();
        else if (!strcmp(o, "--profile"))
            a.profile = 1;
        else if (!strcmp(o, "--describe"))
            a.describe = 1;
        else if (!takes_value(o))
            user_error("unknown argument '%s' (see ./train --help)", o);
        else if (i + 1 >= argc)
            user_error("%s needs a value (see ./train --help)", o);
        else if (!strcmp(o, "--config"))
            a.config = argv[++i];
        else if (!strcmp(o, "--out"))
            a.out = argv[++i];
        else if (!strcmp(o, "--resume"))
            a.resume = argv[++i];
        else if (!strcmp(o, "--init"))
            a.init = argv[++i];
        else if (!strcmp(o, "--stop-at"))
            a.stop_at = parse_positive(o, argv[++i]);
        else if (!strcmp(o, "--vocab-size")) {
            a.vocab_size = parse_positive(o, argv[++i]);
            if (a.vocab_size > 100000000)
                user_error("--vocab-size: at most 100000000 words, got %ld", a.vocab_size);
        } else if (!strcmp(o, "--flops-at"))
            a.flops_at = argv[++i];
        else {
            if (a.n_sets == 64) user_error("--set: at most 64 overrides");
            a.sets[a.n_sets++] = argv[++i];
        }
    }
    if ((a.vocab_size || a.flops_at) && !a.describe)
        user_error("%s is an option of --describe", a.vocab_size ? "--vocab-size" : "--flops-at");
    if (a.describe && (a.resume || a.init || a.out || a.stop_at >= 0 || a.profile || !a.config))
        user_error("--describe takes --config FILE, --set, --vocab-size and --flops-at only: it "
                   "trains nothing");
    if (a.init && a.resume)
        user_error("--init and --resume cannot be combined: --init starts a new run from another "
                   "run's weights, --resume continues a run");
    if (a.init && !a.config) user_error("--init RUN needs --config FILE, the new run's config");
    if (!a.config && !a.resume)
        user_error("--config FILE or --resume DIR is required (see ./train --help)");
    if (a.config && a.resume)
        user_error("--config and --resume cannot be combined: a resumed run keeps its own config");
    if (a.resume && a.n_sets)
        user_error("--set cannot be combined with --resume: a resumed run keeps its own config");
    return a;
}

static void path_join(char *buf, size_t n, const char *dir, const char *file) {
    snprintf(buf, n, "%s/%s", dir, file);
}

static Config load_config(const Args *a, char *run_dir, size_t n) {
    Config cfg;
    char err[1024], path[2048];
    if (a->resume) {
        snprintf(run_dir, n, "%s", a->resume);
        path_join(path, sizeof path, run_dir, "config.json");
        if (config_from_file(&cfg, path, err, sizeof err)) user_error("%s", err);
        return cfg;
    }
    if (config_from_file(&cfg, a->config, err, sizeof err)) user_error("%s", err);
    if (config_set_list(&cfg, a->sets, a->n_sets, err, sizeof err)) user_error("%s", err);
    if (a->out)
        snprintf(run_dir, n, "%s", a->out);
    else {
        const char *base = strrchr(a->config, '/') ? strrchr(a->config, '/') + 1 : a->config;
        snprintf(run_dir, n, "runs/%.*s", (int)strcspn(base, "."), base);
    }
    return cfg;
}

/* The log and the checkpoint count tokens as integers that JSON's doubles hold exactly. */
static void check_token_count(const Config *c) {
    double total = (double)ckpt_tokens_per_step(c) * c->train.steps;
    if (total > 9007199254740992.0)
        user_error("train.steps x batch x seq_len x accum = %.3g tokens, above the 2^53 a run can "
                   "count exactly",
                   total);
}

/* A run's data: vocabulary (built from train, or read from a vocab.txt: the run's own on
 * resume, the source run's with --init) and the train and valid token streams. */
typedef struct {
    Vocab vocab;
    Tokens train, valid;
} RunData;

static void load_split(Tokens *t, const Config *c, const char *key, const char *file,
                       const Vocab *v) {
    char path[2048], err[1024];
    path_join(path, sizeof path, c->data.dir, file);
    if (tokens_load(t, path, v, 1, err, sizeof err))
        user_error("%s: %s (get the data with scripts/get_data.sh, or set data.dir)", key, err);
}

/* The vocabulary: vocab_txt (a run's), else data.vocab, else built from data.train; checked
 * against the config's output layer. */
static void load_vocab(Vocab *v, const Config *c, const char *vocab_txt) {
    char path[2048], err[1024];
    if (vocab_txt) {
        if (vocab_load(v, vocab_txt, err, sizeof err)) user_error("%s", err);
    } else if (c->data.vocab[0]) {
        path_join(path, sizeof path, c->data.dir, c->data.vocab);
        if (vocab_load_counts(v, path, err, sizeof err)) user_error("data.vocab: %s", err);
    } else {
        path_join(path, sizeof path, c->data.dir, c->data.train);
        if (vocab_build(v, path, err, sizeof err))
            user_error("data.train: %s (get the data with scripts/get_data.sh, or set data.dir)",
                       err);
    }
    if (model_check_vocab(c, v->n, err, sizeof err)) user_error("%s", err);
}

static void load_data(RunData *d, const Config *c, const char *vocab_txt) {
    load_vocab(&d->vocab, c, vocab_txt);
    load_split(&d->train, c, "data.train", c->data.train, &d->vocab);
    load_split(&d->valid, c, "data.valid", c->data.valid, &d->vocab);
    if (d->train.n < (size_t)c->train.seq_len + 1)
        user_error("data.train: %zu tokens, fewer than train.seq_len + 1 = %d", d->train.n,
                   c->train.seq_len + 1);
}

/* A new run's directory, removed again if the run ends before its first checkpoint (a diverged
 * first steps, a full disk): such a directory holds nothing worth keeping and would block a retry
 * with the same --out. */
static struct {
    char dir[1024];
    int created;       /* the directory did not exist before */
    const long *saved; /* the step of the checkpoint on disk, -1 while there is none */
} g_new_run;

static void remove_unsaved_run(void) {
    if (!g_new_run.saved || *g_new_run.saved >= 0) return;
    const char *mine[] = {"config.json", "vocab.txt", "log.jsonl"};
    char path[2048];
    for (size_t i = 0; i < sizeof mine / sizeof *mine; i++) {
        path_join(path, sizeof path, g_new_run.dir, mine[i]);
        unlink(path);
    }
    remove_dead_temps(g_new_run.dir);
    if (g_new_run.created) rmdir(g_new_run.dir);
}

/* What the end of a run that failed leaves: "the checkpoint (step 40) in DIR is kept" or, before
 * the first checkpoint, that the directory is removed (see g_new_run). */
static const char *kept_state(const char *dir, long saved_step, char *buf, size_t n) {
    if (saved_step >= 0)
        snprintf(buf, n, "the checkpoint of step %ld in %s is kept", saved_step, dir);
    else
        snprintf(buf, n, "no checkpoint was written yet, so %s is removed", dir);
    return buf;
}

static void lock_run_dir(const char *dir) {
    if (lock_dir(dir) == 0) return;
    if (errno == EWOULDBLOCK)
        user_error("%s is in use by another ./train (one run directory, one process)", dir);
    sys_error("%s: cannot lock the run directory: %s", dir, strerror(errno));
}

/* New run: refuse to overwrite an existing run, or to mix this run's files with the log or
 * evaluation rows of one whose checkpoint is gone (./eval --skip-done would take those rows for
 * this model's), then write config.json and vocab.txt. The checks run under the directory's
 * lock, so two ./train started with the same --out cannot both pass them. */
static void prepare_run_dir(const char *dir, const Config *c, const Vocab *v, const long *saved) {
    char path[2048], err[1024];
    int existed = file_exists(dir);
    if (mkdir_p(dir)) user_error("--out: cannot create directory '%s': %s", dir, strerror(errno));
    lock_run_dir(dir);
    remove_dead_temps(dir); /* of a run killed while it wrote its first files */
    path_join(path, sizeof path, dir, "model.safetensors");
    if (file_exists(path))
        user_error("%s already holds a run (model.safetensors); continue it with --resume %s or "
                   "choose another --out",
                   dir, dir);
    const char *stale[] = {"log.jsonl", "eval.jsonl", "per_position.jsonl"};
    for (size_t i = 0; i < sizeof stale / sizeof stale[0]; i++) {
        path_join(path, sizeof path, dir, stale[i]);
        if (file_exists(path))
            user_error("%s holds %s of an earlier run but no checkpoint (killed before its first "
                       "one, or deleted); remove the directory (rm -r %s) to start again, or "
                       "choose another --out",
                       dir, stale[i], dir);
    }
    snprintf(g_new_run.dir, sizeof g_new_run.dir, "%s", dir);
    g_new_run.created = !existed;
    g_new_run.saved = saved;
    on_fatal_error(remove_unsaved_run);
    char *json = config_to_json(c);
    path_join(path, sizeof path, dir, "config.json");
    if (write_file_atomic(path, json, strlen(json)))
        sys_error("%s: cannot write: %s; %s is removed", path, strerror(errno), dir);
    free(json);
    path_join(path, sizeof path, dir, "vocab.txt");
    if (vocab_save(v, path, err, sizeof err)) sys_error("%s; %s is removed", err, dir);
}

/* --init: the checkpoint whose weights start the run, and the directory holding its vocab.txt. */
typedef struct {
    char model[2048], dir[2048], vocab[2100];
    int V;
    long step;
    int n_unused;     /* tensors of the checkpoint the new model does not have */
    char unused[256]; /* their names */
} InitSource;

/* Resolves --init RUN (a run directory or a model.safetensors) and checks what the tensor
 * shapes cannot show: the head count and the activation (same shapes, another function). */
static void open_init(InitSource *src, const char *arg, const Config *c) {
    struct stat st;
    char err[1024];
    if (stat(arg, &st) != 0) user_error("--init: cannot open '%s': %s", arg, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        snprintf(src->dir, sizeof src->dir, "%s", arg);
        path_join(src->model, sizeof src->model, arg, "model.safetensors");
    } else {
        const char *slash = strrchr(arg, '/');
        snprintf(src->model, sizeof src->model, "%s", arg);
        snprintf(src->dir, sizeof src->dir, "%.*s", slash ? (int)(slash - arg) : 1,
                 slash ? arg : ".");
    }
    path_join(src->vocab, sizeof src->vocab, src->dir, "vocab.txt");
    Config old;
    if (ckpt_read_config(src->model, &old, &src->V, &src->step, err, sizeof err))
        user_error("--init: %s", err);
    if (old.model.n_heads != c->model.n_heads)
        user_error("--init: model.n_heads is %d in the config but %d in %s: the same weights "
                   "would compute another function",
                   c->model.n_heads, old.model.n_heads, src->model);
    if (strcmp(old.model.activation, c->model.activation))
        user_error("--init: model.activation is %s in the config but %s in %s: the same weights "
                   "would compute another function",
                   c->model.activation, old.model.activation, src->model);
    config_free(&old);
}

typedef struct {
    Model m;
    float *adam_m, *adam_v;
    TrainState ts;
    long saved_step; /* step of the checkpoint on disk, -1 if none */
    char dir[1024];
    char recovered[256]; /* what --resume did to an interrupted save ("" if nothing) */
} Trainer;

/* log.jsonl, whose rows a failed write must not lose silently: the error names the checkpoint
 * that is kept. */
typedef struct {
    JsonlFile file;
    const Trainer *tr;
    int done; /* it holds the "done" row of a finished run */
} RunLog;

static void save_checkpoint(Trainer *tr, RunLog *log) {
    char err[2200], kept[2400];
    /* the log rows up to this step become as durable as the checkpoint they go with */
    if (jsonl_sync(&log->file, err, sizeof err) ||
        ckpt_save(tr->dir, &tr->m, tr->adam_m, tr->adam_v, &tr->ts, err, sizeof err))
        sys_error("%s; %s", err, kept_state(tr->dir, tr->saved_step, kept, sizeof kept));
    tr->saved_step = tr->ts.step;
}

/* --resume: the checkpoint of model.safetensors' step, after finishing an interrupted save
 * (what that did goes to tr->recovered for the start-up summary). */
static void restore_checkpoint(Trainer *tr) {
    char model[2048], optim[2048], err[1024], note[256];
    path_join(model, sizeof model, tr->dir, "model.safetensors");
    path_join(optim, sizeof optim, tr->dir, "optim.safetensors");
    if (!file_exists(model))
        user_error("%s: no checkpoint (model.safetensors) to resume from", tr->dir);
    Config cc;
    int V;
    long step;
    if (ckpt_read_config(model, &cc, &V, &step, err, sizeof err)) user_error("%s", err);
    config_free(&cc);
    if (ckpt_recover(tr->dir, step, note, sizeof note, err, sizeof err)) sys_error("%s", err);
    snprintf(tr->recovered, sizeof tr->recovered, "%s", note);
    if (ckpt_load_model(model, &tr->m, err, sizeof err)) user_error("%s", err);
    if (ckpt_load_optim(optim, &tr->m, tr->adam_m, tr->adam_v, &tr->ts, err, sizeof err))
        user_error("%s", err);
    if (step != tr->ts.step)
        user_error("%s: model.safetensors (step %ld) and optim.safetensors (step %ld) are from "
                   "different steps",
                   tr->dir, step, tr->ts.step);
    if (tr->ts.tokens != step * ckpt_tokens_per_step(tr->m.spec.cfg))
        user_error("%s: metadata 'tokens' is %lld, but %ld steps of %lld tokens read %lld", optim,
                   tr->ts.tokens, step, ckpt_tokens_per_step(tr->m.spec.cfg),
                   step * ckpt_tokens_per_step(tr->m.spec.cfg));
    tr->saved_step = step;
}

/* Weights from the --init checkpoint; the optimizer state stays zero and the step 0. */
static void init_from(Trainer *tr, InitSource *src, const Vocab *v) {
    char err[1024];
    if (v->n != src->V)
        user_error("--init: %s has %d words but the checkpoint's vocabulary has %d", src->vocab,
                   v->n, src->V);
    src->n_unused =
        ckpt_init_model(src->model, &tr->m, src->unused, sizeof src->unused, err, sizeof err);
    if (src->n_unused < 0) user_error("--init: %s", err);
}

/* Keeps only log rows up to the checkpoint's step, so a resumed log reads as one run. The kept
 * rows replace the file atomically (a resume that dies here leaves the old log whole); new rows
 * are appended. A row cut short by a crash is not JSON and is dropped here. */
static void open_log(RunLog *log, const Trainer *tr) {
    char path[2048], err[2200], kept_msg[2400];
    *log = (RunLog){.tr = tr};
    path_join(path, sizeof path, tr->dir, "log.jsonl");
    size_t len = 0, n = 0;
    char *old = tr->ts.step > 0 ? read_file(path, &len) : NULL;
    char *kept = xcalloc(len + 1, 1);
    for (char *line = old ? strtok(old, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        cJSON *s = o ? cJSON_GetObjectItem(o, "step") : NULL;
        if (s && cJSON_IsNumber(s) && s->valuedouble <= tr->ts.step) {
            log->done |= cJSON_IsTrue(cJSON_GetObjectItem(o, "done"));
            size_t l = strlen(line);
            memcpy(kept + n, line, l);
            kept[n + l] = '\n';
            n += l + 1;
        }
        cJSON_Delete(o);
    }
    free(old);
    if (write_file_atomic(path, kept, n) || jsonl_open(&log->file, path, err, sizeof err))
        sys_error("%s: cannot write: %s; %s", path, strerror(errno),
                  kept_state(tr->dir, tr->saved_step, kept_msg, sizeof kept_msg));
    free(kept);
}

static void log_row(RunLog *log, cJSON *o) {
    char err[2200], kept[2400];
    if (jsonl_append(&log->file, o, err, sizeof err))
        sys_error("%s; %s", err, kept_state(log->tr->dir, log->tr->saved_step, kept, sizeof kept));
    cJSON_Delete(o);
}

/* "output     adaptive: clusters 20000 | 40000 | 207735 words of 256 | 64 | 16 dims, tied" */
static void print_output_layer(const Model *m) {
    if (!m->spec.ad.K) {
        printf("  output     full softmax over %d words, tied to the input embedding\n", m->spec.V);
        return;
    }
    char sizes[256] = "", dims[256] = "";
    for (int k = 0; k < m->spec.ad.K; k++) {
        size_t a = strlen(sizes), b = strlen(dims);
        snprintf(sizes + a, sizeof sizes - a, "%s%d", k ? " | " : "",
                 m->spec.ad.start[k + 1] - m->spec.ad.start[k]);
        snprintf(dims + b, sizeof dims - b, "%s%d", k ? " | " : "", m->spec.ad.dim[k]);
    }
    printf("  output     adaptive: clusters of %s words in %s dims, %s, dropout %g\n", sizes, dims,
           m->spec.cfg->model.output.tie ? "tied" : "untied", m->spec.cfg->model.output.dropout);
}

static void print_summary(const Trainer *tr, const RunData *d, int threads) {
    const Config *c = tr->m.spec.cfg;
    double fpt = model_flops_per_token(c, tr->m.spec.V, c->train.seq_len);
    size_t data_bytes = (d->train.n + d->valid.n) * sizeof(int32_t);
    printf("trainshort: %s\n", tr->dir);
    printf("  model      %d layers, d_model %d, %d heads (%d kv), d_ff %d, %s, position %s\n"
           "  norms      %s, %s, final norm %s\n",
           c->model.n_layers, c->model.d_model, c->model.n_heads, c->model.n_kv_heads,
           c->model.d_ff, c->model.activation, c->model.position, c->model.norm,
           c->model.norm_position, c->model.final_norm ? "on" : "off");
    print_output_layer(&tr->m);
    printf("  parameters %zu (%.2f M)\n", param_count(&tr->m.spec.pt),
           param_count(&tr->m.spec.pt) / 1e6);
    printf("  data       %s: vocab %d, train %zu tokens, valid %zu tokens\n", c->data.dir,
           d->vocab.n, d->train.n, d->valid.n);
    printf("  batch      %d x %d tokens x %d accum = %lld tokens/step, %d steps\n", c->train.batch,
           c->train.seq_len, c->train.accum, ckpt_tokens_per_step(c), c->train.steps);
    printf("  compute    %.1f MFLOP/token forward, %.1f MFLOP/token training\n", fpt / 1e6,
           3 * fpt / 1e6);
    printf("  memory     %.0f MB estimated (parameters+grads+Adam %.0f MB, activations %.0f MB, "
           "data %.0f MB)\n",
           (model_param_bytes(&tr->m) + tr->m.state.act_bytes + data_bytes) / 1e6,
           model_param_bytes(&tr->m) / 1e6, tr->m.state.act_bytes / 1e6, data_bytes / 1e6);
    printf("  threads    %d, BLAS kernel %s\n", threads, blas_kernel_name());
    printf("  precision  %s, products on %s\n",
           tr->m.spec.bf16
               ? "bf16 (bf16 x bf16 -> f32 products outside attention, the rest float32)"
               : "fp32",
           gemm_engine_name(tr->m.spec.engine));
    if (d->valid.n_unk)
        printf("  note       %zu valid words not in the vocabulary map to <unk>\n", d->valid.n_unk);
    fflush(stdout);
}

/* One optimizer step: accum micro-batches of gradients, clip, AdamW. Returns the mean loss
 * and sets *norm to the gradient norm before clipping. */
static double train_step(Trainer *tr, Batcher *bt, int32_t *in, int32_t *tg, double lr,
                         double *norm) {
    Model *m = &tr->m;
    const Config *c = m->spec.cfg;
    const int B = c->train.batch, T = c->train.seq_len, A = c->train.accum;
    memset(m->weights.grads, 0, m->spec.pt.total * sizeof(float));
    double loss = 0.0;
    for (int k = 0; k < A; k++) {
        uint64_t micro = (uint64_t)tr->ts.step * A + k;
        batcher_get(bt, micro * B, B, in, tg);
        Pass p = {.B = B, .T = T, .train = 1, .key = rng_key((uint64_t)c->train.seed, micro)};
        model_forward(m, &p, in);
        loss += model_backward(m, &p, in, tg, 1.0f / ((float)B * T * A));
    }
    loss /= (double)B * T * A;
    *norm = grad_norm(m->weights.grads, &m->spec.pt);
    if (!isfinite(loss) || !isfinite(*norm)) return loss;
    if (c->train.clip > 0 && *norm > c->train.clip)
        grad_scale(m->weights.grads, &m->spec.pt, (float)(c->train.clip / *norm));
    AdamW opt = {lr, c->train.beta1, c->train.beta2, c->train.eps, c->train.weight_decay};
    adamw_step(m->weights.params, m->weights.grads, tr->adam_m, tr->adam_v, &m->spec.pt, &opt,
               tr->ts.step + 1);
    weights_sync_bf16(&m->weights, &m->spec); /* once per step, not per micro-batch */
    return loss;
}

static void validate(Trainer *tr, const RunData *d, RunLog *log, Progress *pg) {
    const Config *c = tr->m.spec.cfg;
    size_t n = c->train.eval_tokens > 0 && (size_t)c->train.eval_tokens < d->valid.n
                   ? (size_t)c->train.eval_tokens
                   : d->valid.n;
    double prof[2][PF_N]; /* --profile reports training time only */
    memcpy(prof, tr->m.state.prof, sizeof prof);
    EvalResult r =
        eval_nonoverlap(&tr->m, d->valid.ids, n, c->train.seq_len, d->vocab.eos, NULL, NULL);
    memcpy(tr->m.state.prof, prof, sizeof prof);
    double loss = r.nll / (double)r.tokens;
    progress_say(pg, "step %6ld | valid loss %.4f | ppl %.2f | %zu tokens at L=%d", tr->ts.step,
                 loss, exp(loss), r.tokens, c->train.seq_len);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)tr->ts.step);
    cJSON_AddNumberToObject(o, "tokens", (double)tr->ts.tokens);
    cJSON_AddNumberToObject(o, "val_loss", loss);
    cJSON_AddNumberToObject(o, "val_ppl", exp(loss));
    cJSON_AddNumberToObject(o, "val_tokens", (double)r.tokens);
    log_row(log, o);
}

static void log_step(RunLog *log, const TrainState *ts, double loss, double lr, double norm,
                     double tps) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)ts->step);
    cJSON_AddNumberToObject(o, "tokens", (double)ts->tokens);
    cJSON_AddNumberToObject(o, "loss", loss);
    cJSON_AddNumberToObject(o, "lr", lr);
    cJSON_AddNumberToObject(o, "grad_norm", norm);
    cJSON_AddNumberToObject(o, "tokens_per_s", tps);
    cJSON_AddNumberToObject(o, "elapsed_s", ts->elapsed);
    cJSON_AddNumberToObject(o, "peak_rss_mb", peak_rss_bytes() / 1e6);
    log_row(log, o);
}

/* A row at each start of training (step 0, or the step a --resume continues from): what ran,
 * so that a log read later says which build, machine, threads and BLAS kernel produced its
 * speeds (a run resumed elsewhere has a row per machine). */
static void log_start(RunLog *log, const Trainer *tr, int threads, int resumed) {
    const Config *c = tr->m.spec.cfg;
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)tr->ts.step);
    cJSON_AddNumberToObject(o, "tokens", (double)tr->ts.tokens);
    cJSON_AddStringToObject(o, "start", resumed ? "resume" : "new");
    cJSON_AddStringToObject(o, "rev", TRAINSHORT_REV);
    cJSON_AddNumberToObject(o, "threads", threads);
    cJSON_AddStringToObject(o, "blas", blas_kernel_name());
    cJSON_AddStringToObject(o, "precision", c->train.precision);
    cJSON_AddStringToObject(o, "matmul", gemm_engine_name(tr->m.spec.engine));
    cJSON_AddNumberToObject(o, "cores", omp_get_num_procs()); /* what threads default to */
    cJSON_AddStringToObject(o, "cpu", cpu);
    cJSON_AddNumberToObject(o, "params", (double)param_count(&tr->m.spec.pt));
    cJSON_AddNumberToObject(o, "train_flops_per_token",
                            3 * model_flops_per_token(c, tr->m.spec.V, c->train.seq_len));
    log_row(log, o);
}

/* The last row of a finished run, after its final checkpoint. */
static void log_done(RunLog *log, const TrainState *ts) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)ts->step);
    cJSON_AddNumberToObject(o, "tokens", (double)ts->tokens);
    cJSON_AddBoolToObject(o, "done", 1);
    cJSON_AddNumberToObject(o, "elapsed_s", ts->elapsed);
    log_row(log, o);
}

/* A step-0 row recording where the weights came from (kept by a later --resume). */
static void log_init(RunLog *log, const InitSource *src) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", 0);
    cJSON_AddStringToObject(o, "init", src->model);
    cJSON_AddNumberToObject(o, "init_step", (double)src->step);
    log_row(log, o);
}

static void print_profile(const Model *m, double total) {
    static const char *names[PF_N] = {"embedding+pos", "layernorm",        "qkv matmul",
                                      "attention",     "proj matmul",      "ffn matmuls",
                                      "activation",    "residual+dropout", "output+loss"};
    printf("profile (seconds, share of training time %.1f s):\n", total);
    printf("  %-18s %10s %10s %7s\n", "op", "forward", "backward", "share");
    for (int i = 0; i < PF_N; i++)
        printf("  %-18s %10.2f %10.2f %6.1f%%\n", names[i], m->state.prof[0][i],
               m->state.prof[1][i],
               100.0 * (m->state.prof[0][i] + m->state.prof[1][i]) / (total > 0 ? total : 1));
}

static void train_loop(Trainer *tr, const RunData *d, RunLog *log, const Args *a) {
    const Config *c = tr->m.spec.cfg;
    const int B = c->train.batch, T = c->train.seq_len;
    const long long tokens_per_step = ckpt_tokens_per_step(c);
    const Schedule sched = schedule_parse(c->train.schedule);
    int32_t *in = xcalloc((size_t)B * T, 4), *tg = xcalloc((size_t)B * T, 4);
    Batcher bt;
    batcher_init(&bt, &d->train, T, (uint64_t)c->train.seed);
    Progress pg;
    progress_init(&pg);
    double t_window = now_seconds(), t_prev = t_window, train_time = 0.0;
    long window_start = tr->ts.step;
    while (tr->ts.step < c->train.steps) {
        double lr = lr_at(sched, tr->ts.step, c->train.steps, c->train.warmup, c->train.lr,
                          c->train.min_lr);
        double norm, loss = train_step(tr, &bt, in, tg, lr, &norm);
        if (!isfinite(loss) || !isfinite(norm)) {
            char kept[2400];
            progress_end(&pg);
            sys_error("loss %s at step %ld (loss %g, gradient norm %g; try a lower train.lr, or "
                      "train.clip); stopped without saving: %s",
                      isfinite(loss) ? "finite but its gradient is not finite" : "is not finite",
                      tr->ts.step + 1, loss, norm,
                      kept_state(tr->dir, tr->saved_step, kept, sizeof kept));
        }
        double now = now_seconds();
        tr->ts.step++;
        tr->ts.tokens += tokens_per_step;
        tr->ts.elapsed += now - t_prev;
        train_time += now - t_prev;
        t_prev = now;
        double tps = (double)(tr->ts.step - window_start) * tokens_per_step / (now - t_window);
        char eta[32];
        format_duration((double)(c->train.steps - tr->ts.step) * tokens_per_step / tps, eta,
                        sizeof eta);
        int keep = tr->ts.step % c->train.log_every == 0 || tr->ts.step == c->train.steps;
        progress_show(&pg, keep,
                      "step %6ld/%d | loss %.4f | lr %.2e | norm %.3f | %.0f tok/s | ETA %s",
                      tr->ts.step, c->train.steps, loss, lr, norm, tps, eta);
        if (keep || tr->ts.step == 1) log_step(log, &tr->ts, loss, lr, norm, tps);
        if (tr->ts.step % 50 == 0) t_window = now, window_start = tr->ts.step;
        int last = tr->ts.step == c->train.steps;
        if ((c->train.eval_every && tr->ts.step % c->train.eval_every == 0) || last) {
            validate(tr, d, log, &pg);
            t_prev = now_seconds(); /* validation time is not training time */
        }
        if ((c->train.ckpt_every && tr->ts.step % c->train.ckpt_every == 0) || last)
            save_checkpoint(tr, log);
        if (last) log_done(log, &tr->ts);
        if (g_stop || tr->ts.step == a->stop_at) {
            if (!last) save_checkpoint(tr, log);
            progress_say(
                &pg, "stopped at step %ld: checkpoint written; continue with ./train --resume %s",
                tr->ts.step, tr->dir);
            break;
        }
    }
    progress_end(&pg);
    if (a->profile) print_profile(&tr->m, train_time);
    batcher_free(&bt);
    free(in);
    free(tg);
}

/* --describe: the resolved config for V words (--vocab-size, else the data's vocabulary). */
static void describe(const Args *a, const Config *cfg) {
    char err[1024];
    int V = (int)a->vocab_size, lengths[LENGTHS_MAX], n = 0;
    if (V) {
        if (model_check_vocab(cfg, V, err, sizeof err)) user_error("%s", err);
    } else {
        Vocab v;
        load_vocab(&v, cfg, NULL);
        V = v.n;
        vocab_free(&v);
    }
    if (a->flops_at &&
        (n = lengths_parse(a->flops_at, cfg->train.seq_len, lengths, err, sizeof err)) < 0)
        user_error("--flops-at: %s", err);
    describe_write(stdout, cfg, V, lengths, n);
}

int main(int argc, char **argv) {
    blas_ensure_fast_kernels(argv);
    Args a = parse_args(argc, argv);
    Trainer tr = {.saved_step = -1};
    Config cfg = load_config(&a, tr.dir, sizeof tr.dir);
    if (a.describe) {
        describe(&a, &cfg);
        config_free(&cfg);
        exit_flushed();
    }
    if (!strcmp(cfg.train.precision, "bf16") && !bf16_cpu_supported())
        user_error("train.precision bf16 needs a CPU with AVX512-BF16 (vdpbf16ps), which this "
                   "one lacks; use train.precision=fp32");
    check_token_count(&cfg);
    if (a.resume) lock_run_dir(tr.dir); /* before ckpt_recover touches its files */
    int threads = threads_setup(cfg.train.threads);
    InitSource src = {0};
    char vocab_txt[2048];
    path_join(vocab_txt, sizeof vocab_txt, tr.dir, "vocab.txt");
    if (a.init) open_init(&src, a.init, &cfg);
    RunData d = {0};
    load_data(&d, &cfg, a.resume ? vocab_txt : a.init ? src.vocab : NULL);
    model_create(&tr.m, &cfg, d.vocab.n, cfg.train.batch, cfg.train.seq_len, 1);
    tr.adam_m = xcalloc(tr.m.spec.pt.total, sizeof(float));
    tr.adam_v = xcalloc(tr.m.spec.pt.total, sizeof(float));
    if (a.resume)
        restore_checkpoint(&tr);
    else if (a.init)
        init_from(&tr, &src, &d.vocab);
    else
        model_init(&tr.m, (uint64_t)cfg.train.seed);
    if (!a.resume) prepare_run_dir(tr.dir, &cfg, &d.vocab, &tr.saved_step);
    print_summary(&tr, &d, threads);
    if (a.init)
        printf("  init       weights of %s (step %ld); step 0, fresh optimizer state\n", src.model,
               src.step);
    if (src.n_unused)
        printf("  note       left out %d checkpoint tensor(s) this model does not have: %s\n",
               src.n_unused, src.unused);
    if (a.resume) printf("  resuming   at step %ld of %d\n", tr.ts.step, cfg.train.steps);
    if (tr.recovered[0]) printf("  recovered  %s\n", tr.recovered);
    RunLog log;
    open_log(&log, &tr);
    if (tr.ts.step < cfg.train.steps) log_start(&log, &tr, threads, a.resume != NULL);
    if (tr.ts.step == cfg.train.steps && !log.done) /* killed between its last save and row */
        log_done(&log, &tr.ts);
    if (a.init) log_init(&log, &src);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    train_loop(&tr, &d, &log, &a);
    char err[2200];
    if (jsonl_close(&log.file, err, sizeof err)) sys_error("%s", err);
    tokens_free(&d.train);
    tokens_free(&d.valid);
    vocab_free(&d.vocab);
    model_free(&tr.m);
    free(tr.adam_m);
    free(tr.adam_v);
    config_free(&cfg);
    exit_flushed();
}
