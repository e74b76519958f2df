#!/usr/bin/env bash
# Training and inference images/s of ferkit (Burn, Flex CPU backend) and PyTorch, and inference
# of ONNX Runtime on ferkit's ONNX export of the same nets (batch 1 and 256), same thread count,
# in one run, printed side by side with each framework's peak RSS.
#   bash bench/run.sh                       # cnn3 at batch 512, vgg-lite at batch 64, 2 threads
#   MODELS=cnn1:512 THREADS=2 STEPS=3 bash bench/run.sh
# Needs PyTorch and ONNX Runtime (pip install torch onnxruntime; efficientnet_lite_pytorch for
# efficientnet-lite0). Run it on an otherwise idle machine.
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
# One process per framework and model, so that each peak RSS is that framework's on that net.
# ONNX Runtime times the nets ferkit exports (`--onnx-dir`), with the same random initialisation.
infer_batches="${INFER_BATCHES:-1,256}"
have_ort=1
python3 -c "import onnxruntime" 2>/dev/null || { have_ort=0; echo "ONNX Runtime: skipped (pip install onnxruntime)"; }
i=0
for pair in ${models//,/ }; do
  name="${pair%%:*}"
  python3 bench/peak_rss.py "$out/ferkit-$i.rss.json" -- ./target/release/ferkit bench --models "$pair" \
    --threads "$threads" --steps "$steps" --repeats "$repeats" --infer-batches "$infer_batches" \
    --onnx-dir "$out/onnx" --json "$out/ferkit-$i.json" >/dev/null
  OMP_NUM_THREADS="$threads" python3 bench/peak_rss.py "$out/torch-$i.rss.json" -- python3 bench/pytorch_reference.py \
    --models "$pair" --threads "$threads" --steps "$steps" --repeats "$repeats" --infer-batches "$infer_batches" \
    --json "$out/torch-$i.json" >/dev/null
  if [ "$have_ort" = 1 ]; then
    python3 bench/peak_rss.py "$out/ort-$i.rss.json" -- python3 bench/onnxruntime_reference.py --models "$pair" \
      --dir "$out/onnx" --threads "$threads" --steps "$steps" --repeats "$repeats" --infer-batches "$infer_batches" \
      --json "$out/ort-$i.json" >/dev/null
  fi
  i=$((i + 1))
done
# The machine's float32 matrix-product peak (PyTorch's), for the arithmetic table.
python3 bench/sgemm_peak.py --threads "$threads" --json "$out/peak.json" >/dev/null || echo "matrix-product peak: not measured"
python3 bench/compare.py "$out"
# Face detection beside OpenCV (Haar) and facenet-pytorch (MTCNN), when ../shared has the
# detectors and the photos.
cascade=../shared/models/haarcascade_frontalface_default.xml
mtcnn=../shared/models/mtcnn
photos=../shared/data/photos/astronaut.png,../shared/data/photos/coffee.png
# OpenCV 5 (PyPI's default since 5.1) dropped the cascade classifier: the reference needs OpenCV 4.
if ! python3 -c "import cv2, facenet_pytorch; cv2.CascadeClassifier" 2>/dev/null; then
  echo "face detection: skipped (pip install \"opencv-python-headless<5\" facenet-pytorch for the references)"
elif [ -f "$cascade" ] && [ -d "$mtcnn" ]; then
  ./target/release/ferkit bench --models "" --photos "$photos" --cascade "$cascade" --mtcnn "$mtcnn" \
    --threads "$threads" --json "$out/detect.json" >/dev/null
  python3 bench/detect_reference.py --photos "$photos" --cascade "$cascade" --mtcnn "$mtcnn" \
    --threads "$threads" --compare "$out/detect.json"
else
  echo "face detection: skipped (needs $cascade and $mtcnn)"
fi
