#!/usr/bin/env bash
# The window's figures for the README: launch to a usable window (cold and warm), idle CPU
# and memory, history search over 100,000 rows, a queue of 10,000 files, and the app in the tray
# with its window closed (memory, idle CPU, Open Dropship to a usable window; under WebDriver and
# started directly), all in the real window under Xvfb against the local SeaweedFS and
# dropship-backend. Prints the figures and writes them to bench/results/window-<UTC>.md.
#
#   bench/window.sh                                  (about 5 minutes on two cores)
#   WINDOW_BENCH=tray bench/window.sh                (one part: launch|idle|history|queue|tray)
#   WINDOW_BUILD=release WINDOW_BENCH=tray bench/window.sh
#                                                    (a release build of the app, as staff run it;
#                                                    the first time builds the tests in release too)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH AWS_EC2_METADATA_DISABLED=true
build=${WINDOW_BUILD:-debug}
case "$build" in
  debug) profile=() ;;
  release) profile=(--release) ;;
  *) echo "WINDOW_BUILD is debug or release, not $build" >&2; exit 2 ;;
esac
(cd ui && npm run --silent build)
cargo build --quiet "${profile[@]}" -p dropship-desktop -p dropship-backend
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=bench/results/window-$stamp.md
{
  echo "# Window benchmark $stamp"
  echo
  echo "\`bench/window.sh\` at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src-tauri crates ui/src || echo ' (with uncommitted changes)'), $build build of the app, part: ${WINDOW_BENCH:-all}."
  echo "WebKitGTK $(dpkg-query -W -f '${Version}' libwebkit2gtk-4.1-0 2>/dev/null || echo '?'), software rendering under Xvfb, $(nproc) cores."
  echo
  echo '```'
} >"$out"
# The test harness's own lines (running…, test …, test result) are not figures.
cargo test --quiet "${profile[@]}" -p dropship-system-tests --test gui_figures -- --ignored --nocapture --test-threads=1 2>&1 \
  | grep -v '^running\|^test \|^$\|test result\|^warning: failed to parse serde\|^ *|\|^ *= note: ts-rs' | tee -a "$out"
echo '```' >>"$out"
echo "written to $out"
