#!/usr/bin/env bash
# Train the published models (docs/pretrained.md): one run per EMNIST split, one after another (two cores:
# one torch process at a time). Balanced, the default model, gets the best recipe (experiment=cnn_best);
# the other splits the 6-epoch one (experiment=cnn_fast), which keeps the whole set to about an hour here.
# Resumable: a split whose run folder already holds a completed metrics.json is skipped.
# Usage: EMNIST_DATA_DIR=... scripts/train_pretrained.sh [splits...]; then scripts/pack_pretrained.py.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/pretrained}
splits=("${@:-balanced mnist digits letters bymerge byclass}")
for split in ${splits[@]}; do
    recipe=${RECIPE:-$([[ $split == balanced ]] && echo cnn_best || echo cnn_fast)}
    dir="$OUT/$split"
    if grep -qs '"status": "completed"' "$dir/metrics.json"; then
        echo "$(date -Is) $split: done already ($dir)"; continue
    fi
    echo "$(date -Is) $split: training experiment=$recipe"
    .venv/bin/python train.py experiment="$recipe" data="$split" callbacks=no_pictures \
        hydra.run.dir="$dir" overwrite=true
    echo "$(date -Is) $split: finished"
done
