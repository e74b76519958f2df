#!/usr/bin/env bash
# A/B (or A/B/C...) of ferkit binaries built from different commits, on one machine: `ferkit bench`
# run by each binary in turn, the order rotated every round (A B, then B A, ...), so that drift of
# a shared machine falls on all of them. Prints one line per run: the binary, then each net's
# training / inference images/s.
#   cp target/release/ferkit /tmp/ferkit-old   # before the change; rebuild after it
#   bash bench/binaries_ab.sh /tmp/ferkit-old target/release/ferkit
#   ROUNDS=4 MODELS=cnn1:512,bench/nets/tune_cnn_p75.toml:512 bash bench/binaries_ab.sh A B C
# Run it on an otherwise idle machine; compare medians, not single runs. Session 38's A/Bs
# (docs/speed.md) used ROUNDS=3 or 4, STEPS=3, REPEATS=2.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: bash bench/binaries_ab.sh FERKIT_A FERKIT_B [FERKIT_C ...]" >&2; exit 2; }
models="${MODELS:-cnn1:512,vgg-lite:64,efficientnet-lite0:64}"
rounds="${ROUNDS:-3}"
steps="${STEPS:-3}"
repeats="${REPEATS:-2}"
threads="${THREADS:-2}"
bins=()
for b in "$@"; do
  [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }
  bins+=("$(realpath "$b")")
done
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); models $models; steps $steps, repeats $repeats, $threads threads"
n=${#bins[@]}
for r in $(seq 0 $((rounds - 1))); do
  for k in $(seq 0 $((n - 1))); do
    bin="${bins[$(((k + r) % n))]}"
    # The table's rows: model, batch, train img/s, infer img/s (augmentation timed on the side: hflip, the cheapest).
    rows="$("$bin" bench --models "$models" --threads "$threads" --steps "$steps" --repeats "$repeats" --augment hflip \
      | awk '$2 ~ /^[0-9]+$/ && $3 ~ /^[0-9.]+$/ { printf "%s %s/%s  ", $1, $3, $4 }')"
    echo "round $((r + 1)) $bin: $rows"
  done
done
