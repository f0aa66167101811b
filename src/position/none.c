/* none.c — no position information at all. Causal attention alone still lets a decoder infer
 * position to some degree (Haviv et al. 2022, "Transformer Language Models without Positional
 * Encodings Still Learn Positional Information"), which makes this a useful control. */
#include "position.h"

const PosMethod pos_none = {
    .name = "none",
    .summary = "no position information (causal masking only)",
    .label = "No position",
    .color = "#7f7f7f",
};
