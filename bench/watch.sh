#!/usr/bin/env bash
# The watched-folder figures of the README, measured in release mode against the real engine,
# watcher, dropship-backend and SeaweedFS (started by the test kit on moved ports, bound to
# 127.0.0.1, stopped at the end):
#   - last write → upload start latency, p50 / p99, small files, the default 1 s stability window;
#   - catch-up scan of 100,000 files: with an empty index, then with every file already uploaded;
#   - this process's CPU over 30 s of watching those 100,000 files unchanged.
#
#   bench/watch.sh
#   BENCH_WATCH_FILES=20000 BENCH_WATCH_LATENCY_FILES=50 bench/watch.sh   # a quicker run
#   BENCH_PROFILE=dev bench/watch.sh                                       # without a release build
#
# Needs scripts/install-deps.sh (SeaweedFS). Writes the files under $BENCH_TMP (default /tmp).
# Prints Markdown table rows and writes them to bench/results/watch-<UTC timestamp>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true
PROFILE=${BENCH_PROFILE:-release}
flag=(--profile "$PROFILE")
cargo build "${flag[@]}" -q -p dropship-backend
mkdir -p bench/results
out=bench/results/watch-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "Watched folders, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, profile $PROFILE, $(git rev-parse --short HEAD)"
  echo
  echo "| measure | figures |"
  echo "|---|---|"
  cargo test "${flag[@]}" -q -p dropship-system-tests --test watch_bench -- --ignored --nocapture --test-threads=1 2>/dev/null |
    grep -o '| .*|$'
} | tee "$out"
echo "bench: written to $out" >&2
