"""The ``parity`` step of the GPU check: one forward pass of the same randomly initialised,
calibrated model on the same image on two devices (CPU reference, then CUDA), fp32 with TF32 off
and under autocast; detections matched by IoU (:mod:`ian_d2.export.parity`), their scores and
embeddings, the embeddings of given (query) boxes and the res4 features, against thresholds.
"""

import argparse
import copy
import json
import logging
import os
import time
from typing import Dict, List

import numpy as np
import torch
from torch.nn import functional as F

from benchmarks import bench_model
from benchmarks.gpu.plan import R50, REPO
from detectron2.structures import Boxes, Instances
from ian_d2.export import parity as export_parity

__all__ = ["compare_detections", "parity"]

logger = logging.getLogger(__name__)

# fp32 parity thresholds (CPU and GPU kernels differ by float rounding only)
PARITY_MIN_MATCHED_FRACTION = 0.9  # detections of one device with a same-box twin (IoU >= 0.99)
PARITY_MAX_SCORE_DIFF = 1e-3
PARITY_MIN_COSINE = 0.999
PARITY_MAX_FEATURE_REL_DIFF = 1e-3
# same box: IoU >= 0.99, the threshold of ian_d2.export.parity.compare_detections
SAME_BOX_IOU = 0.99


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
