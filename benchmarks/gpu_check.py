"""GPU check of IAN: environment, CUDA/CPU parity, inference and training speed; writes JSON.

The one orchestrator of the check: :func:`run_all` runs the steps of :func:`plan` in order within
a total time budget (a step gets at most what is left of it, and is skipped under
``MIN_STEP_S``), records each step's exit status and seconds in ``OUT/steps.tsv``, then
:func:`combine` gathers the steps' ``OUT/NAME.json``, their statuses and the tails of the failed
steps' logs into ``OUT/gpu_check.json``, with a short summary. With ``--isolated`` (what
``benchmarks/gpu_check.sh`` runs on the GPU machine) every step runs in its own process
(``--step NAME``, log in ``OUT/NAME.log``) under its time limit, so that a failed or hung step
is recorded and the next one runs; without it every step runs in this process, without a time
limit per step (``--smoke`` and debugging).

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
import copy
import datetime
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from benchmarks import bench_model
from benchmarks.machine import write_json
from detectron2.structures import Boxes, Instances
from ian_d2.export import parity as export_parity

__all__ = ["Step", "combine", "compare_detections", "main", "parity", "plan", "run_all", "run_step"]

logger = logging.getLogger(__name__)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "gpu_check_out")
R50 = os.path.join(REPO, "configs", "IAN_R50.yaml")
R101 = os.path.join(REPO, "configs", "IAN_R101.yaml")
QUICK = os.path.join(REPO, "configs", "quick_schedules", "IAN_R18_GN_instant_test.yaml")

# fp32 parity thresholds (CPU and GPU kernels differ by float rounding only)
PARITY_MIN_MATCHED_FRACTION = 0.9  # detections of one device with a same-box twin (IoU >= 0.99)
PARITY_MAX_SCORE_DIFF = 1e-3
PARITY_MIN_COSINE = 0.999
PARITY_MAX_FEATURE_REL_DIFF = 1e-3
# same box: IoU >= 0.99, the threshold of ian_d2.export.parity.compare_detections
SAME_BOX_IOU = 0.99

# the time budget of all steps, and the least time a step is started with
DEFAULT_BUDGET_S = 420
MIN_STEP_S = 30
# an isolated step past its time limit is sent SIGTERM, then SIGKILL after this many seconds
KILL_AFTER_S = 10


class Step(NamedTuple):
    """One step of the check: ``kind`` "env", "parity" or "bench" (bench_model.py arguments)."""

    name: str
    timeout_s: int
    kind: str
    argv: List[str]


def plan(smoke: bool = False) -> List[Step]:
    """The steps, most important first (the runner skips the last ones if time runs out)."""
    if smoke:
        tiny = ["--device", "cpu", "--warmup", "0", "--iters", "1", "--num-pids", "10"]
        return [
            Step("env", 60, "env", []),
            Step(
                "parity",
                60,
                "parity",
                ["--config", QUICK, "--size", "96", "128", "--device-b", "cpu", "--num-pids", "10"],
            ),
            Step(
                "infer_quick",
                60,
                "bench",
                ["--config", QUICK, "--size", "96", "128", "--batch", "1", "--amp", "0"]
                + ["--skip-train"]
                + tiny,
            ),
            Step(
                "train_quick",
                60,
                "bench",
                ["--config", QUICK, "--train-size", "96", "128", "--train-batch", "2"]
                + ["--skip-inference"]
                + tiny,
            ),
        ]
    gpu = ["--device", "cuda", "--warmup", "2", "--iters", "5", "--num-pids", "5532"]
    infer = ["--size", "900", "1500", "--batch", "1", "4", "--amp", "0", "1", "--skip-train"]
    train = ["--train-size", "900", "1500", "--train-batch", "2", "5", "--skip-inference"]
    return [
        Step("env", 45, "env", []),
        Step(
            "parity",
            120,
            "parity",
            ["--config", R50, "--size", "480", "800", "--device-b", "cuda", "--num-pids", "5532"],
        ),
        Step("infer_R50", 120, "bench", ["--config", R50] + infer + gpu),
        Step("infer_R101", 120, "bench", ["--config", R101] + infer + gpu),
        Step("train_R101", 120, "bench", ["--config", R101] + train + gpu),
        Step("train_R50", 120, "bench", ["--config", R50] + train + gpu),
    ]


# ---------------------------------------------------------------------------------------------- #
# Steps
# ---------------------------------------------------------------------------------------------- #
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


def _to_cpu(inst: Instances) -> Instances:
    out = Instances(inst.image_size)
    for k, v in inst.get_fields().items():
        v = v.to("cpu")
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            v = v.float()
        elif isinstance(v, Boxes):
            v = Boxes(v.tensor.float())
        out.set(k, v)
    return out


@torch.no_grad()
def _run_model(model, inputs: List[Dict], device: str, amp: bool) -> List[Instances]:
    with bench_model._autocast(device, amp):
        return [_to_cpu(r["instances"]) for r in model(inputs)]


@torch.no_grad()
def _features(model, inputs: List[Dict], device: str, amp: bool) -> Dict[str, torch.Tensor]:
    with bench_model._autocast(device, amp):
        images = model.preprocess_image(inputs)
        return {k: v.float().cpu() for k, v in model.backbone(images.tensor).items()}


def _numpy_detections(inst: Instances) -> Dict[str, np.ndarray]:
    """``boxes`` [n, 4], ``scores`` [n] and ``embeddings`` [n, D] of CPU detections."""
    return {
        "boxes": inst.pred_boxes.tensor.numpy(),
        "scores": inst.scores.numpy(),
        "embeddings": inst.pred_embeds.numpy(),
    }


def compare_detections(a: Instances, b: Instances) -> Dict:
    """
    Detections ``a`` (reference) against ``b`` (both on the CPU), by
    :func:`ian_d2.export.parity.compare_detections`: every box of ``a`` is matched to the box
    of ``b`` of highest IoU; scores and embeddings are compared over the same-box pairs
    (IoU >= ``SAME_BOX_IOU``), and left out when there is none.
    """
    res = {"detections_a": len(a), "detections_b": len(b)}
    if len(a) == 0 or len(b) == 0:
        return res
    ref, out = _numpy_detections(a), _numpy_detections(b)
    _, best_iou = export_parity.match_detections(ref["boxes"], out["boxes"])
    stats = export_parity.compare_detections(ref, out)
    res.update(
        {
            "box_matched_iou_min": stats["min_iou"],
            "box_matched_iou_mean": float(best_iou.mean()),
            "same_box_fraction": float((best_iou >= SAME_BOX_IOU).mean()),
        }
    )
    if stats["n_unmatched"] < stats["n_ref"]:
        res["score_max_abs_diff"] = stats["max_score_diff"]
        res["embed_min_cosine"] = stats["min_cosine"]
    return res


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[n] cosine of the rows of ``a`` [n, D] and ``b`` [n, D]."""
    return (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1)


def _compare(ref, out, ref_feats, feats, query_ref, query) -> Dict:
    res = compare_detections(ref[0], out[0])
    res["feature_max_rel_diff"] = {
        k: (
            (ref_feats[k] - feats[k]).abs().max() / ref_feats[k].abs().max().clamp(min=1e-12)
        ).item()
        for k in ref_feats
    }
    res["query_embed_min_cosine"] = (
        _cos(query_ref[0].pred_embeds, query[0].pred_embeds).min().item()
    )
    res["query_embed_max_abs_diff"] = (
        (query_ref[0].pred_embeds - query[0].pred_embeds).abs().max().item()
    )
    return res


def parity(argv: List[str]) -> Dict:
    """
    One forward pass of the same randomly initialised, calibrated model (built and calibrated on
    the CPU, then copied) on the same image, on ``--device-a`` (reference, CPU) and
    ``--device-b``: fp32 with TF32 off, and (``amp``) device b under autocast against device a
    in fp32. Also the embeddings of the image's 6 given boxes through the query path.
    """
    p = argparse.ArgumentParser(prog="gpu_check.py parity")
    p.add_argument("--config", default=R50)
    p.add_argument("--size", type=int, nargs=2, default=[480, 800])
    p.add_argument("--device-a", default="cpu")
    p.add_argument("--device-b", default="cuda")
    p.add_argument("--num-pids", type=int, default=5532)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-amp", dest="amp", action="store_false")
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    )
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    try:
        return _parity(args)
    finally:
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark,
        ) = saved


def _parity(args: argparse.Namespace) -> Dict:
    """:func:`parity` with parsed arguments, TF32 off."""
    h, w = args.size
    cfg = bench_model.make_cfg(args.config, "cpu", args.size, args.num_pids, args.opts)
    g = torch.Generator().manual_seed(args.seed)
    (x,) = bench_model.make_inputs(1, h, w, args.num_pids, g, with_instances=True)
    gallery = [{k: v for k, v in x.items() if k != "instances"}]
    boxes = Instances((h, w))
    boxes.gt_boxes = x["instances"].gt_boxes
    query = [dict(gallery[0], query_index=0, instances=boxes)]

    model, n_calibrated = bench_model.build_benchmark_model(cfg, gallery, args.seed)
    models = {
        "a": model.to(args.device_a),
        "b": copy.deepcopy(model).to(args.device_b),
    }
    runs = {}
    for key, amp in (("a", False), ("b", False)) + ((("b_amp", True),) if args.amp else ()):
        m, dev = models[key[0]], getattr(args, "device_" + key[0])
        with bench_model.ROIBoxCounter(m.roi_heads) as counter:
            bench_model._sync(dev)
            t = time.perf_counter()
            det = _run_model(m, gallery, dev, amp)
            bench_model._sync(dev)
            runs[key] = {
                "det": det,
                "seconds": time.perf_counter() - t,
                "query": _run_model(m, query, dev, amp),
                "feats": _features(m, gallery, dev, amp),
                "proposals": counter.proposals[0],
            }
    ref = runs["a"]
    res = {
        "config": os.path.relpath(args.config, REPO),
        "input_size": [h, w],
        "device_a": args.device_a,
        "device_b": args.device_b,
        "device_b_name": (
            torch.cuda.get_device_name() if args.device_b.startswith("cuda") else args.device_b
        ),
        "calibrated_norm_layers": n_calibrated,
        "tf32": {
            "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        },
        "amp_dtype": "float16" if args.device_b.startswith("cuda") else "bfloat16",
        "proposals_a": ref["proposals"],
        "proposals_b": runs["b"]["proposals"],
        "forward_seconds": {k: round(r["seconds"], 4) for k, r in runs.items()},
    }
    for key, name in (("b", "fp32"), ("b_amp", "amp")):
        if key not in runs:
            continue
        r = runs[key]
        res[name] = _compare(
            ref["det"], r["det"], ref["feats"], r["feats"], ref["query"], r["query"]
        )
    fp32 = res["fp32"]
    res["thresholds"] = {
        "same_box_fraction_min": PARITY_MIN_MATCHED_FRACTION,
        "score_max_abs_diff": PARITY_MAX_SCORE_DIFF,
        "embed_min_cosine": PARITY_MIN_COSINE,
        "feature_max_rel_diff": PARITY_MAX_FEATURE_REL_DIFF,
    }
    res["fp32_ok"] = bool(
        fp32.get("same_box_fraction", 0.0) >= PARITY_MIN_MATCHED_FRACTION
        and fp32.get("score_max_abs_diff", 1.0) <= PARITY_MAX_SCORE_DIFF
        and fp32.get("embed_min_cosine", -1.0) >= PARITY_MIN_COSINE
        and fp32["query_embed_min_cosine"] >= PARITY_MIN_COSINE
        and max(fp32["feature_max_rel_diff"].values()) <= PARITY_MAX_FEATURE_REL_DIFF
    )
    logger.info("parity: %s", json.dumps(res))
    return res


def _read_json(path: str) -> Optional[Dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


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
        res = _read_json(path) or {}
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


def _status(rc: Optional[str]) -> str:
    if rc is None:
        return "not_run"
    if rc == "skipped":
        return "skipped (time budget spent)"
    return {"0": "ok", "2": "refused", "124": "timeout", "137": "timeout (killed)"}.get(
        rc, "failed"
    )


def _tail(path: str, n: int = 3000) -> Optional[str]:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return None


def _summary(steps: Dict[str, Dict]) -> List[Dict]:
    rows = []
    for name, st in steps.items():
        res = st.get("result") or {}
        if name == "parity" and "fp32" in res:
            fp32 = res["fp32"]
            rows.append(
                {
                    "step": name,
                    "fp32_ok": res.get("fp32_ok"),
                    "same_box_fraction": fp32.get("same_box_fraction"),
                    "score_max_abs_diff": fp32.get("score_max_abs_diff"),
                    "embed_min_cosine": fp32.get("embed_min_cosine"),
                    "query_embed_min_cosine": fp32.get("query_embed_min_cosine"),
                }
            )
        for run in res.get("inference", []):
            rows.append(
                {
                    "step": name,
                    "model": res.get("backbone"),
                    "input_size": run.get("input_size"),
                    "amp": run.get("amp"),
                    "batch": run.get("batch"),
                    "images_per_sec": run.get("images_per_sec"),
                    "proposals_per_image": run.get("proposals_per_image"),
                    "detections_per_image": run.get("detections_per_image"),
                    "peak_memory_mb": run.get("peak_memory_mb"),
                }
            )
        for run in res.get("train_runs", []):
            rows.append(
                {
                    "step": name,
                    "model": res.get("backbone"),
                    "input_size": run.get("input_size"),
                    "train_batch": run.get("batch"),
                    "sec_per_iter": run.get("sec_per_iter"),
                    "peak_memory_mb": run.get("peak_memory_mb"),
                    "proposals_per_image": run.get("proposals_per_image"),
                    "roi_boxes_per_image": run.get("roi_boxes_per_image"),
                    "error": run.get("error"),
                }
            )
    return rows


def combine(out_dir: str, smoke: bool = False) -> Dict:
    """
    Gathers the steps' JSON files, statuses (``steps.tsv``) and failed logs into
    ``OUT/gpu_check.json``; returns it.
    """
    status = {}
    try:
        with open(os.path.join(out_dir, "steps.tsv")) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 2:
                    status[parts[0]] = (parts[1], float(parts[2]) if len(parts) > 2 else None)
    except OSError:
        pass
    steps = {}
    for step in plan(smoke):
        rc, seconds = status.get(step.name, (None, None))
        entry = {"status": _status(rc), "exit_status": rc, "seconds": seconds}
        entry["timeout_s"] = step.timeout_s
        entry["argv"] = step.argv
        entry["result"] = _read_json(os.path.join(out_dir, step.name + ".json"))
        if entry["status"] == "ok" and entry["result"] is None:
            entry["status"] = "failed (no result file)"
        if entry["status"] != "ok":
            entry["log_tail"] = _tail(os.path.join(out_dir, step.name + ".log"))
        steps[step.name] = entry
    out = {
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "smoke": smoke,
        "all_ok": all(s["status"] == "ok" for s in steps.values()),
        "env": (steps.get("env") or {}).get("result"),
        "nvidia_smi": _tail(os.path.join(out_dir, "env.txt"), 8000),
        "summary": _summary(steps),
        "steps": steps,
    }
    write_json(out, os.path.join(out_dir, "gpu_check.json"))
    for row in out["summary"]:
        logger.info("%s", json.dumps(row))
    logger.info(
        "all steps ok: %s; written %s", out["all_ok"], os.path.join(out_dir, "gpu_check.json")
    )
    return out


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
