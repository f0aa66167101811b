/* blas_env.c — see blas_env.h. */
#include "blas_env.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *raised_from; /* the weaker OPENBLAS_CORETYPE we replaced, if any */

/* Core types whose SGEMM kernels use AVX-512. */
static int is_avx512_core(const char *c) {
    return !strcasecmp(c, "SkylakeX") || !strcasecmp(c, "Cooperlake") ||
           !strcasecmp(c, "SapphireRapids");
}

void blas_ensure_fast_kernels(char **argv) {
    const char *prev = getenv("TRAINSHORT_RAISED_CORETYPE");
    if (prev) raised_from = prev;
    if (getenv("TRAINSHORT_NO_REEXEC") || getenv("TRAINSHORT_KEEP_CORETYPE")) return;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) return;
    const char *cur = getenv("OPENBLAS_CORETYPE");
    if (cur && is_avx512_core(cur)) return;
    /* Unset, or set to an AVX2-or-older core on an AVX-512 machine (some images export
     * OPENBLAS_CORETYPE=Haswell): raise it, remember from what, and say so in the summary. */
    if (cur) setenv("TRAINSHORT_RAISED_CORETYPE", cur, 1);
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    setenv("TRAINSHORT_NO_REEXEC", "1", 1); /* never loop, whatever happens */
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc?): carry on with the kernels we have */
}

const char *blas_kernel_name(void) {
    static char buf[160];
    if (raised_from)
        snprintf(buf, sizeof buf,
                 "%s (OPENBLAS_CORETYPE=%s raised; TRAINSHORT_KEEP_CORETYPE=1 keeps it)",
                 openblas_get_corename(), raised_from);
    else
        snprintf(buf, sizeof buf, "%s", openblas_get_corename());
    return buf;
}

int threads_setup(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return n;
}
