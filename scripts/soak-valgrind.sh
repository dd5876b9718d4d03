#!/usr/bin/env bash
# The ownership soak (scripts/soak.mjs) under valgrind memcheck, with an addon built with
# symbols so that any report in tensorbridge code names its function.
#
#   bash scripts/soak-valgrind.sh              # 10^4 cycles (about 20 min on 2 cores)
#   SOAK_CYCLES=1000 bash scripts/soak-valgrind.sh
#
# Why valgrind and not LeakSanitizer: an ASan/LSan build of the addon needs the sanitizer
# runtime preloaded into node (LD_PRELOAD of libclang_rt.asan) and then reports every V8
# allocation pattern it dislikes; memcheck runs the stock node binary and the ordinary
# addon, and its leak check and invalid-access reports can be attributed by symbol.
#
# Node/V8 noise is suppressed by scripts/valgrind-node.supp (V8's conservative stack scan
# reads uninitialised stack slots by design). Fails when memcheck reports any error or a
# definite leak, or when any report (even a suppressed kind or a "possibly lost" block)
# has a tensorbridge frame in its stack.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

command -v valgrind >/dev/null || { echo "soak-valgrind: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }

cycles="${SOAK_CYCLES:-10000}"
out="$root/target/soak-valgrind"
mkdir -p "$out"

# A release addon that keeps its symbols and line tables (the package's profile strips them;
# LTO off just to build faster). Loaded through napi-rs's override variable, so the addon at
# the repository root is left alone.
echo "== building the addon with symbols (target/soak-valgrind)"
CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  CARGO_PROFILE_RELEASE_LTO=false \
  cargo build --release -p tensorbridge-node --target-dir "$out/cargo" --quiet
cp "$out/cargo/release/libtensorbridge_node.so" "$out/tensorbridge.node"
export NAPI_RS_NATIVE_LIBRARY_PATH="$out/tensorbridge.node"

log="$out/memcheck.log"
echo "== valgrind memcheck: node scripts/soak.mjs --cycles $cycles (log: ${log#"$root"/})"
start=$SECONDS
status=0
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,possible \
  --errors-for-leak-kinds=definite --error-exitcode=99 --num-callers=40 \
  --smc-check=all-non-file --suppressions="$root/scripts/valgrind-node.supp" \
  --log-file="$log" \
  node --expose-gc scripts/soak.mjs --cycles "$cycles" --checkpoints 2 --worker-every 1000 \
  --max-drift-mib 1024 --json "$out/soak.json" || status=$?
echo "   valgrind exited $status after $((SECONDS - start)) s"

grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|suppressed:" "$log" | sed 's/^==[0-9]*== /   /' | sort -u
# Reports whose stack passes through our code (by symbol or by the addon's file name):
# errors and definite or indirect leaks fail the run. "Possibly lost" blocks are listed, not
# failed: the one seen here is Rust std's per-thread `thread::current()` handle, made once for
# a Node thread that first runs a deleter (valgrind sees only an interior pointer in its TLS).
count() {
  awk -v want="$1" '/^==[0-9]+== $/ { if (block ~ /tensorbridge/ && block ~ want) n++; block = ""; next }
    { block = block "\n" $0 } END { print n + 0 }' "$log"
}
ours=$(count 'Invalid|uninitialised|definitely lost|indirectly lost|free\(\)|overlap|mismatched')
possibly=$(count 'possibly lost')
echo "   errors or definite leaks with a tensorbridge frame: $ours; possibly lost blocks with one: $possibly"
if ((possibly > 0)); then
  grep -B1 -A12 "possibly lost in loss record" "$log" | grep -E "possibly lost|tensorbridge|std::thread" | sed 's/^==[0-9]*== /     /' | head -n 12
fi
if ((status != 0 || ours != 0)); then
  echo "soak-valgrind: FAILED (see $log)" >&2
  exit 1
fi
echo "soak-valgrind: no memory errors and no definite leaks; nothing reported in tensorbridge code"
