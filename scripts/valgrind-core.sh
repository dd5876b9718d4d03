#!/usr/bin/env bash
# Runs every tensorbridge-core test binary (unit and integration tests, all features) under
# valgrind memcheck. Fails on any memory error or definite leak.
#
#   bash scripts/valgrind-core.sh            # all core test binaries
#   bash scripts/valgrind-core.sh capsule    # only binaries whose name contains "capsule"
#
# Under valgrind PROPTEST_CASES defaults to 32 (set it to change that). The 64 MiB round trip
# runs too (about a second here); TENSORBRIDGE_SKIP_HUGE=1 skips it on slow machines.
# Doctests and benches are not run. The whole run takes about 10 s on 2 cores once built.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "valgrind-core: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
command -v jq >/dev/null || { echo "valgrind-core: jq is not installed (apt-get install jq)" >&2; exit 2; }

filter="${1:-}"
export PROPTEST_CASES="${PROPTEST_CASES:-32}"
export TENSORBRIDGE_SKIP_HUGE="${TENSORBRIDGE_SKIP_HUGE:-0}"
# Proptest failure files belong to real runs, not to this one.
export PROPTEST_DISABLE_FAILURE_PERSISTENCE=1

echo "== building core test binaries"
mapfile -t bins < <(
  cargo test -p tensorbridge-core --all-features --no-run --message-format=json 2>/dev/null \
    | jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test == true) | .executable'
)
if ((${#bins[@]} == 0)); then
  echo "valgrind-core: no test binaries found (does 'cargo test -p tensorbridge-core --no-run' build?)" >&2
  exit 1
fi

failed=()
for bin in "${bins[@]}"; do
  name="$(basename "$bin")"
  [[ -z "$filter" || "$name" == *"$filter"* ]] || continue
  echo "== valgrind $name"
  start=$SECONDS
  # --test-threads=2: valgrind serialises threads anyway; a little parallelism keeps the
  # cross-thread tests honest without slowing the run.
  if valgrind --tool=memcheck --error-exitcode=1 --leak-check=full \
      --errors-for-leak-kinds=definite --show-leak-kinds=definite \
      --quiet --trace-children=no \
      "$bin" --test-threads=2 -q; then
    echo "   ok ($((SECONDS - start)) s)"
  else
    echo "   FAILED ($((SECONDS - start)) s)"
    failed+=("$name")
  fi
done

if ((${#failed[@]})); then
  echo "valgrind-core: memcheck failed for: ${failed[*]}" >&2
  exit 1
fi
echo "valgrind-core: all core test binaries are clean under memcheck"
