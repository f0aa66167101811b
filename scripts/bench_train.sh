#!/usr/bin/env bash
# bench_train.sh — training speed on the reference model: 6 layers, d_model 256, 8 heads,
# d_ff 1024, GELU, full softmax over WikiText-2's 33,278 words, L = 256, batch 8 sequences.
# One JSON line per position method:
#   {"name": "alibi", "tokens_per_s": ..., "gflops": ..., "flops_per_token": ...}
# tokens_per_s is the mean over the timed steps (after a warm-up); flops_per_token counts the
# matmuls, the causal attention and the output layer, x3 for forward + backward (as ./train
# reports it). Usage: scripts/bench_train.sh [--steps N] [--methods "sinusoidal alibi"]
# (default: every registered position method, in registry order).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

steps=30
warm=5
methods=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --steps) steps=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    *) echo "bench_train: unknown argument $1" >&2; exit 2 ;;
    esac
done
data=data/wikitext-2
[[ -s $data/wiki.train.tokens ]] || data=../shared/data/wikitext-2
[[ -s $data/wiki.train.tokens ]] || { echo "bench_train: WikiText-2 not found (scripts/get_data.sh wikitext-2)" >&2; exit 1; }
make -s all
if [[ -z $methods ]]; then
    # the registered methods, from the choices of model.position.type in the config reference
    methods=$(./train --help-config | sed -n 's/^| `model.position.type` | enum | [^|]* | \([^|]*\) |.*/\1/p' | tr -d ,)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for m in $methods; do
    ./train --config configs/wt2-sinusoidal-L256.json --out "$tmp/$m" --set model.position.type="$m" \
        --set train.batch=8 --set train.steps="$steps" --set train.warmup=10 --set train.log_every=1 \
        --set train.eval_every=0 --set train.eval_tokens=256 --set train.ckpt_every=0 \
        --set data.dir="$data" >"$tmp/$m.out"
    fpt=$(sed -n 's/.*MFLOP\/token forward, \([0-9.]*\) MFLOP\/token training.*/\1/p' "$tmp/$m.out")
    # mean tokens/s over steps after the warm-up, from the per-step elapsed times in the log
    /usr/bin/env python3 - "$tmp/$m/log.jsonl" "$m" "$fpt" "$warm" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
warm = int(sys.argv[4])
a, b = rows[warm - 1], rows[-1]
tps = (b["tokens"] - a["tokens"]) / (b["elapsed_s"] - a["elapsed_s"])
fpt = float(sys.argv[3]) * 1e6
print(json.dumps({"name": sys.argv[2], "tokens_per_s": round(tps, 1),
                  "gflops": round(tps * fpt / 1e9, 1), "flops_per_token": round(fpt)}))
PY
done
