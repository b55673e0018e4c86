#!/usr/bin/env bash
# Load on one dropship-backend (release build, SQLite) with a real load generator (oha):
# presign batches of 100 files, and batch reports of 100, from 50 concurrent clients.
# Figures: URLs signed per second, p50/p99 latency. Targets: >= 5,000 URLs/s, 100-file presign
# p99 <= 50 ms. Writes bench/results/backend-<UTC timestamp>.md (gitignored). Run by hand.
#
#   BENCH_DURATION 20s   how long each scenario runs
#   BENCH_CLIENTS  50    concurrent connections
#
# Presigning needs no S3 round trip (it signs locally), so the backend points at an endpoint
# nobody listens on. The reports name keys this backend never issued: each is looked up in the
# database, answered `not_found` and audited — the database path of a report without the HEAD.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${BENCH_DURATION:-20s}
CLIENTS=${BENCH_CLIENTS:-50}
export PATH=$HOME/.cargo/bin:$PATH AWS_EC2_METADATA_DISABLED=true

# oha from crates.io, into a project-local root.
OHA=$ROOT/.stack/cargo-tools/bin/oha
if [ ! -x "$OHA" ]; then
  cargo install oha --locked --root "$ROOT/.stack/cargo-tools"
fi
cargo build --release -p dropship-backend
BIN=$ROOT/target/release/dropship-backend

WORK=$(mktemp -d)
BACKEND_PID=
cleanup() {
  if [ -n "$BACKEND_PID" ]; then kill "$BACKEND_PID" 2>/dev/null || true; wait "$BACKEND_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

TOKEN=bench-$(python3 -c 'import uuid; print(uuid.uuid4().hex)')
"$BIN" --listen 127.0.0.1:0 --bucket bench --tokens "bench:$TOKEN" --path-style \
  --s3-endpoint http://127.0.0.1:9 --access-key-id a --secret-access-key s \
  --db "$WORK/backend.sqlite" --max-concurrent-requests 1024 >"$WORK/stdout" 2>"$WORK/stderr" &
BACKEND_PID=$!
for _ in $(seq 100); do grep -q '^listening on' "$WORK/stdout" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$WORK/stdout")
[ -n "$URL" ] || { cat "$WORK/stderr"; exit 1; }

python3 - "$WORK" <<'PY'
import json, sys, uuid
work = sys.argv[1]
checksum = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
files = [{"client_upload_id": str(uuid.uuid4()), "file_name": f"photo-{n}.jpg", "size": 1000 + n,
          "content_type": "image/jpeg", "checksum_sha256": checksum} for n in range(100)]
json.dump({"files": files}, open(f"{work}/presign.json", "w"))
reports = [{"client_upload_id": str(uuid.uuid4()), "key": f"uploads/{uuid.uuid4()}/photo-{n}.jpg",
            "file_name": f"photo-{n}.jpg", "size": 1000 + n, "checksum_sha256": checksum} for n in range(100)]
json.dump({"reports": reports}, open(f"{work}/reports.json", "w"))
PY

run() { # name path body
  "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CLIENTS" -m POST \
    -H "authorization: Bearer $TOKEN" -H "content-type: application/json" -D "$3" "$URL$2" >"$WORK/$1.json"
}
run presign /api/v1/uploads/presign "$WORK/presign.json"
run reports /api/v1/reports "$WORK/reports.json"

mkdir -p bench/results
OUT=bench/results/backend-$(date -u +%Y%m%dT%H%M%SZ).md
python3 - "$WORK" "$CLIENTS" "$DURATION" "$(git rev-parse --short HEAD)" "$(nproc)" >"$OUT" <<'PY'
import json, sys
work, clients, duration, commit, cores = sys.argv[1:]
print(f"# dropship-backend load ({commit}, release, SQLite, {cores} cores, {clients} clients, {duration} each)\n")
print("| scenario | requests/s | items/s | p50 ms | p99 ms | non-2xx | target |")
print("|---|---|---|---|---|---|---|")
for name, target in [("presign", ">= 5,000 URLs/s, p99 <= 50 ms"), ("reports", "-")]:
    r = json.load(open(f"{work}/{name}.json"))
    rps = r["summary"]["requestsPerSec"]
    pct = r["latencyPercentiles"]
    codes = r.get("statusCodeDistribution", {})
    bad = sum(v for k, v in codes.items() if not k.startswith("2"))
    print(f"| {name} (100 per request) | {rps:.0f} | {rps*100:.0f} | {pct['p50']*1000:.1f} | {pct['p99']*1000:.1f} | {bad} | {target} |")
PY
cat "$OUT"
echo "written to $OUT"
