#!/usr/bin/env bash
# The local stack: SeaweedFS (the S3 server) and dropship-backend, both on 127.0.0.1.
#   scripts/stack.sh up     start both, write the app's settings, print how to reach them
#   scripts/stack.sh down   stop what `up` started (by the PIDs it recorded)
# State lives in .stack/run (disposable). Ports can be moved with the variables below.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/.stack/run
WEED=${DROPSHIP_WEED:-$ROOT/.stack/venv/bin/weed}
S3_PORT=${STACK_S3_PORT:-8333}
BACKEND_PORT=${STACK_BACKEND_PORT:-8080}
BUCKET=${STACK_BUCKET:-dropship}
APP_DATA=${DROPSHIP_DATA_DIR:-$ROOT/.stack/app-data}
ACCESS_KEY=dropship-local

stop_pid() {
  local file=$1
  [ -f "$file" ] || return 0
  local pid; pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    # SeaweedFS can take 5-15 s to stop; its data is disposable, so don't wait long.
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

down() {
  stop_pid "$RUN/backend.pid"
  stop_pid "$RUN/weed.pid"
}

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "stack: $what did not become ready; see the logs in $RUN" >&2
  return 1
}

up() {
  down
  mkdir -p "$RUN" "$APP_DATA"
  local secret; secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=' )
  local token; token=$(head -c 24 /dev/urandom | base64 | tr -d '/+=' )
  cat > "$RUN/s3.json" <<JSON
{"identities":[{"name":"dropship","credentials":[{"accessKey":"$ACCESS_KEY","secretKey":"$secret"}],
 "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  rm -rf "$RUN/weed-data"; mkdir -p "$RUN/weed-data"
  "$WEED" mini -dir="$RUN/weed-data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$S3_PORT" \
    -s3.config="$RUN/s3.json" -bucket="$BUCKET" -master.telemetry=false -admin.ui=false \
    -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 >"$RUN/weed.log" 2>&1 &
  echo $! > "$RUN/weed.pid"
  wait_for "SeaweedFS" curl -fsS "http://127.0.0.1:$S3_PORT/healthz"
  wait_for "the bucket" env -u AWS_CA_BUNDLE curl -fsS -o /dev/null -I --aws-sigv4 aws:amz:us-east-1:s3 \
    -u "$ACCESS_KEY:$secret" "http://127.0.0.1:$S3_PORT/$BUCKET"

  local backend_bin=$ROOT/target/debug/dropship-backend
  [ -x "$backend_bin" ] || cargo build -q -p dropship-backend
  DROPSHIP_S3_ACCESS_KEY_ID=$ACCESS_KEY DROPSHIP_S3_SECRET_ACCESS_KEY=$secret DROPSHIP_BACKEND_TOKENS=$token \
    "$backend_bin" --listen "127.0.0.1:$BACKEND_PORT" --s3-endpoint "http://127.0.0.1:$S3_PORT" \
      --bucket "$BUCKET" --path-style --db "$RUN/backend.sqlite" >"$RUN/backend.log" 2>&1 &
  echo $! > "$RUN/backend.pid"
  wait_for "dropship-backend" curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$BACKEND_PORT/api/v1/ping"

  # The app and the CLI read this; the token never leaves the machine's own data folder.
  umask 077
  printf '{"backend_url":"http://127.0.0.1:%s","api":"native","token":"%s"}\n' "$BACKEND_PORT" "$token" > "$APP_DATA/settings.json"
  echo "stack: S3 http://127.0.0.1:$S3_PORT/$BUCKET, backend http://127.0.0.1:$BACKEND_PORT, settings in $APP_DATA"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 64 ;;
esac
