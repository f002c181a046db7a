#!/usr/bin/env bash
# Installs what Coffer's tests need, then runs every check CI runs: format, lints, all tests.
# Usage: ./scripts/test.sh            (as root, or with sudo available, on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."

# 1. The real servers and tools the tests start (Debian packages, a Python venv and npm
#    packages under .tools/); each is installed only when missing.
./scripts/install-test-deps.sh

# 2. Rust checks.
command -v cargo >/dev/null || { echo "test.sh: cargo is missing: install Rust (https://rustup.rs)" >&2; exit 1; }
echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "test.sh: cargo machete (unused dependencies)"
cargo machete
echo "test.sh: cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "test.sh: cargo test"
cargo test --workspace --locked
