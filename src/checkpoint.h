/* checkpoint.h — a run's model and optimizer state as two safetensors files.
 *
 *   model.safetensors  every parameter under its table name (PyTorch layout, float32);
 *                      __metadata__: format, config (the resolved JSON), vocab_size, step
 *   optim.safetensors  "adam.m.<name>", "adam.v.<name>" per parameter;
 *                      __metadata__: format, step, tokens, elapsed
 *
 * The pair is one atomic unit (ckpt_save): the optimizer state of step S is first written, whole
 * and synced, as optim.step-S.safetensors; replacing model.safetensors (itself atomic: temp file,
 * fsync, rename) is the commit point; then optim.step-S.safetensors is renamed over
 * optim.safetensors. A crash before the commit leaves the previous pair (plus a pending file that
 * ckpt_recover deletes); a crash after it leaves model.safetensors of step S and its optimizer
 * state under the pending name, which ckpt_recover renames into place. So model.safetensors
 * always names the checkpoint, ./eval reads it at any moment, and run directories written before
 * this scheme load unchanged.
 *
 * Loading checks names, shapes, dtypes, finiteness, the metadata ranges and the config, and
 * reports one line naming the file. */
#ifndef CHECKPOINT_H
#define CHECKPOINT_H

#include <stddef.h>

#include "model.h"

#define CKPT_FORMAT "trainshort-ckpt-1"

typedef struct {
    long step;
    long long tokens;
    double elapsed; /* training seconds so far */
} TrainState;

#define CKPT_PENDING_PREFIX "optim.step-"

/* The pair of step ts->step into dir, as described above. 0, or -1 with err set; a failure leaves
 * the previous checkpoint in place. */
int ckpt_save(const char *dir, const Model *m, const float *adam_m, const float *adam_v,
              const TrainState *ts, char *err, size_t n);
/* Before loading the checkpoint of step `step` (model.safetensors' step) from dir: finishes a
 * save interrupted after its commit point, deletes pending files of uncommitted saves and the
 * temp files of dead processes. note gets what was done ("" if nothing). 0, or -1 with err. */
int ckpt_recover(const char *dir, long step, char *note, size_t note_len, char *err, size_t n);
/* --ckpt RUN of ./eval and ./generate: the run directory or the model.safetensors inside it.
 * model = the model file, dir = the directory holding it (and vocab.txt); a path that does not
 * exist is a user error naming it. */
void ckpt_paths(const char *ckpt, char *model, char *dir, size_t n);
/* ckpt_paths, then the model file's config, vocabulary size and step (ckpt_read_config); a
 * failure is a user error naming the file. */
void ckpt_open_run(const char *ckpt, char *model, char *dir, size_t n, Config *cfg, int *V,
                   long *step);
/* batch x seq_len x accum: the tokens one optimizer step reads. */
long long ckpt_tokens_per_step(const Config *c);

/* The two files one at a time (tests; ckpt_save is the way to write a checkpoint). */
int ckpt_save_model(const char *path, const Model *m, const TrainState *ts, char *err, size_t n);
int ckpt_save_optim(const char *path, const Model *m, const float *adam_m, const float *adam_v,
                    const TrainState *ts, char *err, size_t n);
/* Reads a model checkpoint's config (into an uninitialised Config), vocabulary size and step. */
int ckpt_read_config(const char *path, Config *cfg, int *V, long *step, char *err, size_t n);
/* Loads parameters into a model created from that config; every tensor must match. */
int ckpt_load_model(const char *path, Model *m, char *err, size_t n);
/* Starting weights for a new run (./train --init): every tensor of m must be in the file with
 * the same shape; tensors of the file that m lacks are skipped. Returns how many were skipped
 * (their names, comma-separated, in unused), or -1 with a message. */
int ckpt_init_model(const char *path, Model *m, char *unused, size_t un, char *err, size_t n);
int ckpt_load_optim(const char *path, const Model *m, float *adam_m, float *adam_v, TrainState *ts,
                    char *err, size_t n);

#endif
