#!/usr/bin/env bash
# The two toolchains come with the machine (rustup's cargo, Node 20 with npm); say so plainly
# when one is missing instead of failing somewhere deep in a build.
set -euo pipefail
export PATH=$HOME/.cargo/bin:$PATH
missing=0
command -v cargo >/dev/null || { echo "Rust is missing: install it with rustup (https://rustup.rs), then run this again." >&2; missing=1; }
command -v npm >/dev/null || { echo "Node.js 20 with npm is missing: install it (e.g. apt-get install nodejs npm), then run this again." >&2; missing=1; }
command -v python3 >/dev/null || { echo "python3 is missing: apt-get install python3 python3-venv" >&2; missing=1; }
exit $missing
