"""Training and inference speed of IAN models; prints JSON.

Measures, on random images with random person boxes (no dataset needed):

* training: seconds per iteration and peak memory, for a config at its training input size;
* inference: images per second at a given input size (900x1500 on a GPU, as the person-search
  papers report), batch 1 and batched, with AMP (autocast fp16 on CUDA, bf16 on CPU) on and off.

Random weights, realistic work. A randomly initialised FrozenBN network is not normalised at
all (FrozenBatchNorm2d starts as the identity: running mean 0, variance 1), so its activations
grow stage after stage (res4 reaches ~1e4 on a 900x1500 image), the RPN regresses degenerate
boxes and NO proposal reaches the ROI heads: the timing would then miss res5 on the ROIs, most
of a C4 model's inference. Before timing, :func:`calibrate_norm_stats` therefore runs one forward
pass in which every FrozenBatchNorm2d / BatchNorm layer, in forward order, takes its running
statistics from its own input, so every layer sees normalised activations, as with trained
weights. GroupNorm models need nothing (the pass changes nothing there).

Every timed configuration reports the boxes that reached the ROI heads (``proposals_per_image``;
``detections_per_image`` in inference, ``roi_boxes_per_image`` = sampled boxes in training), and
a run in which some image sent (almost) no proposal to the ROI heads (fewer than
``min(--min-proposals, POST_NMS_TOPK)``, 10 by default), or in inference no image got a
detection, is refused: the script exits with status 2 (:class:`NoROIBoxesError` when called as a
function) instead of printing figures. The uncalibrated R-50 sends 0 proposals at 900x1500, 1-4
(one degenerate box, deduplicated) at small sizes, and no detection.

Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU (reset per configuration); on CPU the
process's peak resident set size (``ru_maxrss``: whole process so far, it never decreases). The
JSON says which in ``peak_memory_kind``.

Usage::

    python -m benchmarks.bench_model                          # CPU-sized: R-18-GN quick config
    python -m benchmarks.bench_model --config configs/IAN_R50.yaml --size 900 1500 \\
        --device cuda --batch 1 4 --amp 0 1                   # GPU, the published setting
    python -m benchmarks.bench_model --config configs/IAN_R101.yaml --size 900 1500 \\
        --device cuda --skip-inference --train-batch 2 5      # training at batch 2 and 5

(from the repository root).
"""

import argparse
import contextlib
import json
import logging
import os
import platform
import resource
import sys
import time
from typing import Dict, List, Optional

import torch
from torch import nn

from ian_d2.utils.testing import quick_cfg  # first: it silences a Detectron2 import warning
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from benchmarks.machine import write_json

__all__ = [
    "main",
    "make_cfg",
    "make_inputs",
    "calibrate_norm_stats",
    "build_benchmark_model",
    "ROIBoxCounter",
    "NoROIBoxesError",
]

logger = logging.getLogger(__name__)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Normalisation layers whose statistics the calibration pass sets (GroupNorm has none).
_NORM_TYPES = (FrozenBatchNorm2d, nn.modules.batchnorm._BatchNorm)

EXIT_NO_ROI_BOXES = 2


class NoROIBoxesError(RuntimeError):
    """A timed run in which the ROI heads received no box for some image: figures refused."""


def make_cfg(
    config: str, device: str, size, num_pids: int, opts: Optional[List[str]] = None
):  # -> CfgNode
    """
    The config of ``config`` with random weights on ``device``, ``num_pids`` identities and the
    test input size ``size`` = (H, W), then the overrides ``opts`` (KEY VALUE ...).
    """
    h, w = size
    return quick_cfg(
        os.path.abspath(config),
        ["MODEL.DEVICE", device, "MODEL.WEIGHTS", "", "MODEL.REID.NUM_PIDS", num_pids]
        + list(opts or []),
        tiny=False,
        INPUT__MIN_SIZE_TEST=min(h, w),
        INPUT__MAX_SIZE_TEST=max(h, w),
    )


def make_inputs(
    n: int, h: int, w: int, num_pids: int, g: torch.Generator, with_instances: bool = True
) -> List[Dict]:
    """
    ``n`` random model inputs: images [3, h, w] (0-255) and, with ``with_instances``, 6 person
    boxes each, half of them labeled with a pid < ``num_pids``.
    """
    out = []
    for _ in range(n):
        k = 6
        x0 = torch.rand(k, generator=g) * (w * 0.8)
        y0 = torch.rand(k, generator=g) * (h * 0.5)
        bw = w * (0.05 + 0.1 * torch.rand(k, generator=g))
        bh = h * (0.2 + 0.3 * torch.rand(k, generator=g))
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.stack([x0, y0, x0 + bw, y0 + bh], 1))
        inst.gt_classes = torch.zeros(k, dtype=torch.int64)
        pids = torch.randint(0, max(num_pids, 1), (k,), generator=g)
        pids[k // 2 :] = -1
        inst.gt_pids = pids
        x = {"image": torch.rand(3, h, w, generator=g) * 255, "height": h, "width": w}
        if with_instances:
            x["instances"] = inst
        out.append(x)
    return out


@torch.no_grad()
def calibrate_norm_stats(model: nn.Module, batched_inputs: List[Dict]) -> int:
    """
    One inference pass (eval mode, fp32) of ``model`` on ``batched_inputs`` in which every
    FrozenBatchNorm2d / BatchNorm layer, just before it runs, sets its running mean and variance
    to the per-channel statistics of its input (over every dimension but the channel one). Layers
    run in forward order, so each one sees the already normalised output of the previous ones
    and outputs activations of mean ``bias`` and standard deviation ``weight`` (0 and 1 at
    initialisation). A layer called several times is calibrated on its first call. The affine
    parameters are kept; the training mode of the model is restored.

    Args:
        model (nn.Module): a Detectron2 model.
        batched_inputs (list[dict]): model inputs (``instances`` are not used).

    Returns:
        int: the number of normalisation layers calibrated (0 for a GroupNorm model).
    """
    done = set()

    def pre_hook(module, args):
        if module in done or not args:
            return
        x = args[0].detach().float()
        dims = [d for d in range(x.dim()) if d != 1]
        var, mean = torch.var_mean(x, dim=dims, unbiased=False)
        module.running_mean.copy_(mean)
        module.running_var.copy_(var)
        done.add(module)

    handles = [
        m.register_forward_pre_hook(pre_hook)
        for m in model.modules()
        if isinstance(m, _NORM_TYPES) and getattr(m, "running_mean", None) is not None
    ]
    was_training = model.training
    try:
        model.eval()
        model([{k: v for k, v in x.items() if k != "instances"} for x in batched_inputs])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    logger.info("Calibrated the statistics of %d normalisation layers", len(done))
    return len(done)


def build_benchmark_model(cfg, calibration_inputs: Optional[List[Dict]], seed: int = 0):
    """
    ``build_model(cfg)`` with random weights drawn from ``seed``, its normalisation statistics
    calibrated on ``calibration_inputs`` (None: not calibrated).

    Returns:
        (nn.Module, int): the model (eval mode) and the number of calibrated layers.
    """
    torch.manual_seed(seed)
    model = build_model(cfg)
    model.eval()
    n = calibrate_norm_stats(model, calibration_inputs) if calibration_inputs else 0
    return model, n


class ROIBoxCounter:
    """
    Counts, per image, the boxes that reach ``roi_heads``: the proposals it receives, the
    detections it returns (inference) and the boxes it samples for its losses (training, after
    ``label_and_sample_proposals``: RPN proposals + appended ground truth). Use as a context
    manager; :meth:`reset` clears the counts.
    """

    def __init__(self, roi_heads: nn.Module):
        self.roi_heads = roi_heads
        self.proposals: List[int] = []
        self.detections: List[int] = []
        self.sampled: List[int] = []
        self._handles = []
        self._patched = False

    def __enter__(self):
        self._handles.append(
            self.roi_heads.register_forward_pre_hook(self._pre_hook, with_kwargs=True)
        )
        self._handles.append(self.roi_heads.register_forward_hook(self._hook))
        if hasattr(self.roi_heads, "label_and_sample_proposals"):
            original = self.roi_heads.label_and_sample_proposals

            def counted(proposals, targets):
                sampled = original(proposals, targets)
                self.sampled.extend(len(p) for p in sampled)
                return sampled

            self.roi_heads.label_and_sample_proposals = counted  # instance attribute
            self._patched = True
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        if self._patched:
            del self.roi_heads.label_and_sample_proposals
            self._patched = False
        return False

    def reset(self) -> None:
        """Forget the counts so far."""
        self.proposals, self.detections, self.sampled = [], [], []

    def _pre_hook(self, module, args, kwargs):
        proposals = args[2] if len(args) > 2 else kwargs.get("proposals")
        if proposals is not None:
            self.proposals.extend(len(p) for p in proposals)

    def _hook(self, module, args, output):
        if not module.training and isinstance(output, tuple) and output:
            self.detections.extend(len(x) for x in output[0])

    @staticmethod
    def _mean(values: List[int]) -> Optional[float]:
        return float(sum(values)) / len(values) if values else None

    def summary(self, training: bool) -> Dict:
        """Per-image counts of the calls so far (means; ``*_min`` = the smallest image)."""
        out = {
            "proposals_per_image": self._mean(self.proposals),
            "proposals_per_image_min": min(self.proposals) if self.proposals else 0,
        }
        if training:
            out["roi_boxes_per_image"] = self._mean(self.sampled)
        else:
            out["detections_per_image"] = self._mean(self.detections)
            out["detections_per_image_min"] = min(self.detections) if self.detections else 0
        return out

    def check(self, what: str, min_proposals: int, training: bool, seconds: float) -> None:
        """
        Raise :class:`NoROIBoxesError` if some image sent fewer than ``min_proposals`` proposals
        to the ROI heads or, in inference, if no image got a detection: the timing would then
        miss most of the ROI heads' work. ``seconds``: the measured time, for the message only.
        """
        n_low = sum(1 for p in self.proposals if p < min_proposals)
        no_detection = not training and sum(self.detections) == 0
        if self.proposals and n_low == 0 and not no_detection:
            return
        problem = (
            f"{n_low} of {len(self.proposals)} image(s) sent fewer than {min_proposals} "
            "proposals to the ROI heads"
            if self.proposals
            else "the ROI heads were never called"
        )
        if not n_low and no_detection:
            problem = "no image got a detection"
        raise NoROIBoxesError(
            f"{what}: {problem} (per image: proposals {self.proposals[:8]}, "
            f"detections {self.detections[:8]}; {seconds:.3f} s measured): the timing would miss "
            "the ROI heads, figures refused. Random FrozenBN weights need the calibration pass "
            "(do not pass --no-calibrate)."
        )


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _autocast(device: str, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _peak_memory_kind(device: str) -> str:
    if device.startswith("cuda"):
        return "cuda_max_memory_allocated (reset per configuration)"
    return "cpu_process_max_rss (ru_maxrss, whole process so far: never decreases)"


def _write(out: Dict, path: Optional[str]) -> None:
    if path:
        write_json(out, path)


def bench_train(cfg, args, g: torch.Generator, batch: int, model=None) -> Dict:
    """
    Seconds per iteration (SGD step included) at training batch ``batch`` and
    ``args.train_size``, with the boxes counted per image. ``model``: a model to reuse (built
    and calibrated here when None).
    """
    h, w = args.train_size
    if model is None:
        calib = make_inputs(1, h, w, args.num_pids, g, False) if args.calibrate else None
        model, _ = build_benchmark_model(cfg, calib, args.seed)
    model.train()
    # lr 0: the timing includes the update, but the random weights stay as calibrated
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    data = [make_inputs(batch, h, w, args.num_pids, g) for _ in range(2)]
    times = []
    _reset_peak_memory(args.device)
    with EventStorage(), ROIBoxCounter(model.roi_heads) as counter:
        for it in range(args.warmup + args.iters):
            if it == args.warmup:
                counter.reset()
            _sync(args.device)
            t = time.perf_counter()
            losses = model(data[it % 2])
            loss = sum(losses.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            _sync(args.device)
            if it >= args.warmup:
                times.append(time.perf_counter() - t)
        expected = cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN
        counter.check(
            f"training, batch {batch}, {h}x{w}",
            min(args.min_proposals, expected),
            training=True,
            seconds=sum(times) / len(times),
        )
    res = {
        "batch": batch,
        "input_size": [h, w],
        "sec_per_iter": sum(times) / len(times),
        "peak_memory_mb": _peak_memory_mb(args.device),
        "expected_proposals_per_image": expected,
    }
    res.update(counter.summary(training=True))
    return res


@torch.no_grad()
def bench_inference(cfg, args, g: torch.Generator, on_result=None) -> List[Dict]:
    """
    Images per second at ``args.size`` for each batch size and AMP setting, with the proposals
    and detections counted per image. ``on_result(list)`` is called after each configuration.
    """
    h, w = args.size
    calib = make_inputs(1, h, w, args.num_pids, g, False) if args.calibrate else None
    model, _ = build_benchmark_model(cfg, calib, args.seed)
    results = []
    with ROIBoxCounter(model.roi_heads) as counter:
        for amp in args.amp:
            for batch in args.batch:
                data = make_inputs(batch, h, w, args.num_pids, g, with_instances=False)
                times = []
                _reset_peak_memory(args.device)
                for it in range(args.warmup + args.iters):
                    if it == args.warmup:
                        counter.reset()
                    _sync(args.device)
                    t = time.perf_counter()
                    with _autocast(args.device, bool(amp)):
                        model(data)
                    _sync(args.device)
                    if it >= args.warmup:
                        times.append(time.perf_counter() - t)
                expected = cfg.MODEL.RPN.POST_NMS_TOPK_TEST
                counter.check(
                    f"inference, AMP {bool(amp)}, batch {batch}, {h}x{w}",
                    min(args.min_proposals, expected),
                    training=False,
                    seconds=sum(times) / len(times),
                )
                res = {
                    "amp": bool(amp),
                    "batch": batch,
                    "input_size": [h, w],
                    "images_per_sec": batch * len(times) / sum(times),
                    "sec_per_image": sum(times) / (batch * len(times)),
                    "peak_memory_mb": _peak_memory_mb(args.device),
                    "expected_proposals_per_image": expected,
                }
                res.update(counter.summary(training=False))
                logger.info("inference: %s", res)
                results.append(res)
                if on_result is not None:
                    on_result(results)
    return results


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line arguments (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_model", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--config",
        default=os.path.join(REPO, "configs/quick_schedules/IAN_R18_GN_instant_test.yaml"),
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, nargs=2, default=[240, 320], help="inference H W")
    p.add_argument("--train-size", type=int, nargs=2, default=None, help="training H W")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 2], help="inference batch sizes")
    p.add_argument(
        "--train-batch",
        type=int,
        nargs="+",
        default=None,
        help="training batch sizes (default: SOLVER.IMS_PER_BATCH); one model serves them all",
    )
    p.add_argument("--amp", type=int, nargs="+", default=[0, 1])
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--num-pids", type=int, default=5532)
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-inference", action="store_true")
    p.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="keep the initial normalisation statistics (FrozenBN nets then send no proposal "
        "to the ROI heads, and the run is refused)",
    )
    p.add_argument(
        "--min-proposals",
        type=int,
        default=10,
        help="refuse a run in which some image sent fewer than min(this, POST_NMS_TOPK) "
        "proposals to the ROI heads (or, in inference, no image got a detection)",
    )
    p.add_argument("--output", default=None, help="also write the JSON to this file")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = p.parse_args(argv)
    if args.iters < 1:
        p.error("--iters must be >= 1")
    args.train_size = args.train_size or args.size
    return args


def _run(out: Dict, args: argparse.Namespace, cfg, g: torch.Generator) -> None:
    """The timed runs of :func:`main`, their results added to ``out`` (and its file) one by one."""
    if not args.skip_train:
        h, w = args.train_size
        calib = make_inputs(1, h, w, args.num_pids, g, False) if args.calibrate else None
        model, _ = build_benchmark_model(cfg, calib, args.seed)
        runs = []
        for batch in args.train_batch or [cfg.SOLVER.IMS_PER_BATCH]:
            oom = None
            try:
                runs.append(bench_train(cfg, args, g, batch, model))
            except torch.OutOfMemoryError as e:  # the other batch sizes are still measured
                oom = f"OOM: {e}"[:500]
            if oom is not None:  # out of the except block: the failed step's tensors are freed
                logger.error("training, batch %d: out of memory", batch)
                runs.append({"batch": batch, "input_size": [h, w], "error": oom})
                model.zero_grad(set_to_none=True)
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()
            logger.info("training: %s", runs[-1])
            out["train"], out["train_runs"] = runs[0], runs
            _write(out, args.output)
        del model
    if not args.skip_inference:

        def partial(results):
            out["inference"] = results
            _write(out, args.output)

        out["inference"] = bench_inference(cfg, args, g, on_result=partial)


def main(argv=None) -> Dict:
    """
    Runs the benchmark and returns (and prints) its JSON; ``--output``: also written there, after
    every configuration (``complete`` false until the end; ``error`` if a run failed). Raises
    :class:`NoROIBoxesError` when a timed run sent (almost) no box to the ROI heads.
    """
    args = parse_args(argv)
    torch.backends.cudnn.benchmark = True
    g = torch.Generator().manual_seed(args.seed)
    cfg = make_cfg(args.config, args.device, args.size, args.num_pids, args.opts)
    out = {
        "config": os.path.relpath(args.config, REPO),
        "opts": list(args.opts),
        "backbone": f"R-{cfg.MODEL.RESNETS.DEPTH} {cfg.MODEL.RESNETS.NORM}",
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "post_nms_topk_test": cfg.MODEL.RPN.POST_NMS_TOPK_TEST,
        "post_nms_topk_train": cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN,
        "norm_stats_calibrated": bool(args.calibrate),
        "peak_memory_kind": _peak_memory_kind(args.device),
        "cuda_tf32": {  # PyTorch defaults: matmul off, cuDNN convolutions on
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        },
        "warmup": args.warmup,
        "iters": args.iters,
        "complete": False,
    }
    _write(out, args.output)
    try:
        _run(out, args, cfg, g)
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
        _write(out, args.output)
        raise
    out["complete"] = True
    _write(out, args.output)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        main()
    except NoROIBoxesError as e:
        logger.error("%s", e)
        sys.exit(EXIT_NO_ROI_BOXES)
