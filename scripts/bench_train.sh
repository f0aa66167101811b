#!/usr/bin/env bash
# bench_train.sh — training speed on the reference model: 6 layers, d_model 256, 8 heads,
# d_ff 1024, GELU, full softmax over WikiText-2's 33,278 words, L = 256, batch 8 sequences
# (configs/wt2-sinusoidal-L256.json with its output set back to the full softmax).
# One JSON line per position method:
#   {"name": "alibi", "tokens_per_s": ..., "gflops": ..., "flops_per_token": ...}
# tokens_per_s is the mean over the timed steps (after a warm-up of min(5, N - 1) steps for
# --steps N); flops_per_token counts the matmuls, the causal attention and the
# output layer, x3 for forward + backward (as ./train reports it; an adaptive output counts its
# head, see model_flops_per_token).
#
# Then three output-layer rows (the position method is sinusoidal in all three):
#   wt2-full        the reference model as above: full softmax over 33,278 words
#   wt2-adaptive    the same with the adaptive input/softmax of the WikiText-2 configs
#                   (cutoffs 4000/15000, factor 4)
#   wt103-adaptive  WikiText-103's 267,735-word vocabulary, cutoffs 20000/60000, factor 4, at
#                   L = 512 with batch 4 (the same 2,048 tokens per step), trained on a synthetic
#                   100M-token corpus (scripts/make_synthetic_corpus, made on first use in
#                   data/synthetic-103 from WikiText-103's vocabulary counts)
#
# --variants runs, instead of the method and output rows, the architecture variants of
# docs/architecture.md on the reference model with sinusoidal positions, after a "sinusoidal"
# baseline row (the reference model itself) measured in the same run:
#   rmsnorm   model.norm=rmsnorm
#   post      model.norm_position=post, final_norm false
#   sandwich  model.norm_position=sandwich (with the final norm)
#   deepnorm  model.norm_position=deepnorm, final_norm false
#   geglu     model.activation=geglu at the same d_ff (three FFN matrices instead of two)
#   gqa2      model.n_kv_heads=2 (4 query heads per KV head)
#   mqa       model.n_kv_heads=1
# --baseline-bin DIR (with --variants) also times DIR/train (another build, e.g. the commit
# before a refactor) on the baseline, alternating with this build before and after the
# variants: rows "sinusoidal@base" and "sinusoidal", twice each, so a cost of the change shows
# beside the run-to-run noise.
# --rounds R repeats the method rows R times, the methods alternated round by round (rows carry
# "round": 1..R), so that a difference between methods can be read against the run-to-run
# spread (claim 6 of scripts/results.py reads such a file as results/<preset>/bench_train.jsonl).
# Usage: scripts/bench_train.sh [--steps N] [--methods "sinusoidal alibi"] [--rounds R]
#        [--no-outputs] [--only-outputs] (default methods: every registered position method, in
#        registry order: ./train --list-positions)
#        scripts/bench_train.sh --variants [--steps N] [--baseline-bin DIR]
# --precision fp32|bf16 (default fp32) trains every row in that precision (train.precision) and
# adds "precision" to its JSON line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

steps=30
warm=5
methods=""
outputs=1
only_outputs=0
variants=0
base_bin=""
precision=fp32
rounds=1
while [[ $# -gt 0 ]]; do
    case $1 in
    --steps) steps=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --no-outputs) outputs=0; shift ;;
    --only-outputs) only_outputs=1; shift ;;
    --variants) variants=1; shift ;;
    --baseline-bin) base_bin=$2; shift 2 ;;
    --precision) precision=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "bench_train: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ $steps -ge 2 ]] || { echo "bench_train: --steps must be at least 2 (the first step is not timed)" >&2; exit 2; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench_train: --rounds must be a positive integer, got '$rounds'" >&2; exit 2; }
if [[ $variants == 1 && ( -n $methods || $outputs == 0 || $only_outputs == 1 ) ]]; then
    echo "bench_train: --variants replaces the method and output rows; it takes only --steps" >&2
    exit 2
fi
if [[ -n $base_bin && ( $variants == 0 || ! -x $base_bin/train ) ]]; then
    echo "bench_train: --baseline-bin needs --variants and an executable $base_bin/train" >&2
    exit 2
fi
data=data/wikitext-2
[[ -s $data/wiki.train.tokens ]] || data=../shared/data/wikitext-2
[[ -s $data/wiki.train.tokens ]] || { echo "bench_train: WikiText-2 not found (scripts/get_data.sh wikitext-2)" >&2; exit 1; }
make -s all
if [[ -z $methods ]]; then
    # the registered methods, in registry order (one JSON object a line)
    methods=$(./train --list-positions | sed -n 's/^{"name":"\([^"]*\)".*/\1/p')
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# bench NAME CONFIG [--set ...]: train `steps` steps with $bin/train, print the JSON line
bin=.
runs=0
prec=() # fp32 sets nothing, so a --baseline-bin build older than train.precision runs too
[[ $precision == fp32 ]] || prec=(--set train.precision="$precision")
bench() {
    local name=$1 config=$2 out
    shift 2
    runs=$((runs + 1))
    out=$tmp/$runs # a row's name may repeat (the alternating baseline)
    "$bin/train" --config "$config" --out "$out" --set train.steps="$steps" --set train.warmup=10 \
        --set train.log_every=1 --set train.eval_every=0 --set train.eval_tokens=256 \
        --set train.ckpt_every=0 "${prec[@]}" "$@" >"$out.out"
    fpt=$(sed -n 's/.*MFLOP\/token forward, \([0-9.]*\) MFLOP\/token training.*/\1/p' "$out.out")
    # mean tokens/s over steps after the warm-up, from the per-step elapsed times in the log
    /usr/bin/env python3 - "$out/log.jsonl" "$name" "$fpt" "$warm" "$precision" "${round:-0}" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
warm = min(int(sys.argv[4]), len(rows) - 1)  # fewer steps than the warm-up: skip the first only
a, b = rows[warm - 1], rows[-1]
tps = (b["tokens"] - a["tokens"]) / (b["elapsed_s"] - a["elapsed_s"])
fpt = float(sys.argv[3]) * 1e6
row = {"name": sys.argv[2], "tokens_per_s": round(tps, 1), "gflops": round(tps * fpt / 1e9, 1),
       "flops_per_token": round(fpt)}
if sys.argv[5] != "fp32":  # fp32 rows keep their old form
    row["precision"] = sys.argv[5]
if sys.argv[6] != "0":  # --rounds: which round
    row["round"] = int(sys.argv[6])
    # the host, so that a results page can say where its benchmark ran
    cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
    row["cpu"] = "%d x %s" % (len(cpu), cpu[0] if cpu else "unknown")
print(json.dumps(row))
PY
}

ref=configs/wt2-sinusoidal-L256.json
if [[ $variants == 1 ]]; then
    # name, then its overrides of the reference model (sinusoidal positions, full softmax)
    rows=("sinusoidal"
        "rmsnorm --set model.norm=rmsnorm"
        "post --set model.norm_position=post --set model.final_norm=false"
        "sandwich --set model.norm_position=sandwich"
        "deepnorm --set model.norm_position=deepnorm --set model.final_norm=false"
        "geglu --set model.activation=geglu"
        "gqa2 --set model.n_kv_heads=2"
        "mqa --set model.n_kv_heads=1")
    baseline() {
        [[ -n $base_bin ]] || return 0
        bin=$base_bin bench "sinusoidal@base" $ref --set model.position.type=sinusoidal \
            --set train.batch=8 --set data.dir="$data" --set model.output.type=full
        bench sinusoidal $ref --set model.position.type=sinusoidal --set train.batch=8 \
            --set data.dir="$data" --set model.output.type=full
    }
    baseline
    for row in "${rows[@]}"; do
        read -ra args <<<"$row"
        bench "${args[0]}" $ref --set model.position.type=sinusoidal --set train.batch=8 \
            --set data.dir="$data" --set model.output.type=full "${args[@]:1}"
    done
    baseline
    exit 0
fi
if [[ $only_outputs == 0 ]]; then
    for ((k = 1; k <= rounds; k++)); do
        round=$([[ $rounds -gt 1 ]] && echo $k || echo 0)
        for m in $methods; do
            bench "$m" $ref --set model.position.type="$m" --set train.batch=8 \
                --set data.dir="$data" --set model.output.type=full
        done
    done
    round=0
fi
[[ $outputs == 1 ]] || exit 0

bench wt2-full $ref --set train.batch=8 --set data.dir="$data" --set model.output.type=full
bench wt2-adaptive $ref --set train.batch=8 --set data.dir="$data"
synth=data/synthetic-103
if [[ ! -s $synth/wiki.train.tokens ]]; then
    src=data/wikitext-103
    [[ -s $src/vocab.txt ]] || src=../shared/data/wikitext-103
    [[ -s $src/vocab.txt ]] || { echo "bench_train: no WikiText-103 vocab.txt for the synthetic corpus (scripts/get_data.sh wikitext-103 --from DIR): wt103-adaptive skipped" >&2; exit 0; }
    echo "bench_train: writing a synthetic 100M-token corpus to $synth (once)" >&2
    scripts/make_synthetic_corpus --vocab "$src/vocab.txt" --tokens 100M --out "$synth" \
        --valid-from "$src" >&2
fi
bench wt103-adaptive $ref --set train.seq_len=512 --set train.batch=4 --set data.dir="$synth" \
    --set data.vocab=vocab.txt --set model.output.type=adaptive \
    --set model.output.cutoffs=[20000,60000] --set model.output.factor=4
