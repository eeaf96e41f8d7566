#!/usr/bin/env bash
# Does evolve find better networks?  Two runs from scratch, with the figures to quote:
#   1. digits, population 6, 5 generations: the best genome against the initial
#      input→output network (generation 0);
#   2. the circle problem of seed 003: a network with hidden layers and its
#      validation error (target ≤ 3%).
#   bash bench/evolve_runs.sh        (uses .venv; about a minute on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.venv/bin:$PATH"
work=$(mktemp -d "${KERASH_WORKDIR:-/dev/shm}/kerash-evolve-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT

best_line() {  # the evaluated genome with the lowest val_loss
    tail -n +2 "$1" | sort -t$'\t' -k7,7g | head -n 1
}

kerash dataset digits -o "$work/digits"
start=$SECONDS
evolve -x "$work/digits/data.npy" -y "$work/digits/labels.txt" --scratch \
    --population 6 --generations 5 --epochs-per-eval 3 --workers 2 --seed 1 \
    -o "$work/digits-best" > "$work/digits.tsv" 2>/dev/null
initial=$(sed -n 2p "$work/digits.tsv")
best=$(best_line "$work/digits.tsv")
echo "digits (population 6, 5 generations, $((SECONDS - start)) s):"
echo "  initial  $(cut -f 5,7,8 <<< "$initial" | tr '\t' ' ')"
echo "  best     $(cut -f 2,5,7,8 <<< "$best" | tr '\t' ' ')"

kerash dataset circle -o "$work/circle" --seed 1
start=$SECONDS
evolve -x "$work/circle/data.npy" -y "$work/circle/labels.txt" --scratch \
    --population 8 --generations 10 --epochs-per-eval 10 --lr 0.01 --workers 2 --seed 1 \
    -o "$work/circle-best" > "$work/circle.tsv" 2>/dev/null
initial=$(sed -n 2p "$work/circle.tsv")
best=$(best_line "$work/circle.tsv")
echo "circle (population 8, 10 generations, $((SECONDS - start)) s):"
echo "  initial  $(cut -f 5,7,8 <<< "$initial" | tr '\t' ' ')"
echo "  best     $(cut -f 2,5,7,8 <<< "$best" | tr '\t' ' ')"
awk -F'\t' '{ printf "  validation error of the best: %.1f%%\n", 100 * (1 - $8) }' <<< "$best"
