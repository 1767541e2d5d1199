#!/usr/bin/env bash
# The project's whole test suite: formatting, lints, docs, unit and
# integration tests, the TypeScript client, the demo's web page in headless
# Chromium, and WebSocket conformance (Autobahn TestSuite).
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

step "TypeScript client (clients/ts: generated message types current; unit tests; the committed bundle matches a fresh build)"
command -v npm >/dev/null || { echo "npm is missing: install Node.js 20 or newer" >&2; exit 1; }
(
  cd clients/ts
  # npm ci when node_modules is missing or older than the lock file.
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci
  fi
  # The generated message types match the server's schemas (ori-schemas).
  npm run gen:types
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git diff --exit-code -- src/generated/ && [ -z "$(git status --porcelain -- src/generated/)" ] || {
      echo "clients/ts/src/generated/ is stale: run 'npm run gen:types' in clients/ts and commit it" >&2
      exit 1
    }
  fi
  npm test # builds dist/ first
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git diff --exit-code -- dist/ && [ -z "$(git status --porcelain -- dist/)" ] || {
      echo "clients/ts/dist/ differs from a fresh build: run 'npm run build' in clients/ts and commit dist/" >&2
      exit 1
    }
  fi
  ../../scripts/ts-package-check.sh # the npm package: packed, installed, type-checked, bundled, imported
)

step "browser end-to-end (the demo's web page in headless Chromium)"
# Debian's chromium, installed when missing (never a browser downloaded by npm).
[ -x /usr/bin/chromium ] || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
cargo build --release -p ori-demo
# The page as the browser showed it is kept as an artifact.
mkdir -p target/e2e
(cd clients/ts && E2E_SCREENSHOT="$(pwd)/../../target/e2e/demo-page.png" npm run e2e)

step "WebSocket conformance (Autobahn TestSuite)"
scripts/autobahn.sh

step "WebSocket conformance with permessage-deflate (Autobahn 12.* and 13.*, the quickstart with COMPRESSION=1)"
target_dir=${CARGO_TARGET_DIR:-target}
COMPRESSION=1 AB_OUT="$target_dir/autobahn-out-deflate" AB_REPORT="$target_dir/autobahn-report-deflate" \
  scripts/autobahn.sh "12.*,13.*"

echo
echo "all tests passed"
