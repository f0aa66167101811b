/* lengths.h — the --lvalid list of evaluation lengths, parsed apart from ./eval so it can be unit
 * tested. Syntax (items separated by commas, each one of):
 *   N         one length                                   128
 *   A..B      A, 2A, 4A, ... while below B, then B          512..16000 -> 512 1024 ... 8192 16000
 *   A..B:S    A, A+S, A+2S, ... while below B, then B       100..350:100 -> 100 200 300 350
 *   paper     the ALiBi paper's rows (Tables 2-4) for the training length L:
 *             L + {0, 1, 10, 20, ..., 100, 200, ..., 1000, 2000, ..., 15000}  (35 lengths)
 * Both ranges end at B exactly, on the grid or not, so a sweep always reaches the length the user
 * typed. Lengths are 1 ... LENGTHS_MAX_VALUE; order is kept as written. */
#ifndef LENGTHS_H
#define LENGTHS_H

#include <stddef.h>

#define LENGTHS_MAX       256      /* lengths per list: a sweep of more is almost surely a typo */
#define LENGTHS_MAX_VALUE 10000000 /* 10M tokens: far beyond any split we evaluate */

/* Parses spec into out[0 .. LENGTHS_MAX). train_len is L for "paper". Returns the number of
 * lengths, or -1 with a one-line reason in err (without the flag's name). */
int lengths_parse(const char *spec, int train_len, int *out, char *err, size_t n);

#endif
