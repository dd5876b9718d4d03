#!/usr/bin/env bash
# The GPU check of tensorbridge, in one go, on a machine with an NVIDIA GPU, Python with torch
# (no Node, no Cargo, no network needed). Everything it runs was built beforehand by
# `bash scripts/gpu/prepare.sh` on the development machine, into bench/.work/gpu (carry it).
#
#   1. cargo: crates/core/tests/cuda.rs, GPU tests included (TB_REQUIRE_CUDA=1: no skipping)
#   2. node:  scripts/gpu/node-check.mjs against the built JS package and addon
#   3. ava:   the suites with GPU-gated tests (cuda, server-cuda-shm, dlpack, runtime-threads, runtime-bls, runtime-load), run from the working tree
#      with the carried node_modules and addon; a skipped GPU test is a failure here
#      (TB_AVA_ALL=1: every suite; TB_AVA_FILES="x.spec.ts …": those)
#   4. python: scripts/gpu/torch_interop.py, PyTorch CUDA <-> tensorbridge-core in one process
#   5. bench: bench/cuda_baseline.py (torch) then bench/cuda.bench.mjs (tensorbridge), same
#      run, same GPU (TB_SKIP_BENCH=1 leaves it out)
#
# Every check prints a PASS/FAIL/SKIP line; the summary at the end counts them and the exit
# status is non-zero if anything failed. Logs go to $OUT (the device tool's output folder)
# when it is set, else to /tmp/tb-gpu-check. About 1-2 minutes on an H100.
#
# With the device tool (from the repository root):
#   run(command="bash scripts/gpu-check.sh", carry=["bench/.work/gpu"], timeout_s=420)
set -uo pipefail
cd "$(dirname "$0")/.."
work=bench/.work/gpu
logs="${OUT:-/tmp/tb-gpu-check}"
mkdir -p "$logs"
python="${PYTHON:-python3}"
export TB_REQUIRE_CUDA="${TB_REQUIRE_CUDA:-1}"
start=$SECONDS
failed=()

exec > >(tee "$logs/gpu-check.log") 2>&1

if [[ ! -f "$work/node.xz" || ! -x "$work/bin/core-cuda-tests" ]]; then
  echo "FAIL setup: $work is missing or incomplete; run 'bash scripts/gpu/prepare.sh' on the development machine and carry $work"
  exit 2
fi

echo "== machine"
cat "$work/MANIFEST" | head -6
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
echo "glibc: $(ldd --version 2>&1 | head -1)"
"$python" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1

node="$(mktemp -d)/node" # not under $OUT: it would be copied back
if ! xz -dc "$work/node.xz" > "$node" || ! chmod +x "$node" || ! "$node" --version; then
  echo "FAIL setup: the carried node binary does not run here (see above)"
  exit 2
fi

step() {
  local name=$1
  shift
  echo
  echo "== $name: $*"
  local t0=$SECONDS
  if "$@"; then
    echo "PASS $name ($((SECONDS - t0)) s)"
  else
    echo "FAIL $name (exit $?, $((SECONDS - t0)) s)"
    failed+=("$name")
  fi
}

step cargo-cuda-tests timeout 180 "$work/bin/core-cuda-tests" --include-ignored --test-threads=1
step node-check timeout 180 env TB_PKG="$work/pkg" "$node" --expose-gc scripts/gpu/node-check.mjs
ava_gpu() {
  # The working tree came without node_modules or the addon (both gitignored): unpack ours.
  rm -rf node_modules && xz -dc "$work/node_modules.tar.xz" | tar -xf - || return 1
  cp "$work"/pkg/tensorbridge.*.node . || return 1
  local log="$logs/ava-gpu.log"
  # TB_AVA_ALL=1: every suite, to see that nothing else changes where CUDA works (the real-
  # client suites skip there: no Triton client venv).
  local files=(__test__/cuda.spec.ts __test__/server-cuda-shm.spec.ts __test__/dlpack.spec.ts __test__/runtime-threads.spec.ts __test__/runtime-bls.spec.ts __test__/runtime-load.spec.ts)
  [[ "${TB_AVA_ALL:-0}" == 1 ]] && files=()
  # TB_AVA_FILES="a.spec.ts b.spec.ts": those suites only.
  [[ -n "${TB_AVA_FILES:-}" ]] && read -r -a files <<<"$TB_AVA_FILES"
  PATH="$(dirname "$node"):$PATH" timeout 300 "$node" node_modules/ava/entrypoints/cli.mjs --verbose \
    "${files[@]}" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  # A GPU-gated test that skipped here means CUDA was not found: that is a failure on this machine.
  if grep -E '^\s*- .*\[skipped: needs' "$log"; then
    echo "ava-gpu: GPU tests were skipped (above)"
    return 1
  fi
  return "$rc"
}
step ava-gpu ava_gpu
step torch-interop timeout 240 env TB_SHIM="$work/bin/libgpu_shim.so" "$python" scripts/gpu/torch_interop.py

if [[ "${TB_SKIP_BENCH:-0}" != 1 ]]; then
  step bench-torch-baseline timeout 240 "$python" bench/cuda_baseline.py --json "$logs/cuda-baseline.json"
  step bench-tensorbridge timeout 240 env TB_PKG="$work/pkg" TB_BASELINE="$logs/cuda-baseline.json" \
    TB_BENCH_JSON="$logs/cuda-bench.json" "$node" --expose-gc bench/cuda.bench.mjs
fi

echo
echo "== summary ($((SECONDS - start)) s)"
grep -E '^(PASS|FAIL|SKIP) ' "$logs/gpu-check.log" | awk '{ n[$1]++ } END { printf "PASS %d, FAIL %d, SKIP %d (lines)\n", n["PASS"], n["FAIL"], n["SKIP"] }'
grep -E '^(BENCH|GOAL) ' "$logs/gpu-check.log" || true
if ((${#failed[@]})); then
  echo "GPU CHECK FAILED: ${failed[*]}"
  exit 1
fi
echo "GPU CHECK PASSED"
