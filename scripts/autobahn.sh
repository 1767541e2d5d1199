#!/usr/bin/env bash
# Runs the Autobahn TestSuite (RFC 6455 conformance) against the quickstart
# example, which echoes every message. Fails on any FAILED case or unclean
# closing handshake. The JSON/HTML report is copied to target/autobahn-report.
#   scripts/autobahn.sh [CASES]    e.g. scripts/autobahn.sh "1.*,2.*"
# With COMPRESSION=1 in the environment the quickstart offers
# permessage-deflate (the compression cases 12.* and 13.* need it).
# AB_REPORT names the report folder (default target/autobahn-report).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=${CARGO_TARGET_DIR:-$root/target}

cargo build --release --example quickstart
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn PORT=$port "$target/release/examples/quickstart" >/dev/null 2>"$target/autobahn-server.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; then break; fi
  sleep 0.1
done

out=${AB_OUT:-$target/autobahn-out}
rc=0
AB_OUT="$out" AB_STRICT_CLOSE=1 AB_TIMEOUT=${AB_TIMEOUT:-900} \
  tools/autobahn/run.sh "ws://127.0.0.1:$port/ws" "${1:-*}" || rc=$?
report=${AB_REPORT:-$target/autobahn-report}
rm -rf "$report"
if [ -d "$out/servers" ]; then cp -r "$out/servers" "$report"; fi
if ! kill -0 "$server" 2>/dev/null; then
  echo "autobahn: the quickstart server died during the run" >&2
  tail -20 "$target/autobahn-server.log" >&2
  rc=1
fi
exit $rc
