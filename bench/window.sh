#!/usr/bin/env bash
# The window's figures for the README: launch to a usable window (cold and warm), idle CPU
# and memory, history search over 100,000 rows, a queue of 10,000 files, and the app in the tray
# with its window closed (memory, idle CPU, Open Dropship to a usable window), all in the real
# window under Xvfb against the local SeaweedFS and dropship-backend. Prints the figures.
#
#   bench/window.sh            (about 5 minutes on two cores)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH AWS_EC2_METADATA_DISABLED=true
(cd ui && npm run --silent build)
cargo build --quiet -p dropship-desktop -p dropship-backend
cargo test --quiet -p dropship-system-tests --test gui_figures -- --ignored --nocapture --test-threads=1 2>&1 \
  | grep -v '^running\|^test \|^$\|test result'
