/* describe.h — `./train --describe`: what a config resolves to, as one JSON object, so scripts
 * ask the binary instead of keeping copies of its defaults, method list and FLOP count. */
#ifndef DESCRIBE_H
#define DESCRIBE_H

#include <stdio.h>

#include "config/config.h"

/* One line of JSON on f:
 *   {"config": <config.json as ./train would write it>, "vocab_size": V, "params": P,
 *    "train_flops_per_token": 3 x forward at train.seq_len,
 *    "flops_per_token": {"T": forward FLOPs per token at T, ...} for T = train.seq_len and each
 *    of lengths[0 .. n),
 *    "methods": [{"name", "label", "color", "summary"}, ...] (the registry, as --list-positions)}
 * cfg must be valid for a vocabulary of V words (model_check_vocab). */
void describe_write(FILE *f, const Config *cfg, int V, const int *lengths, int n);

/* The registered position methods, one JSON object a line (./train --list-positions). */
void describe_list_positions(FILE *f);

#endif
