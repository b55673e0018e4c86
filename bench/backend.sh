#!/usr/bin/env bash
# Load on dropship-backend (release build) with a real load generator (oha): presign batches
# of 100 files, and batch reports of 100, from 50 concurrent clients, against
#   - one instance on SQLite            (the embedded default)
#   - three instances on one SQLite file, behind nginx (round-robin)
#   - one instance on Postgres 15
#   - three instances on one Postgres 15, behind nginx
# Postgres is a throwaway cluster (initdb in a temp dir, as `nobody` when run as root, fsync on
# as in production) and nginx is Debian's, both started here and stopped on exit.
# Each presign runs twice: flat out (throughput), and paced at the target rate (latency: flat
# out, 50 clients queue behind each other and p99 measures the queue). Figures: URLs signed per
# second, p50/p99 latency. Targets: one instance on SQLite >= 5,000 URLs/s flat out; a 100-file
# presign p99 <= 50 ms at 5,000 URLs/s. Writes bench/results/backend-<UTC timestamp>.md.
# Run by hand, on an otherwise idle machine.
#
#   BENCH_DURATION 15s    how long each scenario runs
#   BENCH_CLIENTS  50     concurrent connections
#   BENCH_SETUPS   "sqlite-1 sqlite-3 postgres-1 postgres-3"
#   BENCH_PACED_RPS 50    requests (of 100 files) per second in the paced presign
#
# Presigning needs no S3 round trip (it signs locally), so the backend points at an endpoint
# nobody listens on. The reports name keys this backend never issued: each is looked up in the
# database, answered `not_found` and audited — the database path of a report without the HEAD.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${BENCH_DURATION:-15s}
CLIENTS=${BENCH_CLIENTS:-50}
SETUPS=${BENCH_SETUPS:-sqlite-1 sqlite-3 postgres-1 postgres-3}
# The paced presign scenario: 50 requests of 100 files a second, the 5,000 URLs/s target.
PACED_RPS=${BENCH_PACED_RPS:-50}
PG_BIN=${DROPSHIP_POSTGRES_BIN_DIR:-/usr/lib/postgresql/15/bin}
export PATH=$HOME/.cargo/bin:$PATH AWS_EC2_METADATA_DISABLED=true

# oha from crates.io, into a project-local root.
OHA=$ROOT/.stack/cargo-tools/bin/oha
if [ ! -x "$OHA" ]; then
  cargo install oha --locked --root "$ROOT/.stack/cargo-tools"
fi
cargo build --release --locked -p dropship-backend
BIN=$ROOT/target/release/dropship-backend

WORK=$(mktemp -d)
chmod 755 "$WORK"
PIDS=()
PG_DATA=
NGINX_ROOT=
stop_all() {
  if [ -n "$NGINX_ROOT" ] && [ -f "$NGINX_ROOT/nginx.pid" ]; then
    kill "$(cat "$NGINX_ROOT/nginx.pid")" 2>/dev/null || true
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
  NGINX_ROOT=
}
as_pg() { if [ "$(id -u)" = 0 ]; then su nobody -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
cleanup() {
  stop_all
  if [ -n "$PG_DATA" ]; then as_pg "'$PG_BIN/pg_ctl' stop -m fast -w -D '$PG_DATA'" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_postgres() {
  [ -x "$PG_BIN/initdb" ] || { echo "no initdb in $PG_BIN: install postgresql-15 (scripts/install-deps.sh)" >&2; exit 1; }
  PG_DATA=$WORK/pg/data
  mkdir -p "$PG_DATA" "$WORK/pg/socket"
  [ "$(id -u)" = 0 ] && chown -R nobody "$WORK/pg"
  PG_PORT=$(free_port)
  as_pg "'$PG_BIN/initdb' -D '$PG_DATA' -U postgres -A trust -E UTF8 --locale=C" >/dev/null
  as_pg "'$PG_BIN/pg_ctl' start -w -t 60 -D '$PG_DATA' -l '$WORK/pg/log' \
    -o '-p $PG_PORT -k $WORK/pg/socket -c listen_addresses=127.0.0.1 -c max_connections=300'" >/dev/null
}

# The functions below set globals (DATABASE, PIDS, UPSTREAMS, NGINX_ROOT, URL) rather than
# print: called in $(…) they would run in a subshell, and what they start would be lost to
# cleanup and started again by the next scenario.
database_for() { # setup
  case $1 in
    sqlite-*) DATABASE="sqlite://$WORK/$1.sqlite" ;;
    postgres-*)
      [ -n "$PG_DATA" ] || start_postgres
      as_pg "'$PG_BIN/psql' -h 127.0.0.1 -p $PG_PORT -U postgres -qc 'CREATE DATABASE \"${1/-/_}\"'" >/dev/null
      DATABASE="postgres://postgres@127.0.0.1:$PG_PORT/${1/-/_}" ;;
  esac
}

start_backend() { # database-url index
  local out=$WORK/backend-$2
  "$BIN" --listen 127.0.0.1:0 --bucket bench --tokens "bench:$TOKEN" --path-style \
    --s3-endpoint http://127.0.0.1:9 --access-key-id a --secret-access-key s \
    --database-url "$1" --max-concurrent-requests 1024 >"$out.stdout" 2>"$out.stderr" &
  PIDS+=($!)
  for _ in $(seq 200); do grep -q '^listening on' "$out.stdout" 2>/dev/null && break; sleep 0.1; done
  local url
  url=$(sed -n 's/^listening on //p' "$out.stdout")
  [ -n "$url" ] || { cat "$out.stderr" >&2; exit 1; }
  UPSTREAMS+=("$url")
}

start_nginx() { # upstream urls...
  NGINX_ROOT=$WORK/nginx-$RANDOM
  mkdir -p "$NGINX_ROOT/logs" "$NGINX_ROOT/temp"
  local port servers="" user=""
  port=$(free_port)
  for upstream in "$@"; do servers+="        server ${upstream#http://};"$'\n'; done
  [ "$(id -u)" = 0 ] && user="user root;"
  cat >"$NGINX_ROOT/nginx.conf" <<EOF
$user
worker_processes 1;
pid $NGINX_ROOT/nginx.pid;
error_log $NGINX_ROOT/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $NGINX_ROOT/temp/body;
    proxy_temp_path $NGINX_ROOT/temp/proxy;
    fastcgi_temp_path $NGINX_ROOT/temp/fastcgi;
    uwsgi_temp_path $NGINX_ROOT/temp/uwsgi;
    scgi_temp_path $NGINX_ROOT/temp/scgi;
    upstream backends {
$servers        keepalive 64;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            # With keep-alive upstreams, a buffered body goes out in a second small write that
            # Nagle holds for the backend's delayed ACK: ~40 ms on every request (p50 52 ms
            # against 8 ms direct). The bodies are small JSON; streaming them costs nothing.
            proxy_request_buffering off;
        }
    }
}
EOF
  nginx -c "$NGINX_ROOT/nginx.conf" -p "$NGINX_ROOT" 2>"$NGINX_ROOT/logs/start.log" || { cat "$NGINX_ROOT/logs/start.log" >&2; exit 1; }
  for _ in $(seq 50); do [ -s "$NGINX_ROOT/nginx.pid" ] && break; sleep 0.1; done
  URL="http://127.0.0.1:$port"
}

TOKEN=bench-$(python3 -c 'import uuid; print(uuid.uuid4().hex)')
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

run() { # out url path body [requests per second]
  local pace=()
  # Paced, latency counts from when each request was due (no coordinated omission).
  if [ -n "${5:-}" ]; then pace=(-q "$5" --latency-correction); fi
  "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CLIENTS" -m POST "${pace[@]}" \
    -H "authorization: Bearer $TOKEN" -H "content-type: application/json" -D "$4" "$2$3" >"$1"
}

for setup in $SETUPS; do
  database_for "$setup"
  instances=${setup##*-}
  UPSTREAMS=()
  for i in $(seq "$instances"); do start_backend "$DATABASE" "$setup-$i"; done
  if [ "$instances" = 1 ]; then URL=${UPSTREAMS[0]}; else start_nginx "${UPSTREAMS[@]}"; fi
  echo "==> $setup at $URL"
  run "$WORK/$setup.presign.json" "$URL" /api/v1/uploads/presign "$WORK/presign.json"
  run "$WORK/$setup.presign-paced.json" "$URL" /api/v1/uploads/presign "$WORK/presign.json" "$PACED_RPS"
  run "$WORK/$setup.reports.json" "$URL" /api/v1/reports "$WORK/reports.json"
  stop_all
done

mkdir -p bench/results
OUT=bench/results/backend-$(date -u +%Y%m%dT%H%M%SZ).md
python3 - "$WORK" "$CLIENTS" "$DURATION" "$(git rev-parse --short HEAD)" "$(nproc)" "$SETUPS" "$PACED_RPS" >"$OUT" <<'PY'
import json, sys
work, clients, duration, commit, cores, setups, paced = sys.argv[1:]
print(f"# dropship-backend load ({commit}, release, {cores} cores, {clients} clients, {duration} per scenario, 100 items per request)\n")
print("| setup | scenario | requests/s | items/s | p50 ms | p99 ms | non-2xx |")
print("|---|---|---|---|---|---|---|")
for setup in setups.split():
    for name in ["presign", "presign-paced", "reports"]:
        r = json.load(open(f"{work}/{setup}.{name}.json"))
        rps = r["summary"]["requestsPerSec"]
        pct = r["latencyPercentiles"]
        codes = r.get("statusCodeDistribution", {})
        bad = sum(v for k, v in codes.items() if not k.startswith("2"))
        scenario = f"presign at {paced} requests/s" if name == "presign-paced" else f"{name}, flat out"
        print(f"| {setup} | {scenario} | {rps:.0f} | {rps*100:.0f} | {pct['p50']*1000:.1f} | {pct['p99']*1000:.1f} | {bad} |")
print(f"\nTargets: sqlite-1 presign flat out >= 5,000 URLs/s; at {paced} requests/s ({int(paced) * 100:,} URLs/s) p99 <= 50 ms.")
print("Flat out, every client sends its next request as soon as the last is answered, so latency is")
print("clients / requests per second (Little's law): it measures the queue, not the service time.")
PY
cat "$OUT"
echo "written to $OUT"
