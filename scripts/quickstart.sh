#!/usr/bin/env bash
# quickstart.sh — `make quickstart`: train two small models (ALiBi and sinusoidal) for a few
# minutes each on WikiText-2, evaluate them at L_valid from the training length L = 128 up to
# 16L, and print both tables: the paper's "train short, test long" result in miniature.
#
# Data, in order of preference: data/wikitext-2 (already there); ../shared/data (copied in);
# a download of the official archive; the ~1 MB sample shipped in data/sample.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

data=data/wikitext-2
if [[ ! -s $data/wiki.train.tokens ]]; then
    if [[ -d ../shared/data/wikitext-2 ]]; then
        scripts/get_data.sh wikitext-2 --from ../shared/data || true
    else
        scripts/get_data.sh wikitext-2 || true
    fi
fi
if [[ -s $data/wiki.train.tokens ]]; then
    echo "quickstart: using the full WikiText-2 in $data"
    steps=600
else
    data=data/sample
    steps=300
    echo "quickstart: WikiText-2 is not available (offline?): using the small sample in $data"
    echo "            (152k training tokens; perplexities are not comparable with published ones)"
fi

for pos in alibi sinusoidal; do
    run=runs/quickstart-$pos
    if [[ -f $run/model.safetensors ]]; then
        # continues an interrupted run; a finished one only says so (delete it to retrain)
        echo "quickstart: $run exists, continuing it (delete it to retrain)"
        ./train --resume "$run"
    else
        ./train --config configs/quick.json --out "$run" --set model.position.type=$pos \
            --set data.dir=$data --set train.steps=$steps
    fi
done
echo
for pos in alibi sinusoidal; do
    echo "== $pos, trained at L = 128 =="
    ./eval --ckpt runs/quickstart-$pos --lvalid 128,256,512,1024,2048
    echo
done
echo "quickstart: ALiBi's perplexity should stay flat or improve as L_valid grows past 128;"
echo "            sinusoidal's rises (sharply once trained longer). Next: README.md, docs/config.md."
