#!/usr/bin/env bash
# impax on one NVIDIA GPU, in under 10 minutes: install the CUDA extra, show what JAX sees, check the
# IM-NET encoder paths agree (at TF32 and at exact float32), and time the `paper` IM-AE and LDIF
# training steps (synthetic batches; also fed by the real loaders with --store), with steps/s and
# the GPU's utilisation. Put the printed table in your report.
#
#   bash scripts/gpu-check.sh [--store PREPARED] [--steps N] [--venv DIR] [--no-install]
#   bash scripts/gpu-check.sh --cpu-smoke      # every Python part on the CPU, tiny sizes (tests)
#
#   --store PREPARED  an `impax prepare` output folder: also time the steps fed by the loaders
#   --steps N         timed steps per row (default 20)
#   --venv DIR        the virtual environment to create/use (default .venv-gpu; IMPAX_GPU_VENV)
#   --no-install      use the venv as it is (skip `pip install -e .[cuda12]`)
#   --json FILE       where the results go as JSON too (default gpu-check.json)
#   --cpu-smoke       no install, JAX on the CPU, tiny models and batches: checks the script runs
#                     (uses $PYTHON, default python3, which must have impax installed)
# Details: scripts/gpu_check.py, docs/gpu.md.
set -euo pipefail

cd "$(dirname "$0")/.."
SMOKE=0 INSTALL=1 STORE="" STEPS="" JSON=gpu-check.json VENV="${IMPAX_GPU_VENV:-.venv-gpu}"
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-smoke) SMOKE=1 ;;
    --no-install) INSTALL=0 ;;
    --store) STORE="$2"; shift ;;
    --steps) STEPS="$2"; shift ;;
    --venv) VENV="$2"; shift ;;
    --json) JSON="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

ARGS=()
[ -n "$STEPS" ] && ARGS+=(--steps "$STEPS")
[ -n "$STORE" ] && ARGS+=(--store "$STORE")
START=$(date +%s)

if [ "$SMOKE" = 1 ]; then
  PY="${PYTHON:-python3}"
  export JAX_PLATFORMS=cpu
  ARGS+=(--cpu-smoke)
else
  if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    python3 -m venv "$VENV"
  fi
  PY="$VENV/bin/python"
  if [ "$INSTALL" = 1 ]; then
    echo "== pip install -e .[cuda12] (into $VENV)"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -e ".[cuda12]"
  fi
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  else
    echo "(nvidia-smi not found: no utilisation column)"
  fi
fi

echo "== impax info"
"$PY" -m impax info
if [ "$SMOKE" = 0 ] && [ "$("$PY" -c 'import jax; print(jax.default_backend())')" = cpu ]; then
  echo "gpu-check.sh: JAX sees no GPU (backend cpu); check the driver (nvidia-smi) and the install above" >&2
  exit 1
fi

echo "== checks and timings"
"$PY" scripts/gpu_check.py "${ARGS[@]}" --json "$JSON"
echo "== done in $(( $(date +%s) - START )) s; results also in $JSON"
