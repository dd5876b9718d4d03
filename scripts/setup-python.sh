#!/usr/bin/env bash
# Creates the Python environment the interop tests (crates/interop) embed: a venv with the
# exact packages of scripts/python-requirements.txt (NumPy, ml_dtypes, JAX on the CPU, and
# PyTorch with only the CUDA libraries `import torch` needs to load).
#
# Idempotent and cheap when nothing changed: the venv holds a stamp with the SHA-256 of the
# requirements file and of the base interpreter's version; when it matches, nothing runs.
#
# PyTorch: the CPU build (`torch==<version>+cpu`, from PyTorch's own index, about a tenth of
# the size, no CUDA libraries) where that index answers, else PyPI's build with the CUDA
# libraries `import torch` needs (the lock below), used on the CPU. PyPI hosts no CPU build.
#
# Environment:
#   TENSORBRIDGE_PYTHON       the venv directory (default: <repo>/.venv); the interop tests
#                             read the same variable
#   TENSORBRIDGE_TORCH        auto (default): the CPU build if its index answers, else PyPI's;
#                             cpu: the CPU build or fail; pypi: PyPI's build
#   TENSORBRIDGE_TORCH_INDEX  the CPU build's index (default: https://download.pytorch.org/whl/cpu)
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
torch_mode="${TENSORBRIDGE_TORCH:-auto}"
torch_index="${TENSORBRIDGE_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
case "$torch_mode" in
  auto | cpu | pypi) ;;
  *)
    echo "setup-python: TENSORBRIDGE_TORCH must be auto, cpu or pypi, not '$torch_mode'" >&2
    exit 2
    ;;
esac
stamp="$venv/.tensorbridge-requirements.sha256"
force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d'
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
  echo "torch $torch_mode $torch_index"
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

pip_install() {
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off \
    --no-deps --only-binary=:all: "$@"
}

# The CPU build: the lock without torch and the CUDA libraries, then torch==<version>+cpu
# from PyTorch's index (its other requirements are in the lock already).
install_cpu_torch() {
  local version lock
  version=$(sed -n 's/^torch==//p' "$req")
  lock=$(mktemp)
  grep -Ev '^[[:space:]]*(#|$)' "$req" | grep -Ev '^(torch|nvidia-)' >"$lock"
  log "installing the lock without torch and its CUDA libraries, then torch==$version+cpu from $torch_index:"
  sed 's/^/  /' "$lock"
  pip_install -r "$lock" && pip_install --index-url "$torch_index" "torch==$version+cpu"
  local status=$?
  rm -f "$lock"
  return $status
}

cpu_torch=0
if [[ $torch_mode != pypi ]]; then
  if curl -sfI --max-time 15 "$torch_index/torch/" >/dev/null; then
    if install_cpu_torch; then
      cpu_torch=1
    elif [[ $torch_mode == cpu ]]; then
      echo "setup-python: installing the CPU build of torch from $torch_index failed (above)" >&2
      exit 1
    else
      log "the CPU build of torch did not install (above); using PyPI's build instead"
    fi
  elif [[ $torch_mode == cpu ]]; then
    echo "setup-python: $torch_index does not answer (curl -sfI $torch_index/torch/), and TENSORBRIDGE_TORCH=cpu" >&2
    exit 1
  else
    log "$torch_index does not answer; using PyPI's torch (a CUDA build, run on the CPU)"
  fi
fi
if [[ $cpu_torch == 0 ]]; then
  log "installing (pip install --no-deps --only-binary=:all:, the file is the full lock):"
  grep -Ev '^[[:space:]]*(#|$)' "$req" | sed 's/^/  /'
  pip_install -r "$req"
fi

log "checking that the packages import"
"$venv/bin/python" - <<'EOF'
import numpy, ml_dtypes, jax, torch
x = numpy.arange(3, dtype=numpy.float32)
assert numpy.from_dlpack(torch.from_dlpack(x)).tolist() == [0.0, 1.0, 2.0]
assert jax.devices()[0].platform == "cpu"
print(f"setup-python: numpy {numpy.__version__}, ml_dtypes {ml_dtypes.__version__}, "
      f"jax {jax.__version__}, torch {torch.__version__} "
      f"(CUDA build: {torch.version.cuda}, CUDA available: {torch.cuda.is_available()})")
EOF

echo "$want" >"$stamp"
size=$(du -sh "$venv" | cut -f1)
log "done in $(($(date +%s) - start)) s; $venv is $size"
