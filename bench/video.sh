#!/usr/bin/env bash
# Video speed and memory of `ferkit predict VIDEO` (issue 18), printed as a table, beside PyPI
# fer's `Video.analyze` on the same clip when a Python with `fer` is given.
#
#   bash bench/video.sh                          # 20 s speed clips, 1 and 10 minute memory clips
#   SECONDS_SPEED=10 LONG_MINUTES=3 bash bench/video.sh
#   FER_PYTHON=../runs/fervenv/bin/python bash bench/video.sh   # also PyPI fer (pip install fer)
#
# Clips are made with ffmpeg from ../shared/data/photos/astronaut.png: 640x480 with one face
# (a slow pan and zoom) and 1280x720 with two (the astronaut beside her mirror image), 30 frames/s.
# Each is read with the Haar cascade on every frame and with detection every 5 frames (boxes
# carried between, faces read anew). Peak RSS comes from GNU time on a 1-minute and a
# LONG_MINUTES-minute clip (--detect-every 5). Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
speed_seconds="${SECONDS_SPEED:-20}"
long_minutes="${LONG_MINUTES:-10}"
photo=../shared/data/photos/astronaut.png
cascade=../shared/models/haarcascade_frontalface_default.xml
for f in "$photo" "$cascade"; do [ -f "$f" ] || { echo "needs $f"; exit 1; }; done
command -v ffmpeg >/dev/null || { echo "needs ffmpeg (apt-get install ffmpeg)"; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install time)"; exit 1; }
cargo build --release --quiet
ferkit=./target/release/ferkit
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

one_face() { # seconds path
  ffmpeg -nostdin -v error -y -loop 1 -i "$photo" -t "$1" -r 30 \
    -filter_complex "[0]scale=w='900+60*sin(t/4)':h='900+60*sin(t/4)':eval=frame,crop=640:480:'120+60*sin(t/3)':'40+30*sin(t/5)'" \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p "$2"
}
two_faces() { # seconds path
  ffmpeg -nostdin -v error -y -loop 1 -i "$photo" -t "$1" -r 30 \
    -filter_complex "[0]scale=720:720,crop=640:720:'40+20*sin(t)':0,split[a][b];[b]hflip[m];[a][m]hstack" \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p "$2"
}

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "making clips ..."
one_face "$speed_seconds" "$work/one_640x480.mp4"
two_faces "$speed_seconds" "$work/two_1280x720.mp4"

# frames/s = frames read / wall seconds of the whole command (decoding, detection, net, files).
run() { # label out clip extra-args...
  local label="$1" out="$2" clip="$3"; shift 3
  local start end frames
  start=$(date +%s.%N)
  "$ferkit" predict "$clip" --cascade "$cascade" --out "$work/$out" "$@" > "$work/log.txt"
  end=$(date +%s.%N)
  frames=$(sed -n 's/.*; \([0-9]*\) frames read.*/\1/p' "$work/log.txt")
  printf "| %s | %s | %s | %.1f | %.1f |\n" "$label" "$(basename "$clip")" "$*" "$(echo "$end - $start" | bc)" \
    "$(echo "$frames / ($end - $start)" | bc -l)"
}
echo
echo "| run | clip | options | seconds | frames/s |"
echo "|---|---|---|---:|---:|"
run "Haar every frame" one_k1 "$work/one_640x480.mp4"
run "Haar every 5 frames" one_k5 "$work/one_640x480.mp4" --detect-every 5
run "Haar every frame" two_k1 "$work/two_1280x720.mp4"
run "Haar every 5 frames" two_k5 "$work/two_1280x720.mp4" --detect-every 5

# How close detection every 5 frames stays to detection on every frame: face rows matched by
# frame and box overlap (IoU >= 0.5).
echo
echo "| clip | rows (every frame) | matched with every 5 | same emotion | mean abs prob. difference | mean box IoU |"
echo "|---|---:|---:|---:|---:|---:|"
for clip in one two; do
  python3 - "$work/${clip}_k1/frames.csv" "$work/${clip}_k5/frames.csv" "$clip" <<'PY'
import csv, sys
classes = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
def rows(path):
    out = {}
    for r in csv.DictReader(open(path)):
        out.setdefault(int(r["frame"]), []).append(r)
    return out
def iou(a, b):
    ax, ay, aw, ah = (int(a[k]) for k in ("x", "y", "width", "height"))
    bx, by, bw, bh = (int(b[k]) for k in ("x", "y", "width", "height"))
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx)); h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)
every, sparse = rows(sys.argv[1]), rows(sys.argv[2])
total = sum(len(v) for v in every.values())
matched = same = 0; diff = ious = 0.0
for frame, faces in every.items():
    for a in faces:
        best = max(sparse.get(frame, []), key=lambda b: iou(a, b), default=None)
        if best is None or iou(a, best) < 0.5:
            continue
        matched += 1; same += a["emotion"] == best["emotion"]; ious += iou(a, best)
        diff += sum(abs(float(a[c]) - float(best[c])) for c in classes) / len(classes)
m = max(matched, 1)
print(f"| {sys.argv[3]} | {total} | {matched} | {100 * same / m:.1f}% | {diff / m:.4f} | {ious / m:.3f} |")
PY
done

echo
echo "making the 1-minute and ${long_minutes}-minute clips ..."
one_face 60 "$work/one_1min.mp4"
one_face $((long_minutes * 60)) "$work/one_long.mp4"
echo "| clip | frames | peak RSS (MiB) | seconds |"
echo "|---|---:|---:|---:|"
for clip in one_1min one_long; do
  /usr/bin/time -f "%M %e" -o "$work/time.txt" "$ferkit" predict "$work/$clip.mp4" --cascade "$cascade" \
    --detect-every 5 --out "$work/long_out" > "$work/log.txt"
  read -r kib secs < "$work/time.txt"
  frames=$(sed -n 's/.*; \([0-9]*\) frames read.*/\1/p' "$work/log.txt")
  printf "| %s | %s | %.1f | %s |\n" "$clip" "$frames" "$(echo "$kib / 1024" | bc -l)" "$secs"
done

if [ -n "${FER_PYTHON:-}" ]; then
  echo
  echo "PyPI fer's Video.analyze on one_640x480.mp4 (OpenCV's Haar cascade, every frame, no output video):"
  "$FER_PYTHON" bench/fer_video.py "$work/one_640x480.mp4"
fi
