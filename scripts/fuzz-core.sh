#!/usr/bin/env bash
# A short libFuzzer pass (AddressSanitizer on, cargo-fuzz's default) over each fuzz target of
# tensorbridge-core (crates/core/fuzz), seeded with the committed, minimized corpus.
#
#   bash scripts/fuzz-core.sh                          # every target, 30 s each
#   FUZZ_SECONDS=600 bash scripts/fuzz-core.sh import_headers
#   FUZZ_RUNS=10000000 bash scripts/fuzz-core.sh       # a fixed number of executions instead
#
# Needs a nightly toolchain and cargo-fuzz (.ci/run installs both). Exits 0 when every target
# ran clean, 1 when libFuzzer found a crash (the input is saved under target/fuzz/artifacts/,
# and the command to reproduce it is printed), 3 when nightly or cargo-fuzz is missing.
#
# Builds and working files go under target/fuzz/ (gitignored, and outside crates/, so a fuzz
# run never makes scripts/ensure-addon.mjs think the addon is stale). New inputs land in
# target/fuzz/corpus/<target>; to refresh the committed corpus, minimize into it:
#   cd crates/core && cargo +nightly fuzz cmin --target-dir ../../target/fuzz <target> fuzz/corpus/<target>
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

if ! rustup run nightly rustc -V >/dev/null 2>&1; then
  echo "fuzz-core: SKIPPED: no nightly Rust toolchain (rustup toolchain install nightly --profile minimal)"
  exit 3
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-core: SKIPPED: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"
  exit 3
fi

seconds="${FUZZ_SECONDS:-30}"
runs="${FUZZ_RUNS:-}"
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(import_headers ownership_ops)
fi
work="$root/target/fuzz"
mkdir -p "$work"

cd crates/core
echo "== building fuzz targets ($(rustup run nightly rustc -V))"
start=$SECONDS
# One target per `cargo fuzz build`; the second one is incremental.
for t in "${targets[@]}"; do
  cargo +nightly fuzz build --target-dir "$work" "$t" >/dev/null 2>&1 || {
    echo "fuzz-core: building $t failed:" >&2
    cargo +nightly fuzz build --target-dir "$work" "$t" >&2
    exit 1
  }
done
echo "   built in $((SECONDS - start)) s"

failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t" "fuzz/corpus/$t"
  limit=(-max_total_time="$seconds")
  [[ -n "$runs" ]] && limit=(-runs="$runs")
  log="$work/$t.log"
  echo "== fuzz $t (${runs:+$runs runs}${runs:-$seconds s}; log: ${log#"$root"/})"
  start=$SECONDS
  # The first corpus folder receives new inputs; the committed one is only read.
  if cargo +nightly fuzz run --target-dir "$work" "$t" "$work/corpus/$t" "fuzz/corpus/$t" -- \
      "${limit[@]}" -print_final_stats=1 -artifact_prefix="$work/artifacts/$t/" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
  fi
  execs=$(grep -a -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  rate=$(grep -a -m1 '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
  echo "   $status: ${execs:-?} executions in $((SECONDS - start)) s (${rate:-?} exec/s)"
  if [[ $status == FAILED ]]; then
    grep -a -E "panicked at|ERROR: AddressSanitizer|ERROR: libFuzzer|SUMMARY" "$log" | head -n 5 >&2 || true
    ls "$work/artifacts/$t/" >&2 || true
    echo "   reproduce: cd crates/core && cargo +nightly fuzz run --target-dir ../../target/fuzz $t <artifact>" >&2
  fi
done

if ((${#failed[@]})); then
  echo "fuzz-core: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz-core: ${#targets[@]} targets ran clean"
