/* checkpoint.c — see checkpoint.h. */
#include "checkpoint.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"
#include "io/safetensors.h"

static StTensor tensor_of(const TensorSpec *t, const char *name, const float *base) {
    StTensor s = {.name = name, .dtype = ST_F32, .ndim = t->ndim, .data = base + t->offset};
    for (int d = 0; d < t->ndim; d++) s.shape[d] = (int64_t)t->shape[d];
    return s;
}

int ckpt_save_model(const char *path, const Model *m, const TrainState *ts, char *err, size_t n) {
    StTensor *ts_ = xcalloc((size_t)m->spec.pt.n, sizeof *ts_);
    for (int k = 0; k < m->spec.pt.n; k++)
        ts_[k] = tensor_of(&m->spec.pt.t[k], m->spec.pt.t[k].name, m->weights.params);
    char *cfg = config_to_json(m->spec.cfg), vocab[32], step[32];
    snprintf(vocab, sizeof vocab, "%d", m->spec.V);
    snprintf(step, sizeof step, "%ld", ts->step);
    const char *keys[] = {"format", "config", "vocab_size", "step"};
    const char *vals[] = {CKPT_FORMAT, cfg, vocab, step};
    int rc = st_write(path, ts_, m->spec.pt.n, keys, vals, 4, err, n);
    free(cfg);
    free(ts_);
    return rc;
}

int ckpt_save_optim(const char *path, const Model *m, const float *adam_m, const float *adam_v,
                    const TrainState *ts, char *err, size_t n) {
    int nt = m->spec.pt.n;
    StTensor *t = xcalloc(2 * (size_t)nt, sizeof *t);
    char(*names)[80] = xcalloc(2 * (size_t)nt, sizeof *names);
    for (int k = 0; k < nt; k++) {
        snprintf(names[2 * k], 80, "adam.m.%s", m->spec.pt.t[k].name);
        snprintf(names[2 * k + 1], 80, "adam.v.%s", m->spec.pt.t[k].name);
        t[2 * k] = tensor_of(&m->spec.pt.t[k], names[2 * k], adam_m);
        t[2 * k + 1] = tensor_of(&m->spec.pt.t[k], names[2 * k + 1], adam_v);
    }
    char step[32], tokens[32], elapsed[32];
    snprintf(step, sizeof step, "%ld", ts->step);
    snprintf(tokens, sizeof tokens, "%lld", ts->tokens);
    snprintf(elapsed, sizeof elapsed, "%.3f", ts->elapsed);
    const char *keys[] = {"format", "step", "tokens", "elapsed"};
    const char *vals[] = {CKPT_FORMAT, step, tokens, elapsed};
    int rc = st_write(path, t, 2 * nt, keys, vals, 4, err, n);
    free(names);
    free(t);
    return rc;
}

static int check_format(StFile *f, const char *path, char *err, size_t n) {
    const char *fmt = st_meta(f, "format");
    if (fmt && strcmp(fmt, CKPT_FORMAT) == 0) return 0;
    snprintf(err, n, "%s: not a trainshort checkpoint (format '%s', expected '%s')", path,
             fmt ? fmt : "missing", CKPT_FORMAT);
    return -1;
}

/* Metadata integer `key`, which must lie in [lo, hi]. */
static int meta_int(StFile *f, const char *path, const char *key, long long lo, long long hi,
                    long long *out, char *err, size_t n) {
    const char *s = st_meta(f, key);
    char *end = NULL;
    errno = 0;
    if (s) *out = strtoll(s, &end, 10);
    if (!s || end == s || *end || errno) {
        snprintf(err, n, "%s: metadata '%s' is missing or not an integer", path, key);
        return -1;
    }
    if (*out >= lo && *out <= hi) return 0;
    snprintf(err, n, "%s: metadata '%s' is %lld, expected an integer in [%lld, %lld]", path, key,
             *out, lo, hi);
    return -1;
}

int ckpt_read_config(const char *path, Config *cfg, int *V, long *step, char *err, size_t n) {
    StFile *f = st_open(path, err, n);
    if (!f) return -1;
    long long v = 0, s = 0;
    int rc = check_format(f, path, err, n);
    if (!rc) rc = meta_int(f, path, "vocab_size", 2, 1 << 30, &v, err, n);
    const char *text = st_meta(f, "config");
    if (!rc && !text) {
        snprintf(err, n, "%s: metadata 'config' is missing", path);
        rc = -1;
    }
    if (!rc) {
        char origin[1100];
        snprintf(origin, sizeof origin, "%s (embedded config)", path);
        rc = config_from_text(cfg, text, origin, err, n);
    }
    /* a run never saves past its last step */
    if (!rc) rc = meta_int(f, path, "step", 0, cfg->train.steps, &s, err, n);
    *V = (int)v;
    *step = (long)s;
    st_close(f);
    return rc;
}

/* Copies tensor `name` (shape of spec t) from f into dst; -1 with a message on any mismatch. */
static int copy_tensor(StFile *f, const char *path, const char *name, const TensorSpec *t,
                       float *dst, char *err, size_t n) {
    const StTensor *s = st_get(f, name);
    if (!s) {
        snprintf(err, n, "%s: tensor '%s' is missing (checkpoint of a different model?)", path,
                 name);
        return -1;
    }
    int same = s->dtype == ST_F32 && s->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = s->shape[d] == (int64_t)t->shape[d];
    if (!same) {
        char want[64] = "", got[64] = "";
        for (int d = 0; d < t->ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%zu", d ? "x" : "",
                     t->shape[d]);
        for (int d = 0; d < s->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "x" : "",
                     (long long)s->shape[d]);
        snprintf(err, n, "%s: tensor '%s' is %s %s, the config needs float32 %s", path, name,
                 s->dtype == ST_F32 ? "float32" : "non-float32", got, want);
        return -1;
    }
    memcpy(dst, s->data, t->numel * sizeof(float));
    for (size_t i = 0; i < t->numel; i++)
        if (!isfinite(dst[i])) {
            snprintf(err, n, "%s: tensor '%s' holds a non-finite value (%g at index %zu)", path,
                     name, dst[i], i);
            return -1;
        }
    return 0;
}

/* Copies every tensor of m's table from the file at path; the file may hold more. */
static StFile *load_params(const char *path, Model *m, char *err, size_t n) {
    StFile *f = st_open(path, err, n);
    if (!f) return NULL;
    int rc = check_format(f, path, err, n);
    for (int k = 0; !rc && k < m->spec.pt.n; k++)
        rc = copy_tensor(f, path, m->spec.pt.t[k].name, &m->spec.pt.t[k],
                         m->weights.params + m->spec.pt.t[k].offset, err, n);
    if (rc)
        st_close(f);
    else
        weights_sync_bf16(&m->weights, &m->spec);
    return rc ? NULL : f;
}

/* The index of the first tensor of f from i on that m's table lacks, or -1. */
static int next_unused(const StFile *f, const Model *m, int i) {
    for (; i < st_count(f); i++)
        if (param_find(&m->spec.pt, st_at(f, i)->name) < 0) return i;
    return -1;
}

int ckpt_load_model(const char *path, Model *m, char *err, size_t n) {
    StFile *f = load_params(path, m, err, n);
    if (!f) return -1;
    int extra = next_unused(f, m, 0);
    if (extra >= 0)
        snprintf(err, n,
                 "%s: tensor '%s' is not in the config's model (a checkpoint of another "
                 "architecture?)",
                 path, st_at(f, extra)->name);
    st_close(f);
    return extra >= 0 ? -1 : 0;
}

int ckpt_init_model(const char *path, Model *m, char *unused, size_t un, char *err, size_t n) {
    StFile *f = load_params(path, m, err, n);
    if (!f) return -1;
    int n_unused = 0;
    size_t len = 0;
    if (un) unused[0] = 0;
    for (int i = next_unused(f, m, 0); i >= 0; i = next_unused(f, m, i + 1)) {
        const char *name = st_at(f, i)->name;
        if (len < un)
            len += (size_t)snprintf(unused + len, un - len, "%s%s", n_unused ? ", " : "", name);
        n_unused++;
    }
    st_close(f);
    return n_unused;
}

/* The second moments are averages of squares: a negative one would make AdamW's sqrt NaN. */
static int check_nonnegative(const char *path, const Model *m, const float *adam_v, char *err,
                             size_t n) {
    for (int k = 0; k < m->spec.pt.n; k++) {
        const TensorSpec *t = &m->spec.pt.t[k];
        for (size_t i = 0; i < t->numel; i++)
            if (adam_v[t->offset + i] < 0) {
                snprintf(err, n, "%s: tensor 'adam.v.%s' holds a negative value (%g at index %zu)",
                         path, t->name, adam_v[t->offset + i], i);
                return -1;
            }
    }
    return 0;
}

int ckpt_load_optim(const char *path, const Model *m, float *adam_m, float *adam_v, TrainState *ts,
                    char *err, size_t n) {
    StFile *f = st_open(path, err, n);
    if (!f) return -1;
    int rc = check_format(f, path, err, n);
    long long step = 0, tokens = 0;
    long long max_tokens;
    if (!rc) rc = meta_int(f, path, "step", 0, m->spec.cfg->train.steps, &step, err, n);
    if (__builtin_mul_overflow(step, ckpt_tokens_per_step(m->spec.cfg), &max_tokens))
        max_tokens = LLONG_MAX;
    if (!rc) rc = meta_int(f, path, "tokens", 0, max_tokens, &tokens, err, n);
    const char *e = st_meta(f, "elapsed");
    char *end = NULL;
    double elapsed = e ? strtod(e, &end) : 0.0;
    if (!rc && e && (end == e || *end || !isfinite(elapsed) || elapsed < 0)) {
        snprintf(err, n, "%s: metadata 'elapsed' is '%s', expected seconds >= 0", path, e);
        rc = -1;
    }
    for (int k = 0; !rc && k < m->spec.pt.n; k++) {
        char name[96];
        const TensorSpec *t = &m->spec.pt.t[k];
        snprintf(name, sizeof name, "adam.m.%s", t->name);
        rc = copy_tensor(f, path, name, t, adam_m + t->offset, err, n);
        snprintf(name, sizeof name, "adam.v.%s", t->name);
        if (!rc) rc = copy_tensor(f, path, name, t, adam_v + t->offset, err, n);
    }
    if (!rc) rc = check_nonnegative(path, m, adam_v, err, n);
    if (!rc) {
        ts->step = (long)step;
        ts->tokens = tokens;
        ts->elapsed = elapsed;
    }
    st_close(f);
    return rc;
}

long long ckpt_tokens_per_step(const Config *c) {
    return (long long)c->train.batch * c->train.seq_len * c->train.accum;
}

/* ---- the checkpoint pair ---- */

static void pending_path(char *buf, size_t size, const char *dir, long step) {
    snprintf(buf, size, "%s/" CKPT_PENDING_PREFIX "%ld.safetensors", dir, step);
}

int ckpt_save(const char *dir, const Model *m, const float *adam_m, const float *adam_v,
              const TrainState *ts, char *err, size_t n) {
    char pending[2200], model[2200], optim[2200];
    pending_path(pending, sizeof pending, dir, ts->step);
    snprintf(model, sizeof model, "%s/model.safetensors", dir);
    snprintf(optim, sizeof optim, "%s/optim.safetensors", dir);
    if (ckpt_save_optim(pending, m, adam_m, adam_v, ts, err, n)) return -1;
    if (ckpt_save_model(model, m, ts, err, n)) { /* the commit point: nothing changed */
        unlink(pending);
        return -1;
    }
    if (rename(pending, optim) == 0 && fsync_path_dir(optim) == 0) return 0;
    snprintf(err, n, "%s: cannot rename to %s: %s", pending, optim, strerror(errno));
    return -1;
}

/* "optim.step-<S>.safetensors" -> S, or -1 for any other name. */
static long pending_step(const char *name) {
    size_t k = strlen(CKPT_PENDING_PREFIX);
    if (strncmp(name, CKPT_PENDING_PREFIX, k) || !isdigit((unsigned char)name[k])) return -1;
    char *end;
    errno = 0;
    long step = strtol(name + k, &end, 10);
    return !errno && !strcmp(end, ".safetensors") ? step : -1;
}

int ckpt_recover(const char *dir, long step, char *note, size_t note_len, char *err, size_t n) {
    note[0] = 0;
    int temps = remove_dead_temps(dir);
    DIR *d = opendir(dir);
    if (temps < 0 || !d) {
        if (d) closedir(d);
        snprintf(err, n, "%s: cannot list the run directory: %s", dir, strerror(errno));
        return -1;
    }
    char path[2200], optim[2200];
    snprintf(optim, sizeof optim, "%s/optim.safetensors", dir);
    int rc = 0, completed = 0, dropped = 0;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        long s = pending_step(e->d_name);
        if (s < 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (s != step)
            dropped += unlink(path) == 0; /* a save that never reached its commit point */
        else if (rename(path, optim) || fsync_path_dir(optim))
            rc = -1, snprintf(err, n, "%s: cannot rename to %s: %s", path, optim, strerror(errno));
        else
            completed = 1;
    }
    closedir(d);
    size_t k = 0;
    if (completed)
        k = (size_t)snprintf(note, note_len, "completed the interrupted save of step %ld", step);
    if (temps + dropped && k < note_len)
        snprintf(note + k, note_len - k, "%sremoved %d file(s) of interrupted saves",
                 completed ? "; " : "", temps + dropped);
    return rc;
}

void ckpt_paths(const char *ckpt, char *model, char *dir, size_t n) {
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

void ckpt_open_run(const char *ckpt, char *model, char *dir, size_t n, Config *cfg, int *V,
                   long *step) {
    char err[1024];
    ckpt_paths(ckpt, model, dir, n);
    if (ckpt_read_config(model, cfg, V, step, err, sizeof err)) user_error("%s", err);
}
