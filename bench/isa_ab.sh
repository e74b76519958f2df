#!/usr/bin/env bash
# A/B of the AVX-512 and AVX2 paths on one machine (it needs a CPU with AVX-512 for the A side to
# differ): the default build (AVX-512 kernels chosen at run time) against a build without the
# `avx512` feature (AVX2 kernels in the matrix products and in ferkit's depthwise convolution),
# `ferkit bench` run alternately, A B B A..., so that drift of a shared machine falls on both.
#   bash bench/isa_ab.sh                                   # 2 rounds, the four presets
#   ROUNDS=3 MODELS=vgg-lite:64 bash bench/isa_ab.sh
# Prints each run's training and inference images/s and the mean ratio AVX-512 / AVX2.
# Run it on an otherwise idle machine. The AVX2 build goes to $AVX2_TARGET (default target/avx2):
# on a fresh clone both builds are full ones (about 13 minutes each on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
models="${MODELS:-cnn1:512,cnn3:512,vgg-lite:64,efficientnet-lite0:64}"
rounds="${ROUNDS:-2}"
[ "$rounds" -ge 1 ] || { echo "ROUNDS must be 1 or more"; exit 2; }
main_target="${CARGO_TARGET_DIR:-$PWD/target}"
avx2_target="${AVX2_TARGET:-$PWD/target/avx2}"
threads="${THREADS:-2}"
cargo build --release --locked --quiet -p ferkit-cli
CARGO_TARGET_DIR="$avx2_target" cargo build --release --locked --quiet -p ferkit-cli --no-default-features
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
run() { # $1: avx512|avx2, $2: run number
  local bin="$main_target/release/ferkit"
  [ "$1" = avx2 ] && bin="$avx2_target/release/ferkit"
  "$bin" bench --models "$models" --threads "$threads" --steps 3 --repeats 3 --infer-batches 1,256 \
    --json "$out/$1-$2.json" >/dev/null
}
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then run avx512 "$r"; run avx2 "$r"; else run avx2 "$r"; run avx512 "$r"; fi
done
python3 - "$out" <<'EOF'
import json, pathlib, statistics, sys
d = pathlib.Path(sys.argv[1])
runs = {isa: [json.loads(p.read_text()) for p in sorted(d.glob(f"{isa}-*.json"))] for isa in ("avx512", "avx2")}
print("machine:", runs["avx512"][0].get("machine", "?"), "| B:", runs["avx2"][0].get("machine", "?"))
def figures(doc, i):
    m = doc["models"][i]
    batches = {r["batch"]: r["infer_images_per_s"] for r in m.get("infer_batches", [])}
    return {"train": m["train_images_per_s"], "infer": m["infer_images_per_s"],
            "infer b1": batches.get(1, float("nan")), "infer b256": batches.get(256, float("nan"))}
print(f"{'model':<22}{'figure':<12}{'AVX-512 runs':<34}{'AVX2 runs':<34}ratio")
for i, m in enumerate(runs["avx512"][0]["models"]):
    name = f"{m['model']}:{m['batch']}"
    for key in ("train", "infer", "infer b1", "infer b256"):
        a = [figures(doc, i)[key] for doc in runs["avx512"]]
        b = [figures(doc, i)[key] for doc in runs["avx2"]]
        ratio = statistics.mean(a) / statistics.mean(b)
        runs_a, runs_b = ", ".join(f"{v:.1f}" for v in a), ", ".join(f"{v:.1f}" for v in b)
        print(f"{name:<22}{key:<12}{runs_a:<34}{runs_b:<34}{ratio:.2f}")
EOF
