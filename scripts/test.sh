#!/usr/bin/env bash
# The project's whole test suite: formatting, lints, docs, unit and
# integration tests, and WebSocket conformance (Autobahn TestSuite).
# Installs what it needs when missing. Run from anywhere: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

step "redis-server (the Redis provider's tests start their own on a free port)"
# Installed when missing; no system Redis is started.
command -v redis-server >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server)
redis-server --version

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi

step "WebSocket conformance (Autobahn TestSuite)"
scripts/autobahn.sh

echo
echo "all tests passed"
