#!/usr/bin/env bash
# Builds the seed corpora under fuzz/corpus/<target>/ (ignored by git) from real files: the shared
# data, photos, models and cases beside the repository (../shared), OpenCV's cascades where Debian
# installs them, the repository's own presets, search spaces and test fixtures, and a small run
# and search made here with the release `ferkit` binary. Nothing is copied into the repository.
#
# Targets whose first input byte chooses how to read (fer_csv, image_decode, run_state) get each
# seed once per choice. Usage: bash fuzz/seed_corpus.sh   (after `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")"
shared=../../shared
ferkit=../target/release/ferkit
corpus=corpus
rm -rf "$corpus" && mkdir -p "$corpus"
n=0
# put TARGET SELECTOR-BYTE-OR-EMPTY FILE: one seed.
put() {
  local target=$1 selector=$2 file=$3
  mkdir -p "$corpus/$target"
  n=$((n + 1))
  if [ -n "$selector" ]; then
    { printf "\\x$(printf %02x "$selector")"; cat "$file"; } > "$corpus/$target/seed-$n"
  else
    cp "$file" "$corpus/$target/seed-$n"
  fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# fer_csv: the first rows of FER2013 (plain and gzip), the archived and the spreadsheet cases.
if [ -f "$shared/data/fer2013/fer2013.csv.gz" ]; then
  zcat "$shared/data/fer2013/fer2013.csv.gz" | head -4 > "$tmp/fer_head.csv" || true
  gzip -c "$tmp/fer_head.csv" > "$tmp/fer_head.csv.gz"
  for s in 0 2 4; do put fer_csv $s "$tmp/fer_head.csv"; put fer_csv $s "$tmp/fer_head.csv.gz"; done
fi
for f in "$shared/cases/01-fer2013-archive/fer2013.tar.gz"; do
  [ -f "$f" ] && put fer_csv 4 "$f"
done
[ -f "$shared/cases/02-spreadsheet-bom/fer_bom_crlf.csv" ] && head -c 30000 "$shared/cases/02-spreadsheet-bom/fer_bom_crlf.csv" > "$tmp/bom.csv" && put fer_csv 0 "$tmp/bom.csv"

# image_decode: every image of the cases (EXIF-rotated JPEGs, a PNG named .jpg, WebP, BMP, ...),
# read both from memory (selector 0) and from a file (1).
if [ -d "$shared/cases" ]; then
  find "$shared/cases" -type f \( -iname '*.jpg' -o -iname '*.jpe' -o -iname '*.jfif' -o -iname '*.png' -o -iname '*.webp' -o -iname '*.bmp' -o -iname '*.gif' -o -iname '*.tif*' \) -size -200k |
    sort | awk 'NR % 3 == 1' | while read -r f; do put image_decode 0 "$f"; put image_decode 1 "$f"; done
fi
if command -v ffmpeg >/dev/null && [ -f "$shared/data/photos/astronaut.png" ]; then
  ffmpeg -loglevel error -i "$shared/data/photos/astronaut.png" -vf scale=96:-1 "$tmp/astronaut.jpg"
  ffmpeg -loglevel error -i "$shared/data/photos/coffee.png" -vf scale=96:-1 "$tmp/coffee.gif"
  put image_decode 0 "$tmp/astronaut.jpg"; put image_decode 1 "$tmp/coffee.gif"
fi

# haar_cascade: OpenCV's Haar and LBP cascades (the small ones; the face cascade from ../shared).
for f in /usr/share/opencv4/haarcascades/haarcascade_smile.xml /usr/share/opencv4/haarcascades/haarcascade_eye.xml \
  /usr/share/opencv4/lbpcascades/lbpcascade_frontalface.xml /usr/share/opencv4/lbpcascades/lbpcascade_silverware.xml \
  "$shared/models/haarcascade_frontalface_default.xml"; do
  [ -f "$f" ] && put haar_cascade "" "$f"
done

# pytorch_pth: MTCNN's P-Net in the legacy pickle format (../shared) and the zip checkpoints of
# the test fixtures (each dtype, wrapped state dicts, a DataParallel one, a mismatch).
[ -f "$shared/models/mtcnn/pnet.pt" ] && put pytorch_pth "" "$shared/models/mtcnn/pnet.pt"
for f in ../tests/fixtures/pytorch_checkpoints/*.pt; do put pytorch_pth "" "$f"; done

# net_spec and search_space: the repository's presets and search space.
for f in ../experiments/*.toml; do
  case "$f" in *tune_*) put search_space "" "$f" ;; *) put net_spec "" "$f" ;; esac
done

# run_state: a run and a search made here on 70 random faces (2 epochs, 2 trials).
if [ -x "$ferkit" ]; then
  python3 - "$tmp/tiny.csv" <<'EOF'
import random, sys
random.seed(1)
with open(sys.argv[1], "w") as f:
    f.write("emotion,pixels,Usage\n")
    for i in range(70):
        usage = "Training" if i < 50 else ("PublicTest" if i < 60 else "PrivateTest")
        f.write(f"{i % 7},{' '.join(str(random.randrange(256)) for _ in range(2304))},{usage}\n")
EOF
  "$ferkit" train cnn1 --data "$tmp/tiny.csv" --epochs 2 --batch 16 --out "$tmp/run" >/dev/null 2>&1 || true
  for f in 0:config.toml 1:history.csv 2:checkpoint/state.json 3:metrics.json; do
    [ -f "$tmp/run/${f#*:}" ] && put run_state "${f%%:*}" "$tmp/run/${f#*:}"
  done
  "$ferkit" tune ../experiments/tune_cnn.toml --data "$tmp/tiny.csv" --trials 2 --epochs 1 --out "$tmp/search" >/dev/null 2>&1 || true
  [ -f "$tmp/search/best.json" ] && put run_state 4 "$tmp/search/best.json"
  [ -f "$tmp/search/oracle.json" ] && put run_state 5 "$tmp/search/oracle.json"
fi

# serve_request: each route, and an emotion request of each kind (raw PNG, JSON, multipart).
mkdir -p "$corpus/serve_request"
printf 'GET /healthz\n\n' > "$corpus/serve_request/healthz"
printf 'GET /v1/model\n\n' > "$corpus/serve_request/model"
printf 'GET /metrics\n\n' > "$corpus/serve_request/metrics"
printf 'GET /openapi.json\n\n' > "$corpus/serve_request/openapi"
face=$(find "$shared/cases/06-png-named-jpg" -name ok.png 2>/dev/null | head -1 || true)
if [ -n "$face" ]; then
  { printf 'POST /v1/emotions?tta=hflip\ncontent-type: image/png\n\n'; cat "$face"; } > "$corpus/serve_request/raw_png"
  { printf 'POST /v1/emotions\ncontent-type: application/json\n\n{"image": "'; base64 -w0 "$face"; printf '"}'; } > "$corpus/serve_request/json"
  { printf 'POST /v1/emotions\ncontent-type: multipart/form-data; boundary=XyZ\n\n--XyZ\r\nContent-Disposition: form-data; name="image"; filename="f.png"\r\nContent-Type: image/png\r\n\r\n'
    cat "$face"; printf '\r\n--XyZ--\r\n'; } > "$corpus/serve_request/multipart"
fi
for t in "$corpus"/*; do echo "$(basename "$t"): $(ls "$t" | wc -l) seeds, $(du -sh "$t" | cut -f1)"; done
