#!/usr/bin/env bash
# compare_builds.sh OLD_DIR [NEW_DIR] — are two builds of ./train and ./eval bit-identical?
# Trains configs/quick.json for 12 steps (evaluating at step 6 and 12) with each build, under
# several position methods, FFNs and output layers, then compares the checkpoints' tensors (the
# parameters and both AdamW moments; the metadata, which holds the elapsed time, is ignored) and
# the perplexities of ./eval at L_valid 128 and 300. One line per case; exit status 1 if any
# differs. NEW_DIR defaults to the repository root. A refactor that must not change numbers is
# checked against the commit before it, e.g.
#   git worktree add /tmp/old HEAD~1 && make -C /tmp/old && scripts/compare_builds.sh /tmp/old
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
old=${1:?usage: scripts/compare_builds.sh OLD_DIR [NEW_DIR]}
new=${2:-.}
for b in "$old" "$new"; do
    [[ -x $b/train && -x $b/eval ]] || { echo "compare_builds: no $b/train and $b/eval (make first)" >&2; exit 2; }
done
data=data/wikitext-2
[[ -s $data/wiki.train.tokens ]] || data=../shared/data/wikitext-2
[[ -s $data/wiki.train.tokens ]] || { echo "compare_builds: WikiText-2 not found (scripts/get_data.sh wikitext-2)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the tensors of two safetensors files without their metadata: "same" or "DIFF"
same_tensors() {
    /usr/bin/env python3 - "$1" "$2" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return h, b[8 + n:]
print("same" if load(sys.argv[1]) == load(sys.argv[2]) else "DIFF")
PY
}

cases=("model.position.type=alibi"
    "model.position.type=rotary model.activation=swiglu"
    "model.position.type=t5 model.final_norm=false"
    "model.position.type=sinusoidal model.output.type=adaptive model.output.cutoffs=[2000,10000]"
    "model.position.type=xpos model.activation=relu")
status=0
for i in "${!cases[@]}"; do
    args=()
    for s in ${cases[$i]}; do args+=(--set "$s"); done
    for side in old new; do
        bin=$old
        [[ $side == new ]] && bin=$new
        "$bin/train" --config configs/quick.json --out "$tmp/$side$i" --set train.steps=12 \
            --set train.eval_every=6 --set data.dir="$data" "${args[@]}" >"$tmp/$side$i.log" 2>&1
        "$bin/eval" --ckpt "$tmp/$side$i" --lvalid 128,300 --json "$tmp/$side$i.jsonl" >/dev/null
    done
    model=$(same_tensors "$tmp/old$i/model.safetensors" "$tmp/new$i/model.safetensors")
    optim=$(same_tensors "$tmp/old$i/optim.safetensors" "$tmp/new$i/optim.safetensors")
    ppl() { grep -o '"ppl":[^,]*' "$1" | tr '\n' ' '; }
    evals=same
    [[ $(ppl "$tmp/old$i.jsonl") == $(ppl "$tmp/new$i.jsonl") ]] || evals=DIFF
    echo "${cases[$i]}: parameters $model, moments $optim, eval $evals"
    [[ $model$optim$evals == samesamesame ]] || status=1
done
exit $status
