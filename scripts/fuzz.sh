#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60).
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Needs a nightly toolchain and cargo-fuzz; installs them when missing, and
# when that is impossible prints "fuzzing skipped: <reason>" and exits 0.
# The committed seeds (fuzz/corpus/<target>) are read, never written: what
# the fuzzer finds goes to target/fuzz/corpus/<target>, so repeat runs go
# on from there. A crash fails the script and prints the reproducer path
# (target/fuzz/artifacts/<target>/crash-...); replay it with
#   cargo +nightly fuzz run --fuzz-dir fuzz --target-dir target/fuzz <target> <file>
# then add the file to fuzz/corpus/<target>/ once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(frame_decoder dispatch message_validation topic_and_socket_id redis_envelope upgrade_request)
fi

skip() {
  echo "fuzzing skipped: $*"
  exit 0
}

command -v rustup >/dev/null || skip "rustup is not installed (a nightly toolchain is needed)"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "installing the nightly toolchain"
  timeout 900 rustup toolchain install nightly --profile minimal >/dev/null 2>&1 ||
    skip "could not install the nightly toolchain"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  timeout 1800 cargo install cargo-fuzz --locked >/dev/null 2>&1 || skip "could not install cargo-fuzz"
fi
if ! command -v c++ >/dev/null; then
  # libFuzzer is built from source: install a C++ compiler when we can.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing g++"
    (timeout 600 apt-get update && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y g++) >/dev/null 2>&1 || true
  fi
  command -v c++ >/dev/null || skip "no C++ compiler (libFuzzer is built from source)"
fi

fuzz=(cargo +nightly fuzz)
dirs=(--fuzz-dir fuzz --target-dir target/fuzz)
for t in "${targets[@]}"; do
  "${fuzz[@]}" build "${dirs[@]}" "$t" || { echo "fuzz: building $t failed" >&2; exit 1; }
done

failed=0
for t in "${targets[@]}"; do
  work=$PWD/target/fuzz/corpus/$t
  artifacts=$PWD/target/fuzz/artifacts/$t
  mkdir -p "$work" "$artifacts"
  log=target/fuzz/$t.log
  echo "== fuzz $t for ${seconds}s =="
  rc=0
  "${fuzz[@]}" run "${dirs[@]}" "$t" "$work" "$PWD/fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=2048 -timeout=30 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)' "$log" || true
  if [ "$rc" -ne 0 ]; then
    failed=1
    echo "fuzz: $t FAILED (exit $rc); log: $log" >&2
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -5 >&2 || true
    for f in $(grep -oE 'Test unit written to [^ ]+' "$log" | awk '{print $5}'); do
      echo "fuzz: reproducer: $f" >&2
    done
  fi
done
exit $failed
