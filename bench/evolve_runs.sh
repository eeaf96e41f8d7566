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

search() {  # search NAME DESCRIPTION EVOLVE-OPTIONS…: run evolve on $work/NAME, print initial and best
    local name=$1 what=$2 start=$SECONDS
    shift 2
    evolve -x "$work/$name/data.npy" -y "$work/$name/labels.txt" --scratch --workers 2 --seed 1 "$@" \
        -o "$work/$name-best" > "$work/$name.tsv" 2>/dev/null
    best=$(best_line "$work/$name.tsv")
    echo "$name ($what, $((SECONDS - start)) s):"
    echo "  initial  $(sed -n 2p "$work/$name.tsv" | cut -f 5,7,8 | tr '\t' ' ')"
    echo "  best     $(cut -f 2,5,7,8 <<< "$best" | tr '\t' ' ')"
}

kerash dataset digits -o "$work/digits"
search digits "population 6, 5 generations" --population 6 --generations 5 --epochs-per-eval 3

kerash dataset circle -o "$work/circle" --seed 1
search circle "population 8, 10 generations" --population 8 --generations 10 --epochs-per-eval 10 --lr 0.01
awk -F'\t' '{ printf "  validation error of the best: %.1f%%\n", 100 * (1 - $8) }' <<< "$best"
