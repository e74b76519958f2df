#!/usr/bin/env bash
# A ferkit built with `--features gpu` on a machine with a GPU (Vulkan driver and loader present):
#   1. one training step and inference on the GPU (`ferkit bench --device gpu`);
#   2. cnn3 trained for 2 epochs on a learnable synthetic FER2013-shaped set
#      (bench/synthetic_csv.py), on the GPU and on the CPU with the same seed, each evaluated on
#      its PrivateTest: both should reach about 100%;
#   3. `bench/run.sh` with DEVICE=gpu: ferkit's images/s beside PyTorch's on CUDA.
# Needs python3 with numpy and PyTorch (CUDA) (and efficientnet_lite_pytorch for the default
# MODELS), and no cargo when FERKIT names the binary:
#   FERKIT=path/to/ferkit bash bench/gpu_check.sh [OUT_DIR]
set -u
out="$(realpath "${1:-$(mktemp -d)}")"
mkdir -p "$out"
ferkit="$(realpath "${FERKIT:-$(dirname "$0")/../target/release/ferkit}")"
cd "$(dirname "$0")/.."
echo "output (the synthetic set, the two runs): $out"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not found')"
"$ferkit" --version
echo "== 1. one training step and inference on the GPU"
s=$(date +%s)
timeout 150 "$ferkit" bench --device gpu --models cnn1:64 --steps 1 --repeats 1 --infer-batches 8
echo "rc $? in $(($(date +%s) - s)) s"
echo "== 2. cnn3 on a learnable synthetic set, GPU and CPU, seed 1"
python3 bench/synthetic_csv.py >"$out/synthetic.csv"
for dev in gpu cpu; do
  s=$(date +%s)
  timeout 130 "$ferkit" train cnn3 --data "$out/synthetic.csv" --epochs 2 --seed 1 --device "$dev" \
    --out "$out/run-$dev" 2>&1 | tr '\r' '\n' | grep -E "^epoch|rror|kept" | tail -6
  echo "train $dev rc ${PIPESTATUS[0]} in $(($(date +%s) - s)) s"
  timeout 40 "$ferkit" eval "$out/run-$dev" --split test 2>&1 | tr '\r' '\n' | grep -iE "accuracy|error|note" | head -4
done
echo "== 3. bench/run.sh, DEVICE=gpu, against PyTorch on CUDA"
s=$(date +%s)
DEVICE=gpu FERKIT="$ferkit" THREADS="${THREADS:-16}" STEPS="${STEPS:-3}" REPEATS="${REPEATS:-3}" \
  MODELS="${MODELS:-cnn1:512,cnn3:512,vgg-lite:64,efficientnet-lite0:64}" timeout 270 bash bench/run.sh
echo "bench rc $? in $(($(date +%s) - s)) s"
