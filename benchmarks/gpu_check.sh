#!/usr/bin/env bash
# GPU check of IAN, unattended, in well under 8 minutes on one H200:
#   environment (nvidia-smi, torch, CUDA), CUDA vs CPU parity of one forward pass (fp32, TF32
#   off), R-50 / R-101 inference images/s at 900x1500 (AMP off/on, batch 1 and 4) and training
#   s/iter + peak memory (batch 2 and 5), with the proposals/detections per image.
#
# Usage:  bash benchmarks/gpu_check.sh [OUT_DIR] [--smoke]
#   OUT_DIR  output folder (default benchmarks/gpu_check_out): one JSON file and one log per
#            step, steps.tsv (name, exit status, seconds), env.txt, and the combined gpu_check.json
#   --smoke  (or GPU_CHECK_SMOKE=1) tiny CPU settings, for testing this script without a GPU
# Environment: PYTHON (default .venv/bin/python, else python3), GPU_CHECK_BUDGET_S (default 420:
#   total seconds for the steps; a step gets at most what is left, and is skipped under 30 s),
#   GPU_CHECK_STEPS (space-separated step names: run only those, e.g. "env parity"; default: all).
#
# This wrapper only picks the interpreter and the folders: the steps, their time limits and the
# budget are `python -m benchmarks.gpu_check --isolated`'s (every step in its own process under
# its time limit; a failed or hung step is recorded in the JSON and the next step runs).
set -u

DEFAULT_OUT="$(dirname "$0")/gpu_check_out"
OUT=${1:-$DEFAULT_OUT}
SMOKE=${GPU_CHECK_SMOKE:-0}
if [ "${2:-}" = "--smoke" ] || [ "$OUT" = "--smoke" ]; then
    SMOKE=1
    [ "$OUT" = "--smoke" ] && OUT=$DEFAULT_OUT
fi
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.." || exit 1

PY=${PYTHON:-.venv/bin/python}
command -v "$PY" >/dev/null 2>&1 || PY=python3
FLAGS=(--isolated --out "$OUT")
[ "$SMOKE" = "1" ] && FLAGS+=(--smoke)

export PYTHONUNBUFFERED=1
exec "$PY" -m benchmarks.gpu_check "${FLAGS[@]}"
