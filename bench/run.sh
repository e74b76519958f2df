#!/usr/bin/env bash
# Training and inference images/s of ferkit (Burn, Flex CPU backend) and PyTorch, and inference
# of ONNX Runtime on ferkit's ONNX export of the same nets (batch 1 and 256), same thread count,
# in one run, printed side by side with each framework's peak RSS.
#   bash bench/run.sh                       # cnn3 at batch 512, vgg-lite at batch 64, 2 threads
#   MODELS=cnn1:512 THREADS=2 STEPS=3 bash bench/run.sh
#   DEVICE=gpu FERKIT=path/to/ferkit bash bench/run.sh   # a `--features gpu` build against PyTorch on CUDA
# Needs PyTorch and ONNX Runtime (pip install torch onnxruntime; efficientnet_lite_pytorch for
# efficientnet-lite0). Run it on an otherwise idle machine. FERKIT names a ferkit binary to time
# instead of building this checkout (e.g. on a machine without cargo). DEVICE=gpu times ferkit on
# Burn's wgpu backend and PyTorch on the first CUDA GPU; ONNX Runtime (CPU here) and the CPU's
# matrix-product peak are then left out.
set -euo pipefail
# FERKIT as given from where the script was started, before moving to the repository root.
ferkit="${FERKIT:+$(realpath "$FERKIT")}"
cd "$(dirname "$0")/.."
models="${MODELS:-cnn3:512,vgg-lite:64}"
threads="${THREADS:-2}"
steps="${STEPS:-5}"
repeats="${REPEATS:-3}"
device="${DEVICE:-cpu}"
case "$device" in
  cpu) torch_device=cpu ;;
  gpu) torch_device=cuda ;;
  *) echo "DEVICE must be cpu or gpu, not '$device'" >&2; exit 2 ;;
esac
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
if [ -z "$ferkit" ]; then
  if [ "$device" = gpu ]; then
    cargo build --release --quiet -p ferkit-cli --features gpu
  else
    cargo build --release --quiet
  fi
  ferkit=./target/release/ferkit
fi
echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
if [ "$device" = gpu ]; then
  echo "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not found')"
fi
# One process per framework and model, so that each peak RSS is that framework's on that net.
# ONNX Runtime times the nets ferkit exports (`--onnx-dir`), with the same random initialisation.
infer_batches="${INFER_BATCHES:-1,256}"
have_ort=1
if [ "$device" = gpu ]; then
  have_ort=0
  echo "ONNX Runtime: left out with DEVICE=gpu (its CPU package is what bench/onnxruntime_reference.py times)"
else
  python3 -c "import onnxruntime" 2>/dev/null || { have_ort=0; echo "ONNX Runtime: skipped (pip install onnxruntime)"; }
fi
i=0
for pair in ${models//,/ }; do
  name="${pair%%:*}"
  onnx=()
  [ "$have_ort" = 1 ] && onnx=(--onnx-dir "$out/onnx")
  python3 bench/peak_rss.py "$out/ferkit-$i.rss.json" -- "$ferkit" bench --models "$pair" --device "$device" \
    --threads "$threads" --steps "$steps" --repeats "$repeats" --infer-batches "$infer_batches" \
    ${onnx[@]+"${onnx[@]}"} --json "$out/ferkit-$i.json" >/dev/null
  OMP_NUM_THREADS="$threads" python3 bench/peak_rss.py "$out/torch-$i.rss.json" -- python3 bench/pytorch_reference.py \
    --models "$pair" --device "$torch_device" --threads "$threads" --steps "$steps" --repeats "$repeats" \
    --infer-batches "$infer_batches" --json "$out/torch-$i.json" >/dev/null
  if [ "$have_ort" = 1 ]; then
    python3 bench/peak_rss.py "$out/ort-$i.rss.json" -- python3 bench/onnxruntime_reference.py --models "$pair" \
      --dir "$out/onnx" --threads "$threads" --steps "$steps" --repeats "$repeats" --infer-batches "$infer_batches" \
      --json "$out/ort-$i.json" >/dev/null
  fi
  i=$((i + 1))
done
# The machine's float32 matrix-product peak (PyTorch's), for the arithmetic table (the CPU's).
if [ "$device" = cpu ]; then
  python3 bench/sgemm_peak.py --threads "$threads" --json "$out/peak.json" >/dev/null || echo "matrix-product peak: not measured"
fi
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
  "$ferkit" bench --models "" --photos "$photos" --cascade "$cascade" --mtcnn "$mtcnn" \
    --threads "$threads" --json "$out/detect.json" >/dev/null
  python3 bench/detect_reference.py --photos "$photos" --cascade "$cascade" --mtcnn "$mtcnn" \
    --threads "$threads" --compare "$out/detect.json"
else
  echo "face detection: skipped (needs $cascade and $mtcnn)"
fi
