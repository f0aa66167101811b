#!/usr/bin/env bash
# bench_generate.sh — decoding speed and memory of ./generate on the reference model (6 layers,
# d_model 256, 8 heads, d_ff 1024, full softmax over WikiText-2's 33,278 words, ALiBi), with
# multi-head (8 kv heads) and multi-query (1 kv head) attention, at several context lengths:
# the prompt is the first (context - 1) tokens of WikiText-2 valid, read after <eos>, then
# --new tokens are generated greedily. Each context runs twice: with the paged KV cache, and
# with --no-cache (a whole forward over the sequence per new token, --new-uncached tokens), the
# rate the cache is measured against. The paged runs go once per precision setting:
#   f32      float32 cache and weights (the default of ./generate)
#   kv-bf16  --kv-dtype bf16: a bf16 cache, float32 weights
#   bf16     --kv-dtype bf16 --weights-dtype bf16: decode steps read bf16 weights too
# The weights come from one training step: speed and memory do not depend on what they are.
# One JSON line per (kv heads, context, cache, setting):
#   {"kv_heads": 8, "context": 1024, "cache": "paged", "setting": "f32", "kv_dtype": "f32",
#    "weights_dtype": "f32", "decode_tokens_per_s": ..., "prefill_tokens_per_s": ...,
#    "peak_rss_mb": ..., "kv_peak_mb": ..., "read_gb_per_s": ...}
# read_gb_per_s is what a decode step must read at least (the weights, once, and the cache up
# to the context) times the decode rate: decoding is memory-bound, and this shows how close a
# row runs to the machine's read bandwidth. Then one line per (kv heads, setting) with the
# issue's three ratios.
# Usage: scripts/bench_generate.sh [--contexts "128 1024 4096 16384"] [--kv-heads "8 1"]
#        [--settings "f32 kv-bf16 bf16"] [--new 64] [--new-uncached 4] [--threads N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

contexts="128 1024 4096 16384"
kv_heads="8 1"
settings="f32 kv-bf16 bf16"
new=64
new_uncached=4
threads=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --contexts) contexts=$2; shift 2 ;;
    --kv-heads) kv_heads=$2; shift 2 ;;
    --settings) settings=$2; shift 2 ;;
    --new) new=$2; shift 2 ;;
    --new-uncached) new_uncached=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "bench_generate: unknown argument $1" >&2; exit 2 ;;
    esac
done
data=data/wikitext-2
[[ -s $data/wiki.valid.tokens ]] || data=../shared/data/wikitext-2
[[ -s $data/wiki.valid.tokens ]] || { echo "bench_generate: WikiText-2 not found (scripts/get_data.sh wikitext-2)" >&2; exit 1; }
make -s all
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The first n tokens of the valid split as prompt text: a newline is one token (<eos>).
prompt_of() {
    python3 - "$data/wiki.valid.tokens" "$1" >"$tmp/prompt.$1.txt" <<'PY'
import sys
n, toks = int(sys.argv[2]), []
for line in open(sys.argv[1], encoding="utf-8"):
    toks += line.split() + ["\n"]
    if len(toks) >= n:
        break
sys.stdout.write("".join(t if t == "\n" else t + " " for t in toks[:n]))
PY
}

# One ./generate run -> one JSON row.
flags_of() {
    case $1 in
    f32) echo "--kv-dtype f32 --weights-dtype f32" ;;
    kv-bf16) echo "--kv-dtype bf16 --weights-dtype f32" ;;
    bf16) echo "--kv-dtype bf16 --weights-dtype bf16" ;;
    *) echo "bench_generate: unknown setting $1 (f32, kv-bf16, bf16)" >&2; exit 2 ;;
    esac
}

for st in $settings; do flags_of "$st" >/dev/null || exit 2; done

row() { # kv cache_flags context n_new setting
    local json=$tmp/g.json
    ./generate --ckpt "$tmp/kv$1" --prompt-file "$tmp/prompt.$(($3 - 1)).txt" --greedy --quiet \
        --max-new "$4" --threads "$threads" --json "$json" $2 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
    python3 - "$json" "$1" "$3" "$tmp/kv$1/model.safetensors" "${5:-}" <<'PY'
import json, os, sys
g = json.load(open(sys.argv[1]))
s, p, ctx = g["speed"], g["pool"], int(sys.argv[3])
rate = s["decode_tokens"] / s["decode_seconds"]
paged = g["settings"]["cache"] == "paged"
# bytes per position of the cache: all layers' keys and values; the weights (float32 in the
# checkpoint) at half their size in bf16
per_pos = p["block_bytes"] / p["block_positions"]
wbytes = os.path.getsize(sys.argv[4]) / (2 if g["settings"]["weights_dtype"] == "bf16" else 1)
least = wbytes + (per_pos * ctx if paged else 0)
print(json.dumps({"kv_heads": int(sys.argv[2]), "context": ctx,
                  "cache": g["settings"]["cache"], "setting": sys.argv[5] or None,
                  "kv_dtype": g["settings"].get("kv_dtype"),
                  "weights_dtype": g["settings"]["weights_dtype"],
                  "prompt_tokens": len(g["prompt_ids"]),
                  "decode_tokens": s["decode_tokens"],
                  "decode_tokens_per_s": round(rate, 2),
                  "prefill_tokens_per_s": round(s["prefill_tokens"] / s["prefill_seconds"], 1),
                  "peak_rss_mb": round(g["peak_rss_mb"], 1),
                  "kv_peak_mb": round(p["peak_blocks_used"] * p["block_bytes"] / 1e6, 1),
                  "read_gb_per_s": round(least * rate / 1e9, 2) if paged else None}))
PY
}

for c in $contexts; do prompt_of $((c - 1)); done
{
    for kv in $kv_heads; do
        ./train --config configs/wt2-sinusoidal-L256.json --out "$tmp/kv$kv" \
            --set model.position.type=alibi --set model.output.type=full --set model.n_kv_heads="$kv" \
            --set train.steps=1 --set train.eval_every=0 --set train.eval_tokens=256 \
            --set train.ckpt_every=0 --set data.dir="$data" >"$tmp/train.out"
        for c in $contexts; do
            for st in $settings; do row "$kv" "$(flags_of "$st")" "$c" "$new" "$st"; done
            row "$kv" --no-cache "$c" "$new_uncached"
        done
    done
} | tee "$tmp/rows.jsonl"
python3 - "$tmp/rows.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
settings = []
for r in rows:
    if r["setting"] and r["setting"] not in settings:
        settings.append(r["setting"])
for kv in sorted({r["kv_heads"] for r in rows}, reverse=True):
    for st in settings:
        at = {(r["context"], r["cache"]): r for r in rows
              if r["kv_heads"] == kv and r["setting"] in (st, None)}
        ctx = sorted({c for c, _ in at})
        lo, hi = ctx[0], ctx[-1]
        out = {"kv_heads": kv, "setting": st, "summary": True}
        if (1024, "paged") in at and (1024, "none") in at:
            out["cached_over_uncached_at_1024"] = round(
                at[1024, "paged"]["decode_tokens_per_s"] / at[1024, "none"]["decode_tokens_per_s"], 1)
        out["decode_%d_over_%d" % (hi, lo)] = round(
            at[hi, "paged"]["decode_tokens_per_s"] / at[lo, "paged"]["decode_tokens_per_s"], 3)
        out["peak_rss_mb_at_%d" % hi] = at[hi, "paged"]["peak_rss_mb"]
        print(json.dumps(out))
PY
