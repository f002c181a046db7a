#!/usr/bin/env bash
# Installs what Coffer's tests need, then runs every check CI runs: format, lints, all tests.
# Usage: ./scripts/test.sh            (as root, or with sudo available, on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."

# --- 1. System packages the tests use (installed only when missing) -------------------------
# util-linux: runuser (tests that need an unprivileged user when run as root).
APT_PACKAGES=(util-linux)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# --- 2. Rust checks ----------------------------------------------------------------------------
command -v cargo >/dev/null || { echo "test.sh: cargo is missing: install Rust (https://rustup.rs)" >&2; exit 1; }
echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "test.sh: cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "test.sh: cargo test"
cargo test --workspace --locked
