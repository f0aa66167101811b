/* checkpoint.h — a run's model and optimizer state as two safetensors files.
 *
 *   model.safetensors  every parameter under its table name (PyTorch layout, float32);
 *                      __metadata__: format, config (the resolved JSON), vocab_size, step
 *   optim.safetensors  "adam.m.<name>", "adam.v.<name>" per parameter;
 *                      __metadata__: format, step, tokens, elapsed
 * Both are written atomically; the step is stored in both so a resume can tell a matched pair.
 * Loading checks names, shapes, dtypes and the config, and reports one line naming the file. */
#ifndef CHECKPOINT_H
#define CHECKPOINT_H

#include <stddef.h>

#include "../model.h"

#define CKPT_FORMAT "trainshort-ckpt-1"

typedef struct {
    long step;
    long long tokens;
    double elapsed; /* training seconds so far */
} TrainState;

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
