#!/usr/bin/env bash
# Load on `ferkit serve` (issue 17): wrk (Debian's `wrk`) on 127.0.0.1 sends one image at 1, 8
# and 64 concurrent connections, DURATION seconds each (default 30): the shared astronaut photo
# (Haar detection, one face) and a 48x48 face crop with `whole_image` (no detection: the net's
# batching alone). Prints requests/s, p50/p99 latency, non-2xx answers and socket errors per
# level, and the server's peak RSS. Usage: bash bench/serve_load.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-30}"
photo=../shared/data/photos/astronaut.png
cascade=../shared/models/haarcascade_frontalface_default.xml
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
cargo build --release --quiet
tmp="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$tmp"' EXIT
# A 48x48 face: the photo's face box, cut and resized by ferkit's own decoder path is not
# needed here; any 48x48 PNG exercises the same net.
python3 - "$tmp/face.png" <<'PY'
import struct, sys, zlib
w = h = 48
raw = b"".join(b"\x00" + bytes((x * 5 + y * 3) % 256 for x in range(w)) for y in range(h))
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
port=18090
./target/release/ferkit serve --port "$port" --cascade "$cascade" --max-in-flight 1024 2>"$tmp/server.log" &
server=$!
for _ in $(seq 50); do curl -sf "localhost:$port/healthz" >/dev/null && break; sleep 0.1; done
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; wrk ${duration} s per level, up to 2 threads"
printf '%-28s %6s %10s %10s %10s %8s\n' image connections req/s p50_ms p99_ms errors
for case in photo face; do
  if [ "$case" = photo ]; then file="$photo"; query=""; else file="$tmp/face.png"; query="?whole_image=true"; fi
  cat >"$tmp/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "image/png"
local f = io.open("$file", "rb"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %.1f %.1f %.1f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors))
end
LUA
  for c in 1 8 64; do
    line=$(wrk -t"$(( c < 2 ? c : 2 ))" -c"$c" -d"${duration}s" --timeout 30s -s "$tmp/post.lua" "http://127.0.0.1:$port/v1/emotions$query" | grep '^RESULT')
    read -r _ rps p50 p99 errors <<<"$line"
    printf '%-28s %6s %10s %10s %10s %8s\n' "$case" "$c" "$rps" "$p50" "$p99" "$errors"
  done
done
echo "server peak RSS: $(grep VmHWM /proc/$server/status | awk '{print $2/1024 " MiB"}')"
curl -s "localhost:$port/metrics" | grep -E '^ferkit_batch_faces_(sum|count)'
echo "deepface's API server: not measured: deepface 0.0.103 installs from PyPI (with tf-keras), but its emotion model's weights download from GitHub or Hugging Face at first use, which these machines cannot reach"
