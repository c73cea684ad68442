"""GPU check of IAN: environment, CUDA/CPU parity, inference and training speed; writes JSON.

The one orchestrator of the check: :func:`run_all` runs the steps of :func:`plan` in order within
a total time budget (a step gets at most what is left of it, and is skipped under
``MIN_STEP_S``), records each step's exit status and seconds in ``OUT/steps.tsv``, then
:func:`combine` gathers the steps' ``OUT/NAME.json``, their statuses and the tails of the failed
steps' logs into ``OUT/gpu_check.json``, with a short summary. With ``--isolated`` (what
``benchmarks/gpu_check.sh`` runs on the GPU machine) every step runs in its own process
(``--step NAME``, log in ``OUT/NAME.log``) under its time limit, so that a failed or hung step
is recorded and the next one runs; without it every step runs in this process, without a time
limit per step (``--smoke`` and debugging). This module is the command line; the parts are in
``benchmarks/gpu/`` (``plan``: the steps, ``parity``, ``runner``: running them, ``report``).

Steps on a GPU (900x1500 inputs as the person-search papers report, random calibrated weights,
see ``bench_model.py``):

* ``env``: torch, CUDA, cuDNN, device (and ``OUT/env.txt``: nvidia-smi, CPU count);
* ``parity``: one forward pass of the same R-50 model on the same 480x800 image on the CPU and on
  the GPU, fp32 with TF32 disabled (and the GPU's fp16 autocast against the CPU's fp32):
  detections matched by IoU (:mod:`ian_d2.export.parity`), their scores and embeddings, the
  embeddings of given (query) boxes and the res4 features;
* ``infer_R50``, ``infer_R101``: images/s, AMP off/on, batch 1 and 4, with the proposals and
  detections per image;
* ``train_R101``, ``train_R50``: seconds/iteration and peak memory at batch 2 and 5.

``--smoke`` runs the same logic on the CPU in seconds: quick R-18-GN config, 96x128, one
iteration, parity CPU against CPU.

Usage (from the repository root)::

    bash benchmarks/gpu_check.sh OUT_DIR                          # on the GPU machine
    python -m benchmarks.gpu_check --isolated --out OUT_DIR        # the same
    python -m benchmarks.gpu_check --smoke --out /tmp/check        # CPU, in this process
    python -m benchmarks.gpu_check --isolated --steps env parity   # only these steps

Environment (defaults of the options): ``GPU_CHECK_BUDGET_S`` (``--budget-s``, 420: total
seconds for the steps), ``GPU_CHECK_STEPS`` (``--steps``, space-separated step names).
"""

import argparse
import logging
import os
import sys
from typing import Dict, Optional

from benchmarks import bench_model  # noqa: F401  (gpu_check.bench_model: the steps' benchmark)
from benchmarks.gpu.parity import compare_detections, parity
from benchmarks.gpu.plan import REPO, Step, plan
from benchmarks.gpu.report import combine
from benchmarks.gpu.runner import DEFAULT_BUDGET_S, run_all, run_step

__all__ = ["Step", "combine", "compare_detections", "main", "parity", "plan", "run_all", "run_step"]

logger = logging.getLogger(__name__)

DEFAULT_OUT = os.path.join(REPO, "benchmarks", "gpu_check_out")


def main(argv=None) -> Optional[Dict]:
    """Command line (see the module docstring). Returns the combined JSON when it is written."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0]
    )
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder")
    p.add_argument("--smoke", action="store_true", help="tiny CPU settings, parity CPU vs CPU")
    p.add_argument(
        "--budget-s", type=float, default=float(os.environ.get("GPU_CHECK_BUDGET_S", DEFAULT_BUDGET_S)),
        help="total seconds for the steps (env GPU_CHECK_BUDGET_S; default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--steps", nargs="+", default=os.environ.get("GPU_CHECK_STEPS", "").split() or None,
        metavar="NAME", help="run only these steps (env GPU_CHECK_STEPS; default: all)",
    )  # fmt: skip
    action = p.add_mutually_exclusive_group()
    action.add_argument(
        "--isolated", action="store_true",
        help="every step in its own process under its time limit (the GPU machine's run)",
    )  # fmt: skip
    action.add_argument("--list-steps", action="store_true", help="print 'NAME TIMEOUT_S' lines")
    action.add_argument("--step", default=None, help="run one step in this process")
    action.add_argument("--combine", action="store_true", help="write OUT/gpu_check.json")
    args = p.parse_args(argv)
    steps = plan(args.smoke)
    by_name = {s.name: s for s in steps}
    if args.step is not None and args.step not in by_name:
        p.error(f"unknown step {args.step!r}; steps: {', '.join(by_name)}")
    unknown = [name for name in args.steps or [] if name not in by_name]
    if unknown:
        logger.warning("--steps: no step %s in this plan (%s)", unknown, ", ".join(by_name))
    if args.list_steps:
        sys.stdout.write("".join(f"{s.name} {s.timeout_s}\n" for s in steps))
        return None
    os.makedirs(args.out, exist_ok=True)
    if args.combine:
        return combine(args.out, args.smoke)
    if args.step is not None:
        rc = run_step(by_name[args.step], args.out)
        if rc:
            raise SystemExit(rc)
        return None
    return run_all(args.out, args.smoke, args.isolated, args.budget_s, args.steps)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    main()
