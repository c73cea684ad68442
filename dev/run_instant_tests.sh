#!/bin/bash -e
# Smoke test of the training entry point, after Detectron2's dev/run_instant_tests.sh: runs
# train_net.py on every configs/quick_schedules/*instant_test.yaml (ResNet-18-GN, 240x320, 40
# iterations, evaluation on the test split), one after the other, and stops at the first failure.
#
# Usage:
#   dev/run_instant_tests.sh [--num-gpus N] [--config-file CFG]... [ARGS...]
#
#   --num-gpus N       processes per run (default 1). The quick configs run on CPU; N > 1 starts
#                      N CPU processes (gloo), or N GPUs with MODEL.DEVICE cuda.
#   --config-file CFG  run only these configs (repeatable; default: every instant test, in name
#                      order, so the step1 -> step2 -> step3 chain runs in order).
#   ARGS               passed through to every train_net.py call, e.g. `SOLVER.MAX_ITER 4`,
#                      `MODEL.DEVICE cuda`, `--resume`.
#
# Data: the quick configs train on cuhk_sysu_synth_*. DETECTRON2_DATASETS is pointed at
# $INSTANT_TEST_DATASETS (default output/instant_tests/datasets), where a tiny synthetic
# CUHK-SYSU is generated if absent (a few seconds). Outputs: each config's OUTPUT_DIR
# (output/quick_schedules/...); steps 2 and 3 load the previous step's model_final.pth there.
# Python: $PYTHON, else .venv/bin/python, else python.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

NUM_GPUS=1
CFG_LIST=()
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --num-gpus) NUM_GPUS="$2"; shift 2 ;;
    --num-gpus=*) NUM_GPUS="${1#*=}"; shift ;;
    --config-file) CFG_LIST+=("$2"); shift 2 ;;
    --config-file=*) CFG_LIST+=("${1#*=}"); shift ;;
    -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
if [ ${#CFG_LIST[@]} -eq 0 ]; then
  CFG_LIST=( ./configs/quick_schedules/*instant_test.yaml )
fi

if [ -z "$PYTHON" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi

export DETECTRON2_DATASETS="${INSTANT_TEST_DATASETS:-$REPO/output/instant_tests/datasets}"
SYNTH="$DETECTRON2_DATASETS/cuhk_sysu_synth"
if [ ! -d "$SYNTH" ]; then
  echo "Generating a tiny synthetic CUHK-SYSU in $SYNTH ..."
  rm -rf "$SYNTH.partial"  # written beside, renamed when complete: never a half dataset
  "$PYTHON" -m ian_d2.data.synthetic --format cuhk_sysu --size tiny --seed 0 --out "$SYNTH.partial"
  mv "$SYNTH.partial" "$SYNTH"
fi

echo "========================================================================"
echo "Configs to run (--num-gpus $NUM_GPUS, DETECTRON2_DATASETS=$DETECTRON2_DATASETS):"
echo "${CFG_LIST[@]}"
echo "========================================================================"

for cfg in "${CFG_LIST[@]}"; do
  echo "========================================================================"
  echo "Running $cfg ..."
  echo "========================================================================"
  start=$SECONDS
  "$PYTHON" train_net.py --num-gpus "$NUM_GPUS" --config-file "$cfg" "${EXTRA[@]}"
  echo "$cfg: OK ($((SECONDS - start)) s)"
done
echo "All ${#CFG_LIST[@]} instant tests passed."
