/* evaluate.h — the paper's nonoverlapping evaluation, with fairseq's exact convention
 * (fairseq-eval-lm --sample-break-mode none --context-window 0):
 *
 * the token stream is cut into consecutive L-long segments; segment k predicts tokens
 * [kL, (k+1)L) and its inputs are the same tokens shifted right by one — the first input is
 * the previous segment's last token (<eos> for the very first segment). Attention is causal
 * inside a segment and nothing is carried across. Every token is scored exactly once, the last,
 * shorter segment included; perplexity = exp(total NLL / tokens). */
#ifndef EVALUATE_H
#define EVALUATE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct {
    int L;
    size_t segments, tokens;
    double nll; /* total, nats */
    double seconds;
} EvalResult;

typedef void (*EvalProgressFn)(void *ctx, size_t done_tokens, size_t total_tokens);

/* Scores ids[0..n) with the model (which must hold max_T >= L). Uses up to m->max_B segments
 * per forward pass. progress may be NULL. */
EvalResult eval_nonoverlap(Model *m, const int32_t *ids, size_t n, int L, int eos,
                           EvalProgressFn progress, void *ctx);

#endif
