/* evaluate.h — scoring a token stream with a trained model, in the paper's two ways
 * (docs/evaluation.md has the token accounting with a worked example).
 *
 * Nonoverlapping (the paper's main tables; fairseq-eval-lm --sample-break-mode none
 * --context-window 0): the stream is cut into consecutive L-long segments; segment k predicts
 * tokens [kL, (k+1)L) and its inputs are the same tokens shifted right by one — the first input
 * is the previous segment's last token (<eos> for the very first segment). Attention is causal
 * inside a segment and nothing is carried across. The last segment may be shorter.
 *
 * Sliding window with stride S (the paper's Appendix B): window 0 is [0, L) and scores all its
 * tokens; window k >= 1 is [kS, kS + L) cut at the end of the stream and scores only the tokens
 * the windows before it did not reach, [(k-1)S + L, kS + L) — its last S (fewer in the final
 * window, which starts on the same grid, so stride L gives the nonoverlapping segments even when
 * L does not divide the stream). Inputs are shifted right by one as above. So token t < L is
 * scored at window position t, token t >= L at position p = L - S + (t - L) mod S, between L - S
 * and L - 1; the prediction at position p reads p + 1 inputs: the p window tokens before it and
 * the token just before the window (<eos> at the start of the stream). S = L is exactly the
 * nonoverlapping evaluation, same windows and same sums.
 *
 * In both, every token is scored exactly once; perplexity = exp(total NLL / tokens). */
#ifndef EVALUATE_H
#define EVALUATE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct {
    int L, stride;
    size_t segments; /* forward windows (segments when stride = L) */
    size_t tokens;   /* tokens scored */
    double nll;      /* total, nats */
    double seconds;
} EvalResult;

/* Window k: the model reads [start, end) and the tokens [score, end) are scored. */
typedef struct {
    size_t start, score, end;
} EvalWindow;

/* Number of windows over n tokens, and window k of them (k < eval_window_count). */
size_t eval_window_count(size_t n, int L, int S);
EvalWindow eval_window(size_t n, int L, int S, size_t k);
/* Tokens the model reads in all windows: the work of an evaluation (S = L: n). */
size_t eval_tokens_read(size_t n, int L, int S);

/* Optional accumulators, each NULL or filled: per position (L entries each), nll[p] += loss and
 * count[p] += 1 for every scored token at position p of its window; per window (k <
 * eval_window_count entries), window_nll[k] = the summed loss of the tokens window k scores. */
typedef struct {
    double *nll;
    size_t *count;
    double *window_nll;
} EvalPositions;

typedef void (*EvalProgressFn)(void *ctx, size_t done_tokens, size_t total_tokens);

/* Scores ids[0..n) with windows of L tokens advancing by S (1 <= S <= L; S = L is the
 * nonoverlapping evaluation). The model must hold max_T >= L; up to max_B * max_T / L full
 * windows share a forward pass. pos and progress may be NULL; progress counts scored tokens. */
EvalResult eval_sliding(Model *m, const int32_t *ids, size_t n, int L, int S, int eos,
                        EvalPositions *pos, EvalProgressFn progress, void *ctx);
EvalResult eval_nonoverlap(Model *m, const int32_t *ids, size_t n, int L, int eos,
                           EvalProgressFn progress, void *ctx);

/* NBCE scoring (Su 2023; docs/evaluation.md): the windows of eval_sliding with L = W and
 * stride S, each scoring the same tokens [score, end). Their context [start, score) is cut into
 * chunks of at most M tokens; each chunk followed by the scored tokens' inputs is one forward,
 * and the scored tokens' inputs alone another (the unconditional term). Each scored token's
 * distribution is nbce_combine's: (1 + beta) log p of the chunk with the lowest entropy at that
 * token, minus beta log p unconditional, renormalized. Window 0 has no context before its
 * tokens: its last min(S, end) tokens are scored so with the tokens before them as context, and
 * those earlier tokens in nonoverlapping segments of M (the model then never reads more than
 * M + S tokens at once). The model must hold max_T >= M + S. pos as eval_sliding's. */
EvalResult eval_nbce(Model *m, const int32_t *ids, size_t n, int W, int S, int M, float beta,
                     int eos, EvalPositions *pos, EvalProgressFn progress, void *ctx);

#endif
