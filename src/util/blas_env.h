/* blas_env.h — make sure OpenBLAS runs its fastest kernels, and say which it runs.
 *
 * Debian's OpenBLAS picks its AVX2 ("Zen") kernels on AMD CPUs even when they have AVX-512;
 * OPENBLAS_CORETYPE=SkylakeX doubles SGEMM speed there, but it is read once, when the library
 * loads — before main(). So if the CPU has AVX-512 and the variable is unset, we set it and
 * re-execute ourselves. An OPENBLAS_CORETYPE naming an older core (some images export
 * "Haswell") is raised the same way and the summary says so; TRAINSHORT_KEEP_CORETYPE=1 keeps
 * whatever the environment says. */
#ifndef BLAS_ENV_H
#define BLAS_ENV_H

void blas_ensure_fast_kernels(char **argv);
const char *blas_kernel_name(void); /* e.g. "SkylakeX" */
/* Sets OpenMP and OpenBLAS thread counts (0 = all cores); returns the count in use. */
int threads_setup(int n);

#endif
