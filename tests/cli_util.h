/* cli_util.h — helpers of the tests that run ./train and ./eval on the tiny corpus of
 * tests/fixtures/cli (test_cli.c, test_crash.c): configs, scratch runs, and reading run logs and
 * checkpoint headers independently of src/io. */
#ifndef CLI_UTIL_H
#define CLI_UTIL_H

#include <stddef.h>

#include <cjson/cJSON.h>

void write_text(const char *path, const char *text); /* atomically; a failure ends the tests */
/* The tiny model every CLI test trains (12 steps of 2 x 16 tokens, well under a second), reading
 * <dir>/data, with "key=value" overrides (a NULL-terminated list, or NULL); a value that is not
 * JSON is a string. */
void write_config(const char *path, const char *dir, const char *const *overrides);
/* The tiny config with a learning rate and weight decay so large that the weights overflow within
 * a few steps (200 steps, no clipping), checkpointing every ckpt_every steps (0: at the end). */
void write_diverging_config(const char *path, const char *dir, int ckpt_every);
/* Trains <dir>/run from <dir>/cfg.json; the test fails if that does not work. */
int train_run(const char *dir, char *out);
/* A fresh scratch directory (dir, n bytes) holding cfg.json (the tiny config with overrides)
 * and the run it trains into dir/run; returns 0 (after a failed CHECK) if training failed. */
int trained_scratch(const char *name, char *dir, size_t n, char *out, const char *const *overrides);
/* by_step[s] = the value of key in the log row of step s (NaN where no row has it). Returns the
 * number of rows that have key, or -1 if a line is not a JSON object with a numeric "step"
 * (with by_step NULL and max_step -1, only that: is every line a whole row?). */
int log_column(const char *path, const char *key, double *by_step, int max_step);
/* The JSON header of a safetensors file (caller frees); *data_at receives where the tensor
 * bytes start. NULL if the file is not readable as safetensors. */
cJSON *st_header(const char *path, size_t *data_at);
long meta_step(const char *path); /* the "step" of a checkpoint's metadata, -1 if absent */

#endif
