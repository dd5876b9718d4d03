#!/usr/bin/env bash
# Builds, on the development machine, everything scripts/gpu-check.sh needs on the GPU
# machine (which has Python with torch, but no Node, Cargo or network), into one gitignored
# folder to carry:
#
#   bench/.work/gpu/
#     node.xz                     this machine's node binary, xz-compressed (official builds
#                                 need glibc >= 2.28 and libstdc++)
#     bin/core-cuda-tests         the cargo test binary of crates/core/tests/cuda.rs (stripped)
#     bin/libgpu_shim.so          crates/core/examples/gpu_shim.rs, for Python's ctypes
#     pkg/                        the JS package: index.js + tensorbridge.<platform>.node (release
#                                 addon) + dist/ (tsc build of src/) + package.json {type: module}
#     node_modules.tar.xz         the npm packages the ava suites need at run time (no typescript,
#                                 linters or napi CLI), so the GPU-gated ava tests run there too
#     MANIFEST                    sizes, versions, the git commit
#
# Then, with the `device` tool: run `bash scripts/gpu-check.sh` with carry ["bench/.work/gpu"].
# Debug builds for the tests (no extra release build); the addon is the release build that
# `node scripts/ensure-addon.mjs` keeps up to date. Takes about a minute here once built.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
out=bench/.work/gpu
limit_mib=60

command -v jq >/dev/null || { echo "prepare: jq is needed (apt-get install jq)" >&2; exit 2; }
command -v xz >/dev/null || { echo "prepare: xz is needed (apt-get install xz-utils)" >&2; exit 2; }

rm -rf "$out"
mkdir -p "$out/bin" "$out/pkg"

echo "== cargo: the CUDA test binary and the ctypes shim (debug, feature cuda)"
test_bin=$(cargo test -p tensorbridge-core --features cuda --test cuda --no-run --message-format=json 2>/dev/null |
  jq -r 'select(.reason == "compiler-artifact" and .target.name == "cuda" and .executable != null) | .executable')
[[ -x "$test_bin" ]] || { echo "prepare: the cuda test binary was not built" >&2; exit 1; }
cp "$test_bin" "$out/bin/core-cuda-tests"
shim=$(cargo build -p tensorbridge-core --features cuda --example gpu_shim --message-format=json 2>/dev/null |
  jq -r 'select(.reason == "compiler-artifact" and .target.name == "gpu_shim") | .filenames[] | select(endswith(".so"))')
[[ -f "$shim" ]] || { echo "prepare: the gpu_shim library was not built" >&2; exit 1; }
cp "$shim" "$out/bin/libgpu_shim.so"
strip "$out/bin/core-cuda-tests" "$out/bin/libgpu_shim.so"

echo "== addon (release) and dist/"
node scripts/ensure-addon.mjs
addon=$(ls tensorbridge.*.node | head -1)
cp index.js "$addon" "$out/pkg/"
echo '{ "type": "module", "private": true }' > "$out/pkg/package.json"
"$root/node_modules/.bin/tsc" -p tsconfig.build.json --outDir "$out/pkg/dist" --sourceMap false --declaration false

echo "== node_modules for ava (xz; build and lint tools left out)"
tar -cf - --exclude=node_modules/typescript --exclude=node_modules/@oxlint --exclude=node_modules/oxlint \
  --exclude=node_modules/@napi-rs --exclude=node_modules/@octokit --exclude=node_modules/@types \
  --exclude=node_modules/es-toolkit --exclude=node_modules/@emnapi --exclude=node_modules/@inquirer \
  node_modules | xz -T0 -6 > "$out/node_modules.tar.xz"

echo "== node binary (xz)"
xz -T0 -6 -c "$(readlink -f "$(command -v node)")" > "$out/node.xz"

glibc_needed() {
  objdump -T "$1" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1
}
{
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- crates src || echo ' (+ uncommitted changes)')"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(ldd --version | head -1)"
  echo "node: $(node --version), needs $(glibc_needed "$(readlink -f "$(command -v node)")")"
  echo "addon: $addon, needs $(glibc_needed "$out/pkg/$addon")"
  echo "core-cuda-tests: needs $(glibc_needed "$out/bin/core-cuda-tests")"
  echo "libgpu_shim.so: needs $(glibc_needed "$out/bin/libgpu_shim.so")"
  (cd "$out" && find . -type f -printf '%s %p\n' | sort -k2 | awk '{ printf "%10d %s\n", $1, $2 }')
} > "$out/MANIFEST"
cat "$out/MANIFEST" | head -8

total=$(du -sm "$out" | cut -f1)
echo "== $out: ${total} MiB (carry limit 64 MiB for everything)"
if ((total > limit_mib)); then
  echo "prepare: $out is over ${limit_mib} MiB" >&2
  exit 1
fi
echo "ready: run 'bash scripts/gpu-check.sh' on the GPU machine with carry [\"$out\"]"
