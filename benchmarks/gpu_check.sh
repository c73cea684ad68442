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
# Environment: PYTHON (default .venv/bin/python), GPU_CHECK_BUDGET_S (default 420: total seconds
#   for the steps; a step gets at most what is left, and is skipped under 30 s), GPU_CHECK_STEPS
#   (space-separated step names: run only those, e.g. "env parity"; default: all).
#
# Every step runs in its own process under `timeout`; a failed or hung step is recorded in the
# JSON and the next step runs. The steps are listed by `benchmarks/gpu_check.py --list-steps`.
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
REPO=$(pwd)

PY=${PYTHON:-$REPO/.venv/bin/python}
command -v "$PY" >/dev/null 2>&1 || PY=python3
BUDGET_S=${GPU_CHECK_BUDGET_S:-420}
MIN_STEP_S=30
FLAGS=(--out "$OUT")
[ "$SMOKE" = "1" ] && FLAGS+=(--smoke)

export PYTHONUNBUFFERED=1  # the step logs stay complete up to a timeout

{
    echo "# gpu_check $(date -Is) smoke=$SMOKE repo=$REPO python=$PY"
    if command -v nvidia-smi >/dev/null 2>&1; then
        timeout 30 nvidia-smi
        timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
    else
        echo "nvidia-smi: not found"
    fi
    echo "# CPU: $(nproc) cores"
} >"$OUT/env.txt" 2>&1

: >"$OUT/steps.tsv"
STEPS=$(timeout 60 "$PY" benchmarks/gpu_check.py "${FLAGS[@]}" --list-steps 2>"$OUT/list_steps.log")
if [ -z "$STEPS" ]; then
    echo "gpu_check: could not list the steps (see $OUT/list_steps.log)" >&2
fi

START=$SECONDS
while read -r NAME LIMIT; do
    [ -z "${NAME:-}" ] && continue
    if [ -n "${GPU_CHECK_STEPS:-}" ] && [[ " $GPU_CHECK_STEPS " != *" $NAME "* ]]; then
        continue
    fi
    LEFT=$((BUDGET_S - (SECONDS - START)))
    if [ "$LEFT" -lt "$MIN_STEP_S" ]; then
        printf '%s\tskipped\t0\n' "$NAME" >>"$OUT/steps.tsv"
        echo "gpu_check: $NAME skipped (${LEFT}s left)"
        continue
    fi
    [ "$LIMIT" -gt "$LEFT" ] && LIMIT=$LEFT
    echo "gpu_check: $NAME (limit ${LIMIT}s) ..."
    T0=$SECONDS
    timeout -k 10 "$LIMIT" "$PY" benchmarks/gpu_check.py "${FLAGS[@]}" --step "$NAME" \
        >"$OUT/$NAME.log" 2>&1
    RC=$?
    printf '%s\t%s\t%s\n' "$NAME" "$RC" "$((SECONDS - T0))" >>"$OUT/steps.tsv"
    echo "gpu_check: $NAME exit status $RC in $((SECONDS - T0))s"
done <<<"$STEPS"

timeout 60 "$PY" benchmarks/gpu_check.py "${FLAGS[@]}" --combine 2>&1 | tail -n 40
echo "gpu_check: total $((SECONDS - START))s; results in $OUT/gpu_check.json"
