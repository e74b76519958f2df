#!/usr/bin/env bash
# Runs fuzz targets one after another, each until 10^6 executions or one hour, whichever comes
# first (FUZZ_SECONDS sets another time limit), with a 2 GB memory limit (RSS and single allocations: an allocation bomb is a crash) and
# a 10 s limit per input (a hang is a crash). Logs go to $FUZZ_LOGS (default ../../runs/fuzz-logs);
# the last lines of each log give the executions and seconds that fuzz/README.md's table reports.
# Usage: bash fuzz/run_all.sh [TARGET...]   (after `cargo +nightly fuzz build` and seed_corpus.sh)
set -uo pipefail
cd "$(dirname "$0")"
logs=${FUZZ_LOGS:-../../runs/fuzz-logs}
mkdir -p "$logs"
bin=target/x86_64-unknown-linux-gnu/release
# Inputs longer than real files of each kind only slow a target down (libFuzzer cuts to max_len).
declare -A max_len=([fer_csv]=32768 [image_decode]=65536 [haar_cascade]=65536 [pytorch_pth]=65536
  [net_spec]=4096 [search_space]=4096 [run_state]=16384 [serve_request]=65536)
declare -A dict=([fer_csv]=dict/fer_csv.dict [haar_cascade]=dict/xml.dict [net_spec]=dict/toml.dict
  [search_space]=dict/toml.dict [serve_request]=dict/http.dict)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(run_state net_spec search_space image_decode fer_csv pytorch_pth haar_cascade serve_request)
for t in "${targets[@]}"; do
  mkdir -p "artifacts/$t" "corpus/$t"
  args=(-runs=1000000 -max_total_time="${FUZZ_SECONDS:-3600}" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10
    -max_len="${max_len[$t]}" -print_final_stats=1 -artifact_prefix="artifacts/$t/")
  [ -n "${dict[$t]:-}" ] && args+=(-dict="${dict[$t]}")
  echo "$(date -u +%FT%TZ) start $t: $bin/$t corpus/$t ${args[*]}" | tee -a "$logs/summary.txt"
  start=$(date +%s)
  "$bin/$t" "corpus/$t" "${args[@]}" > "$logs/$t.log" 2>&1
  rc=$?
  runs=$(grep -oE '^Done [0-9]+ runs in [0-9]+ second' "$logs/$t.log" | tail -1)
  crashes=$(ls "artifacts/$t" | wc -l)
  echo "$(date -u +%FT%TZ) end $t: exit $rc, ${runs:-no Done line}, wall $(( $(date +%s) - start )) s, artifacts $crashes" | tee -a "$logs/summary.txt"
done
