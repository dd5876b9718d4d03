#!/usr/bin/env bash
# Sets up the real-client tools for the serving checks and the benchmark, in
# bench/.work/ (git-ignored):
#
#   client  venv bench/.work/venv-client: tritonclient[all]==2.51.0 (the Python
#           HTTP client used by __test__/server-tritonclient.spec.ts, and
#           bin/perf_analyzer), nvidia-cuda-runtime-cu12 (perf_analyzer links
#           libcudart.so.12 even for CPU-only use) and Debian's libb64-0d.
#           The PyPI perf-analyzer wheels need glibc >= 2.38; this is the route
#           that works on glibc 2.36.
#   peers   venv bench/.work/venv-peers: nvidia-pytriton (bundles Triton 2.51
#           with the Python backend) and mlserver, for bench/serving/run.sh,
#           and onnxruntime, which both run the digits classifier with.
#
# Usage: bash bench/serving/setup.sh [client] [peers]   (default: client)
# Idempotent: a stage whose stamp names the same packages is skipped (--force redoes it).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work="$root/bench/.work"
mkdir -p "$work"
python="${TENSORBRIDGE_BASE_PYTHON:-python3}"
force=0
stages=()
for a in "$@"; do
  case "$a" in
    --force) force=1 ;;
    client | peers) stages+=("$a") ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "setup: unknown argument '$a'" >&2; exit 2 ;;
  esac
done
((${#stages[@]})) || stages=(client)

log() { echo "bench/serving/setup: $*"; }

venv() { # venv <dir>
  [[ -x "$1/bin/python" ]] || "$python" -m venv "$1"
  "$1/bin/python" -m pip install -q --upgrade pip >/dev/null
}

for stage in "${stages[@]}"; do
  stamp="$work/.$stage.done"
  # The stamp holds the stage's package list: a stage whose list changed is
  # redone. (An empty stamp predates that; the client's list has not changed since.)
  case "$stage" in
    client) pkgs=("tritonclient[all]==2.51.0" "nvidia-cuda-runtime-cu12==12.9.79" numpy) ;;
    peers) pkgs=("nvidia-pytriton==0.7.0" "mlserver==1.7.1" "onnxruntime==1.31.1" numpy) ;;
  esac
  if [[ -f "$stamp" && $force == 0 ]] && { [[ "$(cat "$stamp")" == "${pkgs[*]}" ]] || [[ $stage == client && ! -s "$stamp" ]]; }; then
    log "$stage: already set up"
    continue
  fi
  case "$stage" in
    client)
      if ! ldconfig -p | grep -q 'libb64.so.0d'; then
        log "apt-get install libb64-0d"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq libb64-0d >/dev/null
      fi
      v="$work/venv-client"
      venv "$v"
      log "pip install ${pkgs[*]} (into $v)"
      "$v/bin/pip" install -q "${pkgs[@]}"
      ;;
    peers)
      v="$work/venv-peers"
      venv "$v"
      log "pip install ${pkgs[*]} (into $v)"
      "$v/bin/pip" install -q "${pkgs[@]}"
      ;;
  esac
  echo "${pkgs[*]}" >"$stamp"
  log "$stage: done"
done
