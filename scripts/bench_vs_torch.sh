#!/usr/bin/env bash
# bench_vs_torch.sh — training speed of the reference model in trainshort and in PyTorch, in
# one run on one host, alternating so that each ratio is measured under the same conditions.
# A benchmark, not a test: never run in CI.
#
# The reference model is bench_train.sh's: configs/wt2-sinusoidal-L256.json with
# model.output.type=full, batch 8 (6 layers, d_model 256, 8 heads, d_ff 1024, GELU, pre-LN with
# the final norm, dropout 0.1, sinusoidal positions, tied full softmax over 33,278 words, L 256,
# AdamW, clip 1.0). The PyTorch side is scripts/bench_vs_torch.py (the same shape written in
# torch 1.13 on random token ids; bf16 = torch.autocast("cpu", dtype=torch.bfloat16) around the
# forward and the loss), run with Debian's /usr/bin/python3.
#
# Each round runs the rows of the table below in order (trainshort-fp32, trainshort-fp32-onednn
# (train.matmul=onednn), torch-fp32, trainshort-bf16, torch-bf16), one JSON line each:
#   {"name": "torch-fp32", "tokens_per_s": ..., "gflops": ..., "flops_per_token": ..., ...}
# then one summary line of ratios of the rows' mean tokens/s over the rounds:
#   {"summary": "mean tokens/s ratios over R rounds", "trainshort-bf16/trainshort-fp32": ...,
#    "trainshort-bf16/torch-bf16": ..., "trainshort-fp32/torch-fp32": ...}
# Timing is bench_train.sh's: --steps N steps, the first min(5, N-1) untimed, tokens/s over the
# rest. flops_per_token is the count ./train prints for this model; the torch rows are given the
# same number, so gflops compares like with like.
#
# Environment of the torch rows (./train's rows get none of it):
#   GLIBC_TUNABLES=glibc.malloc.mmap_threshold=16G:glibc.malloc.trim_threshold=16G (in bytes).
#     PyTorch's big tensors (the 2048 x 33278 logits are 272 MB) are above glibc's mmap
#     threshold, so each step mmaps and unmaps them and the kernel zeroes fresh pages every time.
#     With both thresholds raised, freed memory stays in the heap and is reused. The tunables
#     are glibc's documented interface (MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ are the
#     same settings under their old names). glibc 2.36 accepts a threshold this large: a
#     malloc(300 MB) then comes from the heap. Both are needed, because setting either one
#     freezes the other at its 128 KB default: trim alone then mmaps every tensor of 128 KB or
#     more, and mmap alone gives the top of the heap back to the kernel after each step.
#   OPENBLAS_CORETYPE=SkylakeX on an AVX-512 CPU: torch's float32 products go through the same
#     Debian OpenBLAS, which picks AVX2 kernels on this CPU unless told. ./train sets the same
#     variable for itself (README, "BLAS kernels"), so both sides run the same kernels.
#   Measured 2026-12-02 on the 2-core AVX-512 host, torch-fp32, 5 steps, 3 timed, minor page
#   faults of the whole process from /usr/bin/time:
#     as installed                      404 tokens/s   1.87M faults
#     OPENBLAS_CORETYPE=SkylakeX        1136, 1218      1.90M
#     + the two thresholds above        1363, 1421      0.66M
#   The CPU kernels are most of the ~3x; the thresholds add 17-20% and cut faults 2.9x.
#   Under load from another job, with AVX2 kernels: mmap threshold only 1.12M faults, trim
#   threshold only 3.79M, MALLOC_TOP_PAD_=16G 0.65M, thresholds + arena_max=1 0.59M. Those
#   runs' tokens/s are not comparable. TOP_PAD and ARENA_MAX did no better than the two
#   thresholds, so they are not set. torch-bf16 (AVX2 kernels): 912 tokens/s and 2.04M faults
#   as installed; 1132 and 0.40M with the thresholds.
#
# Usage: scripts/bench_vs_torch.sh [--steps N] [--rounds R] [--no-bf16]
#   --steps N   steps per row (default 30; at least 2)
#   --rounds R  times the table is run (default 2)
#   --no-bf16   skip the bf16 rows (also skipped, with a line on stderr, without AVX512-BF16)
# Run it on a quiet machine: both trainers use every core, and a second job on them distorts
# every row (README, "One job at a time").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

steps=30
rounds=2
bf16=1
while [[ $# -gt 0 ]]; do
    case $1 in
    --steps) steps=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --no-bf16) bf16=0; shift ;;
    *) echo "bench_vs_torch: unknown argument $1 (expected --steps N, --rounds R, --no-bf16)" >&2; exit 2 ;;
    esac
done
[[ $steps =~ ^[0-9]+$ && $steps -ge 2 ]] || { echo "bench_vs_torch: --steps must be an integer of at least 2 (the first step is not timed)" >&2; exit 2; }
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 ]] || { echo "bench_vs_torch: --rounds must be a positive integer" >&2; exit 2; }
torch_py=/usr/bin/python3 # Debian's, with python3-torch; python3 on PATH may lack torch
if ! "$torch_py" -c 'import torch' 2>/dev/null; then
    echo "bench_vs_torch: $torch_py cannot import torch (apt-get install python3-torch)" >&2
    exit 2
fi
if [[ $bf16 == 1 ]] && ! grep -qw avx512_bf16 /proc/cpuinfo; then
    echo "SKIP bf16: this CPU has no AVX512-BF16 (avx512_bf16 not in /proc/cpuinfo)" >&2
    bf16=0
fi
data=data/wikitext-2
[[ -s $data/wiki.train.tokens ]] || data=../shared/data/wikitext-2
[[ -s $data/wiki.train.tokens ]] || { echo "bench_vs_torch: WikiText-2 not found (scripts/get_data.sh wikitext-2)" >&2; exit 1; }
make -s all
warm=$((steps - 1 < 5 ? steps - 1 : 5)) # bench_train.sh's min(5, steps - 1)

big=17179869184 # 16 GiB: larger than any allocation, so nothing is mmapped or trimmed
torch_env=("GLIBC_TUNABLES=glibc.malloc.mmap_threshold=$big:glibc.malloc.trim_threshold=$big")
grep -qw avx512f /proc/cpuinfo && torch_env+=(OPENBLAS_CORETYPE=SkylakeX)

# The rows of one round: name, trainer (ours = ./train, torch = bench_vs_torch.py), precision,
# then extra ./train arguments. Another row is one line, e.g.
#   "trainshort-fp32-1thread ours fp32 --set train.threads=1"
rows=("trainshort-fp32 ours fp32"
    "trainshort-fp32-onednn ours fp32 --set train.matmul=onednn"
    "torch-fp32 torch fp32"
    "trainshort-bf16 ours bf16"
    "torch-bf16 torch bf16")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fpt="" # training FLOPs per token from ./train's summary, given to the torch rows
runs=0

# ours NAME PRECISION [./train args]: train `steps` steps, print the JSON line (bench_train.sh)
ours() {
    local name=$1 precision=$2 out
    shift 2
    runs=$((runs + 1))
    out=$tmp/$runs
    ./train --config configs/wt2-sinusoidal-L256.json --out "$out" --set model.output.type=full \
        --set train.batch=8 --set data.dir="$data" --set train.precision="$precision" \
        --set train.steps="$steps" --set train.warmup=10 --set train.log_every=1 \
        --set train.eval_every=0 --set train.eval_tokens=256 --set train.ckpt_every=0 \
        "$@" >"$out.out"
    fpt=$(sed -n 's/.*MFLOP\/token forward, \([0-9.]*\) MFLOP\/token training.*/\1/p' "$out.out")
    [[ -n $fpt ]] || { echo "bench_vs_torch: no FLOP count in ./train's output ($out.out)" >&2; exit 1; }
    # mean tokens/s over the steps after the warm-up, from the per-step elapsed times in the log
    python3 - "$out/log.jsonl" "$name" "$fpt" "$warm" "$precision" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
warm = int(sys.argv[4])
a, b = rows[warm - 1], rows[-1]
tps = (b["tokens"] - a["tokens"]) / (b["elapsed_s"] - a["elapsed_s"])
fpt = float(sys.argv[3]) * 1e6
print(json.dumps({"name": sys.argv[2], "tokens_per_s": round(tps, 1),
                  "gflops": round(tps * fpt / 1e9, 1), "flops_per_token": round(fpt),
                  "precision": sys.argv[5]}))
PY
}

# torch NAME PRECISION: the same steps in PyTorch, print its JSON line
torch() {
    [[ -n $fpt ]] || { echo "bench_vs_torch: a torch row needs a trainshort row before it (for flops_per_token)" >&2; exit 1; }
    env "${torch_env[@]}" "$torch_py" scripts/bench_vs_torch.py --name "$1" --precision "$2" \
        --steps "$steps" --warmup "$warm" --threads "$(nproc)" --flops-per-token "${fpt}e6"
}

for ((r = 1; r <= rounds; r++)); do
    for row in "${rows[@]}"; do
        read -ra f <<<"$row"
        [[ $bf16 == 1 || ${f[2]} != bf16 ]] || continue
        # not in a pipeline: `ours` sets fpt for the torch rows, which a subshell would lose
        "${f[1]}" "${f[0]}" "${f[2]}" "${f[@]:3}" >>"$tmp/rows.jsonl"
        tail -n 1 "$tmp/rows.jsonl"
    done
done

# summary: ratios of the mean tokens/s of the rows present
python3 - "$tmp/rows.jsonl" "$rounds" <<'PY'
import json, sys
tps = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    tps.setdefault(r["name"], []).append(r["tokens_per_s"])
mean = {k: sum(v) / len(v) for k, v in tps.items()}
n = int(sys.argv[2])
out = {"summary": f"mean tokens/s ratios over {n} round{'s' if n > 1 else ''}"}
for a, b in [("trainshort-bf16", "trainshort-fp32"), ("trainshort-bf16", "torch-bf16"),
             ("trainshort-fp32", "torch-fp32"), ("trainshort-fp32-onednn", "trainshort-fp32"),
             ("trainshort-fp32-onednn", "torch-fp32")]:
    if a in mean and b in mean:
        out[f"{a}/{b}"] = round(mean[a] / mean[b], 3)
print(json.dumps(out))
PY
