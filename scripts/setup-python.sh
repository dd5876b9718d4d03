#!/usr/bin/env bash
# Creates the Python environment the interop tests (crates/interop) embed: a venv with the
# exact packages of scripts/python-requirements.txt (NumPy, ml_dtypes, JAX on the CPU, and
# PyTorch with only the CUDA libraries `import torch` needs to load).
#
# Idempotent and cheap when nothing changed: the venv holds a stamp with the SHA-256 of the
# requirements file and of the base interpreter's version; when it matches, nothing runs.
#
# Environment:
#   TENSORBRIDGE_PYTHON       the venv directory (default: <repo>/.venv); the interop tests
#                             read the same variable
#   TENSORBRIDGE_BASE_PYTHON  the interpreter to build the venv from (default: python3). It
#                             must be the Python that pyo3 links the tests against (python3 on
#                             PATH, or PYO3_PYTHON), since the wheels are built for one version.
# Options:
#   --force   reinstall every package even if the stamp matches
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
req="$root/scripts/python-requirements.txt"
venv="${TENSORBRIDGE_PYTHON:-$root/.venv}"
base_python="${TENSORBRIDGE_BASE_PYTHON:-python3}"
stamp="$venv/.tensorbridge-requirements.sha256"
force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h | --help)
      sed -n '2,20p' "$0"
      exit 0
      ;;
    *)
      echo "setup-python: unknown argument '$arg' (only --force is accepted)" >&2
      exit 2
      ;;
  esac
done

log() { echo "setup-python: $*"; }

base_version=$("$base_python" -c 'import sys; print(sys.version.split()[0])') || {
  echo "setup-python: can't run '$base_python'; set TENSORBRIDGE_BASE_PYTHON to a Python 3.11" >&2
  exit 1
}
want=$({
  cat "$req"
  echo "python $base_version"
} | sha256sum | cut -d' ' -f1)

if [[ $force == 0 && -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  log "$venv is up to date (requirements and Python $base_version unchanged); nothing to install"
  exit 0
fi

start=$(date +%s)

# Reuse an existing venv only when its interpreter still runs and is the base's version
# (a changed base interpreter leaves a venv with a dangling or different python).
if [[ -e "$venv" ]]; then
  venv_version=$("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || true)
  if [[ "$venv_version" != "$base_version" ]]; then
    if [[ ! -f "$venv/pyvenv.cfg" ]]; then
      echo "setup-python: $venv exists but is not a venv; refusing to replace it" >&2
      exit 1
    fi
    log "removing $venv (its Python is '${venv_version:-broken}', the base is $base_version)"
    rm -rf "$venv"
  fi
fi
if [[ ! -e "$venv" ]]; then
  log "creating venv $venv from $(command -v "$base_python") (Python $base_version)"
  "$base_python" -m venv "$venv"
fi
rm -f "$stamp"

log "installing (pip install --no-deps --only-binary=:all:, the file is the full lock):"
grep -Ev '^[[:space:]]*(#|$)' "$req" | sed 's/^/  /'
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off \
  --no-deps --only-binary=:all: -r "$req"

log "checking that the packages import"
"$venv/bin/python" - <<'EOF'
import numpy, ml_dtypes, jax, torch
x = numpy.arange(3, dtype=numpy.float32)
assert numpy.from_dlpack(torch.from_dlpack(x)).tolist() == [0.0, 1.0, 2.0]
assert jax.devices()[0].platform == "cpu"
print(f"setup-python: numpy {numpy.__version__}, ml_dtypes {ml_dtypes.__version__}, "
      f"jax {jax.__version__}, torch {torch.__version__} "
      f"(CUDA available: {torch.cuda.is_available()})")
EOF

echo "$want" >"$stamp"
size=$(du -sh "$venv" | cut -f1)
log "done in $(($(date +%s) - start)) s; $venv is $size"
