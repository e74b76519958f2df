#!/usr/bin/env bash
# Training and inference images/s of ferkit (Burn, Flex CPU backend) and PyTorch, same nets,
# same batches, same thread count, in one run, printed side by side.
#   bash bench/run.sh                       # cnn3 at batch 512, vgg-lite at batch 64, 2 threads
#   MODELS=cnn1:512 THREADS=2 STEPS=3 bash bench/run.sh
# Needs PyTorch (pip install torch). Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
models="${MODELS:-cnn3:512,vgg-lite:64}"
threads="${THREADS:-2}"
steps="${STEPS:-5}"
repeats="${REPEATS:-3}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cargo build --release --quiet
echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
./target/release/ferkit bench --models "$models" --threads "$threads" --steps "$steps" --repeats "$repeats" \
  --json "$out/ferkit.json" >/dev/null
OMP_NUM_THREADS="$threads" python3 bench/pytorch_reference.py --models "$models" --threads "$threads" \
  --steps "$steps" --repeats "$repeats" --compare "$out/ferkit.json"
# Face detection beside OpenCV (Haar) and facenet-pytorch (MTCNN), when ../shared has the
# detectors and the photos.
cascade=../shared/models/haarcascade_frontalface_default.xml
mtcnn=../shared/models/mtcnn
photos=../shared/data/photos/astronaut.png,../shared/data/photos/coffee.png
if [ -f "$cascade" ] && [ -d "$mtcnn" ]; then
  ./target/release/ferkit bench --models "" --photos "$photos" --cascade "$cascade" --mtcnn "$mtcnn" \
    --threads "$threads" --json "$out/detect.json" >/dev/null
  python3 bench/detect_reference.py --photos "$photos" --cascade "$cascade" --mtcnn "$mtcnn" \
    --threads "$threads" --compare "$out/detect.json"
else
  echo "face detection: skipped (needs $cascade and $mtcnn)"
fi
