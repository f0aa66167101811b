/* distance.c — helpers for the bias methods whose bias depends on the distance i - j only
 * (t5, kerple_log, fire, and alibi's backward): they tabulate the bias per distance in
 * prepare(), add table rows to score tiles, and reduce dscores per distance in backward. */
#include "position.h"

void pos_add_distance_bias(float *row, const float *table, int i, int j0, int nj) {
    int jmax = i - j0 + 1 < nj ? i - j0 + 1 : nj; /* keys j <= i only */
    const float *ti = table + (i - j0);           /* ti[-c] = bias at distance i - (j0 + c) */
    for (int c = 0; c < jmax; c++) row[c] += ti[-c];
}

void pos_bias_distance_sums(double *sums, const float *dscores, int B, int H, int T, int rows) {
#pragma omp parallel for schedule(static)
    for (int h = 0; h < H; h++) {
        double *s = sums + (size_t)h * T;
        for (int n = 0; n < T; n++) s[n] = 0.0;
        for (int b = 0; b < B; b++) {
            const float *d = dscores + ((size_t)b * H + h) * T * T;
            for (int i = 0; i < rows && i < T; i++) {
                const float *row = d + (size_t)i * T;
                for (int n = 0; n <= i; n++) s[n] += row[i - n];
            }
        }
    }
}
