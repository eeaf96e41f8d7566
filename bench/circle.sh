#!/usr/bin/env bash
# The circle experiment of the 2018 mini-framework report (seed 003): 1000 training
# and 200 test points in the unit square, class 1 outside the circle of area ½,
# 3 hidden layers of 25 units.  The report found 0.5% training and 0% test error.
# Prints the errors of models/circle.model for three independent draws of the data.
#   bash bench/circle.sh        (uses .venv; about 10 s)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.venv/bin:$PATH"
work=$(mktemp -d "${KERASH_WORKDIR:-/dev/shm}/kerash-circle-XXXXXX")
trap 'rm -rf "$work"' EXIT

error() {  # percent of misclassified points
    evaluate "$1" --data "$2/data.npy" --labels "$2/labels.txt" | awk -F'\t' '$1 == "accuracy" { printf "%.1f%%", 100 * (1 - $2) }'
}

for draw in 1 2 3; do
    kerash dataset circle -o "$work/train" --samples 1000 --seed "$((10 * draw))"
    kerash dataset circle -o "$work/test" --samples 200 --seed "$((10 * draw + 1))"
    model-init "$root/models/circle.model" -o "$work/model" --seed 1 --force
    train "$work/model" --data "$work/train/data.npy" --labels "$work/train/labels.txt" \
        --optimizer adam --lr 0.001 --batch-size 8 --epochs 400 --seed 1 > /dev/null
    echo "draw $draw: training error $(error "$work/model" "$work/train"), test error $(error "$work/model" "$work/test")"
done
