#!/usr/bin/env bash
# bench_eval.sh — evaluation speed and memory on the reference model (6 layers, d_model 256,
# 8 heads, d_ff 1024, vocab 33,278), sinusoidal and ALiBi, over the whole WikiText-2 valid
# split (217,646 tokens) at several L_valid. The weights come from one training step: speed and
# memory do not depend on what the weights are. One JSON line per (method, L_valid):
#   {"method": "alibi", "lvalid": 16000, "tokens_per_s": ..., "gflops": ..., "peak_rss_mb": ...}
# gflops = tokens/s x forward FLOPs per token at that length: per layer 2(4C^2 + 2CF) for the
# matmuls plus 4C(T+1)/2 for q.k and p.v over the causal triangle (each query meets (T+1)/2
# keys on average), plus 2CV for the output layer — model_flops_per_token() in src/model.c.
# Then the peak memory of ALiBi at --mem-lengths (default 16000 and 32000).
# Usage: scripts/bench_eval.sh [--lvalid 512,4096,16000] [--methods "sinusoidal alibi"]
#        [--mem-lengths "16000 32000"] [--threads N] [--repeat R]  (R runs, the best is kept)
#        [--precision fp32|bf16] [--matmul openblas|onednn]  (./eval's flags; a row that is not
#        fp32 on OpenBLAS says "precision": "bf16" or "matmul": "onednn")
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

lvalid=512,4096,16000
methods="sinusoidal alibi"
mem_lengths="16000 32000"
threads=0
repeat=1
precision=fp32
matmul=openblas
while [[ $# -gt 0 ]]; do
    case $1 in
    --lvalid) lvalid=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --mem-lengths) mem_lengths=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --precision) precision=$2; shift 2 ;;
    --matmul) matmul=$2; shift 2 ;;
    *) echo "bench_eval: unknown argument $1" >&2; exit 2 ;;
    esac
done
data=data/wikitext-2
[[ -s $data/wiki.valid.tokens ]] || data=../shared/data/wikitext-2
[[ -s $data/wiki.valid.tokens ]] || { echo "bench_eval: WikiText-2 not found (scripts/get_data.sh wikitext-2)" >&2; exit 1; }
make -s all
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One training step: a checkpoint with the reference model's shape and vocabulary.
train_one_step() {
    ./train --config configs/wt2-sinusoidal-L256.json --out "$tmp/$1" --set model.position.type="$1" \
        --set model.output.type=full \
        --set train.steps=1 --set train.eval_every=0 --set train.eval_tokens=256 \
        --set train.ckpt_every=0 --set data.dir="$data" >"$tmp/$1.train.out"
}

# The JSON rows of ./eval, with GFLOP/s from the FLOP count above; the best of the repeats.
summarize() {
    python3 - "$1" "$2" "$tmp/$2/config.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cfg = json.load(open(sys.argv[3]))["model"]
C, F, L = cfg["d_model"], cfg["d_ff"], cfg["n_layers"]
V = sum(1 for _ in open(sys.argv[3].replace("config.json", "vocab.txt")))
best = {}
for r in rows:
    if r["lvalid"] not in best or r["tokens_per_s"] > best[r["lvalid"]]["tokens_per_s"]:
        best[r["lvalid"]] = r
for T, r in sorted(best.items()):
    ffn = 3 * C * F if cfg.get("activation") == "swiglu" else 2 * C * F
    fpt = L * (2 * (4 * C * C + ffn) + 4 * C * (T + 1) / 2) + 2 * C * V
    row = {"method": sys.argv[2], "lvalid": T, "tokens_per_s": round(r["tokens_per_s"], 1),
           "gflops": round(r["tokens_per_s"] * fpt / 1e9, 1),
           "flops_per_token": round(fpt), "peak_rss_mb": round(r["peak_rss_mb"], 1)}
    for k in ("precision", "matmul"):  # only where not the default, as in ./eval's rows
        if k in r:
            row[k] = r[k]
    print(json.dumps(row))
PY
}

for m in $methods; do
    train_one_step "$m"
    for ((k = 0; k < repeat; k++)); do
        ./eval --ckpt "$tmp/$m" --lvalid "$lvalid" --threads "$threads" --json "$tmp/$m.jsonl" \
            --precision "$precision" --matmul "$matmul" >/dev/null
    done
    summarize "$tmp/$m.jsonl" "$m"
done

# Peak memory of ALiBi at the --mem-lengths: from the sweep's row when the length is there
# (the sweep runs lengths in increasing order, so its process peak is that length's), else one
# more ./eval run.
[[ -d $tmp/alibi ]] || train_one_step alibi
for T in $mem_lengths; do
    if [[ -s $tmp/alibi.jsonl ]] && grep -q "\"lvalid\":$T," "$tmp/alibi.jsonl"; then
        grep -m1 "\"lvalid\":$T," "$tmp/alibi.jsonl" >"$tmp/mem$T.jsonl"
    else
        ./eval --ckpt "$tmp/alibi" --lvalid "$T" --threads "$threads" --json "$tmp/mem$T.jsonl" \
            --precision "$precision" --matmul "$matmul" >/dev/null
    fi
    python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).readline()); print(json.dumps({"method":"alibi","lvalid":r["lvalid"],"peak_rss_mb":round(r["peak_rss_mb"],1),"tokens_per_s":round(r["tokens_per_s"],1)}))' "$tmp/mem$T.jsonl"
done
