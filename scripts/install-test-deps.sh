#!/usr/bin/env bash
# Installs the real servers Coffer's storage tests start (see crates/coffer-testkit/src/servers.rs):
#   - Debian packages: openssh-server (sshd for SFTP), util-linux (runuser), postgresql (server,
#     pg_dump, pgbench), mariadb-server and -client, redis-server and redis-tools, sqlite3,
#     openssl (the test certificates of the Redis TLS tests);
#   - a Python venv in .tools/venv with moto[server] (S3) and gcp-storage-emulator (GCS);
#   - azurite (Azure Blob) from npm, in .tools/node;
#   - cargo-machete (unused dependencies), with cargo install.
# Idempotent: each step runs only when its result is missing. Run as root or with sudo on Debian.
# Usage: ./scripts/install-test-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
TOOLS="$ROOT/.tools"

log() { echo "install-test-deps: $*"; }

# --- 1. Debian packages ----------------------------------------------------------------------
APT_PACKAGES=(openssh-server openssh-client util-linux postgresql postgresql-contrib postgresql-client mariadb-server mariadb-client redis-server redis-tools sqlite3 openssl)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- 2. Python venv: moto (S3) and gcp-storage-emulator (GCS) ----------------------------------
VENV="$TOOLS/venv"
PY_PACKAGES=("moto[server]>=5" "gcp-storage-emulator>=2024.8")
if [ ! -x "$VENV/bin/moto_server" ] || [ ! -x "$VENV/bin/gcp-storage-emulator" ]; then
  PYTHON="$(command -v python3.11 || command -v python3 || true)"
  [ -n "$PYTHON" ] || { echo "install-test-deps: python3 is missing (apt-get install python3 python3-venv)" >&2; exit 1; }
  if [ ! -x "$VENV/bin/pip" ]; then
    log "creating the Python venv $VENV with $PYTHON"
    rm -rf "$VENV"
    if ! "$PYTHON" -m venv "$VENV"; then
      # Debian's python3 needs python3-venv for ensurepip.
      log "installing python3-venv"
      rm -rf "$VENV"
      SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv
      PYTHON=/usr/bin/python3
      "$PYTHON" -m venv "$VENV"
    fi
  fi
  log "installing ${PY_PACKAGES[*]} into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
fi

# --- 3. npm: azurite (Azure Blob) --------------------------------------------------------------
NODE_PREFIX="$TOOLS/node"
if [ ! -x "$NODE_PREFIX/node_modules/.bin/azurite-blob" ]; then
  command -v npm >/dev/null || { echo "install-test-deps: npm is missing (apt-get install nodejs npm)" >&2; exit 1; }
  log "installing azurite into $NODE_PREFIX"
  mkdir -p "$NODE_PREFIX"
  npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --loglevel=error azurite@3
fi

# --- 4. cargo: cargo-machete (unused dependencies) ---------------------------------------------
# Into cargo's own bin folder (~/.cargo/bin), so that it is built once per machine.
MACHETE_VERSION=0.9.2
command -v cargo >/dev/null || { echo "install-test-deps: cargo is missing: install Rust (https://rustup.rs)" >&2; exit 1; }
if ! cargo machete --version 2>/dev/null | grep -q "$MACHETE_VERSION"; then
  log "installing cargo-machete $MACHETE_VERSION (cargo install)"
  cargo install --quiet --locked --version "$MACHETE_VERSION" cargo-machete
fi

log "ready: sshd $(command -v sshd || echo /usr/sbin/sshd), moto_server and gcp-storage-emulator in $VENV/bin, azurite-blob in $NODE_PREFIX/node_modules/.bin"
