#!/usr/bin/env bash
# bench_matmul.sh — the reference model's matrix products through OpenBLAS sgemm, oneDNN f32 and
# oneDNN bf16 (scripts/bench_matmul.c: shapes, layouts and output), on all cores, one JSON line
# per product and engine. Needs libdnnl-dev (oneDNN); the OpenBLAS kernel is the AVX-512 one
# ./train uses (OPENBLAS_CORETYPE=SkylakeX on a CPU with AVX-512, as src/util sets it).
# Usage: scripts/bench_matmul.sh [--threads N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
threads=$(nproc)
while [[ $# -gt 0 ]]; do
    case $1 in
    --threads) threads=$2; shift 2 ;;
    *) echo "bench_matmul: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -f /usr/include/oneapi/dnnl/dnnl.h ]] || { echo "bench_matmul: oneDNN is not installed (apt-get install libdnnl-dev)" >&2; exit 2; }
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
mkdir -p build
gcc -O2 -march=native -fopenmp -std=c11 -Wall -Wextra -D_GNU_SOURCE \
    -I/usr/include/x86_64-linux-gnu/openblas-openmp -o build/bench_matmul scripts/bench_matmul.c \
    -L$blas -Wl,-rpath,$blas -lopenblas -ldnnl
coretype=${OPENBLAS_CORETYPE:-}
grep -qw avx512f /proc/cpuinfo && coretype=SkylakeX
OPENBLAS_CORETYPE=$coretype OMP_NUM_THREADS=$threads build/bench_matmul
