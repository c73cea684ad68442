"""How the GPU check runs its steps: the ``env`` step and ``OUT/env.txt``, one step in this
process (:func:`run_step`) or in its own process under a time limit (:func:`run_isolated`, as
coreutils' ``timeout -k``), and the whole check (:func:`run_all`: the steps of
:func:`~benchmarks.gpu.plan.plan` in order within a total time budget, then
:func:`~benchmarks.gpu.report.combine`).
"""

import datetime
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback
from typing import Dict, Optional, Sequence

import torch

from benchmarks import bench_model
from benchmarks.gpu.parity import parity
from benchmarks.gpu.plan import REPO, Step, plan
from benchmarks.gpu.report import combine, read_json
from benchmarks.machine import write_json

__all__ = ["env_info", "run_all", "run_isolated", "run_step", "write_env_txt"]

logger = logging.getLogger(__name__)

# the time budget of all steps, and the least time a step is started with
DEFAULT_BUDGET_S = 420
MIN_STEP_S = 30
# an isolated step past its time limit is sent SIGTERM, then SIGKILL after this many seconds
KILL_AFTER_S = 10


def env_info() -> Dict:
    """Versions of Python, torch, CUDA, cuDNN, Detectron2 and the devices."""
    import detectron2

    info = {
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "detectron2": detectron2.__version__,
        "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        rev = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        info["git_head"] = rev.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_head"] = None
    if torch.cuda.is_available():
        info["cudnn"] = torch.backends.cudnn.version()
        info["devices"] = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["devices"].append(
                {
                    "name": p.name,
                    "capability": f"{p.major}.{p.minor}",
                    "memory_gib": round(p.total_memory / 2**30, 1),
                    "multiprocessors": p.multi_processor_count,
                }
            )
    return info


def write_env_txt(out_dir: str, smoke: bool) -> None:
    """``OUT/env.txt``: the check's start, nvidia-smi's report (when there is one), CPU count."""
    lines = [
        f"# gpu_check {datetime.datetime.now().astimezone().isoformat(timespec='seconds')} "
        f"smoke={int(smoke)} repo={REPO} python={sys.executable}"
    ]
    if shutil.which("nvidia-smi"):
        query = "name,driver_version,memory.total,clocks.max.sm,power.limit"
        for cmd in (["nvidia-smi"], ["nvidia-smi", f"--query-gpu={query}", "--format=csv"]):
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
                lines.append((res.stdout + res.stderr).rstrip("\n"))
            except (OSError, subprocess.SubprocessError) as e:
                lines.append(f"{' '.join(cmd)}: {type(e).__name__}: {e}")
    else:
        lines.append("nvidia-smi: not found")
    lines.append(f"# CPU: {os.cpu_count()} cores")
    with open(os.path.join(out_dir, "env.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def run_step(step: Step, out_dir: str) -> int:
    """
    Runs ``step`` in this process and writes ``OUT/NAME.json`` (with ``error`` if it failed).

    Returns:
        int: 0 (done), 2 (a benchmark refused: no box reached the ROI heads) or 1 (failed).
    """
    path = os.path.join(out_dir, step.name + ".json")
    try:
        if step.kind == "env":
            write_json(env_info(), path)
        elif step.kind == "parity":
            write_json(parity(step.argv), path)
        elif step.kind == "bench":
            bench_model.main(step.argv + ["--output", path])
        else:
            raise ValueError(f"unknown step kind {step.kind!r}")
        return 0
    except Exception as e:  # recorded; the next steps still run
        logger.exception("step %s failed", step.name)
        res = read_json(path) or {}
        res["error"] = f"{type(e).__name__}: {e}"
        res["traceback"] = traceback.format_exc()[-4000:]
        write_json(res, path)
        return 2 if isinstance(e, bench_model.NoROIBoxesError) else 1


def run_isolated(step: Step, out_dir: str, smoke: bool, limit_s: float) -> int:
    """
    Runs ``step`` in its own process (``--step NAME``, output in ``OUT/NAME.log``), stopped
    after ``limit_s`` seconds as coreutils' ``timeout -k KILL_AFTER_S`` does.

    Returns:
        int: the step's exit status (:func:`run_step`'s), 124 (stopped at its time limit) or
        137 (killed: it did not end within ``KILL_AFTER_S`` of being stopped).
    """
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--out", out_dir, "--step", step.name]
    cmd += ["--smoke"] if smoke else []
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # the log stays complete up to a timeout
    with open(os.path.join(out_dir, step.name + ".log"), "w") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=limit_s)
            return rc if rc >= 0 else 128 - rc  # killed by signal N: 128 + N, as a shell says
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=KILL_AFTER_S)
            return 124
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            return 137


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the process group that :func:`run_isolated` started (gone: nothing)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def run_all(
    out_dir: str,
    smoke: bool = False,
    isolated: bool = False,
    budget_s: float = DEFAULT_BUDGET_S,
    only: Optional[Sequence[str]] = None,
) -> Dict:
    """
    The check: ``OUT/env.txt``, then the steps of :func:`plan` in order (``only``: just those
    named), each started with what is left of ``budget_s`` seconds (skipped under
    ``MIN_STEP_S``), their statuses in ``OUT/steps.tsv``, then :func:`combine`.

    Args:
        out_dir: the output folder (created).
        smoke: tiny CPU settings.
        isolated: every step in its own process under its time limit (:func:`run_isolated`);
            else in this process, without a time limit per step.
        budget_s: total seconds for the steps.
        only: step names to run (default: all).

    Returns:
        dict: the combined ``OUT/gpu_check.json``.
    """
    out_dir = os.path.abspath(out_dir)  # isolated steps run in the repository's root
    os.makedirs(out_dir, exist_ok=True)
    write_env_txt(out_dir, smoke)
    start = time.monotonic()
    with open(os.path.join(out_dir, "steps.tsv"), "w") as tsv:
        for step in plan(smoke):
            if only and step.name not in only:
                continue
            left = budget_s - (time.monotonic() - start)
            if left < MIN_STEP_S:
                tsv.write(f"{step.name}\tskipped\t0\n")
                tsv.flush()
                logger.info("gpu_check: %s skipped (%ds left)", step.name, left)
                continue
            limit = min(step.timeout_s, left)
            logger.info("gpu_check: %s (limit %ds) ...", step.name, limit)
            t0 = time.monotonic()
            if isolated:
                rc = run_isolated(step, out_dir, smoke, limit)
            else:
                rc = run_step(step, out_dir)
            seconds = time.monotonic() - t0
            tsv.write(f"{step.name}\t{rc}\t{seconds:.1f}\n")
            tsv.flush()
            logger.info("gpu_check: %s exit status %s in %.0fs", step.name, rc, seconds)
    out = combine(out_dir, smoke)
    logger.info(
        "gpu_check: total %.0fs; results in %s",
        time.monotonic() - start,
        os.path.join(out_dir, "gpu_check.json"),
    )
    return out
