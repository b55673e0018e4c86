#!/usr/bin/env bash
# The soak run, by hand: 10,000 files of mixed sizes (mostly small, one in a thousand in 5 MiB
# parts) through the fault proxy failing 5% of the requests to S3 — connections cut mid-body,
# 500, 503, SlowDown, 429, corrupted bodies — against a real SeaweedFS and dropship-backend.
# Passes when every file is in S3 byte-identical, once in the history and recorded once by the
# backend; prints the wall time, client CPU, requests, faults, retries and bytes sent again.
#
#   bench/soak.sh                          # 10,000 files, 5%, seed 1, release build (~10 min cold)
#   SOAK_FILES=2000 SOAK_SEED=7 bench/soak.sh
#   SOAK_PROFILE=debug bench/soak.sh       # reuse the test suite's debug build
#   SOAK_BACKEND_RATE=0.02 bench/soak.sh   # also fail 2% of backend requests (see tests/soak.rs)
#
# The run itself is tests/soak.rs (an ignored test), so it shares the suite's harness and its
# nothing-lost checks. Needs scripts/install-deps.sh (SeaweedFS, sqlite3).
set -euo pipefail
cd "$(dirname "$0")/.."

export SOAK_FILES=${SOAK_FILES:-10000}
export SOAK_RATE=${SOAK_RATE:-0.05}
export SOAK_SEED=${SOAK_SEED:-1}
export SOAK_BACKEND_RATE=${SOAK_BACKEND_RATE:-0}
PROFILE=${SOAK_PROFILE:-release}
# Never reach for instance credentials; every request here is signed with explicit keys.
export AWS_EC2_METADATA_DISABLED=true

[ -x .stack/venv/bin/weed ] || { echo "soak: SeaweedFS is missing: run scripts/install-deps.sh" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "soak: sqlite3 is missing: run scripts/install-deps.sh" >&2; exit 2; }

flags=()
[ "$PROFILE" = release ] && flags+=(--release)
echo "soak: building ($PROFILE): dropship, dropship-backend and the soak test" >&2
cargo build -q "${flags[@]}" -p dropship-cli -p dropship-backend
log=$(mktemp -t dropship-soak.XXXXXX)
trap 'rm -f "$log"' EXIT

echo "soak: $SOAK_FILES files, ${SOAK_RATE} of S3 requests failing (seed $SOAK_SEED)" >&2
started=$(date +%s)
if ! cargo test -q "${flags[@]}" -p dropship-system-tests --test soak -- --ignored --nocapture 2>&1 | tee "$log" >&2; then
  echo "soak: FAILED (see the output above)" >&2
  exit 1
fi
grep -q '^SOAK ' "$log" || { echo "soak: the run printed no figures" >&2; exit 1; }

echo
echo "Soak ($PROFILE build, $(nproc) cores, $(date -u +%Y-%m-%d)), $(($(date +%s) - started)) s including setup and checks:"
grep '^SOAK ' "$log" | sed 's/^SOAK //' | tr ' ' '\n' | sed 's/^/  /'
